"""The launcher's check that a task fits its worker and every budget right now."""

from hrwsi.launcher import Capacity, choose_dispatchable

FLAVOURS = {"w1": Capacity(4, 16000, 1000), "w2": Capacity(4, 16000, 1000), "w3": Capacity(2, 4000, 500)}


def task(task_id, worker, cpu=1.0, ram_mb=1000, storage_mb=100):
    return {"id": task_id, "worker": worker, "cpu": cpu, "ram_mb": ram_mb, "storage_mb": storage_mb}


def ids(chosen):
    return [t["id"] for t in chosen]


def test_fills_a_worker_up_to_its_flavour_and_no_further():
    candidates = [task(i, "w1", cpu=1.5) for i in range(4)]
    assert ids(choose_dispatchable(candidates, {}, FLAVOURS, {})) == [0, 1]


def test_counts_what_already_runs():
    in_use = {"w1": Capacity(3, 1000, 100)}
    assert ids(choose_dispatchable([task(1, "w1", cpu=2), task(2, "w1", cpu=1)], in_use, FLAVOURS, {})) == [2]


def test_ram_and_storage_limit_too():
    assert ids(choose_dispatchable([task(1, "w3", ram_mb=5000)], {}, FLAVOURS, {})) == []
    assert ids(choose_dispatchable([task(1, "w3", storage_mb=501)], {}, FLAVOURS, {})) == []


def test_global_budgets_hold_across_workers():
    candidates = [task(1, "w1", cpu=3), task(2, "w2", cpu=3), task(3, "w2", cpu=1)]
    assert ids(choose_dispatchable(candidates, {}, FLAVOURS, {"cpu_max": 4})) == [1, 3]
    assert ids(choose_dispatchable(candidates, {}, FLAVOURS, {"ram_max_mb": 2500})) == [1, 2]
    assert ids(choose_dispatchable(candidates, {}, FLAVOURS, {"storage_max_mb": 150})) == [1]


def test_vm_max_limits_workers_in_use():
    candidates = [task(1, "w1"), task(2, "w2"), task(3, "w1")]
    assert ids(choose_dispatchable(candidates, {}, FLAVOURS, {"vm_max": 1})) == [1, 3]
    assert ids(choose_dispatchable(candidates, {"w2": Capacity(1, 1, 1)}, FLAVOURS, {"vm_max": 1})) == [2]


def test_a_task_whose_worker_is_gone_waits_for_replanning():
    assert ids(choose_dispatchable([task(1, "removed")], {}, FLAVOURS, {})) == []
