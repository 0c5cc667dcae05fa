-- hrwsi schema, version 58: a campaign records its cancel, and hrwsi.reprocess refuses to start a
-- campaign already open.
--
-- A campaign's cancel was recorded only in the reason given to the tasks it cancelled, and the
-- check that refuses a second campaign of the same request lived in `hrwsi reprocess` alone: a
-- data engineer calling hrwsi.reprocess in SQL (README, "For data engineers") started the same
-- campaign twice, and both ran (left alone 2026-12-05, fixed the next session).

ALTER TABLE hrwsi.campaign ADD COLUMN cancelled_at timestamptz, ADD COLUMN cancelled_by text;

-- Campaigns cancelled before: the reason hrwsi.cancel_campaign gave their tasks, word for word, and
-- the latest such task's time. Who cancelled them was not recorded.
UPDATE hrwsi.campaign k SET cancelled_at = c.at
FROM (SELECT t.campaign_id, max(t.updated_at) AS at FROM hrwsi.processing_task t
      WHERE t.campaign_id IS NOT NULL AND t.state = 'cancelled'
        AND t.state_reason = format('its campaign %s was cancelled by an operator', t.campaign_id)
      GROUP BY t.campaign_id) c
WHERE k.id = c.campaign_id;

DROP FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text);

-- A reprocessing campaign: one new task per input of a routine (or of one condition of it) sensed
-- in [measured_from, measured_to), on the given tiles (NULL: every tile), that was processed
-- already, in the campaign's lane (archive) and without a deadline. A production input only: the
-- inputs an earlier campaign chained stay that campaign's. The routine runs the campaign's
-- command or image when given. Old tasks and products are kept.
-- A campaign still open (not finished, not cancelled) that reprocesses the same routine or condition,
-- range and tiles (in any order; NULL: every tile) with the same version (command and image) is not
-- started again unless `again`: a request repeated (from a shell's history, or a script run twice)
-- started a second campaign and both ran, the same programs on the same inputs. Its name and whether
-- it chains do not matter. (The check was in `hrwsi reprocess` alone until migration 0058.)
CREATE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL, again boolean DEFAULT false)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
    twin bigint;
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.condition IS NOT NULL THEN
        SELECT c.routine INTO target FROM processing_condition c WHERE c.name = reprocess.condition;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no condition %', reprocess.condition USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', target USING ERRCODE = 'no_data_found';
    END IF;
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773).
    PERFORM pg_advisory_xact_lock(1752332131);  -- 0x68727763, "hrwc"
    IF NOT reprocess.again THEN
        SELECT k.id INTO twin
        FROM campaign k
        WHERE k.routine = target AND k.condition IS NOT DISTINCT FROM reprocess.condition
          AND k.measured_from = reprocess.measured_from AND k.measured_to = reprocess.measured_to
          AND (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(k.tiles) x)
              IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(reprocess.tiles) x)
          AND k.command IS NOT DISTINCT FROM reprocess.command AND k.image IS NOT DISTINCT FROM reprocess.image
          AND k.cancelled_at IS NULL
          AND EXISTS (SELECT 1 FROM campaign_progress p WHERE p.campaign_id = k.id AND p.finished_at IS NULL)
        ORDER BY k.id DESC
        LIMIT 1;
        IF twin IS NOT NULL THEN
            RAISE EXCEPTION 'campaign % already reprocesses these inputs with this version and has not finished', twin
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'campaign_is_not_started_twice',
                      HINT = format('SELECT * FROM hrwsi.campaign_progress WHERE campaign_id = %s shows it; call '
                                    'hrwsi.reprocess with again => true to start another one anyway (both run)', twin);
        END IF;
    END IF;
    INSERT INTO campaign (name, routine, condition, measured_from, measured_to, tiles, command, image, chain)
    VALUES (reprocess.name, target, reprocess.condition, reprocess.measured_from, reprocess.measured_to,
            reprocess.tiles, reprocess.command, reprocess.image, reprocess.chain)
    RETURNING id INTO new_campaign;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                 campaign_id)
    SELECT i.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                ELSE format('reprocessing campaign %s', new_campaign) END,
           l.name, l.priority,
           CASE WHEN r.sequential_per_tile AND i.measured_at IS NOT NULL THEN i.tile END,
           CASE WHEN r.sequential_per_tile AND i.tile IS NOT NULL THEN i.measured_at END,
           new_campaign
    FROM input i
    JOIN processing_condition c ON c.name = i.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN campaign k ON k.id = new_campaign
    JOIN lane l ON l.name = k.lane
    WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
      AND i.campaign_id IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
    ORDER BY i.measured_at, i.id
    -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
    -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
    FOR KEY SHARE OF i;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
            CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' (tiles ' || array_to_string(reprocess.tiles, ', ') || ')' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, reprocess.measured_from, reprocess.measured_to,
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
        FROM campaign k WHERE k.id = new_campaign;
END $$;

-- Cancel what a campaign has not done yet (its running jobs are stopped); its products are kept.
CREATE OR REPLACE FUNCTION hrwsi.cancel_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cancelled integer;
    stopping integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = cancel_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', cancel_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE state IN ('submitted', 'queued', 'running')
      AND task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = cancel_campaign.campaign);
    GET DIAGNOSTICS stopping = ROW_COUNT;
    UPDATE hrwsi.processing_task SET state = 'cancelled',
        state_reason = format('its campaign %s was cancelled by an operator', cancel_campaign.campaign)
    WHERE campaign_id = cancel_campaign.campaign AND state NOT IN ('processed', 'terminated', 'cancelled');
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    -- Ended: no longer on hold (it said "on hold ... --release" after its cancel; migration 0047), and
    -- cancelled as a whole, by whom and when, the first time (migration 0058).
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        cancelled_at = coalesce(cancelled_at, now()), cancelled_by = coalesce(cancelled_by, session_user)
    WHERE id = cancel_campaign.campaign;
    RETURN format('campaign %s: %s open task(s) cancelled, %s running job(s) being stopped; its products are kept',
                  cancel_campaign.campaign, cancelled, stopping);
END $$;


-- A campaign's progress, per routine (its own, and the routines its products chained into):
-- tasks per state, products, when its first attempt started, and when it finished (every task
-- final and every product chained; NULL while it runs).
CREATE OR REPLACE VIEW hrwsi.campaign_progress AS
SELECT k.id AS campaign_id, k.name, k.routine AS campaign_routine, k.condition, k.measured_from, k.measured_to,
       k.tiles, nullif(concat_ws(' ', k.image, array_to_string(k.command, ' ')), '') AS version, k.lane, k.chain,
       k.created_at, k.created_by, t.routine, count(t.id) AS tasks,
       count(t.id) FILTER (WHERE t.state IN ('pending', 'planned', 'on_hold', 'blocked')) AS waiting,
       count(t.id) FILTER (WHERE t.state IN ('dispatched', 'queued', 'running')) AS running,
       count(t.id) FILTER (WHERE t.state = 'processed') AS processed,
       count(t.id) FILTER (WHERE t.state = 'terminated') AS terminated,
       count(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled,
       coalesce(sum(x.products), 0)::bigint AS products,
       coalesce(sum(x.unchained), 0)::bigint AS unchained_products,
       min(x.started_at) AS started_at,
       CASE WHEN count(t.id) > 0 AND bool_and(t.state IN ('processed', 'terminated', 'cancelled'))
                 AND coalesce(sum(x.unchained), 0) = 0
            THEN max(greatest(t.updated_at, x.chained_at)) END AS finished_at,
       k.on_hold, k.hold_reason, k.cancelled_at, k.cancelled_by
FROM hrwsi.campaign k
LEFT JOIN hrwsi.processing_task t ON t.campaign_id = k.id
LEFT JOIN LATERAL (SELECT count(*) AS products, count(*) FILTER (WHERE p.chained_at IS NULL) AS unchained,
                          max(p.chained_at) AS chained_at,
                          (SELECT min(j.started_at) FROM hrwsi.job j WHERE j.task_id = t.id) AS started_at
                   FROM hrwsi.product p WHERE p.task_id = t.id) x ON true
GROUP BY k.id, t.routine;

REVOKE EXECUTE ON FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text, boolean)
    TO hrwsi_service;
