"""Unplugging and replugging a USB printer while the agent runs (faked pyusb, real agent and simulator)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.appkeys import REGISTRY
from drivers.transport import PrinterUnreachable, TransportClosed, link_for
from drivers.zpl.simulator import ZplSimulator
from tests.conftest import Headers, create_machine
from tests.driver_time import use_quick_timing
from tests.usb_fakes import FakeBus, FakeDevice, install
from tests.waiting import wait_until

Client = TestClient[Any, Any]
CONNECTED, DISCONNECTED = 100, 400
# The poller's shortest interval is 1 s; a failed poll retries after 1 s, then 2, 4 ...
WITHIN_A_POLL_S = 5.0


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> FakeBus:
    return install(monkeypatch, FakeBus())


def zebra(serial: str, address: int) -> FakeDevice:
    """A ZPL printer on the bus: what the agent writes goes to a simulator, which answers."""
    channel = ZplSimulator().open_channel()
    return FakeDevice(
        serial=serial,
        idVendor=0x0A5F,
        idProduct=0x0166,
        address=address,
        answer=channel.feed,
    )


async def machine_status(client: Client, headers: Headers, pk: str) -> int:
    machine = await (await client.get(f"/api/machine/{pk}/", headers=headers)).json()
    status: int = machine["status"]
    return status


async def wait_for_status(client: Client, headers: Headers, pk: str, status: int) -> None:
    async def reached() -> bool:
        return await machine_status(client, headers, pk) == status

    await wait_until(reached, WITHIN_A_POLL_S, f"machine status {status}")


async def test_unplugged_printer_is_disconnected_and_its_own_return_reconnects_it(
    bus: FakeBus, client: Client, admin: Headers
) -> None:
    use_quick_timing(client.app[REGISTRY].drivers)
    # Another printer of the same model, first on the bus: the machine must not take it.
    other = bus.plug(zebra("OTHER", address=3))
    printer = bus.plug(zebra("ZEB001", address=5))
    machine = await create_machine(client, admin, name="shipping", driver="zpl")
    pk = machine["pk"]
    settings = {"POLL_INTERVAL": "1", "DPMM": "12", "CONNECTION": "usb://0a5f:0166/ZEB001"}
    for key, value in settings.items():
        resp = await client.put(
            f"/api/machine/{pk}/settings/D/{key}/", json={"value": value}, headers=admin
        )
        assert resp.status == 200, await resp.text()
    await wait_for_status(client, admin, pk, CONNECTED)

    bus.unplug(printer)
    await wait_for_status(client, admin, pk, DISCONNECTED)

    # The same printer comes back on another port: a new bus address, the same serial number.
    returned = bus.plug(zebra("ZEB001", address=9))
    await wait_for_status(client, admin, pk, CONNECTED)

    assert returned.out, "the machine talks to the printer that came back"
    assert not other.out, "the other printer of the same model was never used"
    assert "claim 0" in returned.calls


async def test_a_link_without_a_serial_in_its_uri_stays_with_the_printer_it_found(
    bus: FakeBus,
) -> None:
    first = bus.plug(zebra("A1", address=3))
    second = bus.plug(zebra("B2", address=4))
    link = link_for("usb://0a5f:0166", name="shipping")
    try:
        async with link.exchange() as transport:
            await transport.write(b"~HS")
        assert first.out == b"~HS"

        bus.unplug(first)
        with pytest.raises(TransportClosed, match="unplugged"):
            async with link.exchange() as transport:
                await transport.write(b"~HS")
        link.retry_now()
        # Its twin is still there, but it may be another machine's printer: not taken.
        with pytest.raises(PrinterUnreachable, match="serial A1 .*connected: B2"):
            async with link.exchange():
                pass
        assert second.calls == []

        returned = bus.plug(zebra("A1", address=8))
        link.retry_now()
        async with link.exchange() as transport:
            await transport.write(b"~HS")
        assert returned.out == b"~HS"
    finally:
        await link.close()
    assert not second.out
