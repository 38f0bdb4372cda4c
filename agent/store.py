"""SQLite persistence: machines, settings, last known status, users, tokens and sessions.

One connection lives on one dedicated thread, so commits (and their fsyncs) never block the event
loop. Calls queued while the thread is busy run together in one transaction (each in its own
savepoint) and share one commit: one fsync for a burst of writes. A call is `durable` (the default)
when its caller promises something once it returns (a job accepted, a job complete); the batch then
commits with synchronous=FULL. Other writes (progress, last status, a token's last use) commit with
synchronous=NORMAL: in WAL mode they survive a crash of the process, and after a power cut at worst
they are lost together with the WAL frames behind the last fsync, which the next FULL commit covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
# Stored times this far ahead of the clock mean the clock is behind (not a second of NTP drift).
CLOCK_SLACK = dt.timedelta(minutes=5)
NEWEST_JOBS_CHECKED = 1000


# Files the agent creates hold password hashes and token hashes: private to the service user.
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# The large document blobs are left out of the start-up integrity check: reading every page of a
# big queue would delay the start on an SD card; a damaged document fails only its own job.
UNCHECKED_TABLES = frozenset({"job_document"})
SQLITE_HEADER = b"SQLite format 3\x00"
_FAULT_CODES = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "the disk reported an I/O error",
    sqlite3.SQLITE_READONLY: "the database is read-only",
    sqlite3.SQLITE_CORRUPT: "the database is damaged",
    sqlite3.SQLITE_NOTADB: "the database is damaged",
    sqlite3.SQLITE_CANTOPEN: "the database cannot be opened",
}


class StoreError(Exception):
    """The database cannot be opened or used."""


class StoreRefused(StoreError):
    """Starting would lose or damage data: a person must decide (the message says how)."""


class StorageFault(StoreError):
    """The disk or database failed a write (full, read-only, I/O error, damaged)."""

    def __init__(self, message: str, *, disk_full: bool) -> None:
        super().__init__(message)
        self.disk_full = disk_full


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


_WAITING, _RUNNING, _ABANDONED = range(3)


@dataclass(slots=True, eq=False)
class _Call:
    """One queued call; `state` moves under the store's lock."""

    fn: Callable[[sqlite3.Connection], Any]
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    on_late: Callable[[Any], None] | None
    state: int = _WAITING
    gave_up: bool = False


class Store:
    """The agent's database. Open once, share, close at shutdown.

    With `secret_path`, a missing or empty database next to an existing secret is refused (the
    agent ran here before: its data is gone), unless `reset` allows starting afresh; `reset` also
    moves a damaged database aside instead of refusing it.
    """

    def __init__(self, path: Path, *, secret_path: Path | None = None, reset: bool = False) -> None:
        self.path = path
        self.secret_path = secret_path
        self.reset = reset
        # The last storage fault met by a write, until a write succeeds again (shown by the API).
        self.fault: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # Reads run on their own connection and thread: WAL lets them see the last commit while
        # the writer waits for an fsync, so a lookup never queues behind a slow disk.
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: list[_Call] = []
        self._synchronous_full = True

    async def open(self) -> None:
        """Create the data directory and database if needed, check it, bring the schema up to date."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read")
        try:
            await self._run(self._open_sync)
            self._read_conn = await asyncio.get_running_loop().run_in_executor(
                self._reader, _connect_reader, self.path
            )
        except StoreError:
            await self.close()
            raise
        except (OSError, sqlite3.Error, RuntimeError) as err:
            await self.close()
            message = f"cannot open database {self.path}: {_reason(err)}"
            if _needs_a_person(err):
                raise StoreRefused(message) from err
            raise StoreError(message) from err

    async def close(self) -> None:
        """Close the connections and stop the store threads."""
        if self._reader is not None:
            if self._read_conn is not None:
                await asyncio.get_running_loop().run_in_executor(
                    self._reader, self._read_conn.close
                )
                self._read_conn = None
            self._reader.shutdown(wait=False)
            self._reader = None
        if self._executor is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        # The close above was the last call and has finished: nothing left to wait for.
        self._executor.shutdown(wait=False)
        self._executor = None

    async def call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        on_late: Callable[[T], None] | None = None,
    ) -> T:
        """Run `fn(connection)` on the store thread in a transaction; return after its commit.

        `durable=False` for writes whose loss in a power cut is harmless (see the module doc).
        A call that has not started when its caller gives up (timeout, cancellation) never runs;
        one that had started may still commit: then `on_late(result)` runs on the event loop, so
        the caller can act on what was saved after all.
        """
        if self._executor is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        call = _Call(fn, durable, loop, loop.create_future(), on_late)
        with self._lock:
            self._pending.append(call)
        self._executor.submit(self._drain)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await asyncio.shield(call.future)
        except TimeoutError as err:
            started = self._give_up(call)
            detail = "it may still be saved" if started else "nothing was saved"
            raise StoreError(
                f"the database did not answer within {CALL_TIMEOUT_S:g} s ({detail})"
            ) from err
        except asyncio.CancelledError:
            self._give_up(call)
            raise

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only `fn(connection)` on the reader thread; it sees the last commit."""
        reader = self._reader
        if reader is None or self._read_conn is None:
            raise StoreError("the store is closed")
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await asyncio.get_running_loop().run_in_executor(reader, self._read_sync, fn)
        except TimeoutError as err:
            raise StoreError(f"the database did not answer within {CALL_TIMEOUT_S:g} s") from err

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conn
        if conn is None:
            raise StoreError("the store is closed")
        conn.execute("BEGIN")  # one snapshot for every statement of `fn`
        try:
            return fn(conn)
        except sqlite3.Error as err:
            fault = _as_fault(err)
            if fault is None:
                raise
            raise fault from err
        finally:
            conn.execute("ROLLBACK")

    async def clock_behind(self, now: dt.datetime) -> dt.datetime | None:
        """The newest stored creation time if `now` is more than `CLOCK_SLACK` before it, else None.

        A host without a real-time clock boots with an old time until NTP steps it: dates made
        then are wrong, and pruning by them would delete what is not old.
        """
        newest = await self.newest_timestamp()
        if newest is None:
            return None
        try:
            stored = dt.datetime.fromisoformat(newest)
        except ValueError:
            return None
        if stored.tzinfo is None:
            stored = stored.replace(tzinfo=dt.UTC)
        return stored if now < stored - CLOCK_SLACK else None

    async def newest_timestamp(self) -> str | None:
        """The latest creation time stored (users, tokens, jobs): the clock was past it once."""

        def query(conn: sqlite3.Connection) -> str | None:
            # The newest jobs by sequence only: the job table may be large, and the newest
            # creation time is among the last ones made unless the clock jumped back before them.
            row = conn.execute(
                "SELECT max(t) FROM (SELECT max(date_joined) AS t FROM user "
                "UNION ALL SELECT max(created) FROM api_token UNION ALL SELECT max(created) FROM "
                "(SELECT created FROM job ORDER BY seq DESC LIMIT ?))",
                (NEWEST_JOBS_CHECKED,),
            ).fetchone()
            return None if row is None or row[0] is None else str(row[0])

        return await self.call(query)

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

        return await self.read(query)

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

        # A status lost in a power cut is read again from the printer at the next start.
        await self.call(save, durable=False)

    # users, tokens, sessions

    async def get_user(
        self, *, pk: int | None = None, username: str | None = None
    ) -> UserRow | None:
        """One user by pk or by exact username."""
        column, value = ("pk", pk) if pk is not None else ("username", username)
        return await self.read(
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
            if result is None:
                raise StoreError("a row inserted in this transaction is missing")
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
            if result is None:
                raise StoreError("a row inserted in this transaction is missing")
            return result

        return await self.call(insert)

    async def get_token(self, key_hash: str) -> TokenRow | None:
        """The token whose key hashes to `key_hash`."""
        return await self.read(
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
        return await self.read(lambda conn: _one(conn, TokenRow.from_row, sql, (user, name, today)))

    async def prune_tokens(self, before: str) -> int:
        """Forget tokens that expired, or were revoked, before a date; returns how many."""
        return await self.call(
            lambda conn: (
                conn.execute(
                    "DELETE FROM api_token WHERE expiry < ? OR (revoked = 1 AND created < ?)",
                    (before, before),
                ).rowcount
            ),
            durable=False,
        )

    async def touch_token(self, pk: int, seen: str) -> None:
        """Record when a token was last used."""
        await self.call(
            lambda conn: conn.execute(
                "UPDATE api_token SET last_seen = ? WHERE pk = ?", (seen, pk)
            ),
            durable=False,
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
        return await self.read(
            lambda conn: _one(
                conn,
                SessionRow,
                "SELECT key_hash, user, csrf_token, expires FROM session WHERE key_hash = ?",
                (key_hash,),
            )
        )

    async def delete_expired_sessions(self, now: str) -> None:
        """Forget sessions past their expiry."""
        await self.call(
            lambda conn: conn.execute("DELETE FROM session WHERE expires < ?", (now,)),
            durable=False,
        )

    # internals

    def _open_sync(self) -> None:
        directory = self.path.parent
        if not directory.is_dir():
            directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        if not existed:
            self._refuse_fresh_start()
        elif not _has_sqlite_header(self.path):
            self._set_aside_or_refuse("it is not an SQLite database")
            existed = False
        conn = _connect(self.path)
        try:
            damage = _integrity_problem(conn) if existed else None
            if damage is not None:
                conn.close()
                self._set_aside_or_refuse(damage)
                conn = _connect(self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = migrate(conn)
            # Prove the file can be written now, not at the first print.
            with _transaction(conn):
                conn.execute(f"PRAGMA user_version = {version}")
            for suffix in ("", "-wal", "-shm"):
                # Tightens a database made by an older agent; another owner's file stays as is.
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    Path(f"{self.path}{suffix}").chmod(FILE_MODE)
        except Exception:
            conn.close()
            raise
        self._conn = conn

    def _refuse_fresh_start(self) -> None:
        if self.secret_path is None or self.reset or not self.secret_path.exists():
            return
        state = "empty" if self.path.exists() else "missing"
        raise StoreRefused(
            f"the database {self.path} is {state}, but {self.secret_path.name} shows this agent "
            "ran here before: its jobs, users and tokens would be lost. Restore the database "
            "from a backup, or start once with `inventree-edge run --reset-database` to begin "
            "with an empty one"
        )

    def _set_aside_or_refuse(self, problem: str) -> None:
        if not self.reset:
            raise StoreRefused(
                f"the database {self.path} is damaged ({problem}). Restore it from a backup, or "
                "start once with `inventree-edge run --reset-database` to move it aside and begin "
                "with an empty one"
            )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{self.path}.damaged-{stamp}{suffix}")

    def _drain(self) -> None:
        """On the store thread: run every waiting call in one transaction, one commit for all."""
        with self._lock:
            batch = [call for call in self._pending if call.state == _WAITING]
            self._pending.clear()
            for call in batch:
                call.state = _RUNNING
        if not batch:
            return
        conn = self._conn
        if conn is None:
            self._settle(batch, [(False, StoreError("the store is closed"))] * len(batch))
            return
        results: list[tuple[bool, Any]] = []
        changes = conn.total_changes
        try:
            durable = any(call.durable for call in batch)
            if durable != self._synchronous_full:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synchronous_full = durable
            with _transaction(conn):
                for call in batch:
                    results.append(_run_in_savepoint(conn, call.fn))
        except Exception as err:  # noqa: BLE001 - every caller gets the failure
            fault = _as_fault(err)
            if fault is not None:
                self.fault = str(fault)
            results = [(False, fault or err)] * len(batch)
        else:
            if conn.total_changes != changes:
                self.fault = None
            results = [
                (ok, (_as_fault(value) or value) if not ok else value) for ok, value in results
            ]
            for ok, value in results:
                if not ok and isinstance(value, StorageFault):
                    self.fault = str(value)
        self._settle(batch, results)

    def _settle(self, batch: list[_Call], results: list[tuple[bool, Any]]) -> None:
        for call, (ok, value) in zip(batch, results, strict=True):
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                call.loop.call_soon_threadsafe(_deliver, call, ok, value)

    def _give_up(self, call: _Call) -> bool:
        """The caller stopped waiting; True if the call had already started."""
        with self._lock:
            call.gave_up = True
            if call.state == _WAITING:
                call.state = _ABANDONED
                return False
            return True

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await loop.run_in_executor(self._executor, fn, *args)
        except TimeoutError as err:
            raise StoreError(f"the database did not answer within {CALL_TIMEOUT_S:g} s") from err


def _deliver(call: _Call, ok: bool, value: Any) -> None:
    """On the event loop: hand a result to its waiting caller, or to `on_late` if it gave up."""
    if call.gave_up:
        if ok and call.on_late is not None:
            call.on_late(value)
        return
    if call.future.done():
        return
    if ok:
        call.future.set_result(value)
    else:
        call.future.set_exception(value)


def _run_in_savepoint(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> tuple[bool, Any]:
    """One call of a batch: its failure undoes its own changes only."""
    conn.execute("SAVEPOINT store_call")
    try:
        value = fn(conn)
    except Exception as err:  # handed to the caller
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O error)
        conn.execute("ROLLBACK TO store_call")
        conn.execute("RELEASE store_call")
        return False, err
    conn.execute("RELEASE store_call")
    return True, value


def _as_fault(err: BaseException) -> StorageFault | None:
    """A storage failure as a clear StorageFault; None for other errors (constraints, bugs)."""
    if not isinstance(err, sqlite3.Error) or isinstance(err, sqlite3.IntegrityError):
        return None
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return None
    reason = _FAULT_CODES.get(code & 0xFF)
    if reason is None:
        return None
    return StorageFault(
        f"The agent cannot save data: {reason} ({err}).",
        disk_full=code & 0xFF == sqlite3.SQLITE_FULL,
    )


def _needs_a_person(err: BaseException) -> bool:
    """Read-only files and missing permissions do not go away by starting again."""
    if isinstance(err, PermissionError):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM)


def _reason(err: BaseException) -> str:
    fault = _as_fault(err)
    return str(fault) if fault is not None else str(err)


def _connect(path: Path) -> sqlite3.Connection:
    """The store's connection: transactions are explicit; the store thread owns it."""
    _create_private(path)
    return sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )


def _connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


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


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _one(
    conn: sqlite3.Connection, cls: Callable[..., T], sql: str, params: tuple[Any, ...]
) -> T | None:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        return None
    return cls(*row)
