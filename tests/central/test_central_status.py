"""Where an admin sees the link: `GET /api/agent/central/` and `inventree-edge central status`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.app import create_app
from agent.config import Settings
from tests.central.conftest import Client, StartAgent
from tests.central.fake_plugin import FakeCentral, FakeJob
from tests.conftest import CHEAP_PASSWORD_COST, TEST_DRIVERS, admin_token, label_pdf
from tests.daemon_helpers import basic_auth, run_cli, running_daemon
from tests.waiting import wait_until, wait_until_blocking

STATUS_FIELDS = [
    "enabled",
    "state",
    "since",
    "url",
    "agent",
    "last_contact",
    "last_error",
    "pending",
]


async def _status(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/agent/central/", headers=await admin_token(client))
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_the_api_shows_the_link_and_needs_credentials(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    assert (await client.get("/api/agent/central/")).status == 401

    await wait_until(
        lambda: bool(central.reports) and any(p.endswith("/jobs/") for _, p in central.requests),
        what="a report and a poll",
    )
    connected = await _status(client)
    assert list(connected) == STATUS_FIELDS
    assert connected["enabled"] is True
    assert (connected["state"], connected["url"], connected["agent"]) == (
        "connected",
        central.url,
        "test-agent",
    )
    assert connected["last_contact"] is not None
    assert (connected["last_error"], connected["pending"]) == ("", 0)

    await central.stop()
    away: dict[str, Any] = {}

    async def unreachable() -> bool:
        away.update(await _status(client))
        return away["state"] == "unreachable"

    await wait_until(unreachable, what="unreachable in the API")
    assert away["last_error"].startswith("cannot reach")
    assert away["since"] > connected["since"]
    await central.start()


async def test_the_api_says_off_without_a_central_url(
    aiohttp_client: Any, settings: Settings
) -> None:
    app: web.Application = create_app(
        settings, extra_drivers=TEST_DRIVERS, password_cost=CHEAP_PASSWORD_COST
    )
    client: Client = await aiohttp_client(app)

    status = await _status(client)

    assert (status["enabled"], status["state"], status["pending"]) == (False, "off", 0)


@contextmanager
def threaded_central() -> Iterator[tuple[FakeCentral, asyncio.AbstractEventLoop]]:
    """The fake plugin on a loop of its own thread, for a daemon in another process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake: FakeCentral = asyncio.run_coroutine_threadsafe(_started(), loop).result(10)
    try:
        yield fake, loop
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _started() -> FakeCentral:
    fake = FakeCentral()
    await fake.start()
    return fake


def _add_job(loop: asyncio.AbstractEventLoop, fake: FakeCentral, printer: str) -> FakeJob:
    added: Future[FakeJob] = Future()
    loop.call_soon_threadsafe(lambda: added.set_result(fake.add_job(printer, [label_pdf(1)])))
    return added.result(10)


def test_a_daemon_configured_from_the_environment_prints_a_central_job_and_the_cli_shows_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text('[[machines]]\nname = "Zebra"\ndriver = "virtual"\n')
    with threaded_central() as (fake, loop):
        env = {
            "INVENTREE_EDGE_CENTRAL__URL": fake.url,
            "INVENTREE_EDGE_CENTRAL__TOKEN": "agent-token",
            "INVENTREE_EDGE_CENTRAL__AGENT_NAME": "daemon-agent",
            "INVENTREE_EDGE_CENTRAL__POLL_INTERVAL": "0.05",
            "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": "admin-password",
        }
        with running_daemon(data, config=config, env=env) as daemon:
            wait_until_blocking(lambda: bool(fake.reports), 20, "the daemon's report")
            (printer,) = fake.reports[0]["printers"]
            job = _add_job(loop, fake, printer["key"])
            wait_until_blocking(lambda: job.state == "done", 30, "the job printed")

            answer = daemon.request(
                "GET", "/api/agent/central/", headers=basic_auth("admin", "admin-password")
            )
            assert answer.status == 200
            assert answer.json()["state"] == "connected"
            cli = run_cli("central", "status", "--config", str(config), data_dir=data, env=env)
            assert cli.returncode == 0, cli.stderr
            assert f"central link: {fake.url} as agent 'daemon-agent'" in cli.stdout
            assert "state: connected since" in cli.stdout
            assert "reports waiting in the outbox: 0" in cli.stdout
            assert "agent-token" not in daemon.stderr_path.read_text()
            assert daemon.signal_and_wait() == 0
        assert fake.agents == {"daemon-agent"}
        assert len(list((data / "virtual").glob("Zebra-*/*.png"))) == 1

        # Stopped, the CLI says so, with the last contact the daemon recorded.
        cli = run_cli("central", "status", "--config", str(config), data_dir=data, env=env)
        assert "(the daemon is not running)" in cli.stdout
        assert "last contact: never" not in cli.stdout


def test_the_cli_says_when_the_link_is_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_daemon(data) as daemon:
        cli = run_cli("central", "status", data_dir=data)
        assert daemon.signal_and_wait() == 0

    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == [
        "central link: off (no central.url in the configuration)",
        "reports waiting in the outbox: 0",
    ]
