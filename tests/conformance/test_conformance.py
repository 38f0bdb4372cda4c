"""The conformance suite: what every printer family in the matrix does, end to end.

Through the real HTTP API of the real app (aiohttp server, SQLite file, queue, render worker) to
the family's driver and its simulator, over a loopback TCP port and over a pseudo-terminal.
"""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from drivers.base import LabelPrinterStatus
from drivers.sim.base import LINK_FAULTS, Simulator
from tests.conformance.entry import Entry
from tests.conformance.harness import (
    Client,
    Printer,
    all_same,
    label_ends,
    wait_for_machine,
    wait_until,
)
from tests.conformance.matrix import MATRIX
from tests.conftest import Headers, create_machine

PAGES = 3
COPIES = 2


@pytest.mark.parametrize("entry", MATRIX, ids=lambda entry: entry.slug)
def test_the_entry_says_what_every_declared_fault_shows(entry: Entry) -> None:
    assert set(entry.faults) == entry.declared_faults()
    # The declaration (what `simulate --help` lists) is what the simulator takes.
    assert entry.declared_faults() == entry.simulator.FAULTS - LINK_FAULTS


async def test_a_pdf_prints_every_label_once_with_the_rendered_pixels(
    printer: Printer, entry: Entry
) -> None:
    start = len(printer.tap.streams[-1])
    job = await printer.print_pdf(PAGES, COPIES)
    done = await printer.finished(job)
    assert (done["status"], done["progress"], done["errors"]) == ("complete", PAGES * COPIES, [])
    pages = printer.rendered_pages(PAGES)
    assert all_same((label.image for label in printer.sim.labels), pages * COPIES)
    if entry.reference is not None:
        # The same bytes read from the vendor's manual, independently of the family's code.
        received = bytes(printer.tap.streams[-1][start:])
        decoded = await asyncio.to_thread(entry.reference, received)
        read = [label.convert("1", dither=Image.Dither.NONE) for label in decoded]
        assert all_same(read, pages * COPIES)
    # Copies of a one-page document (which a driver may send as one command with a count).
    before = len(printer.sim.labels)
    job = await printer.print_pdf(1, 3)
    done = await printer.finished(job)
    assert (done["status"], done["progress"]) == ("complete", 3)
    assert all_same((label.image for label in printer.sim.labels[before:]), pages[:1] * 3)
    assert (await printer.get())["status"] == LabelPrinterStatus.CONNECTED


async def test_every_declared_fault_shows_as_its_status_within_one_poll(
    tcp_printer: Printer, entry: Entry, sim: Simulator
) -> None:
    # "offline" last: a printer that went silent is reconnected later, not at the next poll.
    for fault in sorted(entry.faults, key=lambda name: name == "offline"):
        shown = entry.faults[fault]
        sim.set_fault(fault)
        machine = await tcp_printer.poll()
        assert machine["status"] == shown.status, (fault, machine["status_text"])
        assert machine["status_text"].startswith(shown.text), (fault, machine["status_text"])
        sim.clear_fault()
        if fault != "offline":
            machine = await tcp_printer.poll()
            assert (machine["status"], machine["status_text"]) == (100, ""), fault


async def test_a_line_lost_inside_a_label_resumes_with_each_label_printed_once(
    printer: Printer, entry: Entry, sim: Simulator
) -> None:
    # A first job shows where in the stream the labels end.
    start = len(printer.tap.streams[-1])
    first = await printer.finished(await printer.print_pdf(PAGES, COPIES))
    assert first["status"] == "complete"
    job_bytes = bytes(printer.tap.streams[-1][start:])
    ends = await asyncio.to_thread(label_ends, entry, job_bytes, 2)
    assert ends[0] < ends[1] <= len(job_bytes)
    # The second job's line drops (TCP) or goes deaf (pty) in the middle of its second label.
    cut = len(printer.tap.streams[-1]) + (ends[0] + ends[1]) // 2
    sim.set_fault("disconnect-mid-job", after_bytes=cut)
    before = len(sim.labels)
    job = await printer.print_pdf(PAGES, COPIES)

    async def waiting() -> bool:
        current = await printer.job(job)
        machine = await printer.get()
        return (
            current["status"] == "queued"
            and current["attempts"] > 0
            and (machine["status"] == LabelPrinterStatus.DISCONNECTED)
        )

    await wait_until(waiting, "the job waits for the printer to come back")
    # Cut inside the job: its first label printed (a driver may not have counted it yet).
    assert len(sim.labels) > before
    assert (await printer.job(job))["progress"] < PAGES * COPIES
    sim.clear_fault()
    done = await printer.finished(job)
    assert (done["status"], done["progress"]) == ("complete", PAGES * COPIES)
    pages = printer.rendered_pages(PAGES)
    assert all_same((label.image for label in sim.labels[before:]), pages * COPIES)


async def test_a_cancelled_job_stops_after_its_current_label(
    tcp_printer: Printer, sim: Simulator
) -> None:
    copies = 1000  # far more than can print before the cancel lands
    job = await tcp_printer.print_pdf(PAGES, copies)

    async def started() -> bool:
        return bool((await tcp_printer.job(job))["progress"] >= 1)

    await wait_until(started, "the first label is printed")
    resp = await tcp_printer.client.delete(
        f"/api/machine/jobs/{job['pk']}/", headers=tcp_printer.headers
    )
    assert resp.status in (200, 202), await resp.text()
    done = await tcp_printer.finished(job)
    assert done["status"] == "cancelled"
    progress = done["progress"]
    assert 1 <= progress < PAGES * copies
    # Exactly the labels counted, each once, none half done: the document's first labels in order.
    pages = tcp_printer.rendered_pages(PAGES)
    assert all_same((label.image for label in sim.labels), (pages * copies)[:progress])
    # The printer is free again: the next job prints.
    after = await tcp_printer.finished(await tcp_printer.print_pdf(1, 1))
    assert after["status"] == "complete"
    assert len(sim.labels) == progress + 1


async def test_a_bad_connection_is_refused_with_the_reason(
    client: Client, admin: Headers, entry: Entry
) -> None:
    machine = await create_machine(client, admin, name="bad", driver=entry.slug)
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/CONNECTION/",
        json={"value": "serial://dev/ttyUSB0"},
        headers=admin,
    )
    assert resp.status == 400
    body = await resp.json()
    assert "three slashes, for example serial:///dev/ttyUSB0" in body["non_field_errors"][0]
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert detail["initialized"] is False
    assert detail["machine_errors"][-1] == "Missing DRIVER settings: CONNECTION"


async def test_an_unreachable_printer_is_disconnected_with_the_reason(
    client: Client, admin: Headers, entry: Entry, unused_tcp_port: int
) -> None:
    machine = await create_machine(client, admin, name="away", driver=entry.slug)
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/CONNECTION/",
        json={"value": entry.tcp_connection("127.0.0.1", unused_tcp_port)},
        headers=admin,
    )
    assert resp.status == 200
    detail = await wait_for_machine(
        client, admin, machine["pk"], lambda m: m["status"] == 400, "the poll finds no printer"
    )
    assert detail["initialized"] is True
    assert detail["status_text"].startswith("printer unreachable: connection refused")
