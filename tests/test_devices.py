"""Device discovery: faked USB devices behind pyusb, real pseudo-terminals, real device-node files."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import usb.core
from aiohttp.test_utils import TestClient

from agent.device_ids import device_id_from_reply, parse_device_id, suggest_driver
from agent.devices import FoundDevice, MachineUse, Places, discover_devices, scan_devices
from drivers.transport import UsbTarget, parse_connection
from tests.conftest import Headers
from tests.test_openapi_contract import call, own, schema_errors
from tests.usb_fakes import FakeBus, FakeDevice, FakeEndpoint, FakeInterface, install

ZEBRA_ID = "MFG:Zebra Technologies;CMD:ZPL;MDL:ZD421-300dpi;CLS:PRINTER;"


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> FakeBus:
    return install(monkeypatch, FakeBus())


@pytest.fixture
def places(tmp_path: Path) -> Places:
    """Empty device directories of this test's own; a device node is a file made in them."""
    for name in ("usb", "usbmisc", "lp", "by-id"):
        (tmp_path / name).mkdir()
    return Places(
        usb_nodes=tmp_path / "usb",
        usbmisc=tmp_path / "usbmisc",
        lp_dir=tmp_path / "lp",
        serial_by_id=tmp_path / "by-id",
    )


@pytest.fixture
def pty() -> Iterator[str]:
    """A real pseudo-terminal: its path is what a serial port's is."""
    leader, follower = os.openpty()
    try:
        yield os.ttyname(follower)
    finally:
        os.close(follower)
        os.close(leader)


def make_node(places: Places, device: FakeDevice) -> Path:
    node = places.usb_nodes / f"{device.bus:03d}" / f"{device.address:03d}"
    node.parent.mkdir(exist_ok=True)
    node.touch()
    return node


def zebra(**kw: Any) -> FakeDevice:
    fields: dict[str, Any] = {
        "idVendor": 0x0A5F,
        "idProduct": 0x00D3,
        "serial": "XXZFJ123",
        "manufacturer": "Zebra Technologies",
        "product": "ZTC ZD421-300dpi ZPL",
        "device_id": ZEBRA_ID,
        "bus": 1,
        "address": 5,
    }
    return FakeDevice(**(fields | kw))


def by_node(devices: tuple[FoundDevice, ...]) -> dict[str, FoundDevice]:
    return {device.node: device for device in devices}


def test_usb_printer_is_listed_with_its_1284_id_driver_and_exact_connection(
    bus: FakeBus, places: Places
) -> None:
    printer = bus.plug(zebra())
    node = make_node(places, printer)

    found = scan_devices([], places)

    entry = by_node(found.devices)[str(node)]
    assert (entry.kind, entry.vendor_id, entry.product_id) == ("usb", "0a5f", "00d3")
    assert (entry.manufacturer, entry.product, entry.serial) == (
        "Zebra Technologies",
        "ZTC ZD421-300dpi ZPL",
        "XXZFJ123",
    )
    assert entry.device_id == ZEBRA_ID.strip()
    assert entry.driver == "zpl"
    assert entry.connection == "usb://0a5f:00d3/XXZFJ123"
    assert parse_connection(entry.connection) == UsbTarget(0x0A5F, 0x00D3, serial="XXZFJ123")
    assert entry.accessible
    assert entry.problem == ""
    # GET_DEVICE_ID on interface 0, alternate 0, with a finite libusb timeout.
    assert "ctrl 0xa1 0 0 0x0000 1000" in printer.calls
    assert printer.calls[-1] == "dispose"


def test_non_printers_are_left_out_and_label_makers_kept_even_if_vendor_class(
    bus: FakeBus, places: Places
) -> None:
    hub = FakeDevice(idVendor=0x1D6B, idProduct=0x0002, interfaces=[FakeInterface(0, 9, [])])
    dymo_interface = FakeInterface(0, 0xFF, [FakeEndpoint(0x02), FakeEndpoint(0x81)])
    dymo = FakeDevice(
        idVendor=0x0922, idProduct=0x0020, serial="01234", address=7, interfaces=[dymo_interface]
    )
    for device in (bus.plug(hub), bus.plug(dymo)):
        make_node(places, device)

    found = scan_devices([], places)

    assert [d.vendor_id for d in found.devices if d.kind == "usb"] == ["0922"]
    assert found.devices[0].driver == "dymo"
    assert found.devices[0].connection == "usb://0922:0020/01234"
    assert found.devices[0].device_id == ""  # no printer-class interface to ask
    assert not [call for call in dymo.calls if call.startswith("ctrl")]


def test_a_device_this_user_may_not_open_says_so_and_reads_nothing(
    bus: FakeBus, places: Places
) -> None:
    printer = bus.plug(zebra())  # no device node made: nothing to open

    found = scan_devices([], places)

    entry = found.devices[0]
    assert not entry.accessible
    assert "may not open" in entry.problem
    assert "udev rule" in entry.problem
    assert entry.serial == ""
    assert entry.connection == "usb://0a5f:00d3"
    assert entry.driver == "zpl"  # from the vendor id alone
    assert printer.calls == ["dispose"]


def test_usblp_holding_the_printer_gives_its_1284_id_from_sysfs(
    bus: FakeBus, places: Places
) -> None:
    printer = bus.plug(zebra(device_id=None))  # the request is refused while usblp holds it
    make_node(places, printer)
    (places.lp_dir / "lp0").touch()
    usb_device = places.usbmisc.parent / "sys-device"
    interface = usb_device / "1-1:1.0"
    interface.mkdir(parents=True)
    (interface / "ieee1284_id").write_text(ZEBRA_ID + "\n")
    (usb_device / "busnum").write_text("1\n")
    (usb_device / "devnum").write_text("5\n")
    (places.usbmisc / "lp0").mkdir()
    (places.usbmisc / "lp0" / "device").symlink_to(interface)

    found = by_node(scan_devices([MachineUse("zebra", "file:///unused")], places).devices)

    assert found[str(make_node(places, printer))].device_id == ZEBRA_ID
    lp = found[str(places.lp_dir / "lp0")]
    assert (lp.kind, lp.driver, lp.connection) == ("usblp", "zpl", f"file://{places.lp_dir}/lp0")
    assert lp.manufacturer == "Zebra Technologies"


def test_machines_using_a_device_are_named(bus: FakeBus, places: Places) -> None:
    first = bus.plug(zebra())
    second = bus.plug(zebra(serial="OTHER", address=6))
    for device in (first, second):
        make_node(places, device)
    uses = [
        MachineUse("shipping", "usb://0a5f:00d3/XXZFJ123"),
        MachineUse("any zebra", "usb://0A5F:00D3"),
        MachineUse("bad", "usb://nonsense"),
        MachineUse("network", "tcp://127.0.0.1:9100"),
    ]

    found = by_node(scan_devices(uses, places).devices)

    assert found[str(make_node(places, first))].used_by == ("any zebra", "shipping")
    assert found[str(make_node(places, second))].used_by == ("any zebra",)


def test_serial_ports_include_a_real_pty_a_machine_uses(
    bus: FakeBus, places: Places, pty: str
) -> None:
    uses = [MachineUse("receipts", f"serial://{pty}?baudrate=19200")]

    found = by_node(scan_devices(uses, places).devices)

    entry = found[os.path.realpath(pty)]
    assert entry.kind == "serial"
    assert entry.used_by == ("receipts",)
    assert entry.accessible
    assert entry.connection == f"serial://{pty}?baudrate=9600"
    assert parse_connection(entry.connection).device == pty  # type: ignore[union-attr]


def test_a_serial_port_is_offered_by_its_stable_by_id_name(
    bus: FakeBus, places: Places, pty: str
) -> None:
    stable = places.serial_by_id / "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"
    stable.symlink_to(pty)

    found = by_node(scan_devices([], places, [pty]).devices)

    assert found[os.path.realpath(pty)].connection == f"serial://{stable}?baudrate=9600"
    assert found[os.path.realpath(pty)].used_by == ()


def test_missing_libusb_is_a_problem_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, places: Places, pty: str
) -> None:
    def no_backend(**_: Any) -> Any:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)

    found = scan_devices([], places, [pty])

    assert found.problems == (
        "USB devices cannot be listed: libusb is not installed (apt install libusb-1.0-0)",
    )
    assert os.path.realpath(pty) in by_node(found.devices)


class UnreadableDevice(FakeDevice):
    def __iter__(self) -> Iterator[list[FakeInterface]]:
        raise usb.core.USBError("Input/Output Error", -1, 5)


def test_a_device_that_cannot_be_read_is_skipped_and_named(bus: FakeBus, places: Places) -> None:
    bus.plug(UnreadableDevice(bus=2, address=9))
    printer = bus.plug(zebra())
    make_node(places, printer)

    found = scan_devices([], places)

    assert [d.connection for d in found.devices if d.kind == "usb"] == ["usb://0a5f:00d3/XXZFJ123"]
    assert found.problems == ("USB bus 2 device 9 could not be read: [Errno 5] Input/Output Error",)


async def test_a_hanging_bus_ends_in_a_problem_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, places: Places
) -> None:
    release = threading.Event()

    def hanging(**_: Any) -> Any:
        release.wait(10)
        return iter([])

    monkeypatch.setattr(usb.core, "find", hanging)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        found = await discover_devices([], places=places, timeout=0.2)
    finally:
        release.set()
    assert loop.time() - start < 2
    assert found.devices == ()
    assert found.problems == ("the device scan took longer than 0.2 s; try again",)


@pytest.mark.parametrize(
    ("device_id", "vid", "pid", "driver"),
    [
        ("MFG:EPSON;CMD:ESC/POS;MDL:TM-T20II;", None, None, "escpos"),
        ("MANUFACTURER:TSC;COMMAND SET:TSPL2;MODEL:TE200;", None, None, "tspl"),
        ("MFG:Zebra;CMD:ZPL II,EPL;MDL:GK420d;", None, None, "zpl"),
        ("MFG:Brother;CMD:PT-CBP;MDL:QL-820NWB;", None, None, "brother-ql"),
        ("MFG:DYMO;CMD:;MDL:LabelWriter 450;", None, None, "dymo"),
        ("", 0x04F9, 0x209D, "brother-ql"),  # QL-820NWB by its product id
        ("", 0x04F9, 0x0001, None),  # a Brother that is not in the QL table
        ("", 0x1203, 0x0230, "tspl"),
        ("", 0x0A5F, 0x00D3, "zpl"),
        ("", 0x0483, 0x5740, None),
    ],
)
def test_suggested_driver(device_id: str, vid: int | None, pid: int | None, driver: str) -> None:
    parsed = parse_device_id(device_id) if device_id else None
    assert suggest_driver(vid, pid, parsed) == driver


def test_device_id_reply_is_cut_at_its_own_length() -> None:
    text = b"MFG:Zebra;CMD:ZPL;"
    assert device_id_from_reply((len(text) + 2).to_bytes(2, "big") + text + b"\0junk") == (
        "MFG:Zebra;CMD:ZPL;"
    )
    assert device_id_from_reply(b"\x00") is None
    assert device_id_from_reply(b"\x00\x02") is None


async def test_devices_endpoint_needs_credentials_and_matches_its_schema(
    client: TestClient[Any, Any], admin: Headers, bus: FakeBus
) -> None:
    # At a bus address no host has: the daemon finds no device node, so it may not open it.
    bus.plug(zebra(bus=250, address=250))

    await call(client, "GET", "/api/agent/devices/", expect=401)
    answer = await call(client, "GET", "/api/agent/devices/", expect=200, headers=admin)

    usb_devices = [d for d in answer.json()["devices"] if d["kind"] == "usb"]
    assert [(d["connection"], d["driver"]) for d in usb_devices] == [("usb://0a5f:00d3", "zpl")]
    assert usb_devices[0]["node"] == "/dev/bus/usb/250/250"
    assert usb_devices[0]["accessible"] is False
    assert schema_errors(await own(client), answer) == []
