"""Machine events from the real registry and poller, with a ZPL simulator behind a TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from agent import events
from agent.appkeys import EVENTS, POLLER, REGISTRY
from agent.events import (
    Event,
    MachineAdded,
    MachineChange,
    MachineChanged,
    MachineReachable,
    MachineRemoved,
    MachineStatusChanged,
)
from drivers.base import LabelPrinterStatus
from drivers.sim import ZplSimulator, serve_tcp
from tests.conftest import Headers, create_machine
from tests.daemon_helpers import fresh_loggers
from tests.driver_time import use_quick_timing

Client = TestClient[Any, Any]
E = TypeVar("E", bound=Event)
# Every step here is a loopback exchange or a database write: milliseconds; this bounds a hang.
WAIT_S = 10.0
ZPL_SETTINGS = {"POLL_INTERVAL": "3600", "DPMM": "12", "LABEL_WIDTH_MM": "61"}


@pytest.fixture(autouse=True)
def _fresh_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_loggers(monkeypatch, events)


@pytest.fixture(autouse=True)
def quick_timing(client: Client) -> None:
    # Replies come in microseconds; a printer gone deaf should fail a poll quickly.
    use_quick_timing(client.app[REGISTRY].drivers)


class Recorder:
    """Collects events of one type and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(self, match: Callable[[Any], bool]) -> Any:
        async with asyncio.timeout(WAIT_S):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                self._arrived.clear()
                await self._arrived.wait()


def recorder(client: Client, event_type: type[E]) -> Recorder:
    record = Recorder()
    client.app[EVENTS].subscribe(event_type, record)
    return record


async def _set(client: Client, headers: Headers, pk: str, settings: dict[str, str]) -> None:
    for key, value in settings.items():
        resp = await client.put(
            f"/api/machine/{pk}/settings/D/{key}/", json={"value": value}, headers=headers
        )
        assert resp.status == 200, await resp.text()


async def test_a_printer_fault_reaches_a_status_subscriber_through_the_poll_loop(
    client: Client, admin: Headers
) -> None:
    statuses = recorder(client, MachineStatusChanged)
    reachable = recorder(client, MachineReachable)
    sim = ZplSimulator()
    async with await serve_tcp(sim) as server:
        machine = await create_machine(client, admin, name="zebra", driver="zpl")
        pk = machine["pk"]
        await _set(client, admin, pk, {**ZPL_SETTINGS, "CONNECTION": server.url})
        # The poll loop reads the printer when the machine starts (an hour before the next).
        first = await statuses.wait_for(
            lambda e: e.machine.pk == pk and e.new == LabelPrinterStatus.CONNECTED
        )
        assert first.old is not LabelPrinterStatus.CONNECTED
        await reachable.wait_for(lambda e: e.machine.pk == pk)

        sim.set_fault("paper-out")
        client.app[POLLER].poll_soon(pk)  # what a setting change or a job's failure does
        paper_out = await statuses.wait_for(lambda e: e.new == LabelPrinterStatus.NO_MEDIA)
        assert (paper_out.machine.pk, paper_out.old) == (pk, LabelPrinterStatus.CONNECTED)
        # The subscriber saw the status the API shows.
        resp = await client.get(f"/api/machine/{pk}/", headers=admin)
        assert (await resp.json())["status"] == LabelPrinterStatus.NO_MEDIA

        sim.set_fault("offline")
        client.app[POLLER].poll_soon(pk)
        gone = await statuses.wait_for(lambda e: e.new == LabelPrinterStatus.DISCONNECTED)
        assert gone.old == LabelPrinterStatus.NO_MEDIA


async def test_a_failing_status_subscriber_is_logged_and_the_poller_and_others_carry_on(
    client: Client, admin: Headers
) -> None:
    def broken(_event: MachineStatusChanged) -> None:
        raise RuntimeError("subscriber bug")

    client.app[EVENTS].subscribe(MachineStatusChanged, broken)
    statuses = recorder(client, MachineStatusChanged)
    sim = ZplSimulator()
    with capture_logs() as logs:
        async with await serve_tcp(sim) as server:
            machine = await create_machine(client, admin, name="zebra", driver="zpl")
            pk = machine["pk"]
            await _set(client, admin, pk, {**ZPL_SETTINGS, "CONNECTION": server.url})
            await statuses.wait_for(lambda e: e.new == LabelPrinterStatus.CONNECTED)
            resp = await client.get(f"/api/machine/{pk}/", headers=admin)
            assert (await resp.json())["status"] == LabelPrinterStatus.CONNECTED
    failures = [e for e in logs if e["event"] == "event_handler_failed"]
    assert failures
    assert {e["handler"].rsplit(".", 1)[-1] for e in failures} == {"broken"}
    assert {e["event_type"] for e in failures} == {"MachineStatusChanged"}
    assert {e["machine"] for e in failures} == {"zebra"}


async def test_the_registry_publishes_added_changed_and_removed(
    client: Client, admin: Headers
) -> None:
    added = recorder(client, MachineAdded)
    changed = recorder(client, MachineChanged)
    removed = recorder(client, MachineRemoved)

    machine = await create_machine(client, admin, name="desk", driver="virtual")
    pk = machine["pk"]
    assert [e.machine.pk for e in added.events] == [pk]
    assert [e.change for e in changed.events] == [MachineChange.STARTED]

    resp = await client.patch(f"/api/machine/{pk}/", json={"active": False}, headers=admin)
    assert resp.status == 200
    assert [e.change for e in changed.events[1:]] == [MachineChange.STOPPED, MachineChange.UPDATED]

    resp = await client.post(f"/api/machine/{pk}/restart/", headers=admin)
    assert resp.status == 200
    assert changed.events[-1].change is MachineChange.RESTARTED

    resp = await client.delete(f"/api/machine/{pk}/", headers=admin)
    assert resp.status == 204
    assert [e.machine.pk for e in removed.events] == [pk]
    assert all(e.machine.pk == pk for e in changed.events)
