"""Time as a driver sees it: a monotonic clock to pace and bound its confirm loops, and sleep.

The agent hands each driver a clock in its `DriverContext`; tests hand one whose sleeps move it
on at once, so a loop that waits 20 s for a stalled printer runs in a few milliseconds. Waits for
bytes from a printer are bounded by the transport's timeouts on the event loop, not by this clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Where a driver reads the time and waits (the agent's `SystemClock` is one)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        ...


class MonotonicClock:
    """The host's monotonic clock and `asyncio.sleep`."""

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        await asyncio.sleep(seconds)
