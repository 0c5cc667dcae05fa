-- Named queries of the harvest sources for synchronous callers: adding a landing-directory
-- source, the `hrwsi sources` listing. Placeholders: psycopg (%(name)s).

-- name: cli_upsert_landing_source
-- Add or change a landing-directory source (scanned continuously); due at once.
INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, next_run_at)
VALUES (%(name)s, 'landing_directory', %(product_type)s, %(config)s::jsonb, now())
ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, product_type = EXCLUDED.product_type,
    config = EXCLUDED.config, next_run_at = now(), active = true;

-- name: cli_list_sources
-- config as text: hrwsi.harvest.source_config reads it, and sets aside one nested deeper than Python reads. `hrwsi
-- sources` counts every file a landing directory ever had, per state.
SELECT s.*,
       (SELECT jsonb_object_agg(state, n) FROM (SELECT f.state, count(*) AS n FROM hrwsi.landing_file f
                                                WHERE f.source = s.name GROUP BY f.state) c) AS files
FROM (
    -- include: sources_said
) s
ORDER BY s.name;

-- name: web_sources
-- As cli_list_sources, for the dashboard's overview (read again at every change, its sources' section live): a
-- landing directory's files in hand alone (seen, ready: landing_file_unfinished_idx). Per state over all its files,
-- the overview read every file ever landed (one per scene: as many as the inputs, growing with the archive) on every
-- read, to show a figure no section of the page shows.
SELECT s.*,
       (SELECT jsonb_object_agg(state, n) FROM (SELECT f.state, count(*) AS n FROM hrwsi.landing_file f
                                                WHERE f.source = s.name AND f.state IN ('seen', 'ready')
                                                GROUP BY f.state) c) AS files
FROM (
    -- include: sources_said
) s
ORDER BY s.name;

-- name: sources_said
-- Part of cli_list_sources and web_sources: every source as hrwsi.harvest.describe_source reads it, but its files.
SELECT s.name, s.kind, s.product_type, s.config::text AS config, s.frequency, s.frequency_interval, s.cron, s.mode,
       s.backfill_from, s.backfill_to, s.backfill_cursor, s.backfill_resume_at, s.last_run_at, s.next_run_at, s.last_error, s.active,
       s.claimed_by, s.claimed_until,
       refused.refused, refused.refused_path, refused.refused_message, refused.refused_at
FROM hrwsi.harvest_source s
-- The files it refused (failed) in the last day, the newest with its reason: the dashboard says them, as
-- `hrwsi status` does (query report_sources_needing_attention, reports.SOURCE_REFUSED_WINDOW_S: the same day).
CROSS JOIN LATERAL (
    SELECT count(*) AS refused,
           (array_agg(f.path ORDER BY f.updated_at DESC, f.id DESC))[1] AS refused_path,
           (array_agg(f.message ORDER BY f.updated_at DESC, f.id DESC))[1] AS refused_message,
           max(f.updated_at) AS refused_at
    FROM hrwsi.landing_file f
    WHERE f.source = s.name AND f.state = 'failed' AND f.updated_at > now() - interval '1 day') refused
