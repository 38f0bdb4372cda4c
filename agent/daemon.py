"""`inventree-edge run`: serve until SIGTERM/SIGINT, tell systemd when ready, stop within a budget."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.app import create_app
from agent.config import Settings
from agent.datadir import DataDirError, check_data_dir
from agent.exit_codes import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_DATA_DIR,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
)
from agent.http_server import CappedTCPSite, connection_cap, runner_options
from agent.instance_lock import AlreadyRunning, lock_data_dir
from agent.log import stop_logging
from agent.log_limits import limit_library_logs
from agent.registry import ConfigMachineError
from agent.reload import Reloader
from agent.services import STOP_BUDGETS_S
from agent.storage.errors import StoreError, StoreRefused
from agent.tasks import TaskSet

log = structlog.get_logger(__name__)

# Shutdown: the daemon's helper tasks stop, then the HTTP server and the core services, each
# within its budget in agent/services.py. SHUTDOWN_BUDGET_S caps the whole stop: the stages add up
# to less, and it plus a margin stays below TimeoutStopSec in systemd/inventree-edge.service
# (tests check both).
HTTP_SHUTDOWN_TIMEOUT_S = STOP_BUDGETS_S["http"]  # open requests finish, keep-alive ones close
TASKS_SHUTDOWN_TIMEOUT_S = 0.5  # the watchdog task is cancelled
# 24.5: the loop lag monitor's 0.1 s took the stages to 24.0; TimeoutStopSec=30 leaves 5.5 s.
SHUTDOWN_BUDGET_S = 24.5


async def serve(
    settings: Settings, *, config_path: Path | None = None, reset_database: bool = False
) -> int:
    """Run the daemon; returns the process exit code.

    `config_path` is the file SIGHUP reads again (none: the environment only).
    """
    # First thing: from here on SIGTERM and SIGINT stop the daemon cleanly, even mid-start-up,
    # and SIGHUP (whose default would end the process) asks for a reload.
    stop = asyncio.Event()
    reload_wanted = asyncio.Event()
    _install_signal_handlers(stop, reload_wanted)
    try:
        return await _serve_locked(
            settings, stop, reload_wanted, config_path, reset_database=reset_database
        )
    finally:
        _remove_signal_handlers()


async def _serve_locked(
    settings: Settings,
    stop: asyncio.Event,
    reload_wanted: asyncio.Event,
    config_path: Path | None,
    *,
    reset_database: bool,
) -> int:
    try:
        check_data_dir(
            settings.storage.path, settings.database_path, settings.secret_path, create=True
        )
    except DataDirError as err:
        log.critical("startup_failed", reason=str(err))
        return EXIT_DATA_DIR
    try:
        instance = lock_data_dir(settings.storage.path)
    except AlreadyRunning as err:
        log.critical("startup_failed", reason=str(err))
        return EXIT_UNAVAILABLE
    try:
        return await _serve(
            settings, stop, reload_wanted, config_path, reset_database=reset_database
        )
    finally:
        instance.release()


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    reload_wanted: asyncio.Event,
    config_path: Path | None,
    *,
    reset_database: bool,
) -> int:
    app = create_app(settings, reset_database=reset_database)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        **runner_options(settings.http),
    )
    limit_library_logs()
    try:
        started = await _unless_stopped(runner.setup(), stop)
    except StoreRefused as err:
        # Data would be lost: a person decides; restarting would only refuse again.
        log.critical("startup_failed", reason=str(err))
        return EXIT_DATA
    except StoreError as err:
        log.critical("startup_failed", reason=str(err))
        return EXIT_FAILURE
    except ConfigMachineError as err:
        log.critical("startup_failed", reason=f"bad [[machines]] entry: {err}")
        await _shutdown(runner)
        return EXIT_CONFIG
    if not started or stop.is_set():
        return await _stop_early(runner)
    site = CappedTCPSite(
        runner,
        settings.http.host,
        settings.http.port,
        max_connections=connection_cap(settings.http),
    )
    try:
        await site.start()
    except OSError as err:
        reason, code = _listen_failure(settings, err)
        log.critical("startup_failed", reason=reason)
        await _shutdown(runner)
        return code
    host, port = _bound_address(site, settings)
    log.info("listening", url=f"http://{host}:{port}/api/", max_connections=site.max_connections)
    tasks = TaskSet("daemon")
    sd_notify("READY=1")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if watchdog_usec > 0:
        tasks.create(_feed_watchdog(watchdog_usec / 1e6 / 2), name="watchdog")
    reloader = Reloader(app, config_path, settings, wanted=reload_wanted)
    tasks.create(reloader.run_forever(), name="reload")
    await stop.wait()
    log.info("stopping")
    sd_notify("STOPPING=1")
    await _shutdown(runner, tasks)
    log.info("stopped")
    return EXIT_OK


async def _unless_stopped(step: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run a start-up step; False when a signal came first (the step is cancelled and undone)."""
    if stop.is_set():
        step.close()
        return False
    task = asyncio.create_task(step, name="daemon:start")
    stopped = asyncio.create_task(stop.wait(), name="daemon:stop-requested")
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopped.cancel()
        await asyncio.wait((stopped,))
    if task.done():
        task.result()  # the step's own error, if any
        return True
    # The core stops what it had started when cancelled (agent/services.py).
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled() and task.exception() is not None:
        log.warning("startup_step_failed_while_stopping", error=str(task.exception()))
    return False


async def _stop_early(runner: web.AppRunner) -> int:
    """A signal came during start-up: undo what started, and exit as after a normal stop."""
    log.info("stopping")
    await _shutdown(runner)
    log.info("stopped")
    return EXIT_OK


def _listen_failure(settings: Settings, err: OSError) -> tuple[str, int]:
    """What to tell the person who must fix a failed listen, and the exit code."""
    where = f"cannot listen on {settings.http.host}:{settings.http.port}: {err.strerror or err}"
    if err.errno == errno.EADDRINUSE:
        return (
            f"{where}: another program uses this port; stop it, or choose another [http] port",
            EXIT_UNAVAILABLE,
        )
    if err.errno == errno.EACCES:
        return f"{where}: ports below 1024 need privileges; choose [http] port 1024 or above", (
            EXIT_CONFIG
        )
    if err.errno == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror):
        return f"{where}: this host has no such address; check [http] host", EXIT_CONFIG
    return where, EXIT_FAILURE


def sd_notify(message: str) -> None:
    """Send a state change to systemd when it asked for them (Type=notify); else do nothing."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(message.encode(), address)


async def _feed_watchdog(interval: float) -> None:
    """Ping systemd's watchdog while the loop runs; a stuck loop stops the pings."""
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def _shutdown(runner: web.AppRunner, tasks: TaskSet | None = None) -> None:
    """Stop the helper tasks, then the HTTP server and the core, all within SHUTDOWN_BUDGET_S."""
    try:
        async with asyncio.timeout(SHUTDOWN_BUDGET_S):
            if tasks is not None:
                await tasks.close(TASKS_SHUTDOWN_TIMEOUT_S)
            # Stops listening, lets open requests finish, then stops the core services.
            await runner.cleanup()
    except TimeoutError:
        log.error(  # noqa: TRY400 - a timeout, no traceback worth showing
            "shutdown_timed_out", budget_s=SHUTDOWN_BUDGET_S
        )


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _install_signal_handlers(stop: asyncio.Event, reload_wanted: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # A second stop signal: the person (or systemd) will not wait for the clean stop.
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            stop_logging()  # the line above reaches the log before the process goes
            os._exit(EXIT_FAILURE)
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    def on_hangup() -> None:
        log.info("signal_received", signal="SIGHUP")
        reload_wanted.set()  # applied once the daemon runs; merged with any already waiting

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)


def _remove_signal_handlers() -> None:
    loop = asyncio.get_running_loop()
    for signum in (*_STOP_SIGNALS, signal.SIGHUP):
        loop.remove_signal_handler(signum)


def _bound_address(site: CappedTCPSite, settings: Settings) -> tuple[str, int]:
    server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
    if isinstance(server, asyncio.base_events.Server) and server.sockets:
        sockname = server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])
    return settings.http.host, settings.http.port
