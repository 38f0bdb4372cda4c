"""`install-service` / `uninstall-service`: the real code against a temporary root directory.

Commands are recorded, never run; the recorder applies the effect of useradd/groupadd/userdel to
the temporary /etc/passwd and /etc/group so that a second run sees what the first one did.
"""

from __future__ import annotations

import argparse
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent import cli, service_cli
from agent.config import load_settings
from agent.service_install import (
    CONFIG_FILE,
    DATA_DIR,
    PASSWORD_VARIABLE,
    RULES_FILE,
    SECRETS_FILE,
    UNIT_FILE,
    Host,
    InstallError,
    agent_command,
    service_file,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


class RecordingHost(Host):
    """A host under a temporary root whose commands are recorded instead of run."""

    def __init__(self, root: Path, *, is_root: bool = True) -> None:
        super().__init__(root=root, run=self._record, is_root=is_root)
        self.commands: list[tuple[str, ...]] = []
        (root / "run/systemd/system").mkdir(parents=True)
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (root / "etc/group").write_text("root:x:0:\nlp:x:7:\ndialout:x:20:pi\n")

    def _record(self, argv: Sequence[str]) -> None:
        self.commands.append(tuple(argv))
        name = argv[-1]
        if argv[0] == "groupadd":
            self._append("group", f"{name}:x:999:")
        elif argv[0] == "useradd":
            self._append("passwd", f"{name}:x:999:999::/var/lib/{name}:/usr/sbin/nologin")
        elif argv[0] == "usermod":
            groups = argv[argv.index("--groups") + 1].split(",")
            self._edit("group", lambda f: f[0] in groups, lambda f: _add_member(f, name))
        elif argv[0] == "userdel":
            self._edit("passwd", lambda f: f[0] == name, lambda f: None)
            # Debian's userdel removes the user's own group as well.
            self._edit("group", lambda f: f[0] == name, lambda f: None)

    def _append(self, database: str, line: str) -> None:
        with (self.root / "etc" / database).open("a") as handle:
            handle.write(line + "\n")

    def _edit(
        self,
        database: str,
        select: Callable[[list[str]], bool],
        change: Callable[[list[str]], list[str] | None],
    ) -> None:
        path = self.root / "etc" / database
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if select(fields):
                fields = change(fields)
                if fields is None:
                    continue
            lines.append(":".join(fields))
        path.write_text("\n".join(lines) + "\n")

    def ran(self, program: str) -> list[tuple[str, ...]]:
        return [command for command in self.commands if command[0] == program]


def _add_member(fields: list[str], user: str) -> list[str]:
    members = [member for member in fields[3].split(",") if member]
    return [*fields[:3], ",".join([*members, user])]


def _install(host: Host, capsys: pytest.CaptureFixture[str], *, dry_run: bool = False) -> str:
    args = argparse.Namespace(command="install-service", dry_run=dry_run)
    assert service_cli.run(args, host) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _uninstall(
    host: Host, capsys: pytest.CaptureFixture[str], *, dry_run: bool = False, purge: bool = False
) -> str:
    args = argparse.Namespace(command="uninstall-service", dry_run=dry_run, purge=purge)
    assert service_cli.run(args, host) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def host(tmp_path: Path) -> RecordingHost:
    return RecordingHost(tmp_path / "root")


def test_dry_run_prints_every_file_and_command_and_changes_nothing(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(host.root)
    out = _install(host, capsys, dry_run=True)
    assert _tree(host.root) == before
    assert host.commands == []
    assert PASSWORD_VARIABLE not in out  # no password is made up and shown in a dry run
    lines = [line.strip() for line in out.splitlines()[1:]]
    assert lines == [
        "run: groupadd --system inventree-edge",
        "run: useradd --system --gid inventree-edge --home-dir /var/lib/inventree-edge"
        " --no-create-home --shell /usr/sbin/nologin inventree-edge",
        "run: usermod --append --groups lp,dialout inventree-edge",
        "create directory: /etc/inventree-edge (mode 0750)",
        "run: chown root:inventree-edge /etc/inventree-edge",
        "write: /etc/inventree-edge/config.toml (mode 0640, the host configuration: no printers)",
        "run: chown root:inventree-edge /etc/inventree-edge/config.toml",
        "write: /etc/default/inventree-edge (mode 0600, a generated admin password)",
        "run: chown root:root /etc/default/inventree-edge",
        "create directory: /var/lib/inventree-edge (mode 0750)",
        "run: chown inventree-edge:inventree-edge /var/lib/inventree-edge",
        "write: /etc/udev/rules.d/60-inventree-edge.rules (mode 0644)",
        "run: udevadm control --reload",
        "run: udevadm trigger --subsystem-match=usb",
        "write: /etc/systemd/system/inventree-edge.service (mode 0644)",
        "run: systemctl daemon-reload",
        "run: systemctl enable --now inventree-edge.service",
    ]


def test_install_writes_the_files_runs_the_commands_and_prints_the_password_once(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _install(host, capsys)
    # The same steps the dry run announced, in order, as commands actually run.
    assert host.commands[0] == ("groupadd", "--system", "inventree-edge")
    assert host.commands[-1] == ("systemctl", "enable", "--now", "inventree-edge.service")
    assert ("udevadm", "control", "--reload") in host.commands
    assert host.commands.index(("systemctl", "daemon-reload")) < len(host.commands) - 1
    assert host.group_members("lp") == ["inventree-edge"]
    assert host.group_members("dialout") == ["pi", "inventree-edge"]

    config = host.path(CONFIG_FILE)
    assert load_settings(config).machines == []  # no virtual printer on a production host
    assert load_settings(config).storage.path == Path(DATA_DIR)
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(host.path(DATA_DIR).stat().st_mode) == 0o750

    secrets = host.path(SECRETS_FILE)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    match = re.fullmatch(rf"{PASSWORD_VARIABLE}=(\S+)\n", secrets.read_text())
    assert match
    assert len(match[1]) >= 20
    assert out.count(match[1]) == 1  # printed once, and nowhere else
    assert ("chown", "root:root", SECRETS_FILE) in host.commands

    unit = host.path(UNIT_FILE).read_text()
    command = " ".join(agent_command(Path(sys.executable)))
    assert f"\nExecStart={command} run --config {CONFIG_FILE}\n" in unit
    assert unit.count("ExecStart=") == 1
    packaged = service_file("inventree-edge.service").read_text()
    assert unit.replace(command, "X") == re.sub(r"ExecStart=\S+", "ExecStart=X", packaged)
    assert host.path(RULES_FILE).read_text() == service_file("60-inventree-edge.rules").read_text()


def test_a_second_install_changes_nothing_and_keeps_local_edits(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _install(host, capsys)
    config = host.path(CONFIG_FILE)
    config.write_text(config.read_text() + '\n[instance]\nname = "Shop floor"\n')
    before = _tree(host.root)
    host.commands.clear()

    again = _install(host, capsys)
    assert _tree(host.root) == before
    assert host.commands == [("systemctl", "enable", "--now", "inventree-edge.service")]
    password = host.path(SECRETS_FILE).read_text().split("=", 1)[1].strip()
    assert password in first
    assert password not in again
    assert f"keep: {CONFIG_FILE} (exists)" in again


def test_an_upgraded_unit_is_rewritten_and_the_service_restarted(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(host, capsys)
    unit = host.path(UNIT_FILE)
    unit.write_text(unit.read_text().replace("WatchdogSec=60", "WatchdogSec=120"))
    host.commands.clear()
    _install(host, capsys)
    assert "WatchdogSec=60" in unit.read_text()
    assert host.commands == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "inventree-edge.service"),
        ("systemctl", "restart", "inventree-edge.service"),
    ]


def test_a_password_file_without_the_password_gets_one_and_keeps_its_lines(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = host.path(SECRETS_FILE)
    secrets.parent.mkdir(parents=True)
    secrets.write_text("INVENTREE_EDGE_HTTP__PORT=8080")
    secrets.chmod(0o644)
    _install(host, capsys)
    lines = secrets.read_text().splitlines()
    assert lines[0] == "INVENTREE_EDGE_HTTP__PORT=8080"
    assert lines[1].startswith(f"{PASSWORD_VARIABLE}=")
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600


def test_uninstall_keeps_configuration_and_data_unless_purged(
    host: RecordingHost, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(host, capsys)
    host.path(DATA_DIR).joinpath("agent.db").write_bytes(b"jobs")
    host.commands.clear()

    dry = _uninstall(host, capsys, dry_run=True)
    assert host.commands == []
    assert host.path(UNIT_FILE).exists()
    assert "run: systemctl disable --now inventree-edge.service" in dry

    out = _uninstall(host, capsys)
    assert host.commands == [
        ("systemctl", "disable", "--now", "inventree-edge.service"),
        ("systemctl", "daemon-reload"),
        ("udevadm", "control", "--reload"),
    ]
    assert not host.path(UNIT_FILE).exists()
    assert not host.path(RULES_FILE).exists()
    assert host.path(CONFIG_FILE).exists()
    assert host.path(SECRETS_FILE).exists()
    assert host.path(DATA_DIR).joinpath("agent.db").read_bytes() == b"jobs"
    assert "--purge removes it" in out
    assert host.user_exists("inventree-edge")

    host.commands.clear()
    _uninstall(host, capsys, purge=True)
    for path in (CONFIG_FILE, SECRETS_FILE, DATA_DIR):
        assert not host.path(path).exists(), path
    # userdel took the user's group with it, so groupdel was not run (it would fail).
    assert host.commands == [("userdel", "inventree-edge")]
    assert not host.user_exists("inventree-edge")
    assert host.group_members("inventree-edge") is None
    assert _uninstall(host, capsys, purge=True).splitlines()[-1] == "Nothing to uninstall."


def test_refuses_without_root_or_without_systemd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = RecordingHost(tmp_path / "a", is_root=False)
    args = argparse.Namespace(command="install-service", dry_run=False)
    assert service_cli.run(args, user) == 1
    assert "run it with sudo" in capsys.readouterr().err
    assert user.commands == []
    assert not user.exists(CONFIG_FILE)
    _install(user, capsys, dry_run=True)  # a dry run needs no root

    no_systemd = RecordingHost(tmp_path / "b")
    (no_systemd.root / "run/systemd/system").rmdir()
    assert service_cli.run(args, no_systemd) == 1
    assert "systemd is not running on this host" in capsys.readouterr().err


def _fake_venv(bin_dir: Path, *, script: bool = True) -> Path:
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text("")
    if script:
        (bin_dir / "inventree-edge").write_text("#!python\n")
    return python


def test_the_unit_starts_the_installation_it_was_installed_from(tmp_path: Path) -> None:
    # pip into /opt/inventree-edge/venv, and pipx with PIPX_HOME=/opt/pipx: the venv's own script.
    venv = _fake_venv(tmp_path / "opt/inventree-edge/venv/bin")
    assert agent_command(venv) == [str(venv.parent / "inventree-edge")]
    pipx = _fake_venv(tmp_path / "opt/pipx/venvs/inventree-edge/bin")
    assert agent_command(pipx) == [str(pipx.parent / "inventree-edge")]
    # Without the console script: the interpreter runs the package.
    bare = _fake_venv(tmp_path / "srv/env/bin", script=False)
    assert agent_command(bare) == [str(bare), "-m", "agent"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/home/pi/.local/share/pipx/venvs/inventree-edge/bin/python", "cannot read"),
        ("/root/.local/pipx/venvs/inventree-edge/bin/python", "cannot read"),
        ("/opt/my tools/venv/bin/python", "spaces"),
    ],
)
def test_installations_the_service_cannot_start_are_refused(path: str, reason: str) -> None:
    with pytest.raises(InstallError, match=reason):
        agent_command(Path(path))


def test_the_command_line_offers_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["uninstall-service", "--help"])
    assert exited.value.code == 0
    assert "--purge" in capsys.readouterr().out
    # On a host without systemd (this test machine may be one) the refusal is one sentence.
    code = cli.main(["install-service", "--dry-run"])
    captured = capsys.readouterr()
    if Path("/run/systemd/system").is_dir():
        assert code == 0
        assert "systemctl enable --now" in captured.out
    else:
        assert code == 1
        assert captured.err.count("\n") == 1


def test_the_packaged_files_are_the_repository_ones() -> None:
    for name in ("inventree-edge.service", "60-inventree-edge.rules", "config.toml"):
        assert service_file(name).read_bytes() == (REPO_ROOT / "systemd" / name).read_bytes()


def test_a_failing_step_stops_with_its_reason_and_the_password_is_still_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = RecordingHost(tmp_path / "root")
    record = host.run

    def systemctl_fails(argv: Sequence[str]) -> None:
        record(argv)
        if argv[:2] == ("systemctl", "enable"):
            raise InstallError("`systemctl enable --now inventree-edge.service` failed: Job failed")

    host.run = systemctl_fails
    args = argparse.Namespace(command="install-service", dry_run=False)
    assert service_cli.run(args, host) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "inventree-edge: `systemctl enable --now inventree-edge.service` failed: Job failed\n"
    )
    password = host.path(SECRETS_FILE).read_text().split("=", 1)[1].strip()
    assert captured.out.count(password) == 1
    assert "Installed." not in captured.out
