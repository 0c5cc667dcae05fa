"""The current schedule as a Gantt chart: pure layout, drawn as SVG by the plan page's template.

Each worker gets as many rows as it runs tasks at once (interval partitioning: a task takes the
lowest row free at its start), so parallel tasks of one worker never sit on top of each other.
Below the workers, the resources in use over time (from `planner.usage_steps`) as a share of what
the active workers offer, capped by the budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hrwsi import planner

ROW_H = 18
ROW_GAP = 2
LANE_GAP = 8
LABEL_W = 190
USAGE_H = 90
AXIS_H = 22


def assign_rows(intervals: Iterable[tuple[int, float, float]]) -> dict[int, int]:
    """{id: row} for (id, start, end) intervals so that no two overlapping intervals share a row,
    using as few rows as the most intervals open at one instant (greedy by start time)."""
    rows: dict[int, int] = {}
    busy: list[tuple[float, int]] = []  # (end, row) of rows in use
    free: list[int] = []
    next_row = 0
    for item_id, start, end in sorted(intervals, key=lambda i: (i[1], i[2], i[0])):
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            row = heapq.heappop(free)
        else:
            row, next_row = next_row, next_row + 1
        rows[item_id] = row
        heapq.heappush(busy, (max(end, start), row))
    return rows


@dataclass
class Bar:
    task_id: int
    routine: str
    state: str
    x: float
    y: float
    w: float
    colour: int
    title: str


@dataclass
class Lane:
    worker: str
    flavour: str
    active: bool
    y: float
    h: float
    rows: int
    tasks: int
    peak_cpu: float
    cpu: float


@dataclass
class Chart:
    width: int
    height: int
    plot_x: float
    plot_w: float
    start: datetime
    end: datetime
    now_x: float
    lanes: list[Lane] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    usage_y: float = 0.0
    usage: dict[str, str] = field(default_factory=dict)  # resource -> SVG polyline points
    usage_peak: dict[str, float] = field(default_factory=dict)  # resource -> peak share of capacity
    routines: list[str] = field(default_factory=list)
    # The zone of the axis's labels and of the bars' titles, said on the axis: its labels read as
    # local times otherwise, when the titles said UTC (found by exploratory testing).
    zone: str = "UTC"


def _tick_step(span_s: float) -> float:
    for step in (60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if span_s / step <= 12:
            return step
    return 30 * 86400


def _capacity(workers: Sequence, budget) -> dict[str, float]:
    active = [w for w in workers if w["active"]]
    capacity = {"cpu": sum(w["cpu"] for w in active), "ram_mb": float(sum(w["ram_mb"] for w in active)),
                "vms": float(len(active))}
    limits = {"cpu": budget and budget["cpu_max"], "ram_mb": budget and budget["ram_max_mb"],
              "vms": budget and budget["vm_max"]}
    return {k: min(v, float(limits[k])) if limits[k] else v for k, v in capacity.items()}


def layout(schedule: Sequence, workers: Sequence, budget, now: datetime, width: int = 1200) -> Chart:
    """The chart of `schedule` rows (id, routine, state, worker, start_at, end_at, cpu, ram_mb,
    storage_mb), on `workers` rows (name, flavour, active, cpu, ram_mb, disk_mb)."""
    items = [r for r in schedule if r["start_at"] is not None and r["end_at"] is not None]
    start = min([now - timedelta(minutes=5), *(r["start_at"] for r in items)])
    end = max([now + timedelta(minutes=30), *(r["end_at"] for r in items)])
    span = max((end - start).total_seconds(), 1.0)
    plot_w = width - LABEL_W - 10

    def x_of(at: datetime) -> float:
        return LABEL_W + (at - start).total_seconds() / span * plot_w

    routines = sorted({r["routine"] for r in items})
    colour = {name: index % 10 for index, name in enumerate(routines)}
    by_worker: dict[str, list] = {}
    for r in items:
        by_worker.setdefault(r["worker"], []).append(r)
    known = {w["name"]: w for w in workers}
    names = sorted(set(known) | set(by_worker))
    chart = Chart(width, 0, LABEL_W, plot_w, start, end, x_of(now), routines=routines)
    y = AXIS_H
    demands = {r["id"]: planner.TaskDemand(r["id"], r["routine"], r["cpu"], r["ram_mb"], r["storage_mb"],
                                           max((r["end_at"] - r["start_at"]).total_seconds(), 0.001))
               for r in items}
    for name in names:
        tasks = by_worker.get(name, [])
        rows = assign_rows((r["id"], (r["start_at"] - start).total_seconds(), (r["end_at"] - start).total_seconds())
                           for r in tasks)
        count = max(rows.values(), default=-1) + 1
        height = max(count, 2) * (ROW_H + ROW_GAP)  # at least two rows: the label has two lines
        worker = known.get(name, {"flavour": "?", "active": False, "cpu": 0.0})
        peak = planner.usage_steps(
            [planner.Assignment(r["id"], name, (r["start_at"] - start).total_seconds(),
                                (r["end_at"] - start).total_seconds()) for r in tasks], demands)["cpu"][1]
        chart.lanes.append(Lane(name, worker["flavour"], worker["active"], y, height, count, len(tasks),
                                max(peak, default=0.0), worker["cpu"]))
        for r in tasks:
            x0, x1 = x_of(r["start_at"]), x_of(r["end_at"])
            chart.bars.append(Bar(r["id"], r["routine"], r["state"], x0, y + rows[r["id"]] * (ROW_H + ROW_GAP),
                                  max(x1 - x0, 2.0), colour[r["routine"]],
                                  f"task {r['id']} {r['routine']} ({r['state']}) on {name}: "
                                  f"{r['start_at'].astimezone(UTC):%H:%M:%S} - {r['end_at'].astimezone(UTC):%H:%M:%S} "
                                  f"UTC, {r['cpu']:g} CPU, {r['ram_mb']} MB" + _overdue(r, now)))
        y += height + LANE_GAP
    chart.usage_y = y + 6
    _usage(chart, items, start, demands, _capacity(workers, budget), x_of)
    chart.height = int(chart.usage_y + USAGE_H + AXIS_H)
    step = _tick_step(span)
    first = start.timestamp() // step * step + step
    # (in UTC whatever the zone of `now` or of the rows: they were in that of the earliest)
    chart.ticks = [(x_of(datetime.fromtimestamp(t, UTC)),
                    datetime.fromtimestamp(t, UTC).strftime("%H:%M" if step < 86400 else "%m-%d"))
                   for t in _frange(first, end.timestamp(), step)]
    return chart


def _overdue(row, now: datetime) -> str:
    """A bar's title, of a task whose expected end passed (a running task that overran): when, and by how long.
    Its bar is drawn to now, and its title gave now as its end (found by review; `hrwsi plan show` says so too,
    by the same rule: reports.overdue_s)."""
    from hrwsi.reports import duration_said, overdue_s

    late = overdue_s(row.get("expected_end"), now)
    if late is None:
        # (a task not started whose planned start passed waits for capacity: it read "overdue", as if it ran late)
        if row.get("start_passed_at") is not None:
            return (f"; not started, its planned start passed at {row['start_passed_at'].astimezone(UTC):%H:%M:%S} UTC "
                    f"({duration_said((now - row['start_passed_at']).total_seconds())} ago): expected to end at "
                    f"{row['expected_end'].astimezone(UTC):%H:%M:%S} UTC at the earliest")
        return ""
    return f"; its expected end passed at {row['expected_end'].astimezone(UTC):%H:%M:%S} UTC: overdue by {duration_said(late)}"


def _frange(first: float, last: float, step: float) -> Iterable[float]:
    value = first
    while value <= last:
        yield value
        value += step


def _usage(chart: Chart, items: Sequence, start: datetime, demands, capacity: dict[str, float], x_of) -> None:
    assignments = [planner.Assignment(r["id"], r["worker"], (r["start_at"] - start).total_seconds(),
                                      (r["end_at"] - start).total_seconds()) for r in items]
    steps = planner.usage_steps(assignments, demands)
    for key in ("cpu", "ram_mb", "vms"):
        times, values = steps[key]
        limit = capacity.get(key) or 0.0
        if not limit:
            continue
        points = []
        for index, (t, v) in enumerate(zip(times, values)):
            x = x_of(start + timedelta(seconds=t))
            x_next = x_of(start + timedelta(seconds=times[index + 1])) if index + 1 < len(times) else chart.plot_x + chart.plot_w
            y = chart.usage_y + USAGE_H - min(v / limit, 1.2) / 1.2 * USAGE_H
            points += [f"{x:.1f},{y:.1f}", f"{x_next:.1f},{y:.1f}"]
        chart.usage[key] = " ".join(points)
        chart.usage_peak[key] = max(values, default=0.0) / limit
