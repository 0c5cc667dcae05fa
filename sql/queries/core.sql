-- Named queries of the three services. Placeholders: asyncpg ($1, $2 ...).

-- ============================================================================================
-- orchestrator
-- ============================================================================================

-- name: create_tasks_for_new_inputs
-- Take up to $1 inputs from the backlog and create their tasks, in one statement: a crash
-- before commit leaves the backlog as it was; two orchestrators never take the same input.
WITH claimed AS (
    DELETE FROM hrwsi.input_backlog b
    WHERE b.input_id IN (SELECT input_id FROM hrwsi.input_backlog ORDER BY input_id
                         LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING b.input_id
)
INSERT INTO hrwsi.processing_task (input_id, routine, state, state_reason)
SELECT i.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
       CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason END
FROM claimed
JOIN hrwsi.input i ON i.id = claimed.input_id
JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
JOIN hrwsi.processing_routine r ON r.name = c.routine
ORDER BY i.id
ON CONFLICT (input_id) DO NOTHING
RETURNING id;

-- name: link_sequential_tasks
-- A time-series routine (sequential_per_tile) needs the previous task of its tile done first.
UPDATE hrwsi.processing_task t
SET depends_on = (
    SELECT p.id FROM hrwsi.processing_task p JOIN hrwsi.input pi ON pi.id = p.input_id
    WHERE p.routine = t.routine AND pi.tile = i.tile AND p.id <> t.id AND p.state <> 'cancelled'
      AND (pi.measured_at, p.id) < (i.measured_at, t.id)
    ORDER BY pi.measured_at DESC, p.id DESC LIMIT 1)
FROM hrwsi.input i, hrwsi.processing_routine r
WHERE t.id = ANY($1::bigint[]) AND i.id = t.input_id AND r.name = t.routine
  AND r.sequential_per_tile AND i.tile IS NOT NULL;

-- name: lock_planning
-- One planner at a time across every orchestrator; released at commit.
SELECT pg_advisory_xact_lock(7250001);

-- name: planning_workers
SELECT w.name, f.name AS flavour, f.cpu::float8 AS cpu, f.ram_mb, f.disk_mb
FROM hrwsi.worker w JOIN hrwsi.flavour f ON f.name = w.flavour
WHERE w.active ORDER BY w.name;

-- name: planning_budget
SELECT cpu_max::float8 AS cpu_max, ram_max_mb, storage_max_mb, vm_max FROM hrwsi.budget;

-- name: tasks_to_plan
-- Pending tasks, with what the planner needs to know of them.
SELECT t.id, t.routine, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.expected_duration)::float8 AS duration_s,
       t.depends_on, t.not_before, r.flavour, t.state_reason
FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE t.state = 'pending' AND NOT r.on_hold
ORDER BY t.id
FOR UPDATE OF t SKIP LOCKED;

-- name: tasks_holding_capacity
-- Planned, dispatched and running tasks: they keep their worker and time in a new plan.
SELECT t.id, t.worker, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       greatest(0, extract(epoch FROM coalesce(j.started_at, t.planned_start) - $1::timestamptz))::float8 AS start_s,
       extract(epoch FROM coalesce(j.started_at, t.planned_start) + r.expected_duration - $1::timestamptz)::float8 AS end_s
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.attempt = t.attempts AND t.state IN ('queued', 'running')
WHERE t.state IN ('planned', 'dispatched', 'queued', 'running') AND t.worker IS NOT NULL;

-- name: insert_plan
INSERT INTO hrwsi.plan (task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s, figures)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
RETURNING id;

-- name: store_assignments
UPDATE hrwsi.processing_task t
SET state = 'planned', worker = a.worker, planned_start = $2::timestamptz + make_interval(secs => a.start_s),
    planned_end = $2::timestamptz + make_interval(secs => a.end_s), plan_id = $1, state_reason = NULL
FROM unnest($3::bigint[], $4::text[], $5::float8[], $6::float8[]) AS a(id, worker, start_s, end_s)
WHERE t.id = a.id AND t.state = 'pending';

-- name: release_tasks_of_inactive_workers
-- Planned tasks whose worker was deactivated (its Nomad node went down, `hrwsi workers sync`, an
-- operator) or removed go back to pending, to be planned onto the workers that remain.
UPDATE hrwsi.processing_task t
SET state = 'pending', state_reason = 'its worker ' || t.worker || ' is no longer active; planned again'
WHERE t.state = 'planned'
  AND NOT EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = t.worker AND w.active)
RETURNING t.id, t.worker;

-- name: store_unplannable_reasons
UPDATE hrwsi.processing_task t SET state_reason = u.reason
FROM unnest($1::bigint[], $2::text[]) AS u(id, reason)
WHERE t.id = u.id AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason;

-- ============================================================================================
-- launcher
-- ============================================================================================

-- name: lock_dispatch
-- One dispatcher at a time: the capacity check and the claim must not interleave.
SELECT pg_advisory_xact_lock(7250002);

-- name: dispatch_candidates
-- Planned tasks whose dependency is over and whose backoff has passed, earliest planned first.
SELECT t.id, t.routine, t.worker, t.attempts, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.processing_task d ON d.id = t.depends_on
WHERE t.state = 'planned'
  AND (d.id IS NULL OR d.state IN ('processed', 'terminated', 'cancelled'))
  AND (t.not_before IS NULL OR t.not_before <= now())
ORDER BY t.planned_start, t.id
LIMIT $1
FOR UPDATE OF t SKIP LOCKED;

-- name: capacity_in_use
SELECT t.worker, sum(r.cpu)::float8 AS cpu, sum(r.ram_mb)::bigint AS ram_mb,
       sum(r.storage_mb)::bigint AS storage_mb
FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE t.state IN ('dispatched', 'queued', 'running')
GROUP BY t.worker;

-- name: stranded_jobs
-- This launcher's jobs that have not started and whose worker is no longer active: they would wait
-- for it forever (a Nomad job pinned to a node that is gone stays blocked).
SELECT j.id, j.worker
FROM hrwsi.job j
WHERE j.owner = $1 AND j.state IN ('submitted', 'queued')
  AND NOT EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = j.worker AND w.active);

-- name: set_worker_activity
-- Follow the backend's view of its nodes: a worker is active while its node is ready and eligible.
-- Workers without a node in the backend are left as they are.
UPDATE hrwsi.worker w SET active = n.active, updated_at = now()
FROM unnest($1::text[], $2::boolean[]) AS n(name, active)
WHERE w.name = n.name AND w.active IS DISTINCT FROM n.active
RETURNING w.name, w.active;

-- name: mark_tasks_dispatched
UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = attempts + 1, state_reason = NULL
WHERE id = ANY($1::bigint[]) AND state = 'planned'
RETURNING id, attempts;

-- name: insert_jobs
INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, owner, log_path, output_dir)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
RETURNING id, task_id;

-- name: job_specs
-- What a backend needs to run (or adopt) each job.
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, t.worker,
       r.command, r.image, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type
FROM hrwsi.job j
JOIN hrwsi.processing_task t ON t.id = j.task_id
JOIN hrwsi.input i ON i.id = t.input_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE j.id = ANY($1::bigint[]);

-- name: mark_job_progress
-- queued/running as the backend reports it; never moves a job out of a final state.
WITH j AS (
    UPDATE hrwsi.job SET state = $2, message = $3,
        started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END
    WHERE id = $1 AND state IN ('submitted', 'queued', 'running') AND state <> $2
    RETURNING task_id, attempt
)
UPDATE hrwsi.processing_task t SET state = $2, state_reason = $3
FROM j WHERE t.id = j.task_id AND t.attempts = j.attempt
  AND t.state IN ('dispatched', 'queued', 'running') AND t.state <> $2;

-- name: finish_jobs
-- Record how attempts ended, many at once; a job already final is left alone (not returned). A job
-- an operator cancelled ends cancelled, whatever the backend saw when it was stopped.
UPDATE hrwsi.job j
SET state = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE o.state END, exit_code = o.exit_code,
    message = CASE WHEN j.cancel_requested THEN 'cancelled by an operator: ' || o.message ELSE o.message END,
    started_at = coalesce(j.started_at, o.started_at, now()), finished_at = coalesce(o.finished_at, now())
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[])
     AS o(id, state, exit_code, message, started_at, finished_at)
WHERE j.id = o.id AND j.state IN ('submitted', 'queued', 'running')
RETURNING j.id, j.state;

-- name: register_products
-- Every file a task wrote, as a product of its routine's output type.
INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes)
SELECT p.task_id, p.path, r.output_product_type, p.size
FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS p(task_id, path, size)
JOIN hrwsi.processing_task t ON t.id = p.task_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
ON CONFLICT (path) DO NOTHING;

-- name: tasks_processed
UPDATE hrwsi.processing_task t SET state = 'processed', state_reason = p.reason
FROM unnest($1::bigint[], $2::int[], $3::text[]) AS p(id, attempt, reason)
WHERE t.id = p.id AND t.attempts = p.attempt AND t.state IN ('dispatched', 'queued', 'running');

-- name: tasks_attempt_failed
-- After failed or lost attempts: back to pending (replanned after an exponential backoff from $5
-- seconds) or terminated. `counts`: errors count as failures of the routine, lost attempts do not.
UPDATE hrwsi.processing_task t
SET failures = t.failures + f.counts::int,
    state = CASE WHEN t.failures + f.counts::int >= r.max_attempts OR t.attempts >= r.max_attempts * 3
                 THEN 'terminated' ELSE 'pending' END,
    state_reason = f.reason,
    worker = NULL, planned_start = NULL, planned_end = NULL,
    not_before = now() + make_interval(secs => $5 * power(2, greatest(0, t.failures - 1 + f.counts::int)))
FROM unnest($1::bigint[], $2::int[], $3::bool[], $4::text[]) AS f(id, attempt, counts, reason),
     hrwsi.processing_routine r
WHERE t.id = f.id AND t.attempts = f.attempt AND r.name = t.routine AND t.state IN ('dispatched', 'queued', 'running')
RETURNING t.id, t.state, t.failures, r.max_attempts;

-- name: heartbeat_instance
INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: unregister_instance
DELETE FROM hrwsi.service_instance WHERE id = $1;

-- name: adopt_orphaned_jobs
-- Active jobs whose launcher is gone (no fresh heartbeat): take them over, atomically.
UPDATE hrwsi.job j SET owner = $1
WHERE j.state IN ('submitted', 'queued', 'running') AND j.backend = $3
  AND (j.owner IS NULL OR j.owner = $1 OR NOT EXISTS (
        SELECT 1 FROM hrwsi.service_instance s
        WHERE s.id = j.owner AND s.heartbeat_at > now() - make_interval(secs => $2)))
  AND j.id NOT IN (SELECT unnest($4::bigint[]))
RETURNING j.id;

-- ============================================================================================
-- harvester
-- ============================================================================================

-- name: chain_products
-- Turn up to $1 new products into inputs of every condition whose routine consumes their type.
-- The product is marked chained in the same statement: exactly once, even with two harvesters.
WITH claimed AS (
    UPDATE hrwsi.product p SET chained_at = now()
    WHERE p.id IN (SELECT id FROM hrwsi.product WHERE chained_at IS NULL ORDER BY id
                   LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING p.id, p.path, p.product_type, p.task_id, p.created_at
), inserted AS (
    INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at,
                             source, product_id)
    SELECT c.name, cl.path, i.tile, i.mission, i.measured_at, cl.created_at, 'chaining', cl.id
    FROM claimed cl
    JOIN hrwsi.processing_routine r ON r.input_product_type = cl.product_type
    JOIN hrwsi.processing_condition c ON c.routine = r.name AND c.active
    LEFT JOIN hrwsi.processing_task t ON t.id = cl.task_id
    LEFT JOIN hrwsi.input i ON i.id = t.input_id
    WHERE (c.tiles IS NULL OR i.tile = ANY (c.tiles))
      AND (c.measurement_window IS NULL OR i.measured_at IS NULL OR i.measured_at >= now() - c.measurement_window)
      -- a multi-input condition gets one input per complete group (triggering.py), not one per product
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name)
    ON CONFLICT (processing_condition, input_path) DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM claimed) AS products, (SELECT count(*) FROM inserted) AS inputs;

-- name: jobs_to_cancel
-- Active jobs of this launcher whose task an operator cancelled.
SELECT id FROM hrwsi.job
WHERE cancel_requested AND state IN ('submitted', 'queued', 'running') AND owner = $1;

-- ============================================================================================
-- alerts (outbox)
-- ============================================================================================

-- name: claim_alerts
SELECT id, kind, subject, body, attempts FROM hrwsi.alert
WHERE sent_at IS NULL AND attempts < $2
ORDER BY id LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: alert_sent
UPDATE hrwsi.alert SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1;

-- name: alert_failed
UPDATE hrwsi.alert SET attempts = attempts + 1, last_error = $2 WHERE id = $1;
