"""The DYMO LabelWriter 400/450 raster language: bytes only, no I/O.

From DYMO's "LabelWriter 400 Series" and "LabelWriter 450 Series Printers Technical Reference
Manual" (the same command set; the 4XL has a wider head):

    ESC @            reset: every setting to its default, anything buffered dropped
    ESC A            status: the printer answers one byte (`decode_status`)
    ESC L n1 n2      label length in dot lines, n1 the high byte, signed: how far a form feed
                     may travel looking for the top-of-form hole; negative: continuous stock
    ESC B n          dot tab: lines start n bytes (8n dots) from the head's left end
    ESC D n          bytes per line that follow each SYN (default: the whole head, 84 on a 450)
    ESC c/d/e/g      print density light / medium / normal / dark (75/87.5/100/112.5 % strobe)
    ESC h / ESC i    text mode (300 x 300 dpi) / barcode and graphics mode (300 x 600 dpi)
    ESC q n          Twin Turbo only: roll '0' automatic, '1' left, '2' right
    ESC f 1 n        feed n blank dot lines
    SYN d...         one dot line: exactly "bytes per line" bytes, bit 7 of the first byte is the
                     leftmost dot, 1 prints
    ETB r...         one dot line, run-length coded: bit 7 the colour (1 black), bits 0-6 the run
                     length minus one; the runs add up to 8 x "bytes per line" dots
    ESC G            short form feed: the next label comes to the head (between labels)
    ESC E            form feed: the label just printed goes past the tear bar (after the last)

The bytes after SYN are image data whatever their value, so a printer left inside a line by a
broken connection takes the next command as dots: at least 85 ESC bytes (more than the longest
line) bring its parser back to looking for a command (`RESYNC`).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import ImageChops

if TYPE_CHECKING:
    from PIL.Image import Image

ESC = 0x1B
SYN = 0x16
ETB = 0x17
# The manual asks for at least 85 (one more than the 84 bytes of the longest 450 line); the 4XL's
# line is 156 bytes, so 160 covers every model this family drives.
RESYNC = bytes([ESC]) * 160
RESET = RESYNC + b"\x1b@"
STATUS_QUERY = b"\x1bA"
FORM_FEED = b"\x1bE"
SHORT_FORM_FEED = b"\x1bG"
# ESC f 1 n feeds at most 255 lines at once.
MAX_SKIP = 255
# An ETB run byte carries 1..128 dots of one colour.
MAX_RUN = 128
# ESC L takes a signed 16-bit length; any negative value selects continuous stock.
MAX_LABEL_LINES = 0x7FFF
CONTINUOUS = -1
# Print heads in bytes per dot line: 672 dots on the 400 and 450 models, 1248 on the 4XL.
HEAD_BYTES_4XX = 84
HEAD_BYTES_4XL = 156

# The status byte (ESC A).
STATUS_READY = 0x01
STATUS_TOP_OF_FORM = 0x02
STATUS_PAPER_OUT = 0x20
STATUS_JAM = 0x40
STATUS_ERROR = 0x80


class Density(enum.StrEnum):
    """Print density: the head's strobe time."""

    LIGHT = "light"
    MEDIUM = "medium"
    NORMAL = "normal"
    DARK = "dark"


DENSITY_COMMANDS: dict[Density, bytes] = {
    Density.LIGHT: b"\x1bc",
    Density.MEDIUM: b"\x1bd",
    Density.NORMAL: b"\x1be",
    Density.DARK: b"\x1bg",
}


class Mode(enum.StrEnum):
    """Text mode steps 300 dot lines per inch; barcode and graphics mode 600, slower."""

    TEXT = "text"
    GRAPHICS = "graphics"


MODE_COMMANDS: dict[Mode, bytes] = {Mode.TEXT: b"\x1bh", Mode.GRAPHICS: b"\x1bi"}
# Dot lines sent per row of a 300 dpi page: graphics mode prints each row twice, at 1/600 inch.
LINES_PER_ROW: dict[Mode, int] = {Mode.TEXT: 1, Mode.GRAPHICS: 2}


class Roll(enum.StrEnum):
    """Which roll a Twin Turbo prints on."""

    AUTO = "auto"
    LEFT = "left"
    RIGHT = "right"


ROLL_COMMANDS: dict[Roll, bytes] = {
    Roll.AUTO: b"\x1bq0",
    Roll.LEFT: b"\x1bq1",
    Roll.RIGHT: b"\x1bq2",
}


@dataclass(frozen=True, slots=True)
class LabelSettings:
    """How a label is printed: density, mode, roll (None: not a Twin Turbo), stock, head."""

    density: Density = Density.NORMAL
    mode: Mode = Mode.TEXT
    roll: Roll | None = None
    continuous: bool = False
    head_bytes: int = HEAD_BYTES_4XX


@dataclass(frozen=True, slots=True)
class DymoStatus:
    """The ESC A status byte, bit by bit."""

    ready: bool
    top_of_form: bool
    paper_out: bool
    jam: bool
    error: bool


def decode_status(byte: int) -> DymoStatus:
    """The flags of an ESC A reply byte."""
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"a status byte is 0-255, not {byte}")
    return DymoStatus(
        ready=bool(byte & STATUS_READY),
        top_of_form=bool(byte & STATUS_TOP_OF_FORM),
        paper_out=bool(byte & STATUS_PAPER_OUT),
        jam=bool(byte & STATUS_JAM),
        error=bool(byte & STATUS_ERROR),
    )


def label_length(lines: int) -> bytes:
    """ESC L: the label's length in dot lines (CONTINUOUS for continuous stock)."""
    if not -0x8000 <= lines <= MAX_LABEL_LINES:
        raise ValueError(f"a label is at most {MAX_LABEL_LINES} dot lines, not {lines}")
    return b"\x1bL" + struct.pack(">h", lines)


def dot_tab(byte_offset: int) -> bytes:
    """ESC B: where lines start on the head, in bytes from its left end."""
    return b"\x1bB" + bytes([byte_offset])


def bytes_per_line(count: int) -> bytes:
    """ESC D: how many bytes each SYN line carries (and how many dots an ETB line adds up to)."""
    if not 1 <= count <= 0xFF:
        raise ValueError(f"bytes per line is 1-255, not {count}")
    return b"\x1bD" + bytes([count])


def skip_lines(count: int) -> bytes:
    """ESC f 1 n, as often as needed: feed `count` blank dot lines."""
    out = bytearray()
    while count > 0:
        step = min(count, MAX_SKIP)
        out += b"\x1bf\x01" + bytes([step])
        count -= step
    return bytes(out)


_RUNS = re.compile(r"0+|1+")


def compress_line(line: bytes) -> bytes:
    """One dot line as ETB run bytes (without the ETB): colour in bit 7, run length - 1 below."""
    out = bytearray()
    bits = format(int.from_bytes(line, "big"), f"0{len(line) * 8}b")
    for match in _RUNS.finditer(bits):
        colour = 0x80 if match[0][0] == "1" else 0x00
        length = match.end() - match.start()
        while length > 0:
            run = min(length, MAX_RUN)
            out.append(colour | (run - 1))
            length -= run
    return bytes(out)


def run_count(line: bytes) -> int:
    """How many runs of one colour the line has (before splitting runs longer than 128)."""
    dots = len(line) * 8
    value = int.from_bytes(line, "big")
    # A bit of value ^ (value >> 1) is set where a dot differs from the one on its left.
    changes = (value ^ (value >> 1)) & ((1 << (dots - 1)) - 1)
    return changes.bit_count() + 1


def encode_line(line: bytes) -> bytes:
    """A dot line as SYN + its bytes, or ETB + its runs when that is shorter."""
    # Each run takes at least a byte: count them first, and run-length code only what gains.
    if run_count(line) < len(line):
        runs = compress_line(line)
        if len(runs) < len(line):
            return bytes([ETB]) + runs
    return bytes([SYN]) + line


def encode_label(page: Image, settings: LabelSettings, *, last: bool) -> bytes:
    """A page (mode "1", black = 0) as one label, at the head's left end.

    Blank rows are fed with ESC f; the label ends with a short form feed, or a form feed when
    it is the job's `last` (so it can be torn off).
    """
    if page.mode != "1":
        raise ValueError(f"pages are 1-bit (mode '1'), not mode {page.mode!r}")
    width, height = page.size
    stride = (width + 7) // 8
    if not 0 < stride <= settings.head_bytes:
        limit = settings.head_bytes * 8
        raise ValueError(f"a label is 1 to {limit} dots wide on this printer, not {width}")
    repeat = LINES_PER_ROW[settings.mode]
    lines = height * repeat
    if not 0 < lines <= MAX_LABEL_LINES:
        raise ValueError(f"a label is 1 to {MAX_LABEL_LINES // repeat} dots long, not {height}")
    out = bytearray(label_length(CONTINUOUS if settings.continuous else lines))
    out += DENSITY_COMMANDS[settings.density] + MODE_COMMANDS[settings.mode]
    if settings.roll is not None:
        out += ROLL_COMMANDS[settings.roll]
    out += dot_tab(0) + bytes_per_line(stride)
    # Pillow packs mode "1" with white = 1; the head wants 1 = black.
    data = ImageChops.invert(page).tobytes()
    blank_row = bytes(stride)
    blank = 0
    previous, encoded = blank_row, b""
    for start in range(0, len(data), stride):
        row = data[start : start + stride]
        if row == blank_row:
            blank += repeat
            continue
        if blank:
            out += skip_lines(blank)
            blank = 0
        if row != previous:  # labels repeat rows (text, bars): encode each once
            previous, encoded = row, encode_line(row) * repeat
        out += encoded
    out += skip_lines(blank)
    out += FORM_FEED if last else SHORT_FORM_FEED
    return bytes(out)
