"""A label printer without hardware: each printed page becomes a PNG file.

It goes through the same contract as real drivers, so the whole pipeline (API, queue, rendering,
status, faults) can be tried on any machine. `FAULT` simulates a printer problem.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from drivers.kit import (
    BLACK_AND_RED,
    SINGLE_COLOR,
    DriverContext,
    LabelPrinterDriver,
    LabelPrinterStatus,
    Machine,
    MachineProperty,
    PageFormat,
    PrinterUnavailable,
    PrintFailed,
    PrintJob,
    RenderOptions,
    SettingDef,
    SettingValue,
    int_range,
    label_planes,
)

if TYPE_CHECKING:
    from PIL.Image import Image

MM_PER_INCH = 25.4
# Every printed label is also a line in this file beside the PNGs: "<job pk> <label number>".
PRINT_LOG = "printed.log"

# What each simulated fault looks like to the user, and whether printing fails while it lasts.
FAULTS: Mapping[str, tuple[LabelPrinterStatus, str]] = {
    "none": (LabelPrinterStatus.CONNECTED, ""),
    "paper-out": (LabelPrinterStatus.NO_MEDIA, "Paper out"),
    "paper-jam": (LabelPrinterStatus.PAPER_JAM, "Paper jam"),
    "paper-near-end": (LabelPrinterStatus.WARNING, "Paper near end"),
    "cover-open": (LabelPrinterStatus.ERROR, "Cover open"),
    "offline": (LabelPrinterStatus.DISCONNECTED, "Printer does not answer"),
}
# Faults under which a real printer takes no job.
_BLOCKING_FAULTS = frozenset({"paper-out", "paper-jam", "cover-open", "offline"})


# The settings `poll` reports from.
_REPORTED_SETTINGS = ("FAULT", "DPI", "LABEL_WIDTH_MM", "LABEL_HEIGHT_MM")
# The media's colours (`COLORS`): the planes each page is drawn as, and how a plane's ink is shown
# in the PNG (RGB).
_COLORS = {"black": SINGLE_COLOR, "black-red": BLACK_AND_RED}
_INK = {"black": (0, 0, 0), "red": (255, 0, 0)}


@dataclass(frozen=True, slots=True)
class _Report:
    """What a poll of one virtual printer reports, and the raw settings it follows from."""

    settings: tuple[SettingValue, ...]
    status: LabelPrinterStatus
    text: str
    properties: tuple[MachineProperty, ...]


class VirtualPrinterFault(PrinterUnavailable):
    """The simulated printer cannot print right now."""


class VirtualLabelPrinter(LabelPrinterDriver):
    """Writes each label as a PNG under the data directory.

    `virtual/<machine name>-<machine pk>/<job>-<page>.png`: the name makes the folder easy to find,
    the pk keeps apart machines whose names differ only in characters a file name cannot hold.
    """

    SLUG = "virtual"
    NAME = "Virtual label printer"
    DESCRIPTION = "Prints each label to a PNG file in the data directory; needs no hardware"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "DPI": {
            "name": "Resolution",
            "description": "Printer resolution in dots per inch",
            "default": 300,
            "validator": int,
            "choices": [("203", "203 dpi"), ("300", "300 dpi"), ("600", "600 dpi")],
        },
        "LABEL_WIDTH_MM": {
            "name": "Label width",
            "description": "Printable width of the label in millimetres",
            "default": 62,
            "validator": [int, int_range(1, 1000)],
            "units": "mm",
        },
        "LABEL_HEIGHT_MM": {
            "name": "Label height",
            "description": "Label length in millimetres (0 for continuous media)",
            "default": 29,
            "validator": [int, int_range(0, 5000, " (0: continuous)")],
            "units": "mm",
        },
        "COLORS": {
            "name": "Colours",
            "description": "Black labels (1-bit PNGs), or black and red two-colour media "
            "(RGB PNGs)",
            "default": "black",
            "choices": [("black", "Black"), ("black-red", "Black and red")],
        },
        "LABEL_DELAY_MS": {
            "name": "Print time per label",
            "description": "Simulated time the printer takes for one label (0: instant)",
            "default": 0,
            "validator": [int, int_range(0, 60000)],
            "units": "ms",
        },
        "FAULT": {
            "name": "Simulated fault",
            "description": "Make the virtual printer report a problem",
            "default": "none",
            "choices": [(name, name.replace("-", " ").capitalize()) for name in FAULTS],
        },
        "POLL_INTERVAL": {
            "name": "Status interval",
            "description": "Seconds between status reads",
            "default": 5,
            "validator": [int, int_range(1, 3600)],
            "units": "s",
        },
    }

    async def init_machine(self, machine: Machine) -> None:
        """Create the output directory and report the simulated state."""
        await asyncio.to_thread(self.output_dir(machine).mkdir, parents=True, exist_ok=True)
        await self.poll(machine)

    async def update_machine(self, old_state: object, machine: Machine) -> None:
        """Settings take effect at once: show the (possibly new) fault straight away."""
        if machine.initialized:
            await self.poll(machine)

    async def restart_machine(self, machine: Machine) -> None:
        """Re-read the simulated state."""
        await self.poll(machine)

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        # What `poll` reports per machine, by the settings it was worked out from: it changes
        # only with them, and thousands of virtual printers are polled every few seconds.
        self._reports: weakref.WeakKeyDictionary[Machine, _Report] = weakref.WeakKeyDictionary()

    async def poll(self, machine: Machine) -> None:
        """Report the status for the configured fault, and what the printer is set up as."""
        settings = tuple(machine.get_setting(key, "D") for key in _REPORTED_SETTINGS)
        report = self._reports.get(machine)
        if report is None or report.settings != settings:
            report = self._report(machine, settings)
            self._reports[machine] = report
        machine.set_status(report.status)
        machine.set_status_text(report.text)
        machine.set_properties(report.properties)

    def _report(self, machine: Machine, settings: tuple[SettingValue, ...]) -> _Report:
        status, text = FAULTS.get(str(machine.get_setting("FAULT", "D")), FAULTS["none"])
        page = self.page_format(machine)
        properties = (
            MachineProperty("Model", "Virtual label printer", group="Printer"),
            MachineProperty("Resolution", page.dpi, group="Printer", type="int"),
            MachineProperty("Width", page.width_dots, group="Media", type="int"),
        )
        return _Report(settings, status, text, properties)

    def page_format(self, machine: Machine) -> PageFormat:
        """Label size in dots from the millimetre settings."""
        dpi = int(machine.get_setting("DPI", "D"))
        width = round(int(machine.get_setting("LABEL_WIDTH_MM", "D")) * dpi / MM_PER_INCH)
        height_mm = int(machine.get_setting("LABEL_HEIGHT_MM", "D"))
        height = round(height_mm * dpi / MM_PER_INCH) if height_mm > 0 else None
        colors = _COLORS.get(str(machine.get_setting("COLORS", "D")), SINGLE_COLOR)
        return PageFormat(dpi=dpi, width_dots=max(width, 1), height_dots=height, colors=colors)

    def render_options(self, machine: Machine) -> RenderOptions:
        """Defaults: threshold, no rotation."""
        return RenderOptions()

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Write every page of the job as PNG files; fails while a blocking fault is set."""
        fault = str(machine.get_setting("FAULT", "D"))
        if fault in _BLOCKING_FAULTS:
            status, text = FAULTS[fault]
            # As a real printer's status query would: the cause is shown, not guessed.
            machine.set_status(status)
            machine.set_status_text(text)
            raise VirtualPrinterFault(text)
        directory = self.output_dir(machine)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        if job.raw is not None:
            raise PrintFailed(
                "the virtual printer takes PDF or PNG documents, not printer language"
            )
        delay = max(int(machine.get_setting("LABEL_DELAY_MS", "D")), 0) / 1000
        colors = self.page_format(machine).colors
        async for label, planes in label_planes(job):
            copy, number = divmod(label, job.page_count)
            suffix = f"-copy{copy + 1}" if job.copies > 1 else ""
            path = directory / f"{job.pk}-{number + 1}{suffix}.png"
            await job.before_write()
            await asyncio.to_thread(
                _write_label,
                colors,
                planes,
                path,
                directory / PRINT_LOG,
                f"{job.pk} {label + 1}\n",
            )
            if delay:
                await asyncio.sleep(delay)
            job.report_progress(label + 1)

    def output_dir(self, machine: Machine) -> Path:
        """Where this machine's pages go."""
        return self.state_dir / output_folder_name(machine.name, machine.pk)


def _write_label(
    colors: tuple[str, ...], planes: tuple[Image, ...], path: Path, log_path: Path, log_line: str
) -> None:
    """Save one label and append it to the print log (one line per label: job pk, label number).

    One plane is saved as it is (1-bit); several are painted in their colours on a white RGB page.
    """
    if len(planes) == 1:
        planes[0].save(path, "PNG")
    else:
        from PIL import Image as PilImage
        from PIL import ImageChops

        page = PilImage.new("RGB", planes[0].size, (255, 255, 255))
        for color, plane in zip(colors, planes, strict=True):
            # A plane is black (0) where it has ink: inverted, it is the mask to paint through.
            page.paste(_INK[color], mask=ImageChops.invert(plane.convert("L")))
        page.save(path, "PNG")
    with log_path.open("a", encoding="utf-8") as log_file:
        log_file.write(log_line)


def output_folder_name(name: str, pk: str) -> str:
    """One path component per machine: its name made safe, then its pk (unique)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:64]
    return f"{cleaned or 'machine'}-{pk}"
