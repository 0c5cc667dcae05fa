"""Planner ladder: plan time and makespan against the lower bound, a plain list scheduler, and planning.md.

    python benchmarks/planner_ladder.py [--out FILE.json] [--quick] [--only SUBSTRING]

Instances (benchmarks/planner_instances.py): planning.md's reference family (two worker pools, and its
deadline row), random heterogeneous graphs, random graphs with long chains, the flavour-fit family (which
task fits which worker binds), HR-WSI-like tile time series where the chain and the resource bounds are
close, and a random graph with two lanes (near-real-time with deadlines, archive).

For each instance the planner and its peer (benchmarks/list_scheduler.py: one pass of the same rules, no
classes, no reservation, no bound) run in turn, ``repeat`` times each; the figures are medians (min-max),
and each plan time comes with its ratio to the peer's in the same rounds ("x peer") and each makespan with
its ratio to the planner's lower bound ("x LB"). Times are wall seconds and CPU seconds of the process (on a
shared machine the CPU time is the figure that does not depend on what else runs; the load average is
written with the results). Every plan, the peer's too, is checked with validate_plan (not timed). Targets
(issue 15): x LB <= 1.03 on every instance (<= 1.01 on the reference family), 10,000 tasks <= 1 s and
100,000 <= 15 s, x peer <= 2 (not for deadline mode, which the peer does not have).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hrwsi.planner import LateTask, Plan, plan_tasks, validate_plan  # noqa: E402
from list_scheduler import list_schedule  # noqa: E402
from planner_instances import (  # noqa: E402
    flavour_fit_instance,
    lanes_instance,
    random_instance,
    reference_family,
    tile_series_instance,
)

# planning.md: the reference scheduler (EEA HR-WSI MatrixScheduler), smallest horizon it accepts
REFERENCE = {
    4000: {"plan_s": 0.6, "makespan_s": 3834, "lb_s": 3500, "ratio": 1.095},
    10000: {"plan_s": 3.1, "makespan_s": 9584, "lb_s": 8750, "ratio": 1.095},
    20000: {"plan_s": 12.4, "makespan_s": 19168, "lb_s": 17500, "ratio": 1.095},
}


def ladder(quick: bool) -> list[tuple]:
    """(label, size, instance maker, plan_tasks keyword arguments, reference figures, x LB target)."""
    rows: list[tuple] = []
    for n in (4000,) if quick else (4000, 10000, 20000):
        for one in (True, False):
            label = f"reference {'3/2/2 (1 task/VM)' if one else '10/10/10'}"
            rows.append((label, n, lambda n=n, one=one: reference_family(n, one), {}, REFERENCE.get(n), 1.01))
    # planning.md's first row: the reference scheduler fills a 5,750 s horizon (x1.64 LB); deadline mode
    # meets it with the fewest VMs instead (its x LB is not a target: it trades makespan for VMs)
    rows.append(("reference 3/2/2 deadline 5750", 4000, lambda: reference_family(4000, True),
                 {"horizon_s": 5750.0, "mode": "deadline"},
                 {"plan_s": "1.0-1.9", "makespan_s": 5749, "lb_s": 3500, "ratio": 1.64}, None))
    for n in (1000, 10000) if quick else (1000, 10000, 30000, 100000):
        rows.append(("random graph", n, lambda n=n: random_instance(n, seed=n), {}, None, 1.03))
    n = 2000 if quick else 10000
    rows.append(("random graph, long chains", n, lambda n=n: random_instance(n, seed=2, window=20), {}, None, 1.03))
    for n in (10000,) if quick else (10000, 100000):
        rows.append(("flavour fit", n, lambda n=n: flavour_fit_instance(n, seed=n), {}, None, 1.03))
    rows.append(("flavour fit, 40+60 workers (chain ~ fit)", 10000, lambda: flavour_fit_instance(
        10000, seed=10000, big_workers=40, small_workers=60), {}, None, 1.03))
    n = 2000 if quick else 10000
    for tiles in (8, 9):
        rows.append((f"tile series, {tiles} tiles (chain ~ CPU)", n, lambda n=n, tiles=tiles: tile_series_instance(
            n, tiles=tiles), {}, None, 1.03))
    rows.append(("lanes: 10 % NRT with deadlines", n, lambda n=n: lanes_instance(n, seed=n), {}, None, None))
    return rows


def _timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU time is the figure
    that does not depend on what else runs."""
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_one(label: str, n: int, make, kwargs: dict, reference, target, repeat: int) -> dict:
    tasks, workers, budgets = make()
    wall, cpu, peer_wall, peer_cpu, x_wall, x_cpu = [], [], [], [], [], []
    plan: Plan | None = None
    peer = None
    for _ in range(repeat):  # planner and peer in turn, so that both see the same machine
        plan, w, c = _timed(plan_tasks, tasks, workers, budgets, **kwargs)
        peer, pw, pc = _timed(list_schedule, tasks, workers, budgets)
        wall.append(w)
        cpu.append(c)
        peer_wall.append(pw)
        peer_cpu.append(pc)
        x_wall.append(w / pw)
        x_cpu.append(c / pc)
    gc.collect()
    tracemalloc.start()
    plan_tasks(tasks, workers, budgets, **kwargs)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    f = plan.figures
    peer_late = [LateTask(t.id, peer[t.id].end_s, t.deadline_s) for t in tasks
                 if t.deadline_s is not None and t.id in peer and peer[t.id].end_s > t.deadline_s + 1e-9]
    peer_plan = Plan(peer, [], f, peer_late)
    peer_makespan = max((a.end_s for a in peer.values()), default=0.0)
    lb = f.lower_bound_s
    return {
        "instance": label,
        "tasks": n,
        "plan_s": statistics.median(wall),
        "plan_s_range": [min(wall), max(wall)],
        "plan_cpu_s": _spread(cpu),
        "peer_s": statistics.median(peer_wall),
        "peer_s_range": [min(peer_wall), max(peer_wall)],
        "peer_cpu_s": _spread(peer_cpu),
        "x_peer": statistics.median(x_wall),
        "x_peer_range": [min(x_wall), max(x_wall)],
        "x_peer_cpu": _spread(x_cpu),
        "x_peer_target": None if kwargs.get("mode") == "deadline" else 2.0,
        "makespan_s": f.makespan_s,
        "lower_bound_s": lb,
        "x_lb": f.makespan_s / lb if lb else 1.0,
        "ratio": f.makespan_s / lb if lb else 1.0,  # the same, under the name benchmarks/figures.py reads
        "x_lb_target": target,
        "peer_makespan_s": peer_makespan,
        "peer_x_lb": peer_makespan / lb if lb else 1.0,
        "binding_bound": f.binding_bound,
        "lower_bound_parts": {k: round(v, 1) for k, v in f.lower_bound_parts.items()},
        "rule": f.rule,
        "vms": f.vms,
        "late": f.late_count,
        "peer_late": len(peer_late),
        "horizon_s": f.horizon_s,
        "horizon_missed_by_s": f.horizon_missed_by_s,
        "vm_hours": round(f.vm_hours, 2),
        "peak_tracemalloc_mb": round(peak / 2**20, 1),
        "unplannable": len(plan.unplannable),
        "violations": len(validate_plan(plan, tasks, workers, budgets)),
        # the peer leaves nothing out on these instances; any violation of its plan is reported too
        "peer_violations": len(validate_plan(peer_plan, tasks, workers, budgets)),
        "reference": reference,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-results/planner.json")
    ap.add_argument("--quick", action="store_true", help="a small ladder (CI smoke)")
    ap.add_argument("--only", default=None, help="only the instances whose label contains this")
    args = ap.parse_args(argv)
    rows = []
    for label, n, make, kwargs, reference, target in ladder(args.quick):
        if args.only and args.only not in label:
            continue
        repeat = 1 if args.quick else (3 if n <= 30000 else 2)
        rows.append(run_one(label, n, make, kwargs, reference, target, repeat))
        _print_row(rows[-1])
    print()
    _print_table(rows)
    peak_rss = _peak_rss_mb()
    print(f"\npeak RSS of this process: {peak_rss} MB")
    missed = [r for r in rows if r["x_lb_target"] is not None and r["x_lb"] > r["x_lb_target"] + 1e-9]
    slow = [r for r in rows if _slow(r, r["plan_s"], r["x_peer"])]
    slow_cpu = [r for r in rows if _slow(r, r["plan_cpu_s"]["median"], r["x_peer_cpu"]["median"])]
    print(f"x LB targets missed: {len(missed)}; time targets (x peer <= 2, 10k <= 1 s, 100k <= 15 s) missed: "
          f"{len(slow)} in wall time, {len(slow_cpu)} in CPU time (load average {_load()})")
    out = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": _load()},
        "quick": args.quick,
        "rows": rows,
        "peak_rss_mb": peak_rss,
        "x_lb_targets_missed": [(r["instance"], r["tasks"]) for r in missed],
        "time_targets_missed": [(r["instance"], r["tasks"]) for r in slow],
        "time_targets_missed_cpu": [(r["instance"], r["tasks"]) for r in slow_cpu],
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    bad = [r for r in rows if r["violations"] or r["unplannable"] or r["peer_violations"]]
    return 1 if bad else 0


def _slow(r: dict, seconds: float, x_peer: float) -> bool:
    over_peer = r["x_peer_target"] is not None and x_peer > r["x_peer_target"]
    return over_peer or (r["tasks"] == 10000 and seconds > 1.0) or (r["tasks"] == 100000 and seconds > 15.0)


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except Exception:  # pragma: no cover - not on every platform
        return None


def _print_row(r: dict) -> None:
    print(f"  {r['instance']:<40} {r['tasks']:>7} tasks: {r['plan_s']:.3f} s (x{r['x_peer']:.2f} peer "
          f"{r['peer_s']:.3f} s; CPU {r['plan_cpu_s']['median']:.3f} s, x{r['x_peer_cpu']['median']:.2f}), "
          f"makespan {r['makespan_s']:.1f}, LB {r['lower_bound_s']:.1f} ({r['binding_bound']}), "
          f"x{r['x_lb']:.4f} LB (peer x{r['peer_x_lb']:.4f}), rule {r['rule']}, {r['vms']} VMs, "
          f"{r['late']} late (peer {r['peer_late']}), {r['violations']}+{r['peer_violations']} violations", flush=True)


def _print_table(rows: list[dict]) -> None:
    head = (f"| {'instance':<40} | {'tasks':>7} | {'plan s':>6} | {'CPU s':>6} | {'peer s':>6} | {'x peer':>6} | "
            f"{'CPU x peer':>10} | {'makespan':>10} | {'LB':>10} | {'x LB':>6} | {'peer x LB':>9} | {'mem MB':>6} | "
            f"{'ref plan s':>10} | {'ref x LB':>8} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ref = r["reference"] or {}
        print(f"| {r['instance']:<40} | {r['tasks']:>7} | {r['plan_s']:>6.3f} | {r['plan_cpu_s']['median']:>6.3f} | "
              f"{r['peer_s']:>6.3f} | {r['x_peer']:>6.2f} | {r['x_peer_cpu']['median']:>10.2f} | "
              f"{r['makespan_s']:>10.1f} | {r['lower_bound_s']:>10.1f} | {r['x_lb']:>6.4f} | {r['peer_x_lb']:>9.4f} | "
              f"{r['peak_tracemalloc_mb']:>6.1f} | {ref.get('plan_s', '-'):>10} | {ref.get('ratio', '-'):>8} |")


if __name__ == "__main__":
    sys.exit(main())
