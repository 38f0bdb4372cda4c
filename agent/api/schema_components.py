"""Building blocks of the OpenAPI document: component schemas and error answers, operation helpers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.api.views import PARSES
from drivers.base import LabelPrinterStatus

Schema = dict[str, Any]

SECURED: list[dict[str, list[str]]] = [{"tokenAuth": []}, {"basicAuth": []}, {"cookieAuth": []}]
ANONYMOUS_OK: list[dict[str, list[str]]] = [*SECURED, {}]
# Error answers: status -> (component name, description, body schema names; several: anyOf).
ERROR_RESPONSES: dict[int, tuple[str, str, tuple[str, ...]]] = {
    400: (
        "BadRequest",
        "Invalid input: field name (or `non_field_errors`) to a list of messages; a body that "
        "cannot be parsed gives `{detail}`.",
        ("ValidationErrors", "ErrorDetail"),
    ),
    401: (
        "Unauthorized",
        "No credentials on a protected endpoint, or invalid credentials on any endpoint.",
        ("ErrorDetail",),
    ),
    403: (
        "Forbidden",
        "Authenticated, but without the role or permission needed; also a CSRF failure of a "
        "session-authenticated unsafe request.",
        ("ErrorDetail",),
    ),
    404: ("NotFound", "Unknown object, or unknown `/api/` path (with `url`).", ("NotFound",)),
    405: (
        "MethodNotAllowed",
        "A method not listed for this path (checked after authentication and permissions).",
        ("ErrorDetail",),
    ),
    409: (
        "Conflict",
        "The object's state does not allow this, e.g. cancelling a job that has started printing.",
        ("ErrorDetail",),
    ),
    408: ("RequestTimeout", "The request body did not arrive in time.", ("ErrorDetail",)),
    413: ("PayloadTooLarge", "The request body is over the configured limit.", ("ErrorDetail",)),
    415: ("UnsupportedMediaType", "The body's content type is not accepted.", ("ErrorDetail",)),
    429: (
        "TooManyRequests",
        "Too many failed password attempts from this address or for this user: no password is "
        "checked until `Retry-After` seconds have passed.",
        ("ErrorDetail",),
    ),
}
SECURITY_SCHEMES: dict[str, Schema] = {
    "basicAuth": {"type": "http", "scheme": "basic"},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    "tokenAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": 'Token-based authentication with required prefix "Token"',
    },
}
# InvenTree 303's locale choices, as its export lists them.
# fmt: off
LOCALES = (
    "ar", "bg", "cs", "da", "de", "el", "en", "es", "es-mx", "et", "fa", "fi", "fr", "he", "hi",
    "hu", "it", "ja", "ko", "lt", "lv", "nl", "no", "pl", "pt", "pt-br", "ro", "ru", "sk", "sl",
    "sr", "sv", "th", "tr", "uk", "vi", "zh-hans", "zh-hant",
)
# fmt: on


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def component_schemas() -> dict[str, Schema]:
    """Every component schema, keyed by name (InvenTree's names where InvenTree has one)."""
    return {
        "ConfigTypeEnum": {
            "enum": ["M", "D"],
            "type": "string",
            "description": "* `M` - Machine\n* `D` - Driver",
        },
        "DefaultLocaleEnum": {
            "enum": list(LOCALES),
            "type": "string",
            "description": "\n".join(f"* `{code}` - {code}" for code in LOCALES),
        },
        "GenericStateClass": _generic_state_class(),
        "GenericStateValue": _generic_state_value(),
        "GenericStatusMap": {
            "type": "object",
            "description": "Every status class the agent knows, keyed by class name.",
            "additionalProperties": ref("GenericStateClass"),
        },
        "InfoApi": _info_api(),
        "MachineConfig": _machine_config(create=False),
        "MachineConfigCreate": _machine_config(create=True),
        "MachineDriver": _provided_class(driver=True),
        "MachineProperty": _machine_property(),
        "MachineRegistryError": _object(
            {"message": {"type": "string"}}, "Serializer for a machine registry error."
        ),
        "MachineRegistryStatus": _object(
            {"registry_errors": {"type": "array", "items": ref("MachineRegistryError")}},
            "Serializer for machine registry status.",
        ),
        "MachineRestart": _object(
            {"ok": {"type": "boolean"}}, "Serializer for the machine restart response."
        ),
        "MachineSetting": _machine_setting(patched=False),
        "MachineType": _provided_class(driver=False),
        "PaginatedMachineConfigList": paginated("MachineConfig"),
        "PatchedMachineConfig": _machine_config(create=False, patched=True),
        "PatchedMachineSetting": _machine_setting(patched=True),
        **_user_schemas(),
        **_error_schemas(),
    }


def status_codes_text() -> str:
    """The label printer status codes, for descriptions."""
    codes = ", ".join(f"{member.value} {member.name}" for member in LabelPrinterStatus)
    return (
        f"`LabelPrinterStatus` codes: {codes}. 200 WARNING and 500 ERROR are InvenTree v401 "
        "additions the agent uses; ranges: 1xx fine, 2xx warning, 3xx machine problem, "
        "4xx driver problem (e.g. cannot connect), 5xx unknown."
    )


def component_responses() -> dict[str, Schema]:
    """`components.responses`: the error answers, by name."""
    return {
        name: _error_response(status, description, names)
        for status, (name, description, names) in ERROR_RESPONSES.items()
    }


def operation(
    operation_id: str,
    description: str,
    *,
    responses: dict[str, Any],
    errors: Iterable[int],
    tag: str | None = None,
    parameters: Iterable[dict[str, Any]] = (),
    body: str | None = None,
    body_required: bool = True,
    body_content: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """One operation; `errors`: codes of `ERROR_RESPONSES`; `body`: a component (or `body_content`)."""
    result: dict[str, Any] = {"operationId": operation_id, "description": description}
    params = list(parameters)
    if params:
        result["parameters"] = params
    if tag is not None:
        result["tags"] = [tag]
    if body is not None:
        body_content = {media_type: {"schema": ref(body)} for media_type in PARSES}
    if body_content is not None:
        result["requestBody"] = {"content": body_content, "required": body_required}
    result["security"] = SECURED if security is None else security
    result["responses"] = {**responses}
    codes = set(errors)
    if 401 in codes:  # whoever takes credentials takes Basic ones, which are rate limited
        codes.add(429)
    for status in sorted(codes):
        name = ERROR_RESPONSES[status][0]
        result["responses"][str(status)] = {"$ref": f"#/components/responses/{name}"}
    return result


def json_response(
    schema: Schema, description: str = "", status: int = 200, links: Schema | None = None
) -> dict[str, Any]:
    """A success answer with a JSON body, and `links` to operations its values feed."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if links:
        answer["links"] = links
    return {str(status): answer}


def links(parameters: dict[str, str], *operation_ids: str) -> Schema:
    """OpenAPI links, named by operation id, that fill `parameters` from runtime expressions."""
    return {op: {"operationId": op, "parameters": parameters} for op in operation_ids}


def path_parameter(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    """A required path parameter."""
    param: dict[str, Any] = {"in": "path", "name": name, "schema": schema, "required": True}
    if description:
        param["description"] = description
    return param


def query_parameter(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    """An optional query parameter."""
    param: dict[str, Any] = {"in": "query", "name": name, "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def paginated(item: str) -> Schema:
    """A `limit`/`offset` page of `item` component objects."""
    return _object(
        {
            "count": {"type": "integer", "example": 123},
            "next": _string(nullable=True, format="uri"),
            "previous": _string(nullable=True, format="uri"),
            "results": {"type": "array", "items": ref(item)},
        },
        "One page (`limit`/`offset`); `next` and `previous` are absolute URLs.",
    )


def _error_response(status: int, description: str, names: tuple[str, ...]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _one_of_names(names)}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "Names the token scheme: `Token`.",
                "required": True,
                "schema": {"type": "string"},
            }
        }
    if status == 405:
        response["headers"] = {
            "Allow": {
                "description": "The methods this path answers, e.g. `GET, HEAD, OPTIONS`.",
                "required": True,
                "schema": {"type": "string"},
            }
        }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until the next password attempt is checked.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _one_of_names(names: tuple[str, ...]) -> Schema:
    if len(names) == 1:
        return ref(names[0])
    return {"anyOf": [ref(name) for name in names]}


def _object(properties: dict[str, Schema], description: str, *, required: bool = True) -> Schema:
    """An object schema; every property is required unless told otherwise."""
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = sorted(properties)
    return schema


def _ro(schema: Schema) -> Schema:
    return {**schema, "readOnly": True}


def _string(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _generic_state_class() -> Schema:
    return {
        "type": "object",
        "description": "API serializer for generic state class information.",
        "properties": {
            "status_class": _ro(_string(title="Class")),
            "values": {"type": "object", "additionalProperties": ref("GenericStateValue")},
        },
        "required": ["status_class", "values"],
    }


def _generic_state_value() -> Schema:
    return {
        "type": "object",
        "description": "API serializer for generic state information.",
        "properties": {
            "key": {"type": "integer"},
            "logical_key": _string(),
            "name": _string(),
            "label": _string(),
            "color": _string(),
            "custom": {"type": "boolean"},
        },
        "required": ["key", "label", "name"],
    }


def _info_api() -> Schema:
    staff_only = "Only for staff users; null otherwise (InvenTree answers null too)."
    properties: dict[str, Schema] = {
        "server": _ro(_string()),
        "version": _ro(_string()),
        "instance": _ro(_string()),
        "apiVersion": _ro({"type": "integer"}),
        "worker_running": _ro({"type": "boolean"}),
        "worker_count": _ro({"type": "integer"}),
        "worker_pending_tasks": _ro({"type": "integer"}),
        "plugins_enabled": _ro({"type": "boolean"}),
        "plugins_install_disabled": _ro({"type": "boolean"}),
        "active_plugins": _ro({"description": "A list of `{name, slug, version}`, or false."}),
        "email_configured": _ro({"type": "boolean"}),
        "debug_mode": _ro({"type": "boolean"}),
        "docker_mode": _ro({"type": "boolean"}),
        "default_locale": {"allOf": [ref("DefaultLocaleEnum")], "readOnly": True},
        "system_health": _ro({"type": "boolean", "nullable": True, "description": staff_only}),
    }
    for key in ("database", "platform", "installer", "target", "django_admin"):
        properties[key] = _ro(_string(staff_only, nullable=True))
    properties["agent"] = _ro(
        _object(
            {"name": _string(), "version": _string()},
            "The agent answering (not in InvenTree): its name and version.",
        )
    )
    return _object(
        properties,
        "InvenTree server information - some information might be blanked if called without "
        "elevated credentials.",
    )


def _machine_config(*, create: bool, patched: bool = False) -> Schema:
    def method_field(schema: Schema, what: str, more: str = "") -> Schema:
        text = f"Serializer method for the {what} field. {more}".strip()
        return _ro({**schema, "description": text})

    fixed = _ro(_string("Type of machine"))
    driver = _ro(_string("Driver used for the machine"))
    if create:
        fixed = _string("Type of machine (any string; an unknown one is a registry error)")
        fixed["maxLength"] = 255
        driver = _string("Driver used for the machine (any string; an unknown one is an error)")
        driver["maxLength"] = 255
    properties: dict[str, Schema] = {
        "pk": _ro(_string(format="uuid", title="Id")),
        "name": _string("Name of machine", minLength=1, maxLength=255),
        "machine_type": fixed,
        "driver": driver,
        "initialized": method_field({"type": "boolean"}, "initialized"),
        "active": {"type": "boolean", "description": "Machines can be disabled"},
        "status": method_field(
            {"type": "integer"},
            "status",
            f"-1 when the machine has no runtime instance. {status_codes_text()}",
        ),
        "status_model": method_field({"type": "string", "nullable": True}, "status model"),
        "status_text": method_field({"type": "string"}, "status text"),
        "machine_errors": method_field({"type": "array", "items": _string()}, "errors"),
        "is_driver_available": method_field({"type": "boolean"}, "is_driver_available"),
        "restart_required": method_field({"type": "boolean"}, "restart_required"),
        "properties": _ro(
            {
                "type": "array",
                "items": ref("MachineProperty"),
                "description": "Facts reported by the driver (InvenTree v401).",
            }
        ),
        "status_read_at": _ro(
            {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "When the status was last read from the printer (kept across "
                "restarts of the agent); null if never.",
            }
        ),
    }
    what = "creating a MachineConfig" if create else "a MachineConfig"
    schema = _object(properties, f"Serializer for {what}.", required=not patched)
    if not patched:
        schema["required"] = [key for key in schema["required"] if key != "active"]
    return schema


def _machine_property() -> Schema:
    return _object(
        {
            "key": _string(),
            "value": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
            "group": _string(),
            "type": _string(enum=["str", "bool", "progress", "int", "float"]),
            "max_progress": {"type": "integer", "nullable": True},
        },
        "A read-only fact about a machine; `max_progress` is set for `progress` values only.",
    )


def _machine_setting(*, patched: bool) -> Schema:
    properties: dict[str, Schema] = {
        "pk": _ro(
            {
                "type": "integer",
                "nullable": True,
                "title": "ID",
                "description": "null while the setting is not saved: reads never write.",
            }
        ),
        "key": _ro(_string()),
        "value": _string(
            "Always a string in answers (`True`/`False`, `5`); `***` when protected.",
            nullable=True,
        ),
        "name": _ro(_string()),
        "description": _ro(_string()),
        "type": _ro(_string(enum=["boolean", "integer", "related field", "string"])),
        "choices": _ro(
            {
                "type": "array",
                "items": _object({"value": _string(), "display_name": _string()}, "A choice."),
                "description": "Returns the choices available for a given item.",
            }
        ),
        "model_name": _ro(_string(nullable=True)),
        "api_url": _ro(_string(nullable=True)),
        "typ": _ro(_string(enum=["machine_config"])),
        "required": _ro({"type": "boolean"}),
        "config_type": {"allOf": [ref("ConfigTypeEnum")], "readOnly": True},
    }
    return _object(properties, "Serializer for the MachineSetting model.", required=not patched)


def _provided_class(*, driver: bool) -> Schema:
    slug: Schema = _string(pattern=r"^[-a-zA-Z0-9_]+$")
    properties: dict[str, Schema] = {
        "slug": slug,
        "name": _string(),
        "description": _string(),
        "provider_file": _ro(_string("Serializer method for the provider_file field.")),
        "provider_plugin": _ro(
            {
                "type": "object",
                "additionalProperties": {},
                "nullable": True,
                "description": "Serializer method for the provider_plugin field.",
            }
        ),
        "is_builtin": _ro(
            {"type": "boolean", "description": "Serializer method for the is_builtin field."}
        ),
    }
    if driver:
        properties["machine_type"] = _ro(slug)
        properties["driver_errors"] = _ro(
            {
                "type": "array",
                "items": _string(),
                "description": "Serializer method for the errors field.",
            }
        )
    what = "BaseMachineDriver" if driver else "BaseMachineType"
    return _object(properties, f"Serializer for a {what} class.")


def _user_schemas() -> dict[str, Schema]:
    permissions = {"type": "array", "items": _string(enum=["view", "add", "change", "delete"])}
    return {
        "AuthToken": _object(
            {"token": _string(), "name": _string(), "expiry": _string(format="date")},
            "An API token (`Authorization: Token <token>`) and when it expires.",
        ),
        "Login": _object(
            {
                "username": _string(minLength=1),
                "password": {**_string(minLength=1), "writeOnly": True},
            },
            "Credentials to log in with.",
        ),
        "MeUser": _object(
            {
                "pk": _ro({"type": "integer"}),
                "username": _string(),
                "first_name": _string(),
                "last_name": _string(),
                "email": _string(),
                "groups": {"type": "array", "items": {}},
                "is_staff": {"type": "boolean"},
                "is_superuser": {"type": "boolean"},
                "is_active": {"type": "boolean"},
            },
            "The current user.",
        ),
        "RestAuthDetail": _object({"detail": _ro(_string())}, "A confirmation message."),
        "Role": _object(
            {
                "user": {"type": "integer"},
                "username": _string(),
                "roles": {
                    "type": "object",
                    "additionalProperties": {**permissions, "nullable": True},
                },
                "permissions": {"type": "object", "additionalProperties": permissions},
                "is_staff": {"type": "boolean"},
                "is_superuser": {"type": "boolean"},
            },
            "The current user's role permissions, per InvenTree ruleset (machines are `admin`).",
        ),
        "Token": _object({"key": _string()}, "The API token made by a login."),
    }


def _error_schemas() -> dict[str, Schema]:
    return {
        "ErrorDetail": _object({"detail": _string()}, "An error message."),
        "NotFound": {
            **_object(
                {"detail": _string(), "url": _string("Only for unknown `/api/` paths.")},
                "Not found: an unknown object, or (with `url`) an unknown `/api/` path, which "
                "includes any path parameter in the wrong form.",
            ),
            "required": ["detail"],
        },
        "ValidationErrors": {
            "type": "object",
            "description": "Field name (or `non_field_errors`) to a list of messages.",
            "additionalProperties": {"type": "array", "items": _string()},
        },
    }
