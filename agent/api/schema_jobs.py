"""The agent's own print API in the OpenAPI document: printing, the job list, one job."""

from __future__ import annotations

from typing import Any

from agent.api.jobs import IDEMPOTENCY_KEY_MAX
from agent.api.print_options import options_form
from agent.api.schema_components import (
    UUID_PATTERN,
    Schema,
    json_response,
    links,
    operation,
    paginated,
    path_parameter,
    query_parameter,
    ref,
)
from agent.documents import IMAGE_CONTENT_TYPES, PDF_CONTENT_TYPE, RAW_CONTENT_TYPE
from agent.job_store import JOB_STATUSES, KEPT_ERRORS
from agent.jobs import CANCEL_WAIT_S
from drivers.print_options import GENERIC_OPTIONS, MAX_COPIES, PrintOption

# Each driver's own print options, by slug, as the OpenAPI document lists them.
DriverOptions = tuple[tuple[str, tuple[PrintOption, ...]], ...]

# Every media type a stored job can have: what the agent draws, and raw printer language.
DOCUMENT_TYPES = (PDF_CONTENT_TYPE, *IMAGE_CONTENT_TYPES, RAW_CONTENT_TYPE)
STATUS_TEXT = (
    "`queued` (waiting, also between retries while the printer is unreachable), `printing` "
    "(being sent), `complete`, `failed` (the printer refused it, the document could not be "
    "drawn, or it expired) or `cancelled`."
)


def job_paths(driver_options: DriverOptions = ()) -> dict[str, dict[str, Any]]:
    """The print and job operations, by path; `driver_options` adds the drivers' own options."""
    job = path_parameter(
        "job",
        {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
        "The job's `pk`; lower-case UUID, any other form is an unknown path (404 with `url`).",
    )
    one_job = json_response(ref("PrintJob"))
    return {
        "/api/machine/{id}/print/": {"post": _print_operation(driver_options)},
        "/api/machine/jobs/": {"get": _list_operation()},
        "/api/machine/jobs/{job}/": {
            "get": operation(
                "machine_jobs_retrieve",
                "One print job. `progress` of a job being printed is live.",
                tag="machine",
                parameters=[job],
                responses=one_job,
                errors=(401, 404),
            ),
            "delete": operation(
                "machine_jobs_destroy",
                "Cancel a job (the job stays listed). A queued job is cancelled at once. A "
                "printing job stops after the label being sent (the printer finishes it; a "
                "Zebra printer also prints the formats already in its buffer): the answer waits "
                f"up to {CANCEL_WAIT_S:g} s for that and is the cancelled job, whose `progress` "
                "counts the labels printed; if the label is still on its way then, the answer "
                "is 202 with the job still `printing`, and it becomes `cancelled` soon after "
                "(poll it). A job that has finished cannot be cancelled (409). Needs the "
                "`admin` role's `change` permission.",
                tag="machine",
                parameters=[job],
                responses={
                    **json_response(ref("PrintJob"), "The cancelled job."),
                    **json_response(
                        ref("PrintJob"),
                        "The job is stopping after the label being sent; it is still `printing`.",
                        status=202,
                    ),
                },
                errors=(401, 403, 404, 409),
            ),
        },
    }


def job_schemas() -> dict[str, Schema]:
    """The component schemas of the print API."""
    return {"PrintJob": _print_job(), "PaginatedPrintJobList": paginated("PrintJob")}


def _print_operation(driver_options: DriverOptions) -> dict[str, Any]:
    description = (
        "Print a document on a machine (not in InvenTree): a PDF (one label per page), an image "
        "(one label), or raw printer language (`application/octet-stream`, sent as it is), as "
        "the request body or as the `file` part of a multipart form. The job is stored before "
        "the answer and printed in order by the machine's queue; poll it at "
        "`/api/machine/jobs/{job}/`. Options come from the query string or, for multipart, "
        "from form fields (a form field wins).\n\n"
        "Needs the `admin` role's `change` permission. The machine is looked up before the "
        "body is read: an unknown machine is a 404 whatever the body. 400 bodies name the "
        "field: `document` (empty, unreadable, of an unsupported type, or over the page or "
        "pixel limits), "
        "`copies` (also when pages x copies is over the agent's `max_labels`, 10,000 unless "
        "configured), `threshold`, `dither`, `rotation`, a driver's own option, `file` (a form "
        "without a `file` part), `Idempotency-Key`, or `non_field_errors` (the machine has no "
        "driver, or the media its printer reports loaded is not what the machine is set up "
        "for); a malformed multipart body gives `{detail}`.\n\n"
        "Besides the options listed here, which every label printer takes, a driver may declare "
        "its own: `OPTIONS` on this path lists a machine's (`actions.POST`), and "
        "`x-driver-options` every driver's, by driver slug. An option the machine's driver does "
        "not declare is ignored."
    )
    binary: Schema = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {
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
        "multipart/form-data": {"schema": _form(binary)},
    }
    job = {"job": "$response.body#/pk"}
    chained = links(job, "machine_jobs_retrieve", "machine_jobs_destroy")
    responses = {
        **json_response(ref("PrintJob"), "The new job, queued.", status=201, links=chained),
        **json_response(
            ref("PrintJob"),
            "The job this machine accepted earlier under the same `Idempotency-Key`, as it is "
            "now; this request's options are still checked, its document is not drawn or stored.",
            links=chained,
        ),
    }
    print_operation = operation(
        "machine_print_create",
        description,
        tag="machine",
        parameters=[
            path_parameter(
                "id",
                {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
                "The machine's `pk`; lower-case UUID, any other form is an unknown path (404 "
                "with `url`).",
            ),
            *(query_parameter(name, schema) for name, schema in _options().items()),
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
                "description": "A client's name for this print request. Sent again to the "
                "same machine, it answers the job made the first time (200) instead of "
                "printing twice, so a request that timed out can be retried safely.",
            },
        ],
        body_content=content,
        responses=responses,
        errors=(400, 401, 403, 404, 408, 413, 415),
    )
    print_operation["x-driver-options"] = {
        slug: {"type": "object", "properties": options_form(options).json_schema()}
        for slug, options in driver_options
        if options
    }
    return print_operation


def _form(binary: Schema) -> Schema:
    media_types = ", ".join(f"`{media_type}`" for media_type in DOCUMENT_TYPES)
    file: Schema = {
        **binary,
        "description": "The document. Its kind is the part's Content-Type if that is not "
        "`application/octet-stream`; else the file name's extension (`.pdf`, `.png`, `.jpg`, "
        f"`.jpeg`); else raw printer language. Kinds: {media_types}.",
    }
    return {
        "type": "object",
        "properties": {"file": file, **_options()},
        "required": ["file"],
    }


def _options() -> dict[str, Schema]:
    return options_form(GENERIC_OPTIONS).json_schema()


def _list_operation() -> dict[str, Any]:
    page = {
        "oneOf": [
            {"type": "array", "items": ref("PrintJob")},
            ref("PaginatedPrintJobList"),
        ]
    }
    return operation(
        "machine_jobs_list",
        "Print jobs of every machine, newest first (not in InvenTree). Without `limit` (or "
        "with a `limit` of 0 or less) the answer is a bare array; with `limit` it is one page. "
        "An unknown `status`, a `machine` that is not a UUID, or a `limit`/`offset` that is not "
        "one integer is a 400 naming the parameter; an empty `machine` or `status` does not "
        "filter.",
        tag="machine",
        parameters=[
            query_parameter(
                "machine",
                {"type": "string", "format": "uuid"},
                "Only the jobs of this machine (its `pk`); any other value matches no job.",
            ),
            query_parameter("status", {"type": "string", "enum": list(JOB_STATUSES)}, STATUS_TEXT),
            query_parameter("limit", {"type": "integer"}, "Number of results to return per page."),
            query_parameter(
                "offset", {"type": "integer"}, "The initial index from which to return the results."
            ),
        ],
        responses=json_response(page),
        errors=(400, 401),
    )


def _print_job() -> Schema:
    def timestamp(description: str, *, nullable: bool = True) -> Schema:
        schema: Schema = {
            "type": "string",
            "format": "date-time",
            "description": f"{description} ISO 8601 with the UTC offset.",
        }
        if nullable:
            schema["nullable"] = True
        return schema

    def strings(description: str) -> Schema:
        return {"type": "array", "items": {"type": "string"}, "description": description}

    properties: dict[str, Schema] = {
        "pk": {"type": "string", "format": "uuid"},
        "machine": {
            "type": "string",
            "format": "uuid",
            "description": "The machine's `pk` (kept after the machine is deleted).",
        },
        "status": {"type": "string", "enum": list(JOB_STATUSES), "description": STATUS_TEXT},
        "copies": {"type": "integer", "minimum": 1, "maximum": MAX_COPIES},
        "pages": {
            "type": "integer",
            "minimum": 1,
            "nullable": True,
            "description": "Labels in the document; null for raw printer language.",
        },
        "progress": {
            "type": "integer",
            "minimum": 0,
            "description": "Labels printed so far, over all copies (a raw job counts one per "
            "copy); live while printing.",
        },
        "attempts": {
            "type": "integer",
            "minimum": 0,
            "description": "How often the job was sent to the printer.",
        },
        "errors": strings(
            f"Why attempts failed, oldest first, the last {KEPT_ERRORS} at most; for a failed "
            "job the last one says why."
        ),
        "error_count": {
            "type": "integer",
            "minimum": 0,
            "description": "How many errors the job met in all (`errors` keeps the last few).",
        },
        "warnings": strings("What drawing changed, e.g. a page scaled down to fit the label."),
        "content_type": {"type": "string", "enum": list(DOCUMENT_TYPES)},
        "size": {"type": "integer", "minimum": 0, "description": "Document size in bytes."},
        "created": timestamp("When the job was accepted.", nullable=False),
        "started": timestamp("When it was first sent to the printer; null until then."),
        "finished": timestamp("When it completed, failed or was cancelled; null until then."),
    }
    return {
        "type": "object",
        "description": "A print job (not in InvenTree).",
        "properties": properties,
        "required": list(properties),
    }
