"""Serial transport over a real pseudo-terminal: the test holds the master, the transport the slave."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import termios
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from drivers.transport import (
    ConnectionUriError,
    SerialTarget,
    SerialTransport,
    TransportClosed,
    TransportError,
    TransportTimeout,
    create_transport,
    parse_connection,
    read_exactly,
)
from drivers.transport.threads import run_in_thread
from tests.waiting import settle, wait_until


@dataclass
class Pty:
    master: int
    slave: int
    name: str

    def close_master(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def pty() -> Iterator[Pty]:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    pair = Pty(master, slave, os.ttyname(slave))
    yield pair
    pair.close_master()
    os.close(slave)


@pytest.fixture
async def port(pty: Pty) -> AsyncIterator[SerialTransport]:
    transport = create_transport(f"serial://{pty.name}?baudrate=19200")
    assert isinstance(transport, SerialTransport)
    await transport.open()
    yield transport
    await transport.close()


def _waiting_input(fd: int) -> int:
    """Bytes in a terminal's input queue (the pty passes written bytes on asynchronously)."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return count


async def read_master(pty: Pty, size: int) -> bytes:
    """Read what the transport wrote, as the printer would."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(5):
        while len(data) < size:
            try:
                data += os.read(pty.master, size - len(data))
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(pty.master, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(pty.master)
    return bytes(data)


# Bytes a line discipline would mangle if the port were not raw: NUL, XON/XOFF, CR, LF, ^C, ^D.
BINARY = bytes([0x00, 0x11, 0x13, 0x0D, 0x0A, 0x03, 0x04, 0x1B, 0x40, 0xFF])


async def test_bytes_go_both_ways_unchanged(pty: Pty, port: SerialTransport) -> None:
    await port.write(BINARY)
    assert await read_master(pty, len(BINARY)) == BINARY
    os.write(pty.master, BINARY[::-1])
    assert await read_exactly(port, len(BINARY), timeout=2) == BINARY[::-1]


async def test_read_returns_available_bytes_at_once(pty: Pty, port: SerialTransport) -> None:
    os.write(pty.master, b"\x10\x04")
    async with asyncio.timeout(1):
        assert await port.read(64, timeout=5) == b"\x10\x04"


async def test_read_timeout(port: SerialTransport) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransportTimeout, match="no data within 0.05 s"):
        await port.read(1, timeout=0.05)
    assert loop.time() - start < 1


async def test_stale_input_is_dropped_on_open(pty: Pty) -> None:
    first = SerialTransport(SerialTarget(pty.name))
    await first.open()
    await first.close()
    os.write(pty.master, b"boot banner")
    await wait_until(lambda: _waiting_input(pty.slave) == len(b"boot banner"))
    second = SerialTransport(SerialTarget(pty.name))
    await second.open()
    try:
        with pytest.raises(TransportTimeout):
            await second.read(64, timeout=0.05)
    finally:
        await second.close()


async def test_large_write_while_printer_reads(pty: Pty, port: SerialTransport) -> None:
    job = bytes(range(256)) * 200  # 51 kB: far more than the pty buffer holds
    reader = asyncio.create_task(read_master(pty, len(job)), name="printer")
    await port.write(job, timeout=2)
    assert await reader == job


async def test_write_times_out_when_printer_stops_reading(port: SerialTransport) -> None:
    with pytest.raises(TransportTimeout, match="accepted no data for 0.1 s"):
        await port.write(bytes(1024 * 1024), timeout=0.1)


async def test_line_settings_are_applied(pty: Pty) -> None:
    # A pty keeps speed, stop bits and flow control (it forces CS8 and no parity, so those two
    # are only checked by the parser tests below).
    transport = create_transport(f"serial://{pty.name}?baudrate=19200&stopbits=2&xonxoff=1")
    await transport.open()
    try:
        iflag, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(pty.slave)
        assert (ispeed, ospeed) == (termios.B19200, termios.B19200)
        assert cflag & termios.CSTOPB
        assert iflag & termios.IXON
    finally:
        await transport.close()
    transport = create_transport(f"serial://{pty.name}?rtscts=1")
    await transport.open()
    try:
        _, _, cflag, _, ispeed, _, _ = termios.tcgetattr(pty.slave)
        assert ispeed == termios.B9600
        assert cflag & termios.CRTSCTS
        assert not cflag & termios.CSTOPB
    finally:
        await transport.close()


async def test_printer_gone_is_reported_as_closed(pty: Pty, port: SerialTransport) -> None:
    pty.close_master()
    with pytest.raises(TransportClosed, match="went away"):
        await port.read(1, timeout=2)


async def test_missing_port_has_a_clear_error() -> None:
    transport = create_transport("serial:///dev/ttyUSB99")
    with pytest.raises(TransportError, match="/dev/ttyUSB99 does not exist"):
        await transport.open()


async def test_port_in_use_is_refused(pty: Pty, port: SerialTransport) -> None:
    second = create_transport(f"serial://{pty.name}")
    with pytest.raises(TransportError, match="in use by another program"):
        await second.open()
    await second.close()
    await port.write(b"ok")  # the first owner is unaffected
    assert await read_master(pty, 2) == b"ok"


async def test_close_is_idempotent_and_stops_io(pty: Pty, port: SerialTransport) -> None:
    await port.close()
    await port.close()
    with pytest.raises(TransportClosed):
        await port.write(b"x")


async def test_close_wakes_a_pending_read(port: SerialTransport) -> None:
    reader = asyncio.create_task(port.read(1, timeout=10), name="status read")
    await settle()  # the read waits for data
    async with asyncio.timeout(1):
        await port.close()
        with pytest.raises(TransportClosed, match="was closed"):
            await reader


async def test_hung_open_times_out_and_a_late_port_is_closed() -> None:
    # Some adapters block in open(); the daemon must not wait, nor leak the port opened later.
    gate, discarded = threading.Event(), threading.Event()

    def slow_open() -> str:
        gate.wait(5)
        return "port"

    with pytest.raises(TransportTimeout, match="opening /dev/ttyUSB0 did not finish within 0.05 s"):
        await run_in_thread(
            slow_open,
            deadline=0.05,
            what="opening /dev/ttyUSB0",
            discard=lambda port: discarded.set(),
        )
    gate.set()
    assert await asyncio.to_thread(discarded.wait, 2)


# --- serial:// URIs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("serial:///dev/ttyUSB0", SerialTarget("/dev/ttyUSB0", 9600, 8, "N", 1)),
        ("serial:///dev/ttyUSB0?baudrate=115200", SerialTarget("/dev/ttyUSB0", 115200)),
        (
            "serial:///dev/ttyS1?baudrate=38400&bytesize=7&parity=even&stopbits=2",
            SerialTarget("/dev/ttyS1", 38400, 7, "E", 2),
        ),
        (
            "serial:///dev/ttyAMA0?parity=O&stopbits=1.5",
            SerialTarget("/dev/ttyAMA0", parity="O", stopbits=1.5),
        ),
        (
            "serial:///dev/rfcomm0?rtscts=1&xonxoff=true&dsrdtr=on",
            SerialTarget("/dev/rfcomm0", rtscts=True, xonxoff=True, dsrdtr=True),
        ),
        (
            "serial:///dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
            SerialTarget("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"),
        ),
        ("serial:///dev/tty%20odd", SerialTarget("/dev/tty odd")),
    ],
)
def test_parse_serial(uri: str, target: SerialTarget) -> None:
    assert parse_connection(uri) == target


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("serial://dev/ttyUSB0", "absolute device path after three slashes"),
        ("serial:///", "absolute device path"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate must be a number"),
        ("serial:///dev/ttyUSB0?baudrate=0", "baudrate must be a number from 50"),
        ("serial:///dev/ttyUSB0?baud=9600", r"unknown option 'baud' \(allowed: baudrate"),
        ("serial:///dev/ttyUSB0?bytesize=9", "bytesize must be a number from 5 to 8"),
        ("serial:///dev/ttyUSB0?parity=x", "parity must be N, E, O, M or S"),
        ("serial:///dev/ttyUSB0?stopbits=3", "stopbits must be 1, 1.5 or 2"),
        ("serial:///dev/ttyUSB0?rtscts=maybe", "rtscts must be 0 or 1"),
        ("serial:///dev/ttyUSB0?baudrate=9600&baudrate=19200", "given twice"),
        ("serial:///dev/ttyUSB0?baudrate", "cannot read options|baudrate must be"),
    ],
)
def test_parse_bad_serial(uri: str, message: str) -> None:
    with pytest.raises(ConnectionUriError, match=message):
        parse_connection(uri)
