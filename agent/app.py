"""The aiohttp application: factory, shared objects, and the start/stop order of the core."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable

import structlog
from aiohttp import web

from agent.api import setup_routes
from agent.api.errors import error_middleware
from agent.appkeys import AUTHENTICATOR, JOBS, POLLER, REGISTRY, SETTINGS, STORE
from agent.auth import PASSWORD_COST, Authenticator, PasswordCost, ensure_superuser
from agent.config import Settings
from agent.discovery import discover
from agent.job_store import JobStore
from agent.jobs import JobRunner
from agent.poller import Poller
from agent.registry import Registry
from agent.store import Store

log = structlog.get_logger(__name__)

# Poll loops only wait on the printer under their own timeouts; cancelling them is quick.
POLLER_STOP_TIMEOUT_S = 2.0


def create_app(
    settings: Settings,
    extra_drivers: Iterable[str] = (),
    *,
    reset_database: bool = False,
    password_cost: PasswordCost = PASSWORD_COST,
) -> web.Application:
    """Build the application; the store opens and machines start when the app starts.

    `reset_database` lets a missing, empty or damaged database be replaced by an empty one;
    `password_cost` is the scrypt cost of new password hashes (tests use a cheap one).
    """
    app = web.Application(
        middlewares=[error_middleware], client_max_size=settings.http.max_body_bytes
    )
    store = Store(settings.database_path, secret_path=settings.secret_path, reset=reset_database)
    app[SETTINGS] = settings
    app[STORE] = store
    app[AUTHENTICATOR] = Authenticator(store, settings.secret_path, password_cost=password_cost)
    registry = Registry(store, discover(extra_drivers), settings.storage.path)
    jobs = JobRunner(JobStore(store), registry, settings.jobs)
    poller = Poller(registry, on_reachable=lambda machine: jobs.kick(machine.pk, retry_now=True))
    registry.listeners.extend((poller, jobs))
    app[REGISTRY] = registry
    app[JOBS] = jobs
    app[POLLER] = poller
    app.cleanup_ctx.append(_core)
    setup_routes(app)
    return app


async def _core(app: web.Application) -> AsyncIterator[None]:
    """Open the store, bootstrap the admin, load and start machines; undo in reverse at stop."""
    settings, store, registry = app[SETTINGS], app[STORE], app[REGISTRY]
    jobs, poller = app[JOBS], app[POLLER]
    await store.open()
    try:
        authenticator = app[AUTHENTICATOR]
        await authenticator.load_secret()
        behind = await store.clock_behind(dt.datetime.now(dt.UTC))
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
        await registry.load()
        await registry.apply_config(settings.machines)
        await jobs.start(prune=behind is None)
        await registry.start()
        log.info(
            "registry_started",
            machines=len(registry.machines),
            drivers=sorted(registry.drivers),
            errors=len(registry.registry_errors),
        )
        yield
        await poller.close(POLLER_STOP_TIMEOUT_S)
        await jobs.close()
        await registry.close()
    finally:
        await store.close()
