-- Statement-level triggers join their OLD and NEW transition tables on id. PL/pgSQL prepares a
-- parameterless query once per session and keeps that plan; planned for a statement of a few rows,
-- the join is a nested loop, and the same plan then compared every pair of rows of a 10,000-row
-- UPDATE (100 million comparisons: 8 s to store one plan's assignments).
--
-- The history and state-count triggers join nothing but the transition tables: without nested
-- loops that join is a hash join at any size, and their cached plans stay cheap for one row.
ALTER FUNCTION hrwsi.record_task_events() SET enable_nestloop = off;
ALTER FUNCTION hrwsi.notify_state_counts() SET enable_nestloop = off;

-- The failure policy and the terminated-task alert also join a base table by its key, where a
-- nested loop over an index is right. They run their query through EXECUTE, planned each time
-- with the transition tables' real sizes, and only when a row of interest is in the statement
-- (a cheap check first), so the common one-row progress UPDATE pays nothing. The query texts are
-- constants: nothing is formatted into SQL.
CREATE OR REPLACE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- After job outcomes: count consecutive failures per routine; hold a routine that reached its limit.
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('processed', 'internal_error', 'external_error')) THEN
        RETURN NULL;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT t.routine,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error')) AS failures,
               max(n.message) FILTER (WHERE n.state IN ('internal_error', 'external_error')) AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY t.routine $q$
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

CREATE OR REPLACE FUNCTION hrwsi.alert_terminated_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state = 'terminated') THEN
        RETURN NULL;
    END IF;
    EXECUTE $q$
        INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
        SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', n.id, n.routine),
               format('Task %s (routine %s, input %s) failed %s time(s) and will not be retried automatically. '
                      'Last: %s. Retry it with `hrwsi retry %s`.', n.id, n.routine, i.input_path, n.failures,
                      coalesce(n.state_reason, '-'), n.id),
               n.id, n.routine
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.input i ON i.id = n.input_id
        WHERE n.state = 'terminated' AND o.state <> 'terminated' $q$;
    RETURN NULL;
END $$;
