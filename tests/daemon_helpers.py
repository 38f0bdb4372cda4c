"""Run `python -m agent run` as a real subprocess on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tests.waiting import wait_until_blocking

if TYPE_CHECKING:
    import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# A cold start (interpreter, imports, SQLite migration) takes well under a second; this bounds a
# hung start on a loaded CI machine.
STARTUP_TIMEOUT_S = 15.0
# The daemon stops in milliseconds when idle; systemd would kill it after TimeoutStopSec.
STOP_TIMEOUT_S = 10.0
# One local HTTP exchange with the daemon.
HTTP_TIMEOUT_S = 5.0
# Variables a developer's shell or systemd may have set; the tests give their own.
_SCRUBBED_PREFIXES = ("INVENTREE_EDGE_", "NOTIFY_SOCKET", "WATCHDOG_")


class DaemonStartError(Exception):
    """The daemon exited or did not start listening in time."""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """One HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Daemon:
    """A running daemon process and where it listens."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    stderr_path: Path
    stdout_path: Path

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> ApiResponse:
        """Send one request and read the whole answer."""
        return http_request(self.port, method, path, headers=headers, json_body=json_body)

    def signal_and_wait(self, signum: int = signal.SIGTERM) -> int:
        """Send a signal and wait for the exit code (fails the test if it does not exit)."""
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not stop within {STOP_TIMEOUT_S} s of {signal.Signals(signum).name}"
            ) from None

    def log_records(self) -> list[dict[str, Any]]:
        """Every whole stderr line parsed as JSON (fails on a line that is not JSON)."""
        text = self.stderr_path.read_text()
        # A running daemon may be halfway through writing its last line.
        return parse_json_lines(text[: text.rfind("\n") + 1])


@dataclass(frozen=True, slots=True)
class Exited:
    """A daemon run that ended by itself."""

    returncode: int
    stderr: str
    stdout: str


def daemon_env(
    data_dir: Path, port: int = 0, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without agent or systemd variables, plus the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(
        {
            "INVENTREE_EDGE_STORAGE__PATH": str(data_dir),
            "INVENTREE_EDGE_HTTP__HOST": "127.0.0.1",
            "INVENTREE_EDGE_HTTP__PORT": str(port),
        }
    )
    env.update(extra or {})
    return env


@contextmanager
def spawned_daemon(
    data_dir: Path,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    args: Sequence[str] = (),
) -> Iterator[Daemon]:
    """Start the daemon without waiting for it; kill it on exit if the test did not stop it."""
    logs = data_dir.parent / f"{data_dir.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = len(list(logs.glob("stderr-*.log")))
    stderr_path, stdout_path = logs / f"stderr-{run}.log", logs / f"stdout-{run}.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            _command(config, args),
            cwd=REPO_ROOT,
            env=daemon_env(data_dir, port, env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Daemon(proc, port, data_dir, stderr_path, stdout_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@contextmanager
def running_daemon(
    data_dir: Path,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    args: Sequence[str] = (),
) -> Iterator[Daemon]:
    """Start the daemon and wait until it listens (its port is then known)."""
    with spawned_daemon(data_dir, config=config, env=env, port=port, args=args) as daemon:
        daemon.port = _wait_listening(daemon.proc, daemon.stderr_path)
        yield daemon


def run_until_exit(
    data_dir: Path,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    args: Sequence[str] = (),
) -> Exited:
    """Run a daemon that is expected to fail at start; return its exit code and output."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            _command(config, args),
            cwd=REPO_ROOT,
            env=daemon_env(data_dir, port, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=STARTUP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise DaemonStartError(f"daemon still running after {STARTUP_TIMEOUT_S} s") from err
    return Exited(done.returncode, done.stderr.decode(), done.stdout.decode())


def run_cli(
    *args: str,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    without_root_powers: bool = False,
) -> Exited:
    """Run `python -m agent ARGS` to the end, as a user runs the command.

    `without_root_powers`: when the tests run as root, drop the capabilities that let root read
    and write any file, so that file modes mean for this process what they mean for a service user.
    """
    command = [sys.executable, "-m", "agent", *args]
    if without_root_powers and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            import pytest  # only this branch needs it

            pytest.skip("running as root without setpriv: file modes cannot be tested")
        command = [
            setpriv,
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown",
            *command,
        ]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        command,
        cwd=REPO_ROOT,
        env=daemon_env(data_dir, 0, env),
        input=stdin,
        capture_output=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
        # No controlling terminal, as under systemd or cron: a password prompt cannot wait on one.
        start_new_session=True,
    )
    return Exited(done.returncode, done.stderr.decode(), done.stdout.decode())


# A user other than the one running the tests (nobody).
OTHER_UID = 65534 if os.geteuid() != 65534 else 65533


def give_to_another_user(path: Path) -> None:
    """Make `path` belong to another user, as `sudo` leaves files behind (needs root)."""
    if os.geteuid() != 0:
        import pytest  # only this branch needs it

        pytest.skip("only root can give a file to another user")
    os.chown(path, OTHER_UID, OTHER_UID)


@contextmanager
def logging_restored() -> Iterator[None]:
    """Undo the logging set-up of a command run in this process (check-config configures it).

    structlog caches loggers on first use once configured; left configured, later tests could
    not capture log events.
    """
    import structlog  # only in-process command tests need it

    from agent.log import stop_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        stop_logging()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


def fresh_loggers(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> None:
    """Give `modules` new `log` proxies, which follow `structlog.testing.capture_logs`.

    A logger first used while logging was configured stays cached with that configuration, even
    after `logging_restored`; a test that configured logging may have run before this one.
    """
    import structlog

    for module in modules:
        monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
) -> ApiResponse:
    """One request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        all_headers = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return ApiResponse(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def basic_auth(username: str, password: str) -> dict[str, str]:
    """An `Authorization: Basic` header."""
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def token_auth(key: str) -> dict[str, str]:
    """An `Authorization: Token` header."""
    return {"Authorization": f"Token {key}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Each non-empty line as a JSON object."""
    records = []
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
    return records


def _command(config: Path | None, args: Sequence[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "agent", "run", *args]
    if config is not None:
        command += ["--config", str(config)]
    return command


def _wait_listening(proc: subprocess.Popen[bytes], stderr_path: Path) -> int:
    """The port from the daemon's `listening` log line."""
    port = 0

    def listening() -> bool:
        nonlocal port
        # Only whole lines: the daemon may be halfway through writing the last one.
        for line in stderr_path.read_text().split("\n")[:-1]:
            if '"listening"' in line:
                url = json.loads(line)["url"]
                port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
                return True
        if proc.poll() is not None:
            raise DaemonStartError(
                f"daemon exited with {proc.returncode}: {stderr_path.read_text()}"
            )
        return False

    try:
        wait_until_blocking(listening, STARTUP_TIMEOUT_S)
    except AssertionError:
        raise DaemonStartError(f"daemon not listening after {STARTUP_TIMEOUT_S} s") from None
    return port
