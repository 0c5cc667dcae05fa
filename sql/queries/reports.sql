-- Read-only reports for the CLI. Placeholders: psycopg (%(name)s).

-- name: report_task_counts
SELECT state, count(*) AS n FROM hrwsi.processing_task GROUP BY state ORDER BY state;

-- name: report_job_counts
SELECT state, count(*) AS n FROM hrwsi.job GROUP BY state ORDER BY state;

-- name: report_recent_failures
SELECT j.task_id, t.routine, j.attempt, j.state, j.exit_code, j.message, j.finished_at, j.log_path
FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
WHERE j.state IN ('internal_error', 'external_error', 'lost')
ORDER BY j.finished_at DESC NULLS LAST, j.id DESC
LIMIT %(limit)s;

-- name: report_unplannable
SELECT id, routine, state_reason FROM hrwsi.processing_task
WHERE state = 'pending' AND state_reason IS NOT NULL ORDER BY id LIMIT %(limit)s;

-- name: report_tasks
SELECT t.id, t.routine, t.state, i.tile, t.worker, t.attempts, t.failures, t.planned_start, t.updated_at,
       i.input_path, t.state_reason
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
WHERE (%(state)s::text IS NULL OR t.state = %(state)s)
  AND (%(routine)s::text IS NULL OR t.routine = %(routine)s)
  AND (%(tile)s::text IS NULL OR i.tile = %(tile)s)
ORDER BY t.id DESC
LIMIT %(limit)s;

-- name: report_task
SELECT t.id, t.routine, t.state, t.state_reason, t.worker, t.planned_start, t.planned_end, t.depends_on,
       t.attempts, t.failures, t.not_before, t.created_at, t.updated_at, t.plan_id,
       i.id AS input_id, i.processing_condition, i.input_path, i.tile, i.mission, i.measured_at, i.published_at
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
WHERE t.id = %(task_id)s;

-- name: report_task_history
SELECT state, reason, attempts, worker, at FROM hrwsi.task_event WHERE task_id = %(task_id)s ORDER BY id;

-- name: report_task_jobs
SELECT attempt, backend, backend_job_id, worker, state, exit_code, message, submitted_at, started_at,
       finished_at, log_path
FROM hrwsi.job WHERE task_id = %(task_id)s ORDER BY attempt;

-- name: report_task_products
SELECT path, product_type, size_bytes, created_at FROM hrwsi.product WHERE task_id = %(task_id)s ORDER BY id;

-- name: report_products
SELECT product_type, count(*) AS n FROM hrwsi.product GROUP BY product_type ORDER BY product_type;

-- name: report_actual_makespan
SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM hrwsi.job;

-- name: report_planned_makespan
-- From the first planned start to the last planned end over all tasks that were planned.
SELECT extract(epoch FROM max(planned_end) - min(planned_start))::float8
FROM hrwsi.processing_task WHERE planned_start IS NOT NULL;

-- name: report_service_health
SELECT id, kind, host, pid, heartbeat_at, now() - heartbeat_at < make_interval(secs => %(fresh_s)s) AS fresh
FROM hrwsi.service_instance WHERE kind = %(kind)s ORDER BY heartbeat_at DESC;

-- name: report_plan
SELECT id, created_at, task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s
FROM hrwsi.plan WHERE id = coalesce(%(plan_id)s::bigint, (SELECT max(id) FROM hrwsi.plan));

-- name: report_plan_tasks
-- The tasks of a plan with their planned times, in seconds from the plan's creation.
SELECT t.id, t.routine, r.cpu::float8, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.expected_duration)::float8 AS duration_s, t.depends_on, t.worker,
       extract(epoch FROM t.planned_start - p.created_at)::float8 AS start_s,
       extract(epoch FROM t.planned_end - p.created_at)::float8 AS end_s
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
JOIN hrwsi.plan p ON p.id = t.plan_id
WHERE t.plan_id = %(plan_id)s AND t.worker IS NOT NULL AND t.planned_start IS NOT NULL
ORDER BY t.id;

-- name: report_largest_plan
SELECT id FROM hrwsi.plan ORDER BY task_count DESC, id DESC LIMIT 1;
