"""`/api/machine/types/`, `/api/machine/drivers/` and `/api/machine/status/` (registry errors)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.errors import drf_json
from agent.api.views import ApiView
from agent.appkeys import DATABASE, REGISTRY
from agent.discovery import Provider, is_builtin, provider_file


def _provider_json(provider: Provider | None) -> dict[str, Any] | None:
    if provider is None or provider.slug is None:
        return None
    return {"slug": provider.slug, "name": provider.name or provider.slug, "pk": None}


class MachineTypesList(ApiView):
    """List all machine types."""

    name = "Machine Types List"
    description = "List all machine types."

    async def get(self) -> web.StreamResponse:
        """Every machine type, sorted by slug."""
        registry = self.request.app[REGISTRY]
        return drf_json(
            [
                {
                    "slug": machine_type.SLUG,
                    "name": machine_type.NAME,
                    "description": machine_type.DESCRIPTION,
                    "provider_file": provider_file(machine_type),
                    "provider_plugin": None,
                    "is_builtin": is_builtin(machine_type),
                }
                for machine_type in registry.machine_types.values()
            ]
        )


class MachineDriverList(ApiView):
    """List all machine drivers."""

    name = "Machine Driver List"
    description = "List all machine drivers."

    async def get(self) -> web.StreamResponse:
        """Every driver, sorted by slug; `?machine_type=` keeps one type's drivers."""
        registry = self.request.app[REGISTRY]
        wanted = self.request.query.get("machine_type", "")
        result = []
        for slug, driver_cls in registry.driver_classes.items():
            if wanted and driver_cls.machine_type != wanted:
                continue
            instance = registry.drivers.get(slug)
            result.append(
                {
                    "slug": slug,
                    "name": driver_cls.NAME,
                    "description": driver_cls.DESCRIPTION,
                    "provider_file": provider_file(driver_cls),
                    "provider_plugin": _provider_json(registry.providers.get(slug)),
                    "is_builtin": is_builtin(driver_cls),
                    "machine_type": driver_cls.machine_type,
                    "driver_errors": list(instance.errors) if instance is not None else [],
                }
            )
        return drf_json(result)


class RegistryStatus(ApiView):
    """Provide status data for the machine registry."""

    name = "Registry Status"
    description = "Provide status data for the machine registry."

    async def get(self) -> web.StreamResponse:
        """Errors met while loading drivers and machines, and a failing disk."""
        registry = self.request.app[REGISTRY]
        errors = list(registry.registry_errors)
        fault = self.request.app[DATABASE].fault
        if fault is not None:
            errors.append(f"Storage: {fault}")
        return drf_json({"registry_errors": [{"message": e} for e in errors]})
