-- hrwsi schema, migration 0105: holds and corrections, loose ends (found by review).
--
-- - `hrwsi campaigns --release ID` (hrwsi.release_campaign, the dashboard's Release of a campaign) released every held
--   task of the campaign, those an operator held one by one included, while a routine's release lifts the routine's
--   hold only (migration 0101). It lifts the campaign's hold only: a task an operator held stays held, and one of a
--   routine on hold stays held with it, its reason saying so (it kept saying "campaign N on hold" once the campaign
--   was released); the answer says how many stay held, and how to lift them.

CREATE OR REPLACE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
    still_held bigint;  -- (held by their routine, which holds them still)
    holders text[];     -- (... those routines: a campaign's chain runs the routines downstream too)
    own bigint;         -- (held by an operator one by one, blocked since or not: they stay held)
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', release_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign) THEN
        RAISE EXCEPTION 'campaign % is not on hold: only a held campaign can be released',
            release_campaign.campaign USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE id = release_campaign.campaign;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.campaign_id = release_campaign.campaign AND t.state = 'on_hold'
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    WITH changed AS (
        UPDATE hrwsi.processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN 'campaign released by an operator'
                                         || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE 'campaign released by an operator' END
        FROM (SELECT x.id, hrwsi.hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM hrwsi.processing_task x
              WHERE x.campaign_id = release_campaign.campaign AND x.state = 'on_hold'
                AND NOT hrwsi.hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.id, t.routine, t.state, t.state_reason, t.attempts, t.worker
    ), history AS (
        -- (held before and held now, by their routine: no change of state, whose history row the trigger writes)
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = 'on_hold'
    )
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           array_agg(DISTINCT c.routine ORDER BY c.routine) FILTER (WHERE c.state = 'on_hold')
    INTO released, still_held, holders FROM changed c;
    SELECT count(*) INTO own FROM hrwsi.processing_task t
    WHERE t.campaign_id = release_campaign.campaign
      AND ((t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason)) OR (t.state = 'blocked' AND t.held_while_blocked));
    RETURN format('campaign %s released; %s held task(s) will be planned', release_campaign.campaign, released)
        || CASE WHEN cardinality(holders) = 1
                THEN format('; %s stay held with their routine %s, on hold: `hrwsi release %s` releases it', still_held,
                            holders[1], holders[1])
                WHEN still_held > 0
                THEN format('; %s stay held with their routines %s, on hold: `hrwsi release ROUTINE` releases each',
                            still_held, array_to_string(holders, ', '))
                ELSE '' END
        || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                         'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;
