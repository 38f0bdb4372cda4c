"""Rate limits for log events that can repeat without end (a flood of bad connections, fd exhaustion).

The same event is logged at most `times` times per `interval_s`; the next one logged after a
quiet spell carries how many were suppressed in between.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict

# Distinct events remembered; the least recently seen is forgotten first.
MAX_KEYS = 1024


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


class RepeatLimiter:
    """Decides, per event key, whether this occurrence is logged."""

    def __init__(
        self,
        times: int = 5,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.times = times
        self.interval_s = interval_s
        self._clock = clock
        self._windows: OrderedDict[Hashable, _Window] = OrderedDict()

    def check(self, key: Hashable) -> dict[str, int] | None:
        """None to suppress this occurrence; else fields to log with it (`suppressed` if any)."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
            while len(self._windows) > MAX_KEYS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        if now - window.started >= self.interval_s:
            window.started, window.logged = now, 0
        if window.logged >= self.times:
            window.suppressed += 1
            return None
        window.logged += 1
        fields: dict[str, int] = {}
        if window.suppressed:
            fields["suppressed"] = window.suppressed
            window.suppressed = 0
        return fields


class RepeatFilter(logging.Filter):
    """A stdlib logging filter: the same message from the same logger, rate-limited."""

    def __init__(self, limiter: RepeatLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RepeatLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass the record, noting suppressed repeats, or drop it."""
        exc_type = record.exc_info[0] if record.exc_info else None
        fields = self.limiter.check((record.name, record.levelno, str(record.msg), exc_type))
        if fields is None:
            return False
        if fields:
            record.msg = (
                f"{record.getMessage()} ({fields['suppressed']} similar messages suppressed)"
            )
            record.args = None
        return True


# Fields that tell one repeated event from another (a different machine's error is news).
_EVENT_KEY_FIELDS = ("machine", "error", "reason", "path")


class RepeatedEvents:
    """A structlog processor: a warning or error repeated with the same key is rate-limited.

    Raises structlog's DropEvent for a suppressed one; the next one logged carries `suppressed`.
    One instance per logging configuration.
    """

    def __init__(self, limiter: RepeatLimiter | None = None) -> None:
        self.limiter = limiter or RepeatLimiter()

    def __call__(self, _logger: Any, method: str, event_dict: EventDict) -> EventDict:
        """Pass, annotate or drop one event."""
        if method not in ("warning", "warn", "error", "exception", "critical"):
            return event_dict
        key = (
            method,
            event_dict.get("logger") or "",
            str(event_dict.get("event")),
            *(str(event_dict.get(name, "")) for name in _EVENT_KEY_FIELDS),
        )
        fields = self.limiter.check(key)
        if fields is None:
            raise structlog.DropEvent
        event_dict.update(fields)
        return event_dict


# Loggers of the libraries under the HTTP server, which log per connection or per failure.
NOISY_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access")


LIBRARY_FILTER = RepeatFilter()


class MalformedRequestFilter(logging.Filter):
    """A request aiohttp cannot parse is logged as one info line naming the problem's kind.

    aiohttp logs it as a server error with a traceback, but it is the client's error (it got
    400); its message is left out because it quotes the request's bytes (an over-long
    `Authorization` header, say).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a record about an unparsable request; pass every record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "malformed HTTP request answered %s (%s)"
            record.args = (error.code, type(error).__name__)
            record.exc_info = record.exc_text = None
        return True


MALFORMED_REQUEST_FILTER = MalformedRequestFilter()


def limit_library_logs() -> None:
    """Attach the repeat filter to the libraries' loggers (once, however often called)."""
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUEST_FILTER)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(LIBRARY_FILTER)
