-- hrwsi schema, migration 0101: a routine's release lifts the routine's hold only.
--
-- - `hrwsi release ROUTINE` (hrwsi.release_routine, the dashboard's Release of a routine) released every held task of
--   the routine, those an operator held one by one included, while `hrwsi release TASK` lifts a task's own hold only
--   (migration 0098): an operator's hold of a task was undone by the release of its routine (found by review). It lifts
--   the routine's hold (and its back-fill's) only: a task an operator held stays held, and the answer says how many
--   and how to lift them; a task of a campaign on hold stays held with its campaign, its reason saying so.
-- - The dashboard releases a held campaign (its Release button, POST /api/campaigns/ID/release), recorded in
--   hrwsi.operator_action as the other actions are: the overview listed held campaigns with the command that releases
--   them, and had a Release button for tasks and routines only (found by review).

CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
    still_held bigint;  -- (held by their campaign, which holds them still)
    own bigint;         -- (held by an operator one by one, blocked since or not: they stay held)
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        backfill_hold_reason = NULL, backfill_consecutive_failures = 0  -- (and its back-fill: migration 0075)
    WHERE name = routine_name;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = routine_name AND t.state = 'on_hold'
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    -- The routine's release lifts the routine's hold (and its back-fill's) only, as a task's release lifts the task's
    -- own (migration 0098): a task an operator held one by one stays held, and one of a campaign on hold stays held
    -- with it, its reason saying so. It released them all, undoing each operator's hold (found by review; 0101).
    WITH changed AS (
        UPDATE hrwsi.processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN 'routine released by an operator'
                                         || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE 'routine released by an operator' END
        FROM (SELECT x.id, hrwsi.hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM hrwsi.processing_task x
              WHERE x.routine = routine_name AND x.state = 'on_hold'
                AND NOT hrwsi.hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.state
    )
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold')
    INTO released, still_held FROM changed c;
    SELECT count(*) INTO own FROM hrwsi.processing_task t
    WHERE t.routine = routine_name
      AND ((t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason)) OR (t.state = 'blocked' AND t.held_while_blocked));
    RETURN format('routine %s released; %s held task(s) will be planned', routine_name, released)
        || CASE WHEN still_held > 0 THEN format('; %s stay held with their campaign (`hrwsi status` names it and its '
                                                '`hrwsi campaigns --release ID`)', still_held) ELSE '' END
        || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                         'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;

ALTER TABLE hrwsi.operator_action DROP CONSTRAINT operator_action_is_known,
    ADD CONSTRAINT operator_action_is_known
        CHECK (action IN ('retry_task', 'cancel_task', 'hold_task', 'release_task', 'hold_routine', 'release_routine',
                          'release_campaign'));
