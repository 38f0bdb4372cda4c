"""InvenTree's list conventions: search, ordering and LimitOffset pagination (bare list without limit)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from aiohttp import web

T = TypeVar("T")
_SEARCH_SPLIT = re.compile(r"[\s,]+")


def search_terms(query: str) -> list[str]:
    """Terms of a `?search=` value: split on whitespace and commas, all must match."""
    return [term for term in _SEARCH_SPLIT.split(query) if term]


def matches_search(text: str, terms: Sequence[str], *, regex: bool, whole: bool) -> bool:
    """True when `text` contains every term, ignoring case."""
    for term in terms:
        pattern = term if regex else re.escape(term)
        if whole:
            pattern = rf"\b{pattern}\b"
        try:
            if not re.search(pattern, text, re.IGNORECASE):
                return False
        except re.error:
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


def positive_int(value: str | None) -> int | None:
    """DRF's strict positive-int parsing of a query parameter; None when absent or invalid."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def limit_offset(request: web.Request) -> tuple[int, int] | None:
    """The page asked for: (limit, offset) with a valid `limit`, else None (a bare list)."""
    limit = positive_int(request.query.get("limit"))
    if limit is None:
        return None
    offset_raw = request.query.get("offset")
    try:
        offset = max(int(offset_raw), 0) if offset_raw is not None else 0
    except ValueError:
        offset = 0
    return limit, offset


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
