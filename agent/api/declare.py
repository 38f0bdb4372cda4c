"""How an endpoint is declared: once, next to its view.

A view's `endpoint` names its OpenAPI path, its operations (method, operation id, description,
request, answers, parameters, the error answers only it gives) and, for views InvenTree's web UI
makes forms of, which fields OPTIONS describes. Request and answer bodies are `ApiModel`s: pydantic
models whose annotations give the types and whose `Doc` metadata gives the texts. The OpenAPI
document (`agent/api/openapi.py`) and the OPTIONS metadata (`agent/api/metadata.py`) are derived
from these declarations; the error answers every view of a kind gives (401, 403, 404, body errors)
are derived from the view's authentication and permission policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

Schema = dict[str, Any]
# Django's `<uuid:>` converter: lower-case hex only; anything else falls to the catch-all 404.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID_PATTERN = f"^{UUID}$"


class ApiModel(BaseModel):
    """The fields of a request or answer body; the class docstring is the schema's description.

    Only declares: the views build their answers themselves (InvenTree's exact shapes).
    """

    # `model_name` is one of InvenTree's field names.
    model_config = ConfigDict(frozen=True, protected_namespaces=())
    # True: written out where it is used instead of as a component schema of its own.
    inline: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class EnumComponent:
    """A named string enumeration (`ConfigTypeEnum`): a component that fields refer to."""

    name: str
    labels: Mapping[str, str]

    def schema(self) -> Schema:
        """The component schema, with drf-spectacular's `* value - label` description."""
        return {
            "enum": list(self.labels),
            "type": "string",
            "description": "\n".join(
                f"* `{value}` - {label}" for value, label in self.labels.items()
            ),
        }


@dataclass(frozen=True, slots=True)
class Doc:
    """What a model field means, as `Annotated` metadata.

    `help_text` is InvenTree's own help text: OPTIONS shows it, and it is the OpenAPI description
    unless `description` says more ("" for none). `title` is OpenAPI's title and the OPTIONS label;
    `label` only the OPTIONS label (default: the name, capitalised, `_` as spaces). `max_length` is
    the column length OPTIONS shows where the schema states none. `method` marks a value the
    serializer computes (OPTIONS type `field`); `drf_type` names another OPTIONS type. `schema` adds
    to the derived OpenAPI schema; `enum` refers to a named enumeration instead.
    """

    help_text: str = ""
    description: str | None = None
    read_only: bool = False
    write_only: bool = False
    title: str = ""
    label: str = ""
    max_length: int | None = None
    method: bool = False
    drf_type: str = ""
    enum: EnumComponent | None = None
    schema: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawComponent:
    """A component schema that is not an object of named fields (a map, an error table)."""

    name: str
    schema: Schema
    # The components its schema refers to.
    requires: tuple[type[ApiModel], ...] = ()


@dataclass(frozen=True, slots=True)
class Patched:
    """The model with no field required: the body of a PATCH (`Patched<Model>`)."""

    model: type[ApiModel]


@dataclass(frozen=True, slots=True)
class ListOf:
    """A JSON array of the model; `paginated`: or, with `limit`, one page of it."""

    model: type[ApiModel]
    paginated: bool = False


@dataclass(frozen=True, slots=True)
class Inline:
    """A schema written out in place (e.g. the document at `/api/schema/`)."""

    schema: Schema


Body = type[ApiModel] | Patched | ListOf | RawComponent | Inline


@dataclass(frozen=True, slots=True)
class Content:
    """A request body that is not a JSON model: its OpenAPI `content`, built when the document is."""

    build: Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A success answer: status, body (None: no body), description, and OpenAPI links."""

    status: int
    body: Body | None
    description: str = ""
    links: Mapping[str, Any] | None = None
    media_types: tuple[str, ...] = ("application/json",)


Parameters = tuple[Schema, ...] | Callable[[], tuple[Schema, ...]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of an endpoint.

    `errors`: error answers only this operation gives (a query parameter it checks, a conflict);
    the others follow from the view and the request. `request`: a model (sent as JSON, a form or
    multipart) or `Content`. `parameters` may be a function, called when the document is built.
    """

    method: str
    operation_id: str
    description: str
    answers: tuple[Answer, ...]
    tag: str | None = "machine"
    errors: tuple[int, ...] = ()
    request: type[ApiModel] | Patched | Content | None = None
    parameters: Parameters = ()


@dataclass(frozen=True, slots=True)
class FormFields:
    """OPTIONS `actions` for a view backed by a model, as InvenTree's metadata class makes them.

    The field maps of POST and PUT (from the request model) and GET (from the answer), then
    DELETE, each where the caller may use it; `model` is the Django model name OPTIONS shows.
    """

    model: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A view's path and operations; `name` and `description` are what OPTIONS shows.

    `path` is the OpenAPI path template; `route` the aiohttp route the view is served at, with
    the patterns its parameters must match (default: `path`).
    """

    path: str
    name: str
    description: str
    operations: tuple[Operation, ...]
    route: str = ""
    # Parameters of the path, in front of each operation's own.
    parameters: tuple[Schema, ...] = ()
    fields: FormFields | None = None

    @property
    def served_at(self) -> str:
        """The aiohttp route."""
        return self.route or self.path

    def operation(self, method: str) -> Operation | None:
        """The operation of `method` (GET for HEAD), if declared."""
        wanted = "GET" if method == "HEAD" else method
        return next((op for op in self.operations if op.method == wanted), None)


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def path_parameter(name: str, schema: Schema, description: str = "") -> Schema:
    """A required path parameter."""
    param: Schema = {"in": "path", "name": name, "schema": schema, "required": True}
    if description:
        param["description"] = description
    return param


def query_parameter(name: str, schema: Schema, description: str = "") -> Schema:
    """An optional query parameter."""
    param: Schema = {"in": "query", "name": name, "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def links(parameters: Mapping[str, str], *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links, named by operation id, that fill `parameters` from runtime expressions."""
    return {op: {"operationId": op, "parameters": dict(parameters)} for op in operation_ids}


def field_doc(info: FieldInfo) -> Doc:
    """The field's `Doc` metadata (an empty one if it has none)."""
    return next((item for item in info.metadata if isinstance(item, Doc)), Doc())
