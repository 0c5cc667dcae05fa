-- hrwsi schema, version 36: a burst's statements check what their rows name once per statement, not
-- once per row (issue 15, bursts).
--
-- Measured in the server's CPU for a burst of 10,000 inputs (inserted in one statement, claimed in
-- 5 calls of 2,000, their outcomes recorded), three pairs against the version before, alternated:
-- the three parts together 1,800, 1,550, 1,554 ms before and 1,668, 1,416, 1,442 ms after.
--
-- - A task names an existing worker without a foreign key. The key probed and locked the worker
--   for every task a statement put on one: in a claim of 2,000 tasks, 2,000 queries (dropping the
--   key alone: the claims' CPU 730, 764, 694 ms per 10,000 -> 666, 616, 632 ms). hrwsi.after_task_changes
--   now locks each worker a statement put tasks on once (FOR KEY SHARE, as the key did), and refuses
--   a missing one with the key's name and message; removing or renaming a worker that tasks name is
--   refused by hrwsi.refuse_removing_what_tasks_name, after the row's lock, as for routines and
--   lanes (migration 0022). A one-task claim pays one statement more than the key's one probe
--   (16-30 us of the 600-800 us of server time it takes, in-server loops alternated).
-- - The history, the counts and the workers of an UPDATE come from one join of the transition tables
--   (two before).
-- - hrwsi.create_tasks_for_new_inputs reads the conditions its inputs name once: it locked and
--   checked them per input (a nested loop over 10,000 inputs for one condition), and looked for a
--   time-series routine by joining every input (19.6 ms for 10,000 inputs with none, timed by
--   auto_explain).
-- - A date in the future is refused by the same trigger, called only for such a row (its WHEN
--   condition); it was a PL/pgSQL call for every input.

ALTER TABLE hrwsi.processing_task DROP CONSTRAINT task_worker_must_exist;

CREATE OR REPLACE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    missing text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) INTO counts
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
        SELECT array_agg(DISTINCT worker) INTO named_workers FROM new_rows WHERE worker IS NOT NULL;
    ELSE
        -- The history, the counts and the workers named from one join of the transition tables.
        WITH changed AS MATERIALIZED (
            SELECT n.id, n.state, n.state_reason, n.attempts, n.worker,
                   n.state IS DISTINCT FROM o.state AS state_changed,
                   n.worker IS DISTINCT FROM o.worker AS worker_changed
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker
        ), event AS (
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT id, state, state_reason, attempts, worker FROM changed
        ), per_state AS (
            SELECT state, count(*) AS n FROM changed WHERE state_changed GROUP BY state
        )
        SELECT (SELECT json_object_agg(p.state, p.n) FROM per_state p), (SELECT array_agg(p.state) FROM per_state p),
               (SELECT array_agg(DISTINCT c.worker) FROM changed c WHERE c.worker_changed AND c.worker IS NOT NULL)
        INTO counts, new_states, named_workers;
    END IF;
    -- A task names an existing worker (migration 0036): each worker a statement put tasks on is
    -- locked once, as the key locked it for every task, then must be there.
    IF named_workers IS NOT NULL THEN
        SELECT count(*) INTO locked
        FROM (SELECT 1 FROM worker w WHERE w.name = ANY (named_workers) FOR KEY SHARE OF w) l;
        IF locked < cardinality(named_workers) THEN
            SELECT x.name INTO missing FROM unnest(named_workers) x(name)
            WHERE NOT EXISTS (SELECT 1 FROM worker w WHERE w.name = x.name) LIMIT 1;
            RAISE EXCEPTION 'insert or update on table "processing_task" violates foreign key constraint "task_worker_must_exist"'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_worker_must_exist',
                      DETAIL = format('Key (worker)=(%s) is not present in table "worker".', missing),
                      HINT = 'the workers are configuration: `hrwsi config show` lists them';
        END IF;
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

CREATE OR REPLACE FUNCTION hrwsi.refuse_removing_what_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    what text := CASE TG_TABLE_NAME WHEN 'lane' THEN 'lane' WHEN 'processing_condition' THEN 'condition'
                                    WHEN 'worker' THEN 'worker' ELSE 'routine' END;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name = OLD.name THEN
        RETURN NULL;
    END IF;
    -- After the row's lock was taken: tasks (inputs) of a transaction that held it are committed
    -- and seen. A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a % is removed or renamed only in a READ COMMITTED transaction (the default)', what
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('under a stricter isolation the check for its %s cannot see %s created meanwhile',
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END,
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END);
    END IF;
    IF what = 'condition' THEN
        SELECT count(*) INTO named FROM input i WHERE i.processing_condition = OLD.name;
        IF named > 0 THEN
            RAISE EXCEPTION 'condition % cannot be % while % input(s) name it', OLD.name,
                CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                      HINT = 'inputs are the record of what came in: to stop a condition, set it inactive (`active = false`)';
        END IF;
        RETURN NULL;
    END IF;
    IF what = 'lane' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.lane = OLD.name;
    ELSIF what = 'worker' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.worker = OLD.name;
    ELSE
        SELECT count(*) INTO named FROM processing_task t WHERE t.routine = OLD.name;
    END IF;
    IF named > 0 THEN
        RAISE EXCEPTION '% % cannot be % while % task(s) name it', what, OLD.name,
            CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = CASE what WHEN 'lane' THEN 'task_lane_must_exist' WHEN 'worker' THEN 'task_worker_must_exist'
                                         ELSE 'task_routine_must_exist' END,
                  HINT = CASE what WHEN 'worker' THEN 'tasks are the record of what ran: to stop using a worker, set it inactive (`active = false`)'
                              ELSE 'tasks are the record of what ran: to stop a routine, `hrwsi hold <routine>`' END;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER worker_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.worker
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    missing text;
    conditions text[];
    sequential boolean;
BEGIN
    -- The conditions the new inputs name, each locked once, as the input's key locked it for every
    -- row (migration 0027), then checked: an input naming a condition that does not exist is
    -- refused as the key refused it, with its name and its message, and nothing is kept.
    conditions := ARRAY(SELECT DISTINCT n.processing_condition FROM new_rows n);
    PERFORM 1 FROM processing_condition c WHERE c.name = ANY (conditions) FOR KEY SHARE OF c;
    SELECT x.name INTO missing FROM unnest(conditions) x(name)
    WHERE NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = x.name)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition".',
                                  missing),
                  HINT = 'the conditions are configuration: `hrwsi config show` lists them';
    END IF;
    sequential := EXISTS (SELECT 1 FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
                          WHERE c.name = ANY (conditions) AND r.sequential_per_tile);

    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order.
    IF sequential THEN
        FOR series IN
            SELECT DISTINCT c.routine, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            ORDER BY 1, 2
        LOOP
            PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
        END LOOP;
    END IF;

    -- The routines and lanes the new tasks name, each locked once, as a foreign key would lock it
    -- for every row (hrwsi.refuse_removing_what_tasks_name): none of them can be removed before
    -- this transaction ends. They exist: the tasks are made by joining them.
    PERFORM 1
    FROM (SELECT DISTINCT c.routine, coalesce(n.lane, c.lane) AS lane
          FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition) x
    JOIN processing_routine r ON r.name = x.routine
    JOIN lane l ON l.name = x.lane
    FOR KEY SHARE OF r, l;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, deadline_at,
                                 series_tile, series_at, campaign_id)
    SELECT n.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason END,
           l.name, l.priority,
           -- A campaign's input (a product it made, chained) is reprocessing: it has no deadline.
           CASE WHEN n.campaign_id IS NULL THEN
               coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at ELSE n.measured_at END,
                        n.created_at) + c.deadline END,
           CASE WHEN r.sequential_per_tile AND n.measured_at IS NOT NULL THEN n.tile END,
           CASE WHEN r.sequential_per_tile AND n.tile IS NOT NULL THEN n.measured_at END,
           n.campaign_id
    FROM new_rows n
    JOIN processing_condition c ON c.name = n.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN lane l ON l.name = coalesce(n.lane, c.lane)
    ORDER BY n.id;

    -- A time-series task depends on the task just before it in its series, by (series_at, id). One
    -- window over the new tasks of each series, the tasks already there between its first and last
    -- new one (a late input lands between them), and the one task just before its first new one
    -- (one index probe per series): O(n log n) in the new tasks whatever the table statistics, and
    -- a series' older history is never read. (Probing once per new task, skipping the other new
    -- tasks, was quadratic in the new tasks of a series: 3.1 s for 10,000 over 200 tiles.) A
    -- campaign's tasks form series of their own: production tasks never wait for reprocessing,
    -- nor the other way round.
    IF sequential THEN
        EXECUTE $q$
            WITH fresh AS (
                SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                WHERE t.series_tile IS NOT NULL
            ), span AS (
                SELECT f.routine, f.series_tile, f.campaign_id, min(f.series_at) AS first_at,
                       max(f.series_at) AS last_at
                FROM fresh f GROUP BY f.routine, f.series_tile, f.campaign_id
            ), series AS (
                SELECT f.id, f.routine, f.series_tile, f.series_at, f.campaign_id, true AS fresh FROM fresh f
                UNION ALL
                SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, false
                FROM span g JOIN processing_task p
                  ON p.routine = g.routine AND p.series_tile = g.series_tile
                 AND p.series_at BETWEEN g.first_at AND g.last_at
                WHERE p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                  AND p.id NOT IN (SELECT f.id FROM fresh f)
                UNION ALL
                SELECT e.id, g.routine, g.series_tile, e.series_at, g.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile AND p.series_at < g.first_at
                      AND p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                    ORDER BY p.series_at DESC, p.id DESC LIMIT 1) e
            ), link AS (
                SELECT s.id, s.fresh, lag(s.id) OVER (PARTITION BY s.routine, s.series_tile, s.campaign_id
                                                      ORDER BY s.series_at, s.id) AS previous
                FROM series s
            )
            UPDATE processing_task t SET depends_on = link.previous
            FROM link
            WHERE t.id = link.id AND link.fresh AND link.previous IS NOT NULL $q$;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER input_refuse_future_dates ON hrwsi.input;
CREATE TRIGGER input_refuse_future_dates BEFORE INSERT OR UPDATE OF published_at, measured_at ON hrwsi.input
    FOR EACH ROW WHEN (NEW.published_at > now() + interval '1 hour' OR NEW.measured_at > now() + interval '1 hour')
    EXECUTE FUNCTION hrwsi.refuse_future_input_dates();
