"""What the queue keeps per machine: jobs in order, what it knows of each, and its wake-ups."""

from __future__ import annotations

from agent.machine_worker import MachineWorker
from tests.test_storage_jobs import job


async def test_jobs_are_kept_in_order_and_forgotten_when_they_leave() -> None:
    worker = MachineWorker("m-1")
    first, second, third = job(), job(), job()
    for deadline, row in enumerate((first, second, third)):
        worker.add(row, float(deadline))
    assert worker.wake.is_set()
    assert list(worker.queue) == [first, second, third]
    worker.strikes[first.pk] = 2
    worker.remove(second.pk)  # cancelled while it waited
    worker.done_with(first)
    assert list(worker.queue) == [third]
    assert (worker.deadlines, worker.strikes) == ({third.pk: 2.0}, {})
    worker.done_with(second)  # already gone: nothing happens
    assert list(worker.queue) == [third]


async def test_a_kick_wakes_the_worker_and_may_end_a_backoff() -> None:
    worker = MachineWorker("m-1")
    worker.failures, worker.next_attempt = 3, 1000.0
    worker.kick()
    assert worker.wake.is_set()
    assert worker.next_attempt == 1000.0
    worker.wake.clear()
    worker.kick(retry_now=True)
    assert (worker.wake.is_set(), worker.next_attempt, worker.failures) == (True, 0.0, 3)
