"""The transport contract: one byte pipe to a printer, its typed errors and a shared base class."""

from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)

# A printer busy feeding, cutting or peeling stops taking input for a few seconds; 10 s in which
# not one byte is accepted means it stopped reading (cover open, waiting for the label to be taken).
WRITE_TIMEOUT = 10.0
# Writes go out in pieces this big so the write timeout measures progress, not the job's size:
# at the slowest link we support (9600 baud, ~960 B/s) a piece still moves within the timeout.
WRITE_CHUNK = 4096
# Reads ask the device for this much at once; a multiple of every USB bulk packet size (64/512),
# so a bulk IN transfer never overflows, and more than any status reply.
READ_CHUNK = 4096
# Closing waits this long for buffered output and kernel teardown, then gives up on the handle.
CLOSE_TIMEOUT = 2.0


class TransportError(Exception):
    """An I/O failure talking to a printer; the message is shown to the user as it is."""


class TransportTimeout(TransportError):
    """No byte arrived (read) or was accepted (write, open) within the timeout."""


class TransportClosed(TransportError):
    """The printer closed the connection, or the device went away."""


class ConnectionUriError(ValueError):
    """A `CONNECTION` setting that cannot be understood; the message says what to write instead."""


@runtime_checkable
class Transport(Protocol):
    """An async byte pipe to one printer; every method has a bounded wait."""

    @property
    def name(self) -> str:
        """The connection as a URI, for messages and logs."""
        ...

    @property
    def is_open(self) -> bool:
        """True while open and not known to be dead (a TCP peer that hung up makes it False)."""
        ...

    async def open(self) -> None:
        """Connect or open the device; raise `TransportError` (`TransportTimeout`) if it fails."""
        ...

    async def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        """Send all of `data`; `TransportTimeout` if the printer accepts nothing for `timeout` s."""
        ...

    async def read(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        """Return 1..n bytes as soon as any are there; `TransportTimeout` if none come in time."""
        ...

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the input; the next `read` returns them first."""
        ...

    async def close(self) -> None:
        """Release the connection; idempotent, never raises."""
        ...


class BaseTransport(abc.ABC):
    """Open/closed bookkeeping, chunked writes and the push-back buffer shared by all transports."""

    write_chunk = WRITE_CHUNK

    def __init__(self) -> None:
        self._pending = bytearray()
        self._is_open = False

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    def is_open(self) -> bool:
        """True between a successful `open()` and `close()`."""
        return self._is_open

    async def open(self) -> None:
        """Open the transport; a no-op if it is open already."""
        if self._is_open:
            return
        self._pending.clear()
        await self._open()
        self._is_open = True
        log.debug("transport_opened", connection=self.name)

    async def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        """Send all of `data` in chunks; each chunk must make progress within `timeout`."""
        self._check_open()
        view = memoryview(data)
        for start in range(0, len(view), self.write_chunk):
            await self._write_chunk(view[start : start + self.write_chunk], timeout)

    async def read(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        """Return 1..n bytes, pushed-back bytes first; `TransportTimeout` if none arrive in time."""
        if n < 1:
            raise ValueError(f"read size must be at least 1, got {n}")
        self._check_open()
        if not self._pending:
            self._pending += await self._read_some(max(n, READ_CHUNK), timeout)
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the input."""
        self._pending[:0] = data

    async def close(self) -> None:
        """Close once; errors while closing are logged, never raised."""
        if not self._is_open:
            return
        self._is_open = False
        self._pending.clear()
        try:
            await self._close()
        except Exception as err:  # noqa: BLE001 - close must never raise; the handle is gone anyway
            log.debug("transport_close_failed", connection=self.name, error=str(err))
        else:
            log.debug("transport_closed", connection=self.name)

    def _check_open(self) -> None:
        if not self._is_open:
            raise TransportClosed(f"{self.name} is not open")

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _write_chunk(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        """Send the whole chunk; `TransportTimeout` if nothing is accepted for `timeout` s."""

    @abc.abstractmethod
    async def _read_some(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        """Return 1..n bytes from the device; `TransportTimeout` if none arrive in time."""

    @abc.abstractmethod
    async def _close(self) -> None: ...
