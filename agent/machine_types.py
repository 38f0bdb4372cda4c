"""Machine types: what a kind of machine is, its status codes and its machine-scoped settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from drivers.base import (
    BaseDriver,
    LabelPrinterDriver,
    LabelPrinterStatus,
    MachineStatus,
    SettingDef,
)


class MachineType:
    """A machine type, as InvenTree's `BaseMachineType`."""

    SLUG: ClassVar[str]
    NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    base_driver: ClassVar[type[BaseDriver]]
    MACHINE_STATUS: ClassVar[type[MachineStatus]]
    default_machine_status: ClassVar[MachineStatus]
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {}


class LabelPrinterMachineType(MachineType):
    """InvenTree's `label-printer` type."""

    SLUG = "label-printer"
    NAME = "Label Printer"
    DESCRIPTION = "Directly print labels for various items."
    base_driver = LabelPrinterDriver
    MACHINE_STATUS = LabelPrinterStatus
    default_machine_status = LabelPrinterStatus.UNKNOWN
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "LOCATION": {
            "name": "Printer Location",
            "description": "Scope the printer to a specific location",
            "model": "stock.stocklocation",
        },
    }


MACHINE_TYPES: tuple[type[MachineType], ...] = (LabelPrinterMachineType,)
