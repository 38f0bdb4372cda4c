"""The daemon as systemd runs it: a real `python -m agent run` process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import cli, daemon, exit_codes
from agent.config import load_settings
from tests.daemon_helpers import (
    OTHER_UID,
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Daemon,
    basic_auth,
    daemon_env,
    free_port,
    give_to_another_user,
    logging_restored,
    parse_json_lines,
    run_cli,
    run_until_exit,
    running_daemon,
    spawned_daemon,
    token_auth,
)
from tests.waiting import wait_until_blocking

ADMIN = "admin"
ADMIN_PASSWORD = "first-password"
UNIT_FILE = REPO_ROOT / "systemd" / "inventree-edge.service"
# Interpreter teardown and the last SQLite fsync after the staged budget.
SHUTDOWN_MARGIN_S = 5.0
# A datagram from the daemon to systemd's notify socket arrives at once; bound a missing one.
NOTIFY_TIMEOUT_S = 5.0


def admin_env(password: str = ADMIN_PASSWORD) -> dict[str, str]:
    return {
        "INVENTREE_EDGE_AUTH__ADMIN_USER": ADMIN,
        "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": password,
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that only read from it."""
    data = tmp_path_factory.mktemp("shared") / "data"
    with running_daemon(data, env=admin_env()) as running:
        yield running
        assert running.signal_and_wait() == 0


def admin_token(running: Daemon, password: str = ADMIN_PASSWORD) -> dict[str, str]:
    resp = running.request("GET", "/api/user/token/", headers=basic_auth(ADMIN, password))
    assert resp.status == 200, resp.body
    return token_auth(resp.json()["token"])


def create_machine(running: Daemon, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"machine_type": "label-printer", "driver": "virtual", **fields}
    resp = running.request("POST", "/api/machine/", headers=headers, json_body=body)
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.json()
    return result


def machines_by_name(running: Daemon, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    resp = running.request("GET", "/api/machine/", headers=headers)
    assert resp.status == 200, resp.body
    return {m["name"]: m for m in resp.json()}


def setting_values(running: Daemon, headers: dict[str, str], pk: str) -> dict[str, str]:
    resp = running.request("GET", f"/api/machine/{pk}/settings/", headers=headers)
    assert resp.status == 200, resp.body
    return {f"{s['config_type']}/{s['key']}": s["value"] for s in resp.json()}


def put_setting(
    running: Daemon, headers: dict[str, str], pk: str, scope: str, key: str, value: str
) -> None:
    resp = running.request(
        "PUT",
        f"/api/machine/{pk}/settings/{scope}/{key}/",
        headers=headers,
        json_body={"value": value},
    )
    assert resp.status == 200, resp.body


# starting and answering


def test_daemon_answers_api_root_without_credentials(shared: Daemon) -> None:
    resp = shared.request("GET", "/api/")
    assert resp.status == 200
    info = resp.json()
    assert info["apiVersion"] == 303
    assert info["server"] == "InvenTree"
    assert info["instance"] == "InvenTree Edge"


def test_bootstrap_admin_from_environment_can_log_in(shared: Daemon) -> None:
    resp = shared.request("GET", "/api/user/me/", headers=basic_auth(ADMIN, ADMIN_PASSWORD))
    assert resp.status == 200
    assert resp.json()["username"] == ADMIN
    assert resp.json()["is_superuser"] is True


def test_logs_are_json_lines_on_stderr_when_not_a_tty(shared: Daemon) -> None:
    shared.request("GET", "/api/")
    records = shared.log_records()  # fails on any line that is not JSON
    assert records, "the daemon logged nothing"
    for record in records:
        assert {"event", "level", "logger", "timestamp"} <= record.keys(), record
    events = [r["event"] for r in records]
    assert "listening" in events
    assert "admin_user_created" in events
    assert shared.stdout_path.read_text() == ""


# stopping


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_daemon_with_exit_code_0(tmp_path: Path, signum: signal.Signals) -> None:
    with running_daemon(tmp_path / "data") as running:
        assert running.request("GET", "/api/").status == 200
        assert running.signal_and_wait(signum) == 0
        records = running.log_records()
    assert [r["signal"] for r in records if r["event"] == "signal_received"] == [signum.name]
    assert [r["event"] for r in records][-2:] == ["stopping", "stopped"]


# `run`, with the machines' initialisation held until the process is killed: it says "blocked"
# on stdout once the store is open and the registry has begun to start.
_BLOCKED_START_UP = """
import asyncio, sys
from agent import cli, registry

async def blocked(self):
    print("blocked", flush=True)
    await asyncio.Event().wait()

registry.Registry.start = blocked
sys.exit(cli.main(["run"]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_stops_what_started_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    stderr_path = tmp_path / "stderr.log"
    env = daemon_env(tmp_path / "data", extra={"INVENTREE_EDGE_LOG__LEVEL": "debug"})
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _BLOCKED_START_UP],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
        assert ready, "the daemon did not reach the machines' initialisation"
        assert proc.stdout.readline() == b"blocked\n"
        proc.send_signal(signum)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    records = parse_json_lines(stderr_path.read_text())
    events = [r["event"] for r in records]
    assert [r["signal"] for r in records if r["event"] == "signal_received"] == [signum.name]
    assert "listening" not in events
    assert events[-2:] == ["stopping", "stopped"]
    # What had started stopped, in reverse order, each once, without an error.
    stopped = [r["service"] for r in records if r["event"] == "service_stopped"]
    assert stopped == ["registry", "events", "render", "store", "monitor"]
    assert not [r for r in records if r["level"] in ("error", "critical") or "exception" in r]


def test_shutdown_budget_fits_inside_systemd_stop_timeout() -> None:
    timeout = _timespan_seconds(_unit_setting("TimeoutStopSec"))
    assert timeout > daemon.SHUTDOWN_BUDGET_S + SHUTDOWN_MARGIN_S


def test_systemd_does_not_restart_after_a_configuration_error() -> None:
    codes = _unit_setting("RestartPreventExitStatus").split()
    assert str(exit_codes.EXIT_CONFIG) in codes


def test_under_journald_the_daemon_gives_each_line_its_priority(tmp_path: Path) -> None:
    # As systemd starts the service: stderr is the journal stream, JOURNAL_STREAM names it.
    stderr_path = tmp_path / "journal"
    with stderr_path.open("wb") as stderr:
        info = stderr_path.stat()
        env = daemon_env(
            tmp_path / "data", free_port(), {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        )
        proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", "agent", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:

            def listening() -> bool:
                assert proc.poll() is None, stderr_path.read_bytes()
                return b'"listening"' in stderr_path.read_bytes()

            wait_until_blocking(listening, STARTUP_TIMEOUT_S, "the daemon listening")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=NOTIFY_TIMEOUT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    by_event = {}
    for line in stderr_path.read_bytes().splitlines():
        assert line[:1] == b"<", line
        priority, _, text = line[1:].partition(b">")
        by_event[json.loads(text)["event"]] = int(priority)
    # No password given: the admin is not created, a warning (4); listening is info (6).
    assert by_event["admin_user_not_created"] == 4
    assert by_event["listening"] == 6
    assert by_event["stopped"] == 6


# the installed service and the command line use the same data


HOST_CONFIG = REPO_ROOT / "systemd" / "config.toml"
INSTALL_DOC = REPO_ROOT / "docs" / "install.md"
INSTALLED_CONFIG = "/etc/inventree-edge/config.toml"


def test_service_and_cli_find_the_data_directory_in_the_same_config_file() -> None:
    # The data directory comes from the file both read, not from the unit's environment.
    environment = " ".join(
        line for line in UNIT_FILE.read_text().splitlines() if line.startswith("Environment")
    )
    assert "STORAGE__PATH" not in environment
    assert f"--config {INSTALLED_CONFIG}" in _unit_setting("ExecStart")
    host = load_settings(HOST_CONFIG)
    assert host.storage.path == Path("/var/lib") / _unit_setting("StateDirectory")
    install = INSTALL_DOC.read_text()
    assert f"systemd/config.toml {INSTALLED_CONFIG}" in install
    # Every documented CLI command reads that file, as the service's user (install-service and
    # uninstall-service write and remove it: they take no --config).
    commands = [
        line
        for line in install.splitlines()
        if "bin/inventree-edge " in line and "install-service" not in line
    ]
    assert commands
    for command in commands:
        assert f"--config {INSTALLED_CONFIG}" in command, command
        if " user " in command or " token " in command:
            assert f"sudo -u {_unit_setting('User')} " in command, command


def test_the_host_config_has_no_virtual_printer_and_passes_check_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load_settings(HOST_CONFIG).machines == []
    with logging_restored():
        assert cli.main(["check-config", "--config", str(HOST_CONFIG)]) == 0
    capsys.readouterr()


def test_install_guide_never_shows_or_exposes_the_admin_password() -> None:
    lines = INSTALL_DOC.read_text().splitlines()
    secret_lines = [n for n, line in enumerate(lines) if "ADMIN_PASSWORD=" in line]
    assert secret_lines
    for number in secret_lines:
        assert "echo" not in lines[number]
        assert ">/dev/null" in lines[number]  # tee would print it back
    # The file exists with mode 600 before the password goes in.
    made_private = [n for n, line in enumerate(lines) if "install -m 600" in line]
    assert made_private
    assert min(made_private) < min(secret_lines)
    # Typed without echo.
    reads = [line for line in lines if line.startswith("read ")]
    assert reads
    assert all(" -rs " in line for line in reads)


def test_open_files_limit_leaves_room_above_the_connection_cap() -> None:
    assert int(_unit_setting("LimitNOFILE")) >= 4096


# systemd notification


def test_ready_is_sent_once_listening_and_stopping_on_sigterm(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[machines]]\nname = "Desk"\ndriver = "virtual"\n')
    # Unix socket paths are limited to 108 bytes: keep this one short.
    address = tmp_path_factory.mktemp("sd") / "notify"
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(address))
        notify.settimeout(STARTUP_TIMEOUT_S)
        env = {**admin_env(), "NOTIFY_SOCKET": str(address)}
        with spawned_daemon(tmp_path / "data", config=config, env=env, port=port) as running:
            assert notify.recv(256) == b"READY=1"
            # At READY the API must already work, with the configured machines loaded.
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            machines = running.request(
                "GET", "/api/machine/", headers=basic_auth(ADMIN, ADMIN_PASSWORD)
            )
            assert [m["name"] for m in machines.json()] == ["Desk"]

            running.proc.send_signal(signal.SIGTERM)
            notify.settimeout(NOTIFY_TIMEOUT_S)
            assert notify.recv(256) == b"STOPPING=1"
            assert running.proc.wait(timeout=NOTIFY_TIMEOUT_S) == 0


def test_watchdog_is_fed_while_running_on_an_abstract_socket(tmp_path: Path) -> None:
    name = f"inventree-edge-test-{tmp_path.name}-{free_port()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + name)
        notify.settimeout(STARTUP_TIMEOUT_S)
        # systemd's WatchdogSec as microseconds; the daemon pings at half of it.
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000"}
        with spawned_daemon(tmp_path / "data", env=env) as running:
            messages = [notify.recv(256) for _ in range(4)]
            assert messages == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1", b"WATCHDOG=1"]
            running.proc.send_signal(signal.SIGTERM)
            assert running.proc.wait(timeout=NOTIFY_TIMEOUT_S) == 0


# persistence


def test_restart_keeps_machines_settings_users_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    with running_daemon(data, env=admin_env()) as first:
        headers = admin_token(first)
        label = create_machine(first, headers, name="Label printer")
        spare = create_machine(first, headers, name="Spare printer")
        resp = first.request(
            "PATCH", f"/api/machine/{spare['pk']}/", headers=headers, json_body={"active": False}
        )
        assert resp.status == 200
        put_setting(first, headers, label["pk"], "D", "DPI", "203")
        put_setting(first, headers, label["pk"], "M", "LOCATION", "Shelf 3")
        settings_before = setting_values(first, headers, label["pk"])
        # A user added with the CLI while the daemon runs, as an operator would.
        monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", str(data))
        monkeypatch.setattr("sys.stdin", io.StringIO("bob-password\n"))
        assert cli.main(["user", "create", "bob", "--password-stdin", "--role", "admin"]) == 0
        assert first.signal_and_wait(signal.SIGTERM) == 0

    with running_daemon(data, env=admin_env()) as second:
        machines = machines_by_name(second, headers)  # the token from the first run still works
        assert machines["Label printer"]["pk"] == label["pk"]
        assert machines["Label printer"]["active"] is True
        assert machines["Spare printer"]["pk"] == spare["pk"]
        assert machines["Spare printer"]["active"] is False
        assert len(machines) == 2
        settings_after = setting_values(second, headers, label["pk"])
        assert settings_after == settings_before
        assert settings_after["D/DPI"] == "203"
        assert settings_after["M/LOCATION"] == "Shelf 3"
        bob = second.request("GET", "/api/user/roles/", headers=basic_auth("bob", "bob-password"))
        assert bob.status == 200
        assert bob.json()["roles"]["admin"] == ["view", "add", "change", "delete"]
        assert second.signal_and_wait(signal.SIGINT) == 0


def test_bootstrap_admin_is_created_once_and_never_changed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_daemon(data, env=admin_env("first-password")) as first:
        me = first.request("GET", "/api/user/me/", headers=basic_auth(ADMIN, "first-password"))
        assert me.status == 200
        assert first.signal_and_wait() == 0
    with running_daemon(data, env=admin_env("second-password")) as second:
        changed = second.request(
            "GET", "/api/user/me/", headers=basic_auth(ADMIN, "second-password")
        )
        assert changed.status == 401
        assert changed.json() == {"detail": "Invalid username/password."}
        again = second.request("GET", "/api/user/me/", headers=basic_auth(ADMIN, "first-password"))
        assert again.status == 200
        assert again.json()["pk"] == me.json()["pk"]
        assert second.signal_and_wait() == 0
        events = [r["event"] for r in second.log_records()]
    assert "admin_user_created" not in events


def test_configured_machines_are_created_once_and_their_settings_applied_each_start(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[[machines]]\n"
        'name = "Front desk"\n'
        'driver = "virtual"\n'
        "[machines.machine_settings]\n"
        'LOCATION = "Front shelf"\n'
        "[machines.driver_settings]\n"
        "DPI = 203\n"
        "LABEL_WIDTH_MM = 50\n"
        "\n"
        "[[machines]]\n"
        'name = "Spare"\n'
        'driver = "virtual"\n'
        "active = false\n"
    )
    data = tmp_path / "data"
    with running_daemon(data, config=config, env=admin_env()) as first:
        headers = admin_token(first)
        machines = machines_by_name(first, headers)
        assert sorted(machines) == ["Front desk", "Spare"]
        assert machines["Spare"]["active"] is False
        desk = machines["Front desk"]
        settings = setting_values(first, headers, desk["pk"])
        assert settings["M/LOCATION"] == "Front shelf"
        assert settings["D/DPI"] == "203"
        assert settings["D/LABEL_WIDTH_MM"] == "50"
        put_setting(first, headers, desk["pk"], "D", "DPI", "600")
        extra = create_machine(first, headers, name="Added by API")
        assert first.signal_and_wait() == 0

    with running_daemon(data, config=config, env=admin_env()) as second:
        machines = machines_by_name(second, headers)
        assert sorted(machines) == ["Added by API", "Front desk", "Spare"]
        assert machines["Front desk"]["pk"] == desk["pk"]
        assert machines["Added by API"]["pk"] == extra["pk"]
        # The file is the source of truth for the settings it names.
        assert setting_values(second, headers, desk["pk"])["D/DPI"] == "203"
        assert second.signal_and_wait() == 0


# failing to start


def test_a_second_daemon_on_the_same_data_refuses_to_start_and_touches_nothing(
    tmp_path: Path,
) -> None:
    # Two daemons on one queue would both print its jobs: every label twice.
    data = tmp_path / "data"
    with running_daemon(data, env=admin_env()) as first:
        result = run_until_exit(data)
        assert result.returncode == daemon.EXIT_UNAVAILABLE
        failures = _failures(result.stderr)
        assert len(failures) == 1
        assert failures[0]["event"] == "startup_failed"
        assert str(data.resolve()) in failures[0]["reason"]
        assert "already running" in failures[0]["reason"]
        assert not [r for r in parse_json_lines(result.stderr) if r["event"] == "registry_started"]
        assert first.request("GET", "/api/").status == 200
        assert first.signal_and_wait() == 0
    # Once the first has stopped, the next one starts.
    with running_daemon(data, env=admin_env()) as again:
        assert again.signal_and_wait() == 0


def test_port_in_use_exits_with_a_code_systemd_does_not_restart_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_until_exit(tmp_path / "data", port=port)
    assert result.returncode == daemon.EXIT_UNAVAILABLE
    assert str(daemon.EXIT_UNAVAILABLE) in _unit_setting("RestartPreventExitStatus").split()
    failures = _failures(result.stderr)
    assert len(failures) == 1
    assert failures[0]["event"] == "startup_failed"
    assert f"127.0.0.1:{port}" in failures[0]["reason"]
    assert "address already in use" in failures[0]["reason"].lower()
    assert "[http] port" in failures[0]["reason"]


def test_unusable_data_directory_exits_with_a_code_systemd_does_not_restart(
    tmp_path: Path,
) -> None:
    regular_file = tmp_path / "a-file"
    regular_file.write_text("not a directory")
    result = run_until_exit(regular_file / "data")
    assert result.returncode == daemon.EXIT_DATA_DIR
    assert str(daemon.EXIT_DATA_DIR) in _unit_setting("RestartPreventExitStatus").split()
    failures = _failures(result.stderr)
    assert len(failures) == 1
    assert str(regular_file / "data") in failures[0]["reason"]
    assert "not a directory" in failures[0]["reason"]
    assert regular_file.read_text() == "not a directory"


@pytest.mark.parametrize("owned", ["database", "data directory", "secret"])
def test_data_of_another_user_is_refused_with_one_line_and_left_alone(
    tmp_path: Path, owned: str
) -> None:
    # `sudo inventree-edge user create ...` before the first start left root's files behind.
    data = tmp_path / "data"
    with running_daemon(data) as first:
        assert first.signal_and_wait() == 0
    target = {
        "database": data / "inventree-edge.sqlite3",
        "data directory": data,
        "secret": data / "secret.key",
    }[owned]
    target.touch()
    give_to_another_user(target)
    result = run_until_exit(data)
    assert result.returncode == daemon.EXIT_DATA_DIR
    (failure,) = _failures(result.stderr)
    assert "Traceback" not in result.stderr
    assert f"{target} belongs to user" in failure["reason"]
    assert f"chown -R {pwd.getpwuid(os.geteuid()).pw_name}: {data}" in failure["reason"]
    assert target.stat().st_uid == OTHER_UID


@pytest.mark.parametrize("read_only", ["database", "data directory"])
def test_read_only_data_is_refused_with_one_line(tmp_path: Path, read_only: str) -> None:
    data = tmp_path / "data"
    with running_daemon(data) as first:
        assert first.signal_and_wait() == 0
    target = data / "inventree-edge.sqlite3" if read_only == "database" else data
    target.chmod(0o555 if target.is_dir() else 0o444)
    result = run_cli("run", data_dir=data, without_root_powers=True)
    assert result.returncode == daemon.EXIT_DATA_DIR
    (failure,) = _failures(result.stderr)
    assert "Traceback" not in result.stderr
    assert f"{target} is not writable" in failure["reason"]


def test_data_directory_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    result = run_cli("run", data_dir=parent / "data", without_root_powers=True)
    assert result.returncode == daemon.EXIT_DATA_DIR
    (failure,) = _failures(result.stderr)
    assert f"cannot create the data directory {parent / 'data'}" in failure["reason"]


def test_database_from_a_newer_agent_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    database = data / "inventree-edge.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA user_version = 99")
    result = run_until_exit(data)
    assert result.returncode == daemon.EXIT_FAILURE
    failures = _failures(result.stderr)
    assert len(failures) == 1
    assert "schema version 99 is newer" in failures[0]["reason"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("config_text", "env", "named"),
    [
        ("[http]\nportt = 8080\n", {}, "unknown key 'http.portt' in {config}"),
        (
            "",
            {"INVENTREE_EDGE_LOG__LEVEL": "loud"},
            "invalid value for 'log.level' in environment variable INVENTREE_EDGE_LOG__LEVEL",
        ),
    ],
    ids=["unknown-key-in-file", "bad-value-in-environment"],
)
def test_bad_configuration_exits_78_with_one_line(
    tmp_path: Path, config_text: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    result = run_until_exit(tmp_path / "data", config=config, env=env)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("inventree-edge: configuration error: ")
    assert named.format(config=config) in lines[0]
    assert not (tmp_path / "data").exists()


def test_bad_machine_entry_in_configuration_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[machines]]\nname = "Desk"\ndriver = "virtual"\n[machines.driver_settings]\nDPII = 300\n'
    )
    result = run_until_exit(tmp_path / "data", config=config)
    assert result.returncode == 78
    failures = _failures(result.stderr)
    assert len(failures) == 1
    assert "Desk" in failures[0]["reason"]
    assert "DPII" in failures[0]["reason"]


def _failures(stderr: str) -> list[dict[str, Any]]:
    return [r for r in parse_json_lines(stderr) if r["level"] in ("error", "critical")]


def _unit_setting(key: str) -> str:
    """The value of `key=` in the unit file (the last one wins, as in systemd)."""
    values = [
        line.split("=", 1)[1].strip()
        for line in UNIT_FILE.read_text().splitlines()
        if line.strip().startswith(f"{key}=")
    ]
    assert values, f"{key} missing from {UNIT_FILE}"
    return values[-1]


def _timespan_seconds(value: str) -> float:
    """A systemd time span such as `30`, `30s`, `1min 30s` or `90sec` in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def test_daemon_times_out_idle_connections_and_caps_open_ones(tmp_path: Path) -> None:
    """The daemon serves with the idle timeout and the connection cap (sync sockets, bounded)."""
    env = {
        "INVENTREE_EDGE_HTTP__IDLE_TIMEOUT_S": "2",
        "INVENTREE_EDGE_HTTP__MAX_CONNECTIONS": "3",
    }
    with running_daemon(tmp_path / "data", env=env) as running:
        held = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(3)]
        try:
            # At the cap, a client with a request is served: the longest-idle connection makes
            # room (503 is for when every connection is mid-request, tests/test_http_server.py).
            with socket.create_connection(("127.0.0.1", running.port), timeout=5) as extra:
                extra.sendall(b"GET /api/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert extra.recv(4096).startswith(b"HTTP/1.1 200")
            # Idle connections are closed by the daemon: recv sees the end of the stream.
            for sock in held:
                assert sock.recv(1) == b""
        finally:
            for sock in held:
                sock.close()
        assert running.request("GET", "/api/").status == 200
