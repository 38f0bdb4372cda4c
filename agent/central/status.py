"""The link's state: one log line per change of state (never one per retry), kept in the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog

from agent.central.client import LinkState
from agent.central.store import CentralStore, LinkRecord
from agent.storage.errors import StoreError

log = structlog.get_logger(__name__)

# What an admin should do about each state, in its log line.
_ADVICE = {
    LinkState.UNAUTHORIZED: (
        "the central server does not accept the agent's credentials: create a new API token for "
        "the agent's InvenTree user and set central.token (INVENTREE_EDGE_CENTRAL__TOKEN), or fix "
        "central.username and central.password"
    ),
    LinkState.FORBIDDEN: (
        "the central server refuses this agent: add its InvenTree user to the agents group "
        "(plugin setting AGENT_GROUP, default edge-agents), or choose another central.agent_name"
    ),
    LinkState.PROTOCOL_MISMATCH: (
        "the agent and the central server's inventree-edge plugin do not speak the same "
        "protocol: check central.url and update the agent or the plugin"
    ),
    LinkState.UNREACHABLE: "the agent keeps printing local jobs and retries",
}


class LinkStatus:
    """Where the link stands; a change of state is logged once and recorded."""

    def __init__(
        self,
        store: CentralStore,
        url: str,
        agent: str,
        now: Callable[[], dt.datetime],
        *,
        contact_interval_s: float,
    ) -> None:
        self.store = store
        self.url = url
        self.agent = agent
        self.now = now
        self.state = LinkState.CONNECTING
        self.since = now()
        self.last_contact: dt.datetime | None = None
        self.last_error = ""
        # Last contact is written at most this often (a poll every 2 s must not write every 2 s).
        self._contact_interval_s = contact_interval_s
        self._contact_saved: dt.datetime | None = None

    async def start(self) -> None:
        """Record the start of the link (last contact carried over from the previous run)."""
        try:
            previous = await self.store.link()
        except StoreError:
            previous = None
        if previous is not None and previous.url == self.url and previous.last_contact:
            self.last_contact = dt.datetime.fromisoformat(previous.last_contact)
        await self._save()

    async def contact(self, printers: int | None = None) -> None:
        """The server answered: the link is connected."""
        now = self.now()
        self.last_contact = now
        if self.state is not LinkState.CONNECTED:
            self.state, self.since, self.last_error = LinkState.CONNECTED, now, ""
            fields: dict[str, Any] = {"url": self.url, "agent": self.agent}
            if printers is not None:
                fields["printers"] = printers
            log.info("central_connected", **fields)
            await self._save()
            return
        saved = self._contact_saved
        if saved is None or (now - saved).total_seconds() >= self._contact_interval_s:
            await self._save()

    async def fail(self, state: LinkState, message: str, retry_in_s: float) -> None:
        """The server cannot be used: log the first time this state is reached."""
        self.last_error = message
        if state is self.state:
            return
        self.state, self.since = state, self.now()
        event = f"central_{state.value}"
        fields = {"url": self.url, "agent": self.agent, "error": message, "advice": _ADVICE[state]}
        if state is LinkState.UNREACHABLE:
            log.warning(event, retry_in_s=round(retry_in_s, 1), **fields)
        else:
            log.error(event, **fields)
        await self._save()

    async def stopped(self) -> None:
        """Record that the link stopped with the daemon (not logged: the daemon says it stops)."""
        self.state, self.since = LinkState.STOPPED, self.now()
        await self._save()

    def as_json(self) -> dict[str, Any]:
        """What `GET /api/agent/central/` shows of the link (without the pending count)."""
        return {
            "state": self.state.value,
            "since": self.since.isoformat(),
            "url": self.url,
            "agent": self.agent,
            "last_contact": self.last_contact.isoformat() if self.last_contact else None,
            "last_error": self.last_error,
        }

    async def _save(self) -> None:
        record = LinkRecord(
            url=self.url,
            agent=self.agent,
            state=self.state.value,
            since=self.since.isoformat(),
            last_contact=self.last_contact.isoformat() if self.last_contact else None,
            last_error=self.last_error,
        )
        try:
            await self.store.save_link(record)
        except StoreError as err:  # the link's bookkeeping must not stop the link
            log.warning("central_status_not_saved", error=str(err))
        else:
            self._contact_saved = self.last_contact
