"""`GET /api/schema/`: the agent's OpenAPI 3.0.3 document, InvenTree 303's export made truthful.

Operation ids, paths and field names are InvenTree's. Where the agent answers otherwise (bare
lists without `limit`, `properties`, unsaved settings with `pk: null`, nulls InvenTree also
sends), the schemas say what the agent answers, and every operation lists its error answers.
To document a new endpoint, add its operations to a `_..._paths()` group (or a new group listed
in `_paths()`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from agent import __version__
from agent.api.errors import NotFound
from agent.api.listing import SEARCH_BUDGET_S, SEARCH_MAX_LENGTH
from agent.api.schema_components import (
    ANONYMOUS_OK,
    SECURITY_SCHEMES,
    UUID_PATTERN,
    component_responses,
    component_schemas,
    json_response,
    links,
    operation,
    path_parameter,
    query_parameter,
    ref,
    status_codes_text,
)
from agent.api.schema_jobs import DriverOptions, job_paths, job_schemas
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from drivers.base import BaseDriver, LabelPrinterDriver

OPENAPI_VERSION = "3.0.3"
API_VERSION = "303"
Paths = dict[str, dict[str, Any]]

READ = (401,)
ROLE_READ = (401, 403)
OBJECT_READ = (401, 404)
ROLE_OBJECT_READ = (401, 403, 404)
WRITE = (400, 401, 403, 408, 413, 415)
OBJECT_WRITE = (400, 401, 403, 404, 408, 413, 415)


@functools.cache
def openapi_document(driver_options: DriverOptions = ()) -> dict[str, Any]:
    """The whole document, built on first use; shared, so callers must not modify it.

    `driver_options` (see `driver_options_of`) lists the drivers' own print options.
    """
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "InvenTree API",
            "version": API_VERSION,
            "description": (
                "InvenTree's machine API (v303) as served by inventree-edge "
                f"{__version__}. Any method not listed for a path answers 405 "
                "(`MethodNotAllowed`) after authentication and permission checks; HEAD is GET "
                "without a body."
            ),
            "license": {
                "name": "MIT",
                "url": "https://github.com/inventree/InvenTree/blob/master/LICENSE",
            },
        },
        "paths": _paths(driver_options),
        "components": {
            "schemas": {**component_schemas(), **job_schemas()},
            "responses": component_responses(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


class SchemaView(ApiView):
    """The OpenAPI document: JSON, or YAML with `?format=yaml` when PyYAML is installed."""

    name = "Schema"
    description = "OpenAPI 3.0.3 document of this API."
    allow_anonymous = True

    async def get(self) -> web.StreamResponse:
        """The cached document in the asked format; an unknown format is a 404, as in DRF."""
        wanted = self.request.query.get("format", "json")
        drivers = self.request.app[REGISTRY].drivers
        driver_options = driver_options_of({slug: type(d) for slug, d in drivers.items()})
        if wanted == "json":
            return web.Response(body=_json_bytes(driver_options), content_type="application/json")
        if wanted == "yaml" and _yaml_available():
            # The first YAML rendering takes tens of milliseconds: keep it off the loop.
            body = await asyncio.to_thread(_yaml_bytes, driver_options)
            return web.Response(body=body, content_type="application/yaml")
        raise NotFound


def driver_options_of(drivers: Mapping[str, type[BaseDriver]]) -> DriverOptions:
    """Each label-printer driver class's own print options, by slug, in slug order."""
    return tuple(
        (slug, tuple(driver.PRINT_OPTIONS))
        for slug, driver in sorted(drivers.items())
        if issubclass(driver, LabelPrinterDriver)
    )


def _paths(driver_options: DriverOptions) -> Paths:
    paths: Paths = {}
    groups = (
        _root_paths(),
        _user_paths(),
        _machine_paths(),
        _registry_paths(),
        job_paths(driver_options),
    )
    for group in groups:
        paths.update(group)
    return paths


def _id_parameter() -> dict[str, Any]:
    return path_parameter(
        "id",
        {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
        "Lower-case UUID; any other form is an unknown path (404 with `url`).",
    )


def _root_paths() -> Paths:
    status_model = path_parameter("statusmodel", {"type": "string", "pattern": r"^\w+$"})
    document = {
        "description": "This document.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
    return {
        "/api/": {
            "get": operation(
                "root_retrieve",
                "Serve current server information.",
                responses=json_response(ref("InfoApi"), "InvenTree server information"),
                errors=READ,
                security=ANONYMOUS_OK,
            )
        },
        "/api/generic/status/": {
            "get": operation(
                "generic_status_retrieve",
                "Perform a GET request to learn information about status codes.",
                tag="generic",
                responses=json_response(ref("GenericStatusMap")),
                errors=READ,
            )
        },
        "/api/generic/status/{statusmodel}/": {
            "get": operation(
                "generic_status_retrieve_2",
                "Retrieve information about a specific status code; an unknown class is a 400.",
                tag="generic",
                parameters=[status_model],
                responses=json_response(ref("GenericStateClass")),
                errors=(400, 401, 404),
            )
        },
        "/api/schema/": {
            "get": operation(
                "schema_retrieve",
                "This OpenAPI document. `?format=yaml` answers YAML when the agent has PyYAML, "
                "404 otherwise.",
                tag="schema",
                parameters=[
                    query_parameter("format", {"type": "string", "enum": ["json", "yaml"]})
                ],
                responses={"200": document},
                errors=(401, 404),
                security=ANONYMOUS_OK,
            )
        },
    }


def _user_paths() -> Paths:
    return {
        "/api/user/token/": {
            "get": operation(
                "user_token_retrieve",
                "Return an API token if the user is authenticated.\n\n"
                "- The user's live token of the same name is returned again, else a new one is "
                "made (only a hash of each key is stored)\n"
                "- Also logs the caller in with a session (cookies `sessionid`, `csrftoken`)",
                tag="user",
                parameters=[query_parameter("name", {"type": "string"}, "Label of the token.")],
                responses=json_response(ref("AuthToken")),
                errors=READ,
            )
        },
        "/api/user/me/": {
            "get": operation(
                "user_me_retrieve",
                "Detail endpoint for the current user.",
                tag="user",
                responses=json_response(ref("MeUser")),
                errors=READ,
            )
        },
        "/api/user/roles/": {
            "get": operation(
                "user_roles_retrieve",
                "API endpoint which lists the available role permissions for the current user.",
                tag="user",
                responses=json_response(ref("Role")),
                errors=READ,
            )
        },
        "/api/auth/login/": {
            "post": operation(
                "auth_login_create",
                "Log in with a username and password; answers an API token and sets a session.",
                tag="auth",
                body="Login",
                responses=json_response(ref("Token")),
                errors=(400, 408, 413, 415, 429),
                security=[{}],
            )
        },
        "/api/auth/logout/": {
            "post": operation(
                "auth_logout_create",
                "Log out: revoke the token used for this request and end the session.",
                tag="auth",
                responses=json_response(ref("RestAuthDetail")),
                errors=(401, 403),
            )
        },
    }


def _machine_paths() -> Paths:
    crud = (
        "API detail endpoint for MachineConfig object.\n\n"
        "- GET: return a single MachineConfig\n- PUT: update a MachineConfig\n"
        "- PATCH: partial update a MachineConfig\n- DELETE: delete a MachineConfig"
    )
    listing = (
        "API endpoint for list of Machine objects.\n\n"
        "- GET: Return a list of all Machine objects\n- POST: create a MachineConfig\n\n"
        "Without `limit` (or with one that is not a positive integer) the answer is a bare "
        "array; with `limit` it is one page. Default order: active first, then machine type. "
        "A query parameter of the wrong type or given twice is a 400 on that parameter; so is "
        f"a regular-expression search longer than {SEARCH_MAX_LENGTH} characters or one that "
        f"takes more than {SEARCH_BUDGET_S:g} s to evaluate."
    )
    machine = json_response(ref("MachineConfig"))
    by_pk = links(
        {"id": "$response.body#/pk"},
        *("machine_retrieve", "machine_update", "machine_partial_update", "machine_destroy"),
        *("machine_restart_create", "machine_settings_list", "machine_print_create"),
    )
    first_setting = links(
        {
            "id": "$request.path.id",
            "config_type": "$response.body#/0/config_type",
            "key": "$response.body#/0/key",
        },
        *("machine_settings_retrieve", "machine_settings_update"),
        "machine_settings_partial_update",
    )
    page = {
        "oneOf": [
            {"type": "array", "items": ref("MachineConfig")},
            ref("PaginatedMachineConfigList"),
        ]
    }
    return {
        "/api/machine/": {
            "get": operation(
                "machine_list",
                listing,
                tag="machine",
                parameters=_list_parameters(),
                responses=json_response(page),
                errors=(400, *ROLE_READ),
            ),
            "post": operation(
                "machine_create",
                listing,
                tag="machine",
                body="MachineConfigCreate",
                responses=json_response(ref("MachineConfigCreate"), status=201, links=by_pk),
                errors=WRITE,
            ),
        },
        "/api/machine/{id}/": {
            "get": _on_machine("machine_retrieve", crud, machine, ROLE_OBJECT_READ),
            "put": _on_machine("machine_update", crud, machine, OBJECT_WRITE, "MachineConfig"),
            "patch": _on_machine(
                "machine_partial_update", crud, machine, OBJECT_WRITE, "PatchedMachineConfig"
            ),
            "delete": _on_machine(
                "machine_destroy",
                crud,
                {"204": {"description": "No response body"}},
                ROLE_OBJECT_READ,
            ),
        },
        "/api/machine/{id}/restart/": {
            "post": _on_machine(
                "machine_restart_create",
                "Restart machine by pk. Always `{ok: true}` for a registered machine.",
                json_response(ref("MachineRestart")),
                ROLE_OBJECT_READ,
            )
        },
        "/api/machine/{id}/settings/": {
            "get": _on_machine(
                "machine_settings_list",
                "Return all settings for a machine config: machine-type (`M`) settings first, "
                "then driver (`D`) settings, each in definition order.",
                json_response(
                    {"type": "array", "items": ref("MachineSetting")}, links=first_setting
                ),
                OBJECT_READ,
            )
        },
        "/api/machine/{id}/settings/{config_type}/{key}/": _setting_detail(),
    }


def _setting_detail() -> dict[str, Any]:
    description = (
        "Detail endpoint for a machine-specific setting.\n\n"
        "- GET: Get machine setting detail\n- PUT: Update machine setting\n"
        "- PATCH: Update machine setting\n\n"
        "(Note that these cannot be created or deleted via API; reading an unsaved setting "
        "answers its default with `pk: null`)"
    )
    params = [
        path_parameter("config_type", {"type": "string", "enum": ["M", "D"]}),
        _id_parameter(),
        path_parameter("key", {"type": "string", "pattern": r"^\w+$"}, "Case-insensitive."),
    ]
    setting = json_response(ref("MachineSetting"))
    return {
        "get": operation(
            "machine_settings_retrieve",
            description,
            tag="machine",
            parameters=params,
            responses=setting,
            errors=OBJECT_READ,
        ),
        "put": operation(
            "machine_settings_update",
            description,
            tag="machine",
            parameters=params,
            body="MachineSetting",
            responses=setting,
            errors=OBJECT_WRITE,
        ),
        "patch": operation(
            "machine_settings_partial_update",
            description,
            tag="machine",
            parameters=params,
            body="PatchedMachineSetting",
            body_required=False,
            responses=setting,
            errors=OBJECT_WRITE,
        ),
    }


def _registry_paths() -> Paths:
    machine_type = query_parameter(
        "machine_type", {"type": "string"}, "Only the drivers of this machine type (exact slug)."
    )
    return {
        "/api/machine/drivers/": {
            "get": operation(
                "machine_drivers_list",
                "List all machine drivers, sorted by slug.",
                tag="machine",
                parameters=[machine_type],
                responses=json_response({"type": "array", "items": ref("MachineDriver")}),
                errors=READ,
            )
        },
        "/api/machine/status/": {
            "get": operation(
                "machine_status_retrieve",
                "Provide status data for the machine registry.",
                tag="machine",
                responses=json_response(ref("MachineRegistryStatus")),
                errors=READ,
            )
        },
        "/api/machine/types/": {
            "get": operation(
                "machine_types_list",
                f"List all machine types, sorted by slug. {status_codes_text()}",
                tag="machine",
                responses=json_response({"type": "array", "items": ref("MachineType")}),
                errors=READ,
            )
        },
    }


def _on_machine(
    operation_id: str,
    description: str,
    responses: dict[str, Any],
    errors: Iterable[int],
    body: str | None = None,
) -> dict[str, Any]:
    return operation(
        operation_id,
        description,
        tag="machine",
        parameters=[_id_parameter()],
        body=body,
        body_required=body is not None and not body.startswith("Patched"),
        responses=responses,
        errors=errors,
    )


def _list_parameters() -> list[dict[str, Any]]:
    boolean = {"type": "boolean"}
    return [
        query_parameter("active", boolean),
        query_parameter("driver", {"type": "string"}),
        query_parameter("limit", {"type": "integer"}, "Number of results to return per page."),
        query_parameter("machine_type", {"type": "string"}),
        query_parameter(
            "offset", {"type": "integer"}, "The initial index from which to return the results."
        ),
        query_parameter(
            "ordering",
            {"type": "string"},
            "Which field to use when ordering the results: `name`, `machine_type`, `driver`, "
            "`active`; comma-separated, `-` for descending.",
        ),
        query_parameter("search", {"type": "string"}, "A search term (in `name`)."),
        query_parameter("search_regex", boolean, "Search terms are regular expressions."),
        query_parameter("search_whole", boolean, "Search terms match whole words."),
    ]


@functools.cache
def _json_bytes(driver_options: DriverOptions) -> bytes:
    return json.dumps(openapi_document(driver_options), ensure_ascii=False).encode()


@functools.cache
def _yaml_bytes(driver_options: DriverOptions) -> bytes:
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(
        openapi_document(driver_options), Dumper=NoAliases, sort_keys=False, allow_unicode=True
    )
    return text.encode()


def _yaml_available() -> bool:
    # PyYAML is a test dependency, not a runtime one.
    return importlib.util.find_spec("yaml") is not None
