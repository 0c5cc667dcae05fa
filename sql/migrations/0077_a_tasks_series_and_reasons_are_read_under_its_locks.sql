-- hrwsi schema, version 77: what a retry, a move and a release read and say hold under their locks.
--
-- `hrwsi retry` read a task's routine and series before it took any lock: a task of a routine that was
-- no longer a time series was linked again behind the task before it (blocked behind one that could not
-- run), and a task moved to another routine in between read the task before it in a series whose lock
-- it did not hold. It reads them under a shared lock of the routine's series, which turning
-- sequential_per_tile off takes alone, then the series' lock, then its row (hrwsi.retry_task,
-- hrwsi.end_a_routines_series).
--
-- `hrwsi move-tasks` wrote the tasks' history in a statement before the one that moved them: a task
-- dispatched in between had a history row for a move that did not happen. One statement does both.
--
-- A time-series task that still waited for upstream work said only that it was released, unblocked or
-- moved (hrwsi.release_task, hrwsi.release_routine, hrwsi.after_task_changes, hrwsi.move_tasks): it
-- says what it waits for too (hrwsi.upstream_wait_reason).
--
-- A condition made active by a plain `UPDATE ... SET active = true` got no note of the products it
-- missed, where `hrwsi config load` counts them: hrwsi.conditions_missing_products lists them for
-- `hrwsi status`, whatever made the condition active.

CREATE FUNCTION hrwsi.upstream_wait_reason(upstream bigint) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT format('waits for the scene sensed before it, input %s, whose %s task %s %s: it runs after that '
                  'scene''s own task in its series', o.input_id, o.routine, o.id,
                  CASE o.state WHEN 'processed' THEN 'is processed but its products are not chained yet'
                       WHEN 'pending' THEN 'has not run yet' WHEN 'planned' THEN 'has not run yet'
                       WHEN 'on_hold' THEN 'is on hold' WHEN 'blocked' THEN 'is blocked'
                       ELSE 'is still running' END)
    FROM hrwsi.processing_task o WHERE o.id = upstream
$$;

CREATE OR REPLACE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state ...
    progress json;         -- ... but those of work under way (hrwsi.state_is_under_way), told apart
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    upstream bigint[];     -- (of an UPDATE) tasks upstream of a time series that ended ...
    reopened bigint[];     -- ... or were retried from their end
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('hrwsi.in_dispatch_claim', true) = 'on' THEN
        RETURN NULL;  -- hrwsi.dispatch's claim: it writes all of this itself, in its own statement
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) FILTER (WHERE NOT hrwsi.state_is_under_way(state)),
               json_object_agg(state, n) FILTER (WHERE hrwsi.state_is_under_way(state))
        INTO counts, progress
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
        ), named AS MATERIALIZED (
            SELECT array_agg(DISTINCT c.worker) AS workers FROM changed c WHERE c.worker_changed AND c.worker IS NOT NULL
        ), locked_workers AS (
            -- (each worker a statement put tasks on locked once, as below for an INSERT; in this
            -- statement since migration 0037: a claim's UPDATE paid a statement more)
            SELECT 1 FROM worker w WHERE w.name = ANY ((SELECT n.workers FROM named n)::text[]) FOR KEY SHARE OF w
        )
        SELECT (SELECT json_object_agg(p.state, p.n) FILTER (WHERE NOT hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT json_object_agg(p.state, p.n) FILTER (WHERE hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT array_agg(p.state) FROM per_state p),
               (SELECT n.workers FROM named n), (SELECT count(*) FROM locked_workers)
        INTO counts, progress, new_states, named_workers, locked;
        -- (migration 0072) Tasks that ended, or were retried from their end, of a routine whose output
        -- a time-series routine reads: the series' tasks after their scene may wait no more, or again.
        -- Read only where some time series reads another routine's output: elsewhere a statement pays
        -- one look at the routines, not a test of every changed row.
        IF EXISTS (SELECT 1 FROM processing_routine r JOIN processing_routine d
                   ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile) THEN
            SELECT array_agg(n.id) FILTER (WHERE hrwsi.task_state_is_final(n.state)),
                   array_agg(n.id) FILTER (WHERE NOT hrwsi.task_state_is_final(n.state))
            INTO upstream, reopened
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state
              AND (hrwsi.task_state_is_final(n.state) OR hrwsi.task_state_is_final(o.state))
              AND n.routine IN (SELECT r.name FROM processing_routine r JOIN processing_routine d
                                ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile);
        END IF;
    END IF;
    -- A task names an existing worker (migration 0036): each worker a statement put tasks on is
    -- locked once, as the key locked it for every task, then must be there.
    IF named_workers IS NOT NULL THEN
        IF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO locked
            FROM (SELECT 1 FROM worker w WHERE w.name = ANY (named_workers) FOR KEY SHARE OF w) l;
        END IF;
        IF locked < cardinality(named_workers) THEN
            PERFORM hrwsi.refuse_a_missing_worker(named_workers);
        END IF;
    END IF;
    -- A wake-up call (docs/adr/0001), sent at commit: {"op": "update", "counts": {"planned": 3}}.
    IF counts IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    END IF;
    IF progress IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task_progress', json_build_object('op', lower(TG_OP), 'counts', progress)::text);
    END IF;
    -- The time-series tasks that wait for these upstream tasks wait no more, or for the next open
    -- scene before them; those after a retried one's scene wait for it again (migration 0072). An end
    -- only releases: a series whose lock another transaction holds is left to the orchestrator's sweep,
    -- not waited for (the launcher's outcome writer waited, then failed: found by review); a retry
    -- adds waits, and waits for the locks.
    IF upstream IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(upstream, false);
    END IF;
    IF reopened IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(reopened, true);
    END IF;
    IF TG_OP = 'INSERT' OR new_states IS NULL
            OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending', 'blocked'] THEN
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
    -- ... and, blocked, the tasks after them in their chain (a time series' later scenes of the tile),
    -- all at once, without an alert of their own: they stayed planned, at a time long past and with
    -- no reason, for as long as the blocked task waited (found by exploratory testing; migration
    -- 0060). One statement for the whole chain: a trigger per link would nest as deep as the series
    -- is long. (This trigger then runs for the rows it blocked, and finds nothing left to block.)
    IF 'blocked' = ANY (new_states) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root) AS (
                SELECT t.id, b.id FROM new_rows b JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = b.id
                WHERE b.state = 'blocked' AND o.state <> 'blocked'
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                UNION ALL
                SELECT t.id, a.root FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
            )
            -- (the reason names the task it waits for directly, and the root cause: the task that
            -- ended, behind which the chain waits; it named the chain's first blocked task alone, so
            -- that a task three links down named a task it did not wait for: migration 0073)
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                state_reason = CASE
                    WHEN cause.id IS NOT NULL THEN
                        format('waits for task %s, which is blocked behind task %s, which ended %s: `hrwsi retry %s` '
                               'runs that task again, and the tasks after it then run in order', t.depends_on,
                               cause.id, cause.state, cause.id)
                    WHEN t.depends_on = a.root THEN
                        format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it runs once '
                               'that task has run', a.root, a.root)
                    ELSE format('waits for task %s, which is blocked behind task %s (`hrwsi task show %s` says why): '
                                'it runs once those have run', t.depends_on, a.root, a.root) END
            FROM after_it a JOIN processing_task r ON r.id = a.root
            LEFT JOIN processing_task cause ON cause.id = r.depends_on AND cause.state IN ('terminated', 'cancelled')
            WHERE t.id = a.id $q$;
    END IF;
    -- ... and, retried (or released), unblocks them and the tasks after them in their chain.
    IF 'pending' = ANY (new_states)
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root) AS (
                SELECT t.id, d.id FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = 'pending')
                UNION ALL
                SELECT t.id, a.root FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            )
            -- (one that still waits for upstream work says so too: migration 0077)
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried or released', a.root)
                    || CASE WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                            THEN coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '') ELSE '' END
            FROM after_it a WHERE t.id = a.id $q$;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.end_a_routines_series() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released integer;
BEGIN
    -- (alone: a retry of one of its tasks holds this lock shared while it links the task in its series,
    -- and the tasks it releases below are read once that retry committed: migration 0077)
    PERFORM pg_advisory_xact_lock(7250078, hashtext(NEW.name));
    -- (a task that stays pending or held gets no history row from hrwsi.after_task_changes, nor a
    -- wake-up call: its own here, below)
    WITH event AS (
    INSERT INTO task_event (task_id, state, reason, attempts, worker)
    SELECT t.id, t.state, format('routine %s is no longer a time series (sequential_per_tile off): it no longer '
                                 'waits for task %s', NEW.name, coalesce(t.depends_on, t.waits_for_upstream)),
           t.attempts, t.worker
    FROM processing_task t
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'on_hold')
    RETURNING state)
    SELECT count(*) FILTER (WHERE state = 'pending') INTO released FROM event;
    UPDATE processing_task t
    SET dependency_waived = true,
        waits_for_upstream = NULL,  -- (nor for an earlier scene's upstream work: migration 0072)
        state = CASE WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            ELSE format('routine %s is no longer a time series (sequential_per_tile off): it no '
                                        'longer waits for task %s', NEW.name,
                                        coalesce(t.depends_on, t.waits_for_upstream)) END
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'blocked', 'on_hold');
    -- (those that stayed pending: a planned or blocked one went to pending, and that trigger said so;
    -- they waited, unannounced, for the next plan or dispatch: found by review)
    IF released > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts',
                                                          json_build_object('pending', released))::text);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock; NULL: in no series now
    series_now text;
    routine_was text;
    routine_now text;
BEGIN
    -- A task of a time series takes its series' lock first, then its row (migration 0072, amended):
    -- the task before it is read under the lock the INSERTs and the chaining of its series take, so a
    -- scene being chained meanwhile is seen once it commits, and both locks are taken in their order
    -- (series, then rows). It read the task before it, then took the lock: a scene being chained was
    -- not seen, and both tasks ran at once; and holding its row, it deadlocked with a chaining on the
    -- same tile that held the series and wanted the row (found by review).
    -- Its series is its routine's while that routine is a time series, read under locks (migration 0077):
    -- a shared lock of the routine's series, which hrwsi.end_a_routines_series takes alone when
    -- sequential_per_tile is turned off, so that it releases this task too once this retry commits; then
    -- the series' lock; then the row, and the task's routine and series read again. They were read from
    -- the task alone, before any lock: a task of a routine no longer a time series was linked again
    -- behind the task before it (and blocked behind one that could not run); and a task moved to another
    -- routine in between (`hrwsi move-tasks`) read the task before it in a series whose lock it did not
    -- hold, then took that lock with its row held (found by review). Moved in between, the first try is
    -- rolled back with its subtransaction, which releases its locks, and the task is taken again in the
    -- series it is in now, in the same order.
    LOOP
        SELECT t.routine INTO routine_was FROM hrwsi.processing_task t WHERE t.id = task;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(7250078, hashtext(coalesce(routine_was, '')));
            SELECT t.routine || '/' || t.series_tile INTO series
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
            WHERE t.id = task AND t.series_tile IS NOT NULL;
            IF series IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock(7250010, hashtext(series));
            END IF;
            current := hrwsi.lock_task(task);
            SELECT t.routine, CASE WHEN r.sequential_per_tile AND t.series_tile IS NOT NULL
                                   THEN t.routine || '/' || t.series_tile END
            INTO routine_now, series_now
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
            WHERE t.id = task;
            EXIT WHEN routine_now IS NOT DISTINCT FROM routine_was AND series_now IS NOT DISTINCT FROM series;
            RAISE EXCEPTION 'task % moved to another series while it was retried', task USING ERRCODE = 'HR078';
        EXCEPTION WHEN SQLSTATE 'HR078' THEN
            NULL;  -- (its locks released with the subtransaction: again, in the series the task is in now)
        END;
    END LOOP;
    IF current NOT IN ('terminated', 'cancelled', 'on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled, held or blocked task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- A task of a time series runs again after the scene sensed last before it, as a new task
    -- would: one that ended (or was held) kept the link it ran with, and a late scene that came
    -- meanwhile was processed before it, yet the retried task ran as the series' first, reading no
    -- previous product (found by exploratory testing; migration 0069).
    SELECT p.id, p.state INTO previous, previous_state
    FROM hrwsi.processing_task t CROSS JOIN LATERAL (
        SELECT p.id, p.state FROM hrwsi.processing_task p
        WHERE p.routine = t.routine AND p.series_tile = t.series_tile AND p.state <> 'cancelled'
          AND p.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (p.series_at, p.id) < (t.series_at, t.id)
        ORDER BY p.series_at DESC, p.id DESC LIMIT 1) p
    WHERE t.id = task AND series IS NOT NULL AND NOT t.dependency_waived;
    -- (a task of a routine that is no longer a time series runs without the link it ran with, as the
    -- routine's open tasks do since it was turned off: hrwsi.end_a_routines_series)
    UPDATE hrwsi.processing_task
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL,
        dependency_waived = dependency_waived OR (series IS NULL AND depends_on IS NOT NULL),
        waits_for_upstream = CASE WHEN series IS NOT NULL THEN waits_for_upstream END,
        state_reason = CASE WHEN series IS NULL AND depends_on IS NOT NULL AND NOT dependency_waived
                            THEN format('retried by an operator; routine %s is no longer a time series: it no longer '
                                        'waits for task %s', routine, depends_on)
                            ELSE 'retried by an operator' END
    WHERE id = task;
    -- Behind a task that cannot run (blocked, or ended terminated), it is blocked, saying so, and so
    -- are the tasks after it (hrwsi.after_task_changes), as a new task there would be (migration 0061).
    IF previous_state IN ('blocked', 'terminated') THEN
        UPDATE hrwsi.processing_task
        SET state = 'blocked', state_reason = CASE WHEN previous_state = 'terminated' THEN
                format('retried by an operator; its dependency, task %s, ended terminated: `hrwsi retry %s` runs '
                       'the dependency again, `hrwsi release %s` runs this task without it', previous, previous, task)
            ELSE format('retried by an operator; waits for task %s, which is blocked (`hrwsi task show %s` says '
                        'why): it runs once that task has run', previous, previous) END
        WHERE id = task;
    END IF;
    -- ... and, of a chained step, waits for the scenes sensed before it whose upstream work is still
    -- open, as a new task would (migration 0072), under its series' lock (taken above).
    IF series IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(ARRAY[t.id]) FROM hrwsi.processing_task t
        WHERE t.id = task AND NOT t.dependency_waived;
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current NOT IN ('on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a held or blocked task can be released', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a blocked task runs without what it waited for, upstream work included; a held one that still
    -- waits for upstream work says so, not only that it was released: migration 0077)
    UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
        dependency_waived = dependency_waived OR current = 'blocked',
        waits_for_upstream = CASE WHEN current = 'blocked' THEN NULL ELSE waits_for_upstream END,
        state_reason = CASE WHEN current = 'blocked' THEN 'released by an operator: runs without its dependency'
                            WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'released by an operator' || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'released by an operator' END
    WHERE id = task;
    RETURN CASE WHEN current = 'blocked'
                THEN format('task %s released; it will be planned and run without its dependency', task)
                ELSE format('task %s released; it will be planned', task) END;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
        RAISE EXCEPTION 'no routine %', routine_name USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        backfill_hold_reason = NULL, backfill_consecutive_failures = 0  -- (and its back-fill: migration 0075)
    WHERE name = routine_name;
    UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
        state_reason = CASE WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'routine released by an operator'
                                     || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'routine released by an operator' END
    WHERE routine = routine_name AND state = 'on_hold';
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN format('routine %s released; %s held task(s) will be planned', routine_name, released);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
    stay_under_way bigint;
    stay_campaign bigint;
    moved_reason text := format('moved from routine %s to routine %s by an operator', from_routine, to_routine);
BEGIN
    SELECT * INTO source FROM processing_routine r WHERE r.name = from_routine;
    SELECT * INTO target FROM processing_routine r WHERE r.name = to_routine FOR KEY SHARE;
    IF source.name IS NULL OR target.name IS NULL THEN
        RAISE EXCEPTION 'no routine %', CASE WHEN source.name IS NULL THEN from_routine ELSE to_routine END
            USING ERRCODE = 'no_data_found';
    END IF;
    IF source.name = target.name THEN
        RAISE EXCEPTION 'routine %: give another routine to move its tasks to', from_routine
            USING ERRCODE = 'check_violation';
    END IF;
    IF source.input_product_type IS DISTINCT FROM target.input_product_type THEN
        RAISE EXCEPTION 'routine % reads %, routine % reads %: the tasks of % cannot run on %', from_routine,
            source.input_product_type, to_routine, target.input_product_type, from_routine, to_routine
            USING ERRCODE = 'check_violation';
    END IF;
    -- One statement moves the tasks and writes the history of those whose state stays (a task whose state
    -- changes gets its row from hrwsi.after_task_changes), from the rows it locked and moved (migration
    -- 0077). The history was written by a statement before the move, from what that statement saw: a task
    -- dispatched meanwhile, which the move then left where it was, had a history row saying it moved
    -- (found by review). A task that still waits for upstream work says so after why it moved.
    WITH chosen AS (
        SELECT t.id, t.state, t.state_reason FROM processing_task t
        WHERE t.routine = from_routine AND t.campaign_id IS NULL
          AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
        FOR UPDATE
    ), changed AS (
        UPDATE processing_task t
        SET routine = to_routine,
            state = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                         WHEN c.state = 'planned' THEN 'pending'
                         WHEN c.state = 'on_hold' AND NOT target.on_hold AND c.state_reason LIKE 'routine on hold: %'
                             THEN 'pending'
                         ELSE c.state END,
            worker = CASE WHEN c.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold
                                    THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                                WHEN c.state = 'on_hold' AND (target.on_hold OR c.state_reason NOT LIKE 'routine on hold: %')
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN c.state = 'blocked' THEN moved_reason || '; ' || c.state_reason
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN moved_reason || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE moved_reason END
        FROM chosen c
        WHERE t.id = c.id
        RETURNING t.id, t.state, t.attempts, t.worker, c.state AS old_state
    ), history AS (
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT m.id, m.state, moved_reason, m.attempts, m.worker FROM changed m WHERE m.state = m.old_state
    )
    SELECT count(*) INTO moved FROM changed;
    SELECT count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('dispatched', 'queued', 'running')),
           count(*) FILTER (WHERE t.campaign_id IS NOT NULL AND NOT task_state_is_final(t.state))
    INTO stay_under_way, stay_campaign
    FROM processing_task t WHERE t.routine = from_routine;
    RETURN format('%s task(s) of routine %s moved to routine %s%s%s', moved, from_routine, to_routine,
                  CASE WHEN stay_under_way > 0
                       THEN format('; %s under way end on %s', stay_under_way, from_routine) ELSE '' END,
                  CASE WHEN stay_campaign > 0
                       THEN format('; %s open task(s) of campaigns stay on %s, their campaign''s routine',
                                   stay_campaign, from_routine) ELSE '' END);
END $$;

CREATE FUNCTION hrwsi.conditions_missing_products()
RETURNS TABLE (condition text, product_type text, missed bigint, outside_window bigint) LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    SELECT c.name, c.reads, m.missed, m.outside_window
    FROM (SELECT x.name, r.input_product_type AS reads FROM processing_condition x
          JOIN processing_routine r ON r.name = x.routine
          WHERE x.active AND x.missed_until IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = x.name)
          OFFSET 0) c  -- (only those: chain_missed_products refuses a multi-input condition)
    CROSS JOIN LATERAL chain_missed_products(c.name, NULL, 1, true) m
    WHERE m.missed > 0
    ORDER BY c.name
$$;

REVOKE EXECUTE ON FUNCTION hrwsi.upstream_wait_reason(bigint) FROM PUBLIC;  -- (migration 0077: for the functions above)
REVOKE EXECUTE ON FUNCTION hrwsi.conditions_missing_products() FROM PUBLIC;  -- (migration 0077: `hrwsi status`)
GRANT EXECUTE ON FUNCTION hrwsi.conditions_missing_products() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
