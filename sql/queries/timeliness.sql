-- `hrwsi timeliness`: the views hrwsi.timeliness and hrwsi.product_timeliness, filtered (ADR 0010).
-- Placeholders: psycopg (%(name)s).

-- name: report_timeliness
-- Per routine, lane, tile and day (UTC, of registration), the last %(days)s days, filtered: the view
-- hrwsi.timeliness's figures, and how many products have a negative delay (registered before their
-- scene's sensing or publication time: times given wrong, e.g. without a zone), which the figures count.
SELECT routine, lane, tile, day, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline, count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time,
       count(*) FILTER (WHERE from_sensing_s < 0 OR from_publication_s < 0) AS negative_delays
FROM hrwsi.product_timeliness
WHERE day > (now() AT TIME ZONE 'UTC')::date - %(days)s::int
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
WHERE day > (now() AT TIME ZONE 'UTC')::date - %(days)s::int
  AND (%(routine)s::text IS NULL OR routine = %(routine)s)
  AND (%(lane)s::text IS NULL OR lane = %(lane)s)
  AND (%(tile)s::text IS NULL OR tile = %(tile)s)
GROUP BY routine, lane
ORDER BY routine, lane;

-- name: report_open_deadlines
-- Open tasks with a deadline, with the same filters: how many are late already, and how many
-- the plan ends after their deadline.
SELECT count(*) FILTER (WHERE t.deadline_at <= now()) AS late,
       count(*) FILTER (WHERE t.deadline_at > now() AND t.planned_end > t.deadline_at) AS at_risk
FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
  AND (%(routine)s::text IS NULL OR t.routine = %(routine)s)
  AND (%(lane)s::text IS NULL OR t.lane = %(lane)s)
  AND (%(tile)s::text IS NULL OR i.tile = %(tile)s);
