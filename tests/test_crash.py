"""Crash safety with a real daemon process: SIGKILL while jobs are queued and printing, restart.

No accepted job may be lost; a job recorded complete is never printed again; the job that was
being sent is printed again at most once (resuming after its last confirmed label).
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import label_pdf
from tests.daemon_helpers import HTTP_TIMEOUT_S, running_daemon
from tests.waiting import wait_until_blocking

ADMIN = {"INVENTREE_EDGE_AUTH__ADMIN_USER": "admin", "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": "pw"}
JOBS = 12
PAGES = 3
# Each label takes this long on the simulated printer, so the kill lands mid-job.
LABEL_DELAY_MS = 40


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        assert response.status < 300, (response.status, data)
        return json.loads(data)
    finally:
        conn.close()


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[[machines]]
name = "crash"
driver = "virtual"
[machines.driver_settings]
LABEL_DELAY_MS = {LABEL_DELAY_MS}
"""
    )
    return config


@pytest.mark.timeout(120)
def test_sigkill_mid_print_loses_nothing_and_never_reprints_completed_jobs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = _config(tmp_path)
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    with running_daemon(data_dir, config=config, env=ADMIN) as daemon:
        token = _request(daemon.port, "GET", "/api/user/token/", basic)["token"]
        auth = {"Authorization": f"Token {token}"}
        machine = _request(daemon.port, "GET", "/api/machine/", auth)[0]["pk"]
        document = label_pdf(PAGES)
        accepted = [
            _request(
                daemon.port,
                "POST",
                f"/api/machine/{machine}/print/",
                {**auth, "Content-Type": "application/pdf"},
                document,
            )["pk"]
            for _ in range(JOBS)
        ]

        before: list[dict[str, Any]] = []

        def mid_job() -> bool:
            nonlocal before
            before = _request(daemon.port, "GET", "/api/machine/jobs/", auth)
            statuses = Counter(j["status"] for j in before)
            printing = [j for j in before if j["status"] == "printing" and j["progress"] >= 1]
            return statuses["complete"] >= 2 and bool(printing)

        wait_until_blocking(mid_job, 30, "two complete jobs and one part-printed")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    complete_before = {j["pk"] for j in before if j["status"] == "complete"}
    printed_log = _printed_log(data_dir)
    labels_before = Counter(tuple(line.split()) for line in printed_log.read_text().splitlines())

    with running_daemon(data_dir, config=config, env=ADMIN) as daemon:
        after: list[dict[str, Any]] = []

        def all_done() -> bool:
            nonlocal after
            after = _request(daemon.port, "GET", "/api/machine/jobs/", auth)
            return all(j["status"] == "complete" for j in after)

        wait_until_blocking(all_done, 60, "every job to complete after the restart")
        assert daemon.signal_and_wait(signal.SIGTERM) == 0

    assert sorted(j["pk"] for j in after) == sorted(accepted)
    printed = Counter(tuple(line.split()) for line in printed_log.read_text().splitlines())
    for pk in accepted:
        for label in range(1, PAGES + 1):
            times = printed[(pk, str(label))]
            assert times >= 1, f"job {pk} label {label} never printed"
            if pk in complete_before:
                assert times == 1, f"completed job {pk} label {label} printed {times} times"
            else:
                assert times <= 2, f"job {pk} label {label} printed {times} times"
    reprinted = {key for key, count in printed.items() if count > 1}
    # Only labels of the one job that was being sent may repeat, and only those the kill caught.
    assert len({pk for pk, _label in reprinted}) <= 1
    assert all(labels_before[key] == 1 for key in reprinted)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_mid_print_finishes_the_label_and_resumes_without_reprinting(
    tmp_path: Path, signum: signal.Signals
) -> None:
    data_dir = tmp_path / "data"
    config = _config(tmp_path)
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    with running_daemon(data_dir, config=config, env=ADMIN) as daemon:
        token = _request(daemon.port, "GET", "/api/user/token/", basic)["token"]
        auth = {"Authorization": f"Token {token}"}
        machine = _request(daemon.port, "GET", "/api/machine/", auth)[0]["pk"]
        job = _request(
            daemon.port,
            "POST",
            f"/api/machine/{machine}/print/?copies=8",
            {**auth, "Content-Type": "application/pdf"},
            label_pdf(PAGES),
        )["pk"]
        wait_until_blocking(
            lambda: (
                _request(daemon.port, "GET", f"/api/machine/jobs/{job}/", auth)["progress"] >= 2
            ),
            30,
            "two labels printed",
        )
        assert daemon.signal_and_wait(signum) == 0
    stopped_at = len(_printed_log(data_dir).read_text().splitlines())
    assert 2 <= stopped_at < PAGES * 8, "the stop did not land mid-job"

    with running_daemon(data_dir, config=config, env=ADMIN) as daemon:
        done: dict[str, Any] = {}

        def complete() -> bool:
            nonlocal done
            done = _request(daemon.port, "GET", f"/api/machine/jobs/{job}/", auth)
            return bool(done["status"] == "complete")

        wait_until_blocking(complete, 60, "the job to complete after the restart")
        assert daemon.signal_and_wait(signal.SIGTERM) == 0
    assert done["progress"] == PAGES * 8
    assert done["errors"] == []
    printed = Counter(line.split()[1] for line in _printed_log(data_dir).read_text().splitlines())
    # A graceful stop is not a crash: every label exactly once.
    assert printed == Counter({str(n): 1 for n in range(1, PAGES * 8 + 1)})


def _printed_log(data_dir: Path) -> Path:
    """The virtual printer's log of machine "crash" (its folder is `<name>-<machine pk>`)."""
    (log,) = (data_dir / "virtual").glob("crash-*/printed.log")
    return log
