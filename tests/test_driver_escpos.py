"""The ESC/POS driver against the ESC/POS simulator over real loopback TCP (and a real file)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from agent.setting_values import SettingInvalid, clean_value
from drivers.escpos import driver as escpos
from drivers.escpos.driver import EscposDriver, status_report
from drivers.escpos.profiles import model_profiles
from drivers.escpos.protocol import decode_status
from drivers.kit import (
    LabelPrinterStatus,
    MachineSnapshot,
    PrinterNotReady,
    PrinterSilent,
    PrintFailed,
    SettingValidationError,
)
from drivers.sim import EscposSimulator, SimTcpServer, serve_tcp
from drivers.transport import ConnectionUriError, TransportClosed, TransportError
from tests.driver_fakes import FakeJob, FakeMachine, page_16x3, random_page, same
from tests.driver_time import QUICK_ESCPOS, escpos_driver
from tests.simulator_tap import Tap

QUERY = bytes.fromhex("100401 100402 100403 100404")
INIT = bytes.fromhex("1b40")
# GS v 0, 2 bytes x 3 rows: FF 00 / AA AA / 00 01 (1 = dot, most significant bit leftmost).
RASTER_16x3 = bytes.fromhex("1d7630 00 0200 0300 ff00 aaaa 0001")
# The same page upside down.
RASTER_16x3_FLIPPED = bytes.fromhex("1d7630 00 0200 0300 0001 aaaa ff00")


@pytest.fixture
def sim() -> EscposSimulator:
    return EscposSimulator()


@pytest.fixture
async def server(sim: EscposSimulator) -> AsyncIterator[SimTcpServer]:
    async with await serve_tcp(sim) as server:
        yield server


@pytest.fixture
def tap(sim: EscposSimulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


@pytest.fixture
async def machine(tmp_path: Path, server: SimTcpServer) -> AsyncIterator[FakeMachine]:
    driver = escpos_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": server.url})
    await driver.init_machine(machine)
    yield machine
    await driver.close_machine(machine)


def driver_of(machine: FakeMachine) -> EscposDriver:
    assert isinstance(machine.driver, EscposDriver)
    return machine.driver


async def test_golden_bytes_of_a_two_page_job_with_copies(
    machine: FakeMachine, tap: Tap, sim: EscposSimulator
) -> None:
    machine.settings |= {"CUT": "partial", "FEED_MM": "3"}
    page = page_16x3()
    job = FakeJob([page, page.transpose(Image.Transpose.FLIP_TOP_BOTTOM)], copies=2)
    await driver_of(machine).print(machine, job)
    # 3 mm at 203 dpi = 24 dots of ESC J; partial cut GS V 1; status checked around every label.
    first = RASTER_16x3 + bytes.fromhex("1b4a18 1d5601")
    second = RASTER_16x3_FLIPPED + bytes.fromhex("1b4a18 1d5601")
    assert tap.received == (
        QUERY + INIT + first + QUERY + second + QUERY + first + QUERY + second + QUERY
    )
    assert job.progress == [1, 2, 3, 4]
    assert [label.cut for label in sim.labels] == ["partial"] * 4


async def test_the_jobs_cut_option_overrides_the_setting(
    machine: FakeMachine, tap: Tap, sim: EscposSimulator
) -> None:
    machine.settings |= {"CUT": "full"}
    await driver_of(machine).print(machine, FakeJob([page_16x3()], options={"cut": "partial"}))
    assert tap.received == QUERY + INIT + RASTER_16x3 + bytes.fromhex("1b4a00 1d5601") + QUERY
    assert [label.cut for label in sim.labels] == ["partial"]


@pytest.mark.parametrize("layout", ["default", "small-buffer", "large-buffer"])
async def test_printed_bitmap_equals_the_page(
    machine: FakeMachine, sim: EscposSimulator, layout: str
) -> None:
    machine.settings["BUFFER"] = layout
    page = random_page(576, 700, seed=7)
    await driver_of(machine).print(machine, FakeJob([page]))
    assert len(sim.labels) == 1
    assert same(sim.labels[0].image, page)


@pytest.mark.parametrize(
    ("settings", "dpi", "width"),
    [
        ({}, 203, 576),
        ({"PAPER_WIDTH_MM": "58"}, 203, 384),
        ({"DPI": "180"}, 180, 512),
        ({"DPI": "180", "PAPER_WIDTH_MM": "58"}, 180, 360),
        ({"PRINT_WIDTH_DOTS": "640"}, 203, 640),
        # A python-escpos model profile gives width and resolution; PRINT_WIDTH_DOTS still wins.
        ({"PROFILE": "NT-5890K"}, 203, 384),
        ({"PROFILE": "KR-306", "DPI": "180"}, 180, 576),
        ({"PROFILE": "NT-5890K", "PRINT_WIDTH_DOTS": "360"}, 203, 360),
    ],
)
def test_page_format_is_the_printable_width(
    tmp_path: Path, settings: dict[str, str], dpi: int, width: int
) -> None:
    driver = escpos_driver(tmp_path)
    page = driver.page_format(FakeMachine(driver, settings))
    assert (page.dpi, page.width_dots, page.height_dots) == (dpi, width, None)


def test_render_options_come_from_the_settings(tmp_path: Path) -> None:
    driver = escpos_driver(tmp_path)
    options = driver.render_options(FakeMachine(driver, {"THRESHOLD": "90", "DITHER": "true"}))
    assert (options.threshold, options.dither) == (90, True)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("CONNECTION", "serial://dev/ttyUSB0", "three slashes"),
        ("CONNECTION", "", "no connection given"),
        ("THRESHOLD", "256", "0 to 255"),
        ("CUT", "half", "valid option"),
    ],
)
def test_bad_setting_values_are_refused_with_a_reason(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingInvalid, match=message):
        clean_value(EscposDriver.MACHINE_SETTINGS[key], value)


async def test_init_checks_the_uri_but_does_not_touch_the_printer(
    tmp_path: Path, server: SimTcpServer
) -> None:
    driver = escpos_driver(tmp_path)
    with pytest.raises(ConnectionUriError, match="unknown scheme"):
        await driver.init_machine(FakeMachine(driver, {"CONNECTION": "lpt://1"}))
    machine = FakeMachine(driver, {"CONNECTION": server.url})
    await driver.init_machine(machine)
    assert server.connections == set()
    await driver.close_machine(machine)


STATUS_BITS = [
    # (DLE EOT n, bits, status, status text, stops printing)
    (1, 0x08, LabelPrinterStatus.ERROR, "Printer offline", True),
    (1, 0x04, LabelPrinterStatus.CONNECTED, "", False),  # cash drawer pin, not the printer
    (2, 0x04, LabelPrinterStatus.ERROR, "Cover open", True),
    (2, 0x08, LabelPrinterStatus.WARNING, "Feed button pressed", False),
    (2, 0x20, LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    (2, 0x40, LabelPrinterStatus.ERROR, "Printer error", True),
    (3, 0x04, LabelPrinterStatus.ERROR, "Mechanical error", True),
    (3, 0x08, LabelPrinterStatus.ERROR, "Cutter error", True),
    (3, 0x20, LabelPrinterStatus.ERROR, "Unrecoverable error: switch the printer off and on", True),
    (3, 0x40, LabelPrinterStatus.ERROR, "Print head too hot; printing resumes when it cools", True),
    (4, 0x0C, LabelPrinterStatus.WARNING, "Paper near end", False),
    (4, 0x60, LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    # Citizen: near-end sensor 1 or 2; paper-end sensor alone.
    (4, 0x04, LabelPrinterStatus.WARNING, "Paper near end", False),
    (4, 0x20, LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    # Citizen presenter printers: bit 6 alone is a label in the presenter, not an empty roll.
    (4, 0x40, LabelPrinterStatus.WARNING, "Label waiting in the presenter", False),
    # DLE EOT 1 bit 6: the feed button is held; bit 5 alone: going back online shortly.
    (1, 0x40, LabelPrinterStatus.WARNING, "Feed button pressed", False),
    (1, 0x20, LabelPrinterStatus.WARNING, "Waiting to go back online", False),
    (1, 0x28, LabelPrinterStatus.ERROR, "Offline, waiting to go back online", True),
]


@pytest.mark.parametrize(("n", "bits", "status", "text", "blocking"), STATUS_BITS)
def test_every_status_bit_maps_to_a_status_and_text(
    n: int, bits: int, status: LabelPrinterStatus, text: str, blocking: bool
) -> None:
    replies = {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12} | {n: 0x12 | bits}
    report = status_report(decode_status(replies))
    assert (report.status, report.text, report.blocking) == (status, text, blocking)


def test_offline_with_a_cause_shows_the_cause_and_the_worst_status_first() -> None:
    # Cover open and paper out at once: the printer is offline because of them.
    report = status_report(decode_status({1: 0x1A, 2: 0x12 | 0x24, 4: 0x12 | 0x6C}))
    assert report.status is LabelPrinterStatus.ERROR
    assert report.text == "Cover open; Paper out"


@pytest.mark.parametrize(
    ("fault", "status", "text", "paper", "cover"),
    [
        (None, LabelPrinterStatus.CONNECTED, "", "ok", "closed"),
        ("paper-near-end", LabelPrinterStatus.WARNING, "Paper near end", "near end", "closed"),
        ("paper-out", LabelPrinterStatus.NO_MEDIA, "Paper out", "out", "closed"),
        ("cover-open", LabelPrinterStatus.ERROR, "Cover open", "ok", "open"),
        ("cutter-error", LabelPrinterStatus.ERROR, "Cutter error", "ok", "closed"),
        (
            "presenter-waiting",
            LabelPrinterStatus.WARNING,
            "Label waiting in the presenter",
            "ok",
            "closed",
        ),
        ("feed-button", LabelPrinterStatus.WARNING, "Feed button pressed", "ok", "closed"),
        (
            "recovery-wait",
            LabelPrinterStatus.ERROR,
            "Offline, waiting to go back online",
            "ok",
            "closed",
        ),
    ],
)
async def test_poll_reports_each_simulated_fault(
    machine: FakeMachine,
    sim: EscposSimulator,
    fault: str | None,
    status: LabelPrinterStatus,
    text: str,
    paper: str,
    cover: str,
) -> None:
    if fault is not None:
        sim.set_fault(fault)
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (status, text)
    assert (machine.prop("Paper"), machine.prop("Cover")) == (paper, cover)
    online = fault in (None, "paper-near-end", "presenter-waiting")
    assert machine.prop("Online") is online


async def test_poll_of_a_printer_that_answers_nothing_raises(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    sim.set_fault("offline")
    with pytest.raises(PrinterSilent, match="no answer to the status query"):
        await driver_of(machine).poll(machine)


async def test_garbage_status_reply_is_a_transport_error(machine: FakeMachine) -> None:
    class Garbage:
        def feed(self, data: bytes) -> bytes:
            return b"\xff" * (data.count(b"\x10\x04"))

        def close(self) -> None:
            pass

    sim = EscposSimulator()
    sim.open_channel = Garbage  # type: ignore[assignment, method-assign]
    async with await serve_tcp(sim) as server:
        machine.settings["CONNECTION"] = server.url
        await driver_of(machine).update_machine(MachineSnapshot("printer", True, {}), machine)
        with pytest.raises(TransportError, match="unexpected status reply ff ff ff ff"):
            await driver_of(machine).poll(machine)


async def test_paper_out_before_the_job_sends_nothing_and_shows_no_media(
    machine: FakeMachine, sim: EscposSimulator, tap: Tap
) -> None:
    sim.set_fault("paper-out")
    job = FakeJob([page_16x3()])
    with pytest.raises(PrinterNotReady, match="Paper out"):
        await driver_of(machine).print(machine, job)
    assert tap.received == QUERY
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.NO_MEDIA, "Paper out")
    assert job.progress == []


async def test_after_the_paper_is_refilled_a_job_clears_the_paper_out_text(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    sim.set_fault("paper-out")
    with pytest.raises(PrinterNotReady):
        await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert (machine.status_text, machine.prop("Paper")) == ("Paper out", "out")
    sim.clear_fault()
    machine.status = LabelPrinterStatus.PRINTING  # as the job runner sets it
    await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.PRINTING, "")
    assert (machine.prop("Paper"), machine.prop("Online")) == ("ok", True)


async def test_paper_out_between_labels_then_resume_prints_each_label_once(
    machine: FakeMachine, sim: EscposSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [random_page(64, 20, seed) for seed in range(3)]
    answers = 0
    status_byte = sim.status_byte

    def run_out_after_second_label(n: int) -> int:
        # Status rounds: before the job, then after each label. After label 2's round the
        # roll is empty, so label 3 goes nowhere.
        nonlocal answers
        value = status_byte(n)
        answers += 1
        if answers == 3 * 4:
            sim.set_fault("paper-out")
        return value

    monkeypatch.setattr(sim, "status_byte", run_out_after_second_label)
    job = FakeJob(pages, copies=2)
    with pytest.raises(PrinterNotReady, match="Paper out"):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]
    assert machine.status is LabelPrinterStatus.NO_MEDIA
    sim.clear_fault()
    resumed = FakeJob(pages, copies=2, first_label=job.progress[-1])
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [3, 4, 5, 6]
    expected = pages + pages
    assert len(sim.labels) == 6
    assert all(map(same, (label.image for label in sim.labels), expected))


async def test_a_lost_connection_mid_label_raises_and_the_retry_resends_it(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    pages = [random_page(64, 40, seed) for seed in range(2)]
    # Past the first label (queries, init, 3 + 320 bytes of image, feed, cut, queries) and
    # inside the second.
    sim.set_fault("disconnect-mid-job", after_bytes=12 + 2 + 8 + 320 + 6 + 12 + 100)
    job = FakeJob(pages)
    with pytest.raises(TransportError):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    sim.clear_fault()
    link = driver_of(machine).connections.get(machine).link
    link.retry_now()
    resumed = FakeJob(pages, first_label=1)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [2]
    assert len(sim.labels) == 2
    assert all(map(same, (label.image for label in sim.labels), pages))


async def test_resume_sends_only_the_labels_after_first_label(
    machine: FakeMachine, tap: Tap
) -> None:
    page = page_16x3()
    job = FakeJob([page, page.transpose(Image.Transpose.FLIP_TOP_BOTTOM)], copies=2)
    job.first_label = 3
    await driver_of(machine).print(machine, job)
    tail = bytes.fromhex("1b4a00 1d5600")
    assert tap.received == QUERY + INIT + RASTER_16x3_FLIPPED + tail + QUERY
    assert job.progress == [4]


async def test_raw_job_passes_through_once_per_copy(machine: FakeMachine, tap: Tap) -> None:
    raw = INIT + RASTER_16x3 + bytes.fromhex("0a 1d5600")
    job = FakeJob(copies=2, raw=raw, content_type="application/octet-stream")
    await driver_of(machine).print(machine, job)
    assert tap.received == QUERY + raw + QUERY + raw + QUERY
    assert job.progress == [1, 2]


async def test_page_the_encoder_refuses_fails_the_job(machine: FakeMachine) -> None:
    with pytest.raises(PrintFailed, match="mode"):
        await driver_of(machine).print(machine, FakeJob([Image.new("L", (8, 8), 255)]))


async def test_without_status_queries_a_job_is_just_the_bytes(tmp_path: Path) -> None:
    out = tmp_path / "printer.bin"
    out.touch()
    driver = escpos_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": f"file://{out}", "STATUS_QUERY": "false"})
    await driver.init_machine(machine)
    job = FakeJob([page_16x3()], copies=2)
    await driver.print(machine, job)
    await driver.poll(machine)
    await driver.close_machine(machine)
    label = RASTER_16x3 + bytes.fromhex("1b4a00 1d5600")
    assert out.read_bytes() == INIT + label + label
    assert job.progress == [1, 2]
    assert machine.status is LabelPrinterStatus.CONNECTED
    assert machine.status_text == "Connected; status queries are off"


async def test_new_connection_setting_moves_the_machine_to_the_new_printer(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    other = EscposSimulator()
    driver = driver_of(machine)
    async with await serve_tcp(other) as server:
        machine.settings["CONNECTION"] = server.url
        await driver.update_machine(MachineSnapshot("printer", True, {}), machine)
        await driver.print(machine, FakeJob([page_16x3()]))
        assert (len(sim.labels), len(other.labels)) == (0, 1)
        assert machine.restart_required is False
        await driver.close_machine(machine)
        with pytest.raises(TransportClosed, match="not initialised"):
            await driver.print(machine, FakeJob([page_16x3()]))


async def test_restart_skips_the_reconnect_backoff(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    sim.set_fault("offline")
    driver = driver_of(machine)
    with pytest.raises(PrinterSilent):
        await driver.poll(machine)
    sim.clear_fault()
    with pytest.raises(TransportError, match="unreachable"):
        await driver.poll(machine)
    await driver.restart_machine(machine)
    await driver.poll(machine)
    assert machine.status is LabelPrinterStatus.CONNECTED


def test_profile_setting_accepts_only_python_escpos_profiles() -> None:
    validator = EscposDriver.MACHINE_SETTINGS["PROFILE"]["validator"]
    assert callable(validator)
    validator("TM-T88V")
    validator("default")
    with pytest.raises(SettingValidationError, match="Unknown printer profile 'TM-NOPE'"):
        validator("TM-NOPE")


async def test_a_model_without_raster_support_fails_the_job_at_once(tmp_path: Path) -> None:
    driver = escpos_driver(tmp_path)
    # AF-240 is a customer display: python-escpos says it has no raster image support.
    machine = FakeMachine(driver, {"PROFILE": "AF-240", "CONNECTION": "tcp://127.0.0.1:9"})
    with pytest.raises(PrintFailed, match="cannot print images"):
        await driver.print(machine, FakeJob([Image.new("1", (8, 8), 1)]))


def page_with_status_requests(width: int = 64, height: int = 20) -> Image.Image:
    """A random page whose raster holds `10 04 01` and `10 04 04` (DLE EOT 1 and 4) in row 3."""
    page = random_page(width, height, seed=7)
    row_bytes = (width + 7) // 8
    data = bytearray(ImageChops.invert(page).tobytes())
    data[3 * row_bytes + 1 : 3 * row_bytes + 7] = bytes.fromhex("100401 100404")
    return ImageChops.invert(Image.frombytes("1", (width, height), bytes(data)))


@pytest.mark.parametrize("answers_in_raster", [True, False])
async def test_status_requests_inside_image_data_never_reprint_a_label(
    tmp_path: Path, sim: EscposSimulator, answers_in_raster: bool
) -> None:
    # Epson answers `10 04 n` found in image data; with paper near end a reply shifted by those
    # answers reads the roll sensor's 0x1e as "offline", which made the label print again.
    sim.realtime_status_in_raster = answers_in_raster
    sim.set_fault("paper-near-end")
    tricky = page_with_status_requests()
    assert escpos.realtime_requests(escpos.encode_label(tricky)) == 2
    plain = random_page(64, 20, seed=8)
    async with await serve_tcp(sim) as server:
        driver = escpos_driver(tmp_path)
        machine = FakeMachine(driver, {"CONNECTION": server.url})
        await driver.init_machine(machine)
        try:
            job = FakeJob([tricky, plain, tricky], copies=2)
            await driver.print(machine, job)
            assert job.progress == [1, 2, 3, 4, 5, 6]
            await driver.poll(machine)
        finally:
            await driver.close_machine(machine)
    assert len(sim.labels) == 6
    assert all(map(same, (label.image for label in sim.labels), [tricky, plain, tricky] * 2))
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.WARNING, "Paper near end")


async def test_a_reply_out_of_step_is_asked_again_not_taken_as_a_fault(
    machine: FakeMachine, sim: EscposSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stray byte ahead of the reply (line noise, a late answer): the four bytes read lack
    # the fixed bits; the driver drains the line and asks again instead of failing the label.
    stray = [b"\x00"]
    job = FakeJob([page_16x3()])
    original = sim.open_channel

    def noisy_channel() -> Any:
        channel = original()
        feed = channel.feed

        def noisy(data: bytes) -> bytes:
            reply = feed(data)
            if reply and stray:
                return stray.pop() + reply
            return reply

        channel.feed = noisy
        return channel

    monkeypatch.setattr(sim, "open_channel", noisy_channel)
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert len(sim.labels) == 1


def test_model_profiles_load_without_python_escpos_yaml_parse_on_the_event_loop() -> None:
    # python-escpos parses its capability file with PyYAML at import (0.3-0.4 s, and a
    # logging.basicConfig()); validating PROFILE runs on the event loop, so the driver reads the
    # same file as JSON instead and never imports that module.
    script = (
        "import sys\n"
        "from drivers.escpos.driver import EscposDriver\n"
        "EscposDriver.MACHINE_SETTINGS['PROFILE']['validator']('TM-T88V')\n"
        "print('escpos.capabilities' in sys.modules, 'yaml' in sys.modules)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def test_model_profiles_match_python_escpos() -> None:
    from escpos import capabilities  # the reference, loaded only here

    reference = capabilities.CAPABILITIES["profiles"]
    ours = model_profiles()
    assert set(ours) == set(reference)
    tm = ours["TM-T88V"]
    media = reference["TM-T88V"]["media"]
    assert (tm.width_dots, tm.dpi) == (media["width"]["pixels"], media["dpi"])
    assert ours["AF-240"].raster is False


async def test_a_slow_line_that_keeps_answering_is_not_taken_for_a_printer_that_is_off(
    machine: FakeMachine, sim: EscposSimulator
) -> None:
    # One reply byte every 100 ms: the four take longer than the (test's 0.3 s) status timeout,
    # which bounds the wait for the first byte; later ones only need to keep coming.
    assert QUICK_ESCPOS.status_timeout < 4 * 0.1
    sim.set_fault("slow-replies", delay=0.1)
    sim.set_fault("paper-near-end")
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.WARNING, "Paper near end")
    job = FakeJob([page_16x3()])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]
