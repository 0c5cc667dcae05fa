"""Running the harvest sources that are due: landing directories and catalogues.

A harvester claims due sources (`harvest_claim_due_sources`: a fresh claim token and a lease,
committed at once, SKIP LOCKED so that two harvesters take different sources) and runs each in a
task of its own, up to `concurrency` at once, each bounded by its timeout: a catalogue that
accepts connections and never answers holds its own slot until its timeout, never another
source or the landing scans. A source that fails (its directories refused by the ops' roots, a
catalogue down, a timeout) records its reason in last_error and runs again later; the others go
on. The run's writes about the source carry its claim token, so a harvester that lost its claim
(paused past the lease, the source taken over) changes nothing. A crashed harvester's sources are
taken over as soon as its lease lapsed (HRWSI_LEASE_TIMEOUT_S; they waited for the claim, the
source timeout + 60 s), and a landing run stops before the next file it would move once its
harvester no longer holds its lease by its own clock. The run's own writes (landing files,
inputs) commit as they go, so what was done survives a failure later in the run.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
from psycopg.rows import dict_row

from hrwsi.database import COMMAND_TIMEOUT_S
from hrwsi.harvest import catalogue, confinement, landing, schedules
from hrwsi.harvest.landing_source import LandingSource, refuse_absurd_durations, refuse_malformed_pattern
from hrwsi.harvest.source_config import ConfigUnreadable, config_of
from hrwsi.service import BUSY_SQLSTATE, LOCK_HOLDER_UNSEEN, is_lock_timeout, lock_holders
from hrwsi.service_logging import task_fields
from hrwsi.settings import Settings
from hrwsi.sql_files import query
from hrwsi.terminal import shown

logger = logging.getLogger(__name__)

# A claim outlives its run's timeout by this much: time to record the outcome after a timeout.
CLAIM_MARGIN_S = 60.0


@dataclass
class SourceRun:
    source: str
    kind: str
    ok: bool
    next_run_at: datetime | None
    report: Any = None        # a LandingScanReport or a CatalogueHarvestReport
    error: str | None = None
    deleted: bool = False     # the source was deleted during the run: there is no row to record it in

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
    config = config_of(row["config"])
    refuse_absurd_durations(config)  # (ConfigUnreadable: `hrwsi sources` says why, from config_problem)
    every = config.get("scan_interval_s") or max(float(config.get("settle_s", 2.0)), 1.0)
    return f"continuously (every {every:g} s)"


# ---------------------------------------------------------------------------------------------
# Options and source kinds
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HarvestOptions:
    """What ops set for every source run (HRWSI_* settings)."""
    landing: landing.LandingPolicy
    source_timeout_s: float = 900.0
    concurrency: int = 4
    catalogue_session_factory: Callable[[], Any] | None = None  # the aiohttp.ClientSession catalogues use

    @classmethod
    def from_settings(cls, settings: Settings) -> HarvestOptions:
        """Validated at start-up: raises ValueError naming the setting that is wrong."""
        for name, value in (("HRWSI_SOURCE_TIMEOUT_S", settings.source_timeout_s),
                            ("HRWSI_HARVEST_CONCURRENCY", settings.harvest_concurrency),
                            ("HRWSI_UNZIP_MAX_BYTES", settings.unzip_max_bytes),
                            ("HRWSI_UNZIP_MAX_RATIO", settings.unzip_max_ratio),
                            ("HRWSI_UNZIP_MAX_MEMBERS", settings.unzip_max_members)):
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{name}={shown(value)} must be a positive finite number")
        return cls(landing.LandingPolicy.from_settings(settings), settings.source_timeout_s,
                   settings.harvest_concurrency)


@dataclass(frozen=True)
class SourceContext:
    pool: asyncpg.Pool
    row: asyncpg.Record
    now: datetime                 # when the run started, as the caller tells time
    schedule: schedules.Schedule | None
    options: HarvestOptions
    started: float = field(default_factory=time.monotonic)
    # Whether the harvester still holds its lease (Service.lease_held): a landing run asks before
    # each file it moves, and stops once it does not (paused past it: another may run the source).
    lease_held: Callable[[], bool] = field(default=lambda: True)

    def finished(self) -> datetime:
        """Now, on the run's clock: its start plus the time it took. The next run is reckoned from
        here: reckoned from the start, a run that took longer than its interval (a catalogue that
        hung until its timeout) was due again at once, ahead of the sources waiting for a slot."""
        return _finished(self.now, self.started)


def _finished(now: datetime, started: float) -> datetime:
    return now + timedelta(seconds=time.monotonic() - started)


@dataclass(frozen=True)
class SourceKind:
    """How one kind of source runs: `run` does the work and says when the source runs next;
    `run_is_success`: a run that did not fail is the source's last successful harvest (a catalogue
    records its own, window by window)."""
    run: Callable[[SourceContext], Awaitable[tuple[Any, datetime]]]
    run_is_success: bool


async def _run_landing_directory(context: SourceContext) -> tuple[Any, datetime]:
    row, now = context.row, context.now
    source = LandingSource.from_row(row["name"], row["product_type"], row["config"])
    report = await landing.scan_landing_directory(context.pool, source, context.options.landing, now=now,
                                                  lease_held=context.lease_held)
    finished = context.finished()
    next_run_at = (schedules.next_run(context.schedule, finished) if context.schedule
                   else finished + timedelta(seconds=source.rescan_after_s))
    return report, next_run_at


async def _run_catalogue(context: SourceContext) -> tuple[Any, datetime]:
    now = context.now
    report = await catalogue.harvest_catalogue_source(
        context.pool, context.row, now=now, session_factory=context.options.catalogue_session_factory,
        claim_token=context.row["claim_token"])
    # A backfill goes on, day after day, at the next harvester round.
    finished = context.finished()
    return report, finished if report.more_backfill_days else schedules.next_run(context.schedule, finished)


# The kinds hrwsi.harvest_source allows (its CHECK harvest_source_kind_is_catalogue_or_landing_directory).
SOURCE_KINDS: dict[str, SourceKind] = {
    "landing_directory": SourceKind(_run_landing_directory, run_is_success=True),
    "catalogue": SourceKind(_run_catalogue, run_is_success=False),
}

# The keys of a source's config each kind reads (landing_source.LandingSource.from_row; catalogue.py).
# A typo ("setle_s") ran with the default and nothing said so (found by exploratory testing,
# 2026-12-05); then it was only logged, and the source ran on with the default where a setting was
# meant (a settle time of 5 s for files still being written). A source with any other key is set
# aside, as a bad source is: its run is refused, naming the key, the one it may have meant and the
# keys it reads, recorded as its last error (`hrwsi sources`, `hrwsi status`); the others go on.
CONFIG_KEYS: dict[str, frozenset[str]] = {
    "landing_directory": frozenset({"directory", "work_directory", "settle_s", "unzip", "pattern",
                                    "zip_password_env", "scan_interval_s"}),
    "catalogue": frozenset({"url", "collection", "product_type", "tiles", "area_wkt", "top", "auth", "max_attempts",
                            "retry_base_s", "retry_max_s", "timeout_s", "max_pages_per_run", "backfill_days_per_run",
                            "path_field", "max_page_mb"}),
}


def unknown_config_keys(kind: str, config: Any) -> list[str]:
    """Each key of a source's config its kind does not read, with the key it may have meant."""
    known = CONFIG_KEYS.get(kind)
    if known is None or not isinstance(config, dict):
        return []
    said = []
    for key in sorted(set(config) - known):
        close = difflib.get_close_matches(key, known, n=1)
        said.append(f"{shown(key)}" + (f" (did you mean {shown(close[0])}?)" if close else ""))
    return said


UNKNOWN_KEYS_SHOWN = 10


class UnknownConfigKeys(confinement.SourceRefused):
    """A source's config has keys its kind does not read; the message names them and the keys it reads."""


def refuse_unknown_config_keys(kind: str, config: Any) -> None:
    """Raise UnknownConfigKeys if the config has a key a source of this kind does not read."""
    unknown = unknown_config_keys(kind, config)
    if unknown:
        # (the first 10: a config of thousands of keys made a line as long, in last_error and `hrwsi sources`)
        more = f" and {len(unknown) - UNKNOWN_KEYS_SHOWN:,} more" if len(unknown) > UNKNOWN_KEYS_SHOWN else ""
        raise UnknownConfigKeys(
            f"its config has key(s) a {kind} source does not read: {', '.join(unknown[:UNKNOWN_KEYS_SHOWN])}{more}; it reads "
            f"{', '.join(sorted(CONFIG_KEYS[kind]))}: correct or remove them (the source is set aside until then, "
            "rather than run with a default where a setting was meant)")


def config_problem(row: Any) -> str | None:
    """Why the harvester sets this source's config aside, as its run would record it, or None."""
    try:
        config = config_of(row["config"])
        refuse_unknown_config_keys(row["kind"], config)
        if row["kind"] == "landing_directory":
            refuse_absurd_durations(config)
            refuse_malformed_pattern(config)
        elif row["kind"] == "catalogue":
            catalogue.refuse_absurd_retry_settings(config)
            catalogue.refuse_unreadable_text_settings(config)
    except (ConfigUnreadable, UnknownConfigKeys) as error:
        return f"{type(error).__name__}: {error}"
    return None


# Failures that are one line in the log (anything else gets its traceback).
_EXPECTED_FAILURES = (OSError, ValueError, asyncpg.PostgresError, catalogue.CatalogueError, catalogue.ClaimLost,
                      catalogue.SourceWithdrawn, TimeoutError, landing.LeaseLapsed)


# ---------------------------------------------------------------------------------------------
# Running sources
# ---------------------------------------------------------------------------------------------

class SourceRunner:
    """Runs due sources concurrently, each in its own task with its own timeout, at most
    `options.concurrency` at once. The harvester calls `start_due` every round; a round of its own
    (`run_round`, for `run_due_sources`) runs every due source once and waits for them all."""

    def __init__(self, pool: asyncpg.Pool, options: HarvestOptions, harvester: Callable[[], str], *,
                 lease_held: Callable[[], bool] = lambda: True, lease_s: float | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.pool = pool
        self.options = options
        self.harvester = harvester  # who claims, for people (`hrwsi sources`): the service's current identity
        # A harvester service's lease: by its own clock (lease_held), and its length, after which a
        # source held by a harvester that stopped renewing its lease is taken over (None: never
        # before the claim lapses; run_due_sources is no service and has no lease).
        self.lease_held = lease_held
        self.lease_s = lease_s
        # "Now" as the database tells it (a service's DatabaseClock): claims are compared with the
        # database's times; a harvester two hours slow took claims that had lapsed and ran a source
        # another harvester was running, and recorded files as first seen two hours ago.
        self.clock = clock
        self.running: dict[str, asyncio.Task[SourceRun]] = {}
        self._tokens: dict[str, uuid.UUID] = {}
        self._modes: dict[str, str] = {}  # the mode of each source started (near_real_time or backfill)

    async def start_due(self, now: datetime | None = None, exclude: Iterable[str] = ()) -> list[str]:
        """Claim due sources into the free slots and start them; returns their names."""
        self.running = {name: task for name, task in self.running.items() if not task.done()}
        free = self.options.concurrency - len(self.running)
        if free <= 0:
            return []
        # Back-fills take all but one slot while a near-real-time source exists (the claim checks that): a fresh
        # scene's window waits for no back-fill day to end (one slot: shared, near-real-time first).
        backfills = sum(1 for name in self.running if self._modes.get(name) == "backfill")
        backfill_free = free if self.options.concurrency == 1 else max(0, self.options.concurrency - 1 - backfills)
        claimed_at = now or self.clock()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("harvest_claim_due_sources"), claimed_at, [*self.running, *exclude], free,
                                    self.harvester(), self.options.source_timeout_s + CLAIM_MARGIN_S, self.lease_s,
                                    backfill_free)
        for row in rows:
            self._modes[row["name"]] = row["mode"]
            self._tokens[row["name"]] = row["claim_token"]
            self.running[row["name"]] = asyncio.create_task(self._run(row, claimed_at), name=f"source {row['name']}")
        return [row["name"] for row in rows]

    async def run_round(self, now: datetime | None = None) -> list[SourceRun]:
        """Run every source due now once (concurrently, within the slots) and return what each did."""
        started: list[str] = []
        tasks: list[asyncio.Task[SourceRun]] = []
        while True:
            names = await self.start_due(now, exclude=started)
            started += names
            tasks += [self.running[name] for name in names]
            unfinished = [task for task in tasks if not task.done()]
            if not unfinished and not names:
                return [task.result() for task in tasks]
            if unfinished:
                await asyncio.wait(unfinished, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        """Cancel the runs going on and hand their sources back, due at once for another harvester."""
        tasks = [task for task in self.running.values() if not task.done()]
        tokens = [self._tokens[name] for name, task in self.running.items() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tokens:
            async with self.pool.acquire() as conn:
                await conn.execute(query("harvest_release_claims"), tokens)
        self.running.clear()

    def abandon(self) -> None:
        """The harvester's lease lapsed (paused past it): its runs stop and record nothing, and their
        claims are left as they are, another harvester's now or lapsing on their own."""
        for task in self.running.values():
            task.cancel()
        self.running.clear()
        self._tokens.clear()

    async def _run(self, row: asyncpg.Record, now: datetime) -> SourceRun:
        try:
            run = await _run_one(self.pool, row, now, self.options, self.lease_held)
        except Exception as error:  # noqa: BLE001 - one source's failure must not stop the others, nor go unsaid
            # A failure outside the run's own handling (reckoning the time of its next try, say: a cron expression
            # that never comes raised there): its task ended with it, nothing was recorded, the source stayed
            # claimed until its claim lapsed and `hrwsi sources` said no error (found by exploratory testing).
            message = f"{type(error).__name__}: {str(error) or 'no detail given'}"
            logger.error("source %s (%s) failed outside its run's handling: %s; recorded as its last error, next try "
                         "in an hour", row["name"], row["kind"], message, exc_info=True,
                         extra=task_fields(source=row["name"], failure=message))
            run = SourceRun(row["name"], row["kind"], False, _finished(now, time.monotonic()) + timedelta(hours=1),
                            error=message)
        counts_as_success = run.ok and SOURCE_KINDS[row["kind"]].run_is_success
        try:
            async with self.pool.acquire() as conn:
                kept = await conn.fetchval(query("harvest_source_ran"), row["name"], now, run.next_run_at, run.error,
                                           counts_as_success, now, row["claim_token"])
        except (OSError, asyncpg.PostgresError) as error:
            logger.warning("source %s: its run could not be recorded (%s); its claim lapses on its own and it runs "
                           "again then", row["name"], error, extra=task_fields(source=row["name"]))
            return run
        finally:
            self._tokens.pop(row["name"], None)
        if kept is None and run.deleted:
            pass  # said when it stopped; there is nothing left to record it in
        elif kept is None:
            logger.warning("source %s: its claim lapsed during the run and another harvester took it over: this "
                           "run's outcome is not recorded", row["name"], extra=task_fields(source=row["name"]))
        elif run.ok:
            level = logging.DEBUG if getattr(run.report, "quiet", False) else logging.INFO
            logger.log(level, "source %s: %s", row["name"], run.summary(), extra=task_fields(source=row["name"]))
        return run


async def run_due_sources(pool: asyncpg.Pool, options: HarvestOptions, *, now: datetime | None = None,
                          harvester: str = "run_due_sources") -> list[SourceRun]:
    """Run every active source whose next_run_at has come (NULL: never ran), once each, concurrently;
    return what each run did. A failing source is logged and recorded (last_error); the others go on."""
    runner = SourceRunner(pool, options, lambda: harvester)
    try:
        return await runner.run_round(now)
    finally:
        await runner.stop()  # a cancelled round leaves no run behind: they stop, their sources are handed back


async def _run_one(pool: asyncpg.Pool, row: asyncpg.Record, now: datetime, options: HarvestOptions,
                   lease_held: Callable[[], bool]) -> SourceRun:
    name, kind = row["name"], row["kind"]
    started = time.monotonic()
    try:
        async with asyncio.timeout(options.source_timeout_s) as deadline:
            context = SourceContext(pool, row, now, schedule_of(row), options, started, lease_held)
            refuse_unknown_config_keys(kind, config_of(row["config"]))
            report, next_run_at = await SOURCE_KINDS[kind].run(context)
    except catalogue.SourceWithdrawn as withdrawn:
        message = str(withdrawn)
        logger.info("%s", message, extra=task_fields(source=name, failure=message))
        return SourceRun(name, kind, False, _retry_at(row, _finished(now, started)), error=message,
                         deleted=withdrawn.deleted)
    except Exception as error:  # noqa: BLE001 - one source's failure must not stop the others
        timed_out = isinstance(error, TimeoutError) and deadline.expired()
        if timed_out:
            message = (f"did not finish within {options.source_timeout_s:g} s (HRWSI_SOURCE_TIMEOUT_S): stopped; "
                       f"{_after_a_timeout(row)}")
        elif isinstance(error, TimeoutError) and not str(error):
            # asyncpg's command timeout says nothing ("TimeoutError: no detail given", found by
            # exploratory testing): a statement of the run took longer than the pool allows.
            message = (f"a database statement of the run did not finish within the pool's {COMMAND_TIMEOUT_S:g} s: "
                       f"stopped; {_after_a_timeout(row)}")
        elif isinstance(error, asyncpg.PostgresError) and error.sqlstate == BUSY_SQLSTATE and is_lock_timeout(error):
            # (a transaction left open in a SQL client, holding a lock on the input table, say: named, not a
            # bare "canceling statement due to lock timeout")
            message = (f"waited lock_timeout for a lock another session holds: {await lock_holders(pool) or LOCK_HOLDER_UNSEEN}"
                       f"; {_after_a_lock_wait(row)}")
        else:
            message = f"{type(error).__name__}: {str(error) or 'no detail given'}"
        retry_at = _retry_at(row, _finished(now, started))
        _log_failure(row, message, retry_at, error)
        return SourceRun(name, kind, False, retry_at, error=message)
    return SourceRun(name, kind, True, next_run_at, report=report)


def _after_a_lock_wait(row: asyncpg.Record) -> str:
    """What a run stopped by a lock wait leaves, and what the next run does."""
    if row["kind"] == "landing_directory":
        return "the files it prepared stay prepared, and its next run registers them"
    return "what it registered stays, and its next run asks again"


def _after_a_timeout(row: asyncpg.Record) -> str:
    """What a run stopped by its timeout leaves, and what the next run does, for the source's kind
    and mode: what it registered commits as it goes, but a window counts only once complete."""
    if row["kind"] == "landing_directory":
        return "the files it prepared stay prepared, and its next run scans the directory again"
    if row["mode"] == "backfill":
        return "the inputs it registered stay, and its next run asks again for the first day it did not finish"
    return ("the inputs it registered stay, and its next run asks again for all that was published since its last "
            "complete window")


def _log_failure(row: asyncpg.Record, message: str, retry_at: datetime, error: Exception) -> None:
    """An error is logged in full once; the same error again, run after run, in one quieter line."""
    if message == row["last_error"]:
        logger.info("source %s (%s) still failing: %s; next try at %s", row["name"], row["kind"], message,
                    f"{retry_at:%Y-%m-%d %H:%M:%S}Z", extra=task_fields(source=row["name"], failure=message))
        return
    verb = "refused" if isinstance(error, confinement.SourceRefused) else "failed"
    logger.error("source %s (%s) %s: %s; recorded as its last error, next try at %s", row["name"], row["kind"],
                 verb, message, f"{retry_at:%Y-%m-%d %H:%M:%S}Z", exc_info=not isinstance(error, _EXPECTED_FAILURES),
                 extra=task_fields(source=row["name"], failure=message))


def _retry_at(row: asyncpg.Record, now: datetime) -> datetime:
    """A failed source runs again at its next scheduled time after `now`, the end of the failed run
    (continuous ones 30 s after it: a missing directory need not be looked at every second)."""
    try:
        schedule = schedule_of(row)
    except schedules.InvalidSchedule:
        return now + timedelta(hours=1)
    return schedules.next_run(schedule, now) if schedule else now + timedelta(seconds=30)


def list_sources(conn: psycopg.Connection) -> list[dict]:
    """Every source, for `hrwsi sources`: name, kind, product type, schedule in words, mode, last run,
    next run, last error, active, the harvester running it now and until when its claim holds, and
    files per state for landing directories."""
    rows = conn.cursor(row_factory=dict_row).execute(query("cli_list_sources")).fetchall()
    return [describe_source(row) for row in rows]


def describe_source(row: Any) -> dict:
    """One row of query cli_list_sources (psycopg or asyncpg) in words (`hrwsi sources`, the dashboard)."""
    try:
        schedule = describe_schedule(row)
    except schedules.InvalidSchedule as error:
        schedule = f"invalid: {error}"
    except ConfigUnreadable:
        schedule = "continuously"
    # (the harvester records the same at the source's next run; until then, this says it)
    last_error = row["last_error"] or config_problem(row)
    mode = row["mode"]
    if mode == "backfill":
        cursor: date | None = row["backfill_cursor"]
        progress = "not started" if cursor is None else (
            "complete" if cursor > row["backfill_to"] else f"next day {cursor}")
        resume_at, day = row["backfill_resume_at"], max(cursor or row["backfill_from"], row["backfill_from"])
        if resume_at is not None and day <= row["backfill_to"] \
                and schedules.day_window(day)[0] < resume_at < schedules.day_window(day)[1]:
            # (its last run stopped at its page limit, part of the way through the day)
            progress = f"next day {day}, from {resume_at.astimezone(UTC):%H:%M:%S}Z"
        mode = f"backfill {row['backfill_from']} to {row['backfill_to']} ({progress})"
    files = row["files"] or {}
    return {"name": row["name"], "kind": row["kind"], "product_type": row["product_type"],
            "schedule": schedule, "mode": mode, "last_run_at": row["last_run_at"],
            "next_run_at": row["next_run_at"], "last_error": last_error, "active": row["active"],
            "running_on": row["claimed_by"], "claimed_until": row["claimed_until"],
            "files": json.loads(files) if isinstance(files, str) else files,
            # (the files it refused in the last day: reports.refused_files_said says them)
            "refused": row["refused"], "refused_path": row["refused_path"],
            "refused_message": row["refused_message"], "refused_at": row["refused_at"]}
