"""The template family's driver: pages as LABEL/rows/PRINT, status from STATUS?.

A label counts as printed when its PRINT was sent and the status read right after it says the
printer can go on. The language has no label counter, so a label on its way when the line dropped
may print again when the job resumes; it is never left out. (A family whose printer counts its
labels, as Zebra's odometer does, confirms each label with the count instead.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from drivers.kit import (
    ConnectedDriver,
    Machine,
    PageFormat,
    PrinterSilent,
    PrintFailed,
    PrintJob,
    RenderOptions,
    SettingDef,
    StatusReport,
    connection_setting,
    int_range,
    labels,
    poll_interval_setting,
    raw_copies,
    reporting,
    threshold_settings,
)
from drivers.template.protocol import STATUS_QUERY, decode_status, encode_label
from drivers.template.status import status_report
from drivers.transport import (
    Transport,
    TransportError,
    TransportTimeout,
    discard_received,
    read_until,
)

if TYPE_CHECKING:
    from PIL.Image import Image

# The printer answers STATUS? once it has taken what came before it: within 2 s even after a long
# label at 9600 baud. Every wait on the printer has a timeout like this one.
STATUS_TIMEOUT = 2.0
# A status line is a few words; a longer "line" is not this printer talking.
MAX_STATUS_LINE = 256


class TemplateDriver(ConnectedDriver[None]):
    """The template family's line printer over TCP, serial, USB or a device file (an example)."""

    SLUG = "template"
    NAME = "Template line printer"
    DESCRIPTION = "An example family to copy: a line raster protocol with STATUS? (not a product)"
    MACHINE_SETTINGS: ClassVar[Mapping[str, SettingDef]] = {
        "CONNECTION": connection_setting("tcp://192.168.1.80:9100"),
        "DPI": {
            "name": "Resolution",
            "description": "Print head dots per inch",
            "default": 203,
            "validator": int,
            "choices": [("203", "203 dpi"), ("300", "300 dpi")],
        },
        "LABEL_WIDTH_DOTS": {
            "name": "Label width",
            "description": "Width of the printable area in dots",
            "default": 384,
            "validator": [int, int_range(8, 4000)],
            "units": "dots",
        },
        "LABEL_HEIGHT_DOTS": {
            "name": "Label length",
            "description": "Length of the label in dots; 0 takes each page's own length",
            "default": 0,
            "validator": [int, int_range(0, 40000, " (0: the page's length)")],
            "units": "dots",
        },
        **threshold_settings(),
        "POLL_INTERVAL": poll_interval_setting(30),
    }

    def new_state(self) -> None:
        """No per-machine state: the link is all this printer needs."""

    async def poll(self, machine: Machine) -> None:
        """Ask STATUS? and show the status, its text and the paper property."""
        link = self._connections.get(machine).link
        async with link.exchange() as transport:
            await discard_received(transport)
            report = await query_status(transport)
        report.apply(machine)

    def page_format(self, machine: Machine) -> PageFormat:
        """The label in dots at the head's resolution (length None: each page's own)."""
        height = int(machine.get_setting("LABEL_HEIGHT_DOTS", "D"))
        return PageFormat(
            dpi=int(machine.get_setting("DPI", "D")),
            width_dots=int(machine.get_setting("LABEL_WIDTH_DOTS", "D")),
            height_dots=height or None,
        )

    def render_options(self, machine: Machine) -> RenderOptions:
        """Threshold and dithering from the settings."""
        return RenderOptions(
            threshold=int(machine.get_setting("THRESHOLD", "D")),
            dither=bool(machine.get_setting("DITHER", "D")),
        )

    async def print(self, machine: Machine, job: PrintJob) -> None:
        """Check the printer can print, then send each label and confirm it with STATUS?.

        Raw jobs (`job.raw`, in the printer's language) are sent unchanged, once per copy.
        """
        link = self._connections.get(machine).link
        async with link.exchange() as link_transport:
            transport = reporting(link_transport, job)
            await discard_received(transport)
            (await query_status(transport)).raise_if_blocking(machine)
            if job.raw is not None:
                for copy in raw_copies(job):
                    await transport.write(job.raw)
                    (await query_status(transport)).raise_if_blocking(machine)
                    job.report_progress(copy + 1)
                return
            async for number, page in labels(job):
                await transport.write(await asyncio.to_thread(_encode, page))
                (await query_status(transport)).raise_if_blocking(machine)
                job.report_progress(number + 1)


async def query_status(transport: Transport) -> StatusReport:
    """Send STATUS? and read the answer; `PrinterSilent` if none comes within `STATUS_TIMEOUT`."""
    await transport.write(STATUS_QUERY)
    try:
        line = await read_until(transport, b"\n", STATUS_TIMEOUT, max_size=MAX_STATUS_LINE)
    except TransportTimeout as err:
        raise PrinterSilent(
            f"no answer to STATUS? within {STATUS_TIMEOUT:g} s: the printer is off or unreachable"
        ) from err
    try:
        return status_report(decode_status(line))
    except ValueError as err:
        raise TransportError(
            f"unexpected status reply: is this the template printer? ({err})"
        ) from err


def _encode(page: Image) -> bytes:
    """One label's bytes (runs in a thread); a page the encoder refuses can never print."""
    try:
        return encode_label(page)
    except ValueError as err:
        raise PrintFailed(f"this page cannot be printed: {err}") from err
