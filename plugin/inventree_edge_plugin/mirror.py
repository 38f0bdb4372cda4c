"""Mirror each printer's live state (kept in the plugin's tables) into InvenTree's machine state.

InvenTree keeps machine status, status text, properties and errors in Django's cache. Without
Redis that cache is per process, so a report handled by one process is invisible to the others,
and nothing in InvenTree turns a silent agent into DISCONNECTED. The cheapest correct approach:
the DB rows are the truth, and every process copies them into its own cache

- at once, in the web process that handles a report;
- when InvenTree (re)initialises a machine (driver init/update/restart/ping hooks);
- from one daemon thread per process (`ensure_sweeper`), every few seconds. It reads the few
  agent and printer rows (two small queries) and writes to the cache only what differs, so an
  idle process costs two indexed SELECTs per sweep and no cache writes; with Redis the writes
  are shared and simply find nothing to change.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone

from . import compat

logger = logging.getLogger("inventree_edge_plugin")

SWEEP_SECONDS = 3.0
SILENT_INTERVALS = 3
DISCONNECTED = 400
UNKNOWN = 101


def silent_since(agent, now: datetime | None = None) -> datetime | None:
    """When the agent was last heard of, if it has been silent for three report intervals."""
    if agent.last_report is None:
        return None
    now = now or timezone.now()
    if now - agent.last_report > timedelta(seconds=SILENT_INTERVALS * agent.report_interval):
        return agent.last_report
    return None


def clock(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%H:%M")


def desired_state(printer, agent, now: datetime | None = None) -> tuple[int, str]:
    since = silent_since(agent, now)
    if since is not None:
        return DISCONNECTED, f"Agent {agent.name} silent since {clock(since)} UTC"
    if agent.last_report is None:
        return UNKNOWN, f"Agent {agent.name} has not reported yet"
    if not printer.present:
        return DISCONNECTED, f"No longer reported by agent {agent.name}"
    return printer.status, printer.status_text


def _status_enum(machine, code: int):
    statuses = machine.MACHINE_STATUS
    try:
        return statuses(code)
    except ValueError:
        return statuses(UNKNOWN)


def _properties(printer) -> list[dict]:
    out = []
    for prop in printer.properties or []:
        if isinstance(prop, dict) and "key" in prop:
            item = {"key": str(prop["key"]), "value": prop.get("value"), "type": "str"}
            if prop.get("type") in ("str", "bool", "int", "float", "progress"):
                item["type"] = prop["type"]
            for extra in ("group", "max_progress"):
                if extra in prop:
                    item[extra] = prop[extra]
            out.append(item)
    return out


def push(machine, printer, agent, now: datetime | None = None) -> None:
    """Write the printer's state into this process's machine state where it differs."""
    code, text = desired_state(printer, agent, now)
    status = _status_enum(machine, code)
    # Compare the codes: InvenTree's status enums compare members of one class as all equal.
    if machine.status.value != status.value:
        machine.set_status(status)
    if machine.status_text != text:
        machine.set_status_text(text)
    if compat.has_machine_properties() and hasattr(machine, "set_properties"):
        wanted = _properties(printer)
        current = [{k: p.get(k) for k in ("key", "value", "type")} for p in machine.properties]
        if current != [{k: p.get(k) for k in ("key", "value", "type")} for p in wanted]:
            machine.set_properties(wanted)
    errors = [str(e) for e in printer.errors or []] if printer.present else []
    if [str(e) for e in machine.errors] != errors:
        machine.reset_errors()
        for error in errors:
            machine.handle_error(error)


def push_machine(machine) -> None:
    """Refresh one machine from the DB (driver hooks)."""
    if not compat.tables_ready():
        return
    from .models import EdgePrinter

    printer = EdgePrinter.objects.select_related("agent").filter(machine=machine.pk).first()
    if printer is None:
        return
    push(machine, printer, printer.agent)


def push_all(agent=None) -> None:
    """Refresh every machine of this driver (or of one agent) in this process."""
    if not compat.tables_ready():
        return
    from machine import registry

    from .models import EdgePrinter

    now = timezone.now()
    printers = EdgePrinter.objects.select_related("agent").exclude(machine=None)
    if agent is not None:
        printers = printers.filter(agent=agent)
    for printer in printers:
        # The registry's dict directly: its entry points may reload the whole registry, which
        # a background thread must not do beside the server's request threads.
        machine = registry.machines.get(str(printer.machine))
        if machine is not None and getattr(machine, "driver", None) is not None:
            push(machine, printer, printer.agent, now)


_sweeper_lock = threading.Lock()
_sweeper_pid = [0]


def ensure_sweeper() -> None:
    """Start this process's sweeper thread once (again after a fork)."""
    if _sweeper_pid[0] == os.getpid():
        return
    try:
        from InvenTree.ready import canAppAccessDatabase, isRunningMigrations

        if isRunningMigrations() or not canAppAccessDatabase():
            return
    except ImportError:
        return
    with _sweeper_lock:
        if _sweeper_pid[0] == os.getpid():
            return
        _sweeper_pid[0] = os.getpid()
        threading.Thread(target=_sweep_forever, name="edge-sweeper", daemon=True).start()


def _sweep_forever() -> None:
    from django.db import connections

    failing = False
    stop = threading.Event()
    while not stop.wait(SWEEP_SECONDS):
        try:
            if compat.tables_ready():
                from . import jobs, machines

                push_all()
                machines.republish_registry_hash()
                jobs.housekeeping()
            if failing:
                logger.info("edge sweeper works again")
            failing = False
        except Exception:
            if not failing:
                logger.exception("edge sweeper failed; retrying every %s s", SWEEP_SECONDS)
            failing = True
        finally:
            # Django connections are per thread: close this thread's between sweeps.
            connections.close_all()
