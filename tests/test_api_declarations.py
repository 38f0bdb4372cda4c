"""Endpoint declarations: a view is described once, and OPTIONS and OpenAPI follow from it."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from aiohttp import web
from pydantic import Field

from agent.api import VIEWS
from agent.api.declare import Answer, ApiModel, Doc, Endpoint, Operation, Patched
from agent.api.metadata import fields_metadata
from agent.api.openapi import build_document, error_statuses
from agent.api.schema import openapi_document
from agent.api.views import ApiView


class Widget(ApiModel):
    """A widget."""

    pk: Annotated[int, Doc(read_only=True, title="ID")]
    name: Annotated[str, Field(min_length=1, max_length=20), Doc("Name of widget")]
    size: Annotated[int | None, Field(ge=0), Doc(description="Size in mm; null if unknown.")]
    shiny: Annotated[bool, Doc("Widgets can shine")] = False


def _widget_endpoint(*methods: str) -> Endpoint:
    return Endpoint(
        "/api/widget/{id}/",
        name="Widget",
        description="One widget.",
        operations=tuple(
            Operation(
                method,
                f"widget_{method.lower()}",
                "Widget.",
                request=Patched(Widget) if method == "PATCH" else None,
                answers=(Answer(200, Widget),),
            )
            for method in methods
        ),
    )


def test_a_handler_without_a_declared_operation_is_refused() -> None:
    with pytest.raises(TypeError, match="handles \\['DELETE', 'GET'\\]"):

        class Undeclared(ApiView):
            endpoint = _widget_endpoint("GET")

            async def get(self) -> web.StreamResponse:
                raise NotImplementedError

            async def delete(self) -> web.StreamResponse:
                raise NotImplementedError


def test_an_operation_without_a_handler_is_refused() -> None:
    with pytest.raises(TypeError, match="declares \\['GET', 'PUT'\\]"):

        class Unhandled(ApiView):
            endpoint = _widget_endpoint("GET", "PUT")

            async def get(self) -> web.StreamResponse:
                raise NotImplementedError


class WidgetView(ApiView):
    permission = "admin_role"
    endpoint = _widget_endpoint("GET", "PATCH")

    async def get(self) -> web.StreamResponse:
        raise NotImplementedError

    async def patch(self) -> web.StreamResponse:
        raise NotImplementedError


def test_the_model_gives_the_component_schema_and_its_patched_form() -> None:
    document = build_document([WidgetView])
    schemas: dict[str, Any] = document["components"]["schemas"]

    assert schemas["Widget"] == {
        "type": "object",
        "description": "A widget.",
        "properties": {
            "pk": {"type": "integer", "readOnly": True, "title": "ID"},
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 20,
                "description": "Name of widget",
            },
            "size": {
                "type": "integer",
                "nullable": True,
                "minimum": 0,
                "description": "Size in mm; null if unknown.",
            },
            "shiny": {"type": "boolean", "description": "Widgets can shine"},
        },
        "required": ["name", "pk", "size"],
    }
    assert "required" not in schemas["PatchedWidget"]
    assert schemas["PatchedWidget"]["properties"] == schemas["Widget"]["properties"]
    patch = document["paths"]["/api/widget/{id}/"]["patch"]
    assert patch["requestBody"]["required"] is False


def test_error_answers_follow_from_the_view_policy() -> None:
    get, patch = WidgetView.endpoint.operations
    path = WidgetView.endpoint.path

    assert error_statuses(WidgetView, get, path) == [401, 403, 404, 429]
    assert error_statuses(WidgetView, patch, path) == [400, 401, 403, 404, 408, 413, 415, 429]


def test_options_fields_follow_the_model() -> None:
    assert fields_metadata(Widget) == {
        "pk": {"type": "integer", "required": False, "read_only": True, "label": "ID"},
        "name": {
            "type": "string",
            "required": True,
            "read_only": False,
            "label": "Name",
            "help_text": "Name of widget",
            "max_length": 20,
        },
        "size": {"type": "integer", "required": True, "read_only": False, "label": "Size"},
        "shiny": {
            "type": "boolean",
            "required": False,
            "read_only": False,
            "label": "Shiny",
            "help_text": "Widgets can shine",
            "default": False,
        },
    }


def test_every_served_view_is_in_the_document_at_its_declared_path() -> None:
    paths = openapi_document()["paths"]

    for view in VIEWS:
        declared = {op.method.lower() for op in view.endpoint.operations}
        assert set(paths[view.endpoint.path]) == declared, view.__name__
