"""A simulated ESC/POS printer: decodes `GS v 0` rasters, feeds and cuts, answers `DLE EOT n`.

Model (choices a real printer leaves open):

- Raster rows collect in the print buffer; "print and feed" (`ESC J`, `ESC d`, LF) or a cut
  (`GS V`) prints them as one label. A cut right after such a feed finishes that label. `ESC @`
  empties the print buffer, so rows of a job cut off mid-way never become a label.
- Commands are parsed by their declared lengths: the bytes of a `GS v 0` image are never taken as
  commands. But as Epson printers do, `DLE EOT n` (n = 1..4) is answered the moment its three
  bytes arrive, wherever they are: image bytes that happen to be `10 04 n` get a status reply
  too, in the middle of the job. `realtime_status_in_raster=False` models a printer whose
  parser skips image data (some clones), answering `DLE EOT` only between commands.
- Faults "paper-out", "cover-open" and "cutter-error" take the printer offline: it still answers
  `DLE EOT`, but what it receives meanwhile is dropped, not printed later. "paper-near-end" only
  changes the roll sensor status. "offline" answers nothing and prints nothing.
- Status-only faults (what it receives still prints): "feed-button" (the FEED button is held:
  offline while it feeds), "recovery-wait" (offline, waiting to go back online: `DLE EOT 1`
  bits 3 and 5) and "presenter-waiting" (a Citizen presenter holds a label: `DLE EOT 4` bit 6
  alone).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.escpos import FAMILY
from drivers.sim.base import COMMON_FAULTS, CutKind, LabelHook, Simulator

log = structlog.get_logger(__name__)

ESC, GS, DLE, LF = 0x1B, 0x1D, 0x10, 0x0A
# Dots per text line for `ESC d n` and LF: the 1/6 inch default line spacing at 180 dpi.
LINE_DOTS = 30
# Biggest image the simulator decodes (`GS v 0` can declare 65535 x 4095 bytes).
MAX_RASTER_BYTES = 64 * 1024 * 1024
# Lengths of fixed-size commands the simulator does not act on, so their parameters are skipped.
_ESC_LENGTHS = {
    **dict.fromkeys(b"!-3EGMRatU{= V", 3),
    **dict.fromkeys(b"2<", 2),
    ord("c"): 4,
    ord("p"): 5,
}
_GS_LENGTHS = {**dict.fromkeys(b"!BHhwfarIb", 3), **dict.fromkeys(b"LW", 4)}
_REALTIME_STATUS = re.compile(rb"\x10\x04([\x01-\x04])")
_BLOCKING_FAULTS = ("offline", "paper-out", "cover-open", "cutter-error")


class EscposSimulator(Simulator):
    """An ESC/POS receipt or label printer with a cutter and DLE EOT status."""

    LANGUAGE: ClassVar[str] = "escpos"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(
        self, on_label: LabelHook | None = None, *, realtime_status_in_raster: bool = True
    ) -> None:
        super().__init__(on_label)
        self.realtime_status_in_raster = realtime_status_in_raster
        self.cuts: list[CutKind] = []
        self.unknown_commands = 0
        self._rows: list[Image.Image] = []
        # Index in `labels` of the last label printed by a feed, until a cut or new rows.
        self._uncut: int | None = None

    def open_channel(self) -> _EscposChannel:
        """Start a new byte stream (one per connection)."""
        return _EscposChannel(self)

    def status_byte(self, n: int) -> int:
        """The reply to `DLE EOT n` (1..4) for the current faults."""
        paper_out = self.has_fault("paper-out")
        cover = self.has_fault("cover-open")
        cutter = self.has_fault("cutter-error")
        feed = self.has_fault("feed-button")
        recovery = self.has_fault("recovery-wait")
        value = 0x12
        if n == 1:
            offline = paper_out or cover or cutter or feed or recovery
            value |= (0x08 if offline else 0) | (0x20 if recovery else 0) | (0x40 if feed else 0)
        elif n == 2:
            value |= (0x04 if cover else 0) | (0x20 if paper_out else 0) | (0x40 if cutter else 0)
            value |= 0x08 if feed else 0
        elif n == 3 and cutter:
            value |= 0x08
        elif n == 4:
            # An empty roll also trips the near-end sensor, which looks at the roll diameter.
            near_end = paper_out or self.has_fault("paper-near-end")
            value |= (0x0C if near_end else 0) | (0x60 if paper_out else 0)
            if not paper_out and self.has_fault("presenter-waiting"):
                value |= 0x40
        return value

    @property
    def blocked(self) -> bool:
        """True when received data is dropped instead of printed."""
        return any(self.has_fault(name) for name in _BLOCKING_FAULTS)

    def _raster(self, image: Image.Image) -> None:
        if self.blocked:
            log.info("sim_raster_dropped", faults=sorted(self.faults))
            return
        self._rows.append(image)
        self._uncut = None

    def _print_and_feed(self, dots: int) -> None:
        if self.blocked:
            return
        if self._rows:
            self._printed(_stack(self._rows), feed_dots=dots)
            self._rows = []
            self._uncut = len(self.labels) - 1
        elif self._uncut is not None:
            label = self.labels[self._uncut]
            self._replace(label.number, feed_dots=label.feed_dots + dots, cut=label.cut)

    def _cut(self, kind: CutKind, feed_dots: int = 0) -> None:
        if self.blocked:
            return
        self.cuts.append(kind)
        if self._rows:
            self._printed(_stack(self._rows), feed_dots=feed_dots, cut=kind)
            self._rows = []
        elif self._uncut is not None:
            label = self.labels[self._uncut]
            self._replace(label.number, feed_dots=label.feed_dots + feed_dots, cut=kind)
        self._uncut = None

    def _initialize(self) -> None:
        if self._rows:
            log.info("sim_print_buffer_cleared", rows=sum(row.height for row in self._rows))
        self._rows = []

    def _replace(self, number: int, feed_dots: int, cut: CutKind) -> None:
        self.labels[number - 1] = replace(self.labels[number - 1], feed_dots=feed_dots, cut=cut)


class _EscposChannel:
    """One stream's parser: commands by declared length, state in the simulator."""

    def __init__(self, sim: EscposSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()
        # Up to two received bytes that may start a `DLE EOT n` completed by the next chunk.
        self._realtime_tail = b""

    def feed(self, data: bytes) -> bytes:
        replies = bytearray()
        if not self._sim.realtime_status_in_raster:
            self._parse(data, replies)
            return self._answer(replies)
        # Real-time requests are answered on receipt, wherever they are; what came before
        # each is parsed first, so faults switched by a reply apply in stream order.
        stream = self._realtime_tail + data
        offset = len(self._realtime_tail)
        start = last_end = 0
        for match in _REALTIME_STATUS.finditer(stream):
            end = match.end() - offset
            self._parse(data[start:end], replies)
            replies.append(self._sim.status_byte(match[1][0]))
            start, last_end = end, match.end()
        self._parse(data[start:], replies)
        self._realtime_tail = stream[max(last_end, len(stream) - 2) :]
        return self._answer(replies)

    def _answer(self, replies: bytearray) -> bytes:
        return b"" if self._sim.has_fault("offline") else bytes(replies)

    def _parse(self, data: bytes, replies: bytearray) -> None:
        self._buf += data
        pos = 0
        while pos < len(self._buf):
            end = self._command(pos, replies)
            if end is None:
                break
            pos = end
        del self._buf[:pos]

    def close(self) -> None:
        if self._buf:
            log.info("sim_partial_command_dropped", bytes=len(self._buf))
        self._buf.clear()
        self._realtime_tail = b""

    def _command(self, pos: int, replies: bytearray) -> int | None:
        """Act on the command at `pos`; its end, or None while it is incomplete."""
        buf, sim = self._buf, self._sim
        first = buf[pos]
        if first == LF:
            sim._print_and_feed(LINE_DOTS)
            return pos + 1
        if first not in (ESC, GS, DLE):
            return pos + 1  # text: not rendered
        if len(buf) < pos + 2:
            return None
        second = buf[pos + 1]
        if first == DLE:
            return self._realtime(pos, second, replies)
        if first == GS and second == ord("v"):
            return self._raster(pos)
        if first == GS and second == ord("V"):
            return self._gs_cut(pos)
        if first == GS and second == ord("("):
            if len(buf) < pos + 5:
                return None
            return pos + 5 + buf[pos + 3] + 256 * buf[pos + 4]
        if first == ESC and second == ord("@"):
            sim._initialize()
            return pos + 2
        if first == ESC and second in b"Jd":
            if len(buf) < pos + 3:
                return None
            n = buf[pos + 2]
            sim._print_and_feed(n if second == ord("J") else n * LINE_DOTS)
            return pos + 3
        lengths = _ESC_LENGTHS if first == ESC else _GS_LENGTHS
        if second not in lengths:
            sim.unknown_commands += 1
        return pos + lengths.get(second, 2)

    def _realtime(self, pos: int, second: int, replies: bytearray) -> int | None:
        if second not in (0x04, 0x05, 0x14):
            self._sim.unknown_commands += 1
            return pos + 2
        if len(self._buf) < pos + 3:
            return None
        n = self._buf[pos + 2]
        # With real-time processing on receipt it was answered when it arrived.
        if second == 0x04 and 1 <= n <= 4 and not self._sim.realtime_status_in_raster:
            replies.append(self._sim.status_byte(n))
        return pos + 3

    def _raster(self, pos: int) -> int | None:
        buf = self._buf
        if len(buf) < pos + 8:
            return None
        mode = buf[pos + 3]
        row_bytes = buf[pos + 4] + 256 * buf[pos + 5]
        rows = buf[pos + 6] + 256 * buf[pos + 7]
        size = row_bytes * rows
        end = pos + 8 + size
        if buf[pos + 2] != 0x30:
            self._sim.unknown_commands += 1
            return pos + 2
        if size > MAX_RASTER_BYTES:
            log.warning("sim_raster_too_big", header=bytes(buf[pos : pos + 8]).hex())
            return pos + 8
        if len(buf) < end:
            return None
        data = bytes(buf[pos + 8 : end])
        if size:
            ink = Image.frombytes("1", (row_bytes * 8, rows), data)
            image = ImageChops.invert(ink)
            # m = 1 doubles the width, 2 the height, 3 both.
            scale_x, scale_y = (2 if mode & 1 else 1), (2 if mode & 2 else 1)
            if scale_x > 1 or scale_y > 1:
                size_xy = (image.width * scale_x, image.height * scale_y)
                image = image.resize(size_xy, Image.Resampling.NEAREST)
            self._sim._raster(image)
        return end

    def _gs_cut(self, pos: int) -> int | None:
        buf = self._buf
        if len(buf) < pos + 3:
            return None
        m = buf[pos + 2]
        # Function A: 0/48 full, 1/49 partial. Function B: 65/66 feed n, then full/partial cut.
        if m in (65, 66):
            if len(buf) < pos + 4:
                return None
            self._sim._cut("full" if m == 65 else "partial", buf[pos + 3])
            return pos + 4
        if m in (0, 48, 1, 49):
            self._sim._cut("full" if m in (0, 48) else "partial")
        else:
            self._sim.unknown_commands += 1
        return pos + 3


def _stack(rows: list[Image.Image]) -> Image.Image:
    """Bands one below the other on white, as wide as the widest."""
    if len(rows) == 1:
        return rows[0]
    page = Image.new("1", (max(r.width for r in rows), sum(r.height for r in rows)), 255)
    top = 0
    for row in rows:
        page.paste(row, (0, top))
        top += row.height
    return page
