"""A fake USB bus behind pyusb: devices with the attributes and calls the agent uses."""

from __future__ import annotations

import array
import errno
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import usb.core
import usb.util

BULK = usb.util.ENDPOINT_TYPE_BULK
INTERRUPT = usb.util.ENDPOINT_TYPE_INTR


@dataclass
class FakeEndpoint:
    bEndpointAddress: int
    bmAttributes: int = BULK


@dataclass
class FakeInterface:
    bInterfaceNumber: int
    bInterfaceClass: int
    endpoints: list[FakeEndpoint]
    bAlternateSetting: int = 0

    def __iter__(self) -> Iterator[FakeEndpoint]:
        return iter(self.endpoints)


def printer_interface(number: int = 0, *, bidirectional: bool = True) -> FakeInterface:
    endpoints = [FakeEndpoint(0x01)]
    if bidirectional:
        endpoints.append(FakeEndpoint(0x82))
    return FakeInterface(number, 7, endpoints)


@dataclass
class FakeDevice:
    """A USB printer: bulk OUT into `out`, bulk IN from `replies`, calls logged in order."""

    serial: str | None = "A1"
    interfaces: list[FakeInterface] = field(default_factory=lambda: [printer_interface()])
    kernel_driver: bool = True
    configured: bool = True
    write_error: usb.core.USBError | None = None
    out: bytearray = field(default_factory=bytearray)
    writes: list[tuple[int, int, int]] = field(default_factory=list)
    reads: list[tuple[int, int, int]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    replies: deque[bytes] = field(default_factory=deque)
    reply_ready: threading.Event = field(default_factory=threading.Event)
    # Descriptors and strings that discovery reads; `device_id` answers GET_DEVICE_ID.
    idVendor: int = 0x04B8
    idProduct: int = 0x0E15
    bus: int = 1
    address: int = 4
    manufacturer: str | None = "EPSON"
    product: str | None = "TM-T20"
    device_id: str | None = None
    # Bytes written are fed here and its answer queued as the reply (a simulator's channel).
    answer: Callable[[bytes], bytes] | None = None
    # Unplugged: every request fails as libusb fails it then (LIBUSB_ERROR_NO_DEVICE).
    gone: bool = False

    @property
    def serial_number(self) -> str | None:
        self._check_present()
        return self.serial

    def __iter__(self) -> Iterator[list[FakeInterface]]:
        return iter([self.interfaces])  # one configuration

    def ctrl_transfer(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout: int
    ) -> array.array[int]:
        self._check_present()
        self.calls.append(f"ctrl {request_type:#04x} {request} {value} {index:#06x} {timeout}")
        if (request_type, request) != (0xA1, 0) or self.device_id is None:
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
        text = self.device_id.encode("latin-1")
        return array.array("B", (len(text) + 2).to_bytes(2, "big") + text)

    def _check_present(self) -> None:
        if self.gone:
            raise usb.core.USBError(
                "No such device (it may have been disconnected)", -4, errno.ENODEV
            )

    def get_active_configuration(self) -> list[FakeInterface]:
        if not self.configured:
            raise usb.core.USBError("Configuration not set", -5, errno.ENOENT)
        return self.interfaces

    def set_configuration(self) -> None:
        self.calls.append("set_configuration")
        self.configured = True

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.calls.append(f"detach {interface}")
        self.kernel_driver = False

    def attach_kernel_driver(self, interface: int) -> None:
        self.calls.append(f"attach {interface}")
        self.kernel_driver = True

    def write(self, endpoint: int, data: bytes, timeout: int) -> int:
        self._check_present()
        self.writes.append((endpoint, len(data), timeout))
        if self.write_error is not None:
            raise self.write_error
        self.out += data
        if self.answer is not None and (reply := self.answer(data)):
            self.reply(reply)
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int) -> array.array[int]:
        self._check_present()
        self.reads.append((endpoint, size, timeout))
        if not self.replies and not self.reply_ready.wait(timeout / 1000):
            raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
        data = self.replies.popleft()
        if not self.replies:
            self.reply_ready.clear()
        return array.array("B", data[:size])

    def reply(self, data: bytes) -> None:
        self.replies.append(data)
        self.reply_ready.set()


class FakeBus:
    """What `usb.core.find` searches: the devices plugged in now."""

    def __init__(self) -> None:
        self.devices: list[FakeDevice] = []

    def find(
        self, *, find_all: bool, idVendor: int | None = None, idProduct: int | None = None
    ) -> Iterator[FakeDevice]:
        assert find_all
        return iter(
            [
                device
                for device in self.devices
                if not device.gone
                and idVendor in (None, device.idVendor)
                and idProduct in (None, device.idProduct)
            ]
        )

    def plug(self, device: FakeDevice) -> FakeDevice:
        self.devices.append(device)
        return device

    def unplug(self, device: FakeDevice) -> None:
        device.gone = True
        self.devices.remove(device)


def claim(device: FakeDevice, interface: int) -> None:
    """`usb.util.claim_interface`: refused while the kernel's usblp holds the interface."""
    if device.kernel_driver:
        raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
    device.calls.append(f"claim {interface}")


def install(monkeypatch: pytest.MonkeyPatch, bus: FakeBus) -> FakeBus:
    """Put `bus` behind pyusb for the test."""
    monkeypatch.setattr(usb.core, "find", bus.find)
    monkeypatch.setattr(usb.util, "claim_interface", claim)
    monkeypatch.setattr(
        usb.util, "release_interface", lambda dev, intf: dev.calls.append(f"release {intf}")
    )
    monkeypatch.setattr(usb.util, "dispose_resources", lambda dev: dev.calls.append("dispose"))
    return bus
