"""Whether the agent is healthy, and the figures an administrator looks at (`/api/agent/health/`).

`degraded` means the agent itself needs attention, not a printer: a printer that is off or out of
labels is the printer's status (machines, metrics), and the agent is fine. The agent is degraded
when any of these holds (docs/monitoring.md):

- storage: the database's last write failed, or a read does not answer;
- disk: the data directory has less free space than `[health] min_free_mib`;
- loop lag: the event loop was late by more than `[health] max_loop_lag_s` within the last minute;
- registry: a driver or machine type could not be loaded (the registry reports errors);
- central: the link to the central InvenTree server is configured but not connected
  (unreachable, or its token, group or protocol refused).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.storage.errors import StoreError

if TYPE_CHECKING:
    from pathlib import Path

    from agent.central.link import CentralLink
    from agent.config import HealthConfig
    from agent.jobs import JobRunner
    from agent.loop_lag import LoopLag
    from agent.machine import Machine
    from agent.registry import Registry
    from agent.storage.database import Database

# A health check answers quickly or says why not: a storage or disk call slower than this counts
# as failing.
CHECK_TIMEOUT_S = 2.0
# Central link states in which the link is not doing its job (`connecting` is the start).
CENTRAL_PROBLEM_STATES = frozenset(
    {"unreachable", "unauthorized", "forbidden", "protocol_mismatch"}
)


def machine_state(machine: Machine) -> str:
    """One word for a machine's state: `inactive`, `unknown` (not read yet) or its status name."""
    if not machine.active:
        return "inactive"
    if machine.status is None:
        return "unknown"
    return machine.status.name.lower()


@dataclass(slots=True)
class Health:
    """The checks' outcome: `problems` are sentences; none means ok."""

    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """`ok` or `degraded`."""
        return "degraded" if self.problems else "ok"


class HealthCheck:
    """Runs the checks on the daemon's parts."""

    def __init__(
        self,
        config: HealthConfig,
        data_dir: Path,
        database: Database,
        registry: Registry,
        jobs: JobRunner,
        lag: LoopLag,
        central: CentralLink,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.database = database
        self.registry = registry
        self.jobs = jobs
        self.lag = lag
        self.central = central
        self.started = time.monotonic()
        self.started_at = dt.datetime.now(dt.UTC)

    async def check(self) -> Health:
        """Every check, with the figures they are based on."""
        health = Health()
        await self._storage(health)
        await self._disk(health)
        self._loop(health)
        self._registry(health)
        await self._central(health)
        health.details.update(
            version=__version__,
            started=self.started_at.isoformat(),
            uptime_s=round(time.monotonic() - self.started, 1),
            machines=self._machines_by_state(),
            queues=self._queues(),
        )
        return health

    async def _storage(self, health: Health) -> None:
        fault = self.database.fault
        if fault is not None:
            health.problems.append(f"storage: the last database write failed: {fault}")
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await self.database.read(_select_one)
        except (StoreError, TimeoutError) as err:
            health.problems.append(f"storage: the database does not answer a read: {err}")
        health.details["storage"] = {
            "ok": not any(p.startswith("storage") for p in health.problems)
        }

    async def _disk(self, health: Health) -> None:
        minimum = self.config.min_free_mib * 1024 * 1024
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                usage = await asyncio.to_thread(shutil.disk_usage, self.data_dir)
        except (OSError, TimeoutError) as err:
            health.problems.append(f"disk: cannot read the free space of {self.data_dir}: {err}")
            health.details["disk"] = {"path": str(self.data_dir)}
            return
        health.details["disk"] = {
            "path": str(self.data_dir),
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "min_free_bytes": minimum,
        }
        if usage.free < minimum:
            health.problems.append(
                f"disk: {usage.free // (1024 * 1024)} MiB free in {self.data_dir}, "
                f"less than [health] min_free_mib = {self.config.min_free_mib}"
            )

    def _loop(self, health: Health) -> None:
        worst = self.lag.worst
        health.details["event_loop_lag_s"] = {
            "last": round(self.lag.last, 4),
            "worst_last_minute": round(worst, 4),
            "limit": self.config.max_loop_lag_s,
        }
        if worst > self.config.max_loop_lag_s:
            health.problems.append(
                f"loop lag: the event loop was {worst:.2f} s late within the last minute "
                f"(limit [health] max_loop_lag_s = {self.config.max_loop_lag_s:g})"
            )

    def _registry(self, health: Health) -> None:
        errors = list(self.registry.registry_errors)
        health.details["registry_errors"] = errors
        if errors:
            health.problems.append(f"registry: {len(errors)} error(s): {errors[0]}")

    async def _central(self, health: Health) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                central = await self.central.describe()
        except (StoreError, TimeoutError) as err:
            # The outbox is in the database: the storage check names the fault already.
            health.details["central"] = None
            if self.central.enabled:
                health.problems.append(f"central: the link's state cannot be read: {err}")
            return
        health.details["central"] = central
        if central["enabled"] and central["state"] in CENTRAL_PROBLEM_STATES:
            health.problems.append(
                f"central: the link is {central['state']}: {central.get('last_error', '')}"
            )

    def _machines_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for machine in self.registry.machines.values():
            state = machine_state(machine)
            counts[state] = counts.get(state, 0) + 1
        return dict(sorted(counts.items()))

    def _queues(self) -> list[dict[str, Any]]:
        queues = []
        for pk, (depth, oldest) in sorted(self.jobs.queues().items()):
            if not depth:
                continue
            machine = self.registry.get(pk)
            queues.append(
                {
                    "machine": pk,
                    "machine_name": machine.name if machine is not None else "",
                    "depth": depth,
                    "oldest_queued": oldest,
                }
            )
        return queues


def _select_one(conn: sqlite3.Connection) -> object:
    return conn.execute("SELECT 1").fetchone()
