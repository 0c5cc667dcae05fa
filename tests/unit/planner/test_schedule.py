"""The scheduler's rules: earliest starts, dependencies (on planned and fixed tasks), flavour restrictions, fixed
tasks in the future, packing onto used workers, zero durations."""

from __future__ import annotations

import pytest

from hrwsi.planner import Budgets, FixedTask, Worker, plan_tasks
from tests.unit.planner.conftest import BIG, SMALL, assert_valid, task, workers


def test_earliest_start_and_unknown_dependency():
    tasks = [task(1, earliest=100), task(2, deps=[12345])]
    plan = plan_tasks(tasks, workers(1), Budgets())
    assert plan.assignments[1].start_s == pytest.approx(100)
    assert plan.assignments[2].start_s == 0.0  # an unknown dependency counts as finished
    assert_valid(plan, tasks, workers(1), Budgets())


def test_dependency_on_a_fixed_task_waits_for_its_end():
    fixed = [FixedTask(9, "w0", 1, 1, 1, -10, 25)]
    tasks = [task(1, deps=[9])]
    plan = plan_tasks(tasks, workers(2), Budgets(), fixed)
    assert plan.assignments[1].start_s == pytest.approx(25)
    assert plan.figures.makespan_s == pytest.approx(35)


def test_flavour_restriction():
    ws = [Worker("s0", SMALL), Worker("s1", SMALL), Worker("b0", BIG)]
    tasks = [task(i, flavour="big" if i % 2 else None) for i in range(10)]
    plan = plan_tasks(tasks, ws, Budgets())
    assert_valid(plan, tasks, ws, Budgets())
    assert all(plan.assignments[i].worker == "b0" for i in range(1, 10, 2))


def test_fixed_task_in_the_future_is_not_overlapped():
    ws = workers(1)
    fixed = [FixedTask(9, "w0", 4, 100, 100, 5, 30)]  # fills the worker from t=5 to 30
    tasks = [task(1, cpu=4, dur=10), task(2, cpu=4, dur=3)]
    plan = plan_tasks(tasks, ws, Budgets(), fixed)
    assert_valid(plan, tasks, ws, Budgets(), fixed)
    assert plan.assignments[2].start_s == 0.0  # fits before it
    assert plan.assignments[1].start_s >= 30


def test_tasks_exactly_filling_a_flavour_share_one_worker():
    ws = workers(3)
    tasks = [task(i, cpu=1, ram=1000, st=1000) for i in range(4)]  # 4 x (1, 1000, 1000) = SMALL
    plan = plan_tasks(tasks, ws, Budgets())
    assert_valid(plan, tasks, ws, Budgets())
    assert plan.figures.makespan_s == pytest.approx(10)
    assert plan.figures.vms == 1 and len({a.worker for a in plan.assignments.values()}) == 1


def test_packs_onto_used_workers_when_it_does_not_delay():
    ws = workers(5)
    tasks = [task(i, cpu=1, dur=10 + i) for i in range(8)]
    plan = plan_tasks(tasks, ws, Budgets())
    assert plan.figures.makespan_s == pytest.approx(17)
    assert plan.figures.vms == 2


def test_zero_duration_tasks():
    tasks = [task(1, dur=0), task(2, dur=5, deps=[1]), task(3, dur=0, deps=[2])]
    plan = plan_tasks(tasks, workers(1), Budgets())
    assert_valid(plan, tasks, workers(1), Budgets())
    assert plan.figures.makespan_s == pytest.approx(5)


def test_an_easy_reservation_keeps_small_tasks_from_starving_a_blocked_big_one():
    # one 4-CPU worker; task A (1 CPU, 5 s) starts first, so the 4-CPU task B is blocked at t=0. With the
    # reservation (at t=5, when A ends; nothing left over then), the small 10 s tasks may not start at
    # t=0: they would still hold CPU at t=5. B starts at 5; without the reservation the small tasks go first.
    from hrwsi.planner.problem import Problem
    from hrwsi.planner.schedule import DemandClasses, EventScheduler

    tasks = [task(0, cpu=1, dur=5), task(1, cpu=4, dur=10)] + [task(i, cpu=1, dur=10) for i in range(2, 8)]
    prob = Problem(tasks, workers(1), Budgets(), [])
    order = list(range(8))  # A, then B, then the small ones
    with_reservation = EventScheduler(prob, DemandClasses(prob), order, [0], 1, reserve=True).run("r")
    assert with_reservation.start[1] == pytest.approx(5)
    assert min(with_reservation.start[2:]) >= 15
    without = EventScheduler(prob, DemandClasses(prob), order, [0], 1, reserve=False).run("p")
    assert without.start[1] > 5
    assert without.start[2] == 0


def test_small_tasks_may_start_beside_a_reservation_with_what_it_leaves_over():
    # A (2 CPU, 5 s) runs first; B (3 CPU) is reserved at t=5 on the 4-CPU worker: 1 CPU stays free then,
    # so one 1-CPU task may run across t=5, and a short one ending by t=5 may start too (another class: a
    # class that does not fit is skipped whole until the next event)
    from hrwsi.planner.problem import Problem
    from hrwsi.planner.schedule import DemandClasses, EventScheduler

    tasks = [task(0, cpu=2, dur=5), task(1, cpu=3, dur=10), task(2, cpu=1, dur=10), task(3, cpu=1, dur=10),
             task(4, cpu=0.5, dur=4)]
    prob = Problem(tasks, workers(1), Budgets(), [])
    sch = EventScheduler(prob, DemandClasses(prob), [0, 1, 2, 3, 4], [0], 1, reserve=True).run("r")
    assert sch.start[1] == pytest.approx(5)
    assert sch.start[2] == 0  # takes the 1 CPU left over at the reservation
    assert sch.start[3] >= 10  # a second one would delay B
    assert sch.start[4] == 0  # ends at 4, before the reservation


def test_tasks_that_fit_anywhere_leave_the_workers_only_some_tasks_fit_to_those():
    # A fits both workers, B (8 CPU, released at t=1) only the big one: A takes the small worker (the
    # largest would be the default), so B starts as soon as it is released
    ws = [Worker("big", BIG), Worker("small", SMALL)]
    tasks = [task(1, cpu=2, dur=10), task(2, cpu=8, dur=10, earliest=1)]
    plan = plan_tasks(tasks, ws, Budgets())
    assert_valid(plan, tasks, ws, Budgets())
    assert plan.assignments[1].worker == "small"
    assert plan.assignments[2].start_s == 1 and plan.assignments[2].worker == "big"
