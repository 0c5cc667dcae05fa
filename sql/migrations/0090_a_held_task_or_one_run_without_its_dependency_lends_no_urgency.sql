-- hrwsi schema, version 90: one rule for the urgency a task lends down its time series, a held task lends none,
-- tasks moved to another routine are linked into its time series, and a cancel that found its series' lock busy
-- is finished by the sweep.
--
-- - A task released to run without the task it waited for (dependency_waived) passes no priority nor deadline to
--   it, nor through it: only the step of hrwsi.after_task_changes for the tasks pending again (migration 0089)
--   followed that rule; hrwsi.retry_task's own pass and the walk of hrwsi.pass_deadlines_down (an INSERT, a
--   relinking) raised a task no one waited for any more (found by review). The rule is the function's now.
-- - A held task lends nothing (hrwsi.pass_deadlines_down takes no held waiter), and the trigger gives back what it
--   lent when it is held, in the step that gives back at a cancel: an operator who held the urgent scene of a
--   series left the archive tasks before it raised, served ahead of near-real-time work that could run (found by
--   review). Released, it lends again at once, with the tasks pending again. A planned task that gives back says
--   whether the task was held or cancelled.
-- - hrwsi.cancel_task and hrwsi.correct_input no longer call the give-back after their UPDATE: its trigger gave
--   everything back already, and they probed the two indexes of the names again for nothing.
-- - hrwsi.move_tasks links a time series' tasks by the rules of an INSERT into the routine they move to: they kept
--   their links, so that moved into a time series with tasks of its own on their tile, two chains of one tile ran
--   side by side, and moved to a routine that is no time series they waited for each other, or stayed blocked,
--   for nothing (found by review). Tasks of a routine that is no time series are refused by one.
-- - The orchestrator's sweep (hrwsi.recheck_upstream_waits) links the task after a task of its series cancelled
--   while the series' lock was busy (a cancel by plain SQL beside an INSERT into that series) to the task before
--   the cancelled one, as the cancel would have: it stayed blocked behind the cancelled task until an operator
--   retried it (found by review).

CREATE OR REPLACE FUNCTION hrwsi.pass_deadlines_down(waiters bigint[]) RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
    WITH RECURSIVE waiting AS (
        SELECT d.id, u.priority, u.deadline_at, coalesce(u.deadline_inherited_from, u.id) AS waiter,
               coalesce(u.deadline_inherited_from, u.id) AS deadline_from,
               coalesce(u.priority_inherited_from, u.id) AS priority_from
        FROM unnest(waiters) AS x(id)
        CROSS JOIN LATERAL (SELECT u.* FROM processing_task u WHERE u.id = x.id OFFSET 0) u
        CROSS JOIN LATERAL (SELECT d.* FROM processing_task d WHERE d.id = u.depends_on OFFSET 0) d
        -- (one rule for every caller, migration 0090: a task released to run without the task it waited for
        -- (dependency_waived) passes nothing to it, nor through it, and a held one lends nothing until it is
        -- released; only the trigger's step for tasks pending again followed the first, and a retry, a
        -- relinking or an INSERT's walk raised a task no one waited for any more)
        WHERE u.state IN ('pending', 'planned', 'blocked') AND NOT u.dependency_waived
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
          AND d.state IN ('pending', 'planned') AND NOT p.dependency_waived
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
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
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
            -- (held or cancelled, as that task is now: migration 0090)
            state_reason = CASE WHEN t.state = 'planned' AND t.deadline_inherited_from = ANY (cancelled)
                                THEN format('task %s, whose deadline it took, was %s: it gave it back, planned '
                                            'again', t.deadline_inherited_from,
                                            (SELECT CASE WHEN x.state = 'on_hold' THEN 'held' ELSE 'cancelled' END
                                             FROM processing_task x WHERE x.id = t.deadline_inherited_from))
                                WHEN t.state = 'planned'
                                THEN format('task %s, whose priority it took, was %s: it gave it back, planned '
                                            'again', t.priority_inherited_from,
                                            (SELECT CASE WHEN x.state = 'on_hold' THEN 'held' ELSE 'cancelled' END
                                             FROM processing_task x WHERE x.id = t.priority_inherited_from))
                                ELSE t.state_reason END
        FROM lane l
        -- (the tasks that took one, by key through the partial indexes of the names, at every cancel since
        -- migration 0089; the state test wrapped so that no index of states serves it: a plan made on a table
        -- of few tasks read every pending task for it)
        WHERE (t.deadline_inherited_from = ANY (cancelled) OR t.priority_inherited_from = ANY (cancelled))
          AND l.name = t.lane AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'), false)
        RETURNING t.id
    )
    SELECT coalesce(array_agg(b.id), '{}') INTO given FROM back b;
    IF cardinality(given) > 0 THEN
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT t.id FROM processing_task t
                                                WHERE t.depends_on = ANY (given)
                                                  AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'),
                                                               false)));
    END IF;
    RETURN cardinality(given);
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
        SELECT array_agg(d.id) FILTER (WHERE d.state = 'cancelled'), array_agg(d.id) INTO cancelled, lenders
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
            ), locked AS MATERIALIZED (
                -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
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
            WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
    END IF;
    -- ... and, retried, released or linked to another task (a late scene, a cancelled one skipped), unblocks
    -- them and the tasks after them in their chain, saying which of these happened (migration 0085: "its
    -- dependency was retried or released" was said of a task that had been neither, but now waited for
    -- another task, or for none: found by review).
    -- (one look at the old rows for the two steps below: a statement of the outcome writer that retries
    -- failed tasks pays no more than before migration 0089)
    IF 'pending' = ANY (new_states)
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked', 'on_hold')) THEN
      IF EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root, what) AS (
                SELECT t.id, d.id,
                       CASE WHEN o.state IN ('terminated', 'cancelled') THEN 'was retried'
                            WHEN d.dependency_waived AND NOT o.dependency_waived
                            THEN 'was released by an operator, to run without the task it waited for'
                            WHEN d.depends_on IS NULL AND o.depends_on IS NOT NULL THEN 'waits for no task now'
                            WHEN d.depends_on IS DISTINCT FROM o.depends_on THEN format('waits for task %s now', d.depends_on)
                            ELSE 'is no longer blocked' END
                FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = 'pending')
                UNION ALL
                SELECT t.id, a.root, a.what FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            ), locked AS MATERIALIZED (
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (one that still waits for upstream work says so too: migration 0077)
            UPDATE processing_task t SET state = 'pending',
                state_reason = CASE WHEN t.depends_on = a.root THEN format('its dependency, task %s, %s', a.root, a.what)
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

CREATE OR REPLACE FUNCTION hrwsi.cancel_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    series_key integer;  -- (a time series' task) its series' lock (hrwsi.series_lock_key)
    next_task bigint;    -- ... the task after it, which takes the one before it as its own
    next_previous bigint;
BEGIN
    -- A task of a time series: the series' lock first, then the row, as every holder of both takes them:
    -- the tasks after it take the task before it as theirs under that lock (hrwsi.skip_cancelled_tasks,
    -- migration 0084), and a scene inserted meanwhile is linked around it.
    SELECT hrwsi.series_lock_key(t.routine, t.series_tile) INTO series_key
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
    WHERE t.id = task AND t.series_tile IS NOT NULL;
    IF series_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(7250010, series_key);
    END IF;
    current := hrwsi.lock_task(task);
    IF current IN ('processed', 'terminated', 'cancelled') THEN
        RAISE EXCEPTION 'task % is already %: nothing to cancel', task, current USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'cancelled', state_reason = 'cancelled by an operator' WHERE id = task;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE task_id = task AND state IN ('submitted', 'queued', 'running');
    -- (the tasks before it that took its deadline gave it back: hrwsi.after_task_changes, for its UPDATE)
    SELECT t.id, t.depends_on INTO next_task, next_previous FROM hrwsi.processing_task t
    WHERE t.state_reason LIKE format('task %s before it in its time series was cancelled%%', task)
      AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ORDER BY t.series_at, t.id LIMIT 1;
    RETURN format('task %s was %s; it is cancelled%s%s', task, current,
                  CASE WHEN current IN ('dispatched', 'queued', 'running') THEN ' and its job is being stopped' ELSE '' END,
                  CASE WHEN next_task IS NULL THEN ''
                       WHEN next_previous IS NULL THEN format('; task %s after it in its time series is its first now', next_task)
                       ELSE format('; task %s after it in its time series runs after task %s now', next_task, next_previous) END);
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
    -- (the tasks that took a deadline or a priority from them gave it back: hrwsi.after_task_changes)
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
    IF target.sequential_per_tile THEN
        SELECT format('task %s (input %s, tile %s)', t.id, i.id, i.tile) INTO refused
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
          AND t.series_tile IS NULL AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
        ORDER BY t.id LIMIT 1;
        IF refused IS NOT NULL THEN
            -- (all in the message: `hrwsi move-tasks` prints its first line alone)
            RAISE EXCEPTION 'routine % is a time series (sequential_per_tile), routine % is not: its tasks cannot join '
                            'the series of % by a move (%, made outside any series, would run beside the tasks of its '
                            'tile there, out of sensing order); let them run on %, or cancel them (`hrwsi cancel`)',
                            to_routine, from_routine, to_routine, refused, from_routine
                USING ERRCODE = 'check_violation';
        END IF;
        -- (the series' locks first, in the order of their keys, then the rows, as every holder of both)
        FOR key IN
            SELECT DISTINCT hrwsi.series_lock_key(to_routine, t.series_tile) FROM processing_task t
            WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.series_tile IS NOT NULL
              AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
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
        ORDER BY t.id  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        FOR UPDATE
    ), changed AS (
        UPDATE processing_task t
        SET routine = to_routine,
            state = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                         WHEN c.state = 'planned' THEN 'pending'
                         WHEN c.state = 'on_hold' AND NOT target.on_hold AND c.state_reason LIKE 'routine on hold: %'
                             THEN 'pending'
                         WHEN c.state = 'blocked' AND NOT target.sequential_per_tile AND NOT t.dependency_waived
                             THEN 'pending'
                         ELSE c.state END,
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
                                WHEN c.state = 'on_hold' AND (target.on_hold OR c.state_reason NOT LIKE 'routine on hold: %')
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN NOT target.sequential_per_tile AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
                                    THEN moved_reason || format('; routine %s is not a time series: it no longer waits '
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
    IF NOT target.sequential_per_tile THEN
        -- (the tasks before them that took their urgency, they no longer wait for)
        PERFORM give_back_taken_deadlines(moved_ids);
    ELSIF cardinality(moved_ids) > 0 THEN
        -- Each task of the series of the moved tasks' tiles that has not started waits for the task sensed just
        -- before it, as an INSERT links a scene (the first moved of its tile, with none before it, keeps the
        -- task it waited for on the old routine); urgency is given back and passed down again along the links.
        WITH members AS MATERIALIZED (
            SELECT x.id, x.state, lag(x.id) OVER w AS previous, lag(x.state) OVER w AS previous_state
            FROM processing_task x
            WHERE x.routine = to_routine AND x.campaign_id IS NULL AND x.state <> 'cancelled'
              AND x.series_tile IN (SELECT m.series_tile FROM processing_task m WHERE m.id = ANY (moved_ids))
            WINDOW w AS (PARTITION BY x.series_tile ORDER BY x.series_at, x.id)
        ), locked AS MATERIALIZED (
            -- (in the order of their ids, as every writer of many tasks locks them)
            SELECT t.id FROM processing_task t
            WHERE t.id IN (SELECT s.id FROM members s WHERE s.previous IS NOT NULL) ORDER BY t.id FOR NO KEY UPDATE OF t
        ), changed AS (
            UPDATE processing_task t
            SET depends_on = s.previous,
                state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN s.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                    ELSE CASE WHEN t.id = ANY (moved_ids) THEN moved_reason
                                              ELSE format('tasks of routine %s moved into its time series', from_routine) END
                                         || CASE WHEN s.previous_state IN ('terminated', 'blocked')
                                                 THEN format(': it waits for task %s, sensed before it, which is %s '
                                                             '(`hrwsi task show %s` says why)', s.previous,
                                                             s.previous_state, s.previous)
                                                 ELSE format(': it runs after task %s, sensed before it', s.previous) END
                               END
            FROM members s
            WHERE t.id = s.id AND t.id IN (SELECT l.id FROM locked l) AND s.previous IS NOT NULL
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
    END IF;
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

CREATE OR REPLACE FUNCTION hrwsi.recheck_upstream_waits(p_limit integer DEFAULT 1000) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    series record;
    tasks bigint[] := '{}';
    cancelled bigint[];
BEGIN
    -- (migration 0090) The task after a task of its time series cancelled while the series' lock was busy (a
    -- cancel by plain SQL, or a campaign's, beside an INSERT into that series) was blocked behind it, and the
    -- tasks after it with it, until an operator retried it: the series' next INSERT relinked it only if that
    -- scene came before it (found by review). It takes the task before the cancelled one here, as the cancel
    -- would have (hrwsi.skip_cancelled_tasks, which tries each series' lock: one still busy waits for the next
    -- sweep). The blocked tasks read through the index of states, each dependency by key.
    cancelled := ARRAY(SELECT DISTINCT c.id FROM processing_task t JOIN processing_task c ON c.id = t.depends_on
                       WHERE t.state = 'blocked' AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
                         AND c.state = 'cancelled' AND c.routine = t.routine AND c.series_tile = t.series_tile
                         AND c.campaign_id IS NOT DISTINCT FROM t.campaign_id
                       LIMIT p_limit);
    IF cardinality(cancelled) > 0 THEN
        PERFORM hrwsi.skip_cancelled_tasks(cancelled);
    END IF;
    FOR series IN
        SELECT hrwsi.series_lock_key(w.routine, w.series_tile) AS key, array_agg(w.id) AS ids
        FROM (SELECT t.id, t.routine, t.series_tile
              FROM processing_task t JOIN processing_task u ON u.id = t.waits_for_upstream
              WHERE t.waits_for_upstream IS NOT NULL AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
                AND NOT t.dependency_waived AND hrwsi.task_state_is_final(u.state)
                AND NOT (u.state = 'processed'
                         AND EXISTS (SELECT 1 FROM product p WHERE p.task_id = u.id AND p.chained_at IS NULL))
              ORDER BY t.waits_for_upstream, t.id LIMIT p_limit) w
        GROUP BY 1 ORDER BY 1
    LOOP
        IF pg_try_advisory_xact_lock(7250010, series.key) THEN
            tasks := tasks || series.ids;
        END IF;
    END LOOP;
    IF cardinality(tasks) = 0 THEN
        RETURN 0;
    END IF;
    RETURN hrwsi.wait_for_upstream(tasks);
END $$;
