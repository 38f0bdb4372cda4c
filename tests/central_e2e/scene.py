"""Steps the end-to-end tests share: an agent on its way, its printers in InvenTree, a print."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.central_e2e.agent_side import DPMM, Agent, AgentSetup, ZplPrinter, running_agent
from tests.central_e2e.inventree_side import (
    AgentAccount,
    Answer,
    InvenTreeApi,
    Printables,
    request,
    unique,
    wait_on_server,
)
from tests.waiting import wait_until_blocking

PLUGIN_PATH = "/plugin/inventree-edge/"
PROTOCOL = "1"
# LabelPrinterStatus codes InvenTree shows (the protocol's `status`).
CONNECTED, NO_MEDIA = 100, 301
COPIES = 2
# From a print in InvenTree to the labels at the printer: the worker's queue (head polls it
# every 1.5 s), the agent's poll (1 s here), the download, rendering and the printer.
PRINT_TIMEOUT_S = 60.0
# From the agent's start to its printers shown as machines in InvenTree.
REPORT_TIMEOUT_S = 30.0


def edge_call(url: str, token: str, agent: str, method: str, path: str, body: Any = None) -> Answer:
    """One request to the plugin as an agent does it (docs/central-protocol.md)."""
    return request(
        url,
        method,
        PLUGIN_PATH + path,
        token=token,
        body=body,
        headers={"X-Edge-Protocol": PROTOCOL, "X-Edge-Agent": urllib.parse.quote(agent)},
    )


def machine_uuid(api: InvenTreeApi, agent: str, printer: str) -> str:
    """The InvenTree machine showing `printer` of `agent`, once the agent has reported it."""
    name = f"{agent} / {printer}"
    found: list[str] = []

    def shown() -> bool:
        found[:] = [str(m["pk"]) for m in api.machines() if m["name"] == name]
        return bool(found)

    wait_on_server(shown, REPORT_TIMEOUT_S, f"machine {name!r} in InvenTree")
    [uuid] = found
    return uuid


@dataclass
class Scene:
    """An agent with a virtual printer and a simulated Zebra, shown in InvenTree."""

    api: InvenTreeApi
    agent: Agent
    zebra: ZplPrinter
    printables: Printables
    zebra_machine: str
    virtual_machine: str

    def print_on_zebra(self, copies: int = COPIES) -> Any:
        """Print the stock item labels on the Zebra as the web UI does; InvenTree's answer."""
        return self.api.print_labels(
            self.printables.template, self.printables.items, self.zebra_machine, copies
        )

    def expected_labels(self, copies: int = COPIES) -> int:
        return len(self.printables.items) * copies

    def wait_printed(self, count: int) -> None:
        wait_until_blocking(
            lambda: self.zebra.printed_count() >= count,
            PRINT_TIMEOUT_S,
            f"{count} labels at the Zebra",
        )


@contextmanager
def agent_scene(
    tmp_path: Path,
    api: InvenTreeApi,
    account: AgentAccount,
    zebra: ZplPrinter,
    printables: Printables,
    *,
    url: str | None = None,
    data_dir: Path | None = None,
    name: str | None = None,
    **options: Any,
) -> Iterator[Scene]:
    """Start an agent for `account` and wait until InvenTree shows its two printers."""
    setup = agent_setup(api, account, zebra, printables, url=url, name=name, **options)
    with running_agent(data_dir or tmp_path / "agent", setup) as agent:
        zebra_machine = machine_uuid(api, setup.name, setup.zebra_name)
        virtual_machine = machine_uuid(api, setup.name, setup.virtual_name)
        yield Scene(api, agent, zebra, printables, zebra_machine, virtual_machine)


# Agents named by the running test: their machines are deleted after it (conftest).
AGENTS_OF_TEST: list[str] = []


def new_agent_name(prefix: str = "agent") -> str:
    """A unique agent name whose InvenTree machines are deleted after the test."""
    name = unique(prefix)
    AGENTS_OF_TEST.append(name)
    return name


def agent_setup(
    api: InvenTreeApi,
    account: AgentAccount,
    zebra: ZplPrinter,
    printables: Printables,
    *,
    url: str | None = None,
    name: str | None = None,
    **options: Any,
) -> AgentSetup:
    return AgentSetup(
        name=name or new_agent_name(),
        url=url or api.server.url,
        token=account.token,
        zpl_url=zebra.url,
        label_width_mm=round(printables.width_mm),
        virtual_name=unique("virtual"),
        zebra_name=unique("zebra"),
        **options,
    )


def ink_share(label: Image.Image) -> float:
    """The share of a label's dots that are black."""
    histogram = label.convert("L").histogram()
    return sum(histogram[:128]) / (label.width * label.height)


def expected_size(printables: Printables) -> tuple[int, int]:
    """The template's size in dots at the Zebra's resolution."""
    return round(printables.width_mm * DPMM), round(printables.height_mm * DPMM)
