"""ESC/POS receipt and label printers: driver, protocol, python-escpos models and simulator."""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="escpos",
    title="an ESC/POS receipt or label printer",
    driver="drivers.escpos.driver:EscposDriver",
    simulator="drivers.escpos.simulator:EscposSimulator",
    faults=MappingProxyType(
        {
            "paper-out": "roll empty: offline, what arrives is dropped",
            "paper-near-end": "roll near its end: still prints",
            "cover-open": "cover open: offline, what arrives is dropped",
            "cutter-error": "cutter jammed: offline, what arrives is dropped",
            "feed-button": "FEED button held: offline while it feeds, then prints",
            "recovery-wait": "offline, waiting to go back online (DLE EOT 1 bit 5)",
            "presenter-waiting": "a Citizen presenter holds a label (DLE EOT 4 bit 6): still prints",
        }
    ),
)
