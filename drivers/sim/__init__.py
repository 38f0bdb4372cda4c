"""Printer simulators (ESC/POS, Zebra ZPL) for tests, benchmarks and `inventree-edge simulate`.

Names are imported on first use, so `drivers.sim.faults` (what the command line lists) loads
without the simulators and Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.escpos.simulator import EscposSimulator
    from drivers.sim.base import ReceivedLabel, Simulator
    from drivers.sim.run import make_simulator, run_simulator
    from drivers.sim.server import PtySession, SimTcpServer, serve_pty, serve_tcp
    from drivers.zpl.simulator import ZplSimulator

_WHERE = {
    "EscposSimulator": "drivers.escpos.simulator",
    "PtySession": "drivers.sim.server",
    "ReceivedLabel": "drivers.sim.base",
    "SimTcpServer": "drivers.sim.server",
    "Simulator": "drivers.sim.base",
    "ZplSimulator": "drivers.zpl.simulator",
    "make_simulator": "drivers.sim.run",
    "run_simulator": "drivers.sim.run",
    "serve_pty": "drivers.sim.server",
    "serve_tcp": "drivers.sim.server",
}

__all__ = [
    "EscposSimulator",
    "PtySession",
    "ReceivedLabel",
    "SimTcpServer",
    "Simulator",
    "ZplSimulator",
    "make_simulator",
    "run_simulator",
    "serve_pty",
    "serve_tcp",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'drivers.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
