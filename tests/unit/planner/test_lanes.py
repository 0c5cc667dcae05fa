"""Lanes and deadlines (hrwsi.planner.lanes): urgent work first at every event, back-fill that never delays a
waiting urgent task, earliest deadline first within a lane, urgency passed on to what an urgent task waits for,
and late tasks reported (and checked by the validator)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrwsi.planner import (
    Budgets,
    FixedTask,
    Flavour,
    LateTask,
    Plan,
    TaskDemand,
    Worker,
    plan_tasks,
    validate_plan,
)
from tests.unit.planner.conftest import BIG, SMALL, assert_valid, workers


def job(i, cpu=1, dur=10.0, deps=(), priority=0, deadline=None, earliest=0.0, ram=100):
    return TaskDemand(i, f"R{priority}", cpu, ram, 100, dur, tuple(deps), earliest, None, priority, deadline)


def test_a_priority_1_task_never_delays_a_ready_priority_0_task():
    # C (archive) heads a long chain, so the critical path would start it first and hold 2 of the 4 CPU
    # for 50 s; B (near-real-time) needs all 4
    tasks = [job(1, cpu=2, dur=50, priority=1), job(2, cpu=2, dur=50, deps=[1], priority=1),
             job(3, cpu=4, dur=10, priority=0)]
    plan = plan_tasks(tasks, workers(1), Budgets())
    assert_valid(plan, tasks, workers(1), Budgets())
    assert plan.assignments[3].start_s == 0
    assert plan.assignments[1].start_s == 10
    # the same tasks in one lane: the critical path goes first and B waits
    one_lane = [TaskDemand(t.id, t.routine, t.cpu, t.ram_mb, t.storage_mb, t.duration_s, t.depends_on) for t in tasks]
    assert plan_tasks(one_lane, workers(1), Budgets()).assignments[3].start_s > 0


def test_less_urgent_work_back_fills_what_waiting_urgent_work_cannot_use():
    # U (6 CPU) fits only the big worker, where a running task holds 5 CPU until t=20. Archive V (3 CPU,
    # 8 GB: big only) would fit beside it now but would still hold 3 CPU at 20, when U needs 6 of the 8:
    # it waits. X and W go to the small worker, which U can never use; Y (1 CPU, 5 s) ends before anything
    # frees, so it may use the big worker now.
    ws = [Worker("big", BIG), Worker("small", SMALL)]
    fixed = [FixedTask(99, "big", 5, 100, 100, -1, 20)]
    tasks = [job(1, cpu=6, dur=10, priority=0), job(2, cpu=3, dur=100, priority=1, ram=8000),
             job(3, cpu=2, dur=100, priority=1), job(4, cpu=2, dur=100, priority=1), job(5, cpu=1, dur=5, priority=1)]
    plan = plan_tasks(tasks, ws, Budgets(), fixed)
    assert_valid(plan, tasks, ws, Budgets(), fixed)
    a = plan.assignments
    assert (a[1].start_s, a[1].worker) == (20, "big")
    assert a[2].start_s == 30 and a[2].worker == "big"
    assert (a[3].start_s, a[3].worker) == (0, "small") and (a[4].start_s, a[4].worker) == (0, "small")
    assert (a[5].start_s, a[5].worker) == (0, "big")


def test_back_fill_leaves_the_budget_to_waiting_urgent_work():
    # the CPU budget (7) binds: U waits for the running task (5 CPU until t=20); X (2 CPU) could start on
    # the small worker at once, but would then hold 2 of the 7 CPU when U needs 6: it waits until U ends
    ws = [Worker("big", BIG), Worker("small", SMALL)]
    fixed = [FixedTask(99, "big", 5, 100, 100, -1, 20)]
    tasks = [job(1, cpu=6, dur=10, priority=0), job(2, cpu=2, dur=100, priority=1)]
    plan = plan_tasks(tasks, ws, Budgets(cpu_max=7), fixed)
    assert_valid(plan, tasks, ws, Budgets(cpu_max=7), fixed)
    assert plan.assignments[1].start_s == 20
    assert plan.assignments[2].start_s == 30


def test_earliest_deadline_first_within_a_priority():
    tasks = [job(1, dur=10, deadline=100), job(2, dur=10, deadline=15), job(3, dur=10), job(4, dur=10, deadline=40)]
    plan = plan_tasks(tasks, workers(1), Budgets(cpu_max=1))
    assert_valid(plan, tasks, workers(1), Budgets(cpu_max=1))
    order = sorted(plan.assignments, key=lambda i: plan.assignments[i].start_s)
    assert order == [2, 4, 1, 3]  # by deadline; the task without one last
    assert plan.late == [] and plan.figures.late_count == 0


def test_a_more_urgent_lane_goes_before_an_earlier_deadline():
    tasks = [job(1, dur=10, priority=1, deadline=10), job(2, dur=10, priority=0)]
    plan = plan_tasks(tasks, workers(1), Budgets(cpu_max=1))
    assert plan.assignments[2].start_s == 0
    assert plan.late == [LateTask(1, 20.0, 10)]


def test_what_an_urgent_task_waits_for_is_as_urgent_and_as_due():
    # A (archive, no deadline) is the dependency of N (near-real-time, due at 30): A is planned as a
    # priority-0 task due at 20, ahead of the other archive tasks and of a priority-0 task due later
    tasks = [job(1, dur=10, priority=1), job(2, dur=10, priority=1), job(3, dur=10, priority=1),
             job(4, dur=10, priority=0, deadline=100), job(5, dur=10, deps=[3], priority=0, deadline=30)]
    plan = plan_tasks(tasks, workers(1), Budgets(cpu_max=1))
    assert_valid(plan, tasks, workers(1), Budgets(cpu_max=1))
    assert plan.assignments[3].start_s == 0
    assert plan.assignments[5].start_s == 10
    assert plan.assignments[4].start_s == 20
    assert plan.figures.late_count == 0


def test_late_tasks_are_listed_counted_and_stored():
    tasks = [job(1, dur=10, deadline=10), job(2, dur=10, deadline=15), job(3, dur=10, deadline=5)]
    plan = plan_tasks(tasks, workers(1), Budgets(cpu_max=1))
    assert_valid(plan, tasks, workers(1), Budgets(cpu_max=1))
    # task 3 (due at 5) goes first and ends at 10: late; task 1 ends at 20; task 2 at 30
    assert plan.late == [LateTask(3, 10.0, 5), LateTask(1, 20.0, 10), LateTask(2, 30.0, 15)]
    assert plan.figures.late_count == 3
    assert plan.to_json()["late"][0] == {"task_id": 3, "planned_end_s": 10.0, "deadline_s": 5}


def test_the_validator_checks_the_late_list():
    tasks = [job(1, dur=10, deadline=10), job(2, dur=10, deadline=15)]
    plan = plan_tasks(tasks, workers(1), Budgets(cpu_max=1))
    assert validate_plan(plan, tasks, workers(1), Budgets(cpu_max=1)) == []
    missing = Plan(plan.assignments, plan.unplannable, plan.figures, [])
    assert any("not listed late" in v for v in validate_plan(missing, tasks, workers(1), Budgets(cpu_max=1)))
    made_up = Plan(plan.assignments, plan.unplannable, plan.figures, plan.late + [LateTask(1, 10.0, 10)])
    assert any("listed late" in v for v in validate_plan(made_up, tasks, workers(1), Budgets(cpu_max=1)))


def test_one_lane_for_all_plans_as_no_lanes():
    rng = random.Random(5)
    tasks = [job(i, cpu=rng.choice([1, 2, 3]), dur=rng.choice([5, 10, 30]), deps=[rng.randrange(i)] if i and rng.random() < 0.5
                 else ()) for i in range(60)]
    all_one = [TaskDemand(t.id, t.routine, t.cpu, t.ram_mb, t.storage_mb, t.duration_s, t.depends_on, priority=1)
               for t in tasks]
    a = plan_tasks(tasks, workers(3), Budgets(cpu_max=8))
    b = plan_tasks(all_one, workers(3), Budgets(cpu_max=8))
    assert {k: (v.worker, v.start_s) for k, v in a.assignments.items()} == \
           {k: (v.worker, v.start_s) for k, v in b.assignments.items()}


def test_priority_and_deadline_must_be_sane():
    from hrwsi.planner import PlanningError

    with pytest.raises(PlanningError, match="deadline_s"):
        plan_tasks([job(1, deadline=math.inf)], workers(1), Budgets())
    with pytest.raises(PlanningError, match="priority"):
        plan_tasks([job(1, priority=0.5)], workers(1), Budgets())


# --------------------------------------------------------------------------------- property


FLAVOURS = [Flavour("s", 2, 2000, 2000), Flavour("l", 8, 16000, 16000)]


@st.composite
def laned_instances(draw):
    ws = [Worker(f"w{i}", draw(st.sampled_from(FLAVOURS))) for i in range(draw(st.integers(1, 4)))]
    tasks = []
    for i in range(draw(st.integers(1, 24))):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2)) if i else []
        tasks.append(TaskDemand(
            i, "R", draw(st.sampled_from([0.5, 1, 2, 3, 6])), draw(st.sampled_from([100, 1000, 4000])), 100,
            draw(st.sampled_from([1.0, 3.0, 10.0, 25.0])), tuple(deps), draw(st.sampled_from([0.0, 0.0, 5.0, 12.0])),
            None, draw(st.sampled_from([0, 1, 1, 2])), draw(st.sampled_from([None, None, 10.0, 30.0, 60.0]))))
    fixed = [FixedTask(100, ws[0].name, 1, 100, 100, -1, draw(st.sampled_from([3.0, 15.0])))] if draw(st.booleans()) \
        else []
    budgets = Budgets(cpu_max=draw(st.sampled_from([None, 4, 8])), vm_max=draw(st.sampled_from([None, 1, 2, 3])))
    return tasks, ws, budgets, fixed


def _effective_priority(tasks, planned):
    """A task is as urgent as the most urgent planned task that waits for it."""
    prio = {t.id: t.priority for t in tasks}
    for t in sorted(tasks, key=lambda t: -t.id):  # dependencies point to smaller ids
        if t.id in planned:
            for d in t.depends_on:
                prio[d] = min(prio[d], prio[t.id])
    return prio


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(laned_instances())
def test_less_urgent_work_never_holds_what_a_waiting_urgent_task_could_use(inst):
    tasks, ws, budgets, fixed = inst
    plan = plan_tasks(tasks, ws, budgets, fixed)
    assert_valid(plan, tasks, ws, budgets, fixed)
    flavour_of = {w.name: w.flavour for w in ws}
    a = plan.assignments
    prio = _effective_priority(tasks, a)
    fixed_end = {f.id: f.end_s for f in fixed}
    for y in tasks:
        if y.id not in a:
            continue
        ready = max([max(0.0, y.earliest_start_s)] + [a[d].end_s if d in a else fixed_end.get(d, 0.0)
                                                      for d in y.depends_on])
        for x_id, x in a.items():
            if prio[x_id] <= prio[y.id] or not ready <= x.start_s < a[y.id].start_s - 1e-9:
                continue
            # X started while Y, more urgent, waited: X ends before Y starts, or Y can never use X's worker
            fl = flavour_of[x.worker]
            y_fits = y.cpu <= fl.cpu and y.ram_mb <= fl.ram_mb and y.storage_mb <= fl.disk_mb
            assert x.end_s <= a[y.id].start_s + 1e-9 or not y_fits, (x_id, y.id, x, a[y.id])
    assert {x.task_id for x in plan.late} == {
        t.id for t in tasks if t.id in a and t.deadline_s is not None and a[t.id].end_s > t.deadline_s + 1e-9}


def test_deadline_mode_does_not_save_workers_by_making_tasks_late():
    # four 10 s tasks due at 10 on four workers: one worker would meet the 40 s horizon, but late
    tasks = [job(i, cpu=4, dur=10, deadline=10) for i in range(4)]
    plan = plan_tasks(tasks, workers(4), Budgets(), horizon_s=40, mode="deadline")
    assert_valid(plan, tasks, workers(4), Budgets())
    assert plan.figures.late_count == 0 and plan.figures.vms == 4
