"""What a status query found, as conditions a machine shows; the errors that make a job wait."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from drivers.base import LabelPrinterStatus, Machine, MachineProperty, PrinterUnavailable
from drivers.media import Media
from drivers.transport import TransportTimeout

log = structlog.get_logger(__name__)


class PrinterNotReady(PrinterUnavailable):
    """The printer reports a state in which it cannot print (paper out, cover open): the job waits."""


class PrinterSilent(TransportTimeout, PrinterUnavailable):
    """The printer answered none of the status queries (off, unplugged, or a write-only link)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing the printer reports: the status it means and whether it stops printing."""

    status: LabelPrinterStatus
    text: str
    blocks_printing: bool = True


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a status query found: conditions (none: ready), properties and media.

    `media` is what the printer says is loaded; None when it does not say, and then the
    machine's last known media stays.
    """

    conditions: tuple[Condition, ...] = ()
    properties: tuple[MachineProperty, ...] = ()
    media: Media | None = None

    @property
    def status(self) -> LabelPrinterStatus:
        """The most severe condition's status (by code: 500 over 302 over 301 over 200)."""
        if not self.conditions:
            return LabelPrinterStatus.CONNECTED
        return max((c.status for c in self.conditions), key=int)

    @property
    def text(self) -> str:
        """Every condition, most severe first, joined with "; "."""
        ordered = sorted(self.conditions, key=lambda c: -int(c.status))
        return "; ".join(dict.fromkeys(c.text for c in ordered))

    @property
    def blocking(self) -> bool:
        """True when some condition stops the printer from printing."""
        return any(c.blocks_printing for c in self.conditions)

    def apply(self, machine: Machine) -> None:
        """Show the report on the machine: status, status text, (if any) properties and media."""
        machine.set_status(self.status)
        machine.set_status_text(self.text)
        if self.properties:
            machine.set_properties(self.properties)
        if self.media is not None:
            machine.set_media(self.media)

    def raise_if_blocking(self, machine: Machine) -> None:
        """When the printer cannot print: show why and raise `PrinterNotReady` (the job waits).

        When it can, the text and properties are brought up to date (a "Paper out" left from
        the last attempt goes); the status is the job runner's (PRINTING) and stays. The media,
        if the report has it, is recorded either way.
        """
        if self.media is not None:
            machine.set_media(self.media)
        if self.blocking:
            machine.set_status(self.status)
            machine.set_status_text(self.text)
            self._update_properties(machine)
            log.info("printer_not_ready", machine=machine.name, status=self.text)
            raise PrinterNotReady(self.text)
        machine.set_status_text(self.text)
        self._update_properties(machine)

    def _update_properties(self, machine: Machine) -> None:
        """Replace the properties this report has; keep the others (a job reads no model)."""
        if not self.properties:
            return
        fresh = {p.key: p for p in self.properties}
        current: tuple[MachineProperty, ...] = getattr(machine, "properties", ())
        kept = [fresh.pop(p.key, p) for p in current]
        machine.set_properties((*kept, *fresh.values()))
