"""Shared benchmark helpers: run the daemon as a subprocess, wait for it, read its RSS and CPU."""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# Readiness is polled this often: fine enough to time a sub-second start to a few ms.
READY_POLL_INTERVAL_S = 0.005
# A daemon that is not answering after this long is broken, not slow.
READY_TIMEOUT_S = 10.0
# One readiness probe: a loopback connect and a tiny answer, even from a busy starting daemon.
PROBE_TIMEOUT_S = 1.0
# The daemon's own shutdown budget is 22 s; a benchmark daemon has no printers to release.
STOP_TIMEOUT_S = 10.0
# After SIGKILL the kernel reaps at once; this only guards against a stuck zombie.
KILL_TIMEOUT_S = 5.0

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class DaemonFailed(Exception):
    """The daemon exited or did not become ready; the message ends with its log tail."""


@dataclass(slots=True)
class Daemon:
    """A running daemon subprocess and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started_at: float
    _log_file: IO[bytes]

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.process.pid

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the daemon's log, for failure messages."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, path: str = "/api/", timeout: float = READY_TIMEOUT_S) -> float:
        """Poll `GET path` until it answers 200; returns seconds since `Popen` was called."""
        deadline = self.started_at + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise DaemonFailed(
                    f"daemon exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if _probe(self.port, path) == http.client.OK:
                return time.perf_counter() - self.started_at
            time.sleep(READY_POLL_INTERVAL_S)
        raise DaemonFailed(f"daemon not ready after {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM, wait, then SIGKILL if needed; returns the exit code."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    return self.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    return self.process.wait(KILL_TIMEOUT_S)
            return self.process.returncode
        finally:
            self._log_file.close()


def start_daemon(
    config_path: Path,
    port: int,
    log_path: Path,
    env: Mapping[str, str | None] | None = None,
    python_args: Sequence[str] = (),
) -> Daemon:
    """Start `python -m agent run --config FILE`; the clock starts just before `Popen`.

    `env` adds to this process's environment; a None value removes that variable.
    """
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    log_file = log_path.open("ab")
    command = [sys.executable, *python_args, "-m", "agent", "run", "--config", str(config_path)]
    started_at = time.perf_counter()
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    except OSError:
        log_file.close()
        raise
    return Daemon(process, port, log_path, started_at, log_file)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc/<pid>/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process (all its threads) has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def host_busy_seconds() -> float:
    """CPU time all cores of this host have spent busy (not idle or waiting on I/O) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    # Fields 9 and 10 (guest time) are already counted in user and nice.
    return (sum(ticks[:8]) - idle - iowait) / _CLOCK_TICKS


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def mib(kib: int) -> float:
    """KiB to MiB."""
    return kib / 1024


def verdict(passed: bool) -> str:
    """PASS or MISS (benchmarks report targets, they never fail)."""
    return "PASS" if passed else "MISS"


def _probe(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            connection.close()
