"""OPTIONS field descriptions, as InvenTree's metadata class builds them (its web UI makes forms of them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.api.views import ApiView


def _method_field(label: str) -> dict[str, Any]:
    return {"type": "field", "required": False, "read_only": True, "label": label}


def _machine_fields(*, create: bool) -> dict[str, Any]:
    writable_ref = (
        {"required": True, "read_only": False} if create else {"required": False, "read_only": True}
    )
    return {
        "pk": {"type": "string", "required": False, "read_only": True, "label": "Id"},
        "name": {
            "type": "string",
            "required": True,
            "read_only": False,
            "label": "Name",
            "help_text": "Name of machine",
            "max_length": 255,
        },
        "machine_type": {
            "type": "string",
            **writable_ref,
            "label": "Machine Type",
            "help_text": "Type of machine",
            "max_length": 255,
        },
        "driver": {
            "type": "string",
            **writable_ref,
            "label": "Driver",
            "help_text": "Driver used for the machine",
            "max_length": 255,
        },
        "initialized": _method_field("Initialized"),
        "active": {
            "type": "boolean",
            "required": False,
            "read_only": False,
            "label": "Active",
            "help_text": "Machines can be disabled",
            "default": True,
        },
        "status": _method_field("Status"),
        "status_model": _method_field("Status model"),
        "status_text": _method_field("Status text"),
        "machine_errors": _method_field("Machine errors"),
        "is_driver_available": _method_field("Is driver available"),
        "restart_required": _method_field("Restart required"),
        "properties": {"type": "list", "required": False, "read_only": True, "label": "Properties"},
        "status_read_at": {
            "type": "datetime",
            "required": False,
            "read_only": True,
            "label": "Status read at",
        },
    }


def _readonly_string(label: str) -> dict[str, Any]:
    return {"type": "string", "required": False, "read_only": True, "label": label}


SETTING_FIELDS: dict[str, Any] = {
    "pk": {"type": "integer", "required": False, "read_only": True, "label": "ID"},
    "key": {**_readonly_string("Key"), "help_text": "Settings key", "max_length": 50},
    "value": {
        "type": "field",
        "required": True,
        "read_only": False,
        "label": "Value",
        "help_text": "Settings value",
        "max_length": 2000,
    },
    "name": _readonly_string("Name"),
    "description": _readonly_string("Description"),
    "type": _readonly_string("Type"),
    "choices": _method_field("Choices"),
    "model_name": _readonly_string("Model name"),
    "api_url": _readonly_string("Api url"),
    "typ": _readonly_string("Typ"),
    "required": {"type": "boolean", "required": False, "read_only": True, "label": "Required"},
    "config_type": {
        "type": "choice",
        "required": False,
        "read_only": True,
        "label": "Config type",
        "max_length": 1,
    },
}


def machine_actions(view: ApiView, methods: tuple[str, ...], *, create: bool) -> dict[str, Any]:
    """`actions` for the machine list/detail: one field map per method the user may use."""
    actions: dict[str, Any] = {}
    for method in methods:
        if view.has_permission(method):
            actions[method] = _machine_fields(create=create and method == "POST")
    return actions
