"""The central link's tables: a central job's state from its local jobs, the outbox, pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.central.store import CentralStore, idempotency_key
from agent.storage.database import Database
from agent.storage.jobs import COMPLETE, FAILED, PRINTING, JobStore
from agent.storage.machines import MachineStore
from tests.storage_helpers import MACHINE, job_row

NOW = "2026-12-03T06:00:00+00:00"
CENTRAL_ID = "b6b1c0de-0000-4000-8000-000000000001"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    opened = Database(tmp_path / "data" / "inventree-edge.sqlite3")
    await opened.open()
    await MachineStore(opened).insert_machine(MACHINE)
    yield opened
    await opened.close()


async def _local(database: Database, index: int, **fields: Any) -> str:
    row = job_row(idempotency_key=idempotency_key(CENTRAL_ID, index), copies=2, **fields)
    stored = await JobStore(database).insert(row, b"%PDF")
    return stored.pk


async def _sent(store: CentralStore) -> list[tuple[str, int, int]]:
    return [(e.body["state"], e.body["printed"], e.body["total"]) for e in await store.outbox()]


async def test_reports_follow_the_local_jobs_once_per_change(database: Database) -> None:
    store = CentralStore(database)
    jobs = JobStore(database)
    await store.begin(CENTRAL_ID, MACHINE.pk, 2, 2, NOW)
    first = await _local(database, 0)
    second = await _local(database, 1)

    await store.refresh(CENTRAL_ID, NOW)
    assert await _sent(store) == []  # nothing before `accepted`

    await store.accept(CENTRAL_ID, NOW)
    await store.accept(CENTRAL_ID, NOW)
    assert await _sent(store) == [("accepted", 0, 4)]

    await jobs.mark_printing(first, NOW)
    await store.refresh(CENTRAL_ID, NOW)
    await store.refresh(CENTRAL_ID, NOW)
    await jobs.finish(first, COMPLETE, NOW, 2, None)
    await store.refresh(CENTRAL_ID, NOW)
    await jobs.mark_printing(second, NOW)
    await jobs.finish(second, COMPLETE, NOW, 2, None)
    await store.refresh(CENTRAL_ID, NOW)
    await store.refresh(CENTRAL_ID, NOW)

    assert await _sent(store) == [
        ("accepted", 0, 4),
        ("printing", 0, 4),
        ("printing", 2, 4),
        ("done", 4, 4),
    ]
    assert await store.unfinished() == []


async def test_a_failed_document_fails_the_central_job_with_its_error(database: Database) -> None:
    store = CentralStore(database)
    await store.begin(CENTRAL_ID, MACHINE.pk, 1, 2, NOW)
    await _local(database, 0, status=FAILED, errors=("Paper jam on label 1",))
    await store.accept(CENTRAL_ID, NOW)

    (*_, last) = await store.outbox()
    assert last.body == {
        "state": "failed",
        "printed": 0,
        "total": 2,
        "message": "Paper jam on label 1",
    }


async def test_the_outbox_is_read_in_order_and_an_entry_leaves_once_delivered(
    database: Database,
) -> None:
    store = CentralStore(database)
    await store.begin(CENTRAL_ID, MACHINE.pk, 1, 2, NOW)
    await _local(database, 0, status=PRINTING, progress=1)
    await store.accept(CENTRAL_ID, NOW)
    entries = await store.outbox()
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert await store.pending() == 2

    await store.delivered(entries[0].seq)

    assert [e.body["state"] for e in await store.outbox()] == ["printing"]


async def test_pruning_forgets_only_delivered_finished_jobs_without_local_jobs(
    database: Database,
) -> None:
    store = CentralStore(database)
    await store.fail(CENTRAL_ID, MACHINE.pk, 1, 1, "No printer", NOW)
    assert await store.prune() == 0  # its report is still in the outbox

    (entry,) = await store.outbox()
    await store.delivered(entry.seq)
    assert await store.prune() == 1
    assert await store.job(CENTRAL_ID) is None

    kept = "b6b1c0de-0000-4000-8000-000000000002"
    await store.begin(kept, MACHINE.pk, 1, 2, NOW)
    row = job_row(idempotency_key=idempotency_key(kept, 0), status=COMPLETE, progress=2)
    await JobStore(database).insert(row, b"%PDF")
    await store.accept(kept, NOW)
    for entry in await store.outbox():
        await store.delivered(entry.seq)
    assert await store.prune() == 0  # its local job is still kept
