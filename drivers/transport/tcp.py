"""TCP transport: a network printer's raw port (9100, "JetDirect") over asyncio streams."""

from __future__ import annotations

import asyncio
import socket

from drivers.transport.base import (
    CLOSE_TIMEOUT,
    BaseTransport,
    TransportClosed,
    TransportError,
    TransportTimeout,
)
from drivers.transport.uri import TcpTarget

# A printer on the LAN answers a SYN in milliseconds; 5 s also covers one on Wi-Fi waking from
# power save and a slow DNS lookup, and is short enough to show an off printer quickly.
CONNECT_TIMEOUT = 5.0
# asyncio buffers this much unsent data before `drain` waits; kept at one write chunk so a
# printer that stops reading is noticed after a chunk, not after asyncio's 64 KiB default.
_WRITE_BUFFER_HIGH = 4096


class TcpTransport(BaseTransport):
    """A TCP connection to `host:port`."""

    def __init__(self, target: TcpTarget, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__()
        self.target = target
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._stalled = False

    @property
    def name(self) -> str:
        return str(self.target)

    @property
    def is_open(self) -> bool:
        """False once the printer has hung up (many close idle raw-port connections)."""
        reader, writer = self._reader, self._writer
        if not self._is_open or reader is None or writer is None:
            return False
        return not (reader.at_eof() or writer.is_closing())

    async def _open(self) -> None:
        where = f"{self.target.host}:{self.target.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        except TimeoutError as err:
            raise TransportTimeout(
                f"no answer from {where} within {self.connect_timeout:g} s (printer off?)"
            ) from err
        except socket.gaierror as err:
            raise TransportError(f"cannot resolve host {self.target.host}: {err.strerror}") from err
        except ConnectionRefusedError as err:
            raise TransportError(f"connection refused by {where} (wrong port?)") from err
        except OSError as err:
            raise TransportError(f"cannot connect to {where}: {err.strerror or err}") from err
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Printer commands are small and a reply is awaited after each: do not let Nagle
            # hold them back for the peer's delayed ACK (up to 200 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.transport.set_write_buffer_limits(high=_WRITE_BUFFER_HIGH)
        self._reader, self._writer = reader, writer

    async def _write_chunk(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        reader, writer = self._streams()
        # A raw-port printer that sent FIN is done with this connection; what we write now is
        # lost, so say so instead of writing into the void.
        if reader.at_eof() or writer.is_closing():
            raise TransportClosed(f"{self.name}: the printer closed the connection")
        try:
            writer.write(chunk)
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError as err:
            self._stalled = True
            raise TransportTimeout(
                f"{self.name}: the printer accepted no data for {timeout:g} s"
            ) from err
        except ConnectionError as err:
            raise TransportClosed(f"{self.name}: the printer closed the connection") from err
        except OSError as err:
            raise TransportError(f"{self.name}: write failed: {err.strerror or err}") from err

    async def _read_some(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        reader, _ = self._streams()
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                data = await reader.read(n)
        except TimeoutError as err:
            raise TransportTimeout(f"{self.name}: no reply within {timeout:g} s") from err
        except ConnectionError as err:
            raise TransportClosed(f"{self.name}: the printer closed the connection") from err
        except OSError as err:
            raise TransportError(f"{self.name}: read failed: {err.strerror or err}") from err
        if not data:
            raise TransportClosed(f"{self.name}: the printer closed the connection")
        return data

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        if self._stalled:
            # The printer stopped reading: what is still buffered will never be taken.
            writer.transport.abort()
            self._stalled = False
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            # Unsent data to a printer that stopped reading would hold the socket open.
            writer.transport.abort()

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise TransportClosed(f"{self.name} is not open")
        return self._reader, self._writer
