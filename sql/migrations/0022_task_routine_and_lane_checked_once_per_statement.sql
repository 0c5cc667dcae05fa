-- hrwsi schema, version 22: a task's routine and lane are checked once per statement, not by a
-- foreign key for every task (issue 15).
--
-- The two keys probed and locked the routine and the lane for every task created: about a fifth of
-- inserting a burst (10,000 inputs with their tasks: 266 ms -> 212 ms; the service's burst of
-- 10,000 0.78-0.83 s -> 0.75-0.77 s, three pairs). What they guarded is kept otherwise:
-- - tasks are made only by hrwsi.create_tasks_for_new_inputs and hrwsi.reprocess, as the owner
--   (the services lose their INSERT on processing_task), by joining the routine and the lane: they
--   exist when the task is made. The first now locks each routine and lane its statement names
--   once (FOR KEY SHARE, as the keys did for every row); the second's campaign row holds those
--   locks through its own keys;
-- - removing or renaming a routine or a lane that tasks name is refused, as the keys refused it,
--   by hrwsi.refuse_removing_what_tasks_name (foreign_key_violation, naming the old key), after the
--   row's lock: a transaction creating tasks for it has ended and its tasks are seen. (Under
--   REPEATABLE READ or SERIALIZABLE the check could not see them: removing is refused there.)

ALTER TABLE hrwsi.processing_task DROP CONSTRAINT task_routine_must_exist, DROP CONSTRAINT task_lane_must_exist;
REVOKE INSERT ON hrwsi.processing_task FROM hrwsi_service;

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
BEGIN
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

-- A task names its routine and its lane without a foreign key (migration 0022): the key probed and
-- locked the routine and the lane for every task created, about a fifth of inserting a burst.
-- Tasks are made only by hrwsi.create_tasks_for_new_inputs and hrwsi.reprocess (no role but the
-- owner inserts them), by joining the routine and the lane, which they lock (the first once per
-- statement, the second through the campaign's keys); and what the keys refused is refused here:
-- removing or renaming a routine or a lane that tasks name.
CREATE FUNCTION hrwsi.refuse_removing_what_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name = OLD.name THEN
        RETURN NULL;
    END IF;
    -- After the row's lock was taken: tasks of a transaction that held it are committed and seen.
    -- A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a % is removed or renamed only in a READ COMMITTED transaction (the default)',
            CASE TG_TABLE_NAME WHEN 'lane' THEN 'lane' ELSE 'routine' END
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for its tasks cannot see tasks created meanwhile';
    END IF;
    IF TG_TABLE_NAME = 'lane' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.lane = OLD.name;
    ELSE
        SELECT count(*) INTO named FROM processing_task t WHERE t.routine = OLD.name;
    END IF;
    IF named > 0 THEN
        RAISE EXCEPTION '% % cannot be % while % task(s) name it',
            CASE TG_TABLE_NAME WHEN 'lane' THEN 'lane' ELSE 'routine' END, OLD.name,
            CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = CASE TG_TABLE_NAME WHEN 'lane' THEN 'task_lane_must_exist' ELSE 'task_routine_must_exist' END,
                  HINT = 'tasks are the record of what ran: to stop a routine, `hrwsi hold <routine>`';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();
CREATE TRIGGER lane_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.lane
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();
-- A trigger function runs whoever fires it; no role calls it otherwise.
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_removing_what_tasks_name() FROM PUBLIC;
