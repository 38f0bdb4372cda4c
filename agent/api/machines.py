"""`/api/machine/`: list, create, detail, update, delete and restart, as InvenTree 303 answers them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.errors import NotFound, ValidationFailed, drf_json
from agent.api.fields import (
    MISSING,
    FieldErrors,
    boolean_field,
    char_field,
    clean_input,
    expect_object,
)
from agent.api.listing import matches_search, order_by, paginate, search_terms
from agent.api.metadata import machine_actions
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from agent.machine import Machine
from agent.registry import DuplicateName, Registry

NAME_MAX_LENGTH = 255
DUPLICATE_NAME = "machine config with this Name already exists."
_ORDERING_KEYS = {
    "name": lambda m: m.name,
    "machine_type": lambda m: m.machine_type_slug,
    "driver": lambda m: m.driver_slug,
    "active": lambda m: m.active,
}
_DEFAULT_ORDERING = ("-active", "machine_type")
_BOOL_QUERY = {"true": True, "1": True, "false": False, "0": False}


def machine_json(machine: Machine) -> dict[str, Any]:
    """InvenTree's MachineConfigSerializer representation, with v401's `properties`."""
    machine_type = machine.machine_type
    registered = machine_type is not None
    properties, read_at = machine.state_json()
    status = -1
    if machine_type is not None and machine.status is not None:
        status = int(machine.status)
    return {
        "pk": machine.pk,
        "name": machine.name,
        "machine_type": machine.machine_type_slug,
        "driver": machine.driver_slug,
        "initialized": machine.initialized,
        "active": machine.active,
        "status": status,
        "status_model": machine_type.MACHINE_STATUS.__name__ if machine_type is not None else None,
        "status_text": machine.status_text if registered else "",
        "machine_errors": machine.error_messages if registered else [],
        "is_driver_available": registered and machine.driver is not None,
        "restart_required": machine.restart_required,
        "properties": properties,
        "status_read_at": read_at,
    }


class MachineList(ApiView):
    """API endpoint for list of Machine objects."""

    name = "Machine List"
    description = (
        "API endpoint for list of Machine objects.\n\n"
        "- GET: Return a list of all Machine objects\n"
        "- POST: create a MachineConfig"
    )
    permission = "admin_role"

    async def get(self) -> web.StreamResponse:
        """Filter, search, order, then paginate when `limit` is given."""
        registry = self.request.app[REGISTRY]
        query = self.request.query
        machines = list(registry.machines.values())
        active = _BOOL_QUERY.get(query.get("active", "").lower())
        if active is not None:
            machines = [m for m in machines if m.active == active]
        if "driver" in query:
            machines = [m for m in machines if m.driver_slug == query["driver"]]
        if "machine_type" in query:
            machines = [m for m in machines if m.machine_type_slug == query["machine_type"]]
        terms = search_terms(query.get("search", ""))
        if terms:
            regex = _flag(query.get("search_regex"))
            whole = _flag(query.get("search_whole"))
            machines = [
                m for m in machines if matches_search(m.name, terms, regex=regex, whole=whole)
            ]
        machines = order_by(machines, query.get("ordering"), _ORDERING_KEYS, _DEFAULT_ORDERING)
        paginated, page = paginate(self.request, machines)
        if paginated:
            page["results"] = [machine_json(m) for m in page["results"]]
            return drf_json(page)
        return drf_json([machine_json(m) for m in page])

    async def post(self) -> web.StreamResponse:
        """Create a machine: any type and driver string is accepted; problems show as errors."""
        body = await self.read_data()
        data = clean_input(expect_object(body.value))
        errors = FieldErrors()
        name = char_field(data, "name", errors, required=True, max_length=NAME_MAX_LENGTH)
        machine_type = char_field(data, "machine_type", errors, required=True, max_length=255)
        driver = char_field(data, "driver", errors, required=True, max_length=255)
        active = boolean_field(data, "active", errors, form=body.form)
        registry = self.request.app[REGISTRY]
        if name is not MISSING and registry.name_taken(name):
            errors.add("name", DUPLICATE_NAME)
        errors.raise_if_any()
        try:
            machine = await registry.create(
                name, machine_type, driver, True if active is MISSING else active
            )
        except DuplicateName as err:
            raise ValidationFailed({"name": [DUPLICATE_NAME]}) from err
        return drf_json(machine_json(machine), status=201)

    def metadata(self) -> dict[str, Any]:
        """DRF metadata with the POST and GET field descriptions the user may use."""
        meta = super().metadata()
        actions = machine_actions(self, ("POST", "GET"), create=True)
        if actions:
            meta["actions"] = actions
        meta["model"] = "machineconfig"
        return meta


class MachineDetail(ApiView):
    """API detail endpoint for MachineConfig object."""

    name = "Machine Detail"
    description = (
        "API detail endpoint for MachineConfig object.\n\n"
        "- GET: return a single MachineConfig\n"
        "- PUT: update a MachineConfig\n"
        "- PATCH: partial update a MachineConfig\n"
        "- DELETE: delete a MachineConfig"
    )
    permission = "admin_role"

    async def get(self) -> web.StreamResponse:
        """One machine."""
        return drf_json(machine_json(self._machine()))

    async def put(self) -> web.StreamResponse:
        """Full update: `name` is required."""
        return await self._update(partial=False)

    async def patch(self) -> web.StreamResponse:
        """Partial update of `name` and/or `active`."""
        return await self._update(partial=True)

    async def delete(self) -> web.StreamResponse:
        """Remove the machine and its settings: 204, empty body."""
        machine = self._machine()
        await self.request.app[REGISTRY].delete(machine)
        return web.Response(status=204)

    def metadata(self) -> dict[str, Any]:
        """DRF metadata: PUT (if the machine exists) and GET fields, then DELETE."""
        meta = super().metadata()
        methods = ("PUT", "GET") if self._find() is not None else ("GET",)
        actions = machine_actions(self, methods, create=False)
        if self.has_permission("DELETE"):
            actions["DELETE"] = {}
        if actions:
            meta["actions"] = actions
        meta["model"] = "machineconfig"
        return meta

    async def _update(self, *, partial: bool) -> web.StreamResponse:
        machine = self._machine()
        body = await self.read_data()
        data = clean_input(expect_object(body.value))
        errors = FieldErrors()
        name = char_field(data, "name", errors, required=not partial, max_length=NAME_MAX_LENGTH)
        active = boolean_field(data, "active", errors, form=body.form and not partial)
        registry: Registry = self.request.app[REGISTRY]
        if name is not MISSING and registry.name_taken(name, exclude=machine.pk):
            errors.add("name", DUPLICATE_NAME)
        errors.raise_if_any()
        try:
            await registry.update(
                machine,
                name=None if name is MISSING else name,
                active=None if active is MISSING else active,
            )
        except DuplicateName as err:
            raise ValidationFailed({"name": [DUPLICATE_NAME]}) from err
        return drf_json(machine_json(machine))

    def _find(self) -> Machine | None:
        return self.request.app[REGISTRY].get(self.request.match_info["pk"])

    def _machine(self) -> Machine:
        machine = self._find()
        if machine is None:
            raise NotFound
        return machine


class MachineRestart(ApiView):
    """Restart machine by pk."""

    name = "Machine Restart"
    description = "Restart machine by pk."

    async def post(self) -> web.StreamResponse:
        """Reset and restart; always `{"ok": true}` for a registered machine."""
        pk = self.request.match_info["pk"]
        registry = self.request.app[REGISTRY]
        machine = registry.get(pk)
        if machine is None or not machine.registered:
            raise NotFound(f"Machine '{pk}' not found")
        await registry.restart(machine)
        return drf_json({"ok": True})


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")
