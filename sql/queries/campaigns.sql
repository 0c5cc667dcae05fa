-- Reprocessing campaigns (`hrwsi reprocess`, `hrwsi campaigns`; ADR 0010). Placeholders: psycopg (%(name)s).

-- name: reprocess
SELECT campaign_id, tasks, summary
FROM hrwsi.reprocess(routine => %(routine)s, condition => %(condition)s, measured_from => %(measured_from)s,
                     measured_to => %(measured_to)s, tiles => %(tiles)s, command => %(command)s,
                     image => %(image)s, chain => %(chain)s, name => %(name)s);

-- name: lock_campaign_starts
-- Serialises campaign starts until the transaction ends: two `hrwsi reprocess` of the same request
-- at once both found no open twin and both started. (Any constant shared by every hrwsi process;
-- hrwsi.migrations holds 0x68727773.)
SELECT pg_advisory_xact_lock(1752332131);  -- 0x68727763, "hrwc"

-- name: open_twin_campaign
-- An open campaign (not finished, not cancelled: hrwsi.campaign_progress, report_campaigns) that
-- reprocesses what this request asks: the same routine or condition, sensing range and tiles (in any
-- order; NULL: every tile), with the same version (command and image; NULL: the routine's own).
-- Its name and whether it chains do not matter: its tasks would run the same programs on the same
-- inputs. %(tiles)s comes sorted and without repeats.
SELECT k.id
FROM hrwsi.campaign k
WHERE (k.condition = %(condition)s
       OR (%(condition)s::text IS NULL AND k.condition IS NULL AND k.routine = %(routine)s))
  AND k.measured_from = %(measured_from)s AND k.measured_to = %(measured_to)s
  AND CASE WHEN k.tiles IS NULL THEN NULL ELSE ARRAY(SELECT DISTINCT x FROM unnest(k.tiles) x ORDER BY x) END
      IS NOT DISTINCT FROM %(tiles)s::text[]
  AND k.command IS NOT DISTINCT FROM %(command)s::text[] AND k.image IS NOT DISTINCT FROM %(image)s::text
  AND EXISTS (SELECT 1 FROM hrwsi.campaign_progress p WHERE p.campaign_id = k.id AND p.finished_at IS NULL)
  AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t
                  WHERE t.campaign_id = k.id AND t.state = 'cancelled'
                    AND t.state_reason = format('its campaign %%s was cancelled by an operator', k.id))
ORDER BY k.id DESC
LIMIT 1;

-- name: cancel_campaign
SELECT hrwsi.cancel_campaign(%(campaign)s);

-- name: release_campaign
SELECT hrwsi.release_campaign(%(campaign)s);

-- name: hold_campaign
SELECT hrwsi.hold_campaign(%(campaign)s);

-- name: report_campaigns
-- Each campaign's progress per routine (hrwsi.campaign_progress), newest campaign first.
-- campaign_cancelled: the campaign itself was cancelled (`hrwsi campaigns --cancel`), not one of its
-- tasks by hand (`hrwsi cancel`). hrwsi.cancel_campaign records it nowhere but in the reason it
-- gives the tasks it cancels, so that reason, word for word, is what tells the two apart
-- (tests/integration/test_campaigns.py keeps both in step).
SELECT p.campaign_id, p.name, p.campaign_routine, p.condition, p.measured_from, p.measured_to, p.tiles, p.version,
       p.lane, p.chain, p.created_at, p.created_by, p.routine, p.tasks, p.waiting, p.running, p.processed,
       p.terminated, p.cancelled, p.products, p.unchained_products, p.started_at, p.finished_at, p.on_hold,
       p.hold_reason,
       EXISTS (SELECT 1 FROM hrwsi.processing_task t
               WHERE t.campaign_id = p.campaign_id AND t.state = 'cancelled'
                 AND t.state_reason = format('its campaign %%s was cancelled by an operator', p.campaign_id))
           AS campaign_cancelled
FROM hrwsi.campaign_progress p
WHERE %(campaign)s::bigint IS NULL OR p.campaign_id = %(campaign)s
ORDER BY p.campaign_id DESC, p.routine = p.campaign_routine DESC, p.routine;
