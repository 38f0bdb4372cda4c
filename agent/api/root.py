"""`GET /api/` (server information), the generic status codes, and the catch-all 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent import __version__
from agent.api.errors import ParseError, django_json, drf_json
from agent.api.views import ApiView, identify
from agent.appkeys import DATABASE, REGISTRY, SETTINGS
from drivers.base import MachineStatus

API_VERSION = 303
# The InvenTree version whose API this agent speaks (its `version` field).
INVENTREE_VERSION = "0.18.0 dev"


class InfoView(ApiView):
    """Serve current server information."""

    name = "Info"
    description = "Serve current server information."
    allow_anonymous = True

    async def get(self) -> web.StreamResponse:
        """InvenTree's server information; staff-only fields are null for others."""
        settings = self.request.app[SETTINGS]
        identity = await identify(self.request)
        staff = identity is not None and (identity.user.is_staff or identity.user.is_superuser)
        info: dict[str, Any] = {
            "server": "InvenTree",
            "version": INVENTREE_VERSION,
            "instance": settings.instance.name,
            "apiVersion": API_VERSION,
            "worker_running": True,
            "worker_count": 1,
            "worker_pending_tasks": 0,
            "plugins_enabled": False,
            "plugins_install_disabled": True,
            "active_plugins": [],
            "email_configured": False,
            "debug_mode": False,
            "docker_mode": False,
            "default_locale": "en",
            "system_health": self.request.app[DATABASE].fault is None if staff else None,
            "database": "sqlite3" if staff else None,
            "platform": None,
            "installer": None,
            "target": None,
            "django_admin": None,
            "agent": {"name": "inventree-edge", "version": __version__},
        }
        return django_json(info)


def status_class_json(status_class: type[MachineStatus]) -> dict[str, Any]:
    """One status class as InvenTree's generic status API lists it."""
    return {
        "status_class": status_class.__name__,
        "values": {
            member.name: {
                "key": member.value,
                "name": member.name,
                "label": member.label,
                "color": member.color,
            }
            for member in status_class
        },
    }


def _status_classes(request: web.Request) -> dict[str, type[MachineStatus]]:
    registry = request.app[REGISTRY]
    classes: dict[str, type[MachineStatus]] = {"MachineStatus": MachineStatus}
    for machine_type in registry.machine_types.values():
        classes[machine_type.MACHINE_STATUS.__name__] = machine_type.MACHINE_STATUS
    return classes


class AllStatusViews(ApiView):
    """Perform a GET request to learn information about status codes."""

    name = "All Status Views"
    description = "Perform a GET request to learn information about status codes."

    async def get(self) -> web.StreamResponse:
        """Every status class, keyed by class name."""
        return drf_json(
            {name: status_class_json(cls) for name, cls in _status_classes(self.request).items()}
        )


class StatusView(ApiView):
    """Retrieve information about a specific status code."""

    name = "Status"
    description = "Retrieve information about a specific status code"

    async def get(self) -> web.StreamResponse:
        """One status class; an unknown name is a 400 (InvenTree 303 answers 500 for every name)."""
        wanted = self.request.match_info["statusmodel"]
        status_class = _status_classes(self.request).get(wanted)
        if status_class is None:
            raise ParseError(f"Status class '{wanted}' not found")
        return drf_json(status_class_json(status_class))


async def api_not_found(request: web.Request) -> web.StreamResponse:
    """Any other `/api/...` path, with any method, needs no authentication."""
    return django_json({"detail": "API endpoint not found", "url": str(request.url)}, status=404)


async def not_found(request: web.Request) -> web.StreamResponse:
    """Outside `/api/` the agent serves nothing."""
    return drf_json({"detail": "Not found."}, status=404)
