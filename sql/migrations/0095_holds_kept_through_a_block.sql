-- hrwsi schema, version 95: holds kept through a block, and a blocked task unblocked while its routine is held is held.
--
-- - A blocked task whose wait ends (the task it waits for retried or released, the orchestrator's sweep linking it past
--   a task cancelled while its series' lock was busy) while its routine, its campaign or its routine's back-fill is on
--   hold is held with it, as a new task of it is (hrwsi.hold_a_new_task_takes): it became pending, skipped by
--   dispatch but shown pending by `hrwsi status` and the dashboard (found by review). Blocked goes to on_hold.
-- - A task an operator held that the end of the task it waits for blocks (held -> blocked) keeps the hold
--   (processing_task.held_while_blocked): `hrwsi status` lists it with the held tasks while it is blocked, and it is
--   held again when its wait ends; it was made pending, the hold lost (found by review).
-- - An operator's retry starts from the urgency the task is owed now (hrwsi.retry_task): what it took from a task
--   after it, one released since to run without it included, it kept through its end and was planned at (found by
--   review); the tasks that still wait for it lend it again at once.
-- - A time-series task that waits for upstream work says that task "has not ended yet", and where to look, not the
--   state it was in when the wait was decided ("has not run yet", "is on hold"), which it outgrew while the reason
--   stayed: only its end, its retry or its products' chaining decide the wait again (found by review).
-- - A routine's series ended (sequential_per_tile off) unblocks its blocked tasks by the same rule
--   (hrwsi.end_a_routines_series): held again, or held with their routine, not pending; so does a move
--   (hrwsi.move_tasks) that ends a blocked task's wait: an operator's hold of it holds it again.
-- - hrwsi.move_tasks refuses tasks made outside any series, to a time series, on the tasks it moved, under the locks
--   it took: refused in a statement before, a task made while it waited for the series' locks was moved unrefused.

ALTER TABLE hrwsi.processing_task ADD COLUMN held_while_blocked boolean NOT NULL DEFAULT false;

INSERT INTO hrwsi.task_transition VALUES ('blocked', 'on_hold');

CREATE OR REPLACE FUNCTION hrwsi.task_transition_is_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE from_state
    WHEN 'pending'    THEN to_state IN ('planned', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'planned'    THEN to_state IN ('pending', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'dispatched' THEN to_state IN ('queued', 'running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'queued'     THEN to_state IN ('running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'running'    THEN to_state IN ('queued', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'on_hold'    THEN to_state IN ('pending', 'blocked', 'cancelled')
    WHEN 'blocked'    THEN to_state IN ('pending', 'on_hold', 'cancelled')
    WHEN 'terminated' THEN to_state = 'pending'  -- an operator's retry
    WHEN 'cancelled'  THEN to_state = 'pending'  -- an operator's retry
    ELSE false
END;

DROP TRIGGER processing_task_enforce_transition ON hrwsi.processing_task;
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
                       blocked>on_hold, terminated>pending, cancelled>pending}'::text[])
                   OR NEW.finished_at IS DISTINCT FROM CASE WHEN NEW.state IN ('processed', 'terminated', 'cancelled')
                                                            THEN now() END
                   OR NEW.history_pruned_at IS NOT NULL)))
    EXECUTE FUNCTION hrwsi.enforce_task_transition();

CREATE FUNCTION hrwsi.hold_a_new_task_takes(p_routine text, p_campaign bigint, p_lane text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                WHEN k.on_hold THEN format('campaign %s on hold: %s', k.id, k.hold_reason)
                WHEN p_campaign IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason) END
    FROM processing_routine r
    LEFT JOIN campaign k ON k.id = p_campaign
    LEFT JOIN lane l ON l.name = p_lane
    WHERE r.name = p_routine
$$;

CREATE FUNCTION hrwsi.hold_is_the_tasks_own(reason text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(starts_with(reason, 'held by an operator')
                OR reason LIKE 'moved from routine % by an operator; held by an operator%', false);

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
            -- routine, campaign or back-fill if that is held: migration 0095)
            state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN n.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'blocked' AND (t.held_while_blocked OR n.group_hold IS NOT NULL) THEN 'on_hold'
                         WHEN t.state = 'blocked' THEN 'pending' ELSE t.state END,
            held_while_blocked = t.held_while_blocked AND t.state = 'blocked'
                                 AND coalesce(n.previous_state IN ('terminated', 'blocked'), false),
            worker = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                                 ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                               ELSE t.planned_end END,
            state_reason = CASE WHEN t.state <> 'blocked' OR n.previous_state IN ('terminated', 'blocked') THEN ''
                                WHEN t.held_while_blocked THEN 'held by an operator, as before it was blocked: '
                                WHEN n.group_hold IS NOT NULL THEN n.group_hold || '; ' ELSE '' END || CASE
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
            -- that a task three links down named a task it did not wait for: migration 0073)
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                held_while_blocked = t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason),
                state_reason = CASE
                    -- (behind one the sweep links past a task cancelled while its series' lock was busy, above)
                    WHEN cause.state = 'cancelled' AND r.series_tile = cause.series_tile AND r.routine = cause.routine
                         AND r.campaign_id IS NOT DISTINCT FROM cause.campaign_id THEN
                        format('waits for task %s, which is blocked behind task %s, cancelled while its time series'' '
                               'lock was busy: the orchestrator''s sweep links it past that task within a minute, and '
                               'the tasks after it then run in order', t.depends_on, cause.id)
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

CREATE OR REPLACE FUNCTION hrwsi.upstream_wait_reason(upstream bigint) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT format('waits for the scene sensed before it, input %s, whose %s task %s %s: it runs after that '
                  'scene''s own task in its series', o.input_id, o.routine, o.id,
                  CASE WHEN o.state = 'processed'
                            AND EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = o.id AND p.chained_at IS NULL)
                       THEN 'is processed but its products are not chained yet'
                       -- (a wait its end left to the orchestrator's sweep, the series' lock being busy then:
                       -- "is still running" of a task that had ended; found by review, migration 0078)
                       WHEN o.state IN ('processed', 'terminated', 'cancelled')
                       THEN format('ended %s; the orchestrator releases this wait within a minute', o.state)
                       -- (an open one: no state of it, which its next step outgrows while this reason stays, as
                       -- "has not run yet" of a task that ran; only its end, retry or chaining decide the wait again:
                       -- migration 0095, found by review)
                       ELSE format('has not ended yet (`hrwsi task show %s` says where it is)', o.id) END)
    FROM hrwsi.processing_task o WHERE o.id = upstream
$$;

CREATE OR REPLACE FUNCTION hrwsi.wait_for_upstream(p_tasks bigint[]) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    released integer;
    released_pending integer;
    released_planned integer;
BEGIN
    WITH target AS (
        SELECT t.id, t.state, w.task_id AS wait,
               format('waits for the scene sensed before it, input %s, whose %s task %s %s: it runs after that '
                      'scene''s own task in its series', w.input_id, w.routine, w.task_id,
                      -- (an open one's state not said: it outgrew it, and the reason stayed; migration 0095)
                      CASE w.state WHEN 'processed' THEN 'is processed but its products are not chained yet'
                           ELSE format('has not ended yet (`hrwsi task show %s` says where it is)', w.task_id) END)
                   AS wait_reason
        FROM processing_task t
        LEFT JOIN processing_task p ON p.id = t.depends_on
        LEFT JOIN LATERAL hrwsi.open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at,
                                                   t.series_at) w ON true
        WHERE t.id = ANY (p_tasks) AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), locked AS MATERIALIZED (
        -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        SELECT t.id FROM processing_task t JOIN target x ON x.id = t.id
        WHERE (t.waits_for_upstream IS DISTINCT FROM x.wait
               OR (x.wait IS NOT NULL AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM x.wait_reason))
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked') AND NOT t.dependency_waived
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), changed AS (
        UPDATE processing_task t
        SET waits_for_upstream = x.wait,
            state = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE
                WHEN t.state IN ('on_hold', 'blocked') THEN t.state_reason
                WHEN x.wait IS NOT NULL THEN x.wait_reason
                ELSE (SELECT format('no longer waits for the scene sensed before it, input %s: its %s task %s %s',
                                    o.input_id, o.routine, o.id,
                                    CASE WHEN o.state = 'processed' THEN 'was processed and its products chained'
                                         WHEN o.state IN ('terminated', 'cancelled')
                                         THEN 'ended ' || o.state || ': it runs without that scene'
                                         ELSE 'is ' || o.state END)
                      FROM processing_task o WHERE o.id = t.waits_for_upstream)
            END
        FROM target x
        -- (and a pending one that waits for the same task, whose state its reason told, says the new one)
        WHERE t.id = x.id AND (t.waits_for_upstream IS DISTINCT FROM x.wait
                               OR (x.wait IS NOT NULL AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM x.wait_reason))
          -- (the row as it is when this UPDATE locks it: a dispatch that claimed it meanwhile, or an
          -- operator's release, left it dispatched, or waived, with a wait and a "waits for" reason;
          -- found by review)
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked') AND NOT t.dependency_waived
          AND t.id IN (SELECT l.id FROM locked l)
        RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, x.state AS old_state, x.wait
    ), history AS (
        -- (what it waits for, or waited for, in its history; a change of state writes its own row)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c
        WHERE c.state = c.old_state AND c.state = 'pending'
    )
    SELECT count(*) FILTER (WHERE c.wait IS NULL), count(*) FILTER (WHERE c.wait IS NULL AND c.state = 'pending'),
           count(*) FILTER (WHERE c.wait IS NULL AND c.state = 'planned')
    INTO released, released_pending, released_planned FROM changed c;
    -- (a planned task released runs on its plan: the launchers are told too; found by review)
    IF released_pending + released_planned > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts', json_strip_nulls(json_build_object(
            'pending', nullif(released_pending, 0), 'planned', nullif(released_planned, 0))))::text);
    END IF;
    RETURN released;
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
                                      WHEN t.held_while_blocked THEN 'held by an operator, as before it was blocked: '
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
                         WHEN c.state = 'on_hold' AND NOT target.on_hold AND c.state_reason LIKE 'routine on hold: %'
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
                                WHEN c.state = 'on_hold' AND (target.on_hold OR c.state_reason NOT LIKE 'routine on hold: %')
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN NOT target.sequential_per_tile AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
                                    THEN CASE WHEN c.state = 'blocked' AND t.held_while_blocked
                                              THEN 'held by an operator, as before it was blocked: ' ELSE '' END
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
                state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN s.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                             WHEN t.state = 'blocked' AND t.held_while_blocked THEN 'on_hold'  -- (migration 0095)
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = t.held_while_blocked AND t.state = 'blocked'
                                     AND coalesce(s.previous_state IN ('terminated', 'blocked'), false),
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                    WHEN t.state = 'blocked' AND t.held_while_blocked
                                         AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false)
                                    THEN 'held by an operator, as before it was blocked: ' ELSE '' END
                               || CASE WHEN t.state = 'on_hold' THEN ''
                                    ELSE CASE WHEN t.id = ANY (moved_ids) THEN moved_reason
                                              ELSE format('tasks of routine %s moved into its time series', from_routine) END
                                         || CASE WHEN s.previous IS NULL
                                                 THEN ': it is the first of its time series now, and waits for no task'
                                                 WHEN s.previous_state IN ('terminated', 'blocked')
                                                 THEN format(': it waits for task %s, sensed before it, which is %s '
                                                             '(`hrwsi task show %s` says why)', s.previous,
                                                             s.previous_state, s.previous)
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

REVOKE EXECUTE ON FUNCTION hrwsi.hold_a_new_task_takes(text, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION hrwsi.hold_is_the_tasks_own(text) FROM PUBLIC;
