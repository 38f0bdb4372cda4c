"""TSPL label printers (TSC, Gprinter and compatibles): driver, protocol, status and simulator."""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="tspl",
    title="a TSC TSPL label printer",
    driver="drivers.tspl.driver:TsplDriver",
    simulator="drivers.tspl.simulator:TsplSimulator",
    faults=MappingProxyType(
        {
            "paper-out": "out of paper: labels received are dropped",
            "ribbon-out": "out of ribbon: labels received are dropped",
            "head-open": "print head open: labels received are dropped",
            "cover-open": "cover open: labels received are dropped",
            "jam": "paper jam: labels received are dropped",
            "paused": "paused: labels wait in the buffer until ESC ! O or the fault is cleared",
            "temperature": "temperature out of range: labels received are dropped",
        }
    ),
)
