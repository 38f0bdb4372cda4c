"""Job state changes on a real SQLite file: checked, committed, then announced once each."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.clock import SystemClock
from agent.job_status import ALLOWED, InvalidTransition, JobChange, JobStatus, check_transition
from agent.job_transitions import JobTransitions
from agent.storage.jobs import JobStore
from tests.test_storage_jobs import MACHINES, database, job, jobs  # noqa: F401 - fixtures

QUEUED, PRINTING = JobStatus.QUEUED, JobStatus.PRINTING
COMPLETE, FAILED, CANCELLED = JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED


def test_the_wire_strings_stay_as_they_were() -> None:
    assert [status.value for status in JobStatus] == [
        "queued",
        "printing",
        "complete",
        "failed",
        "cancelled",
    ]
    assert {s for s in JobStatus if s.finished} == {COMPLETE, FAILED, CANCELLED}


@pytest.mark.parametrize("finished", [COMPLETE, FAILED, CANCELLED])
def test_a_finished_job_goes_nowhere(finished: JobStatus) -> None:
    for target in JobStatus:
        with pytest.raises(InvalidTransition):
            check_transition(finished, target)


def test_a_job_is_accepted_queued_and_completes_only_from_printing() -> None:
    assert ALLOWED[None] == {QUEUED}
    check_transition(PRINTING, COMPLETE)
    with pytest.raises(InvalidTransition, match="from queued to complete"):
        check_transition(QUEUED, COMPLETE)
    with pytest.raises(InvalidTransition):
        check_transition(None, PRINTING)


async def test_every_move_is_committed_and_announced_once(jobs: JobStore) -> None:  # noqa: F811
    changes: list[JobChange] = []
    transitions = JobTransitions(jobs, SystemClock(), changes.append)
    accepted = await transitions.accept(job(), b"%PDF", on_late=lambda row: None)
    printing = await transitions.move(accepted, PRINTING)
    assert printing is not None
    requeued = await transitions.move(printing, QUEUED, progress=2, error="Paper out")
    assert requeued is not None
    assert await transitions.move(requeued, QUEUED, error="still out") is not None
    printing = await transitions.move(requeued, PRINTING)
    assert printing is not None
    done = await transitions.move(printing, COMPLETE, progress=3)
    assert done is not None
    stored = await jobs.get(accepted.pk)
    assert stored is not None
    assert (stored.status, stored.progress, stored.errors) == (
        COMPLETE,
        3,
        ("Paper out", "still out"),
    )
    pk, machine = accepted.pk, accepted.machine
    assert changes == [
        JobChange(pk, machine, None, QUEUED),
        JobChange(pk, machine, QUEUED, PRINTING),
        JobChange(pk, machine, PRINTING, QUEUED, "Paper out"),
        JobChange(pk, machine, QUEUED, QUEUED, "still out"),
        JobChange(pk, machine, QUEUED, PRINTING),
        JobChange(pk, machine, PRINTING, COMPLETE),
    ]
    with pytest.raises(InvalidTransition):
        await transitions.move(done, QUEUED)


async def test_a_move_the_database_refuses_is_not_announced(jobs: JobStore) -> None:  # noqa: F811
    changes: list[JobChange] = []
    transitions = JobTransitions(jobs, SystemClock(), changes.append)
    accepted = await transitions.accept(job(), b"%PDF", on_late=lambda row: None)
    assert await transitions.move(accepted, CANCELLED) is not None
    # The worker still holds the queued row it read before the cancel.
    assert await transitions.move(accepted, PRINTING) is None
    assert await transitions.move(accepted, FAILED, error="too late") is None
    assert await transitions.move(accepted, QUEUED, error="too late") is None
    stored = await jobs.get(accepted.pk)
    assert stored is not None
    assert (stored.status, stored.errors) == (CANCELLED, ())
    assert [change.new for change in changes] == [QUEUED, CANCELLED]


async def test_a_failing_listener_does_not_stop_a_move(jobs: JobStore) -> None:  # noqa: F811
    def broken(change: JobChange) -> None:
        raise RuntimeError("listener bug")

    transitions = JobTransitions(jobs, SystemClock(), broken)
    accepted = await transitions.accept(job(), b"%PDF", on_late=lambda row: None)
    assert await transitions.move(accepted, PRINTING) is not None


async def test_jobs_recovered_after_a_crash_are_announced(jobs: JobStore) -> None:  # noqa: F811
    changes: list[JobChange] = []
    transitions = JobTransitions(jobs, SystemClock(), changes.append)
    resumed = await transitions.accept(job(), b"%PDF", on_late=lambda row: None)
    stuck = await transitions.accept(job(MACHINES[1]), b"%PDF", on_late=lambda row: None)
    now = dt.datetime.now(dt.UTC).isoformat()
    for row in (resumed, stuck):
        await jobs.mark_printing(row.pk, now)
        await jobs.mark_written(row.pk)
    # Caught on the same label a second time: it fails rather than print that label again.
    await jobs.database.write(
        lambda conn: conn.execute("UPDATE job SET interruptions = 1 WHERE pk = ?", (stuck.pk,))
    )
    changes.clear()
    assert await transitions.recover_interrupted() == (1, 1)
    by_job = {change.job: change for change in changes}
    assert len(changes) == 2
    assert by_job[resumed.pk] == JobChange(resumed.pk, resumed.machine, PRINTING, QUEUED)
    failed = by_job[stuck.pk]
    assert (failed.old, failed.new) == (PRINTING, FAILED)
    assert failed.error is not None
    assert "third time" in failed.error
