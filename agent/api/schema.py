"""`GET /api/schema/`: the agent's OpenAPI 3.0.3 document.

Derived from the views' endpoint declarations by `agent/api/openapi.py`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.api.declare import Answer, Endpoint, Inline, Operation, query_parameter
from agent.api.errors import NotFound
from agent.api.openapi import build_document
from agent.api.print_options import options_form
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from drivers.base import BaseDriver, LabelPrinterDriver
from drivers.print_options import PrintOption

# Each driver's own print options, by slug, as the OpenAPI document lists them.
DriverOptions = tuple[tuple[str, tuple[PrintOption, ...]], ...]
PRINT_PATH = "/api/machine/{id}/print/"


@functools.cache
def openapi_document(driver_options: DriverOptions = ()) -> dict[str, Any]:
    """The whole document, built on first use; shared, so callers must not modify it.

    `driver_options` (see `driver_options_of`) lists the drivers' own print options under the
    print operation's `x-driver-options`.
    """
    from agent.api import VIEWS  # which lists this view: import when first built

    document = build_document(VIEWS)
    document["paths"][PRINT_PATH]["post"]["x-driver-options"] = {
        slug: {"type": "object", "properties": options_form(options).json_schema()}
        for slug, options in driver_options
        if options
    }
    return document


def driver_options_of(drivers: Mapping[str, type[BaseDriver]]) -> DriverOptions:
    """Each label-printer driver class's own print options, by slug, in slug order."""
    return tuple(
        (slug, tuple(driver.PRINT_OPTIONS))
        for slug, driver in sorted(drivers.items())
        if issubclass(driver, LabelPrinterDriver)
    )


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
        drivers = self.request.app[REGISTRY].drivers
        driver_options = driver_options_of({slug: type(d) for slug, d in drivers.items()})
        if wanted == "json":
            return web.Response(body=_json_bytes(driver_options), content_type="application/json")
        if wanted == "yaml" and _yaml_available():
            # The first YAML rendering takes tens of milliseconds: keep it off the loop.
            body = await asyncio.to_thread(_yaml_bytes, driver_options)
            return web.Response(body=body, content_type="application/yaml")
        raise NotFound


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
