"""DYMO LabelWriter 400/450 series and 4XL: pages as SYN/ETB raster lines, status from ESC A.

These printers are USB only: `usb://0922:0020` (pyusb) or `file:///dev/usb/lp0` (the kernel's
usblp driver); a print server in front of one makes it `tcp://`.

Each job starts with the resync bytes and ESC @, so a printer left inside a raster line by an
earlier broken connection starts clean. A label counts as printed when its bytes were written and
the status read right after them says the printer can print (the printer has no label counter),
so a label on its way when the paper ran out may print again when the job resumes, never left
out. Labels are separated by a short form feed; the job's last label gets a form feed, which
brings it past the tear bar: the driver holds each label until the next one is rendered, to
know which is last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from drivers.dymo.protocol import (
    RESET,
    RESYNC,
    Density,
    LabelSettings,
    Mode,
    Roll,
    encode_label,
)
from drivers.dymo.status import query_status
from drivers.dymo.stock import (
    CUSTOM,
    DEFAULT_LABEL,
    DEFAULT_MODEL,
    DPI,
    LABELS,
    MODELS,
    Model,
)
from drivers.kit import (
    ConnectedDriver,
    DriverContext,
    LabelPrinterStatus,
    Machine,
    MachineProperty,
    PageFormat,
    PrintFailed,
    PrintJob,
    PrintOption,
    RenderOptions,
    SettingDef,
    StatusReport,
    connection_setting,
    int_range,
    labels,
    poll_interval_setting,
    raw_copies,
    reporting,
    threshold_settings,
)
from drivers.transport import Transport, discard_received

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True, slots=True)
class DymoTiming:
    """How long the driver waits for the printer's status byte, in seconds."""

    # An idle LabelWriter answers ESC A at once; 2 s also covers a print server's network hop.
    status_timeout: float = 2.0
    # After a label, ESC A is answered once the printer has worked through the label's lines:
    # a 4XL shipping label in graphics mode (1/600 inch steps) takes several seconds.
    label_status_timeout: float = 15.0


DEFAULT_TIMING = DymoTiming()
_DENSITIES = [
    (Density.LIGHT.value, "Light"),
    (Density.MEDIUM.value, "Medium"),
    (Density.NORMAL.value, "Normal"),
    (Density.DARK.value, "Dark"),
]


@dataclass(frozen=True, slots=True)
class _Held:
    """A label rendered and waiting for the next one, which tells whether it is the last."""

    number: int
    page: Image


class DymoDriver(ConnectedDriver[None]):
    """DYMO LabelWriter 400, 450, Turbo, Twin Turbo and 4XL over USB, a device file or TCP."""

    SLUG = "dymo"
    NAME = "DYMO LabelWriter 4xx"
    DESCRIPTION = (
        "DYMO LabelWriter 400/450 series and 4XL (raster lines, ESC A status); not the 550 series"
    )
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("usb://0922:0020"),
        "MODEL": {
            "name": "Model",
            "description": "The LabelWriter model (sets the head width; Twin Turbo: two rolls)",
            "default": DEFAULT_MODEL,
            "choices": [(model.key, model.name) for model in MODELS.values()],
        },
        "LABEL": {
            "name": "Labels",
            "description": "The DYMO labels loaded; 'custom' takes LABEL_WIDTH_DOTS and "
            "LABEL_LENGTH_DOTS",
            "default": DEFAULT_LABEL,
            "choices": [(label.key, label.describe()) for label in LABELS.values()]
            + [(CUSTOM, "Custom size (in dots)")],
        },
        "LABEL_WIDTH_DOTS": {
            "name": "Custom label width",
            "description": "Printed width across the head at 300 dpi (LABEL 'custom' only)",
            "default": 331,
            "validator": [int, int_range(8, 1248)],
            "units": "dots",
        },
        "LABEL_LENGTH_DOTS": {
            "name": "Custom label length",
            "description": "Label length at 300 dpi (LABEL 'custom' only); 0: continuous, each "
            "page's own length",
            "default": 1051,
            "validator": [int, int_range(0, 16000, " (0: continuous)")],
            "units": "dots",
        },
        "DENSITY": {
            "name": "Print density",
            "description": "How dark the printer prints",
            "default": Density.NORMAL.value,
            "choices": _DENSITIES,
        },
        "MODE": {
            "name": "Print mode",
            "description": "Text (300 x 300 dpi, fast) or barcode and graphics (300 x 600 dpi, "
            "more accurate, slower)",
            "default": Mode.TEXT.value,
            "choices": [
                (Mode.TEXT.value, "Text (300 x 300 dpi)"),
                (Mode.GRAPHICS.value, "Barcode and graphics (300 x 600 dpi)"),
            ],
        },
        "ROLL": {
            "name": "Roll",
            "description": "Twin Turbo models: which roll to print on",
            "default": Roll.AUTO.value,
            "choices": [
                (Roll.AUTO.value, "Automatic"),
                (Roll.LEFT.value, "Left roll"),
                (Roll.RIGHT.value, "Right roll"),
            ],
        },
        **threshold_settings(),
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
            "density",
            "choice",
            "Print density",
            "Print density for this job; the machine's DENSITY setting if absent.",
            choices=tuple(_DENSITIES),
        ),
    )

    def __init__(self, context: DriverContext, timing: DymoTiming = DEFAULT_TIMING) -> None:
        super().__init__(context)
        self.timing = timing

    def new_state(self) -> None:
        """The 4xx series tells nothing worth keeping beyond its status byte."""

    async def poll(self, machine: Machine) -> None:
        """Resync, ask ESC A, and show the status with the model and labels set up."""
        link = self._connections.get(machine).link
        if not machine.get_setting("STATUS_QUERY", "D"):
            await link.ensure_connected()
            machine.set_status(LabelPrinterStatus.CONNECTED)
            machine.set_status_text("Connected; status queries are off")
            machine.set_properties(_setup_properties(machine))
            return
        async with link.exchange() as transport:
            await discard_received(transport)
            # The resync bytes end any raster line a broken job left open, without a reset.
            report = await query_status(transport, self.timing.status_timeout, RESYNC)
        properties = (*_setup_properties(machine), *report.properties)
        StatusReport(report.conditions, properties).apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """The label in dots at 300 dpi, at most the head's width; length None: continuous."""
        model = _model(machine)
        key = str(machine.get_setting("LABEL", "D"))
        stock = LABELS.get(key)
        if stock is None:
            width = int(machine.get_setting("LABEL_WIDTH_DOTS", "D"))
            length = int(machine.get_setting("LABEL_LENGTH_DOTS", "D"))
            return PageFormat(
                dpi=DPI, width_dots=min(width, model.head_dots), height_dots=length or None
            )
        return PageFormat(
            dpi=DPI, width_dots=stock.width_dots(model), height_dots=stock.length_dots
        )

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold and dithering from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Reset the printer, check its status, then send each label and confirm it.

        Raw jobs (`job.raw`, LabelWriter raster bytes) are sent unchanged, once per copy.
        """
        settings = _label_settings(machine, job, self.page_format(machine).height_dots is None)
        status = bool(machine.get_setting("STATUS_QUERY", "D"))
        link = self._connections.get(machine).link
        async with link.exchange() as link_transport:
            transport = reporting(link_transport, job)
            printer = _Printer(machine, transport, job, self.timing, status)
            if status:
                await discard_received(transport)
                report = await query_status(transport, self.timing.status_timeout, RESET)
                report.raise_if_blocking(machine)
            else:
                await transport.write(RESET)
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    # The raw bytes may end inside a line: resync before asking.
                    await printer.accepted(copy + 1, RESYNC)
                return
            held: _Held | None = None
            async for number, page in labels(job):
                if held is not None:
                    await printer.send(held, settings, last=False)
                held = _Held(number, page)
            if held is not None:
                await printer.send(held, settings, last=True)


@dataclass(frozen=True, slots=True)
class _Printer:
    """One exchange with a machine's printer during a job."""

    machine: Machine
    transport: Transport
    job: PrintJob
    timing: DymoTiming
    status: bool

    async def send(self, held: _Held, settings: LabelSettings, *, last: bool) -> None:
        data = await asyncio.to_thread(_encode, held.page, settings, last)
        await self.transport.write(data)
        await self.accepted(held.number + 1)

    async def accepted(self, printed: int, prefix: bytes = b"") -> None:
        """Count `printed` labels once the status after them says the printer can go on."""
        if self.status:
            timeout = self.timing.label_status_timeout
            report = await query_status(self.transport, timeout, prefix)
            report.raise_if_blocking(self.machine)
        elif prefix:
            await self.transport.write(prefix)
        self.job.report_progress(printed)


def _model(machine: Machine) -> Model:
    return MODELS.get(str(machine.get_setting("MODEL", "D")), MODELS[DEFAULT_MODEL])


def _label_settings(machine: Machine, job: PrintJob, continuous: bool) -> LabelSettings:
    model = _model(machine)
    density = job.options.get("density", machine.get_setting("DENSITY", "D"))
    return LabelSettings(
        density=Density(str(density)),
        mode=Mode(str(machine.get_setting("MODE", "D"))),
        roll=Roll(str(machine.get_setting("ROLL", "D"))) if model.twin else None,
        continuous=continuous,
        head_bytes=model.head_bytes,
    )


def _setup_properties(machine: Machine) -> tuple[MachineProperty, ...]:
    """What the machine is set up as (the 4xx cannot report its model or labels)."""
    model = _model(machine)
    stock = LABELS.get(str(machine.get_setting("LABEL", "D")))
    label = stock.describe() if stock is not None else "custom"
    return (
        MachineProperty("Model", model.name, group="Printer"),
        MachineProperty("Labels", label, group="Printer"),
    )


def _encode(page: Image, settings: LabelSettings, last: bool) -> bytes:
    """One label's bytes (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_label(page, settings, last=last)
    except ValueError as err:
        raise PrintFailed(f"this page cannot be printed on a LabelWriter: {err}") from err
