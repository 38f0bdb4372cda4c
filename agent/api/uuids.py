"""The one form of a machine's or a job's pk in a URL, as Django's `<uuid:>` converter takes it."""

from __future__ import annotations

# Lower-case hex only: any other form (upper case, no dashes) is an unknown path, a 404.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The same, anchored, for the OpenAPI document's `pattern`.
UUID_PATTERN = f"^{UUID}$"
