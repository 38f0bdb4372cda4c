"""The DYMO LabelWriter language byte for byte, and every status bit mapped to what users see."""

from __future__ import annotations

import pytest
from PIL import Image

from drivers.dymo.protocol import (
    RESET,
    Density,
    LabelSettings,
    Mode,
    Roll,
    compress_line,
    decode_status,
    encode_label,
    label_length,
    skip_lines,
)
from drivers.dymo.status import status_report
from drivers.kit import LabelPrinterStatus
from tests import dymo_reference
from tests.driver_fakes import page_16x3, random_page, same

HEADER_16x3 = bytes.fromhex("1b4c0003 1b65 1b68 1b4200 1b4402")


def ink(image: Image.Image) -> Image.Image:
    """A reference label ("L") as a page ("1")."""
    return image.convert("1", dither=Image.Dither.NONE)


def test_a_small_page_is_its_header_three_syn_lines_and_a_form_feed() -> None:
    # Row 0: dots 0-7 black; row 1: every even dot; row 2: dot 15. Runs save nothing here.
    data = encode_label(page_16x3(), LabelSettings(), last=True)
    lines = bytes.fromhex("16ff00 16aaaa 160001")
    assert data == HEADER_16x3 + lines + b"\x1bE"


def test_blank_rows_are_fed_and_long_runs_go_compressed() -> None:
    page = Image.new("1", (32, 5), 255)
    for x in range(32):
        page.putpixel((x, 0), 0)
    page.putpixel((0, 3), 0)
    data = encode_label(page, LabelSettings(), last=False)
    header = bytes.fromhex("1b4c0005 1b65 1b68 1b4200 1b4404")
    # Row 0: 32 black dots in one run; rows 1-2 fed; row 3: 1 black + 31 white; row 4 fed.
    body = bytes.fromhex("179f 1b660102 17801e 1b660101")
    assert data == header + body + b"\x1bG"


def test_density_graphics_mode_and_roll_are_set_and_each_row_goes_twice() -> None:
    settings = LabelSettings(density=Density.DARK, mode=Mode.GRAPHICS, roll=Roll.LEFT)
    data = encode_label(page_16x3(), settings, last=True)
    header = bytes.fromhex("1b4c0006 1b67 1b69 1b7131 1b4200 1b4402")
    lines = bytes.fromhex("16ff00 16ff00 16aaaa 16aaaa 160001 160001")
    assert data == header + lines + b"\x1bE"


@pytest.mark.parametrize(
    ("density", "command"),
    [(Density.LIGHT, b"\x1bc"), (Density.MEDIUM, b"\x1bd"), (Density.NORMAL, b"\x1be")],
)
def test_each_density_has_its_command(density: Density, command: bytes) -> None:
    data = encode_label(page_16x3(), LabelSettings(density=density), last=True)
    assert data[4:6] == command


@pytest.mark.parametrize(("roll", "byte"), [(Roll.AUTO, b"0"), (Roll.RIGHT, b"2")])
def test_the_twin_turbo_roll_is_an_ascii_digit(roll: Roll, byte: bytes) -> None:
    data = encode_label(page_16x3(), LabelSettings(roll=roll), last=True)
    assert b"\x1bq" + byte in data


def test_continuous_stock_sends_a_negative_label_length() -> None:
    data = encode_label(page_16x3(), LabelSettings(continuous=True), last=True)
    assert data.startswith(b"\x1bL\xff\xff")


def test_label_length_is_big_endian_and_refuses_what_does_not_fit() -> None:
    assert label_length(1051) == b"\x1bL\x04\x1b"
    with pytest.raises(ValueError, match="32767"):
        label_length(40000)


def test_a_page_wider_than_the_head_is_refused() -> None:
    with pytest.raises(ValueError, match="672 dots wide"):
        encode_label(Image.new("1", (680, 4), 255), LabelSettings(), last=True)
    # The 4XL's head takes it.
    encode_label(Image.new("1", (680, 4), 255), LabelSettings(head_bytes=156), last=True)


def test_skips_longer_than_255_lines_are_split() -> None:
    assert skip_lines(600) == b"\x1bf\x01\xff\x1bf\x01\xff\x1bf\x01\x5a"
    assert skip_lines(0) == b""


def test_runs_longer_than_128_dots_are_split() -> None:
    # A whole 672-dot line black: 5 runs of 128 and one of 32.
    assert compress_line(b"\xff" * 84) == b"\xff" * 5 + b"\x9f"
    # 16 white, 16 black: the manual's 0F = 16 white, 8F = 16 printed.
    assert compress_line(b"\x00\x00\xff\xff") == b"\x0f\x8f"


def test_resync_is_at_least_85_escapes_then_reset() -> None:
    assert RESET.endswith(b"\x1b@")
    assert set(RESET[:-2]) == {0x1B}
    assert len(RESET) - 2 >= 85


def test_random_pages_read_back_by_the_reference_decoder() -> None:
    pages = [random_page(296, 40, seed) for seed in range(3)]
    pages.append(Image.new("1", (296, 20), 255))  # a blank label is fed, not skipped
    stream = b"".join(encode_label(page, LabelSettings(), last=False) for page in pages)
    decoded = dymo_reference.labels(RESET + stream)
    assert len(decoded) == len(pages)
    assert all(same(ink(label), page) for label, page in zip(decoded, pages, strict=True))


def test_graphics_mode_reads_back_twice_as_long() -> None:
    page = random_page(64, 10, 7)
    data = encode_label(page, LabelSettings(mode=Mode.GRAPHICS), last=True)
    [label] = dymo_reference.labels(data)
    assert same(ink(label), page.resize((64, 20), Image.Resampling.NEAREST))


# Every status bit, as the ESC A reply of a LabelWriter 450.
@pytest.mark.parametrize(
    ("byte", "status", "text"),
    [
        (0x03, LabelPrinterStatus.CONNECTED, ""),
        (0x01, LabelPrinterStatus.CONNECTED, ""),
        (0xA1, LabelPrinterStatus.NO_MEDIA, "Paper out: load a roll of labels"),
        (0x21, LabelPrinterStatus.NO_MEDIA, "Paper out: load a roll of labels"),
        (0xC1, LabelPrinterStatus.PAPER_JAM, "Paper jam: open the cover and clear the labels"),
        (0x81, LabelPrinterStatus.ERROR, "Printer error: check the labels, then switch"),
        (0x00, LabelPrinterStatus.WARNING, "Printer reports not ready"),
        (0xE0, LabelPrinterStatus.PAPER_JAM, "Paper jam"),
    ],
)
def test_every_status_bit_shows_as_its_status(
    byte: int, status: LabelPrinterStatus, text: str
) -> None:
    report = status_report(decode_status(byte))
    assert report.status == status
    assert report.text.startswith(text)
    # Only a cause stops printing; bit 0 alone does not (the manuals disagree on it).
    assert report.blocking == (
        status not in (LabelPrinterStatus.CONNECTED, LabelPrinterStatus.WARNING)
    )


def test_paper_out_and_jam_together_show_both_worst_first() -> None:
    report = status_report(decode_status(0xE1))
    assert report.text == (
        "Paper jam: open the cover and clear the labels; Paper out: load a roll of labels"
    )


def test_the_live_properties_follow_the_bits() -> None:
    report = status_report(decode_status(0xA1))
    values = {p.key: p.value for p in report.properties}
    assert values == {"Paper": "out", "Top of form": False}
    values = {p.key: p.value for p in status_report(decode_status(0x03)).properties}
    assert values == {"Paper": "ok", "Top of form": True}
