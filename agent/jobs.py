"""The durable print queue: one worker per machine prints its jobs in order, and never loses one.

A job is committed before the API answers. A worker marks it `printing` (committed) before the
first byte goes out, and `complete` after the driver returns. After a crash, a job caught
`printing` is sent again once, resuming after the labels it had confirmed; a `complete` job is
never sent again. A graceful stop or a cancel ends a job after the label being sent.

Each attempt is `agent.job_attempt`'s; every state change of a job goes through
`agent.job_transitions`; what the queue keeps per machine is an `agent.machine_worker`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import structlog

from agent.clock import Clock, SystemClock, wait_event
from agent.config import JobsConfig
from agent.documents import RAW_CONTENT_TYPE, DocumentError
from agent.events import MachineChange, MachineChanged, MachineReachable, MachineRemoved
from agent.job_attempt import CANCEL, SHUTDOWN, JobAttempts
from agent.job_pages import ActiveJob
from agent.job_status import JobChangeHandler, JobStatus, ignore_job_change
from agent.job_transitions import JobTransitions
from agent.machine import Machine
from agent.machine_worker import MachineWorker
from agent.registry import Registry
from agent.render_service import RenderService
from agent.storage.errors import DuplicateIdempotencyKey
from agent.storage.jobs import PRUNE_BATCH, JobRow, JobStore
from agent.tasks import TaskSet
from drivers.base import LabelPrinterDriver

log = structlog.get_logger(__name__)

PRUNE_INTERVAL_S = 3600.0
# The first prune waits until the daemon is up (a backlog of old jobs must not delay the start);
# between batches other database calls get their turn.
PRUNE_START_DELAY_S = 10.0
PRUNE_BATCH_PAUSE_S = 0.05
# At shutdown a job being sent gets this long to finish its label before it is cut off.
STOP_GRACE_S = 8.0
STOP_TIMEOUT_S = 2.0
# DELETE of a printing job waits this long for the label being sent before answering 202.
CANCEL_WAIT_S = 5.0
CANCEL_ROUNDS = 3
# The wall clock is compared with the monotonic clock this often; a jump of more than
# CLOCK_STEP_S is a step (NTP after a boot without a real-time clock), not drift.
CLOCK_CHECK_INTERVAL_S = 30.0
CLOCK_STEP_S = 10.0
# After an unexpected error (a database that failed) the worker pauses this long, then goes on.
WORKER_ERROR_PAUSE_S = 5.0


class JobNotCancellable(Exception):
    """The job has finished."""


class TooManyLabels(ValueError):
    """Pages x copies is over the configured `max_labels`."""


class Submitted(NamedTuple):
    job: JobRow
    created: bool


class Cancelled(NamedTuple):
    job: JobRow
    # False while the label being sent is still on its way (the job stops after it).
    stopped: bool


class JobRunner:
    """Accepts jobs and runs one worker per machine."""

    def __init__(
        self,
        jobs: JobStore,
        registry: Registry,
        render: RenderService,
        config: JobsConfig,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_job_changed: JobChangeHandler = ignore_job_change,
    ) -> None:
        """`clock` and `rng` (retry jitter) are the host's unless given (tests move time)."""
        self.jobs = jobs
        self.registry = registry
        self.render = render
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.transitions = JobTransitions(jobs, self.clock, on_job_changed)
        self._workers: dict[str, MachineWorker] = {}
        self._clock_offset = 0.0
        self._stopping = False
        self._tasks = TaskSet("jobs")
        self._attempts = JobAttempts(
            jobs,
            self.transitions,
            registry,
            render,
            config,
            self.clock,
            rng or random.Random(),  # noqa: S311 - retry jitter, not security
            self._tasks,
        )

    async def start(self, *, prune: bool = True) -> None:
        """Recover interrupted jobs, load the queue and start the workers and the pruner.

        `prune=False` when the clock cannot be trusted (it is behind stored dates).
        """
        self._clock_offset = self._offset()
        requeued, failed = await self.transitions.recover_interrupted()
        if requeued or failed:
            log.warning("jobs_recovered_after_crash", requeued=requeued, failed=failed)
        pending = await self.jobs.pending()
        if pending:
            newest = max(dt.datetime.fromisoformat(row.created) for row in pending)
            behind = (newest - self.clock.now()).total_seconds()
            if behind > CLOCK_STEP_S:
                # Each job still gets at most the full expiry, counted from now.
                log.warning("clock_behind_queued_jobs", seconds=round(behind))
        for row in pending:
            self._enqueue(row)
        if prune:
            self._tasks.create(self._prune_forever(), name="prune")
        self._tasks.create(self._watch_clock(), name="clock")

    async def close(self) -> None:
        """Stop the workers: a job being sent finishes its label, then goes back to the queue."""
        self._stopping = True
        for worker in self._workers.values():
            if worker.active is not None:
                worker.active.request_stop(SHUTDOWN)
            worker.wake.set()
        tasks = [worker.task for worker in self._workers.values() if worker.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        self._workers.clear()
        await self._tasks.close(STOP_TIMEOUT_S)

    async def submit(
        self,
        machine: Machine,
        document: bytes,
        content_type: str,
        copies: int,
        options: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> Submitted:
        """Validate and store a job; it is on disk when this returns.

        Raises DocumentError, or TooManyLabels when pages x copies is over `max_labels`.
        """
        if idempotency_key is not None:
            existing = await self.jobs.get_by_key(machine.pk, idempotency_key)
            if existing is not None:
                return Submitted(existing, created=False)
        pages: int | None = None
        warnings: tuple[str, ...] = ()
        if content_type != RAW_CONTENT_TYPE:
            # Checked, counted and laid out, not rendered: pages are rendered once, when printed.
            pages, warnings = await self.render.check(machine, document, content_type, options)
        elif not document:
            raise DocumentError("the document is empty")
        labels = (pages or 1) * copies
        if labels > self.config.max_labels:
            raise TooManyLabels(
                f"This job would print {labels} labels ({pages or 1} pages x {copies} copies), "
                f"more than the limit of {self.config.max_labels}."
            )
        now = self.clock.now()
        row = JobRow(
            pk=str(uuid.uuid4()),
            seq=0,
            machine=machine.pk,
            status=JobStatus.QUEUED,
            copies=copies,
            pages=pages,
            progress=0,
            attempts=0,
            interruptions=0,
            errors=(),
            error_count=0,
            warnings=warnings,
            content_type=content_type,
            size=len(document),
            options=dict(options),
            idempotency_key=idempotency_key,
            created=now.isoformat(),
            started=None,
            finished=None,
            expires=(now + dt.timedelta(hours=self.config.expiry_hours)).isoformat(),
        )
        try:
            row = await self.transitions.accept(row, document, on_late=self._enqueue)
        except DuplicateIdempotencyKey as err:
            existing = await self.jobs.get_by_key(machine.pk, err.key)
            if existing is None:
                raise
            return Submitted(existing, created=False)
        self._enqueue(row)
        log.info("job_queued", job=row.pk, machine=machine.name, pages=pages, copies=copies)
        return Submitted(row, created=True)

    async def cancel(self, pk: str, wait: float = CANCEL_WAIT_S) -> Cancelled:
        """Cancel a job; a printing one stops after the label being sent.

        Waits up to `wait` seconds for a printing job to stop. Raises KeyError for an unknown job
        and JobNotCancellable for a finished one.
        """
        deadline = asyncio.get_running_loop().time() + wait
        requested = False
        row = await self._get(pk)
        # An attempt may start, or end on a printer fault before it saw the stop, between our
        # reads: each round looks again, a few times at most.
        for _round in range(CANCEL_ROUNDS):
            if row.status == JobStatus.QUEUED:
                if await self.transitions.move(row, JobStatus.CANCELLED) is not None:
                    row = await self._get(pk)
                    self._unqueue(row)
                    log.info("job_cancelled", job=pk)
                    return Cancelled(row, stopped=True)
                row = await self._get(pk)
                continue
            active = self._active(pk)
            if row.status != JobStatus.PRINTING or active is None:
                break
            active.request_stop(CANCEL)
            requested = True
            log.info("job_cancel_requested", job=pk)
            try:
                async with asyncio.timeout_at(deadline):
                    await active.done.wait()
            except TimeoutError:
                return Cancelled(await self._get(pk), stopped=False)
            row = await self._get(pk)
        if not requested or row.status == JobStatus.COMPLETE:
            raise JobNotCancellable(pk)
        return Cancelled(row, stopped=row.status != JobStatus.PRINTING)

    def live_progress(self, pk: str) -> int | None:
        """Progress of a job being printed right now, fresher than the database."""
        active = self._active(pk)
        return active.progress if active is not None else None

    def queues(self) -> dict[str, tuple[int, str | None]]:
        """Per machine pk: its jobs waiting or printing, and when the oldest was created (ISO)."""
        return {
            pk: (len(worker.queue), min((row.created for row in worker.queue), default=None))
            for pk, worker in self._workers.items()
        }

    def worker(self, machine_pk: str) -> MachineWorker | None:
        """The worker of a machine that has had jobs since the start (None once it is deleted)."""
        return self._workers.get(machine_pk)

    # machine events: any of them may let a waiting job go now

    def on_machine_changed(self, event: MachineChanged) -> None:
        """Started, a setting changed or restarted: try again now; stopped: the worker waits."""
        self.kick(event.machine.pk, retry_now=event.change is not MachineChange.STOPPED)

    def on_machine_removed(self, event: MachineRemoved) -> None:
        """Wake the worker: the machine was deleted, so it ends."""
        self.kick(event.machine.pk)

    def on_machine_reachable(self, event: MachineReachable) -> None:
        """A poll reached the printer: a job waiting for it may try again now."""
        self.kick(event.machine.pk, retry_now=True)

    def kick(self, machine_pk: str, *, retry_now: bool = False) -> None:
        """Wake a machine's worker; with `retry_now` skip the rest of a backoff wait."""
        worker = self._workers.get(machine_pk)
        if worker is not None:
            worker.kick(retry_now=retry_now)

    async def check_clock(self) -> None:
        """After a step of the wall clock, move the stored expiry of unfinished jobs with it.

        Deadlines in memory run on the monotonic clock and need no change; the stored ones are
        what a restart reads.
        """
        offset = self._offset()
        step = offset - self._clock_offset
        if abs(step) < CLOCK_STEP_S:
            return
        self._clock_offset = offset
        moved = await self.jobs.shift_expiry(step)
        log.warning("clock_stepped", seconds=round(step, 1), jobs=moved)

    # internals

    def _offset(self) -> float:
        return self.clock.now().timestamp() - self.clock.monotonic()

    def _active(self, pk: str) -> ActiveJob | None:
        for worker in self._workers.values():
            if worker.active is not None and worker.active.pk == pk:
                return worker.active
        return None

    async def _get(self, pk: str) -> JobRow:
        row = await self.jobs.get(pk)
        if row is None:
            raise KeyError(pk)
        return row

    def _enqueue(self, row: JobRow) -> None:
        left = (dt.datetime.fromisoformat(row.expires) - self.clock.now()).total_seconds()
        # A stored expiry is only as good as the clock that wrote it: never more than the full
        # expiry from now, never less than nothing.
        left = min(max(left, 0.0), self.config.expiry_hours * 3600)
        worker = self._workers.get(row.machine)
        if worker is None:
            worker = self._workers[row.machine] = MachineWorker(row.machine)
        worker.add(row, self.clock.monotonic() + left)
        if worker.task is None and not self._stopping:
            worker.task = self._tasks.create(self._work(worker), name=row.machine)

    def _unqueue(self, row: JobRow) -> None:
        worker = self._workers.get(row.machine)
        if worker is not None:
            worker.remove(row.pk)

    async def _work(self, worker: MachineWorker) -> None:
        machine = self.registry.get(worker.machine_pk)
        if machine is not None:
            # Every log line of this worker (drivers and transports included) names the machine.
            structlog.contextvars.bind_contextvars(machine=machine.name, driver=machine.driver_slug)
        while not self._stopping:
            worker.wake.clear()
            machine = self.registry.get(worker.machine_pk)
            if machine is None:
                # Deleted: its jobs went with it (the database cascades); so does this worker.
                self._workers.pop(worker.machine_pk, None)
                return
            if not worker.queue:
                await worker.wake.wait()
                continue
            job = worker.queue[0]
            try:
                await self.check_clock()
                left = worker.deadlines.get(job.pk, 0.0) - self.clock.monotonic()
                if left <= 0:
                    worker.done_with(job)
                    await self._attempts.expire(job)
                    continue
                ready = (
                    machine.active
                    and machine.initialized
                    and isinstance(machine.driver, LabelPrinterDriver)
                )
                backoff = worker.next_attempt - self.clock.monotonic()
                if not ready or backoff > 0:
                    await wait_event(
                        self.clock, worker.wake, min(left, backoff) if backoff > 0 else left
                    )
                    continue
                if await self._attempts.run(worker, machine, job):
                    worker.done_with(job)
            except Exception:  # the worker must outlive a failing database
                log.exception("job_worker_error", job=job.pk)
                await self.clock.sleep(WORKER_ERROR_PAUSE_S)

    async def _prune_forever(self) -> None:
        await self.clock.sleep(PRUNE_START_DELAY_S)
        while True:
            await self.prune()
            await self.clock.sleep(PRUNE_INTERVAL_S)

    async def prune(self) -> int:
        """Delete finished jobs past the retention, batch by batch; returns how many."""
        cutoff = (self.clock.now() - dt.timedelta(days=self.config.retention_days)).isoformat()
        removed = 0
        while True:
            batch = await self.jobs.prune(cutoff)
            removed += batch
            if batch < PRUNE_BATCH:
                break
            await self.clock.sleep(PRUNE_BATCH_PAUSE_S)
        if removed:
            log.info("jobs_pruned", removed=removed)
        return removed

    async def _watch_clock(self) -> None:
        while True:
            await self.clock.sleep(CLOCK_CHECK_INTERVAL_S)
            try:
                await self.check_clock()
            except Exception:  # a failing database must not end the watch
                log.exception("clock_check_failed")
