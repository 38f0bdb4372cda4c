"""The listening socket under idle, slow and too many connections, with real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from aiohttp import web

from agent.app import create_app
from agent.config import HttpConfig, Settings
from agent.http_server import CappedTCPSite, connection_cap, runner_options
from agent.log import configure_logging, stop_logging
from agent.log_limits import RepeatFilter, RepeatLimiter, limit_library_logs
from tests.conftest import CHEAP_PASSWORD_COST, closed_by_peer
from tests.daemon_helpers import logging_restored
from tests.waiting import wait_until

_EMFILE = OSError(24, "Too many open files")
IDLE_TIMEOUT_S = 0.3
PATIENT_IDLE_TIMEOUT_S = 60.0
CAP = 5
# Far above the idle timeout: only a connection that is never closed reaches it.
CLOSE_DEADLINE_S = 5.0
REQUEST = b"GET /api/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
UNFINISHED_LOGIN = (
    b"POST /api/auth/login/ HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
)


@contextlib.asynccontextmanager
async def _serving(settings: Settings, idle_timeout_s: float) -> AsyncIterator[CappedTCPSite]:
    """The app served the way the daemon serves it, with a small connection cap."""
    http = HttpConfig(idle_timeout_s=idle_timeout_s, max_connections=CAP)
    app = create_app(settings.model_copy(update={"http": http}), password_cost=CHEAP_PASSWORD_COST)
    runner = web.AppRunner(app, access_log=None, **runner_options(http))
    await runner.setup()
    site = CappedTCPSite(runner, "127.0.0.1", 0, max_connections=connection_cap(http))
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[CappedTCPSite]:
    """A short idle timeout, so idle connections are seen to close."""
    async with _serving(settings, IDLE_TIMEOUT_S) as site:
        yield site


@pytest.fixture
async def patient_server(settings: Settings) -> AsyncIterator[CappedTCPSite]:
    """An idle timeout far above the test's length: held connections stay until closed."""
    async with _serving(settings, PATIENT_IDLE_TIMEOUT_S) as site:
        yield site


async def _connect(site: CappedTCPSite) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", site.port)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(CLOSE_DEADLINE_S):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head + await reader.readexactly(length)


async def test_connection_that_sends_nothing_is_closed(server: CappedTCPSite) -> None:
    reader, writer = await _connect(server)
    try:
        assert await closed_by_peer(reader, CLOSE_DEADLINE_S)
    finally:
        writer.close()


async def test_connection_that_never_finishes_its_header_is_closed(server: CappedTCPSite) -> None:
    reader, writer = await _connect(server)
    try:
        writer.write(b"GET /api/ HTTP/1.1\r\nHost: local")
        await writer.drain()
        assert await closed_by_peer(reader, CLOSE_DEADLINE_S)
    finally:
        writer.close()


async def test_idle_keep_alive_connection_is_closed_after_its_answer(
    server: CappedTCPSite,
) -> None:
    reader, writer = await _connect(server)
    try:
        writer.write(REQUEST)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        assert await closed_by_peer(reader, CLOSE_DEADLINE_S)
    finally:
        writer.close()


async def _busy(site: CappedTCPSite) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection in the middle of a request: a login whose body has not all arrived."""
    reader, writer = await _connect(site)
    writer.write(UNFINISHED_LOGIN)
    await writer.drain()
    return reader, writer


async def test_idle_connections_at_the_cap_make_room_for_a_request(
    patient_server: CappedTCPSite,
) -> None:
    server = patient_server
    held = [await _connect(server) for _ in range(CAP)]
    try:
        await wait_until(lambda: server.open_connections >= CAP, CLOSE_DEADLINE_S)
        # Connections that sent nothing do not lock clients out until their idle timeout: the
        # oldest of them is closed to serve the newcomer.
        for _ in range(2):
            reader, writer = await _connect(server)
            writer.write(REQUEST)
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
            writer.close()
        assert await closed_by_peer(held[0][0], CLOSE_DEADLINE_S)
        assert await closed_by_peer(held[1][0], CLOSE_DEADLINE_S)
        assert server.open_connections <= CAP
    finally:
        for _reader, writer in held:
            writer.close()


async def test_connections_over_the_cap_get_503_and_room_comes_back(
    patient_server: CappedTCPSite,
) -> None:
    server = patient_server
    held = [await _busy(server) for _ in range(CAP)]
    try:
        await wait_until(lambda: server.busy_connections() >= CAP, CLOSE_DEADLINE_S)
        reader, writer = await _connect(server)
        answer = await _answer(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 5" in answer
        assert b"too many open connections" in answer
        assert await closed_by_peer(reader)
        # One held connection goes away: a new client is served again.
        held.pop()[1].close()
        await wait_until(lambda: server.open_connections < CAP, CLOSE_DEADLINE_S)
        reader, writer = await _connect(server)
        writer.write(REQUEST)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        for _reader, writer in held:
            writer.close()


def test_cap_is_lowered_to_fit_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("resource.getrlimit", lambda _which: (1024, 4096))
    assert connection_cap(HttpConfig(max_connections=5000)) == 1024 - 256
    assert connection_cap(HttpConfig(max_connections=100)) == 100


def test_repeated_events_are_logged_a_few_times_per_interval_with_a_count() -> None:
    now = [0.0]
    limiter = RepeatLimiter(times=3, interval_s=10.0, clock=lambda: now[0])
    seen = [limiter.check("emfile") for _ in range(1000)]
    assert seen[:3] == [{}, {}, {}]
    assert seen[3:] == [None] * 997
    assert limiter.check("other") == {}  # other events are not held back
    now[0] = 10.0
    assert limiter.check("emfile") == {"suppressed": 997}
    assert limiter.check("emfile") == {}


def test_library_log_flood_is_cut_to_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.flood")
    limit = RepeatFilter(RepeatLimiter(times=2, interval_s=60.0))
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.ERROR, logger="tests.flood"):
            for _ in range(500):
                logger.error("socket.accept() out of system resource", exc_info=_EMFILE)
    finally:
        logger.removeFilter(limit)
    assert len(caplog.records) == 2


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The daemon's JSON logging into a buffer; the process's logging restored afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with logging_restored():
        configure_logging("info", "json")
        yield stream


def test_a_repeated_warning_is_logged_a_few_times_then_held_back(json_log: io.StringIO) -> None:
    log = structlog.get_logger("agent.poller")
    for _ in range(200):
        log.warning("poll_failed_in_test", machine="Desk", error="Too many open files")
    log.warning("poll_failed_in_test", machine="Shelf", error="Too many open files")
    for _ in range(20):
        log.info("job_queued_in_test", machine="Desk")
    stop_logging()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    warned = [line["machine"] for line in lines if line["event"] == "poll_failed_in_test"]
    assert warned == ["Desk"] * RepeatLimiter().times + ["Shelf"]
    assert sum(line["event"] == "job_queued_in_test" for line in lines) == 20


async def test_a_malformed_request_is_logged_as_the_client_s_error_without_its_bytes(
    json_log: io.StringIO, server: CappedTCPSite
) -> None:
    limit_library_logs()
    secret = "inv-" + "5" * 40
    reader, writer = await _connect(server)
    try:
        writer.write(
            b"GET /api/ HTTP/1.1\r\nHost: localhost\r\n"
            + f"Authorization: Token {secret}{'x' * 9000}\r\n\r\n".encode()
        )
        assert (await reader.readuntil(b"\r\n")).split()[1] == b"400"
    finally:
        writer.close()
    stop_logging()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    bad = [line for line in lines if line.get("logger") == "aiohttp.server"]
    assert bad, lines
    assert all(line["level"] == "info" and "exception" not in line for line in bad)
    assert secret not in json_log.getvalue()
