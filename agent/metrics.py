"""Prometheus metrics of one daemon, in a registry of their own (not the library's global one).

Counters follow the event hub and the HTTP middleware as things happen; the state of the machines,
queues and event loop is read when Prometheus scrapes (a collector), so nothing polls for them.
Label values are bounded: routes are the templates the router matched (never raw paths), methods a
fixed set, machines the configured ones.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.appkeys import METRICS
from agent.events import EventHub, JobChanged
from agent.health import machine_state
from agent.job_status import FINISHED, JobStatus

if TYPE_CHECKING:
    from agent.jobs import JobRunner
    from agent.loop_lag import LoopLag
    from agent.registry import Registry

PREFIX = "inventree_edge"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: an API answer takes milliseconds; a print submission with a large PDF may take seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    """The daemon's metrics; `collectors` is what `/metrics` renders."""

    def __init__(self, registry: Registry, jobs: JobRunner, lag: LoopLag, events: EventHub) -> None:
        self.collectors = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.collectors,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.collectors,
        )
        self.jobs_finished = Counter(
            f"{PREFIX}_jobs_finished",
            "Print jobs that ended, by outcome (complete, failed, cancelled).",
            ["outcome"],
            registry=self.collectors,
        )
        for outcome in sorted(FINISHED):
            self.jobs_finished.labels(outcome.value)
        self.labels_printed = Counter(
            f"{PREFIX}_labels_printed",
            "Labels printed (counted when their job ends, whatever its outcome).",
            registry=self.collectors,
        )
        self.collectors.register(_StateCollector(registry, jobs, lag))
        self._job_store = jobs.jobs
        events.subscribe(JobChanged, self._job_changed)
        events.subscribe_async(JobChanged, self._count_labels)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        method = method if method in _METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def _job_changed(self, event: JobChanged) -> None:
        if event.new in FINISHED:
            self.jobs_finished.labels(JobStatus(event.new).value).inc()

    async def _count_labels(self, event: JobChanged) -> None:
        if event.new not in FINISHED:
            return
        row = await self._job_store.get(event.job)
        if row is not None and row.progress > 0:
            self.labels_printed.inc(row.progress)


def route_template(request: web.Request) -> str:
    """The route the request matched, as its template (`/api/machine/{pk}/`)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each request by route, method and status, and time it (outermost middleware)."""
    began = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as err:
        status = err.status
        raise
    finally:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.observe(
                route_template(request), request.method, status, time.monotonic() - began
            )


class _StateCollector(Collector):
    """The state of machines, queues and the event loop, read at each scrape."""

    def __init__(self, registry: Registry, jobs: JobRunner, lag: LoopLag) -> None:
        self.registry = registry
        self.jobs = jobs
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        """One sample per machine and figure."""
        status = GaugeMetricFamily(
            f"{PREFIX}_machine_status",
            "Each machine's status code (InvenTree's: 1xx fine, 2xx warning, 3xx printer "
            "problem, 4xx disconnected, 5xx error; 0 not read yet or inactive); `state` names it.",
            labels=["machine", "driver", "state"],
        )
        by_state = GaugeMetricFamily(f"{PREFIX}_machines", "Machines by state.", labels=["state"])
        counts: dict[str, int] = {}
        for machine in self.registry.machines.values():
            state = machine_state(machine)
            counts[state] = counts.get(state, 0) + 1
            code = int(machine.status) if machine.active and machine.status is not None else 0
            status.add_metric([machine.name, machine.driver_slug, state], code)
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Print jobs waiting or printing, per machine.",
            labels=["machine"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_job_age_seconds",
            "Age of the oldest job waiting or printing, per machine (0 when none).",
            labels=["machine"],
        )
        now = time.time()
        queues = self.jobs.queues()
        for machine in self.registry.machines.values():
            count, created = queues.get(machine.pk, (0, None))
            depth.add_metric([machine.name], count)
            age = 0.0
            if created is not None:
                age = max(now - datetime.fromisoformat(created).timestamp(), 0.0)
            oldest.add_metric([machine.name], age)
        lag = GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop woke a timer, last measurement.",
        )
        lag.add_metric([], self.lag.last)
        worst = GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_worst_seconds",
            "The worst event loop lag within the last minute.",
        )
        worst.add_metric([], self.lag.worst)
        errors = GaugeMetricFamily(
            f"{PREFIX}_registry_errors", "Drivers or machine types that could not be loaded."
        )
        errors.add_metric([], len(self.registry.registry_errors))
        yield from (status, by_state, depth, oldest, lag, worst, errors)
