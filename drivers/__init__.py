"""Printer drivers. A printer family is one package here, listed in `BUILTIN_FAMILIES`.

Each family package declares its driver and simulator in `FAMILY` (see `drivers.family`).
"""

from __future__ import annotations

# Packages of the printer families that ship with the agent, each with a `FAMILY` declaration.
BUILTIN_FAMILIES: tuple[str, ...] = (
    "drivers.escpos",
    "drivers.zpl",
    "drivers.brother_ql",
    "drivers.dymo",
    "drivers.tspl",
)

# Drivers that ship with the agent outside a family package, as `module:Class`.
STANDALONE_DRIVERS: tuple[str, ...] = ("drivers.virtual:VirtualLabelPrinter",)

# Third-party packages add drivers through this entry-point group (`name = "module:Class"`).
ENTRY_POINT_GROUP = "inventree_edge.drivers"
