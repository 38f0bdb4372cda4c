"""Throwaway drivers for registry and API tests; they record the hooks the registry calls."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from drivers.base import (
    BaseDriver,
    DriverContext,
    LabelPrinterDriver,
    LabelPrinterStatus,
    Machine,
    MachineSnapshot,
    PageFormat,
    PrintJob,
    SettingDef,
    SettingValidationError,
    labels,
    raw_copies,
)
from drivers.kit import StatusReport
from drivers.media import Media, MediaMismatch
from drivers.print_options import PrintOption


def _even(value: object) -> None:
    if int(str(value)) % 2:
        raise SettingValidationError("Value must be even")


class RecordingDriver(LabelPrinterDriver):
    """Records every hook call; settings of every kind the API must handle."""

    SLUG = "recording"
    NAME = "Recording driver"
    DESCRIPTION = "Records hook calls"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "HOST": {"name": "Host", "description": "Where the printer is", "default": "localhost"},
        "COPIES": {
            "name": "Copies",
            "description": "Default copies",
            "default": 1,
            "validator": int,
            "min_value": 1,
            "max_value": 99,
        },
        "CUT": {
            "name": "Cut",
            "description": "Cut after each label",
            "default": True,
            "validator": bool,
        },
        "MODE": {
            "name": "Mode",
            "description": "Print mode",
            "default": "fast",
            "choices": [("fast", "Fast"), ("fine", "Fine")],
        },
        "SECRET": {"name": "Secret", "description": "A password", "default": "", "protected": True},
        "EVEN": {
            "name": "Even",
            "description": "An even number",
            "default": 2,
            "validator": [int, _even],
        },
        "SPEED": {"name": "Speed", "description": "No default", "default": "", "validator": int},
    }
    # One print option of each kind; `print` records what the job hands over.
    PRINT_OPTIONS: ClassVar[tuple[PrintOption, ...]] = (
        PrintOption(
            "mode",
            "choice",
            "Mode",
            "Print mode of this job",
            default="fast",
            choices=(("fast", "Fast"), ("fine", "Fine")),
        ),
        PrintOption("speed", "integer", "Speed", "Speed of this job", min_value=1, max_value=5),
        PrintOption("cut", "boolean", "Cut", "Cut after each label"),
        PrintOption("note", "string", "Note", "Text printed on the liner", max_length=8),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.calls: list[tuple[str, str]] = []
        self.job_options: list[dict[str, Any]] = []

    async def init_driver(self) -> None:
        self.calls.append(("init_driver", ""))

    async def init_machine(self, machine: Machine) -> None:
        self.calls.append(("init_machine", machine.name))
        machine.set_status(LabelPrinterStatus.CONNECTED)

    async def update_machine(self, old_state: MachineSnapshot, machine: Machine) -> None:
        self.calls.append(("update_machine", machine.name))
        if (
            old_state.settings.get(("D", "HOST")) != machine.get_setting("HOST", "D")
            and machine.initialized
        ):
            machine.restart_required = True

    async def restart_machine(self, machine: Machine) -> None:
        self.calls.append(("restart_machine", machine.name))

    async def close_machine(self, machine: Machine) -> None:
        self.calls.append(("close_machine", machine.name))

    async def print(self, machine: Machine, job: PrintJob) -> None:
        self.calls.append(("print", machine.name))
        self.job_options.append(dict(job.options))


class RequiredSettingsDriver(LabelPrinterDriver):
    """Needs two settings before it initialises."""

    SLUG = "needs-settings"
    NAME = "Needs settings"
    DESCRIPTION = "Has required settings"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "ADDRESS": {"name": "Address", "description": "Required", "required": True},
        "PORT": {
            "name": "Port",
            "description": "Required int",
            "required": True,
            "validator": int,
            "default": "",
        },
    }

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


class FailingInitDriver(LabelPrinterDriver):
    """`init_machine` raises until the FIXED setting is true."""

    SLUG = "failing"
    NAME = "Failing driver"
    DESCRIPTION = "Fails to initialise"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "FIXED": {
            "name": "Fixed",
            "description": "Stop failing",
            "default": False,
            "validator": bool,
        },
    }

    async def init_machine(self, machine: Machine) -> None:
        if not machine.get_setting("FIXED", "D"):
            raise ConnectionError("printer on fire")

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


class OtherTypeDriver(BaseDriver):
    """A driver that is not a label-printer driver."""

    SLUG = "other-type"
    NAME = "Other type driver"
    DESCRIPTION = "For another machine type"
    machine_type = "label-printer"


class MissingNameDriver(LabelPrinterDriver):
    """Fails validation: no NAME."""

    SLUG = "missing-name"
    DESCRIPTION = "No name"

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


class DuplicateSlugDriver(RecordingDriver):
    """Repeats the `recording` slug."""

    NAME = "Duplicate"


class TroubledDriver(LabelPrinterDriver):
    """A printer whose driver code fails where the `FAIL_IN` setting says; records what it prints."""

    SLUG = "troubled"
    NAME = "Troubled driver"
    DESCRIPTION = "Fails in page_format, fails in print, or stalls"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "FAIL_IN": {
            "name": "Fail in",
            "description": "Where the driver fails",
            "default": "none",
            "choices": [(c, c) for c in ("none", "page_format", "print", "stall")],
        },
    }

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.printed: list[tuple[str, int]] = []

    async def init_machine(self, machine: Machine) -> None:
        machine.set_status(LabelPrinterStatus.CONNECTED)

    def page_format(self, machine: Machine) -> PageFormat:
        if machine.get_setting("FAIL_IN", "D") == "page_format":
            raise RuntimeError("the label size setting is corrupt")
        return PageFormat(dpi=300, width_dots=732, height_dots=342)

    async def print(self, machine: Machine, job: PrintJob) -> None:
        fail_in = machine.get_setting("FAIL_IN", "D")
        if fail_in == "print":
            raise KeyError("paper_width")
        if fail_in == "stall":
            await asyncio.Event().wait()  # took the job, then never another byte
        if job.raw is not None:
            for copy in raw_copies(job):
                self.printed.append((job.pk, copy + 1))
                job.report_progress(copy + 1)
            return
        async for number, _page in labels(job):
            self.printed.append((job.pk, number + 1))
            job.report_progress(number + 1)


class BadPrintOptionsDriver(LabelPrinterDriver):
    """Declares print options that cannot work: a taken name, a choice without choices."""

    SLUG = "bad-options"
    NAME = "Bad options"
    DESCRIPTION = "Declares unsound print options"
    PRINT_OPTIONS: ClassVar[tuple[PrintOption, ...]] = (
        PrintOption("copies", "integer", "Copies"),
        PrintOption("paper", "choice", "Paper"),
    )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


class MediaDriver(LabelPrinterDriver):
    """A printer that reports the media loaded (`loaded`, by machine pk, plays the printer).

    `WIDTH_MM` 0 lays pages out for the loaded media's width; any other width refuses loaded
    media of another width, in `page_format` (from the last known media) and in `print` (from a
    fresh reading, as a real driver reads its status before it prints).
    """

    SLUG = "media"
    NAME = "Media driver"
    DESCRIPTION = "Reports its loaded media"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "WIDTH_MM": {
            "name": "Label width",
            "description": "0: the loaded media's",
            "default": 62,
            "validator": int,
        },
    }
    DPI = 300
    DEFAULT_WIDTH_MM = 62

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.loaded: dict[str, Media] = {}
        self.page_sizes: list[tuple[int, int]] = []

    async def poll(self, machine: Machine) -> None:
        StatusReport(media=self.loaded.get(machine.pk)).apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        width_mm = self._expected_width(machine, machine.media)
        return PageFormat(dpi=self.DPI, width_dots=round(width_mm * self.DPI / 25.4))

    async def print(self, machine: Machine, job: PrintJob) -> None:
        StatusReport(media=self.loaded.get(machine.pk)).raise_if_blocking(machine)
        self._expected_width(machine, machine.media)
        async for number, page in labels(job):
            self.page_sizes.append(page.size)
            job.report_progress(number + 1)

    def _expected_width(self, machine: Machine, media: Media | None) -> float:
        """The width to print on; MediaMismatch when the loaded media is another width."""
        setting = int(machine.get_setting("WIDTH_MM", "D"))
        loaded = media.width_mm if media is not None else None
        if setting == 0:
            return loaded or self.DEFAULT_WIDTH_MM
        if media is not None and loaded is not None and loaded != setting:
            raise MediaMismatch(media, f"{setting} mm wide media")
        return setting
