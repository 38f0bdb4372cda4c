"""A simulated Zebra ZPL printer: renders `^GF` graphics of each `^XA...^XZ`, answers queries.

Model (choices a real printer leaves open):

- A label is the `^PW` x `^LL` canvas (or the graphics' extent) with every `^GF` pasted at its
  `^LH` + `^FO` position; other fields (text, barcodes) are accepted and not rendered. `^PQ n`
  prints n labels; `odometer.total_label_count` counts them.
- Tilde commands run at once, even inside a format; a caret or tilde ends `^GFA` data, as on
  Zebra printers. A format cut off by its connection closing is dropped.
- "paper-out", "head-open" and "ribbon-out": formats received are dropped (not printed later), and
  `~HS` gets no answer, as Zebra documents for MEDIA OUT, HEAD OPEN and RIBBON OUT; `~HQES`, `~HI`
  and SGD still answer. "paused": formats wait in the buffer (`~HS` counts them) and print on
  `~PS` or when the fault is cleared. "offline": nothing is answered and nothing printed.
  "label-waiting": `~HS` reports a label waiting to be taken (peel-off); printing goes on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.sim.base import COMMON_FAULTS, LabelHook, Simulator
from drivers.zpl import FAMILY
from drivers.zpl.protocol import ZplError, ZplWarning, decode_graphic, parse_graphic_header

log = structlog.get_logger(__name__)

# Biggest ^GF bitmap the simulator decodes; ZPL itself caps counts at 99999.
MAX_GRAPHIC_BYTES = 16 * 1024 * 1024
_TERMINATOR = re.compile(rb"[\^~]")
_LINE_END = re.compile(rb"[\r\n]")
_HEADER_STOP = re.compile(rb"[,\^~]")
_SGD = re.compile(rb'!\s*U1\s+(getvar|setvar)\s+"([^"]*)"(?:\s+"([^"]*)")?', re.IGNORECASE)
_NO_HS_FAULTS = ("paper-out", "head-open", "ribbon-out")
_ERROR_BITS: Mapping[str, ZplError] = {
    "paper-out": ZplError.MEDIA_OUT,
    "ribbon-out": ZplError.RIBBON_OUT,
    "head-open": ZplError.HEAD_OPEN,
    "paused": ZplError.PAUSED,
}


@dataclass
class _Format:
    """A format being received: size, origins and graphics so far."""

    width: int | None = None
    length: int | None = None
    home: tuple[int, int] = (0, 0)
    origin: tuple[int, int] = (0, 0)
    copies: int = 1
    graphics: list[tuple[int, int, Image.Image]] = field(default_factory=list)


class ZplSimulator(Simulator):
    """A Zebra ZPL II label printer with host status, extended status, ~HI and SGD."""

    LANGUAGE: ClassVar[str] = "zpl"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(
        self,
        on_label: LabelHook | None = None,
        *,
        model: str = "ZTC ZD421-300dpi ZPL",
        firmware: str = "V93.21.26Z",
        dpmm: int = 12,
        memory_kb: int = 8192,
        friendly_name: str = "ZD421-SIM",
        thermal_transfer: bool = False,
    ) -> None:
        super().__init__(on_label)
        self.model = model
        self.firmware = firmware
        self.dpmm = dpmm
        self.memory_kb = memory_kb
        self.friendly_name = friendly_name
        self.thermal_transfer = thermal_transfer
        self.total_label_count = 0
        self.label_length_dots = 0
        self.darkness: int | None = None
        self.speed: int | None = None
        self.queued: list[tuple[Image.Image, int]] = []

    def open_channel(self) -> _ZplChannel:
        """Start a new byte stream (one per connection)."""
        return _ZplChannel(self)

    def resume(self) -> None:
        """Leave pause (`~PS`) and print the formats that waited."""
        self.faults.discard("paused")
        self._fault_cleared("paused")

    def host_status(self, partial_format: bool = False) -> bytes:
        """The `~HS` reply for the current state."""
        remaining = sum(copies for _, copies in self.queued)
        one = (
            f"030,{int(self.has_fault('paper-out'))},{int(self.has_fault('paused'))},"
            f"{self.label_length_dots:04d},{len(self.queued):03d},0,0,{int(partial_format)},"
            "000,0,0,0"
        )
        two = (
            f"001,0,{int(self.has_fault('head-open'))},{int(self.has_fault('ribbon-out'))},"
            f"{int(self.thermal_transfer)},2,6,{int(self.has_fault('label-waiting'))},"
            f"{remaining:08d},1,000"
        )
        return b"".join(b"\x02" + s.encode() + b"\x03\r\n" for s in (one, two, "1234,0"))

    def extended_status(self) -> bytes:
        """The `~HQES` reply for the current faults."""
        errors = ZplError(0)
        for fault, bit in _ERROR_BITS.items():
            if self.has_fault(fault):
                errors |= bit
        warnings = ZplWarning.PAPER_NEAR_END if self.has_fault("paper-near-end") else ZplWarning(0)
        return (
            b"\x02\r\n  PRINTER STATUS\r\n"
            + _flag_line("ERRORS", int(errors))
            + _flag_line("WARNINGS", int(warnings))
            + b"\x03\r\n"
        )

    def identification(self) -> bytes:
        """The `~HI` reply."""
        text = f"{self.model},{self.firmware},{self.dpmm},{self.memory_kb}KB"
        return b"\x02" + text.encode() + b"\x03\r\n"

    def getvar(self, name: str) -> str:
        """The value of an SGD setting, `?` for one the simulator does not know."""
        values = {
            "odometer.total_label_count": str(self.total_label_count),
            "device.friendly_name": self.friendly_name,
            "device.languages": "zpl",
            "appl.name": self.firmware.removeprefix("V"),
            "head.latch": "open" if self.has_fault("head-open") else "ok",
            "media.status": "out" if self.has_fault("paper-out") else "ok",
        }
        return values.get(name.lower(), "?")

    def setvar(self, name: str, value: str) -> None:
        """Set an SGD setting; only `device.friendly_name` is writable."""
        if name.lower() == "device.friendly_name":
            self.friendly_name = value

    def _complete(self, fmt: _Format) -> None:
        if fmt.length is not None:
            self.label_length_dots = fmt.length
        blocking = [f for f in ("offline", *_NO_HS_FAULTS) if self.has_fault(f)]
        if blocking:
            log.info("sim_format_dropped", faults=blocking)
            return
        image = _render(fmt)
        if self.has_fault("paused"):
            self.queued.append((image, fmt.copies))
            return
        self._print(image, fmt.copies)

    def _print(self, image: Image.Image, copies: int) -> None:
        self.total_label_count += copies
        self._printed(image, copies)

    def _fault_cleared(self, name: str) -> None:
        if name == "paused" and not self.has_fault("paused"):
            queued, self.queued = self.queued, []
            for image, copies in queued:
                self._print(image, copies)


class _ZplChannel:
    """One stream's parser: commands, `^GF` data and SGD lines; printer state in the simulator."""

    def __init__(self, sim: ZplSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()
        # Where the search for the end of the pending command resumes (no rescans on 1-byte feeds).
        self._scan = 0
        self._format: _Format | None = None

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        replies = bytearray()
        pos = 0
        while pos < len(self._buf):
            byte = self._buf[pos]
            if byte in b"^~":
                end = self._command(pos, replies)
            elif byte == ord("!"):
                end = self._sgd(pos, replies)
            else:
                end = pos + 1  # whitespace and stray bytes between commands
            if end is None:
                break
            pos = end
            self._scan = 0
        del self._buf[:pos]
        self._scan = max(0, self._scan - pos)
        return b"" if self._sim.has_fault("offline") else bytes(replies)

    def close(self) -> None:
        if self._format is not None:
            log.info("sim_partial_format_dropped")
        self._format = None
        self._buf.clear()
        self._scan = 0

    def _end_of(self, start: int) -> int | None:
        """Index of the next caret or tilde from `start`, or None until one arrives."""
        match = _TERMINATOR.search(self._buf, max(start, self._scan))
        if match is None:
            self._scan = len(self._buf)
            return None
        return match.start()

    def _command(self, pos: int, replies: bytearray) -> int | None:
        buf, sim = self._buf, self._sim
        if len(buf) < pos + 3:
            return None
        tilde = buf[pos] == ord("~")
        code = bytes(buf[pos + 1 : pos + 3]).upper()
        start = pos + 3
        if tilde and code in (b"HS", b"HI", b"PS", b"JA"):
            if code == b"HS" and not any(sim.has_fault(f) for f in _NO_HS_FAULTS):
                replies += sim.host_status(self._format is not None)
            elif code == b"HI":
                replies += sim.identification()
            elif code == b"PS":
                sim.resume()
            elif code == b"JA":
                sim.queued.clear()
                self._format = None
            return start
        if tilde and code in (b"HQ", b"SD"):
            if len(buf) < start + 2:
                return None
            arg = bytes(buf[start : start + 2])
            if code == b"HQ" and arg.upper() == b"ES":
                replies += sim.extended_status()
            elif code == b"SD" and arg.isdigit():
                sim.darkness = int(arg)
            return start + 2
        if not tilde and code == b"XA":
            self._format = _Format()
            return start
        if not tilde and code == b"XZ":
            if self._format is not None:
                sim._complete(self._format)
            self._format = None
            return start
        if not tilde and code == b"GF":
            return self._graphic(start)
        end = self._end_of(start)
        if end is not None:
            self._parameters(code, bytes(buf[start:end]).strip())
        return end

    def _parameters(self, code: bytes, params: bytes) -> None:
        fmt = self._format
        numbers = [int(n) for n in re.findall(rb"-?\d+", params)]
        if code == b"PR" and numbers:
            self._sim.speed = numbers[0]
        if fmt is None or not numbers:
            return
        if code == b"PW":
            fmt.width = numbers[0]
        elif code == b"LL":
            fmt.length = numbers[0]
        elif code == b"PQ":
            fmt.copies = max(1, numbers[0])
        elif code in (b"FO", b"LH"):
            x, y = (numbers + [0])[:2]
            if code == b"FO":
                fmt.origin = (x, y)
            else:
                fmt.home = (x, y)

    def _graphic(self, start: int) -> int | None:
        buf = self._buf
        commas: list[int] = []
        cursor = start
        while len(commas) < 4:
            match = _HEADER_STOP.search(buf, cursor)
            if match is None:
                return None
            if buf[match.start()] != ord(","):
                log.warning("sim_bad_graphic", reason="header")
                return match.start()
            commas.append(match.start())
            cursor = match.start() + 1
        try:
            header = parse_graphic_header(bytes(buf[start : commas[3]]))
        except ValueError as err:
            log.warning("sim_bad_graphic", reason=str(err))
            return self._end_of(cursor)
        if header.compression == "A":
            end = self._end_of(cursor)
            if end is None:
                return None
        else:
            end = cursor + header.binary_byte_count
            if len(buf) < end:
                return None
        if self._format is not None and header.graphic_field_count <= MAX_GRAPHIC_BYTES:
            try:
                image = decode_graphic(header, bytes(buf[cursor:end]))
            except ValueError as err:
                log.warning("sim_bad_graphic", reason=str(err))
            else:
                fmt = self._format
                x, y = fmt.home[0] + fmt.origin[0], fmt.home[1] + fmt.origin[1]
                fmt.graphics.append((x, y, image))
        return end

    def _sgd(self, pos: int, replies: bytearray) -> int | None:
        match = _LINE_END.search(self._buf, max(pos, self._scan))
        if match is None:
            self._scan = len(self._buf)
            return None
        command = _SGD.match(bytes(self._buf[pos : match.start()]))
        if command is not None:
            verb, name, value = (part.decode("utf-8", "replace") for part in command.groups(b""))
            if verb.lower() == "getvar":
                replies += b'"' + self._sim.getvar(name).encode("utf-8") + b'"'
            else:
                self._sim.setvar(name, value)
        return match.end()


def _render(fmt: _Format) -> Image.Image:
    """The label canvas with every graphic's black dots on it."""
    width = fmt.width or max((x + img.width for x, _, img in fmt.graphics), default=1)
    length = fmt.length or max((y + img.height for _, y, img in fmt.graphics), default=1)
    canvas = Image.new("1", (max(1, width), max(1, length)), 255)
    for x, y, image in fmt.graphics:
        # Black (0) wins where graphics overlap; parts outside the canvas are clipped by paste.
        region = canvas.crop((x, y, x + image.width, y + image.height))
        canvas.paste(ImageChops.logical_and(region, image), (x, y))
    return canvas


def _flag_line(name: str, bits: int) -> bytes:
    line = f"    {name + ':':<16}{int(bits != 0)} {bits >> 32:08X} {bits & 0xFFFFFFFF:08X}\r\n"
    return line.encode()
