"""The auth store on a real SQLite file: users, tokens, sessions, username conflicts."""

from __future__ import annotations

import sqlite3

import pytest

from agent.storage.auth import AuthStore, SessionRow
from agent.storage.database import Database
from agent.storage.errors import DuplicateUsername
from tests.storage_helpers import auth_store, database, db_path, token_row, user_row

__all__ = ["auth_store", "database", "db_path"]  # fixtures used by name


async def test_duplicate_usernames_are_refused(auth_store: AuthStore) -> None:
    await auth_store.insert_user(user_row("alice"))
    with pytest.raises(DuplicateUsername) as info:
        await auth_store.insert_user(user_row("alice"))
    assert not isinstance(info.value, sqlite3.Error)
    assert str(info.value) == "alice"
    assert await auth_store.get_user(username="alice") is not None


async def test_deleting_a_user_removes_tokens_and_sessions(
    database: Database, auth_store: AuthStore
) -> None:
    user = await auth_store.insert_user(user_row("alice"))
    await auth_store.insert_token(token_row(user.pk, "cd" * 32))
    await auth_store.insert_session(
        SessionRow("ef" * 32, user.pk, "x" * 32, "2099-01-01T00:00:00+00:00")
    )
    await database.write(lambda c: c.execute("DELETE FROM user WHERE pk = ?", (user.pk,)))
    assert await auth_store.get_token("cd" * 32) is None
    assert await auth_store.get_session("ef" * 32) is None
