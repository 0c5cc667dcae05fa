-- hrwsi schema, version 95: a task's history ends on the state it is in when its failure holds its routine.
--
-- - The failure policy holds a routine (its back-fill, its campaign) from the trigger of the outcome writer's
--   job UPDATE (hrwsi.record_outcomes), which fires before the same statement's task trigger writes the
--   failed attempt's row: the hold's trigger held the task the statement had just sent back to pending, and
--   its history said "on_hold", then "pending - attempt 1 internal_error" last, of a task on hold (found by
--   review). The holds leave out a task whose history lags behind it (changed in this transaction, its last
--   row of another state); hrwsi.record_outcomes holds it in its next statement, after that row, as it holds
--   any failed attempt of a held routine. Nothing more for the claim or for the outcome writer: the look-up
--   is made on a hold alone, for the tasks changed in the transaction.

CREATE OR REPLACE FUNCTION hrwsi.hold_routine_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A routine put on hold: its waiting tasks are held too, and ops are told.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE hrwsi.processing_task t SET state = 'on_hold', state_reason = 'routine on hold: ' || NEW.hold_reason
        WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('routine_on_hold', format('hrwsi: routine %s is on hold', NEW.name),
                format('Routine %s was put on hold: %s. Its new tasks wait until an operator runs '
                       '`hrwsi release %s`.', NEW.name, coalesce(NEW.hold_reason, 'by an operator'), NEW.name),
                NEW.name);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.hold_routine_back_fill() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
BEGIN
    PERFORM 1 FROM hrwsi.processing_task t JOIN hrwsi.lane l ON l.name = t.lane AND l.priority > 0
    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned')
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    UPDATE hrwsi.processing_task t
    SET state = 'on_hold', state_reason = format('back-fill of routine %s on hold: %s', NEW.name, NEW.backfill_hold_reason)
    FROM hrwsi.lane l
    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned')
      AND l.name = t.lane AND l.priority > 0
      -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0095)
      AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                  ORDER BY e.id DESC LIMIT 1) <> t.state, false));
    GET DIAGNOSTICS held = ROW_COUNT;
    INSERT INTO hrwsi.alert (kind, subject, body, routine)
    VALUES ('routine_on_hold', format('hrwsi: the back-fill of routine %s is on hold', NEW.name),
            format('The back-fill of routine %s (its tasks in the archive lane) was put on hold: %s. %s waiting '
                   'task(s) held, and its new back-fill tasks will be; its near-real-time work goes on. Fix the '
                   'cause, then `hrwsi release %s`.', NEW.name, NEW.backfill_hold_reason, held, NEW.name),
            NEW.name);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.hold_campaign_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A campaign put on hold: its waiting tasks are held too, and ops are told; production goes on.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        UPDATE hrwsi.processing_task t
        SET state = 'on_hold', state_reason = format('campaign %s on hold: %s', NEW.id, NEW.hold_reason)
        WHERE t.campaign_id = NEW.id AND t.state IN ('pending', 'planned')
          -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0095)
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('campaign_on_hold', format('hrwsi: campaign %s (routine %s) is on hold', NEW.id, NEW.routine),
                format('Reprocessing campaign %s of routine %s was put on hold: %s. Its waiting tasks are held; the '
                       'production of routine %s goes on. Fix the cause, then run `hrwsi campaigns --release %s`, '
                       'or end it with `hrwsi campaigns --cancel %s`.', NEW.id, NEW.routine,
                       coalesce(NEW.hold_reason, 'by an operator'), NEW.routine, NEW.id, NEW.id),
                NEW.routine);
    END IF;
    RETURN NULL;
END $$;
