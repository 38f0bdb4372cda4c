"""A simulated template printer: decodes LABEL/rows/PRINT into labels and answers STATUS?.

Model:

- A label is the LABEL line's width x height canvas with its rows; PRINT prints it. A label cut
  off by its connection closing, or with a row of the wrong length, is dropped (and logged).
- "paper-out": labels received are dropped, STATUS? answers PAPER-OUT. "paper-low": STATUS?
  answers PAPER-LOW; printing goes on. "offline": nothing is answered and nothing printed.

A family's simulator is the printer as the tests and `inventree-edge simulate` see it: it decodes
what the driver sends independently of the driver's encoder, so a test compares pixels, not bytes.
"""

from __future__ import annotations

from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.sim.base import COMMON_FAULTS, LabelHook, Simulator
from drivers.template import FAMILY
from drivers.template.protocol import MAX_DOTS, StatusWord, encode_status

log = structlog.get_logger(__name__)

# The longest line the simulator waits for: a row of the widest label in hex, and a margin.
MAX_LINE = MAX_DOTS // 4 + 64


class TemplateSimulator(Simulator):
    """The template family's line printer."""

    LANGUAGE: ClassVar[str] = "template"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(self, on_label: LabelHook | None = None) -> None:
        super().__init__(on_label)
        self.unknown_lines = 0

    def open_channel(self) -> _TemplateChannel:
        """Start a new byte stream (one per connection)."""
        return _TemplateChannel(self)

    def status_words(self) -> list[StatusWord]:
        """What STATUS? reports for the current faults."""
        if self.has_fault("paper-out"):
            return [StatusWord.PAPER_OUT]
        if self.has_fault("paper-low"):
            return [StatusWord.PAPER_LOW]
        return []

    def print_label(self, image: Image.Image) -> None:
        """PRINT: the label comes out, unless there is no paper (or the printer is off)."""
        if self.has_fault("paper-out") or self.has_fault("offline"):
            log.info("sim_label_dropped", faults=sorted(self.faults))
            return
        self._printed(image)


class _Label:
    """A label being received: its size and the rows so far (1 bits black)."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.stride = (width + 7) // 8
        self.rows: list[bytes] = []

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.height

    def image(self) -> Image.Image:
        """The label as mode "1" (black = 0), as the tests compare it."""
        inked = Image.frombytes("1", (self.width, self.height), b"".join(self.rows))
        return ImageChops.invert(inked)


class _TemplateChannel:
    """One stream's parser: lines, a label's rows; the printer's state is the simulator's."""

    def __init__(self, sim: TemplateSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()
        self._label: _Label | None = None

    def feed(self, data: bytes) -> bytes:
        """Take bytes as they arrive (split anywhere); return the replies."""
        self._buf += data
        replies = bytearray()
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            replies += self._line(line)
        if len(self._buf) > MAX_LINE:
            log.info("sim_line_too_long", dropped=len(self._buf))
            self._buf.clear()
            self._label = None
        return bytes(replies)

    def close(self) -> None:
        """The stream ended: a label cut off by the end is dropped."""
        if self._label is not None:
            log.info("sim_partial_label_dropped", rows=len(self._label.rows))
        self._label = None
        self._buf.clear()

    def _line(self, line: bytes) -> bytes:
        sim = self._sim
        if sim.has_fault("offline"):
            return b""
        label = self._label
        if label is not None and not label.complete:
            self._row(label, line)
            return b""
        words = line.split()
        command = words[0] if words else b""
        if command == b"STATUS?":
            return encode_status(sim.status_words())
        if command == b"LABEL" and len(words) == 3:
            self._start(words[1], words[2])
        elif command == b"PRINT" and label is not None:
            self._label = None
            sim.print_label(label.image())
        else:
            sim.unknown_lines += 1
            log.info("sim_unknown_line", line=line[:40])
        return b""

    def _start(self, width: bytes, height: bytes) -> None:
        try:
            size = int(width), int(height)
        except ValueError:
            size = (0, 0)
        if not all(0 < n <= MAX_DOTS for n in size):
            log.info("sim_bad_label_size", width=width[:10], height=height[:10])
            self._label = None
            return
        self._label = _Label(*size)

    def _row(self, label: _Label, line: bytes) -> None:
        try:
            row = bytes.fromhex(line.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            row = b""
        if len(row) != label.stride:
            log.info("sim_bad_row_dropped_label", row=len(label.rows), length=len(line))
            self._label = None
            return
        label.rows.append(row)
