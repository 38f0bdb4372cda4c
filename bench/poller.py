"""Benchmark the status poller: CPU per poll of a virtual printer, and idle CPU at many machines.

Run from the repository root: `.venv/bin/python -m bench.poller [--machines 10000]`. In process,
with a real SQLite store in a temp directory: the machines are created and initialised as the
daemon does, then (1) every machine is polled `--rounds` times back to back (CPU per poll), and
(2) the poll loops run on their own for `--seconds` (process CPU as a share of one core, and the
store writes they made). Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from agent.config import MachineEntry
from agent.discovery import discover
from agent.poller import Poller
from agent.registry import Registry
from agent.storage.database import Database
from agent.storage.machines import MachineStore


async def _measure(machines: int, rounds: int, seconds: float, interval: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-poller-") as tmp:
        database = Database(Path(tmp) / "agent.sqlite3")
        await database.open()
        try:
            store = MachineStore(database)
            registry = Registry(store, discover(), Path(tmp))
            await registry.load()
            entries = [
                MachineEntry(
                    name=f"virtual-{n}",
                    driver="virtual",
                    driver_settings={"POLL_INTERVAL": interval},
                )
                for n in range(machines)
            ]
            await registry.apply_config(entries)
            await registry.start()
            poller = Poller(registry)
            ready = [m for m in registry.machines.values() if m.initialized]
            writes = _count_state_writes(store)

            started = time.process_time()
            for _ in range(rounds):
                for machine in ready:
                    await poller.poll_once(machine)
            per_poll_us = (time.process_time() - started) / (rounds * len(ready)) * 1e6
            print(f"machines: {len(ready)}, poll interval {interval} s")
            print(f"CPU per poll (back to back, {rounds} rounds): {per_poll_us:.1f} us")
            print(f"status writes during those polls: {writes[0]}")

            writes[0] = 0
            for machine in ready:
                poller.start_polling(machine)
            await asyncio.sleep(interval)  # the first round of every loop is due at once
            cpu_before, wall_before = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu = time.process_time() - cpu_before
            wall = time.monotonic() - wall_before
            print(
                f"poll loops running on their own for {wall:.1f} s: CPU {cpu / wall:.1%} of one "
                f"core, status writes {writes[0]}"
            )
            await poller.close(2.0)
        finally:
            await database.close()


def _count_state_writes(store: MachineStore) -> list[int]:
    """Wrap `store.save_states` to count the rows it is given; the count is in the list."""
    count = [0]
    save = store.save_states

    async def counted(rows: list) -> None:  # type: ignore[type-arg]
        count[0] += len(rows)
        await save(rows)

    store.save_states = counted  # type: ignore[method-assign]
    return count


def main() -> None:
    """Parse options and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machines", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=int, default=5, help="virtual printers' POLL_INTERVAL")
    args = parser.parse_args()
    asyncio.run(_measure(args.machines, args.rounds, args.seconds, args.interval))


if __name__ == "__main__":
    main()
