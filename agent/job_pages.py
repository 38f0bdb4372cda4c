"""The job a driver prints: pages rendered one at a time on the render thread, progress, stop.

While the driver sends page N the next page is rendered, and no more than `KEPT_PAGES` rendered
pages are held, so a long document costs the memory of two pages, not of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from agent.documents import DocumentError, RenderLimits, flatten
from agent.machine import Machine
from agent.storage.jobs import JobRow
from drivers.base import LabelPrinterDriver, PrintFailed, RenderOptions

if TYPE_CHECKING:
    from PIL.Image import Image

    from agent.render import PageSource as RenderSource

# The page being sent and the next one. A document of this many pages or fewer stays rendered for
# all its copies.
KEPT_PAGES = 2

# pdfium renders one page at a time anyway (it is not thread-safe); one thread also keeps the
# render buffers in one malloc arena instead of one per executor thread.
RENDER_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


class PageSource(Protocol):
    """A document opened for printing (`agent.render.PageSource`); blocking calls."""

    @property
    def page_count(self) -> int: ...

    def render_planes(self, index: int) -> tuple[Image, ...]:
        """Page `index` as 1-bit colour planes; raises DocumentError if it cannot be drawn."""
        ...

    def close(self) -> None: ...


def render_options(
    driver: LabelPrinterDriver, machine: Machine, options: Mapping[str, Any]
) -> RenderOptions:
    """The driver's defaults for this machine, overridden by the job's own options."""
    defaults = driver.render_options(machine)
    return RenderOptions(
        threshold=int(options.get("threshold", defaults.threshold)),
        dither=bool(options.get("dither", defaults.dither)),
        rotation=options.get("rotation", defaults.rotation),
    )


def open_for(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    limits: RenderLimits,
) -> RenderSource:
    """Open a document for a machine's printer without rendering it (blocking: render thread).

    Raises DocumentError for a document that cannot be printed; whatever the driver's
    `page_format` or `render_options` raise passes through.
    """
    from agent.render import open_document  # noqa: PLC0415 - pdfium and Pillow load on first use

    driver = machine.driver
    assert isinstance(driver, LabelPrinterDriver)  # noqa: S101 - callers check the driver
    return open_document(
        document,
        content_type,
        driver.page_format(machine),
        render_options(driver, machine, options),
        limits,
    )


async def open_in_render_thread(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    limits: RenderLimits,
) -> RenderSource:
    """`open_for` on the render thread."""
    call = functools.partial(open_for, machine, document, content_type, options, limits)
    return await asyncio.get_running_loop().run_in_executor(RENDER_EXECUTOR, call)


async def check_document(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    limits: RenderLimits,
) -> tuple[int, tuple[str, ...]]:
    """Pages and warnings of a document for a machine, checked without rendering a page."""

    def check() -> tuple[int, tuple[str, ...]]:
        with open_for(machine, document, content_type, options, limits) as source:
            return source.page_count, source.warnings

    return await asyncio.get_running_loop().run_in_executor(RENDER_EXECUTOR, check)


class ActiveJob:
    """The job a driver is printing (implements `drivers.base.PrintJob`)."""

    def __init__(
        self,
        row: JobRow,
        *,
        raw: bytes | None,
        source: PageSource | None,
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
        self._source = source
        self._pages: dict[int, asyncio.Future[tuple[Image, ...]]] = {}
        self._served = 0

    @property
    def page_count(self) -> int:
        """Pages in the document; 0 for raw jobs."""
        return self._source.page_count if self._source is not None else 0

    @property
    def labels(self) -> int:
        """Labels the whole job prints: pages x copies (a raw job: one per copy)."""
        return self.page_count * self.copies if self._source is not None else self.copies

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
        if len(planes) == 1:
            return planes[0]
        return await asyncio.get_running_loop().run_in_executor(RENDER_EXECUTOR, flatten, planes)

    async def planes(self, index: int) -> tuple[Image, ...]:
        """Page `index`'s colour planes, rendered on the render thread; the next page starts now."""
        if self._source is None or not 0 <= index < self._source.page_count:
            raise IndexError(f"page {index} is not in this job")
        future = self._pages.get(index) or self._render(index)
        try:
            planes = await asyncio.shield(future)
        except DocumentError as err:
            raise PrintFailed(str(err)) from err
        # Pages are asked for in label order: the next label shows the next page.
        self._served += 1
        following = (index + 1) % self._source.page_count
        more = self.first_label + self._served < self.labels
        if more and not self.stop_requested and following not in self._pages:
            self._render(following, keep=index)
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
        for future in self._pages.values():
            future.cancel()
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a failed prefetch nobody awaited is no error
        self._pages.clear()
        source, self._source = self._source, None
        if source is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await loop.run_in_executor(RENDER_EXECUTOR, source.close)

    def _render(self, index: int, keep: int | None = None) -> asyncio.Future[tuple[Image, ...]]:
        assert self._source is not None  # noqa: S101 - checked by the caller
        for old in list(self._pages):
            if len(self._pages) < KEPT_PAGES:
                break
            if old != keep:
                dropped = self._pages.pop(old)
                dropped.cancel()
                if dropped.done() and not dropped.cancelled():
                    dropped.exception()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(RENDER_EXECUTOR, self._source.render_planes, index)
        self._pages[index] = future
        return future
