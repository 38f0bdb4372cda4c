"""The template family's printer language: bytes only, no I/O.

A line protocol (ASCII, each line ends with LF):

    STATUS?                  the printer answers one line: STATUS <condition> [<condition>...]
                             where a condition is OK, PAPER-LOW or PAPER-OUT
    LABEL <width> <height>   a label of width x height dots follows:
    <row>                    height lines, each a row of dots as (width + 7) // 8 bytes in hex;
                             a 1 bit is a black dot, the leftmost dot is the first byte's top bit
    PRINT                    print the label

A real family's protocol module is where the printer's manual turns into code: command encoders
and reply decoders, pure functions that tests can pin down byte for byte.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PIL import ImageChops

if TYPE_CHECKING:
    from PIL.Image import Image

STATUS_QUERY = b"STATUS?\n"
STATUS_PREFIX = b"STATUS "
PRINT = b"PRINT\n"
# The largest label the language allows, in dots each way (a 600 dpi printer's 1.6 m).
MAX_DOTS = 40_000


class StatusWord(enum.StrEnum):
    """A word of the printer's status line."""

    OK = "OK"
    PAPER_LOW = "PAPER-LOW"
    PAPER_OUT = "PAPER-OUT"


def encode_label(page: Image) -> bytes:
    """A page (mode "1", black = 0) as one label: LABEL, its rows, PRINT."""
    if page.mode != "1":
        raise ValueError(f"pages are 1-bit (mode '1'), not mode {page.mode!r}")
    width, height = page.size
    if not (0 < width <= MAX_DOTS and 0 < height <= MAX_DOTS):
        raise ValueError(f"a label is 1 to {MAX_DOTS} dots each way, not {width} x {height}")
    # Pillow packs mode "1" with white = 1; the printer wants black = 1.
    data = ImageChops.invert(page).tobytes()
    stride = (width + 7) // 8
    rows = (data[start : start + stride].hex().encode() for start in range(0, len(data), stride))
    return b"LABEL %d %d\n" % (width, height) + b"\n".join(rows) + b"\n" + PRINT


def encode_status(conditions: Iterable[StatusWord]) -> bytes:
    """The printer's answer to STATUS? (OK when nothing is wrong)."""
    words = [str(c) for c in conditions] or [str(StatusWord.OK)]
    return STATUS_PREFIX + " ".join(words).encode() + b"\n"


def decode_status(line: bytes) -> frozenset[str]:
    """The condition words of a STATUS line (unknown words kept); ValueError if it is not one."""
    text = line.strip()
    if not text.startswith(STATUS_PREFIX.strip()):
        raise ValueError(f"not a status line: {line[:40]!r}")
    words = text.decode("ascii", errors="replace").split()[1:]
    if not words:
        raise ValueError("a status line without conditions")
    return frozenset(words) - {str(StatusWord.OK)}
