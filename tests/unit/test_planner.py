"""Unit tests of hrwsi.planner: lower bound, validator, unplannable reasons, cycles, deadline mode,
fixed tasks, earliest starts, flavour restrictions, and the reference family as a regression.
No timing asserts (the benchmark measures time)."""

from __future__ import annotations

import json
import math
import random

import pytest

from hrwsi.planner import (
    Assignment,
    Budgets,
    FixedTask,
    Flavour,
    Plan,
    PlanningError,
    TaskDemand,
    Unplannable,
    Worker,
    explain_infeasible_horizon,
    lower_bound,
    lower_bound_parts,
    plan_tasks,
    validate_plan,
)

SMALL = Flavour("small", 4, 4000, 4000)
BIG = Flavour("big", 8, 16000, 16000)


def task(i, cpu=1, ram=100, st=100, dur=10.0, deps=(), routine="R", earliest=0.0, flavour=None):
    return TaskDemand(i, routine, cpu, ram, st, dur, tuple(deps), earliest, flavour)


def workers(n, flavour=SMALL, prefix="w"):
    return [Worker(f"{prefix}{i}", flavour) for i in range(n)]


def reference_family(n, one_task_per_worker=False):
    half = n // 2
    tasks = [TaskDemand(i, "A", 2, 1, 2, 5) for i in range(half)]
    tasks += [TaskDemand(half + i, "B", 3, 2, 2, 2, depends_on=(i,)) for i in range(half)]
    flavour = Flavour("one", 3, 2, 2) if one_task_per_worker else Flavour("large", 10, 10, 10)
    return tasks, [Worker(f"w{i}", flavour) for i in range(4)], Budgets(10, 10, 10, 4)


def assert_valid(plan, tasks, ws, budgets, fixed=()):
    violations = validate_plan(plan, tasks, ws, budgets, fixed)
    assert violations == [], violations


# ------------------------------------------------------------------------------------ lower bound


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


# -------------------------------------------------------------------------------------- validator


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


# ------------------------------------------------------------------------------ unplannable tasks


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
    assert "no workers" in plan.unplannable[0].reason
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


# ------------------------------------------------------------------------------- planning rules


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


def test_figures_and_json():
    ws = workers(2)
    tasks = [task(i, cpu=2, dur=10) for i in range(4)]
    plan = plan_tasks(tasks, ws, Budgets(cpu_max=4, vm_max=2), horizon_s=100)
    f = plan.figures
    assert f.task_count == 4 and f.makespan_s == pytest.approx(20) and f.lower_bound_s == pytest.approx(20)
    assert f.peak_use["cpu"] == pytest.approx(4) and f.mean_use["cpu"] == pytest.approx(4)
    assert set(f.peak_use) == set(f.mean_use) == {"cpu", "ram_mb", "storage_mb", "vms"}
    assert f.horizon_s == 100 and f.horizon_missed_by_s is None
    assert f.vm_hours > 0 and f.planning_s >= 0
    data = json.loads(json.dumps(plan.to_json()))
    assert len(data["assignments"]) == 4 and data["figures"]["makespan_s"] == pytest.approx(20)


# ---------------------------------------------------------------------------------------- horizon


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
