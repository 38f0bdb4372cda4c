"""A driver that reaches its printers through a `CONNECTION` URI: one `Link` per machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from drivers.base import DriverContext, LabelPrinterDriver, Machine, MachineSnapshot
from drivers.transport import Link, TransportClosed, link_for

log = structlog.get_logger(__name__)

StateT = TypeVar("StateT")


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

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._connections: Connections[StateT] = Connections(self.new_state)

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
