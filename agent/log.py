"""Logging: structlog for our code, stdlib loggers (aiohttp, asyncio) routed through the same renderer.

Records are handed to a queue and rendered and written by a listener thread, so a slow journald or
terminal never stalls the event loop.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json"]

_listener: logging.handlers.QueueListener | None = None


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Queue the record as it is: structlog's event dict must reach the formatter intact."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Set up structlog and the stdlib root logger once for the process."""
    global _listener  # noqa: PLW0603 - one listener per process
    stop_logging()
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Any
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if not use_console else _identity,
            renderer,
        ],
    )
    output = logging.StreamHandler(sys.stderr)
    output.setFormatter(formatter)
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
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def stop_logging() -> None:
    """Flush and stop the writer thread (at exit, and before reconfiguring)."""
    global _listener  # noqa: PLW0603 - one listener per process
    if _listener is not None:
        _listener.stop()
        _listener = None


def _identity(_logger: Any, _name: str, event_dict: Any) -> Any:
    return event_dict
