-- hrwsi schema, version 112: an operator may hold a task that its routine, campaign or back-fill holds, and the
-- release of that routine or campaign then leaves it held.
--
-- An operator's hold of a task that its routine, campaign or back-fill holds (migration 0112): the task is held by
-- the operator too, its reason and history say so, and the release of its routine or campaign leaves it held, as it
-- leaves every hold an operator put on a task one by one (migrations 0101, 0104). `hrwsi hold TASK` of such a task was
-- refused, "task N is on_hold: only a pending or planned task can be held", so that no hold of the operator's could be
-- put on it, and `hrwsi campaigns --release` then ran the task the operator wanted kept back (found by review). A task
-- an operator holds already is refused, saying so; a blocked one too (its release runs it without what it waits for).
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
    IF current = 'on_hold' AND hrwsi.hold_is_the_tasks_own(reason) THEN
        RAISE EXCEPTION 'task % is already held by an operator: `hrwsi release %` releases it', task, task
            USING ERRCODE = 'check_violation';
    END IF;
    IF current NOT IN ('pending', 'planned', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a pending or planned task, or one held with its routine or campaign, can be '
                        'held', task, current
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
