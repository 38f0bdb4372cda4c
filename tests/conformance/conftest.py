"""Fixtures of the conformance suite: the app with every family's driver, and its simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.app import create_app
from agent.config import Settings
from drivers import BUILTIN_DRIVERS
from drivers.sim import serve_pty, serve_tcp
from drivers.sim.base import Simulator
from tests.conformance.family import Family
from tests.conformance.harness import Client, Printer, add_printer
from tests.conformance.matrix import FAMILIES
from tests.conftest import TEST_DRIVERS, Headers
from tests.test_driver_escpos import Tap

# Families that do not ship with the agent (the template) are loaded as extra drivers, as a
# plugin's would be.
EXTRA_DRIVERS = tuple(f.driver_spec for f in FAMILIES if f.driver_spec not in BUILTIN_DRIVERS)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    """The application with the built-in drivers, the test drivers and every family's driver."""
    return create_app(settings, extra_drivers=(*TEST_DRIVERS, *EXTRA_DRIVERS))


@pytest.fixture(params=FAMILIES, ids=lambda family: family.slug)
def family(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Family:
    entry: Family = request.param
    for name, seconds in entry.quick.items():
        monkeypatch.setattr(name, seconds)
    return entry


@pytest.fixture
def sim(family: Family) -> Simulator:
    return family.simulator()


@pytest.fixture
def tap(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


async def _printer(
    link: str, client: Client, admin: Headers, family: Family, sim: Simulator, tap: Tap
) -> AsyncIterator[Printer]:
    if link == "tcp":
        async with await serve_tcp(sim) as server:
            uri = family.tcp_connection(server.host, server.port)
            yield await add_printer(client, admin, family, sim, tap, uri)
    else:
        async with await serve_pty(sim) as session:
            uri = family.pty_connection(session.path)
            yield await add_printer(client, admin, family, sim, tap, uri)


@pytest.fixture(params=["tcp", "pty"])
async def printer(
    request: pytest.FixtureRequest,
    client: Client,
    admin: Headers,
    family: Family,
    sim: Simulator,
    tap: Tap,
) -> AsyncIterator[Printer]:
    """The family's printer over a loopback TCP port, then over a pseudo-terminal."""
    async for printer in _printer(request.param, client, admin, family, sim, tap):
        yield printer


@pytest.fixture
async def tcp_printer(
    client: Client, admin: Headers, family: Family, sim: Simulator, tap: Tap
) -> AsyncIterator[Printer]:
    """The family's printer over a loopback TCP port."""
    async for printer in _printer("tcp", client, admin, family, sim, tap):
        yield printer
