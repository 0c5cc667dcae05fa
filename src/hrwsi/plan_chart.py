"""Gantt chart of a plan (matplotlib, headless "Agg" backend).

One horizontal lane per worker with its task bars (one colour per routine; fixed tasks hatched grey),
and below it the use of each resource over time (CPU, RAM, storage, VMs in use) against its budget.
The lower bound is a vertical dashed line on every panel, the horizon (if any) a dotted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless; must come before pyplot

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from hrwsi.planner import Budgets, FixedTask, Plan, TaskDemand, Worker  # noqa: E402
from hrwsi.planner import usage_steps as planner_usage_steps  # noqa: E402

__all__ = ["render_gantt", "usage_steps"]

_MAX_BARS_PER_LANE = 20000  # beyond this the lane is drawn but bars are thinned (readability, speed)


def usage_steps(
    plan: Plan, tasks: Sequence[TaskDemand], fixed: Sequence[FixedTask] = ()
) -> dict[str, tuple[list[float], list[float]]]:
    """Resource use over time of a plan (see planner.usage_steps)."""
    return planner_usage_steps(plan.assignments.values(), {t.id: t for t in tasks}, fixed)


def render_gantt(
    plan: Plan,
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
    path: str = "plan.png",
    title: str | None = None,
) -> None:
    """Write a PNG (or any format matplotlib infers from ``path``) of the plan."""
    fig = _figure(plan, tasks, workers, budgets, fixed, title)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _figure(
    plan: Plan,
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask],
    title: str | None,
) -> Figure:
    lanes = [w.name for w in workers]
    for f in fixed:  # fixed tasks on workers that are gone still get a lane
        if f.worker not in lanes:
            lanes.append(f.worker)
    gantt_h = max(1.5, min(8.0, 0.35 * len(lanes) + 0.8))
    fig, axes = plt.subplots(
        5, 1, figsize=(12, gantt_h + 4 * 1.5), sharex=True,
        gridspec_kw={"height_ratios": [gantt_h, 1.5, 1.5, 1.5, 1.5]},
    )
    _draw_lanes(axes[0], plan, tasks, fixed, lanes)
    _draw_usage(axes[1:], plan, tasks, budgets, fixed)
    _draw_bounds(axes, plan.figures)
    figs = plan.figures
    ratio = figs.makespan_s / figs.lower_bound_s if figs.lower_bound_s > 0 else 1.0
    head = title or "plan"
    fig.suptitle(
        f"{head}: {len(plan.assignments)} tasks, makespan {figs.makespan_s:,.0f} s, lower bound "
        f"{figs.lower_bound_s:,.0f} s (x{ratio:.3f}), {figs.vms} VMs, {figs.vm_hours:.2f} VM-h"
        + (f", {len(plan.unplannable)} unplannable" if plan.unplannable else ""),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _draw_lanes(ax, plan: Plan, tasks: Sequence[TaskDemand], fixed: Sequence[FixedTask], lanes: list[str]) -> None:
    """One lane per worker: the planned tasks' bars coloured by routine, fixed tasks hatched grey."""
    by_id = {t.id: t for t in tasks}
    lane_of = {name: k for k, name in enumerate(lanes)}
    routines = sorted({by_id[a.task_id].routine for a in plan.assignments.values() if a.task_id in by_id})
    cmap = plt.get_cmap("tab20" if len(routines) > 10 else "tab10")
    colour = {r: cmap(k % cmap.N) for k, r in enumerate(routines)}
    per_lane: dict[int, list[tuple[float, float]]] = {}
    colours: dict[int, list] = {}
    for a in plan.assignments.values():
        t = by_id.get(a.task_id)
        lane = lane_of.get(a.worker)
        if t is None or lane is None:
            continue
        per_lane.setdefault(lane, []).append((a.start_s, max(a.end_s - a.start_s, 0.0)))
        colours.setdefault(lane, []).append(colour[t.routine])
    fixed_bars: dict[int, list[tuple[float, float]]] = {}
    for f in fixed:
        s = max(0.0, f.start_s)
        if f.end_s > s:
            fixed_bars.setdefault(lane_of[f.worker], []).append((s, f.end_s - s))
    for lane in sorted(set(per_lane) | set(fixed_bars)):
        _draw_lane(ax, lane, per_lane.get(lane, []), colours.get(lane, []), fixed_bars.get(lane, []))
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes, fontsize=8)
    ax.set_ylim(-0.6, max(len(lanes), 1) - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel("worker")
    handles = [Patch(color=colour[r], label=r) for r in routines]
    if fixed:
        handles.append(Patch(facecolor="lightgrey", edgecolor="dimgrey", hatch="//", label="fixed (running)"))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=min(len(handles), 6))
    if not plan.assignments and not fixed:
        ax.text(0.5, 0.5, "empty plan", transform=ax.transAxes, ha="center", va="center", color="grey")


def _draw_usage(axes, plan: Plan, tasks: Sequence[TaskDemand], budgets: Budgets, fixed: Sequence[FixedTask]) -> None:
    """The use of each resource over time against its budget."""
    steps = usage_steps(plan, tasks, fixed)
    limits = {
        "cpu": (budgets.cpu_max, "CPU"),
        "ram_mb": (budgets.ram_max_mb, "RAM MB"),
        "storage_mb": (budgets.storage_max_mb, "storage MB"),
        "vms": (budgets.vm_max, "VMs in use"),
    }
    for ax_r, key in zip(axes, ("cpu", "ram_mb", "storage_mb", "vms")):
        xs, ys = steps[key]
        ax_r.step(xs, ys, where="post", color="tab:blue", linewidth=0.9)
        ax_r.fill_between(xs, ys, step="post", alpha=0.25, color="tab:blue")
        cap, label = limits[key]
        if cap is not None:
            ax_r.axhline(cap, color="tab:red", linewidth=1.0, label="budget")
        ax_r.set_ylabel(label, fontsize=8)
        ax_r.set_ylim(bottom=0)


def _draw_bounds(axes, figs) -> None:
    """The lower bound (dashed) and the horizon (dotted) on every panel."""
    end = max(figs.makespan_s, figs.lower_bound_s, figs.horizon_s or 0.0) or 1.0
    for k, a in enumerate(axes):
        a.axvline(figs.lower_bound_s, color="black", linestyle="--", linewidth=1.0,
                  label="lower bound" if k == 0 else None)
        if figs.horizon_s is not None:
            a.axvline(figs.horizon_s, color="tab:purple", linestyle=":", linewidth=1.0)
        a.set_xlim(0, end * 1.02)
        a.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("seconds from now")


def stack_rows(bars: Sequence[tuple[float, float]]) -> list[int]:
    """The row of each bar (start, duration) within its worker's lane: the lowest row free at its
    start, so tasks that run at the same time on one worker are drawn on separate rows."""
    rows: list[int] = [0] * len(bars)
    row_ends: list[float] = []  # when each row is free again
    for index in sorted(range(len(bars)), key=lambda i: (bars[i][0], -bars[i][1])):
        start, duration = bars[index]
        row = next((r for r, end in enumerate(row_ends) if end <= start), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = start + max(duration, 0.0)
        rows[index] = row
    return rows


def _draw_lane(ax, lane: int, bars: list[tuple[float, float]], cols: list, fixed: list[tuple[float, float]]) -> None:
    """One worker's lane: its planned bars (one colour per routine) and fixed bars (hatched grey), each
    parallel task on a row of its own within the lane's height."""
    if len(bars) > _MAX_BARS_PER_LANE:
        step = len(bars) // _MAX_BARS_PER_LANE + 1
        bars, cols = bars[::step], cols[::step]
    every = bars + fixed
    rows = stack_rows(every)
    height = 0.8 / (max(rows, default=0) + 1)
    # One call per row and kind: thousands of bars stay one collection each.
    planned: dict[int, tuple[list, list]] = {}
    held: dict[int, list] = {}
    for k, (bar, row) in enumerate(zip(every, rows)):
        if k < len(bars):
            planned.setdefault(row, ([], []))[0].append(bar)
            planned[row][1].append(cols[k])
        else:
            held.setdefault(row, []).append(bar)
    for row, (row_bars, row_cols) in planned.items():
        ax.broken_barh(row_bars, (lane - 0.4 + row * height, height * 0.9), facecolors=row_cols,
                       edgecolors="none" if len(bars) > 200 else "black", linewidth=0.3)
    for row, row_bars in held.items():
        ax.broken_barh(row_bars, (lane - 0.4 + row * height, height * 0.9), facecolors="lightgrey",
                       edgecolors="dimgrey", hatch="//", linewidth=0.5)
