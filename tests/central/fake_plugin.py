"""A small in-test central server: the inventree-edge plugin's endpoints (docs/central-protocol.md).

A real aiohttp server on 127.0.0.1 that keeps what agents told it, so tests can read it back, and
that can be switched to answer as a revoked token, a server of another protocol or a user outside
the agents group would. It can be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

BASE = "/plugin/inventree-edge/"
FINAL = frozenset({"done", "failed", "cancelled"})


@dataclass
class FakeJob:
    id: str
    printer: str
    documents: list[bytes]
    copies: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    state: str = "pending"
    reports: list[dict[str, Any]] = field(default_factory=list)
    # Sizes announced in `jobs/` (default: the documents' own).
    sizes: list[int] | None = None

    def listed(self) -> dict[str, Any]:
        sizes = self.sizes or [len(doc) for doc in self.documents]
        return {
            "id": self.id,
            "printer": self.printer,
            "created": "2026-12-03T05:41:00+00:00",
            "documents": [{"index": i, "size": size} for i, size in enumerate(sizes)],
            "width_mm": 50.0,
            "height_mm": 20.0,
            "copies": self.copies,
            "options": self.options,
            "user": "alice",
            "template": "Test label",
        }


class FakeCentral:
    """The plugin's side of the protocol, recording every request."""

    def __init__(self) -> None:
        self.tokens = {"agent-token"}
        self.users = {"agent-user": "agent-password"}
        self.issued_tokens: list[str] = []
        self.in_group = True
        self.protocol = 1
        # "401" (current InvenTree) or "302" (InvenTree 303) for a token not accepted.
        self.refusal = "401"
        # Current InvenTree without the plugin: its /plugin/ paths redirect to the web UI.
        self.plugin_missing = False
        self.token_names: list[str] = []
        self.cookies_seen = 0
        self.long_poll_max = 20
        self.server_error = False
        self.jobs: dict[str, FakeJob] = {}
        self.reports: list[dict[str, Any]] = []
        self.report_times: list[float] = []
        self.requests: list[tuple[str, str]] = []
        self.agents: set[str] = set()
        self.job_added = asyncio.Event()
        # While cleared, document downloads wait (the tests count how many are in flight).
        self.documents_open = asyncio.Event()
        self.documents_open.set()
        self.downloads_in_flight = 0
        self.most_downloads_in_flight = 0
        # Indexes whose document is gone (answered 404 not_found).
        self.missing_documents: set[int] = set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/user/token/", self._token)
        app.router.add_post(BASE + "report/", self._report)
        app.router.add_get(BASE + "jobs/", self._jobs)
        app.router.add_get(BASE + "jobs/{id}/documents/{index}/", self._document)
        app.router.add_post(BASE + "jobs/{id}/state/", self._state)
        app.router.add_route("*", "/{tail:.*}", self._elsewhere)
        runner = self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def add_job(self, printer: str, documents: list[bytes], **fields: Any) -> FakeJob:
        job = FakeJob(str(uuid.uuid4()), printer, documents, **fields)
        self.jobs[job.id] = job
        self.job_added.set()
        return job

    def states(self, job: FakeJob) -> list[str]:
        return [report["state"] for report in job.reports]

    # handlers

    async def _elsewhere(self, request: web.Request) -> web.Response:
        """Any other path (a login page the agent must never follow a redirect to)."""
        self.requests.append((request.method, request.path))
        return web.Response(status=404, text="Not found")

    async def _token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) == password:
                token = f"obtained-{len(self.issued_tokens)}"
                self.issued_tokens.append(token)
                self.tokens.add(token)
                self.token_names.append(request.query.get("name", ""))
                response = web.json_response({"token": token})
                response.set_cookie("sessionid", "logged-in-too")  # as InvenTree's endpoint does
                return response
        return web.json_response({"detail": "Invalid username/password."}, status=401)

    def _check(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path))
        if "Cookie" in request.headers:
            self.cookies_seen += 1
        if self.plugin_missing:
            raise web.HTTPFound("/web")
        if self.server_error:
            return web.Response(status=503, text="maintenance")
        header = request.headers.get("Authorization", "")
        if not header.startswith("Token ") or header[6:] not in self.tokens:
            if self.refusal == "302":
                raise web.HTTPFound("/accounts/login/?next=" + request.path)
            return web.json_response(
                {"detail": "Invalid token."}, status=401, headers=self._headers()
            )
        if request.headers.get("X-Edge-Protocol") != str(self.protocol):
            return self._error(400, "protocol", "Update the agent.", server_protocol=self.protocol)
        if not self.in_group:
            return self._error(403, "not_agent", "Add the user to the group edge-agents.")
        self.agents.add(unquote(request.headers.get("X-Edge-Agent", "")))
        return None

    def _headers(self) -> dict[str, str]:
        return {"X-Edge-Protocol": str(self.protocol)}

    def _error(self, status: int, code: str, detail: str, **more: Any) -> web.Response:
        body = {"detail": detail, "code": code, **more}
        return web.json_response(body, status=status, headers=self._headers())

    async def _report(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        body = await request.json()
        interval = body.get("agent", {}).get("report_interval")
        if not isinstance(interval, int) or not 1 <= interval <= 86400:
            return self._error(400, "invalid", "agent.report_interval must be whole seconds.")
        self.reports.append(body)
        self.report_times.append(time.monotonic())
        printers = [
            {"key": p["key"], "machine": str(uuid.uuid4()), "name": p["name"]}
            for p in body["printers"]
        ]
        answer = {"agent": "agent", "long_poll_max": self.long_poll_max, "printers": printers}
        return web.json_response(answer, headers=self._headers())

    async def _jobs(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        wait = min(float(request.query.get("wait", "0")), self.long_poll_max)
        waiting = self._waiting()
        if not waiting and wait > 0:
            self.job_added.clear()
            try:
                async with asyncio.timeout(wait):
                    await self.job_added.wait()
            except TimeoutError:
                pass
            waiting = self._waiting()
        for job in waiting:
            if job.state == "pending":
                job.state = "fetched"
        return web.json_response(
            {"jobs": [job.listed() for job in waiting[:20]]}, headers=self._headers()
        )

    def _waiting(self) -> list[FakeJob]:
        return [job for job in self.jobs.values() if job.state in ("pending", "fetched")]

    async def _document(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        job = self.jobs.get(request.match_info["id"])
        index = int(request.match_info["index"])
        if job is None or index >= len(job.documents) or index in self.missing_documents:
            return self._error(404, "not_found", "No such job for this agent.")
        self.downloads_in_flight += 1
        self.most_downloads_in_flight = max(self.most_downloads_in_flight, self.downloads_in_flight)
        try:
            await self.documents_open.wait()
        finally:
            self.downloads_in_flight -= 1
        return web.Response(
            body=job.documents[index], content_type="application/pdf", headers=self._headers()
        )

    async def _state(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return self._error(404, "not_found", "No such job for this agent.")
        body = await request.json()
        if body.get("state") not in ("accepted", "printing", "done", "failed", "cancelled"):
            return self._error(400, "invalid", "state: not a known state.")
        if job.state in FINAL and body["state"] != job.state:
            return self._error(409, "conflict", "The job has finished.", state=job.state)
        job.reports.append(body)
        job.state = body["state"]
        return web.json_response({"state": job.state}, headers=self._headers())
