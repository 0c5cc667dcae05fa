"""What each dashboard page shows, read from the database (queries in sql/queries/web.sql).

Every read is bounded: lists are pages (keyset on id, newest first), counts come from indexes, and
the overview is one snapshot shared by every viewer until the next change (`OverviewCache`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import asyncpg

from hrwsi import migrations, timeliness
from hrwsi.backends.ascii_decimal import ascii_decimal, is_ascii_decimal
from hrwsi.database_trouble import refusing_writes_said
from hrwsi.harvest.sources import describe_source
from hrwsi.installed_code import mark_changed
from hrwsi.metrics import backlog_of
from hrwsi.reports import (
    CONNECTIONS_SAID_AT,
    HANDOVER_HOLDS_SHOWN,
    LONG_TRANSACTION_AFTER_S,
    LONG_TRANSACTIONS_SHOWN,
    QUEUED_LONG_AFTER_S,
    QUEUED_LONG_SHOWN,
    RUNNING_LONG_FACTOR,
    RUNNING_LONG_MIN_S,
    RUNNING_LONG_SHOWN,
    alerts_untried_said,
    folded_away,
    handover_hold_said,
    held_campaign_next_step,
    held_routine_next_step,
    held_task_next_step,
    is_alive,
    judge_services,
    long_transaction_next_step,
    refused_files_said,
    running_long_next_step,
    services_gone,
    sessions_not_seen_said,
    short_of_connections,
)
from hrwsi.sql_files import query

# The order states are shown in: the flow of a task, then the ends.
TASK_STATES = ("pending", "planned", "dispatched", "queued", "running", "on_hold", "blocked", "processed",
               "terminated", "cancelled")
SERIES_WINDOW_S = 3 * 3600
SERIES_BUCKET_S = 300
PAGE_SIZE = 50
LINEAGE_DEPTH = 20
LINEAGE_ROWS = 200
HISTORY_SHOWN = 200  # a task page's history rows, the latest (its heading says how many there are in all)
# A task page's attempts, the latest, with how many there are in all and a link to the older ones (?attempts_before=N):
# a task retried without end (a routine failing in a loop, lost attempts retried without limit) listed every attempt.
ATTEMPTS_SHOWN = 50
LOG_TAIL_BYTES = 64 * 1024
# The plan page's bars, at most (its heading says "the first N of M"): 2,000 bars were 500 kB of SVG, sent again on
# every change and tick (found measuring the dashboard at 100,000 tasks: 570 bars were 150 kB).
SCHEDULE_LIMIT = 500
HELD_SHOWN = 20  # the held campaigns and the tasks held one by one the overview lists (as `hrwsi status`)
# The dashboard's sessions: custom plans, and a read that waits at most LOCK_WAIT_S for a lock, as
# `hrwsi status` does (reports.STATUS_LOCK_WAIT_S). Why: behind a DBA's `LOCK TABLE hrwsi.job IN ACCESS
# EXCLUSIVE MODE` left open, the overview answered nothing for 45 s, until the lock went, and nothing
# named who held it (found by exploratory testing); now the page says so in 2 s (Dashboard._locked).
LOCK_WAIT_S = 2.0
SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan", "lock_timeout": str(round(LOCK_WAIT_S * 1000))}


@dataclass
class RoutineRow:
    routine: str
    lane: str
    counts: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    oldest_s: float | None = None
    processed_1h: int = 0
    failed_1h: int = 0
    mean_run_s: float | None = None
    on_hold: bool = False
    hold_reason: str | None = None
    consecutive_failures: int = 0
    hold_after_failures: int | None = None
    # What happens to it while held and what releases it, as `hrwsi status` says it (reports.held_routine_next_step):
    # a read-only dashboard showed the reason alone, without a Release button nor a word of what to do.
    hold_next: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Overview:
    read_s: float
    totals: dict[str, int]
    routines: list[RoutineRow]
    held: list[RoutineRow]
    series: list[dict]
    alert_queue: dict
    alerts: list
    services: list
    sources: list
    failures: list
    unplannable: list
    queued_long: list  # jobs queued in the backend over a minute, with its reason (reports.QUEUED_LONG_AFTER_S)
    running_long: list  # jobs running far past their expected duration (reports.RUNNING_LONG_FACTOR), with what next
    timeliness: dict | None
    latest_plan: dict | None
    deadlines: list = field(default_factory=list)  # (level, sentence): timeliness.deadline_sentences
    versions: dict = field(default_factory=dict)  # migrations.service_versions of the services alive
    services_gone: list = field(default_factory=list)  # reports.services_gone: kinds with no instance alive
    # The database's own trouble, as `hrwsi status` says it: transactions open long (reports.long_transactions)
    # and the server short of connection slots (reports.short_of_connections; None: it is not)
    long_transactions: list = field(default_factory=list)
    connections: dict | None = None
    sessions_not_seen: str | None = None  # (reports.sessions_not_seen_said: None, this role sees every session)
    # The held work `hrwsi status` lists beside the held routines: campaigns on hold, and tasks held one by one
    # (by an operator, or held then blocked: held_while_blocked), each with what lifts it. The dashboard showed the
    # held routines alone: a task an operator held was nowhere on the overview.
    held_campaigns: list = field(default_factory=list)
    held_tasks: list = field(default_factory=list)
    held_tasks_total: int = 0
    # The hand-over holds back-fill waits for (migration 0117), each with `said` as `hrwsi status` says it: ops watching
    # the dashboard saw back-fill waiting beside free room and no reason. Empty while no back-fill waits (a hold then
    # costs nothing), as status says them.
    handover_holds: list = field(default_factory=list)
    # The line the page starts with while the database refuses writes (database_trouble.refusing_writes_said, as
    # `hrwsi status` says it); None while it takes them.
    writes_refused: str | None = None

    @property
    def waiting(self) -> int:
        return sum(r.waiting for r in self.routines)

    @property
    def oldest_s(self) -> float | None:
        ages = [r.oldest_s for r in self.routines if r.oldest_s is not None]
        return max(ages) if ages else None

    @property
    def processed_1h(self) -> int:
        return sum(r.processed_1h for r in self.routines)

    @property
    def failed_1h(self) -> int:
        return sum(r.failed_1h for r in self.routines)


def _alert_queue(row: asyncpg.Record) -> dict:
    """The outbox's count and age, with `untried_said` when none was ever tried, as `hrwsi status` says it."""
    return dict(row) | {"untried_said": alerts_untried_said(row["untried_oldest_s"])}


def held_routines(rows: list[RoutineRow]) -> list[RoutineRow]:
    """One row per held routine, its tasks held in every lane counted together, as `hrwsi status` lists them
    (report_held_routines). The rows are per routine and lane: a held routine with tasks in two lanes (its production and
    a back-fill campaign's) was listed twice under "Held work", each with the tasks of one lane, and counted twice in
    the "routines on hold" tile, where status said one (found by exploratory testing, 2026-12-08)."""
    held: dict[str, RoutineRow] = {}
    for row in rows:
        if not row.on_hold:
            continue
        if row.routine not in held:
            held[row.routine] = replace(row, lane="all", counts={"on_hold": 0})
        held[row.routine].counts["on_hold"] += row.counts.get("on_hold", 0)
    return list(held.values())


async def read_overview(conn: asyncpg.Connection, stale_after_s: float, refused_here: bool = False,
                        timeliness_cache: TimelinessCache | None = None) -> Overview:
    started = time.perf_counter()
    rows: dict[tuple[str, str], RoutineRow] = {}

    def row_of(routine: str, lane: str) -> RoutineRow:
        return rows.setdefault((routine, lane), RoutineRow(routine, lane))

    totals = dict.fromkeys(TASK_STATES, 0)
    counts = await conn.fetch(query("web_task_counts"))
    for r in counts:
        row_of(r["routine"], r["lane"]).counts[r["state"]] = r["n"]
        totals[r["state"]] = totals.get(r["state"], 0) + r["n"]
    for r in backlog_of(counts):  # (read with the counts, in one pass over the open tasks: session 76)
        row = row_of(r["routine"], r["lane"])
        row.waiting, row.oldest_s = r["waiting"], r["oldest_s"]
    for r in await conn.fetch(query("web_throughput"), 3600.0):
        row = row_of(r["routine"], r["lane"])
        if r["state"] == "processed":
            row.processed_1h, row.mean_run_s = r["n"], r["mean_run_s"]
        elif r["state"] in ("internal_error", "external_error"):
            row.failed_1h += r["n"]
    routines = {r["name"]: r for r in await conn.fetch(query("web_routines"))}
    for name in routines:
        if not any(key[0] == name for key in rows):
            row_of(name, "all")
    for row in rows.values():
        info = routines.get(row.routine)
        if info is not None:
            row.on_hold, row.hold_reason = info["on_hold"], info["hold_reason"]
            row.consecutive_failures, row.hold_after_failures = info["consecutive_failures"], info["hold_after_failures"]
            if not row.on_hold and info["backfill_hold_reason"] and row.lane in info["backfill_lanes"]:
                # (its back-fill alone is held, by its failures: its near-real-time rows are not; migration 0075)
                row.on_hold, row.hold_reason = True, "back-fill on hold: " + info["backfill_hold_reason"]
                row.consecutive_failures = info["backfill_consecutive_failures"]
                row.hold_next = held_routine_next_step(row.routine, backfill_only=True)
            elif row.on_hold:
                row.hold_next = held_routine_next_step(row.routine)
    ordered = sorted(rows.values(), key=lambda r: (r.routine, r.lane))
    buckets = {r["bucket"]: dict(r) for r in await conn.fetch(query("web_throughput_series"), float(SERIES_WINDOW_S),
                                                              float(SERIES_BUCKET_S))}
    count = SERIES_WINDOW_S // SERIES_BUCKET_S
    series = [buckets.get(b, {"bucket": b, "processed": 0, "failed": 0, "other": 0}) for b in range(count - 1, -1, -1)]
    services = await read_services(conn, stale_after_s)
    # (the code on disk where the dashboard runs, against what each service of this host started with)
    await asyncio.to_thread(mark_changed, [s for s in services if s["fresh"]])
    overview = Overview(
        read_s=0.0, totals=totals, routines=ordered, held=held_routines(ordered), series=series,
        alert_queue=_alert_queue(await conn.fetchrow(query("web_alert_queue"))),
        alerts=[dict(r) for r in await conn.fetch(query("web_alerts"), None, 8)],
        services=services,
        sources=[source | {"refused_said": refused_files_said(source)}
                 for source in map(describe_source, await conn.fetch(query("web_sources")))],
        failures=[dict(r) for r in await conn.fetch(query("web_recent_failures"), 10)],
        unplannable=[dict(r) for r in await conn.fetch(query("web_unplannable"), 20)],
        queued_long=[dict(r) for r in await conn.fetch(query("web_jobs_queued_long"), QUEUED_LONG_AFTER_S,
                                                      QUEUED_LONG_SHOWN)],
        running_long=[dict(r) | {"next": running_long_next_step(r)}
                      for r in await conn.fetch(query("web_jobs_running_long"), RUNNING_LONG_FACTOR, RUNNING_LONG_MIN_S,
                                                RUNNING_LONG_SHOWN)],
        timeliness=await (read_timeliness(conn) if timeliness_cache is None else timeliness_cache.get(conn)),
        deadlines=timeliness.deadline_sentences(await conn.fetchrow(query("report_deadlines_now"))),
        latest_plan=_record(await conn.fetchrow(query("web_latest_plan"))))
    newest = await conn.fetchrow(query("newest_migration_recorded"))
    overview.versions = migrations.service_versions([s for s in services if s["fresh"]],
                                                    *(tuple(newest) if newest else (None, None)))
    overview.services_gone = services_gone(services, [s for s in services if s["fresh"]])
    overview.long_transactions = [dict(r) | {"next": long_transaction_next_step(r)} for r in await conn.fetch(
        query("web_long_transactions"), LONG_TRANSACTION_AFTER_S, LONG_TRANSACTIONS_SHOWN)]
    overview.sessions_not_seen = sessions_not_seen_said(await conn.fetchrow(query("report_sessions_not_seen")))
    overview.writes_refused = refusing_writes_said(await conn.fetchrow(query("report_writes_refused")), stale_after_s,
                                                   refused_here)
    overview.connections = short_of_connections(await conn.fetchrow(query("report_connection_slots")), CONNECTIONS_SAID_AT)
    overview.held_campaigns = [dict(r) | {"next": held_campaign_next_step(r["campaign"])}
                               for r in await conn.fetch(query("web_held_campaigns"), HELD_SHOWN)]
    overview.held_tasks = [dict(r) | {"next": held_task_next_step(r)}
                           for r in await conn.fetch(query("web_held_tasks"), HELD_SHOWN)]
    overview.held_tasks_total = overview.held_tasks[0]["total"] if overview.held_tasks else 0
    overview.handover_holds = await read_handover_holds(conn, None)
    overview.read_s = time.perf_counter() - started
    return overview


async def read_handover_holds(conn: asyncpg.Connection, worker: str | None) -> list[dict]:
    """The hand-over holds back-fill waits for (on `worker`; None: any), each with `said` (reports.handover_hold_said,
    the words of `hrwsi status` and `hrwsi task show`); none while no back-fill waits, as status says them."""
    holds = [dict(r) for r in await conn.fetch(query("web_handover_holds"), worker, HANDOVER_HOLDS_SHOWN)]
    if not holds or not holds[0]["back_fill_waiting"]:
        return []
    return [hold | {"said": handover_hold_said(hold)} for hold in holds]


async def read_services(conn: asyncpg.Connection, stale_after_s: float) -> list[dict]:
    """The service rows as `hrwsi status` reads and judges them (the same queries, reports.judge_services and
    folded_away), each with `fresh` (alive: an instance taken over as dead is not, whatever its real last
    heartbeat, migration 0082), `age_s` (its heartbeat's age) and `folded` (a replaced instance, counted in
    one line unless the page asks for every row)."""
    services = [dict(r) for r in await conn.fetch(query("report_services"))]
    held = None
    if any(s["site"] for s in services):  # (launchers of the local backend: a stale one holding jobs is listed)
        held = {r["owner"]: r["jobs"] for r in await conn.fetch(query("report_local_jobs_held"))}
    judge_services(services, held, stale_after_s)
    return [s | {"fresh": is_alive(s, stale_after_s), "age_s": s["heartbeat_age_s"], "folded": folded_away(s, stale_after_s)}
            for s in services]


TIMELINESS_DAYS = 7  # the overview's timeliness: its newest days with a product, at most (read_timeliness)
TIMELINESS_COLUMNS = ("routine", "lane", "tile", "day", "products", "after sensing", "after publication", "on time")


async def read_timeliness(conn: asyncpg.Connection, limit: int = 50, days: int = TIMELINESS_DAYS) -> dict | None:
    """The rows of the timeliness view (issue 12), newest day first, as {columns, rows} of text as
    `hrwsi timeliness` prints them (delays as 3.5 h, the share on time as 97.0 % (97/100)), or None
    while the view does not exist. Read a day at a time from the newest day with a product, until `limit` rows or
    `days` days: what it reads grows with a day's products, never with the archive's (migration 0100)."""
    view = await conn.fetchrow(query("web_timeliness_view"))
    if not view["exists"]:
        return None
    rows: list[list] = []
    day = None
    for _ in range(days):
        if len(rows) >= limit or (day := await conn.fetchval(query("web_timeliness_day_before"), day)) is None:
            break
        rows += [[r["routine"], r["lane"], r["tile"], r["day"].isoformat() if r["day"] else None, r["products"],
                  _delays(r["p50_from_sensing_s"], r["p95_from_sensing_s"]),
                  _delays(r["p50_from_publication_s"], r["p95_from_publication_s"]),
                  timeliness.share_text(r["on_time"], r["with_deadline"])]
                 for r in await conn.fetch(query("web_timeliness_day"), day, limit - len(rows))]
    return {"columns": list(TIMELINESS_COLUMNS), "rows": rows, "read_at": f"{view['now']:%H:%M:%S} UTC"}


# The overview's timeliness is read at most once a minute, whatever the changes and the viewers. Why: it reads the
# newest day's products, tens of thousands a day in production (180 ms at 26,070, growing through the day), on every
# read of the overview, which a busy installation makes at every change (after its rest, OVERVIEW_REST_FACTOR); a
# day's delays and share on time move little in a minute, and the section says when it was read (session 76).
TIMELINESS_MAX_AGE_S = 60.0


class TimelinessCache:
    """The overview's timeliness (read_timeliness), read again once it is TIMELINESS_MAX_AGE_S old."""

    def __init__(self, max_age_s: float = TIMELINESS_MAX_AGE_S):
        self.max_age_s = max_age_s
        self._value: tuple[float, dict | None] | None = None  # (when it was read, monotonic; what was read)

    async def get(self, conn: asyncpg.Connection) -> dict | None:
        if self._value is not None and time.monotonic() - self._value[0] < self.max_age_s:
            return self._value[1]
        value = await read_timeliness(conn)
        self._value = (time.monotonic(), value)
        return value


def _delays(p50: float | None, p95: float | None) -> str:
    return f"{timeliness.duration_text(p50)} / {timeliness.duration_text(p95)}"


def _record(record) -> dict | None:
    return None if record is None else dict(record)


# The overview's reads take at most 1 / (1 + OVERVIEW_REST_FACTOR) of the time: after a read of R s, the next waits
# until OVERVIEW_REST_FACTOR x R s have passed. Why: a busy installation changes every half second (live.MIN_INTERVAL_S),
# and each change had every open overview read it again, however long the read (its counts per routine, lane and
# state read every task then: 0.13 s at 100,000 tasks, 0.2 to 0.5 s at 1,000,000, which made the dashboard alone a
# database core's work while someone watched; the finished tasks' counts are kept since migration 0105). A request
# meanwhile waits for the read after the rest, never an older overview: a page asked for after an operator's action
# shows it.
OVERVIEW_REST_FACTOR = 3.0


class OverviewCache:
    """One overview per change, whatever the number of viewers: the first reader after a change
    reads it, the others wait for that read and share it; reads are spaced out (OVERVIEW_REST_FACTOR)."""

    def __init__(self, pool: asyncpg.Pool, stale_after_s: float, max_age_s: float = 30.0,
                 rest_factor: float = OVERVIEW_REST_FACTOR, refused_here: Callable[[], bool] = lambda: False):
        self.pool = pool
        # Whether the dashboard's own service has its writes refused now: the overview read before it changed is
        # read again (it served the overview without the line for up to max_age_s; found by review).
        self.refused_here = refused_here
        self.stale_after_s = stale_after_s
        self.max_age_s = max_age_s
        self.rest_factor = rest_factor
        self.generation = 0
        self._value: tuple[int, float, Overview, bool] | None = None
        self._lock = asyncio.Lock()
        self._last_read: tuple[float, float] | None = None  # (start, end) of the latest read, in loop time
        self.timeliness = TimelinessCache()

    def invalidate(self) -> None:
        self.generation += 1

    async def get(self) -> Overview:
        async with self._lock:
            refused = self.refused_here()
            if self._value is not None:
                generation, at, value, was_refused = self._value
                if generation == self.generation and time.monotonic() - at < self.max_age_s and was_refused == refused:
                    return value
            loop = asyncio.get_running_loop()
            if self._last_read is not None:
                start, end = self._last_read
                if (rest := end + self.rest_factor * (end - start) - loop.time()) > 0:
                    await asyncio.sleep(rest)  # (the changes meanwhile are read with it)
            generation = self.generation
            start = loop.time()
            async with self.pool.acquire() as conn:
                value = await read_overview(conn, self.stale_after_s, refused, timeliness_cache=self.timeliness)
            self._last_read = (start, loop.time())
            self._value = (generation, time.monotonic(), value, refused)
            return value


@dataclass(frozen=True)
class TaskFilters:
    state: str | None = None
    routine: str | None = None
    tile: str | None = None
    worker: str | None = None
    lane: str | None = None
    search: str | None = None  # a piece of an input's file name
    path: str | None = None  # an input's whole path
    before: int | None = None

    @classmethod
    def from_query(cls, params) -> TaskFilters:
        """Filters from a query string. The search box takes a piece of an input's file name, a
        whole input path (with a /), or a tile code (32TLR); a task id is handled by the page (it
        opens the task)."""

        def text(name: str, limit: int = 200) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > limit:
                # (it was cut to the limit and the cut value filtered: a worker's name of 200 characters with
                # more after it listed that worker's tasks, and a long search piece matched what its start
                # matched; found by exploratory testing)
                raise ValueError(f"{name}= is {len(value):,} characters long: no {'search' if name == 'q' else name} "
                                 f"is longer than {limit:,}.")
            return value or None

        # A tile code is upper case in the inputs (32TLR); the form takes what is typed, as the CLI's --tile does.
        search, tile, path = text("q", 4096), (text("tile") or "").upper() or None, None
        if search and len(search) == 5 and is_ascii_decimal(search[:2]) and search[2:].isascii() and search[2:].isalpha() \
                and not tile:
            tile, search = search.upper(), None
        elif search and "/" in search:
            path, search = search, None
        before, state = text("before"), text("state")
        if state is not None and state not in TASK_STATES:  # (it showed no task, as if none were in that state)
            raise ValueError(f"No task state {state!r}: one of {', '.join(TASK_STATES)}.")
        return cls(state=state, routine=text("routine"), tile=tile, worker=text("worker"), lane=text("lane"),
                   search=search, path=path, before=page_cursor(before))

    def query_string(self, **changes) -> dict[str, str]:
        values = {"state": self.state, "routine": self.routine, "tile": self.tile, "worker": self.worker,
                  "lane": self.lane, "q": self.search or self.path, "before": self.before} | changes
        return {k: str(v) for k, v in values.items() if v is not None}


def page_of(rows: list[dict], size: int = PAGE_SIZE) -> tuple[list[dict], int | None]:
    """A page read as `size` + 1 rows, newest first: its rows, and the cursor of the next (older)
    page (the last row's id), or None when this is the last page."""
    return rows[:size], (rows[size - 1]["id"] if len(rows) > size else None)


async def read_tasks(conn: asyncpg.Connection, filters: TaskFilters, limit: int = PAGE_SIZE) -> list[dict]:
    rows = await conn.fetch(query("web_tasks"), filters.state, filters.routine, filters.tile, filters.worker,
                            filters.lane, filters.search, filters.before, limit, filters.path)
    return [dict(r) for r in rows]


async def read_filter_choices(conn: asyncpg.Connection) -> dict[str, list[str]]:
    routines = [r["name"] for r in await conn.fetch(query("web_routines"))]
    workers = [r["name"] for r in await conn.fetch(query("web_workers"))]
    lanes = [r["name"] for r in await conn.fetch(query("web_lanes"))]
    return {"state": list(TASK_STATES), "routine": routines, "worker": workers, "lane": lanes}


@dataclass
class TaskPage:
    task: dict
    events: list
    jobs: list
    products: list
    up: list
    down: list
    audit: list
    log: dict | None
    # When retention deleted the task's history and attempts (README, Retention): with no jobs left,
    # the page and the API say so, as `hrwsi task show` does, rather than "no attempt yet".
    history_pruned_at: datetime | None = None
    # The attempts listed are the latest ATTEMPTS_SHOWN below attempts_before (None: its latest), of attempts_total;
    # attempts_older: the attempts_before of the page of older ones (None: there are none).
    attempts_total: int = 0
    attempts_before: int | None = None
    attempts_older: int | None = None


async def read_task(conn: asyncpg.Connection, task_id: int, data_dir: Path, attempt: int | None = None,
                    ui_link: Callable[[str, str], str | None] | None = None, attempts_before: int | None = None,
                    attempts_shown: int = ATTEMPTS_SHOWN) -> TaskPage | None:
    task = await conn.fetchrow(query("web_task"), task_id)
    if task is None:
        return None
    newest_first = [dict(r) for r in await conn.fetch(query("web_task_jobs"), task_id, attempts_before, attempts_shown + 1)]
    total = newest_first[0].pop("total") if newest_first else 0
    older = newest_first[attempts_shown - 1]["attempt"] if len(newest_first) > attempts_shown else None
    jobs = newest_first[:attempts_shown][::-1]
    for job in jobs:
        job.pop("total", None)
        job["ui_link"] = ui_link(job["backend"], job["backend_job_id"]) if ui_link else None
    # The log shown: the attempt asked for, else the latest, read apart when this page does not list it.
    chosen = next((j for j in jobs if j["attempt"] == attempt), None) if attempt else (
        jobs[-1] if jobs and attempts_before is None else None)
    if chosen is None and (attempt or (attempts_before is not None and total)):
        chosen = _record(await conn.fetchrow(query("web_task_job"), task_id, attempt))
    log = await asyncio.to_thread(read_log_tail, chosen["log_path"], data_dir) if chosen else None
    if log is not None:
        log["attempt"] = chosen["attempt"]
    from hrwsi.reports import priority_inherited_text, series_ahead_text, task_next_step
    # What a waiting less urgent task waits for besides capacity, as `hrwsi task show` says it: the hand-over holds on
    # its planned worker (any worker while pending), migration 0117.
    holds = (await read_handover_holds(conn, task["worker"])
             if task["state"] in ("pending", "planned") and task["priority"] > 0 else [])
    return TaskPage(
        task=dict(task) | {"series_ahead": series_ahead_text(
            dict(await conn.fetchrow(query("web_task_series_ahead"), task_id))), "next": task_next_step(dict(task)),
            "priority_inherited": priority_inherited_text(dict(task)), "handover_holds": holds},
        events=[dict(r) for r in await conn.fetch(query("web_task_events"), task_id, HISTORY_SHOWN)],
        jobs=jobs,
        products=[dict(r) for r in await conn.fetch(query("web_task_products"), task_id, 200)],
        up=_nearest(await conn.fetch(query("web_lineage_up"), task_id, LINEAGE_DEPTH, LINEAGE_ROWS)),
        down=_nearest(await conn.fetch(query("web_lineage_down"), task_id, LINEAGE_DEPTH, LINEAGE_ROWS)),
        audit=[dict(r) for r in await conn.fetch(query("web_task_audit"), str(task_id), 20)],
        log=log, history_pruned_at=task["history_pruned_at"], attempts_total=total, attempts_before=attempts_before,
        attempts_older=older)


def _nearest(rows) -> list[dict]:
    """Each related task once, at its nearest depth (a diamond in the chain reaches it twice)."""
    seen: dict[int, dict] = {}
    for row in sorted(rows, key=lambda r: (r["depth"], r["task_id"])):
        seen.setdefault(row["task_id"], dict(row))
    return list(seen.values())


def read_log_tail(path: str | None, data_dir: Path, limit: int = LOG_TAIL_BYTES) -> dict:
    """The end of a job's log, if it is a file under hrwsi's data directory (a path in the
    database is never a licence to read any file on this machine)."""
    if not path:
        return {"path": None, "text": None, "why": "this attempt has no log path"}
    resolved = Path(os.path.realpath(path))
    root = Path(os.path.realpath(data_dir))
    if not resolved.is_relative_to(root):
        return {"path": path, "text": None, "why": f"the log is outside this dashboard's data directory ({root})"}
    try:
        with resolved.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            data = file.read()
    except FileNotFoundError:
        return {"path": path, "text": None, "why": "the log file is not on this machine (yet)"}
    except OSError as error:
        return {"path": path, "text": None, "why": f"the log cannot be read: {error.strerror}"}
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = text.split("\n", 1)[-1]
    return {"path": path, "text": text, "size": size, "truncated": size > limit, "why": None}


@dataclass
class Schedule:
    rows: list
    workers: list
    budget: dict | None
    total: int
    latest_plan: dict | None
    now: datetime  # the database's now() (its clock rules: database_clock.py), not the web server's


async def read_schedule(conn: asyncpg.Connection, limit: int = SCHEDULE_LIMIT) -> Schedule:
    """The current schedule, read in one transaction: the bars' ends (now() in web_schedule) and the chart's
    now line and "overdue" (now() in web_schedule_size) are one instant of the database's clock. The web
    server's own clock said a task overdue that `hrwsi plan show` did not, on a host whose clock was off."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        size = await conn.fetchrow(query("web_schedule_size"))
        return Schedule(
            rows=[dict(r) for r in await conn.fetch(query("web_schedule"), limit)],
            workers=[dict(r) for r in await conn.fetch(query("web_workers"))],
            budget=_record(await conn.fetchrow(query("web_budget"))),
            total=size["total"], now=size["now"],
            latest_plan=_record(await conn.fetchrow(query("web_latest_plan"))))


def page_cursor(before: str | None) -> int | None:
    """?before=ID, the id a page of a list read newest first starts below; refused when it is not one
    (it was read as none: `before=abc` or `before=-5` answered the first page, and a script following
    a mangled cursor read that page for ever; found by exploratory testing)."""
    if before is None or before == "":
        return None
    cursor = ascii_decimal(before)  # (int() refuses '²', which isdigit takes)
    if cursor is None:
        raise ValueError(f"before={before[:40]!r} is not an id: give the id of the last row of the page before")
    return cursor


async def read_alert_queue(conn: asyncpg.Connection) -> dict:
    return _alert_queue(await conn.fetchrow(query("web_alert_queue")))


async def read_alerts(conn: asyncpg.Connection, before: int | None, limit: int = PAGE_SIZE) -> list[dict]:
    return [dict(r) for r in await conn.fetch(query("web_alerts"), before, limit)]


async def read_audit(conn: asyncpg.Connection, before: int | None, limit: int = PAGE_SIZE) -> list[dict]:
    return [dict(r) for r in await conn.fetch(query("web_audit"), before, limit)]
