"""A print job's states, the moves between them, and the event each move makes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    """A job's state, as stored and as the API shows it."""

    QUEUED = "queued"
    PRINTING = "printing"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the states a job never leaves."""
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})

# Where a job may go from each state; None is a job not yet accepted. QUEUED -> QUEUED is a failed
# attempt that never reached the printer (the job stays queued with the error recorded).
ALLOWED: Mapping[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset(
        {JobStatus.QUEUED, JobStatus.PRINTING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.PRINTING: frozenset(
        {JobStatus.QUEUED, JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(Exception):
    """A move the job's state machine does not have (a bug in the caller, not bad input)."""

    def __init__(self, old: JobStatus | None, new: JobStatus) -> None:
        super().__init__(f"a job cannot go from {old or 'new'} to {new}")
        self.old = old
        self.new = new


def check_transition(old: JobStatus | None, new: JobStatus) -> None:
    """Raise InvalidTransition unless a job may go from `old` to `new`."""
    if new not in ALLOWED[old]:
        raise InvalidTransition(old, new)


@dataclass(frozen=True, slots=True)
class JobChange:
    """A job moved from one state to another (committed to the database)."""

    job: str
    machine: str
    # None: the job was just accepted.
    old: JobStatus | None
    new: JobStatus
    # Why, when the move records an error (a failed attempt, a job that failed).
    error: str | None = None


JobChangeHandler = Callable[[JobChange], None]


def ignore_job_change(change: JobChange) -> None:
    """The default handler: nobody listens."""
