"""Peak memory of the daemon for documents that are small on the wire and huge once decoded.

Run from the repository root: `.venv/bin/python -m bench.memory`. Prints figures; asserts nothing.

Each document gets a fresh daemon (`python -m agent run`, a virtual printer of 62 x 29 mm at
300 dpi) so that its peak resident memory (VmHWM) is the document's alone. The document is
POSTed to `/api/machine/{pk}/print/`; an accepted job is waited for until it has printed.
Documents are decoded in the daemon's render worker (a child process); its peak is sampled every
few milliseconds while the request and the job run, since a worker that hit its memory limit is
gone by the end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench._common import HOST, free_port, mib, start_daemon
from tests.handmade_pdf import drawing_bomb_pdf, image_pdf, text_labels_pdf

ADMIN = ("bench", "bench-password")
# A 1 GB Raspberry Pi: what one job may take, with the system and the daemon's base around it.
TARGET_PEAK_MIB = 256
# The render worker's own cap (RLIMIT_DATA, the default of [jobs] render_memory_mib); its resident
# set also holds code and shared libraries, which the cap does not count (~27 MiB at rest).
WORKER_LIMIT_MIB = 384
WORKER_CODE_MIB = 32
POST_TIMEOUT_S = 300.0
JOB_TIMEOUT_S = 600.0
JOB_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class Case:
    """One document to send, and whether a user needs it printed."""

    name: str
    content_type: str
    build: Callable[[], bytes]
    must_print: bool


def big_png() -> bytes:
    """40 megapixels (8,000 x 5,000 RGB) of white with a black frame: about 150 kB."""
    image = Image.new("RGB", (8000, 5000), "white")
    image.paste((0, 0, 0), (0, 0, 8000, 40))
    image.paste((0, 0, 0), (0, 4960, 8000, 5000))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


CASES = (
    Case(
        "PDF, one 40,000 x 30,000 image",
        "application/pdf",
        lambda: image_pdf(40_000, 30_000),
        False,
    ),
    Case("PNG, 40 megapixels", "image/png", big_png, False),
    Case("PDF, 1,000 pages of text", "application/pdf", lambda: text_labels_pdf(1000), False),
    Case("PDF, 100 pages of text", "application/pdf", lambda: text_labels_pdf(100), True),
    Case(
        "PDF, 900,000 compressed drawing operators",
        "application/pdf",
        lambda: drawing_bomb_pdf(900_000),
        False,
    ),
)
SAMPLE_INTERVAL_S = 0.005


def config(port: int, data_dir: Path) -> str:
    """A virtual printer with InvenTree's usual 62 x 29 mm label at 300 dpi."""
    return f"""
[http]
port = {port}
max_body_bytes = {64 * 1024 * 1024}
[storage]
path = "{data_dir}"
[log]
level = "warning"
format = "json"

[[machines]]
name = "virtual"
driver = "virtual"
[machines.driver_settings]
DPI = 300
LABEL_WIDTH_MM = 62
LABEL_HEIGHT_MM = 29
"""


class ChildPeak:
    """Samples the largest VmHWM of a process's children (the render worker) in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.workers: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_INTERVAL_S):
                self.sample()
                return

    def sample(self) -> None:
        # Each thread lists the children it started: the worker is the render thread's.
        children: set[int] = set()
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                children.update(map(int, (task / "children").read_text().split()))
            except OSError:
                continue
        for child in children:
            try:
                # Until it has started the worker's program, a child is a copy of the daemon.
                if b"agent.render_worker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    continue
                peak = memory_kib(child)["VmHWM"]
            except (OSError, KeyError):
                continue
            self.workers.add(child)
            self.peak_kib = max(self.peak_kib, peak)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


class Api:
    """A tiny blocking client for the daemon's API (one connection per request)."""

    def __init__(self, port: int) -> None:
        self.port = port
        basic = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
        status, body = self.request("GET", "/api/user/token/", auth=f"Basic {basic}")
        if status != http.client.OK:
            raise RuntimeError(f"no token: {status} {body!r}")
        self.auth = f"Token {body['token']}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: str | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        headers = {"Authorization": auth or self.auth}
        if content_type is not None:
            headers["Content-Type"] = content_type
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")


def run_case(case: Case, document: bytes) -> dict[str, Any]:
    """One fresh daemon, one document: the answer, the job's outcome and the memory figures."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        port = free_port()
        config_path = Path(tmp) / "config.toml"
        config_path.write_text(config(port, Path(tmp) / "data"))
        env = {
            "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN[0],
            "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": ADMIN[1],
        }
        daemon = start_daemon(config_path, port, Path(tmp) / "daemon.log", env=env)
        try:
            daemon.wait_ready()
            api = Api(port)
            _, machines = api.request("GET", "/api/machine/")
            pk = machines[0]["pk"]
            before = memory_kib(daemon.pid)
            started = time.perf_counter()
            with ChildPeak(daemon.pid) as worker:
                status, body = api.request(
                    "POST",
                    f"/api/machine/{pk}/print/",
                    document,
                    case.content_type,
                    timeout=POST_TIMEOUT_S,
                )
                answered = time.perf_counter() - started
                outcome = "-"
                if status == http.client.CREATED:
                    job = wait_for_job(api, body["pk"])
                    outcome = f"{job['status']}, {job['progress']} labels"
                    body = {"pages": job["pages"], "warnings": job["warnings"]}
                finished = time.perf_counter() - started
            after = memory_kib(daemon.pid)
            _, jobs = api.request("GET", "/api/machine/jobs/")
        finally:
            daemon.stop()
    return {
        "status": status,
        "body": body,
        "answered_s": answered,
        "finished_s": finished,
        "outcome": outcome,
        "jobs_stored": len(jobs),
        "rss_before_kib": before["VmRSS"],
        "peak_before_kib": before["VmHWM"],
        "peak_kib": after["VmHWM"],
        "worker_peak_kib": worker.peak_kib,
        "workers": len(worker.workers),
    }


def wait_for_job(api: Api, pk: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        _, job = api.request("GET", f"/api/machine/jobs/{pk}/")
        if job["status"] in ("complete", "failed", "cancelled"):
            return dict(job)
        time.sleep(JOB_POLL_INTERVAL_S)
    raise TimeoutError(f"job {pk} not finished after {JOB_TIMEOUT_S:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--case", type=int, action="append", help="run only these (1-based)")
    args = parser.parse_args()
    chosen = [CASES[i - 1] for i in args.case] if args.case else list(CASES)
    print(
        f"target on a 1 GB host: daemon peak <= {TARGET_PEAK_MIB} MiB and render worker "
        f"<= {WORKER_LIMIT_MIB + WORKER_CODE_MIB} MiB (its data cap and its code) per job\n"
    )
    for case in chosen:
        document = case.build()
        result = run_case(case, document)
        answer = json.dumps(result["body"])
        if len(answer) > 160:
            answer = answer[:157] + "..."
        peak = mib(result["peak_kib"])
        print(f"{case.name} ({len(document) / 1e6:.2f} MB {case.content_type})")
        print(f"  HTTP {result['status']} after {result['answered_s']:.2f} s: {answer}")
        if case.must_print or result["status"] == http.client.CREATED:
            print(f"  job: {result['outcome']} after {result['finished_s']:.2f} s")
        worker_peak = mib(result["worker_peak_kib"])
        print(
            f"  daemon RSS before POST {mib(result['rss_before_kib']):.0f} MiB "
            f"(peak {mib(result['peak_before_kib']):.0f}); peak after {peak:.0f} MiB; "
            f"render worker peak {worker_peak:.0f} MiB ({result['workers']} worker processes); "
            f"jobs stored: {result['jobs_stored']}"
        )
        expected = "printed" if case.must_print else "refused or printed"
        within = peak <= TARGET_PEAK_MIB and worker_peak <= WORKER_LIMIT_MIB + WORKER_CODE_MIB
        print(f"  expected: {expected}, peaks within target: {'yes' if within else 'NO'}\n")


if __name__ == "__main__":
    main()
