"""The label loops of the ESC/POS and ZPL drivers: a stop request ends a job between labels, after
the labels already sent are confirmed; every chunk written is reported as activity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.sim import EscposSimulator, ZplSimulator, serve_tcp
from drivers.zpl.driver import MAX_RUN
from tests.driver_fakes import FakeJob, FakeMachine, random_page
from tests.driver_time import escpos_driver, zpl_driver


@dataclass
class StoppingJob(FakeJob):
    """Asks to stop once the printer reported `stop_after` labels printed."""

    stop_after: int = 0

    def report_progress(self, labels_printed: int) -> None:
        super().report_progress(labels_printed)
        if labels_printed >= self.stop_after:
            self.stop_requested = True


@pytest.fixture
async def zpl_printer(tmp_path: Path) -> AsyncIterator[tuple[FakeMachine, ZplSimulator]]:
    sim = ZplSimulator()
    async with await serve_tcp(sim) as server:
        driver = zpl_driver(tmp_path)
        machine = FakeMachine(driver, {"CONNECTION": server.url, "DPMM": "12"})
        await driver.init_machine(machine)
        yield machine, sim
        await driver.close_machine(machine)


@pytest.fixture
async def escpos_printer(tmp_path: Path) -> AsyncIterator[tuple[FakeMachine, EscposSimulator]]:
    sim = EscposSimulator()
    async with await serve_tcp(sim) as server:
        driver = escpos_driver(tmp_path)
        machine = FakeMachine(driver, {"CONNECTION": server.url})
        await driver.init_machine(machine)
        yield machine, sim
        await driver.close_machine(machine)


async def test_zpl_stops_after_the_formats_sent_and_counts_them(
    zpl_printer: tuple[FakeMachine, ZplSimulator],
) -> None:
    machine, sim = zpl_printer
    # One page, 1,000 copies: formats of at most MAX_RUN labels, two ahead of the odometer.
    job = StoppingJob([random_page(96, 40, 1)], copies=1000, stop_after=1)
    await machine.driver.print(machine, job)  # type: ignore[union-attr]
    assert sim.total_label_count == 2 * MAX_RUN
    assert job.progress[-1] == 2 * MAX_RUN
    assert len(sim.labels) == 2 * MAX_RUN


async def test_escpos_stops_after_the_label_being_sent(
    escpos_printer: tuple[FakeMachine, EscposSimulator],
) -> None:
    machine, sim = escpos_printer
    pages = [random_page(96, 40, seed) for seed in range(3)]
    job = StoppingJob(pages, copies=4, stop_after=2)
    await machine.driver.print(machine, job)  # type: ignore[union-attr]
    assert job.progress == [1, 2]
    assert len(sim.labels) == 2


async def test_every_chunk_written_is_reported_as_activity(
    zpl_printer: tuple[FakeMachine, ZplSimulator],
) -> None:
    machine, _sim = zpl_printer
    graphic = "F" * 20_000
    raw = f"^XA^GFA,10000,10000,100,{graphic}^FS^XZ".encode()
    job = FakeJob(raw=raw)
    await machine.driver.print(machine, job)  # type: ignore[union-attr]
    # 20 KB in 1 KB chunks, plus the status exchanges around them.
    assert job.written >= len(raw) // 1024
    assert job.activity >= job.written
    assert job.progress == [1]
