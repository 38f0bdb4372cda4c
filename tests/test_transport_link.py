"""The reconnect state machine over real TCP on 127.0.0.1, with an injected clock and jitter."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from drivers.transport import (
    ConnectionUriError,
    Link,
    LinkState,
    PrinterUnreachable,
    TcpTarget,
    TcpTransport,
    Transport,
    TransportClosed,
    link_for,
)
from tests.waiting import settle, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(link: Link) -> LinkState:
    """The link's state, read through a call so mypy does not narrow it across awaits."""
    return link.state


class Printer:
    """A raw-port printer on a fixed port that can be switched on and off."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.received = bytearray()

    async def switch_on(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def switch_off(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(4096):
            self.received += data
            if data.endswith(b"?"):
                writer.write(b"OK")


@pytest.fixture
async def printer() -> AsyncIterator[Printer]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    fake = Printer(port)
    yield fake
    await fake.switch_off()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Attempts:
    """Counts connect attempts while making real TCP transports."""

    def __init__(self, port: int, connect_timeout: float = 2.0) -> None:
        self.port = port
        self.connect_timeout = connect_timeout
        self.count = 0
        self.made: list[TcpTransport] = []

    def __call__(self) -> Transport:
        self.count += 1
        transport = TcpTransport(
            TcpTarget("127.0.0.1", self.port), connect_timeout=self.connect_timeout
        )
        self.made.append(transport)
        return transport


@pytest.fixture
def attempts(printer: Printer) -> Attempts:
    return Attempts(printer.port)


@pytest.fixture
async def link(attempts: Attempts, clock: Clock) -> AsyncIterator[Link]:
    link = Link(
        attempts, name="zebra", base=1.0, cap=8.0, jitter=0.2, clock=clock, rand=lambda: 0.5
    )
    yield link
    await link.close()


async def test_backoff_grows_to_the_cap_without_attempts_in_between(
    link: Link, attempts: Attempts, clock: Clock
) -> None:
    delays = []
    for _ in range(6):
        with pytest.raises(PrinterUnreachable) as info:
            await link.ensure_connected()
        assert link.state is LinkState.BACKOFF
        assert link.retry_at == info.value.retry_at
        delays.append(round(info.value.retry_at - clock.now, 6))
        tried = attempts.count
        clock.now = info.value.retry_at - 0.001
        with pytest.raises(PrinterUnreachable, match="connection refused"):
            await link.ensure_connected()
        assert attempts.count == tried  # still backing off: no connect attempt
        clock.now = info.value.retry_at
    # min(1 * 2**tries, 8) plus 10 % jitter (0.2 * rand 0.5)
    assert delays == [1.1, 2.2, 4.4, 8.8, 8.8, 8.8]
    assert link.failures == 6


async def test_success_resets_the_backoff(
    link: Link, printer: Printer, attempts: Attempts, clock: Clock
) -> None:
    for _ in range(3):
        with pytest.raises(PrinterUnreachable) as info:
            await link.ensure_connected()
        clock.now = info.value.retry_at
    await printer.switch_on()
    transport = await link.ensure_connected()
    assert link.state is LinkState.CONNECTED
    assert (link.failures, link.retry_at, link.last_error) == (0, None, None)
    assert await link.ensure_connected() is transport
    await link.mark_failed(TransportClosed("printer rebooted"))
    assert link.retry_at == clock.now + 1.1
    assert link.last_error == "printer rebooted"


async def test_unreachable_error_tells_the_user_why_and_when(link: Link, printer: Printer) -> None:
    with pytest.raises(PrinterUnreachable) as info:
        await link.ensure_connected()
    assert str(info.value) == (
        f"printer unreachable: connection refused by 127.0.0.1:{printer.port} (wrong port?) "
        "(next try in 1 s)"
    )
    assert info.value.retry_in == pytest.approx(1.1)


async def test_exchange_round_trip_and_failure_marks_the_link(
    link: Link, printer: Printer, clock: Clock
) -> None:
    await printer.switch_on()
    async with link.exchange() as transport:
        await transport.write(b"status?")
        assert await transport.read(2, timeout=2) == b"OK"
    assert link.state is LinkState.CONNECTED
    await printer.switch_off()
    with pytest.raises(TransportClosed):
        async with link.exchange() as transport:
            await transport.read(2, timeout=2)
    assert state_of(link) is LinkState.BACKOFF
    assert link.retry_at == clock.now + 1.1
    assert link.last_error is not None
    assert "closed the connection" in link.last_error


async def test_idle_connection_closed_by_the_printer_reconnects_silently(
    link: Link, printer: Printer, attempts: Attempts
) -> None:
    await printer.switch_on()
    async with link.exchange() as transport:
        await transport.write(b"status?")
        assert await transport.read(2, timeout=2) == b"OK"
    for writer in printer.writers:  # the printer's idle timeout
        writer.close()
    # The FIN is processed on the loop: no event to await.
    await wait_until(lambda: not attempts.made[0].is_open, timeout=2)
    with capture_logs() as logs:
        async with link.exchange() as transport:
            await transport.write(b"status?")
            assert await transport.read(2, timeout=2) == b"OK"
    assert attempts.count == 2
    assert link.failures == 0
    assert {entry["log_level"] for entry in logs} == {"debug"}
    assert "connection_stale" in [entry["event"] for entry in logs]


async def test_exchange_passes_other_errors_through_without_failing(
    link: Link, printer: Printer
) -> None:
    await printer.switch_on()
    with pytest.raises(KeyError):
        async with link.exchange():
            raise KeyError("driver bug")
    assert link.state is LinkState.CONNECTED


async def test_cancelled_exchange_drops_the_connection_without_failure(
    link: Link, printer: Printer, attempts: Attempts
) -> None:
    await printer.switch_on()
    started = asyncio.Event()

    async def job() -> None:
        async with link.exchange() as transport:
            await transport.write(b"half a label")
            started.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(job(), name="job")
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert link.state is LinkState.DISCONNECTED
    assert link.failures == 0
    assert not attempts.made[0].is_open
    async with link.exchange() as transport:
        assert transport is attempts.made[1]


async def test_exchanges_run_one_at_a_time(link: Link, printer: Printer) -> None:
    await printer.switch_on()
    order: list[str] = []
    release = asyncio.Event()

    async def job(tag: str, wait: bool) -> None:
        async with link.exchange() as transport:
            order.append(f"{tag} start")
            await transport.write(tag.encode())
            if wait:
                await release.wait()
            order.append(f"{tag} end")

    first = asyncio.create_task(job("a", wait=True), name="job a")
    await wait_until(lambda: order == ["a start"])
    second = asyncio.create_task(job("b", wait=False), name="job b")
    await settle()  # b runs until it waits for a's exchange to end
    assert order == ["a start"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a start", "a end", "b start", "b end"]


async def test_logs_first_failure_warning_repeats_debug_recovery_info_once(
    link: Link, printer: Printer, clock: Clock
) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(PrinterUnreachable) as info:
                await link.ensure_connected()
            clock.now = info.value.retry_at
        await printer.switch_on()
        await link.ensure_connected()
        async with link.exchange():
            pass
    events = [
        (entry["event"], entry["log_level"]) for entry in logs if entry.get("link") == "zebra"
    ]
    assert events == [
        ("connect_failed", "warning"),
        ("connect_failed", "debug"),
        ("connect_failed", "debug"),
        ("connection_restored", "info"),
    ]
    assert logs[0]["retry_in"] == 1.1


async def test_cancel_while_connecting_leaves_nothing_open(clock: Clock) -> None:
    # A listener with a full accept queue: the kernel drops our SYN, the connect hangs.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        attempts = Attempts(port, connect_timeout=5)
        link = Link(attempts, name="slow", clock=clock)
        task = asyncio.create_task(link.ensure_connected(), name="connect")
        await wait_until(lambda: attempts.count == 1)
        await settle()  # the task runs until the kernel leaves its SYN unanswered
        assert state_of(link) is LinkState.CONNECTING
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state_of(link) is LinkState.DISCONNECTED
        assert not attempts.made[0].is_open
        await link.close()
    finally:
        for sock in [*fillers, server]:
            sock.close()


async def test_close_closes_the_connection_for_good(link: Link, printer: Printer) -> None:
    await printer.switch_on()
    await link.ensure_connected()
    await link.close()
    await link.close()
    assert link.state is LinkState.CLOSED
    with pytest.raises(TransportClosed, match="zebra: the connection was closed"):
        async with link.exchange():
            pass
    await link.mark_failed("late error")  # ignored after close
    assert link.state is LinkState.CLOSED


async def test_retry_now_skips_the_backoff(
    link: Link, printer: Printer, attempts: Attempts
) -> None:
    with pytest.raises(PrinterUnreachable):
        await link.ensure_connected()
    await printer.switch_on()
    link.retry_now()
    await link.ensure_connected()
    assert attempts.count == 2
    assert link.state is LinkState.CONNECTED


async def test_disconnect_is_not_a_failure(
    link: Link, printer: Printer, attempts: Attempts
) -> None:
    await printer.switch_on()
    first = await link.ensure_connected()
    await link.disconnect()
    assert link.state is LinkState.DISCONNECTED
    assert link.failures == 0
    assert await link.ensure_connected() is not first
    assert attempts.count == 2


async def test_tries_are_capped_so_the_delay_never_overflows(link: Link, clock: Clock) -> None:
    for _ in range(1100):
        await link.mark_failed("still unplugged")
    assert link.retry_at == pytest.approx(clock.now + 8.8)


def test_link_for_parses_the_uri_at_once() -> None:
    with pytest.raises(ConnectionUriError, match="no scheme"):
        link_for("192.168.1.50", name="zebra")
    assert link_for("tcp://127.0.0.1:9100", name="zebra").state is LinkState.DISCONNECTED


async def test_listener_hears_each_failure_and_the_reconnect_but_not_plain_use(
    link: Link, printer: Printer, clock: Clock
) -> None:
    heard: list[LinkState] = []
    link.on_change = lambda: heard.append(link.state)
    await printer.switch_on()
    await link.ensure_connected()
    assert heard == []  # a first connect is no news
    await link.mark_failed(TransportClosed("printer rebooted"))
    assert heard == [LinkState.BACKOFF]
    with pytest.raises(PrinterUnreachable):
        await link.ensure_connected()  # still backing off: nothing changed
    assert heard == [LinkState.BACKOFF]
    clock.now = link.retry_at or clock.now
    await link.ensure_connected()
    assert heard == [LinkState.BACKOFF, LinkState.CONNECTED]


async def test_a_failing_listener_does_not_break_the_link(link: Link, printer: Printer) -> None:
    def broken() -> None:
        raise RuntimeError("listener bug")

    link.on_change = broken
    await link.mark_failed(TransportClosed("printer rebooted"))
    assert link.state is LinkState.BACKOFF
