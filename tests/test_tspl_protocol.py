"""TSPL bytes: golden labels and setups, every status bit, and both readings of the bytes."""

from __future__ import annotations

import pytest
from PIL import Image

from drivers.kit import LabelPrinterStatus
from drivers.tspl.protocol import (
    LabelSetup,
    TsplStatus,
    decode_model,
    decode_status,
    encode_label,
    encode_setup,
)
from drivers.tspl.simulator import TsplSimulator
from drivers.tspl.status import status_report
from tests import tspl_reference
from tests.driver_fakes import page_16x3, random_page, same


def test_golden_bytes_of_a_16_x_3_label() -> None:
    # TSPL BITMAP data: 0 bits print. Row 0: dots 0-7 black; row 1: even dots; row 2: dot 15.
    data = bytes([0x00, 0xFF, 0x55, 0x55, 0xFF, 0xFE])
    assert encode_label(page_16x3()) == b"CLS\r\nBITMAP 0,0,2,3,0," + data + b"\r\nPRINT 1\r\n"


def test_a_row_that_is_not_whole_bytes_is_padded_with_white() -> None:
    page = Image.new("1", (10, 1), 0)  # ten black dots
    # Dots 8 and 9 black (0), the six padding dots white (1): 0b00111111.
    assert encode_label(page, copies=2) == b"CLS\r\nBITMAP 0,0,2,1,0,\x00\x3f\r\nPRINT 2\r\n"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (LabelSetup(), b"SIZE 50 mm,30 mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 0,0\r\n"),
        (
            LabelSetup(width_mm=100, height_mm=150, media="mark", gap_mm=3.5, direction=1),
            b"SIZE 100 mm,150 mm\r\nBLINE 3.5 mm,0 mm\r\nDIRECTION 1,0\r\n",
        ),
        (
            LabelSetup(media="continuous", density=12, speed=4),
            b"SIZE 50 mm,30 mm\r\nGAP 0,0\r\nDIRECTION 0,0\r\nDENSITY 12\r\nSPEED 4\r\n",
        ),
    ],
)
def test_golden_bytes_of_the_setup(setup: LabelSetup, expected: bytes) -> None:
    assert encode_setup(setup) == expected


def test_continuous_media_takes_the_page_length_in_whole_millimetres() -> None:
    # 241 dots at 8 dots/mm need 31 mm; at 300 dpi (12 dots/mm) 241 dots need 21 mm.
    assert encode_setup(LabelSetup(height_mm=0), 241).startswith(b"SIZE 50 mm,31 mm\r\nGAP 0,0\r\n")
    at_300 = LabelSetup(dpi=300, height_mm=0)
    assert encode_setup(at_300, 241).startswith(b"SIZE 50 mm,21 mm\r\n")


@pytest.mark.parametrize(
    ("setup", "message"),
    [(LabelSetup(density=16), "DENSITY is 0 to 15"), (LabelSetup(speed=0), "SPEED is 1 to 18")],
)
def test_out_of_range_setup_is_refused(setup: LabelSetup, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_setup(setup)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (Image.new("L", (8, 8)), "1-bit"),
        (Image.new("1", (40_001, 1)), "1 to 40000 dots"),
    ],
)
def test_pages_the_encoder_cannot_send_are_refused(page: Image.Image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_label(page)


@pytest.mark.parametrize(("width", "height", "seed"), [(400, 240, 1), (203, 17, 2), (832, 40, 3)])
def test_the_reference_reading_and_the_simulator_print_the_page(
    width: int, height: int, seed: int
) -> None:
    page = random_page(width, height, seed)
    setup = LabelSetup(width_mm=-(-width // 8), height_mm=0)
    stream = encode_setup(setup, height) + encode_label(page)
    (reference,) = tspl_reference.labels(stream)
    sim = TsplSimulator()
    sim.feed(stream)
    (label,) = sim.labels
    # The label is whole millimetres: the page at its top left, white paper around it.
    expected = Image.new("1", label.image.size, 255)
    expected.paste(page, (0, 0))
    assert same(label.image, expected)
    assert same(reference.convert("1"), expected)


def test_status_bytes_decode_to_their_bits() -> None:
    assert decode_status(b"\x00") == TsplStatus(0)
    assert decode_status(b"\x0c") == TsplStatus.PAPER_OUT | TsplStatus.RIBBON_OUT
    with pytest.raises(ValueError, match="one byte"):
        decode_status(b"")
    with pytest.raises(ValueError, match="one byte"):
        decode_status(b"\x00\x00")


# The manual's table: bit, what it means, the status and text the machine shows, whether it stops.
BITS = [
    (0x01, LabelPrinterStatus.ERROR, "Print head open", True),
    (0x02, LabelPrinterStatus.PAPER_JAM, "Paper jam", True),
    (0x04, LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    (0x08, LabelPrinterStatus.NO_MEDIA, "Ribbon out", True),
    (0x10, LabelPrinterStatus.WARNING, "Paused: press the PAUSE button to go on", True),
    (0x20, LabelPrinterStatus.PRINTING, "Printing", False),
    (0x40, LabelPrinterStatus.ERROR, "Cover open", True),
    (
        0x80,
        LabelPrinterStatus.ERROR,
        "Temperature out of range; printing resumes when it is back in range",
        True,
    ),
]


@pytest.mark.parametrize(("byte", "status", "text", "blocks"), BITS)
def test_every_status_bit_is_shown(
    byte: int, status: LabelPrinterStatus, text: str, blocks: bool
) -> None:
    report = status_report(decode_status(bytes([byte])))
    assert (report.status, report.text, report.blocking) == (status, text, blocks)


def test_a_ready_printer_shows_connected_and_its_properties() -> None:
    report = status_report(TsplStatus(0), "TE200")
    assert (report.status, report.text, report.blocking) == (
        LabelPrinterStatus.CONNECTED,
        "",
        False,
    )
    shown = {p.key: p.value for p in report.properties}
    assert shown == {
        "Paper": "ok",
        "Ribbon": "ok",
        "Head": "closed",
        "Cover": "closed",
        "Paused": False,
        "Status byte": "00",
        "Model": "TE200",
    }


def test_several_bits_show_the_worst_first() -> None:
    report = status_report(TsplStatus.PAPER_OUT | TsplStatus.HEAD_OPEN | TsplStatus.PRINTING)
    assert report.status is LabelPrinterStatus.ERROR
    assert report.text == "Print head open; Paper out; Printing"
    shown = {p.key: p.value for p in report.properties}
    assert (shown["Paper"], shown["Head"], shown["Status byte"]) == ("out", "open", "25")


def test_model_names_are_read_without_line_ends_or_control_bytes() -> None:
    assert decode_model(b"TE200\r") == "TE200"
    assert decode_model(b" TDP-225 \r\n") == "TDP-225"
    assert decode_model(b"\x00\r") == ""
