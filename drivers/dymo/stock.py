"""The LabelWriter models this family drives and the common DYMO labels, as data.

Sizes are DYMO's nominal label sizes; dots are at the head's 300 dpi (mm x 300 / 25.4, rounded),
the width across the head capped to the model's head (a label wider than the head prints its
left part). Labels run narrow side first through the printer.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.dymo.protocol import HEAD_BYTES_4XL, HEAD_BYTES_4XX

DPI = 300
MM_PER_INCH = 25.4


@dataclass(frozen=True, slots=True)
class Model:
    """A LabelWriter model: its name, USB product id, head width and whether it has two rolls."""

    key: str
    name: str
    usb_pid: int
    head_bytes: int = HEAD_BYTES_4XX
    twin: bool = False

    @property
    def head_dots(self) -> int:
        return self.head_bytes * 8


# USB vendor id 0x0922 (DYMO) for all of them; `lsusb` shows the product id.
MODELS: dict[str, Model] = {
    model.key: model
    for model in (
        Model("400", "LabelWriter 400", 0x0019),
        Model("400-turbo", "LabelWriter 400 Turbo", 0x001A),
        Model("twin-turbo", "LabelWriter Twin Turbo", 0x0018, twin=True),
        Model("450", "LabelWriter 450", 0x0020),
        Model("450-turbo", "LabelWriter 450 Turbo", 0x0021),
        Model("450-twin-turbo", "LabelWriter 450 Twin Turbo", 0x0022, twin=True),
        Model("4xl", "LabelWriter 4XL", 0x0025, head_bytes=HEAD_BYTES_4XL),
    )
}
DEFAULT_MODEL = "450"
USB_VENDOR_ID = 0x0922


def mm_to_dots(mm: float) -> int:
    """Millimetres as dots at 300 dpi."""
    return round(mm * DPI / MM_PER_INCH)


@dataclass(frozen=True, slots=True)
class LabelStock:
    """A DYMO label: its part number, name and size (length None: continuous)."""

    key: str
    name: str
    width_mm: float
    length_mm: float | None
    xl_only: bool = False

    def width_dots(self, model: Model) -> int:
        """Printed width across the head, at most the head."""
        return min(mm_to_dots(self.width_mm), model.head_dots)

    @property
    def length_dots(self) -> int | None:
        """Length in dot lines at 300 dpi; None for continuous stock."""
        return None if self.length_mm is None else mm_to_dots(self.length_mm)

    def describe(self) -> str:
        length = "continuous" if self.length_mm is None else f"{self.length_mm:g} mm"
        return f"{self.key} {self.name}, {self.width_mm:g} x {length}"


LABELS: dict[str, LabelStock] = {
    label.key: label
    for label in (
        LabelStock("30252", "Address", 28, 89),
        LabelStock("99010", "Standard address", 28, 89),
        LabelStock("99012", "Large address", 36, 89),
        LabelStock("11352", "Return address", 25, 54),
        LabelStock("30336", "Multi-purpose", 25, 54),
        LabelStock("11354", "Multi-purpose", 32, 57),
        LabelStock("11355", "Multi-purpose", 19, 51),
        LabelStock("99014", "Shipping", 54, 101),
        LabelStock("99015", "Multi-purpose", 54, 70),
        LabelStock("30256", "Shipping", 59, 102),
        LabelStock("99019", "Lever arch file", 59, 190),
        LabelStock("11356", "Name badge", 41, 89),
        LabelStock("30270", "Continuous", 57, None),
        LabelStock("1744907", "4XL shipping (4 x 6 in)", 102, 152, xl_only=True),
        LabelStock("S0904980", "4XL shipping", 104, 159, xl_only=True),
    )
}
DEFAULT_LABEL = "30252"
CUSTOM = "custom"
