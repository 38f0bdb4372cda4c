"""Brother QL label printers: driver, raster protocol, status, model and media tables, simulator."""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="brother-ql",
    title="a Brother QL label printer",
    driver="drivers.brother_ql.driver:BrotherQlDriver",
    simulator="drivers.brother_ql.simulator:BrotherQlSimulator",
    faults=MappingProxyType(
        {
            "no-media": "no DK roll loaded: pages are refused with an error frame",
            "end-of-media": "the roll ran out: pages are refused with an error frame",
            "wrong-media": "a 29x90 die-cut roll is loaded (62 mm continuous otherwise)",
            "cover-open": "the cover is open: pages are refused with an error frame",
            "cutter-jam": "the cutter jammed: pages are refused with an error frame",
            "overheat": "the head cools down before each page (notifications), then prints",
        }
    ),
)
