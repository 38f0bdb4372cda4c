"""Blocking calls that may hang (opening a port, closing a tty): daemon threads, deadlines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

from drivers.transport.base import TransportTimeout

log = structlog.get_logger(__name__)

T = TypeVar("T")
A = TypeVar("A")


async def run_in_thread(
    func: Callable[[], T],
    *,
    deadline: float,
    what: str,
    discard: Callable[[T], object] | None = None,
) -> T:
    """Run `func` in a daemon thread; `TransportTimeout` after `deadline` s, late results discarded.

    A daemon thread, not the loop's executor: a driver stuck in the kernel must not keep the
    daemon from exiting. A result that arrives after we gave up (an opened port) is passed to
    `discard` in a thread, so nothing leaks.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def drop(result: T) -> None:
        if discard is None:
            return
        try:
            discard(result)
        except Exception as err:  # noqa: BLE001 - nobody is left to tell; the handle is lost
            log.debug("late_result_discard_failed", what=what, error=str(err))

    def deliver(result: T) -> None:
        if future.done():
            _start(lambda: drop(result), what)
        else:
            future.set_result(result)

    def fail(err: Exception) -> None:
        if not future.done():
            future.set_exception(err)

    def worker() -> None:
        try:
            result = func()
        except Exception as err:  # noqa: BLE001 - handed to the awaiting coroutine
            _post(loop, fail, err)
        else:
            if not _post(loop, deliver, result):
                drop(result)

    _start(worker, what)
    try:
        async with asyncio.timeout(deadline):
            return await future
    except TimeoutError as err:
        raise TransportTimeout(f"{what} did not finish within {deadline:g} s") from err


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[A], None], arg: A) -> bool:
    try:
        loop.call_soon_threadsafe(callback, arg)
    except RuntimeError:  # the loop has closed; nobody is waiting any more
        return False
    return True


def _start(target: Callable[[], object], what: str) -> None:
    threading.Thread(target=target, name=f"transport: {what}", daemon=True).start()
