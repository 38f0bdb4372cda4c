"""Machines in SQLite: the machines, their settings and their last known status."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from agent.storage.database import Database
from agent.storage.errors import DuplicateMachineName, violates_unique


@dataclass(frozen=True, slots=True)
class MachineRow:
    pk: str
    name: str
    machine_type: str
    driver: str
    active: bool


@dataclass(frozen=True, slots=True)
class SettingRow:
    pk: int
    machine: str
    config_type: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class StateRow:
    machine: str
    status: int
    status_text: str
    properties: str
    read_at: str


class MachineStore:
    """The machine aggregate over the agent's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def load_machines(self) -> tuple[list[MachineRow], list[SettingRow], list[StateRow]]:
        """Every machine (in creation order), every setting (in row order) and every last state."""

        def query(
            conn: sqlite3.Connection,
        ) -> tuple[list[MachineRow], list[SettingRow], list[StateRow]]:
            machines = [
                MachineRow(r[0], r[1], r[2], r[3], bool(r[4]))
                for r in conn.execute(
                    "SELECT pk, name, machine_type, driver, active FROM machine ORDER BY rowid"
                )
            ]
            settings = [
                SettingRow(*r)
                for r in conn.execute(
                    "SELECT pk, machine, config_type, key, value FROM machine_setting ORDER BY pk"
                )
            ]
            states = [
                StateRow(*r)
                for r in conn.execute(
                    "SELECT machine, status, status_text, properties, read_at FROM machine_state"
                )
            ]
            return machines, settings, states

        return await self.database.read(query)

    async def insert_machine(self, row: MachineRow) -> None:
        """Add a machine; raises DuplicateMachineName when the name is taken."""
        await self.database.write(lambda conn: _insert_machine(conn, row))

    async def update_machine(self, pk: str, name: str, active: bool) -> None:
        """Change the two user-editable fields of a machine; DuplicateMachineName if taken."""

        def update(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "UPDATE machine SET name = ?, active = ? WHERE pk = ?", (name, int(active), pk)
                )
            except sqlite3.IntegrityError as err:
                if violates_unique(err, "machine.name"):
                    raise DuplicateMachineName(name) from err
                raise

        await self.database.write(update)

    async def delete_machine(self, pk: str) -> None:
        """Remove a machine with its settings and state."""
        await self.database.write(
            lambda conn: conn.execute("DELETE FROM machine WHERE pk = ?", (pk,))
        )

    async def save_setting(
        self, machine: str, config_type: str, key: str, value: str
    ) -> SettingRow:
        """Insert or update one setting; returns the stored row with its pk."""
        return await self.database.write(
            lambda conn: _upsert_setting(conn, machine, config_type, key, value)
        )

    async def apply_machine_config(
        self, machines: Sequence[MachineRow], settings: Sequence[tuple[str, str, str, str]]
    ) -> list[SettingRow]:
        """Insert machines and upsert `(machine, config_type, key, value)` settings in one transaction."""

        def apply(conn: sqlite3.Connection) -> list[SettingRow]:
            for m in machines:
                _insert_machine(conn, m)
            return [_upsert_setting(conn, *setting) for setting in settings]

        return await self.database.write(apply)

    async def save_states(self, rows: Sequence[StateRow]) -> None:
        """Remember machines' last known status (one transaction for all)."""

        def save(conn: sqlite3.Connection) -> None:
            for row in rows:
                conn.execute(
                    "INSERT INTO machine_state (machine, status, status_text, properties, read_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (machine) DO UPDATE SET "
                    "status = excluded.status, status_text = excluded.status_text, "
                    "properties = excluded.properties, read_at = excluded.read_at",
                    (row.machine, row.status, row.status_text, row.properties, row.read_at),
                )

        # A status lost in a power cut is read again from the printer at the next start.
        await self.database.write(save, durable=False)


def _insert_machine(conn: sqlite3.Connection, row: MachineRow) -> None:
    try:
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver, active) VALUES (?, ?, ?, ?, ?)",
            (row.pk, row.name, row.machine_type, row.driver, int(row.active)),
        )
    except sqlite3.IntegrityError as err:
        if violates_unique(err, "machine.name"):
            raise DuplicateMachineName(row.name) from err
        raise


def _upsert_setting(
    conn: sqlite3.Connection, machine: str, config_type: str, key: str, value: str
) -> SettingRow:
    conn.execute(
        "INSERT INTO machine_setting (machine, config_type, key, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (machine, config_type, key) DO UPDATE SET value = excluded.value",
        (machine, config_type, key, value),
    )
    row = conn.execute(
        "SELECT pk, machine, config_type, key, value FROM machine_setting "
        "WHERE machine = ? AND config_type = ? AND key = ?",
        (machine, config_type, key),
    ).fetchone()
    return SettingRow(*row)
