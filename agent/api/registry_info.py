"""`/api/machine/types/`, `/api/machine/drivers/` and `/api/machine/status/` (registry errors)."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web

from agent.api.declare import Answer, ApiModel, Doc, Endpoint, ListOf, Operation, query_parameter
from agent.api.errors import drf_json
from agent.api.machine_models import status_codes_text
from agent.api.views import ApiView
from agent.appkeys import DATABASE, REGISTRY
from agent.discovery import Provider, is_builtin, provider_file


def _provider_json(provider: Provider | None) -> dict[str, Any] | None:
    if provider is None or provider.slug is None:
        return None
    return {"slug": provider.slug, "name": provider.name or provider.slug, "pk": None}


_SLUG = Doc(schema={"pattern": r"^[-a-zA-Z0-9_]+$"})


class MachineType(ApiModel):
    """Serializer for a BaseMachineType class."""

    slug: Annotated[str, _SLUG]
    name: str
    description: str
    provider_file: Annotated[
        str, Doc(description="Serializer method for the provider_file field.", read_only=True)
    ]
    provider_plugin: Annotated[
        dict[str, Any] | None,
        Doc(description="Serializer method for the provider_plugin field.", read_only=True),
    ]
    is_builtin: Annotated[
        bool, Doc(description="Serializer method for the is_builtin field.", read_only=True)
    ]


class MachineDriver(MachineType):
    """Serializer for a BaseMachineDriver class."""

    machine_type: Annotated[str, Doc(read_only=True, schema=_SLUG.schema)]
    driver_errors: Annotated[
        list[str], Doc(description="Serializer method for the errors field.", read_only=True)
    ]


class MachineRegistryError(ApiModel):
    """Serializer for a machine registry error."""

    message: str


class MachineRegistryStatus(ApiModel):
    """Serializer for machine registry status."""

    registry_errors: list[MachineRegistryError]


class MachineTypesList(ApiView):
    """List all machine types."""

    endpoint = Endpoint(
        "/api/machine/types/",
        name="Machine Types List",
        description="List all machine types.",
        operations=(
            Operation(
                "GET",
                "machine_types_list",
                f"List all machine types, sorted by slug. {status_codes_text()}",
                answers=(Answer(200, ListOf(MachineType)),),
            ),
        ),
    )

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

    endpoint = Endpoint(
        "/api/machine/drivers/",
        name="Machine Driver List",
        description="List all machine drivers.",
        operations=(
            Operation(
                "GET",
                "machine_drivers_list",
                "List all machine drivers, sorted by slug.",
                parameters=(
                    query_parameter(
                        "machine_type",
                        {"type": "string"},
                        "Only the drivers of this machine type (exact slug).",
                    ),
                ),
                answers=(Answer(200, ListOf(MachineDriver)),),
            ),
        ),
    )

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

    endpoint = Endpoint(
        "/api/machine/status/",
        name="Registry Status",
        description="Provide status data for the machine registry.",
        operations=(
            Operation(
                "GET",
                "machine_status_retrieve",
                "Provide status data for the machine registry.",
                answers=(Answer(200, MachineRegistryStatus),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Errors met while loading drivers and machines, and a failing disk."""
        registry = self.request.app[REGISTRY]
        errors = list(registry.registry_errors)
        fault = self.request.app[DATABASE].fault
        if fault is not None:
            errors.append(f"Storage: {fault}")
        return drf_json({"registry_errors": [{"message": e} for e in errors]})
