"""What the running InvenTree can do, detected by feature rather than by version number."""

from __future__ import annotations

import importlib


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def has_data_output() -> bool:
    """API >= 326: prints report through common.models.DataOutput, driven by the worker."""
    return _has("common.models", "DataOutput")


def has_machine_properties() -> bool:
    """API >= 401: machines show typed properties (set_properties)."""
    return _has("machine.machine_type", "MachineProperty")


def in_worker() -> bool:
    """True inside django-q's qcluster process."""
    try:
        from InvenTree.ready import isInWorkerThread
    except ImportError:
        return False
    return bool(isInWorkerThread())


def tables_ready() -> bool:
    """The plugin's app is installed (setting ENABLE_PLUGINS_APP); its tables are then usable."""
    from django.apps import apps

    return apps.is_installed("inventree_edge_plugin")
