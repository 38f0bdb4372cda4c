"""A machine at run time: its stored configuration plus the state the driver reports."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from agent.events import EventHub, MachineStatusChanged
from agent.machine_types import MachineType
from agent.setting_values import native_value
from drivers.base import (
    BaseDriver,
    ConfigType,
    MachineProperty,
    MachineSnapshot,
    MachineStatus,
    SettingDef,
    SettingValue,
)
from drivers.media import Media

log = structlog.get_logger(__name__)

# Where an error came from decides what clears it: a successful initialisation clears "init"
# errors, a successful poll clears "runtime" errors, a restart clears all of them.
ErrorOrigin = Literal["load", "init", "runtime"]


@dataclass(slots=True)
class StoredSetting:
    pk: int
    value: str


@dataclass(slots=True)
class MachineError:
    origin: ErrorOrigin
    message: str


@dataclass(eq=False)
class Machine:
    """One configured machine. `machine_type` is None when its type is unknown (not registered)."""

    pk: str
    name: str
    machine_type_slug: str
    driver_slug: str
    active: bool
    machine_type: type[MachineType] | None = None
    driver: BaseDriver | None = None
    settings: dict[tuple[ConfigType, str], StoredSetting] = field(default_factory=dict)
    initialized: bool = False
    restart_required: bool = False
    errors: list[MachineError] = field(default_factory=list)
    status: MachineStatus | None = None
    status_text: str = ""
    properties: tuple[MachineProperty, ...] = ()
    status_read_at: dt.datetime | None = None
    # The media the driver last reported loaded (kept in memory only: a printer is read again
    # after a restart anyway).
    media: Media | None = None
    # The API's rendering of `properties` and `status_read_at`, kept until they change (they are
    # read on every listing and written only by polls).
    _json_cache: tuple[object, object, list[dict[str, Any]], str | None] | None = field(
        default=None, repr=False
    )
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held while talking to the printer (a print or a status poll), so the two never interleave.
    io_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state_changed: bool = False
    # Where a change of status is published (the registry's hub); None in isolated tests.
    events: EventHub | None = field(default=None, repr=False)
    # Typed setting values by (scope, key), with the raw string and definition they came from:
    # drivers read settings on every poll and label, and parsing them is most of a poll's cost.
    _typed_cache: dict[tuple[ConfigType, str], tuple[str | None, SettingDef, SettingValue]] = field(
        default_factory=dict, repr=False
    )

    @property
    def registered(self) -> bool:
        """The machine type is known, so the machine has a runtime instance."""
        return self.machine_type is not None

    @property
    def machine_settings(self) -> Mapping[str, SettingDef]:
        """Definitions of the machine-type (`M`) settings."""
        return self.machine_type.MACHINE_SETTINGS if self.machine_type is not None else {}

    @property
    def driver_settings(self) -> Mapping[str, SettingDef]:
        """Definitions of the driver (`D`) settings; none without a driver."""
        return self.driver.MACHINE_SETTINGS if self.driver is not None else {}

    def definitions(self, config_type: ConfigType) -> Mapping[str, SettingDef]:
        """The setting definitions of one scope."""
        return self.machine_settings if config_type == "M" else self.driver_settings

    def raw_setting(self, key: str, config_type: ConfigType) -> str | None:
        """The stored string, or None when the setting was never saved."""
        stored = self.settings.get((config_type, key))
        return stored.value if stored is not None else None

    def get_setting(self, key: str, config_type: ConfigType) -> SettingValue:
        """The typed value of a setting, or its default."""
        definition = self.definitions(config_type).get(key, {})
        raw = self.raw_setting(key, config_type)
        cached = self._typed_cache.get((config_type, key))
        if cached is not None and cached[0] == raw and cached[1] is definition:
            return cached[2]
        value = native_value(definition, raw)
        self._typed_cache[(config_type, key)] = (raw, definition, value)
        return value

    def snapshot(self) -> MachineSnapshot:
        """The configuration as it is now, for `update_machine(old_state, ...)`."""
        return MachineSnapshot(
            name=self.name,
            active=self.active,
            settings={scope_key: stored.value for scope_key, stored in self.settings.items()},
        )

    # what drivers report

    def set_status(self, status: MachineStatus) -> None:
        """Set the status code (a member of the type's status enum); a change is published."""
        old = self.status
        self.status = status
        self.status_read_at = dt.datetime.now(dt.UTC)
        if status != old:
            self.state_changed = True
            if self.events is not None:
                self.events.publish(MachineStatusChanged(self, old, status))

    def set_status_text(self, text: str) -> None:
        """Set the free-text status shown beside the code."""
        if text != self.status_text:
            self.state_changed = True
        self.status_text = text

    def set_properties(self, properties: Sequence[MachineProperty]) -> None:
        """Replace the read-only properties (model, firmware, counters...)."""
        new = tuple(properties)
        if new != self.properties:
            self.state_changed = True
        self.properties = new

    def set_media(self, media: Media | None) -> None:
        """Record the media the printer reports loaded (None: not known)."""
        self.media = media

    def handle_error(self, error: Exception | str) -> None:
        """Record a run-time error reported by the driver."""
        self.add_error("runtime", error)

    # bookkeeping used by the registry

    def add_error(self, origin: ErrorOrigin, error: Exception | str) -> None:
        """Record an error of the given origin."""
        message = str(error) or type(error).__name__
        self.errors.append(MachineError(origin, message))
        log.warning("machine_error", machine=self.name, origin=origin, error=message)

    def clear_errors(self, origin: ErrorOrigin | None = None) -> None:
        """Forget errors of one origin, or all."""
        if self.errors:
            self.errors = [e for e in self.errors if origin is not None and e.origin != origin]

    def state_json(self) -> tuple[list[dict[str, Any]], str | None]:
        """`properties` as JSON data and `status_read_at` as ISO text, rendered once per change."""
        cache = self._json_cache
        if cache is None or cache[0] is not self.properties or cache[1] is not self.status_read_at:
            read_at = self.status_read_at.isoformat() if self.status_read_at is not None else None
            cache = (
                self.properties,
                self.status_read_at,
                [prop.as_json() for prop in self.properties],
                read_at,
            )
            self._json_cache = cache
        return cache[2], cache[3]

    @property
    def error_messages(self) -> list[str]:
        """The errors as the API shows them."""
        return [error.message for error in self.errors]
