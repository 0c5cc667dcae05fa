-- hrwsi schema, version 129: the warning of a data engineer's input without a tile or a sensing time walks the chain
-- only where there is a time series or a multi-input group to miss.
--
-- Migration 0128's check ran its walk of the routines' chain for every statement of plain INSERTs without a tile,
-- in an installation with neither sequential_per_tile routines nor multi-input requirements too: a single-row INSERT
-- took 1.38-1.47 ms against 1.22-1.27 ms before it (3,000 statements, median, alternated on one server, session 78),
-- on the reaction latency's path. Two probes of two small tables first: 1.18-1.31 ms. What it says is unchanged.

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
    placeless boolean; -- a data engineer's input without a tile or a sensing time
    unplaced record;
BEGIN
    -- The conditions the new inputs name, each locked once, as the input's key locked it for every
    -- row (migration 0027), then checked: an input naming a condition that does not exist is
    -- refused as the key refused it, with its name and its message, and nothing is kept.
    -- (and whether a data engineer's row lacks a tile or a sensing time, in the same scan: said at the end)
    SELECT coalesce(array_agg(DISTINCT n.processing_condition), '{}'),
           coalesce(bool_or(n.source = 'sql' AND (n.tile IS NULL OR n.measured_at IS NULL)), false)
    INTO conditions, placeless
    FROM new_rows n;
    PERFORM 1 FROM processing_condition c WHERE c.name = ANY (conditions) FOR KEY SHARE OF c;
    SELECT x.name INTO missing FROM unnest(conditions) x(name)
    WHERE NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = x.name)
    LIMIT 1;
    IF FOUND THEN
        -- (which row: the statement's first naming it, and how many do; checked once per statement,
        -- after its rows, the refusal could not name a COPY's line; found by exploratory testing)
        SELECT n.input_path, count(*) OVER () INTO first_path, named
        FROM new_rows n WHERE n.processing_condition = missing ORDER BY n.id LIMIT 1;
        PERFORM hrwsi.refuse_an_input_of_a_missing_condition(missing, first_path, named);
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
    -- An input of a multi-input condition is a group, which the harvester makes (source 'multi_input', a path
    -- multi_input/<condition>/<tile>/<day>, its members recorded for its manifest) once the group is complete.
    -- A file a data engineer inserted into one ran its routine without members, failed each attempt, and two
    -- such inputs put the routine (or its back-fill) on hold, production's composites with it (found by
    -- exploratory testing; migration 0128). One probe per statement; the rows only when one names such a condition.
    IF EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = ANY (conditions)) THEN
        SELECT n.processing_condition INTO missing
        FROM new_rows n JOIN multi_input_rule m ON m.processing_condition = n.processing_condition
        WHERE n.source <> 'multi_input'
        LIMIT 1;
        IF FOUND THEN
            SELECT n.input_path, count(*) OVER () INTO first_path, named
            FROM new_rows n WHERE n.processing_condition = missing AND n.source <> 'multi_input' ORDER BY n.id LIMIT 1;
            RAISE EXCEPTION 'condition % is a multi-input condition: the harvester makes its inputs, one per complete '
                            'group of members (a tile and its window), and an input inserted into it would run its '
                            'routine without members', hrwsi.quoted_name(missing)
                USING ERRCODE = 'check_violation',
                      DETAIL = format('The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                      first_path, named),
                      HINT = 'insert the scenes into the conditions that make its members (`hrwsi config show` lists '
                             'them): their products make its groups; `hrwsi groups` shows what each group has and lacks';
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
    -- A time series and a multi-input group place an input by its tile and sensing time: a data engineer's input
    -- without them is processed, but joins neither, nor do the products chained from it (their inputs inherit
    -- them), and nothing said so: the composite down its chain was never made while `hrwsi groups` said no group
    -- waited (found by exploratory testing; migration 0128). Said once per statement, for the first condition
    -- whose inputs lack them and whose routine is a time series or whose chain reaches a multi-input condition.
    -- (a time series or a multi-input group to miss: an installation without either pays two probes of two small
    -- tables, not the chain's walk, which took 0.12-0.2 ms of every statement of the latency benchmark's plain
    -- INSERTs without a tile: migration 0129)
    IF placeless AND (EXISTS (SELECT 1 FROM processing_routine r WHERE r.sequential_per_tile)
                      OR EXISTS (SELECT 1 FROM multi_input_requirement)) THEN
        SELECT x.condition, x.first_path, x.named, w.series, w.groups INTO unplaced
        FROM (SELECT n.processing_condition AS condition, (array_agg(n.input_path ORDER BY n.id))[1] AS first_path,
                     count(*) AS named, min(n.id) AS first_id
              FROM new_rows n WHERE n.source = 'sql' AND (n.tile IS NULL OR n.measured_at IS NULL)
              GROUP BY 1) x
        CROSS JOIN LATERAL (
            SELECT (SELECT r.name FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
                    WHERE c.name = x.condition AND r.sequential_per_tile) AS series,
                   -- (the product types of the chain from the input on, itself a member when its routine reads a
                   -- type a group requires, as hrwsi.multi_input_members_now takes it)
                   (WITH RECURSIVE made (product_type) AS (
                        SELECT t.product_type FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
                        CROSS JOIN LATERAL (VALUES (r.input_product_type), (r.output_product_type)) t(product_type)
                        WHERE c.name = x.condition
                        UNION
                        SELECT d.output_product_type FROM made JOIN processing_routine d ON d.input_product_type = made.product_type
                        WHERE EXISTS (SELECT 1 FROM processing_condition dc WHERE dc.routine = d.name AND dc.active
                                      AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = dc.name))
                    )
                    SELECT string_agg(DISTINCT hrwsi.quoted_name(q.processing_condition), ', ')
                    FROM made JOIN multi_input_requirement q ON q.product_type = made.product_type
                    JOIN processing_condition qc ON qc.name = q.processing_condition AND qc.active) AS groups
        ) w
        WHERE w.series IS NOT NULL OR w.groups IS NOT NULL
        ORDER BY x.first_id LIMIT 1;
        IF FOUND THEN
            RAISE WARNING '% input(s) of condition % have no tile or no sensing time (measured_at): they are processed, '
                          'but %', unplaced.named, hrwsi.quoted_name(unplaced.condition),
                          concat_ws(', and ',
                                    CASE WHEN unplaced.series IS NOT NULL THEN format(
                                        'join no time series of routine %s (sequential_per_tile)',
                                        hrwsi.quoted_name(unplaced.series)) END,
                                    CASE WHEN unplaced.groups IS NOT NULL THEN format(
                                        'neither they nor the products chained from them join a group of the '
                                        'multi-input condition(s) %s, whose composites are never made of them',
                                        unplaced.groups) END)
                USING DETAIL = format('The first such row has input_path %s.', unplaced.first_path),
                      HINT = 'give tile and measured_at; SELECT hrwsi.correct_input(ID, tile => ..., measured_at => ...) '
                             'corrects an input inserted without them';
        END IF;
    END IF;
    RETURN NULL;
END $$;
