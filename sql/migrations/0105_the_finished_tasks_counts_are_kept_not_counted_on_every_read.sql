-- hrwsi schema, version 105: the finished tasks' counts are kept, not counted on every read.
--
-- The dashboard's overview and /metrics (hrwsi_tasks) counted the tasks per routine, lane and state with one
-- GROUP BY over every task ever run: a scan of the archive (0.2 to 0.5 s at 1,000,000 tasks) on every read of the
-- overview and every 5 s per service instance that Prometheus scrapes, growing as the database ages, which README
-- promises costs nothing. The open tasks are the work at hand and are counted through their state's index; the
-- finished ones (processed, terminated, cancelled) are now kept in hrwsi.finished_task_count, rows of +n and -n per
-- routine, lane and state that the task triggers add (never update: no writer waits for another on a counter), and
-- that hrwsi.finished_task_counts() folds and sums. The counts of the tasks already there are taken once, here,
-- with the task table locked against writes meanwhile (a task that ended while they were counted was counted
-- twice or never).
CREATE TABLE hrwsi.finished_task_count (
    routine text NOT NULL,
    lane    text NOT NULL,
    state   text NOT NULL,
    n       bigint NOT NULL
);
GRANT SELECT ON hrwsi.finished_task_count TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

LOCK TABLE hrwsi.processing_task IN SHARE MODE;
INSERT INTO hrwsi.finished_task_count (routine, lane, state, n)
SELECT routine, lane, state, count(*) FROM hrwsi.processing_task WHERE hrwsi.task_state_is_final(state)
GROUP BY routine, lane, state;

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
                state_reason = CASE WHEN t.held_while_blocked THEN 'held by an operator, as before it was blocked: '
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

CREATE FUNCTION hrwsi.uncount_removed_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    INSERT INTO finished_task_count (routine, lane, state, n)
    SELECT routine, lane, state, -count(*) FROM old_rows WHERE hrwsi.task_state_is_final(state)
    GROUP BY routine, lane, state;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_task_removed_uncounted AFTER DELETE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.uncount_removed_tasks();

CREATE FUNCTION hrwsi.finished_task_counts() RETURNS TABLE (routine text, lane text, state text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
BEGIN
    IF (SELECT count(*) > count(DISTINCT (c.routine, c.lane, c.state)) FROM finished_task_count c)
            AND pg_try_advisory_xact_lock('hrwsi.finished_task_count'::regclass::oid::bigint) THEN
        BEGIN
            WITH gone AS (DELETE FROM finished_task_count RETURNING routine, lane, state, n)
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT g.routine, g.lane, g.state, sum(g.n) FROM gone g
            GROUP BY g.routine, g.lane, g.state HAVING sum(g.n) <> 0;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- (not folded: read as it is; see above)
        END;
    END IF;
    RETURN QUERY
        SELECT c.routine, c.lane, c.state, sum(c.n)::bigint FROM finished_task_count c
        GROUP BY c.routine, c.lane, c.state HAVING sum(c.n) <> 0;
END $$;

REVOKE EXECUTE ON FUNCTION hrwsi.finished_task_counts(), hrwsi.uncount_removed_tasks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.finished_task_counts(), hrwsi.uncount_removed_tasks()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
