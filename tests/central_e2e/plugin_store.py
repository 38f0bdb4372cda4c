"""Read the companion plugin's job table straight from the InvenTree server's SQLite file.

The plugin keeps its jobs in its own tables and offers no API to list them (only agents talk to
it); a test that must see a job's final state on the server reads the row, read-only.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tests.inventree_servers import InvenTreeServer


@dataclass(frozen=True)
class JobRow:
    """A print job as the plugin stored it."""

    uid: str
    state: str
    printed: int
    total: int
    message: str


def _database(server: InvenTreeServer) -> Path:
    return server.folder / "data" / "db.sqlite3"


def _table(connection: sqlite3.Connection, suffix: str) -> str:
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (f"%_{suffix}",)
    ).fetchall()
    [(name,)] = rows
    return str(name)


def jobs_of_machine(server: InvenTreeServer, machine: str) -> list[JobRow]:
    """The jobs of the printer shown as InvenTree machine `machine` (a uuid), oldest first."""
    uri = f"file:{_database(server)}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
        jobs, printers = _table(connection, "edgejob"), _table(connection, "edgeprinter")
        rows = connection.execute(
            f"SELECT j.uid, j.state, j.printed, j.total, j.message FROM {jobs} j "  # noqa: S608
            f"JOIN {printers} p ON p.id = j.printer_id WHERE replace(p.machine, '-', '') = ? "
            "ORDER BY j.id",
            (machine.replace("-", ""),),
        ).fetchall()
    return [
        JobRow(str(uid), state, printed, total, message or "")
        for uid, state, printed, total, message in rows
    ]
