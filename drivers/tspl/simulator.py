"""A simulated TSPL printer: runs SIZE/CLS/BITMAP/PRINT into labels, answers ESC ! ? and ~!T.

Model (choices a real printer leaves open):

- The image buffer is the SIZE label at the printer's resolution (8 dots/mm at 203 dpi, 12 at
  300); `CLS` clears it, each BITMAP is drawn into it (mode 0 overwrite, 1 OR, 2 XOR), and
  `PRINT m[,n]` prints it m x n times. The buffer stays after PRINT until the next CLS, so a
  further `PRINT 1` prints the same label again. GAP/BLINE, DENSITY, SPEED and DIRECTION are
  recorded; other commands (TEXT, BARCODE...) are counted and not drawn.
- BITMAP data is taken by its length (width_bytes x height), whatever bytes it holds; a 0 bit
  is a black dot. Immediate commands (`ESC ! x`, `~!x`) are read between commands.
- A command cut off by the connection closing is dropped.
- "paper-out", "ribbon-out", "head-open", "cover-open", "jam" and "temperature": PRINT prints
  nothing (the labels are dropped) and ESC ! ? reports the fault. "paused": PRINT waits in the
  buffer and prints on `ESC ! O` or when the fault is cleared. "offline": nothing is answered
  and nothing printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.sim.base import COMMON_FAULTS, LabelHook, Simulator
from drivers.tspl import FAMILY
from drivers.tspl.protocol import DOTS_PER_MM, TsplStatus

log = structlog.get_logger(__name__)

FAULT_BITS: Mapping[str, TsplStatus] = {
    "head-open": TsplStatus.HEAD_OPEN,
    "jam": TsplStatus.PAPER_JAM,
    "paper-out": TsplStatus.PAPER_OUT,
    "ribbon-out": TsplStatus.RIBBON_OUT,
    "paused": TsplStatus.PAUSED,
    "cover-open": TsplStatus.COVER_OPEN,
    "temperature": TsplStatus.TEMPERATURE,
}
_DROPPING_FAULTS = tuple(f for f in FAULT_BITS if f != "paused")
# The longest command line the simulator waits for before giving up on it.
MAX_LINE = 4096
# The biggest image buffer and bitmap it accepts, in dots each way.
MAX_DOTS = 40_000
_BITMAP = re.compile(rb"BITMAP\s+(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")


@dataclass
class MediaSettings:
    """What the last SIZE, GAP/BLINE, DENSITY, SPEED and DIRECTION set."""

    width_dots: int = 0
    height_dots: int = 0
    media: str = "gap"
    gap: bytes = b""
    density: int | None = None
    speed: float | None = None
    direction: int = 0
    unknown_commands: list[bytes] = field(default_factory=list)


class TsplSimulator(Simulator):
    """A TSC-style TSPL printer with a one-byte status and a model name."""

    LANGUAGE: ClassVar[str] = "tspl"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(
        self, on_label: LabelHook | None = None, *, dpi: int = 203, model: str = "TE200"
    ) -> None:
        super().__init__(on_label)
        self.dpi = dpi
        self.model = model
        self.settings = MediaSettings()
        self.buffer: Image.Image | None = None
        self.held: list[Image.Image] = []
        self.printing = False

    @property
    def dots_per_mm(self) -> int:
        return DOTS_PER_MM.get(self.dpi, round(self.dpi / 25.4))

    def open_channel(self) -> _TsplChannel:
        """Start a new byte stream (one per connection)."""
        return _TsplChannel(self)

    def status_byte(self) -> int:
        """The answer to ESC ! ? for the current faults."""
        status = TsplStatus(0)
        for fault, bit in FAULT_BITS.items():
            if self.has_fault(fault):
                status |= bit
        if self.printing:
            status |= TsplStatus.PRINTING
        return int(status)

    def resume(self) -> None:
        """ESC ! O (or the PAUSE key): leave pause and print what waited."""
        self.faults.discard("paused")
        self._fault_cleared("paused")

    def reset(self) -> None:
        """ESC ! R: forget the image buffer and what waited in it."""
        self.buffer = None
        self.held.clear()

    def clear(self) -> None:
        """CLS: a white image buffer of the current SIZE."""
        settings = self.settings
        width = min(max(settings.width_dots, 1), MAX_DOTS)
        height = min(max(settings.height_dots, 1), MAX_DOTS)
        self.buffer = Image.new("1", (width, height), 255)

    def image_buffer(self) -> Image.Image:
        """The image buffer, a white one of the current SIZE before the first CLS."""
        if self.buffer is None:
            self.clear()
        if self.buffer is None:
            raise RuntimeError("CLS made no image buffer")
        return self.buffer

    def draw(self, x: int, y: int, bitmap: Image.Image, mode: int) -> None:
        """BITMAP: draw into the buffer (0 overwrite, 1 OR the black dots, 2 XOR them)."""
        buffer = self.image_buffer()
        box = (x, y, x + bitmap.width, y + bitmap.height)
        if mode == 1:
            bitmap = ImageChops.logical_and(buffer.crop(box), bitmap)
        elif mode == 2:
            inked = ImageChops.logical_xor(buffer.crop(box), bitmap)
            bitmap = ImageChops.invert(inked.convert("L")).convert("1")
        elif mode != 0:
            log.info("sim_bad_bitmap_mode", mode=mode)
            return
        buffer.paste(bitmap, (x, y))

    def print_buffer(self, count: int) -> None:
        """PRINT: the buffer `count` times, unless a fault stops the printer."""
        buffer = self.image_buffer()
        blocking = [f for f in ("offline", *_DROPPING_FAULTS) if self.has_fault(f)]
        if blocking:
            log.info("sim_label_dropped", faults=blocking)
            return
        images = [buffer.copy() for _ in range(count)]
        if self.has_fault("paused"):
            self.held.extend(images)
            return
        for image in images:
            self._printed(image)

    def _fault_cleared(self, name: str) -> None:
        if name == "paused" and not self.has_fault("paused"):
            held, self.held = self.held, []
            for image in held:
                self._printed(image)


class _TsplChannel:
    """One stream's parser: command lines, BITMAP data, immediate commands."""

    def __init__(self, sim: TsplSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        replies = bytearray()
        pos = 0
        while pos < len(self._buf):
            end = self._command(pos, replies)
            if end is None:
                break
            pos = end
        del self._buf[:pos]
        if len(self._buf) > MAX_LINE and not self._buf[:6].upper().startswith(b"BITMAP"):
            log.info("sim_line_too_long", dropped=len(self._buf))
            self._buf.clear()
        return b"" if self._sim.has_fault("offline") else bytes(replies)

    def close(self) -> None:
        if self._buf.strip():
            log.info("sim_partial_command_dropped", bytes=len(self._buf))
        self._buf.clear()

    def _command(self, pos: int, replies: bytearray) -> int | None:
        buf = self._buf
        byte = buf[pos]
        if byte in b"\r\n \t":
            return pos + 1
        if byte == 0x1B or (byte == ord("~") and bytes(buf[pos + 1 : pos + 2]) in (b"", b"!")):
            if len(buf) < pos + 3:
                return None
            self._immediate(bytes(buf[pos : pos + 3]), replies)
            return pos + 3
        if buf[pos : pos + 6].upper() == b"BITMAP":
            return self._bitmap(pos)
        end = buf.find(b"\n", pos)
        if end < 0:
            return None
        self._line(bytes(buf[pos:end]).strip())
        return end + 1

    def _immediate(self, command: bytes, replies: bytearray) -> None:
        sim = self._sim
        if command == b"\x1b!?":
            replies.append(sim.status_byte())
        elif command == b"\x1b!O":
            sim.resume()
        elif command == b"\x1b!P":
            sim.faults.add("paused")
        elif command == b"\x1b!R":
            sim.reset()
        elif command.upper() == b"~!T":
            replies += sim.model.encode("ascii", "replace") + b"\r"
        else:
            sim.settings.unknown_commands.append(command)

    def _bitmap(self, pos: int) -> int | None:
        header = _BITMAP.match(self._buf, pos)
        if header is None:
            newline = self._buf.find(b"\n", pos)
            if newline < 0 and len(self._buf) - pos < 80:
                return None  # the header is still arriving
            log.info("sim_bad_bitmap_header")
            return newline + 1 if newline >= 0 else len(self._buf)
        x, y, row_bytes, height, mode = (int(n) for n in header.groups())
        if not (0 < row_bytes * 8 <= MAX_DOTS and 0 < height <= MAX_DOTS):
            # Not waited for: the data of a size no printer takes would only fill memory.
            log.info("sim_bad_bitmap_size", width_bytes=row_bytes, height=height)
            return header.end()
        end = header.end() + row_bytes * height
        if len(self._buf) < end:
            return None
        data = bytes(self._buf[header.end() : end])
        self._sim.draw(x, y, Image.frombytes("1", (row_bytes * 8, height), data), mode)
        return end

    def _line(self, line: bytes) -> None:
        sim = self._sim
        settings = sim.settings
        name, _, params = line.partition(b" ")
        name = name.upper()
        numbers = [float(n) for n in _NUMBER.findall(params)]
        if name == b"SIZE" and len(numbers) >= 2:
            settings.width_dots, settings.height_dots = (
                self._dots(number, unit)
                for number, unit in zip(numbers, _units(params), strict=False)
            )
        elif name in (b"GAP", b"BLINE"):
            settings.media = "continuous" if numbers[:1] == [0.0] else name.decode().lower()
            settings.gap = params.strip()
        elif name == b"DENSITY" and numbers:
            settings.density = int(numbers[0])
        elif name == b"SPEED" and numbers:
            settings.speed = numbers[0]
        elif name == b"DIRECTION" and numbers:
            settings.direction = int(numbers[0])
        elif name == b"CLS":
            sim.clear()
        elif name == b"PRINT" and numbers:
            sets = int(numbers[0])
            copies = int(numbers[1]) if len(numbers) > 1 else 1
            sim.print_buffer(max(sets, 0) * max(copies, 1))
        elif name:
            settings.unknown_commands.append(line[:40])

    def _dots(self, number: float, unit: str) -> int:
        if unit == "mm":
            return round(number * self._sim.dots_per_mm)
        if unit == "dot":
            return round(number)
        return round(number * self._sim.dpi)


def _units(params: bytes) -> list[str]:
    """The unit of each comma-separated SIZE value: "mm", "dot" or "" (inches)."""
    units = []
    for part in params.split(b","):
        text = part.strip().lower()
        units.append("mm" if text.endswith(b"mm") else "dot" if text.endswith(b"dot") else "")
    return units
