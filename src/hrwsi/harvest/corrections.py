"""The wait of chaining (and of the making of groups) for a correction of an input under way.

hrwsi.correct_input takes the lock 7250098/1 exclusively; chaining takes it shared, first in its transaction
(migration 0097). A wait for it that runs out (lock_timeout) is a correction under way, not a time series
another transaction holds: said as such, naming the session that corrects (migration 0102; it was taken for a
busy time series, and the harvester said "no product waits for a time series any more" once it ended).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import psycopg

from hrwsi.service import BUSY_SQLSTATE, is_lock_timeout
from hrwsi.sql_files import query


class CorrectionUnderWay(Exception):
    """Chaining waited lock_timeout for the lock a correction of an input holds."""


@dataclass(frozen=True)
class Corrector:
    """The session that holds the correction's lock, as pg_stat_activity names it."""

    pid: int
    role: str | None
    application: str | None
    open_for_s: float | None

    def describe(self) -> str:
        named = f"session {self.pid}"
        details = [f"role {self.role}" if self.role else "",
                   f"application {self.application!r}" if self.application else "",
                   f"its transaction open for {self.open_for_s:.0f} s" if self.open_for_s is not None else ""]
        return named + "".join(f", {d}" for d in details if d)


# What hrwsi.reprocess and hrwsi.chain_missed_products say when their wait for a correction runs out (migration 0118,
# hrwsi.take_a_lock_or_say_who_holds_it: the error's context named the lock's call before).
CORRECTION_WAITED_FOR = "for the correction of an input under way (hrwsi.correct_input in "


def correction_waited_for(conn: psycopg.Connection, error: psycopg.errors.LockNotAvailable) -> str | None:
    """What a command whose wait for the correction's lock ran out (lock_timeout) waited for, naming the session that
    corrects, as the harvester says it; None when the lock it waited for was another. `hrwsi reprocess` said only "the
    database cancelled a statement: canceling statement due to lock timeout" (found by review; migration 0102 made it
    wait for a correction under way)."""
    if CORRECTION_WAITED_FOR not in (error.diag.message_primary or ""):
        return None
    row = conn.execute(query("correction_under_way")).fetchone()
    who = Corrector(row[0], row[1], row[2], row[3].total_seconds() if row[3] is not None else None).describe() \
        if row is not None else "a session that has ended since"
    timeout = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    return f"waited lock_timeout ({timeout}) for the correction of an input under way (hrwsi.correct_input in {who})"


async def wait_for_corrections(conn: asyncpg.Connection) -> None:
    """Take the correction's lock shared (chaining_waits_for_corrections), in the caller's transaction; a wait
    that runs out raises CorrectionUnderWay."""
    try:
        await conn.execute(query("chaining_waits_for_corrections"))
    except asyncpg.PostgresError as error:
        if error.sqlstate == BUSY_SQLSTATE and is_lock_timeout(error):
            raise CorrectionUnderWay from error
        raise


async def corrector(pool: asyncpg.Pool) -> Corrector | None:
    """The session correcting an input now (None: its correction ended meanwhile)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(query("correction_under_way"))
    if row is None:
        return None
    return Corrector(row["pid"], row["role"], row["application_name"],
                     row["open_for"].total_seconds() if row["open_for"] is not None else None)
