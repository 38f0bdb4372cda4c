"""ZPL status: ~HQES, ~HS, ~HI and the SGD odometer read from a printer, mapped to conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from drivers.kit import (
    Condition,
    LabelPrinterStatus,
    MachineProperty,
    Media,
    PrinterSilent,
    StatusReport,
)
from drivers.transport import Transport, TransportError, TransportTimeout, drain_input, read_until
from drivers.zpl.protocol import (
    ETX,
    EXTENDED_STATUS_QUERY,
    HOST_IDENTIFICATION_QUERY,
    HOST_STATUS_QUERY,
    ZplError,
    ZplExtendedStatus,
    ZplHostStatus,
    ZplIdentification,
    ZplWarning,
    parse_extended_status,
    parse_host_identification,
    parse_host_status,
    sgd_getvar,
)

# A Zebra answers host queries within tens of ms, even while printing; 2 s also covers a busy
# 9600-baud serial line. It bounds the wait for each byte, so a slow line that keeps sending
# is not taken for a printer that is off; `REPLY_MAX_TIME` bounds a whole reply. The default of
# the driver's `ZplTiming.query_timeout`, which every query below is given.
QUERY_TIMEOUT = 2.0
REPLY_MAX_TIME = 30.0
ODOMETER_QUERY = sgd_getvar("odometer.total_label_count")


@dataclass(slots=True)
class PendingJob:
    """Where the odometer stood when an attempt at a job started, and how far it got."""

    job: str
    odometer: int
    first: int
    sent: int

    def printed(self, odometer: int) -> int:
        """Labels of the job printed by now: counted by the odometer, at most those sent."""
        return min(self.first + max(odometer - self.odometer, 0), self.sent)


@dataclass(slots=True)
class ZplState:
    """What the driver knows about one machine's printer (None: not asked yet)."""

    extended: bool | None = None
    odometer: bool | None = None
    identification: ZplIdentification | None = None
    pending: PendingJob | None = None

    def forget_printer(self) -> None:
        """Ask again what the printer supports (after a restart or a settings change)."""
        self.extended = self.odometer = None
        self.identification = None

    def start_job(self, job: str, odometer: int, first: int) -> PendingJob:
        """Remember the odometer at the start of an attempt."""
        self.pending = PendingJob(job, odometer, first, first)
        return self.pending


@dataclass(frozen=True, slots=True)
class ZplReading:
    """Replies to ~HS and ~HQES; either may be missing, never both."""

    host: ZplHostStatus | None
    extended: ZplExtendedStatus | None


async def read_status(transport: Transport, state: ZplState, query_timeout: float) -> ZplReading:
    """Ask ~HQES (if the printer answers it), then ~HS; `PrinterSilent` if neither answers.

    Each reply byte may take `query_timeout` seconds (so may the silence before the reply).

    Zebra printers stay silent to ~HS in some faults (media out, head open, ribbon out); ~HQES
    then tells which, so ~HS is not asked when ~HQES reports an error other than pause.
    """
    extended = None
    if state.extended is not False:
        extended = await _query(
            transport, EXTENDED_STATUS_QUERY, 1, parse_extended_status, query_timeout
        )
        if extended is not None:
            state.extended = True
            if int(extended.errors) & ~int(ZplError.PAUSED):
                return ZplReading(None, extended)
    host = await _query(transport, HOST_STATUS_QUERY, 3, parse_host_status, query_timeout)
    if host is None and extended is None:
        raise PrinterSilent(
            f"no answer to ~HS or ~HQES within {query_timeout:g} s: the printer is off or "
            "unreachable (older printers also stay silent to ~HS when out of paper or open)"
        )
    if extended is None and state.extended is None:
        state.extended = False
    return ZplReading(host, extended)


async def read_identification(
    transport: Transport, query_timeout: float
) -> ZplIdentification | None:
    """Ask ~HI (model, firmware, dots per mm); None if there is no answer."""
    return await _query(
        transport, HOST_IDENTIFICATION_QUERY, 1, parse_host_identification, query_timeout
    )


async def read_odometer(transport: Transport, query_timeout: float) -> int | None:
    """Read SGD `odometer.total_label_count`; None if the printer does not answer with a number."""
    await transport.write(ODOMETER_QUERY)
    try:
        await _read_until(transport, b'"', REPLY_MAX_TIME, query_timeout)
        value = await _read_until(transport, b'"', REPLY_MAX_TIME, query_timeout)
    except TransportTimeout:
        await drain_input(transport)
        return None
    text = value[:-1].strip()
    return int(text) if text.isdigit() else None


def status_report(
    reading: ZplReading,
    *,
    identification: ZplIdentification | None = None,
    odometer: int | None = None,
    dpmm: int | None = None,
) -> StatusReport:
    """Map ~HQES and ~HS flags to conditions; properties from everything that was read."""
    conditions: list[Condition] = []
    extended, host = reading.extended, reading.host
    if extended is not None:
        known = 0
        for flag, status, text in _ERRORS:
            known |= int(flag)
            if flag in extended.errors:
                conditions.append(Condition(status, text))
        unknown = int(extended.errors) & ~known
        if unknown:
            conditions.append(Condition(LabelPrinterStatus.ERROR, f"Printer error {unknown:#x}"))
        conditions += [
            Condition(LabelPrinterStatus.WARNING, text, False)
            for flag, text in _WARNINGS
            if flag in extended.warnings
        ]
    if host is not None:
        conditions += [
            Condition(status, text, blocks)
            for name, status, text, blocks in _HOST_FLAGS
            if getattr(host, name)
        ]
    elif not conditions:
        conditions.append(
            Condition(LabelPrinterStatus.WARNING, "No answer to ~HS; ~HQES reports no error", False)
        )
    if identification is not None and dpmm is not None and identification.dpmm != dpmm:
        conditions.append(
            Condition(
                LabelPrinterStatus.WARNING,
                f"The printer has {identification.dpmm} dots/mm but DPMM is {dpmm}: "
                "labels print at the wrong size",
                False,
            )
        )
    unique = tuple({c.text: c for c in conditions}.values())
    return StatusReport(unique, _properties(reading, identification, odometer), _media(reading))


def _media(reading: ZplReading) -> Media | None:
    """The media as ~HS and ~HQES tell: loaded or out, and ~HS's label length in dots.

    A Zebra reports the length it measured (or was given with ^LL) and no width or kind. None
    when neither reply says anything about the media.
    """
    host, extended = reading.host, reading.extended
    out = (extended is not None and ZplError.MEDIA_OUT in extended.errors) or bool(
        host and host.paper_out
    )
    if out:
        return Media(loaded=False)
    if host is None:
        return None
    return Media(length_dots=host.label_length_dots or None)


_ParsedT = TypeVar("_ParsedT")


async def _read_until(
    transport: Transport,
    terminator: bytes,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    query_timeout: float,
) -> bytes:
    """A reply up to `terminator`: each byte within `query_timeout`, all within `timeout`."""
    return await read_until(transport, terminator, timeout, idle_timeout=query_timeout)


async def _query(
    transport: Transport,
    query: bytes,
    frames: int,
    parse: Callable[[bytes], _ParsedT],
    query_timeout: float,
) -> _ParsedT | None:
    """Send a query and parse `frames` STX...ETX replies; None (input dropped) if they do not come."""
    await transport.write(query)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLY_MAX_TIME
    reply = bytearray()
    try:
        for _ in range(frames):
            remaining = max(deadline - loop.time(), 0.001)
            reply += await _read_until(transport, ETX, remaining, query_timeout)
    except TransportTimeout:
        await drain_input(transport)
        return None
    try:
        return parse(bytes(reply))
    except ValueError as err:
        raise TransportError(f"unexpected reply to {query.decode()}: {err}") from err


def _properties(
    reading: ZplReading, identification: ZplIdentification | None, odometer: int | None
) -> tuple[MachineProperty, ...]:
    props: list[MachineProperty] = []
    if identification is not None:
        props += [
            MachineProperty("Model", identification.model, group="Printer"),
            MachineProperty("Firmware", identification.firmware, group="Printer"),
            MachineProperty("Dots per mm", identification.dpmm, group="Printer", type="int"),
        ]
    if odometer is not None:
        props.append(MachineProperty("Labels printed", odometer, group="Printer", type="int"))
    host, extended = reading.host, reading.extended
    errors = extended.errors if extended is not None else ZplError(0)
    group = "Printer status"
    if host is not None or extended is not None:
        paper_out = ZplError.MEDIA_OUT in errors or bool(host and host.paper_out)
        head_open = ZplError.HEAD_OPEN in errors or bool(host and host.head_up)
        ribbon_out = ZplError.RIBBON_OUT in errors or bool(host and host.ribbon_out)
        paused = ZplError.PAUSED in errors or bool(host and host.paused)
        props += [
            MachineProperty("Paper", "out" if paper_out else "ok", group=group),
            MachineProperty("Head", "open" if head_open else "closed", group=group),
            MachineProperty("Ribbon", "out" if ribbon_out else "ok", group=group),
            MachineProperty("Paused", paused, group=group, type="bool"),
        ]
    if host is not None:
        props += [
            MachineProperty("Formats in buffer", host.formats_in_buffer, group=group, type="int"),
            MachineProperty("Labels remaining", host.labels_remaining, group=group, type="int"),
            MachineProperty("Label waiting", host.label_waiting, group=group, type="bool"),
        ]
    return tuple(props)


_E = LabelPrinterStatus.ERROR
# ~HQES error bits: each stops printing.
_ERRORS: tuple[tuple[ZplError, LabelPrinterStatus, str], ...] = (
    (ZplError.MEDIA_OUT, LabelPrinterStatus.NO_MEDIA, "Paper out"),
    (ZplError.RIBBON_OUT, LabelPrinterStatus.NO_MEDIA, "Ribbon out"),
    (ZplError.HEAD_OPEN, _E, "Print head open"),
    (ZplError.CUTTER_FAULT, _E, "Cutter fault"),
    (ZplError.PRINTHEAD_OVER_TEMPERATURE, _E, "Print head too hot"),
    (ZplError.MOTOR_OVER_TEMPERATURE, _E, "Motor too hot"),
    (ZplError.BAD_PRINTHEAD_ELEMENT, _E, "Bad print head element"),
    (ZplError.PRINTHEAD_DETECTION_ERROR, _E, "Print head not detected"),
    (ZplError.INVALID_FIRMWARE_CONFIG, _E, "Invalid firmware configuration"),
    (ZplError.PRINTHEAD_THERMISTOR_OPEN, _E, "Print head thermistor open"),
    (ZplError.PAPER_JAM_DURING_RETRACT, LabelPrinterStatus.PAPER_JAM, "Paper jam during retract"),
    (ZplError.PRESENTER_NOT_RUNNING, _E, "Presenter not running"),
    (ZplError.PAPER_FEED_ERROR, LabelPrinterStatus.PAPER_JAM, "Paper feed error"),
    (
        ZplError.CLEAR_PAPER_PATH_FAILED,
        LabelPrinterStatus.PAPER_JAM,
        "Clearing the paper path failed",
    ),
    (ZplError.PAUSED, LabelPrinterStatus.WARNING, "Paused"),
    (ZplError.RETRACT_TIMEOUT, _E, "Retract timeout"),
    (ZplError.BLACK_MARK_CALIBRATE_ERROR, _E, "Black mark calibration failed"),
    (ZplError.BLACK_MARK_NOT_FOUND, _E, "Black mark not found"),
)
# ~HQES warning bits: the printer still prints (higher bits are peel and presenter sensor states).
_WARNINGS: tuple[tuple[ZplWarning, str], ...] = (
    (ZplWarning.CALIBRATE_MEDIA, "Media needs calibration"),
    (ZplWarning.CLEAN_PRINTHEAD, "Clean the print head"),
    (ZplWarning.REPLACE_PRINTHEAD, "Replace the print head"),
    (ZplWarning.PAPER_NEAR_END, "Paper near end"),
)
# ~HS flags: (field, status, text, stops printing).
_HOST_FLAGS: tuple[tuple[str, LabelPrinterStatus, str, bool], ...] = (
    ("paper_out", LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    ("ribbon_out", LabelPrinterStatus.NO_MEDIA, "Ribbon out", True),
    ("head_up", _E, "Print head open", True),
    ("over_temperature", _E, "Print head too hot", True),
    # In diagnostic mode the printer prints what it receives as hex instead of running it.
    ("diagnostic_mode", _E, "Communications diagnostic mode is on", True),
    ("paused", LabelPrinterStatus.WARNING, "Paused", True),
    ("under_temperature", LabelPrinterStatus.WARNING, "Print head too cold", False),
    # Peel-off and tear-off with a taken-label sensor: the next label waits until this one is
    # taken, so it is shown but does not fail the job.
    ("label_waiting", LabelPrinterStatus.WARNING, "Label waiting to be taken (peel-off)", False),
    ("buffer_full", LabelPrinterStatus.WARNING, "Receive buffer full", False),
    ("corrupt_ram", LabelPrinterStatus.WARNING, "Configuration lost (corrupt RAM)", False),
)
