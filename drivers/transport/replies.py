"""Reading whole replies: up to a terminator or an exact length; dropping stale input."""

from __future__ import annotations

import asyncio

from drivers.transport.base import READ_CHUNK, Transport, TransportError, TransportTimeout

# Longest reply we accept while looking for a terminator; ZPL's ~HS is 82 bytes, a Brother QL
# status 32, so 64 KiB only trips on a printer that streams garbage.
MAX_REPLY = 65536
# `drain_input` stops when the line has been quiet this long; a printer answers a query within
# tens of ms, so a stale reply still on its way arrives inside this window.
DRAIN_QUIET = 0.05
# `drain_input` never spends longer than this, even on a printer that chatters without pause.
DRAIN_MAX_TIME = 1.0
# `discard_received` only has to outlast a scheduling hiccup: it drops what already arrived.
DISCARD_QUIET = 0.002


async def read_until(
    transport: Transport,
    terminator: bytes,
    timeout: float,  # noqa: ASYNC109 - per-call timeout is the contract
    max_size: int = MAX_REPLY,
    idle_timeout: float | None = None,
) -> bytes:
    """Return bytes up to and including `terminator`; later bytes stay for the next read.

    With `idle_timeout`, the reply fails once no byte came for that long (a slow line that
    keeps sending is waited for), and `timeout` only bounds the whole reply.
    """
    if not terminator:
        raise ValueError("terminator must not be empty")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while True:
        end = buf.find(terminator)
        if end >= 0:
            end += len(terminator)
            transport.unread(bytes(buf[end:]))
            return bytes(buf[:end])
        if len(buf) > max_size:
            raise TransportError(
                f"{transport.name}: reply longer than {max_size} bytes without {terminator!r}"
            )
        wait = deadline - loop.time()
        if idle_timeout is not None:
            wait = min(wait, idle_timeout)
        try:
            buf += await transport.read(READ_CHUNK, wait)
        except TransportTimeout as err:
            transport.unread(bytes(buf))
            raise TransportTimeout(
                f"{transport.name}: no complete reply within {timeout:g} s "
                f"({len(buf)} bytes without {terminator!r})"
            ) from err


async def read_exactly(transport: Transport, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
    """Return exactly `n` bytes; `TransportTimeout` (bytes kept for the next read) if short."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while len(buf) < n:
        try:
            buf += await transport.read(n - len(buf), deadline - loop.time())
        except TransportTimeout as err:
            transport.unread(bytes(buf))
            raise TransportTimeout(
                f"{transport.name}: got {len(buf)} of {n} bytes within {timeout:g} s"
            ) from err
    return bytes(buf)


async def drain_input(
    transport: Transport, quiet: float = DRAIN_QUIET, max_time: float = DRAIN_MAX_TIME
) -> int:
    """Drop input until the line is quiet for `quiet` s (at most `max_time` s); return the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_time
    dropped = 0
    while (remaining := deadline - loop.time()) > 0:
        try:
            dropped += len(await transport.read(READ_CHUNK, min(quiet, remaining)))
        except TransportTimeout:
            break
    return dropped


async def discard_received(transport: Transport) -> int:
    """Drop input that has already arrived (stale replies) before an exchange; no waiting for more.

    After a query timed out, use `drain_input`: its late reply may still be on the way.
    """
    return await drain_input(transport, quiet=DISCARD_QUIET)
