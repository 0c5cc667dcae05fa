-- Named queries of the three services. Placeholders: asyncpg ($1, $2 ...).

-- ============================================================================================
-- orchestrator
-- ============================================================================================

-- name: planning_workers
SELECT w.name, f.name AS flavour, f.cpu::float8 AS cpu, f.ram_mb, f.disk_mb
FROM hrwsi.worker w JOIN hrwsi.flavour f ON f.name = w.flavour
WHERE w.active ORDER BY w.name;

-- name: planning_budget
SELECT cpu_max::float8 AS cpu_max, ram_max_mb, storage_max_mb, vm_max, plan_mode,
       extract(epoch FROM plan_horizon)::float8 AS plan_horizon_s
FROM hrwsi.budget;

-- name: plan_generation
-- Read in the planning snapshot; hrwsi.store_plan stores the plan only if it did not move.
SELECT generation FROM hrwsi.plan_generation;

-- name: tasks_to_plan
-- Pending tasks that waited at least $3 seconds (younger ones are the launcher's fast path's: they
-- start at once where capacity is free), with what the planner needs to know of them (read in a
-- snapshot, no lock held: hrwsi.store_plan updates only those still pending). A time-series task
-- that waits for the upstream work of a scene sensed before it (waits_for_upstream, migration 0072)
-- is not planned: it stays pending with its reason, unless an operator released it.
SELECT t.id, t.routine, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.expected_duration)::float8 AS duration_s,
       CASE WHEN t.dependency_waived THEN NULL ELSE t.depends_on END AS depends_on, t.not_before, r.flavour,
       t.state_reason, t.priority, extract(epoch FROM t.deadline_at - $1::timestamptz)::float8 AS deadline_s,
       t.avoid_worker  -- (where its last attempt could not be placed: planned elsewhere if it fits elsewhere, 0087)
FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE t.state = 'pending' AND NOT r.on_hold AND t.updated_at <= $1::timestamptz - make_interval(secs => $3)
  AND (t.waits_for_upstream IS NULL OR t.dependency_waived)
ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
LIMIT $2;

-- name: fast_path_has_room
-- Whether a launcher (fresh lease, $1 seconds) can start the most urgent pending task that waits for
-- nothing now: it fits on the free capacity of an active worker of its flavour, within every budget.
-- Then the launcher's fast path is taking the pending work (a burst on free capacity) and planning
-- it would be work thrown away. The worker where its last attempt could not be placed (avoid_worker,
-- migration 0087) is no room for it: dispatch does not put it there while another fits it. Nor is room a hand-over
-- hold keeps for an urgent chain (migration 0120) for a less urgent task: dispatch keeps it from it, and planning
-- waited for the fast path (up to PLAN_POSTPONE_MAX_S) while back-fill waited for held room.
WITH head AS (
    SELECT r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram, r.storage_mb::float8 AS disk, r.flavour, t.avoid_worker,
           t.priority
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
    WHERE t.state = 'pending' AND NOT r.on_hold AND (t.not_before IS NULL OR t.not_before <= now())
      AND (t.depends_on IS NULL OR t.dependency_waived) AND (t.waits_for_upstream IS NULL OR t.dependency_waived)
    ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
    LIMIT 1
), usage AS (
    -- (each task in flight at what it was dispatched with, if its routine changed since, as hrwsi.dispatch
    -- counts it: migration 0067)
    SELECT u.worker, sum(u.cpu)::float8 AS cpu, sum(u.ram)::float8 AS ram, sum(u.disk)::float8 AS disk
    FROM (SELECT t.worker, CASE WHEN t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
                 CASE WHEN t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END::float8 AS ram,
                 CASE WHEN t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END::float8 AS disk
          FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
          WHERE t.state IN ('dispatched', 'queued', 'running')
          UNION ALL
          -- (the hand-over holds that count, as hrwsi.dispatch reads them, for a less urgent head only)
          SELECT h.worker, h.cpu, h.ram_mb, h.storage_mb
          FROM hrwsi.handover_hold h JOIN hrwsi.processing_task t ON t.id = h.task_id
          WHERE (SELECT hd.priority > 0 FROM head hd) AND h.until > now()
            AND EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = h.worker AND w.active)
            AND CASE h.kind WHEN 'next_step' THEN t.state = 'processed' ELSE t.state IN ('pending', 'planned') END) u
    GROUP BY u.worker
), total AS (
    SELECT coalesce(sum(u.cpu), 0) AS cpu, coalesce(sum(u.ram), 0) AS ram, coalesce(sum(u.disk), 0) AS disk,
           count(u.worker) AS busy
    FROM usage u
)
SELECT EXISTS (SELECT 1 FROM hrwsi.service_instance s
               WHERE s.kind = 'launcher' AND s.heartbeat_at > now() - make_interval(secs => $1))
   AND EXISTS (
    SELECT 1
    FROM head h CROSS JOIN total tot CROSS JOIN hrwsi.budget b
    JOIN hrwsi.worker w ON w.active AND (h.flavour IS NULL OR w.flavour = h.flavour)
                           AND w.name IS DISTINCT FROM h.avoid_worker
    JOIN hrwsi.flavour f ON f.name = w.flavour
    LEFT JOIN usage u ON u.worker = w.name
    WHERE coalesce(u.cpu, 0) + h.cpu <= f.cpu + 1e-9 AND coalesce(u.ram, 0) + h.ram <= f.ram_mb
      AND coalesce(u.disk, 0) + h.disk <= f.disk_mb
      AND (b.cpu_max IS NULL OR tot.cpu + h.cpu <= b.cpu_max + 1e-9)
      AND (b.ram_max_mb IS NULL OR tot.ram + h.ram <= b.ram_max_mb)
      AND (b.storage_max_mb IS NULL OR tot.disk + h.disk <= b.storage_max_mb)
      AND (b.vm_max IS NULL OR u.worker IS NOT NULL OR tot.busy < b.vm_max));

-- name: youngest_pending_age
-- How long, at $2 (the time tasks_to_plan was given), the most recently pending task has waited
-- (NULL: none is younger than $1 seconds). By the same clock as tasks_to_plan: read by the server's
-- now(), a task tasks_to_plan found too young by the orchestrator's clock (a few milliseconds behind
-- the server's) could be old enough here, and no later round was set for it: the last inputs of a
-- series waited for the backstop poll (a minute; a CI run of the orchestrator's test).
SELECT extract(epoch FROM $2::timestamptz - max(t.updated_at))::float8
FROM hrwsi.processing_task t
WHERE t.state = 'pending' AND t.updated_at > $2::timestamptz - make_interval(secs => $1);

-- name: store_plan
SELECT * FROM hrwsi.store_plan($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17);

-- name: promote_aged_tasks
SELECT hrwsi.promote_aged_tasks();

-- name: recheck_upstream_waits
-- The time-series tasks whose upstream task is over but still wait (its routine no longer feeds the
-- series, or its end found the series' lock busy) decide again; how many wait no more (migration 0072).
SELECT hrwsi.recheck_upstream_waits();

-- name: raise_deadline_alerts
-- deadline_at_risk (the plan ends a task after its deadline) and deadline_missed, once per task.
SELECT at_risk, missed FROM hrwsi.raise_deadline_alerts();

-- name: tasks_holding_capacity
-- Dispatched and running tasks, and planned tasks at least as urgent as $2 (the least urgent priority
-- being planned): they keep their worker and time in a new plan. Less urgent planned tasks do not hold
-- capacity against more urgent work: it takes their queue position (ADR 0009; the orchestrator keeps,
-- for each priority it plans, the planned tasks at least as urgent as it). Seconds from $1 (the plan's
-- time zero), each task for as long as it is expected to take:
-- - a planned task from its planned start, or from now if that has passed (it has not started: it needs
--   its whole expected duration still); a dispatched or queued one that has not started, from now;
-- - a running task until its expected end; past it, it is still running and holds its capacity from
--   now for as long again as it has overrun so far, at least a tenth of its expected duration (and a
--   second), never beyond its routine's timeout, when it is stopped. (All of them were squeezed into
--   the plan's first second once their planned start or expected end had passed, and new work was
--   planned on capacity they held: peak use 42 CPU on a budget of 8.)
-- A task in flight holds what it was dispatched with if its routine changed since (migration 0067), a
-- planned one what its routine asks now.
-- And the hand-over holds that count (migration 0120; as hrwsi.dispatch reads them), state 'handover_hold', id the
-- negated id of the task whose room is kept (never a task's), from now until each ends: the orchestrator counts them
-- against less urgent priorities only, as dispatch does (a back-fill planned there started only once the hold ended,
-- not when planned).
SELECT t.id, t.worker, t.state, t.priority,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb,
       x.start_s,
       CASE WHEN x.ran_s IS NULL THEN x.start_s + x.duration_s
            WHEN x.ran_s < x.duration_s THEN x.duration_s - x.ran_s
            ELSE least(greatest(x.ran_s - x.duration_s, x.duration_s / 10, 1.0),
                       greatest(coalesce(x.timeout_s, 'infinity') - x.ran_s, 1.0)) END AS end_s
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.attempt = t.attempts AND t.state IN ('queued', 'running')
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM r.expected_duration)::float8 AS duration_s,
           extract(epoch FROM $1::timestamptz - j.started_at)::float8 AS ran_s,
           extract(epoch FROM r.timeout)::float8 AS timeout_s,
           CASE WHEN t.state = 'planned'
                THEN greatest(0, extract(epoch FROM t.planned_start - $1::timestamptz))::float8
                ELSE 0::float8 END AS start_s) x
WHERE t.state IN ('planned', 'dispatched', 'queued', 'running') AND t.worker IS NOT NULL
  AND (t.state <> 'planned' OR t.priority <= $2)
UNION ALL
SELECT -h.task_id, h.worker, 'handover_hold', NULL, h.cpu, h.ram_mb::integer, h.storage_mb::integer, 0::float8,
       extract(epoch FROM h.until - $1::timestamptz)::float8
FROM hrwsi.handover_hold h JOIN hrwsi.processing_task t ON t.id = h.task_id
WHERE $2 > 0 AND h.until > $1::timestamptz
  AND EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = h.worker AND w.active)
  AND CASE h.kind WHEN 'next_step' THEN t.state = 'processed' ELSE t.state IN ('pending', 'planned') END;

-- name: release_tasks_of_inactive_workers
-- Planned tasks whose worker was deactivated (its Nomad node went down, `hrwsi workers sync`, an
-- operator) or removed go back to pending, to be planned onto the workers that remain.
-- Worker and planned times are cleared, as every other way back to pending does (a pending task
-- named the worker it no longer has); the worker is returned as the locked row had it.
WITH gone AS (
    SELECT t.id, t.worker FROM hrwsi.processing_task t
    WHERE t.state = 'planned' AND NOT EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = t.worker AND w.active)
    ORDER BY t.id  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    FOR UPDATE OF t
)
UPDATE hrwsi.processing_task t
SET state = 'pending', state_reason = 'its worker ' || g.worker || ' is no longer active; planned again',
    worker = NULL, planned_start = NULL, planned_end = NULL
FROM gone g
WHERE t.id = g.id
RETURNING t.id, g.worker;

-- ============================================================================================
-- launcher
-- ============================================================================================

-- name: dispatch
-- Claim what fits now, in serving order, fenced by the caller's lease; returns (job, work_waiting,
-- holds_end_in) rows: a hrwsi.job_spec per job to submit, or one row without a job, whether work waits, and in
-- how many seconds the first hand-over hold left ends (NULL: none; migration 0120).
SELECT job, work_waiting, holds_end_in FROM hrwsi.dispatch($1, $2, $3, $4, $5);

-- name: record_backend_job_id
-- The backend runs a claimed attempt under another job ID than dispatch made (a job this database does
-- not know held that one: NomadBackend, migration 0080), with an output directory and a log of its own
-- (claims_own_spec: that job may still write in the first ones): recorded while the job is active and ours,
-- fenced by our lease, before that ID is registered; no row when it is not.
UPDATE hrwsi.job SET backend_job_id = $4, output_dir = $5, log_path = $6
WHERE id = $3 AND owner = $1 AND state IN ('submitted', 'queued', 'running') AND hrwsi.lease_is_fresh($1, $2)
RETURNING id;

-- name: lane_priorities
-- Each lane's priority (0 is the most urgent): the order in which jobs claimed ahead of a
-- slot-limited backend take its slots.
SELECT name, priority FROM hrwsi.lane;

-- name: record_outcomes
-- How attempts ended, their products and their tasks' next states, in one call fenced by the lease.
SELECT * FROM hrwsi.record_outcomes($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- name: end_task_refused_by_backend
-- A job the backend refused for the task's own data (a path Nomad would interpolate): no attempt of
-- it can ever run. The attempt ends internal_error with fault stopped_by_hrwsi (hrwsi would not start
-- it; the failure policy, hrwsi.apply_failure_policy, counts no outcome with a fault, so its routine
-- is not charged) and its task is terminated with the reason in the same statement (a task sent back
-- to pending cannot be terminated), without a failure. Fenced by the lease: $1 the launcher's
-- identity, $2 the lease (s), $3 the job, $4 the reason. No row back: not this launcher's job any more.
-- The lease is checked before the job is looked for, whatever the job's row (a condition on no column, a
-- one-time filter): joined to the row, it was checked only for a row found, and a launcher whose lease had
-- lapsed was told of a job gone (retention, another owner) as if it still held its lease (migration 0098's
-- review).
WITH lease AS MATERIALIZED (
    SELECT true AS checked FROM (SELECT hrwsi.require_lease($1, $2)) x
), ended AS (
    UPDATE hrwsi.job j SET state = 'internal_error', message = $4, fault = 'stopped_by_hrwsi',
                           finished_at = now(), updated_at = now()
    WHERE (SELECT l.checked FROM lease l) AND j.id = $3 AND j.owner = $1 AND j.state IN ('submitted', 'queued', 'running')
    RETURNING j.task_id, j.attempt
)
UPDATE hrwsi.processing_task t
SET state = 'terminated', state_reason = format('attempt %s refused by the backend: %s', ended.attempt, $4::text),
    worker = NULL, planned_start = NULL, planned_end = NULL
FROM ended
WHERE t.id = ended.task_id AND t.attempts = ended.attempt AND t.state IN ('dispatched', 'queued', 'running')
RETURNING t.id, t.state;

-- name: retry_due_in
-- Seconds until the first of these tasks' retries may start (the end of its backoff, not_before);
-- NULL when none waits for one.
SELECT extract(epoch FROM min(t.not_before) - now())::float8
FROM hrwsi.processing_task t
WHERE t.id = ANY ($1::bigint[]) AND t.state IN ('pending', 'planned') AND t.not_before > now();

-- name: stranded_jobs
-- This launcher's jobs that have not started and whose worker has not been active for $2 seconds:
-- they would wait for it forever (a Nomad job pinned to a node that is gone stays blocked). A node
-- that is down for a moment is waited for: stopping its jobs as it comes back kills them as they start.
-- With $3, that one job only: checked again just before it is stopped (its worker may be back).
SELECT j.id, j.worker
FROM hrwsi.job j
WHERE j.owner = $1 AND j.state IN ('submitted', 'queued') AND ($3::bigint IS NULL OR j.id = $3)
  AND NOT EXISTS (SELECT 1 FROM hrwsi.worker w
                  WHERE w.name = j.worker AND (w.active OR w.updated_at > now() - make_interval(secs => $2)));

-- name: set_worker_activity
-- Follow the backend's view of its nodes: a worker is active while its node is ready and eligible.
-- Workers without a node in the backend are left as they are.
UPDATE hrwsi.worker w SET active = n.active, updated_at = now()
FROM unnest($1::text[], $2::boolean[]) AS n(name, active)
WHERE w.name = n.name AND w.active IS DISTINCT FROM n.active
RETURNING w.name, w.active;

-- name: mark_jobs_progress
-- How jobs progressed (queued/running, the latest per job), written together: $1 job ids, $2 states,
-- $3 reasons, $4 when each was seen, $5 the launcher identity that followed each (hrwsi.mark_jobs_progress).
SELECT hrwsi.mark_jobs_progress($1, $2, $3, $4, $5);

-- name: take_backend_scope
-- Where this installation's jobs are (Nomad: its namespace), taken by a launcher at start, or refused
-- while jobs or launchers are elsewhere (migration 0070); returns what to say, or NULL. Called in the
-- transaction that registers the launcher (register_instance): the installation's row it locks stays
-- locked until that launcher is visible, so two launchers starting at once cannot both pass.
SELECT hrwsi.take_backend_scope($1, $2, $3);

-- name: register_instance
-- A new lease: every start, and every time a lease lapsed (a paused process gets a new identity).
-- Idempotent: an INSERT whose answer was lost with its connection is simply done again.
-- Returns the database's now(), which the service measures its clock against (DatabaseClock).
-- $7, $8: where its hrwsi package is and the fingerprint of its files at start (migration 0074).
-- $9: the identity of its process (hrwsi.process_identity, migration 0081).
INSERT INTO hrwsi.service_instance (id, kind, host, pid, version, site, code_dir, code_fingerprint, process_identity)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
RETURNING heartbeat_at;

-- name: leases_of_this_host
-- The other instances of kind $1 on host $2 whose lease ($4 s) is fresh and whose process is identified
-- (migration 0081): a new instance checks whether each is alive (hrwsi.process_identity.verdict). $3:
-- the caller's own identity.
SELECT id, pid, process_identity, extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM hrwsi.service_instance
WHERE kind = $1 AND host = $2 AND id <> $3 AND process_identity IS NOT NULL
  AND heartbeat_at > now() - make_interval(secs => $4);

-- name: take_over_dead_lease
-- End the lease of an instance proven dead (hrwsi.process_identity.verdict), as its expiry would: its
-- heartbeat set back by the lease ($4 s), so that every check of a lease (adoption, fencing, the harvest
-- sources it claimed) finds it lapsed. Only while it is the process that was judged ($2 its pid, $3 its
-- identity) and still fresh. Its real last heartbeat is kept, with the instance that took it over ($5),
-- when, and why ($6), for status and the dashboard (migration 0082: they showed a heartbeat a lease older
-- than the real one, and nothing of the takeover). One row back: taken over.
UPDATE hrwsi.service_instance
SET heartbeat_at = now() - make_interval(secs => $4), last_heartbeat_at = heartbeat_at, taken_over_by = $5,
    taken_over_at = now(), taken_over_why = $6
WHERE id = $1 AND pid = $2 AND process_identity = $3 AND heartbeat_at > now() - make_interval(secs => $4)
RETURNING id;

-- name: renew_lease
-- Renew only a lease that has not lapsed; no row back means it lapsed (or was removed): the
-- instance may have been declared dead and its work adopted, so it must not act under this id.
-- And the newest migration the database records: one a newer hrwsi applied while this service
-- runs is told in its log (hrwsi.service.Service._heartbeat_once). $3, $4: what the service cannot
-- do now and since when (NULL: nothing), for `hrwsi status` and the dashboard (migration 0053).
-- And how full the server's notification queue is (0-1): full, every write of hrwsi fails.
UPDATE hrwsi.service_instance SET heartbeat_at = now(), problem = $3, problem_since = $4
WHERE id = $1 AND heartbeat_at > now() - make_interval(secs => $2)
RETURNING heartbeat_at, (SELECT max(version) FROM public.hrwsi_schema_migration) AS newest_migration,
          pg_notification_queue_usage() AS notification_queue_usage;

-- name: mark_stopping
-- A launcher that waits for its jobs as it stops (HRWSI_SHUTDOWN_GRACE_S): what it waits for and when it stops the jobs
-- still running ($3), since its first call, for `hrwsi status` and the dashboard (migration 0121); its lease renewed
-- with it, as a heartbeat's (a service's heartbeat ends with its loop: a grace longer than the lease lapsed it, and
-- another launcher adopted the jobs this one still waited for). Only a lease that has not lapsed ($2 s): no row back,
-- it lapsed.
UPDATE hrwsi.service_instance SET heartbeat_at = now(), stopping_since = coalesce(stopping_since, now()), stopping = $3
WHERE id = $1 AND heartbeat_at > now() - make_interval(secs => $2)
RETURNING stopping_since;

-- name: oldest_open_transaction
-- The session whose transaction has been open longest (not this one): a session that LISTENs
-- and stays in a transaction holds the notification queue's tail (PostgreSQL frees the queue up to
-- what every listener has read, and a listener reads between transactions).
SELECT pid, usename AS role, application_name, now() - xact_start AS open_for
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
ORDER BY xact_start
LIMIT 1;

-- name: unregister_instance
-- A service that stops: its identity, and those it held before its lease lapsed (a paused process
-- goes on under a new one; its jobs were adopted, by itself or another launcher).
DELETE FROM hrwsi.service_instance WHERE id = ANY ($1::text[]);

-- name: adopt_orphaned_jobs
-- Active jobs whose launcher is gone (no fresh lease): take them over, atomically, only while our
-- own lease is fresh; returns their hrwsi.job_spec rows. $5, our site (the local backend): only the
-- jobs of a launcher of the same site, whose attempts' files we see (a launcher whose row is gone,
-- pruned after dead_service_hours, or of a version that records no site, is anyone's).
WITH adopted AS (
    UPDATE hrwsi.job j SET owner = $1
    WHERE j.state IN ('submitted', 'queued', 'running') AND j.backend = $3
      AND hrwsi.lease_is_fresh($1, $2)
      AND (j.owner IS NULL OR j.owner = $1 OR NOT hrwsi.lease_is_fresh(j.owner, $2))
      AND ($5::text IS NULL OR j.owner IS NULL
           OR NOT EXISTS (SELECT 1 FROM hrwsi.service_instance o WHERE o.id = j.owner AND o.site <> $5))
      AND j.id NOT IN (SELECT unnest($4::bigint[]))
    RETURNING j.id
)
SELECT s.* FROM hrwsi.job_spec s JOIN adopted a ON a.id = s.job_id;

-- ============================================================================================
-- harvester
-- ============================================================================================

-- name: chaining_waits_for_corrections
-- First in the transaction of chain_products, chain_products_around_busy_series and
-- multi_input_create_complete_groups: no input is corrected while they run, and they run after a correction
-- under way, on what it marked (migration 0097: hrwsi.correct_input takes the lock exclusively). A statement
-- that chained a product of the old version while the correction ran made a task from it that the
-- correction had not seen. Its own statement: a statement's snapshot is taken before its locks are, and
-- would not see the correction it waited for.
SELECT pg_advisory_xact_lock_shared(7250098, 1);

-- name: correction_under_way
-- The session that holds the lock of chaining_waits_for_corrections exclusively (hrwsi.correct_input): the
-- correction chaining waited for, named when the wait ran out (migration 0102). pg_locks and pg_stat_activity are
-- views of the server's memory: read after the wait, the correction may have ended meanwhile (no row).
SELECT a.pid, a.usename AS role, a.application_name, now() - a.xact_start AS open_for
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = 7250098::oid AND l.objid = 1::oid AND l.objsubid = 2
  AND l.mode = 'ExclusiveLock' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY a.xact_start
LIMIT 1;

-- name: inputs_of_chained_products
-- Part of chain_products and chain_products_around_busy_series (the CTE `inserted`, after `claimed`,
-- the products a statement took): the inputs made of them, by the rules of chaining. Written once:
-- the two statements kept it in step by hand.
INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at,
                         source, product_id, lane, campaign_id)
SELECT c.name, cl.path, i.tile, i.mission, i.measured_at, cl.created_at, 'chaining', cl.id,
       CASE WHEN k.id IS NOT NULL THEN k.lane WHEN upstream.priority > downstream.priority THEN t.lane END, k.id
FROM claimed cl
JOIN hrwsi.processing_routine r ON r.input_product_type = cl.product_type
JOIN hrwsi.processing_condition c ON c.routine = r.name AND c.active
JOIN hrwsi.lane downstream ON downstream.name = c.lane
LEFT JOIN hrwsi.processing_task t ON t.id = cl.task_id
LEFT JOIN hrwsi.lane upstream ON upstream.name = t.lane
LEFT JOIN hrwsi.input i ON i.id = t.input_id
LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id
WHERE (c.tiles IS NULL OR i.tile = ANY (c.tiles))
  AND (k.id IS NOT NULL OR upstream.priority > downstream.priority OR c.measurement_window IS NULL
       OR i.measured_at IS NULL OR i.measured_at >= now() - c.measurement_window)
  -- (a cancelled campaign's products made before its cancel made new tasks of it after; migration 0058)
  AND (t.campaign_id IS NULL OR (k.chain AND k.cancelled_at IS NULL))
  -- a multi-input condition gets one input per complete group (triggering.py), not one per product
  AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name)
ON CONFLICT (processing_condition, input_path) WHERE superseded_by IS NULL DO NOTHING
RETURNING id

-- name: chain_products
-- (after chaining_waits_for_corrections, in its transaction)
-- Turn up to $1 new products into inputs of every condition whose routine consumes their type.
-- The product is marked chained in the same statement: exactly once, even with two harvesters.
-- A campaign's product becomes an input of the same campaign, in its lane (ADR 0010), and only
-- when the campaign chains and was not cancelled. A back-fill's product (its task in a lane less
-- urgent than the next condition's) stays in its lane: it has no deadline there, and never competes with fresh scenes
-- (ADR 0009; in the next condition's lane, with a deadline from a sensing months old, it was
-- served before them). Measurement windows are for fresh scenes, not for reprocessing or back-fill.
WITH claimed AS (
    UPDATE hrwsi.product p SET chained_at = now()
    WHERE p.id IN (SELECT id FROM hrwsi.product WHERE chained_at IS NULL ORDER BY id
                   LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING p.id, p.path, p.product_type, p.task_id, p.created_at
), inserted AS (
    -- include: inputs_of_chained_products
)
SELECT (SELECT count(*) FROM claimed) AS products, (SELECT count(*) FROM inserted) AS inputs;

-- name: chain_products_around_busy_series
-- (after chaining_waits_for_corrections, in its transaction)
-- chain_products, but leaving for later each product whose time series another transaction holds
-- (the lock, 7250010 and the key of routine/tile, that the INSERT of its inputs takes: a data engineer's INSERT not
-- yet committed): the statement tries each series' lock without waiting and claims only products
-- whose series it got. Run only after chain_products waited lock_timeout for such a lock, and until
-- no product waits: chain_products took products in id order, so one busy series held the chaining
-- of every tile and routine for as long as that transaction stayed open (found by exploratory
-- testing).
-- The batch is picked first (MATERIALIZED, ordered, with the LIMIT), and only its products' series
-- are tried: try-locks in the candidates' WHERE clause were taken for as many products as the plan
-- read (with small statistics a hash join and a Sort over every unchained product), each held to
-- the end of the transaction, blocking data engineers' INSERTs into those series meanwhile (found
-- by review). The batch leaves out the products of series another session holds now (pg_locks, a
-- view of the server's memory that takes no lock), so that a busy series whose products come first
-- does not fill every batch; a series taken between that read and the try-lock leaves its products
-- for later too.
-- `waiting`: the products that wait for a series another session holds: in the batch, those whose
-- try-lock failed; past it, those of a series held by a session of no service of hrwsi (a data
-- engineer's). Not those past the batch otherwise, nor those another harvester replica claims (SKIP
-- LOCKED), nor those of a series a service holds for the length of its statement: counted, they
-- kept the harvester saying that products waited, and in this mode, while a replica simply chained
-- (found by review).
WITH held AS MATERIALIZED (
    SELECT l.objid::bigint AS key, bool_and(starts_with(a.application_name, 'hrwsi-')) AS by_services
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7250010::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.pid <> pg_backend_pid()
    GROUP BY l.objid
), unchained AS NOT MATERIALIZED (
    -- each unchained product's series, as the lock keys the INSERT of its inputs takes
    -- (hrwsi.create_tasks_for_new_inputs, hrwsi.wait_for_a_series): a routine reading it that is a
    -- time series, and each time series reading what such a routine writes
    SELECT p.id, ARRAY(
               SELECT DISTINCT hrwsi.series_lock_key(s.routine, i.tile)
               FROM hrwsi.processing_routine r
               JOIN hrwsi.processing_condition c ON c.routine = r.name AND c.active
               LEFT JOIN hrwsi.processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
               CROSS JOIN LATERAL (VALUES (CASE WHEN r.sequential_per_tile THEN r.name END), (d.name)) s(routine)
               WHERE r.input_product_type = p.product_type AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
                 AND s.routine IS NOT NULL) AS series
    FROM hrwsi.product p
    LEFT JOIN hrwsi.processing_task t ON t.id = p.task_id
    LEFT JOIN hrwsi.input i ON i.id = t.input_id
    WHERE p.chained_at IS NULL
), batch AS MATERIALIZED (
    -- (only reads: it may read every unchained product, whatever the plan)
    SELECT u.id, u.series FROM unchained u
    WHERE NOT EXISTS (SELECT 1 FROM unnest(u.series) k(key) JOIN held h ON h.key = (k.key::bigint & 4294967295))
    ORDER BY u.id LIMIT $1
), locked AS MATERIALIZED (
    -- the batch's products that no other harvester claims (nor chained since the statement began)
    SELECT p.id FROM hrwsi.product p
    WHERE p.id IN (SELECT id FROM batch) AND p.chained_at IS NULL
    FOR UPDATE OF p SKIP LOCKED
), tried AS MATERIALIZED (
    -- every series of every product locked, each tried once (an aggregate does not stop early)
    SELECT b.id, coalesce(bool_and(pg_try_advisory_xact_lock(7250010, k.key)), true) AS got
    FROM batch b JOIN locked USING (id) LEFT JOIN LATERAL unnest(b.series) k(key) ON true
    GROUP BY b.id
), claimed AS (
    UPDATE hrwsi.product p SET chained_at = now()
    WHERE p.id IN (SELECT id FROM tried WHERE got)
    RETURNING p.id, p.path, p.product_type, p.task_id, p.created_at
), inserted AS (
    -- include: inputs_of_chained_products
)
SELECT (SELECT count(*) FROM claimed) AS products, (SELECT count(*) FROM inserted) AS inputs,
       (SELECT count(*) FROM tried WHERE NOT got)
       + CASE WHEN EXISTS (SELECT 1 FROM held WHERE NOT by_services) THEN (
             SELECT count(*) FROM unchained u
             WHERE EXISTS (SELECT 1 FROM unnest(u.series) k(key)
                           JOIN held h ON h.key = (k.key::bigint & 4294967295) AND NOT h.by_services)
               AND u.id NOT IN (SELECT id FROM batch))
         ELSE 0 END AS waiting;

-- name: jobs_to_cancel
-- Active jobs of this launcher whose task an operator cancelled, with their state (one that runs or waits in the
-- backend is said to be stopping until it ends).
SELECT id, state FROM hrwsi.job
WHERE cancel_requested AND state IN ('submitted', 'queued', 'running') AND owner = $1;

-- ============================================================================================
-- alerts (outbox)
-- ============================================================================================

-- name: claim_alerts
SELECT id, kind, subject, body, attempts FROM hrwsi.alert
WHERE sent_at IS NULL AND attempts < $2
ORDER BY id LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: alerts_sent
-- (one alert, or the alerts of one digest: alerts.send_pending_alerts)
UPDATE hrwsi.alert SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY ($1::bigint[]);

-- name: alerts_failed
UPDATE hrwsi.alert SET attempts = attempts + 1, last_error = $2 WHERE id = ANY ($1::bigint[]);

-- name: job_as_recorded
-- A job's state and owner as the database has them: what the launcher says when the outcome it
-- wrote was not taken (recorded already, its answer lost with a restart; or another's now).
SELECT state, owner, exit_code FROM hrwsi.job WHERE id = $1;

-- name: end_quiet_sessions
-- Of the given server pids, hrwsi's sessions of this role (by the same role: their state is visible without
-- pg_read_all_stats, and they may be ended without pg_signal_backend): whether each is quiet, running no statement
-- and unchanged for the last $2 seconds, and then ended (pg_terminate_backend), as the client gave up on it. A
-- connection half-open on the way (a NAT, firewall or load balancer that forgot it) is unknown to the server,
-- whose session waited idle, holding one of max_connections, until its TCP keepalive gave up (2 hours by default).
-- A pid not here is gone from the server. (CASE: ended only when quiet. IS NOT NULL, not OR true, which the
-- planner folds to true without calling the function.)
SELECT pid, CASE WHEN state = 'active' OR state_change > now() - make_interval(secs => $2) THEN false
                 ELSE pg_terminate_backend(pid) IS NOT NULL END AS quiet
FROM pg_stat_activity
WHERE pid = ANY($1::int[]) AND usename = current_user AND application_name LIKE 'hrwsi-%';
