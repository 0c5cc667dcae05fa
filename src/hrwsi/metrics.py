"""Prometheus metrics and the liveness of each service instance.

Three kinds of figures, all served by `hrwsi.instance_server` at /metrics:

- **this process's work**, counted as it happens (hooks in `service.Service`, the orchestrator and
  the launcher): step durations and errors per service and step, planning time, tasks planned;
- **this process's instances**, read at scrape time: listener reconnects, tasks dispatched, the age
  of each instance's last loop turn and heartbeat;
- **the database's state**, read at scrape time with a few indexed queries and cached for
  `SNAPSHOT_MAX_AGE_S` (every instance shows the same figures: aggregate them with `max without
  (instance)`): tasks per routine, lane and state (the finished ones as the task triggers keep them,
  never counted from the archive: `read_snapshot`), active jobs, jobs finished in the last hour,
  backlog age, the alert queue, routines on hold; and, for the launchers of this process, the
  dispatch latency of each first attempt (input inserted -> job submitted).

`InstanceHealth` is what /healthz and /readyz know about one instance: when its loop last turned,
when its heartbeat was last tried and last succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from hrwsi.database import TRANSIENT_DATABASE_ERRORS
from hrwsi.migrations import build_version
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

# Not prometheus_client's global registry: what a library imported beside hrwsi registers there is
# not ours to serve.
REGISTRY = CollectorRegistry(auto_describe=True)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STEP_SECONDS = Histogram("hrwsi_step_seconds", "How long one run of a service step took",
                         ["service", "step"], buckets=_SECONDS, registry=REGISTRY)
STEP_ERRORS = Counter("hrwsi_step_errors", "Step runs that failed, by kind: database_unavailable (waited "
                      "out), database (refused by PostgreSQL), statement_timeout, unexpected (a bug)",
                      ["service", "step", "kind"], registry=REGISTRY)
PLAN_SECONDS = Histogram("hrwsi_plan_seconds", "Planner computing time of each stored plan",
                         buckets=_SECONDS, registry=REGISTRY)
PLANNED_TASKS = Counter("hrwsi_planned_tasks", "Tasks assigned to a worker by this process's orchestrators",
                        registry=REGISTRY)
DISPATCH_LATENCY = Histogram("hrwsi_dispatch_latency_seconds",
                             "First attempts dispatched by this process's launchers: input inserted -> job "
                             "submitted", buckets=_SECONDS + (300, 900, 3600), registry=REGISTRY)

SNAPSHOT_MAX_AGE_S = 5.0  # one set of database queries per 5 s, however many scrapers
SNAPSHOT_TIMEOUT_S = 5.0
DISPATCH_SCAN_LIMIT = 10_000


def error_kind(error: BaseException) -> str:
    if isinstance(error, TRANSIENT_DATABASE_ERRORS):
        return "database_unavailable"
    if isinstance(error, asyncpg.PostgresError):
        return "database"
    return "unexpected"


class InstanceHealth:
    """The liveness of one service instance, kept up to date by hooks in `service.Service`."""

    def __init__(self, service: str, classify: Callable[[BaseException], str] = error_kind):
        self.service = service
        self.classify = classify  # a failed step's kind, for hrwsi_step_errors_total
        self.loop_at: float | None = None
        self.heartbeat_tried_at: float | None = None
        self.heartbeat_ok_at: float | None = None
        # When a heartbeat last failed to reach the database (monotonic): not ready from then until
        # one reaches it again, whatever the lease still allows.
        self.heartbeat_failed_at: float | None = None

    def loop_turned(self) -> None:
        self.loop_at = time.monotonic()

    def heartbeat_tried(self) -> None:
        self.heartbeat_tried_at = time.monotonic()

    def heartbeat_ok(self) -> None:
        self.heartbeat_ok_at = self.heartbeat_tried_at = time.monotonic()

    def heartbeat_failed(self) -> None:
        self.heartbeat_failed_at = time.monotonic()

    async def timed_step(self, name: str, step: Callable[[], Awaitable[bool]]) -> bool:
        """Run a step, recording its duration and, if it raises, the kind of failure (re-raised)."""
        started = time.monotonic()
        try:
            return await step()
        except Exception as error:
            STEP_ERRORS.labels(self.service, name, self.classify(error)).inc()
            raise
        finally:
            STEP_SECONDS.labels(self.service, name).observe(time.monotonic() - started)

    @staticmethod
    def _age(at: float | None, now: float) -> float | None:
        return None if at is None else now - at

    def ages(self, now: float | None = None) -> dict[str, float | None]:
        now = time.monotonic() if now is None else now
        return {"loop_age_s": self._age(self.loop_at, now),
                "heartbeat_tried_age_s": self._age(self.heartbeat_tried_at, now),
                "heartbeat_ok_age_s": self._age(self.heartbeat_ok_at, now)}

    def liveness_problems(self, stale_after_s: float, now: float | None = None) -> list[str]:
        """Why this instance is hung (empty: alive). A database outage is not a liveness problem:
        the loop and the heartbeat go on trying; /readyz reports it."""
        ages = self.ages(now)
        problems = []
        if ages["loop_age_s"] is not None and ages["loop_age_s"] > stale_after_s:
            problems.append(f"its loop has not turned for {ages['loop_age_s']:.0f} s (limit {stale_after_s:.0f} s)")
        tried = ages["heartbeat_tried_age_s"]
        if tried is not None and tried > stale_after_s:
            problems.append(f"its heartbeat has not run for {tried:.0f} s (limit {stale_after_s:.0f} s)")
        return problems

    def readiness_problems(self, lease_timeout_s: float, now: float | None = None) -> list[str]:
        ages = self.ages(now)
        if ages["loop_age_s"] is None:
            return ["it is starting: its loop has not run yet"]
        ok = ages["heartbeat_ok_age_s"]
        if ok is None or ok > lease_timeout_s:
            return ["its heartbeat has not reached the database within its lease "
                    f"({lease_timeout_s:.0f} s); other replicas may take over its work"]
        # A heartbeat that failed after the last that reached the database: the database is away now,
        # though the lease still runs. (Ready was said from a heartbeat up to the whole lease old, 30 s
        # by default, while the database was down: found by exploratory testing.)
        failed = self._age(self.heartbeat_failed_at, time.monotonic() if now is None else now)
        if failed is not None and failed < ok:
            return [f"its last heartbeat could not reach the database ({failed:.0f} s ago; the last that did "
                    f"was {ok:.0f} s ago)"]
        return []


@dataclass
class DatabaseSnapshot:
    """The database-wide figures, read at most every SNAPSHOT_MAX_AGE_S and shared by all scrapes."""

    taken_at: float = 0.0
    up: bool = False
    tasks: list = field(default_factory=list)
    active_jobs: list = field(default_factory=list)
    finished_jobs: list = field(default_factory=list)
    backlog: list = field(default_factory=list)
    alert_queue: tuple = (0, None)
    routines: list = field(default_factory=list)


class DatabaseFigures:
    """Reads `DatabaseSnapshot`s, and the dispatch latency of the given launchers' new jobs."""

    def __init__(self, pool: asyncpg.Pool, launcher_ids: Callable[[], list[str]] = list):
        self.pool = pool
        self.launcher_ids = launcher_ids
        self.snapshot = DatabaseSnapshot()
        self.max_age_s = SNAPSHOT_MAX_AGE_S
        self._lock = asyncio.Lock()
        self._last_job_id: int | None = None

    async def start(self) -> None:
        """Dispatch latency is measured for jobs created from now on."""
        try:
            async with self.pool.acquire() as conn:
                self._last_job_id = await conn.fetchval(query("metrics_last_job_id"))
        except TRANSIENT_DATABASE_ERRORS as error:
            logger.warning("metrics: cannot read the last job id yet (%s); dispatch latency starts later", error)

    async def refresh(self) -> DatabaseSnapshot:
        async with self._lock:
            if time.monotonic() - self.snapshot.taken_at < self.max_age_s:
                return self.snapshot
            try:
                self.snapshot = await asyncio.wait_for(self._read(), SNAPSHOT_TIMEOUT_S)
            except (TimeoutError, *TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
                # A TimeoutError says nothing (its text is empty: the log read "figures ()"). A read
                # slower than SNAPSHOT_TIMEOUT_S is a failed read, so up 0 (README.md: alert on it), and
                # the log says it was slow rather than that the database is down.
                reason = (f"it did not answer within {SNAPSHOT_TIMEOUT_S:g} s" if isinstance(error, TimeoutError)
                          else f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
                logger.warning("metrics: cannot read the database's figures (%s); serving hrwsi_database_up 0", reason)
                self.snapshot = DatabaseSnapshot(taken_at=time.monotonic(), up=False)
            return self.snapshot

    async def _read(self) -> DatabaseSnapshot:
        async with self.pool.acquire() as conn:
            snapshot = await read_snapshot(conn)
            await self._observe_dispatches(conn)
        return snapshot

    async def _observe_dispatches(self, conn: asyncpg.Connection) -> None:
        launchers = self.launcher_ids()
        if not launchers:
            return
        if self._last_job_id is None:
            self._last_job_id = await conn.fetchval(query("metrics_last_job_id"))
            return
        # Keyset over job ids: each job is read once. (A job whose id was taken before a later
        # one's but committed after it is missed: a metric may lose a sample, never count one twice.)
        rows = await conn.fetch(query("metrics_new_jobs"), launchers, self._last_job_id, DISPATCH_SCAN_LIMIT)
        for row in rows:
            self._last_job_id = max(self._last_job_id, row["id"])
            if row["latency_s"] is not None:
                DISPATCH_LATENCY.observe(max(0.0, row["latency_s"]))


WAITING_STATES = ("pending", "planned")  # the backlog: tasks waiting to start


def backlog_of(task_counts: Iterable) -> list[dict]:
    """The backlog per routine and lane, from the rows of web_task_counts (routine, lane, state, n, oldest_s): how
    many tasks wait to start (pending or planned) and the age of the oldest. Read in the same pass as the counts: a
    read of its own went over the pending and planned tasks a second time (session 76)."""
    backlog: dict[tuple[str, str], dict] = {}
    for row in task_counts:
        if row["state"] in WAITING_STATES:
            entry = backlog.setdefault((row["routine"], row["lane"]), {"routine": row["routine"], "lane": row["lane"],
                                                                      "waiting": 0, "oldest_s": None})
            entry["waiting"] += row["n"]
            if row["oldest_s"] is not None:
                entry["oldest_s"] = row["oldest_s"] if entry["oldest_s"] is None else max(row["oldest_s"], entry["oldest_s"])
    return list(backlog.values())


async def read_snapshot(conn: asyncpg.Connection) -> DatabaseSnapshot:
    """The database's figures, each read through an index or a kept count: what a read costs grows with the work at
    hand (open tasks, active jobs, the last hour's), never with the archive. The tasks per state counted every task
    ever run, every SNAPSHOT_MAX_AGE_S in every process scraped (several Prometheus servers scrape each); the
    finished ones are now kept by the task triggers (web_task_counts, migration 0105). The open tasks are read once,
    for their counts and the backlog (backlog_of)."""
    tasks = await conn.fetch(query("web_task_counts"))
    return DatabaseSnapshot(
        taken_at=time.monotonic(), up=True,
        tasks=tasks,
        active_jobs=await conn.fetch(query("metrics_active_jobs")),
        finished_jobs=await conn.fetch(query("web_throughput"), 3600.0),
        backlog=backlog_of(tasks),
        alert_queue=tuple(await conn.fetchrow(query("web_alert_queue")))[:2],  # (unsent, oldest_s)
        routines=await conn.fetch(query("web_routines")))


def _database_families(snapshot: DatabaseSnapshot) -> Iterable:
    up = GaugeMetricFamily("hrwsi_database_up", "1 when the last read of the database's figures succeeded")
    up.add_metric([], 1.0 if snapshot.up else 0.0)
    yield up
    if not snapshot.up:
        return
    tasks = GaugeMetricFamily("hrwsi_tasks", "Tasks per routine, lane and state", labels=["routine", "lane", "state"])
    for row in snapshot.tasks:
        tasks.add_metric([row["routine"], row["lane"], row["state"]], row["n"])
    yield tasks
    jobs = GaugeMetricFamily("hrwsi_jobs_active", "Jobs not ended yet per routine, lane and state",
                             labels=["routine", "lane", "state"])
    for row in snapshot.active_jobs:
        jobs.add_metric([row["routine"], row["lane"], row["state"]], row["n"])
    yield jobs
    finished = GaugeMetricFamily("hrwsi_jobs_finished_last_hour", "Jobs that ended in the last hour per routine, "
                                 "lane and final state", labels=["routine", "lane", "state"])
    for row in snapshot.finished_jobs:
        finished.add_metric([row["routine"], row["lane"], row["state"]], row["n"])
    yield finished
    waiting = GaugeMetricFamily("hrwsi_tasks_waiting", "Tasks pending or planned (not started) per routine and lane",
                                labels=["routine", "lane"])
    oldest = GaugeMetricFamily("hrwsi_backlog_age_seconds", "Age of the oldest task waiting (pending or planned) "
                               "per routine and lane", labels=["routine", "lane"])
    for row in snapshot.backlog:
        waiting.add_metric([row["routine"], row["lane"]], row["waiting"])
        oldest.add_metric([row["routine"], row["lane"]], row["oldest_s"] or 0.0)
    yield waiting
    yield oldest
    count, age = snapshot.alert_queue
    yield GaugeMetricFamily("hrwsi_alerts_unsent", "Alerts in the outbox not delivered yet", value=count)
    yield GaugeMetricFamily("hrwsi_alert_oldest_unsent_age_seconds", "Age of the oldest undelivered alert",
                            value=age or 0.0)
    held = GaugeMetricFamily("hrwsi_routine_on_hold", "1 when the routine is on hold", labels=["routine"])
    failures = GaugeMetricFamily("hrwsi_routine_consecutive_failures", "Consecutive failures of the routine",
                                 labels=["routine"])
    for row in snapshot.routines:
        held.add_metric([row["name"]], 1.0 if row["on_hold"] else 0.0)
        failures.add_metric([row["name"]], row["consecutive_failures"])
    yield held
    yield failures


def _instance_families(instances: list) -> Iterable:
    """Figures read from the live service objects of this process."""
    now = time.monotonic()
    info = GaugeMetricFamily("hrwsi_instance", "1 per service instance in this process", labels=["service", "instance"])
    reconnects = CounterMetricFamily("hrwsi_listener_reconnects", "Times the LISTEN connection was re-established",
                                     labels=["service"])
    loop_age = GaugeMetricFamily("hrwsi_loop_age_seconds", "Seconds since the service loop last turned",
                                 labels=["service"])
    heartbeat_age = GaugeMetricFamily("hrwsi_heartbeat_age_seconds", "Seconds since the last heartbeat reached the "
                                      "database", labels=["service"])
    dispatched = CounterMetricFamily("hrwsi_dispatched_tasks", "Tasks dispatched by this process's launchers",
                                     labels=["service"])
    problem = GaugeMetricFamily("hrwsi_service_problem", "1 while the service cannot work as it should (the "
                                "launcher's backend out of reach or refusing it, its attempts losing their storage; `hrwsi status` "
                                "says why)",
                                labels=["service"])
    for service in instances:
        health: InstanceHealth = service.health
        info.add_metric([service.kind, service.instance_id], 1.0)
        listener = getattr(service, "listener", None)
        reconnects.add_metric([service.kind], max(0, getattr(listener, "reconnects", 0) - 1))
        ages = health.ages(now)
        if ages["loop_age_s"] is not None:
            loop_age.add_metric([service.kind], ages["loop_age_s"])
        if ages["heartbeat_ok_age_s"] is not None:
            heartbeat_age.add_metric([service.kind], ages["heartbeat_ok_age_s"])
        if hasattr(service, "dispatched"):
            dispatched.add_metric([service.kind], service.dispatched)
        problem.add_metric([service.kind], 0.0 if service.problem() is None else 1.0)
    # The Prometheus convention for a version: one series of value 1, the version as its label (ops
    # see an upgrade half done as two versions at once: `count by (version) (hrwsi_build_info)`).
    build = GaugeMetricFamily("hrwsi_build_info", "The hrwsi version this process runs", labels=["version"])
    build.add_metric([build_version()], 1.0)
    yield from (info, reconnects, loop_age, heartbeat_age, dispatched, problem, build)


class _Families:
    def __init__(self, families: Callable[[], Iterable]):
        self._families = families

    def collect(self):
        return self._families()


def exposition(instances: list, snapshot: DatabaseSnapshot | None) -> bytes:
    """The Prometheus text exposition of this process: its counters, its instances, the database."""
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Families(lambda: _instance_families(instances)))
    if snapshot is not None:
        extra.register(_Families(lambda: _database_families(snapshot)))
    return generate_latest(REGISTRY) + generate_latest(extra)
