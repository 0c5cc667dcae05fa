-- hrwsi schema, version 106: a routine's hold says what happens to its new tasks (found by review).
--
-- - `hrwsi hold ROUTINE` (hrwsi.hold_routine) answered "its new tasks will be until it is released", a word
--   missing; it says "will be held until it is released".
-- - The alert of a back-fill put on hold (hrwsi.hold_routine_back_fill) said "its new back-fill tasks will be;",
--   the same word missing; it says "will be held too;".

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
      -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0096)
      AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                  ORDER BY e.id DESC LIMIT 1) <> t.state, false));
    GET DIAGNOSTICS held = ROW_COUNT;
    -- (and counted, those left out: the failed task whose failure put the back-fill on hold, which hrwsi.record_outcomes
    -- holds in its next statement; the alert said one task fewer than were held, migration 0098, found by review)
    held := held + (SELECT count(*) FROM hrwsi.processing_task t JOIN hrwsi.lane l ON l.name = t.lane AND l.priority > 0
                    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state = 'pending' AND t.updated_at = now()
                      AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                    ORDER BY e.id DESC LIMIT 1) <> t.state, false));
    INSERT INTO hrwsi.alert (kind, subject, body, routine)
    VALUES ('routine_on_hold', format('hrwsi: the back-fill of routine %s is on hold', NEW.name),
            format('The back-fill of routine %s (its tasks in the archive lane) was put on hold: %s. %s waiting '
                   'task(s) held, and its new back-fill tasks will be held too; its near-real-time work goes on. Fix the '
                   'cause, then `hrwsi release %s`.', NEW.name, NEW.backfill_hold_reason, held, NEW.name),
            NEW.name);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.hold_routine(routine_name text, reason text DEFAULT 'held by an operator')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = reason WHERE name = routine_name AND NOT on_hold;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
            RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
        END IF;
        RETURN format('routine %s was already on hold', routine_name);
    END IF;
    -- (how many it holds, and what goes on: "its new and waiting tasks are held" said neither; 0054)
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.routine = routine_name AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('routine %s is on hold: %s waiting task(s) held, and its new tasks will be held until it is released; '
                  '%s dispatched or running go on', routine_name, held, under_way);
END $$;
