"""Size, time and interval settings of every printer driver refuse values that cannot be meant."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Headers, create_machine

Client = TestClient[Any, Any]

# (driver, setting, a value that cannot be meant, one that can)
NONSENSE = [
    ("virtual", "LABEL_WIDTH_MM", "0", "62"),
    ("virtual", "LABEL_WIDTH_MM", "-10", "62"),
    ("virtual", "LABEL_HEIGHT_MM", "-1", "0"),
    ("virtual", "DPI", "0", "300"),
    ("virtual", "LABEL_DELAY_MS", "-5", "0"),
    ("virtual", "POLL_INTERVAL", "0", "5"),
    ("zpl", "LABEL_WIDTH_MM", "0", "61"),
    ("zpl", "LABEL_WIDTH_MM", "-61", "61"),
    ("zpl", "LABEL_HEIGHT_MM", "-1", "0"),
    ("zpl", "DPMM", "0", "8"),
    ("escpos", "PAPER_WIDTH_MM", "0", "58"),
    ("escpos", "PRINT_WIDTH_DOTS", "-1", "0"),
    ("escpos", "FEED_MM", "-3", "3"),
    ("escpos", "DPI", "-203", "203"),
]


@pytest.mark.parametrize(("driver", "key", "bad", "good"), NONSENSE)
async def test_a_size_of_zero_or_less_is_refused_with_400(
    client: Client, admin: Headers, driver: str, key: str, bad: str, good: str
) -> None:
    machine = await create_machine(client, admin, name=f"{driver}-{key}", driver=driver)
    url = f"/api/machine/{machine['pk']}/settings/D/{key}/"
    before = await (await client.get(url, headers=admin)).json()
    resp = await client.put(url, json={"value": bad}, headers=admin)
    assert resp.status == 400, await resp.text()
    # A value out of range is the value's error, as a wrong type is; a value not among a
    # setting's choices keeps InvenTree's `non_field_errors`.
    field = "non_field_errors" if before.get("choices") else "value"
    assert list(await resp.json()) == [field]
    assert (await (await client.get(url, headers=admin)).json())["value"] == before["value"]
    resp = await client.put(url, json={"value": good}, headers=admin)
    assert resp.status == 200, await resp.text()
