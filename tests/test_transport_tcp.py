"""TCP transport against a real asyncio server on 127.0.0.1; URI parsing and the reply helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.transport import (
    ConnectionUriError,
    SerialTarget,
    TcpTarget,
    TcpTransport,
    TransportClosed,
    TransportError,
    TransportTimeout,
    UsbTarget,
    create_transport,
    drain_input,
    parse_connection,
    read_exactly,
    read_until,
)
from drivers.transport.devfile import DeviceFileTransport
from drivers.transport.serial import SerialTransport
from drivers.transport.usb import UsbTransport
from tests.waiting import wait_until


class FakePrinter:
    """A raw-port printer: records what it receives, answers on request, can hang up."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.got_data = asyncio.Event()
        self.connected = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.read_input = True
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected.set()
        while self.read_input:
            data = await reader.read(65536)
            if not data:
                break
            self.received += data
            self.got_data.set()

    async def send(self, data: bytes) -> None:
        await self.connected.wait()
        self.writers[-1].write(data)
        await self.writers[-1].drain()

    async def hang_up(self) -> None:
        await self.connected.wait()
        writer = self.writers[-1]
        writer.close()
        await writer.wait_closed()

    async def wait_for(self, size: int) -> bytes:
        async with asyncio.timeout(5):
            while len(self.received) < size:
                self.got_data.clear()
                await self.got_data.wait()
        return bytes(self.received)


@pytest.fixture
async def printer() -> AsyncIterator[FakePrinter]:
    fake = FakePrinter()
    listener = socket.socket()
    # A printer has a small input buffer; a small receive buffer (which also stops the kernel
    # from growing it) makes "the printer stopped reading" show within a few MB of writing.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    listener.bind(("127.0.0.1", 0))
    fake.server = await asyncio.start_server(fake.handle, sock=listener)
    yield fake
    for writer in fake.writers:
        writer.close()
    fake.server.close()
    await fake.server.wait_closed()


@pytest.fixture
async def transport(printer: FakePrinter) -> AsyncIterator[TcpTransport]:
    tcp = TcpTransport(TcpTarget("127.0.0.1", printer.port))
    await tcp.open()
    yield tcp
    await tcp.close()


def alive(transport: TcpTransport) -> bool:
    """Read through a call so mypy does not narrow the property across awaits."""
    return transport.is_open


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full, so the kernel drops further SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_write_reaches_printer_and_reply_is_read(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await transport.write(b"~HS\r\n")
    assert await printer.wait_for(5) == b"~HS\r\n"
    await printer.send(b"\x02ok\x03")
    assert await read_exactly(transport, 4, timeout=2) == b"\x02ok\x03"


async def test_read_returns_what_is_there_without_waiting_for_n(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await printer.send(b"abc")
    async with asyncio.timeout(1):
        assert await transport.read(100, timeout=5) == b"abc"


async def test_read_never_returns_more_than_n(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await printer.send(b"abcdef")
    assert await read_exactly(transport, 6, timeout=2) == b"abcdef"
    await printer.send(b"12345")
    assert await transport.read(2, timeout=2) == b"12"
    assert await transport.read(10, timeout=2) == b"345"


async def test_large_write_arrives_complete(printer: FakePrinter, transport: TcpTransport) -> None:
    job = bytes(range(256)) * 4000  # ~1 MB, many chunks
    await transport.write(job)
    assert await printer.wait_for(len(job)) == job


async def test_read_timeout_raises_transport_timeout(transport: TcpTransport) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransportTimeout, match="no reply within 0.05 s"):
        await transport.read(1, timeout=0.05)
    assert loop.time() - start < 1


async def test_write_times_out_when_printer_stops_reading(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    printer.read_input = False
    await printer.send(b"")  # wait until the server side exists
    # Our send buffer (at most 4 MB) plus the printer's cannot hold 16 MB: progress stops.
    with pytest.raises(TransportTimeout, match="accepted no data for 0.2 s"):
        await transport.write(bytes(16 * 1024 * 1024), timeout=0.2)


async def test_peer_close_is_reported_on_read_and_write(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await printer.hang_up()
    with pytest.raises(TransportClosed, match="closed the connection"):
        await transport.read(1, timeout=2)
    with pytest.raises(TransportClosed):
        await transport.write(b"lost label")


async def test_is_open_turns_false_when_the_printer_hangs_up(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    assert transport.is_open
    await printer.hang_up()
    # The FIN arrives on the loop: no event to await.
    await wait_until(lambda: not alive(transport), timeout=2)
    with pytest.raises(TransportClosed):
        await transport.write(b"label")


async def test_connect_refused_on_closed_port(free_port: int) -> None:
    tcp = TcpTransport(TcpTarget("127.0.0.1", free_port))
    with pytest.raises(
        TransportError, match=f"connection refused by 127.0.0.1:{free_port}"
    ) as info:
        await tcp.open()
    assert not isinstance(info.value, TransportTimeout)
    assert not tcp.is_open


async def test_connect_timeout(full_backlog: int) -> None:
    tcp = TcpTransport(TcpTarget("127.0.0.1", full_backlog), connect_timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransportTimeout, match="no answer from .* within 0.2 s"):
        await tcp.open()
    assert loop.time() - start < 2


async def test_io_before_open_and_after_close_raises_closed(printer: FakePrinter) -> None:
    tcp = TcpTransport(TcpTarget("127.0.0.1", printer.port))
    with pytest.raises(TransportClosed, match="not open"):
        await tcp.write(b"x")
    await tcp.open()
    await tcp.close()
    await tcp.close()  # idempotent
    with pytest.raises(TransportClosed, match="not open"):
        await tcp.read(1, timeout=0.1)


async def test_close_after_stalled_write_does_not_wait(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    printer.read_input = False
    await printer.send(b"")
    with pytest.raises(TransportTimeout):
        await transport.write(bytes(16 * 1024 * 1024), timeout=0.1)
    async with asyncio.timeout(0.5):
        await transport.close()
    assert not transport.is_open


async def test_read_until_splits_replies_and_keeps_the_rest(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    # ZPL ~HS answers with three STX ... ETX CR LF lines, often in one packet.
    await printer.send(b"\x02030,0,0\x03\r\n\x02001,0,0\x03\r\n\x021234\x03")
    assert await read_until(transport, b"\x03\r\n", timeout=2) == b"\x02030,0,0\x03\r\n"
    assert await read_until(transport, b"\x03\r\n", timeout=2) == b"\x02001,0,0\x03\r\n"
    await printer.send(b"\r\n")
    assert await read_until(transport, b"\x03\r\n", timeout=2) == b"\x021234\x03\r\n"


async def test_read_until_timeout_keeps_partial_reply(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await printer.send(b"\x02half")
    with pytest.raises(TransportTimeout, match="5 bytes without"):
        await read_until(transport, b"\x03", timeout=0.1)
    await printer.send(b"\x03")
    assert await read_until(transport, b"\x03", timeout=2) == b"\x02half\x03"


async def test_read_until_rejects_endless_reply(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    await printer.send(b"x" * 300)
    with pytest.raises(TransportError, match="longer than 100 bytes"):
        await read_until(transport, b"\n", timeout=2, max_size=100)


async def test_drain_input_drops_stale_replies(
    printer: FakePrinter, transport: TcpTransport
) -> None:
    # Not waited for: drain_input waits until the line is quiet, so bytes on their way count.
    await printer.send(b"old status")
    transport.unread(b"pushed back ")
    assert await drain_input(transport) == len(b"pushed back old status")
    await printer.send(b"fresh")
    assert await transport.read(10, timeout=2) == b"fresh"


# --- CONNECTION URIs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("tcp://192.168.1.50", TcpTarget("192.168.1.50", 9100)),
        ("tcp://printer.local:6101", TcpTarget("printer.local", 6101)),
        ("TCP://zebra-1:9100/", TcpTarget("zebra-1", 9100)),
        ("tcp://[::1]:9100", TcpTarget("::1", 9100)),
        ("tcp://[fe80::1]", TcpTarget("fe80::1", 9100)),
        ("  tcp://10.0.0.5:9101  ", TcpTarget("10.0.0.5", 9101)),
    ],
)
def test_parse_tcp(uri: str, target: TcpTarget) -> None:
    assert parse_connection(uri) == target


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "no connection given"),
        ("192.168.1.50:9100", "has no scheme; use tcp://HOST"),
        ("http://printer", "unknown scheme 'http'"),
        ("tcp://", "names no printer"),
        ("tcp://printer:0", "port must be 1-65535, not '0'"),
        ("tcp://printer:70000", "port must be 1-65535"),
        ("tcp://printer:abc", "port must be 1-65535, not 'abc'"),
        ("tcp://printer:", "port must be 1-65535, not ''"),
        ("tcp://::1:9100", "write IPv6 addresses in brackets"),
        ("tcp://[not-ip]:9100", "not"),
        ("tcp://my printer", "is not a host name"),
        ("tcp://user@printer", "is not a host name"),
        ("tcp://printer/queue", "has no path"),
        ("tcp://printer?timeout=5", "unknown option 'timeout'"),
        ("tcp://printer#x", "unexpected '#x'"),
    ],
)
def test_parse_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(ConnectionUriError, match=message):
        parse_connection(uri)


def test_connection_uri_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        parse_connection("lpt://1")


def test_create_transport_picks_the_transport_for_each_scheme() -> None:
    assert isinstance(create_transport("tcp://127.0.0.1"), TcpTransport)
    assert isinstance(create_transport("serial:///dev/ttyS0"), SerialTransport)
    assert isinstance(create_transport("usb://04b8:0e15"), UsbTransport)
    assert isinstance(create_transport("file:///dev/usb/lp0"), DeviceFileTransport)
    assert isinstance(create_transport(UsbTarget(0x04B8, 0x0E15)), UsbTransport)
    assert create_transport("serial:///dev/ttyS0").name == "serial:///dev/ttyS0?baudrate=9600"
    assert isinstance(parse_connection("serial:///dev/ttyS0"), SerialTarget)
    with pytest.raises(ConnectionUriError):
        create_transport("tcp://")
