"""Device-file transport on real files: a FIFO, a pty standing in for /dev/usb/lp0, a regular file."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.transport import (
    ConnectionUriError,
    DeviceFileTransport,
    FileTarget,
    TransportClosed,
    TransportError,
    TransportTimeout,
    create_transport,
    parse_connection,
    read_exactly,
)


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "lp0"
    os.mkfifo(path)
    return path


@pytest.fixture
async def fifo_transport(fifo: Path) -> AsyncIterator[DeviceFileTransport]:
    transport = DeviceFileTransport(FileTarget(str(fifo)))
    await transport.open()
    yield transport
    await transport.close()


@pytest.fixture
def pty_slave() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)  # a printer device passes bytes as they are
    os.set_blocking(master, False)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def read_fd(fd: int, size: int) -> bytes:
    data = bytearray()
    async with asyncio.timeout(5):
        while len(data) < size:
            try:
                data += os.read(fd, size - len(data))
            except BlockingIOError:
                await _readable(fd)
    return bytes(data)


async def test_write_reaches_the_device(fifo: Path, fifo_transport: DeviceFileTransport) -> None:
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        job = b"\x1b@label\n" * 1000
        task = asyncio.create_task(read_fd(reader, len(job)), name="printer")
        await fifo_transport.write(job)
        assert await task == job
    finally:
        os.close(reader)


async def test_reply_is_read_from_the_device(
    fifo: Path, fifo_transport: DeviceFileTransport
) -> None:
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"\x12\x00")
        assert await fifo_transport.read(16, timeout=2) == b"\x12\x00"
        with pytest.raises(TransportTimeout):
            await fifo_transport.read(16, timeout=0.05)
    finally:
        os.close(writer)


async def test_write_times_out_when_the_printer_stops_taking_data(
    fifo_transport: DeviceFileTransport,
) -> None:
    # Nobody reads the FIFO: its 64 KiB buffer fills, as usblp's does when the printer stalls.
    with pytest.raises(TransportTimeout, match="accepted no data for 0.1 s"):
        await fifo_transport.write(bytes(1024 * 1024), timeout=0.1)


async def test_pty_device_both_ways(pty_slave: tuple[int, str]) -> None:
    master, name = pty_slave
    transport = create_transport(f"file://{name}")
    await transport.open()
    try:
        await transport.write(b"\x00\x1b\x69\x53\r\n")
        assert await read_fd(master, 6) == b"\x00\x1b\x69\x53\r\n"
        os.write(master, bytes(range(32)))
        assert await read_exactly(transport, 32, timeout=2) == bytes(range(32))
    finally:
        await transport.close()


async def test_regular_file_collects_the_output(tmp_path: Path) -> None:
    out = tmp_path / "capture.bin"
    out.write_bytes(b"")
    transport = create_transport(f"file://{out}")
    await transport.open()
    try:
        await transport.write(b"^XA^FDhello^FS^XZ")
        await transport.write(b"\x00" * 10000)
        with pytest.raises(TransportTimeout, match="end of file"):
            await transport.read(1, timeout=0.5)
    finally:
        await transport.close()
    assert out.read_bytes() == b"^XA^FDhello^FS^XZ" + b"\x00" * 10000


async def test_falls_back_to_write_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lp0"
    out.write_bytes(b"")
    real_open = os.open

    def no_read_access(path: str, flags: int, *args: int) -> int:
        if path == str(out) and flags & os.O_ACCMODE == os.O_RDWR:
            raise PermissionError(13, "Permission denied")  # udev granted write access only
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_read_access)
    transport = DeviceFileTransport(FileTarget(str(out)))
    await transport.open()
    try:
        assert not transport.readable
        await transport.write(b"label")
        with pytest.raises(TransportError, match="write-only"):
            await transport.read(1, timeout=0.1)
    finally:
        await transport.close()
    assert out.read_bytes() == b"label"


async def test_missing_device_has_a_clear_error(tmp_path: Path) -> None:
    transport = create_transport(f"file://{tmp_path}/usb/lp0")
    with pytest.raises(TransportError, match="does not exist \\(printer off or unplugged\\?\\)"):
        await transport.open()


async def test_directory_is_refused(tmp_path: Path) -> None:
    transport = create_transport(f"file://{tmp_path}")
    with pytest.raises(TransportError, match="Is a directory"):
        await transport.open()


async def test_close_releases_the_fd_and_is_idempotent(fifo: Path) -> None:
    before = open_fds()
    transport = DeviceFileTransport(FileTarget(str(fifo)))
    await transport.open()
    assert open_fds() == before + 1
    await transport.close()
    await transport.close()
    assert open_fds() == before
    with pytest.raises(TransportClosed):
        await transport.write(b"x")


# --- file:// URIs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file:///dev/usb/lp0", "/dev/usb/lp0"),
        ("FILE:///dev/usb/lp1", "/dev/usb/lp1"),
        ("file://localhost/dev/usb/lp0", "/dev/usb/lp0"),
        ("file:///dev/printers/zebra%20one", "/dev/printers/zebra one"),
    ],
)
def test_parse_file(uri: str, path: str) -> None:
    assert parse_connection(uri) == FileTarget(path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file://dev/usb/lp0", "after three slashes, for example file:///dev/usb/lp0"),
        ("file://", "absolute device path"),
        ("file:///dev/usb/lp0?mode=w", "unknown option 'mode'"),
    ],
)
def test_parse_bad_file(uri: str, message: str) -> None:
    with pytest.raises(ConnectionUriError, match=message):
        parse_connection(uri)
