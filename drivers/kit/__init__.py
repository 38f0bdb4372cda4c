"""The driver kit: everything a printer family needs to write its driver, in one import.

- the contract (`drivers.base`): the driver base classes, `Machine`, `PrintJob`, settings, statuses,
  page formats (one colour, or black and red);
- `PrintOption` (`drivers.print_options`): the options of a print job a driver declares;
- `Media` and `MediaMismatch` (`drivers.media`): the media a printer reports loaded;
- `settings`: the settings connected drivers declare alike (`CONNECTION`, `POLL_INTERVAL`, ...);
- `status`: what a status query found (`StatusReport` of `Condition`s) and the errors that make a
  job wait (`PrinterNotReady`, `PrinterSilent`);
- `connected`: `ConnectedDriver`, the lifecycle of a driver with one `Link` per machine;
- `Family` (`drivers.family`): what a family package declares in its `FAMILY`;
- `Clock` (`drivers.clock`): the time of a driver's confirm loops, given in its `DriverContext`.

A family's driver imports from here (`from drivers.kit import ConnectedDriver, StatusReport`);
the transports it talks through are in `drivers.transport`.
"""

from __future__ import annotations

from drivers.activity import reporting
from drivers.base import (
    BLACK_AND_RED,
    SINGLE_COLOR,
    DriverContext,
    LabelPrinterDriver,
    LabelPrinterStatus,
    Machine,
    MachineProperty,
    MachineSnapshot,
    PageFormat,
    PrinterUnavailable,
    PrintFailed,
    PrintJob,
    RenderOptions,
    SettingDef,
    SettingOutOfRange,
    SettingValidationError,
    SettingValue,
    label_planes,
    labels,
    raw_copies,
)
from drivers.clock import Clock, MonotonicClock
from drivers.family import Family
from drivers.kit.connected import ConnectedDriver, Connections, MachineConnection, connection_uri
from drivers.kit.settings import (
    connection_setting,
    int_range,
    poll_interval_setting,
    threshold_settings,
    validate_connection,
)
from drivers.kit.status import Condition, PrinterNotReady, PrinterSilent, StatusReport
from drivers.media import Media, MediaKind, MediaMismatch
from drivers.print_options import PrintOption

__all__ = [
    "BLACK_AND_RED",
    "Clock",
    "SINGLE_COLOR",
    "Condition",
    "DriverContext",
    "ConnectedDriver",
    "Connections",
    "Family",
    "LabelPrinterDriver",
    "LabelPrinterStatus",
    "Machine",
    "MachineConnection",
    "MachineProperty",
    "MachineSnapshot",
    "Media",
    "MediaKind",
    "MediaMismatch",
    "MonotonicClock",
    "PageFormat",
    "PrintFailed",
    "PrintJob",
    "PrintOption",
    "PrinterNotReady",
    "PrinterSilent",
    "PrinterUnavailable",
    "RenderOptions",
    "SettingDef",
    "SettingOutOfRange",
    "SettingValidationError",
    "SettingValue",
    "StatusReport",
    "connection_setting",
    "connection_uri",
    "int_range",
    "label_planes",
    "labels",
    "poll_interval_setting",
    "raw_copies",
    "reporting",
    "threshold_settings",
    "validate_connection",
]
