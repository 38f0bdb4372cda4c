"""A watchdog that notices when an event loop is blocked by work on its own thread.

A helper thread pings the loop with `call_soon_threadsafe` and waits for the ping to run. A late
ping alone proves nothing on a loaded host (the process may simply not have been scheduled), so a
stall counts as a block only by what the loop's own thread did during it:

- CPU time it spent (a regex or a parse on the loop); starvation costs it no CPU;
- or time it slept, outside the selector, in one place (a `time.sleep`, a lock held by another
  thread, blocking I/O): sampled from the kernel's thread state and the thread's Python frame.

Garbage collection on the loop thread is not counted: the test process's heap (hypothesis,
schemathesis, openapi-core) is far larger than the daemon's, so its collections say nothing
about the code under test.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import threading
import time
import traceback
from dataclasses import dataclass

# Ping the loop this often while it answers promptly.
PING_INTERVAL_S = 0.02
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A stall this long (wall clock) is worth sampling the loop thread's stack for.
SAMPLE_AFTER_S = 0.05


@dataclass(frozen=True, slots=True)
class Block:
    """One stall: loop-thread CPU and sleep in it, its wall-clock length, where the loop was."""

    cpu_s: float
    wall_s: float
    stack: str
    slept_s: float = 0.0

    def describe(self) -> str:
        """A readable account for a test failure."""
        return (
            f"event loop blocked: {self.cpu_s * 1000:.0f} ms of CPU and "
            f"{self.slept_s * 1000:.0f} ms asleep in one place on the loop thread "
            f"({self.wall_s * 1000:.0f} ms wall)\n{self.stack}"
        )


class LoopWatchdog:
    """Watch `loop` (whose thread must be the caller's) for blocks of `threshold_s` CPU or more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float = 0.1) -> None:
        self.loop = loop
        self.threshold_s = threshold_s
        self.blocks: list[Block] = []
        # Pings the loop has answered: a test waits for one before it blocks the loop.
        self.pings_answered = 0
        self._loop_thread = threading.get_ident()
        # Opened once and re-read: tests that count the process's open files see it stay put.
        self._stat_fd = os.open(f"/proc/self/task/{threading.get_native_id()}/stat", os.O_RDONLY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)
        self._gc_cpu_s = 0.0
        self._gc_started: float | None = None

    def start(self) -> None:
        """Begin watching."""
        gc.callbacks.append(self._on_gc)
        self._thread.start()

    def stop(self) -> list[Block]:
        """Stop watching; returns the blocks seen."""
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._on_gc)
        os.close(self._stat_fd)
        return self.blocks

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        if phase == "start":
            self._gc_started = _user_time()
        elif self._gc_started is not None:
            self._gc_cpu_s += _user_time() - self._gc_started
            self._gc_started = None

    def _run(self) -> None:
        while not self._stop.is_set():
            answered = threading.Event()
            wall_start = time.perf_counter()
            cpu_start = self._user_cpu_s() - self._gc_cpu_s
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop closed
                return
            stack = ""
            slept = longest_sleep = 0.0
            last: tuple[object, int] | None = None
            last_at = time.perf_counter()
            if not answered.wait(SAMPLE_AFTER_S):
                stack = self._loop_stack()
                while not answered.wait(PING_INTERVAL_S):
                    if self._stop.is_set() or self.loop.is_closed():
                        return
                    now = time.perf_counter()
                    place = self._sleeping_at()
                    if place is not None and place == last:
                        slept += now - last_at
                        longest_sleep = max(longest_sleep, slept)
                        stack = self._loop_stack() or stack
                    else:
                        slept = 0.0
                    last, last_at = place, now
            cpu = self._user_cpu_s() - self._gc_cpu_s - cpu_start
            if cpu >= self.threshold_s or longest_sleep >= self.threshold_s:
                wall = time.perf_counter() - wall_start
                self.blocks.append(Block(cpu, wall, stack, longest_sleep))
            self.pings_answered += 1
            self._stop.wait(PING_INTERVAL_S)

    def _stat_fields(self) -> list[str]:
        """The loop thread's /proc stat fields from the state (field 3) on."""
        try:
            text = os.pread(self._stat_fd, 4096, 0).decode()
        except OSError:
            return []
        return text.rpartition(")")[2].split()

    def _user_cpu_s(self) -> float:
        """User-mode CPU time of the loop thread.

        Kernel time is left out: page reclaim under memory pressure is charged to whichever
        thread faults, and says nothing about the code under test.
        """
        fields = self._stat_fields()
        return int(fields[11]) / _CLOCK_TICKS if len(fields) > 11 else 0.0

    def _sleeping_at(self) -> tuple[object, int] | None:
        """Where the loop thread sleeps outside the selector (frame, instruction), else None."""
        fields = self._stat_fields()
        if not fields or fields[0] not in ("S", "D"):
            return None
        frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001 - the only way in
        if frame is None or frame.f_code.co_filename.endswith("selectors.py"):
            return None
        return frame, frame.f_lasti

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001 - the only way in
        if frame is None:
            return ""
        return "".join(traceback.format_stack(frame, limit=12))


def _user_time() -> float:
    """User-mode CPU time of the calling thread."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_utime
