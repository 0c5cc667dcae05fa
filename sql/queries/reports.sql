-- Read-only reports for the CLI. Placeholders: psycopg (%(name)s).

-- name: report_task_counts
-- (the open tasks through processing_task_state_id_idx, the finished as kept: web_task_counts, migration 0105)
SELECT state, sum(n)::bigint AS n
FROM (SELECT state, count(*) AS n FROM hrwsi.processing_task
      WHERE state IN ('pending', 'planned', 'dispatched', 'queued', 'running', 'on_hold', 'blocked') GROUP BY state
      UNION ALL
      SELECT state, n FROM hrwsi.finished_task_counts()) c
GROUP BY state ORDER BY state;

-- name: report_job_counts
-- The jobs per state: the open ones (submitted, queued, running) all, through job_active_idx, and the ended ones
-- that finished in the last day, through job_finished_at_idx. A GROUP BY of the whole job table read every attempt
-- ever run on each call, an ops screen refreshing it all day (0.1 s at 300,000 jobs, growing with the archive); the
-- day's ended jobs are what ops act on, and `hrwsi tasks --state` lists the rest (session 75).
SELECT state, count(*) AS n FROM hrwsi.job WHERE state IN ('submitted', 'queued', 'running') GROUP BY state
UNION ALL
SELECT state, count(*) AS n FROM hrwsi.job
WHERE finished_at > now() - interval '1 day' AND state NOT IN ('submitted', 'queued', 'running') GROUP BY state
ORDER BY state;

-- name: report_jobs_queued_long
-- Jobs the backend has held queued (not started) for more than after_s since their submission, the
-- oldest first, with the backend's reason (its message): Nomad's "cannot place it yet: ..." was
-- shown only per task, and status said only how many were queued (found by exploratory testing).
SELECT j.task_id, t.routine, j.attempt, j.backend, j.backend_job_id, j.worker, j.message,
       extract(epoch FROM now() - j.submitted_at)::float8 AS queued_s, count(*) OVER () AS total
FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
WHERE j.state = 'queued' AND j.submitted_at < now() - make_interval(secs => %(after_s)s)
ORDER BY j.submitted_at, j.id
LIMIT %(limit)s;

-- name: report_jobs_running_long
-- Jobs running longer than `factor` times their routine's expected duration and at least `min_s`
-- seconds, the longest first, with the routine's timeout (NULL: nothing stops it): a job running ten
-- times its expected time (a routine hung on a stalled mount, say) was said nowhere, while the plan
-- counted on its worker at its expected end (found by exploratory testing). job_active_idx.
SELECT j.task_id, t.routine, j.attempt, j.backend_job_id, j.worker,
       extract(epoch FROM now() - j.started_at)::float8 AS running_s,
       extract(epoch FROM r.expected_duration)::float8 AS expected_s,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, count(*) OVER () AS total
FROM hrwsi.job j
JOIN hrwsi.processing_task t ON t.id = j.task_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE j.state = 'running'
  AND j.started_at < now() - greatest(r.expected_duration * %(factor)s, make_interval(secs => %(min_s)s))
ORDER BY j.started_at, j.id
LIMIT %(limit)s;

-- name: report_recent_failures
-- With the task's state now: a failure of a task processed since (a lost attempt retried, say) read
-- as one to act on (found by exploratory testing). And the worker its next attempt avoids, when this
-- attempt could not be placed there (migration 0087): status says the retry goes elsewhere.
SELECT j.task_id, t.routine, j.attempt, j.state, j.exit_code, j.message, j.finished_at, j.log_path, t.state,
       CASE WHEN j.fault = 'not_placed' AND t.avoid_worker = j.worker THEN t.avoid_worker END AS avoids
FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
WHERE j.state IN ('internal_error', 'external_error', 'lost')
ORDER BY j.finished_at DESC NULLS LAST, j.id DESC
LIMIT %(limit)s;

-- name: report_unplannable
-- The oldest pending tasks the planner cannot place, with its reason, and how many there are in all
-- (status shows a few of them; hrwsi.cannot_be_planned says which, as for web_unplannable).
SELECT id, routine, state_reason, count(*) OVER () AS total FROM hrwsi.processing_task
WHERE state = 'pending' AND hrwsi.cannot_be_planned(state, state_reason, not_before)
ORDER BY id LIMIT %(limit)s;

-- name: report_tasks
-- Newest first; %(before)s: only older tasks than that id (the next page of `hrwsi tasks`).
SELECT t.id, t.routine, t.state, i.tile, t.worker, t.attempts, t.failures, t.planned_start, t.updated_at,
       i.input_path, t.state_reason, t.lane, t.priority, t.deadline_at,
       (SELECT l.priority FROM hrwsi.lane l WHERE l.name = t.lane) AS lane_priority
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
WHERE (%(states)s::text[] IS NULL OR t.state = ANY (%(states)s::text[]))
  AND (%(routine)s::text IS NULL OR t.routine = %(routine)s)
  AND (%(tile)s::text IS NULL OR i.tile = %(tile)s)
  AND (%(lane)s::text IS NULL OR t.lane = %(lane)s)
  AND (%(before)s::bigint IS NULL OR t.id < %(before)s)
ORDER BY t.id DESC
LIMIT %(limit)s;

-- name: report_known_names
-- The routines and lanes there are: a filter naming another is refused, not answered with nothing.
SELECT (SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM hrwsi.processing_routine) AS routines,
       (SELECT coalesce(array_agg(name ORDER BY priority), '{}') FROM hrwsi.lane) AS lanes;

-- name: report_task
SELECT t.id, t.routine, t.state, t.state_reason, t.worker, t.planned_start, t.planned_end, t.depends_on,
       t.attempts, t.failures, t.not_before, t.created_at, t.updated_at, t.plan_id, t.finished_at,
       t.lane, t.priority, t.deadline_at, t.campaign_id,
       (SELECT l.priority FROM hrwsi.lane l WHERE l.name = t.lane) AS lane_priority,
       t.history_pruned_at, i.id AS input_id, i.processing_condition, i.input_path, i.tile, i.mission, i.measured_at, i.published_at,
       t.deadline_inherited_from, t.own_deadline_at, t.avoid_worker, t.priority_inherited_from,
       -- what holds it, for what happens next (reports.task_next_step)
       r.on_hold AS routine_on_hold, r.backfill_hold_reason IS NOT NULL AS backfill_on_hold,
       coalesce(k.on_hold, false) AS campaign_on_hold
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id
WHERE t.id = %(task_id)s;

-- name: report_task_series_ahead
-- The open tasks a task of a time series waits for, down its series (each waits for the one sensed
-- before it), and how many of them are back-fill (a lane less urgent than near-real-time): a fresh
-- scene behind 200 archive scenes of its tile said only "depends on 24014" (found by exploratory
-- testing).
WITH RECURSIVE ahead AS (
    SELECT p.id, p.lane, p.depends_on, p.dependency_waived, 1 AS n
    FROM hrwsi.processing_task t JOIN hrwsi.processing_task p ON p.id = t.depends_on
    WHERE t.id = %(task_id)s AND NOT t.dependency_waived AND t.state NOT IN ('processed', 'terminated', 'cancelled')
      AND p.state NOT IN ('processed', 'terminated', 'cancelled')
    UNION ALL
    SELECT p.id, p.lane, p.depends_on, p.dependency_waived, a.n + 1
    FROM ahead a JOIN hrwsi.processing_task p ON p.id = a.depends_on
    WHERE NOT a.dependency_waived AND a.n < 100000 AND p.state NOT IN ('processed', 'terminated', 'cancelled')
)
SELECT count(*) AS open, count(*) FILTER (WHERE l.priority > 0) AS back_fill
FROM ahead a JOIN hrwsi.lane l ON l.name = a.lane;

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

-- name: report_held_routines
-- Routines on hold (by an operator or by the failure policy), with how many of their tasks wait; and
-- routines whose back-fill alone is on hold (its failures: migration 0075), `backfill_only`.
SELECT r.name AS routine, coalesce(r.hold_reason, r.backfill_hold_reason) AS reason,
       NOT r.on_hold AS backfill_only,
       CASE WHEN r.on_hold THEN r.consecutive_failures ELSE r.backfill_consecutive_failures END AS consecutive_failures,
       r.hold_after_failures,
       (SELECT count(*) FROM hrwsi.processing_task t WHERE t.routine = r.name AND t.state = 'on_hold') AS held_tasks,
       (SELECT max(a.created_at) FROM hrwsi.alert a WHERE a.routine = r.name AND a.kind = 'routine_on_hold') AS held_at
FROM hrwsi.processing_routine r
WHERE r.on_hold OR r.backfill_hold_reason IS NOT NULL
ORDER BY r.name;

-- name: report_held_campaigns
-- Reprocessing campaigns on hold (their failures reached the routine's hold_after_failures), with
-- how many of their tasks wait held.
SELECT k.id AS campaign, k.routine, k.hold_reason AS reason,
       (SELECT count(*) FROM hrwsi.processing_task t WHERE t.campaign_id = k.id AND t.state = 'on_hold') AS held_tasks,
       (SELECT max(a.created_at) FROM hrwsi.alert a
        WHERE a.routine = k.routine AND a.kind = 'campaign_on_hold' AND a.created_at >= k.created_at) AS held_at
FROM hrwsi.campaign k
WHERE k.on_hold
ORDER BY k.id;

-- name: report_held_tasks
-- Tasks held one by one (not through their routine, its back-fill or their campaign), and those an operator held that
-- the end of the task they wait for blocked since: they are held again when their wait ends (migration 0095).
SELECT t.id, t.routine,
       CASE WHEN t.state = 'blocked' THEN 'held by an operator, and blocked: ' || t.state_reason
            ELSE t.state_reason END AS reason
FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id
WHERE (t.state = 'on_hold' OR (t.state = 'blocked' AND t.held_while_blocked))
  AND NOT r.on_hold AND NOT coalesce(k.on_hold, false)
  -- (held with its routine's back-fill, migration 0075: said once, in the routine's line)
  AND NOT (r.backfill_hold_reason IS NOT NULL AND t.campaign_id IS NULL
           AND starts_with(t.state_reason, 'back-fill of routine '))
ORDER BY t.id LIMIT %(limit)s;

-- name: report_handover_holds
-- The hand-over holds that count now (handover_holds_counting), with how many less urgent tasks wait meanwhile; those
-- on one worker with %(worker)s (NULL: every worker). What back-fill waits for (`hrwsi status`, `hrwsi task show`;
-- the dashboard reads the same rows through web_handover_holds).
SELECT h.* FROM (
    -- include: handover_holds_counting
) h
WHERE %(worker)s::text IS NULL OR h.worker = %(worker)s::text
ORDER BY h.until, h.task_id LIMIT %(limit)s;

-- name: handover_holds_counting
-- Part of report_handover_holds and web_handover_holds: the hand-over holds that count now (migration 0117; as
-- hrwsi.dispatch reads them: before their end, on an active worker, of a task still as it was), each with how many
-- less urgent tasks wait meanwhile (read once, and only when a hold counts).
SELECT h.task_id, t.routine, h.worker, h.kind, h.cpu, h.ram_mb, h.storage_mb, h.until,
       (SELECT count(*) FROM hrwsi.processing_task b WHERE b.state IN ('pending', 'planned') AND b.priority > 0)
           AS back_fill_waiting
FROM hrwsi.handover_hold h
JOIN hrwsi.processing_task t ON t.id = h.task_id
WHERE h.until > now()
  AND EXISTS (SELECT 1 FROM hrwsi.worker w WHERE w.name = h.worker AND w.active)
  AND CASE h.kind WHEN 'next_step' THEN t.state = 'processed' ELSE t.state IN ('pending', 'planned') END

-- name: report_writes_refused
-- Whether the database refuses writes (a standby in recovery, or default_transaction_read_only on for this
-- session's role or database), and the newest heartbeat any service wrote (the writes stopped after it at
-- the latest) with its age: the line `hrwsi status` and the dashboard start with
-- (database_trouble.refusing_writes_said). Both can still read there.
-- services_read_only: default_transaction_read_only is on, as ALTER ROLE or ALTER DATABASE set it, for the login role
-- of a session of the services' pools (hrwsi-...-pool) in this database: the most specific setting of the role in
-- this database, of the role, of the database. Their sessions opened since refuse writes, whatever the reader's own
-- role (a read-only monitoring role of its own tells nothing of them, and waited for the heartbeats to be stale).
SELECT pg_is_in_recovery() AS in_recovery, current_setting('default_transaction_read_only')::boolean AS read_only,
       h.newest AS newest_heartbeat, extract(epoch FROM now() - h.newest)::float8 AS newest_heartbeat_age_s,
       coalesce((SELECT bool_or(e.read_only)
                 FROM (SELECT DISTINCT a.usesysid FROM pg_stat_activity a
                       WHERE a.datname = current_database() AND starts_with(a.application_name, 'hrwsi-')
                         AND right(a.application_name, 5) = '-pool') r
                 CROSS JOIN LATERAL (
                     SELECT lower(split_part(c.setting, '=', 2)) IN ('on', 'true', 'yes', '1') AS read_only
                     FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) AS c(setting)
                     WHERE split_part(c.setting, '=', 1) = 'default_transaction_read_only'
                       AND ((s.setrole = r.usesysid AND s.setdatabase IN (0, d.oid))
                            OR (s.setrole = 0 AND s.setdatabase = d.oid))
                     ORDER BY s.setrole = 0, s.setdatabase = 0 LIMIT 1) e), false) AS services_read_only
FROM (SELECT max(coalesce(s.last_heartbeat_at, s.heartbeat_at)) AS newest FROM hrwsi.service_instance s) h,
     (SELECT oid FROM pg_database WHERE datname = current_database()) d;

-- name: report_services
-- replaced_by: the identity the same process (kind, host, pid) took since: a service whose lease
-- lapsed (paused, cut off) goes on under a new identity, and its old one, kept an hour, read "stale:
-- dead or hung?" beside the live process (found by exploratory testing). The heartbeat is the real last
-- one: an instance taken over as dead has its heartbeat_at set back by the lease (migration 0082), and
-- taken_over_by, _at, _why say by which instance, when and why. stopping_since, stopping: a launcher waiting for its
-- jobs as it stops, what for and until when (migration 0121). The dashboard reads it too
-- (web.data.read_services), so that both fold the same replaced instances (reports.folded_away).
SELECT s.id, s.kind, s.host, s.pid, s.version, s.started_at, coalesce(s.last_heartbeat_at, s.heartbeat_at) AS heartbeat_at,
       extract(epoch FROM now() - coalesce(s.last_heartbeat_at, s.heartbeat_at))::float8 AS heartbeat_age_s,
       s.problem, s.problem_since,
       (SELECT n.id FROM hrwsi.service_instance n
        WHERE n.kind = s.kind AND n.host = s.host AND n.pid = s.pid AND n.started_at > s.started_at
        ORDER BY n.started_at DESC LIMIT 1) AS replaced_by, s.site, s.code_dir, s.code_fingerprint,
       s.taken_over_by, s.taken_over_at, s.taken_over_why, s.stopping_since, s.stopping
FROM hrwsi.service_instance s ORDER BY s.kind, coalesce(s.last_heartbeat_at, s.heartbeat_at) DESC;

-- name: report_local_jobs_held
-- The jobs each local launcher (one that records its site) owns: once it is gone, only a launcher
-- of its site, sharing its data directory, adopts them (migration 0065). A read of its own, so
-- that the services are listed while the job table is locked.
SELECT j.owner, count(*) AS jobs
FROM hrwsi.job j JOIN hrwsi.service_instance s ON s.id = j.owner AND s.site IS NOT NULL
WHERE j.state IN ('submitted', 'queued', 'running')
GROUP BY j.owner;

-- name: report_alert_counts
-- The alert outbox in three numbers; a failed alert is one that gave up (max_attempts reached).
SELECT count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE sent_at IS NULL AND attempts < %(max_attempts)s) AS unsent,
       count(*) FILTER (WHERE sent_at IS NULL AND attempts >= %(max_attempts)s) AS failed,
       -- (the age of the oldest never tried: alerts_untried_said)
       extract(epoch FROM now() - min(created_at) FILTER (WHERE sent_at IS NULL AND attempts = 0))::float8
           AS untried_oldest_s
FROM hrwsi.alert;

-- name: report_alerts
-- The alert outbox, newest first; %(status)s: NULL for all, or sent, unsent, failed.
SELECT a.id, a.kind, a.subject, a.body, a.task_id, a.routine, a.created_at, a.sent_at, a.attempts, a.last_error,
       CASE WHEN a.sent_at IS NOT NULL THEN 'sent'
            WHEN a.attempts >= %(max_attempts)s THEN 'failed'
            ELSE 'unsent' END AS status
FROM hrwsi.alert a
WHERE %(status)s::text IS NULL
   OR (%(status)s = 'sent' AND a.sent_at IS NOT NULL)
   OR (%(status)s = 'unsent' AND a.sent_at IS NULL AND a.attempts < %(max_attempts)s)
   OR (%(status)s = 'failed' AND a.sent_at IS NULL AND a.attempts >= %(max_attempts)s)
ORDER BY a.id DESC
LIMIT %(limit)s;

-- name: report_task_exists
SELECT state, history_pruned_at FROM hrwsi.processing_task WHERE id = %(task_id)s;

-- name: report_task_log
-- One attempt of a task (the latest when %(attempt)s is NULL): where its log is and whether it ended.
SELECT j.attempt, j.backend, j.backend_job_id, j.state, j.owner, j.log_path, j.output_dir, j.submitted_at, j.finished_at,
       s.is_final
FROM hrwsi.job j JOIN hrwsi.job_state s ON s.name = j.state
WHERE j.task_id = %(task_id)s AND (%(attempt)s::int IS NULL OR j.attempt = %(attempt)s)
ORDER BY j.attempt DESC
LIMIT 1;

-- name: report_attempt_ended
-- How an attempt ended and where its task is now: what `hrwsi logs --follow` says once the attempt ends.
SELECT j.state AS job_state, j.message, t.state AS task_state, t.state_reason AS task_reason
FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
WHERE j.task_id = %(task_id)s AND j.attempt = %(attempt)s;

-- name: report_job_is_final
SELECT s.is_final FROM hrwsi.job j JOIN hrwsi.job_state s ON s.name = j.state
WHERE j.task_id = %(task_id)s AND j.attempt = %(attempt)s;

-- name: report_find_lineage_start
-- The tasks a lineage starts from: those that made a product with this exact path (indexed), or,
-- when no product has it, those of an input with it (production's task and each campaign's on the
-- same input). Every match, by task id, at most %(limit)s: one was picked at random (LIMIT 1
-- without ORDER BY), and a campaign's task on an input was never shown (found by exploratory
-- testing). A product path that is also its chained child's input is the product's lineage only:
-- the child is in it, downstream.
WITH made AS (
    SELECT t.id AS task_id, min(p.id) AS product_id, t.campaign_id
    FROM hrwsi.product p JOIN hrwsi.processing_task t ON t.id = p.task_id
    WHERE p.path = %(target)s
    GROUP BY t.id
), fed AS (
    SELECT t.id AS task_id, NULL::bigint AS product_id, t.campaign_id
    FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
    WHERE i.input_path = %(target)s AND NOT EXISTS (SELECT 1 FROM made)
)
SELECT task_id, product_id, campaign_id FROM (SELECT * FROM made UNION ALL SELECT * FROM fed) m
ORDER BY task_id
LIMIT %(limit)s;

-- name: report_find_lineage_start_by_name
-- The same by file name (a scan): the end of the path is compared, so no LIKE pattern is built
-- from user text.
WITH made AS (
    SELECT t.id AS task_id, min(p.id) AS product_id, t.campaign_id
    FROM hrwsi.product p JOIN hrwsi.processing_task t ON t.id = p.task_id
    WHERE right(p.path, length(%(target)s) + 1) = '/' || %(target)s
    GROUP BY t.id
), fed AS (
    SELECT DISTINCT t.id AS task_id, NULL::bigint AS product_id, t.campaign_id
    FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
    WHERE right(i.input_path, length(%(target)s) + 1) = '/' || %(target)s AND NOT EXISTS (SELECT 1 FROM made)
)
SELECT task_id, product_id, campaign_id FROM (SELECT * FROM made UNION ALL SELECT * FROM fed) m
ORDER BY task_id
LIMIT %(limit)s;

-- name: report_lineage
-- Tasks up the chain (the tasks whose products a task's input was made from: chaining through
-- input.product_id, multi-input groups through their members) and down it (the tasks of the inputs
-- made from a task's products), with each task's input and products. depth < 0 is upstream.
WITH RECURSIVE up (task_id, depth) AS (
    SELECT %(task_id)s::bigint, 0
    UNION
    SELECT parent.task_id, up.depth - 1
    FROM up
    JOIN hrwsi.processing_task t ON t.id = up.task_id
    JOIN hrwsi.input i ON i.id = t.input_id
    JOIN LATERAL (
        SELECT p.task_id FROM hrwsi.product p WHERE p.id = i.product_id
        UNION
        SELECT p.task_id FROM hrwsi.multi_input_member m JOIN hrwsi.product p ON p.path = m.member_path
        WHERE m.input_id = i.id
        UNION
        -- (a campaign's composite: the members recorded for its task, migration 0073)
        SELECT p.task_id FROM hrwsi.multi_input_campaign_member m JOIN hrwsi.product p ON p.path = m.member_path
        WHERE m.task_id = t.id
    ) parent ON parent.task_id IS NOT NULL
    WHERE up.depth > -100
), down (task_id, depth) AS (
    SELECT %(task_id)s::bigint, 0
    UNION
    SELECT child.id, down.depth + 1
    FROM down
    JOIN hrwsi.product p ON p.task_id = down.task_id
    JOIN LATERAL (
        SELECT ct.id FROM hrwsi.input ci JOIN hrwsi.processing_task ct ON ct.input_id = ci.id
        WHERE ci.product_id = p.id
        UNION
        SELECT ct.id FROM hrwsi.multi_input_member m JOIN hrwsi.processing_task ct ON ct.input_id = m.input_id
        WHERE m.member_path = p.path
        UNION
        SELECT m.task_id FROM hrwsi.multi_input_campaign_member m WHERE m.member_path = p.path
    ) child ON true
    WHERE down.depth < 100
), chain AS (
    SELECT task_id, min(depth) AS depth FROM up GROUP BY task_id
    UNION ALL
    SELECT task_id, min(depth) FROM down WHERE depth > 0 GROUP BY task_id
)
-- (a correction's marks, the input it superseded and the products it outdated: without them the old version's chain
-- read as current beside the new one; found by exploratory testing)
SELECT c.depth, t.id AS task_id, t.routine, t.state, t.campaign_id, t.finished_at, i.id AS input_id, i.processing_condition,
       i.input_path, i.source AS input_source, i.superseded_by AS input_superseded_by,
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', p.id, 'path', p.path, 'product_type', p.product_type,
                                                     'size_bytes', p.size_bytes, 'outdated_by', p.outdated_by)
                                  ORDER BY p.id)
                 FROM hrwsi.product p WHERE p.task_id = t.id), '[]'::jsonb) AS products
FROM chain c
JOIN hrwsi.processing_task t ON t.id = c.task_id
JOIN hrwsi.input i ON i.id = t.input_id
ORDER BY c.depth, t.id;

-- name: report_schedule
-- The current schedule: every task that holds a worker (planned, dispatched, queued, running), with
-- its planned times, its attempt's start, and when it is expected to end: a task not started yet ends its
-- expected duration after now at the earliest (its planned end passed while it waited for capacity taken by
-- jobs that ran longer than expected: it read "passed, overdue by 23 s" as if it ran late; found by
-- exploratory testing), and start_late_s says how long ago its planned start passed (past 5 s: a task is
-- dispatched within a second or two of its start).
SELECT t.id AS task_id, t.routine, t.state, t.worker, t.planned_start, t.planned_end, t.depends_on, t.attempts,
       t.plan_id, j.started_at,
       -- (a task in flight holds what it was dispatched with, if its routine changed since: migration 0067)
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb,
       extract(epoch FROM r.expected_duration)::float8 AS duration_s,
       CASE WHEN j.started_at IS NOT NULL THEN j.started_at + r.expected_duration
            ELSE greatest(t.planned_end, now() + r.expected_duration) END AS expected_end,
       CASE WHEN j.started_at IS NULL AND t.planned_start < now() - interval '5 seconds'
            THEN extract(epoch FROM now() - t.planned_start)::float8 END AS start_late_s
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.attempt = t.attempts AND t.state IN ('dispatched', 'queued', 'running')
WHERE t.state IN ('planned', 'dispatched', 'queued', 'running') AND t.worker IS NOT NULL
ORDER BY t.worker, coalesce(j.started_at, t.planned_start), t.id;

-- name: report_planning_resources
-- Flavours, workers and budgets as the planner sees them, for drawing a schedule.
SELECT w.name AS worker, f.name AS flavour, f.cpu::float8 AS cpu, f.ram_mb, f.disk_mb, w.active
FROM hrwsi.worker w JOIN hrwsi.flavour f ON f.name = w.flavour
ORDER BY w.name;

-- name: report_budget
SELECT cpu_max::float8 AS cpu_max, ram_max_mb, storage_max_mb, vm_max FROM hrwsi.budget;

-- name: report_now
SELECT now();

-- name: demo_retried_tasks
SELECT task_id, count(*) FROM hrwsi.job GROUP BY task_id HAVING count(*) > 1 ORDER BY task_id LIMIT 3;

-- name: demo_plan_figures
SELECT count(*), max(makespan_s), max(lower_bound_s), max(vms) FROM hrwsi.plan;

-- name: demo_a_quicklook
SELECT path FROM hrwsi.product WHERE product_type = 'QUICKLOOK' ORDER BY id LIMIT 1;

-- name: report_task_state_names
-- The task states the database knows, in the order of its state machine's table.
SELECT name FROM hrwsi.task_state;

-- name: report_sessions_blocking_hrwsi
-- Sessions that hold a lock a service of hrwsi waits for, most often a transaction left open in a
-- SQL client: an INSERT of inputs of a time series holds its series' lock until it commits, and
-- the products of its series wait to be chained (found by exploratory testing, 2026-12-05).
-- The services wait `lock_timeout` (10 s), then try again: without this, nothing said why chaining
-- stood still. Also the sessions holding an ACCESS EXCLUSIVE lock on a table of hrwsi (a LOCK
-- TABLE, an ALTER TABLE left open), which every read waits for, whether or not a service waits
-- right now: `hrwsi status` could not read behind one and named nobody (found by exploratory
-- testing). It reads only pg_stat_activity and pg_locks (views of the server's memory) and the
-- catalogs, which such a lock does not block. Sessions of other roles are seen only by a role
-- with pg_read_all_stats (their state and transaction start; their pid and role show to all).
WITH blocker AS (
    SELECT x.pid, w.application_name AS waiter, NULL::text AS locked
    FROM pg_stat_activity w
    CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS x(pid)
    WHERE w.datname = current_database() AND starts_with(w.application_name, 'hrwsi-')
    UNION ALL
    SELECT l.pid, NULL, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
    FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'AccessExclusiveLock' AND n.nspname = 'hrwsi'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.pid IS DISTINCT FROM pg_backend_pid()
    UNION ALL
    -- A time series' lock (7250010, routine/tile) held by a session of no service, in a transaction
    -- open over 2 s (an INSERT under way holds it for less), while products of that series wait to
    -- be chained: the harvester chains around such a series (query chain_products_around_busy_series)
    -- without waiting for it, so nothing else names the session. The held lock's key is matched
    -- against the series of the unchained products (the key the INSERT of their inputs takes,
    -- hrwsi.wait_for_a_series): any series lock was named whenever any product was unchained, of
    -- whatever series (found by review). Two series of one key (hrwsi.series_lock_key) wait for it alike.
    SELECT l.pid, 'hrwsi-harvester (the chaining of ' || w.products || ' product(s) of the time series of '
                  || w.series || ')', NULL
    FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    JOIN (SELECT s.key, count(DISTINCT s.product) AS products,
                 string_agg(DISTINCT s.routine || ' on ' || s.tile, ', ') AS series
          FROM (SELECT p.id AS product, x.routine, i.tile, hrwsi.series_lock_key(x.routine, i.tile)::bigint AS key
                FROM hrwsi.product p
                JOIN hrwsi.processing_task t ON t.id = p.task_id
                JOIN hrwsi.input i ON i.id = t.input_id
                JOIN hrwsi.processing_routine r ON r.input_product_type = p.product_type
                JOIN hrwsi.processing_condition c ON c.routine = r.name AND c.active
                LEFT JOIN hrwsi.processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
                CROSS JOIN LATERAL (VALUES (CASE WHEN r.sequential_per_tile THEN r.name END), (d.name)) x(routine)
                WHERE p.chained_at IS NULL AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
                  AND x.routine IS NOT NULL) s
          GROUP BY s.key) w ON w.key = l.objid::bigint
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7250010::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.pid IS DISTINCT FROM pg_backend_pid() AND NOT starts_with(a.application_name, 'hrwsi-')
      AND coalesce(a.xact_start < now() - interval '2 s', true)
)
SELECT b.pid, b.usename AS role, b.application_name AS application, b.state,
       extract(epoch FROM now() - b.xact_start)::float8 AS transaction_s,
       coalesce(array_agg(DISTINCT k.waiter ORDER BY k.waiter) FILTER (WHERE k.waiter IS NOT NULL), '{}') AS waiting,
       coalesce(array_agg(DISTINCT k.locked ORDER BY k.locked) FILTER (WHERE k.locked IS NOT NULL), '{}') AS locked
FROM blocker k
JOIN pg_stat_activity b ON b.pid = k.pid
GROUP BY b.pid, b.usename, b.application_name, b.state, b.xact_start
ORDER BY b.xact_start NULLS LAST, b.pid;

-- name: sessions_holding_locks_a_step_waited_for
-- After a step's statement waited lock_timeout and was cancelled: the sessions that may hold the lock it
-- waited for, for the service's log line. The step's wait is over by now, so pg_blocking_pids has no waiter
-- to ask; the holders are the sessions whose transaction is older than the wait (a lock taken later could
-- not have held it up all along), holding on a table of hrwsi a lock stronger than a plain read's (a LOCK
-- TABLE, or the ROW SHARE a SELECT ... FOR UPDATE leaves on its table with its row locks). The line said
-- only "`hrwsi status` names the session", which status does only while a service waits (found by
-- rehearsal). Only pg_locks, pg_stat_activity and the catalogs: no lock of a table is waited for here.
-- Sessions of other roles show their pid, role and client to all (their state and transaction start only
-- to pg_read_all_stats), and are named then too.
SELECT a.pid, a.usename AS role, a.application_name AS application, a.state, a.xact_start,
       string_agg(DISTINCT l.mode || ' on ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname), ', ') AS held
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.mode <> 'AccessShareLock' AND n.nspname = 'hrwsi'
  AND c.relkind IN ('r', 'p')
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
  AND coalesce(a.xact_start <= statement_timestamp() - current_setting('lock_timeout')::interval, true)
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start
ORDER BY a.xact_start NULLS LAST, a.pid
LIMIT 3;

-- name: report_sources_needing_attention
-- Active harvest sources ops should look at (`hrwsi status`): the last run failed; held by a
-- harvester that is not alive (killed: its claim holds until it lapses); or overdue with no
-- harvester running it. A source is said once, under the first of these that applies. And, of
-- each, the landing files it refused (failed) in the last %(refused_s)s seconds, with the newest
-- one's path and reason: a run that refused every file it listed succeeded, so none of the above
-- said it, and only the harvester's log and `hrwsi sources`' counts (failed ever) showed them
-- (found by exploratory testing, 2026-12-07).
SELECT s.name, s.kind, s.last_error, s.last_run_at, s.next_run_at, s.claimed_by, s.claimed_until,
       flag.held_by_the_gone, flag.overdue, refused.refused, refused.refused_path, refused.refused_message,
       refused.refused_at
FROM hrwsi.harvest_source s
CROSS JOIN LATERAL (
    SELECT s.claimed_until > now() AND NOT EXISTS (
               SELECT 1 FROM hrwsi.service_instance i
               WHERE i.id = s.claimed_by AND i.heartbeat_at > now() - make_interval(secs => %(fresh_s)s))
           AS held_by_the_gone,
           s.next_run_at < now() - make_interval(secs => %(overdue_s)s)
           AND (s.claimed_until IS NULL OR s.claimed_until <= now()) AS overdue) flag
CROSS JOIN LATERAL (
    SELECT count(*) AS refused,
           (array_agg(f.path ORDER BY f.updated_at DESC, f.id DESC))[1] AS refused_path,
           (array_agg(f.message ORDER BY f.updated_at DESC, f.id DESC))[1] AS refused_message,
           max(f.updated_at) AS refused_at
    FROM hrwsi.landing_file f
    WHERE f.source = s.name AND f.state = 'failed'
      AND f.updated_at > now() - make_interval(secs => %(refused_s)s)) refused
WHERE s.active AND (s.last_error IS NOT NULL OR flag.held_by_the_gone OR flag.overdue OR refused.refused > 0)
ORDER BY s.name
LIMIT %(limit)s;

-- name: report_incomplete_groups
-- The multi-input groups (a tile and the window_days days ending on an anchor day) that have some
-- members but no input yet: per requirement what they have and what they need, whether they still
-- wait for open work upstream (a task that would make a member, itself or through what it makes, as
-- hrwsi.multi_input_create_complete_groups reads it) or cannot complete now (nothing open: a
-- member's task ended terminated, the condition is inactive, no routine makes the type). A group that
-- never completed was seen nowhere (found by exploratory testing). %(condition)s and %(tile)s filter
-- (NULL: all); %(stale_only)s keeps those whose window ended before today (UTC) and that nothing open
-- upstream can complete (`hrwsi status`); at most %(limit)s rows, newest anchor day first, each with
-- the total count.
WITH RECURSIVE rule AS (
    SELECT m.processing_condition AS condition, m.window_days, m.every_day_of_window, m.wait_for_open_tasks,
           c.active, c.measurement_window, c.tiles
    FROM hrwsi.multi_input_rule m
    JOIN hrwsi.processing_condition c ON c.name = m.processing_condition
    WHERE %(condition)s::text IS NULL OR m.processing_condition = %(condition)s
), wanted AS (
    SELECT DISTINCT q.product_type FROM hrwsi.multi_input_requirement q JOIN rule r ON r.condition = q.processing_condition
), maker AS (
    SELECT q.processing_condition AS condition, pr.name AS routine, pr.input_product_type, 0 AS depth
    FROM hrwsi.multi_input_requirement q
    JOIN rule r ON r.condition = q.processing_condition
    JOIN hrwsi.processing_routine pr ON pr.output_product_type = q.product_type
    UNION
    SELECT m.condition, up.name, up.input_product_type, m.depth + 1
    FROM maker m
    JOIN hrwsi.processing_routine up ON up.output_product_type = m.input_product_type
    WHERE m.depth < 8
      AND EXISTS (SELECT 1 FROM hrwsi.processing_condition c
                  WHERE c.routine = m.routine AND c.active
                    AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = c.name))
), member AS (
    SELECT p.path, p.product_type, i.tile, i.measured_at, (i.measured_at AT TIME ZONE 'UTC')::date AS day
    FROM hrwsi.product p
    JOIN hrwsi.processing_task t ON t.id = p.task_id
    JOIN hrwsi.input i ON i.id = t.input_id
    WHERE p.product_type IN (SELECT product_type FROM wanted) AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
      AND t.campaign_id IS NULL AND (%(tile)s::text IS NULL OR i.tile = upper(%(tile)s))
      AND p.outdated_by IS NULL  -- (as the harvester's members: migration 0097)
    UNION
    SELECT i.input_path, r.input_product_type, i.tile, i.measured_at, (i.measured_at AT TIME ZONE 'UTC')::date
    FROM hrwsi.input i
    JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
    JOIN hrwsi.processing_routine r ON r.name = c.routine
    WHERE i.product_id IS NULL AND i.superseded_by IS NULL AND r.input_product_type IN (SELECT product_type FROM wanted)
      AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL AND (%(tile)s::text IS NULL OR i.tile = upper(%(tile)s))
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = i.processing_condition)
), anchor AS (
    SELECT DISTINCT r.condition, m.tile, m.day
    FROM rule r
    JOIN hrwsi.multi_input_requirement q ON q.processing_condition = r.condition
    JOIN member m ON m.product_type = q.product_type
    WHERE (r.tiles IS NULL OR m.tile = ANY (r.tiles))
      AND (r.measurement_window IS NULL OR m.measured_at >= now() - r.measurement_window)
), group_state AS (
    SELECT a.condition, a.tile, a.day, r.window_days, r.every_day_of_window, r.wait_for_open_tasks, r.active,
           (SELECT jsonb_agg(jsonb_build_object(
                       'product_type', q.product_type, 'min_count', q.min_count, 'have', have.n,
                       'days_met', have.days_met, 'days_needed', CASE WHEN r.every_day_of_window THEN r.window_days END,
                       'met', CASE WHEN r.every_day_of_window THEN have.days_met = r.window_days
                                   ELSE have.n >= q.min_count END,
                       'made_by', (SELECT coalesce(jsonb_agg(DISTINCT mk.routine), '[]'::jsonb) FROM maker mk
                                   WHERE mk.condition = a.condition AND mk.depth = 0
                                     AND EXISTS (SELECT 1 FROM hrwsi.processing_routine pr
                                                 WHERE pr.name = mk.routine AND pr.output_product_type = q.product_type)))
                   ORDER BY q.product_type)
            FROM hrwsi.multi_input_requirement q
            CROSS JOIN LATERAL (
                SELECT count(*) AS n,
                       (SELECT count(*) FROM (SELECT m.day FROM member m
                                              WHERE m.product_type = q.product_type AND m.tile = a.tile
                                                AND m.day BETWEEN a.day - (r.window_days - 1) AND a.day
                                              GROUP BY m.day HAVING count(*) >= q.min_count) d) AS days_met
                FROM member m
                WHERE m.product_type = q.product_type AND m.tile = a.tile
                  AND m.day BETWEEN a.day - (r.window_days - 1) AND a.day) have
            WHERE q.processing_condition = a.condition) AS requirements,
           (SELECT count(DISTINCT i.id)
            FROM maker mk
            JOIN hrwsi.processing_condition pc ON pc.routine = mk.routine
            JOIN hrwsi.input i ON i.processing_condition = pc.name
            LEFT JOIN hrwsi.processing_task t ON t.input_id = i.id
            WHERE mk.condition = a.condition AND i.tile = a.tile AND i.campaign_id IS NULL
              AND (t.id IS NULL OR t.campaign_id IS NULL)
              AND i.measured_at >= (a.day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
              AND i.measured_at < (a.day + 1)::timestamp AT TIME ZONE 'UTC'
              AND (t.id IS NULL OR t.state NOT IN ('processed', 'terminated', 'cancelled')
                   OR (mk.depth > 0 AND t.state = 'processed'
                       AND EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = t.id AND p.chained_at IS NULL))))
               AS open_upstream
    FROM anchor a
    JOIN rule r ON r.condition = a.condition
    WHERE NOT EXISTS (SELECT 1 FROM hrwsi.input done
                      WHERE done.processing_condition = a.condition AND done.superseded_by IS NULL
                        AND done.input_path = 'multi_input/' || a.condition || '/' || a.tile || '/'
                                              || to_char(a.day, 'YYYY-MM-DD'))
), judged AS (
    SELECT g.*, NOT EXISTS (SELECT 1 FROM jsonb_array_elements(g.requirements) e WHERE NOT (e ->> 'met')::boolean) AS met,
           CASE WHEN NOT g.active THEN 'cannot complete: its condition is inactive'
                WHEN g.open_upstream > 0 AND (g.wait_for_open_tasks
                     OR EXISTS (SELECT 1 FROM jsonb_array_elements(g.requirements) e WHERE NOT (e ->> 'met')::boolean))
                    THEN 'waits for open work upstream'
                WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(g.requirements) e WHERE NOT (e ->> 'met')::boolean)
                    THEN 'cannot complete now: nothing open upstream'
                ELSE 'complete: the harvester makes its input at its next pass' END AS state
    FROM group_state g
), kept AS (
    SELECT j.* FROM judged j
    WHERE NOT %(stale_only)s::boolean
       OR (left(j.state, 15) = 'cannot complete' AND j.day < (now() AT TIME ZONE 'UTC')::date)
)
SELECT condition, tile, day, window_days, (day - (window_days - 1)) AS window_from, active, wait_for_open_tasks,
       every_day_of_window, requirements, open_upstream, state, count(*) OVER () AS total
FROM kept
ORDER BY day DESC, condition, tile
LIMIT %(limit)s;

-- name: report_late_group_members
-- The groups whose composite was made (their production input exists) and that have members now
-- that it does not list: members that arrived after it (hrwsi.multi_input_members_now against
-- multi_input_member), and that no campaign's composite of the group lists either (one not ended in
-- terminated or cancelled). A group is made once: such a member was in no composite and nobody was
-- told (found by exploratory testing). Bounded: the groups whose composite's sensing time is in the
-- last %(days)s days, one index range per condition. %(condition)s and %(tile)s filter (NULL: all);
-- at most %(limit)s rows, newest anchor day first, each with the total count.
WITH grp AS (
    SELECT g.id AS input_id, g.processing_condition AS condition, g.tile, g.input_path, g.created_at AS made_at,
           substring(g.input_path FROM '[0-9]{4}-[0-9]{2}-[0-9]{2}$')::date AS day, r.window_days
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input g ON g.processing_condition = r.processing_condition
    WHERE (%(condition)s::text IS NULL OR r.processing_condition = %(condition)s)
      AND (%(tile)s::text IS NULL OR g.tile = upper(%(tile)s))
      AND g.source = 'multi_input' AND g.campaign_id IS NULL AND g.tile IS NOT NULL
      AND g.superseded_by IS NULL  -- (a group a correction superseded is made anew: migration 0097)
      AND g.measured_at >= now() - make_interval(days => %(days)s)
), late AS (
    SELECT grp.input_id, n.member_path, n.product_type, n.measured_at, n.arrived_at
    FROM grp
    CROSS JOIN LATERAL hrwsi.multi_input_members_now(grp.condition, grp.tile, grp.day) n
    WHERE NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member x
                      WHERE x.input_id = grp.input_id AND x.member_path = n.member_path)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task ct
                      JOIN hrwsi.multi_input_campaign_member cm ON cm.task_id = ct.id
                      WHERE ct.input_id = grp.input_id AND ct.campaign_id IS NOT NULL
                        AND ct.state NOT IN ('terminated', 'cancelled') AND cm.member_path = n.member_path)
), late_group AS (
    SELECT l.input_id, jsonb_agg(jsonb_build_object('path', l.member_path, 'product_type', l.product_type,
                                                    'measured_at', l.measured_at, 'arrived_at', l.arrived_at)
                                 ORDER BY l.arrived_at, l.member_path) AS late_members
    FROM late l GROUP BY l.input_id
)
SELECT grp.condition, grp.tile, grp.day, grp.window_days, (grp.day - (grp.window_days - 1)) AS window_from,
       grp.input_path, grp.made_at, t.id AS task_id, t.state AS task_state, t.finished_at AS task_finished_at,
       (SELECT count(*) FROM hrwsi.multi_input_member x WHERE x.input_id = grp.input_id) AS members,
       lg.late_members, count(*) OVER () AS total
FROM late_group lg
JOIN grp ON grp.input_id = lg.input_id
LEFT JOIN hrwsi.processing_task t ON t.input_id = grp.input_id AND t.campaign_id IS NULL
ORDER BY grp.day DESC, grp.condition, grp.tile
LIMIT %(limit)s;

-- name: report_placeless_group_members
-- The products of the types an active multi-input condition requires, made by production in the last %(days)s UTC
-- days (one index range of product_day_idx) from an input without a tile or a sensing time (chained ones inherit
-- them): no group takes them (hrwsi.multi_input_members_now places a member by its input's tile and sensing time), so
-- no composite is made of them, and `hrwsi groups` said no group waited (found by exploratory testing). Per
-- condition (%(condition)s: NULL, all): how many, and the newest one's path.
WITH need AS (
    SELECT DISTINCT q.processing_condition, q.product_type
    FROM hrwsi.multi_input_requirement q
    JOIN hrwsi.processing_condition c ON c.name = q.processing_condition AND c.active
    WHERE %(condition)s::text IS NULL OR q.processing_condition = %(condition)s
)
SELECT need.processing_condition AS condition, count(*) AS products,
       (array_agg(p.path ORDER BY p.created_at DESC, p.id DESC))[1] AS newest
FROM hrwsi.product p
JOIN need ON need.product_type = p.product_type
JOIN hrwsi.processing_task t ON t.id = p.task_id AND t.campaign_id IS NULL
JOIN hrwsi.input i ON i.id = t.input_id
WHERE (p.created_at AT TIME ZONE 'UTC')::date >= (now() AT TIME ZONE 'UTC')::date - %(days)s
  AND p.outdated_by IS NULL AND (i.tile IS NULL OR i.measured_at IS NULL)
GROUP BY need.processing_condition
ORDER BY need.processing_condition;

-- name: report_multi_input_condition_names
SELECT processing_condition FROM hrwsi.multi_input_rule ORDER BY 1;

-- name: report_tasks_to_retry
-- The tasks of a routine in a state `hrwsi retry --routine R --state S` retries, oldest first, at
-- most %(limit)s, each row with how many there are in all. A task of an input a correction superseded
-- is not retried (hrwsi.retry_task refuses it: listed, it stopped the command at the first; found by review),
-- nor one made down a chain from the products of such an input's tasks (migration 0096), found from the few
-- superseded inputs down, every way (migration 0102): an input chained from a product, a multi-input group or a
-- campaign's composite reading it as a member, and a campaign's composite that read a corrected input itself. The
-- walk is the one hrwsi.correct_input cancels by (hrwsi.tasks_down_a_chain, migration 0107): written out here too, it
-- told a composite of the old version by creation times, and listed one a correction begun before its campaign had
-- cancelled, which stopped the command (found by review).
SELECT t.id, count(*) OVER () AS total
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
WHERE t.routine = %(routine)s AND t.state = %(state)s AND i.superseded_by IS NULL
  AND t.id NOT IN (SELECT b.id FROM hrwsi.tasks_down_a_chain(ARRAY(SELECT s.id FROM hrwsi.input s
                                                                    WHERE s.superseded_by IS NOT NULL)) b(id))
ORDER BY t.id
LIMIT %(limit)s;

-- name: report_conditions_missing_products
-- The active conditions with products made while they were inactive (or before they existed) and never
-- chained to them, however they were made active (status: a plain UPDATE got no note; migration 0077).
SELECT condition, product_type, missed, outside_window FROM hrwsi.conditions_missing_products();

-- name: report_connection_slots
-- How many of the server's connection slots are taken: client sessions against max_connections less the
-- slots kept for superusers (and, PostgreSQL 16 on, for pg_use_reserved_connections); hrwsi's own sessions
-- by their application name (hrwsi-...). A server out of slots refuses hrwsi's new connections ("too many
-- clients already"), which the services said as "could not reach the database" (found by exploratory testing).
-- A role without pg_read_all_stats sees the backend_type of its own sessions only (other roles' rows show it
-- NULL): it counted its own sessions as the slots taken (found by review). Then the server's count per
-- database, pg_stat_database.numbackends, which every role reads, is taken (it counts a database's
-- background workers too: a little more, never less); application_name is seen for every session.
SELECT CASE WHEN pg_has_role('pg_read_all_stats', 'USAGE')
            THEN count(*) FILTER (WHERE a.backend_type = 'client backend')
            ELSE greatest(count(*) FILTER (WHERE a.backend_type = 'client backend'),
                          (SELECT sum(d.numbackends) FROM pg_stat_database d)) END::int AS in_use,
       count(*) FILTER (WHERE coalesce(a.backend_type, 'client backend') = 'client backend'
                          AND starts_with(a.application_name, 'hrwsi')) AS hrwsi,
       current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
       - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0) AS slots
FROM pg_stat_activity a;

-- name: report_sessions_not_seen
-- The sessions of other roles in this database whose transaction this role cannot see (without
-- pg_read_all_stats their state and transaction start read NULL): a transaction open long among them is not
-- named by report_long_transactions, which status says (found by review). 0 for a role that sees them all.
SELECT count(*) FILTER (WHERE a.backend_type IS NULL AND a.usesysid IS NOT NULL)::int AS sessions, current_user AS role
FROM pg_stat_activity a
WHERE a.datname = current_database() AND NOT pg_has_role('pg_read_all_stats', 'USAGE');

-- name: report_long_transactions
-- Sessions whose transaction has been open longer than after_s seconds (not this one), oldest first: an
-- idle-in-transaction session or a long read that holds a snapshot (or a transaction id), and VACUUM keeps
-- every row version it might see, in every table of the database: the dead rows of hrwsi's busy tables (tasks, jobs, the alert outbox)
-- pile up, and its reads slow down while the transaction lasts; a LISTENing session in a transaction holds the
-- notification queue too. Nothing said so (found by exploratory testing). Sessions of other roles show their
-- state and transaction start only to a role with pg_read_all_stats.
SELECT a.pid, a.usename AS role, a.application_name AS application, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_s,
       -- (a snapshot kept (REPEATABLE READ, a running statement) or a transaction id (a write): what VACUUM
       -- must respect; an idle READ COMMITTED transaction that only read holds neither, but its locks)
       a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL AS holds_back_vacuum
FROM pg_stat_activity a
WHERE a.xact_start < now() - make_interval(secs => %(after_s)s) AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend' AND a.datname = current_database()  -- (another database's: not ours to keep)
ORDER BY a.xact_start
LIMIT %(limit)s;

-- name: demo_database_marker
-- The comment of database %(name)s (one row when it exists): the demo drops only one carrying its marker.
SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(name)s;

-- name: demo_database_sessions
-- Who else uses database %(name)s: the demo refuses to drop it under them rather than end their sessions.
SELECT pid, usename, application_name, client_addr::text
FROM pg_stat_activity WHERE datname = %(name)s AND pid <> pg_backend_pid() ORDER BY pid;

-- name: demo_has_harvest_sources
SELECT to_regclass('hrwsi.harvest_source') IS NOT NULL;

-- name: demo_has_the_demos_landing_source
-- The source every demo registers (hrwsi.demo._register_landing_source): how a demo's database made before
-- the demo marked its database is known.
SELECT EXISTS (SELECT 1 FROM hrwsi.harvest_source WHERE name = 'demo_landing' AND kind = 'landing_directory');
