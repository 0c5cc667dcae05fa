"""Each service's reaction, and the whole loop driven by plain SQL inserts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psycopg
from rich.console import Console

from hrwsi import reports, service
from hrwsi.cli import views
from hrwsi.configuration import load
from hrwsi.database import create_pool
from hrwsi.demo import write_scenes
from hrwsi.orchestrator import Orchestrator
from hrwsi.sql_files import query
from tests.integration.conftest import (
    chain_configuration,
    insert_inputs,
    running,
    single_routine_configuration,
    skew_the_host_clock,
    wait_until,
    wait_until_listening,
    wait_until_true,
)

NOW = datetime.now(UTC)


async def test_orchestrator_creates_and_plans_tasks_for_new_inputs(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2, budget=False))  # unlimited budgets
    async with running(database_url, ["orchestrator"], settings):
        insert_inputs(db, 5)
        await wait_until(database_url, "SELECT count(*) = 5 FROM hrwsi.processing_task WHERE state = 'planned'")
    rows = db.execute("SELECT worker, planned_start, plan_id FROM hrwsi.processing_task").fetchall()
    assert all(w in ("w01", "w02") and start is not None and plan for w, start, plan in rows)
    plan = db.execute("SELECT task_count, makespan_s, lower_bound_s FROM hrwsi.plan ORDER BY id DESC").fetchone()
    assert plan[0] >= 1 and plan[1] >= plan[2] > 0


async def test_planning_left_to_the_launchers_fast_path_reads_none_of_the_tasks_that_wait(
        db, database_url, settings, configure, monkeypatch):
    """While a launcher can start the most urgent pending task at once, the plan step leaves the
    pending work to it without reading it: in a burst of 100,000 on free capacity, the tasks that
    waited their turn were read 20,000 at a time, every 2 s, to be dropped."""
    configure(single_routine_configuration(["true"], workers=2, budget=False))
    insert_inputs(db, 3000)
    rows_read = []
    fetch = asyncpg.Connection.fetch

    async def counting_fetch(self, *args, **kwargs):
        result = await fetch(self, *args, **kwargs)
        rows_read.append(len(result))
        return result

    monkeypatch.setattr(asyncpg.Connection, "fetch", counting_fetch)
    pool = await create_pool(database_url, max_size=2)
    try:
        orchestrator = Orchestrator(pool, settings)
        orchestrator.plan_after_s = 0.0  # every pending task is old enough to plan
        await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                           None, None, None, None)
        await pool.execute(query("register_instance"), "launcher-1", "launcher", "here", 1, "test",  # a fresh lease
                           None, None, None, None)
        assert await orchestrator.plan() is False
        assert sum(rows_read) < 10, rows_read
        assert db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'pending'").fetchone()[0] == 3000
        # Without a launcher to take it, the same work is read and planned.
        db.execute("DELETE FROM hrwsi.service_instance WHERE id = 'launcher-1'")
        while await orchestrator.plan():
            pass
        assert sum(rows_read) >= 3000
        assert db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'planned'").fetchone()[0] == 3000
    finally:
        await pool.close()


async def test_an_orchestrator_whose_plan_is_due_is_not_woken_by_each_new_input_and_misses_none(
        db, database_url, settings, configure):
    """While its plan step is due, the orchestrator does not listen to hrwsi_task: inputs a few
    milliseconds apart woke it (and its listener's server process) at every one, on the core the
    launcher's reaction needed. It listens again before the step runs: every task is planned, and
    once idle it reacts to the next input's notification (no poll: the backstop is a minute)."""
    configure(single_routine_configuration(["true"], workers=2, budget=False))
    settings = dataclasses.replace(settings, backstop_poll_s=60.0)
    async with running(database_url, ["orchestrator"], settings) as services:
        orchestrator = services[0]
        orchestrator.plan_after_s = 0.4
        await wait_until_listening(orchestrator)
        heard = []
        steps_for = orchestrator.router.steps_for
        orchestrator.router.steps_for = lambda n: heard.append(n) or steps_for(n)
        for index in range(40):
            insert_inputs(db, 1, start=index)
            await asyncio.sleep(0.02)
        await wait_until(database_url, "SELECT count(*) = 40 FROM hrwsi.processing_task WHERE state = 'planned'",
                         timeout=10)
        # The inputs' notifications it heard (every one of the 40 before); its own plans' ("planned")
        # come while it listens between rounds, one or two a round.
        inputs_heard = [n for n in heard if n.counts.get("pending", 0) > 0]
        assert 1 <= len(inputs_heard) <= 10, [n.counts for n in heard]
        await wait_until_true(lambda: not orchestrator._due, 5)  # idle: nothing to plan, none due
        heard.clear()
        insert_inputs(db, 1, start=40)
        await wait_until(database_url, "SELECT count(*) = 41 FROM hrwsi.processing_task WHERE state = 'planned'",
                         timeout=5)
        assert [n.counts.get("pending", 0) for n in heard][:1] == [1]  # (then its own plan's, "planned")


async def test_time_series_routine_chains_tasks_of_a_tile(db, database_url, settings, configure):
    document = chain_configuration(sequential=True)
    configure(document)
    async with running(database_url, ["orchestrator"], settings):
        db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                      VALUES ('l1c', '/a/2', '32TLR', %(t)s), ('l1c', '/a/1', '32TLR', %(t)s - interval '1 day'),
                             ('l1c', '/b/1', '31TGL', %(t)s)""", {"t": NOW - timedelta(days=1)})
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'planned'")
    links = dict(db.execute("""SELECT i.input_path, d.input_path FROM hrwsi.processing_task t
                               JOIN hrwsi.input i ON i.id = t.input_id
                               LEFT JOIN hrwsi.processing_task p ON p.id = t.depends_on
                               LEFT JOIN hrwsi.input d ON d.id = p.input_id""").fetchall())
    assert links == {"/a/2": "/a/1", "/a/1": None, "/b/1": None}
    starts = dict(db.execute("""SELECT i.input_path, t.planned_start FROM hrwsi.processing_task t
                                JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
    assert starts["/a/2"] >= starts["/a/1"] + timedelta(seconds=2), "waits for its predecessor to end"


async def test_unplannable_task_is_explained_and_the_rest_goes_on(db, database_url, settings, configure):
    document = single_routine_configuration(["true"])
    document["routine"].append({"name": "huge", "cpu": 64, "ram_mb": 1000, "storage_mb": 100,
                                "expected_duration_s": 1, "command": ["true"], "input_product_type": "IN",
                                "output_product_type": "HUGE"})
    document["condition"].append({"name": "huge", "routine": "huge"})
    configure(document)
    async with running(database_url, ["orchestrator"], settings):
        insert_inputs(db, 12, condition="huge", prefix="/huge/")
        insert_inputs(db, 3)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'planned'")
        await wait_until(database_url, "SELECT count(*) = 12 FROM hrwsi.processing_task WHERE routine = 'huge' "
                                       "AND state_reason IS NOT NULL")
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE routine = 'huge' ORDER BY id").fetchone()[0]
    assert "huge" in reason and "64" in reason
    assert "CPU" in reason.upper()
    # `hrwsi status` shows the oldest ten and says how many there are (it showed ten, and no total).
    from io import StringIO

    from rich.console import Console

    from hrwsi import reports
    from hrwsi.cli import views
    data = reports.status(db)
    assert (len(data["unplannable"]), data["unplannable_total"]) == (10, 12)
    out = StringIO()
    views.status(Console(file=out, width=200), data, stale_after_s=30)
    assert "tasks that cannot be planned (the oldest 10 of 12):" in out.getvalue()
    # A task pending again for a reason that is no planning problem is not among them (every routine
    # failure waiting out its backoff was listed: found by exploratory testing).
    others = [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task WHERE routine <> 'huge' ORDER BY id")]
    for task, reason, backoff in zip(others, ("attempt 1 external_error: exit code 210; it will be replanned and "
                                              "retried", "routine released by an operator", "reprocessing campaign 3"),
                                     ("30 s", None, None), strict=True):
        db.execute("UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL, "
                   "planned_end = NULL, state_reason = %s, not_before = now() + %s::interval WHERE id = %s",
                   (reason, backoff, task))
    assert reports.status(db)["unplannable_total"] == 12


async def test_launcher_runs_the_command_and_records_products(db, database_url, settings, configure, tmp_path):
    script = tmp_path / "routine.py"
    script.write_text("import os, sys, pathlib\n"
                      "out = pathlib.Path(os.environ['HRWSI_OUTPUT_DIR'])\n"
                      "args = sys.argv[1:]\n"
                      "(out / 'product.txt').write_text(os.environ['HRWSI_INPUT_PATH'] + ' ' + ' '.join(args))\n"
                      "print('attempt', os.environ['HRWSI_ATTEMPT'], 'task', os.environ['HRWSI_TASK_ID'])\n")
    configure(single_routine_configuration([sys.executable, str(script)]))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.processing_task WHERE state = 'processed'")
    jobs = db.execute("SELECT state, exit_code, log_path, backend_job_id FROM hrwsi.job ORDER BY id").fetchall()
    assert [(s, c) for s, c, _, _ in jobs] == [("processed", 0), ("processed", 0)]
    assert all(j.startswith("hrwsi-work-") and j.endswith("-1") for *_, j in jobs)
    log = Path(jobs[0][2]).read_text()
    assert log.startswith("attempt 1 task ")
    products = db.execute("SELECT path, product_type FROM hrwsi.product ORDER BY path").fetchall()
    assert len(products) == 2 and all(t == "OUT" for _, t in products)
    content = Path(products[0][0]).read_text()
    assert content.startswith("/in/scene") and "--output-dir" in content


async def test_failing_command_is_retried_then_terminated(db, database_url, settings, configure):
    # Each attempt runs long enough to be seen running (a job that ends within PROGRESS_BATCH_S is
    # recorded straight from dispatched to its end: test_progress.py).
    configure(single_routine_configuration([sys.executable, "-c", "import sys, time; time.sleep(0.6); sys.exit(3)"],
                                           max_attempts=2))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT attempt, state, exit_code FROM hrwsi.job ORDER BY attempt").fetchall()
    assert jobs == [(1, "internal_error", 3), (2, "internal_error", 3)]
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task").fetchone()[0]
    assert "exit code 3" in reason
    history = [r[0] for r in db.execute("SELECT state FROM hrwsi.task_event ORDER BY id")]
    # Two attempts, each dispatched and run, then terminated (an attempt starts at once where
    # capacity is free, or after being planned: either way through pending).
    assert history[0] == "pending" and history[-1] == "terminated"
    assert history.count("dispatched") == 2 and history.count("running") == 2
    assert history.index("running") < history.index("pending", 1) < len(history) - 1


async def test_a_failed_attempt_says_the_routines_last_line_of_output_next_to_its_exit_code(db, database_url, settings,
                                                                                             configure):
    # "exit code 3" was all that status and the dashboard's overview said of a failure: the routine's own
    # words were in `hrwsi logs` and on the task's page only.
    script = ("import sys; print('reading B04'); print('Traceback (most recent call last):', file=sys.stderr); "
              "print(\"KeyError: 'B11' \\x1b[2J\", file=sys.stderr); print(file=sys.stderr); sys.exit(3)")
    configure(single_routine_configuration([sys.executable, "-c", script], max_attempts=1))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task")
    message, exit_code = db.execute("SELECT message, exit_code FROM hrwsi.job").fetchone()
    assert (message, exit_code) == ("exit code 3: KeyError: 'B11' \\x1b[2J", 3)
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task").fetchone()[0]
    assert reason == "attempt 1 internal_error: exit code 3: KeyError: 'B11' \\x1b[2J"


async def test_a_retry_starts_when_its_backoff_ends_not_at_the_next_backstop_poll(db, database_url, settings, configure,
                                                                                    tmp_path):
    """A failed attempt's task waits out its backoff; the launcher that recorded the failure wakes
    dispatch when the backoff ends. Nothing else would until the backstop poll, a minute here."""
    failed_once = tmp_path / "failed-once"
    configure(single_routine_configuration(
        [sys.executable, "-c", "import pathlib, sys; marker = pathlib.Path(sys.argv[1]); "
                               "sys.exit(0) if marker.exists() else (marker.touch(), sys.exit(3))", str(failed_once)],
        max_attempts=2))
    slow_backstop = dataclasses.replace(settings, backstop_poll_s=60.0, retry_backoff_s=1.0)
    async with running(database_url, ["orchestrator", "launcher"], slow_backstop, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task", timeout=20)
    jobs = db.execute("SELECT attempt, state, submitted_at FROM hrwsi.job ORDER BY attempt").fetchall()
    assert [(attempt, state) for attempt, state, _ in jobs] == [(1, "internal_error"), (2, "processed")]
    retried_at, not_before = db.execute(
        """SELECT e.at, t.not_before FROM hrwsi.task_event e JOIN hrwsi.processing_task t ON t.id = e.task_id
           WHERE e.state = 'pending' AND e.reason LIKE 'attempt 1 internal_error%'""").fetchone()
    assert not_before - retried_at > timedelta(seconds=0.9), "a backoff of 1 s"
    assert jobs[1][2] >= not_before, "not before its backoff ended"


async def test_timeout_stops_the_job(db, database_url, settings, configure):
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(30)"], max_attempts=1, timeout_s=0.5))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task")
    message = db.execute("SELECT message FROM hrwsi.job").fetchone()[0]
    assert "timed out" in message


async def test_harvester_chains_products_into_inputs(db, database_url, settings, configure):
    configure(chain_configuration())
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  VALUES ('l1c', '/l1c/1', '32TLR', now() - interval '1 day')""")
    async with running(database_url, ["harvester"], settings):
        db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type)
                      SELECT id, '/l2a/1', 'L2A' FROM hrwsi.processing_task""")
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.input WHERE source = 'chaining'")
    row = db.execute("""SELECT processing_condition, input_path, tile FROM hrwsi.input
                        WHERE source = 'chaining'""").fetchone()
    assert row == ("l2a", "/l2a/1", "32TLR")
    assert db.execute("SELECT chained_at IS NOT NULL FROM hrwsi.product").fetchone()[0]


async def test_the_harvester_chains_nothing_while_an_input_is_corrected_and_chains_after(db, database_url, settings,
                                                                                         configure):
    """Migration 0097: the chaining step takes, first in its transaction, the lock a correction takes exclusively: a
    product it chained while a correction ran made a task from the old version the correction had not seen."""
    configure(chain_configuration())
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  VALUES ('l1c', '/l1c/1', '32TLR', now() - interval '1 day'),
                         ('l1c', '/l1c/2', '32TLR', now() - interval '1 day')""")
    corrected, other_task = db.execute("SELECT min(input_id), max(id) FROM hrwsi.processing_task").fetchone()
    correcting = psycopg.connect(database_url)
    try:
        correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (corrected,))  # (not committed yet)
        async with running(database_url, ["harvester"], settings):
            db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/l2a/2', 'L2A')", (other_task,))
            await wait_until(database_url, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                             "AND classid = 7250098 AND NOT granted)")
            assert db.execute("SELECT count(*) FROM hrwsi.input WHERE source = 'chaining'").fetchone()[0] == 0
            correcting.commit()
            await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.input WHERE source = 'chaining'")
    finally:
        correcting.close()


async def test_whole_loop_from_plain_sql_inserts(db, database_url, settings, configure, tmp_path):
    configure(chain_configuration(sequential=True))
    scenes = write_scenes(tmp_path / "l1c", 4, NOW, flaky_index=2)
    async with running(database_url, ["harvester", "orchestrator", "launcher"], settings, backend="local"):
        for scene in scenes:  # one statement per scene, as a data engineer would type them
            db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at,
                          published_at) VALUES ('l1c', %(path)s, %(tile)s, %(mission)s, %(measured_at)s,
                          %(published_at)s)""", scene)
        await wait_until(database_url, "SELECT count(*) = 12 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=90)
    products = dict(db.execute("SELECT product_type, count(*) FROM hrwsi.product GROUP BY 1").fetchall())
    assert products == {"L2A": 4, "FSC": 4, "QUICKLOOK": 4}
    retried = db.execute("""SELECT t.routine, array_agg(j.state ORDER BY j.attempt) FROM hrwsi.job j
                            JOIN hrwsi.processing_task t ON t.id = j.task_id GROUP BY t.id, t.routine
                            HAVING count(*) > 1""").fetchall()
    assert retried == [("snow_cover", ["external_error", "processed"])]
    assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 13


async def test_launcher_adopts_jobs_of_a_dead_launcher(db, database_url, settings, configure, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hrwsi")
    configure(single_routine_configuration(["true"]))
    insert_inputs(db, 1)
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w01', planned_start = now()")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1")
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, heartbeat_at)
                  VALUES ('launcher-dead', 'launcher', 'gone', 1, now() - interval '1 hour')""")
    # Its launcher died before starting it: the adopter finds its attempt neither running nor finished.
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, owner, worker, output_dir,
                                         log_path)
                  SELECT id, 1, 'local', 'hrwsi-work-' || id || '-1', 'launcher-dead', 'w01', %s, %s
                  FROM hrwsi.processing_task""", (str(tmp_path / "task" / "attempt-1" / "output"),
                                                   str(tmp_path / "x.log")))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT attempt, state, fault FROM hrwsi.job ORDER BY attempt").fetchall()
    assert jobs == [(1, "lost", "launcher_gone"), (2, "processed", None)]
    assert db.execute("SELECT failures FROM hrwsi.processing_task").fetchone()[0] == 0, "lost is not a failure"
    task = db.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    (adopted,) = [r for r in caplog.records if r.getMessage().startswith("adopting job")]
    assert (adopted.task_id, adopted.job_id, adopted.routine, adopted.attempt) == (task, f"hrwsi-work-{task}-1", "work", 1)


async def test_graceful_stop_finishes_running_jobs(db, database_url, settings, configure):
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.5)"]))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
    # Leaving the block stopped the services: the grace period let both jobs end normally.
    states = [r[0] for r in db.execute("SELECT state FROM hrwsi.job")]
    assert states == ["processed", "processed"]
    assert db.execute("SELECT count(*) FROM hrwsi.service_instance").fetchone()[0] == 0


async def test_service_survives_an_unexpected_payload(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"]))
    async with running(database_url, ["orchestrator"], settings):
        db.execute("SELECT pg_notify('hrwsi_input', 'garbage{')")
        db.execute("SELECT pg_notify('hrwsi_task', '{\"counts\": [1, 2]}')")
        await asyncio.sleep(0.2)
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'planned'")


def test_psycopg_is_real(database_url):
    """Not a mock: the test database answers like PostgreSQL."""
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 150000


async def test_a_dependency_cycle_is_set_aside_with_its_reason_and_the_rest_is_planned(db, database_url, settings,
                                                                                    configure):
    configure(single_routine_configuration(["true"], workers=1, cpu=4))
    db.execute("UPDATE hrwsi.worker SET active = false")  # nothing dispatches: only planning is seen
    insert_inputs(db, 3)
    a, b, c = [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
    db.execute("UPDATE hrwsi.processing_task SET depends_on = %s WHERE id = %s", (b, a))
    db.execute("UPDATE hrwsi.processing_task SET depends_on = %s WHERE id = %s", (a, b))
    db.execute("UPDATE hrwsi.worker SET active = true")
    async with running(database_url, ["orchestrator"], settings):
        await wait_until(database_url, "SELECT state = 'planned' FROM hrwsi.processing_task WHERE id = $1", c)
        await wait_until(database_url, "SELECT state_reason LIKE '%dependency cycle%' FROM hrwsi.processing_task "
                                       "WHERE id = $1", a)
    assert db.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (b,)).fetchone()[0] == "pending"


async def test_a_routine_that_links_a_system_file_into_its_outputs_fails_and_registers_nothing(
        db, database_url, settings, configure):
    script = "import os, sys; d = sys.argv[sys.argv.index('--output-dir') + 1]; os.symlink('/etc/passwd', d + '/p')"
    configure(single_routine_configuration([sys.executable, "-c", script], max_attempts=1))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task")
    assert db.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 0
    message = db.execute("SELECT message FROM hrwsi.job").fetchone()[0]
    assert "cannot be a product" in message and "not a regular file" in message


async def test_a_routine_that_leaves_a_directory_tree_deeper_than_python_recurses_fails_and_registers_nothing(
        db, database_url, settings, configure):
    """(os.walk recursed once a level: an output tree 1,100 directories deep raised RecursionError out of
    the listing of its products, and the attempt's outcome was never recorded; found by exploratory testing)"""
    script = ("import os, sys; d = sys.argv[sys.argv.index('--output-dir') + 1]; open(d + '/ok.tif', 'w').close()\n"
              "for _ in range(1100):\n    d += '/d'; os.mkdir(d)\nopen(d + '/deep.tif', 'w').close()")
    configure(single_routine_configuration([sys.executable, "-c", script], max_attempts=1))
    try:
        async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
            insert_inputs(db, 1)
            await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task", timeout=30)
        assert db.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 0
        message = db.execute("SELECT message FROM hrwsi.job").fetchone()[0]
        assert "cannot be a product" in message and "nested more than 100 directories deep" in message
    finally:
        subprocess.run(["rm", "-rf", str(settings.home)], check=True)  # (pytest's shutil.rmtree recurses too)


async def test_dispatching_pauses_while_the_outcome_writer_is_behind_and_resumes_when_it_catches_up(
        db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=3))  # room for 12 at once
    async with running(database_url, ["launcher"], settings) as (launcher,):
        launcher.max_unrecorded = 3
        writer_may_go = asyncio.Event()
        store = launcher._store_outcomes

        async def slow_store(conn, batch, owner):
            await writer_may_go.wait()  # the database records outcomes slower than jobs end
            return await store(conn, batch, owner)

        launcher._store_outcomes = slow_store
        insert_inputs(db, 10)
        await wait_until(database_url, "SELECT count(*) >= 3 FROM hrwsi.job")
        await asyncio.sleep(0.5)  # several wake-ups (each job's submission, the backstop poll)
        assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 3, \
            "no more jobs start while 3 outcomes wait for the writer"
        writer_may_go.set()
        await wait_until(database_url, "SELECT count(*) = 10 FROM hrwsi.processing_task WHERE state = 'processed'")


async def test_an_orchestrator_on_a_host_ten_minutes_fast_plans_by_the_databases_clock_and_says_its_clock_is_off(
        db, database_url, settings, configure, monkeypatch):
    """It planned every task ten minutes ahead and raised false deadline alerts ("00:08:41 late"),
    and the plan misled the orchestrators with good clocks (found by exploratory testing)."""
    from hrwsi import database_clock, orchestrator, service

    skew_the_host_clock(monkeypatch, timedelta(minutes=10), database_clock, service, orchestrator)
    configure(single_routine_configuration(["true"], workers=2, budget=False))
    async with running(database_url, ["orchestrator"], settings) as [the_orchestrator]:
        insert_inputs(db, 3)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'planned'")
        assert -610 < the_orchestrator.clock.offset_s < -590
        said = await wait_until(database_url, "SELECT problem FROM hrwsi.service_instance WHERE kind = 'orchestrator'",
                                timeout=settings.heartbeat_s * 3)
    assert re.match(r"this host's clock is (59\d|60\d)\.\d s ahead of the database's", said), said
    late = db.execute("SELECT max(planned_start - now()) FROM hrwsi.processing_task").fetchone()[0]
    assert late < timedelta(minutes=1), f"planned {late} ahead"


async def test_a_launcher_on_a_host_ten_minutes_slow_records_its_attempts_times_by_the_databases_clock(
        db, database_url, settings, configure, monkeypatch):
    """An attempt "started" ten minutes before it was submitted: the times of a local (or dry-run)
    attempt come from the launcher's host (found by exploratory testing)."""
    from hrwsi import database_clock, service
    from hrwsi.backends import dry_run

    skew_the_host_clock(monkeypatch, -timedelta(minutes=10), database_clock, service, dry_run)
    configure(single_routine_configuration(["true"], workers=2, budget=False))
    async with running(database_url, ["orchestrator", "launcher"], settings):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'processed'")
    for submitted, started, finished in db.execute("SELECT submitted_at, started_at, finished_at FROM hrwsi.job"):
        assert abs((started - submitted).total_seconds()) < 60 and abs((finished - submitted).total_seconds()) < 60


async def _planned_start_of_new_work_after(db, pool, settings, held_since: str, state: str) -> float:
    """One 4-CPU worker; a task of a 60 s routine holds it (`state`, planned or started `held_since`
    ago); a new task is planned: seconds from now to its planned start, and the plan's peak CPU."""
    document = single_routine_configuration(["true"], cpu=4, workers=1)
    document["routine"][0]["expected_duration_s"] = 60
    load(db, document)
    insert_inputs(db, 1)
    db.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w01',
                  planned_start = now() - %s::interval, planned_end = now() - %s::interval + interval '60 s'""",
               (held_since, held_since))
    if state != "planned":
        db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1")
        db.execute("UPDATE hrwsi.processing_task SET state = %s", (state,))
        db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, started_at)
                      SELECT id, 1, 'dry-run', 'hrwsi-work-' || id || '-1', 'w01', %s,
                             CASE WHEN %s = 'running' THEN now() - %s::interval END
                      FROM hrwsi.processing_task""", (state, state, held_since))
    insert_inputs(db, 1, start=1)
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.0
    await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                       None, None, None, None)
    while await orchestrator.plan():
        pass
    start = db.execute("""SELECT extract(epoch FROM planned_start - now()) FROM hrwsi.processing_task
                          WHERE state = 'planned' AND input_id = (SELECT max(id) FROM hrwsi.input)""").fetchone()[0]
    assert orchestrator.last_plan.figures.peak_use["cpu"] <= 4, orchestrator.last_plan.figures.peak_use
    return float(start)


async def test_a_planned_task_whose_start_has_passed_holds_its_whole_expected_duration_from_now(
        db, pool, settings):
    """It has not started: it needs its 60 s still. Tasks behind their planned start were squeezed into
    the plan's first second, and new work planned on what they hold (peak use 42 CPU on a budget of 8;
    found by exploratory testing)."""
    assert await _planned_start_of_new_work_after(db, pool, settings, "2 min", "planned") >= 58


async def test_a_queued_task_that_has_not_started_holds_its_whole_expected_duration_from_now(db, pool, settings):
    assert await _planned_start_of_new_work_after(db, pool, settings, "2 min", "queued") >= 58


async def test_a_running_task_past_its_expected_end_holds_its_capacity_for_as_long_again_as_it_overran(
        db, pool, settings):
    """It is still running (10 min into its expected 60 s): it holds its worker from now for the 9 min it has
    overrun, not for the first second of the plan."""
    assert await _planned_start_of_new_work_after(db, pool, settings, "10 min", "running") >= 9 * 60 - 5


async def test_a_running_task_within_its_expected_duration_holds_until_its_expected_end(db, pool, settings):
    assert 20 - 5 <= await _planned_start_of_new_work_after(db, pool, settings, "40 s", "running") <= 20 + 1


async def test_a_running_task_holds_the_size_it_was_dispatched_with_in_the_next_plan_when_its_routine_shrinks(
        db, pool, settings):
    """A 4-CPU attempt runs on the 4-CPU worker; its routine is made 1 CPU. Counted at the new size, the
    next plan put three new tasks beside it at once on a worker it fills (found by exploratory testing)."""
    document = single_routine_configuration(["true"], cpu=4, workers=1)
    document["routine"][0]["expected_duration_s"] = 60
    load(db, document)
    insert_inputs(db, 1)
    db.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w01',
                  planned_start = now() - interval '40 s', planned_end = now() + interval '20 s'""")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1")
    db.execute("UPDATE hrwsi.processing_task SET state = 'running'")
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, started_at)
                  SELECT id, 1, 'dry-run', 'hrwsi-work-' || id || '-1', 'w01', 'running', now() - interval '40 s'
                  FROM hrwsi.processing_task""")
    document["routine"][0]["cpu"] = 1
    load(db, document)
    insert_inputs(db, 3, start=1)
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.0
    await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                       None, None, None, None)
    while await orchestrator.plan():
        pass
    starts = [row[0] for row in db.execute("""SELECT extract(epoch FROM planned_start - now())::float8
                                               FROM hrwsi.processing_task WHERE state = 'planned'""")]
    assert len(starts) == 3 and min(starts) >= 20 - 5, starts
    assert orchestrator.last_plan.figures.peak_use["cpu"] <= 4, orchestrator.last_plan.figures.peak_use


async def test_a_task_too_young_for_a_plan_by_the_orchestrators_clock_gets_a_later_round_whatever_the_servers(
        db, pool, settings):
    """tasks_to_plan reads a task's age by the orchestrator's clock (the database's as the host reckons
    it); the check for young tasks read it by the server's now(): with the clock a little behind, a task
    too young for the one was old enough for the other, no later round was set, and the last inputs of a
    series waited for the backstop poll (found in a CI run)."""
    configure_document = single_routine_configuration(["true"], workers=2, budget=False)
    load(db, configure_document)
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.4
    orchestrator.clock.offset_s = -0.3  # its clock 300 ms behind the server's
    insert_inputs(db, 1)
    await asyncio.sleep(0.5)  # 0.5 s old by the server, 0.2 s by the orchestrator's clock
    assert not await orchestrator.plan()
    assert db.execute("SELECT state FROM hrwsi.processing_task").fetchone() == ("pending",)
    assert "plan" in orchestrator._due, "a later round is set for it"
    for timer in orchestrator._due.values():
        timer.cancel()


async def test_a_task_too_young_for_a_round_and_old_enough_when_it_ends_gets_a_later_round(db, pool, settings,
                                                                                          monkeypatch):
    """The check for young tasks at a round's end read their age at the end: a task too young for the round
    and old enough by its end was in neither, and waited for the backstop poll (found in a CI run)."""
    load(db, single_routine_configuration(["true"], workers=2, budget=False))
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.4
    planning = Orchestrator._plan_and_check

    def slow_planning(*args, **kwargs):
        time.sleep(0.3)  # (in its thread: the round takes this long)
        return planning(*args, **kwargs)

    monkeypatch.setattr(Orchestrator, "_plan_and_check", staticmethod(slow_planning))
    insert_inputs(db, 1)
    await asyncio.sleep(0.45)
    insert_inputs(db, 1, start=1)  # 0.2 s old when the round starts, 0.5 s when it ends
    await asyncio.sleep(0.2)
    await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                       None, None, None, None)
    assert not await orchestrator.plan()
    states = [state for (state,) in db.execute("SELECT state FROM hrwsi.processing_task ORDER BY id")]
    assert states == ["planned", "pending"]
    assert "plan" in orchestrator._due, "a later round is set for the young one"
    for timer in orchestrator._due.values():
        timer.cancel()


def _a_package(root: Path) -> Path:
    """An hrwsi package laid out as an editable install's: src/hrwsi beside sql/."""
    (root / "src" / "hrwsi").mkdir(parents=True)
    (root / "src" / "hrwsi" / "orchestrator.py").write_text("PLAN = 1\n")
    (root / "src" / "hrwsi" / "installed_code.py").write_text("CHECK_EVERY_S = 300.0\n")
    (root / "sql").mkdir()
    (root / "sql" / "schema.sql").write_text("SELECT 1;\n")
    return root / "src" / "hrwsi"


async def test_services_whose_code_on_disk_changed_since_they_started_are_said_by_status_and_in_their_log_once(
        db, database_url, settings, configure, tmp_path, monkeypatch, caplog):
    """`make install` is editable: a `git pull` replaced the code under running services, whose lazy imports
    then mixed two versions, and nothing said so (found by exploratory testing)."""
    package = _a_package(tmp_path)
    monkeypatch.setattr(service, "code_dir", lambda: str(package))
    monkeypatch.setattr(service, "_CODE_WATCH", service._CodeWatch(service.weakref.WeakSet()))
    configure(single_routine_configuration(["true"]))
    async with running(database_url, ["orchestrator", "launcher"], settings):
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.service_instance")
        recorded = db.execute("SELECT DISTINCT code_dir, code_fingerprint FROM hrwsi.service_instance").fetchall()
        assert len(recorded) == 1 and recorded[0][0] == str(package) and recorded[0][1]
        assert not any(s["code_changed"] for s in reports.status(db)["services"])
        await service._CODE_WATCH.check()
        assert "code on disk changed" not in caplog.text

        (tmp_path / "sql" / "schema.sql").write_text("SELECT 2; -- pulled\n")  # (a git pull)
        service._CODE_WATCH.checked_at = float("-inf")  # (a later period: the services' checks are one per period)
        with caplog.at_level(logging.WARNING):
            await service._CODE_WATCH.check()
            await service._CODE_WATCH.check()
        said = [r.getMessage() for r in caplog.records if "code on disk changed" in r.getMessage()]
        assert said == [f"code on disk changed since launcher, orchestrator started ({package}): restart them to run "
                        "the new code"]
        status = reports.status(db)
        changed = {s["kind"]: s["code_changed"] for s in status["services"]}
        assert set(changed) == {"orchestrator", "launcher"} and all(
            text.startswith(f"code on disk changed since {kind} ") and "restart it to run the new code" in text
            for kind, text in changed.items())
        console = Console(width=200, record=True)
        views.status(console, status, stale_after_s=30.0)
        assert console.export_text().count("code on disk changed since") == 2
        # A service of another host: its files are not here to compare (its own log says it there).
        db.execute("UPDATE hrwsi.service_instance SET host = 'elsewhere' WHERE kind = 'launcher'")
        assert {s["kind"]: s["code_changed"] for s in reports.status(db)["services"]}["launcher"] is None
        db.execute("UPDATE hrwsi.service_instance SET host = %s WHERE kind = 'launcher'", (socket.gethostname(),))


async def test_a_step_refused_a_connection_for_want_of_a_slot_says_so_and_what_to_do_and_it_is_its_problem(
        db, database_url, settings, caplog):
    """A server at max_connections refuses a new connection ("sorry, too many clients already"): the steps said
    "could not reach the database", of a server that runs and answered (found by exploratory testing). A role's
    CONNECTION LIMIT is refused alike (SQLSTATE 53300), and is what a test can reach without filling the server."""
    role = "hrwsi_test_no_slot_role"
    db.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(psycopg.sql.Identifier(role)))
    pool = await create_pool(database_url.replace("postgresql://postgres@", f"postgresql://{role}@"), min_size=0,
                             max_size=2)

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(pool, settings)
            self.steps["probe"] = self.probe

        async def probe(self) -> bool:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            return False

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probe = Probe()
    try:
        await probe.run_step("probe")
        [said] = [r.getMessage() for r in caplog.records if "probe" in r.getMessage()]
        assert said.startswith(f'prober: step probe was refused a connection: the database server refuses new '
                               f'connections (too many connections for role "{role}"): it runs, but max_connections '
                               "or a CONNECTION LIMIT is reached; raise max_connections"), said
        for named in ("HRWSI_POOL_SIZE", "HRWSI_WEB_POOL_SIZE", "pg_stat_activity"):
            assert named in said
        assert "could not reach" not in said
        problem, since = probe.problem()
        assert problem.startswith("the database server refuses new connections") and since is not None
        db.execute(psycopg.sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(psycopg.sql.Identifier(role)))
        db.execute(psycopg.sql.SQL("GRANT USAGE ON SCHEMA hrwsi TO {}").format(psycopg.sql.Identifier(role)))
        await probe.run_step("probe")
        assert probe.problem() is None, "said while it lasts"
    finally:
        await pool.close()
        db.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(role)))
        db.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


async def test_a_database_that_refuses_writes_is_said_once_for_the_service_with_what_to_do_and_when_it_takes_them_again(
        db, database_url, settings, caplog):
    """A failover that left the services on a standby, or default_transaction_read_only turned on while they run:
    every step logged "failed in the database: cannot execute UPDATE in a read-only transaction" every 2 s and
    every heartbeat a traceback, 600 lines in 20 s for `hrwsi up`, none saying why nor what to do (found by
    exploratory testing). Now one line for the service names the causes and the fix, and one says when writes
    go through again."""
    writable = await create_pool(database_url, min_size=0, max_size=2)
    read_only = await create_pool(database_url, min_size=0, max_size=2,
                                  server_settings={"default_transaction_read_only": "on"})

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(writable, settings)
            self.steps["write"] = self.write

        async def write(self) -> bool:
            async with self.pool.acquire() as conn:
                await conn.execute("UPDATE hrwsi.service_instance SET heartbeat_at = heartbeat_at WHERE id = $1",
                                   self.instance_id)
            return False

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probe = Probe()
    try:
        await probe._register()
        probe.pool = read_only  # (the failover: the same URL now reaches a server that refuses writes)
        for _ in range(3):
            await probe.run_step("write")
        heartbeat = asyncio.create_task(probe._every(service.SideTask("heartbeat", probe._heartbeat_once, 0.05)))
        await asyncio.sleep(0.3)
        said = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1, [r.getMessage() for r in said]
        [line] = said
        assert line.getMessage().startswith("prober: the database refuses hrwsi's writes (cannot execute UPDATE in a "
                                            "read-only transaction): the server is a standby"), line.getMessage()
        assert "point HRWSI_DATABASE_URL at the primary" in line.getMessage() and line.exc_info is None
        assert probe.health.heartbeat_failed_at is not None  # (/readyz: not ready while the lease is not renewed)

        probe.pool = writable
        await asyncio.sleep(0.2)
        probe.stopping.set()
        await heartbeat
        assert any(r.getMessage().startswith("prober: the database takes hrwsi's writes again (after ")
                   for r in caplog.records), caplog.text
        assert await probe.run_step("write") is False and "failed" not in caplog.text
    finally:
        probe.pool = writable
        await probe.unregister()
        await read_only.close()
        await writable.close()


async def test_the_services_of_one_process_say_in_one_line_that_the_database_refuses_writes_and_in_one_that_it_takes_them(
        db, database_url, settings, caplog):
    """`hrwsi up` runs four services: each said its own "refuses hrwsi's writes" and its own "takes hrwsi's writes
    again", four lines for one failover (found by review). The process's services share one pool and role: one
    line names them all, as their wait at start does (hrwsi.app.build_services, share_writes_awaited)."""
    writable = await create_pool(database_url, min_size=0, max_size=2)
    read_only = await create_pool(database_url, min_size=0, max_size=2,
                                  server_settings={"default_transaction_read_only": "on"})

    class Probe(service.Service):
        def __init__(self, kind: str):
            self.kind = kind
            super().__init__(writable, settings)
            self.steps["write"] = self.write

        async def write(self) -> bool:
            async with self.pool.acquire() as conn:
                await conn.execute("UPDATE hrwsi.service_instance SET heartbeat_at = heartbeat_at WHERE id = $1",
                                   self.instance_id)
            return False

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probes = [Probe("prober"), Probe("sounder")]
    probes[0].share_writes_awaited(probes)
    try:
        for probe in probes:
            await probe._register()
            probe.pool = read_only  # (the failover)
        for probe in probes:
            await probe.run_step("write")
            await probe.run_step("write")
        refused = [r.getMessage() for r in caplog.records if "refuses hrwsi's writes" in r.getMessage()]
        assert len(refused) == 1 and refused[0].startswith("prober, sounder: the database refuses hrwsi's writes ("), \
            refused
        assert all(probe._read_only is not None for probe in probes), "each knows its own problem (status, /readyz)"
        for probe in probes:
            probe.pool = writable
            await probe._heartbeat_once()
        again = [r.getMessage() for r in caplog.records if "takes hrwsi's writes again" in r.getMessage()]
        assert again == ["prober, sounder: the database takes hrwsi's writes again (after 4 refusal(s) in 0 s)"], again
        assert all(probe._read_only is None for probe in probes)
    finally:
        for probe in probes:
            probe.pool = writable
            await probe.unregister()
        await read_only.close()
        await writable.close()


async def test_a_database_set_read_only_and_then_set_back_takes_the_services_writes_again_without_a_restart(
        db, database_url, settings):
    """A session keeps the default_transaction_read_only it opened with: after ops set the database (or role)
    read-only, the pool's sessions opened since refused every write, and went on refusing after ops set it off
    again, the service said to wait for a fix that had come (found by review). A refusal opens the pool's sessions
    anew (at most every WRITES_AWAITED_EVERY_S), so the next try reads the setting as it is now."""
    pool = await create_pool(database_url, min_size=0, max_size=1)
    name = db.execute("SELECT current_database()").fetchone()[0]

    def read_only(on: bool) -> None:
        db.execute(psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
            psycopg.sql.Identifier(name), psycopg.sql.SQL("on" if on else "off")))

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(pool, settings)
            self.steps["write"] = self.write

        async def write(self) -> bool:
            async with self.pool.acquire() as conn:
                await conn.execute("UPDATE hrwsi.service_instance SET heartbeat_at = heartbeat_at WHERE id = $1",
                                   self.instance_id)
            return False

    probe = Probe()
    try:
        await probe._register()
        read_only(True)
        await pool.expire_connections()  # (the failover: the sessions come back with the setting)
        await probe.run_step("write")
        assert probe._read_only is not None, "refused"
        read_only(False)  # (ops set it off; nothing ends hrwsi's sessions)
        await asyncio.sleep(0.1)
        await probe.run_step("write")
        assert probe._unreachable == {} and probe._read_only is not None
        await probe._heartbeat_once()
        assert probe._read_only is None, "a write went through again"
    finally:
        read_only(False)
        await probe.unregister()
        await pool.close()


async def test_while_the_database_refuses_writes_the_pools_sessions_are_opened_anew_less_and_less_often_and_said(
        db, database_url, settings, monkeypatch, caplog):
    """Each refusal opened the pool's sessions anew at most every 5 s: every service's pool closed and opened all its
    sessions every 5 s for as long as the refusals lasted (found by review). The pause doubles up to a bound while
    they last, the first line says so, and a new streak of refusals starts again from the least pause."""
    monkeypatch.setattr(service, "WRITES_AWAITED_EVERY_S", 0.1)
    monkeypatch.setattr(service, "SESSIONS_RENEWED_AT_MOST_EVERY_S", 0.4)
    pool = await create_pool(database_url, min_size=0, max_size=1,
                             server_settings={"default_transaction_read_only": "on"})
    renewed: list[float] = []
    pauses: list[float] = []

    class Counted:  # (the real pool, each opening of its sessions anew timed)
        def __getattr__(self, name):
            return getattr(pool, name)

        async def expire_connections(self) -> None:
            renewed.append(time.monotonic())
            pauses.append(probe._sessions_renewed_after_s)  # (the least pause before the next renewal)
            await pool.expire_connections()

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(Counted(), settings)
            self.steps["write"] = self.write

        async def write(self) -> bool:
            async with self.pool.acquire() as conn:
                await conn.execute("UPDATE hrwsi.service_instance SET heartbeat_at = heartbeat_at WHERE id = $1",
                                   self.instance_id)
            return False

    probe = Probe()
    try:
        caplog.set_level(logging.ERROR, logger="hrwsi.service")
        # (the pauses are asserted, and each gap at least its pause: on a loaded machine a step takes longer, and a
        # bound on the wall-clock gaps failed in CI)
        deadline = time.monotonic() + 30.0  # a guard against hangs, not a timing assertion
        while len(renewed) < 5 and time.monotonic() < deadline:
            await probe.run_step("write")
            await asyncio.sleep(0.02)
        gaps = [b - a for a, b in zip(renewed, renewed[1:], strict=False)]
        assert pauses == [0.1, 0.2, 0.4, 0.4, 0.4], "doubled, then bounded"
        assert all(gap >= pause - 0.005 for gap, pause in zip(gaps, pauses, strict=False)), (gaps, pauses)
        said = [r.getMessage() for r in caplog.records if "refuses hrwsi's writes" in r.getMessage()]
        assert len(said) == 1 and said[0].endswith("the sessions are opened anew (to read the setting again) after "
                                                   "0.1 s, then less often, at most every 0.4 s: a fix is taken up "
                                                   "within that"), said
        probe._writes_again()  # (a write went through: a later refusal starts from the least pause)
        renewed.clear()
        await asyncio.sleep(0.45)
        for _ in range(2):
            await probe.run_step("write")
            await asyncio.sleep(0.12)
        assert len(renewed) == 2, renewed
    finally:
        await pool.close()


async def test_a_lease_found_lapsed_while_the_database_refuses_writes_neither_ends_the_service_nor_its_stop(
        db, database_url, settings, caplog):
    """A fenced call reads the lease before it writes: on a database refusing writes (a standby after a failover),
    once the lease had lapsed, the launcher's dispatch was told so, and the new lease it then asked for was refused
    for being a write: that refusal escaped the step and ended the launcher, and `hrwsi up` with it, 30 s into the
    failover; its unregistering on the way out was refused too and was the command's last word (found by
    exploratory testing). The step now waits for writes as every step does; a stop leaves its lease to expire."""
    writable = await create_pool(database_url, min_size=0, max_size=2)
    read_only = await create_pool(database_url, min_size=0, max_size=2,
                                  server_settings={"default_transaction_read_only": "on"})

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(writable, settings)
            self.steps["fenced"] = self.fenced

        async def fenced(self) -> bool:
            async with self.pool.acquire() as conn:  # (what a fenced function raises, before it writes)
                await conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'lease lapsed' USING ERRCODE = "
                                   f"'{service.LEASE_LAPSED_SQLSTATE}'; END $$")
            return False

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probe = Probe()
    await probe._register()
    try:
        probe.pool = read_only
        assert await probe.run_step("fenced") is False
        assert "the database refuses hrwsi's writes" in caplog.text
        await probe.unregister()
        assert "could not unregister" in caplog.text
    finally:
        probe.pool = writable
        await probe.unregister()
        await read_only.close()
        await writable.close()


async def test_a_step_stuck_behind_a_lock_left_open_lets_the_other_steps_run_at_their_pace_and_catches_up_once_released(
        db, database_url, settings, caplog, configure):
    """Found by rehearsal: a step whose statement waited lock_timeout (a data engineer's `LOCK TABLE hrwsi.input IN SHARE
    ROW EXCLUSIVE MODE` left open in psql) tried again every 50 ms, each try holding the service's loop for lock_timeout:
    the service's other steps got one turn per lock_timeout while the lock lasted. The stuck step backs off (1 s, then
    twice as long at each wait, at most 30 s), so the others run meanwhile; once the lock is released, it catches up
    within its back-off."""
    pool = await create_pool(database_url, min_size=0, max_size=3, server_settings={"lock_timeout": "2000"})
    configure(single_routine_configuration(["true"], workers=1))
    insert_inputs(db, 1)
    work: list[int] = []
    done: dict[str, float] = {}

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(pool, settings)
            self.steps["add"] = self.add
            self.steps["other"] = self.other

        async def add(self) -> bool:
            await self.pool.execute("UPDATE hrwsi.input SET input_path = input_path WHERE input_path = '/in/scene0'")
            done.setdefault("add", time.monotonic())
            return False

        async def other(self) -> bool:  # (one item of work per turn: the loop runs the other steps in between)
            if work:
                work.pop()
                if not work:
                    done["other"] = time.monotonic()
            return bool(work)

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probe = Probe()
    engineer = psycopg.connect(database_url, application_name="psql (ana)")
    serving = None
    try:
        engineer.execute("LOCK TABLE hrwsi.input IN SHARE ROW EXCLUSIVE MODE")  # and left open
        serving = asyncio.create_task(probe.run(database_url))
        await wait_until_true(lambda: "step add could not get, within lock_timeout" in caplog.text, 10)
        done.pop("add", None)
        work.extend(range(10))
        given = time.monotonic()
        await wait_until_true(lambda: "other" in done, 30)
        assert done["other"] - given < 3.0, f"10 turns of the other step took {done['other'] - given:.1f} s"
        assert "add" not in done
        engineer.rollback()
        released = time.monotonic()
        await wait_until_true(lambda: "add" in done, 40)
        assert done["add"] - released < 5.0, f"the stuck step caught up {done['add'] - released:.1f} s after the release"
    finally:
        engineer.close()
        probe.request_stop()
        if serving is not None:
            await serving
        await pool.close()
    assert any("step add got its lock" in r.getMessage() for r in caplog.records)


async def test_a_step_that_waited_lock_timeout_names_the_session_that_holds_the_lock_its_client_and_since_when(
        db, database_url, settings, caplog, configure):
    """A data engineer's transaction left open in psql with `LOCK TABLE hrwsi.input IN SHARE ROW EXCLUSIVE MODE`, or
    a row of a task locked by `SELECT ... FOR UPDATE`: the step that meets it waits lock_timeout, then said only "a
    lock another session holds (a transaction left open? `hrwsi status` names the session)", so whoever read the
    log had to run status while the step waited to learn who. Its line names the session now: its pid, client,
    role, since when its transaction is open, what it holds, and how to end it."""
    pool = await create_pool(database_url, min_size=0, max_size=2, server_settings={"lock_timeout": "300"})
    configure(single_routine_configuration(["true"], workers=1))
    insert_inputs(db, 1)

    class Probe(service.Service):
        kind = "prober"

        def __init__(self):
            super().__init__(pool, settings)
            self.steps["add"] = self.add

        async def add(self) -> bool:
            await self.pool.execute("UPDATE hrwsi.input SET input_path = input_path WHERE input_path = '/in/scene0'")
            return False

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    probe = Probe()
    try:
        for how in ("LOCK TABLE hrwsi.input IN SHARE ROW EXCLUSIVE MODE",
                    "SELECT 1 FROM hrwsi.input WHERE input_path = '/in/scene0' FOR UPDATE"):
            caplog.clear()
            with psycopg.connect(database_url, application_name="psql (ana)") as engineer:
                engineer.execute(how)  # and left open, idle in its transaction
                pid = engineer.info.backend_pid
                since = engineer.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()[0]
                time.sleep(0.4)  # (open longer than the wait, as a transaction left open is)
                assert await probe.run_step("add") is False
                [said] = [r.getMessage() for r in caplog.records if "step add" in r.getMessage()]
                assert "could not get, within lock_timeout," in said, said
                assert f"pid {pid}" in said and "'psql (ana)'" in said and "idle in transaction" in said, said
                assert since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in said, said
                assert f"SELECT pg_terminate_backend({pid})" in said, said
                engineer.rollback()
            caplog.clear()
            await probe.run_step("add")
            assert [r.getMessage() for r in caplog.records if "got its lock" in r.getMessage()], how
    finally:
        await pool.close()
