"""Rendering in a child process whose memory is capped, so no document can exhaust the host's.

The checks in `agent.render` refuse the known decompression bombs before decoding, but a PDF has
more ways to inflate (compressed content streams of millions of drawing operators, object
streams, patterns, fonts): a 23 kB PDF can make pdfium allocate half a gigabyte. The renderer
therefore runs in one long-lived child process (`python -m agent.render_worker`) with
RLIMIT_DATA set; when a document needs more, an allocation fails, the child dies (pdfium aborts)
or reports it (Python's MemoryError), and the document is refused. The child is started on first
use and again after it died; it exits when its pipe closes, so it never outlives the daemon.

The parent side is blocking and meant for the render thread; one lock serialises the exchanges.
Messages are length-prefixed JSON headers with a binary payload (the document, a packed 1-bit
page): the child handles hostile input, so nothing it sends is unpickled or executed.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from typing import IO, Any, cast

from PIL import Image

from agent.documents import DocumentError, PageSource, RenderLimits
from drivers.base import PageFormat, RenderOptions

# A worker that has not said it is ready after this long is broken, not slow (a cold start is
# an interpreter, pypdfium2 and Pillow: well under a second, a few on a loaded Raspberry Pi).
START_TIMEOUT_S = 30.0
# A stopped worker gets this long to exit after its pipe closes, then it is killed.
STOP_TIMEOUT_S = 2.0
_HEADER = struct.Struct(">I")
_PAYLOAD = struct.Struct(">Q")
_MAX_HEADER_BYTES = 1 << 20
_READY = "ready"
# SIGALRM (whose default action ends the process) is set this many seconds past a request's
# deadline: the daemon kills a late worker itself, this covers a daemon that is gone.
_ALARM_GRACE_S = 5


class _WorkerDied(Exception):
    """The child exited, or stopped answering in time, during an exchange."""


class _WorkerLate(_WorkerDied):
    """The child did not answer within the request's time."""


class _WorkerGone(_WorkerDied):
    """The child had exited before the request was sent: the request is not to blame."""


class _Worker:
    """One child process and its pipes."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "agent.render_worker", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        # Both pipes were asked for above: Popen sets them.
        self._stdin = cast(IO[bytes], self.process.stdin)
        self._stdout_fd = cast(IO[bytes], self.process.stdout).fileno()
        try:
            header, _ = self._receive(time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            self.process.kill()
            self.stop()
            raise
        if header.get("ok") != _READY:
            self.process.kill()
            self.stop()
            raise _WorkerDied(f"the render worker did not start: {header}")

    def exchange(
        self, header: dict[str, Any], payload: bytes, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        # The worker stops itself a little after the deadline, should nobody be left to kill it.
        data = json.dumps({**header, "seconds": timeout}).encode()
        try:
            self._stdin.write(_HEADER.pack(len(data)) + data + _PAYLOAD.pack(len(payload)))
            self._stdin.write(payload)
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise _WorkerGone("the render worker is gone") from err
        return self._receive(time.monotonic() + timeout)

    def _receive(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        if size > _MAX_HEADER_BYTES:
            raise _WorkerDied(f"the render worker sent a header of {size} bytes")
        header = json.loads(self._read(size, deadline))
        (size,) = _PAYLOAD.unpack(self._read(_PAYLOAD.size, deadline))
        return header, self._read(size, deadline)

    def _read(self, count: int, deadline: float) -> bytes:
        chunks = []
        while count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._stdout_fd], [], [], remaining)[0]:
                raise _WorkerLate("the render worker did not answer in time")
            chunk = os.read(self._stdout_fd, min(count, 1 << 20))
            if not chunk:
                raise _WorkerDied("the render worker exited")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class _Pool:
    """The one worker of this process: started on demand, replaced when it dies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        # Bumped each time a worker is started: documents opened in an earlier one reopen.
        self.generation = 0
        self._next_id = 0
        # Documents dropped without close(); closed in the worker at the next exchange.
        self.orphans: list[tuple[int, int]] = []

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def call(
        self,
        limits: RenderLimits,
        header: dict[str, Any],
        payload: bytes = b"",
    ) -> tuple[dict[str, Any], bytes]:
        """One request and its answer (the lock held by the caller); raises on a failed request."""
        memory = limits.max_memory_bytes
        if memory is None:
            raise ValueError("the render worker needs a memory cap; render in process without one")
        retry = header.get("op") == "open"
        while True:
            worker = self.running(memory, limits)
            try:
                answer, data = worker.exchange(header, payload, limits.max_seconds)
                break
            except _WorkerGone:
                # It died after its last answer (killed from outside): once more, in a new one.
                self._discard(kill=True)
                if not retry:
                    raise DocumentError("the render worker stopped; try again") from None
                retry = False
            except _WorkerDied as err:
                # Dead, or busy with what it was asked for too long: either way, not waited for.
                self._discard(kill=True)
                raise DocumentError(_died_message(limits, err)) from err
        if answer.get("ok") is True:
            return answer, data
        if answer.get("restart"):
            self._discard()
        kind, message = answer.get("kind"), str(answer.get("error"))
        if kind == "document":
            raise DocumentError(message)
        if kind == "index":
            raise IndexError(message)
        if kind == "value":
            raise ValueError(message)
        raise RuntimeError(f"the render worker failed: {message}")

    def running(self, memory: int, limits: RenderLimits) -> _Worker:
        """The worker, started if there is none or it has exited or has another memory cap."""
        if self.worker is not None and (
            self.worker.process.poll() is not None or self.worker.memory_bytes != memory
        ):
            self._discard()
        if self.worker is None:
            try:
                self.worker = _Worker(memory)
            except (OSError, _WorkerDied) as err:
                raise RuntimeError(f"the render worker cannot start: {err}") from err
            self.generation += 1
            self.orphans.clear()
        self._close_orphans(self.worker, limits)
        return self.worker

    def _close_orphans(self, worker: _Worker, limits: RenderLimits) -> None:
        orphans = [doc for generation, doc in self.orphans if generation == self.generation]
        self.orphans.clear()
        for doc in orphans:
            with contextlib.suppress(_WorkerDied):
                worker.exchange({"op": "close", "doc": doc}, b"", limits.max_seconds)

    def _discard(self, *, kill: bool = False) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            if kill:
                worker.process.kill()
            worker.stop()

    def stop(self) -> None:
        with self.lock:
            self._discard()

    def worker_stop(self) -> None:
        """Stop the worker; the caller holds the lock."""
        self._discard()


_POOL = _Pool()


@atexit.register
def _stop_at_exit() -> None:
    # A render thread may still hold the lock at exit: then the worker is killed, not asked.
    if _POOL.lock.acquire(timeout=STOP_TIMEOUT_S):
        try:
            _POOL.worker_stop()
        finally:
            _POOL.lock.release()
    elif _POOL.worker is not None:
        _POOL.worker.process.kill()


def worker_process() -> subprocess.Popen[bytes] | None:
    """The render worker's process while one is started, else None."""
    worker = _POOL.worker
    return worker.process if worker is not None else None


def stop_worker() -> None:
    """Stop the render worker (it starts again on the next document)."""
    _POOL.stop()


def _died_message(limits: RenderLimits, err: _WorkerDied) -> str:
    if isinstance(err, _WorkerLate):
        return f"the document took longer than {limits.max_seconds:g} s to render"
    mib = (limits.max_memory_bytes or 0) // (1 << 20)
    return f"the document cannot be rendered within {mib} MiB of memory (or it is damaged)"


class IsolatedPages(PageSource):
    """A page source whose document is open in the render worker."""

    def __init__(
        self,
        document: bytes,
        content_type: str,
        page_format: PageFormat,
        options: RenderOptions,
        limits: RenderLimits,
    ) -> None:
        self._request = {
            "op": "open",
            "content_type": content_type,
            "page_format": dataclasses.asdict(page_format),
            "options": dataclasses.asdict(options),
            "limits": dataclasses.asdict(limits),
        }
        self._document: bytes | None = document
        self._limits = limits
        self._doc = 0
        self._generation = 0
        with _POOL.lock:
            answer = self._open()
        self.page_count: int = int(answer["page_count"])
        self.warnings: tuple[str, ...] = tuple(str(w) for w in answer["warnings"])
        self._finalizer = weakref.finalize(self, _orphan, self._generation, self._doc)

    def _open(self) -> dict[str, Any]:
        if self._document is None:
            raise ValueError("the document is closed")
        doc = _POOL.new_id()
        answer, _ = _POOL.call(self._limits, {**self._request, "doc": doc}, self._document)
        self._doc, self._generation = doc, _POOL.generation
        return answer

    def render_planes(self, index: int) -> tuple[Image.Image, ...]:
        """One page's colour planes, mode "1"; the document is opened again after a restart."""
        if self._document is None:
            raise ValueError("the document is closed")
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} is outside the document's {self.page_count}")
        memory = self._limits.max_memory_bytes
        if memory is None:
            raise ValueError("the render worker needs a memory cap; render in process without one")
        with _POOL.lock:
            _POOL.running(memory, self._limits)  # a worker that died is replaced first
            if self._generation != _POOL.generation:
                self._finalizer.detach()
                self._open()
                self._finalizer = weakref.finalize(self, _orphan, self._generation, self._doc)
            answer, data = _POOL.call(
                self._limits, {"op": "render", "doc": self._doc, "index": index}
            )
        return _unpack_planes(answer, data)

    def close(self) -> None:
        """Free the document in the worker; safe to call twice."""
        if self._document is None:
            return
        self._document = None
        self._finalizer.detach()
        with _POOL.lock:
            if self._generation == _POOL.generation and _POOL.worker is not None:
                with contextlib.suppress(DocumentError):
                    _POOL.call(self._limits, {"op": "close", "doc": self._doc})


def _unpack_planes(answer: dict[str, Any], data: bytes) -> tuple[Image.Image, ...]:
    """The planes of a "render" answer: `planes` packed 1-bit images of `size`, one after another."""
    width, height = answer["size"]
    count = int(answer["planes"])
    size = (width + 7) // 8 * height
    if count < 1 or len(data) != count * size:
        raise RuntimeError(f"the render worker sent {len(data)} bytes for {count} planes")
    return tuple(
        Image.frombytes("1", (width, height), data[i * size : (i + 1) * size]) for i in range(count)
    )


def _page_format(fields: dict[str, Any]) -> PageFormat:
    """A `PageFormat` from its JSON form (colours come as a list)."""
    return PageFormat(**{**fields, "colors": tuple(fields["colors"])})


def _orphan(generation: int, doc: int) -> None:
    # Runs at garbage collection, possibly while this thread holds the lock: only note it.
    _POOL.orphans.append((generation, doc))


# The child's side.


def _serve(memory_bytes: int) -> None:
    """Answer requests on stdin/stdout until stdin closes."""
    import resource  # the child's alone

    from agent.render import open_in_process  # the child's alone

    # Ctrl-C in a terminal reaches the whole process group: the daemon decides when this stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the protocol stream.
    sys.stdout = sys.stderr
    documents: dict[int, Any] = {}

    def send(header: dict[str, Any], payload: bytes = b"") -> None:
        data = json.dumps(header).encode()
        stdout.write(_HEADER.pack(len(data)) + data + _PAYLOAD.pack(len(payload)))
        stdout.write(payload)
        stdout.flush()

    send({"ok": _READY})
    while True:
        head = stdin.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        header = json.loads(stdin.read(_HEADER.unpack(head)[0]))
        (size,) = _PAYLOAD.unpack(stdin.read(_PAYLOAD.size))
        payload = stdin.read(size)
        signal.alarm(math.ceil(header.get("seconds", 0)) + _ALARM_GRACE_S)
        try:
            op = header["op"]
            if op == "open":
                source = open_in_process(
                    payload,
                    header["content_type"],
                    _page_format(header["page_format"]),
                    RenderOptions(**header["options"]),
                    RenderLimits(**header["limits"]),
                )
                documents[header["doc"]] = source
                send({"ok": True, "page_count": source.page_count, "warnings": source.warnings})
            elif op == "render":
                planes = documents[header["doc"]].render_planes(header["index"])
                payload = b"".join(plane.tobytes() for plane in planes)
                send({"ok": True, "size": planes[0].size, "planes": len(planes)}, payload)
            elif op == "close":
                source = documents.pop(header["doc"], None)
                if source is not None:
                    source.close()
                send({"ok": True})
            else:
                send({"ok": False, "kind": "internal", "error": f"unknown operation {op!r}"})
        except DocumentError as err:
            send({"ok": False, "kind": "document", "error": str(err)})
        except MemoryError:
            mib = memory_bytes // (1 << 20)
            message = f"the document cannot be rendered within {mib} MiB of memory"
            send({"ok": False, "kind": "document", "error": message, "restart": True})
            return
        except IndexError as err:
            send({"ok": False, "kind": "index", "error": str(err)})
        except ValueError as err:
            send({"ok": False, "kind": "value", "error": str(err)})
        except Exception as err:  # noqa: BLE001 - the parent reports it; this process goes on
            send({"ok": False, "kind": "internal", "error": f"{type(err).__name__}: {err}"})
        finally:
            signal.alarm(0)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
