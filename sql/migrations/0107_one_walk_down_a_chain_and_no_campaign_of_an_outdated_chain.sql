-- hrwsi schema, version 107: corrections and reprocessing, what the morning's round left (found by review).
--
-- - hrwsi.reprocess reprocessed an input chained from a product a correction outdated (product.outdated_by), in READ
--   COMMITTED too: the correction cancels such an input's open tasks but keeps the input, and a campaign made
--   products from the old version's output beside the corrected input's chain. Such inputs are left out; the answer
--   (and "nothing to reprocess") says how many, and why.
-- - hrwsi.retry_task's refusal of a task of a corrected input hinted "the corrected input's task runs instead" after
--   each message, a campaign's task's too, whose message says the campaign does not run it; and a campaign's task
--   down a chain was told that the corrected input's products chain anew and make it. Each hint says what does the
--   task's work in its case.
-- - The walk down a chain (from an input through its tasks' products to the tasks made from them) was written twice,
--   in hrwsi.correct_input and in `hrwsi retry --routine R`'s list (report_tasks_to_retry), and the two had drifted:
--   the list told a campaign's composite of the old version by creation times, and listed one that a correction begun
--   before its campaign had cancelled (hrwsi.retry_task refuses it by migration 0104's mark), which stopped the
--   command. One function, hrwsi.tasks_down_a_chain, used by both.

CREATE FUNCTION hrwsi.tasks_down_a_chain(inputs bigint[]) RETURNS SETOF bigint LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    WITH RECURSIVE below(id) AS (
        SELECT o.id FROM input x JOIN processing_task o ON o.input_id = x.id WHERE x.id = ANY (inputs)
        UNION
        SELECT t.id FROM input x JOIN multi_input_member g ON g.member_path = x.input_path
        JOIN input y ON y.id = g.input_id JOIN processing_task t ON t.input_id = g.input_id
        WHERE x.id = ANY (inputs) AND x.product_id IS NULL AND x.campaign_id IS NULL AND x.source <> 'multi_input'
          AND y.superseded_by IS NOT DISTINCT FROM x.superseded_by
        UNION
        SELECT c.task_id FROM input x JOIN multi_input_campaign_member c ON c.member_path = x.input_path
        WHERE x.id = ANY (inputs) AND x.product_id IS NULL AND x.campaign_id IS NULL AND x.source <> 'multi_input'
          AND c.outdated_by IS NOT DISTINCT FROM x.superseded_by
        UNION
        SELECT m.id FROM below b JOIN product p ON p.task_id = b.id
        CROSS JOIN LATERAL (
            SELECT t.id FROM input i JOIN processing_task t ON t.input_id = i.id WHERE i.product_id = p.id
            UNION ALL
            SELECT t.id FROM multi_input_member g JOIN processing_task t ON t.input_id = g.input_id
            WHERE g.member_path = p.path
            UNION ALL
            SELECT c.task_id FROM multi_input_campaign_member c WHERE c.member_path = p.path) m
    )
    SELECT b.id FROM below b
$$;

REVOKE EXECUTE ON FUNCTION hrwsi.tasks_down_a_chain(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.tasks_down_a_chain(bigint[]) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

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
    was_held boolean;  -- (held by an operator before it was blocked: hrwsi.hold_is_the_tasks_own)
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
    -- (one walk with `hrwsi retry --routine R`'s list of what it leaves out: hrwsi.tasks_down_a_chain, migration 0107)
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO downstream
    FROM hrwsi.tasks_down_a_chain(ARRAY[was.id]) b(id) JOIN hrwsi.processing_task t ON t.id = b.id
    WHERE t.input_id <> was.id;
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
    -- (how the task was made from it, said as it is: a group the old input itself is a member of, or a campaign's
    -- composite that reads it, was said made "down a chain, from its products"; migration 0102, found by review)
    SELECT t.id, t.routine, t.state, t.input_id, j.backend_job_id, j.state AS job_state,
           CASE WHEN t.input_id = was.id THEN 'own'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_member g
                                                        WHERE g.input_id = t.input_id AND g.member_path = was.input_path)
                THEN 'group'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member c
                                                        WHERE c.task_id = t.id AND c.member_path = was.input_path
                                                          AND c.outdated_by IS NULL)
                THEN 'composite'
                ELSE 'chain' END AS made
    INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.input_id <> was.id, t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %)% is %', was.id, busy.id, busy.routine,
                        CASE busy.made WHEN 'own' THEN ' made from it'
                                       WHEN 'group' THEN ', the task of a multi-input group it is a member of,'
                                       WHEN 'composite' THEN format(', a composite of campaign %s that reads it,',
                                                                    (SELECT t.campaign_id FROM hrwsi.processing_task t
                                                                     WHERE t.id = busy.id))
                                       ELSE ' made from it down a chain, from its products,' END,
                        busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                           THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                           ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = CASE busy.made
                                WHEN 'own' THEN 'The corrected input''s task would run beside the attempt made from the old input.'
                                WHEN 'group' THEN 'Its attempt reads the old input as a member of its group, which the '
                                                  'correction makes anew.'
                                WHEN 'composite' THEN 'Its attempt reads the old input as a member of its composite.'
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
    -- (a campaign's task is told that its campaign does not redo it: the corrected input's task, its chain and the group
    -- made anew are production's. It read as a production task's, "input N replaces it", "the group is made anew";
    -- migration 0104, found by review)
    WITH open AS (
        SELECT t.id, t.input_id, t.campaign_id, i.source FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled',
            state_reason = CASE WHEN open.campaign_id IS NOT NULL AND open.input_id = was.id
                                THEN format('its input %s was corrected (input %s replaces it): its production task runs '
                                            'the corrected input, and campaign %s does not; `hrwsi reprocess` starts a '
                                            'campaign that does', was.id, new_id, open.campaign_id)
                                WHEN open.campaign_id IS NOT NULL AND open.source = 'multi_input'
                                THEN format('a composite of campaign %s that read input %s or a product down its chain, '
                                            'which was corrected (input %s replaces it): the campaign does not make it '
                                            'anew; `hrwsi reprocess` starts a campaign that does, once production has '
                                            'processed the corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.campaign_id IS NOT NULL
                                THEN format('made down a chain in campaign %s from the products of input %s, which was '
                                            'corrected (input %s replaces it): the campaign does not redo it; `hrwsi '
                                            'reprocess` starts a campaign that does, once production has processed the '
                                            'corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.input_id = was.id
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
    -- The members of campaigns' composites that are of the old version, the corrected input itself or a product marked
    -- above, are marked too (migration 0104): `hrwsi retry` of such a composite is refused. A composite made from then
    -- on reads the corrected version, never marked.
    UPDATE hrwsi.multi_input_campaign_member c SET outdated_by = new_id
    WHERE c.outdated_by IS NULL AND ((c.member_path = was.input_path AND was.product_id IS NULL) OR c.member_path = ANY (outdated));
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
    -- (not an operator's retry of it: an operator's hold of it is kept, and it is held again once its wait ends, or
    -- stays marked held behind a task that cannot run; migration 0098: the retry's release of its own hold lost it)
    FOR waiting, was_held IN
        SELECT t.id, t.held_while_blocked FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state = CASE WHEN was_held AND state = 'pending' THEN 'on_hold' ELSE state END,
            held_while_blocked = was_held AND state = 'blocked',
            state_reason = CASE WHEN state = 'blocked' THEN state_reason
                                ELSE CASE WHEN was_held THEN 'held by an operator, as before it was blocked: '
                                          WHEN state = 'on_hold'
                                          THEN coalesce(hrwsi.hold_a_new_task_takes(routine, campaign_id, lane) || '; ', '')
                                          ELSE '' END
                                     || format('relinked: the task it waited for was cancelled by the correction of '
                                               'input %s', was.id) END
        WHERE id = waiting AND state IN ('pending', 'on_hold', 'blocked');
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
            -- (a held one behind a task that cannot run is blocked, an operator's hold of it kept: migration 0098)
            state = CASE WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'on_hold' THEN 'on_hold' ELSE 'pending' END,
            held_while_blocked = t.state = 'on_hold' AND coalesce(r.previous_state IN ('terminated', 'blocked'), false)
                                 AND hrwsi.hold_is_the_tasks_own(t.state_reason),
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- (what it waits for, not a state of that task, which outgrows the reason: migration 0098)
            state_reason = CASE WHEN r.previous_state = 'terminated'
                                THEN format('relinked by the correction of input %s: its dependency, task %s, ended '
                                            'terminated; `hrwsi retry %s` runs the dependency again, `hrwsi release %s` '
                                            'runs this task without it', was.id, r.previous, r.previous, t.id)
                                WHEN r.previous_state = 'blocked'
                                THEN format('relinked by the correction of input %s: waits for task %s, which has to run '
                                            'before it (`hrwsi task show %s` says what that task waits for)', was.id,
                                            r.previous, r.previous)
                                WHEN t.state = 'on_hold' THEN t.state_reason
                                ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                            'corrects', was.id, new_id) END
        FROM relink r WHERE t.id = r.id
        RETURNING t.id, t.routine, t.state, t.state_reason, r.previous_state
    ), alerted AS (
        -- (ops are told of a task it blocked behind a terminated one, as the other paths that block tell them:
        -- migration 0102, found by review)
        INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
        SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', m.id, m.routine), m.state_reason, m.id, m.routine
        FROM moved m WHERE m.previous_state = 'terminated' AND m.state = 'blocked'
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO relinked FROM moved m;
    PERFORM hrwsi.pass_deadlines_down(relinked);
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    -- (what a REPEATABLE READ transaction that waited for this correction locks, to learn that it came after its
    -- snapshot: hrwsi.see_the_corrections_before; migration 0104)
    UPDATE hrwsi.last_correction SET input_id = was.id, corrected_at = now();
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL, again boolean DEFAULT false)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
    twin bigint;
    left_out integer;  -- (inputs chained from products a correction outdated: not reprocessed)
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
            RAISE EXCEPTION 'no condition %', hrwsi.quoted_name(reprocess.condition) USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(target) USING ERRCODE = 'no_data_found';
    END IF;
    -- No input is corrected while a campaign is started, and a correction under way is waited for (the lock a
    -- correction takes exclusively, hrwsi.correct_input; taken first, as chaining takes it): its composites read the
    -- members a group has now, and one started during a correction read the old version's, which the correction had
    -- not marked outdated yet, nor had it cancelled the task it did not see (found by review; migration 0102). The
    -- statements after it see what the correction did.
    PERFORM pg_advisory_xact_lock_shared(7250098, 1);
    -- (not in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot, taken before that wait, misses a correction
    -- that committed since: its composite read the old version's product; migration 0104, found by review)
    PERFORM hrwsi.see_the_corrections_before('hrwsi.reprocess', 'the inputs');
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773).
    PERFORM pg_advisory_xact_lock(1752332131);  -- 0x68727763, "hrwc"
    IF NOT reprocess.again THEN
        SELECT k.id INTO twin
        FROM campaign k
        WHERE k.routine = target AND k.condition IS NOT DISTINCT FROM reprocess.condition
          AND k.measured_from = reprocess.measured_from AND k.measured_to = reprocess.measured_to
          AND (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(k.tiles) x)
              IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(reprocess.tiles) x)
          AND k.command IS NOT DISTINCT FROM reprocess.command AND k.image IS NOT DISTINCT FROM reprocess.image
          AND k.cancelled_at IS NULL
          AND EXISTS (SELECT 1 FROM campaign_progress p WHERE p.campaign_id = k.id AND p.finished_at IS NULL)
        ORDER BY k.id DESC
        LIMIT 1;
        IF twin IS NOT NULL THEN
            RAISE EXCEPTION 'campaign % already reprocesses these inputs with this version and has not finished', twin
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'campaign_is_not_started_twice',
                      HINT = format('SELECT * FROM hrwsi.campaign_progress WHERE campaign_id = %s shows it; call '
                                    'hrwsi.reprocess with again => true to start another one anyway (both run)', twin);
        END IF;
    END IF;
    -- An input chained from a product a correction outdated (product.outdated_by) is of the old version: the
    -- correction cancelled its open tasks but kept the input, processed or not (migration 0094), and a campaign
    -- reprocessed it, making products from the old version's output beside those of the corrected input's chain, in
    -- READ COMMITTED too (found by review; migration 0107). Left out, and counted in the answer, which says why.
    SELECT count(*) INTO left_out
    FROM input i
    JOIN processing_condition c ON c.name = i.processing_condition
    JOIN product p ON p.id = i.product_id
    WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
      AND i.campaign_id IS NULL AND i.superseded_by IS NULL AND p.outdated_by IS NOT NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed');
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
      -- (an input a correction superseded is reprocessed as its correction: migration 0083, found by review)
      AND i.campaign_id IS NULL AND i.superseded_by IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
      AND NOT EXISTS (SELECT 1 FROM product p WHERE p.id = i.product_id AND p.outdated_by IS NOT NULL)
    ORDER BY i.measured_at, i.id
    -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
    -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
    FOR KEY SHARE OF i;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), hrwsi.utc_text(reprocess.measured_from), hrwsi.utc_text(reprocess.measured_to),
            CASE WHEN reprocess.tiles IS NULL THEN ''
                 ELSE ' (tiles ' || (SELECT string_agg(hrwsi.quoted_name(t), ', ') FROM unnest(reprocess.tiles) t) || ')' END
            || CASE WHEN left_out > 0
                    THEN format('; %s input(s) left out, chained from products of an old version, which a correction '
                                'outdated (the corrected input''s chain makes them anew)', left_out) ELSE '' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    -- A composite (a task of a multi-input condition) is made again from the members its group has
    -- now, recorded for the campaign's task (migration 0073): production's record is the members
    -- there were when the group was made, and a member that arrived after its composite ran was in
    -- no composite, the campaign's neither (found by exploratory testing).
    INSERT INTO multi_input_campaign_member (task_id, member_path, product_type, measured_at)
    SELECT t.id, m.member_path, min(m.product_type), min(m.measured_at)
    FROM processing_task t
    JOIN input g ON g.id = t.input_id
    CROSS JOIN LATERAL multi_input_members_now(g.processing_condition, g.tile,
                                               substring(g.input_path FROM '[0-9]{4}-[0-9]{2}-[0-9]{2}$')::date) m
    WHERE t.campaign_id = new_campaign AND g.source = 'multi_input' AND g.tile IS NOT NULL
    GROUP BY t.id, m.member_path;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, hrwsi.utc_text(reprocess.measured_from),
               hrwsi.utc_text(reprocess.measured_to),
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
           || CASE WHEN left_out > 0
                   THEN format('; %s input(s) left out, chained from products of an old version, which a correction '
                               'outdated (the corrected input''s chain makes them anew)', left_out) ELSE '' END
        FROM campaign k WHERE k.id = new_campaign;
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
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which holds it once retried)
    lift text;
    instead text;     -- (a refusal's hint: what does the task's work instead, said for the case refused)
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
    -- (a campaign's composite that read a member of the old version of a corrected input, which the correction
    -- cancelled: retried, it read that member again; migration 0102, found by review. A member is of the old version
    -- when it is a product the correction outdated, or the corrected input itself, corrected after the task was made)
    SELECT format('task %s, a composite of campaign %s, was made from member %s of input %s, which input %s corrects',
                  t.id, t.campaign_id, c.member_path, o.id, o.superseded_by) INTO refused
    FROM hrwsi.processing_task t JOIN hrwsi.multi_input_campaign_member c ON c.task_id = t.id
    CROSS JOIN LATERAL (
        SELECT x.id, x.superseded_by FROM hrwsi.product p
        JOIN hrwsi.input x ON x.superseded_by = p.outdated_by AND x.source <> 'multi_input'
        WHERE p.path = c.member_path
        UNION ALL
        -- (the corrected input itself, as the correction marked the member: migration 0104. It was told by creation
        -- times, each its transaction's start: a correction begun before the campaign was started seemed to follow it)
        SELECT x.id, x.superseded_by FROM hrwsi.input x
        WHERE x.superseded_by = c.outdated_by AND x.input_path = c.member_path AND x.product_id IS NULL
          AND x.campaign_id IS NULL AND x.source <> 'multi_input'
        ORDER BY 1 LIMIT 1) o
    WHERE t.id = task ORDER BY c.member_path LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'a campaign makes the composite anew from the members there are now: start it again '
                         '(`hrwsi reprocess`, again => true)';
    END IF;
    -- (a task of an input a correction superseded would run the wrong input again: migration 0083. A multi-input
    -- group's input is superseded when a member's input is corrected, and the harvester makes the group anew: the
    -- answer says so, and which task does its work now; it named the group "input G, which input N corrects",
    -- N being the corrected member's input, found by review: migration 0102)
    SELECT CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN format('task %s ran multi-input group %s (input %s), which was made anew when input %s was corrected '
                            '(input %s replaces it)%s', t.id, i.input_path, i.id, x.id, i.superseded_by,
                            CASE WHEN n.task_id IS NOT NULL
                                 THEN format(': task %s, of the new group (input %s), does its work', n.task_id, n.input_id)
                                 ELSE ': the harvester makes the new group once it is complete, and its task does the '
                                      'work (`hrwsi groups` lists it)' END)
                -- (a campaign's: the corrected input's task that runs instead is production's, not the campaign's
                -- version; migration 0104, found by review: it read "the corrected input's task runs instead")
                WHEN t.campaign_id IS NOT NULL AND i.source <> 'multi_input'
                THEN format('task %s, of campaign %s, was made from input %s, which input %s corrects (its production '
                            'task runs the corrected input, and the campaign does not: `hrwsi reprocess` starts a '
                            'campaign that does)', t.id, t.campaign_id, i.id, i.superseded_by)
                ELSE format('task %s was made from input %s, which input %s corrects', t.id, i.id, i.superseded_by) END,
           -- (the hint said "the corrected input's task runs instead" after each, a campaign's too, whose campaign does
           -- not run it; migration 0107, found by review)
           CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN 'the new group''s task does its work (`hrwsi groups` lists the groups, `hrwsi tasks` their tasks)'
                WHEN t.campaign_id IS NOT NULL AND i.source = 'multi_input'
                THEN 'a campaign makes the composite anew from the members there are now: start it again '
                     '(`hrwsi reprocess`, again => true)'
                WHEN t.campaign_id IS NOT NULL
                THEN 'the campaign does not run the corrected input: `hrwsi reprocess` (again => true) starts a campaign '
                     'that does, once production has processed it'
                ELSE 'the corrected input''s task runs instead (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON true
    LEFT JOIN LATERAL (SELECT g.id AS input_id, k.id AS task_id FROM hrwsi.input g
                       JOIN hrwsi.processing_task k ON k.input_id = g.id AND k.campaign_id IS NULL
                       WHERE g.processing_condition = i.processing_condition AND g.input_path = i.input_path
                         AND g.superseded_by IS NULL
                       ORDER BY k.id DESC LIMIT 1) n ON i.source = 'multi_input'
    WHERE t.id = task AND i.superseded_by IS NOT NULL;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
    END IF;
    -- (nor a task made down a chain from the products of such an input's tasks, which the correction cancelled:
    -- retried, it ran from the old version's product again, beside the corrected input's chain; migration 0096)
    -- (retention cuts no link of the walk while the task retried is kept: its input stays while a task names it
    -- (refuse_removing_inputs_tasks_name), a product while an input was made from it (prune_products), and a task
    -- while it has a product (product_task_must_exist); checked by review for migration 0098)
    -- (up every way a task is made from a product, as the correction walks down, migration 0102: the product its input
    -- was chained from, the products its multi-input group, or its campaign's composite, read as members. It followed
    -- the chained inputs alone, and a task down a chain from a campaign's composite that read an outdated member was
    -- retried; one down from a group named the group as the input corrected; found by review)
    WITH RECURSIVE up(task_id) AS (
        SELECT task
        UNION
        SELECT o.task_id FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id
        CROSS JOIN LATERAL (
            SELECT p.task_id FROM hrwsi.input i JOIN hrwsi.product p ON p.id = i.product_id WHERE i.id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_member g JOIN hrwsi.product p ON p.path = g.member_path
            WHERE g.input_id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_campaign_member c JOIN hrwsi.product p ON p.path = c.member_path
            WHERE c.task_id = t.id) o
    )
    SELECT format('task %s was made down a chain from the products of input %s, which input %s corrects', task,
                  coalesce(x.id, i.id), i.superseded_by),
           -- (a campaign's task: its campaign does not chain the corrected input's products; migration 0107)
           CASE WHEN (SELECT k.campaign_id FROM hrwsi.processing_task k WHERE k.id = task) IS NOT NULL
                THEN 'the campaign does not redo it: `hrwsi reprocess` (again => true) starts a campaign that does, once '
                     'production has processed the corrected input'
                ELSE 'the corrected input''s products chain anew and make this step''s task (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON i.source = 'multi_input'
    WHERE u.task_id <> task AND i.superseded_by IS NOT NULL ORDER BY i.source = 'multi_input', i.id LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
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
    -- (an operator's retry is a fresh start, its failures and losses counted from zero: the worker its last
    -- attempt could not be placed on is avoided no more, migration 0089. Nomad's reason, a drained node or
    -- another team's job on it, was true then, minutes or days before; and the operator who wants a worker
    -- avoided sets it inactive (worker.active), which every attempt avoids. It was kept until an attempt ran.)
    -- (and it starts from the urgency it is owed now, its own, taking again only from the tasks that still wait for it
    -- (the trigger's step for tasks pending again, and the pass below): what it took before it ended it kept, from a
    -- task released since to run without it too, and it was planned at that task's urgency; migration 0095, found by
    -- review. The give-back's own rule, hrwsi.give_back_taken_deadlines)
    -- (an operator's retry lifts the task's own hold, kept through a block too: migration 0098)
    UPDATE hrwsi.processing_task t
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        held_while_blocked = false,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL, avoid_worker = NULL,
        deadline_at = CASE WHEN t.deadline_inherited_from IS NOT NULL THEN t.own_deadline_at ELSE t.deadline_at END,
        own_deadline_at = NULL, deadline_inherited_from = NULL, priority_inherited_from = NULL,
        priority = CASE WHEN t.priority_inherited_from IS NOT NULL OR t.deadline_inherited_from IS NOT NULL
                        THEN (SELECT CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                          THEN least(l.priority, 0) ELSE l.priority END
                              FROM hrwsi.lane l WHERE l.name = t.lane)
                        ELSE t.priority END,
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
            ELSE format('retried by an operator; waits for task %s, which has to run before it (`hrwsi task show %s` '
                        'says what that task waits for): it runs once that task has run', previous, previous) END
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
            SELECT n.id, n.state AS old_state, me.state AS my_state,
                   CASE WHEN n.state = 'blocked' THEN hrwsi.hold_a_new_task_takes(n.routine, n.campaign_id, n.lane) END
                       AS group_hold
            FROM me CROSS JOIN LATERAL (
                SELECT n.id, n.state, n.depends_on, n.dependency_waived, n.routine, n.campaign_id, n.lane
                FROM hrwsi.processing_task n
                WHERE n.routine = me.routine AND n.series_tile = me.series_tile AND n.state <> 'cancelled'
                  AND n.campaign_id IS NOT DISTINCT FROM me.campaign_id AND (n.series_at, n.id) > (me.series_at, me.id)
                ORDER BY n.series_at, n.id LIMIT 1) n
            WHERE n.depends_on IS DISTINCT FROM task AND NOT n.dependency_waived
              AND n.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ), changed AS (
            -- (behind it blocked, a held one is blocked too, its own hold kept to hold it again when its wait ends, as
            -- the end of the task it waits for blocks it; and a blocked one whose wait ends is held again if an operator
            -- held it, or with its routine, campaign or back-fill: migration 0098, found by review. A held one stayed
            -- held behind a task that could not run, and was pending once released, its wait never decided again)
            UPDATE hrwsi.processing_task t
            SET depends_on = task,
                state = CASE WHEN x.my_state = 'blocked' THEN 'blocked' WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN t.state = 'blocked' AND (t.held_while_blocked OR x.group_hold IS NOT NULL) THEN 'on_hold'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = CASE WHEN x.my_state <> 'blocked' THEN false
                                          WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                          ELSE t.held_while_blocked END,
                worker = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN x.my_state = 'blocked'
                                    THEN format('waits for task %s, which has to run before it (`hrwsi task show %s` says '
                                                'what that task waits for): it runs once that task has run', task, task)
                                    WHEN t.state = 'on_hold' THEN t.state_reason
                                    ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                              WHEN t.held_while_blocked THEN 'held by an operator, as before it was blocked: '
                                              ELSE coalesce(x.group_hold || '; ', '') END
                                         || format('task %s before it in its time series was retried: it runs after it', task)
                               END
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
        -- The retried task, and the tasks that wait for it again, pass their priority and deadline down to the
        -- less urgent tasks they wait for now, at once, as a task an INSERT links does (migration 0086): a
        -- near-real-time scene behind a retried archive task passed nothing down until the series' next INSERT,
        -- and waited behind it at the archive lane's priority meanwhile (found by review). Each read by key.
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT task UNION ALL
                                                SELECT t.id FROM hrwsi.processing_task t WHERE t.depends_on = task));
    END IF;
    -- A task pending again whose routine, campaign or back-fill is on hold is held with it, as a new task of it is
    -- (migration 0098): the retry lifts its own hold only. It was pending, shown so while dispatch skipped it.
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task AND t.state = 'pending';
    IF group_hold IS NOT NULL THEN
        UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = group_hold || '; ' || state_reason
        WHERE id = task;
        RETURN format('task %s was %s; it is retried, but it is still held: %s', task, current, lift);
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;
