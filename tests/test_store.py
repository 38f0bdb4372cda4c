"""The SQLite store: schema migrations, durability settings, and what survives a reopen."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.migrations import MIGRATIONS
from agent.store import (
    MachineRow,
    SessionRow,
    StateRow,
    Store,
    StoreError,
    TokenRow,
    UserRow,
)

TABLES = {"machine", "machine_setting", "machine_state", "user", "api_token", "session"}
MACHINE = MachineRow(
    "0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e01", "Desk", "label-printer", "virtual", True
)
# A lock held by another process (the CLI) is released within this; the store must wait for it.
LOCK_RELEASE_S = 0.2


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "inventree-edge.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = Store(db_path)
    await opened.open()
    yield opened
    await opened.close()


def user_row(username: str) -> UserRow:
    return UserRow(0, username, "scrypt$hash", False, False, True, "view", "", "", "", "2024-01-01")


def token_row(user: int, key_hash: str) -> TokenRow:
    return TokenRow(0, user, "label", key_hash, "inv-...", "2099-01-01", False, "2024-01-01", None)


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


async def test_open_creates_directory_database_and_latest_schema(
    store: Store, db_path: Path
) -> None:
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= TABLES


async def test_wal_and_full_sync_so_a_returned_commit_is_on_disk(
    store: Store, db_path: Path
) -> None:
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert await store.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2
    assert await store.call(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0]) == 1


async def test_reopening_keeps_data_and_does_not_migrate_again(store: Store, db_path: Path) -> None:
    await store.insert_machine(MACHINE)
    setting = await store.save_setting(MACHINE.pk, "D", "DPI", "203")
    await store.save_states([StateRow(MACHINE.pk, 100, "Ready", "[]", "2024-01-01T00:00:00+00:00")])
    user = await store.insert_user(user_row("alice"))
    await store.insert_token(token_row(user.pk, "ab" * 32))
    await store.close()

    again = Store(db_path)
    await again.open()
    try:
        machines, settings, states = await again.load_machines()
        assert machines == [MACHINE]
        assert settings == [setting]
        assert [(s.status, s.status_text) for s in states] == [(100, "Ready")]
        assert await again.get_user(username="alice") == user
        token = await again.get_token("ab" * 32)
        assert token is not None
        assert token.user == user.pk
    finally:
        await again.close()
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_database_newer_than_the_agent_is_refused_untouched(db_path: Path) -> None:
    _prepare(db_path, lambda path: _set_user_version(path, len(MIGRATIONS) + 1))
    store = Store(db_path)
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert str(db_path) in message
    assert f"schema version {len(MIGRATIONS) + 1} is newer than this agent knows" in message
    with read_only(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    with pytest.raises(StoreError):  # refused means closed, not half open
        await store.load_machines()


async def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    _prepare(db_path, lambda path: path.write_bytes(b"this is not SQLite" * 100))
    with pytest.raises(StoreError, match="cannot open database"):
        await Store(db_path).open()


async def test_deleting_a_machine_removes_its_settings_and_state(store: Store) -> None:
    other = MachineRow(
        "0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e02", "Other", "label-printer", "virtual", True
    )
    await store.insert_machine(MACHINE)
    await store.insert_machine(other)
    await store.save_setting(MACHINE.pk, "D", "DPI", "203")
    await store.save_setting(other.pk, "D", "DPI", "300")
    await store.save_states([StateRow(MACHINE.pk, 100, "", "[]", "2024-01-01T00:00:00+00:00")])
    await store.delete_machine(MACHINE.pk)
    machines, settings, states = await store.load_machines()
    assert machines == [other]
    assert [(s.machine, s.value) for s in settings] == [(other.pk, "300")]
    assert states == []


async def test_updating_a_setting_keeps_its_pk(store: Store) -> None:
    await store.insert_machine(MACHINE)
    first = await store.save_setting(MACHINE.pk, "D", "DPI", "203")
    second = await store.save_setting(MACHINE.pk, "D", "DPI", "600")
    assert second.pk == first.pk
    assert second.value == "600"


async def test_duplicate_names_are_refused(store: Store) -> None:
    await store.insert_machine(MACHINE)
    with pytest.raises(sqlite3.IntegrityError):
        await store.insert_machine(
            MachineRow("0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e03", "Desk", "x", "y", True)
        )
    await store.insert_user(user_row("alice"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.insert_user(user_row("alice"))


async def test_deleting_a_user_removes_tokens_and_sessions(store: Store) -> None:
    user = await store.insert_user(user_row("alice"))
    await store.insert_token(token_row(user.pk, "cd" * 32))
    await store.insert_session(
        SessionRow("ef" * 32, user.pk, "x" * 32, "2099-01-01T00:00:00+00:00")
    )
    await store.call(lambda c: c.execute("DELETE FROM user WHERE pk = ?", (user.pk,)))
    assert await store.get_token("cd" * 32) is None
    assert await store.get_session("ef" * 32) is None


async def test_a_failed_call_rolls_back_the_whole_transaction(store: Store) -> None:
    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('a', 'A', 't', 'd')"
        )
        raise RuntimeError("crash between two writes")

    with pytest.raises(RuntimeError):
        await store.call(half_done)
    machines, _settings, _states = await store.load_machines()
    assert machines == []


async def test_writes_wait_for_a_lock_held_by_another_process(store: Store, db_path: Path) -> None:
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(LOCK_RELEASE_S, other.execute, "COMMIT")
        await store.insert_machine(MACHINE)
    finally:
        other.close()
    machines, _settings, _states = await store.load_machines()
    assert machines == [MACHINE]


async def test_a_closed_store_raises_store_error(db_path: Path) -> None:
    store = Store(db_path)
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load_machines()


def _prepare(path: Path, make: Callable[[Path], object]) -> None:
    """Put a file where the store will look, before it opens."""
    path.parent.mkdir(parents=True)
    make(path)


def _set_user_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
