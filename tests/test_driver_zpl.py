"""The ZPL driver against the ZPL simulator over real loopback TCP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from agent.setting_values import SettingInvalid, clean_value
from drivers.kit import (
    LabelPrinterStatus,
    PrinterNotReady,
    PrinterSilent,
    PrintFailed,
)
from drivers.media import Media
from drivers.sim import SimTcpServer, ZplSimulator, serve_tcp
from drivers.transport import TransportError
from drivers.zpl.driver import ZplDriver, ZplTiming
from drivers.zpl.protocol import (
    ZplError,
    ZplExtendedStatus,
    ZplWarning,
    encode_page,
    parse_host_status,
)
from drivers.zpl.status import ZplReading, status_report
from tests.driver_fakes import FakeJob, FakeMachine, page_16x3, random_page, same
from tests.driver_time import QUICK_ZPL, SteppingClock, zpl_driver
from tests.simulator_tap import Tap

STATUS = b"~HQES~HS"
ODOMETER = b'! U1 getvar "odometer.total_label_count"\r\n'


class Deaf:
    """Wraps a simulator channel so it never sees the given commands (older firmware)."""

    def __init__(self, channel: Any, ignored: list[bytes]) -> None:
        self.channel = channel
        self.ignored = ignored

    def feed(self, data: bytes) -> bytes:
        for command in self.ignored:
            data = data.replace(command, b"")
        reply: bytes = self.channel.feed(data)
        return reply

    def close(self) -> None:
        self.channel.close()


def deafen(sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch, *ignored: bytes) -> list[bytes]:
    """Make the simulator ignore commands; returns the list, which a test may change."""
    commands = list(ignored)
    open_channel = sim.open_channel
    monkeypatch.setattr(sim, "open_channel", lambda: Deaf(open_channel(), commands))
    return commands


@pytest.fixture
def sim() -> ZplSimulator:
    return ZplSimulator()


@pytest.fixture
async def server(sim: ZplSimulator) -> AsyncIterator[SimTcpServer]:
    async with await serve_tcp(sim) as server:
        yield server


@pytest.fixture
def tap(sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


@pytest.fixture
async def machine(tmp_path: Path, server: SimTcpServer) -> AsyncIterator[FakeMachine]:
    driver = zpl_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": server.url, "DPMM": "12"})
    await driver.init_machine(machine)
    yield machine
    await driver.close_machine(machine)


def driver_of(machine: FakeMachine) -> ZplDriver:
    assert isinstance(machine.driver, ZplDriver)
    return machine.driver


def pages(count: int, width: int = 96, height: int = 40) -> list[Image.Image]:
    return [random_page(width, height, seed) for seed in range(count)]


async def test_golden_bytes_one_page_with_copies_is_one_format_with_pq(
    machine: FakeMachine, tap: Tap, sim: ZplSimulator
) -> None:
    job = FakeJob([page_16x3()], copies=3)
    await driver_of(machine).print(machine, job)
    # Rows FF00 / AAAA / 0001 in Zebra's compressed hex: "FF," / "JA" (4 x A) / "I01" (3 x 0, 1).
    fmt = b"^XA^PW16^LL3^LH0,0^FO0,0^GFA,6,6,2,FF,JAI01^FS^PQ3^XZ"
    assert tap.received == STATUS + ODOMETER + fmt + ODOMETER
    assert job.progress == [3]
    assert sim.total_label_count == 3


async def test_golden_bytes_with_darkness_speed_and_init(
    machine: FakeMachine, tap: Tap, sim: ZplSimulator
) -> None:
    machine.settings |= {"DARKNESS": "15", "SPEED": "4", "INIT": "^MNY"}
    await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    fmt = b"^XA^MNY^PW16^LL3^LH0,0~SD15^PR4^FO0,0^GFA,6,6,2,FF,JAI01^FS^PQ1^XZ"
    assert tap.received == STATUS + ODOMETER + fmt + ODOMETER
    assert (sim.darkness, sim.speed) == (15, 4)


async def test_the_jobs_darkness_option_overrides_the_setting(
    machine: FakeMachine, tap: Tap, sim: ZplSimulator
) -> None:
    machine.settings |= {"DARKNESS": "15"}
    await driver_of(machine).print(machine, FakeJob([page_16x3()], options={"darkness": 25}))
    fmt = b"^XA^PW16^LL3^LH0,0~SD25^FO0,0^GFA,6,6,2,FF,JAI01^FS^PQ1^XZ"
    assert tap.received == STATUS + ODOMETER + fmt + ODOMETER
    assert sim.darkness == 25


async def test_pages_print_in_order_copy_after_copy_two_formats_ahead(
    machine: FakeMachine, tap: Tap, sim: ZplSimulator
) -> None:
    a, b = pages(2)
    job = FakeJob([a, b], copies=2)
    await driver_of(machine).print(machine, job)
    fa, fb = encode_page(a), encode_page(b)
    # Two formats go out before the odometer is read; then one more per label counted.
    assert tap.received == (STATUS + ODOMETER + fa + fb + ODOMETER + fa + ODOMETER + fb + ODOMETER)
    assert job.progress == [2, 3, 4]
    assert all(map(same, (label.image for label in sim.labels), [a, b, a, b]))


async def test_printed_bitmap_equals_the_page(machine: FakeMachine, sim: ZplSimulator) -> None:
    page = random_page(812, 1218, seed=5)  # 4 x 6 inch at 203 dpi: two ^GF fields
    await driver_of(machine).print(machine, FakeJob([page]))
    assert len(sim.labels) == 1
    assert same(sim.labels[0].image, page)


@pytest.mark.parametrize(
    ("settings", "dpi", "width", "height"),
    [
        ({}, 203, 800, None),
        ({"DPMM": "12", "LABEL_WIDTH_MM": "61", "LABEL_HEIGHT_MM": "30"}, 300, 732, 360),
        ({"DPMM": "6", "LABEL_WIDTH_MM": "50"}, 152, 300, None),
        ({"DPMM": "24", "LABEL_WIDTH_MM": "25", "LABEL_HEIGHT_MM": "10"}, 600, 600, 240),
    ],
)
def test_page_format_from_dpmm_and_label_size(
    tmp_path: Path, settings: dict[str, str], dpi: int, width: int, height: int | None
) -> None:
    driver = zpl_driver(tmp_path)
    page = driver.page_format(FakeMachine(driver, settings))
    assert (page.dpi, page.width_dots, page.height_dots) == (dpi, width, height)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("INIT", "^XA^MNY", "Leave out \\^XA"),
        ("INIT", "^FDÄ", "ASCII"),
        ("DARKNESS", "31", "-1 to 30"),
        ("SPEED", "15", "0 to 14"),
        ("DPMM", "10", "valid option"),
        ("CONNECTION", "tcp://", "names no printer"),
    ],
)
def test_bad_setting_values_are_refused_with_a_reason(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingInvalid, match=message):
        clean_value(ZplDriver.MACHINE_SETTINGS[key], value)


def test_good_setting_values_are_kept() -> None:
    settings = ZplDriver.MACHINE_SETTINGS
    assert clean_value(settings["DARKNESS"], "-1") == "-1"
    assert clean_value(settings["INIT"], "~TA000~JSN^LT0^MNW") == "~TA000~JSN^LT0^MNW"


def idle_host() -> Any:
    return parse_host_status(ZplSimulator().host_status())


ERROR_BITS = [
    (ZplError.MEDIA_OUT, LabelPrinterStatus.NO_MEDIA, "Paper out"),
    (ZplError.RIBBON_OUT, LabelPrinterStatus.NO_MEDIA, "Ribbon out"),
    (ZplError.HEAD_OPEN, LabelPrinterStatus.ERROR, "Print head open"),
    (ZplError.CUTTER_FAULT, LabelPrinterStatus.ERROR, "Cutter fault"),
    (ZplError.PRINTHEAD_OVER_TEMPERATURE, LabelPrinterStatus.ERROR, "Print head too hot"),
    (ZplError.MOTOR_OVER_TEMPERATURE, LabelPrinterStatus.ERROR, "Motor too hot"),
    (ZplError.BAD_PRINTHEAD_ELEMENT, LabelPrinterStatus.ERROR, "Bad print head element"),
    (ZplError.PRINTHEAD_DETECTION_ERROR, LabelPrinterStatus.ERROR, "Print head not detected"),
    (ZplError.INVALID_FIRMWARE_CONFIG, LabelPrinterStatus.ERROR, "Invalid firmware configuration"),
    (ZplError.PRINTHEAD_THERMISTOR_OPEN, LabelPrinterStatus.ERROR, "Print head thermistor open"),
    (ZplError.PAPER_JAM_DURING_RETRACT, LabelPrinterStatus.PAPER_JAM, "Paper jam during retract"),
    (ZplError.PRESENTER_NOT_RUNNING, LabelPrinterStatus.ERROR, "Presenter not running"),
    (ZplError.PAPER_FEED_ERROR, LabelPrinterStatus.PAPER_JAM, "Paper feed error"),
    (
        ZplError.CLEAR_PAPER_PATH_FAILED,
        LabelPrinterStatus.PAPER_JAM,
        "Clearing the paper path failed",
    ),
    (ZplError.PAUSED, LabelPrinterStatus.WARNING, "Paused"),
    (ZplError.RETRACT_TIMEOUT, LabelPrinterStatus.ERROR, "Retract timeout"),
    (
        ZplError.BLACK_MARK_CALIBRATE_ERROR,
        LabelPrinterStatus.ERROR,
        "Black mark calibration failed",
    ),
    (ZplError.BLACK_MARK_NOT_FOUND, LabelPrinterStatus.ERROR, "Black mark not found"),
]


def test_the_error_table_covers_every_known_bit() -> None:
    assert {bit for bit, _, _ in ERROR_BITS} == set(ZplError)


@pytest.mark.parametrize(("bit", "status", "text"), ERROR_BITS)
def test_every_hqes_error_bit_stops_printing_with_its_status(
    bit: ZplError, status: LabelPrinterStatus, text: str
) -> None:
    extended = ZplExtendedStatus(True, bit, False, ZplWarning(0))
    host = idle_host() if bit is ZplError.PAUSED else None
    report = status_report(ZplReading(host, extended))
    assert (report.status, report.text, report.blocking) == (status, text, True)


@pytest.mark.parametrize(
    ("bit", "text"),
    [
        (ZplWarning.CALIBRATE_MEDIA, "Media needs calibration"),
        (ZplWarning.CLEAN_PRINTHEAD, "Clean the print head"),
        (ZplWarning.REPLACE_PRINTHEAD, "Replace the print head"),
        (ZplWarning.PAPER_NEAR_END, "Paper near end"),
    ],
)
def test_every_hqes_warning_bit_is_a_warning_that_still_prints(bit: ZplWarning, text: str) -> None:
    extended = ZplExtendedStatus(False, ZplError(0), True, bit)
    report = status_report(ZplReading(idle_host(), extended))
    assert (report.status, report.text, report.blocking) == (
        LabelPrinterStatus.WARNING,
        text,
        False,
    )


@pytest.mark.parametrize(
    ("field", "status", "text", "blocking"),
    [
        ("paper_out", LabelPrinterStatus.NO_MEDIA, "Paper out", True),
        ("ribbon_out", LabelPrinterStatus.NO_MEDIA, "Ribbon out", True),
        ("head_up", LabelPrinterStatus.ERROR, "Print head open", True),
        ("over_temperature", LabelPrinterStatus.ERROR, "Print head too hot", True),
        ("diagnostic_mode", LabelPrinterStatus.ERROR, "Communications diagnostic mode is on", True),
        ("paused", LabelPrinterStatus.WARNING, "Paused", True),
        ("under_temperature", LabelPrinterStatus.WARNING, "Print head too cold", False),
        ("buffer_full", LabelPrinterStatus.WARNING, "Receive buffer full", False),
        ("corrupt_ram", LabelPrinterStatus.WARNING, "Configuration lost (corrupt RAM)", False),
        ("partial_format", LabelPrinterStatus.CONNECTED, "", False),
    ],
)
def test_every_hs_flag_maps_to_a_status(
    field: str, status: LabelPrinterStatus, text: str, blocking: bool
) -> None:
    host = dataclasses.replace(idle_host(), **{field: True})
    report = status_report(ZplReading(host, None))
    assert (report.status, report.text, report.blocking) == (status, text, blocking)


def test_unknown_error_bits_and_several_faults_at_once() -> None:
    errors = ZplError(ZplError.MEDIA_OUT | ZplError.HEAD_OPEN | 0x100000)
    report = status_report(ZplReading(None, ZplExtendedStatus(True, errors, False, ZplWarning(0))))
    assert report.status is LabelPrinterStatus.ERROR
    assert report.text == "Print head open; Printer error 0x100000; Paper out"


def test_silent_hs_with_no_hqes_error_is_a_warning() -> None:
    extended = ZplExtendedStatus(False, ZplError(0), False, ZplWarning(0))
    report = status_report(ZplReading(None, extended))
    assert (report.status, report.blocking) == (LabelPrinterStatus.WARNING, False)
    assert report.text == "No answer to ~HS; ~HQES reports no error"


@pytest.mark.parametrize(
    ("fault", "status", "text", "flags"),
    [
        (None, LabelPrinterStatus.CONNECTED, "", {}),
        ("paper-out", LabelPrinterStatus.NO_MEDIA, "Paper out", {"Paper": "out"}),
        ("head-open", LabelPrinterStatus.ERROR, "Print head open", {"Head": "open"}),
        ("ribbon-out", LabelPrinterStatus.NO_MEDIA, "Ribbon out", {"Ribbon": "out"}),
        ("paused", LabelPrinterStatus.WARNING, "Paused", {"Paused": True}),
        ("paper-near-end", LabelPrinterStatus.WARNING, "Paper near end", {}),
        (
            "label-waiting",
            LabelPrinterStatus.WARNING,
            "Label waiting to be taken (peel-off)",
            {"Label waiting": True},
        ),
    ],
)
async def test_poll_reports_each_simulated_fault_with_properties(
    machine: FakeMachine,
    sim: ZplSimulator,
    tap: Tap,
    fault: str | None,
    status: LabelPrinterStatus,
    text: str,
    flags: dict[str, object],
) -> None:
    if fault is not None:
        sim.set_fault(fault)
    sim.total_label_count = 1234
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (status, text)
    expected = {"Paper": "ok", "Head": "closed", "Ribbon": "ok", "Paused": False} | flags
    if fault not in ("paper-out", "head-open", "ribbon-out"):
        expected.setdefault("Label waiting", False)
    assert {key: machine.prop(key) for key in expected} == expected
    assert machine.prop("Model") == "ZTC ZD421-300dpi ZPL"
    assert machine.prop("Firmware") == "V93.21.26Z"
    assert machine.prop("Dots per mm") == 12
    assert machine.prop("Labels printed") == 1234
    # ~HS stays silent in these faults on a real Zebra: it is not even asked.
    asked_hs = b"~HS" in tap.received.replace(b"~HQES", b"")
    assert asked_hs is (fault not in ("paper-out", "head-open", "ribbon-out"))


async def test_poll_reports_the_media_hs_tells(machine: FakeMachine, sim: ZplSimulator) -> None:
    driver = driver_of(machine)
    await driver.poll(machine)
    # A printer that has printed nothing yet reports no label length.
    assert machine.media == Media()
    await driver.print(machine, FakeJob([page_16x3()]))
    await driver.poll(machine)
    # ~HS reports the label length in dots (the simulator's: the last format's ^LL).
    assert machine.media == Media(length_dots=3)
    assert machine.media.describe() == "3 dots long media"
    sim.set_fault("paper-out")
    await driver.poll(machine)
    assert machine.media == Media(loaded=False)
    assert machine.media.describe() == "no media"
    # A job that finds the paper out records it too, before it waits.
    sim.clear_fault()
    await driver.poll(machine)
    sim.set_fault("paper-out")
    with pytest.raises(PrinterNotReady):
        await driver.print(machine, FakeJob([page_16x3()]))
    assert machine.media == Media(loaded=False)


async def test_poll_of_a_printer_that_answers_nothing_raises(
    machine: FakeMachine, sim: ZplSimulator
) -> None:
    sim.set_fault("offline")
    with pytest.raises(PrinterSilent, match="no answer to ~HS or ~HQES"):
        await driver_of(machine).poll(machine)


async def test_printer_without_hqes_is_read_from_hs_and_not_asked_again(
    machine: FakeMachine, sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    deafen(sim, monkeypatch, b"~HQES")
    tap = Tap(sim, monkeypatch)
    driver = driver_of(machine)
    await driver.poll(machine)
    assert machine.status is LabelPrinterStatus.CONNECTED
    tap.streams[0].clear()
    sim.set_fault("paused")
    await driver.poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.WARNING, "Paused")
    assert not tap.received.startswith(b"~HQES")
    # Out of paper, an older printer says nothing at all: that reads as unreachable.
    sim.set_fault("paper-out")
    with pytest.raises(PrinterSilent):
        await driver.poll(machine)


async def test_resolution_mismatch_is_a_warning(machine: FakeMachine) -> None:
    machine.settings["DPMM"] = "8"
    await driver_of(machine).poll(machine)
    assert machine.status is LabelPrinterStatus.WARNING
    assert machine.status_text == (
        "The printer has 12 dots/mm but DPMM is 8: labels print at the wrong size"
    )


async def test_paused_mid_job_waits_and_resume_counts_the_held_labels(
    machine: FakeMachine, sim: ZplSimulator, tap: Tap
) -> None:
    three = pages(3)
    sim.on_label = lambda label: sim.set_fault("paused") if label.number == 1 else None
    job = FakeJob(three)
    with pytest.raises(PrinterNotReady, match="Paused"):
        await driver_of(machine).print(machine, job)
    assert job.progress[-1] == 1
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.WARNING, "Paused")
    # The printer holds labels 2 and 3 and prints them when it leaves pause.
    sim.resume()
    sent = len(tap.received)
    resumed = FakeJob(three, first_label=1)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress[-1] == 3
    assert b"^XA" not in tap.received[sent:]
    assert all(map(same, (label.image for label in sim.labels), three))
    assert len(sim.labels) == 3


async def test_paper_out_mid_job_resends_only_the_labels_not_counted(
    machine: FakeMachine, sim: ZplSimulator
) -> None:
    three = pages(3)
    sim.on_label = lambda label: sim.set_fault("paper-out") if label.number == 1 else None
    job = FakeJob(three)
    with pytest.raises(PrinterNotReady, match="Paper out"):
        await driver_of(machine).print(machine, job)
    assert job.progress[-1] == 1
    assert machine.status is LabelPrinterStatus.NO_MEDIA
    sim.clear_fault()
    resumed = FakeJob(three, first_label=1)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress[-1] == 3
    assert all(map(same, (label.image for label in sim.labels), three))
    assert len(sim.labels) == 3


async def test_lost_connection_resumes_after_the_labels_the_odometer_counted(
    machine: FakeMachine, sim: ZplSimulator
) -> None:
    three = pages(3)
    first = len(STATUS) + len(ODOMETER) + len(encode_page(three[0]))
    # Label 1 reaches the printer; the connection drops inside label 2, before any odometer read.
    sim.set_fault("disconnect-mid-job", after_bytes=first + 40)
    job = FakeJob(three)
    with pytest.raises(TransportError):
        await driver_of(machine).print(machine, job)
    assert job.progress == []
    assert len(sim.labels) == 1
    sim.clear_fault()
    driver_of(machine).connections.get(machine).link.retry_now()
    resumed = FakeJob(three)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress[0] == 1
    assert resumed.progress[-1] == 3
    assert all(map(same, (label.image for label in sim.labels), three))
    assert len(sim.labels) == 3


async def test_without_an_odometer_a_label_counts_when_the_status_after_it_is_fine(
    machine: FakeMachine, sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    deafen(sim, monkeypatch, ODOMETER)
    tap = Tap(sim, monkeypatch)  # records what the driver sends, odometer queries included
    a, b = pages(2)
    job = FakeJob([a, b])
    await driver_of(machine).print(machine, job)
    assert tap.received == STATUS + ODOMETER + encode_page(a) + STATUS + encode_page(b) + STATUS
    assert job.progress == [1, 2]
    tap.streams[0].clear()
    await driver_of(machine).print(machine, FakeJob([a]))
    assert ODOMETER not in tap.received
    assert len(sim.labels) == 3


async def test_printer_that_takes_labels_but_prints_none_makes_the_job_wait(
    machine: FakeMachine, sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "complete_format", lambda fmt: None)
    clock = driver_of(machine).context.clock
    assert isinstance(clock, SteppingClock)
    started = clock.monotonic()
    with pytest.raises(PrinterNotReady, match="Took the labels but printed none for 20 s"):
        await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert machine.status is LabelPrinterStatus.WARNING
    # It waited out the stall timeout on its clock, asking for the status along the way.
    assert clock.monotonic() - started >= ZplTiming().stall_timeout


async def test_raw_zpl_passes_through_once_per_copy(
    machine: FakeMachine, sim: ZplSimulator, tap: Tap
) -> None:
    raw = encode_page(page_16x3())
    job = FakeJob(copies=2, raw=raw, content_type="application/octet-stream")
    await driver_of(machine).print(machine, job)
    assert tap.received == STATUS + raw + STATUS + raw + STATUS
    assert job.progress == [1, 2]
    assert len(sim.labels) == 2


async def test_page_the_encoder_refuses_fails_the_job(machine: FakeMachine) -> None:
    with pytest.raises(PrintFailed, match="mode"):
        await driver_of(machine).print(machine, FakeJob([Image.new("L", (8, 8), 255)]))


async def test_restart_asks_again_what_the_printer_supports(
    machine: FakeMachine, sim: ZplSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ignored = deafen(sim, monkeypatch, b"~HQES")
    tap = Tap(sim, monkeypatch)
    driver = driver_of(machine)
    await driver.poll(machine)
    ignored.clear()  # a firmware update later
    tap.streams[0].clear()
    await driver.poll(machine)
    assert not tap.received.startswith(b"~HQES")
    await driver.restart_machine(machine)
    tap.streams[0].clear()
    await driver.poll(machine)
    assert tap.received.startswith(b"~HQES")


async def test_a_slow_line_that_keeps_answering_is_not_taken_for_a_printer_that_is_off(
    machine: FakeMachine, sim: ZplSimulator
) -> None:
    # One reply byte every 5 ms: ~HQES alone then takes longer than the 0.2 s query timeout,
    # which now bounds the silence between bytes, not the whole reply.
    assert len(sim.extended_status()) * 0.005 > QUICK_ZPL.query_timeout
    sim.set_fault("slow-replies", delay=0.005)
    sim.set_fault("paper-near-end")
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.WARNING, "Paper near end")
    assert machine.prop("Model") == "ZTC ZD421-300dpi ZPL"


async def test_on_a_write_only_file_a_job_prints_with_status_queries_off(tmp_path: Any) -> None:
    # file:// (like a one-way /dev/usb/lp0) cannot answer ~HS: with STATUS_QUERY off the
    # formats are just written; the file is created if it does not exist yet.
    out = tmp_path / "zebra.zpl"
    driver = zpl_driver(tmp_path)
    settings = {"CONNECTION": f"file://{out}", "STATUS_QUERY": "false", "DPMM": "8"}
    machine = FakeMachine(driver, settings)
    await driver.init_machine(machine)
    pages = [random_page(64, 24, seed) for seed in (1, 2)]
    try:
        await driver.poll(machine)
        job = FakeJob(pages, copies=2)
        await driver.print(machine, job)
        # A second job after a reconnect is added to the file, not written over the first.
        await driver.close_machine(machine)
        await driver.init_machine(machine)
        again = FakeJob(pages[:1])
        await driver.print(machine, again)
    finally:
        await driver.close_machine(machine)
    assert (machine.status, machine.status_text) == (
        LabelPrinterStatus.CONNECTED,
        "Connected; status queries are off",
    )
    assert (job.progress[-1], again.progress) == (4, [1])
    sim = ZplSimulator()
    assert sim.feed(out.read_bytes()) == b""
    assert len(sim.labels) == 5
    assert all(map(same, (label.image for label in sim.labels), [*pages, *pages, pages[0]]))


async def test_a_missing_device_node_is_not_created_as_a_file(tmp_path: Path) -> None:
    driver = zpl_driver(tmp_path)
    machine = FakeMachine(driver, {"CONNECTION": "file:///dev/usb/lp97", "STATUS_QUERY": "false"})
    await driver.init_machine(machine)
    try:
        with pytest.raises(TransportError, match="does not exist"):
            await driver.poll(machine)
    finally:
        await driver.close_machine(machine)


async def test_a_job_after_a_fault_updates_status_text_and_keeps_the_model(
    machine: FakeMachine, sim: ZplSimulator
) -> None:
    await driver_of(machine).poll(machine)
    sim.set_fault("head-open")
    with pytest.raises(PrinterNotReady):
        await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert (machine.status_text, machine.prop("Head")) == ("Print head open", "open")
    sim.clear_fault()
    machine.status = LabelPrinterStatus.PRINTING  # as the job runner sets it
    await driver_of(machine).print(machine, FakeJob([page_16x3()]))
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.PRINTING, "")
    assert machine.prop("Head") == "closed"
    # What the printer is (read by the poll) is not lost to the job's shorter status read.
    assert machine.prop("Model") == "ZTC ZD421-300dpi ZPL"
