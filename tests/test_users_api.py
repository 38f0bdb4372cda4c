"""Users and roles: `/api/user/me/`, `/api/user/roles/`, and who may do what (spec 5.2)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.auth import RULESETS
from tests.conftest import Headers, MakeUser, create_machine

Client = TestClient[Any, Any]
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
ALL = ["view", "add", "change", "delete"]
# Endpoints every authenticated user may read (IsAuthenticated only in InvenTree 303).
OPEN_READS = (
    "/api/machine/types/",
    "/api/machine/drivers/",
    "/api/machine/status/",
    "/api/machine/{pk}/settings/",
    "/api/machine/{pk}/settings/M/LOCATION/",
    "/api/machine/{pk}/settings/D/DPI/",
)


async def role_headers(make_user: MakeUser, role: str) -> Headers:
    if role == "superuser":
        return await make_user("root", superuser=True)
    return await make_user(f"user-{role}", role=role)


@pytest.fixture
async def printer(client: Client, admin: Headers) -> dict[str, Any]:
    return await create_machine(client, admin, name="Desk printer")


async def status_of(client: Client, method: str, path: str, headers: Headers, **kw: Any) -> int:
    resp = await client.request(method, path, headers=headers, **kw)
    if resp.status == 403:
        assert await resp.json() == FORBIDDEN
    return resp.status


# /api/user/me/


async def test_me_answers_the_calling_user(client: Client, make_user: MakeUser) -> None:
    headers = await make_user("alice", role="admin")
    resp = await client.get("/api/user/me/", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "pk": body["pk"],
        "username": "alice",
        "first_name": "",
        "last_name": "",
        "email": "",
        "groups": [],
        "is_staff": False,
        "is_superuser": False,
        "is_active": True,
    }
    assert isinstance(body["pk"], int)


async def test_me_needs_credentials(client: Client) -> None:
    resp = await client.get("/api/user/me/")
    assert resp.status == 401


# /api/user/roles/


@pytest.mark.parametrize(
    ("role", "admin_ruleset", "granted"),
    [
        ("admin", ALL, ["add", "change", "delete", "view"]),
        ("view", ["view"], ["view"]),
    ],
)
async def test_roles_of_a_normal_user(
    client: Client, make_user: MakeUser, role: str, admin_ruleset: list[str], granted: list[str]
) -> None:
    resp = await client.get("/api/user/roles/", headers=await role_headers(make_user, role))
    assert resp.status == 200
    body = await resp.json()
    assert body["username"] == f"user-{role}"
    assert isinstance(body["user"], int)
    assert (body["is_staff"], body["is_superuser"]) == (False, False)
    assert list(body["roles"]) == list(RULESETS)
    assert body["roles"]["admin"] == admin_ruleset
    assert all(body["roles"][name] is None for name in RULESETS if name != "admin")
    assert body["permissions"] == {"machineconfig": granted, "machinesetting": granted}


async def test_roles_of_a_superuser(client: Client, make_user: MakeUser) -> None:
    body = await (
        await client.get("/api/user/roles/", headers=await role_headers(make_user, "superuser"))
    ).json()
    assert (body["is_staff"], body["is_superuser"]) == (True, True)
    assert body["roles"] == dict.fromkeys(RULESETS, ALL)
    assert body["permissions"]["machineconfig"] == ["add", "change", "delete", "view"]


async def test_roles_of_a_user_without_a_role(client: Client, make_user: MakeUser) -> None:
    body = await (
        await client.get("/api/user/roles/", headers=await role_headers(make_user, "none"))
    ).json()
    assert body["roles"] == dict.fromkeys(RULESETS)


async def test_permissions_of_a_user_without_a_role_are_empty(
    client: Client, make_user: MakeUser
) -> None:
    body = await (
        await client.get("/api/user/roles/", headers=await role_headers(make_user, "none"))
    ).json()
    assert body["permissions"] == {}


# machines: superuser and the admin role may do everything


@pytest.mark.parametrize("role", ["superuser", "admin"])
async def test_admin_role_and_superuser_can_create_read_update_delete(
    client: Client, make_user: MakeUser, role: str
) -> None:
    headers = await role_headers(make_user, role)
    machine = await create_machine(client, headers, name=f"{role}-printer")
    path = f"/api/machine/{machine['pk']}/"
    assert await status_of(client, "GET", "/api/machine/", headers) == 200
    assert await status_of(client, "GET", path, headers) == 200
    assert await status_of(client, "PUT", path, headers, json={"name": "renamed"}) == 200
    assert await status_of(client, "PATCH", path, headers, json={"active": False}) == 200
    setting = f"{path}settings/D/DPI/"
    assert await status_of(client, "PUT", setting, headers, json={"value": "203"}) == 200
    assert await status_of(client, "PATCH", setting, headers, json={"value": "600"}) == 200
    assert await status_of(client, "POST", f"{path}restart/", headers) == 200
    assert await status_of(client, "DELETE", path, headers) == 204
    assert await status_of(client, "GET", path, headers) == 404


# machines: the view role reads, and changes nothing


async def test_view_role_reads_machines_settings_and_registry(
    client: Client, viewer: Headers, printer: dict[str, Any]
) -> None:
    pk = printer["pk"]
    assert await status_of(client, "GET", "/api/machine/", viewer) == 200
    assert await status_of(client, "GET", f"/api/machine/{pk}/", viewer) == 200
    for path in OPEN_READS:
        assert await status_of(client, "GET", path.format(pk=pk), viewer) == 200, path
    assert await status_of(client, "POST", f"/api/machine/{pk}/restart/", viewer) == 200


async def test_view_role_cannot_change_anything(
    client: Client, admin: Headers, viewer: Headers, printer: dict[str, Any]
) -> None:
    path = f"/api/machine/{printer['pk']}/"
    body = {"name": "x", "machine_type": "label-printer", "driver": "virtual"}
    assert await status_of(client, "POST", "/api/machine/", viewer, json=body) == 403
    assert await status_of(client, "PUT", path, viewer, json={"name": "renamed"}) == 403
    assert await status_of(client, "PATCH", path, viewer, json={"active": False}) == 403
    assert await status_of(client, "DELETE", path, viewer) == 403
    setting = f"{path}settings/D/DPI/"
    assert await status_of(client, "PUT", setting, viewer, json={"value": "203"}) == 403
    assert await status_of(client, "PATCH", setting, viewer, json={"value": "203"}) == 403

    machines = await (await client.get("/api/machine/", headers=admin)).json()
    assert [(m["name"], m["active"]) for m in machines] == [("Desk printer", True)]
    dpi = await (await client.get(setting, headers=admin)).json()
    assert dpi["value"] == "300"


# machines: no role at all


async def test_no_role_cannot_see_machines_but_reads_the_rest(
    client: Client, nobody: Headers, printer: dict[str, Any]
) -> None:
    pk = printer["pk"]
    assert await status_of(client, "GET", "/api/machine/", nobody) == 403
    assert await status_of(client, "GET", f"/api/machine/{pk}/", nobody) == 403
    for path in OPEN_READS:
        assert await status_of(client, "GET", path.format(pk=pk), nobody) == 200, path
    assert await status_of(client, "POST", f"/api/machine/{pk}/restart/", nobody) == 200
    setting = f"/api/machine/{pk}/settings/M/LOCATION/"
    assert await status_of(client, "PUT", setting, nobody, json={"value": "here"}) == 403


@pytest.mark.parametrize("path", [*OPEN_READS, "/api/machine/", "/api/user/roles/"])
async def test_anonymous_callers_get_401_everywhere(
    client: Client, printer: dict[str, Any], path: str
) -> None:
    resp = await client.get(path.format(pk=printer["pk"]))
    assert resp.status == 401


async def test_anonymous_restart_is_401(client: Client, printer: dict[str, Any]) -> None:
    resp = await client.post(f"/api/machine/{printer['pk']}/restart/")
    assert resp.status == 401


# 403 comes before 405 for users without the permission the method maps to


@pytest.mark.parametrize(
    ("role", "expected"),
    [("superuser", 405), ("admin", 405), ("view", 403), ("none", 403)],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_setting_create_or_delete_is_405_or_403_by_role(
    client: Client,
    make_user: MakeUser,
    printer: dict[str, Any],
    role: str,
    expected: int,
    method: str,
) -> None:
    headers = await role_headers(make_user, role)
    path = f"/api/machine/{printer['pk']}/settings/D/DPI/"
    resp = await client.request(method, path, headers=headers, json={"value": "203"})
    assert resp.status == expected
    if expected == 405:
        assert await resp.json() == {"detail": f'Method "{method}" not allowed.'}
    else:
        assert await resp.json() == FORBIDDEN


@pytest.mark.parametrize(("role", "expected"), [("admin", 405), ("view", 403)])
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/machine/"), ("DELETE", "/api/machine/"), ("POST", "/api/machine/{pk}/")],
)
async def test_machine_unsupported_method_is_405_or_403_by_role(
    client: Client,
    make_user: MakeUser,
    printer: dict[str, Any],
    role: str,
    expected: int,
    method: str,
    path: str,
) -> None:
    headers = await role_headers(make_user, role)
    resp = await client.request(method, path.format(pk=printer["pk"]), headers=headers, json={})
    assert resp.status == expected


async def test_unknown_method_is_405_for_any_authenticated_user(
    client: Client, nobody: Headers
) -> None:
    resp = await client.request("PROPFIND", "/api/machine/types/", headers=nobody)
    assert resp.status == 405
    assert await resp.json() == {"detail": 'Method "PROPFIND" not allowed.'}
