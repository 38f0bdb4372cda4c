"""Fixtures of the conformance suite: the app with every family's driver, and its simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.app import create_app
from agent.auth import PasswordCost
from agent.config import Settings
from drivers.family import builtin_driver_specs
from drivers.sim import serve_pty, serve_tcp
from drivers.sim.base import Simulator
from tests.conformance.entry import Entry
from tests.conformance.harness import Client, Printer, add_printer
from tests.conformance.matrix import MATRIX
from tests.conftest import TEST_DRIVERS, Headers
from tests.simulator_tap import Tap

# Families that do not ship with the agent (the template) are loaded as extra drivers, as a
# plugin's would be.
EXTRA_DRIVERS = tuple(
    e.family.driver for e in MATRIX if e.family.driver not in builtin_driver_specs()
)


@pytest.fixture
def app(settings: Settings, password_cost: PasswordCost) -> web.Application:
    """The application with the built-in drivers, the test drivers and every family's driver."""
    drivers = (*TEST_DRIVERS, *EXTRA_DRIVERS)
    return create_app(settings, extra_drivers=drivers, password_cost=password_cost)


@pytest.fixture(params=MATRIX, ids=lambda entry: entry.slug)
def entry(request: pytest.FixtureRequest) -> Entry:
    """Each family of the matrix in turn."""
    chosen: Entry = request.param
    return chosen


@pytest.fixture
def sim(entry: Entry) -> Simulator:
    return entry.simulator()


@pytest.fixture
def tap(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Tap:
    return Tap(sim, monkeypatch)


async def _printer(
    link: str, client: Client, admin: Headers, entry: Entry, sim: Simulator, tap: Tap
) -> AsyncIterator[Printer]:
    if link == "tcp":
        async with await serve_tcp(sim) as server:
            uri = entry.tcp_connection(server.host, server.port)
            yield await add_printer(client, admin, entry, sim, tap, uri)
    else:
        async with await serve_pty(sim) as session:
            uri = entry.pty_connection(session.path)
            yield await add_printer(client, admin, entry, sim, tap, uri)


@pytest.fixture(params=["tcp", "pty"])
async def printer(
    request: pytest.FixtureRequest,
    client: Client,
    admin: Headers,
    entry: Entry,
    sim: Simulator,
    tap: Tap,
) -> AsyncIterator[Printer]:
    """The family's printer over a loopback TCP port, then over a pseudo-terminal."""
    async for printer in _printer(request.param, client, admin, entry, sim, tap):
        yield printer


@pytest.fixture
async def tcp_printer(
    client: Client, admin: Headers, entry: Entry, sim: Simulator, tap: Tap
) -> AsyncIterator[Printer]:
    """The family's printer over a loopback TCP port."""
    async for printer in _printer("tcp", client, admin, entry, sim, tap):
        yield printer
