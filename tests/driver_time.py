"""Time for drivers under test: a clock whose sleeps pass at once, and quick reply timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from drivers.base import BaseDriver, DriverContext
from drivers.escpos.driver import EscposDriver, EscposTiming
from drivers.zpl.driver import ZplDriver, ZplTiming

# The simulators answer in microseconds: a printer gone silent should fail a test quickly.
QUICK_ESCPOS = EscposTiming(status_timeout=0.3, label_status_timeout=0.3, reply_byte_gap=0.3)
QUICK_ZPL = ZplTiming(query_timeout=0.3)
# For a running agent, whose drivers keep the real clock: its confirm loops look often too.
QUICK_ZPL_LOOPS = ZplTiming(query_timeout=0.3, stall_status_after=0.05, odometer_interval=0.01)


class SteppingClock:
    """A driver clock whose sleeps take no real time: each moves the clock on by its length."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        # Still a turn of the event loop: the simulator answers, a cancellation lands.
        await asyncio.sleep(0)


def zpl_driver(
    tmp_path: Path, clock: SteppingClock | None = None, timing: ZplTiming = QUICK_ZPL
) -> ZplDriver:
    """A ZPL driver with quick reply timeouts whose confirm loops run on a stepping clock."""
    return ZplDriver(DriverContext(tmp_path, clock or SteppingClock()), timing)


def escpos_driver(tmp_path: Path, timing: EscposTiming = QUICK_ESCPOS) -> EscposDriver:
    """An ESC/POS driver with quick reply timeouts."""
    return EscposDriver(DriverContext(tmp_path, SteppingClock()), timing)


def use_quick_timing(drivers: Mapping[str, BaseDriver]) -> None:
    """Give a running agent's ESC/POS and ZPL drivers quick timing (read at each exchange)."""
    for driver in drivers.values():
        if isinstance(driver, ZplDriver):
            driver.timing = QUICK_ZPL_LOOPS
        elif isinstance(driver, EscposDriver):
            driver.timing = QUICK_ESCPOS
