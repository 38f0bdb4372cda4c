"""Central sync benchmark (issue 9): a real InvenTree, the companion plugin, a real agent daemon.

Run from the repository root:
`.venv/bin/python -m bench.central [--line head|303] [--prints 12] [--polls 200] [--reports 50]`
(starts or joins the test servers through tests/inventree_servers.py), or against a server of
your own: `--url URL --token ADMIN_TOKEN --folder SERVE_DIR` (the `serve` folder: its `manage`
creates the agent user, its `server.pid` names the process whose CPU is read). Loopback only.
Prints figures; asserts nothing.

Phases:
- print latency: `POST /api/label/print/` (one stock item, one copy, as the web UI sends it) to
  the first byte of the job at a simulated Zebra behind the agent; short polling
  (`poll_interval` 2 s) and long polling (`long_poll` 20 s). The prints are spread over the
  poll cycle (a random pause before each) as users' clicks are.
- server CPU: InvenTree's own process CPU time (/proc/<pid>/stat of the server in
  `<folder>/server.pid`) over N idle `GET jobs/` polls, N `POST report/` with two printers, and N
  `GET /api/part/?limit=1` for comparison, one request at a time.
- capacity: K simulated agents, each polling `jobs/` every 2 s from a random phase (one report
  first), while a probe times `GET /api/part/?limit=1`; K grows until the probe's median is
  twice its median with no agents, or the largest K is reached.

The servers of the tests run InvenTree under Django's threaded `runserver` (one process), not
the gunicorn of InvenTree's container (2 x cores + 1 workers x 4 threads): figures are per that
one process.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import random
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from bench._common import cpu_seconds, percentile, start_daemon, verdict
from drivers.sim import ZplSimulator, serve_tcp
from drivers.sim.server import SimTcpServer
from tests.central_e2e.agent_side import AgentSetup, agent_env
from tests.central_e2e.inventree_side import (
    AgentAccount,
    InvenTreeApi,
    create_agent_accounts,
    request,
    unique,
)
from tests.central_e2e.loop_thread import LoopThread, loop_thread
from tests.inventree_servers import InvenTreeServer, start

PLUGIN_PATH = "/plugin/inventree-edge/"
SHORT_POLL_S = 2.0
LONG_POLL_S = 20.0
# Targets of issue 9.
TARGET_SHORT_P50_S = 1.5
TARGET_LONG_P50_S = 0.3
TARGET_IDLE_POLL_CPU_MS = 5.0
# One print reaching the printer: the worker queue, a poll cycle, the download and the label.
PRINT_TIMEOUT_S = 60.0
# Agents at each capacity step, and how long each step is measured.
AGENT_STEPS = (0, 5, 10, 20, 40, 80, 160)
PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 30.0


@dataclass
class Server:
    """The InvenTree measured, and where its process id is written."""

    api: InvenTreeApi
    folder: Path

    @property
    def url(self) -> str:
        return self.api.server.url

    def pid(self) -> int:
        return int((self.folder / "server.pid").read_text().split()[0])


class FirstByte:
    """A simulated Zebra that notes when the first byte arrives after `arm()`."""

    def __init__(self, thread: LoopThread) -> None:
        self.sim = ZplSimulator()
        self.armed_at: float | None = None
        self.first_byte: float | None = None
        self._thread = thread
        open_channel = self.sim.open_channel
        watcher = self

        class Watching:
            def __init__(self) -> None:
                self.channel = open_channel()

            def feed(self, data: bytes) -> bytes:
                if watcher.armed_at is not None and watcher.first_byte is None and data:
                    watcher.first_byte = time.perf_counter()
                reply: bytes = self.channel.feed(data)
                return reply

            def close(self) -> None:
                self.channel.close()

        self.sim.open_channel = Watching  # type: ignore[method-assign,assignment]
        self.server: SimTcpServer = thread.run(serve_tcp(self.sim))

    def arm(self) -> None:
        def armed() -> None:
            self.first_byte = None
            self.armed_at = time.perf_counter()

        self._thread.call(armed)

    def labels(self) -> int:
        return self._thread.call(lambda: len(self.sim.labels))

    def close(self) -> None:
        self._thread.call(self.server.close)
        self._thread.run(self.server.wait_closed())


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.005)


def _machine(api: InvenTreeApi, name: str) -> str:
    found: list[str] = []

    def shown() -> bool:
        found[:] = [str(m["pk"]) for m in api.machines() if m["name"] == name]
        return bool(found)

    _wait(shown, 60.0, f"machine {name!r}")
    return found[0]


@contextmanager
def _agent(
    server: Server, account: AgentAccount, zebra: FirstByte, setup: AgentSetup, tmp: Path
) -> Iterator[str]:
    """Run the agent daemon; yields the InvenTree machine of its Zebra once it is CONNECTED."""
    config = tmp / f"{setup.name}.toml"
    text = setup.toml().replace("POLL_INTERVAL = 1", "POLL_INTERVAL = 3600")
    config.write_text(text)
    env = {
        **agent_env(),
        "INVENTREE_EDGE_STORAGE__PATH": str(tmp / setup.name),
        "INVENTREE_EDGE_HTTP__PORT": "0",
        "INVENTREE_EDGE_LOG__LEVEL": "warning",
    }
    daemon = start_daemon(config, 0, tmp / f"{setup.name}.log", env)
    try:
        machine = _machine(server.api, f"{setup.name} / {setup.zebra_name}")
        _wait(lambda: server.api.machine(machine)["status"] == 100, 60.0, "the Zebra CONNECTED")
        yield machine
    finally:
        daemon.stop()


def print_latency(
    server: Server, account: AgentAccount, prints: int, tmp: Path, long_poll: bool
) -> tuple[list[float], list[float]]:
    """Seconds from the print request to its answer, and to the first byte at the printer."""
    api = server.api
    template = int(api.stock_label_template()["pk"])
    [item] = api.stock_items(unique("bench"), 1)
    rng = random.Random(9)
    latencies, answers = [], []
    with loop_thread() as thread:
        zebra = FirstByte(thread)
        setup = AgentSetup(
            name=unique("bench-agent"),
            url=server.url,
            token=account.token,
            zpl_url=zebra.server.url,
            label_width_mm=50,
            poll_interval=SHORT_POLL_S,
            long_poll=LONG_POLL_S if long_poll else 0.0,
            zebra_name="zebra",
        )
        try:
            with _agent(server, account, zebra, setup, tmp) as machine:
                for _ in range(prints):
                    time.sleep(rng.uniform(0, SHORT_POLL_S))
                    before = zebra.labels()
                    zebra.arm()
                    started = time.perf_counter()
                    api.print_labels(template, [item], machine, 1)
                    answers.append(time.perf_counter() - started)
                    _wait(lambda: zebra.first_byte is not None, PRINT_TIMEOUT_S, "first byte")
                    assert zebra.first_byte is not None
                    latencies.append(zebra.first_byte - started)
                    _wait(lambda b=before: zebra.labels() > b, PRINT_TIMEOUT_S, "the label")
                    zebra.armed_at = None
        finally:
            zebra.close()
    return answers, latencies


def server_cpu(server: Server, account: AgentAccount, count: int, reports: int) -> dict[str, float]:
    """Server CPU ms per idle poll, per report (two printers) and per `GET /api/part/?limit=1`."""
    agent = unique("bench-cpu")
    headers = {"X-Edge-Protocol": "1", "X-Edge-Agent": urllib.parse.quote(agent)}
    body = {
        "agent": {"version": "bench", "report_interval": 30},
        "printers": [
            {"key": unique("key"), "name": f"p{n}", "driver": "zpl", "status": 100}
            for n in range(2)
        ],
    }

    parsed = urllib.parse.urlsplit(server.url)
    # One kept-alive connection, as the agent keeps one (a new connection costs runserver a thread).
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)

    def send(method: str, path: str, token: str, payload: Any = None, **extra: str) -> int:
        data = json.dumps(payload).encode() if payload is not None else None
        connection.request(
            method,
            path,
            body=data,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                **extra,
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status

    def plugin(method: str, path: str, payload: Any = None) -> int:
        return send(method, PLUGIN_PATH + path, account.token, payload, **headers)

    assert plugin("POST", "report/", body) == 200
    pid = server.pid()
    figures = {}
    for name, call, n in (
        ("idle poll", lambda: plugin("GET", "jobs/"), count),
        ("report", lambda: plugin("POST", "report/", body), reports),
        ("part list", lambda: send("GET", "/api/part/?limit=1", server.api.server.token), count),
    ):
        call()  # warm
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for _ in range(n):
            status = call()
            assert status == 200, status
        figures[name] = (cpu_seconds(pid) - cpu) / n * 1000
        figures[name + " wall"] = (time.perf_counter() - wall) / n * 1000
    connection.close()
    return figures


class Pollers:
    """Simulated agents: each polls `jobs/` every SHORT_POLL_S from a random phase."""

    def __init__(self, session: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> None:
        self.session = session
        self.url = url + PLUGIN_PATH + "jobs/"
        self.auth = auth
        self.polls = 0
        self.stop = asyncio.Event()
        self.rng = random.Random(9)

    async def agent(self, name: str) -> None:
        headers = {**self.auth, "X-Edge-Protocol": "1", "X-Edge-Agent": name}
        await asyncio.sleep(self.rng.uniform(0, SHORT_POLL_S))
        while not self.stop.is_set():
            began = time.perf_counter()
            async with self.session.get(self.url, headers=headers) as resp:
                await resp.read()
                self.polls += resp.status == 200
            left = SHORT_POLL_S - (time.perf_counter() - began)
            if left > 0:
                await asyncio.sleep(left)


async def capacity(
    server: Server, account: AgentAccount, seconds: float
) -> list[tuple[int, float, float, float]]:
    """(agents, probe p50 ms, probe p95 ms, polls answered per s) at each step."""
    results = []
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        auth = {"Authorization": f"Token {account.token}"}
        admin = {"Authorization": f"Token {server.api.server.token}"}
        baseline: float | None = None
        for agents in AGENT_STEPS:
            names = [unique("bench-cap") for _ in range(agents)]
            for name in names:
                async with session.post(
                    server.url + PLUGIN_PATH + "report/",
                    json={"agent": {"version": "bench", "report_interval": 30}, "printers": []},
                    headers={**auth, "X-Edge-Protocol": "1", "X-Edge-Agent": name},
                ) as resp:
                    assert resp.status == 200, await resp.text()
            pollers = Pollers(session, server.url, auth)
            tasks = [asyncio.create_task(pollers.agent(name)) for name in names]
            await asyncio.sleep(SHORT_POLL_S)  # every agent has started its cycle
            samples = []
            pollers.polls = 0
            began = time.perf_counter()
            while time.perf_counter() - began < seconds:
                started = time.perf_counter()
                async with session.get(server.url + "/api/part/?limit=1", headers=admin) as resp:
                    await resp.read()
                samples.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(PROBE_INTERVAL_S)
            rate = pollers.polls / (time.perf_counter() - began)
            pollers.stop.set()
            await asyncio.gather(*tasks)
            p50 = statistics.median(samples)
            results.append((agents, p50, percentile(samples, 95), rate))
            print(
                f"  {agents:4d} agents: part list p50 {p50:7.1f} ms, p95 "
                f"{percentile(samples, 95):7.1f} ms; polls answered {rate:6.1f}/s"
            )
            if baseline is None:
                baseline = p50
            elif p50 >= 2 * baseline:
                break
    return results


def _server(args: argparse.Namespace) -> Server:
    if args.url:
        if not (args.token and args.folder):
            raise SystemExit("--url needs --token (an admin's) and --folder (the serve folder)")
        folder = Path(args.folder).resolve()
        version = request(args.url, "GET", "/api/", token=args.token).json()["apiVersion"]
        found = InvenTreeServer("custom", args.url, args.token, int(version), folder)
    else:
        found = start(args.line)
    return Server(InvenTreeApi(found), found.folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--line", choices=("303", "head"), default="head")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--folder")
    parser.add_argument("--prints", type=int, default=12)
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=("latency", "cpu", "capacity"))
    args = parser.parse_args()
    # The simulator logs each label at debug level: keep the figures readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server = _server(args)
    print(
        f"InvenTree API {server.api.server.api_version} at {server.url} "
        f"(runserver, pid {server.pid()})"
    )
    [account] = create_agent_accounts(server.api.server, unique("bench"), 1)

    if "latency" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
            for long_poll, target in ((False, TARGET_SHORT_P50_S), (True, TARGET_LONG_P50_S)):
                kind = (
                    f"long polling ({LONG_POLL_S:g} s)"
                    if long_poll
                    else (f"short polling ({SHORT_POLL_S:g} s)")
                )
                answers, latencies = print_latency(
                    server, account, args.prints, Path(tmp), long_poll
                )
                p50 = percentile(latencies, 50)
                print(
                    f"print to first byte, {kind}, {len(latencies)} prints: "
                    f"p50 {p50 * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms, "
                    f"max {max(latencies) * 1000:.0f} ms  [target p50 <= "
                    f"{target * 1000:.0f} ms: {verdict(p50 <= target)}]"
                )
                print(
                    f"  of which the print request itself (until InvenTree answers): p50 "
                    f"{percentile(answers, 50) * 1000:.0f} ms, p95 "
                    f"{percentile(answers, 95) * 1000:.0f} ms"
                )

    if "cpu" not in args.skip:
        figures = server_cpu(server, account, args.polls, args.reports)
        for name in ("idle poll", "report", "part list"):
            print(
                f"server CPU per {name}: {figures[name]:.2f} ms "
                f"(wall {figures[name + ' wall']:.1f} ms)"
            )
        idle = figures["idle poll"]
        print(
            f"  [target idle poll <= {TARGET_IDLE_POLL_CPU_MS:g} ms: "
            f"{verdict(idle <= TARGET_IDLE_POLL_CPU_MS)}]"
        )
        print(
            f"  one core carries about {1000 / idle * SHORT_POLL_S:.0f} agents polling every "
            f"{SHORT_POLL_S:g} s on CPU alone"
        )

    if "capacity" not in args.skip:
        print(f"capacity: agents polling every {SHORT_POLL_S:g} s, probe GET /api/part/?limit=1")
        results = asyncio.run(capacity(server, account, args.step_seconds))
        baseline = results[0][1]
        doubled = [agents for agents, p50, _, _ in results[1:] if p50 >= 2 * baseline]
        if doubled:
            carried = max([a for a, p50, _, _ in results if p50 < 2 * baseline])
            print(f"probe latency doubled at {doubled[0]} agents: carries about {carried}")
        else:
            print(f"probe latency never doubled up to {results[-1][0]} agents")


if __name__ == "__main__":
    main()
