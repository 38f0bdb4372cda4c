"""What the API and the app do about storage: a full disk, a clock behind, pruning after start."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import agent.jobs as jobs_module
from agent.app import create_app
from agent.appkeys import DATABASE
from agent.config import Settings
from tests.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Headers,
    basic_headers,
    create_machine,
    label_pdf,
    wait_for_job,
)

Client = TestClient[Any, Any]


async def test_a_full_disk_answers_507_and_shows_in_the_agents_state(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="desk")
    database = client.app[DATABASE]
    pages = await database.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await database.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=label_pdf(3),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 507
    body = await resp.json()
    assert list(body) == ["detail"]
    assert "disk is full" in body["detail"]
    status = await (await client.get("/api/machine/status/", headers=admin)).json()
    assert any("disk is full" in e["message"] for e in status["registry_errors"])
    info = await (await client.get("/api/", headers=admin)).json()
    assert info["system_health"] is False
    # Space again: the next write clears the fault.
    await database.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages * 1000}"))
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=label_pdf(1),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201
    await wait_for_job(client, admin, (await resp.json())["pk"], ("complete",))
    status = await (await client.get("/api/machine/status/", headers=admin)).json()
    assert status["registry_errors"] == []
    info = await (await client.get("/api/", headers=admin)).json()
    assert info["system_health"] is True


def _seed(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute(sql, params)


async def _started(aiohttp_client: Any, settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def test_with_the_clock_behind_stored_dates_nothing_is_pruned_and_tokens_get_sane_dates(
    aiohttp_client: Any, settings: Settings
) -> None:
    first = await _started(aiohttp_client, settings)
    await first.close()
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).isoformat()
    # A token made when the clock was right, long expired by that clock; and a job from then.
    _seed(
        settings,
        "INSERT INTO api_token (user, name, key_hash, key_hint, expiry, created) "
        "VALUES (1, 'old', 'h', 'inv-', '2020-01-01', ?)",
        (ahead,),
    )
    client = await _started(aiohttp_client, settings)
    with sqlite3.connect(settings.database_path) as conn:
        assert conn.execute("SELECT count(*) FROM api_token WHERE name = 'old'").fetchone() == (1,)
    resp = await client.get(
        "/api/user/token/",
        params={"name": "new"},
        headers=basic_headers(ADMIN_USER, ADMIN_PASSWORD),
    )
    assert resp.status == 200
    with sqlite3.connect(settings.database_path) as conn:
        (expiry,) = conn.execute("SELECT expiry FROM api_token WHERE name = 'new'").fetchone()
    # Dated from the newest stored date, not from a clock that is behind: it outlives a restart
    # once the clock is right.
    assert dt.date.fromisoformat(expiry) >= dt.date.fromisoformat(ahead[:10]) + dt.timedelta(
        days=364
    )


async def test_old_jobs_are_pruned_after_start_not_during_it(
    aiohttp_client: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "PRUNE_START_DELAY_S", 0.2)
    first = await _started(aiohttp_client, settings)
    headers = await _admin(first)
    machine = await create_machine(first, headers, name="desk")
    await first.close()
    for _ in range(3):
        _seed(
            settings,
            "INSERT INTO job (pk, seq, machine, status, copies, content_type, size, created, "
            "finished, expires) VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job), ?, "
            "'complete', 1, 'application/pdf', 1, '2020-01-01', '2020-01-01', '2020-01-02')",
            (str(uuid.uuid4()), machine["pk"]),
        )
    client = await _started(aiohttp_client, settings)
    assert await _job_count(client) == 3  # started without waiting for the prune
    async with asyncio.timeout(10):
        while await _job_count(client) != 0:
            await asyncio.sleep(0.05)


async def _job_count(client: Client) -> int:
    count: int = await client.app[DATABASE].read(
        lambda c: c.execute("SELECT count(*) FROM job").fetchone()[0]
    )
    return count


async def _admin(client: Client) -> Headers:
    resp = await client.get("/api/user/token/", headers=basic_headers(ADMIN_USER, ADMIN_PASSWORD))
    assert resp.status == 200
    client.session.cookie_jar.clear()
    return {"Authorization": f"Token {(await resp.json())['token']}"}


async def test_a_job_saved_after_its_request_timed_out_is_printed_all_the_same(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="late")
    database = client.app[DATABASE]
    database.call_timeout = 0.3
    # Another process holds the write lock: the insert starts, waits for it, outlives the request.
    other = sqlite3.connect(database.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        resp = await client.post(
            f"/api/machine/{machine['pk']}/print/",
            data=label_pdf(1),
            headers={**admin, "Content-Type": "application/pdf"},
        )
        assert resp.status == 503
        assert "may still be saved" in (await resp.json())["detail"]
        other.execute("COMMIT")
    finally:
        other.close()
    database.call_timeout = 30.0
    async with asyncio.timeout(20):
        while True:
            listed = await (await client.get("/api/machine/jobs/", headers=admin)).json()
            if listed and listed[0]["status"] == "complete":
                break
            await asyncio.sleep(0.05)
    assert len(listed) == 1
