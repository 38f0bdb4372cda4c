"""`inventree-edge doctor` and `discover` on real directories, sockets, pseudo-terminals and daemons."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.doctor import check_clock, check_database, check_free_space, check_port, run_doctor
from tests.daemon_helpers import free_port, logging_restored, run_cli, running_daemon


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pty() -> Iterator[str]:
    leader, follower = os.openpty()
    try:
        yield os.ttyname(follower)
    finally:
        os.close(follower)
        os.close(leader)


@pytest.fixture
def printer_port() -> Iterator[int]:
    """A listening TCP socket on 127.0.0.1, as a network printer's raw port."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def command(tmp_path: Path, name: str, answer: str, code: int = 0) -> str:
    """A real executable that answers as `timedatectl show --value` does."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho {answer}\nexit {code}\n")
    path.chmod(0o755)
    return str(path)


def write_config(tmp_path: Path, data: Path, port: int, machines: dict[str, str]) -> Path:
    lines = [f'[storage]\npath = "{data}"\n', f'[http]\nhost = "127.0.0.1"\nport = {port}\n']
    for name, connection in machines.items():
        lines.append(
            f'[[machines]]\nname = "{name}"\ndriver = "zpl"\n'
            f'[machines.driver_settings]\nCONNECTION = "{connection}"\n'
        )
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    return path


def doctor(config: Path, timedatectl: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run_doctor(config, out, timedatectl=timedatectl)
    return code, out.getvalue().splitlines()


def test_healthy_host_beside_its_running_daemon_needs_nothing(
    tmp_path: Path, pty: str, printer_port: int
) -> None:
    data, port = tmp_path / "data", free_port()
    machines = {"shipping": f"tcp://127.0.0.1:{printer_port}", "labels": f"serial://{pty}"}
    config = write_config(tmp_path, data, port, machines)
    synced = command(tmp_path, "timedatectl", "yes")

    with running_daemon(data, config=config, port=port) as daemon:
        code, lines = doctor(config, synced)
        assert daemon.signal_and_wait() == 0

    assert code == 0, lines
    assert not [line for line in lines if not line.startswith("ok ")][:-1], lines
    assert lines[-1] == "nothing to fix"
    assert f"ok   port 127.0.0.1:{port}: held by the agent (pid {daemon.proc.pid})" in lines
    assert any(line.startswith("ok   database") and "intact" in line for line in lines), lines
    assert f"ok   machine 'shipping' (tcp://127.0.0.1:{printer_port}): answers" in lines
    assert any(
        line.startswith(f"ok   machine 'labels' (serial://{pty}): found at")
        and "may open it" in line
        for line in lines
    ), lines
    assert "ok   clock: synchronised (timedatectl)" in lines


def test_each_problem_is_one_line_saying_what_to_do(tmp_path: Path, pty: str) -> None:
    data, port = tmp_path / "data", free_port()
    with running_daemon(data, port=port) as daemon:  # creates the data directory and database
        assert daemon.signal_and_wait() == 0
    (data / "secret.key").chmod(0o644)
    closed_port = free_port()
    machines = {
        "gone": "serial:///dev/ttyUSB-not-here",
        "off": f"tcp://127.0.0.1:{closed_port}",
    }
    config = write_config(tmp_path, data, port, machines)
    unsynced = command(tmp_path, "timedatectl", "no")

    with socket.create_server(("127.0.0.1", port)):  # another program on the agent's port
        code, lines = doctor(config, unsynced)

    assert code != 0
    fixes = [line for line in lines if line.startswith("FIX")]
    assert (
        f"FIX  data directory {data}: secret.key has mode 0644: other users may read it; "
        f"chmod 600 {data / 'secret.key'} (and run the service with UMask=0077)"
    ) in fixes
    assert any(
        line.startswith(f"FIX  port 127.0.0.1:{port}: in use by another program; stop it")
        for line in fixes
    ), fixes
    assert any(
        line.startswith(
            "FIX  machine 'gone' (serial:///dev/ttyUSB-not-here): device not found; plug it in"
        )
        for line in fixes
    ), fixes
    assert any(
        line.startswith(f"FIX  machine 'off' (tcp://127.0.0.1:{closed_port}): cannot connect")
        for line in fixes
    ), fixes
    assert any(line.startswith("FIX  clock: not synchronised (timedatectl)") for line in fixes)
    assert len(fixes) == 5, lines
    assert lines[-1] == "5 thing(s) to fix"


def test_a_bad_configuration_is_reported_not_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[log]\nlevel = "loud"\n')

    done = run_cli("doctor", "--config", str(config), data_dir=tmp_path / "data")

    assert done.returncode != 0
    assert done.stdout.splitlines()[0].startswith(f"FIX  configuration: {config}; correct it:")
    assert "Traceback" not in done.stderr


def test_damaged_database_is_found(tmp_path: Path) -> None:
    database = tmp_path / "agent.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.execute("CREATE INDEX tx ON t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(f"row {i:05d}" * 20,) for i in range(2000)])
    conn.close()
    assert check_database(database).fix is None
    size = database.stat().st_size
    with database.open("r+b") as handle:  # garbage over pages in the middle of the file
        handle.seek(size // 2)
        handle.write(os.urandom(8192))

    finding = check_database(database)

    assert finding.fix is not None
    assert finding.line().startswith(f"FIX  database {database}: ")


def test_too_little_free_space_needs_a_person(tmp_path: Path) -> None:
    assert check_free_space(tmp_path, minimum=1).fix is None
    assert "free at least" in (check_free_space(tmp_path, minimum=2**62).fix or "")


def test_a_free_port_is_fine_and_an_unresolvable_host_is_not() -> None:
    port = free_port()
    assert check_port("127.0.0.1", port, None).line() == f"ok   port 127.0.0.1:{port}: free"
    assert check_port("no-such-host.invalid", port, None).fix == "correct [http] host"


def test_clock_from_timedatectl_else_from_the_kernel(tmp_path: Path) -> None:
    assert check_clock(command(tmp_path, "yes-clock", "yes")).line() == (
        "ok   clock: synchronised (timedatectl)"
    )
    assert check_clock(command(tmp_path, "no-clock", "no")).fix is not None
    # No systemd (a container): timedatectl fails, so the kernel's adjtimex state decides.
    fallback = check_clock(command(tmp_path, "no-systemd", "''", code=1))
    assert "(adjtimex)" in fallback.detail
    assert "(adjtimex)" in check_clock(str(tmp_path / "missing")).detail


def test_discover_lists_the_pty_a_configured_machine_uses(tmp_path: Path, pty: str) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, data, free_port(), {"receipts": f"serial://{pty}"})

    done = run_cli("discover", "--json", "--config", str(config), data_dir=data)

    assert done.returncode == 0, done.stderr
    found = {d["node"]: d for d in json.loads(done.stdout)["devices"]}
    entry = found[os.path.realpath(pty)]
    assert entry["used_by"] == ["receipts"]
    assert entry["connection"] == f"serial://{pty}?baudrate=9600"
    assert entry["accessible"] is True


def test_discover_says_when_this_user_may_not_open_a_port(tmp_path: Path, pty: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give the pty to another user")
    os.chown(pty, 65534, -1)
    os.chmod(pty, 0o600)  # noqa: PTH101 - a device node
    data = tmp_path / "data"
    config = write_config(tmp_path, data, free_port(), {"receipts": f"serial://{pty}"})

    done = run_cli("discover", "--config", str(config), data_dir=data, without_root_powers=True)

    assert done.returncode == 0, done.stderr
    assert f"may not open {os.path.realpath(pty)}: add it to group dialout" in done.stdout
    assert "used by:    receipts" in done.stdout
