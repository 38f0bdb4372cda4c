"""The agent side of the end-to-end tests: a ZPL printer simulator on loopback and a real daemon.

The simulator (drivers/zpl) serves on a TCP port of 127.0.0.1 from the test's LoopThread; every
byte it receives is recorded and read back with the test-side Zebra decoder
(tests/zebra_reference.py). The agent is `python -m agent run` in a subprocess
(tests/daemon_helpers.py) with a configuration file naming the central InvenTree and two
printers: a virtual one and the simulated Zebra.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from drivers.sim import ZplSimulator, serve_tcp
from drivers.sim.server import SimTcpServer
from tests import zebra_reference
from tests.central_e2e.loop_thread import LoopThread
from tests.daemon_helpers import Daemon, basic_auth, running_daemon, token_auth

# The simulated Zebra: 300 dpi (12 dots/mm), as the ZPL driver's default.
DPMM = 12
AGENT_ADMIN = "admin"
AGENT_ADMIN_PASSWORD = "e2e-agent-admin-pw"


class ZplPrinter:
    """A simulated Zebra on 127.0.0.1, recording every byte it receives."""

    def __init__(self, thread: LoopThread) -> None:
        self._thread = thread
        self.sim = ZplSimulator()
        self._streams: list[bytearray] = []
        open_channel = self.sim.open_channel

        def recording() -> Any:
            channel = open_channel()
            stream = bytearray()
            self._streams.append(stream)
            return _Recording(channel, stream)

        self.sim.open_channel = recording  # type: ignore[method-assign]
        self._server: SimTcpServer = thread.run(serve_tcp(self.sim))
        self.url: str = self._server.url

    def received(self) -> bytes:
        """Every byte sent to the printer so far, connection after connection."""
        return self._thread.call(lambda: b"".join(bytes(s) for s in self._streams))

    def printed_count(self) -> int:
        """Physical labels the printer put out (copies included)."""
        return self._thread.call(lambda: len(self.sim.labels))

    def labels(self) -> list[Image.Image]:
        """Each label format received, drawn by the test-side decoder (one per `^XA...^XZ`)."""
        return zebra_reference.labels(self.received())

    def copies_requested(self) -> list[int]:
        """The `^PQ` quantity of each format (1 when absent), in order."""
        formats = self.received().split(b"^XA")[1:]
        counts = []
        for body in formats:
            start = body.find(b"^PQ")
            counts.append(int(body[start + 3 :].split(b",")[0].split(b"^")[0]) if start >= 0 else 1)
        return counts

    def set_fault(self, name: str) -> None:
        self._thread.call(lambda: self.sim.set_fault(name))

    def clear_fault(self, name: str) -> None:
        self._thread.call(lambda: self.sim.clear_fault(name))

    def close(self) -> None:
        self._thread.call(self._server.close)
        self._thread.run(self._server.wait_closed())


@dataclass
class _Recording:
    channel: Any
    stream: bytearray

    def feed(self, data: bytes) -> bytes:
        self.stream += data
        reply: bytes = self.channel.feed(data)
        return reply

    def close(self) -> None:
        self.channel.close()


@dataclass
class AgentSetup:
    """What one agent is told: the central server and its two printers."""

    name: str
    url: str
    token: str
    zpl_url: str
    label_width_mm: int
    poll_interval: float = 1.0
    long_poll: float = 0.0
    report_interval: float = 30.0
    virtual_name: str = "virtual"
    zebra_name: str = "zebra"
    extra: dict[str, Any] = field(default_factory=dict)

    def toml(self) -> str:
        central = {
            "url": self.url,
            "token": self.token,
            "agent_name": self.name,
            "poll_interval": self.poll_interval,
            "long_poll": self.long_poll,
            "report_interval": self.report_interval,
            **self.extra,
        }
        lines = ["[central]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in central.items()]
        lines += [
            "",
            "[[machines]]",
            f"name = {json.dumps(self.virtual_name)}",
            'machine_type = "label-printer"',
            'driver = "virtual"',
            "[machines.driver_settings]",
            "DPI = 300",
            "POLL_INTERVAL = 1",
            "",
            "[[machines]]",
            f"name = {json.dumps(self.zebra_name)}",
            'machine_type = "label-printer"',
            'driver = "zpl"',
            "[machines.driver_settings]",
            f"CONNECTION = {json.dumps(self.zpl_url)}",
            f"DPMM = {DPMM}",
            f"LABEL_WIDTH_MM = {self.label_width_mm}",
            "LABEL_HEIGHT_MM = 0",
            "POLL_INTERVAL = 1",
            "",
        ]
        return "\n".join(lines)


@dataclass
class Agent:
    """A running agent daemon."""

    daemon: Daemon
    setup: AgentSetup
    config: Path
    _headers: dict[str, str] = field(default_factory=dict)

    def admin_headers(self) -> dict[str, str]:
        """The agent admin's token (obtained once: a password check costs a scrypt)."""
        if not self._headers:
            resp = self.daemon.request(
                "GET", "/api/user/token/", headers=basic_auth(AGENT_ADMIN, AGENT_ADMIN_PASSWORD)
            )
            assert resp.status == 200, resp.body
            self._headers = token_auth(resp.json()["token"])
        return self._headers

    def central(self) -> dict[str, Any]:
        """The agent's own view of its link: `GET /api/agent/central/`."""
        resp = self.daemon.request("GET", "/api/agent/central/", headers=self.admin_headers())
        assert resp.status == 200, resp.body
        body: dict[str, Any] = resp.json()
        return body

    def log_events(self) -> list[dict[str, Any]]:
        return self.daemon.log_records()


def agent_env() -> dict[str, str]:
    return {
        "INVENTREE_EDGE_AUTH__ADMIN_USER": AGENT_ADMIN,
        "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD": AGENT_ADMIN_PASSWORD,
        "INVENTREE_EDGE_LOG__FORMAT": "json",
    }


@contextmanager
def running_agent(data_dir: Path, setup: AgentSetup) -> Iterator[Agent]:
    """Start the agent daemon with `setup` (a new data directory keeps its queue across runs)."""
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text(setup.toml())
    with running_daemon(data_dir, config=config, env=agent_env()) as daemon:
        yield Agent(daemon, setup, config)
