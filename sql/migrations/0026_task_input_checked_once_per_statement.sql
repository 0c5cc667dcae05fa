-- hrwsi schema, version 26: a task's input is checked without a foreign key (issue 15).
--
-- The key probed and locked the input for every task created: about a seventh of inserting a burst
-- (10,000 inputs with their tasks, median of five: 274 ms with it, 236 ms without). What it
-- guarded is kept otherwise, as for the routine and the lane (migration 0022):
-- - tasks are made only by hrwsi.create_tasks_for_new_inputs, for the inputs its own statement
--   inserted (they exist, and no other transaction sees them yet), and by hrwsi.reprocess, which
--   now locks the inputs it reprocesses (FOR KEY SHARE, as the key locked them for each task);
-- - removing an input that tasks name, or changing its id, is refused as the key refused it
--   (foreign_key_violation, the old key's name) by hrwsi.refuse_removing_inputs_tasks_name, once
--   per statement, after the rows' locks (under REPEATABLE READ or SERIALIZABLE, where the check
--   could not see tasks created meanwhile, removing an input is refused);
-- - an UPDATE of a task naming an input that does not exist is refused by the trigger of migration
--   0025, which now also watches input_id.

ALTER TABLE hrwsi.processing_task DROP CONSTRAINT task_input_must_exist;

-- A task names its input without a foreign key (migration 0026): the key probed and locked the
-- input for every task created, about a seventh of inserting a burst. Tasks are made only by
-- hrwsi.create_tasks_for_new_inputs, for the inputs its statement inserted, and by hrwsi.reprocess,
-- which locks the inputs it reprocesses; what the key refused is refused here: removing an input
-- that tasks name (retention removes an input after its tasks), or changing its id.
CREATE FUNCTION hrwsi.refuse_removing_inputs_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    named_input bigint;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT 1 FROM processing_task t WHERE t.input_id = OLD.id) THEN
            RAISE EXCEPTION 'input % cannot change its id while tasks name it', OLD.id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist';
        END IF;
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    -- After the rows' locks were taken: tasks of a transaction that held one are committed and
    -- seen. A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'an input is removed only in a READ COMMITTED transaction (the default)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for its tasks cannot see tasks created meanwhile';
    END IF;
    SELECT o.id, (SELECT count(*) FROM processing_task t WHERE t.input_id = o.id) INTO named_input, named
    FROM old_rows o
    WHERE EXISTS (SELECT 1 FROM processing_task t WHERE t.input_id = o.id)
    ORDER BY o.id LIMIT 1;
    IF named_input IS NOT NULL THEN
        RAISE EXCEPTION 'input % cannot be removed while % task(s) name it', named_input, named
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist',
                  HINT = 'tasks are the record of what ran: retention (`hrwsi prune`) removes an input with its tasks';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER input_named_by_tasks_removed AFTER DELETE ON hrwsi.input
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_removing_inputs_tasks_name();
CREATE TRIGGER input_named_by_tasks_renumbered AFTER UPDATE OF id ON hrwsi.input
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION hrwsi.refuse_removing_inputs_tasks_name();
-- A trigger function runs whoever fires it; no role calls it otherwise.
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_removing_inputs_tasks_name() FROM PUBLIC;

-- A task's input, routine or lane changed by hand must still name one that exists, as the keys
-- required (migrations 0025, 0026); locked until the transaction ends, as a key locks it. hrwsi
-- never changes them, so this runs only for such an UPDATE (its WHEN condition).
CREATE OR REPLACE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.input_id IS DISTINCT FROM OLD.input_id
       AND NOT EXISTS (SELECT 1 FROM input i WHERE i.id = NEW.input_id FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no input %', NEW.id, NEW.input_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist';
    END IF;
    IF NEW.routine IS DISTINCT FROM OLD.routine
       AND NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = NEW.routine FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no routine %', NEW.id, NEW.routine
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_routine_must_exist';
    END IF;
    IF NEW.lane IS DISTINCT FROM OLD.lane
       AND NOT EXISTS (SELECT 1 FROM lane l WHERE l.name = NEW.lane FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no lane %', NEW.id, NEW.lane
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_lane_must_exist';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER processing_task_names_what_exists ON hrwsi.processing_task;
CREATE TRIGGER processing_task_names_what_exists BEFORE UPDATE OF input_id, routine, lane ON hrwsi.processing_task
    FOR EACH ROW WHEN (NEW.input_id IS DISTINCT FROM OLD.input_id OR NEW.routine IS DISTINCT FROM OLD.routine
                       OR NEW.lane IS DISTINCT FROM OLD.lane)
    EXECUTE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist();

CREATE OR REPLACE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.condition IS NOT NULL THEN
        SELECT c.routine INTO target FROM processing_condition c WHERE c.name = reprocess.condition;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no condition %', reprocess.condition USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', target USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO campaign (name, routine, condition, measured_from, measured_to, tiles, command, image, chain)
    VALUES (reprocess.name, target, reprocess.condition, reprocess.measured_from, reprocess.measured_to,
            reprocess.tiles, reprocess.command, reprocess.image, reprocess.chain)
    RETURNING id INTO new_campaign;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                 campaign_id)
    SELECT i.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                ELSE format('reprocessing campaign %s', new_campaign) END,
           l.name, l.priority,
           CASE WHEN r.sequential_per_tile AND i.measured_at IS NOT NULL THEN i.tile END,
           CASE WHEN r.sequential_per_tile AND i.tile IS NOT NULL THEN i.measured_at END,
           new_campaign
    FROM input i
    JOIN processing_condition c ON c.name = i.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN campaign k ON k.id = new_campaign
    JOIN lane l ON l.name = k.lane
    WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
      AND i.campaign_id IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
    ORDER BY i.measured_at, i.id
    -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
    -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
    FOR KEY SHARE OF i;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
            CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' (tiles ' || array_to_string(reprocess.tiles, ', ') || ')' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, reprocess.measured_from, reprocess.measured_to,
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
        FROM campaign k WHERE k.id = new_campaign;
END $$;
