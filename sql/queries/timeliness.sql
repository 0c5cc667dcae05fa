-- `hrwsi timeliness`: the views hrwsi.timeliness and hrwsi.product_timeliness, filtered (ADR 0010).
-- Placeholders: psycopg (%(name)s).

-- name: report_timeliness
-- Per routine, lane, tile and day (UTC, of registration), the last %(days)s days, filtered: the view
-- hrwsi.timeliness's figures, and how many products have a negative delay (registered before their
-- scene's sensing or publication time: times given wrong, e.g. without a zone), which the figures count. Production's
-- products alone, as the view (migration 0122): a campaign's reprocess scenes sensed long before.
SELECT routine, lane, tile, day, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline, count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time,
       count(*) FILTER (WHERE from_sensing_s < 0 OR from_publication_s < 0) AS negative_delays
FROM hrwsi.product_timeliness
WHERE day > (now() AT TIME ZONE 'UTC')::date - %(days)s::int AND campaign_id IS NULL
  AND (%(routine)s::text IS NULL OR routine = %(routine)s)
  AND (%(lane)s::text IS NULL OR lane = %(lane)s)
  AND (%(tile)s::text IS NULL OR tile = %(tile)s)
GROUP BY routine, lane, tile, day
ORDER BY day DESC, routine, lane, tile NULLS LAST;

-- name: report_timeliness_summary
-- The same window and filters, per routine and lane over all its days and tiles.
SELECT routine, lane, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline, count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time,
       count(*) FILTER (WHERE from_sensing_s < 0 OR from_publication_s < 0) AS negative_delays
FROM hrwsi.product_timeliness
WHERE day > (now() AT TIME ZONE 'UTC')::date - %(days)s::int AND campaign_id IS NULL
  AND (%(routine)s::text IS NULL OR routine = %(routine)s)
  AND (%(lane)s::text IS NULL OR lane = %(lane)s)
  AND (%(tile)s::text IS NULL OR tile = %(tile)s)
GROUP BY routine, lane
ORDER BY routine, lane;

-- name: report_open_deadlines
-- Open tasks with a deadline of their own, with the same filters: how many are late already, and how
-- many the plan ends after their deadline. (A task that took the deadline of a near-real-time task
-- after it in its time series is counted against its own, if any: migration 0083.)
SELECT count(*) FILTER (WHERE d.due <= now()) AS late,
       count(*) FILTER (WHERE d.due > now() AND t.planned_end > d.due) AS at_risk
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
CROSS JOIN LATERAL (SELECT CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at
                                ELSE t.own_deadline_at END AS due) d
WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
  AND (t.deadline_inherited_from IS NULL OR t.own_deadline_at IS NOT NULL)
  AND (%(routine)s::text IS NULL OR t.routine = %(routine)s)
  AND (%(lane)s::text IS NULL OR t.lane = %(lane)s)
  AND (%(tile)s::text IS NULL OR i.tile = %(tile)s);

-- name: report_deadlines_now
-- `hrwsi status` and the dashboard: the open tasks with a deadline, how many are past it (and of
-- those, how many were more than a day past it when their input arrived: a back-fill inserted in a
-- near-real-time lane, most likely), how many the plan ends after it, how many cannot progress (held,
-- blocked) before it, each with its most urgent task; and the next deadline. Through the index of
-- open tasks with a deadline (processing_task_deadline_idx). Each against its own deadline: one a task
-- took from a near-real-time task after it in its time series serves it first, but is not its own
-- (migration 0083).
WITH open AS (
    SELECT t.id, t.routine, t.state, t.state_reason,
           CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS deadline_at,
           t.planned_end, i.created_at AS arrived_at
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
      AND (t.deadline_inherited_from IS NULL OR t.own_deadline_at IS NOT NULL)
)
SELECT (SELECT count(*) FROM open) AS open,
       (SELECT count(*) FROM open WHERE deadline_at <= now()) AS past,
       (SELECT count(*) FROM open WHERE deadline_at <= now() AND deadline_at < arrived_at - interval '1 day')
           AS arrived_over_a_day_late,
       past_task.id AS past_task, past_task.routine AS past_routine, past_task.past_s,
       (SELECT count(*) FROM open WHERE deadline_at > now() AND planned_end > deadline_at
                                    AND state IN ('planned', 'dispatched', 'queued', 'running')) AS at_risk,
       risk_task.id AS risk_task, risk_task.routine AS risk_routine, risk_task.late_s AS risk_late_s,
       risk_task.due_in_s AS risk_due_in_s,
       (SELECT count(*) FROM open WHERE deadline_at > now() AND state IN ('on_hold', 'blocked')) AS stuck,
       stuck_task.id AS stuck_task, stuck_task.routine AS stuck_routine, stuck_task.state AS stuck_state,
       stuck_task.state_reason AS stuck_reason, stuck_task.due_in_s AS stuck_due_in_s,
       next_task.id AS next_task, next_task.routine AS next_routine, next_task.due_in_s AS next_due_in_s
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT id, routine, extract(epoch FROM now() - deadline_at)::float8 AS past_s FROM open
                   WHERE deadline_at <= now() ORDER BY deadline_at DESC, id LIMIT 1) past_task ON true
LEFT JOIN LATERAL (SELECT id, routine, extract(epoch FROM planned_end - deadline_at)::float8 AS late_s,
                          extract(epoch FROM deadline_at - now())::float8 AS due_in_s FROM open
                   WHERE deadline_at > now() AND planned_end > deadline_at
                     AND state IN ('planned', 'dispatched', 'queued', 'running')
                   ORDER BY deadline_at, id LIMIT 1) risk_task ON true
LEFT JOIN LATERAL (SELECT id, routine, state, state_reason, extract(epoch FROM deadline_at - now())::float8 AS due_in_s
                   FROM open WHERE deadline_at > now() AND state IN ('on_hold', 'blocked')
                   ORDER BY deadline_at, id LIMIT 1) stuck_task ON true
LEFT JOIN LATERAL (SELECT id, routine, extract(epoch FROM deadline_at - now())::float8 AS due_in_s FROM open
                   WHERE deadline_at > now() ORDER BY deadline_at, id LIMIT 1) next_task ON true;
