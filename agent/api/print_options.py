"""The options of a print request (query string or form fields): their schemas, and their checks.

`option_schemas()` is what the print endpoint's declaration publishes (query parameters and
multipart form fields of `POST /api/machine/{id}/print/`); options declared by drivers plug in
there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.api.declare import Schema
from agent.api.fields import FieldErrors
from agent.booleans import drf_bool

MAX_COPIES = 1000
ROTATIONS = (0, 90, 180, 270)
_BOOLEAN_TEXT = "`1`, `true`, `yes`, `on`, `t`, `y` or `0`, `false`, `no`, `off`, `f`, `n`"


def option_schemas() -> dict[str, Schema]:
    """Each option's name and schema, in the order the document lists them."""
    return {
        "copies": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_COPIES,
            "default": 1,
            "description": "How many times to print the whole document.",
        },
        "threshold": {
            "type": "integer",
            "minimum": 0,
            "maximum": 255,
            "description": "Grey darker than this prints black; the driver's default if absent.",
        },
        "dither": {
            "type": "boolean",
            "description": "Floyd-Steinberg dithering instead of a threshold; the driver's "
            f"default if absent. Any case of {_BOOLEAN_TEXT}.",
        },
        "rotation": {
            "type": "integer",
            "enum": list(ROTATIONS),
            "description": "Clockwise rotation in degrees; the driver's default if absent.",
        },
    }


def parse_options(query: Mapping[str, str], fields: Mapping[str, str]) -> dict[str, Any]:
    """Print options from the query string or form fields, validated as DRF fields would be."""
    source = {**query, **fields}
    errors = FieldErrors()
    options: dict[str, Any] = {"copies": _int_option(source, "copies", 1, 1, MAX_COPIES, errors)}
    if "threshold" in source:
        options["threshold"] = _int_option(source, "threshold", 128, 0, 255, errors)
    if "dither" in source:
        dither = drf_bool(source["dither"])
        if dither is not None:
            options["dither"] = dither
        else:
            errors.add("dither", "Must be a valid boolean.")
    if "rotation" in source:
        raw = source["rotation"].strip()
        if raw in {str(rotation) for rotation in ROTATIONS}:
            options["rotation"] = int(raw)
        else:
            errors.add("rotation", f'"{raw}" is not a valid choice.')
    errors.raise_if_any()
    return options


def _int_option(
    source: Mapping[str, str], key: str, default: int, low: int, high: int, errors: FieldErrors
) -> int:
    if key not in source:
        return default
    try:
        value = int(source[key].strip())
    except ValueError:
        errors.add(key, "A valid integer is required.")
        return default
    if value < low:
        errors.add(key, f"Ensure this value is greater than or equal to {low}.")
    elif value > high:
        errors.add(key, f"Ensure this value is less than or equal to {high}.")
    return value
