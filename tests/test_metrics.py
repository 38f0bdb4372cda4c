"""`/metrics`: Prometheus text, loopback only by default, bounded labels."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from agent.api.prometheus import allowed
from agent.app import create_app
from agent.config import MetricsConfig, Settings
from tests.clocks import SteppableClock
from tests.conftest import (
    CHEAP_PASSWORD_COST,
    TEST_DRIVERS,
    Headers,
    create_machine,
    label_pdf,
    wait_for_job,
)
from tests.waiting import wait_until

Client = TestClient[Any, Any]


async def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    resp = await client.get("/metrics")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def _start(aiohttp_client: Any, settings: Settings) -> Client:
    app: web.Application = create_app(
        settings,
        extra_drivers=TEST_DRIVERS,
        clock=SteppableClock(),
        password_cost=CHEAP_PASSWORD_COST,
    )
    client: Client = await aiohttp_client(app)
    return client


async def test_requests_are_counted_by_route_template(client: Client, admin: Headers) -> None:
    one = await create_machine(client, admin, name="one")
    two = await create_machine(client, admin, name="two")
    for machine in (one, two, one):
        assert (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).status == 200
    assert (await client.get("/api/nothing-here/", headers=admin)).status == 404

    samples = await _scrape(client)
    route = (("method", "GET"), ("route", "/api/machine/{pk}/"), ("status", "200"))
    assert samples[("inventree_edge_http_requests_total", route)] == 3
    # Raw paths never become labels: one series per route template.
    assert not [key for key in samples if one["pk"] in str(key) or two["pk"] in str(key)]
    assert (
        samples[
            (
                "inventree_edge_http_requests_total",
                (("method", "GET"), ("route", "/api/{tail}"), ("status", "404")),
            )
        ]
        == 1
    )
    latency = (
        "inventree_edge_http_request_duration_seconds_count",
        (("route", "/api/machine/{pk}/"),),
    )
    assert samples[latency] == 3


async def test_jobs_labels_printers_and_queues(client: Client, admin: Headers) -> None:
    desk = await create_machine(client, admin, name="desk")
    shelf = await create_machine(client, admin, name="shelf", active=False)
    done = await client.post(
        f"/api/machine/{desk['pk']}/print/?copies=2",
        data=label_pdf(3),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert done.status == 201
    waiting = await client.post(
        f"/api/machine/{shelf['pk']}/print/",
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert waiting.status == 201
    await wait_for_job(client, admin, (await done.json())["pk"], ("complete",))

    async def labels_counted() -> bool:
        return (await _scrape(client))[("inventree_edge_labels_printed_total", ())] == 6

    await wait_until(labels_counted, 10.0, "six labels counted")

    async def desk_queue_empty() -> bool:
        samples = await _scrape(client)
        return samples[("inventree_edge_queue_depth", (("machine", "desk"),))] == 0

    # The finished job leaves the desk's queue just after its status is saved.
    await wait_until(desk_queue_empty, 10.0, "the desk's queue empty")
    samples = await _scrape(client)
    assert samples[("inventree_edge_jobs_finished_total", (("outcome", "complete"),))] == 1
    assert samples[("inventree_edge_jobs_finished_total", (("outcome", "failed"),))] == 0
    status = "inventree_edge_machine_status"
    assert (
        samples[(status, (("driver", "virtual"), ("machine", "desk"), ("state", "connected")))]
        == 100
    )
    assert (
        samples[(status, (("driver", "virtual"), ("machine", "shelf"), ("state", "inactive")))] == 0
    )
    assert samples[("inventree_edge_machines", (("state", "connected"),))] == 1
    assert samples[("inventree_edge_queue_depth", (("machine", "shelf"),))] == 1
    assert samples[("inventree_edge_queue_oldest_job_age_seconds", (("machine", "shelf"),))] >= 0
    assert ("inventree_edge_event_loop_lag_seconds", ()) in samples
    assert samples[("inventree_edge_registry_errors", ())] == 0


async def test_clients_outside_the_allowed_networks_are_refused(
    aiohttp_client: Any, settings: Settings
) -> None:
    remote_only = settings.model_copy(update={"metrics": MetricsConfig(allow=["192.0.2.0/24"])})
    client = await _start(aiohttp_client, remote_only)
    resp = await client.get("/metrics")
    assert resp.status == 403
    assert "[metrics] allow" in (await resp.json())["detail"]


async def test_metrics_can_be_turned_off(aiohttp_client: Any, settings: Settings) -> None:
    off = settings.model_copy(update={"metrics": MetricsConfig(enabled=False)})
    client = await _start(aiohttp_client, off)
    assert (await client.get("/metrics")).status == 404


async def test_only_get_is_served(client: Client) -> None:
    resp = await client.post("/metrics")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack socket's form of an IPv4 client
        ("192.168.1.10", False),
        ("fe80::1%eth0", False),
        (None, False),
    ],
)
def test_loopback_is_the_default(remote: str | None, expected: bool) -> None:
    assert allowed(remote, MetricsConfig()) is expected


def test_a_network_with_host_bits_is_accepted_and_nonsense_refused() -> None:
    assert allowed("10.1.2.3", MetricsConfig(allow=["10.0.0.1/8"]))
    with pytest.raises(ValueError, match="not an IP address or network"):
        MetricsConfig(allow=["printers.local"])
