"""The `edge-agent` label-printer driver: queues one job per print for the printer's agent.

This module is not the plugin class's module on purpose: InvenTree 303 reloads that module,
and a driver class defined there would be registered twice ("Cannot re-register driver").
"""

from __future__ import annotations

import logging
import time

from django.db.models import F
from django.utils.translation import gettext_lazy as _
from machine.machine_types import LabelPrinterBaseDriver

from . import DRIVER_SLUG, compat, config, mirror

# The job tables exist only once InvenTree has installed the plugin's app, which happens after
# it imported this module: they are imported where they are used.

logger = logging.getLogger("inventree_edge_plugin")

LABEL_PLUGIN = "inventreelabelmachine"
WAIT_STEP = 0.25


class PrintRejected(Exception):
    """The print cannot reach the printer; the message is shown to the user who printed."""


class EdgeAgentDriver(LabelPrinterBaseDriver):
    SLUG = DRIVER_SLUG
    NAME = "Printer on an InvenTree Edge agent"
    DESCRIPTION = "Queues labels for a printer attached to an InvenTree Edge agent"

    # InvenTree 303 runs a driver with USE_BACKGROUND_WORKER = True as a detached task and
    # shows "could not be generated" because nobody marks the output complete; False runs it
    # in the request, where this driver marks it complete or raises a message for the dialog.
    # Current InvenTree reads the flag the other way round: True runs the driver inside the
    # print task already running in the worker, with the DataOutput to report into.
    USE_BACKGROUND_WORKER = compat.has_data_output()

    MACHINE_SETTINGS = {
        "AGENT": {
            "name": _("Agent"),
            "description": _("Name of the InvenTree Edge agent the printer is attached to"),
            "default": "",
        },
        "PRINTER": {
            "name": _("Printer key"),
            "description": _("The printer's key on that agent (its machine id there)"),
            "default": "",
        },
    }

    # --- state hooks: every one of them refreshes this process's view of the machine
    def init_driver(self):
        mirror.ensure_sweeper()

    def init_machine(self, machine):
        mirror.ensure_sweeper()
        mirror.push_machine(machine)

    def update_machine(self, old_machine_state, machine):
        mirror.push_machine(machine)

    def restart_machine(self, machine):
        mirror.push_machine(machine)

    def ping_machines(self):
        mirror.ensure_sweeper()
        mirror.push_all()

    # --- printing
    def printer_of(self, machine):
        from .models import EdgePrinter

        printer = EdgePrinter.objects.select_related("agent").filter(machine=machine.pk).first()
        if printer is None:
            agent = machine.get_setting("AGENT", "D")
            key = machine.get_setting("PRINTER", "D")
            printer = (
                EdgePrinter.objects.select_related("agent")
                .filter(agent__name=agent, key=key)
                .first()
            )
        if printer is None:
            raise PrintRejected(
                f"Machine {machine.name} is not linked to a printer of an InvenTree Edge agent; "
                "let the agent report its printers, or set the machine's AGENT and PRINTER."
            )
        return printer

    def check_reachable(self, printer) -> None:
        agent = printer.agent
        since = mirror.silent_since(agent)
        if since is not None:
            raise PrintRejected(f"agent {agent.name} is offline since {mirror.clock(since)} UTC")
        if agent.last_report is None:
            raise PrintRejected(f"agent {agent.name} has not reported yet")
        if not printer.present:
            raise PrintRejected(f"agent {agent.name} no longer reports printer {printer.name}")

    def print_labels(self, machine, label, items, **kwargs):
        if not compat.tables_ready():
            raise PrintRejected(
                "The InvenTree Edge plugin has no job tables: switch on the global setting "
                "ENABLE_PLUGINS_APP and run 'invoke migrate'."
            )
        output = kwargs.get("output")
        if compat.has_data_output():
            return self._print_in_worker(machine, label, items, output, kwargs)
        return self._print_in_request(machine, label, items, kwargs)

    def _render(self, label, items) -> list[bytes]:
        documents = []
        for item in items:
            data = self.render_to_pdf_data(label, item)
            documents.append(bytes(getattr(data, "content", data)))
        return documents

    def _queue(self, printer, label, items, options, user, unique_key, data_output, answered):
        from . import jobs
        from .models import EdgeJob

        options = dict(options or {})
        copies = max(1, int(options.pop("copies", 1) or 1))
        if unique_key is not None:
            existing = EdgeJob.objects.filter(unique_key=unique_key).first()
            if existing is not None:
                return existing  # a retried task: never a second job
        return jobs.create(
            printer,
            unique_key,
            self._render(label, items),
            width_mm=label.width,
            height_mm=label.height,
            copies=copies,
            options=options,
            user=user,
            template=str(label.name),
            data_output=data_output,
            answered=answered,
        )

    def _print_in_request(self, machine, label, items, kwargs):
        """InvenTree 303: runs inside POST /api/label/print/; raising shows the message (HTTP 400)."""
        from report.models import LabelOutput

        printer = self.printer_of(machine)
        self.check_reachable(printer)
        # The driver gets no output object here: the request created the newest open one.
        output = (
            LabelOutput.objects.filter(
                template=label, plugin=LABEL_PLUGIN, complete=False, items=len(items)
            )
            .order_by("-pk")
            .first()
        )
        key = f"LabelOutput:{output.pk}" if output is not None else None
        user = output.user if output is not None else None
        self._queue(printer, label, items, kwargs.get("printing_options"), user, key, None, True)
        if output is not None:
            output.complete = True
            output.progress = 100
            output.save()

    def _print_in_worker(self, machine, label, items, output, kwargs):
        """Current InvenTree: runs in the print task; outcome goes into the DataOutput."""
        user = kwargs.get("user") or getattr(output, "user", None)
        try:
            printer = self.printer_of(machine)
            self.check_reachable(printer)
        except PrintRejected as rejected:
            if output is None:
                raise
            # Raising would delete the DataOutput (the dialog then sees a 404): report instead.
            output.mark_failure(error=str(rejected))
            return
        key = f"DataOutput:{output.pk}" if output is not None else None
        wait = config.clamp(config.get("WAIT_FOR_RESULT"), 0, 60)
        waits = output is not None and wait > 0 and compat.in_worker()
        job = self._queue(
            printer,
            label,
            items,
            kwargs.get("printing_options"),
            user,
            key,
            output.pk if output is not None else None,
            not waits,
        )
        if waits:
            self._follow(job, output, wait)

    def _follow(self, job, output, wait: float) -> None:
        """Copy the agent's progress into the DataOutput until the job ends or `wait` passes."""
        from . import jobs
        from .models import EdgeJob

        deadline = time.monotonic() + wait
        shown = -1
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.total and output.total:
                progress = min(output.total, job.printed * output.total // job.total)
                if progress != shown:
                    shown = progress
                    output.progress = progress
                    output.save(update_fields=["progress"])
            if job.state == EdgeJob.DONE:
                break
            if job.state in (EdgeJob.FAILED, EdgeJob.CANCELLED, EdgeJob.EXPIRED):
                if EdgeJob.objects.filter(pk=job.pk, notified=False).update(notified=True):
                    output.mark_failure(error=jobs.failure_text(job))
                break
            time.sleep(WAIT_STEP)
        # From here on the user has their answer: later failures become notifications.
        EdgeJob.objects.filter(pk=job.pk).update(answered=True, updated=F("updated"))
        job.refresh_from_db()
        if job.state in (EdgeJob.FAILED, EdgeJob.CANCELLED, EdgeJob.EXPIRED):
            jobs.fail_late(job)
