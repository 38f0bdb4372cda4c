from __future__ import annotations

import base64
import random
import re
import zlib

import pytest
from PIL import Image, ImageChops

from drivers.zpl import protocol as zpl_protocol
from drivers.zpl.protocol import (
    GraphicHeader,
    ZplError,
    ZplWarning,
    decode_graphic,
    decode_graphic_field,
    decompress_graphic,
    encode_job,
    encode_page,
    parse_extended_status,
    parse_host_identification,
    parse_host_status,
    parse_sgd_reply,
    sgd_getvar,
)


def page_16x3() -> Image.Image:
    """Row 0: dots 0-7 black; row 1: every even dot black; row 2: only dot 15 black."""
    page = Image.new("1", (16, 3), 255)
    for x in range(8):
        page.putpixel((x, 0), 0)
    for x in range(0, 16, 2):
        page.putpixel((x, 1), 0)
    page.putpixel((15, 2), 0)
    return page


def page_from_ink(width: int, rows: list[bytes]) -> Image.Image:
    """A page whose ZPL bitmap (1 = black) is exactly `rows`."""
    ink = Image.frombytes("1", (width, len(rows)), b"".join(rows))
    return ImageChops.invert(ink)


def graphic_data(job: bytes) -> list[bytes]:
    return re.findall(rb"\^GFA,\d+,\d+,\d+,([^^]*)\^FS", job)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


# Rows FF00 / AAAA / 0001 (1 = black): "FF," fills the row with 0, "JA" is four As, "I0" three 0s.
def test_golden_page() -> None:
    expected = b"^XA^PW16^LL3^LH0,0^FO0,0^GFA,6,6,2,FF,JAI01^FS^PQ1^XZ"
    assert encode_page(page_16x3()) == expected


def test_golden_page_with_settings() -> None:
    expected = b"^XA^MNY^PW16^LL3^LH0,0~SD15^PR4^FO0,0^GFA,6,6,2,FF,JAI01^FS^PQ3^XZ"
    assert encode_page(page_16x3(), copies=3, darkness=15, speed=4, init="^MNY") == expected


def test_golden_blank_black_and_repeated_rows() -> None:
    page = page_from_ink(8, [b"\x00", b"\xff", b"\xff", b"\x00"])
    assert graphic_data(encode_page(page)) == [b",!:,"]


@pytest.mark.parametrize(
    ("width", "rows", "expected"),
    [
        # 1000 As: z + z (400 each) + p (200).
        (4000, [b"\xaa" * 500], b"zzpA"),
        # 847 As then a 5: z z (800) h (40) M (7).
        (3392, [b"\xaa" * 423 + b"\xa5"], b"zzhMA5"),
        # FFF then five 0s: the fill starts on a byte boundary, so one 0 stays ("FFF0,").
        (32, [b"\xff\xf0\x00\x00"], b"IF0,"),
        # 0 then seven Fs: "0F" and "!" fills the rest with F.
        (32, [b"\x0f\xff\xff\xff"], b"0F!"),
        # Runs of two are left alone: "HA" is no shorter than "AA".
        (16, [b"\xaa\x55"], b"AA55"),
        # Only a row equal to the one just before becomes ":".
        (8, [b"\x81", b"\x18", b"\x81"], b"81" + b"18" + b"81"),
    ],
)
def test_golden_compression(width: int, rows: list[bytes], expected: bytes) -> None:
    assert graphic_data(encode_page(page_from_ink(width, rows))) == [expected]


def test_job_is_one_format_per_page_with_copies_each() -> None:
    a = page_16x3()
    b = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert encode_job([a, b], copies=2) == encode_page(a, 2) + encode_page(b, 2)


def test_tall_page_is_split_into_graphics_under_the_zpl_count_limit() -> None:
    page = random_page(1200, 1800, seed=9)  # 4x6 inch at 300 dpi: 270000 bytes
    job = encode_page(page)
    fields = re.findall(rb"\^FO0,(\d+)\^GFA,(\d+),(\d+),150,", job)
    assert [(int(y), int(b)) for y, b, _ in fields] == [(0, 99900), (666, 99900), (1332, 70200)]
    canvas = Image.new("1", (1200, 1800), 255)
    for match in re.finditer(rb"\^FO0,(\d+)(\^GFA[^^]*)\^FS", job):
        graphic = decode_graphic_field(match[2])
        canvas.paste(graphic.crop((0, 0, 1200, graphic.height)), (0, int(match[1])))
    assert same_pixels(canvas, page)


def random_page(width: int, height: int, seed: int, density: float = 0.5) -> Image.Image:
    rng = random.Random(seed)
    page = Image.new("1", (width, height), 255)
    page.putdata([0 if rng.random() < density else 255 for _ in range(width * height)])
    return page


def runs_page(width: int, height: int, seed: int) -> Image.Image:
    """Mostly white with black bars and repeated rows, like a label with text and barcodes."""
    rng = random.Random(seed)
    rows: list[list[int]] = []
    for _ in range(height):
        if rows and rng.random() < 0.4:
            rows.append(rows[-1])
            continue
        row = [255] * width
        for _ in range(rng.randrange(0, 6)):
            start = rng.randrange(width)
            row[start : start + rng.randrange(1, 200)] = [0] * len(row[start : start + 200])
        rows.append(row[:width])
    page = Image.new("1", (width, height))
    page.putdata([v for row in rows for v in row])
    return page


@pytest.mark.parametrize(
    "page",
    [
        random_page(732, 342, seed=1),
        random_page(13, 7, seed=2),
        random_page(203, 50, seed=3, density=0.05),
        random_page(203, 50, seed=4, density=0.95),
        runs_page(732, 342, seed=5),
        runs_page(1201, 97, seed=6),
        Image.new("1", (732, 342), 255),
        Image.new("1", (732, 342), 0),
        Image.new("1", (5, 1), 0),
    ],
    ids=[
        "random",
        "random-odd",
        "sparse",
        "dense",
        "label-like",
        "label-like-odd",
        "white",
        "black",
        "tiny",
    ],
)
def test_compression_round_trip(page: Image.Image) -> None:
    (field,) = re.findall(rb"\^GFA[^^]*", encode_page(page))
    decoded = decode_graphic_field(field)
    assert decoded.width == (page.width + 7) // 8 * 8
    assert same_pixels(decoded.crop((0, 0, page.width, page.height)), page)
    # The padding dots right of the page are white.
    padding = decoded.crop((page.width, 0, decoded.width, decoded.height))
    assert padding.width == 0 or padding.getextrema() == (255, 255)


def test_compression_shrinks_label_like_pages() -> None:
    page = runs_page(732, 342, seed=7)
    (data,) = graphic_data(encode_page(page))
    assert len(data) < 92 * 342  # less than half of plain hex


@pytest.mark.parametrize(
    ("data", "bytes_per_row", "expected"),
    [
        # Zebra's examples: M = 7, h = 40, vM = Mv = 327 repeats of the next digit.
        (b"M6", 4, bytes.fromhex("66666660")),
        (b"hB", 20, b"\xbb" * 20),
        (b"vMB", 164, b"\xbb" * 163 + b"\xb0"),
        (b"MvB", 164, b"\xbb" * 163 + b"\xb0"),
        # "," fills the rest of the row with 0; at the start of a row it fills the whole row.
        (b"FF,,", 2, bytes.fromhex("ff000000")),
        (b"F,", 2, bytes.fromhex("f000")),
        (b"0F!", 4, bytes.fromhex("0fffffff")),
        (b"81:", 1, bytes.fromhex("8181")),
        # Plain hex across rows, line breaks ignored, lower case accepted.
        (b"FFAA\r\n00ff", 2, bytes.fromhex("ffaa00ff")),
    ],
)
def test_decompress_examples(data: bytes, bytes_per_row: int, expected: bytes) -> None:
    assert decompress_graphic(data, bytes_per_row) == expected


@pytest.mark.parametrize("data", [b":FF", b"F:F", b"FF^", b"FFQ", b"FF@"])
def test_malformed_graphic_data_raises(data: bytes) -> None:
    with pytest.raises(ValueError):
        decompress_graphic(data, 1)


def test_hostile_run_count_stops_at_the_declared_size() -> None:
    header = GraphicHeader("A", 4, 4, 2)
    image = decode_graphic(header, b"z" * 100_000 + b"F")
    assert image.size == (16, 2)
    assert image.getextrema() == (0, 0)


def test_binary_graphic_is_taken_by_count_even_with_caret_and_tilde() -> None:
    header = zpl_protocol.parse_graphic_header(b"B,4,4,2")
    image = decode_graphic(header, b"^~\x00\xff")
    assert image.size == (16, 2)
    ink = ImageChops.invert(image).tobytes()
    assert ink == b"^~\x00\xff"


@pytest.mark.parametrize("kind", ["B64", "Z64"])
def test_base64_graphics(kind: str) -> None:
    # Zebra's Z64 is zlib (deflate with header), then base64, then ":" and a CRC.
    raw = bytes(range(32))
    payload = zlib.compress(raw) if kind == "Z64" else raw
    data = f":{kind}:".encode() + base64.b64encode(payload) + b":1A2B"
    image = decode_graphic(GraphicHeader("A", 32, 32, 4), data)
    assert ImageChops.invert(image).tobytes() == raw


def test_short_graphic_is_padded_with_white() -> None:
    image = decode_graphic_field(b"^GFA,4,4,2,FF")
    assert ImageChops.invert(image).tobytes() == bytes.fromhex("ff000000")


@pytest.mark.parametrize(
    "params", [b"A,1,1", b"X,1,1,1", b"A,one,1,1", b"A,0,0,0", b"B,4,4,-2", b"A,4,4,8"]
)
def test_bad_graphic_header_raises(params: bytes) -> None:
    with pytest.raises(ValueError):
        zpl_protocol.parse_graphic_header(params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"copies": 0}, "copies"),
        ({"darkness": 31}, "darkness"),
        ({"speed": 0}, "speed"),
        ({"speed": 15}, "speed"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_page(page_16x3(), **kwargs)  # type: ignore[arg-type]


def test_pages_must_be_one_bit() -> None:
    with pytest.raises(ValueError, match="mode"):
        encode_page(Image.new("L", (8, 8)))
    with pytest.raises(ValueError, match="at least one page"):
        encode_job([])


IDLE_HS = (
    b"\x02030,0,0,0729,000,0,0,0,000,0,0,0\x03\r\n"
    b"\x02001,0,0,0,0,2,6,0,00000000,1,000\x03\r\n"
    b"\x021234,0\x03\r\n"
)


def hs_with(string: int, index: int, value: str) -> bytes:
    lines = [line[1:-3].decode().split(",") for line in IDLE_HS.splitlines(keepends=True)]
    lines[string][index] = value
    return b"".join(b"\x02" + ",".join(line).encode() + b"\x03\r\n" for line in lines)


BOOL_FIELDS = ["paper_out", "paused", "buffer_full", "diagnostic_mode", "partial_format"]
BOOL_FIELDS += ["corrupt_ram", "under_temperature", "over_temperature", "head_up", "ribbon_out"]
BOOL_FIELDS += ["thermal_transfer", "label_waiting", "static_ram"]


def test_idle_host_status() -> None:
    status = parse_host_status(IDLE_HS)
    assert not any(getattr(status, name) for name in BOOL_FIELDS)
    assert status.label_length_dots == 729
    assert status.formats_in_buffer == 0
    assert status.labels_remaining == 0
    assert status.print_mode == 2
    assert status.password == "1234"


@pytest.mark.parametrize(
    ("string", "index", "flag"),
    [
        (0, 1, "paper_out"),
        (0, 2, "paused"),
        (0, 5, "buffer_full"),
        (0, 6, "diagnostic_mode"),
        (0, 7, "partial_format"),
        (0, 9, "corrupt_ram"),
        (0, 10, "under_temperature"),
        (0, 11, "over_temperature"),
        (1, 2, "head_up"),
        (1, 3, "ribbon_out"),
        (1, 4, "thermal_transfer"),
        (1, 7, "label_waiting"),
        (2, 1, "static_ram"),
    ],
)
def test_each_host_status_flag(string: int, index: int, flag: str) -> None:
    status = parse_host_status(hs_with(string, index, "1"))
    assert {name for name in BOOL_FIELDS if getattr(status, name)} == {flag}


def test_host_status_numbers() -> None:
    reply = hs_with(0, 4, "003")
    status = parse_host_status(reply.replace(b"00000000", b"00000042").replace(b",2,6,", b",3,6,"))
    assert status.formats_in_buffer == 3
    assert status.labels_remaining == 42
    assert status.print_mode == 3


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        IDLE_HS[: IDLE_HS.rindex(b"\x02")],
        IDLE_HS.replace(b"0729", b"07x9"),
        IDLE_HS.replace(b",000,0,0,0\x03", b"\x03"),
        IDLE_HS.replace(b"\x03", b""),
    ],
    ids=["empty", "two-strings", "not-a-number", "too-few-fields", "no-etx"],
)
def test_malformed_host_status_raises(reply: bytes) -> None:
    with pytest.raises(ValueError):
        parse_host_status(reply)


def hqes(errors: str, warnings: str) -> bytes:
    return (
        b"\x02\r\n  PRINTER STATUS\r\n"
        + f"    ERRORS:         {errors}\r\n    WARNINGS:       {warnings}\r\n".encode()
        + b"\x03\r\n"
    )


def test_extended_status_zebra_example() -> None:
    status = parse_extended_status(hqes("1 00000000 00000005", "1 00000000 00000002"))
    assert status.error_present
    assert status.warning_present
    assert status.errors == ZplError.MEDIA_OUT | ZplError.HEAD_OPEN
    assert status.warnings == ZplWarning.CLEAN_PRINTHEAD


@pytest.mark.parametrize("flag", list(ZplError))
def test_each_error_bit(flag: ZplError) -> None:
    status = parse_extended_status(hqes(f"1 00000000 {int(flag):08X}", "0 00000000 00000000"))
    assert status.errors == flag
    assert status.warnings == ZplWarning(0)


@pytest.mark.parametrize("flag", list(ZplWarning))
def test_each_warning_bit(flag: ZplWarning) -> None:
    status = parse_extended_status(hqes("0 00000000 00000000", f"1 00000000 {int(flag):08X}"))
    assert status.warnings == flag
    assert status.errors == ZplError(0)


def test_group_two_bits_are_kept_above_bit_31() -> None:
    status = parse_extended_status(hqes("1 00000001 00000000", "0 00000000 00000000"))
    assert int(status.errors) == 1 << 32


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        hqes("1 00000000 00000005", "garbage"),
        hqes("1 0000000G 00000005", "0 00000000 00000000"),
        hqes("2 00000000 00000005", "0 00000000 00000000"),
    ],
)
def test_malformed_extended_status_raises(reply: bytes) -> None:
    with pytest.raises(ValueError):
        parse_extended_status(reply)


def test_host_identification() -> None:
    info = parse_host_identification(b"\x02ZTC ZD421-300dpi ZPL,V93.21.26Z,12,8192KB\x03\r\n")
    assert info.model == "ZTC ZD421-300dpi ZPL"
    assert info.firmware == "V93.21.26Z"
    assert info.dpmm == 12
    assert info.dpi == 300
    assert info.memory_kb == 8192
    assert info.options == ()


def test_host_identification_with_options() -> None:
    info = parse_host_identification(b"\x02ZM400-200dpi,V53.17.11Z,8,4096KB,C\x03")
    assert (info.dpi, info.options) == (203, ("C",))


@pytest.mark.parametrize(
    "reply",
    [b"", b"ZD421,V1,12,8192KB", b"\x02ZD421,V1,12\x03", b"\x02ZD421,V1,twelve,8192KB\x03"],
)
def test_malformed_host_identification_raises(reply: bytes) -> None:
    with pytest.raises(ValueError):
        parse_host_identification(reply)


def test_sgd_getvar_request() -> None:
    expected = b'! U1 getvar "odometer.total_label_count"\r\n'
    assert sgd_getvar("odometer.total_label_count") == expected
    with pytest.raises(ValueError):
        sgd_getvar('x" do "device.reset')


@pytest.mark.parametrize(
    ("reply", "value"),
    [(b'"1234"', "1234"), (b' "ZD421 Lab"\r\n', "ZD421 Lab"), (b'""', ""), (b'"?"', "?")],
)
def test_sgd_reply(reply: bytes, value: str) -> None:
    assert parse_sgd_reply(reply) == value


@pytest.mark.parametrize("reply", [b"", b"1234", b'"12', b'"a"b"', b'"'])
def test_malformed_sgd_reply_raises(reply: bytes) -> None:
    with pytest.raises(ValueError):
        parse_sgd_reply(reply)


def test_z64_bomb_inflates_only_what_the_bitmap_needs() -> None:
    data = b":Z64:" + base64.b64encode(zlib.compress(b"\xff" * 10_000_000)) + b":0000"
    image = decode_graphic(GraphicHeader("A", 8, 8, 2), data)
    assert image.size == (16, 4)
    assert image.getextrema() == (0, 0)
