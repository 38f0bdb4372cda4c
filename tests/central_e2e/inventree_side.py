"""The InvenTree side of the end-to-end tests: agent accounts, stock items, printing as the web UI.

Everything goes through InvenTree's REST API as its superuser `admin`, except what the API of
InvenTree 303 cannot do: adding a user to a group and giving that user an API token (303's user
API keeps `groups` read-only and hands out tokens only to their own user with a password). Those
are done once per test worker in one `manage shell` run (`create_agent_accounts`), the same way
on both lines.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tests.inventree_servers import InvenTreeServer
from tests.waiting import wait_until_blocking

# How often a test asks a shared InvenTree again while it waits for something there.
SERVER_POLL_S = 0.1

AGENT_GROUP = "edge-agents"
# The slug of InvenTree's builtin plugin that prints on machines (both lines).
MACHINE_PRINT_PLUGIN = "inventreelabelmachine"
# One API request to a local InvenTree (runserver on a busy 2-core host: up to seconds).
HTTP_TIMEOUT_S = 30.0
# A Django start plus a few ORM writes, on a loaded host.
SHELL_TIMEOUT_S = 180.0


# InvenTree on SQLite answers 500 "database is locked" at once when two transactions that read
# first both try to write (SQLite's deadlock rule, no busy wait); nothing was written. Every test
# worker shares the server, so such a call is made again (see `_transient`).
LOCKED_RETRIES = 8
LOCKED_PAUSE_S = 0.2


class ApiError(AssertionError):
    """An InvenTree answer a test did not expect."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer from InvenTree."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def request(
    url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> Answer:
    """One request to `url` + `path`, JSON in and out; redirects are not followed."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    all_headers = {"Accept": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class AgentAccount:
    """An InvenTree user an agent logs in as, with its API token."""

    username: str
    token: str
    in_group: bool


_ACCOUNTS_SCRIPT = """
import datetime, json
from django.contrib.auth.models import Group, User
import users.models
from users.models import ApiToken
group, _ = Group.objects.get_or_create(name={group!r})
for spec in json.loads({specs!r}):
    user, _ = User.objects.get_or_create(username=spec["username"])
    user.is_active = True
    user.set_unusable_password()
    user.save()
    # `manage shell` counts as a read-only command: current InvenTree skips the profile signal.
    if hasattr(users.models, "UserProfile"):
        users.models.UserProfile.objects.get_or_create(user=user)
    if spec["in_group"]:
        user.groups.add(group)
    ApiToken.objects.get_or_create(
        key=spec["token"],
        defaults=dict(user=user, name="edge-agent", expiry=datetime.date(2099, 12, 31)),
    )
print("accounts-created", flush=True)
"""


def create_agent_accounts(
    server: InvenTreeServer, prefix: str, in_group: int, outside_group: int = 0
) -> list[AgentAccount]:
    """Users `<prefix>-<n>` with tokens: the first `in_group` in `edge-agents`, the rest not.

    One `manage shell` run for all of them (a Django start costs seconds). The group is created
    if missing, as an administrator would create it.
    """
    accounts = [
        AgentAccount(f"{prefix}-{n}", secrets.token_hex(32), n < in_group)
        for n in range(in_group + outside_group)
    ]
    specs = json.dumps([vars(a) for a in accounts])
    script = _ACCOUNTS_SCRIPT.format(group=AGENT_GROUP, specs=specs)
    for attempt in range(LOCKED_RETRIES + 1):
        done = subprocess.run(  # noqa: S603 - the server folder's own manage wrapper
            [str(server.folder / "manage"), "shell", "-c", script],
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("INVENTREE_")},
        )
        # The script is idempotent: a run that met a locked database is run again.
        if "database is locked" not in done.stderr or attempt == LOCKED_RETRIES:
            break
        time.sleep(LOCKED_PAUSE_S * (attempt + 1))
    if "accounts-created" not in done.stdout:
        raise ApiError(f"manage shell failed ({done.returncode}): {done.stderr[-2000:]}")
    return accounts


@dataclass(frozen=True)
class Printables:
    """What the tests print: a stock item label template and stock items."""

    template: int
    width_mm: float
    height_mm: float
    items: list[int]


class InvenTreeApi:
    """InvenTree's REST API as `admin` (or as another token's user)."""

    def __init__(self, server: InvenTreeServer) -> None:
        self.server = server

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        expect: int | tuple[int, ...] = (200, 201),
    ) -> Any:
        """One request; fails unless the status is expected; returns the parsed JSON (or None)."""
        for attempt in range(LOCKED_RETRIES + 1):
            answer = request(
                self.server.url, method, path, token=token or self.server.token, body=body
            )
            if not _transient(method, path, answer) or attempt == LOCKED_RETRIES:
                break
            time.sleep(LOCKED_PAUSE_S * (attempt + 1))
        wanted = (expect,) if isinstance(expect, int) else expect
        if answer.status not in wanted:
            raise ApiError(f"{method} {path}: {answer.status} {answer.body[:2000]!r}")
        return answer.json() if answer.body else None

    # --- what is printed -------------------------------------------------------------------

    def stock_items(self, prefix: str, count: int) -> list[int]:
        """A new part with `count` stock items of it; their pks."""
        part = self.call(
            "POST",
            "/api/part/",
            {
                "name": f"{prefix} part",
                "description": "printed by the end-to-end tests",
                "component": True,
                "active": True,
            },
        )
        pks = []
        for n in range(count):
            created = self.call(
                "POST", "/api/stock/", {"part": part["pk"], "quantity": n + 1, "batch": prefix}
            )
            # 303 answers the created item; current InvenTree a list of the items created.
            item = created[0] if isinstance(created, list) else created
            pks.append(int(item["pk"]))
        return pks

    def stock_label_template(self) -> dict[str, Any]:
        """An enabled stock-item label template (InvenTree's own sample, on both lines)."""
        found = self.call("GET", "/api/label/template/?model_type=stockitem&enabled=true")
        templates = found["results"] if isinstance(found, dict) else found
        if not templates:
            raise ApiError("no enabled stock item label template on this InvenTree")
        template: dict[str, Any] = min(templates, key=lambda t: t["pk"])
        return template

    # --- printing as the web UI does ------------------------------------------------------

    def print_options(self, token: str | None = None) -> dict[str, Any]:
        """`OPTIONS /api/label/print/?plugin=...`: the fields the print dialog shows."""
        answer: dict[str, Any] = self.call(
            "OPTIONS", f"/api/label/print/?plugin={MACHINE_PRINT_PLUGIN}", token=token
        )
        return answer

    def print_labels(
        self, template: int, items: list[int], machine: str, copies: int, *, expect: Any = 201
    ) -> Any:
        """`POST /api/label/print/` with the body the web UI's print dialog sends."""
        body = {
            "template": template,
            "items": items,
            "plugin": MACHINE_PRINT_PLUGIN,
            "machine": machine,
            "driver_options": {"copies": copies},
        }
        return self.call("POST", "/api/label/print/", body, expect=expect)

    def wait_output_complete(self, output: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """The print's output record once it says complete (current InvenTree's data-output).

        InvenTree 303 answers the print with a finished LabelOutput and has no detail endpoint.
        """
        if self.server.api_version < 326:
            return output
        current: dict[str, Any] = output

        def complete() -> bool:
            nonlocal current
            current = self.call("GET", f"/api/data-output/{output['pk']}/")
            return bool(current["complete"]) or bool(current.get("errors"))

        wait_on_server(complete, timeout, "the data output to complete")
        return current

    # --- machines -------------------------------------------------------------------------

    def machines(self) -> list[dict[str, Any]]:
        """Every machine InvenTree knows."""
        found = self.call("GET", "/api/machine/")
        machines: list[dict[str, Any]] = found["results"] if isinstance(found, dict) else found
        return machines

    def machine(self, uuid: str) -> dict[str, Any]:
        """One machine with its live status (`status`, `status_text`, ...)."""
        machine: dict[str, Any] = self.call("GET", f"/api/machine/{uuid}/")
        return machine

    def wait_machine(self, uuid: str, ready: Any, timeout: float = 30.0, what: str = "") -> Any:
        """The machine once `ready(machine)` holds."""
        current: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal current
            current = self.machine(uuid)
            return bool(ready(current))

        try:
            wait_on_server(reached, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{err}; machine was {current}") from None
        return current

    def delete_machines_of(self, agent: str) -> None:
        """Delete the InvenTree machines showing the printers of `agent` (test clean-up).

        Without Redis, InvenTree keeps machine state in a per-process LocMemCache of at most
        300 entries, about five per machine: past some 50 machines it evicts states, and an
        evicted machine reads as not initialised and leaves the print dialog ("not a valid
        choice"). The servers are shared by every test, so each test removes its machines.
        """
        for machine in self.machines():
            if machine["name"].startswith(f"{agent} / "):
                self.call("DELETE", f"/api/machine/{machine['pk']}/", expect=(200, 204, 404))

    # --- tokens ---------------------------------------------------------------------------

    def revoke_own_token(self, token: str) -> None:
        """Delete the token through the API as its own user (both lines allow that)."""
        tokens = self.call("GET", "/api/user/tokens/", token=token)
        listed = tokens["results"] if isinstance(tokens, dict) else tokens
        [mine] = [t for t in listed if t.get("in_use")] or listed[:1]
        self.call("DELETE", f"/api/user/tokens/{mine['id']}/", token=token, expect=(200, 204))


def _transient(method: str, path: str, answer: Answer) -> bool:
    """A 500 that says nothing about the code under test, so the call is made again."""
    if answer.status != 500:
        return False
    if b"OperationalError" in answer.body:
        return True  # SQLite: database is locked
    # Current InvenTree's machine registry iterates its machines while another thread adds one
    # (`_calculate_registry_hash`: "dictionary changed size during iteration"); a read is safe
    # to repeat.
    if method == "GET" and b"RuntimeError" in answer.body:
        return True
    # InvenTree 303's print dialog names every machine in its registry; one another test deleted
    # a moment ago fails its lookup (MachineConfig.DoesNotExist) before anything is printed.
    return path.startswith("/api/label/print/") and b"DoesNotExist" in answer.body


def wait_on_server(condition: Any, timeout: float, what: str) -> None:
    """`wait_until_blocking` for conditions that ask InvenTree: at most 10 requests a second."""

    def paced() -> bool:
        if condition():
            return True
        time.sleep(SERVER_POLL_S)
        return False

    wait_until_blocking(paced, timeout, what)


def unique(prefix: str) -> str:
    """A name no other test (or test worker, or earlier run on the same server) uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    return f"{prefix}-{worker}-{time.time_ns() % 10**9:09d}-{secrets.token_hex(2)}"
