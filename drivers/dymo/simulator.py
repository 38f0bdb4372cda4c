"""A simulated DYMO LabelWriter 450: decodes SYN/ETB raster lines into labels, answers ESC A.

Model (choices a real printer leaves open):

- Dot lines (SYN, ETB) and fed lines (ESC f 1 n) collect into the current label; a form feed
  (ESC E) or short form feed (ESC G) prints it. The label is as wide as the dots addressed
  (dot tab + bytes per line, in bytes) and as long as the lines received, or the label length
  (ESC L) when that is longer: the die-cut label the printer feeds to its end. A negative
  length is continuous stock: the lines received. In graphics mode (ESC i) each dot line is
  1/600 inch, so a label is printed with the lines as received (twice the rows of text mode).
- Bytes after SYN are dots whatever their value; an ETB line ends when its runs reach
  8 x bytes per line dots. Outside a line, bytes other than ESC, SYN, ETB are ignored, and an
  ESC followed by another ESC is dropped: that is how the resync run of ESC bytes ends.
- ESC @ restores the defaults and drops the label being received. A label cut off by the end
  of its connection is dropped.
- Faults "paper-out", "jam" and "error" set their status bits (with bit 7, error) and drop the
  raster received meanwhile; "offline" answers nothing and prints nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.dymo import FAMILY
from drivers.dymo.protocol import (
    STATUS_ERROR,
    STATUS_JAM,
    STATUS_PAPER_OUT,
    STATUS_READY,
    STATUS_TOP_OF_FORM,
)
from drivers.sim.base import COMMON_FAULTS, LabelHook, Simulator

log = structlog.get_logger(__name__)

_ESC, _SYN, _ETB = 0x1B, 0x16, 0x17
# The LabelWriter 450's head: 84 bytes, 672 dots; ESC L's power-on default (10.2 inches).
HEAD_BYTES = 84
DEFAULT_LABEL_LINES = 3058
# ESC commands with one parameter byte, and with none (density, mode, the 400's y/z steps).
_ONE_PARAMETER = frozenset(b"BDq")
_NO_PARAMETER = frozenset(b"cdeghiyz*")
_DROPPING_FAULTS = ("offline", "paper-out", "jam", "error")
# Form feeds remembered for tests and the console; a long `simulate` run keeps the last ones.
FORM_FEEDS_KEPT = 1000


@dataclass
class _Setup:
    """The printer's settings, as ESC @ leaves them."""

    dot_tab: int = 0
    bytes_per_line: int = HEAD_BYTES
    label_lines: int = DEFAULT_LABEL_LINES
    graphics: bool = False
    density: str = "e"
    roll: str = "0"


@dataclass
class _Label:
    """The label being printed: its dot lines as (dot tab, line bytes)."""

    lines: list[tuple[int, bytes]] = field(default_factory=list)


class DymoSimulator(Simulator):
    """A LabelWriter 450 (672-dot head) with ESC A status."""

    LANGUAGE: ClassVar[str] = "dymo"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(self, on_label: LabelHook | None = None, *, head_bytes: int = HEAD_BYTES) -> None:
        super().__init__(on_label)
        self.head_bytes = head_bytes
        self.setup = _Setup(bytes_per_line=head_bytes)
        self.label = _Label()
        self.top_of_form = True
        self.unknown_commands = 0
        self.form_feeds: deque[str] = deque(maxlen=FORM_FEEDS_KEPT)

    def open_channel(self) -> _DymoChannel:
        """Start a new byte stream (one per connection)."""
        return _DymoChannel(self)

    def status_byte(self) -> int:
        """The reply to ESC A for the current faults."""
        value = STATUS_READY | (STATUS_TOP_OF_FORM if self.top_of_form else 0)
        if self.has_fault("paper-out"):
            value |= STATUS_PAPER_OUT | STATUS_ERROR
        if self.has_fault("jam"):
            value |= STATUS_JAM | STATUS_ERROR
        if self.has_fault("error"):
            value |= STATUS_ERROR
        return value

    @property
    def blocked(self) -> bool:
        """True when raster received is dropped instead of printed."""
        return any(self.has_fault(name) for name in _DROPPING_FAULTS)

    def reset(self) -> None:
        """ESC @: defaults back, the label being received dropped."""
        if self.label.lines:
            log.info("sim_label_dropped_by_reset", lines=len(self.label.lines))
        self.setup = _Setup(bytes_per_line=self.head_bytes)
        self.label = _Label()
        self.top_of_form = True

    def add_line(self, line: bytes | None) -> None:
        """A dot line onto the current label; None: a fed line, white across the dots addressed."""
        if self.blocked:
            return
        setup = self.setup
        self.label.lines.append((setup.dot_tab, line or bytes(setup.bytes_per_line)))
        self.top_of_form = False

    def form_feed(self, kind: str) -> None:
        """ESC E / ESC G: print the current label and bring the next one to the head."""
        lines = self.label.lines
        self.label = _Label()
        self.form_feeds.append(kind)
        if self.blocked:
            return
        self.top_of_form = True
        if not lines:
            return
        self._printed(_draw(lines, self.setup.label_lines))

    def drop_label(self) -> None:
        """The stream ended inside a label: nothing of it prints."""
        if self.label.lines:
            log.info("sim_partial_label_dropped", lines=len(self.label.lines))
        self.label = _Label()


def _draw(lines: list[tuple[int, bytes]], label_lines: int) -> Image.Image:
    """The label's dot lines on white: as wide as the widest line, at least the label length."""
    width = max((tab + len(line)) * 8 for tab, line in lines)
    height = max(len(lines), label_lines)
    ink = Image.new("1", (width, height), 0)
    for y, (tab, line) in enumerate(lines):
        if any(line):
            ink.paste(Image.frombytes("1", (len(line) * 8, 1), line), (tab * 8, y))
    return ImageChops.invert(ink)


class _DymoChannel:
    """One stream's parser: commands and lines; the printer's state is the simulator's."""

    def __init__(self, sim: DymoSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        replies = bytearray()
        pos = 0
        while pos < len(self._buf):
            end = self._next(pos, replies)
            if end is None:
                break
            pos = end
        del self._buf[:pos]
        return b"" if self._sim.has_fault("offline") else bytes(replies)

    def close(self) -> None:
        if self._buf:
            log.info("sim_partial_command_dropped", bytes=len(self._buf))
        self._buf.clear()
        self._sim.drop_label()

    def _next(self, pos: int, replies: bytearray) -> int | None:
        """Act on what starts at `pos`; where it ends, or None while it is incomplete."""
        first = self._buf[pos]
        if first == _SYN:
            return self._raw_line(pos)
        if first == _ETB:
            return self._compressed_line(pos)
        if first != _ESC:
            return pos + 1
        return self._command(pos, replies)

    def _command(self, pos: int, replies: bytearray) -> int | None:
        buf, sim = self._buf, self._sim
        if len(buf) < pos + 2:
            return None
        name = buf[pos + 1]
        if name == _ESC:
            return pos + 1
        if name in _NO_PARAMETER:
            self._setting(name)
            return pos + 2
        if name == ord("A"):
            replies.append(sim.status_byte())
            return pos + 2
        if name == ord("@"):
            sim.reset()
            return pos + 2
        if name in b"EG":
            sim.form_feed(chr(name))
            return pos + 2
        if name in _ONE_PARAMETER:
            if len(buf) < pos + 3:
                return None
            self._parameter(name, buf[pos + 2])
            return pos + 3
        if name in b"Lf":
            if len(buf) < pos + 4:
                return None
            if name == ord("L"):
                sim.setup.label_lines = int.from_bytes(buf[pos + 2 : pos + 4], "big", signed=True)
            elif buf[pos + 2] == 1:
                for _ in range(buf[pos + 3]):
                    sim.add_line(None)
            else:
                sim.unknown_commands += 1
            return pos + 4
        sim.unknown_commands += 1
        log.info("sim_unknown_command", command=hex(name))
        return pos + 2

    def _setting(self, name: int) -> None:
        setup = self._sim.setup
        if name in b"cdeg":
            setup.density = chr(name)
        elif name in b"hi":
            setup.graphics = name == ord("i")

    def _parameter(self, name: int, value: int) -> None:
        setup = self._sim.setup
        if name == ord("B"):
            setup.dot_tab = min(value, self._sim.head_bytes - 1)
        elif name == ord("D"):
            setup.bytes_per_line = max(1, min(value, self._sim.head_bytes))
        else:
            setup.roll = chr(value)

    def _raw_line(self, pos: int) -> int | None:
        end = pos + 1 + self._sim.setup.bytes_per_line
        if len(self._buf) < end:
            return None
        self._sim.add_line(bytes(self._buf[pos + 1 : end]))
        return end

    def _compressed_line(self, pos: int) -> int | None:
        """ETB: runs until they cover the line; the dots packed as a SYN line would carry them."""
        dots = self._sim.setup.bytes_per_line * 8
        bits: list[str] = []
        covered = 0
        end = pos + 1
        while covered < dots:
            if end >= len(self._buf):
                return None
            run = self._buf[end]
            length = (run & 0x7F) + 1
            bits.append(("1" if run & 0x80 else "0") * length)
            covered += length
            end += 1
        if covered > dots:
            log.info("sim_compressed_line_overran", dots=covered, expected=dots)
        packed = int("".join(bits)[:dots], 2).to_bytes(dots // 8, "big")
        self._sim.add_line(packed)
        return end
