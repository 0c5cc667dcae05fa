"""`make bench`: hrwsi's speed figures, printed and written to bench-results/bench.json.

- latency: one input inserted (committed) -> its job submitted to the backend, p50/p99 over many
  single inserts, with orchestrator and launcher running (dry-run backend: completes at once);
- burst: 10,000 inputs inserted in ONE statement -> all planned and dispatched;
- planner ladder: benchmarks/planner_ladder.py (planning time and makespan / lower bound).

The database is a fresh embedded PostgreSQL with default settings (or HRWSI_DATABASE_URL's server).
Targets on a 2-core machine: p50 <= 10 ms, p99 <= 50 ms; 10,000 inputs <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psycopg

from hrwsi import migrations
from hrwsi.app import App
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.configuration import load
from hrwsi.database import create_database, drop_database, start_embedded, with_database
from hrwsi.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = {
    "flavour": [{"name": "big", "cpu": 64, "ram_mb": 256000, "disk_mb": 1000000}],
    "worker": [{"prefix": "w", "count": 10, "flavour": "big"}],
    "budget": {"cpu_max": 640, "ram_max_mb": 2560000, "storage_max_mb": 10000000, "vm_max": 10},
    "routine": [{"name": "bench", "cpu": 1, "ram_mb": 1000, "storage_mb": 1000, "expected_duration_s": 60,
                 "command": ["true"], "input_product_type": "RAW", "output_product_type": "DONE"}],
    "condition": [{"name": "raw", "routine": "bench"}],
}


class TimedBackend(DryRunBackend):
    """The dry-run backend, noting when each job reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted_at: dict[int, float] = {}
        self.all_submitted = asyncio.Event()
        self.expected = 0

    async def submit(self, spec):
        self.submitted_at[spec.task_id] = time.perf_counter()
        if self.expected and len(self.submitted_at) >= self.expected:
            self.all_submitted.set()
        return await super().submit(spec)


def fresh_database(server_url: str, name: str) -> str:
    url = create_database(server_url, name)
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
        conn.autocommit = True
        load(conn, CONFIGURATION)
    return url


async def with_services(url: str, work):
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="hrwsi-bench-")), backstop_poll_s=5.0)
    backend = TimedBackend()
    async with App(url, ["orchestrator", "launcher"], settings, backend=backend, pool_size=8):
        await asyncio.sleep(0.5)  # listeners connected, first catch-up done
        return await work(backend)


async def measure_latency(url: str, samples: int) -> dict:
    async def work(backend: TimedBackend):
        conn = await asyncpg.connect(url)
        latencies = []
        try:
            for index in range(samples):
                committed = time.perf_counter()
                input_id = await conn.fetchval(
                    "INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('raw', $1) RETURNING id",
                    f"/latency/{index}")
                committed = time.perf_counter()  # autocommit: the row is committed when the call returns
                task_id = None
                deadline = committed + 5.0
                while time.perf_counter() < deadline:
                    if task_id is None:
                        task_id = await conn.fetchval(
                            "SELECT id FROM hrwsi.processing_task WHERE input_id = $1", input_id)
                    if task_id is not None and task_id in backend.submitted_at:
                        latencies.append((backend.submitted_at[task_id] - committed) * 1000)
                        break
                    await asyncio.sleep(0.0005)
                await asyncio.sleep(0.01)  # let the services go idle: single inputs, not a burst
        finally:
            await conn.close()
        return latencies

    latencies = await with_services(url, work)
    latencies.sort()
    return {
        "samples": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "max_ms": round(latencies[-1], 2),
        "target_p50_ms": 10, "target_p99_ms": 50,
    }


async def measure_burst(url: str, count: int) -> dict:
    async def work(backend: TimedBackend):
        backend.expected = count
        conn = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            await conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                                  SELECT 'raw', '/burst/' || g FROM generate_series(1, $1::int) g""", count)
            inserted = time.perf_counter()
            await asyncio.wait_for(backend.all_submitted.wait(), 120)
            dispatched = time.perf_counter()
            planned_by = await conn.fetchval("SELECT max(created_at) - min(created_at) FROM hrwsi.plan")
        finally:
            await conn.close()
        return {"inputs": count, "insert_s": round(inserted - started, 3),
                "all_dispatched_s": round(dispatched - started, 3),
                "planning_rounds_span_s": planned_by.total_seconds() if planned_by else 0.0, "target_s": 5}

    return await with_services(url, work)


def planner_ladder(quick: bool) -> dict | None:
    script = ROOT / "benchmarks" / "planner_ladder.py"
    if not script.exists():
        return None
    out = ROOT / "bench-results" / "planner.json"
    args = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if quick else [])
    subprocess.run(args, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller planner ladder")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.burst = 50, 2_000

    external = os.environ.get("HRWSI_DATABASE_URL")
    base = Path(tempfile.mkdtemp(prefix="hrwsi-bench-pg-", dir="/tmp"))
    server = external or start_embedded(base / "pgdata", "postgres", keep_running=False)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()}}
    with psycopg.connect(with_database(server, "postgres")) as conn:
        results["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    try:
        for key, measure in (("latency", lambda url: measure_latency(url, args.samples)),
                             ("burst", lambda url: measure_burst(url, args.burst))):
            name = f"hrwsi_bench_{uuid.uuid4().hex[:8]}"
            results[key] = asyncio.run(measure(fresh_database(server, name)))
            drop_database(server, name)
    finally:
        pass  # the embedded server (keep_running=False) stops when this process exits
    results["planner"] = planner_ladder(args.quick)

    latency, burst = results["latency"], results["burst"]
    print(f"insert -> job submitted, {latency['samples']} single inputs: p50 {latency['p50_ms']} ms "
          f"(target <= 10), p99 {latency['p99_ms']} ms (target <= 50), max {latency['max_ms']} ms")
    print(f"{burst['inputs']} inputs in one INSERT -> all planned and dispatched: {burst['all_dispatched_s']} s "
          f"(target <= 5 s; the INSERT itself {burst['insert_s']} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
