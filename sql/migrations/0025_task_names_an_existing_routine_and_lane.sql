-- hrwsi schema, version 25: a task's routine or lane changed by an UPDATE must name one that exists
-- (review of migration 0022).
--
-- Migration 0022 replaced the task's keys to its routine and lane: tasks are created only by the
-- database, by joining both, and removing one that tasks name is refused. But the services may
-- UPDATE tasks, and the keys also refused an UPDATE naming a routine or lane that does not exist.
-- This trigger refuses it again (foreign_key_violation, the old key's name) and locks what the task
-- names, as the key did. hrwsi never changes either column: the trigger runs only for an UPDATE that
-- does (UPDATE OF routine, lane, and its WHEN condition), never on the hot paths.

-- A task's routine or lane changed by hand must still name one that exists, as the keys required
-- (migration 0025); locked until the transaction ends, as a key locks it. hrwsi never changes
-- them, so this runs only for such an UPDATE (its WHEN condition).
CREATE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.routine IS DISTINCT FROM OLD.routine
       AND NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = NEW.routine FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no routine %', NEW.id, NEW.routine
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_routine_must_exist';
    END IF;
    IF NEW.lane IS DISTINCT FROM OLD.lane
       AND NOT EXISTS (SELECT 1 FROM lane l WHERE l.name = NEW.lane FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no lane %', NEW.id, NEW.lane
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_lane_must_exist';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER processing_task_names_what_exists BEFORE UPDATE OF routine, lane ON hrwsi.processing_task
    FOR EACH ROW WHEN (NEW.routine IS DISTINCT FROM OLD.routine OR NEW.lane IS DISTINCT FROM OLD.lane)
    EXECUTE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist();

REVOKE EXECUTE ON FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist() FROM PUBLIC;
