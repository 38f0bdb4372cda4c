"""TSPL / TSPL2 bytes (TSC, Gprinter and compatible label printers): pages to labels, status.

Pure functions, no I/O. Pages are Pillow mode "1" images with black = 0. A label is text lines
ending in CR LF, as TSC's TSPL/TSPL2 programming manual writes them:

    SIZE 50 mm,30 mm            label width and length
    GAP 2 mm,0 mm               gap media (BLINE 3 mm,0 mm: black mark; GAP 0,0: continuous)
    DIRECTION 0,0               print direction and mirror
    DENSITY 8                   darkness 0-15 (optional)
    SPEED 4                     inches per second (optional)
    CLS                         clear the image buffer
    BITMAP x,y,width_bytes,height,mode,<width_bytes * height bytes>
    PRINT 1                     print the image buffer once (it stays until the next CLS)

In BITMAP data a 0 bit prints a black dot and a 1 bit leaves the paper white, the leftmost dot
in each byte's top bit, which is how Pillow packs mode "1" (white = 1): a page's bytes go out
unchanged once each row is padded with white to a whole byte.

`ESC ! ?` is an immediate command: the printer answers it at once with one status byte
(`TsplStatus`), even while printing or in an error state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from PIL import Image

CRLF = b"\r\n"
STATUS_QUERY = b"\x1b!?"
# `~!T`: the printer answers its model name (a line ending in CR on TSC firmware).
MODEL_QUERY = b"~!T"
# Another copy of the label in the image buffer (BITMAP stays there until CLS).
PRINT_AGAIN = b"PRINT 1" + CRLF
# TSC heads print 8 dots per mm at 203 dpi and 12 at 300 dpi (the manual's conversion).
DOTS_PER_MM = {203: 8, 300: 12, 600: 24}
DENSITY_RANGE = range(0, 16)
SPEED_RANGE = range(1, 19)
# The biggest label the encoder sends: 40 000 dots each way (a 600 dpi printer's 1.6 m).
MAX_DOTS = 40_000

MediaType = Literal["gap", "mark", "continuous"]


class TsplStatus(enum.IntFlag):
    """The bits of the one-byte reply to `ESC ! ?` (0: ready)."""

    HEAD_OPEN = 0x01
    PAPER_JAM = 0x02
    PAPER_OUT = 0x04
    RIBBON_OUT = 0x08
    PAUSED = 0x10
    PRINTING = 0x20
    COVER_OPEN = 0x40
    TEMPERATURE = 0x80


@dataclass(frozen=True, slots=True)
class LabelSetup:
    """What the printer is told once per job, before its labels: media, darkness, speed."""

    dpi: int = 203
    width_mm: int = 50
    # 0: continuous media, each label as long as its page (rounded up to whole millimetres).
    height_mm: int = 30
    media: MediaType = "gap"
    gap_mm: float = 2.0
    density: int | None = None
    speed: int | None = None
    direction: int = 0

    @property
    def dots_per_mm(self) -> int:
        return DOTS_PER_MM.get(self.dpi, round(self.dpi / 25.4))


def encode_setup(setup: LabelSetup, page_height_dots: int | None = None) -> bytes:
    """SIZE, GAP/BLINE, DIRECTION and (if set) DENSITY and SPEED for the labels that follow.

    Continuous media (`height_mm` 0) takes its length from `page_height_dots`.
    """
    if setup.density is not None and setup.density not in DENSITY_RANGE:
        raise ValueError(f"DENSITY is 0 to 15, not {setup.density}")
    if setup.speed is not None and setup.speed not in SPEED_RANGE:
        raise ValueError(f"SPEED is 1 to 18, not {setup.speed}")
    height_mm = setup.height_mm or label_length_mm(setup, page_height_dots or 1)
    lines = [f"SIZE {setup.width_mm} mm,{height_mm} mm"]
    if setup.media == "continuous" or setup.height_mm == 0:
        lines.append("GAP 0,0")
    elif setup.media == "mark":
        lines.append(f"BLINE {_number(setup.gap_mm)} mm,0 mm")
    else:
        lines.append(f"GAP {_number(setup.gap_mm)} mm,0 mm")
    lines.append(f"DIRECTION {setup.direction},0")
    if setup.density is not None:
        lines.append(f"DENSITY {setup.density}")
    if setup.speed is not None:
        lines.append(f"SPEED {setup.speed}")
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def label_length_mm(setup: LabelSetup, height_dots: int) -> int:
    """Whole millimetres a page of `height_dots` needs on continuous media."""
    return max(1, -(-height_dots // setup.dots_per_mm))


def encode_label(page: Image.Image, copies: int = 1) -> bytes:
    """CLS, the page as one BITMAP at 0,0, and PRINT `copies`."""
    if page.mode != "1":
        raise ValueError(f"pages are 1-bit (mode '1'), not mode {page.mode!r}")
    width, height = page.size
    if not (0 < width <= MAX_DOTS and 0 < height <= MAX_DOTS):
        raise ValueError(f"a label is 1 to {MAX_DOTS} dots each way, not {width} x {height}")
    if copies < 1:
        raise ValueError(f"copies must be at least 1, not {copies}")
    row_bytes = (width + 7) // 8
    if width % 8:
        # Pillow pads rows with 0 bits, which TSPL prints black: pad with white instead.
        padded = Image.new("1", (row_bytes * 8, height), 255)
        padded.paste(page, (0, 0))
        page = padded
    header = b"CLS\r\nBITMAP 0,0,%d,%d,0," % (row_bytes, height)
    return header + page.tobytes() + b"\r\nPRINT %d\r\n" % copies


def decode_status(reply: bytes) -> TsplStatus:
    """The status byte answering `ESC ! ?`; ValueError unless the reply is exactly one byte."""
    if len(reply) != 1:
        raise ValueError(f"a status reply is one byte, not {len(reply)}")
    return TsplStatus(reply[0])


def decode_model(reply: bytes) -> str:
    """The model name answering `~!T` (printable ASCII, line end stripped)."""
    text = reply.decode("ascii", errors="replace").strip()
    return "".join(ch for ch in text if ch.isprintable())


def _number(value: float) -> str:
    """A measure as TSPL takes it: 2, 2.5 (no trailing zeros)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
