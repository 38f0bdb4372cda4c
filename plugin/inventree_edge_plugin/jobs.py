"""Print jobs: creation (once per print), delivery to agents, state reports, expiry, cleanup."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import compat, config
from .models import EdgeAgent, EdgeDocument, EdgeJob, EdgePrinter

logger = logging.getLogger("inventree_edge_plugin")

MAX_JOBS_PER_ANSWER = 20
NOTIFICATION_CATEGORY = "inventree_edge.printing_failed"
# States ordered by progress: a report never moves a job backwards (outbox reordering).
_RANK = {
    EdgeJob.PENDING: 0,
    EdgeJob.FETCHED: 1,
    EdgeJob.ACCEPTED: 2,
    EdgeJob.PRINTING: 3,
}
REPORTABLE = ("accepted", "printing", "done", "failed", "cancelled")


def serialize(job: EdgeJob) -> dict:
    documents = list(job.documents.order_by("index").values_list("index", "size"))
    return {
        "id": str(job.uid),
        "printer": job.printer.key,
        "created": job.created.isoformat(),
        "documents": [{"index": index, "size": size} for index, size in documents],
        "width_mm": job.width_mm,
        "height_mm": job.height_mm,
        "copies": job.copies,
        "options": job.options,
        "user": job.username,
        "template": job.template,
    }


def state_body(job: EdgeJob) -> dict:
    return {
        "id": str(job.uid),
        "state": job.state,
        "printed": job.printed,
        "total": job.total,
        "message": job.message,
    }


def create(
    printer: EdgePrinter,
    unique_key: str | None,
    documents: list[bytes],
    *,
    width_mm: float,
    height_mm: float,
    copies: int,
    options: dict,
    user,
    template: str,
    data_output: int | None,
    answered: bool,
) -> EdgeJob:
    """Store one job with all its documents; a second call with the same key returns the first."""
    if unique_key is not None:
        existing = EdgeJob.objects.filter(unique_key=unique_key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            job = EdgeJob.objects.create(
                printer=printer,
                unique_key=unique_key,
                width_mm=float(width_mm),
                height_mm=float(height_mm),
                copies=copies,
                options=options,
                user=user if getattr(user, "pk", None) else None,
                username=getattr(user, "username", "") or "",
                template=template[:250],
                data_output=data_output,
                total=len(documents) * copies,
                answered=answered,
            )
            EdgeDocument.objects.bulk_create(
                EdgeDocument(job=job, index=i, data=data, size=len(data))
                for i, data in enumerate(documents)
            )
    except IntegrityError:
        # A concurrent retry of the same print won the race.
        return EdgeJob.objects.get(unique_key=unique_key)
    return job


def open_jobs(agent: EdgeAgent) -> list[EdgeJob]:
    """The agent's not yet accepted jobs, oldest first; pending ones become fetched."""
    jobs = list(
        EdgeJob.objects.filter(printer__agent=agent, state__in=EdgeJob.UNACCEPTED)
        .select_related("printer")
        .order_by("created", "pk")[:MAX_JOBS_PER_ANSWER]
    )
    pending = [job.pk for job in jobs if job.state == EdgeJob.PENDING]
    if pending:
        # Conditional UPDATE: a job an agent already moved on is left alone.
        EdgeJob.objects.filter(pk__in=pending, state=EdgeJob.PENDING).update(
            state=EdgeJob.FETCHED, updated=timezone.now()
        )
    return jobs


def wait_for_jobs(agent: EdgeAgent, wait: float) -> list[EdgeJob]:
    """Long poll: short sleeps and a cheap EXISTS query, bounded by `wait` seconds."""
    deadline = time.monotonic() + wait
    unaccepted = EdgeJob.objects.filter(printer__agent=agent, state__in=EdgeJob.UNACCEPTED)
    while True:
        if unaccepted.exists():
            return open_jobs(agent)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        time.sleep(min(0.25, remaining))


def _next_state(job: EdgeJob, state: str) -> str:
    if job.state == EdgeJob.EXPIRED or state in EdgeJob.FINAL:
        return state
    if _RANK.get(state, 0) > _RANK.get(job.state, 0):
        return state
    return job.state


def apply_report(job: EdgeJob, state: str, printed: int, total: int, message: str):
    """Apply one agent report; returns (HTTP status, body).

    A compare-and-set UPDATE instead of a locking transaction: on SQLite a transaction that
    reads before it writes fails at once ("database is locked") when another writer is active.
    """
    for _attempt in range(20):
        job.refresh_from_db()
        if job.state in EdgeJob.FINAL:
            if state == job.state:
                return 200, state_body(job)
            return 409, {
                "detail": f"Job {job.uid} is already {job.state}; drop this report.",
                "code": "conflict",
                **state_body(job),
            }
        changes = {
            "state": _next_state(job, state),
            "printed": max(job.printed, printed),
            "total": total or job.total,
            "message": message[:2000] if message else job.message,
            "updated": timezone.now(),
        }
        if EdgeJob.objects.filter(pk=job.pk, state=job.state, printed=job.printed).update(
            **changes
        ):
            break
    else:
        raise RuntimeError(f"job {job.uid} changed 20 times while a report was applied")
    job.refresh_from_db()
    if job.state in (EdgeJob.FAILED, EdgeJob.CANCELLED):
        fail_late(job)
    return 200, state_body(job)


def failure_text(job: EdgeJob) -> str:
    printer = str(job.printer)
    if job.state == EdgeJob.EXPIRED:
        return f"No agent accepted the job for {printer} in time; print it again."
    if job.state == EdgeJob.CANCELLED:
        return f"The print on {printer} was cancelled. {job.message}".strip()
    return f"Printing on {printer} failed: {job.message or 'no reason given'}"


def fail_late(job: EdgeJob) -> None:
    """A failure after InvenTree answered: tell the user who printed, once."""
    if not job.answered:
        return  # the driver is still waiting and shows the failure in the print dialog
    if not EdgeJob.objects.filter(pk=job.pk, notified=False).update(notified=True):
        return
    text = failure_text(job)
    mark_data_output_failed(job, text)
    if job.user_id is not None:
        notify(job, text)


def mark_data_output_failed(job: EdgeJob, text: str) -> None:
    if job.data_output is None or not compat.has_data_output():
        return
    from common.models import DataOutput

    output = DataOutput.objects.filter(pk=job.data_output).first()
    if output is not None:
        output.mark_failure(error=text)


def notify(job: EdgeJob, text: str) -> None:
    from common.notifications import trigger_notification

    context = {"name": "Label printing failed", "message": text}
    try:
        from plugin.builtin.integration.core_notifications import InvenTreeUINotifications
    except ImportError:
        # InvenTree 303: the job itself is the notification's target.
        from common.notifications import UIMessageNotification

        trigger_notification(
            job,
            NOTIFICATION_CATEGORY,
            targets=[job.user],
            context=context,
            delivery_methods={UIMessageNotification},
        )
        return
    # Current InvenTree only notifies users who may view the target object; without one the
    # plugin is the target and these tables stay closed to InvenTree's permission system.
    trigger_notification(
        None,
        NOTIFICATION_CATEGORY,
        notification_uid=job.pk,
        targets=[job.user],
        context=context,
        delivery_methods={InvenTreeUINotifications},
    )


_housekeeping_lock = threading.Lock()
_last_housekeeping = [0.0]
HOUSEKEEPING_SECONDS = 60.0


def housekeeping(force: bool = False) -> None:
    """Expire unaccepted jobs and delete old ones; at most once a minute per process."""
    now_mono = time.monotonic()
    with _housekeeping_lock:
        if not force and now_mono - _last_housekeeping[0] < HOUSEKEEPING_SECONDS:
            return
        _last_housekeeping[0] = now_mono
    now = timezone.now()
    expiry = now - timedelta(hours=config.get("JOB_EXPIRY_HOURS"))
    for job in EdgeJob.objects.filter(state__in=EdgeJob.UNACCEPTED, created__lt=expiry):
        if EdgeJob.objects.filter(pk=job.pk, state__in=EdgeJob.UNACCEPTED).update(
            state=EdgeJob.EXPIRED, answered=True, updated=now
        ):
            job.refresh_from_db()
            fail_late(job)
    retention = now - timedelta(days=config.get("JOB_RETENTION_DAYS"))
    EdgeJob.objects.filter(
        state__in=(*EdgeJob.FINAL, EdgeJob.EXPIRED), updated__lt=retention
    ).delete()
