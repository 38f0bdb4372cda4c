"""`/api/agent/devices/`: printers attached to this host and the `CONNECTION` to use for each."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web

from agent.api.declare import Answer, ApiModel, Doc, Endpoint, Operation
from agent.api.errors import drf_json
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from agent.devices import MachineUse, discover_devices
from agent.registry import Registry


class AttachedDevice(ApiModel):
    """A USB device, serial port or `/dev/usb/lp*` node a printer may be behind."""

    kind: Annotated[
        Literal["usb", "serial", "usblp"],
        Doc(description="`usb` (pyusb), `serial` (a serial port) or `usblp` (the kernel's node)."),
    ]
    node: Annotated[str, Doc(description="The device node, e.g. `/dev/bus/usb/001/004`.")]
    connection: Annotated[
        str, Doc(description="The `CONNECTION` driver setting that reaches this device.")
    ]
    driver: Annotated[
        str | None,
        Doc(
            description="The suggested driver slug (from the USB ids or the 1284 id); null if unknown."
        ),
    ]
    accessible: Annotated[
        bool, Doc(description="Whether the agent's user may open the device node.")
    ]
    problem: Annotated[
        str, Doc(description="What keeps the agent from using it; empty if nothing.")
    ]
    vendor_id: Annotated[
        str | None, Doc(description="USB vendor id, 4 hex digits as `lsusb` shows.")
    ]
    product_id: Annotated[str | None, Doc(description="USB product id, 4 hex digits.")]
    manufacturer: str
    product: str
    serial: Annotated[str, Doc(description="The USB serial number; empty if none or unreadable.")]
    device_id: Annotated[
        str, Doc(description="The printer's IEEE 1284 device id; empty if it gave none.")
    ]
    used_by: Annotated[
        list[str], Doc(description="Names of the machines whose `CONNECTION` is this device.")
    ]


class AttachedDevices(ApiModel):
    """What a scan of this host found."""

    devices: list[AttachedDevice]
    problems: Annotated[
        list[str], Doc(description="What kept the scan from looking everywhere (e.g. no libusb).")
    ]


def machine_uses(registry: Registry) -> list[MachineUse]:
    """Every machine whose driver takes a `CONNECTION`, with the one it is set to."""
    uses = []
    for machine in registry.machines.values():
        if machine.driver is not None and "CONNECTION" in machine.definitions("D"):
            uses.append(MachineUse(machine.name, str(machine.get_setting("CONNECTION", "D"))))
    return uses


class DeviceListView(ApiView):
    """The devices attached to the agent's host."""

    endpoint = Endpoint(
        "/api/agent/devices/",
        name="Attached Devices",
        description="Printers attached to the agent's host.",
        operations=(
            Operation(
                "GET",
                "agent_devices_retrieve",
                "USB devices (printer class or a label printer maker's), serial ports and "
                "`/dev/usb/lp*` nodes of the agent's host (not in InvenTree), each with the "
                "suggested driver, the `CONNECTION` to use, whether the agent may open it and "
                "which machines use it. Scanned on each request. Any authenticated user may "
                "read it.",
                tag="agent",
                answers=(Answer(200, AttachedDevices),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Scan now."""
        found = await discover_devices(machine_uses(self.request.app[REGISTRY]))
        return drf_json(found.as_json())
