"""The job a driver prints: pages rendered one at a time on the render thread, progress, stop.

While the driver sends page N the next page is rendered, and no more than `KEPT_PAGES` rendered
pages are held, so a long document costs the memory of two pages, not of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agent.documents import DocumentError
from agent.job_store import JobRow
from agent.machine import Machine
from drivers.base import LabelPrinterDriver, PageFormat, PrintFailed, RenderOptions

if TYPE_CHECKING:
    from PIL.Image import Image

    from agent.render import RenderResult

# The page being sent and the next one. A document of this many pages or fewer stays rendered for
# all its copies.
KEPT_PAGES = 2

# pdfium renders one page at a time anyway (it is not thread-safe); one thread also keeps the
# render buffers in one malloc arena instead of one per executor thread.
RENDER_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


class PageSource(Protocol):
    """A document opened for printing: its pages, rendered on request (blocking calls)."""

    @property
    def page_count(self) -> int: ...

    def render_page(self, index: int) -> Image:
        """Page `index` as a 1-bit image; raises DocumentError if it cannot be drawn."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RenderedPages:
    """Pages rendered all at once (as when a job is accepted), served as a `PageSource`."""

    result: RenderResult

    @property
    def page_count(self) -> int:
        """Pages in the document."""
        return len(self.result.pages)

    def render_page(self, index: int) -> Image:
        """The page, already rendered."""
        return self.result.pages[index]

    def close(self) -> None:
        """Nothing to release."""


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


@dataclass(frozen=True, slots=True)
class Rendered:
    """Pages rendered for one page format and set of options."""

    page_format: PageFormat
    options: RenderOptions
    result: RenderResult


def render_for(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    earlier: Rendered | None = None,
) -> Rendered:
    """Render a document for a machine's printer (blocking: call in a thread).

    `earlier` is reused when the printer's page format and options have not changed since.
    """
    from agent.render import render_document  # noqa: PLC0415 - pdfium and Pillow load on first use

    driver = machine.driver
    assert isinstance(driver, LabelPrinterDriver)  # noqa: S101 - callers check the driver
    page_format = driver.page_format(machine)
    chosen = render_options(driver, machine, options)
    if earlier is not None and (earlier.page_format, earlier.options) == (page_format, chosen):
        return earlier
    return Rendered(
        page_format, chosen, render_document(document, content_type, page_format, chosen)
    )


async def in_render_thread(
    machine: Machine,
    document: bytes,
    content_type: str,
    options: Mapping[str, Any],
    earlier: Rendered | None = None,
) -> Rendered:
    """`render_for` on the render thread."""
    call = functools.partial(render_for, machine, document, content_type, options, earlier)
    return await asyncio.get_running_loop().run_in_executor(RENDER_EXECUTOR, call)


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
        self._source = source
        self._pages: dict[int, asyncio.Future[Image]] = {}

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
        """Page `index`, rendered on the render thread; the next page starts rendering now."""
        if self._source is None or not 0 <= index < self._source.page_count:
            raise IndexError(f"page {index} is not in this job")
        future = self._pages.get(index) or self._render(index)
        try:
            page = await asyncio.shield(future)
        except DocumentError as err:
            raise PrintFailed(str(err)) from err
        following = (index + 1) % self._source.page_count
        if following not in self._pages and (following > index or self.copies > 1):
            self._render(following, keep=index)
        self.report_activity()
        return page

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

    def _render(self, index: int, keep: int | None = None) -> asyncio.Future[Image]:
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
        future = loop.run_in_executor(RENDER_EXECUTOR, self._source.render_page, index)
        self._pages[index] = future
        return future
