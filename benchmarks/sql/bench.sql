-- The benchmark's own SQL (benchmarks/*.py), as named blocks like sql/queries/*.sql, loaded with
-- hrwsi.sql_files.parse_named_blocks. Parameters are $1, $2 ... (asyncpg) or %(name)s (psycopg).

-- ============================================================================================
-- the floor: AFTER INSERT statement trigger -> pg_notify -> one listener -> one INSERT
-- ============================================================================================

-- name: floor_schema
-- The least a LISTEN/NOTIFY engine does: one notification per statement (a count, as hrwsi's
-- triggers send), and a table the listener's reaction is written to.
CREATE SCHEMA bench_floor;
CREATE TABLE bench_floor.event (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key     text NOT NULL,
    step    integer NOT NULL DEFAULT 1,
    claimed boolean NOT NULL DEFAULT false
);
CREATE INDEX event_unclaimed_idx ON bench_floor.event (id) WHERE NOT claimed;
CREATE TABLE bench_floor.reaction (
    event_id bigint PRIMARY KEY,
    key      text NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION bench_floor.notify_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_floor', (SELECT count(*) FROM new_rows)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER event_notify AFTER INSERT ON bench_floor.event
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_floor.notify_count();

-- name: floor_insert_one
INSERT INTO bench_floor.event (key) VALUES ($1);

-- name: floor_insert_burst
INSERT INTO bench_floor.event (key, step)
SELECT $1::text || g, $3::int FROM generate_series(1, $2::int) g;

-- name: floor_react
-- The reaction: one INSERT of every event above the high-water mark $1 (one driver inserts the
-- events one statement at a time, so ids arrive in order); the keys only when $2 (latency).
WITH reacted AS (
    INSERT INTO bench_floor.reaction (event_id, key)
    SELECT id, key FROM bench_floor.event WHERE id > $1 ORDER BY id
    RETURNING event_id, key
)
SELECT max(event_id) AS last, count(*) AS n, CASE WHEN $2::boolean THEN array_agg(key) END AS keys
FROM reacted;

-- name: floor_claim
-- The chain's floor: claim every unclaimed event (steps run in parallel, so ids do not commit in order).
UPDATE bench_floor.event SET claimed = true
WHERE id IN (SELECT id FROM bench_floor.event WHERE NOT claimed ORDER BY id FOR UPDATE SKIP LOCKED)
RETURNING id, key, step;

-- name: floor_next_step
INSERT INTO bench_floor.event (key, step) VALUES ($1, $2);

-- name: floor_open_events
-- Events the listener has not reacted to yet.
SELECT count(*) FROM bench_floor.event e
WHERE NOT EXISTS (SELECT 1 FROM bench_floor.reaction r WHERE r.event_id = e.id);

-- ============================================================================================
-- hrwsi
-- ============================================================================================

-- name: hrwsi_insert_one
INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ($1, $2);

-- name: hrwsi_insert_burst
INSERT INTO hrwsi.input (processing_condition, input_path)
SELECT $1::text, $2::text || g FROM generate_series(1, $3::int) g;

-- name: hrwsi_insert_series
-- A time-series back-fill: $1 inputs over $2 tiles (MGRS-like codes), one per hour per tile, oldest first.
INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
SELECT $3::text, $4::text || g,
       lpad((10 + (g % $2::int) / 676)::text, 2, '0') || chr(65 + (g % $2::int) / 26 % 26)
           || chr(65 + (g % $2::int) % 26) || 'A',
       timestamptz '2024-01-01 00:00Z' + (g / $2::int) * interval '1 hour',
       timestamptz '2024-01-01 00:00Z' + (g / $2::int) * interval '1 hour' + interval '2 hours'
FROM generate_series(0, $1::int - 1) g;

-- name: hrwsi_archive_still_pending
-- Back-fill tasks not yet queued (neither holding a worker nor planned).
SELECT count(*) FROM hrwsi.processing_task WHERE lane = 'archive' AND state = 'pending';

-- name: hrwsi_archive_queue
SELECT count(*) FILTER (WHERE state IN ('dispatched', 'queued', 'running')) AS running,
       count(*) FILTER (WHERE state = 'planned') AS waiting
FROM hrwsi.processing_task WHERE lane = 'archive';

-- name: hrwsi_open_work
-- Work not finished yet: tasks not final (a task is created with its input).
SELECT count(*) FROM hrwsi.processing_task WHERE state NOT IN ('processed', 'terminated', 'cancelled');

-- name: hrwsi_tasks_by_state
SELECT state, count(*) AS n FROM hrwsi.processing_task GROUP BY state;

-- name: hrwsi_duplicate_jobs
SELECT count(*) FROM (SELECT task_id FROM hrwsi.job GROUP BY task_id HAVING count(*) > 1) d;

-- ============================================================================================
-- an ageing hrwsi database: finished work, built set-based through the real tables
-- ============================================================================================

-- name: age_plans
-- $1 stored plans; the first plan's id.
WITH plans AS (
    INSERT INTO hrwsi.plan (created_at, task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s)
    SELECT now() - interval '400 days' + g * interval '1 hour', 1000, 3600, 3500, 10, 10, 0.1
    FROM generate_series(1, $1::int) g
    RETURNING id
)
SELECT min(id) FROM plans;

-- name: age_inputs
INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at, created_at)
SELECT 'raw', '/aged/S2_' || g || '.SAFE',
       lpad((10 + g % 300 / 676)::text, 2, '0') || chr(65 + g % 300 / 26 % 26) || chr(65 + g % 300 % 26) || 'A',
       'S2A', now() - interval '400 days' + g * interval '30 seconds',
       now() - interval '400 days' + g * interval '30 seconds' + interval '2 hours',
       now() - interval '400 days' + g * interval '30 seconds' + interval '3 hours'
FROM generate_series(1, $1::int) g;

-- name: age_tasks
-- Every input got its pending task from the input trigger; each goes through the state machine as
-- the services move it (dispatched, then processed), so every trigger runs and writes its history.
UPDATE hrwsi.processing_task t
SET state = 'dispatched', worker = 'w' || lpad((1 + t.id % 10)::text, 2, '0'), attempts = 1,
    planned_start = i.created_at + interval '1 minute', planned_end = i.created_at + interval '2 minutes',
    plan_id = $1::bigint + t.id % $2::int, created_at = i.created_at
FROM hrwsi.input i WHERE i.id = t.input_id AND t.state = 'pending';

-- name: age_tasks_processed
UPDATE hrwsi.processing_task SET state = 'processed', state_reason = '1 product(s)' WHERE state = 'dispatched';

-- name: age_jobs
INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, exit_code, message, log_path,
                       output_dir, submitted_at, started_at, finished_at, updated_at)
SELECT t.id, 1, 'dry-run', 'hrwsi-bench-' || t.id || '-1', t.worker, 'processed', 0, 'exit code 0',
       '/aged/logs/' || t.id || '.log', '/aged/products/task-' || t.id, t.planned_start, t.planned_start,
       t.planned_end, t.planned_end
FROM hrwsi.processing_task t;

-- name: age_products
INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes, created_at, chained_at)
SELECT t.id, '/aged/products/task-' || t.id || '/product', 'DONE', 1000, t.planned_end, t.planned_end
FROM hrwsi.processing_task t;

-- name: age_history
-- The triggers wrote each task's pending, dispatched and processed events; a 'planned' one (the
-- orchestrator's, for tasks that waited) is appended, for four history rows per task.
INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker, at)
SELECT t.id, 'planned', NULL, 0, t.worker, t.created_at + interval '10 seconds'
FROM hrwsi.processing_task t;

-- name: age_counts
SELECT (SELECT count(*) FROM hrwsi.processing_task) AS tasks, (SELECT count(*) FROM hrwsi.job) AS jobs,
       (SELECT count(*) FROM hrwsi.product) AS products, (SELECT count(*) FROM hrwsi.task_event) AS history;

-- ============================================================================================
-- pgqueuer (its default table names, installed by its own install step)
-- ============================================================================================

-- name: pgqueuer_open_jobs
-- Jobs still queued or picked; a finished job leaves the queue table for pgqueuer_log.
SELECT count(*) FROM pgqueuer;

-- ============================================================================================
-- how fast the machine is as a service phase starts (benchmarks/scenarios.py, machine_probe)
-- ============================================================================================

-- name: probe_table
-- In the phase's own database, dropped with it. A logged table: the commit of a row of a temporary
-- (or unlogged) table does not wait for the WAL's flush, and hrwsi's dispatch call and pgqueuer's
-- dequeue each wait for one.
CREATE TABLE bench_machine_probe (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);

-- name: probe_commit
INSERT INTO bench_machine_probe DEFAULT VALUES;

-- ============================================================================================
-- where a phase's CPU went (benchmarks/cpu_time.py)
-- ============================================================================================

-- name: database_sessions
-- The server processes of every session on this database but the caller's: the system's own
-- sessions (its pools and listeners), with the name each gave itself.
SELECT pid, coalesce(nullif(application_name, ''), '-') AS application_name
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend';
