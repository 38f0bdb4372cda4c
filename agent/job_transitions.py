"""Every change of a job's state goes through here: checked, committed, then announced.

The database has the last word: a move whose row changed meanwhile (a job cancelled while it was
being prepared) commits nothing, returns None and announces nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import structlog

from agent.clock import Clock
from agent.job_status import (
    JobChange,
    JobChangeHandler,
    JobStatus,
    check_transition,
    ignore_job_change,
)
from agent.storage.jobs import JobRow, JobStore

log = structlog.get_logger(__name__)


class JobTransitions:
    """Moves jobs between states in the store and tells `on_job_changed` about each move."""

    def __init__(
        self, jobs: JobStore, clock: Clock, on_job_changed: JobChangeHandler = ignore_job_change
    ) -> None:
        self.jobs = jobs
        self.clock = clock
        self.on_job_changed = on_job_changed

    async def accept(
        self, row: JobRow, document: bytes, on_late: Callable[[JobRow], None]
    ) -> JobRow:
        """Store a new job (queued) with its document; see `JobStore.insert`."""
        check_transition(None, row.status)

        def late(stored: JobRow) -> None:
            self._announce(JobChange(stored.pk, stored.machine, None, stored.status))
            on_late(stored)

        stored = await self.jobs.insert(row, document, on_late=late)
        self._announce(JobChange(stored.pk, stored.machine, None, stored.status))
        return stored

    async def move(
        self,
        job: JobRow,
        to: JobStatus,
        *,
        progress: int | None = None,
        error: str | None = None,
    ) -> JobRow | None:
        """Move `job` (in the state its row says) to `to`; None if the database refused.

        Returns the row with its new status and progress (other columns as `job` had them).

        `progress` is the labels confirmed (for a job leaving `printing`); `error` is recorded on
        the job. Raises InvalidTransition for a move the state machine does not have.
        """
        check_transition(job.status, to)
        labels = job.progress if progress is None else progress
        now = self.clock.now().isoformat()
        if to == JobStatus.PRINTING:
            moved = await self.jobs.mark_printing(job.pk, now)
        elif to == JobStatus.QUEUED:
            moved = await self.jobs.requeue(job.pk, labels, error)
        elif to == JobStatus.CANCELLED and job.status == JobStatus.QUEUED:
            moved = await self.jobs.cancel(job.pk, now)
        else:
            moved = await self.jobs.finish(job.pk, to, now, labels, error)
        if not moved:
            return None
        self._announce(JobChange(job.pk, job.machine, job.status, to, error))
        return replace(job, status=to, progress=labels)

    async def recover_interrupted(self) -> tuple[int, int]:
        """After a crash, jobs caught printing are requeued or failed (`JobStore.recover_interrupted`)."""
        caught = await self.jobs.find(status=JobStatus.PRINTING)
        counts = await self.jobs.recover_interrupted(self.clock.now().isoformat())
        for job in caught:
            now = await self.jobs.get(job.pk)
            if now is not None and now.status != job.status:
                error = now.errors[-1] if now.status == JobStatus.FAILED and now.errors else None
                self._announce(JobChange(job.pk, job.machine, job.status, now.status, error))
        return counts

    def _announce(self, change: JobChange) -> None:
        try:
            self.on_job_changed(change)
        except Exception:  # a listener's bug must not stop the queue
            log.exception("job_change_handler_failed", job=change.job, new=change.new)
