"""What the LabelWriter's status byte means, and asking for it (ESC A, one byte back).

DYMO's manuals read bit 0 two ways ("always returned as a 1"; "ready: paper in, no jam"), so a
clear bit 0 alone is shown as a warning and does not stop printing; the cause bits do. Bit 7
(error) comes with paper out and with a jam too; it is shown on its own only without them.
"""

from __future__ import annotations

from drivers.dymo.protocol import STATUS_QUERY, DymoStatus, decode_status
from drivers.kit import Condition, LabelPrinterStatus, MachineProperty, PrinterSilent, StatusReport
from drivers.transport import Transport, TransportTimeout, read_exactly

PAPER_OUT = Condition(LabelPrinterStatus.NO_MEDIA, "Paper out: load a roll of labels")
JAM = Condition(LabelPrinterStatus.PAPER_JAM, "Paper jam: open the cover and clear the labels")
ERROR = Condition(
    LabelPrinterStatus.ERROR, "Printer error: check the labels, then switch the printer off and on"
)
NOT_READY = Condition(
    LabelPrinterStatus.WARNING, "Printer reports not ready", blocks_printing=False
)
LIVE = "Printer status"


def status_report(status: DymoStatus) -> StatusReport:
    """The conditions and live properties of one status byte."""
    conditions: list[Condition] = []
    if status.paper_out:
        conditions.append(PAPER_OUT)
    if status.jam:
        conditions.append(JAM)
    if status.error and not (status.paper_out or status.jam):
        conditions.append(ERROR)
    if not status.ready and not conditions:
        conditions.append(NOT_READY)
    properties = (
        MachineProperty("Paper", "out" if status.paper_out else "ok", group=LIVE),
        MachineProperty("Top of form", status.top_of_form, group=LIVE, type="bool"),
    )
    return StatusReport(tuple(conditions), properties)


async def query_status(
    transport: Transport,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    prefix: bytes = b"",
) -> StatusReport:
    """Send `prefix` + ESC A and read the status byte; `PrinterSilent` if none comes in time."""
    await transport.write(prefix + STATUS_QUERY)
    try:
        reply = await read_exactly(transport, 1, timeout)
    except TransportTimeout as err:
        raise PrinterSilent(
            f"no answer to the status query (ESC A) within {timeout:g} s: the printer is off or "
            "unplugged, or this connection cannot read (then turn STATUS_QUERY off)"
        ) from err
    return status_report(decode_status(reply[0]))
