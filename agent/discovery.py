"""Finding drivers: the built-in list plus the `inventree_edge.drivers` entry-point group.

Each candidate is loaded on its own; one that fails to import, fails validation or repeats a slug
becomes a registry error with InvenTree's wording, never a crash.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import structlog

import drivers
from agent.machine_types import MACHINE_TYPES, MachineType
from drivers.base import BaseDriver
from drivers.family import builtin_driver_specs

log = structlog.get_logger(__name__)

# Classes defined in these two packages ship with the agent; anything else came from a plugin.
_BUILTIN_DIRS = (Path(__file__).resolve().parent, Path(drivers.__file__).resolve().parent)


@dataclass(frozen=True, slots=True)
class Provider:
    """Where a class came from: a built-in, or a distribution's entry point."""

    slug: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    spec: str
    provider: Provider


@dataclass(slots=True)
class Discovered:
    machine_types: dict[str, type[MachineType]]
    drivers: dict[str, type[BaseDriver]]
    providers: dict[str, Provider]
    errors: list[str]


def discover(extra: Iterable[str] = ()) -> Discovered:
    """Load machine types and drivers; `extra` adds `module:Class` specs (tests, plugins)."""
    found = Discovered(machine_types={}, drivers={}, providers={}, errors=[])
    for machine_type in MACHINE_TYPES:
        if machine_type.SLUG in found.machine_types:
            found.errors.append(f"Cannot re-register machine type '{machine_type.SLUG}'")
            continue
        found.machine_types[machine_type.SLUG] = machine_type
    base_drivers = {machine_type.base_driver for machine_type in found.machine_types.values()}
    for candidate in _candidates(extra):
        driver_cls = _load(candidate, found.errors)
        if driver_cls is None or driver_cls in base_drivers:
            continue
        try:
            validate_driver(driver_cls)
        except NotImplementedError as err:
            found.errors.append(str(err))
            continue
        if driver_cls.SLUG in found.drivers:
            found.errors.append(f"Cannot re-register driver '{driver_cls.SLUG}'")
            continue
        found.drivers[driver_cls.SLUG] = driver_cls
        found.providers[driver_cls.SLUG] = candidate.provider
    for error in found.errors:
        log.error("registry_error", error=error)
    return found


def validate_driver(driver_cls: type[BaseDriver]) -> None:
    """Raise NotImplementedError as InvenTree words it when required attributes are missing."""
    driver_cls.validate()
    abstract = sorted(getattr(driver_cls, "__abstractmethods__", ()))
    if abstract:
        raise NotImplementedError(
            f"'{driver_cls!r}' did not override the required attributes: {', '.join(abstract)}"
        )


def provider_file(cls: type) -> str:
    """The absolute path of the file that defines a class."""
    return str(Path(inspect.getfile(cls)).resolve())


def is_builtin(cls: type) -> bool:
    """The class ships with the agent."""
    path = Path(provider_file(cls))
    return any(path.is_relative_to(directory) for directory in _BUILTIN_DIRS)


def _candidates(extra: Iterable[str]) -> list[Candidate]:
    candidates = [Candidate(spec, Provider()) for spec in (*builtin_driver_specs(), *extra)]
    for entry_point in entry_points(group=drivers.ENTRY_POINT_GROUP):
        dist = entry_point.dist
        provider = Provider(slug=entry_point.name, name=dist.name if dist is not None else None)
        candidates.append(Candidate(entry_point.value, provider))
    return candidates


def _load(candidate: Candidate, errors: list[str]) -> type[BaseDriver] | None:
    module_name, _, attr = candidate.spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception as err:  # noqa: BLE001 - a broken driver must not stop the agent
        errors.append(f"Failed to load driver '{candidate.spec}': {type(err).__name__}: {err}")
        return None
    if not (inspect.isclass(obj) and issubclass(obj, BaseDriver)):
        errors.append(f"'{candidate.spec}' is not a driver class (it must subclass BaseDriver)")
        return None
    return obj
