"""Real InvenTree servers (303 and current) for the plugin and end-to-end tests.

Started from source by the `serve` script of the shared InvenTree folder beside the checkout
(`../shared/inventree/serve`, or `$EDGE_TESTS_SERVE`), with this repository's plugin installed
and the background worker running. Tests that need a server skip, saying why, where that script is
absent. The first start of a line installs InvenTree into `.cache/inventree/<line>` (a few minutes);
later starts take seconds. Under pytest-xdist every worker calls `serve start`, which serialises on
the server's folder and answers "already running" to all but the first.

The variables are named EDGE_TESTS_* because the agent refuses unknown INVENTREE_EDGE_* ones, and
its daemon tests pass the test run's environment on.

A server this test session started is stopped when the session ends (`stop_started`), unless
`EDGE_TESTS_KEEP_SERVERS=1`; a server that was already running is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = REPO / "plugin"
SERVE = Path(os.environ.get("EDGE_TESTS_SERVE", REPO.parent / "shared" / "inventree" / "serve"))
SERVERS_DIR = Path(os.environ.get("EDGE_TESTS_SERVERS_DIR", REPO / ".cache" / "inventree"))
LINES = ("303", "head")
# First start: pip install and migrations (measured 104-171 s on 2 busy cores); then 15-30 s.
START_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 60.0
# Marks a folder whose server this test session started (and so stops at its end).
STARTED_MARKER = ".started-by-tests"


class ServerStartFailed(Exception):
    """`serve start` failed; the message holds the tail of what it said."""


@dataclass(frozen=True)
class InvenTreeServer:
    """A running InvenTree: where it answers and the admin's API token."""

    line: str
    url: str
    token: str
    api_version: int
    folder: Path

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers of a request made as InvenTree's superuser `admin`."""
        return {"Authorization": f"Token {self.token}", "Accept": "application/json"}


def skip_reason() -> str | None:
    """Why servers cannot be started here, or None when they can."""
    if not SERVE.is_file():
        return (
            f"no InvenTree server script at {SERVE}: the shared InvenTree folder beside the "
            "checkout is absent (set EDGE_TESTS_SERVE to its `serve`)"
        )
    return None


def installed(line: str) -> bool:
    """Has a server of this line been installed (pip and migrations done) here before?"""
    return (SERVERS_DIR / line / "venv" / ".serve-requirements-complete").exists()


def line_of(item: pytest.Item) -> str | None:
    """The InvenTree line a collected test runs against, or None if it needs no server."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "inventree" not in getattr(item, "fixturenames", ()):
        return None
    line = callspec.params.get("inventree")
    return line if isinstance(line, str) else None


def _port(folder: Path, line: str) -> int:
    """A port fixed by the folder, so concurrent workers agree and checkouts rarely collide."""
    digest = hashlib.sha256(str(folder).encode()).digest()
    return 20000 + int.from_bytes(digest[:2], "big") % 20000 + (0 if line == "303" else 1)


def _parse(output: str) -> dict[str, str]:
    values = {}
    for line in output.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def _serve(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the shared folder's own script
        [str(SERVE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def start(line: str) -> InvenTreeServer:
    """Start (or join) the server of one InvenTree line with this repository's plugin."""
    folder = SERVERS_DIR / line
    folder.mkdir(parents=True, exist_ok=True)
    running = _serve("status", "--dir", str(folder), timeout=STOP_TIMEOUT_S).returncode == 0
    command = ("start", line, "--dir", str(folder), "--port", str(_port(folder, line)))
    command += ("--plugin", str(PLUGIN_DIR), "--worker")
    result = _serve(*command, timeout=START_TIMEOUT_S)
    if result.returncode != 0 and not running:
        # Current InvenTree on a fresh database: the migration of the plugin's app tables, run
        # in the same start, does not see the app yet, and the server then refuses to start
        # ("INVE-W8: Database Migrations required"). The next start migrates it and runs.
        result = _serve(*command, timeout=START_TIMEOUT_S)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ServerStartFailed(
            f"InvenTree {line} did not start (serve exit {result.returncode}):\n{tail}"
        )
    if not running:
        (folder / STARTED_MARKER).touch()
    values = _parse(result.stdout)
    return InvenTreeServer(
        line=line,
        url=values["INVENTREE_URL"],
        token=values["INVENTREE_TOKEN"],
        api_version=int(values["INVENTREE_API_VERSION"]),
        folder=folder,
    )


def stop_started() -> None:
    """Stop the servers this session started (called once, by the controlling process)."""
    if os.environ.get("EDGE_TESTS_KEEP_SERVERS") == "1" or skip_reason() is not None:
        return
    for line in LINES:
        folder = SERVERS_DIR / line
        marker = folder / STARTED_MARKER
        if marker.exists():
            _serve("stop", "--dir", str(folder), timeout=STOP_TIMEOUT_S)
            marker.unlink(missing_ok=True)


@pytest.fixture(scope="session", params=LINES, ids=[f"inventree-{line}" for line in LINES])
def inventree(request: pytest.FixtureRequest) -> InvenTreeServer:
    """A real InvenTree of each line (303, then current), with the plugin installed and active."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    line: str = request.param
    try:
        return start(line)
    except ServerStartFailed as err:
        pytest.fail(str(err))


def _main(argv: list[str]) -> int:
    """`python -m tests.inventree_servers start|stop`: install and start both lines ahead of the
    tests (CI does this while it lints), or stop what a session left running."""
    from concurrent.futures import ThreadPoolExecutor

    if argv[:1] == ["stop"]:
        stop_started()
        return 0
    if argv[:1] != ["start"]:
        print("usage: python -m tests.inventree_servers start|stop")
        return 2
    reason = skip_reason()
    if reason is not None:
        print(f"InvenTree servers not started: {reason}")
        return 0
    try:
        with ThreadPoolExecutor(len(LINES)) as pool:
            for server in pool.map(start, LINES):
                print(f"InvenTree {server.line} (API {server.api_version}) at {server.url}")
    except ServerStartFailed as err:
        print(err)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
