"""Logging: structlog for our code, stdlib loggers (aiohttp, asyncio) routed through the same renderer.

Records are handed to a queue and rendered and written by a listener thread, so a slow journald or
terminal never stalls the event loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import logging.handlers
import os
import queue
import sys
from typing import Any, Literal

import structlog

from agent.log_limits import RepeatedEvents

LogFormat = Literal["auto", "console", "json"]

_listener: logging.handlers.QueueListener | None = None


_CONTEXT_ATTR = "_inventree_edge_context"


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Queue the record as it is: structlog's event dict must reach the formatter intact.

    Runs in the logging thread, so it also captures the caller's bound context (machine, job)
    for stdlib records, which the writer thread could not see.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if not isinstance(record.msg, dict):
            setattr(record, _CONTEXT_ATTR, structlog.contextvars.get_contextvars())
        return record


def _merge_record_context(_logger: Any, _name: str, event_dict: Any) -> Any:
    """Add the context captured when a stdlib record was logged."""
    record = event_dict.get("_record")
    for key, value in getattr(record, _CONTEXT_ATTR, {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def _record_timestamp(_logger: Any, _name: str, event_dict: Any) -> Any:
    """Stamp a stdlib record with the time it was logged, not the time it was written."""
    record = event_dict.get("_record")
    if record is not None:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat()
        event_dict["timestamp"] = stamp.replace("+00:00", "Z")
    return event_dict


# syslog priorities, which journald reads from a `<N>` at the start of each line it is given.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalPriorityFormatter(logging.Formatter):
    """Prefix every line of a record with its syslog priority, so `journalctl -p` can filter."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(
            record.levelno, 6 if record.levelno < logging.WARNING else 3
        )
        prefix = f"<{priority}>"
        return "\n".join(prefix + line for line in self._inner.format(record).split("\n"))


def _stderr_is_journal() -> bool:
    """True when stderr is the journald stream systemd connected (JOURNAL_STREAM names it).

    A process whose stderr was redirected elsewhere inherits the variable, so the device and
    inode must match, as systemd's documentation asks.
    """
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # a stream without a file descriptor
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Set up structlog and the stdlib root logger once for the process."""
    global _listener  # one listener per process
    stop_logging()
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name]
    renderer: Any
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _merge_record_context,
            *shared,
            _record_timestamp,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if not use_console else _identity,
            renderer,
        ],
    )
    output = logging.StreamHandler(sys.stderr)
    output.setFormatter(_JournalPriorityFormatter(formatter) if _stderr_is_journal() else formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, output, respect_handler_level=False)
    _listener.start()

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PassThroughQueueHandler(records))
    root.setLevel(level.upper())
    # aiohttp's access log is noise on a busy printer host; errors still come through.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            RepeatedEvents(),
            timestamper,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks are taken here, in the thread that caught the exception: the writer
            # thread has no exception to look at.
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def stop_logging() -> None:
    """Flush and stop the writer thread (at exit, and before reconfiguring)."""
    global _listener  # one listener per process
    if _listener is not None:
        _listener.stop()
        _listener = None


def _identity(_logger: Any, _name: str, event_dict: Any) -> Any:
    return event_dict
