"""The listening socket: idle connections time out, open connections are capped.

A connection that has not sent a complete request header within the idle timeout of opening, or
of its previous answer, is closed (aiohttp's keep-alive timer covers both). At the connection cap
a new connection takes the place of the longest-quiet connection that is not in the middle of a
request, so clients holding idle sockets cannot lock others out until their idle timeout; if every
connection is busy, the new one gets a short 503 and is closed at once. File descriptors stay free
for printers, the database and the API's own answers.
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from typing import Any, cast

import structlog
from aiohttp import web

from agent.config import HttpConfig
from agent.log_limits import RepeatLimiter

log = structlog.get_logger(__name__)

# File descriptors kept out of the connection cap: the database and its WAL, printers (TCP,
# serial, USB), log output, the executor threads' files, documents being rendered.
FD_RESERVE = 256
# The fewest connections the cap allows, whatever the descriptor limit says.
MIN_CONNECTIONS = 16
RETRY_AFTER_S = 5
_REFUSAL_BODY = b'{"detail":"The agent has too many open connections; try again shortly."}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    + f"Retry-After: {RETRY_AFTER_S}\r\n".encode()
    + b"Connection: close\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n\r\n".encode()
    + _REFUSAL_BODY
)
_refusals_logged = RepeatLimiter(times=1, interval_s=60.0)
_evictions_logged = RepeatLimiter(times=1, interval_s=60.0)


def runner_options(config: HttpConfig) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` that apply the idle timeout."""
    return {"keepalive_timeout": config.idle_timeout_s}


def connection_cap(config: HttpConfig) -> int:
    """The configured cap, lowered to fit the process's file-descriptor limit less a reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return config.max_connections
    return min(config.max_connections, max(MIN_CONNECTIONS, soft - FD_RESERVE))


class CappedTCPSite(web.TCPSite):
    """A TCP site that holds at most `max_connections` connections open at once."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int
    ) -> None:
        super().__init__(runner, host, port)
        self.max_connections = max_connections
        # Open connections, the longest quiet (no byte received) first.
        self._connections: OrderedDict[_Counted, None] = OrderedDict()

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def busy_connections(self) -> int:
        """Open connections in the middle of a request."""
        return sum(1 for connection in self._connections if connection.busy)

    async def start(self) -> None:
        """Listen, with each connection counted from accept to close."""
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner's setup() must come before the site's start()")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._protocol(server), self._host, self._port, backlog=self._backlog
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    def _protocol(self, server: web.Server) -> asyncio.Protocol:
        if len(self._connections) >= self.max_connections and not self._evict_one():
            return _Refuse(self.max_connections)
        connection = _Counted(server(), self)
        self._connections[connection] = None
        return connection

    def _evict_one(self) -> bool:
        """Close the longest-quiet connection not in a request; False if all are busy."""
        for connection in self._connections:
            if not connection.busy:
                self._closed(connection)
                connection.evict()
                event = _evictions_logged.check("idle_connection_evicted")
                if event is not None:
                    log.info(
                        "idle_connection_closed_at_cap",
                        max_connections=self.max_connections,
                        **event,
                    )
                return True
        return False

    def _active(self, connection: _Counted) -> None:
        if connection in self._connections:
            self._connections.move_to_end(connection)

    def _closed(self, connection: _Counted) -> None:
        self._connections.pop(connection, None)


class _Counted(asyncio.Protocol):
    """aiohttp's request handler, with the site told when the connection is used and ends."""

    def __init__(self, handler: asyncio.Protocol, site: CappedTCPSite) -> None:
        self._handler = handler
        self._site: CappedTCPSite | None = site
        self._transport: asyncio.BaseTransport | None = None

    @property
    def busy(self) -> bool:
        """True while a request is being handled or waits to be (aiohttp's own bookkeeping)."""
        handler = self._handler
        return bool(getattr(handler, "_request_in_progress", False)) or bool(
            getattr(handler, "_messages", None)
        )

    def evict(self) -> None:
        """Close the connection now (the site has already forgotten it)."""
        self._site = None
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._site is not None:
            self._site._active(self)  # noqa: SLF001 - the site's own bookkeeping
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._site is not None:
            self._site._closed(self)  # noqa: SLF001 - the site's own bookkeeping
            self._site = None
        self._transport = None
        self._handler.connection_lost(exc)


class _Refuse(asyncio.Protocol):
    """Answer 503 and close: one over the cap costs a descriptor only for an instant."""

    def __init__(self, cap: int) -> None:
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.WriteTransport, transport)  # a TCP transport
        stream.write(_REFUSAL)
        stream.close()
        event = _refusals_logged.check("connection_refused")
        if event is not None:
            log.warning("connections_at_cap", max_connections=self._cap, **event)
