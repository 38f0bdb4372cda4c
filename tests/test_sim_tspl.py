"""The TSPL simulator: what it prints from the commands it receives, and what it answers."""

from __future__ import annotations

import pytest
from PIL import Image

from drivers.tspl import FAMILY
from drivers.tspl.protocol import TsplStatus, encode_label
from drivers.tspl.simulator import FAULT_BITS, TsplSimulator
from tests.driver_fakes import page_16x3, random_page, same

SETUP = b"SIZE 2 mm,1 mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 0,0\r\n"  # 16 x 8 dots at 203 dpi


def white(width: int, height: int) -> Image.Image:
    return Image.new("1", (width, height), 255)


def test_size_in_millimetres_inches_and_dots_at_each_resolution() -> None:
    at_203, at_300 = TsplSimulator(), TsplSimulator(dpi=300)
    for sim in (at_203, at_300):
        sim.feed(b"SIZE 50 mm,30 mm\r\nCLS\r\nPRINT 1\r\n")
        sim.feed(b"SIZE 2,1\r\nCLS\r\nPRINT 1\r\n")
        sim.feed(b"SIZE 100 dot,20 dot\r\nCLS\r\nPRINT 1\r\n")
    assert [label.image.size for label in at_203.labels] == [(400, 240), (406, 203), (100, 20)]
    assert [label.image.size for label in at_300.labels] == [(600, 360), (600, 300), (100, 20)]


def test_a_bitmap_prints_where_it_is_placed_and_is_clipped_to_the_label() -> None:
    sim = TsplSimulator()
    sim.feed(SETUP + b"CLS\r\nBITMAP 4,6,1,3,0,\x00\x00\x00\r\nPRINT 1\r\n")
    expected = white(16, 8)
    expected.paste(Image.new("1", (8, 2), 0), (4, 6))  # the third row falls off the label
    assert same(sim.labels[0].image, expected)


def test_bitmap_modes_overwrite_or_and_xor() -> None:
    black_left = b"\x0f"  # dots 0-3 printed
    black_middle = b"\xc3"  # dots 2-5 printed

    def printed(mode: int) -> list[int]:
        sim = TsplSimulator()
        sim.feed(SETUP + b"CLS\r\nBITMAP 0,0,1,1,0," + black_left + b"\r\n")
        sim.feed(b"BITMAP 0,0,1,1,%d," % mode + black_middle + b"\r\nPRINT 1\r\n")
        image = sim.labels[0].image
        return [int(image.getpixel((x, 0)) == 0) for x in range(8)]

    assert printed(0) == [0, 0, 1, 1, 1, 1, 0, 0]
    assert printed(1) == [1, 1, 1, 1, 1, 1, 0, 0]
    assert printed(2) == [1, 1, 0, 0, 1, 1, 0, 0]


def test_print_sets_and_copies_and_print_again_without_cls() -> None:
    sim = TsplSimulator()
    page = page_16x3()
    sim.feed(SETUP + encode_label(page, copies=2) + b"PRINT 2,3\r\nPRINT 1\r\n")
    assert len(sim.labels) == 2 + 6 + 1
    expected = white(16, 8)
    expected.paste(page, (0, 0))
    assert all(same(label.image, expected) for label in sim.labels)
    sim.feed(b"CLS\r\nPRINT 1\r\n")
    assert same(sim.labels[-1].image, white(16, 8))


def test_bytes_split_anywhere_print_the_same_labels() -> None:
    page = random_page(48, 16, seed=7)
    # Status-query and newline bytes inside the bitmap are data, taken by the bitmap's length.
    page.paste(Image.frombytes("1", (24, 1), b"\x1b!?"), (0, 3))
    page.paste(Image.frombytes("1", (16, 1), b"\r\n"), (0, 4))
    stream = b"SIZE 6 mm,2 mm\r\n" + encode_label(page) + b"\x1b!?"
    whole, split = TsplSimulator(), TsplSimulator()
    assert whole.feed(stream) == b"\x00"
    replies = b"".join(split.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert replies == b"\x00"
    assert same(whole.labels[0].image, page)
    assert same(split.labels[0].image, page)


@pytest.mark.parametrize(("fault", "bit"), sorted(FAULT_BITS.items()))
def test_each_fault_sets_its_status_bit(fault: str, bit: TsplStatus) -> None:
    sim = TsplSimulator()
    assert sim.feed(b"\x1b!?") == b"\x00"
    sim.set_fault(fault)
    assert sim.feed(b"\x1b!?") == bytes([bit])


def test_every_declared_fault_is_one_the_simulator_takes() -> None:
    assert set(FAMILY.faults) <= TsplSimulator.FAULTS
    assert set(FAMILY.faults) == set(FAULT_BITS)


def test_the_printing_bit_while_a_label_is_printing() -> None:
    sim = TsplSimulator()
    sim.printing = True
    assert sim.feed(b"\x1b!?") == bytes([TsplStatus.PRINTING])


@pytest.mark.parametrize("fault", ["paper-out", "ribbon-out", "head-open", "cover-open", "jam"])
def test_blocking_faults_drop_labels(fault: str) -> None:
    sim = TsplSimulator()
    sim.set_fault(fault)
    sim.feed(SETUP + encode_label(page_16x3()))
    sim.clear_fault()
    assert sim.labels == []


def test_paused_holds_labels_until_resumed_by_command_or_button() -> None:
    sim = TsplSimulator()
    sim.feed(b"\x1b!P" + SETUP + encode_label(page_16x3()))
    assert sim.feed(b"\x1b!?") == bytes([TsplStatus.PAUSED])
    assert sim.labels == []
    sim.feed(b"\x1b!O")
    assert len(sim.labels) == 1
    sim.set_fault("paused")
    sim.feed(b"PRINT 1\r\n")
    sim.clear_fault("paused")  # the PAUSE button
    assert len(sim.labels) == 2


def test_offline_answers_nothing_and_prints_nothing() -> None:
    sim = TsplSimulator()
    sim.set_fault("offline")
    assert sim.feed(b"\x1b!?~!T" + SETUP + encode_label(page_16x3())) == b""
    assert sim.labels == []


def test_model_name_and_reset() -> None:
    sim = TsplSimulator(model="TDP-225")
    assert sim.feed(b"~!T") == b"TDP-225\r"
    sim.feed(b"\x1b!P" + SETUP + encode_label(page_16x3()) + b"\x1b!R\x1b!O")
    assert sim.labels == []  # the reset dropped the held label


def test_a_label_cut_off_by_the_connection_closing_is_dropped() -> None:
    sim = TsplSimulator()
    stream = SETUP + encode_label(page_16x3())
    channel = sim.open_channel()
    channel.feed(stream[:-12])
    channel.close()
    channel = sim.open_channel()
    channel.feed(b"PRINT 1\r\n")
    assert len(sim.labels) == 1
    assert same(sim.labels[0].image, white(16, 8))  # the bitmap never arrived whole


def test_other_commands_are_recorded_and_settings_kept() -> None:
    sim = TsplSimulator()
    sim.feed(
        b'DENSITY 12\r\nSPEED 4\r\nDIRECTION 1,0\r\nBLINE 3 mm,0\r\nTEXT 10,10,"3",0,1,1,"A"\r\n'
    )
    settings = sim.settings
    assert (settings.density, settings.speed, settings.direction) == (12, 4.0, 1)
    assert (settings.media, settings.gap) == ("bline", b"3 mm,0")
    assert settings.unknown_commands == [b'TEXT 10,10,"3",0,1,1,"A"']
    sim.feed(b"GAP 0,0\r\n")
    assert settings.media == "continuous"


def test_a_bitmap_too_big_for_any_printer_is_not_waited_for() -> None:
    sim = TsplSimulator()
    sim.feed(SETUP + b"CLS\r\nBITMAP 0,0,99999,99999,0,\r\nPRINT 1\r\n")
    assert len(sim.labels) == 1
    assert same(sim.labels[0].image, white(16, 8))
