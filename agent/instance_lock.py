"""One daemon per data directory: two on one queue would both print its jobs.

`inventree-edge run` holds an exclusive lock on `<data directory>/daemon.lock` while it runs; the
kernel drops it when the process ends, however it ends. The CLI's user and token commands do not
take it: they may run beside the daemon.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "daemon.lock"


class AlreadyRunning(Exception):
    """Another process holds the data directory's lock."""


class InstanceLock:
    """The held lock; `release` (or process exit) lets the next daemon start."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def lock_data_dir(data_dir: Path) -> InstanceLock:
    """Take the data directory's lock, or raise AlreadyRunning naming the holder.

    Blocking, on a local file: called once at start, before the event loop has other work.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        os.close(descriptor)
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise AlreadyRunning(
            f"another inventree-edge daemon{pid} is already running on the data directory "
            f"{data_dir.resolve()}; stop it first, or give this one its own [storage] path"
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return InstanceLock(descriptor)
