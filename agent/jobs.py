"""The durable print queue: one worker per machine prints its jobs in order, and never loses one.

A job is committed before the API answers. A worker marks it `printing` (committed) before the
first byte goes out, and `complete` after the driver returns. After a crash, a job caught
`printing` is sent again once, resuming after the labels it had confirmed; a `complete` job is
never sent again. An unreachable printer makes the job wait and retry with capped, jittered
exponential backoff until the job expires.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import random
import sqlite3
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from agent.config import JobsConfig
from agent.documents import RAW_CONTENT_TYPE, DocumentError
from agent.job_store import COMPLETE, FAILED, PRUNE_BATCH, QUEUED, JobRow, JobStore
from agent.machine import Machine
from agent.registry import Registry
from agent.tasks import TaskSet
from drivers.base import (
    LabelPrinterDriver,
    LabelPrinterStatus,
    PageFormat,
    PrintFailed,
    RenderOptions,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from agent.render import RenderResult

log = structlog.get_logger(__name__)

# A driver gets this long for a job, plus the per-label allowance: a label printer prints
# 2-6 labels a second; 5 s per label covers a slow serial link at 9600 baud for a 62 mm label.
PRINT_TIMEOUT_BASE_S = 30.0
PRINT_TIMEOUT_PER_LABEL_S = 5.0
# Progress of a printing job is written to the database at most this often (crash resume point).
PROGRESS_SAVE_INTERVAL_S = 0.5
PRUNE_INTERVAL_S = 3600.0
# The first prune waits until the daemon is up (a backlog of old jobs must not delay the start);
# between batches other database calls get their turn.
PRUNE_START_DELAY_S = 10.0
PRUNE_BATCH_PAUSE_S = 0.05
STOP_TIMEOUT_S = 5.0
# Pages rendered when a job is accepted are kept for its first attempt when the printer's format
# has not changed by then, so a label is not rendered twice. Bounded: short jobs, newest first.
PRERENDERED_MAX_JOBS = 8
PRERENDERED_MAX_PAGES = 4
# After an unexpected error (a database that failed) the worker pauses this long, then goes on.
WORKER_ERROR_PAUSE_S = 5.0
STOPPED_WHILE_PRINTING = (
    "The agent stopped while sending this job; it resumes after the last confirmed label"
)


class JobNotCancellable(Exception):
    """The job has started printing, or has finished."""


class Submitted(NamedTuple):
    job: JobRow
    created: bool


@dataclass(slots=True)
class ActiveJob:
    """The job a driver is printing (implements `drivers.base.PrintJob`)."""

    pk: str
    copies: int
    content_type: str
    pages: Sequence[Image]
    raw: bytes | None
    options: Mapping[str, Any]
    first_label: int
    progress: int = 0
    reported: asyncio.Event = field(default_factory=asyncio.Event)

    def report_progress(self, labels_printed: int) -> None:
        """Labels printed so far, counted over the whole job."""
        if labels_printed > self.progress:
            self.progress = labels_printed
            self.reported.set()


def render_options(
    driver: LabelPrinterDriver, machine: Machine, options: Mapping[str, Any]
) -> RenderOptions:
    """The driver's defaults for this machine, overridden by the job's own options."""
    defaults = driver.render_options(machine)
    return RenderOptions(
        threshold=int(options.get("threshold", defaults.threshold)),
        dither=bool(options.get("dither", defaults.dither)),
        rotation=options.get("rotation", defaults.rotation),
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """Pages rendered for one page format and set of options."""

    page_format: PageFormat
    options: RenderOptions
    result: RenderResult


def render_for(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    earlier: Rendered | None = None,
) -> Rendered:
    """Render a document for a machine's printer (blocking: call in a thread).

    `earlier` is reused when the printer's page format and options have not changed since.
    """
    from agent.render import render_document  # noqa: PLC0415 - pdfium and Pillow load on first use

    driver = machine.driver
    assert isinstance(driver, LabelPrinterDriver)  # noqa: S101 - callers check the driver
    page_format = driver.page_format(machine)
    chosen = render_options(driver, machine, options)
    if earlier is not None and (earlier.page_format, earlier.options) == (page_format, chosen):
        return earlier
    return Rendered(
        page_format, chosen, render_document(document, content_type, page_format, chosen)
    )


class JobRunner:
    """Accepts jobs and runs one worker per machine."""

    def __init__(self, jobs: JobStore, registry: Registry, config: JobsConfig) -> None:
        self.jobs = jobs
        self.registry = registry
        self.config = config
        self._queues: dict[str, deque[JobRow]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._active: dict[str, ActiveJob] = {}
        self._failures: dict[str, int] = {}
        self._next_attempt: dict[str, float] = {}
        self._tasks = TaskSet("jobs")
        self._prerendered: OrderedDict[str, Rendered] = OrderedDict()

    async def start(self, *, prune: bool = True) -> None:
        """Recover interrupted jobs, load the queue and start the workers and the pruner.

        `prune=False` when the clock cannot be trusted (it is behind stored dates).
        """
        requeued, failed = await self.jobs.recover_interrupted(_now().isoformat())
        if requeued or failed:
            log.warning("jobs_recovered_after_crash", requeued=requeued, failed=failed)
        for row in await self.jobs.pending():
            self._enqueue(row)
        if prune:
            self._tasks.create(self._prune_forever(), name="prune")

    async def close(self) -> None:
        """Stop the workers; a job being sent goes back to the queue and resumes at the next start."""
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
        """Validate and store a job; it is on disk when this returns. Raises DocumentError."""
        if idempotency_key is not None:
            existing = await self.jobs.get_by_key(machine.pk, idempotency_key)
            if existing is not None:
                return Submitted(existing, created=False)
        pages: int | None = None
        warnings: tuple[str, ...] = ()
        rendered: Rendered | None = None
        if content_type != RAW_CONTENT_TYPE:
            rendered = await _in_render_thread(machine, document, content_type, options)
            pages, warnings = len(rendered.result.pages), rendered.result.warnings
        elif not document:
            raise DocumentError("the document is empty")
        now = _now()
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
        except sqlite3.IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.jobs.get_by_key(machine.pk, idempotency_key)
            if existing is None:
                raise
            return Submitted(existing, created=False)
        if rendered is not None and len(rendered.result.pages) <= PRERENDERED_MAX_PAGES:
            self._prerendered[row.pk] = rendered
            while len(self._prerendered) > PRERENDERED_MAX_JOBS:
                self._prerendered.popitem(last=False)
        self._enqueue(row)
        log.info("job_queued", job=row.pk, machine=machine.name, pages=pages, copies=copies)
        return Submitted(row, created=True)

    async def cancel(self, pk: str) -> JobRow:
        """Cancel a job that has not started printing. Raises JobNotCancellable, KeyError."""
        if not await self.jobs.cancel(pk, _now().isoformat()):
            if await self.jobs.get(pk) is None:
                raise KeyError(pk)
            raise JobNotCancellable(pk)
        row = await self.jobs.get(pk)
        assert row is not None  # noqa: S101 - just cancelled
        queue = self._queues.get(row.machine)
        if queue is not None:
            for queued in list(queue):
                if queued.pk == pk:
                    queue.remove(queued)
        log.info("job_cancelled", job=pk)
        return row

    def live_progress(self, pk: str) -> int | None:
        """Progress of a job being printed right now, fresher than the database."""
        active = self._active.get(pk)
        return active.progress if active is not None else None

    # registry events: any of them may let a waiting job go now

    def machine_ready(self, machine: Machine) -> None:
        """A machine became usable."""
        self.kick(machine.pk, retry_now=True)

    def machine_stopped(self, machine: Machine) -> None:
        """Wake the worker: it waits while the machine is inactive, and ends if it was deleted."""
        self.kick(machine.pk)

    def machine_changed(self, machine: Machine) -> None:
        """A setting changed or the machine restarted: try again now."""
        self.kick(machine.pk, retry_now=True)

    def kick(self, machine_pk: str, *, retry_now: bool = False) -> None:
        """Wake a machine's worker; with `retry_now` skip the rest of a backoff wait."""
        if retry_now:
            self._next_attempt.pop(machine_pk, None)
        wake = self._wake.get(machine_pk)
        if wake is not None:
            wake.set()

    # internals

    def _enqueue(self, row: JobRow) -> None:
        self._queues.setdefault(row.machine, deque()).append(row)
        if row.machine not in self._workers:
            self._wake[row.machine] = asyncio.Event()
            self._workers[row.machine] = self._tasks.create(
                self._work(row.machine), name=row.machine
            )
        self.kick(row.machine)

    async def _work(self, machine_pk: str) -> None:
        machine = self.registry.get(machine_pk)
        if machine is not None:
            # Every log line of this worker (drivers and transports included) names the machine.
            structlog.contextvars.bind_contextvars(machine=machine.name, driver=machine.driver_slug)
        queue = self._queues[machine_pk]
        wake = self._wake[machine_pk]
        while True:
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
            expires = dt.datetime.fromisoformat(job.expires)
            if _now() >= expires:
                _discard(queue, job)
                await self._expire(job)
                continue
            wait = (expires - _now()).total_seconds()
            ready = (
                machine.active
                and machine.initialized
                and isinstance(machine.driver, LabelPrinterDriver)
            )
            backoff = self._next_attempt.get(machine_pk, 0.0) - time.monotonic()
            if not ready or backoff > 0:
                if backoff > 0:
                    wait = min(wait, backoff)
                try:
                    async with asyncio.timeout(wait):
                        await wake.wait()
                except TimeoutError:
                    pass
                continue
            try:
                if await self._print(machine, job):
                    _discard(queue, job)
            except Exception:  # noqa: BLE001 - the worker must outlive a failing database
                log.exception("job_worker_error", job=job.pk)
                await asyncio.sleep(WORKER_ERROR_PAUSE_S)

    def _forget(self, machine_pk: str) -> None:
        for table in (self._queues, self._wake, self._workers, self._failures, self._next_attempt):
            table.pop(machine_pk, None)

    async def _print(self, machine: Machine, job: JobRow) -> bool:
        """One attempt; True when the job left the queue (complete, failed or cancelled)."""
        with structlog.contextvars.bound_contextvars(job=job.pk):
            return await self._attempt(machine, job)

    async def _attempt(self, machine: Machine, job: JobRow) -> bool:
        current = await self.jobs.get(job.pk)
        if current is None or current.status != QUEUED:
            return True
        driver = machine.driver
        assert isinstance(driver, LabelPrinterDriver)  # noqa: S101 - checked by the worker
        document = await self.jobs.document(job.pk)
        try:
            if job.content_type == RAW_CONTENT_TYPE:
                pages: Sequence[Image] = ()
                raw: bytes | None = document
            else:
                earlier = self._prerendered.pop(job.pk, None)
                rendered = await _in_render_thread(
                    machine, document, job.content_type, job.options, earlier
                )
                pages, raw = rendered.result.pages, None
        except DocumentError as err:
            await self.jobs.finish(job.pk, FAILED, _now().isoformat(), current.progress, str(err))
            return True
        active = ActiveJob(
            pk=job.pk,
            copies=job.copies,
            content_type=job.content_type,
            pages=pages,
            raw=raw,
            options=job.options,
            first_label=current.progress,
            progress=current.progress,
        )
        labels = len(pages) * job.copies if pages else job.copies
        async with machine.io_lock:
            if not await self.jobs.mark_printing(job.pk, _now().isoformat()):
                return True  # cancelled while it was being rendered
            self._active[job.pk] = active
            machine.set_status(LabelPrinterStatus.PRINTING)
            saver = self._tasks.create(self._save_progress(active), name=f"progress:{job.pk}")
            try:
                async with asyncio.timeout(
                    PRINT_TIMEOUT_BASE_S + PRINT_TIMEOUT_PER_LABEL_S * labels
                ):
                    await driver.print(machine, active)
            except asyncio.CancelledError:
                # The agent is stopping: put the job back, to resume after its confirmed labels.
                await self._end_attempt(machine, active, saver)
                await self.jobs.requeue(job.pk, active.progress, STOPPED_WHILE_PRINTING)
                raise
            except PrintFailed as err:
                await self._end_attempt(machine, active, saver)
                await self.jobs.finish(
                    job.pk, FAILED, _now().isoformat(), active.progress, str(err)
                )
                machine.handle_error(f"Job {job.pk} failed: {err}")
                log.warning("job_failed", job=job.pk, machine=machine.name, error=str(err))
                return True
            except Exception as err:  # noqa: BLE001 - the printer may come back: retry
                await self._end_attempt(machine, active, saver)
                await self._retry_later(machine, job, active, err)
                return False
            await self._end_attempt(machine, active, saver)
            await self.jobs.finish(
                job.pk, COMPLETE, _now().isoformat(), max(active.progress, labels), None
            )
        self._failures.pop(machine.pk, None)
        log.info("job_complete", job=job.pk, machine=machine.name, labels=labels)
        return True

    async def _end_attempt(
        self, machine: Machine, active: ActiveJob, saver: asyncio.Task[None]
    ) -> None:
        saver.cancel()
        self._active.pop(active.pk, None)
        if machine.status == LabelPrinterStatus.PRINTING:
            machine.set_status(LabelPrinterStatus.CONNECTED)
        await self.registry.persist_state(machine)

    async def _retry_later(
        self, machine: Machine, job: JobRow, active: ActiveJob, err: Exception
    ) -> None:
        reason = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            reason = "the printer did not take the job in time"
        await self.jobs.requeue(job.pk, active.progress, reason)
        failures = self._failures.get(machine.pk, 0) + 1
        self._failures[machine.pk] = failures
        delay = _backoff(failures, self.config.retry_base_seconds, self.config.retry_max_seconds)
        self._next_attempt[machine.pk] = time.monotonic() + delay
        if machine.status in (LabelPrinterStatus.CONNECTED, LabelPrinterStatus.UNKNOWN):
            machine.set_status(LabelPrinterStatus.DISCONNECTED)
            machine.set_status_text(reason)
        await self.registry.persist_state(machine)
        level = log.warning if failures == 1 else log.debug
        level(
            "job_waiting_for_printer",
            job=job.pk,
            machine=machine.name,
            error=reason,
            retry_in_s=round(delay, 1),
        )

    async def _expire(self, job: JobRow) -> None:
        current = await self.jobs.get(job.pk)
        last = (
            current.errors[-1]
            if current is not None and current.errors
            else "the printer was not ready"
        )
        hours = f"{self.config.expiry_hours:g}"
        await self.jobs.finish(
            job.pk,
            FAILED,
            _now().isoformat(),
            job.progress,
            f"Not printed within {hours} h: {last}",
        )
        log.warning("job_expired", job=job.pk)

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
        cutoff = (_now() - dt.timedelta(days=self.config.retention_days)).isoformat()
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


# pdfium renders one page at a time anyway (it is not thread-safe); one thread also keeps the
# render buffers in one malloc arena instead of one per executor thread.
_RENDER_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


async def _in_render_thread(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    earlier: Rendered | None = None,
) -> Rendered:
    call = functools.partial(render_for, machine, document, content_type, options, earlier)
    return await asyncio.get_running_loop().run_in_executor(_RENDER_EXECUTOR, call)


def _discard(queue: deque[JobRow], job: JobRow) -> None:
    """Take a job out of its queue (cancel may have taken it out already)."""
    if queue and queue[0] is job:
        queue.popleft()
    elif job in queue:
        queue.remove(job)


def _backoff(failures: int, base: float, cap: float) -> float:
    """Capped exponential backoff with up to 25 % jitter, so many agents do not retry in step."""
    delay = min(base * 2.0 ** min(failures - 1, 30), cap)
    return delay + random.uniform(0, delay / 4)  # noqa: S311 - jitter, not security


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
