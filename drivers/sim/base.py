"""What every printer simulator shares: received labels, switchable faults and the print hook."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import structlog
from PIL import Image

from drivers.sim import faults

log = structlog.get_logger(__name__)

CutKind = Literal["none", "partial", "full"]

# Faults of the link (applied by the TCP and pty servers), and those of every printer.
LINK_FAULTS = frozenset(faults.LINK_FAULTS)
COMMON_FAULTS = frozenset(faults.COMMON_FAULTS)
# Bytes a connection may carry before "disconnect-mid-job" drops it: inside the first raster band.
DEFAULT_DISCONNECT_AFTER_BYTES = 1024
# Delay before each chunk of a "slow-link" is processed: a congested Wi-Fi bridge or a long
# RS-232 line at low baud, slow enough to trip a driver's status timeouts in tests if asked.
DEFAULT_SLOW_LINK_DELAY = 0.05
# Chunk size of a "slow-link": data is released this many bytes per delay.
SLOW_LINK_CHUNK_BYTES = 256
# "slow-replies": each reply byte goes out this long after the previous one, a slow but alive
# line (a serial bridge polling its UART, a busy printer CPU).
DEFAULT_SLOW_REPLY_DELAY = 0.1


@dataclass(frozen=True, slots=True)
class ReceivedLabel:
    """One physical label the simulator printed: its pixels (mode "1", black = 0) and finish."""

    number: int
    image: Image.Image
    copy: int = 1
    copies: int = 1
    feed_dots: int = 0
    cut: CutKind = "none"

    @property
    def width_dots(self) -> int:
        """Width of the printed raster in dots."""
        return self.image.width

    @property
    def height_dots(self) -> int:
        """Length of the printed raster in dots."""
        return self.image.height

    def describe(self) -> str:
        """One line for a console: `label 1: 732x342 dots, copy 1/2`."""
        return (
            f"label {self.number}: {self.width_dots}x{self.height_dots} dots, "
            f"copy {self.copy}/{self.copies}"
        )


LabelHook = Callable[[ReceivedLabel], None]


class Channel(Protocol):
    """One byte stream into a simulator (a connection): its own parser, the printer's state."""

    def feed(self, data: bytes) -> bytes:
        """Take bytes as they arrive (split anywhere); return the reply bytes to send back."""
        ...

    def close(self) -> None:
        """The stream ended: a command cut off by the end is dropped."""
        ...


class Simulator(abc.ABC):
    """A simulated printer: feed it bytes, read `labels`, switch faults with `set_fault`."""

    LANGUAGE: ClassVar[str] = ""
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS

    def __init__(self, on_label: LabelHook | None = None) -> None:
        self.labels: list[ReceivedLabel] = []
        self.faults: set[str] = set()
        self.on_label = on_label
        self.disconnect_after_bytes = DEFAULT_DISCONNECT_AFTER_BYTES
        self.slow_link_delay = DEFAULT_SLOW_LINK_DELAY
        self.slow_reply_delay = DEFAULT_SLOW_REPLY_DELAY
        self._channel: Channel | None = None

    def feed(self, data: bytes) -> bytes:
        """Feed the simulator's own stream (for tests and benchmarks without a transport)."""
        if self._channel is None:
            self._channel = self.open_channel()
        return self._channel.feed(data)

    @abc.abstractmethod
    def open_channel(self) -> Channel:
        """Start a new byte stream (one per connection) with a fresh parser."""

    def set_fault(
        self, name: str, *, after_bytes: int | None = None, delay: float | None = None
    ) -> None:
        """Switch a fault on; `after_bytes` tunes disconnect-mid-job, `delay` slow-link/-replies."""
        if name not in self.FAULTS:
            known = ", ".join(sorted(self.FAULTS))
            raise ValueError(f"unknown {self.LANGUAGE} fault {name!r}; known: {known}")
        if after_bytes is not None:
            self.disconnect_after_bytes = after_bytes
        if delay is not None and name == "slow-replies":
            self.slow_reply_delay = delay
        elif delay is not None:
            self.slow_link_delay = delay
        self.faults.add(name)
        log.info("sim_fault_set", language=self.LANGUAGE, fault=name)

    def clear_fault(self, name: str | None = None) -> None:
        """Switch one fault (or, with no name, every fault) off."""
        cleared = set(self.faults) if name is None else {name} & self.faults
        self.faults -= cleared
        for fault in sorted(cleared):
            log.info("sim_fault_cleared", language=self.LANGUAGE, fault=fault)
            self._fault_cleared(fault)

    def has_fault(self, name: str) -> bool:
        """Tell whether a fault is on."""
        return name in self.faults

    def _fault_cleared(self, name: str) -> None:  # noqa: B027 - optional hook
        """Called after a fault was switched off (a paused printer resumes here)."""

    def _printed(
        self,
        image: Image.Image,
        copies: int = 1,
        feed_dots: int = 0,
        cut: CutKind = "none",
    ) -> None:
        for copy in range(1, copies + 1):
            label = ReceivedLabel(len(self.labels) + 1, image, copy, copies, feed_dots, cut)
            self.labels.append(label)
            log.debug("sim_label_printed", language=self.LANGUAGE, label=label.describe())
            if self.on_label is not None:
                self.on_label(label)
