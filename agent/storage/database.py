"""The database core: open and close, writes on the writer thread, reads on their own thread.

Writes (`Database.write`) go to the `Writer`: one connection on one thread, calls queued together
share one commit. Reads (`Database.read`) run on a second thread with their own read-only
connection: in WAL mode they see the last commit while the writer holds its transaction or waits
for an fsync, so a lookup, a listing or a count never queues behind a write. No call waits for
ever: each is bounded by `call_timeout` (a failing disk gives an error, not a hang).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from agent.storage.connection_thread import ConnectionThread
from agent.storage.errors import StoreError, StoreRefused, as_fault, needs_a_person, reason
from agent.storage.opening import open_reader, open_writer
from agent.storage.writer import Writer

T = TypeVar("T")

# A call (queued behind others on the writer thread) that takes longer means a failing disk: the
# caller gets an error instead of waiting for ever. An SD card commit takes tens of ms.
CALL_TIMEOUT_S = 30.0


class Database:
    """The agent's SQLite database. Open once, share, close at shutdown.

    With `secret_path`, a missing or empty database next to an existing secret is refused (the
    agent ran here before: its data is gone), unless `reset` allows starting afresh; `reset` also
    moves a damaged database aside instead of refusing it.
    """

    def __init__(
        self,
        path: Path,
        *,
        secret_path: Path | None = None,
        reset: bool = False,
        call_timeout: float = CALL_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.secret_path = secret_path
        self.reset = reset
        self.call_timeout = call_timeout
        self._writer: Writer | None = None
        self._writer_thread: ConnectionThread | None = None
        self._reader_thread: ConnectionThread | None = None

    @property
    def fault(self) -> str | None:
        """The last storage fault met by a write, until a write succeeds again (shown by the API)."""
        return None if self._writer is None else self._writer.fault

    async def open(self) -> None:
        """Create the data directory and database if needed, check it, bring the schema up to date."""
        writer_thread = self._writer_thread = ConnectionThread("store")
        reader_thread = self._reader_thread = ConnectionThread("store-read")
        connect = functools.partial(
            open_writer, self.path, secret_path=self.secret_path, reset=self.reset
        )
        try:
            writer_thread.conn = await self._bounded(writer_thread.run(connect))
            reader_thread.conn = await self._bounded(
                reader_thread.run(functools.partial(open_reader, self.path))
            )
        except StoreError:
            await self.close()
            raise
        except (OSError, sqlite3.Error, RuntimeError) as err:
            await self.close()
            message = f"cannot open database {self.path}: {reason(err)}"
            if needs_a_person(err):
                raise StoreRefused(message) from err
            raise StoreError(message) from err
        self._writer = Writer(writer_thread)

    async def close(self) -> None:
        """Close the connections and stop the store threads; later calls raise StoreError."""
        reader_thread, writer_thread = self._reader_thread, self._writer_thread
        self._reader_thread = self._writer_thread = self._writer = None
        for thread in (reader_thread, writer_thread):
            if thread is not None:
                await self._bounded(thread.close_connection())
                thread.shutdown()

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        on_late: Callable[[T], None] | None = None,
    ) -> T:
        """Run `fn(connection)` on the writer thread in a transaction; return after its commit.

        `durable=False` for writes whose loss in a power cut is harmless (see `agent.storage.writer`).
        A call that has not started when its caller gives up (timeout, cancellation) never runs;
        one that had started may still commit: then `on_late(result)` runs on the event loop, so
        the caller can act on what was saved after all.
        """
        writer = self._writer
        if writer is None:
            raise StoreError("the store is closed")
        return await writer.write(fn, durable=durable, on_late=on_late, timeout=self.call_timeout)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only `fn(connection)` on the reader thread; it sees the last commit."""
        thread = self._reader_thread
        if thread is None or thread.conn is None:
            raise StoreError("the store is closed")
        return await self._bounded(thread.run(_read_snapshot, thread, fn))

    async def _bounded(self, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.call_timeout):
                return await work
        except TimeoutError as err:
            raise StoreError(f"the database did not answer within {self.call_timeout:g} s") from err


def _read_snapshot(thread: ConnectionThread, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn = thread.conn
    if conn is None:
        raise StoreError("the store is closed")
    conn.execute("BEGIN")  # one snapshot for every statement of `fn`
    try:
        return fn(conn)
    except sqlite3.Error as err:
        fault = as_fault(err)
        if fault is None:
            raise
        raise fault from err
    finally:
        conn.execute("ROLLBACK")
