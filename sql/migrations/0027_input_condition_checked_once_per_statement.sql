-- hrwsi schema, version 27: an input's condition is checked once per statement, not by a foreign
-- key for every input (issue 15).
--
-- The key probed and locked the condition for every input inserted: about a seventh of inserting
-- a burst. What it guarded is kept otherwise, as for the task's routine, lane and input
-- (migrations 0022, 0026):
-- - every INSERT of inputs (a data engineer's, the harvester's) runs
--   hrwsi.create_tasks_for_new_inputs once per statement: it locks each condition the statement
--   names once (FOR KEY SHARE, as the key did for every row) and refuses an input naming a
--   condition that does not exist with the key's name and the key's own message, so that nothing
--   of the statement is kept and what a data engineer reads is unchanged;
-- - an UPDATE of an input naming a condition that does not exist is refused the same way (a
--   trigger that runs only when the column changes);
-- - removing or renaming a condition that inputs name is refused (foreign_key_violation, the key's
--   name) by hrwsi.refuse_removing_what_tasks_name, after the row's lock (under REPEATABLE READ or
--   SERIALIZABLE, where the check could not see inputs inserted meanwhile, it is refused).

ALTER TABLE hrwsi.input DROP CONSTRAINT input_processing_condition_must_exist;

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    missing text;
BEGIN
    -- The conditions the new inputs name, each locked once, as the input's key locked it for every
    -- row (migration 0027), then checked: an input naming a condition that does not exist is
    -- refused as the key refused it, with its name and its message, and nothing is kept.
    PERFORM 1 FROM processing_condition c
    WHERE c.name IN (SELECT n.processing_condition FROM new_rows n)
    FOR KEY SHARE OF c;
    SELECT n.processing_condition INTO missing FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = n.processing_condition)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition".',
                                  missing),
                  HINT = 'the conditions are configuration: `hrwsi config show` lists them';
    END IF;

    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order.
    FOR series IN
        SELECT DISTINCT c.routine, n.tile
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
        ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
    END LOOP;

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
           -- A campaign's input (a product it made, chained) is reprocessing: it has no deadline.
           CASE WHEN n.campaign_id IS NULL THEN
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
    -- new one (a late input lands between them), and the one task just before its first new one
    -- (one index probe per series): O(n log n) in the new tasks whatever the table statistics, and
    -- a series' older history is never read. (Probing once per new task, skipping the other new
    -- tasks, was quadratic in the new tasks of a series: 3.1 s for 10,000 over 200 tiles.) A
    -- campaign's tasks form series of their own: production tasks never wait for reprocessing,
    -- nor the other way round.
    IF EXISTS (SELECT 1 FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
               JOIN processing_routine r ON r.name = c.routine WHERE r.sequential_per_tile) THEN
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
            ), link AS (
                SELECT s.id, s.fresh, lag(s.id) OVER (PARTITION BY s.routine, s.series_tile, s.campaign_id
                                                      ORDER BY s.series_at, s.id) AS previous
                FROM series s
            )
            UPDATE processing_task t SET depends_on = link.previous
            FROM link
            WHERE t.id = link.id AND link.fresh AND link.previous IS NOT NULL $q$;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.refuse_removing_what_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    what text := CASE TG_TABLE_NAME WHEN 'lane' THEN 'lane' WHEN 'processing_condition' THEN 'condition'
                                    ELSE 'routine' END;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name = OLD.name THEN
        RETURN NULL;
    END IF;
    -- After the row's lock was taken: tasks (inputs) of a transaction that held it are committed
    -- and seen. A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a % is removed or renamed only in a READ COMMITTED transaction (the default)', what
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('under a stricter isolation the check for its %s cannot see %s created meanwhile',
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END,
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END);
    END IF;
    IF what = 'condition' THEN
        SELECT count(*) INTO named FROM input i WHERE i.processing_condition = OLD.name;
        IF named > 0 THEN
            RAISE EXCEPTION 'condition % cannot be % while % input(s) name it', OLD.name,
                CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                      HINT = 'inputs are the record of what came in: to stop a condition, set it inactive (`active = false`)';
        END IF;
        RETURN NULL;
    END IF;
    IF what = 'lane' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.lane = OLD.name;
    ELSE
        SELECT count(*) INTO named FROM processing_task t WHERE t.routine = OLD.name;
    END IF;
    IF named > 0 THEN
        RAISE EXCEPTION '% % cannot be % while % task(s) name it', what, OLD.name,
            CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = CASE what WHEN 'lane' THEN 'task_lane_must_exist' ELSE 'task_routine_must_exist' END,
                  HINT = 'tasks are the record of what ran: to stop a routine, `hrwsi hold <routine>`';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_condition_named_by_inputs AFTER DELETE OR UPDATE OF name ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();

-- An input's condition changed by hand must still name one that exists, as the key required
-- (migration 0027); locked until the transaction ends, as a key locks it. hrwsi never changes it,
-- so this runs only for such an UPDATE (its WHEN condition).
CREATE FUNCTION hrwsi.refuse_an_input_naming_what_does_not_exist() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = NEW.processing_condition FOR KEY SHARE) THEN
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition".',
                                  NEW.processing_condition),
                  HINT = 'the conditions are configuration: `hrwsi config show` lists them';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER input_names_a_condition_that_exists BEFORE UPDATE OF processing_condition ON hrwsi.input
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition)
    EXECUTE FUNCTION hrwsi.refuse_an_input_naming_what_does_not_exist();
-- A trigger function runs whoever fires it; no role calls it otherwise.
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_an_input_naming_what_does_not_exist() FROM PUBLIC;
