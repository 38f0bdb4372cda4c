"""The `inventree-edge simulate` entry: serve one simulator and report each printed label."""

from __future__ import annotations

import asyncio
from typing import TextIO

from drivers.sim.base import ReceivedLabel, Simulator
from drivers.sim.escpos import EscposSimulator
from drivers.sim.server import serve_pty, serve_tcp
from drivers.sim.zpl import ZplSimulator

# Raw printing port of network label printers (AppSocket / JetDirect).
DEFAULT_PORT = 9100
SIMULATORS: dict[str, type[Simulator]] = {"escpos": EscposSimulator, "zpl": ZplSimulator}


def make_simulator(language: str) -> Simulator:
    """Return a new simulator for `escpos` or `zpl`; ValueError for another language."""
    try:
        return SIMULATORS[language]()
    except KeyError:
        raise ValueError(f"no simulator for {language!r}; known: {', '.join(SIMULATORS)}") from None


async def run_simulator(
    language: str,
    port: int | None = None,
    pty: bool = False,
    fault: str | None = None,
    out: TextIO | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Serve a simulator on TCP (`port`, default 9100) or a pty until cancelled, reporting to `out`.

    Prints one line saying where it listens, then one line per printed label.
    """
    sim = make_simulator(language)
    if fault is not None:
        sim.set_fault(fault)

    def say(line: str) -> None:
        if out is not None:
            out.write(line + "\n")
            out.flush()

    def on_label(label: ReceivedLabel) -> None:
        say(label.describe())

    sim.on_label = on_label
    suffix = f" (fault: {fault})" if fault else ""
    if pty:
        async with await serve_pty(sim) as session:
            say(f"{language} simulator on {session.url}{suffix}")
            await _forever()
    else:
        async with await serve_tcp(sim, host, DEFAULT_PORT if port is None else port) as server:
            say(f"{language} simulator listening on {server.url}{suffix}")
            await _forever()


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()
