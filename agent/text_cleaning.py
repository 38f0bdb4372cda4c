"""InvenTree's cleaning of text a client sends, and the two rules it has for HTML.

- A field of a request body (InvenTree's `CleanMixin`): stripped, control characters dropped,
  and refused ("Remove HTML tags from this value") when it holds something a browser would take
  for a tag: `<b>`, `</div>`, `<!-- -->`, `<img src=x>`; a lone `<` or `1 < 2` is kept.
- A token name (`ApiToken.sanitize_name`): stripped, anything between `<` and `>` removed
  silently, control characters dropped, white space turned into `-`, cut to 100 characters.
"""

from __future__ import annotations

import re

TOKEN_NAME_MAX = 100
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>")
_ANGLE_BRACKETED = re.compile(r"<[^>]*>")
_WHITE_SPACE = re.compile(r"\s")


def clean_field(value: str) -> str:
    """A body field's text, stripped and without control characters."""
    return _CONTROL_CHARS.sub("", value.strip())


def has_html_tag(value: str) -> bool:
    """True when the text holds something a browser would treat as an HTML tag."""
    return _HTML_TAG.search(value) is not None


def clean_token_name(raw: str) -> str:
    """InvenTree's token name cleaning: no HTML or control characters, white space to '-'."""
    name = _CONTROL_CHARS.sub("", _ANGLE_BRACKETED.sub("", raw.strip()))
    return _WHITE_SPACE.sub("-", name)[:TOKEN_NAME_MAX]
