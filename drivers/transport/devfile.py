"""Device-file transport: a printer behind a kernel driver, such as usblp's `/dev/usb/lp0`."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import structlog

from drivers.transport.base import (
    CLOSE_TIMEOUT,
    BaseTransport,
    TransportClosed,
    TransportError,
)
from drivers.transport.fdio import FdStream
from drivers.transport.threads import run_in_thread
from drivers.transport.uri import FileTarget

log = structlog.get_logger(__name__)

# open() on a device node returns at once unless the driver probes the printer (usblp fetches
# its IEEE 1284 device id); 5 s is ample for that.
OPEN_TIMEOUT = 5.0

# O_APPEND: a regular file collects every connection's output instead of overwriting it.
_OPEN_FLAGS = os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_APPEND
# A file outside /dev that does not exist yet is created (an output capture); a missing device
# node means the printer is off or unplugged and is never created as a plain file.
_DEVICE_DIR = "/dev"
_CREATED_FILE_MODE = 0o640
# Read-write fails but write-only may work: a udev rule granting only write, or a node that
# cannot be read back.
_WRITE_ONLY_FALLBACK = frozenset({errno.EACCES, errno.EPERM, errno.EINVAL, errno.EROFS})


class DeviceFileTransport(BaseTransport):
    """A character device, FIFO or regular file, opened read-write (write-only if it must).

    A regular file outside /dev is created if missing and appended to (capturing output).

    usblp honours O_NONBLOCK and poll, so the fd goes through the loop's poller like a serial
    port; a regular file (for testing a driver's output) is written through a thread.
    """

    def __init__(self, target: FileTarget) -> None:
        super().__init__()
        self.target = target
        self._fd: int | None = None
        self._stream: FdStream | None = None
        self._readable = False

    @property
    def name(self) -> str:
        return str(self.target)

    @property
    def readable(self) -> bool:
        """False when only write access was granted: the printer cannot report status."""
        return self._readable

    async def _open(self) -> None:
        fd, readable, pollable = await run_in_thread(
            self._open_fd,
            deadline=OPEN_TIMEOUT,
            what=f"opening {self.target.path}",
            discard=lambda opened: _close(opened[0]),
        )
        self._fd, self._readable = fd, readable
        self._stream = FdStream(fd, self.name, pollable=pollable)
        if not readable:
            log.info("device_write_only", connection=self.name)

    async def _write_chunk(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        await self._live_stream().write(chunk, timeout)

    async def _read_some(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        stream = self._live_stream()
        if not self._readable:
            raise TransportError(
                f"{self.name} is open write-only; the printer cannot be read (turn STATUS_QUERY off)"
            )
        return await stream.read(n, timeout)

    async def _close(self) -> None:
        fd, self._fd = self._fd, None
        if self._stream is not None:
            self._stream.detach()
            self._stream = None
        if fd is not None:
            await run_in_thread(
                lambda: _close(fd), deadline=CLOSE_TIMEOUT, what=f"closing {self.name}"
            )

    def _live_stream(self) -> FdStream:
        if self._stream is None:
            raise TransportClosed(f"{self.name} is not open")
        return self._stream

    def _open_fd(self) -> tuple[int, bool, bool]:
        path = self.target.path
        flags = _OPEN_FLAGS
        if not Path(path).resolve().is_relative_to(_DEVICE_DIR):
            flags |= os.O_CREAT
        readable = True
        try:
            try:
                fd = os.open(path, os.O_RDWR | flags, _CREATED_FILE_MODE)
            except OSError as err:
                if err.errno not in _WRITE_ONLY_FALLBACK:
                    raise
                fd, readable = os.open(path, os.O_WRONLY | flags, _CREATED_FILE_MODE), False
        except OSError as err:
            raise TransportError(_open_error(path, err)) from err
        # fstat on an fd we just opened cannot fail.
        return fd, readable, not stat.S_ISREG(os.fstat(fd).st_mode)


def _close(fd: int) -> None:
    os.close(fd)


def _open_error(path: str, err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return f"{path} does not exist (printer off or unplugged?)"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on {path}: add the service user to the 'lp' group"
    if err.errno in (errno.ENXIO, errno.ENODEV):
        return f"{path} has no device behind it (printer off or unplugged?)"
    if err.errno == errno.EBUSY:
        return f"{path} is in use by another program"
    return f"cannot open {path}: {err.strerror or err}"
