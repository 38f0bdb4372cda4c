"""The link to a central InvenTree: report printers, take jobs, deliver state reports.

One owned task runs sessions. A session obtains a token if it must, reports the printers, then
runs three loops until one meets a `LinkError`: polling `jobs/`, reporting (every
`report_interval`, and soon after a printer changes), and delivering the outbox in order. After
a `LinkError` the link waits (capped exponential backoff with jitter) and starts a new session.
Local printing never depends on the link: jobs taken are in the local queue, and reports wait in
the outbox while the server is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import structlog

from agent.central.client import (
    CentralClient,
    LinkError,
    LinkState,
    ProtocolMismatch,
    Refused,
    Unauthorized,
    Unreachable,
)
from agent.central.intake import Intake
from agent.central.report import report_body
from agent.central.status import LinkStatus
from agent.central.store import CentralStore
from agent.config import CentralConfig
from agent.events import (
    EventHub,
    JobChanged,
    MachineAdded,
    MachineChanged,
    MachineRemoved,
    MachineStatusChanged,
    Subscription,
)
from agent.jobs import JobRunner
from agent.registry import Registry
from agent.storage.database import Database
from agent.storage.errors import StoreError
from agent.tasks import TaskSet

log = structlog.get_logger(__name__)

KEY_PREFIX = "central:"
STOP_TIMEOUT_S = 0.2
# Recording "stopped" for `central status` may take this long at most (the disk may be failing).
RECORD_STOP_TIMEOUT_S = 0.05
# Finished central jobs whose local jobs are gone are forgotten this often.
PRUNE_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """Waits of the link that are not configuration (tests shorten them)."""

    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # Reports after status changes go out at most this often.
    report_debounce_s: float = 1.0


class CentralLink:
    """The central link of the daemon; does nothing when `central.url` is not set."""

    def __init__(
        self,
        config: CentralConfig,
        database: Database,
        registry: Registry,
        jobs: JobRunner,
        events: EventHub,
        max_document_bytes: int,
        *,
        timing: LinkTiming | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        self.agent = config.name if self.enabled else config.agent_name
        self.store = CentralStore(database)
        self.registry = registry
        self.jobs = jobs
        self.events = events
        self.timing = timing or LinkTiming()
        self.rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        self.client = CentralClient(config, self.agent)
        self.status = LinkStatus(
            self.store,
            config.url,
            self.agent,
            _utcnow,
            contact_interval_s=config.report_interval,
        )
        self.intake = Intake(
            self.client, self.store, jobs, registry, config, max_document_bytes, _now_text
        )
        self._tasks = TaskSet("central")
        self._subscriptions: list[Subscription] = []
        self._report_wanted = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._long_poll_max: float | None = None

    async def start(self) -> None:
        """Follow printers and jobs, queue reports missed while stopped, start the link's task."""
        if not self.enabled:
            return
        for event_type in (MachineAdded, MachineRemoved, MachineChanged, MachineStatusChanged):
            self._subscriptions.append(self.events.subscribe(event_type, self._printers_changed))
        self._subscriptions.append(self.events.subscribe_async(JobChanged, self._job_changed))
        await self.status.start()
        for job_id in await self.store.unfinished():
            await self.store.refresh(job_id, _now_text())
        await self.client.open()
        log.info("central_link_starting", url=self.config.url, agent=self.agent)
        self._tasks.create(self._run(), name="link")
        self._tasks.create(self._prune_forever(), name="prune")

    async def close(self) -> None:
        """Stop the link; reports not yet delivered stay in the outbox for the next start."""
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        await self._tasks.close(STOP_TIMEOUT_S)
        await self.client.close()
        if self.enabled:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECORD_STOP_TIMEOUT_S):
                    await self.status.stopped()

    async def describe(self) -> dict[str, Any]:
        """The link as `GET /api/agent/central/` shows it."""
        pending = await self.store.pending()
        if not self.enabled:
            return {
                "enabled": False,
                "state": LinkState.OFF.value,
                "since": None,
                "url": "",
                "agent": self.agent,
                "last_contact": None,
                "last_error": "",
                "pending": pending,
            }
        return {"enabled": True, **self.status.as_json(), "pending": pending}

    async def _prune_forever(self) -> None:
        while True:
            try:
                pruned = await self.store.prune()
            except Exception:  # a failing disk must not end the pruning
                log.exception("central_prune_failed")
            else:
                if pruned:
                    log.info("central_jobs_pruned", removed=pruned)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    # events

    def _printers_changed(self, _event: object) -> None:
        self._report_wanted.set()

    async def _job_changed(self, event: JobChanged) -> None:
        row = await self.jobs.jobs.get(event.job)
        key = row.idempotency_key if row is not None else None
        if key is None or not key.startswith(KEY_PREFIX):
            return
        job_id = key[len(KEY_PREFIX) :].rpartition(":")[0]
        await self.store.refresh(job_id, _now_text())
        self._outbox_wake.set()

    # the link's task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except LinkError as err:
                failure = err
            except Exception as err:
                log.exception("central_link_error")
                failure = Unreachable(f"internal error: {err}")
            if self.status.state is LinkState.CONNECTED:
                failures = 0
            delay = self._backoff(failures)
            failures += 1
            if isinstance(failure, Unauthorized) and not self.config.token.get_secret_value():
                await self._forget_token()
            await self.status.fail(failure.state, failure.message, delay)
            await asyncio.sleep(delay)

    async def _forget_token(self) -> None:
        """An obtained token that stopped working: the next session obtains a new one."""
        try:
            await self.store.forget_token(self.config.url, self.config.username)
        except StoreError as err:  # the next session then tries the old token once more
            log.warning("central_token_not_forgotten", error=str(err))

    def _backoff(self, failures: int) -> float:
        """Doubling from the base up to the cap, each wait drawn from its upper half."""
        timing = self.timing
        ceiling = min(timing.backoff_max_s, timing.backoff_base_s * 2 ** min(failures, 30))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def _session(self) -> None:
        """One session: token, first report, then the loops until one meets a LinkError."""
        await self._token()
        await self._report()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._poll_jobs())
                group.create_task(self._report_loop())
                group.create_task(self._deliver())
        except BaseExceptionGroup as group:
            raise _first(group) from None

    async def _token(self) -> None:
        config = self.config
        token = config.token.get_secret_value()
        if token:
            self.client.token = token
            return
        stored = await self.store.token(config.url, config.username)
        if stored is None:
            stored = await self.client.obtain_token(
                config.username, config.password.get_secret_value()
            )
            await self.store.save_token(config.url, config.username, stored, _now_text())
            log.info("central_token_obtained", url=config.url, username=config.username)
        self.client.token = stored

    async def _report(self) -> None:
        self._report_wanted.clear()
        body = report_body(self.config, self.registry.machines.values())
        try:
            answer = await self.client.report(body)
        except Refused as err:
            raise ProtocolMismatch(f"the server refused the report: {err}", err.code) from err
        long_poll_max = answer.get("long_poll_max")
        if isinstance(long_poll_max, int | float) and not isinstance(long_poll_max, bool):
            self._long_poll_max = float(long_poll_max)
        await self.status.contact(printers=len(body["printers"]))

    async def _report_loop(self) -> None:
        """Report every `report_interval`, and after a change, at most once per debounce."""
        debounce = self.timing.report_debounce_s
        while True:
            # The session has just reported (or this loop has): changes meanwhile wait.
            await asyncio.sleep(debounce)
            try:
                async with asyncio.timeout(max(self.config.report_interval - debounce, 0.0)):
                    await self._report_wanted.wait()
            except TimeoutError:
                pass
            await self._report()

    async def _poll_jobs(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.config.long_poll
            if self._long_poll_max is not None:
                wait = min(wait, self._long_poll_max)
            began = loop.time()
            jobs = await self.client.jobs(wait)
            await self.status.contact()
            taken = False
            for job in jobs:
                if await self.intake.take(job):
                    taken = True
                    self._outbox_wake.set()
            if taken:
                continue
            # Nothing new (or only jobs whose `accepted` is on its way): wait before asking again.
            left = self.config.poll_interval - (loop.time() - began if wait > 0 else 0.0)
            if left > 0:
                await asyncio.sleep(left)

    async def _deliver(self) -> None:
        """Send the outbox in order; each entry leaves it once the server has it or refused it."""
        while True:
            self._outbox_wake.clear()
            entries = await self.store.outbox()
            if not entries:
                await self._outbox_wake.wait()
                continue
            for entry in entries:
                try:
                    await self.client.state(entry.job, entry.body)
                except Refused as err:
                    event = (
                        "central_report_conflict" if err.status == 409 else "central_report_dropped"
                    )
                    log.warning(
                        event,
                        job=entry.job,
                        state=entry.body.get("state"),
                        status=err.status,
                        code=err.code,
                        detail=err.detail,
                    )
                await self.store.delivered(entry.seq)
                await self.status.contact()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended a session: a LinkError if there is one, else the first."""
    errors = list(_leaves(group))
    return next((err for err in errors if isinstance(err, LinkError)), errors[0])


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for err in group.exceptions:
        if isinstance(err, BaseExceptionGroup):
            found += _leaves(err)
        else:
            found.append(err)
    return found


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _now_text() -> str:
    return _utcnow().isoformat()
