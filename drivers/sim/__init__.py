"""Printer simulators (ESC/POS, Zebra ZPL) for tests, benchmarks and `inventree-edge simulate`."""

from __future__ import annotations

from drivers.sim.base import ReceivedLabel, Simulator
from drivers.sim.escpos import EscposSimulator
from drivers.sim.run import make_simulator, run_simulator
from drivers.sim.server import PtySession, SimTcpServer, serve_pty, serve_tcp
from drivers.sim.zpl import ZplSimulator

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
