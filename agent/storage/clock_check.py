"""Is the clock behind what is stored? A host without a real-time clock may boot in the past."""

from __future__ import annotations

import datetime as dt
import sqlite3

from agent.storage.database import Database

# Stored times this far ahead of the clock mean the clock is behind (not a second of NTP drift).
CLOCK_SLACK = dt.timedelta(minutes=5)
NEWEST_JOBS_CHECKED = 1000


async def clock_behind(database: Database, now: dt.datetime) -> dt.datetime | None:
    """The newest stored creation time if `now` is more than `CLOCK_SLACK` before it, else None.

    A host without a real-time clock boots with an old time until NTP steps it: dates made
    then are wrong, and pruning by them would delete what is not old.
    """
    newest = await newest_timestamp(database)
    if newest is None:
        return None
    try:
        stored = dt.datetime.fromisoformat(newest)
    except ValueError:
        return None
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=dt.UTC)
    return stored if now < stored - CLOCK_SLACK else None


async def newest_timestamp(database: Database) -> str | None:
    """The latest creation time stored (users, tokens, jobs): the clock was past it once."""

    def query(conn: sqlite3.Connection) -> str | None:
        # The newest jobs by sequence only: the job table may be large, and the newest
        # creation time is among the last ones made unless the clock jumped back before them.
        row = conn.execute(
            "SELECT max(t) FROM (SELECT max(date_joined) AS t FROM user "
            "UNION ALL SELECT max(created) FROM api_token UNION ALL SELECT max(created) FROM "
            "(SELECT created FROM job ORDER BY seq DESC LIMIT ?))",
            (NEWEST_JOBS_CHECKED,),
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    return await database.read(query)
