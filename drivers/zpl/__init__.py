"""Zebra ZPL label printers: driver, protocol, status decoder and simulator."""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="zpl",
    title="a Zebra ZPL printer",
    driver="drivers.zpl.driver:ZplDriver",
    simulator="drivers.zpl.simulator:ZplSimulator",
    faults=MappingProxyType(
        {
            "paper-out": "media out: formats dropped, ~HS not answered",
            "paper-near-end": "media near its end (~HQES warning): still prints",
            "head-open": "print head open: formats dropped, ~HS not answered",
            "ribbon-out": "ribbon out: formats dropped, ~HS not answered",
            "paused": "paused: formats wait in the buffer until ~PS or the fault is cleared",
            "label-waiting": "peel-off: a label waits to be taken (~HS); still prints",
        }
    ),
)
