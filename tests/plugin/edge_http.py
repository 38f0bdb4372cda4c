"""A plain HTTP client for the plugin's tests: an agent's and a user's requests to InvenTree."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.plugin import agent_users

BASE = "/plugin/inventree-edge/"
REQUEST_TIMEOUT_S = 40.0


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # an agent never follows redirects (303 redirects to its login page)


_opener = urllib.request.build_opener(_NoRedirect)


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback test server
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=REQUEST_TIMEOUT_S) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


@dataclass
class Agent:
    """One agent: its InvenTree user's token and its name."""

    url: str
    user: str = "edge-agent-a"
    name: str = field(default_factory=lambda: f"Agent-{uuid.uuid4().hex[:10]}")
    protocol: str | None = "1"

    def headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Token {agent_users.token(self.user)}",
            "X-Edge-Agent": quote(self.name),
        }
        if self.protocol is not None:
            headers["X-Edge-Protocol"] = self.protocol
        return headers

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        return request(f"{self.url}{BASE}{path}", method, body, self.headers())

    def report(self, printers: list[dict[str, Any]], interval: int = 30) -> Answer:
        return self.call(
            "POST",
            "report/",
            {"agent": {"version": "0.9.0", "report_interval": interval}, "printers": printers},
        )

    def jobs(self, wait: float = 0) -> list[dict[str, Any]]:
        answer = self.call("GET", f"jobs/?wait={wait:g}")
        assert answer.status == 200, answer.body
        return list(answer.json()["jobs"])

    def state(self, job_id: str, state: str, printed: int = 0, total: int = 0, message: str = ""):
        return self.call(
            "POST",
            f"jobs/{job_id}/state/",
            {"state": state, "printed": printed, "total": total, "message": message},
        )


def printer(key: str, name: str, status: int = 100, **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": name, "driver": "zpl", "status": status, **extra}
