"""The link's states: one log line per change, clear messages for refused credentials, backoff."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.appkeys import CENTRAL
from agent.central import link as link_module
from agent.central import status as status_module
from agent.central.link import LinkTiming
from tests.central.conftest import Client, StartAgent, printer_pk
from tests.central.fake_plugin import FakeCentral
from tests.conftest import label_pdf
from tests.daemon_helpers import fresh_loggers
from tests.waiting import wait_until

CENTRAL_EVENTS = {
    "central_connected",
    "central_unreachable",
    "central_unauthorized",
    "central_forbidden",
    "central_protocol_mismatch",
}


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    fresh_loggers(monkeypatch, status_module, link_module)
    with capture_logs() as captured:
        yield captured


def _states(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs if entry["event"] in CENTRAL_EVENTS]


def _state(client: Client) -> str:
    return str(client.app[CENTRAL].status.state)


def _plugin_requests(central: FakeCentral) -> int:
    return sum(1 for _, path in central.requests if path.startswith("/plugin/"))


async def test_one_log_line_per_change_of_state_not_per_retry(
    central: FakeCentral, start_agent: StartAgent, logs: list[dict[str, Any]]
) -> None:
    client = await start_agent()
    await wait_until(lambda: _state(client) == "connected", what="connected")

    central.server_error = True
    await wait_until(lambda: _state(client) == "unreachable", what="unreachable")
    retries_from = _plugin_requests(central)
    await wait_until(lambda: _plugin_requests(central) >= retries_from + 3, what="three retries")
    central.server_error = False
    await wait_until(lambda: _state(client) == "connected", what="connected again")

    assert _states(logs) == ["central_connected", "central_unreachable", "central_connected"]
    unreachable = next(e for e in logs if e["event"] == "central_unreachable")
    assert unreachable["log_level"] == "warning"
    assert "HTTP 503" in unreachable["error"]


async def test_local_printing_goes_on_while_the_server_is_away(
    central: FakeCentral, start_agent: StartAgent, admin_headers: Any
) -> None:
    client = await start_agent()
    await wait_until(lambda: _state(client) == "connected", what="connected")
    await central.stop()
    await wait_until(lambda: _state(client) == "unreachable", what="unreachable")

    headers = await admin_headers(client)
    resp = await client.post(
        f"/api/machine/{printer_pk(client)}/print/",
        data=label_pdf(1),
        headers={**headers, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201
    job = await resp.json()

    async def complete() -> bool:
        answer = await client.get(f"/api/machine/jobs/{job['pk']}/", headers=headers)
        return (await answer.json())["status"] == "complete"

    await wait_until(complete, 20, "the local job printed")
    await central.start()


@pytest.mark.parametrize("refusal", ["401", "302"])
async def test_a_token_not_accepted_is_an_error_saying_what_to_do_and_no_redirect_is_followed(
    central: FakeCentral, start_agent: StartAgent, logs: list[dict[str, Any]], refusal: str
) -> None:
    central.tokens = {"another-token"}
    central.refusal = refusal
    client = await start_agent()

    await wait_until(lambda: _state(client) == "unauthorized", what="unauthorized")
    first = _plugin_requests(central)
    await wait_until(lambda: _plugin_requests(central) >= first + 2, what="retries")

    (line,) = [entry for entry in logs if entry["event"] == "central_unauthorized"]
    assert line["log_level"] == "error"
    assert "INVENTREE_EDGE_CENTRAL__TOKEN" in line["advice"]
    assert not any(path.startswith("/accounts/") for _, path in central.requests)
    if refusal == "302":
        assert "redirected" in client.app[CENTRAL].status.last_error
    # A new token makes the link connect again.
    central.tokens = {"agent-token"}
    await wait_until(lambda: _state(client) == "connected", what="connected")


async def test_a_user_outside_the_agents_group_is_told_so(
    central: FakeCentral, start_agent: StartAgent, logs: list[dict[str, Any]]
) -> None:
    central.in_group = False
    client = await start_agent()

    await wait_until(lambda: _state(client) == "forbidden", what="forbidden")

    (line,) = [entry for entry in logs if entry["event"] == "central_forbidden"]
    assert line["error"] == "Add the user to the group edge-agents."
    assert "agents group" in line["advice"]


async def test_a_server_of_another_protocol_is_a_protocol_mismatch(
    central: FakeCentral, start_agent: StartAgent, logs: list[dict[str, Any]]
) -> None:
    central.protocol = 2
    client = await start_agent()

    await wait_until(lambda: _state(client) == "protocol_mismatch", what="protocol mismatch")

    (line,) = [entry for entry in logs if entry["event"] == "central_protocol_mismatch"]
    assert "protocol 2" in line["error"]
    assert central.reports == []


async def test_an_inventree_without_the_plugin_is_told_apart_from_a_refused_token(
    central: FakeCentral, start_agent: StartAgent, logs: list[dict[str, Any]]
) -> None:
    central.plugin_missing = True
    client = await start_agent()

    await wait_until(lambda: _state(client) == "protocol_mismatch", what="protocol mismatch")

    assert "install and activate the inventree-edge plugin" in client.app[CENTRAL].status.last_error
    assert _states(logs) == ["central_protocol_mismatch"]
    assert ("GET", "/web") not in central.requests


async def test_a_username_and_password_obtain_one_token_kept_across_restarts(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    credentials = {
        "token": "",
        "username": "agent-user",
        "password": "agent-password",
        # A host name, not an address: cookie jars keep cookies of host names only.
        "url": f"http://localhost:{central.port}",
    }
    first = await start_agent(**credentials)
    await wait_until(lambda: _state(first) == "connected", what="connected")
    await first.close()

    second = await start_agent(**credentials)
    await wait_until(lambda: len(central.reports) >= 2, what="the second run's report")

    assert central.issued_tokens == ["obtained-0"]
    assert central.token_names == ["inventree-edge test-agent"]
    assert _state(second) == "connected"
    # The session InvenTree logged in with the token is never sent back (no CSRF checks).
    assert central.cookies_seen == 0


async def test_a_revoked_obtained_token_is_obtained_again(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(token="", username="agent-user", password="agent-password")
    await wait_until(lambda: _state(client) == "connected", what="connected")

    central.tokens.discard("obtained-0")

    await wait_until(lambda: central.issued_tokens == ["obtained-0", "obtained-1"], what="again")
    await wait_until(lambda: _state(client) == "connected", what="connected again")


async def test_a_wrong_password_is_unauthorized(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(token="", username="agent-user", password="wrong")

    await wait_until(lambda: _state(client) == "unauthorized", what="unauthorized")
    assert "agent-user" in client.app[CENTRAL].status.last_error


async def test_a_long_poll_asks_the_server_to_wait_and_gets_a_job_at_once(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(long_poll=5, poll_interval=30)
    await wait_until(lambda: _state(client) == "connected", what="connected")
    await wait_until(
        lambda: any(path.endswith("/jobs/") for _, path in central.requests), what="a poll"
    )
    job = central.add_job(printer_pk(client), [label_pdf(1)])

    # With a 30 s poll interval, only the waiting request can have fetched it this soon.
    await wait_until(lambda: job.state == "done", 10, "the job printed")


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    link = link_module.CentralLink.__new__(link_module.CentralLink)
    link.timing = LinkTiming(backoff_base_s=1.0, backoff_max_s=60.0)
    link.rng = random.Random(7)

    waits = [link._backoff(failures) for failures in range(12)]  # noqa: SLF001

    ceilings = [min(60.0, 2.0**n) for n in range(12)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert max(waits) <= 60.0
    assert len(set(waits)) == len(waits)


@pytest.fixture
def admin_headers() -> Any:
    from tests.conftest import admin_token

    return admin_token
