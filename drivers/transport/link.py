"""A machine's connection to its printer: reconnects with capped exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

import structlog

from drivers.transport.base import Transport, TransportClosed, TransportError

log = structlog.get_logger(__name__)

# First retry after 1 s: a printer that was just switched on or replugged is back within seconds.
BACKOFF_BASE = 1.0
# Never wait longer than a minute: a connect attempt is cheap, and a printer that comes back
# should be found before anyone walks over to check it.
BACKOFF_CAP = 60.0
# Up to +20 % random delay, so printers that went down together (power cut) are not all
# retried in the same instant.
BACKOFF_JITTER = 0.2
# Past 2**16 times the base any sane cap is reached; stopping the exponent there keeps
# `base * 2**n` from overflowing a float after days of failures.
_MAX_EXPONENT = 16


class LinkState(enum.Enum):
    """Where a link stands; BACKOFF means the last attempt failed and `retry_at` is pending."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


class PrinterUnreachable(TransportError):
    """The printer cannot be reached now; `reason` says why, `retry_at` when we try again."""

    def __init__(self, reason: str, retry_at: float, retry_in: float) -> None:
        super().__init__(f"printer unreachable: {reason} (next try in {retry_in:.0f} s)")
        self.reason = reason
        self.retry_at = retry_at
        self.retry_in = retry_in


class Link:
    """Owns one machine's transport: opens it on demand, one exchange at a time, backs off."""

    def __init__(
        self,
        factory: Callable[[], Transport],
        *,
        name: str,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
        jitter: float = BACKOFF_JITTER,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._factory = factory
        self._base, self._cap, self._jitter = base, cap, jitter
        self._clock, self._rand = clock, rand
        self._lock = asyncio.Lock()
        self._state = LinkState.DISCONNECTED
        self._transport: Transport | None = None
        self._failures = 0
        self._retry_at: float | None = None
        self._last_error: str | None = None
        # Told when the link fails, and when it connects again after failing (the poller then
        # reads the printer at once instead of at its next interval).
        self.on_change: Callable[[], None] | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def retry_at(self) -> float | None:
        """Clock time of the next connect attempt while in BACKOFF, else None."""
        return self._retry_at if self._state is LinkState.BACKOFF else None

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed; None once connected."""
        return self._last_error

    @property
    def failures(self) -> int:
        """Failures since the last successful connect."""
        return self._failures

    async def ensure_connected(self) -> Transport:
        """Return the open transport, connecting if due; `PrinterUnreachable` while backing off."""
        async with self._lock:
            return await self._connect()

    @contextlib.asynccontextmanager
    async def exchange(self) -> AsyncIterator[Transport]:
        """Hold the link for one write/read exchange; a `TransportError` inside marks it failed."""
        async with self._lock:
            transport = await self._connect()
            try:
                yield transport
            except TransportError as err:
                # The printer's parser may hold half a command: a fresh connection is the only
                # known state to continue from.
                await self.mark_failed(err)
                raise
            except asyncio.CancelledError:
                # Cancelled mid-exchange (job cancelled, shutdown): the same half-command risk,
                # but not the printer's fault, so no failure is counted.
                await self.disconnect()
                raise

    async def mark_failed(self, err: Exception | str) -> None:
        """Close the transport after an I/O error and schedule the next attempt."""
        if self._state is LinkState.CLOSED:
            return
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
        self._schedule_retry(str(err), "connection_lost")

    async def disconnect(self) -> None:
        """Close the transport without counting a failure; the next exchange reconnects."""
        if self._state is not LinkState.CONNECTED:
            return
        transport, self._transport = self._transport, None
        self._state = LinkState.DISCONNECTED
        if transport is not None:
            await transport.close()

    def retry_now(self) -> None:
        """Forget the backoff deadline so the next exchange connects at once (machine restart)."""
        if self._state is LinkState.BACKOFF:
            self._state = LinkState.DISCONNECTED

    async def close(self) -> None:
        """Close for good; later exchanges raise `TransportClosed`. Never raises."""
        self._state = LinkState.CLOSED
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    async def _connect(self) -> Transport:
        if self._state is LinkState.CLOSED:
            raise TransportClosed(f"{self.name}: the connection was closed")
        if self._state is LinkState.CONNECTED and self._transport is not None:
            if self._transport.is_open:
                return self._transport
            # The printer closed the idle connection: reconnect without counting a failure.
            log.debug("connection_stale", link=self.name)
            await self._transport.close()
            self._transport, self._state = None, LinkState.DISCONNECTED
        now = self._clock()
        if self._state is LinkState.BACKOFF and self._retry_at is not None and now < self._retry_at:
            raise PrinterUnreachable(self._last_error or "", self._retry_at, self._retry_at - now)
        self._state = LinkState.CONNECTING
        transport = self._factory()
        opened = False
        try:
            await transport.open()
            opened = True
        except TransportError as err:
            await transport.close()
            retry_at = self._schedule_retry(str(err), "connect_failed")
            raise PrinterUnreachable(str(err), retry_at, retry_at - now) from err
        finally:
            if not opened and self._state is LinkState.CONNECTING:
                # Cancelled (or a bug) mid-connect: leave no half-open transport behind.
                self._state = LinkState.DISCONNECTED
                await transport.close()
        if self._state is LinkState.CLOSED:  # closed while we were connecting
            await transport.close()
            raise TransportClosed(f"{self.name}: the connection was closed")
        restored = self._failures > 0
        if restored:
            log.info("connection_restored", link=self.name, failures=self._failures)
        else:
            log.debug("connected", link=self.name, connection=transport.name)
        self._transport, self._state = transport, LinkState.CONNECTED
        self._failures, self._retry_at, self._last_error = 0, None, None
        if restored:
            self._changed()
        return transport

    def _schedule_retry(self, reason: str, event: str) -> float:
        delay = min(self._base * 2 ** min(self._failures, _MAX_EXPONENT), self._cap)
        delay += delay * self._jitter * self._rand()
        self._failures += 1
        self._retry_at = self._clock() + delay
        self._last_error = reason
        self._state = LinkState.BACKOFF
        # One WARNING per outage; the repeats would flood the journal of an unplugged printer.
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(
            level,
            event,
            link=self.name,
            error=reason,
            retry_in=round(delay, 2),
            failures=self._failures,
        )
        self._changed()
        return self._retry_at

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # a listener's bug must not break the connection
            log.exception("link_listener_failed", link=self.name)
