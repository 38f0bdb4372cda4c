"""The machine store on a real SQLite file: machines, settings, last states, name conflicts."""

from __future__ import annotations

import sqlite3

import pytest

from agent.storage.errors import Conflict, DuplicateMachineName
from agent.storage.machines import MachineRow, MachineStore, StateRow
from tests.storage_helpers import MACHINE, database, db_path, machine_store

__all__ = ["database", "db_path", "machine_store"]  # fixtures used by name

OTHER = MachineRow(
    "0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e02", "Other", "label-printer", "virtual", True
)


async def test_deleting_a_machine_removes_its_settings_and_state(
    machine_store: MachineStore,
) -> None:
    await machine_store.insert_machine(MACHINE)
    await machine_store.insert_machine(OTHER)
    await machine_store.save_setting(MACHINE.pk, "D", "DPI", "203")
    await machine_store.save_setting(OTHER.pk, "D", "DPI", "300")
    await machine_store.save_states(
        [StateRow(MACHINE.pk, 100, "", "[]", "2024-01-01T00:00:00+00:00")]
    )
    await machine_store.delete_machine(MACHINE.pk)
    machines, settings, states = await machine_store.load_machines()
    assert machines == [OTHER]
    assert [(s.machine, s.value) for s in settings] == [(OTHER.pk, "300")]
    assert states == []


async def test_updating_a_setting_keeps_its_pk(machine_store: MachineStore) -> None:
    await machine_store.insert_machine(MACHINE)
    first = await machine_store.save_setting(MACHINE.pk, "D", "DPI", "203")
    second = await machine_store.save_setting(MACHINE.pk, "D", "DPI", "600")
    assert second.pk == first.pk
    assert second.value == "600"


async def test_duplicate_names_are_refused(machine_store: MachineStore) -> None:
    await machine_store.insert_machine(MACHINE)
    with pytest.raises(DuplicateMachineName):
        await machine_store.insert_machine(
            MachineRow("0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e03", "Desk", "x", "y", True)
        )


async def test_a_name_conflict_is_a_domain_error_whatever_the_write(
    machine_store: MachineStore,
) -> None:
    """Renaming onto a taken name, or a configured machine that repeats one: no sqlite3 error."""
    await machine_store.insert_machine(MACHINE)
    await machine_store.insert_machine(OTHER)
    with pytest.raises(DuplicateMachineName) as renamed:
        await machine_store.update_machine(OTHER.pk, MACHINE.name, True)
    assert not isinstance(renamed.value, sqlite3.Error)
    assert isinstance(renamed.value, Conflict)
    assert str(renamed.value) == MACHINE.name
    configured = MachineRow("0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e04", "Other", "t", "d", True)
    with pytest.raises(DuplicateMachineName):
        await machine_store.apply_machine_config([configured], [(configured.pk, "D", "X", "1")])
    machines, settings, _states = await machine_store.load_machines()
    assert machines == [MACHINE, OTHER]  # nothing of the refused writes was kept
    assert settings == []
