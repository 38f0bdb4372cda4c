"""The real daemon refuses, in one clear line, to start on storage that would lose or hide data."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from agent import cli, daemon
from tests.daemon_helpers import REPO_ROOT, Exited, parse_json_lines, run_until_exit, running_daemon

DATABASE = "inventree-edge.sqlite3"
SECRET = "secret.key"


@pytest.fixture
def used_data(tmp_path: Path) -> Path:
    """A data directory the daemon has run in: database with a machine, and the secret."""
    data = tmp_path / "data"
    with running_daemon(data) as running:
        assert running.signal_and_wait() == 0
    assert (data / SECRET).exists()
    with closing(sqlite3.connect(data / DATABASE)) as conn, conn:
        conn.execute(
            "INSERT INTO machine (pk, name, machine_type, driver) VALUES ('m', 'Desk', 't', 'd')"
        )
        for index in range(300):
            conn.execute(
                "INSERT INTO user (username, password_hash, date_joined) VALUES (?, 'x', '2026')",
                (f"user-{index}",),
            )
    return data


def test_systemd_does_not_restart_into_a_storage_refusal() -> None:
    unit = (REPO_ROOT / "systemd" / "inventree-edge.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("RestartPreventExitStatus=")]
    assert str(daemon.EXIT_DATA) in line.split("=", 1)[1].split()


def the_one_failure(result: Exited) -> str:
    failures = [r for r in parse_json_lines(result.stderr) if r["level"] in ("error", "critical")]
    assert len(failures) == 1, result.stderr
    assert "Traceback" not in result.stderr
    reason: str = failures[0]["reason"]
    return reason


@pytest.mark.parametrize("damage", ["deleted", "truncated to 0 bytes"])
def test_a_lost_database_is_refused_until_told_to_reset(used_data: Path, damage: str) -> None:
    database = used_data / DATABASE
    if damage == "deleted":
        database.unlink()
    else:
        database.write_bytes(b"")
    result = run_until_exit(used_data)
    assert result.returncode == daemon.EXIT_DATA
    reason = the_one_failure(result)
    assert str(database) in reason
    assert "--reset-database" in reason
    assert database.exists() == (damage != "deleted")
    with running_daemon(used_data, args=["--reset-database"]) as running:
        assert running.request("GET", "/api/").status == 200
        assert running.signal_and_wait() == 0
    # Reset once: afterwards the new database starts like any other.
    with running_daemon(used_data) as running:
        assert running.signal_and_wait() == 0


def test_damaged_pages_are_refused_with_one_line(used_data: Path) -> None:
    database = used_data / DATABASE
    with closing(sqlite3.connect(database)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'user'").fetchone()
    with database.open("r+b") as file:
        file.seek((root - 1) * page_size + 8)
        file.write(b"\xff" * (page_size - 16))
    before = database.read_bytes()
    result = run_until_exit(used_data)
    assert result.returncode == daemon.EXIT_DATA
    reason = the_one_failure(result)
    assert "is damaged" in reason
    assert "--reset-database" in reason
    assert database.read_bytes() == before


def test_a_truncated_secret_is_refused_at_start(used_data: Path) -> None:
    (used_data / SECRET).write_bytes(b"short")
    result = run_until_exit(used_data)
    assert result.returncode == daemon.EXIT_DATA
    reason = the_one_failure(result)
    assert SECRET in reason
    assert "damaged" in reason


@pytest.fixture
def immutable(used_data: Path) -> Iterator[Path]:
    """The database file made immutable (read-only even for root), if this host allows it."""
    database = used_data / DATABASE
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    chattr = shutil.which("chattr") or "chattr"
    done = subprocess.run(  # noqa: S603 - a fixed system tool
        [chattr, "+i", str(database)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {done.stderr.decode().strip()}")
    try:
        yield database
    finally:
        subprocess.run([chattr, "-i", str(database)], check=False)  # noqa: S603


def test_a_read_only_database_is_refused_with_one_line(immutable: Path) -> None:
    result = run_until_exit(immutable.parent)
    # The data directory check (77) or the store's own write probe (65) finds it first.
    assert result.returncode in (daemon.EXIT_DATA_DIR, daemon.EXIT_DATA)
    reason = the_one_failure(result)
    assert str(immutable) in reason
    assert "writ" in reason or "read-only" in reason


def test_the_cli_does_not_start_a_database_over_an_emptied_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / SECRET).write_bytes(b"s" * 32)
    (data / DATABASE).write_bytes(b"")
    for name in list(os.environ):
        if name.startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", str(data))
    monkeypatch.setattr("sys.stdin", io.StringIO("a-password\n"))
    assert cli.main(["user", "create", "alice", "--password-stdin"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--reset-database" in err[0]
    assert (data / DATABASE).stat().st_size == 0
