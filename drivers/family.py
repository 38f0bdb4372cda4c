"""Printer families: what each family package declares, read without loading its code.

A family is one folder under `drivers/` (`drivers/zpl/`): its `__init__.py` declares `FAMILY`, a
`Family` naming its driver and simulator as `module:Class` strings and listing the simulator's
faults. The declaration is plain data, so the command line lists the simulators and their faults
without importing the simulators, the drivers or Pillow; `load` imports a class when it is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import drivers


@dataclass(frozen=True, slots=True)
class Family:
    """One printer family, as its package declares it in `FAMILY`."""

    # The simulator's name on the command line (`inventree-edge simulate zpl`).
    language: str
    # Completes "simulate ...": "a Zebra ZPL printer".
    title: str
    # The driver class, as `module:Class`.
    driver: str
    # The simulator class (a `drivers.sim.base.Simulator`), as `module:Class`; None: it has none.
    simulator: str | None = None
    # The simulator's own faults with one line of help each (the common ones are added to these).
    faults: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def builtin_families() -> dict[str, Family]:
    """The families that ship with the agent (`drivers.BUILTIN_FAMILIES`), by language."""
    found: dict[str, Family] = {}
    for package in drivers.BUILTIN_FAMILIES:
        family = importlib.import_module(package).FAMILY
        if not isinstance(family, Family):
            raise TypeError(f"{package}.FAMILY is not a Family")
        found[family.language] = family
    return found


def builtin_driver_specs() -> tuple[str, ...]:
    """Every built-in driver as `module:Class`: the standalone ones, then each family's."""
    return (*drivers.STANDALONE_DRIVERS, *(f.driver for f in builtin_families().values()))


def load(spec: str) -> object:
    """The object a `module:name` spec names (the module is imported now)."""
    module_name, _, name = spec.partition(":")
    return getattr(importlib.import_module(module_name), name)
