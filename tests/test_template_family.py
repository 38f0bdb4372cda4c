"""The template family on its own: its bytes, its status words, and that it is an example only.

Everything a family must do end to end is the conformance suite's (tests/conformance/); these are
the family's unit tests, the kind a new family starts from.
"""

from __future__ import annotations

import pytest
from PIL import Image

import drivers
from drivers.base import LabelPrinterStatus
from drivers.family import builtin_driver_specs
from drivers.sim import make_simulator
from drivers.template import FAMILY
from drivers.template.protocol import StatusWord, decode_status, encode_label, encode_status
from drivers.template.simulator import TemplateSimulator
from drivers.template.status import status_report


def page_10x2() -> Image.Image:
    """Row 0: dots 0 and 9 black; row 1: dots 0-7 black."""
    page = Image.new("1", (10, 2), 255)
    page.putpixel((0, 0), 0)
    page.putpixel((9, 0), 0)
    for x in range(8):
        page.putpixel((x, 1), 0)
    return page


def test_golden_bytes_of_a_label() -> None:
    # Two bytes a row; the 10th dot is the second byte's top bit.
    assert encode_label(page_10x2()) == b"LABEL 10 2\n8040\nff00\nPRINT\n"


def test_the_simulator_prints_the_pixels_it_is_sent_and_answers_status() -> None:
    sim = TemplateSimulator()
    stream = encode_label(page_10x2()) + b"STATUS?\n"
    replies = b"".join(sim.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
    assert replies == b"STATUS OK\n"
    [label] = sim.labels
    assert list(label.image.get_flattened_data()) == list(page_10x2().get_flattened_data())


def test_a_label_cut_off_or_with_a_bad_row_is_dropped() -> None:
    sim = TemplateSimulator()
    channel = sim.open_channel()
    channel.feed(b"LABEL 10 2\n8040\n")
    channel.close()
    sim.feed(b"LABEL 10 2\n80\nff00\nPRINT\n")
    assert sim.labels == []


def test_a_page_that_is_not_one_bit_fails() -> None:
    with pytest.raises(ValueError, match="1-bit"):
        encode_label(Image.new("L", (8, 8), 255))


@pytest.mark.parametrize(
    ("words", "status", "text", "blocking"),
    [
        ([], LabelPrinterStatus.CONNECTED, "", False),
        ([StatusWord.PAPER_LOW], LabelPrinterStatus.WARNING, "Paper low", False),
        ([StatusWord.PAPER_OUT], LabelPrinterStatus.NO_MEDIA, "Paper out", True),
    ],
)
def test_each_status_word_maps_to_a_status(
    words: list[StatusWord], status: LabelPrinterStatus, text: str, blocking: bool
) -> None:
    report = status_report(decode_status(encode_status(words)))
    assert (report.status, report.text, report.blocking) == (status, text, blocking)


def test_an_unknown_status_word_is_shown_and_does_not_stop_printing() -> None:
    report = status_report(decode_status(b"STATUS HEAD-HOT\n"))
    assert (report.status, report.text, report.blocking) == (
        LabelPrinterStatus.WARNING,
        "Printer reports HEAD-HOT",
        False,
    )
    with pytest.raises(ValueError, match="not a status line"):
        decode_status(b"HELLO\n")


def test_the_template_is_an_example_not_a_built_in_driver() -> None:
    assert FAMILY.driver not in builtin_driver_specs()
    assert "drivers.template" not in drivers.BUILTIN_FAMILIES


def test_listed_as_a_family_its_simulator_registers_like_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        drivers, "BUILTIN_FAMILIES", (*drivers.BUILTIN_FAMILIES, "drivers.template")
    )
    assert isinstance(make_simulator("template"), TemplateSimulator)
    assert FAMILY.driver in builtin_driver_specs()
