from __future__ import annotations

import io
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops, ImageDraw

from agent.config import JobsConfig
from agent.render import (
    DocumentError,
    PageSource,
    RenderLimits,
    RenderResult,
    open_document,
    render_document,
)
from drivers.base import PageFormat, RenderOptions
from tests.handmade_pdf import assemble_pdf, image_pdf

PDF = "application/pdf"
PNG = "image/png"
DPI = 300
MM_PER_INCH = 25.4
POINTS_PER_INCH = 72


def make_source(width: int = 120, height: int = 64) -> Image.Image:
    """A label-like bitmap (only 0 and 255): checkerboard, black bar, QR-like modules, markers."""
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for y in range(16):
        for x in range(16):
            if (x + y) % 2 == 0:
                image.putpixel((x, y), 0)
    draw.rectangle((24, 0, 29, height - 1), fill=0)
    modules = random.Random(7)
    for row in range(12):
        for col in range(12):
            if modules.random() < 0.5:
                left, top = 40 + col * 3, 4 + row * 3
                draw.rectangle((left, top, left + 2, top + 2), fill=0)
    # Asymmetric markers so every rotation and flip is told apart.
    draw.rectangle((width - 6, height - 3, width - 1, height - 1), fill=0)
    image.putpixel((width - 1, 0), 0)
    return image


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def pdf_bytes(*images: Image.Image, resolution: float = DPI) -> bytes:
    # Pillow stores "P" images losslessly (ASCIIHex); "L" would go through lossy JPEG.
    first, *rest = [image.convert("P") for image in images]
    buffer = io.BytesIO()
    first.save(buffer, "PDF", resolution=resolution, save_all=True, append_images=rest)
    return buffer.getvalue()


def blank_pdf(*sizes_mm: tuple[float, float]) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for width_mm, height_mm in sizes_mm:
        pdf.new_page(
            width_mm / MM_PER_INCH * POINTS_PER_INCH, height_mm / MM_PER_INCH * POINTS_PER_INCH
        )
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    return buffer.getvalue()


def render(
    data: bytes,
    content_type: str,
    width: int,
    height: int | None = None,
    limits: RenderLimits | None = None,
    **options: object,
) -> RenderResult:
    page_format = PageFormat(dpi=DPI, width_dots=width, height_dots=height)
    render_options = RenderOptions(**options)  # type: ignore[arg-type]
    if limits is None:
        return render_document(data, content_type, page_format, render_options)
    return render_document(data, content_type, page_format, render_options, limits=limits)


def differing_pixels(page: Image.Image, expected: Image.Image) -> int:
    assert page.size == expected.size
    difference = ImageChops.difference(page.convert("L"), expected.convert("L"))
    return page.width * page.height - difference.histogram()[0]


def black_fraction(page: Image.Image) -> float:
    return page.convert("L").histogram()[0] / (page.width * page.height)


Where = Callable[[int, int], tuple[int, int]]


def mapped(source: Image.Image, size: tuple[int, int], where: Where) -> Image.Image:
    """Build the expected page pixel by pixel: `where(x, y)` is the source pixel for (x, y)."""
    expected = Image.new("L", size, 255)
    for y in range(size[1]):
        for x in range(size[0]):
            expected.putpixel((x, y), cast(int, source.getpixel(where(x, y))))
    return expected


def test_png_renders_pixel_exact() -> None:
    source = make_source()
    result = render(png_bytes(source, dpi=(DPI, DPI)), PNG, width=source.width)
    assert result.warnings == ()
    [page] = result.pages
    assert page.mode == "1"
    assert differing_pixels(page, source) == 0


def test_pdf_image_at_page_dpi_renders_pixel_exact() -> None:
    # The image sits 1:1 on a page rendered at the same DPI with an exact scale: no tolerance is
    # needed (sizing the page box to whole dots instead shifted a column; see agent/render.py).
    source = make_source()
    [page] = render(pdf_bytes(source), PDF, width=source.width).pages
    assert page.mode == "1"
    assert page.size == source.size
    assert differing_pixels(page, source) == 0


def test_multi_page_pdf_gives_one_label_per_page() -> None:
    sources = [
        make_source(),
        ImageChops.invert(make_source()),
        make_source().transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    ]
    result = render(pdf_bytes(*sources), PDF, width=120)
    assert len(result.pages) == 3
    for page, source in zip(result.pages, sources, strict=True):
        assert differing_pixels(page, source) == 0


def test_label_pdf_in_millimetres_maps_to_whole_dots() -> None:
    # 62 x 29 mm at 300 dpi is 732.28 x 342.52 dots; the partial dot is dropped, not scaled.
    result = render(blank_pdf((62, 29)), PDF, width=732)
    assert result.warnings == ()
    assert [page.size for page in result.pages] == [(732, 342)]
    assert black_fraction(result.pages[0]) == 0


ROTATED: dict[int, Callable[[int, int], tuple[tuple[int, int], Where]]] = {
    # Clockwise, as a user turns a label: where each output pixel (x, y) comes from.
    90: lambda w, h: ((h, w), lambda x, y: (y, h - 1 - x)),
    180: lambda w, h: ((w, h), lambda x, y: (w - 1 - x, h - 1 - y)),
    270: lambda w, h: ((h, w), lambda x, y: (w - 1 - y, x)),
}


@pytest.mark.parametrize("content_type", [PNG, PDF])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_turns_the_page_clockwise(content_type: str, rotation: int) -> None:
    source = make_source()
    data = png_bytes(source) if content_type == PNG else pdf_bytes(source)
    size, where = ROTATED[rotation](source.width, source.height)
    [page] = render(data, content_type, width=size[0], rotation=rotation).pages
    assert differing_pixels(page, mapped(source, size, where)) == 0


def test_pdf_page_rotate_attribute_is_honoured() -> None:
    source = make_source()
    pdf = pdfium.PdfDocument(pdf_bytes(source))
    pdf[0].set_rotation(90)
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    size, where = ROTATED[90](source.width, source.height)
    [page] = render(buffer.getvalue(), PDF, width=size[0]).pages
    assert differing_pixels(page, mapped(source, size, where)) == 0


def test_png_exif_orientation_is_applied() -> None:
    source = make_source()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    size, where = ROTATED[90](source.width, source.height)
    [page] = render(png_bytes(source, exif=exif), PNG, width=size[0]).pages
    assert differing_pixels(page, mapped(source, size, where)) == 0


def test_threshold_is_sharp_and_configurable() -> None:
    grey = png_bytes(Image.new("L", (64, 64), 128))
    [at_128] = render(grey, PNG, width=64, threshold=128).pages
    [at_129] = render(grey, PNG, width=64, threshold=129).pages
    assert black_fraction(at_128) == 0
    assert black_fraction(at_129) == 1


def test_dither_turns_mid_grey_into_half_black() -> None:
    [page] = render(png_bytes(Image.new("L", (64, 64), 128)), PNG, width=64, dither=True).pages
    assert 0.45 < black_fraction(page) < 0.55


def test_oversized_page_is_scaled_down_with_a_warning() -> None:
    image = Image.new("L", (200, 40), 255)
    ImageDraw.Draw(image).rectangle((0, 0, 99, 39), fill=0)
    result = render(png_bytes(image), PNG, width=100)
    [page] = result.pages
    assert page.size == (100, 20)
    assert page.getpixel((10, 10)) == 0
    assert page.getpixel((90, 10)) == 255
    [warning] = result.warnings
    assert "page 1" in warning
    assert "200 x 40" in warning
    assert "100 dots wide" in warning
    assert "100 x 20" in warning


def test_oversized_pdf_page_is_scaled_and_named_in_the_warning() -> None:
    small, large = make_source(), make_source(240, 128)
    result = render(pdf_bytes(small, large), PDF, width=120)
    assert [page.size for page in result.pages] == [(120, 64), (120, 64)]
    [warning] = result.warnings
    assert warning.startswith("page 2 is 240 x 128 dots")


def test_page_taller_than_the_label_is_fitted_and_centred() -> None:
    image = Image.new("L", (50, 100), 0)
    result = render(png_bytes(image), PNG, width=100, height=50)
    [page] = result.pages
    assert page.size == (100, 50)
    expected = Image.new("L", (100, 50), 255)
    expected.paste(0, (37, 0, 62, 50))
    assert differing_pixels(page, expected) == 0
    [warning] = result.warnings
    assert "100 x 50 dots" in warning


def test_narrow_page_is_centred_on_the_full_head_width() -> None:
    [page] = render(png_bytes(Image.new("L", (50, 20), 0)), PNG, width=100).pages
    expected = Image.new("L", (100, 20), 255)
    expected.paste(0, (25, 0, 75, 20))
    assert differing_pixels(page, expected) == 0


def test_short_page_is_padded_to_the_label_height() -> None:
    [page] = render(png_bytes(Image.new("L", (100, 20), 0)), PNG, width=100, height=40).pages
    expected = Image.new("L", (100, 40), 255)
    expected.paste(0, (0, 10, 100, 30))
    assert differing_pixels(page, expected) == 0


def transparent_rgba() -> Image.Image:
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (10, 5, 20, 15))
    return image


def transparent_palette() -> Image.Image:
    # Index 0 (the background) is black but transparent; index 1 is an opaque near-black.
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 0, 0, 10, 10, 10])
    image.paste(1, (10, 5, 20, 15))
    return image


@pytest.mark.parametrize(
    "image",
    [transparent_rgba(), transparent_rgba().convert("LA"), transparent_palette()],
    ids=["RGBA", "LA", "P"],
)
def test_transparent_parts_print_white(image: Image.Image) -> None:
    params = {"transparency": 0} if image.mode == "P" else {}
    [page] = render(png_bytes(image, **params), PNG, width=40).pages
    expected = Image.new("L", (40, 20), 255)
    expected.paste(0, (10, 5, 20, 15))
    assert differing_pixels(page, expected) == 0


def test_image_dpi_different_from_the_printer_keeps_physical_size() -> None:
    source = make_source()
    [page] = render(png_bytes(source, dpi=(150, 150)), PNG, width=240).pages
    assert page.size == (240, 128)
    # An exact 2x enlargement repeats pixels, so barcode modules stay even.
    expected = mapped(source, (240, 128), lambda x, y: (x // 2, y // 2))
    assert differing_pixels(page, expected) == 0


def test_16_bit_greyscale_png_keeps_its_tones() -> None:
    image = Image.new("I;16", (20, 10), 65535)
    image.paste(20000, (0, 0, 10, 10))  # dark grey: 78 of 255
    [page] = render(png_bytes(image), PNG, width=20).pages
    expected = Image.new("L", (20, 10), 255)
    expected.paste(0, (0, 0, 10, 10))
    assert differing_pixels(page, expected) == 0


def test_jpeg_is_accepted() -> None:
    image = Image.new("RGB", (64, 32), "white")
    image.paste((0, 0, 0), (0, 0, 32, 32))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    [page] = render(buffer.getvalue(), "image/jpeg", width=64).pages
    assert page.size == (64, 32)
    assert page.getpixel((16, 16)) == 0
    assert page.getpixel((48, 16)) == 255


def test_animated_image_prints_the_first_frame_with_a_warning() -> None:
    first = Image.new("L", (20, 10), 0)
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[Image.new("L", (20, 10), 255)])
    result = render(buffer.getvalue(), "image/gif", width=20)
    [page] = result.pages
    assert black_fraction(page) == 1
    assert result.warnings == ("the image has 2 frames; only the first is printed",)


def test_content_type_parameters_and_case_are_ignored() -> None:
    result = render(blank_pdf((10, 10)), "Application/PDF; charset=binary", width=200)
    assert len(result.pages) == 1


def text_pdf(text: str) -> bytes:
    """A one-page 62 x 29 mm PDF with a line of Helvetica text and a bar, written by hand."""
    content = b"BT /F1 12 Tf 10 50 Td (%s) Tj ET\n10 10 120 20 re f" % text.encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 175.748 82.205] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return assemble_pdf(objects)


def test_concurrent_renders_in_threads_stay_correct() -> None:
    # The daemon renders on one thread, but tests and benchmarks render from several; unguarded,
    # pdfium's font handling crashes the process within a few dozen concurrent text renders.
    documents = [text_pdf("Part M3x8 screw"), text_pdf("Shelf B3, bin 17")]
    expected = [render(data, PDF, width=732).pages[0].tobytes() for data in documents]
    assert expected[0] != expected[1]

    def render_once(index: int) -> bool:
        page = render(documents[index % 2], PDF, width=732).pages[0]
        return page.tobytes() == expected[index % 2]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(render_once, range(200)))
    assert all(results)


@pytest.mark.parametrize("content_type", [PDF, PNG])
def test_empty_body_is_refused(content_type: str) -> None:
    with pytest.raises(DocumentError, match="empty"):
        render(b"", content_type, width=100)


@pytest.mark.parametrize("data", [b"%PDF-1.7\nthis is no pdf", b"\x00" * 64, b"hello"])
def test_corrupt_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentError, match="PDF cannot be read"):
        render(data, PDF, width=100)


def test_pdf_without_pages_is_refused() -> None:
    with pytest.raises(DocumentError, match="no pages"):
        render(blank_pdf(), PDF, width=100)


def test_truncated_png_is_refused() -> None:
    data = png_bytes(make_source(300, 200))
    with pytest.raises(DocumentError, match="image cannot be read"):
        render(data[: len(data) // 2], PNG, width=300)


def test_bytes_that_are_no_image_are_refused() -> None:
    with pytest.raises(DocumentError, match="image cannot be read"):
        render(blank_pdf((10, 10)), PNG, width=100)


@pytest.mark.parametrize("content_type", ["text/plain", "image/svg+xml", ""])
def test_unsupported_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(DocumentError, match="unsupported content type") as raised:
        render(png_bytes(make_source()), content_type, width=120)
    assert "application/pdf" in str(raised.value)
    assert "image/png" in str(raised.value)


def test_too_many_pages_are_refused() -> None:
    data = blank_pdf((10, 10), (10, 10), (10, 10))
    assert len(render(data, PDF, width=200, limits=RenderLimits(max_pages=3)).pages) == 3
    with pytest.raises(DocumentError, match="3 pages, more than the limit of 2"):
        render(data, PDF, width=200, limits=RenderLimits(max_pages=2))


@pytest.mark.parametrize("content_type", [PDF, PNG])
def test_page_larger_than_the_pixel_cap_is_refused(content_type: str) -> None:
    source = make_source()
    data = png_bytes(source) if content_type == PNG else pdf_bytes(source)
    limits = RenderLimits(max_page_pixels=120 * 64)
    assert len(render(data, content_type, width=120, limits=limits).pages) == 1
    with pytest.raises(DocumentError, match="too large"):
        render(data, content_type, width=120, limits=RenderLimits(max_page_pixels=120 * 63))


def test_image_larger_than_the_pixel_cap_is_refused_before_decoding() -> None:
    # The canvas would be small (scaled to 100 dots wide); the decoded source is what is capped.
    data = png_bytes(Image.new("L", (1000, 100), 255))
    with pytest.raises(DocumentError, match="1000 x 100 pixels"):
        render(data, PNG, width=100, limits=RenderLimits(max_image_pixels=50_000))


def test_document_larger_than_the_total_pixel_cap_is_refused() -> None:
    data = pdf_bytes(make_source(), make_source(), make_source())
    limits = RenderLimits(max_document_pixels=120 * 64 * 2)
    with pytest.raises(DocumentError, match="page 3 takes it past the limit"):
        render(data, PDF, width=120, limits=limits)


def open_pdf(data: bytes, width: int = 732, limits: RenderLimits | None = None) -> PageSource:
    return open_document(data, PDF, PageFormat(dpi=DPI, width_dots=width), RenderOptions(), limits)


def test_open_document_counts_pages_and_warns_before_rendering_any() -> None:
    small, large = make_source(), make_source(240, 128)
    data = pdf_bytes(small, large, small)
    with open_pdf(data, width=120) as source:
        assert source.page_count == 3
        [warning] = source.warnings
        assert warning.startswith("page 2 is 240 x 128 dots")
        # Pages render on demand, in any order and more than once, the same as all at once.
        pages = [source.render_page(index) for index in (2, 1, 0, 1)]
    expected = render(data, PDF, width=120).pages
    assert [page.tobytes() for page in pages] == [
        expected[index].tobytes() for index in (2, 1, 0, 1)
    ]
    assert all(page.mode == "1" and page.size == (120, 64) for page in pages)


@pytest.mark.parametrize("content_type", [PDF, PNG])
def test_a_page_outside_the_document_or_after_close_is_not_rendered(content_type: str) -> None:
    source_image = make_source()
    data = pdf_bytes(source_image) if content_type == PDF else png_bytes(source_image)
    page_format = PageFormat(dpi=DPI, width_dots=120)
    source = open_document(data, content_type, page_format, RenderOptions())
    assert source.page_count == 1
    with pytest.raises(IndexError):
        source.render_page(1)
    with pytest.raises(IndexError):
        source.render_page(-1)
    assert differing_pixels(source.render_page(0), source_image) == 0
    source.close()
    source.close()
    with pytest.raises(ValueError, match="closed"):
        source.render_page(0)


def test_open_document_refuses_too_many_pages() -> None:
    data = blank_pdf(*[(10, 10)] * 4)
    with pytest.raises(DocumentError, match="4 pages, more than the limit of 3"):
        open_pdf(data, limits=RenderLimits(max_pages=3))


def test_open_document_refuses_a_damaged_page() -> None:
    # The page tree lists a second page that is no page at all.
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
        b"(not a page)",
    ]
    with pytest.raises(DocumentError, match="page 2 of the PDF cannot be read"):
        open_pdf(assemble_pdf(objects))


@pytest.mark.parametrize("via", ["page", "form", "annotation", "inline"])
def test_pdf_image_with_too_many_pixels_is_refused_before_rendering(via: str) -> None:
    data = image_pdf(300, 200, pages=2, via=via, shade=0)
    with open_pdf(data, limits=RenderLimits(max_image_pixels=300 * 200)) as source:
        # The image is really drawn from there: the page prints black.
        assert black_fraction(source.render_page(1)) == 1
    with pytest.raises(
        DocumentError,
        match="an image on page 1 is too large: 300 x 200 pixels is more than the limit of 59999",
    ):
        open_pdf(data, limits=RenderLimits(max_image_pixels=300 * 200 - 1))


def test_pdf_page_whose_images_together_are_too_large_is_refused() -> None:
    data = image_pdf(300, 200, draws=3)
    limits = RenderLimits(max_image_pixels=60_000, max_page_image_pixels=180_000)
    with open_pdf(data, limits=limits) as source:
        assert source.page_count == 1
    with pytest.raises(DocumentError, match="page 1 is too large: its images have more than"):
        open_pdf(data, limits=RenderLimits(max_image_pixels=60_000, max_page_image_pixels=179_999))


def test_pdf_with_a_huge_image_is_refused_by_default() -> None:
    # 40,000 x 30,000 grey pixels in a 1.2 MB file: 1.2 GB once decoded.
    data = image_pdf(40_000, 30_000)
    with pytest.raises(DocumentError, match="40000 x 30000 pixels is more than the limit"):
        open_pdf(data)


def test_image_file_too_large_is_refused_from_its_header() -> None:
    # Only the header survives: decoding would fail, so the refusal comes before any decoding.
    data = png_bytes(Image.new("L", (5000, 5000), 255))[:200]
    with pytest.raises(DocumentError, match="the image is too large: 5000 x 5000 pixels"):
        open_document(data, PNG, PageFormat(dpi=DPI, width_dots=732), RenderOptions())


def test_limits_are_configured_in_the_jobs_section() -> None:
    config = JobsConfig.model_validate(
        {"max_pages": 3, "max_image_pixels": 50_000, "render_memory_mib": 100}
    )
    assert config.render_limits() == RenderLimits(
        max_pages=3, max_image_pixels=50_000, max_memory_bytes=100 * 1024 * 1024
    )
    with pytest.raises(DocumentError, match="4 pages, more than the limit of 3"):
        open_pdf(blank_pdf(*[(10, 10)] * 4), limits=config.render_limits())
    assert JobsConfig().render_limits() == RenderLimits()
