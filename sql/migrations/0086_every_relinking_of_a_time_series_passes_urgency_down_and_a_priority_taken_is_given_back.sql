-- hrwsi schema, version 86: every relinking of a time series passes urgency down at once, and a task names
-- whose priority it took, to give it back.
--
-- An urgent task that a relinking of its series made wait for a less urgent pending or planned task passed its
-- priority and deadline down only when the series was next linked by an INSERT: a task retried by an operator
-- (hrwsi.retry_task, and the tasks after it that wait for it again), the tasks after a cancelled one linked to
-- the task before it when nothing was given back (hrwsi.skip_cancelled_tasks), and the tasks a correction of an
-- input relinks (hrwsi.correct_input). A near-real-time scene sat behind archive work at the archive lane's
-- priority meanwhile (found by review). Each now calls hrwsi.pass_deadlines_down with the tasks whose
-- dependency it changed, as the INSERT and the give-back do.
--
-- A task raised for its priority alone (its own deadline earlier than the waiter's, or the waiter with none)
-- named no one, and never gave the priority back when the waiter was cancelled or corrected (found by review).
-- It names the task whose priority it took (priority_inherited_from, at the end of the table), which
-- hrwsi.give_back_taken_deadlines gives back as it gives back a deadline. A task that took a deadline before
-- this migration names no one for its priority: it gives it back with the deadline, as before.

ALTER TABLE hrwsi.processing_task ADD COLUMN priority_inherited_from bigint;

CREATE OR REPLACE FUNCTION hrwsi.pass_deadlines_down(waiters bigint[]) RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, hrwsi SET enable_seqscan = off AS $$
    WITH RECURSIVE waiting AS (
        SELECT d.id, u.priority, u.deadline_at, coalesce(u.deadline_inherited_from, u.id) AS waiter,
               coalesce(u.deadline_inherited_from, u.id) AS deadline_from,
               coalesce(u.priority_inherited_from, u.id) AS priority_from
        FROM unnest(waiters) AS x(id)
        CROSS JOIN LATERAL (SELECT u.* FROM processing_task u WHERE u.id = x.id OFFSET 0) u
        CROSS JOIN LATERAL (SELECT d.* FROM processing_task d WHERE d.id = u.depends_on OFFSET 0) d
        WHERE u.state IN ('pending', 'planned', 'on_hold', 'blocked')
          AND (d.priority > u.priority OR u.deadline_at < coalesce(d.deadline_at, 'infinity'))
          AND d.state IN ('pending', 'planned')
        UNION
        -- (the deadline passed on is the earliest on the way, and deadline_from the task whose it is: a task on
        -- the way with an earlier deadline than the waiter's, raised for its priority alone, passes its own;
        -- the waiter was named, and a cancel of that task gave back a deadline that was not its own, while
        -- the task whose it was, cancelled, left it taken: found by review, migration 0085; the priority's name
        -- goes with the priority in the same way, migration 0086)
        SELECT d.id, least(w.priority, p.priority), least(w.deadline_at, p.deadline_at), w.waiter,
               CASE WHEN p.deadline_at < coalesce(w.deadline_at, 'infinity')
                    THEN coalesce(p.deadline_inherited_from, p.id) ELSE w.deadline_from END,
               CASE WHEN p.priority < w.priority THEN coalesce(p.priority_inherited_from, p.id) ELSE w.priority_from END
        FROM waiting w
        CROSS JOIN LATERAL (SELECT p.* FROM processing_task p WHERE p.id = w.id OFFSET 0) p
        CROSS JOIN LATERAL (SELECT d.* FROM processing_task d WHERE d.id = p.depends_on OFFSET 0) d
        WHERE (d.priority > least(w.priority, p.priority)
               OR least(w.deadline_at, p.deadline_at) < coalesce(d.deadline_at, 'infinity'))
          AND d.state IN ('pending', 'planned')
    ), locked AS MATERIALIZED (
        -- (locked first, in the order of their ids, as every writer of many tasks locks them: in the join's
        -- order, the table's, this UPDATE deadlocked with the planner storing a plan, or the ageing of a lane,
        -- that held one of them and wanted one it held; migration 0084)
        SELECT t.id FROM processing_task t
        WHERE t.id = ANY (ARRAY(SELECT w.id FROM waiting w)) AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), raised AS (
        UPDATE processing_task t
        SET priority = least(t.priority, w.priority),
            deadline_at = least(t.deadline_at, w.deadline_at),
            deadline_inherited_from = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity') THEN w.deadline_from
                                           ELSE t.deadline_inherited_from END,
            own_deadline_at = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity')
                                        AND t.deadline_inherited_from IS NULL THEN t.deadline_at
                                   ELSE t.own_deadline_at END,
            priority_inherited_from = CASE WHEN w.priority < t.priority THEN w.priority_from
                                           ELSE t.priority_inherited_from END,
            state = 'pending',
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN t.state = 'planned'
                                THEN format('near-real-time task %s of its time series waits for it: served as '
                                            'urgently, planned again', w.waiter)
                                ELSE t.state_reason END
        FROM (SELECT id, min(priority) AS priority, min(deadline_at) AS deadline_at, min(waiter) AS waiter,
                     (array_agg(deadline_from ORDER BY deadline_at NULLS LAST, deadline_from))[1] AS deadline_from,
                     (array_agg(priority_from ORDER BY priority, priority_from))[1] AS priority_from
              FROM waiting GROUP BY id) w
        -- (its state again here: the recursion read a snapshot, and a row this UPDATE waited for, a task
        -- dispatch claimed meanwhile, is checked once more against this condition alone, as committed;
        -- without it the claimed task went back to pending and ran a second attempt beside the first,
        -- and a cancelled or held one was made pending: found by review, migration 0081)
        WHERE t.id = w.id AND t.id IN (SELECT l.id FROM locked l) AND t.state IN ('pending', 'planned')
          AND (t.priority > w.priority OR w.deadline_at < coalesce(t.deadline_at, 'infinity'))
        RETURNING 1
    )
    SELECT count(*)::integer FROM raised
$$;

CREATE OR REPLACE FUNCTION hrwsi.give_back_taken_deadlines(cancelled bigint[]) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    given bigint[];
BEGIN
    WITH back AS (
        UPDATE processing_task t
        SET deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN t.own_deadline_at
                               ELSE t.deadline_at END,
            deadline_inherited_from = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.deadline_inherited_from END,
            own_deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL ELSE t.own_deadline_at END,
            priority = CASE WHEN t.priority_inherited_from = ANY (cancelled)
                                 OR (t.priority_inherited_from IS NULL AND t.deadline_inherited_from = ANY (cancelled))
                            THEN CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                      THEN least(l.priority, 0) ELSE l.priority END
                            ELSE t.priority END,
            priority_inherited_from = CASE WHEN t.priority_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.priority_inherited_from END,
            state = CASE WHEN t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            -- (not "served by its own": a task after it may give it its deadline at once, below)
            state_reason = CASE WHEN t.state = 'planned' AND t.deadline_inherited_from = ANY (cancelled)
                                THEN format('task %s, whose deadline it took, was cancelled: it gave it back, planned '
                                            'again', t.deadline_inherited_from)
                                WHEN t.state = 'planned'
                                THEN format('task %s, whose priority it took, was cancelled: it gave it back, planned '
                                            'again', t.priority_inherited_from)
                                ELSE t.state_reason END
        FROM lane l
        WHERE (t.deadline_inherited_from = ANY (cancelled) OR t.priority_inherited_from = ANY (cancelled))
          AND l.name = t.lane AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        RETURNING t.id
    )
    SELECT coalesce(array_agg(b.id), '{}') INTO given FROM back b;
    IF cardinality(given) > 0 THEN
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT t.id FROM processing_task t
                                                WHERE t.depends_on = ANY (given)
                                                  AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')));
    END IF;
    RETURN cardinality(given);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.skip_cancelled_tasks(p_cancelled bigint[]) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi SET enable_nestloop = on AS $$
DECLARE
    key integer;
    keys integer[] := '{}';  -- the keys of the series' locks held (hrwsi.series_lock_key)
    relinked bigint[];
    released integer;
BEGIN
    FOR key IN
        SELECT DISTINCT hrwsi.series_lock_key(t.routine, t.series_tile)
        FROM processing_task c JOIN processing_task t ON t.depends_on = c.id
        WHERE c.id = ANY (p_cancelled) AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ORDER BY 1
    LOOP
        IF pg_try_advisory_xact_lock(7250010, key) THEN
            keys := keys || key;
        END IF;
    END LOOP;
    IF cardinality(keys) = 0 THEN
        RETURN;
    END IF;
    WITH next AS (
        SELECT t.id, t.state AS old_state, c.id AS cancelled, p.id AS previous, p.state AS previous_state
        FROM processing_task c JOIN processing_task t ON t.depends_on = c.id
        JOIN processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        LEFT JOIN LATERAL (
            SELECT p.id, p.state FROM processing_task p
            WHERE p.routine = t.routine AND p.series_tile = t.series_tile AND p.state <> 'cancelled'
              AND p.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (p.series_at, p.id) < (t.series_at, t.id)
            ORDER BY p.series_at DESC, p.id DESC LIMIT 1) p ON true
        WHERE c.id = ANY (p_cancelled) AND c.state = 'cancelled' AND t.series_tile IS NOT NULL
          AND c.routine = t.routine AND c.series_tile = t.series_tile AND c.campaign_id IS NOT DISTINCT FROM t.campaign_id
          AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
          AND hrwsi.series_lock_key(t.routine, t.series_tile) = ANY (keys)
    ), locked AS MATERIALIZED (
        -- (in the order of their ids, as every writer of many tasks locks them)
        SELECT t.id FROM processing_task t WHERE t.id IN (SELECT n.id FROM next n) ORDER BY t.id FOR NO KEY UPDATE OF t
    ), changed AS (
        UPDATE processing_task t
        SET depends_on = n.previous,
            state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN n.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'blocked' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                                 ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                               ELSE t.planned_end END,
            state_reason = CASE
                WHEN t.state = 'on_hold' THEN t.state_reason
                WHEN n.previous IS NULL THEN
                    format('task %s before it in its time series was cancelled: it is the first of its series now, and '
                           'runs without a previous product', n.cancelled)
                WHEN n.previous_state = 'terminated' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which ended terminated; `hrwsi retry %s` runs that task again, `hrwsi release %s` '
                           'runs this task without it', n.cancelled, n.previous, n.previous, t.id)
                WHEN n.previous_state = 'blocked' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which is blocked (`hrwsi task show %s` says why): it runs once that task has run',
                           n.cancelled, n.previous, n.previous)
                ELSE format('task %s before it in its time series was cancelled: it runs after task %s, sensed before '
                            'that one', n.cancelled, n.previous) END
        FROM next n
        WHERE t.id = n.id AND t.id IN (SELECT l.id FROM locked l) AND t.depends_on = n.cancelled
          AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        RETURNING t.id, t.routine, t.state, t.state_reason, t.attempts, t.worker, n.old_state, n.previous_state
    ), history AS (
        -- (a change of state writes its own row: hrwsi.after_task_changes)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state
    ), alerted AS (
        -- (ops are told of a task blocked behind a terminated one, as when it ends so)
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', c.id, c.routine), c.state_reason, c.id, c.routine
        FROM changed c WHERE c.previous_state = 'terminated' AND c.state = 'blocked'
    )
    SELECT array_agg(c.id), count(*) FILTER (WHERE c.state = 'pending' AND c.old_state = 'pending')
    INTO relinked, released FROM changed c;
    -- (a pending one that stays pending is told to no one by the trigger: its dispatch may be ready now)
    IF released > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts',
                                                          json_build_object('pending', released))::text);
    END IF;
    -- (the scenes before it it waits for upstream now reach back to the task before the cancelled one)
    IF relinked IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(relinked);
        -- (and an urgent one passes its priority and deadline down to the less urgent tasks it waits for now,
        -- at once, as a task linked by an INSERT does: behind a held or blocked task, or after a cancel that
        -- gave nothing back, it passed nothing on until the series' next INSERT; migration 0086)
        PERFORM hrwsi.pass_deadlines_down(relinked);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock; NULL: in no series now
    keys integer[];        -- the keys of the series' locks it takes (hrwsi.series_lock_key), in order
    keys_now integer[];
    key integer;
    series_now text;
    routine_was text;
    routine_now text;
    refused text;
BEGIN
    -- A task of a time series, or one whose products a time series reads, is linked (or makes the series'
    -- tasks wait) by what the retry sees once it holds the series' locks: under REPEATABLE READ or
    -- SERIALIZABLE its snapshot missed a scene another transaction had inserted meanwhile, and the retried
    -- task and that scene's both depended on the task before them and ran side by side (found by review;
    -- migration 0078). Refused there, as an INSERT into a time series is (hrwsi.create_tasks_for_new_inputs).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT CASE WHEN r.sequential_per_tile
                    THEN format('task %s is in the time series of routine %s on tile %s (sequential_per_tile)',
                                t.id, r.name, t.series_tile)
                    ELSE format('task %s of routine %s feeds the time series of routine %s (sequential_per_tile)',
                                t.id, r.name, d.name) END
        INTO refused
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        LEFT JOIN LATERAL (SELECT x.name FROM hrwsi.processing_routine x
                           WHERE x.input_product_type = r.output_product_type AND x.sequential_per_tile
                           ORDER BY x.name LIMIT 1) d ON true
        WHERE t.id = task AND ((r.sequential_per_tile AND t.series_tile IS NOT NULL) OR d.name IS NOT NULL);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'a task of a time series is retried only in a READ COMMITTED transaction (the default), '
                            'not in a % one', upper(current_setting('transaction_isolation'))
                USING ERRCODE = 'feature_not_supported', DETAIL = refused,
                      HINT = 'under a stricter isolation the retry cannot see the tasks other transactions added to '
                             'the series meanwhile, and would link the task out of sensing order: retry without BEGIN '
                             'ISOLATION LEVEL ..., or SET TRANSACTION ISOLATION LEVEL READ COMMITTED first';
        END IF;
    END IF;
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
    -- It takes, with its own series' lock and in the order of their keys, the locks of the series its
    -- task feeds (migration 0084): a retried upstream task makes the series' next task wait again
    -- (hrwsi.after_task_changes), and took their locks there, holding the task's row, while every other
    -- holder of a series lock takes it before the rows: two transactions retrying two upstream tasks of
    -- one tile, or a retry of a series task that feeds another series and an INSERT taking both series
    -- in the order of their keys, deadlocked (found by exploratory testing). Taken again there, they are
    -- held already.
    LOOP
        SELECT t.routine INTO routine_was FROM hrwsi.processing_task t WHERE t.id = task;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(7250078, hashtext(coalesce(routine_was, '')));
            SELECT t.routine || '/' || t.series_tile INTO series
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
            WHERE t.id = task AND t.series_tile IS NOT NULL;
            keys := hrwsi.retry_series_lock_keys(task);
            FOREACH key IN ARRAY keys LOOP
                PERFORM pg_advisory_xact_lock(7250010, key);
            END LOOP;
            current := hrwsi.lock_task(task);
            SELECT t.routine, CASE WHEN r.sequential_per_tile AND t.series_tile IS NOT NULL
                                   THEN t.routine || '/' || t.series_tile END
            INTO routine_now, series_now
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
            WHERE t.id = task;
            keys_now := hrwsi.retry_series_lock_keys(task);
            EXIT WHEN routine_now IS NOT DISTINCT FROM routine_was AND series_now IS NOT DISTINCT FROM series
                      AND keys_now <@ keys;
            RAISE EXCEPTION 'task % moved to another series while it was retried', task USING ERRCODE = 'HR078';
        EXCEPTION WHEN SQLSTATE 'HR078' THEN
            NULL;  -- (its locks released with the subtransaction: again, in the series the task is in now)
        END;
    END LOOP;
    IF current NOT IN ('terminated', 'cancelled', 'on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled, held or blocked task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a task of an input a correction superseded would run the wrong input again: migration 0083)
    SELECT format('task %s was made from input %s, which input %s corrects', t.id, i.id, i.superseded_by) INTO refused
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    WHERE t.id = task AND i.superseded_by IS NOT NULL;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'the corrected input''s task runs instead (`hrwsi tasks` lists it)';
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
    -- The task after it in its series that has not started and waits for another (one cancelled was
    -- skipped: hrwsi.skip_cancelled_tasks) waits for it again, as it would for a late scene; behind it
    -- blocked, it is blocked too (migration 0084). Else both waited for the same task and ran side by side.
    IF series IS NOT NULL THEN
        WITH me AS (
            SELECT t.id, t.state, t.routine, t.series_tile, t.series_at, t.campaign_id FROM hrwsi.processing_task t
            WHERE t.id = task AND NOT t.dependency_waived
        ), next AS (
            SELECT n.id, n.state AS old_state, me.state AS my_state
            FROM me CROSS JOIN LATERAL (
                SELECT n.id, n.state, n.depends_on, n.dependency_waived FROM hrwsi.processing_task n
                WHERE n.routine = me.routine AND n.series_tile = me.series_tile AND n.state <> 'cancelled'
                  AND n.campaign_id IS NOT DISTINCT FROM me.campaign_id AND (n.series_at, n.id) > (me.series_at, me.id)
                ORDER BY n.series_at, n.id LIMIT 1) n
            WHERE n.depends_on IS DISTINCT FROM task AND NOT n.dependency_waived
              AND n.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ), changed AS (
            UPDATE hrwsi.processing_task t
            SET depends_on = task,
                state = CASE WHEN t.state = 'on_hold' THEN 'on_hold' WHEN x.my_state = 'blocked' THEN 'blocked'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                worker = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                    WHEN x.my_state = 'blocked'
                                    THEN format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it '
                                                'runs once that task has run', task, task)
                                    ELSE format('task %s before it in its time series was retried: it runs after it', task) END
            FROM next x
            WHERE t.id = x.id AND t.depends_on IS DISTINCT FROM task AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
            RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, x.old_state
        )
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state;
    END IF;
    -- ... and, of a chained step, waits for the scenes sensed before it whose upstream work is still
    -- open, as a new task would (migration 0072), under its series' lock (taken above).
    IF series IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(ARRAY[t.id]) FROM hrwsi.processing_task t
        WHERE t.id = task AND NOT t.dependency_waived;
        -- The retried task, and the tasks that wait for it again, pass their priority and deadline down to the
        -- less urgent tasks they wait for now, at once, as a task an INSERT links does (migration 0086): a
        -- near-real-time scene behind a retried archive task passed nothing down until the series' next INSERT,
        -- and waited behind it at the archive lane's priority meanwhile (found by review). Each read by key.
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT task UNION ALL
                                                SELECT t.id FROM hrwsi.processing_task t WHERE t.depends_on = task));
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.correct_input(input_id bigint, tile text DEFAULT NULL, measured_at timestamptz DEFAULT NULL,
                                    published_at timestamptz DEFAULT NULL, lane text DEFAULT NULL,
                                    input_path text DEFAULT NULL, mission text DEFAULT NULL, scene_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    was hrwsi.input;      -- (the input corrected)
    busy record;
    series record;
    cancelled bigint[];
    waiting bigint;
    new_id bigint;
    alerted bigint;       -- (the last alert before the cancellations)
    dependents bigint[];  -- (the tasks that waited for a cancelled one)
    old_tasks bigint[];   -- (the old input's tasks, which leave their time series)
    relinked bigint[];    -- (the tasks that waited for a processed old one, linked to the task before it)
BEGIN
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The series locks of its tasks, and of the series the corrected input goes to, before any row
    -- (the order the INSERT of inputs and a retry take them in).
    FOR series IN
        SELECT DISTINCT t.routine, x.tile
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        CROSS JOIN LATERAL (VALUES (was.tile), (coalesce(correct_input.tile, was.tile))) x(tile)
        WHERE t.input_id = was.id AND x.tile IS NOT NULL
        ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
    END LOOP;
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id FOR UPDATE;
    IF was.superseded_by IS NOT NULL THEN
        RAISE EXCEPTION 'input % was corrected already: input % replaces it', was.id, was.superseded_by
            USING ERRCODE = 'check_violation',
                  HINT = format('correct input %s instead: SELECT hrwsi.correct_input(%s, ...)', was.superseded_by,
                                was.superseded_by);
    END IF;
    -- What a data engineer may not insert is not made by a correction either (the function runs as its
    -- owner; the column grants keep them from setting source, product_id and campaign_id).
    IF was.campaign_id IS NOT NULL THEN
        RAISE EXCEPTION 'input % is reprocessing campaign %''s: it is not corrected', was.id, was.campaign_id
            USING ERRCODE = 'check_violation',
                  HINT = 'correct the production input it was chained from, then reprocess again (`hrwsi reprocess`)';
    END IF;
    IF was.source = 'multi_input' THEN
        RAISE EXCEPTION 'input % is a multi-input group (%): it is not corrected', was.id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The harvester makes a group from its members (`hrwsi groups` lists them); a copy would have none.',
                  HINT = 'correct the members'' inputs or products; to drop the group''s task: `hrwsi cancel TASK`';
    END IF;
    IF was.product_id IS NOT NULL AND correct_input.input_path IS DISTINCT FROM was.input_path
       AND correct_input.input_path IS NOT NULL THEN
        RAISE EXCEPTION 'input % was chained from product %: its path is the product''s, %', was.id, was.product_id,
                        was.input_path
            USING ERRCODE = 'check_violation',
                  HINT = 'correct its tile or times without input_path => ..., or insert an input of the other path';
    END IF;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.input_id = was.id ORDER BY t.id FOR UPDATE;
    SELECT t.id, t.routine, t.state, j.backend_job_id, j.state AS job_state INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE t.input_id = was.id AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %) made from it is %', was.id, busy.id,
                        busy.routine, busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                                         THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                                         ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = 'The corrected input''s task would run beside the attempt made from the old input.',
                  HINT = format('wait until it ends (`hrwsi task show %s`), or cancel it (`hrwsi cancel %s`) and wait until '
                                'its job has stopped; then correct the input again', busy.id, busy.id);
    END IF;
    IF (correct_input.tile IS NULL OR correct_input.tile = was.tile)
       AND (correct_input.measured_at IS NULL OR correct_input.measured_at = was.measured_at)
       AND (correct_input.published_at IS NULL OR correct_input.published_at = was.published_at)
       AND (correct_input.lane IS NULL OR correct_input.lane = was.lane)
       AND (correct_input.input_path IS NULL OR correct_input.input_path = was.input_path)
       AND (correct_input.mission IS NULL OR correct_input.mission = was.mission)
       AND (correct_input.scene_id IS NULL OR correct_input.scene_id = was.scene_id) THEN
        RAISE EXCEPTION 'input %: nothing to correct (every value given is its own)', was.id
            USING ERRCODE = 'check_violation',
                  HINT = 'name what changes: SELECT hrwsi.correct_input(id, tile => ''32TLR'', measured_at => ''...Z'')';
    END IF;
    new_id := nextval(pg_get_serial_sequence('hrwsi.input', 'id'));
    SELECT coalesce(max(a.id), 0) INTO alerted FROM hrwsi.alert a;
    -- Its open tasks are cancelled (a running one was refused above), saying why.
    WITH open AS (
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.input_id = was.id AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled', state_reason = format('its input %s was corrected: input %s replaces it', was.id, new_id)
        FROM open WHERE t.id = open.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM done;
    SELECT coalesce(array_agg(t.id), '{}') INTO dependents FROM hrwsi.processing_task t WHERE t.depends_on = ANY (cancelled);
    PERFORM hrwsi.give_back_taken_deadlines(cancelled);
    -- Its tasks leave their time series before the corrected input's task is linked into one.
    WITH gone AS (
        UPDATE hrwsi.processing_task t SET series_tile = NULL, series_at = NULL
        WHERE t.input_id = was.id AND t.series_tile IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO old_tasks FROM gone;
    UPDATE hrwsi.input SET superseded_by = new_id WHERE id = was.id;
    INSERT INTO hrwsi.input (id, processing_condition, input_path, tile, mission, measured_at, published_at, source,
                             product_id, scene_id, lane, campaign_id)
    OVERRIDING SYSTEM VALUE
    VALUES (new_id, was.processing_condition, coalesce(correct_input.input_path, was.input_path),
            coalesce(correct_input.tile, was.tile), coalesce(correct_input.mission, was.mission),
            coalesce(correct_input.measured_at, was.measured_at), coalesce(correct_input.published_at, was.published_at),
            was.source, was.product_id,
            -- (a scene id the old path gave follows a new path)
            CASE WHEN correct_input.scene_id IS NOT NULL THEN correct_input.scene_id
                 WHEN correct_input.input_path IS NOT NULL AND was.scene_id = hrwsi.scene_id_of(was.input_path)
                 THEN hrwsi.scene_id_of(correct_input.input_path)
                 ELSE was.scene_id END,
            coalesce(correct_input.lane, was.lane), was.campaign_id);
    -- A task of its time series still waiting for a cancelled one (the corrected input went elsewhere in
    -- time or tile) waits for the task before it now, as a retry links it: else blocked for an operator.
    FOR waiting IN
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state_reason = format('relinked: the task it waited for was cancelled by the correction of input %s', was.id)
        WHERE id = waiting AND state = 'pending';
    END LOOP;
    -- A task that has not started and still waits for a processed old task (the corrected input's task
    -- did not take its place) waits for the task before it in its series now, as a new task there would
    -- (a held or blocked one takes it when it is released or retried), and passes its priority and deadline
    -- down to it at once, as a retried one does (migration 0086).
    WITH relink AS (
        SELECT t.id, p.id AS previous, p.state AS previous_state
        FROM hrwsi.processing_task t LEFT JOIN LATERAL (
            SELECT x.id, x.state FROM hrwsi.processing_task x
            WHERE x.routine = t.routine AND x.series_tile = t.series_tile AND x.state <> 'cancelled'
              AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (x.series_at, x.id) < (t.series_at, t.id)
            ORDER BY x.series_at DESC, x.id DESC LIMIT 1) p ON true
        WHERE t.depends_on = ANY (old_tasks) AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
    ), moved AS (
        UPDATE hrwsi.processing_task t
        SET depends_on = r.previous,
            state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked' ELSE 'pending' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                WHEN r.previous_state IN ('terminated', 'blocked')
                                THEN format('relinked by the correction of input %s: waits for task %s, which is %s '
                                            '(`hrwsi task show %s` says why)', was.id, r.previous, r.previous_state, r.previous)
                                ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                            'corrects', was.id, new_id) END
        FROM relink r WHERE t.id = r.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO relinked FROM moved m;
    PERFORM hrwsi.pass_deadlines_down(relinked);
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    RETURN new_id;
END $$;
