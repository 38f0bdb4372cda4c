"""The job store on a real SQLite file: the crash rule, retention, paging in SQL, migration 4."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.migrations import MIGRATIONS, migrate
from agent.storage.database import Database
from agent.storage.errors import DuplicateIdempotencyKey
from agent.storage.jobs import FAILED, PRINTING, QUEUED, JobRow, JobStore
from agent.storage.machines import MachineRow, MachineStore
from tests.storage_helpers import job_row

MACHINES = ("m-1", "m-2")
NOW = "2026-06-01T12:00:00+00:00"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    opened = Database(tmp_path / "data" / "inventree-edge.sqlite3")
    await opened.open()
    for pk in MACHINES:
        await MachineStore(opened).insert_machine(
            MachineRow(pk, pk, "label-printer", "virtual", True)
        )
    yield opened
    await opened.close()


@pytest.fixture
def jobs(database: Database) -> JobStore:
    return JobStore(database)


def job(machine: str = MACHINES[0], **fields: object) -> JobRow:
    return job_row(machine, **fields)


async def crash_while_printing(
    jobs: JobStore, pk: str, progress: int, *, written: bool = True
) -> None:
    """What a SIGKILL during an attempt leaves: the job `printing` at its last saved progress."""
    assert await jobs.mark_printing(pk, NOW)
    await jobs.save_progress(pk, progress)
    if written:
        await jobs.mark_written(pk)


async def test_an_idempotency_key_used_again_on_the_machine_is_a_domain_error(
    jobs: JobStore,
) -> None:
    first = await jobs.insert(job(idempotency_key="k-1"), b"%PDF")
    with pytest.raises(DuplicateIdempotencyKey) as info:
        await jobs.insert(job(idempotency_key="k-1"), b"%PDF")
    assert not isinstance(info.value, sqlite3.Error)
    assert info.value.key == "k-1"
    # The same key on another machine is another job; a job without a key never conflicts.
    await jobs.insert(job(MACHINES[1], idempotency_key="k-1"), b"%PDF")
    await jobs.insert(job(), b"%PDF")
    await jobs.insert(job(), b"%PDF")
    assert await jobs.get_by_key(MACHINES[0], "k-1") == first
    assert len(await jobs.find(MACHINES[0])) == 3


async def test_a_job_stopped_twice_on_the_same_label_fails_with_a_finish_time(
    jobs: JobStore,
) -> None:
    row = await jobs.insert(job(), b"%PDF")
    await crash_while_printing(jobs, row.pk, 1)
    assert await jobs.recover_interrupted(NOW) == (1, 0)
    await crash_while_printing(jobs, row.pk, 1)
    assert await jobs.recover_interrupted(NOW) == (0, 1)
    failed = await jobs.get(row.pk)
    assert failed is not None
    assert (failed.status, failed.finished) == (FAILED, NOW)
    assert "no label prints more than twice" in failed.errors[-1]
    # Retention can see it: it goes with the other old jobs.
    assert await jobs.prune("2026-06-02T00:00:00+00:00") == 1
    assert await jobs.get(row.pk) is None


async def test_a_job_stopped_before_it_wrote_anything_is_never_failed_for_it(
    jobs: JobStore,
) -> None:
    row = await jobs.insert(job(), b"%PDF")
    # Stopped three times while still connecting: nothing reached the printer, nothing printed.
    for _ in range(3):
        await crash_while_printing(jobs, row.pk, 0, written=False)
        assert await jobs.recover_interrupted(NOW) == (1, 0)
    again = await jobs.get(row.pk)
    assert again is not None
    assert (again.status, again.interruptions, again.finished) == (QUEUED, 0, None)
    # Once bytes went out, the rule applies again: twice on the same label fails.
    await crash_while_printing(jobs, row.pk, 0)
    assert await jobs.recover_interrupted(NOW) == (1, 0)
    await crash_while_printing(jobs, row.pk, 0)
    assert await jobs.recover_interrupted(NOW) == (0, 1)


async def test_a_job_that_confirmed_labels_between_two_stops_goes_on(jobs: JobStore) -> None:
    row = await jobs.insert(job(), b"%PDF")
    await crash_while_printing(jobs, row.pk, 0)
    assert await jobs.recover_interrupted(NOW) == (1, 0)
    # The second attempt confirmed label 1, then the agent stopped while sending label 2.
    await crash_while_printing(jobs, row.pk, 1)
    assert await jobs.recover_interrupted(NOW) == (1, 0)
    again = await jobs.get(row.pk)
    assert again is not None
    assert (again.status, again.progress, again.finished) == (QUEUED, 1, None)


async def test_pruning_deletes_in_batches_and_keeps_what_is_recent(jobs: JobStore) -> None:
    old = [
        await jobs.insert(job(status=FAILED, finished="2026-01-01T00:00:00+00:00"), b"x")
        for _ in range(25)
    ]
    recent = await jobs.insert(job(status=FAILED, finished=NOW), b"x")
    queued = await jobs.insert(job(), b"x")
    cutoff = "2026-05-01T00:00:00+00:00"
    assert [await jobs.prune(cutoff, batch=10) for _ in range(4)] == [10, 10, 5, 0]
    assert await jobs.get(old[0].pk) is None
    assert await jobs.document(old[0].pk) == b""
    assert await jobs.get(recent.pk) is not None
    assert await jobs.get(queued.pk) is not None


async def test_a_page_of_jobs_is_counted_and_cut_in_sql(jobs: JobStore) -> None:
    rows = []
    for index in range(30):
        machine = MACHINES[index % 2]
        status = FAILED if index % 3 == 0 else QUEUED
        finished = NOW if status == FAILED else None
        rows.append(await jobs.insert(job(machine, status=status, finished=finished), b"x"))
    newest_first = list(reversed(rows))
    count, page = await jobs.page(None, None, 5, 0)
    assert (count, [r.pk for r in page]) == (30, [r.pk for r in newest_first[:5]])
    count, page = await jobs.page(MACHINES[1], QUEUED, 4, 2)
    wanted = [r for r in newest_first if r.machine == MACHINES[1] and r.status == QUEUED]
    assert (count, [r.pk for r in page]) == (len(wanted), [r.pk for r in wanted[2:6]])
    count, page = await jobs.page(None, FAILED, 100, 0)
    assert [r.pk for r in page] == [r.pk for r in newest_first if r.status == FAILED]


@pytest.mark.parametrize(
    ("machine", "status"), [(None, None), ("m-1", None), (None, "queued"), ("m-1", "queued")]
)
async def test_every_job_listing_is_read_through_an_index(
    jobs: JobStore, machine: str | None, status: str | None
) -> None:
    """A page costs its own size, not the size of the history: no full scan, no sort."""
    clauses = [c for c, v in (("machine = ?", machine), ("status = ?", status)) if v is not None]
    params = [v for v in (machine, status) if v is not None]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    plan = await jobs.database.read(
        lambda c: " | ".join(
            str(r[3])
            for r in c.execute(
                f"EXPLAIN QUERY PLAN SELECT pk FROM job {where} ORDER BY seq DESC LIMIT 25",  # noqa: S608
                params,
            )
        )
    )
    assert "USING" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_migration_4_gives_old_failed_jobs_a_finish_time(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite3", isolation_level=None)
    try:
        conn.execute("PRAGMA user_version = 0")
        for script in MIGRATIONS[:3]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('m', 'm', 't', 'd')"
        )
        conn.execute(
            "INSERT INTO job (pk, seq, machine, status, copies, content_type, size, created, "
            "started, expires) VALUES ('j', 1, 'm', 'failed', 1, 'x', 1, "
            "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:05+00:00', '2026-01-02')"
        )
        migrate(conn)
        assert conn.execute("SELECT finished FROM job").fetchone() == ("2026-01-01T00:00:05+00:00",)
        counts = conn.execute("SELECT machine, status, n FROM job_count").fetchall()
        assert counts == [("m", "failed", 1)]
    finally:
        conn.close()


async def test_page_counts_follow_every_change_of_the_jobs(jobs: JobStore) -> None:
    rows = [await jobs.insert(job(MACHINES[i % 2]), b"x") for i in range(12)]
    await jobs.mark_printing(rows[0].pk, NOW)
    await jobs.finish(rows[1].pk, FAILED, NOW, 0, "broken")
    await jobs.cancel(rows[2].pk, NOW)
    await jobs.requeue(rows[0].pk, 0, "printer away")
    await crash_while_printing(jobs, rows[3].pk, 0)
    await jobs.recover_interrupted(NOW)
    await jobs.prune("2027-01-01T00:00:00+00:00", batch=1)
    await MachineStore(jobs.database).delete_machine(MACHINES[1])

    def truth(conn: sqlite3.Connection, machine: str | None, status: str | None) -> int:
        sql = "SELECT count(*) FROM job WHERE (? IS NULL OR machine = ?) AND (? IS NULL OR status = ?)"
        return int(conn.execute(sql, (machine, machine, status, status)).fetchone()[0])

    for machine in (None, *MACHINES):
        for status in (None, QUEUED, PRINTING, FAILED, "cancelled", "complete"):
            expected = await jobs.database.read(lambda c, m=machine, s=status: truth(c, m, s))
            count, _page = await jobs.page(machine, status, 1, 0)
            assert count == expected, (machine, status)
