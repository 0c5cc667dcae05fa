-- hrwsi schema, version 84: a time series' lock is one of 1024 keys, so that an INSERT over thousands
-- of tiles fits the server's lock table; a retry takes the series' locks before the task's row; a
-- statement that writes many tasks locks them in the order of their ids; and the task after a cancelled
-- task of a time series takes the one before it as its own.
--
-- One advisory lock per time series (routine, tile), held to the end of the transaction, bounded an
-- INSERT (or a back-fill batch) by the server's lock table: over more tiles than
-- max_locks_per_transaction x max_connections (6,400 on a default server) it failed with "out of shared
-- memory" (found by exploratory testing; HR-WSI covers thousands of tiles). The series' name is hashed
-- into one of 1024 keys (hrwsi.series_lock_key), each taken once, in the order of the keys: a
-- transaction holds at most 1024 series locks, whatever it inserts. What the lock protects is kept: two
-- transactions that link tasks into one series (an INSERT, a retry, the chaining of its scenes) or decide
-- what its tasks wait for upstream run one after the other, each reading the series as the other
-- committed it. Two series of one key now wait for each other too (rarely: a wait, never a wrong link).
CREATE FUNCTION hrwsi.series_lock_key(p_routine text, p_tile text) RETURNS integer LANGUAGE sql IMMUTABLE
PARALLEL SAFE
RETURN hashtext(p_routine || '/' || p_tile) & 1023;
REVOKE EXECUTE ON FUNCTION hrwsi.series_lock_key(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.series_lock_key(text, text) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- And a retry takes the locks of the series its task feeds with its own, before the task's row.
--
-- A retried upstream task makes the series' next task wait again: hrwsi.after_task_changes took the
-- locks of the series it feeds while the retry held the task's row, whereas every other holder of a
-- series lock takes it before the rows: two transactions retrying two upstream tasks of one tile in
-- opposite orders, or a retry of a series task that feeds another series and an INSERT taking both
-- series in the order of their keys, deadlocked (found by exploratory testing). hrwsi.retry_task takes
-- them all first, in the order of their keys (hrwsi.retry_series_lock_keys); the trigger finds them held.
CREATE OR REPLACE FUNCTION hrwsi.series_lock_keys_downstream_of(p_upstream bigint[]) RETURNS integer[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT coalesce(array_agg(k.key ORDER BY k.key), '{}')
    FROM (SELECT hrwsi.series_lock_key(d.name, i.tile) AS key
          FROM processing_task u JOIN input i ON i.id = u.input_id
          JOIN processing_routine r ON r.name = u.routine
          JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
          WHERE u.id = ANY (p_upstream) AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
          UNION
          SELECT hrwsi.series_lock_key(t.routine, t.series_tile) FROM processing_task t
          WHERE t.waits_for_upstream = ANY (p_upstream)) k
$$;
CREATE OR REPLACE FUNCTION hrwsi.retry_series_lock_keys(task bigint) RETURNS integer[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT ARRAY(SELECT DISTINCT k FROM unnest(hrwsi.series_lock_keys_downstream_of(ARRAY[task])
                                               || (SELECT hrwsi.series_lock_key(t.routine, t.series_tile)
                                                   FROM processing_task t
                                                   JOIN processing_routine r ON r.name = t.routine AND r.sequential_per_tile
                                                   WHERE t.id = task AND t.series_tile IS NOT NULL)) k
                 WHERE k IS NOT NULL ORDER BY k)
$$;
REVOKE EXECUTE ON FUNCTION hrwsi.series_lock_keys_downstream_of(bigint[]), hrwsi.retry_series_lock_keys(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION hrwsi.wait_for_a_series(series_routine text, series_tile text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    key integer := hrwsi.series_lock_key(series_routine, series_tile);
    holders text;
BEGIN
    SELECT string_agg(format('pid %s (role %s, %s%s)', a.pid, coalesce(a.usename::text, '?'),
                             coalesce(nullif(a.application_name, ''), 'no application name'),
                             coalesce(', transaction open ' || round(extract(epoch FROM clock_timestamp() - a.xact_start))
                                      || ' s', '')), ', ' ORDER BY a.pid)
    INTO holders
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7250010::oid AND l.objsubid = 2
      AND l.objid::bigint = (key::bigint & 4294967295)
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    RAISE NOTICE 'waiting for the time series of routine % on tile %: another transaction inserted into it and has not '
                 'committed: %', series_routine, series_tile, coalesce(holders, 'a session that has just ended')
        USING HINT = 'two INSERTs into one time series run one after the other, so that the second links its tasks '
                     'after the first''s (rarely, the other inserted into another series sharing its lock: one of '
                     '1024); the other transaction should commit or roll back (a forgotten one: '
                     'SELECT pg_terminate_backend(pid))';
    PERFORM pg_advisory_xact_lock(7250010, key);
END $$;
CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
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
            ), locked AS MATERIALIZED (
                -- (the tasks already there whose link changes, locked first in the order of their ids, as
                -- every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t JOIN link ON link.id = t.id
                WHERE NOT link.fresh AND link.previous IS NOT NULL AND t.depends_on IS DISTINCT FROM link.previous
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
                FROM link JOIN processing_task p ON p.id = link.previous
                WHERE t.id = link.id
                  AND (link.fresh OR (t.id IN (SELECT l.id FROM locked l) AND t.depends_on IS DISTINCT FROM link.previous
                                      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')))
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
        EXECUTE $q$
            WITH RECURSIVE waiting AS (
                SELECT d.id, u.priority, u.deadline_at, u.waiter
                FROM (SELECT coalesce(t.deadline_inherited_from, t.id) AS waiter, t.priority, t.deadline_at, t.depends_on
                      FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                      WHERE t.depends_on IS NOT NULL
                      UNION ALL
                      SELECT coalesce(s.deadline_inherited_from, s.id), s.priority, s.deadline_at, s.depends_on
                      FROM processing_task f JOIN new_rows n ON n.id = f.input_id
                      JOIN processing_task s ON s.depends_on = f.id) u
                JOIN processing_task d ON d.id = u.depends_on
                WHERE (d.priority > u.priority OR u.deadline_at < coalesce(d.deadline_at, 'infinity'))
                  AND d.state IN ('pending', 'planned')
                UNION
                SELECT d.id, least(w.priority, p.priority), least(w.deadline_at, p.deadline_at), w.waiter
                FROM waiting w JOIN processing_task p ON p.id = w.id JOIN processing_task d ON d.id = p.depends_on
                WHERE (d.priority > least(w.priority, p.priority)
                       OR least(w.deadline_at, p.deadline_at) < coalesce(d.deadline_at, 'infinity'))
                  AND d.state IN ('pending', 'planned')
            ), locked AS MATERIALIZED (
                -- (locked first, in the order of their ids, as every writer of many tasks locks them: in the
                -- join's order, the table's, this UPDATE deadlocked with the planner storing a plan, or the
                -- ageing of a lane, that held one of them and wanted one it held; migration 0084)
                SELECT t.id FROM processing_task t
                WHERE t.id IN (SELECT w.id FROM waiting w) AND t.state IN ('pending', 'planned')
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            UPDATE processing_task t
            SET priority = least(t.priority, w.priority),
                deadline_at = least(t.deadline_at, w.deadline_at),
                deadline_inherited_from = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity') THEN w.deadline_from
                                               ELSE t.deadline_inherited_from END,
                own_deadline_at = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity')
                                            AND t.deadline_inherited_from IS NULL THEN t.deadline_at
                                       ELSE t.own_deadline_at END,
                state = 'pending',
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'planned'
                                    THEN format('near-real-time task %s of its time series waits for it: served as '
                                                'urgently, planned again', w.waiter)
                                    ELSE t.state_reason END
            FROM (SELECT id, min(priority) AS priority, min(deadline_at) AS deadline_at, min(waiter) AS waiter,
                         (array_agg(waiter ORDER BY deadline_at NULLS LAST, waiter))[1] AS deadline_from
                  FROM waiting GROUP BY id) w
            -- (its state again here: the recursion read a snapshot, and a row this UPDATE waited for, a task
            -- dispatch claimed meanwhile, is checked once more against this condition alone, as committed;
            -- without it the claimed task went back to pending and ran a second attempt beside the first,
            -- and a cancelled or held one was made pending: found by review, migration 0081)
            WHERE t.id = w.id AND t.id IN (SELECT l.id FROM locked l) AND t.state IN ('pending', 'planned')
              AND (t.priority > w.priority OR w.deadline_at < coalesce(t.deadline_at, 'infinity')) $q$;
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
    UPDATE hrwsi.processing_task
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL,
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
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;
CREATE OR REPLACE FUNCTION hrwsi.wait_for_upstream_after(p_upstream bigint[], p_may_add_waits boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on
SET enable_hashjoin = on SET enable_mergejoin = on AS $$
DECLARE
    key integer;
    skipped integer[] := '{}';  -- the series' lock keys that were busy (hrwsi.series_lock_key)
BEGIN
    FOREACH key IN ARRAY hrwsi.series_lock_keys_downstream_of(p_upstream) LOOP
        IF p_may_add_waits THEN
            PERFORM pg_advisory_xact_lock(7250010, key);
        ELSIF NOT pg_try_advisory_xact_lock(7250010, key) THEN
            skipped := skipped || key;
        END IF;
    END LOOP;
    PERFORM hrwsi.wait_for_upstream(ARRAY(
        SELECT t.id FROM processing_task t
        WHERE t.waits_for_upstream = ANY (p_upstream) AND hrwsi.series_lock_key(t.routine, t.series_tile) <> ALL (skipped)
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
        WHERE u.id = ANY (p_upstream) AND hrwsi.series_lock_key(d.name, i.tile) <> ALL (skipped)));
END $$;
CREATE OR REPLACE FUNCTION hrwsi.recheck_upstream_waits(p_limit integer DEFAULT 1000) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    series record;
    tasks bigint[] := '{}';
BEGIN
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

-- And a statement that writes many tasks locks them in the order of their ids.
--
-- The UPDATE of an INSERT into a time series that makes the tasks before a fresh scene as urgent as it
-- (priority inheritance, migrations 0052 and 0081) locked them in its join's order, the table's, and so
-- did its links (migration 0048); the planner's stored plan locked them in the plan's order, lane ageing
-- in the table's: an INSERT and the planner each held a task the other wanted, and one was rolled back
-- with "deadlock detected" (found by exploratory testing). They, `hrwsi move-tasks` and the release of an
-- inactive worker's plan (a named query) now lock the tasks first, in the order of their ids; dispatch's
-- claim skips locked rows (SKIP LOCKED) and never waits for one; an operator's action on a task locks
-- that one task.
CREATE OR REPLACE FUNCTION hrwsi.promote_aged_tasks() RETURNS integer LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    -- (locked first, in the order of their ids, as every writer of many tasks locks them: in the table's
    -- order this deadlocked with an INSERT that made such tasks urgent behind a fresh scene; migration 0084)
    WITH locked AS MATERIALIZED (
        SELECT t.id FROM processing_task t JOIN lane l ON l.name = t.lane
        WHERE l.promote_after IS NOT NULL AND t.priority > 0
          AND t.state IN ('pending', 'planned') AND t.created_at < now() - l.promote_after
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), promoted AS (
        UPDATE processing_task t
        SET priority = 0,
            state = 'pending',
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN t.state = 'planned'
                                THEN format('waited longer than lane %s allows (%s): served as near-real-time, '
                                            'planned again', l.name, hrwsi.duration_text(l.promote_after))
                                ELSE t.state_reason END
        FROM lane l
        WHERE l.name = t.lane AND t.id IN (SELECT k.id FROM locked k) AND l.promote_after IS NOT NULL AND t.priority > 0
          AND t.state IN ('pending', 'planned') AND t.created_at < now() - l.promote_after
        RETURNING t.id
    )
    SELECT count(*)::integer FROM promoted
$$;
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
        -- (the tasks locked first, in the order of their ids, as every writer of many tasks locks them: in
        -- the plan's order this deadlocked with an INSERT that made such tasks urgent behind a fresh scene of
        -- their series; migration 0084)
        PERFORM 1 FROM processing_task t WHERE t.id = ANY (p_ids) AND t.state = 'pending'
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task t
        SET state = 'planned', worker = a.worker, planned_start = p_planned_at + make_interval(secs => a.start_s),
            planned_end = p_planned_at + make_interval(secs => a.end_s), plan_id = new_plan, state_reason = NULL
        FROM unnest(p_ids, p_workers, p_starts, p_ends) AS a(id, worker, start_s, end_s)
        WHERE t.id = a.id AND t.state = 'pending' AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_stored = ROW_COUNT;
    END IF;
    IF cardinality(p_unplannable) > 0 THEN
        -- (only those whose reason changes: the others are not written, and a plan that leaves
        -- thousands of tasks unplaced, a back-fill waiting for capacity, locked each of them again at
        -- every plan, a write-ahead log record apiece)
        PERFORM 1 FROM processing_task t JOIN unnest(p_unplannable, p_reasons) AS u(id, reason) ON u.id = t.id
        WHERE t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason
          AND (t.waits_for_upstream IS NULL OR t.dependency_waived)
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task t SET state_reason = u.reason
        FROM unnest(p_unplannable, p_reasons) AS u(id, reason)
        WHERE t.id = u.id AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason
          AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_reasons = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT new_plan, n_stored, n_reasons;
END $$;
CREATE OR REPLACE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
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
                         ELSE c.state END,
            worker = CASE WHEN c.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold
                                    THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                                WHEN c.state = 'on_hold' AND (target.on_hold OR c.state_reason NOT LIKE 'routine on hold: %')
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN c.state = 'blocked' THEN moved_reason || '; ' || c.state_reason
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN moved_reason || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE moved_reason END
        FROM chosen c
        WHERE t.id = c.id
        RETURNING t.id, t.state, t.attempts, t.worker, c.state AS old_state
    ), history AS (
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT m.id, m.state, moved_reason, m.attempts, m.worker FROM changed m WHERE m.state = m.old_state
    )
    SELECT count(*) INTO moved FROM changed;
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

-- And the task after a cancelled task of a time series takes the one before it as its own.
--
-- Cancelling a time series' task (`hrwsi cancel`) blocked the tasks after it for ever: they waited for a
-- product that would never come, and their reason offered only `hrwsi retry` of what ops had cancelled,
-- or `hrwsi release`, which runs the next task as the series' first, without a previous product (found by
-- exploratory testing). The next task, if it has not started, takes the task sensed before the cancelled
-- one as its own, as a scene inserted now would (the series' links skip cancelled tasks), saying so in its
-- reason and its history; behind a task that cannot run it is blocked, saying so; `hrwsi cancel` names it.
-- hrwsi.cancel_task takes the series' lock before the row; a cancel by another statement tries it, and a
-- series whose lock another transaction holds keeps the old way (blocked, its reason naming both commands).
-- A cancelled task retried takes its place again: the task after it waits for it again.
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
        SELECT t.id, t.state AS old_state, c.id AS cancelled, p.id AS previous, p.state AS previous_state
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
            state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN n.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'blocked' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                                 ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                               ELSE t.planned_end END,
            state_reason = CASE
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
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.skip_cancelled_tasks(bigint[]) FROM PUBLIC;
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
    -- A task of a time series cancelled: the task after it takes the one before it as its own (migration
    -- 0084) ...
    IF 'cancelled' = ANY (new_states) THEN
        PERFORM hrwsi.skip_cancelled_tasks(ARRAY(SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
                                                 WHERE d.state = 'cancelled' AND o.state <> 'cancelled'
                                                   AND d.series_tile IS NOT NULL));
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
            ), locked AS MATERIALIZED (
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (one that still waits for upstream work says so too: migration 0077)
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried or released', a.root)
                    || CASE WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                            THEN coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '') ELSE '' END
            FROM after_it a WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
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
    -- (the tasks before it that took its deadline give it back: migration 0083)
    PERFORM hrwsi.give_back_taken_deadlines(ARRAY[task]);
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

-- And so do the other writers of many tasks: a routine held, its back-fill held, released, no longer a
-- time series, resized; a flavour, the budget or a worker changed; and the decision of what time-series
-- tasks wait for upstream (migration 0072), each locking first, in the order of their ids, the tasks its
-- UPDATE writes.
CREATE OR REPLACE FUNCTION hrwsi.hold_routine_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A routine put on hold: its waiting tasks are held too, and ops are told.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'routine on hold: ' || NEW.hold_reason
        WHERE routine = NEW.name AND state IN ('pending', 'planned');
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
      AND l.name = t.lane AND l.priority > 0;
    GET DIAGNOSTICS held = ROW_COUNT;
    INSERT INTO hrwsi.alert (kind, subject, body, routine)
    VALUES ('routine_on_hold', format('hrwsi: the back-fill of routine %s is on hold', NEW.name),
            format('The back-fill of routine %s (its tasks in the archive lane) was put on hold: %s. %s waiting '
                   'task(s) held, and its new back-fill tasks will be; its near-real-time work goes on. Fix the '
                   'cause, then `hrwsi release %s`.', NEW.name, NEW.backfill_hold_reason, held, NEW.name),
            NEW.name);
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
    UPDATE processing_task t
    SET dependency_waived = true,
        waits_for_upstream = NULL,  -- (nor for an earlier scene's upstream work: migration 0072)
        state = CASE WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            ELSE format('routine %s is no longer a time series (sequential_per_tile off): it no '
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
CREATE OR REPLACE FUNCTION hrwsi.plan_again_what_no_longer_fits() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF TG_TABLE_NAME = 'processing_routine' THEN
        PERFORM 1 FROM processing_task t WHERE t.routine = NEW.name AND t.state = 'planned'
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('routine %s changed (CPU, RAM, storage or flavour): planned again', NEW.name)
        WHERE routine = NEW.name AND state = 'planned';
        -- Its attempts in flight keep what they were dispatched with (migration 0067): the sizes
        -- before this change, unless an earlier change already recorded theirs.
        UPDATE processing_task SET held_cpu = OLD.cpu, held_ram_mb = OLD.ram_mb, held_storage_mb = OLD.storage_mb,
            held_attempt = attempts
        WHERE routine = NEW.name AND state IN ('dispatched', 'queued', 'running')
          AND held_attempt IS DISTINCT FROM attempts
          AND (OLD.cpu, OLD.ram_mb, OLD.storage_mb) IS DISTINCT FROM (NEW.cpu, NEW.ram_mb, NEW.storage_mb);
    ELSIF TG_TABLE_NAME = 'flavour' THEN
        PERFORM 1 FROM processing_task t
        WHERE t.state = 'planned' AND t.worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name)
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('the flavour %s of its worker %s changed: planned again', NEW.name, worker)
        WHERE state = 'planned' AND worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name);
    ELSIF TG_TABLE_NAME = 'budget' THEN
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = 'the budget changed: planned again'
        WHERE state = 'planned';
    ELSIF TG_OP = 'INSERT' OR NOT OLD.active THEN
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('worker %s was added: planned again', NEW.name)
        WHERE state = 'planned';
    ELSE
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' AND t.worker = NEW.name
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('its worker %s changed flavour: planned again', NEW.name)
        WHERE state = 'planned' AND worker = NEW.name;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
        RAISE EXCEPTION 'no routine %', routine_name USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        backfill_hold_reason = NULL, backfill_consecutive_failures = 0  -- (and its back-fill: migration 0075)
    WHERE name = routine_name;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = routine_name AND t.state = 'on_hold'
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
        state_reason = CASE WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'routine released by an operator'
                                     || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'routine released by an operator' END
    WHERE routine = routine_name AND state = 'on_hold';
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN format('routine %s released; %s held task(s) will be planned', routine_name, released);
END $$;
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
