"""SIGHUP: read the configuration again and apply what can change while running.

Applied: the log level, the `[[machines]]` entries (new machines are created and started, changed
settings applied) and the `[health]` thresholds. Other sections (listen address, data directory,
central link, metrics...) take effect at the next start; the log line says which changed. A file
that does not load or validate is refused with one log line and the running configuration stays.
Jobs, connections and machines that did not change are not touched.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import structlog
from aiohttp import web

from agent.appkeys import HEALTH, REGISTRY
from agent.config import ConfigError, Settings, load_settings
from agent.registry import ConfigMachineError
from agent.storage.errors import StoreError

log = structlog.get_logger(__name__)

# Sections applied at the next start only.
RESTART_SECTIONS = ("http", "storage", "auth", "instance", "jobs", "central", "metrics")


class Reloader:
    """Reloads on request, one reload at a time; requests during a reload are merged into one."""

    def __init__(
        self,
        app: web.Application,
        path: Path | None,
        settings: Settings,
        *,
        wanted: asyncio.Event | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.started_with = settings
        self.level = settings.log.level
        # Set by the SIGHUP handler, possibly before the daemon was ready.
        self.wanted = wanted if wanted is not None else asyncio.Event()

    def request(self) -> None:
        """Ask for a reload (the signal handler: quick, no I/O)."""
        self.wanted.set()

    async def run_forever(self) -> None:
        """Reload each time one was asked for (an owned task of the daemon)."""
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Read and apply the configuration; False (and nothing changed) when it is refused."""
        registry = self.app[REGISTRY]
        try:
            new = await asyncio.to_thread(load_settings, self.path)
            added, changed = await registry.reload_config(new.machines)
        except (ConfigError, ConfigMachineError, StoreError) as err:
            log.error(  # noqa: TRY400 - the reason says it all
                "config_reload_refused", reason=str(err), effect="the running configuration is kept"
            )
            return False
        if new.log.level != self.level:
            logging.getLogger().setLevel(new.log.level.upper())
            self.level = new.log.level
        self.app[HEALTH].config = new.health
        restart = [
            section
            for section in RESTART_SECTIONS
            if getattr(new, section) != getattr(self.started_with, section)
        ]
        if new.log.format != self.started_with.log.format:
            restart.append("log.format")
        (log.warning if restart else log.info)(
            "config_reloaded",
            log_level=self.level,
            machines_added=added,
            machines_changed=changed,
            restart_needed_for=restart,
        )
        return True
