"""Job expiry survives wall-clock steps (a Raspberry Pi without a real-time clock, then NTP)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient

from agent.app import create_app
from agent.appkeys import JOBS
from agent.config import JobsConfig, Settings
from tests.clocks import SteppableClock
from tests.conftest import CHEAP_PASSWORD_COST, Headers, create_machine, label_pdf, wait_for_job
from tests.waiting import wait_until

Client = TestClient[Any, Any]


async def _client(
    aiohttp_client: Any, settings: Settings, clock: SteppableClock, **jobs: Any
) -> Client:
    config = {"retry_base_seconds": 0.02, "retry_max_seconds": 0.1, **jobs}
    app = create_app(
        settings.model_copy(update={"jobs": JobsConfig(**config)}),
        clock=clock,
        password_cost=CHEAP_PASSWORD_COST,
    )
    client: Client = await aiohttp_client(app)
    return client


async def _job(client: Client, headers: Headers, pk: str) -> dict[str, Any]:
    result: dict[str, Any] = await (
        await client.get(f"/api/machine/jobs/{pk}/", headers=headers)
    ).json()
    return result


async def _set_fault(client: Client, headers: Headers, machine: str, fault: str) -> None:
    resp = await client.put(
        f"/api/machine/{machine}/settings/D/FAULT/", json={"value": fault}, headers=headers
    )
    assert resp.status == 200


async def test_a_clock_step_forward_does_not_expire_waiting_jobs(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    clock = SteppableClock()
    clock.wall_offset = -dt.timedelta(days=3)  # booted with an old clock
    client = await _client(aiohttp_client, settings, clock)
    admin = await make_token(client)
    machine = (await create_machine(client, admin, name="pi"))["pk"]
    await _set_fault(client, admin, machine, "offline")
    pks = []
    for _ in range(5):
        resp = await client.post(
            f"/api/machine/{machine}/print/",
            data=label_pdf(),
            headers={**admin, "Content-Type": "application/pdf"},
        )
        pks.append((await resp.json())["pk"])
    jobs = client.app[JOBS].jobs
    stored_before = {pk: (await jobs.get(pk)).expires for pk in pks}  # type: ignore[union-attr]

    clock.wall_offset = dt.timedelta()  # NTP steps the clock 3 days forward
    attempts = (await _job(client, admin, pks[0]))["attempts"]
    job: dict[str, Any] = {}

    async def retried_three_more_times() -> bool:
        nonlocal job
        job = await _job(client, admin, pks[0])
        return bool(job["attempts"] >= attempts + 3)

    # The worker keeps retrying after the step: each retry passed the expiry check.
    await wait_until(retried_three_more_times, 10)
    statuses = {(await _job(client, admin, pk))["status"] for pk in pks}
    assert statuses <= {"queued", "printing"}  # waiting (or in an attempt), none expired
    assert job["errors"][-1] == "Printer does not answer"
    # The stored expiry moved with the clock, so a restart after the step keeps the jobs too.
    for pk in pks:
        stored = dt.datetime.fromisoformat((await jobs.get(pk)).expires)  # type: ignore[union-attr]
        moved = stored - dt.datetime.fromisoformat(stored_before[pk])
        assert abs(moved - dt.timedelta(days=3)) < dt.timedelta(minutes=1)

    await _set_fault(client, admin, machine, "none")
    for pk in pks:
        await wait_for_job(client, admin, pk, ("complete",))


async def test_a_stored_expiry_never_grants_more_than_the_full_expiry(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    """A job stored while the clock ran 30 days ahead still expires after `expiry_hours`."""
    clock = SteppableClock()
    clock.wall_offset = dt.timedelta(days=30)
    client = await _client(aiohttp_client, settings, clock)
    admin = await make_token(client)
    machine = (await create_machine(client, admin, name="pi", active=False))["pk"]
    resp = await client.post(
        f"/api/machine/{machine}/print/",
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    pk = (await resp.json())["pk"]
    # The agent restarts with the clock set right: 30 days earlier than the job's stamps.
    await client.close()
    clock.wall_offset = dt.timedelta()
    client = await _client(aiohttp_client, settings, clock)
    admin = await make_token(client)
    # The restarted worker waits on the inactive machine until the job expires, 24 h from now
    # (not 30 days and 24 h from the stamps): skip those 24 h, and the job fails.
    await clock.sleeping(lambda seconds: 23 * 3600 < seconds <= 24 * 3600)
    clock.advance(24 * 3600)
    job = await wait_for_job(client, admin, pk, ("failed",), timeout=10)
    assert job["errors"][-1] == "Not printed within 24 h: the printer was not ready"
