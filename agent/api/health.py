"""`/api/agent/health/`: `ok` or `degraded` for anyone (monitors); the figures behind it for users."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from aiohttp import web

from agent.api.central import CentralLinkStatus
from agent.api.declare import Answer, ApiModel, Doc, Endpoint, Operation
from agent.api.errors import drf_json
from agent.api.views import ApiView, identify
from agent.appkeys import HEALTH


class DiskSpace(ApiModel):
    """Space on the file system of the data directory."""

    path: Annotated[str, Doc(description="The data directory (`[storage] path`).")]
    free_bytes: Annotated[int | None, Doc(description="Free bytes; null if unreadable.")] = None
    total_bytes: Annotated[int | None, Doc(description="Size of the file system.")] = None
    min_free_bytes: Annotated[
        int | None, Doc(description="Below this the agent is degraded (`[health] min_free_mib`).")
    ] = None


class LoopLagFigures(ApiModel):
    """How late the event loop woke a timer, in seconds."""

    last: Annotated[float, Doc(description="The last measurement (every 0.5 s).")]
    worst_last_minute: Annotated[float, Doc(description="The worst within the last minute.")]
    limit: Annotated[
        float, Doc(description="Above this the agent is degraded (`[health] max_loop_lag_s`).")
    ]


class StorageState(ApiModel):
    """The database."""

    ok: Annotated[bool, Doc(description="The last write succeeded and a read answers.")]


class MachineQueue(ApiModel):
    """One machine's print queue, when it holds jobs."""

    machine: Annotated[str, Doc(description="The machine's pk.")]
    machine_name: Annotated[str, Doc(description="The machine's name.")]
    depth: Annotated[int, Doc(description="Jobs waiting or printing.")]
    oldest_queued: Annotated[
        datetime.datetime | None, Doc(description="When the oldest of them was submitted.")
    ]


class AgentHealth(ApiModel):
    """The agent's health: only `status` without authentication; the figures for a user."""

    status: Annotated[
        Literal["ok", "degraded"],
        Doc(
            description="`degraded` when the database fails, the data directory is nearly full, "
            "the event loop lags, the registry has errors or the configured central link is "
            "not connected; `problems` says which."
        ),
    ]
    problems: Annotated[list[str] | None, Doc(description="Why degraded, one sentence each.")] = (
        None
    )
    version: Annotated[str | None, Doc(description="The agent's version.")] = None
    started: Annotated[datetime.datetime | None, Doc(description="When the daemon started.")] = None
    uptime_s: Annotated[float | None, Doc(description="Seconds since the daemon started.")] = None
    event_loop_lag_s: LoopLagFigures | None = None
    disk: DiskSpace | None = None
    storage: StorageState | None = None
    machines: Annotated[
        dict[str, int] | None,
        Doc(
            description="How many machines are in each state: `inactive`, `unknown` (not read "
            "yet) or the status (`connected`, `disconnected`, ...)."
        ),
    ] = None
    queues: Annotated[
        list[MachineQueue] | None, Doc(description="The machines whose queue holds jobs.")
    ] = None
    registry_errors: Annotated[
        list[str] | None, Doc(description="Drivers or machine types that failed to load.")
    ] = None
    central: CentralLinkStatus | None = None


class HealthView(ApiView):
    """The agent's health."""

    allow_anonymous = True
    endpoint = Endpoint(
        "/api/agent/health/",
        name="Agent Health",
        description="Whether the agent is healthy.",
        operations=(
            Operation(
                "GET",
                "agent_health_retrieve",
                "The agent's health (not in InvenTree). Without authentication only "
                '`{"status": "ok"}` (200) or `{"status": "degraded"}` (503), for monitors; an '
                "authenticated user also gets the problems and the figures: version, uptime, "
                "event loop lag, disk space, storage, machines by state, queues, registry errors "
                "and the central link.",
                tag="agent",
                answers=(
                    Answer(200, AgentHealth, "The agent is healthy"),
                    Answer(503, AgentHealth, "The agent is degraded"),
                ),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """`ok` (200) or `degraded` (503); the details only for an authenticated caller."""
        health = await self.request.app[HEALTH].check()
        code = 200 if health.status == "ok" else 503
        if await identify(self.request) is None:
            return drf_json({"status": health.status}, status=code)
        return drf_json(
            {"status": health.status, "problems": health.problems, **health.details}, status=code
        )
