"""USB transport: bulk endpoints of a USB printer through pyusb, in one worker thread per device."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
import usb.core
import usb.util

from drivers.transport.base import (
    CLOSE_TIMEOUT,
    BaseTransport,
    TransportClosed,
    TransportError,
    TransportTimeout,
)
from drivers.transport.uri import UsbTarget

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Finding the device, reading its serial number and claiming it are a few control transfers
# of at most 1 s each (pyusb's default); 10 s means the device or the bus hangs.
OPEN_TIMEOUT = 10.0
# Extra time the loop waits for the worker beyond the USB timeout it gave libusb, for the
# thread hop and a worker still finishing the previous call.
_WORKER_SLACK = 2.0
# One bulk OUT transfer per chunk: libusb's timeout covers the whole transfer, so a 4 KiB chunk
# keeps it a measure of progress even for a printer that takes data at print speed.
USB_WRITE_CHUNK = 4096
PRINTER_CLASS = 7
_BULK = usb.util.ENDPOINT_TYPE_BULK


@dataclass(slots=True)
class SerialPin:
    """The serial number of the printer a `usb://VID:PID` link (no serial given) first claimed.

    Shared by the transports one link makes: after an unplug the link waits for that printer,
    wherever it is plugged back in, and never moves to a twin of the same model that may be
    another machine's. A new link (machine restarted or reconfigured) starts unpinned.
    """

    serial: str | None = None


@dataclass(frozen=True, slots=True)
class _Claimed:
    device: Any
    interface: int
    out_ep: int
    in_ep: int | None
    reattach: bool


class UsbTransport(BaseTransport):
    """A USB printer claimed from the kernel (usblp detached, reattached on close).

    pyusb is blocking, so every call runs on a single-thread executor owned by this transport:
    calls to one device stay in order and never overlap, and every call carries a libusb timeout
    in ms (never pyusb's 0, which waits forever).
    """

    write_chunk = USB_WRITE_CHUNK

    def __init__(self, target: UsbTarget, pin: SerialPin | None = None) -> None:
        super().__init__()
        self.target = target
        self._pin = pin
        self._executor: ThreadPoolExecutor | None = None
        self._claimed: _Claimed | None = None

    @property
    def name(self) -> str:
        return str(self.target)

    async def _open(self) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"usb {self.name}")
        claim = executor.submit(self._claim)
        try:
            self._claimed = await self._await(claim, OPEN_TIMEOUT, "opening")
        finally:
            if self._claimed is None:
                # Given up (timeout, cancel): a claim that still succeeds is released at once.
                claim.add_done_callback(_release_late)
                executor.shutdown(wait=False)
        self._executor = executor

    async def _write_chunk(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        claimed = self._live()
        data = bytes(chunk)
        ms = _ms(timeout)

        def write() -> None:
            sent = 0
            while sent < len(data):
                written = int(claimed.device.write(claimed.out_ep, data[sent:], ms))
                if written <= 0:
                    raise TransportTimeout(f"writing to {self.name}: the printer took no data")
                sent += written

        await self._call(write, timeout, "writing to")

    async def _read_some(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        claimed = self._live()
        if claimed.in_ep is None:
            raise TransportError(f"{self.name} has no IN endpoint; the printer cannot be read")
        in_ep = claimed.in_ep
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ms = _ms(deadline - loop.time())
            read = functools.partial(_bulk_read, claimed.device, in_ep, n, ms)
            data = await self._call(read, ms / 1000, "reading from")
            # A zero-length packet ends a transfer without data; keep waiting until the deadline.
            if data:
                return data
            if loop.time() >= deadline:
                raise TransportTimeout(f"{self.name}: no reply within {timeout:g} s")

    async def _close(self) -> None:
        claimed, self._claimed = self._claimed, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            if claimed is not None:
                await self._call(lambda: _release(claimed), CLOSE_TIMEOUT, "closing", executor)
        finally:
            executor.shutdown(wait=False)

    def _live(self) -> _Claimed:
        if self._claimed is None:
            raise TransportClosed(f"{self.name} is not open")
        return self._claimed

    async def _call(
        self,
        func: Callable[[], T],
        timeout: float,  # noqa: ASYNC109 - the USB timeout the worker was given
        what: str,
        executor: ThreadPoolExecutor | None = None,
    ) -> T:
        executor = executor or self._executor
        if executor is None:
            raise TransportClosed(f"{self.name} is not open")
        return await self._await(executor.submit(func), timeout, what)

    async def _await(
        self,
        future: concurrent.futures.Future[T],
        timeout: float,  # noqa: ASYNC109 - the USB timeout the worker was given
        what: str,
    ) -> T:
        try:
            async with asyncio.timeout(timeout + _WORKER_SLACK):
                return await asyncio.wrap_future(future)
        except TimeoutError as err:
            raise TransportTimeout(f"{what} {self.name}: no progress for {timeout:g} s") from err
        except usb.core.USBTimeoutError as err:
            raise TransportTimeout(f"{what} {self.name}: no progress for {timeout:g} s") from err
        except usb.core.USBError as err:
            if err.errno == errno.ENODEV:
                raise TransportClosed(f"{self.name}: the printer was unplugged") from err
            raise TransportError(f"{what} {self.name} failed: {err.strerror or err}") from err

    def _claim(self) -> _Claimed:
        target = self.target
        device = self._find()
        try:
            config = _active_configuration(device, target)
            interface = _pick_interface(config, target)
            number = int(interface.bInterfaceNumber)
            out_ep, in_ep = _pick_endpoints(interface, target)
            reattach = _detach_kernel_driver(device, number, target)
            try:
                usb.util.claim_interface(device, number)
            except usb.core.USBError as err:
                _reattach_quietly(device, number, reattach)
                raise TransportError(
                    f"cannot claim {target} (interface {number}): {err.strerror or err}; "
                    "is another program using the printer?"
                ) from err
        except Exception:
            usb.util.dispose_resources(device)
            raise
        if self._pin is not None and self._pin.serial is None:
            self._pin.serial = _serial_number(device)
        log.debug(
            "usb_claimed", connection=str(target), interface=number, out_ep=out_ep, in_ep=in_ep
        )
        return _Claimed(device, number, out_ep, in_ep, reattach)

    def _find(self) -> Any:
        target = self.target
        try:
            devices = list(usb.core.find(find_all=True, idVendor=target.vid, idProduct=target.pid))
        except usb.core.NoBackendError as err:
            raise TransportError(
                "USB is unavailable: libusb is not installed (apt install libusb-1.0-0)"
            ) from err
        ids = f"{target.vid:04x}:{target.pid:04x}"
        if not devices:
            raise TransportError(
                f"USB printer {ids} not found (unplugged or off? `lsusb` lists connected devices)"
            )
        pinned = self._pin.serial if self._pin is not None else None
        wanted = target.serial or pinned
        if wanted is None:
            return devices[0]
        serials = [_serial_number(device) for device in devices]
        for device, serial in zip(devices, serials, strict=True):
            if serial == wanted:
                return device
        seen = ", ".join(s if s is not None else "(unreadable)" for s in serials)
        if target.serial is None:
            raise TransportError(
                f"USB printer {ids} with serial {wanted} (the one this machine used) not found; "
                f"connected: {seen} (restart the machine to take another)"
            )
        raise TransportError(f"USB printer {ids} with serial {wanted} not found; connected: {seen}")


def _ms(timeout: float) -> int:
    # libusb takes ms, and 0 means wait forever: never let a short timeout round down to it.
    return max(1, round(timeout * 1000))


def _bulk_read(device: Any, endpoint: int, n: int, ms: int) -> bytes:
    return bytes(device.read(endpoint, n, ms))


def _serial_number(device: Any) -> str | None:
    try:
        serial = device.serial_number
    except (usb.core.USBError, ValueError):
        # Reading string descriptors needs write access to the device node (udev rule).
        return None
    return None if serial is None else str(serial)


def _active_configuration(device: Any, target: UsbTarget) -> Any:
    try:
        return device.get_active_configuration()
    except usb.core.USBError:
        pass
    try:
        # Not configured yet (no kernel driver bound): select the first configuration.
        device.set_configuration()
        return device.get_active_configuration()
    except usb.core.USBError as err:
        raise TransportError(f"cannot configure {target}: {err.strerror or err}") from err


def _pick_interface(config: Any, target: UsbTarget) -> Any:
    interfaces = [i for i in config if int(i.bAlternateSetting) == 0]
    if target.interface is not None:
        chosen = [i for i in interfaces if int(i.bInterfaceNumber) == target.interface]
    else:
        chosen = [i for i in interfaces if int(i.bInterfaceClass) == PRINTER_CLASS]
        # Some ESC/POS printers declare a vendor-specific class: take any bulk OUT interface.
        chosen = chosen or [i for i in interfaces if _bulk_endpoints(i, inbound=False)]
    if not chosen:
        what = f"interface {target.interface}" if target.interface is not None else "printer"
        raise TransportError(f"{target} has no {what} interface with a bulk OUT endpoint")
    return chosen[0]


def _pick_endpoints(interface: Any, target: UsbTarget) -> tuple[int, int | None]:
    outs = _bulk_endpoints(interface, inbound=False)
    ins = _bulk_endpoints(interface, inbound=True)
    out_ep = target.out_ep if target.out_ep is not None else (outs[0] if outs else None)
    in_ep = target.in_ep if target.in_ep is not None else (ins[0] if ins else None)
    if out_ep is None:
        raise TransportError(f"{target}: interface has no bulk OUT endpoint")
    return out_ep, in_ep


def _bulk_endpoints(interface: Any, *, inbound: bool) -> list[int]:
    direction = usb.util.ENDPOINT_IN if inbound else usb.util.ENDPOINT_OUT
    return [
        int(ep.bEndpointAddress)
        for ep in interface
        if usb.util.endpoint_type(ep.bmAttributes) == _BULK
        and usb.util.endpoint_direction(ep.bEndpointAddress) == direction
    ]


def _detach_kernel_driver(device: Any, number: int, target: UsbTarget) -> bool:
    try:
        if not device.is_kernel_driver_active(number):
            return False
        device.detach_kernel_driver(number)
    except NotImplementedError:
        return False  # only Linux has kernel drivers to detach
    except usb.core.USBError as err:
        raise TransportError(
            f"cannot detach the kernel printer driver from {target}: {err.strerror or err} "
            "(see the udev rule in docs/transports.md)"
        ) from err
    return True


def _release_late(claim: concurrent.futures.Future[_Claimed]) -> None:
    if not claim.cancelled() and claim.exception() is None:
        _release(claim.result())


def _release(claimed: _Claimed) -> None:
    device = claimed.device
    try:
        usb.util.release_interface(device, claimed.interface)
    except usb.core.USBError as err:
        log.debug("usb_release_failed", error=str(err))
    _reattach_quietly(device, claimed.interface, claimed.reattach)
    usb.util.dispose_resources(device)


def _reattach_quietly(device: Any, number: int, reattach: bool) -> None:
    if not reattach:
        return
    try:
        # Give the printer back to usblp so /dev/usb/lp0 works again for other programs.
        device.attach_kernel_driver(number)
    except (usb.core.USBError, NotImplementedError) as err:
        log.debug("usb_reattach_failed", error=str(err))
