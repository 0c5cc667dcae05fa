-- hrwsi schema, version 54: what a changed configuration no longer fits is planned again, and an
-- attempt whose directory cannot be made is lost, not failed.
--
-- - Planned tasks kept their worker when `hrwsi config load` raised their routine's CPU beyond every
--   flavour (or shrank a flavour, or changed a worker's flavour): they stayed planned for ever,
--   without a reason, and `hrwsi status` did not list them among what cannot be planned. Now they
--   go back to pending at once, and the planner places them again or names why it cannot.
-- - A full or read-only products disk made every attempt fail before its routine ran ("the backend
--   refused the job: [Errno 28] No space left on device"): tasks were terminated and the routine
--   put on hold. Such an attempt is now lost with the fault `storage_unavailable` and retried, not
--   charged to the routine (found by exploratory testing, 2026-12-05).
-- - `hrwsi hold ROUTINE` says how many waiting tasks it held, and how many under way go on.

ALTER TABLE hrwsi.job DROP CONSTRAINT job_fault_is_known;
-- (NOT VALID, then validated: the check of the rows already there takes no lock that stops writers)
ALTER TABLE hrwsi.job ADD CONSTRAINT job_fault_is_known CHECK (fault IN (
    'launcher_gone', 'worker_gone', 'backend_lost_track', 'stopped_by_hrwsi', 'backend_unavailable',
    'storage_unavailable')) NOT VALID;
ALTER TABLE hrwsi.job VALIDATE CONSTRAINT job_fault_is_known;

-- A routine's needs, a flavour's size or a worker's flavour changed (`hrwsi config load`): the
-- tasks planned with the old figures go back to pending, to be planned again or named among what
-- cannot be planned. Planned on a worker they no longer fit, they waited there for ever, without a
-- reason (found by exploratory testing, 2026-12-05; migration 0054).
CREATE FUNCTION hrwsi.plan_again_what_no_longer_fits() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF TG_TABLE_NAME = 'processing_routine' THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('routine %s changed (CPU, RAM, storage or flavour): planned again', NEW.name)
        WHERE routine = NEW.name AND state = 'planned';
    ELSIF TG_TABLE_NAME = 'flavour' THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('the flavour %s of its worker %s changed: planned again', NEW.name, worker)
        WHERE state = 'planned' AND worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name);
    ELSE
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('its worker %s changed flavour: planned again', NEW.name)
        WHERE state = 'planned' AND worker = NEW.name;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER processing_routine_needs_changed
    AFTER UPDATE OF cpu, ram_mb, storage_mb, flavour ON hrwsi.processing_routine FOR EACH ROW
    WHEN (OLD.cpu IS DISTINCT FROM NEW.cpu OR OLD.ram_mb IS DISTINCT FROM NEW.ram_mb
          OR OLD.storage_mb IS DISTINCT FROM NEW.storage_mb OR OLD.flavour IS DISTINCT FROM NEW.flavour)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER flavour_size_changed
    AFTER UPDATE OF cpu, ram_mb, disk_mb ON hrwsi.flavour FOR EACH ROW
    WHEN (OLD.cpu IS DISTINCT FROM NEW.cpu OR OLD.ram_mb IS DISTINCT FROM NEW.ram_mb
          OR OLD.disk_mb IS DISTINCT FROM NEW.disk_mb)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER worker_flavour_changed
    AFTER UPDATE OF flavour ON hrwsi.worker FOR EACH ROW
    WHEN (OLD.flavour IS DISTINCT FROM NEW.flavour)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();

REVOKE EXECUTE ON FUNCTION hrwsi.plan_again_what_no_longer_fits() FROM PUBLIC;
-- (a trigger function: callable by whoever writes the tables that fire it)
GRANT EXECUTE ON FUNCTION hrwsi.plan_again_what_no_longer_fits() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

CREATE OR REPLACE FUNCTION hrwsi.hold_routine(routine_name text, reason text DEFAULT 'held by an operator')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = reason WHERE name = routine_name AND NOT on_hold;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
            RAISE EXCEPTION 'no routine %', routine_name USING ERRCODE = 'no_data_found';
        END IF;
        RETURN format('routine %s was already on hold', routine_name);
    END IF;
    -- (how many it holds, and what goes on: "its new and waiting tasks are held" said neither; 0054)
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.routine = routine_name AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('routine %s is on hold: %s waiting task(s) held, and its new tasks will be until it is released; '
                  '%s dispatched or running go on', routine_name, held, under_way);
END $$;
