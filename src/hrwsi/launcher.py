"""The launcher: dispatches ready tasks to a backend, follows each job to its end, records the outcome.

Flow: `hrwsi_task` (a task planned, or one that frees capacity) or `hrwsi_job` (a job ended) ->
step "dispatch": under an advisory lock, in one transaction, claim planned tasks whose dependency
is over and that fit their worker and the budgets now, mark them dispatched and insert one job row
per attempt (unique per task and attempt: no duplicate job, ever). Then, outside the transaction,
submit each job and follow it; the outcome, products and the task's next state are written in one
transaction. Jobs whose launcher died are adopted (step "adopt") and reconciled with the backend.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from hrwsi.backends.base import Backend, JobOutcome, JobSpec, job_id_for
from hrwsi.config import Settings
from hrwsi.service import TRANSIENT_DATABASE_ERRORS, Service
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

BATCH = 500
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
        self.steps = {"dispatch": self.dispatch, "adopt": self.adopt, "cancel": self.cancel_requested_jobs}
        frees_or_adds_work = ("planned", *FINAL_TASK_STATES, "pending")
        self.router.on("hrwsi_task", "dispatch", when=lambda n: any(s in n.counts for s in frees_or_adds_work))
        self.router.on("hrwsi_job", "dispatch", when=lambda n: any(s in n.counts for s in FINAL_JOB_STATES))
        self.router.on("hrwsi_task", "cancel", when=lambda n: "cancelled" in n.counts)
        self._following: dict[int, asyncio.Task] = {}
        self._specs: dict[int, JobSpec] = {}
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
        await self._record(job_id, spec, outcome)

    async def _record(self, job_id: int, spec: JobSpec, outcome: JobOutcome) -> None:
        products = await asyncio.to_thread(discover_products, spec.output_dir) if outcome.state == "processed" else []

        async def write(conn: asyncpg.Connection):
            async with conn.transaction():
                row = await conn.fetchrow(query("finish_job"), job_id, outcome.state, outcome.exit_code,
                                          outcome.message, outcome.started_at, outcome.finished_at)
                if row is None:
                    return None  # already final: nothing more to say
                if row["state"] == "cancelled":
                    return ("cancelled",)
                if outcome.state == "processed":
                    output_type = await conn.fetchval(
                        "SELECT output_product_type FROM hrwsi.processing_routine WHERE name = $1", spec.routine)
                    await conn.execute(query("register_products"), spec.task_id, output_type,
                                       [p for p, _ in products], [s for _, s in products])
                    await conn.execute(query("task_processed"), spec.task_id, spec.attempt,
                                       f"{len(products)} product(s)")
                    return ("processed",)
                counts = outcome.state in ("internal_error", "external_error")
                return await conn.fetchrow(query("task_attempt_failed"), spec.task_id, spec.attempt, counts,
                                           f"attempt {spec.attempt} {outcome.state}: {outcome.message}",
                                           self.settings.retry_backoff_s)

        result = await self._with_database_retry(write, f"record the outcome of job {spec.job_id}")
        if result is None:
            return
        if result == ("cancelled",):
            logger.info("task %d (%s): job %s cancelled by an operator", spec.task_id, spec.routine, spec.job_id)
        elif outcome.state == "processed":
            logger.info("task %d (%s) processed: %d product(s); log %s", spec.task_id, spec.routine,
                        len(products), spec.log_path)
        else:
            state, failures, max_attempts = result["state"], result["failures"], result["max_attempts"]
            what_next = (f"terminated after {failures} failure(s) of {max_attempts} allowed"
                         if state == "terminated" else "it will be replanned and retried")
            logger.warning("task %d (%s) attempt %d %s: %s; %s; log %s", spec.task_id, spec.routine,
                           spec.attempt, outcome.state, outcome.message, what_next, spec.log_path)
        forget = getattr(self.backend, "forget", None)
        if forget is not None:
            try:
                await forget(spec.job_id)
            except Exception as error:  # cleaning up is best effort; the outcome is already stored
                logger.warning("could not clean up job %s in the backend: %s", spec.job_id, error)

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
        return [self._adopt_periodically]

    async def stop(self) -> None:
        if not self._following:
            await self.backend.close()
            return
        stop_all = getattr(self.backend, "stop_all", None)
        if stop_all is None:
            # The jobs live on in the backend: leave them; another launcher adopts them when our
            # instance row is gone (we unregister next).
            logger.info("leaving %d running job(s) to the backend; another launcher will adopt them",
                        len(self._following))
            for task in list(self._following.values()):
                task.cancel()
            await asyncio.gather(*self._following.values(), return_exceptions=True)
            await self.backend.close()
            return
        logger.info("waiting up to %.0f s for %d running job(s) to end", self.settings.shutdown_grace_s,
                    len(self._following))
        _, still = await asyncio.wait(list(self._following.values()), timeout=self.settings.shutdown_grace_s)
        if still:
            logger.warning("stopping %d job(s) still running; their tasks will be retried", len(still))
            await stop_all()
            await asyncio.gather(*still, return_exceptions=True)
        await self.backend.close()


def make_backend(name: str, settings: Settings) -> Backend:
    if name == "local":
        from hrwsi.backends.local import LocalBackend

        return LocalBackend(settings.max_parallel_jobs)
    if name == "dry-run":
        from hrwsi.backends.dry_run import DryRunBackend

        return DryRunBackend()
    if name == "nomad":
        from hrwsi.backends.nomad import NomadBackend, NomadConfig

        return NomadBackend(NomadConfig.from_env())
    raise ValueError(f"unknown backend {name!r}: choose local, nomad or dry-run (HRWSI_BACKEND)")

