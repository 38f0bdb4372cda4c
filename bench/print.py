"""Print benchmark: label jobs through the API into every built-in printer family's simulator on
loopback TCP, and through the virtual driver. Prints figures; asserts nothing.

Run: `.venv/bin/python -m bench.print [--jobs 500 --rounds 5 --latency-jobs 100 --samples 200]`.

Every family is one row of `FAMILIES`: its machine, driver settings, simulator, encoder and the
page size its driver renders. Per family with a simulator, and for the virtual driver:
- latency: one job at a time; enqueue latency (POST to 201) and POST to last byte at the printer
  (simulators: the client's clock when the simulator finished the label's last byte; virtual:
  the job's recorded finish time, on the daemon's clock). The Brother QL driver waits for each
  label's "printing completed" frame before the next, as it does with a real printer.
- throughput: `--rounds` bursts of `--jobs` jobs from 8 concurrent submitters; labels/s per burst,
  so a slowdown as the job history grows shows as falling figures.
Stage costs (render, then encode) are measured in this process on the same label, drawn at each
family's page size; ESC/POS is measured there only, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image, ImageDraw

from agent.log import configure_logging
from agent.render import render_document
from bench._common import (
    HOST,
    Daemon,
    free_port,
    mib,
    percentile,
    rss_kib,
    start_daemon,
    verdict,
)
from drivers.base import PageFormat, RenderOptions
from drivers.brother_ql import protocol as brother_protocol
from drivers.brother_ql.simulator import BrotherQlSimulator
from drivers.brother_ql.tables import LABELS as BROTHER_LABELS
from drivers.brother_ql.tables import MODELS as BROTHER_MODELS
from drivers.dymo import protocol as dymo_protocol
from drivers.dymo.simulator import DymoSimulator
from drivers.escpos import protocol as escpos_protocol
from drivers.sim import Simulator, ZplSimulator, serve_tcp
from drivers.tspl import protocol as tspl_protocol
from drivers.tspl.simulator import TsplSimulator
from drivers.zpl import protocol as zpl_protocol

ADMIN = ("bench", "bench-password")
SUBMITTERS = 8
# One label: 62 x 29 mm at 300 dpi (12 dots/mm), the common address-label size.
LABEL_MM = (62, 29)
DPI = 300
DOTS_PER_MM = 12
LABEL_TIMEOUT_S = 30.0
# Jobs sent to each simulator before measuring: connection, caches.
WARM_UP_JOBS = 10
# Polling a virtual job's record until it completes.
JOB_POLL_INTERVAL_S = 0.002
# The 62 x 29 mm page as the ZPL, TSPL and ESC/POS drivers render it at 12 dots/mm.
MM_PAGE = (LABEL_MM[0] * DOTS_PER_MM, LABEL_MM[1] * DOTS_PER_MM)
# Brother QL: the same size of die-cut roll (DK-11209) on a QL-820NWB; its print area is smaller.
BROTHER_MODEL = "QL-820NWB"
BROTHER_LABEL = "62x29"
_BROTHER_OPTIONS = brother_protocol.PageOptions(
    BROTHER_MODELS[BROTHER_MODEL], BROTHER_LABELS[BROTHER_LABEL]
)
# DYMO: the same label on a LabelWriter 450's whole 672-dot (57 mm) head.
DYMO_PAGE = (672, round(LABEL_MM[1] / 25.4 * DPI))

SettingValue = str | int


@dataclass(frozen=True, slots=True)
class PrinterFamily:
    """One printer family as the benchmark drives it."""

    # The machine's name in the daemon's configuration, and the family's name in the report.
    machine: str
    # The registered driver name (`driver = "..."` in the configuration).
    driver: str
    # Driver settings besides CONNECTION, which points at the simulator.
    settings: Mapping[str, SettingValue]
    # A new simulator for the daemon to print into; None: encode cost only, no machine.
    simulator: Callable[[], Simulator] | None
    # One rendered page (mode "1") to the bytes the driver sends for it.
    encode: Callable[[Image.Image], bytes]
    # The page the driver renders, in dots: width, length.
    page_dots: tuple[int, int]


FAMILIES: tuple[PrinterFamily, ...] = (
    PrinterFamily(
        machine="zpl",
        driver="zpl",
        settings={
            "DPMM": DOTS_PER_MM,
            "LABEL_WIDTH_MM": LABEL_MM[0],
            "LABEL_HEIGHT_MM": LABEL_MM[1],
        },
        simulator=ZplSimulator,
        encode=lambda page: zpl_protocol.encode_page(page, copies=1),
        page_dots=MM_PAGE,
    ),
    PrinterFamily(
        machine="brother-ql",
        driver="brother-ql",
        settings={"MODEL": BROTHER_MODEL, "LABEL": BROTHER_LABEL},
        simulator=lambda: BrotherQlSimulator(model=BROTHER_MODEL, media=BROTHER_LABEL),
        encode=lambda page: brother_protocol.encode_job([(page,)], _BROTHER_OPTIONS),
        page_dots=(
            BROTHER_LABELS[BROTHER_LABEL].printable_width,
            BROTHER_LABELS[BROTHER_LABEL].printable_length,
        ),
    ),
    PrinterFamily(
        machine="dymo",
        driver="dymo",
        settings={
            "LABEL": "custom",
            "LABEL_WIDTH_DOTS": DYMO_PAGE[0],
            "LABEL_LENGTH_DOTS": DYMO_PAGE[1],
        },
        simulator=DymoSimulator,
        encode=lambda page: dymo_protocol.encode_label(
            page, dymo_protocol.LabelSettings(), last=True
        ),
        page_dots=DYMO_PAGE,
    ),
    PrinterFamily(
        machine="tspl",
        driver="tspl",
        settings={"DPI": DPI, "LABEL_WIDTH_MM": LABEL_MM[0], "LABEL_HEIGHT_MM": LABEL_MM[1]},
        simulator=lambda: TsplSimulator(dpi=DPI),
        encode=tspl_protocol.encode_label,
        page_dots=MM_PAGE,
    ),
    PrinterFamily(
        machine="escpos",
        driver="escpos",
        settings={},
        simulator=None,
        encode=lambda page: escpos_protocol.encode_job([page], copies=1, cut="full"),
        page_dots=MM_PAGE,
    ),
)
VIRTUAL = "virtual"


@dataclass(frozen=True, slots=True)
class StageCost:
    """Median ms per label, in this process, of one family's render and encode."""

    render: float
    encode: float

    @property
    def total(self) -> float:
        return self.render + self.encode


def label_pdf() -> bytes:
    """A 62 x 29 mm label with a text-like block, a barcode-like bar pattern and a QR-like square."""
    width, height = round(LABEL_MM[0] / 25.4 * DPI), round(LABEL_MM[1] / 25.4 * DPI)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 400, 60), fill=0)
    for x in range(20, 420, 6):
        draw.rectangle((x, 100, x + (x // 6) % 3 + 1, 220), fill=0)
    for i in range(0, 200, 20):
        for j in range(0, 200, 20):
            if (i * 7 + j * 3) % 40 < 20:
                draw.rectangle((480 + i, 60 + j, 499 + i, 79 + j), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PDF", resolution=DPI)
    return buffer.getvalue()


def stage_costs(document: bytes, samples: int) -> dict[str, StageCost]:
    """Per family: median ms to render the document at its page size, and to encode that page."""
    costs: dict[str, StageCost] = {}
    for family in FAMILIES:
        page_format = PageFormat(
            dpi=DPI, width_dots=family.page_dots[0], height_dots=family.page_dots[1]
        )
        render, encode = [], []
        for _ in range(samples):
            started = time.perf_counter()
            page = render_document(document, "application/pdf", page_format, RenderOptions())
            render.append(time.perf_counter() - started)
            started = time.perf_counter()
            family.encode(page.pages[0])
            encode.append(time.perf_counter() - started)
        costs[family.machine] = StageCost(
            statistics.median(render) * 1000, statistics.median(encode) * 1000
        )
    return costs


def _toml_value(value: SettingValue) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


def config(port: int, data_dir: Path, sim_ports: Mapping[str, int]) -> str:
    """The daemon's configuration: one machine per simulator (by family), a virtual machine."""
    sections = [
        f'[http]\nport = {port}\n[storage]\npath = "{data_dir}"\n'
        '[log]\nlevel = "warning"\nformat = "json"\n[jobs]\nretention_days = 30\n'
    ]
    for family in FAMILIES:
        if family.machine not in sim_ports:
            continue
        settings = {"CONNECTION": f"tcp://{HOST}:{sim_ports[family.machine]}", **family.settings}
        lines = "".join(f"{key} = {_toml_value(value)}\n" for key, value in settings.items())
        sections.append(
            f'[[machines]]\nname = "{family.machine}"\ndriver = "{family.driver}"\n'
            f"[machines.driver_settings]\n{lines}"
        )
    sections.append(
        f'[[machines]]\nname = "{VIRTUAL}"\ndriver = "virtual"\n[machines.driver_settings]\n'
        f"DPI = {DPI}\nLABEL_WIDTH_MM = {LABEL_MM[0]}\nLABEL_HEIGHT_MM = {LABEL_MM[1]}\n"
    )
    return "\n".join(sections)


class Bench:
    """The client side for one machine: submits jobs and sees each label finish.

    With a simulator, a label is finished when the simulator has its last byte; without one
    (the virtual driver), when the job's record says complete.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        document: bytes,
        machine: str,
        sim: Simulator | None,
    ) -> None:
        self.session = session
        self.base = base
        self.document = document
        self.machine = machine
        self.sim = sim
        self.label_times: list[float] = []
        self.label_event = asyncio.Event()
        if sim is not None:
            sim.on_label = self._on_label

    async def submit(self) -> tuple[str, float, float]:
        """POST one job; returns (job pk, POST time, enqueue latency)."""
        started = time.perf_counter()
        async with self.session.post(
            f"{self.base}/api/machine/{self.machine}/print/",
            data=self.document,
            headers={"Content-Type": "application/pdf"},
        ) as resp:
            body = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"print failed: {resp.status} {body}")
        return body["pk"], started, time.perf_counter() - started

    async def latency(self, jobs: int) -> tuple[list[float], list[float]]:
        """One job at a time: (enqueue latencies, POST-to-last-byte latencies), in seconds."""
        enqueue, end_to_end = [], []
        for _ in range(jobs):
            before = len(self.label_times)
            pk, started, queued = await self.submit()
            enqueue.append(queued)
            if self.sim is not None:
                await self._wait_labels(before + 1)
                end_to_end.append(self.label_times[before] - started)
            else:
                # The daemon's clock: created to finished, plus half the POST for the way in.
                job = await self._wait_complete(pk)
                created = dt.datetime.fromisoformat(job["created"])
                finished = dt.datetime.fromisoformat(job["finished"])
                end_to_end.append((finished - created).total_seconds() + queued / 2)
        return enqueue, end_to_end

    async def burst(self, jobs: int) -> tuple[float, list[float]]:
        """`jobs` jobs from concurrent submitters; returns (labels/s, enqueue latencies)."""
        before = len(self.label_times)
        pks: list[str] = []
        enqueue: list[float] = []
        started = time.perf_counter()

        async def submitter(count: int) -> None:
            for _ in range(count):
                pk, _t, queued = await self.submit()
                pks.append(pk)
                enqueue.append(queued)

        share = [
            jobs // SUBMITTERS + (1 if i < jobs % SUBMITTERS else 0) for i in range(SUBMITTERS)
        ]
        await asyncio.gather(*(submitter(n) for n in share))
        if self.sim is not None:
            await self._wait_labels(before + jobs)
            finished = self.label_times[before + jobs - 1]
        else:
            for pk in pks:
                await self._wait_complete(pk)
            finished = time.perf_counter()
        return jobs / (finished - started), enqueue

    def _on_label(self, _label: Any) -> None:
        self.label_times.append(time.perf_counter())
        self.label_event.set()

    async def _wait_labels(self, count: int) -> None:
        async with asyncio.timeout(LABEL_TIMEOUT_S):
            while len(self.label_times) < count:
                self.label_event.clear()
                await self.label_event.wait()

    async def _wait_complete(self, pk: str) -> dict[str, Any]:
        async with asyncio.timeout(LABEL_TIMEOUT_S):
            while True:
                async with self.session.get(f"{self.base}/api/machine/jobs/{pk}/") as resp:
                    job: dict[str, Any] = await resp.json()
                if job["status"] == "complete":
                    return job
                if job["status"] in ("failed", "cancelled"):
                    raise RuntimeError(f"job {pk} {job['status']}: {job['errors']}")
                await asyncio.sleep(JOB_POLL_INTERVAL_S)


@dataclass(slots=True)
class MachineResult:
    """What one machine measured, in seconds (latencies) and labels/s (rates)."""

    enqueue: list[float]
    end_to_end: list[float]
    rates: list[float]
    burst_enqueue: list[float]
    rss_mib: list[float]


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1000


async def run(args: argparse.Namespace) -> None:
    """Start a simulator per family and the daemon, run every phase, print the figures."""
    configure_logging("warning", "console")
    document = label_pdf()
    costs = stage_costs(document, args.samples)
    sims = {f.machine: f.simulator() for f in FAMILIES if f.simulator is not None}
    async with contextlib.AsyncExitStack() as stack:
        sim_ports: dict[str, int] = {}
        for machine, sim in sims.items():
            server = await stack.enter_async_context(await serve_tcp(sim, HOST, 0))
            sim_ports[machine] = server.port
        with tempfile.TemporaryDirectory(prefix="bench-print-") as tmp:
            port = free_port()
            config_path = Path(tmp) / "config.toml"
            config_path.write_text(config(port, Path(tmp) / "data", sim_ports))
            env = {
                "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN[0],
                "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": ADMIN[1],
            }
            daemon = start_daemon(config_path, port, Path(tmp) / "daemon.log", env=env)
            try:
                daemon.wait_ready()
                results, rss = await measure(daemon, document, sims, args)
                report(results, costs, rss, args)
            finally:
                code = daemon.stop()
                print(f"daemon exit code after SIGTERM: {code}")


async def measure(
    daemon: Daemon,
    document: bytes,
    sims: Mapping[str, Simulator],
    args: argparse.Namespace,
) -> tuple[dict[str, MachineResult], float]:
    """Warm up, then every phase per machine; returns the results and the daemon's final RSS."""
    basic = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    timeout = aiohttp.ClientTimeout(total=LABEL_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(
            f"{daemon.base_url}/api/user/token/", headers={"Authorization": f"Basic {basic}"}
        ) as resp:
            token = (await resp.json())["token"]
        session.headers["Authorization"] = f"Token {token}"
        session.cookie_jar.clear()
        async with session.get(f"{daemon.base_url}/api/machine/") as resp:
            machines = {m["name"]: m["pk"] for m in await resp.json()}
        benches = {
            name: Bench(session, daemon.base_url, document, machines[name], sims.get(name))
            for name in (*sims, VIRTUAL)
        }
        for name in sims:
            await benches[name].latency(WARM_UP_JOBS)
        results: dict[str, MachineResult] = {}
        for name, bench in benches.items():
            enqueue, end_to_end = await bench.latency(args.latency_jobs)
            result = MachineResult(enqueue, end_to_end, [], [], [])
            for _ in range(args.rounds):
                rate, queued = await bench.burst(args.jobs)
                result.rates.append(rate)
                result.burst_enqueue.extend(queued)
                result.rss_mib.append(mib(rss_kib(daemon.pid)))
            results[name] = result
        return results, mib(rss_kib(daemon.pid))


def report(
    results: Mapping[str, MachineResult],
    costs: Mapping[str, StageCost],
    rss: float,
    args: argparse.Namespace,
) -> None:
    """Print the tables and the targets."""
    print("inventree-edge print benchmark: 62 x 29 mm PDF labels at 300 dpi, 1 label per job")
    print(f"NOTE: client, simulators and daemon share this host's {os.cpu_count()} CPU cores.")
    print(f"\nstage cost per label (this process, median of {args.samples}), ms:")
    print(f"{'family':11s} {'page dots':>10s} {'render':>8s} {'encode':>8s} {'total':>8s}")
    for family in FAMILIES:
        cost = costs[family.machine]
        page = f"{family.page_dots[0]}x{family.page_dots[1]}"
        print(
            f"{family.machine:11s} {page:>10s} {cost.render:8.2f} {cost.encode:8.2f} "
            f"{cost.total:8.2f}"
        )
    warm_up = WARM_UP_JOBS * (len(results) - 1)
    total_jobs = warm_up + len(results) * (args.latency_jobs + args.rounds * args.jobs)
    print(f"\njobs submitted in all: {total_jobs}; daemon RSS after the run: {rss:.1f} MiB")
    rates_title = f"labels/s by burst of {args.jobs}"
    print(
        f"{'machine':11s} {rates_title:>32s} {'enq p50':>8s} {'enq p99':>8s} "
        f"{'e2e p50':>8s} {'e2e p99':>8s} {'burst enq p99':>14s}"
    )
    for name, r in results.items():
        rates = " ".join(f"{rate:5.0f}" for rate in r.rates)
        print(
            f"{name:11s} {rates:>32s} {ms(percentile(r.enqueue, 50)):8.2f} "
            f"{ms(percentile(r.enqueue, 99)):8.2f} {ms(percentile(r.end_to_end, 50)):8.2f} "
            f"{ms(percentile(r.end_to_end, 99)):8.2f} {ms(percentile(r.burst_enqueue, 99)):14.2f}"
        )
    for name, r in results.items():
        print(
            f"daemon RSS after each {name} burst (MiB): " + " ".join(f"{v:.1f}" for v in r.rss_mib)
        )
    print("\nend to end p50 minus render and encode (queue, database, send, printer replies), ms:")
    for family in FAMILIES:
        if family.machine in results:
            e2e = ms(percentile(results[family.machine].end_to_end, 50))
            print(f"  {family.machine:11s} {e2e - costs[family.machine].total:8.2f}")
    print("targets (reported, never enforced):")
    checks: list[tuple[str, float, float, str]] = []
    for family in FAMILIES:
        name = family.machine
        checks.append((f"render + encode <= 20 ms per label ({name})", costs[name].total, 20, "ms"))
        if name not in results:
            continue
        r = results[name]
        slowdown = r.rates[-1] / r.rates[0] if r.rates[0] else 0.0
        checks += [
            (f"labels/s >= 50 end to end ({name}, last burst)", r.rates[-1], 50, "/s"),
            (
                f"POST to last byte p50 <= 30 ms ({name})",
                ms(percentile(r.end_to_end, 50)),
                30,
                "ms",
            ),
            (
                f"enqueue p99 <= 10 ms (one at a time, {name})",
                ms(percentile(r.enqueue, 99)),
                10,
                "ms",
            ),
            (f"no slowdown as history grows ({name}, last / first)", slowdown, 0.9, "x"),
        ]
    for label, value, target, unit in checks:
        passed = value <= target if unit == "ms" else value >= target
        print(f"  {label:55s} {value:8.2f} {unit:3s} {verdict(passed)}")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per burst")
    parser.add_argument("--rounds", type=int, default=5, help="bursts per machine")
    parser.add_argument("--latency-jobs", type=int, default=100, help="jobs sent one at a time")
    parser.add_argument("--samples", type=int, default=200, help="stage-cost samples per family")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
