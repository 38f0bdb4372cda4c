"""The TSPL driver against the TSPL simulator over real loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from agent.setting_values import SettingInvalid, clean_value
from drivers.kit import DriverContext, LabelPrinterStatus, PrinterNotReady, PrinterSilent
from drivers.sim import SimTcpServer, serve_tcp
from drivers.sim.base import ReceivedLabel
from drivers.transport import TransportError
from drivers.tspl.driver import TsplDriver, TsplTiming
from drivers.tspl.protocol import encode_label
from drivers.tspl.simulator import TsplSimulator
from tests import tspl_reference
from tests.driver_fakes import FakeJob, FakeMachine, page_16x3, random_page, same
from tests.driver_time import SteppingClock
from tests.simulator_tap import Tap

# Polls give up quickly; after a label the simulator (on this loop) gets room under load.
QUICK = TsplTiming(status_timeout=0.3, label_status_timeout=2.0, model_timeout=0.1)
STATUS = b"\x1b!?"
# The machine's default setup: a 50 x 30 mm label with 2 mm gaps.
SETUP = b"SIZE 50 mm,30 mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 0,0\r\n"


@pytest.fixture
def sim() -> TsplSimulator:
    return TsplSimulator()


@pytest.fixture
async def server(sim: TsplSimulator) -> AsyncIterator[SimTcpServer]:
    async with await serve_tcp(sim) as server:
        yield server


@pytest.fixture
def tap(sim: TsplSimulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


def tspl_driver(tmp_path: Path) -> TsplDriver:
    return TsplDriver(DriverContext(tmp_path, SteppingClock()), QUICK)


@pytest.fixture
async def machine(tmp_path: Path, server: SimTcpServer) -> AsyncIterator[FakeMachine]:
    driver = tspl_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": server.url})
    await driver.init_machine(machine)
    yield machine
    await driver.close_machine(machine)


def driver_of(machine: FakeMachine) -> TsplDriver:
    assert isinstance(machine.driver, TsplDriver)
    return machine.driver


def pages(count: int, width: int = 400, height: int = 240) -> list[Image.Image]:
    return [random_page(width, height, seed) for seed in range(count)]


def images(labels: list[ReceivedLabel]) -> list[Image.Image]:
    return [label.image for label in labels]


async def test_golden_bytes_of_a_one_page_job_with_copies(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    job = FakeJob([page_16x3()], copies=3)
    await driver_of(machine).print(machine, job)
    label = b"CLS\r\nBITMAP 0,0,2,3,0,\x00\xff\x55\x55\xff\xfe\r\nPRINT 1\r\n"
    # The copies print the image still in the buffer: PRINT 1 again, no second bitmap.
    again = b"PRINT 1\r\n"
    assert tap.received == STATUS + SETUP + label + STATUS + again + STATUS + again + STATUS
    assert job.progress == [1, 2, 3]
    assert len(sim.labels) == 3


async def test_settings_and_the_jobs_density_go_into_the_setup(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    machine.settings |= {
        "LABEL_WIDTH_MM": "100",
        "LABEL_HEIGHT_MM": "150",
        "MEDIA": "mark",
        "GAP_MM": "3",
        "DENSITY": "8",
        "SPEED": "4",
        "DIRECTION": "1",
    }
    await driver_of(machine).print(machine, FakeJob([page_16x3()], options={"density": 12}))
    setup = b"SIZE 100 mm,150 mm\r\nBLINE 3 mm,0 mm\r\nDIRECTION 1,0\r\nDENSITY 12\r\nSPEED 4\r\n"
    assert tap.received == STATUS + setup + encode_label(page_16x3()) + STATUS
    settings = sim.settings
    assert (settings.density, settings.speed, settings.direction) == (12, 4.0, 1)
    assert (settings.width_dots, settings.height_dots) == (800, 1200)


async def test_pages_print_in_order_copy_after_copy_each_as_rendered(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    a, b = pages(2)
    job = FakeJob([a, b], copies=2)
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2, 3, 4]
    assert all(map(same, images(sim.labels), [a, b, a, b]))
    # What the printer received, read as TSC's manual describes it, prints the same.
    reference = tspl_reference.labels(tap.received)
    assert len(reference) == 4
    assert all(map(same, (label.convert("1") for label in reference), [a, b, a, b]))


async def test_a_4x6_inch_label_at_203_dpi(machine: FakeMachine, sim: TsplSimulator) -> None:
    machine.settings |= {"LABEL_WIDTH_MM": "102", "LABEL_HEIGHT_MM": "152"}
    (page,) = pages(1, 816, 1216)
    await driver_of(machine).print(machine, FakeJob([page]))
    assert same(sim.labels[0].image, page)


async def test_continuous_media_prints_each_page_at_its_own_length(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    machine.settings |= {"LABEL_HEIGHT_MM": "0"}
    short, long = random_page(400, 100, 1), random_page(400, 164, 2)
    await driver_of(machine).print(machine, FakeJob([short, long]))
    # 100 dots need 13 mm, 164 dots 21 mm: the size changes between the labels.
    assert b"SIZE 50 mm,13 mm\r\nGAP 0,0\r\n" in tap.received
    assert b"SIZE 50 mm,21 mm\r\nGAP 0,0\r\n" in tap.received
    for label, page in zip(sim.labels, [short, long], strict=True):
        expected = Image.new("1", label.image.size, 255)
        expected.paste(page, (0, 0))
        assert label.image.size == (400, -(-page.height // 8) * 8)
        assert same(label.image, expected)


@pytest.mark.parametrize(
    ("settings", "dpi", "width", "height"),
    [
        ({}, 203, 400, 240),
        ({"DPI": "300", "LABEL_WIDTH_MM": "62", "LABEL_HEIGHT_MM": "29"}, 300, 744, 348),
        ({"LABEL_WIDTH_MM": "100", "LABEL_HEIGHT_MM": "0"}, 203, 800, None),
        ({"DPI": "600", "LABEL_WIDTH_MM": "25", "LABEL_HEIGHT_MM": "10"}, 600, 600, 240),
    ],
)
def test_page_format_from_resolution_and_label_size(
    tmp_path: Path, settings: dict[str, str], dpi: int, width: int, height: int | None
) -> None:
    driver = tspl_driver(tmp_path)
    page = driver.page_format(FakeMachine(driver, settings))
    assert (page.dpi, page.width_dots, page.height_dots) == (dpi, width, height)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DENSITY", "16", "-1 to 15"),
        ("SPEED", "19", "0 to 18"),
        ("DPI", "250", "valid option"),
        ("MEDIA", "tape", "valid option"),
        ("LABEL_WIDTH_MM", "300", "5 to 240"),
        ("GAP_MM", "30", "25.4"),
        ("CONNECTION", "tcp://", "names no printer"),
    ],
)
def test_bad_setting_values_are_refused_with_a_reason(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingInvalid, match=message):
        clean_value(TsplDriver.MACHINE_SETTINGS[key], value)


async def test_poll_shows_the_status_and_asks_the_model_once(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    driver = driver_of(machine)
    await driver.poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.CONNECTED, "")
    assert machine.prop("Model") == "TE200"
    sim.set_fault("paper-out")
    await driver.poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.NO_MEDIA, "Paper out")
    assert (machine.prop("Paper"), machine.prop("Model")) == ("out", "TE200")
    assert tap.received == STATUS + b"~!T" + STATUS


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        ("head-open", LabelPrinterStatus.ERROR, "Print head open"),
        ("jam", LabelPrinterStatus.PAPER_JAM, "Paper jam"),
        ("ribbon-out", LabelPrinterStatus.NO_MEDIA, "Ribbon out"),
        ("cover-open", LabelPrinterStatus.ERROR, "Cover open"),
        ("paused", LabelPrinterStatus.WARNING, "Paused: press the PAUSE button to go on"),
    ],
)
async def test_poll_shows_each_fault(
    machine: FakeMachine,
    sim: TsplSimulator,
    fault: str,
    status: LabelPrinterStatus,
    text: str,
) -> None:
    sim.set_fault(fault)
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (status, text)


async def test_a_printer_that_does_not_know_the_model_query_still_shows_its_status(
    machine: FakeMachine, sim: TsplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_channel = sim.open_channel

    class Deaf:
        def __init__(self) -> None:
            self.channel = open_channel()

        def feed(self, data: bytes) -> bytes:
            reply: bytes = self.channel.feed(data.replace(b"~!T", b""))
            return reply

        def close(self) -> None:
            self.channel.close()

    monkeypatch.setattr(sim, "open_channel", Deaf)
    await driver_of(machine).poll(machine)
    assert machine.status is LabelPrinterStatus.CONNECTED
    assert "Model" not in {p.key for p in machine.properties}


async def test_an_offline_printer_is_silent(machine: FakeMachine, sim: TsplSimulator) -> None:
    sim.set_fault("offline")
    with pytest.raises(PrinterSilent, match=r"no answer to the status query \(ESC ! \?\)"):
        await driver_of(machine).poll(machine)
    driver_of(machine).connections.get(machine).link.retry_now()
    with pytest.raises(PrinterSilent):
        await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert sim.labels == []


async def test_a_fault_before_the_job_sends_no_label(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    sim.set_fault("head-open")
    job = FakeJob(pages(1))
    with pytest.raises(PrinterNotReady, match="Print head open"):
        await driver_of(machine).print(machine, job)
    assert tap.received == STATUS
    assert (machine.status, job.progress) == (LabelPrinterStatus.ERROR, [])


def fault_before_label(
    sim: TsplSimulator, monkeypatch: pytest.MonkeyPatch, fault: str, label: int
) -> None:
    """Switch `fault` on (once) as the printer receives the start (CLS) of label `label`."""
    open_channel = sim.open_channel
    seen = 0
    done = False

    class Watched:
        def __init__(self) -> None:
            self.channel = open_channel()

        def feed(self, data: bytes) -> bytes:
            nonlocal seen, done
            seen += data.count(b"CLS\r\n")
            if seen >= label and not done:
                sim.set_fault(fault)
                done = True
            reply: bytes = self.channel.feed(data)
            return reply

        def close(self) -> None:
            self.channel.close()

    monkeypatch.setattr(sim, "open_channel", Watched)


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ("paper-out", "Paper out"),
        ("ribbon-out", "Ribbon out"),
        ("jam", "Paper jam"),
        ("cover-open", "Cover open"),
        ("head-open", "Print head open"),
        ("temperature", "Temperature out of range"),
    ],
)
async def test_a_fault_mid_job_resends_only_the_labels_not_counted(
    machine: FakeMachine,
    sim: TsplSimulator,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    text: str,
) -> None:
    three = pages(3)
    fault_before_label(sim, monkeypatch, fault, 2)
    job = FakeJob(three)
    with pytest.raises(PrinterNotReady, match=text):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert machine.status_text.startswith(text)
    sim.clear_fault()
    resumed = FakeJob(three, first_label=1)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [2, 3]
    assert all(map(same, images(sim.labels), three))
    assert len(sim.labels) == 3


async def test_a_label_printed_just_before_paper_ran_out_may_print_twice_never_zero_times(
    machine: FakeMachine, sim: TsplSimulator
) -> None:
    a, b = pages(2)
    # The paper runs out right after label 1 came out: the status after it says "Paper out".
    sim.on_label = lambda label: sim.set_fault("paper-out") if label.number == 1 else None
    job = FakeJob([a, b])
    with pytest.raises(PrinterNotReady, match="Paper out"):
        await driver_of(machine).print(machine, job)
    assert job.progress == []
    sim.clear_fault()
    resumed = FakeJob([a, b])
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [1, 2]
    assert all(map(same, images(sim.labels), [a, a, b]))


async def test_paused_mid_job_counts_the_label_the_printer_holds(
    machine: FakeMachine, sim: TsplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    three = pages(3)
    fault_before_label(sim, monkeypatch, "paused", 2)
    job = FakeJob(three)
    with pytest.raises(PrinterNotReady, match="Paused"):
        await driver_of(machine).print(machine, job)
    # Label 2 waits in the paused printer: it is counted, and printed when the printer goes on.
    assert job.progress == [1, 2]
    assert machine.status is LabelPrinterStatus.WARNING
    assert len(sim.labels) == 1
    sim.resume()
    assert len(sim.labels) == 2
    resumed = FakeJob(three, first_label=2)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [3]
    assert all(map(same, images(sim.labels), three))
    assert len(sim.labels) == 3


async def test_a_lost_connection_resumes_with_a_whole_label(
    machine: FakeMachine, sim: TsplSimulator, tap: Tap
) -> None:
    (page,) = pages(1)
    first = len(STATUS + SETUP + encode_label(page) + STATUS)
    # Label 1 is printed and confirmed; the line drops inside the second copy's status query.
    sim.set_fault("disconnect-mid-job", after_bytes=first + len(b"PRINT 1\r\n") + 1)
    job = FakeJob([page], copies=3)
    with pytest.raises(TransportError):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    sim.clear_fault()
    driver_of(machine).connections.get(machine).link.retry_now()
    resumed = FakeJob([page], copies=3, first_label=job.progress[-1])
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [2, 3]
    # The second copy reached the printer before the line dropped: it printed, and prints again.
    assert len(sim.labels) == 4
    assert all(same(image, page) for image in images(sim.labels))
    # A new connection starts with the bitmap, not with PRINT on a buffer it did not fill.
    assert tap.streams[-1].startswith(STATUS + SETUP + b"CLS\r\nBITMAP")


async def test_without_status_queries_nothing_is_asked(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    machine.settings |= {"STATUS_QUERY": "false"}
    job = FakeJob([page_16x3()], copies=2)
    await driver_of(machine).print(machine, job)
    assert STATUS not in tap.received
    assert job.progress == [1, 2]
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (
        LabelPrinterStatus.CONNECTED,
        "Connected; status queries are off",
    )


async def test_a_raw_job_is_sent_unchanged_once_per_copy(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    raw = SETUP + b'CLS\r\nTEXT 10,10,"3",0,1,1,"A"\r\nPRINT 1\r\n'
    job = FakeJob(raw=raw, copies=2, content_type="application/vnd.tspl")
    await driver_of(machine).print(machine, job)
    assert tap.received == STATUS + raw + STATUS + raw + STATUS
    assert job.progress == [1, 2]
    assert len(sim.labels) == 2


async def test_a_job_stopped_mid_way_ends_after_the_label_being_sent(
    machine: FakeMachine, sim: TsplSimulator
) -> None:
    three = pages(3)
    job = FakeJob(three)

    def stop_after_first(label: ReceivedLabel) -> None:
        job.stop_requested = True

    sim.on_label = stop_after_first
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert len(sim.labels) == 1


async def test_after_a_settings_change_the_model_is_asked_again(
    machine: FakeMachine, tap: Tap, sim: TsplSimulator
) -> None:
    driver = driver_of(machine)
    await driver.poll(machine)
    sim.model = "TE210"
    await driver.poll(machine)
    assert machine.prop("Model") == "TE200"
    driver.forget_printer(driver.connections.get(machine).state)
    await driver.poll(machine)
    assert machine.prop("Model") == "TE210"
    assert tap.received.count(b"~!T") == 2
