"""python-escpos capability profiles: what a printer model prints (width in dots, resolution, raster).

The profiles come from python-escpos's `capabilities.json`, read here as JSON: about 1 ms for
the 35 models, so it may run on the event loop (setting validation does). Importing
python-escpos's own `escpos.capabilities` instead parses the file with PyYAML (0.3-0.4 s), writes
a cache to a temporary directory and calls `logging.basicConfig()`; it is never imported.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# The profile that assumes nothing about the model.
DEFAULT_PROFILE = "default"
_CAPABILITIES = ("escpos", "capabilities.json")

_lock = threading.Lock()
_profiles: dict[str, ModelProfile] | None = None


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What python-escpos knows of one model (None: not stated by the profile)."""

    name: str
    title: str
    width_dots: int | None
    dpi: int | None
    raster: bool


def model_profiles() -> dict[str, ModelProfile]:
    """Every capability profile by name (read once; empty if python-escpos's file is missing)."""
    global _profiles  # noqa: PLW0603 - one database per process, loaded once
    with _lock:
        if _profiles is None:
            _profiles = {name: _profile(name, entry) for name, entry in _load().items()}
        return _profiles


def _load() -> dict[str, Any]:
    package, name = _CAPABILITIES
    try:
        text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ModuleNotFoundError, ValueError) as err:
        log.warning("escpos_profiles_unavailable", error=str(err))
        return {}
    found = data.get("profiles") if isinstance(data, dict) else None
    return (
        {k: v for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}
    )


def _profile(name: str, entry: dict[str, Any]) -> ModelProfile:
    media = entry.get("media") or {}
    width = (media.get("width") or {}).get("pixels")
    dpi = media.get("dpi")
    return ModelProfile(
        name=name,
        title=str(entry.get("name") or name),
        width_dots=width if isinstance(width, int) and width > 0 else None,
        dpi=dpi if isinstance(dpi, int) and dpi > 0 else None,
        raster=bool((entry.get("features") or {}).get("bitImageRaster", True)),
    )
