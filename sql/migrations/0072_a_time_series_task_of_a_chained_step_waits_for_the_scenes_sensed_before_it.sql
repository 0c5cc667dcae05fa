-- hrwsi schema, version 72: a time-series task of a chained step waits for the upstream work of the
-- scenes of its tile sensed before it.
--
-- A time-series routine's task reads the products of the task of the scene sensed just before it
-- (its dependency), so a series must run in sensing order. Fed by another routine (prep L1C -> L2A,
-- then ts L2A -> TS, sequential_per_tile), it ran in the order its upstream work finished: scenes A
-- (10:00) and B (11:00) of a tile, prep(A) slow and prep(B) fast; prep(B)'s product was chained, ts(B)
-- was created as the series' first and ran, reading no previous product; then ts(A) came and was
-- linked before B, but ts(B) had run without A (found by exploratory testing). Now a time-series task
-- waits (processing_task.waits_for_upstream) while a scene of its tile sensed before it, and after
-- the task it depends on, has an open task of an upstream routine in its scope (production, or its
-- campaign), or a processed one whose products are not chained yet: it is neither planned nor
-- dispatched, and says why. Decided when such a task is created or retried, and when an upstream task
-- is created, ends, is retried or has its products chained (a trigger on hrwsi.product), each under
-- the series' lock; dispatch and the plan read the column. The tasks not started at the upgrade
-- decide once, here.

ALTER TABLE hrwsi.processing_task ADD COLUMN waits_for_upstream bigint;

-- The tasks that wait for an upstream task (hrwsi.wait_for_upstream_after, when that task ends or its
-- products are chained): empty but for time series of chained steps whose earlier scenes are on their way.
CREATE INDEX processing_task_waits_for_upstream_idx ON hrwsi.processing_task (waits_for_upstream)
    WHERE waits_for_upstream IS NOT NULL;

-- =============================================================================================
-- A time series of a chained step runs in sensing order (migration 0072). A time-series task reads
-- the products of the task of the scene sensed just before it; when its inputs are the products of
-- an upstream routine (L1C -> L2A -> time series), a scene whose upstream work ended first made its
-- task first: a later scene's ran as the series' first, reading nothing, and the earlier scene's
-- came after it (found by exploratory testing). A time-series task now waits (waits_for_upstream)
-- while a scene of its tile sensed before it, after the task it depends on, has an open task of an
-- upstream routine in its scope, or a processed one whose products are not chained yet: chaining
-- then makes that scene's task, which takes its place before it (hrwsi.create_tasks_for_new_inputs).
--
-- Decided where the work changes, never in dispatch or the plan (they read the column): when a
-- time-series task is created or retried, and when an upstream task is created, ends, is retried or
-- has its products chained. Each of these takes the series' lock (the one two INSERTs of a series
-- take: 7250010, routine/tile) before it reads or after it writes, so that what one wrote the other
-- reads: a task created while the upstream task ended sees it ended, or is seen waiting by the end's
-- own look.
-- =============================================================================================

-- The first open upstream work (by sensing time) of time-series routine p_routine on tile p_tile,
-- in scope p_campaign (NULL: production), sensed in [p_from, p_before): p_from is the sensing time
-- of the task the series task depends on (NULL: none), since the scenes before that one come before
-- that task, not between the two. Through input_condition_tile_measured_idx (one range per upstream
-- condition), the tasks' (input_id, campaign_id) key and product_task_idx.
CREATE FUNCTION hrwsi.open_upstream_work(p_routine text, p_tile text, p_campaign bigint, p_from timestamptz,
                                         p_before timestamptz)
RETURNS TABLE (task_id bigint, input_id bigint, routine text, state text)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT u.id, i.id, u.routine, u.state
    FROM processing_routine r
    JOIN processing_routine up ON up.output_product_type = r.input_product_type
    JOIN processing_condition c ON c.routine = up.name
    JOIN input i ON i.processing_condition = c.name AND i.tile = p_tile
     AND i.measured_at >= coalesce(p_from, '-infinity') AND i.measured_at < p_before
    JOIN processing_task u ON u.input_id = i.id AND u.campaign_id IS NOT DISTINCT FROM p_campaign
    WHERE r.name = p_routine
      AND (u.state NOT IN ('processed', 'terminated', 'cancelled')
           OR (u.state = 'processed' AND EXISTS (SELECT 1 FROM product p WHERE p.task_id = u.id AND p.chained_at IS NULL)))
    ORDER BY i.measured_at, u.id
    LIMIT 1
$$;

-- Decide again what the given time-series tasks wait for, those that have not started (pending,
-- planned, held or blocked) and were not released by an operator: the first open upstream work
-- before them, or nothing. A planned task that waits goes back to pending; a pending one says why in
-- its reason and its history (a held or blocked one keeps its own reason); one that waits no more
-- says what it waited for, and the orchestrator and the launchers are woken (hrwsi_task pending, or
-- planned: a planned task released is dispatched on its plan). The caller holds the series' locks.
-- Returns how many wait no more.
CREATE FUNCTION hrwsi.wait_for_upstream(p_tasks bigint[]) RETURNS integer LANGUAGE plpgsql
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
                      CASE w.state WHEN 'processed' THEN 'is processed but its products are not chained yet'
                           WHEN 'pending' THEN 'has not run yet' WHEN 'planned' THEN 'has not run yet'
                           WHEN 'on_hold' THEN 'is on hold' WHEN 'blocked' THEN 'is blocked'
                           ELSE 'is still running' END) AS wait_reason
        FROM processing_task t
        LEFT JOIN processing_task p ON p.id = t.depends_on
        LEFT JOIN LATERAL hrwsi.open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at,
                                                   t.series_at) w ON true
        WHERE t.id = ANY (p_tasks) AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
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

-- After upstream tasks were created, ended, retried or had their products chained: the time-series
-- tasks concerned decide again what they wait for, under their series' locks (taken in order). Those
-- are the tasks that waited for one of them and, per downstream series, the first task after its
-- scene (a task after that one waits for it through its dependency; a started one keeps what it ran
-- with).
-- p_may_add_waits: the upstream tasks were created or retried, so tasks may wait from now on: the
-- locks are waited for. Otherwise they ended or their products were chained, which only releases
-- waits: a series whose lock another transaction holds is skipped, not waited for (its tasks keep
-- waiting, safely, until hrwsi.recheck_upstream_waits, the orchestrator's sweep, decides them). The
-- launcher's outcome writer waited here, up to its lock timeout, for any transaction holding one (a
-- data engineer's INSERT of upstream inputs not committed), then failed, and dispatch paused with it
-- (found by review). A lock this transaction holds already is granted again.
CREATE FUNCTION hrwsi.wait_for_upstream_after(p_upstream bigint[], p_may_add_waits boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on
SET enable_hashjoin = on SET enable_mergejoin = on AS $$
DECLARE
    series record;
    skipped text[] := '{}';  -- routine/tile of the series whose lock was busy
BEGIN
    FOR series IN
        SELECT d.name AS routine, i.tile
        FROM processing_task u JOIN input i ON i.id = u.input_id
        JOIN processing_routine r ON r.name = u.routine
        JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
        WHERE u.id = ANY (p_upstream) AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
        UNION
        -- (and the series of the tasks that wait for them, whatever the routines read now)
        SELECT t.routine, t.series_tile FROM processing_task t WHERE t.waits_for_upstream = ANY (p_upstream)
        ORDER BY 1, 2
    LOOP
        IF p_may_add_waits THEN
            PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
        ELSIF NOT pg_try_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile)) THEN
            skipped := skipped || (series.routine || '/' || series.tile);
        END IF;
    END LOOP;
    PERFORM hrwsi.wait_for_upstream(ARRAY(
        SELECT t.id FROM processing_task t
        WHERE t.waits_for_upstream = ANY (p_upstream) AND t.routine || '/' || t.series_tile <> ALL (skipped)
        UNION
        SELECT n.id
        FROM processing_task u JOIN input i ON i.id = u.input_id
        JOIN processing_routine r ON r.name = u.routine
        JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
        CROSS JOIN LATERAL (
            SELECT t.id FROM processing_task t
            WHERE t.routine = d.name AND t.series_tile = i.tile AND t.series_at > i.measured_at
              AND t.campaign_id IS NOT DISTINCT FROM u.campaign_id AND t.state <> 'cancelled'
            ORDER BY t.series_at, t.id LIMIT 1) n
        WHERE u.id = ANY (p_upstream) AND d.name || '/' || i.tile <> ALL (skipped)));
END $$;

-- Products chained (the harvester's chain_products): the time-series tasks that waited for their
-- tasks decide again, in the chaining's own statement, so that the task of the scene they waited
-- for is linked before them (by the input trigger) before either can be dispatched.
CREATE FUNCTION hrwsi.after_products_chained() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    upstream bigint[];
BEGIN
    SELECT array_agg(DISTINCT n.task_id) INTO upstream
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.chained_at IS NOT NULL AND o.chained_at IS NULL AND n.task_id IS NOT NULL
      AND n.product_type IN (SELECT r.input_product_type FROM processing_routine r WHERE r.sequential_per_tile);
    IF upstream IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(upstream, false);  -- (only releases: no lock waited for)
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER product_chained AFTER UPDATE ON hrwsi.product
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_products_chained();

-- The orchestrator's sweep (its periodic step with lane ageing): the time-series tasks, not started,
-- that wait for an upstream task that is over (ended, or processed with its products chained) decide
-- again, under their series' locks, those it gets (try-locks: it never waits). A wait was never
-- cleared when the upstream task's routine no longer fed the series as it ended (`hrwsi move-tasks`
-- to a routine that writes another type, a routine's types changed) or when its end skipped a series
-- whose lock was busy (hrwsi.wait_for_upstream_after; found by review). Bounded (p_limit tasks a
-- call, through the partial index of the waits: one probe when nothing waits). Returns how many wait
-- no more.
CREATE FUNCTION hrwsi.recheck_upstream_waits(p_limit integer DEFAULT 1000) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    series record;
    tasks bigint[] := '{}';
BEGIN
    FOR series IN
        SELECT w.routine, w.series_tile, array_agg(w.id) AS ids
        FROM (SELECT t.id, t.routine, t.series_tile
              FROM processing_task t JOIN processing_task u ON u.id = t.waits_for_upstream
              WHERE t.waits_for_upstream IS NOT NULL AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
                AND NOT t.dependency_waived AND hrwsi.task_state_is_final(u.state)
                AND NOT (u.state = 'processed'
                         AND EXISTS (SELECT 1 FROM product p WHERE p.task_id = u.id AND p.chained_at IS NULL))
              ORDER BY t.waits_for_upstream, t.id LIMIT p_limit) w
        GROUP BY w.routine, w.series_tile ORDER BY 1, 2
    LOOP
        IF pg_try_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.series_tile)) THEN
            tasks := tasks || series.ids;
        END IF;
    END LOOP;
    IF cardinality(tasks) = 0 THEN
        RETURN 0;
    END IF;
    RETURN hrwsi.wait_for_upstream(tasks);
END $$;

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
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                state_reason = format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it '
                                      'runs once that task has run', a.root, a.root)
            FROM after_it a WHERE t.id = a.id $q$;
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
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried or released', a.root)
            FROM after_it a WHERE t.id = a.id $q$;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    missing text;
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
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition".',
                                  missing),
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
            RAISE EXCEPTION 'condition % is inactive: ops stopped it (active = false), so it takes no new input', missing
                USING ERRCODE = 'check_violation',
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

    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order. An
    -- upstream task of a time series (feeds) takes the lock of the series downstream of its tile too,
    -- in the same order (migration 0072): it makes the series' tasks after its scene wait for it.
    IF feeds THEN
        FOR series IN
            SELECT c.routine, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            UNION
            SELECT d.name, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
            WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            ORDER BY 1, 2
        LOOP
            PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
        END LOOP;
    ELSIF sequential THEN
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
           -- A campaign's input (a product it made, chained) is reprocessing, and an input in a lane
           -- less urgent than its condition's is back-fill: neither has a deadline. (A back-fill's
           -- deadline, counted from a sensing months ago, was missed the moment its task existed: it
           -- was served before fresh scenes, earliest deadline first, and alerted; migration 0048.)
           -- (the condition's lane read only for an input naming another: a burst's rows name none)
           CASE WHEN n.campaign_id IS NULL
                     AND (n.lane IS NULL OR n.lane = c.lane
                          OR l.priority <= (SELECT cl.priority FROM lane cl WHERE cl.name = c.lane)) THEN
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
            ), linked AS (
                UPDATE processing_task t
                SET depends_on = link.previous,
                    state = CASE WHEN p.state IN ('terminated', 'blocked') THEN 'blocked'
                                 WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                    worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                    planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                    planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                    state_reason = CASE
                        WHEN p.state = 'terminated' THEN
                            format('its dependency, task %s, ended terminated; `hrwsi retry %s` runs the dependency '
                                   'again, `hrwsi release %s` runs this task without it', p.id, p.id, t.id)
                        WHEN p.state = 'blocked' THEN
                            format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it runs '
                                   'once that task has run', p.id, p.id)
                        WHEN link.fresh OR t.state = 'on_hold' THEN t.state_reason
                        ELSE format('a scene sensed before it arrived late (task %s): it runs after it',
                                    link.previous) END
                FROM link JOIN processing_task p ON p.id = link.previous
                WHERE t.id = link.id
                  AND (link.fresh OR (t.depends_on IS DISTINCT FROM link.previous AND NOT t.dependency_waived
                                      AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')))
                RETURNING t.id, t.routine, t.state_reason, p.state AS previous_state
            )
            -- (ops are told of a task blocked by a terminated dependency, as when it ends so)
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', l.id, l.routine), l.state_reason,
                   l.id, l.routine
            FROM linked l WHERE l.previous_state = 'terminated' $q$;
        -- An urgent task waits for the tasks before it in its series: those less urgent (a back-fill
        -- of the same tile) are served as urgently as it, down the series to the first that runs or
        -- ran (priority inheritance). Else a near-real-time scene waited for archive tasks served
        -- after every other near-real-time task (found by exploratory testing: 78 s, where the three
        -- archive tasks before it took 24 s; migration 0052). From the new tasks and the tasks now
        -- after them; a statement of its own, so that it follows the links just made.
        EXECUTE $q$
            WITH RECURSIVE waiting AS (
                SELECT d.id, u.priority
                FROM (SELECT t.priority, t.depends_on FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                      WHERE t.depends_on IS NOT NULL
                      UNION ALL
                      SELECT s.priority, s.depends_on
                      FROM processing_task f JOIN new_rows n ON n.id = f.input_id
                      JOIN processing_task s ON s.depends_on = f.id) u
                JOIN processing_task d ON d.id = u.depends_on
                WHERE d.priority > u.priority AND d.state IN ('pending', 'planned')
                UNION
                SELECT d.id, w.priority
                FROM waiting w JOIN processing_task p ON p.id = w.id JOIN processing_task d ON d.id = p.depends_on
                WHERE d.priority > w.priority AND d.state IN ('pending', 'planned')
            )
            UPDATE processing_task t SET priority = w.priority
            FROM (SELECT id, min(priority) AS priority FROM waiting GROUP BY id) w
            WHERE t.id = w.id AND t.priority > w.priority $q$;
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

CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock
BEGIN
    -- A task of a time series takes its series' lock first, then its row (migration 0072, amended):
    -- the task before it is read under the lock the INSERTs and the chaining of its series take, so a
    -- scene being chained meanwhile is seen once it commits, and both locks are taken in their order
    -- (series, then rows). It read the task before it, then took the lock: a scene being chained was
    -- not seen, and both tasks ran at once; and holding its row, it deadlocked with a chaining on the
    -- same tile that held the series and wanted the row (found by review).
    SELECT t.routine || '/' || t.series_tile INTO series FROM hrwsi.processing_task t
    WHERE t.id = task AND t.series_tile IS NOT NULL;
    IF series IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series));
    END IF;
    current := hrwsi.lock_task(task);
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
    WHERE t.id = task AND t.series_tile IS NOT NULL AND NOT t.dependency_waived;
    UPDATE hrwsi.processing_task
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL,
        state_reason = 'retried by an operator'
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
    -- open, as a new task would (migration 0072), under its series' lock (taken above; again here if
    -- an operator moved the task to another routine meanwhile).
    PERFORM pg_advisory_xact_lock(7250010, hashtext(t.routine || '/' || t.series_tile)), hrwsi.wait_for_upstream(ARRAY[t.id])
    FROM hrwsi.processing_task t WHERE t.id = task AND t.series_tile IS NOT NULL AND NOT t.dependency_waived;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision,
                               p_max_jobs integer, p_data_dir text)
RETURNS TABLE (job hrwsi.job_spec, work_waiting boolean) LANGUAGE plpgsql
-- As the owner (migration 0040), as the task trigger whose work its claim does: the history is
-- written by no role but the owner. Only hrwsi_service may call it (the grants at the end).
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- (as hrwsi.record_outcomes: every table through an index, whatever the statistics the plans were made with;
-- and no bitmap scan: a plain index scan marks the index entries of rows no longer there, so that the
-- next call skips them, where a bitmap scan read them all again in every call until a vacuum, in a
-- burst tens of thousands of tasks' entries for the states they left (migration 0034); hash and merge
-- joins and materialized inner sides as the planner's defaults, whatever the session's, turned off for
-- the claim's statements below; sorts too, turned off for the search of the serving lists)
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on SET enable_sort = on
-- (and the claim's statement says that it does the task and job triggers' work itself: migration 0040)
SET hrwsi.in_dispatch_claim = off AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A task is ready when its dependency
-- is processed and it waits for no upstream work of an earlier scene (waits_for_upstream, migration
-- 0072: a column of the row the cursor reads, no probe), or an operator released it. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009).
-- Returns a row per job to submit, each saying whether work was left waiting: a task this call
-- saw and did not start (its dependency, its routine's hold, capacity, a budget, the batch's
-- size). When it starts nothing, one row without a job says it. If no work waits, the end of a
-- job starts nothing, and the launcher does not call again for it (migration 0029).
DECLARE
    planned_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'planned' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    pending_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'pending' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    names text[]; flavours text[]; cap_cpu float8[]; cap_ram float8[]; cap_disk float8[];
    use_cpu float8[]; use_ram float8[]; use_disk float8[];
    b_cpu float8; b_ram float8; b_disk float8; b_vms integer;  -- the budgets (NULL: none)
    lease_fresh boolean;
    total_cpu float8 := 0; total_ram float8 := 0; total_disk float8 := 0; busy integer := 0;
    reserved boolean[]; budget_reserved boolean := false;
    c record; k integer; chosen integer; misses integer; last_k integer;
    scan_limit integer := 20 * p_max_jobs + 1000;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; from_planned boolean; seen integer := 0;
    installation text;
    idle boolean; idle_k integer; busy_seen integer;
    busy_workers integer;  -- active workers running something (of this call's claims too)
    locked_workers integer; named_workers integer;
    ignored text;  -- what set_config and pg_notify return, not used
BEGIN
    work_waiting := true;  -- until this call has seen every list
    IF NOT pg_try_advisory_xact_lock(7250002) THEN
        RAISE EXCEPTION 'another launcher is dispatching right now' USING ERRCODE = 'lock_not_available';
    END IF;

    -- Active workers with their flavour and what runs on them now; and, for the budgets, everything
    -- that runs, also on workers no longer active. (One pass over the running tasks for both: it is
    -- the part of a call that grows with the work in flight.) In the same statement, after the lock
    -- (its snapshot sees every claim committed before): whether our lease is fresh, the budgets and
    -- the installation (migration 0037: four statements before; what a call's statements cost is
    -- paid again, and more, by a server that has sat idle between two inputs).
    WITH usage AS (
        -- The tasks in flight through the index of their states: in a sub-query of its own (OFFSET
        -- 0), where no order of the tasks serves anything (migration 0038). Grouped by worker in
        -- the same query, a plan made while the table held a task or two read every task, in the
        -- order of the workers' index, in every call (40,002 to find none in flight).
        -- Each at what it was dispatched with, if its routine changed since (migration 0067).
        SELECT a.worker, sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_cpu ELSE r.cpu END)::float8 AS cpu,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_ram_mb ELSE r.ram_mb END)::float8 AS ram,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_storage_mb ELSE r.storage_mb END)::float8 AS disk
        FROM (SELECT t.worker, t.routine, t.attempts, t.held_attempt, t.held_cpu, t.held_ram_mb, t.held_storage_mb
              FROM processing_task t WHERE t.state IN ('dispatched', 'queued', 'running') OFFSET 0) a
        JOIN processing_routine r ON r.name = a.routine GROUP BY a.worker
    )
    SELECT array_agg(w.name ORDER BY w.name), array_agg(w.flavour ORDER BY w.name),
           array_agg(f.cpu::float8 ORDER BY w.name), array_agg(f.ram_mb::float8 ORDER BY w.name),
           array_agg(f.disk_mb::float8 ORDER BY w.name),
           array_agg(coalesce(u.cpu, 0) ORDER BY w.name), array_agg(coalesce(u.ram, 0) ORDER BY w.name),
           array_agg(coalesce(u.disk, 0) ORDER BY w.name), array_agg(false ORDER BY w.name),
           (SELECT coalesce(sum(a.cpu), 0) FROM usage a), (SELECT coalesce(sum(a.ram), 0) FROM usage a),
           (SELECT coalesce(sum(a.disk), 0) FROM usage a), (SELECT count(a.worker)::integer FROM usage a),
           count(*) FILTER (WHERE coalesce(u.cpu, 0) + coalesce(u.ram, 0) + coalesce(u.disk, 0) > 0)::integer,
           EXISTS (SELECT 1 FROM service_instance s
                   WHERE s.id = p_owner AND s.heartbeat_at > now() - make_interval(secs => p_lease_s)),
           (SELECT g.cpu_max::float8 FROM budget g WHERE g.id), (SELECT g.ram_max_mb::float8 FROM budget g WHERE g.id),
           (SELECT g.storage_max_mb::float8 FROM budget g WHERE g.id), (SELECT g.vm_max FROM budget g WHERE g.id),
           (SELECT i.installation_id::text FROM hrwsi.installation i WHERE i.id)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk, use_cpu, use_ram, use_disk, reserved,
         total_cpu, total_ram, total_disk, busy, busy_workers, lease_fresh, b_cpu, b_ram, b_disk, b_vms, installation
    FROM worker w JOIN flavour f ON f.name = w.flavour
    LEFT JOIN usage u ON u.worker = w.name
    WHERE w.active;
    IF NOT lease_fresh THEN
        PERFORM hrwsi.require_lease(p_owner, p_lease_s);  -- raises the fencing error, with its message
    END IF;
    IF names IS NULL THEN
        RETURN NEXT;  -- no job; work may wait
        RETURN;
    END IF;

    -- The serving lists are read in their indexes' order, never sorted (migration 0039): a call
    -- makes its plans at its session's first run and keeps them, and the first run of a launcher
    -- started while a burst waited that the table's statistics had not seen yet (a new
    -- installation, before autovacuum analyzed it) planned the probe below as a read of every
    -- pending task through the index of all states and a sort, in every call (40,010 tasks read
    -- to claim one of 20,001). Sorts are back for the statements after the search.
    -- (Each setting and wake-up call below is an assignment, not a PERFORM: a PERFORM is a query
    -- the executor starts and ends, an assignment's expression is evaluated without one; the four
    -- of a one-task call, 0.02 ms of its 1.1-1.2 ms, migration 0042.)
    ignored := set_config('enable_sort', 'off', true);
    <<lanes>>
    -- The serving lists in order (lane priority, then planned before pending), only those with a
    -- task in them: a probe of a list's index costs less than opening its cursor (migration 0033).
    -- Each probe reads its list's index in serving order and stops at the first task (migration
    -- 0034): without OFFSET 0, PostgreSQL made the EXISTS one hashed sub-query, which read every task
    -- of the list in every call; without the order, a probe of an empty list could read every
    -- pending task of the other priorities through the index of all states.
    FOR prio, from_planned IN
        SELECT p.priority, s.planned FROM (SELECT DISTINCT priority FROM lane UNION SELECT 0) p,
               (VALUES (true), (false)) s(planned)
        WHERE CASE WHEN s.planned
                   THEN EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'planned' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id OFFSET 0)
                   ELSE EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'pending' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.id OFFSET 0) END
        ORDER BY p.priority, s.planned DESC
    LOOP
        misses := 0;
        IF from_planned THEN OPEN planned_tasks(prio, scan_limit); ELSE OPEN pending_tasks(prio, scan_limit); END IF;
        LOOP
            IF from_planned THEN FETCH planned_tasks INTO c; ELSE FETCH pending_tasks INTO c; END IF;
            EXIT WHEN NOT FOUND;
            seen := seen + 1;
            IF cardinality(ids) >= p_max_jobs OR (budget_reserved AND prio > 0) THEN
                -- Enough for this call, or urgent work waits for a budget: nothing less urgent starts.
                IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
                EXIT lanes;
            END IF;
            -- Nothing fits after many tries in a row: the rest of this list waits for capacity.
            EXIT WHEN misses >= 200;
            CONTINUE WHEN NOT c.ready OR c.on_hold;
            IF (b_cpu IS NOT NULL AND total_cpu + c.cpu > b_cpu + 1e-9)
               OR (b_ram IS NOT NULL AND total_ram + c.ram > b_ram)
               OR (b_disk IS NOT NULL AND total_disk + c.disk > b_disk) THEN
                misses := misses + 1;
                -- An urgent task waits for the budget, and nothing less urgent starts meanwhile;
                -- unless it needs more than the whole budget: it never starts, and it held every
                -- back-fill with it (found by exploratory testing; migration 0064).
                IF prio = 0 AND NOT ((b_cpu IS NOT NULL AND c.cpu > b_cpu + 1e-9) OR (b_ram IS NOT NULL AND c.ram > b_ram)
                                     OR (b_disk IS NOT NULL AND c.disk > b_disk)) THEN
                    budget_reserved := true;
                END IF;
                CONTINUE;
            END IF;
            chosen := NULL;
            -- Its planned worker first; an urgent or pending task may take any worker: the one
            -- chosen last if it still fits (a burst fills one worker after the other without
            -- scanning them all), else those already busy first (fewest VMs), then idle ones
            -- while the VM budget allows.
            IF last_k IS NOT NULL AND NOT (c.state = 'planned' AND prio > 0)
               AND (c.worker IS NULL OR c.worker = names[last_k] OR NOT c.worker = ANY (names))
               AND (c.flavour IS NULL OR flavours[last_k] = c.flavour) AND NOT (reserved[last_k] AND prio > 0)
               AND use_cpu[last_k] + c.cpu <= cap_cpu[last_k] + 1e-9 AND use_ram[last_k] + c.ram <= cap_ram[last_k]
               AND use_disk[last_k] + c.disk <= cap_disk[last_k] THEN
                chosen := last_k;
            END IF;
            IF chosen IS NULL AND c.worker IS NOT NULL THEN
                k := array_position(names, c.worker);  -- its planned worker, if active
                IF k IS NOT NULL AND (c.flavour IS NULL OR flavours[k] = c.flavour) AND NOT (reserved[k] AND prio > 0)
                   AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                   AND use_disk[k] + c.disk <= cap_disk[k]
                   AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms) THEN
                    chosen := k;
                END IF;
            END IF;
            IF chosen IS NULL AND NOT (c.state = 'planned' AND prio > 0) THEN
                -- One pass: the first busy worker where it fits, else the first idle one where
                -- it fits (the scan ends there once every busy worker has been seen).
                idle_k := NULL; busy_seen := 0;
                FOR k IN 1..cardinality(names) LOOP
                    EXIT WHEN idle_k IS NOT NULL AND busy_seen >= busy_workers;  -- no busy one left
                    idle := use_cpu[k] + use_ram[k] + use_disk[k] = 0;
                    IF NOT idle THEN busy_seen := busy_seen + 1; END IF;
                    CONTINUE WHEN idle AND (idle_k IS NOT NULL OR (b_vms IS NOT NULL AND busy + 1 > b_vms));
                    CONTINUE WHEN (c.flavour IS NOT NULL AND flavours[k] <> c.flavour) OR (reserved[k] AND prio > 0)
                               OR use_cpu[k] + c.cpu > cap_cpu[k] + 1e-9 OR use_ram[k] + c.ram > cap_ram[k]
                               OR use_disk[k] + c.disk > cap_disk[k];
                    IF NOT idle THEN
                        chosen := k;
                        EXIT;
                    END IF;
                    idle_k := k;
                END LOOP;
                chosen := coalesce(chosen, idle_k);
            END IF;
            IF chosen IS NULL THEN
                misses := misses + 1;
                IF prio = 0 THEN
                    -- Reserve the worker (of a flavour it fits) with the most free CPU: it frees
                    -- enough first, as far as hrwsi can tell.
                    SELECT i INTO k FROM generate_subscripts(names, 1) i
                    WHERE NOT reserved[i] AND (c.flavour IS NULL OR flavours[i] = c.flavour)
                      AND c.cpu <= cap_cpu[i] AND c.ram <= cap_ram[i] AND c.disk <= cap_disk[i]
                    ORDER BY cap_cpu[i] - use_cpu[i] DESC, i LIMIT 1;
                    IF k IS NOT NULL THEN reserved[k] := true; END IF;
                END IF;
                CONTINUE;
            END IF;
            misses := 0;
            last_k := chosen;
            IF use_cpu[chosen] + use_ram[chosen] + use_disk[chosen] = 0 THEN
                busy := busy + 1; busy_workers := busy_workers + 1;
            END IF;
            use_cpu[chosen] := use_cpu[chosen] + c.cpu;
            use_ram[chosen] := use_ram[chosen] + c.ram;
            use_disk[chosen] := use_disk[chosen] + c.disk;
            total_cpu := total_cpu + c.cpu; total_ram := total_ram + c.ram; total_disk := total_disk + c.disk;
            ids := ids || c.id;
            chosen_workers := chosen_workers || names[chosen];
            was_pending := was_pending || (c.state = 'pending');
        END LOOP;
        IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
    END LOOP;

    -- From here on, the statements look up the claimed tasks and their jobs by key: nested loops
    -- over index probes, planned so whatever the tables' sizes when the plans were made (a merge
    -- or hash join planned on small tables read every job or every task in every call, and a
    -- nested loop may read a small table whole once and keep it; for the rest of this call: its
    -- SET clauses restore them on return).
    ignored := set_config('enable_hashjoin', 'off', true) || set_config('enable_mergejoin', 'off', true)
               || set_config('enable_material', 'off', true) || set_config('enable_sort', 'on', true)
               || set_config('hrwsi.in_dispatch_claim', 'on', true);
    IF cardinality(ids) = 0 THEN
        work_waiting := seen > 0;
        RETURN NEXT;  -- no job
        RETURN;
    END IF;
    -- A task whose next attempt already has a job row (a stray row someone inserted by hand) is not
    -- claimed (the claim's probe of the job's key per task: OFFSET 0, never a join, which, planned
    -- on a few jobs, read them all in every call); it is set aside with the reason below, and the
    -- others are dispatched. (A statement of its own before the claim until migration 0037.)
    -- Each claimed task is a probe of its key, `= ANY (ARRAY[x.id])` (migration 0038): an equality
    -- with the batch, or a join with the routines, let the planner read the task table in the order
    -- of an index, and a plan made while the table held a task or two did so, whole, for every
    -- claimed task (a burst's call of 2,000 tasks against 20,000 took 5.4 s until autovacuum
    -- analyzed the table). As written, no order of the tasks serves the statement, and the only
    -- way to them the plan may take is through their key.
    WITH claimed AS (
        UPDATE processing_task t
        SET state = 'dispatched', attempts = t.attempts + 1, worker = x.worker,
            planned_start = CASE WHEN x.pending THEN now() ELSE t.planned_start END,
            planned_end = CASE WHEN x.pending
                               THEN now() + (SELECT r.expected_duration FROM processing_routine r WHERE r.name = t.routine)
                               ELSE t.planned_end END,
            state_reason = CASE WHEN x.pending THEN 'dispatched at once: capacity was free' END,
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = NULL, history_pruned_at = NULL
        FROM unnest(ids, chosen_workers, was_pending) WITH ORDINALITY AS x(id, worker, pending, n)
        WHERE t.id = ANY (ARRAY[x.id])
          AND NOT EXISTS (SELECT 1 FROM job j WHERE j.task_id = x.id AND j.attempt = t.attempts + 1 OFFSET 0)
        RETURNING t.id, t.routine, t.attempts, t.worker, t.state_reason, x.n,
                  'hrwsi-' || lower(regexp_replace(t.routine, '[^A-Za-z0-9_.-]', '-', 'g')) || '-' || t.id
                      || '-' || t.attempts AS backend_job_id
    ), inserted AS (
        INSERT INTO job (task_id, attempt, backend, backend_job_id, worker, owner, log_path, output_dir,
                         routine_version)
        SELECT cl.id, cl.attempts, p_backend, cl.backend_job_id, cl.worker, p_owner,
               p_data_dir || '/logs/' || installation || '/' || cl.routine || '/' || cl.backend_job_id || '.log',
               p_data_dir || '/products/' || installation || '/' || cl.routine || '/task-' || cl.id
                   || '/attempt-' || cl.attempts || '/output',
               -- one index probe per claimed task (a join would be planned as a scan of every task)
               (SELECT p.routine_version FROM task_program p WHERE p.task_id = cl.id)
        FROM claimed cl
        ORDER BY cl.n  -- job ids in serving order (array_position(ids, id) was quadratic in the batch)
        RETURNING id
    ), history AS (
        -- What hrwsi.after_task_changes writes for an UPDATE, which this statement does not call
        -- (hrwsi.in_dispatch_claim; nor hrwsi.after_jobs_inserted: its jobs name the tasks claimed
        -- here): a history row per claimed task ...
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT cl.id, 'dispatched', cl.state_reason, cl.attempts, cl.worker FROM claimed cl
    ), workers_locked AS (
        -- ... and each worker it puts tasks on locked, as a foreign key would, then counted below
        SELECT w.name FROM worker w WHERE w.name = ANY (chosen_workers) FOR KEY SHARE OF w
    )
    SELECT array_agg(i.id), (SELECT count(*) FROM workers_locked),
           (SELECT count(DISTINCT n.name) FROM unnest(chosen_workers) n(name))
    INTO new_jobs, locked_workers, named_workers FROM inserted i;
    IF locked_workers < named_workers THEN
        PERFORM hrwsi.refuse_a_missing_worker(chosen_workers);  -- removed since this call read the active ones
    END IF;
    IF new_jobs IS NOT NULL THEN
        -- The wake-up calls the triggers send (docs/adr/0001), at commit: work under way, on the
        -- `_progress` channels, which the launcher does not listen to (migration 0043).
        ignored := pg_notify('hrwsi_task_progress', json_build_object(
            'op', 'update', 'counts', json_build_object('dispatched', cardinality(new_jobs)))::text);
        ignored := pg_notify('hrwsi_job_progress', json_build_object(
            'op', 'insert', 'counts', json_build_object('submitted', cardinality(new_jobs)))::text);
    END IF;
    work_waiting := seen > coalesce(cardinality(new_jobs), 0);
    IF coalesce(cardinality(new_jobs), 0) < cardinality(ids) THEN
        -- Stray job rows: the tasks not claimed say why (each still locked by this call's cursor).
        UPDATE processing_task t SET state_reason = format(
            'not dispatched: a job row for its attempt %s already exists (job %s) that hrwsi did not create; '
            'remove that row (or cancel the task) and it is dispatched', t.attempts + 1,
            (SELECT j.id FROM job j WHERE j.task_id = t.id AND j.attempt = t.attempts + 1))
        WHERE t.id = ANY (ids) AND t.state IS DISTINCT FROM 'dispatched';
        IF new_jobs IS NULL THEN
            RETURN NEXT;  -- no job
            RETURN;
        END IF;
    END IF;
    -- A new statement: it sees the jobs just inserted.
    RETURN QUERY SELECT s, work_waiting FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;

-- A plan stores no task that waits for an earlier scene's upstream work (found by review).
CREATE OR REPLACE FUNCTION hrwsi.store_plan(
    p_owner text, p_lease_s double precision, p_generation bigint, p_planned_at timestamptz,
    p_task_count integer, p_makespan_s double precision, p_lower_bound_s double precision, p_vms integer,
    p_vm_hours double precision, p_planning_s double precision, p_figures jsonb,
    p_ids bigint[], p_workers text[], p_starts double precision[], p_ends double precision[],
    p_unplannable bigint[], p_reasons text[])
RETURNS TABLE (plan_id bigint, stored integer, reasons_changed integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
-- Optimistic: the plan was computed from what the database held at generation p_generation. If
-- another orchestrator stored a plan since, nothing is stored (the caller plans again), so two
-- plans never overlap each other's capacity. No lock is held while the planner computes. A task that
-- started to wait for an earlier scene's upstream work after the plan's snapshot (waits_for_upstream,
-- migration 0072) is neither planned nor given a reason: planned, it was never dispatched and held its
-- worker in later plans (found by review).
DECLARE
    new_plan bigint;
    n_stored integer := 0;
    n_reasons integer := 0;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    UPDATE plan_generation SET generation = generation + 1 WHERE generation = p_generation;
    IF NOT FOUND THEN
        RETURN;   -- stale: no row
    END IF;
    IF cardinality(p_ids) > 0 THEN
        INSERT INTO plan (task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s, figures)
        VALUES (p_task_count, p_makespan_s, p_lower_bound_s, p_vms, p_vm_hours, p_planning_s, p_figures)
        RETURNING id INTO new_plan;
        UPDATE processing_task t
        SET state = 'planned', worker = a.worker, planned_start = p_planned_at + make_interval(secs => a.start_s),
            planned_end = p_planned_at + make_interval(secs => a.end_s), plan_id = new_plan, state_reason = NULL
        FROM unnest(p_ids, p_workers, p_starts, p_ends) AS a(id, worker, start_s, end_s)
        WHERE t.id = a.id AND t.state = 'pending' AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_stored = ROW_COUNT;
    END IF;
    IF cardinality(p_unplannable) > 0 THEN
        UPDATE processing_task t SET state_reason = u.reason
        FROM unnest(p_unplannable, p_reasons) AS u(id, reason)
        WHERE t.id = u.id AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason
          AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_reasons = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT new_plan, n_stored, n_reasons;
END $$;

-- A time series of a chained step (migration 0072): the functions that decide what its tasks wait
-- for run as the owner, called by the trigger functions and hrwsi.retry_task alone; the trigger
-- function of chained products stays callable by whoever writes products.
REVOKE EXECUTE ON FUNCTION hrwsi.open_upstream_work(text, text, bigint, timestamptz, timestamptz),
    hrwsi.wait_for_upstream(bigint[]), hrwsi.wait_for_upstream_after(bigint[], boolean), hrwsi.after_products_chained(),
    hrwsi.recheck_upstream_waits(integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.recheck_upstream_waits(integer) TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.after_products_chained() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- The tasks of time series not started at the upgrade decide once what they wait for.
SELECT hrwsi.wait_for_upstream(ARRAY(
    SELECT t.id FROM hrwsi.processing_task t
    WHERE t.series_tile IS NOT NULL AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
      AND EXISTS (SELECT 1 FROM hrwsi.processing_routine r JOIN hrwsi.processing_routine up
                  ON up.output_product_type = r.input_product_type WHERE r.name = t.routine)));
