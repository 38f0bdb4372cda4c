"""A clock for the print queue whose time a test moves on instead of waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable


class SteppableClock:
    """The host's clocks plus whatever the test adds.

    Time passes as usual, so printers, polls and HTTP behave as they do in production; `advance`
    skips time on both clocks at once and wakes every `sleep` it ends; `wall_offset` moves only
    the wall clock (a host that booted with an old date, then NTP).
    """

    def __init__(self) -> None:
        self.wall_offset = dt.timedelta()
        self.skipped = 0.0
        # Each sleep in progress: the future `advance` sets, and the seconds it had left then.
        self._sleepers: dict[asyncio.Future[None], float] = {}
        self._changed = asyncio.Event()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.wall_offset + dt.timedelta(seconds=self.skipped)

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    async def sleep(self, seconds: float) -> None:
        deadline = self.monotonic() + seconds
        loop = asyncio.get_running_loop()
        asked = seconds
        while (left := deadline - self.monotonic()) > 0:
            woken: asyncio.Future[None] = loop.create_future()
            self._sleepers[woken] = asked
            self._changed.set()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await woken
            finally:
                self._sleepers.pop(woken, None)
            asked = deadline - self.monotonic()

    def advance(self, seconds: float) -> None:
        """Skip `seconds` on both clocks; sleeps that end within them return now."""
        self.skipped += seconds
        # Woken sleeps are forgotten now: one that must go on registers again when it runs.
        woken, self._sleepers = self._sleepers, {}
        for future in woken:
            if not future.done():
                future.set_result(None)

    async def sleeping(
        self, seconds: float | Callable[[float], bool], timeout: float = 10.0
    ) -> None:
        """Wait (at most `timeout`) until some task sleeps for `seconds`.

        That is what it asked for, or what was left when `advance` woke it too early.
        `seconds` may be a test of those seconds. Then `advance` is sure to wake it.
        """
        wanted = seconds if callable(seconds) else lambda asked: asked == seconds
        async with asyncio.timeout(timeout):
            while not any(wanted(asked) for asked in self._sleepers.values()):
                self._changed.clear()
                await self._changed.wait()
