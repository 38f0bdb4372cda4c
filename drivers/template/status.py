"""What the template printer's status means: conditions, their machine status, the properties.

A family's status module maps what the printer says onto `LabelPrinterStatus` through the kit's
`StatusReport`: each `Condition` says which status it is and whether it stops printing; the report
shows the worst one, and `raise_if_blocking` makes a job wait while one blocks.
"""

from __future__ import annotations

from drivers.kit import Condition, LabelPrinterStatus, MachineProperty, StatusReport
from drivers.template.protocol import StatusWord

_CONDITIONS = {
    str(StatusWord.PAPER_LOW): Condition(
        LabelPrinterStatus.WARNING, "Paper low", blocks_printing=False
    ),
    str(StatusWord.PAPER_OUT): Condition(LabelPrinterStatus.NO_MEDIA, "Paper out"),
}


def status_report(words: frozenset[str]) -> StatusReport:
    """The report for the condition words of a STATUS line."""
    conditions = tuple(
        _CONDITIONS.get(word)
        # A word this driver does not know: shown, but not taken to stop the printer.
        or Condition(LabelPrinterStatus.WARNING, f"Printer reports {word}", blocks_printing=False)
        for word in sorted(words)
    )
    if str(StatusWord.PAPER_OUT) in words:
        paper = "out"
    elif str(StatusWord.PAPER_LOW) in words:
        paper = "low"
    else:
        paper = "ok"
    # The "Printer status" group is live state: the agent shows it as unknown while unreachable.
    return StatusReport(conditions, (MachineProperty("Paper", paper, group="Printer status"),))
