"""An ageing hrwsi database: `tasks` finished tasks, as many jobs and products, and 4 history rows
per task, built set-based (INSERT ... SELECT generate_series) through the real tables.

No trigger is disabled. Inputs go in through their triggers (date checks, task creation, the
notification); each task then goes through the state machine as the services move it (dispatched,
processed: the history triggers write those rows), and a 'planned' history row is appended beside
them, for four per task. Jobs and products are inserted processed and chained. Then VACUUM ANALYZE,
as autovacuum would have.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench_sql import bench_query
from systems import SERVICE, hrwsi_configuration, prepare_hrwsi

TASKS_PER_PLAN = 1000
STEPS = ("age_inputs", "age_tasks", "age_tasks_processed", "age_jobs", "age_products", "age_history")


async def build_aged_database(server_url: str, name: str, tasks: int) -> tuple[str, dict]:
    """The URL of the new aged database, and what was built and how long each step took."""
    started = time.perf_counter()
    url = await asyncio.to_thread(prepare_hrwsi, server_url, name, hrwsi_configuration(SERVICE))
    report: dict = {"seconds": {}}
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        plans = max(1, tasks // TASKS_PER_PLAN)
        step = time.perf_counter()
        first_plan = await conn.fetchval(bench_query("age_plans"), plans)
        report["seconds"]["age_plans"] = round(time.perf_counter() - step, 1)
        arguments = {"age_inputs": (tasks,), "age_tasks": (first_plan, plans)}
        for name_of_step in STEPS:
            step = time.perf_counter()
            await conn.execute(bench_query(name_of_step), *arguments.get(name_of_step, ()))
            report["seconds"][name_of_step] = round(time.perf_counter() - step, 1)
        step = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE)")
        report["seconds"]["vacuum_analyze"] = round(time.perf_counter() - step, 1)
        counts = await conn.fetchrow(bench_query("age_counts"))
    finally:
        await conn.close()
    report.update(dict(counts), build_s=round(time.perf_counter() - started, 1),
                  method="set-based INSERT ... SELECT generate_series through the real tables, every trigger enabled")
    return url, report
