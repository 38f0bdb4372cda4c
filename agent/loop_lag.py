"""How late the event loop runs: a task sleeps a fixed interval and measures how much longer it took.

A late wake-up means something held the loop (blocking I/O, a long computation): every request,
poll and print waits that long too. The health answer and the metrics show the last measurement
and the worst of the last minute.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from agent.tasks import TaskSet

# Often enough to see a stall of a fraction of a second, rarely enough to cost nothing.
INTERVAL_S = 0.5
# The worst lag is remembered this long.
WINDOW_S = 60.0


class LoopLag:
    """Measures the event loop's lateness while started."""

    def __init__(self, interval: float = INTERVAL_S, window: float = WINDOW_S) -> None:
        self.interval = interval
        self.window = window
        self.last = 0.0
        # (monotonic time, lag) of the measurements within the window; bounded by window/interval.
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window / interval) + 1)
        self._tasks = TaskSet("loop-lag")

    async def start(self) -> None:
        """Start measuring."""
        self._tasks.create(self._measure(), name="measure")

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, not an I/O wait
        """Stop measuring."""
        await self._tasks.close(timeout)

    @property
    def worst(self) -> float:
        """The largest lag measured within the window (seconds)."""
        cutoff = time.monotonic() - self.window
        return max((lag for at, lag in self._samples if at >= cutoff), default=0.0)

    def record(self, lag: float) -> None:
        """Keep one measurement."""
        self.last = lag
        self._samples.append((time.monotonic(), lag))

    async def _measure(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.record(max(time.monotonic() - before - self.interval, 0.0))
