"""The launcher: dispatches ready tasks to a backend, follows each job to its end, records the outcome.

Flow: `hrwsi_task` (a task planned, or one that frees capacity) or `hrwsi_job` (a job ended) ->
step "dispatch": under an advisory lock, in one transaction, claim planned tasks whose dependency
is over and that fit their worker and the budgets now, mark them dispatched and insert one job row
per attempt (unique per task and attempt: no duplicate job, ever). Then, outside the transaction,
submit each job and follow it; the outcome, products and the task's next state are written in one
transaction. Jobs whose launcher died are adopted (step "adopt") and reconciled with the backend.
Jobs still waiting for a worker that is no longer active are stopped and recorded lost (step
"release_stranded"); with Nomad, a side task keeps each worker's `active` flag in step with its node.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from hrwsi.backends.base import Backend, JobOutcome, JobSpec, job_id_for
from hrwsi.service import TRANSIENT_DATABASE_ERRORS, Service
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

BATCH = 500
OUTCOME_BATCH = 1000
FINAL_TASK_STATES = ("processed", "terminated", "cancelled")
FINAL_JOB_STATES = ("processed", "internal_error", "external_error", "lost", "cancelled")


@dataclass(frozen=True)
class Capacity:
    cpu: float
    ram_mb: float
    storage_mb: float


def choose_dispatchable(candidates, in_use: dict[str, Capacity], flavours: dict[str, Capacity],
                        budget: dict) -> list:
    """The candidates (in order) that fit their worker's flavour and every budget right now."""
    used = dict(in_use)
    total = Capacity(sum(c.cpu for c in used.values()), sum(c.ram_mb for c in used.values()),
                     sum(c.storage_mb for c in used.values()))
    busy_workers = {w for w, c in used.items() if c.cpu > 0 or c.ram_mb > 0 or c.storage_mb > 0}
    chosen = []
    for task in candidates:
        worker = task["worker"]
        limit = flavours.get(worker)
        if limit is None:
            continue  # its worker was removed: the orchestrator replans it
        now = used.get(worker, Capacity(0, 0, 0))
        after = Capacity(now.cpu + task["cpu"], now.ram_mb + task["ram_mb"], now.storage_mb + task["storage_mb"])
        if after.cpu > limit.cpu + 1e-9 or after.ram_mb > limit.ram_mb or after.storage_mb > limit.storage_mb:
            continue
        new_total = Capacity(total.cpu + task["cpu"], total.ram_mb + task["ram_mb"],
                             total.storage_mb + task["storage_mb"])
        if budget.get("cpu_max") is not None and new_total.cpu > budget["cpu_max"] + 1e-9:
            continue
        if budget.get("ram_max_mb") is not None and new_total.ram_mb > budget["ram_max_mb"]:
            continue
        if budget.get("storage_max_mb") is not None and new_total.storage_mb > budget["storage_max_mb"]:
            continue
        if (budget.get("vm_max") is not None and worker not in busy_workers
                and len(busy_workers) + 1 > budget["vm_max"]):
            continue
        used[worker] = after
        total = new_total
        busy_workers.add(worker)
        chosen.append(task)
    return chosen


@dataclass
class _Finished:
    job_id: int
    spec: JobSpec
    outcome: JobOutcome
    products: list[tuple[str, int]]
    stored: asyncio.Future


def spec_from_row(row: asyncpg.Record) -> JobSpec:
    return JobSpec(
        job_id=row["backend_job_id"], task_id=row["task_id"], attempt=row["attempt"], routine=row["routine"],
        condition=row["condition"], input_path=row["input_path"], tile=row["tile"], worker=row["worker"],
        command=tuple(row["command"] or ()), image=row["image"], cpu=row["cpu"], ram_mb=row["ram_mb"],
        storage_mb=row["storage_mb"], output_dir=row["output_dir"], log_path=row["log_path"],
        timeout_s=row["timeout_s"], env={k: str(v) for k, v in json.loads(row["env"] or "{}").items()})


def discover_products(output_dir: str) -> list[tuple[str, int]]:
    """Every file the routine wrote in its output directory: (absolute path, size)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return sorted((str(p.resolve()), p.stat().st_size) for p in root.rglob("*") if p.is_file())


class Launcher(Service):
    kind = "launcher"

    def __init__(self, pool: asyncpg.Pool, settings: Settings, backend: Backend):
        super().__init__(pool, settings)
        self.backend = backend
        self.steps = {"dispatch": self.dispatch, "adopt": self.adopt, "cancel": self.cancel_requested_jobs,
                      "release_stranded": self.release_stranded_jobs}
        frees_or_adds_work = ("planned", *FINAL_TASK_STATES, "pending")
        self.router.on("hrwsi_task", "dispatch", when=lambda n: any(s in n.counts for s in frees_or_adds_work))
        self.router.on("hrwsi_job", "dispatch", when=lambda n: any(s in n.counts for s in FINAL_JOB_STATES))
        self.router.on("hrwsi_task", "cancel", when=lambda n: "cancelled" in n.counts)
        self._following: dict[int, asyncio.Task] = {}
        self._specs: dict[int, JobSpec] = {}
        self._outcomes: asyncio.Queue[_Finished] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self._stranded: dict[int, str] = {}  # job -> why it was stopped before it started (recorded lost)
        self.dispatched = 0

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self) -> bool:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(query("lock_dispatch"))
                candidates = await conn.fetch(query("dispatch_candidates"), BATCH)
                if not candidates:
                    return False
                in_use = {r["worker"]: Capacity(r["cpu"], r["ram_mb"], r["storage_mb"])
                          for r in await conn.fetch(query("capacity_in_use"))}
                flavours = {w["name"]: Capacity(w["cpu"], w["ram_mb"], w["disk_mb"])
                            for w in await conn.fetch(query("planning_workers"))}
                budget = dict(await conn.fetchrow(query("planning_budget")))
                chosen = choose_dispatchable(candidates, in_use, flavours, budget)
                if not chosen:
                    return False
                claimed = await conn.fetch(query("mark_tasks_dispatched"), [t["id"] for t in chosen])
                attempts = {r["id"]: r["attempts"] for r in claimed}
                routines = {t["id"]: t["routine"] for t in chosen}
                workers = {t["id"]: t["worker"] for t in chosen}
                ids = list(attempts)
                job_ids = [job_id_for(routines[i], i, attempts[i]) for i in ids]
                data = self.settings.data_dir
                rows = await conn.fetch(
                    query("insert_jobs"), ids, [attempts[i] for i in ids], [self.backend.name] * len(ids),
                    job_ids, [workers[i] for i in ids], [self.instance_id] * len(ids),
                    [str(data / "logs" / routines[i] / f"{j}.log") for i, j in zip(ids, job_ids)],
                    [str(data / "products" / routines[i] / f"task-{i}" / f"attempt-{attempts[i]}")
                     for i in ids])
            specs = await conn.fetch(query("job_specs"), [r["id"] for r in rows])
        for row in specs:
            self._start_following(row["job_id"], spec_from_row(row), submit=True)
        self.dispatched += len(specs)
        logger.info("dispatched %d task(s) to the %s backend", len(specs), self.backend.name)
        return len(candidates) == BATCH and len(chosen) == len(candidates)

    def _start_following(self, job_id: int, spec: JobSpec, *, submit: bool) -> None:
        task = asyncio.create_task(self._follow(job_id, spec, submit), name=f"follow-{spec.job_id}")
        self._following[job_id] = task
        self._specs[job_id] = spec

        def forget(_task: asyncio.Task) -> None:
            self._following.pop(job_id, None)
            self._specs.pop(job_id, None)

        task.add_done_callback(forget)

    async def _follow(self, job_id: int, spec: JobSpec, submit: bool) -> None:
        if submit:
            try:
                await self.backend.submit(spec)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the backend refused it: that attempt failed, the task goes on
                logger.error("task %d: the %s backend refused job %s: %s", spec.task_id, self.backend.name,
                             spec.job_id, error)
                await self._record(job_id, spec, JobOutcome("internal_error", None,
                                                             f"the backend refused the job: {error}"))
                return

        async def on_progress(state: str, reason: str) -> None:
            await self._with_database_retry(
                lambda conn: conn.execute(query("mark_job_progress"), job_id, state, reason),
                f"record that job {spec.job_id} is {state}")

        try:
            outcome = await self.backend.wait(spec, spec.job_id, on_progress)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("task %d: following job %s failed; recording it as lost", spec.task_id, spec.job_id)
            outcome = JobOutcome("lost", None, f"the launcher could not follow the job: {error}")
        stranded = self._stranded.pop(job_id, None)
        if stranded is not None and outcome.state == "cancelled":
            outcome = JobOutcome("lost", outcome.exit_code, stranded)  # not an operator's cancel: retried
        await self._record(job_id, spec, outcome)

    async def _record(self, job_id: int, spec: JobSpec, outcome: JobOutcome) -> None:
        """Hand the outcome to the writer and wait until it is stored; then log and clean up."""
        products = await asyncio.to_thread(discover_products, spec.output_dir) if outcome.state == "processed" else []
        stored: asyncio.Future = asyncio.get_running_loop().create_future()
        self._outcomes.put_nowait(_Finished(job_id, spec, outcome, products, stored))
        result = await stored
        if result is None:
            return  # the job was already final
        if result == "cancelled":
            logger.info("task %d (%s): job %s cancelled by an operator", spec.task_id, spec.routine, spec.job_id)
        elif result == "processed":
            logger.info("task %d (%s) processed: %d product(s); log %s", spec.task_id, spec.routine,
                        len(products), spec.log_path)
        else:
            state, failures, max_attempts = result
            what_next = (f"terminated after {failures} failure(s) of {max_attempts} allowed"
                         if state == "terminated" else "it will be replanned and retried")
            logger.warning("task %d (%s) attempt %d %s: %s; %s; log %s", spec.task_id, spec.routine,
                           spec.attempt, outcome.state, outcome.message, what_next, spec.log_path)
        try:
            await self.backend.forget(spec.job_id)
        except Exception as error:  # cleaning up is best effort; the outcome is already stored
            logger.warning("could not clean up job %s in the backend: %s", spec.job_id, error)

    async def _write_outcomes(self) -> None:
        """The one writer of outcomes: everything that ended meanwhile goes in one transaction."""
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < OUTCOME_BATCH and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                results = await self._with_database_retry(
                    lambda conn, batch=batch: self._store_outcomes(conn, batch), f"record the outcome of {len(batch)} job(s)")
            except asyncpg.PostgresError as error:
                # Something in this batch is refused: store the outcomes one by one so that only
                # the offending job stays unrecorded (its lease-based adoption retries it later).
                logger.error("recording %d outcome(s) at once failed (%s); recording them one by one",
                             len(batch), error)
                results = {}
                for item in batch:
                    try:
                        results.update(await self._with_database_retry(
                            lambda conn, one=item: self._store_outcomes(conn, [one]),
                            f"record the outcome of job {item.spec.job_id}"))
                    except asyncpg.PostgresError as single_error:
                        logger.error("task %d: the outcome of job %s (%s) could not be recorded: %s; "
                                     "the job stays active and will be adopted and reconciled",
                                     item.spec.task_id, item.spec.job_id, item.outcome.state, single_error)
            for item in batch:
                if not item.stored.done():
                    item.stored.set_result(results.get(item.job_id))

    async def _store_outcomes(self, conn: asyncpg.Connection, batch: list[_Finished]) -> dict:
        """Store outcomes, products and the tasks' next states; returns what happened per job id."""
        results: dict[int, object] = {}
        async with conn.transaction():
            rows = await conn.fetch(
                query("finish_jobs"), [b.job_id for b in batch], [b.outcome.state for b in batch],
                [b.outcome.exit_code for b in batch], [b.outcome.message for b in batch],
                [b.outcome.started_at for b in batch], [b.outcome.finished_at for b in batch])
            final = {r["id"]: r["state"] for r in rows}
            done = [b for b in batch if final.get(b.job_id) == "processed"]
            failed = [b for b in batch if final.get(b.job_id) in ("internal_error", "external_error", "lost")]
            for b in batch:
                if final.get(b.job_id) == "cancelled":
                    results[b.job_id] = "cancelled"
            if done:
                products = [(b.spec.task_id, path, size) for b in done for path, size in b.products]
                await conn.execute(query("register_products"), [p[0] for p in products],
                                   [p[1] for p in products], [p[2] for p in products])
                await conn.execute(query("tasks_processed"), [b.spec.task_id for b in done],
                                   [b.spec.attempt for b in done], [f"{len(b.products)} product(s)" for b in done])
                results.update({b.job_id: "processed" for b in done})
            if failed:
                next_states = await conn.fetch(
                    query("tasks_attempt_failed"), [b.spec.task_id for b in failed], [b.spec.attempt for b in failed],
                    [final[b.job_id] != "lost" for b in failed],
                    [f"attempt {b.spec.attempt} {final[b.job_id]}: {b.outcome.message}" for b in failed],
                    self.settings.retry_backoff_s)
                by_task = {r["id"]: (r["state"], r["failures"], r["max_attempts"]) for r in next_states}
                for b in failed:
                    if b.spec.task_id in by_task:  # else the task was no longer active (cancelled)
                        results[b.job_id] = by_task[b.spec.task_id]
        return results

    async def _with_database_retry(self, work, what: str):
        """Run work(conn) until it succeeds: an outcome must never be lost to a database blip."""
        delay = 0.1
        while True:
            try:
                async with self.pool.acquire() as conn:
                    return await work(conn)
            except TRANSIENT_DATABASE_ERRORS as error:
                logger.warning("could not %s (%s); retrying in %.1f s", what, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def cancel_requested_jobs(self) -> bool:
        """Stop the jobs of tasks an operator cancelled; their followers record them cancelled."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("jobs_to_cancel"), self.instance_id)
        for row in rows:
            spec = self._specs.get(row["id"])
            if spec is not None:
                logger.info("task %d: stopping job %s as an operator asked", spec.task_id, spec.job_id)
                await self.backend.cancel(spec, spec.job_id)
        return False

    async def release_stranded_jobs(self) -> bool:
        """Stop this launcher's jobs that wait for a worker that is no longer active; they are
        recorded lost, so their tasks are planned again onto the workers that remain."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("stranded_jobs"), self.instance_id)
        for row in rows:
            spec = self._specs.get(row["id"])
            if spec is None or row["id"] in self._stranded:
                continue
            self._stranded[row["id"]] = (f"its worker {row['worker']} was no longer active before the job started; "
                                         f"planned again")
            logger.warning("task %d: job %s waits for worker %s, which is no longer active: stopping it; "
                           "the task will be planned onto another worker", spec.task_id, spec.job_id, row["worker"])
            await self.backend.cancel(spec, spec.job_id)
        return False

    async def follow_node_status(self) -> None:
        """Backends with nodes (Nomad): a worker is active while its node is ready and eligible, so
        work stops being planned onto a node that went down and resumes when it is back."""
        if not await self._sleep(self.settings.lease_timeout_s / 2):
            return
        activity = await self.backend.worker_activity()
        async with self.pool.acquire() as conn:
            changed = await conn.fetch(query("set_worker_activity"), list(activity), list(activity.values()))
        for row in changed:
            if row["active"]:
                logger.info("worker %s is active again: its node is ready and eligible", row["name"])
            else:
                logger.warning("worker %s is no longer active: its node is down, ineligible or draining; "
                               "its tasks that have not started are planned elsewhere", row["name"])
        if changed:
            self.wake("release_stranded")

    # -- recovery ----------------------------------------------------------------------------
    async def adopt(self) -> bool:
        """Take over active jobs whose launcher is gone, and follow them to their end."""
        async with self.pool.acquire() as conn:
            adopted = await conn.fetch(query("adopt_orphaned_jobs"), self.instance_id,
                                       self.settings.lease_timeout_s, self.backend.name, list(self._following))
            if not adopted:
                return False
            specs = await conn.fetch(query("job_specs"), [r["id"] for r in adopted])
        for row in specs:
            resubmit = row["state"] == "submitted" and self.backend.resubmit_is_idempotent
            logger.warning("adopting job %s of task %d (state %s) from a launcher that is gone",
                           row["backend_job_id"], row["task_id"], row["state"])
            self._start_following(row["job_id"], spec_from_row(row), submit=resubmit)
        return False

    async def _adopt_periodically(self) -> None:
        if await self._sleep(self.settings.lease_timeout_s / 2):
            self.wake("adopt")

    def side_tasks(self):
        if self.backend.reports_worker_activity:
            return [self._adopt_periodically, self.follow_node_status]
        return [self._adopt_periodically]

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_outcomes(), name="launcher-outcome-writer")

    async def stop(self) -> None:
        try:
            await self._stop_following()
        finally:
            if self._writer is not None:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)
            await self.backend.close()

    async def _stop_following(self) -> None:
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
        logger.info("waiting up to %.0f s for %d running job(s) to end", self.settings.shutdown_grace_s,
                    len(self._following))
        _, still = await asyncio.wait(list(self._following.values()), timeout=self.settings.shutdown_grace_s)
        if still:
            logger.warning("stopping %d job(s) still running; their tasks will be retried", len(still))
            await self.backend.stop_all()
            await asyncio.gather(*still, return_exceptions=True)

