"""Zebra ZPL II printers: each page one `^XA...^XZ` format with a `^GF` graphic; real status back.

A label counts as printed when the printer's odometer (SGD `odometer.total_label_count`) counted
it. A job that stops (paper out, pause, lost connection) resumes after the labels the odometer
counted, remembered per machine while the agent runs. Printers without SGD fall back to ESC/POS's
rule: a label counts when its format was sent and the status after it is fine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NoReturn

from drivers.kit import (
    Clock,
    ConnectedDriver,
    DriverContext,
    LabelPrinterStatus,
    Machine,
    PageFormat,
    PrinterNotReady,
    PrinterSilent,
    PrintFailed,
    PrintJob,
    PrintOption,
    RenderOptions,
    SettingDef,
    SettingValidationError,
    SettingValue,
    connection_setting,
    int_range,
    labels,
    poll_interval_setting,
    raw_copies,
    reporting,
    threshold_settings,
)
from drivers.transport import Link, Transport, discard_received, drain_input
from drivers.zpl.protocol import DPMM_TO_DPI, encode_page
from drivers.zpl.status import (
    QUERY_TIMEOUT,
    ZplReading,
    ZplState,
    read_identification,
    read_odometer,
    read_status,
    status_report,
)

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True, slots=True)
class ZplTiming:
    """How long the driver waits for the printer and how often it looks, in seconds."""

    # Each byte of a reply to a status query (see `drivers.zpl.status.QUERY_TIMEOUT`).
    query_timeout: float = QUERY_TIMEOUT
    # While labels print the odometer is read this often; a label takes 0.3 s or more to print.
    odometer_interval: float = 0.1
    # With no label counted for this long, ask the printer whether it stopped (paper out, pause).
    stall_status_after: float = 1.0
    # No label counted for this long with no fault reported: the printer is not printing our job
    # (a 6 inch label at 1 inch/s takes 6 s).
    stall_timeout: float = 20.0
    # Before resuming a job the printer may still be printing its earlier labels: wait this long,
    # asking every `buffer_poll_interval`.
    buffer_wait_timeout: float = 10.0
    buffer_poll_interval: float = 0.2


DEFAULT_TIMING = ZplTiming()
# Formats sent ahead of the odometer, so the printer always has the next label in its buffer.
FORMATS_AHEAD = 2
# Copies of a one-page document go out as one format (`^PQ`) of at most this many labels: a stop
# request (cancel, shutdown) takes effect after the formats already sent.
MAX_RUN = 10
_FORMAT_DELIMITERS = re.compile(r"\^XA|\^XZ", re.IGNORECASE)


def validate_init(value: SettingValue) -> None:
    """Setting validator: plain ASCII ZPL without `^XA`/`^XZ` (it goes inside every format)."""
    text = str(value)
    if not text.isascii():
        raise SettingValidationError("Use ASCII ZPL commands only")
    if _FORMAT_DELIMITERS.search(text):
        raise SettingValidationError("Leave out ^XA and ^XZ: the init goes inside each format")


@dataclass(frozen=True, slots=True)
class _Run:
    """Consecutive labels showing the same page: one format with `^PQ count`."""

    page: Image
    first: int
    count: int

    @property
    def end(self) -> int:
        return self.first + self.count


@dataclass(frozen=True, slots=True)
class _FormatOptions:
    darkness: int | None
    speed: int | None
    init: str


class ZplDriver(ConnectedDriver[ZplState]):
    """Zebra ZPL II printers over TCP, serial, USB or a device file."""

    SLUG = "zpl"
    NAME = "Zebra ZPL printer"
    DESCRIPTION = "Zebra and ZPL-compatible label printers (^GF graphics, ~HS/~HQES status)"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("tcp://192.168.1.70:9100"),
        "DPMM": {
            "name": "Resolution",
            "description": "Print head dots per millimetre (8 = 203 dpi, 12 = 300 dpi)",
            "default": 8,
            "validator": int,
            "choices": [
                ("6", "6 dpmm (152 dpi)"),
                ("8", "8 dpmm (203 dpi)"),
                ("12", "12 dpmm (300 dpi)"),
                ("24", "24 dpmm (600 dpi)"),
            ],
        },
        "LABEL_WIDTH_MM": {
            "name": "Label width",
            "description": "Width of the label (sets ^PW)",
            "default": 100,
            "validator": [int, int_range(1, 400)],
            "units": "mm",
        },
        "LABEL_HEIGHT_MM": {
            "name": "Label height",
            "description": "Length of the label; 0 takes each page's own length",
            "default": 0,
            "validator": [int, int_range(0, 2000, " (0: the page's length)")],
            "units": "mm",
        },
        "DARKNESS": {
            "name": "Darkness",
            "description": "Print darkness 0-30 (~SD); -1 keeps the printer's setting",
            "default": -1,
            "validator": [int, int_range(-1, 30, " (-1: the printer's setting)")],
        },
        "SPEED": {
            "name": "Speed",
            "description": "Print speed in inches per second (^PR); 0 keeps the printer's",
            "default": 0,
            "validator": [int, int_range(0, 14, " (0: the printer's setting)")],
            "units": "in/s",
        },
        **threshold_settings(),
        "INIT": {
            "name": "Init commands",
            "description": "Raw ZPL put at the start of every format, e.g. ^MNY^MTD",
            "default": "",
            "validator": validate_init,
        },
        "STATUS_QUERY": {
            "name": "Read status",
            "description": "Ask the printer for its status and label count (off for write-only "
            "links: file://, a one-way /dev/usb/lp0, serial without RX)",
            "default": True,
            "validator": bool,
        },
        "POLL_INTERVAL": poll_interval_setting(15),
    }
    PRINT_OPTIONS: ClassVar[tuple[PrintOption, ...]] = (
        PrintOption(
            "darkness",
            "integer",
            "Darkness",
            "Print darkness 0-30 (~SD) for this job; the machine's DARKNESS setting if absent.",
            min_value=0,
            max_value=30,
        ),
    )

    def __init__(self, context: DriverContext, timing: ZplTiming = DEFAULT_TIMING) -> None:
        super().__init__(context)
        self.timing = timing

    def new_state(self) -> ZplState:
        """What the driver learns about one printer (odometer support, identification)."""
        return ZplState()

    def forget_printer(self, state: ZplState) -> None:
        """Ask the printer again what it is and what it supports."""
        state.forget_printer()

    async def poll(self, machine: Machine) -> None:
        """Read ~HQES/~HS, ~HI and the odometer; show status, text and properties."""
        connection = self._connections.get(machine)
        state = connection.state
        if not machine.get_setting("STATUS_QUERY", "D"):
            await connection.link.ensure_connected()
            machine.set_status(LabelPrinterStatus.CONNECTED)
            machine.set_status_text("Connected; status queries are off")
            machine.set_properties(())
            return
        async with connection.link.exchange() as transport:
            await discard_received(transport)
            query_timeout = self.timing.query_timeout
            reading = await read_status(transport, state, query_timeout)
            if state.identification is None:
                state.identification = await read_identification(transport, query_timeout)
            odometer = None
            if state.odometer is not False:
                odometer = await read_odometer(transport, query_timeout)
                state.odometer = odometer is not None
        status_report(
            reading,
            identification=state.identification,
            odometer=odometer,
            dpmm=int(machine.get_setting("DPMM", "D")),
        ).apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """Label width (and length, unless 0: continuous) in dots at the head's resolution."""
        dpmm = int(machine.get_setting("DPMM", "D"))
        width = round(int(machine.get_setting("LABEL_WIDTH_MM", "D")) * dpmm)
        height_mm = int(machine.get_setting("LABEL_HEIGHT_MM", "D"))
        return PageFormat(
            dpi=DPMM_TO_DPI.get(dpmm, round(dpmm * 25.4)),
            width_dots=max(width, 1),
            height_dots=height_mm * dpmm if height_mm > 0 else None,
        )

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold and dithering from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Send one format per page (`^PQ` for repeats of one page), confirmed by the odometer.

        Raw jobs (`job.raw`, ZPL) are sent unchanged, once per copy.
        """
        connection = self._connections.get(machine)
        if not machine.get_setting("STATUS_QUERY", "D"):
            await _print_blind(connection.link, job, _format_options(machine, job))
            return
        async with connection.link.exchange() as link_transport:
            transport = reporting(link_transport, job)
            await discard_received(transport)
            printer = _Printer(
                machine, transport, connection.state, self.timing, self.context.clock
            )
            await printer.raise_if_blocking()
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    # A raw job may ask the printer things itself; drop its answers.
                    await drain_input(transport)
                    await printer.raise_if_blocking()
                    job.report_progress(copy + 1)
                return
            options = _format_options(machine, job)
            state = connection.state
            odometer = await printer.odometer() if state.odometer is not False else None
            if odometer is None:
                state.odometer = False
                await _print_unconfirmed(printer, job, options)
            else:
                state.odometer = True
                await _print_counted(printer, job, options, odometer)


@dataclass(frozen=True, slots=True)
class _Printer:
    """One exchange with a machine's printer during a job: its queries, timing and clock."""

    machine: Machine
    transport: Transport
    state: ZplState
    timing: ZplTiming
    clock: Clock

    async def status(self) -> ZplReading:
        return await read_status(self.transport, self.state, self.timing.query_timeout)

    async def raise_if_blocking(self) -> None:
        """Read the status; when the printer cannot print, show why and make the job wait."""
        status_report(await self.status()).raise_if_blocking(self.machine)

    async def odometer(self) -> int | None:
        return await read_odometer(self.transport, self.timing.query_timeout)

    async def require_odometer(self) -> int:
        odometer = await self.odometer()
        if odometer is None:
            raise PrinterSilent("the printer stopped answering the odometer query")
        return odometer

    async def confirm(self, job: PrintJob, until: int) -> None:
        """Read the odometer until it counted label `until`; raise if the printer stopped."""
        pending = self.state.pending
        if pending is None:
            raise RuntimeError("confirm() before the job's odometer was read")
        timing, clock = self.timing, self.clock
        last, last_change = -1, clock.monotonic()
        next_check = last_change + timing.stall_status_after
        while True:
            printed = pending.printed(await self.require_odometer())
            job.report_progress(printed)
            if printed >= until:
                return
            now = clock.monotonic()
            if printed != last:
                last, last_change, next_check = printed, now, now + timing.stall_status_after
            elif now >= next_check:
                await self.raise_if_blocking()
                next_check = now + timing.stall_status_after
            if now - last_change >= timing.stall_timeout:
                self.not_ready(f"Took the labels but printed none for {timing.stall_timeout:g} s")
            await clock.sleep(timing.odometer_interval)

    async def wait_for_empty_buffer(self) -> None:
        """Wait until the printer printed what it holds (an earlier attempt's labels)."""
        deadline = self.clock.monotonic() + self.timing.buffer_wait_timeout
        while True:
            host = (await self.status()).host
            if host is None or not (host.formats_in_buffer or host.labels_remaining):
                return
            if self.clock.monotonic() >= deadline:
                self.not_ready(f"Still printing {host.labels_remaining} earlier labels")
            await self.clock.sleep(self.timing.buffer_poll_interval)

    def not_ready(self, text: str) -> NoReturn:
        """Show a stalled printer as WARNING and make the job wait."""
        self.machine.set_status(LabelPrinterStatus.WARNING)
        self.machine.set_status_text(text)
        raise PrinterNotReady(text)


async def _print_counted(
    printer: _Printer, job: PrintJob, options: _FormatOptions, odometer: int
) -> None:
    state = printer.state
    start = job.first_label
    pending = state.pending
    if pending is not None and pending.job == job.pk:
        # The last attempt's formats may still be printing: count them once they are done.
        await printer.wait_for_empty_buffer()
        odometer = await printer.require_odometer()
        start = max(start, pending.printed(odometer))
        job.report_progress(start)
    pending = state.start_job(job.pk, odometer, start)
    ends: list[int] = []
    index = 0
    async for run in _runs(job, start):
        if index >= FORMATS_AHEAD:
            await printer.confirm(job, ends[index - FORMATS_AHEAD])
            if job.stop_requested:
                break
        data = await asyncio.to_thread(_encode, run, options)
        pending.sent = run.end
        await printer.transport.write(data)
        ends.append(run.end)
        index += 1
    if ends:
        await printer.confirm(job, ends[-1])
    state.pending = None


async def _print_unconfirmed(printer: _Printer, job: PrintJob, options: _FormatOptions) -> None:
    async for run in _runs(job, job.first_label):
        await printer.transport.write(await asyncio.to_thread(_encode, run, options))
        await printer.raise_if_blocking()
        job.report_progress(run.end)


async def _print_blind(link: Link, job: PrintJob, options: _FormatOptions) -> None:
    """Without status: a label counts as printed once its format was written."""
    async with link.exchange() as link_transport:
        transport = reporting(link_transport, job)
        if job.raw is not None:
            for copy in raw_copies(job):
                await transport.write(job.raw)
                job.report_progress(copy + 1)
            return
        async for run in _runs(job, job.first_label):
            await transport.write(await asyncio.to_thread(_encode, run, options))
            job.report_progress(run.end)


async def _runs(job: PrintJob, start: int) -> AsyncIterator[_Run]:
    """Labels from `start` in `labels` order; repeats of a one-page document merged into runs.

    A run is at most `MAX_RUN` labels, so a stop request ends a long job of copies soon.
    """
    run: _Run | None = None
    async for number, page in labels(job):
        if number < start:
            continue
        if run is not None and job.page_count == 1 and run.end == number and run.count < MAX_RUN:
            run = _Run(page, run.first, run.count + 1)
            continue
        if run is not None:
            yield run
        run = _Run(page, number, 1)
    if run is not None and not job.stop_requested:
        # Stopped: the labels gathered since the last run was sent are left unsent.
        yield run


def _format_options(machine: Machine, job: PrintJob) -> _FormatOptions:
    darkness = int(job.options.get("darkness", machine.get_setting("DARKNESS", "D")))
    speed = int(machine.get_setting("SPEED", "D"))
    return _FormatOptions(
        darkness=darkness if darkness >= 0 else None,
        speed=speed if speed > 0 else None,
        init=str(machine.get_setting("INIT", "D")),
    )


def _encode(run: _Run, options: _FormatOptions) -> bytes:
    """One format (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_page(run.page, run.count, options.darkness, options.speed, options.init)
    except (ValueError, UnicodeEncodeError) as err:
        raise PrintFailed(f"this page cannot be printed as ZPL: {err}") from err
