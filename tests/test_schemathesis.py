"""Schemathesis against the agent's own `/api/schema/`, on a real server on 127.0.0.1.

Every generated request (positive and negative, stateless and in create -> use -> delete
workflows) must get an answer the document allows: no 5xx, a documented status code and content
type, and a body matching the documented schema.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from agent.api.schema import openapi_document
from agent.app import create_app
from agent.config import AuthConfig, Settings, StorageConfig
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, TEST_DRIVERS

# Start and stop of the app (SQLite open, driver load) take milliseconds; this bounds a hang.
SERVER_TIMEOUT_S = 10.0
# One local request; the slowest is a login (scrypt, ~50 ms).
REQUEST_TIMEOUT_S = 5.0
# Fuzzed cases per operation; with the coverage phase the module runs in ~15 s on 2 cores.
MAX_EXAMPLES = 20
# Workflows (each up to WORKFLOW_STEPS linked calls) in the stateful run.
WORKFLOWS = 40
WORKFLOW_STEPS = 10
SEED = 303
Case = schemathesis.Case[Any]
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]
LOGOUT = "POST /api/auth/logout/"
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        # Known machine types and drivers, most of the time, so created machines do register.
        "dictionaries": {
            "machine-types": {"values": ["label-printer"]},
            "drivers": {"values": ["recording", "virtual", "failing", "needs-settings", "nope"]},
        },
        "parameters": {
            "body.machine_type": {"dictionary": "machine-types", "probability": 0.8},
            "body.driver": {"dictionary": "drivers", "probability": 0.8},
        },
    }
)


class LoopbackServer:
    """The agent app served by an aiohttp AppRunner on 127.0.0.1, in a thread with its own loop."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agent-under-test")
        self.runner = web.AppRunner(app)
        self.base_url = ""

    def start(self) -> None:
        self.thread.start()
        self._run(self._start())

    def stop(self) -> None:
        try:
            self._run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(SERVER_TIMEOUT_S)
            self.loop.close()

    def token(self, name: str) -> dict[str, str]:
        """Token headers of the superuser, got with Basic auth as a client would."""
        resp = requests.get(
            f"{self.base_url}/api/user/token/",
            params={"name": name},
            auth=(ADMIN_USER, ADMIN_PASSWORD),
            timeout=REQUEST_TIMEOUT_S,
        )
        assert resp.status_code == 200
        return {"Authorization": f"Token {resp.json()['token']}"}

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(SERVER_TIMEOUT_S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    """The agent with the test drivers, on a free loopback port, for the whole module."""
    data: Path = tmp_path_factory.mktemp("schemathesis") / "data"
    settings = Settings(
        storage=StorageConfig(path=data),
        auth=AuthConfig(admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD),  # type: ignore[arg-type]
    )
    running = LoopbackServer(create_app(settings, extra_drivers=TEST_DRIVERS))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def auth(server: LoopbackServer) -> dict[str, str]:
    """Superuser token headers; first checks the server serves the document under test."""
    resp = requests.get(f"{server.base_url}/api/schema/", timeout=REQUEST_TIMEOUT_S)
    assert resp.status_code == 200
    assert resp.json() == openapi_document()
    return server.token("schemathesis")


schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_as_documented(
    case: Case, server: LoopbackServer, auth: dict[str, str]
) -> None:
    # Logging out revokes the token used: give it its own, so the others stay valid.
    headers = server.token("logout") if case.operation.label == LOGOUT else auth
    case.call_and_validate(
        base_url=server.base_url, headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT_S
    )


def test_workflows_answer_as_documented(server: LoopbackServer, auth: dict[str, str]) -> None:
    served = schemathesis.openapi.from_url(
        f"{server.base_url}/api/schema/", config=CONFIG, timeout=REQUEST_TIMEOUT_S
    )
    successes: Counter[str] = Counter()
    machine: Any = served.as_state_machine()

    class Workflow(machine):  # type: ignore[misc]
        def setup(self) -> None:
            # Each workflow starts without machines, so replays see the same answers.
            url = f"{server.base_url}/api/machine/"
            for found in requests.get(url, headers=auth, timeout=REQUEST_TIMEOUT_S).json():
                requests.delete(f"{url}{found['pk']}/", headers=auth, timeout=REQUEST_TIMEOUT_S)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": auth, "timeout": REQUEST_TIMEOUT_S}

        def validate_response(self, response: Any, case: Case, *args: Any, **kwargs: Any) -> None:
            if response.status_code < 300:
                successes[case.operation.label] += 1
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=WORKFLOWS,
            stateful_step_count=WORKFLOW_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )

    # The workflows reached real machines, not only 404s for made-up ids.
    for label in (
        "GET /api/machine/{id}/",
        "PUT /api/machine/{id}/",
        "PATCH /api/machine/{id}/",
        "DELETE /api/machine/{id}/",
        "POST /api/machine/{id}/restart/",
        "GET /api/machine/{id}/settings/",
        "GET /api/machine/{id}/settings/{config_type}/{key}/",
        "PUT /api/machine/{id}/settings/{config_type}/{key}/",
    ):
        assert successes[label], (label, successes)
