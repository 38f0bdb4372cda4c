"""What a found device is: its IEEE 1284 device id, read apart, and the driver that suits it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.brother_ql.tables import MODELS as BROTHER_MODELS
from drivers.dymo.stock import USB_VENDOR_ID as DYMO_VENDOR_ID

BROTHER_VENDOR_ID = 0x04F9
ZEBRA_VENDOR_ID = 0x0A5F
TSC_VENDOR_ID = 0x1203
EPSON_VENDOR_ID = 0x04B8
_BROTHER_QL_PIDS = frozenset(m.usb_pid for m in BROTHER_MODELS.values() if m.usb_pid)

# The `CMD` (command set) names printers answer, as they write them, and the driver for each.
_COMMAND_SETS: tuple[tuple[str, str], ...] = (
    ("ZPL", "zpl"),
    ("TSPL", "tspl"),
    ("ESC/POS", "escpos"),
    ("ESCPOS", "escpos"),
)
_KEY_ALIASES = {"MANUFACTURER": "MFG", "MODEL": "MDL", "COMMAND SET": "CMD", "DESCRIPTION": "DES"}


@dataclass(frozen=True, slots=True)
class DeviceId:
    """An IEEE 1284 device id (`MFG:Zebra Technologies;CMD:ZPL;MDL:ZD421;`), keys upper-case."""

    text: str
    fields: Mapping[str, str]

    @property
    def manufacturer(self) -> str:
        return self.fields.get("MFG", "")

    @property
    def model(self) -> str:
        return self.fields.get("MDL", "")

    @property
    def command_sets(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.fields.get("CMD", "").split(",") if c.strip())


def parse_device_id(text: str) -> DeviceId:
    """Read a 1284 id; unknown keys are kept, long key names folded to the short ones."""
    fields: dict[str, str] = {}
    for item in text.split(";"):
        key, colon, value = item.partition(":")
        key = key.strip().upper()
        if colon and key:
            fields.setdefault(_KEY_ALIASES.get(key, key), value.strip())
    return DeviceId(text.strip(), fields)


def device_id_from_reply(reply: bytes) -> str | None:
    """The text of a GET_DEVICE_ID reply: two bytes of big-endian length (themselves included)."""
    if len(reply) < 2:
        return None
    length = min(int.from_bytes(reply[:2], "big"), len(reply))
    text = reply[2:length].decode("latin-1").strip("\x00").strip()
    return text or None


def suggest_driver(
    vendor_id: int | None, product_id: int | None, device_id: DeviceId | None
) -> str | None:
    """The driver slug for a device: the printer's own command set first, then the USB ids."""
    if device_id is not None:
        upper = [c.upper() for c in device_id.command_sets]
        for name, slug in _COMMAND_SETS:
            # Versions follow the name: `TSPL2`, `ZPL II`.
            if any(c.startswith(name) for c in upper):
                return slug
        maker = device_id.manufacturer.lower()
        if "brother" in maker and device_id.model.upper().startswith("QL-"):
            return "brother-ql"
        if "dymo" in maker:
            return "dymo"
    if vendor_id == BROTHER_VENDOR_ID and product_id in _BROTHER_QL_PIDS:
        return "brother-ql"
    return {
        DYMO_VENDOR_ID: "dymo",
        ZEBRA_VENDOR_ID: "zpl",
        TSC_VENDOR_ID: "tspl",
        EPSON_VENDOR_ID: "escpos",
    }.get(vendor_id or -1)


def known_vendor(vendor_id: int) -> bool:
    """True for the label printer makers whose devices are worth listing even if not printer class."""
    return vendor_id in (
        BROTHER_VENDOR_ID,
        DYMO_VENDOR_ID,
        ZEBRA_VENDOR_ID,
        TSC_VENDOR_ID,
        EPSON_VENDOR_ID,
    )
