"""The suite's event-loop watchdog: it must catch a blocked loop and leave a waiting one alone."""

from __future__ import annotations

import asyncio
import gc
import resource
import threading
import time

import pytest

from tests.loop_watchdog import LoopWatchdog
from tests.waiting import wait_until


def _spin(seconds: float) -> None:
    """Burn user-mode CPU on the calling thread (what a catastrophic regex does)."""
    end = _user_time() + seconds
    while _user_time() < end:
        sum(i * i for i in range(20_000))


def _user_time() -> float:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_utime


@pytest.mark.allow_loop_block("this test blocks its loop to see the watchdog catch it")
async def test_cpu_work_on_the_loop_is_reported_with_its_stack() -> None:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold_s=0.1)
    watchdog.start()
    await wait_until(lambda: watchdog.pings_answered > 0)
    _spin(0.3)
    await wait_until(lambda: len(watchdog.blocks) == 1)
    blocks = await asyncio.to_thread(watchdog.stop)
    assert len(blocks) == 1
    assert blocks[0].cpu_s >= 0.25
    assert "_spin" in blocks[0].stack


async def test_work_in_a_thread_and_waiting_are_not_blocks() -> None:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold_s=0.1)
    watchdog.start()
    await asyncio.to_thread(_spin, 0.3)
    await asyncio.sleep(0.2)  # waiting on the loop: what is under test
    for _ in range(20):  # many short callbacks are not a block either
        _spin(0.005)
        await asyncio.sleep(0)
    assert await asyncio.to_thread(watchdog.stop) == []


async def test_garbage_collection_is_not_counted() -> None:
    junk = await asyncio.to_thread(lambda: [[index] for index in range(300_000)])
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold_s=0.1)
    watchdog.start()
    await wait_until(lambda: watchdog.pings_answered > 0)
    for _ in range(5):
        gc.collect()  # on the loop, with a large heap
    assert await asyncio.to_thread(watchdog.stop) == []
    del junk


@pytest.mark.allow_loop_block("this test blocks its loop to see the watchdog catch it")
async def test_sleeping_or_waiting_for_a_lock_on_the_loop_is_reported() -> None:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold_s=0.1)
    watchdog.start()
    await wait_until(lambda: watchdog.pings_answered > 0)
    time.sleep(0.3)  # noqa: ASYNC251 - the block under test
    await wait_until(lambda: len(watchdog.blocks) == 1)
    lock = threading.Lock()
    lock.acquire()
    threading.Timer(0.3, lock.release).start()
    with lock:  # waits on the loop for another thread
        pass
    await wait_until(lambda: len(watchdog.blocks) == 2)
    blocks = await asyncio.to_thread(watchdog.stop)
    assert len(blocks) == 2
    assert all(block.slept_s >= 0.15 for block in blocks)
    assert "time.sleep" in blocks[0].stack
    assert "with lock" in blocks[1].stack
