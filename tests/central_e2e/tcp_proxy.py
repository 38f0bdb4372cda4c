"""A TCP proxy on 127.0.0.1 that a test can cut and restore: InvenTree "unreachable" on demand.

The InvenTree servers are shared by every test of the session, so a test must never stop one;
it puts this proxy between its agent and the server instead. `cut()` closes every open
connection and stops listening (new connections are refused, as from a server that is down);
`restore()` listens again on the same port. It reads requests one by one (HTTP/1.1 with a
Content-Length, as the agent sends them), counts those to the plugin, and can drop the ones
whose request line matches `block` (their connection is reset instead of forwarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

# Bytes read from one side before they are written to the other.
_CHUNK = 65536
# The request line of a call to the plugin's endpoints (the agent's dial-out).
_PLUGIN_REQUEST = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE) /plugin/[^ ]* HTTP/1\.[01]\r\n")
# Longest request head read (asyncio's reader limit is 64 KiB anyway).
_MAX_HEAD = 65536


class TcpProxy:
    """Forwards connections from its own port to `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        # (time.monotonic(), request line) of every request to the plugin that reached the proxy.
        self.requests: list[tuple[float, str]] = []
        self.refused_while_cut = 0
        # Requests whose request line this matches are not forwarded: their connection drops.
        self.block: re.Pattern[bytes] | None = None
        self.blocked = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, the address the agent is given."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether the proxy refuses connections now."""
        return self._server is None

    async def start(self) -> None:
        """Listen (on a free port the first time, on the same port after a cut)."""
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every connection in flight."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            with contextlib.suppress(OSError):
                writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    def requests_to(self, pattern: str, since: float = 0.0) -> list[float]:
        """When the requests whose line matches `pattern` (a regex) arrived, after `since`."""
        return [t for t, line in self.requests if t >= since and re.search(pattern, line)]

    async def close(self) -> None:
        """Cut for good."""
        await self.cut()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            self.refused_while_cut += 1
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._requests(reader, up_writer)),
            asyncio.create_task(self._answers(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server, one request at a time: count it, or drop the connection if blocked."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > _MAX_HEAD:
                    break
                length = _content_length(head)
                body = await reader.readexactly(length) if length else b""
                line = head.split(b"\r\n", 1)[0] + b"\r\n"
                if _PLUGIN_REQUEST.fullmatch(line):
                    self.requests.append((time.monotonic(), line.decode("latin-1").strip()))
                    if self.block is not None and self.block.search(line):
                        self.blocked += 1
                        break  # the connection is reset, as by a proxy that failed
                writer.write(head + body)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server to client, byte for byte."""
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise OSError("chunked request bodies are not proxied")
    return 0
