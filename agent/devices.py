"""Printers attached to this host: USB devices, serial ports and `/dev/usb/lp*` nodes.

Each found device comes with the driver that suits it, the exact `CONNECTION` URI to use, whether
this process's user may open it, and which configured machines already use it. The scan blocks
(pyusb, sysfs, pyserial), so `discover_devices` runs it in a thread with a timeout; every USB
request in it carries its own libusb timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import usb.core
import usb.util
from serial.tools import list_ports

from agent.device_ids import (
    device_id_from_reply,
    known_vendor,
    parse_device_id,
    suggest_driver,
)
from drivers.transport import (
    ConnectionTarget,
    ConnectionUriError,
    FileTarget,
    SerialTarget,
    UsbTarget,
    parse_connection,
)

log = structlog.get_logger(__name__)

# The whole scan: a few descriptor reads per device at USB_REQUEST_MS each, even on a busy hub.
DISCOVERY_TIMEOUT = 15.0
# One control transfer (string descriptor, GET_DEVICE_ID); a printer answers in milliseconds.
USB_REQUEST_MS = 1000
PRINTER_CLASS = 7
# USB printer class request GET_DEVICE_ID: class, interface recipient, device to host.
_GET_DEVICE_ID = (0xA1, 0)
_DEVICE_ID_MAX = 1023


@dataclass(frozen=True, slots=True)
class Places:
    """Where the scan looks; tests point them at their own directories."""

    usb_nodes: Path = Path("/dev/bus/usb")
    usbmisc: Path = Path("/sys/class/usbmisc")
    lp_dir: Path = Path("/dev/usb")
    serial_by_id: Path = Path("/dev/serial/by-id")


@dataclass(frozen=True, slots=True)
class FoundDevice:
    """One printer candidate and how to connect a machine to it."""

    kind: str  # "usb", "serial" or "usblp"
    node: str
    connection: str
    driver: str | None
    accessible: bool
    problem: str = ""
    vendor_id: str | None = None
    product_id: str | None = None
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    device_id: str = ""
    used_by: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The API's and `discover --json`'s form."""
        return {
            "kind": self.kind,
            "node": self.node,
            "connection": self.connection,
            "driver": self.driver,
            "accessible": self.accessible,
            "problem": self.problem,
            "vendor_id": self.vendor_id,
            "product_id": self.product_id,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "serial": self.serial,
            "device_id": self.device_id,
            "used_by": list(self.used_by),
        }


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a scan found, and what kept it from looking everywhere (no libusb, a timeout)."""

    devices: tuple[FoundDevice, ...]
    problems: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "devices": [device.as_json() for device in self.devices],
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class MachineUse:
    """A configured machine and the `CONNECTION` it uses."""

    name: str
    connection: str
    active: bool = True


async def discover_devices(
    uses: Sequence[MachineUse],
    *,
    places: Places | None = None,
    serial_paths: Iterable[str] = (),
    timeout: float = DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - the scan's budget
) -> Discovery:
    """Scan off the event loop; a scan that outlasts `timeout` answers with a problem instead."""
    extra = tuple(serial_paths)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(scan_devices, uses, places or Places(), extra)
    except TimeoutError:
        log.warning("device_scan_timeout", timeout=timeout)
        return Discovery((), (f"the device scan took longer than {timeout:g} s; try again",))


def scan_devices(
    uses: Sequence[MachineUse], places: Places, serial_paths: Iterable[str] = ()
) -> Discovery:
    """The blocking scan: USB, then `/dev/usb/lp*`, then serial ports, each marked with its users."""
    targets = [(use.name, _target(use.connection)) for use in uses]
    problems: list[str] = []
    lp_ids = _usblp_device_ids(places.usbmisc)
    found: list[FoundDevice] = []
    try:
        found += _scan_usb(places, lp_ids, problems)
    except usb.core.NoBackendError:
        problems.append(
            "USB devices cannot be listed: libusb is not installed (apt install libusb-1.0-0)"
        )
    found += _scan_usblp(places, lp_ids)
    configured = [t.device for _, t in targets if isinstance(t, SerialTarget)]
    found += _scan_serial(places, [*serial_paths, *configured])
    marked = [_with_users(device, targets) for device in found]
    return Discovery(tuple(marked), tuple(problems))


# --- USB -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _UsbFacts:
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    device_id: str = ""
    problems: list[str] = field(default_factory=list)


def _scan_usb(
    places: Places, lp_ids: dict[tuple[int, int], str], problems: list[str]
) -> list[FoundDevice]:
    found = []
    for device in usb.core.find(find_all=True):
        try:
            entry = _usb_device(device, places, lp_ids)
        except (usb.core.USBError, ValueError, NotImplementedError) as err:
            # Unplugged during the scan, or descriptors the backend cannot read: skip that one.
            where = f"bus {getattr(device, 'bus', '?')} device {getattr(device, 'address', '?')}"
            problems.append(f"USB {where} could not be read: {err}")
            continue
        finally:
            with contextlib.suppress(usb.core.USBError):
                usb.util.dispose_resources(device)
        if entry is not None:
            found.append(entry)
    return found


def _usb_device(
    device: Any, places: Places, lp_ids: dict[tuple[int, int], str]
) -> FoundDevice | None:
    vid, pid = int(device.idVendor), int(device.idProduct)
    interfaces = [i for config in device for i in config]
    printers = [i for i in interfaces if int(i.bInterfaceClass) == PRINTER_CLASS]
    if not printers and not known_vendor(vid):
        return None  # hubs, keyboards, serial adapters (those are listed as serial ports)
    bus, address = int(device.bus), int(device.address)
    node = places.usb_nodes / f"{bus:03d}" / f"{address:03d}"
    accessible = _may_open(node)
    facts = _UsbFacts()
    if accessible:
        facts = _read_usb_facts(device, printers[0] if printers else None)
    facts.device_id = facts.device_id or lp_ids.get((bus, address), "")
    parsed = parse_device_id(facts.device_id) if facts.device_id else None
    problem = "; ".join(facts.problems)
    if not accessible:
        problem = (
            f"this user may not open {node}: add the udev rule for this vendor "
            "(docs/transports.md) and the user to its group"
        )
    return FoundDevice(
        kind="usb",
        node=str(node),
        connection=str(UsbTarget(vid, pid, serial=facts.serial or None)),
        driver=suggest_driver(vid, pid, parsed),
        accessible=accessible,
        problem=problem,
        vendor_id=f"{vid:04x}",
        product_id=f"{pid:04x}",
        manufacturer=facts.manufacturer or (parsed.manufacturer if parsed else ""),
        product=facts.product or (parsed.model if parsed else ""),
        serial=facts.serial,
        device_id=facts.device_id,
    )


def _read_usb_facts(device: Any, printer: Any | None) -> _UsbFacts:
    facts = _UsbFacts()
    facts.manufacturer = _string(device, "manufacturer", facts)
    facts.product = _string(device, "product", facts)
    facts.serial = _string(device, "serial_number", facts)
    if printer is not None:
        facts.device_id = _ask_device_id(device, printer, facts)
    return facts


def _string(device: Any, name: str, facts: _UsbFacts) -> str:
    try:
        value = getattr(device, name)
    except (usb.core.USBError, ValueError, NotImplementedError) as err:
        facts.problems.append(f"cannot read the {name.replace('_', ' ')}: {err}")
        return ""
    return "" if value is None else str(value).strip()


def _ask_device_id(device: Any, interface: Any, facts: _UsbFacts) -> str:
    index = (int(interface.bInterfaceNumber) << 8) | int(interface.bAlternateSetting)
    try:
        reply = device.ctrl_transfer(*_GET_DEVICE_ID, 0, index, _DEVICE_ID_MAX, USB_REQUEST_MS)
    except usb.core.USBError as err:
        # EBUSY: the kernel's usblp holds the interface; its sysfs copy of the id is used then.
        if err.errno not in (errno.EBUSY, errno.EPIPE):
            facts.problems.append(f"no IEEE 1284 device id: {err}")
        return ""
    return device_id_from_reply(bytes(reply)) or ""


# --- /dev/usb/lp* ----------------------------------------------------------------------------


def _usblp_device_ids(usbmisc: Path) -> dict[tuple[int, int], str]:
    """The kernel usblp driver's copy of each printer's 1284 id, by (bus, device number) of its USB device."""
    ids: dict[tuple[int, int], str] = {}
    for lp in sorted(usbmisc.glob("lp*")):
        interface = lp / "device"
        device_id = _read_text(interface / "ieee1284_id")
        bus, number = (
            _read_text(interface / ".." / "busnum"),
            _read_text(interface / ".." / "devnum"),
        )
        if device_id and bus.isdigit() and number.isdigit():
            ids[(int(bus), int(number))] = device_id
    return ids


def _scan_usblp(places: Places, lp_ids: dict[tuple[int, int], str]) -> list[FoundDevice]:
    found = []
    for node in sorted(places.lp_dir.glob("lp*")):
        path = str(node)
        device_id = _read_text(places.usbmisc / Path(path).name / "device" / "ieee1284_id")
        parsed = parse_device_id(device_id) if device_id else None
        accessible = _may_open(Path(path))
        found.append(
            FoundDevice(
                kind="usblp",
                node=path,
                connection=str(FileTarget(path)),
                driver=suggest_driver(None, None, parsed),
                accessible=accessible,
                problem="" if accessible else f"this user may not open {path}: add it to group lp",
                manufacturer=parsed.manufacturer if parsed else "",
                product=parsed.model if parsed else "",
                device_id=device_id,
            )
        )
    return found


# --- serial ports ----------------------------------------------------------------------------


def _scan_serial(places: Places, extra_paths: Iterable[str]) -> list[FoundDevice]:
    by_id = _by_id_links(places.serial_by_id)
    ports: dict[str, Any] = {os.path.realpath(p.device): p for p in list_ports.comports()}
    for path in extra_paths:
        real = os.path.realpath(path)
        if real not in ports and _is_char_device(real):
            ports[real] = None
    found = []
    for real, port in sorted(ports.items()):
        stable = by_id.get(real, port.device if port is not None else real)
        accessible = _may_open(Path(real))
        vid = getattr(port, "vid", None)
        pid = getattr(port, "pid", None)
        found.append(
            FoundDevice(
                kind="serial",
                node=real,
                connection=str(SerialTarget(stable)),
                driver=suggest_driver(vid, pid, None),
                accessible=accessible,
                problem=""
                if accessible
                else f"this user may not open {real}: add it to group dialout",
                vendor_id=None if vid is None else f"{vid:04x}",
                product_id=None if pid is None else f"{pid:04x}",
                manufacturer=(getattr(port, "manufacturer", None) or ""),
                product=(getattr(port, "product", None) or ""),
                serial=(getattr(port, "serial_number", None) or ""),
            )
        )
    return found


def _by_id_links(directory: Path) -> dict[str, str]:
    """Real device path -> its `/dev/serial/by-id` name, which survives replugging."""
    try:
        links = sorted(directory.iterdir())
    except OSError:
        return {}
    return {os.path.realpath(link): str(link) for link in links}


# --- shared ----------------------------------------------------------------------------------


def _target(connection: str) -> ConnectionTarget | None:
    try:
        return parse_connection(connection)
    except ConnectionUriError:
        return None


def _with_users(
    device: FoundDevice, targets: Sequence[tuple[str, ConnectionTarget | None]]
) -> FoundDevice:
    users = tuple(sorted(name for name, target in targets if uses_device(target, device)))
    if not users:
        return device
    return dataclasses.replace(device, used_by=users)


def uses_device(target: ConnectionTarget | None, device: FoundDevice) -> bool:
    """True if a machine connected to `target` talks to `device`."""
    if isinstance(target, UsbTarget):
        return (
            device.kind == "usb"
            and device.vendor_id == f"{target.vid:04x}"
            and device.product_id == f"{target.pid:04x}"
            and (target.serial is None or target.serial == device.serial)
        )
    if isinstance(target, SerialTarget | FileTarget):
        path = target.device if isinstance(target, SerialTarget) else target.path
        return device.kind != "usb" and os.path.realpath(path) == os.path.realpath(device.node)
    return False


def _may_open(node: Path) -> bool:
    return node.exists() and os.access(node, os.R_OK | os.W_OK)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(Path(path).stat().st_mode)
    except OSError:
        return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="latin-1").strip()
    except OSError:
        return ""
