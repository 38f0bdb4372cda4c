"""Failed password attempts are limited per client address and per user; real users get in."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent import auth as auth_module
from agent.appkeys import SETTINGS
from agent.login_limits import (
    SOURCE_BURST,
    SOURCE_REFILL_PER_S,
    USER_BURST,
    LoginLimiter,
    LoginThrottled,
)
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, MakeUser, basic_headers

Client = TestClient[Any, Any]


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password actually hashed and compared, in order."""
    checked: list[str] = []
    real = auth_module.verify_password

    def counting(password: str, encoded: str) -> bool:
        checked.append(password)
        return real(password, encoded)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    return checked


async def _get(client: Client, path: str, headers: dict[str, str], source: str) -> Any:
    """A request from another loopback address (127.0.0.0/8 is all this host)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(client.make_url(path), headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json()


async def test_a_flood_of_bad_basic_logins_is_cut_off_before_hashing(
    client: Client, password_checks: list[str]
) -> None:
    bad = basic_headers(ADMIN_USER, "guess")
    statuses = [
        (await client.get("/api/user/me/", headers=bad)).status for _ in range(SOURCE_BURST + 5)
    ]
    assert statuses == [401] * SOURCE_BURST + [429] * 5
    assert len(password_checks) == SOURCE_BURST
    resp = await client.get("/api/user/me/", headers=bad)
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= round(1 / SOURCE_REFILL_PER_S)
    assert await resp.json() == {
        "detail": f"Request was throttled. Expected available in {retry_after} seconds."
    }
    # The same address with the right password is throttled too: it does not reveal the answer.
    good = basic_headers(ADMIN_USER, ADMIN_PASSWORD)
    assert (await client.get("/api/user/me/", headers=good)).status == 429


async def test_login_view_is_limited_too(client: Client) -> None:
    body = {"username": ADMIN_USER, "password": "guess"}
    statuses = [
        (await client.post("/api/auth/login/", json=body)).status for _ in range(SOURCE_BURST + 1)
    ]
    assert statuses == [400] * SOURCE_BURST + [429]


async def test_others_log_in_while_one_address_floods(
    client: Client, make_user: MakeUser, password_checks: list[str]
) -> None:
    await make_user("alice")
    for _ in range(SOURCE_BURST + 3):
        await client.get("/api/user/me/", headers=basic_headers(ADMIN_USER, "guess"))
    status, _headers, body = await _get(
        client, "/api/user/me/", basic_headers("alice", "pw-alice"), "127.0.0.2"
    )
    assert (status, body["username"]) == (200, "alice")
    # Successful logins do not use up an address's attempts.
    for _ in range(SOURCE_BURST + 2):
        status, _headers, _body = await _get(
            client, "/api/user/me/", basic_headers("alice", "pw-alice"), "127.0.0.3"
        )
        assert status == 200


async def test_guessing_one_user_from_many_addresses_spares_the_users_own_address(
    client: Client,
) -> None:
    good = basic_headers(ADMIN_USER, ADMIN_PASSWORD)
    status, _headers, _body = await _get(client, "/api/user/me/", good, "127.0.0.2")
    assert status == 200  # the admin's usual machine
    bad = basic_headers(ADMIN_USER, "guess")
    attempts = 0
    for host in range(10, 10 + USER_BURST // SOURCE_BURST + 2):
        for _ in range(SOURCE_BURST):
            await _get(client, "/api/user/me/", bad, f"127.0.1.{host}")
            attempts += 1
    assert attempts > USER_BURST
    # A fresh address may not try this user any more...
    status, headers, _body = await _get(client, "/api/user/me/", good, "127.0.2.1")
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    # ...but the address the admin logged in from before still gets in.
    status, _headers, body = await _get(client, "/api/user/me/", good, "127.0.0.2")
    assert (status, body["username"]) == (200, ADMIN_USER)


def test_attempts_come_back_with_time() -> None:
    now = [100.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for _ in range(SOURCE_BURST):
        limiter.begin("10.0.0.1", "bob")
    with pytest.raises(LoginThrottled) as caught:
        limiter.begin("10.0.0.1", "bob")
    assert caught.value.retry_after_s == round(1 / SOURCE_REFILL_PER_S)
    now[0] += 1 / SOURCE_REFILL_PER_S
    limiter.begin("10.0.0.1", "bob")


async def test_a_reused_token_shows_its_stored_expiry(client: Client) -> None:
    basic = basic_headers(ADMIN_USER, ADMIN_PASSWORD)
    first = await (await client.get("/api/user/token/?name=cli", headers=basic)).json()
    stored = (dt.date.today() + dt.timedelta(days=10)).isoformat()  # noqa: DTZ011 - local dates
    with sqlite3.connect(client.app[SETTINGS].database_path) as conn:
        conn.execute("UPDATE api_token SET expiry = ? WHERE name = 'cli'", (stored,))
    client.session.cookie_jar.clear()
    again = await (await client.get("/api/user/token/?name=cli", headers=basic)).json()
    assert again["token"] == first["token"]
    assert again["expiry"] == stored
