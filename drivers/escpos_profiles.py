"""python-escpos capability profiles: what a printer model prints (width in dots, resolution, raster).

python-escpos loads its capability database at import: about 0.2 s, a cache file written to a
temporary directory, and `logging.basicConfig()`. So it is imported once, on first use (in a
background thread when a machine names a model), with its cache in the driver's state directory.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The profile that assumes nothing about the model.
DEFAULT_PROFILE = "default"

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


def profiles(cache_dir: Path | None = None) -> dict[str, ModelProfile]:
    """Every capability profile by name (loads python-escpos on the first call; blocking)."""
    global _profiles  # noqa: PLW0603 - one database per process, loaded once
    with _lock:
        if _profiles is None:
            if cache_dir is not None:
                cache_dir.mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", str(cache_dir))
            from escpos import capabilities  # noqa: PLC0415 - heavy import with side effects

            data: dict[str, Any] = capabilities.CAPABILITIES.get("profiles", {})
            _profiles = {name: _profile(name, entry) for name, entry in data.items()}
        return _profiles


def warm(cache_dir: Path) -> None:
    """Load the profiles in a background thread, so the first use does not wait."""
    threading.Thread(
        target=profiles, args=(cache_dir,), name="escpos-profiles", daemon=True
    ).start()


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
