"""Documents (PDF, PNG and other images) to 1-bit label pages at a printer's resolution."""

from __future__ import annotations

import ctypes
import io
import math
import numbers
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import ExifTags, Image, ImageChops, UnidentifiedImageError

from agent.documents import (
    DEFAULT_RENDER_LIMITS,
    IMAGE_CONTENT_TYPES,
    PDF_CONTENT_TYPE,
    DocumentError,
    PageSource,
    RenderLimits,
)
from agent.render_worker import IsolatedPages
from drivers.base import PAGE_COLORS, PageFormat, RenderOptions

__all__ = [
    "DEFAULT_LIMITS",
    "DocumentError",
    "PageSource",
    "RenderLimits",
    "RenderResult",
    "open_document",
    "open_in_process",
    "render_document",
]

Image.init()
# A Pillow built without one of the decoders (WEBP is optional) refuses that type, not all of them.
_PILLOW_FORMATS = sorted({name for name in IMAGE_CONTENT_TYPES.values() if name in Image.OPEN})


DEFAULT_LIMITS = DEFAULT_RENDER_LIMITS


def open_document(
    document: bytes,
    content_type: str,
    page_format: PageFormat,
    options: RenderOptions,
    limits: RenderLimits | None = None,
) -> PageSource:
    """Open and check a PDF or image without rendering its pages; blocking, so call it in a thread.

    The document is opened in the render worker, a child process whose memory is capped by
    `limits.max_memory_bytes` (see `agent.render_worker`); in this process when that is None.

    Raises DocumentError for an empty, damaged or unsupported document, and for one past `limits`:
    too many pages, a page too large, an image (file, or inside a PDF page, its form XObjects or
    annotations) with too many pixels. Warnings (pages scaled down) are known on return.

    Each page is rotated clockwise by `options.rotation`, composited onto white, scaled down (with a
    warning, never cropped) if larger than the printable area, centred on a canvas exactly
    `width_dots` wide (and `height_dots` high when set), then thresholded (grey darker than
    `threshold` prints black) or Floyd-Steinberg dithered. PDF pages are sized by their page box
    at `page_format.dpi`, a partial dot at the edge dropped. An image is taken pixel for pixel
    unless it states a DPI that differs from the printer's: then it is resampled to keep its
    physical size (a 150 dpi image prints twice as many dots wide at 300 dpi).

    With two colours in `page_format.colors`, each page is drawn in RGB and split into a black
    and a red plane (`RED_MIN_EXCESS`); `render_planes` gives both, `render_page` one with both.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    _check_type(document, content_type)
    if limits.max_memory_bytes is None:
        return open_in_process(document, content_type, page_format, options, limits)
    return IsolatedPages(document, content_type, page_format, options, limits)


def open_in_process(
    document: bytes,
    content_type: str,
    page_format: PageFormat,
    options: RenderOptions,
    limits: RenderLimits,
) -> PageSource:
    """`open_document` in this process: its memory is not capped (the render worker uses it)."""
    kind = _check_type(document, content_type)
    layout = _Layouter(page_format, options, limits)
    if kind == PDF_CONTENT_TYPE:
        return _PdfPages(document, layout)
    return _ImagePage(document, layout)


def _check_type(document: bytes, content_type: str) -> str:
    """The document's media type, if it is one rendered here; DocumentError otherwise."""
    if not document:
        raise DocumentError("the document is empty")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != PDF_CONTENT_TYPE and kind not in IMAGE_CONTENT_TYPES:
        supported = ", ".join([PDF_CONTENT_TYPE, *sorted(IMAGE_CONTENT_TYPES)])
        raise DocumentError(f"unsupported content type {content_type!r}; send one of: {supported}")
    return kind


@dataclass(frozen=True, slots=True)
class RenderResult:
    """Rendered pages (mode "1", black = 0, exactly `width_dots` wide) and what was changed."""

    pages: tuple[Image.Image, ...]
    warnings: tuple[str, ...]


def render_document(
    data: bytes,
    content_type: str,
    page_format: PageFormat,
    options: RenderOptions,
    *,
    limits: RenderLimits = DEFAULT_LIMITS,
) -> RenderResult:
    """Render every page of a document at once (see `open_document`) and keep them all.

    All pages stay in memory, so their total is capped by `limits.max_document_pixels` too.
    """
    with open_document(data, content_type, page_format, options, limits) as source:
        pages: list[Image.Image] = []
        total = 0
        for index in range(source.page_count):
            page = source.render_page(index)
            total += page.width * page.height
            if total > limits.max_document_pixels:
                raise DocumentError(
                    f"the document is too large: page {index + 1} takes it past the limit of "
                    f"{limits.max_document_pixels} pixels"
                )
            pages.append(page)
        return RenderResult(pages=tuple(pages), warnings=source.warnings)


# pdfium keeps global state and is not thread-safe, even across separate documents. The agent
# renders on one thread, but tests and benchmarks call in from several: every pdfium call holds this.
_PDFIUM_LOCK = threading.Lock()
_PDFIUM_WHITE = 0xFFFFFFFF
_WHITE = 255
_PDFIUM_FLAGS = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_GRAYSCALE
_PDFIUM_COLOUR_FLAGS = pdfium_c.FPDF_ANNOT
_POINTS_PER_INCH = 72
# PDF writers round page boxes to a few decimals: 731.9999 dots is a whole 732-dot page.
_DOT_TOLERANCE = 0.01
# Clockwise rotation, as the user means it; Pillow's ROTATE_n turns counter-clockwise.
_ROTATIONS: Mapping[int, Image.Transpose | None] = MappingProxyType(
    {
        0: None,
        90: Image.Transpose.ROTATE_270,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_90,
    }
)
# EXIF orientation tag values (2-8) to the transposition that shows the image upright.
_EXIF_TRANSPOSE: Mapping[int, Image.Transpose] = MappingProxyType(
    {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Two-colour pages: a pixel is red when its red channel exceeds both green and blue by at least
# this much (of 255). Pure and dark reds, vermilion and orange qualify; pink, brown, magenta and
# greys do not (they print black or white by their grey, as on a one-colour printer).
RED_MIN_EXCESS = 96
# Drawing objects inspected on one PDF page (nested forms included) before it is refused as a bomb.
_MAX_PAGE_OBJECTS = 1_000_000


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where one page goes, in dots: the size to draw before rotation, its scale, and the canvas."""

    draw_size: tuple[int, int]
    factor: float
    canvas: tuple[int, int]


class _Layouter:
    """Lays out and finishes pages for one page format and set of options; enforces the limits."""

    def __init__(self, page_format: PageFormat, options: RenderOptions, limits: RenderLimits):
        if options.rotation not in _ROTATIONS:
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {options.rotation!r}")
        if tuple(page_format.colors) not in PAGE_COLORS:
            known = " or ".join(str(list(colors)) for colors in PAGE_COLORS)
            raise ValueError(f"page colours must be {known}, not {list(page_format.colors)!r}")
        # Two-colour pages are drawn in RGB and split into planes; others straight in grey.
        self.colour = len(page_format.colors) > 1
        self.format = page_format
        self.options = options
        self.limits = limits
        self.warnings: list[str] = []

    def check_count(self, count: int) -> None:
        if count > self.limits.max_pages:
            raise DocumentError(
                f"the document has {count} pages, more than the limit of {self.limits.max_pages}"
            )

    def check_image(self, what: str, width: int, height: int) -> None:
        """Refuse an image whose decoded pixels would pass the limit."""
        if width * height > self.limits.max_image_pixels:
            raise DocumentError(
                f"{what} is too large: {width} x {height} pixels is more than the limit of "
                f"{self.limits.max_image_pixels} pixels"
            )

    def layout(self, number: int, width: float, height: float) -> _Layout:
        """Fit a page of `width` x `height` dots (before rotation); warn when it is scaled down."""
        page_w, page_h = _dots(width), _dots(height)
        if self.options.rotation in (90, 270):
            page_w, page_h = page_h, page_w
        max_w, max_h = self.format.width_dots, self.format.height_dots
        factor = min(1.0, max_w / page_w, max_h / page_h if max_h else 1.0)
        draw_w, draw_h = page_w, page_h
        if factor < 1.0:
            draw_w = max(1, min(max_w, round(page_w * factor)))
            draw_h = max(1, round(page_h * factor))
        canvas = (max_w, max(draw_h, max_h or 0))
        pixels = canvas[0] * canvas[1]
        if pixels > self.limits.max_page_pixels:
            raise DocumentError(
                f"page {number} is too large: {canvas[0]} x {canvas[1]} dots is more than "
                f"the limit of {self.limits.max_page_pixels} pixels"
            )
        if factor < 1.0:
            printable = f"{max_w} x {max_h} dots" if max_h else f"{max_w} dots wide"
            self.warnings.append(
                f"page {number} is {page_w} x {page_h} dots, larger than the printable "
                f"{printable}; scaled down to {draw_w} x {draw_h} dots"
            )
        if self.options.rotation in (90, 270):
            draw_w, draw_h = draw_h, draw_w
        return _Layout(draw_size=(draw_w, draw_h), factor=factor, canvas=canvas)

    def finish(self, drawn: Image.Image, layout: _Layout) -> tuple[Image.Image, ...]:
        """Finish a page drawn at `layout.draw_size`: rotate, split, 1-bit, centre.

        `drawn` is grey, or RGB for two colours, which is split into the format's colour planes.
        """
        transpose = _ROTATIONS[self.options.rotation]
        if transpose is not None:
            drawn = drawn.transpose(transpose)
        if self.colour:
            grey, red = _split_red(drawn)
            return (self._centred(self._one_bit(grey), layout), self._centred(red, layout))
        return (self._centred(self._one_bit(drawn), layout),)

    def _one_bit(self, grey: Image.Image) -> Image.Image:
        if self.options.dither:
            return grey.convert("1", dither=Image.Dither.FLOYDSTEINBERG)
        threshold = self.options.threshold
        return grey.point([0 if value < threshold else 255 for value in range(256)], "1")

    @staticmethod
    def _centred(page: Image.Image, layout: _Layout) -> Image.Image:
        if page.size == layout.canvas:
            return page
        # Mode "1" white is 255: any other non-zero value is read back as ink by encoders.
        canvas = Image.new("1", layout.canvas, _WHITE)
        canvas.paste(
            page,
            ((layout.canvas[0] - page.width) // 2, (layout.canvas[1] - page.height) // 2),
        )
        return canvas


def _split_red(rgb: Image.Image) -> tuple[Image.Image, Image.Image]:
    """An RGB page as (grey without its red pixels, 1-bit red plane with red = 0).

    Red pixels (see `RED_MIN_EXCESS`) are white in the grey image, so no dot gets both colours.
    """
    r, g, b = rgb.split()
    excess = ImageChops.subtract(r, ImageChops.lighter(g, b))
    is_red = excess.point([255 if value >= RED_MIN_EXCESS else 0 for value in range(256)])
    grey = rgb.convert("L")
    grey.paste(_WHITE, mask=is_red)
    red = is_red.point([255 if value else 0 for value in range(256)], "1")
    return grey, ImageChops.invert(red)


class _PdfPages(PageSource):
    """A PDF held open in pdfium; every page checked and laid out at open, rendered on demand."""

    def __init__(self, data: bytes, layouter: _Layouter) -> None:
        self._layouter = layouter
        with _PDFIUM_LOCK:
            self._pdf: pdfium.PdfDocument | None = _open_pdf(data)
        try:
            with _PDFIUM_LOCK:
                count = len(self._pdf)
            layouter.check_count(count)
            layouts = []
            for index in range(count):
                # One page at a time, with the lock released between pages so other jobs interleave.
                with _PDFIUM_LOCK:
                    layouts.append(_check_pdf_page(self._pdf, index, layouter))
        except BaseException:
            self.close()
            raise
        self._layouts: tuple[_Layout, ...] = tuple(layouts)
        self.page_count = count
        self.warnings = tuple(layouter.warnings)

    def render_planes(self, index: int) -> tuple[Image.Image, ...]:
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} is outside the document's {self.page_count}")
        layout = self._layouts[index]
        if self._pdf is None:
            raise ValueError("the document is closed")
        layouter = self._layouter
        with _PDFIUM_LOCK:
            drawn = _render_pdf_page(
                self._pdf, index, layout, layouter.format.dpi, colour=layouter.colour
            )
        return layouter.finish(drawn, layout)

    def close(self) -> None:
        pdf, self._pdf = self._pdf, None
        if pdf is not None:
            with _PDFIUM_LOCK:
                pdf.close()


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as err:
        failure = err
    # pypdfium2 refuses a PDF without pages as a load failure, and pdfium's last-error code is
    # stale then (a load that succeeds does not reset it): load it bare to tell the two apart.
    bare = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if bare:
        pdfium_c.FPDF_CloseDocument(bare)
        raise DocumentError("the PDF has no pages") from failure
    raise DocumentError(f"the PDF cannot be read: {failure}") from failure


def _load_page(pdf: pdfium.PdfDocument, index: int) -> pdfium.PdfPage:
    try:
        return pdf.get_page(index)
    except pdfium.PdfiumError as err:
        raise DocumentError(f"page {index + 1} of the PDF cannot be read") from err


def _check_pdf_page(pdf: pdfium.PdfDocument, index: int, layouter: _Layouter) -> _Layout:
    """Lay out one page and refuse it if its images are too large, without decoding them."""
    page = _load_page(pdf, index)
    try:
        # The size includes the page's own /Rotate, which rendering applies too.
        width_pt, height_pt = page.get_size()
        scale = layouter.format.dpi / _POINTS_PER_INCH
        layout = layouter.layout(index + 1, width_pt * scale, height_pt * scale)
        total = 0
        for width, height in _page_image_sizes(page):
            layouter.check_image(f"an image on page {index + 1}", width, height)
            total += width * height
            if total > layouter.limits.max_page_image_pixels:
                raise DocumentError(
                    f"page {index + 1} is too large: its images have more than the limit of "
                    f"{layouter.limits.max_page_image_pixels} pixels together"
                )
    finally:
        page.close()
    return layout


def _page_image_sizes(page: pdfium.PdfPage) -> list[tuple[int, int]]:
    """Pixel sizes of the images a page draws: in its content, form XObjects and annotations.

    pdfium decodes an image whole when it draws it, so this is what rendering will allocate.
    """
    sizes: list[tuple[int, int]] = []
    budget = [_MAX_PAGE_OBJECTS]
    count = pdfium_c.FPDFPage_CountObjects(page.raw)
    _image_sizes([pdfium_c.FPDFPage_GetObject(page.raw, i) for i in range(count)], sizes, budget)
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page.raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        if not annot:
            continue
        # An annotation's objects live in its appearance form, which closing the annotation frees.
        try:
            count = pdfium_c.FPDFAnnot_GetObjectCount(annot)
            _image_sizes(
                [pdfium_c.FPDFAnnot_GetObject(annot, i) for i in range(count)], sizes, budget
            )
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return sizes


def _image_sizes(objects: list[Any], sizes: list[tuple[int, int]], budget: list[int]) -> None:
    """Append the pixel sizes of the image objects among `objects`, forms searched through."""
    width, height = ctypes.c_uint(), ctypes.c_uint()
    stack = [obj for obj in objects if obj]
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            raise DocumentError(f"a page has more than {_MAX_PAGE_OBJECTS} drawing objects")
        obj = stack.pop()
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            if pdfium_c.FPDFImageObj_GetImagePixelSize(
                obj, ctypes.byref(width), ctypes.byref(height)
            ):
                sizes.append((width.value, height.value))
        elif kind == pdfium_c.FPDF_PAGEOBJ_FORM:
            count = pdfium_c.FPDFFormObj_CountObjects(obj)
            children = (pdfium_c.FPDFFormObj_GetObject(obj, i) for i in range(count))
            stack.extend(child for child in children if child)


def _render_pdf_page(
    pdf: pdfium.PdfDocument, index: int, layout: _Layout, dpi: int, *, colour: bool
) -> Image.Image:
    """The page drawn at `layout.draw_size`: grey, or RGB when `colour`."""
    page = _load_page(pdf, index)
    try:
        # Rendering straight at the fitted size keeps oversized vector pages sharp. The exact
        # scale goes in as a matrix: fitting the page box to a whole number of dots instead
        # stretches it by a hair, and pdfium then doubles or drops a column of image pixels.
        scale = dpi / _POINTS_PER_INCH * layout.factor
        width, height = layout.draw_size
        matrix = pdfium_c.FS_MATRIX(scale, 0, 0, scale, 0, 0)
        clip = pdfium_c.FS_RECTF(0, 0, width, height)
        kind, flags = (
            (pdfium_c.FPDFBitmap_BGR, _PDFIUM_COLOUR_FLAGS)
            if colour
            else (pdfium_c.FPDFBitmap_Gray, _PDFIUM_FLAGS)
        )
        bitmap = pdfium.PdfBitmap.new_native(width, height, kind)
        try:
            pdfium_c.FPDFBitmap_FillRect(bitmap.raw, 0, 0, width, height, _PDFIUM_WHITE)
            pdfium_c.FPDF_RenderPageBitmapWithMatrix(
                bitmap.raw, page.raw, ctypes.byref(matrix), ctypes.byref(clip), flags
            )
            # to_pil() shares pdfium's buffer, which close() frees: copy it out first.
            drawn: Image.Image = bitmap.to_pil().copy()
        finally:
            bitmap.close()
    finally:
        page.close()
    return drawn


class _ImagePage(PageSource):
    """An image file: its size checked from the header, then decoded and finished at open.

    It is one page, so it is done at once: a damaged image is refused before the job is accepted.
    """

    def __init__(self, data: bytes, layouter: _Layouter) -> None:
        self._planes: tuple[Image.Image, ...] | None = _render_image(data, layouter)
        self.page_count = 1
        self.warnings = tuple(layouter.warnings)

    def render_planes(self, index: int) -> tuple[Image.Image, ...]:
        if index != 0:
            raise IndexError(f"page index {index} is outside the image's one page")
        if self._planes is None:
            raise ValueError("the document is closed")
        return tuple(plane.copy() for plane in self._planes)

    def close(self) -> None:
        self._planes = None


def _render_image(data: bytes, layouter: _Layouter) -> tuple[Image.Image, ...]:
    try:
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as err:
        raise DocumentError(f"the image is too large: {err}") from err
    except UnidentifiedImageError as err:
        formats = ", ".join(_PILLOW_FORMATS)
        raise DocumentError(f"the image cannot be read: it is not a valid {formats} image") from err
    except Exception as err:  # Pillow's decoders raise many types on bad input
        raise DocumentError(f"the image cannot be read: {err}") from err
    with image:
        # Opening read only the header: the size is known before a pixel is decoded.
        layouter.check_image("the image", image.width, image.height)
        try:
            frames: int = getattr(image, "n_frames", 1)
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            drawn = _to_rgb(image) if layouter.colour else _to_grey(image)
        except Exception as err:  # Pillow's decoders raise many types on bad input
            raise DocumentError(f"the image cannot be read: {err}") from err
        if frames > 1:
            layouter.warnings.append(f"the image has {frames} frames; only the first is printed")
        dpi_x, dpi_y = _image_dpi(image, layouter.format.dpi)
    exif_transpose = _EXIF_TRANSPOSE.get(orientation)
    if exif_transpose is not None:
        drawn = drawn.transpose(exif_transpose)
        if orientation >= 5:
            dpi_x, dpi_y = dpi_y, dpi_x
    dpi = layouter.format.dpi
    layout = layouter.layout(1, drawn.width * dpi / dpi_x, drawn.height * dpi / dpi_y)
    if drawn.size != layout.draw_size:
        drawn = drawn.resize(layout.draw_size, _resample(drawn.size, layout.draw_size))
    return layouter.finish(drawn, layout)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert to mode "RGB", compositing transparent parts onto white."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        return _to_grey(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", image.size, (255, 255, 255))
        rgb.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return rgb
    return image.convert("RGB")


def _to_grey(image: Image.Image) -> Image.Image:
    """Convert to mode "L", compositing transparent parts onto white."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        # 16-bit greyscale (PNG): Pillow's convert("L") clips to 255 instead of scaling down.
        return image.point(lambda value: value / 257).convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        grey = Image.new("L", image.size, 255)
        grey.paste(rgba.convert("L"), mask=rgba.getchannel("A"))
        return grey
    return image.convert("L")


def _image_dpi(image: Image.Image, page_dpi: int) -> tuple[int, int]:
    """Return the image's own DPI per axis, or the page DPI where it states none (or nonsense)."""
    stated = image.info.get("dpi")
    if not isinstance(stated, tuple) or len(stated) != 2:
        return page_dpi, page_dpi
    return _sane_dpi(stated[0], page_dpi), _sane_dpi(stated[1], page_dpi)


def _sane_dpi(value: object, page_dpi: int) -> int:
    # TIFF states DPI as a rational, PNG as pixels per metre (300 dpi reads back as 299.9994):
    # whole numbers are what was meant.
    if not isinstance(value, numbers.Real):
        return page_dpi
    dpi = round(float(value))
    return dpi if 1 <= dpi <= 100_000 else page_dpi


def _resample(source: tuple[int, int], target: tuple[int, int]) -> Image.Resampling:
    """Whole-number enlargements repeat pixels, so barcode modules stay exactly even."""
    if target[0] % source[0] == 0 and target[1] % source[1] == 0:
        return Image.Resampling.NEAREST
    return Image.Resampling.LANCZOS


def _dots(length: float) -> int:
    return max(1, math.floor(length + _DOT_TOLERANCE))
