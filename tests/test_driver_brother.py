"""The Brother QL driver against the QL simulator over real loopback TCP (and USB, faked pyusb)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import usb.core
import usb.util
from aiohttp.test_utils import TestClient
from PIL import Image, ImageChops

from agent.setting_values import SettingInvalid, clean_value
from drivers.brother_ql.driver import BrotherQlDriver, BrotherTiming
from drivers.brother_ql.protocol import STATUS_SIZE, PageOptions, StatusType, encode_job
from drivers.brother_ql.simulator import BrotherQlSimulator
from drivers.brother_ql.tables import LABELS, MODELS
from drivers.kit import (
    BLACK_AND_RED,
    SINGLE_COLOR,
    DriverContext,
    LabelPrinterStatus,
    MediaMismatch,
    PrinterNotReady,
    PrinterSilent,
    PrintFailed,
)
from drivers.sim import SimTcpServer, serve_tcp
from drivers.sim.base import ReceivedLabel
from tests import brother_reference
from tests.conftest import Headers, create_machine, label_pdf
from tests.driver_fakes import FakeJob, FakeMachine, same
from tests.simulator_tap import Tap
from tests.test_drivers_e2e import SimUsbDevice

Client = TestClient[Any, Any]
QUICK = BrotherTiming(status_timeout=0.3, page_timeout=0.5, raw_quiet=0.05)


@pytest.fixture
def sim() -> BrotherQlSimulator:
    return BrotherQlSimulator()


@pytest.fixture
async def server(sim: BrotherQlSimulator) -> AsyncIterator[SimTcpServer]:
    async with await serve_tcp(sim) as server:
        yield server


@pytest.fixture
def tap(sim: BrotherQlSimulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


@pytest.fixture
async def machine(tmp_path: Path, server: SimTcpServer) -> AsyncIterator[FakeMachine]:
    driver = BrotherQlDriver(DriverContext(tmp_path), QUICK)
    machine = FakeMachine(driver, {"CONNECTION": server.url, "LABEL": "62"})
    await driver.init_machine(machine)
    yield machine
    await driver.close_machine(machine)


def driver_of(machine: FakeMachine) -> BrotherQlDriver:
    assert isinstance(machine.driver, BrotherQlDriver)
    return machine.driver


def page(seed: int, width: int = 696, height: int = 160) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("1", (width, height), rng.randbytes((width + 7) // 8 * height))


@dataclass
class TwoColourJob(FakeJob):
    """A job on 62red tape: each page as a black and a red plane."""

    red: list[Image.Image] | None = None

    async def planes(self, index: int) -> tuple[Image.Image, ...]:
        assert self.red is not None
        return (self.pages[index], self.red[index])


def on_label(sim: BrotherQlSimulator, after: int, fault: str) -> None:
    """Switch `fault` on once `after` labels are printed."""

    def hook(label: ReceivedLabel) -> None:
        if label.number == after:
            sim.set_fault(fault)

    sim.on_label = hook


async def test_pages_print_in_order_each_confirmed_and_the_last_ends_the_job(
    machine: FakeMachine, sim: BrotherQlSimulator, tap: Tap
) -> None:
    a, b = page(1), page(2)
    job = FakeJob([a, b], copies=2)
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2, 3, 4]
    assert all(map(same, (label.image for label in sim.labels), [a, b, a, b]))
    assert all(label.cut == "full" for label in sim.labels)
    received = tap.received
    # The job opens with the QL-8xx invalidate, ESC @ and a status request...
    assert received.startswith(b"\x00" * 400 + b"\x1b@\x1biS")
    # ...pages are FF-separated and the last one ends with Ctrl-Z; page flags 0, then 1.
    options = PageOptions(MODELS["QL-820NWB"], LABELS["62"])
    job_bytes = encode_job([(a,), (b,), (a,), (b,)], options)
    assert received == job_bytes[:402] + b"\x1biS" + job_bytes[402:]
    decoded = await asyncio.to_thread(brother_reference.labels, received)
    assert [d.convert("1").tobytes() for d in decoded] == [p.tobytes() for p in (a, b, a, b)]


async def test_two_colour_pages_print_both_planes_on_62red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = BrotherQlSimulator(media="62red")
    tap = Tap(sim, monkeypatch)
    black, red = page(3), page(4)
    # No dot in both planes, as the agent draws them.
    red = ImageChops.logical_or(red, ImageChops.invert(black))
    async with await serve_tcp(sim) as server:
        driver = BrotherQlDriver(DriverContext(tmp_path), QUICK)
        machine = FakeMachine(driver, {"CONNECTION": server.url, "LABEL": "62red"})
        await driver.init_machine(machine)
        assert driver.page_format(machine).colors == BLACK_AND_RED
        job = TwoColourJob([black], red=[red])
        await driver.print(machine, job)
        await driver.close_machine(machine)
    assert job.progress == [1]
    (planes,) = sim.planes
    assert same(planes[0], black)
    assert same(planes[1], red)
    assert same(sim.labels[0].image, ImageChops.logical_and(black, red))
    (decoded,) = await asyncio.to_thread(brother_reference.labels, tap.received)
    assert same(decoded.convert("1"), ImageChops.logical_and(black, red))


async def test_other_media_loaded_makes_the_job_wait_as_no_media_and_prints_nothing(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    sim.set_fault("wrong-media")
    with pytest.raises(MediaMismatch) as caught:
        await driver_of(machine).print(machine, FakeJob([page(1)]))
    assert str(caught.value) == (
        "The printer has 29 x 90 mm die-cut labels (29x90) loaded; this machine is set up for "
        "62 mm continuous (the LABEL setting '62')"
    )
    assert machine.status == LabelPrinterStatus.NO_MEDIA
    assert machine.status_text == str(caught.value)
    assert machine.media is not None
    assert machine.media.name == "29x90"
    assert sim.labels == []
    # The right roll back in: the job prints.
    sim.clear_fault()
    job = FakeJob([page(1)])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]


async def test_the_printer_refuses_a_page_for_other_media_with_an_error_frame(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    # The driver's own check passes (the setting says 62); the printer has 29 mm loaded by the
    # time the page arrives, and ESC i z's valid flags make it refuse the page.
    on_label(sim, 1, "wrong-media")
    job = FakeJob([page(1), page(2)])
    with pytest.raises(PrinterNotReady, match="Replace media"):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert len(sim.labels) == 1


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        ("cover-open", LabelPrinterStatus.ERROR, "Cover open"),
        ("end-of-media", LabelPrinterStatus.NO_MEDIA, "End of media: the roll is used up"),
        ("cutter-jam", LabelPrinterStatus.PAPER_JAM, "Cutter jam: open the cover and clear it"),
        ("no-media", LabelPrinterStatus.NO_MEDIA, "No media: load a DK roll"),
    ],
)
async def test_a_fault_mid_job_stops_after_the_labels_printed_and_the_job_resumes(
    machine: FakeMachine,
    sim: BrotherQlSimulator,
    fault: str,
    status: LabelPrinterStatus,
    text: str,
) -> None:
    pages = [page(n) for n in range(3)]
    on_label(sim, 2, fault)
    job = FakeJob(pages)
    with pytest.raises(PrinterNotReady, match=text):
        await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]
    assert (machine.status, machine.status_text) == (status, text)
    # While the fault lasts the job is refused before anything is sent.
    with pytest.raises(PrinterNotReady):
        await driver_of(machine).print(machine, FakeJob(pages, first_label=2))
    assert len(sim.labels) == 2
    sim.clear_fault()
    sim.on_label = None
    resumed = FakeJob(pages, first_label=2)
    await driver_of(machine).print(machine, resumed)
    assert resumed.progress == [3]
    assert all(map(same, (label.image for label in sim.labels), pages))


async def test_cooling_notifications_mid_job_are_waited_out(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    sim.set_fault("overheat")
    job = FakeJob([page(1), page(2)])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]
    assert len(sim.labels) == 2
    # The cooling-finished notification cleared the text the cooling-started one set.
    assert machine.status_text == ""


async def test_a_printer_that_goes_silent_after_a_page_makes_the_job_wait(
    machine: FakeMachine, sim: BrotherQlSimulator, tap: Tap
) -> None:
    on_label(sim, 1, "offline")
    job = FakeJob([page(1), page(2)])
    with pytest.raises(PrinterSilent, match="did not report the label printed"):
        await driver_of(machine).print(machine, job)
    # Printed, but never confirmed: it is not counted (and prints again when the job resumes).
    assert job.progress == []
    # Nothing more was sent without "printing completed": the second page never went out.
    assert tap.received.count(b"\x1biz") == 1


async def test_a_cancelled_job_ends_with_ctrl_z_after_the_label_being_sent(
    machine: FakeMachine, sim: BrotherQlSimulator, tap: Tap
) -> None:
    job = FakeJob([page(1), page(2), page(3)])

    def stop(label: ReceivedLabel) -> None:
        job.stop_requested = True

    sim.on_label = stop
    await driver_of(machine).print(machine, job)
    # The second page was already rendered when the stop came: it is sent, as the job's last.
    assert job.progress == [1, 2]
    assert tap.received.endswith(b"\x1a")


async def test_raw_raster_goes_through_once_per_copy(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    raw = encode_job([(page(5),)], PageOptions(MODELS["QL-820NWB"], LABELS["62"]))
    job = FakeJob(raw=raw, copies=2, content_type="application/octet-stream")
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]
    assert all(same(label.image, page(5)) for label in sim.labels)
    assert len(sim.labels) == 2


async def test_with_status_queries_off_labels_count_as_sent(
    machine: FakeMachine, sim: BrotherQlSimulator, tap: Tap
) -> None:
    machine.settings["STATUS_QUERY"] = "False"
    job = FakeJob([page(1), page(2)])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]
    assert b"\x1biS" not in tap.received
    assert all(map(same, (label.image for label in sim.labels), [page(1), page(2)]))
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (
        LabelPrinterStatus.CONNECTED,
        "Connected; status queries are off",
    )


async def test_poll_shows_the_model_and_the_media_loaded(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    await driver_of(machine).poll(machine)
    assert (machine.status, machine.status_text) == (LabelPrinterStatus.CONNECTED, "")
    assert machine.prop("Model") == "QL-820NWB"
    assert machine.prop("Media loaded") == "62 mm wide continuous media (62)"
    sim.set_fault("wrong-media")
    await driver_of(machine).poll(machine)
    assert machine.status == LabelPrinterStatus.NO_MEDIA
    assert machine.prop("Media loaded") == "29 x 90 mm die-cut labels (29x90)"
    assert machine.status_text.endswith("set up for 62 mm continuous (the LABEL setting '62')")


async def test_a_silent_printer_is_reported_with_what_to_check(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    sim.set_fault("offline")
    with pytest.raises(PrinterSilent, match="set STATUS_QUERY off"):
        await driver_of(machine).poll(machine)


async def test_media_the_model_cannot_take_is_refused_with_the_reason(
    machine: FakeMachine,
) -> None:
    machine.settings["LABEL"] = "102"
    with pytest.raises(PrinterNotReady, match="needs a 102 mm model"):
        driver_of(machine).page_format(machine)
    with pytest.raises(PrinterNotReady, match="change LABEL or MODEL"):
        await driver_of(machine).print(machine, FakeJob([page(1)]))
    await driver_of(machine).poll(machine)
    assert machine.status == LabelPrinterStatus.ERROR


@pytest.mark.parametrize(
    ("label", "width", "height", "colors"),
    [
        ("62", 696, None, SINGLE_COLOR),
        ("29x90", 306, 991, SINGLE_COLOR),
        ("62x29", 696, 271, SINGLE_COLOR),
        ("62red", 696, None, BLACK_AND_RED),
        ("12", 106, None, SINGLE_COLOR),
    ],
)
def test_page_format_from_the_label_setting(
    tmp_path: Path, label: str, width: int, height: int | None, colors: tuple[str, ...]
) -> None:
    driver = BrotherQlDriver(DriverContext(tmp_path), QUICK)
    fmt = driver.page_format(FakeMachine(driver, {"LABEL": label}))
    assert (fmt.dpi, fmt.width_dots, fmt.height_dots, fmt.colors) == (300, width, height, colors)


def test_render_options_from_the_settings(tmp_path: Path) -> None:
    driver = BrotherQlDriver(DriverContext(tmp_path), QUICK)
    machine = FakeMachine(driver, {"ROTATION": "90", "THRESHOLD": "100", "DITHER": "True"})
    options = driver.render_options(machine)
    assert (options.rotation, options.threshold, options.dither) == (90, 100, True)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MODEL", "QL-9000", "valid option"),
        ("LABEL", "63", "valid option"),
        ("CUT_EVERY", "0", "1 to 255"),
        ("ROTATION", "45", "valid option"),
        ("CONNECTION", "usb://04f9", "hex ids"),
    ],
)
def test_bad_setting_values_are_refused_with_a_reason(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingInvalid, match=message):
        clean_value(BrotherQlDriver.MACHINE_SETTINGS[key], value)


def test_a_qL_820nwb_user_sets_model_label_and_usb_connection() -> None:
    settings = BrotherQlDriver.MACHINE_SETTINGS
    assert clean_value(settings["MODEL"], "QL-820NWB") == "QL-820NWB"
    assert clean_value(settings["LABEL"], "62red") == "62red"
    assert clean_value(settings["CONNECTION"], "usb://0x04f9:0x209d") == "usb://0x04f9:0x209d"


async def test_a_page_the_encoder_refuses_fails_the_job(machine: FakeMachine) -> None:
    with pytest.raises(PrintFailed, match="takes 696 dots across"):
        await driver_of(machine).print(machine, FakeJob([page(1, width=700)]))


async def test_a_roll_the_model_cannot_take_is_refused_at_submission_with_the_reason(
    client: Client, admin: Headers, server: SimTcpServer
) -> None:
    machine = await create_machine(client, admin, name="ql", driver="brother-ql")
    for key, value in (("CONNECTION", server.url), ("MODEL", "QL-820NWB"), ("LABEL", "102")):
        resp = await client.put(
            f"/api/machine/{machine['pk']}/settings/D/{key}/", json={"value": value}, headers=admin
        )
        assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 400
    assert (await resp.json())["non_field_errors"] == [
        "102 mm continuous tape needs a 102 mm model (QL-1050/1060N/1100/1110NWB/1115NWB): "
        "change LABEL or MODEL"
    ]


async def test_a_usb_printer_prints_and_confirms_each_label_through_pyusb(
    tmp_path: Path, sim: BrotherQlSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real USB transport; pyusb's device is faked, its bulk endpoints feed the simulator.
    device = SimUsbDevice(sim)
    monkeypatch.setattr(
        usb.core,
        "find",
        lambda *, find_all, idVendor, idProduct: iter(
            [device] if (idVendor, idProduct) == (0x04F9, 0x209D) else []
        ),
    )
    monkeypatch.setattr(usb.util, "claim_interface", lambda dev, intf: None)
    monkeypatch.setattr(usb.util, "release_interface", lambda dev, intf: None)
    monkeypatch.setattr(usb.util, "dispose_resources", lambda dev: None)
    driver = BrotherQlDriver(DriverContext(tmp_path), QUICK)
    machine = FakeMachine(driver, {"CONNECTION": "usb://0x04f9:0x209d/SIM0001", "LABEL": "62"})
    await driver.init_machine(machine)
    try:
        await driver.poll(machine)
        assert machine.prop("Model") == "QL-820NWB"
        job = FakeJob([page(1), page(2)])
        await driver.print(machine, job)
    finally:
        await driver.close_machine(machine)
    assert job.progress == [1, 2]
    assert all(map(same, (label.image for label in sim.labels), [page(1), page(2)]))


async def test_a_printer_that_skips_the_phase_change_after_printing_still_counts_the_label(
    machine: FakeMachine, sim: BrotherQlSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = sim.print_page

    def without_phase_change(page: Any) -> bytes:
        return printed(page)[:-STATUS_SIZE]  # the last frame: phase change to receiving

    monkeypatch.setattr(sim, "print_page", without_phase_change)
    job = FakeJob([page(1), page(2)])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1, 2]


async def test_a_raw_job_names_its_own_media_and_is_not_held_to_the_label_setting(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    machine.settings["LABEL"] = "29x90"
    raw = encode_job([(page(5),)], PageOptions(MODELS["QL-820NWB"], LABELS["62"]))
    job = FakeJob(raw=raw, content_type="application/octet-stream")
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert len(sim.labels) == 1


async def test_at_600_dpi_pages_are_drawn_twice_as_fine_and_print_as_drawn(
    machine: FakeMachine, sim: BrotherQlSimulator
) -> None:
    machine.settings["RESOLUTION"] = "600"
    fmt = driver_of(machine).page_format(machine)
    assert (fmt.dpi, fmt.width_dots, fmt.height_dots) == (600, 1392, None)
    half = page(8, width=696, height=320)
    drawn = half.resize((1392, 320), Image.Resampling.NEAREST)
    job = FakeJob([drawn])
    await driver_of(machine).print(machine, job)
    assert job.progress == [1]
    assert same(sim.labels[0].image, drawn)
    machine.settings["LABEL"] = "62red"  # two colours print at 300 dpi
    assert driver_of(machine).page_format(machine).dpi == 300


async def test_an_error_after_printing_completed_still_counts_the_label(
    machine: FakeMachine, sim: BrotherQlSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = sim.print_page

    def then_end_of_media(page: Any) -> bytes:
        frames = printed(page)
        sim.set_fault("end-of-media")  # the roll ran out as this label was cut
        # Printing completed, the error, then the phase change back to receiving.
        return frames[:-STATUS_SIZE] + sim.frame(StatusType.ERROR) + frames[-STATUS_SIZE:]

    monkeypatch.setattr(sim, "print_page", then_end_of_media)
    job = FakeJob([page(1), page(2)])
    with pytest.raises(PrinterNotReady, match="End of media"):
        await driver_of(machine).print(machine, job)
    # The first label is counted once; the second was refused and waits for a new roll.
    assert job.progress == [1]
    assert len(sim.labels) == 1
