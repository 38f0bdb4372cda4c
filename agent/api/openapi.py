"""The OpenAPI 3.0.3 document, derived from the views' endpoint declarations (`agent/api/declare.py`).

Operation ids, paths and field names are InvenTree 303's. Where the agent answers otherwise (bare
lists without `limit`, `properties`, unsaved settings with `pk: null`, nulls InvenTree also
sends), the declarations say what the agent answers, and every operation lists its error answers.
"""

from __future__ import annotations

import datetime
import inspect
import types
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo

from agent import __version__
from agent.api.declare import (
    ApiModel,
    Body,
    Content,
    EnumComponent,
    Inline,
    ListOf,
    Operation,
    Patched,
    RawComponent,
    Schema,
    field_doc,
    ref,
)
from agent.api.error_docs import ERROR_RESPONSES, error_response
from agent.api.metadata import PARSES
from agent.api.views import SAFE_METHODS

if TYPE_CHECKING:
    from agent.api.views import ApiView

OPENAPI_VERSION = "3.0.3"
API_VERSION = "303"
SECURED: list[dict[str, list[str]]] = [{"tokenAuth": []}, {"basicAuth": []}, {"cookieAuth": []}]
ANONYMOUS_OK: list[dict[str, list[str]]] = [*SECURED, {}]
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
# Answers of every view that reads a request body: unparsable or invalid, too slow, too large,
# of a type it does not take.
BODY_ERRORS = (400, 408, 413, 415)
PAGE_DESCRIPTION = "One page (`limit`/`offset`); `next` and `previous` are absolute URLs."
_SCALARS: dict[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    Any: {},
}


def build_document(views: Iterable[type[ApiView]]) -> dict[str, Any]:
    """The whole document for these views."""
    components = Components()
    for _status, (_name, _description, bodies) in ERROR_RESPONSES.items():
        for body in bodies:
            components.body(body)
    paths: dict[str, dict[str, Any]] = {}
    for view in views:
        endpoint = view.endpoint
        item = paths.setdefault(endpoint.path, {})
        for op in endpoint.operations:
            item[op.method.lower()] = _operation(view, op, components)
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
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "responses": {
                name: error_response(status, description, [components.body(b) for b in bodies])
                for status, (name, description, bodies) in ERROR_RESPONSES.items()
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def error_statuses(view: type[ApiView], op: Operation, path: str) -> list[int]:
    """The error answers of an operation: its own, and those its view's policy implies."""
    codes = set(op.errors)
    if view.authenticate:
        # Whoever takes credentials checks them (401); a session's unsafe request needs CSRF.
        codes.add(401)
        if op.method not in SAFE_METHODS or view.needed_permission(op.method) is not None:
            codes.add(403)
    if op.request is not None:
        codes.update(BODY_ERRORS)
    if "{" in path:
        codes.add(404)
    if 401 in codes:  # whoever takes credentials takes Basic ones, which are rate limited
        codes.add(429)
    return sorted(codes)


def _operation(view: type[ApiView], op: Operation, components: Components) -> dict[str, Any]:
    endpoint = view.endpoint
    result: dict[str, Any] = {"operationId": op.operation_id, "description": op.description}
    own = op.parameters() if callable(op.parameters) else op.parameters
    params = [*endpoint.parameters, *own]
    if params:
        result["parameters"] = params
    if op.tag is not None:
        result["tags"] = [op.tag]
    if isinstance(op.request, Content):
        result["requestBody"] = {"content": op.request.build(), "required": True}
    elif op.request is not None:
        schema = components.body(op.request)
        result["requestBody"] = {
            "content": {media_type: {"schema": schema} for media_type in PARSES},
            "required": not isinstance(op.request, Patched),
        }
    if not view.authenticate:
        result["security"] = [{}]
    else:
        result["security"] = ANONYMOUS_OK if view.allow_anonymous else SECURED
    responses: dict[str, Any] = {}
    for answer in op.answers:
        if answer.body is None:
            responses[str(answer.status)] = {"description": answer.description}
            continue
        schema = components.body(answer.body)
        entry: dict[str, Any] = {
            "description": answer.description,
            "content": {media_type: {"schema": schema} for media_type in answer.media_types},
        }
        if answer.links:
            entry["links"] = dict(answer.links)
        responses[str(answer.status)] = entry
    for status in error_statuses(view, op, endpoint.path):
        name = ERROR_RESPONSES[status][0]
        responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    result["responses"] = responses
    return result


class Components:
    """The component schemas met while the document is built, each written once."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def body(self, body: Body) -> Schema:
        """The schema of a request or answer body (a reference where it is a component)."""
        if isinstance(body, Inline):
            return body.schema
        if isinstance(body, RawComponent):
            for required in body.requires:
                self.body(required)
            self.schemas.setdefault(body.name, body.schema)
            return ref(body.name)
        if isinstance(body, Patched):
            name = f"Patched{body.model.__name__}"
            if name not in self.schemas:
                self.schemas[name] = {}
                self.schemas[name] = self.model_schema(body.model, patched=True)
            return ref(name)
        if isinstance(body, ListOf):
            array = {"type": "array", "items": self.body(body.model)}
            if not body.paginated:
                return array
            name = f"Paginated{body.model.__name__}List"
            self.schemas.setdefault(name, self._page(body.model))
            return {"oneOf": [array, ref(name)]}
        if body.inline:
            return self.model_schema(body)
        name = body.__name__
        if name not in self.schemas:
            self.schemas[name] = {}  # a model that refers to itself stops here
            self.schemas[name] = self.model_schema(body)
        return ref(name)

    def model_schema(self, model: type[ApiModel], *, patched: bool = False) -> Schema:
        """An object schema of the model's fields; required: those without a default."""
        properties = {name: self.field(info) for name, info in model.model_fields.items()}
        schema: Schema = {
            "type": "object",
            "description": model_description(model),
            "properties": properties,
        }
        if not patched:
            schema["required"] = sorted(
                name for name, info in model.model_fields.items() if info.is_required()
            )
        return schema

    def field(self, info: FieldInfo) -> Schema:
        """One property: its type, constraints and texts."""
        doc = field_doc(info)
        if doc.enum is not None:
            schema: Schema = {"allOf": [self.enum(doc.enum)]}
        else:
            schema = self.annotation(info.annotation)
        for constraint in info.metadata:
            schema.update(_constraint(constraint))
        description = doc.help_text if doc.description is None else doc.description
        if description:
            schema["description"] = description
        if doc.title:
            schema["title"] = doc.title
        if doc.read_only:
            schema["readOnly"] = True
        if doc.write_only:
            schema["writeOnly"] = True
        schema.update(doc.schema)
        return schema

    def enum(self, enum: EnumComponent) -> Schema:
        """A reference to a named enumeration."""
        self.schemas.setdefault(enum.name, enum.schema())
        return ref(enum.name)

    def annotation(self, annotation: Any) -> Schema:
        """The schema of a Python type: scalars, `X | None`, unions, lists, maps, literals, models."""
        origin = get_origin(annotation)
        args = get_args(annotation)
        if origin in (Union, types.UnionType):
            present = [arg for arg in args if arg is not type(None)]
            if len(present) == 1:
                schema = self.annotation(present[0])
            else:
                schema = {"anyOf": [self.annotation(arg) for arg in present]}
            if len(present) < len(args):
                schema["nullable"] = True
            return schema
        if origin is list:
            return {"type": "array", "items": self.annotation(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.annotation(args[1])}
        if origin is Literal:
            kind = "integer" if all(isinstance(arg, int) for arg in args) else "string"
            return {"type": kind, "enum": list(args)}
        if isinstance(annotation, type) and issubclass(annotation, ApiModel):
            return self.body(annotation)
        return dict(_SCALARS[annotation])

    def _page(self, model: type[ApiModel]) -> Schema:
        uri = {"type": "string", "nullable": True, "format": "uri"}
        properties: dict[str, Schema] = {
            "count": {"type": "integer", "example": 123},
            "next": uri,
            "previous": dict(uri),
            "results": {"type": "array", "items": self.body(model)},
        }
        return {
            "type": "object",
            "description": PAGE_DESCRIPTION,
            "properties": properties,
            "required": sorted(properties),
        }


def model_description(model: type[ApiModel]) -> str:
    """The model's docstring, its wrapped lines joined (paragraphs stay apart)."""
    paragraphs = inspect.cleandoc(model.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _constraint(item: Any) -> Schema:
    if isinstance(item, annotated_types.MinLen):
        return {"minLength": item.min_length}
    if isinstance(item, annotated_types.MaxLen):
        return {"maxLength": item.max_length}
    if isinstance(item, annotated_types.Ge):
        return {"minimum": item.ge}
    if isinstance(item, annotated_types.Le):
        return {"maximum": item.le}
    return {}
