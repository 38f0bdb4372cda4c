"""Log output: one JSON object per line off a terminal, our events and stdlib records alike."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

from agent.log import LogFormat, configure_logging, stop_logging

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Terminal(io.StringIO):
    """A captured stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the process's logging back as it was: the tests configure it globally."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access_level = logging.getLogger("aiohttp.access").level
    yield
    stop_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(access_level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def flush(stream: io.StringIO) -> list[dict[str, Any]]:
    stop_logging()  # the writer thread has written everything when this returns
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def json_stream(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info", "json")
    return stream


def test_our_events_are_json_with_level_logger_and_time(json_stream: io.StringIO) -> None:
    structlog.get_logger("agent.registry").info("machine_created", machine="Desk", driver="virtual")
    (record,) = flush(json_stream)
    assert record["event"] == "machine_created"
    assert record["machine"] == "Desk"
    assert record["driver"] == "virtual"
    assert record["level"] == "info"
    assert record["logger"] == "agent.registry"
    assert record["timestamp"].endswith("Z")


def test_stdlib_records_come_out_in_the_same_json_format(json_stream: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.1")
    logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Task>", 0.25)
    server, loop = flush(json_stream)
    assert server["event"] == "Error handling request from 127.0.0.1"
    assert server["level"] == "error"
    assert server["logger"] == "aiohttp.server"
    assert server["timestamp"].endswith("Z")
    assert loop["event"] == "Executing <Task> took 0.250 seconds"
    assert loop["level"] == "warning"
    assert loop["logger"] == "asyncio"


def test_stdlib_exception_carries_its_traceback(json_stream: io.StringIO) -> None:
    try:
        _fail(ConnectionResetError("peer went away"))
    except ConnectionResetError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (record,) = flush(json_stream)
    assert record["event"] == "Error handling request"
    assert "Traceback" in record["exception"]
    assert "ConnectionResetError: peer went away" in record["exception"]


def test_exception_instance_passed_as_exc_info_carries_its_traceback(
    json_stream: io.StringIO,
) -> None:
    try:
        _fail(TimeoutError("printer asleep"))
    except TimeoutError as err:
        error = err
    structlog.get_logger("agent.registry").warning(
        "driver_hook_failed", hook="poll", exc_info=error
    )
    (record,) = flush(json_stream)
    assert "TimeoutError: printer asleep" in record["exception"]


def test_our_exception_carries_its_traceback(json_stream: io.StringIO) -> None:
    try:
        _fail(ZeroDivisionError("division by zero"))
    except ZeroDivisionError:
        structlog.get_logger("agent.api.errors").exception("request_failed", path="/api/")
    (record,) = flush(json_stream)
    assert "ZeroDivisionError: division by zero" in record.get("exception", "")


def test_levels_below_the_configured_one_are_dropped(json_stream: io.StringIO) -> None:
    structlog.get_logger("agent.x").debug("too_detailed")
    logging.getLogger("aiohttp.server").debug("too detailed")
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /api/ HTTP/1.1" 200')
    structlog.get_logger("agent.x").warning("kept")
    assert [r["event"] for r in flush(json_stream)] == ["kept"]


def test_bound_context_appears_on_our_events(json_stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(machine="Desk", job_id=7)
    structlog.get_logger("agent.jobs").info("job_started")
    (record,) = flush(json_stream)
    assert (record["machine"], record["job_id"]) == ("Desk", 7)


def test_bound_context_appears_on_stdlib_records(json_stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(machine="Desk")
    logging.getLogger("aiohttp.server").error("Error handling request")
    (record,) = flush(json_stream)
    assert record.get("machine") == "Desk"


def test_writing_happens_off_the_calling_thread(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writers.append(threading.current_thread().name)
            return super().write(text)

    monkeypatch.setattr("sys.stderr", Recording())
    configure_logging("info", "json")
    structlog.get_logger("agent.x").info("hello")
    stop_logging()
    assert writers
    assert threading.current_thread().name not in writers


def test_console_rendering_on_a_terminal(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    configure_logging("info", "auto")
    structlog.get_logger("agent.daemon").info("listening", url="http://127.0.0.1:8000/api/")
    logging.getLogger("aiohttp.server").warning("slow client")
    stop_logging()
    lines = _ANSI.sub("", terminal.getvalue()).splitlines()
    assert len(lines) == 2
    assert "listening" in lines[0]
    assert "url=http://127.0.0.1:8000/api/" in lines[0]
    assert "slow client" in lines[1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_json_forced_on_a_terminal(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    configure_logging("info", "json")
    structlog.get_logger("agent.daemon").info("listening")
    stop_logging()
    assert json.loads(terminal.getvalue())["event"] == "listening"


def test_reconfiguring_does_not_duplicate_lines(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info", "json")
    configure_logging("info", "json")
    logging.getLogger("aiohttp.server").error("once")
    stop_logging()
    assert len(stream.getvalue().splitlines()) == 1


# journald: each line carries its syslog priority, so `journalctl -p warning` can filter


def _journal_stream(path: Path) -> str:
    """JOURNAL_STREAM as systemd sets it: device and inode of the stream connected to stderr."""
    info = path.stat()
    return f"{info.st_dev}:{info.st_ino}"


@pytest.fixture
def stderr_file(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Path, TextIO]]:
    """A real file to log to (the test points sys.stderr at it: pytest resets it after set-up)."""
    path = tmp_path / "stderr"
    with path.open("w", encoding="utf-8") as stream:
        yield path, stream


def _log_one_of_each() -> None:
    log = structlog.get_logger("agent.x")
    log.debug("detail")
    log.info("listening")
    log.warning("connect_failed")
    log.error("job_failed")
    log.critical("startup_failed")
    logging.getLogger("aiohttp.server").error("Error handling request")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_under_journald_each_line_starts_with_its_syslog_priority(
    stderr_file: tuple[Path, TextIO], monkeypatch: pytest.MonkeyPatch, fmt: LogFormat
) -> None:
    path, stream = stderr_file
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(path))
    configure_logging("debug", fmt)
    _log_one_of_each()
    stop_logging()
    lines = path.read_bytes().splitlines()
    assert [line[:3] for line in lines] == [b"<7>", b"<6>", b"<4>", b"<3>", b"<2>", b"<3>"]
    if fmt == "json":
        events = [json.loads(line[3:])["event"] for line in lines]
        assert events[:2] == ["detail", "listening"]


def test_a_traceback_under_journald_keeps_the_priority_on_every_line(
    stderr_file: tuple[Path, TextIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stream = stderr_file
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(path))
    configure_logging("info", "console")
    try:
        _fail(ZeroDivisionError("division by zero"))
    except ZeroDivisionError:
        structlog.get_logger("agent.x").exception("request_failed")
    stop_logging()
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    assert len(lines) > 2
    assert all(line.startswith(b"<3>") for line in lines)


@pytest.mark.parametrize("journal", ["unset", "another stream"])
def test_without_journald_lines_have_no_priority_prefix(
    stderr_file: tuple[Path, TextIO],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    journal: str,
) -> None:
    path, stream = stderr_file
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    if journal == "another stream":
        # A child of a systemd service whose stderr was redirected elsewhere.
        other = tmp_path / "other"
        other.write_text("")
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(other))
    configure_logging("info", "json")
    _log_one_of_each()
    stop_logging()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 5
    assert all(line.startswith(b"{") for line in lines)


def _fail(error: Exception) -> None:
    raise error
