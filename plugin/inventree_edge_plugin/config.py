"""The plugin's settings, read through InvenTree's plugin registry."""

from __future__ import annotations

from . import PLUGIN_SLUG

SETTINGS = {
    "AGENT_GROUP": {
        "name": "Agent group",
        "description": "InvenTree group whose members may act as InvenTree Edge agents",
        "default": "edge-agents",
    },
    "LONG_POLL_MAX": {
        "name": "Longest job poll (s)",
        "description": "Longest time one agent request for jobs may hold a server thread (0-20)",
        "default": 20,
        "validator": [int],
    },
    "WAIT_FOR_RESULT": {
        "name": "Wait for the printer (s)",
        "description": (
            "Seconds a print waits in the background worker for the agent's result, so that "
            "the print dialog shows progress and failures (0 = answer when queued)"
        ),
        "default": 10,
        "validator": [int],
    },
    "JOB_EXPIRY_HOURS": {
        "name": "Job expiry (h)",
        "description": "A job that no agent accepted within this time fails; its user is notified",
        "default": 24,
        "validator": [int],
    },
    "JOB_RETENTION_DAYS": {
        "name": "Job retention (days)",
        "description": "Finished jobs and their documents are deleted after this many days",
        "default": 7,
        "validator": [int],
    },
}

LONG_POLL_CEILING = 20


def get(key: str):
    """The setting's value, or its default when the plugin is not loaded (e.g. in migrations)."""
    default = SETTINGS[key]["default"]
    try:
        from plugin import registry

        plugin = registry.get_plugin(PLUGIN_SLUG)
        value = plugin.get_setting(key) if plugin is not None else default
    except Exception:  # noqa: BLE001 - a registry mid-reload must not break printing
        value = default
    if value in (None, ""):
        value = default
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            return default
    return str(value)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
