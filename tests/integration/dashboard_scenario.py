"""A production-like moment for the dashboard tests, written with plain SQL (no service needs to run):
a three-step chain (atmospheric correction -> snow cover -> quicklook) on three workers, with

- 6 scenes processed through the first two steps (jobs with exit code 0, logs, products, and the
  chained inputs that carry the lineage), their quicklooks held because the routine is on hold;
- one task terminated after three failed attempts (exit codes 210, 210, 1; an alert is written);
- one task running, started a minute ago;
- 12 tasks planned on the three workers, overlapping (several at once per worker);
- 2 pending tasks the planner cannot place, with its reason;
- an orchestrator with a fresh heartbeat and a launcher whose heartbeat is stale; a landing source.

Every state change goes through UPDATE, so the database's own triggers write the history, the
failure policy's counters and the alerts, as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from hrwsi.configuration import load
from tests.integration.conftest import chain_configuration

TILES = ("32TLR", "32TMS", "31TGL", "32TNT")


@dataclass
class Scenario:
    processed: list[int]       # atmospheric_correction tasks processed (with products and children)
    children: list[int]        # their snow_cover tasks, processed
    grandchildren: list[int]   # the quicklook tasks, held (routine on hold)
    terminated: int
    running: int
    planned: list[int]
    unplannable: list[int]
    log_path: Path


def _input(db: psycopg.Connection, condition: str, path: str, tile: str, measured: datetime,
           product_id: int | None = None) -> int:
    return db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at,
                         published_at, source, product_id)
                         VALUES (%s, %s, %s, 'S2A', %s, %s, %s, %s) RETURNING id""",
                      (condition, path, tile, measured, measured + timedelta(hours=2),
                       "chaining" if product_id else "sql", product_id)).fetchone()[0]


def _task(db: psycopg.Connection, input_id: int, routine: str) -> int:
    """The task the database created with its input (trigger input_create_tasks)."""
    return db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s AND routine = %s",
                      (input_id, routine)).fetchone()[0]


def _advance(db: psycopg.Connection, task_id: int, worker: str, start: datetime, states: list[str]) -> None:
    db.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = %s,
                  planned_end = %s WHERE id = %s""", (worker, start, start + timedelta(minutes=5), task_id))
    for state in states:
        db.execute("UPDATE hrwsi.processing_task SET state = %s, attempts = attempts + (%s = 'dispatched')::int "
                   "WHERE id = %s", (state, state, task_id))


def _job(db: psycopg.Connection, task_id: int, attempt: int, routine: str, worker: str, state: str,
         exit_code: int | None, message: str, started: datetime, log: Path) -> None:
    job = f"hrwsi-{routine}-{task_id}-{attempt}"
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, exit_code, message,
                  log_path, output_dir, submitted_at, started_at)
                  VALUES (%s, %s, 'local', %s, %s, 'running', NULL, 'running', %s, %s, %s, %s)""",
               (task_id, attempt, job, worker, str(log), str(log.parent), started, started))
    if state != "running":
        db.execute("""UPDATE hrwsi.job SET state = %s, exit_code = %s, message = %s, finished_at = %s
                      WHERE task_id = %s AND attempt = %s""",
                   (state, exit_code, message, started + timedelta(seconds=42), task_id, attempt))


def build(db: psycopg.Connection, data_dir: Path, now: datetime | None = None) -> Scenario:
    now = now or datetime.now(UTC)
    load(db, chain_configuration())
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    measured = now - timedelta(days=1)
    processed, children, grandchildren = [], [], []
    for n in range(6):
        tile = TILES[n % len(TILES)]
        task = _task(db, _input(db, "l1c", f"/eodata/S2A_MSIL1C_{tile}_{n:03d}.SAFE", tile, measured), "atmospheric_correction")
        start = now - timedelta(minutes=50 - n * 3)
        _advance(db, task, f"w0{n % 3 + 1}", start, ["dispatched", "running"])
        log = logs / f"atmospheric_correction-{task}-1.log"
        log.write_text(f"reading /eodata/S2A_MSIL1C_{tile}_{n:03d}.SAFE\nwrote L2A for tile {tile}\n")
        _job(db, task, 1, "atmospheric_correction", f"w0{n % 3 + 1}", "processed", 0, "exit code 0", start, log)
        db.execute("UPDATE hrwsi.processing_task SET state = 'processed', state_reason = '1 product(s)' WHERE id = %s",
                   (task,))
        product = db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes, chained_at)
                                VALUES (%s, %s, 'L2A', 51234, now()) RETURNING id""",
                             (task, f"{data_dir}/products/S2A_L2A_{tile}_{n:03d}.json")).fetchone()[0]
        child = _task(db, _input(db, "l2a", f"{data_dir}/products/S2A_L2A_{tile}_{n:03d}.json", tile, measured,
                                 product), "snow_cover")
        _advance(db, child, f"w0{n % 3 + 1}", start + timedelta(minutes=2), ["dispatched", "running"])
        _job(db, child, 1, "snow_cover", f"w0{n % 3 + 1}", "processed", 0, "exit code 0",
             start + timedelta(minutes=2), logs / f"snow_cover-{child}-1.log")
        db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (child,))
        fsc = db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes, chained_at)
                            VALUES (%s, %s, 'FSC', 20480, now()) RETURNING id""",
                         (child, f"{data_dir}/products/S2A_FSC_{tile}_{n:03d}.json")).fetchone()[0]
        grandchildren.append(_task(db, _input(db, "fsc", f"{data_dir}/products/S2A_FSC_{tile}_{n:03d}.json", tile,
                                              measured, fsc), "quicklook"))
        processed.append(task)
        children.append(child)
    db.execute("SELECT hrwsi.hold_routine('quicklook', 'held by ops: the quicklook bucket is full')")

    terminated = _task(db, _input(db, "l1c", "/eodata/S2B_MSIL1C_32TLR_broken.SAFE", "32TLR", measured),
                       "atmospheric_correction")
    failures = [(210, "external_error", "exit code 210: the input cannot be read"),
                (210, "external_error", "exit code 210: the input cannot be read"),
                (1, "internal_error", "exit code 1: Traceback (most recent call last) ... KeyError: 'B11'")]
    for attempt, (code, state, message) in enumerate(failures, 1):
        start = now - timedelta(minutes=30 - attempt * 5)
        _advance(db, terminated, "w01", start, ["dispatched", "running"])
        log = logs / f"atmospheric_correction-{terminated}-{attempt}.log"
        log.write_text(f"attempt {attempt}\n{message}\n")
        _job(db, terminated, attempt, "atmospheric_correction", "w01", state, code, message, start, log)
        db.execute("""UPDATE hrwsi.processing_task SET state = %s, failures = failures + 1, worker = NULL,
                      planned_start = NULL, planned_end = NULL, state_reason = %s WHERE id = %s""",
                   ("terminated" if attempt == 3 else "pending", f"attempt {attempt} {state}: {message}", terminated))

    running = _task(db, _input(db, "l1c", "/eodata/S2A_MSIL1C_32TMS_now.SAFE", "32TMS", measured),
                    "atmospheric_correction")
    _advance(db, running, "w02", now - timedelta(minutes=1), ["dispatched", "running"])
    running_log = logs / f"atmospheric_correction-{running}-1.log"
    running_log.write_text("reading /eodata/S2A_MSIL1C_32TMS_now.SAFE\nband 4 of 13 <done>\n")
    _job(db, running, 1, "atmospheric_correction", "w02", "running", None, "pid 4242", now - timedelta(minutes=1),
         running_log)

    planned = []
    for n in range(12):
        tile = TILES[n % len(TILES)]
        task = _task(db, _input(db, "l1c", f"/eodata/S2B_MSIL1C_{tile}_{n:03d}_next.SAFE", tile, measured),
                     "atmospheric_correction")
        start = now + timedelta(minutes=(n // 3) * 4 + (n % 2) * 2)
        db.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = %s,
                      planned_end = %s WHERE id = %s""",
                   (f"w0{n % 3 + 1}", start, start + timedelta(minutes=6), task))
        planned.append(task)
    unplannable = []
    for n in range(2):
        task = _task(db, _input(db, "l1c", f"/eodata/S2A_MSIL1C_HUGE_{n}.SAFE", "31TGL", measured),
                     "atmospheric_correction")
        db.execute("UPDATE hrwsi.processing_task SET state_reason = %s WHERE id = %s",  # (as the planner says it)
                   (f"task {task} (routine atmospheric_correction) needs 64 CPU but the largest flavour has 4 CPU",
                    task))
        unplannable.append(task)

    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, started_at, heartbeat_at, version) VALUES
                  ('orchestrator-ops1-100-aaaaaa', 'orchestrator', 'ops1', 100, now() - interval '2 hours', now(),
                   '0.1.0'),
                  ('launcher-ops2-200-bbbbbb', 'launcher', 'ops2', 200, now() - interval '3 hours',
                   now() - interval '10 minutes', NULL),
                  ('harvester-ops3-300-cccccc', 'harvester', 'ops3', 300, now() - interval '2 hours', now(),
                   '0.1.0')""")
    db.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, next_run_at, last_run_at)
                  VALUES ('landing-l1c', 'landing_directory', 'L1C', %s, now() + interval '20 seconds',
                          now() - interval '40 seconds')""",
               (psycopg.types.json.Jsonb({"directory": str(data_dir / "landing"),
                                          "work_directory": str(data_dir / "work")}),))
    return Scenario(processed, children, grandchildren, terminated, running, planned, unplannable, running_log)


# An archive back-filled under the scenario, set-based as benchmarks/web_dashboard.py writes it (the trigger that makes
# a pending task per new input off meanwhile; tasks written with their state, their history row by their trigger):
# `count` scenes of atmospheric correction processed years ago, each with its job and product (on days long past),
# and, now, `open_count` tasks planned on the three workers, pending, and held by an operator one by one; plus
# `count` more history rows for task `busy` (a task replanned, held and released for weeks).
_ARCHIVE_INPUTS = """
INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at, created_at)
SELECT 'l1c', format('/archive/%%s/S2A_MSIL1C_%%s_T32TLR.SAFE', %(batch)s, g), '32TLR', 'S2A',
       %(since)s + g * interval '1 hour' - interval '3 hours', %(since)s + g * interval '1 hour' - interval '1 hour',
       %(since)s + g * interval '1 hour'
FROM generate_series(1, %(count)s) g
"""
_ARCHIVE_TASKS = """
INSERT INTO hrwsi.processing_task (input_id, routine, state, state_reason, worker, planned_start, planned_end, attempts,
                                   created_at, updated_at)
SELECT i.id, 'atmospheric_correction', s.state,
       CASE s.state WHEN 'on_hold' THEN 'held by an operator' WHEN 'processed' THEN '1 product(s)' END,
       CASE WHEN s.state = 'planned' THEN 'w0' || (1 + i.id %% 3) END,
       CASE WHEN s.state = 'planned' THEN now() + (i.id %% 1000) * interval '1 minute' END,
       CASE WHEN s.state = 'planned' THEN now() + (i.id %% 1000) * interval '1 minute' + interval '5 minutes' END,
       CASE WHEN s.state = 'processed' THEN 1 ELSE 0 END, i.created_at, i.created_at + interval '5 minutes'
FROM (SELECT id, created_at, row_number() OVER (ORDER BY id) AS n FROM hrwsi.input
      WHERE input_path LIKE format('/archive/%%s/%%%%', %(batch)s)) i,
     LATERAL (SELECT CASE WHEN n > %(count)s - %(open)s THEN 'planned' WHEN n > %(count)s - 2 * %(open)s THEN 'on_hold'
                          WHEN n > %(count)s - 3 * %(open)s THEN 'pending' ELSE 'processed' END AS state) s
RETURNING id, state
"""
_ARCHIVE_JOBS = """
INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, exit_code, message, owner, log_path,
                       output_dir, submitted_at, started_at, finished_at)
SELECT t.id, 1, 'local', 'hrwsi-archive-' || t.id || '-1', 'w01', 'processed', 0, 'exit code 0', 'launcher-archive',
       '/srv/logs/' || t.id || '.log', '/srv/products/task-' || t.id, t.updated_at - interval '4 minutes',
       t.updated_at - interval '3 minutes', t.updated_at
FROM hrwsi.processing_task t WHERE t.id = ANY(%(processed)s)
"""
# Each archive scene landed as a file of the landing directory, prepared (a source keeps its files' rows).
_ARCHIVE_LANDING_FILES = """
INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state, prepared_path, first_seen_at, last_seen_at,
                                updated_at)
SELECT 'landing-l1c', '/landing/' || substring(i.input_path FROM '[^/]*$'), 800000000, i.created_at, 'prepared',
       i.input_path, i.created_at, i.created_at, i.created_at
FROM hrwsi.input i WHERE i.input_path LIKE format('/archive/%%s/%%%%', %(batch)s)
"""
_ARCHIVE_PRODUCTS = """
INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes, created_at, chained_at)
SELECT t.id, '/srv/products/task-' || t.id || '/out.json', 'L2A', 40000, t.updated_at, t.updated_at
FROM hrwsi.processing_task t WHERE t.id = ANY(%(processed)s)
"""


def archive(db: psycopg.Connection, batch: int, count: int, open_count: int, busy: int,
            since: datetime | None = None) -> None:
    since = since or datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=400 * batch)
    db.execute("ALTER TABLE hrwsi.input DISABLE TRIGGER input_create_tasks")
    try:
        db.execute(_ARCHIVE_INPUTS, {"batch": batch, "count": count, "since": since})
        tasks = db.execute(_ARCHIVE_TASKS, {"batch": batch, "count": count, "open": open_count}).fetchall()
    finally:
        db.execute("ALTER TABLE hrwsi.input ENABLE TRIGGER input_create_tasks")
    processed = [task for task, state in tasks if state == "processed"]
    db.execute(_ARCHIVE_JOBS, {"processed": processed})
    db.execute(_ARCHIVE_PRODUCTS, {"processed": processed})
    db.execute(_ARCHIVE_LANDING_FILES, {"batch": batch})
    db.execute("""INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker, at)
                  SELECT %s, CASE WHEN g %% 2 = 0 THEN 'planned' ELSE 'pending' END, 'replanned ' || g, 0, NULL,
                         now() - interval '1 day' + g * interval '1 second'
                  FROM generate_series(1, %s) g""", (busy, count))
    db.execute("ANALYZE")
