"""The central link against a fake plugin server: reports, jobs into the local queue, the outbox."""

from __future__ import annotations

import itertools
import json
import sqlite3
from typing import Any

from agent.appkeys import CENTRAL, REGISTRY, SETTINGS
from agent.central.link import LinkTiming
from agent.config import Settings
from drivers.base import LabelPrinterStatus
from tests.central.conftest import Client, StartAgent, printed_labels, printer_pk
from tests.central.fake_plugin import FakeCentral, FakeJob
from tests.conftest import label_pdf
from tests.waiting import wait_until


def _local_jobs(client: Client) -> list[tuple[str, str, int]]:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, status, copies FROM job ORDER BY seq"
        ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def _finished(central: FakeCentral, job: FakeJob, state: str = "done") -> None:
    await wait_until(lambda: job.state == state, 20, f"job {job.id} {state} on the server")


async def test_reports_its_printers_at_start(central: FakeCentral, start_agent: StartAgent) -> None:
    client = await start_agent()
    await wait_until(lambda: bool(central.reports), what="a report")

    report = central.reports[0]
    assert report["agent"]["report_interval"] == 30
    assert isinstance(report["agent"]["report_interval"], int)
    (printer,) = report["printers"]
    assert printer["key"] == printer_pk(client)
    assert (printer["name"], printer["driver"]) == ("Zebra", "virtual")
    assert printer["status"] in (100, 101)
    assert central.agents == {"test-agent"}


async def test_a_status_change_is_reported_soon(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    await wait_until(lambda: bool(central.reports), what="the first report")
    machine = client.app[REGISTRY].get(printer_pk(client))
    assert machine is not None

    machine.set_status(LabelPrinterStatus.NO_MEDIA)
    machine.set_status_text("Paper out")

    def reported_paper_out() -> bool:
        printers = central.reports[-1]["printers"]
        return printers[0]["status"] == 301 and printers[0]["status_text"] == "Paper out"

    await wait_until(reported_paper_out, what="a report with the new status")


async def test_status_changes_are_reported_at_most_once_per_debounce_interval(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(timing=LinkTiming(report_debounce_s=0.3))
    await wait_until(lambda: bool(central.reports), what="the first report")
    machine = client.app[REGISTRY].get(printer_pk(client))
    assert machine is not None
    first = len(central.reports)

    # A printer that flaps: each change a few of the agent's polls after the previous one.
    for status in [LabelPrinterStatus.PRINTING, LabelPrinterStatus.CONNECTED] * 10:
        machine.set_status(status)
        seen = len(central.requests)
        await wait_until(
            lambda seen=seen: len(central.requests) >= seen + 2, what="two more requests"
        )
    machine.set_status(LabelPrinterStatus.PAPER_JAM)

    await wait_until(
        lambda: central.reports[-1]["printers"][0]["status"] == 302, what="the last status"
    )
    times = central.report_times[first - 1 :]
    assert len(times) >= 2
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.29


async def test_publish_names_the_printers_reported(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    await start_agent(publish=["Another"])
    await wait_until(lambda: bool(central.reports), what="a report")
    assert central.reports[0]["printers"] == []


async def test_a_job_prints_each_document_with_its_copies_and_is_reported_done(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    pk = printer_pk(client)
    job = central.add_job(pk, [label_pdf(1), label_pdf(1)], copies=2)

    await _finished(central, job)

    assert central.states(job)[0] == "accepted"
    assert central.states(job)[-1] == "done"
    assert job.reports[-1]["printed"] == job.reports[-1]["total"] == 4
    assert [key for key, _, _ in _local_jobs(client)] == [
        f"central:{job.id}:0",
        f"central:{job.id}:1",
    ]
    assert {(status, copies) for _, status, copies in _local_jobs(client)} == {("complete", 2)}
    assert len(printed_labels(client)) == 4


async def test_the_job_options_reach_the_printer_and_empty_ones_are_left_out(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    job = central.add_job(
        printer_pk(client), [label_pdf(1)], options={"rotation": 90, "threshold": None}
    )

    await _finished(central, job)

    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        (options,) = conn.execute("SELECT options FROM job").fetchone()
    assert json.loads(options)["rotation"] == 90
    assert "threshold" not in json.loads(options)


async def test_options_the_printer_cannot_take_fail_the_job_saying_which(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    job = central.add_job(printer_pk(client), [label_pdf(1)], options={"rotation": 45})

    await _finished(central, job, "failed")

    assert job.reports[-1]["message"].startswith("The job's options are not valid")
    assert "rotation" in job.reports[-1]["message"]
    assert _local_jobs(client) == []


async def test_a_job_delivered_twice_prints_once(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    job = central.add_job(printer_pk(client), [label_pdf(1)])
    await _finished(central, job)

    # The server lost the agent's reports and hands the job out again.
    job.state = "pending"
    job.reports.clear()
    central.job_added.set()
    await wait_until(
        lambda: (
            ("GET", f"/plugin/inventree-edge/jobs/{job.id}/documents/0/") in central.requests
            and len([r for r in central.requests if r[1].endswith("jobs/")]) > 3
        ),
        what="the job fetched again",
    )
    other = central.add_job(printer_pk(client), [label_pdf(1)])
    await _finished(central, other)

    assert len(_local_jobs(client)) == 2
    assert len(printed_labels(client)) == 2


async def test_a_job_for_an_unknown_printer_is_reported_failed(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    await start_agent()
    job = central.add_job("00000000-0000-0000-0000-000000000000", [label_pdf(1)])

    await _finished(central, job, "failed")

    assert "publishes no printer" in job.reports[-1]["message"]


async def test_a_document_that_is_not_a_pdf_fails_the_job_with_the_reason(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    job = central.add_job(printer_pk(client), [b"not a pdf"])

    await _finished(central, job, "failed")

    assert job.reports[-1]["message"].startswith("Document 0:")
    assert printed_labels(client) == []


async def test_a_document_over_the_size_limit_is_not_downloaded(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    limit = client.app[SETTINGS].http.max_body_bytes
    job = central.add_job(printer_pk(client), [label_pdf(1)], sizes=[limit + 1])

    await _finished(central, job, "failed")

    assert "more than this agent takes" in job.reports[-1]["message"]
    assert not any("/documents/" in path for _, path in central.requests)


async def test_a_document_larger_than_announced_is_cut_off_at_the_limit(
    central: FakeCentral, start_agent: StartAgent, settings: Settings
) -> None:
    settings.http.max_body_bytes = 4096
    client = await start_agent()
    job = central.add_job(printer_pk(client), [b"%PDF" + b"0" * 10_000], sizes=[100])

    await _finished(central, job, "failed")

    assert job.reports[-1]["message"].endswith("over 4096")
    assert _local_jobs(client) == []


async def test_a_document_gone_from_the_server_fails_the_job_and_cancels_the_rest(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(max_downloads=1)
    machine = client.app[REGISTRY].get(printer_pk(client))
    assert machine is not None
    machine.active = False  # the first document must still be queued when the second fails
    central.missing_documents = {1}
    job = central.add_job(printer_pk(client), [label_pdf(1), label_pdf(1)])

    await _finished(central, job, "failed")

    assert job.reports[-1]["message"].startswith("Document 1 could not be downloaded")
    assert [status for _, status, _ in _local_jobs(client)] == ["cancelled"]


async def test_at_most_max_downloads_documents_are_downloaded_at_once(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent(max_downloads=2, report_interval=0.05)
    central.documents_open.clear()
    job = central.add_job(printer_pk(client), [label_pdf(1) for _ in range(5)])
    await wait_until(lambda: central.downloads_in_flight == 2, what="two downloads waiting")
    # Reports go on meanwhile: the agent had time to start more downloads, and did not.
    reports = len(central.reports)
    await wait_until(lambda: len(central.reports) >= reports + 3, what="three more reports")

    central.documents_open.set()
    await _finished(central, job)

    assert central.most_downloads_in_flight == 2
    assert len(printed_labels(client)) == 5


async def test_results_wait_in_the_outbox_and_arrive_in_order_when_the_server_is_back(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    client = await start_agent()
    pk = printer_pk(client)
    machine = client.app[REGISTRY].get(pk)
    assert machine is not None
    # The printer pauses on each label, so the server can go away while the job prints.
    resp = await client.put(
        f"/api/machine/{pk}/settings/D/LABEL_DELAY_MS/",
        json={"value": "300"},
        headers=await _admin(client),
    )
    assert resp.status == 200, await resp.text()
    job = central.add_job(pk, [label_pdf(1), label_pdf(1)])
    await wait_until(lambda: "accepted" in central.states(job), what="the job accepted")

    await central.stop()
    await wait_until(lambda: len(printed_labels(client)) == 2, 20, "both labels printed")
    await wait_until(
        lambda: _link(client)["pending"] >= 1 and _link(client)["state"] == "unreachable",
        what="reports waiting while the server is away",
    )
    await central.start()

    await _finished(central, job)
    states = central.states(job)
    assert states[0] == "accepted"
    assert states[-1] == "done"
    assert states[1:-1]
    assert set(states[1:-1]) == {"printing"}
    printed = [report["printed"] for report in job.reports]
    assert printed == sorted(printed)
    await wait_until(lambda: _link(client)["pending"] == 0, what="the outbox empty")


_last: dict[str, Any] = {}


def _link(client: Client) -> dict[str, Any]:
    """The link's state as the API would show it (pending read from the database)."""
    status = client.app[CENTRAL].status.as_json()
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        status["pending"] = conn.execute("SELECT count(*) FROM central_outbox").fetchone()[0]
    return status


async def _admin(client: Client) -> dict[str, str]:
    from tests.conftest import admin_token

    return await admin_token(client)
