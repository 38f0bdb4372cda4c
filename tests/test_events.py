"""The event hub: typed subscriptions, guarded handlers, order, unsubscribe, bounded async work."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from agent import events
from agent.events import (
    EventHub,
    JobChanged,
    MachineAdded,
    MachineChange,
    MachineChanged,
    MachineRemoved,
)
from agent.machine import Machine
from tests.daemon_helpers import fresh_loggers

# Bounds a wait for something the test set in motion; it happens within milliseconds.
WAIT_S = 5.0


@pytest.fixture(autouse=True)
def _fresh_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_loggers(monkeypatch, events)


def _machine(name: str = "Desk") -> Machine:
    return Machine(pk=f"pk-{name}", name=name, machine_type_slug="t", driver_slug="d", active=True)


def _job(new: str, old: str | None = None) -> JobChanged:
    return JobChanged(job="job-1", machine="pk-Desk", old=old, new=new)


def test_sync_handlers_run_inside_publish_in_subscription_order_for_their_type_only() -> None:
    hub = EventHub()
    seen: list[str] = []
    hub.subscribe(JobChanged, lambda event: seen.append(f"first {event.new}"))
    hub.subscribe(MachineAdded, lambda event: seen.append(f"added {event.machine.name}"))
    hub.subscribe(JobChanged, lambda event: seen.append(f"second {event.new}"))

    hub.publish(_job("queued"))
    hub.publish(MachineAdded(_machine()))
    hub.publish(MachineRemoved(_machine()))  # nobody subscribed: nothing happens

    assert seen == ["first queued", "second queued", "added Desk"]
    assert hub.subscriber_count == 3


def test_a_failing_handler_is_logged_once_and_the_others_and_the_publisher_go_on() -> None:
    hub = EventHub()
    seen: list[str] = []

    def broken(_event: MachineChanged) -> None:
        raise RuntimeError("handler bug")

    hub.subscribe(MachineChanged, lambda event: seen.append("before"))
    hub.subscribe(MachineChanged, broken)
    hub.subscribe(MachineChanged, lambda event: seen.append(f"after {event.change.value}"))

    with capture_logs() as logs:
        hub.publish(MachineChanged(_machine(), MachineChange.UPDATED))

    assert seen == ["before", "after updated"]
    failures = [entry for entry in logs if entry["event"] == "event_handler_failed"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["log_level"] == "error"
    assert failure["event_type"] == "MachineChanged"
    assert failure["handler"].endswith(
        "test_a_failing_handler_is_logged_once_and_the_others_"
        "and_the_publisher_go_on.<locals>.broken"
    )
    assert failure["machine"] == "Desk"
    assert failure["change"] == "updated"
    assert isinstance(failure["exc_info"], RuntimeError)


def test_the_log_line_names_the_event_type() -> None:
    hub = EventHub()

    def broken(_event: JobChanged) -> None:
        raise ValueError("no")

    hub.subscribe(JobChanged, broken)
    with capture_logs() as logs:
        hub.publish(_job("printing", old="queued"))
    assert [(e["event"], e["event_type"], e["job"], e["transition"]) for e in logs] == [
        ("event_handler_failed", "JobChanged", "job-1", "queued -> printing")
    ]
    assert logs[0]["handler"].endswith(".broken")


def test_unsubscribed_handlers_get_nothing_more_even_later_in_the_same_publish() -> None:
    hub = EventHub()
    seen: list[str] = []
    later = None

    def first(event: JobChanged) -> None:
        seen.append(f"first {event.new}")
        assert later is not None
        later.cancel()

    hub.subscribe(JobChanged, first)
    later = hub.subscribe(JobChanged, lambda event: seen.append(f"later {event.new}"))

    hub.publish(_job("queued"))
    hub.publish(_job("printing"))

    assert seen == ["first queued", "first printing"]
    assert hub.subscriber_count == 1


def test_a_handler_subscribed_during_publish_starts_with_the_next_event() -> None:
    hub = EventHub()
    seen: list[str] = []

    def subscribe_another(_event: JobChanged) -> None:
        if not seen:
            hub.subscribe(JobChanged, lambda event: seen.append(f"new {event.new}"))
        seen.append("subscriber")

    hub.subscribe(JobChanged, subscribe_another)
    hub.publish(_job("queued"))
    hub.publish(_job("printing"))
    assert seen == ["subscriber", "subscriber", "new printing"]


async def test_async_handlers_get_events_in_order_on_an_owned_task() -> None:
    hub = EventHub()
    seen: list[str] = []
    done = asyncio.Event()

    async def slow_then_fast(event: JobChanged) -> None:
        if event.new == "queued":
            await asyncio.sleep(0)  # a handler that yields must still keep the order
        seen.append(event.new)
        if event.new == "complete":
            done.set()

    hub.subscribe_async(JobChanged, slow_then_fast)
    for status in ("queued", "printing", "complete"):
        hub.publish(_job(status))
    assert seen == []  # publish never waits for an async handler
    async with asyncio.timeout(WAIT_S):
        await done.wait()
    assert seen == ["queued", "printing", "complete"]
    await hub.close(1.0)


async def test_a_failing_or_hanging_async_handler_is_logged_and_the_next_event_handled() -> None:
    hub = EventHub(handler_timeout=0.05)
    handled: list[str] = []
    last = asyncio.Event()

    async def troublesome(event: JobChanged) -> None:
        if event.new == "fails":
            raise RuntimeError("handler bug")
        if event.new == "hangs":
            await asyncio.Event().wait()
        handled.append(event.new)
        last.set()

    hub.subscribe_async(JobChanged, troublesome)
    with capture_logs() as logs:
        for status in ("fails", "hangs", "fine"):
            hub.publish(_job(status))
        async with asyncio.timeout(WAIT_S):
            await last.wait()
    assert handled == ["fine"]
    assert [(e["event"], e["handler"].rsplit(".", 1)[-1]) for e in logs] == [
        ("event_handler_failed", "troublesome"),
        ("event_handler_timed_out", "troublesome"),
    ]
    assert logs[1]["timeout_s"] == 0.05
    await hub.close(1.0)


async def test_an_async_subscriber_that_falls_behind_loses_events_with_a_log_line() -> None:
    hub = EventHub(max_queued=2)
    release = asyncio.Event()
    handled: list[str] = []

    async def blocked(event: JobChanged) -> None:
        await release.wait()
        handled.append(event.new)

    hub.subscribe_async(JobChanged, blocked)
    with capture_logs() as logs:
        for status in ("one", "two", "three"):
            hub.publish(_job(status))
    assert [(e["event"], e["queued"]) for e in logs] == [("event_dropped", 2)]
    release.set()
    await hub.close(WAIT_S)  # what was queued is handled before close returns
    assert handled == ["one", "two"]


async def test_close_stops_a_stuck_async_handler_within_its_budget() -> None:
    hub = EventHub()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(_event: JobChanged) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hub.subscribe_async(JobChanged, stuck)
    hub.publish(_job("queued"))
    async with asyncio.timeout(WAIT_S):
        await started.wait()
        await hub.close(0.05)
    assert cancelled.is_set()
    hub.publish(_job("printing"))  # after close async handlers get nothing
    await asyncio.sleep(0)
    assert hub.subscriber_count == 1


async def test_cancelling_an_async_subscription_stops_its_task() -> None:
    hub = EventHub()
    seen: list[str] = []
    handled = asyncio.Event()

    async def record(event: JobChanged) -> None:
        seen.append(event.new)
        handled.set()

    subscription = hub.subscribe_async(JobChanged, record)
    hub.publish(_job("queued"))
    async with asyncio.timeout(WAIT_S):
        await handled.wait()
    subscription.cancel()
    hub.publish(_job("printing"))
    await hub.close(1.0)
    assert seen == ["queued"]


@pytest.mark.parametrize("change", list(MachineChange))
def test_machine_changed_events_say_what_changed(change: MachineChange) -> None:
    event = MachineChanged(_machine("Shelf"), change)
    assert event.log_fields() == {"machine": "Shelf", "change": change.value}
