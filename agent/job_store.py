"""Print jobs in SQLite: every state change is one committed transaction on the store thread."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from agent.store import Store

QUEUED = "queued"
PRINTING = "printing"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATUSES = (QUEUED, PRINTING, COMPLETE, FAILED, CANCELLED)
FINISHED_STATUSES = (COMPLETE, FAILED, CANCELLED)
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
    """Job persistence over the agent's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def insert(self, job: JobRow, document: bytes) -> JobRow:
        """Store a new job and its document in one transaction; returns it with its sequence number.

        Raises sqlite3.IntegrityError when the machine already has a job with this idempotency key.
        """

        def insert(conn: sqlite3.Connection) -> JobRow:
            seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM job").fetchone()[0])
            row = replace(job, seq=seq)
            conn.execute(
                f"INSERT INTO job ({_COLUMNS}) VALUES ({', '.join('?' * 19)})",  # noqa: S608 - fixed names
                _values(row),
            )
            conn.execute("INSERT INTO job_document (job, data) VALUES (?, ?)", (row.pk, document))
            return row

        return await self.store.call(insert)

    async def get(self, pk: str) -> JobRow | None:
        """One job by pk."""
        return await self.store.call(lambda conn: _one(conn, "WHERE pk = ?", (pk,)))

    async def get_by_key(self, machine: str, key: str) -> JobRow | None:
        """The job a machine accepted under an idempotency key."""
        return await self.store.call(
            lambda conn: _one(conn, "WHERE machine = ? AND idempotency_key = ?", (machine, key))
        )

    async def find(self, machine: str | None = None, status: str | None = None) -> list[JobRow]:
        """Jobs, newest first, optionally of one machine and/or status."""
        clauses, params = [], []
        if machine is not None:
            clauses.append("machine = ?")
            params.append(machine)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM job {where} ORDER BY seq DESC"  # noqa: S608 - fixed names
        return await self.store.call(
            lambda conn: [JobRow.from_row(r) for r in conn.execute(sql, params)]
        )

    async def pending(self) -> list[JobRow]:
        """Queued jobs of every machine, oldest first (loaded by the workers at start)."""
        sql = f"SELECT {_COLUMNS} FROM job WHERE status = ? ORDER BY seq"  # noqa: S608
        return await self.store.call(
            lambda conn: [JobRow.from_row(r) for r in conn.execute(sql, (QUEUED,))]
        )

    async def recover_interrupted(self) -> tuple[int, int]:
        """After a crash: jobs caught printing go back to the queue once; twice interrupted, fail.

        Returns (requeued, failed).
        """

        def recover(conn: sqlite3.Connection) -> tuple[int, int]:
            failed = conn.execute(
                "UPDATE job SET status = ?, errors = json_insert(errors, '$[#]', ?) "
                "WHERE status = ? AND interruptions >= 1",
                (
                    FAILED,
                    "The agent stopped twice while sending this job; it is not sent a third time "
                    "so that no label prints more than twice",
                    PRINTING,
                ),
            ).rowcount
            requeued = conn.execute(
                "UPDATE job SET status = ?, interruptions = interruptions + 1 WHERE status = ?",
                (QUEUED, PRINTING),
            ).rowcount
            return requeued, failed

        return await self.store.call(recover)

    async def document(self, pk: str) -> bytes:
        """The document of a job."""

        def read(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM job_document WHERE job = ?", (pk,)).fetchone()
            return bytes(row[0]) if row is not None else b""

        return await self.store.call(read)

    async def mark_printing(self, pk: str, started: str) -> bool:
        """Committed before the first byte goes to the printer; False if it is no longer queued."""

        def mark(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE job SET status = ?, attempts = attempts + 1, started = COALESCE(started, ?) "
                "WHERE pk = ? AND status = ?",
                (PRINTING, started, pk, QUEUED),
            )
            return cursor.rowcount == 1

        return await self.store.call(mark)

    async def save_progress(self, pk: str, progress: int) -> None:
        """Labels confirmed so far (a resumed job skips them)."""
        await self._execute("UPDATE job SET progress = ? WHERE pk = ?", (progress, pk))

    async def requeue(self, pk: str, progress: int, error: str | None) -> None:
        """Back to the queue with the progress made (and why, if the attempt failed)."""

        def requeue(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE job SET status = ?, progress = ? WHERE pk = ?", (QUEUED, progress, pk)
            )
            if error is not None:
                _append_error(conn, pk, error)

        await self.store.call(requeue)

    async def finish(
        self, pk: str, status: str, finished: str, progress: int, error: str | None
    ) -> None:
        """Record the end of a job: complete, failed or cancelled."""

        def finish(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE job SET status = ?, finished = ?, progress = ? WHERE pk = ?",
                (status, finished, progress, pk),
            )
            if error is not None:
                _append_error(conn, pk, error)

        await self.store.call(finish)

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

        return await self.store.call(shift)

    async def cancel(self, pk: str, finished: str) -> bool:
        """Cancel a job that has not started printing; False if it is past that point."""

        def cancel(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE job SET status = ?, finished = ? WHERE pk = ? AND status = ?",
                (CANCELLED, finished, pk, QUEUED),
            )
            return cursor.rowcount == 1

        return await self.store.call(cancel)

    async def prune(self, finished_before: str) -> int:
        """Delete finished jobs (and documents) older than the retention; returns how many."""
        placeholders = ", ".join("?" * len(FINISHED_STATUSES))
        sql = f"DELETE FROM job WHERE status IN ({placeholders}) AND finished < ?"  # noqa: S608
        return await self.store.call(
            lambda conn: conn.execute(sql, (*FINISHED_STATUSES, finished_before)).rowcount
        )

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        await self.store.call(lambda conn: conn.execute(sql, params))


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
