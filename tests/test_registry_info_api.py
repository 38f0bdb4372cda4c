"""`/api/machine/types/`, `/api/machine/drivers/`, `/api/`, and the generic status endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Headers, create_machine

Client = TestClient[Any, Any]
REPO = Path(__file__).resolve().parent.parent


async def test_types_list(client: Client, viewer: Headers) -> None:
    resp = await client.get("/api/machine/types/", headers=viewer)
    assert resp.status == 200
    assert await resp.json() == [
        {
            "slug": "label-printer",
            "name": "Label Printer",
            "description": "Directly print labels for various items.",
            "provider_file": str(REPO / "agent" / "machine_types.py"),
            "provider_plugin": None,
            "is_builtin": True,
        }
    ]


async def test_drivers_list_sorted_with_filter(client: Client, viewer: Headers) -> None:
    drivers = await (await client.get("/api/machine/drivers/", headers=viewer)).json()
    slugs = [d["slug"] for d in drivers]
    assert slugs == sorted(slugs)
    virtual = next(d for d in drivers if d["slug"] == "virtual")
    assert virtual == {
        "slug": "virtual",
        "name": "Virtual label printer",
        "description": virtual["description"],
        "provider_file": str(REPO / "drivers" / "virtual.py"),
        "provider_plugin": None,
        "is_builtin": True,
        "machine_type": "label-printer",
        "driver_errors": [],
    }
    filtered = await (
        await client.get("/api/machine/drivers/?machine_type=label-printer", headers=viewer)
    ).json()
    assert [d["slug"] for d in filtered] == slugs
    assert (
        await (await client.get("/api/machine/drivers/?machine_type=nope", headers=viewer)).json()
        == []
    )
    everything = await (
        await client.get("/api/machine/drivers/?machine_type=", headers=viewer)
    ).json()
    assert len(everything) == len(drivers)


async def test_read_endpoints_need_authentication(client: Client) -> None:
    for path in (
        "/api/machine/types/",
        "/api/machine/drivers/",
        "/api/machine/status/",
        "/api/machine/",
    ):
        resp = await client.get(path)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Token"
        assert await resp.json() == {"detail": "Authentication credentials were not provided."}


async def test_info_endpoint_is_public_and_inventree_shaped(client: Client) -> None:
    resp = await client.get("/api/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    info = await resp.json()
    assert info["server"] == "InvenTree"
    assert info["apiVersion"] == 303
    assert info["instance"] == "InvenTree Edge"
    assert list(info)[:4] == ["server", "version", "instance", "apiVersion"]
    assert info["agent"]["name"] == "inventree-edge"


async def test_generic_status_lists_label_printer_codes(client: Client, viewer: Headers) -> None:
    body = await (await client.get("/api/generic/status/", headers=viewer)).json()
    values = body["LabelPrinterStatus"]["values"]
    assert body["LabelPrinterStatus"]["status_class"] == "LabelPrinterStatus"
    assert {name: v["key"] for name, v in values.items()} == {
        "CONNECTED": 100,
        "UNKNOWN": 101,
        "PRINTING": 110,
        "WARNING": 200,
        "NO_MEDIA": 301,
        "PAPER_JAM": 302,
        "DISCONNECTED": 400,
        "ERROR": 500,
    }
    assert values["NO_MEDIA"] == {
        "key": 301,
        "name": "NO_MEDIA",
        "label": "No media",
        "color": "warning",
    }
    one = await (await client.get("/api/generic/status/LabelPrinterStatus/", headers=viewer)).json()
    assert one == body["LabelPrinterStatus"]
    resp = await client.get("/api/generic/status/Nope/", headers=viewer)
    assert resp.status == 400


async def test_machine_status_uses_the_type_codes(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, driver="virtual")
    url = f"/api/machine/{machine['pk']}/settings/D/FAULT/"
    await client.put(url, json={"value": "paper-out"}, headers=admin)
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert (detail["status"], detail["status_text"]) == (301, "Paper out")
