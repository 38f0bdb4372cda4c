"""Shared fixtures: a real app on a real aiohttp test server with a real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image, ImageDraw

from agent.app import create_app
from agent.appkeys import AUTHENTICATOR
from agent.auth import PasswordCost, User, create_user
from agent.config import AuthConfig, JobsConfig, Settings, StorageConfig
from drivers.family import builtin_driver_specs, load
from tests.clocks import SteppableClock

# Real InvenTree servers (tests/inventree_servers.py): the `inventree` fixture. Imported, not
# named in `pytest_plugins`: this file imports the module first, and pytest (filterwarnings =
# error) fails the whole run when a plugin module was imported before it could rewrite it.
from tests.inventree_servers import inventree  # noqa: F401
from tests.loop_watchdog import LoopWatchdog
from tests.waiting import wait_until

# The daemon imports every built-in driver before its loop serves anything; apps built inside a
# test's loop would import them there, the first time in each process (over 100 ms of CPU with five
# families), and the loop watchdog would count it against whichever test came first.
for _spec in builtin_driver_specs():
    load(_spec)

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password"
TEST_DRIVERS = (
    "tests.fake_drivers:RecordingDriver",
    "tests.fake_drivers:RequiredSettingsDriver",
    "tests.fake_drivers:FailingInitDriver",
    "tests.fake_drivers:OtherTypeDriver",
)

# scrypt at its lowest cost for the apps of tests: a password costs microseconds, not ~100 ms.
# The production cost is what create_app uses unless told otherwise (tests/test_auth.py).
CHEAP_PASSWORD_COST = PasswordCost(n=2, r=1, p=1)

Headers = dict[str, str]
MakeUser = Callable[..., Awaitable[Headers]]

# A test fails when its event loop's thread spends this much CPU (or sleeps this long in one
# place) without letting the loop run. LOOP_BLOCK_THRESHOLD_S lowers it to hunt smaller stalls.
LOOP_BLOCK_THRESHOLD_S = float(os.environ.get("LOOP_BLOCK_THRESHOLD_S", "0.1"))


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers of this suite."""
    config.addinivalue_line(
        "markers",
        "allow_loop_block(reason): the test blocks its event loop on purpose or because of a "
        "known bug elsewhere; the loop watchdog does not fail it",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that may be the first to start an InvenTree line may take its install's time."""
    # Imported here: pytest loads it first as a plugin (pytest_plugins), with assertion rewriting.
    from tests import inventree_servers

    for item in items:
        line = inventree_servers.line_of(item)
        already_limited = item.get_closest_marker("timeout") is not None
        if line is not None and not inventree_servers.installed(line) and not already_limited:
            item.add_marker(pytest.mark.timeout(inventree_servers.START_TIMEOUT_S + 120))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controlling process stops the InvenTree servers this session started."""
    from tests import inventree_servers

    if not hasattr(session.config, "workerinput"):
        inventree_servers.stop_started()


@pytest.fixture(autouse=True)
def _plain_console_logs() -> None:
    """structlog's default console output, but tracebacks without rich's highlighting.

    The daemon renders logs on a thread of its own (agent/log.py); unconfigured, as in tests,
    structlog renders on the caller's thread, and rich needs ~300 ms for one traceback.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.StackInfoRenderer(),
                structlog.dev.set_exc_info,
                structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
                structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
            ]
        )


@pytest.fixture(autouse=True)
def _loop_block_guard(request: pytest.FixtureRequest) -> None:
    """Every async test runs under the loop watchdog (see tests/loop_watchdog.py)."""
    if inspect.iscoroutinefunction(request.node.obj) and not request.node.get_closest_marker(
        "allow_loop_block"
    ):
        request.getfixturevalue("_loop_watchdog")


@pytest.fixture
async def _loop_watchdog() -> AsyncIterator[None]:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), LOOP_BLOCK_THRESHOLD_S)
    watchdog.start()
    yield
    blocks = await asyncio.to_thread(watchdog.stop)
    if blocks:
        worst = max(blocks, key=lambda block: block.cpu_s)
        pytest.fail(
            f"{len(blocks)} event-loop block(s) over {LOOP_BLOCK_THRESHOLD_S * 1000:.0f} ms; "
            f"the worst: {worst.describe()}",
            pytrace=False,
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults, with the data directory in a temporary folder and a bootstrap admin."""
    return Settings(
        storage=StorageConfig(path=tmp_path / "data"),
        # Printers "come back" within milliseconds in tests; retry quickly.
        jobs=JobsConfig(retry_base_seconds=0.02, retry_max_seconds=0.2),
        auth=AuthConfig(admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD),  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> SteppableClock:
    """The print queue's clock in the `app` fixture: real time that a test can move on."""
    return SteppableClock()


@pytest.fixture
def password_cost() -> PasswordCost:
    """The scrypt cost of the test app's new password hashes (override for the real one)."""
    return CHEAP_PASSWORD_COST


@pytest.fixture
def app(settings: Settings, clock: SteppableClock, password_cost: PasswordCost) -> web.Application:
    """The application with the built-in drivers plus the test drivers."""
    return create_app(
        settings, extra_drivers=TEST_DRIVERS, clock=clock, password_cost=password_cost
    )


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> TestClient[Any, Any]:
    """A client of the app served on a real loopback port."""
    result: TestClient[Any, Any] = await aiohttp_client(app)
    return result


@pytest.fixture
async def make_user(client: TestClient[Any, Any]) -> MakeUser:
    """Create a user directly in the store; returns token headers for it."""

    async def make(username: str, *, role: str = "view", superuser: bool = False) -> Headers:
        authenticator = client.app[AUTHENTICATOR]
        row = await create_user(
            authenticator.store,
            username,
            "pw-" + username,
            role=role,
            superuser=superuser,
            cost=authenticator.password_cost,
        )
        key = await client.app[AUTHENTICATOR].token_for(User.from_row(row), "test")
        return {"Authorization": f"Token {key}"}

    return make


async def admin_token(client: TestClient[Any, Any]) -> Headers:
    """Token headers of the bootstrap superuser, got the way a client gets them."""
    resp = await client.get("/api/user/token/", headers=basic_headers(ADMIN_USER, ADMIN_PASSWORD))
    assert resp.status == 200
    # The token call also logged a session in; tests choose their credentials explicitly.
    client.session.cookie_jar.clear()
    return {"Authorization": f"Token {(await resp.json())['token']}"}


@pytest.fixture
def make_token() -> Callable[[TestClient[Any, Any]], Awaitable[Headers]]:
    """Get superuser token headers from any client (for tests that build their own app)."""
    return admin_token


@pytest.fixture
async def admin(client: TestClient[Any, Any]) -> Headers:
    """Token headers of the bootstrap superuser."""
    return await admin_token(client)


@pytest.fixture
async def viewer(make_user: MakeUser) -> Headers:
    """A normal user with the default `view` role."""
    return await make_user("viewer", role="view")


@pytest.fixture
async def nobody(make_user: MakeUser) -> Headers:
    """An authenticated user without any role."""
    return await make_user("nobody", role="none")


def basic_headers(user: str, password: str) -> Headers:
    """An `Authorization: Basic` header (aiohttp's BasicAuth helper is deprecated)."""
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def create_machine(
    client: TestClient[Any, Any], headers: Headers, **fields: Any
) -> dict[str, Any]:
    """POST a machine and return its JSON (asserting 201)."""
    body = {"name": "printer", "machine_type": "label-printer", "driver": "virtual", **fields}
    resp = await client.post("/api/machine/", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def wait_for_job(
    client: TestClient[Any, Any],
    headers: Headers,
    pk: str,
    statuses: tuple[str, ...],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll a job until its status is one of `statuses` (bounded)."""
    job: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal job
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=headers)).json()
        return job["status"] in statuses

    await wait_until(reached, timeout, f"job {pk} {' or '.join(statuses)}")
    return job


def label_pdf(pages: int = 1, size: tuple[int, int] = (732, 342)) -> bytes:
    """A PDF of `pages` labels at 300 dpi, each with a distinct black block (page i: block at x=i*40)."""
    images = []
    for index in range(pages):
        image = Image.new("L", size, 255)
        ImageDraw.Draw(image).rectangle((20 + index * 40, 20, 60 + index * 40, 200), fill=0)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=300, save_all=True, append_images=images[1:])
    return buffer.getvalue()


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the other side closed (or reset) the connection within `timeout`."""
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionResetError:
        return True
