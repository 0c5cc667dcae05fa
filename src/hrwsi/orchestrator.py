"""The orchestrator: plans pending tasks onto workers, runs the alert outbox and retention.

Tasks are created with their inputs, by the input table's trigger (ADR 0009). Flow: `hrwsi_task`
with new pending tasks -> step "plan" (once they are PLAN_AFTER_S old, so that a burst is planned
once and the launcher's fast path takes what can start at once; while a launcher can start the most urgent
pending task at once, planning waits, at most PLAN_POSTPONE_MAX_S; while the step is due, `hrwsi_task` is
not listened to): send planned tasks of inactive workers
back to pending; read, in one snapshot and without locks, the pending tasks, what holds capacity
and the plan generation; run the planner off the event loop; validate the plan; store it with ONE
call of `hrwsi.store_plan`, which refuses it if another orchestrator stored a plan meanwhile (then
this one plans again) or if this orchestrator's lease lapsed. No lock is held while the planner
runs, so a paused orchestrator never stops the others.
Side tasks: `promote_aged_tasks` (lane ageing), `raise_deadline_alerts` (a task the plan ends after
its deadline, or past it and not processed; ADR 0010), `send_alerts` (the notification manager) and
`retention` (old finished work deleted in batches, hrwsi.retention).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import datetime

import asyncpg

from hrwsi import metrics, planner, retention
from hrwsi.alerts import AlertSender, AlertSettings, send_pending_alerts
from hrwsi.planning_input import PlanningInput, demand_from_row, screen
from hrwsi.service import AdaptiveBatch, Service, SideTask, timed_statement
from hrwsi.service_logging import task_fields
from hrwsi.settings import Settings
from hrwsi.sql_files import query
from hrwsi.timeliness import duration_text

logger = logging.getLogger(__name__)

# New pending tasks wait this long before planning: a burst is planned once, and a task that can
# start at once is taken by the launcher's fast path first (one notification hop instead of two).
PLAN_DEBOUNCE_S = 0.03
# A pending task is planned once it has waited this long: until then the launcher's fast path may
# start it where capacity is free, and planning it would be work thrown away (a burst of 10,000
# inputs on free capacity is dispatched twice as fast without). What has to wait for capacity is
# planned after this delay, so the plan covers exactly the work that queues.
PLAN_AFTER_S = 2.0
# While a launcher's fast path can start the most urgent pending task now, that work is left to it
# (a burst on free capacity: planning 100,000 tasks that are dispatched as they are planned took a
# core for 8 s). At most this long, in case the fast path cannot start what looks as if it fits.
PLAN_POSTPONE_MAX_S = 30.0
PROMOTE_EVERY_S = 60.0
# Deadlines are hours: a check every 10 s alerts in time, and its first check waits one interval so
# that it adds nothing to the burst of queries a service makes as it starts.
DEADLINE_CHECK_EVERY_S = 10.0
# At most this many pending tasks per plan, most urgent first: a big back-fill is planned in
# bounded rounds, between which new near-real-time tasks are planned (and dispatched) first.
PLAN_BATCH = 20_000


class Orchestrator(Service):
    kind = "orchestrator"

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        super().__init__(pool, settings)
        self.steps = {"plan": self.plan}
        self.plan_batch = AdaptiveBatch(PLAN_BATCH)
        self.plan_after_s = PLAN_AFTER_S
        # New pending tasks are planned once they are old enough: the step wakes then, not at once
        # (it would find them too young, after four queries per input: on the database's CPU,
        # beside the launcher's fast path that is starting them). While the step is due (young tasks
        # wait, or their planning is left to the fast path), this channel is not listened to
        # (Service.wake_later): inputs coming every few milliseconds wake the orchestrator at most once
        # per PLAN_AFTER_S, not at every input.
        self.router.on("hrwsi_task", "plan", when=lambda n: n.counts.get("pending", 0) > 0,
                       debounce_s=lambda: self.plan_after_s + PLAN_DEBOUNCE_S)
        self.last_plan: planner.Plan | None = None
        self._postponed_since: float | None = None
        self.alerts = AlertSender(AlertSettings.from_env())

    def side_tasks(self):
        tasks = [SideTask("promote_aged_tasks", self.promote_aged_tasks, PROMOTE_EVERY_S),
                 SideTask("raise_deadline_alerts", self.raise_deadline_alerts, DEADLINE_CHECK_EVERY_S,
                          delay_first=True),
                 retention.side_task(self.pool, self.settings, self.stopping)]
        if self.alerts.settings.enabled:
            tasks.append(SideTask("send_alerts", self.send_alerts, self.settings.backstop_poll_s))
        return tasks

    async def send_alerts(self) -> None:
        """The notification manager: deliver the alert outbox (terminated tasks, held routines)."""
        sent = await send_pending_alerts(self.pool, self.alerts)
        if sent:
            logger.info("sent %d alert(s)", sent)

    async def promote_aged_tasks(self) -> None:
        """Ageing: archive work waiting longer than its lane allows is served as near-real-time. And the
        sweep of time-series tasks that wait for upstream work that is over (an index probe when none
        waits): a wait the end of the upstream task could not clear (its routine no longer feeds the
        series, or the series' lock was busy: the outcome writer does not wait for it) ends here."""
        async with self.pool.acquire() as conn:
            promoted = await conn.fetchval(query("promote_aged_tasks"))
            released = await conn.fetchval(query("recheck_upstream_waits"))
        if promoted:
            logger.info("%d task(s) waited longer than their lane allows: now served as near-real-time", promoted)
        if released:
            logger.info("%d time-series task(s) no longer wait for an earlier scene's upstream work, which is over "
                        "(`hrwsi task show` says which)", released)

    async def raise_deadline_alerts(self) -> None:
        """Deadlines: alert (once per task) when the plan already ends a task after its deadline, and when
        an open task is past it. The orchestrator owns it because its plans set the planned ends."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(query("raise_deadline_alerts"))
        if row["at_risk"]:
            logger.warning("%d task(s) are planned to end after their deadline: alert deadline_at_risk written "
                           "(`hrwsi timeliness`)", row["at_risk"])
        if row["missed"]:
            logger.warning("%d task(s) passed their deadline unprocessed: alert deadline_missed written "
                           "(`hrwsi timeliness`)", row["missed"])

    async def plan(self) -> bool:
        """Plan pending tasks; True when planning must run again at once (the plan was stale, stored by
        another orchestrator; less urgent levels or a full batch wait for the next round)."""
        async with self.pool.acquire() as conn:
            released = await conn.fetch(query("release_tasks_of_inactive_workers"))
            for worker, count in Counter(r["worker"] for r in released).items():
                logger.warning("worker %s is no longer active: its %d planned task(s) are planned again",
                               worker, count)
            now = self.clock.now()  # the database's time: a host minutes off planned minutes off
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                # Asked before the pending tasks are read: in a burst of 100,000 on free capacity,
                # the tasks waiting their turn were read 20,000 at a time, every 2 s, to be dropped.
                if await self._left_to_the_fast_path(conn):
                    return False
                batch = self.plan_batch.size
                pending = await conn.fetch(query("tasks_to_plan"), now, batch, self.plan_after_s)
                if not pending:
                    await self._plan_young_tasks_later(conn, now)
                    return False
                generation = await conn.fetchval(query("plan_generation"))
                workers = await conn.fetch(query("planning_workers"))
                budget = await conn.fetchrow(query("planning_budget"))
                # Read once for every level of the batch (a level's plan keeps the planned tasks at
                # least as urgent as it: _holding_at).
                holding = await conn.fetch(query("tasks_holding_capacity"), now, pending[-1]["priority"])
        pool = self._planning_pool(workers)
        budgets = planner.Budgets(budget["cpu_max"], budget["ram_max_mb"], budget["storage_max_mb"],
                                  budget["vm_max"])
        # One priority per plan, the most urgent first: its plan ignores the queue positions of less
        # urgent planned work (which it takes), and the next round plans the less urgent work behind it
        # (ADR 0009). A level whose tasks can none be planned (a routine above a budget: ADR 0003) is set
        # aside with its reasons and the next level is planned in the same round: it used to be the
        # whole round, picked again at once and for ever (hundreds of rounds a second, nothing stored).
        levels = sorted({row["priority"] for row in pending})
        set_aside: list[planner.Unplannable] = []
        for level in levels:
            tasks = [demand_from_row(row, now) for row in pending if row["priority"] == level]
            problem = screen(tasks, pool, budgets, self._holding_at(holding, level))
            # CPU-bound: run it off the event loop so the listener and heartbeat stay responsive.
            plan = await asyncio.to_thread(self._plan_and_check, problem, budget["plan_mode"],
                                           budget["plan_horizon_s"])
            if plan is None:
                self._retry_later("plan")
                return False
            plan.unplannable[:0] = set_aside
            if plan.assignments or level == levels[-1]:
                break
            set_aside = plan.unplannable
        stored = await self._store(plan, now, generation)
        if stored:
            self.last_plan = plan
            self.plan_batch.succeeded()
            if plan.assignments:  # metrics hook (issue 13)
                metrics.PLAN_SECONDS.observe(plan.figures.planning_s)
                metrics.PLANNED_TASKS.inc(len(plan.assignments))
        # Again at once only after progress: a round that planned nothing (a full batch of tasks that
        # cannot be planned) would read the same batch again. Those tasks wait for the next change.
        again = not stored or (bool(plan.assignments) and (level != levels[-1] or len(pending) == batch))
        if not again:
            # Tasks too young for this round are planned when they are old enough: their inputs'
            # notifications may not come (not listened to while this step was due).
            async with self.pool.acquire() as conn:
                # (at the round's own time: a task too young for it and old enough by the time the
                # round ended was in neither, and waited for the backstop poll)
                await self._plan_young_tasks_later(conn, now)
        return again

    @staticmethod
    def _planning_pool(workers) -> list[planner.Worker]:
        flavours: dict[str, planner.Flavour] = {}
        pool = []
        for w in workers:
            flavour = flavours.setdefault(
                w["flavour"], planner.Flavour(w["flavour"], w["cpu"], w["ram_mb"], w["disk_mb"]))
            pool.append(planner.Worker(w["name"], flavour))
        return pool

    @staticmethod
    def _holding_at(holding, level: int) -> list[planner.FixedTask]:
        """What holds capacity against the tasks of this priority: tasks under way, planned tasks at least as
        urgent (less urgent planned tasks give their queue position to it), and, against less urgent work than
        priority 0, the room hand-over holds keep for urgent chains (ADR 0009), as hrwsi.dispatch counts them."""
        return [planner.FixedTask(r["id"], r["worker"], r["cpu"], r["ram_mb"], r["storage_mb"], r["start_s"], r["end_s"])
                for r in holding if (level > 0 if r["state"] == "handover_hold"
                                     else r["state"] != "planned" or r["priority"] <= level)]

    async def _plan_young_tasks_later(self, conn, now) -> None:
        """Pending tasks too young to plan at `now` (this service's clock, as tasks_to_plan reads them):
        plan them when they are old enough (unless dispatched)."""
        age = await conn.fetchval(query("youngest_pending_age"), self.plan_after_s, now)
        if age is not None:
            # (One timer at most, wake_later: every run that found young tasks used to add one, and a
            # chain of 1,500 jobs ran the step 376 times.)
            self.wake_later("plan", max(0.0, self.plan_after_s - age) + PLAN_DEBOUNCE_S)

    async def _left_to_the_fast_path(self, conn) -> bool:
        """True (and planning is tried again later) while a launcher can start the most urgent pending
        task at once, for at most PLAN_POSTPONE_MAX_S in a row."""
        loop = asyncio.get_running_loop()
        if not await conn.fetchval(query("fast_path_has_room"), self.settings.lease_timeout_s):
            self._postponed_since = None
            return False
        if self._postponed_since is None:
            self._postponed_since = loop.time()
        elif loop.time() - self._postponed_since >= PLAN_POSTPONE_MAX_S:
            self._postponed_since = None
            return False
        self.wake_later("plan", self.plan_after_s + PLAN_DEBOUNCE_S)
        return True

    @staticmethod
    def _plan_and_check(problem: PlanningInput, mode: str = "makespan",
                        horizon_s: float | None = None) -> planner.Plan | None:
        """The plan of what can be planned (in the configured mode: makespan, or the fewest workers
        within the horizon), with what was set aside; None if the planner's plan breaks a limit (never
        stored: the error is logged and planning runs again later)."""
        if problem.tasks:
            plan = planner.plan_tasks(problem.tasks, problem.workers, problem.budgets, problem.fixed,
                                      horizon_s=horizon_s, mode=mode)
            if plan.late:
                Orchestrator._say_late(plan.late)
            if plan.figures.horizon_missed_by_s:
                logger.warning("no plan ends within the %.0f s horizon: %s", horizon_s, plan.figures.horizon_note)
            violations = planner.validate_plan(plan, problem.tasks, problem.workers, problem.budgets, problem.fixed)
            if violations:
                logger.error("the planner produced an invalid plan for %d task(s); nothing stored: %s",
                             len(problem.tasks), "; ".join(violations[:5]))
                return None
        else:
            plan = planner.Plan({}, [], planner.PlanFigures(0, 0.0, 0.0, 0, 0.0, {}, {}, 0.0))
        plan.unplannable.extend(problem.set_aside)
        return plan

    @staticmethod
    def _say_late(late: list[planner.LateTask]) -> None:
        """What the deadline check does about the tasks the plan ends late: deadline_at_risk while the
        deadline is ahead, deadline_missed once it has passed (it said "alerted as at risk" of tasks
        already past their deadline, which hrwsi.raise_deadline_alerts never alerts so)."""
        # (the lateness as people read it: "698.3 d late", not "60331739 s late")
        ahead = [t for t in late if t.deadline_s > 0]
        past = [t for t in late if t.deadline_s <= 0]
        if ahead:
            logger.warning("the plan ends %d task(s) after their deadline, which is still ahead: e.g. task %d, %s late "
                           "(the deadline check alerts each once, deadline_at_risk)", len(ahead), ahead[0].task_id,
                           duration_text(ahead[0].planned_end_s - ahead[0].deadline_s))
        if past:
            logger.warning("%d task(s) planned are already past their deadline: e.g. task %d, due %s ago (the deadline "
                           "check alerts each once, deadline_missed)", len(past), past[0].task_id,
                           duration_text(-past[0].deadline_s))

    def on_statement_timeout(self, statement: str) -> str:
        if statement == "store_plan":
            return f"it plans again, at most {self.plan_batch.shrink()} task(s) at a time"
        return super().on_statement_timeout(statement)

    async def _store(self, plan: planner.Plan, now: datetime, generation: int) -> bool:
        """Store the plan in one call; False when another plan was stored since our snapshot."""
        figures = plan.figures
        assignments = list(plan.assignments.values())
        async with self.pool.acquire() as conn, timed_statement("store_plan"):
            row = await conn.fetchrow(
                query("store_plan"), self.instance_id, self.settings.lease_timeout_s, generation, now,
                figures.task_count, figures.makespan_s, figures.lower_bound_s, figures.vms, figures.vm_hours,
                figures.planning_s, json.dumps(plan.to_json()),
                [a.task_id for a in assignments], [a.worker for a in assignments],
                [a.start_s for a in assignments], [a.end_s for a in assignments],
                [u.task_id for u in plan.unplannable], [u.reason for u in plan.unplannable])
        if row is None:
            logger.info("another orchestrator stored a plan while this one planned %d task(s); planning again",
                        len(assignments) + len(plan.unplannable))
            return False
        if assignments:
            logger.info("planned %d task(s) on %d VM(s): makespan %.0f s, lower bound %.0f s (%d still pending "
                        "were taken meanwhile)", row["stored"], figures.vms, figures.makespan_s,
                        figures.lower_bound_s, len(assignments) - row["stored"])
        if row["reasons_changed"]:
            for item in plan.unplannable[:20]:
                logger.warning("cannot plan task %d: %s; it stays pending until the configuration changes",
                               item.task_id, item.reason, extra=task_fields(item.task_id, failure=item.reason))
            if len(plan.unplannable) > 20:
                logger.warning("... and %d more task(s) that cannot be planned", len(plan.unplannable) - 20)
        return True
