"""The QL raster encoder byte for byte, PackBits, the status frame, and the tables."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from drivers.brother_ql.protocol import (
    Error1,
    Error2,
    Notification,
    PageOptions,
    StatusType,
    decode_status,
    encode_job,
    encode_page,
    encode_status,
    packbits,
    unpackbits,
)
from drivers.brother_ql.status import (
    ERROR1_CONDITIONS,
    ERROR2_CONDITIONS,
    frame_conditions,
    status_report,
)
from drivers.brother_ql.tables import LABELS, MODELS, label_fits, label_for
from drivers.kit import LabelPrinterStatus as S
from tests import brother_reference

QL820 = MODELS["QL-820NWB"]
BLANK_LINE = bytes(90)


def corner_page() -> Image.Image:
    """106 x 150 dots (12 mm tape): dot (0, 0) and dot (105, 1) black."""
    page = Image.new("1", (106, 150), 255)
    page.putpixel((0, 0), 0)
    page.putpixel((105, 1), 0)
    return page


def header(flags: int, kind: int, width: int, length: int, lines: int, page: int) -> bytes:
    return (
        b"\x1bia\x01"
        + b"\x1bi!\x00"
        + b"\x1biz"
        + bytes((flags, kind, width, length))
        + lines.to_bytes(4, "little")
        + bytes((page, 0))
    )


def test_golden_bytes_uncompressed_page_mirrored_onto_the_head() -> None:
    options = PageOptions(QL820, LABELS["12"], compress=False)
    data = encode_page((corner_page(),), options, first=True, last=True)
    # Page column 0 is the page's left edge: mirrored, it lands on pin 29 + 105 = 134 (byte 16,
    # bit 6); column 105 on pin 29 (byte 3, bit 5).
    line0 = bytearray(90)
    line0[16] = 0x02
    line1 = bytearray(90)
    line1[3] = 0x04
    expected = (
        header(0xC6, 0x0A, 12, 0, 150, 0)
        + b"\x1biM\x40"  # auto cut
        + b"\x1biA\x01"  # every label
        + b"\x1biK\x08"  # cut at end
        + b"\x1bid\x23\x00"  # 35-dot margin on continuous tape
        + b"g\x00\x5a"
        + line0
        + b"g\x00\x5a"
        + line1
        + (b"g\x00\x5a" + BLANK_LINE) * 148
        + b"\x1a"
    )
    assert data == expected


def test_golden_bytes_compressed_page_with_zero_lines_and_page_flags() -> None:
    options = PageOptions(QL820, LABELS["12"], quality=False)
    data = encode_page((corner_page(),), options, first=False, last=False)
    expected = (
        header(0x86, 0x0A, 12, 0, 150, 1)
        + b"\x1biM\x40\x1biA\x01\x1biK\x08\x1bid\x23\x00"
        + b"M\x02"
        # 16 zero bytes as a run, 0x02 as a literal, 73 zero bytes as a run.
        + b"g\x00\x06\xf1\x00\x00\x02\xb8\x00"
        + b"g\x00\x06\xfe\x00\x00\x04\xab\x00"
        + b"Z" * 148
        + b"\x0c"
    )
    assert data == expected


def test_die_cut_job_has_length_flag_no_margin_and_cut_every_n() -> None:
    page = Image.new("1", (306, 991), 255)
    options = PageOptions(QL820, LABELS["29x90"], cut_every=3)
    data = encode_job([(page,)], options)
    assert data.startswith(b"\x00" * 400 + b"\x1b@" + header(0xCE, 0x0B, 29, 90, 991, 0))
    assert b"\x1biA\x03\x1biK\x08\x1bid\x00\x00M\x02" in data
    assert data.endswith(b"Z\x1a")


def test_without_auto_cut_neither_cut_nor_cut_at_end_is_asked() -> None:
    options = PageOptions(QL820, LABELS["62"], auto_cut=False)
    data = encode_page((Image.new("1", (696, 150), 255),), options, first=True, last=True)
    assert b"\x1biM\x00\x1biK\x00" in data
    assert b"\x1biA" not in data


def test_models_without_compression_or_control_codes_get_plain_lines() -> None:
    page = Image.new("1", (696, 150), 255)
    data = encode_page((page,), PageOptions(MODELS["QL-500"], LABELS["62"]), first=True, last=True)
    # No raster-mode switch, no cut (no cutter), no expanded mode, no compression.
    assert data.startswith(b"\x1biz")
    for command in (b"\x1bia", b"\x1biM", b"\x1biA", b"\x1biK", b"M\x02", b"Z"):
        assert command not in data[: data.index(b"g")]
    assert data.count(b"g\x00\x5a") == 150


def test_the_ql_650td_gets_uncompressed_lines() -> None:
    # Its command reference: compressed data only over the serial port, and USB is the usual link.
    page = Image.new("1", (696, 150), 255)
    options = PageOptions(MODELS["QL-650TD"], LABELS["62"])
    data = encode_page((page,), options, first=True, last=True)
    assert b"M\x02" not in data
    assert data.count(b"g\x00\x5a") == 150


def test_the_102x152_roll_is_sent_as_the_153_mm_the_printer_reports() -> None:
    # DK-11241 is sold as 102 x 152 mm; QL-1050/1060N printers report 153 mm and refuse a job that
    # names 152 ("replace media").
    page = Image.new("1", (1164, 1660), 255)
    options = PageOptions(MODELS["QL-1100"], LABELS["102x152"])
    data = encode_page((page,), options, first=True, last=True)
    assert b"\x1biz" + bytes((0xCE, 0x0B, 102, 153)) in data
    loaded = encode_status(
        model_code=0x43, media_width_mm=102, media_type=0x0B, media_length_mm=153
    )
    assert status_report(decode_status(loaded), LABELS["102x152"], MODELS["QL-1100"]).text == ""


def test_wide_models_send_162_byte_lines() -> None:
    page = Image.new("1", (1164, 200), 255)
    page.putpixel((1163, 0), 0)
    options = PageOptions(MODELS["QL-1100"], LABELS["102"], compress=False)
    data = encode_page((page,), options, first=True, last=True)
    assert data.count(b"g\x00\xa2") == 200
    first_line = data[data.index(b"g\x00\xa2") + 3 :][:162]
    # The page's right-most column on the first pin after the 12-dot offset.
    assert first_line[1] == 0x08
    assert sum(first_line) == 0x08


def test_two_colour_lines_carry_black_then_red_for_each_line() -> None:
    black = Image.new("1", (696, 150), 255)
    red = Image.new("1", (696, 150), 255)
    black.putpixel((695, 0), 0)
    red.putpixel((695, 1), 0)
    options = PageOptions(QL820, LABELS["62red"], compress=False)
    data = encode_page((black, red), options, first=True, last=True)
    assert b"\x1biK\x09" in data  # cut at end + two-colour
    lines = data[data.index(b"w") : -1]
    assert len(lines) == 150 * 2 * (3 + 90)
    black0, red0 = lines[3:93], lines[96:186]
    assert (lines[:3], lines[93:96]) == (b"w\x01\x5a", b"w\x02\x5a")
    assert black0[1] == 0x08
    assert sum(black0) == 0x08
    assert sum(red0) == 0
    red1 = lines[186 + 96 : 186 + 186]
    assert red1[1] == 0x08


def test_two_colour_pages_need_red_tape_and_a_two_colour_model() -> None:
    page = Image.new("1", (696, 150), 255)
    with pytest.raises(ValueError, match="62red"):
        encode_page((page, page), PageOptions(QL820, LABELS["62"]), first=True, last=True)
    assert label_fits(LABELS["62red"], MODELS["QL-700"]) is not None
    assert label_fits(LABELS["102"], QL820) is not None
    assert label_fits(LABELS["62red"], QL820) is None


def test_a_page_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="696 dots across"):
        encode_page(
            (Image.new("1", (700, 200)),), PageOptions(QL820, LABELS["62"]), first=True, last=True
        )


def test_short_continuous_pages_are_padded_to_the_shortest_the_printer_takes() -> None:
    page = Image.new("1", (696, 20), 0)
    data = encode_page((page,), PageOptions(QL820, LABELS["62"]), first=True, last=True)
    assert (150).to_bytes(4, "little") in data[:40]
    (decoded,) = brother_reference.labels(data)
    assert decoded.size == (696, 150)
    assert decoded.crop((0, 0, 696, 20)).getextrema() == (0, 0)
    assert decoded.crop((0, 20, 696, 150)).getextrema() == (255, 255)


@pytest.mark.parametrize("seed", range(5))
def test_packbits_round_trips_and_matches_the_reference_reading(seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(
        rng.choice((0, 0, 0, 255, rng.randrange(256))) for _ in range(rng.randrange(1, 400))
    )
    packed = packbits(data)
    assert unpackbits(packed) == data
    # Literal and run groups never exceed 128 bytes.
    assert len(packed) <= len(data) + (len(data) + 127) // 128


def test_a_random_page_reads_back_through_the_reference_in_both_encodings() -> None:
    rng = random.Random(7)
    page = Image.frombytes("1", (696, 180), rng.randbytes(87 * 180))
    for compress in (True, False):
        data = encode_job([(page,), (page,)], PageOptions(QL820, LABELS["62"], compress=compress))
        decoded = brother_reference.labels(data)
        assert [image.convert("1").tobytes() for image in decoded] == [page.tobytes()] * 2


def frame(**fields: int) -> bytes:
    return encode_status(model_code=0x41, media_width_mm=62, media_type=0x0A, **fields)


def test_status_frame_fields_are_read_from_their_offsets() -> None:
    raw = bytearray(32)
    raw[0:5] = b"\x80\x20\x42\x34\x41"
    raw[8], raw[9], raw[10], raw[11], raw[15], raw[17] = 0x04, 0x10, 29, 0x0B, 0x40, 90
    raw[18], raw[19], raw[20], raw[21], raw[22] = 0x06, 0x01, 0x00, 0x14, 0x03
    decoded = decode_status(bytes(raw))
    assert decoded.model_code == 0x41
    assert decoded.errors1 == Error1.CUTTER_JAM
    assert decoded.errors2 == Error2.COVER_OPEN
    assert (decoded.media_width_mm, decoded.media_kind, decoded.media_length_mm) == (
        29,
        "die-cut",
        90,
    )
    assert (decoded.mode, decoded.status_type, decoded.phase) == (0x40, 0x06, 0x01)
    assert (decoded.phase_number, decoded.notification) == (0x14, 0x03)


@pytest.mark.parametrize("bad", [b"", bytes(32), b"\x80\x20\x42" + bytes(28)])
def test_what_is_not_a_status_frame_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="not a QL status frame"):
        decode_status(bad)


ERROR1 = [
    (Error1.NO_MEDIA, S.NO_MEDIA, "No media", True),
    (Error1.END_OF_MEDIA, S.NO_MEDIA, "End of media", True),
    (Error1.CUTTER_JAM, S.PAPER_JAM, "Cutter jam", True),
    (Error1.WEAK_BATTERIES, S.WARNING, "Weak batteries", False),
    (Error1.PRINTER_IN_USE, S.WARNING, "Printer in use", True),
    (Error1.TURNED_OFF, S.ERROR, "Printer turned off", True),
    (Error1.HIGH_VOLTAGE_ADAPTER, S.ERROR, "Wrong (high-voltage) power adapter", True),
    (Error1.FAN_MOTOR, S.ERROR, "Fan motor error", True),
]
ERROR2 = [
    (Error2.REPLACE_MEDIA, S.NO_MEDIA, "Replace media", True),
    (Error2.EXPANSION_BUFFER_FULL, S.ERROR, "Expansion buffer full", True),
    (Error2.COMMUNICATION, S.ERROR, "Communication error", True),
    (Error2.COMMUNICATION_BUFFER_FULL, S.ERROR, "Communication buffer full", True),
    (Error2.COVER_OPEN, S.ERROR, "Cover open", True),
    (Error2.FEED, S.NO_MEDIA, "Media cannot be fed", True),
    (Error2.SYSTEM, S.ERROR, "System error", True),
]


def test_the_tables_cover_every_error_bit() -> None:
    assert {bit for bit, *_ in ERROR1} == set(Error1) == set(ERROR1_CONDITIONS)
    assert {bit for bit, *_ in ERROR2} == set(Error2) == set(ERROR2_CONDITIONS)


@pytest.mark.parametrize(("bit", "status", "text", "blocks"), ERROR1)
def test_every_error_1_bit_maps_to_its_status(
    bit: Error1, status: S, text: str, blocks: bool
) -> None:
    report = status_report(decode_status(frame(errors1=bit)), LABELS["62"], QL820)
    assert report.status == status
    assert report.text.startswith(text)
    assert report.blocking is blocks


def test_error_2_bit_5_is_not_a_condition() -> None:
    # Brother's QL raster references list bit 5 (0x20) as "Not used" / "Cancel key (not used)":
    # a printer that sets it is not overheated (cooling comes as notification 3).
    report = status_report(decode_status(frame(errors2=0x20)), LABELS["62"], QL820)
    assert report.status == S.CONNECTED
    assert not report.blocking


@pytest.mark.parametrize(("bit", "status", "text", "blocks"), ERROR2)
def test_every_error_2_bit_maps_to_its_status(
    bit: Error2, status: S, text: str, blocks: bool
) -> None:
    report = status_report(decode_status(frame(errors2=bit)), LABELS["62"], QL820)
    assert report.status == status
    assert report.text.startswith(text)
    assert report.blocking is blocks


def test_notifications_and_status_types() -> None:
    cooling = decode_status(
        frame(status_type=StatusType.NOTIFICATION, notification=Notification.COOLING_STARTED)
    )
    (condition,) = frame_conditions(cooling)
    assert (condition.status, condition.blocks_printing) == (S.WARNING, False)
    opened = decode_status(
        frame(status_type=StatusType.NOTIFICATION, notification=Notification.COVER_OPEN)
    )
    assert [(c.status, c.text) for c in frame_conditions(opened)] == [(S.ERROR, "Cover open")]
    for note in (Notification.COOLING_FINISHED, Notification.COVER_CLOSED):
        assert (
            frame_conditions(
                decode_status(frame(status_type=StatusType.NOTIFICATION, notification=note))
            )
            == ()
        )
    off = decode_status(frame(status_type=StatusType.TURNED_OFF))
    assert [c.text for c in frame_conditions(off)] == ["Printer turned off"]
    assert frame_conditions(decode_status(frame(status_type=StatusType.PRINTING_COMPLETED))) == ()


def test_the_loaded_media_and_the_model_are_reported() -> None:
    report = status_report(decode_status(frame()), LABELS["62"], QL820)
    assert (report.status, report.text) == (S.CONNECTED, "")
    assert report.media is not None
    assert (report.media.kind, report.media.width_mm, report.media.width_dots) == (
        "continuous",
        62,
        696,
    )
    assert {p.key: p.value for p in report.properties} == {
        "Model": "QL-820NWB",
        "Media loaded": "62 mm wide continuous media (62)",
    }
    empty = status_report(
        decode_status(encode_status(model_code=0x41, errors1=Error1.NO_MEDIA)), LABELS["62"], QL820
    )
    assert empty.media is not None
    assert not empty.media.loaded


def test_other_media_loaded_says_what_is_loaded_and_what_the_setting_asks() -> None:
    loaded = encode_status(model_code=0x41, media_width_mm=62, media_type=0x0A)
    report = status_report(decode_status(loaded), LABELS["29x90"], QL820)
    assert report.status == S.NO_MEDIA
    assert report.blocking
    assert report.text == (
        "The printer has 62 mm wide continuous media (62) loaded; this machine is set up for "
        "29x90 die-cut (the LABEL setting '29x90')"
    )


def test_a_printer_of_another_head_width_than_the_model_setting_is_an_error() -> None:
    report = status_report(decode_status(frame()), LABELS["62"], MODELS["QL-1100"])
    assert report.status == S.ERROR
    assert report.text == "The printer is a QL-820NWB; set MODEL to it (MODEL is QL-1100)"
    # Same head width: only shown as the model property.
    same_head = status_report(decode_status(frame()), LABELS["62"], MODELS["QL-810W"])
    assert same_head.status == S.CONNECTED


def test_older_models_are_named_from_their_status_model_code() -> None:
    # Model codes of the QL-500...1060N reference: a QL-1050 answering a 62 mm machine is named.
    older = encode_status(model_code=0x50, media_width_mm=62, media_type=0x0A)
    report = status_report(decode_status(older), LABELS["62"], QL820)
    assert report.text == "The printer is a QL-1050; set MODEL to it (MODEL is QL-820NWB)"
    # The QL-500 and QL-550 share 0x4F: the MODEL setting decides which one is shown.
    shared = encode_status(model_code=0x4F, media_width_mm=62, media_type=0x0A)
    report = status_report(decode_status(shared), LABELS["62"], MODELS["QL-550"])
    assert report.status == S.CONNECTED
    assert ("Model", "QL-550") in [(p.key, p.value) for p in report.properties]


def test_media_table_is_consistent_and_found_from_a_status() -> None:
    for label in LABELS.values():
        assert label.offset + label.printable_width <= (1296 if label.wide else 720)
        assert label.printable_width < label.width_dots
        assert label.continuous == (label.length_dots == 0)
    assert label_for("die-cut", 29, 90) is LABELS["29x90"]
    assert label_for("die-cut", 29, 91) is LABELS["29x90"]
    assert label_for("continuous", 62, 0) is LABELS["62"]
    assert label_for("die-cut", 61, 29) is None


def paired_columns(width: int, height: int, seed: int) -> Image.Image:
    """A random page whose columns come in identical pairs (a 300 dpi page drawn at 600 dpi)."""
    rng = random.Random(seed)
    half = Image.frombytes("1", (width // 2, height), rng.randbytes((width // 2 + 7) // 8 * height))
    return half.resize((width, height), Image.Resampling.NEAREST)


def test_at_600_dpi_two_columns_make_one_dot_and_every_line_is_sent() -> None:
    page = Image.new("1", (1392, 300), 255)
    page.putpixel((1391, 0), 0)  # one of the right-most pair: the first dot after the offset
    options = PageOptions(QL820, LABELS["62"], compress=False, high_resolution=True)
    data = encode_page((page,), options, first=True, last=True)
    assert header(0xC6, 0x0A, 62, 0, 300, 0) in data
    assert b"\x1biK\x48\x1bid\x46\x00" in data  # cut at end + 600 dpi; a 70-line feed
    first_line = data[data.index(b"g\x00\x5a") + 3 :][:90]
    assert first_line[1] == 0x08
    assert sum(first_line) == 0x08
    pairs = paired_columns(1392, 300, seed=3)
    (decoded,) = brother_reference.labels(encode_job([(pairs,)], options))
    halved = pairs.resize((696, 300), Image.Resampling.NEAREST)
    assert decoded.convert("1").tobytes() == halved.tobytes()


def test_600_dpi_is_one_colour_on_models_with_expanded_mode() -> None:
    page = Image.new("1", (1392, 300), 255)
    with pytest.raises(ValueError, match="600 dpi prints one colour"):
        encode_page(
            (page,),
            PageOptions(MODELS["QL-500"], LABELS["62"], high_resolution=True),
            first=True,
            last=True,
        )
    with pytest.raises(ValueError, match="600 dpi prints one colour"):
        encode_page(
            (page, page),
            PageOptions(QL820, LABELS["62red"], high_resolution=True),
            first=True,
            last=True,
        )
