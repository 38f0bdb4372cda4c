"""Zebra ZPL II bytes: 1-bit pages to `^XA...^XZ` formats, `^GF` graphics to pages, replies.

Pure functions, no I/O. Pages are Pillow mode "1" images with black = 0; ZPL graphics are
1 = black, most significant bit = leftmost dot, rows padded to whole bytes with 0 (white).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageChops

HOST_STATUS_QUERY = b"~HS"
EXTENDED_STATUS_QUERY = b"~HQES"
HOST_IDENTIFICATION_QUERY = b"~HI"
STX = b"\x02"
ETX = b"\x03"
# ^GF counts are limited to 99999 bytes; taller pages are sent as several graphics one below
# the other (a 4x6 inch label at 300 dpi is 270000 bytes).
MAX_GRAPHIC_BYTES = 99_999
MAX_COPIES = 99_999_999
# ~SD darkness 00..30; ^PR print speed in inches per second.
DARKNESS_RANGE = range(0, 31)
SPEED_RANGE = range(1, 15)
# Dots per millimetre in ~HI to dots per inch as printers are sold.
DPMM_TO_DPI = {6: 152, 8: 203, 12: 300, 24: 600}


class ZplError(enum.IntFlag):
    """`~HQES` error bits (group 1; group 2 is shifted up by 32)."""

    MEDIA_OUT = 0x1
    RIBBON_OUT = 0x2
    HEAD_OPEN = 0x4
    CUTTER_FAULT = 0x8
    PRINTHEAD_OVER_TEMPERATURE = 0x10
    MOTOR_OVER_TEMPERATURE = 0x20
    BAD_PRINTHEAD_ELEMENT = 0x40
    PRINTHEAD_DETECTION_ERROR = 0x80
    INVALID_FIRMWARE_CONFIG = 0x100
    PRINTHEAD_THERMISTOR_OPEN = 0x200
    PAPER_JAM_DURING_RETRACT = 0x1000
    PRESENTER_NOT_RUNNING = 0x2000
    PAPER_FEED_ERROR = 0x4000
    CLEAR_PAPER_PATH_FAILED = 0x8000
    PAUSED = 0x10000
    RETRACT_TIMEOUT = 0x20000
    BLACK_MARK_CALIBRATE_ERROR = 0x40000
    BLACK_MARK_NOT_FOUND = 0x80000


class ZplWarning(enum.IntFlag):
    """`~HQES` warning bits (the sensor bits above 0x8 are peel and presenter states)."""

    CALIBRATE_MEDIA = 0x1
    CLEAN_PRINTHEAD = 0x2
    REPLACE_PRINTHEAD = 0x4
    PAPER_NEAR_END = 0x8


@dataclass(frozen=True, slots=True)
class ZplHostStatus:
    """The three `~HS` strings, field by field."""

    comm_settings: int
    paper_out: bool
    paused: bool
    label_length_dots: int
    formats_in_buffer: int
    buffer_full: bool
    diagnostic_mode: bool
    partial_format: bool
    corrupt_ram: bool
    under_temperature: bool
    over_temperature: bool
    function_settings: int
    head_up: bool
    ribbon_out: bool
    thermal_transfer: bool
    print_mode: int
    print_width_mode: int
    label_waiting: bool
    labels_remaining: int
    graphics_stored: int
    password: str
    static_ram: bool


@dataclass(frozen=True, slots=True)
class ZplExtendedStatus:
    """`~HQES`: error and warning flags and bit masks."""

    error_present: bool
    errors: ZplError
    warning_present: bool
    warnings: ZplWarning


@dataclass(frozen=True, slots=True)
class ZplIdentification:
    """`~HI`: model, firmware, resolution, memory and option letters."""

    model: str
    firmware: str
    dpmm: int
    memory_kb: int
    options: tuple[str, ...]

    @property
    def dpi(self) -> int:
        """The resolution in dots per inch (203 for 8 dpmm, 300 for 12 dpmm...)."""
        return DPMM_TO_DPI.get(self.dpmm, round(self.dpmm * 25.4))


@dataclass(frozen=True, slots=True)
class GraphicHeader:
    """`^GFa,b,c,d`: compression, bytes sent, bytes of the bitmap, bytes per row."""

    compression: Literal["A", "B", "C"]
    binary_byte_count: int
    graphic_field_count: int
    bytes_per_row: int

    @property
    def rows(self) -> int:
        """Dot rows of the bitmap."""
        return self.graphic_field_count // self.bytes_per_row


def encode_job(
    pages: Sequence[Image.Image],
    copies: int = 1,
    darkness: int | None = None,
    speed: int | None = None,
    init: str = "",
) -> bytes:
    """One format per page, each printed `copies` times (`^PQ`)."""
    if not pages:
        raise ValueError("a job needs at least one page")
    return b"".join(encode_page(page, copies, darkness, speed, init) for page in pages)


def encode_page(
    page: Image.Image,
    copies: int = 1,
    darkness: int | None = None,
    speed: int | None = None,
    init: str = "",
) -> bytes:
    """Encode `^XA`, init, `^PW`/`^LL`/`^LH`, settings, the page as `^GFA` fields, `^PQ`, `^XZ`.

    `init` is raw ZPL placed right after `^XA` (media settings such as `^MNY^MTD`).
    """
    if page.mode != "1":
        raise ValueError(f"pages must be mode '1' images, not {page.mode!r}")
    if not 1 <= copies <= MAX_COPIES:
        raise ValueError(f"copies must be 1..{MAX_COPIES}, not {copies}")
    if darkness is not None and darkness not in DARKNESS_RANGE:
        raise ValueError(f"darkness must be 0..30, not {darkness}")
    if speed is not None and speed not in SPEED_RANGE:
        raise ValueError(f"speed must be 1..14 inches per second, not {speed}")
    width, height = page.size
    if width < 1 or height < 1:
        raise ValueError(f"page has no dots: {width}x{height}")
    row_bytes = (width + 7) // 8
    if row_bytes > MAX_GRAPHIC_BYTES:
        raise ValueError(f"page is {width} dots wide, too wide for one ^GF row")
    parts = [f"^XA{init}^PW{width}^LL{height}^LH0,0"]
    if darkness is not None:
        parts.append(f"~SD{darkness:02d}")
    if speed is not None:
        parts.append(f"^PR{speed}")
    # Pillow's mode "1" is 0 = black; inverting first makes 1 = black and keeps row padding at 0.
    data = ImageChops.invert(page).tobytes()
    band = MAX_GRAPHIC_BYTES // row_bytes
    for top in range(0, height, band):
        chunk = data[top * row_bytes : min(top + band, height) * row_bytes]
        count = len(chunk)
        hexdata = compress_graphic(chunk, row_bytes)
        parts.append(f"^FO0,{top}^GFA,{count},{count},{row_bytes},{hexdata}^FS")
    parts.append(f"^PQ{copies}^XZ")
    return "".join(parts).encode("ascii")


def compress_graphic(data: bytes, bytes_per_row: int) -> str:
    """Encode ASCII hex compressed: G..Y/g..z repeat counts, `,` `!` row fills, `:` repeat."""
    hexdata = data.hex().upper()
    width = 2 * bytes_per_row
    out = []
    previous = None
    for start in range(0, len(data), bytes_per_row):
        row = data[start : start + bytes_per_row]
        if row == previous:
            out.append(":")
            continue
        previous = row
        out.append(_compress_row(hexdata[2 * start : 2 * start + width], width))
    return "".join(out)


def parse_graphic_header(params: bytes) -> GraphicHeader:
    """Parse `A,b,c,d` (the text between `^GF` and the data); ValueError if malformed."""
    fields = params.split(b",")
    if len(fields) != 4:
        raise ValueError(f"^GF needs 4 parameters before the data, got {params!r}")
    kind = fields[0].strip().upper() or b"A"
    if kind not in (b"A", b"B", b"C"):
        raise ValueError(f"unknown ^GF compression {kind!r}")
    try:
        counts = [int(field) for field in fields[1:]]
    except ValueError:
        raise ValueError(f"^GF counts must be integers, got {params!r}") from None
    if min(counts) < 1 or counts[1] < counts[2]:
        raise ValueError(f"^GF counts must be positive and hold one row, got {params!r}")
    compression: Literal["A", "B", "C"] = "A" if kind == b"A" else "B" if kind == b"B" else "C"
    return GraphicHeader(compression, counts[0], counts[1], counts[2])


def decode_graphic(header: GraphicHeader, data: bytes) -> Image.Image:
    """Decode a `^GF` bitmap (A: hex, compressed or not, :B64:/:Z64:; B: binary) to a page.

    The image is `bytes_per_row * 8` dots wide. Like a printer, short data is padded with white
    and data beyond the count is ignored. ValueError on a malformed stream or for type C.
    """
    total = header.rows * header.bytes_per_row
    if header.compression == "B":
        bitmap = data[: header.binary_byte_count]
    elif header.compression == "A":
        stripped = data.strip()
        if stripped[:5] in (b":B64:", b":Z64:"):
            bitmap = _decode_base64(stripped, total)
        else:
            bitmap = decompress_graphic(stripped, header.bytes_per_row, max_bytes=total)
    else:
        raise ValueError("^GFC compressed binary is not supported")
    bitmap = bitmap[:total].ljust(total, b"\x00")
    ink = Image.frombytes("1", (header.bytes_per_row * 8, header.rows), bitmap)
    return ImageChops.invert(ink)


def decode_graphic_field(field: bytes) -> Image.Image:
    """Decode `^GFA,b,c,d,data` (the leading `^GF` optional) to a mode "1" page."""
    body = field.removeprefix(b"^GF").removeprefix(b"^gf")
    parts = body.split(b",", 4)
    if len(parts) != 5:
        raise ValueError(f"^GF needs 4 parameters and data, got {field[:40]!r}")
    return decode_graphic(parse_graphic_header(b",".join(parts[:4])), parts[4])


def decompress_graphic(data: bytes, bytes_per_row: int, max_bytes: int | None = None) -> bytes:
    """Decode compressed (or plain) ASCII hex to bitmap bytes; ValueError on a stray character.

    Decoding stops after `max_bytes` bytes, so a hostile run count cannot exhaust memory.
    """
    width = 2 * bytes_per_row
    limit = None if max_bytes is None else 2 * max_bytes
    out = bytearray()
    for match in _TOKEN.finditer(data):
        if limit is not None and len(out) >= limit:
            break
        counts, digit, literal, fill, bad = match.groups()
        if digit is not None:
            repeat = sum(_COUNT_VALUES[letter] for letter in counts)
            if limit is not None:
                repeat = min(repeat, limit - len(out))
            out += digit * repeat
        elif literal is not None:
            out += literal
        elif fill == b":":
            if len(out) % width or not out:
                raise ValueError("':' (repeat the previous row) must start a row after the first")
            out += out[-width:]
        elif fill is not None:
            # At a row boundary `,` and `!` fill a whole row, otherwise the rest of the row.
            pad = width - len(out) % width
            out += (b"0" if fill == b"," else b"F") * pad
        elif bad is not None:
            raise ValueError(f"unexpected {bad!r} in ^GF data at offset {match.start()}")
    if len(out) % 2:
        out += b"0"
    return bytes.fromhex(out.decode("ascii"))


def parse_host_status(reply: bytes) -> ZplHostStatus:
    """Parse the `~HS` reply (three STX...ETX strings); ValueError if malformed."""
    strings = _framed_strings(reply)
    if len(strings) != 3:
        raise ValueError(f"~HS reply has {len(strings)} STX/ETX strings, expected 3")
    first, second, third = (s.split(",") for s in strings)
    if len(first) < 12 or len(second) < 11 or len(third) < 2:
        raise ValueError(f"~HS reply has too few fields: {reply!r}")
    try:
        one = [int(v) for v in first[:12]]
        two = [int(v) for v in second[:11]]
        static_ram = int(third[1])
    except ValueError:
        raise ValueError(f"~HS reply has a non-numeric field: {reply!r}") from None
    return ZplHostStatus(
        comm_settings=one[0],
        paper_out=bool(one[1]),
        paused=bool(one[2]),
        label_length_dots=one[3],
        formats_in_buffer=one[4],
        buffer_full=bool(one[5]),
        diagnostic_mode=bool(one[6]),
        partial_format=bool(one[7]),
        corrupt_ram=bool(one[9]),
        under_temperature=bool(one[10]),
        over_temperature=bool(one[11]),
        function_settings=two[0],
        head_up=bool(two[2]),
        ribbon_out=bool(two[3]),
        thermal_transfer=bool(two[4]),
        print_mode=two[5],
        print_width_mode=two[6],
        label_waiting=bool(two[7]),
        labels_remaining=two[8],
        graphics_stored=two[10],
        password=third[0].strip(),
        static_ram=bool(static_ram),
    )


def parse_extended_status(reply: bytes) -> ZplExtendedStatus:
    """Parse `~HQES` (`ERRORS: f gggggggg hhhhhhhh`, same for WARNINGS); ValueError if malformed."""
    text = reply.decode("ascii", "replace")
    found = {}
    for name in ("ERRORS", "WARNINGS"):
        match = re.search(rf"{name}:\s*([01])\s+([0-9A-Fa-f]{{8}})\s+([0-9A-Fa-f]{{8}})", text)
        if match is None:
            raise ValueError(f"~HQES reply has no valid {name} line: {reply!r}")
        found[name] = (match[1] == "1", int(match[2], 16) << 32 | int(match[3], 16))
    return ZplExtendedStatus(
        error_present=found["ERRORS"][0],
        errors=ZplError(found["ERRORS"][1]),
        warning_present=found["WARNINGS"][0],
        warnings=ZplWarning(found["WARNINGS"][1]),
    )


def parse_host_identification(reply: bytes) -> ZplIdentification:
    """Parse `~HI` (`STX model,version,dpmm,memory[,options] ETX`); ValueError if malformed."""
    strings = _framed_strings(reply)
    if len(strings) != 1:
        raise ValueError(f"~HI reply must be one STX/ETX string: {reply!r}")
    fields = [f.strip() for f in strings[0].split(",")]
    memory = re.fullmatch(r"(\d+)\s*KB?", fields[3], re.IGNORECASE) if len(fields) >= 4 else None
    if memory is None or not fields[0] or not fields[2].isdigit():
        raise ValueError(f"~HI reply is not model,version,dpmm,memory: {reply!r}")
    return ZplIdentification(
        model=fields[0],
        firmware=fields[1],
        dpmm=int(fields[2]),
        memory_kb=int(memory[1]),
        options=tuple(fields[4:]),
    )


def sgd_getvar(name: str) -> bytes:
    """Build the Set-Get-Do request that reads one setting, e.g. `odometer.total_label_count`."""
    if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        raise ValueError(f"not an SGD setting name: {name!r}")
    return f'! U1 getvar "{name}"\r\n'.encode("ascii")


def parse_sgd_reply(reply: bytes) -> str:
    """Return the quoted value of an SGD getvar reply (a printer sends "?" for an unknown name)."""
    text = reply.strip().decode("utf-8", "replace")
    if len(text) < 2 or text[0] != '"' or text[-1] != '"' or '"' in text[1:-1]:
        raise ValueError(f"SGD reply is not one quoted value: {reply!r}")
    return text[1:-1]


@functools.cache
def _repeat_prefix(count: int) -> str:
    # Largest letters first: z = 400, g..y = 20..380, G..Y = 1..19 ("zzhM" = 847).
    prefix = "z" * (count // 400)
    count %= 400
    if count >= 20:
        prefix += chr(ord("f") + count // 20)
    if count % 20:
        prefix += chr(ord("F") + count % 20)
    return prefix


def _run(match: re.Match[str]) -> str:
    return _repeat_prefix(match.end() - match.start()) + match[1]


# Runs of 3 or more; a run of 2 ("AA") is no shorter as "HA".
_RUN = re.compile(r"(.)\1{2,}")


def _compress_row(row: str, width: int) -> str:
    # A trailing run of 00 or FF bytes becomes "," or "!". The fill starts on a byte boundary,
    # as Zebra's guide asks ("FFF0," for FFF00000), so an odd leftover digit is kept.
    for digit, fill in (("0", ","), ("F", "!")):
        body = row.rstrip(digit)
        if width - len(body) >= 2:
            if len(body) % 2:
                body += digit
            return _RUN.sub(_run, body) + fill
    return _RUN.sub(_run, row)


_COUNT_VALUES = {
    **{ord("F") + n: n for n in range(1, 20)},
    **{ord("f") + n: 20 * n for n in range(1, 21)},
}
_TOKEN = re.compile(
    rb"([G-Yg-z]+)([0-9A-Fa-f])|([0-9A-Fa-f]+)|([,!:])|\s+|(.)",
    re.DOTALL,
)


def _decode_base64(data: bytes, limit: int) -> bytes:
    # :B64:data:crc or :Z64:data:crc; the CRC is not checked (the payload is checked by size).
    kind, _, rest = data[1:].partition(b":")
    payload = rest.rpartition(b":")[0] or rest
    try:
        raw = base64.b64decode(payload, validate=False)
        # Inflate no more than the bitmap needs, so a deflate bomb cannot exhaust memory.
        return zlib.decompressobj().decompress(raw, limit) if kind == b"Z64" else raw
    except (binascii.Error, zlib.error) as err:
        raise ValueError(f"bad :{kind.decode()}: graphic data") from err


def _framed_strings(reply: bytes) -> list[str]:
    text = reply.decode("ascii", "replace")
    return re.findall(r"\x02([^\x02\x03]*)\x03", text)
