"""A driver's declared print options as the print API uses them: validation, OPTIONS, OpenAPI.

`options_form(driver.print_options())` is the one place declarations (`drivers.print_options`)
become a validator of the strings a client sends (query string or form fields), with DRF's
messages keyed by option name, and the descriptions published for them: `option_schemas()`
(the generic options) is what the print endpoint's declaration publishes as query parameters
and multipart form fields; each driver's own options go under `x-driver-options`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.api.declare import Schema
from agent.api.fields import FieldErrors
from agent.booleans import drf_bool
from drivers.print_options import GENERIC_OPTIONS, MAX_COPIES, OptionValue, PrintOption

__all__ = ["MAX_COPIES", "OptionsForm", "option_schema", "option_schemas", "options_form"]

BOOLEAN_TEXT = "`1`, `true`, `yes`, `on`, `t`, `y` or `0`, `false`, `no`, `off`, `f`, `n`"
# How each option type is named in DRF's OPTIONS metadata and in JSON Schema.
_JSON_TYPES = {"integer": "integer", "boolean": "boolean", "string": "string"}


@dataclass(frozen=True, slots=True)
class OptionsForm:
    """The options one driver takes, ready to check a request and to be described."""

    options: tuple[PrintOption, ...]

    def parse(self, source: Mapping[str, str]) -> dict[str, OptionValue]:
        """Typed values of the options sent, plus the defaults of those not sent.

        Names no option declares are ignored, as a DRF serializer ignores unknown fields.
        Raises `ValidationFailed` (400) with every bad option's message under its name.
        """
        errors = FieldErrors()
        values: dict[str, OptionValue] = {}
        for option in self.options:
            if option.name in source:
                value = _parse(option, source[option.name], errors)
                if value is not None:
                    values[option.name] = value
            elif option.default is not None:
                values[option.name] = option.default
        errors.raise_if_any()
        return values

    def json_schema(self) -> dict[str, dict[str, Any]]:
        """Each option's JSON Schema (OpenAPI 3.0 dialect), by name: query parameters, form fields."""
        return {option.name: option_schema(option) for option in self.options}

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Each option as DRF's OPTIONS metadata describes a writable serializer field."""
        return {option.name: _field_info(option) for option in self.options}


def options_form(options: Sequence[PrintOption]) -> OptionsForm:
    """The form for a driver's `print_options()`."""
    return OptionsForm(tuple(options))


def option_schemas() -> dict[str, Schema]:
    """The generic options' schemas, by name, in the order the document lists them."""
    return options_form(GENERIC_OPTIONS).json_schema()


def option_schema(option: PrintOption) -> dict[str, Any]:
    """One option's JSON Schema."""
    schema: dict[str, Any]
    if option.type == "choice":
        values = list(option.values())
        schema = {"type": "integer" if isinstance(values[0], int) else "string", "enum": values}
    else:
        schema = {"type": _JSON_TYPES[option.type]}
    if option.min_value is not None:
        schema["minimum"] = option.min_value
    if option.max_value is not None:
        schema["maximum"] = option.max_value
    if option.max_length is not None:
        schema["maxLength"] = option.max_length
    if option.default is not None:
        schema["default"] = option.default
    description = option.help_text
    if option.type == "boolean":
        description = f"{description} Any case of {BOOLEAN_TEXT}.".strip()
    if description:
        schema["description"] = description
    return schema


def _field_info(option: PrintOption) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": option.type,
        "required": False,
        "read_only": False,
        "label": option.label,
    }
    if option.help_text:
        info["help_text"] = option.help_text
    if option.default is not None:
        info["default"] = option.default
    if option.min_value is not None:
        info["min_value"] = option.min_value
    if option.max_value is not None:
        info["max_value"] = option.max_value
    if option.max_length is not None:
        info["max_length"] = option.max_length
    if option.choices:
        info["choices"] = [
            {"value": value, "display_name": label} for value, label in option.choices
        ]
    return info


def _parse(option: PrintOption, raw: str, errors: FieldErrors) -> OptionValue | None:
    """The typed value, or None with the message recorded."""
    text = raw.strip()
    if option.type == "integer":
        return _integer(option, text, errors)
    if option.type == "boolean":
        flag = drf_bool(text)
        if flag is None:
            errors.add(option.name, "Must be a valid boolean.")
        return flag
    if option.type == "choice":
        for value in option.values():
            if text == str(value):
                return value
        errors.add(option.name, f'"{text}" is not a valid choice.')
        return None
    if not text:
        errors.add(option.name, "This field may not be blank.")
        return None
    if option.max_length is not None and len(text) > option.max_length:
        errors.add(
            option.name, f"Ensure this field has no more than {option.max_length} characters."
        )
        return None
    return text


def _integer(option: PrintOption, text: str, errors: FieldErrors) -> int | None:
    try:
        value = int(text)
    except ValueError:
        errors.add(option.name, "A valid integer is required.")
        return None
    if option.min_value is not None and value < option.min_value:
        errors.add(
            option.name, f"Ensure this value is greater than or equal to {option.min_value}."
        )
        return None
    if option.max_value is not None and value > option.max_value:
        errors.add(option.name, f"Ensure this value is less than or equal to {option.max_value}.")
        return None
    return value
