"""A family's entry in the conformance matrix: what the suite needs to know to test it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from PIL import Image

from drivers.base import LabelPrinterDriver, LabelPrinterStatus
from drivers.family import Family, load
from drivers.sim.base import LINK_FAULTS, Simulator
from drivers.sim.faults import COMMON_FAULTS


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
class Entry:
    """One printer family in the conformance matrix.

    - `family`: the family package's `FAMILY` declaration (its driver and simulator);
    - `label`: the label the suite prints, and `settings`: the driver settings (all but
      `CONNECTION`) that make the driver print exactly that label;
    - `faults`: what each fault the family declares (and "offline") shows after one poll;
    - `tcp_connection`, `pty_connection`: the `CONNECTION` URI of a simulator on a loopback port
      and on a pseudo-terminal (the usual forms unless the driver wants more, a baud rate...);
    - `timing`: the driver's timing for the suite (what its constructor takes as `timing` and
      keeps in `self.timing`), or None for its defaults. The simulators answer in microseconds,
      and a printer gone deaf should fail an attempt in a fraction of a second, not after a
      timeout made for real printers;
    - `reference`: a reading of the printer's language written from the vendor's manual and sharing
      no code with the family (neither its encoder nor its simulator), from the bytes the printer
      received to the labels they print, so that a misreading shared by the family's encoder and
      simulator shows; None where the family has none yet.
    """

    family: Family
    label: LabelSize
    faults: Mapping[str, Shown]
    settings: Mapping[str, str] = field(default_factory=dict)
    tcp_connection: Callable[[str, int], str] = tcp_uri
    pty_connection: Callable[[str], str] = serial_uri
    timing: object | None = None
    reference: Callable[[bytes], list[Image.Image]] | None = None

    @property
    def driver(self) -> type[LabelPrinterDriver]:
        """The family's driver class."""
        driver = load(self.family.driver)
        if not (isinstance(driver, type) and issubclass(driver, LabelPrinterDriver)):
            raise TypeError(f"{self.family.driver} is not a label printer driver")
        return driver

    @property
    def simulator(self) -> type[Simulator]:
        """The family's simulator class."""
        if self.family.simulator is None:
            raise TypeError(f"the {self.family.language} family declares no simulator")
        simulator = load(self.family.simulator)
        if not (isinstance(simulator, type) and issubclass(simulator, Simulator)):
            raise TypeError(f"{self.family.simulator} is not a Simulator")
        return simulator

    @property
    def slug(self) -> str:
        """The driver's slug, which names the family in test ids."""
        return self.driver.SLUG

    def declared_faults(self) -> frozenset[str]:
        """The printer faults the family declares, with those every printer has ("offline")."""
        return frozenset(self.family.faults) | (frozenset(COMMON_FAULTS) - LINK_FAULTS)
