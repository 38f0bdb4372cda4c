"""The `inventree-edge` command: check-config, user create, token create (run is in test_daemon)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from agent.cli import EXIT_CONFIG, EXIT_USAGE, main
from tests.daemon_helpers import Daemon, basic_auth, running_daemon, token_auth

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
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No agent variables from the developer's shell; data in a temporary directory."""
    for name in list(os.environ):
        if name.startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", str(data))
    return data


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
    assert capsys.readouterr().out.strip() == "created user 'carol' (role view)"
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
    assert capsys.readouterr().out.strip() == "created user 'dave' (superuser)"
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
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    assert create_user(monkeypatch, "frank") == 0
    capsys.readouterr()
    assert create_user(monkeypatch, "frank", password="other") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "inventree-edge: user 'frank' already exists"
    with sqlite3.connect(clean_env / "inventree-edge.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM user").fetchone()[0] == 1


def test_empty_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    assert create_user(monkeypatch, "gina", password="") == EXIT_USAGE
    assert "must not be empty" in capsys.readouterr().err
    assert not (clean_env / "inventree-edge.sqlite3").exists()


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
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "ghost"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "inventree-edge: no user 'ghost'"
