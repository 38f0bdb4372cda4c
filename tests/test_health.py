"""`/api/agent/health/`: ok or degraded for anyone, the figures behind it for a user."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from agent import __version__
from agent.app import create_app
from agent.appkeys import DATABASE, LOOP_LAG, SETTINGS
from agent.central.link import LinkTiming
from agent.config import CentralConfig, HealthConfig, Settings
from tests.clocks import SteppableClock
from tests.conftest import (
    CHEAP_PASSWORD_COST,
    TEST_DRIVERS,
    Headers,
    create_machine,
    label_pdf,
)
from tests.daemon_helpers import free_port
from tests.waiting import wait_until

Client = TestClient[Any, Any]
HEALTH = "/api/agent/health/"


async def _start(aiohttp_client: Any, settings: Settings, drivers: tuple[str, ...] = ()) -> Client:
    app: web.Application = create_app(
        settings,
        extra_drivers=(*TEST_DRIVERS, *drivers),
        clock=SteppableClock(),
        password_cost=CHEAP_PASSWORD_COST,
        central_timing=LinkTiming(backoff_base_s=0.05, backoff_max_s=0.2, report_debounce_s=0.02),
    )
    client: Client = await aiohttp_client(app)
    return client


async def test_without_credentials_only_ok_is_told(client: Client) -> None:
    resp = await client.get(HEALTH)
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_wrong_credentials_are_refused_not_answered_as_anonymous(client: Client) -> None:
    resp = await client.get(HEALTH, headers={"Authorization": "Token inv-not-a-token"})
    assert resp.status == 401


async def test_a_user_sees_the_figures(client: Client, viewer: Headers, admin: Headers) -> None:
    await create_machine(client, admin, name="desk")
    idle = await create_machine(client, admin, name="shelf", active=False)
    before = dt.datetime.now(dt.UTC)
    resp = await client.post(
        f"/api/machine/{idle['pk']}/print/",
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201

    resp = await client.get(HEALTH, headers=viewer)
    assert resp.status == 200
    health = await resp.json()
    assert health["status"] == "ok"
    assert health["problems"] == []
    assert health["version"] == __version__
    assert 0 <= health["uptime_s"] < 600
    assert health["storage"] == {"ok": True}
    disk = health["disk"]
    assert disk["path"] == str(client.app[SETTINGS].storage.path)
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert disk["min_free_bytes"] == 100 * 1024 * 1024
    assert set(health["event_loop_lag_s"]) == {"last", "worst_last_minute", "limit"}
    assert health["machines"] == {"connected": 1, "inactive": 1}
    (queue,) = health["queues"]
    assert (queue["machine"], queue["machine_name"], queue["depth"]) == (idle["pk"], "shelf", 1)
    oldest = dt.datetime.fromisoformat(queue["oldest_queued"])
    assert before <= oldest <= dt.datetime.now(dt.UTC)
    assert health["registry_errors"] == []
    assert health["central"]["state"] == "off"


async def test_nearly_full_disk_is_degraded(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    # More free space asked for than any test machine has.
    full = settings.model_copy(update={"health": HealthConfig(min_free_mib=1 << 40)})
    client = await _start(aiohttp_client, full)
    resp = await client.get(HEALTH)
    assert (resp.status, await resp.json()) == (503, {"status": "degraded"})
    health = await (await client.get(HEALTH, headers=await make_token(client))).json()
    (problem,) = health["problems"]
    assert problem.startswith("disk: ")
    assert "min_free_mib" in problem


async def test_failing_storage_is_degraded(client: Client, admin: Headers) -> None:
    await client.app[DATABASE].close()  # as if the database stopped answering
    resp = await client.get(HEALTH)
    assert (resp.status, await resp.json()) == (503, {"status": "degraded"})


async def test_registry_errors_make_it_degraded(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    client = await _start(aiohttp_client, settings, ("tests.no_such_module:Driver",))
    assert (await client.get(HEALTH)).status == 503
    health = await (await client.get(HEALTH, headers=await make_token(client))).json()
    assert any("no_such_module" in error for error in health["registry_errors"])
    assert [p.split(":")[0] for p in health["problems"]] == ["registry"]


async def test_an_unreachable_central_server_is_degraded(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    linked = settings.model_copy(
        update={"central": CentralConfig(url=closed, token="agent-token")}  # type: ignore[arg-type]
    )
    client = await _start(aiohttp_client, linked)
    headers = await make_token(client)

    async def unreachable() -> bool:
        health = await (await client.get(HEALTH, headers=headers)).json()
        return bool(health["central"]["state"] == "unreachable")

    await wait_until(unreachable, 10.0, "the central link unreachable")
    resp = await client.get(HEALTH, headers=headers)
    assert resp.status == 503
    assert any(
        p.startswith("central: the link is unreachable") for p in (await resp.json())["problems"]
    )


@pytest.mark.allow_loop_block
async def test_a_blocked_event_loop_is_measured_and_degrades(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    limited = settings.model_copy(update={"health": HealthConfig(max_loop_lag_s=0.2)})
    client = await _start(aiohttp_client, limited)
    headers = await make_token(client)
    assert (await client.get(HEALTH)).status == 200
    lag = client.app[LOOP_LAG]
    await wait_until(lambda: len(lag._samples) > 0, 5.0, "a first measurement")  # noqa: SLF001
    # Longer than the measuring interval: what overlaps the measuring sleep is not lateness.
    time.sleep(1.2)  # noqa: ASYNC251 - the point: something holds the loop
    await wait_until(lambda: lag.worst > 0.3, 5.0, "the block measured")
    resp = await client.get(HEALTH, headers=headers)
    assert resp.status == 503
    health = await resp.json()
    assert health["event_loop_lag_s"]["worst_last_minute"] >= 0.3
    assert [p.split(":")[0] for p in health["problems"]] == ["loop lag"]
