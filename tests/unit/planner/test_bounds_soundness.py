"""The lower bound never exceeds the optimum: tiny random instances (flavour fit, chains, budgets, releases,
running tasks) against an exhaustive search."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrwsi.planner import Budgets, FixedTask, Flavour, TaskDemand, Worker, lower_bound, plan_tasks
from tests.unit.planner.brute_force import optimum

FLAVOURS = [Flavour("small", 2, 2000, 2000), Flavour("big", 4, 8000, 4000)]


@st.composite
def tiny_instances(draw):
    nw = draw(st.integers(1, 3))
    workers = [Worker(f"w{i}", draw(st.sampled_from(FLAVOURS))) for i in range(nw)]
    n = draw(st.integers(1, 5 if nw == 1 else 4))
    tasks = []
    for i in range(n):
        deps = tuple(sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=2))))) if i else ()
        tasks.append(TaskDemand(
            id=i, routine="R",
            cpu=draw(st.sampled_from([0.5, 1, 1.5, 2, 3, 4])),
            ram_mb=draw(st.sampled_from([0, 500, 1000, 3000, 6000])),
            storage_mb=draw(st.sampled_from([0, 500, 1000, 3000])),
            duration_s=draw(st.sampled_from([1.0, 2.0, 3.0, 5.0, 8.0])),
            depends_on=deps,
            earliest_start_s=draw(st.sampled_from([0.0, 0.0, 0.0, 2.0, 6.0])),
            flavour=draw(st.sampled_from([None, None, None, "small", "big"])),
        ))
    fixed = []
    if draw(st.booleans()):
        fixed.append(FixedTask(100, workers[0].name, draw(st.sampled_from([0.5, 1, 2])), 500, 500, -1.0,
                               draw(st.sampled_from([2.0, 4.0, 9.0]))))
    budgets = Budgets(cpu_max=draw(st.sampled_from([None, 2, 3, 4, 6])), ram_max_mb=draw(st.sampled_from([None, 8000])),
                      storage_max_mb=None, vm_max=draw(st.sampled_from([None, 1, 2])))
    return tasks, workers, budgets, fixed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances())
def test_the_lower_bound_never_exceeds_the_optimum(inst):
    tasks, workers, budgets, fixed = inst
    plan = plan_tasks(tasks, workers, budgets, fixed)
    if plan.unplannable:
        return  # the bound leaves those out; the exhaustive search would call the instance infeasible
    best = optimum(tasks, workers, budgets, fixed)
    # the exhaustive search is checked too: no plan can beat the optimum
    assert best <= plan.figures.makespan_s + 1e-6
    assert lower_bound(tasks, workers, budgets, fixed) <= best + 1e-6


@pytest.mark.parametrize("n, workers_, expected", [(6, 2, 30.0), (7, 2, 40.0), (4, 4, 10.0)])
def test_known_optima_of_one_task_per_worker_at_a_time(n, workers_, expected):
    # 3-CPU tasks of 10 s on 4-CPU workers: ceil(n / workers) rounds; the bound reaches it when it divides
    ws = [Worker(f"w{i}", FLAVOURS[1]) for i in range(workers_)]
    tasks = [TaskDemand(i, "R", 3, 100, 100, 10.0) for i in range(n)]
    if n <= 4:  # the exhaustive search agrees (larger n: too long to search)
        assert optimum(tasks, ws, Budgets()) == pytest.approx(expected)
    assert lower_bound(tasks, ws, Budgets()) <= expected + 1e-9
    if n % workers_ == 0:
        assert lower_bound(tasks, ws, Budgets()) == pytest.approx(expected)
