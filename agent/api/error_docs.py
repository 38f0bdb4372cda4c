"""The error answers as the OpenAPI document shows them: bodies, descriptions, headers."""

from __future__ import annotations

from typing import Annotated, Any

from agent.api.declare import ApiModel, Body, Doc, RawComponent, Schema


class ErrorDetail(ApiModel):
    """An error message."""

    detail: str


class NotFound(ApiModel):
    """Not found: an unknown object, or (with `url`) an unknown `/api/` path, which includes any path parameter in the wrong form."""

    detail: str
    url: Annotated[str, Doc(description="Only for unknown `/api/` paths.")] = ""


VALIDATION_ERRORS = RawComponent(
    "ValidationErrors",
    {
        "type": "object",
        "description": "Field name (or `non_field_errors`) to a list of messages.",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
)

# Error answers: status -> (component name, description, bodies; several: anyOf).
ERROR_RESPONSES: dict[int, tuple[str, str, tuple[Body, ...]]] = {
    400: (
        "BadRequest",
        "Invalid input: field name (or `non_field_errors`) to a list of messages; a body that "
        "cannot be parsed gives `{detail}`.",
        (VALIDATION_ERRORS, ErrorDetail),
    ),
    401: (
        "Unauthorized",
        "No credentials on a protected endpoint, or invalid credentials on any endpoint.",
        (ErrorDetail,),
    ),
    403: (
        "Forbidden",
        "Authenticated, but without the role or permission needed; also a CSRF failure of a "
        "session-authenticated unsafe request.",
        (ErrorDetail,),
    ),
    404: ("NotFound", "Unknown object, or unknown `/api/` path (with `url`).", (NotFound,)),
    405: (
        "MethodNotAllowed",
        "A method not listed for this path (checked after authentication and permissions).",
        (ErrorDetail,),
    ),
    409: (
        "Conflict",
        "The object's state does not allow this, e.g. cancelling a job that has started printing.",
        (ErrorDetail,),
    ),
    408: ("RequestTimeout", "The request body did not arrive in time.", (ErrorDetail,)),
    413: ("PayloadTooLarge", "The request body is over the configured limit.", (ErrorDetail,)),
    415: ("UnsupportedMediaType", "The body's content type is not accepted.", (ErrorDetail,)),
    429: (
        "TooManyRequests",
        "Too many failed password attempts from this address or for this user: no password is "
        "checked until `Retry-After` seconds have passed.",
        (ErrorDetail,),
    ),
}
_HEADERS: dict[int, tuple[str, str, Schema]] = {
    401: ("WWW-Authenticate", "Names the token scheme: `Token`.", {"type": "string"}),
    405: (
        "Allow",
        "The methods this path answers, e.g. `GET, HEAD, OPTIONS`.",
        {"type": "string"},
    ),
    429: (
        "Retry-After",
        "Seconds until the next password attempt is checked.",
        {"type": "integer", "minimum": 1},
    ),
}


def error_response(status: int, description: str, schemas: list[Schema]) -> dict[str, Any]:
    """`components.responses` entry of an error answer, given its body schemas."""
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if status in _HEADERS:
        name, text, header_schema = _HEADERS[status]
        response["headers"] = {
            name: {"description": text, "required": True, "schema": header_schema}
        }
    return response
