"""Typed events inside the daemon: what happened to machines and jobs, told to whoever subscribed.

Publishers (the registry, the poller, a machine's status, the job runner) call `publish`; each
subscriber names the event type it wants. Handlers are guarded: one that raises is logged (event
and handler named) and neither the publisher nor the other handlers notice.

Sync handlers run inside `publish`, in the order they subscribed: they see the state as the
publisher left it, and must be quick (set a flag, wake a task). Async handlers are for slow work:
each async subscription has one owned task that takes its events in order from a bounded queue,
each call under a timeout; an event that finds the queue full is dropped and logged.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from agent.tasks import TaskSet

if TYPE_CHECKING:
    from agent.machine import Machine
    from drivers.base import MachineStatus

log = structlog.get_logger(__name__)

# Events an async subscriber may have waiting; a subscriber this far behind is stuck, and holding
# more would only grow memory.
MAX_QUEUED_EVENTS = 1000
# One call of an async handler; it talks to at most a database or a nearby server.
HANDLER_TIMEOUT_S = 30.0


class Event:
    """Base of every event; `log_fields` say which one it was in a log line."""

    __slots__ = ()

    def log_fields(self) -> dict[str, object]:
        """Fields that identify this event in a log line."""
        return {}


class _MachineEvent(Event):
    __slots__ = ()
    machine: Machine

    def log_fields(self) -> dict[str, object]:
        """The machine's name."""
        return {"machine": self.machine.name}


@dataclass(frozen=True, slots=True)
class MachineAdded(_MachineEvent):
    """A machine was created (by the API or the configuration)."""

    machine: Machine


@dataclass(frozen=True, slots=True)
class MachineRemoved(_MachineEvent):
    """A machine was deleted; it is no longer in the registry."""

    machine: Machine


class MachineChange(enum.Enum):
    """What changed about a machine."""

    STARTED = "started"  # initialised: its driver can use it now
    STOPPED = "stopped"  # no longer usable: deactivated, or the daemon is stopping
    UPDATED = "updated"  # name, active or a setting changed (after the driver's update hook)
    RESTARTED = "restarted"  # InvenTree's restart: flags, errors and status reset


@dataclass(frozen=True, slots=True)
class MachineChanged(_MachineEvent):
    """A machine's lifecycle or configuration changed."""

    machine: Machine
    change: MachineChange

    def log_fields(self) -> dict[str, object]:
        """The machine's name and what changed."""
        return {"machine": self.machine.name, "change": self.change.value}


@dataclass(frozen=True, slots=True)
class MachineStatusChanged(_MachineEvent):
    """A machine's status code changed (status text and properties may follow in the same step)."""

    machine: Machine
    old: MachineStatus | None
    new: MachineStatus


@dataclass(frozen=True, slots=True)
class MachineReachable(_MachineEvent):
    """A status poll got an answer from the printer (published on every good poll)."""

    machine: Machine


@dataclass(frozen=True, slots=True)
class JobChanged(Event):
    """A print job moved from one status to another (`old` is None for a new job)."""

    job: str
    machine: str
    old: str | None
    new: str

    def log_fields(self) -> dict[str, object]:
        """The job's pk and the transition."""
        return {"job": self.job, "transition": f"{self.old} -> {self.new}"}


E = TypeVar("E", bound=Event)
SyncHandler = Callable[[Any], None]
AsyncHandler = Callable[[Any], Awaitable[None]]


class Subscription:
    """One handler subscribed to one event type; `cancel()` unsubscribes it."""

    __slots__ = ("_hub", "active", "async_handler", "event_type", "handler", "name", "queue")

    def __init__(
        self,
        hub: EventHub,
        event_type: type[Event],
        handler: SyncHandler | None = None,
        async_handler: AsyncHandler | None = None,
    ) -> None:
        self._hub = hub
        self.event_type = event_type
        self.handler = handler
        self.async_handler = async_handler
        self.active = True
        self.name = _handler_name(handler or async_handler)
        # Async subscriptions only: the events waiting for their handler.
        self.queue: asyncio.Queue[Event] | None = (
            asyncio.Queue(hub.max_queued) if async_handler is not None else None
        )

    def cancel(self) -> None:
        """Unsubscribe: no further event reaches the handler (queued ones are dropped)."""
        self._hub._remove(self)  # noqa: SLF001 - the hub's own handle


class EventHub:
    """Subscribe handlers by event type; publish events to them, each handler guarded."""

    def __init__(
        self,
        *,
        max_queued: int = MAX_QUEUED_EVENTS,
        handler_timeout: float = HANDLER_TIMEOUT_S,
    ) -> None:
        self.max_queued = max_queued
        self.handler_timeout = handler_timeout
        # Replaced, never changed in place: `publish` iterates without copying, and a handler
        # may subscribe or unsubscribe while it runs.
        self._subscriptions: dict[type[Event], tuple[Subscription, ...]] = {}
        self._tasks = TaskSet("events")
        self._workers: dict[Subscription, asyncio.Task[None]] = {}
        self._closed = False

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Subscription:
        """Call `handler(event)` inside `publish` for every event of exactly this type."""
        return self._add(Subscription(self, event_type, handler=handler))

    def subscribe_async(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None]]
    ) -> Subscription:
        """Await `handler(event)` on an owned task, one event after another, in order."""
        return self._add(Subscription(self, event_type, async_handler=handler))

    def publish(self, event: Event) -> None:
        """Tell every subscriber of the event's type; never raises because of a handler."""
        for subscription in self._subscriptions.get(type(event), ()):
            if not subscription.active:
                continue  # unsubscribed by an earlier handler of this event
            if subscription.handler is not None:
                try:
                    subscription.handler(event)
                except Exception as err:  # noqa: BLE001 - one bad handler must not stop the rest
                    _log_failure(subscription, event, err)
            else:
                self._queue(subscription, event)

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not an I/O wait
        """Let async handlers finish what is queued, up to `timeout` seconds, then stop them."""
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queues = [s.queue for s in self._workers if s.queue is not None]
        if queues:
            joined = [asyncio.ensure_future(queue.join()) for queue in queues]
            _done, pending = await asyncio.wait(joined, timeout=timeout)
            for future in pending:
                future.cancel()
            if pending:
                await asyncio.wait(pending)
        self._workers.clear()
        await self._tasks.close(max(deadline - loop.time(), 0.0))

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions there are, of every type."""
        return sum(len(subs) for subs in self._subscriptions.values())

    # internals

    def _add(self, subscription: Subscription) -> Subscription:
        current = self._subscriptions.get(subscription.event_type, ())
        self._subscriptions[subscription.event_type] = (*current, subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        subscription.active = False
        current = self._subscriptions.get(subscription.event_type, ())
        remaining = tuple(s for s in current if s is not subscription)
        if remaining:
            self._subscriptions[subscription.event_type] = remaining
        else:
            self._subscriptions.pop(subscription.event_type, None)
        worker = self._workers.pop(subscription, None)
        if worker is not None:
            worker.cancel()

    def _queue(self, subscription: Subscription, event: Event) -> None:
        queue, handler = subscription.queue, subscription.async_handler
        if queue is None or handler is None or self._closed:
            return
        if queue.full():
            log.error(
                "event_dropped",
                event_type=type(event).__name__,
                handler=subscription.name,
                queued=queue.qsize(),
                **event.log_fields(),
            )
            return
        queue.put_nowait(event)
        if subscription not in self._workers:
            self._workers[subscription] = self._tasks.create(
                self._work(subscription, handler, queue), name=subscription.name
            )

    async def _work(
        self, subscription: Subscription, handler: AsyncHandler, queue: asyncio.Queue[Event]
    ) -> None:
        while True:
            event = await queue.get()
            try:
                async with asyncio.timeout(self.handler_timeout):
                    await handler(event)
            except TimeoutError:
                log.error(  # noqa: TRY400 - a timeout, no traceback worth showing
                    "event_handler_timed_out",
                    event_type=type(event).__name__,
                    handler=subscription.name,
                    timeout_s=self.handler_timeout,
                    **event.log_fields(),
                )
            except Exception as err:  # noqa: BLE001 - one bad handler must not stop the rest
                _log_failure(subscription, event, err)
            finally:
                queue.task_done()


def _log_failure(subscription: Subscription, event: Event, err: Exception) -> None:
    log.error(
        "event_handler_failed",
        event_type=type(event).__name__,
        handler=subscription.name,
        exc_info=err,
        **event.log_fields(),
    )


def _handler_name(handler: Callable[..., object] | None) -> str:
    """`agent.poller.Poller.on_machine_changed`: what a log line can name."""
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)
