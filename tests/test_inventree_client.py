"""InvenTree's own Python client (PyPI `inventree`) talks to the agent as to an InvenTree server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from inventree.api import InvenTreeAPI

from tests.conftest import ADMIN_PASSWORD, ADMIN_USER


def _session(base_url: str) -> dict[str, Any]:
    """Everything the client does, run synchronously (it uses `requests`)."""
    api = InvenTreeAPI(base_url, username=ADMIN_USER, password=ADMIN_PASSWORD, timeout=5)
    assert api.api_version == 303
    assert api.token is not None
    created = api.post(
        "machine/", {"name": "From client", "machine_type": "label-printer", "driver": "virtual"}
    )
    listed = api.get("machine/")
    page = api.get("machine/", params={"limit": 1})
    patched = api.patch(f"machine/{created['pk']}/", {"active": False})
    setting = api.patch(f"machine/{created['pk']}/settings/D/DPI/", {"value": "203"})
    settings = api.get(f"machine/{created['pk']}/settings/")
    drivers = api.get("machine/drivers/")
    return {
        "created": created,
        "listed": listed,
        "page": page,
        "patched": patched,
        "setting": setting,
        "settings": settings,
        "drivers": drivers,
    }


@pytest.mark.timeout(60)
async def test_inventree_python_client_lists_creates_and_patches(
    client: TestClient[Any, Any],
) -> None:
    base_url = str(client.make_url("/"))
    result = await asyncio.to_thread(_session, base_url)
    created = result["created"]
    assert created["name"] == "From client"
    assert created["initialized"] is True
    assert [m["pk"] for m in result["listed"]] == [created["pk"]]
    assert result["page"]["count"] == 1
    assert result["patched"]["active"] is False
    assert result["patched"]["initialized"] is False
    assert result["setting"]["value"] == "203"
    assert {s["key"]: s["value"] for s in result["settings"]}["DPI"] == "203"
    assert "virtual" in [d["slug"] for d in result["drivers"]]
