"""OPTIONS answers, derived from a view's endpoint declaration.

As InvenTree's metadata class builds them: its web UI makes forms of the field maps.
"""

from __future__ import annotations

import datetime
import types
import uuid
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo

from agent.api.declare import ApiModel, Doc, ListOf, field_doc

if TYPE_CHECKING:
    from agent.api.views import ApiView

RENDERS = ["application/json"]
PARSES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]
# DRF's metadata types of the serializer fields the models stand for.
_DRF_TYPES: dict[Any, str] = {
    str: "string",
    uuid.UUID: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    datetime.datetime: "datetime",
    datetime.date: "date",
}


def view_metadata(view: ApiView) -> dict[str, Any]:
    """Name, description, renderers and parsers, and `actions` for a view backed by a model.

    `actions` holds the field maps of the methods the caller may use; `model` the model's name.
    """
    endpoint = view.endpoint
    meta: dict[str, Any] = {
        "name": endpoint.name,
        "description": endpoint.description,
        "renders": RENDERS,
        "parses": PARSES,
    }
    if endpoint.fields is None:
        return meta
    actions: dict[str, Any] = {}
    for method in ("POST", "PUT"):
        op = endpoint.operation(method)
        if op is None or not isinstance(op.request, type):
            continue
        if (method == "POST" or view.object_exists()) and view.has_permission(method):
            actions[method] = fields_metadata(op.request)
    get = endpoint.operation("GET")
    if get is not None and view.has_permission("GET"):
        body = get.answers[0].body
        model = body.model if isinstance(body, ListOf) else body
        if isinstance(model, type) and issubclass(model, ApiModel):
            actions["GET"] = fields_metadata(model)
    if endpoint.operation("DELETE") is not None and view.has_permission("DELETE"):
        actions["DELETE"] = {}
    if actions:
        meta["actions"] = actions
    if endpoint.fields.model is not None:
        meta["model"] = endpoint.fields.model
    return meta


def fields_metadata(model: type[ApiModel]) -> dict[str, Any]:
    """DRF's description of each field of the model, in declaration order."""
    described: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        doc = field_doc(info)
        entry: dict[str, Any] = {
            "type": _field_type(info, doc),
            "required": info.is_required() and not doc.read_only,
            "read_only": doc.read_only,
            "label": doc.label or doc.title or _capfirst(name.replace("_", " ")),
        }
        if doc.help_text:
            entry["help_text"] = doc.help_text
        max_length = doc.max_length or next(
            (c.max_length for c in info.metadata if isinstance(c, annotated_types.MaxLen)), None
        )
        if max_length is not None:
            entry["max_length"] = max_length
        if not info.is_required() and not doc.read_only:
            entry["default"] = info.default
        described[name] = entry
    return described


def _field_type(info: FieldInfo, doc: Doc) -> str:
    if doc.drf_type:
        return doc.drf_type
    if doc.method:
        return "field"  # a SerializerMethodField
    if doc.enum is not None:
        return "choice"
    return _drf_type(info.annotation)


def _drf_type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _drf_type(present[0]) if len(present) == 1 else "field"
    if origin is list:
        return "list"
    if origin is dict:
        return "dict"
    if origin is Literal:
        return "string"
    return _DRF_TYPES.get(annotation, "field")


def _capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]
