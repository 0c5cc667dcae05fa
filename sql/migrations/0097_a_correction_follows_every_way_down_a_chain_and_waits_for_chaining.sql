-- hrwsi schema, version 97: a correction undoes every task made from the old version, waits for the
-- chaining under way, and the old version's products are never chained again.
--
-- - hrwsi.correct_input followed the inputs chained from the old version's products only: a multi-input group
--   made from one of them (or from the old input itself) kept its task, pending or running with a stale member,
--   and a campaign's composite reading one too (found by review). The walk down the chain follows every way a
--   task is made from a product: an input chained from it, a group it is a member of, a campaign's composite
--   that reads it; the same rules hold (open tasks cancelled, their reason naming the correction; refused while
--   one runs). Such a group's input is superseded by the corrected input, and the harvester makes the group
--   anew from the members it has then.
-- - A product being chained while a correction ran was skipped (SKIP LOCKED), and the task its chaining made
--   from the old version stayed; one chained between the correction's walk and its end too. The correction
--   takes the lock 7250098/1 exclusively, first; chaining (chain_products, chain_products_around_busy_series),
--   the making of groups and hrwsi.chain_missed_products take it shared, in a statement before theirs: each
--   waits for the other, and chaining sees what the correction marked.
-- - hrwsi.chain_missed_products chained a product of the old version to a condition made active after the
--   correction. The products of the old version and of its chain are marked outdated_by the corrected input
--   (a new column of hrwsi.product): never chained again, never a group's member (nor is a superseded input).

ALTER TABLE hrwsi.product ADD COLUMN outdated_by bigint;

CREATE OR REPLACE FUNCTION hrwsi.multi_input_members_now(group_condition text, group_tile text, anchor_day date)
RETURNS TABLE (member_path text, product_type text, measured_at timestamptz, arrived_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi
BEGIN ATOMIC
    SELECT p.path, p.product_type, i.measured_at, p.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_task t ON t.input_id = i.id AND t.campaign_id IS NULL
    JOIN hrwsi.product p ON p.task_id = t.id
    WHERE r.processing_condition = group_condition AND p.outdated_by IS NULL
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND p.product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                             WHERE q.processing_condition = group_condition)
    UNION
    SELECT i.input_path, ro.input_product_type, i.measured_at, i.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
    JOIN hrwsi.processing_routine ro ON ro.name = c.routine
    WHERE r.processing_condition = group_condition AND i.product_id IS NULL AND i.superseded_by IS NULL
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND ro.input_product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                                    WHERE q.processing_condition = group_condition)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = i.processing_condition);
END;

CREATE OR REPLACE FUNCTION hrwsi.missed_products(p_condition text)
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
      -- (nor a product of a corrected input's old version, or of its chain: migration 0097; it was chained to a
      -- condition made active after the correction, and started the old version's chain again)
      AND p.outdated_by IS NULL
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
        RAISE EXCEPTION 'no condition %', hrwsi.quoted_name(chain_missed_products.condition) USING ERRCODE = 'no_data_found';
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
    -- No correction runs meanwhile (migration 0097: hrwsi.correct_input), and the statements below see what one
    -- that ran before marked outdated.
    IF NOT dry_run THEN
        PERFORM pg_advisory_xact_lock_shared(7250098, 1);
    END IF;
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
        ON CONFLICT (processing_condition, input_path) WHERE superseded_by IS NULL DO NOTHING
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
    outdated text[];      -- (the paths of the old version: its products, those down its chain, the input itself)
BEGIN
    -- No chaining (nor group) runs while a correction does, nor a correction while one runs (migration 0097):
    -- a statement chaining a product of the old version while the walk below ran made a task from it that
    -- the walk had not seen, and the product, locked, was skipped (found by review). Taken first, before
    -- any series lock: chaining takes it first too, before the products and the series of their inputs.
    PERFORM pg_advisory_xact_lock(7250098, 1);
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The tasks made down a chain from the products of its tasks, step after step (migration 0094): their
    -- inputs were chained from products of the old version, and they ran from it, as did the steps after
    -- them, while the corrected input's task chains its own products anew (found by review). Every way a
    -- task is made from a product is followed (migration 0097): an input chained from it, a multi-input group
    -- it is a member of, a campaign's composite that reads it; and the groups the old input itself is a
    -- member of (one not chained from a product: its path is the member's). The walk followed the chained
    -- inputs only, and a group made from the old version's product kept its task (found by review).
    WITH RECURSIVE below(id) AS (
        SELECT o.id FROM hrwsi.processing_task o WHERE o.input_id = was.id
        UNION
        SELECT t.id FROM hrwsi.multi_input_member g JOIN hrwsi.processing_task t ON t.input_id = g.input_id
        WHERE g.member_path = was.input_path AND was.product_id IS NULL
        UNION
        SELECT c.task_id FROM hrwsi.multi_input_campaign_member c WHERE c.member_path = was.input_path AND was.product_id IS NULL
        UNION
        SELECT m.id FROM below b JOIN hrwsi.product p ON p.task_id = b.id
        CROSS JOIN LATERAL (
            SELECT t.id FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id WHERE i.product_id = p.id
            UNION ALL
            SELECT t.id FROM hrwsi.multi_input_member g JOIN hrwsi.processing_task t ON t.input_id = g.input_id
            WHERE g.member_path = p.path
            UNION ALL
            SELECT c.task_id FROM hrwsi.multi_input_campaign_member c WHERE c.member_path = p.path) m
    )
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO downstream
    FROM below b JOIN hrwsi.processing_task t ON t.id = b.id WHERE t.input_id <> was.id;
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
        SELECT t.id, t.input_id, i.source FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled',
            state_reason = CASE WHEN open.input_id = was.id
                                THEN format('its input %s was corrected: input %s replaces it', was.id, new_id)
                                WHEN open.source = 'multi_input'
                                THEN format('its multi-input group was made from input %s or down its chain, which was '
                                            'corrected: input %s replaces it, and the group is made anew', was.id, new_id)
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
    -- version, they would start its chain again. None is being chained now (the lock taken first). All of
    -- them are outdated_by the corrected input (migration 0097): hrwsi.chain_missed_products chained one
    -- to a condition made active after the correction, and a group took one as a member (found by review).
    WITH old AS (
        SELECT x.id FROM hrwsi.product x JOIN hrwsi.processing_task t ON t.id = x.task_id
        WHERE t.input_id = was.id OR t.id = ANY (downstream)
        ORDER BY x.id FOR UPDATE OF x
    ), marked AS (
        UPDATE hrwsi.product p SET chained_at = coalesce(p.chained_at, now()), outdated_by = coalesce(p.outdated_by, new_id)
        FROM old WHERE p.id = old.id
        RETURNING p.path
    )
    SELECT coalesce(array_agg(m.path), '{}') INTO outdated FROM marked m;
    -- The multi-input groups made from them, or from the old input itself, are superseded too: the harvester
    -- makes each anew from the members it has then (a group's input is one per condition and path).
    UPDATE hrwsi.input g SET superseded_by = new_id
    WHERE g.source = 'multi_input' AND g.superseded_by IS NULL
      AND g.id IN (SELECT m.input_id FROM hrwsi.multi_input_member m
                   WHERE m.member_path = ANY (outdated) OR (m.member_path = was.input_path AND was.product_id IS NULL));
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
