"""Install and remove the agent as a systemd service on this host (`install-service`).

The work is planned first (a list of files to write and commands to run, from what is already on
the host), then either printed (`--dry-run`) or carried out. Everything on the host is reached
through `Host`: a root directory (`/` on a real host) and a command runner, so the same code runs
against a temporary root in tests with the commands recorded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "inventree-edge"
UNIT_NAME = "inventree-edge.service"
CONFIG_DIR = "/etc/inventree-edge"
CONFIG_FILE = "/etc/inventree-edge/config.toml"
SECRETS_FILE = "/etc/default/inventree-edge"
DATA_DIR = "/var/lib/inventree-edge"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
RULES_FILE = "/etc/udev/rules.d/60-inventree-edge.rules"
# Printers: USB printer class (lp) and serial adapters (dialout); the unit names them too.
DEVICE_GROUPS = ("lp", "dialout")
PASSWORD_VARIABLE = "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD"  # noqa: S105 - a name, not a secret
# ProtectHome=yes hides these from the service, and its user could not read them anyway.
PRIVATE_TREES = ("/home", "/root", "/run/user")
COMMAND_TIMEOUT_S = 120.0

Runner = Callable[[Sequence[str]], None]


class InstallError(Exception):
    """Something stops the (un)installation; the message says what to do."""


def run_command(argv: Sequence[str]) -> None:
    """Run one command on this host; raise InstallError with its own message when it fails."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed programs, arguments from the plan
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InstallError(f"`{' '.join(argv)}` could not run: {err}") from err
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise InstallError(f"`{' '.join(argv)}` failed: {reason}")


@dataclass
class Host:
    """The machine being changed: files under `root`, commands through `run`."""

    root: Path = Path("/")
    run: Runner = run_command
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def exists(self, absolute: str) -> bool:
        return self.path(absolute).exists()

    def read(self, absolute: str) -> str | None:
        try:
            return self.path(absolute).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def has_systemd(self) -> bool:
        # The documented test for "booted with systemd" (sd_booted(3)).
        return self.path("/run/systemd/system").is_dir()

    def _database(self, name: str) -> dict[str, list[str]]:
        """Entries of /etc/passwd or /etc/group: name -> its fields."""
        entries: dict[str, list[str]] = {}
        for line in (self.read(f"/etc/{name}") or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and not line.startswith("#"):
                entries[fields[0]] = fields
        return entries

    def user_exists(self, user: str) -> bool:
        return user in self._database("passwd")

    def group_members(self, group: str) -> list[str] | None:
        """The group's listed members, or None when there is no such group."""
        fields = self._database("group").get(group)
        if fields is None:
            return None
        return [member for member in fields[3].split(",") if member]


# The plan


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    note: str = ""

    def describe(self) -> str:
        return f"run: {' '.join(self.argv)}" + (f"  ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Write:
    path: str
    text: str
    mode: int
    note: str = ""

    def describe(self) -> str:
        note = f", {self.note}" if self.note else ""
        return f"write: {self.path} (mode {self.mode:04o}{note})"


@dataclass(frozen=True)
class MakeDir:
    path: str
    mode: int

    def describe(self) -> str:
        return f"create directory: {self.path} (mode {self.mode:04o})"


@dataclass(frozen=True)
class Remove:
    path: str

    def describe(self) -> str:
        return f"remove: {self.path}"


@dataclass(frozen=True)
class DeleteGroup:
    """groupdel, decided when it is reached: Debian's userdel removes the user's own group."""

    name: str

    def describe(self) -> str:
        return f"run: groupdel {self.name}  (if userdel left it)"


Step = Run | Write | MakeDir | Remove | DeleteGroup


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    # Shown once at the end of a real installation, never in a dry run.
    admin_password: str | None = None

    def describe(self) -> Iterator[str]:
        for step in self.steps:
            yield step.describe()
        for line in self.kept:
            yield f"keep: {line}"


def carry_out(plan: Plan, host: Host, say: Callable[[str], None]) -> None:
    """Do each step in order, saying what it does first."""
    for step in plan.steps:
        say(step.describe())
        if isinstance(step, Run):
            host.run(step.argv)
        elif isinstance(step, Write):
            _write_file(host.path(step.path), step.text, step.mode)
        elif isinstance(step, DeleteGroup):
            if host.group_members(step.name) is not None:
                host.run(("groupdel", step.name))
        elif isinstance(step, MakeDir):
            target = host.path(step.path)
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(step.mode)
        else:
            target = host.path(step.path)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    for line in plan.kept:
        say(f"keep: {line}")


def _write_file(target: Path, text: str, mode: int) -> None:
    """Replace the file in one step; it has its final mode before any byte is written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have taken bits away
        handle.write(text)
    temporary.replace(target)


# What to install


def service_file(name: str) -> Path:
    """A file of the project's systemd/ directory: installed with the package or in a checkout."""
    candidates = (
        Path(sys.prefix) / "share" / "inventree-edge" / name,
        Path(__file__).resolve().parent.parent / "systemd" / name,
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InstallError(
        f"{name} is missing from this installation (looked in {candidates[0].parent} and "
        f"{candidates[1].parent}): reinstall the package"
    )


def agent_command(python: Path) -> list[str]:
    """How systemd starts this installation of the agent: the venv's (or pipx's) console script.

    `python` is sys.executable, the venv's own interpreter (a venv and a pipx install look the
    same); it is not resolved, since that would leave the venv.
    """
    script = python.parent / "inventree-edge"
    command = [str(script)] if script.is_file() else [str(python), "-m", "agent"]
    where = command[0]
    for tree in PRIVATE_TREES:
        if where == tree or where.startswith(tree + "/"):
            raise InstallError(
                f"the agent is installed under {tree} ({where}), which the service cannot read:"
                " install it into /opt/inventree-edge/venv (docs/install.md) or with"
                " `sudo env PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install ...`,"
                " then run install-service from there"
            )
    if any(character.isspace() or character in "\"'\\%$" for character in where):
        raise InstallError(
            f"the agent's path {where!r} has spaces or special characters that a systemd unit"
            " cannot hold as they are: install it under a plain path such as"
            " /opt/inventree-edge/venv"
        )
    return command


def unit_text(template: str, command: Sequence[str]) -> str:
    """The packaged unit with ExecStart pointing at this installation."""
    lines = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={' '.join(command)} run --config {CONFIG_FILE}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def plan_install(host: Host, command: Sequence[str]) -> Plan:
    """What `install-service` does on this host: only what is not already done."""
    plan = Plan()
    steps = plan.steps
    user = SERVICE_USER
    if host.group_members(user) is None:
        steps.append(Run(("groupadd", "--system", user)))
    if not host.user_exists(user):
        steps.append(
            Run(
                (
                    "useradd",
                    "--system",
                    "--gid",
                    user,
                    "--home-dir",
                    DATA_DIR,
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                )
            )  # fmt: skip
        )
    missing = [
        group
        for group in DEVICE_GROUPS
        if (members := host.group_members(group)) is not None and user not in members
    ]
    if missing:
        steps.append(Run(("usermod", "--append", "--groups", ",".join(missing), user)))

    if not host.exists(CONFIG_DIR):
        steps.append(MakeDir(CONFIG_DIR, 0o750))
        steps.append(Run(("chown", f"root:{user}", CONFIG_DIR)))
    if host.exists(CONFIG_FILE):
        plan.kept.append(f"{CONFIG_FILE} (exists)")
    else:
        config = service_file("config.toml").read_text(encoding="utf-8")
        steps.append(Write(CONFIG_FILE, config, 0o640, "the host configuration: no printers"))
        steps.append(Run(("chown", f"root:{user}", CONFIG_FILE)))
    _plan_password(host, plan)
    if not host.exists(DATA_DIR):
        steps.append(MakeDir(DATA_DIR, 0o750))
        steps.append(Run(("chown", f"{user}:{user}", DATA_DIR)))

    rules = service_file("60-inventree-edge.rules").read_text(encoding="utf-8")
    if host.read(RULES_FILE) != rules:
        steps.append(Write(RULES_FILE, rules, 0o644))
        steps.append(Run(("udevadm", "control", "--reload")))
        # Devices already plugged in get the new group and mode now, not at the next plug.
        steps.append(Run(("udevadm", "trigger", "--subsystem-match=usb")))
    installed_unit = host.read(UNIT_FILE)
    unit = unit_text(service_file(UNIT_NAME).read_text(encoding="utf-8"), command)
    if installed_unit != unit:
        steps.append(Write(UNIT_FILE, unit, 0o644))
        steps.append(Run(("systemctl", "daemon-reload")))
    steps.append(Run(("systemctl", "enable", "--now", UNIT_NAME)))
    if installed_unit is not None and installed_unit != unit:
        steps.append(Run(("systemctl", "restart", UNIT_NAME), "the unit changed"))
    return plan


def _plan_password(host: Host, plan: Plan) -> None:
    existing = host.read(SECRETS_FILE)
    if existing is not None and any(
        line.strip().startswith(f"{PASSWORD_VARIABLE}=") for line in existing.splitlines()
    ):
        plan.kept.append(f"{SECRETS_FILE} (has the admin password)")
        return
    plan.admin_password = secrets.token_urlsafe(18)
    before = existing if existing is None or existing.endswith("\n") else existing + "\n"
    text = f"{before or ''}{PASSWORD_VARIABLE}={plan.admin_password}\n"
    plan.steps.append(Write(SECRETS_FILE, text, 0o600, "a generated admin password"))
    plan.steps.append(Run(("chown", "root:root", SECRETS_FILE)))


def plan_uninstall(host: Host, *, purge: bool) -> Plan:
    """What `uninstall-service` does: the service and its system files; with purge, all of it."""
    plan = Plan()
    steps = plan.steps
    if host.exists(UNIT_FILE):
        steps.append(Run(("systemctl", "disable", "--now", UNIT_NAME)))
        steps.append(Remove(UNIT_FILE))
        steps.append(Run(("systemctl", "daemon-reload")))
    if host.exists(RULES_FILE):
        steps.append(Remove(RULES_FILE))
        steps.append(Run(("udevadm", "control", "--reload")))
    owned = (
        (CONFIG_DIR, "the configuration"),
        (SECRETS_FILE, "the admin password"),
        (DATA_DIR, "the database and secret.key"),
    )
    for path, what in owned:
        if not host.exists(path):
            continue
        if purge:
            steps.append(Remove(path))
        else:
            plan.kept.append(f"{path} ({what}; --purge removes it)")
    if purge and host.user_exists(SERVICE_USER):
        steps.append(Run(("userdel", SERVICE_USER)))
    if purge and host.group_members(SERVICE_USER) is not None:
        steps.append(DeleteGroup(SERVICE_USER))
    return plan
