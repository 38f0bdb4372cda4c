"""What the ESC/POS and ZPL drivers share: a `Link` per machine, common settings, status reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from drivers.base import (
    LabelPrinterDriver,
    LabelPrinterStatus,
    Machine,
    MachineProperty,
    MachineSnapshot,
    PrinterUnavailable,
    SettingDef,
    SettingOutOfRange,
    SettingValidationError,
    SettingValue,
)
from drivers.transport import (
    ConnectionUriError,
    Link,
    TransportClosed,
    TransportTimeout,
    link_for,
    parse_connection,
)
from drivers.transport.uri import FORMS

log = structlog.get_logger(__name__)

StateT = TypeVar("StateT")


class PrinterNotReady(PrinterUnavailable):
    """The printer reports a state in which it cannot print (paper out, cover open): the job waits."""


class PrinterSilent(TransportTimeout, PrinterUnavailable):
    """The printer answered none of the status queries (off, unplugged, or a write-only link)."""


def validate_connection(value: SettingValue) -> None:
    """Setting validator: raise `SettingValidationError` with the parser's advice for a bad URI."""
    try:
        parse_connection(str(value))
    except ConnectionUriError as err:
        raise SettingValidationError(str(err)) from err


def connection_setting(example: str) -> SettingDef:
    """The required `CONNECTION` setting (a URI, checked when saved)."""
    return {
        "name": "Connection",
        "description": f"How to reach the printer: {FORMS} (for example {example})",
        "default": "",
        "required": True,
        "validator": validate_connection,
    }


def int_range(low: int, high: int, meaning: str = "") -> Callable[[SettingValue], None]:
    """Setting validator: an integer from `low` to `high`; `meaning` explains special values."""

    def validate(value: SettingValue) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise SettingOutOfRange(f"Enter a whole number from {low} to {high}{meaning}")

    return validate


def poll_interval_setting(default: int) -> SettingDef:
    """The `POLL_INTERVAL` setting the poller reads (seconds between status queries)."""
    return {
        "name": "Status interval",
        "description": "Seconds between status queries while the printer is idle",
        "default": default,
        "validator": [int, int_range(1, 3600)],
        "units": "s",
    }


def threshold_settings() -> dict[str, SettingDef]:
    """`THRESHOLD` and `DITHER`: how grey in a document becomes black or white dots."""
    return {
        "THRESHOLD": {
            "name": "Threshold",
            "description": "Grey darker than this (0-255) prints black",
            "default": 128,
            "validator": [int, int_range(0, 255)],
        },
        "DITHER": {
            "name": "Dither",
            "description": "Dither grey areas (photos) instead of cutting at the threshold",
            "default": False,
            "validator": bool,
        },
    }


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing the printer reports: the status it means and whether it stops printing."""

    status: LabelPrinterStatus
    text: str
    blocks_printing: bool = True


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a status query found: conditions (none: ready) and properties to show."""

    conditions: tuple[Condition, ...] = ()
    properties: tuple[MachineProperty, ...] = ()

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
        """Show the report on the machine: status, status text and (if any) properties."""
        machine.set_status(self.status)
        machine.set_status_text(self.text)
        if self.properties:
            machine.set_properties(self.properties)

    def raise_if_blocking(self, machine: Machine) -> None:
        """When the printer cannot print: show why and raise `PrinterNotReady` (the job waits).

        When it can, the text and properties are brought up to date (a "Paper out" left from
        the last attempt goes); the status is the job runner's (PRINTING) and stays.
        """
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


@dataclass(slots=True)
class MachineConnection(Generic[StateT]):
    """A machine's link to its printer, the URI it was made from, and the driver's own state."""

    uri: str
    link: Link
    state: StateT


class Connections(Generic[StateT]):
    """Per-machine connections of one driver instance, keyed by machine pk."""

    def __init__(self, new_state: Callable[[], StateT]) -> None:
        self._new_state = new_state
        self._by_pk: dict[str, MachineConnection[StateT]] = {}
        self._watchers: dict[str, Callable[[], None]] = {}

    def watch(self, machine: Machine, callback: Callable[[], None] | None) -> None:
        """Call `callback` when the machine's link fails or reconnects (None: stop), new links too."""
        if callback is None:
            self._watchers.pop(machine.pk, None)
        else:
            self._watchers[machine.pk] = callback
        connection = self._by_pk.get(machine.pk)
        if connection is not None:
            connection.link.on_change = callback

    async def open(self, machine: Machine) -> MachineConnection[StateT]:
        """Make the link from `CONNECTION` without touching the printer; a bad URI raises."""
        uri = connection_uri(machine)
        link = link_for(uri, name=machine.name)
        link.on_change = self._watchers.get(machine.pk)
        await self.close(machine)
        connection = MachineConnection(uri, link, self._new_state())
        self._by_pk[machine.pk] = connection
        return connection

    def get(self, machine: Machine) -> MachineConnection[StateT]:
        """The machine's connection; `TransportClosed` if it was never opened or is closed."""
        connection = self._by_pk.get(machine.pk)
        if connection is None:
            raise TransportClosed(f"{machine.name} is not initialised")
        return connection

    def find(self, machine: Machine) -> MachineConnection[StateT] | None:
        """The machine's connection, or None."""
        return self._by_pk.get(machine.pk)

    async def update(self, machine: Machine) -> bool:
        """Replace the link if `CONNECTION` changed (only for an opened machine); True if so."""
        connection = self._by_pk.get(machine.pk)
        if connection is None or connection.uri == connection_uri(machine):
            return False
        replacement = await self.open(machine)
        log.info("printer_connection_changed", machine=machine.name, connection=replacement.uri)
        return True

    async def close(self, machine: Machine) -> None:
        """Close and forget the machine's link; nothing happens if it has none."""
        connection = self._by_pk.pop(machine.pk, None)
        if connection is not None:
            await connection.link.close()


def connection_uri(machine: Machine) -> str:
    """The machine's `CONNECTION` setting, stripped."""
    return str(machine.get_setting("CONNECTION", "D")).strip()


class ConnectedDriver(LabelPrinterDriver, Generic[StateT]):
    """A label printer reached through a `CONNECTION` URI: the lifecycle hooks both families share.

    Subclasses give `new_state` (the driver's per-machine state) and may override `forget_printer`
    (what to ask the printer again after a restart or a settings change).
    """

    def __init__(self) -> None:
        super().__init__()
        self._connections: Connections[StateT] = Connections(self.new_state)

    @property
    def connections(self) -> Connections[StateT]:
        """The machines' connections (a tool or test reaches a machine's link through it)."""
        return self._connections

    def new_state(self) -> StateT:
        """A fresh per-machine state."""
        raise NotImplementedError

    def forget_printer(self, state: StateT) -> None:
        """Drop what was learnt about the printer, so it is asked again."""

    async def init_machine(self, machine: Machine) -> None:
        """Check `CONNECTION` and make the link; the printer is first reached by the poller."""
        await self._connections.open(machine)

    async def update_machine(self, old_state: MachineSnapshot, machine: Machine) -> None:
        """A new `CONNECTION` takes effect at once; other settings are read at every job."""
        if not await self._connections.update(machine):
            connection = self._connections.find(machine)
            if connection is not None:
                self.forget_printer(connection.state)

    def watch_connection(self, machine: Machine, callback: Callable[[], None] | None) -> None:
        """Have `callback` called when the machine's connection fails or comes back (None: stop).

        The poller uses it to read the printer at once after a failed job or a reconnect.
        """
        self._connections.watch(machine, callback)

    async def restart_machine(self, machine: Machine) -> None:
        """Connect again without waiting out the reconnect backoff, and ask the printer afresh."""
        connection = self._connections.find(machine)
        if connection is not None:
            connection.link.retry_now()
            self.forget_printer(connection.state)

    async def close_machine(self, machine: Machine) -> None:
        """Close the machine's connection."""
        await self._connections.close(machine)
