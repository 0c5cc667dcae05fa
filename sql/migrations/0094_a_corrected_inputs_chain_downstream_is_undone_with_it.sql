-- hrwsi schema, version 94: a corrected input's chain downstream is undone with it.
--
-- - hrwsi.correct_input cancelled the old input's open tasks only: an input chained from a product of its
--   processed task, for the next step of a chain, stayed, and its task ran from the old version (and so did
--   the steps after it), beside the corrected input's own chain (found by review). The tasks made down a
--   chain from the old input's tasks' products, step after step, are treated as the old input's own: open
--   ones cancelled, their reason naming the correction; every one leaves its time series (the next step of
--   the corrected chain follows the scene before, never the old version); the correction is refused, saying
--   which task, while one of them runs. Their inputs stay: the corrected input's products chain anew. Their
--   products and the old input's tasks' not chained yet (a harvester stopped or behind) are marked chained
--   without inputs: chained after the correction, they started the old version's chain again.
-- - A campaign's input is still refused, in one line saying what to do instead: correct the production
--   input at the start of its chain (which now cancels the campaign's tasks made from it), then reprocess.

CREATE OR REPLACE FUNCTION hrwsi.correct_input(input_id bigint, tile text DEFAULT NULL, measured_at timestamptz DEFAULT NULL,
                                    published_at timestamptz DEFAULT NULL, lane text DEFAULT NULL,
                                    input_path text DEFAULT NULL, mission text DEFAULT NULL, scene_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    was hrwsi.input;      -- (the input corrected)
    busy record;
    series record;
    cancelled bigint[];
    waiting bigint;
    new_id bigint;
    alerted bigint;       -- (the last alert before the cancellations)
    dependents bigint[];  -- (the tasks that waited for a cancelled one)
    old_tasks bigint[];   -- (the old input's tasks, which leave their time series)
    relinked bigint[];    -- (the tasks that waited for a processed old one, linked to the task before it)
    downstream bigint[];  -- (the tasks made down a chain from the products of its tasks)
BEGIN
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The tasks made down a chain from the products of its tasks, step after step (migration 0094): their
    -- inputs were chained from products of the old version, and they ran from it, as did the steps after
    -- them, while the corrected input's task chains its own products anew (found by review).
    WITH RECURSIVE below(id) AS (
        SELECT t.id FROM hrwsi.processing_task o JOIN hrwsi.product p ON p.task_id = o.id
        JOIN hrwsi.input i ON i.product_id = p.id JOIN hrwsi.processing_task t ON t.input_id = i.id
        WHERE o.input_id = was.id
        UNION
        SELECT t.id FROM below b JOIN hrwsi.product p ON p.task_id = b.id
        JOIN hrwsi.input i ON i.product_id = p.id JOIN hrwsi.processing_task t ON t.input_id = i.id
    )
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO downstream FROM below b;
    -- The series locks of its tasks, of theirs, and of the series the corrected input goes to, before any
    -- row (the order the INSERT of inputs and a retry take them in).
    FOR series IN
        SELECT t.routine, x.tile
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        CROSS JOIN LATERAL (VALUES (was.tile), (coalesce(correct_input.tile, was.tile))) x(tile)
        WHERE t.input_id = was.id AND x.tile IS NOT NULL
        UNION
        SELECT t.routine, t.series_tile FROM hrwsi.processing_task t
        WHERE t.id = ANY (downstream) AND t.series_tile IS NOT NULL
        ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
    END LOOP;
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id FOR UPDATE;
    IF was.superseded_by IS NOT NULL THEN
        RAISE EXCEPTION 'input % was corrected already: input % replaces it', was.id, was.superseded_by
            USING ERRCODE = 'check_violation',
                  HINT = format('correct input %s instead: SELECT hrwsi.correct_input(%s, ...)', was.superseded_by,
                                was.superseded_by);
    END IF;
    -- What a data engineer may not insert is not made by a correction either (the function runs as its
    -- owner; the column grants keep them from setting source, product_id and campaign_id).
    IF was.campaign_id IS NOT NULL THEN
        RAISE EXCEPTION 'input % is reprocessing campaign %''s, not corrected itself: correct the production input '
                        'at the start of its chain (`hrwsi lineage %` shows it), which cancels the campaign''s tasks '
                        'made from it, then reprocess it again (`hrwsi reprocess`)', was.id, was.campaign_id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A campaign''s input is chained from a product the campaign made: the campaign makes it, '
                           'as the harvester makes a production one.';
    END IF;
    IF was.source = 'multi_input' THEN
        RAISE EXCEPTION 'input % is a multi-input group (%): it is not corrected', was.id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The harvester makes a group from its members (`hrwsi groups` lists them); a copy would have none.',
                  HINT = 'correct the members'' inputs or products; to drop the group''s task: `hrwsi cancel TASK`';
    END IF;
    IF was.product_id IS NOT NULL AND correct_input.input_path IS DISTINCT FROM was.input_path
       AND correct_input.input_path IS NOT NULL THEN
        RAISE EXCEPTION 'input % was chained from product %: its path is the product''s, %', was.id, was.product_id,
                        was.input_path
            USING ERRCODE = 'check_violation',
                  HINT = 'correct its tile or times without input_path => ..., or insert an input of the other path';
    END IF;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.input_id = was.id OR t.id = ANY (downstream) ORDER BY t.id FOR UPDATE;
    SELECT t.id, t.routine, t.state, t.input_id, j.backend_job_id, j.state AS job_state INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.input_id <> was.id, t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %) made from it% is %', was.id, busy.id,
                        busy.routine, CASE WHEN busy.input_id = was.id THEN '' ELSE ' down a chain, from its products,' END,
                        busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                           THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                           ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = CASE WHEN busy.input_id = was.id
                                THEN 'The corrected input''s task would run beside the attempt made from the old input.'
                                ELSE 'Its attempt runs from the old input''s products, which the correction makes anew.' END,
                  HINT = format('wait until it ends (`hrwsi task show %s`), or cancel it (`hrwsi cancel %s`) and wait until '
                                'its job has stopped; then correct the input again', busy.id, busy.id);
    END IF;
    IF (correct_input.tile IS NULL OR correct_input.tile = was.tile)
       AND (correct_input.measured_at IS NULL OR correct_input.measured_at = was.measured_at)
       AND (correct_input.published_at IS NULL OR correct_input.published_at = was.published_at)
       AND (correct_input.lane IS NULL OR correct_input.lane = was.lane)
       AND (correct_input.input_path IS NULL OR correct_input.input_path = was.input_path)
       AND (correct_input.mission IS NULL OR correct_input.mission = was.mission)
       AND (correct_input.scene_id IS NULL OR correct_input.scene_id = was.scene_id) THEN
        RAISE EXCEPTION 'input %: nothing to correct (every value given is its own)', was.id
            USING ERRCODE = 'check_violation',
                  HINT = 'name what changes: SELECT hrwsi.correct_input(id, tile => ''32TLR'', measured_at => ''...Z'')';
    END IF;
    new_id := nextval(pg_get_serial_sequence('hrwsi.input', 'id'));
    SELECT coalesce(max(a.id), 0) INTO alerted FROM hrwsi.alert a;
    -- Its open tasks, and those made down a chain from their products, are cancelled (a running one was
    -- refused above), saying why.
    WITH open AS (
        SELECT t.id, t.input_id FROM hrwsi.processing_task t
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled',
            state_reason = CASE WHEN open.input_id = was.id
                                THEN format('its input %s was corrected: input %s replaces it', was.id, new_id)
                                ELSE format('made down a chain from the products of input %s, which was corrected: input %s '
                                            'replaces it, and its task''s products chain anew', was.id, new_id) END
        FROM open WHERE t.id = open.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM done;
    SELECT coalesce(array_agg(t.id), '{}') INTO dependents FROM hrwsi.processing_task t WHERE t.depends_on = ANY (cancelled);
    -- (the tasks that took a deadline or a priority from them gave it back: hrwsi.after_task_changes)
    -- Its tasks, and those down a chain, leave their time series before the corrected input's task is
    -- linked into one (and before the tasks its products chain anew are).
    WITH gone AS (
        UPDATE hrwsi.processing_task t SET series_tile = NULL, series_at = NULL
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.series_tile IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO old_tasks FROM gone;
    -- Their products not chained yet (a harvester stopped or behind) are not chained: made from the old
    -- version, they would start its chain again. One a harvester is chaining now (locked) is skipped, not
    -- waited for: this transaction holds series locks that harvester may wait for.
    UPDATE hrwsi.product p SET chained_at = now()
    WHERE p.id IN (SELECT x.id FROM hrwsi.product x JOIN hrwsi.processing_task t ON t.id = x.task_id
                   WHERE x.chained_at IS NULL AND (t.input_id = was.id OR t.id = ANY (downstream))
                   ORDER BY x.id FOR UPDATE OF x SKIP LOCKED);
    UPDATE hrwsi.input SET superseded_by = new_id WHERE id = was.id;
    INSERT INTO hrwsi.input (id, processing_condition, input_path, tile, mission, measured_at, published_at, source,
                             product_id, scene_id, lane, campaign_id)
    OVERRIDING SYSTEM VALUE
    VALUES (new_id, was.processing_condition, coalesce(correct_input.input_path, was.input_path),
            coalesce(correct_input.tile, was.tile), coalesce(correct_input.mission, was.mission),
            coalesce(correct_input.measured_at, was.measured_at), coalesce(correct_input.published_at, was.published_at),
            was.source, was.product_id,
            -- (a scene id the old path gave follows a new path)
            CASE WHEN correct_input.scene_id IS NOT NULL THEN correct_input.scene_id
                 WHEN correct_input.input_path IS NOT NULL AND was.scene_id = hrwsi.scene_id_of(was.input_path)
                 THEN hrwsi.scene_id_of(correct_input.input_path)
                 ELSE was.scene_id END,
            coalesce(correct_input.lane, was.lane), was.campaign_id);
    -- A task of its time series still waiting for a cancelled one (the corrected input went elsewhere in
    -- time or tile) waits for the task before it now, as a retry links it: else blocked for an operator.
    FOR waiting IN
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state_reason = format('relinked: the task it waited for was cancelled by the correction of input %s', was.id)
        WHERE id = waiting AND state = 'pending';
    END LOOP;
    -- A task that has not started and still waits for a processed old task (the corrected input's task
    -- did not take its place) waits for the task before it in its series now, as a new task there would
    -- (a held or blocked one takes it when it is released or retried), and passes its priority and deadline
    -- down to it at once, as a retried one does (migration 0086).
    WITH relink AS (
        SELECT t.id, p.id AS previous, p.state AS previous_state
        FROM hrwsi.processing_task t LEFT JOIN LATERAL (
            SELECT x.id, x.state FROM hrwsi.processing_task x
            WHERE x.routine = t.routine AND x.series_tile = t.series_tile AND x.state <> 'cancelled'
              AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (x.series_at, x.id) < (t.series_at, t.id)
            ORDER BY x.series_at DESC, x.id DESC LIMIT 1) p ON true
        WHERE t.depends_on = ANY (old_tasks) AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
    ), moved AS (
        UPDATE hrwsi.processing_task t
        SET depends_on = r.previous,
            state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked' ELSE 'pending' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                WHEN r.previous_state IN ('terminated', 'blocked')
                                THEN format('relinked by the correction of input %s: waits for task %s, which is %s '
                                            '(`hrwsi task show %s` says why)', was.id, r.previous, r.previous_state, r.previous)
                                ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                            'corrects', was.id, new_id) END
        FROM relink r WHERE t.id = r.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO relinked FROM moved m;
    PERFORM hrwsi.pass_deadlines_down(relinked);
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    RETURN new_id;
END $$;
