-- The web dashboard (`hrwsi web`, src/hrwsi/web/) and the metrics endpoints (asyncpg: $1, $2 ...).
--
-- Every query reads tasks through hrwsi.dashboard_task, whose `lane` column is defined in ONE place
-- (migration 0007). Lists are pages of at most $n rows, newest first, with a keyset cursor
-- ("ids below $x"), so a page costs the same on the first day and with 1,000,000 tasks. The
-- optional filters are `($k::type IS NULL OR column = $k)`: the dashboard's pool plans every
-- statement with its actual parameters (plan_cache_mode = force_custom_plan), so a filter left
-- empty disappears from the plan and the indexes of 0007 are used.

-- ============================================================================================
-- overview
-- ============================================================================================

-- name: web_task_counts
-- Tasks per routine, lane and state: the open ones counted through processing_task_state_id_idx (the work at hand),
-- the finished ones as kept by the task triggers (hrwsi.finished_task_counts, migration 0105). Counted whole, the
-- finished tasks were a scan of the archive (0.2 to 0.5 s at 1,000,000 tasks) on every read of the overview and
-- every 5 s of every service instance Prometheus scrapes (hrwsi_tasks). With, for each open state, the age of its
-- oldest task: the backlog (pending and planned: how many wait, and the oldest's age; metrics.backlog_of) is read in
-- the same pass. A read of its own read the pending and planned tasks again, a second pass over the work at hand
-- (0.27 s more at 300,000 open tasks, an outage's recovery; session 76).
SELECT routine, lane, state, count(*)::bigint AS n, extract(epoch FROM now() - min(created_at))::float8 AS oldest_s
FROM hrwsi.dashboard_task
WHERE state IN ('pending', 'planned', 'dispatched', 'queued', 'running', 'on_hold', 'blocked')
GROUP BY routine, lane, state
UNION ALL
SELECT routine, lane, state, n, NULL FROM hrwsi.finished_task_counts();

-- name: web_lanes
SELECT name, priority, description FROM hrwsi.lane ORDER BY priority;

-- name: web_latest_plan
SELECT id, created_at, task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s
FROM hrwsi.plan ORDER BY id DESC LIMIT 1;

-- name: web_routines
-- (with its back-fill's hold, and the lanes that are back-fill, less urgent than near-real-time: migration 0075)
SELECT name, on_hold, hold_reason, consecutive_failures, hold_after_failures, max_attempts,
       backfill_hold_reason, backfill_consecutive_failures,
       ARRAY(SELECT l.name FROM hrwsi.lane l WHERE l.priority > 0) AS backfill_lanes
FROM hrwsi.processing_routine
ORDER BY name;

-- name: web_throughput
-- Jobs that ended in the last $1 seconds per routine, lane and final state, with their mean run time.
SELECT t.routine, t.lane, j.state, count(*)::bigint AS n,
       avg(extract(epoch FROM j.finished_at - j.started_at))::float8 AS mean_run_s
FROM hrwsi.job j
JOIN hrwsi.dashboard_task t ON t.id = j.task_id
WHERE j.finished_at > now() - make_interval(secs => $1)
GROUP BY t.routine, t.lane, j.state;

-- name: web_throughput_series
-- Jobs that ended in the last $1 seconds, in buckets of $2 seconds (bucket 0 = the latest).
SELECT floor(extract(epoch FROM now() - finished_at) / $2)::int AS bucket,
       count(*) FILTER (WHERE state = 'processed')::bigint AS processed,
       count(*) FILTER (WHERE state IN ('internal_error', 'external_error'))::bigint AS failed,
       count(*) FILTER (WHERE state IN ('lost', 'cancelled'))::bigint AS other
FROM hrwsi.job
WHERE finished_at > now() - make_interval(secs => $1)
GROUP BY 1;

-- name: web_alert_queue
-- (with the age of the oldest never tried: reports.alerts_untried_said)
SELECT count(*)::bigint AS unsent, extract(epoch FROM now() - min(created_at))::float8 AS oldest_s,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE attempts = 0))::float8 AS untried_oldest_s
FROM hrwsi.alert WHERE sent_at IS NULL;

-- name: web_unplannable
-- Pending tasks the planner cannot place, with its reason: one line per routine and reason, with how
-- many tasks it holds and its oldest as the example. A reason names its own task ("task 100000
-- (routine huge) needs 64 CPU ..."): grouped as it reads with the task ids left out (grouped by
-- the text itself, 10,000 tasks made 10,000 lines, and sorted as text, task 100000 before 90532).
-- The oldest's reason is read by its id, once per line shown: `(array_agg(state_reason ORDER BY id))[1]` carried every
-- unplannable task's reason through the grouping's sort, to keep one per line (5.2 MB spilled to disk at 25,000 of
-- 260,000 pending; 3.8 MB in memory without them).
SELECT g.routine, d.state_reason, g.id, g.tasks
FROM (SELECT routine, min(id) AS id, count(*) AS tasks
      FROM hrwsi.dashboard_task
      WHERE state = 'pending' AND hrwsi.cannot_be_planned(state, state_reason, not_before)
      GROUP BY routine, regexp_replace(state_reason, 'task [0-9]+', 'task N', 'g')
      ORDER BY routine, min(id)
      LIMIT $1) g
JOIN hrwsi.dashboard_task d ON d.id = g.id
ORDER BY g.routine, g.id;

-- name: web_held_campaigns
-- As report_held_campaigns (`hrwsi status`): reprocessing campaigns on hold, with how many of their tasks wait held.
SELECT k.id AS campaign, k.routine, k.hold_reason AS reason,
       (SELECT count(*) FROM hrwsi.processing_task t WHERE t.campaign_id = k.id AND t.state = 'on_hold') AS held_tasks
FROM hrwsi.campaign k
WHERE k.on_hold
ORDER BY k.id
LIMIT $1;

-- name: web_held_tasks
-- As report_held_tasks (`hrwsi status`): tasks held one by one (not through their routine, its back-fill or their
-- campaign, which the lines above say once), and those an operator held that the end of the task they wait for
-- blocked since (held_while_blocked: held again when their wait ends, migration 0095); at most $1, oldest first,
-- each with how many there are in all (one range of processing_task_state_id_idx per state).
SELECT t.id, t.routine, t.state,
       CASE WHEN t.state = 'blocked' THEN 'held by an operator, and blocked: ' || t.state_reason
            ELSE t.state_reason END AS reason, count(*) OVER () AS total
FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id
WHERE (t.state = 'on_hold' OR (t.state = 'blocked' AND t.held_while_blocked))
  AND NOT r.on_hold AND NOT coalesce(k.on_hold, false)
  AND NOT (r.backfill_hold_reason IS NOT NULL AND t.campaign_id IS NULL
           AND starts_with(t.state_reason, 'back-fill of routine '))
ORDER BY t.id
LIMIT $1;

-- name: web_jobs_queued_long
-- As report_jobs_queued_long: jobs queued in the backend for more than $1 seconds, the oldest first.
SELECT j.task_id, t.routine, j.attempt, j.backend_job_id, j.worker, j.message,
       extract(epoch FROM now() - j.submitted_at)::float8 AS queued_s, count(*) OVER () AS total
FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
WHERE j.state = 'queued' AND j.submitted_at < now() - make_interval(secs => $1)
ORDER BY j.submitted_at, j.id
LIMIT $2;

-- name: web_jobs_running_long
-- As report_jobs_running_long: running longer than $1 times the expected duration and at least $2 s.
SELECT j.task_id, t.routine, j.attempt, j.backend_job_id, j.worker,
       extract(epoch FROM now() - j.started_at)::float8 AS running_s,
       extract(epoch FROM r.expected_duration)::float8 AS expected_s,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, count(*) OVER () AS total
FROM hrwsi.job j
JOIN hrwsi.processing_task t ON t.id = j.task_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
WHERE j.state = 'running'
  AND j.started_at < now() - greatest(r.expected_duration * $1::float8, make_interval(secs => $2))
ORDER BY j.started_at, j.id
LIMIT $3;

-- name: web_recent_failures
-- The latest failed or lost attempts (job_failed_idx, newest first: the attempts that succeeded are not read,
-- migration 0100), with the task's state now.
SELECT j.task_id, t.routine, t.lane, j.attempt, j.state, j.exit_code, j.message, j.finished_at, t.state AS task_state
FROM hrwsi.job j JOIN hrwsi.dashboard_task t ON t.id = j.task_id
WHERE j.finished_at IS NOT NULL AND j.state IN ('internal_error', 'external_error', 'lost')
ORDER BY j.finished_at DESC NULLS LAST, j.id DESC
LIMIT $1;

-- name: web_alerts
-- Alerts, newest first, a page of $2 below id $1 (NULL: the newest).
SELECT id, kind, subject, body, task_id, routine, created_at, sent_at, attempts, last_error
FROM hrwsi.alert
WHERE ($1::bigint IS NULL OR id < $1)
ORDER BY id DESC
LIMIT $2;

-- name: web_timeliness_view
-- The timeliness view (issue 12) when it exists; the dashboard's section is empty until then. With the database's
-- time: the section says when it was read (web.data.TimelinessCache).
SELECT to_regclass('hrwsi.timeliness') IS NOT NULL AS exists, now() AT TIME ZONE 'UTC' AS now;

-- name: web_timeliness_day_before
-- The newest day (UTC) with a product before day $1 (NULL: the newest of all), through product_day_idx (migration
-- 0100); NULL when there is none.
SELECT max((created_at AT TIME ZONE 'UTC')::date) FROM hrwsi.product
WHERE (created_at AT TIME ZONE 'UTC')::date < coalesce($1::date, 'infinity'::date);

-- name: web_timeliness_day
-- The view's rows of one day $1 (per routine, lane and tile; at most $2): the overview reads the newest days one by
-- one, each its own products alone (the filter on the view's day reaches product_day_idx). Sorted over the whole
-- view, every product ever registered was read to show the newest day's. Through hrwsi.timeliness_of_day (migration
-- 0113): the view read here joined a production day's products to every task ever run by hash (870 ms at 26,070
-- products among 1,300,000 tasks); the function probes their tasks and inputs by key.
SELECT routine, lane, tile, day, products, p50_from_sensing_s, p95_from_sensing_s, p50_from_publication_s,
       p95_from_publication_s, on_time, with_deadline
FROM hrwsi.timeliness_of_day($1::date, $2::integer);

-- ============================================================================================
-- tasks
-- ============================================================================================

-- name: web_tasks
-- A page of tasks, newest first, below id $7, filtered by state, routine, tile, worker, lane, a piece
-- of the input's file name ($6, any case; the trigram index of 0007) or its whole path ($9).
SELECT t.id, t.routine, t.lane, t.state, t.state_reason, t.worker, t.attempts, t.failures,
       t.planned_start, t.updated_at, i.tile, i.input_path
FROM hrwsi.dashboard_task t
JOIN hrwsi.input i ON i.id = t.input_id
WHERE ($1::text IS NULL OR t.state = $1)
  AND ($2::text IS NULL OR t.routine = $2)
  AND ($3::text IS NULL OR i.tile = $3)
  AND ($4::text IS NULL OR t.worker = $4)
  AND ($5::text IS NULL OR t.lane = $5)
  AND ($6::text IS NULL OR lower(substring(i.input_path FROM '[^/]*$'))
                            LIKE '%' || replace(replace(replace(lower($6), '\', '\\'), '%', '\%'), '_', '\_') || '%')
  AND ($7::bigint IS NULL OR t.id < $7)
  AND ($9::text IS NULL OR i.input_path = $9)
ORDER BY t.id DESC
LIMIT $8;

-- name: web_task_series_ahead
-- (as report_task_series_ahead)
WITH RECURSIVE ahead AS (
    SELECT p.id, p.lane, p.depends_on, p.dependency_waived, 1 AS n
    FROM hrwsi.processing_task t JOIN hrwsi.processing_task p ON p.id = t.depends_on
    WHERE t.id = $1 AND NOT t.dependency_waived AND t.state NOT IN ('processed', 'terminated', 'cancelled')
      AND p.state NOT IN ('processed', 'terminated', 'cancelled')
    UNION ALL
    SELECT p.id, p.lane, p.depends_on, p.dependency_waived, a.n + 1
    FROM ahead a JOIN hrwsi.processing_task p ON p.id = a.depends_on
    WHERE NOT a.dependency_waived AND a.n < 100000 AND p.state NOT IN ('processed', 'terminated', 'cancelled')
)
SELECT count(*) AS open, count(*) FILTER (WHERE l.priority > 0) AS back_fill
FROM ahead a JOIN hrwsi.lane l ON l.name = a.lane;

-- name: web_task
SELECT t.id, t.routine, t.lane, t.state, t.state_reason, t.worker, t.planned_start, t.planned_end,
       t.depends_on, t.attempts, t.failures, t.not_before, t.created_at, t.updated_at, t.plan_id, t.deadline_at,
       r.max_attempts, r.on_hold AS routine_on_hold, r.expected_duration,
       -- what holds it, for what happens next (reports.task_next_step)
       r.backfill_hold_reason IS NOT NULL AS backfill_on_hold,
       (SELECT p.campaign_id FROM hrwsi.processing_task p WHERE p.id = t.id) AS campaign_id,
       coalesce((SELECT k.on_hold FROM hrwsi.processing_task p JOIN hrwsi.campaign k ON k.id = p.campaign_id
                 WHERE p.id = t.id), false) AS campaign_on_hold,
       -- (held with its routine, campaign or back-fill alone: an operator may hold it too, migration 0112)
       t.state = 'on_hold' AND NOT hrwsi.hold_is_the_tasks_own(t.state_reason) AS held_with_its_group,
       i.id AS input_id, i.processing_condition, i.input_path, i.tile, i.mission, i.measured_at,
       i.published_at, i.source, i.product_id AS chained_from_product,
       -- when retention deleted its history and attempts (the page says so rather than "no attempt yet")
       u.history_pruned_at,
       -- the priority it is served at, and whose priority and deadline it took (reports.priority_inherited_text)
       u.priority, u.priority_inherited_from, u.deadline_inherited_from, u.own_deadline_at, u.held_while_blocked
FROM hrwsi.dashboard_task t
JOIN hrwsi.input i ON i.id = t.input_id
JOIN hrwsi.processing_routine r ON r.name = t.routine
-- (the task's own row, read once for what the dashboard's view of it leaves out)
CROSS JOIN LATERAL (SELECT p.history_pruned_at, p.priority, p.priority_inherited_from, p.deadline_inherited_from,
                           p.own_deadline_at,
                           p.held_while_blocked  -- (a blocked task an operator may hold, once: migration 0118)
                    FROM hrwsi.processing_task p WHERE p.id = t.id) u
WHERE t.id = $1;

-- name: web_task_events
-- The task's latest $2 history rows, oldest first, each with how many it has in all (a task replanned, held and
-- released, retried for weeks has thousands: its page listed every one).
SELECT state, reason, attempts, worker, at, total
FROM (SELECT id, state, reason, attempts, worker, at, count(*) OVER () AS total
      FROM hrwsi.task_event WHERE task_id = $1 ORDER BY id DESC LIMIT $2) latest
ORDER BY id;

-- name: web_task_jobs
-- The task's attempts below attempt $2 (NULL: its latest), newest first, at most $3 (the page reads one more than it
-- shows, to know whether there are older ones), each with how many it has in all: a task retried without end (a
-- routine failing in a loop, lost attempts retried without limit) listed every attempt it ever had.
SELECT id, attempt, backend, backend_job_id, worker, state, exit_code, message, owner, log_path, output_dir,
       submitted_at, started_at, finished_at, cancel_requested,
       (SELECT count(*) FROM hrwsi.job a WHERE a.task_id = $1) AS total
FROM hrwsi.job WHERE task_id = $1 AND ($2::integer IS NULL OR attempt < $2)
ORDER BY attempt DESC
LIMIT $3;

-- name: web_task_job
-- One attempt of the task ($2; NULL: its latest), for its log when the page does not list it.
SELECT id, attempt, backend, backend_job_id, worker, state, exit_code, message, owner, log_path, output_dir,
       submitted_at, started_at, finished_at, cancel_requested
FROM hrwsi.job WHERE task_id = $1 AND ($2::integer IS NULL OR attempt = $2)
ORDER BY attempt DESC
LIMIT 1;

-- name: web_task_products
SELECT id, path, product_type, size_bytes, created_at, chained_at
FROM hrwsi.product WHERE task_id = $1 ORDER BY id
LIMIT $2;

-- name: web_lineage_up
-- The tasks whose products this task's input came from, transitively, nearest first: through the
-- product an input was chained from, through the members of a multi-input group input, and through
-- the members a campaign's composite read (migration 0073), as report_lineage (`hrwsi lineage`); each
-- task with its campaign (NULL: production).
WITH RECURSIVE up (depth, task_id, via_product) AS (
    SELECT 0, $1::bigint, NULL::text
    UNION
    SELECT up.depth + 1, parent.task_id, parent.path
    FROM up
    JOIN hrwsi.processing_task t ON t.id = up.task_id
    CROSS JOIN LATERAL (
        SELECT p.task_id, p.path FROM hrwsi.input i JOIN hrwsi.product p ON p.id = i.product_id
        WHERE i.id = t.input_id AND p.task_id IS NOT NULL
        UNION ALL
        SELECT p.task_id, p.path FROM hrwsi.multi_input_member m JOIN hrwsi.product p ON p.path = m.member_path
        WHERE m.input_id = t.input_id AND p.task_id IS NOT NULL
        UNION ALL
        SELECT p.task_id, p.path FROM hrwsi.multi_input_campaign_member m JOIN hrwsi.product p ON p.path = m.member_path
        WHERE m.task_id = t.id AND p.task_id IS NOT NULL
    ) parent
    WHERE up.depth < $2
)
SELECT up.depth, up.task_id, up.via_product, t.routine, t.state, t.campaign_id, i.tile, i.input_path
FROM up JOIN hrwsi.processing_task t ON t.id = up.task_id JOIN hrwsi.input i ON i.id = t.input_id
WHERE up.depth > 0
LIMIT $3;

-- name: web_lineage_down
-- The tasks made from this task's products, transitively, nearest first (a campaign's composite that
-- read one of them too: migration 0073); each with its campaign (NULL: production).
WITH RECURSIVE down (depth, task_id, via_product) AS (
    SELECT 0, $1::bigint, NULL::text
    UNION
    SELECT down.depth + 1, child.task_id, child.path
    FROM down
    CROSS JOIN LATERAL (
        SELECT c.id AS task_id, p.path FROM hrwsi.product p
        JOIN hrwsi.input i ON i.product_id = p.id JOIN hrwsi.processing_task c ON c.input_id = i.id
        WHERE p.task_id = down.task_id
        UNION ALL
        SELECT c.id, p.path FROM hrwsi.product p
        JOIN hrwsi.multi_input_member m ON m.member_path = p.path JOIN hrwsi.processing_task c ON c.input_id = m.input_id
        WHERE p.task_id = down.task_id
        UNION ALL
        SELECT m.task_id, p.path FROM hrwsi.product p
        JOIN hrwsi.multi_input_campaign_member m ON m.member_path = p.path
        WHERE p.task_id = down.task_id
    ) child
    WHERE down.depth < $2
)
SELECT down.depth, down.task_id, down.via_product, t.routine, t.state, t.campaign_id, i.tile, i.input_path
FROM down JOIN hrwsi.processing_task t ON t.id = down.task_id JOIN hrwsi.input i ON i.id = t.input_id
WHERE down.depth > 0
LIMIT $3;

-- name: web_task_audit
SELECT id, at, actor, via, action, succeeded, outcome FROM hrwsi.operator_action
WHERE target = $1 ORDER BY id DESC LIMIT $2;

-- ============================================================================================
-- the current schedule (Gantt chart)
-- ============================================================================================

-- name: web_schedule
-- What holds or will hold a worker: planned, dispatched, queued and running tasks, earliest first;
-- a running task starts when its job started and lasts at least until now.
SELECT t.id, t.routine, t.lane, t.state, t.worker,
       coalesce(j.started_at, t.planned_start) AS start_at,
       greatest(coalesce(j.started_at + r.expected_duration, t.planned_end),
                CASE WHEN t.state <> 'planned' THEN now() END) AS end_at,
       -- (its bar ends now at the earliest; its title says when it was expected to end, if that passed; a task not
       -- started yet ends its expected duration after now at the earliest, and says how late its start is, as
       -- report_schedule: a planned task waiting for capacity read "overdue")
       CASE WHEN j.started_at IS NOT NULL THEN j.started_at + r.expected_duration
            ELSE greatest(t.planned_end, now() + r.expected_duration) END AS expected_end,
       CASE WHEN j.started_at IS NULL AND t.planned_start < now() - interval '5 seconds' THEN t.planned_start END
           AS start_passed_at,
       -- (a task in flight holds what it was dispatched with, if its routine changed since: migration 0067)
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.state <> 'planned' AND t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb
FROM hrwsi.dashboard_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.attempt = t.attempts AND t.state IN ('queued', 'running')
WHERE t.state IN ('planned', 'dispatched', 'queued', 'running') AND t.worker IS NOT NULL
ORDER BY t.planned_start, t.id
LIMIT $1;

-- name: web_schedule_size
-- With the database's now(): the chart's now line and its "overdue" are told by the database's clock, as
-- `hrwsi plan show` tells them and as web_schedule ends the bars (read in the same transaction: one now()).
SELECT count(*)::bigint AS total, now() AS now FROM hrwsi.processing_task
WHERE state IN ('planned', 'dispatched', 'queued', 'running') AND worker IS NOT NULL;

-- name: web_workers
SELECT w.name, w.flavour, w.active, f.cpu::float8 AS cpu, f.ram_mb, f.disk_mb
FROM hrwsi.worker w JOIN hrwsi.flavour f ON f.name = w.flavour
ORDER BY w.name;

-- name: web_budget
SELECT cpu_max::float8 AS cpu_max, ram_max_mb, storage_max_mb, vm_max FROM hrwsi.budget;

-- ============================================================================================
-- operator actions and their audit
-- ============================================================================================

-- name: web_retry_task
SELECT hrwsi.retry_task($1::bigint);

-- name: web_cancel_task
SELECT hrwsi.cancel_task($1::bigint);

-- name: web_hold_task
SELECT hrwsi.hold_task($1::bigint);

-- name: web_release_task
SELECT hrwsi.release_task($1::bigint);

-- name: web_hold_routine
SELECT hrwsi.hold_routine($1::text, $2::text);

-- name: web_release_routine
SELECT hrwsi.release_routine($1::text);

-- name: web_release_campaign
SELECT hrwsi.release_campaign($1::bigint);

-- name: web_record_action
INSERT INTO hrwsi.operator_action (actor, via, action, target, succeeded, outcome, client)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id;

-- name: web_audit
SELECT id, at, actor, via, action, target, succeeded, outcome, client
FROM hrwsi.operator_action
WHERE ($1::bigint IS NULL OR id < $1)
ORDER BY id DESC
LIMIT $2;

-- ============================================================================================
-- metrics (src/hrwsi/metrics.py)
-- ============================================================================================

-- name: metrics_active_jobs
SELECT t.routine, t.lane, j.state, count(*)::bigint AS n
FROM hrwsi.job j JOIN hrwsi.dashboard_task t ON t.id = j.task_id
WHERE j.state IN ('submitted', 'queued', 'running')
GROUP BY t.routine, t.lane, j.state;

-- name: metrics_last_job_id
SELECT coalesce(max(id), 0) FROM hrwsi.job;

-- name: metrics_new_jobs
-- Jobs created after id $2 (at most $3), and for the first attempts dispatched by the launchers
-- $1: the time from their input's insert to the job's submission.
SELECT j.id,
       CASE WHEN j.attempt = 1 AND j.owner = ANY($1::text[])
            THEN extract(epoch FROM j.submitted_at - i.created_at)::float8 END AS latency_s
FROM hrwsi.job j
JOIN hrwsi.processing_task t ON t.id = j.task_id
JOIN hrwsi.input i ON i.id = t.input_id
WHERE j.id > $2
ORDER BY j.id
LIMIT $3;

-- name: web_long_transactions
-- The transactions open longer than $1 s, as `hrwsi status` names them (query report_long_transactions,
-- which says why): at most $2, oldest first.
SELECT a.pid, a.usename AS role, a.application_name AS application, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_s,
       a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL AS holds_back_vacuum
FROM pg_stat_activity a
WHERE a.xact_start < now() - make_interval(secs => $1) AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend' AND a.datname = current_database()
ORDER BY a.xact_start
LIMIT $2;

-- name: web_handover_holds
-- As report_handover_holds (`hrwsi status`, `hrwsi task show`; the rules written once, handover_holds_counting): the
-- hand-over holds back-fill waits for, those on worker $1 (NULL: every worker), the first $2 to end.
SELECT h.* FROM (
    -- include: handover_holds_counting
) h
WHERE $1::text IS NULL OR h.worker = $1::text
ORDER BY h.until, h.task_id LIMIT $2;
