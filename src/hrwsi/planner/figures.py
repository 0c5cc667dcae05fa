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


def peak_and_mean(
    prob: Problem, assignments: dict[int, Assignment], makespan: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Peak and time-averaged use over [0, makespan] of CPU, RAM, storage and VMs in use."""
    steps = usage_steps(assignments.values(), {t.id: t for t in prob.tasks}, prob.fixed)
    peak = dict.fromkeys(USAGE_KEYS, 0.0)
    mean = dict.fromkeys(USAGE_KEYS, 0.0)
    for key, (xs, ys) in steps.items():
        peak[key] = max(ys)
        if makespan > 0:
            area = sum(ys[i] * max(0.0, min(xs[i + 1], makespan) - max(xs[i], 0.0)) for i in range(len(xs) - 1))
            mean[key] = area / makespan
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
