"""Reads never wait for the writer: every read path answers while a write transaction is held open.

The writer thread is held inside its transaction (it has written, not committed) by an event, as
by an fsync that takes seconds. A read that queued behind the writer, or took the write lock, would
not answer until the event is set, which happens only after the reads: it fails at the deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from agent.storage.auth import AuthStore, SessionRow
from agent.storage.clock_check import clock_behind, newest_timestamp
from agent.storage.database import Database
from agent.storage.jobs import QUEUED, JobStore
from agent.storage.machines import MachineStore, StateRow
from tests.storage_helpers import (
    HOLD_DEADLINE_S,
    MACHINE,
    database,
    db_path,
    job_row,
    token_row,
    user_row,
)

__all__ = ["database", "db_path"]  # fixtures used by name

NOW = "2026-06-01T12:00:00+00:00"
KEY_HASH = "ab" * 32
SESSION_HASH = "cd" * 32
JOB = job_row(
    pk="7d0c1f5e-0000-4000-8000-000000000001", copies=1, idempotency_key="key-1", created=NOW
)


@dataclass(frozen=True)
class Stores:
    database: Database
    machines: MachineStore
    auth: AuthStore
    jobs: JobStore


Read = Callable[[Stores], Awaitable[object]]

READS: dict[str, Read] = {
    "MachineStore.load_machines": lambda s: s.machines.load_machines(),
    "AuthStore.get_user": lambda s: s.auth.get_user(username="alice"),
    "AuthStore.get_user (pk)": lambda s: s.auth.get_user(pk=1),
    "AuthStore.get_token": lambda s: s.auth.get_token(KEY_HASH),
    "AuthStore.reusable_token": lambda s: s.auth.reusable_token(1, "label", "2026-01-01"),
    "AuthStore.get_session": lambda s: s.auth.get_session(SESSION_HASH),
    "JobStore.get": lambda s: s.jobs.get(JOB.pk),
    "JobStore.get_by_key": lambda s: s.jobs.get_by_key(MACHINE.pk, "key-1"),
    "JobStore.find": lambda s: s.jobs.find(MACHINE.pk, QUEUED),
    "JobStore.page": lambda s: s.jobs.page(None, None, 25, 0),
    "JobStore.pending": lambda s: s.jobs.pending(),
    "JobStore.document": lambda s: s.jobs.document(JOB.pk),
    "newest_timestamp": lambda s: newest_timestamp(s.database),
    "clock_behind": lambda s: clock_behind(s.database, dt.datetime(2026, 6, 1, tzinfo=dt.UTC)),
}
# Every other public method of a store writes. A new method is added to one list or the other.
WRITES = {
    "MachineStore": {
        "insert_machine",
        "update_machine",
        "delete_machine",
        "save_setting",
        "apply_machine_config",
        "save_states",
    },
    "AuthStore": {
        "insert_user",
        "insert_token",
        "prune_tokens",
        "touch_token",
        "revoke_token",
        "insert_session",
        "delete_session",
        "delete_expired_sessions",
    },
    "JobStore": {
        "insert",
        "recover_interrupted",
        "mark_printing",
        "mark_written",
        "save_progress",
        "requeue",
        "finish",
        "shift_expiry",
        "cancel",
        "prune",
    },
}


@pytest.fixture
async def stores(database: Database) -> Stores:
    """A database with one of everything committed."""
    result = Stores(database, MachineStore(database), AuthStore(database), JobStore(database))
    await result.machines.insert_machine(MACHINE)
    await result.machines.save_setting(MACHINE.pk, "D", "DPI", "203")
    await result.machines.save_states([StateRow(MACHINE.pk, 100, "Ready", "[]", NOW)])
    user = await result.auth.insert_user(user_row("alice"))
    await result.auth.insert_token(replace(token_row(user.pk, KEY_HASH), salt="s"))
    await result.auth.insert_session(SessionRow(SESSION_HASH, user.pk, "x" * 32, NOW))
    await result.jobs.insert(JOB, b"%PDF")
    return result


def _write_everything_then_hold(
    busy: threading.Event, release: threading.Event
) -> Callable[[sqlite3.Connection], None]:
    """A write that changes what every read returns, then holds its transaction open."""

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('held', 'Held', 't', 'd')"
        )
        conn.execute("UPDATE machine_setting SET value = '600'")
        conn.execute("DELETE FROM api_token")
        conn.execute("DELETE FROM session")
        conn.execute("UPDATE user SET date_joined = '2099-01-01', email = 'held@example.com'")
        conn.execute("UPDATE job SET status = 'cancelled', progress = 1")
        conn.execute("UPDATE job_document SET data = x'00'")
        busy.set()
        release.wait(HOLD_DEADLINE_S)

    return write


@pytest.mark.parametrize("name", list(READS))
async def test_a_read_answers_while_a_write_transaction_is_held_open(
    stores: Stores, name: str
) -> None:
    read = READS[name]
    before = await read(stores)
    busy, release = threading.Event(), threading.Event()
    held = asyncio.create_task(stores.database.write(_write_everything_then_hold(busy, release)))
    try:
        assert await asyncio.to_thread(busy.wait, HOLD_DEADLINE_S)
        # The write lock is taken and the writer thread is busy: the read must not wait for either.
        during = await asyncio.wait_for(read(stores), HOLD_DEADLINE_S)
        assert not held.done()
    finally:
        release.set()
        await held
    assert during == before  # the last commit, not the write under way...
    assert await read(stores) != before  # ...which changes what every read returns once committed


def test_every_store_method_is_a_tested_read_or_a_write() -> None:
    for store in (MachineStore, AuthStore, JobStore):
        methods = {
            name
            for name, member in inspect.getmembers(store, inspect.iscoroutinefunction)
            if not name.startswith("_")
        }
        reads = {key.split(" ")[0].split(".")[1] for key in READS if key.startswith(store.__name__)}
        assert methods == reads | WRITES[store.__name__], store.__name__
