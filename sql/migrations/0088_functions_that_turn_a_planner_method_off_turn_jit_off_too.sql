-- hrwsi schema, version 88: every function that turns a planner method off turns JIT off too.
--
-- hrwsi's functions turn planner methods off for their statements (SET enable_seqscan = off, ...), so
-- that every row is read by key whatever the table's statistics. Up to PostgreSQL 17 a plan that uses a
-- method turned off costs ten billion more (disable_cost; PostgreSQL 18 counts such nodes apart), which
-- passes jit_above_cost (100,000), and JIT, on by default where the server was built with LLVM (Debian's,
-- the PGDG packages), compiled those statements at every call. Against Debian 12's PostgreSQL 15 the
-- bench's reaction latency was 82 ms at the median (2.6 ms with JIT off) and a near-real-time input's
-- under a back-fill 270 ms (2.2 ms): found by running the bench against it. The functions now SET jit =
-- off (the last of their SET clauses), and the INSERT trigger's time-series linking turns it off for its
-- statement and puts the session's value back, as it does enable_seqscan and enable_sort.
--
-- Run against the same server, the test suite found one more plan that PostgreSQL 18 did not make: the
-- outcome writer's hold of a held routine's failed tasks read every pending task through the index of
-- states (its generic plan made on a table of one task), 20,000 rows for one failed attempt. Its state
-- test is no longer one an index serves (hrwsi.record_outcomes).

ALTER FUNCTION hrwsi.after_task_changes() SET jit = off;
ALTER FUNCTION hrwsi.refuse_a_job_of_a_missing_task() SET jit = off;
ALTER FUNCTION hrwsi.after_jobs_inserted() SET jit = off;
ALTER FUNCTION hrwsi.refuse_removing_tasks_jobs_name() SET jit = off;
ALTER FUNCTION hrwsi.refuse_removing_inputs_tasks_name() SET jit = off;
ALTER FUNCTION hrwsi.refuse_removing_products_inputs_name() SET jit = off;
ALTER FUNCTION hrwsi.pass_deadlines_down(bigint[]) SET jit = off;
ALTER FUNCTION hrwsi.series_waiters_of(bigint[]) SET jit = off;
ALTER FUNCTION hrwsi.notify_state_counts() SET jit = off;
ALTER FUNCTION hrwsi.dispatch(text, text, double precision, integer, text) SET jit = off;
ALTER FUNCTION hrwsi.mark_jobs_progress(bigint[], text[], text[], timestamptz[], text[]) SET jit = off;

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

CREATE OR REPLACE FUNCTION hrwsi.record_outcomes(
    p_owner text, p_lease_s double precision, p_backoff_s double precision,
    p_jobs bigint[], p_states text[], p_exit_codes integer[], p_messages text[],
    p_started timestamptz[], p_finished timestamptz[], p_faults text[],
    p_product_jobs bigint[], p_product_paths text[], p_product_sizes bigint[])
RETURNS TABLE (job_id bigint, job_state text, task_id bigint, task_state text, failures integer,
               max_attempts integer, lost_count integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- Every table is read through an index (a plan cached when the tables were small would otherwise
-- scan them whole on every call once they are large). And every join is a nested loop over the
-- index of its key, without a materialized inner side (migration 0034): a merge join planned while
-- the task table was small read every task up to the batch's in every call (recording one outcome
-- read 40,000 tasks), and a nested loop may read a small table whole once and keep it.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off SET jit = off AS $$
#variable_conflict use_column
-- Only the owner of a job, holding a fresh lease, records its outcome. A product path that is
-- already registered (or listed twice) fails its job with the reason instead of being dropped.
-- Routine failures count toward max_attempts and the failure policy; lost attempts (a fault of
-- the infrastructure) are retried without limit, with backoff, and alerted when they repeat.
DECLARE
    -- Per outcome (by its position in p_jobs): where its products start in the product arrays, how
    -- many it has, and why its products cannot be registered. Products are listed in the order of
    -- their outcomes; each is found by its position, never by a join of one list with the other
    -- (under the generic plan, a nested loop: 3,000 outcomes with a product each took 1.6 s).
    outcomes integer := coalesce(cardinality(p_jobs), 0);
    product_first integer[] := array_fill(1, ARRAY[outcomes]);
    product_count integer[] := array_fill(0, ARRAY[outcomes]);
    conflict_message text[] := array_fill(NULL::text, ARRAY[outcomes]);
    product_outcome integer[] := '{}';
    i integer := 1;
    c record;
    done_jobs bigint[]; done_states text[]; done_tasks bigint[];
    position_of jsonb;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    FOR k IN 1..coalesce(cardinality(p_product_jobs), 0) LOOP
        WHILE i <= outcomes AND p_jobs[i] IS DISTINCT FROM p_product_jobs[k] LOOP
            i := i + 1;
        END LOOP;
        IF i > outcomes THEN
            RAISE EXCEPTION 'product % lists job %, which is not among the outcomes after the job of the product before it',
                p_product_paths[k], p_product_jobs[k]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'list the products in the order of their outcomes (p_jobs), each after its own job';
        END IF;
        IF product_count[i] = 0 THEN product_first[i] := k; END IF;
        product_count[i] := product_count[i] + 1;
        product_outcome := product_outcome || i;
    END LOOP;
    IF cardinality(product_outcome) > 0 THEN
        -- A path already registered, or listed twice: its attempt fails with the first such path.
        FOR c IN
            SELECT p.k, format('product %s is already registered (%s); nothing of this attempt was registered',
                               p.path, coalesce('by task ' || existing.task_id, 'twice in this batch')) AS message
            FROM (SELECT q.k, q.path, count(*) OVER (PARTITION BY q.path) AS listed
                  FROM unnest(p_product_paths) WITH ORDINALITY AS q(path, k)) p
            LEFT JOIN product existing ON existing.path = p.path
            WHERE existing.id IS NOT NULL OR p.listed > 1
            ORDER BY p.path
        LOOP
            IF conflict_message[product_outcome[c.k]] IS NULL THEN
                conflict_message[product_outcome[c.k]] := c.message;
            END IF;
        END LOOP;
    END IF;

    -- Each job's position in the arrays, found by key: no join of the batch with the job table. (A
    -- job listed twice keeps its first position, where its products are: the last value of a key wins.)
    SELECT jsonb_object_agg(o.id::text, o.n ORDER BY o.n DESC) INTO position_of
    FROM unnest(p_jobs) WITH ORDINALITY AS o(id, n);
    WITH finished AS (
        -- The batch's jobs through their primary key (= ANY), each with the outcome at its position,
        -- so that no plan can read the job table once per outcome. (Joined with the batch, a generic
        -- plan made while the job table was nearly empty took it for one row and did so until the
        -- next ANALYZE: 1,000 outcomes in 0.2-0.4 s instead of 45 ms. The state test is wrapped so
        -- that it cannot be served by the partial index of active jobs either.)
        UPDATE job j
        SET (state, exit_code, message, fault, started_at, finished_at) = (
            SELECT CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN conflict_message[x.n] IS NOT NULL THEN 'internal_error' ELSE p_states[x.n] END,
                   p_exit_codes[x.n],
                   CASE WHEN j.cancel_requested
                        THEN 'cancelled by an operator: ' || coalesce(conflict_message[x.n], p_messages[x.n])
                        ELSE coalesce(conflict_message[x.n], p_messages[x.n]) END,
                   CASE WHEN j.cancel_requested OR conflict_message[x.n] IS NOT NULL THEN NULL ELSE p_faults[x.n] END,
                   coalesce(j.started_at, p_started[x.n], now()), coalesce(p_finished[x.n], now())
            FROM (SELECT (position_of ->> j.id::text)::integer AS n) x),
            updated_at = now()  -- (what hrwsi.enforce_job_transition would set: not called for these rows)
        WHERE j.id = ANY (p_jobs) AND j.owner = p_owner AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
        RETURNING j.id, j.state, j.task_id, j.attempt, j.message, (position_of ->> j.id::text)::integer AS n,
                  j.fault, j.worker
    ), products AS (
        -- A processed attempt's products, by their positions in the product arrays.
        INSERT INTO product (task_id, path, product_type, size_bytes)
        SELECT f.task_id, p_product_paths[k], r.output_product_type, p_product_sizes[k]
        FROM finished f
        CROSS JOIN LATERAL generate_series(product_first[f.n], product_first[f.n] + product_count[f.n] - 1) AS k
        -- (each task and its routine a probe of their keys, `= ANY (ARRAY[...])`, as below)
        JOIN processing_task t ON t.id = ANY (ARRAY[f.task_id]) JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
        -- Only the attempts that list products (migration 0041): the task and routine of every
        -- processed attempt were probed, to register nothing for those without (1,000 outcomes of a
        -- burst without products: 4.4 ms of the call's 50).
        WHERE f.state = 'processed' AND product_count[f.n] > 0
        RETURNING product.task_id
    ), processed AS (
        -- (A processed attempt registered every product it listed: a conflict fails the attempt.)
        UPDATE processing_task t
        SET state = 'processed', state_reason = format('%s product(s)', product_count[f.n]), avoid_worker = NULL,
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = now(), history_pruned_at = NULL
        FROM finished f
        WHERE f.state = 'processed' AND t.id = ANY (ARRAY[f.task_id]) AND t.attempts = f.attempt
          -- (wrapped, as the jobs' state test above: each task is read through its primary key from
          -- the batch. Served by the index of task states, a generic plan made while few tasks ran
          -- took the running tasks for one row and compared every one with every outcome: 1,000
          -- outcomes in 200 ms instead of 50. And each task, and its routine, is a probe of its key,
          -- `= ANY (ARRAY[...])` (migration 0038): an equality with the batch, or with the routines,
          -- let the planner read the tasks in the order of an index, and a plan made while the table
          -- held a task or two read all 40,002 for one outcome.)
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.state, t.failures, t.lost_count
    ), failed AS (
        UPDATE processing_task t
        SET failures = t.failures + CASE WHEN f.state = 'lost' THEN 0 ELSE 1 END,
            lost_count = t.lost_count + CASE WHEN f.state = 'lost' THEN 1 ELSE 0 END,
            state = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN 'terminated'
                         ELSE 'pending' END,
            state_reason = format('attempt %s %s: %s', f.attempt, f.state, f.message)
                -- (where its next attempt goes: migration 0087; the workers read only for such an attempt)
                || CASE WHEN f.fault IS DISTINCT FROM 'not_placed' OR f.worker IS NULL THEN ''
                        WHEN EXISTS (SELECT 1 FROM worker w JOIN flavour fl ON fl.name = w.flavour
                                     WHERE w.active AND w.name <> f.worker AND (r.flavour IS NULL OR w.flavour = r.flavour)
                                       AND r.cpu <= fl.cpu AND r.ram_mb <= fl.ram_mb AND r.storage_mb <= fl.disk_mb)
                        THEN format('; its next attempt goes to another worker than %s', f.worker)
                        ELSE format('; no other active worker of a flavour it fits: its next attempt may go to %s again',
                                    f.worker) END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- The worker its next attempt avoids (migration 0087): where the backend could not place this
            -- one; kept through an attempt lost otherwise (it did not run), forgotten after one that ran.
            avoid_worker = CASE WHEN f.fault = 'not_placed' THEN f.worker WHEN f.state = 'lost' THEN t.avoid_worker END,
            not_before = now() + make_interval(secs => least(600.0, p_backoff_s * power(2, greatest(0,
                CASE WHEN f.state = 'lost' THEN t.lost_count ELSE t.failures END)))),
            -- (what hrwsi.enforce_task_transition would set: terminated is final, pending is not)
            updated_at = now(), history_pruned_at = NULL,
            finished_at = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN now() END
        FROM finished f, processing_routine r
        WHERE f.state IN ('internal_error', 'external_error', 'lost') AND t.id = ANY (ARRAY[f.task_id])
          AND t.attempts = f.attempt AND r.name = ANY (ARRAY[t.routine])
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.routine, t.state, t.state_reason, t.failures, t.lost_count, r.max_attempts
    ), alerted AS (
        -- An attempt lost again and again says the infrastructure is sick: tell ops (3rd, 6th, 12th...).
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_lost_repeatedly', format('hrwsi: task %s lost %s attempts', fl.id, fl.lost_count),
               format('Task %s (routine %s) lost %s attempts to infrastructure faults; last: %s. '
                      'It is retried with backoff; check the launchers, workers and backend.',
                      fl.id, fl.routine, fl.lost_count, fl.state_reason), fl.id, fl.routine
        FROM failed fl
        WHERE fl.lost_count IN (3, 6, 12, 24, 48, 96, 192)
    )
    SELECT array_agg(f.id), array_agg(f.state), array_agg(f.task_id)
    INTO done_jobs, done_states, done_tasks
    FROM finished f;  -- (processed, failed and alerted run all the same: a WITH that modifies data
                      -- always runs to completion, read or not)

    -- A failed attempt's task goes back to pending for its retry; when its routine or its campaign
    -- is on hold (by an operator, or by the failure policy in an earlier call) it is held instead.
    -- (The hold held the tasks waiting then; a task whose attempt ended later went back to pending:
    -- a held campaign's tasks were planned, run and terminated one by one, and a held routine's sat
    -- pending, counted as held and shown as "cannot be planned"; migration 0047.) Its state test is not
    -- one an index serves (coalesce): planned on a table of a task or two, PostgreSQL 15 read every pending
    -- task through the index of states for each failed attempt, 20,000 for one (migration 0088).
    IF 'internal_error' = ANY (done_states) OR 'external_error' = ANY (done_states) OR 'lost' = ANY (done_states) THEN
        UPDATE processing_task t
        SET state = 'on_hold',
            state_reason = CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                                WHEN t.campaign_id IS NULL
                                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason)
                                ELSE (SELECT format('campaign %s on hold: %s', k.id, k.hold_reason)
                                      FROM campaign k WHERE k.id = t.campaign_id) END
        FROM processing_routine r
        WHERE t.id = ANY (done_tasks) AND coalesce(t.state = 'pending', false) AND r.name = ANY (ARRAY[t.routine])
          AND (r.on_hold OR (t.campaign_id IS NOT NULL
                             AND EXISTS (SELECT 1 FROM campaign k WHERE k.id = t.campaign_id AND k.on_hold))
               -- (a back-fill task of a routine whose back-fill is on hold: migration 0075)
               OR (t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL
                   AND EXISTS (SELECT 1 FROM lane l WHERE l.name = t.lane AND l.priority > 0)));
    END IF;

    -- The tasks as this call left them, read by primary key in a statement of its own (it sees the
    -- updates above). Joining the updates' own results instead was planned as a nested loop of
    -- one batch against the other (the generic plan expects one row each): 1,000 outcomes took
    -- 120 ms of the call's 220 ms, and 4x as long for twice as many. Each task is a probe of its
    -- key (LATERAL, OFFSET 0: never a join, which, planned while the table was small, was a merge
    -- join reading every task up to the batch's in every call; migration 0034).
    RETURN QUERY
    SELECT x.job, x.state, x.task, s.state, s.failures, s.max_attempts, s.lost_count
    FROM unnest(done_jobs, done_states, done_tasks) AS x(job, state, task)
    CROSS JOIN LATERAL (SELECT t.state, t.failures, r.max_attempts, t.lost_count
                        FROM processing_task t JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
                        WHERE t.id = x.task OFFSET 0) s;
END $$;
