"""Live status: one poll loop per initialised machine, so status follows the printer by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from agent.machine import Machine
from agent.registry import Registry
from agent.tasks import TaskSet

log = structlog.get_logger(__name__)

# A status query is a few bytes each way; a printer that has not answered in this time is not
# going to (Zebra printers stay silent to ~HS in some faults, which the driver reads as such).
POLL_TIMEOUT_S = 10.0
# Bounds on the poll interval a driver setting may ask for.
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 3600.0


class Poller:
    """Polls every initialised machine on its driver's interval; a failed poll means DISCONNECTED."""

    def __init__(
        self, registry: Registry, on_reachable: Callable[[Machine], None] | None = None
    ) -> None:
        self.registry = registry
        self.on_reachable = on_reachable
        self._tasks = TaskSet("poller")
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._failing: set[str] = set()

    # registry events

    def machine_ready(self, machine: Machine) -> None:
        """Start polling a machine that was just initialised."""
        if machine.pk in self._loops or machine.driver is None:
            return
        self._wake[machine.pk] = asyncio.Event()
        self._loops[machine.pk] = self._tasks.create(self._run(machine), name=machine.pk)

    def machine_stopped(self, machine: Machine) -> None:
        """Stop polling a machine that was deactivated or deleted."""
        task = self._loops.pop(machine.pk, None)
        self._wake.pop(machine.pk, None)
        self._failing.discard(machine.pk)
        if task is not None:
            task.cancel()

    def machine_changed(self, machine: Machine) -> None:
        """Poll soon: a setting changed or the machine was restarted."""
        self.poll_soon(machine.pk)

    # control

    def poll_soon(self, pk: str) -> None:
        """Wake a machine's poll loop now instead of at its next interval."""
        wake = self._wake.get(pk)
        if wake is not None:
            wake.set()

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not an I/O wait
        """Stop every poll loop."""
        self._loops.clear()
        await self._tasks.close(timeout)

    async def poll_once(self, machine: Machine) -> bool:
        """Ask the driver for the printer's state; False (and DISCONNECTED) if it fails."""
        driver = machine.driver
        if driver is None or machine.io_lock.locked():
            return True
        async with machine.io_lock:
            try:
                async with asyncio.timeout(POLL_TIMEOUT_S):
                    await driver.poll(machine)
            except Exception as err:  # noqa: BLE001 - any driver failure means "cannot reach it"
                self._failed(machine, err)
                await self.registry.persist_state(machine)
                return False
        if machine.pk in self._failing:
            self._failing.discard(machine.pk)
            log.info("printer_reachable_again", machine=machine.name)
        machine.clear_errors("runtime")
        await self.registry.persist_state(machine)
        if self.on_reachable is not None:
            self.on_reachable(machine)
        return True

    # internals

    async def _run(self, machine: Machine) -> None:
        # Every log line of this task (drivers and transports included) names the machine.
        structlog.contextvars.bind_contextvars(machine=machine.name, driver=machine.driver_slug)
        wake = self._wake[machine.pk]
        while True:
            wake.clear()
            try:
                await self.poll_once(machine)
            except Exception:  # noqa: BLE001 - the loop must outlive a failing database
                log.exception("poll_loop_error", machine=machine.name)
            try:
                async with asyncio.timeout(self._interval(machine)):
                    await wake.wait()
            except TimeoutError:
                pass

    def _interval(self, machine: Machine) -> float:
        driver = machine.driver
        interval = driver.POLL_INTERVAL if driver is not None else MAX_POLL_INTERVAL_S
        if driver is not None and "POLL_INTERVAL" in driver.MACHINE_SETTINGS:
            interval = float(machine.get_setting("POLL_INTERVAL", "D"))
        return min(max(interval, MIN_POLL_INTERVAL_S), MAX_POLL_INTERVAL_S)

    def _failed(self, machine: Machine, err: Exception) -> None:
        reason = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            reason = f"no answer within {POLL_TIMEOUT_S:g} s"
        status_class = machine.machine_type.MACHINE_STATUS if machine.machine_type else None
        disconnected = getattr(status_class, "DISCONNECTED", None)
        if disconnected is not None:
            machine.set_status(disconnected)
        machine.set_status_text(reason)
        if machine.pk in self._failing:
            log.debug("poll_failed", machine=machine.name, error=reason)
        else:
            self._failing.add(machine.pk)
            log.warning("poll_failed", machine=machine.name, error=reason)
