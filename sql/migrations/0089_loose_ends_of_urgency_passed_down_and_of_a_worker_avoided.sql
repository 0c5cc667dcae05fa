-- hrwsi schema, version 89: the loose ends of migrations 0086 and 0087.
--
-- - Whoever cancels a task gives back the priority and the deadline the tasks before it took from it: the
--   give-back was called by hrwsi.cancel_task and hrwsi.correct_input alone, and a campaign's cancel of its
--   tasks, or an UPDATE setting a task cancelled by hand, left them raised for good, served ahead of
--   near-real-time work (found by review). hrwsi.after_task_changes calls it for every task an UPDATE
--   cancels; it finds the tasks that took one by key, through two new partial indexes of the names.
-- - A task that waits for a task pending again (released from a hold, its own, its routine's, its campaign's
--   or its back-fill's; released from blocked or unblocked) passes its priority and deadline down at once:
--   held or blocked, that task took nothing, and hrwsi.release_task, hrwsi.release_routine and the others
--   passed nothing down until the series' next INSERT (found by review). hrwsi.after_task_changes does it,
--   whoever releases.

CREATE INDEX processing_task_deadline_inherited_from_idx ON hrwsi.processing_task (deadline_inherited_from)
    WHERE deadline_inherited_from IS NOT NULL;
CREATE INDEX processing_task_priority_inherited_from_idx ON hrwsi.processing_task (priority_inherited_from)
    WHERE priority_inherited_from IS NOT NULL;

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
            state_reason = CASE WHEN t.state = 'planned' AND t.deadline_inherited_from = ANY (cancelled)
                                THEN format('task %s, whose deadline it took, was cancelled: it gave it back, planned '
                                            'again', t.deadline_inherited_from)
                                WHEN t.state = 'planned'
                                THEN format('task %s, whose priority it took, was cancelled: it gave it back, planned '
                                            'again', t.priority_inherited_from)
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
    cancelled bigint[];    -- (of an UPDATE) tasks cancelled
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
    -- A task of a time series cancelled: the task after it takes the one before it as its own (migration
    -- 0084) ... and the tasks that took the cancelled ones' priority or deadline give them back (migration 0089:
    -- whoever cancels, a campaign's cancel of its tasks or an UPDATE by hand too, not hrwsi.cancel_task and
    -- hrwsi.correct_input alone: the tasks before a fresh scene cancelled otherwise kept its priority for good,
    -- served ahead of near-real-time work; found by review). After the skip, as those two call them: the tasks
    -- after a cancelled one wait for the task before it by then, and pass their own down at once. Each task
    -- that took one is found by key (the partial indexes of the names): none found, nothing more is read.
    IF 'cancelled' = ANY (new_states) THEN
        SELECT array_agg(d.id) INTO cancelled FROM new_rows d JOIN old_rows o USING (id)
        WHERE d.state = 'cancelled' AND o.state <> 'cancelled';
        PERFORM hrwsi.skip_cancelled_tasks(ARRAY(SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
                                                 WHERE d.state = 'cancelled' AND o.state <> 'cancelled'
                                                   AND d.series_tile IS NOT NULL));
        IF cancelled IS NOT NULL THEN
            PERFORM hrwsi.give_back_taken_deadlines(cancelled);
        END IF;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents (a time series' task that
    -- did not take the one before a cancelled task: its series' lock was busy) ...
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
      -- the same for the tasks after them in this trigger's call for their own UPDATE.
      EXECUTE $q$
          SELECT hrwsi.pass_deadlines_down(ARRAY(
              SELECT t.id FROM new_rows d JOIN old_rows o USING (id) JOIN processing_task t ON t.depends_on = d.id
              WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked', 'on_hold')
                AND t.state IN ('pending', 'planned', 'on_hold', 'blocked'))) $q$;
    END IF;
    RETURN NULL;
END $$;

