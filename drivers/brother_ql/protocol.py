"""The QL raster language as pure functions: pages to bytes, the 32-byte status frame both ways.

A job (Brother's "2.1 Print data overview"): an invalidate (NUL bytes) and ESC @ once, then for
each page the control codes (ESC i a, ESC i !, ESC i z, ESC i M, ESC i A, ESC i K, ESC i d, M),
its raster lines, and FF (more pages follow) or Ctrl-Z (the last page). A raster line covers the
whole head, mirrored left to right: the page's right edge goes out first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageChops

from drivers.brother_ql.tables import (
    CONTINUOUS_MARGIN_DOTS,
    MAX_CONTINUOUS_DOTS,
    MIN_CONTINUOUS_DOTS,
    Label,
    Model,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

ESC = 0x1B
INITIALIZE = b"\x1b@"
STATUS_REQUEST = b"\x1biS"
RASTER_MODE = b"\x1bia\x01"
# ESC i ! 0: the printer sends its phase, completion and error frames on its own.
NOTIFY_ON = b"\x1bi!\x00"
PRINT_PAGE = b"\x0c"
PRINT_LAST_PAGE = b"\x1a"
ZERO_LINE = b"Z"
STATUS_SIZE = 32
STATUS_HEADER = b"\x80\x20\x42"

# ESC i z n1: which fields hold; and the two qualities.
VALID_KIND = 0x02
VALID_WIDTH = 0x04
VALID_LENGTH = 0x08
QUALITY_FIRST = 0x40
RECOVERY_ON = 0x80
MEDIA_CONTINUOUS = 0x0A
MEDIA_DIE_CUT = 0x0B
# ESC i M: various mode.
AUTO_CUT = 0x40
# ESC i K: expanded mode.
TWO_COLOUR = 0x01
CUT_AT_END = 0x08
HIGH_RESOLUTION = 0x40
COMPRESSION_TIFF = 0x02


@dataclass(frozen=True, slots=True)
class PageOptions:
    """How one page is printed: the media, the model, and the cut and quality choices."""

    model: Model
    label: Label
    auto_cut: bool = True
    cut_every: int = 1
    quality: bool = True
    compress: bool = True
    # 300 x 600 dpi (ESC i K bit 6): the page comes drawn at 600 dpi, twice as wide and twice as
    # long; each raster line takes two columns (a dot where either has ink), lines stay 600 dpi.
    high_resolution: bool = False


def invalidate(model: Model) -> bytes:
    """The job's opening: NUL bytes that end any half-sent command, then ESC @."""
    return b"\x00" * model.invalidate_bytes + INITIALIZE


def encode_job(pages: Sequence[Sequence[Image.Image]], options: PageOptions) -> bytes:
    """A whole job: the opening, then every page (each a tuple of planes), the last with Ctrl-Z."""
    parts = [invalidate(options.model)]
    for index, planes in enumerate(pages):
        parts.append(encode_page(planes, options, first=index == 0, last=index == len(pages) - 1))
    return b"".join(parts)


def encode_page(
    planes: Sequence[Image.Image], options: PageOptions, *, first: bool, last: bool
) -> bytes:
    """One page: control codes, raster lines, FF (or Ctrl-Z when `last`).

    `planes` are mode "1" images (black = ink) of the label's printable width (twice that at
    600 dpi): one for black, or black and red on two-colour tape. Raises ValueError for a page
    that does not fit the media.
    """
    label, model = options.label, options.model
    high = options.high_resolution
    width = label.printable_width * (2 if high else 1)
    if not planes or len(planes) > 2:
        raise ValueError(f"a page has one or two colour planes, not {len(planes)}")
    two_colour = len(planes) == 2
    if two_colour and not (label.two_colour and model.two_colour):
        raise ValueError("two-colour pages need 62red tape on a QL-800, QL-810W or QL-820NWB")
    if high and (two_colour or not model.high_resolution):
        raise ValueError(f"600 dpi prints one colour, on models with ESC i K ({model.name}: no)")
    height = planes[0].height
    for plane in planes:
        if plane.size != (width, height):
            raise ValueError(
                f"the page is {plane.width}x{plane.height} dots; {label.describe()} "
                f"takes {width} dots across"
            )
    if high:
        planes = [_halve_width(plane) for plane in planes]
    lines = [_head_lines(plane, label, model) for plane in planes]
    count = height
    if label.continuous:
        limit = MAX_CONTINUOUS_DOTS * (2 if options.high_resolution else 1)
        if count > limit:
            raise ValueError(f"the page is {count} dots long; continuous tape takes {limit}")
        minimum = MIN_CONTINUOUS_DOTS * (2 if options.high_resolution else 1)
        if count < minimum:
            # The printer refuses shorter pages: pad the end with blank lines.
            blank = bytes(model.line_bytes)
            lines = [plane_lines + [blank] * (minimum - count) for plane_lines in lines]
            count = minimum
    compress = options.compress and model.compression
    parts = [_control_codes(options, count, first=first, two_colour=two_colour, compress=compress)]
    if two_colour:
        for black, red in zip(lines[0], lines[1], strict=True):
            parts.append(_two_colour_line(1, black, compress))
            parts.append(_two_colour_line(2, red, compress))
    else:
        zero = compress and model.zero_line
        # Labels repeat lines (barcode bars, text rows): each distinct line is packed once.
        packed: dict[bytes, bytes] = {}
        for line in lines[0]:
            command = packed.get(line)
            if command is None:
                command = packed[line] = _line(line, compress, zero)
            parts.append(command)
    parts.append(PRINT_LAST_PAGE if last else PRINT_PAGE)
    return b"".join(parts)


def _control_codes(
    options: PageOptions, raster_lines: int, *, first: bool, two_colour: bool, compress: bool
) -> bytes:
    label, model = options.label, options.model
    out = bytearray()
    if model.control_codes:
        out += RASTER_MODE
    if model.notification_mode:
        out += NOTIFY_ON
    out += print_information(label, raster_lines, first=first, quality=options.quality)
    if model.cutter:
        out += bytes((ESC, ord("i"), ord("M"), AUTO_CUT if options.auto_cut else 0))
        if model.control_codes and options.auto_cut:
            out += bytes((ESC, ord("i"), ord("A"), max(1, min(255, options.cut_every))))
    if model.control_codes:
        expanded = 0
        if options.auto_cut and model.cutter:
            expanded |= CUT_AT_END
        if options.high_resolution:
            expanded |= HIGH_RESOLUTION
        if two_colour:
            expanded |= TWO_COLOUR
        out += bytes((ESC, ord("i"), ord("K"), expanded))
    margin = CONTINUOUS_MARGIN_DOTS if label.continuous else 0
    if options.high_resolution:
        margin *= 2  # the feed is counted in 600 dpi lines
    out += bytes((ESC, ord("i"), ord("d"))) + margin.to_bytes(2, "little")
    if compress:
        out += bytes((ord("M"), COMPRESSION_TIFF))
    return bytes(out)


def print_information(label: Label, raster_lines: int, *, first: bool, quality: bool) -> bytes:
    """ESC i z: media type, width, length (die-cut) and the page's raster line count."""
    flags = RECOVERY_ON | VALID_KIND | VALID_WIDTH
    if not label.continuous:
        flags |= VALID_LENGTH
    if quality:
        flags |= QUALITY_FIRST
    kind = MEDIA_CONTINUOUS if label.continuous else MEDIA_DIE_CUT
    return (
        b"\x1biz"
        + bytes((flags, kind, label.width_mm, label.printer_length_mm))
        + raster_lines.to_bytes(4, "little")
        + bytes((0 if first else 1, 0))
    )


def _halve_width(plane: Image.Image) -> Image.Image:
    """A 600 dpi plane on the 300 dpi head: a dot where either of its two columns has ink."""
    grey = plane.convert("L").resize((plane.width // 2, plane.height), Image.Resampling.BOX)
    return grey.point(lambda value: 255 if value == 255 else 0, "1")


def _head_lines(plane: Image.Image, label: Label, model: Model) -> list[bytes]:
    """The plane on the whole head, mirrored, as raster lines (1 bit = a dot of ink)."""
    head = Image.new("1", (model.head_dots, plane.height), 255)
    head.paste(plane.convert("1").transpose(Image.Transpose.FLIP_LEFT_RIGHT), (label.offset, 0))
    ink = ImageChops.invert(head).tobytes()
    stride = model.line_bytes
    return [ink[i : i + stride] for i in range(0, len(ink), stride)]


def _line(data: bytes, compress: bool, zero: bool) -> bytes:
    if not compress:
        return b"g\x00" + bytes((len(data),)) + data
    if zero and not any(data):
        return ZERO_LINE
    packed = packbits(data)
    return b"g\x00" + bytes((len(packed),)) + packed


def _two_colour_line(colour: int, data: bytes, compress: bool) -> bytes:
    payload = packbits(data) if compress else data
    return b"w" + bytes((colour, len(payload))) + payload


def packbits(data: bytes) -> bytes:
    """TIFF PackBits: runs of 3-128 equal bytes as (257 - n, byte), the rest as (n - 1, bytes)."""
    out = bytearray()
    pos = 0
    for run in _RUN.finditer(data):
        _literal(out, data[pos : run.start()])
        length, byte = run.end() - run.start(), data[run.start()]
        while length >= 2:
            count = min(length, 128)
            out += bytes((257 - count, byte))
            length -= count
        _literal(out, data[run.end() - length : run.end()])
        pos = run.end()
    _literal(out, data[pos:])
    return bytes(out)


# Three or more equal bytes: shorter runs cost as much as they save.
_RUN = re.compile(rb"(.)\1{2,}", re.DOTALL)


def _literal(out: bytearray, chunk: bytes) -> None:
    for start in range(0, len(chunk), 128):
        part = chunk[start : start + 128]
        out += bytes((len(part) - 1,)) + part


def unpackbits(data: bytes) -> bytes:
    """The inverse of `packbits`; ValueError if a count runs past the end."""
    out = bytearray()
    i = 0
    while i < len(data):
        header = data[i]
        i += 1
        if header < 128:
            count = header + 1
            if i + count > len(data):
                raise ValueError("PackBits literal runs past the end of the line")
            out += data[i : i + count]
            i += count
        elif header > 128:
            if i >= len(data):
                raise ValueError("PackBits run without its byte")
            out += bytes((data[i],)) * (257 - header)
            i += 1
        # 128 (0x80) is a no-op in PackBits.
    return bytes(out)


class StatusType(enum.IntEnum):
    """Byte 18 of a status frame: why the printer sent it."""

    REPLY = 0x00
    PRINTING_COMPLETED = 0x01
    ERROR = 0x02
    TURNED_OFF = 0x04
    NOTIFICATION = 0x05
    PHASE_CHANGE = 0x06


class Phase(enum.IntEnum):
    """Byte 19: what the printer is doing."""

    RECEIVING = 0x00
    PRINTING = 0x01


class Notification(enum.IntEnum):
    """Byte 22: a notification's subject."""

    NONE = 0x00
    COVER_OPEN = 0x01
    COVER_CLOSED = 0x02
    COOLING_STARTED = 0x03
    COOLING_FINISHED = 0x04


class Error1(enum.IntFlag):
    """Byte 8: error information 1."""

    NO_MEDIA = 0x01
    END_OF_MEDIA = 0x02
    CUTTER_JAM = 0x04
    WEAK_BATTERIES = 0x08
    PRINTER_IN_USE = 0x10
    TURNED_OFF = 0x20
    HIGH_VOLTAGE_ADAPTER = 0x40
    FAN_MOTOR = 0x80


class Error2(enum.IntFlag):
    """Byte 9: error information 2 (bit 5, 0x20, is "not used" in every QL reference)."""

    REPLACE_MEDIA = 0x01
    EXPANSION_BUFFER_FULL = 0x02
    COMMUNICATION = 0x04
    COMMUNICATION_BUFFER_FULL = 0x08
    COVER_OPEN = 0x10
    FEED = 0x40
    SYSTEM = 0x80


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """One 32-byte status frame, decoded."""

    model_code: int
    errors1: Error1
    errors2: Error2
    media_width_mm: int
    media_type: int
    media_length_mm: int
    mode: int
    status_type: int
    phase: int
    phase_number: int
    notification: int

    @property
    def media_kind(self) -> str | None:
        """The media loaded: "continuous", "die-cut", or None (no media, or one unknown)."""
        if self.media_type in (0x0A, 0x4A):
            return "continuous"
        if self.media_type in (0x0B, 0x4B):
            return "die-cut"
        return None


def decode_status(frame: bytes) -> StatusFrame:
    """Decode a 32-byte status frame; ValueError when it is not one."""
    if len(frame) != STATUS_SIZE or not frame.startswith(STATUS_HEADER):
        raise ValueError(f"not a QL status frame: {frame[:8].hex(' ')}")
    return StatusFrame(
        model_code=frame[4],
        errors1=Error1(frame[8]),
        errors2=Error2(frame[9]),
        media_width_mm=frame[10],
        media_type=frame[11],
        mode=frame[15],
        media_length_mm=frame[17],
        status_type=frame[18],
        phase=frame[19],
        phase_number=int.from_bytes(frame[20:22], "big"),
        notification=frame[22],
    )


def encode_status(
    *,
    model_code: int,
    errors1: int = 0,
    errors2: int = 0,
    media_width_mm: int = 0,
    media_type: int = 0,
    media_length_mm: int = 0,
    mode: int = 0,
    status_type: int = StatusType.REPLY,
    phase: int = Phase.RECEIVING,
    notification: int = Notification.NONE,
) -> bytes:
    """A status frame as the printer sends it (for the simulator)."""
    frame = bytearray(STATUS_SIZE)
    frame[0:3] = STATUS_HEADER
    frame[3] = 0x34  # series code "4"
    frame[4] = model_code
    frame[5] = frame[6] = 0x30
    frame[8] = errors1
    frame[9] = errors2
    frame[10] = media_width_mm
    frame[11] = media_type
    frame[14] = 0x3F
    frame[15] = mode
    frame[17] = media_length_mm
    frame[18] = status_type
    frame[19] = phase
    frame[22] = notification
    return bytes(frame)
