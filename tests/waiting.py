"""Waiting in tests: for a condition, within a deadline; never for a fixed time.

`wait_until` returns as soon as its condition holds, so a test is as fast as the code under
test, and a loaded machine only makes it slower, not wrong; the deadline turns a hang into a
failure that names what never happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# How often a condition is checked again: short beside every deadline, long beside a check.
POLL_INTERVAL_S = 0.005
DEFAULT_TIMEOUT_S = 10.0
# Enough turns of the loop for a task created now to run until it waits on something
# (a lock, an event, I/O): each await of a ready future costs the task one turn.
_SETTLE_TURNS = 50


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "",
) -> None:
    """Return once `condition()` (a function, or a coroutine function) is true; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or _name_of(condition)}")
        await asyncio.sleep(POLL_INTERVAL_S)


def wait_until_blocking(
    condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT_S, what: str = ""
) -> None:
    """`wait_until` for tests without an event loop (processes, threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or _name_of(condition)}")
        time.sleep(POLL_INTERVAL_S)


async def settle() -> None:
    """Let every task that can run do so until it waits on something; no wall time passes."""
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)


def _name_of(condition: Callable[..., object]) -> str:
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    return f"the condition at {code.co_filename.rpartition('/')[2]}:{code.co_firstlineno}"
