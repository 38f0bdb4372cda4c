"""The plugin's tests of one InvenTree line run one at a time, across xdist workers.

InvenTree's machine registry is a dict that its request threads iterate without a lock. While a
test's agent report creates a machine, another test's request can fail with "dictionary changed
size during iteration", or a print dialog can miss the new machine. That is an InvenTree bug,
not the plugin's. A lock file per line serialises these tests while the two lines run in
parallel. (`--dist loadgroup` would do the same, but pytest-xdist 3.8 under pytest 9 did not
group the tests here.)
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator

import pytest

from tests.inventree_servers import InvenTreeServer

LOCK_WAIT_S = 240.0
LOCK_POLL_S = 0.05


@pytest.fixture(autouse=True)
def one_test_per_line(inventree: InvenTreeServer) -> Iterator[None]:
    path = inventree.folder / ".plugin-tests.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail(f"another test held {path} for {LOCK_WAIT_S:g} s")
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Waiting for the other tests of the line counts against a test's time limit."""
    for item in items:
        if item.path.parent.name == "plugin" and "inventree" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(LOCK_WAIT_S + 120))
