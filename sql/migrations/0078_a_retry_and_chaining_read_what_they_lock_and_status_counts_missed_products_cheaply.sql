-- hrwsi schema, version 78: a retry and the chaining read what they lock, and status counts missed products cheaply.
--
-- Found by review of migrations 0075-0077:
-- * `hrwsi retry` of a time series' task under REPEATABLE READ or SERIALIZABLE waited for the series'
--   lock, then read the series through a snapshot older than the chaining that held it: the retried task
--   and the scene just chained both depended on the task before them and ran side by side. Refused there,
--   as an INSERT into a time series is (hrwsi.retry_task).
CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock; NULL: in no series now
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
    LOOP
        SELECT t.routine INTO routine_was FROM hrwsi.processing_task t WHERE t.id = task;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(7250078, hashtext(coalesce(routine_was, '')));
            SELECT t.routine || '/' || t.series_tile INTO series
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
            WHERE t.id = task AND t.series_tile IS NOT NULL;
            IF series IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock(7250010, hashtext(series));
            END IF;
            current := hrwsi.lock_task(task);
            SELECT t.routine, CASE WHEN r.sequential_per_tile AND t.series_tile IS NOT NULL
                                   THEN t.routine || '/' || t.series_tile END
            INTO routine_now, series_now
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
            WHERE t.id = task;
            EXIT WHEN routine_now IS NOT DISTINCT FROM routine_was AND series_now IS NOT DISTINCT FROM series;
            RAISE EXCEPTION 'task % moved to another series while it was retried', task USING ERRCODE = 'HR078';
        EXCEPTION WHEN SQLSTATE 'HR078' THEN
            NULL;  -- (its locks released with the subtransaction: again, in the series the task is in now)
        END;
    END LOOP;
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


-- * a product retention removed while `hrwsi chain-missed` chained it was named by the input it made,
--   which no check saw: hrwsi.chain_missed_products locks the products it chains (FOR KEY SHARE), and
--   removing a product is refused under a stricter isolation, whose snapshot would miss such an input,
--   as removing an input is; its refusal named a constraint that does not exist, and names none now;
-- * `hrwsi status` counted each condition's missed products with a full dry run of chain_missed_products
--   (150 ms per condition per 300,000 products, at every call, and a zero-row INSERT): a read-only count,
--   capped at 10,001, by the same rules (hrwsi.missed_products, their one definition); `hrwsi config
--   load` closed a missed range with chain_missed_products(max_products => 1), which chained a product
--   made meanwhile: hrwsi.close_a_missed_range only reads.

CREATE FUNCTION hrwsi.missed_products(p_condition text)
RETURNS TABLE (id bigint, path text, tile text, mission text, measured_at timestamptz, created_at timestamptz,
               lane text, in_window boolean)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.path, i.tile, i.mission, i.measured_at, p.created_at,
           CASE WHEN upstream.priority > downstream.priority THEN t.lane END,
           (upstream.priority > downstream.priority OR c.measurement_window IS NULL OR i.measured_at IS NULL
            OR i.measured_at >= now() - c.measurement_window) IS TRUE
    FROM hrwsi.processing_condition c
    JOIN hrwsi.processing_routine r ON r.name = c.routine
    JOIN hrwsi.lane downstream ON downstream.name = c.lane
    JOIN hrwsi.product p ON p.product_type = r.input_product_type
    LEFT JOIN hrwsi.processing_task t ON t.id = p.task_id
    LEFT JOIN hrwsi.lane upstream ON upstream.name = t.lane
    LEFT JOIN hrwsi.input i ON i.id = t.input_id
    WHERE c.name = p_condition AND p.chained_at IS NOT NULL AND t.campaign_id IS NULL
      -- (chained while it missed them: a product whose input of this condition retention pruned
      -- is not chained again, nor one chained to it before it was made inactive)
      AND p.chained_at >= c.missed_since AND (c.missed_until IS NULL OR p.chained_at < c.missed_until)
      AND (c.tiles IS NULL OR i.tile = ANY (c.tiles))
      AND NOT EXISTS (SELECT 1 FROM hrwsi.input x WHERE x.processing_condition = c.name AND x.input_path = p.path)
$$;

CREATE OR REPLACE FUNCTION hrwsi.chain_missed_products(condition text, made_since timestamptz DEFAULT NULL,
                                            max_products integer DEFAULT 10000, dry_run boolean DEFAULT false)
RETURNS TABLE (chained integer, missed bigint, outside_window bigint, summary text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    c processing_condition;
    reads text;
    made integer := 0;
    in_window bigint;
    too_old bigint;
BEGIN
    SELECT * INTO c FROM processing_condition x WHERE x.name = chain_missed_products.condition;
    IF c.name IS NULL THEN
        RAISE EXCEPTION 'no condition %', chain_missed_products.condition USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = c.name) THEN
        RAISE EXCEPTION 'condition % is multi-input: the harvester makes its groups from the products there are '
                        '(`hrwsi groups` lists them)', c.name USING ERRCODE = 'check_violation';
    END IF;
    IF NOT c.active AND NOT dry_run THEN
        RAISE EXCEPTION 'condition % is inactive: make it active first (its products would make no task)', c.name
            USING ERRCODE = 'check_violation';
    END IF;
    IF max_products IS NULL OR max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1' USING ERRCODE = 'check_violation';
    END IF;
    SELECT r.input_product_type INTO reads FROM processing_routine r WHERE r.name = c.routine;
    -- The products it chains are locked (FOR KEY SHARE, as a foreign key would lock them) before their
    -- inputs name them: retention (hrwsi.prune_products) skips a locked product, and one it removed
    -- meanwhile is not chained. Unlocked, a product retention removed while this statement ran was named by
    -- the input it made, which no check saw (found by review; migration 0078).
    WITH candidate AS (
        SELECT m.* FROM missed_products(c.name) m WHERE made_since IS NULL OR m.created_at >= made_since
    ), chosen AS (
        SELECT m.* FROM candidate m WHERE m.in_window AND NOT dry_run ORDER BY m.id LIMIT max_products
    ), kept AS (
        SELECT p.id FROM product p WHERE p.id IN (SELECT h.id FROM chosen h) FOR KEY SHARE OF p
    ), inserted AS (
        INSERT INTO input (processing_condition, input_path, tile, mission, measured_at, published_at, source,
                           product_id, lane)
        SELECT c.name, m.path, m.tile, m.mission, m.measured_at, m.created_at, 'chaining', m.id, m.lane
        FROM chosen m JOIN kept k ON k.id = m.id
        ORDER BY m.id
        ON CONFLICT (processing_condition, input_path) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted), count(*) FILTER (WHERE m.in_window), count(*) FILTER (WHERE NOT m.in_window)
    INTO made, in_window, too_old
    FROM candidate m;
    -- All chained (those older than its window are not, and are said below): it misses nothing now.
    IF NOT dry_run AND in_window <= made THEN
        PERFORM set_config('hrwsi.clearing_missed_range', 'on', true);
        UPDATE processing_condition x SET missed_since = NULL, missed_until = NULL WHERE x.name = c.name;
        PERFORM set_config('hrwsi.clearing_missed_range', 'off', true);
    END IF;
    RETURN QUERY SELECT made, in_window, too_old,
        CASE WHEN dry_run THEN format('condition %s: %s product(s) of type %s not chained to it', c.name, in_window, reads)
             ELSE format('condition %s: %s product(s) of type %s chained to it%s', c.name, made, reads,
                         CASE WHEN in_window > made THEN format('; %s more: run it again', in_window - made) ELSE '' END)
        END
        || CASE WHEN too_old > 0
                THEN format('; %s older than its measurement window (%s) are not chained: `hrwsi reprocess` of the '
                            'routine that makes %s chains their products again, within a campaign', too_old,
                            c.measurement_window, reads)
                ELSE '' END;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.conditions_missing_products()
RETURNS TABLE (condition text, product_type text, missed bigint, outside_window bigint) LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    SELECT c.name, c.reads, m.missed, m.outside_window
    FROM (SELECT x.name, r.input_product_type AS reads FROM processing_condition x
          JOIN processing_routine r ON r.name = x.routine
          WHERE x.active AND x.missed_until IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = x.name)
          OFFSET 0) c  -- (only those: chain_missed_products refuses a multi-input condition)
    CROSS JOIN LATERAL (
        SELECT (SELECT count(*) FROM (SELECT 1 FROM missed_products(c.name) p WHERE p.in_window LIMIT 10001) n) AS missed,
               (SELECT count(*) FROM (SELECT 1 FROM missed_products(c.name) p WHERE NOT p.in_window LIMIT 10001) o)
                   AS outside_window) m
    WHERE m.missed > 0
    ORDER BY c.name
$$;

CREATE FUNCTION hrwsi.close_a_missed_range(condition text) RETURNS boolean LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM missed_products(close_a_missed_range.condition) m WHERE m.in_window) THEN
        RETURN false;
    END IF;
    PERFORM set_config('hrwsi.clearing_missed_range', 'on', true);
    UPDATE processing_condition x SET missed_since = NULL, missed_until = NULL
    WHERE x.name = close_a_missed_range.condition AND x.active AND x.missed_until IS NOT NULL;
    PERFORM set_config('hrwsi.clearing_missed_range', 'off', true);
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.refuse_removing_products_inputs_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
SET enable_seqscan = off AS $$
DECLARE
    named_product bigint;
    named bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    -- After the rows' locks were taken: inputs of a transaction that held one (chain_missed_products locks
    -- the products it chains) are committed and seen. A stricter isolation would not see them (its snapshot
    -- is older): refused there, as removing an input is (migration 0078).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a product is removed only in a READ COMMITTED transaction (the default)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for the inputs made from it cannot see inputs made meanwhile';
    END IF;
    -- One probe per removed product (input_product_id_idx), as for inputs.
    SELECT o.id, (SELECT count(*) FROM input i WHERE i.product_id = o.id) INTO named_product, named
    FROM old_rows o
    WHERE (SELECT i.id FROM input i WHERE i.product_id = o.id LIMIT 1) IS NOT NULL
    ORDER BY o.id LIMIT 1;
    IF named_product IS NOT NULL THEN
        -- (no constraint named: an input names its product without one; it named one that does not exist)
        RAISE EXCEPTION 'product % cannot be removed while % input(s) were made from it', named_product, named
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'products are the lineage of what was made from them: retention (`hrwsi prune`) removes a '
                         'product once nothing made from it is kept';
    END IF;
    RETURN NULL;
END $$;

REVOKE EXECUTE ON FUNCTION hrwsi.missed_products(text), hrwsi.close_a_missed_range(text) FROM PUBLIC;  -- (migration 0078)
GRANT EXECUTE ON FUNCTION hrwsi.close_a_missed_range(text) TO hrwsi_data_engineer, hrwsi_service;

-- A series task's reason said "is still running" of an upstream task that had ended terminated or
-- cancelled, and "its products are not chained yet" of one whose products were (a wait its end left
-- to the orchestrator's sweep: found by review).
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
                       WHEN o.state IN ('pending', 'planned') THEN 'has not run yet'
                       WHEN o.state = 'on_hold' THEN 'is on hold' WHEN o.state = 'blocked' THEN 'is blocked'
                       ELSE 'is still running' END)
    FROM hrwsi.processing_task o WHERE o.id = upstream
$$;
