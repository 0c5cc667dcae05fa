"""Property-based tests of hrwsi.planner (hypothesis): on random small instances every plan passes the
independent validator, every task is either assigned or unplannable, and the makespan is never below
the lower bound. Instances stay small and examples few so that the file runs in seconds."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrwsi.planner import (
    Budgets,
    FixedTask,
    Flavour,
    TaskDemand,
    Worker,
    lower_bound,
    plan_tasks,
    usage_steps,
    validate_plan,
)
from hrwsi.planner.schedule import EventScheduler

FLAVOURS = [
    Flavour("s", 2, 2000, 2000),
    Flavour("m", 4, 8000, 4000),
    Flavour("l", 8, 16000, 16000),
]
CPUS = [0, 0.5, 1, 2, 3, 4, 8, 9]
RAMS = [0, 100, 1000, 2000, 8000, 20000]
STS = [0, 100, 1000, 2000, 4000, 20000]

PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def instances(draw, max_tasks=18):
    nw = draw(st.integers(0, 4))
    workers = [Worker(f"w{i}", draw(st.sampled_from(FLAVOURS))) for i in range(nw)]
    n = draw(st.integers(0, max_tasks))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3)) if i else []
        if draw(st.integers(0, 9)) == 0:
            deps.append(1000 + i)  # unknown id: already finished
        tasks.append(
            TaskDemand(
                id=i,
                routine=draw(st.sampled_from(["A", "B", "C", "D", "E"])),
                cpu=draw(st.sampled_from(CPUS)),
                ram_mb=draw(st.sampled_from(RAMS)),
                storage_mb=draw(st.sampled_from(STS)),
                duration_s=draw(st.sampled_from([0.0, 1.0, 2.5, 5.0, 10.0, 37.0])),
                depends_on=tuple(deps),
                earliest_start_s=draw(st.sampled_from([0.0, 0.0, 0.0, 3.0, 20.0, -5.0])),
                flavour=draw(st.sampled_from([None, None, None, "s", "m", "l", "gpu"])),
            )
        )
    fixed = []
    for q in range(draw(st.integers(0, 3))):
        worker = draw(st.sampled_from([w.name for w in workers] + ["gone"]))
        start = draw(st.sampled_from([-10.0, -1.0, 0.0, 4.0, 12.0]))
        end = start + draw(st.sampled_from([0.0, 3.0, 8.0, 30.0]))
        fixed.append(FixedTask(500 + q, worker, draw(st.sampled_from([0.5, 1, 2])), draw(st.sampled_from([0, 500])),
                               draw(st.sampled_from([0, 500])), start, end))
        if tasks and draw(st.booleans()):  # a task waiting for a running one
            i = draw(st.integers(0, len(tasks) - 1))
            t = tasks[i]
            tasks[i] = TaskDemand(t.id, t.routine, t.cpu, t.ram_mb, t.storage_mb, t.duration_s,
                                  t.depends_on + (500 + q,), t.earliest_start_s, t.flavour)
    budgets = Budgets(
        cpu_max=draw(st.sampled_from([None, 2, 4, 6, 12])),
        ram_max_mb=draw(st.sampled_from([None, 2000, 10000, 40000])),
        storage_max_mb=draw(st.sampled_from([None, 2000, 5000, 40000])),
        vm_max=draw(st.sampled_from([None, 0, 1, 2, 3])),
    )
    return tasks, workers, budgets, fixed


def check(plan, tasks, workers, budgets, fixed):
    violations = validate_plan(plan, tasks, workers, budgets, fixed)
    assert violations == [], violations
    planned = set(plan.assignments)
    unplannable = {u.task_id for u in plan.unplannable}
    assert planned.isdisjoint(unplannable)
    assert planned | unplannable == {t.id for t in tasks}
    assert len(plan.unplannable) == len(unplannable)
    for u in plan.unplannable:
        assert f"task {u.task_id}" in u.reason
    f = plan.figures
    lb = lower_bound(tasks, workers, budgets, fixed)
    assert f.lower_bound_s == pytest.approx(lb)
    assert f.makespan_s >= lb - 1e-6
    assert f.task_count == len(tasks)
    ends = [a.end_s for a in plan.assignments.values()] + [x.end_s for x in fixed]
    assert f.makespan_s == pytest.approx(max(ends + [0.0]))
    # the figures the scheduler notes as it goes agree with a sweep over the plan
    steps = usage_steps(plan.assignments.values(), {t.id: t for t in tasks}, fixed)
    for key, (xs, ys) in steps.items():
        assert f.peak_use[key] == pytest.approx(max(ys), abs=1e-6)
        area = sum(ys[i] * max(0.0, min(xs[i + 1], f.makespan_s) - max(xs[i], 0.0)) for i in range(len(xs) - 1))
        assert f.mean_use[key] == pytest.approx(area / f.makespan_s if f.makespan_s > 0 else 0.0, abs=1e-6)


@PROFILE
@given(instances())
def test_random_instances_give_valid_plans(inst):
    tasks, workers, budgets, fixed = inst
    plan = plan_tasks(tasks, workers, budgets, fixed)
    check(plan, tasks, workers, budgets, fixed)


@PROFILE
@given(instances(max_tasks=10), st.sampled_from([0.0, 5.0, 20.0, 60.0, 400.0]))
def test_deadline_mode_is_valid_and_reports_the_miss(inst, horizon):
    tasks, workers, budgets, fixed = inst
    plan = plan_tasks(tasks, workers, budgets, fixed, horizon_s=horizon, mode="deadline")
    check(plan, tasks, workers, budgets, fixed)
    f = plan.figures
    if f.makespan_s <= horizon + 1e-9:
        assert f.horizon_missed_by_s is None
        # never more workers than the plain makespan plan uses
        assert f.vms <= plan_tasks(tasks, workers, budgets, fixed).figures.vms
    else:
        assert f.horizon_missed_by_s == pytest.approx(f.makespan_s - horizon)
        assert f.horizon_note


# ------------------------------------------------------------------------------- awkward cases


@PROFILE
@given(st.integers(1, 40), st.sampled_from([0.5, 1.0, 7.0]))
def test_long_chain_reaches_its_length(n, dur):
    tasks = [TaskDemand(i, "C", 1, 100, 100, dur, (i - 1,) if i else ()) for i in range(n)]
    workers = [Worker("w0", FLAVOURS[0]), Worker("w1", FLAVOURS[1])]
    plan = plan_tasks(tasks, workers, Budgets(vm_max=1))
    check(plan, tasks, workers, Budgets(vm_max=1), [])
    assert plan.figures.makespan_s == pytest.approx(n * dur)


@PROFILE
@given(st.integers(0, 12), st.sampled_from(FLAVOURS))
def test_tasks_exactly_filling_a_flavour(n, flavour):
    tasks = [TaskDemand(i, "X", flavour.cpu, flavour.ram_mb, flavour.disk_mb, 3.0) for i in range(n)]
    workers = [Worker("a", flavour), Worker("b", flavour)]
    budgets = Budgets(cpu_max=flavour.cpu * 2, ram_max_mb=flavour.ram_mb * 2, storage_max_mb=flavour.disk_mb * 2)
    plan = plan_tasks(tasks, workers, budgets)
    check(plan, tasks, workers, budgets, [])
    assert not plan.unplannable
    assert plan.figures.makespan_s == pytest.approx(3.0 * ((n + 1) // 2))


@PROFILE
@given(st.integers(0, 10))
def test_one_huge_task_among_small_ones(n):
    tasks = [TaskDemand(0, "HUGE", 64, 10**6, 10**6, 100.0)]
    tasks += [TaskDemand(i, "small", 1, 100, 100, 5.0, (0,) if i % 2 else ()) for i in range(1, n + 1)]
    workers = [Worker("w0", FLAVOURS[2])]
    plan = plan_tasks(tasks, workers, Budgets())
    check(plan, tasks, workers, Budgets(), [])
    assert {u.task_id for u in plan.unplannable} == {0} | {i for i in range(1, n + 1) if i % 2}
    assert "task 0 (routine HUGE) needs 64 CPU but the largest flavour has 8 CPU" in plan.unplannable[0].reason


def test_empty_input_and_zero_workers():
    plan = plan_tasks([], [], Budgets())
    check(plan, [], [], Budgets(), [])
    assert plan.figures.makespan_s == 0.0 and plan.figures.lower_bound_s == 0.0 and plan.figures.vms == 0
    tasks = [TaskDemand(1, "A", 1, 1, 1, 1.0)]
    plan = plan_tasks(tasks, [], Budgets())
    check(plan, tasks, [], Budgets(), [])
    assert [u.task_id for u in plan.unplannable] == [1]


@st.composite
def busy_instances(draw):
    """Several workers of unequal sizes, seldom all in use at once, and more tasks than they hold, of sizes
    some workers cannot hold: classes find no worker while others stay idle, and workers gain room as tasks
    end. With lanes, deadlines and avoided workers sometimes, and running tasks."""
    workers = [Worker(f"w{i}", draw(st.sampled_from(FLAVOURS))) for i in range(draw(st.integers(2, 6)))]
    names = [w.name for w in workers]
    several_lanes = draw(st.booleans())
    tasks = []
    for i in range(draw(st.integers(10, 40))):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2)) if i and draw(st.integers(0, 3)) == 0 else []
        tasks.append(TaskDemand(
            id=i, routine=draw(st.sampled_from(["A", "B", "C"])), cpu=draw(st.sampled_from([0.5, 1, 2, 3, 5, 7])),
            ram_mb=draw(st.sampled_from([100, 1000, 3000, 9000])), storage_mb=draw(st.sampled_from([100, 1000, 3000])),
            duration_s=draw(st.sampled_from([1.0, 2.5, 5.0, 10.0, 37.0])), depends_on=tuple(deps),
            earliest_start_s=draw(st.sampled_from([0.0, 0.0, 3.0, 20.0])),
            flavour=draw(st.sampled_from([None, None, None, "s", "l"])),
            priority=draw(st.sampled_from([0, 1, 1])) if several_lanes else 0,
            deadline_s=draw(st.sampled_from([None, None, 30.0])) if several_lanes else None,
            avoid_worker=draw(st.sampled_from([None, None, None, *names]))))
        # (a task avoids a worker only while another worker it fits exists: planning_input.screen)
        if not [w for w in workers if w.name != tasks[-1].avoid_worker and _fits(tasks[-1], w)]:
            tasks[-1] = dataclasses.replace(tasks[-1], avoid_worker=None)
    fixed = []
    for q in range(draw(st.integers(0, 2))):
        start = draw(st.sampled_from([-1.0, 0.0, 6.0]))
        fixed.append(FixedTask(500 + q, draw(st.sampled_from(names)), 1, 500, 500, start,
                               start + draw(st.sampled_from([4.0, 12.0]))))
    budgets = Budgets(cpu_max=draw(st.sampled_from([None, None, 12, 20])),
                      vm_max=draw(st.sampled_from([None, None, len(workers) - 1])))
    return tasks, workers, budgets, fixed


def _fits(task: TaskDemand, worker: Worker) -> bool:
    f = worker.flavour
    return (task.flavour in (None, f.name) and task.cpu <= f.cpu and task.ram_mb <= f.ram_mb
            and task.storage_mb <= f.disk_mb)


@settings(PROFILE, max_examples=150)
@given(st.one_of(instances(max_tasks=30), busy_instances()))
def test_a_class_that_fit_nowhere_is_said_to_fit_nowhere_still_only_when_a_full_search_finds_no_worker(inst):
    """The scheduler skips the search for a class that found no worker when none of the workers that gained
    room or became busy since fits it (EventScheduler._fits_nowhere_still): every such skip is checked here
    against the full search, over every rule and the packing search, with fixed tasks, lanes, deadlines,
    avoided workers and VM limits."""
    tasks, workers, budgets, fixed = inst
    fits_nowhere_still = EventScheduler._fits_nowhere_still

    def checked(self, k):
        said = fits_nowhere_still(self, k)
        if said:
            assert self._first_fit(k) == -1, f"class {k} was said to fit nowhere, and the full search finds a worker"
        return said

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EventScheduler, "_fits_nowhere_still", checked)
        plan = plan_tasks(tasks, workers, budgets, fixed)
    check(plan, tasks, workers, budgets, fixed)


def test_the_search_of_a_class_that_fit_nowhere_is_skipped_until_a_worker_gains_room():
    """The skip happens (the property above is not vacuous): on one 4-CPU worker, 3-CPU tasks run one at a time
    and the 2-CPU tasks waiting beside them find no room at the events where a 3-CPU task still runs."""
    from tests.unit.planner.conftest import assert_valid, task, workers
    tasks = [task(i, cpu=3, dur=10.0) for i in range(10)] + [task(10 + i, cpu=2, dur=3.0) for i in range(10)]
    skipped = []
    fits_nowhere_still = EventScheduler._fits_nowhere_still

    def counted(self, k):
        said = fits_nowhere_still(self, k)
        skipped.append(said)
        return said

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EventScheduler, "_fits_nowhere_still", counted)
        plan = plan_tasks(tasks, workers(1), Budgets())
    assert_valid(plan, tasks, workers(1), Budgets())
    assert any(skipped), "no search was skipped"
