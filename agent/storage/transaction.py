"""Transactions and savepoints on a connection in autocommit mode (transactions are explicit)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: the write lock is taken at the start, not at the first write."""
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


def run_in_savepoint(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> tuple[bool, Any]:
    """One call of a batch: its failure undoes its own changes only. (ok, result or error)."""
    conn.execute("SAVEPOINT store_call")
    try:
        value = fn(conn)
    except Exception as err:  # noqa: BLE001 - handed to the caller
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O error)
        conn.execute("ROLLBACK TO store_call")
        conn.execute("RELEASE store_call")
        return False, err
    conn.execute("RELEASE store_call")
    return True, value
