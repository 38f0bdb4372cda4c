"""The daemon's services in start order, stopped in reverse, each stop guarded and within a budget.

`STOP_BUDGETS_S` is the one table of stop budgets. Its order is the start order of the services:
the core (`agent/app.py`, `core_services`) and, last, the HTTP server, which aiohttp's runner
starts after the core and stops first (`agent/daemon.py`). A test keeps the table, the core's
list and the daemon's overall stop budget in agreement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import structlog

log = structlog.get_logger(__name__)

# Seconds each service may take to stop, in start order (stop goes from the bottom up).
STOP_BUDGETS_S: Final[Mapping[str, float]] = MappingProxyType(
    {
        "monitor": 0.1,  # the event loop lag measurement is cancelled
        "store": 2.0,  # the last commit and the connections close
        "render": 0.1,  # the render thread stops taking work; a render in progress is not awaited
        "events": 0.5,  # async event handlers finish what is queued
        "registry": 3.0,  # drivers release printers, concurrently (a transport closes within 2 s)
        "jobs": 10.5,  # a job being sent finishes its label (8 s), then the workers end (2 s)
        "poller": 2.0,  # poll loops are cancelled
        "central": 0.3,  # the link's task is cancelled (undelivered reports stay in the outbox)
        "http": 5.0,  # stop listening; open requests finish
    }
)
# A service that bounds its own wait gets this share of its budget, so that it ends first and
# says itself what did not stop.
OWN_WAIT_SHARE = 0.9


def own_wait_s(name: str) -> float:
    """How long a service that bounds its own wait should wait at stop."""
    return STOP_BUDGETS_S[name] * OWN_WAIT_SHARE


@dataclass(frozen=True, slots=True)
class Service:
    """One service: how it starts (if it needs to) and how it stops (if it needs to)."""

    name: str
    start: Callable[[], Awaitable[object]] | None = None
    stop: Callable[[], Awaitable[object]] | None = None


class Services:
    """Start services in order; stop the started ones in reverse, each guarded and bounded."""

    def __init__(self, services: Sequence[Service]) -> None:
        for service in services:
            if service.stop is not None and service.name not in STOP_BUDGETS_S:
                raise ValueError(f"service {service.name!r} has no stop budget in STOP_BUDGETS_S")
        self.services = tuple(services)
        self._started: list[Service] = []

    async def start(self) -> None:
        """Start each service in order.

        If one fails, or start-up is cancelled (a signal), the services begun so far are stopped
        (the interrupted one too: a stop copes with a partial start) before the error goes on.
        """
        for service in self.services:
            self._started.append(service)
            try:
                if service.start is not None:
                    began = time.monotonic()
                    await service.start()
                    log.debug(
                        "service_started",
                        service=service.name,
                        seconds=round(time.monotonic() - began, 3),
                    )
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop the started services in reverse order; one failing or slow does not stop the rest."""
        while self._started:
            service = self._started.pop()
            if service.stop is not None:
                await _stop(service.name, service.stop)


async def _stop(name: str, stop: Callable[[], Awaitable[object]]) -> None:
    budget = STOP_BUDGETS_S[name]
    try:
        async with asyncio.timeout(budget):
            await stop()
    except TimeoutError:
        log.error("service_stop_timed_out", service=name, budget_s=budget)  # noqa: TRY400 - no traceback worth showing
    except Exception:  # one failing close must not keep the rest open
        log.exception("service_stop_failed", service=name)
    else:
        log.debug("service_stopped", service=name)
