"""What the central link keeps in SQLite: central jobs, the outbox of state reports, its last state.

A central job's state report is worked out from its local jobs (one per document, found by the
idempotency key `central:<id>:<index>`) in the same transaction that queues it in the outbox, so
a report is queued once per change of state and never before the job was accepted.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from agent.storage.database import Database

FINAL_STATES = frozenset({"done", "failed", "cancelled"})
# Outbox entries read per round of delivery.
OUTBOX_BATCH = 50


def idempotency_key(job_id: str, index: int) -> str:
    """The local job's key of one document of a central job."""
    return f"central:{job_id}:{index}"


@dataclass(frozen=True, slots=True)
class CentralJob:
    id: str
    machine: str
    documents: int
    copies: int
    accepted: bool
    reported: str


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    job: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """The link's last state as the daemon recorded it (what `central status` shows)."""

    url: str
    agent: str
    state: str
    since: str
    last_contact: str | None
    last_error: str


class CentralStore:
    """The central link's tables over the agent's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # tokens obtained with a username and password

    async def token(self, url: str, username: str) -> str | None:
        """The token obtained earlier for this server and user."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT token FROM central_token WHERE url = ? AND username = ?", (url, username)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.database.read(read)

    async def save_token(self, url: str, username: str, token: str, now: str) -> None:
        """Keep an obtained token for the next start."""
        await self.database.write(
            lambda conn: conn.execute(
                "INSERT INTO central_token (url, username, token, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (url, username) DO UPDATE SET token = excluded.token, "
                "created = excluded.created",
                (url, username, token, now),
            )
        )

    async def forget_token(self, url: str, username: str) -> None:
        """Drop a token the server no longer accepts."""
        await self.database.write(
            lambda conn: conn.execute(
                "DELETE FROM central_token WHERE url = ? AND username = ?", (url, username)
            )
        )

    # central jobs

    async def job(self, job_id: str) -> CentralJob | None:
        """The central job as stored, if it was taken before."""
        return await self.database.read(lambda conn: _job(conn, job_id))

    async def begin(self, job_id: str, machine: str, documents: int, copies: int, now: str) -> None:
        """Remember a central job before its documents are stored (kept as it is if known)."""
        await self.database.write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO central_job (id, machine, documents, copies, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_id, machine, documents, copies, now),
            )
        )

    async def accept(self, job_id: str, now: str) -> None:
        """All documents are stored: queue `accepted`, then whatever state the job has reached."""

        def accept(conn: sqlite3.Connection) -> None:
            job = _job(conn, job_id)
            if job is None or job.accepted:
                return
            conn.execute("UPDATE central_job SET accepted = 1 WHERE id = ?", (job_id,))
            _queue(
                conn, job_id, _body("accepted", 0, _labels(_local_jobs(conn, job), job)[1], ""), now
            )
            _refresh(conn, job_id, now)

        await self.database.write(accept)

    async def fail(
        self, job_id: str, machine: str, documents: int, copies: int, message: str, now: str
    ) -> None:
        """A job that cannot be printed here: remember it as failed and queue the report."""

        def fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO central_job (id, machine, documents, copies, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_id, machine, documents, copies, now),
            )
            job = _job(conn, job_id)
            if job is None or job.reported in FINAL_STATES:
                return
            conn.execute(
                "UPDATE central_job SET accepted = 1, reported = 'failed' WHERE id = ?", (job_id,)
            )
            _queue(
                conn, job_id, {"state": "failed", "printed": 0, "total": 0, "message": message}, now
            )

        await self.database.write(fail)

    async def refresh(self, job_id: str, now: str) -> None:
        """Queue a report if the central job's local jobs moved it to another state."""
        await self.database.write(lambda conn: _refresh(conn, job_id, now))

    async def unfinished(self) -> list[str]:
        """Accepted central jobs whose final state is not queued yet (checked again at start)."""

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM central_job WHERE accepted = 1 AND reported NOT IN "
                "('done', 'failed', 'cancelled') ORDER BY created"
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self.database.read(read)

    async def prune(self) -> int:
        """Forget finished central jobs whose local jobs the queue has deleted (its retention)."""

        def prune(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM central_job WHERE reported IN ('done', 'failed', 'cancelled') "
                "AND NOT EXISTS (SELECT 1 FROM central_outbox WHERE central_outbox.job = "
                "central_job.id) AND NOT EXISTS (SELECT 1 FROM job WHERE job.machine = "
                "central_job.machine AND job.idempotency_key >= 'central:' || central_job.id || ':' "
                "AND job.idempotency_key < 'central:' || central_job.id || ';')"
            ).rowcount

        return await self.database.write(prune)

    # the outbox

    async def outbox(self, limit: int = OUTBOX_BATCH) -> list[OutboxEntry]:
        """The oldest reports waiting for the server, oldest first."""

        def read(conn: sqlite3.Connection) -> list[OutboxEntry]:
            rows = conn.execute(
                "SELECT seq, job, body FROM central_outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [OutboxEntry(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

        return await self.database.read(read)

    async def delivered(self, seq: int) -> None:
        """The server has this report (or refused it for good): it leaves the outbox."""
        await self.database.write(
            lambda conn: conn.execute("DELETE FROM central_outbox WHERE seq = ?", (seq,))
        )

    async def pending(self) -> int:
        """How many reports wait in the outbox."""
        return await self.database.read(
            lambda conn: int(conn.execute("SELECT count(*) FROM central_outbox").fetchone()[0])
        )

    # the link's state

    async def save_link(self, record: LinkRecord) -> None:
        """Record the link's state (not durable: losing the last one in a power cut is harmless)."""
        await self.database.write(
            lambda conn: conn.execute(
                "INSERT INTO central_link (id, url, agent, state, since, last_contact, last_error) "
                "VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
                "agent = excluded.agent, state = excluded.state, since = excluded.since, "
                "last_contact = excluded.last_contact, last_error = excluded.last_error",
                (
                    record.url,
                    record.agent,
                    record.state,
                    record.since,
                    record.last_contact,
                    record.last_error,
                ),
            ),
            durable=False,
        )

    async def link(self) -> LinkRecord | None:
        """The link's state as last recorded, if the link ever ran."""

        def read(conn: sqlite3.Connection) -> LinkRecord | None:
            row = conn.execute(
                "SELECT url, agent, state, since, last_contact, last_error FROM central_link"
            ).fetchone()
            return None if row is None else LinkRecord(*row)

        return await self.database.read(read)


def _job(conn: sqlite3.Connection, job_id: str) -> CentralJob | None:
    row = conn.execute(
        "SELECT id, machine, documents, copies, accepted, reported FROM central_job WHERE id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return CentralJob(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


def _queue(conn: sqlite3.Connection, job_id: str, body: dict[str, Any], now: str) -> None:
    conn.execute(
        "INSERT INTO central_outbox (job, body, created) VALUES (?, ?, ?)",
        (job_id, json.dumps(body), now),
    )


def _refresh(conn: sqlite3.Connection, job_id: str, now: str) -> None:
    job = _job(conn, job_id)
    if job is None or not job.accepted or job.reported in FINAL_STATES:
        return
    body = _state_of(conn, job)
    if body is None:
        return
    # `printing:<labels>`: each step of progress once; a final state once.
    state = str(body["state"])
    reported = state if state in FINAL_STATES else f"{state}:{body['printed']}"
    if reported == job.reported:
        return
    conn.execute("UPDATE central_job SET reported = ? WHERE id = ?", (reported, job_id))
    _queue(conn, job_id, body, now)


def _state_of(conn: sqlite3.Connection, job: CentralJob) -> dict[str, Any] | None:
    """The central state the local jobs add up to; None while nothing has started."""
    rows = _local_jobs(conn, job)
    printed, total = _labels(rows, job)
    statuses = [str(row[0]) for row in rows]
    finished = {"complete", "failed", "cancelled"}
    if len(rows) >= job.documents and all(status in finished for status in statuses):
        if "failed" in statuses:
            failed = next(row for row in rows if row[0] == "failed")
            return _body("failed", printed, total, _last_error(str(failed[4])))
        if "cancelled" in statuses:
            return _body("cancelled", printed, total, "Cancelled on the agent.")
        return _body("done", printed, total, "")
    if any(status != "queued" for status in statuses) or printed:
        return _body("printing", printed, total, "")
    return None


def _local_jobs(conn: sqlite3.Connection, job: CentralJob) -> list[Any]:
    """The local jobs of a central job's documents: status, progress, pages, copies, errors."""
    return conn.execute(
        "SELECT status, progress, pages, copies, errors FROM job WHERE machine = ? AND "
        "idempotency_key >= ? AND idempotency_key < ? ORDER BY idempotency_key",
        (job.machine, f"central:{job.id}:", f"central:{job.id};"),
    ).fetchall()


def _labels(rows: list[Any], job: CentralJob) -> tuple[int, int]:
    """Labels printed so far, and in all (a document not stored yet counts one page)."""
    printed = sum(int(row[1]) for row in rows)
    total = sum(int(row[2] or 1) * int(row[3]) for row in rows)
    return printed, total + max(job.documents - len(rows), 0) * job.copies


def _body(state: str, printed: int, total: int, message: str) -> dict[str, Any]:
    return {"state": state, "printed": printed, "total": total, "message": message}


def _last_error(errors_json: str) -> str:
    errors = [item for item in json.loads(errors_json) if isinstance(item, str)]
    return errors[-1] if errors else "The print failed on the agent."
