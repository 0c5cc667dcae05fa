"""The lower bound: planning.md's terms, multi-task workers, fixed tasks, unplannable tasks left out."""

from __future__ import annotations

import pytest

from hrwsi.planner import Budgets, FixedTask, Worker, lower_bound, lower_bound_parts
from tests.unit.planner.conftest import BIG, SMALL, reference_family, task, workers


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
    # vm_max with workers: the 2 largest workers offer 8 CPU (25 s of work), four tasks at once: three
    # rounds of 10 s, since tasks are whole
    assert lower_bound_parts(ts, workers(10), Budgets(vm_max=2))["cpu"] == pytest.approx(25)
    assert lower_bound(ts, workers(10), Budgets(vm_max=2)) == pytest.approx(30)


def test_lower_bound_stays_valid_when_fixed_tasks_exceed_a_budget():
    fx = [FixedTask(9, "w0", 10, 1, 1, 0, 10)]  # 10 CPU against a budget of 5
    assert lower_bound([], workers(1, BIG), Budgets(cpu_max=5), fx) == pytest.approx(10)


def test_lower_bound_leaves_out_unplannable_tasks():
    ts = [task(1, cpu=100, dur=1000), task(2, dur=10)]
    assert lower_bound(ts, workers(1), Budgets()) == pytest.approx(10)


# ------------------------------------------------------------------------ the bound sees flavour fit


def test_one_task_at_a_time_per_worker_when_two_do_not_fit():
    # 3-CPU tasks on 4-CPU workers: one at a time on each, so 6 of 10 s on 2 workers take 30 s, not 22.5
    ws = workers(2)  # SMALL: 4 CPU
    tasks = [task(i, cpu=3, dur=10) for i in range(6)]
    parts = lower_bound_parts(tasks, ws, Budgets())
    assert parts["cpu"] == pytest.approx(22.5)
    assert parts["flavour"] == pytest.approx(30)
    assert lower_bound(tasks, ws, Budgets()) == pytest.approx(30)


def test_tasks_that_fit_only_the_big_workers_are_bounded_by_those():
    # the 5-CPU tasks fit only the 8-CPU worker: their work alone is 100 / 5 (one at a time)
    ws = [Worker("s0", SMALL), Worker("s1", SMALL), Worker("b0", BIG)]
    tasks = [task(i, cpu=5, dur=20) for i in range(5)] + [task(10 + i, cpu=1, dur=10) for i in range(8)]
    assert lower_bound(tasks, ws, Budgets()) == pytest.approx(100)


def test_tasks_after_a_chain_are_bounded_by_the_chain_plus_their_work():
    # Y (1 CPU, 10 s) before four 4-CPU tasks of 10 s on one 4-CPU worker: they all run after t=10
    tasks = [task(0, cpu=1, dur=10)] + [task(i, cpu=4, dur=10, deps=[0]) for i in range(1, 5)]
    parts = lower_bound_parts(tasks, workers(1), Budgets())
    assert parts["cpu"] == pytest.approx(42.5)
    assert parts["window"] == pytest.approx(50)


def test_the_knapsack_is_exact_and_falls_back_to_an_upper_bound():
    import math

    from hrwsi.planner.capacity import most_held

    assert most_held((4, 30000, 1e5), [(3, (3, 12000, 2e4))]) == 3
    assert most_held((4, 30000, 1e5), [(3, (3, 12000, 2e4)), (1, (1, 16000, 1e4))]) == 4
    assert most_held((math.inf,) * 3, [(1, (1, 1, 1))]) == math.inf
    # many small items: the relaxation, an upper bound
    assert most_held((100, math.inf, math.inf), [(3, (3, 0, 0)), (0.5, (0.5, 0, 0))]) == pytest.approx(100)


def test_whole_tasks_take_rounds_the_bound_counts():
    """Twenty 20 s tasks, six at once, take four rounds (80 s): the bound said 67 s and plans as good
    as can be read 1.17x it (found by exploratory testing)."""
    ts = [task(i, cpu=1, dur=20) for i in range(20)]
    assert lower_bound(ts, workers(10), Budgets(cpu_max=6)) == pytest.approx(80)
    # of the 7 longest of 60, 50, 40, 30, 20, 10, 5 on six lines, two share one: at least 10 + 5
    mixed = [task(i, cpu=1, dur=d) for i, d in enumerate((60, 50, 40, 30, 20, 10, 5))]
    assert lower_bound_parts(mixed, workers(10), Budgets(cpu_max=6))["tasks"] == pytest.approx(215 / 6)
    # thirteen: of the 13 longest, three share a line: at least the three shortest
    many = [task(i, cpu=1, dur=d) for i, d in enumerate(range(13, 0, -1))]
    assert lower_bound_parts(many, workers(10), Budgets(cpu_max=6))["tasks"] == pytest.approx(max(91 / 6, 1 + 2 + 3))
