"""SQLite persistence: machines, settings, last known status, users, tokens and sessions.

One connection lives on one dedicated thread; every call is a short transaction run there, so commits
(and their fsyncs) never block the event loop. WAL with synchronous=FULL: a commit that returned is on
disk, even after a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.migrations import migrate

T = TypeVar("T")

# SQLite waits this long for a lock held by another process (the CLI writing users or tokens).
BUSY_TIMEOUT_MS = 5000
# A call (queued behind others on the store thread) that takes longer means a failing disk: the
# caller gets an error instead of waiting for ever. An SD card commit takes tens of ms.
CALL_TIMEOUT_S = 30.0


class StoreError(Exception):
    """The database cannot be opened or used."""


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


@dataclass(frozen=True, slots=True)
class UserRow:
    pk: int
    username: str
    password_hash: str
    is_superuser: bool
    is_staff: bool
    is_active: bool
    role: str
    first_name: str
    last_name: str
    email: str
    date_joined: str

    @classmethod
    def from_row(cls, *r: Any) -> UserRow:
        """Build from a SELECT of `_USER_COLUMNS` (SQLite returns booleans as ints)."""
        return cls(r[0], r[1], r[2], bool(r[3]), bool(r[4]), bool(r[5]), *r[6:])


@dataclass(frozen=True, slots=True)
class TokenRow:
    pk: int
    user: int
    name: str
    key_hash: str
    key_hint: str
    expiry: str
    revoked: bool
    created: str
    last_seen: str | None
    salt: str | None = None

    @classmethod
    def from_row(cls, *r: Any) -> TokenRow:
        """Build from a SELECT of `_TOKEN_COLUMNS`."""
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9])


@dataclass(frozen=True, slots=True)
class SessionRow:
    key_hash: str
    user: int
    csrf_token: str
    expires: str


class Store:
    """The agent's database. Open once, share, close at shutdown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the data directory and database if needed and bring the schema up to date."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            await self._run(self._open_sync)
        except (OSError, sqlite3.Error, RuntimeError) as err:
            await self.close()
            raise StoreError(f"cannot open database {self.path}: {err}") from err

    async def close(self) -> None:
        """Close the connection and stop the store thread."""
        if self._executor is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        # The close above was the last call and has finished: nothing left to wait for.
        self._executor.shutdown(wait=False)
        self._executor = None

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the store thread inside one transaction."""
        return await self._run(self._in_transaction, fn)

    # machines and settings

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

        return await self.call(query)

    async def insert_machine(self, row: MachineRow) -> None:
        """Add a machine; raises sqlite3.IntegrityError on a duplicate name."""
        await self.call(
            lambda conn: conn.execute(
                "INSERT INTO machine (pk, name, machine_type, driver, active) VALUES (?, ?, ?, ?, ?)",
                (row.pk, row.name, row.machine_type, row.driver, int(row.active)),
            )
        )

    async def update_machine(self, pk: str, name: str, active: bool) -> None:
        """Change the two user-editable fields of a machine."""
        await self.call(
            lambda conn: conn.execute(
                "UPDATE machine SET name = ?, active = ? WHERE pk = ?", (name, int(active), pk)
            )
        )

    async def delete_machine(self, pk: str) -> None:
        """Remove a machine with its settings and state."""
        await self.call(lambda conn: conn.execute("DELETE FROM machine WHERE pk = ?", (pk,)))

    async def save_setting(
        self, machine: str, config_type: str, key: str, value: str
    ) -> SettingRow:
        """Insert or update one setting; returns the stored row with its pk."""
        return await self.call(lambda conn: _upsert_setting(conn, machine, config_type, key, value))

    async def apply_machine_config(
        self, machines: Sequence[MachineRow], settings: Sequence[tuple[str, str, str, str]]
    ) -> list[SettingRow]:
        """Insert machines and upsert `(machine, config_type, key, value)` settings in one transaction."""

        def apply(conn: sqlite3.Connection) -> list[SettingRow]:
            for m in machines:
                conn.execute(
                    "INSERT INTO machine (pk, name, machine_type, driver, active) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (m.pk, m.name, m.machine_type, m.driver, int(m.active)),
                )
            return [_upsert_setting(conn, *setting) for setting in settings]

        return await self.call(apply)

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

        await self.call(save)

    # users, tokens, sessions

    async def get_user(
        self, *, pk: int | None = None, username: str | None = None
    ) -> UserRow | None:
        """One user by pk or by exact username."""
        column, value = ("pk", pk) if pk is not None else ("username", username)
        return await self.call(
            lambda conn: _one(
                conn,
                UserRow.from_row,
                f"SELECT {_USER_COLUMNS} FROM user WHERE {column} = ?",  # noqa: S608 - fixed names
                (value,),
            )
        )

    async def insert_user(self, row: UserRow) -> UserRow:
        """Add a user; raises sqlite3.IntegrityError when the name is taken. Returns it with its pk."""

        def insert(conn: sqlite3.Connection) -> UserRow:
            cursor = conn.execute(
                "INSERT INTO user (username, password_hash, is_superuser, is_staff, is_active, role, "
                "first_name, last_name, email, date_joined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.username,
                    row.password_hash,
                    int(row.is_superuser),
                    int(row.is_staff),
                    int(row.is_active),
                    row.role,
                    row.first_name,
                    row.last_name,
                    row.email,
                    row.date_joined,
                ),
            )
            pk = cursor.lastrowid
            sql = f"SELECT {_USER_COLUMNS} FROM user WHERE pk = ?"  # noqa: S608 - fixed names
            result = _one(conn, UserRow.from_row, sql, (pk,))
            assert result is not None  # noqa: S101 - just inserted in this transaction
            return result

        return await self.call(insert)

    async def insert_token(self, row: TokenRow) -> TokenRow:
        """Store a token (hashed); returns it with its pk."""

        def insert(conn: sqlite3.Connection) -> TokenRow:
            cursor = conn.execute(
                "INSERT INTO api_token (user, name, key_hash, key_hint, expiry, revoked, created, salt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.user,
                    row.name,
                    row.key_hash,
                    row.key_hint,
                    row.expiry,
                    int(row.revoked),
                    row.created,
                    row.salt,
                ),
            )
            result = _one(
                conn,
                TokenRow.from_row,
                f"SELECT {_TOKEN_COLUMNS} FROM api_token WHERE pk = ?",  # noqa: S608 - fixed names
                (cursor.lastrowid,),
            )
            assert result is not None  # noqa: S101 - just inserted in this transaction
            return result

        return await self.call(insert)

    async def get_token(self, key_hash: str) -> TokenRow | None:
        """The token whose key hashes to `key_hash`."""
        return await self.call(
            lambda conn: _one(
                conn,
                TokenRow.from_row,
                f"SELECT {_TOKEN_COLUMNS} FROM api_token WHERE key_hash = ?",  # noqa: S608
                (key_hash,),
            )
        )

    async def reusable_token(self, user: int, name: str, today: str) -> TokenRow | None:
        """The user's oldest live token of this name whose key can be derived again."""
        sql = (
            f"SELECT {_TOKEN_COLUMNS} FROM api_token WHERE user = ? AND name = ? "  # noqa: S608
            "AND revoked = 0 AND expiry >= ? AND salt IS NOT NULL ORDER BY pk LIMIT 1"
        )
        return await self.call(lambda conn: _one(conn, TokenRow.from_row, sql, (user, name, today)))

    async def prune_tokens(self, before: str) -> int:
        """Forget tokens that expired, or were revoked, before a date; returns how many."""
        return await self.call(
            lambda conn: (
                conn.execute(
                    "DELETE FROM api_token WHERE expiry < ? OR (revoked = 1 AND created < ?)",
                    (before, before),
                ).rowcount
            )
        )

    async def touch_token(self, pk: int, seen: str) -> None:
        """Record when a token was last used."""
        await self.call(
            lambda conn: conn.execute("UPDATE api_token SET last_seen = ? WHERE pk = ?", (seen, pk))
        )

    async def revoke_token(self, key_hash: str) -> None:
        """Make a token unusable."""
        await self.call(
            lambda conn: conn.execute(
                "UPDATE api_token SET revoked = 1 WHERE key_hash = ?", (key_hash,)
            )
        )

    async def delete_session(self, key_hash: str) -> None:
        """Log a session out."""
        await self.call(
            lambda conn: conn.execute("DELETE FROM session WHERE key_hash = ?", (key_hash,))
        )

    async def insert_session(self, row: SessionRow) -> None:
        """Store a login session (hashed key)."""
        await self.call(
            lambda conn: conn.execute(
                "INSERT INTO session (key_hash, user, csrf_token, expires) VALUES (?, ?, ?, ?)",
                (row.key_hash, row.user, row.csrf_token, row.expires),
            )
        )

    async def get_session(self, key_hash: str) -> SessionRow | None:
        """The session whose key hashes to `key_hash`."""
        return await self.call(
            lambda conn: _one(
                conn,
                SessionRow,
                "SELECT key_hash, user, csrf_token, expires FROM session WHERE key_hash = ?",
                (key_hash,),
            )
        )

    async def delete_expired_sessions(self, now: str) -> None:
        """Forget sessions past their expiry."""
        await self.call(lambda conn: conn.execute("DELETE FROM session WHERE expires < ?", (now,)))

    # internals

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            migrate(conn)
        except Exception:
            conn.close()
            raise
        self._conn = conn

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        with _transaction(conn):
            return fn(conn)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await loop.run_in_executor(self._executor, fn, *args)
        except TimeoutError as err:
            raise StoreError(f"the database did not answer within {CALL_TIMEOUT_S:g} s") from err


_USER_COLUMNS = (
    "pk, username, password_hash, is_superuser, is_staff, is_active, role, first_name, last_name, "
    "email, date_joined"
)
_TOKEN_COLUMNS = "pk, user, name, key_hash, key_hint, expiry, revoked, created, last_seen, salt"  # noqa: S105


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


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _one(
    conn: sqlite3.Connection, cls: Callable[..., T], sql: str, params: tuple[Any, ...]
) -> T | None:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        return None
    return cls(*row)
