"""What a printer family tells the conformance suite about itself: one `Family` entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.base import LabelPrinterDriver, LabelPrinterStatus
from drivers.sim.base import LINK_FAULTS, Simulator


def tcp_uri(host: str, port: int) -> str:
    """The usual `CONNECTION` of a printer on the network."""
    return f"tcp://{host}:{port}"


def serial_uri(path: str) -> str:
    """The usual `CONNECTION` of a printer on a serial port (a pty's slave end, in the suite)."""
    return f"serial://{path}"


@dataclass(frozen=True, slots=True)
class LabelSize:
    """The label the suite prints, in the printer's dots; the PDF page is drawn at `dpi`.

    It must be exactly the raster the driver's `page_format` gives with the entry's settings, so
    that a page maps dot for dot onto the label and the printed pixels can be compared.
    """

    dpi: int
    width_dots: int
    height_dots: int


@dataclass(frozen=True, slots=True)
class Shown:
    """What the API shows for a fault after one poll: the status code and its text's start."""

    status: LabelPrinterStatus
    text: str


@dataclass(frozen=True, slots=True)
class Family:
    """One printer family in the conformance matrix.

    `driver` and `simulator` are the family's classes; `settings` are the driver settings (other
    than `CONNECTION`) that make the driver print `label`; `faults` says what each fault the
    simulator declares (its `FAULTS`, less the link faults the servers apply) shows after one poll.
    `tcp_connection` and `pty_connection` build the `CONNECTION` URI of a simulator on a loopback
    port and on a pseudo-terminal. `quick` lowers module-level timeouts for the suite
    (`"package.module.NAME": seconds`): the simulators answer in microseconds, and a printer that
    went deaf should fail an attempt in a fraction of a second, not after the real timeout.
    """

    driver: type[LabelPrinterDriver]
    simulator: type[Simulator]
    label: LabelSize
    faults: Mapping[str, Shown]
    settings: Mapping[str, str] = field(default_factory=dict)
    tcp_connection: Callable[[str, int], str] = tcp_uri
    pty_connection: Callable[[str], str] = serial_uri
    quick: Mapping[str, float] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The driver's slug, which names the family in test ids."""
        return self.driver.SLUG

    @property
    def driver_spec(self) -> str:
        """The driver as `module:Class`, the form the agent loads drivers from."""
        return f"{self.driver.__module__}:{self.driver.__qualname__}"

    def printer_faults(self) -> frozenset[str]:
        """The faults the simulator declares that are the printer's (not the link's)."""
        return self.simulator.FAULTS - LINK_FAULTS
