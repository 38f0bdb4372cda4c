"""The machine registry: InvenTree's lifecycle rules over the stored machines and loaded drivers.

Every driver hook runs under a timeout and inside error containment: whatever a driver does, the
machine shows it (errors, status) and the daemon carries on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.events import EventHub, MachineAdded, MachineChange, MachineChanged, MachineRemoved
from agent.machine import ErrorOrigin, Machine, StoredSetting
from agent.setting_values import clean_value, missing_required
from agent.storage.errors import DuplicateMachineName
from agent.storage.machines import MachineRow, MachineStore, StateRow
from drivers.base import ConfigType, DriverContext, MachineProperty, MachineSnapshot, SettingDef

if TYPE_CHECKING:
    from agent.config import MachineEntry
    from agent.discovery import Discovered, Provider
    from agent.machine_types import MachineType
    from drivers.base import BaseDriver

log = structlog.get_logger(__name__)

# A driver hook that takes longer is abandoned and recorded as an error; drivers connect to
# hardware in the background, so a healthy hook returns in milliseconds.
HOOK_TIMEOUT_S = 10.0
# An initialisation slower than this is logged, so a slow driver is visible at start.
SLOW_INIT_WARNING_S = 2.0


class DuplicateName(Exception):
    """Another machine already has this name."""


class ConfigMachineError(Exception):
    """A `[[machines]]` entry in the configuration cannot be applied."""


class Registry:
    """Machine types, one driver instance per slug, and every configured machine.

    What happens to machines is published on `events` (added, removed, changed, status).
    """

    def __init__(
        self,
        store: MachineStore,
        discovered: Discovered,
        data_dir: Path,
        events: EventHub | None = None,
    ) -> None:
        self.store = store
        self.events = events if events is not None else EventHub()
        self.data_dir = data_dir
        self.machine_types: dict[str, type[MachineType]] = dict(
            sorted(discovered.machine_types.items())
        )
        self.driver_classes: dict[str, type[BaseDriver]] = dict(sorted(discovered.drivers.items()))
        self.providers: dict[str, Provider] = discovered.providers
        self.registry_errors: list[str] = list(discovered.errors)
        self.drivers: dict[str, BaseDriver] = {}
        self.machines: dict[str, Machine] = {}
        # Bumped whenever a machine is added or removed or its name or `active` changes: what a
        # listing's order depends on (the API keeps sorted orders until this moves).
        self.listing_version = 0

    # start and stop

    async def load(self) -> None:
        """Create driver instances and runtime machines from the store; no hooks run yet."""
        for slug, driver_cls in self.driver_classes.items():
            try:
                driver = driver_cls(DriverContext(state_dir=self.data_dir / slug))
            except Exception as err:  # noqa: BLE001 - a broken driver degrades, never crashes
                self.registry_errors.append(f"Driver '{slug}' could not be created: {err}")
                continue
            self.drivers[slug] = driver
        rows, settings, states = await self.store.load_machines()
        for row in rows:
            self._attach(row)
        for setting in settings:
            machine = self.machines.get(setting.machine)
            if machine is not None and setting.config_type in ("M", "D"):
                scope: ConfigType = "M" if setting.config_type == "M" else "D"
                machine.settings[(scope, setting.key)] = StoredSetting(setting.pk, setting.value)
        for state in states:
            machine = self.machines.get(state.machine)
            if machine is not None and machine.machine_type is not None:
                _restore_state(machine, state)

    async def start(self) -> None:
        """Run `init_driver` on every driver, then initialise every active machine concurrently."""
        for driver in self.drivers.values():
            await self._run_hook(None, "init_driver", driver.init_driver(), driver=driver)
        active = [m for m in self.machines.values() if m.active]
        await asyncio.gather(*(self._initialize_locked(m, persist=False) for m in active))
        # One commit for every machine's first status, not one fsync each.
        await self.store.save_states([row for m in active if (row := _take_state(m)) is not None])

    async def close(self) -> None:
        """Release every initialised machine's resources."""
        for machine in self.machines.values():
            if machine.initialized:
                self.events.publish(MachineChanged(machine, MachineChange.STOPPED))
        await asyncio.gather(
            *(self._close_machine(m) for m in self.machines.values() if m.initialized)
        )

    # queries

    def get(self, pk: str) -> Machine | None:
        """A machine by its canonical pk."""
        return self.machines.get(pk)

    def name_taken(self, name: str, exclude: str | None = None) -> bool:
        """Some other machine has exactly this name."""
        return any(m.name == name and m.pk != exclude for m in self.machines.values())

    # changes, as the API and the configuration make them

    async def create(self, name: str, machine_type: str, driver: str, active: bool) -> Machine:
        """Store a new machine, register it and initialise it if active."""
        if self.name_taken(name):
            raise DuplicateName(name)
        row = MachineRow(str(uuid.uuid4()), name, machine_type, driver, active)
        try:
            await self.store.insert_machine(row)
        except DuplicateMachineName as err:
            raise DuplicateName(name) from err
        machine = self._attach(row)
        if active:
            await self._initialize_locked(machine)
        log.info("machine_created", machine=name, driver=driver, machine_type=machine_type)
        self.events.publish(MachineAdded(machine))
        return machine

    async def update(self, machine: Machine, *, name: str | None, active: bool | None) -> None:
        """Change name and/or active, then run the update hook."""
        async with machine.lock:
            new_name = machine.name if name is None else name
            new_active = machine.active if active is None else active
            if self.name_taken(new_name, exclude=machine.pk):
                raise DuplicateName(new_name)
            old_state = machine.snapshot()
            try:
                await self.store.update_machine(machine.pk, new_name, new_active)
            except DuplicateMachineName as err:
                raise DuplicateName(new_name) from err
            machine.name, machine.active = new_name, new_active
            self.listing_version += 1
            await self._after_change(machine, old_state)

    async def save_setting(
        self, machine: Machine, config_type: ConfigType, key: str, value: str
    ) -> None:
        """Store a validated setting value, then run the update hook."""
        async with machine.lock:
            old_state = machine.snapshot()
            row = await self.store.save_setting(machine.pk, config_type, key, value)
            machine.settings[(config_type, key)] = StoredSetting(row.pk, row.value)
            await self._after_change(machine, old_state)

    async def delete(self, machine: Machine) -> None:
        """Remove a machine from the registry and the store."""
        async with machine.lock:
            self.machines.pop(machine.pk, None)
            self.listing_version += 1
            self.events.publish(MachineRemoved(machine))
            if machine.initialized:
                machine.initialized = False
                await self._close_machine(machine)
            await self.store.delete_machine(machine.pk)
        log.info("machine_deleted", machine=machine.name)

    async def restart(self, machine: Machine) -> None:
        """InvenTree's restart: reset flags, errors and status, then the driver's restart hook."""
        async with machine.lock:
            if machine.driver is None or machine.machine_type is None:
                return
            machine.restart_required = False
            machine.clear_errors()
            machine.set_status(machine.machine_type.default_machine_status)
            machine.set_status_text("")
            await self._run_hook(
                machine, "restart_machine", machine.driver.restart_machine(machine)
            )
            await self._persist_state(machine)
        self.events.publish(MachineChanged(machine, MachineChange.RESTARTED))

    async def apply_config(self, entries: Iterable[MachineEntry]) -> None:
        """Create the configured machines that are missing and apply their settings.

        Everything is validated first and written in one transaction: a bad entry changes nothing.
        """
        by_name = {m.name: m for m in self.machines.values()}
        new_rows: list[MachineRow] = []
        changes: list[tuple[str, ConfigType, str, str]] = []
        for entry in entries:
            machine = by_name.get(entry.name)
            if machine is None:
                row = MachineRow(
                    str(uuid.uuid4()), entry.name, entry.machine_type, entry.driver, entry.active
                )
                new_rows.append(row)
                pk, type_slug, driver_slug = row.pk, row.machine_type, row.driver
            else:
                pk, type_slug, driver_slug = (
                    machine.pk,
                    machine.machine_type_slug,
                    machine.driver_slug,
                )
                if (type_slug, driver_slug) != (entry.machine_type, entry.driver):
                    log.warning(
                        "config_machine_type_or_driver_ignored",
                        machine=entry.name,
                        stored=f"{type_slug}/{driver_slug}",
                        configured=f"{entry.machine_type}/{entry.driver}",
                    )
            scopes: tuple[tuple[ConfigType, dict[str, str | int | float | bool]], ...] = (
                ("M", entry.machine_settings),
                ("D", entry.driver_settings),
            )
            for config_type, values in scopes:
                definitions = self._definitions(type_slug, driver_slug, config_type)
                for key, value in values.items():
                    text = _config_setting_text(
                        entry.name, definitions, config_type, key.upper(), value
                    )
                    if machine is None or machine.raw_setting(key.upper(), config_type) != text:
                        changes.append((pk, config_type, key.upper(), text))
        if not new_rows and not changes:
            return
        stored = await self.store.apply_machine_config(new_rows, changes)
        added = [self._attach(row) for row in new_rows]
        for machine in added:
            log.info(
                "machine_created_from_config", machine=machine.name, driver=machine.driver_slug
            )
        for setting in stored:
            scope: ConfigType = "M" if setting.config_type == "M" else "D"
            self.machines[setting.machine].settings[(scope, setting.key)] = StoredSetting(
                setting.pk, setting.value
            )
        for machine in added:
            self.events.publish(MachineAdded(machine))

    async def reload_config(self, entries: Iterable[MachineEntry]) -> tuple[list[str], list[str]]:
        """`apply_config` while running (SIGHUP): names of the machines added and changed.

        New active machines are initialised; machines whose settings changed get the driver's
        update hook, as a change through the API does. Machines left out are kept, as at start.
        """
        before = {pk: machine.snapshot() for pk, machine in self.machines.items()}
        await self.apply_config(entries)
        added = [m for pk, m in self.machines.items() if pk not in before]
        for machine in added:
            if machine.active:
                await self._initialize_locked(machine)
        changed = [
            m
            for pk, old in before.items()
            if (m := self.machines.get(pk)) is not None and m.snapshot() != old
        ]
        for machine in changed:
            async with machine.lock:
                await self._after_change(machine, before[machine.pk])
        return [m.name for m in added], [m.name for m in changed]

    # internals

    def _attach(self, row: MachineRow) -> Machine:
        machine = Machine(
            pk=row.pk,
            name=row.name,
            machine_type_slug=row.machine_type,
            driver_slug=row.driver,
            active=row.active,
            events=self.events,
        )
        self.machines[row.pk] = machine
        self.listing_version += 1
        machine_type = self.machine_types.get(row.machine_type)
        if machine_type is None:
            self.registry_errors.append(f"Machine type '{row.machine_type}' not found")
            return machine
        machine.machine_type = machine_type
        machine.status = machine_type.default_machine_status
        driver = self.drivers.get(row.driver)
        if driver is None:
            machine.add_error("load", f"Driver '{row.driver}' not found")
            return machine
        machine.driver = driver
        if not isinstance(driver, machine_type.base_driver):
            machine.add_error(
                "load", f"'{driver.NAME}' is incompatible with machine type '{machine_type.NAME}'"
            )
        return machine

    def _definitions(
        self, type_slug: str, driver_slug: str, config_type: ConfigType
    ) -> Mapping[str, SettingDef] | None:
        """The settings a machine of this type and driver has in one scope; None if unknown."""
        if config_type == "M":
            machine_type = self.machine_types.get(type_slug)
            return machine_type.MACHINE_SETTINGS if machine_type is not None else None
        driver = self.drivers.get(driver_slug)
        return driver.MACHINE_SETTINGS if driver is not None else None

    async def _after_change(self, machine: Machine, old_state: MachineSnapshot) -> None:
        """InvenTree's `machine.update()`: update hook, then (re)initialise or mark uninitialised."""
        if machine.driver is None:
            return
        await self._run_hook(
            machine, "update_machine", machine.driver.update_machine(old_state, machine)
        )
        if machine.active and not machine.initialized:
            await self._initialize(machine)
        elif not machine.active and machine.initialized:
            machine.initialized = False
            self.events.publish(MachineChanged(machine, MachineChange.STOPPED))
            await self._close_machine(machine)
        await self._persist_state(machine)
        self.events.publish(MachineChanged(machine, MachineChange.UPDATED))

    async def _initialize_locked(self, machine: Machine, *, persist: bool = True) -> None:
        async with machine.lock:
            started = time.monotonic()
            await self._initialize(machine)
            elapsed = time.monotonic() - started
            if elapsed > SLOW_INIT_WARNING_S:
                log.warning("machine_init_slow", machine=machine.name, seconds=round(elapsed, 2))
            if persist:
                await self._persist_state(machine)

    async def _initialize(self, machine: Machine) -> None:
        if machine.driver is None:
            return
        scopes: tuple[tuple[str, ConfigType], ...] = (("MACHINE", "M"), ("DRIVER", "D"))
        missing = {
            scope: missing_required(
                machine.definitions(config_type),
                {key: s.value for (ct, key), s in machine.settings.items() if ct == config_type},
            )
            for scope, config_type in scopes
        }
        if any(missing.values()):
            parts = [
                f"{scope} settings: {', '.join(keys)}" for scope, keys in missing.items() if keys
            ]
            machine.add_error("init", f"Missing {' and '.join(parts)}")
            return
        if await self._run_hook(
            machine, "init_machine", machine.driver.init_machine(machine), "init"
        ):
            machine.initialized = True
            machine.clear_errors("init")
            log.info("machine_initialized", machine=machine.name, driver=machine.driver_slug)
            self.events.publish(MachineChanged(machine, MachineChange.STARTED))

    async def _close_machine(self, machine: Machine) -> None:
        if machine.driver is not None:
            await self._run_hook(machine, "close_machine", machine.driver.close_machine(machine))

    async def _run_hook(
        self,
        machine: Machine | None,
        hook: str,
        call: Awaitable[None],
        origin: ErrorOrigin = "runtime",
        driver: BaseDriver | None = None,
    ) -> bool:
        try:
            async with asyncio.timeout(HOOK_TIMEOUT_S):
                await call
        except TimeoutError:
            error: Exception | str = f"{hook} did not finish within {HOOK_TIMEOUT_S:g} s"
        except Exception as err:  # driver failures are shown, never raised
            error = err
            log.warning("driver_hook_failed", hook=hook, exc_info=err)
        else:
            return True
        if machine is not None:
            machine.add_error(origin, error)
        elif driver is not None:
            driver.handle_error(error)
        return False

    async def persist_state(self, machine: Machine) -> None:
        """Store the machine's status if it changed (last known status survives restarts)."""
        await self._persist_state(machine)

    async def _persist_state(self, machine: Machine) -> None:
        row = _take_state(machine)
        if row is not None:
            await self.store.save_states([row])


def _take_state(machine: Machine) -> StateRow | None:
    """The machine's status as a row to store, if it changed since it was last taken."""
    if not machine.state_changed or machine.status is None:
        return None
    machine.state_changed = False
    read_at = machine.status_read_at or dt.datetime.now(dt.UTC)
    return StateRow(
        machine=machine.pk,
        status=int(machine.status),
        status_text=machine.status_text,
        properties=json.dumps([p.as_json() for p in machine.properties]),
        read_at=read_at.isoformat(),
    )


def check_config_machines(discovered: Discovered, entries: Iterable[MachineEntry]) -> None:
    """Validate `[[machines]]` settings as `Registry.apply_config` will, without a database.

    Raises ConfigMachineError for the first entry `run` would refuse (`check-config` uses this).
    """
    for entry in entries:
        machine_type = discovered.machine_types.get(entry.machine_type)
        driver = discovered.drivers.get(entry.driver)
        scopes: tuple[
            tuple[ConfigType, Mapping[str, SettingDef] | None, Mapping[str, object]], ...
        ] = (
            ("M", machine_type.MACHINE_SETTINGS if machine_type else None, entry.machine_settings),
            ("D", driver.MACHINE_SETTINGS if driver else None, entry.driver_settings),
        )
        for config_type, definitions, values in scopes:
            for key, value in values.items():
                _config_setting_text(entry.name, definitions, config_type, key.upper(), value)


def _config_setting_text(
    name: str,
    definitions: Mapping[str, SettingDef] | None,
    config_type: ConfigType,
    key: str,
    value: object,
) -> str:
    """Validate one `[[machines]]` setting as the API would; unknown type or driver: as given."""
    if definitions is None:
        return str(value)
    scope = "MACHINE" if config_type == "M" else "DRIVER"
    if key not in definitions:
        known = ", ".join(definitions) or "none"
        raise ConfigMachineError(f"machine '{name}': no {scope} setting '{key}' (known: {known})")
    try:
        return clean_value(definitions[key], value)
    except Exception as err:
        raise ConfigMachineError(f"machine '{name}': {scope} setting '{key}': {err}") from err


def _restore_state(machine: Machine, state: StateRow) -> None:
    if machine.machine_type is None:
        return  # a machine of an unknown type has no status to restore
    try:
        machine.status = machine.machine_type.MACHINE_STATUS(state.status)
    except ValueError:
        return
    machine.status_text = state.status_text
    machine.status_read_at = dt.datetime.fromisoformat(state.read_at)
    try:
        machine.properties = tuple(MachineProperty(**p) for p in json.loads(state.properties))
    except (ValueError, TypeError):
        machine.properties = ()
