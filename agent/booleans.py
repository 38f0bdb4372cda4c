"""The strings that mean true and false: one table per rule the agent answers by.

Two rules, both compared after stripping spaces and lower-casing:

- DRF's `BooleanField` (request bodies, print options, boolean query filters): `true`/`false`,
  `t`/`f`, `yes`/`no`, `y`/`n`, `on`/`off`, `1`/`0`; anything else is "Must be a valid boolean."
  DRF itself takes three casings of each (`true`, `True`, `TRUE`); the agent takes any casing.
- InvenTree's `str2bool` for machine setting values: the same, and `ok` is also true. A client
  may send the empty string for false; the agent refuses anything else that is neither.

Connection URIs (`drivers/transport/uri.py`) keep their own table: drivers import nothing from
the agent.
"""

from __future__ import annotations

DRF_TRUE = frozenset({"t", "y", "yes", "true", "on", "1"})
DRF_FALSE = frozenset({"f", "n", "no", "false", "off", "0"})
SETTING_TRUE = frozenset({"1", "y", "yes", "t", "true", "ok", "on"})
SETTING_FALSE = frozenset({"", "0", "n", "no", "f", "false", "off"})


def drf_bool(text: str) -> bool | None:
    """True or False for a string DRF's BooleanField takes, None for any other."""
    return _lookup(text, DRF_TRUE, DRF_FALSE)


def setting_bool(text: str) -> bool | None:
    """True or False for a string a boolean setting takes, None for any other."""
    return _lookup(text, SETTING_TRUE, SETTING_FALSE)


def str2bool(value: object) -> bool:
    """InvenTree's `str2bool`: True for its true strings, False for anything else."""
    return str(value).strip().lower() in SETTING_TRUE


def _lookup(text: str, true: frozenset[str], false: frozenset[str]) -> bool | None:
    lowered = text.strip().lower()
    if lowered in true:
        return True
    if lowered in false:
        return False
    return None
