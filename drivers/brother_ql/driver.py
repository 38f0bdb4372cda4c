"""Brother QL label printers: pages as QL raster, each confirmed by the printer's own frames.

Before a job the driver asks ESC i S and checks the printer can print and has the media the LABEL
setting names (other media: the job waits as NO_MEDIA, with what is loaded). Each page then goes
out whole and the driver reads the frames the printer sends by itself while it prints (phase
change, printing completed, phase change back to receiving; an error frame instead when it
stops): a label counts once "printing completed" came. Brother asks for no command while a page
prints, so nothing is sent until then.

Networked QL printers take the same bytes on TCP 9100; whether they answer ESC i S there depends
on the firmware (Brother's network flow sends the job one way and reads status over SNMP): for a
printer that does not, switch STATUS_QUERY off and labels are counted as sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, NoReturn

from drivers.brother_ql.protocol import (
    STATUS_REQUEST,
    STATUS_SIZE,
    Notification,
    PageOptions,
    Phase,
    StatusFrame,
    StatusType,
    decode_status,
    encode_page,
    invalidate,
)
from drivers.brother_ql.status import (
    expected_media,
    frame_conditions,
    media_matches,
    status_report,
)
from drivers.brother_ql.tables import (
    DEFAULT_LABEL,
    DEFAULT_MODEL,
    DPI,
    LABELS,
    MODELS,
    Label,
    Model,
    label_fits,
)
from drivers.kit import (
    BLACK_AND_RED,
    SINGLE_COLOR,
    Condition,
    ConnectedDriver,
    DriverContext,
    LabelPrinterStatus,
    Machine,
    MediaMismatch,
    PageFormat,
    PrinterNotReady,
    PrinterSilent,
    PrintFailed,
    PrintJob,
    RenderOptions,
    SettingDef,
    StatusReport,
    connection_setting,
    int_range,
    label_planes,
    poll_interval_setting,
    raw_copies,
    reporting,
    threshold_settings,
)
from drivers.transport import (
    Link,
    Transport,
    TransportError,
    TransportTimeout,
    discard_received,
    drain_input,
    read_exactly,
)

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True, slots=True)
class BrotherTiming:
    """How long the driver waits for the printer, in seconds (tests give shorter ones)."""

    # A reply to ESC i S comes within milliseconds from an idle printer; 2 s covers Wi-Fi.
    status_timeout: float = 2.0
    # From the last byte of a page to "printing completed": a 1 m continuous label at the
    # slowest quality takes about 15 s, plus the cut.
    page_timeout: float = 30.0
    # The print head cools for up to a few minutes before the printer goes on by itself.
    cooling_timeout: float = 300.0
    # A raw job is done when no frame came for this long after a "printing completed".
    raw_quiet: float = 1.0


DEFAULT_TIMING = BrotherTiming()
ROTATIONS: Mapping[int, Literal[0, 90, 180, 270]] = {0: 0, 90: 90, 180: 180, 270: 270}


def _choices(names: Mapping[str, object]) -> list[tuple[str, str]]:
    return [(name, name) for name in names]


def _label_choices() -> list[tuple[str, str]]:
    return [
        (name, f"{label.describe()} ({label.roll})" if label.roll else label.describe())
        for name, label in LABELS.items()
    ]


class BrotherQlDriver(ConnectedDriver[None]):
    """Brother QL printers over TCP, USB, serial or a device file."""

    SLUG = "brother-ql"
    NAME = "Brother QL label printer"
    DESCRIPTION = "Brother QL-500...QL-1115NWB (raster, DK rolls, black/red on QL-8xx), real status"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("tcp://192.168.1.60:9100"),
        "MODEL": {
            "name": "Model",
            "description": "The printer model (its head width and what it can do)",
            "default": DEFAULT_MODEL,
            "choices": _choices(MODELS),
        },
        "LABEL": {
            "name": "Label",
            "description": "The DK roll loaded: 62 (62 mm continuous), 62red, 29x90 (die-cut)...",
            "default": DEFAULT_LABEL,
            "choices": _label_choices(),
        },
        "AUTO_CUT": {
            "name": "Auto cut",
            "description": "Cut after every CUT_EVERY labels (models with a cutter)",
            "default": True,
            "validator": bool,
        },
        "CUT_EVERY": {
            "name": "Cut every",
            "description": "With auto cut: cut after this many labels",
            "default": 1,
            "validator": [int, int_range(1, 255)],
            "units": "labels",
        },
        "HQ": {
            "name": "High quality",
            "description": "Give print quality priority over speed",
            "default": True,
            "validator": bool,
        },
        "RESOLUTION": {
            "name": "Resolution",
            "description": "300 dpi, or 300 x 600 dpi (twice the lines along the label, slower; "
            "one colour, models from the QL-570 on)",
            "default": 300,
            "validator": int,
            "choices": [("300", "300 dpi"), ("600", "300 x 600 dpi")],
        },
        "COMPRESSION": {
            "name": "Compression",
            "description": "Send raster lines PackBits-compressed where the model supports it",
            "default": True,
            "validator": bool,
        },
        "ROTATION": {
            "name": "Rotation",
            "description": "Turn every page clockwise by this many degrees",
            "default": 0,
            "validator": int,
            "choices": [("0", "0"), ("90", "90"), ("180", "180"), ("270", "270")],
        },
        **threshold_settings(),
        "STATUS_QUERY": {
            "name": "Read status",
            "description": "Ask the printer for its status and wait for each label (off for a "
            "network printer that does not answer on port 9100, or a write-only link)",
            "default": True,
            "validator": bool,
        },
        "POLL_INTERVAL": poll_interval_setting(15),
    }

    def __init__(self, context: DriverContext, timing: BrotherTiming = DEFAULT_TIMING) -> None:
        super().__init__(context)
        self.timing = timing

    def new_state(self) -> None:
        """Nothing to remember: every job asks the printer afresh."""

    async def poll(self, machine: Machine) -> None:
        """Ask ESC i S; show the status, the model and the media loaded."""
        connection = self._connections.get(machine)
        if not machine.get_setting("STATUS_QUERY", "D"):
            await connection.link.ensure_connected()
            machine.set_status(LabelPrinterStatus.CONNECTED)
            machine.set_status_text("Connected; status queries are off")
            machine.set_properties(())
            return
        model, label = _model(machine), _label(machine)
        async with connection.link.exchange() as transport:
            await discard_received(transport)
            frame = await query_status(transport, self.timing.status_timeout)
        report = status_report(frame, label, model)
        problem = label_fits(label, model)
        if problem is not None:
            report = StatusReport(
                (*report.conditions, _error_condition(problem)), report.properties, report.media
            )
        report.apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """The LABEL's printable area at 300 dpi (continuous: each page's own length).

        A LABEL the MODEL cannot take is refused at submission (a 400 with the reason); a job
        queued before the settings changed waits until they fit again.
        """
        model, label = _model(machine), _label(machine)
        problem = label_fits(label, model)
        if problem is not None:
            raise PrinterNotReady(f"{problem}: change LABEL or MODEL")
        # At 300 x 600 dpi the page is drawn at 600 dpi; the encoder pairs its columns.
        scale = 2 if _high_resolution(machine, model, label) else 1
        return PageFormat(
            dpi=DPI * scale,
            width_dots=label.printable_width * scale,
            height_dots=None if label.continuous else label.printable_length * scale,
            colors=BLACK_AND_RED if label.two_colour else SINGLE_COLOR,
        )

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold, dithering and rotation from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
            rotation=ROTATIONS.get(int(machine.get_setting("ROTATION", "D")), 0),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Check status and media, then send each page and wait until the printer printed it.

        Raw jobs (`job.raw`, QL raster) are sent unchanged, once per copy.
        """
        connection = self._connections.get(machine)
        options = _page_options(machine)
        problem = label_fits(options.label, options.model)
        if problem is not None and job.raw is None:
            raise PrinterNotReady(f"{problem}: change LABEL or MODEL")
        if not machine.get_setting("STATUS_QUERY", "D"):
            await _print_blind(connection.link, job, options)
            return
        timing = self.timing
        async with connection.link.exchange() as link_transport:
            transport = reporting(link_transport, job)
            await discard_received(transport)
            await transport.write(invalidate(options.model))
            frame = await query_status(transport, timing.status_timeout)
            # A raw job names its own media (ESC i z): the printer itself refuses a mismatch.
            _check_ready(machine, frame, options, media=job.raw is None)
            printer = _Printer(machine, transport, timing)
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    await printer.wait_raw()
                    job.report_progress(copy + 1)
                return
            first = True
            async for number, planes, last in _with_last(label_planes(job)):
                data = await asyncio.to_thread(_encode, planes, options, first, last)
                await transport.write(data)
                await printer.wait_printed()
                job.report_progress(number + 1)
                first = False


async def query_status(transport: Transport, timeout: float) -> StatusFrame:  # noqa: ASYNC109 - per-call timeout is the contract
    """Send ESC i S and read the 32-byte reply; `PrinterSilent` if none comes in time."""
    await transport.write(STATUS_REQUEST)
    try:
        reply = await read_exactly(transport, STATUS_SIZE, timeout)
    except TransportTimeout as err:
        raise PrinterSilent(
            f"no answer to the status request (ESC i S) within {timeout:g} s: the printer is "
            "off, or a network printer that does not answer on port 9100 (set STATUS_QUERY off)"
        ) from err
    return _decode(reply)


def _decode(reply: bytes) -> StatusFrame:
    try:
        return decode_status(reply)
    except ValueError as err:
        raise TransportError(f"unexpected status reply: is this a Brother QL? ({err})") from err


def _check_ready(
    machine: Machine, frame: StatusFrame, options: PageOptions, *, media: bool
) -> None:
    """Raise (the job waits) when the printer cannot print or (`media`) has other media loaded."""
    report = status_report(frame, options.label if media else None, options.model)
    loaded = report.media
    if media and loaded is not None and loaded.loaded and not media_matches(frame, options.label):
        mismatch = MediaMismatch(loaded, expected_media(options.label))
        machine.set_media(loaded)
        machine.set_status(LabelPrinterStatus.NO_MEDIA)
        machine.set_status_text(str(mismatch))
        raise mismatch
    report.raise_if_blocking(machine)


@dataclass(frozen=True, slots=True)
class _Printer:
    """The frames the printer sends on its own while it prints one page (or a raw job)."""

    machine: Machine
    transport: Transport
    timing: BrotherTiming

    async def next_frame(self, timeout: float) -> StatusFrame:  # noqa: ASYNC109
        try:
            return _decode(await read_exactly(self.transport, STATUS_SIZE, timeout))
        except TransportTimeout as err:
            raise PrinterSilent(
                f"the printer did not report the label printed within {timeout:g} s"
            ) from err

    async def wait_printed(self) -> None:
        """Read frames until "printing completed" and the phase back to receiving.

        "Printing completed" confirms the label; the phase change after it comes at once, and
        is waited for only as long as a status reply (a printer that skips it still printed).
        """
        completed = False
        cooling = False
        while True:
            if completed:
                try:
                    frame = await self.next_frame(self.timing.status_timeout)
                except PrinterSilent:
                    return
            else:
                wait = self.timing.cooling_timeout if cooling else self.timing.page_timeout
                frame = await self.next_frame(wait)
            if frame.status_type in (StatusType.ERROR, StatusType.TURNED_OFF):
                if completed:
                    # This label is out; the printer reports the error again for the next page
                    # (and the next poll shows it).
                    return
                self.stopped(frame)
            if frame.status_type == StatusType.NOTIFICATION:
                cooling = self.notified(frame, cooling)
            elif frame.status_type == StatusType.PRINTING_COMPLETED:
                completed = True
            elif (
                frame.status_type == StatusType.PHASE_CHANGE
                and completed
                and frame.phase == Phase.RECEIVING
            ):
                return

    async def wait_raw(self) -> None:
        """A raw job: wait for a "printing completed", then until the printer goes quiet."""
        completed = False
        while True:
            wait = self.timing.raw_quiet if completed else self.timing.page_timeout
            try:
                frame = await self.next_frame(wait)
            except PrinterSilent:
                if completed:
                    return
                raise
            if frame.status_type in (StatusType.ERROR, StatusType.TURNED_OFF):
                self.stopped(frame)
            if frame.status_type == StatusType.PRINTING_COMPLETED:
                completed = True

    def notified(self, frame: StatusFrame, cooling: bool) -> bool:
        """Show a notification (cooling, cover open); return whether the printer is cooling now.

        The printer goes on by itself after cooling or once the cover is closed, or sends an
        error frame: the page is waited for either way.
        """
        conditions = frame_conditions(frame)
        self.machine.set_status_text("; ".join(c.text for c in conditions))
        if frame.notification == Notification.COOLING_STARTED:
            return True
        if frame.notification == Notification.COOLING_FINISHED:
            return False
        return cooling

    def stopped(self, frame: StatusFrame) -> NoReturn:
        """An error frame: show why and make the job wait (the page was not printed)."""
        conditions = frame_conditions(frame) or (
            _error_condition("The printer stopped with an error it did not name"),
        )
        report = StatusReport(conditions)
        self.machine.set_status(report.status)
        self.machine.set_status_text(report.text)
        raise PrinterNotReady(report.text)


async def _with_last(
    pages: AsyncIterator[tuple[int, tuple[Image, ...]]],
) -> AsyncIterator[tuple[int, tuple[Image, ...], bool]]:
    """Each page with whether it is the job's last (FF or Ctrl-Z), looking one page ahead."""
    held: tuple[int, tuple[Image, ...]] | None = None
    async for item in pages:
        if held is not None:
            yield (*held, False)
        held = item
    if held is not None:
        yield (*held, True)


async def _print_blind(link: Link, job: PrintJob, options: PageOptions) -> None:
    """STATUS_QUERY off: send the job and count each label once its bytes are out."""
    async with link.exchange() as link_transport:
        transport = reporting(link_transport, job)
        await transport.write(invalidate(options.model))
        if job.raw is not None:
            for copy in raw_copies(job):
                await transport.write(job.raw)
                job.report_progress(copy + 1)
            return
        first = True
        async for number, planes, last in _with_last(label_planes(job)):
            await transport.write(await asyncio.to_thread(_encode, planes, options, first, last))
            job.report_progress(number + 1)
            first = False
        # A write-only link may still carry the printer's frames: drop them.
        await drain_input(transport)


def _encode(planes: tuple[Image, ...], options: PageOptions, first: bool, last: bool) -> bytes:
    """One page's bytes (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_page(planes, options, first=first, last=last)
    except ValueError as err:
        raise PrintFailed(f"this page cannot be printed on a Brother QL: {err}") from err


def _error_condition(text: str) -> Condition:
    return Condition(LabelPrinterStatus.ERROR, text)


def _model(machine: Machine) -> Model:
    return MODELS.get(str(machine.get_setting("MODEL", "D")), MODELS[DEFAULT_MODEL])


def _label(machine: Machine) -> Label:
    return LABELS.get(str(machine.get_setting("LABEL", "D")), LABELS[DEFAULT_LABEL])


def _high_resolution(machine: Machine, model: Model, label: Label) -> bool:
    """RESOLUTION 600, where it applies (one colour, a model with ESC i K)."""
    wanted = int(machine.get_setting("RESOLUTION", "D")) == 600
    return wanted and model.high_resolution and not label.two_colour


def _page_options(machine: Machine) -> PageOptions:
    model, label = _model(machine), _label(machine)
    return PageOptions(
        model=model,
        label=label,
        high_resolution=_high_resolution(machine, model, label),
        auto_cut=bool(machine.get_setting("AUTO_CUT", "D")),
        cut_every=int(machine.get_setting("CUT_EVERY", "D")),
        quality=bool(machine.get_setting("HQ", "D")),
        compress=bool(machine.get_setting("COMPRESSION", "D")),
    )
