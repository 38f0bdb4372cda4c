"""Setting values: InvenTree's rules for typing, showing and validating machine settings.

Values are stored as strings. A value sent for a bool-, int- or float-validated setting must be
one (InvenTree 303 silently stores "False" or the default instead; the agent refuses it), and
within the `min_value`/`max_value` a driver declares. Stored values that do not parse (written
by an older version) still read as the default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from agent.booleans import setting_bool, str2bool
from drivers.base import SettingDef, SettingOutOfRange, SettingValidationError, SettingValue

MAX_VALUE_LENGTH = 2000
PROTECTED_MASK = "***"

# API list URLs of the models a setting may point to (InvenTree's `model` key).
_MODEL_URLS: Mapping[str, str] = {
    "stock.stocklocation": "/api/stock/location/",
    "stock.stockitem": "/api/stock/",
    "part.part": "/api/part/",
    "part.partcategory": "/api/part/category/",
    "company.company": "/api/company/",
}


class SettingInvalid(Exception):
    """A value failed validation; `field` is `value` or `non_field_errors`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def validators_of(definition: SettingDef) -> list[Any]:
    """The definition's validators as a list."""
    validator = definition.get("validator")
    if validator is None:
        return []
    if isinstance(validator, list | tuple):
        return list(validator)
    return [validator]


def is_bool(definition: SettingDef) -> bool:
    """Validated as a boolean."""
    return bool in validators_of(definition)


def is_int(definition: SettingDef) -> bool:
    """Validated as an integer."""
    return int in validators_of(definition)


def is_float(definition: SettingDef) -> bool:
    """Validated as a number."""
    return float in validators_of(definition)


def setting_type(definition: SettingDef) -> str:
    """The API's `type`: boolean, integer, related field or string."""
    if is_bool(definition):
        return "boolean"
    if is_int(definition):
        return "integer"
    if definition.get("model"):
        return "related field"
    return "string"


def default_string(definition: SettingDef) -> str:
    """The default as it would be stored."""
    default = definition.get("default", "")
    if is_bool(definition):
        return str(str2bool(default))
    return "" if default is None else str(default)


def native_value(definition: SettingDef, raw: str | None) -> SettingValue:
    """The typed value a driver reads: bool, int or float per validator, else the string."""
    value = default_string(definition) if raw is None else raw
    if is_bool(definition):
        return str2bool(value)
    if is_int(definition):
        parsed = _parse_int(value)
        if parsed is None:
            parsed = _parse_int(default_string(definition))
        return 0 if parsed is None else parsed
    if is_float(definition):
        number = _parse_float(value)
        if number is None:
            number = _parse_float(default_string(definition))
        return 0.0 if number is None else number
    return value


def display_value(definition: SettingDef, raw: str | None) -> str:
    """The `value` shown by the API (a string at v303; protected values masked)."""
    value = default_string(definition) if raw is None else raw
    if definition.get("protected") and value:
        return PROTECTED_MASK
    if is_bool(definition) or is_int(definition):
        return str(native_value(definition, value))
    return value


def choices_of(definition: SettingDef) -> list[dict[str, str]]:
    """The API's `choices`: `[{"value", "display_name"}]`."""
    return [
        {"value": str(value), "display_name": str(label)} for value, label in _choices(definition)
    ]


def api_url_of(definition: SettingDef) -> str | None:
    """The list URL of the related model, if the setting points to one."""
    model = definition.get("model")
    return _MODEL_URLS.get(model) if model else None


def clean_value(definition: SettingDef, value: object) -> str:
    """Validate a value sent by a client and return the string to store.

    Raises SettingInvalid with InvenTree's messages.
    """
    text = "" if value is None else str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise SettingInvalid(
            "value",
            f"Ensure this value has at most {MAX_VALUE_LENGTH} characters (it has {len(text)}).",
        )
    coerced: object = text
    if is_bool(definition):
        parsed = setting_bool(text)
        if parsed is None:
            raise SettingInvalid("value", "Must be a valid boolean.")
        coerced = parsed
    elif is_int(definition):
        coerced = _parse_int(text.strip())
        if coerced is None:
            raise SettingInvalid("value", "Value must be an integer value")
    elif is_float(definition):
        coerced = _parse_float(text.strip())
        if coerced is None:
            raise SettingInvalid("value", "Value must be a valid number")
    if isinstance(coerced, int | float) and not isinstance(coerced, bool):
        _check_range(definition, coerced)
    for validator in validators_of(definition):
        _run_validator(validator, coerced)
    choices = [str(choice) for choice, _label in _choices(definition)]
    if choices and str(coerced) not in choices:
        raise SettingInvalid("non_field_errors", "Chosen value is not a valid option")
    return str(coerced)


def missing_required(definitions: Mapping[str, SettingDef], values: Mapping[str, str]) -> list[str]:
    """Keys of required settings whose value (or else default) is empty."""
    missing = []
    for key, definition in definitions.items():
        if not definition.get("required"):
            continue
        value = values.get(key)
        if value is None:
            value = default_string(definition)
        if value == "":
            missing.append(key)
    return missing


def _check_range(definition: SettingDef, value: float) -> None:
    low, high = definition.get("min_value"), definition.get("max_value")
    if low is not None and value < low:
        raise SettingInvalid("value", f"Ensure this value is greater than or equal to {low}.")
    if high is not None and value > high:
        raise SettingInvalid("value", f"Ensure this value is less than or equal to {high}.")


def _run_validator(validator: Any, value: object) -> None:
    if validator is bool:
        return
    if validator is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingInvalid("value", "Value must be an integer value")
        return
    if validator is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SettingInvalid("value", "Value must be a valid number")
        return
    try:
        validator(value)
    except SettingOutOfRange as err:
        raise SettingInvalid("value", str(err)) from err
    except SettingValidationError as err:
        raise SettingInvalid("non_field_errors", str(err)) from err
    except Exception as err:  # any other failure is InvenTree's generic message
        raise SettingInvalid("value", "Value does not pass validation checks") from err


def _choices(definition: SettingDef) -> Sequence[tuple[str, str]]:
    return definition.get("choices") or ()


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _parse_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
