"""What the storage layer raises: its own errors, never sqlite3's.

`StoreError` and its kinds mean the database could not do the work (closed, too slow, refused at
start, a failing disk). A `Conflict` means the work itself was refused because it would duplicate
something that must be unique; nothing of it was saved.
"""

from __future__ import annotations

import sqlite3

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


class Conflict(Exception):
    """A write would duplicate something unique; nothing of it was saved."""


class DuplicateMachineName(Conflict):
    """Another machine already has this name."""


class DuplicateUsername(Conflict):
    """Another user already has this username."""


class DuplicateIdempotencyKey(Conflict):
    """The machine already accepted a job under this idempotency key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def violates_unique(err: sqlite3.IntegrityError, columns: str) -> bool:
    """The UNIQUE constraint on `columns` ("table.a, table.b", as SQLite names them) failed."""
    return (
        getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_CONSTRAINT_UNIQUE
        and str(err) == f"UNIQUE constraint failed: {columns}"
    )


def as_fault(err: BaseException) -> StorageFault | None:
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


def needs_a_person(err: BaseException) -> bool:
    """Read-only files and missing permissions do not go away by starting again."""
    if isinstance(err, PermissionError):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM)


def reason(err: BaseException) -> str:
    """The error as a person should read it: a storage fault in plain words."""
    fault = as_fault(err)
    return str(fault) if fault is not None else str(err)
