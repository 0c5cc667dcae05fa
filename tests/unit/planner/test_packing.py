"""The packing search: the combination of ready classes that uses the scarcest resource the most, ties to the
better-ranked class; on coarse-grained instances it turns the reference family into LB + 2 s."""

from __future__ import annotations

import pytest

from hrwsi.planner import plan_tasks
from hrwsi.planner.packing import best_combination
from tests.unit.planner.conftest import assert_valid, reference_family


def test_the_search_fills_the_bottleneck_where_greedy_would_not():
    # 10 CPU free; class 0 (3 CPU) ranks first, class 1 takes 2 CPU: greedy takes three of class 0 (9 CPU);
    # two of class 0 and two of class 1 use all 10
    combo = best_combination([0, 1], [(3.0, 0.0, 0.0), (2.0, 0.0, 0.0)], [5, 5], (10.0, 0.0, 0.0), (0.1, 0.0, 0.0),
                             cap_n=5)
    assert sorted(combo) == [0, 0, 1, 1]


def test_ties_go_to_the_better_ranked_class():
    combo = best_combination([7, 4], [(2.0, 0.0, 0.0), (2.0, 0.0, 0.0)], [3, 3], (4.0, 0.0, 0.0), (1.0, 0.0, 0.0),
                             cap_n=2)
    assert combo == [7, 7]


def test_reference_family_with_multi_task_workers_ends_at_the_bound_plus_two_seconds():
    tasks, ws, budgets = reference_family(4000)
    plan = plan_tasks(tasks, ws, budgets)
    assert_valid(plan, tasks, ws, budgets)
    assert plan.figures.rule.endswith("+fill")
    assert plan.figures.makespan_s == pytest.approx(plan.figures.lower_bound_s + 2)
