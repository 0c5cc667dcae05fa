"""The input checked: tasks that can never run are reported with a sentence naming the task and the limit; misuse
(duplicates, cycles, non-finite numbers, unknown modes) raises PlanningError."""

from __future__ import annotations

import math

import pytest

from hrwsi.planner import Budgets, FixedTask, Flavour, PlanningError, Worker, plan_tasks
from tests.unit.planner.conftest import BIG, SMALL, assert_valid, task, workers


def test_unplannable_reasons_name_task_and_limit_and_the_rest_is_planned():
    ws = [Worker("a", SMALL), Worker("b", SMALL)]
    tasks = [
        task(42, cpu=8, routine="MAJA"),
        task(43, deps=[42]),
        task(44, deps=[43]),  # transitively
        task(45, flavour="gpu"),
        task(46, ram=999999),
        task(47, cpu=3, ram=100),
        task(48, cpu=5, routine="X"),
    ]
    budgets = Budgets(cpu_max=4)
    plan = plan_tasks(tasks, ws, budgets)
    reasons = {u.task_id: u.reason for u in plan.unplannable}
    assert set(reasons) == {42, 43, 44, 45, 46, 48}
    assert reasons[42] == "task 42 (routine MAJA) needs 8 CPU but the CPU budget is 4"
    assert reasons[43] == "task 43 depends on task 42, which cannot be planned"
    assert reasons[44] == "task 44 depends on task 43, which cannot be planned"
    assert "requires flavour 'gpu' but no worker has that flavour" in reasons[45]
    assert "needs 999999 MB RAM but the largest flavour has 4000 MB RAM" in reasons[46]
    assert set(plan.assignments) == {47}
    assert_valid(plan, tasks, ws, budgets)


def test_reason_for_a_task_above_every_flavour():
    plan = plan_tasks([task(42, cpu=8, routine="MAJA")], workers(2), Budgets())
    assert plan.unplannable[0].reason == "task 42 (routine MAJA) needs 8 CPU but the largest flavour has 4 CPU"
    plan = plan_tasks([task(1, cpu=8, flavour="small")], [Worker("s", SMALL), Worker("b", BIG)], Budgets())
    assert "needs 8 CPU but flavour 'small' has 4 CPU" in plan.unplannable[0].reason
    # each resource fits some flavour but none fits all together
    odd = [Worker("cpu", Flavour("cpu", 8, 100, 100)), Worker("ram", Flavour("ram", 1, 8000, 100))]
    plan = plan_tasks([task(1, cpu=4, ram=4000, st=10)], odd, Budgets())
    assert "together" in plan.unplannable[0].reason


def test_no_workers_and_vm_max_zero():
    plan = plan_tasks([task(1), task(2, deps=[1])], [], Budgets())
    assert {u.task_id for u in plan.unplannable} == {1, 2}
    assert "no worker is active (none is configured, or every one is inactive" in plan.unplannable[0].reason
    assert plan.figures.makespan_s == 0.0
    plan = plan_tasks([task(1)], workers(1), Budgets(vm_max=0))
    assert "vm_max is 0" in plan.unplannable[0].reason


# ----------------------------------------------------------------------------------------- misuse


def test_cycle_raises_naming_the_tasks():
    tasks = [task(1, deps=[3]), task(2, deps=[1]), task(3, deps=[2]), task(4)]
    with pytest.raises(PlanningError) as exc:
        plan_tasks(tasks, workers(1), Budgets())
    msg = str(exc.value)
    assert "cycle" in msg and "task 1" in msg and "task 2" in msg and "task 3" in msg and "task 4" not in msg
    with pytest.raises(PlanningError, match="task 7 -> task 7"):
        plan_tasks([task(7, deps=[7])], workers(1), Budgets())


@pytest.mark.parametrize(
    "tasks, fixed, kwargs, match",
    [
        ([task(1), task(1)], [], {}, "duplicate task id 1"),
        ([task(1, dur=-1)], [], {}, "duration_s"),
        ([task(1, cpu=math.nan)], [], {}, "cpu"),
        ([task(1)], [FixedTask(1, "w0", 1, 1, 1, 0, 1)], {}, "both fixed and to be planned"),
        ([task(1)], [FixedTask(2, "w0", 1, 1, 1, 5, 1)], {}, "ends"),
        ([task(1)], [], {"mode": "deadline"}, "horizon"),
        ([task(1)], [], {"mode": "fastest"}, "mode"),
    ],
)
def test_misuse_raises(tasks, fixed, kwargs, match):
    with pytest.raises(PlanningError, match=match):
        plan_tasks(tasks, workers(1), Budgets(), fixed, **kwargs)
