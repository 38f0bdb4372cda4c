"""USB transport against a fake device behind pyusb (`usb.core.find` and the `usb.util` claim calls)."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import usb.core
import usb.util

from drivers.transport import (
    ConnectionUriError,
    TransportClosed,
    TransportError,
    TransportTimeout,
    UsbTarget,
    UsbTransport,
    create_transport,
    parse_connection,
)
from tests.usb_fakes import (
    INTERRUPT,
    FakeDevice,
    FakeEndpoint,
    FakeInterface,
    printer_interface,
)


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, FakeDevice]]:
    """The fake USB bus: (vid, pid, device) entries that `usb.core.find` searches."""
    devices: list[tuple[int, int, FakeDevice]] = []

    def find(*, find_all: bool, idVendor: int, idProduct: int) -> Iterator[Any]:
        assert find_all
        return iter([dev for vid, pid, dev in devices if (vid, pid) == (idVendor, idProduct)])

    def claim(device: FakeDevice, interface: int) -> None:
        if device.kernel_driver:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
        device.calls.append(f"claim {interface}")

    monkeypatch.setattr(usb.core, "find", find)
    monkeypatch.setattr(usb.util, "claim_interface", claim)
    monkeypatch.setattr(
        usb.util, "release_interface", lambda dev, intf: dev.calls.append(f"release {intf}")
    )
    monkeypatch.setattr(usb.util, "dispose_resources", lambda dev: dev.calls.append("dispose"))
    return devices


@pytest.fixture
def printer(bus: list[tuple[int, int, FakeDevice]]) -> FakeDevice:
    device = FakeDevice()
    bus.append((0x04B8, 0x0E15, device))
    return device


@pytest.fixture
async def transport(printer: FakeDevice) -> AsyncIterator[UsbTransport]:
    usb_transport = create_transport("usb://04b8:0e15")
    assert isinstance(usb_transport, UsbTransport)
    await usb_transport.open()
    yield usb_transport
    await usb_transport.close()


async def test_open_detaches_usblp_and_close_gives_it_back(printer: FakeDevice) -> None:
    transport = UsbTransport(UsbTarget(0x04B8, 0x0E15))
    await transport.open()
    assert printer.calls == ["detach 0", "claim 0"]
    await transport.close()
    assert printer.calls == ["detach 0", "claim 0", "release 0", "attach 0", "dispose"]
    await transport.close()
    assert printer.calls[-1] == "dispose"
    assert printer.calls.count("dispose") == 1


async def test_no_kernel_driver_means_no_detach_and_no_reattach(printer: FakeDevice) -> None:
    printer.kernel_driver = False
    transport = UsbTransport(UsbTarget(0x04B8, 0x0E15))
    await transport.open()
    await transport.close()
    assert printer.calls == ["claim 0", "release 0", "dispose"]


async def test_printer_class_interface_is_chosen(bus: list[tuple[int, int, FakeDevice]]) -> None:
    # A combo device: a vendor-specific interface first, the printer-class one second.
    vendor = FakeInterface(0, 0xFF, [FakeEndpoint(0x03), FakeEndpoint(0x84)])
    device = FakeDevice(interfaces=[vendor, printer_interface(1)])
    bus.append((0x0A5F, 0x00D3, device))
    transport = create_transport("usb://0a5f:00d3")
    await transport.open()
    await transport.write(b"^XA^XZ")
    await transport.close()
    assert device.calls[:2] == ["detach 1", "claim 1"]
    assert device.writes == [(0x01, 6, 10000)]


async def test_vendor_class_printer_uses_its_bulk_endpoints(
    bus: list[tuple[int, int, FakeDevice]],
) -> None:
    # Many ESC/POS printers declare class 0xFF; an interrupt endpoint must not be mistaken for bulk.
    endpoints = [FakeEndpoint(0x83, INTERRUPT), FakeEndpoint(0x02), FakeEndpoint(0x81)]
    device = FakeDevice(interfaces=[FakeInterface(0, 0xFF, endpoints)])
    bus.append((0x0416, 0x5011, device))
    transport = create_transport("usb://0416:5011")
    await transport.open()
    try:
        await transport.write(b"\x1b@")
        device.reply(b"\x12")
        assert await transport.read(1, timeout=1) == b"\x12"
    finally:
        await transport.close()
    assert device.writes[0][0] == 0x02
    assert device.reads[0][0] == 0x81


async def test_endpoints_and_interface_from_the_uri(
    bus: list[tuple[int, int, FakeDevice]],
) -> None:
    interface = FakeInterface(2, 7, [FakeEndpoint(0x01), FakeEndpoint(0x05), FakeEndpoint(0x86)])
    device = FakeDevice(interfaces=[printer_interface(0), interface], kernel_driver=False)
    bus.append((0x04F9, 0x209B, device))
    transport = create_transport("usb://04f9:209b?interface=2&out_ep=0x05&in_ep=0x86")
    await transport.open()
    try:
        await transport.write(b"\x1b\x69\x53")
        device.reply(bytes(32))
        assert await transport.read(32, timeout=1) == bytes(32)
    finally:
        await transport.close()
    assert device.calls[0] == "claim 2"
    assert device.writes[0][0] == 0x05
    assert device.reads[0][0] == 0x86


async def test_large_write_goes_out_in_chunks_with_a_finite_timeout(
    printer: FakeDevice, transport: UsbTransport
) -> None:
    job = bytes(range(256)) * 40  # 10240 bytes
    await transport.write(job, timeout=3)
    assert printer.out == job
    assert printer.writes == [(0x01, 4096, 3000), (0x01, 4096, 3000), (0x01, 2048, 3000)]
    await transport.write(b"x", timeout=0.0001)
    assert printer.writes[-1] == (0x01, 1, 1)  # never 0: that is "wait forever" to libusb


async def test_reads_return_available_bytes_and_keep_the_rest(
    printer: FakeDevice, transport: UsbTransport
) -> None:
    printer.reply(b"\x02030,0,0\x03")
    assert await transport.read(3, timeout=1) == b"\x02" + b"03"
    assert await transport.read(64, timeout=1) == b"0,0,0\x03"
    # Reads ask for whole packets, so a device sending 64 bytes never overflows the buffer.
    assert len(printer.reads) == 1
    assert printer.reads[0][1] % 512 == 0


async def test_read_timeout(printer: FakeDevice, transport: UsbTransport) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransportTimeout, match="no progress for 0.05 s"):
        await transport.read(8, timeout=0.05)
    assert loop.time() - start < 1
    assert printer.reads[-1][2] == 50


async def test_stalled_write_times_out(printer: FakeDevice, transport: UsbTransport) -> None:
    printer.write_error = usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
    with pytest.raises(TransportTimeout, match="writing to usb://04b8:0e15"):
        await transport.write(b"label", timeout=0.1)


async def test_unplugged_printer_is_reported_as_closed(
    printer: FakeDevice, transport: UsbTransport
) -> None:
    printer.write_error = usb.core.USBError("No such device", -4, errno.ENODEV)
    with pytest.raises(TransportClosed, match="unplugged"):
        await transport.write(b"label")


async def test_device_not_found(bus: list[tuple[int, int, FakeDevice]]) -> None:
    transport = UsbTransport(UsbTarget(0x04B8, 0x0E15))
    with pytest.raises(TransportError, match=r"USB printer 04b8:0e15 not found \(unplugged or off"):
        await transport.open()
    assert not transport.is_open


async def test_serial_number_picks_one_of_two_identical_printers(
    bus: list[tuple[int, int, FakeDevice]],
) -> None:
    first, second = FakeDevice(serial="A1"), FakeDevice(serial="B2")
    bus.extend([(0x04B8, 0x0E15, first), (0x04B8, 0x0E15, second)])
    transport = create_transport("usb://04b8:0e15/B2")
    await transport.open()
    await transport.write(b"to B2")
    await transport.close()
    assert (bytes(first.out), bytes(second.out)) == (b"", b"to B2")
    missing = create_transport("usb://04b8:0e15/C3")
    with pytest.raises(TransportError, match="with serial C3 not found; connected: A1, B2"):
        await missing.open()


async def test_claim_failure_gives_the_printer_back(printer: FakeDevice) -> None:
    def busy(device: FakeDevice, interface: int) -> None:
        raise usb.core.USBError("Resource busy", -6, errno.EBUSY)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(usb.util, "claim_interface", busy)
        transport = create_transport("usb://04b8:0e15")
        with pytest.raises(TransportError, match="cannot claim .* another program"):
            await transport.open()
    assert printer.calls == ["detach 0", "attach 0", "dispose"]


async def test_unconfigured_device_gets_configured(printer: FakeDevice) -> None:
    printer.configured = False
    transport = create_transport("usb://04b8:0e15")
    await transport.open()
    await transport.close()
    assert printer.calls[0] == "set_configuration"


async def test_write_only_printer_cannot_be_read(bus: list[tuple[int, int, FakeDevice]]) -> None:
    device = FakeDevice(interfaces=[printer_interface(bidirectional=False)])
    bus.append((0x0922, 0x0020, device))
    transport = create_transport("usb://0922:0020")
    await transport.open()
    try:
        await transport.write(b"label")
        with pytest.raises(TransportError, match="no IN endpoint"):
            await transport.read(1, timeout=0.1)
    finally:
        await transport.close()


async def test_missing_libusb_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_backend(**_: Any) -> Any:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)
    with pytest.raises(TransportError, match="libusb is not installed"):
        await create_transport("usb://04b8:0e15").open()


# --- usb:// URIs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("usb://04b8:0e15", UsbTarget(0x04B8, 0x0E15)),
        ("usb://04B8:0E15/", UsbTarget(0x04B8, 0x0E15)),
        ("usb://0x0a5f:0x00d3/XXZFJ123", UsbTarget(0x0A5F, 0x00D3, serial="XXZFJ123")),
        ("usb://4b8:e15/A%2FB", UsbTarget(0x04B8, 0x0E15, serial="A/B")),
        (
            "usb://04f9:209b?interface=1&out_ep=0x02&in_ep=0x81",
            UsbTarget(0x04F9, 0x209B, interface=1, out_ep=0x02, in_ep=0x81),
        ),
        ("usb://04f9:209b?out_ep=2&in_ep=129", UsbTarget(0x04F9, 0x209B, out_ep=2, in_ep=0x81)),
    ],
)
def test_parse_usb(uri: str, target: UsbTarget) -> None:
    assert parse_connection(uri) == target


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("usb://04b8", "expected usb://VID:PID with hex ids"),
        ("usb://epson:tm", "expected usb://VID:PID"),
        ("usb://04b8:0e15a", "expected usb://VID:PID"),
        ("usb://04b8:0e15/A/B", "expected usb://VID:PID/SERIAL"),
        ("usb://04b8:0e15?out_ep=0x81", "out_ep=0x81 is not an OUT endpoint"),
        ("usb://04b8:0e15?in_ep=0x01", "in_ep=0x01 is not an IN endpoint"),
        ("usb://04b8:0e15?in_ep=zz", "in_ep must be a number"),
        ("usb://04b8:0e15?interface=-1", "interface must be a number from 0 to 255"),
        ("usb://04b8:0e15?timeout=0", "unknown option 'timeout'"),
    ],
)
def test_parse_bad_usb(uri: str, message: str) -> None:
    with pytest.raises(ConnectionUriError, match=message):
        parse_connection(uri)
