"""The orchestrator: creates a task for every new input and plans pending tasks onto workers.
It also runs the notification manager (alerts.send_pending_alerts) and retention (hrwsi.retention)
as side tasks.

Flow: `hrwsi_input` notification -> step "create_tasks" (backlog -> tasks, one statement) ->
step "plan" (under a transaction-level advisory lock: send planned tasks of inactive workers back to
pending, load pending tasks and what already holds capacity, run the planner, store assignments and
the plan's figures in one transaction).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import UTC, datetime

import asyncpg

from hrwsi import planner, retention
from hrwsi.alerts import AlertSender, AlertSettings, send_pending_alerts
from hrwsi.service import Service, SideTask
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

BATCH = 20_000


class Orchestrator(Service):
    kind = "orchestrator"

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        super().__init__(pool, settings)
        self.steps = {"create_tasks": self.create_tasks, "plan": self.plan}
        self.router.on("hrwsi_input", "create_tasks")
        self.router.on("hrwsi_task", "plan", when=lambda n: n.counts.get("pending", 0) > 0)
        self.last_plan: planner.Plan | None = None
        self.alerts = AlertSender(AlertSettings.from_env())

    def side_tasks(self):
        tasks = [retention.side_task(self.pool, self.settings, self.stopping)]
        if self.alerts.settings.enabled:
            tasks.append(SideTask("send_alerts", self.send_alerts, self.settings.backstop_poll_s))
        return tasks

    async def send_alerts(self) -> None:
        """The notification manager: deliver the alert outbox (terminated tasks, held routines)."""
        sent = await send_pending_alerts(self.pool, self.alerts)
        if sent:
            logger.info("sent %d alert(s)", sent)

    async def create_tasks(self) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(query("create_tasks_for_new_inputs"), BATCH)
            if rows:
                await conn.execute(query("link_sequential_tasks"), [r["id"] for r in rows])
        if rows:
            logger.info("created %d task(s) for new inputs", len(rows))
            self.wake("plan")
        return len(rows) == BATCH

    async def plan(self) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(query("lock_planning"))
            released = await conn.fetch(query("release_tasks_of_inactive_workers"))
            for worker, count in Counter(r["worker"] for r in released).items():
                logger.warning("worker %s is no longer active: its %d planned task(s) are planned again",
                               worker, count)
            pending = await conn.fetch(query("tasks_to_plan"))
            if not pending:
                return False
            now = datetime.now(UTC)
            workers = await conn.fetch(query("planning_workers"))
            budget = await conn.fetchrow(query("planning_budget"))
            holding = await conn.fetch(query("tasks_holding_capacity"), now)
            tasks = [_demand(row, now) for row in pending]
            fixed = [planner.FixedTask(r["id"], r["worker"], r["cpu"], r["ram_mb"], r["storage_mb"],
                                       r["start_s"], max(r["end_s"], r["start_s"] + 1.0)) for r in holding]
            flavours = {}
            pool = []
            for w in workers:
                flavour = flavours.setdefault(
                    w["flavour"], planner.Flavour(w["flavour"], w["cpu"], w["ram_mb"], w["disk_mb"]))
                pool.append(planner.Worker(w["name"], flavour))
            budgets = planner.Budgets(budget["cpu_max"], budget["ram_max_mb"], budget["storage_max_mb"],
                                      budget["vm_max"])
            # CPU-bound: run it off the event loop so the listener and heartbeat stay responsive.
            plan = await asyncio.to_thread(planner.plan_tasks, tasks, pool, budgets, fixed)
            violations = await asyncio.to_thread(planner.validate_plan, plan, tasks, pool, budgets, fixed)
            if violations:
                # Never commit a plan that breaks a limit: say what is wrong and try again later.
                logger.error("the planner produced an invalid plan for %d task(s); nothing stored: %s",
                             len(tasks), "; ".join(violations[:5]))
                return False
            await self._store(conn, plan, now)
        self.last_plan = plan
        return False

    async def _store(self, conn: asyncpg.Connection, plan: planner.Plan, now: datetime) -> None:
        figures = plan.figures
        if plan.assignments:
            plan_id = await conn.fetchval(
                query("insert_plan"), figures.task_count, figures.makespan_s, figures.lower_bound_s,
                figures.vms, figures.vm_hours, figures.planning_s, json.dumps(plan.to_json()))
            assignments = list(plan.assignments.values())
            await conn.execute(
                query("store_assignments"), plan_id, now,
                [a.task_id for a in assignments], [a.worker for a in assignments],
                [a.start_s for a in assignments], [a.end_s for a in assignments])
            logger.info("planned %d task(s) on %d VM(s): makespan %.0f s, lower bound %.0f s",
                        len(assignments), figures.vms, figures.makespan_s, figures.lower_bound_s)
        if plan.unplannable:
            changed = await conn.execute(
                query("store_unplannable_reasons"),
                [u.task_id for u in plan.unplannable], [u.reason for u in plan.unplannable])
            if changed != "UPDATE 0":
                for item in plan.unplannable[:20]:
                    logger.warning("cannot plan task %d: %s; it stays pending until the configuration changes",
                                   item.task_id, item.reason)
                if len(plan.unplannable) > 20:
                    logger.warning("... and %d more task(s) that cannot be planned", len(plan.unplannable) - 20)


def _demand(row: asyncpg.Record, now: datetime) -> planner.TaskDemand:
    not_before = row["not_before"]
    earliest = max(0.0, (not_before - now).total_seconds()) if not_before else 0.0
    return planner.TaskDemand(
        id=row["id"], routine=row["routine"], cpu=row["cpu"], ram_mb=row["ram_mb"],
        storage_mb=row["storage_mb"], duration_s=max(row["duration_s"], 0.001),
        depends_on=(row["depends_on"],) if row["depends_on"] else (),
        earliest_start_s=earliest, flavour=row["flavour"])
