"""Machine settings: list, detail, validation and the update hook, as InvenTree 303 answers them."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.appkeys import REGISTRY, SETTINGS
from tests.conftest import Headers, create_machine

SETTING_FIELDS = [
    "pk",
    "key",
    "value",
    "name",
    "description",
    "type",
    "choices",
    "model_name",
    "api_url",
    "typ",
    "required",
    "config_type",
]

Client = TestClient[Any, Any]


def _setting_rows(client: Client) -> list[tuple[Any, ...]]:
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        return conn.execute(
            "SELECT config_type, key, value FROM machine_setting ORDER BY pk"
        ).fetchall()


@pytest.fixture
async def recording(client: Client, admin: Headers) -> dict[str, Any]:
    return await create_machine(client, admin, name="rec", driver="recording")


async def test_settings_list_machine_scope_first_in_definition_order(
    client: Client, admin: Headers, recording: dict[str, Any]
) -> None:
    resp = await client.get(f"/api/machine/{recording['pk']}/settings/", headers=admin)
    assert resp.status == 200
    settings = await resp.json()
    assert [(s["config_type"], s["key"]) for s in settings] == [
        ("M", "LOCATION"),
        *[("D", key) for key in ("HOST", "COPIES", "CUT", "MODE", "SECRET", "EVEN", "SPEED")],
    ]
    assert all(list(s) == SETTING_FIELDS for s in settings)
    location = settings[0]
    assert location == {
        "pk": None,
        "key": "LOCATION",
        "value": "",
        "name": "Printer Location",
        "description": "Scope the printer to a specific location",
        "type": "related field",
        "choices": [],
        "model_name": "stock.stocklocation",
        "api_url": "/api/stock/location/",
        "typ": "machine_config",
        "required": False,
        "config_type": "M",
    }
    by_key = {s["key"]: s for s in settings}
    assert (by_key["COPIES"]["type"], by_key["COPIES"]["value"]) == ("integer", "1")
    assert (by_key["CUT"]["type"], by_key["CUT"]["value"]) == ("boolean", "True")
    assert by_key["MODE"]["choices"] == [
        {"value": "fast", "display_name": "Fast"},
        {"value": "fine", "display_name": "Fine"},
    ]
    # Reading never writes (a deliberate difference from InvenTree 303).
    assert _setting_rows(client) == []


async def test_setting_detail_get_has_no_side_effects(
    client: Client, admin: Headers, recording: dict[str, Any]
) -> None:
    registry = client.app[REGISTRY]
    driver = registry.drivers["recording"]
    calls_before = list(driver.calls)  # type: ignore[attr-defined]
    resp = await client.get(f"/api/machine/{recording['pk']}/settings/D/host/", headers=admin)
    assert resp.status == 200
    body = await resp.json()
    assert (body["key"], body["value"], body["pk"]) == ("HOST", "localhost", None)
    assert _setting_rows(client) == []
    assert driver.calls == calls_before  # type: ignore[attr-defined]


async def test_setting_put_patch_store_and_run_update_hook(
    client: Client, admin: Headers, recording: dict[str, Any]
) -> None:
    url = f"/api/machine/{recording['pk']}/settings/D/HOST/"
    resp = await client.put(url, json={"value": "printer.local"}, headers=admin)
    assert resp.status == 200
    body = await resp.json()
    assert body["value"] == "printer.local"
    assert isinstance(body["pk"], int)
    assert _setting_rows(client) == [("D", "HOST", "printer.local")]
    driver = client.app[REGISTRY].drivers["recording"]
    assert driver.calls[-1] == ("update_machine", "rec")  # type: ignore[attr-defined]
    # The driver asked for a restart because HOST changed.
    detail = await (await client.get(f"/api/machine/{recording['pk']}/", headers=admin)).json()
    assert detail["restart_required"] is True
    await client.post(f"/api/machine/{recording['pk']}/restart/", headers=admin)
    detail = await (await client.get(f"/api/machine/{recording['pk']}/", headers=admin)).json()
    assert detail["restart_required"] is False

    resp = await client.patch(url, json={"value": "  spaced  "}, headers=admin)
    assert (await resp.json())["value"] == "spaced"
    resp = await client.put(url, json={}, headers=admin)
    assert resp.status == 400
    assert await resp.json() == {"value": ["This field is required."]}
    resp = await client.patch(url, json={}, headers=admin)
    assert resp.status == 200
    assert (await resp.json())["value"] == "spaced"


@pytest.mark.parametrize(
    ("key", "sent", "stored"),
    [
        ("CUT", "yes", "True"),
        ("CUT", True, "True"),
        ("CUT", "off", "False"),
        ("CUT", False, "False"),
        ("COPIES", "5", "5"),
        ("COPIES", 7, "7"),
        ("COPIES", " 8 ", "8"),
        ("COPIES", "99", "99"),
        ("MODE", "fine", "fine"),
        ("HOST", None, ""),
        ("HOST", 12, "12"),
        ("EVEN", "4", "4"),
    ],
)
async def test_setting_value_coercion(
    client: Client, admin: Headers, recording: dict[str, Any], key: str, sent: Any, stored: str
) -> None:
    resp = await client.patch(
        f"/api/machine/{recording['pk']}/settings/D/{key}/", json={"value": sent}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["value"] == stored
    assert _setting_rows(client) == [("D", key, stored)]


@pytest.mark.parametrize(
    ("key", "sent", "errors"),
    [
        ("MODE", "medium", {"non_field_errors": ["Chosen value is not a valid option"]}),
        ("EVEN", "3", {"non_field_errors": ["Value must be even"]}),
        ("SPEED", "fast", {"value": ["Value must be an integer value"]}),
        # InvenTree 303 stores the default for these; the agent refuses them (a deliberate
        # difference: a mistyped port must not silently print elsewhere).
        ("COPIES", "five", {"value": ["Value must be an integer value"]}),
        ("COPIES", "1.5", {"value": ["Value must be an integer value"]}),
        ("CUT", "nonsense", {"value": ["Must be a valid boolean."]}),
        ("COPIES", "0", {"value": ["Ensure this value is greater than or equal to 1."]}),
        ("COPIES", "100", {"value": ["Ensure this value is less than or equal to 99."]}),
        (
            "HOST",
            "x" * 2001,
            {"value": ["Ensure this value has at most 2000 characters (it has 2001)."]},
        ),
        ("HOST", "<script>x</script>", {"value": ["Remove HTML tags from this value"]}),
    ],
)
async def test_setting_validation_errors_store_nothing(
    client: Client, admin: Headers, recording: dict[str, Any], key: str, sent: Any, errors: Any
) -> None:
    resp = await client.put(
        f"/api/machine/{recording['pk']}/settings/D/{key}/", json={"value": sent}, headers=admin
    )
    assert resp.status == 400
    assert await resp.json() == errors
    assert _setting_rows(client) == []


async def test_protected_setting_is_masked(
    client: Client, admin: Headers, recording: dict[str, Any]
) -> None:
    url = f"/api/machine/{recording['pk']}/settings/D/SECRET/"
    assert (await (await client.get(url, headers=admin)).json())["value"] == ""
    resp = await client.put(url, json={"value": "hunter2"}, headers=admin)
    assert (await resp.json())["value"] == "***"
    listing = await (
        await client.get(f"/api/machine/{recording['pk']}/settings/", headers=admin)
    ).json()
    assert {s["key"]: s["value"] for s in listing}["SECRET"] == "***"
    assert _setting_rows(client) == [("D", "SECRET", "hunter2")]


async def test_setting_not_found_messages(
    client: Client, admin: Headers, recording: dict[str, Any]
) -> None:
    pk = recording["pk"]
    resp = await client.get(f"/api/machine/{pk}/settings/D/NOPE/", headers=admin)
    assert resp.status == 404
    assert await resp.json() == {"detail": "Machine 'rec' has no DRIVER setting matching 'NOPE'"}
    resp = await client.get(f"/api/machine/{pk}/settings/M/host/", headers=admin)
    assert await resp.json() == {"detail": "Machine 'rec' has no MACHINE setting matching 'HOST'"}
    unknown = str(uuid.uuid4())
    resp = await client.get(f"/api/machine/{unknown}/settings/M/LOCATION/", headers=admin)
    assert await resp.json() == {"detail": f"Machine '{unknown}' not found"}
    resp = await client.get(f"/api/machine/{unknown}/settings/", headers=admin)
    assert await resp.json() == {"detail": f"Machine '{unknown}' not found"}
    # Lower-case config type does not match the route: the catch-all answers.
    resp = await client.get(f"/api/machine/{pk}/settings/d/HOST/", headers=admin)
    assert (await resp.json())["detail"] == "API endpoint not found"
    # InvenTree's pattern is unanchored after the key.
    resp = await client.get(f"/api/machine/{pk}/settings/D/HOST/extra/", headers=admin)
    assert (await resp.json())["key"] == "HOST"


async def test_machine_without_driver_has_no_driver_settings(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, driver="ghost")
    listing = await (
        await client.get(f"/api/machine/{machine['pk']}/settings/", headers=admin)
    ).json()
    assert [s["key"] for s in listing] == ["LOCATION"]
    resp = await client.get(f"/api/machine/{machine['pk']}/settings/D/HOST/", headers=admin)
    assert resp.status == 404


async def test_setting_post_and_delete_not_allowed(
    client: Client, admin: Headers, viewer: Headers, recording: dict[str, Any]
) -> None:
    url = f"/api/machine/{recording['pk']}/settings/D/HOST/"
    for method in ("POST", "DELETE"):
        resp = await client.request(method, url, headers=admin)
        assert resp.status == 405
        assert await resp.json() == {"detail": f'Method "{method}" not allowed.'}
        resp = await client.request(method, url, headers=viewer)
        assert resp.status == 403


async def test_missing_required_settings_then_fixed_initialises_and_clears_error(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, driver="needs-settings")
    assert machine["initialized"] is False
    assert machine["machine_errors"] == ["Missing DRIVER settings: ADDRESS, PORT"]
    base = f"/api/machine/{machine['pk']}"
    await client.put(f"{base}/settings/D/ADDRESS/", json={"value": "10.0.0.9"}, headers=admin)
    detail = await (await client.get(f"{base}/", headers=admin)).json()
    assert detail["initialized"] is False
    assert detail["machine_errors"] == [
        "Missing DRIVER settings: ADDRESS, PORT",
        "Missing DRIVER settings: PORT",
    ]
    await client.put(f"{base}/settings/D/PORT/", json={"value": "9100"}, headers=admin)
    detail = await (await client.get(f"{base}/", headers=admin)).json()
    # Deliberate difference: a successful initialisation clears the stale errors.
    assert detail["initialized"] is True
    assert detail["machine_errors"] == []


async def test_failing_init_recovers_after_setting_fix(client: Client, admin: Headers) -> None:
    machine = await create_machine(client, admin, driver="failing")
    assert machine["machine_errors"] == ["printer on fire"]
    base = f"/api/machine/{machine['pk']}"
    resp = await client.put(f"{base}/settings/D/FIXED/", json={"value": True}, headers=admin)
    assert resp.status == 200
    detail = await (await client.get(f"{base}/", headers=admin)).json()
    assert (detail["initialized"], detail["machine_errors"]) == (True, [])


async def test_setting_options_metadata(
    client: Client, admin: Headers, viewer: Headers, recording: dict[str, Any]
) -> None:
    url = f"/api/machine/{recording['pk']}/settings/D/HOST/"
    body = await (await client.options(url, headers=admin)).json()
    assert body["name"] == "Machine Setting Detail"
    assert list(body["actions"]) == ["PUT", "GET"]
    assert body["actions"]["PUT"]["value"]["required"] is True
    body = await (await client.options(url, headers=viewer)).json()
    assert list(body["actions"]) == ["GET"]
