-- hrwsi schema, version 3: operating it safely.
-- - the failure policy: a routine goes on hold after N consecutive failures;
-- - operator actions as SQL functions (the CLI calls them; ops may too): retry, cancel, hold, release;
-- - an alert outbox (task terminated, routine on hold), sent by the launcher's alert side task;
-- - least-privilege roles: data engineer, service, read-only.

ALTER TABLE hrwsi.processing_routine
    ADD COLUMN on_hold boolean NOT NULL DEFAULT false,
    ADD COLUMN hold_reason text,
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN hold_after_failures integer DEFAULT 5
        CONSTRAINT routine_hold_after_failures_is_positive CHECK (hold_after_failures > 0);

-- A job that is cancelled by an operator while it runs: the launcher stops it in the backend.
ALTER TABLE hrwsi.job ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

CREATE TABLE hrwsi.alert (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL CONSTRAINT alert_kind_is_known CHECK (kind IN ('task_terminated', 'routine_on_hold')),
    subject    text NOT NULL,
    body       text NOT NULL,
    task_id    bigint REFERENCES hrwsi.processing_task (id),
    routine    text REFERENCES hrwsi.processing_routine (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX alert_unsent_idx ON hrwsi.alert (id) WHERE sent_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- Failure policy and alerts, kept by triggers so that every writer obeys them.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- After job outcomes: count consecutive failures per routine; hold a routine that reached its limit.
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.routine,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error')) AS failures,
               max(n.message) FILTER (WHERE n.state IN ('internal_error', 'external_error')) AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY t.routine
    LOOP
        IF r.failures = 0 THEN
            UPDATE hrwsi.processing_routine SET consecutive_failures = 0
            WHERE name = r.routine AND consecutive_failures <> 0;
            CONTINUE;
        END IF;
        UPDATE hrwsi.processing_routine
        SET consecutive_failures = CASE WHEN r.any_success THEN r.failures ELSE consecutive_failures + r.failures END
        WHERE name = r.routine;
        UPDATE hrwsi.processing_routine
        SET on_hold = true,
            hold_reason = format('%s consecutive failures (limit %s); last: %s',
                                 consecutive_failures, hold_after_failures, r.last_message)
        WHERE name = r.routine AND NOT on_hold AND consecutive_failures >= hold_after_failures;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER job_failure_policy AFTER UPDATE ON hrwsi.job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.apply_failure_policy();

CREATE FUNCTION hrwsi.hold_routine_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A routine put on hold: its waiting tasks are held too, and ops are told.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'routine on hold: ' || NEW.hold_reason
        WHERE routine = NEW.name AND state IN ('pending', 'planned');
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('routine_on_hold', format('hrwsi: routine %s is on hold', NEW.name),
                format('Routine %s was put on hold: %s. Its new tasks wait until an operator runs '
                       '`hrwsi release %s`.', NEW.name, coalesce(NEW.hold_reason, 'by an operator'), NEW.name),
                NEW.name);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER processing_routine_hold AFTER UPDATE OF on_hold ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.hold_routine_tasks();

CREATE FUNCTION hrwsi.alert_terminated_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
    SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', n.id, n.routine),
           format('Task %s (routine %s, input %s) failed %s time(s) and will not be retried automatically. '
                  'Last: %s. Retry it with `hrwsi retry %s`.', n.id, n.routine, i.input_path, n.failures,
                  coalesce(n.state_reason, '-'), n.id),
           n.id, n.routine
    FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.input i ON i.id = n.input_id
    WHERE n.state = 'terminated' AND o.state <> 'terminated';
    RETURN NULL;
END $$;

CREATE TRIGGER processing_task_alert_terminated AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.alert_terminated_tasks();

-- ---------------------------------------------------------------------------------------------
-- Operator actions. Each returns a sentence saying what it did, and refuses what makes no sense.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION hrwsi.lock_task(task bigint) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
-- The operator actions' first step: lock the task and return its state, or say it does not exist.
DECLARE
    current text;
BEGIN
    SELECT state INTO current FROM hrwsi.processing_task WHERE id = task FOR UPDATE;
    IF current IS NULL THEN
        RAISE EXCEPTION 'no task %', task USING ERRCODE = 'no_data_found';
    END IF;
    RETURN current;
END $$;

CREATE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current NOT IN ('terminated', 'cancelled', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled or held task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task
    SET state = 'pending', failures = 0, not_before = NULL, worker = NULL, planned_start = NULL,
        planned_end = NULL, state_reason = 'retried by an operator'
    WHERE id = task;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

CREATE FUNCTION hrwsi.cancel_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current IN ('processed', 'terminated', 'cancelled') THEN
        RAISE EXCEPTION 'task % is already %: nothing to cancel', task, current USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'cancelled', state_reason = 'cancelled by an operator' WHERE id = task;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE task_id = task AND state IN ('submitted', 'queued', 'running');
    RETURN format('task %s was %s; it is cancelled%s', task, current,
                  CASE WHEN current IN ('dispatched', 'queued', 'running') THEN ' and its job is being stopped' ELSE '' END);
END $$;

CREATE FUNCTION hrwsi.hold_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current NOT IN ('pending', 'planned') THEN
        RAISE EXCEPTION 'task % is %: only a pending or planned task can be held', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'held by an operator' WHERE id = task;
    RETURN format('task %s is on hold', task);
END $$;

CREATE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    UPDATE hrwsi.processing_task SET state = 'pending', state_reason = 'released by an operator', worker = NULL,
        planned_start = NULL, planned_end = NULL
    WHERE id = task AND state = 'on_hold';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % is not on hold', task USING ERRCODE = 'check_violation';
    END IF;
    RETURN format('task %s released; it will be planned', task);
END $$;

CREATE FUNCTION hrwsi.hold_routine(routine_name text, reason text DEFAULT 'held by an operator')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = reason WHERE name = routine_name AND NOT on_hold;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
            RAISE EXCEPTION 'no routine %', routine_name USING ERRCODE = 'no_data_found';
        END IF;
        RETURN format('routine %s was already on hold', routine_name);
    END IF;
    RETURN format('routine %s is on hold: its new and waiting tasks are held', routine_name);
END $$;

CREATE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
        RAISE EXCEPTION 'no routine %', routine_name USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE name = routine_name;
    UPDATE hrwsi.processing_task SET state = 'pending', state_reason = 'routine released by an operator',
        worker = NULL, planned_start = NULL, planned_end = NULL
    WHERE routine = routine_name AND state = 'on_hold';
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN format('routine %s released; %s held task(s) will be planned', routine_name, released);
END $$;

-- ---------------------------------------------------------------------------------------------
-- Trigger functions that write other tables run as their owner, so that a data engineer who may
-- only insert inputs can still fire them.
-- ---------------------------------------------------------------------------------------------
ALTER FUNCTION hrwsi.queue_new_inputs() SECURITY DEFINER SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.record_task_events() SECURITY DEFINER SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.refuse_future_input_dates() SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.notify_count() SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.notify_state_counts() SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.enforce_task_transition() SET search_path = pg_catalog, hrwsi;
ALTER FUNCTION hrwsi.enforce_job_transition() SET search_path = pg_catalog, hrwsi;

-- ---------------------------------------------------------------------------------------------
-- Least-privilege roles (NOLOGIN: grant them to login users, e.g. GRANT hrwsi_service TO launcher_vm).
-- The roles themselves are created (when missing) by 0002_harvest_sources.sql.
REVOKE ALL ON SCHEMA hrwsi FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hrwsi FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA hrwsi FROM PUBLIC;

GRANT USAGE ON SCHEMA hrwsi TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT SELECT ON ALL TABLES IN SCHEMA hrwsi TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT SELECT ON public.hrwsi_schema_migration TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Data engineers add inputs; they cannot change tasks, jobs or the history.
GRANT INSERT ON hrwsi.input TO hrwsi_data_engineer;

-- Services change the work tables; they create no tables and change no configuration.
GRANT INSERT, UPDATE, DELETE ON hrwsi.input, hrwsi.input_backlog, hrwsi.processing_task, hrwsi.job,
    hrwsi.product, hrwsi.plan, hrwsi.service_instance, hrwsi.alert TO hrwsi_service;
GRANT INSERT ON hrwsi.task_event TO hrwsi_service;
GRANT UPDATE (active, node_id, updated_at) ON hrwsi.worker TO hrwsi_service;
GRANT INSERT ON hrwsi.worker, hrwsi.flavour TO hrwsi_service;    -- hrwsi workers sync
GRANT UPDATE (cpu, ram_mb, disk_mb) ON hrwsi.flavour TO hrwsi_service;
GRANT UPDATE (flavour) ON hrwsi.worker TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.retry_task(bigint), hrwsi.cancel_task(bigint), hrwsi.hold_task(bigint),
    hrwsi.release_task(bigint), hrwsi.hold_routine(text, text), hrwsi.release_routine(text) TO hrwsi_service;

-- Trigger functions must stay callable by whoever writes the tables that fire them.
GRANT EXECUTE ON FUNCTION hrwsi.refuse_future_input_dates(), hrwsi.queue_new_inputs(), hrwsi.notify_count(),
    hrwsi.notify_state_counts(), hrwsi.record_task_events(), hrwsi.enforce_task_transition(),
    hrwsi.enforce_job_transition(), hrwsi.refuse_history_change(), hrwsi.apply_failure_policy(),
    hrwsi.hold_routine_tasks(), hrwsi.alert_terminated_tasks()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
