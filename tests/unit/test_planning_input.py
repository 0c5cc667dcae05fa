"""What the orchestrator hands the planner: one bad task, worker or budget is set aside with its
reason; the rest is planned."""

import dataclasses
import math

from hrwsi import planner
from hrwsi.planning_input import dependency_cycles, screen

FLAVOUR = planner.Flavour("f", 4, 16000, 1000)
WORKERS = [planner.Worker("w1", FLAVOUR)]
BUDGETS = planner.Budgets(None, None, None, None)


def task(task_id, depends_on=(), cpu=1.0, duration_s=60.0):
    return planner.TaskDemand(id=task_id, routine="r", cpu=cpu, ram_mb=100, storage_mb=10, duration_s=duration_s,
                              depends_on=tuple(depends_on))


def test_a_dependency_cycle_is_found_and_named():
    cycles = dependency_cycles([task(1, [2]), task(2, [3]), task(3, [1]), task(4, [1]), task(5)])
    assert set(cycles) == {1, 2, 3}
    assert cycles[1][0] == cycles[1][-1]


def test_tasks_on_a_cycle_are_set_aside_and_the_rest_is_planned():
    problem = screen([task(1, [2]), task(2, [1]), task(3)], WORKERS, BUDGETS, [])
    assert [t.id for t in problem.tasks] == [3]
    reasons = {u.task_id: u.reason for u in problem.set_aside}
    assert set(reasons) == {1, 2} and "dependency cycle" in reasons[1] and "task 2" in reasons[1]
    plan = planner.plan_tasks(problem.tasks, problem.workers, problem.budgets, problem.fixed)
    assert set(plan.assignments) == {3}


def test_a_task_with_a_demand_that_is_not_a_finite_number_is_set_aside():
    problem = screen([task(1, cpu=math.nan), task(2, duration_s=math.inf), task(3)], WORKERS, BUDGETS, [])
    assert [t.id for t in problem.tasks] == [3]
    assert {u.task_id for u in problem.set_aside} == {1, 2}
    assert all("finite number" in u.reason for u in problem.set_aside)


def test_a_worker_with_a_broken_flavour_is_left_out():
    broken = planner.Worker("w2", planner.Flavour("g", math.nan, 1, 1))
    problem = screen([task(1)], [*WORKERS, broken], BUDGETS, [])
    assert [w.name for w in problem.workers] == ["w1"]


def test_a_budget_that_is_not_finite_plans_nothing_and_says_why():
    problem = screen([task(1)], WORKERS, planner.Budgets(math.nan, None, None, None), [])
    assert problem.tasks == [] and "budget" in problem.set_aside[0].reason


def test_a_task_is_not_planned_on_the_worker_its_last_attempt_could_not_be_placed_on_while_another_fits():
    # Nomad could not place its last attempt there (another team's job on the node): planned there again,
    # it went back, 600 s a round, while the other worker was idle (found by review).
    pair = [planner.Worker("w1", FLAVOUR), planner.Worker("w2", FLAVOUR)]
    tasks = [dataclasses.replace(task(i), priority=i % 2, deadline_s=600.0 if i % 2 == 0 else None) for i in range(1, 13)]
    for mode, horizon in (("makespan", None), ("deadline", 300.0)):
        plain = screen(tasks, pair, BUDGETS, [])
        first = planner.plan_tasks(plain.tasks, plain.workers, plain.budgets, mode=mode, horizon_s=horizon)
        # (each of tasks 1 and 4 avoids the worker it was planned on without it)
        was = {i: first.assignments[i].worker for i in (1, 4)}
        avoiding = [dataclasses.replace(t, avoid_worker=was[t.id]) if t.id in was else t for t in tasks]
        problem = screen(avoiding, pair, BUDGETS, [])
        plan = planner.plan_tasks(problem.tasks, problem.workers, problem.budgets, mode=mode, horizon_s=horizon)
        assert set(plan.assignments) == {t.id for t in tasks}
        assert all(plan.assignments[i].worker != was[i] for i in was), (mode, was, plan.assignments)
        assert {a.worker for a in plan.assignments.values()} == {"w1", "w2"}, "the others still use both"


def test_a_task_no_other_worker_fits_may_be_planned_again_where_its_last_attempt_could_not_be_placed():
    small = planner.Worker("w3", planner.Flavour("s", 1, 16000, 1000))
    wide = dataclasses.replace(task(1, cpu=2), avoid_worker="w1")
    problem = screen([wide], [planner.Worker("w1", FLAVOUR), small], BUDGETS, [])
    assert problem.tasks[0].avoid_worker is None
    plan = planner.plan_tasks(problem.tasks, problem.workers, problem.budgets)
    assert plan.assignments[1].worker == "w1"
