"""The body of `POST report/`: the agent and the printers it publishes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agent import __version__
from agent.config import CentralConfig
from agent.machine import Machine
from drivers.base import LabelPrinterStatus

LABEL_PRINTER = "label-printer"
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
        "agent": {
            "version": __version__,
            "report_interval": _whole_seconds(config.report_interval),
        },
        "printers": [_printer(machine) for machine in published(config, machines)],
    }


def _whole_seconds(seconds: float) -> int:
    """The protocol's `report_interval`: whole seconds, at least 1 (the agent reports sooner)."""
    return max(1, math.ceil(seconds))


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
        "name": machine.name,
        "driver": machine.driver_slug,
        "status": status,
        "status_text": text,
        "properties": [
            {
                "key": prop.key,
                "value": str(prop.value) if prop.type not in _PROPERTY_TYPES else prop.value,
                "type": prop.type if prop.type in _PROPERTY_TYPES else "str",
            }
            for prop in machine.properties
        ],
        "errors": machine.error_messages,
    }
