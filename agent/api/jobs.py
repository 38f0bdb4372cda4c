"""The agent's print API: `POST /api/machine/{pk}/print/` and `/api/machine/jobs/`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.api.declare import (
    UUID,
    UUID_PATTERN,
    Answer,
    Content,
    Endpoint,
    ListOf,
    Operation,
    links,
    path_parameter,
    query_parameter,
)
from agent.api.errors import Conflict, NotFound, UnsupportedMediaType, ValidationFailed, drf_json
from agent.api.job_models import (
    IDEMPOTENCY_KEY_MAX,
    STATUS_TEXT,
    PrintJob,
    print_content,
    print_parameters,
)
from agent.api.listing import LIMIT_PARAMETER, OFFSET_PARAMETER, limit_offset, page_body
from agent.api.print_options import OptionsForm, options_form
from agent.api.views import ApiView, read_bytes, read_form
from agent.appkeys import JOBS, REGISTRY
from agent.documents import IMAGE_CONTENT_TYPES, PDF_CONTENT_TYPE, RAW_CONTENT_TYPE, DocumentError
from agent.jobs import CANCEL_WAIT_S, JobNotCancellable, TooManyLabels
from agent.machine import Machine
from agent.storage.jobs import JOB_STATUSES, JobRow
from drivers.base import LabelPrinterDriver, PrinterUnavailable

_EXTENSION_TYPES = {
    ".pdf": PDF_CONTENT_TYPE,
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
_UUID_SCHEMA = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
_JOB_LINKS = links({"job": "$response.body#/pk"}, "machine_jobs_retrieve", "machine_jobs_destroy")
_PRINT_TEXT = (
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
_CANCEL_TEXT = (
    "Cancel a job (the job stays listed). A queued job is cancelled at once. A "
    "printing job stops after the label being sent (the printer finishes it; a "
    "Zebra printer also prints the formats already in its buffer): the answer waits "
    f"up to {CANCEL_WAIT_S:g} s for that and is the cancelled job, whose `progress` "
    "counts the labels printed; if the label is still on its way then, the answer "
    "is 202 with the job still `printing`, and it becomes `cancelled` soon after "
    "(poll it). A job that has finished cannot be cancelled (409). Needs the "
    "`admin` role's `change` permission."
)


def job_json(row: JobRow, live_progress: int | None = None) -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "pk": row.pk,
        "machine": row.machine,
        "status": row.status,
        "copies": row.copies,
        "pages": row.pages,
        "progress": row.progress if live_progress is None else live_progress,
        "attempts": row.attempts,
        "errors": list(row.errors),
        "error_count": row.error_count,
        "warnings": list(row.warnings),
        "content_type": row.content_type,
        "size": row.size,
        "created": row.created,
        "started": row.started,
        "finished": row.finished,
    }


class PrintView(ApiView):
    """Print a document on a machine."""

    endpoint = Endpoint(
        "/api/machine/{id}/print/",
        route=f"/api/machine/{{pk:{UUID}}}/print/",
        name="Print",
        description=(
            "Print a document on a machine: PDF (one label per page), PNG, or raw printer "
            "language (application/octet-stream), as the body or a multipart `file` part."
        ),
        parameters=(
            path_parameter(
                "id",
                _UUID_SCHEMA,
                "The machine's `pk`; lower-case UUID, any other form is an unknown path (404 "
                "with `url`).",
            ),
        ),
        operations=(
            Operation(
                "POST",
                "machine_print_create",
                _PRINT_TEXT,
                # Built when the document is: the options may come from the drivers.
                parameters=print_parameters,
                request=Content(print_content),
                answers=(
                    Answer(201, PrintJob, "The new job, queued.", links=_JOB_LINKS),
                    Answer(
                        200,
                        PrintJob,
                        "The job this machine accepted earlier under the same "
                        "`Idempotency-Key`, as it is now; this request's options are still "
                        "checked, its document is not drawn or stored.",
                        links=_JOB_LINKS,
                    ),
                ),
            ),
        ),
    )

    @classmethod
    def needed_permission(cls, method: str) -> str | None:
        """Printing changes what a printer does: the role that may change machines."""
        return "change" if method == "POST" else None

    async def post(self) -> web.StreamResponse:
        """Queue a job: 201 with the job, or 200 with the earlier job for a repeated Idempotency-Key."""
        machine = self._machine()
        document, content_type, fields = await self._document()
        options = print_options(machine).parse({**self.request.query, **fields})
        key = self.request.headers.get("Idempotency-Key")
        if key is not None and not (
            0 < len(key) <= IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable()
        ):
            raise ValidationFailed(
                {
                    "Idempotency-Key": [
                        f"Must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters."
                    ]
                }
            )
        copies = int(options.pop("copies"))
        try:
            submitted = await self.request.app[JOBS].submit(
                machine, document, content_type, copies, options, key
            )
        except DocumentError as err:
            raise ValidationFailed({"document": [str(err)]}) from err
        except TooManyLabels as err:
            raise ValidationFailed({"copies": [str(err)]}) from err
        except PrinterUnavailable as err:
            # The driver cannot lay pages out for this printer now (`MediaMismatch`: the loaded
            # labels are not the ones the machine is set up for); nothing is stored.
            raise ValidationFailed({"non_field_errors": [str(err)]}) from err
        return drf_json(job_json(submitted.job), status=201 if submitted.created else 200)

    def metadata(self) -> dict[str, Any]:
        """DRF's metadata; `actions` lists this machine's print options to those who may print."""
        metadata = super().metadata()
        machine = self.request.app[REGISTRY].get(self.request.match_info["pk"])
        if (
            machine is not None
            and machine.registered
            and isinstance(machine.driver, LabelPrinterDriver)
            and self.has_permission("POST")
        ):
            metadata["actions"] = {"POST": print_options(machine).metadata()}
        return metadata

    def _machine(self) -> Machine:
        pk = self.request.match_info["pk"]
        machine = self.request.app[REGISTRY].get(pk)
        if machine is None or not machine.registered:
            raise NotFound(f"Machine '{pk}' not found")
        if not isinstance(machine.driver, LabelPrinterDriver):
            reason = "has no driver" if machine.driver is None else "has no label-printer driver"
            raise ValidationFailed(
                {"non_field_errors": [f"Machine '{machine.name}' {reason}, so it cannot print"]}
            )
        return machine

    async def _document(self) -> tuple[bytes, str, Mapping[str, str]]:
        header = self.request.headers.get("Content-Type", "")
        media_type = header.split(";", 1)[0].strip().lower()
        if media_type == "multipart/form-data":
            form = await read_form(self.request)
            part = form.get("file")
            if not isinstance(part, web.FileField):
                raise ValidationFailed({"file": ["No file was submitted."]})
            data = part.file.read()
            content_type = _part_type(part)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return data, content_type, fields
        if media_type in (PDF_CONTENT_TYPE, RAW_CONTENT_TYPE) or media_type in IMAGE_CONTENT_TYPES:
            return await read_bytes(self.request), media_type, {}
        raise UnsupportedMediaType(header)


class JobList(ApiView):
    """List print jobs, newest first."""

    endpoint = Endpoint(
        "/api/machine/jobs/",
        name="Job List",
        description="Print jobs, newest first; filter by `machine` and `status`.",
        operations=(
            Operation(
                "GET",
                "machine_jobs_list",
                "Print jobs of every machine, newest first (not in InvenTree). Without `limit` "
                "(or with a `limit` of 0 or less) the answer is a bare array; with `limit` it is "
                "one page. An unknown `status`, a `machine` that is not a UUID, or a "
                "`limit`/`offset` that is not one integer is a 400 naming the parameter; an "
                "empty `machine` or `status` does not filter.",
                parameters=(
                    query_parameter(
                        "machine",
                        {"type": "string", "format": "uuid"},
                        "Only the jobs of this machine (its `pk`); any other value matches no job.",
                    ),
                    query_parameter(
                        "status", {"type": "string", "enum": list(JOB_STATUSES)}, STATUS_TEXT
                    ),
                    LIMIT_PARAMETER,
                    OFFSET_PARAMETER,
                ),
                answers=(Answer(200, ListOf(PrintJob, paginated=True)),),
                errors=(400,),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Jobs with InvenTree-style `limit`/`offset` pagination (a bare list without `limit`)."""
        machine = _machine_filter(self.request.query.get("machine") or None)
        status = self.request.query.get("status") or None
        if status is not None and status not in JOB_STATUSES:
            raise ValidationFailed(
                {
                    "status": [
                        f"Select a valid choice. {status} is not one of the available choices."
                    ]
                }
            )
        runner = self.request.app[JOBS]
        window = limit_offset(self.request)
        if window is None:
            rows = await runner.jobs.find(machine=machine, status=status)
            return drf_json([job_json(r, runner.live_progress(r.pk)) for r in rows])
        limit, offset = window
        count, rows = await runner.jobs.page(machine, status, limit, offset)
        results = [job_json(r, runner.live_progress(r.pk)) for r in rows]
        return drf_json(page_body(self.request, count, results, limit, offset))


class JobDetail(ApiView):
    """One print job; DELETE cancels it (a printing job stops after the label being sent)."""

    endpoint = Endpoint(
        "/api/machine/jobs/{job}/",
        route=f"/api/machine/jobs/{{job:{UUID}}}/",
        name="Job Detail",
        description="One print job; DELETE cancels it, a printing job after the label being sent.",
        parameters=(
            path_parameter(
                "job",
                _UUID_SCHEMA,
                "The job's `pk`; lower-case UUID, any other form is an unknown path (404 with "
                "`url`).",
            ),
        ),
        operations=(
            Operation(
                "GET",
                "machine_jobs_retrieve",
                "One print job. `progress` of a job being printed is live.",
                answers=(Answer(200, PrintJob),),
            ),
            Operation(
                "DELETE",
                "machine_jobs_destroy",
                _CANCEL_TEXT,
                answers=(
                    Answer(200, PrintJob, "The cancelled job."),
                    Answer(
                        202,
                        PrintJob,
                        "The job is stopping after the label being sent; it is still `printing`.",
                    ),
                ),
                errors=(409,),
            ),
        ),
    )

    @classmethod
    def needed_permission(cls, method: str) -> str | None:
        """Reading needs authentication; cancelling needs the role that may change machines."""
        return "change" if method == "DELETE" else None

    async def get(self) -> web.StreamResponse:
        """The job."""
        runner = self.request.app[JOBS]
        row = await runner.jobs.get(self.request.match_info["job"])
        if row is None:
            raise NotFound
        return drf_json(job_json(row, runner.live_progress(row.pk)))

    async def delete(self) -> web.StreamResponse:
        """Cancel: 200 with the cancelled job; 202 while its last label is still being sent."""
        pk = self.request.match_info["job"]
        runner = self.request.app[JOBS]
        try:
            cancelled = await runner.cancel(pk)
        except KeyError as err:
            raise NotFound from err
        except JobNotCancellable as err:
            raise Conflict("The job has finished; it cannot be cancelled.") from err
        row = cancelled.job
        if cancelled.stopped:
            return drf_json(job_json(row))
        return drf_json(job_json(row, runner.live_progress(row.pk)), status=202)


def print_options(machine: Machine) -> OptionsForm:
    """The print options of a machine's label-printer driver."""
    driver = machine.driver
    if not isinstance(driver, LabelPrinterDriver):
        raise TypeError(f"machine {machine.name!r} has no label-printer driver")
    return options_form(driver.print_options())


def _part_type(part: web.FileField) -> str:
    declared = (part.content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared != RAW_CONTENT_TYPE:
        return declared
    suffix = "." + part.filename.rsplit(".", 1)[-1].lower() if "." in part.filename else ""
    return _EXTENSION_TYPES.get(suffix, RAW_CONTENT_TYPE)


def _machine_filter(value: str | None) -> str | None:
    """The `machine` filter as stored (a lower-case, dashed UUID); any other text is a 400."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationFailed({"machine": ["Enter a valid UUID."]}) from None
