-- hrwsi schema, version 96: a task's history ends on the state it is in when its failure holds its routine.
--
-- - The failure policy holds a routine (its back-fill, its campaign) from the trigger of the outcome writer's
--   job UPDATE (hrwsi.record_outcomes), which fires before the same statement's task trigger writes the
--   failed attempt's row: the hold's trigger held the task the statement had just sent back to pending, and
--   its history said "on_hold", then "pending - attempt 1 internal_error" last, of a task on hold (found by
--   review). The holds leave out a task whose history lags behind it (changed in this transaction, its last
--   row of another state); hrwsi.record_outcomes holds it in its next statement, after that row, as it holds
--   any failed attempt of a held routine. Nothing more for the claim or for the outcome writer: the look-up
--   is made on a hold alone, for the tasks changed in the transaction.
-- - hrwsi.retry_task refuses a task made down a chain from the products of a corrected input's tasks (which
--   hrwsi.correct_input cancelled, migration 0094), naming the correction: retried, it ran from the old
--   version's product again.

CREATE OR REPLACE FUNCTION hrwsi.hold_routine_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A routine put on hold: its waiting tasks are held too, and ops are told.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE hrwsi.processing_task t SET state = 'on_hold', state_reason = 'routine on hold: ' || NEW.hold_reason
        WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('routine_on_hold', format('hrwsi: routine %s is on hold', NEW.name),
                format('Routine %s was put on hold: %s. Its new tasks wait until an operator runs '
                       '`hrwsi release %s`.', NEW.name, coalesce(NEW.hold_reason, 'by an operator'), NEW.name),
                NEW.name);
    END IF;
    RETURN NULL;
END $$;

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
    INSERT INTO hrwsi.alert (kind, subject, body, routine)
    VALUES ('routine_on_hold', format('hrwsi: the back-fill of routine %s is on hold', NEW.name),
            format('The back-fill of routine %s (its tasks in the archive lane) was put on hold: %s. %s waiting '
                   'task(s) held, and its new back-fill tasks will be; its near-real-time work goes on. Fix the '
                   'cause, then `hrwsi release %s`.', NEW.name, NEW.backfill_hold_reason, held, NEW.name),
            NEW.name);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.hold_campaign_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A campaign put on hold: its waiting tasks are held too, and ops are told; production goes on.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        UPDATE hrwsi.processing_task t
        SET state = 'on_hold', state_reason = format('campaign %s on hold: %s', NEW.id, NEW.hold_reason)
        WHERE t.campaign_id = NEW.id AND t.state IN ('pending', 'planned')
          -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0096)
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('campaign_on_hold', format('hrwsi: campaign %s (routine %s) is on hold', NEW.id, NEW.routine),
                format('Reprocessing campaign %s of routine %s was put on hold: %s. Its waiting tasks are held; the '
                       'production of routine %s goes on. Fix the cause, then run `hrwsi campaigns --release %s`, '
                       'or end it with `hrwsi campaigns --cancel %s`.', NEW.id, NEW.routine,
                       coalesce(NEW.hold_reason, 'by an operator'), NEW.routine, NEW.id, NEW.id),
                NEW.routine);
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
    -- (nor a task made down a chain from the products of such an input's tasks, which the correction cancelled:
    -- retried, it ran from the old version's product again, beside the corrected input's chain; migration 0096)
    WITH RECURSIVE up(input_id) AS (
        SELECT o.input_id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
        JOIN hrwsi.product p ON p.id = i.product_id JOIN hrwsi.processing_task o ON o.id = p.task_id
        WHERE t.id = task
        UNION
        SELECT o.input_id FROM up u JOIN hrwsi.input i ON i.id = u.input_id
        JOIN hrwsi.product p ON p.id = i.product_id JOIN hrwsi.processing_task o ON o.id = p.task_id
    )
    SELECT format('task %s was made down a chain from the products of input %s, which input %s corrects', task, i.id,
                  i.superseded_by) INTO refused
    FROM up u JOIN hrwsi.input i ON i.id = u.input_id
    WHERE i.superseded_by IS NOT NULL ORDER BY i.id LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'the corrected input''s products chain anew and make this step''s task (`hrwsi tasks` lists it)';
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
    -- (an operator's retry is a fresh start, its failures and losses counted from zero: the worker its last
    -- attempt could not be placed on is avoided no more, migration 0089. Nomad's reason, a drained node or
    -- another team's job on it, was true then, minutes or days before; and the operator who wants a worker
    -- avoided sets it inactive (worker.active), which every attempt avoids. It was kept until an attempt ran.)
    -- (and it starts from the urgency it is owed now, its own, taking again only from the tasks that still wait for it
    -- (the trigger's step for tasks pending again, and the pass below): what it took before it ended it kept, from a
    -- task released since to run without it too, and it was planned at that task's urgency; migration 0095, found by
    -- review. The give-back's own rule, hrwsi.give_back_taken_deadlines)
    UPDATE hrwsi.processing_task t
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL, avoid_worker = NULL,
        deadline_at = CASE WHEN t.deadline_inherited_from IS NOT NULL THEN t.own_deadline_at ELSE t.deadline_at END,
        own_deadline_at = NULL, deadline_inherited_from = NULL, priority_inherited_from = NULL,
        priority = CASE WHEN t.priority_inherited_from IS NOT NULL OR t.deadline_inherited_from IS NOT NULL
                        THEN (SELECT CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                          THEN least(l.priority, 0) ELSE l.priority END
                              FROM hrwsi.lane l WHERE l.name = t.lane)
                        ELSE t.priority END,
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
