"""ESC/POS bytes: 1-bit pages to a raster job (`GS v 0`), and `DLE EOT` status replies to flags.

Pure functions, no I/O. Pages are Pillow mode "1" images with black = 0; ESC/POS raster data is
1 = print, most significant bit = leftmost dot, rows padded to whole bytes with 0 (no dot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from PIL import Image, ImageChops

CutMode = Literal["none", "partial", "full"]

ESC = b"\x1b"
GS = b"\x1d"
DLE = b"\x10"
INIT = ESC + b"@"
CUTS: Mapping[str, bytes] = MappingProxyType(
    {"none": b"", "partial": GS + b"V\x01", "full": GS + b"V\x00"}
)
# `DLE EOT n`: 1 printer, 2 offline cause, 3 error cause, 4 roll paper sensor.
STATUS_QUERIES: Mapping[int, bytes] = MappingProxyType(
    {n: DLE + b"\x04" + bytes((n,)) for n in (1, 2, 3, 4)}
)
# `GS v 0` takes at most 2303 rows on Epson TM printers (yH <= 8; the command itself allows
# 4095) and 65535 bytes per row.
MAX_RASTER_ROWS = 2303
MAX_RASTER_ROW_BYTES = 0xFFFF
# `ESC J n` feeds at most 255 motion units; longer feeds are split.
MAX_FEED_PER_COMMAND = 255


@dataclass(frozen=True, slots=True)
class BandLayout:
    """How a page is cut into `GS v 0` bands for printers with one size of image buffer."""

    name: str
    band_rows: int
    band_bytes: int | None = None
    max_width_dots: int | None = None

    def rows_per_band(self, row_bytes: int) -> int:
        """Rows per band for a raster `row_bytes` wide (at least one)."""
        rows = self.band_rows
        if self.band_bytes is not None:
            rows = min(rows, self.band_bytes // row_bytes)
        return max(1, min(rows, MAX_RASTER_ROWS))


# Why bands: a printer receives a whole `GS v 0` image into its image buffer before printing it.
# An image larger than that buffer (often a few KB on clones) makes the printer abandon the
# command and print the rest of the bitmap as text garbage (python-escpos #65, escpos-php #206).
# Several smaller images print contiguously, so banding costs nothing visible.
BAND_LAYOUTS: Mapping[str, BandLayout] = MappingProxyType(
    {
        "default": BandLayout("default", band_rows=255),
        # Cheap clones with a 4 KB receive buffer (escpos-php #206): 44 rows of a 732-dot label.
        "small-buffer": BandLayout("small-buffer", band_rows=255, band_bytes=4096),
        # Epson TM series and others with a large image buffer: one band per page when it fits.
        "large-buffer": BandLayout("large-buffer", band_rows=MAX_RASTER_ROWS),
    }
)


@dataclass(frozen=True, slots=True)
class EscposStatus:
    """Flags from `DLE EOT 1..4` replies; a flag is None when its query was not asked."""

    # DLE EOT 1 (bits 5 and 6 are undefined on older models, which send them as 0)
    offline: bool | None = None
    drawer_pin3_high: bool | None = None
    waiting_for_recovery: bool | None = None
    feed_button_pressed: bool | None = None
    # DLE EOT 2
    cover_open: bool | None = None
    feed_button: bool | None = None
    paper_end_stop: bool | None = None
    error: bool | None = None
    # DLE EOT 3
    mechanical_error: bool | None = None
    cutter_error: bool | None = None
    unrecoverable: bool | None = None
    auto_recoverable: bool | None = None
    # DLE EOT 4
    paper_near_end: bool | None = None
    paper_out: bool | None = None
    presenter_waiting: bool | None = None

    @property
    def online(self) -> bool | None:
        """True when the printer reports itself online (DLE EOT 1)."""
        return None if self.offline is None else not self.offline


def encode_job(
    pages: Sequence[Image.Image],
    copies: int = 1,
    cut: CutMode = "full",
    feed_dots: int = 0,
    layout: str | None = None,
) -> bytes:
    """One job: `ESC @`, then per copy every page as `GS v 0` bands, `ESC J` feed and the cut."""
    if not pages:
        raise ValueError("a job needs at least one page")
    if copies < 1:
        raise ValueError(f"copies must be at least 1, not {copies}")
    chosen = band_layout(layout)
    encoded = b"".join(encode_label(page, cut, feed_dots, chosen) for page in pages)
    # ESC/POS has no copy counter: the page sequence is sent again for every copy.
    return INIT + encoded * copies


def encode_label(
    page: Image.Image,
    cut: CutMode = "full",
    feed_dots: int = 0,
    layout: BandLayout | None = None,
) -> bytes:
    """One page as `GS v 0` bands, then `ESC J` (print and feed) and the cut; no `ESC @`."""
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {', '.join(CUTS)}, not {cut!r}")
    if feed_dots < 0:
        raise ValueError(f"feed_dots must not be negative, not {feed_dots}")
    # ESC J is "print the buffer and feed": ESC J 0 ends a page even without feeding.
    return encode_page(page, layout) + _feed(feed_dots) + CUTS[cut]


def encode_page(page: Image.Image, layout: BandLayout | None = None) -> bytes:
    """One page as `GS v 0` raster bands (no feed, no cut): the page's rows, nothing else."""
    chosen = layout or BAND_LAYOUTS["default"]
    if page.mode != "1":
        raise ValueError(f"pages must be mode '1' images, not {page.mode!r}")
    width, height = page.size
    if width < 1 or height < 1:
        raise ValueError(f"page has no dots: {width}x{height}")
    if chosen.max_width_dots is not None and width > chosen.max_width_dots:
        raise ValueError(f"page is {width} dots wide; {chosen.name} prints {chosen.max_width_dots}")
    row_bytes = (width + 7) // 8
    if row_bytes > MAX_RASTER_ROW_BYTES:
        raise ValueError(f"page is {width} dots wide; GS v 0 takes at most 524280")
    # Pillow's mode "1" is 0 = black; inverting first makes 1 = dot and keeps row padding at 0.
    data = ImageChops.invert(page).tobytes()
    rows = chosen.rows_per_band(row_bytes)
    parts = []
    for top in range(0, height, rows):
        band_rows = min(rows, height - top)
        header = GS + b"v0\x00" + row_bytes.to_bytes(2, "little") + band_rows.to_bytes(2, "little")
        parts.append(header + data[top * row_bytes : (top + band_rows) * row_bytes])
    return b"".join(parts)


def band_layout(name: str | None) -> BandLayout:
    """Return the named band layout (None: "default"); ValueError for an unknown name."""
    try:
        return BAND_LAYOUTS[name or "default"]
    except KeyError:
        raise ValueError(
            f"unknown ESC/POS band layout {name!r}; known: {', '.join(BAND_LAYOUTS)}"
        ) from None


def decode_status(replies: Mapping[int, int]) -> EscposStatus:
    """Decode `{n: reply byte}` of `DLE EOT n`; ValueError on a byte without the fixed bits."""
    flags: dict[str, bool] = {}
    for n, value in replies.items():
        if n not in STATUS_QUERIES:
            raise ValueError(f"DLE EOT {n} is not a status query this decoder knows")
        if not 0 <= value <= 0xFF or not is_valid_status_byte(value):
            raise ValueError(f"invalid DLE EOT {n} reply {value:#04x}: not of the form 0xx1xx10")
        for name, mask in _STATUS_BITS[n]:
            flags[name] = bool(value & mask)
        if n == 4:
            # Epson sets bits 5 and 6 for paper end; Citizen presenter printers use bit 5 for
            # paper end and bit 6 alone for a label waiting in the presenter.
            flags["presenter_waiting"] = value & 0x60 == 0x40
    return EscposStatus(**flags)


def is_valid_status_byte(value: int) -> bool:
    """Tell whether a real-time status byte has bits 1 and 4 set and bits 0 and 7 clear."""
    return value & 0x93 == 0x12


def _feed(dots: int) -> bytes:
    parts = [ESC + b"J" + bytes((MAX_FEED_PER_COMMAND,))] * (dots // MAX_FEED_PER_COMMAND)
    rest = dots % MAX_FEED_PER_COMMAND
    if rest or not parts:
        parts.append(ESC + b"J" + bytes((rest,)))
    return b"".join(parts)


# Near end is reported by a pair of bits (both set on Epson, one per sensor on Citizen); either
# counts. Paper out is bit 5 (with bit 6 on Epson).
_STATUS_BITS: Mapping[int, tuple[tuple[str, int], ...]] = MappingProxyType(
    {
        1: (
            ("drawer_pin3_high", 0x04),
            ("offline", 0x08),
            ("waiting_for_recovery", 0x20),
            ("feed_button_pressed", 0x40),
        ),
        2: (
            ("cover_open", 0x04),
            ("feed_button", 0x08),
            ("paper_end_stop", 0x20),
            ("error", 0x40),
        ),
        3: (
            ("mechanical_error", 0x04),
            ("cutter_error", 0x08),
            ("unrecoverable", 0x20),
            ("auto_recoverable", 0x40),
        ),
        4: (("paper_near_end", 0x0C), ("paper_out", 0x20)),
    }
)
