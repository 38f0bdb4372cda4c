"""`/api/agent/central/`: the link to the central InvenTree server, as the daemon sees it now."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from aiohttp import web

from agent.api.declare import Answer, ApiModel, Doc, Endpoint, Operation
from agent.api.errors import drf_json
from agent.api.views import ApiView
from agent.appkeys import CENTRAL

LinkStateName = Literal[
    "off",
    "connecting",
    "connected",
    "unreachable",
    "unauthorized",
    "forbidden",
    "protocol_mismatch",
]


class CentralLinkStatus(ApiModel):
    """The link to the central InvenTree server (configuration section `[central]`)."""

    enabled: Annotated[bool, Doc(description="False when `central.url` is not set.")]
    state: Annotated[
        LinkStateName,
        Doc(
            description="`off` (not configured), `connecting` (no answer yet since the start), "
            "`connected`, `unreachable` (retrying with backoff), `unauthorized` (the token is "
            "not accepted), `forbidden` (the user is not in the agents group, or the agent "
            "name is another user's), `protocol_mismatch` (not the plugin, or another version)."
        ),
    ]
    since: Annotated[datetime.datetime | None, Doc(description="When the link entered this state.")]
    url: Annotated[str, Doc(description="The central server (`central.url`).")]
    agent: Annotated[str, Doc(description="The name the agent reports itself under.")]
    last_contact: Annotated[
        datetime.datetime | None,
        Doc(description="When the central server last answered; null if never."),
    ]
    last_error: Annotated[str, Doc(description="Why the link is not connected; empty if it is.")]
    pending: Annotated[
        int, Doc(description="Job state reports waiting in the outbox for the server.")
    ]


class CentralStatusView(ApiView):
    """The central link's state."""

    endpoint = Endpoint(
        "/api/agent/central/",
        name="Central Link",
        description="The link to the central InvenTree server.",
        operations=(
            Operation(
                "GET",
                "agent_central_retrieve",
                "The link to the central InvenTree server (not in InvenTree): its state and "
                "since when, the last contact, the last error and the reports waiting in the "
                "outbox. Any authenticated user may read it.",
                tag="agent",
                answers=(Answer(200, CentralLinkStatus),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """The link as it is now."""
        return drf_json(await self.request.app[CENTRAL].describe())
