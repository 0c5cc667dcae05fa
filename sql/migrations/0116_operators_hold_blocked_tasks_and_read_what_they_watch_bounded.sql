-- hrwsi schema, version 116: an operator may hold a blocked task, which stays blocked and is held once its wait
-- ends; the release of a blocked task an operator held lifts that hold alone, giving it back to its wait; a routine's
-- release names the campaigns that still hold its tasks in the order of their ids.
--
-- (migration 0116) A blocked task is held by an operator as one held before it was blocked is (held_while_blocked,
-- migration 0095): it stays blocked, is held when its wait ends, and its release lifts that hold alone, giving it
-- back to its wait. It was refused ("task N is blocked: only a pending or planned task ... can be held"), and the
-- release of a blocked task an operator had held ran it without its dependency (found by exploration).
CREATE OR REPLACE FUNCTION hrwsi.hold_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    reason text;
    held_with text;  -- (what holds it besides the operator: its routine, campaign or back-fill, as a new task of it)
BEGIN
    SELECT t.state_reason,
           CASE WHEN r.on_hold THEN format('routine %s', r.name)
                WHEN k.on_hold THEN format('campaign %s', k.id)
                WHEN t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('the back-fill of routine %s', r.name) END
    INTO reason, held_with
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
    LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id LEFT JOIN hrwsi.lane l ON l.name = t.lane
    WHERE t.id = task;
    IF current = 'on_hold' AND hrwsi.hold_is_the_tasks_own(reason)
       OR current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        RAISE EXCEPTION 'task % is already held by an operator: `hrwsi release %` releases it', task, task
            USING ERRCODE = 'check_violation';
    END IF;
    IF current = 'blocked' THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = true WHERE id = task;
        -- (blocked before and after: no change of state, whose history row the trigger writes; said as `hrwsi status`
        -- lists it, its reason the block's, which names the commands that end the wait)
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'held by an operator, and blocked: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s is on hold: blocked still, it is held once its wait ends, until `hrwsi release %s`',
                      task, task);
    END IF;
    IF current NOT IN ('pending', 'planned', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a pending, planned or blocked task, or one held with its routine or '
                        'campaign, can be held', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'held by an operator' WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN current = 'on_hold' AND held_with IS NOT NULL
                THEN format('task %s is on hold, by an operator too: it stays held once %s is released, until '
                            '`hrwsi release %s`', task, held_with, task)
                ELSE format('task %s is on hold', task) END;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which still holds it)
    lift text;
BEGIN
    IF current NOT IN ('on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a held or blocked task can be released', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a blocked task an operator held: the release lifts that hold alone, and it waits for its dependency again, as
    -- before it was held; a second release runs it without: migration 0116)
    IF current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = false WHERE id = task;
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'released by an operator, blocked still: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s released from its operator''s hold; it is still blocked: %s', task,
                      (SELECT t.state_reason FROM hrwsi.processing_task t WHERE t.id = task));
    END IF;
    -- The release of a task lifts its own hold (and its block) only (migration 0098): a task of a routine, campaign
    -- or back-fill on hold is held with it, as a new task of it is, and the answer says what still holds it and how
    -- to lift that. A blocked one was made pending, shown pending by `hrwsi status` and the dashboard while dispatch
    -- skipped its held routine (found by review).
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task;
    -- (a blocked task runs without what it waited for, upstream work included; a held one that still
    -- waits for upstream work says so, not only that it was released: migration 0077)
    UPDATE hrwsi.processing_task SET state = CASE WHEN group_hold IS NOT NULL THEN 'on_hold' ELSE 'pending' END,
        worker = NULL, planned_start = NULL, planned_end = NULL, held_while_blocked = false,
        dependency_waived = dependency_waived OR current = 'blocked',
        waits_for_upstream = CASE WHEN current = 'blocked' THEN NULL ELSE waits_for_upstream END,
        state_reason = coalesce(group_hold || '; ', '') || CASE
                            WHEN current = 'blocked' THEN 'released by an operator: runs without its dependency'
                            WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'released by an operator' || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'released by an operator' END
    WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' AND group_hold IS NOT NULL THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN group_hold IS NOT NULL
                THEN format('task %s released%s, but it is still held: %s', task,
                            CASE WHEN current = 'blocked' THEN ' to run without its dependency' ELSE '' END, lift)
                WHEN current = 'blocked'
                THEN format('task %s released; it will be planned and run without its dependency', task)
                ELSE format('task %s released; it will be planned', task) END;
END $$;

-- (migration 0116) A routine's release names the campaigns that still hold its tasks in the order of their ids, as
-- numbers: sorted as text they read "campaigns 10, 9" (found by exploration).
CREATE OR REPLACE FUNCTION hrwsi.release_held_tasks(held bigint[], released_reason text, still_held_by text, blocked_held bigint,
                                         OUT released bigint, OUT rest text) LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    still_held bigint;
    holders text[];  -- (the campaigns or routines that still hold them: a campaign's chain runs routines downstream)
    own bigint;
BEGIN
    WITH changed AS (
        UPDATE processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN released_reason || coalesce('; ' || upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE released_reason END
        FROM (SELECT x.id, hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM processing_task x
              WHERE x.id = ANY (held) AND x.state = 'on_hold' AND NOT hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.id, t.routine, t.campaign_id, t.state, t.state_reason, t.attempts, t.worker
    ), history AS (
        -- (held before and held now: no change of state, whose history row the trigger writes)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = 'on_hold'
    )
    -- (the campaigns in the order of their ids, as numbers: sorted as text they read "campaigns 10, 9"; migration 0116)
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           (SELECT array_agg(h.holder ORDER BY h.campaign_id, h.holder)
            FROM (SELECT DISTINCT CASE still_held_by WHEN 'routine' THEN x.routine ELSE x.campaign_id::text END AS holder,
                                  CASE still_held_by WHEN 'campaign' THEN x.campaign_id END AS campaign_id
                  FROM changed x WHERE x.state = 'on_hold') h)
    INTO released, still_held, holders FROM changed c;
    SELECT count(*) + blocked_held INTO own FROM processing_task t
    WHERE t.id = ANY (held) AND t.state = 'on_hold' AND hold_is_the_tasks_own(t.state_reason);
    rest := CASE WHEN cardinality(holders) = 1
                 THEN format('; %s stay held with their %s %s, on hold: `%s` releases it', still_held, still_held_by,
                             holders[1], CASE still_held_by WHEN 'routine' THEN 'hrwsi release ' ELSE 'hrwsi campaigns --release '
                                         END || holders[1])
                 WHEN still_held > 0
                 THEN format('; %s stay held with their %ss %s, on hold: `%s` releases each', still_held, still_held_by,
                             array_to_string(holders, ', '), CASE still_held_by WHEN 'routine' THEN 'hrwsi release ROUTINE'
                                                                 ELSE 'hrwsi campaigns --release ID' END)
                 ELSE '' END
         || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                          'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;

