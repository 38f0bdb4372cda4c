"""Serve a simulator over a real TCP socket or a real pseudo-terminal, with the link faults.

Link faults, applied here for both transports:

- "disconnect-mid-job": a connection is dropped once it has carried `sim.disconnect_after_bytes`
  bytes (counted from its start, status queries included); bytes past that point are lost. A pty
  cannot hang up, so it goes deaf instead: input is discarded until the fault is cleared.
- "slow-link": data is processed `SLOW_LINK_CHUNK_BYTES` at a time, `sim.slow_link_delay` apart,
  and reading pauses meanwhile, so the sender feels the back-pressure.
- "slow-replies": reply bytes go out one at a time, `sim.slow_reply_delay` apart.
- "refuse-second-connection": a TCP connection made while another is open is closed at once,
  as many label printers serve one connection at a time.

No tasks are started: TCP uses protocol callbacks, the pty `loop.add_reader`, delays timer handles,
all released by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self, cast

import structlog

from drivers.sim.base import SLOW_LINK_CHUNK_BYTES, Simulator

log = structlog.get_logger(__name__)

# Bytes read from the pty master at once: more than any reply or chunk a test sends.
PTY_READ_BYTES = 65536
# Aborted connections report their loss on the next loop iterations; this bounds the wait.
CLOSE_TIMEOUT = 2.0


class SimTcpServer:
    """A listening simulator: its address, and `close()` that also drops open connections."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.server: asyncio.Server | None = None
        self.connections: set[_TcpConnection] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._sockname()[0])

    @property
    def port(self) -> int:
        """The TCP port it listens on (the real one when asked for port 0)."""
        return int(self._sockname()[1])

    @property
    def url(self) -> str:
        """A connection URI a driver takes, `tcp://127.0.0.1:PORT`."""
        return f"tcp://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.abort()

    async def wait_closed(self) -> None:
        """Wait until the listening socket and every connection are closed."""
        if self.server is not None:
            await self.server.wait_closed()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._idle.wait()
        except TimeoutError:
            log.warning("sim_connections_still_open", count=len(self.connections))

    def connection_opened(self, connection: _TcpConnection) -> None:
        """Count a connection accepted."""
        self.connections.add(connection)
        self._idle.clear()

    def connection_closed(self, connection: _TcpConnection) -> None:
        """Forget a connection closed."""
        self.connections.discard(connection)
        if not self.connections:
            self._idle.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def _sockname(self) -> tuple[str, int]:
        if self.server is None or not self.server.sockets:
            raise RuntimeError("the simulator server is not listening")
        name = self.server.sockets[0].getsockname()
        return str(name[0]), int(name[1])


async def serve_tcp(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimTcpServer:
    """Listen for connections to `sim` on `host:port` (port 0: any free port)."""
    holder = SimTcpServer(sim)
    loop = asyncio.get_running_loop()
    holder.server = await loop.create_server(lambda: _TcpConnection(holder), host, port)
    log.info("sim_listening", language=sim.LANGUAGE, url=holder.url)
    return holder


class PtySession:
    """A simulator behind a pseudo-terminal: open `path` as a serial port, `close()` when done."""

    def __init__(self, sim: Simulator, master: int, slave: int) -> None:
        self.sim = sim
        self.path = os.ttyname(slave)
        self._master = master
        # The slave end stays open here so the master never reads EIO while no client has it.
        self._slave = slave
        self._loop = asyncio.get_running_loop()
        self._out = bytearray()
        self._closed = False
        self._link = self._new_link()
        self._loop.add_reader(master, self._readable)

    @property
    def url(self) -> str:
        """A connection URI a driver takes, `serial:///dev/pts/N`."""
        return f"serial://{self.path}"

    def close(self) -> None:
        """Stop serving and close both ends of the pseudo-terminal."""
        if self._closed:
            return
        self._closed = True
        self._link.close()
        self._loop.remove_reader(self._master)
        self._loop.remove_writer(self._master)
        os.close(self._master)
        os.close(self._slave)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _new_link(self) -> _Link:
        return _Link(self.sim, self._write, self._hang_up, self._pause, self._resume)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, PTY_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # Not expected while the slave end is held open; stop rather than spin on the error.
            log.exception("sim_pty_read_failed")
            self._loop.remove_reader(self._master)
            return
        if self._link.closed:
            if self.sim.has_fault("disconnect-mid-job"):
                return
            self._link = self._new_link()
        self._link.receive(data)

    def _write(self, data: bytes) -> None:
        self._out += data
        self._flush()

    def _flush(self) -> None:
        try:
            written = os.write(self._master, self._out)
        except BlockingIOError:
            written = 0
        except OSError:
            log.exception("sim_pty_write_failed", dropped=len(self._out))
            written = len(self._out)
        del self._out[:written]
        if self._out:
            self._loop.add_writer(self._master, self._flush)
        else:
            self._loop.remove_writer(self._master)

    def _hang_up(self) -> None:
        log.info("sim_pty_deaf", language=self.sim.LANGUAGE)

    def _pause(self) -> None:
        self._loop.remove_reader(self._master)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._master, self._readable)


async def serve_pty(sim: Simulator) -> PtySession:
    """Serve `sim` on a new pseudo-terminal in raw mode; `session.path` is the serial port."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        os.set_blocking(master, False)
        session = PtySession(sim, master, slave)
    except Exception:
        os.close(master)
        os.close(slave)
        raise
    log.info("sim_listening", language=sim.LANGUAGE, url=session.url)
    return session


class _Link:
    """Bytes of one connection into a simulator channel, with the link faults applied."""

    def __init__(
        self,
        sim: Simulator,
        write: Callable[[bytes], None],
        hang_up: Callable[[], None],
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self._sim = sim
        self._channel = sim.open_channel()
        self._write = write
        self._hang_up = hang_up
        self._pause = pause
        self._resume = resume
        self._received = 0
        self._pending: deque[bytes] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._outgoing = bytearray()
        self._reply_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Called once held-back data has all been processed.
        self.on_idle: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        """True once the connection ended (or was dropped by a fault)."""
        return self._closed

    @property
    def busy(self) -> bool:
        """True while "slow-link" holds data back."""
        return bool(self._pending)

    def receive(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._sim.has_fault("slow-link") and not self._pending:
            self._process(data)
            return
        for start in range(0, len(data), SLOW_LINK_CHUNK_BYTES):
            self._pending.append(data[start : start + SLOW_LINK_CHUNK_BYTES])
        if self._timer is None:
            self._pause()
            self._schedule()

    def close(self) -> None:
        if self.closed:
            return
        self._closed = True
        for timer in (self._timer, self._reply_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._reply_timer = None
        self._pending.clear()
        self._outgoing.clear()
        self._channel.close()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._sim.slow_link_delay, self._release)

    def _release(self) -> None:
        self._timer = None
        if self.closed:
            return
        if not self._process(self._pending.popleft()):
            return
        if self._pending:
            self._schedule()
            return
        self._resume()
        if self.on_idle is not None:
            self.on_idle()

    def _process(self, data: bytes) -> bool:
        """Deliver data, or drop the link at the fault's byte count; False once dropped."""
        if self._sim.has_fault("disconnect-mid-job"):
            room = max(0, self._sim.disconnect_after_bytes - self._received)
            if len(data) >= room:
                self._deliver(data[:room])
                log.info(
                    "sim_link_dropped", language=self._sim.LANGUAGE, after=self._received + room
                )
                self.close()
                self._hang_up()
                return False
        self._received += len(data)
        self._deliver(data)
        return True

    def _deliver(self, data: bytes) -> None:
        reply = self._channel.feed(data) if data else b""
        if not reply:
            return
        if not self._sim.has_fault("slow-replies") and not self._outgoing:
            self._write(reply)
            return
        self._outgoing += reply
        if self._reply_timer is None:
            self._schedule_reply()

    def _schedule_reply(self) -> None:
        loop = asyncio.get_running_loop()
        self._reply_timer = loop.call_later(self._sim.slow_reply_delay, self._reply_byte)

    def _reply_byte(self) -> None:
        self._reply_timer = None
        if self.closed or not self._outgoing:
            return
        byte = bytes(self._outgoing[:1])
        del self._outgoing[:1]
        self._write(byte)
        if self._outgoing:
            self._schedule_reply()


class _TcpConnection(asyncio.Protocol):
    """One TCP connection to a simulator."""

    def __init__(self, server: SimTcpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._link: _Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream = cast(asyncio.Transport, transport)
        sim = self._server.sim
        if sim.has_fault("refuse-second-connection") and self._server.connections:
            log.info("sim_connection_refused", language=sim.LANGUAGE)
            stream.abort()
            return
        self._server.connection_opened(self)
        self._link = _Link(sim, stream.write, self.abort, self._pause, self._resume)

    def data_received(self, data: bytes) -> None:
        if self._link is not None:
            self._link.receive(data)

    def eof_received(self) -> bool | None:
        # The sender is done. Close once data held back by "slow-link" has been processed, so
        # replies to it still go out; returning True keeps the socket open until then.
        if self._link is not None and self._link.busy:
            self._link.on_idle = self._close
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connection_closed(self)
        if self._link is not None:
            self._link.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _pause(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self._transport.pause_reading()

    def _resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self._transport.resume_reading()
