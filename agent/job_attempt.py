"""One attempt at printing one job: prepare, send under the stall watchdog, record the outcome.

An attempt that fails because the printer says it cannot print (offline, paper out) makes the job
wait and retry with capped, jittered exponential backoff until the job expires. Any other failure
(a driver error, a printer that stalls mid-job, a lost connection) is a failed attempt, recorded on
the job and the machine; after `max_attempts` of them in a row without a label printed, the job
fails and the queue moves on.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Coroutine
from typing import Any

import structlog

from agent.clock import Clock
from agent.config import JobsConfig
from agent.documents import RAW_CONTENT_TYPE, DocumentError
from agent.job_pages import ActiveJob
from agent.job_status import JobStatus
from agent.job_transitions import JobTransitions
from agent.machine import Machine
from agent.machine_worker import MachineWorker
from agent.registry import Registry
from agent.render_service import RenderService
from agent.storage.jobs import JobRow, JobStore
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
STOPPED_WHILE_PRINTING = (
    "The agent stopped while sending this job; it resumes after the last confirmed label"
)
# Why a job was asked to stop.
CANCEL = "cancel"
SHUTDOWN = "shutdown"


class PrinterStalled(Exception):
    """The printer took no byte and printed no label for the stall time."""


class JobAttempts:
    """Runs attempts for every machine's worker; what an attempt leaves is on the job and machine."""

    def __init__(
        self,
        jobs: JobStore,
        transitions: JobTransitions,
        registry: Registry,
        render: RenderService,
        config: JobsConfig,
        clock: Clock,
        rng: random.Random,
        tasks: TaskSet,
    ) -> None:
        self.jobs = jobs
        self.transitions = transitions
        self.registry = registry
        self.render = render
        self.config = config
        self.clock = clock
        self.rng = rng
        self._tasks = tasks

    async def run(self, worker: MachineWorker, machine: Machine, job: JobRow) -> bool:
        """One attempt; True when the job left the queue (complete, failed or cancelled)."""
        with structlog.contextvars.bound_contextvars(job=job.pk):
            current = await self.jobs.get(job.pk)
            if current is None or current.status != JobStatus.QUEUED:
                return True
            document = await self.jobs.document(job.pk)
            try:
                active = await self._prepare(machine, current, document)
            except DocumentError as err:
                await self._finish(current, JobStatus.FAILED, current.progress, str(err))
                return True
            except Exception as err:  # noqa: BLE001 - driver code (page_format...) failed: an attempt
                return await self._failed(worker, machine, current, current.progress, err)
            try:
                async with machine.io_lock:
                    return await self._send(worker, machine, current, active)
            finally:
                worker.active = None
                active.done.set()
                await active.close()

    async def expire(self, job: JobRow) -> None:
        """The job was not printed within `expiry_hours`: it fails with the last reason."""
        current = await self.jobs.get(job.pk)
        if current is None or current.status.finished:
            return  # deleted or cancelled meanwhile: nothing to expire
        last = current.errors[-1] if current.errors else "the printer was not ready"
        hours = f"{self.config.expiry_hours:g}"
        await self._finish(
            current, JobStatus.FAILED, current.progress, f"Not printed within {hours} h: {last}"
        )

    async def _prepare(self, machine: Machine, job: JobRow, document: bytes) -> ActiveJob:
        if job.content_type == RAW_CONTENT_TYPE:
            return ActiveJob(job, raw=document, pages=None, first_label=job.progress)
        pages = await self.render.open(machine, document, job.content_type, job.options)
        return ActiveJob(job, raw=None, pages=pages, first_label=job.progress)

    async def _send(
        self, worker: MachineWorker, machine: Machine, queued: JobRow, active: ActiveJob
    ) -> bool:
        driver = machine.driver
        if not isinstance(driver, LabelPrinterDriver):
            return False  # changed while the job was prepared: the worker looks again
        worker.active = active
        job = await self.transitions.move(queued, JobStatus.PRINTING)
        if job is None:
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
            await self.transitions.move(
                job, JobStatus.QUEUED, progress=active.progress, error=STOPPED_WHILE_PRINTING
            )
            raise
        except PrintFailed as err:
            await self._end_attempt(machine, saver, before)
            await self._finish(job, JobStatus.FAILED, active.progress, str(err))
            machine.handle_error(f"Job {job.pk} failed: {err}")
            return True
        except Exception as err:  # noqa: BLE001 - any driver error is one failed attempt
            await self._end_attempt(machine, saver, before)
            if active.stop_reason == CANCEL:
                await self._finish(job, JobStatus.CANCELLED, active.progress, None)
                return True
            return await self._failed(
                worker, machine, job, active.progress, err, active.first_label
            )
        # The printer took the job: it is connected, and a fault shown before is gone (a warning
        # such as "paper near end" may still hold).
        printed = before if before[0] == LabelPrinterStatus.WARNING else None
        await self._end_attempt(machine, saver, printed or (LabelPrinterStatus.CONNECTED, ""))
        worker.failures = 0
        if active.stop_reason is not None and active.progress < active.labels:
            return await self._stopped(job, active)
        await self._finish(job, JobStatus.COMPLETE, max(active.progress, active.labels), None)
        log.info("job_complete", job=job.pk, machine=machine.name, labels=active.labels)
        return True

    async def _watched(self, printing: Coroutine[Any, Any, None], active: ActiveJob) -> None:
        """Run the driver's print; stop it when the job shows no sign of life for the stall time.

        The watchdog cancels this task, as `asyncio.timeout` does, but on the runner's clock.
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("the driver's print runs in a task")
        stall = self.config.stall_seconds
        cancelling = task.cancelling()
        last_sign = self.clock.monotonic()
        stalled = False

        def alive() -> None:
            nonlocal last_sign
            if not stalled:
                last_sign = self.clock.monotonic()

        async def watch() -> None:
            nonlocal stalled
            while (left := last_sign + stall - self.clock.monotonic()) > 0:
                await self.clock.sleep(left)
            stalled = True
            task.cancel()

        active.on_activity = alive
        watchdog = self._tasks.create(watch(), name=f"stall:{active.pk}")
        uncancelled = False
        try:
            await printing
        except asyncio.CancelledError as err:
            if stalled:
                uncancelled = True
                if task.uncancel() <= cancelling:  # only the watchdog cancelled
                    raise PrinterStalled(
                        f"the printer took no data and printed no label for {stall:g} s"
                    ) from err
            raise
        finally:
            if stalled and not uncancelled:
                task.uncancel()  # the driver ended another way despite the watchdog's cancel
            active.on_activity = None
            watchdog.cancel()

    async def _stopped(self, job: JobRow, active: ActiveJob) -> bool:
        """The driver ended the job early, as asked: cancelled, or back to the queue (shutdown)."""
        if active.stop_reason == CANCEL:
            await self._finish(job, JobStatus.CANCELLED, active.progress, None)
            log.info("job_cancelled", job=job.pk, labels_printed=active.progress)
            return True
        await self.transitions.move(job, JobStatus.QUEUED, progress=active.progress)
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
        worker: MachineWorker,
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
            strikes = 1 if progressed else worker.strikes.get(job.pk, 0) + 1
            worker.strikes[job.pk] = strikes
            machine.handle_error(f"Job {job.pk}: {reason}")
            if not isinstance(err, TransportError | PrinterStalled):
                log.warning("job_attempt_error", job=job.pk, exc_info=err)
            if strikes >= self.config.max_attempts:
                await self.registry.persist_state(machine)
                await self._finish(
                    job,
                    JobStatus.FAILED,
                    progress,
                    f"Gave up after {strikes} failed attempts in a row: {reason}",
                )
                return True
        await self.transitions.move(job, JobStatus.QUEUED, progress=progress, error=reason)
        worker.failures += 1
        delay = backoff(
            worker.failures, self.config.retry_base_seconds, self.config.retry_max_seconds, self.rng
        )
        worker.next_attempt = self.clock.monotonic() + delay
        await self.registry.persist_state(machine)
        level = log.warning if worker.failures == 1 else log.debug
        level(
            "job_waiting_for_printer" if waits else "job_attempt_failed",
            job=job.pk,
            machine=machine.name,
            error=reason,
            retry_in_s=round(delay, 1),
        )
        return False

    async def _finish(
        self, job: JobRow, status: JobStatus, progress: int, error: str | None
    ) -> None:
        await self.transitions.move(job, status, progress=progress, error=error)
        if status == JobStatus.FAILED:
            log.warning("job_failed", job=job.pk, error=error)

    async def _save_progress(self, active: ActiveJob) -> None:
        saved = active.progress
        while True:
            await active.reported.wait()
            active.reported.clear()
            if active.progress != saved:
                saved = active.progress
                await self.jobs.save_progress(active.pk, saved)
            await self.clock.sleep(PROGRESS_SAVE_INTERVAL_S)


def _describe(err: Exception) -> str:
    if isinstance(err, TimeoutError):
        return "the printer did not answer in time"
    return str(err) or type(err).__name__


def backoff(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with up to 25 % jitter, so many agents do not retry in step."""
    delay = min(base * 2.0 ** min(failures - 1, 30), cap)
    return delay + rng.uniform(0, delay / 4)
