"""The Gantt chart renders headless to a non-empty PNG, for a small plan and for an empty one."""

from __future__ import annotations

from hrwsi.plan_chart import render_gantt, usage_steps
from hrwsi.planner import Budgets, FixedTask, Flavour, TaskDemand, Worker, plan_tasks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _small():
    flavour = Flavour("small", 4, 4000, 4000)
    workers = [Worker("w0", flavour), Worker("w1", flavour)]
    tasks = [
        TaskDemand(1, "L1C", 2, 1000, 1000, 10),
        TaskDemand(2, "MAJA", 2, 2000, 1000, 20, depends_on=(1,)),
        TaskDemand(3, "SNOW", 3, 1000, 500, 5, depends_on=(2,)),
        TaskDemand(4, "L1C", 1, 500, 500, 7),
    ]
    fixed = [FixedTask(9, "w1", 1, 500, 500, -3, 8), FixedTask(10, "gone", 1, 100, 100, -1, 4)]
    budgets = Budgets(cpu_max=6, ram_max_mb=6000, storage_max_mb=6000, vm_max=2)
    return tasks, workers, budgets, fixed


def test_small_plan_writes_a_png(tmp_path):
    tasks, workers, budgets, fixed = _small()
    plan = plan_tasks(tasks, workers, budgets, fixed, horizon_s=60)
    out = tmp_path / "plan.png"
    render_gantt(plan, tasks, workers, budgets, fixed, path=str(out), title="small")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_empty_plan_writes_a_png(tmp_path):
    plan = plan_tasks([], [], Budgets())
    out = tmp_path / "empty.png"
    render_gantt(plan, [], [], Budgets(), path=str(out))
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_usage_steps_count_fixed_tasks_and_vms():
    tasks, workers, budgets, fixed = _small()
    plan = plan_tasks(tasks, workers, budgets, fixed)
    steps = usage_steps(plan, tasks, fixed)
    assert set(steps) == {"cpu", "ram_mb", "storage_mb", "vms"}
    assert max(steps["cpu"][1]) <= budgets.cpu_max
    assert max(steps["vms"][1]) >= 2  # a planned worker and the fixed tasks' workers
    assert steps["cpu"][1][-1] == 0


def test_parallel_tasks_of_a_worker_get_rows_of_their_own_and_sequential_ones_share_one():
    from hrwsi.plan_chart import stack_rows

    # (start, duration): two at once from 0, a third from 5 while the first still runs, a fourth after them.
    bars = [(0, 10), (0, 4), (5, 2), (12, 1)]
    rows = stack_rows(bars)
    assert rows == [0, 1, 1, 0]
    for i, (start_i, length_i) in enumerate(bars):
        for j, (start_j, length_j) in enumerate(bars[:i]):
            overlap = start_i < start_j + length_j and start_j < start_i + length_i
            assert not (overlap and rows[i] == rows[j]), "overlapping tasks never share a row"
    assert stack_rows([]) == []
