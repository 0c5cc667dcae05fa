"""From rounds of measurements to figures: each with its median, min and max over the rounds, its
ratio to the peer and to the floor in the same round (median and range of the per-round ratios),
its target from issue 15 and whether the target is met.

Ratios are hrwsi / other, so below 1 means hrwsi is faster (or smaller). `to_peer` is pgqueuer with
its defaults, `to_peer_tuned` pgqueuer with batch size 100, `to_peer_best` the faster of the two in
each round (the bar the targets use: pgqueuer as well as its docs allow), `to_floor` the raw
trigger/notify floor; `to_baseline` is hrwsi against itself (the same inputs without
sequential_per_tile; the fresh database for the aged one).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

PEERS = ("pgqueuer", "pgqueuer_b100")
SYSTEMS = ("hrwsi", *PEERS, "floor")
AGED = "hrwsi_aged"  # hrwsi on the aged database: its name among the latency phase's systems (scenarios.py)
RATIO_KEYS = ("to_peer", "to_peer_tuned", "to_peer_best", "to_floor", "to_baseline")
RSS_PROCESS = {"pgqueuer": "consumer", "pgqueuer_b100": "consumer", "floor": "listener"}
RSS_LIMIT_MB = 150
CHAIN_SYSTEMS = ("hrwsi", "pgqueuer", "floor")


def _get(data, *path):
    for step in path:
        if not isinstance(data, dict) or step not in data:
            return None
        data = data[step]
    return data


def stats(values: list) -> dict | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": _round(statistics.median(present)), "min": _round(min(present)), "max": _round(max(present)),
            "rounds": [_round(v) if v is not None else None for v in values]}


def _round(value: float) -> float:
    return round(value, 3) if abs(value) >= 1 else round(value, 4)


def _ratio(a, b):
    return a / b if a is not None and b else None


@dataclass(frozen=True)
class Figure:
    key: str
    description: str
    unit: str
    value: Callable[[dict, str], float | None]  # (one round, system) -> the figure
    systems: tuple[str, ...] = SYSTEMS
    target: str = ""
    check: Callable[[dict], bool | None] | None = None  # (the figure's entry) -> met?
    baseline: Callable[[dict], float | None] | None = None  # (one round) -> hrwsi's own baseline
    baseline_is: str = ""
    failure: Callable[[dict], str | None] | None = None  # (one round) -> why hrwsi's figure is missing


def _service(*path):
    return lambda r, system: _get(r, "service", system, *path)


def _latency(key: str):
    """A system's latency figure in one round: from the interleaved latency phase (since commit
    96f77c3), or from its service phase in the result files written before."""
    def value(r, system):
        if "latency" in r:
            return _get(r, "latency", "systems", system, key)
        return _get(r, "aged", "latency", key) if system == AGED else _get(r, "service", system, "latency", key)
    return value


def _rss(size: str, service: str):
    return lambda r, system: _get(r, "service", system, size, "peak_rss_mb",
                                  service if system == "hrwsi" else RSS_PROCESS[system])


def _service_failure(size: str):
    return lambda r: _get(r, "service", "hrwsi", "failed") or _get(r, "service", "hrwsi", size, "failed")


def _chain_cpu(key: str):
    return lambda r, system: _get(r, "chain", system, "cpu", key)


def _burst_growth(*path):
    """A burst's figure at the large size over the same at the small one, each system its own."""
    return lambda r, system: _ratio(_get(r, "service", system, "large", *path),
                                    _get(r, "service", system, "small", *path))


def _median_at_most(ratio: str, limit: float):
    def check(entry: dict):
        median = _get(entry, "ratios", ratio, "median")
        return None if median is None else median <= limit
    return check


def _hrwsi_at_most(limit: float):
    def check(entry: dict):
        median = _get(entry, "values", "hrwsi", "median")
        return None if median is None else median <= limit
    return check


def round_figures(sizes) -> list[Figure]:
    """The figures measured in rounds against the peer and the floor."""
    growth_limit = sizes.large / sizes.small
    return [
        Figure("latency_p50_ms", f"reaction latency p50: one input committed -> its job submitted (hrwsi, dry-run "
               f"backend); enqueue committed -> handler entered (pgqueuer); trigger -> listener -> INSERT visible "
               f"(floor); {sizes.samples} single inserts, {sizes.pause_s * 1000:.0f} ms apart", "ms",
               _latency("p50_ms"), target="<= pgqueuer's p50", check=_median_at_most("to_peer_best", 1.0)),
        Figure("latency_p99_ms", "reaction latency p99 (as latency_p50_ms)", "ms", _latency("p99_ms"),
               target="<= 2x pgqueuer's p99", check=_median_at_most("to_peer_best", 2.0)),
        Figure("latency_max_ms", "reaction latency max (as latency_p50_ms)", "ms", _latency("max_ms")),
        Figure("burst_s", f"burst: {sizes.small:,} inputs in one INSERT -> all jobs submitted (hrwsi); "
               f"{sizes.small:,} jobs enqueued in one batch -> all handlers entered (pgqueuer); "
               f"{sizes.small:,} rows in one INSERT -> reacted to (floor)", "s", _service("small", "seconds"),
               target=f"<= pgqueuer's time for {sizes.small:,} jobs", check=_median_at_most("to_peer_best", 1.0),
               failure=_service_failure("small")),
        Figure("large_burst_s", f"burst of {sizes.large:,} (as burst_s)", "s", _service("large", "seconds"),
               failure=_service_failure("large")),
        Figure("large_burst_growth", f"time for {sizes.large:,} / time for {sizes.small:,} (each system its own)",
               "x", _burst_growth("seconds"), target=f"hrwsi <= {growth_limit:g} (linear)",
               check=_hrwsi_at_most(growth_limit)),
        Figure("burst_recorded_s", f"burst of {sizes.small:,} (as burst_s) -> every outcome recorded (pgqueuer: every "
               "job acknowledged; floor: every event handled): the clock of burst_s stops at the last job's start, "
               "before the outcomes still to record (benchmarks/scenarios.py, measure_burst)", "s",
               _service("small", "recorded_s")),
        Figure("large_burst_recorded_growth", f"burst_recorded_s for {sizes.large:,} / for {sizes.small:,} (each "
               "system its own)", "x", _burst_growth("recorded_s")),
        Figure("burst_engine_cpu_ms", f"CPU of the engine per job of the {sizes.small:,} burst, from its INSERT to "
               "every outcome recorded: the system's processes and database sessions, the INSERT's included "
               "(as chain_engine_cpu_ms)", "ms", _service("small", "cpu", "engine_ms_per_job")),
        Figure("large_burst_cpu_growth", f"the engine's CPU for the {sizes.large:,} burst / for the {sizes.small:,} "
               "one (each system its own; 10 = linear work)", "x", _burst_growth("cpu", "engine_s")),
        Figure("peak_rss_orchestrator_mb", f"peak RSS of hrwsi's orchestrator process after the {sizes.large:,} "
               "burst (peer: pgqueuer's consumer process; floor: the listener process)", "MB",
               _rss("large", "orchestrator"), target=f"<= {RSS_LIMIT_MB} MB", check=_hrwsi_at_most(RSS_LIMIT_MB)),
        Figure("peak_rss_launcher_mb", f"peak RSS of hrwsi's launcher process after the {sizes.large:,} burst "
               "(peer and floor as above)", "MB", _rss("large", "launcher"), target=f"<= {RSS_LIMIT_MB} MB",
               check=_hrwsi_at_most(RSS_LIMIT_MB)),
        Figure("peak_rss_small_orchestrator_mb", f"peak RSS of the orchestrator after the {sizes.small:,} burst",
               "MB", _rss("small", "orchestrator")),
        Figure("peak_rss_small_launcher_mb", f"peak RSS of the launcher after the {sizes.small:,} burst", "MB",
               _rss("small", "launcher")),
        Figure("chain_s", f"three-step chain: {sizes.chain:,} inputs through a -> b -> c, a real subprocess "
               f"(/bin/sh writing one product file) per step, at most {sizes.parallel} at once; hrwsi: harvester, "
               "orchestrator and launcher on the local backend; pgqueuer: a handler running the same subprocess "
               "the same way and enqueueing the next step; floor: claim, run, insert the next step",
               "s", lambda r, system: _get(r, "chain", system, "seconds"), systems=CHAIN_SYSTEMS,
               target="<= pgqueuer's time", check=_median_at_most("to_peer_best", 1.0)),
        Figure("chain_engine_cpu_ms", "CPU of the engine per job of the chain: its own processes and their "
               "database sessions (hrwsi: harvester, orchestrator, launcher; pgqueuer: its consumer; floor: its "
               "listener), from the first input to the last job's end (benchmarks/cpu_time.py)", "ms",
               _chain_cpu("engine_ms_per_job"), systems=CHAIN_SYSTEMS),
        Figure("chain_subprocess_cpu_ms", "CPU of the subprocesses per job of the chain (the local backend's "
               "supervisor and the routine): the same work for every system", "ms",
               _chain_cpu("subprocess_ms_per_job"), systems=CHAIN_SYSTEMS),
        Figure("chain_machine_busy", "share of the machine's CPU busy during the chain (1 = CPU-bound: the "
               "chain's time is then its CPU divided by the cores)", "share", _chain_cpu("machine_busy"),
               systems=CHAIN_SYSTEMS),
        Figure("backfill_tiles_s", f"time-series back-fill: {sizes.backfill:,} inputs over {sizes.tiles} tiles "
               "in one INSERT -> all tasks created and planned, routine with sequential_per_tile (orchestrator only)",
               "s", lambda r, system: _get(r, "backfill", "tiles_sequential", "seconds"), systems=("hrwsi",),
               target="<= 1.5x the same inputs without sequential_per_tile", check=_median_at_most("to_baseline", 1.5),
               baseline=lambda r: _get(r, "backfill", "tiles_plain", "seconds"),
               failure=lambda r: _get(r, "backfill", "tiles_sequential", "failed"),
               baseline_is="the same inputs without sequential_per_tile"),
        Figure("backfill_one_tile_s", f"time-series back-fill: {sizes.one_tile:,} inputs on one tile (as "
               "backfill_tiles_s)", "s", lambda r, system: _get(r, "backfill", "one_tile_sequential", "seconds"),
               systems=("hrwsi",), target="<= 1.5x the same inputs without sequential_per_tile",
               check=_median_at_most("to_baseline", 1.5),
               baseline=lambda r: _get(r, "backfill", "one_tile_plain", "seconds"),
               failure=lambda r: _get(r, "backfill", "one_tile_sequential", "failed"),
               baseline_is="the same inputs without sequential_per_tile"),
        Figure("nrt_backlog_latency_p99_ms", f"reaction latency p99 of near-real-time inputs while {sizes.small:,} "
               "archive tasks are queued (their workers full, the rest planned); a slot of the NRT routine's own "
               "flavour is free", "ms", lambda r, system: _get(r, "nrt_backlog", "latency", "p99_ms"),
               systems=("hrwsi",), target="<= 50 ms", check=_hrwsi_at_most(50.0),
               baseline=lambda r: _latency("p99_ms")(r, "hrwsi"),
               failure=lambda r: _get(r, "nrt_backlog", "failed"),
               baseline_is="hrwsi's p99 on an idle system in the same round"),
        Figure("nrt_backlog_latency_p50_ms", "reaction latency p50 of near-real-time inputs under the back-fill (as "
               "nrt_backlog_latency_p99_ms)", "ms", lambda r, system: _get(r, "nrt_backlog", "latency", "p50_ms"),
               systems=("hrwsi",), target="same order as an idle system",
               baseline=lambda r: _latency("p50_ms")(r, "hrwsi"),
               baseline_is="hrwsi's p50 on an idle system in the same round"),
        Figure("aged_latency_p50_ms", f"reaction latency p50 on an aged database ({sizes.aged_tasks:,} finished "
               f"tasks, jobs and products, {4 * sizes.aged_tasks:,} history rows)", "ms",
               lambda r, system: _latency("p50_ms")(r, AGED), systems=("hrwsi",),
               target="<= 1.2x the fresh database's p50 in the same round (\"costs nothing\")",
               check=_median_at_most("to_baseline", 1.2),
               baseline=lambda r: _latency("p50_ms")(r, "hrwsi"),
               baseline_is="hrwsi's p50 on a fresh database in the same round"),
        Figure("aged_latency_p99_ms", "reaction latency p99 on the aged database", "ms",
               lambda r, system: _latency("p99_ms")(r, AGED), systems=("hrwsi",),
               baseline=lambda r: _latency("p99_ms")(r, "hrwsi"),
               baseline_is="hrwsi's p99 on a fresh database in the same round"),
    ]


def figure_entry(figure: Figure, rounds: list[dict]) -> dict:
    values = {s: stats([figure.value(r, s) for r in rounds]) for s in figure.systems}
    hrwsi = [figure.value(r, "hrwsi") for r in rounds]

    def per_round(other: Callable[[dict], float | None]) -> dict | None:
        return stats([_ratio(h, other(r)) for h, r in zip(hrwsi, rounds)])

    def peer_best(r: dict):
        present = [v for v in (figure.value(r, p) for p in PEERS if p in figure.systems) if v is not None]
        return min(present) if present else None

    ratios = {key: None for key in RATIO_KEYS}
    notes = {}
    if "pgqueuer" in figure.systems:
        ratios["to_peer"] = per_round(lambda r: figure.value(r, "pgqueuer"))
        ratios["to_peer_best"] = per_round(peer_best)
    else:
        notes["to_peer"] = notes["to_peer_best"] = "n/a: an hrwsi-only figure (pgqueuer has no such step)"
    if "pgqueuer_b100" in figure.systems:
        ratios["to_peer_tuned"] = per_round(lambda r: figure.value(r, "pgqueuer_b100"))
    else:
        notes["to_peer_tuned"] = "n/a: not measured with the tuned peer" if "pgqueuer" in figure.systems \
            else notes["to_peer"]
    if "floor" in figure.systems:
        ratios["to_floor"] = per_round(lambda r: figure.value(r, "floor"))
    else:
        notes["to_floor"] = "n/a: an hrwsi-only figure"
    for key, who in (("to_peer", "pgqueuer"), ("to_peer_tuned", "pgqueuer with batch 100"),
                     ("to_peer_best", "either pgqueuer"), ("to_floor", "the floor")):
        if ratios[key] is None and key not in notes:
            # A CPU figure of a small burst can be below /proc's 10 ms clock (the floor's 1,000 rows).
            notes[key] = f"n/a: no round had a value of {who} to divide by (missing, or 0: below the clock)"
    baseline_values = None
    if figure.baseline is not None:
        ratios["to_baseline"] = per_round(figure.baseline)
        baseline_values = stats([figure.baseline(r) for r in rounds])
        notes["to_baseline"] = figure.baseline_is
    else:
        notes["to_baseline"] = "n/a: measured against the peer and the floor"
    entry = {"description": figure.description, "unit": figure.unit, "values": values, "ratios": ratios,
             "ratio_notes": notes, "target": figure.target or None}
    if baseline_values is not None:
        entry["baseline"] = baseline_values
    entry["target_met"] = figure.check(entry) if figure.check else None
    failures = [reason for reason in (figure.failure(r) for r in rounds) if reason] if figure.failure else []
    if failures:
        # A round where hrwsi did not finish (a livelock, a timeout) is a missing value, and a target missed.
        entry["failures"] = failures
        if figure.check:
            entry["target_met"] = False
    return entry


def planner_figures(ladder: dict | None, quick: bool) -> dict:
    """Issue 15 item 6 from the planner ladder's output (run once, hrwsi alone: no peer, no floor)."""
    rows = (ladder or {}).get("rows", [])

    def plan_s(tasks: int):
        found = [r["plan_s"] for r in rows if r["instance"] == "random graph" and r["tasks"] == tasks]
        return found[0] if found else None

    # A deadline-mode row fills a given horizon with the fewest VMs on purpose: its makespan / LB is not a gap.
    makespan_rows = [r for r in rows if r.get("horizon_s") is None]
    worst = max((r["ratio"] for r in makespan_rows), default=None)
    reference = max((r["ratio"] for r in makespan_rows if r["instance"].startswith("reference")), default=None)
    # Plan time against the list scheduler of the same rules, timed in turn in the same run. (The
    # deadline-mode row searches for the fewest workers, several plans: not the same rules.)
    vs_peer = max((r["x_peer"] for r in makespan_rows if r.get("x_peer") is not None), default=None)
    why = "not measured: the ladder did not run" if ladder is None else (
        "not measured in --quick mode" if quick else "not measured by this ladder")
    specs = [
        ("planner_random_10k_s", "planner: 10,000 tasks of a random heterogeneous graph", "s", plan_s(10000), 1.0,
         "<= 1 s"),
        ("planner_random_100k_s", "planner: 100,000 tasks of a random heterogeneous graph", "s", plan_s(100000),
         15.0, "<= 15 s"),
        ("planner_worst_ratio_to_lb", "planner: worst makespan / lower bound over every ladder instance (but "
         "the deadline-mode one)", "x",
         worst, 1.03, "<= 1.03"),
        ("planner_reference_worst_ratio_to_lb", "planner: worst makespan / lower bound on the reference family",
         "x", reference, 1.01, "<= 1.01"),
        ("planner_vs_list_scheduler", "planner: worst plan time / a plain list scheduler of the same rules, "
         "same run, over every ladder instance (but the deadline-mode one)", "x", vs_peer, 2.0, "<= 2"),
    ]
    figures = {}
    for key, description, unit, value, limit, target in specs:
        figures[key] = {
            "description": description, "unit": unit,
            "values": {"hrwsi": stats([value]) if value is not None else None},
            "ratios": {k: None for k in RATIO_KEYS},
            "ratio_notes": {k: "n/a: the planner ladder runs hrwsi's planner alone, once" for k in RATIO_KEYS},
            "target": target, "target_met": None if value is None else value <= limit,
        }
        if value is None:
            figures[key]["missing"] = why
    return figures


# -- printing -----------------------------------------------------------------------------------

def _cell(summary: dict | None) -> str:
    if summary is None:
        return "-"
    if summary["min"] == summary["max"]:
        return f"{summary['median']:g}"
    return f"{summary['median']:g} [{summary['min']:g}-{summary['max']:g}]"


def _met(entry: dict) -> str:
    met = entry.get("target_met")
    return "-" if met is None else ("yes" if met else "NO")


def table(figures: dict) -> str:
    """Every figure as a text table: values (median [min-max] over rounds) and ratios."""
    head = ["figure", "unit", "hrwsi", "pgqueuer", "pgq b100", "floor", "x peer", "x best peer", "x floor",
            "x baseline", "target", "met"]
    rows = [head]
    for key, entry in figures.items():
        values, ratios = entry["values"], entry["ratios"]
        rows.append([key, entry["unit"], *(_cell(values.get(s)) for s in SYSTEMS),
                     *(_cell(ratios[k]) for k in ("to_peer", "to_peer_best", "to_floor", "to_baseline")),
                     entry.get("target") or "-", _met(entry)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """README's benchmark table: every figure, its target, the last measured value, date and machine."""
    machine = results["machine"]
    lines = [f"Last measured {results['date']} on {machine['cpus']} CPUs ({machine['platform']}), Python "
             f"{machine['python']}, PostgreSQL {machine['postgresql']}, pgqueuer {machine.get('pgqueuer', '?')}; "
             f"{results['rounds']} rounds{' (--quick)' if results['quick'] else ''}. Values are hrwsi's median "
             "[min-max] over the rounds; ratios are hrwsi / other in the same round (median [range]).",
             "", "| figure | target | hrwsi | x best pgqueuer | x floor | x baseline | met |", "|---|---|---|---|---|---|---|"]
    for key, entry in results["figures"].items():
        ratios = entry["ratios"]
        unit = entry["unit"]
        value = _cell(entry["values"].get("hrwsi"))
        value = value if value == "-" else f"{value} {unit}"
        lines.append(f"| `{key}` | {entry.get('target') or '-'} | {value} | {_cell(ratios['to_peer_best'])} | "
                     f"{_cell(ratios['to_floor'])} | {_cell(ratios['to_baseline'])} | {_met(entry)} |")
    return "\n".join(lines)
