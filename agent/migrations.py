"""The SQLite schema as numbered forward migrations; `PRAGMA user_version` records the last applied."""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: machines, their settings and last known state; users, API tokens and sessions.
    """
    CREATE TABLE machine (
        pk TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        machine_type TEXT NOT NULL,
        driver TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE machine_setting (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        machine TEXT NOT NULL REFERENCES machine(pk) ON DELETE CASCADE,
        config_type TEXT NOT NULL CHECK (config_type IN ('M', 'D')),
        key TEXT NOT NULL,
        value TEXT NOT NULL DEFAULT '',
        UNIQUE (machine, config_type, key)
    );
    CREATE TABLE machine_state (
        machine TEXT PRIMARY KEY REFERENCES machine(pk) ON DELETE CASCADE,
        status INTEGER NOT NULL,
        status_text TEXT NOT NULL DEFAULT '',
        properties TEXT NOT NULL DEFAULT '[]',
        read_at TEXT NOT NULL
    );
    CREATE TABLE user (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        is_superuser INTEGER NOT NULL DEFAULT 0,
        is_staff INTEGER NOT NULL DEFAULT 0,
        is_active INTEGER NOT NULL DEFAULT 1,
        role TEXT NOT NULL DEFAULT 'view',
        first_name TEXT NOT NULL DEFAULT '',
        last_name TEXT NOT NULL DEFAULT '',
        email TEXT NOT NULL DEFAULT '',
        date_joined TEXT NOT NULL
    );
    CREATE TABLE api_token (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        user INTEGER NOT NULL REFERENCES user(pk) ON DELETE CASCADE,
        name TEXT NOT NULL DEFAULT '',
        key_hash TEXT NOT NULL UNIQUE,
        key_hint TEXT NOT NULL,
        expiry TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        last_seen TEXT
    );
    CREATE TABLE session (
        key_hash TEXT PRIMARY KEY,
        user INTEGER NOT NULL REFERENCES user(pk) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        expires TEXT NOT NULL
    );
    """,
    # 2: the durable print queue. Documents live in their own table so listings never read them.
    """
    CREATE TABLE job (
        pk TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        machine TEXT NOT NULL REFERENCES machine(pk) ON DELETE CASCADE,
        status TEXT NOT NULL,
        copies INTEGER NOT NULL,
        pages INTEGER,
        progress INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        interruptions INTEGER NOT NULL DEFAULT 0,
        errors TEXT NOT NULL DEFAULT '[]',
        warnings TEXT NOT NULL DEFAULT '[]',
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        idempotency_key TEXT,
        created TEXT NOT NULL,
        started TEXT,
        finished TEXT,
        expires TEXT NOT NULL,
        UNIQUE (machine, idempotency_key)
    );
    CREATE INDEX job_machine_status ON job (machine, status, seq);
    CREATE INDEX job_status_finished ON job (status, finished);
    CREATE TABLE job_document (
        job TEXT PRIMARY KEY REFERENCES job(pk) ON DELETE CASCADE,
        data BLOB NOT NULL
    );
    """,
    # 3: a token's key can be derived again (from the salt and the agent's secret), so asking for a
    # token by the same name returns the same one, as InvenTree does, while only its hash is stored.
    """
    ALTER TABLE api_token ADD COLUMN salt TEXT;
    CREATE INDEX api_token_user_name ON api_token (user, name);
    """,
    # 4: job listings page in SQL (newest first, by machine and/or status) through an index each,
    # and count from job_count, kept by triggers, so a page costs the same at 100 or 100,000 jobs;
    # a job remembers the label it was on when the agent last stopped mid-job; jobs failed by the
    # old "interrupted twice" rule without a finish time get one, so retention deletes them.
    """
    CREATE INDEX job_status_seq ON job (status, seq);
    CREATE INDEX job_machine_seq ON job (machine, seq);
    ALTER TABLE job ADD COLUMN interrupted_at INTEGER;
    UPDATE job SET finished = COALESCE(started, created) WHERE finished IS NULL AND status IN
        ('complete', 'failed', 'cancelled');
    CREATE TABLE job_count (
        machine TEXT NOT NULL,
        status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (machine, status)
    ) WITHOUT ROWID;
    INSERT INTO job_count (machine, status, n) SELECT machine, status, count(*) FROM job
        GROUP BY machine, status;
    CREATE TRIGGER job_counted AFTER INSERT ON job BEGIN
        INSERT INTO job_count (machine, status, n) VALUES (new.machine, new.status, 1)
            ON CONFLICT (machine, status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER job_uncounted AFTER DELETE ON job BEGIN
        UPDATE job_count SET n = n - 1 WHERE machine = old.machine AND status = old.status;
    END;
    CREATE TRIGGER job_recounted AFTER UPDATE OF machine, status ON job
        WHEN old.machine IS NOT new.machine OR old.status IS NOT new.status BEGIN
        UPDATE job_count SET n = n - 1 WHERE machine = old.machine AND status = old.status;
        INSERT INTO job_count (machine, status, n) VALUES (new.machine, new.status, 1)
            ON CONFLICT (machine, status) DO UPDATE SET n = n + 1;
    END;
    """,
    # 5: whether the current attempt wrote anything to the printer; an attempt stopped before
    # its first byte cannot have printed a label, so it does not count as interrupted.
    """
    ALTER TABLE job ADD COLUMN written INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: the link to a central InvenTree server. A central job is remembered once its documents
    # are being stored (`accepted` once all are); state reports wait in the outbox, in order,
    # until the server has them; the link's last state is kept for `inventree-edge central
    # status`; a token obtained with a username and password is kept so it is obtained once.
    """
    CREATE TABLE central_job (
        id TEXT PRIMARY KEY,
        machine TEXT NOT NULL,
        documents INTEGER NOT NULL,
        copies INTEGER NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        reported TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL
    );
    CREATE TABLE central_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        body TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE central_link (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        url TEXT NOT NULL,
        agent TEXT NOT NULL,
        state TEXT NOT NULL,
        since TEXT NOT NULL,
        last_contact TEXT,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE central_token (
        url TEXT NOT NULL,
        username TEXT NOT NULL,
        token TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (url, username)
    );
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database; return the resulting schema version."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {current} is newer than this agent knows ({len(MIGRATIONS)})"
        )
    for version in range(current + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """The script's statements; a trigger's body keeps its inner semicolons."""
    statements, current = [], ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
