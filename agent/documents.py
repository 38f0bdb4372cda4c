"""What documents the agent prints, and the error for one it cannot: light, so importing it is free.

Rendering itself (`agent.render`, with pypdfium2 and Pillow's decoders) is loaded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
