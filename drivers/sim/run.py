"""The `inventree-edge simulate` entry: serve one simulator and report each printed label."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TextIO

from drivers.family import builtin_families, load
from drivers.sim.base import ReceivedLabel, Simulator
from drivers.sim.server import serve_pty, serve_tcp

# Raw printing port of network label printers (AppSocket / JetDirect).
DEFAULT_PORT = 9100
_SAVED_NAME = re.compile(r"label-(\d+)\.png")


def simulator_specs() -> dict[str, str]:
    """The `module:Class` of each family's simulator, by language (`escpos`, `zpl`...)."""
    return {
        language: family.simulator
        for language, family in builtin_families().items()
        if family.simulator is not None
    }


def make_simulator(language: str) -> Simulator:
    """Return a new simulator of a family's language; ValueError for one without a simulator."""
    specs = simulator_specs()
    spec = specs.get(language)
    if spec is None:
        raise ValueError(f"no simulator for {language!r}; known: {', '.join(specs)}")
    simulator_class = load(spec)
    if not (isinstance(simulator_class, type) and issubclass(simulator_class, Simulator)):
        raise TypeError(f"{spec} is not a Simulator class")
    return simulator_class()


async def run_simulator(
    language: str,
    port: int | None = None,
    pty: bool = False,
    fault: str | None = None,
    out: TextIO | None = None,
    host: str = "127.0.0.1",
    save: Path | None = None,
) -> None:
    """Serve a simulator on TCP (`port`, default 9100) or a pty until cancelled, reporting to `out`.

    Prints one line saying where it listens, then one line per printed label. With `save`,
    each label is also written to that directory as `label-NNNN.png` (numbering goes on from
    the files already there), one pixel per printed dot.
    """
    sim = make_simulator(language)
    if fault is not None:
        sim.set_fault(fault)
    saver = LabelSaver(save) if save is not None else None

    def say(line: str) -> None:
        if out is not None:
            out.write(line + "\n")
            out.flush()

    def on_label(label: ReceivedLabel) -> None:
        if saver is None:
            say(label.describe())
            return
        try:
            say(f"{label.describe()} -> {saver.save(label)}")
        except OSError as err:
            say(f"{label.describe()} (not saved: {err})")

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


class LabelSaver:
    """Writes each printed label to a directory as `label-NNNN.png`, never over an older one."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        taken = (_SAVED_NAME.fullmatch(p.name) for p in directory.iterdir())
        self._last = max((int(m[1]) for m in taken if m is not None), default=0)

    def save(self, label: ReceivedLabel) -> Path:
        """Write the label's pixels (black dots black) and return the file's path."""
        self._last += 1
        path = self.directory / f"label-{self._last:04d}.png"
        # A label is a few KB of PNG: written in the loop's thread, as the line is printed.
        label.image.save(path, "PNG")
        return path


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()
