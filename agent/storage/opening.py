"""Opening the database file: the checks at start, the schema, the connections and their settings.

Blocking: these run on the store's threads, never on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from pathlib import Path

from agent.migrations import migrate
from agent.storage.errors import StoreRefused
from agent.storage.transaction import transaction

# SQLite waits this long for a lock held by another process (the CLI writing users or tokens).
BUSY_TIMEOUT_MS = 5000
# Files the agent creates hold password hashes and token hashes: private to the service user.
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# The large document blobs are left out of the start-up integrity check: reading every page of a
# big queue would delay the start on an SD card; a damaged document fails only its own job.
UNCHECKED_TABLES = frozenset({"job_document"})
SQLITE_HEADER = b"SQLite format 3\x00"


def open_writer(path: Path, *, secret_path: Path | None, reset: bool) -> sqlite3.Connection:
    """Create the directory and database if needed, check them, bring the schema up to date.

    With `secret_path`, a missing or empty database next to an existing secret is refused (the
    agent ran here before: its data is gone), unless `reset` allows starting afresh; `reset` also
    moves a damaged database aside instead of refusing it.
    """
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    existed = path.exists() and path.stat().st_size > 0
    if not existed:
        _refuse_fresh_start(path, secret_path, reset)
    elif not _has_sqlite_header(path):
        _set_aside_or_refuse(path, reset, "it is not an SQLite database")
        existed = False
    conn = _connect(path)
    try:
        damage = _integrity_problem(conn) if existed else None
        if damage is not None:
            conn.close()
            _set_aside_or_refuse(path, reset, damage)
            conn = _connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = migrate(conn)
        # Prove the file can be written now, not at the first print.
        with transaction(conn):
            conn.execute(f"PRAGMA user_version = {version}")
        for suffix in ("", "-wal", "-shm"):
            # Tightens a database made by an older agent; another owner's file stays as is.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                Path(f"{path}{suffix}").chmod(FILE_MODE)
    except Exception:
        conn.close()
        raise
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """A second connection that can only read: in WAL mode it sees the last commit at once."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


def _refuse_fresh_start(path: Path, secret_path: Path | None, reset: bool) -> None:
    if secret_path is None or reset or not secret_path.exists():
        return
    state = "empty" if path.exists() else "missing"
    raise StoreRefused(
        f"the database {path} is {state}, but {secret_path.name} shows this agent "
        "ran here before: its jobs, users and tokens would be lost. Restore the database "
        "from a backup, or start once with `inventree-edge run --reset-database` to begin "
        "with an empty one"
    )


def _set_aside_or_refuse(path: Path, reset: bool, problem: str) -> None:
    if not reset:
        raise StoreRefused(
            f"the database {path} is damaged ({problem}). Restore it from a backup, or "
            "start once with `inventree-edge run --reset-database` to move it aside and begin "
            "with an empty one"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{path}.damaged-{stamp}{suffix}")


def _connect(path: Path) -> sqlite3.Connection:
    """The writer's connection: transactions are explicit; the writer thread owns it."""
    _create_private(path)
    return sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 (SQLite gives its -wal and -shm files the same)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def _has_sqlite_header(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _integrity_problem(conn: sqlite3.Connection) -> str | None:
    """SQLite's quick check of the schema and every table but the document blobs."""
    try:
        tables = [
            str(r[0])
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] not in UNCHECKED_TABLES and not str(r[0]).startswith("sqlite_")
        ]
        for table in tables:
            rows = conn.execute(f'PRAGMA quick_check("{table}")').fetchall()
            if rows != [("ok",)]:
                return "; ".join(str(r[0]) for r in rows[:3])
    except sqlite3.DatabaseError as err:
        # A disk that cannot be read is not a damaged file: report it as it is.
        code = (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
            raise
        return str(err)
    return None
