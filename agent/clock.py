"""Time as the queue sees it: the wall clock for what users read, a monotonic clock for waiting.

A Raspberry Pi has no real-time clock: it boots with an old wall time that NTP later steps by
hours or days. Deadlines therefore run on the monotonic clock; the wall clock only stamps
records. The queue also waits through its clock (backoff, expiry, the stall watchdog, pruning),
so tests give it a clock whose time they move instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Where the queue reads the time and waits for it to pass."""

    def now(self) -> dt.datetime:
        """The wall clock, in UTC; it may jump."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on `monotonic()`."""
        ...


class SystemClock:
    """The host's clocks."""

    def now(self) -> dt.datetime:
        """The wall clock, in UTC."""
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)` (with `monotonic`, this is also a driver's `Clock`)."""
        await asyncio.sleep(seconds)


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set, at most `seconds` on `clock`; True if it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Not awaited: awaiting them could swallow a cancellation of the caller. Both end at
        # the next turn of the loop.
        waiter.cancel()
        sleeper.cancel()
    return event.is_set()
