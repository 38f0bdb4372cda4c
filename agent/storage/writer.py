"""The writer: every write runs on one thread, and writes queued together share one commit.

The thread takes all calls waiting at that moment and runs them in one transaction, each in its
own savepoint (a call that fails undoes only its own writes), with one COMMIT: a burst of writes
costs one fsync. A call is `durable` when its caller promises something once it returns (a job
accepted, a job complete); a batch with a durable call commits with synchronous=FULL. Other writes
(progress, last status, a token's last use) commit with synchronous=NORMAL: in WAL mode they
survive a crash of the process, and after a power cut at worst they are lost together with the WAL
frames behind the last fsync, which the next FULL commit covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.storage.connection_thread import ConnectionThread
from agent.storage.errors import StorageFault, StoreError, as_fault
from agent.storage.transaction import run_in_savepoint, transaction

T = TypeVar("T")

_WAITING, _RUNNING, _ABANDONED = range(3)


@dataclass(slots=True, eq=False)
class _Call:
    """One queued call; `state` moves under the writer's lock."""

    fn: Callable[[sqlite3.Connection], Any]
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    on_late: Callable[[Any], None] | None
    state: int = _WAITING
    gave_up: bool = False


class Writer:
    """Group commit over the connection of one `ConnectionThread`."""

    def __init__(self, thread: ConnectionThread) -> None:
        # The last storage fault met by a write, until a write succeeds again.
        self.fault: str | None = None
        self._thread = thread
        self._lock = threading.Lock()
        self._pending: list[_Call] = []
        self._synchronous_full = True

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool,
        on_late: Callable[[T], None] | None,
        timeout: float,  # noqa: ASYNC109 - on time-out, it tells whether the call had started
    ) -> T:
        """Queue `fn(connection)` and return its result after its commit.

        A call that has not started when its caller gives up (timeout, cancellation) never runs;
        one that had started may still commit: then `on_late(result)` runs on the event loop.
        """
        loop = asyncio.get_running_loop()
        call = _Call(fn, durable, loop, loop.create_future(), on_late)
        with self._lock:
            self._pending.append(call)
        self._thread.submit(self._drain)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(call.future)
        except TimeoutError as err:
            started = self._give_up(call)
            detail = "it may still be saved" if started else "nothing was saved"
            raise StoreError(
                f"the database did not answer within {timeout:g} s ({detail})"
            ) from err
        except asyncio.CancelledError:
            self._give_up(call)
            raise

    def _drain(self) -> None:
        """On the writer thread: run every waiting call in one transaction, one commit for all."""
        with self._lock:
            batch = [call for call in self._pending if call.state == _WAITING]
            self._pending.clear()
            for call in batch:
                call.state = _RUNNING
        if not batch:
            return
        conn = self._thread.conn
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
            with transaction(conn):
                for call in batch:
                    results.append(run_in_savepoint(conn, call.fn))
        except Exception as err:  # noqa: BLE001 - every caller gets the failure
            fault = as_fault(err)
            if fault is not None:
                self.fault = str(fault)
            results = [(False, fault or err)] * len(batch)
        else:
            if conn.total_changes != changes:
                self.fault = None
            results = [
                (ok, (as_fault(value) or value) if not ok else value) for ok, value in results
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
