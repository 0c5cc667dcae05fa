"""``plan_tasks``: the entry point. Checks the input, computes the bound, runs the rules, and in deadline
mode searches for the fewest workers that still meet the horizon; then assembles the Plan and its
figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from hrwsi.planner.bounds import bound_parts, explain
from hrwsi.planner.figures import peak_and_mean
from hrwsi.planner.model import (
    Assignment,
    Budgets,
    FixedTask,
    LateTask,
    Plan,
    PlanFigures,
    PlanningError,
    TaskDemand,
    Unplannable,
    Worker,
    is_finite,
)
from hrwsi.planner.problem import Problem
from hrwsi.planner.rules import RuleSet, late_tasks
from hrwsi.planner.schedule import Schedule, size_order


def plan_tasks(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
    *,
    horizon_s: float | None = None,
    mode: Literal["makespan", "deadline"] = "makespan",
) -> Plan:
    """Plan ``tasks`` onto ``workers`` within ``budgets`` around the ``fixed`` (running) tasks.

    makespan mode: earliest makespan, then fewest VMs and VM-hours. deadline mode (needs
    ``horizon_s``): the fewest workers that still meet the horizon; if none does, the best plan with
    every worker, with ``horizon_missed_by_s`` and ``horizon_note`` set. Tasks that can never run go to
    ``unplannable`` with a reason. Raises :class:`PlanningError` only for misuse."""
    t0 = time.perf_counter()
    if mode not in ("makespan", "deadline"):
        raise PlanningError(f"unknown mode {mode!r} (makespan or deadline)")
    if horizon_s is not None and not is_finite(horizon_s):
        raise PlanningError(f"horizon_s={horizon_s!r} is not finite")
    if mode == "deadline" and horizon_s is None:
        raise PlanningError("deadline mode needs horizon_s")
    prob = Problem(tasks, workers, budgets, fixed)
    parts = bound_parts(prob)
    rules = RuleSet(prob, parts)
    best = rules.best_schedule(list(range(prob.W)), min(prob.vm_max, prob.W))
    used_cap: int | None = None
    if mode == "deadline" and horizon_s is not None and best.makespan <= horizon_s + 1e-9 and prob.plannable:
        found = _fewest_workers(rules, best, horizon_s)
        if found is not None and (found[1].vms, found[1].vm_seconds) < (best.vms, best.vm_seconds):
            used_cap, best = found
    return _assemble(prob, best, parts, rules.lb, horizon_s, used_cap, t0)


def _fewest_workers(rules: RuleSet, best: Schedule, horizon_s: float) -> tuple[int, Schedule] | None:
    """Binary search over a prefix of the ranked workers for the fewest that still meet the horizon."""
    prob = rules.prob
    ranked = _worker_ranking(prob)
    lo = _min_prefix(prob, ranked)
    hi = best.vms  # the full plan meets the horizon with this many workers
    found: tuple[int, Schedule] | None = None
    while lo < hi:
        mid = (lo + hi) // 2
        sch = rules.best_schedule(ranked[:mid], min(prob.vm_max, mid))
        # fewer workers may not make more tasks late than the plan with all of them
        if not sch.stuck and sch.late <= best.late and sch.makespan <= horizon_s + 1e-9:
            hi = mid
            found = (mid, sch)
        else:
            lo = mid + 1
    return found


def _worker_ranking(prob: Problem) -> list[int]:
    """Workers already running fixed tasks first, then one of each flavour some task requires, then the
    largest."""
    busy = {f.worker for f in prob.fixed if f.end_s > 0}
    need = [prob.tasks[i].flavour for i in prob.plannable if prob.tasks[i].flavour is not None]
    size = size_order(prob, range(prob.W))
    ranked: list[int] = [j for j in size if prob.workers[j].name in busy]
    seen = set(ranked)
    for fl in dict.fromkeys(need):
        if any(prob.workers[j].flavour.name == fl for j in ranked):
            continue
        j = next(j for j in size if prob.workers[j].flavour.name == fl)
        ranked.append(j)
        seen.add(j)
    ranked += [j for j in size if j not in seen]
    return ranked


def _min_prefix(prob: Problem, ranked: list[int]) -> int:
    """Smallest prefix of ``ranked`` on which every plannable task fits some allowed worker."""
    kinds = {(prob.cpu[i], prob.ram[i], prob.st[i], prob.tasks[i].flavour): True for i in prob.plannable}
    need = 1
    for c, r, s, fl in kinds:
        for pos, j in enumerate(ranked):
            if (fl is None or prob.workers[j].flavour.name == fl) and prob.fits_worker(c, r, s, j):
                need = max(need, pos + 1)
                break
    return max(need, len({f.worker for f in prob.fixed if f.end_s > 0 and f.worker in prob.widx}))


def _assemble(
    prob: Problem,
    sch: Schedule,
    parts: dict[str, float],
    lb: float,
    horizon_s: float | None,
    vm_cap: int | None,
    t0: float,
) -> Plan:
    names = [w.name for w in prob.workers]
    tasks = prob.tasks
    assignments: dict[int, Assignment] = {}
    dur = prob.dur
    for i in prob.plannable:
        s = sch.start[i]
        if s is None:
            continue
        assignments[tasks[i].id] = Assignment(tasks[i].id, names[sch.worker[i]], s, s + dur[i])
    unplannable = [Unplannable(tasks[i].id, r) for i, r in enumerate(prob.reasons) if r is not None]
    for i in sch.stuck:  # never expected: reported rather than silently dropped
        unplannable.append(
            Unplannable(tasks[i].id, f"task {tasks[i].id} (routine {tasks[i].routine}) could not be placed "
                                     "by the planner (internal limit; please report)")
        )
    late = [LateTask(tasks[i].id, end, deadline) for deadline, i, end in late_tasks(prob, sch)]
    makespan = sch.makespan
    peak, mean = peak_and_mean(prob, sch)
    missed = None
    note = None
    if horizon_s is not None and makespan > horizon_s + 1e-9:
        missed = makespan - horizon_s
        note = explain(prob, parts, horizon_s, makespan)
    binding = max(parts.items(), key=lambda kv: kv[1])[0] if parts else None
    figures = PlanFigures(
        task_count=len(tasks),
        makespan_s=makespan,
        lower_bound_s=lb,
        vms=sch.vms,
        vm_hours=sch.vm_seconds / 3600.0,
        peak_use=peak,
        mean_use=mean,
        planning_s=time.perf_counter() - t0,
        horizon_s=horizon_s,
        horizon_missed_by_s=missed,
        horizon_note=note,
        lower_bound_parts=dict(parts),
        binding_bound=binding,
        rule=sch.rule,
        vm_cap=vm_cap,
        late_count=len(late),
    )
    return Plan(assignments, unplannable, figures, late)
