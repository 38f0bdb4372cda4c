"""`inventree-edge run`: serve until SIGTERM/SIGINT, tell systemd when ready, stop within a budget."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket

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
from agent.log_limits import limit_library_logs
from agent.registry import ConfigMachineError
from agent.store import StoreError, StoreRefused
from agent.tasks import TaskSet

log = structlog.get_logger(__name__)

# Shutdown budget, stage by stage; their sum plus a margin must stay below TimeoutStopSec in
# systemd/inventree-edge.service (a test checks it).
HTTP_SHUTDOWN_TIMEOUT_S = 5.0  # open requests finish, keep-alive connections close
CORE_SHUTDOWN_TIMEOUT_S = 15.0  # drivers release printers, the store closes
TASKS_SHUTDOWN_TIMEOUT_S = 2.0  # watchdog and other helpers
SHUTDOWN_BUDGET_S = HTTP_SHUTDOWN_TIMEOUT_S + CORE_SHUTDOWN_TIMEOUT_S + TASKS_SHUTDOWN_TIMEOUT_S


async def serve(settings: Settings, *, reset_database: bool = False) -> int:
    """Run the daemon; returns the process exit code."""
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
        return await _serve(settings, reset_database=reset_database)
    finally:
        instance.release()


async def _serve(settings: Settings, *, reset_database: bool) -> int:
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
        await runner.setup()
    except StoreRefused as err:
        # Data would be lost: a person decides; restarting would only refuse again.
        log.critical("startup_failed", reason=str(err))
        return EXIT_DATA
    except StoreError as err:
        log.critical("startup_failed", reason=str(err))
        return EXIT_FAILURE
    except ConfigMachineError as err:
        log.critical("startup_failed", reason=f"bad [[machines]] entry: {err}")
        await _cleanup(runner)
        return EXIT_CONFIG
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
        await _cleanup(runner)
        return code
    host, port = _bound_address(site, settings)
    log.info("listening", url=f"http://{host}:{port}/api/", max_connections=site.max_connections)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    tasks = TaskSet("daemon")
    sd_notify("READY=1")
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if watchdog_usec > 0:
        tasks.create(_feed_watchdog(watchdog_usec / 1e6 / 2), name="watchdog")
    await stop.wait()
    log.info("stopping")
    sd_notify("STOPPING=1")
    await tasks.close(TASKS_SHUTDOWN_TIMEOUT_S)
    await _cleanup(runner)
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


async def _cleanup(runner: web.AppRunner) -> None:
    try:
        async with asyncio.timeout(CORE_SHUTDOWN_TIMEOUT_S + HTTP_SHUTDOWN_TIMEOUT_S):
            await runner.cleanup()
    except TimeoutError:
        log.error(  # noqa: TRY400 - a timeout, no traceback worth showing
            "shutdown_timed_out", budget_s=CORE_SHUTDOWN_TIMEOUT_S + HTTP_SHUTDOWN_TIMEOUT_S
        )


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            os._exit(EXIT_FAILURE)
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def _bound_address(site: CappedTCPSite, settings: Settings) -> tuple[str, int]:
    server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
    if isinstance(server, asyncio.base_events.Server) and server.sockets:
        sockname = server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])
    return settings.http.host, settings.http.port
