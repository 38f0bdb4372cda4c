"""Fixtures and rows for the storage tests: a real SQLite file in a temporary directory.

Test modules import the fixtures they use by name.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.storage.auth import AuthStore, TokenRow, UserRow
from agent.storage.database import Database
from agent.storage.jobs import QUEUED, JobRow
from agent.storage.machines import MachineRow, MachineStore

MACHINE = MachineRow(
    "0b6f3c52-5c1e-4b8e-9d55-3f1a2a9c7e01", "Desk", "label-printer", "virtual", True
)
# A test waits this long at most for something it holds to be reached; only a failure waits it out.
HOLD_DEADLINE_S = 5.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "inventree-edge.sqlite3"


@pytest.fixture
async def database(db_path: Path) -> AsyncIterator[Database]:
    opened = Database(db_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def machine_store(database: Database) -> MachineStore:
    return MachineStore(database)


@pytest.fixture
def auth_store(database: Database) -> AuthStore:
    return AuthStore(database)


def user_row(username: str) -> UserRow:
    return UserRow(0, username, "scrypt$hash", False, False, True, "view", "", "", "", "2024-01-01")


def token_row(user: int, key_hash: str) -> TokenRow:
    return TokenRow(0, user, "label", key_hash, "inv-...", "2099-01-01", False, "2024-01-01", None)


def job_row(machine: str = MACHINE.pk, **fields: object) -> JobRow:
    """A queued job of 3 copies of one page, with `fields` changed."""
    row = JobRow(
        pk=str(uuid.uuid4()),
        seq=0,
        machine=machine,
        status=QUEUED,
        copies=3,
        pages=1,
        progress=0,
        attempts=0,
        interruptions=0,
        errors=(),
        warnings=(),
        content_type="application/pdf",
        size=4,
        options={},
        idempotency_key=None,
        created="2026-05-01T00:00:00+00:00",
        started=None,
        finished=None,
        expires="2026-05-02T00:00:00+00:00",
        error_count=0,
    )
    return replace(row, **fields)  # type: ignore[arg-type]


def hold(busy: threading.Event, release: threading.Event) -> None:
    """On the writer thread: say it is held, then wait to be released."""
    busy.set()
    release.wait(HOLD_DEADLINE_S)
