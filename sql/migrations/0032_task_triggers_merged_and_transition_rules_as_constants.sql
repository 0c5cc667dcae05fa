-- hrwsi schema, version 32: less work for the server in every statement that changes tasks (issue
-- 15, reaction latency).
--
-- Where a one-task dispatch spent the server's CPU, measured by the dispatching backend's CPU time
-- (/proc/<pid>/schedstat), 10 alternated blocks of 100 dispatch calls, a database with the change
-- against one without: 860 us per call before; the triggers that fire on its statements (the claim
-- UPDATE of the task, the INSERT of its job) were 185 us of it.
--
-- 1. The transition triggers' WHEN clauses named hrwsi.task_transition_is_allowed and
--    hrwsi.job_transition_is_allowed. PostgreSQL prepares a trigger's condition for every
--    statement, and an SQL function in it is inlined there, its stored body parsed again each
--    time. The rules are now one constant each, the list of allowed "from>to" pairs, which is
--    looked up (hashed) without a call: 72-77 us less per dispatch call (two variants, all 20
--    blocks less). (Written out as the function's CASE, the rules had cost more than the call:
--    migration 0023's note.) The functions stay, for the PL/pgSQL trigger functions and as the
--    readable statement of the rules; a test keeps the lists, the functions and the catalogues equal.
-- 2. Four AFTER statement triggers on hrwsi.processing_task (history, notification, dependents,
--    the terminated alert) and the two AFTER INSERT ones (history, notification) are now one
--    function, hrwsi.after_task_changes, in one trigger per event: each trigger was a call of
--    PL/pgSQL with its transition tables set up, and the dependents' and the alert's ran a query
--    to learn they had nothing to do. With 1., 82-96 us less per call (two runs of 10 blocks:
--    about 11 %). What they do is unchanged; the history of a statement is now written before the
--    dependents it blocks or unblocks change (it was after, the triggers ran in order of name).

DROP TRIGGER processing_task_enforce_transition ON hrwsi.processing_task;
DROP TRIGGER job_enforce_transition ON hrwsi.job;
DROP TRIGGER processing_task_history_insert ON hrwsi.processing_task;
DROP TRIGGER processing_task_history_update ON hrwsi.processing_task;
DROP TRIGGER processing_task_notify_insert ON hrwsi.processing_task;
DROP TRIGGER processing_task_notify_update ON hrwsi.processing_task;
DROP TRIGGER processing_task_block_dependents ON hrwsi.processing_task;
DROP TRIGGER processing_task_alert_terminated ON hrwsi.processing_task;
DROP FUNCTION hrwsi.record_task_events();
DROP FUNCTION hrwsi.block_or_unblock_dependents();
DROP FUNCTION hrwsi.alert_terminated_tasks();

-- The function runs only for a row it would change or refuse (migration 0023): a statement that
-- sets updated_at to now() and, when it changes the state, finished_at and history_pruned_at as the
-- function would, to a state the rules allow, needs no call of PL/pgSQL for each of its rows (the
-- hot statements of dispatch, outcomes and progress do: recording a batch 6 % faster).
-- Every other UPDATE gets the function, as before. The rules are written here as one constant, the
-- list of allowed "from>to" pairs (migration 0032; a test keeps it equal to hrwsi.task_transition):
-- PostgreSQL prepares the condition for every UPDATE statement, and calling
-- hrwsi.task_transition_is_allowed there made it inline the function, parsing its stored body
-- again each time: 75 us of the 860 us of server CPU a one-task dispatch cost (9 %). (Written out
-- as the function's CASE, the rules cost more than the call: migration 0023.)
CREATE TRIGGER processing_task_enforce_transition BEFORE UPDATE ON hrwsi.processing_task
    FOR EACH ROW
    WHEN (NEW.updated_at IS DISTINCT FROM now()
          OR (NEW.state IS DISTINCT FROM OLD.state
              AND (NOT OLD.state || '>' || NEW.state = ANY ('{pending>planned, pending>dispatched, pending>on_hold,
                       pending>blocked, pending>cancelled, planned>pending, planned>dispatched, planned>on_hold,
                       planned>blocked, planned>cancelled, dispatched>queued, dispatched>running,
                       dispatched>processed, dispatched>pending, dispatched>terminated, dispatched>cancelled,
                       queued>running, queued>processed, queued>pending, queued>terminated, queued>cancelled,
                       running>queued, running>processed, running>pending, running>terminated, running>cancelled,
                       on_hold>pending, on_hold>blocked, on_hold>cancelled, blocked>pending, blocked>cancelled,
                       terminated>pending, cancelled>pending}'::text[])
                   OR NEW.finished_at IS DISTINCT FROM CASE WHEN NEW.state IN ('processed', 'terminated', 'cancelled')
                                                            THEN now() END
                   OR NEW.history_pruned_at IS NOT NULL)))
    EXECUTE FUNCTION hrwsi.enforce_task_transition();

-- As the task's (migrations 0023, 0032): called only for a row it would change or refuse, the rules
-- as the constant list of allowed "from>to" pairs (a test keeps it equal to hrwsi.job_transition).
CREATE TRIGGER job_enforce_transition BEFORE UPDATE ON hrwsi.job
    FOR EACH ROW
    WHEN (NEW.updated_at IS DISTINCT FROM now()
          OR (NEW.state IS DISTINCT FROM OLD.state
              AND NOT OLD.state || '>' || NEW.state = ANY ('{submitted>queued, submitted>running, submitted>processed,
                      submitted>internal_error, submitted>external_error, submitted>lost, submitted>cancelled,
                      queued>running, queued>processed, queued>internal_error, queued>external_error, queued>lost,
                      queued>cancelled, running>queued, running>processed, running>internal_error,
                      running>external_error, running>lost, running>cancelled}'::text[])))
    EXECUTE FUNCTION hrwsi.enforce_job_transition();

-- After tasks are inserted or updated, once per statement (migration 0032): their history, the
-- wake-up call on hrwsi_task, and, for an UPDATE that ends tasks terminated or cancelled or retries
-- them from there, their dependents blocked or unblocked and ops alerted. One trigger, not the
-- four it replaces (history, notification, dependents, alert): each trigger is a call of PL/pgSQL
-- with its transition tables set up, and the alerts and the dependents ran a query each to learn
-- they had nothing to do; with the transition trigger's condition (above), 95 us less of the
-- server's CPU in a one-task dispatch, 860 us before (11 %).
--
-- The history and the counts join the transition tables with nested loops off. PL/pgSQL prepares a
-- parameterless query once per session and keeps that plan; planned for a statement of a few rows,
-- the join is a nested loop, and the same plan then compared every pair of rows of a 10,000-row
-- UPDATE (100 million comparisons: 8 s to store one plan's assignments). Without nested loops that
-- join is a hash join at any size, and its cached plan stays cheap for one row. The rare
-- statements (dependents, alerts) read the task and input tables through their keys: planned at
-- each run (EXECUTE), with nested loops on again.
-- SECURITY DEFINER: whoever changes a task writes its history and its alerts.
CREATE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off AS $$
DECLARE
    counts json;         -- rows per new state: every row inserted, the rows updated to another state
    new_states text[];   -- (of an UPDATE) the states tasks went to
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) INTO counts
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
    ELSE
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT n.id, n.state, n.state_reason, n.attempts, n.worker
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker;
        SELECT json_object_agg(state, n), array_agg(state) INTO counts, new_states
        FROM (SELECT n.state, count(*) AS n FROM new_rows n JOIN old_rows o USING (id)
              WHERE n.state IS DISTINCT FROM o.state GROUP BY n.state) c;
    END IF;
    IF counts IS NULL THEN
        RETURN NULL;  -- no task changed its state
    END IF;
    -- A wake-up call (docs/adr/0001), sent at commit: {"op": "update", "counts": {"planned": 3}}.
    PERFORM pg_notify('hrwsi_task', json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    IF TG_OP = 'INSERT' OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending'] THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('enable_nestloop', 'on', true);  -- until this call returns (its SET clause)

    -- A task that failed for good: ops are told, with what to do.
    IF 'terminated' = ANY (new_states) THEN
        EXECUTE $q$
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', n.id, n.routine),
                   format('Task %s (routine %s, input %s) failed %s time(s) and will not be retried automatically. '
                          'Last: %s. Retry it with `hrwsi retry %s`.', n.id, n.routine, i.input_path, n.failures,
                          coalesce(n.state_reason, '-'), n.id),
                   n.id, n.routine
            FROM new_rows n JOIN old_rows o USING (id) JOIN input i ON i.id = n.input_id
            WHERE n.state = 'terminated' AND o.state <> 'terminated' $q$;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents ...
    IF new_states && ARRAY['terminated', 'cancelled'] THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    state_reason = format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                          'dependency again, `hrwsi release %s` runs this task without it',
                                          d.id, d.state, d.id, t.id)
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked $q$;
    END IF;
    -- ... and, retried, unblocks them.
    IF 'pending' = ANY (new_states) AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled')) THEN
        EXECUTE $q$
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried', d.id)
            FROM new_rows d JOIN old_rows o USING (id)
            WHERE t.depends_on = d.id AND d.state = 'pending' AND o.state IN ('terminated', 'cancelled')
              AND t.state = 'blocked' $q$;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_task_inserted AFTER INSERT ON hrwsi.processing_task
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_task_changes();
CREATE TRIGGER processing_task_updated AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_task_changes();
-- Trigger functions run whoever fires them; no role calls them otherwise.
REVOKE EXECUTE ON FUNCTION hrwsi.after_task_changes() FROM PUBLIC;
