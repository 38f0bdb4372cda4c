"""Users, API tokens and login sessions in SQLite (passwords, keys and sessions hashed)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.storage.database import Database
from agent.storage.errors import DuplicateUsername, StoreError, violates_unique

T = TypeVar("T")

_USER_COLUMNS = (
    "pk, username, password_hash, is_superuser, is_staff, is_active, role, first_name, last_name, "
    "email, date_joined"
)
_TOKEN_COLUMNS = "pk, user, name, key_hash, key_hint, expiry, revoked, created, last_seen, salt"  # noqa: S105


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


class AuthStore:
    """The user aggregate (users with their tokens and sessions) over the agent's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # users

    async def get_user(
        self, *, pk: int | None = None, username: str | None = None
    ) -> UserRow | None:
        """One user by pk or by exact username."""
        column, value = ("pk", pk) if pk is not None else ("username", username)
        return await self.database.read(
            lambda conn: _one(
                conn,
                UserRow.from_row,
                f"SELECT {_USER_COLUMNS} FROM user WHERE {column} = ?",  # noqa: S608 - fixed names
                (value,),
            )
        )

    async def insert_user(self, row: UserRow) -> UserRow:
        """Add a user; raises DuplicateUsername when the name is taken. Returns it with its pk."""

        def insert(conn: sqlite3.Connection) -> UserRow:
            try:
                cursor = conn.execute(
                    "INSERT INTO user (username, password_hash, is_superuser, is_staff, is_active, "
                    "role, first_name, last_name, email, date_joined) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            except sqlite3.IntegrityError as err:
                if violates_unique(err, "user.username"):
                    raise DuplicateUsername(row.username) from err
                raise
            sql = f"SELECT {_USER_COLUMNS} FROM user WHERE pk = ?"  # noqa: S608 - fixed names
            return _inserted(_one(conn, UserRow.from_row, sql, (cursor.lastrowid,)))

        return await self.database.write(insert)

    # tokens

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
            sql = f"SELECT {_TOKEN_COLUMNS} FROM api_token WHERE pk = ?"  # noqa: S608 - fixed names
            return _inserted(_one(conn, TokenRow.from_row, sql, (cursor.lastrowid,)))

        return await self.database.write(insert)

    async def get_token(self, key_hash: str) -> TokenRow | None:
        """The token whose key hashes to `key_hash`."""
        return await self.database.read(
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
        return await self.database.read(
            lambda conn: _one(conn, TokenRow.from_row, sql, (user, name, today))
        )

    async def prune_tokens(self, before: str) -> int:
        """Forget tokens that expired, or were revoked, before a date; returns how many."""
        return await self.database.write(
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
        await self.database.write(
            lambda conn: conn.execute(
                "UPDATE api_token SET last_seen = ? WHERE pk = ?", (seen, pk)
            ),
            durable=False,
        )

    async def revoke_token(self, key_hash: str) -> None:
        """Make a token unusable."""
        await self.database.write(
            lambda conn: conn.execute(
                "UPDATE api_token SET revoked = 1 WHERE key_hash = ?", (key_hash,)
            )
        )

    # sessions

    async def insert_session(self, row: SessionRow) -> None:
        """Store a login session (hashed key)."""
        await self.database.write(
            lambda conn: conn.execute(
                "INSERT INTO session (key_hash, user, csrf_token, expires) VALUES (?, ?, ?, ?)",
                (row.key_hash, row.user, row.csrf_token, row.expires),
            )
        )

    async def get_session(self, key_hash: str) -> SessionRow | None:
        """The session whose key hashes to `key_hash`."""
        return await self.database.read(
            lambda conn: _one(
                conn,
                SessionRow,
                "SELECT key_hash, user, csrf_token, expires FROM session WHERE key_hash = ?",
                (key_hash,),
            )
        )

    async def delete_session(self, key_hash: str) -> None:
        """Log a session out."""
        await self.database.write(
            lambda conn: conn.execute("DELETE FROM session WHERE key_hash = ?", (key_hash,))
        )

    async def delete_expired_sessions(self, now: str) -> None:
        """Forget sessions past their expiry."""
        await self.database.write(
            lambda conn: conn.execute("DELETE FROM session WHERE expires < ?", (now,)),
            durable=False,
        )


def _one(
    conn: sqlite3.Connection, cls: Callable[..., T], sql: str, params: tuple[Any, ...]
) -> T | None:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        return None
    return cls(*row)


def _inserted(row: T | None) -> T:
    """The row just inserted in this transaction, read back."""
    if row is None:
        raise StoreError("a row inserted a moment ago cannot be read back")
    return row
