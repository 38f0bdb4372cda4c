"""`inventree-edge doctor`: what on this host keeps the agent from working, and how to fix it.

Each check gives one line: `ok` or `FIX`, what it looked at, and in plain words what to do. The
exit code is non-zero when any line needs a person. It reads and never changes anything, so it
is safe beside the running daemon. Permissions are checked for the user running it: run it as
the service's user (`sudo -u inventree-edge inventree-edge doctor`) to see what the service sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from agent.config import ConfigError, Settings, load_settings
from agent.devices import Discovery, FoundDevice, MachineUse, discover_devices, uses_device
from agent.exit_codes import EXIT_FAILURE, EXIT_OK
from agent.instance_lock import LOCK_FILE
from agent.machine_uses import DATABASE_TIMEOUT_S, configured_machines
from drivers.transport import (
    ConnectionUriError,
    FileTarget,
    SerialTarget,
    TcpTarget,
    UsbTarget,
    parse_connection,
)

# Below this the database, its WAL and the job documents may fail to be written.
MIN_FREE_BYTES = 200 * 1024 * 1024
TCP_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 5.0
# adjtimex(2) returns the clock state; TIME_ERROR means the kernel clock is not synchronised.
_TIME_ERROR = 5
_TIMEX_BYTES = 512  # larger than struct timex on every Linux ABI; only `modes` (0) is set


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report; `fix` is None when nothing needs doing."""

    subject: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        if self.fix is None:
            return f"ok   {self.subject}: {self.detail}"
        return f"FIX  {self.subject}: {self.detail}; {self.fix}"


def run_doctor(config_path: Path | None, out: TextIO, *, timedatectl: str = "timedatectl") -> int:
    """Run every check, print one line each; EXIT_FAILURE if any needs a person."""
    findings = list(diagnose(config_path, timedatectl=timedatectl))
    for finding in findings:
        print(finding.line(), file=out)
    needs = sum(1 for f in findings if f.fix is not None)
    print(f"{needs} thing(s) to fix" if needs else "nothing to fix", file=out)
    return EXIT_FAILURE if needs else EXIT_OK


def diagnose(config_path: Path | None, *, timedatectl: str = "timedatectl") -> Iterator[Finding]:
    """The checks in the order a person would fix them: config, data, port, printers, clock."""
    where = (
        str(config_path.absolute()) if config_path is not None else "environment only (no --config)"
    )
    try:
        settings = load_settings(config_path)
    except ConfigError as err:
        yield Finding("configuration", where, f"correct it: {err}")
        yield check_clock(timedatectl)
        return
    yield check_config_machines(settings, where)
    yield from check_data_dir(settings)
    running = daemon_pid(settings.storage.path)
    yield check_port(settings.http.host, settings.http.port, running)
    yield from check_machines(settings)
    yield check_clock(timedatectl)


def check_config_machines(settings: Settings, where: str) -> Finding:
    from agent.discovery import discover  # loads every driver
    from agent.registry import ConfigMachineError, check_config_machines

    try:
        check_config_machines(discover(), settings.machines)
    except ConfigMachineError as err:
        return Finding("configuration", where, f"correct the [[machines]] entry: {err}")
    return Finding("configuration", f"{where} is valid")


# --- data directory --------------------------------------------------------------------------


def check_data_dir(settings: Settings) -> Iterator[Finding]:
    data_dir = settings.storage.path.absolute()
    subject = f"data directory {data_dir}"
    if not data_dir.is_dir():
        what = "is not a directory" if data_dir.exists() else "does not exist"
        yield Finding(subject, what, "start the agent once (it creates it) or fix [storage] path")
        return
    info = data_dir.stat()
    me = os.geteuid()
    if info.st_uid != me:
        yield Finding(
            subject,
            f"belongs to '{_user(info.st_uid)}', not to '{_user(me)}' who runs this",
            f"run the agent and this check as '{_user(info.st_uid)}' "
            f"(sudo -u {_user(info.st_uid)} inventree-edge doctor ...), or "
            f"chown -R {_user(me)}: {data_dir}",
        )
    else:
        yield _check_private(subject, settings, _user(me))
    yield check_free_space(data_dir)
    yield check_database(settings.database_path.absolute())


def _check_private(subject: str, settings: Settings, owner: str) -> Finding:
    """The database and the token secret must be the agent's alone (the directory may be 0755)."""
    database = settings.database_path.absolute()
    files = [database, database.with_name(database.name + "-wal"), settings.secret_path.absolute()]
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                return Finding(
                    subject,
                    f"{path.name} has mode {mode:04o}: other users may read it",
                    f"chmod 600 {path} (and run the service with UMask=0077)",
                )
    return Finding(subject, f"owned by '{owner}', database and secret private to it")


def check_free_space(data_dir: Path, minimum: int = MIN_FREE_BYTES) -> Finding:
    free = shutil.disk_usage(data_dir).free
    detail = f"{free / 2**20:.0f} MiB free"
    if free < minimum:
        return Finding(
            "disk space",
            detail,
            f"free at least {minimum / 2**20:.0f} MiB on the file system of {data_dir}",
        )
    return Finding("disk space", detail)


def check_database(database: Path) -> Finding:
    subject = f"database {database}"
    if not database.exists():
        return Finding(subject, "not created yet (the agent creates it when it starts)")
    try:
        conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=DATABASE_TIMEOUT_S)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as err:
        return Finding(
            subject, f"cannot be read: {err}", "check its owner and mode, or restore a backup"
        )
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        return Finding(
            subject,
            f"damaged ({problems[0]})",
            "stop the agent and restore a backup, or start it once with --reset-database "
            "(an empty database; the damaged one is kept beside it)",
        )
    return Finding(subject, "intact (SQLite quick_check)")


def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the daemon holding the data directory's lock; None if none runs."""
    try:
        descriptor = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            return int(holder) if holder.isdigit() else 0
        return None
    finally:
        os.close(descriptor)


# --- port ------------------------------------------------------------------------------------


def check_port(host: str, port: int, daemon: int | None) -> Finding:
    subject = f"port {host}:{port}"
    if port == 0:
        return Finding(subject, "a free port is picked at each start")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return Finding(subject, f"cannot resolve '{host}': {err}", "correct [http] host")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds it
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                return Finding(subject, f"cannot be used: {err.strerror}", "correct [http] host")
            if daemon is not None:
                return Finding(subject, f"held by the agent (pid {daemon})")
            return Finding(
                subject,
                "in use by another program",
                f"stop it (sudo ss -ltnp 'sport = :{port}' names it) or set another [http] port",
            )
    running = "" if daemon is None else f" (but the agent runs, pid {daemon}: another port?)"
    return Finding(subject, f"free{running}")


# --- machines --------------------------------------------------------------------------------


def check_machines(settings: Settings) -> Iterator[Finding]:
    machines = configured_machines(settings)
    if machines.problem:
        yield Finding("machines", machines.problem, "run this as the agent's user")
    active = [use for use in machines.uses if use.active]
    if not active:
        yield Finding("machines", "none configured with a CONNECTION")
        return
    needs_scan = any(_is_local(use.connection) for use in active)
    found = asyncio.run(discover_devices(active)) if needs_scan else Discovery(())
    if any(_is_usb(use.connection) for use in active):
        for problem in found.problems:
            yield Finding("devices", problem, "then check again")
    for use in active:
        yield check_machine(use, found)


def check_machine(use: MachineUse, found: Discovery) -> Finding:
    subject = f"machine '{use.name}' ({use.connection})"
    try:
        target = parse_connection(use.connection)
    except ConnectionUriError as err:
        return Finding(subject, str(err), "correct its CONNECTION setting")
    if isinstance(target, TcpTarget):
        return _check_tcp(subject, target)
    devices = [d for d in found.devices if uses_device(target, d)]
    if not devices:
        return Finding(subject, "device not found", _plug_advice(target))
    device = devices[0]
    if not device.accessible:
        return Finding(subject, f"found at {device.node}", _access_advice(device))
    return Finding(subject, f"found at {device.node}, this user may open it")


def _check_tcp(subject: str, target: TcpTarget) -> Finding:
    try:
        with socket.create_connection((target.host, target.port), timeout=TCP_TIMEOUT_S):
            return Finding(subject, "answers")
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        return Finding(
            subject,
            f"cannot connect: {reason}",
            "switch the printer on, check its network address and that raw printing "
            f"on port {target.port} is enabled",
        )


def _plug_advice(target: UsbTarget | SerialTarget | FileTarget) -> str:
    if isinstance(target, UsbTarget):
        return (
            "plug it in and switch it on; `inventree-edge discover` lists what is attached "
            "(another serial number means another printer)"
        )
    return "plug it in; `inventree-edge discover` lists the ports there are"


def _access_advice(device: FoundDevice) -> str:
    return device.problem or "give this user access to the device"


def _is_usb(connection: str) -> bool:
    return connection.strip().lower().startswith("usb:")


def _is_local(connection: str) -> bool:
    return not connection.strip().lower().startswith("tcp:")


# --- clock -----------------------------------------------------------------------------------


def check_clock(timedatectl: str = "timedatectl") -> Finding:
    """Synchronised or not: systemd's own answer first, else the kernel's (adjtimex)."""
    synced = _timedatectl_synced(timedatectl)
    how = "timedatectl"
    if synced is None:
        synced, how = _kernel_synced(), "adjtimex"
    if synced is None:
        return Finding(
            "clock",
            "cannot tell whether it is synchronised",
            "make sure NTP runs (sudo timedatectl set-ntp true)",
        )
    if not synced:
        return Finding(
            "clock",
            f"not synchronised ({how}); tokens and job expiry depend on it",
            "enable time synchronisation (sudo timedatectl set-ntp true) and check that the "
            "host reaches an NTP server",
        )
    return Finding("clock", f"synchronised ({how})")


def _timedatectl_synced(command: str) -> bool | None:
    path = shutil.which(command)
    if path is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - a fixed command found on PATH
            [path, "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        return None  # no systemd running (a container): ask the kernel
    return answer == "yes"


def _kernel_synced(
    adjtimex: Callable[[ctypes.Array[ctypes.c_char]], int] | None = None,
) -> bool | None:
    if adjtimex is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        with contextlib.suppress(OSError, AttributeError):
            adjtimex = ctypes.CDLL(name, use_errno=True).adjtimex
        if adjtimex is None:
            return None
    timex = ctypes.create_string_buffer(_TIMEX_BYTES)  # modes = 0: read only
    state = int(adjtimex(timex))
    if state < 0:
        return None
    return state != _TIME_ERROR


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
