"""Input fields with DRF's coercion rules and messages, and InvenTree's input cleaning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.api.errors import ValidationFailed
from agent.booleans import drf_bool
from agent.text_cleaning import clean_field, has_html_tag

MISSING: Any = object()


class FieldErrors:
    """Collects `{"field": ["message"]}` and raises them together."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        """Record a message for a field."""
        self.errors.setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        """Raise a 400 with everything collected."""
        if self.errors:
            raise ValidationFailed(self.errors)


def expect_object(data: Any) -> Mapping[str, Any]:
    """The body must be a JSON object, as a DRF serializer expects."""
    if not isinstance(data, Mapping):
        raise ValidationFailed(
            {
                "non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {_python_type_name(data)}."
                ]
            }
        )
    return data


def clean_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """InvenTree's CleanMixin: strip strings, drop control characters, refuse HTML tags."""
    errors = FieldErrors()
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = clean_field(value)
            if has_html_tag(value):
                errors.add(key, "Remove HTML tags from this value")
        cleaned[key] = value
    errors.raise_if_any()
    return cleaned


def char_field(
    data: Mapping[str, Any],
    key: str,
    errors: FieldErrors,
    *,
    required: bool,
    max_length: int,
) -> Any:
    """A DRF CharField: returns the string, or MISSING when absent (or invalid)."""
    if key not in data:
        if required:
            errors.add(key, "This field is required.")
        return MISSING
    value = data[key]
    if value is None:
        errors.add(key, "This field may not be null.")
        return MISSING
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.add(key, "Not a valid string.")
        return MISSING
    text = str(value).strip()
    if not text:
        errors.add(key, "This field may not be blank.")
        return MISSING
    if len(text) > max_length:
        errors.add(key, f"Ensure this field has no more than {max_length} characters.")
        return MISSING
    return text


def boolean_field(data: Mapping[str, Any], key: str, errors: FieldErrors, *, form: bool) -> Any:
    """A DRF BooleanField: returns the bool, or MISSING when absent (or invalid).

    As in DRF, a form body without the field means False (HTML checkboxes send nothing when off).
    """
    if key not in data:
        return False if form else MISSING
    value = data[key]
    if value is None:
        errors.add(key, "This field may not be null.")
        return MISSING
    if value is True or value is False:
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        parsed = drf_bool(value)
        if parsed is not None:
            return parsed
    errors.add(key, "Must be a valid boolean.")
    return MISSING


def _python_type_name(value: Any) -> str:
    return type(value).__name__
