"""What documents the agent prints, and the error for one it cannot: light, so importing it is free.

Rendering itself (`agent.render`, with pypdfium2 and Pillow's decoders) is loaded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from PIL.Image import Image

PDF_CONTENT_TYPE = "application/pdf"
# A job already in the printer's own language, passed through untouched.
RAW_CONTENT_TYPE = "application/octet-stream"
# Content types decoded by Pillow, each mapped to its Pillow format. Only these decoders ever see
# untrusted bytes; an image whose type header is wrong but whose format is allowed is accepted.
IMAGE_CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "image/png": "PNG",
        "image/jpeg": "JPEG",
        "image/jpg": "JPEG",
        "image/gif": "GIF",
        "image/bmp": "BMP",
        "image/tiff": "TIFF",
        "image/webp": "WEBP",
    }
)


class DocumentError(ValueError):
    """The document cannot be printed as sent: empty, corrupt, of unsupported type or too large."""


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """Caps that keep one document within a small host's memory (a Raspberry Pi with 1 GB).

    They are checked when a document is opened, before anything is rendered or decoded.
    """

    # Pages in one PDF.
    max_pages: int = 1000
    # Dots of one rendered page; Pillow holds a 1-bit pixel in a byte, so 40 M is 40 MB
    # (a 62 mm label 4.6 m long at 300 dpi).
    max_page_pixels: int = 40_000_000
    # Pixels of one image: an image file, or an image inside a PDF (decoded whole, at up to 4 bytes
    # a pixel). 16 M is twice a 4 x 6 inch label at 600 dpi.
    max_image_pixels: int = 16_000_000
    # Pixels of all the images drawn on one PDF page together (counted once per use).
    max_page_image_pixels: int = 32_000_000
    # Dots of all pages together, for `render_document`, which holds every page at once; printing
    # page by page (`open_document`) holds one page at a time and ignores this.
    max_document_pixels: int = 256_000_000
    # Memory of the render worker process (RLIMIT_DATA): whatever a document makes the decoders
    # allocate, past this it is refused. None renders in the calling process, unbounded.
    max_memory_bytes: int | None = 384 * 1024 * 1024
    # Time the render worker may take to open a document, or to render one page.
    max_seconds: float = 60.0


DEFAULT_RENDER_LIMITS = RenderLimits()


class PageSource:
    """An opened, checked document that renders one 1-bit page at a time (`agent.render`).

    Pages are mode "1" (black = 0, white = 255), exactly `width_dots` wide, laid out for the page
    format and options the document was opened with: one such plane per colour of the format
    (`PageFormat.colors`). Blocking: use it on the render thread. `close()` (or leaving the
    `with` block) frees the decoders' memory; a closed source renders nothing.
    """

    page_count: int
    warnings: tuple[str, ...]

    def render_planes(self, index: int) -> tuple[Image, ...]:
        """Render page `index` (0-based), one plane per colour of the page format, in its order.

        IndexError outside `range(page_count)`.
        """
        raise NotImplementedError

    def render_page(self, index: int) -> Image:
        """Render page `index` as one plane: every colour's ink in black (see `flatten`)."""
        return flatten(self.render_planes(index))

    def close(self) -> None:
        """Free the document; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def flatten(planes: Sequence[Image]) -> Image:
    """One 1-bit page with the ink of every plane (black where any plane is black)."""
    if len(planes) == 1:
        return planes[0]
    from PIL import ImageChops

    page = planes[0]
    for plane in planes[1:]:
        # On mode "1" images, "and" keeps white only where both planes are white.
        page = ImageChops.logical_and(page, plane)
    return page
