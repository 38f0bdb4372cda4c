"""What a TSPL printer's status byte means: conditions, their machine status, the properties."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.kit import Condition, LabelPrinterStatus, MachineProperty, StatusReport
from drivers.tspl.protocol import TsplStatus

_S = LabelPrinterStatus
# Each bit of the `ESC ! ?` reply, most severe first.
CONDITIONS: Mapping[TsplStatus, Condition] = {
    TsplStatus.HEAD_OPEN: Condition(_S.ERROR, "Print head open"),
    TsplStatus.COVER_OPEN: Condition(_S.ERROR, "Cover open"),
    TsplStatus.TEMPERATURE: Condition(
        _S.ERROR, "Temperature out of range; printing resumes when it is back in range"
    ),
    TsplStatus.PAPER_JAM: Condition(_S.PAPER_JAM, "Paper jam"),
    TsplStatus.PAPER_OUT: Condition(_S.NO_MEDIA, "Paper out"),
    TsplStatus.RIBBON_OUT: Condition(_S.NO_MEDIA, "Ribbon out"),
    # Labels sent while paused wait in the printer until someone presses PAUSE (or FEED).
    TsplStatus.PAUSED: Condition(_S.WARNING, "Paused: press the PAUSE button to go on"),
    TsplStatus.PRINTING: Condition(_S.PRINTING, "Printing", blocks_printing=False),
}
_GROUP = "Printer status"


def status_report(status: TsplStatus, model: str | None = None) -> StatusReport:
    """The report for one status byte, with the model name if the printer told it."""
    conditions = tuple(c for bit, c in CONDITIONS.items() if bit in status)
    properties = [
        MachineProperty("Paper", "out" if TsplStatus.PAPER_OUT in status else "ok", _GROUP),
        MachineProperty("Ribbon", "out" if TsplStatus.RIBBON_OUT in status else "ok", _GROUP),
        MachineProperty("Head", _open(status, TsplStatus.HEAD_OPEN), _GROUP),
        MachineProperty("Cover", _open(status, TsplStatus.COVER_OPEN), _GROUP),
        MachineProperty("Paused", TsplStatus.PAUSED in status, _GROUP, type="bool"),
        MachineProperty("Status byte", f"{int(status):02X}", _GROUP),
    ]
    if model:
        properties.append(MachineProperty("Model", model, "Printer"))
    return StatusReport(conditions, tuple(properties))


def _open(status: TsplStatus, bit: TsplStatus) -> str:
    return "open" if bit in status else "closed"
