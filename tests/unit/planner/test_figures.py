"""The plan's figures and its JSON form."""

from __future__ import annotations

import json

import pytest

from hrwsi.planner import Budgets, plan_tasks
from tests.unit.planner.conftest import task, workers


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
