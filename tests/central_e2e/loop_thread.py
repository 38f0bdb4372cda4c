"""An asyncio event loop on a thread of its own, for the parts of a synchronous test that serve.

The end-to-end tests are synchronous (they drive subprocesses and HTTP servers in other
processes); the printer simulator and the TCP proxy are asyncio servers, so they run here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
# One call into the loop: starting a server or reading its state takes milliseconds.
CALL_TIMEOUT_S = 10.0


class LoopThread:
    """Runs coroutines and callbacks on a private loop; `call` waits for their result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run a plain function on the loop's thread (so it never races the servers there)."""

        async def called() -> T:
            return function()

        return self.run(called(), timeout)

    def close(self) -> None:
        """Cancel what is left, stop the loop and join its thread."""

        async def cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        self.loop.close()


@contextmanager
def loop_thread() -> Iterator[LoopThread]:
    """A LoopThread closed on exit."""
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()
