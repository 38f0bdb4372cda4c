"""The render service: its thread lives from start to close; driver code runs on the loop only."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent.documents import DEFAULT_RENDER_LIMITS
from agent.machine import Machine
from agent.machine_types import LabelPrinterMachineType
from agent.render_service import DriverHookFailed, RenderService
from drivers.base import DriverContext, LabelPrinterDriver, PageFormat, PrintJob, RenderOptions
from tests.conftest import label_pdf

# Pages render in this process: the test is about threads, not the render worker.
LIMITS = dataclasses.replace(DEFAULT_RENDER_LIMITS, max_memory_bytes=None)


class WatchedDriver(LabelPrinterDriver):
    """Records the thread its render hooks run on; fails in them when told to."""

    SLUG = "watched"
    NAME = "Watched"
    DESCRIPTION = "Records where page_format and render_options run"
    threads: ClassVar[list[str]] = []
    fail_in: ClassVar[str | None] = None

    def page_format(self, machine: Any) -> PageFormat:
        self.threads.append(threading.current_thread().name)
        if self.fail_in == "page_format":
            raise ValueError("LABEL_SIZE is not a size")
        return PageFormat(dpi=300, width_dots=732, height_dots=342)

    def render_options(self, machine: Any) -> RenderOptions:
        self.threads.append(threading.current_thread().name)
        if self.fail_in == "render_options":
            raise KeyError("THRESHOLD")
        return RenderOptions(threshold=100)

    async def print(self, machine: Any, job: PrintJob) -> None:
        raise NotImplementedError


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    WatchedDriver.threads.clear()
    WatchedDriver.fail_in = None
    return Machine(
        pk="m-1",
        name="watched",
        machine_type_slug="label-printer",
        driver_slug="watched",
        active=True,
        machine_type=LabelPrinterMachineType,
        driver=WatchedDriver(DriverContext(state_dir=tmp_path / "watched")),
    )


async def test_the_render_thread_exists_only_while_the_service_runs(machine: Machine) -> None:
    service = RenderService(LIMITS)
    with pytest.raises(RuntimeError, match="not running"):
        await service.check(machine, label_pdf(2), "application/pdf", {})
    await service.start()
    assert await service.check(machine, label_pdf(2), "application/pdf", {}) == (2, ())
    assert await service.run(lambda: threading.current_thread().name) == "render_0"
    await service.close()
    with pytest.raises(RuntimeError, match="not running"):
        await service.run(lambda: None)


async def test_driver_hooks_run_on_the_loop_and_the_thread_gets_plain_values(
    machine: Machine,
) -> None:
    service = RenderService(LIMITS)
    await service.start()
    try:
        pages = await service.open(machine, label_pdf(2), "application/pdf", {"dither": True})
        try:
            (page,) = await pages.get(1)
        finally:
            await pages.close()
    finally:
        await service.close()
    assert WatchedDriver.threads == [threading.current_thread().name] * 2
    assert (page.mode, page.size) == ("1", (732, 342))
    page_format, options = service.layout(machine, {"rotation": 90})
    assert (page_format.dpi, options) == (300, RenderOptions(threshold=100, rotation=90))


@pytest.mark.parametrize(
    ("hook", "message"),
    [("page_format", "LABEL_SIZE is not a size"), ("render_options", "'THRESHOLD'")],
)
async def test_a_failing_render_hook_is_contained_with_the_drivers_message(
    machine: Machine, hook: str, message: str
) -> None:
    WatchedDriver.fail_in = hook
    service = RenderService(LIMITS)
    await service.start()
    try:
        with pytest.raises(DriverHookFailed) as failed:
            await service.check(machine, label_pdf(), "application/pdf", {})
    finally:
        await service.close()
    assert str(failed.value) == message
