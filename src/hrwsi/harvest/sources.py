"""Running the harvest sources that are due: landing directories and catalogues.

`run_due_sources` claims one due source at a time with `SELECT ... FOR NO KEY UPDATE SKIP LOCKED` and
keeps the row locked while the source runs, so two harvesters never run the same source at once
(the second one skips it), and a harvester that dies mid-run releases it with its connection. The
run's own writes (landing files, inputs, a backfill's cursor) commit on other connections as they
go, so what was done survives a failure later in the run. The pool needs at least 2 connections.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
from psycopg.rows import dict_row

from hrwsi.harvest import catalogue, landing, schedules
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)


@dataclass
class SourceRun:
    source: str
    kind: str
    ok: bool
    next_run_at: datetime | None
    report: Any = None        # a LandingScanReport or a CatalogueHarvestReport
    error: str | None = None

    def summary(self) -> str:
        when = f"; next run {self.next_run_at:%Y-%m-%d %H:%M:%S}Z" if self.next_run_at else ""
        if not self.ok:
            return f"failed: {self.error}{when}"
        return f"{self.report.summary() if self.report is not None else 'done'}{when}"


def schedule_of(row: Any) -> schedules.Schedule | None:
    """The source's schedule; None for a landing directory scanned continuously."""
    if row["frequency"] is None and row["cron"] is None:
        return None
    return schedules.Schedule(row["frequency"], row["frequency_interval"], row["cron"])


def describe_schedule(row: Any) -> str:
    schedule = schedule_of(row)
    if schedule is not None:
        return schedule.describe()
    config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])
    every = config.get("scan_interval_s") or max(float(config.get("settle_s", 2.0)), 1.0)
    return f"continuously (every {every:g} s)"


@dataclass(frozen=True)
class SourceKind:
    """How one kind of source runs: `run` does the work and says when the source runs next;
    `run_is_success`: a run that did not fail is the source's last successful harvest (a catalogue
    records its own, window by window)."""
    run: Callable[[SourceContext], Awaitable[tuple[Any, datetime]]]
    run_is_success: bool


@dataclass(frozen=True)
class SourceContext:
    pool: asyncpg.Pool
    claim: asyncpg.Connection          # holds the source's row lock: progress is written on it
    row: asyncpg.Record
    now: datetime
    schedule: schedules.Schedule | None
    catalogue_session_factory: Callable[[], Any] | None


async def _run_landing_directory(context: SourceContext) -> tuple[Any, datetime]:
    row, now = context.row, context.now
    source = landing.LandingSource.from_row(row["name"], row["product_type"], row["config"])
    next_run_at = (schedules.next_run(context.schedule, now) if context.schedule
                   else now + timedelta(seconds=source.rescan_after_s))
    return await landing.scan_landing_directory(context.pool, source, now=now), next_run_at


async def _run_catalogue(context: SourceContext) -> tuple[Any, datetime]:
    now = context.now
    report = await catalogue.harvest_catalogue_source(context.pool, context.row, now=now,
                                                      session_factory=context.catalogue_session_factory,
                                                      progress_conn=context.claim)
    # A backfill goes on, day after day, at the next harvester round.
    return report, now if report.more_backfill_days else schedules.next_run(context.schedule, now)


# The kinds hrwsi.harvest_source allows (its CHECK harvest_source_kind_is_catalogue_or_landing_directory).
SOURCE_KINDS: dict[str, SourceKind] = {
    "landing_directory": SourceKind(_run_landing_directory, run_is_success=True),
    "catalogue": SourceKind(_run_catalogue, run_is_success=False),
}


async def run_due_sources(pool: asyncpg.Pool, *, now: datetime | None = None,
                          catalogue_session_factory: Callable[[], Any] | None = None) -> list[SourceRun]:
    """Run every active source whose next_run_at has come (NULL: never ran), once each; return
    what each run did. A failing source is logged and recorded (last_error) and the others go on.

    catalogue_session_factory: makes the aiohttp.ClientSession catalogues use (tests, proxies).
    """
    fixed_now = now
    runs: list[SourceRun] = []
    done: list[str] = []
    while True:
        async with pool.acquire() as claim, claim.transaction():
            now = fixed_now or datetime.now(UTC)
            row = await claim.fetchrow(query("harvest_claim_due_source"), now, done)
            if row is None:
                return runs
            done.append(row["name"])
            run = await _run_one(pool, claim, row, now, catalogue_session_factory)
            counts_as_success = run.ok and SOURCE_KINDS[row["kind"]].run_is_success
            await claim.execute(query("harvest_source_ran"), row["name"], now, run.next_run_at, run.error,
                                counts_as_success, now)
        runs.append(run)


async def _run_one(pool: asyncpg.Pool, claim: asyncpg.Connection, row: asyncpg.Record, now: datetime,
                   session_factory: Callable[[], Any] | None) -> SourceRun:
    name, kind = row["name"], row["kind"]
    try:
        context = SourceContext(pool, claim, row, now, schedule_of(row), session_factory)
        report, next_run_at = await SOURCE_KINDS[kind].run(context)
    except Exception as error:  # noqa: BLE001 - one source's failure must not stop the others
        message = f"{type(error).__name__}: {str(error) or 'no detail given'}"
        retry_at = _retry_at(row, now)
        # A known kind of failure is one line; anything else gets its traceback.
        expected = isinstance(error, (OSError, ValueError, asyncpg.PostgresError, catalogue.CatalogueError))
        logger.error("source %s (%s) failed: %s; recorded as its last error, next try at %s",
                     name, kind, message, f"{retry_at:%Y-%m-%d %H:%M:%S}Z", exc_info=not expected)
        return SourceRun(name, kind, False, retry_at, error=message)
    return SourceRun(name, kind, True, next_run_at, report=report)


def _retry_at(row: asyncpg.Record, now: datetime) -> datetime:
    """A failed source runs again at its next scheduled time (continuous ones after 30 s: a missing
    directory need not be looked at every second)."""
    try:
        schedule = schedule_of(row)
    except schedules.InvalidSchedule:
        return now + timedelta(hours=1)
    return schedules.next_run(schedule, now) if schedule else now + timedelta(seconds=30)


def list_sources(conn: psycopg.Connection) -> list[dict]:
    """Every source, for `hrwsi sources`: name, kind, product type, schedule in words, mode, last run,
    next run, last error, active, and files per state for landing directories."""
    rows = conn.cursor(row_factory=dict_row).execute(query("cli_list_sources")).fetchall()
    listed = []
    for row in rows:
        try:
            schedule = describe_schedule(row)
        except schedules.InvalidSchedule as error:
            schedule = f"invalid: {error}"
        mode = row["mode"]
        if mode == "backfill":
            cursor: date | None = row["backfill_cursor"]
            progress = "not started" if cursor is None else (
                "complete" if cursor > row["backfill_to"] else f"next day {cursor}")
            mode = f"backfill {row['backfill_from']} to {row['backfill_to']} ({progress})"
        listed.append({"name": row["name"], "kind": row["kind"], "product_type": row["product_type"],
                       "schedule": schedule, "mode": mode, "last_run_at": row["last_run_at"],
                       "next_run_at": row["next_run_at"], "last_error": row["last_error"], "active": row["active"],
                       "files": row["files"] or {}})
    return listed
