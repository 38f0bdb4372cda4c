"""The durable print queue: one worker per machine prints its jobs in order, and never loses one.

A job is committed before the API answers. A worker marks it `printing` (committed) before the
first byte goes out, and `complete` after the driver returns. After a crash, a job caught
`printing` is sent again once, resuming after the labels it had confirmed; a `complete` job is
never sent again. A graceful stop or a cancel ends a job after the label being sent.

An attempt that fails because the printer says it cannot print (offline, paper out) makes the job
wait and retry with capped, jittered exponential backoff until the job expires. Any other failure
(a driver error, a printer that stalls mid-job, a lost connection) is a failed attempt, recorded on
the job and the machine; after `max_attempts` of them in a row without a label printed, the job
fails and the queue moves on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import random
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any, NamedTuple

import structlog

from agent.clock import Clock, SystemClock
from agent.config import JobsConfig
from agent.documents import RAW_CONTENT_TYPE, DocumentError
from agent.events import MachineChange, MachineChanged, MachineReachable, MachineRemoved
from agent.job_pages import ActiveJob, check_document, open_in_render_thread
from agent.machine import Machine
from agent.registry import Registry
from agent.storage.errors import DuplicateIdempotencyKey
from agent.storage.jobs import (
    CANCELLED,
    COMPLETE,
    FAILED,
    PRINTING,
    PRUNE_BATCH,
    QUEUED,
    JobRow,
    JobStore,
)
from agent.tasks import TaskSet
from drivers.base import (
    LabelPrinterDriver,
    LabelPrinterStatus,
    MachineStatus,
    PrinterUnavailable,
    PrintFailed,
)
from drivers.media import MediaMismatch
from drivers.transport import PrinterUnreachable, TransportError

log = structlog.get_logger(__name__)

# Progress of a printing job is written to the database at most this often (crash resume point).
PROGRESS_SAVE_INTERVAL_S = 0.5
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
# The wall clock is compared with the monotonic clock this often; a jump of more than
# CLOCK_STEP_S is a step (NTP after a boot without a real-time clock), not drift.
CLOCK_CHECK_INTERVAL_S = 30.0
CLOCK_STEP_S = 10.0
# After an unexpected error (a database that failed) the worker pauses this long, then goes on.
WORKER_ERROR_PAUSE_S = 5.0
STOPPED_WHILE_PRINTING = (
    "The agent stopped while sending this job; it resumes after the last confirmed label"
)
# Why a job was asked to stop.
CANCEL = "cancel"
SHUTDOWN = "shutdown"


class JobNotCancellable(Exception):
    """The job has finished."""


class TooManyLabels(ValueError):
    """Pages x copies is over the configured `max_labels`."""


class PrinterStalled(Exception):
    """The printer took no byte and printed no label for the stall time."""


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
        self, jobs: JobStore, registry: Registry, config: JobsConfig, clock: Clock | None = None
    ) -> None:
        self.jobs = jobs
        self.registry = registry
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._queues: dict[str, deque[JobRow]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._active: dict[str, ActiveJob] = {}
        self._failures: dict[str, int] = {}
        self._next_attempt: dict[str, float] = {}
        # Per job: the monotonic time it expires, and its failed attempts in a row.
        self._deadlines: dict[str, float] = {}
        self._strikes: dict[str, int] = {}
        self._clock_offset = 0.0
        self._stopping = False
        self._tasks = TaskSet("jobs")

    async def start(self, *, prune: bool = True) -> None:
        """Recover interrupted jobs, load the queue and start the workers and the pruner.

        `prune=False` when the clock cannot be trusted (it is behind stored dates).
        """
        self._clock_offset = self._offset()
        requeued, failed = await self.jobs.recover_interrupted(self.clock.now().isoformat())
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
        for active in self._active.values():
            active.request_stop(SHUTDOWN)
        for wake in self._wake.values():
            wake.set()
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=STOP_GRACE_S)
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
            pages, warnings = await check_document(
                machine, document, content_type, options, self.config.render_limits()
            )
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
            status=QUEUED,
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
            row = await self.jobs.insert(row, document, on_late=self._enqueue)
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
        if await self.jobs.cancel(pk, self.clock.now().isoformat()):
            row = await self._get(pk)
            self._unqueue(row)
            log.info("job_cancelled", job=pk)
            return Cancelled(row, stopped=True)
        row = await self._get(pk)
        active = self._active.get(pk)
        if row.status != PRINTING or active is None:
            raise JobNotCancellable(pk)
        active.request_stop(CANCEL)
        log.info("job_cancel_requested", job=pk)
        try:
            async with asyncio.timeout(wait):
                await active.done.wait()
        except TimeoutError:
            return Cancelled(await self._get(pk), stopped=False)
        row = await self._get(pk)
        if row.status == COMPLETE:
            raise JobNotCancellable(pk)
        return Cancelled(row, stopped=row.status != PRINTING)

    def live_progress(self, pk: str) -> int | None:
        """Progress of a job being printed right now, fresher than the database."""
        active = self._active.get(pk)
        return active.progress if active is not None else None

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
        if retry_now:
            self._next_attempt.pop(machine_pk, None)
        wake = self._wake.get(machine_pk)
        if wake is not None:
            wake.set()

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
        self._deadlines[row.pk] = self.clock.monotonic() + left
        self._queues.setdefault(row.machine, deque()).append(row)
        if row.machine not in self._workers and not self._stopping:
            self._wake[row.machine] = asyncio.Event()
            self._workers[row.machine] = self._tasks.create(
                self._work(row.machine), name=row.machine
            )
        self.kick(row.machine)

    def _unqueue(self, row: JobRow) -> None:
        queue = self._queues.get(row.machine)
        if queue is not None:
            for queued in list(queue):
                if queued.pk == row.pk:
                    queue.remove(queued)
        self._forget_job(row.pk)

    def _forget_job(self, pk: str) -> None:
        self._deadlines.pop(pk, None)
        self._strikes.pop(pk, None)

    async def _work(self, machine_pk: str) -> None:
        machine = self.registry.get(machine_pk)
        if machine is not None:
            # Every log line of this worker (drivers and transports included) names the machine.
            structlog.contextvars.bind_contextvars(machine=machine.name, driver=machine.driver_slug)
        queue = self._queues[machine_pk]
        wake = self._wake[machine_pk]
        while not self._stopping:
            wake.clear()
            machine = self.registry.get(machine_pk)
            if machine is None:
                # Deleted: its jobs went with it (the database cascades); so does this worker.
                self._forget(machine_pk)
                return
            if not queue:
                await wake.wait()
                continue
            job = queue[0]
            try:
                await self.check_clock()
                left = self._deadlines.get(job.pk, 0.0) - self.clock.monotonic()
                if left <= 0:
                    _discard(queue, job)
                    await self._expire(job)
                    self._forget_job(job.pk)
                    continue
                ready = (
                    machine.active
                    and machine.initialized
                    and isinstance(machine.driver, LabelPrinterDriver)
                )
                backoff = self._next_attempt.get(machine_pk, 0.0) - self.clock.monotonic()
                if not ready or backoff > 0:
                    await _wait(wake, min(left, backoff) if backoff > 0 else left)
                    continue
                if await self._print(machine, job):
                    _discard(queue, job)
                    self._forget_job(job.pk)
            except Exception:  # noqa: BLE001 - the worker must outlive a failing database
                log.exception("job_worker_error", job=job.pk)
                await asyncio.sleep(WORKER_ERROR_PAUSE_S)

    def _forget(self, machine_pk: str) -> None:
        for row in self._queues.get(machine_pk, ()):
            self._forget_job(row.pk)
        for table in (self._queues, self._wake, self._workers, self._failures, self._next_attempt):
            table.pop(machine_pk, None)

    async def _print(self, machine: Machine, job: JobRow) -> bool:
        """One attempt; True when the job left the queue (complete, failed or cancelled)."""
        with structlog.contextvars.bound_contextvars(job=job.pk):
            current = await self.jobs.get(job.pk)
            if current is None or current.status != QUEUED:
                return True
            document = await self.jobs.document(job.pk)
            try:
                active = await self._prepare(machine, current, document)
            except DocumentError as err:
                await self._finish(current, FAILED, current.progress, str(err))
                return True
            except Exception as err:  # noqa: BLE001 - driver code (page_format...) failed: an attempt
                return await self._failed(machine, current, current.progress, err)
            try:
                async with machine.io_lock:
                    return await self._send(machine, current, active)
            finally:
                self._active.pop(active.pk, None)
                active.done.set()
                await active.close()

    async def _prepare(self, machine: Machine, job: JobRow, document: bytes) -> ActiveJob:
        if job.content_type == RAW_CONTENT_TYPE:
            return ActiveJob(job, raw=document, source=None, first_label=job.progress)
        source = await open_in_render_thread(
            machine, document, job.content_type, job.options, self.config.render_limits()
        )
        return ActiveJob(job, raw=None, source=source, first_label=job.progress)

    async def _send(self, machine: Machine, job: JobRow, active: ActiveJob) -> bool:
        driver = machine.driver
        assert isinstance(driver, LabelPrinterDriver)  # noqa: S101 - checked by the worker
        self._active[job.pk] = active
        if not await self.jobs.mark_printing(job.pk, self.clock.now().isoformat()):
            return True  # cancelled while it was being rendered
        active.on_first_write = functools.partial(self.jobs.mark_written, job.pk)
        before = (machine.status, machine.status_text)
        machine.set_status(LabelPrinterStatus.PRINTING)
        saver = self._tasks.create(self._save_progress(active), name=f"progress:{job.pk}")
        try:
            await self._watched(driver.print(machine, active), active)
        except asyncio.CancelledError:
            # Cut off (the grace time at shutdown ran out): resume after the confirmed labels.
            await self._end_attempt(machine, saver, before)
            await self.jobs.requeue(job.pk, active.progress, STOPPED_WHILE_PRINTING)
            raise
        except PrintFailed as err:
            await self._end_attempt(machine, saver, before)
            await self._finish(job, FAILED, active.progress, str(err))
            machine.handle_error(f"Job {job.pk} failed: {err}")
            return True
        except Exception as err:  # noqa: BLE001 - any driver error is one failed attempt
            await self._end_attempt(machine, saver, before)
            if active.stop_reason == CANCEL:
                await self._finish(job, CANCELLED, active.progress, None)
                return True
            return await self._failed(machine, job, active.progress, err, active.first_label)
        # The printer took the job: it is connected, and a fault shown before is gone (a warning
        # such as "paper near end" may still hold).
        printed = before if before[0] == LabelPrinterStatus.WARNING else None
        await self._end_attempt(machine, saver, printed or (LabelPrinterStatus.CONNECTED, ""))
        self._failures.pop(machine.pk, None)
        if active.stop_reason is not None and active.progress < active.labels:
            return await self._stopped(job, active)
        await self._finish(job, COMPLETE, max(active.progress, active.labels), None)
        log.info("job_complete", job=job.pk, machine=machine.name, labels=active.labels)
        return True

    async def _watched(self, printing: Coroutine[Any, Any, None], active: ActiveJob) -> None:
        """Run the driver's print; stop it when the job shows no sign of life for the stall time."""
        stall = self.config.stall_seconds
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(stall) as watchdog:

                def alive() -> None:
                    if not watchdog.expired():
                        watchdog.reschedule(loop.time() + stall)

                active.on_activity = alive
                await printing
        except TimeoutError as err:
            if watchdog.expired():
                raise PrinterStalled(
                    f"the printer took no data and printed no label for {stall:g} s"
                ) from err
            raise
        finally:
            active.on_activity = None

    async def _stopped(self, job: JobRow, active: ActiveJob) -> bool:
        """The driver ended the job early, as asked: cancelled, or back to the queue (shutdown)."""
        if active.stop_reason == CANCEL:
            await self._finish(job, CANCELLED, active.progress, None)
            log.info("job_cancelled", job=job.pk, labels_printed=active.progress)
            return True
        await self.jobs.requeue(job.pk, active.progress, None)
        log.info("job_paused_for_shutdown", job=job.pk, labels_printed=active.progress)
        return False

    async def _end_attempt(
        self,
        machine: Machine,
        saver: asyncio.Task[None],
        before: tuple[MachineStatus | None, str],
    ) -> None:
        saver.cancel()
        if machine.status == LabelPrinterStatus.PRINTING:
            # The driver said nothing new: after a failure the status is what it was before (a
            # known cause stays); after a success, `before` is CONNECTED.
            status, text = before
            machine.set_status(
                LabelPrinterStatus.CONNECTED
                if status is None or status == LabelPrinterStatus.PRINTING
                else status
            )
            machine.set_status_text(text)
        await self.registry.persist_state(machine)

    async def _failed(
        self,
        machine: Machine,
        job: JobRow,
        progress: int,
        err: Exception,
        first_label: int | None = None,
    ) -> bool:
        """Record a failed attempt; True when the job gave up (failed) and left the queue."""
        reason = _describe(err)
        waits = isinstance(err, PrinterUnavailable | PrinterUnreachable)
        if waits:
            if machine.status in (LabelPrinterStatus.CONNECTED, LabelPrinterStatus.UNKNOWN):
                machine.set_status(
                    LabelPrinterStatus.NO_MEDIA
                    if isinstance(err, MediaMismatch)
                    else LabelPrinterStatus.DISCONNECTED
                )
                machine.set_status_text(reason)
        else:
            progressed = first_label is not None and progress > first_label
            strikes = 1 if progressed else self._strikes.get(job.pk, 0) + 1
            self._strikes[job.pk] = strikes
            machine.handle_error(f"Job {job.pk}: {reason}")
            if not isinstance(err, TransportError | PrinterStalled):
                log.warning("job_attempt_error", job=job.pk, exc_info=err)
            if strikes >= self.config.max_attempts:
                await self.registry.persist_state(machine)
                await self._finish(
                    job,
                    FAILED,
                    progress,
                    f"Gave up after {strikes} failed attempts in a row: {reason}",
                )
                return True
        await self.jobs.requeue(job.pk, progress, reason)
        failures = self._failures.get(machine.pk, 0) + 1
        self._failures[machine.pk] = failures
        delay = _backoff(failures, self.config.retry_base_seconds, self.config.retry_max_seconds)
        self._next_attempt[machine.pk] = self.clock.monotonic() + delay
        await self.registry.persist_state(machine)
        level = log.warning if failures == 1 else log.debug
        level(
            "job_waiting_for_printer" if waits else "job_attempt_failed",
            job=job.pk,
            machine=machine.name,
            error=reason,
            retry_in_s=round(delay, 1),
        )
        return False

    async def _finish(self, job: JobRow, status: str, progress: int, error: str | None) -> None:
        await self.jobs.finish(job.pk, status, self.clock.now().isoformat(), progress, error)
        if status == FAILED:
            log.warning("job_failed", job=job.pk, error=error)

    async def _expire(self, job: JobRow) -> None:
        current = await self.jobs.get(job.pk)
        last = (
            current.errors[-1]
            if current is not None and current.errors
            else "the printer was not ready"
        )
        hours = f"{self.config.expiry_hours:g}"
        progress = current.progress if current is not None else job.progress
        await self._finish(job, FAILED, progress, f"Not printed within {hours} h: {last}")

    async def _save_progress(self, active: ActiveJob) -> None:
        saved = active.progress
        while True:
            await active.reported.wait()
            active.reported.clear()
            if active.progress != saved:
                saved = active.progress
                await self.jobs.save_progress(active.pk, saved)
            await asyncio.sleep(PROGRESS_SAVE_INTERVAL_S)

    async def _prune_forever(self) -> None:
        await asyncio.sleep(PRUNE_START_DELAY_S)
        while True:
            await self.prune()
            await asyncio.sleep(PRUNE_INTERVAL_S)

    async def prune(self) -> int:
        """Delete finished jobs past the retention, batch by batch; returns how many."""
        cutoff = (self.clock.now() - dt.timedelta(days=self.config.retention_days)).isoformat()
        removed = 0
        while True:
            batch = await self.jobs.prune(cutoff)
            removed += batch
            if batch < PRUNE_BATCH:
                break
            await asyncio.sleep(PRUNE_BATCH_PAUSE_S)
        if removed:
            log.info("jobs_pruned", removed=removed)
        return removed

    async def _watch_clock(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_CHECK_INTERVAL_S)
            try:
                await self.check_clock()
            except Exception:  # noqa: BLE001 - a failing database must not end the watch
                log.exception("clock_check_failed")


async def _wait(wake: asyncio.Event, seconds: float) -> None:
    """Wait for a wake-up, at most `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        pass


def _discard(queue: deque[JobRow], job: JobRow) -> None:
    """Take a job out of its queue (cancel may have taken it out already)."""
    if queue and queue[0] is job:
        queue.popleft()
    elif job in queue:
        queue.remove(job)


def _describe(err: Exception) -> str:
    if isinstance(err, TimeoutError):
        return "the printer did not answer in time"
    return str(err) or type(err).__name__


def _backoff(failures: int, base: float, cap: float) -> float:
    """Capped exponential backoff with up to 25 % jitter, so many agents do not retry in step."""
    delay = min(base * 2.0 ** min(failures - 1, 30), cap)
    return delay + random.uniform(0, delay / 4)  # noqa: S311 - jitter, not security
