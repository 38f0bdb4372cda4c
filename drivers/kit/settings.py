"""Settings every connected driver declares the same way: the connection URI, intervals, thresholds."""

from __future__ import annotations

from collections.abc import Callable

from drivers.base import SettingDef, SettingOutOfRange, SettingValidationError, SettingValue
from drivers.transport import ConnectionUriError, parse_connection
from drivers.transport.uri import FORMS


def validate_connection(value: SettingValue) -> None:
    """Setting validator: raise `SettingValidationError` with the parser's advice for a bad URI."""
    try:
        parse_connection(str(value))
    except ConnectionUriError as err:
        raise SettingValidationError(str(err)) from err


def connection_setting(example: str) -> SettingDef:
    """The required `CONNECTION` setting (a URI, checked when saved)."""
    return {
        "name": "Connection",
        "description": f"How to reach the printer: {FORMS} (for example {example})",
        "default": "",
        "required": True,
        "validator": validate_connection,
    }


def int_range(low: int, high: int, meaning: str = "") -> Callable[[SettingValue], None]:
    """Setting validator: an integer from `low` to `high`; `meaning` explains special values."""

    def validate(value: SettingValue) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise SettingOutOfRange(f"Enter a whole number from {low} to {high}{meaning}")

    return validate


def poll_interval_setting(default: int) -> SettingDef:
    """The `POLL_INTERVAL` setting the poller reads (seconds between status queries)."""
    return {
        "name": "Status interval",
        "description": "Seconds between status queries while the printer is idle",
        "default": default,
        "validator": [int, int_range(1, 3600)],
        "units": "s",
    }


def threshold_settings() -> dict[str, SettingDef]:
    """`THRESHOLD` and `DITHER`: how grey in a document becomes black or white dots."""
    return {
        "THRESHOLD": {
            "name": "Threshold",
            "description": "Grey darker than this (0-255) prints black",
            "default": 128,
            "validator": [int, int_range(0, 255)],
        },
        "DITHER": {
            "name": "Dither",
            "description": "Dither grey areas (photos) instead of cutting at the threshold",
            "default": False,
            "validator": bool,
        },
    }
