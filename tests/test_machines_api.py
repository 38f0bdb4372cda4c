"""`/api/machine/` list, create, detail, update, delete and restart, against InvenTree 303's answers."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.api import listing, views
from agent.appkeys import REGISTRY, SETTINGS
from drivers.base import LabelPrinterStatus, MachineProperty
from tests.conftest import Headers, create_machine

MACHINE_FIELDS = [
    "pk",
    "name",
    "machine_type",
    "driver",
    "initialized",
    "active",
    "status",
    "status_model",
    "status_text",
    "machine_errors",
    "is_driver_available",
    "restart_required",
    "properties",
    "status_read_at",
]

Client = TestClient[Any, Any]


def _rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    path = client.app[SETTINGS].database_path
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_create_returns_full_representation_in_field_order(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="Shipping")
    assert list(machine) == MACHINE_FIELDS
    assert uuid.UUID(machine["pk"]).version == 4
    assert machine["pk"] == machine["pk"].lower()
    assert machine["name"] == "Shipping"
    assert machine["machine_type"] == "label-printer"
    assert machine["driver"] == "virtual"
    assert machine["initialized"] is True
    assert machine["active"] is True
    assert machine["status"] == 100
    assert machine["status_model"] == "LabelPrinterStatus"
    assert machine["machine_errors"] == []
    assert machine["is_driver_available"] is True
    assert machine["restart_required"] is False
    assert machine["status_read_at"] is not None


async def test_create_is_persisted_before_the_answer(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="Stored")
    assert _rows(client, "SELECT pk, name, active FROM machine") == [(machine["pk"], "Stored", 1)]


async def test_create_inactive_machine_is_not_initialized(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, active=False)
    assert machine["active"] is False
    assert machine["initialized"] is False
    assert machine["status"] == 101


async def test_create_unknown_driver_is_accepted_with_error(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, driver="no-such-driver")
    assert machine["machine_errors"] == ["Driver 'no-such-driver' not found"]
    assert machine["initialized"] is False
    assert machine["is_driver_available"] is False
    assert machine["status"] == 101
    assert machine["status_model"] == "LabelPrinterStatus"


async def test_create_unknown_type_is_accepted_and_registry_error_added(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, machine_type="coffee-maker")
    assert machine["initialized"] is False
    assert machine["status"] == -1
    assert machine["status_model"] is None
    assert machine["machine_errors"] == []
    assert machine["is_driver_available"] is False
    status = await (await client.get("/api/machine/status/", headers=admin)).json()
    assert {"message": "Machine type 'coffee-maker' not found"} in status["registry_errors"]
    for path in ("settings/", "restart/"):
        method = client.get if path == "settings/" else client.post
        resp = await method(f"/api/machine/{machine['pk']}/{path}", headers=admin)
        assert resp.status == 404
        assert await resp.json() == {"detail": f"Machine '{machine['pk']}' not found"}


async def test_create_incompatible_driver_still_initialises(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, driver="other-type")
    assert machine["machine_errors"] == [
        "'Other type driver' is incompatible with machine type 'Label Printer'"
    ]
    assert machine["is_driver_available"] is True
    assert machine["initialized"] is True


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {f: ["This field is required."] for f in ("name", "machine_type", "driver")}),
        (
            {"name": "", "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["This field may not be blank."]},
        ),
        (
            {"name": "   ", "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["This field may not be blank."]},
        ),
        (
            {"name": "x" * 256, "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["Ensure this field has no more than 255 characters."]},
        ),
        (
            {"name": None, "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["This field may not be null."]},
        ),
        (
            {"name": ["a"], "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["Not a valid string."]},
        ),
        (
            {"name": "p", "machine_type": "label-printer", "driver": "virtual", "active": "maybe"},
            {"active": ["Must be a valid boolean."]},
        ),
        (
            {"name": "<b>bold</b>", "machine_type": "label-printer", "driver": "virtual"},
            {"name": ["Remove HTML tags from this value"]},
        ),
    ],
)
async def test_create_validation_errors(
    client: Client, admin: Headers, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    resp = await client.post("/api/machine/", json=body, headers=admin)
    assert resp.status == 400
    assert await resp.json() == errors
    assert _rows(client, "SELECT count(*) FROM machine") == [(0,)]


async def test_create_duplicate_name_is_400_and_case_sensitive(
    client: Client, admin: Headers
) -> None:
    await create_machine(client, admin, name="Dup")
    resp = await client.post(
        "/api/machine/",
        json={"name": "Dup", "machine_type": "label-printer", "driver": "virtual"},
        headers=admin,
    )
    assert resp.status == 400
    assert await resp.json() == {"name": ["machine config with this Name already exists."]}
    await create_machine(client, admin, name="dup")
    assert _rows(client, "SELECT count(*) FROM machine") == [(2,)]


async def test_create_strips_whitespace_and_control_characters(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="  Bench\x07 printer \n")
    assert machine["name"] == "Bench printer"


async def test_create_accepts_form_data_like_drf(client: Client, admin: Headers) -> None:
    form = {"name": "Form", "machine_type": "label-printer", "driver": "virtual", "active": "true"}
    resp = await client.post("/api/machine/", data=form, headers=admin)
    assert resp.status == 201
    assert (await resp.json())["active"] is True
    # DRF: a form without the boolean means "unchecked", so False.
    form = {"name": "Form2", "machine_type": "label-printer", "driver": "virtual"}
    resp = await client.post("/api/machine/", data=form, headers=admin)
    assert (await resp.json())["active"] is False


async def test_malformed_json_unsupported_type_and_non_object(
    client: Client, admin: Headers
) -> None:
    resp = await client.post(
        "/api/machine/",
        data=b"{not json",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["detail"].startswith("JSON parse error - ")
    resp = await client.post(
        "/api/machine/", data=b"name=x", headers={**admin, "Content-Type": "text/plain"}
    )
    assert resp.status == 415
    assert await resp.json() == {"detail": 'Unsupported media type "text/plain" in request.'}
    resp = await client.post("/api/machine/", json=[1, 2], headers=admin)
    assert resp.status == 400
    assert await resp.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }
    assert _rows(client, "SELECT count(*) FROM machine") == [(0,)]


async def test_oversized_body_is_413(client: Client, admin: Headers) -> None:
    limit = client.app[SETTINGS].http.max_body_bytes
    resp = await client.post(
        "/api/machine/",
        data=io.BytesIO(b"x" * (limit + 1)),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert "detail" in await resp.json()


async def test_list_is_bare_array_without_limit(client: Client, admin: Headers) -> None:
    await create_machine(client, admin, name="A")
    resp = await client.get("/api/machine/", headers=admin)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert isinstance(body, list)
    assert [m["name"] for m in body] == ["A"]


async def test_list_pagination_follows_drf(client: Client, admin: Headers) -> None:
    for index in range(5):
        await create_machine(client, admin, name=f"M{index}")
    resp = await client.get("/api/machine/?limit=2&ordering=name", headers=admin)
    page = await resp.json()
    assert list(page) == ["count", "next", "previous", "results"]
    assert page["count"] == 5
    assert [m["name"] for m in page["results"]] == ["M0", "M1"]
    assert page["previous"] is None
    base = str(client.make_url("/api/machine/"))
    assert page["next"] == f"{base}?limit=2&offset=2&ordering=name"
    page = await (
        await client.get("/api/machine/?limit=2&offset=2&ordering=name", headers=admin)
    ).json()
    assert [m["name"] for m in page["results"]] == ["M2", "M3"]
    assert page["previous"] == f"{base}?limit=2&ordering=name"
    page = await (
        await client.get("/api/machine/?limit=2&offset=4&ordering=name", headers=admin)
    ).json()
    assert page["next"] is None
    assert page["previous"] == f"{base}?limit=2&offset=2&ordering=name"
    # A limit that is not a positive integer means no pagination; offset alone is ignored.
    for query in ("limit=0", "limit=-1", "offset=3"):
        body = await (await client.get(f"/api/machine/?{query}", headers=admin)).json()
        assert isinstance(body, list)
        assert len(body) == 5


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("limit=abc", {"limit": ["A valid integer is required."]}),
        ("limit=2&offset=x", {"offset": ["A valid integer is required."]}),
        ("limit=2&limit=3", {"limit": ["Only one value is allowed."]}),
        ("limit=2&offset=1&offset=2", {"offset": ["Only one value is allowed."]}),
        ("search=a&search_whole=null", {"search_whole": ["Must be a valid boolean."]}),
        ("search_regex=maybe", {"search_regex": ["Must be a valid boolean."]}),
        ("active=maybe", {"active": ["Must be a valid boolean."]}),
    ],
)
async def test_list_parameters_of_the_wrong_type_are_400(
    client: Client, admin: Headers, query: str, errors: dict[str, list[str]]
) -> None:
    """The schema types `limit`/`offset` as integers and the flags as booleans: so does the server."""
    await create_machine(client, admin, name="A")
    resp = await client.get(f"/api/machine/?{query}", headers=admin)
    assert resp.status == 400
    assert await resp.json() == errors


async def test_regex_search_that_backtracks_does_not_block_the_loop(
    client: Client, admin: Headers, viewer: Headers
) -> None:
    """The reported freeze: a view-role user's catastrophic pattern must not stop the daemon."""
    await create_machine(client, admin, name="Warehouse label printer 01")
    await create_machine(client, admin, name="Office #2")
    resp = await client.get(
        "/api/machine/", params={"search_regex": "1", "search": "(.|.|.|.)*#"}, headers=viewer
    )
    assert resp.status == 200
    assert [m["name"] for m in await resp.json()] == ["Office #2"]


async def test_too_costly_regex_search_is_400_and_others_are_served_meanwhile(
    client: Client, admin: Headers, viewer: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A longer budget than the default, so "served meanwhile" holds on a loaded host too.
    monkeypatch.setattr(listing, "SEARCH_BUDGET_S", 2.0)
    await create_machine(client, admin, name="a" * 60 + "!")
    costly = asyncio.create_task(
        client.get(
            "/api/machine/", params={"search_regex": "1", "search": "(a|aa)+$"}, headers=viewer
        )
    )
    # The loop stays free while the pattern runs: other requests are answered before it ends.
    info = await client.get("/api/")
    assert info.status == 200
    assert not costly.done()
    resp = await costly
    assert resp.status == 400
    assert await resp.json() == {"search": [listing.SEARCH_TOO_COSTLY]}


async def test_overlong_regex_search_is_400(client: Client, viewer: Headers) -> None:
    pattern = "a" * (listing.SEARCH_MAX_LENGTH + 1)
    resp = await client.get(
        "/api/machine/", params={"search_regex": "true", "search": pattern}, headers=viewer
    )
    assert resp.status == 400
    assert "search" in await resp.json()
    # A plain search of the same length is only text to look for.
    resp = await client.get("/api/machine/", params={"search": pattern}, headers=viewer)
    assert resp.status == 200


async def test_list_filters(client: Client, admin: Headers) -> None:
    await create_machine(client, admin, name="On", driver="virtual")
    await create_machine(client, admin, name="Off", driver="recording", active=False)
    await create_machine(client, admin, name="Other", machine_type="other", driver="virtual")

    async def names(query: str) -> list[str]:
        body = await (await client.get(f"/api/machine/?{query}", headers=admin)).json()
        return sorted(m["name"] for m in body)

    assert await names("active=true") == ["On", "Other"]
    assert await names("active=False") == ["Off"]
    assert await names("active=0") == ["Off"]
    assert await names("driver=recording") == ["Off"]
    assert await names("driver=Recording") == []
    assert await names("machine_type=other") == ["Other"]
    assert await names("unknown=1") == ["Off", "On", "Other"]


async def test_list_search_matches_name_terms(client: Client, admin: Headers) -> None:
    for name in ("Warehouse Zebra", "Office Zebra", "Warehouse Brother"):
        await create_machine(client, admin, name=name)

    async def names(query: str) -> list[str]:
        body = await (await client.get(f"/api/machine/?{query}", headers=admin)).json()
        return sorted(m["name"] for m in body)

    assert await names("search=zebra") == ["Office Zebra", "Warehouse Zebra"]
    assert await names("search=warehouse,zeb") == ["Warehouse Zebra"]
    assert await names("search=ware%20bro") == ["Warehouse Brother"]
    assert await names("search=^Office&search_regex=1") == ["Office Zebra"]
    assert await names("search=zeb&search_whole=1") == []
    assert await names("search=virtual") == []


async def test_list_default_ordering_is_active_first_then_type(
    client: Client, admin: Headers
) -> None:
    await create_machine(client, admin, name="inactive-b", machine_type="b-type", active=False)
    await create_machine(client, admin, name="active-z", machine_type="z-type")
    await create_machine(client, admin, name="active-a", machine_type="a-type")
    body = await (await client.get("/api/machine/", headers=admin)).json()
    assert [m["name"] for m in body] == ["active-a", "active-z", "inactive-b"]
    body = await (await client.get("/api/machine/?ordering=-name", headers=admin)).json()
    assert [m["name"] for m in body] == ["inactive-b", "active-z", "active-a"]
    body = await (await client.get("/api/machine/?ordering=bogus", headers=admin)).json()
    assert [m["name"] for m in body] == ["active-a", "active-z", "inactive-b"]
    body = await (await client.get("/api/machine/?ordering=active,name", headers=admin)).json()
    assert [m["name"] for m in body] == ["inactive-b", "active-a", "active-z"]


async def test_detail_get_put_patch_delete(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, name="Detail")
    url = f"/api/machine/{machine['pk']}/"
    assert await (await client.get(url, headers=admin)).json() == machine

    resp = await client.put(
        url, json={"name": "Renamed", "machine_type": "x", "driver": "y"}, headers=admin
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["name"], body["machine_type"], body["driver"]) == (
        "Renamed",
        "label-printer",
        "virtual",
    )

    resp = await client.put(url, json={"active": False}, headers=admin)
    assert resp.status == 400
    assert await resp.json() == {"name": ["This field is required."]}

    resp = await client.patch(url, json={"active": False}, headers=admin)
    body = await resp.json()
    assert (body["active"], body["initialized"], body["name"]) == (False, False, "Renamed")

    resp = await client.patch(url, json={"active": True}, headers=admin)
    assert (await resp.json())["initialized"] is True

    resp = await client.delete(url, headers=admin)
    assert resp.status == 204
    assert await resp.read() == b""
    assert (await client.get(url, headers=admin)).status == 404
    assert _rows(client, "SELECT count(*) FROM machine") == [(0,)]


async def test_detail_rename_to_existing_name_is_400(client: Client, admin: Headers) -> None:
    await create_machine(client, admin, name="First")
    second = await create_machine(client, admin, name="Second")
    resp = await client.patch(
        f"/api/machine/{second['pk']}/", json={"name": "First"}, headers=admin
    )
    assert resp.status == 400
    assert await resp.json() == {"name": ["machine config with this Name already exists."]}
    resp = await client.patch(
        f"/api/machine/{second['pk']}/", json={"name": "Second"}, headers=admin
    )
    assert resp.status == 200


async def test_unknown_pk_and_malformed_urls(client: Client, admin: Headers) -> None:
    pk = str(uuid.uuid4())
    resp = await client.get(f"/api/machine/{pk}/", headers=admin)
    assert resp.status == 404
    assert await resp.json() == {"detail": "Not found."}
    resp = await client.post(f"/api/machine/{pk}/restart/", headers=admin)
    assert await resp.json() == {"detail": f"Machine '{pk}' not found"}
    for path in (
        "/api/machine",
        f"/api/machine/{pk.upper()}/",
        "/api/machine/not-a-uuid/",
        "/api/nothing/",
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert await resp.json() == {
            "detail": "API endpoint not found",
            "url": str(client.make_url(path)),
        }


async def test_restart_resets_errors_and_status_and_always_ok(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, driver="failing")
    assert machine["machine_errors"] == ["printer on fire"]
    url = f"/api/machine/{machine['pk']}/restart/"
    resp = await client.post(url, headers=admin)
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    detail = await (await client.get(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert detail["machine_errors"] == []
    assert detail["status"] == 101
    assert detail["initialized"] is False
    # Restart works for inactive machines and machines without a driver too.
    other = await create_machine(client, admin, name="nodriver", driver="missing", active=False)
    assert (await client.post(f"/api/machine/{other['pk']}/restart/", headers=admin)).status == 200
    assert (await client.get(url, headers=admin)).status == 405


async def test_method_not_allowed_after_auth(client: Client, admin: Headers) -> None:
    resp = await client.delete("/api/machine/")
    assert resp.status == 401
    resp = await client.delete("/api/machine/", headers=admin)
    assert resp.status == 405
    assert await resp.json() == {"detail": 'Method "DELETE" not allowed.'}
    resp = await client.post("/api/machine/types/", headers=admin)
    assert await resp.json() == {"detail": 'Method "POST" not allowed.'}


async def test_head_is_get_without_body(client: Client, admin: Headers, viewer: Headers) -> None:
    await create_machine(client, admin)
    for headers in (admin, viewer):
        resp = await client.head("/api/machine/", headers=headers)
        assert resp.status == 200
        assert await resp.read() == b""


async def test_options_metadata_for_the_web_ui(
    client: Client, admin: Headers, viewer: Headers
) -> None:
    body = await (await client.options("/api/machine/", headers=admin)).json()
    assert body["name"] == "Machine List"
    assert body["model"] == "machineconfig"
    assert body["parses"] == [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]
    post = body["actions"]["POST"]
    assert post["name"] == {
        "type": "string",
        "required": True,
        "read_only": False,
        "label": "Name",
        "help_text": "Name of machine",
        "max_length": 255,
    }
    assert post["driver"]["required"] is True
    assert body["actions"]["GET"]["driver"]["read_only"] is True
    assert post["active"]["default"] is True
    # A user who may only view gets no POST action.
    body = await (await client.options("/api/machine/", headers=viewer)).json()
    assert set(body["actions"]) == {"GET"}

    machine = await create_machine(client, admin)
    body = await (await client.options(f"/api/machine/{machine['pk']}/", headers=admin)).json()
    assert list(body["actions"]) == ["PUT", "GET", "DELETE"]
    assert body["actions"]["DELETE"] == {}


async def test_stalled_request_body_is_dropped_with_408(
    client: Client, admin: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "BODY_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /api/machine/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: {admin['Authorization']}\r\n".encode()
            + b'Content-Length: 100\r\n\r\n{"name": '
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert b"application/json" in head
    assert _rows(client, "SELECT count(*) FROM machine") == [(0,)]


async def test_list_follows_every_change_despite_its_caches(client: Client, admin: Headers) -> None:
    """Orders and machine JSON are cached; renames, deletes and polled status still show at once."""
    pks = {}
    for name in ("b", "c", "a"):
        pks[name] = (await create_machine(client, admin, name=name))["pk"]

    async def page(query: str = "") -> dict[str, Any]:
        resp = await client.get(f"/api/machine/?limit=2&ordering=name{query}", headers=admin)
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
        return result

    first = await page()
    assert [m["name"] for m in first["results"]] == ["a", "b"]
    assert first["count"] == 3
    await client.patch(f"/api/machine/{pks['a']}/", json={"name": "z"}, headers=admin)
    assert [m["name"] for m in (await page())["results"]] == ["b", "c"]
    await client.delete(f"/api/machine/{pks['b']}/", headers=admin)
    assert [m["name"] for m in (await page())["results"]] == ["c", "z"]
    machine = client.app[REGISTRY].get(pks["c"])
    machine.set_status(LabelPrinterStatus.PAPER_JAM)
    machine.set_status_text("Jammed")
    machine.set_properties([MachineProperty("Model", "X1")])
    shown = (await page())["results"][0]
    assert (shown["status"], shown["status_text"]) == (302, "Jammed")
    assert shown["properties"][0]["value"] == "X1"
    await client.patch(f"/api/machine/{pks['c']}/", json={"active": False}, headers=admin)
    body = await (await client.get("/api/machine/?limit=5", headers=admin)).json()
    assert [(m["name"], m["active"]) for m in body["results"]] == [("z", True), ("c", False)]
