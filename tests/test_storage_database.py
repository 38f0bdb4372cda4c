"""The database core: schema migrations, durability settings, group commit, timeouts, start checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.migrations import MIGRATIONS
from agent.storage.auth import AuthStore, TokenRow
from agent.storage.clock_check import clock_behind
from agent.storage.database import Database
from agent.storage.errors import (
    DuplicateMachineName,
    StorageFault,
    StoreError,
    StoreRefused,
)
from agent.storage.machines import MachineRow, MachineStore, StateRow
from tests.storage_helpers import (
    MACHINE,
    auth_store,
    database,
    db_path,
    hold,
    machine_store,
    token_row,
    user_row,
)

__all__ = ["auth_store", "database", "db_path", "machine_store"]  # fixtures used by name

TABLES = {"machine", "machine_setting", "machine_state", "user", "api_token", "session"}
# A lock held by another process (the CLI) is released within this; the store must wait for it.
LOCK_RELEASE_S = 0.2


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


async def test_open_creates_directory_database_and_latest_schema(
    database: Database, db_path: Path
) -> None:
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= TABLES


async def test_wal_and_full_sync_so_a_returned_commit_is_on_disk(
    database: Database, db_path: Path
) -> None:
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert await database.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2
    assert await database.write(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0]) == 1


async def test_reopening_keeps_data_and_does_not_migrate_again(
    database: Database, machine_store: MachineStore, auth_store: AuthStore, db_path: Path
) -> None:
    await machine_store.insert_machine(MACHINE)
    setting = await machine_store.save_setting(MACHINE.pk, "D", "DPI", "203")
    await machine_store.save_states(
        [StateRow(MACHINE.pk, 100, "Ready", "[]", "2024-01-01T00:00:00+00:00")]
    )
    user = await auth_store.insert_user(user_row("alice"))
    await auth_store.insert_token(token_row(user.pk, "ab" * 32))
    await database.close()

    again = Database(db_path)
    await again.open()
    try:
        machines, settings, states = await MachineStore(again).load_machines()
        assert machines == [MACHINE]
        assert settings == [setting]
        assert [(s.status, s.status_text) for s in states] == [(100, "Ready")]
        assert await AuthStore(again).get_user(username="alice") == user
        token = await AuthStore(again).get_token("ab" * 32)
        assert token is not None
        assert token.user == user.pk
    finally:
        await again.close()
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_database_newer_than_the_agent_is_refused_untouched(db_path: Path) -> None:
    _prepare(db_path, lambda path: _set_user_version(path, len(MIGRATIONS) + 1))
    refused = Database(db_path)
    with pytest.raises(StoreError) as info:
        await refused.open()
    message = str(info.value)
    assert str(db_path) in message
    assert f"schema version {len(MIGRATIONS) + 1} is newer than this agent knows" in message
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    with pytest.raises(StoreError):  # refused means closed, not half open
        await MachineStore(refused).load_machines()


async def test_a_file_that_is_not_a_database_is_refused_untouched(db_path: Path) -> None:
    _prepare(db_path, lambda path: path.write_bytes(b"this is not SQLite" * 100))
    with pytest.raises(StoreRefused, match="is damaged .*--reset-database"):
        await Database(db_path).open()
    assert _contents(db_path) == b"this is not SQLite" * 100


async def test_a_failed_call_rolls_back_the_whole_transaction(
    database: Database, machine_store: MachineStore
) -> None:
    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('a', 'A', 't', 'd')"
        )
        raise RuntimeError("crash between two writes")

    with pytest.raises(RuntimeError):
        await database.write(half_done)
    machines, _settings, _states = await machine_store.load_machines()
    assert machines == []


async def test_writes_wait_for_a_lock_held_by_another_process(
    machine_store: MachineStore, db_path: Path
) -> None:
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(LOCK_RELEASE_S, other.execute, "COMMIT")
        await machine_store.insert_machine(MACHINE)
    finally:
        other.close()
    machines, _settings, _states = await machine_store.load_machines()
    assert machines == [MACHINE]


async def test_a_closed_store_raises_store_error(db_path: Path) -> None:
    closed = Database(db_path)
    await closed.open()
    await closed.close()
    with pytest.raises(StoreError, match="closed"):
        await MachineStore(closed).load_machines()
    with pytest.raises(StoreError, match="closed"):
        await closed.write(lambda c: c.execute("SELECT 1"))


# files and start-up checks


async def test_directory_and_database_files_are_created_private(db_path: Path) -> None:
    opened = Database(db_path)
    await opened.open()
    try:
        await MachineStore(opened).insert_machine(MACHINE)
        modes = _modes(db_path)
    finally:
        await opened.close()
    assert modes["dir"] == 0o700
    assert modes[""] == 0o600
    assert modes["-wal"] == 0o600
    assert modes["-shm"] == 0o600


async def test_an_existing_world_readable_database_is_made_private(db_path: Path) -> None:
    _prepare(db_path, lambda path: (_set_user_version(path, 0), path.chmod(0o644)))
    opened = Database(db_path)
    await opened.open()
    await opened.close()
    assert _mode(db_path) == 0o600


@pytest.mark.parametrize("state", ["missing", "empty"])
async def test_a_lost_database_next_to_the_secret_is_refused_unless_reset(
    db_path: Path, state: str
) -> None:
    secret = db_path.parent / "secret.key"
    _prepare(secret, lambda path: path.write_bytes(b"s" * 32))
    if state == "empty":
        _prepare(db_path, lambda path: path.write_bytes(b""))
    with pytest.raises(StoreRefused, match=f"{state}.*--reset-database"):
        await Database(db_path, secret_path=secret).open()
    assert _exists(db_path) == (state == "empty")
    reset = Database(db_path, secret_path=secret, reset=True)
    await reset.open()
    try:
        await MachineStore(reset).insert_machine(MACHINE)
    finally:
        await reset.close()
    # From now on the new database is simply reopened.
    again = Database(db_path, secret_path=secret)
    await again.open()
    try:
        assert (await MachineStore(again).load_machines())[0] == [MACHINE]
    finally:
        await again.close()


async def test_a_first_start_without_a_secret_creates_the_database(db_path: Path) -> None:
    opened = Database(db_path, secret_path=db_path.parent / "secret.key")
    await opened.open()
    await opened.close()
    assert _exists(db_path)


async def test_damaged_pages_are_refused_and_reset_moves_them_aside(db_path: Path) -> None:
    opened = Database(db_path)
    await opened.open()
    for index in range(200):
        await AuthStore(opened).insert_user(user_row(f"user-{index:03}"))
    await opened.close()
    _damage_table(db_path, "user")
    with pytest.raises(StoreRefused, match="is damaged .*--reset-database"):
        await Database(db_path).open()
    reset = Database(db_path, reset=True)
    await reset.open()
    try:
        assert await AuthStore(reset).get_user(username="user-001") is None
    finally:
        await reset.close()
    aside = [name for name in _names(db_path.parent) if ".damaged-" in name]
    databases = [name for name in aside if not name.endswith(("-wal", "-shm"))]
    assert len(databases) == 1
    assert databases[0].startswith(f"{db_path.name}.damaged-")


# one commit for calls queued together


async def test_writes_queued_together_share_one_commit(
    database: Database, machine_store: MachineStore
) -> None:
    commits: list[str] = []
    await database.write(lambda c: c.set_trace_callback(_record_commits(commits)))
    rows = [
        MachineRow(f"pk-{i}", f"Printer {i}", "label-printer", "virtual", True) for i in range(50)
    ]
    await asyncio.gather(*(machine_store.insert_machine(row) for row in rows))
    await database.write(lambda c: c.set_trace_callback(None))
    assert len((await machine_store.load_machines())[0]) == 50
    # The first call may start alone; the rest wait behind it and go together.
    assert len(commits) <= 5


async def test_only_batches_with_a_durable_call_commit_with_full_sync(
    database: Database, machine_store: MachineStore
) -> None:
    def level(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    assert await database.write(level, durable=False) == 1  # NORMAL: no fsync of its own
    assert await database.write(level) == 2  # FULL
    statements: list[str] = []
    await database.write(lambda c: c.set_trace_callback(statements.append))
    await machine_store.insert_machine(MACHINE)  # an answer says it is saved
    await machine_store.save_states(
        [StateRow(MACHINE.pk, 100, "", "[]", "2024-01-01T00:00:00+00:00")]
    )
    await machine_store.save_setting(MACHINE.pk, "D", "DPI", "300")
    await database.write(lambda c: c.set_trace_callback(None))
    assert [s for s in statements if s.startswith("PRAGMA synchronous")] == [
        "PRAGMA synchronous = NORMAL",  # the last known status
        "PRAGMA synchronous = FULL",  # the setting
    ]


async def test_a_failing_call_in_a_batch_undoes_only_its_own_writes(
    machine_store: MachineStore,
) -> None:
    await machine_store.insert_machine(MACHINE)
    duplicate = MachineRow("other-pk", MACHINE.name, "label-printer", "virtual", True)
    good = [
        MachineRow(f"pk-{i}", f"Printer {i}", "label-printer", "virtual", True) for i in range(5)
    ]
    results = await asyncio.gather(
        *(machine_store.insert_machine(row) for row in [*good[:2], duplicate, *good[2:]]),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [
        type(None),
        type(None),
        DuplicateMachineName,
        type(None),
        type(None),
        type(None),
    ]
    assert {m.pk for m in (await machine_store.load_machines())[0]} == {MACHINE.pk} | {
        r.pk for r in good
    }


async def test_reads_do_not_wait_for_a_write_stuck_on_the_disk(
    database: Database, machine_store: MachineStore, auth_store: AuthStore
) -> None:
    await auth_store.insert_user(user_row("alice"))
    busy, release = threading.Event(), threading.Event()
    stuck = asyncio.create_task(database.write(lambda _c: hold(busy, release)))
    await asyncio.to_thread(busy.wait, 5)
    try:
        # The writer thread is held (as by an fsync that takes seconds); lookups still answer.
        found = await asyncio.wait_for(auth_store.get_user(username="alice"), 5)
        machines = await asyncio.wait_for(machine_store.load_machines(), 5)
    finally:
        release.set()
        await stuck
    assert found is not None
    assert machines == ([], [], [])


async def test_a_call_not_started_when_its_caller_gives_up_never_runs(
    database: Database, machine_store: MachineStore
) -> None:
    database.call_timeout = 0.2
    busy, release = threading.Event(), threading.Event()
    blocker = asyncio.create_task(database.write(lambda _c: hold(busy, release)))
    await asyncio.to_thread(busy.wait, 5)
    with pytest.raises(StoreError, match="nothing was saved"):
        await machine_store.insert_machine(MACHINE)
    release.set()
    with pytest.raises(StoreError):
        await blocker  # it too waited longer than the timeout
    assert (await machine_store.load_machines())[0] == []


async def test_a_write_committed_after_its_caller_gave_up_is_handed_to_on_late(
    database: Database, machine_store: MachineStore
) -> None:
    database.call_timeout = 0.2
    busy, release = threading.Event(), threading.Event()
    late: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def slow_insert(conn: sqlite3.Connection) -> str:
        hold(busy, release)
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('a', 'A', 't', 'd')"
        )
        return "a"

    with pytest.raises(StoreError, match="may still be saved"):
        await database.write(slow_insert, on_late=late.set_result)
    release.set()
    assert await asyncio.wait_for(late, 5) == "a"
    assert [m.pk for m in (await machine_store.load_machines())[0]] == ["a"]


# storage faults


async def test_a_full_disk_is_a_clear_fault_until_a_write_succeeds(
    database: Database, machine_store: MachineStore
) -> None:
    await machine_store.insert_machine(MACHINE)
    pages = await database.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await database.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    big = "x" * 50_000
    with pytest.raises(StorageFault) as info:
        await machine_store.save_setting(MACHINE.pk, "D", "BIG", big)
    assert info.value.disk_full
    assert "disk is full" in str(info.value)
    assert database.fault is not None
    assert "disk is full" in database.fault
    assert (await machine_store.load_machines())[1] == []
    await database.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages * 100}"))
    await machine_store.save_setting(MACHINE.pk, "D", "BIG", big)
    assert database.fault is None


# the clock


async def test_a_clock_behind_the_newest_stored_date_is_noticed(
    database: Database, auth_store: AuthStore
) -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert await clock_behind(database, now) is None
    await auth_store.insert_user(user_row("alice"))  # joined 2024-01-01
    assert await clock_behind(database, now) is None
    user = await auth_store.insert_user(user_row("bob"))
    later = TokenRow(0, user.pk, "t", "ab" * 32, "inv-", "2028-01-01", False, "2027-01-01", None)
    await auth_store.insert_token(later)
    assert await clock_behind(database, now) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert await clock_behind(database, dt.datetime(2027, 1, 1, 0, 1, tzinfo=dt.UTC)) is None


def _prepare(path: Path, make: Callable[[Path], object]) -> None:
    """Put a file where the store will look, before it opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)


def _set_user_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {version}")


def _contents(path: Path) -> bytes:
    return path.read_bytes()


def _exists(path: Path) -> bool:
    return path.exists()


def _names(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir()]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(db_path: Path) -> dict[str, int]:
    modes = {"dir": stat.S_IMODE(db_path.parent.stat().st_mode)}
    for suffix in ("", "-wal", "-shm"):
        modes[suffix] = stat.S_IMODE(Path(f"{db_path}{suffix}").stat().st_mode)
    return modes


def _damage_table(path: Path, table: str) -> None:
    """Overwrite the middle of a table's root page, as a failing SD card would."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    with path.open("r+b") as file:
        file.seek((root[0] - 1) * page_size + 8)
        file.write(b"\xff" * (page_size - 16))


def _record_commits(commits: list[str]) -> Callable[[str], None]:
    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            commits.append(statement)

    return trace
