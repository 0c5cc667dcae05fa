"""The optimal makespan of a tiny instance, by exhaustive search (for the lower bound's soundness tests).

Serial schedule generation over every order of the tasks that respects the dependencies and every choice of
worker: each task starts at the earliest instant where it fits on its worker and within the budgets for its
whole duration, given the tasks placed before it. The schedules built this way include an optimal one (they
are the active schedules; Kolisch 1996), so the least makespan found is the optimum. Exponential: only for a
handful of tasks."""

from __future__ import annotations

import itertools
import math

from hrwsi.planner import Budgets, FixedTask, TaskDemand, Worker

EPS = 1e-9


def optimum(tasks: list[TaskDemand], workers: list[Worker], budgets: Budgets, fixed: list[FixedTask] = ()) -> float:
    """The least makespan over all plans (fixed tasks' ends included), or math.inf if some task cannot run."""
    by_id = {t.id: t for t in tasks}
    choices = [[j for j, w in enumerate(workers) if _fits_alone(t, w, budgets)] for t in tasks]
    if any(not c for c in choices):
        return math.inf
    fixed_end = max((f.end_s for f in fixed), default=0.0)
    best = math.inf
    for order in itertools.permutations(range(len(tasks))):
        if not _respects_dependencies(order, tasks, by_id):
            continue
        for assignment in itertools.product(*choices):
            makespan = _serial_schedule(order, assignment, tasks, workers, budgets, fixed)
            best = min(best, max(makespan, fixed_end))
    return best


def _fits_alone(t: TaskDemand, w: Worker, b: Budgets) -> bool:
    if b.vm_max is not None and b.vm_max < 1:
        return False
    if t.flavour is not None and t.flavour != w.flavour.name:
        return False
    pairs = ((t.cpu, w.flavour.cpu), (t.ram_mb, w.flavour.ram_mb), (t.storage_mb, w.flavour.disk_mb),
             (t.cpu, b.cpu_max), (t.ram_mb, b.ram_max_mb), (t.storage_mb, b.storage_max_mb))
    return all(cap is None or d <= cap + EPS for d, cap in pairs)


def _respects_dependencies(order, tasks, by_id) -> bool:
    position = {tasks[k].id: p for p, k in enumerate(order)}
    return all(position[d] < position[t.id] for t in tasks for d in t.depends_on if d in by_id)


def _serial_schedule(order, assignment, tasks, workers, budgets, fixed) -> float:
    # placed intervals: (start, end, worker name, cpu, ram, storage)
    placed = [(max(0.0, f.start_s), f.end_s, f.worker, f.cpu, f.ram_mb, f.storage_mb) for f in fixed if f.end_s > 0]
    end_of = {f.id: f.end_s for f in fixed}
    makespan = 0.0
    for k in order:
        t = tasks[k]
        w = workers[assignment[k]]
        earliest = max([max(0.0, t.earliest_start_s)] + [end_of[d] for d in t.depends_on if d in end_of])
        start = min(s for s in [earliest] + [e for _s, e, *_ in placed if e > earliest]
                    if _fits_during(s, s + t.duration_s, t, w, placed, budgets))
        placed.append((start, start + t.duration_s, w.name, t.cpu, t.ram_mb, t.storage_mb))
        end_of[t.id] = start + t.duration_s
        makespan = max(makespan, start + t.duration_s)
    return makespan


def _fits_during(s: float, e: float, t: TaskDemand, w: Worker, placed, budgets: Budgets) -> bool:
    if e <= s:
        return True  # a zero-duration task holds nothing
    # usage only changes where a placed task starts: check at s and at every such instant before e
    instants = [s] + [ps for ps, *_ in placed if s < ps < e]
    for x in instants:
        running = [p for p in placed if p[0] <= x < p[1]]
        on_w = [p for p in running if p[2] == w.name]
        for r, cap in ((3, w.flavour.cpu), (4, w.flavour.ram_mb), (5, w.flavour.disk_mb)):
            if sum(p[r] for p in on_w) + (t.cpu, t.ram_mb, t.storage_mb)[r - 3] > cap + EPS:
                return False
        for r, cap in ((3, budgets.cpu_max), (4, budgets.ram_max_mb), (5, budgets.storage_max_mb)):
            if cap is not None and sum(p[r] for p in running) + (t.cpu, t.ram_mb, t.storage_mb)[r - 3] > cap + EPS:
                return False
        if budgets.vm_max is not None and len({p[2] for p in running} | {w.name}) > budgets.vm_max:
            return False
    return True
