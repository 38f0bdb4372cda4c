"""Media reported by a printer's status: on the machine, read by `page_format`, refused if wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from agent.app import create_app
from agent.appkeys import REGISTRY
from agent.config import Settings
from drivers.base import DriverContext, LabelPrinterStatus
from drivers.kit import Condition, PrinterNotReady, StatusReport
from drivers.media import Media, MediaMismatch
from tests.conftest import (
    CHEAP_PASSWORD_COST,
    TEST_DRIVERS,
    Headers,
    create_machine,
    label_pdf,
    wait_for_job,
)
from tests.driver_fakes import FakeMachine
from tests.fake_drivers import MediaDriver
from tests.waiting import wait_until

Client = TestClient[Any, Any]
CONTINUOUS_29 = Media(kind="continuous", width_mm=29)
CONTINUOUS_62 = Media(kind="continuous", width_mm=62)
MISMATCH = (
    "The printer has 29 mm wide continuous media loaded; this machine is set up for "
    "62 mm wide media"
)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(
        settings,
        extra_drivers=(*TEST_DRIVERS, "tests.fake_drivers:MediaDriver"),
        password_cost=CHEAP_PASSWORD_COST,
    )


def _driver(client: Client) -> MediaDriver:
    driver = client.app[REGISTRY].drivers["media"]
    assert isinstance(driver, MediaDriver)
    return driver


async def _load(client: Client, pk: str, media: Media) -> None:
    """Put media in the printer and let the driver read it, as the poller would."""
    driver = _driver(client)
    driver.loaded[pk] = media
    machine = client.app[REGISTRY].get(pk)
    assert machine is not None
    await driver.poll(machine)


async def _print(client: Client, headers: Headers, pk: str) -> Any:
    return await client.post(
        f"/api/machine/{pk}/print/",
        data=label_pdf(size=(300, 150)),
        headers={**headers, "Content-Type": "application/pdf"},
    )


def test_media_in_words() -> None:
    assert (
        Media(kind="die-cut", width_mm=62, length_mm=29).describe() == "62 x 29 mm die-cut labels"
    )
    assert CONTINUOUS_62.describe() == "62 mm wide continuous media"
    assert Media(length_dots=1218).describe() == "1218 dots long media"
    assert Media(kind="black-mark", name="DK-11201").describe() == "black-mark media (DK-11201)"
    assert Media(loaded=False, width_mm=62).describe() == "no media"
    assert str(MediaMismatch(CONTINUOUS_29, "62 mm wide media")) == MISMATCH


def test_a_status_report_with_media_records_it_and_one_without_keeps_the_last(
    tmp_path: Path,
) -> None:
    machine = FakeMachine(MediaDriver(DriverContext(tmp_path)))
    StatusReport(media=CONTINUOUS_29).apply(machine)
    assert machine.media == CONTINUOUS_29
    StatusReport().apply(machine)
    assert machine.media == CONTINUOUS_29
    # A report that stops the job still records what is loaded, before the job waits.
    out = StatusReport((Condition(LabelPrinterStatus.NO_MEDIA, "Paper out"),), media=Media(False))
    with pytest.raises(PrinterNotReady):
        out.raise_if_blocking(machine)
    assert machine.media == Media(loaded=False)


async def test_page_format_uses_the_loaded_media(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="auto", driver="media")
    resp = await client.put(
        f"/api/machine/{machine['pk']}/settings/D/WIDTH_MM/", json={"value": "0"}, headers=admin
    )
    assert resp.status == 200
    await _load(client, machine["pk"], CONTINUOUS_29)
    assert client.app[REGISTRY].get(machine["pk"]).media == CONTINUOUS_29  # type: ignore[union-attr]
    resp = await _print(client, admin, machine["pk"])
    assert resp.status == 201, await resp.text()
    await wait_for_job(client, admin, (await resp.json())["pk"], ("complete",))
    # 29 mm at 300 dpi: 343 dots; the 300-dot page is centred on it.
    assert _driver(client).page_sizes == [(343, 150)]


async def test_a_job_for_other_media_is_refused_before_it_is_stored(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="fixed", driver="media")
    await _load(client, machine["pk"], CONTINUOUS_29)
    resp = await _print(client, admin, machine["pk"])
    assert resp.status == 400
    assert await resp.json() == {"non_field_errors": [MISMATCH]}
    jobs = await (await client.get("/api/machine/jobs/", headers=admin)).json()
    assert jobs == []


async def test_a_queued_job_waits_for_the_right_media_then_prints(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="swapped", driver="media")
    await _load(client, machine["pk"], CONTINUOUS_62)
    # The roll is swapped after the job was accepted: the driver finds out when it prints.
    _driver(client).loaded[machine["pk"]] = CONTINUOUS_29
    resp = await _print(client, admin, machine["pk"])
    assert resp.status == 201
    pk = (await resp.json())["pk"]
    job: dict[str, Any] = {}

    async def failed_once() -> bool:
        nonlocal job
        job = await (await client.get(f"/api/machine/jobs/{pk}/", headers=admin)).json()
        return bool(job["errors"])

    await wait_until(failed_once, 30)
    # It waits (queued, not failed), saying what is loaded; so does the machine.
    assert job["status"] in ("queued", "printing")
    assert set(job["errors"]) == {MISMATCH}
    shown = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert (shown["status"], shown["status_text"]) == (LabelPrinterStatus.NO_MEDIA, MISMATCH)
    assert _driver(client).page_sizes == []
    # The right roll goes back in; the poller reads it, and the job prints on its next try.
    await _load(client, machine["pk"], CONTINUOUS_62)
    done = await wait_for_job(client, admin, pk, ("complete",))
    assert done["progress"] == 1
    assert _driver(client).page_sizes == [(732, 150)]
