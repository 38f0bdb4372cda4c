"""DYMO LabelWriter 400/450 series (and 4XL): driver, raster protocol, status and simulator.

The 5xx series (LabelWriter 550, 550 Turbo, 5XL) speaks another protocol (a 32-byte status, a
print lock, chipped media) and is not covered by this family.
"""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="dymo",
    title="a DYMO LabelWriter 400/450 series printer",
    driver="drivers.dymo.driver:DymoDriver",
    simulator="drivers.dymo.simulator:DymoSimulator",
    faults=MappingProxyType(
        {
            "paper-out": "out of labels (ESC A bits 5 and 7): raster received is dropped",
            "jam": "paper jam (ESC A bits 6 and 7): raster received is dropped",
            "error": "general printer error (ESC A bit 7): raster received is dropped",
        }
    ),
)
