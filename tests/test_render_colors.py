"""Two-colour pages: a PDF or PNG with red and black drawn as a black and a red 1-bit plane."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image, ImageDraw

from agent.appkeys import SETTINGS
from agent.documents import flatten
from agent.render import RED_MIN_EXCESS, RenderLimits, open_document
from drivers.base import BLACK_AND_RED, PageFormat, RenderOptions
from tests.conftest import Headers, create_machine, wait_for_job
from tests.handmade_pdf import assemble_pdf

Client = TestClient[Any, Any]

IN_PROCESS = RenderLimits(max_memory_bytes=None)
# 72 x 36 pt at 300 dpi: 300 x 150 dots.
TWO_COLOURS = PageFormat(dpi=300, width_dots=300, height_dots=150, colors=BLACK_AND_RED)
ONE_COLOUR = PageFormat(dpi=300, width_dots=300, height_dots=150)
# Filled rectangles (x from, x to in dots; all from row 25 to row 125) and their colour.
SWATCHES = {
    "black": ((25, 75), (0, 0, 0)),
    "red": ((100, 150), (255, 0, 0)),
    "dark red": ((175, 200), (140, 0, 0)),
    "pink": ((225, 250), (255, 191, 204)),
    "brown": ((258, 283), (140, 69, 18)),
}
# Where each swatch should land: (ink on the black plane, ink on the red plane).
EXPECTED = {
    "black": (True, False),
    "red": (False, True),
    "dark red": (False, True),
    "pink": (False, False),
    "brown": (True, False),
}
ROW = 75


def swatch_pdf() -> bytes:
    """A vector PDF, 72 x 36 pt, with the swatches as filled rectangles."""
    ops = []
    for (x0, x1), rgb in SWATCHES.values():
        colour = " ".join(f"{c / 255:.4f}" for c in rgb)
        # Dots to points (72/300); PDF's y axis points up: rows 25-125 are y 6-30 pt.
        ops.append(f"{colour} rg {x0 * 0.24:.2f} 6 {(x1 - x0) * 0.24:.2f} 24 re f")
    content = "\n".join(ops).encode()
    return assemble_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 36] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        ]
    )


def swatch_png(mode: str = "RGB") -> bytes:
    image = Image.new("RGB", (300, 150), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for (x0, x1), rgb in SWATCHES.values():
        draw.rectangle((x0, 25, x1 - 1, 124), fill=rgb)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def ink(plane: Image.Image, x: int, y: int = ROW) -> bool:
    return plane.getpixel((x, y)) == 0


def assert_swatches(planes: tuple[Image.Image, ...]) -> None:
    black, red = planes
    assert black.mode == red.mode == "1"
    assert black.size == red.size == (300, 150)
    for name, ((x0, x1), _) in SWATCHES.items():
        middle = (x0 + x1) // 2
        assert (ink(black, middle), ink(red, middle)) == EXPECTED[name], name
    # The margins are white on both planes, and no dot is inked twice.
    assert not ink(black, 5)
    assert not ink(red, 5)
    assert not ink(black, 125, 10)
    assert not ink(red, 125, 10)
    both = [
        (x, y)
        for y in range(150)
        for x in range(300)
        if black.getpixel((x, y)) == 0 and red.getpixel((x, y)) == 0
    ]
    assert both == []


@pytest.mark.parametrize("limits", [IN_PROCESS, RenderLimits()], ids=["in-process", "worker"])
def test_a_pdf_with_red_and_black_becomes_two_planes(limits: RenderLimits) -> None:
    with open_document(swatch_pdf(), "application/pdf", TWO_COLOURS, RenderOptions(), limits) as s:
        planes = s.render_planes(0)
        assert_swatches(planes)
        # One plane for drivers that take one: every colour's ink in black.
        assert s.render_page(0).tobytes() == flatten(planes).tobytes()
        assert ink(s.render_page(0), 125)
        assert ink(s.render_page(0), 50)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
@pytest.mark.parametrize("limits", [IN_PROCESS, RenderLimits()], ids=["in-process", "worker"])
def test_a_png_with_red_and_black_becomes_two_planes(limits: RenderLimits, mode: str) -> None:
    with open_document(swatch_png(mode), "image/png", TWO_COLOURS, RenderOptions(), limits) as s:
        assert_swatches(s.render_planes(0))


def test_the_worker_sends_the_same_planes_as_the_renderer() -> None:
    pdf = swatch_pdf()
    with open_document(pdf, "application/pdf", TWO_COLOURS, RenderOptions(), IN_PROCESS) as local:
        expected = [plane.tobytes() for plane in local.render_planes(0)]
    with open_document(pdf, "application/pdf", TWO_COLOURS, RenderOptions(), RenderLimits()) as s:
        assert [plane.tobytes() for plane in s.render_planes(0)] == expected


def test_one_colour_printers_get_one_plane_with_red_in_black() -> None:
    with open_document(swatch_pdf(), "application/pdf", ONE_COLOUR, RenderOptions()) as source:
        (page,) = source.render_planes(0)
        assert source.render_page(0).tobytes() == page.tobytes()
    for name, ((x0, x1), _) in SWATCHES.items():
        # Red is darker than the threshold: black, as before two-colour pages existed.
        assert ink(page, (x0 + x1) // 2) == (name != "pink"), name


def test_rotation_and_centring_move_both_planes_together() -> None:
    # Rotated 180 degrees, the red swatch (columns 100-149) lands on columns 150-199.
    options = RenderOptions(rotation=180)
    with open_document(swatch_pdf(), "application/pdf", TWO_COLOURS, options) as source:
        black, red = source.render_planes(0)
    assert ink(red, 175)
    assert not ink(red, 125)
    assert ink(black, 250)
    assert not ink(black, 50)
    wider = PageFormat(dpi=300, width_dots=400, height_dots=150, colors=BLACK_AND_RED)
    with open_document(swatch_png(), "image/png", wider, RenderOptions()) as source:
        black, red = source.render_planes(0)
    # Centred on a canvas 100 dots wider: 50 dots to the right on both planes.
    assert black.size == red.size == (400, 150)
    assert ink(red, 175)
    assert not ink(red, 125)
    assert ink(black, 100)


def test_the_red_rule_is_the_documented_excess() -> None:
    # Just at and just under the excess of red over green and blue.
    at, under = (RED_MIN_EXCESS + 40, 40, 40), (RED_MIN_EXCESS + 39, 40, 40)
    image = Image.new("RGB", (2, 1), at)
    image.putpixel((1, 0), under)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    page = PageFormat(dpi=300, width_dots=2, colors=BLACK_AND_RED)
    with open_document(buffer.getvalue(), "image/png", page, RenderOptions()) as source:
        black, red = source.render_planes(0)
    assert (ink(red, 0, 0), ink(red, 1, 0)) == (True, False)
    # The one that is not red is dark: black.
    assert (ink(black, 0, 0), ink(black, 1, 0)) == (False, True)


def test_a_page_format_with_other_colours_is_refused() -> None:
    page = PageFormat(dpi=300, width_dots=300, colors=("red",))
    with pytest.raises(ValueError, match="page colours must be"):
        open_document(swatch_png(), "image/png", page, RenderOptions(), IN_PROCESS)


async def test_a_two_colour_job_prints_both_planes_through_the_queue(
    client: Client, admin: Headers
) -> None:
    """API -> queue -> render worker -> `PrintJob.planes` -> the virtual printer's RGB PNG."""
    machine = await create_machine(client, admin, name="two-colour")
    for key, value in (("COLORS", "black-red"), ("LABEL_WIDTH_MM", "25"), ("LABEL_HEIGHT_MM", "0")):
        resp = await client.put(
            f"/api/machine/{machine['pk']}/settings/D/{key}/",
            json={"value": value},
            headers=admin,
        )
        assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=swatch_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201, await resp.text()
    job = await wait_for_job(client, admin, (await resp.json())["pk"], ("complete",))
    folder = client.app[SETTINGS].storage.path / "virtual" / f"two-colour-{machine['pk']}"
    with Image.open(folder / f"{job['pk']}-1.png") as printed:
        # 25 mm at 300 dpi is 295 dots: the 300-dot page is scaled down, by a hair.
        assert printed.mode == "RGB"
        assert printed.size[0] == 295
        colours = {
            name: printed.getpixel((round((x0 + x1) / 2 * 295 / 300), ROW * 295 // 300))
            for name, ((x0, x1), _) in SWATCHES.items()
        }
    assert colours == {
        "black": (0, 0, 0),
        "red": (255, 0, 0),
        "dark red": (255, 0, 0),
        "pink": (255, 255, 255),
        "brown": (0, 0, 0),
    }
