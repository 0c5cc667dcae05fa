-- hrwsi schema, version 61: a late scene behind a blocked one is blocked with it.
--
-- A time series' tasks after a blocked task are blocked with it (migration 0060), but a scene that
-- arrived later, behind a task already blocked or terminated, was created `pending` and waited for
-- ever with no reason (found by exploratory testing, 2026-12-05). It is blocked at once, saying
-- which task it waits for (behind a terminated one with an alert, as when that task ends so), and
-- so are the tasks after it; a task a late scene's link unblocked and then blocked again behind
-- the late one no longer unblocks the tasks after it.

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
    END IF;
    RETURN NULL;
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
