"""A test-side reading of LabelWriter raster streams, written from DYMO's technical references.

Sources: "LabelWriter 400 Series Technical Reference Manual" and "LabelWriter 450 Series Printers
Technical Reference Manual" (same command set). It shares no code with `drivers/dymo/` (neither
the encoder nor the simulator), so a misreading of the manual in one of them shows here. What it
reads, as the manuals put it:

- Print data: `<syn>` then exactly "bytes per line" bytes (`<esc> D n`, default 84), the most
  significant bit of each byte the leftmost dot, 1 = a printed dot, placed "dot tab" bytes from
  the head's left end (`<esc> B n`, default 0). Those bytes are image data even when they equal
  `<syn>`, `<etb>` or `<esc>`.
- Appendix A, data compression: `<etb>` then run bytes, "bit seven ... 0 = white space,
  1 = printed pixel; bits 0 through 6 ... the number of consecutive bits ... minus one"; the
  runs of a line add up to "bytes per line" x 8 dots.
- After a line, only `<esc>` (a command), `<syn>` or `<etb>` mean anything: "any other characters
  are ignored". The resync run of `<esc>` bytes is read as `<esc>` bytes that start nothing
  until the last, whose command follows.
- `<esc> f 1 n`: skip n lines. `<esc> L n1 n2`: label length in dot lines, n1 the high byte
  (as DYMO's CUPS and LPrint drivers send it), "any negative value" continuous stock.
- `<esc> E` form feed and `<esc> G` short form feed end a label; `<esc> @` resets the
  settings and loses what the printer holds.
- Two-byte commands without parameters: `c d e g` (density), `h i` (text / barcode and graphics
  mode), `A` (status), `*` (defaults); `<esc> q n` selects a roll on a Twin Turbo.

A label is drawn as mode "L" (0 ink, 255 paper): as wide as the dots addressed, as long as its
lines, or the label length if longer (a die-cut label feeds to its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

ESC, SYN, ETB = 27, 22, 23
HEAD_BYTES = 84
POWER_ON_LENGTH = 3058


@dataclass
class _Reader:
    stream: bytes
    at: int = 0
    tab: int = 0
    width: int = HEAD_BYTES
    length: int = POWER_ON_LENGTH
    rows: list[list[int]] = field(default_factory=list)
    labels: list[Image.Image] = field(default_factory=list)

    def byte(self) -> int:
        value = self.stream[self.at]
        self.at += 1
        return value

    def done(self) -> bool:
        return self.at >= len(self.stream)

    def dots_of_bytes(self, data: bytes) -> list[int]:
        """A line's dots across the head: 1 printed, 0 not."""
        dots = [0] * (8 * self.tab)
        for value in data:
            dots.extend((value >> (7 - bit)) & 1 for bit in range(8))
        return dots

    def read_plain_line(self) -> None:
        data = self.stream[self.at : self.at + self.width]
        assert len(data) == self.width, "stream ends inside a <syn> line"
        self.at += self.width
        self.rows.append(self.dots_of_bytes(data))

    def read_compressed_line(self) -> None:
        dots = [0] * (8 * self.tab)
        wanted = 8 * self.width
        count = 0
        while count < wanted:
            run = self.byte()
            colour = run >> 7
            pixels = (run & 0b0111_1111) + 1
            dots.extend([colour] * pixels)
            count += pixels
        assert count == wanted, f"an <etb> line of {count} dots where {wanted} are due"
        self.rows.append(dots)

    def command(self) -> None:
        name = chr(self.byte())
        if name == "\x1b":
            self.at -= 1  # the resync run: this <esc> starts the next command
        elif name == "B":
            self.tab = self.byte()
        elif name == "D":
            self.width = self.byte()
        elif name == "L":
            high, low = self.byte(), self.byte()
            value = high * 256 + low
            self.length = value - 65536 if value >= 32768 else value
        elif name == "f":
            assert self.byte() == 1, "<esc> f must be followed by 1"
            # A fed line is a line of white across the dots addressed.
            self.rows.extend([0] * (8 * (self.tab + self.width)) for _ in range(self.byte()))
        elif name == "q":
            self.byte()
        elif name in "EG":
            self.finish()
        elif name == "@":
            self.tab, self.width, self.length, self.rows = 0, HEAD_BYTES, POWER_ON_LENGTH, []
        elif name not in "cdeghiA*":
            raise AssertionError(f"<esc> {name!r} is not in the manual")

    def finish(self) -> None:
        if not self.rows:
            return
        width = max((len(row) for row in self.rows), default=0)
        height = max(len(self.rows), self.length)
        label = Image.new("L", (width, height), 255)
        for y, row in enumerate(self.rows):
            for x, dot in enumerate(row):
                if dot:
                    label.putpixel((x, y), 0)
        self.labels.append(label)
        self.rows = []


def labels(stream: bytes) -> list[Image.Image]:
    """Every label a LabelWriter prints from `stream`, as mode "L" (0 ink, 255 paper)."""
    reader = _Reader(stream)
    while not reader.done():
        value = reader.byte()
        if value == SYN:
            reader.read_plain_line()
        elif value == ETB:
            reader.read_compressed_line()
        elif value == ESC:
            reader.command()
    return reader.labels
