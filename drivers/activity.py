"""Signs of life during a print: each chunk the printer takes and each reply it sends is reported.

The agent stops a job that shows no progress for a while (its stall watchdog). A large job on a
slow link (a 34 KB raw job at 9600 baud takes 36 s) is still progressing while one `write` call
lasts, so writes go out in chunks and every chunk counts.
"""

from __future__ import annotations

from drivers.base import PrintJob
from drivers.transport import WRITE_TIMEOUT, Transport

# At 9600 baud (~960 B/s) a chunk takes about a second: progress is seen every second or so.
ACTIVITY_CHUNK = 1024


class ReportingTransport:
    """A transport that calls `job.report_activity()` for every chunk written and reply read."""

    def __init__(self, inner: Transport, job: PrintJob) -> None:
        self._inner = inner
        self._job = job

    @property
    def name(self) -> str:
        """The wrapped transport's name."""
        return self._inner.name

    @property
    def is_open(self) -> bool:
        """Whether the wrapped transport is open."""
        return self._inner.is_open

    async def open(self) -> None:
        """Open the wrapped transport."""
        await self._inner.open()

    async def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:  # noqa: ASYNC109 - per-call timeout is the contract
        """Write in chunks, reporting each one the printer took."""
        for start in range(0, len(data), ACTIVITY_CHUNK):
            await self._job.before_write()
            await self._inner.write(data[start : start + ACTIVITY_CHUNK], timeout)
            self._job.report_activity()

    async def read(self, n: int, timeout: float) -> bytes:  # noqa: ASYNC109 - per-call timeout is the contract
        """Read, reporting the printer's answer."""
        data = await self._inner.read(n, timeout)
        self._job.report_activity()
        return data

    def unread(self, data: bytes) -> None:
        """Push bytes back into the wrapped transport."""
        self._inner.unread(data)

    async def close(self) -> None:
        """Close the wrapped transport."""
        await self._inner.close()


def reporting(transport: Transport, job: PrintJob) -> Transport:
    """`transport`, with every chunk written and every reply read reported to `job`."""
    return ReportingTransport(transport, job)
