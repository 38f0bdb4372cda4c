"""The render worker: documents render in a child process whose memory and time are capped.

A PDF can make its decoder allocate far more than any check made before rendering can see (a
23 kB file of 900,000 drawing operators parses into about 400 MB): the worker's memory limit
refuses it, and the worker comes back for the next document.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import render_worker
from agent.render import DocumentError, PageSource, RenderLimits, open_document
from drivers.base import PageFormat, RenderOptions
from tests.handmade_pdf import drawing_bomb_pdf, text_labels_pdf
from tests.waiting import wait_until_blocking

PDF = "application/pdf"
PAGE_FORMAT = PageFormat(dpi=300, width_dots=732, height_dots=342)
REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = RenderLimits(max_memory_bytes=160 * 1024 * 1024)
EXIT_DEADLINE_S = 10.0


def open_pdf(data: bytes, limits: RenderLimits = SMALL) -> PageSource:
    return open_document(data, PDF, PAGE_FORMAT, RenderOptions(), limits)


def test_a_document_that_needs_more_memory_than_allowed_is_refused() -> None:
    bomb = drawing_bomb_pdf(900_000)
    assert len(bomb) < 50_000
    with pytest.raises(DocumentError, match="cannot be rendered within 160 MiB of memory"):
        open_pdf(bomb)


def test_documents_open_before_the_worker_died_still_render() -> None:
    labels = text_labels_pdf(3)
    with open_pdf(labels, RenderLimits(max_memory_bytes=None)) as in_process:
        expected = [in_process.render_page(i).tobytes() for i in range(3)]
    with open_pdf(labels) as source:
        assert source.render_page(0).tobytes() == expected[0]
        with pytest.raises(DocumentError, match="memory"):
            open_pdf(drawing_bomb_pdf(900_000))
        # A new worker: the document is opened again there, transparently.
        assert source.render_page(2).tobytes() == expected[2]
        assert source.render_page(1).tobytes() == expected[1]
    with open_pdf(labels) as again:
        assert again.page_count == 3


def test_a_document_that_takes_too_long_is_refused() -> None:
    slow = drawing_bomb_pdf(200_000)
    with pytest.raises(DocumentError, match=r"took longer than 0\.01 s"):
        open_pdf(slow, RenderLimits(max_memory_bytes=SMALL.max_memory_bytes, max_seconds=0.01))
    with open_pdf(text_labels_pdf(1)) as source:
        assert source.page_count == 1


def test_the_worker_exits_with_the_process_that_started_it() -> None:
    script = (
        "from agent import render_worker\n"
        "from tests.test_render_worker import open_pdf\n"
        "from tests.handmade_pdf import text_labels_pdf\n"
        "source = open_pdf(text_labels_pdf(1))\n"
        "print(render_worker.worker_process().pid, flush=True)\n"
        "import os; os._exit(0)\n"  # no clean-up at all: as if killed
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    worker = int(result.stdout.split()[0])
    wait_until_blocking(lambda: not _alive(worker), EXIT_DEADLINE_S, "the worker exited")
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    # The worker is not our child: once it exits, init reaps it and /proc forgets it, or it
    # lingers as a zombie ("Z") until then.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_the_worker_can_be_stopped_and_starts_again() -> None:
    with open_pdf(text_labels_pdf(1)):
        pass
    worker = render_worker.worker_process()
    assert worker is not None
    render_worker.stop_worker()
    assert worker.poll() is not None
    with open_pdf(text_labels_pdf(2)) as source:
        assert source.page_count == 2


def test_a_worker_killed_between_requests_is_replaced_without_failing_anyone() -> None:
    labels = text_labels_pdf(2)
    with open_pdf(labels) as source:
        expected = source.render_page(1).tobytes()
        worker = render_worker.worker_process()
        assert worker is not None
        worker.kill()  # the kernel's OOM killer, or an administrator
        worker.wait()
        assert source.render_page(1).tobytes() == expected
    worker = render_worker.worker_process()
    assert worker is not None
    worker.kill()
    worker.wait()
    with open_pdf(labels) as again:
        assert again.page_count == 2
