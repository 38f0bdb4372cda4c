"""HTTP calls to the inventree-edge plugin of a central InvenTree (docs/central-protocol.md).

Every call has a timeout, never follows a redirect and reads a bounded body. Answers that say
something about the whole link (unreachable, token refused, not in the agents group, another
protocol) raise a `LinkError` naming the link's new state; a refusal of one request raises
`Refused`.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import aiohttp

from agent import __version__
from agent.config import CentralConfig

PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-Edge-Protocol"
AGENT_HEADER = "X-Edge-Agent"
PLUGIN_PATH = "/plugin/inventree-edge/"
# A JSON answer larger than this is not the plugin's.
MAX_JSON_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024


class LinkState(StrEnum):
    """The state of the link to the central server."""

    OFF = "off"
    # Recorded when the daemon stops (what `central status` shows while it is not running).
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    PROTOCOL_MISMATCH = "protocol_mismatch"


class LinkError(Exception):
    """The central server cannot be used now; `state` is what the link becomes."""

    state = LinkState.UNREACHABLE

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unreachable(LinkError):
    """No answer, a timeout or a server error: try again later."""

    state = LinkState.UNREACHABLE


class Unauthorized(LinkError):
    """The token (or the username and password) is not accepted."""

    state = LinkState.UNAUTHORIZED


class Forbidden(LinkError):
    """The user is not in the agents group, or the agent name belongs to another user."""

    state = LinkState.FORBIDDEN


class ProtocolMismatch(LinkError):
    """The server speaks another protocol version, or is not the plugin at all."""

    state = LinkState.PROTOCOL_MISMATCH


@dataclass(frozen=True, slots=True)
class Refused(Exception):
    """The server refused one request (400 invalid, 404, 409, another 4xx) for good."""

    status: int
    code: str
    detail: str

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.detail}".strip()


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ProtocolMismatch(f"the server's answer is not JSON ({err})") from err


class CentralClient:
    """One HTTP session to the central server; `token` is set before the plugin's calls."""

    def __init__(self, config: CentralConfig, agent: str) -> None:
        self.config = config
        self.agent = agent
        self.token = ""
        self.base = config.url + PLUGIN_PATH
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the HTTP session (connections are opened when needed)."""
        connector = aiohttp.TCPConnector(
            ssl=_ssl_context(self.config), limit=self.config.max_downloads + 3
        )
        # No cookies: InvenTree's token endpoint also logs a session in, and a session cookie
        # sent with a POST would make Django check CSRF instead of the token.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def obtain_token(self, username: str, password: str) -> str:
        """InvenTree's `GET /api/user/token/` with HTTP Basic: a token of that user."""
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        answer = await self._send(
            "GET",
            self.config.url + "/api/user/token/",
            headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
            # InvenTree hands out the same token again for the same name (until it expires).
            params={"name": f"inventree-edge {self.agent}"},
            max_bytes=MAX_JSON_BYTES,
            timeout=self.config.request_timeout,
        )
        if answer.status in (401, 403) or 300 <= answer.status < 400:
            raise Unauthorized(
                f"InvenTree did not accept the username {username!r} and its password "
                "(central.username, central.password)"
            )
        _check(answer, plugin=False)
        token = answer.json().get("token") if isinstance(answer.json(), dict) else None
        if not isinstance(token, str) or not token:
            raise ProtocolMismatch("InvenTree's /api/user/token/ answered without a token")
        return token

    async def report(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST report/`: the agent and its printers; the server's view of them."""
        answer = await self._plugin("POST", "report/", body=body)
        if answer.headers.get(PROTOCOL_HEADER) is None:
            raise ProtocolMismatch(
                f"{self.base}report/ answered without {PROTOCOL_HEADER}: is the inventree-edge "
                "plugin installed and active on this InvenTree?"
            )
        return _object(answer)

    async def jobs(self, wait: float) -> list[dict[str, Any]]:
        """`GET jobs/?wait=N`: jobs not yet accepted, oldest first.

        The client waits `wait` plus `request_timeout` (the margin for the server's own answer).
        """
        params = {"wait": str(int(wait))} if wait > 0 else None
        answer = await self._plugin(
            "GET", "jobs/", params=params, timeout=self.config.request_timeout + wait
        )
        jobs = _object(answer).get("jobs")
        if not isinstance(jobs, list):
            raise ProtocolMismatch("the jobs/ answer has no `jobs` list")
        return [job for job in jobs if isinstance(job, dict)]

    async def document(self, job: str, index: int, max_bytes: int) -> bytes:
        """`GET jobs/<id>/documents/<index>/`: the PDF, at most `max_bytes`."""
        answer = await self._plugin(
            "GET", f"jobs/{quote(job, safe='')}/documents/{index}/", max_bytes=max_bytes
        )
        return answer.body

    async def state(self, job: str, body: dict[str, Any]) -> None:
        """`POST jobs/<id>/state/`."""
        await self._plugin("POST", f"jobs/{quote(job, safe='')}/state/", body=body)

    async def _plugin(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - passed on to aiohttp
        max_bytes: int = MAX_JSON_BYTES,
    ) -> _Answer:
        headers = {
            "Authorization": f"Token {self.token}",
            PROTOCOL_HEADER: str(PROTOCOL_VERSION),
            AGENT_HEADER: quote(self.agent, safe=""),
            "Accept": "application/json",
            "User-Agent": f"inventree-edge/{__version__}",
        }
        answer = await self._send(
            method,
            self.base + path,
            headers=headers,
            body=body,
            params=params,
            max_bytes=max_bytes,
            timeout=timeout or self.config.request_timeout,
        )
        _check(answer, plugin=True)
        return answer

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        max_bytes: int,
        timeout: float,  # noqa: ASYNC109 - passed on to aiohttp
    ) -> _Answer:
        session = self._session
        if session is None:
            raise Unreachable("the link is closed")
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                json=body,
                params=params,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                data = await _read_bounded(response, max_bytes)
                return _Answer(response.status, response.headers, data)
        except Refused:
            raise
        except TimeoutError as err:
            raise Unreachable(f"no answer from {url} within {timeout:g} s") from err
        except aiohttp.ClientSSLError as err:
            raise Unreachable(
                f"TLS error with {url}: {err} (set central.ca_file to the server's CA bundle)"
            ) from err
        except (aiohttp.ClientError, OSError) as err:
            raise Unreachable(f"cannot reach {url}: {err or type(err).__name__}") from err


async def _read_bounded(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise Refused(
            413, "too_large", f"the answer has {response.content_length} bytes, over {max_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise Refused(413, "too_large", f"the answer is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check(answer: _Answer, *, plugin: bool) -> None:
    """Raise for an answer that is not a success."""
    status = answer.status
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        location = answer.headers.get("Location", "")
        if "login" in location.lower():
            raise Unauthorized(
                f"the server redirected to its login page (HTTP {status} to {location}): "
                "InvenTree 303 does so with a token it does not accept"
            )
        # Current InvenTree sends a /plugin/ path no active plugin serves to its web UI.
        raise ProtocolMismatch(
            f"the server redirected (HTTP {status} to {location or '?'}) instead of answering: "
            "install and activate the inventree-edge plugin in InvenTree, and check central.url"
        )
    detail, code, error = "", "", _error_body(answer.body)
    if error is not None:
        detail, code = str(error.get("detail", "")), str(error.get("code", ""))
    if status >= 500:
        # The plugin says why when it can (e.g. its tables are not migrated yet).
        raise Unreachable(f"the server answered HTTP {status}" + (f": {detail}" if detail else ""))
    if status == 401:
        raise Unauthorized(detail or "the token is not accepted", code)
    if status == 403:
        raise Forbidden(detail or "the server refused the agent's user (HTTP 403)", code)
    if status == 400 and code == "protocol":
        server = error.get("server_protocol") if error is not None else None
        raise ProtocolMismatch(
            f"the server speaks central protocol {server}, this agent {PROTOCOL_VERSION}: "
            "update the older of the agent and the plugin",
            code,
        )
    if plugin and status == 404 and code != "not_found":
        raise ProtocolMismatch(
            "no inventree-edge plugin answers at this URL (HTTP 404): install and activate the "
            "plugin in InvenTree, and check central.url"
        )
    raise Refused(status, code, detail or f"HTTP {status}")


def _error_body(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _object(answer: _Answer) -> dict[str, Any]:
    value = answer.json()
    if not isinstance(value, dict):
        raise ProtocolMismatch("the server's answer is not a JSON object")
    return value


def _ssl_context(config: CentralConfig) -> ssl.SSLContext | bool:
    if not config.url.startswith("https://"):
        return True
    if not config.verify_tls:
        return False
    if config.ca_file is not None:
        return ssl.create_default_context(cafile=str(config.ca_file))
    return True
