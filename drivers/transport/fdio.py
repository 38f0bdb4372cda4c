"""Reads and writes with timeouts on a non-blocking file descriptor (tty, pty, usblp, FIFO)."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import TypeVar

from drivers.transport.base import TransportClosed, TransportError, TransportTimeout

R = TypeVar("R")

# errno values that mean the device is gone: a pty whose other side closed, an unplugged
# USB-serial adapter or usblp printer, a FIFO without a reader.
_GONE = frozenset({errno.EIO, errno.ENODEV, errno.ENXIO, errno.EPIPE})


class FdStream:
    """Byte I/O on one fd: poll-driven for ttys and devices, thread-driven for regular files.

    Ttys and character devices get the event loop's poller (`add_reader`/`add_writer`): no thread
    per call, instant cancellation and no thread left blocked in the kernel when a printer stalls.
    Regular files cannot be polled (epoll refuses them) but never block for long, so they use a
    worker thread instead.
    """

    def __init__(self, fd: int, name: str, *, pollable: bool = True) -> None:
        self._fd = fd
        self._name = name
        self._pollable = pollable
        self._waiters: set[asyncio.Future[None]] = set()

    async def read(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        """Return 1..n bytes; `TransportTimeout` if none arrive within `timeout` s."""
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                if not self._pollable:
                    data = await asyncio.to_thread(self._syscall, os.read, self._fd, n)
                    if not data:
                        raise TransportTimeout(f"{self._name}: no data (end of file)")
                    return data
                polled = False
                while True:
                    try:
                        data = self._syscall(os.read, self._fd, n)
                    except BlockingIOError:
                        data = b""
                    if data:
                        return data
                    # A raw tty (VMIN=0) reads b"" when empty, so b"" only means end of file
                    # when poll has just said the fd is readable.
                    if polled:
                        raise TransportClosed(f"{self._name}: the device went away (end of file)")
                    await self._wait(writable=False)
                    polled = True
        except TimeoutError as err:
            raise TransportTimeout(f"{self._name}: no data within {timeout:g} s") from err

    async def write(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        """Write all of `chunk`; `TransportTimeout` if no byte is accepted for `timeout` s."""
        while chunk:
            try:
                async with asyncio.timeout(timeout):
                    written = await self._write_some(chunk)
            except TimeoutError as err:
                raise TransportTimeout(
                    f"{self._name}: the printer accepted no data for {timeout:g} s"
                ) from err
            chunk = chunk[written:]

    def detach(self) -> None:
        """Stop polling the fd and fail pending reads/writes; call before closing the fd."""
        if self._pollable:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(TransportClosed(f"{self._name} was closed"))

    async def _write_some(self, chunk: memoryview) -> int:
        if not self._pollable:
            return await asyncio.to_thread(self._syscall, os.write, self._fd, chunk)
        while True:
            try:
                return self._syscall(os.write, self._fd, chunk)
            except BlockingIOError:
                await self._wait(writable=True)

    async def _wait(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._waiters.add(ready)
        if writable:
            loop.add_writer(self._fd, _wake, ready)
        else:
            loop.add_reader(self._fd, _wake, ready)
        try:
            await ready
        finally:
            self._waiters.discard(ready)
            if writable:
                loop.remove_writer(self._fd)
            else:
                loop.remove_reader(self._fd)

    def _syscall(self, call: Callable[..., R], *args: object) -> R:
        try:
            return call(*args)
        except BlockingIOError:
            raise
        except OSError as err:
            if err.errno in _GONE:
                raise TransportClosed(
                    f"{self._name}: the device went away ({err.strerror})"
                ) from err
            raise TransportError(f"{self._name}: {err.strerror or err}") from err


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
