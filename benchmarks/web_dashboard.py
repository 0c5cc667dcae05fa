"""How responsive the dashboard is with 1,000,000 tasks: page and API response times.

A fresh database (the embedded server, or HRWSI_DATABASE_URL's) receives a production-like history,
written with a few set-based INSERTs through every trigger (history, notifications): a three-step
chain (L1C -> L2A -> FSC, 40/35/25 % of the tasks), each task chained from its parent's product and
numbered in time order across the steps; 30 days of work (processed, 1 % terminated, 0.5 %
cancelled) and, at the newest end, pending, planned (on 10 workers), running and held tasks; one job
per attempted task, one product per processed task, alerts and operator actions. Then VACUUM
ANALYZE (as autovacuum would), and `hrwsi web` (the real service, in this process) answers each
page, each read uncached (the overview's shared snapshot is dropped before every request).

    python benchmarks/web_dashboard.py [--tasks 1000000] [--requests 10] [--out bench-results/web.json]

Prints, per page: p50 and max in ms over --requests requests (after one warm-up), and writes JSON.
Target: every page and API call under 1 s at 1,000,000 tasks on 2 cores; the pages people open most
(overview, first page of tasks, a task) well under that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg

from hrwsi import migrations
from hrwsi.configuration import load
from hrwsi.database import create_database, create_pool, drop_database, start_embedded, stop_embedded
from hrwsi.settings import Settings
from hrwsi.web.config import WebSettings
from hrwsi.web.service import WebService

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = {
    "flavour": [{"name": "large", "cpu": 8, "ram_mb": 32000, "disk_mb": 200000}],
    "worker": [{"prefix": "w", "count": 10, "flavour": "large"}],
    "budget": {"cpu_max": 80, "ram_max_mb": 320000, "storage_max_mb": 2000000, "vm_max": 10},
    "routine": [
        {"name": "atmospheric_correction", "cpu": 2, "ram_mb": 4000, "storage_mb": 1000, "expected_duration_s": 300,
         "command": ["true"], "input_product_type": "L1C", "output_product_type": "L2A"},
        {"name": "snow_cover", "cpu": 1, "ram_mb": 2000, "storage_mb": 500, "expected_duration_s": 60,
         "command": ["true"], "input_product_type": "L2A", "output_product_type": "FSC"},
        {"name": "quicklook", "cpu": 0.5, "ram_mb": 500, "storage_mb": 100, "expected_duration_s": 20,
         "command": ["true"], "input_product_type": "FSC", "output_product_type": "QUICKLOOK"},
    ],
    "condition": [{"name": "l1c", "routine": "atmospheric_correction"}, {"name": "l2a", "routine": "snow_cover"},
                  {"name": "fsc", "routine": "quicklook"}],
}
STAGES = (("l1c", "atmospheric_correction", "L2A", 0.40), ("l2a", "snow_cover", "FSC", 0.35),
          ("fsc", "quicklook", "QUICKLOOK", 0.25))

# Stage 1: L1C scenes over 30 days, on 208 tiles.
FIRST_INPUTS = """
INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at, created_at)
SELECT 'l1c', format('/eodata/S2%%s_MSIL1C_%%s_T%%s_%%s.SAFE', m, to_char(at, 'YYYYMMDD"T"HH24MISS'), tile, g),
       tile, 'S2' || m, at - interval '3 hours', at - interval '1 hour', at
FROM generate_series(1, %(n)s) g,
     LATERAL (SELECT (30 + g %% 8)::text || 'T' || chr(65 + (g / 8) %% 26) || 'R' AS tile,
                     CASE WHEN g %% 2 = 0 THEN 'A' ELSE 'B' END AS m,
                     now() - interval '30 days' + (g::float8 / %(n)s) * interval '30 days' AS at) s
"""
# Later stages: one input per product of the stage before, chained from it.
CHAINED_INPUTS = """
INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at, created_at,
                         source, product_id)
SELECT %(condition)s, p.path, i.tile, i.mission, i.measured_at, i.published_at, p.created_at, 'chaining', p.id
FROM hrwsi.product p
JOIN hrwsi.processing_task t ON t.id = p.task_id
JOIN hrwsi.input i ON i.id = t.input_id
WHERE t.routine = %(parent)s
ORDER BY p.id
LIMIT %(n)s
"""
# The newest tasks are still open (at 1,000,000 tasks: 2,000 pending, 3,000 planned, 40 running, 500
# held per routine); the others ended (1 % terminated, 0.5 % cancelled).
#
# Task ids follow time across the three steps, as in production (a scene's L2A task is created
# minutes after its L1C task, not after every L1C task): the L1C task of scene g is 3g, its
# snow-cover task 3g + 1, its quicklook task 3g + 2 (explicit ids; the sequence is moved after).
TASKS = """
INSERT INTO hrwsi.processing_task (id, input_id, routine, state, worker, planned_start, planned_end, attempts,
                                   failures, created_at, updated_at)
OVERRIDING SYSTEM VALUE
SELECT coalesce((SELECT p.task_id + 1 FROM hrwsi.product p WHERE p.id = i.product_id), 3 * i.id),
       i.id, %(routine)s, s.state,
       CASE WHEN s.state IN ('planned', 'running') THEN 'w' || lpad((1 + r %% 10)::text, 2, '0') END,
       CASE WHEN s.state = 'planned' THEN now() + (r - %(pending)s) / 10 * interval '150 s'
            WHEN s.state = 'running' THEN now() - interval '2 minutes' END,
       CASE WHEN s.state = 'planned' THEN now() + (r - %(pending)s) / 10 * interval '150 s' + interval '5 minutes'
            WHEN s.state = 'running' THEN now() + interval '3 minutes' END,
       CASE WHEN s.state IN ('processed', 'terminated', 'cancelled', 'running') THEN 1 ELSE 0 END,
       CASE WHEN s.state = 'terminated' THEN 3 ELSE 0 END,
       i.created_at, i.created_at + interval '5 minutes'
FROM (SELECT id, created_at, product_id, row_number() OVER (ORDER BY id DESC) - 1 AS r
      FROM hrwsi.input WHERE processing_condition = %(condition)s) i,
     LATERAL (SELECT CASE WHEN r < %(pending)s THEN 'pending' WHEN r < %(planned)s THEN 'planned'
                          WHEN r < %(running)s THEN 'running' WHEN r < %(held)s THEN 'on_hold'
                          WHEN i.id %% 97 = 0 THEN 'terminated'
                          WHEN i.id %% 211 = 0 THEN 'cancelled' ELSE 'processed' END AS state) s
"""
JOBS = """
INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, exit_code, message, owner, log_path,
                       output_dir, submitted_at, started_at, finished_at)
SELECT t.id, 1, 'local', 'hrwsi-' || replace(t.routine, '_', '-') || '-' || t.id || '-1',
       coalesce(t.worker, 'w' || lpad((1 + t.id %% 10)::text, 2, '0')),
       CASE t.state WHEN 'processed' THEN 'processed' WHEN 'terminated' THEN 'internal_error'
                    WHEN 'cancelled' THEN 'cancelled' ELSE 'running' END,
       CASE t.state WHEN 'processed' THEN 0 WHEN 'terminated' THEN 1 END,
       CASE t.state WHEN 'processed' THEN 'exit code 0' WHEN 'terminated' THEN 'exit code 1'
                    WHEN 'cancelled' THEN 'cancelled by an operator' ELSE 'pid 4242' END,
       'launcher-bench', '/srv/hrwsi/data/logs/' || t.routine || '/' || t.id || '.log',
       '/srv/hrwsi/data/products/' || t.routine || '/task-' || t.id,
       t.updated_at - interval '4 minutes', t.updated_at - interval '3 minutes',
       CASE WHEN t.state <> 'running' THEN t.updated_at END
FROM hrwsi.processing_task t
WHERE t.routine = %(routine)s AND t.state IN ('processed', 'terminated', 'cancelled', 'running')
"""
PRODUCTS = """
INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes, created_at, chained_at)
SELECT t.id, '/srv/hrwsi/data/products/' || t.routine || '/task-' || t.id || '/attempt-1/out.json', %(type)s,
       40000 + t.id %% 9000, t.updated_at, t.updated_at
FROM hrwsi.processing_task t
WHERE t.routine = %(routine)s AND t.state = 'processed'
"""
EXTRAS = """
INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine, created_at, sent_at)
SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', t.id, t.routine), 'failed 3 times', t.id,
       t.routine, t.updated_at, t.updated_at + interval '1 minute'
FROM hrwsi.processing_task t WHERE t.state = 'terminated';
INSERT INTO hrwsi.operator_action (actor, via, action, target, succeeded, outcome, at)
SELECT 'alice', 'web', 'retry_task', t.id::text, true, 'retried', t.updated_at
FROM hrwsi.processing_task t WHERE t.state = 'terminated' LIMIT 1000;
INSERT INTO hrwsi.service_instance (id, kind, host, pid)
SELECT kind || '-bench-' || n, kind, 'bench', n FROM unnest(ARRAY['harvester', 'orchestrator', 'launcher']) kind,
       generate_series(1, 2) n;
"""


def populate(url: str, tasks: int) -> dict[str, float]:
    """Write the history; returns seconds per part."""
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        load(conn, CONFIGURATION)
        # Tasks are written here with their end state; the trigger that creates a pending task per
        # new input (as production does) is off meanwhile.
        conn.execute("ALTER TABLE hrwsi.input DISABLE TRIGGER input_create_tasks")
        parent = None
        for condition, routine, product_type, share in STAGES:
            n = int(tasks * share)
            started = time.perf_counter()
            if parent is None:
                conn.execute(FIRST_INPUTS, {"n": n})
            else:
                conn.execute(CHAINED_INPUTS, {"condition": condition, "parent": parent, "n": n})
            scale = min(1.0, n / 400_000)  # fewer open tasks in a smaller run
            conn.execute(TASKS, {"routine": routine, "condition": condition, "pending": int(2000 * scale),
                                 "planned": int(5000 * scale), "running": int(5040 * scale),
                                 "held": int(5540 * scale)})
            conn.execute(JOBS, {"routine": routine})
            conn.execute(PRODUCTS, {"routine": routine, "type": product_type})
            timings[routine] = round(time.perf_counter() - started, 1)
            print(f"  {routine}: {n:,} inputs, tasks, jobs, products in {timings[routine]} s", flush=True)
            parent = routine
        conn.execute("SELECT setval(pg_get_serial_sequence('hrwsi.processing_task', 'id'), max(id)) "
                     "FROM hrwsi.processing_task")
        conn.execute(EXTRAS)
        conn.execute("ALTER TABLE hrwsi.input ENABLE TRIGGER input_create_tasks")
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = round(time.perf_counter() - started, 1)
        counts = conn.execute("""SELECT (SELECT count(*) FROM hrwsi.processing_task), (SELECT count(*) FROM hrwsi.job),
                                        (SELECT count(*) FROM hrwsi.product), (SELECT count(*) FROM hrwsi.task_event)
                              """).fetchone()
    print(f"  {counts[0]:,} tasks, {counts[1]:,} jobs, {counts[2]:,} products, {counts[3]:,} history rows; "
          f"VACUUM ANALYZE {timings['vacuum_analyze']} s", flush=True)
    return timings | {"tasks": counts[0], "jobs": counts[1], "products": counts[2], "task_events": counts[3]}


def pages(url: str) -> list[tuple[str, str]]:
    """(label, path) of what is measured, with ids read from the database."""
    with psycopg.connect(url) as conn:
        middle = conn.execute("SELECT (min(id) + max(id)) / 2 FROM hrwsi.processing_task").fetchone()[0]
        chained = conn.execute("""SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                                  WHERE t.routine = 'snow_cover' AND t.state = 'processed' AND i.product_id IS NOT NULL
                                  ORDER BY t.id LIMIT 1""").fetchone()[0]
        tile = conn.execute("SELECT tile FROM hrwsi.input WHERE tile IS NOT NULL LIMIT 1").fetchone()[0]
        scene = conn.execute("SELECT input_path FROM hrwsi.input WHERE processing_condition = 'l1c' "
                             "ORDER BY id LIMIT 1 OFFSET 1000").fetchone()[0].rsplit("_", 1)[-1]
    return [
        ("overview (uncached)", "/"),
        ("api overview (uncached)", "/api/overview"),
        ("tasks, first page", "/tasks"),
        ("tasks, a page deep in the history", f"/tasks?before={middle}"),
        ("tasks, state terminated (1 %)", "/tasks?state=terminated"),
        ("tasks, routine + state processed", "/tasks?routine=snow_cover&state=processed"),
        ("tasks, state pending", "/tasks?state=pending"),
        ("tasks, one tile", f"/tasks?tile={tile}"),
        ("tasks, worker + state running", "/tasks?worker=w03&state=running"),
        ("tasks, path search, common", "/tasks?q=S2A_MSIL1C"),
        ("tasks, path search, one scene", f"/tasks?q={scene}"),
        ("api tasks, state terminated", "/api/tasks?state=terminated"),
        ("task page with lineage", f"/tasks/{chained}"),
        ("api task", f"/api/tasks/{chained}"),
        ("plan (3,000 planned + 40 running)", "/plan"),
        ("alerts", "/alerts"),
        ("audit", "/audit"),
        ("metrics (uncached)", "/metrics"),
        ("healthz", "/healthz"),
    ]


async def measure(url: str, home: Path, requests: int) -> dict[str, dict]:
    settings = Settings(home=home, backstop_poll_s=5.0, heartbeat_s=5.0)
    pool = await create_pool(url, max_size=3)
    service = WebService(pool, settings, WebSettings(port=0))
    running = asyncio.create_task(service.run(url))
    results: dict[str, dict] = {}
    try:
        while service.port is None:
            await asyncio.sleep(0.05)
            if running.done():
                running.result()
        base = f"http://127.0.0.1:{service.port}"
        service.endpoints.figures.max_age_s = 0.0  # every /metrics reads the database
        async with aiohttp.ClientSession() as http:
            for label, path in pages(url):
                times = []
                for attempt in range(requests + 1):
                    service.overview.invalidate()
                    started = time.perf_counter()
                    async with http.get(base + path) as response:
                        body = await response.read()
                        assert response.status == 200, f"{path}: {response.status} {body[:300]!r}"
                    if attempt:  # the first one warms the connection and the statement cache
                        times.append((time.perf_counter() - started) * 1000)
                results[label] = {"path": path, "p50_ms": round(statistics.median(times), 1),
                                  "max_ms": round(max(times), 1), "bytes": len(body)}
                print(f"  {label:<40} p50 {results[label]['p50_ms']:>7.1f} ms   max {results[label]['max_ms']:>7.1f} ms"
                      f"   {len(body):>8,} bytes", flush=True)
    finally:
        service.request_stop()
        await asyncio.gather(running, return_exceptions=True)
        await pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "web.json"))
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = parser.parse_args()

    external = os.environ.get("HRWSI_DATABASE_URL")
    base = Path(tempfile.mkdtemp(prefix="hrwsi-bench-web-", dir="/tmp"))
    server = external or start_embedded(base / "pgdata", "postgres", keep_running=args.keep)
    name = f"hrwsi_bench_web_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    try:
        with psycopg.connect(url) as conn:
            migrations.migrate(conn)
            results["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        print(f"writing {args.tasks:,} tasks with their history ...", flush=True)
        results["populate_s"] = populate(url, args.tasks)
        print(f"pages ({args.requests} requests each, after one warm-up):", flush=True)
        results["pages"] = asyncio.run(measure(url, base / "home", args.requests))
    finally:
        if args.keep:
            print(f"kept: {url}")
        else:
            drop_database(server, name)
            if not external:  # the embedded server of this run, and its files (about 1 GB at 1,000,000 tasks)
                stop_embedded(base / "pgdata")
                shutil.rmtree(base, ignore_errors=True)
    slowest = max(results["pages"].items(), key=lambda item: item[1]["p50_ms"])
    print(f"slowest page: {slowest[0]} (p50 {slowest[1]['p50_ms']} ms); target: every page under 1,000 ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
