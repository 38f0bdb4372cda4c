"""The aiohttp application: factory, shared objects, and the start/stop order of the core."""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import AsyncIterator, Iterable

import structlog
from aiohttp import web

from agent.api import setup_routes
from agent.api.errors import error_middleware
from agent.appkeys import (
    AUTHENTICATOR,
    CENTRAL,
    DATABASE,
    EVENTS,
    HEALTH,
    JOBS,
    LOOP_LAG,
    METRICS,
    POLLER,
    REGISTRY,
    RENDER,
    SETTINGS,
)
from agent.auth import PASSWORD_COST, Authenticator, PasswordCost, ensure_superuser
from agent.central.link import CentralLink, LinkTiming
from agent.clock import Clock
from agent.config import Settings
from agent.discovery import discover
from agent.events import (
    EventHub,
    JobChanged,
    MachineChanged,
    MachineReachable,
    MachineRemoved,
)
from agent.health import HealthCheck
from agent.job_status import JobChange
from agent.jobs import JobRunner
from agent.loop_lag import LoopLag
from agent.metrics import Metrics, metrics_middleware
from agent.poller import Poller
from agent.registry import Registry
from agent.render_service import RenderService
from agent.services import Service, Services, own_wait_s
from agent.storage.auth import AuthStore
from agent.storage.clock_check import clock_behind
from agent.storage.database import Database
from agent.storage.jobs import JobStore
from agent.storage.machines import MachineStore

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings,
    extra_drivers: Iterable[str] = (),
    *,
    reset_database: bool = False,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    password_cost: PasswordCost = PASSWORD_COST,
    central_timing: LinkTiming | None = None,
) -> web.Application:
    """Build the application; the store opens and machines start when the app starts.

    `reset_database` lets a missing, empty or damaged database be replaced by an empty one.
    `clock` and `rng` are the print queue's time and retry jitter (the host's unless given);
    `password_cost` is the scrypt cost of new password hashes (tests use a cheap one);
    `central_timing` the central link's backoff and debounce (tests shorten them).
    """
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=settings.http.max_body_bytes,
    )
    database = Database(
        settings.database_path, secret_path=settings.secret_path, reset=reset_database
    )
    app[SETTINGS] = settings
    app[DATABASE] = database
    app[AUTHENTICATOR] = Authenticator(
        AuthStore(database), settings.secret_path, password_cost=password_cost
    )
    events = EventHub()
    registry = Registry(
        MachineStore(database), discover(extra_drivers), settings.storage.path, events
    )
    render = RenderService(settings.jobs.render_limits())
    jobs = JobRunner(
        JobStore(database),
        registry,
        render,
        settings.jobs,
        clock=clock,
        rng=rng,
        on_job_changed=functools.partial(_publish_job_change, events),
    )
    poller = Poller(registry)
    _subscribe(events, poller, jobs)
    app[EVENTS] = events
    app[REGISTRY] = registry
    app[RENDER] = render
    app[JOBS] = jobs
    app[POLLER] = poller
    app[CENTRAL] = CentralLink(
        settings.central,
        database,
        registry,
        jobs,
        events,
        settings.http.max_body_bytes,
        timing=central_timing,
    )
    lag = app[LOOP_LAG] = LoopLag()
    app[HEALTH] = HealthCheck(
        settings.health, settings.storage.path, database, registry, jobs, lag, app[CENTRAL]
    )
    app[METRICS] = Metrics(registry, jobs, lag, events)
    app.cleanup_ctx.append(_core)
    setup_routes(app)
    return app


def _subscribe(events: EventHub, poller: Poller, jobs: JobRunner) -> None:
    """Who follows which machine events; the poller first, so a started machine is polled."""
    events.subscribe(MachineChanged, poller.on_machine_changed)
    events.subscribe(MachineRemoved, poller.on_machine_removed)
    events.subscribe(MachineChanged, jobs.on_machine_changed)
    events.subscribe(MachineRemoved, jobs.on_machine_removed)
    # A printer that answers a poll may take the job that waited for it.
    events.subscribe(MachineReachable, jobs.on_machine_reachable)


def _publish_job_change(events: EventHub, change: JobChange) -> None:
    """Every committed job transition, as a `JobChanged` event."""
    old = None if change.old is None else str(change.old)
    events.publish(JobChanged(change.job, change.machine, old, str(change.new)))


def core_services(app: web.Application) -> list[Service]:
    """The core in start order (stopped in reverse); the HTTP server comes after it."""
    database, render, registry, jobs, poller, events, central, lag = (
        app[DATABASE],
        app[RENDER],
        app[REGISTRY],
        app[JOBS],
        app[POLLER],
        app[EVENTS],
        app[CENTRAL],
        app[LOOP_LAG],
    )
    steps = _StartSteps(app)
    return [
        Service(
            "monitor", start=lag.start, stop=functools.partial(lag.close, own_wait_s("monitor"))
        ),
        Service("store", start=database.open, stop=database.close),
        Service("auth", start=steps.bootstrap_auth),
        Service("render", start=render.start, stop=render.close),
        Service("events", stop=functools.partial(events.close, own_wait_s("events"))),
        Service("registry", start=steps.start_registry, stop=registry.close),
        Service("jobs", start=steps.start_jobs, stop=jobs.close),
        Service("poller", stop=functools.partial(poller.close, own_wait_s("poller"))),
        Service("central", start=central.start, stop=central.close),
    ]


async def _core(app: web.Application) -> AsyncIterator[None]:
    """Start the core services at the app's start, stop them at its cleanup."""
    services = Services(core_services(app))
    await services.start()
    yield
    await services.stop()


class _StartSteps:
    """Start-up steps of the core that take more than one call."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        # The clock is behind the newest stored record: nothing is pruned in this run.
        self.clock_behind: dt.datetime | None = None

    async def bootstrap_auth(self) -> None:
        """Load the secret, check the clock, prune expired tokens, create the bootstrap admin."""
        settings, database, authenticator = (
            self.app[SETTINGS],
            self.app[DATABASE],
            self.app[AUTHENTICATOR],
        )
        store = authenticator.store
        await authenticator.load_secret()
        behind = self.clock_behind = await clock_behind(database, dt.datetime.now(dt.UTC))
        if behind is not None:
            authenticator.not_before = behind.date()
            log.warning(
                "clock_behind",
                now=dt.datetime.now(dt.UTC).isoformat(),
                newest_record=behind.isoformat(),
                effect="nothing is pruned until the agent starts with the clock right",
            )
        else:
            pruned = await authenticator.prune()
            if pruned:
                log.info("expired_tokens_deleted", count=pruned)
        admin = settings.auth.admin_user
        password = settings.auth.admin_password.get_secret_value()
        if admin and password:
            email, cost = settings.auth.admin_email, authenticator.password_cost
            if await ensure_superuser(store, admin, password, email, cost):
                log.info("admin_user_created", username=admin)
        elif admin and await store.get_user(username=admin) is None:
            log.warning(
                "admin_user_not_created",
                username=admin,
                reason="no password: set INVENTREE_EDGE_AUTH__ADMIN_PASSWORD",
            )

    async def start_registry(self) -> None:
        """Load machines and drivers, apply `[[machines]]`, initialise the active machines."""
        registry = self.app[REGISTRY]
        await registry.load()
        await registry.apply_config(self.app[SETTINGS].machines)
        await registry.start()
        log.info(
            "registry_started",
            machines=len(registry.machines),
            drivers=sorted(registry.drivers),
            errors=len(registry.registry_errors),
        )

    async def start_jobs(self) -> None:
        """Recover interrupted jobs and start the queue (no pruning while the clock is behind)."""
        await self.app[JOBS].start(prune=self.clock_behind is None)
