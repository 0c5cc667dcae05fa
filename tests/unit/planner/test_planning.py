"""plan_tasks end to end: deadline mode (the fewest workers that meet a horizon, the note when none does) and the
quality regressions (reference family within 1 % of the bound, random heterogeneous graphs within 3 %).
No timing asserts (the benchmark measures time)."""

from __future__ import annotations

import random

import pytest

from hrwsi.planner import Budgets, FixedTask, Flavour, TaskDemand, Worker, explain_infeasible_horizon, plan_tasks
from tests.unit.planner.conftest import BIG, SMALL, assert_valid, reference_family, task, workers


def _twelve():
    return [task(i, cpu=4, ram=1000, st=1000, dur=10) for i in range(12)], workers(6), Budgets(vm_max=6)


@pytest.mark.parametrize("horizon, vms", [(20, 6), (30, 4), (40, 3), (60, 2), (119, 2), (120, 1), (500, 1)])
def test_deadline_mode_uses_the_fewest_vms_that_meet_the_horizon(horizon, vms):
    tasks, ws, budgets = _twelve()
    plan = plan_tasks(tasks, ws, budgets, horizon_s=horizon, mode="deadline")
    assert_valid(plan, tasks, ws, budgets)
    assert plan.figures.makespan_s <= horizon
    assert plan.figures.vms == vms
    assert plan.figures.horizon_missed_by_s is None


def test_deadline_mode_impossible_horizon_reports_missed_by_and_bound():
    tasks, ws, budgets = _twelve()
    plan = plan_tasks(tasks, ws, budgets, horizon_s=5, mode="deadline")
    assert_valid(plan, tasks, ws, budgets)
    assert plan.figures.makespan_s == pytest.approx(20)  # still the best plan
    assert plan.figures.horizon_missed_by_s == pytest.approx(15)
    note = plan.figures.horizon_note
    assert "cannot be met" in note and "CPU" in note and "15 s beyond" in note
    # a chain that is too long
    chain = [task(1, dur=50), task(2, dur=50, deps=[1])]
    plan = plan_tasks(chain, ws, budgets, horizon_s=60, mode="deadline")
    assert plan.figures.horizon_missed_by_s == pytest.approx(40)
    assert "chain" in plan.figures.horizon_note and "1, 2" in plan.figures.horizon_note
    assert "chain" in explain_infeasible_horizon(chain, ws, budgets, horizon_s=60)
    assert explain_infeasible_horizon(chain, ws, budgets, horizon_s=100) is None


def test_makespan_mode_reports_a_missed_horizon():
    tasks, ws, budgets = _twelve()
    plan = plan_tasks(tasks, ws, budgets, horizon_s=15)
    assert plan.figures.horizon_missed_by_s == pytest.approx(5)
    assert plan.figures.horizon_note
    assert plan_tasks(tasks, ws, budgets, horizon_s=25).figures.horizon_missed_by_s is None


def test_deadline_mode_keeps_workers_with_fixed_tasks_and_required_flavours():
    ws = [Worker("s0", SMALL), Worker("s1", SMALL), Worker("b0", BIG), Worker("b1", BIG)]
    fixed = [FixedTask(99, "s1", 1, 100, 100, -5, 10)]
    tasks = [task(1, flavour="small"), task(2, cpu=8, flavour="big"), task(3)]
    plan = plan_tasks(tasks, ws, Budgets(), fixed, horizon_s=1000, mode="deadline")
    assert_valid(plan, tasks, ws, Budgets(), fixed)
    assert plan.figures.vms == 2  # s1 (running a fixed task) and one big worker


# ------------------------------------------------------------------------------------ regression


@pytest.mark.parametrize("one_task_per_worker", [False, True])
def test_reference_family_4000_within_one_percent_of_the_bound(one_task_per_worker):
    tasks, ws, budgets = reference_family(4000, one_task_per_worker)
    plan = plan_tasks(tasks, ws, budgets)
    f = plan.figures
    assert not plan.unplannable
    assert f.makespan_s / f.lower_bound_s <= 1.01, (f.makespan_s, f.lower_bound_s, f.rule)
    assert_valid(plan, tasks, ws, budgets)


def test_random_heterogeneous_graph_within_three_percent_of_the_bound():
    rng = random.Random(7)
    routines = [("L1C", 1, 2000, 4000, 120, None), ("MAJA", 4, 8000, 12000, 900, None),
                ("SNOW", 2, 4000, 3000, 300, None), ("WATER", 2, 6000, 3000, 400, None),
                ("QL", 0.5, 1000, 500, 60, None), ("GFSC", 8, 30000, 20000, 1500, "large")]
    tasks = []
    for i in range(2000):
        name, cpu, ram, st, dur, fl = rng.choice(routines)
        deps = {rng.randrange(max(0, i - 400), i) for _ in range(rng.choice((0, 1, 2))) if i}
        tasks.append(TaskDemand(i, name, cpu, ram, st, round(dur * rng.uniform(0.5, 1.5), 1), tuple(deps),
                                flavour=fl))
    ws = workers(8, Flavour("small", 4, 16000, 40000), "s") + workers(4, Flavour("large", 16, 64000, 160000), "l")
    budgets = Budgets(cpu_max=40, ram_max_mb=150000, storage_max_mb=200000, vm_max=8)
    plan = plan_tasks(tasks, ws, budgets)
    assert_valid(plan, tasks, ws, budgets)
    assert plan.figures.makespan_s / plan.figures.lower_bound_s <= 1.03
