"""ESC/POS and ZPL end to end: the API, the queue, rendering, the drivers, real transports, simulators.

Printers are the simulators behind real loopback TCP sockets and real pseudo-terminals; USB goes
through the real USB transport with only pyusb's device faked (it feeds the same simulator).
What every family must do (a PDF printed pixel for pixel over TCP and a pty, every fault shown,
a lost line resumed, cancel, copies) is the conformance suite's, in tests/conformance/; this file
keeps what is particular to these two families and their transports.
"""

from __future__ import annotations

import errno
import io
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import usb.core
import usb.util
from aiohttp.test_utils import TestClient
from PIL import Image, ImageChops, ImageDraw

from agent.appkeys import JOBS, POLLER, REGISTRY
from agent.render import render_document
from drivers.base import LabelPrinterDriver, RenderOptions
from drivers.family import builtin_families, load
from drivers.sim import (
    EscposSimulator,
    Simulator,
    ZplSimulator,
    make_simulator,
    serve_pty,
    serve_tcp,
)
from tests.conftest import Headers, create_machine, wait_for_job
from tests.driver_time import use_quick_timing
from tests.simulator_tap import Tap
from tests.waiting import wait_until

Client = TestClient[Any, Any]
PAGES = 3
COPIES = 2
# The families this file tests, each with a label at its driver's resolution, so a PDF page
# maps dot for dot onto the printer's raster.
LABELS = {"escpos": (203, (576, 200)), "zpl": (300, (732, 342))}
SETTINGS = {
    "escpos": {"POLL_INTERVAL": "3600"},
    "zpl": {"POLL_INTERVAL": "3600", "DPMM": "12", "LABEL_WIDTH_MM": "61"},
}


@pytest.fixture(autouse=True)
def quick_timing(client: Client) -> None:
    # Replies come in microseconds; a printer gone deaf should fail an attempt quickly.
    use_quick_timing(client.app[REGISTRY].drivers)


def label_images(driver: str) -> list[Image.Image]:
    """Distinct pure black-and-white labels: a bar whose place and width depend on the page."""
    _dpi, size = LABELS[driver]
    images = []
    for index in range(PAGES):
        image = Image.new("L", size, 255)
        draw = ImageDraw.Draw(image)
        draw.rectangle((10 + index * 90, 10, 40 + index * 100, size[1] - 20), fill=0)
        draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=0)
        images.append(image)
    return images


def label_pdf(driver: str) -> bytes:
    dpi, _size = LABELS[driver]
    images = label_images(driver)
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def simulator_of(driver: str) -> Simulator:
    """A new simulator of the built-in family whose driver's slug is `driver`, as it declares it."""
    [language] = [
        family.language
        for family in builtin_families().values()
        if getattr(load(family.driver), "SLUG", None) == driver
    ]
    return make_simulator(language)


def same(image: Image.Image, page: Image.Image) -> bool:
    return image.size == page.size and ImageChops.difference(image, page).getbbox() is None


@dataclass
class Printer:
    """A machine on the agent and the simulator behind it."""

    driver: str
    pk: str
    sim: Simulator
    tap: Tap
    client: Client
    headers: Headers

    def machine(self) -> Any:
        return self.client.app[REGISTRY].get(self.pk)

    def expected_pages(self) -> list[Image.Image]:
        """The PDF rendered as the queue renders it for this machine, in print order."""
        machine = self.machine()
        driver = machine.driver
        assert isinstance(driver, LabelPrinterDriver)
        rendered = render_document(
            label_pdf(self.driver), "application/pdf", driver.page_format(machine), RenderOptions()
        )
        # The page is exactly the document: black stays black, white stays white, dot for dot.
        sources = [image.convert("1") for image in label_images(self.driver)]
        assert all(map(same, rendered.pages, sources))
        return list(rendered.pages) * COPIES

    def printed_exactly(self, pages: list[Image.Image]) -> bool:
        return len(self.sim.labels) == len(pages) and all(
            map(same, (label.image for label in self.sim.labels), pages)
        )

    async def print_pdf(self) -> dict[str, Any]:
        resp = await self.client.post(
            f"/api/machine/{self.pk}/print/?copies={COPIES}",
            data=label_pdf(self.driver),
            headers={**self.headers, "Content-Type": "application/pdf"},
        )
        assert resp.status == 201, await resp.text()
        job: dict[str, Any] = await resp.json()
        return job

    async def get(self) -> dict[str, Any]:
        resp = await self.client.get(f"/api/machine/{self.pk}/", headers=self.headers)
        body: dict[str, Any] = await resp.json()
        return body

    async def poll(self) -> dict[str, Any]:
        """Poll now, as the poller does on its interval, and read the machine back."""
        await self.client.app[POLLER].poll_once(self.machine())
        return await self.get()


async def add_printer(
    client: Client, headers: Headers, driver: str, sim: Simulator, tap: Tap, connection: str
) -> Printer:
    """Create the machine through the API, set it up, and wait for its first poll."""
    machine = await create_machine(client, headers, name=f"{driver}-printer", driver=driver)
    pk = machine["pk"]
    for key, value in (*SETTINGS[driver].items(), ("CONNECTION", connection)):
        resp = await client.put(
            f"/api/machine/{pk}/settings/D/{key}/", json={"value": value}, headers=headers
        )
        assert resp.status == 200, await resp.text()
    # The poller reads the printer once when the machine starts; wait for that.
    await wait_for_machine(client, headers, pk, lambda m: m["status"] == 100)
    return Printer(driver, pk, sim, tap, client, headers)


async def wait_for_machine(
    client: Client, headers: Headers, pk: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Read the machine through the API until `ready(machine)` holds (bounded)."""
    machine: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal machine
        machine = await (await client.get(f"/api/machine/{pk}/", headers=headers)).json()
        return ready(machine)

    await wait_until(reached, 5.0)
    return machine


async def wait_until_waiting(printer: Printer, job: dict[str, Any], status: int) -> dict[str, Any]:
    """Wait until the job is back in the queue after a failed attempt and the machine says why."""
    current: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal current
        current = await wait_for_job(
            printer.client, printer.headers, job["pk"], ("queued", "complete", "failed")
        )
        machine = await printer.get()
        return current["status"] != "queued" or (
            current["attempts"] > 0 and machine["status"] == status
        )

    await wait_until(reached, 5.0)
    return current


@pytest.fixture(params=sorted(LABELS))
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def sim(driver: str) -> Simulator:
    return simulator_of(driver)


@pytest.fixture
def tap(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


@pytest.fixture(params=["tcp", "pty"])
async def printer(
    request: pytest.FixtureRequest,
    client: Client,
    admin: Headers,
    driver: str,
    sim: Simulator,
    tap: Tap,
) -> AsyncIterator[Printer]:
    if request.param == "tcp":
        async with await serve_tcp(sim) as server:
            yield await add_printer(client, admin, driver, sim, tap, server.url)
    else:
        async with await serve_pty(sim) as session:
            yield await add_printer(client, admin, driver, sim, tap, session.url)


async def test_paper_out_mid_job_waits_then_resumes_without_gaps(
    printer: Printer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = printer.sim
    if isinstance(sim, EscposSimulator):
        # The roll runs out right after label 2's status was read: label 3 is lost on its way.
        rounds = 0
        status_byte = sim.status_byte

        def run_out(n: int) -> int:
            nonlocal rounds
            value = status_byte(n)
            rounds += n == 4
            if rounds == 3:
                sim.set_fault("paper-out")
            return value

        monkeypatch.setattr(sim, "status_byte", run_out)
    else:
        sim.on_label = lambda label: sim.set_fault("paper-out") if label.number == 2 else None
    job = await printer.print_pdf()
    waiting = await wait_until_waiting(printer, job, status=301)
    assert (waiting["status"], waiting["progress"]) == ("queued", 2)
    assert (await printer.get())["status_text"] == "Paper out"
    sim.clear_fault()
    await printer.poll()
    done = await wait_for_job(printer.client, printer.headers, job["pk"], ("complete", "failed"))
    assert (done["status"], done["progress"]) == ("complete", PAGES * COPIES)
    assert printer.printed_exactly(printer.expected_pages())


async def test_properties_show_what_the_printer_reports(
    client: Client, admin: Headers, driver: str, sim: Simulator, tap: Tap
) -> None:
    async with await serve_tcp(sim) as server:
        printer = await add_printer(client, admin, driver, sim, tap, server.url)
        sim.set_fault("paper-near-end")
        properties = {p["key"]: p["value"] for p in (await printer.poll())["properties"]}
    if driver == "escpos":
        assert (properties["Paper"], properties["Cover"]) == ("near end", "closed")
    else:
        assert (properties["Model"], properties["Dots per mm"]) == ("ZTC ZD421-300dpi ZPL", 12)
        assert properties["Labels printed"] == 0


# USB: the real transport, with pyusb's device faked; its bulk endpoints feed the simulator.


@dataclass
class _Endpoint:
    bEndpointAddress: int
    bmAttributes: int = usb.util.ENDPOINT_TYPE_BULK


@dataclass
class _Interface:
    bInterfaceNumber: int = 0
    bInterfaceClass: int = 7
    bAlternateSetting: int = 0

    def __iter__(self) -> Iterator[_Endpoint]:
        return iter([_Endpoint(0x01), _Endpoint(0x82)])


class SimUsbDevice:
    """A bidirectional USB printer: bulk OUT goes into a simulator, its replies come on bulk IN."""

    serial_number = "SIM0001"

    def __init__(self, sim: Simulator) -> None:
        self.channel = sim.open_channel()
        self.replies: queue.Queue[bytes] = queue.Queue()
        self.kernel_driver = True

    def get_active_configuration(self) -> list[_Interface]:
        return [_Interface()]

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = False

    def attach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = True

    def write(self, endpoint: int, data: bytes, timeout: int) -> int:
        reply = self.channel.feed(bytes(data))
        if reply:
            self.replies.put(reply)
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int) -> bytes:
        try:
            data = self.replies.get(timeout=timeout / 1000)
        except queue.Empty:
            raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT) from None
        if len(data) > size:
            self.replies.put(data[size:])  # the rest comes with the next transfer
        return data[:size]


async def test_usb_printer_through_faked_pyusb(
    client: Client,
    admin: Headers,
    driver: str,
    sim: Simulator,
    tap: Tap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = SimUsbDevice(sim)
    monkeypatch.setattr(
        usb.core,
        "find",
        lambda *, find_all, idVendor, idProduct: iter(
            [device] if (idVendor, idProduct) == (0x0A5F, 0x0166) else []
        ),
    )
    monkeypatch.setattr(usb.util, "claim_interface", lambda dev, intf: None)
    monkeypatch.setattr(usb.util, "release_interface", lambda dev, intf: None)
    monkeypatch.setattr(usb.util, "dispose_resources", lambda dev: None)
    printer = await add_printer(client, admin, driver, sim, tap, "usb://0a5f:0166/SIM0001")
    job = await printer.print_pdf()
    done = await wait_for_job(client, admin, job["pk"], ("complete", "failed"))
    assert (done["status"], done["progress"]) == ("complete", PAGES * COPIES)
    assert printer.printed_exactly(printer.expected_pages())
    if isinstance(sim, ZplSimulator):
        assert sim.total_label_count == PAGES * COPIES  # the odometer counted each label once
    assert device.kernel_driver is False  # usblp was detached while the agent holds the printer


async def test_an_unreachable_printer_shows_its_live_properties_as_unknown(
    client: Client, admin: Headers, driver: str, sim: Simulator, tap: Tap
) -> None:
    async with await serve_tcp(sim) as server:
        printer = await add_printer(client, admin, driver, sim, tap, server.url)
        seen = {p["key"]: p["value"] for p in (await printer.poll())["properties"]}
        assert seen["Paper"] == "ok"
        sim.set_fault("offline")
        machine = await printer.poll()
    assert machine["status"] == 400
    shown = {p["key"]: p for p in machine["properties"]}
    live = [p for p in shown.values() if p["group"] == "Printer status"]
    assert live, "the printer had live-state properties"
    assert all((p["value"], p["type"]) == ("unknown", "str") for p in live)
    if driver == "zpl":
        # What the printer is stays shown: it did not change by going away.
        assert shown["Model"]["value"] == "ZTC ZD421-300dpi ZPL"


async def test_a_printer_back_in_a_fault_shows_it_without_waiting_the_poll_interval(
    client: Client, admin: Headers, driver: str, sim: Simulator, tap: Tap
) -> None:
    # POLL_INTERVAL is an hour: only the quick retry after a failed poll can find the fault.
    async with await serve_tcp(sim) as server:
        printer = await add_printer(client, admin, driver, sim, tap, server.url)
        sim.set_fault("offline")
        client.app[POLLER].poll_soon(printer.pk)
        await wait_for_machine(client, admin, printer.pk, lambda m: m["status"] == 400)
        sim.clear_fault()
        sim.set_fault("paper-out")
        machine = await wait_for_machine(client, admin, printer.pk, lambda m: m["status"] == 301)
    assert "Paper out" in machine["status_text"]


async def test_a_job_that_loses_the_printer_makes_the_poller_follow_it_at_once(
    client: Client,
    admin: Headers,
    driver: str,
    sim: Simulator,
    tap: Tap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job waits a minute between attempts and POLL_INTERVAL is an hour: only the poller,
    # told by the connection that the job's attempt failed, can show the printer back in a fault.
    config = client.app[JOBS].config
    monkeypatch.setattr(config, "retry_base_seconds", 60.0)
    monkeypatch.setattr(config, "retry_max_seconds", 60.0)
    async with await serve_tcp(sim) as server:
        printer = await add_printer(client, admin, driver, sim, tap, server.url)
        sim.set_fault("offline")
        job = await printer.print_pdf()
        await wait_until_waiting(printer, job, 400)
        sim.clear_fault()
        sim.set_fault("paper-out")
        machine = await wait_for_machine(client, admin, printer.pk, lambda m: m["status"] == 301)
    assert "Paper out" in machine["status_text"]
