"""A crash between storing a central job and reporting it accepted neither loses nor repeats a label."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from agent.appkeys import SETTINGS
from agent.central.store import CentralStore
from tests.central.conftest import StartAgent, printed_labels, printer_pk
from tests.central.fake_plugin import FakeCentral
from tests.conftest import label_pdf
from tests.waiting import wait_until


async def test_a_restart_after_storing_before_accepting_prints_each_label_once(
    central: FakeCentral, start_agent: StartAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_accept = CentralStore.accept
    stuck = asyncio.Event()

    async def never_accepts(self: CentralStore, job_id: str, now: str) -> None:
        stuck.set()
        await asyncio.Event().wait()  # the agent "crashes" here: stopped before accepting

    monkeypatch.setattr(CentralStore, "accept", never_accepts)
    first = await start_agent()
    job = central.add_job(printer_pk(first), [label_pdf(1), label_pdf(1)])
    await wait_until(stuck.is_set, what="both documents stored")
    await wait_until(lambda: len(printed_labels(first)) == 2, 20, "the stored documents printed")
    assert job.state == "fetched"
    await first.close()

    monkeypatch.setattr(CentralStore, "accept", real_accept)
    second = await start_agent()
    await wait_until(lambda: job.state == "done", 20, "the job done on the server")

    assert central.states(job)[0] == "accepted"
    assert job.reports[-1]["printed"] == 2
    assert len(printed_labels(second)) == 2
    with sqlite3.connect(second.app[SETTINGS].database_path) as conn:
        assert conn.execute("SELECT count(*) FROM job").fetchone()[0] == 2


async def test_reports_queued_before_a_restart_are_delivered_after_it(
    central: FakeCentral, start_agent: StartAgent
) -> None:
    first = await start_agent()
    job = central.add_job(printer_pk(first), [label_pdf(1)])
    await wait_until(lambda: "accepted" in central.states(job), what="accepted")
    await central.stop()
    await wait_until(lambda: len(printed_labels(first)) == 1, 20, "the label printed")
    await first.close()

    await central.start()
    await start_agent()

    await wait_until(lambda: job.state == "done", 20, "done delivered after the restart")
    assert central.states(job)[0] == "accepted"
