"""What a plan uses: resource use over time (step functions), its peak and time average, and the workers
it keeps busy (how many, for how long)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hrwsi.planner.model import Assignment, FixedTask, TaskDemand
from hrwsi.planner.problem import Problem
from hrwsi.planner.schedule import Schedule

USAGE_KEYS = ("cpu", "ram_mb", "storage_mb", "vms")


def usage_steps(
    assignments: Iterable[Assignment], demands: Mapping[int, TaskDemand], fixed: Sequence[FixedTask] = ()
) -> dict[str, tuple[list[float], list[float]]]:
    """Step functions (times, values) of "cpu", "ram_mb", "storage_mb" and "vms" in use over time,
    counting planned and fixed tasks (fixed tasks from t=0). values[i] holds from times[i] to times[i+1]."""
    ev: list[tuple[float, int, float, float, float, str]] = []
    for a in assignments:
        t = demands.get(a.task_id)
        if t is None or a.end_s <= a.start_s:
            continue
        ev.append((a.start_s, 1, t.cpu, t.ram_mb, t.storage_mb, a.worker))
        ev.append((a.end_s, -1, t.cpu, t.ram_mb, t.storage_mb, a.worker))
    for f in fixed:
        s = max(0.0, f.start_s)
        if f.end_s <= s:
            continue
        ev.append((s, 1, f.cpu, f.ram_mb, f.storage_mb, f.worker))
        ev.append((f.end_s, -1, f.cpu, f.ram_mb, f.storage_mb, f.worker))
    ev.sort(key=lambda e: (e[0], e[1]))
    out: dict[str, tuple[list[float], list[float]]] = {k: ([0.0], [0.0]) for k in USAGE_KEYS}
    use = [0.0, 0.0, 0.0, 0.0]
    cnt: dict[str, int] = {}
    k = 0
    while k < len(ev):
        t = ev[k][0]
        while k < len(ev) and ev[k][0] == t:
            _t, sign, c, r, st, w = ev[k]
            use[0] += sign * c
            use[1] += sign * r
            use[2] += sign * st
            before = cnt.get(w, 0)
            cnt[w] = before + sign
            if before == 0 and sign > 0:
                use[3] += 1
            elif before == 1 and sign < 0:
                use[3] -= 1
            k += 1
        for i, key in enumerate(USAGE_KEYS):
            xs, ys = out[key]
            xs.append(t)
            ys.append(use[i])
    return out


def peak_and_mean(prob: Problem, sch: Schedule) -> tuple[dict[str, float], dict[str, float]]:
    """Peak (noted by the scheduler at each event) and time-averaged use over [0, makespan] of CPU, RAM,
    storage and VMs in use, fixed tasks included (``sch.vm_seconds`` must be known)."""
    makespan = sch.makespan
    peak = dict(zip(USAGE_KEYS, sch.peak))
    mean = dict.fromkeys(USAGE_KEYS, 0.0)
    if makespan <= 0:
        return peak, mean
    area = [0.0, 0.0, 0.0]
    cpu, ram, st, dur, start = prob.cpu, prob.ram, prob.st, prob.dur, sch.start
    for i in prob.plannable:
        if start[i] is not None:
            d = dur[i]
            area[0] += cpu[i] * d
            area[1] += ram[i] * d
            area[2] += st[i] * d
    for f in prob.fixed:
        d = max(0.0, min(f.end_s, makespan) - max(f.start_s, 0.0))
        area[0] += f.cpu * d
        area[1] += f.ram_mb * d
        area[2] += f.storage_mb * d
    for key, a in zip(USAGE_KEYS, area):
        mean[key] = a / makespan
    mean["vms"] = sch.vm_seconds / makespan
    return peak, mean


def vm_usage(prob: Problem, sch: Schedule) -> tuple[int, float]:
    """Distinct workers used (planned or fixed, after t=0) and their busy seconds (union of intervals)."""
    iv: dict[str, list[tuple[float, float]]] = {}
    names = [w.name for w in prob.workers]
    dur = prob.dur
    for i in prob.plannable:
        s = sch.start[i]
        if s is None:
            continue
        iv.setdefault(names[sch.worker[i]], []).append((s, s + dur[i]))
    for f in prob.fixed:
        if f.end_s > 0 and f.end_s > f.start_s:
            iv.setdefault(f.worker, []).append((max(0.0, f.start_s), f.end_s))
    return len(iv), sum(_union_length(lst) for lst in iv.values())


def _union_length(intervals: list[tuple[float, float]]) -> float:
    intervals.sort()
    total = 0.0
    cs, ce = intervals[0]
    for s, e in intervals[1:]:
        if s > ce:
            total += ce - cs
            cs, ce = s, e
        elif e > ce:
            ce = e
    return total + ce - cs
