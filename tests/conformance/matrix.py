"""The conformance matrix: one entry per printer family. A new family joins with one entry here.

An entry names the family's `FAMILY` declaration (driver and simulator), the label to print and
the settings that make the driver print it, and what each declared fault shows (see `Entry`).

Every family listed gets the whole suite in `test_conformance.py`, against its simulator over a
loopback TCP port and over a pseudo-terminal, through the agent's HTTP API.
"""

from __future__ import annotations

from drivers import brother_ql, dymo, escpos, template, tspl, zpl
from drivers.base import LabelPrinterStatus as S
from drivers.brother_ql.driver import BrotherTiming
from drivers.dymo.driver import DymoTiming
from drivers.escpos.driver import EscposTiming
from drivers.template.driver import TemplateTiming
from drivers.tspl.driver import TsplTiming
from drivers.zpl.driver import ZplTiming
from tests import brother_reference, dymo_reference, tspl_reference, zebra_reference
from tests.conformance.entry import Entry, LabelSize, Shown

MATRIX: tuple[Entry, ...] = (
    Entry(
        family=escpos.FAMILY,
        # An 80 mm roll at 203 dpi: the 576-dot head.
        label=LabelSize(dpi=203, width_dots=576, height_dots=200),
        settings={"POLL_INTERVAL": "3600"},
        faults={
            "paper-near-end": Shown(S.WARNING, "Paper near end"),
            "paper-out": Shown(S.NO_MEDIA, "Paper out"),
            "cover-open": Shown(S.ERROR, "Cover open"),
            "cutter-error": Shown(S.ERROR, "Cutter error"),
            "feed-button": Shown(S.WARNING, "Feed button pressed"),
            "recovery-wait": Shown(S.ERROR, "Offline, waiting to go back online"),
            "presenter-waiting": Shown(S.WARNING, "Label waiting in the presenter"),
            "offline": Shown(S.DISCONNECTED, "no answer to the status query (DLE EOT)"),
        },
        timing=EscposTiming(status_timeout=0.3, label_status_timeout=0.3),
    ),
    Entry(
        family=zpl.FAMILY,
        # 61 mm at 12 dots/mm (300 dpi): 732 dots, InvenTree's usual label template width.
        label=LabelSize(dpi=300, width_dots=732, height_dots=342),
        settings={"POLL_INTERVAL": "3600", "DPMM": "12", "LABEL_WIDTH_MM": "61"},
        faults={
            "paper-near-end": Shown(S.WARNING, "Paper near end"),
            "paper-out": Shown(S.NO_MEDIA, "Paper out"),
            "head-open": Shown(S.ERROR, "Print head open"),
            "ribbon-out": Shown(S.NO_MEDIA, "Ribbon out"),
            "paused": Shown(S.WARNING, "Paused"),
            "label-waiting": Shown(S.WARNING, "Label waiting to be taken (peel-off)"),
            "offline": Shown(S.DISCONNECTED, "no answer to ~HS or ~HQES"),
        },
        timing=ZplTiming(query_timeout=0.3, stall_status_after=0.05, odometer_interval=0.01),
        reference=zebra_reference.labels,
    ),
    Entry(
        family=brother_ql.FAMILY,
        # 62 mm continuous tape (DK-22205): the 696-dot print area at 300 dpi.
        label=LabelSize(dpi=300, width_dots=696, height_dots=200),
        settings={"POLL_INTERVAL": "3600", "MODEL": "QL-820NWB", "LABEL": "62"},
        faults={
            "no-media": Shown(S.NO_MEDIA, "No media"),
            "end-of-media": Shown(S.NO_MEDIA, "End of media"),
            "wrong-media": Shown(S.NO_MEDIA, "The printer has 29 x 90 mm die-cut labels"),
            "cover-open": Shown(S.ERROR, "Cover open"),
            "cutter-jam": Shown(S.PAPER_JAM, "Cutter jam"),
            "overheat": Shown(S.WARNING, "Cooling down"),
            "offline": Shown(S.DISCONNECTED, "no answer to the status request (ESC i S)"),
        },
        timing=BrotherTiming(status_timeout=0.3, page_timeout=0.5, raw_quiet=0.05),
        reference=brother_reference.labels,
    ),
    Entry(
        family=dymo.FAMILY,
        # A custom label at 300 dpi, a whole number of bytes wide (the printer's lines are bytes).
        label=LabelSize(dpi=300, width_dots=296, height_dots=160),
        settings={
            "POLL_INTERVAL": "3600",
            "LABEL": "custom",
            "LABEL_WIDTH_DOTS": "296",
            "LABEL_LENGTH_DOTS": "160",
        },
        faults={
            "paper-out": Shown(S.NO_MEDIA, "Paper out"),
            "jam": Shown(S.PAPER_JAM, "Paper jam"),
            "error": Shown(S.ERROR, "Printer error"),
            "offline": Shown(S.DISCONNECTED, "no answer to the status query (ESC A)"),
        },
        timing=DymoTiming(status_timeout=0.3, label_status_timeout=0.3),
        reference=dymo_reference.labels,
    ),
    Entry(
        family=tspl.FAMILY,
        # A 50 x 30 mm label at 203 dpi (8 dots/mm): a TSC TE200's usual small label.
        label=LabelSize(dpi=203, width_dots=400, height_dots=240),
        settings={"POLL_INTERVAL": "3600", "LABEL_WIDTH_MM": "50", "LABEL_HEIGHT_MM": "30"},
        faults={
            "paper-out": Shown(S.NO_MEDIA, "Paper out"),
            "ribbon-out": Shown(S.NO_MEDIA, "Ribbon out"),
            "head-open": Shown(S.ERROR, "Print head open"),
            "cover-open": Shown(S.ERROR, "Cover open"),
            "jam": Shown(S.PAPER_JAM, "Paper jam"),
            "paused": Shown(S.WARNING, "Paused"),
            "temperature": Shown(S.ERROR, "Temperature out of range"),
            "offline": Shown(S.DISCONNECTED, "no answer to the status query (ESC ! ?)"),
        },
        # After a label the simulator, on the agent's own loop, may lag under load: a timeout
        # there fails the attempt and the label prints again, so give it room; polls stay quick.
        timing=TsplTiming(status_timeout=0.3, label_status_timeout=2.0, model_timeout=0.1),
        reference=tspl_reference.labels,
    ),
    # The template family (drivers/template/), the example to copy: its whole conformance entry.
    Entry(
        family=template.FAMILY,
        label=LabelSize(dpi=203, width_dots=384, height_dots=160),
        settings={"POLL_INTERVAL": "3600", "LABEL_WIDTH_DOTS": "384", "LABEL_HEIGHT_DOTS": "160"},
        faults={
            "paper-low": Shown(S.WARNING, "Paper low"),
            "paper-out": Shown(S.NO_MEDIA, "Paper out"),
            "offline": Shown(S.DISCONNECTED, "no answer to STATUS?"),
        },
        # Not needed (the driver's default), shown here for a family whose serial port needs more.
        pty_connection=lambda path: f"serial://{path}?baudrate=9600",
        timing=TemplateTiming(status_timeout=0.3),
    ),
)
