"""A family declared outside `drivers/`: the ZPL simulator under another language name."""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="second-zpl",
    title="a second ZPL printer",
    driver="drivers.zpl.driver:ZplDriver",
    simulator="drivers.zpl.simulator:ZplSimulator",
    faults=MappingProxyType({"paused": "paused: formats wait in the buffer"}),
)
