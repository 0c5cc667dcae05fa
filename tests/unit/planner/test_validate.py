"""validate_plan catches every kind of broken plan, counting fixed tasks, and accepts the planner's plans."""

from __future__ import annotations

import pytest

from hrwsi.planner import Assignment, Budgets, FixedTask, Plan, Unplannable, Worker, plan_tasks, validate_plan
from tests.unit.planner.conftest import BIG, SMALL, assert_valid, task, workers


@pytest.fixture
def valid_case():
    ws = [Worker("a", SMALL), Worker("b", BIG)]
    tasks = [
        task(1, cpu=2, dur=10),
        task(2, cpu=2, dur=10, deps=[1]),
        task(3, cpu=4, dur=5, flavour="big", earliest=3),
        task(4, cpu=2, dur=4, deps=[99]),  # 99 is a fixed task
    ]
    fixed = [FixedTask(99, "a", 2, 100, 100, -5, 6)]
    budgets = Budgets(cpu_max=8, ram_max_mb=10000, storage_max_mb=10000, vm_max=2)
    plan = plan_tasks(tasks, ws, budgets, fixed)
    assert_valid(plan, tasks, ws, budgets, fixed)
    return plan, tasks, ws, budgets, fixed


def _with(plan, **changes):
    assignments = dict(plan.assignments)
    for tid, a in changes.items():
        key = int(tid[1:])
        if a is None:
            del assignments[key]
        else:
            assignments[key] = a
    return Plan(assignments, list(plan.unplannable), plan.figures)


def _hand(assignments, unplannable=(), plan_like=None):
    figures = plan_like.figures
    return Plan({a.task_id: a for a in assignments}, list(unplannable), figures)


def test_validator_accepts_the_planners_plan(valid_case):
    plan, tasks, ws, budgets, fixed = valid_case
    assert validate_plan(plan, tasks, ws, budgets, fixed) == []


def test_validator_catches_a_missing_task(valid_case):
    plan, tasks, ws, budgets, fixed = valid_case
    broken = _with(plan, t2=None)
    assert any("task 2 is neither planned nor reported unplannable" in v for v in validate_plan(broken, tasks, ws, budgets, fixed))


def test_validator_catches_a_task_both_planned_and_unplannable(valid_case):
    plan, tasks, ws, budgets, fixed = valid_case
    broken = Plan(dict(plan.assignments), [Unplannable(1, "made up")], plan.figures)
    v = validate_plan(broken, tasks, ws, budgets, fixed)
    assert any("both assigned and reported unplannable" in m for m in v)
    assert any("reported unplannable" in m and "could run" in m for m in v)


def test_validator_catches_wrong_worker_flavour_duration_and_start(valid_case):
    plan, tasks, ws, budgets, fixed = valid_case
    a3 = plan.assignments[3]
    v = validate_plan(_with(plan, t3=Assignment(3, "a", a3.start_s, a3.end_s)), tasks, ws, budgets, fixed)
    assert any("needs flavour 'big'" in m for m in v)
    v = validate_plan(_with(plan, t3=Assignment(3, "nowhere", a3.start_s, a3.end_s)), tasks, ws, budgets, fixed)
    assert any("unknown worker 'nowhere'" in m for m in v)
    v = validate_plan(_with(plan, t3=Assignment(3, "b", a3.start_s, a3.start_s + 1)), tasks, ws, budgets, fixed)
    assert any("instead of its duration" in m for m in v)
    v = validate_plan(_with(plan, t3=Assignment(3, "b", 1.0, 6.0)), tasks, ws, budgets, fixed)
    assert any("before its earliest start" in m for m in v)
    v = validate_plan(_with(plan, t3=Assignment(3, "b", -10.0, -5.0)), tasks, ws, budgets, fixed)
    assert any("starts in the past" in m for m in v)


def test_validator_catches_broken_dependencies(valid_case):
    plan, tasks, ws, budgets, fixed = valid_case
    a1 = plan.assignments[1]
    v = validate_plan(_with(plan, t2=Assignment(2, plan.assignments[2].worker, a1.start_s, a1.start_s + 10)),
                      tasks, ws, budgets, fixed)
    assert any("before its dependency 1 ends" in m for m in v)
    # dependency on a fixed (running) task
    v = validate_plan(_with(plan, t4=Assignment(4, "b", 0.0, 4.0)), tasks, ws, budgets, fixed)
    assert any("before its dependency 99 ends" in m for m in v)
    # dependency planned nowhere
    broken = _with(plan, t1=None)
    assert any("its dependency 1 is not" in m for m in validate_plan(broken, tasks, ws, budgets, fixed))


def test_validator_catches_a_worker_over_its_flavour_counting_fixed_tasks():
    ws = [Worker("a", SMALL)]
    tasks = [task(1, cpu=3, dur=10), task(2, cpu=3, dur=10)]
    plan = plan_tasks(tasks, ws, Budgets())
    assert_valid(plan, tasks, ws, Budgets())
    both = _hand([Assignment(1, "a", 0, 10), Assignment(2, "a", 5, 15)], plan_like=plan)
    assert any("worker 'a' uses 6 CPU" in m for m in validate_plan(both, tasks, ws, Budgets()))
    # a fixed task takes 2 of the 4 CPU: one 3-CPU task on top is too much
    fixed = [FixedTask(9, "a", 2, 1, 1, -1, 20)]
    alone = _hand([Assignment(1, "a", 0, 10), Assignment(2, "a", 20, 30)], plan_like=plan)
    assert any("over its flavour" in m for m in validate_plan(alone, tasks, ws, Budgets(), fixed))
    # ... and the planner itself waits for it
    p2 = plan_tasks(tasks, ws, Budgets(), fixed)
    assert_valid(p2, tasks, ws, Budgets(), fixed)
    assert min(a.start_s for a in p2.assignments.values()) >= 20


@pytest.mark.parametrize(
    "budgets, needle",
    [
        (Budgets(cpu_max=5), "CPU in use (6) exceeds the budget 5"),
        (Budgets(ram_max_mb=150), "RAM in use (200) exceeds the budget 150"),
        (Budgets(storage_max_mb=150), "storage in use (200) exceeds the budget 150"),
        (Budgets(vm_max=1), "VMs in use (2) exceeds the budget 1"),
    ],
)
def test_validator_catches_each_budget(budgets, needle):
    ws = workers(2)
    tasks = [task(1, cpu=3), task(2, cpu=3)]
    plan = plan_tasks(tasks, ws, budgets)
    assert_valid(plan, tasks, ws, budgets)
    broken = _hand([Assignment(1, "w0", 0, 10), Assignment(2, "w1", 0, 10)], plan_like=plan)
    assert any(needle in m for m in validate_plan(broken, tasks, ws, budgets)), validate_plan(broken, tasks, ws, budgets)


def test_validator_counts_fixed_tasks_in_budgets_and_vms():
    ws = workers(2)
    tasks = [task(1, cpu=3)]
    fixed = [FixedTask(9, "elsewhere", 3, 100, 100, -1, 5)]  # on a worker that is gone: still running
    budgets = Budgets(cpu_max=5, vm_max=1)
    plan = plan_tasks(tasks, ws, budgets, fixed)
    assert_valid(plan, tasks, ws, budgets, fixed)
    assert plan.assignments[1].start_s >= 5
    broken = _hand([Assignment(1, "w0", 0, 10)], plan_like=plan)
    v = validate_plan(broken, tasks, ws, budgets, fixed)
    assert any("CPU in use (6)" in m for m in v) and any("VMs in use (2)" in m for m in v)


def test_validator_catches_a_task_planned_although_impossible():
    ws = workers(1)
    tasks = [task(1, cpu=64)]
    plan = plan_tasks(tasks, ws, Budgets())
    assert_valid(plan, tasks, ws, Budgets())
    broken = _hand([Assignment(1, "w0", 0, 10)], plan_like=plan)
    assert any("planned although it can never run" in m for m in validate_plan(broken, tasks, ws, Budgets()))


def test_validator_reports_a_dependency_cycle_in_the_input():
    tasks = [task(1, deps=[2]), task(2, deps=[1]), task(3)]
    plan = _hand([Assignment(3, "w0", 0, 10)], [Unplannable(1, "x"), Unplannable(2, "x")],
                 plan_like=plan_tasks([task(3)], workers(1), Budgets()))
    v = validate_plan(plan, tasks, workers(1), Budgets())
    assert any("dependency cycle through tasks 1, 2" in m for m in v), v


def test_validator_imports_nothing_of_the_scheduler():
    # ADR 0003: an independent check re-derives what it needs; it must not share the planner's analysis
    import ast
    from pathlib import Path

    import hrwsi.planner.validate as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in imported if m and m.startswith("hrwsi")} == {"hrwsi.planner.model"}


def test_tasks_that_can_never_run_are_derived_from_the_inputs_alone():
    from hrwsi.planner.validate import tasks_that_can_never_run

    ws = [Worker("s", SMALL), Worker("b", BIG)]
    tasks = [task(1, cpu=8), task(2, cpu=9), task(3, deps=[2]), task(4, deps=[3]), task(5, flavour="gpu"),
             task(6, cpu=8, flavour="small"), task(7, ram=5000, deps=[12345])]
    assert tasks_that_can_never_run(tasks, ws, Budgets()) == {2, 3, 4, 5, 6}
    assert tasks_that_can_never_run(tasks, ws, Budgets(cpu_max=4)) == {1, 2, 3, 4, 5, 6}
    assert tasks_that_can_never_run(tasks, ws, Budgets(vm_max=0)) == {1, 2, 3, 4, 5, 6, 7}
    assert tasks_that_can_never_run(tasks, [], Budgets()) == {1, 2, 3, 4, 5, 6, 7}


def test_validator_refuses_a_task_on_the_worker_it_avoids_while_another_it_fits_exists():
    """Found by review: the validator of every stored plan did not check the avoidance rule of migration 0087 (a
    task whose last attempt the backend could not place on a worker is not planned there while another active
    worker of a flavour it fits exists), so a scheduler that broke it had its plan stored."""
    import dataclasses

    ws = [Worker("a", SMALL), Worker("b", BIG)]
    avoiding = dataclasses.replace(task(1, cpu=2, dur=10), avoid_worker="a")
    plan = plan_tasks([avoiding], ws, Budgets())
    assert plan.assignments[1].worker == "b"
    assert validate_plan(plan, [avoiding], ws, Budgets()) == []
    on_a = _hand([Assignment(1, "a", 0, 10)], plan_like=plan)
    assert validate_plan(on_a, [avoiding], ws, Budgets()) == [
        "task 1 is on worker 'a', which it avoids (its last attempt could not be placed there), while worker 'b' of "
        "a flavour it fits exists"]
    # No other worker it fits (the big one's flavour only, or a task too big for it): it may go back.
    big_only = dataclasses.replace(avoiding, flavour="small")
    assert validate_plan(on_a, [big_only], ws, Budgets()) == []
    assert validate_plan(on_a, [avoiding], [Worker("a", SMALL)], Budgets()) == []
