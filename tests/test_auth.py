"""Authentication over a real server: Token, Basic and session with CSRF, as InvenTree 303 answers."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import sqlite3
import string
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.appkeys import AUTHENTICATOR, DATABASE
from agent.auth import create_user
from agent.config import Settings
from agent.storage.machines import MachineStore
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, Headers, MakeUser, basic_headers

Client = TestClient[Any, Any]
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
TOKEN_FORMAT = re.compile(r"inv-[0-9a-f]{40}-(\d{8})")
CSRF_CHARS = string.ascii_letters + string.digits
MACHINE = {"name": "printer", "machine_type": "label-printer", "driver": "virtual"}


def admin_basic() -> Headers:
    return basic_headers(ADMIN_USER, ADMIN_PASSWORD)


async def detail_401(resp: aiohttp.ClientResponse) -> str:
    """The `detail` of a 401, checking the header every 401 must carry."""
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"] == "Token"
    body = await resp.json()
    assert list(body) == ["detail"]
    detail: str = body["detail"]
    return detail


async def login(
    client: Client, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD
) -> tuple[str, str]:
    """Log in with a password; returns (sessionid, csrftoken) and leaves the cookie jar empty."""
    resp = await client.post("/api/auth/login/", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    session, csrf = resp.cookies["sessionid"].value, resp.cookies["csrftoken"].value
    client.session.cookie_jar.clear()
    return session, csrf


async def machine_count(client: Client) -> int:
    machines, _settings, _states = await MachineStore(client.app[DATABASE]).load_machines()
    return len(machines)


async def set_expiry(client: Client, username: str, day: dt.date) -> None:
    """Give every token of `username` this expiry date, straight in the database."""

    def update(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE api_token SET expiry = ? WHERE user = (SELECT pk FROM user WHERE username = ?)",
            (day.isoformat(), username),
        )

    await client.app[DATABASE].write(update)


def mask(secret: str) -> str:
    """Django's masked form of a CSRF secret, as its templates and `get_token()` hand it out."""
    key = "".join(secrets.choice(CSRF_CHARS) for _ in secret)
    size = len(CSRF_CHARS)
    cipher = "".join(
        CSRF_CHARS[(CSRF_CHARS.index(s) + CSRF_CHARS.index(k)) % size]
        for s, k in zip(secret, key, strict=True)
    )
    return key + cipher


# Token


@pytest.mark.parametrize("keyword", ["Token", "token", "TOKEN"])
async def test_token_keyword_is_case_insensitive(
    client: Client, make_user: MakeUser, keyword: str
) -> None:
    key = (await make_user("alice"))["Authorization"].split()[1]
    resp = await client.get("/api/user/me/", headers={"Authorization": f"{keyword} {key}"})
    assert resp.status == 200
    assert (await resp.json())["username"] == "alice"


async def test_token_has_inventree_format_and_a_year_of_life(client: Client) -> None:
    resp = await client.get("/api/user/token/", headers=admin_basic())
    assert resp.status == 200
    body = await resp.json()
    match = TOKEN_FORMAT.fullmatch(body["token"])
    assert match is not None, body["token"]
    today = dt.date.today()  # noqa: DTZ011 - InvenTree dates tokens with the local date
    assert match.group(1) == today.strftime("%Y%m%d")
    assert body["expiry"] == (today + dt.timedelta(days=365)).isoformat()
    assert body["name"] == ""


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  my <b>label</b>\x07 name  ", "my-label-name"),
        ("tab\there", "tabhere"),
        ("x" * 150, "x" * 100),
    ],
)
async def test_token_name_is_cleaned(client: Client, raw: str, cleaned: str) -> None:
    resp = await client.get("/api/user/token/", params={"name": raw}, headers=admin_basic())
    assert (await resp.json())["name"] == cleaned
    names = await client.app[DATABASE].write(
        lambda conn: [r[0] for r in conn.execute("SELECT name FROM api_token")]
    )
    assert names == [cleaned]


async def test_unknown_token_is_rejected_even_with_a_valid_session(client: Client) -> None:
    resp = await client.get("/api/user/token/", headers=admin_basic())  # the jar now has a session
    assert resp.status == 200
    resp = await client.get("/api/user/me/", headers={"Authorization": "Token inv-nope"})
    assert await detail_401(resp) == "Invalid token."


async def test_expired_token_is_rejected_and_expiry_day_still_works(
    client: Client, make_user: MakeUser
) -> None:
    today = dt.date.today()  # noqa: DTZ011 - local dates, as InvenTree
    expired = await make_user("old", role="view")
    last_day = await make_user("current", role="view")
    await set_expiry(client, "old", today - dt.timedelta(days=1))
    await set_expiry(client, "current", today)
    assert (
        await detail_401(await client.get("/api/user/me/", headers=expired)) == "Token has expired"
    )
    assert (await client.get("/api/user/me/", headers=last_day)).status == 200


async def test_token_revoked_in_the_database_is_rejected(
    client: Client, make_user: MakeUser
) -> None:
    headers = await make_user("alice")
    await client.app[DATABASE].write(lambda conn: conn.execute("UPDATE api_token SET revoked = 1"))
    resp = await client.get("/api/user/me/", headers=headers)
    assert await detail_401(resp) == "Token has been revoked"


async def test_revoking_a_token_in_use_takes_effect_at_once(
    client: Client, make_user: MakeUser
) -> None:
    headers = await make_user("alice")
    assert (await client.get("/api/user/me/", headers=headers)).status == 200
    await client.app[AUTHENTICATOR].revoke(headers["Authorization"].split()[1])
    resp = await client.get("/api/user/me/", headers=headers)
    assert await detail_401(resp) == "Token has been revoked"


async def test_token_use_records_the_day_it_was_last_seen(
    client: Client, make_user: MakeUser
) -> None:
    headers = await make_user("alice")
    assert (await client.get("/api/user/me/", headers=headers)).status == 200
    seen = await client.app[DATABASE].write(
        lambda conn: conn.execute("SELECT last_seen FROM api_token").fetchone()[0]
    )
    assert seen == dt.date.today().isoformat()  # noqa: DTZ011 - local dates, as InvenTree


# Basic


@pytest.mark.parametrize("keyword", ["Basic", "basic"])
async def test_basic_auth(client: Client, keyword: str) -> None:
    encoded = admin_basic()["Authorization"].split()[1]
    resp = await client.get("/api/user/me/", headers={"Authorization": f"{keyword} {encoded}"})
    assert resp.status == 200
    assert (await resp.json())["username"] == ADMIN_USER


async def test_basic_auth_with_a_latin1_password_as_clients_send_it(client: Client) -> None:
    await create_user(client.app[AUTHENTICATOR].store, "jürgen", "pässwort", role="view")
    header = aiohttp.encode_basic_auth("jürgen", "pässwort", encoding="latin-1")
    resp = await client.get("/api/user/me/", headers={"Authorization": header})
    assert resp.status == 200


# Malformed and refused credentials


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Token inv-0000000000000000000000000000000000000000-20250101", "Invalid token."),
        ("Basic", "Invalid basic header. No credentials provided."),
        ("Basic a b", "Invalid basic header. Credentials string should not contain spaces."),
        ("Basic abc", "Invalid basic header. Credentials not correctly base64 encoded."),
        ("Basic #not-base64#", "Invalid basic header. Credentials not correctly base64 encoded."),
        (basic_headers(ADMIN_USER, "wrong")["Authorization"], "Invalid username/password."),
        (basic_headers("nobody-here", "x")["Authorization"], "Invalid username/password."),
    ],
)
async def test_bad_credentials_get_401_with_drf_message(
    client: Client, header: str, detail: str
) -> None:
    resp = await client.get("/api/user/me/", headers={"Authorization": header})
    assert await detail_401(resp) == detail


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer inv-0000000000000000000000000000000000000000-20250101"}],
    ids=["none", "bearer"],
)
async def test_missing_or_unsupported_credentials_get_401_not_provided(
    client: Client, headers: Headers
) -> None:
    resp = await client.get("/api/machine/", headers=headers)
    assert await detail_401(resp) == NOT_PROVIDED["detail"]


async def test_bearer_with_a_valid_token_is_not_accepted(
    client: Client, make_user: MakeUser
) -> None:
    key = (await make_user("alice"))["Authorization"].split()[1]
    resp = await client.get("/api/user/me/", headers={"Authorization": f"Bearer {key}"})
    assert await detail_401(resp) == NOT_PROVIDED["detail"]


async def test_inactive_user_cannot_authenticate(client: Client, make_user: MakeUser) -> None:
    headers = await make_user("gone")
    session, _csrf = await login(client, "gone", "pw-gone")
    await client.app[DATABASE].write(
        lambda conn: conn.execute("UPDATE user SET is_active = 0 WHERE username = 'gone'")
    )
    resp = await client.get("/api/user/me/", headers=headers)
    assert await detail_401(resp) == "User inactive or deleted."
    resp = await client.get("/api/user/me/", cookies={"sessionid": session})
    assert await detail_401(resp) == NOT_PROVIDED["detail"]
    resp = await client.post("/api/auth/login/", json={"username": "gone", "password": "pw-gone"})
    assert resp.status == 400


async def test_inactive_user_basic_auth_does_not_confirm_the_password(
    client: Client, make_user: MakeUser
) -> None:
    await make_user("gone")
    await client.app[DATABASE].write(
        lambda conn: conn.execute("UPDATE user SET is_active = 0 WHERE username = 'gone'")
    )
    resp = await client.get("/api/user/me/", headers=basic_headers("gone", "pw-gone"))
    assert await detail_401(resp) == "Invalid username/password."


# Sessions


async def test_token_endpoint_with_basic_also_starts_a_session(client: Client) -> None:
    resp = await client.get("/api/user/token/", headers=admin_basic())
    assert resp.status == 200
    session = resp.cookies["sessionid"]
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert session["max-age"] == str(14 * 24 * 3600)
    assert resp.cookies["csrftoken"]["httponly"] == ""  # browser scripts must read it
    me = await client.get("/api/user/me/")  # the cookie jar carries the session
    assert me.status == 200
    assert (await me.json())["username"] == ADMIN_USER


async def test_login_answers_a_token_and_starts_a_session(client: Client) -> None:
    resp = await client.post(
        "/api/auth/login/", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    assert resp.status == 200
    body = await resp.json()
    assert list(body) == ["key"]
    assert TOKEN_FORMAT.fullmatch(body["key"])
    session = resp.cookies["sessionid"].value
    client.session.cookie_jar.clear()
    by_token = await client.get("/api/user/me/", headers={"Authorization": f"Token {body['key']}"})
    assert (await by_token.json())["username"] == ADMIN_USER
    by_cookie = await client.get("/api/user/me/", cookies={"sessionid": session})
    assert (await by_cookie.json())["username"] == ADMIN_USER


async def test_login_accepts_a_form_body(client: Client) -> None:
    resp = await client.post(
        "/api/auth/login/", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    assert resp.status == 200
    assert "key" in await resp.json()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"username": ADMIN_USER, "password": "wrong"},
            {"non_field_errors": ["Unable to log in with provided credentials."]},
        ),
        (
            {"username": "no-such-user", "password": "x"},
            {"non_field_errors": ["Unable to log in with provided credentials."]},
        ),
        (
            {"username": ADMIN_USER},
            {"non_field_errors": ['Must include "username" and "password".']},
        ),
    ],
)
async def test_login_with_bad_credentials_is_400(
    client: Client, body: dict[str, str], expected: dict[str, list[str]]
) -> None:
    resp = await client.post("/api/auth/login/", json=body)
    assert resp.status == 400
    assert await resp.json() == expected
    assert "sessionid" not in resp.cookies


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "application/x-www-form-urlencoded; charset=bogus"],
    ids=["no-boundary", "unknown-charset"],
)
async def test_login_with_an_unparsable_form_is_400(client: Client, content_type: str) -> None:
    resp = await client.post(
        "/api/auth/login/",
        data=b"username=admin&password=x",
        headers={"Content-Type": content_type},
    )
    assert resp.status == 400
    assert list(await resp.json()) == ["detail"]


async def test_unknown_or_expired_session_is_anonymous(client: Client) -> None:
    session, _csrf = await login(client)
    resp = await client.get("/api/user/me/", cookies={"sessionid": "made-up"})
    assert await detail_401(resp) == NOT_PROVIDED["detail"]
    await client.app[DATABASE].write(
        lambda conn: conn.execute("UPDATE session SET expires = '2000-01-01T00:00:00+00:00'")
    )
    resp = await client.get("/api/user/me/", cookies={"sessionid": session})
    assert await detail_401(resp) == NOT_PROVIDED["detail"]


# CSRF


async def test_safe_methods_with_a_session_need_no_csrf(client: Client) -> None:
    session, _csrf = await login(client)
    for method in ("GET", "HEAD", "OPTIONS"):
        resp = await client.request(method, "/api/machine/", cookies={"sessionid": session})
        assert resp.status == 200, method


@pytest.mark.parametrize(
    ("csrf_cookie", "header", "reason"),
    [
        (False, None, "CSRF cookie not set."),
        (True, None, "CSRF token missing."),
        (True, "abc", "CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."),
        (True, "!" * 32, "CSRF token from the 'X-Csrftoken' HTTP header has invalid characters."),
        (True, "a" * 32, "CSRF token from the 'X-Csrftoken' HTTP header incorrect."),
        (True, "a" * 64, "CSRF token from the 'X-Csrftoken' HTTP header incorrect."),
    ],
    ids=["no-cookie", "no-header", "short", "bad-chars", "wrong", "wrong-masked"],
)
async def test_unsafe_method_with_a_session_needs_csrf(
    client: Client, csrf_cookie: bool, header: str | None, reason: str
) -> None:
    session, csrf = await login(client)
    cookies = {"sessionid": session, **({"csrftoken": csrf} if csrf_cookie else {})}
    headers = {"X-CSRFToken": header} if header is not None else {}
    resp = await client.post("/api/machine/", json=MACHINE, cookies=cookies, headers=headers)
    assert resp.status == 403
    assert await resp.json() == {"detail": f"CSRF Failed: {reason}"}
    assert await machine_count(client) == 0


async def test_malformed_csrf_cookie_is_reported_as_such(client: Client) -> None:
    session, _csrf = await login(client)
    resp = await client.post(
        "/api/machine/",
        json=MACHINE,
        cookies={"sessionid": session, "csrftoken": "short"},
        headers={"X-CSRFToken": "a" * 32},
    )
    assert await resp.json() == {"detail": "CSRF Failed: CSRF cookie has incorrect length."}


@pytest.mark.parametrize("masked", [False, True], ids=["secret", "masked"])
async def test_unsafe_method_with_a_session_and_matching_csrf_succeeds(
    client: Client, masked: bool
) -> None:
    session, csrf = await login(client)
    header = mask(csrf) if masked else csrf
    resp = await client.post(
        "/api/machine/",
        json=MACHINE,
        cookies={"sessionid": session, "csrftoken": csrf},
        headers={"X-CSRFToken": header},
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("scheme", ["token", "basic"])
async def test_token_or_basic_needs_no_csrf_even_with_a_session_cookie(
    client: Client, admin: Headers, scheme: str
) -> None:
    session, _csrf = await login(client)
    headers = admin if scheme == "token" else admin_basic()
    resp = await client.post(
        "/api/machine/", json=MACHINE, cookies={"sessionid": session}, headers=headers
    )
    assert resp.status == 201, await resp.text()


# Logout


async def test_logout_revokes_the_token_used(client: Client, admin: Headers) -> None:
    client.session.cookie_jar.clear()
    resp = await client.post("/api/auth/logout/", headers=admin)
    assert resp.status == 200
    assert await resp.json() == {"detail": "Successfully logged out."}
    resp = await client.get("/api/user/me/", headers=admin)
    assert await detail_401(resp) == "Token has been revoked"


async def test_logout_ends_the_session(client: Client) -> None:
    session, csrf = await login(client)
    cookies = {"sessionid": session, "csrftoken": csrf}
    resp = await client.post("/api/auth/logout/", cookies=cookies, headers={"X-CSRFToken": csrf})
    assert resp.status == 200
    resp = await client.get("/api/user/me/", cookies={"sessionid": session})
    assert await detail_401(resp) == NOT_PROVIDED["detail"]


# GET /api/ and the catch-all


async def test_api_root_needs_no_credentials_and_hides_staff_fields(client: Client) -> None:
    resp = await client.get("/api/")
    assert resp.status == 200
    info = await resp.json()
    assert info["apiVersion"] == 303
    for field in ("system_health", "database", "platform", "installer", "target", "django_admin"):
        assert info[field] is None, field


@pytest.mark.parametrize("header", ["Token inv-nope", "Token", "Basic abc"])
async def test_api_root_with_invalid_credentials_is_401(client: Client, header: str) -> None:
    resp = await client.get("/api/", headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Token"


async def test_api_root_shows_staff_fields_to_staff_only(
    client: Client, admin: Headers, make_user: MakeUser
) -> None:
    viewer = await make_user("viewer")
    staff = await make_user("staff")
    await client.app[DATABASE].write(
        lambda conn: conn.execute("UPDATE user SET is_staff = 1 WHERE username = 'staff'")
    )
    client.session.cookie_jar.clear()
    hidden = await (await client.get("/api/", headers=viewer)).json()
    assert (hidden["system_health"], hidden["database"]) == (None, None)
    for headers in (admin, staff):
        shown = await (await client.get("/api/", headers=headers)).json()
        assert shown["system_health"] is True
        assert shown["database"] == "sqlite3"


async def test_unknown_api_path_is_404_even_with_bad_credentials(client: Client) -> None:
    resp = await client.get("/api/nothing/here/", headers={"Authorization": "Token inv-nope"})
    assert resp.status == 404
    assert (await resp.json())["detail"] == "API endpoint not found"


# What is stored


async def test_keys_and_passwords_are_not_stored_in_clear(
    client: Client, settings: Settings
) -> None:
    resp = await client.get("/api/user/token/", headers=admin_basic())
    key = (await resp.json())["token"]
    session = resp.cookies["sessionid"].value
    await create_user(client.app[AUTHENTICATOR].store, "bob", "bobs-own-secret-password")
    raw = b"".join(p.read_bytes() for p in settings.storage.path.glob("inventree-edge.sqlite3*"))
    assert raw, "no database files found"
    for secret in (key, key[4:44], session, ADMIN_PASSWORD, "bobs-own-secret-password"):
        assert secret.encode() not in raw, secret
