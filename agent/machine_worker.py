"""What the queue keeps for one machine: its jobs in order, its retry state, the job it prints."""

from __future__ import annotations

import asyncio
from collections import deque

from agent.job_pages import ActiveJob
from agent.storage.jobs import JobRow


class MachineWorker:
    """One machine's queue; its task (`JobRunner`) prints the jobs one at a time.

    Everything here goes when the machine does: dropping the worker forgets it all at once.
    """

    def __init__(self, machine_pk: str) -> None:
        self.machine_pk = machine_pk
        self.queue: deque[JobRow] = deque()
        # Set to make the task look again (a job queued, the machine changed, a stop).
        self.wake = asyncio.Event()
        # Failed attempts in a row on this machine, and when (monotonic) the next may start.
        self.failures = 0
        self.next_attempt = 0.0
        # Per queued job: the monotonic time it expires, and its failed attempts in a row.
        self.deadlines: dict[str, float] = {}
        self.strikes: dict[str, int] = {}
        # The job being printed now.
        self.active: ActiveJob | None = None
        self.task: asyncio.Task[None] | None = None

    def add(self, row: JobRow, deadline: float) -> None:
        """Queue a job that expires at `deadline` (monotonic) and wake the task."""
        self.deadlines[row.pk] = deadline
        self.queue.append(row)
        self.wake.set()

    def remove(self, pk: str) -> None:
        """Take a job out of the queue wherever it is (cancelled) and forget it."""
        for queued in list(self.queue):
            if queued.pk == pk:
                self.queue.remove(queued)
        self.forget(pk)

    def done_with(self, job: JobRow) -> None:
        """The job left the queue (finished or expired); cancel may have taken it out already."""
        if self.queue and self.queue[0] is job:
            self.queue.popleft()
        elif job in self.queue:
            self.queue.remove(job)
        self.forget(job.pk)

    def forget(self, pk: str) -> None:
        """Drop what is kept about one job."""
        self.deadlines.pop(pk, None)
        self.strikes.pop(pk, None)

    def kick(self, *, retry_now: bool = False) -> None:
        """Wake the task; with `retry_now` skip the rest of a backoff wait."""
        if retry_now:
            self.next_attempt = 0.0
        self.wake.set()
