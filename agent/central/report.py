"""The body of `POST report/`: the agent and the printers it publishes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent import __version__
from agent.config import CentralConfig
from agent.machine import Machine
from drivers.base import LabelPrinterStatus

LABEL_PRINTER = "label-printer"
# What the plugin takes (it refuses the whole report otherwise): text lengths, list sizes.
MAX_NAME, MAX_DRIVER, MAX_STATUS_TEXT, MAX_ERROR = 150, 100, 500, 500
MAX_PROPERTIES, MAX_ERRORS = 100, 50
# The property types the protocol knows; others are sent as text.
_PROPERTY_TYPES = frozenset({"str", "bool", "int", "float", "progress"})


def published(config: CentralConfig, machines: Iterable[Machine]) -> list[Machine]:
    """The label printers this agent publishes, by name (every one unless `publish` names some)."""
    wanted = None if config.publish is None else set(config.publish)
    return sorted(
        (
            machine
            for machine in machines
            if machine.machine_type_slug == LABEL_PRINTER
            and (wanted is None or machine.name in wanted)
        ),
        key=lambda machine: machine.name,
    )


def report_body(config: CentralConfig, machines: Iterable[Machine]) -> dict[str, Any]:
    """What the agent tells the central server about itself and its printers."""
    return {
        # Whole seconds, as the protocol has it.
        "agent": {"version": __version__, "report_interval": max(1, round(config.report_interval))},
        "printers": [_printer(machine) for machine in published(config, machines)],
    }


def _printer(machine: Machine) -> dict[str, Any]:
    if not machine.active:
        status = int(LabelPrinterStatus.DISCONNECTED)
        text = "Inactive on the agent"
    elif machine.status is None:
        status, text = int(LabelPrinterStatus.UNKNOWN), machine.status_text
    else:
        status, text = int(machine.status), machine.status_text
    return {
        "key": machine.pk,
        "name": machine.name[:MAX_NAME],
        "driver": machine.driver_slug[:MAX_DRIVER],
        "status": status,
        "status_text": text[:MAX_STATUS_TEXT],
        "properties": [
            {
                "key": prop.key,
                "value": str(prop.value) if prop.type not in _PROPERTY_TYPES else prop.value,
                "type": prop.type if prop.type in _PROPERTY_TYPES else "str",
            }
            for prop in machine.properties[:MAX_PROPERTIES]
        ],
        # The newest errors, each cut to a length the plugin keeps.
        "errors": [error[:MAX_ERROR] for error in machine.error_messages[-MAX_ERRORS:]],
    }
