"""The DYMO LabelWriter driver against its simulator: over loopback TCP, over USB with pyusb's
device faked (only the USB device is fake), and through a device file (a pty as /dev/usb/lp0)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from drivers.base import DriverContext
from drivers.dymo.driver import DymoDriver, DymoTiming
from drivers.dymo.protocol import RESET, LabelSettings, encode_label
from drivers.dymo.simulator import DymoSimulator
from drivers.kit import LabelPrinterStatus, PrinterNotReady, PrinterSilent, PrintFailed
from drivers.sim import SimTcpServer, serve_pty, serve_tcp
from drivers.sim.base import ReceivedLabel
from tests import dymo_reference
from tests.driver_fakes import FakeJob, FakeMachine, random_page, same
from tests.driver_time import SteppingClock
from tests.simulator_tap import Tap
from tests.test_transport_usb import FakeDevice, bus  # noqa: F401 - `bus` is a fixture

QUICK = DymoTiming(status_timeout=0.3, label_status_timeout=0.3)
WIDTH, HEIGHT = 296, 40
CUSTOM = {"LABEL": "custom", "LABEL_WIDTH_DOTS": str(WIDTH), "LABEL_LENGTH_DOTS": str(HEIGHT)}


def dymo_driver(tmp_path: Path) -> DymoDriver:
    return DymoDriver(DriverContext(tmp_path, SteppingClock()), QUICK)


def pages(count: int) -> list[Image.Image]:
    return [random_page(WIDTH, HEIGHT, seed) for seed in range(count)]


@pytest.fixture
def sim() -> DymoSimulator:
    return DymoSimulator()


@pytest.fixture
def tap(sim: DymoSimulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


@pytest.fixture
async def server(sim: DymoSimulator, tap: Tap) -> AsyncIterator[SimTcpServer]:
    async with await serve_tcp(sim) as server:
        yield server


async def connect(tmp_path: Path, connection: str, **settings: str) -> FakeMachine:
    driver = dymo_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": connection, **CUSTOM, **settings})
    await driver.init_machine(machine)
    return machine


@pytest.fixture
async def machine(tmp_path: Path, server: SimTcpServer) -> AsyncIterator[FakeMachine]:
    machine = await connect(tmp_path, server.url)
    yield machine
    await machine.driver.close_machine(machine)


async def test_a_job_prints_every_label_with_short_feeds_between_and_a_form_feed_last(
    machine: FakeMachine, sim: DymoSimulator, tap: Tap
) -> None:
    job = FakeJob(pages=pages(2), copies=2)
    await machine.driver.print(machine, job)
    assert all(
        same(label.image, page) for label, page in zip(sim.labels, job.pages * 2, strict=True)
    )
    assert job.progress == [1, 2, 3, 4]
    assert list(sim.form_feeds) == ["G", "G", "G", "E"]
    assert tap.streams[-1].startswith(RESET)
    # What went over the wire reads back the same from DYMO's manual.
    decoded = dymo_reference.labels(bytes(tap.streams[-1]))
    assert all(
        same(label.convert("1"), page) for label, page in zip(decoded, job.pages * 2, strict=True)
    )


async def test_paper_out_before_a_job_makes_it_wait(
    machine: FakeMachine, sim: DymoSimulator
) -> None:
    sim.set_fault("paper-out")
    job = FakeJob(pages=pages(1))
    with pytest.raises(PrinterNotReady, match="Paper out"):
        await machine.driver.print(machine, job)
    assert machine.status == LabelPrinterStatus.NO_MEDIA
    assert (sim.labels, job.progress) == ([], [])


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("paper-out", LabelPrinterStatus.NO_MEDIA),
        ("jam", LabelPrinterStatus.PAPER_JAM),
        ("error", LabelPrinterStatus.ERROR),
    ],
)
async def test_a_fault_mid_job_stops_it_after_the_labels_confirmed(
    machine: FakeMachine, sim: DymoSimulator, fault: str, status: LabelPrinterStatus
) -> None:
    def stop_at_second(label: ReceivedLabel) -> None:
        if label.number == 2:
            sim.set_fault(fault)

    sim.on_label = stop_at_second
    job = FakeJob(pages=pages(3))
    with pytest.raises(PrinterNotReady):
        await machine.driver.print(machine, job)
    assert machine.status == status
    # The status after the second label says the printer stopped: that label is not counted.
    assert (len(sim.labels), job.progress) == (2, [1])
    sim.clear_fault()
    resumed = FakeJob(pages=job.pages, first_label=1)
    await machine.driver.print(machine, resumed)
    assert resumed.progress == [2, 3]
    # Printed twice rather than left out: the printer cannot tell whether it came out whole.
    expected = [job.pages[0], job.pages[1], job.pages[1], job.pages[2]]
    assert all(same(label.image, page) for label, page in zip(sim.labels, expected, strict=True))


async def test_a_silent_printer_raises_printer_silent(
    machine: FakeMachine, sim: DymoSimulator
) -> None:
    sim.set_fault("offline")
    with pytest.raises(PrinterSilent, match="ESC A"):
        await machine.driver.print(machine, FakeJob(pages=pages(1)))
    assert sim.labels == []


async def test_poll_shows_status_model_labels_and_live_state(
    machine: FakeMachine, sim: DymoSimulator
) -> None:
    await machine.driver.poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.CONNECTED, "")
    assert machine.prop("Model") == "LabelWriter 450"
    assert machine.prop("Labels") == "custom"
    assert (machine.prop("Paper"), machine.prop("Top of form")) == ("ok", True)
    sim.set_fault("jam")
    await machine.driver.poll(machine)
    assert machine.status == LabelPrinterStatus.PAPER_JAM
    assert machine.status_text.startswith("Paper jam")


async def test_a_cancelled_job_ends_its_current_label_with_a_form_feed(
    machine: FakeMachine, sim: DymoSimulator
) -> None:
    job = FakeJob(pages=pages(1), copies=10)

    def cancel_after_first(label: ReceivedLabel) -> None:
        job.stop_requested = True

    sim.on_label = cancel_after_first
    await machine.driver.print(machine, job)
    # The label being rendered when the cancel landed is still printed, and it is the last.
    assert job.progress == [1, 2]
    assert list(sim.form_feeds) == ["G", "E"]


async def test_density_option_graphics_mode_and_twin_turbo_roll(
    tmp_path: Path, server: SimTcpServer, sim: DymoSimulator, tap: Tap
) -> None:
    settings = {"MODEL": "450-twin-turbo", "ROLL": "right", "MODE": "graphics"}
    machine = await connect(tmp_path, server.url, **settings)
    job = FakeJob(pages=pages(1), options={"density": "dark"})
    await machine.driver.print(machine, job)
    stream = bytes(tap.streams[-1])
    assert b"\x1bq2" in stream
    assert b"\x1bg\x1bi" in stream
    # 300 x 600 dpi: each row of the page printed twice, at 1/600 inch.
    doubled = job.pages[0].resize((WIDTH, 2 * HEIGHT), Image.Resampling.NEAREST)
    assert same(sim.labels[0].image, doubled)
    await machine.driver.close_machine(machine)


async def test_single_roll_models_send_no_roll_command(machine: FakeMachine, tap: Tap) -> None:
    await machine.driver.print(machine, FakeJob(pages=pages(1)))
    assert b"\x1bq" not in bytes(tap.streams[-1])


async def test_raw_jobs_go_out_unchanged_once_per_copy(
    machine: FakeMachine, sim: DymoSimulator, tap: Tap
) -> None:
    raw = encode_label(pages(1)[0], LabelSettings(), last=True)
    job = FakeJob(raw=raw, copies=2)
    await machine.driver.print(machine, job)
    assert bytes(tap.streams[-1]).count(raw) == 2
    assert (len(sim.labels), job.progress) == (2, [1, 2])


async def test_a_page_wider_than_the_head_fails_the_job(machine: FakeMachine) -> None:
    with pytest.raises(PrintFailed, match="672 dots wide"):
        await machine.driver.print(machine, FakeJob(pages=[Image.new("1", (700, 10), 255)]))


@pytest.mark.parametrize(
    ("settings", "size"),
    [
        ({"LABEL": "30252"}, (331, 1051)),
        ({"LABEL": "99012"}, (425, 1051)),
        ({"LABEL": "11354"}, (378, 673)),
        ({"LABEL": "30256"}, (672, 1205)),  # wider than the head: the head's width
        ({"LABEL": "30270"}, (672, None)),  # continuous
        ({"LABEL": "1744907", "MODEL": "4xl"}, (1205, 1795)),
        ({"LABEL": "custom", "LABEL_LENGTH_DOTS": "0"}, (WIDTH, None)),
    ],
)
async def test_page_format_follows_the_labels(
    tmp_path: Path, settings: dict[str, str], size: tuple[int, int | None]
) -> None:
    driver = dymo_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": "tcp://127.0.0.1:9", **CUSTOM, **settings})
    page_format = driver.page_format(machine)
    assert (page_format.dpi, page_format.width_dots, page_format.height_dots) == (300, *size)


async def test_continuous_stock_prints_each_page_at_its_own_length(
    tmp_path: Path, server: SimTcpServer, sim: DymoSimulator
) -> None:
    machine = await connect(tmp_path, server.url, LABEL_LENGTH_DOTS="0")
    job = FakeJob(pages=[random_page(WIDTH, 25, 1), random_page(WIDTH, 60, 2)])
    await machine.driver.print(machine, job)
    assert all(same(label.image, page) for label, page in zip(sim.labels, job.pages, strict=True))
    await machine.driver.close_machine(machine)


async def test_without_status_queries_a_file_gets_reset_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "lp0"
    out.touch()
    machine = await connect(tmp_path, f"file://{out}", STATUS_QUERY="false")
    job = FakeJob(pages=pages(2))
    await machine.driver.print(machine, job)
    await machine.driver.poll(machine)
    await machine.driver.close_machine(machine)
    assert job.progress == [1, 2]
    assert machine.status_text == "Connected; status queries are off"
    data = out.read_bytes()
    assert data.startswith(RESET)
    decoded = dymo_reference.labels(data)
    assert all(
        same(label.convert("1"), page) for label, page in zip(decoded, job.pages, strict=True)
    )


async def test_a_device_file_such_as_dev_usb_lp0_prints_and_reads_status(
    tmp_path: Path, sim: DymoSimulator
) -> None:
    # A pty stands in for the usblp node: a character device read and written both ways.
    session = await serve_pty(sim)
    try:
        machine = await connect(tmp_path, f"file://{session.path}")
        await machine.driver.poll(machine)
        assert machine.status == LabelPrinterStatus.CONNECTED
        job = FakeJob(pages=pages(2))
        await machine.driver.print(machine, job)
        assert job.progress == [1, 2]
        assert all(
            same(label.image, page) for label, page in zip(sim.labels, job.pages, strict=True)
        )
        sim.set_fault("paper-out")
        await machine.driver.poll(machine)
        assert machine.status == LabelPrinterStatus.NO_MEDIA
        await machine.driver.close_machine(machine)
    finally:
        session.close()


class SimulatedLabelWriter(FakeDevice):
    """A LabelWriter 450 on the (fake) USB bus: bulk OUT into the simulator, its replies IN."""

    def __init__(self, sim: DymoSimulator) -> None:
        super().__init__(serial="01010112345")
        self.channel = sim.open_channel()
        self.lock = threading.Lock()

    def write(self, endpoint: int, data: bytes, timeout: int) -> int:
        written = super().write(endpoint, data, timeout)
        with self.lock:
            reply = self.channel.feed(bytes(data))
        if reply:
            self.reply(reply)
        return written


async def test_usb_through_pyusb_prints_and_reads_status(
    tmp_path: Path,
    bus: list[tuple[int, int, FakeDevice]],  # noqa: F811 - the fixture imported above
    sim: DymoSimulator,
) -> None:
    device = SimulatedLabelWriter(sim)
    bus.append((0x0922, 0x0020, device))
    machine = await connect(tmp_path, "usb://0922:0020")
    await machine.driver.poll(machine)
    assert machine.status == LabelPrinterStatus.CONNECTED
    job = FakeJob(pages=pages(3))
    await machine.driver.print(machine, job)
    assert job.progress == [1, 2, 3]
    assert all(same(label.image, page) for label, page in zip(sim.labels, job.pages, strict=True))
    # The kernel's usblp driver was detached for the job and is given back on close.
    await machine.driver.close_machine(machine)
    assert device.calls[:2] == ["detach 0", "claim 0"]
    assert device.calls[-2:] == ["attach 0", "dispose"]
    sim.set_fault("paper-out")
    machine = await connect(tmp_path, "usb://0922:0020")
    await machine.driver.poll(machine)
    assert machine.status == LabelPrinterStatus.NO_MEDIA
    await machine.driver.close_machine(machine)
