"""Documents that would exhaust a small host's memory are refused at POST, and nothing is stored.

Each document is small on the wire and huge once decoded (the sizes an independent check sent).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pypdfium2 as pdfium
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from agent.config import Settings
from tests.conftest import Headers, create_machine, label_pdf
from tests.handmade_pdf import image_pdf

Client = TestClient[Any, Any]


def png_of(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def huge_image_pdf() -> tuple[bytes, str]:
    # One 40,000 x 30,000 grey image in a 1.2 MB file: 1.2 GB once decoded.
    return image_pdf(40_000, 30_000), "an image on page 1 is too large: 40000 x 30000 pixels"


def huge_png() -> tuple[bytes, str]:
    # 40 megapixels of white compress to a few tens of kB.
    buffer = io.BytesIO()
    Image.new("L", (8000, 5000), 255).save(buffer, "PNG")
    return buffer.getvalue(), "the image is too large: 8000 x 5000 pixels"


def too_many_pages() -> tuple[bytes, str]:
    pdf = pdfium.PdfDocument.new()
    for _ in range(1001):
        pdf.new_page(175.748, 82.205)
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    return buffer.getvalue(), "the document has 1001 pages, more than the limit of 1000"


@pytest.mark.parametrize(
    ("make", "content_type"),
    [
        (huge_image_pdf, "application/pdf"),
        (huge_png, "image/png"),
        (too_many_pages, "application/pdf"),
    ],
    ids=["40000x30000-image-pdf", "40-megapixel-png", "1001-page-pdf"],
)
async def test_a_document_past_the_limits_is_refused_with_400_and_not_stored(
    client: Client, admin: Headers, make: Any, content_type: str
) -> None:
    # Building a bomb takes CPU; keep it off the loop the app runs on.
    document, message = await asyncio.to_thread(make)
    machine = await create_machine(client, admin)
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=io.BytesIO(document),
        headers={**admin, "Content-Type": content_type},
    )
    assert resp.status == 400
    body = await resp.json()
    assert list(body) == ["document"]
    [error] = body["document"]
    assert error.startswith(message), error
    resp = await client.get("/api/machine/jobs/", headers=admin)
    assert resp.status == 200
    assert await resp.json() == []


@pytest.fixture
def small_limits(settings: Settings) -> Settings:
    """The configured limits lowered: two pages, images of one 732 x 342 label at most."""
    limits = {"max_pages": 2, "max_image_pixels": 732 * 342}
    settings.jobs = settings.jobs.model_copy(update=limits)
    return settings


@pytest.mark.parametrize(
    ("document", "content_type", "message"),
    [
        (
            label_pdf(pages=3),
            "application/pdf",
            "the document has 3 pages, more than the limit of 2",
        ),
        (png_of(733, 342), "image/png", "the image is too large: 733 x 342 pixels"),
    ],
    ids=["pages", "image-pixels"],
)
@pytest.mark.usefixtures("small_limits")
async def test_the_limits_are_those_of_the_jobs_configuration(
    client: Client, admin: Headers, document: bytes, content_type: str, message: str
) -> None:
    machine = await create_machine(client, admin)
    url = f"/api/machine/{machine['pk']}/print/"
    resp = await client.post(url, data=document, headers={**admin, "Content-Type": content_type})
    assert resp.status == 400
    [error] = (await resp.json())["document"]
    assert error.startswith(message), error
    # Within them, the same kind of document is accepted.
    smaller = label_pdf(pages=2) if content_type == "application/pdf" else png_of(732, 342)
    resp = await client.post(url, data=smaller, headers={**admin, "Content-Type": content_type})
    assert resp.status == 201, await resp.text()
