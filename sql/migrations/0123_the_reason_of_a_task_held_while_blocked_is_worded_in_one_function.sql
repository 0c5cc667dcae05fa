-- hrwsi schema, version 123: the reason of a task an operator held while it was blocked, once its wait ends, is worded in one function, hrwsi.held_while_blocked_reason(), which the seven functions that end a blocked task's wait call.
--
-- Migration 0119 re-created these seven functions whole to change that one sentence, which stood in eight places
-- (found by review). The functions below are those of migration 0119 with the sentence's literal alone replaced by
-- the call (an IMMUTABLE function of no argument: the planner folds it to the same constant), so nothing they do
-- changes; a later change of the words is this one function.

CREATE FUNCTION hrwsi.held_while_blocked_reason() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'held by an operator, its hold kept while it was blocked: ';
REVOKE EXECUTE ON FUNCTION hrwsi.held_while_blocked_reason() FROM PUBLIC;

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
        SELECT t.id, t.state AS old_state, c.id AS cancelled, p.id AS previous, p.state AS previous_state,
               CASE WHEN t.state = 'blocked' THEN hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) END AS group_hold
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
            -- (a blocked one that runs now is held again if an operator held it before it was blocked, or with its
            -- routine, campaign or back-fill if that is held: migration 0095; a held one behind a task that cannot
            -- run is blocked, an operator's hold of it kept to hold it again when its wait ends, as the end of the
            -- task it waits for blocks it: migration 0098, found by review. It stayed held, its wait never decided
            -- again, and was pending once released, behind a task that could not run)
            state = CASE WHEN n.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN t.state = 'blocked' AND (t.held_while_blocked OR n.group_hold IS NOT NULL) THEN 'on_hold'
                         WHEN t.state = 'blocked' THEN 'pending' ELSE t.state END,
            held_while_blocked = CASE WHEN NOT coalesce(n.previous_state IN ('terminated', 'blocked'), false) THEN false
                                      WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                      ELSE t.held_while_blocked END,
            worker = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                                 ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                               ELSE t.planned_end END,
            state_reason = CASE WHEN t.state <> 'blocked' OR n.previous_state IN ('terminated', 'blocked') THEN ''
                                WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                WHEN n.group_hold IS NOT NULL THEN n.group_hold || '; ' ELSE '' END || CASE
                WHEN t.state = 'on_hold' AND NOT coalesce(n.previous_state IN ('terminated', 'blocked'), false)
                THEN t.state_reason
                WHEN n.previous IS NULL THEN
                    format('task %s before it in its time series was cancelled: it is the first of its series now, and '
                           'runs without a previous product', n.cancelled)
                WHEN n.previous_state = 'terminated' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which ended terminated; `hrwsi retry %s` runs that task again, `hrwsi release %s` '
                           'runs this task without it', n.cancelled, n.previous, n.previous, t.id)
                WHEN n.previous_state = 'blocked' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which has to run before it (`hrwsi task show %s` says what that task waits for): '
                           'it runs once that task has run', n.cancelled, n.previous, n.previous)
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

CREATE OR REPLACE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on SET jit = off AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state ...
    progress json;         -- ... but those of work under way (hrwsi.state_is_under_way), told apart
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    upstream bigint[];     -- (of an UPDATE) tasks upstream of a time series that ended ...
    reopened bigint[];     -- ... or were retried from their end
    cancelled bigint[];    -- (of an UPDATE) tasks cancelled ...
    lenders bigint[];      -- ... or held: they lend no priority nor deadline (migration 0090)
    finished boolean;      -- tasks ended, were retried from their end, or moved once finished (migration 0105)
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('hrwsi.in_dispatch_claim', true) = 'on' THEN
        RETURN NULL;  -- hrwsi.dispatch's claim: it writes all of this itself, in its own statement
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) FILTER (WHERE NOT hrwsi.state_is_under_way(state)),
               json_object_agg(state, n) FILTER (WHERE hrwsi.state_is_under_way(state)),
               bool_or(hrwsi.task_state_is_final(state))
        INTO counts, progress, finished
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
        SELECT array_agg(DISTINCT worker) INTO named_workers FROM new_rows WHERE worker IS NOT NULL;
        -- (the finished tasks' counts, hrwsi.finished_task_count: migration 0105; a task is created pending, so
        -- this is a statement more only for tasks written finished, a back-fill of history)
        IF finished THEN
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT routine, lane, state, count(*) FROM new_rows WHERE hrwsi.task_state_is_final(state)
            GROUP BY routine, lane, state;
        END IF;
    ELSE
        -- The history, the counts and the workers named from one join of the transition tables.
        -- (and whether the finished tasks' counts change: a task that ends, is retried from its end, or is moved to
        -- another routine or lane once finished; migration 0105)
        WITH changed AS MATERIALIZED (
            SELECT n.id, n.state, n.state_reason, n.attempts, n.worker,
                   n.state IS DISTINCT FROM o.state AS state_changed,
                   n.worker IS DISTINCT FROM o.worker AS worker_changed,
                   (n.state IS DISTINCT FROM o.state
                    AND (hrwsi.task_state_is_final(n.state) OR hrwsi.task_state_is_final(o.state)))
                   OR (hrwsi.task_state_is_final(n.state) AND (n.routine, n.lane) IS DISTINCT FROM (o.routine, o.lane))
                       AS finished_changed
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker
               OR (hrwsi.task_state_is_final(n.state) AND (n.routine, n.lane) IS DISTINCT FROM (o.routine, o.lane))
        ), event AS (
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT id, state, state_reason, attempts, worker FROM changed WHERE state_changed OR worker_changed
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
               (SELECT n.workers FROM named n), (SELECT count(*) FROM locked_workers),
               (SELECT bool_or(c.finished_changed) FROM changed c)
        INTO counts, progress, new_states, named_workers, locked, finished;
        -- The finished tasks' counts (migration 0105), read again from the transition tables only when they change:
        -- a statement that moves work along (dispatched, running, planned again) pays the flag above alone.
        IF finished THEN
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT f.routine, f.lane, f.state, sum(f.n)
            FROM new_rows n JOIN old_rows o USING (id)
            CROSS JOIN LATERAL (VALUES (o.routine, o.lane, o.state, -1), (n.routine, n.lane, n.state, 1))
                f (routine, lane, state, n)
            WHERE (n.state, n.routine, n.lane) IS DISTINCT FROM (o.state, o.routine, o.lane)
              AND hrwsi.task_state_is_final(f.state)
            GROUP BY f.routine, f.lane, f.state HAVING sum(f.n) <> 0;
        END IF;
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
            OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending', 'blocked', 'on_hold'] THEN
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
    -- A task of a time series cancelled: the task after it takes the one before it as its own (migration
    -- 0084) ... and the tasks that took the cancelled ones' priority or deadline give them back (migration 0089:
    -- whoever cancels, a campaign's cancel of its tasks or an UPDATE by hand too, not hrwsi.cancel_task and
    -- hrwsi.correct_input alone: the tasks before a fresh scene cancelled otherwise kept its priority for good,
    -- served ahead of near-real-time work; found by review). After the skip, as those two call them: the tasks
    -- after a cancelled one wait for the task before it by then, and pass their own down at once. Each task
    -- that took one is found by key (the partial indexes of the names): none found, nothing more is read.
    -- A task held (by hand, with its routine, its campaign or its back-fill) gives back in the same step what
    -- it lent (migration 0090): it lends nothing while held (hrwsi.pass_deadlines_down), and the tasks before
    -- an urgent scene an operator held stayed raised, served ahead of near-real-time work that could run;
    -- released, it lends again at once (below, with the tasks pending again). The only caller of the
    -- give-back: hrwsi.cancel_task and hrwsi.correct_input called it again after their UPDATE, which found
    -- nothing left, two probes of the indexes for nothing.
    IF new_states && ARRAY['cancelled', 'on_hold'] THEN
        -- (a task held in the middle of a chain takes back too what passed through it, from the tasks before it:
        -- the task it took that from waits behind it, and cannot run before it is released, so that the tasks
        -- before it had no reason to be urgent on its behalf; they record only whose urgency it was, so that
        -- is given back from all who took it, and passed down again as far as the held task: migration 0091,
        -- found by review; read from the rows at hand, no statement more)
        SELECT array_agg(d.id) FILTER (WHERE d.state = 'cancelled'),
               array_agg(d.id)
               || array_agg(d.deadline_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.deadline_inherited_from IS NOT NULL)
               || array_agg(d.priority_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.priority_inherited_from IS NOT NULL)
        INTO cancelled, lenders
        FROM new_rows d JOIN old_rows o USING (id)
        WHERE d.state IN ('cancelled', 'on_hold') AND o.state <> d.state;
        IF 'cancelled' = ANY (new_states) THEN
            PERFORM hrwsi.skip_cancelled_tasks(ARRAY(SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
                                                     WHERE d.state = 'cancelled' AND o.state <> 'cancelled'
                                                       AND d.series_tile IS NOT NULL));
        END IF;
        IF lenders IS NOT NULL THEN
            PERFORM hrwsi.give_back_taken_deadlines(lenders);
        END IF;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents (a time series' task that
    -- did not take the one before a cancelled task: its series' lock was busy; the orchestrator's sweep,
    -- hrwsi.recheck_upstream_waits, links it once the lock is free: migration 0090) ...
    IF new_states && ARRAY['terminated', 'cancelled'] THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    -- (an operator's hold of it kept, to hold it again when its wait ends: migration 0095)
                    held_while_blocked = t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason),
                    -- (a task of a time series whose previous task was cancelled while the series' lock was busy,
                    -- as the sweep finds it: the sweep links it to the task before the cancelled one, and ops are
                    -- not alerted; its reason offered a retry of the cancelled task, or a release that would run
                    -- it out of sensing order, until the sweep: migration 0091, found by review)
                    state_reason = CASE WHEN d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                                             AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id
                                        THEN format('task %s before it in its time series was cancelled while another '
                                                    'transaction held the series'' lock: the orchestrator''s sweep links '
                                                    'it to the task before that one within a minute', d.id)
                                        ELSE format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                                    'dependency again, `hrwsi release %s` runs this task without it',
                                                    d.id, d.state, d.id, t.id) END
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason,
                          d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                          AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id AS swept
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked WHERE swept IS NOT TRUE $q$;
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
            ), locked AS MATERIALIZED (
                -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (the reason names the task it waits for directly, and the root cause: the task that
            -- ended, behind which the chain waits; it named the chain's first blocked task alone, so
            -- that a task three links down named a task it did not wait for: migration 0073. What it waits
            -- for, not the state of those tasks, which they outgrow while the reason stays, "which is blocked"
            -- of a task cancelled, held or moved since: migration 0098)
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                held_while_blocked = t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason),
                state_reason = CASE
                    -- (behind one the sweep links past a task cancelled while its series' lock was busy, above)
                    WHEN cause.state = 'cancelled' AND r.series_tile = cause.series_tile AND r.routine = cause.routine
                         AND r.campaign_id IS NOT DISTINCT FROM cause.campaign_id THEN
                        format('waits for task %s, which waits behind task %s, cancelled while its time series'' '
                               'lock was busy: the orchestrator''s sweep links it past that task within a minute, and '
                               'the tasks after it then run in order', t.depends_on, cause.id)
                    WHEN cause.id IS NOT NULL THEN
                        format('waits for task %s, which waits behind task %s, which ended %s: `hrwsi retry %s` '
                               'runs that task again, and the tasks after it then run in order', t.depends_on,
                               cause.id, cause.state, cause.id)
                    WHEN t.depends_on = a.root THEN
                        format('waits for task %s, which has to run before it (`hrwsi task show %s` says what that '
                               'task waits for): it runs once that task has run', a.root, a.root)
                    ELSE format('waits for task %s, which waits behind task %s (`hrwsi task show %s` says what that '
                                'task waits for): it runs once those have run', t.depends_on, a.root, a.root) END
            FROM after_it a JOIN processing_task r ON r.id = a.root
            LEFT JOIN processing_task cause ON cause.id = r.depends_on AND cause.state IN ('terminated', 'cancelled')
            WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
    END IF;
    -- ... and, retried, released or linked to another task (a late scene, a cancelled one skipped), unblocks
    -- them and the tasks after them in their chain, saying which of these happened (migration 0085: "its
    -- dependency was retried or released" was said of a task that had been neither, but now waited for
    -- another task, or for none: found by review).
    -- (one look at the old rows for the two steps below: a statement of the outcome writer that retries
    -- failed tasks pays no more than before migration 0089)
    -- (and a blocked task held again as its wait ends, migration 0095: the tasks after it are no longer blocked)
    IF new_states && ARRAY['pending', 'on_hold']
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked', 'on_hold')) THEN
      IF EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root, what, hold) AS (
                SELECT t.id, d.id,
                       CASE WHEN o.state IN ('terminated', 'cancelled') THEN 'was retried'
                            WHEN d.dependency_waived AND NOT o.dependency_waived
                            THEN 'was released by an operator, to run without the task it waited for'
                            WHEN d.depends_on IS NULL AND o.depends_on IS NOT NULL THEN 'waits for no task now'
                            WHEN d.depends_on IS DISTINCT FROM o.depends_on THEN format('waits for task %s now', d.depends_on)
                            ELSE 'is no longer blocked' END,
                       hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
                FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE (d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                       OR d.state = 'on_hold' AND o.state = 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending, or held: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = d.state)
                UNION ALL
                SELECT t.id, a.root, a.what, hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
                FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            ), locked AS MATERIALIZED (
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (one that still waits for upstream work says so too: migration 0077; one an operator held before it
            -- was blocked, or whose routine, campaign or back-fill is held, is held, as a new task of it would be, and
            -- says so first: it was pending, its hold lost, or shown pending while no new task was; migration 0095)
            UPDATE processing_task t
            SET state = CASE WHEN t.held_while_blocked OR a.hold IS NOT NULL THEN 'on_hold' ELSE 'pending' END,
                held_while_blocked = false,
                state_reason = CASE WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                    WHEN a.hold IS NOT NULL THEN a.hold || '; ' ELSE '' END
                    || CASE WHEN t.depends_on = a.root THEN format('its dependency, task %s, %s', a.root, a.what)
                                    ELSE format('its dependency, task %s, is no longer blocked: task %s before it %s',
                                                t.depends_on, a.root, a.what) END
                    || CASE WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                            THEN coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '') ELSE '' END
            FROM after_it a WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
      END IF;
      -- A task that waits for a task now pending again (released from a hold, its own or its routine's, its
      -- campaign's or its back-fill's; released or unblocked from blocked; retried) passes its priority and
      -- deadline down to it at once (migration 0089): held or blocked, that task took nothing, and its release
      -- passed nothing down until the series' next INSERT, a near-real-time scene waiting behind archive work
      -- served at the archive lane's priority meanwhile (found by review). The tasks this unblocked, above, do
      -- the same for the tasks after them in this trigger's call for their own UPDATE. (Not a task released to
      -- run without it, dependency_waived: it waits for it no more; hrwsi.pass_deadlines_down's rule.) A task
      -- released from a hold lends its own again, to the tasks it waits for (migration 0090: held, it gave back).
      EXECUTE $q$
          SELECT hrwsi.pass_deadlines_down(ARRAY(
              SELECT t.id FROM new_rows d JOIN old_rows o USING (id) JOIN processing_task t ON t.depends_on = d.id
              WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked', 'on_hold')
                AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              UNION ALL
              SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
              WHERE d.state = 'pending' AND o.state = 'on_hold' AND d.depends_on IS NOT NULL)) $q$;
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
    PERFORM 1 FROM processing_task t
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
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
    -- (a blocked one held by an operator before it was blocked, or whose routine, campaign or back-fill is held, is
    -- held, as every step that unblocks holds it: migration 0095, found by review)
    UPDATE processing_task t
    SET dependency_waived = true,
        waits_for_upstream = NULL,  -- (nor for an earlier scene's upstream work: migration 0072)
        state = CASE WHEN t.state = 'blocked'
                          AND (t.held_while_blocked OR hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) IS NOT NULL)
                     THEN 'on_hold'
                     WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
        held_while_blocked = false,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                      WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                      ELSE coalesce(hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) || '; ', '')
                                 END
                                 || format('routine %s is no longer a time series (sequential_per_tile off): it no '
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
    keys integer[];        -- the keys of the series' locks it takes (hrwsi.series_lock_key), in order
    keys_now integer[];
    key integer;
    series_now text;
    routine_was text;
    routine_now text;
    refused text;
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which holds it once retried)
    lift text;
    instead text;     -- (a refusal's hint: what does the task's work instead, said for the case refused)
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
    -- (a campaign's composite that read a member of the old version of a corrected input, which the correction
    -- cancelled: retried, it read that member again; migration 0102, found by review. A member is of the old version
    -- when it is a product the correction outdated, or the corrected input itself, corrected after the task was made)
    SELECT format('task %s, a composite of campaign %s, was made from member %s of input %s, which input %s corrects',
                  t.id, t.campaign_id, c.member_path, o.id, o.superseded_by) INTO refused
    FROM hrwsi.processing_task t JOIN hrwsi.multi_input_campaign_member c ON c.task_id = t.id
    CROSS JOIN LATERAL (
        SELECT x.id, x.superseded_by FROM hrwsi.product p
        JOIN hrwsi.input x ON x.superseded_by = p.outdated_by AND x.source <> 'multi_input'
        WHERE p.path = c.member_path
        UNION ALL
        -- (the corrected input itself, as the correction marked the member: migration 0104. It was told by creation
        -- times, each its transaction's start: a correction begun before the campaign was started seemed to follow it)
        SELECT x.id, x.superseded_by FROM hrwsi.input x
        WHERE x.superseded_by = c.outdated_by AND x.input_path = c.member_path AND x.product_id IS NULL
          AND x.campaign_id IS NULL AND x.source <> 'multi_input'
        ORDER BY 1 LIMIT 1) o
    WHERE t.id = task ORDER BY c.member_path LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'a campaign makes the composite anew from the members there are now: start it again '
                         '(`hrwsi reprocess`, again => true)';
    END IF;
    -- (a task of an input a correction superseded would run the wrong input again: migration 0083. A multi-input
    -- group's input is superseded when a member's input is corrected, and the harvester makes the group anew: the
    -- answer says so, and which task does its work now; it named the group "input G, which input N corrects",
    -- N being the corrected member's input, found by review: migration 0102)
    SELECT CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN format('task %s ran multi-input group %s (input %s), which was made anew when input %s was corrected '
                            '(input %s replaces it)%s', t.id, i.input_path, i.id, x.id, i.superseded_by,
                            CASE WHEN n.task_id IS NOT NULL
                                 THEN format(': task %s, of the new group (input %s), does its work', n.task_id, n.input_id)
                                 ELSE ': the harvester makes the new group once it is complete, and its task does the '
                                      'work (`hrwsi groups` lists it)' END)
                -- (a campaign's: the corrected input's task that runs instead is production's, not the campaign's
                -- version; migration 0104, found by review: it read "the corrected input's task runs instead")
                WHEN t.campaign_id IS NOT NULL AND i.source <> 'multi_input'
                THEN format('task %s, of campaign %s, was made from input %s, which input %s corrects (its production '
                            'task runs the corrected input, and the campaign does not: `hrwsi reprocess` starts a '
                            'campaign that does)', t.id, t.campaign_id, i.id, i.superseded_by)
                ELSE format('task %s was made from input %s, which input %s corrects', t.id, i.id, i.superseded_by) END,
           -- (the hint said "the corrected input's task runs instead" after each, a campaign's too, whose campaign does
           -- not run it; migration 0107, found by review)
           CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN 'the new group''s task does its work (`hrwsi groups` lists the groups, `hrwsi tasks` their tasks)'
                WHEN t.campaign_id IS NOT NULL AND i.source = 'multi_input'
                THEN 'a campaign makes the composite anew from the members there are now: start it again '
                     '(`hrwsi reprocess`, again => true)'
                WHEN t.campaign_id IS NOT NULL
                THEN 'the campaign does not run the corrected input: `hrwsi reprocess` (again => true) starts a campaign '
                     'that does, once production has processed it'
                ELSE 'the corrected input''s task runs instead (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON true
    LEFT JOIN LATERAL (SELECT g.id AS input_id, k.id AS task_id FROM hrwsi.input g
                       JOIN hrwsi.processing_task k ON k.input_id = g.id AND k.campaign_id IS NULL
                       WHERE g.processing_condition = i.processing_condition AND g.input_path = i.input_path
                         AND g.superseded_by IS NULL
                       ORDER BY k.id DESC LIMIT 1) n ON i.source = 'multi_input'
    WHERE t.id = task AND i.superseded_by IS NOT NULL;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
    END IF;
    -- (nor a task made down a chain from the products of such an input's tasks, which the correction cancelled:
    -- retried, it ran from the old version's product again, beside the corrected input's chain; migration 0096)
    -- (retention cuts no link of the walk while the task retried is kept: its input stays while a task names it
    -- (refuse_removing_inputs_tasks_name), a product while an input was made from it (prune_products), and a task
    -- while it has a product (product_task_must_exist); checked by review for migration 0098)
    -- (up every way a task is made from a product, as the correction walks down, migration 0102: the product its input
    -- was chained from, the products its multi-input group, or its campaign's composite, read as members. It followed
    -- the chained inputs alone, and a task down a chain from a campaign's composite that read an outdated member was
    -- retried; one down from a group named the group as the input corrected; found by review)
    WITH RECURSIVE up(task_id) AS (
        SELECT task
        UNION
        SELECT o.task_id FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id
        CROSS JOIN LATERAL (
            SELECT p.task_id FROM hrwsi.input i JOIN hrwsi.product p ON p.id = i.product_id WHERE i.id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_member g JOIN hrwsi.product p ON p.path = g.member_path
            WHERE g.input_id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_campaign_member c JOIN hrwsi.product p ON p.path = c.member_path
            WHERE c.task_id = t.id) o
    )
    SELECT format('task %s was made down a chain from the products of input %s, which input %s corrects', task,
                  coalesce(x.id, i.id), i.superseded_by),
           -- (a campaign's task: its campaign does not chain the corrected input's products; migration 0107)
           CASE WHEN (SELECT k.campaign_id FROM hrwsi.processing_task k WHERE k.id = task) IS NOT NULL
                THEN 'the campaign does not redo it: `hrwsi reprocess` (again => true) starts a campaign that does, once '
                     'production has processed the corrected input'
                ELSE 'the corrected input''s products chain anew and make this step''s task (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON i.source = 'multi_input'
    WHERE u.task_id <> task AND i.superseded_by IS NOT NULL ORDER BY i.source = 'multi_input', i.id LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
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
    -- (an operator's retry lifts the task's own hold, kept through a block too: migration 0098)
    UPDATE hrwsi.processing_task t
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        held_while_blocked = false,
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
            ELSE format('retried by an operator; waits for task %s, which has to run before it (`hrwsi task show %s` '
                        'says what that task waits for): it runs once that task has run', previous, previous) END
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
            SELECT n.id, n.state AS old_state, me.state AS my_state,
                   CASE WHEN n.state = 'blocked' THEN hrwsi.hold_a_new_task_takes(n.routine, n.campaign_id, n.lane) END
                       AS group_hold
            FROM me CROSS JOIN LATERAL (
                SELECT n.id, n.state, n.depends_on, n.dependency_waived, n.routine, n.campaign_id, n.lane
                FROM hrwsi.processing_task n
                WHERE n.routine = me.routine AND n.series_tile = me.series_tile AND n.state <> 'cancelled'
                  AND n.campaign_id IS NOT DISTINCT FROM me.campaign_id AND (n.series_at, n.id) > (me.series_at, me.id)
                ORDER BY n.series_at, n.id LIMIT 1) n
            WHERE n.depends_on IS DISTINCT FROM task AND NOT n.dependency_waived
              AND n.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ), changed AS (
            -- (behind it blocked, a held one is blocked too, its own hold kept to hold it again when its wait ends, as
            -- the end of the task it waits for blocks it; and a blocked one whose wait ends is held again if an operator
            -- held it, or with its routine, campaign or back-fill: migration 0098, found by review. A held one stayed
            -- held behind a task that could not run, and was pending once released, its wait never decided again)
            UPDATE hrwsi.processing_task t
            SET depends_on = task,
                state = CASE WHEN x.my_state = 'blocked' THEN 'blocked' WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN t.state = 'blocked' AND (t.held_while_blocked OR x.group_hold IS NOT NULL) THEN 'on_hold'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = CASE WHEN x.my_state <> 'blocked' THEN false
                                          WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                          ELSE t.held_while_blocked END,
                worker = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN x.my_state = 'blocked'
                                    THEN format('waits for task %s, which has to run before it (`hrwsi task show %s` says '
                                                'what that task waits for): it runs once that task has run', task, task)
                                    WHEN t.state = 'on_hold' THEN t.state_reason
                                    ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                              WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                              ELSE coalesce(x.group_hold || '; ', '') END
                                         || format('task %s before it in its time series was retried: it runs after it', task)
                               END
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
    -- A task pending again whose routine, campaign or back-fill is on hold is held with it, as a new task of it is
    -- (migration 0098): the retry lifts its own hold only. It was pending, shown so while dispatch skipped it.
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task AND t.state = 'pending';
    IF group_hold IS NOT NULL THEN
        UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = group_hold || '; ' || state_reason
        WHERE id = task;
        RETURN format('task %s was %s; it is retried, but it is still held: %s', task, current, lift);
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
    was_held boolean;  -- (held by an operator before it was blocked: hrwsi.hold_is_the_tasks_own)
    new_id bigint;
    alerted bigint;       -- (the last alert before the cancellations)
    dependents bigint[];  -- (the tasks that waited for a cancelled one)
    old_tasks bigint[];   -- (the old input's tasks, which leave their time series)
    relinked bigint[];    -- (the tasks that waited for a processed old one, linked to the task before it)
    downstream bigint[];  -- (the tasks made down a chain from the products of its tasks)
    outdated text[];      -- (the paths of the old version: its products, those down its chain, the input itself)
BEGIN
    -- No chaining (nor group) runs while a correction does, nor a correction while one runs (migration 0097):
    -- a statement chaining a product of the old version while the walk below ran made a task from it that
    -- the walk had not seen, and the product, locked, was skipped (found by review). Taken first, before
    -- any series lock: chaining takes it first too, before the products and the series of their inputs.
    PERFORM pg_advisory_xact_lock(7250098, 1);
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The tasks made down a chain from the products of its tasks, step after step (migration 0094): their
    -- inputs were chained from products of the old version, and they ran from it, as did the steps after
    -- them, while the corrected input's task chains its own products anew (found by review). Every way a
    -- task is made from a product is followed (migration 0097): an input chained from it, a multi-input group
    -- it is a member of, a campaign's composite that reads it; and the groups the old input itself is a
    -- member of (one not chained from a product: its path is the member's). The walk followed the chained
    -- inputs only, and a group made from the old version's product kept its task (found by review).
    -- (one walk with `hrwsi retry --routine R`'s list of what it leaves out: hrwsi.tasks_down_a_chain, migration 0107)
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO downstream
    FROM hrwsi.tasks_down_a_chain(ARRAY[was.id]) b(id) JOIN hrwsi.processing_task t ON t.id = b.id
    WHERE t.input_id <> was.id;
    -- The series locks of its tasks, of theirs, and of the series the corrected input goes to, before any
    -- row (the order the INSERT of inputs and a retry take them in).
    FOR series IN
        SELECT t.routine, x.tile
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        CROSS JOIN LATERAL (VALUES (was.tile), (coalesce(correct_input.tile, was.tile))) x(tile)
        WHERE t.input_id = was.id AND x.tile IS NOT NULL
        UNION
        SELECT t.routine, t.series_tile FROM hrwsi.processing_task t
        WHERE t.id = ANY (downstream) AND t.series_tile IS NOT NULL
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
        RAISE EXCEPTION 'input % is reprocessing campaign %''s, not corrected itself: correct the production input '
                        'at the start of its chain (`hrwsi lineage %` shows it), which cancels the campaign''s tasks '
                        'made from it, then reprocess it again (`hrwsi reprocess`)', was.id, was.campaign_id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A campaign''s input is chained from a product the campaign made: the campaign makes it, '
                           'as the harvester makes a production one.';
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
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.input_id = was.id OR t.id = ANY (downstream) ORDER BY t.id FOR UPDATE;
    -- (how the task was made from it, said as it is: a group the old input itself is a member of, or a campaign's
    -- composite that reads it, was said made "down a chain, from its products"; migration 0102, found by review)
    SELECT t.id, t.routine, t.state, t.input_id, j.backend_job_id, j.state AS job_state,
           CASE WHEN t.input_id = was.id THEN 'own'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_member g
                                                        WHERE g.input_id = t.input_id AND g.member_path = was.input_path)
                THEN 'group'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member c
                                                        WHERE c.task_id = t.id AND c.member_path = was.input_path
                                                          AND c.outdated_by IS NULL)
                THEN 'composite'
                ELSE 'chain' END AS made
    INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.input_id <> was.id, t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %)% is %', was.id, busy.id, busy.routine,
                        CASE busy.made WHEN 'own' THEN ' made from it'
                                       WHEN 'group' THEN ', the task of a multi-input group it is a member of,'
                                       WHEN 'composite' THEN format(', a composite of campaign %s that reads it,',
                                                                    (SELECT t.campaign_id FROM hrwsi.processing_task t
                                                                     WHERE t.id = busy.id))
                                       ELSE ' made from it down a chain, from its products,' END,
                        busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                           THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                           ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = CASE busy.made
                                WHEN 'own' THEN 'The corrected input''s task would run beside the attempt made from the old input.'
                                WHEN 'group' THEN 'Its attempt reads the old input as a member of its group, which the '
                                                  'correction makes anew.'
                                WHEN 'composite' THEN 'Its attempt reads the old input as a member of its composite.'
                                ELSE 'Its attempt runs from the old input''s products, which the correction makes anew.' END,
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
    -- Its open tasks, and those made down a chain from their products, are cancelled (a running one was
    -- refused above), saying why.
    -- (a campaign's task is told that its campaign does not redo it: the corrected input's task, its chain and the group
    -- made anew are production's. It read as a production task's, "input N replaces it", "the group is made anew";
    -- migration 0104, found by review)
    WITH open AS (
        SELECT t.id, t.input_id, t.campaign_id, i.source FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled',
            state_reason = CASE WHEN open.campaign_id IS NOT NULL AND open.input_id = was.id
                                THEN format('its input %s was corrected (input %s replaces it): its production task runs '
                                            'the corrected input, and campaign %s does not; `hrwsi reprocess` starts a '
                                            'campaign that does', was.id, new_id, open.campaign_id)
                                WHEN open.campaign_id IS NOT NULL AND open.source = 'multi_input'
                                THEN format('a composite of campaign %s that read input %s or a product down its chain, '
                                            'which was corrected (input %s replaces it): the campaign does not make it '
                                            'anew; `hrwsi reprocess` starts a campaign that does, once production has '
                                            'processed the corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.campaign_id IS NOT NULL
                                THEN format('made down a chain in campaign %s from the products of input %s, which was '
                                            'corrected (input %s replaces it): the campaign does not redo it; `hrwsi '
                                            'reprocess` starts a campaign that does, once production has processed the '
                                            'corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.input_id = was.id
                                THEN format('its input %s was corrected: input %s replaces it', was.id, new_id)
                                WHEN open.source = 'multi_input'
                                THEN format('its multi-input group was made from input %s or down its chain, which was '
                                            'corrected: input %s replaces it, and the group is made anew', was.id, new_id)
                                ELSE format('made down a chain from the products of input %s, which was corrected: input %s '
                                            'replaces it, and its task''s products chain anew', was.id, new_id) END
        FROM open WHERE t.id = open.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM done;
    SELECT coalesce(array_agg(t.id), '{}') INTO dependents FROM hrwsi.processing_task t WHERE t.depends_on = ANY (cancelled);
    -- (the tasks that took a deadline or a priority from them gave it back: hrwsi.after_task_changes)
    -- Its tasks, and those down a chain, leave their time series before the corrected input's task is
    -- linked into one (and before the tasks its products chain anew are).
    WITH gone AS (
        UPDATE hrwsi.processing_task t SET series_tile = NULL, series_at = NULL
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.series_tile IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO old_tasks FROM gone;
    -- Their products not chained yet (a harvester stopped or behind) are not chained: made from the old
    -- version, they would start its chain again. None is being chained now (the lock taken first). All of
    -- them are outdated_by the corrected input (migration 0097): hrwsi.chain_missed_products chained one
    -- to a condition made active after the correction, and a group took one as a member (found by review).
    WITH old AS (
        SELECT x.id FROM hrwsi.product x JOIN hrwsi.processing_task t ON t.id = x.task_id
        WHERE t.input_id = was.id OR t.id = ANY (downstream)
        ORDER BY x.id FOR UPDATE OF x
    ), marked AS (
        UPDATE hrwsi.product p SET chained_at = coalesce(p.chained_at, now()), outdated_by = coalesce(p.outdated_by, new_id)
        FROM old WHERE p.id = old.id
        RETURNING p.path
    )
    SELECT coalesce(array_agg(m.path), '{}') INTO outdated FROM marked m;
    -- The members of campaigns' composites that are of the old version, the corrected input itself or a product marked
    -- above, are marked too (migration 0104): `hrwsi retry` of such a composite is refused. A composite made from then
    -- on reads the corrected version, never marked.
    UPDATE hrwsi.multi_input_campaign_member c SET outdated_by = new_id
    WHERE c.outdated_by IS NULL AND ((c.member_path = was.input_path AND was.product_id IS NULL) OR c.member_path = ANY (outdated));
    -- The multi-input groups made from them, or from the old input itself, are superseded too: the harvester
    -- makes each anew from the members it has then (a group's input is one per condition and path).
    UPDATE hrwsi.input g SET superseded_by = new_id
    WHERE g.source = 'multi_input' AND g.superseded_by IS NULL
      AND g.id IN (SELECT m.input_id FROM hrwsi.multi_input_member m
                   WHERE m.member_path = ANY (outdated) OR (m.member_path = was.input_path AND was.product_id IS NULL));
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
    -- (not an operator's retry of it: an operator's hold of it is kept, and it is held again once its wait ends, or
    -- stays marked held behind a task that cannot run; migration 0098: the retry's release of its own hold lost it)
    FOR waiting, was_held IN
        SELECT t.id, t.held_while_blocked FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state = CASE WHEN was_held AND state = 'pending' THEN 'on_hold' ELSE state END,
            held_while_blocked = was_held AND state = 'blocked',
            state_reason = CASE WHEN state = 'blocked' THEN state_reason
                                ELSE CASE WHEN was_held THEN hrwsi.held_while_blocked_reason()
                                          WHEN state = 'on_hold'
                                          THEN coalesce(hrwsi.hold_a_new_task_takes(routine, campaign_id, lane) || '; ', '')
                                          ELSE '' END
                                     || format('relinked: the task it waited for was cancelled by the correction of '
                                               'input %s', was.id) END
        WHERE id = waiting AND state IN ('pending', 'on_hold', 'blocked');
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
            -- (a held one behind a task that cannot run is blocked, an operator's hold of it kept: migration 0098)
            state = CASE WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'on_hold' THEN 'on_hold' ELSE 'pending' END,
            held_while_blocked = t.state = 'on_hold' AND coalesce(r.previous_state IN ('terminated', 'blocked'), false)
                                 AND hrwsi.hold_is_the_tasks_own(t.state_reason),
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- (what it waits for, not a state of that task, which outgrows the reason: migration 0098)
            state_reason = CASE WHEN r.previous_state = 'terminated'
                                THEN format('relinked by the correction of input %s: its dependency, task %s, ended '
                                            'terminated; `hrwsi retry %s` runs the dependency again, `hrwsi release %s` '
                                            'runs this task without it', was.id, r.previous, r.previous, t.id)
                                WHEN r.previous_state = 'blocked'
                                THEN format('relinked by the correction of input %s: waits for task %s, which has to run '
                                            'before it (`hrwsi task show %s` says what that task waits for)', was.id,
                                            r.previous, r.previous)
                                WHEN t.state = 'on_hold' THEN t.state_reason
                                ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                            'corrects', was.id, new_id) END
        FROM relink r WHERE t.id = r.id
        RETURNING t.id, t.routine, t.state, t.state_reason, r.previous_state
    ), alerted AS (
        -- (ops are told of a task it blocked behind a terminated one, as the other paths that block tell them:
        -- migration 0102, found by review)
        INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
        SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', m.id, m.routine), m.state_reason, m.id, m.routine
        FROM moved m WHERE m.previous_state = 'terminated' AND m.state = 'blocked'
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO relinked FROM moved m;
    PERFORM hrwsi.pass_deadlines_down(relinked);
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    -- (what a REPEATABLE READ transaction that waited for this correction locks, to learn that it came after its
    -- snapshot: hrwsi.see_the_corrections_before; migration 0104)
    UPDATE hrwsi.last_correction SET input_id = was.id, corrected_at = now();
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
    moved_ids bigint[];
    relinked bigint[];
    key integer;
    refused text;
    stay_under_way bigint;
    stay_campaign bigint;
    stay_made bigint;      -- (tasks made meanwhile on a tile whose series' locks were not taken: they stay)
    tiles text[] := '{}';  -- (the tiles whose series' locks are held)
    moved_reason text := format('moved from routine %s to routine %s by an operator', from_routine, to_routine);
BEGIN
    SELECT * INTO source FROM processing_routine r WHERE r.name = from_routine;
    SELECT * INTO target FROM processing_routine r WHERE r.name = to_routine FOR KEY SHARE;
    IF source.name IS NULL OR target.name IS NULL THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(CASE WHEN source.name IS NULL THEN from_routine ELSE to_routine END)
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
    -- The series' locks first, in the order of their keys, then the rows, as every holder of both: those of the
    -- tiles of the tasks it moves, in the series they leave and in the one they join, in one ordered pass
    -- (migration 0091). Only the series they joined were locked: an INSERT into the old routine's series of a
    -- tile, in flight during the move, linked its scene behind a task the move took away, and it stayed on the
    -- old routine waiting for a task of the new one (found by review). The tasks moved are those of the tiles
    -- locked here: a tile whose first task was made after this pass (its series' lock not taken) keeps its
    -- tasks on the old routine, and the answer says so (a second move takes them).
    tiles := ARRAY(SELECT DISTINCT t.series_tile FROM processing_task t
                   WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.series_tile IS NOT NULL
                     AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'));
    IF source.sequential_per_tile OR target.sequential_per_tile THEN
        FOR key IN
            SELECT DISTINCT k.key
            FROM unnest(tiles) x(tile)
            CROSS JOIN LATERAL (VALUES (hrwsi.series_lock_key(from_routine, x.tile)),
                                       (hrwsi.series_lock_key(to_routine, x.tile))) k(key)
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(7250010, key);
        END LOOP;
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
          AND (t.series_tile IS NULL OR t.series_tile = ANY (tiles))
        ORDER BY t.id  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        FOR UPDATE
    ), changed AS (
        UPDATE processing_task t
        SET routine = to_routine,
            state = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                         WHEN c.state = 'planned' THEN 'pending'
                         -- (or its old routine's back-fill: migration 0102, it stayed held by a hold of a routine
                         -- it had left, found by review; held again below if the new routine's back-fill is on hold)
                         WHEN c.state = 'on_hold' AND NOT target.on_hold
                              AND (c.state_reason LIKE 'routine on hold: %'
                                   OR c.state_reason LIKE format('back-fill of routine %s on hold: %%', from_routine))
                             THEN 'pending'
                         -- (held again if an operator held it before it was blocked: migration 0095)
                         WHEN c.state = 'blocked' AND NOT target.sequential_per_tile AND NOT t.dependency_waived
                             THEN CASE WHEN t.held_while_blocked THEN 'on_hold' ELSE 'pending' END
                         ELSE c.state END,
            held_while_blocked = t.held_while_blocked AND (target.sequential_per_tile OR t.dependency_waived),
            -- (out of its series, if the target is no time series: migration 0090)
            series_tile = CASE WHEN target.sequential_per_tile THEN t.series_tile END,
            series_at = CASE WHEN target.sequential_per_tile THEN t.series_at END,
            dependency_waived = t.dependency_waived OR (NOT target.sequential_per_tile AND t.depends_on IS NOT NULL),
            waits_for_upstream = CASE WHEN target.sequential_per_tile THEN t.waits_for_upstream END,
            worker = CASE WHEN c.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold
                                    THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                                WHEN c.state = 'on_hold' AND (target.on_hold OR (c.state_reason NOT LIKE 'routine on hold: %'
                                                                                 AND c.state_reason NOT LIKE
                                                                                     format('back-fill of routine %s on hold: %%',
                                                                                            from_routine)))
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN NOT target.sequential_per_tile AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
                                    THEN CASE WHEN c.state = 'blocked' AND t.held_while_blocked
                                              THEN hrwsi.held_while_blocked_reason() ELSE '' END
                                         || moved_reason || format('; routine %s is not a time series: it no longer waits '
                                                                   'for task %s', to_routine, t.depends_on)
                                WHEN c.state = 'blocked' THEN moved_reason || '; ' || c.state_reason
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                     AND target.sequential_per_tile
                                    THEN moved_reason || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE moved_reason END
        FROM chosen c
        WHERE t.id = c.id
        RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, c.state AS old_state
    ), history AS (
        -- (with the task's whole reason, as the trigger writes it: the move alone left out the wait it names,
        -- upstream work or a blocked task; found by review, migration 0085)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT m.id, m.state, m.state_reason, m.attempts, m.worker FROM changed m WHERE m.state = m.old_state
    )
    SELECT count(*), coalesce(array_agg(m.id), '{}') INTO moved, moved_ids FROM changed m;
    -- Tasks made outside any series are refused by a time series, decided on the tasks moved (migration 0095): decided
    -- in a statement before the series' locks were waited for, a task made meanwhile on a routine that is no time
    -- series was moved unrefused, and ran beside the tasks of its tile there (found by review). The exception undoes
    -- the move.
    IF target.sequential_per_tile THEN
        SELECT format('task %s (input %s, tile %s)', t.id, i.id, i.tile) INTO refused
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.id = ANY (moved_ids) AND t.series_tile IS NULL AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
        ORDER BY t.id LIMIT 1;
        IF refused IS NOT NULL THEN
            -- (all in the message: `hrwsi move-tasks` prints its first line alone)
            RAISE EXCEPTION 'routine % is a time series (sequential_per_tile), routine % is not: its tasks cannot join '
                            'the series of % by a move (%, made outside any series, would run beside the tasks of its '
                            'tile there, out of sensing order); let them run on %, or cancel them (`hrwsi cancel`)',
                            to_routine, from_routine, to_routine, refused, from_routine
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NOT target.sequential_per_tile THEN
        -- (the tasks before them that took their urgency, they no longer wait for)
        PERFORM give_back_taken_deadlines(moved_ids);
    ELSIF cardinality(moved_ids) > 0 THEN
        -- Each task of the series of the moved tasks' tiles that has not started waits for the task sensed just
        -- before it, as an INSERT links a scene, or for none (migration 0091: the first moved of its tile, with
        -- none before it, kept the task it waited for on the old routine, and stayed blocked behind it if that
        -- one had ended terminated; found by review); urgency is given back and passed down again along the
        -- links, and what each waits for upstream is decided again, below.
        WITH members AS MATERIALIZED (
            SELECT x.id, x.state, lag(x.id) OVER w AS previous, lag(x.state) OVER w AS previous_state
            FROM processing_task x
            WHERE x.routine = to_routine AND x.campaign_id IS NULL AND x.state <> 'cancelled'
              AND x.series_tile IN (SELECT m.series_tile FROM processing_task m WHERE m.id = ANY (moved_ids))
            WINDOW w AS (PARTITION BY x.series_tile ORDER BY x.series_at, x.id)
        ), locked AS MATERIALIZED (
            -- (in the order of their ids, as every writer of many tasks locks them)
            SELECT t.id FROM processing_task t
            WHERE t.id IN (SELECT s.id FROM members s WHERE s.previous IS NOT NULL OR s.id = ANY (moved_ids))
            ORDER BY t.id FOR NO KEY UPDATE OF t
        ), changed AS (
            UPDATE processing_task t
            SET depends_on = s.previous,
                -- (a held one behind a task that cannot run is blocked, an operator's hold of it kept to hold it again
                -- when its wait ends: migration 0098; it stayed held, and was pending once released)
                state = CASE WHEN s.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                             WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN t.state = 'blocked' AND t.held_while_blocked THEN 'on_hold'  -- (migration 0095)
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = CASE WHEN NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false) THEN false
                                          WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                          ELSE t.held_while_blocked END,
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold'
                                         AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false)
                                    THEN t.state_reason
                                    WHEN t.state = 'blocked' AND t.held_while_blocked
                                         AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false)
                                    THEN hrwsi.held_while_blocked_reason() ELSE '' END
                               || CASE WHEN t.state = 'on_hold'
                                            AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false) THEN ''
                                    ELSE CASE WHEN t.id = ANY (moved_ids) THEN moved_reason
                                              ELSE format('tasks of routine %s moved into its time series', from_routine) END
                                         || CASE WHEN s.previous IS NULL
                                                 THEN ': it is the first of its time series now, and waits for no task'
                                                 -- (what it waits for, not a state of that task, which outgrows
                                                 -- the reason: migration 0098)
                                                 WHEN s.previous_state = 'terminated'
                                                 THEN format(': its dependency, task %s, sensed before it, ended '
                                                             'terminated; `hrwsi retry %s` runs the dependency again, '
                                                             '`hrwsi release %s` runs this task without it', s.previous,
                                                             s.previous, t.id)
                                                 WHEN s.previous_state = 'blocked'
                                                 THEN format(': it waits for task %s, sensed before it, which has to run '
                                                             'before it (`hrwsi task show %s` says what that task waits '
                                                             'for)', s.previous, s.previous)
                                                 ELSE format(': it runs after task %s, sensed before it', s.previous) END
                               END
            FROM members s
            WHERE t.id = s.id AND t.id IN (SELECT l.id FROM locked l) AND (s.previous IS NOT NULL OR t.id = ANY (moved_ids))
              AND t.depends_on IS DISTINCT FROM s.previous AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
            RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, s.state AS old_state
        ), history AS (
            -- (a change of state writes its own row: hrwsi.after_task_changes)
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state
        )
        SELECT coalesce(array_agg(c.id), '{}') INTO relinked FROM changed c;
        IF cardinality(relinked) > 0 THEN
            PERFORM give_back_taken_deadlines(moved_ids || relinked);
            PERFORM pass_deadlines_down(moved_ids || relinked);
        END IF;
        -- What they wait for upstream, from the task before them now (migration 0091): each kept the wait of its
        -- place in the old series, so that the first of its tile there, moved behind a task sensed later than
        -- the open scene it waited for, still waited for that scene, and one moved first of its tile, waiting
        -- for none, ran before a scene sensed before it whose upstream work was open (found by review). Only
        -- those whose wait changes (hrwsi.wait_for_upstream says what it waits for then, or no longer, in its
        -- reason and history): one whose wait stays keeps its reason, which says why it moved.
        PERFORM wait_for_upstream(ARRAY(
            SELECT t.id FROM processing_task t
            LEFT JOIN processing_task p ON p.id = t.depends_on
            LEFT JOIN LATERAL open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at, t.series_at) w ON true
            WHERE t.id = ANY (moved_ids || relinked) AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              AND t.waits_for_upstream IS DISTINCT FROM w.task_id));
    END IF;
    -- Moved to a routine on hold, a task made pending by the move (a blocked one that waits for nothing now, or
    -- for a task that may run) is held with it, as a pending one is (migration 0091: it was pending, though
    -- blocked cannot be held in one step, on a routine whose tasks wait for its release; found by review). So is
    -- one of the series there that the relinking unblocked.
    IF target.on_hold THEN
        UPDATE processing_task t SET state = 'on_hold',
            state_reason = CASE WHEN t.id = ANY (moved_ids) THEN moved_reason || '; ' ELSE '' END
                           || 'routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
        WHERE t.id = ANY (moved_ids || coalesce(relinked, '{}')) AND t.state = 'pending' AND t.routine = to_routine;
    ELSIF target.backfill_hold_reason IS NOT NULL THEN
        -- (so is one of a back-fill lane, when the routine's back-fill is on hold, as a new task of it is: migration
        -- 0102; it was pending, and ran, while the back-fill's other tasks waited for its release; found by review)
        UPDATE processing_task t SET state = 'on_hold',
            state_reason = CASE WHEN t.id = ANY (moved_ids) THEN moved_reason || '; ' ELSE '' END
                           || hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
        WHERE t.id = ANY (moved_ids || coalesce(relinked, '{}')) AND t.state = 'pending' AND t.routine = to_routine
          AND hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) IS NOT NULL;
    END IF;
    SELECT count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('dispatched', 'queued', 'running')),
           count(*) FILTER (WHERE t.campaign_id IS NOT NULL AND NOT task_state_is_final(t.state)),
           count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'))
    INTO stay_under_way, stay_campaign, stay_made
    FROM processing_task t WHERE t.routine = from_routine;
    RETURN format('%s task(s) of routine %s moved to routine %s%s%s%s', moved, from_routine, to_routine,
                  CASE WHEN stay_under_way > 0
                       THEN format('; %s under way end on %s', stay_under_way, from_routine) ELSE '' END,
                  CASE WHEN stay_campaign > 0
                       THEN format('; %s open task(s) of campaigns stay on %s, their campaign''s routine',
                                   stay_campaign, from_routine) ELSE '' END,
                  CASE WHEN stay_made > 0
                       THEN format('; %s made or reopened on %s during the move stay on it: move them again', stay_made,
                                   from_routine)
                       ELSE '' END);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    planner_settings text[];  -- the session's enable_seqscan, enable_sort and jit, put back after the series' linking
    missing text;
    first_path text;   -- (the first row naming what is refused: a COPY's line is not known here)
    named bigint;
    conditions text[];
    sequential boolean;
    upstream boolean;  -- a time-series routine of the new inputs reads what another routine makes
    feeds boolean;     -- a routine of the new inputs makes what a time-series routine reads
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
        -- (which row: the statement's first naming it, and how many do; checked once per statement,
        -- after its rows, the refusal could not name a COPY's line; found by exploratory testing)
        SELECT n.input_path, count(*) OVER () INTO first_path, named
        FROM new_rows n WHERE n.processing_condition = missing ORDER BY n.id LIMIT 1;
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition". '
                                  'The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                  missing, first_path, named),
                  HINT = 'the conditions are configuration: `hrwsi config show` lists them';
    END IF;
    -- An input of a condition ops stopped (`active = false`) is refused, unless a campaign reprocesses
    -- it: a data engineer's INSERT ran all the same, while the harvester and chaining give such a
    -- condition nothing (migration 0056). One probe per condition; the rows only when one is inactive.
    IF EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = ANY (conditions) AND NOT c.active) THEN
        SELECT n.processing_condition INTO missing
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition AND NOT c.active
        WHERE n.campaign_id IS NULL
        LIMIT 1;
        IF FOUND THEN
            SELECT n.input_path, count(*) OVER () INTO first_path, named
            FROM new_rows n WHERE n.processing_condition = missing AND n.campaign_id IS NULL ORDER BY n.id LIMIT 1;
            RAISE EXCEPTION 'condition % is inactive: ops stopped it (active = false), so it takes no new input', missing
                USING ERRCODE = 'check_violation',
                      DETAIL = format('The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                      first_path, named),
                      HINT = 'insert into an active condition (`hrwsi config show` lists them), or ask ops to set it '
                             'active again';
        END IF;
    END IF;
    -- (one statement for the three, per condition named: migration 0072)
    SELECT coalesce(bool_or(r.sequential_per_tile), false),
           coalesce(bool_or(r.sequential_per_tile AND EXISTS (
               SELECT 1 FROM processing_routine up WHERE up.output_product_type = r.input_product_type)), false),
           coalesce(bool_or(EXISTS (SELECT 1 FROM processing_routine d
                                    WHERE d.input_product_type = r.output_product_type AND d.sequential_per_tile)), false)
    INTO sequential, upstream, feeds
    FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
    WHERE c.name = ANY (conditions);
    -- A time series is linked by what the INSERT sees of it once it holds the series' lock: under
    -- REPEATABLE READ or SERIALIZABLE its snapshot misses the tasks another transaction added
    -- meanwhile, and two INSERTs linked their tasks to the same previous task, out of sensing order
    -- (found by exploratory testing). Refused there, as removing an input is.
    IF (sequential OR feeds) AND current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT format('condition %s feeds the time series of routine %s (sequential_per_tile)', c.name,
                      CASE WHEN r.sequential_per_tile THEN r.name ELSE d.name END)
        INTO missing
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        LEFT JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
        WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL AND (r.sequential_per_tile OR d.name IS NOT NULL)
        ORDER BY n.id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'inputs of a time series are inserted only in a READ COMMITTED transaction (the default), '
                            'not in a % one', upper(current_setting('transaction_isolation'))
                USING ERRCODE = 'feature_not_supported', DETAIL = missing,
                      HINT = 'under a stricter isolation the INSERT cannot see the tasks other transactions added to the '
                             'series meanwhile, and would link its tasks out of sensing order: insert without BEGIN '
                             'ISOLATION LEVEL ..., or SET TRANSACTION ISOLATION LEVEL READ COMMITTED first';
        END IF;
    END IF;

    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order. An
    -- upstream task of a time series (feeds) takes the lock of the series downstream of its tile too,
    -- in the same order (migration 0072): it makes the series' tasks after its scene wait for it.
    -- (one lock per key, in the order of the keys, whatever series share it: hrwsi.series_lock_key)
    IF feeds THEN
        FOR series IN
            SELECT hrwsi.series_lock_key(x.routine, x.tile) AS key, (array_agg(x.routine ORDER BY x.routine, x.tile))[1] AS routine,
                   (array_agg(x.tile ORDER BY x.routine, x.tile))[1] AS tile
            FROM (SELECT c.routine, n.tile
                  FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
                  JOIN processing_routine r ON r.name = c.routine
                  WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
                  UNION
                  SELECT d.name, n.tile
                  FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
                  JOIN processing_routine r ON r.name = c.routine
                  JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
                  WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL) x
            GROUP BY 1 ORDER BY 1
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, series.key) THEN
                PERFORM hrwsi.wait_for_a_series(series.routine, series.tile);
            END IF;
        END LOOP;
    ELSIF sequential THEN
        FOR series IN
            SELECT hrwsi.series_lock_key(c.routine, n.tile) AS key, (array_agg(c.routine ORDER BY c.routine, n.tile))[1] AS routine,
                   (array_agg(n.tile ORDER BY c.routine, n.tile))[1] AS tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            GROUP BY 1 ORDER BY 1
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, series.key) THEN
                PERFORM hrwsi.wait_for_a_series(series.routine, series.tile);
            END IF;
        END LOOP;
    END IF;

    -- The routines and lanes the new tasks name, each locked once, as a foreign key would lock it
    -- for every row (hrwsi.refuse_removing_what_tasks_name): none of them can be removed before
    -- this transaction ends. They exist: the tasks are made by joining them.
    PERFORM 1
    FROM (SELECT DISTINCT c.routine,
                 CASE WHEN hrwsi.arrives_as_back_fill(n.lane, n.product_id, n.campaign_id,
                                                      coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at
                                                                    ELSE n.measured_at END, n.created_at) + c.deadline,
                                                      n.created_at)
                      THEN (SELECT bl.name FROM lane bl ORDER BY bl.priority DESC, bl.name LIMIT 1)
                      ELSE coalesce(n.lane, c.lane) END AS lane
          FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition) x
    JOIN processing_routine r ON r.name = x.routine
    JOIN lane l ON l.name = x.lane
    FOR KEY SHARE OF r, l;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, deadline_at,
                                 series_tile, series_at, campaign_id)
    SELECT n.id, c.routine,
           CASE WHEN r.on_hold OR (r.backfill_hold_reason IS NOT NULL AND n.campaign_id IS NULL AND l.priority > 0)
                THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                -- (a back-fill held by its failures: migration 0075)
                WHEN r.backfill_hold_reason IS NOT NULL AND n.campaign_id IS NULL AND l.priority > 0
                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason)
                -- (an input more than a day past its deadline: back-fill, migration 0075)
                WHEN e.back_fill
                THEN format('arrived %s after its deadline (%s): served as back-fill, in lane %s without a deadline; '
                            'an input given lane %s is served as near-real-time', hrwsi.duration_text(n.created_at - e.due),
                            hrwsi.utc_text(e.due), l.name, c.lane) END,
           l.name, l.priority,
           -- A campaign's input (a product it made, chained) is reprocessing, and an input in a lane
           -- less urgent than its condition's is back-fill: neither has a deadline. (A back-fill's
           -- deadline, counted from a sensing months ago, was missed the moment its task existed: it
           -- was served before fresh scenes, earliest deadline first, and alerted; migration 0048.)
           -- (the condition's lane read only for an input naming another: a burst's rows name none)
           CASE WHEN n.campaign_id IS NULL AND NOT e.back_fill
                     AND (n.lane IS NULL OR n.lane = c.lane
                          OR l.priority <= (SELECT cl.priority FROM lane cl WHERE cl.name = c.lane)) THEN
               e.due END,
           CASE WHEN r.sequential_per_tile AND n.measured_at IS NOT NULL THEN n.tile END,
           CASE WHEN r.sequential_per_tile AND n.tile IS NOT NULL THEN n.measured_at END,
           n.campaign_id
    FROM new_rows n
    JOIN processing_condition c ON c.name = n.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    CROSS JOIN LATERAL (
        SELECT d.due, hrwsi.arrives_as_back_fill(n.lane, n.product_id, n.campaign_id, d.due, n.created_at) AS back_fill
        FROM (SELECT coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at ELSE n.measured_at END,
                              n.created_at) + c.deadline AS due) d) e
    JOIN lane l ON l.name = CASE WHEN e.back_fill THEN (SELECT bl.name FROM lane bl ORDER BY bl.priority DESC, bl.name LIMIT 1)
                                 ELSE coalesce(n.lane, c.lane) END
    ORDER BY n.id;

    -- A time-series task depends on the task just before it in its series, by (series_at, id). One
    -- window over the new tasks of each series, the tasks already there between its first and last
    -- new one (a late input lands between them), the one task just before its first new one and the
    -- one just after its last (one index probe each per series): O(n log n) in the new tasks
    -- whatever the table statistics, and a series' older history is never read. A task already
    -- there whose place in the series changed (a late scene landed just before it) depends on the
    -- late one from now on, if it has not started: planned, it goes back to be planned again;
    -- blocked by the end of the task it waited for, it waits for the late one instead (before
    -- migration 0048, it kept depending on the scene before the late one, and both ran at
    -- once: found by exploratory testing). One that started keeps what it ran with. (Probing once
    -- per new task, skipping the other new tasks, was quadratic in the new tasks of a series: 3.1 s
    -- for 10,000 over 200 tiles.) A campaign's tasks form series of their own: production tasks
    -- never wait for reprocessing, nor the other way round. A task whose previous task is blocked
    -- or ended terminated is blocked at once, as it would have been had it been there then, and
    -- so are the tasks after it (hrwsi.after_task_changes): a late scene landed behind a blocked
    -- one waited `pending`, with no reason, for ever (found by exploratory testing; migration 0061).
    IF sequential THEN
        -- Every task read by key, whatever the statistics (migration 0085): a probe in a sub-query of its
        -- own (OFFSET 0), no sequential scan, and no sort where an index gives the order. Planned on the
        -- statistics of a table whose rows an INSERT rolled back had left (ANALYZE counts no live row then),
        -- this statement read the series' tasks through the index of routines and sorted them for each
        -- tile, and its UPDATE read every task once per new task: 20,000 scenes over 200 tiles, inserted
        -- after two INSERTs were refused, took 57 s where they take 1.5 s (found by measuring it).
        -- (set for this statement alone, and put back as the session had them: a SET clause on this function
        -- would save and restore them at every INSERT, a series or not; and JIT off with them: on PostgreSQL
        -- 15-17 a plan with a method turned off costs ten billion more, which passes jit_above_cost, and the
        -- statement was compiled at every INSERT into a series, migration 0088)
        planner_settings := ARRAY[current_setting('enable_seqscan'), current_setting('enable_sort'), current_setting('jit')];
        PERFORM set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true), set_config('jit', 'off', true);
        EXECUTE $q$
            WITH fresh AS (
                SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                FROM new_rows n
                CROSS JOIN LATERAL (SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                                    FROM processing_task t WHERE t.input_id = n.id OFFSET 0) t
                WHERE t.series_tile IS NOT NULL
            ), span AS (
                SELECT f.routine, f.series_tile, f.campaign_id, min(f.series_at) AS first_at,
                       max(f.series_at) AS last_at
                FROM fresh f GROUP BY f.routine, f.series_tile, f.campaign_id
            ), spanned AS (
                SELECT f.id, f.routine, f.series_tile, f.series_at, f.campaign_id, true AS fresh FROM fresh f
                UNION ALL
                -- (the span's tasks, the new ones among them: they are told apart by grouping below, by hash;
                -- left out here with a NOT IN, or a NOT EXISTS, the plan compared each task of the span with
                -- every new task once the statistics were those of a table an INSERT rolled back had filled.
                -- In the order of the series' index: no other index of the tasks gives it, sorts are off)
                SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, p.state FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile
                      AND p.series_at BETWEEN g.first_at AND g.last_at ORDER BY p.series_at, p.id OFFSET 0) p
                WHERE p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
            ), series AS (
                SELECT s.id, s.routine, s.series_tile, s.series_at, s.campaign_id, bool_or(s.fresh) AS fresh
                FROM spanned s GROUP BY s.id, s.routine, s.series_tile, s.series_at, s.campaign_id
                UNION ALL
                SELECT e.id, g.routine, g.series_tile, e.series_at, g.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile AND p.series_at < g.first_at
                      AND p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                    ORDER BY p.series_at DESC, p.id DESC LIMIT 1) e
                UNION ALL
                SELECT e.id, g.routine, g.series_tile, e.series_at, g.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile AND p.series_at > g.last_at
                      AND p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                    ORDER BY p.series_at, p.id LIMIT 1) e
            ), link AS (
                SELECT s.id, s.fresh, lag(s.id) OVER (PARTITION BY s.routine, s.series_tile, s.campaign_id
                                                      ORDER BY s.series_at, s.id) AS previous
                FROM series s
            ), locked AS MATERIALIZED (
                -- (the tasks already there whose link changes, locked first in the order of their ids, as
                -- every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t JOIN link ON link.id = t.id
                WHERE t.id = ANY (ARRAY(SELECT l.id FROM link l WHERE NOT l.fresh AND l.previous IS NOT NULL))
                  AND NOT link.fresh AND link.previous IS NOT NULL AND t.depends_on IS DISTINCT FROM link.previous
                  AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
                ORDER BY t.id FOR NO KEY UPDATE OF t
            ), linked AS (
                UPDATE processing_task t
                SET depends_on = link.previous,
                    -- (a held one blocked keeps an operator's hold of it, and a blocked one whose wait ends is held
                    -- again if an operator held it, or with its routine, campaign or back-fill, as the other paths
                    -- that block and unblock: migration 0098; the hold was lost, or it was pending under a held routine)
                    state = CASE WHEN p.state IN ('terminated', 'blocked') THEN 'blocked'
                                 WHEN t.state = 'blocked' AND (t.held_while_blocked
                                                               OR hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id,
                                                                                              t.lane) IS NOT NULL)
                                 THEN 'on_hold'
                                 WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                    held_while_blocked = CASE WHEN p.state NOT IN ('terminated', 'blocked') THEN false
                                              WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                              ELSE t.held_while_blocked END,
                    worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                    planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                    planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                    state_reason = CASE
                        WHEN p.state = 'terminated' THEN
                            format('its dependency, task %s, ended terminated; `hrwsi retry %s` runs the dependency '
                                   'again, `hrwsi release %s` runs this task without it', p.id, p.id, t.id)
                        WHEN p.state = 'blocked' THEN
                            format('waits for task %s, which has to run before it (`hrwsi task show %s` says what that '
                                   'task waits for): it runs once that task has run', p.id, p.id)
                        WHEN link.fresh OR t.state = 'on_hold' THEN t.state_reason
                        ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                  WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                  ELSE coalesce(hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) || '; ', '')
                             END || format('a scene sensed before it arrived late (task %s): it runs after it',
                                           link.previous) END
                FROM link CROSS JOIN LATERAL (SELECT p.id, p.state FROM processing_task p
                                              WHERE p.id = link.previous OFFSET 0) p
                WHERE t.id = ANY (ARRAY[link.id])
                  AND (link.fresh OR (t.id IN (SELECT l.id FROM locked l) AND t.depends_on IS DISTINCT FROM link.previous
                                      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')))
                RETURNING t.id, t.routine, t.state_reason, p.state AS previous_state
            )
            -- (ops are told of a task blocked by a terminated dependency, as when it ends so)
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', l.id, l.routine), l.state_reason,
                   l.id, l.routine
            FROM linked l WHERE l.previous_state = 'terminated' $q$;
        PERFORM set_config('enable_seqscan', planner_settings[1], true), set_config('enable_sort', planner_settings[2], true),
                set_config('jit', planner_settings[3], true);
        -- An urgent task waits for the tasks before it in its series: those less urgent (a back-fill
        -- of the same tile) are served as urgently as it, down the series to the first that runs or
        -- ran (priority inheritance). Else a near-real-time scene waited for archive tasks served
        -- after every other near-real-time task (found by exploratory testing: 78 s, where the three
        -- archive tasks before it took 24 s; migration 0052). From the new tasks and the tasks now
        -- after them; a statement of its own, so that it follows the links just made. A planned one is
        -- planned again: its plan was made for its old lane, behind the rest of that lane's work, and
        -- the urgent task was planned after it (found by exploratory testing: "40 min late" alerted
        -- at risk for a scene that ended on time; migration 0075). They take its deadline too, when it
        -- has one and theirs is later or none (migration 0081): they must run first for it to run at
        -- all, and without one they were served after every urgent task with a deadline and, among
        -- back-fill aged to priority 0 (promote_aged_tasks), by age: a fresh scene behind 20 aged
        -- archive scenes missed its deadline (found by exploratory testing). So a task already as urgent
        -- (aged) passes the deadline on down the series too. Aged work without a deadline stays behind
        -- work with one (the serving order's deadline_at NULLS LAST). Such a task remembers whose deadline
        -- it took (deadline_inherited_from) and its own (own_deadline_at), and lateness is counted against
        -- its own (migration 0083): the deadline it took serves it early, but it is not a near-real-time
        -- deadline of its own. One late fresh scene raised a deadline_missed alert for each archive task
        -- before it, and `hrwsi timeliness` counted their products late (found by exploratory testing).
        -- (hrwsi.pass_deadlines_down, from the new tasks and the tasks now after them: the same statement passes
        -- on what a cancelled task gave back, migration 0085; the tasks found from the inputs' ids by
        -- hrwsi.series_waiters_of, which reads them by key whatever the statistics)
        PERFORM hrwsi.pass_deadlines_down(hrwsi.series_waiters_of(ARRAY(SELECT n.id FROM new_rows n)));
        -- A new task of a time series whose inputs another routine makes waits for the scenes sensed
        -- before it whose upstream work is still open (migration 0072). A series whose routine has
        -- no routine upstream (a back-fill of harvested inputs) pays nothing more.
        IF upstream THEN
            PERFORM hrwsi.wait_for_upstream(ARRAY(SELECT t.id FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                                                  WHERE t.series_tile IS NOT NULL));
        END IF;
    END IF;
    -- New upstream tasks of a time series: the series' tasks after their scenes wait for them.
    IF feeds THEN
        PERFORM hrwsi.wait_for_upstream_after(ARRAY(
            SELECT t.id FROM processing_task t JOIN new_rows n ON n.id = t.input_id
            JOIN processing_routine r ON r.name = t.routine
            WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL
              AND EXISTS (SELECT 1 FROM processing_routine d
                          WHERE d.input_product_type = r.output_product_type AND d.sequential_per_tile)), true);
    END IF;
    RETURN NULL;
END $$;
