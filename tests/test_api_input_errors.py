"""Input that once made a 500: each is a clear 400 (or 405 with `Allow`), and nothing is stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.api.schema import openapi_document
from agent.appkeys import SETTINGS
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, Headers, create_machine, label_pdf

Client = TestClient[Any, Any]
RAW_TIMEOUT_S = 5.0


def _machine_count(client: Client) -> int:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        return int(conn.execute("SELECT count(*) FROM machine").fetchone()[0])


def _job_count(client: Client) -> int:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        return int(conn.execute("SELECT count(*) FROM job").fetchone()[0])


async def _raw_exchange(client: Client, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (aiohttp's client would encode headers itself); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        async with asyncio.timeout(RAW_TIMEOUT_S):
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path", ["/api/machine/", "/api/auth/login/"])
async def test_lone_surrogate_in_a_json_body_is_400(
    client: Client, admin: Headers, path: str
) -> None:
    body = '{"name": "\\ud800", "machine_type": "label-printer", "driver": "virtual", '
    body += '"username": "\\udfff", "password": "x"}'
    resp = await client.post(path, data=body, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 400
    detail = (await resp.json())["detail"]
    assert detail.startswith("JSON parse error - ")
    assert "surrogate" in detail
    assert _machine_count(client) == 0


async def test_surrogate_pairs_are_ordinary_text(client: Client, admin: Headers) -> None:
    resp = await client.post(
        "/api/machine/",
        data='{"name": "Label \\ud83c\\udff7", "machine_type": "label-printer", "driver": "virtual"}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert resp.status == 201
    assert (await resp.json())["name"] == "Label \U0001f3f7"


@pytest.mark.parametrize("key", ["ключ-1".encode(), b"order-\xff"], ids=["utf-8", "latin-1"])
async def test_non_ascii_idempotency_key_is_400(client: Client, admin: Headers, key: bytes) -> None:
    printer = await create_machine(client, admin, name="p", driver="recording")
    pdf = label_pdf()
    head = (
        f"POST /api/machine/{printer['pk']}/print/ HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: {admin['Authorization']}\r\nContent-Type: application/pdf\r\n"
        f"Content-Length: {len(pdf)}\r\nConnection: close\r\n"
    ).encode()
    status, body = await _raw_exchange(
        client, head + b"Idempotency-Key: " + key + b"\r\n\r\n" + pdf
    )
    assert status == 400
    assert list(json.loads(body)) == ["Idempotency-Key"]
    assert _job_count(client) == 0


async def test_method_not_allowed_names_the_allowed_methods(client: Client, admin: Headers) -> None:
    resp = await client.delete("/api/machine/", headers=admin)
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    machine = await create_machine(client, admin)
    resp = await client.post(f"/api/machine/{machine['pk']}/", headers=admin)
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
    resp = await client.get(f"/api/machine/{machine['pk']}/restart/", headers=admin)
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST, OPTIONS"


async def test_every_view_answer_carries_allow_as_drf_does(client: Client, admin: Headers) -> None:
    assert (await client.get("/api/machine/types/", headers=admin)).headers["Allow"] == (
        "GET, HEAD, OPTIONS"
    )
    unauthenticated = await client.get("/api/machine/")
    assert unauthenticated.status == 401
    assert unauthenticated.headers["Allow"] == "GET, POST, HEAD, OPTIONS"


async def test_login_schema_says_what_the_server_refuses(client: Client) -> None:
    """InvenTree (dj-rest-auth) refuses a blank username or password: the schema says so too."""
    login = openapi_document()["components"]["schemas"]["Login"]
    assert login["properties"]["username"]["minLength"] == 1
    assert login["properties"]["password"]["minLength"] == 1
    for body in (
        {"username": "", "password": ADMIN_PASSWORD},
        {"username": ADMIN_USER, "password": ""},
    ):
        resp = await client.post("/api/auth/login/", json=body)
        assert resp.status == 400
        assert await resp.json() == {
            "non_field_errors": ['Must include "username" and "password".']
        }
