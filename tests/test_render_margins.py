"""Margins print white: a page smaller than the label, decoded from the bytes the printer receives.

A page narrower or shorter than the label is centred on the label; what is around it must be
paper, never ink, whatever the driver, the input (PDF or image) or the rotation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image, ImageChops, ImageDraw

from agent.render import RenderLimits, open_document
from drivers.base import PageFormat, RenderOptions
from drivers.sim import serve_tcp
from tests import zebra_reference
from tests.conftest import Headers, create_machine, wait_for_job
from tests.simulator_tap import Tap
from tests.test_drivers_e2e import simulator_of, wait_for_machine

Client = TestClient[Any, Any]
PDF = "application/pdf"
PNG = "image/png"


@dataclass(frozen=True)
class Case:
    """A label printer set up with a label larger than the page sent to it."""

    driver: str
    settings: dict[str, str]
    dpi: int
    page: tuple[int, int]  # the document's page, in the printer's dots
    label: tuple[int, int]  # what the printer must print, in dots


CASES = {
    # InvenTree's usual 62 x 29 mm template on a 62 x 29 mm label at 12 dots/mm (300 dpi): the
    # page box is 732.3 x 342.5 dots, the label 744 x 348.
    "zpl-62mm": Case(
        "zpl",
        {"DPMM": "12", "LABEL_WIDTH_MM": "62", "LABEL_HEIGHT_MM": "29"},
        300,
        (732, 342),
        (744, 348),
    ),
    # A 58 mm receipt on an 80 mm roll at 203 dpi: 463 dots on a 576-dot head.
    "escpos-80mm": Case(
        "escpos", {"PAPER_WIDTH_MM": "80", "DPI": "203"}, 203, (463, 240), (576, 240)
    ),
}


def framed(size: tuple[int, int]) -> Image.Image:
    """A page with a black frame on its edge and a mark near its top left corner."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=0)
    draw.rectangle((10, 10, 40, 30), fill=0)
    return image


def centred(page: Image.Image, label: tuple[int, int]) -> Image.Image:
    """What the printer must print: the page in the middle of a white label."""
    expected = Image.new("L", label, 255)
    expected.paste(page, ((label[0] - page.width) // 2, (label[1] - page.height) // 2))
    return expected


def document(image: Image.Image, content_type: str, dpi: int) -> bytes:
    buffer = io.BytesIO()
    if content_type == PDF:
        image.convert("P").save(buffer, "PDF", resolution=dpi)
    else:
        image.save(buffer, "PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def ink_where_expected_paper(printed: Image.Image, expected: Image.Image) -> int:
    """Dots printed black where the expected label is white (and the other way round)."""
    assert printed.size == expected.size
    difference = ImageChops.difference(printed.convert("L"), expected.convert("L"))
    return printed.width * printed.height - difference.histogram()[0]


@pytest.mark.parametrize("content_type", [PDF, PNG])
@pytest.mark.parametrize("case_name", sorted(CASES))
async def test_margins_around_a_small_page_print_white(
    client: Client,
    admin: Headers,
    case_name: str,
    content_type: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[case_name]
    sim = simulator_of(case.driver)
    tap = Tap(sim, monkeypatch)
    page = framed(case.page)
    async with await serve_tcp(sim) as server:
        machine = await create_machine(client, admin, name="small-page", driver=case.driver)
        pk = machine["pk"]
        settings = {"POLL_INTERVAL": "3600", **case.settings, "CONNECTION": server.url}
        for key, value in settings.items():
            resp = await client.put(
                f"/api/machine/{pk}/settings/D/{key}/", json={"value": value}, headers=admin
            )
            assert resp.status == 200, await resp.text()
        await wait_for_machine(client, admin, pk, lambda m: m["status"] == 100)
        resp = await client.post(
            f"/api/machine/{pk}/print/",
            data=document(page, content_type, case.dpi),
            headers={**admin, "Content-Type": content_type},
        )
        assert resp.status == 201, await resp.text()
        job = await wait_for_job(client, admin, (await resp.json())["pk"], ("complete", "failed"))
        assert job["status"] == "complete", job
    expected = centred(page, case.label)
    [label] = sim.labels
    assert label.image.size == case.label
    assert ink_where_expected_paper(label.image, expected) == 0
    if case.driver == "zpl":
        # The simulator's ^GF decoder lives beside our encoder; read the bytes independently too.
        [read] = zebra_reference.labels(tap.received)
        assert ink_where_expected_paper(read, expected) == 0


@pytest.mark.parametrize("content_type", [PDF, PNG])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rendered_margins_are_white_pixels_for_every_rotation(
    content_type: str, rotation: int
) -> None:
    # Pillow's mode "1" holds 0 (black) or 255 (white); encoders invert the bytes, so any other
    # value (1, once used for the margins) turns into ink.
    page = framed((120, 64))
    turned = page.rotate(-rotation, expand=True)
    label = (turned.width + 20, turned.height + 10)
    page_format = PageFormat(dpi=300, width_dots=label[0], height_dots=label[1])
    options = RenderOptions(rotation=rotation)
    # In this process: the render worker sends pages back as packed bits, which would turn any
    # non-zero value into 255 on the way and hide a wrong canvas value.
    in_process = RenderLimits(max_memory_bytes=None)
    with open_document(
        document(page, content_type, 300), content_type, page_format, options, in_process
    ) as src:
        rendered = src.render_page(0)
    assert set(rendered.get_flattened_data()) == {0, 255}
    assert ImageChops.invert(rendered).getbbox() is not None
    expected = centred(turned, label).convert("1")
    # Compared the way an encoder reads the page: inverted, so that 1 = ink.
    assert list(ImageChops.invert(rendered).get_flattened_data()) == list(
        ImageChops.invert(expected).get_flattened_data()
    )
