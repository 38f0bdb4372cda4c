"""Time as the queue sees it: the wall clock for what users read, a monotonic clock for waiting.

A Raspberry Pi has no real-time clock: it boots with an old wall time that NTP later steps by
hours or days. Deadlines therefore run on the monotonic clock; the wall clock only stamps
records. Tests give the queue a clock whose wall time they can step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Where the queue reads the time."""

    def now(self) -> dt.datetime:
        """The wall clock, in UTC; it may jump."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (only differences mean anything)."""
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
