"""Typed keys for the objects the aiohttp application shares with its handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from agent.auth import Authenticator
from agent.config import Settings
from agent.events import EventHub
from agent.jobs import JobRunner
from agent.poller import Poller
from agent.registry import Registry
from agent.render_service import RenderService
from agent.storage.database import Database

if TYPE_CHECKING:
    # The link's modules use the API's print options: a type-only import keeps them out of
    # the import cycle.
    from agent.central.link import CentralLink
    from agent.health import HealthCheck
    from agent.loop_lag import LoopLag
    from agent.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
REGISTRY = web.AppKey("registry", Registry)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
JOBS = web.AppKey("jobs", JobRunner)
POLLER = web.AppKey("poller", Poller)
EVENTS = web.AppKey("events", EventHub)
RENDER = web.AppKey("render", RenderService)
CENTRAL: web.AppKey[CentralLink] = web.AppKey("central")
LOOP_LAG: web.AppKey[LoopLag] = web.AppKey("loop_lag")
HEALTH: web.AppKey[HealthCheck] = web.AppKey("health")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
