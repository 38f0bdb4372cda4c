"""The QL models and the DK media they take, as data (Brother's raster command references).

Figures are the ones the references give in "2.3.2 Page size" (QL-800/810W/820NWB and
QL-1100/1110NWB/1115NWB, and the QL-710W/720NW and QL-500...1060N editions for older models):
the tape width and the printable width in dots at 300 dpi, the pins left unused at the start of
a raster line (`offset`: the head's far edge once the line is mirrored), and for die-cut labels
the length and printable length in dots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

DPI = 300
# The head of every 62 mm model has 720 pins (90 bytes a line); the 102 mm models 1296 (162 bytes).
NARROW_HEAD_DOTS = 720
WIDE_HEAD_DOTS = 1296

LabelKind = Literal["continuous", "die-cut"]


@dataclass(frozen=True, slots=True)
class Model:
    """One QL printer: its head, what it can do, and how it names itself in a status reply."""

    name: str
    head_dots: int
    # TIFF PackBits raster lines (`M 02`). The QL-650TD takes them over its serial port only
    # (QL-500...1060N command reference), so it is sent uncompressed lines everywhere.
    compression: bool
    # Black and red on DK-22251 (`w` lines, ESC i K bit 0).
    two_colour: bool
    # An automatic cutter (ESC i M auto-cut); the QL-500 has a manual one.
    cutter: bool
    # Byte 4 of the status reply (the QL-500 and QL-550 share 0x4F).
    status_code: int
    # The USB product id (vendor 0x04f9) as `lsusb` shows it; 0 where we do not know it.
    usb_pid: int
    # Networked models take raw jobs on TCP 9100; the status then comes over SNMP (see the doc).
    network: bool = False
    # Models with an RS-232C port (the QL-580N/650TD/1050/1060N/710W/720NW serial adapters).
    serial: bool = False
    # Bytes of the invalidate at the start of a job (the QL-1100 reference asks for 350).
    invalidate_bytes: int = 200
    # The 2012 and later models take ESC i a (raster mode), ESC i A and ESC i K; the QL-500/550/560
    # know none of them.
    control_codes: bool = True
    # `Z` (a blank line in one byte) is not understood by the QL-800; older models lack it too.
    zero_line: bool = True
    # ESC i ! (automatic status notification) is documented from the QL-800/1100 references on.
    notification_mode: bool = False

    @property
    def line_bytes(self) -> int:
        """Bytes in one raster line: one bit per head pin."""
        return self.head_dots // 8

    @property
    def high_resolution(self) -> bool:
        """300 x 600 dpi (ESC i K bit 6), on the models that take ESC i K."""
        return self.control_codes

    @property
    def wide(self) -> bool:
        """True for the 102 mm models."""
        return self.head_dots == WIDE_HEAD_DOTS


def _models(*models: Model) -> Mapping[str, Model]:
    return MappingProxyType({model.name: model for model in models})


N, W = NARROW_HEAD_DOTS, WIDE_HEAD_DOTS
MODELS: Mapping[str, Model] = _models(
    Model("QL-500", N, compression=False, two_colour=False, cutter=False, status_code=0x4F, usb_pid=0x2015, control_codes=False, zero_line=False),
    Model("QL-550", N, compression=False, two_colour=False, cutter=True, status_code=0x4F, usb_pid=0x2016, control_codes=False, zero_line=False),
    Model("QL-560", N, compression=False, two_colour=False, cutter=True, status_code=0x31, usb_pid=0x2027, control_codes=False, zero_line=False),
    Model("QL-570", N, compression=False, two_colour=False, cutter=True, status_code=0x32, usb_pid=0x2028),
    Model("QL-580N", N, compression=True, two_colour=False, cutter=True, status_code=0x33, usb_pid=0x2029, network=True, serial=True),
    Model("QL-600", N, compression=False, two_colour=False, cutter=True, status_code=0x47, usb_pid=0x20C0),
    Model("QL-650TD", N, compression=False, two_colour=False, cutter=True, status_code=0x51, usb_pid=0x201B, serial=True),
    Model("QL-700", N, compression=False, two_colour=False, cutter=True, status_code=0x35, usb_pid=0x2042),
    Model("QL-710W", N, compression=True, two_colour=False, cutter=True, status_code=0x36, usb_pid=0x2043, network=True, serial=True),
    Model("QL-720NW", N, compression=True, two_colour=False, cutter=True, status_code=0x37, usb_pid=0x2044, network=True, serial=True),
    Model("QL-800", N, compression=True, two_colour=True, cutter=True, status_code=0x38, usb_pid=0x209B, invalidate_bytes=400, zero_line=False, notification_mode=True),
    Model("QL-810W", N, compression=True, two_colour=True, cutter=True, status_code=0x39, usb_pid=0x209C, network=True, invalidate_bytes=400, notification_mode=True),
    Model("QL-820NWB", N, compression=True, two_colour=True, cutter=True, status_code=0x41, usb_pid=0x209D, network=True, invalidate_bytes=400, notification_mode=True),
    Model("QL-1050", W, compression=True, two_colour=False, cutter=True, status_code=0x50, usb_pid=0x2020, serial=True),
    Model("QL-1060N", W, compression=True, two_colour=False, cutter=True, status_code=0x34, usb_pid=0x202A, network=True, serial=True),
    Model("QL-1100", W, compression=True, two_colour=False, cutter=True, status_code=0x43, usb_pid=0x20A7, invalidate_bytes=350, notification_mode=True),
    Model("QL-1110NWB", W, compression=True, two_colour=False, cutter=True, status_code=0x44, usb_pid=0x20A8, network=True, invalidate_bytes=350, notification_mode=True),
    Model("QL-1115NWB", W, compression=True, two_colour=False, cutter=True, status_code=0x45, usb_pid=0x20AB, network=True, invalidate_bytes=350, notification_mode=True),
)  # fmt: skip
DEFAULT_MODEL = "QL-820NWB"


@dataclass(frozen=True, slots=True)
class Label:
    """One DK media: its size in mm and in dots, and where its print area sits on the head.

    `width_dots`/`length_dots` are the tape (the die-cut label) in dots; `printable_*` the area
    a page covers; `offset` the pins before the print area in a raster line as sent (after the
    left-right mirror). A continuous tape has no length: the page sets it.
    """

    name: str
    kind: LabelKind
    width_mm: int
    length_mm: int
    width_dots: int
    printable_width: int
    offset: int
    length_dots: int = 0
    printable_length: int = 0
    # Needs a 102 mm (1296-pin) head.
    wide: bool = False
    # Black and red tape (DK-22251): QL-800/810W/820NWB only.
    two_colour: bool = False
    # Brother's roll, for the docs and status texts.
    roll: str = ""
    # The length the printer reports for the roll and expects in ESC i z, where it differs from the
    # length the roll is sold as (DK-11241: 102 x 152 mm, reported as 153).
    reported_length_mm: int = 0

    @property
    def continuous(self) -> bool:
        """True for continuous tape (the page sets the length)."""
        return self.kind == "continuous"

    @property
    def printer_length_mm(self) -> int:
        """The length in status replies and in ESC i z (0 for continuous tape)."""
        return self.reported_length_mm or self.length_mm

    def describe(self) -> str:
        """In words, as users name their rolls: "62 mm continuous", "29x90 die-cut"."""
        if self.continuous:
            colour = " black/red" if self.two_colour else ""
            return f"{self.width_mm} mm{colour} continuous"
        return f"{self.width_mm}x{self.length_mm} die-cut"


def _continuous(
    name: str, width_mm: int, dots: int, printable: int, offset: int, roll: str, **extra: bool
) -> Label:
    return Label(name, "continuous", width_mm, 0, dots, printable, offset, roll=roll, **extra)


def _die_cut(
    width_mm: int,
    length_mm: int,
    size: tuple[int, int],
    printable: tuple[int, int],
    offset: int,
    roll: str,
    wide: bool = False,
    reported_length_mm: int = 0,
) -> Label:
    return Label(
        f"{width_mm}x{length_mm}",
        "die-cut",
        width_mm,
        length_mm,
        size[0],
        printable[0],
        offset,
        length_dots=size[1],
        printable_length=printable[1],
        wide=wide,
        roll=roll,
        reported_length_mm=reported_length_mm,
    )


LABELS: Mapping[str, Label] = MappingProxyType(
    {
        label.name: label
        for label in (
            _continuous("12", 12, 142, 106, 29, "DK-22214"),
            _continuous("29", 29, 342, 306, 6, "DK-22210"),
            _continuous("38", 38, 449, 413, 12, "DK-22225"),
            _continuous("50", 50, 590, 554, 12, "DK-22223"),
            _continuous("54", 54, 636, 590, 0, "DK-N55224"),
            _continuous("62", 62, 732, 696, 12, "DK-22205"),
            _continuous("62red", 62, 732, 696, 12, "DK-22251", two_colour=True),
            _continuous("102", 102, 1200, 1164, 12, "DK-22243", wide=True),
            _continuous("103", 103, 1224, 1200, 12, "DK-22246", wide=True),
            _continuous("104", 104, 1227, 1200, 12, "", wide=True),
            _die_cut(17, 54, (201, 636), (165, 566), 0, "DK-11204"),
            _die_cut(17, 87, (201, 1026), (165, 956), 0, "DK-11203"),
            _die_cut(23, 23, (272, 272), (202, 202), 42, "DK-11221"),
            _die_cut(29, 42, (342, 495), (306, 425), 6, "DK-11215"),
            _die_cut(29, 90, (342, 1061), (306, 991), 6, "DK-11201"),
            _die_cut(38, 90, (449, 1061), (413, 991), 12, "DK-11208"),
            _die_cut(39, 48, (461, 565), (425, 495), 6, "DK-11219"),
            _die_cut(52, 29, (614, 341), (578, 271), 0, "DK-11226"),
            _die_cut(62, 29, (732, 341), (696, 271), 12, "DK-11209"),
            _die_cut(62, 100, (732, 1179), (696, 1109), 12, "DK-11202"),
            _die_cut(102, 51, (1200, 596), (1164, 526), 12, "DK-11240", wide=True),
            _die_cut(
                102,
                152,
                (1200, 1804),
                (1164, 1660),
                12,
                "DK-11241",
                wide=True,
                reported_length_mm=153,
            ),
        )
    }
)
DEFAULT_LABEL = "62"
# Continuous tape is fed this far before and after the print area (3 mm, ESC i d); die-cut labels
# have their own gaps.
CONTINUOUS_MARGIN_DOTS = 35
# Shortest and longest page on continuous tape the references allow (12.7 mm and 1 m).
MIN_CONTINUOUS_DOTS = 150
MAX_CONTINUOUS_DOTS = 11811


def label_fits(label: Label, model: Model) -> str | None:
    """Why this model cannot print on this media, or None when it can."""
    if label.wide and not model.wide:
        return f"{label.describe()} tape needs a 102 mm model (QL-1050/1060N/1100/1110NWB/1115NWB)"
    if label.two_colour and not model.two_colour:
        return f"{label.describe()} tape needs a QL-800, QL-810W or QL-820NWB"
    return None


def label_for(
    kind: LabelKind, width_mm: int, length_mm: int, two_colour: bool = False
) -> Label | None:
    """The media a status reply describes (kind, width, length in mm), or None if unknown."""
    for label in LABELS.values():
        if label.kind != kind or label.width_mm != width_mm or label.two_colour != two_colour:
            continue
        if kind == "continuous" or _close(label.length_mm, length_mm):
            return label
    return None


def _close(table_mm: int, reported_mm: int) -> bool:
    # Some firmware reports the die-cut length rounded differently (90 as 91).
    return abs(table_mm - reported_mm) <= 1


def model_for_status_code(code: int) -> Model | None:
    """The model whose status replies carry this code (byte 4), or None."""
    for model in MODELS.values():
        if model.status_code and model.status_code == code:
            return model
    return None
