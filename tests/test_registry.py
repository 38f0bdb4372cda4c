"""The registry's lifecycle rules, driver discovery and containment, over a real SQLite store."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import agent.registry as registry_module
from agent import discovery
from agent.app import create_app
from agent.config import MachineEntry
from agent.discovery import discover
from agent.poller import Poller
from agent.registry import ConfigMachineError, Registry
from agent.storage.database import Database
from agent.storage.machines import MachineStore
from drivers.base import LabelPrinterDriver, LabelPrinterStatus, Machine, PrintJob

Client = TestClient[Any, Any]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    database = Database(tmp_path / "db.sqlite3")
    await database.open()
    yield MachineStore(database)
    await database.close()


async def _registry(store: MachineStore, tmp_path: Path, *extra: str) -> Registry:
    registry = Registry(store, discover(extra), tmp_path)
    await registry.load()
    return registry


def test_discovery_contains_broken_drivers() -> None:
    found = discover(
        (
            "tests.fake_drivers:RecordingDriver",
            "tests.fake_drivers:MissingNameDriver",
            "tests.fake_drivers:DuplicateSlugDriver",
            "tests.no_such_module:Driver",
            "tests.fake_drivers:_even",
        )
    )
    assert "recording" in found.drivers
    assert found.drivers["recording"].__name__ == "RecordingDriver"
    assert "missing-name" not in found.drivers
    assert (
        "'<class 'tests.fake_drivers.MissingNameDriver'>' did not provide the following attributes: NAME"
        in found.errors
    )
    assert "Cannot re-register driver 'recording'" in found.errors
    assert any(
        e.startswith("Failed to load driver 'tests.no_such_module:Driver'") for e in found.errors
    )
    assert (
        "'tests.fake_drivers:_even' is not a driver class (it must subclass BaseDriver)"
        in found.errors
    )


class NoPrintDriver(LabelPrinterDriver):
    SLUG = "no-print"
    NAME = "No print"
    DESCRIPTION = "Forgot to implement print"


def test_discovery_requires_print_on_label_printer_drivers() -> None:
    found = discover(("tests.test_registry:NoPrintDriver",))
    assert "no-print" not in found.drivers
    assert any("did not override the required attributes: print" in e for e in found.errors)


async def test_registry_errors_are_shown_by_the_api(
    aiohttp_client: Any, settings: Any, make_token: Any
) -> None:
    app = create_app(settings, extra_drivers=("tests.fake_drivers:MissingNameDriver",))
    client = await aiohttp_client(app)
    headers = await make_token(client)
    resp = await client.get("/api/machine/status/", headers=headers)
    assert await resp.json() == {
        "registry_errors": [
            {
                "message": "'<class 'tests.fake_drivers.MissingNameDriver'>' did not provide "
                "the following attributes: NAME"
            }
        ]
    }


async def test_each_driver_is_created_with_its_own_state_directory(
    store: MachineStore, tmp_path: Path
) -> None:
    registry = await _registry(store, tmp_path / "data", "tests.fake_drivers:RecordingDriver")
    assert registry.drivers["recording"].state_dir == tmp_path / "data" / "recording"
    assert registry.drivers["virtual"].state_dir == tmp_path / "data" / "virtual"
    assert registry.drivers["zpl"].context.state_dir == tmp_path / "data" / "zpl"


async def test_start_runs_init_driver_then_initialises_active_machines(
    store: MachineStore, tmp_path: Path
) -> None:
    registry = await _registry(store, tmp_path, "tests.fake_drivers:RecordingDriver")
    await registry.create("a", "label-printer", "recording", active=True)
    await registry.create("b", "label-printer", "recording", active=False)
    # A fresh registry over the same store, as after a restart.
    registry = await _registry(store, tmp_path, "tests.fake_drivers:RecordingDriver")
    await registry.start()
    driver: Any = registry.drivers["recording"]
    assert driver.calls == [("init_driver", ""), ("init_machine", "a")]
    machines = {m.name: m for m in registry.machines.values()}
    assert machines["a"].initialized is True
    assert machines["b"].initialized is False
    await registry.close()
    assert ("close_machine", "a") in driver.calls


async def test_deactivate_closes_and_reactivate_initialises(
    store: MachineStore, tmp_path: Path
) -> None:
    registry = await _registry(store, tmp_path, "tests.fake_drivers:RecordingDriver")
    machine = await registry.create("a", "label-printer", "recording", active=True)
    driver: Any = registry.drivers["recording"]
    await registry.update(machine, name=None, active=False)
    assert machine.initialized is False
    assert driver.calls[-2:] == [("update_machine", "a"), ("close_machine", "a")]
    await registry.update(machine, name=None, active=True)
    assert machine.initialized is True
    assert driver.calls[-2:] == [("update_machine", "a"), ("init_machine", "a")]


class SlowDriver(LabelPrinterDriver):
    SLUG = "slow"
    NAME = "Slow"
    DESCRIPTION = "Never finishes init"

    async def init_machine(self, machine: Machine) -> None:
        await asyncio.sleep(3600)

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


class ExplodingDriver(LabelPrinterDriver):
    SLUG = "exploding"
    NAME = "Exploding"
    DESCRIPTION = "Raises in every hook"

    async def init_driver(self) -> None:
        raise RuntimeError("no firmware")

    async def restart_machine(self, machine: Machine) -> None:
        raise RuntimeError("restart failed")

    async def print(self, machine: Machine, job: PrintJob) -> None:
        return None


async def test_hung_hook_times_out_into_a_machine_error(
    store: MachineStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "HOOK_TIMEOUT_S", 0.05)
    registry = await _registry(store, tmp_path, "tests.test_registry:SlowDriver")
    machine = await registry.create("slow", "label-printer", "slow", active=True)
    assert machine.initialized is False
    assert machine.error_messages == ["init_machine did not finish within 0.05 s"]


async def test_driver_exceptions_become_visible_errors(store: MachineStore, tmp_path: Path) -> None:
    registry = await _registry(store, tmp_path, "tests.test_registry:ExplodingDriver")
    await registry.start()
    assert registry.drivers["exploding"].errors == ["no firmware"]
    machine = await registry.create("x", "label-printer", "exploding", active=True)
    machine.set_status(LabelPrinterStatus.CONNECTED)
    await registry.restart(machine)
    assert machine.error_messages == ["restart failed"]
    assert machine.status == LabelPrinterStatus.UNKNOWN


async def test_last_known_status_survives_a_restart(store: MachineStore, tmp_path: Path) -> None:
    registry = await _registry(store, tmp_path)
    machine = await registry.create("v", "label-printer", "virtual", active=True)
    await registry.save_setting(machine, "D", "FAULT", "paper-out")
    assert machine.status == LabelPrinterStatus.NO_MEDIA
    read_at = machine.status_read_at
    registry = await _registry(store, tmp_path)
    restored = registry.get(machine.pk)
    assert restored is not None
    assert restored.status == LabelPrinterStatus.NO_MEDIA
    assert restored.status_text == "Paper out"
    assert restored.status_read_at == read_at
    assert [p.key for p in restored.properties] == ["Model", "Resolution", "Width"]


async def test_config_machines_are_created_once_and_settings_applied(
    store: MachineStore, tmp_path: Path
) -> None:
    entry = MachineEntry(
        name="cfg", driver="virtual", driver_settings={"DPI": 203, "fault": "paper-out"}
    )
    registry = await _registry(store, tmp_path)
    await registry.apply_config([entry])
    machine = next(iter(registry.machines.values()))
    assert machine.get_setting("DPI", "D") == 203
    assert machine.get_setting("FAULT", "D") == "paper-out"
    registry = await _registry(store, tmp_path)
    await registry.apply_config([entry.model_copy(update={"driver_settings": {"DPI": 300}})])
    assert len(registry.machines) == 1
    machine = next(iter(registry.machines.values()))
    assert machine.get_setting("DPI", "D") == 300
    assert machine.get_setting("FAULT", "D") == "paper-out"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"NOPE": 1}, "no DRIVER setting 'NOPE'"),
        ({"DPI": 150}, "Chosen value is not a valid option"),
    ],
)
async def test_bad_config_machine_settings_are_refused(
    store: MachineStore, tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    registry = await _registry(store, tmp_path)
    with pytest.raises(ConfigMachineError, match=message):
        await registry.apply_config(
            [MachineEntry(name="bad", driver="virtual", driver_settings=settings)]
        )


def test_entry_point_drivers_are_discovered_and_broken_ones_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = "inventree_edge.drivers"
    points = [
        EntryPoint("acme", "tests.test_registry:NoPrintDriver", group),
        EntryPoint("acme-slow", "tests.test_registry:SlowDriver", group),
        EntryPoint("broken", "acme_printers.missing:Driver", group),
    ]
    monkeypatch.setattr(
        discovery, "entry_points", lambda group: [p for p in points if p.group == group]
    )
    found = discover()
    assert "slow" in found.drivers
    assert found.providers["slow"].slug == "acme-slow"
    assert found.providers["virtual"].slug is None
    assert any("did not override the required attributes: print" in e for e in found.errors)
    assert any(
        e.startswith("Failed to load driver 'acme_printers.missing:Driver'") for e in found.errors
    )


async def test_drivers_list_names_the_providing_plugin(
    aiohttp_client: Any, settings: Any, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = EntryPoint("acme-slow", "tests.test_registry:SlowDriver", "inventree_edge.drivers")
    monkeypatch.setattr(discovery, "entry_points", lambda group: [point])
    client = await aiohttp_client(create_app(settings))
    headers = await make_token(client)
    drivers = await (await client.get("/api/machine/drivers/", headers=headers)).json()
    slow = next(d for d in drivers if d["slug"] == "slow")
    assert slow["provider_plugin"] == {"slug": "acme-slow", "name": "acme-slow", "pk": None}
    assert slow["is_builtin"] is False
    assert slow["provider_file"].endswith("tests/test_registry.py")


async def test_polls_follow_setting_changes_and_store_only_changes(
    store: MachineStore, tmp_path: Path
) -> None:
    registry = await _registry(store, tmp_path)
    await registry.apply_config([MachineEntry(name="Desk", driver="virtual")])
    await registry.start()
    machine = next(iter(registry.machines.values()))
    poller = Poller(registry)
    written: list[int] = []
    save_states = store.save_states

    async def counted(rows: list[Any]) -> None:
        written.append(len(rows))
        await save_states(rows)

    store.save_states = counted  # type: ignore[method-assign]
    for _ in range(3):
        assert await poller.poll_once(machine)
    assert written == []  # nothing changed, nothing written
    width_before = {p.key: p.value for p in machine.properties}["Width"]
    await registry.save_setting(machine, "D", "FAULT", "paper-jam")
    await registry.save_setting(machine, "D", "LABEL_WIDTH_MM", "100")
    assert machine.get_setting("LABEL_WIDTH_MM", "D") == 100
    assert await poller.poll_once(machine)
    assert machine.status == LabelPrinterStatus.PAPER_JAM
    assert {p.key: p.value for p in machine.properties}["Width"] > width_before
    await registry.save_setting(machine, "D", "FAULT", "none")
    assert await poller.poll_once(machine)
    assert machine.status == LabelPrinterStatus.CONNECTED
    assert written  # each change stored
    stored = await store.load_machines()
    assert stored[2][0].status == LabelPrinterStatus.CONNECTED
    await poller.close(1.0)


async def test_a_poll_that_hangs_ends_as_disconnected_after_the_poll_timeout(
    store: MachineStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.poller.POLL_TIMEOUT_S", 0.3)
    monkeypatch.setattr("agent.poller.POLL_SWEEP_S", 0.05)
    registry = await _registry(store, tmp_path)
    await registry.apply_config([MachineEntry(name="Desk", driver="virtual")])
    await registry.start()
    machine = next(iter(registry.machines.values()))
    poller = Poller(registry)

    async def hang(_machine: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(machine.driver, "poll", hang)
    try:
        async with asyncio.timeout(5):
            assert not await poller.poll_once(machine)
        assert machine.status == LabelPrinterStatus.DISCONNECTED
        assert machine.status_text == "no answer within 0.3 s"
        assert not machine.io_lock.locked()
    finally:
        await poller.close(1.0)
