"""InvenTree's list conventions: search, ordering and LimitOffset pagination (bare list without limit).

Query parameters the schema types (`limit`, `offset`, boolean filters) are parsed strictly: a value
of the wrong type, or a parameter given twice, is a 400 on that parameter instead of being ignored.
Searching runs off the event loop on a safe engine, within a time budget.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import regex
from aiohttp import web
from multidict import MultiMapping

from agent.api.declare import query_parameter
from agent.api.errors import ValidationFailed

T = TypeVar("T")
_SEARCH_SPLIT = re.compile(r"[\s,]+")
# A search (every term against every item) gets this much time, off the loop, then is refused.
SEARCH_BUDGET_S = 0.5
# Longest search value; a regular expression longer than this is refused before it is compiled.
SEARCH_MAX_LENGTH = 200
SEARCH_TOO_COSTLY = (
    f"This search takes too long to evaluate (over {SEARCH_BUDGET_S:g} s): "
    "simplify the regular expression."
)
_TRUE_VALUES = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE_VALUES = frozenset({"false", "0", "no", "off", "f", "n"})
# One thread for searches: a costly pattern queues behind others instead of taking the threads
# that render labels.
_SEARCH_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")


class SearchTooCostly(Exception):
    """A search did not finish within its budget."""


def single_value(query: MultiMapping[str], key: str) -> str | None:
    """The one value of `key`; a parameter given more than once is a 400."""
    values = query.getall(key, [])
    if len(values) > 1:
        raise ValidationFailed({key: ["Only one value is allowed."]})
    return values[0] if values else None


def boolean_param(query: MultiMapping[str], key: str) -> bool | None:
    """A boolean filter (`true`/`false`, `1`/`0`, ...); absent is None, anything else a 400."""
    value = single_value(query, key)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE_VALUES:
        return True
    if lowered in _FALSE_VALUES:
        return False
    raise ValidationFailed({key: ["Must be a valid boolean."]})


def integer_param(query: MultiMapping[str], key: str) -> int | None:
    """An integer parameter; absent is None, anything but an integer a 400."""
    value = single_value(query, key)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError as err:
        raise ValidationFailed({key: ["A valid integer is required."]}) from err


def search_terms(query: str) -> list[str]:
    """Terms of a `?search=` value: split on whitespace and commas, all must match."""
    return [term for term in _SEARCH_SPLIT.split(query) if term]


async def search(
    items: Sequence[T], text_of: Callable[[T], str], query: MultiMapping[str]
) -> list[T]:
    """Items whose text matches every `?search=` term (ignoring case), searched off the loop.

    A search that does not finish within `SEARCH_BUDGET_S` is a 400 on `search`.
    """
    raw = single_value(query, "search") or ""
    terms = search_terms(raw)
    as_regex = bool(boolean_param(query, "search_regex"))
    whole = bool(boolean_param(query, "search_whole"))
    if not terms:
        return list(items)
    if as_regex and len(raw) > SEARCH_MAX_LENGTH:
        raise ValidationFailed(
            {"search": [f"Ensure this value has at most {SEARCH_MAX_LENGTH} characters."]}
        )
    texts = [text_of(item) for item in items]
    loop = asyncio.get_running_loop()
    try:
        keep = await loop.run_in_executor(
            _SEARCH_EXECUTOR, _matching, texts, terms, as_regex, whole, SEARCH_BUDGET_S
        )
    except SearchTooCostly as err:
        raise ValidationFailed({"search": [SEARCH_TOO_COSTLY]}) from err
    return [item for item, matched in zip(items, keep, strict=True) if matched]


def _matching(
    texts: Sequence[str], terms: Sequence[str], as_regex: bool, whole: bool, budget_s: float
) -> list[bool]:
    """Which texts match every term. Blocking: runs on the search thread."""
    deadline = time.monotonic() + budget_s
    patterns = [p for p in (_compile(term, as_regex, whole) for term in terms) if p is not None]
    if len(patterns) < len(terms):
        return [False] * len(texts)  # a term that is not a valid pattern matches nothing
    return [_all_match(text, patterns, deadline) for text in texts]


def _compile(term: str, as_regex: bool, whole: bool) -> regex.Pattern[str] | None:
    pattern = term if as_regex else regex.escape(term)
    if whole:
        pattern = rf"\b{pattern}\b"
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.V0)
    except (regex.error, RecursionError, OverflowError):
        return None


def _all_match(text: str, patterns: Iterable[regex.Pattern[str]], deadline: float) -> bool:
    for pattern in patterns:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SearchTooCostly
        try:
            # `concurrent` lets the loop's thread run while this one matches.
            found = pattern.search(text, timeout=remaining, concurrent=True)
        except TimeoutError as err:
            raise SearchTooCostly from err
        if found is None:
            return False
    return True


def order_by(
    items: list[T],
    ordering: str | None,
    keys: Mapping[str, Callable[[T], Any]],
    default: Sequence[str],
) -> list[T]:
    """Sort by a DRF `?ordering=` value; unknown fields are dropped, none left means `default`."""
    fields = [f.strip() for f in (ordering or "").split(",") if f.strip()]
    valid = [f for f in fields if f.lstrip("-") in keys]
    result = list(items)
    for field in reversed(valid or list(default)):
        key = keys[field.lstrip("-")]
        result.sort(key=key, reverse=field.startswith("-"))
    return result


# The query parameters `limit_offset` reads, as the OpenAPI document lists them.
LIMIT_PARAMETER = query_parameter(
    "limit", {"type": "integer"}, "Number of results to return per page."
)
OFFSET_PARAMETER = query_parameter(
    "offset", {"type": "integer"}, "The initial index from which to return the results."
)


def limit_offset(request: web.Request) -> tuple[int, int] | None:
    """The page asked for: (limit, offset) with a positive `limit`, else None (a bare list).

    A `limit` or `offset` that is not an integer, or is given twice, is a 400.
    """
    limit = integer_param(request.query, "limit")
    offset = integer_param(request.query, "offset")
    if limit is None or limit <= 0:
        return None
    return limit, max(offset or 0, 0)


def page_body(
    request: web.Request, count: int, results: list[Any], limit: int, offset: int
) -> dict[str, Any]:
    """DRF's LimitOffset page object for `results`, the items `offset..offset+limit` of `count`."""
    url = str(request.url)
    next_url = None
    if offset + limit < count:
        next_url = _replace_query(url, limit=str(limit), offset=str(offset + limit))
    previous_url = None
    if offset > 0:
        if offset - limit <= 0:
            previous_url = _replace_query(url, limit=str(limit), offset=None)
        else:
            previous_url = _replace_query(url, limit=str(limit), offset=str(offset - limit))
    return {"count": count, "next": next_url, "previous": previous_url, "results": results}


def paginate(request: web.Request, items: Sequence[Any]) -> tuple[bool, Any]:
    """Apply `limit`/`offset`: (True, page object) with a valid limit, else (False, the items)."""
    window = limit_offset(request)
    if window is None:
        return False, list(items)
    limit, offset = window
    return True, page_body(request, len(items), list(items[offset : offset + limit]), limit, offset)


def _replace_query(url: str, **changes: str | None) -> str:
    """DRF's replace_query_param/remove_query_param: parameters re-encoded in sorted order."""
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = [value]
    return urlunsplit(
        (scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), fragment)
    )
