"""TSPL label printers (TSC, Gprinter, cheap 4x6 printers in TSPL mode): BITMAP labels, ESC ! ? status.

A label counts as printed when its bytes were sent and the status byte read right after them
shows nothing that stops the printer, or shows it paused (a paused printer keeps the label and
prints it when it goes on). TSPL has no label counter every model answers, so a label the
printer took just before it stopped (paper out, head open) may print again when the job
resumes; a label is never left out.

Repeats of a one-page document send only `PRINT 1`: the image stays in the printer's buffer
until the next `CLS`. Each exchange (a job, a resumed job) starts with a whole label.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from drivers.kit import (
    ConnectedDriver,
    DriverContext,
    LabelPrinterStatus,
    Machine,
    PageFormat,
    PrinterSilent,
    PrintFailed,
    PrintJob,
    PrintOption,
    RenderOptions,
    SettingDef,
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
from drivers.tspl.protocol import (
    MODEL_QUERY,
    PRINT_AGAIN,
    STATUS_QUERY,
    LabelSetup,
    MediaType,
    TsplStatus,
    decode_model,
    decode_status,
    encode_label,
    encode_setup,
)
from drivers.tspl.status import status_report

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True, slots=True)
class TsplTiming:
    """How long the driver waits for the printer's replies, in seconds."""

    # TSPL printers answer ESC ! ? the moment it arrives, even while printing or in an error
    # state; 2 s also covers a busy 9600-baud serial line.
    status_timeout: float = 2.0
    # After a label the query queues behind the label's bytes, which a USB-serial printer takes
    # at its own pace (a 4x6 inch bitmap is 120 KB).
    label_status_timeout: float = 10.0
    # ~!T is answered at once by the printers that know it; others stay silent, so a short wait.
    model_timeout: float = 1.0
    # Once the model name began, the rest of its line follows within this time.
    model_byte_gap: float = 0.05


DEFAULT_TIMING = TsplTiming()
MEDIA_CHOICES: Mapping[str, MediaType] = {
    "gap": "gap",
    "mark": "mark",
    "continuous": "continuous",
}
# Status bits that do not stop a label the printer took from coming out.
_STILL_PRINTS = TsplStatus.PRINTING
# A model name is a few words; more is not the printer answering ~!T.
MAX_MODEL_REPLY = 64


@dataclass(slots=True)
class TsplState:
    """What the driver learnt about one printer: its model name (None: not asked yet)."""

    model: str | None = None
    model_asked: bool = False

    def forget(self) -> None:
        self.model = None
        self.model_asked = False


class TsplDriver(ConnectedDriver[TsplState]):
    """TSPL / TSPL2 printers over TCP, serial, USB or a device file."""

    SLUG = "tspl"
    NAME = "TSPL label printer"
    DESCRIPTION = "TSC, Gprinter and TSPL-compatible label printers (BITMAP labels, ESC ! ? status)"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("tcp://192.168.1.90:9100"),
        "DPI": {
            "name": "Resolution",
            "description": "Print head resolution (TE200/TE210: 203, TE300/TE310: 300)",
            "default": 203,
            "validator": int,
            "choices": [("203", "203 dpi"), ("300", "300 dpi"), ("600", "600 dpi")],
        },
        "LABEL_WIDTH_MM": {
            "name": "Label width",
            "description": "Width of the label (SIZE)",
            "default": 50,
            "validator": [int, int_range(5, 240)],
            "units": "mm",
        },
        "LABEL_HEIGHT_MM": {
            "name": "Label height",
            "description": "Length of one label (SIZE); 0 takes each page's own length",
            "default": 30,
            "validator": [int, int_range(0, 2000, " (0: the page's length)")],
            "units": "mm",
        },
        "MEDIA": {
            "name": "Media",
            "description": "How the printer finds the next label: the gap between labels, a "
            "black mark on the back, or none (continuous)",
            "default": "gap",
            "choices": [
                ("gap", "Labels with gaps (GAP)"),
                ("mark", "Black mark (BLINE)"),
                ("continuous", "Continuous (GAP 0,0)"),
            ],
        },
        "GAP_MM": {
            "name": "Gap",
            "description": "Gap between labels, or black mark height",
            "default": 2.0,
            "validator": float,
            "min_value": 0.0,
            "max_value": 25.4,
            "units": "mm",
        },
        "DENSITY": {
            "name": "Density",
            "description": "Print darkness 0-15 (DENSITY); -1 keeps the printer's setting",
            "default": -1,
            "validator": [int, int_range(-1, 15, " (-1: the printer's setting)")],
        },
        "SPEED": {
            "name": "Speed",
            "description": "Print speed in inches per second (SPEED); 0 keeps the printer's",
            "default": 0,
            "validator": [int, int_range(0, 18, " (0: the printer's setting)")],
            "units": "in/s",
        },
        "DIRECTION": {
            "name": "Direction",
            "description": "Which way the label comes out (DIRECTION): 0 or 1 (turned 180°)",
            "default": 0,
            "validator": int,
            "choices": [("0", "0 (top first)"), ("1", "1 (bottom first)")],
        },
        **threshold_settings(),
        "STATUS_QUERY": {
            "name": "Read status",
            "description": "Ask the printer for its status (off for write-only links: file://, "
            "a one-way /dev/usb/lp0, serial without RX)",
            "default": True,
            "validator": bool,
        },
        "POLL_INTERVAL": poll_interval_setting(30),
    }
    PRINT_OPTIONS: ClassVar[tuple[PrintOption, ...]] = (
        PrintOption(
            "density",
            "integer",
            "Density",
            "Print darkness 0-15 (DENSITY) for this job; the machine's DENSITY setting if absent.",
            min_value=0,
            max_value=15,
        ),
    )

    def __init__(self, context: DriverContext, timing: TsplTiming = DEFAULT_TIMING) -> None:
        super().__init__(context)
        self.timing = timing

    def new_state(self) -> TsplState:
        """The model name, learnt on the first poll."""
        return TsplState()

    def forget_printer(self, state: TsplState) -> None:
        """Ask the model again (after a restart or a settings change)."""
        state.forget()

    async def poll(self, machine: Machine) -> None:
        """Read the status byte (and once, the model); show status, text and properties."""
        connection = self._connections.get(machine)
        if not machine.get_setting("STATUS_QUERY", "D"):
            await connection.link.ensure_connected()
            machine.set_status(LabelPrinterStatus.CONNECTED)
            machine.set_status_text("Connected; status queries are off")
            machine.set_properties(())
            return
        state = connection.state
        async with connection.link.exchange() as transport:
            await discard_received(transport)
            status = await read_status(transport, self.timing.status_timeout)
            if not state.model_asked:
                state.model = await query_model(transport, self.timing)
                state.model_asked = True
        status_report(status, state.model).apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """Label width (and length, unless continuous) in dots at the head's resolution."""
        setup = _setup(machine)
        height = setup.height_mm * setup.dots_per_mm if setup.height_mm else None
        return PageFormat(
            dpi=setup.dpi, width_dots=setup.width_mm * setup.dots_per_mm, height_dots=height
        )

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold and dithering from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Check the printer can print; send the setup, then each label, confirmed by ESC ! ?.

        Raw jobs (`job.raw`, TSPL) are sent unchanged, once per copy.
        """
        connection = self._connections.get(machine)
        setup = _setup(machine)
        density = job.options.get("density")
        if density is not None:
            setup = replace(setup, density=int(density))
        checked = bool(machine.get_setting("STATUS_QUERY", "D"))
        model = connection.state.model
        timing = self.timing
        async with connection.link.exchange() as link_transport:
            transport = reporting(link_transport, job)

            async def accepted(timeout: float, printed: int | None) -> None:  # noqa: ASYNC109
                """Count the label(s) the printer took; raise (the job waits) if it cannot go on."""
                if checked:
                    await discard_received(transport)
                    status = await read_status(transport, timeout)
                    if printed is not None and status & ~_STILL_PRINTS == TsplStatus.PAUSED:
                        # A paused printer keeps what it took and prints it when it goes on.
                        job.report_progress(printed)
                    status_report(status, model).raise_if_blocking(machine)
                if printed is not None:
                    job.report_progress(printed)

            await accepted(timing.status_timeout, None)
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    if checked:
                        # A raw job may ask the printer things itself; drop its answers.
                        await drain_input(transport)
                    await accepted(timing.label_status_timeout, copy + 1)
                return
            setup_sent: bytes | None = None
            in_buffer = False
            async for number, page in labels(job):
                if job.page_count == 1 and in_buffer:
                    data = PRINT_AGAIN
                else:
                    head = _encode_setup(setup, page.height)
                    data = await asyncio.to_thread(_encode, page)
                    if head != setup_sent:
                        data, setup_sent = head + data, head
                await transport.write(data)
                in_buffer = True
                await accepted(timing.label_status_timeout, number + 1)


async def read_status(transport: Transport, timeout: float) -> TsplStatus:  # noqa: ASYNC109 - per-call timeout is the contract
    """Send ESC ! ? and read its byte; `PrinterSilent` if none comes within `timeout` s."""
    await transport.write(STATUS_QUERY)
    try:
        reply = await transport.read(1, timeout)
    except TransportTimeout as err:
        raise PrinterSilent(
            f"no answer to the status query (ESC ! ?) within {timeout:g} s: the printer is off, "
            "or cannot send status on this connection (then turn STATUS_QUERY off)"
        ) from err
    try:
        return decode_status(reply)
    except ValueError as err:
        raise TransportError(f"unexpected status reply {reply.hex(' ')}: {err}") from err


async def query_model(transport: Transport, timing: TsplTiming) -> str | None:
    """Send ~!T and read the model name; None when the printer does not answer it."""
    await transport.write(MODEL_QUERY)
    try:
        reply = bytearray(await transport.read(MAX_MODEL_REPLY, timing.model_timeout))
    except TransportTimeout:
        # A late answer must not be read as the next status byte.
        await drain_input(transport)
        return None
    # The name ends with CR on TSC firmware; clones may end it otherwise, or not at all.
    while b"\r" not in reply and b"\n" not in reply and len(reply) < MAX_MODEL_REPLY:
        try:
            reply += await transport.read(MAX_MODEL_REPLY - len(reply), timing.model_byte_gap)
        except TransportTimeout:
            break
    return decode_model(bytes(reply)) or None


def _setup(machine: Machine) -> LabelSetup:
    density = int(machine.get_setting("DENSITY", "D"))
    speed = int(machine.get_setting("SPEED", "D"))
    return LabelSetup(
        dpi=int(machine.get_setting("DPI", "D")),
        width_mm=int(machine.get_setting("LABEL_WIDTH_MM", "D")),
        height_mm=int(machine.get_setting("LABEL_HEIGHT_MM", "D")),
        media=MEDIA_CHOICES.get(str(machine.get_setting("MEDIA", "D")), "gap"),
        gap_mm=float(machine.get_setting("GAP_MM", "D")),
        density=density if density >= 0 else None,
        speed=speed if speed > 0 else None,
        direction=int(machine.get_setting("DIRECTION", "D")),
    )


def _encode_setup(setup: LabelSetup, page_height: int) -> bytes:
    try:
        return encode_setup(setup, page_height)
    except ValueError as err:
        raise PrintFailed(f"these settings cannot be sent as TSPL: {err}") from err


def _encode(page: Image) -> bytes:
    """One label's bytes (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_label(page)
    except ValueError as err:
        raise PrintFailed(f"this page cannot be printed as TSPL: {err}") from err
