"""ESC/POS receipt and label printers: pages as `GS v 0` raster, status from `DLE EOT 1..4`.

A label counts as printed when its bytes were written and the status read right after them says
the printer can print: ESC/POS has no print confirmation, so a label that was on its way when the
paper ran out may be printed again when the job resumes (never left out).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from drivers.escpos.profiles import DEFAULT_PROFILE, ModelProfile, model_profiles
from drivers.escpos.protocol import (
    BAND_LAYOUTS,
    INIT,
    STATUS_QUERIES,
    BandLayout,
    CutMode,
    EscposStatus,
    decode_status,
    encode_label,
    is_valid_status_byte,
)
from drivers.kit import (
    Condition,
    ConnectedDriver,
    DriverContext,
    LabelPrinterStatus,
    Machine,
    MachineProperty,
    PageFormat,
    PrinterSilent,
    PrintFailed,
    PrintJob,
    PrintOption,
    RenderOptions,
    SettingDef,
    SettingValidationError,
    SettingValue,
    StatusReport,
    connection_setting,
    int_range,
    labels,
    poll_interval_setting,
    raw_copies,
    reporting,
    threshold_settings,
)
from drivers.transport import (
    Transport,
    TransportError,
    TransportTimeout,
    discard_received,
    drain_input,
)

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True, slots=True)
class EscposTiming:
    """How long the driver waits for the printer's status replies, in seconds."""

    # A printer answers DLE EOT the moment it receives it, even mid-print; 2 s also covers a busy
    # 9600-baud serial line.
    status_timeout: float = 2.0
    # After a label the query queues behind the label's bytes in the printer's receive buffer,
    # which drains only as fast as the printer prints: a few seconds for a long label.
    label_status_timeout: float = 10.0
    # Once the printer has started answering, each further reply byte comes within this time, even
    # on a slow line (a 1200-baud link or a congested Wi-Fi bridge answers a byte in ~10-100 ms).
    reply_byte_gap: float = 1.0


DEFAULT_TIMING = EscposTiming()
# All four real-time status queries in one write; the printer answers one byte each, in order.
STATUS_QUERY = b"".join(STATUS_QUERIES[n] for n in (1, 2, 3, 4))
STATUS_REPLY_BYTES = 4
# Epson printers run `DLE EOT n` the moment its bytes arrive, even inside image data, so every
# such triple sent before a status query adds one reply byte ahead of the query's own.
_REALTIME_STATUS_REQUEST = re.compile(rb"\x10\x04[\x01-\x04]")
MM_PER_INCH = 25.4
_CUT_MODES: Mapping[str, CutMode] = {"full": "full", "partial": "partial", "none": "none"}
# Printable width in dots by paper width (mm) and resolution: 72 mm of 80 mm paper, 48 mm of 58 mm
# (Epson TM-T20/T88 and most clones; 180 dpi models print 512 and 360 dots).
PRINTABLE_DOTS: Mapping[tuple[int, int], int] = {
    (80, 203): 576,
    (80, 180): 512,
    (58, 203): 384,
    (58, 180): 360,
}


@dataclass(frozen=True, slots=True)
class _JobOptions:
    cut: CutMode
    feed_dots: int
    layout: BandLayout
    status: bool
    timing: EscposTiming


def validate_profile(value: SettingValue) -> None:
    """Setting validator: a python-escpos capability profile name."""
    known = model_profiles()
    if str(value) not in known:
        raise SettingValidationError(
            f"Unknown printer profile '{value}'; known: {', '.join(sorted(known))}"
        )


class EscposDriver(ConnectedDriver[None]):
    """ESC/POS printers over TCP, serial, USB or a device file; one instance serves all machines."""

    SLUG = "escpos"
    NAME = "ESC/POS printer"
    DESCRIPTION = "Epson-compatible receipt and label printers (ESC/POS raster, DLE EOT status)"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("tcp://192.168.1.60:9100"),
        "PAPER_WIDTH_MM": {
            "name": "Paper width",
            "description": "Width of the paper roll (80 mm prints 72 mm wide, 58 mm prints 48 mm)",
            "default": 80,
            "validator": int,
            "choices": [("80", "80 mm"), ("58", "58 mm")],
            "units": "mm",
        },
        "PRINT_WIDTH_DOTS": {
            "name": "Printable width",
            "description": "Printable width in dots; 0 takes it from paper width and resolution",
            "default": 0,
            "validator": [int, int_range(0, 4096, " (0: from the paper width)")],
            "units": "dots",
        },
        "DPI": {
            "name": "Resolution",
            "description": "Print head resolution (most printers 203, Epson TM-T88 180)",
            "default": 203,
            "validator": int,
            "choices": [("203", "203 dpi"), ("180", "180 dpi")],
        },
        "CUT": {
            "name": "Cut",
            "description": "Cut after each label",
            "default": "full",
            "choices": [("full", "Full cut"), ("partial", "Partial cut"), ("none", "No cut")],
        },
        "FEED_MM": {
            "name": "Feed before cut",
            "description": "Paper fed after each label, before the cut (the head-to-cutter distance)",
            "default": 0,
            "validator": [int, int_range(0, 100)],
            "units": "mm",
        },
        **threshold_settings(),
        "PROFILE": {
            "name": "Printer model",
            "description": "python-escpos capability profile, e.g. TM-T88V or NT-5890K: its printable "
            "width and resolution are used unless PRINT_WIDTH_DOTS is set; 'default' assumes nothing",
            "default": DEFAULT_PROFILE,
            "validator": validate_profile,
        },
        "BUFFER": {
            "name": "Image buffer",
            "description": "How large a raster band the printer takes at once",
            "default": "default",
            "choices": [
                ("default", "Default (bands of 255 rows)"),
                ("small-buffer", "Small buffer (4 KB bands, cheap clones)"),
                ("large-buffer", "Large buffer (whole label, Epson TM)"),
            ],
        },
        "STATUS_QUERY": {
            "name": "Read status",
            "description": "Ask the printer for its status (off for write-only links)",
            "default": True,
            "validator": bool,
        },
        "POLL_INTERVAL": poll_interval_setting(30),
    }
    PRINT_OPTIONS: ClassVar[tuple[PrintOption, ...]] = (
        PrintOption(
            "cut",
            "choice",
            "Cut",
            "Cut after each label of this job; the machine's CUT setting if absent.",
            choices=(("full", "Full cut"), ("partial", "Partial cut"), ("none", "No cut")),
        ),
    )

    def __init__(self, context: DriverContext, timing: EscposTiming = DEFAULT_TIMING) -> None:
        super().__init__(context)
        self.timing = timing

    def new_state(self) -> None:
        """ESC/POS printers keep no per-machine state beyond the link."""

    async def poll(self, machine: Machine) -> None:
        """Query `DLE EOT 1..4` and show status, status text and paper/cover properties."""
        link = self._connections.get(machine).link
        if not machine.get_setting("STATUS_QUERY", "D"):
            await link.ensure_connected()
            machine.set_status(LabelPrinterStatus.CONNECTED)
            machine.set_status_text("Connected; status queries are off")
            machine.set_properties(())
            return
        async with link.exchange() as transport:
            await discard_received(transport)
            timing = self.timing
            report = await query_status(transport, timing.status_timeout, timing.reply_byte_gap)
        report.apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """The printable width in dots at the head's resolution; paper is continuous.

        PRINT_WIDTH_DOTS wins; then the model profile's width and resolution; then paper width.
        """
        model = _model(machine)
        dpi = model.dpi if model is not None and model.dpi else int(machine.get_setting("DPI", "D"))
        width = int(machine.get_setting("PRINT_WIDTH_DOTS", "D"))
        if width <= 0 and model is not None and model.width_dots:
            width = model.width_dots
        if width <= 0:
            paper = int(machine.get_setting("PAPER_WIDTH_MM", "D"))
            width = PRINTABLE_DOTS.get((paper, dpi), round((paper - 8) * dpi / MM_PER_INCH))
        return PageFormat(dpi=dpi, width_dots=max(width, 1))

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold and dithering from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Send each label still to print, checking the status before the job and after each label.

        Raw jobs (`job.raw`, ESC/POS bytes) are sent unchanged, once per copy.
        """
        model = _model(machine)
        if job.raw is None and model is not None and not model.raster:
            raise PrintFailed(f"the {model.title} profile says this printer cannot print images")
        options = _job_options(machine, job, self.timing)
        link = self._connections.get(machine).link
        async with link.exchange() as link_transport:
            transport = reporting(link_transport, job)
            if options.status:
                await discard_received(transport)
                timing = self.timing
                report = await query_status(transport, timing.status_timeout, timing.reply_byte_gap)
                report.raise_if_blocking(machine)
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    await _accepted(machine, transport, job, copy + 1, options, job.raw)
                return
            await transport.write(INIT)
            async for number, page in labels(job):
                data = await asyncio.to_thread(_encode, page, options)
                await transport.write(data)
                await _accepted(machine, transport, job, number + 1, options, data)


def realtime_requests(sent: bytes) -> int:
    """How many `DLE EOT 1..4` an Epson printer finds in `sent` (each gets a one-byte reply)."""
    return len(_REALTIME_STATUS_REQUEST.findall(sent))


async def query_status(
    transport: Transport,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    byte_gap: float,
    sent: bytes = b"",
) -> StatusReport:
    """Send `DLE EOT 1..4` and read the four reply bytes; `PrinterSilent` if they do not come.

    The reply may take `timeout` to begin; then each further byte comes within `byte_gap`.
    `sent` is what was written since the last complete reply: status requests hidden in it
    (image bytes that happen to read `10 04 n`) may be answered first, and those bytes are
    skipped. A reply whose bytes lack the fixed bits is out of step: the line is drained and the
    printer asked once more, so a misread reply never counts as a fault.
    """
    reply = await _exchange(transport, timeout, byte_gap, realtime_requests(sent))
    if not all(map(is_valid_status_byte, reply)):
        await drain_input(transport)
        reply = await _exchange(transport, timeout, byte_gap, 0)
    try:
        status = decode_status(dict(zip((1, 2, 3, 4), reply, strict=True)))
    except ValueError as err:
        raise TransportError(
            f"unexpected status reply {reply.hex(' ')}: is this an ESC/POS printer? ({err})"
        ) from err
    return status_report(status)


async def _exchange(
    transport: Transport,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    byte_gap: float,
    unsolicited: int,
) -> bytes:
    await transport.write(STATUS_QUERY)
    try:
        return await _read_reply(transport, timeout, byte_gap, unsolicited)
    except TransportTimeout as err:
        raise PrinterSilent(
            f"no answer to the status query (DLE EOT) within {timeout:g} s: the printer is off, "
            "or cannot send status on this connection (then turn STATUS_QUERY off)"
        ) from err


async def _read_reply(
    transport: Transport,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    byte_gap: float,
    unsolicited: int,
) -> bytes:
    """The query's four reply bytes, after up to `unsolicited` replies to hidden requests.

    Until the query's own reply has begun, a byte may take the whole `timeout` (the printer
    may first have to print what its buffer holds); after that, each further byte comes within
    `byte_gap`. A printer that skips requests inside image data (some clones) sends fewer
    bytes: once the line goes quiet with four or more, the last four are the reply.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    want = unsolicited + STATUS_REPLY_BYTES
    buf = bytearray()
    while len(buf) < want:
        wait = byte_gap if len(buf) > unsolicited else deadline - loop.time()
        try:
            buf += await transport.read(want - len(buf), max(wait, 0.001))
        except TransportTimeout as err:
            if len(buf) >= STATUS_REPLY_BYTES:
                break
            transport.unread(bytes(buf))
            raise TransportTimeout(
                f"{transport.name}: got {len(buf)} of {STATUS_REPLY_BYTES} status bytes"
            ) from err
    return bytes(buf[-STATUS_REPLY_BYTES:])


def status_report(status: EscposStatus) -> StatusReport:
    """Map `DLE EOT` flags to conditions (offline only counts when no cause is given)."""
    conditions: list[Condition] = []
    error = LabelPrinterStatus.ERROR
    if status.unrecoverable:
        conditions.append(Condition(error, "Unrecoverable error: switch the printer off and on"))
    if status.cutter_error:
        conditions.append(Condition(error, "Cutter error"))
    if status.mechanical_error:
        conditions.append(Condition(error, "Mechanical error"))
    if status.auto_recoverable:
        conditions.append(Condition(error, "Print head too hot; printing resumes when it cools"))
    if status.error and not conditions:
        conditions.append(Condition(error, "Printer error"))
    if status.paper_out or status.paper_end_stop:
        conditions.append(Condition(LabelPrinterStatus.NO_MEDIA, "Paper out"))
    elif status.paper_near_end:
        conditions.append(Condition(LabelPrinterStatus.WARNING, "Paper near end", False))
    if status.presenter_waiting:
        # The presenter holds the last label until someone takes it; the next one waits.
        text = "Label waiting in the presenter"
        conditions.append(Condition(LabelPrinterStatus.WARNING, text, False))
    if status.cover_open:
        conditions.append(Condition(error, "Cover open"))
    if status.feed_button or status.feed_button_pressed:
        # The printer is offline only while the button feeds paper; what it receives meanwhile
        # waits in its buffer.
        conditions.append(Condition(LabelPrinterStatus.WARNING, "Feed button pressed", False))
    if status.waiting_for_recovery and not conditions:
        if status.offline:
            conditions.append(Condition(error, "Offline, waiting to go back online"))
        else:
            text = "Waiting to go back online"
            conditions.append(Condition(LabelPrinterStatus.WARNING, text, False))
    if status.offline and not conditions:
        conditions.append(Condition(error, "Printer offline"))
    return StatusReport(tuple(conditions), _properties(status))


def _properties(status: EscposStatus) -> tuple[MachineProperty, ...]:
    paper = "ok"
    if status.paper_out or status.paper_end_stop:
        paper = "out"
    elif status.paper_near_end:
        paper = "near end"
    return (
        MachineProperty("Paper", paper, group="Printer status"),
        MachineProperty("Cover", "open" if status.cover_open else "closed", group="Printer status"),
        MachineProperty("Online", bool(status.online), group="Printer status", type="bool"),
        MachineProperty("Cutter", "error" if status.cutter_error else "ok", group="Printer status"),
    )


async def _accepted(
    machine: Machine,
    transport: Transport,
    job: PrintJob,
    printed: int,
    options: _JobOptions,
    sent: bytes,
) -> None:
    """Count a label as printed once the status after it says the printer can go on.

    `sent` is the label's bytes: status requests hidden in them are answered ahead of ours.
    """
    # No drain here: replies to requests hidden in the label may still be on their way, and
    # `query_status` skips exactly those.
    if options.status:
        timing = options.timing
        timeout = timing.label_status_timeout
        report = await query_status(transport, timeout, timing.reply_byte_gap, sent)
        report.raise_if_blocking(machine)
    job.report_progress(printed)


def _model(machine: Machine) -> ModelProfile | None:
    name = str(machine.get_setting("PROFILE", "D"))
    if name == DEFAULT_PROFILE:
        return None
    return model_profiles().get(name)


def _job_options(machine: Machine, job: PrintJob, timing: EscposTiming) -> _JobOptions:
    dpi = int(machine.get_setting("DPI", "D"))
    layout = BAND_LAYOUTS.get(str(machine.get_setting("BUFFER", "D")), BAND_LAYOUTS["default"])
    cut = job.options.get("cut", machine.get_setting("CUT", "D"))
    return _JobOptions(
        cut=_CUT_MODES.get(str(cut), "full"),
        feed_dots=round(int(machine.get_setting("FEED_MM", "D")) * dpi / MM_PER_INCH),
        layout=layout,
        status=bool(machine.get_setting("STATUS_QUERY", "D")),
        timing=timing,
    )


def _encode(page: Image, options: _JobOptions) -> bytes:
    """One label's bytes (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_label(page, options.cut, options.feed_dots, options.layout)
    except ValueError as err:
        raise PrintFailed(f"this page cannot be printed as ESC/POS: {err}") from err
