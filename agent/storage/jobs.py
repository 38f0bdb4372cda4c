"""Print jobs in SQLite: every state change is one committed transaction on the writer thread."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agent.storage.database import Database
from agent.storage.errors import DuplicateIdempotencyKey, violates_unique

QUEUED = "queued"
PRINTING = "printing"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATUSES = (QUEUED, PRINTING, COMPLETE, FAILED, CANCELLED)
FINISHED_STATUSES = (COMPLETE, FAILED, CANCELLED)
# Old jobs are deleted this many at a time, so other calls (a print, an API request) wait for one
# short transaction at most, not for the whole backlog.
PRUNE_BATCH = 100
INTERRUPTED_TWICE = (
    "The agent stopped twice while sending the same label of this job; it is not sent a third "
    "time so that no label prints more than twice"
)
# A job keeps its last few errors, and counts them all: a printer that is away for a day must not
# grow a job by one entry per retry.
KEPT_ERRORS = 5

_COLUMNS = (
    "pk, seq, machine, status, copies, pages, progress, attempts, interruptions, errors, warnings, "
    "content_type, size, options, idempotency_key, created, started, finished, expires"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    pk: str
    seq: int
    machine: str
    status: str
    copies: int
    pages: int | None
    progress: int
    attempts: int
    interruptions: int
    errors: tuple[str, ...]
    error_count: int
    warnings: tuple[str, ...]
    content_type: str
    size: int
    options: dict[str, Any]
    idempotency_key: str | None
    created: str
    started: str | None
    finished: str | None
    expires: str

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> JobRow:
        """Build from a SELECT of `_COLUMNS`."""
        errors, error_count = _decode_errors(r[9])
        return cls(
            pk=r[0],
            seq=r[1],
            machine=r[2],
            status=r[3],
            copies=r[4],
            pages=r[5],
            progress=r[6],
            attempts=r[7],
            interruptions=r[8],
            errors=errors,
            error_count=error_count,
            warnings=tuple(json.loads(r[10])),
            content_type=r[11],
            size=r[12],
            options=json.loads(r[13]),
            idempotency_key=r[14],
            created=r[15],
            started=r[16],
            finished=r[17],
            expires=r[18],
        )

    @property
    def labels(self) -> int | None:
        """Labels the job prints in all: pages x copies (unknown for raw jobs)."""
        return None if self.pages is None else self.pages * self.copies


class JobStore:
    """The job aggregate (jobs with their documents) over the agent's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def insert(
        self, job: JobRow, document: bytes, on_late: Callable[[JobRow], None] | None = None
    ) -> JobRow:
        """Store a new job and its document in one transaction; returns it with its sequence number.

        Raises DuplicateIdempotencyKey when the machine already has a job with this key.
        `on_late(row)` runs if the insert commits after this call gave up waiting (StoreError).
        """

        def insert(conn: sqlite3.Connection) -> JobRow:
            seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM job").fetchone()[0])
            row = replace(job, seq=seq)
            try:
                conn.execute(
                    f"INSERT INTO job ({_COLUMNS}) VALUES ({', '.join('?' * 19)})",  # noqa: S608 - fixed names
                    _values(row),
                )
            except sqlite3.IntegrityError as err:
                key = row.idempotency_key
                if key is not None and violates_unique(err, "job.machine, job.idempotency_key"):
                    raise DuplicateIdempotencyKey(key) from err
                raise
            conn.execute("INSERT INTO job_document (job, data) VALUES (?, ?)", (row.pk, document))
            return row

        return await self.database.write(insert, on_late=on_late)

    async def get(self, pk: str) -> JobRow | None:
        """One job by pk."""
        return await self.database.read(lambda conn: _one(conn, "WHERE pk = ?", (pk,)))

    async def get_by_key(self, machine: str, key: str) -> JobRow | None:
        """The job a machine accepted under an idempotency key."""
        return await self.database.read(
            lambda conn: _one(conn, "WHERE machine = ? AND idempotency_key = ?", (machine, key))
        )

    async def find(self, machine: str | None = None, status: str | None = None) -> list[JobRow]:
        """Jobs, newest first, optionally of one machine and/or status."""
        where, params = _filter(machine, status)
        sql = f"SELECT {_COLUMNS} FROM job {where} ORDER BY seq DESC"  # noqa: S608 - fixed names
        return await self.database.read(
            lambda conn: [JobRow.from_row(r) for r in conn.execute(sql, params)]
        )

    async def page(
        self, machine: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[int, list[JobRow]]:
        """(how many jobs match, the `limit` newest after skipping `offset`), both through indexes."""
        where, params = _filter(machine, status)
        # job_count holds one row per (machine, status), kept by triggers: no scan of the jobs.
        count_sql = f"SELECT COALESCE(sum(n), 0) FROM job_count {where}"  # noqa: S608
        rows_sql = f"SELECT {_COLUMNS} FROM job {where} ORDER BY seq DESC LIMIT ? OFFSET ?"  # noqa: S608

        def query(conn: sqlite3.Connection) -> tuple[int, list[JobRow]]:
            count = int(conn.execute(count_sql, params).fetchone()[0])
            rows = conn.execute(rows_sql, (*params, limit, offset))
            return count, [JobRow.from_row(r) for r in rows]

        return await self.database.read(query)

    async def pending(self) -> list[JobRow]:
        """Queued jobs of every machine, oldest first (loaded by the workers at start)."""
        sql = f"SELECT {_COLUMNS} FROM job WHERE status = ? ORDER BY seq"  # noqa: S608
        return await self.database.read(
            lambda conn: [JobRow.from_row(r) for r in conn.execute(sql, (QUEUED,))]
        )

    async def recover_interrupted(self, now: str | None = None) -> tuple[int, int]:
        """After a crash: jobs caught printing go back to the queue, resuming at their progress.

        The label a job was sending may have printed; sent again, it prints twice. A job caught
        again on the same label (no label confirmed since the last stop) fails instead, finished
        `now`, so that no label prints a third time. An attempt that had written nothing to the
        printer (still connecting, still rendering) cannot have printed: it is not counted.
        Returns (requeued, failed).
        """
        finished = now or dt.datetime.now(dt.UTC).isoformat()

        def recover(conn: sqlite3.Connection) -> tuple[int, int]:
            failed = conn.execute(
                "UPDATE job SET status = ?, finished = ?, errors = json_insert(errors, '$[#]', ?) "
                "WHERE status = ? AND written = 1 AND interruptions >= 1 "
                "AND COALESCE(interrupted_at, progress) = progress",
                (FAILED, finished, INTERRUPTED_TWICE, PRINTING),
            ).rowcount
            requeued = conn.execute(
                "UPDATE job SET status = ?, interruptions = interruptions + written, "
                "interrupted_at = CASE written WHEN 1 THEN progress ELSE interrupted_at END, "
                "written = 0 WHERE status = ?",
                (QUEUED, PRINTING),
            ).rowcount
            return requeued, failed

        return await self.database.write(recover)

    async def document(self, pk: str) -> bytes:
        """The document of a job."""

        def read(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM job_document WHERE job = ?", (pk,)).fetchone()
            return bytes(row[0]) if row is not None else b""

        return await self.database.read(read)

    async def mark_printing(self, pk: str, started: str) -> bool:
        """Committed before the first byte goes to the printer; False if it is no longer queued."""

        def mark(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE job SET status = ?, attempts = attempts + 1, started = COALESCE(started, ?), "
                "written = 0 WHERE pk = ? AND status = ?",
                (PRINTING, started, pk, QUEUED),
            )
            return cursor.rowcount == 1

        # Not fsynced on its own: lost in a power cut, the job is still queued and sent once more,
        # which is what a job caught `printing` gets too. The next durable commit covers it.
        return await self.database.write(mark, durable=False)

    async def mark_written(self, pk: str) -> None:
        """The attempt under way wrote its first bytes to the printer.

        Not fsynced on its own: lost in a power cut, the attempt is not counted as interrupted
        and the job is sent once more, as after any crash.
        """
        await self._execute(
            "UPDATE job SET written = 1 WHERE pk = ? AND status = ?", (pk, PRINTING), durable=False
        )

    async def save_progress(self, pk: str, progress: int) -> None:
        """Labels confirmed so far (a resumed job skips them)."""
        await self._execute(
            "UPDATE job SET progress = ? WHERE pk = ?", (progress, pk), durable=False
        )

    async def requeue(self, pk: str, progress: int, error: str | None) -> None:
        """Back to the queue with the progress made (and why, if the attempt failed)."""

        def requeue(conn: sqlite3.Connection) -> None:
            # A job cancelled meanwhile stays cancelled.
            updated = conn.execute(
                "UPDATE job SET status = ?, progress = ? WHERE pk = ? AND status IN (?, ?)",
                (QUEUED, progress, pk, QUEUED, PRINTING),
            ).rowcount
            if updated and error is not None:
                _append_error(conn, pk, error)

        # Lost in a power cut, the job is still `printing` and is requeued at the next start.
        await self.database.write(requeue, durable=False)

    async def finish(
        self, pk: str, status: str, finished: str, progress: int, error: str | None
    ) -> None:
        """Record the end of a job: complete, failed or cancelled."""

        def finish(conn: sqlite3.Connection) -> None:
            # Only an unfinished job ends: a job cancelled meanwhile stays cancelled.
            updated = conn.execute(
                "UPDATE job SET status = ?, finished = ?, progress = ? "
                "WHERE pk = ? AND status IN (?, ?)",
                (status, finished, progress, pk, QUEUED, PRINTING),
            ).rowcount
            if updated and error is not None:
                _append_error(conn, pk, error)

        await self.database.write(finish)

    async def shift_expiry(self, seconds: float) -> int:
        """Move the expiry of unfinished jobs by `seconds` (the wall clock stepped); how many."""

        def shift(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT pk, expires FROM job WHERE status IN (?, ?)", (QUEUED, PRINTING)
            ).fetchall()
            step = dt.timedelta(seconds=seconds)
            for pk, expires in rows:
                conn.execute(
                    "UPDATE job SET expires = ? WHERE pk = ?",
                    ((dt.datetime.fromisoformat(expires) + step).isoformat(), pk),
                )
            return len(rows)

        return await self.database.write(shift)

    async def cancel(self, pk: str, finished: str) -> bool:
        """Cancel a job that has not started printing; False if it is past that point."""

        def cancel(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE job SET status = ?, finished = ? WHERE pk = ? AND status = ?",
                (CANCELLED, finished, pk, QUEUED),
            )
            return cursor.rowcount == 1

        return await self.database.write(cancel)

    async def prune(self, finished_before: str, batch: int = PRUNE_BATCH) -> int:
        """Delete up to `batch` finished jobs (and documents) older than the retention.

        Returns how many; call again while it returns `batch`.
        """
        placeholders = ", ".join("?" * len(FINISHED_STATUSES))
        sql = (
            "DELETE FROM job WHERE pk IN (SELECT pk FROM job "  # noqa: S608 - fixed names
            f"WHERE status IN ({placeholders}) AND finished < ? LIMIT ?)"
        )
        return await self.database.write(
            lambda conn: conn.execute(sql, (*FINISHED_STATUSES, finished_before, batch)).rowcount,
            durable=False,
        )

    async def _execute(self, sql: str, params: tuple[Any, ...], *, durable: bool = True) -> None:
        await self.database.write(lambda conn: conn.execute(sql, params), durable=durable)


def _filter(machine: str | None, status: str | None) -> tuple[str, list[str]]:
    """A WHERE clause (or "") and its parameters for jobs of one machine and/or status."""
    clauses, params = [], []
    if machine is not None:
        clauses.append("machine = ?")
        params.append(machine)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _one(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> JobRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM job {where}", params).fetchone()  # noqa: S608
    return JobRow.from_row(row) if row is not None else None


def _values(row: JobRow) -> tuple[Any, ...]:
    return (
        row.pk,
        row.seq,
        row.machine,
        row.status,
        row.copies,
        row.pages,
        row.progress,
        row.attempts,
        row.interruptions,
        _encode_errors(row.errors, row.error_count),
        json.dumps(list(row.warnings)),
        row.content_type,
        row.size,
        json.dumps(row.options),
        row.idempotency_key,
        row.created,
        row.started,
        row.finished,
        row.expires,
    )


def _decode_errors(text: str) -> tuple[tuple[str, ...], int]:
    """The last `KEPT_ERRORS` errors and how many there were in all.

    Stored as a JSON list of the kept errors, oldest first, led by the number of older errors
    dropped when there are any (a list, so SQL can still append with `json_insert`).
    """
    items = json.loads(text)
    dropped = items[0] if items and isinstance(items[0], int) else 0
    errors = [item for item in items if isinstance(item, str)]
    return tuple(errors[-KEPT_ERRORS:]), dropped + len(errors)


def _encode_errors(errors: tuple[str, ...], count: int) -> str:
    kept = list(errors[-KEPT_ERRORS:])
    dropped = count - len(kept)
    return json.dumps([dropped, *kept] if dropped > 0 else kept)


def _append_error(conn: sqlite3.Connection, pk: str, error: str) -> None:
    row = conn.execute("SELECT errors FROM job WHERE pk = ?", (pk,)).fetchone()
    if row is None:
        return
    errors, count = _decode_errors(row[0])
    conn.execute(
        "UPDATE job SET errors = ? WHERE pk = ?",
        (_encode_errors((*errors, error), count + 1), pk),
    )
