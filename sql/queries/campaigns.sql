-- Reprocessing campaigns (`hrwsi reprocess`, `hrwsi campaigns`; ADR 0010). Placeholders: psycopg (%(name)s).

-- name: reprocess
SELECT campaign_id, tasks, summary
FROM hrwsi.reprocess(routine => %(routine)s, condition => %(condition)s, measured_from => %(measured_from)s,
                     measured_to => %(measured_to)s, tiles => %(tiles)s, command => %(command)s,
                     image => %(image)s, chain => %(chain)s, name => %(name)s, again => %(again)s);

-- name: cancel_campaign
SELECT hrwsi.cancel_campaign(%(campaign)s);

-- name: release_campaign
SELECT hrwsi.release_campaign(%(campaign)s);

-- name: hold_campaign
SELECT hrwsi.hold_campaign(%(campaign)s);

-- name: report_campaigns
-- Each campaign's progress per routine (hrwsi.campaign_progress), newest campaign first.
-- campaign_cancelled: the campaign itself was cancelled (`hrwsi campaigns --cancel`), not one of its
-- tasks by hand (`hrwsi cancel`): hrwsi.cancel_campaign records it (migration 0058).
SELECT p.campaign_id, p.name, p.campaign_routine, p.condition, p.measured_from, p.measured_to, p.tiles, p.version,
       p.lane, p.chain, p.created_at, p.created_by, p.routine, p.tasks, p.waiting, p.running, p.processed,
       p.terminated, p.cancelled, p.products, p.unchained_products, p.started_at, p.finished_at, p.on_hold,
       p.hold_reason, p.cancelled_at IS NOT NULL AS campaign_cancelled, p.cancelled_at, p.cancelled_by,
       s.ready, s.blocked, s.blocked_behind, s.blocked_behind_state, s.held, s.held_by_routines
FROM hrwsi.campaign_progress p
-- What its waiting tasks wait for (per campaign, on each of its rows): those that can be planned
-- (ready), those blocked behind a task that ended terminated or cancelled (the first such task, not
-- one blocked itself), and those held (with the routines on hold that hold them). A campaign whose
-- waiting tasks all wait for an operator said "running" (found by exploratory testing).
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.state IN ('pending', 'planned')) AS ready,
           count(*) FILTER (WHERE t.state = 'blocked') AS blocked,
           min(t.depends_on) FILTER (WHERE t.state = 'blocked' AND d.state <> 'blocked') AS blocked_behind,
           (array_agg(d.state ORDER BY t.depends_on) FILTER (WHERE t.state = 'blocked' AND d.state <> 'blocked'))[1]
               AS blocked_behind_state,
           count(*) FILTER (WHERE t.state = 'on_hold') AS held,
           array_agg(DISTINCT r.name ORDER BY r.name) FILTER (WHERE t.state = 'on_hold' AND r.on_hold) AS held_by_routines
    FROM hrwsi.processing_task t
    LEFT JOIN hrwsi.processing_task d ON d.id = t.depends_on
    JOIN hrwsi.processing_routine r ON r.name = t.routine
    WHERE t.campaign_id = p.campaign_id AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
) s
WHERE %(campaign)s::bigint IS NULL OR p.campaign_id = %(campaign)s
ORDER BY p.campaign_id DESC, p.routine = p.campaign_routine DESC, p.routine;
