"""Serial transport: pyserial opens and configures the port in a thread, the loop polls its fd."""

from __future__ import annotations

import errno
import os
from typing import Any

import serial

from drivers.transport.base import (
    CLOSE_TIMEOUT,
    BaseTransport,
    TransportClosed,
    TransportError,
)
from drivers.transport.fdio import FdStream
from drivers.transport.threads import run_in_thread
from drivers.transport.uri import SerialTarget

# Opening a USB-serial adapter can block while its driver probes the chip or a Bluetooth
# rfcomm link is set up; 5 s covers both, anything longer is a dead adapter.
OPEN_TIMEOUT = 5.0


class SerialTransport(BaseTransport):
    """A serial port (USB-serial adapter, UART, Bluetooth rfcomm, pty) at fixed line settings.

    pyserial only opens the port and sets termios; reads and writes then go through the event
    loop's poller on the port's non-blocking fd (see `FdStream`) instead of a thread per port: a
    stalled printer (CTS low, XOFF) then costs no blocked thread, and cancellation is immediate.
    """

    def __init__(self, target: SerialTarget) -> None:
        super().__init__()
        self.target = target
        self._port: Any = None
        self._stream: FdStream | None = None

    @property
    def name(self) -> str:
        return str(self.target)

    async def _open(self) -> None:
        port = await run_in_thread(
            self._open_port,
            deadline=OPEN_TIMEOUT,
            what=f"opening {self.target.device}",
            discard=_close_port,
        )
        self._port = port
        self._stream = FdStream(port.fileno(), self.name)

    async def _write_chunk(self, chunk: memoryview, timeout: float) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        await self._live_stream().write(chunk, timeout)

    async def _read_some(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        return await self._live_stream().read(n, timeout)

    async def _close(self) -> None:
        port, self._port = self._port, None
        if self._stream is not None:
            self._stream.detach()
            self._stream = None
        if port is not None:
            # A real UART's close waits for its output buffer to drain (closing_wait, up to 30 s).
            await run_in_thread(
                lambda: _close_port(port), deadline=CLOSE_TIMEOUT, what=f"closing {self.name}"
            )

    def _live_stream(self) -> FdStream:
        if self._stream is None:
            raise TransportClosed(f"{self.name} is not open")
        return self._stream

    def _open_port(self) -> Any:
        target = self.target
        try:
            port = serial.Serial(
                port=target.device,
                baudrate=target.baudrate,
                bytesize=target.bytesize,
                parity=target.parity,
                stopbits=target.stopbits,
                rtscts=target.rtscts,
                xonxoff=target.xonxoff,
                dsrdtr=target.dsrdtr,
                timeout=0,
                write_timeout=0,
                # flock: a second process (or a second machine with the same port) fails to open
                # instead of interleaving bytes with ours.
                exclusive=True,
            )
        except (OSError, ValueError) as err:
            raise TransportError(_open_error(target.device, err)) from err
        try:
            os.set_blocking(port.fileno(), False)
            # Bytes the printer sent before we opened (boot banners, old replies) are stale.
            port.reset_input_buffer()
        except Exception:
            port.close()
            raise
        return port


def _close_port(port: Any) -> None:
    port.close()


def _open_error(device: str, err: OSError | ValueError) -> str:
    code = getattr(err, "errno", None)
    if code == errno.ENOENT:
        return f"serial port {device} does not exist (adapter unplugged?)"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied on {device}: add the service user to the 'dialout' group"
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return f"serial port {device} is in use by another program"
    if isinstance(err, ValueError):
        return f"serial port {device}: {err}"
    return f"cannot open serial port {device}: {err.strerror or err}"
