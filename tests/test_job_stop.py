"""Stopping a job: cancel a printing job after its current label; refuse jobs over `max_labels`."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient

from agent.app import create_app
from agent.appkeys import JOBS, SETTINGS
from agent.config import JobsConfig, Settings
from tests.conftest import CHEAP_PASSWORD_COST, Headers, create_machine, label_pdf, wait_for_job
from tests.waiting import wait_until

Client = TestClient[Any, Any]


def _printed(client: Client, machine: str) -> Counter[tuple[str, int]]:
    # The virtual printer's folder is `<name>-<machine pk>`.
    logs = list((client.app[SETTINGS].storage.path / "virtual").glob(f"{machine}-*/printed.log"))
    lines = [line for log in logs for line in log.read_text().splitlines()]
    return Counter((job, int(label)) for job, label in (line.split() for line in lines))


def _job_count(client: Client) -> int:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        return int(conn.execute("SELECT count(*) FROM job").fetchone()[0])


async def _post(client: Client, headers: Headers, machine: str, query: str, pages: int) -> Any:
    return await client.post(
        f"/api/machine/{machine}/print/{query}",
        data=label_pdf(pages),
        headers={**headers, "Content-Type": "application/pdf"},
    )


async def test_cancelling_a_printing_job_stops_it_after_the_current_label(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="long")
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/LABEL_DELAY_MS/",
        json={"value": 30},
        headers=admin,
    )
    assert resp.status == 200
    # 3 pages x 1000 copies: hours of printing on a real printer.
    resp = await _post(client, admin, machine["pk"], "?copies=1000", pages=3)
    assert resp.status == 201
    pk = (await resp.json())["pk"]

    async def two_labels_printed() -> bool:
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
        return bool(job["progress"] >= 2)

    await wait_until(two_labels_printed, 10)

    resp = await client.delete(f"/api/machine/jobs/{pk}/", headers=admin)
    assert resp.status == 200, await resp.text()
    cancelled = await resp.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished"] is not None
    progress = cancelled["progress"]
    assert 2 <= progress < 3000
    # Exactly the labels counted, each once, with none half-done.
    assert _printed(client, "long") == Counter({(pk, n): 1 for n in range(1, progress + 1)})

    # The printer is free: the next job prints, and the cancelled one never again.
    resp = await _post(client, admin, machine["pk"], "", pages=1)
    after = (await resp.json())["pk"]
    await wait_for_job(client, admin, after, ("complete",))
    assert sum(count for (job, _label), count in _printed(client, "long").items() if job == pk) == (
        progress
    )
    resp = await client.delete(f"/api/machine/jobs/{pk}/", headers=admin)
    assert resp.status == 409


async def test_a_job_over_max_labels_is_refused_and_nothing_is_stored(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="cap", active=False)
    # 11 pages x 1000 copies = 11,000 labels, over the default cap of 10,000.
    resp = await _post(client, admin, machine["pk"], "?copies=1000", pages=11)
    assert resp.status == 400
    assert await resp.json() == {
        "copies": [
            "This job would print 11000 labels (11 pages x 1000 copies), "
            "more than the limit of 10000."
        ]
    }
    assert _job_count(client) == 0
    resp = await _post(client, admin, machine["pk"], "?copies=1000", pages=10)
    assert resp.status == 201


async def test_max_labels_is_configurable(
    aiohttp_client: Any, settings: Settings, make_token: Any
) -> None:
    settings = settings.model_copy(update={"jobs": JobsConfig(max_labels=5)})
    client = await aiohttp_client(create_app(settings, password_cost=CHEAP_PASSWORD_COST))
    admin = await make_token(client)
    machine = await create_machine(client, admin, name="small", active=False)
    resp = await _post(client, admin, machine["pk"], "?copies=2", pages=3)
    assert resp.status == 400
    assert "more than the limit of 5" in (await resp.json())["copies"][0]
    resp = await _post(client, admin, machine["pk"], "?copies=5", pages=1)
    assert resp.status == 201


async def test_a_cancel_that_waits_for_a_slow_label_finishes_after_it(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="slow")
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/LABEL_DELAY_MS/",
        json={"value": 400},
        headers=admin,
    )
    assert resp.status == 200
    pk = (await (await _post(client, admin, machine["pk"], "?copies=50", pages=1)).json())["pk"]
    runner = client.app[JOBS]
    await wait_until(lambda: runner.live_progress(pk) is not None, 10, "the job printing")
    # The label being printed takes longer than the caller waits: the job is still printing.
    answer = await runner.cancel(pk, wait=0.01)
    assert (answer.stopped, answer.job.status) == (False, "printing")
    done = await wait_for_job(client, admin, pk, ("cancelled", "complete", "failed"))
    assert done["status"] == "cancelled"
    assert 1 <= done["progress"] < 50
    assert _printed(client, "slow") == Counter({(pk, n): 1 for n in range(1, done["progress"] + 1)})
