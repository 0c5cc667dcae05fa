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
