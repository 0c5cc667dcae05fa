"""The lower bound: planning.md's terms, multi-task workers, fixed tasks, unplannable tasks left out."""

from __future__ import annotations

import pytest

from hrwsi.planner import Budgets, FixedTask, lower_bound, lower_bound_parts
from tests.unit.planner.conftest import BIG, reference_family, task, workers


def test_lower_bound_of_reference_family_matches_planning_md():
    # one task per worker at a time: planning.md's sum(duration)/vm_max = (2000*5 + 2000*2)/4
    assert lower_bound(*reference_family(4000, one_task_per_worker=True)) == pytest.approx(3500)
    # workers that hold several tasks: the CPU bound (2000*2*5 + 2000*3*2)/10
    parts = lower_bound_parts(*reference_family(4000))
    assert parts["cpu"] == pytest.approx(3200)
    assert max(parts.values()) == pytest.approx(3200)


def test_lower_bound_terms():
    assert lower_bound([], workers(2), Budgets()) == 0.0
    chain = [task(1, dur=5), task(2, dur=6, deps=[1]), task(3, dur=7, deps=[2])]
    assert lower_bound(chain, workers(3), Budgets()) == pytest.approx(18)
    # earliest start and fixed predecessors extend the chain
    assert lower_bound([task(1, dur=10, earliest=100)], workers(1), Budgets()) == pytest.approx(110)
    fx = [FixedTask(9, "w0", 1, 1, 1, -5, 50)]
    assert lower_bound([task(1, dur=10, deps=[9])], workers(1), Budgets(), fx) == pytest.approx(60)
    # the last fixed task's end
    assert lower_bound([], workers(1), Budgets(), [FixedTask(9, "w0", 1, 1, 1, 0, 70)]) == pytest.approx(70)
    # CPU budget: 10 tasks x 2 CPU x 10 s / 4 CPU
    ts = [task(i, cpu=2) for i in range(10)]
    assert lower_bound(ts, workers(10), Budgets(cpu_max=4)) == pytest.approx(50)
    # vm_max with workers: the 2 largest workers offer 8 CPU
    assert lower_bound(ts, workers(10), Budgets(vm_max=2)) == pytest.approx(25)


def test_lower_bound_stays_valid_when_fixed_tasks_exceed_a_budget():
    fx = [FixedTask(9, "w0", 10, 1, 1, 0, 10)]  # 10 CPU against a budget of 5
    assert lower_bound([], workers(1, BIG), Budgets(cpu_max=5), fx) == pytest.approx(10)


def test_lower_bound_leaves_out_unplannable_tasks():
    ts = [task(1, cpu=100, dur=1000), task(2, dur=10)]
    assert lower_bound(ts, workers(1), Budgets()) == pytest.approx(10)
