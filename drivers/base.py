"""The driver contract: what a printer driver declares, the hooks it implements, what it may touch.

`drivers/` imports nothing from `agent/`; the agent implements the `Machine` protocol below and calls
the hooks. Every hook is async; a hook that raises degrades its machine (the error is shown in
`machine_errors`), never the daemon.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, TypedDict

from drivers.clock import Clock, MonotonicClock
from drivers.print_options import GENERIC_OPTIONS, PrintOption, declaration_problems

if TYPE_CHECKING:
    from PIL.Image import Image

    from drivers.media import Media

ConfigType = Literal["M", "D"]
SettingValue = str | int | bool | float


class MachineStatus(enum.IntEnum):
    """A machine status code with a label and a colour, as InvenTree's `MachineStatus`.

    Code ranges: 1xx fine, 2xx warning, 3xx problem with the machine, 4xx problem with the driver
    (for example it cannot connect), 5xx unknown or unrecoverable.
    """

    label: str
    color: str

    def __new__(cls, value: int, label: str = "", color: str = "secondary") -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.label = label
        member.color = color
        return member


class LabelPrinterStatus(MachineStatus):
    """Status of a label printer (InvenTree's `LabelPrinterStatus`, with v401's WARNING and ERROR)."""

    CONNECTED = 100, "Connected", "success"
    UNKNOWN = 101, "Unknown", "secondary"
    PRINTING = 110, "Printing", "primary"
    WARNING = 200, "Warning", "warning"
    NO_MEDIA = 301, "No media", "warning"
    PAPER_JAM = 302, "Paper jam", "warning"
    DISCONNECTED = 400, "Disconnected", "danger"
    ERROR = 500, "Error", "danger"


class SettingValidationError(ValueError):
    """Raised by a callable setting validator; its message is shown to the user as it is.

    The API reports it as InvenTree reports a custom validator's error, in `non_field_errors`.
    """


class SettingOutOfRange(SettingValidationError):
    """A number outside the range a setting allows; the API reports it on `value` (as a wrong type)."""


SettingValidator = type[bool] | type[int] | type[float] | Callable[[SettingValue], None]


class SettingDef(TypedDict, total=False):
    """One setting definition, in InvenTree's `MACHINE_SETTINGS` dict format."""

    name: str
    description: str
    units: str
    default: SettingValue
    validator: SettingValidator | Sequence[SettingValidator]
    choices: Sequence[tuple[str, str]]
    required: bool
    protected: bool
    model: str
    hidden: bool
    # Bounds of an int- or float-validated setting; a value outside is refused with 400.
    min_value: int | float
    max_value: int | float


PropertyType = Literal["str", "bool", "progress", "int", "float"]


@dataclass(frozen=True, slots=True)
class MachineProperty:
    """A read-only fact about a machine shown in the API (`properties`, InvenTree v401)."""

    key: str
    value: str | int | float | bool
    group: str = ""
    type: PropertyType = "str"
    max_progress: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The API representation: `{key, value, group, type, max_progress}`."""
        max_progress = self.max_progress
        if self.type == "progress" and max_progress is None:
            max_progress = 100
        return {
            "key": self.key,
            "value": self.value,
            "group": self.group,
            "type": self.type,
            "max_progress": max_progress,
        }


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """A machine's configuration before a change, handed to `update_machine`."""

    name: str
    active: bool
    settings: Mapping[tuple[ConfigType, str], str]


class Machine(Protocol):
    """What a driver sees of a machine. The agent owns the object; drivers read and report."""

    @property
    def pk(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def active(self) -> bool: ...

    @property
    def initialized(self) -> bool: ...

    restart_required: bool

    def get_setting(self, key: str, config_type: ConfigType) -> SettingValue:
        """The typed value (bool/int/float per validator), or the definition's default."""
        ...

    def set_status(self, status: MachineStatus) -> None: ...

    def set_status_text(self, text: str) -> None: ...

    def set_properties(self, properties: Sequence[MachineProperty]) -> None: ...

    @property
    def media(self) -> Media | None:
        """The media the driver last reported loaded (`set_media`); None: not known.

        `page_format` may read it to lay pages out for the loaded labels, or to refuse a job
        with `MediaMismatch` (the job waits). It is the last known media, not a fresh reading:
        `print` reads the printer's status before it prints.
        """
        ...

    def set_media(self, media: Media | None) -> None:
        """Report the media the printer says is loaded (a `StatusReport` with media does this)."""
        ...

    def handle_error(self, error: Exception | str) -> None:
        """Record a run-time error; it shows until the next successful poll or a restart."""
        ...


# The colours a page can be drawn in, each as its own 1-bit plane.
PlaneColor = Literal["black", "red"]
SINGLE_COLOR: tuple[PlaneColor, ...] = ("black",)
BLACK_AND_RED: tuple[PlaneColor, ...] = ("black", "red")
PAGE_COLORS: tuple[tuple[PlaneColor, ...], ...] = (SINGLE_COLOR, BLACK_AND_RED)


@dataclass(frozen=True, slots=True)
class PageFormat:
    """The raster a printer wants: resolution and printable area in dots (height None: continuous).

    `colors` are the planes each page is drawn as, one 1-bit image per colour in this order: one
    black plane for most printers, black and red for two-colour media (Brother QL-8xx on 62red
    tape). A pixel goes to the red plane when it is strongly red (see `docs/rendering.md`), to the
    black plane when it is dark otherwise; never to both.
    """

    dpi: int
    width_dots: int
    height_dots: int | None = None
    colors: tuple[PlaneColor, ...] = SINGLE_COLOR


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How a document is turned into 1-bit pages."""

    threshold: int = 128
    dither: bool = False
    rotation: Literal[0, 90, 180, 270] = 0


class PrintJob(Protocol):
    """A job handed to `LabelPrinterDriver.print`: 1-bit pages, or raw printer-language bytes.

    Pages are rendered on demand (the next one while the current one is sent), so a driver asks
    for them one at a time, best through `labels(job)`. The agent watches the job's progress:
    a driver reports every label printed (`report_progress`) and every sign of life from the
    printer (`report_activity`, which `drivers.activity.reporting` does for each chunk written and
    each reply read); a job that shows none for the agent's stall time is stopped and retried.
    When the agent asks the job to stop (it was cancelled, or the agent is stopping),
    `stop_requested` turns true: finish the label being sent, confirm it, and return.
    """

    @property
    def pk(self) -> str: ...

    @property
    def copies(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    @property
    def page_count(self) -> int:
        """Pages in the document (labels per copy); 0 for raw jobs."""
        ...

    async def page(self, index: int) -> Image:
        """Page `index` (0-based), mode "1" (black = 0) at the driver's `PageFormat`.

        For a format of several colours, the ink of every colour in black. Raises `PrintFailed`
        if the page cannot be drawn.
        """
        ...

    async def planes(self, index: int) -> tuple[Image, ...]:
        """Page `index` as one mode "1" image (black = ink) per colour, in `PageFormat.colors` order.

        A single-colour format gives `(page,)`. Raises `PrintFailed` if the page cannot be drawn.
        """
        ...

    @property
    def raw(self) -> bytes | None:
        """The document as it came, for `application/octet-stream` jobs in the printer's language."""
        ...

    @property
    def options(self) -> Mapping[str, Any]:
        """The job's print options, validated against the driver's `print_options()` and typed.

        Holds the options the client sent and those with a default (`copies` is also
        `self.copies`); a driver reads its own with a fallback on its machine setting.
        """
        ...

    @property
    def first_label(self) -> int:
        """Labels an earlier, interrupted attempt already printed: start at this label (0-based)."""
        ...

    @property
    def stop_requested(self) -> bool:
        """True once the agent wants the job to end after the label being sent."""
        ...

    def report_progress(self, labels_printed: int) -> None:
        """Tell the agent how many labels (pages x copies) the printer has printed so far."""
        ...

    def report_activity(self) -> None:
        """Tell the agent the printer is taking the job (bytes written, a reply read)."""
        ...

    async def before_write(self) -> None:
        """Await before writing to the printer: from then on a crash may have printed a label."""
        ...


class PrintFailed(Exception):
    """A job that can never print on this printer (retrying will not help): it fails at once."""


class PrinterUnavailable(Exception):
    """The printer cannot take a job now and says why (paper out, cover open, offline).

    The job waits and is tried again until it expires; such attempts are not counted against it.
    """


async def labels(job: PrintJob) -> AsyncIterator[tuple[int, Image]]:
    """(label number, page) for every label still to print: pages in order, `copies` times over.

    Ends early, between labels, once the agent asked the job to stop.
    """
    count = job.page_count
    for number in range(job.first_label, count * job.copies):
        if job.stop_requested:
            return
        yield number, await job.page(number % count)


async def label_planes(job: PrintJob) -> AsyncIterator[tuple[int, tuple[Image, ...]]]:
    """As `labels`, each page as its colour planes (`PrintJob.planes`): for two-colour printers."""
    count = job.page_count
    for number in range(job.first_label, count * job.copies):
        if job.stop_requested:
            return
        yield number, await job.planes(number % count)


def raw_copies(job: PrintJob) -> Iterator[int]:
    """Copy numbers (0-based) of a raw job still to send; ends early once asked to stop."""
    for copy in range(job.first_label, job.copies):
        if job.stop_requested:
            return
        yield copy


@dataclass(frozen=True, slots=True)
class DriverContext:
    """What the agent gives a driver when it creates it."""

    # A directory this driver may keep files in, under the agent's data directory (made on demand).
    state_dir: Path
    # The time of the driver's confirm loops (how often it looks, when it gives up).
    clock: Clock = field(default_factory=MonotonicClock)


class BaseDriver(abc.ABC):  # noqa: B024 - hooks are optional; subclasses add abstract ones
    """A driver: one instance per slug serves all machines that name it."""

    SLUG: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    machine_type: ClassVar[str] = ""
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {}
    # How often `poll` runs for each initialised machine, in seconds, unless the driver has a
    # `POLL_INTERVAL` setting (then each machine sets its own).
    POLL_INTERVAL: ClassVar[float] = 30.0

    REQUIRED_ATTRIBUTES: ClassVar[tuple[str, ...]] = ("SLUG", "NAME", "DESCRIPTION", "machine_type")

    def __init__(self, context: DriverContext) -> None:
        self.errors: list[str] = []
        self.context = context

    @property
    def state_dir(self) -> Path:
        """A directory this driver may keep files in (`DriverContext.state_dir`)."""
        return self.context.state_dir

    @classmethod
    def validate(cls) -> None:
        """Raise NotImplementedError naming missing class attributes, in InvenTree's wording."""
        missing = [name for name in cls.REQUIRED_ATTRIBUTES if getattr(cls, name, "") in ("", None)]
        if missing:
            raise NotImplementedError(
                f"'{cls!r}' did not provide the following attributes: {', '.join(missing)}"
            )

    def handle_error(self, error: Exception | str) -> None:
        """Record a driver-level error (shown as `driver_errors`)."""
        self.errors.append(str(error))

    async def init_driver(self) -> None:  # noqa: B027 - optional hook
        """Called once at start, before any machine of this driver initialises."""

    async def init_machine(self, machine: Machine) -> None:  # noqa: B027 - optional hook
        """Prepare a machine; raise to leave it uninitialised with the error shown."""

    async def update_machine(self, old_state: MachineSnapshot, machine: Machine) -> None:  # noqa: B027
        """Called after every change of the machine's config or settings."""

    async def restart_machine(self, machine: Machine) -> None:  # noqa: B027 - optional hook
        """Called by the restart action, after errors and status were reset."""

    async def poll(self, machine: Machine) -> None:  # noqa: B027 - optional hook
        """Read the printer's real state and report it with `set_status`/`set_properties`."""

    async def close_machine(self, machine: Machine) -> None:  # noqa: B027 - optional hook
        """Release what the machine holds (connections); called on deactivate, delete and shutdown."""


class LabelPrinterDriver(BaseDriver):
    """Base of every label-printer driver."""

    machine_type: ClassVar[str] = "label-printer"
    # Options of a print job this driver adds to the generic ones (`drivers.print_options`); it
    # reads them from `job.options`, where an option the client left out (and without a default)
    # is absent.
    PRINT_OPTIONS: ClassVar[Sequence[PrintOption]] = ()

    @classmethod
    def validate(cls) -> None:
        """Also refuse unsound print options, naming each problem."""
        super().validate()
        problems = declaration_problems(cls.PRINT_OPTIONS)
        if problems:
            raise NotImplementedError(
                f"'{cls!r}' declares bad print options: {'; '.join(problems)}"
            )

    @classmethod
    def print_options(cls) -> tuple[PrintOption, ...]:
        """Every option a job for this driver takes: the generic ones, then the driver's own."""
        return (*GENERIC_OPTIONS, *cls.PRINT_OPTIONS)

    def page_format(self, machine: Machine) -> PageFormat:
        """The raster this machine's printer takes; drivers read their settings here."""
        return PageFormat(dpi=300, width_dots=732)

    def render_options(self, machine: Machine) -> RenderOptions:
        """Rendering defaults for this machine (threshold, dither, rotation)."""
        return RenderOptions()

    @abc.abstractmethod
    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Send every page of the job, `job.copies` times; raise to make the job wait and retry."""
