"""The LabelWriter simulator: what it prints from the bytes it gets, what ESC A answers, faults."""

from __future__ import annotations

import pytest
from PIL import Image

from drivers.dymo.protocol import RESET, RESYNC, LabelSettings, Mode, encode_label
from drivers.dymo.simulator import DymoSimulator
from tests.driver_fakes import page_16x3, random_page, same

READY_AT_TOP = b"\x03"


def label(page: Image.Image, *, last: bool = True, mode: Mode = Mode.TEXT) -> bytes:
    return encode_label(page, LabelSettings(mode=mode), last=last)


def test_labels_print_at_their_form_feeds_with_the_page_pixels() -> None:
    sim = DymoSimulator()
    pages = [random_page(296, 30, seed) for seed in range(3)]
    sim.feed(RESET + label(pages[0], last=False) + label(pages[1], last=False))
    assert len(sim.labels) == 2
    sim.feed(label(pages[2]))
    assert all(same(printed.image, page) for printed, page in zip(sim.labels, pages, strict=True))
    assert list(sim.form_feeds) == ["G", "G", "E"]


def test_bytes_split_anywhere_decode_the_same() -> None:
    sim = DymoSimulator()
    page = random_page(120, 25, 4)
    for byte in RESET + label(page):
        sim.feed(bytes([byte]))
    [printed] = sim.labels
    assert same(printed.image, page)


def test_esc_a_answers_the_status_byte_between_commands_not_inside_lines() -> None:
    sim = DymoSimulator()
    assert sim.feed(b"\x1bA") == READY_AT_TOP
    # A SYN line's bytes are dots even when they read ESC A.
    sim.feed(b"\x1bD\x02\x16\x1bA")
    assert sim.feed(b"\x1bA") == b"\x01"  # inside a label: not at top of form
    sim.feed(b"\x1bE")
    assert sim.feed(b"\x1bA") == READY_AT_TOP
    assert same(sim.labels[0].image.crop((0, 0, 16, 1)), _row(b"\x1bA"))


def _row(data: bytes) -> Image.Image:
    ink = Image.frombytes("1", (len(data) * 8, 1), data)
    return ink.point(lambda v: 255 - v).convert("1")


def test_resync_recovers_a_printer_left_inside_a_line() -> None:
    sim = DymoSimulator()
    # A job broken inside its first raster line, then the next job's reset and label.
    page = random_page(296, 12, 9)
    sim.feed(b"\x1bD\x25\x16" + b"\x55" * 10)
    sim.feed(RESET + label(page))
    [printed] = sim.labels
    assert same(printed.image, page)


def test_the_resync_run_before_esc_a_answers_without_a_reset() -> None:
    sim = DymoSimulator()
    sim.feed(b"\x1bD\x02\x16\xff\xff")  # one line of a label in progress
    assert sim.feed(RESYNC + b"\x1bA") == b"\x01"
    sim.feed(b"\x1bE")
    assert sim.labels[0].image.size == (16, 3058)  # the power-on label length


def test_reset_drops_the_label_being_received() -> None:
    sim = DymoSimulator()
    sim.feed(b"\x1bD\x02\x16\xff\xff" + RESET + b"\x1bE")
    assert sim.labels == []


def test_a_label_cut_off_by_the_connection_is_dropped() -> None:
    sim = DymoSimulator()
    data = RESET + label(random_page(64, 10, 1))
    channel = sim.open_channel()
    channel.feed(data[:-2])
    channel.close()
    fresh = sim.open_channel()
    fresh.feed(b"\x1bE")
    assert sim.labels == []


def test_a_die_cut_label_is_as_long_as_its_label_length_continuous_as_its_lines() -> None:
    sim = DymoSimulator()
    sim.feed(b"\x1bL\x00\x20\x1bD\x01\x16\x80\x1bE")
    sim.feed(b"\x1bL\xff\xff\x1bD\x01\x16\x80\x1bf\x01\x04\x1bE")
    assert [printed.image.size for printed in sim.labels] == [(8, 32), (8, 5)]


def test_graphics_mode_prints_each_sent_line_at_600_dpi() -> None:
    sim = DymoSimulator()
    page = page_16x3()
    sim.feed(label(page, mode=Mode.GRAPHICS))
    assert same(sim.labels[0].image, page.resize((16, 6), Image.Resampling.NEAREST))
    assert sim.setup.graphics


def test_dot_tab_moves_lines_right() -> None:
    sim = DymoSimulator()
    sim.feed(b"\x1bL\x00\x01\x1bB\x02\x1bD\x01\x16\xff\x1bE")
    image = sim.labels[0].image
    assert image.size == (24, 1)
    assert [image.getpixel((x, 0)) for x in (15, 16, 23)] == [255, 0, 0]


@pytest.mark.parametrize(("fault", "status"), [("paper-out", 0xA3), ("jam", 0xC3), ("error", 0x83)])
def test_faults_set_their_bits_and_drop_labels(fault: str, status: int) -> None:
    sim = DymoSimulator()
    sim.set_fault(fault)
    assert sim.feed(RESET + label(page_16x3()) + b"\x1bA") == bytes([status])
    assert sim.labels == []
    sim.clear_fault()
    sim.feed(label(page_16x3()))
    assert len(sim.labels) == 1


def test_offline_answers_nothing_and_prints_nothing() -> None:
    sim = DymoSimulator()
    sim.set_fault("offline")
    assert sim.feed(RESET + label(page_16x3()) + b"\x1bA") == b""
    assert sim.labels == []


def test_unknown_commands_are_counted_and_skipped() -> None:
    sim = DymoSimulator()
    sim.feed(b"\x1bZ" + label(page_16x3()))
    assert sim.unknown_commands == 1
    assert len(sim.labels) == 1
