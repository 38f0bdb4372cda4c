"""Keep one InvenTree machine per agent printer: create, rename, (re)activate, never delete."""

from __future__ import annotations

import threading
import uuid

from . import DRIVER_SLUG, compat
from .models import EdgeAgent, EdgePrinter

MACHINE_TYPE = "label-printer"
NAME_LIMIT = 255


def machine_name(agent: EdgeAgent, printer: EdgePrinter) -> str:
    from machine.models import MachineConfig

    name = f"{agent.name} / {printer.name}"[:NAME_LIMIT]
    taken = MachineConfig.objects.filter(name=name)
    if printer.machine is not None:
        taken = taken.exclude(pk=printer.machine)
    if taken.exists():
        # Another machine (not ours) has this name: the printer key makes it unique.
        suffix = f" ({printer.key[:8]})"
        name = name[: NAME_LIMIT - len(suffix)] + suffix
    return name


def _set_driver_settings(config, agent: EdgeAgent, printer: EdgePrinter) -> None:
    from machine.models import MachineSetting

    for key, value in (("AGENT", agent.name), ("PRINTER", printer.key)):
        current = MachineSetting.get_setting(
            key, machine_config=config, config_type=MachineSetting.ConfigType.DRIVER
        )
        if current != value:
            _registry_write(
                lambda key=key, value=value: MachineSetting.set_setting(
                    key,
                    value,
                    None,
                    machine_config=config,
                    config_type=MachineSetting.ConfigType.DRIVER,
                )
            )


def ensure_machine(agent: EdgeAgent, printer: EdgePrinter, reactivate: bool) -> None:
    """Create or update the machine that shows this printer."""
    from machine.models import MachineConfig

    config = None
    if printer.machine is not None:
        config = MachineConfig.objects.filter(pk=printer.machine).first()
    if config is None:
        # The row points at the new machine before it exists: InvenTree initialises the
        # machine inside MachineConfig.save(), and the driver's init hook looks the row up.
        printer.machine = uuid.uuid4()
        printer.save(update_fields=["machine"])
        config = MachineConfig(
            id=printer.machine,
            name=machine_name(agent, printer),
            machine_type=MACHINE_TYPE,
            driver=DRIVER_SLUG,
            active=True,
        )
        _save(config)
        _set_driver_settings(config, agent, printer)
        tell_worker_of_new_machine(config.pk)
        return
    name = machine_name(agent, printer)
    changed = False
    if config.name != name:
        config.name = name
        changed = True
    if reactivate and not config.active:
        config.active = True
        changed = True
    if changed:
        _save(config)
    _set_driver_settings(config, agent, printer)


def deactivate(printer: EdgePrinter) -> None:
    from machine.models import MachineConfig

    if printer.machine is None:
        return
    config = MachineConfig.objects.filter(pk=printer.machine).first()
    if config is not None and config.active:
        config.active = False
        _save(config)


def sync(agent: EdgeAgent, reported: list[dict]) -> list[EdgePrinter]:
    """Store the agent's complete printer list and bring the machines in line with it."""
    seen = []
    for entry in reported:
        printer, created = EdgePrinter.objects.get_or_create(
            agent=agent, key=entry["key"], defaults={"name": entry["name"]}
        )
        was_absent = not created and not printer.present
        printer.name = entry["name"]
        printer.driver = entry.get("driver", "")
        printer.status = entry.get("status", 101)
        printer.status_text = entry.get("status_text", "")
        printer.properties = entry.get("properties", [])
        printer.errors = entry.get("errors", [])
        printer.present = True
        printer.save()
        with _registry_lock:
            ensure_machine(agent, printer, reactivate=was_absent)
            _publish_registry_hash()
        seen.append(printer)
    for printer in agent.printers.filter(present=True).exclude(pk__in=[p.pk for p in seen]):
        printer.present = False
        printer.save(update_fields=["present", "updated"])
        with _registry_lock:
            deactivate(printer)
            _publish_registry_hash()
    return seen


# InvenTree's machine registry is a plain dict shared by the server's threads: the plugin
# changes machines one thread at a time, and finishes a registry update another thread broke.
_registry_lock = threading.Lock()
HASH_ATTEMPTS = 5


def _save(config) -> None:
    _registry_write(config.save)


def _registry_write(write) -> None:
    """Save a machine or its setting, surviving the registry's 'dictionary changed size' race.

    The row and the in-process machine are in place when the race hits; what is missing is the
    registry hash that tells the other processes (the background worker) to reload.
    """
    try:
        write()
    except RuntimeError:
        from machine import registry

        for attempt in range(HASH_ATTEMPTS):
            try:
                registry._update_registry_hash()  # noqa: SLF001 - see the docstring
                break
            except RuntimeError:
                if attempt == HASH_ATTEMPTS - 1:
                    raise


PUBLISH_ATTEMPTS = 10
PUBLISH_PAUSE_S = 0.1


def republish_registry_hash() -> None:
    """The sweeper's check (web processes only): put this process's registry hash back.

    A background worker that finishes a registry call just after the web process published a
    new hash writes its own older hash over it (a lost update in InvenTree), and then never
    loads the new machine. Writing it back makes the worker reload within one sweep.
    """
    if not compat.has_data_output() or compat.in_worker():
        return
    from common.settings import get_global_setting
    from machine import registry

    current = getattr(registry, "_hash", None)
    if not current or get_global_setting("_MACHINE_REGISTRY_HASH", cache=False) == current:
        return
    # Only a process that knows every agent printer's machine may speak: a stale one would
    # erase the newer hash itself.
    known = registry.machines
    wanted = EdgePrinter.objects.exclude(machine=None).values_list("machine", flat=True)
    if all(str(pk) in known for pk in wanted):
        with _registry_lock:
            _publish_registry_hash()


def _publish_registry_hash() -> None:
    """Make sure the background worker learns about changed machines (API >= 317).

    Current InvenTree tells other processes to reload their machines through the global
    setting _MACHINE_REGISTRY_HASH, and drops the write silently when SQLite is busy. A worker
    that misses it does not know a new machine, and a print to it never completes.
    """
    if not compat.has_data_output():
        return  # InvenTree 303 prints in the web process, which made the change itself
    import time

    from common.settings import get_global_setting
    from machine import registry

    for _attempt in range(PUBLISH_ATTEMPTS):
        try:
            registry._update_registry_hash()  # noqa: SLF001 - see the docstring
            if get_global_setting("_MACHINE_REGISTRY_HASH", cache=False) == registry._hash:  # noqa: SLF001
                return
        except RuntimeError:
            pass  # another thread changed the registry while it was hashed: try again
        time.sleep(PUBLISH_PAUSE_S)


def add_machine_in_worker(machine_pk: str) -> None:
    """A background task: put one machine into the worker's registry, if it is not there yet.

    One machine, not a reload: reloading empties the registry for seconds (measured 8-15 s with
    80 machines on a busy host), and prints in that window find no machine either. The
    registry's dict is used directly: its public methods first compare registry hashes, and a
    reload there makes the worker store its own hash, which sends the web server into a reload
    in turn (its print dialog refuses every machine meanwhile: "not a valid choice").
    """
    from machine import registry
    from machine.models import MachineConfig

    machines = registry.machines
    if str(machine_pk) in machines:
        return
    config = MachineConfig.objects.filter(pk=machine_pk).first()
    machine_type = registry.machine_types.get(config.machine_type) if config else None
    if config is not None and machine_type is not None:
        machines[str(config.pk)] = machine_type(config)


def tell_worker_of_new_machine(machine_pk: str) -> None:
    """Queue the new machine for the worker's registry, ahead of any print to it (API >= 317).

    On current InvenTree the worker prints, and it finds the machine in its own registry; it
    reloads that registry only when the hash InvenTree stores in `_MACHINE_REGISTRY_HASH` differs
    from its own. Seen on InvenTree API 530 with SQLite: about every other machine added by a
    report left that hash unchanged, the worker never loaded the machine, and the builtin machine
    plugin dropped every print to it without a word (the print dialog waits forever).
    """
    from . import compat

    if not compat.has_data_output():
        return  # InvenTree 303 prints in the web process, which added the machine itself
    from InvenTree.tasks import offload_task

    offload_task(
        "inventree_edge_plugin.machines.add_machine_in_worker",
        str(machine_pk),
        force_async=True,
        group="plugin",
    )
