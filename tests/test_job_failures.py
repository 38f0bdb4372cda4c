"""Failed attempts: driver errors and stalls are bounded and shown; printer faults wait, truthfully."""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import agent.render as render_module
from agent.app import create_app
from agent.appkeys import REGISTRY, SETTINGS
from agent.config import JobsConfig, Settings
from agent.job_attempt import backoff
from drivers.sim import ZplSimulator, serve_pty
from tests.clocks import SteppableClock
from tests.conftest import (
    CHEAP_PASSWORD_COST,
    TEST_DRIVERS,
    Headers,
    create_machine,
    label_pdf,
    wait_for_job,
)
from tests.fake_drivers import TroubledDriver
from tests.waiting import wait_until

Client = TestClient[Any, Any]
MakeToken = Callable[[Client], Awaitable[Headers]]


async def _app(
    aiohttp_client: Any,
    settings: Settings,
    make_token: MakeToken,
    clock: SteppableClock | None = None,
    **jobs: Any,
) -> tuple[Client, Headers]:
    config = {"retry_base_seconds": 0.02, "retry_max_seconds": 0.1, **jobs}
    settings = settings.model_copy(update={"jobs": JobsConfig(**config)})
    app = create_app(
        settings,
        extra_drivers=(*TEST_DRIVERS, "tests.fake_drivers:TroubledDriver"),
        clock=clock,
        password_cost=CHEAP_PASSWORD_COST,
    )
    client = await aiohttp_client(app)
    return client, await make_token(client)


async def _post(client: Client, headers: Headers, machine: str, body: bytes, ctype: str) -> str:
    resp = await client.post(
        f"/api/machine/{machine}/print/", data=body, headers={**headers, "Content-Type": ctype}
    )
    assert resp.status == 201, await resp.text()
    pk: str = (await resp.json())["pk"]
    return pk


async def _set(client: Client, headers: Headers, machine: str, key: str, value: Any) -> None:
    resp = await client.put(
        f"/api/machine/{machine}/settings/D/{key}/", json={"value": value}, headers=headers
    )
    assert resp.status == 200, await resp.text()


async def _machine(client: Client, headers: Headers, pk: str) -> dict[str, Any]:
    result: dict[str, Any] = await (await client.get(f"/api/machine/{pk}/", headers=headers)).json()
    return result


def _troubled(client: Client) -> TroubledDriver:
    driver = client.app[REGISTRY].drivers["troubled"]
    assert isinstance(driver, TroubledDriver)
    return driver


async def test_a_driver_error_while_preparing_fails_the_job_and_the_queue_moves_on(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken
) -> None:
    client, admin = await _app(aiohttp_client, settings, make_token, max_attempts=3)
    machine = (await create_machine(client, admin, name="t", driver="troubled", active=False))["pk"]
    broken = await _post(client, admin, machine, label_pdf(), "application/pdf")
    await _set(client, admin, machine, "FAIL_IN", "page_format")
    behind = await _post(client, admin, machine, b"^XA^XZ", "application/octet-stream")
    await client.patch(f"/api/machine/{machine}/", json={"active": True}, headers=admin)

    failed = await wait_for_job(client, admin, broken, ("failed", "complete"), timeout=10)
    assert failed["status"] == "failed"
    assert failed["errors"][-1] == (
        "Gave up after 3 failed attempts in a row: the label size setting is corrupt"
    )
    assert failed["error_count"] == 3
    done = await wait_for_job(client, admin, behind, ("complete", "failed"), timeout=10)
    assert done["status"] == "complete"
    assert _troubled(client).printed == [(behind, 1)]
    errors = (await _machine(client, admin, machine))["machine_errors"]
    assert f"Job {broken}: the label size setting is corrupt" in errors


async def test_a_job_cancelled_while_it_is_prepared_stays_cancelled(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, admin = await _app(aiohttp_client, settings, make_token)
    machine = (await create_machine(client, admin, name="t", driver="troubled", active=False))["pk"]
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    holding, release = threading.Event(), threading.Event()

    def held_open(*args: Any, **kwargs: Any) -> Any:
        """Opening the document on the render thread waits for the test, then fails."""
        holding.set()
        release.wait(timeout=10)
        raise RuntimeError("the render worker broke")

    monkeypatch.setattr(render_module, "open_document", held_open)
    await client.patch(f"/api/machine/{machine}/", json={"active": True}, headers=admin)
    await wait_until(holding.is_set, 10, "the worker preparing the job")
    resp = await client.delete(f"/api/machine/jobs/{pk}/", headers=admin)
    assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
    release.set()  # the preparation fails now, after the cancel

    async def machine_error_shown() -> bool:
        return bool((await _machine(client, admin, machine))["machine_errors"])

    await wait_until(machine_error_shown, 10)
    job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
    assert (job["status"], job["errors"], job["error_count"]) == ("cancelled", [], 0)


async def test_an_unexpected_error_in_print_is_a_bounded_failed_attempt(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken
) -> None:
    client, admin = await _app(aiohttp_client, settings, make_token, max_attempts=2)
    machine = (await create_machine(client, admin, name="t", driver="troubled"))["pk"]
    await _set(client, admin, machine, "FAIL_IN", "print")
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    failed = await wait_for_job(client, admin, pk, ("failed", "complete"), timeout=10)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert failed["errors"] == [
        "'paper_width'",
        "Gave up after 2 failed attempts in a row: 'paper_width'",
    ]
    assert f"Job {pk}: 'paper_width'" in (await _machine(client, admin, machine))["machine_errors"]


async def test_a_stalled_printer_is_stopped_by_the_watchdog_and_the_job_fails(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken, clock: SteppableClock
) -> None:
    client, admin = await _app(
        aiohttp_client, settings, make_token, clock, max_attempts=2, stall_seconds=60
    )
    machine = (await create_machine(client, admin, name="t", driver="troubled"))["pk"]
    await _set(client, admin, machine, "FAIL_IN", "stall")
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    for attempt in (1, 2):
        await clock.sleeping(lambda seconds: 59 < seconds <= 60)  # this attempt's watchdog
        clock.advance(59)
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
        assert (job["status"], job["attempts"]) == ("printing", attempt)  # not a stall yet
        await clock.sleeping(lambda seconds: seconds <= 1)
        clock.advance(1)
    failed = await wait_for_job(client, admin, pk, ("failed", "complete"), timeout=10)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert failed["errors"][-1] == (
        "Gave up after 2 failed attempts in a row: "
        "the printer took no data and printed no label for 60 s"
    )
    # The printer is free again: the next job prints.
    await _set(client, admin, machine, "FAIL_IN", "none")
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    assert (await wait_for_job(client, admin, pk, ("complete", "failed")))["status"] == "complete"


async def test_a_slow_printer_that_keeps_taking_data_is_not_cut_off(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken
) -> None:
    """A raw job that takes seconds to go through a slow serial line is sent once, whole."""
    client, admin = await _app(
        aiohttp_client, settings, make_token, max_attempts=1, stall_seconds=2.0
    )
    sim = ZplSimulator()
    # 256 bytes every 10 ms: a 60 KB job takes over 2 s, more than the stall time; what the pty
    # buffers (18 KB) drains in under a second.
    sim.set_fault("slow-link", delay=0.01)
    graphic = "F" * 120_000
    raw = f"^XA^FO0,0^GFA,{len(graphic) // 2},{len(graphic) // 2},100,{graphic}^FS^XZ".encode()
    async with await serve_pty(sim) as session:
        machine = await create_machine(
            client,
            admin,
            name="slow",
            driver="zpl",
            active=False,
        )
        await _set(client, admin, machine["pk"], "CONNECTION", session.url)
        await _set(client, admin, machine["pk"], "POLL_INTERVAL", 3600)
        await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
        pk = await _post(client, admin, machine["pk"], raw, "application/octet-stream")
        done = await wait_for_job(client, admin, pk, ("complete", "failed"), timeout=30)
    assert (done["status"], done["attempts"], done["errors"]) == ("complete", 1, [])
    assert len(sim.labels) == 1


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [("cover-open", 500, "Cover open"), ("paper-out", 301, "Paper out")],
)
async def test_a_known_printer_fault_stays_shown_while_a_job_waits(
    client: Client, admin: Headers, fault: str, status: int, text: str
) -> None:
    machine = (await create_machine(client, admin, name="faulty"))["pk"]
    await _set(client, admin, machine, "FAULT", fault)
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    job: dict[str, Any] = {}

    async def retried_and_waiting() -> bool:
        nonlocal job
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
        return bool(job["attempts"] >= 3 and job["status"] == "queued")

    await wait_until(retried_and_waiting, 10)
    detail = await _machine(client, admin, machine)
    assert (detail["status"], detail["status_text"]) == (status, text)
    # A printer that says why it cannot print makes the job wait, however long: no give-up.
    assert job["errors"][-1] == text


async def test_a_job_keeps_its_last_errors_and_counts_them_all(
    client: Client, admin: Headers
) -> None:
    machine = (await create_machine(client, admin, name="away"))["pk"]
    await _set(client, admin, machine, "FAULT", "offline")
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")
    job: dict[str, Any] = {}

    async def retried_and_waiting() -> bool:
        nonlocal job
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
        return bool(job["attempts"] >= 9 and job["status"] == "queued")

    await wait_until(retried_and_waiting, 10)
    assert job["errors"] == ["Printer does not answer"] * 5
    assert job["error_count"] == job["attempts"]
    await _set(client, admin, machine, "FAULT", "none")
    done = await wait_for_job(client, admin, pk, ("complete",))
    assert len(done["errors"]) == 5
    assert done["error_count"] >= 9
    (output,) = (client.app[SETTINGS].storage.path / "virtual").glob("away-*")
    assert [p.name for p in output.glob(f"{pk}-*.png")] == [f"{pk}-1.png"]


class _Jitter(random.Random):
    """Jitter at a fixed fraction of its range; records each range asked for."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return a + (b - a) * self.fraction


def test_backoff_doubles_up_to_the_cap_plus_a_quarter_of_jitter() -> None:
    steady, most = _Jitter(0.0), _Jitter(1.0)
    delays = [backoff(n, 2.0, 300.0, steady) for n in (1, 2, 3, 8, 9, 1000)]
    assert delays == [2.0, 4.0, 8.0, 256.0, 300.0, 300.0]
    assert (backoff(3, 2.0, 300.0, most), backoff(1000, 2.0, 300.0, most)) == (10.0, 375.0)


async def test_retries_take_their_jitter_from_the_injected_random(
    aiohttp_client: Any, settings: Settings, make_token: MakeToken
) -> None:
    jitter = _Jitter(0.5)
    app = create_app(settings, rng=jitter, password_cost=CHEAP_PASSWORD_COST)
    client = await aiohttp_client(app)
    admin = await make_token(client)
    machine = (await create_machine(client, admin, name="away"))["pk"]
    await _set(client, admin, machine, "FAULT", "offline")
    pk = await _post(client, admin, machine, label_pdf(), "application/pdf")

    async def retried_three_times() -> bool:
        job = await wait_for_job(client, admin, pk, ("queued", "printing"))
        return bool(job["attempts"] >= 3)

    await wait_until(retried_three_times, 10)
    # The settings fixture retries after 0.02 s, doubling: jitter of up to a quarter of that.
    assert jitter.asked[:2] == [(0, 0.02 / 4), (0, 0.04 / 4)]
