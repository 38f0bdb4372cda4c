"""Rendering for the queue: the render thread, the limits of a document, the pages a job holds.

The driver says how to render (`page_format`, `render_options`) on the event loop, where a
failure is contained like any driver hook's; the render thread only gets plain values (bytes, a
PageFormat, RenderOptions, RenderLimits), so no driver code runs there. The render thread hands
the work to the render worker, a child process that is killed when an open or a page takes
longer than the limits' `max_seconds` (`agent.render_worker`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from agent.documents import PageSource, RenderLimits, flatten
from agent.machine import Machine
from drivers.base import LabelPrinterDriver, PageFormat, PrinterUnavailable, RenderOptions

if TYPE_CHECKING:
    from PIL.Image import Image

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The page being sent and the next one. A document of this many pages or fewer stays rendered for
# all its copies.
KEPT_PAGES = 2


class DriverHookFailed(Exception):
    """The driver's `page_format` or `render_options` raised (the message is the driver's)."""


class RenderService:
    """Owns the render thread (from `start` to `close`) and the limits of every document."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self._executor: ThreadPoolExecutor | None = None

    @property
    def timeout(self) -> float:
        """Seconds one open or one page may take before the render worker is killed."""
        return self.limits.max_seconds

    async def start(self) -> None:
        """Create the render thread."""
        # pdfium renders one page at a time anyway (it is not thread-safe); one thread also keeps
        # the render buffers in one malloc arena instead of one per executor thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

    async def close(self) -> None:
        """Stop taking work; a render in progress finishes on its own (bounded by `timeout`)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def layout(
        self, machine: Machine, options: Mapping[str, Any]
    ) -> tuple[PageFormat, RenderOptions]:
        """The machine's page format and its render defaults overridden by the job's options.

        Raises PrinterUnavailable as the driver raised it (such as `MediaMismatch`), and
        DriverHookFailed if the driver's code raises anything else.
        """
        driver = machine.driver
        if not isinstance(driver, LabelPrinterDriver):
            raise DriverHookFailed(f"machine '{machine.name}' has no label-printer driver")
        hook = "page_format"
        try:
            page_format = driver.page_format(machine)
            hook = "render_options"
            defaults = driver.render_options(machine)
        except PrinterUnavailable:
            raise  # the printer cannot take this job now (other media loaded): the job waits
        except Exception as err:  # driver code: contained, shown on the job
            log.warning("driver_hook_failed", hook=hook, machine=machine.name, exc_info=err)
            raise DriverHookFailed(str(err) or type(err).__name__) from err
        return page_format, RenderOptions(
            threshold=int(options.get("threshold", defaults.threshold)),
            dither=bool(options.get("dither", defaults.dither)),
            rotation=options.get("rotation", defaults.rotation),
        )

    async def check(
        self, machine: Machine, document: bytes, content_type: str, options: Mapping[str, Any]
    ) -> tuple[int, tuple[str, ...]]:
        """Pages and warnings of a document for a machine, checked without rendering a page.

        Raises DocumentError for a document that cannot be printed, DriverHookFailed.
        """
        page_format, render_options = self.layout(machine, options)
        limits = self.limits

        def check() -> tuple[int, tuple[str, ...]]:
            with _open(document, content_type, page_format, render_options, limits) as source:
                return source.page_count, source.warnings

        return await self.run(check)

    async def open(
        self, machine: Machine, document: bytes, content_type: str, options: Mapping[str, Any]
    ) -> JobPages:
        """Open a document to print on a machine; its pages render when asked for."""
        page_format, render_options = self.layout(machine, options)
        source = await self.run(
            functools.partial(
                _open, document, content_type, page_format, render_options, self.limits
            )
        )
        return JobPages(self, source)

    async def run(self, call: Callable[[], T]) -> T:
        """`call()` on the render thread."""
        return await self.submit(call)

    def submit(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """`call()` on the render thread, as a future (cancelled: dropped if not started)."""
        if self._executor is None:
            raise RuntimeError("the render service is not running")
        return asyncio.get_running_loop().run_in_executor(self._executor, call)


def _open(
    document: bytes,
    content_type: str,
    page_format: PageFormat,
    options: RenderOptions,
    limits: RenderLimits,
) -> PageSource:
    from agent.render import open_document  # pdfium and Pillow load on first use

    return open_document(document, content_type, page_format, options, limits)


class JobPages:
    """A document opened for one job: each page rendered when asked for, at most two held."""

    def __init__(self, service: RenderService, source: PageSource) -> None:
        self._service = service
        self._source: PageSource | None = source
        self._pages: dict[int, asyncio.Future[tuple[Image, ...]]] = {}
        self.page_count = source.page_count

    async def get(self, index: int) -> tuple[Image, ...]:
        """Page `index`'s colour planes (rendered now, or taken from what `prefetch` started)."""
        future = self._pages.get(index) or self._render(index)
        return await asyncio.shield(future)

    async def flatten(self, planes: tuple[Image, ...]) -> Image:
        """The planes as one 1-bit page (every colour's ink in black), on the render thread."""
        return await self._service.run(functools.partial(flatten, planes))

    def prefetch(self, index: int, keep: int) -> None:
        """Start rendering page `index` unless it is held; page `keep` is not dropped for it."""
        if index not in self._pages:
            self._render(index, keep)

    async def close(self) -> None:
        """Drop rendered pages and close the document (after any render in progress)."""
        for future in self._pages.values():
            _drop(future)
        self._pages.clear()
        source, self._source = self._source, None
        if source is not None:
            try:
                await self._service.run(source.close)
            except Exception:  # closing frees memory; nothing to tell anyone
                log.debug("document_close_failed", exc_info=True)

    def _render(self, index: int, keep: int | None = None) -> asyncio.Future[tuple[Image, ...]]:
        source = self._source
        if source is None:
            raise RuntimeError("the document is closed")
        for old in list(self._pages):
            if len(self._pages) < KEPT_PAGES:
                break
            if old != keep:
                _drop(self._pages.pop(old))
        future = self._service.submit(functools.partial(source.render_planes, index))
        self._pages[index] = future
        return future


def _drop(future: asyncio.Future[Any]) -> None:
    future.cancel()
    if future.done() and not future.cancelled():
        future.exception()  # retrieved: a failed prefetch nobody awaited is no error
