"""Storage benchmark: fsyncs per label and per API write on a slow disk, job-list latency as the
history grows, and time to ready with a backlog of old jobs to prune. Prints figures; asserts nothing.

Run: `.venv/bin/python -m bench.storage [--fsync-ms 5 --jobs 300 --sizes 0,20000,100000]`.
`--agent-root DIR` runs the daemon from another checkout (for before/after figures).

The slow disk is a stand-in: an LD_PRELOAD shim, compiled here with gcc, that adds `--fsync-ms` to
every fsync/fdatasync of the daemon and counts them in a shared 8-byte file. An SD card's fsync takes
a few ms to tens of ms; the shim sleeps, so CPU figures are unaffected.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import mmap
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from agent.log import configure_logging
from bench._common import (
    HOST,
    REPO_ROOT,
    Daemon,
    free_port,
    percentile,
    verdict,
)
from bench.print import label_pdf
from drivers.sim import ZplSimulator, serve_tcp

ADMIN = ("bench", "bench-password")
SUBMITTERS = 8
PATCH_CLIENTS = 32
# PATCHes of one machine's settings queue on that machine's lock; spread over several machines
# they reach the store together and show whether their commits are grouped.
PATCHED_MACHINES = 8
PATCH_SECONDS = 5.0
LIST_SAMPLES = 200
# Jobs are seeded with a document of this size (a small label PDF is 2-20 kB).
SEED_DOCUMENT_BYTES = 2048
DONE_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0

SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t *counter;
static long delay_ns;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

__attribute__((constructor)) static void init(void) {
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char *ms = getenv("SLOW_FSYNC_MS");
    delay_ns = ms ? (long)(atof(ms) * 1e6) : 0;
    const char *path = getenv("SLOW_FSYNC_COUNTER");
    if (path) {
        int fd = open(path, O_RDWR);
        if (fd >= 0) {
            void *p = mmap(NULL, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) counter = (uint64_t *)p;
            close(fd);
        }
    }
}

static void slow(void) {
    if (counter) __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
    if (delay_ns > 0) {
        struct timespec t = {delay_ns / 1000000000L, delay_ns % 1000000000L};
        nanosleep(&t, NULL);
    }
}

int fsync(int fd) { slow(); return real_fsync(fd); }
int fdatasync(int fd) { slow(); return real_fdatasync(fd); }
"""


class FsyncCounter:
    """The shim's shared counter, read from this process."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(b"\0" * 8)
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 8)

    @property
    def value(self) -> int:
        """fsync + fdatasync calls so far."""
        count: int = struct.unpack("Q", self._map[:8])[0]
        return count

    def close(self) -> None:
        """Unmap and close."""
        self._map.close()
        self._file.close()


def build_shim(directory: Path) -> Path:
    """Compile the slow-fsync shim; gcc must be installed."""
    source, library = directory / "slow_fsync.c", directory / "slow_fsync.so"
    source.write_text(SHIM_SOURCE)
    subprocess.run(  # noqa: S603 - the system compiler on our own source
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],  # noqa: S607
        check=True,
    )
    return library


def config(port: int, data_dir: Path, sim_port: int) -> str:
    """A ZPL machine on the simulator and a virtual machine (PATCHed in the write test)."""
    return f"""
[http]
port = {port}
[storage]
path = "{data_dir}"
[log]
level = "warning"
format = "json"

[[machines]]
name = "zpl"
driver = "zpl"
[machines.driver_settings]
CONNECTION = "tcp://{HOST}:{sim_port}"
DPMM = 12
LABEL_WIDTH_MM = 62
LABEL_HEIGHT_MM = 29

""" + "".join(
        f'\n[[machines]]\nname = "patched-{index}"\ndriver = "virtual"\n'
        for index in range(PATCHED_MACHINES)
    )


@contextmanager
def daemon(
    root: Path, config_path: Path, port: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    """Run `python -m agent run` from `root`; stop it at the end."""
    environment = {
        **os.environ,
        "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN[0],
        "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": ADMIN[1],
        **(env or {}),
    }
    log_file = log.open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "agent", "run", "--config", str(config_path)],
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    running = Daemon(process, port, log, started, log_file)
    try:
        yield running
    finally:
        running.stop()


async def session_for(base: str) -> aiohttp.ClientSession:
    """A client session with the admin's token."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DONE_TIMEOUT_S))
    basic = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    async with session.get(
        f"{base}/api/user/token/", headers={"Authorization": f"Basic {basic}"}
    ) as resp:
        token = (await resp.json())["token"]
    session.headers["Authorization"] = f"Token {token}"
    session.cookie_jar.clear()
    return session


async def machines(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Machine name -> pk."""
    async with session.get(f"{base}/api/machine/") as resp:
        return {m["name"]: m["pk"] for m in await resp.json()}


async def job_count(session: aiohttp.ClientSession, base: str, query: str = "") -> int:
    """Jobs matching a filter, from a one-row page."""
    async with session.get(f"{base}/api/machine/jobs/?limit=1{query}") as resp:
        count: int = (await resp.json())["count"]
        return count


# phase 1: printing and PATCH on a slow disk


async def slow_disk(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Labels/s, fsyncs per label, PATCH req/s and fsyncs per PATCH with the shim."""
    shim = build_shim(tmp)
    counter = FsyncCounter(tmp / "fsync.count")
    sim = ZplSimulator()
    labels: list[float] = []
    sim.on_label = lambda _label: labels.append(time.perf_counter())
    port = free_port()
    env = {
        "LD_PRELOAD": str(shim),
        "SLOW_FSYNC_MS": str(args.fsync_ms),
        "SLOW_FSYNC_COUNTER": str(tmp / "fsync.count"),
    }
    document = label_pdf()
    results: dict[str, float] = {}
    async with await serve_tcp(sim, HOST, 0) as server:
        config_path = tmp / "slow.toml"
        config_path.write_text(config(port, tmp / "slow-data", server.port))
        with daemon(args.agent_root, config_path, port, tmp / "slow.log", env) as running:
            running.wait_ready(timeout=READY_TIMEOUT_S)
            session = await session_for(running.base_url)
            try:
                pks = await machines(session, running.base_url)
                url = f"{running.base_url}/api/machine/{pks['zpl']}/print/"

                async def submit(count: int) -> None:
                    for _ in range(count):
                        async with session.post(
                            url, data=document, headers={"Content-Type": "application/pdf"}
                        ) as resp:
                            if resp.status != 201:
                                raise RuntimeError(f"print: {resp.status} {await resp.text()}")

                await submit(5)  # warm-up: printer connection, render caches
                await wait_complete(session, running.base_url, 5)
                before_labels, before_fsyncs = len(labels), counter.value
                started = time.perf_counter()
                share = [args.jobs // SUBMITTERS] * SUBMITTERS
                share[0] += args.jobs % SUBMITTERS
                await asyncio.gather(*(submit(n) for n in share))
                await wait_complete(session, running.base_url, 5 + args.jobs)
                printed = len(labels) - before_labels
                results["labels_per_s"] = printed / (labels[-1] - started)
                results["fsyncs_per_label"] = (counter.value - before_fsyncs) / args.jobs
                one = await patch_load(session, running.base_url, [pks["patched-0"]], counter)
                results.update({f"one_{key}": value for key, value in one.items()})
                spread = [pks[f"patched-{i}"] for i in range(PATCHED_MACHINES)]
                results.update(await patch_load(session, running.base_url, spread, counter))
            finally:
                await session.close()
    counter.close()
    return results


async def wait_complete(session: aiohttp.ClientSession, base: str, total: int) -> None:
    """Until `total` jobs are complete (each one's final commit done); polls the API."""
    async with asyncio.timeout(DONE_TIMEOUT_S):
        while await job_count(session, base, "&status=complete") < total:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def patch_load(
    session: aiohttp.ClientSession, base: str, targets: list[str], counter: FsyncCounter
) -> dict[str, float]:
    """`PATCH_CLIENTS` clients changing a setting of the target machines for `PATCH_SECONDS`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + PATCH_SECONDS

    async def client(index: int) -> None:
        url = f"{base}/api/machine/{targets[index % len(targets)]}/settings/M/LOCATION/"
        number = 0
        while time.perf_counter() < deadline:
            number += 1
            started = time.perf_counter()
            async with session.patch(url, json={"value": f"shelf {index}-{number}"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"PATCH: {resp.status} {await resp.text()}")
                await resp.read()
            latencies.append(time.perf_counter() - started)

    before = counter.value
    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(PATCH_CLIENTS)))
    elapsed = time.perf_counter() - started
    return {
        "patch_per_s": len(latencies) / elapsed,
        "patch_p50_ms": percentile(latencies, 50) * 1000,
        "fsyncs_per_patch": (counter.value - before) / len(latencies),
    }


# phase 2 and 3: a big history


def seed_jobs(database: Path, machine: str, count: int, *, expired: bool) -> None:
    """Add `count` finished jobs with documents straight into the database (daemon stopped)."""
    finished = dt.datetime.now(dt.UTC) - dt.timedelta(days=365 if expired else 1)
    stamp = finished.isoformat()
    document = os.urandom(SEED_DOCUMENT_BYTES)
    with closing(sqlite3.connect(database)) as conn, conn:
        first = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM job").fetchone()[0]) + 1
        rows = [(str(uuid.uuid4()), first + i) for i in range(count)]
        conn.executemany(
            "INSERT INTO job (pk, seq, machine, status, copies, pages, content_type, size, "
            "created, started, finished, expires) VALUES (?, ?, ?, 'complete', 1, 1, "
            "'application/pdf', ?, ?, ?, ?, ?)",
            [
                (pk, seq, machine, SEED_DOCUMENT_BYTES, stamp, stamp, stamp, stamp)
                for pk, seq in rows
            ],
        )
        conn.executemany(
            "INSERT INTO job_document (job, data) VALUES (?, ?)", [(pk, document) for pk, _ in rows]
        )


async def list_latency(
    session: aiohttp.ClientSession, base: str, query: str, samples: int = LIST_SAMPLES
) -> list[float]:
    """`samples` sequential list requests; seconds each."""
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        async with session.get(f"{base}/api/machine/jobs/?{query}") as resp:
            await resp.read()
        latencies.append(time.perf_counter() - started)
    return latencies


async def history(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """List latency at each size; then time to ready with `--prune` expired jobs."""
    sim = ZplSimulator()
    results: dict[str, Any] = {"list": {}}
    async with await serve_tcp(sim, HOST, 0) as server:
        port = free_port()
        data = tmp / "history-data"
        config_path = tmp / "history.toml"
        config_path.write_text(config(port, data, server.port))
        log = tmp / "history.log"
        with daemon(args.agent_root, config_path, port, log) as running:
            running.wait_ready(timeout=READY_TIMEOUT_S)
            session = await session_for(running.base_url)
            pks = await machines(session, running.base_url)
            await session.close()
        seeded = 0
        for size in args.sizes:
            seed_jobs(data / "inventree-edge.sqlite3", pks["zpl"], size - seeded, expired=False)
            seeded = size
            with daemon(args.agent_root, config_path, port, log) as running:
                ready = running.wait_ready(timeout=READY_TIMEOUT_S)
                results.setdefault("ready_without_backlog_s", ready)
                session = await session_for(running.base_url)
                try:
                    plain = await list_latency(session, running.base_url, "limit=25", args.samples)
                    filtered = await list_latency(
                        session,
                        running.base_url,
                        f"limit=25&offset=25&machine={pks['zpl']}&status=complete",
                        args.samples,
                    )
                finally:
                    await session.close()
            results["list"][size] = (plain, filtered)
        seed_jobs(data / "inventree-edge.sqlite3", pks["zpl"], args.prune, expired=True)
        with daemon(args.agent_root, config_path, port, log) as running:
            results["ready_s"] = running.wait_ready(timeout=READY_TIMEOUT_S)
            session = await session_for(running.base_url)
            try:
                latencies: list[float] = []
                started = time.perf_counter()
                async with asyncio.timeout(DONE_TIMEOUT_S * 5):
                    while await job_count(session, running.base_url) > seeded:
                        latencies.extend(
                            await list_latency_once(session, running.base_url, "limit=25")
                        )
                results["pruned_after_s"] = time.perf_counter() - started
                results["list_during_prune"] = latencies
            finally:
                await session.close()
    return results


async def list_latency_once(session: aiohttp.ClientSession, base: str, query: str) -> list[float]:
    """One list request, then a short pause; seconds."""
    started = time.perf_counter()
    async with session.get(f"{base}/api/machine/jobs/?{query}") as resp:
        await resp.read()
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.02)
    return [elapsed]


def report(args: argparse.Namespace, slow: dict[str, float], big: dict[str, Any]) -> None:
    """Print the figures and the targets."""
    ms = 1000.0
    print(f"inventree-edge storage benchmark (agent from {args.agent_root})")
    print("NOTE: client, simulator and daemon share this host's CPU cores.\n")
    print(f"slow disk: +{args.fsync_ms:g} ms per fsync/fdatasync (LD_PRELOAD shim)")
    print(
        f"  printing  {args.jobs} one-label jobs from {SUBMITTERS} submitters: "
        f"{slow['labels_per_s']:.1f} labels/s, {slow['fsyncs_per_label']:.2f} fsyncs per label "
        "(accepting the job included)"
    )
    for prefix, where in (("one_", "1 machine"), ("", f"{PATCHED_MACHINES} machines")):
        print(
            f"  PATCH     {PATCH_CLIENTS} clients for {PATCH_SECONDS:g} s on {where}: "
            f"{slow[prefix + 'patch_per_s']:.0f} req/s, p50 {slow[prefix + 'patch_p50_ms']:.1f} ms, "
            f"{slow[prefix + 'fsyncs_per_patch']:.2f} fsyncs per PATCH"
        )
    print(f"\njob list latency (ms, p50 / p99 of {args.samples} sequential requests)")
    print(f"  {'jobs':>8s} {'?limit=25':>18s} {'machine+status, offset 25':>28s}")
    for size, (plain, filtered) in big["list"].items():
        print(
            f"  {size:8d} {percentile(plain, 50) * ms:8.2f} / {percentile(plain, 99) * ms:7.2f} "
            f"{percentile(filtered, 50) * ms:13.2f} / {percentile(filtered, 99) * ms:7.2f}"
        )
    during = big["list_during_prune"]
    print(
        f"\nstart with {args.sizes[0]} jobs: ready after {big['ready_without_backlog_s']:.2f} s "
        "(process start, imports, database checks)"
    )
    print(
        f"start with {args.prune} expired jobs: ready after {big['ready_s']:.2f} s; all pruned "
        f"{big['pruned_after_s']:.1f} s after ready; list during the prune p50 "
        f"{percentile(during, 50) * ms:.1f} ms, p99 {percentile(during, 99) * ms:.1f} ms, "
        f"max {max(during, default=0) * ms:.1f} ms ({len(during)} requests)"
    )
    # An empty history lists an empty page; compare pages of 25 rows with each other.
    sizes = [size for size in big["list"] if size > 0] or list(big["list"])
    first, last = big["list"][sizes[0]][0], big["list"][sizes[-1]][0]
    growth = percentile(last, 50) / percentile(first, 50)
    print("\ntargets (reported, never enforced):")
    checks = [
        ("fsyncs per label <= 2", slow["fsyncs_per_label"] <= 2, slow["fsyncs_per_label"]),
        ("ready < 1 s with the prune backlog", big["ready_s"] < 1, big["ready_s"]),
        (f"list p50 at {sizes[-1]} jobs <= 2 x at {sizes[0]}", growth <= 2, growth),
    ]
    for label, passed, value in checks:
        print(f"  {label:45s} {value:8.2f} {verdict(passed)}")


async def run(args: argparse.Namespace) -> None:
    """Every phase, then the report."""
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as name:
        tmp = Path(name)
        slow = await slow_disk(args, tmp)
        big = await history(args, tmp)
        report(args, slow, big)
        if args.json:
            print(json.dumps({"slow": slow, "ready_s": big["ready_s"]}))


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsync-ms", type=float, default=5.0, help="added to every fsync")
    parser.add_argument("--jobs", type=int, default=300, help="one-label jobs printed")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[0, 20_000, 100_000],
        help="job history sizes for the list latency",
    )
    parser.add_argument("--prune", type=int, default=100_000, help="expired jobs at start")
    parser.add_argument(
        "--samples", type=int, default=LIST_SAMPLES, help="list requests per history size"
    )
    parser.add_argument("--agent-root", type=Path, default=REPO_ROOT, help="checkout to run")
    parser.add_argument("--json", action="store_true", help="also print the key figures as JSON")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
