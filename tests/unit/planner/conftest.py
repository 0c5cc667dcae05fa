"""Helpers shared by the planner's unit tests: small tasks and workers, planning.md's reference family, and
the validator as an assertion."""

from __future__ import annotations

from hrwsi.planner import Budgets, Flavour, TaskDemand, Worker, validate_plan

SMALL = Flavour("small", 4, 4000, 4000)
BIG = Flavour("big", 8, 16000, 16000)


def task(i, cpu=1, ram=100, st=100, dur=10.0, deps=(), routine="R", earliest=0.0, flavour=None):
    return TaskDemand(i, routine, cpu, ram, st, dur, tuple(deps), earliest, flavour)


def workers(n, flavour=SMALL, prefix="w"):
    return [Worker(f"{prefix}{i}", flavour) for i in range(n)]


def reference_family(n, one_task_per_worker=False):
    half = n // 2
    tasks = [TaskDemand(i, "A", 2, 1, 2, 5) for i in range(half)]
    tasks += [TaskDemand(half + i, "B", 3, 2, 2, 2, depends_on=(i,)) for i in range(half)]
    flavour = Flavour("one", 3, 2, 2) if one_task_per_worker else Flavour("large", 10, 10, 10)
    return tasks, [Worker(f"w{i}", flavour) for i in range(4)], Budgets(10, 10, 10, 4)


def assert_valid(plan, tasks, ws, budgets, fixed=()):
    violations = validate_plan(plan, tasks, ws, budgets, fixed)
    assert violations == [], violations
