"""The `inventree-edge` command: check-config, user create, token create (run is in test_daemon)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import pwd
import re
import select
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from agent.auth import create_user as add_user
from agent.cli import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_USAGE, interrupts_deferred, main
from agent.storage.auth import AuthStore
from agent.storage.database import Database
from tests.daemon_helpers import (
    OTHER_UID,
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Daemon,
    basic_auth,
    daemon_env,
    give_to_another_user,
    logging_restored,
    run_cli,
    running_daemon,
    spawned_daemon,
    token_auth,
)
from tests.waiting import wait_until_blocking

TOKEN_FORMAT = re.compile(r"inv-[0-9a-f]{40}-\d{8}")
SECRET = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A running daemon whose data directory the CLI tests write to."""
    data = tmp_path_factory.mktemp("cli") / "data"
    with running_daemon(data) as running:
        yield running
        assert running.signal_and_wait() == 0


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No agent variables from the developer's shell; data in a temporary directory."""
    for name in list(os.environ):
        if name.startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", str(data))
    return data


@pytest.fixture
def database(clean_env: Path) -> Path:
    """A database the agent made (as its first start does), with one user, in the data dir."""

    async def make() -> None:
        database = Database(clean_env / "inventree-edge.sqlite3")
        await database.open()
        try:
            await add_user(AuthStore(database), "admin-seed", SECRET, superuser=True)
        finally:
            await database.close()

    asyncio.run(make())
    return clean_env / "inventree-edge.sqlite3"


def _usernames(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT username FROM user ORDER BY username")]


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def use_data_dir(monkeypatch: pytest.MonkeyPatch, running: Daemon) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", str(running.data_dir))


def create_user(
    monkeypatch: pytest.MonkeyPatch, name: str, *options: str, password: str = SECRET
) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["user", "create", name, "--password-stdin", *options])


# no command, --version


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert "check-config" in out
    assert "run" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"inventree-edge {__version__}"


# check-config


def test_check_config_prints_the_effective_configuration_with_the_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[http]\nport = 9000\n[auth]\nadmin_user = "root"\n'
        '[[machines]]\nname = "Desk"\ndriver = "virtual"\n'
    )
    monkeypatch.setenv("INVENTREE_EDGE_AUTH__ADMIN_PASSWORD", SECRET)
    monkeypatch.setenv("INVENTREE_EDGE_HTTP__HOST", "0.0.0.0")  # noqa: S104 - only printed
    assert main(["check-config", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert SECRET not in out
    effective = json.loads(out)
    assert effective["auth"] == {"admin_user": "root", "admin_password": "***", "admin_email": ""}
    assert effective["http"]["port"] == 9000
    assert effective["http"]["host"] == "0.0.0.0"  # noqa: S104 - the environment wins
    assert effective["machines"][0]["name"] == "Desk"
    assert effective["log"] == {"level": "info", "format": "auto"}


def test_check_config_finds_the_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[instance]\nname = "Workshop"\n')
    monkeypatch.setenv("INVENTREE_EDGE_CONFIG", str(config))
    assert main(["check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["instance"]["name"] == "Workshop"


def test_check_config_shows_an_unset_password_as_empty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["auth"]["admin_password"] == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[http]\nport = 70000\n", "invalid value for 'http.port' in {config}"),
        ("[http]\nportt = 1\n[log]\nlevel = 'loud'\n", "unknown key 'http.portt' in {config}"),
        ("[http\n", "{config}: "),
    ],
    ids=["bad-value", "unknown-key", "toml-syntax"],
)
def test_check_config_with_a_bad_file_exits_78_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert main(["check-config", "--config", str(config)]) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("inventree-edge: configuration error: ")
    assert expected.format(config=config) in lines[0]


def test_check_config_with_a_missing_file_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["check-config", "--config", str(missing)]) == EXIT_CONFIG
    assert str(missing) in capsys.readouterr().err


# user create


def test_created_user_can_log_in_over_the_api(
    live: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_data_dir(monkeypatch, live)
    assert create_user(monkeypatch, "carol") == 0
    database = live.data_dir / "inventree-edge.sqlite3"
    assert capsys.readouterr().out.strip() == f"created user 'carol' (role view) in {database}"
    resp = live.request("GET", "/api/user/roles/", headers=basic_auth("carol", SECRET))
    assert resp.status == 200
    assert resp.json()["is_superuser"] is False
    assert resp.json()["roles"]["admin"] == ["view"]
    wrong = live.request("GET", "/api/user/me/", headers=basic_auth("carol", "not-it"))
    assert wrong.status == 401


def test_created_superuser_is_a_superuser(
    live: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_data_dir(monkeypatch, live)
    assert create_user(monkeypatch, "dave", "--superuser", "--email", "dave@example.com") == 0
    database = live.data_dir / "inventree-edge.sqlite3"
    assert capsys.readouterr().out.strip() == f"created user 'dave' (superuser) in {database}"
    me = live.request("GET", "/api/user/me/", headers=basic_auth("dave", SECRET))
    assert me.status == 200
    assert me.json()["is_superuser"] is True
    assert me.json()["is_staff"] is True
    assert me.json()["email"] == "dave@example.com"


@pytest.mark.parametrize(
    ("role", "admin_permissions"),
    [("admin", ["view", "add", "change", "delete"]), ("none", None)],
)
def test_created_user_gets_the_role_asked_for(
    live: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    role: str,
    admin_permissions: list[str] | None,
) -> None:
    use_data_dir(monkeypatch, live)
    name = f"role-{role}"
    assert create_user(monkeypatch, name, "--role", role) == 0
    resp = live.request("GET", "/api/user/roles/", headers=basic_auth(name, SECRET))
    assert resp.json()["roles"]["admin"] == admin_permissions


def test_password_is_read_as_one_line_keeping_inner_spaces(
    live: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_data_dir(monkeypatch, live)
    assert create_user(monkeypatch, "erin", password=" two words ") == 0
    resp = live.request("GET", "/api/user/me/", headers=basic_auth("erin", " two words "))
    assert resp.status == 200


def test_duplicate_user_exits_1_and_keeps_the_first_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database: Path
) -> None:
    assert create_user(monkeypatch, "frank") == 0
    capsys.readouterr()
    assert create_user(monkeypatch, "frank", password="other") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"inventree-edge: user 'frank' already exists in {database}"
    assert _usernames(database) == ["admin-seed", "frank"]


def test_empty_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database: Path
) -> None:
    assert create_user(monkeypatch, "gina", password="") == EXIT_USAGE
    assert "must not be empty" in capsys.readouterr().err
    assert _usernames(database) == ["admin-seed"]


def test_unknown_role_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        create_user(monkeypatch, "hank", "--role", "owner")
    assert exit_info.value.code == EXIT_USAGE
    assert "owner" in capsys.readouterr().err


def test_user_create_with_a_bad_config_exits_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[storage]\npth = 'x'\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    code = main(["user", "create", "ivan", "--password-stdin", "--config", str(config)])
    assert code == EXIT_CONFIG
    assert not clean_env.exists()


# token create


def test_created_token_works_against_the_running_daemon(
    live: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_data_dir(monkeypatch, live)
    assert create_user(monkeypatch, "judy") == 0
    capsys.readouterr()
    assert main(["token", "create", "judy", "--name", " label  printer <b>host</b> "]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    key = out.strip()
    assert TOKEN_FORMAT.fullmatch(key)
    me = live.request("GET", "/api/user/me/", headers=token_auth(key))
    assert me.status == 200
    assert me.json()["username"] == "judy"
    with sqlite3.connect(live.data_dir / "inventree-edge.sqlite3") as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM api_token")]
    assert "label--printer-host" in names


def test_token_for_an_unknown_user_exits_1(
    capsys: pytest.CaptureFixture[str], database: Path
) -> None:
    assert main(["token", "create", "ghost"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"inventree-edge: no user 'ghost' in {database}"


# check-config validates [[machines]] as `run` does


@pytest.mark.parametrize(
    ("settings_text", "named"),
    [
        ("[machines.driver_settings]\nDPII = 300\n", "no DRIVER setting 'DPII'"),
        ("[machines.driver_settings]\nDPI = 150\n", "DRIVER setting 'DPI'"),
        ("[machines.machine_settings]\nLOCATON = 'Shelf'\n", "no MACHINE setting 'LOCATON'"),
    ],
    ids=["misspelt-key", "not-a-choice", "misspelt-machine-key"],
)
def test_check_config_refuses_machine_settings_that_run_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings_text: str, named: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[machines]]\nname = "Desk"\ndriver = "virtual"\n' + settings_text)
    assert main(["check-config", "--config", str(config)]) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("inventree-edge: configuration error: ")
    assert "machine 'Desk'" in line
    assert named in line
    assert str(config) in line
    # `run` refuses the same file with the same exit code.
    refused = run_cli("run", "--config", str(config), data_dir=tmp_path / "data")
    assert refused.returncode == EXIT_CONFIG
    assert named in refused.stderr


def test_check_config_accepts_every_setting_of_the_example_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", "--config", str(REPO_ROOT / "config.example.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["machines"][0]["driver"] == "virtual"


# one clear line, never a traceback


def test_unreadable_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[http]\nport = 9000\n")
    config.chmod(0o000)
    for command in ("check-config", "run"):
        result = run_cli(
            command, "--config", str(config), data_dir=tmp_path / "data", without_root_powers=True
        )
        assert result.returncode == EXIT_CONFIG, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("inventree-edge: configuration error: ")
        assert str(config) in line
        assert "permission denied" in line.lower()


def test_user_create_without_a_terminal_asks_for_password_stdin(
    tmp_path: Path, database: Path
) -> None:
    result = run_cli("user", "create", "kim", data_dir=database.parent)
    assert result.returncode == EXIT_USAGE
    (line,) = result.stderr.splitlines()
    assert "no terminal" in line
    assert "--password-stdin" in line
    assert _usernames(database) == ["admin-seed"]


def _wait_until_the_agent_runs(pid: int) -> None:
    """Until the interpreter has started and handed over to the agent's code.

    The configuration's first import maps pydantic's compiled core into the process. An interrupt
    before that lands in Python's own start-up (`site`), which no program can intercept.
    """
    maps = Path(f"/proc/{pid}/maps")
    wait_until_blocking(lambda: "pydantic_core" in maps.read_text(), STARTUP_TIMEOUT_S)


def test_ctrl_c_during_start_up_never_prints_a_traceback(tmp_path: Path) -> None:
    # Wherever in the first second the interrupt lands, the process ends without a traceback.
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0):
        with spawned_daemon(tmp_path / f"data-{delay}") as started:
            _wait_until_the_agent_runs(started.proc.pid)
            time.sleep(delay)  # the moment of the interrupt: what this test varies
            started.proc.send_signal(signal.SIGINT)
            code = started.proc.wait(timeout=STOP_TIMEOUT_S)
            stderr = started.stderr_path.read_text()
        assert "Traceback" not in stderr, (delay, stderr)
        # 130, or killed by SIGINT when the interrupt landed in code an extension module runs
        # while it is imported (CPython then re-raises the signal at exit): both as a shell expects.
        assert code in (0, EXIT_INTERRUPTED, -signal.SIGINT), (delay, code, stderr)


# the CLI acts on the service's data, or says why not


def test_user_create_refuses_to_make_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    elsewhere = tmp_path / "not-the-service"
    config.write_text(f"[storage]\npath = '{elsewhere}'\n")
    monkeypatch.delenv("INVENTREE_EDGE_STORAGE__PATH")
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    code = main(["user", "create", "alice", "--password-stdin", "--config", str(config)])
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert f"no database at {elsewhere / 'inventree-edge.sqlite3'}" in line
    assert str(config) in line
    assert not elsewhere.exists()
    assert main(["token", "create", "alice", "--config", str(config)]) == 1
    assert "no database at" in capsys.readouterr().err
    assert not elsewhere.exists()


def test_user_create_uses_the_storage_path_of_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_daemon(tmp_path / "env-data") as service:
        config = tmp_path / "config.toml"
        config.write_text(f"[storage]\npath = '{service.data_dir}'\n")
        monkeypatch.delenv("INVENTREE_EDGE_STORAGE__PATH")
        monkeypatch.chdir(tmp_path)
        assert create_user(monkeypatch, "alice", "--config", str(config)) == 0
        database = service.data_dir / "inventree-edge.sqlite3"
        assert capsys.readouterr().out.strip() == f"created user 'alice' (role view) in {database}"
        assert not (tmp_path / "data").exists()
        resp = service.request("GET", "/api/user/me/", headers=basic_auth("alice", SECRET))
        assert resp.status == 200
        assert service.signal_and_wait() == 0


@pytest.mark.parametrize("owned", ["database", "data directory", "wal"])
def test_cli_refuses_data_that_belongs_to_another_user(
    database: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], owned: str
) -> None:
    target = {
        "database": database,
        "data directory": database.parent,
        "wal": database.with_name(database.name + "-wal"),
    }[owned]
    target.touch()
    give_to_another_user(target)
    for command in (
        lambda: create_user(monkeypatch, "alice"),
        lambda: main(["token", "create", "admin-seed"]),
    ):
        assert command() == 1
        out, err = capsys.readouterr()
        assert out == ""
        (line,) = err.splitlines()
        assert f"{target} belongs to user" in line
        assert f"sudo -u {_user_name(OTHER_UID)}" in line
    assert target.stat().st_uid == OTHER_UID
    assert _usernames(database) == ["admin-seed"]


def test_read_only_database_is_one_line(tmp_path: Path, database: Path) -> None:
    database.chmod(0o444)
    result = run_cli(
        "user",
        "create",
        "alice",
        "--password-stdin",
        data_dir=database.parent,
        stdin=SECRET.encode() + b"\n",
        without_root_powers=True,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert str(database) in line
    assert "not writable" in line
    assert _usernames(database) == ["admin-seed"]


def _on_a_terminal(args: list[str], typed: list[str], data_dir: Path) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal, typing each line after the next prompt appears."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, as in an ssh session
        env = daemon_env(data_dir)
        os.execve(sys.executable, [sys.executable, "-m", "agent", *args], env)  # noqa: S606
    output = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = list(typed)
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, output
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output.count(b"Password") > len(typed) - len(pending):
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_user_create_asks_twice_on_a_terminal_without_echo(database: Path) -> None:
    code, screen = _on_a_terminal(["user", "create", "lena"], [SECRET, SECRET], database.parent)
    assert code == 0, screen
    assert SECRET not in screen
    assert f"created user 'lena' (role view) in {database}" in screen
    assert _usernames(database) == ["admin-seed", "lena"]


def test_user_create_with_two_different_passwords_says_so_once(database: Path) -> None:
    code, screen = _on_a_terminal(["user", "create", "lena"], [SECRET, "other"], database.parent)
    assert code == EXIT_USAGE, screen
    assert screen.count("inventree-edge:") == 1
    assert "the passwords do not match" in screen
    assert _usernames(database) == ["admin-seed"]


def test_ctrl_c_while_modules_load_waits_for_the_end_of_the_imports() -> None:
    # An interrupt inside pydantic-core's compiled code would come out as a SchemaError with a
    # traceback; while the command's modules load it is held back, then raised where main
    # turns it into exit 130.
    completed: list[str] = []

    def load() -> None:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            completed.append("imports")

    with pytest.raises(KeyboardInterrupt):
        load()
    assert completed == ["imports"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
