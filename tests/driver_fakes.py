"""What driver tests hand a driver in place of the agent: a machine, a job, and test pages."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageChops

from agent.setting_values import native_value
from drivers.base import MachineStatus
from drivers.kit import LabelPrinterDriver, MachineProperty, SettingValue
from drivers.media import Media


@dataclass
class FakeMachine:
    """A machine as the agent shows it to a driver; settings are stored strings, typed on read."""

    driver: LabelPrinterDriver
    settings: dict[str, str] = field(default_factory=dict)
    pk: str = "6b1c0f8e-0000-4000-8000-000000000001"
    name: str = "printer"
    active: bool = True
    initialized: bool = True
    restart_required: bool = False
    status: MachineStatus | None = None
    status_text: str = ""
    properties: tuple[MachineProperty, ...] = ()
    errors: list[str] = field(default_factory=list)
    media: Media | None = None

    def get_setting(self, key: str, config_type: str) -> SettingValue:
        return native_value(self.driver.MACHINE_SETTINGS[key], self.settings.get(key))

    def set_status(self, status: MachineStatus) -> None:
        self.status = status

    def set_status_text(self, text: str) -> None:
        self.status_text = text

    def set_properties(self, properties: Any) -> None:
        self.properties = tuple(properties)

    def set_media(self, media: Media | None) -> None:
        self.media = media

    def handle_error(self, error: Exception | str) -> None:
        self.errors.append(str(error))

    def prop(self, key: str) -> object:
        return next(p.value for p in self.properties if p.key == key)


@dataclass
class FakeJob:
    """A print job as the queue hands it over; `progress` records every report."""

    pages: list[Image.Image] = field(default_factory=list)
    copies: int = 1
    raw: bytes | None = None
    first_label: int = 0
    pk: str = "job-1"
    content_type: str = "application/pdf"
    options: dict[str, Any] = field(default_factory=dict)
    progress: list[int] = field(default_factory=list)
    activity: int = 0
    written: int = 0
    stop_requested: bool = False

    @property
    def page_count(self) -> int:
        return len(self.pages)

    async def page(self, index: int) -> Image.Image:
        return self.pages[index]

    async def planes(self, index: int) -> tuple[Image.Image, ...]:
        return (self.pages[index],)

    def report_progress(self, labels_printed: int) -> None:
        self.progress.append(labels_printed)

    def report_activity(self) -> None:
        self.activity += 1

    async def before_write(self) -> None:
        self.written += 1


def page_16x3() -> Image.Image:
    """Row 0: dots 0-7 black; row 1: every even dot black; row 2: only dot 15 black."""
    page = Image.new("1", (16, 3), 255)
    for x in range(8):
        page.putpixel((x, 0), 0)
    for x in range(0, 16, 2):
        page.putpixel((x, 1), 0)
    page.putpixel((15, 2), 0)
    return page


def random_page(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("1", (width, height), rng.randbytes((width + 7) // 8 * height))


def same(image: Image.Image, page: Image.Image) -> bool:
    return image.size == page.size and ImageChops.difference(image, page).getbbox() is None
