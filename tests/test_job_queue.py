"""The queue's promises: jobs wait for a printer, print once and in order, expire, and are pruned."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from agent.app import create_app
from agent.appkeys import JOBS, POLLER, REGISTRY, SETTINGS
from agent.config import Settings
from agent.jobs import WORKER_ERROR_PAUSE_S, JobRunner
from agent.storage.errors import StoreError
from agent.storage.jobs import JobStore
from tests.clocks import SteppableClock
from tests.conftest import CHEAP_PASSWORD_COST, Headers, create_machine, label_pdf, wait_for_job
from tests.waiting import wait_until

Client = TestClient[Any, Any]


def _printed(client: Client, machine: str) -> list[tuple[str, int]]:
    # The virtual printer's folder is `<name>-<machine pk>`.
    logs = list((client.app[SETTINGS].storage.path / "virtual").glob(f"{machine}-*/printed.log"))
    if not logs:
        return []
    (log,) = logs
    return [
        (job, int(label)) for job, label in (line.split() for line in log.read_text().splitlines())
    ]


async def _submit(client: Client, headers: Headers, machine: dict[str, Any], pages: int = 1) -> str:
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=label_pdf(pages),
        headers={**headers, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201, await resp.text()
    pk: str = (await resp.json())["pk"]
    return pk


async def _set(
    client: Client, headers: Headers, machine: dict[str, Any], key: str, value: Any
) -> None:
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/{key}/", json={"value": value}, headers=headers
    )
    assert resp.status == 200


async def test_jobs_wait_while_printer_is_away_then_print_once(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="away")
    await _set(client, admin, machine, "FAULT", "offline")
    pks = [await _submit(client, admin, machine, pages=2) for _ in range(3)]
    first: dict[str, Any] = {}

    async def retried_and_waiting() -> bool:
        nonlocal first
        first = await (await client.get(f"/api/machine/jobs/{pks[0]}/", headers=admin)).json()
        # Between attempts the job is back in the queue (during one it shows `printing`).
        return bool(first["attempts"] >= 3 and first["status"] == "queued")

    # Let the worker retry a few times against the missing printer.
    await wait_until(retried_and_waiting, 5)
    assert first["errors"][0] == "Printer does not answer"
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert detail["status"] == 400
    assert _printed(client, "away") == []

    await _set(client, admin, machine, "FAULT", "none")
    for pk in pks:
        await wait_for_job(client, admin, pk, ("complete",))
    printed = _printed(client, "away")
    assert printed == [(pk, label) for pk in pks for label in (1, 2)]


async def _worker_waiting(runner: JobRunner, machine: dict[str, Any]) -> None:
    """Until the machine's worker has looked at its queue since it was last woken."""

    def looked() -> bool:
        worker = runner.worker(machine["pk"])
        return worker is not None and not worker.wake.is_set()

    await wait_until(looked, 10, "the worker waiting")


async def test_inactive_machine_accepts_jobs_that_wait(
    client: Client, admin: Headers, clock: SteppableClock
) -> None:
    machine = await create_machine(client, admin, name="sleepy", active=False)
    pk = await _submit(client, admin, machine)
    await _worker_waiting(client.app[JOBS], machine)
    clock.advance(3600)  # an hour later the job still waits, untried
    await _worker_waiting(client.app[JOBS], machine)
    job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
    assert (job["status"], job["attempts"]) == ("queued", 0)
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
    await wait_for_job(client, admin, pk, ("complete",))
    assert _printed(client, "sleepy") == [(pk, 1)]


@pytest.mark.timeout(120)
async def test_many_concurrent_submitters_every_job_printed_exactly_once(
    client: Client, admin: Headers
) -> None:
    machines = [await create_machine(client, admin, name=f"m{i}") for i in range(4)]
    submitted: list[tuple[str, str]] = []

    async def submitter(index: int) -> None:
        for _ in range(8):
            machine = machines[index % len(machines)]
            submitted.append((machine["name"], await _submit(client, admin, machine)))

    async with asyncio.timeout(90):
        await asyncio.gather(*(submitter(i) for i in range(32)))
        assert len(submitted) == 256
        for _name, pk in submitted:
            await wait_for_job(client, admin, pk, ("complete",), timeout=60)
    for machine in machines:
        printed = Counter(job for job, _label in _printed(client, machine["name"]))
        expected = {pk for name, pk in submitted if name == machine["name"]}
        assert set(printed) == expected
        assert set(printed.values()) == {1}


async def test_jobs_print_in_submission_order(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="ordered", active=False)
    pks = [await _submit(client, admin, machine) for _ in range(10)]
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
    await wait_for_job(client, admin, pks[-1], ("complete",))
    assert [job for job, _label in _printed(client, "ordered")] == pks


async def test_job_expires_with_the_last_error(
    client: Client, admin: Headers, clock: SteppableClock
) -> None:
    machine = await create_machine(client, admin, name="never")
    await _set(client, admin, machine, "FAULT", "paper-out")
    pk = await _submit(client, admin, machine)

    async def failed_once() -> bool:
        return bool((await wait_for_job(client, admin, pk, ("queued",)))["errors"])

    await wait_until(failed_once, 10)
    clock.advance(23.9 * 3600)
    job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
    assert job["status"] in ("queued", "printing")
    clock.advance(0.1 * 3600)  # the 24 h of `expiry_hours` are up
    job = await wait_for_job(client, admin, pk, ("failed",))
    assert job["errors"][-1] == "Not printed within 24 h: Paper out"


async def test_interrupted_job_resumes_after_its_last_confirmed_label(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    """What a crash leaves behind (a job `printing` with 2 labels confirmed) is resumed once."""
    app = create_app(settings, password_cost=CHEAP_PASSWORD_COST)
    client = await aiohttp_client(app)
    admin = await make_token(client)
    machine = await create_machine(client, admin, name="crashy", active=False)
    pk = await _submit(client, admin, machine, pages=3)
    jobs: JobStore = app[JOBS].jobs
    await jobs.mark_printing(pk, dt.datetime.now(dt.UTC).isoformat())
    await jobs.save_progress(pk, 2)
    await jobs.mark_written(pk)
    assert await jobs.recover_interrupted() == (1, 0)
    assert (await jobs.get(pk)).interruptions == 1  # type: ignore[union-attr]
    # The job is still in the worker's queue; it reads the recovered row when the machine is up.
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
    job = await wait_for_job(client, admin, pk, ("complete",))
    assert job["progress"] == 3
    assert _printed(client, "crashy") == [(pk, 3)]
    # Interrupted a second time while printing: it fails instead of printing a third time.
    pk2 = await _submit(client, admin, machine)
    await wait_for_job(client, admin, pk2, ("complete",))
    await jobs.database.write(
        lambda conn: conn.execute(
            "UPDATE job SET status = 'printing', interruptions = 1, written = 1 WHERE pk = ?",
            (pk2,),
        )
    )
    assert await jobs.recover_interrupted() == (0, 1)
    failed = await jobs.get(pk2)
    assert failed is not None
    assert failed.status == "failed"


async def test_finished_jobs_are_pruned_after_retention(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="old")
    pk = await _submit(client, admin, machine)
    await wait_for_job(client, admin, pk, ("complete",))
    jobs: JobStore = client.app[JOBS].jobs
    assert await jobs.prune("2000-01-01T00:00:00+00:00") == 0
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat()
    assert await jobs.prune(future) == 1
    assert (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).status == 404


async def test_poller_reports_outage_and_recovery(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="polled")
    registry = client.app[REGISTRY]
    runtime = registry.get(machine["pk"])
    assert runtime is not None
    runtime.handle_error("label jammed in job 42")
    await _set(client, admin, machine, "FAULT", "offline")
    assert (
        await client.app[POLLER].poll_once(runtime) is True
    )  # the virtual printer answers "offline"
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert (detail["status"], detail["status_text"]) == (400, "Printer does not answer")
    # A successful poll clears run-time errors (deliberate difference 1).
    assert detail["machine_errors"] == []
    await _set(client, admin, machine, "FAULT", "none")
    await client.app[POLLER].poll_once(runtime)
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert (detail["status"], detail["status_text"]) == (100, "")


async def test_deleting_a_machine_removes_its_jobs_and_worker(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="gone", active=False)
    pk = await _submit(client, admin, machine)
    runner = client.app[JOBS]
    assert runner.worker(machine["pk"]) is not None
    resp = await client.delete(f"/api/machine/{machine['pk']}/", headers=admin)
    assert resp.status == 204
    assert (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).status == 404
    await wait_until(lambda: runner.worker(machine["pk"]) is None, 5, "the worker gone")


async def test_worker_outlives_a_database_error(
    client: Client, admin: Headers, monkeypatch: pytest.MonkeyPatch, clock: SteppableClock
) -> None:
    store = client.app[JOBS].jobs
    real_get = store.get
    failures = [StoreError("the database did not answer within 30 s")]

    async def flaky_get(pk: str) -> Any:
        task = asyncio.current_task()
        # Only the machine's worker meets the failing database; API reads go through.
        if failures and task is not None and task.get_name().startswith("jobs:"):
            raise failures.pop()
        return await real_get(pk)

    monkeypatch.setattr(store, "get", flaky_get)
    machine = await create_machine(client, admin, name="flaky")
    pk = await _submit(client, admin, machine)
    await clock.sleeping(WORKER_ERROR_PAUSE_S)  # the worker met the error and pauses
    assert failures == []
    clock.advance(WORKER_ERROR_PAUSE_S)
    await wait_for_job(client, admin, pk, ("complete",))
    assert _printed(client, "flaky") == [(pk, 1)]


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every page rendered by the agent, as (dpi, page index), counted at the renderer."""
    import agent.render as render_module

    calls: list[tuple[int, int]] = []
    real_open = render_module.open_document

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        source = real_open(*args, **kwargs)
        dpi = args[2].dpi
        real_render = source.render_planes

        def counting_render(index: int) -> Any:
            calls.append((dpi, index))
            return real_render(index)

        source.render_planes = counting_render  # type: ignore[method-assign]
        return source

    monkeypatch.setattr(render_module, "open_document", counting_open)
    return calls


async def test_a_label_is_rendered_once_at_the_printer_format_it_prints_with(
    client: Client, admin: Headers, renders: list[tuple[int, int]]
) -> None:
    machine = await create_machine(client, admin, name="once")
    pk = await _submit(client, admin, machine)
    await wait_for_job(client, admin, pk, ("complete",))
    assert renders == [(300, 0)]

    # Accepted at 300 dpi, printed after the printer was switched to 203 dpi: rendered at 203.
    renders.clear()
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": False}, headers=admin)
    pk = await _submit(client, admin, machine)
    await _set(client, admin, machine, "DPI", "203")
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
    await wait_for_job(client, admin, pk, ("complete",))
    assert renders == [(203, 0)]
    output = client.app[SETTINGS].storage.path / "virtual" / f"once-{machine['pk']}" / f"{pk}-1.png"
    with Image.open(output) as image:
        assert image.width == round(62 * 203 / 25.4)


async def test_a_burst_of_queued_jobs_renders_each_label_once(
    client: Client, admin: Headers, renders: list[tuple[int, int]]
) -> None:
    machine = await create_machine(client, admin, name="burst", active=False)
    pks = [await _submit(client, admin, machine) for _ in range(12)]
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/?copies=2",
        data=label_pdf(3),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    pks.append((await resp.json())["pk"])
    assert renders == []  # accepting a job checks it without rendering
    await client.patch(f"/api/machine/{machine['pk']}/", json={"active": True}, headers=admin)
    for pk in pks:
        await wait_for_job(client, admin, pk, ("complete",))
    # 12 one-label jobs, then 3 pages x 2 copies: one render per label printed.
    assert len(renders) == 12 + 6 == len(_printed(client, "burst"))
    assert renders[12:] == [(300, 0), (300, 1), (300, 2), (300, 0), (300, 1), (300, 2)]


async def test_copies_of_a_short_document_reuse_its_rendered_pages(
    client: Client, admin: Headers, renders: list[tuple[int, int]]
) -> None:
    machine = await create_machine(client, admin, name="copies")
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/?copies=5",
        data=label_pdf(2),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    await wait_for_job(client, admin, (await resp.json())["pk"], ("complete",))
    assert sorted(renders) == [(300, 0), (300, 1)]
    assert len(_printed(client, "copies")) == 10


async def test_an_attempt_is_marked_as_written_before_its_first_label_goes_out(
    client: Client, admin: Headers
) -> None:
    """What decides whether a crash counts against a job: did this attempt reach the printer?"""
    machine = await create_machine(client, admin, name="written")
    pk = await _submit(client, admin, machine)
    await wait_for_job(client, admin, pk, ("complete",))
    unreachable = await create_machine(client, admin, name="away", driver="zpl")
    await _set(client, admin, unreachable, "CONNECTION", "tcp://127.0.0.1:9")
    waiting = await _submit(client, admin, unreachable)
    jobs: JobStore = client.app[JOBS].jobs

    async def attempts_and_written(job: str) -> tuple[int, int]:
        def read(conn: Any) -> tuple[int, int]:
            row = conn.execute("SELECT attempts, written FROM job WHERE pk = ?", (job,)).fetchone()
            return int(row[0]), int(row[1])

        return await jobs.database.read(read)

    assert await attempts_and_written(pk) == (1, 1)

    async def attempted() -> bool:
        return (await attempts_and_written(waiting))[0] != 0

    await wait_until(attempted, 10)
    # The printer never answered: nothing was written, so a crash now could not have printed.
    assert (await attempts_and_written(waiting))[1] == 0
