"""Benchmark the HTTP API: start-to-ready, requests/s and latency at 32 clients, and daemon RSS.

Run from the repository root: `.venv/bin/python -m bench.api [--seconds 5]`. Prints figures and
targets (PASS/MISS); it never fails on a missed target. All traffic stays on 127.0.0.1.

`--list-sizes 100,10000` instead measures only `GET /api/machine/?limit=25` with that many
machines each (a daemon per size): latency, requests/s, daemon CPU per request, RSS and idle CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench._common import (
    HOST,
    Daemon,
    cpu_seconds,
    free_port,
    host_busy_seconds,
    mib,
    percentile,
    rss_kib,
    start_daemon,
    verdict,
)

ADMIN_USER = "bench"
ADMIN_PASSWORD = "bench-password"  # noqa: S105 - a throwaway account in a temp data dir
LIST_PATH = "/api/machine/?limit=25"
HTTP_OK = 200

# Targets, printed beside the figures.
TARGET_LIST_RPS = 3000.0
TARGET_P99_MS = 20.0
TARGET_IDLE_RSS_MIB = 50.0
TARGET_READY_S = 1.0

# One request on loopback; far above any latency worth measuring, it only stops a hung run.
REQUEST_TIMEOUT_S = 10.0
# The first start compiles every imported module to bytecode: seconds on a busy host.
FIRST_START_TIMEOUT_S = 30.0
# Settle time after readiness before the idle RSS reading: lets start-up garbage be collected.
IDLE_SETTLE_S = 0.5
# Window over which the daemon's CPU use without requests is measured.
IDLE_CPU_WINDOW_S = 3.0


@dataclass(slots=True)
class EndpointResult:
    """What one endpoint's measured window produced."""

    label: str
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    host_cpu_s: float = 0.0

    @property
    def other_cpu_s(self) -> float:
        """CPU used by neither the daemon nor this client: other work on the host skews the run."""
        return max(self.host_cpu_s - self.server_cpu_s - self.client_cpu_s, 0.0)

    @property
    def rps(self) -> float:
        """Requests per second over the window."""
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, run the benchmark, print the report."""
    args = _parser().parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="inventree-edge-bench-"))
    try:
        if args.list_sizes:
            sizes = [int(size) for size in args.list_sizes.split(",")]
            asyncio.run(_bench_list_sizes(args, sizes, workdir))
        else:
            asyncio.run(_bench(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(slots=True)
class ListFigures:
    """The list endpoint at one registry size."""

    machines: int
    result: EndpointResult
    rss_idle_kib: int
    rss_after_kib: int
    idle_cpu: float


async def _bench_list_sizes(args: argparse.Namespace, sizes: Sequence[int], workdir: Path) -> None:
    print(
        f"inventree-edge list benchmark: GET {LIST_PATH} at {', '.join(map(str, sizes))} "
        f"virtual machines, {args.clients} clients, {args.seconds:g} s each after "
        f"{args.warmup:g} s warm-up; idle CPU over {IDLE_CPU_WINDOW_S:g} s"
    )
    print(f"NOTE: client and server share this host's {os.cpu_count()} CPU cores.")
    interval = args.poll_interval if args.poll_interval is not None else "driver default (5)"
    print(f"virtual printers' status poll interval: {interval} s")
    figures = []
    for size in sizes:
        run_dir = workdir / f"list-{size}"
        run_dir.mkdir()
        figures.append(await _list_at_size(args, size, run_dir))
    print()
    print(
        f"{'machines':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'us CPU/req':>10} {'RSS idle MiB':>12} {'RSS after MiB':>13} {'idle CPU':>8}"
    )
    for f in figures:
        r = f.result
        print(
            f"{f.machines:8d} {r.rps:7.0f} {percentile(r.latencies_ms, 50):7.2f} "
            f"{percentile(r.latencies_ms, 99):7.2f} {r.errors:6d} {_per_request_us(r):10.0f} "
            f"{mib(f.rss_idle_kib):12.1f} {mib(f.rss_after_kib):13.1f} {f.idle_cpu:8.1%}"
        )
    print("(idle CPU: daemon CPU time over wall time while no request is made; 100% = one core)")


async def _list_at_size(args: argparse.Namespace, size: int, workdir: Path) -> ListFigures:
    port = free_port()
    config = workdir / "config.toml"
    config.write_text(_config_toml(port, workdir / "data", size, args.poll_interval))
    env: dict[str, str | None] = {
        "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN_USER,
        "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PYTHONDONTWRITEBYTECODE": None,
        "PYTHONPYCACHEPREFIX": str(workdir.parent / "pycache"),
    }
    daemon = start_daemon(config, port, workdir / "daemon.log", env)
    try:
        daemon.wait_ready(timeout=FIRST_START_TIMEOUT_S + size / 100)
        connector = aiohttp.TCPConnector(limit=args.clients)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(
            daemon.base_url, connector=connector, timeout=timeout
        ) as session:
            token = await _token(session)
            headers = {"Authorization": f"Token {token}"}
            await asyncio.sleep(IDLE_SETTLE_S)
            cpu_before = cpu_seconds(daemon.pid)
            await asyncio.sleep(IDLE_CPU_WINDOW_S)
            idle_cpu = (cpu_seconds(daemon.pid) - cpu_before) / IDLE_CPU_WINDOW_S
            rss_idle = rss_kib(daemon.pid)
            label = f"GET {LIST_PATH} ({size})"
            await _drive(session, headers, [LIST_PATH], args, args.warmup, label)
            result = await _drive(session, headers, [LIST_PATH], args, args.seconds, label, daemon)
            rss_after = rss_kib(daemon.pid)
    finally:
        daemon.stop()
    return ListFigures(size, result, rss_idle, rss_after, idle_cpu)


async def _bench(args: argparse.Namespace, workdir: Path) -> None:
    port = free_port()
    config = workdir / "config.toml"
    config.write_text(_config_toml(port, workdir / "data", args.machines, args.poll_interval))
    env: dict[str, str | None] = {
        "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN_USER,
        "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": ADMIN_PASSWORD,
        # An installed package has its bytecode compiled; here the first start writes it to a
        # temp dir, so the timed start does not recompile every module from source.
        "PYTHONDONTWRITEBYTECODE": None,
        "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
    }
    log_path = workdir / "daemon.log"
    print(
        f"inventree-edge API benchmark: {args.machines} virtual machines, {args.clients} clients, "
        f"{args.seconds:g} s per endpoint after {args.warmup:g} s warm-up"
    )
    print(
        f"NOTE: client and server share this host's {os.cpu_count()} CPU cores; the client "
        "(one process, asyncio + aiohttp) takes CPU the server would otherwise have."
    )
    print(
        "NOTE: the daemon's bytecode is cached (PYTHONPYCACHEPREFIX in a temp dir) from the first "
        "start on, as for an installed package."
    )

    # First start creates the admin (scrypt) and the machines; the timed start finds them stored.
    first = start_daemon(config, port, log_path, env)
    try:
        first_ready = first.wait_ready(timeout=FIRST_START_TIMEOUT_S)
    finally:
        first.stop()
    daemon = start_daemon(config, port, log_path, env)
    try:
        ready = daemon.wait_ready()
        rss_ready = rss_kib(daemon.pid)
        await _measure(args, daemon, first_ready, ready, rss_ready)
    finally:
        code = daemon.stop()
    print(f"daemon exit code after SIGTERM: {code}")


async def _measure(
    args: argparse.Namespace, daemon: Daemon, first_ready: float, ready: float, rss_ready: int
) -> None:
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        daemon.base_url, connector=connector, timeout=timeout
    ) as session:
        token = await _token(session)
        headers = {"Authorization": f"Token {token}"}
        async with session.get("/api/machine/", headers=headers) as response:
            response.raise_for_status()
            pks = [machine["pk"] for machine in await response.json()]
        await asyncio.sleep(IDLE_SETTLE_S)
        rss_idle = rss_kib(daemon.pid)
        endpoints = {
            f"GET {LIST_PATH}": [LIST_PATH],
            "GET /api/machine/{id}/": [f"/api/machine/{pk}/" for pk in pks],
            "GET /api/machine/{id}/settings/": [f"/api/machine/{pk}/settings/" for pk in pks],
        }
        results = []
        for label, paths in endpoints.items():
            await _drive(session, headers, paths, args, args.warmup, label)
            results.append(await _drive(session, headers, paths, args, args.seconds, label, daemon))
        rss_after = rss_kib(daemon.pid)
    _report(args, len(pks), first_ready, ready, rss_ready, rss_idle, rss_after, results)


async def _token(session: aiohttp.ClientSession) -> str:
    credentials = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
    async with session.get(
        "/api/user/token/",
        params={"name": "bench"},
        headers={"Authorization": f"Basic {credentials}"},
    ) as response:
        response.raise_for_status()
        token: str = (await response.json())["token"]
    # The answer also logged us in; a session cookie must not ride along with the token.
    session.cookie_jar.clear()
    return token


async def _drive(
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    paths: Sequence[str],
    args: argparse.Namespace,
    seconds: float,
    label: str,
    daemon: Daemon | None = None,
) -> EndpointResult:
    """Run `args.clients` workers for `seconds` (or `args.max_requests` requests in all)."""
    result = EndpointResult(label)
    budget = [args.max_requests]
    server_cpu = cpu_seconds(daemon.pid) if daemon is not None else 0.0
    client_cpu = time.process_time()
    host_cpu = host_busy_seconds()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(offset: int) -> None:
        index = offset
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            path = paths[index % len(paths)]
            index += args.clients
            sent = time.perf_counter()
            try:
                async with session.get(path, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None  # a dropped connection or timeout counts as an error
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.requests += 1
            if status != HTTP_OK:
                result.errors += 1

    await asyncio.gather(*(worker(i) for i in range(args.clients)))
    result.elapsed_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - client_cpu
    result.host_cpu_s = host_busy_seconds() - host_cpu
    if daemon is not None:
        result.server_cpu_s = cpu_seconds(daemon.pid) - server_cpu
    return result


def _report(
    args: argparse.Namespace,
    machines: int,
    first_ready: float,
    ready: float,
    rss_ready: int,
    rss_idle: int,
    rss_after: int,
    results: Sequence[EndpointResult],
) -> None:
    print(f"machines listed by the API: {machines}")
    print(
        f"start-to-ready, first start (compiles bytecode, creates admin and machines): "
        f"{first_ready * 1000:.1f} ms"
    )
    print(f"start-to-ready, second start (machines stored, bytecode cached): {ready * 1000:.1f} ms")
    print(
        f"daemon RSS: at ready {mib(rss_ready):.1f} MiB, idle before load {mib(rss_idle):.1f} MiB, "
        f"after load {mib(rss_after):.1f} MiB"
    )
    print()
    print(
        f"{'endpoint':34} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'requests':>8} "
        f"{'server CPU':>10} {'us CPU/req':>10} {'client CPU':>10} {'other CPU':>9}"
    )
    for r in results:
        print(
            f"{r.label:34} {r.rps:7.0f} {percentile(r.latencies_ms, 50):7.2f} "
            f"{percentile(r.latencies_ms, 99):7.2f} {r.errors:6d} {r.requests:8d} "
            f"{r.server_cpu_s / r.elapsed_s:10.0%} {_per_request_us(r):10.0f} "
            f"{r.client_cpu_s / r.elapsed_s:10.0%} {r.other_cpu_s / r.elapsed_s:9.0%}"
        )
    print(
        "(CPU: share of one core over the window, 100% = one core; us CPU/req = daemon CPU per "
        "request, the figure least skewed by other load; other = the rest of the host)"
    )
    print()
    print("targets (reported, never enforced):")
    rows = [
        (
            f"start-to-ready <= {TARGET_READY_S * 1000:.0f} ms",
            f"{ready * 1000:.1f} ms",
            ready <= TARGET_READY_S,
        ),
        (
            f"idle RSS <= {TARGET_IDLE_RSS_MIB:.0f} MiB",
            f"{mib(rss_idle):.1f} MiB",
            mib(rss_idle) <= TARGET_IDLE_RSS_MIB,
        ),
        (
            f"list req/s >= {TARGET_LIST_RPS:.0f}",
            f"{results[0].rps:.0f}",
            results[0].rps >= TARGET_LIST_RPS,
        ),
    ]
    for r in results:
        p99 = percentile(r.latencies_ms, 99)
        rows.append(
            (
                f"p99 < {TARGET_P99_MS:.0f} ms at {args.clients} clients, {r.label}",
                f"{p99:.2f} ms",
                p99 < TARGET_P99_MS,
            )
        )
    for target, value, passed in rows:
        print(f"  {target:62} {value:>11}  {verdict(passed)}")


def _per_request_us(result: EndpointResult) -> float:
    return result.server_cpu_s / result.requests * 1e6 if result.requests else 0.0


def _config_toml(port: int, data_dir: Path, machines: int, poll_interval: int | None) -> str:
    lines = [
        "[http]",
        f'host = "{HOST}"',
        f"port = {port}",
        "[storage]",
        f'path = "{data_dir}"',
    ]
    for number in range(1, machines + 1):
        lines += [
            "[[machines]]",
            f'name = "Bench printer {number:03d}"',
            'machine_type = "label-printer"',
            'driver = "virtual"',
            "[machines.driver_settings]",
            "DPI = 300",
        ]
        if poll_interval is not None:
            lines.append(f"POLL_INTERVAL = {poll_interval}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.api", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per endpoint")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time per endpoint")
    parser.add_argument("--clients", type=int, default=32, help="concurrent keep-alive clients")
    parser.add_argument("--machines", type=int, default=100, help="virtual machines configured")
    parser.add_argument(
        "--poll-interval",
        type=int,
        default=None,
        help="status poll interval of the virtual printers in s (default: the driver's, 5)",
    )
    parser.add_argument(
        "--list-sizes",
        default="",
        help="comma-separated machine counts: measure only the machine list at each",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="upper bound on requests per window, whatever the duration",
    )
    return parser


if __name__ == "__main__":
    main()
