"""Printer drivers. `BUILTIN_DRIVERS` lists the ones that ship with the agent, as `module:Class`."""

from __future__ import annotations

BUILTIN_DRIVERS: tuple[str, ...] = (
    "drivers.virtual:VirtualLabelPrinter",
    "drivers.escpos.driver:EscposDriver",
    "drivers.zpl.driver:ZplDriver",
)

# Third-party packages add drivers through this entry-point group (`name = "module:Class"`).
ENTRY_POINT_GROUP = "inventree_edge.drivers"
