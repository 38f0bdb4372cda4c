"""`GET /api/schema/`: the agent's OpenAPI 3.0.3 document.

Derived from the views' endpoint declarations by `agent/api/openapi.py`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
from typing import Any

from aiohttp import web

from agent.api.declare import Answer, Endpoint, Inline, Operation, query_parameter
from agent.api.errors import NotFound
from agent.api.openapi import build_document
from agent.api.views import ApiView


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document, built on first use; shared, so callers must not modify it."""
    from agent.api import VIEWS  # which lists this view: import when first built

    return build_document(VIEWS)


class SchemaView(ApiView):
    """The OpenAPI document: JSON, or YAML with `?format=yaml` when PyYAML is installed."""

    allow_anonymous = True
    endpoint = Endpoint(
        "/api/schema/",
        name="Schema",
        description="OpenAPI 3.0.3 document of this API.",
        operations=(
            Operation(
                "GET",
                "schema_retrieve",
                "This OpenAPI document. `?format=yaml` answers YAML when the agent has PyYAML, "
                "404 otherwise.",
                tag="schema",
                parameters=(
                    query_parameter("format", {"type": "string", "enum": ["json", "yaml"]}),
                ),
                answers=(
                    Answer(
                        200,
                        Inline({"type": "object"}),
                        "This document.",
                        media_types=("application/json", "application/yaml"),
                    ),
                ),
                errors=(404,),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """The cached document in the asked format; an unknown format is a 404, as in DRF."""
        wanted = self.request.query.get("format", "json")
        if wanted == "json":
            return web.Response(body=_json_bytes(), content_type="application/json")
        if wanted == "yaml" and _yaml_available():
            # The first YAML rendering takes tens of milliseconds: keep it off the loop.
            body = await asyncio.to_thread(_yaml_bytes)
            return web.Response(body=body, content_type="application/yaml")
        raise NotFound


@functools.cache
def _json_bytes() -> bytes:
    return json.dumps(openapi_document(), ensure_ascii=False).encode()


@functools.cache
def _yaml_bytes() -> bytes:
    import yaml

    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(openapi_document(), Dumper=NoAliases, sort_keys=False, allow_unicode=True)
    return text.encode()


def _yaml_available() -> bool:
    # PyYAML is a test dependency, not a runtime one.
    return importlib.util.find_spec("yaml") is not None
