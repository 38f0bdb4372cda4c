"""The bodies of the print API: a print job, and what `POST /api/machine/{id}/print/` takes."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any

from pydantic import Field

from agent.api.declare import ApiModel, Doc, Schema, query_parameter
from agent.api.print_options import MAX_COPIES, option_schemas
from agent.documents import IMAGE_CONTENT_TYPES, PDF_CONTENT_TYPE, RAW_CONTENT_TYPE
from agent.storage.jobs import JOB_STATUSES, KEPT_ERRORS

IDEMPOTENCY_KEY_MAX = 255
# Every media type a stored job can have: what the agent draws, and raw printer language.
DOCUMENT_TYPES = (PDF_CONTENT_TYPE, *IMAGE_CONTENT_TYPES, RAW_CONTENT_TYPE)
STATUS_TEXT = (
    "`queued` (waiting, also between retries while the printer is unreachable), `printing` "
    "(being sent), `complete`, `failed` (the printer refused it, the document could not be "
    "drawn, or it expired) or `cancelled`."
)
_UTC = " ISO 8601 with the UTC offset."
_COUNT = Field(ge=0)


class PrintJob(ApiModel):
    """A print job (not in InvenTree)."""

    pk: uuid.UUID
    machine: Annotated[
        uuid.UUID, Doc(description="The machine's `pk` (kept after the machine is deleted).")
    ]
    status: Annotated[str, Doc(description=STATUS_TEXT, schema={"enum": list(JOB_STATUSES)})]
    copies: Annotated[int, Field(ge=1, le=MAX_COPIES)]
    pages: Annotated[
        int | None,
        Field(ge=1),
        Doc(description="Labels in the document; null for raw printer language."),
    ]
    progress: Annotated[
        int,
        _COUNT,
        Doc(
            description="Labels printed so far, over all copies (a raw job counts one per "
            "copy); live while printing."
        ),
    ]
    attempts: Annotated[int, _COUNT, Doc(description="How often the job was sent to the printer.")]
    errors: Annotated[
        list[str],
        Doc(
            description=f"Why attempts failed, oldest first, the last {KEPT_ERRORS} at most; "
            "for a failed job the last one says why."
        ),
    ]
    error_count: Annotated[
        int,
        _COUNT,
        Doc(description="How many errors the job met in all (`errors` keeps the last few)."),
    ]
    warnings: Annotated[
        list[str],
        Doc(description="What drawing changed, e.g. a page scaled down to fit the label."),
    ]
    content_type: Annotated[str, Doc(schema={"enum": list(DOCUMENT_TYPES)})]
    size: Annotated[int, _COUNT, Doc(description="Document size in bytes.")]
    created: Annotated[datetime.datetime, Doc(description="When the job was accepted." + _UTC)]
    started: Annotated[
        datetime.datetime | None,
        Doc(description="When it was first sent to the printer; null until then." + _UTC),
    ]
    finished: Annotated[
        datetime.datetime | None,
        Doc(description="When it completed, failed or was cancelled; null until then." + _UTC),
    ]


def print_parameters() -> tuple[Schema, ...]:
    """The print request's query parameters (its options) and `Idempotency-Key` header."""
    return (
        *(query_parameter(name, schema) for name, schema in option_schemas().items()),
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
            "description": "A client's name for this print request. Sent again to the "
            "same machine, it answers the job made the first time (200) instead of "
            "printing twice, so a request that timed out can be retried safely.",
        },
    )


def print_content() -> dict[str, Any]:
    """The print request's body: a document as it is, or a multipart form with options."""
    binary: Schema = {"type": "string", "format": "binary"}
    media_types = ", ".join(f"`{media_type}`" for media_type in DOCUMENT_TYPES)
    file: Schema = {
        **binary,
        "description": "The document. Its kind is the part's Content-Type if that is not "
        "`application/octet-stream`; else the file name's extension (`.pdf`, `.png`, `.jpg`, "
        f"`.jpeg`); else raw printer language. Kinds: {media_types}.",
    }
    return {
        PDF_CONTENT_TYPE: {"schema": {**binary, "description": "A PDF: one label per page."}},
        **{
            media_type: {"schema": {**binary, "description": "An image: one label."}}
            for media_type in IMAGE_CONTENT_TYPES
        },
        RAW_CONTENT_TYPE: {
            "schema": {
                **binary,
                "description": "Raw printer language (ZPL, ESC/POS...), sent to the printer "
                "unchanged, once per copy; a driver that takes none (the virtual printer) "
                "fails the job.",
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": file, **option_schemas()},
                "required": ["file"],
            }
        },
    }
