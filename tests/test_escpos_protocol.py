from __future__ import annotations

import random
from dataclasses import fields

import pytest
from escpos.image import EscposImage
from PIL import Image

from drivers.escpos import protocol as escpos_protocol
from drivers.escpos.protocol import (
    STATUS_QUERIES,
    EscposStatus,
    decode_status,
    encode_job,
)

INIT = bytes.fromhex("1b40")


def page_16x3() -> Image.Image:
    """Row 0: dots 0-7 black; row 1: every even dot black; row 2: only dot 15 black."""
    page = Image.new("1", (16, 3), 255)
    for x in range(8):
        page.putpixel((x, 0), 0)
    for x in range(0, 16, 2):
        page.putpixel((x, 1), 0)
    page.putpixel((15, 2), 0)
    return page


def random_page(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    rows = (width + 7) // 8 * height
    return Image.frombytes("1", (width, height), rng.randbytes(rows))


# GS v 0, m = 0, x = 2 bytes, y = 3 rows, then rows FF 00 / AA AA / 00 01 (1 = dot, MSB left).
RASTER_16x3 = bytes.fromhex("1d7630 00 0200 0300 ff00 aaaa 0001")


def test_golden_single_page_full_cut() -> None:
    expected = INIT + RASTER_16x3 + bytes.fromhex("1b4a00") + bytes.fromhex("1d5600")
    assert encode_job([page_16x3()], copies=1, cut="full", feed_dots=0) == expected


def test_golden_partial_cut_and_feed() -> None:
    expected = INIT + RASTER_16x3 + bytes.fromhex("1b4a18") + bytes.fromhex("1d5601")
    assert encode_job([page_16x3()], cut="partial", feed_dots=24) == expected


def test_golden_no_cut_still_ends_the_page_with_print_and_feed() -> None:
    assert encode_job([page_16x3()], cut="none") == INIT + RASTER_16x3 + bytes.fromhex("1b4a00")


def test_long_feed_is_split_into_255_dot_steps() -> None:
    job = encode_job([page_16x3()], cut="none", feed_dots=600)
    assert job.endswith(bytes.fromhex("1b4aff 1b4aff 1b4a5a"))


def test_width_not_a_multiple_of_8_pads_rows_with_no_dots() -> None:
    page = Image.new("1", (10, 1), 0)  # all black
    assert bytes.fromhex("1d7630 00 0200 0100 ffc0") in encode_job([page])


def test_copies_repeat_the_page_sequence_after_one_init() -> None:
    a = page_16x3()
    b = a.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    one_a = escpos_protocol.encode_page(a) + bytes.fromhex("1b4a00 1d5600")
    one_b = escpos_protocol.encode_page(b) + bytes.fromhex("1b4a00 1d5600")
    assert encode_job([a, b], copies=2) == INIT + one_a + one_b + one_a + one_b


def test_bands_split_a_tall_page_at_255_rows() -> None:
    page = random_page(732, 600, seed=1)
    job = encode_job([page])
    # 255 + 255 + 90 rows of 92 bytes.
    assert job.count(bytes.fromhex("1d7630 00 5c00 ff00")) == 2
    assert job.count(bytes.fromhex("1d7630 00 5c00 5a00")) == 1
    assert len(job) == 2 + 3 * 8 + 92 * 600 + 3 + 3


def test_small_buffer_layout_keeps_each_band_under_4_kb() -> None:
    page = random_page(732, 342, seed=2)
    job = encode_job([page], layout="small-buffer")
    # 4096 // 92 = 44 rows per band: 7 bands of 44 and one of 34.
    assert job.count(bytes.fromhex("1d7630 00 5c00 2c00")) == 7
    assert job.count(bytes.fromhex("1d7630 00 5c00 2200")) == 1


def test_large_buffer_layout_sends_a_label_as_one_image() -> None:
    job = encode_job([random_page(732, 342, seed=3)], layout="large-buffer")
    assert job.count(b"\x1dv0") == 1


def test_large_buffer_bands_stay_within_the_epson_tm_limit_of_2303_rows() -> None:
    # Epson TM manuals allow GS v 0 heights up to 2303 rows (yH <= 8); a taller band is refused.
    page = random_page(576, 3000, seed=5)
    job = encode_job([page], layout="large-buffer")
    assert job.count(bytes.fromhex("1d7630 00 4800 ff08")) == 1  # 2303 rows
    assert job.count(bytes.fromhex("1d7630 00 4800 b902")) == 1  # and the 697 left


def test_raster_data_matches_python_escpos() -> None:
    # python-escpos is the reference encoder: same header fields, same bitmap bytes.
    page = random_page(732, 342, seed=4)
    reference = EscposImage(page)
    job = encode_job([page], cut="none", layout="large-buffer")
    header = bytes.fromhex("1d7630 00") + reference.width_bytes.to_bytes(2, "little")
    header += reference.height.to_bytes(2, "little")
    assert job == INIT + header + reference.to_raster_format() + bytes.fromhex("1b4a00")


def test_unknown_band_layout_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="known: default"):
        encode_job([page_16x3()], layout="tm-nonexistent")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"copies": 0}, "copies"),
        ({"cut": "half"}, "cut"),
        ({"feed_dots": -1}, "feed_dots"),
    ],
)
def test_bad_job_options_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_job([page_16x3()], **kwargs)  # type: ignore[arg-type]


def test_pages_must_be_one_bit() -> None:
    with pytest.raises(ValueError, match="mode"):
        encode_job([Image.new("L", (8, 8), 255)])
    with pytest.raises(ValueError, match="at least one page"):
        encode_job([])


def test_band_layout_width_limit() -> None:
    narrow = escpos_protocol.BandLayout("narrow", band_rows=255, max_width_dots=576)
    with pytest.raises(ValueError, match="576"):
        escpos_protocol.encode_page(Image.new("1", (732, 8), 255), narrow)


def test_status_queries_are_dle_eot_n() -> None:
    assert dict(STATUS_QUERIES) == {
        1: b"\x10\x04\x01",
        2: b"\x10\x04\x02",
        3: b"\x10\x04\x03",
        4: b"\x10\x04\x04",
    }


def test_idle_printer_decodes_to_no_flags() -> None:
    status = decode_status({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12})
    assert status.online is True
    assert not any(getattr(status, f.name) for f in fields(status))


def test_flags_of_queries_not_asked_are_unknown() -> None:
    status = decode_status({4: 0x12})
    assert status.paper_out is False
    assert status.offline is None
    assert status.online is None
    assert status.cover_open is None


FLAG_BITS = [
    (1, 0x04, "drawer_pin3_high"),
    (1, 0x08, "offline"),
    (2, 0x04, "cover_open"),
    (2, 0x08, "feed_button"),
    (2, 0x20, "paper_end_stop"),
    (2, 0x40, "error"),
    (3, 0x04, "mechanical_error"),
    (3, 0x08, "cutter_error"),
    (3, 0x20, "unrecoverable"),
    (3, 0x40, "auto_recoverable"),
    (4, 0x0C, "paper_near_end"),
    (4, 0x60, "paper_out"),
]


@pytest.mark.parametrize(("n", "bits", "flag"), FLAG_BITS)
def test_each_status_bit_sets_exactly_its_flag(n: int, bits: int, flag: str) -> None:
    status = decode_status({n: 0x12 | bits})
    set_flags = {f.name for f in fields(EscposStatus) if getattr(status, f.name)}
    assert set_flags == {flag}


def test_offline_printer_is_not_online() -> None:
    assert decode_status({1: 0x1A}).online is False


@pytest.mark.parametrize("value", [0x00, 0x02, 0x10, 0x13, 0x92, 0xFF, 0x100, -1])
def test_reply_without_the_fixed_bits_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="DLE EOT"):
        decode_status({1: value})


def test_unknown_query_number_is_rejected() -> None:
    with pytest.raises(ValueError, match="DLE EOT 5"):
        decode_status({5: 0x12})
