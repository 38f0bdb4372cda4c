"""Fixtures of the end-to-end tests: agent accounts, things to print, the loop, the Zebra."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.central_e2e.agent_side import ZplPrinter
from tests.central_e2e.inventree_side import (
    AgentAccount,
    InvenTreeApi,
    Printables,
    create_agent_accounts,
    unique,
)
from tests.central_e2e.loop_thread import LoopThread, loop_thread
from tests.central_e2e.scene import AGENTS_OF_TEST
from tests.inventree_servers import InvenTreeServer

# Accounts made at once per test worker and line (one `manage shell` run costs seconds): more
# than the tests of one worker take.
ACCOUNTS_IN_GROUP = 16
ACCOUNTS_OUTSIDE_GROUP = 2
ITEMS = 2


class AccountPool:
    """Agent accounts of one InvenTree, each handed out once."""

    def __init__(self, accounts: list[AgentAccount]) -> None:
        self._accounts = list(accounts)
        self._lock = threading.Lock()

    def take(self, *, in_group: bool = True) -> AgentAccount:
        with self._lock:
            for account in self._accounts:
                if account.in_group == in_group:
                    self._accounts.remove(account)
                    return account
        raise AssertionError("the account pool ran out: raise ACCOUNTS_* in conftest.py")


@pytest.fixture(scope="session")
def accounts(inventree: InvenTreeServer) -> AccountPool:
    return AccountPool(
        create_agent_accounts(
            inventree, unique("e2e-agent"), ACCOUNTS_IN_GROUP, ACCOUNTS_OUTSIDE_GROUP
        )
    )


@pytest.fixture(scope="session")
def printables(inventree: InvenTreeServer) -> Printables:
    api = InvenTreeApi(inventree)
    template = api.stock_label_template()
    return Printables(
        template=int(template["pk"]),
        width_mm=float(template["width"]),
        height_mm=float(template["height"]),
        items=api.stock_items(unique("e2e"), ITEMS),
    )


@pytest.fixture
def api(inventree: InvenTreeServer) -> Iterator[InvenTreeApi]:
    api = InvenTreeApi(inventree)
    AGENTS_OF_TEST.clear()
    yield api
    for agent in AGENTS_OF_TEST:
        api.delete_machines_of(agent)
    AGENTS_OF_TEST.clear()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    with loop_thread() as thread:
        yield thread


@pytest.fixture
def zebra(loop: LoopThread) -> Iterator[ZplPrinter]:
    printer = ZplPrinter(loop)
    try:
        yield printer
    finally:
        printer.close()
