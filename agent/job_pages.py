"""The job a driver prints: its pages (rendered by the render service), progress, stop request.

While the driver sends page N the next page is rendered, and no more than two rendered pages are
held (`agent.render_service.JobPages`), so a long document costs the memory of two pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from agent.documents import DocumentError
from agent.storage.jobs import JobRow
from drivers.base import PrintFailed

if TYPE_CHECKING:
    from PIL.Image import Image

    from agent.render_service import JobPages


class ActiveJob:
    """The job a driver is printing (implements `drivers.base.PrintJob`)."""

    def __init__(
        self,
        row: JobRow,
        *,
        raw: bytes | None,
        pages: JobPages | None,
        first_label: int,
    ) -> None:
        self.pk = row.pk
        self.copies = row.copies
        self.content_type = row.content_type
        self.options: Mapping[str, Any] = row.options
        self.raw = raw
        self.first_label = first_label
        self.progress = first_label
        self.reported = asyncio.Event()
        # Why the agent asked the job to stop (`CANCEL` or `SHUTDOWN`), or None.
        self.stop_reason: str | None = None
        # Set once the attempt is over and its outcome is committed.
        self.done = asyncio.Event()
        self.on_activity: Callable[[], None] | None = None
        # Bytes of this attempt reached the printer (status queries included): a crash now may
        # have printed the label in flight, so the attempt counts as interrupted.
        self.written = False
        self.on_first_write: Callable[[], Awaitable[None]] | None = None
        self._pages = pages
        self._served = 0
        # Pages in the document; 0 for raw jobs.
        self.page_count = pages.page_count if pages is not None else 0
        # Labels the whole job prints: pages x copies (a raw job: one per copy).
        self.labels = self.page_count * self.copies if pages is not None else self.copies

    @property
    def stop_requested(self) -> bool:
        """True once the agent asked the job to stop after the label being sent."""
        return self.stop_reason is not None

    def request_stop(self, reason: str) -> None:
        """Ask the driver to stop after the label it is sending (the first reason stays)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    async def page(self, index: int) -> Image:
        """Page `index` as one plane (every colour's ink in black); see `planes`."""
        planes = await self.planes(index)
        if len(planes) == 1 or self._pages is None:
            return planes[0]
        return await self._pages.flatten(planes)

    async def planes(self, index: int) -> tuple[Image, ...]:
        """Page `index`'s colour planes, rendered on the render thread; the next page starts now."""
        pages = self._pages
        if pages is None or not 0 <= index < pages.page_count:
            raise IndexError(f"page {index} is not in this job")
        try:
            planes = await pages.get(index)
        except DocumentError as err:
            raise PrintFailed(str(err)) from err
        # Pages are asked for in label order: the next label shows the next page.
        self._served += 1
        more = self.first_label + self._served < self.labels
        if more and not self.stop_requested:
            pages.prefetch((index + 1) % pages.page_count, keep=index)
        self.report_activity()
        return planes

    def report_progress(self, labels_printed: int) -> None:
        """Labels printed so far, counted over the whole job."""
        self.report_activity()
        if labels_printed > self.progress:
            self.progress = labels_printed
            self.reported.set()

    def report_activity(self) -> None:
        """The printer took bytes or answered: the job is alive."""
        if self.on_activity is not None:
            self.on_activity()

    async def before_write(self) -> None:
        """Before the first byte goes to the printer, record that this attempt wrote."""
        if not self.written:
            if self.on_first_write is not None:
                await self.on_first_write()
            self.written = True

    async def close(self) -> None:
        """Drop rendered pages and close the document (after any render in progress)."""
        pages, self._pages = self._pages, None
        if pages is not None:
            await pages.close()
