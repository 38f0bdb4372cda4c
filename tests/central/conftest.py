"""Fixtures of the central link's tests: the fake plugin server and agents configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from agent.app import create_app
from agent.appkeys import REGISTRY, SETTINGS
from agent.central.link import LinkTiming
from agent.config import CentralConfig, MachineEntry, Settings
from tests.central.fake_plugin import FakeCentral
from tests.clocks import SteppableClock
from tests.conftest import CHEAP_PASSWORD_COST, TEST_DRIVERS

# Backoff and debounce short enough for tests (the daemon's: 1 s doubling to 60 s, 1 s).
FAST = LinkTiming(backoff_base_s=0.05, backoff_max_s=0.2, report_debounce_s=0.02)
PRINTER = "Zebra"

Client = TestClient[Any, Any]
StartAgent = Callable[..., Awaitable[Client]]


@pytest.fixture
async def central() -> AsyncIterator[FakeCentral]:
    """The fake plugin, serving on a loopback port."""
    fake = FakeCentral()
    await fake.start()
    yield fake
    await fake.stop()


def central_settings(settings: Settings, url: str, **central: Any) -> Settings:
    """The test settings with a `[central]` section and one virtual printer."""
    fields: dict[str, Any] = {
        "url": url,
        "token": "agent-token",
        "agent_name": "test-agent",
        "poll_interval": 0.02,
        **central,
    }
    return settings.model_copy(
        update={
            "central": CentralConfig(**fields),
            "machines": [MachineEntry(name=PRINTER, driver="virtual")],
        }
    )


@pytest.fixture
def start_agent(aiohttp_client: Any, settings: Settings, central: FakeCentral) -> StartAgent:
    """Start an agent (a real app on a loopback port) linked to the fake; again: same database."""

    async def start(timing: LinkTiming = FAST, **central_fields: Any) -> Client:
        url = central_fields.pop("url", central.url)
        configured = central_settings(settings, url, **central_fields)
        app: web.Application = create_app(
            configured,
            extra_drivers=TEST_DRIVERS,
            clock=SteppableClock(),
            password_cost=CHEAP_PASSWORD_COST,
            central_timing=timing,
        )
        client: Client = await aiohttp_client(app)
        return client

    return start


def printer_pk(client: Client, name: str = PRINTER) -> str:
    """The pk of a machine of the agent, by name."""
    machines = client.app[REGISTRY].machines.values()
    return next(machine.pk for machine in machines if machine.name == name)


def printed_labels(client: Client, name: str = PRINTER) -> list[Path]:
    """The PNG files the virtual printer wrote."""
    root = client.app[SETTINGS].storage.path / "virtual"
    return sorted(root.glob(f"{name}-*/*.png"))
