-- Reprocessing campaigns (`hrwsi reprocess`, `hrwsi campaigns`; ADR 0010). Placeholders: psycopg (%(name)s).

-- name: reprocess
SELECT campaign_id, tasks, summary
FROM hrwsi.reprocess(routine => %(routine)s, condition => %(condition)s, measured_from => %(measured_from)s,
                     measured_to => %(measured_to)s, tiles => %(tiles)s, command => %(command)s,
                     image => %(image)s, chain => %(chain)s, name => %(name)s);

-- name: cancel_campaign
SELECT hrwsi.cancel_campaign(%(campaign)s);

-- name: release_campaign
SELECT hrwsi.release_campaign(%(campaign)s);

-- name: report_campaigns
-- Each campaign's progress per routine (hrwsi.campaign_progress), newest campaign first.
SELECT campaign_id, name, campaign_routine, condition, measured_from, measured_to, tiles, version, lane, chain,
       created_at, created_by, routine, tasks, waiting, running, processed, terminated, cancelled, products,
       unchained_products, started_at, finished_at, on_hold, hold_reason
FROM hrwsi.campaign_progress
WHERE %(campaign)s::bigint IS NULL OR campaign_id = %(campaign)s
ORDER BY campaign_id DESC, routine = campaign_routine DESC, routine;
