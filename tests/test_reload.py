"""SIGHUP reloads the configuration on the real daemon; a second stop signal forces the exit."""

from __future__ import annotations

import http.client
import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.exit_codes import EXIT_FAILURE
from tests.conftest import label_pdf
from tests.daemon_helpers import (
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    Daemon,
    basic_auth,
    daemon_env,
    parse_json_lines,
    running_daemon,
    token_auth,
)
from tests.waiting import wait_until_blocking

ADMIN_ENV = {
    "INVENTREE_EDGE_AUTH__ADMIN_USER": "admin",
    "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": "pw",
}
RELOAD_TIMEOUT_S = 10.0


def _config(level: str, *machines: str, delay_ms: int = 0) -> str:
    text = f'[log]\nlevel = "{level}"\n'
    for name in machines:
        text += (
            f'\n[[machines]]\nname = "{name}"\ndriver = "virtual"\n'
            f"[machines.driver_settings]\nLABEL_DELAY_MS = {delay_ms}\n"
        )
    return text


def _token(daemon: Daemon) -> dict[str, str]:
    resp = daemon.request("GET", "/api/user/token/", headers=basic_auth("admin", "pw"))
    assert resp.status == 200, resp.body
    return token_auth(resp.json()["token"])


def _machines(daemon: Daemon, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    resp = daemon.request("GET", "/api/machine/", headers=headers)
    assert resp.status == 200, resp.body
    return {m["name"]: m for m in resp.json()}


def _events(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    return [r for r in daemon.log_records() if r["event"] == event]


def _reloaded(daemon: Daemon, event: str, count: int = 1) -> list[dict[str, Any]]:
    wait_until_blocking(lambda: len(_events(daemon, event)) >= count, RELOAD_TIMEOUT_S)
    return _events(daemon, event)


def test_sighup_applies_the_log_level_and_new_machines(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_config("info", "Desk"))
    with running_daemon(tmp_path / "data", config=config, env=ADMIN_ENV) as daemon:
        headers = _token(daemon)
        desk = _machines(daemon, headers)["Desk"]
        config.write_text(_config("debug", "Desk", "Shelf"))
        daemon.proc.send_signal(signal.SIGHUP)
        (reloaded,) = _reloaded(daemon, "config_reloaded")
        assert reloaded["log_level"] == "debug"
        assert reloaded["machines_added"] == ["Shelf"]
        assert reloaded["restart_needed_for"] == []
        machines = _machines(daemon, headers)
        assert sorted(machines) == ["Desk", "Shelf"]
        assert machines["Desk"]["pk"] == desk["pk"]
        assert machines["Shelf"]["initialized"] is True
        assert daemon.signal_and_wait() == 0
    # Debug lines (each service's stop) are written only at the new level.
    assert _events(daemon, "service_stopped")


def test_an_invalid_configuration_is_refused_and_the_running_one_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_config("info", "Desk"))
    with running_daemon(tmp_path / "data", config=config, env=ADMIN_ENV) as daemon:
        headers = _token(daemon)
        config.write_text(_config("debug", "Desk", "Shelf") + "[[machines\n")  # broken TOML
        daemon.proc.send_signal(signal.SIGHUP)
        (refused,) = _reloaded(daemon, "config_reload_refused")
        assert refused["level"] == "error"
        assert str(config) in refused["reason"]
        config.write_text(_config("loud", "Desk", "Shelf"))  # valid TOML, invalid value
        daemon.proc.send_signal(signal.SIGHUP)
        second = _reloaded(daemon, "config_reload_refused", 2)[1]
        assert "log.level" in second["reason"]
        # Nothing of either file was applied, and the daemon serves on.
        assert sorted(_machines(daemon, headers)) == ["Desk"]
        assert not _events(daemon, "config_reloaded")
        config.write_text(_config("info", "Desk", "Shelf"))
        daemon.proc.send_signal(signal.SIGHUP)
        _reloaded(daemon, "config_reloaded")
        assert sorted(_machines(daemon, headers)) == ["Desk", "Shelf"]
        assert daemon.signal_and_wait() == 0
    # Refusals are one line each: no traceback.
    assert not [r for r in daemon.log_records() if "exception" in r]


def test_a_job_and_a_connection_in_flight_survive_a_reload(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_config("info", "Desk", delay_ms=200))
    with running_daemon(tmp_path / "data", config=config, env=ADMIN_ENV) as daemon:
        headers = _token(daemon)
        desk = _machines(daemon, headers)["Desk"]
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
        try:
            conn.request(
                "POST",
                f"/api/machine/{desk['pk']}/print/?copies=10",
                body=label_pdf(),
                headers={**headers, "Content-Type": "application/pdf"},
            )
            resp = conn.getresponse()
            job = json.loads(resp.read())
            assert resp.status == 201, job

            def status() -> dict[str, Any]:
                conn.request("GET", f"/api/machine/jobs/{job['pk']}/", headers=headers)
                answer = conn.getresponse()
                assert answer.status == 200
                result: dict[str, Any] = json.loads(answer.read())
                return result

            wait_until_blocking(lambda: status()["status"] == "printing", RELOAD_TIMEOUT_S)
            config.write_text(_config("debug", "Desk", "Shelf", delay_ms=200))
            daemon.proc.send_signal(signal.SIGHUP)
            _reloaded(daemon, "config_reloaded")
            assert status()["status"] == "printing"  # the same keep-alive connection answers
            wait_until_blocking(lambda: status()["status"] == "complete", 30.0)
            done = status()
        finally:
            conn.close()
        assert (done["progress"], done["attempts"], done["errors"]) == (10, 1, [])
        assert daemon.signal_and_wait() == 0


# `run` with the virtual printer's release held: the first stop blocks there, as on a printer
# that does not answer while it is being closed. "closing" on stdout says it got that far.
_BLOCKED_STOP = """
import asyncio, sys
from agent import cli
from drivers.virtual import VirtualLabelPrinter

async def close_machine(self, machine):
    print("closing", flush=True)
    await asyncio.Event().wait()

VirtualLabelPrinter.close_machine = close_machine
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_second_stop_signal_forces_the_exit_while_the_first_stop_is_blocked(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(_config("info", "Desk"))
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _BLOCKED_STOP, "run", "--config", str(config)],
            cwd=REPO_ROOT,
            env=daemon_env(tmp_path / "data"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        wait_until_blocking(lambda: '"listening"' in stderr_path.read_text(), STARTUP_TIMEOUT_S)
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
        assert ready, "the stop did not reach the printer's release"
        assert proc.stdout.readline() == b"closing\n"
        assert proc.poll() is None  # the first stop is stuck there
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5.0) == EXIT_FAILURE
        # Well before the registry's 3 s stop budget would have let the first stop go on.
        assert time.monotonic() - began < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    events = [r["event"] for r in parse_json_lines(stderr_path.read_text())]
    assert events[-1] == "forced_exit"
    assert "stopped" not in events
