"""Live status: one poll loop per initialised machine, so status follows the printer by itself."""

from __future__ import annotations

import asyncio
import time

import structlog

from agent.events import MachineChange, MachineChanged, MachineReachable, MachineRemoved
from agent.machine import Machine
from agent.registry import Registry
from agent.tasks import TaskSet
from drivers.base import MachineProperty

log = structlog.get_logger(__name__)

# A status query is a few bytes each way and drivers time out a silent printer within seconds;
# this only bounds a slow line that keeps answering (ZPL's ~HQES, ~HS, ~HI and odometer are
# ~300 bytes: 30 s at 10 bytes/s) and a driver that hangs.
POLL_TIMEOUT_S = 60.0
# Polls past their timeout are found by one sweep this often, not by a timer per poll: at
# thousands of machines arming and cancelling a timer on every poll was a third of the idle CPU.
POLL_SWEEP_S = 1.0
# Bounds on the poll interval a driver setting may ask for.
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 3600.0
# Properties in this group describe the printer's live state (paper, cover, online...): they are
# shown as "unknown" while it cannot be reached, instead of what was last seen.
LIVE_PROPERTY_GROUP = "Printer status"
UNKNOWN = "unknown"


class Poller:
    """Polls every initialised machine on its driver's interval; a failed poll means DISCONNECTED.

    Follows the registry's machine events (`on_machine_changed`, `on_machine_removed`); a good
    poll publishes MachineReachable on the registry's hub.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._tasks = TaskSet("poller")
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._failing: set[str] = set()
        # Consecutive failed polls, and when to try again, per failing machine.
        self._failures: dict[str, int] = {}
        self._retry_in: dict[str, float] = {}
        # Machines whose poll is running: their own connection changes need no extra poll.
        self._polling: set[str] = set()
        # Polls waiting on their printer: the timeout that ends each, and when (monotonic).
        self._in_flight: dict[str, tuple[asyncio.Timeout, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # registry events

    def on_machine_changed(self, event: MachineChanged) -> None:
        """Poll a machine once initialised, stop when it stops, poll soon after a change."""
        if event.change is MachineChange.STARTED:
            self.start_polling(event.machine)
        elif event.change is MachineChange.STOPPED:
            self.stop_polling(event.machine)
        else:
            self.poll_soon(event.machine.pk)

    def on_machine_removed(self, event: MachineRemoved) -> None:
        """Stop polling a deleted machine."""
        self.stop_polling(event.machine)

    # control

    def start_polling(self, machine: Machine) -> None:
        """Start polling a machine that was just initialised."""
        if machine.pk in self._loops or machine.driver is None:
            return
        self._wake[machine.pk] = asyncio.Event()
        self._loops[machine.pk] = self._tasks.create(self._run(machine), name=machine.pk)
        # Drivers with a connection tell when it fails (a job's attempt) or comes back: poll then.
        watch = getattr(machine.driver, "watch_connection", None)
        if callable(watch):
            pk = machine.pk
            watch(machine, lambda: self._connection_changed(pk))

    def stop_polling(self, machine: Machine) -> None:
        """Stop polling a machine that was deactivated or deleted."""
        task = self._loops.pop(machine.pk, None)
        self._wake.pop(machine.pk, None)
        watch = getattr(machine.driver, "watch_connection", None)
        if callable(watch):
            watch(machine, None)
        self._failing.discard(machine.pk)
        self._failures.pop(machine.pk, None)
        self._retry_in.pop(machine.pk, None)
        if task is not None:
            task.cancel()

    def poll_soon(self, pk: str) -> None:
        """Wake a machine's poll loop now instead of at its next interval."""
        wake = self._wake.get(pk)
        if wake is not None:
            wake.set()

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not an I/O wait
        """Stop every poll loop."""
        self._closed = True
        self._loops.clear()
        await self._tasks.close(timeout)

    async def poll_once(self, machine: Machine, *, wait_for_lock: bool = False) -> bool:
        """Ask the driver for the printer's state; False (and DISCONNECTED) if it fails.

        While a job holds the printer the poll is skipped, unless `wait_for_lock` (it then runs
        once the job lets go).
        """
        driver = machine.driver
        if driver is None or (machine.io_lock.locked() and not wait_for_lock):
            return True
        async with machine.io_lock:
            self._polling.add(machine.pk)
            try:
                async with self._poll_timeout(machine.pk) as limit:
                    self._in_flight[machine.pk] = (limit, time.monotonic() + POLL_TIMEOUT_S)
                    try:
                        await driver.poll(machine)
                    finally:
                        del self._in_flight[machine.pk]
            except Exception as err:  # noqa: BLE001 - any driver failure means "cannot reach it"
                self._failed(machine, err)
                await self.registry.persist_state(machine)
                return False
            finally:
                self._polling.discard(machine.pk)
        self._failures.pop(machine.pk, None)
        self._retry_in.pop(machine.pk, None)
        if machine.pk in self._failing:
            self._failing.discard(machine.pk)
            log.info("printer_reachable_again", machine=machine.name)
        machine.clear_errors("runtime")
        if machine.state_changed:
            await self.registry.persist_state(machine)
        self.registry.events.publish(MachineReachable(machine))
        return True

    # internals

    def _poll_timeout(self, pk: str) -> asyncio.Timeout:
        """A timeout the sweep sets off once the poll has run POLL_TIMEOUT_S."""
        if self._closed:
            return asyncio.timeout(POLL_TIMEOUT_S)
        if self._sweeper is None:
            self._sweeper = self._tasks.create(self._sweep(), name="poll-timeouts")
        return asyncio.timeout(None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLL_SWEEP_S)
            now = time.monotonic()
            for limit, deadline in list(self._in_flight.values()):
                if deadline <= now and limit.when() is None:
                    limit.reschedule(loop.time())

    def _connection_changed(self, pk: str) -> None:
        if pk not in self._polling:
            self.poll_soon(pk)

    async def _run(self, machine: Machine) -> None:
        # Every log line of this task (drivers and transports included) names the machine.
        structlog.contextvars.bind_contextvars(machine=machine.name, driver=machine.driver_slug)
        wake = self._wake[machine.pk]
        woken = False
        while True:
            wake.clear()
            try:
                # Asked for (a setting changed, the connection failed in a job): poll even if a
                # job holds the printer, once it lets go. On the interval a printing job is
                # status enough.
                await self.poll_once(machine, wait_for_lock=woken)
            except Exception:  # noqa: BLE001 - the loop must outlive a failing database
                log.exception("poll_loop_error", machine=machine.name)
            interval = self._interval(machine)
            retry_in = self._retry_in.get(machine.pk)
            if retry_in is not None:
                interval = min(interval, retry_in)
            woken = await _wait_for_wake(wake, interval)

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
        machine.set_properties(_unknown_live_properties(machine.properties))
        # Ask again soon, not after the full interval, so a printer that comes back (perhaps in a
        # fault) shows it at once: after 1 s, then twice as long after each further failure, up
        # to the interval; or right when the link's next connect attempt is due.
        failures = self._failures.get(machine.pk, 0) + 1
        self._failures[machine.pk] = failures
        retry_in = MIN_POLL_INTERVAL_S * 2 ** min(failures - 1, 16)
        # The link's own backoff (PrinterUnreachable.retry_in): poll right when it reconnects.
        link_retry = getattr(err, "retry_in", None)
        if isinstance(link_retry, int | float) and link_retry > 0:
            retry_in = float(link_retry) + 0.01
        self._retry_in[machine.pk] = min(retry_in, self._interval(machine))
        if machine.pk in self._failing:
            log.debug("poll_failed", machine=machine.name, error=reason)
        else:
            self._failing.add(machine.pk)
            log.warning("poll_failed", machine=machine.name, error=reason)


async def _wait_for_wake(wake: asyncio.Event, seconds: float) -> bool:
    """Wait until `wake` is set (True) or `seconds` pass (False).

    A timer that sets the event, rather than `asyncio.timeout`: at thousands of machines the
    cancellation and exception of a timeout expiring on every interval is most of the idle CPU.
    """
    timer = _Timer(wake)
    handle = asyncio.get_running_loop().call_later(seconds, timer.fire)
    try:
        await wake.wait()
    finally:
        handle.cancel()
    return not timer.fired


class _Timer:
    """Sets an event when the interval is over, and remembers that it did."""

    __slots__ = ("fired", "wake")

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.wake.set()


def _unknown_live_properties(
    properties: tuple[MachineProperty, ...],
) -> tuple[MachineProperty, ...]:
    """The properties with every live-state one (paper, cover, online...) set to "unknown"."""
    return tuple(
        MachineProperty(p.key, UNKNOWN, group=p.group, type="str")
        if p.group == LIVE_PROPERTY_GROUP
        else p
        for p in properties
    )
