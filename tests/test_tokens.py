"""API tokens: InvenTree's reuse by name, with only hashes stored; the secret; pruning."""

from __future__ import annotations

import sqlite3
import stat
from typing import Any

from aiohttp.test_utils import TestClient

from agent.app import create_app
from agent.appkeys import AUTHENTICATOR, SETTINGS
from agent.auth import User
from agent.config import Settings
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, basic_headers

Client = TestClient[Any, Any]


async def _token(client: Client, name: str) -> str:
    resp = await client.get(
        "/api/user/token/", params={"name": name}, headers=basic_headers(ADMIN_USER, ADMIN_PASSWORD)
    )
    assert resp.status == 200
    client.session.cookie_jar.clear()
    key: str = (await resp.json())["token"]
    return key


async def test_same_name_gives_the_same_token_and_only_its_hash_is_stored(client: Client) -> None:
    first = await _token(client, "script")
    assert await _token(client, "script") == first
    other = await _token(client, "other")
    assert other != first
    database = client.app[SETTINGS].database_path
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name FROM api_token ORDER BY pk").fetchall()
    assert rows == [("script",), ("other",)]
    assert first.encode() not in database.read_bytes()
    secret = client.app[SETTINGS].secret_path
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    resp = await client.get("/api/user/me/", headers={"Authorization": f"Token {first}"})
    assert resp.status == 200


async def test_a_revoked_token_is_not_handed_out_again(client: Client) -> None:
    first = await _token(client, "laptop")
    resp = await client.post("/api/auth/logout/", headers={"Authorization": f"Token {first}"})
    assert resp.status == 200
    second = await _token(client, "laptop")
    assert second != first
    resp = await client.get("/api/user/me/", headers={"Authorization": f"Token {second}"})
    assert resp.status == 200


async def test_the_same_token_after_a_restart(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    first = await _token(client, "label-script")
    await client.close()
    client = await aiohttp_client(create_app(settings))
    assert await _token(client, "label-script") == first


async def test_cli_style_tokens_are_always_new(client: Client) -> None:
    authenticator = client.app[AUTHENTICATOR]
    row = await client.app[AUTHENTICATOR].store.get_user(username=ADMIN_USER)
    assert row is not None
    user = User.from_row(row)
    one = await authenticator.token_for(user, "cli", reuse=False)
    two = await authenticator.token_for(user, "cli", reuse=False)
    assert one != two
    assert await authenticator.token_for(user, "cli") == one


async def test_long_expired_and_revoked_tokens_are_pruned(client: Client) -> None:
    keep = await _token(client, "keep")
    await _token(client, "old")
    await _token(client, "gone")
    database = client.app[SETTINGS].database_path
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE api_token SET expiry = '2020-01-01' WHERE name = 'old'")
        conn.execute(
            "UPDATE api_token SET revoked = 1, created = '2020-01-01T00:00:00+00:00' "
            "WHERE name = 'gone'"
        )
    assert await client.app[AUTHENTICATOR].prune() == 2
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT name FROM api_token").fetchall() == [("keep",)]
    resp = await client.get("/api/user/me/", headers={"Authorization": f"Token {keep}"})
    assert resp.status == 200


async def test_a_replaced_secret_makes_new_tokens_and_old_ones_keep_working(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    first = await _token(client, "script")
    await client.close()
    settings.secret_path.unlink()
    client = await aiohttp_client(create_app(settings))
    second = await _token(client, "script")
    assert second != first
    for key in (first, second):
        resp = await client.get("/api/user/me/", headers={"Authorization": f"Token {key}"})
        assert resp.status == 200
