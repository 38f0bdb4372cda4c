"""The machines a host's configuration and database set up, and the `CONNECTION` of each.

For the commands an administrator runs by hand (`discover`, `doctor`): read straight from the
database, read-only, so they answer whether the daemon runs or not and change nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.config import Settings
from agent.devices import MachineUse

# The daemon writes in short transactions; a reader waits at most this long for one to end.
DATABASE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ConfiguredMachines:
    """The machines found, and why the database's were not read (empty if they were)."""

    uses: list[MachineUse]
    problem: str = ""


def configured_machines(settings: Settings) -> ConfiguredMachines:
    """Machines of the database (what the daemon runs), then `[[machines]]` not yet in it."""
    found: dict[str, MachineUse] = {}
    problem = ""
    try:
        found = {use.name: use for use in _database_uses(settings)}
    except sqlite3.Error as err:
        problem = f"cannot read the machines in {settings.database_path.absolute()}: {err}"
    for entry in settings.machines:
        connection = entry.driver_settings.get("CONNECTION")
        if entry.name not in found and isinstance(connection, str):
            found[entry.name] = MachineUse(entry.name, connection, entry.active)
    return ConfiguredMachines(list(found.values()), problem)


def _database_uses(settings: Settings) -> list[MachineUse]:
    path = settings.database_path.absolute()
    if not path.exists():
        return []
    uri = f"{path.as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=DATABASE_TIMEOUT_S)
    try:
        rows = conn.execute(
            "SELECT m.name, s.value, m.active FROM machine m JOIN machine_setting s "
            "ON s.machine = m.pk WHERE s.config_type = 'D' AND s.key = 'CONNECTION' "
            "ORDER BY m.rowid"
        ).fetchall()
    finally:
        conn.close()
    return [MachineUse(str(name), str(value), bool(active)) for name, value, active in rows]
