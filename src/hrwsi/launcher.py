"""The launcher: dispatches ready tasks to a backend, follows each job to its end, records the outcome.

Flow: `hrwsi_task` (a task pending or planned, or one that frees capacity) or `hrwsi_job` (a job
ended) -> step "dispatch": ONE call of the database function `hrwsi.dispatch` claims ready tasks
that fit their worker and every budget now, in serving order (lane, deadline, planned start, age;
ADR 0009), marks them dispatched and inserts one job row per attempt (unique per task and attempt:
no duplicate job, ever), and returns what to submit and whether it left work waiting (a job's end
wakes the step only then: otherwise the call would find nothing). Then each job is submitted and followed;
outcomes are recorded in batches by ONE call of `hrwsi.record_outcomes` (the job's end, its
products, the task's next state), and how jobs progress (queued, running) by one statement every
PROGRESS_BATCH_S. The dispatch and the outcomes are fenced by this launcher's lease: after a pause
longer than the lease it can neither start nor record work that another launcher adopted (and its
progress is written only for jobs it still owns).
Jobs whose launcher died are adopted (step "adopt") and reconciled with the backend. Jobs still
waiting for a worker that is no longer active are stopped and recorded lost (step
"release_stranded"); with Nomad, a side task keeps each worker's `active` flag in step with its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from hrwsi.backends.base import (
    AttemptLost,
    Backend,
    BackendSettingError,
    JobOutcome,
    JobSpec,
    TaskRefused,
    discover_products,
    log_last_line,
    lost_with_its_directory,
    output_directory_problem,
    with_last_line,
)
from hrwsi.backoff import DATABASE_CAP_S, Backoff
from hrwsi.database import DedicatedConnection
from hrwsi.database_trouble import CONFLICTS, describe
from hrwsi.harvest.input_checks import escaped
from hrwsi.service import (
    LEASE_LAPSED_SQLSTATE,
    TRANSIENT_DATABASE_ERRORS,
    AdaptiveBatch,
    Service,
    SideTask,
    is_lock_timeout,
    timed_statement,
)
from hrwsi.service_logging import task_fields
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)


def _fields(spec: JobSpec, **more) -> dict:
    """A job's record fields for a JSON log (hrwsi.service_logging): its task, job, routine and attempt."""
    return task_fields(spec.task_id, spec.job_id, spec.routine, attempt=spec.attempt, **more)


# At most this many tasks per dispatch call. Each call reads the work in flight once (to know what
# is free); at 500 a burst of 100,000 on free capacity took 200 calls, each slower than the last.
BATCH = 2000
OUTCOME_BATCH = 1000
# At most this many outcomes wait for the writer: when the database records them slower than jobs
# end, dispatching pauses (memory stays bounded) and resumes as the writer catches up. (A burst of
# 100,000 on a slowed machine once held every one of them: 468 MB.)
MAX_UNRECORDED = 5000
FINAL_TASK_STATES = ("processed", "terminated", "cancelled")
FINAL_JOB_STATES = ("processed", "internal_error", "external_error", "lost", "cancelled")
# A job waiting for a worker that went away is stopped (and its task planned elsewhere) once the worker
# has been away this long: as long as Nomad's own grace for a node that missed its heartbeat
# (nomad/config.go, HeartbeatGrace 10 s). A node down for a moment is waited for; stopping its jobs as
# it comes back killed them as they started (found by chaos: ADR 0006).
STRANDED_AFTER_S = 10.0
# Jobs an operator cancelled are stopped together, this many at a time at most (Launcher._stop_together).
CANCELS_AT_ONCE = 64
# How a job progresses (queued, running) is written for every job seen in this period at once, and
# not at all for a job whose end came first: its outcome says when it started. Nomad's own clients
# batch their allocation updates to the servers the same way (client/client.go, allocSyncIntv,
# 200 ms, the pending updates kept per allocation, the latest winning), so a job ending this fast is
# never seen running there either. One statement per job was, in the three-step chain, a fifth of
# the database's time (0.85 ms a job).
PROGRESS_BATCH_S = 0.2
# When the writer records more processed outcomes than this at once (a burst: many jobs ended
# together), they are logged in one line per routine with their task ids; every other outcome (a
# failure, a lost attempt, a cancel) still has a line of its own. One line per processed job was 8 %
# of the time of a burst of 10,000 and of one of 100,000 (measured 2026-12-01).
LOG_EACH_PROCESSED_UP_TO = 20
# Outcomes that come one at a time (jobs ending now and then, not in a burst) are written together:
# the writer waits up to this long after the first of them for others, as pgqueuer writes its jobs'
# ends (pgqueuer/core/buffers.py: every 0.1 s, or sooner when its batch is full) and Nomad's clients
# their allocations' updates (200 ms, above). In the three-step chain a call per 2.8 ending jobs on
# average, each then chained by the harvester in a statement of its own, cost a third of the
# database's CPU and a third of the harvester's, which the batching saved (2026-12-02, 1,000 inputs). Written at once, without
# waiting: OUTCOME_WRITE_AT_ONCE of them, a launcher stopping, and any outcome while the last
# dispatch left work waiting that this launcher had room for (what it waits for is in the database:
# capacity, a budget, a dependency, which an outcome frees). Work that waits for this launcher's own
# slots does not wait for the write: a job frees its slot as it ends (_job_left_the_backend).
OUTCOME_BATCH_S = 0.1
OUTCOME_WRITE_AT_ONCE = 100
# A job claimed ahead of a slot-limited backend that still waits for a slot after this long is shown
# as queued, with the reason (a shorter wait is not worth a write: in the three-step chain most
# start within a tenth of a second).
SHOW_HELD_AS_QUEUED_AFTER_S = 1.0
# After the first hand-over hold left ends (hrwsi.dispatch's holds_end_in), dispatch runs again this much later: the
# delay is counted from the database's now() at the call's start, the timer from its answer, so it is late already;
# this covers a host clock that runs a little faster than the server's.
HOLD_END_MARGIN_S = 0.01
# While its backend is out of reach (Backend.out_of_reach), a launcher claims no new work and asks the
# backend this often whether it answers again (Backend.probe, bounded by its own timeout, in a task of
# its own: no step waits for it); the moment it does, dispatch claims again.
REACH_PROBE_S = 2.0
# An attempt that lost its storage (storage_unavailable) makes it the launcher's problem until an attempt
# gets its storage again, or until none has been lost so for this long.
STORAGE_PROBLEM_FORGOTTEN_S = 600.0
# Why a job claimed ahead was never handed to the backend (the result of its wait for a slot).
_CANCELLED_WHILE_HELD = "cancelled"
_STOPPING_WHILE_HELD = "stopping"


@dataclass
class _Finished:
    job_id: int
    spec: JobSpec
    outcome: JobOutcome
    products: list[tuple[str, int]]
    stored: asyncio.Future
    owner: str  # the identity that followed the job: only it may record the outcome


@dataclass
class _StorageTrouble:
    """Attempts lost to the storage (storage_unavailable) since `since`, none given storage since."""

    since: datetime
    count: int
    last: str  # the latest one's reason
    seen: float  # (monotonic) when the latest one was lost


@dataclass
class _Progress:
    state: str
    reason: str
    seen_at: datetime
    owner: str


def _refused_for_good(error: asyncpg.PostgresError) -> bool:
    """Whether the database refuses what was written whatever the retry: a value it cannot hold
    (class 22, data exception) or one a constraint refuses (class 23, integrity violation)."""
    return (error.sqlstate or "")[:2] in ("22", "23")


def spec_from_row(row: asyncpg.Record) -> JobSpec:
    return JobSpec(
        job_id=row["backend_job_id"], task_id=row["task_id"], attempt=row["attempt"], routine=row["routine"],
        condition=row["condition"], input_path=row["input_path"], tile=row["tile"], worker=row["worker"],
        command=tuple(row["command"] or ()), image=row["image"], cpu=row["cpu"], ram_mb=row["ram_mb"],
        storage_mb=row["storage_mb"], output_dir=row["output_dir"], log_path=row["log_path"],
        timeout_s=row["timeout_s"], env=routine_env(row["env"]), manifest=row["manifest"], lane=row["lane"],
        claim=str(row["claim_token"]) if row["claim_token"] is not None else None, priority=row["priority"])


def routine_env(text: str | None) -> dict[str, str]:
    """A routine's own variables (its `env`, JSON text) as strings; most routines have none, which
    is not parsed (parsing "{}" took 0.9 of the 5 us of building a job's spec, 2,000 rows measured)."""
    if not text or text == "{}":
        return {}
    return {k: str(v) for k, v in json.loads(text).items()}


def task_ranges(task_ids: Iterable[int]) -> str:
    """Task ids as sorted runs, e.g. "1-3, 5, 7-8": a burst's thousand ids in a few characters."""
    runs: list[list[int]] = []
    for task_id in sorted(set(task_ids)):
        if runs and task_id == runs[-1][1] + 1:
            runs[-1][1] = task_id
        else:
            runs.append([task_id, task_id])
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def common_directory(paths: Iterable[str]) -> str:
    """The directory that holds all of `paths` (each job's log: one directory per routine)."""
    return os.path.commonpath({os.path.dirname(path) for path in paths})


# A host clock off the database's by more than this has its local attempts' times corrected; less is
# what measuring it cannot tell apart (the round trip), not worth a copy of every outcome.
CLOCK_CORRECTED_FROM_S = 0.05


class Launcher(Service):
    kind = "launcher"

    def __init__(self, pool: asyncpg.Pool, settings: Settings, backend: Backend):
        super().__init__(pool, settings)
        self.backend = backend
        self.dispatch_batch = AdaptiveBatch(BATCH)
        # Dispatch calls run one at a time on a session of their own while the service runs: one that
        # has not run the call yet plans it and its triggers again (hrwsi.database.DedicatedConnection).
        self._dispatch_connection = DedicatedConnection(pool)
        self.steps = {"dispatch": self.dispatch, "adopt": self.adopt, "cancel": self.cancel_requested_jobs,
                      "release_stranded": self.release_stranded_jobs}
        # Work to start wakes dispatch; the end of a job (capacity freed, a dependency over) only
        # when the last call left work waiting: otherwise that call would find nothing.
        self.router.on("hrwsi_task", "dispatch", when=lambda n: "pending" in n.counts or "planned" in n.counts
                       or (self._an_end_may_start_work() and any(s in n.counts for s in FINAL_TASK_STATES)))
        self.router.on("hrwsi_job", "dispatch",
                       when=lambda n: self._an_end_may_start_work() and any(s in n.counts for s in FINAL_JOB_STATES))
        self.router.on("hrwsi_task", "cancel", when=lambda n: "cancelled" in n.counts)
        self._following: dict[int, asyncio.Task] = {}
        # Followed jobs that ended in the backend and wait for their outcome to be stored: they no
        # longer hold one of the backend's slots (free_slots).
        self._ended: set[int] = set()
        # Jobs a dispatch call returned whose followers start in the next turn of the event loop
        # (_follow_dispatched); counted as followed by every check.
        self._starting: dict[int, asyncpg.Record] = {}
        self._specs: dict[int, JobSpec] = {}
        # Jobs being handed to the backend (submit), and those of them an operator cancelled meanwhile: stopped
        # once the backend says the ID it registered. A stop sent before named no job yet, or the ID a job this
        # database does not know holds, and the attempt ran on (found by exploratory testing).
        self._submitting: set[int] = set()
        self._cancel_when_registered: set[int] = set()
        # (the backend records here the ID and paths of its own an attempt goes to, before registering it)
        backend.record_runs_under = self._record_runs_under
        # Jobs claimed ahead of a slot-limited backend (the local one, claim_ahead): each waits here
        # for one of the backend's slots, urgent lanes first, then in the order claimed, and one
        # starts the moment a job ends, without a call to the database (the slot would otherwise
        # wait for the outcome's write and the next dispatch call: the three-step chain ran its
        # jobs in waves, 10.7 of 16 slots busy on average).
        self.claim_ahead = (0 if backend.max_concurrent_jobs is None
                            else settings.claim_ahead if settings.claim_ahead is not None
                            else backend.max_concurrent_jobs)
        self._held: list[tuple[int, int, int]] = []  # heap of (lane priority, order claimed, job)
        self._held_waits: dict[int, asyncio.Future[str | None]] = {}
        self._held_order = itertools.count()
        self._in_backend: set[int] = set()  # followed jobs that hold one of the backend's slots
        self._lane_priority: dict[str, int] = {}  # read at start, and again when a lane is new
        self._lanes_reading: asyncio.Task | None = None
        self._outcomes: asyncio.Queue[_Finished] = asyncio.Queue()
        self._write_outcomes_now = asyncio.Event()  # ends the writer's wait for more (OUTCOME_BATCH_S)
        self._writer: asyncio.Task | None = None
        self._progress: dict[int, _Progress] = {}  # job -> how it progressed, not written yet (the latest)
        self._progress_seen = asyncio.Event()
        self._progress_waits = 0  # the progress writes a lock held elsewhere ran out in a row (said once)
        self._progress_writer: asyncio.Task | None = None
        # job -> what it is said to be doing since an operator's cancel asked it to stop: when it was asked, and when
        # it is killed if it has not ended. A routine that ignores the stop signal showed "running" until its kill
        # (Nomad's kill_timeout, 30 s; the local supervisor's grace) as if nothing had been asked (found by review).
        self._stopping: dict[int, str] = {}
        # One write at a time (outcomes or progress): a job's progress never lands after its end,
        # and two statements never lock the same jobs in different orders.
        self._writing = asyncio.Lock()
        self._stranded: dict[int, str] = {}  # job -> why it was stopped before it started (recorded lost)
        # Jobs this process followed under an identity whose lease lapsed (drop_claims), with that identity: adopted
        # again by the new identity, they are said as its own, in one line. Each was said "adopting job ... from a
        # launcher that is gone", one line per job, of a launcher that ran on (found pausing the database server).
        self._dropped: dict[int, str] = {}
        self.max_unrecorded = MAX_UNRECORDED
        self._unrecorded = 0  # outcomes handed to the writer and not stored yet
        self.dispatched = 0
        # Whether the last dispatch call saw a task it did not start (hrwsi.dispatch's
        # work_waiting); True until a call says otherwise, and whenever this launcher skips the call.
        self.work_waiting = True
        # Whether the last dispatch call left work waiting although this launcher had room for more:
        # what that work waits for is in the database, and an outcome may free it (OUTCOME_BATCH_S).
        self.work_waits_for_outcomes = True
        # With jobs claimed ahead: ending jobs asked dispatch for more, and no call has returned since.
        self._refill_asked = False
        # Asks the backend, while it is out of reach, whether it answers again (_probe_until_reached).
        self._reach_probe: asyncio.Task | None = None
        self._storage_trouble: _StorageTrouble | None = None
        # Wakes dispatch when the first hand-over hold left ends (ADR 0009): nothing else would, and back-fill kept from
        # that room waited for the backstop poll (1.0-1.7 s of HRWSI_BACKSTOP_POLL_S = 2 s, session 78). One timer, at
        # the earliest end: the call it wakes says when the next one ends.
        self._hold_end_wake: asyncio.TimerHandle | None = None

    # -- dispatch ----------------------------------------------------------------------------
    def _an_end_may_start_work(self) -> bool:
        """Whether the notification of a job's or task's end should wake dispatch: when the last call
        left work waiting; with jobs claimed ahead, only when what it left waits for something in the
        database (capacity, a budget, a dependency): work that waits for this launcher's slots is
        claimed as they free (_job_left_the_backend), and a call per outcome's write claimed a few
        jobs at a time (in the three-step chain, a dispatch call for every four jobs)."""
        return self.work_waits_for_outcomes if self.claim_ahead else self.work_waiting

    def free_slots(self) -> int:
        """How many more jobs this launcher may start now: the backend's own limit, if any, and no
        more than the outcome writer can take."""
        slots = min(self.dispatch_batch.size, self.max_unrecorded - self._unrecorded)
        if self.backend.max_concurrent_jobs is not None:
            slots = min(slots, self._free_backend_slots())
        return max(0, slots)

    def _free_backend_slots(self) -> int:
        """The backend's slots not taken by a job that runs or is about to start (a job that ended
        frees its slot at once, not when its outcome is stored)."""
        running = len(self._following) - len(self._ended) + len(self._starting)
        return self.backend.max_concurrent_jobs + self.claim_ahead - running

    async def site(self) -> str | None:
        return await self.backend.site()

    def problem(self) -> tuple[str, datetime] | None:
        """Its backend's problem (Nomad out of reach, say), attempts losing their storage, a pooler
        (Service.problem): each said, since the first of them."""
        found = [p for p in (self._backend_problem(), self._storage_problem(), super().problem()) if p is not None]
        if not found:
            return None
        return "; and ".join(text for text, _ in found), min(since for _, since in found)

    def _backend_problem(self) -> tuple[str, datetime] | None:
        problem = self.backend.problem()
        if problem is not None and self.backend.submissions_refused():
            return (f"{problem[0]}; meanwhile this launcher claims no new work (launchers whose jobs it takes take "
                    f"it) and claims again as soon as it takes them"), problem[1]
        if problem is None or not self.backend.out_of_reach():
            return problem
        return (f"{problem[0]}; meanwhile this launcher claims no new work (launchers that reach their backend "
                f"take it), asks every {REACH_PROBE_S:.0f} s whether the backend answers again and claims again "
                "as soon as it does"), problem[1]

    def _storage_problem(self) -> tuple[str, datetime] | None:
        trouble = self._storage_trouble
        if trouble is None:
            return None
        if time.monotonic() - trouble.seen > STORAGE_PROBLEM_FORGOTTEN_S:
            self._storage_trouble = None
            return None
        return (f"attempts lose their storage: {trouble.count} attempt(s) lost (storage_unavailable) and none "
                f"given its storage since; the last: {trouble.last}; each is retried as a new attempt, not charged "
                "to the routine (a full or read-only products or logs storage?)"), trouble.since

    def _lost_to_the_storage(self, reason: str) -> None:
        trouble = self._storage_trouble
        if trouble is None or time.monotonic() - trouble.seen > STORAGE_PROBLEM_FORGOTTEN_S:
            trouble = self._storage_trouble = _StorageTrouble(self.clock.now(), 0, reason, 0.0)
        trouble.count += 1
        trouble.last = reason
        trouble.seen = time.monotonic()

    def _storage_served(self) -> None:
        """An attempt got its storage (its directory prepared, or checked as it ended): the storage's
        trouble, if any, is over."""
        if self._storage_trouble is not None:
            logger.info("attempts get their storage again (%d attempt(s) lost to it before, retried)",
                        self._storage_trouble.count)
            self._storage_trouble = None

    def _backend_out_of_reach(self) -> bool:
        """Whether the backend is known out of reach: then this launcher claims no new work, and a probe
        asks the backend every REACH_PROBE_S whether it answers again, which wakes dispatch and adopt.
        A launcher that could not reach Nomad claimed task after task, each lost once its registration's
        retries ran out, while another launcher that reached Nomad had free slots (found by exploratory
        testing)."""
        if not self.backend.out_of_reach():
            return False
        self._probe_the_backend("is out of reach: this launcher claims no new work until it answers again (launchers "
                                "that reach theirs take it)")
        return True

    def _backend_refuses_work(self) -> bool:
        """Whether the backend refuses every job of this launcher's (Backend.submissions_refused): then, as
        while it is out of reach, this launcher claims no new work and the probe asks every REACH_PROBE_S
        whether it takes them again (a token that may not submit: each claimed task was refused and lost,
        and taken up again only after its own back-off of up to 600 s once the token was mended)."""
        if not self.backend.submissions_refused():
            return False
        self._probe_the_backend("refuses this launcher's jobs: it claims no new work until the backend takes them "
                                "again (launchers whose jobs it takes take it)")
        return True

    def _probe_the_backend(self, what: str) -> None:
        """Start the probe that wakes dispatch and adopt once the backend takes work again, saying why, unless it
        runs already (one probe for both reasons: _backend_unusable)."""
        if self._reach_probe is None or self._reach_probe.done():
            logger.warning("the %s backend %s", self.backend.name, what)
            self._reach_probe = asyncio.create_task(self._probe_until_reached(), name="launcher-reach-probe")

    def _backend_unusable(self) -> bool:
        return self.backend.out_of_reach() or self.backend.submissions_refused()

    async def _probe_until_reached(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(REACH_PROBE_S)
            if self._backend_unusable():  # (another call of the launcher's may have reached it meanwhile)
                try:
                    await self.backend.probe()
                except Exception:  # (a probe raises nothing, by the contract: never let this task end on one)
                    logger.exception("probing the %s backend failed; trying again in %.0f s", self.backend.name,
                                     REACH_PROBE_S)
            if not self._backend_unusable():
                logger.info("the %s backend answers again: this launcher claims work again", self.backend.name)
                self.wake("dispatch", "adopt")
                return

    def on_statement_timeout(self, statement: str) -> str:
        if statement == "dispatch":
            return f"it runs again claiming at most {self.dispatch_batch.shrink()} task(s) at a time"
        return super().on_statement_timeout(statement)

    async def dispatch(self) -> bool:
        """One call claims what fits now and returns the jobs to submit (fenced by our lease)."""
        # Work waits until a call says otherwise: a call skipped for want of slots, or one that
        # fails, leaves it so, and a job that ends wakes this step again.
        self.work_waiting = True
        if self._backend_out_of_reach() or self._backend_refuses_work():
            return False  # (the probe wakes this step when the backend answers again)
        slots = self.free_slots()
        if slots == 0:
            self._refill_asked = False  # (ending jobs ask again once half the slots are free)
            return False
        jobs: list[int] = []
        more = False
        try:
            async with self._dispatch_connection.acquire() as conn:
                async with timed_statement("dispatch"):
                    result = await conn.fetch(query("dispatch"), self.instance_id, self.backend.name,
                                              self.settings.lease_timeout_s, slots, str(self.settings.data_dir))
                jobs, more = self._claimed(result, slots)
                if self.claim_ahead:
                    # Asked or not, this call has answered: half the slots freed again (jobs that
                    # ended while it ran, or before it) ask for the next one.
                    self._refill_asked = False
                    self._refill_when_half_free()
                if jobs and not more:
                    # Inside the call's `async with`: where it hands a pooled connection back (a step
                    # run outside the service's run), asyncpg's release takes turns of the event loop
                    # (it is shielded), and these followers would wait for them (a lone task's job
                    # 0.1-0.15 ms later, 2026-12-02).
                    self._follow_dispatched(jobs, self.instance_id)
                    # Their first turn (the submit) before this step's own bookkeeping: the hand-back
                    # of the connection, the log line, the step's metrics and the service's loop came
                    # first, 0.19 ms between the call's return and a lone task's submit (median of
                    # 300 inputs; with this turn, the reaction latency's p50 fell by 0.05-0.17 ms in
                    # three interleaved rounds, 2026-12-04).
                    await asyncio.sleep(0)
        finally:
            if jobs and more:
                # A full batch (followed even if the release failed): its followers start in the next
                # turn of the loop, so that the next call is already on its way to the database while
                # this batch's 2,000 specs and tasks are built (in a burst, 16 ms of every 100 in
                # which the database would wait).
                asyncio.get_running_loop().call_soon(self._follow_dispatched, jobs, self.instance_id)
        if jobs:  # (debug: at a job a second, half the log said this, naming no task; each outcome does)
            logger.debug("dispatched %d task(s) to the %s backend", len(jobs), self.backend.name)
        return more

    def _claimed(self, result: list[asyncpg.Record], slots: int) -> tuple[list[int], bool]:
        """The jobs a dispatch call claimed, kept until their followers start, and whether to call
        again at once."""
        self.dispatch_batch.succeeded()
        self.work_waiting = result[0]["work_waiting"]
        if result[0]["holds_end_in"] is not None:
            self._wake_dispatch_when_a_hold_ends(result[0]["holds_end_in"])
        rows = [row["job"] for row in result if row["job"] is not None]
        self.work_waits_for_outcomes = self.work_waiting and len(rows) < slots
        if self.work_waits_for_outcomes:
            self._write_outcomes_now.set()
        self._starting.update((row["job_id"], row) for row in rows)
        self.dispatched += len(rows)
        more = len(rows) == slots and slots == self.dispatch_batch.size  # a full batch: call again at once
        return [row["job_id"] for row in rows], more

    def _wake_dispatch_when_a_hold_ends(self, in_s: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, in_s) + HOLD_END_MARGIN_S
        timer = self._hold_end_wake
        if timer is not None and not timer.cancelled() and loop.time() <= timer.when() <= at:
            return  # (it wakes dispatch sooner, and that call says when this one ends)
        if timer is not None:
            timer.cancel()
        self._hold_end_wake = loop.call_at(at, self.wake, "dispatch")

    def _follow_dispatched(self, job_ids: list[int], owner: str) -> None:
        rows = [self._starting.pop(job_id) for job_id in job_ids if job_id in self._starting]
        if owner != self.instance_id:
            return  # the lease lapsed meanwhile: these jobs are their new owner's (drop_claims)
        for row in rows:
            self._start_following(row["job_id"], spec_from_row(row), submit=True, fresh=True)

    def _start_following(self, job_id: int, spec: JobSpec, *, submit: bool, fresh: bool = False) -> None:
        """Follow a job to its end; `submit` hands it to the backend first (`fresh`: its first start,
        which prepares its empty output directory and manifest)."""
        task = asyncio.create_task(self._follow(job_id, spec, submit, fresh), name=f"follow-{spec.job_id}")
        self._following[job_id] = task
        self._specs[job_id] = spec

        if not submit:
            self._in_backend.add(job_id)  # adopted: it runs in the backend already

        def forget(_task: asyncio.Task) -> None:
            if self._following.get(job_id) is _task:
                self._following.pop(job_id, None)
                self._specs.pop(job_id, None)
                self._ended.discard(job_id)
                if job_id in self._in_backend:  # (a follower cancelled before the job left it)
                    self._in_backend.discard(job_id)
                    if self.claim_ahead:
                        self._hand_out_backend_slots()

        task.add_done_callback(forget)

    async def _follow(self, job_id: int, spec: JobSpec, submit: bool, fresh: bool) -> None:
        if submit and self.claim_ahead:
            not_started = await self._wait_for_a_backend_slot(job_id, spec)
            if not_started == _CANCELLED_WHILE_HELD:
                logger.info("task %d: job %s cancelled by an operator before it started", spec.task_id, spec.job_id,
                            extra=_fields(spec, outcome="cancelled"))
                await self._record(job_id, spec, JobOutcome("cancelled", None, "cancelled before it started"))
                return
            if not_started == _STOPPING_WHILE_HELD:
                await self._record(job_id, spec, JobOutcome(
                    "lost", None, "the launcher stopped before a slot of the backend was free for it; retried",
                    fault="stopped_by_hrwsi"))
                return
        elif submit:
            self._in_backend.add(job_id)
        if submit:
            submitted = await self._submit(job_id, spec, fresh)
            if submitted is None:
                return
            spec = submitted

        owner = self.instance_id

        async def on_progress(state: str, reason: str) -> None:
            reason = self._stopping.get(job_id, reason)  # (asked to stop: said until it ends)
            self._progress[job_id] = _Progress(state, reason, self.clock.now(), owner)
            self._progress_seen.set()

        try:
            if not submit:  # adopted as it runs: under the ID its launcher may not have recorded (ADR 0002)
                adopted = await self.backend.adopted_job_id(spec)
                if adopted != spec.job_id:
                    spec = await self._runs_under(job_id, spec, adopted)
            outcome = await self.backend.wait(spec, spec.job_id, on_progress)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("task %d: following job %s failed; recording it as lost", spec.task_id, spec.job_id,
                             extra=_fields(spec, outcome="lost"))
            outcome = JobOutcome("lost", None, f"the launcher could not follow the job: {error}",
                                 fault="backend_lost_track")
        stranded = self._stranded.pop(job_id, None)
        if stranded is not None and outcome.state == "cancelled":
            # not an operator's cancel: retried elsewhere
            outcome = JobOutcome("lost", outcome.exit_code, stranded, fault="worker_gone")
        await self._record(job_id, spec, outcome)

    async def _submit(self, job_id: int, spec: JobSpec, fresh: bool) -> JobSpec | None:
        """Hand the job to the backend: the spec to follow (under the job ID the backend registered), or
        None when the attempt ended here (recorded). An operator's cancel that came meanwhile stops it now."""
        self._submitting.add(job_id)
        try:
            followed = await self._registered(job_id, spec, fresh)
        finally:
            self._submitting.discard(job_id)
            cancelled = job_id in self._cancel_when_registered
            self._cancel_when_registered.discard(job_id)
        if followed is not None and cancelled:
            logger.info("task %d: stopping job %s as an operator asked while it was being registered", followed.task_id,
                        followed.job_id, extra=_fields(followed))
            try:
                await self.backend.cancel(followed, followed.job_id)
            except Exception as error:  # (the cancel step's next pass, the backstop's, sends it again)
                logger.warning("task %d: could not stop job %s yet: %s", followed.task_id, followed.job_id, error,
                               extra=_fields(followed))
        return followed

    async def _registered(self, job_id: int, spec: JobSpec, fresh: bool) -> JobSpec | None:
        """_submit's registration: the spec to follow, or None when the attempt ended here (recorded)."""
        try:
            registered = await self.backend.submit(spec, first_start=fresh)
            if fresh and self.backend.runs_routines:
                self._storage_served()  # (its directory was prepared)
        except asyncio.CancelledError:
            raise
        except AttemptLost as lost:  # it may have run: not started again, retried as a new attempt
            # (logged once, with its fault and what happens next, when recorded: _log_outcome; an
            # error here too said each lost attempt twice, found by exploratory testing)
            await self._record(job_id, spec, JobOutcome("lost", None, str(lost), fault=lost.fault))
            return None
        except TaskRefused as refused:  # the task's own data: no attempt of it can run, no routine's failure
            await self._end_task_refused(job_id, spec, refused)
            return None
        except Exception as error:  # the backend refused it: that attempt failed, the task goes on
            logger.error("task %d: the %s backend refused job %s: %s", spec.task_id, self.backend.name,
                         spec.job_id, error, extra=_fields(spec, outcome="internal_error"))
            await self._record(job_id, spec, JobOutcome("internal_error", None,
                                                         f"the backend refused the job: {error}"))
            return None
        if registered != spec.job_id:
            recorded = self._specs.get(job_id)
            if recorded is not None and recorded.job_id == registered:  # (recorded before it was registered)
                return recorded
            return await self._runs_under(job_id, spec, registered)
        return spec

    async def _record_running_under(self, job_id: int, spec: JobSpec) -> str | None:
        """Record in the job row that the attempt runs as spec (its job ID, output directory and log), fenced
        by our lease: None once recorded, else why not."""
        try:
            rows = await self._with_database_retry(
                lambda conn: conn.fetch(query("record_backend_job_id"), self.instance_id,
                                        self.settings.lease_timeout_s, job_id, spec.job_id, spec.output_dir,
                                        spec.log_path),
                f"record the job ID {spec.job_id} of task {spec.task_id}")
        except asyncpg.PostgresError as error:
            return f"the database refused it: {error}"
        if not rows:
            return "the job row is no longer this launcher's active job (its lease lapsed, or it ended)"
        if self._specs.get(job_id) is not None:
            self._specs[job_id] = spec
        return None

    async def _record_runs_under(self, spec: JobSpec) -> None:
        """Backend.record_runs_under: the attempt goes to another job ID, with paths of its own, which the
        backend registers once this returns; AttemptLost when it could not be recorded (nothing is registered:
        the row's new owner, if any, submits it again)."""
        job_id = next((j for j, s in self._specs.items() if (s.task_id, s.attempt) == (spec.task_id, spec.attempt)),
                      None)
        why = "this launcher does not follow it" if job_id is None else await self._record_running_under(job_id, spec)
        if why is not None:
            raise AttemptLost("launcher_gone", f"job {spec.job_id} was not registered: the attempt could not be recorded "
                              f"as running under it beforehand ({why}); not the routine's fault")

    async def _runs_under(self, job_id: int, spec: JobSpec, backend_job_id: str) -> JobSpec:
        """The backend runs the attempt under another job ID than dispatch made, registered without being
        recorded first (an adopter finding the claim's own job from the row's claim token, ADR 0002): recorded
        in the job row with its paths, so that status, logs, cancel and an adopter name the job the attempt
        runs as, fenced by our lease; the spec followed from now on is the attempt's under that ID."""
        spec = self.backend.runs_as(spec, backend_job_id)
        if self._specs.get(job_id) is not None:
            self._specs[job_id] = spec
        why = await self._record_running_under(job_id, spec)
        if why is not None:
            logger.warning("task %d: job %s was not recorded as the attempt's: %s; its owner finds it by its claim "
                           "token", spec.task_id, backend_job_id, why, extra=_fields(spec))
        return spec

    async def _end_task_refused(self, job_id: int, spec: JobSpec, refused: TaskRefused) -> None:
        """The backend refused the job for the task's own data (TaskRefused): the attempt ends and the
        task is terminated with the reason, in one statement fenced by the lease, charged to no routine.
        Recorded as a failure of the attempt, five such inputs put their routine on hold, and a
        legitimate task of it with them (found by exploratory testing)."""
        self._job_left_the_backend(job_id)
        reason = escaped(f"the {self.backend.name} backend refused it for the task's own data: {refused}; "
                         "terminated, not counted as a failure of the routine")
        owner = self.instance_id
        try:
            async with self._writing:
                rows = await self._with_database_retry(
                    lambda conn: conn.fetch(query("end_task_refused_by_backend"), owner, self.settings.lease_timeout_s,
                                            job_id, reason), f"end job {spec.job_id}, refused by the backend")
        except asyncpg.PostgresError as error:
            if error.sqlstate == LEASE_LAPSED_SQLSTATE:
                await self._lease_lost_guarded()
                return
            logger.error("task %d: job %s, refused by the backend, could not be ended: %s; the job stays active "
                         "and will be adopted", spec.task_id, spec.job_id, error, extra=_fields(spec))
            return
        logger.warning("task %d (%s) attempt %d: %s", spec.task_id, spec.routine, spec.attempt, reason,
                       extra=_fields(spec, outcome="internal_error",
                                     task_state=rows[0]["state"] if rows else None))
        if rows:
            self.wake("dispatch")  # (capacity it held is free: nothing else tells dispatch)

    async def _lease_lost_guarded(self) -> None:
        """lease_lost from a job's follower or the outcome writer, as a step's refusal guards it
        (Service._step_refused): a database that refuses writes (a failover onto a standby: the fenced call read
        the lapse, the new lease is a write) or that is away is said as for the steps, and the heartbeat takes the
        new lease once it can. Unguarded, the refusal escaped the follower, a traceback as an asyncio task's
        unretrieved exception, and the outcome writer's batch, whose fallback then wrote each outcome again, one
        by one, to be told of the lapse again (found by review)."""
        try:
            await self.lease_lost()
        except asyncpg.ReadOnlySQLTransactionError as refused:
            self._tell_read_only(refused)
        except TRANSIENT_DATABASE_ERRORS as unreachable:
            logger.warning("%s: its lease lapsed and the database could not be reached to take a new one (%s); the "
                           "heartbeat tries again", self.kind, describe(unreachable))

    async def _recorded_already(self, job_id: int, spec: JobSpec, outcome: JobOutcome) -> bool:
        """The outcome was not taken: say why, from what the database has. True when it has this very
        outcome already (a write that committed but whose answer was lost, the server restarted):
        then the job is cleaned up as any recorded one. It said "was not recorded: the job is final
        already or owned by another launcher now" of its own outcome (found by exploratory testing)."""
        # Read until the database answers, as the write was tried: the answer to a write is lost when the server
        # restarts, and the read came while it still recovered, so each outcome of the last writes before an
        # immediate restart was said "was not recorded: the database could not be read to say why", its own
        # outcome recorded all along, and nothing said what came next (found restarting the server during a burst).
        try:
            row = await self._with_database_retry(lambda conn: conn.fetchrow(query("job_as_recorded"), job_id),
                                                  f"read how job {spec.job_id} was recorded")
        except asyncpg.PostgresError:
            row = None
        if row is not None and row["state"] == outcome.state and row["exit_code"] == outcome.exit_code:
            logger.info("task %d (%s): the outcome of job %s (%s) was recorded already (the database's answer to "
                        "its write was lost)", spec.task_id, spec.routine, spec.job_id, outcome.state,
                        extra=_fields(spec))
            return True
        recorded = (f"the database has it {row['state']}, followed by {row['owner'] or 'no launcher'}" if row is not None
                    else "the database could not be read to say why; if it has it active still, the job is adopted "
                         "and its outcome read again from the backend")
        logger.warning("task %d (%s): the outcome of job %s (%s) was not recorded: %s", spec.task_id, spec.routine,
                       spec.job_id, outcome.state, recorded, extra=_fields(spec))
        return False

    async def _record(self, job_id: int, spec: JobSpec, outcome: JobOutcome) -> None:
        """Hand the outcome to the writer and wait until it is stored; then log and clean up."""
        self._job_left_the_backend(job_id)
        products: list[tuple[str, int]] = []
        if outcome.exit_code is not None and self.backend.runs_routines \
                and not self.backend.checks_its_output_directory:
            problem = await asyncio.to_thread(output_directory_problem, spec.output_dir,
                                              spec.log_path if outcome.exit_code != 0 else None)
            if problem is not None:
                outcome = lost_with_its_directory(outcome, problem)
        if outcome.state == "processed" and self.backend.runs_routines:
            products, refused = outcome.products if outcome.products is not None else \
                await asyncio.to_thread(discover_products, spec.output_dir)
            if refused:
                outcome = JobOutcome("internal_error", outcome.exit_code,
                                     "the routine left what cannot be a product in its output directory: "
                                     + "; ".join(refused[:5]), outcome.started_at, outcome.finished_at)
                products = []
        if outcome.state in ("internal_error", "external_error") and outcome.exit_code not in (None, 0) \
                and self.backend.runs_routines:
            # The routine's own last words next to its exit code, in the attempt's message (status, the
            # dashboard, the task's reason, a hold's alert): read here, once, from the end of its log.
            outcome = with_last_line(outcome, await asyncio.to_thread(log_last_line, spec.log_path))
        if outcome.state == "lost" and outcome.fault is None:
            outcome = JobOutcome(outcome.state, outcome.exit_code, outcome.message, outcome.started_at,
                                 outcome.finished_at, fault="backend_lost_track")
        if outcome.fault == "storage_unavailable":
            self._lost_to_the_storage(outcome.message)  # (a launcher's problem while it lasts: status, dashboard)
        elif outcome.exit_code is not None and self.backend.runs_routines:
            self._storage_served()  # (its output directory was there and writable as it ended)
        if self.backend.times_from_this_host:
            outcome = self._in_the_databases_time(outcome)
        stored: asyncio.Future = asyncio.get_running_loop().create_future()
        self._progress.pop(job_id, None)  # its end says more
        self._stopping.pop(job_id, None)
        self._outcomes.put_nowait(_Finished(job_id, spec, outcome, products, stored, self.instance_id))
        self._unrecorded += 1  # the writer counts it off
        if self._outcomes.qsize() >= OUTCOME_WRITE_AT_ONCE:
            self._write_outcomes_now.set()
        result = await stored
        if result is None:
            if not await self._recorded_already(job_id, spec, outcome):
                return
        try:  # (the writer logged the outcome as it recorded it)
            await self.backend.forget(spec.job_id)
        except Exception as error:  # cleaning up is best effort; the outcome is already stored
            logger.warning("could not clean up job %s in the backend: %s", spec.job_id, error)

    def _in_the_databases_time(self, outcome: JobOutcome) -> JobOutcome:
        """A local attempt's times, read from this host's wall clock, as the database's clock tells them."""
        if abs(self.clock.offset_s) > CLOCK_CORRECTED_FROM_S:
            # Its attempt "started" ten minutes before it was submitted on a host ten minutes slow.
            shift = timedelta(seconds=self.clock.offset_s)
            outcome = dataclasses.replace(outcome, started_at=outcome.started_at and outcome.started_at + shift,
                                          finished_at=outcome.finished_at and outcome.finished_at + shift)
        seen = self.clock.now()
        # (later by less than what measuring the offset cannot tell apart is the same time)
        if outcome.finished_at is not None and outcome.finished_at > seen + timedelta(seconds=CLOCK_CORRECTED_FROM_S):
            # An end read from the host's wall clock as it was then (a supervisor on another boot, or an older one),
            # corrected by the offset measured now: the clock stepped since, and it would end after it was seen
            # (found by review). The run time stands; the end is said as what is known of it.
            back = outcome.finished_at - seen
            outcome = dataclasses.replace(
                outcome, started_at=outcome.started_at and outcome.started_at - back, finished_at=seen,
                message=f"{outcome.message}; it ended before {seen:%Y-%m-%d %H:%M:%S} UTC, when its launcher saw it "
                        "(the host's clock was off by another amount when it ended)")
        return outcome

    async def _wait_for_a_backend_slot(self, job_id: int, spec: JobSpec) -> str | None:
        """Wait until one of the backend's slots is ours (None), or why the job will not start."""
        assert self.backend.max_concurrent_jobs is not None
        if not self._held and len(self._in_backend) < self.backend.max_concurrent_jobs:
            self._in_backend.add(job_id)
            return None
        wait: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._held_waits[job_id] = wait
        # (the task's priority, as dispatch served it: an archive task aged or raised to 0 by a near-real-time task
        # of its time series waited, by its lane's, behind every archive job claimed before it)
        priority = spec.priority if spec.priority is not None else self._priority_of_lane(spec.lane)
        heapq.heappush(self._held, (priority, next(self._held_order), job_id))
        # (a slot may be free while the heap holds only jobs whose wait ended otherwise: cancelled,
        # released; the most urgent live one, this or another, takes it now)
        self._hand_out_backend_slots()
        shown = asyncio.get_running_loop().call_later(SHOW_HELD_AS_QUEUED_AFTER_S, self._show_as_queued, job_id)
        try:
            return await wait
        finally:
            shown.cancel()
            self._held_waits.pop(job_id, None)  # (cancelled while held: its heap entry is skipped)

    def _show_as_queued(self, job_id: int) -> None:
        """A held job still waiting: written as queued, with why, by the progress writer."""
        if job_id in self._held_waits:
            self._progress[job_id] = _Progress(
                "queued", f"claimed ahead: waits for one of the {self.backend.name} backend's "
                f"{self.backend.max_concurrent_jobs} slots", self.clock.now(), self.instance_id)
            self._progress_seen.set()

    def _hand_out_backend_slots(self) -> None:
        """Start held jobs while the backend has free slots, most urgent first."""
        assert self.backend.max_concurrent_jobs is not None
        while self._held and len(self._in_backend) < self.backend.max_concurrent_jobs:
            _, _, job_id = heapq.heappop(self._held)
            wait = self._held_waits.pop(job_id, None)
            if wait is not None and not wait.done():
                self._in_backend.add(job_id)  # (given back by forget if its follower is cancelled first)
                wait.set_result(None)

    def _release_held(self, job_ids: Iterable[int], why: str) -> None:
        """Held jobs that will not start: their followers record why."""
        for job_id in list(job_ids):
            wait = self._held_waits.pop(job_id, None)
            if wait is not None and not wait.done():
                wait.set_result(why)

    def _priority_of_lane(self, lane: str | None) -> int:
        """The lane's priority (0 is the most urgent). A lane added since the launcher read them is
        taken as urgent until they are read again (in the background: the order of the held jobs
        is decided as they come)."""
        if lane is None:
            return 0
        if lane in self._lane_priority:
            return self._lane_priority[lane]
        if self._lanes_reading is None or self._lanes_reading.done():
            self._lanes_reading = asyncio.create_task(self._read_lane_priorities(), name="launcher-read-lanes")
        return 0

    async def _read_lane_priorities(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(query("lane_priorities"))
        except (asyncpg.PostgresError, *TRANSIENT_DATABASE_ERRORS) as error:
            logger.warning("could not read the lanes' priorities (%s); held jobs of a new lane go first", error)
            return
        self._lane_priority = {row["name"]: row["priority"] for row in rows}

    def _job_left_the_backend(self, job_id: int) -> None:
        """The job holds none of the backend's slots any more. If they were all taken and work
        waits, dispatch now: the slot is refilled while the outcome is being stored (in the chain,
        each refill had waited for the outcome's write and its notification). Where the database's
        capacity binds as well, the outcome's notification wakes dispatch again once it is stored."""
        if job_id not in self._following or job_id in self._ended:
            return
        was_full = self.backend.max_concurrent_jobs is not None and self._free_backend_slots() <= 0
        self._ended.add(job_id)
        self._in_backend.discard(job_id)
        if self.claim_ahead:
            self._hand_out_backend_slots()  # a held job takes the slot now
            self._refill_when_half_free()
        elif was_full and self.work_waiting:
            self.wake("dispatch")

    def _refill_when_half_free(self) -> None:
        """With jobs claimed ahead: dispatch claims more once half of what may be held ahead is
        free, once until that call returns (a call per ending job would cost more than the slot it
        fills). Not when the last call left work waiting for the database (capacity, a budget, a
        dependency): the outcomes' notifications wake dispatch then, as an outcome may free it.

        At least half, not exactly half: the jobs that end while a call runs, counted as free until
        its claims come back, could leave more than half free when it returned, and the count never
        passed half again. With no new work to announce (the chain's last step), every slot then
        sat idle until the backstop poll with hundreds of tasks pending: 0.5-1 s at a time, three
        times in a three-step chain of 1,000 (2026-12-05)."""
        if (self.work_waiting and not self.work_waits_for_outcomes and not self._refill_asked
                and self.free_slots() >= max(1, self.claim_ahead // 2)):
            self._refill_asked = True
            self.wake("dispatch")

    @classmethod
    def _log_outcomes(cls, recorded: list[tuple[_Finished, asyncpg.Record]]) -> None:
        """What the writer just recorded: a line per outcome, except for many processed at once (a
        burst), which get one line per routine with their task ids (`hrwsi task show` has each one)."""
        processed = [item for item, row in recorded if row["job_state"] == "processed"]
        if len(processed) > LOG_EACH_PROCESSED_UP_TO:
            by_routine: dict[str, list[_Finished]] = {}
            for item in processed:
                by_routine.setdefault(item.spec.routine, []).append(item)
            for routine, items in by_routine.items():
                logger.info("%d task(s) of routine %s processed: %d product(s); tasks %s; logs in %s", len(items),
                            routine, sum(len(item.products) for item in items),
                            task_ranges(item.spec.task_id for item in items),
                            common_directory(item.spec.log_path for item in items),
                            extra=task_fields(routine=routine, outcome="processed", task_count=len(items)))
            recorded = [(item, row) for item, row in recorded if row["job_state"] != "processed"]
        for item, row in recorded:
            cls._log_outcome(item.spec, item.outcome, row, len(item.products))

    @staticmethod
    def _log_outcome(spec: JobSpec, outcome: JobOutcome, result: asyncpg.Record, products: int) -> None:
        if result["job_state"] == "cancelled":
            logger.info("task %d (%s): job %s cancelled by an operator", spec.task_id, spec.routine, spec.job_id,
                        extra=_fields(spec, outcome="cancelled"))
        elif result["job_state"] == "processed":
            logger.info("task %d (%s) processed: %d product(s); log %s", spec.task_id, spec.routine, products,
                        spec.log_path, extra=_fields(spec, outcome="processed", products=products))
        elif result["job_state"] == "lost":
            logger.warning("task %d (%s) attempt %d lost (%s): %s; retried with backoff (%d attempt(s) lost so "
                           "far, not counted as failures); log %s", spec.task_id, spec.routine, spec.attempt,
                           outcome.fault, outcome.message, result["lost_count"] or 0, spec.log_path,
                           extra=_fields(spec, outcome="lost", fault=outcome.fault, task_state=result["task_state"]))
        else:
            what_next = (f"terminated after {result['failures']} failure(s) of {result['max_attempts']} allowed"
                         if result["task_state"] == "terminated" else
                         "held, not retried: its routine or its campaign is on hold (`hrwsi status` says why)"
                         if result["task_state"] == "on_hold" else "it will be replanned and retried")
            logger.warning("task %d (%s) attempt %d %s: %s; %s; log %s", spec.task_id, spec.routine,
                           spec.attempt, result["job_state"], outcome.message, what_next, spec.log_path,
                           extra=_fields(spec, outcome=result["job_state"], task_state=result["task_state"]))

    async def _write_outcomes(self) -> None:
        """The one writer of outcomes: everything that ended meanwhile goes in one call (after
        waiting up to OUTCOME_BATCH_S for more, unless they are to be written at once)."""
        while True:
            batch = [await self._outcomes.get()]
            if not (self.work_waits_for_outcomes or self.stopping.is_set()
                    or self._outcomes.qsize() + 1 >= OUTCOME_WRITE_AT_ONCE):
                # (asyncio.timeout, not wait_for: on Python 3.11, a wait_for whose event is set as
                # the writer is cancelled swallows the cancellation, gh-86296; this loop then went
                # back to its queue and the launcher's stop waited for it for ever.)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(OUTCOME_BATCH_S):
                        await self._write_outcomes_now.wait()
            self._write_outcomes_now.clear()
            while len(batch) < OUTCOME_BATCH and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            # An outcome queued under an identity whose lease lapsed is dropped, never written under
            # the new one: its follower was cancelled, and the job's new owner (another launcher, or
            # this one adopting it again) records it. Written twice in one batch, its products would
            # conflict with themselves and fail a finished attempt (chaos: a PostgreSQL stop).
            owner = self.instance_id
            current = [item for item in batch if item.owner == owner]
            async with self._writing:
                results = await self._store_with_fallback(current, owner) if current else {}
            for item in batch:
                if not item.stored.done():
                    item.stored.set_result(results.get(item.job_id) if item.owner == owner else None)
            self._log_outcomes([(item, results[item.job_id]) for item in current if item.job_id in results])
            dispatch_was_paused = self._unrecorded >= self.max_unrecorded
            self._unrecorded -= len(batch)
            if dispatch_was_paused:
                self.wake("dispatch")  # it paused for us (free_slots): it may go on
            retried = [row["task_id"] for row in results.values() if row["task_state"] == "pending"]
            if retried:
                await self._wake_dispatch_when_retries_are_due(retried)

    async def _wake_dispatch_when_retries_are_due(self, tasks: list[int]) -> None:
        """A retried task waits out its backoff; when it ends, nothing else would wake dispatch but
        the backstop poll (up to HRWSI_BACKSTOP_POLL_S later: 2 s after a first backoff of 5 s).
        Wake it then, so that the retry starts on time."""
        try:
            async with self.pool.acquire() as conn:
                due_in = await conn.fetchval(query("retry_due_in"), tasks)
        except (asyncpg.PostgresError, *TRANSIENT_DATABASE_ERRORS) as error:
            logger.warning("could not read when %d retried task(s) may start (%s); the backstop poll "
                           "starts them", len(tasks), describe(error))
            return
        if due_in is not None:
            asyncio.get_running_loop().call_later(due_in, self.wake, "dispatch")

    async def _write_progress(self) -> None:
        """The one writer of progress: what jobs did in the last PROGRESS_BATCH_S, in one statement."""
        while True:
            await self._progress_seen.wait()
            await asyncio.sleep(PROGRESS_BATCH_S)
            self._progress_seen.clear()
            async with self._writing:
                marks, self._progress = self._progress, {}
                if not marks:
                    continue
                try:
                    await self._with_database_retry(functools.partial(self._store_progress, marks=marks),
                                                    f"record how {len(marks)} job(s) progressed")
                except asyncpg.PostgresError as error:
                    if not is_lock_timeout(error):
                        logger.error("could not record how %d job(s) progressed (%s); each one's outcome is still "
                                     "recorded when it ends", len(marks), error)
                        continue
                    # A lock another session holds (a LOCK TABLE left open in psql): these marks were
                    # dropped, and a job that started meanwhile showed `dispatched`, never started,
                    # for as long as it ran (found by exploratory testing). They are tried again, the
                    # newer marks of the same jobs first; the SQL writes none of a job that has ended.
                    self._progress = marks | self._progress
                    self._progress_seen.set()
                    if not self._progress_waits:
                        logger.warning("could not record how %d job(s) progressed: a lock another session holds (a "
                                       "transaction left open? `hrwsi status` names the session); trying again",
                                       len(marks))
                    self._progress_waits += 1
                else:
                    if self._progress_waits:
                        logger.info("recorded how %d job(s) progressed (after %d lock wait(s))", len(marks),
                                    self._progress_waits)
                    self._progress_waits = 0

    @staticmethod
    async def _store_progress(conn: asyncpg.Connection, marks: dict[int, _Progress]) -> None:
        await conn.execute(query("mark_jobs_progress"), list(marks), [m.state for m in marks.values()],
                           [m.reason for m in marks.values()], [m.seen_at for m in marks.values()],
                           [m.owner for m in marks.values()])

    async def _flush_progress(self) -> None:
        """On the way out: what is not written yet, once (a database that is away is not waited for;
        whoever follows these jobs next sees how they progress)."""
        marks, self._progress = self._progress, {}
        if not marks:
            return
        try:
            async with self._writing, self.pool.acquire() as conn:
                await self._store_progress(conn, marks)
        except (asyncpg.PostgresError, *TRANSIENT_DATABASE_ERRORS) as error:
            if not self.pool_cut_by_the_stop():  # (the stop's bound said what it left unwritten)
                logger.warning("could not record how %d job(s) progressed before stopping: %s", len(marks),
                               describe(error))

    async def _store_with_fallback(self, batch: list[_Finished], owner: str) -> dict:
        try:
            return await self._store_fenced(batch, owner)
        except asyncpg.PostgresError as error:
            # Something in this batch is refused: store the outcomes one by one so that only
            # the offending job stays unrecorded (its lease-based adoption retries it later).
            logger.error("recording %d outcome(s) at once failed (%s); recording them one by one",
                         len(batch), error)
        results = {}
        for item in batch:
            try:
                results.update(await self._store_fenced([item], owner))
            except asyncpg.PostgresError as single_error:
                if _refused_for_good(single_error) and await self._store_refused_as_failed(item, owner, single_error,
                                                                                           results):
                    continue
                logger.error("task %d: the outcome of job %s (%s) could not be recorded: %s; "
                             "the job stays active and will be adopted and reconciled",
                             item.spec.task_id, item.spec.job_id, item.outcome.state, single_error)
        return results

    async def _store_refused_as_failed(self, item: _Finished, owner: str, error: asyncpg.PostgresError,
                                       results: dict) -> bool:
        """An outcome the database refuses whatever the retry (a product's path its CHECK refuses, a
        value it cannot hold) ends the attempt as failed, with the refusal as its reason and no
        product. Left active, the job was adopted, found to have ended the same way and refused
        again, every 2 s for ever, its task dispatched and holding capacity (found by exploratory
        testing). True when that was recorded."""
        item.outcome = JobOutcome("internal_error", item.outcome.exit_code,
                                  escaped(f"the database refused the attempt's outcome ({item.outcome.state}, "
                                          f"{len(item.products)} product(s)): {error}"),
                                  item.outcome.started_at, item.outcome.finished_at)
        item.products = []
        try:
            results.update(await self._store_fenced([item], owner))
        except asyncpg.PostgresError as still:
            logger.error("task %d: job %s could not be recorded as failed either: %s", item.spec.task_id,
                         item.spec.job_id, still)
            return False
        return True

    async def _store_fenced(self, batch: list[_Finished], owner: str) -> dict:
        """record_outcomes as `owner`, until the database answers; when owner's lease lapsed, a new
        identity is taken and nothing is recorded (the jobs' new owner records them)."""
        try:
            return await self._with_database_retry(
                lambda conn: self._store_outcomes(conn, batch, owner), f"record the outcome of {len(batch)} job(s)")
        except asyncpg.PostgresError as error:
            if error.sqlstate != LEASE_LAPSED_SQLSTATE:
                raise
            await self._lease_lost_guarded()
            return {}  # under a new identity (or once the heartbeat takes one), none of these jobs is ours any more

    async def _store_outcomes(self, conn: asyncpg.Connection, batch: list[_Finished], owner: str) -> dict:
        """Store outcomes, products and the tasks' next states in one call; the row per job id."""
        # The products in the order of their outcomes: record_outcomes finds them by position.
        products = [(b.job_id, path, size) for b in batch for path, size in b.products]
        rows = await conn.fetch(
            query("record_outcomes"), owner, self.settings.lease_timeout_s,
            self.settings.retry_backoff_s, [b.job_id for b in batch], [b.outcome.state for b in batch],
            [b.outcome.exit_code for b in batch], [b.outcome.message for b in batch],
            [b.outcome.started_at for b in batch], [b.outcome.finished_at for b in batch],
            [b.outcome.fault for b in batch], [p[0] for p in products], [p[1] for p in products],
            [p[2] for p in products], self.settings.handover_hold_s)
        return {r["job_id"]: r for r in rows}

    async def _with_database_retry(self, work, what: str):
        """Run work(conn) until it succeeds: an outcome must never be lost to a database blip. A database
        that refuses writes (a standby after a failover) is waited for too: the outcomes of jobs that ended
        meanwhile were refused one by one, two lines each, and left to be adopted and read again from the
        backend (found by exploratory testing); kept here, they are written once it takes writes (or, the
        lease lapsed meanwhile, dropped for the jobs' new owner, as any outcome under a lapsed lease)."""
        backoff = Backoff(first_s=0.1, cap_s=DATABASE_CAP_S)
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await work(conn)
            except TRANSIENT_DATABASE_ERRORS as error:
                if self.pool_cut_by_the_stop():
                    # The stop's bound ended the pool and said what this leaves to the next launcher, which adopts
                    # these jobs and records them: no retry can succeed, nor needs saying (the bound cancels this).
                    await asyncio.get_running_loop().create_future()
                delay = backoff.next()
                # (describe: a statement or connection that timed out, a server paused, has no text of its own,
                # and the line said "could not record the outcome of 1 job(s) (); ...": found pausing the server)
                logger.warning("could not %s (%s); retrying in %.1f s", what, describe(error), delay)
                await backoff.sleep(delay)
            except asyncpg.ReadOnlySQLTransactionError as error:
                self._tell_read_only(error)  # (one line for the service)
                await backoff.sleep(backoff.next())

    async def cancel_requested_jobs(self) -> bool:
        """Stop the jobs of tasks an operator cancelled; their followers record them cancelled."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("jobs_to_cancel"), self.instance_id)
        stops = []
        for row in rows:
            spec = self._specs.get(row["id"])
            if row["id"] in self._held_waits:
                self._release_held([row["id"]], _CANCELLED_WHILE_HELD)  # never handed to the backend
            elif row["id"] in self._submitting:  # (which ID it runs as is not known yet: _submit stops it)
                if row["id"] not in self._cancel_when_registered and spec is not None:
                    logger.info("task %d: job %s is being registered: stopped as an operator asked once its "
                                "registration ends", spec.task_id, spec.job_id, extra=_fields(spec))
                self._cancel_when_registered.add(row["id"])
            elif spec is not None:
                logger.info("task %d: stopping job %s as an operator asked", spec.task_id, spec.job_id,
                            extra=_fields(spec))
                if row["state"] in ("queued", "running") and row["id"] not in self._stopping:
                    self._said_stopping(row["id"], row["state"])  # (before: a local stop waits for its end)
                stops.append(self.backend.cancel(spec, spec.job_id))
        await self._stop_together(stops)
        return False

    async def _stop_together(self, stops: list[Awaitable[None]]) -> None:
        """Stop the jobs at once, at most CANCELS_AT_ONCE at a time: a local stop waits for its attempt's end (up to
        the supervisor's grace and a margin), and one at a time 20 cancelled attempts whose routine ignores SIGTERM
        took minutes, the step held all along (found by rehearsal). Every stop is tried; the first failure is
        raised after (the step is retried, as when they ran one by one)."""
        if not stops:
            return
        limit = asyncio.Semaphore(CANCELS_AT_ONCE)

        async def bounded(stop: Awaitable[None]) -> None:
            async with limit:
                await stop

        failures = [r for r in await asyncio.gather(*(bounded(stop) for stop in stops), return_exceptions=True)
                    if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _said_stopping(self, job_id: int, state: str) -> None:
        """Its attempt was asked to stop: said in its state (status, the dashboard) until it ends."""
        asked = self.clock.now()
        grace = self.backend.stop_grace_s
        kill = (f"; killed at {asked + timedelta(seconds=grace):%H:%M:%S} UTC if it has not ended by then"
                if grace is not None else "")
        self._stopping[job_id] = f"stopping: an operator cancelled it, asked to stop at {asked:%H:%M:%S} UTC{kill}"
        self._progress[job_id] = _Progress(state, self._stopping[job_id], asked, self.instance_id)
        self._progress_seen.set()

    async def release_stranded_jobs(self) -> bool:
        """Stop this launcher's jobs that wait for a worker that has not been active for
        STRANDED_AFTER_S; they are recorded lost, so their tasks are planned again onto the workers
        that remain."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("stranded_jobs"), self.instance_id, STRANDED_AFTER_S, None)
        for row in rows:
            spec = self._specs.get(row["id"])
            if spec is None or row["id"] in self._stranded:
                continue
            # Each stop takes a request to the backend: by the time this one comes, the worker may be
            # back (chaos found five jobs stopped after their node had returned, one killed as it ran).
            async with self.pool.acquire() as conn:
                if not await conn.fetch(query("stranded_jobs"), self.instance_id, STRANDED_AFTER_S, row["id"]):
                    continue
            self._stranded[row["id"]] = (f"its worker {row['worker']} was no longer active before the job started; "
                                         f"planned again")
            logger.warning("task %d: job %s waits for worker %s, which is no longer active: stopping it; "
                           "the task will be planned onto another worker", spec.task_id, spec.job_id, row["worker"],
                           extra=_fields(spec, worker=row["worker"]))
            await self.backend.cancel(spec, spec.job_id)
        return False

    async def follow_node_status(self) -> None:
        """Backends with nodes (Nomad): a worker is active while its node is ready and eligible, so
        work stops being planned onto a node that went down and resumes when it is back."""
        activity = await self.backend.worker_activity()
        async with self.pool.acquire() as conn:
            changed = await conn.fetch(query("set_worker_activity"), list(activity), list(activity.values()))
        for row in changed:
            if row["active"]:
                logger.info("worker %s is active again: its node is ready and eligible", row["name"])
            else:
                logger.warning("worker %s is no longer active: its node is down, ineligible or draining; "
                               "its tasks that have not started are planned elsewhere", row["name"])
        if any(not row["active"] for row in changed):
            # Its waiting jobs are stopped once it has been away for STRANDED_AFTER_S.
            asyncio.get_running_loop().call_later(STRANDED_AFTER_S + 0.1, self.wake, "release_stranded")

    # -- recovery ----------------------------------------------------------------------------
    async def adopt(self) -> bool:
        """Take over active jobs whose launcher is gone, and follow them to their end."""
        if self._backend_out_of_reach():
            return False  # (left to launchers that reach their backend; the probe wakes this step)
        async with self.pool.acquire() as conn:
            specs = await conn.fetch(query("adopt_orphaned_jobs"), self.instance_id,
                                     self.settings.lease_timeout_s, self.backend.name,
                                     [*self._following, *self._starting], await self.backend.site())
        again: dict[str, list[str]] = {}  # an earlier identity of this process -> its jobs adopted again
        for row in specs:
            resubmit = row["state"] == "submitted" and self.backend.resubmit_is_idempotent
            spec = spec_from_row(row)
            earlier = self._dropped.pop(row["job_id"], None)
            if earlier is not None:
                again.setdefault(earlier, []).append(row["backend_job_id"])
            else:
                logger.warning("adopting job %s of task %d (state %s) from a launcher that is gone",
                               row["backend_job_id"], row["task_id"], row["state"], extra=_fields(spec))
            self._start_following(row["job_id"], spec, submit=resubmit)
        for earlier, jobs in again.items():
            logger.warning("%s follows again %d job(s) it followed as %s before its lease lapsed (none taken over by "
                           "another launcher meanwhile): %s", self.instance_id, len(jobs), earlier,
                           ", ".join(jobs[:10]) + (f" and {len(jobs) - 10} more" if len(jobs) > 10 else ""))
        return False

    async def drop_claims(self) -> None:
        """Our lease lapsed: another launcher may have adopted our jobs. Stop following them without
        recording anything (their new owner records them) and start no job we had not started."""
        if self._following:
            logger.warning("dropping %d job(s) followed under the lapsed lease; their new owner (or our new "
                           "identity, through adoption) follows them", len(self._following))
        # (the identity that followed them: Service._renew_identity has moved on from it; those of an earlier lapse
        # that another launcher took are forgotten, not kept for the process's life)
        self._dropped = dict.fromkeys(self._following, self.earlier_ids[-1]) if self.earlier_ids else {}
        self._starting.clear()
        for task in list(self._following.values()):
            task.cancel()
        await asyncio.gather(*self._following.values(), return_exceptions=True)
        self._following.clear()
        self._ended.clear()
        self._specs.clear()
        self._stranded.clear()
        self._held.clear()
        self._held_waits.clear()
        self._in_backend.clear()
        self._cancel_when_registered.clear()

    async def _adopt_periodically(self) -> None:
        self.wake("adopt")

    def side_tasks(self):
        every = self.settings.lease_timeout_s / 2
        tasks = [SideTask("adopt", self._adopt_periodically, every, delay_first=True)]
        if self.backend.reports_worker_activity:
            tasks.append(SideTask("follow_node_status", self.follow_node_status, every, delay_first=True))
        return tasks

    async def preflight(self) -> None:
        """The backend's settings name what it has (Nomad: the namespace, node pool and region exist):
        otherwise every attempt would be refused, each recorded lost and retried for ever."""
        try:
            await self.backend.check_settings()
            if self.backend.one_site_per_installation:
                for tries_left in reversed(range(3)):
                    try:
                        await self._register_once(check=self.registration_check())
                        break
                    except CONFLICTS:  # (serializable by the role's default: the other launcher's commit won)
                        if not tries_left:
                            raise
                    except asyncpg.ReadOnlySQLTransactionError:
                        break  # (a standby: it waits for writes, then registers with the same check: Service._register)
        except BaseException:
            await self.backend.close()
            raise

    def registration_check(self):
        """At its start and when it registers anew after its lease lapsed (a launcher paused past it)."""
        return self._take_the_installations_site if self.backend.one_site_per_installation else None

    async def _take_the_installations_site(self, conn, site: str | None) -> None:
        """Every launcher of the installation puts its jobs where the others do (Nomad: one namespace),
        or it does not start: in another, it would not find theirs when it adopts them, nor they its
        own, and attempts would run twice (found by exploratory testing; migration 0070).
        Run in the transaction that registers this launcher (Service._register_once, from preflight):
        hrwsi.take_backend_scope locks the installation's row until this launcher's lease is visible,
        so a launcher of another namespace starting at the same moment waits, then finds this one
        there and is refused. Checked, then registered in two steps, both passed the check (found by
        exploratory testing)."""
        try:
            said = await conn.fetchval(query("take_backend_scope"), self.backend.name, site,
                                       self.settings.lease_timeout_s)
        except asyncpg.CheckViolationError as error:
            raise BackendSettingError(f"{error.args[0] if error.args else error}; {error.hint}") from None
        if said:
            logger.warning("%s", said)

    async def start(self) -> None:
        self._dispatch_connection.open()
        if self.claim_ahead:
            await self._read_lane_priorities()
        self._writer = asyncio.create_task(self._write_outcomes(), name="launcher-outcome-writer")
        self._progress_writer = asyncio.create_task(self._write_progress(), name="launcher-progress-writer")

    def stop_allowance_s(self) -> float:
        # (its wait for its jobs, then its backend's stop of those still running: a routine that ignores SIGTERM is
        # killed 5 s past the supervisor's grace, and the bound must not cut that and call it the database's)
        return self.settings.shutdown_grace_s + self.backend.stop_all_allowance_s

    def unwritten_at_stop(self) -> str | None:
        own = super().unwritten_at_stop()
        if not self._following:
            return own
        return f"the outcomes of {len(self._following)} job(s) (ended or running), {own}"

    async def stop(self) -> None:
        for task in (self._lanes_reading, self._reach_probe):
            if task is not None:
                task.cancel()
        if self._hold_end_wake is not None:
            self._hold_end_wake.cancel()
        self._write_outcomes_now.set()  # the jobs' followers wait for their outcomes to be stored
        try:
            await self._stop_following()
        finally:
            writers = [w for w in (self._writer, self._progress_writer) if w is not None]
            for writer in writers:
                writer.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
            await self._dispatch_connection.close()  # (else the pool's close waits for it for ever)
            await self._flush_progress()
            await self.backend.close()

    async def _stop_following(self) -> None:
        self._release_held(self._held_waits, _STOPPING_WHILE_HELD)  # a stopping launcher starts nothing more
        if not self._following:
            return
        if self.backend.jobs_outlive_launcher:
            # The jobs live on in the backend: leave them; another launcher adopts them when our
            # instance row is gone (we unregister next).
            logger.info("leaving %d running job(s) to the backend; another launcher will adopt them",
                        len(self._following))
            for task in list(self._following.values()):
                task.cancel()
            await asyncio.gather(*self._following.values(), return_exceptions=True)
            return
        logger.info("waiting up to %.0f s for %s", self.settings.shutdown_grace_s, self._jobs_waited_for())
        stops_at = self.clock.now() + timedelta(seconds=self.settings.shutdown_grace_s)
        saying = asyncio.create_task(self._say_stopping(stops_at), name="launcher-stopping-said")
        try:
            await self._wait_then_stop_jobs()
        finally:
            saying.cancel()
            await asyncio.gather(saying, return_exceptions=True)

    async def _say_stopping(self, stops_at: datetime) -> None:
        """While it waits for its jobs as it stops, the launcher says so in its row (migration 0121), at once and at
        each heartbeat, which renews its lease: `hrwsi status` and the dashboard showed a launcher in its shutdown
        grace as any running one (found by exploratory testing), and its lease, no longer renewed once its loop had
        ended, lapsed in a grace longer than it, and another launcher adopted the jobs it still waited for."""
        told = False
        while True:
            try:
                async with self.pool.acquire() as conn:
                    if await conn.fetchval(query("mark_stopping"), self.instance_id, self.settings.lease_timeout_s,
                                           self._stopping_said(stops_at)) is None:
                        return  # (its lease lapsed: the jobs are their new owner's, see drop_claims)
            except (asyncpg.PostgresError, *TRANSIENT_DATABASE_ERRORS) as error:
                if not told and not self.pool_cut_by_the_stop():
                    logger.warning("could not say in this launcher's row that it is stopping (%s): `hrwsi status` and "
                                   "the dashboard show it running until it has stopped", describe(error))
                told = True
            await asyncio.sleep(self.settings.heartbeat_s)

    def _stopping_said(self, stops_at: datetime) -> str:
        """What a stopping launcher waits for, in its row: its running jobs and until when, then what it stops."""
        waited = self._jobs_waited_for() or "nothing more"
        if self.clock.now() < stops_at:
            return (f"waits for {waited}; at {stops_at:%H:%M:%S} UTC it stops the jobs still running (their tasks are "
                    "retried)")
        if any(job_id not in self._ended for job_id in self._following):
            return (f"its grace ended at {stops_at:%H:%M:%S} UTC: it stops its jobs still running (their tasks are "
                    f"retried) and waits for {waited}")
        return f"its grace ended at {stops_at:%H:%M:%S} UTC; it waits for {waited}"

    async def _wait_then_stop_jobs(self) -> None:
        _, still = await asyncio.wait(list(self._following.values()), timeout=self.settings.shutdown_grace_s)
        if still:
            # A job that ended waits for its outcome's write (its follower too): it is not running, and its task is
            # not retried (a routine that succeeded is recorded processed, by this launcher once the database
            # answers or by the next one, from what its supervisor kept). Counted as running, "stopping 4 job(s)
            # still running; their tasks will be retried" was said of 4 jobs that had ended, then recorded
            # processed (found by exploratory testing, the database's connections gone half-open).
            running = [job_id for job_id, task in self._following.items() if task in still and job_id not in self._ended]
            if running:
                logger.warning("stopping %d job(s) still running; their tasks will be retried", len(running))
            if len(still) > len(running):
                logger.warning("%d job(s) ended and their outcome is not recorded yet (the database has not answered "
                               "its write): recorded as they ended, by this launcher if the database answers before "
                               "the stop's bound, else by the next launcher, which adopts them", len(still) - len(running))
            if running:
                await self.backend.stop_all()
            await asyncio.gather(*still, return_exceptions=True)

    def _jobs_waited_for(self) -> str:
        """What a stopping launcher waits for: its running jobs, and the outcomes of those that ended."""
        ended = sum(1 for job_id in self._following if job_id in self._ended)
        running = len(self._following) - ended
        return " and ".join(part for part in (
            f"{running} running job(s) to end" if running else "",
            f"the outcomes of {ended} job(s) that ended to be recorded" if ended else "") if part)

