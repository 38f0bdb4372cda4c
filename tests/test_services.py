"""Services start in order and stop in reverse, each stop guarded and bounded; the budgets add up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from agent import daemon, jobs, services
from agent.app import core_services
from agent.appkeys import DATABASE, EVENTS, JOBS, POLLER, REGISTRY, RENDER
from agent.services import STOP_BUDGETS_S, Service, Services, own_wait_s
from agent.storage.errors import StoreError
from drivers.transport import CLOSE_TIMEOUT
from tests.daemon_helpers import fresh_loggers

# Bounds a wait for something the test set in motion; it happens within milliseconds.
WAIT_S = 5.0


@pytest.fixture(autouse=True)
def _fresh_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_loggers(monkeypatch, services)


class Calls:
    """Records starts and stops; the named ones fail or hang."""

    def __init__(self, *, failing_stop: str = "", hanging_stop: str = "", failing_start: str = ""):
        self.calls: list[str] = []
        self.failing_stop = failing_stop
        self.hanging_stop = hanging_stop
        self.failing_start = failing_start

    def service(self, name: str, *, start: bool = True) -> Service:
        return Service(
            name,
            start=self._step("start", name) if start else None,
            stop=self._step("stop", name),
        )

    def _step(self, what: str, name: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            self.calls.append(f"{what} {name}")
            if what == "stop" and name == self.failing_stop:
                raise RuntimeError(f"{name} cannot close")
            if what == "stop" and name == self.hanging_stop:
                await asyncio.Event().wait()
            if what == "start" and name == self.failing_start:
                raise OSError(f"{name} cannot start")

        return step


CORE = ("store", "events", "registry", "jobs", "poller")


async def test_stop_calls_each_close_once_in_reverse_start_order_despite_one_raising() -> None:
    calls = Calls(failing_stop="registry")
    running = Services([calls.service(name, start=name != "events") for name in CORE])
    await running.start()
    with capture_logs() as logs:
        await running.stop()
        await running.stop()  # a second stop has nothing left to stop
    assert calls.calls == [
        "start store",
        "start registry",
        "start jobs",
        "start poller",
        "stop poller",
        "stop jobs",
        "stop registry",
        "stop events",
        "stop store",
    ]
    failed = [e for e in logs if e["event"] == "service_stop_failed"]
    assert [(e["service"], e["log_level"]) for e in failed] == [("registry", "error")]
    assert [e["service"] for e in logs if e["event"] == "service_stopped"] == [
        "poller",
        "jobs",
        "events",
        "store",
    ]


async def test_a_stop_over_its_budget_is_cut_off_and_the_rest_still_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "STOP_BUDGETS_S", {**STOP_BUDGETS_S, "jobs": 0.05})
    calls = Calls(hanging_stop="jobs")
    running = Services([calls.service(name) for name in CORE])
    await running.start()
    with capture_logs() as logs:
        async with asyncio.timeout(WAIT_S):
            await running.stop()
    assert calls.calls[len(CORE) :] == [f"stop {name}" for name in reversed(CORE)]
    assert [(e["event"], e["budget_s"]) for e in logs if e.get("service") == "jobs"] == [
        ("service_stop_timed_out", 0.05)
    ]


async def test_a_failed_start_stops_what_began_in_reverse_and_raises() -> None:
    calls = Calls(failing_start="jobs")
    running = Services([calls.service(name) for name in CORE])
    with pytest.raises(OSError, match="jobs cannot start"):
        await running.start()
    # The service that failed half-way is stopped too: its stop copes with a partial start.
    assert calls.calls == [
        "start store",
        "start events",
        "start registry",
        "start jobs",
        "stop jobs",
        "stop registry",
        "stop events",
        "stop store",
    ]


async def test_a_start_cancelled_by_a_signal_stops_what_began() -> None:
    reached = asyncio.Event()
    stopped: list[str] = []

    async def slow_start() -> None:
        reached.set()
        await asyncio.Event().wait()

    async def noop() -> None:
        return None

    async def stop(name: str) -> None:
        stopped.append(name)

    running = Services(
        [
            Service("store", start=noop, stop=lambda: stop("store")),
            Service("registry", start=slow_start, stop=lambda: stop("registry")),
            Service("jobs", start=noop, stop=lambda: stop("jobs")),
        ]
    )
    task = asyncio.create_task(running.start())
    async with asyncio.timeout(WAIT_S):
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stopped == ["registry", "store"]


def test_a_service_that_stops_needs_a_budget_in_the_table() -> None:
    async def noop() -> None:
        return None

    with pytest.raises(ValueError, match="'mystery' has no stop budget"):
        Services([Service("mystery", stop=noop)])
    Services([Service("mystery", start=noop)])  # nothing to stop: no budget needed


def test_stop_budgets_add_up_to_less_than_the_daemons_overall_stop_budget() -> None:
    stages = daemon.TASKS_SHUTDOWN_TIMEOUT_S + sum(STOP_BUDGETS_S.values())
    assert stages < daemon.SHUTDOWN_BUDGET_S
    assert STOP_BUDGETS_S["http"] == daemon.HTTP_SHUTDOWN_TIMEOUT_S


def test_each_budget_covers_the_waits_its_service_bounds_itself() -> None:
    assert STOP_BUDGETS_S["jobs"] > jobs.STOP_GRACE_S + jobs.STOP_TIMEOUT_S
    assert STOP_BUDGETS_S["registry"] > CLOSE_TIMEOUT
    for name in ("events", "poller"):
        assert own_wait_s(name) < STOP_BUDGETS_S[name]


def test_the_table_lists_the_core_services_in_start_order_then_the_http_server(
    app: web.Application,
) -> None:
    stopping = [service.name for service in core_services(app) if service.stop is not None]
    assert [*stopping, "http"] == list(STOP_BUDGETS_S)


async def test_the_app_stops_its_real_core_in_reverse_order_once_each_despite_one_raising(
    aiohttp_client: Any, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    def record(name: str, obj: Any, *, fails: bool = False) -> None:
        close = obj.close

        async def recorded(*args: Any) -> None:
            closed.append(name)
            await close(*args)
            if fails:
                raise RuntimeError(f"{name} failed to close")

        monkeypatch.setattr(obj, "close", recorded)

    record("store", app[DATABASE])
    record("render", app[RENDER])
    record("events", app[EVENTS])
    record("registry", app[REGISTRY], fails=True)
    record("jobs", app[JOBS])
    record("poller", app[POLLER])
    client = await aiohttp_client(app)
    assert closed == []
    with capture_logs() as logs:
        await client.close()
    assert closed == ["poller", "jobs", "registry", "events", "render", "store"]
    assert [e["service"] for e in logs if e["event"] == "service_stop_failed"] == ["registry"]
    # The store was closed for real after the registry's failure.
    with pytest.raises(StoreError, match="the store is closed"):
        await app[DATABASE].read(lambda conn: conn.execute("SELECT 1").fetchone())
