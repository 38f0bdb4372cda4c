"""`/api/machine/`: list, create, detail, update, delete and restart, as InvenTree 303 answers them."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import pydantic_core
from aiohttp import web

from agent.api.declare import (
    UUID,
    UUID_PATTERN,
    Answer,
    Endpoint,
    FormFields,
    ListOf,
    Operation,
    Patched,
    links,
    path_parameter,
    query_parameter,
)
from agent.api.errors import NotFound, ValidationFailed, drf_json
from agent.api.fields import (
    MISSING,
    FieldErrors,
    boolean_field,
    char_field,
    clean_input,
    expect_object,
)
from agent.api.listing import (
    LIMIT_PARAMETER,
    OFFSET_PARAMETER,
    SEARCH_BUDGET_S,
    SEARCH_MAX_LENGTH,
    boolean_param,
    limit_offset,
    order_by,
    page_body,
    search,
    single_value,
)
from agent.api.machine_models import (
    NAME_MAX_LENGTH,
    SLUG_MAX_LENGTH,
    MachineConfig,
    MachineConfigCreate,
    MachineRestart,
)
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from agent.machine import Machine
from agent.registry import DuplicateName, Registry

DUPLICATE_NAME = "machine config with this Name already exists."
_ORDERING_KEYS = {
    "name": lambda m: m.name,
    "machine_type": lambda m: m.machine_type_slug,
    "driver": lambda m: m.driver_slug,
    "active": lambda m: m.active,
}
_DEFAULT_ORDERING = ("-active", "machine_type")
# Sorted listings kept per ordering until the registry's listing version moves.
_SORTED_CACHE_SIZE = 8
_ENCODED_RESULTS = b'"results":['


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


class _MachineBytes:
    """Each machine's JSON bytes, kept until a field shown by the API changes.

    The key is every value the representation is made of, so any change (by a poll, a hook, the
    registry) makes a new rendering; nothing has to remember to invalidate it.
    """

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Machine, tuple[tuple[object, ...], bytes]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, machine: Machine) -> bytes:
        key = _representation_key(machine)
        cached = self._cache.get(machine)
        if cached is not None and cached[0] == key:
            return cached[1]
        encoded = pydantic_core.to_json(machine_json(machine))
        self._cache[machine] = (key, encoded)
        return encoded


def _representation_key(machine: Machine) -> tuple[object, ...]:
    errors = machine.errors
    return (
        machine.name,
        machine.machine_type_slug,
        machine.driver_slug,
        machine.machine_type,
        machine.driver,
        machine.initialized,
        machine.active,
        machine.status,
        machine.status_text,
        tuple(error.message for error in errors) if errors else (),
        machine.restart_required,
        machine.properties,
        machine.status_read_at,
    )


_MACHINE_BYTES = _MachineBytes()
# Per registry: sorted listings by (listing version, ordering), the most recent few.
_SORTED: weakref.WeakKeyDictionary[
    Registry, OrderedDict[tuple[int, tuple[str, ...]], list[Machine]]
] = weakref.WeakKeyDictionary()


def _sorted_machines(registry: Registry, ordering: str | None) -> list[Machine]:
    """The registry's machines in `ordering`, sorted once per change of the listing."""
    fields = tuple(f.strip() for f in (ordering or "").split(",") if f.strip())
    valid = tuple(f for f in fields if f.lstrip("-") in _ORDERING_KEYS) or _DEFAULT_ORDERING
    cache = _SORTED.setdefault(registry, OrderedDict())
    key = (registry.listing_version, valid)
    cached = cache.get(key)
    if cached is not None:
        cache.move_to_end(key)
        return cached
    result = order_by(list(registry.machines.values()), ",".join(valid), _ORDERING_KEYS, ())
    cache[key] = result
    while len(cache) > _SORTED_CACHE_SIZE:
        cache.popitem(last=False)
    return result


def _json_list(parts: list[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


MACHINE_ID = path_parameter(
    "id",
    {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
    "Lower-case UUID; any other form is an unknown path (404 with `url`).",
)
# What a machine's `pk` feeds.
_BY_PK = links(
    {"id": "$response.body#/pk"},
    *("machine_retrieve", "machine_update", "machine_partial_update", "machine_destroy"),
    *("machine_restart_create", "machine_settings_list", "machine_print_create"),
)
_LIST_TEXT = (
    "API endpoint for list of Machine objects.\n\n"
    "- GET: Return a list of all Machine objects\n- POST: create a MachineConfig\n\n"
    "Without `limit` (or with one that is not a positive integer) the answer is a bare "
    "array; with `limit` it is one page. Default order: active first, then machine type. "
    "A query parameter of the wrong type or given twice is a 400 on that parameter; so is "
    f"a regular-expression search longer than {SEARCH_MAX_LENGTH} characters or one that "
    f"takes more than {SEARCH_BUDGET_S:g} s to evaluate."
)
_BOOLEAN = {"type": "boolean"}
_LIST_PARAMETERS = (
    query_parameter("active", _BOOLEAN),
    query_parameter("driver", {"type": "string"}),
    LIMIT_PARAMETER,
    query_parameter("machine_type", {"type": "string"}),
    OFFSET_PARAMETER,
    query_parameter(
        "ordering",
        {"type": "string"},
        "Which field to use when ordering the results: "
        + ", ".join(f"`{key}`" for key in _ORDERING_KEYS)
        + "; comma-separated, `-` for descending.",
    ),
    query_parameter("search", {"type": "string"}, "A search term (in `name`)."),
    query_parameter("search_regex", _BOOLEAN, "Search terms are regular expressions."),
    query_parameter("search_whole", _BOOLEAN, "Search terms match whole words."),
)
_DETAIL_TEXT = (
    "API detail endpoint for MachineConfig object.\n\n"
    "- GET: return a single MachineConfig\n- PUT: update a MachineConfig\n"
    "- PATCH: partial update a MachineConfig\n- DELETE: delete a MachineConfig"
)


class MachineList(ApiView):
    """API endpoint for list of Machine objects."""

    permission = "admin_role"
    endpoint = Endpoint(
        "/api/machine/",
        name="Machine List",
        description=(
            "API endpoint for list of Machine objects.\n\n"
            "- GET: Return a list of all Machine objects\n"
            "- POST: create a MachineConfig"
        ),
        fields=FormFields(model="machineconfig"),
        operations=(
            Operation(
                "GET",
                "machine_list",
                _LIST_TEXT,
                answers=(Answer(200, ListOf(MachineConfig, paginated=True)),),
                parameters=_LIST_PARAMETERS,
                errors=(400,),
            ),
            Operation(
                "POST",
                "machine_create",
                _LIST_TEXT,
                request=MachineConfigCreate,
                answers=(Answer(201, MachineConfigCreate, links=_BY_PK),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Filter, search, order, then paginate when `limit` is given.

        Only the page is serialised, from each machine's cached JSON bytes.
        """
        registry: Registry = self.request.app[REGISTRY]
        query = self.request.query
        window = limit_offset(self.request)
        active = boolean_param(query, "active")
        driver = single_value(query, "driver")
        machine_type = single_value(query, "machine_type")
        machines = _sorted_machines(registry, single_value(query, "ordering"))
        if active is not None:
            machines = [m for m in machines if m.active == active]
        if driver is not None:
            machines = [m for m in machines if m.driver_slug == driver]
        if machine_type is not None:
            machines = [m for m in machines if m.machine_type_slug == machine_type]
        if "search" in query:
            machines = await search(machines, _machine_name, query)
        else:
            # Still refuse malformed search flags when there is nothing to search for.
            boolean_param(query, "search_regex")
            boolean_param(query, "search_whole")
        if window is None:
            body = _json_list([_MACHINE_BYTES.get(m) for m in machines])
        else:
            limit, offset = window
            head = pydantic_core.to_json(page_body(self.request, len(machines), [], limit, offset))
            # `results` is last: splice the cached machines into its empty list.
            cut = head.rindex(_ENCODED_RESULTS) + len(_ENCODED_RESULTS)
            parts = (_MACHINE_BYTES.get(m) for m in machines[offset : offset + limit])
            body = head[:cut] + b",".join(parts) + head[cut:]
        return web.Response(body=body, content_type="application/json")

    async def post(self) -> web.StreamResponse:
        """Create a machine: any type and driver string is accepted; problems show as errors."""
        body = await self.read_data()
        data = clean_input(expect_object(body.value))
        errors = FieldErrors()
        name = char_field(data, "name", errors, required=True, max_length=NAME_MAX_LENGTH)
        machine_type = char_field(
            data, "machine_type", errors, required=True, max_length=SLUG_MAX_LENGTH
        )
        driver = char_field(data, "driver", errors, required=True, max_length=SLUG_MAX_LENGTH)
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


class MachineDetail(ApiView):
    """API detail endpoint for MachineConfig object."""

    permission = "admin_role"
    endpoint = Endpoint(
        "/api/machine/{id}/",
        route=f"/api/machine/{{pk:{UUID}}}/",
        name="Machine Detail",
        description=(
            "API detail endpoint for MachineConfig object.\n\n"
            "- GET: return a single MachineConfig\n"
            "- PUT: update a MachineConfig\n"
            "- PATCH: partial update a MachineConfig\n"
            "- DELETE: delete a MachineConfig"
        ),
        parameters=(MACHINE_ID,),
        fields=FormFields(model="machineconfig"),
        operations=(
            Operation(
                "GET", "machine_retrieve", _DETAIL_TEXT, answers=(Answer(200, MachineConfig),)
            ),
            Operation(
                "PUT",
                "machine_update",
                _DETAIL_TEXT,
                request=MachineConfig,
                answers=(Answer(200, MachineConfig),),
            ),
            Operation(
                "PATCH",
                "machine_partial_update",
                _DETAIL_TEXT,
                request=Patched(MachineConfig),
                answers=(Answer(200, MachineConfig),),
            ),
            Operation(
                "DELETE",
                "machine_destroy",
                _DETAIL_TEXT,
                answers=(Answer(204, None, "No response body"),),
            ),
        ),
    )

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

    def object_exists(self) -> bool:
        """OPTIONS describes PUT only for a machine that exists."""
        return self._find() is not None

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


class MachineRestartView(ApiView):
    """Restart machine by pk."""

    endpoint = Endpoint(
        "/api/machine/{id}/restart/",
        route=f"/api/machine/{{pk:{UUID}}}/restart/",
        name="Machine Restart",
        description="Restart machine by pk.",
        parameters=(MACHINE_ID,),
        operations=(
            Operation(
                "POST",
                "machine_restart_create",
                "Restart machine by pk. Always `{ok: true}` for a registered machine.",
                answers=(Answer(200, MachineRestart),),
            ),
        ),
    )

    async def post(self) -> web.StreamResponse:
        """Reset and restart; always `{"ok": true}` for a registered machine."""
        pk = self.request.match_info["pk"]
        registry = self.request.app[REGISTRY]
        machine = registry.get(pk)
        if machine is None or not machine.registered:
            raise NotFound(f"Machine '{pk}' not found")
        await registry.restart(machine)
        return drf_json({"ok": True})


def _machine_name(machine: Machine) -> str:
    return machine.name
