-- hrwsi schema, version 20: the transition triggers test a task's and a job's change of state with an
-- expression instead of a query of the catalogue (issue 15).
--
-- hrwsi.enforce_task_transition and hrwsi.enforce_job_transition run for every row a statement
-- updates. Each looked its transition up in hrwsi.task_transition (with hrwsi.task_state for
-- is_final) or hrwsi.job_transition: one query per row, with its executor start-up. That was about
-- 15 % of recording a batch and 7 % of dispatching one (50,000 tasks, 2,000 dispatched and 1,000
-- recorded at a time, two pairs: recording 2.16 / 2.18 s -> 1.82 / 1.88 s, dispatching 2.53 / 2.52 s
-- -> 2.31 / 2.39 s). The rules are now IMMUTABLE SQL functions, inlined into the triggers'
-- expressions; the catalogue tables stay, with their descriptions, and still give the hint of a
-- refused transition. A test keeps each function equal to its table.

CREATE FUNCTION hrwsi.task_transition_is_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE from_state
    WHEN 'pending'    THEN to_state IN ('planned', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'planned'    THEN to_state IN ('pending', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'dispatched' THEN to_state IN ('queued', 'running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'queued'     THEN to_state IN ('running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'running'    THEN to_state IN ('queued', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'on_hold'    THEN to_state IN ('pending', 'blocked', 'cancelled')
    WHEN 'blocked'    THEN to_state IN ('pending', 'cancelled')
    WHEN 'terminated' THEN to_state = 'pending'  -- an operator's retry
    WHEN 'cancelled'  THEN to_state = 'pending'  -- an operator's retry
    ELSE false
END;

CREATE FUNCTION hrwsi.task_state_is_final(state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN state IN ('processed', 'terminated', 'cancelled');

CREATE OR REPLACE FUNCTION hrwsi.enforce_task_transition() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT hrwsi.task_transition_is_allowed(OLD.state, NEW.state) THEN
            RAISE EXCEPTION 'task %: the transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'task_transition_is_allowed',
                      HINT = (SELECT 'from ' || OLD.state || ' a task may go to: '
                                     || coalesce(string_agg(to_state, ', ' ORDER BY to_state), 'nothing (final)')
                              FROM hrwsi.task_transition WHERE from_state = OLD.state);
        END IF;
        -- Finished now, or open again (an operator's retry): its age for retention starts afresh.
        NEW.finished_at := CASE WHEN hrwsi.task_state_is_final(NEW.state) THEN now() END;
        NEW.history_pruned_at := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE FUNCTION hrwsi.job_transition_is_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN from_state IN ('submitted', 'queued', 'running') AND to_state <> from_state
   AND to_state IN ('queued', 'running', 'processed', 'internal_error', 'external_error', 'lost', 'cancelled');

CREATE OR REPLACE FUNCTION hrwsi.enforce_job_transition() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT hrwsi.job_transition_is_allowed(OLD.state, NEW.state) THEN
        RAISE EXCEPTION 'job % (task %): the transition % -> % is not allowed', OLD.id, OLD.task_id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_transition_is_allowed',
                  HINT = 'a job in a final state (processed, internal_error, external_error, lost, cancelled) never changes; retry the task instead';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- The rules run inside the triggers as whoever writes the tables (and are inlined only where the
-- writer may execute them).
REVOKE EXECUTE ON FUNCTION hrwsi.task_transition_is_allowed(text, text), hrwsi.task_state_is_final(text),
    hrwsi.job_transition_is_allowed(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.task_transition_is_allowed(text, text), hrwsi.task_state_is_final(text),
    hrwsi.job_transition_is_allowed(text, text) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
