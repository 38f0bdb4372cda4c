"""The print API: submit, idempotency, list, detail, cancel, validation, roles."""

from __future__ import annotations

import io
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from agent.appkeys import SETTINGS
from tests.conftest import Headers, create_machine, label_pdf, wait_for_job

Client = TestClient[Any, Any]
JOB_FIELDS = [
    "pk",
    "machine",
    "status",
    "copies",
    "pages",
    "progress",
    "attempts",
    "errors",
    "error_count",
    "warnings",
    "content_type",
    "size",
    "created",
    "started",
    "finished",
]


def _job_count(client: Client) -> int:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        return int(conn.execute("SELECT count(*) FROM job").fetchone()[0])


def _output_dir(client: Client, machine: str) -> Path:
    # The virtual printer's folder is `<name>-<machine pk>`.
    (folder,) = (client.app[SETTINGS].storage.path / "virtual").glob(f"{machine}-*")
    return folder


@pytest.fixture
async def printer(client: Client, admin: Headers) -> dict[str, Any]:
    return await create_machine(client, admin, name="Label-printer")


async def _print(
    client: Client,
    headers: Headers,
    machine: dict[str, Any],
    body: bytes,
    ctype: str,
    query: str = "",
) -> Any:
    return await client.post(
        f"/api/machine/{machine['pk']}/print/{query}",
        data=body,
        headers={**headers, "Content-Type": ctype},
    )


async def test_pdf_job_prints_each_page_as_png(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    resp = await _print(client, admin, printer, label_pdf(3), "application/pdf", "?copies=2")
    assert resp.status == 201
    job = await resp.json()
    assert list(job) == JOB_FIELDS
    assert (job["status"], job["copies"], job["pages"], job["content_type"]) == (
        "queued",
        2,
        3,
        "application/pdf",
    )
    done = await wait_for_job(client, admin, job["pk"], ("complete",))
    assert (done["progress"], done["attempts"], done["errors"]) == (6, 1, [])
    assert done["started"] is not None
    assert done["finished"] is not None
    files = sorted(p.name for p in _output_dir(client, "Label-printer").glob(f"{job['pk']}-*.png"))
    assert files == [f"{job['pk']}-{page}-copy{copy}.png" for page in (1, 2, 3) for copy in (1, 2)]
    # Page 2 of the PDF has its black block 40 dots further right than page 1.
    with Image.open(_output_dir(client, "Label-printer") / f"{job['pk']}-2-copy1.png") as page2:
        # 62 x 29 mm at 300 dpi: 732 x 343 dots (the 342-dot page is centred on the label).
        assert page2.size == (732, 343)
        assert page2.getpixel((80, 100)) == 0
        assert page2.getpixel((40, 100)) == 255


async def test_png_and_multipart_upload(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    image = Image.new("1", (200, 100), 1)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    resp = await _print(client, admin, printer, buffer.getvalue(), "image/png")
    assert resp.status == 201
    assert (await resp.json())["pages"] == 1

    form = FormData()
    form.add_field("file", label_pdf(2), filename="labels.pdf", content_type="application/pdf")
    form.add_field("copies", "3")
    resp = await client.post(f"/api/machine/{printer['pk']}/print/", data=form, headers=admin)
    assert resp.status == 201
    job = await resp.json()
    assert (job["pages"], job["copies"]) == (2, 3)
    done = await wait_for_job(client, admin, job["pk"], ("complete",))
    assert done["progress"] == 6


async def test_oversized_page_is_scaled_with_a_warning(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    resp = await _print(client, admin, printer, label_pdf(1, size=(1464, 342)), "application/pdf")
    job = await resp.json()
    assert len(job["warnings"]) == 1
    assert "scaled" in job["warnings"][0]


@pytest.mark.parametrize(
    ("body", "ctype", "field"),
    [
        (b"", "application/pdf", "document"),
        (b"%PDF-1.4 garbage", "application/pdf", "document"),
        (b"\x89PNG\r\n\x1a\n truncated", "image/png", "document"),
        (b"", "application/octet-stream", "document"),
    ],
)
async def test_bad_documents_are_400_and_store_nothing(
    client: Client, admin: Headers, printer: dict[str, Any], body: bytes, ctype: str, field: str
) -> None:
    resp = await _print(client, admin, printer, body, ctype)
    assert resp.status == 400
    errors = await resp.json()
    assert list(errors) == [field]
    assert errors[field][0]
    assert _job_count(client) == 0


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("?copies=0", {"copies": ["Ensure this value is greater than or equal to 1."]}),
        ("?copies=1001", {"copies": ["Ensure this value is less than or equal to 1000."]}),
        ("?copies=two", {"copies": ["A valid integer is required."]}),
        ("?rotation=45", {"rotation": ['"45" is not a valid choice.']}),
        ("?threshold=300", {"threshold": ["Ensure this value is less than or equal to 255."]}),
        ("?dither=perhaps", {"dither": ["Must be a valid boolean."]}),
    ],
)
async def test_bad_options_are_400(
    client: Client, admin: Headers, printer: dict[str, Any], query: str, errors: Any
) -> None:
    resp = await _print(client, admin, printer, label_pdf(), "application/pdf", query)
    assert resp.status == 400
    assert await resp.json() == errors
    assert _job_count(client) == 0


async def test_unsupported_type_unknown_machine_and_missing_file(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    resp = await _print(client, admin, printer, b"hello", "text/plain")
    assert resp.status == 415
    unknown = str(uuid.uuid4())
    resp = await client.post(
        f"/api/machine/{unknown}/print/",
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 404
    assert await resp.json() == {"detail": f"Machine '{unknown}' not found"}
    form = FormData()
    form.add_field("copies", "1")
    form.add_field("other", b"x", filename="x.bin")
    resp = await client.post(f"/api/machine/{printer['pk']}/print/", data=form, headers=admin)
    assert resp.status == 400
    assert await resp.json() == {"file": ["No file was submitted."]}


async def test_idempotency_key_returns_the_first_job(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    headers = {**admin, "Idempotency-Key": "order-1234-label", "Content-Type": "application/pdf"}
    url = f"/api/machine/{printer['pk']}/print/"
    first = await client.post(url, data=label_pdf(), headers=headers)
    assert first.status == 201
    again = await client.post(url, data=label_pdf(2), headers=headers)
    assert again.status == 200
    assert (await again.json())["pk"] == (await first.json())["pk"]
    assert _job_count(client) == 1
    # The same key on another machine is another job.
    other = await create_machine(client, admin, name="other")
    resp = await client.post(
        f"/api/machine/{other['pk']}/print/", data=label_pdf(), headers=headers
    )
    assert resp.status == 201
    assert _job_count(client) == 2


async def test_job_list_filters_and_paginates(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    other = await create_machine(client, admin, name="other")
    pks = []
    for machine in (printer, printer, other):
        resp = await _print(client, admin, machine, label_pdf(), "application/pdf")
        pks.append((await resp.json())["pk"])
    for pk in pks:
        await wait_for_job(client, admin, pk, ("complete",))
    jobs = await (await client.get("/api/machine/jobs/", headers=admin)).json()
    assert [j["pk"] for j in jobs] == list(reversed(pks))
    mine = await (
        await client.get(f"/api/machine/jobs/?machine={printer['pk']}", headers=admin)
    ).json()
    assert [j["pk"] for j in mine] == [pks[1], pks[0]]
    page = await (await client.get("/api/machine/jobs/?limit=2", headers=admin)).json()
    assert page["count"] == 3
    assert [j["pk"] for j in page["results"]] == [pks[2], pks[1]]
    assert page["next"] is not None
    queued = await (await client.get("/api/machine/jobs/?status=queued", headers=admin)).json()
    assert queued == []
    resp = await client.get("/api/machine/jobs/?status=lost", headers=admin)
    assert resp.status == 400
    resp = await client.get(f"/api/machine/jobs/{uuid.uuid4()}/", headers=admin)
    assert resp.status == 404


async def test_cancel_queued_job_and_409_after_printing(
    client: Client, admin: Headers, printer: dict[str, Any]
) -> None:
    url = f"/api/machine/{printer['pk']}/settings/D/FAULT/"
    await client.put(url, json={"value": "paper-out"}, headers=admin)
    resp = await _print(client, admin, printer, label_pdf(), "application/pdf")
    waiting = (await resp.json())["pk"]
    resp = await client.delete(f"/api/machine/jobs/{waiting}/", headers=admin)
    assert resp.status == 200
    cancelled = await resp.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished"] is not None
    await client.put(url, json={"value": "none"}, headers=admin)
    resp = await _print(client, admin, printer, label_pdf(), "application/pdf")
    printed = (await resp.json())["pk"]
    await wait_for_job(client, admin, printed, ("complete",))
    resp = await client.delete(f"/api/machine/jobs/{printed}/", headers=admin)
    assert resp.status == 409
    resp = await client.delete(f"/api/machine/jobs/{waiting}/", headers=admin)
    assert resp.status == 409
    assert not list(_output_dir(client, "Label-printer").glob(f"{waiting}-*"))
    resp = await client.delete(f"/api/machine/jobs/{uuid.uuid4()}/", headers=admin)
    assert resp.status == 404


async def test_print_roles(
    client: Client, admin: Headers, viewer: Headers, nobody: Headers, printer: dict[str, Any]
) -> None:
    resp = await _print(client, viewer, printer, label_pdf(), "application/pdf")
    assert resp.status == 403
    resp = await client.post(f"/api/machine/{printer['pk']}/print/", data=label_pdf())
    assert resp.status == 401
    job = await (await _print(client, admin, printer, label_pdf(), "application/pdf")).json()
    for headers in (viewer, nobody):
        assert (await client.get("/api/machine/jobs/", headers=headers)).status == 200
        assert (await client.get(f"/api/machine/jobs/{job['pk']}/", headers=headers)).status == 200
        assert (
            await client.delete(f"/api/machine/jobs/{job['pk']}/", headers=headers)
        ).status == 403
    assert _job_count(client) == 1


@pytest.mark.parametrize("machine", ["notauuid", "1", "6e3e189d-3432-4a81-a0b7-706fe296a2fZ"])
async def test_job_list_refuses_a_machine_filter_that_is_not_a_uuid(
    client: Client, admin: Headers, machine: str
) -> None:
    resp = await client.get("/api/machine/jobs/", params={"machine": machine}, headers=admin)
    assert resp.status == 400
    assert await resp.json() == {"machine": ["Enter a valid UUID."]}
