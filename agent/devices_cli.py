"""`inventree-edge discover`: the printers attached to this host, as a table or as JSON."""

from __future__ import annotations

import asyncio
import json
from typing import TextIO

from agent.config import Settings
from agent.devices import Discovery, FoundDevice, discover_devices
from agent.machine_uses import configured_machines


def run_discover(settings: Settings, *, as_json: bool, out: TextIO) -> int:
    """Scan and print; 0 even when nothing is found (an empty host is an answer, not an error)."""
    machines = configured_machines(settings)
    found = asyncio.run(discover_devices(machines.uses))
    problems = [*found.problems, *([machines.problem] if machines.problem else [])]
    if as_json:
        print(json.dumps({**found.as_json(), "problems": problems}, indent=2), file=out)
        return 0
    print(render(Discovery(found.devices, tuple(problems))), file=out)
    return 0


def render(found: Discovery) -> str:
    """One block per device: what it is, then the CONNECTION and driver to configure."""
    if not found.devices:
        lines = ["No printers found (USB printers, serial ports, /dev/usb/lp*)."]
    else:
        lines = []
        for device in found.devices:
            lines += _block(device)
    lines += [f"problem: {problem}" for problem in found.problems]
    return "\n".join(lines).rstrip()


def _block(device: FoundDevice) -> list[str]:
    ids = f" {device.vendor_id}:{device.product_id}" if device.vendor_id else ""
    name = " ".join(part for part in (device.manufacturer, device.product) if part)
    lines = [f"{device.kind}{ids} {name or '(unnamed)'} at {device.node}"]
    if device.serial:
        lines.append(f"  serial:     {device.serial}")
    if device.device_id:
        lines.append(f"  1284 id:    {device.device_id}")
    lines.append(f"  CONNECTION: {device.connection}")
    lines.append(f"  driver:     {device.driver or 'unknown (pick the one for its language)'}")
    if device.used_by:
        lines.append(f"  used by:    {', '.join(device.used_by)}")
    if not device.accessible:
        lines.append(f"  problem:    {device.problem}")
    elif device.problem:
        lines.append(f"  note:       {device.problem}")
    lines.append("")
    return lines
