"""What the orchestrator hands the planner: database rows turned into the planner's model, with
whatever the planner cannot handle set aside, each with its reason.

The planner refuses misuse (a NaN demand, a cycle, a duplicate id) with `PlanningError`, for the
whole problem. One bad row must not stop the planning of every other task (issue 14): a task with
a demand that is not a finite number >= 0, or in a dependency cycle, becomes unplannable with a
sentence that names it; a worker whose flavour is not finite, or a fixed task with non-finite
numbers, is left out and logged; a budget that is not a finite number plans nothing and says why.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hrwsi import planner

logger = logging.getLogger(__name__)


@dataclass
class PlanningInput:
    tasks: list[planner.TaskDemand]
    workers: list[planner.Worker]
    budgets: planner.Budgets
    fixed: list[planner.FixedTask]
    set_aside: list[planner.Unplannable] = field(default_factory=list)


def _finite_non_negative(*values: object) -> bool:
    try:
        return all(math.isfinite(float(v)) and float(v) >= 0 for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def demand_from_row(row, now: datetime) -> planner.TaskDemand:
    not_before = row["not_before"]
    earliest = max(0.0, (not_before - now).total_seconds()) if not_before else 0.0
    return planner.TaskDemand(
        id=row["id"], routine=row["routine"], cpu=row["cpu"], ram_mb=row["ram_mb"],
        storage_mb=row["storage_mb"], duration_s=max(row["duration_s"], 0.001),
        depends_on=(row["depends_on"],) if row["depends_on"] else (),
        earliest_start_s=earliest, flavour=row["flavour"],
        # Lanes and deadlines (ADR 0009): urgent work first, earliest deadline first within a lane.
        priority=row["priority"], deadline_s=row["deadline_s"],
        # (the worker its last attempt could not be placed on: migration 0087; screen keeps it only while
        # another worker fits the task)
        avoid_worker=row.get("avoid_worker"))


def dependency_cycles(tasks: Sequence[planner.TaskDemand]) -> dict[int, list[int]]:
    """{task id: the cycle it is on (ids in order)} among these tasks (iterative DFS)."""
    successors_of = {t.id: [d for d in t.depends_on if d is not None] for t in tasks}
    state: dict[int, int] = {}
    on_cycle: dict[int, list[int]] = {}
    for root in successors_of:
        if root in state:
            continue
        path: list[int] = []
        stack: list[tuple[int, Iterable[int]]] = [(root, iter(successors_of[root]))]
        state[root] = 1
        path.append(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif child in successors_of and state.get(child) == 1:
                cycle = path[path.index(child):] + [child]
                for member in cycle[:-1]:
                    on_cycle.setdefault(member, cycle)
            elif child in successors_of and child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(successors_of[child])))
    return on_cycle


def screen(tasks: list[planner.TaskDemand], workers: list[planner.Worker], budgets: planner.Budgets,
           fixed: list[planner.FixedTask]) -> PlanningInput:
    """The planning problem without what the planner cannot handle (set aside with reasons)."""
    set_aside: list[planner.Unplannable] = []
    good_tasks = []
    for task in tasks:
        if _finite_non_negative(task.cpu, task.ram_mb, task.storage_mb, task.duration_s, task.earliest_start_s):
            good_tasks.append(task)
        else:
            set_aside.append(planner.Unplannable(task.id, (
                f"task {task.id}: its routine {task.routine} asks for cpu={task.cpu}, ram_mb={task.ram_mb}, "
                f"storage_mb={task.storage_mb}, expected duration {task.duration_s} s: each must be a finite "
                f"number > 0; fix the routine (hrwsi config load)")))
    cycles = dependency_cycles(good_tasks)
    for task_id, cycle in cycles.items():
        set_aside.append(planner.Unplannable(task_id, (
            f"task {task_id} is on a dependency cycle ({' -> '.join(f'task {t}' for t in cycle)}): none of them "
            f"can ever start; cancel one of them (hrwsi cancel)")))
    good_tasks = [t for t in good_tasks if t.id not in cycles]
    good_workers = []
    for worker in workers:
        flavour = worker.flavour
        if _finite_non_negative(flavour.cpu, flavour.ram_mb, flavour.disk_mb):
            good_workers.append(worker)
        else:
            logger.error("worker %s is left out of planning: its flavour %s has cpu=%s, ram_mb=%s, disk_mb=%s "
                         "(each must be a finite number > 0)", worker.name, flavour.name, flavour.cpu,
                         flavour.ram_mb, flavour.disk_mb)
    good_fixed = []
    for held in fixed:
        if _finite_non_negative(held.cpu, held.ram_mb, held.storage_mb) and math.isfinite(held.start_s) \
                and math.isfinite(held.end_s):
            good_fixed.append(held)
        else:
            logger.error("task %d holds capacity with numbers that are not finite; planning leaves it out", held.id)
    limits = (budgets.cpu_max, budgets.ram_max_mb, budgets.storage_max_mb, budgets.vm_max)
    if not all(v is None or _finite_non_negative(v) for v in limits):
        reason = (f"the budget is not a set of finite numbers >= 0 (cpu_max={budgets.cpu_max}, "
                  f"ram_max_mb={budgets.ram_max_mb}, storage_max_mb={budgets.storage_max_mb}, "
                  f"vm_max={budgets.vm_max}): nothing is planned until it is fixed (hrwsi config load)")
        set_aside += [planner.Unplannable(t.id, reason) for t in good_tasks]
        good_tasks = []
    good_tasks = [_avoiding_where_another_fits(t, good_workers) for t in good_tasks]
    return PlanningInput(good_tasks, good_workers, budgets, good_fixed, set_aside)


def _avoiding_where_another_fits(task: planner.TaskDemand, workers: list[planner.Worker]) -> planner.TaskDemand:
    """The task, avoiding the worker its last attempt could not be placed on only while another worker of a
    flavour it fits is there (as hrwsi.dispatch decides): else it may be planned there again."""
    if task.avoid_worker is None:
        return task
    for worker in workers:
        flavour = worker.flavour
        if worker.name != task.avoid_worker and (task.flavour is None or flavour.name == task.flavour) \
                and task.cpu <= flavour.cpu + 1e-9 and task.ram_mb <= flavour.ram_mb \
                and task.storage_mb <= flavour.disk_mb:
            return task
    return dataclasses.replace(task, avoid_worker=None)
