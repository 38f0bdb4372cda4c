"""One SQLite connection owned by one thread (SQLite objects stay on the thread that uses them)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ConnectionThread:
    """A single-thread executor and the connection that only it uses; callers bound the waits."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the thread, after the work queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def submit(self, fn: Callable[[], object]) -> None:
        """Queue `fn` on the thread without waiting for it."""
        self._executor.submit(fn)

    async def close_connection(self) -> None:
        """Close the connection, after the work queued before."""
        if self.conn is not None:
            await self.run(self.conn.close)
            self.conn = None

    def shutdown(self) -> None:
        """Let the thread end once its queued work is done (nothing is left to wait for)."""
        self._executor.shutdown(wait=False)
