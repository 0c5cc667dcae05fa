-- hrwsi schema, migration 0105: holds and corrections, loose ends (found by review).
--
-- - `hrwsi campaigns --release ID` (hrwsi.release_campaign, the dashboard's Release of a campaign) released every held
--   task of the campaign, those an operator held one by one included, while a routine's release lifts the routine's
--   hold only (migration 0101). It lifts the campaign's hold only: a task an operator held stays held, and one of a
--   routine on hold stays held with it, its reason saying so (it kept saying "campaign N on hold" once the campaign
--   was released); the answer says how many stay held, and how to lift them.
-- - In a REPEATABLE READ or SERIALIZABLE transaction, hrwsi.reprocess and hrwsi.chain_missed_products waited for a
--   correction under way (the lock 7250098/1) but read what their snapshot, taken before the wait, showed: a
--   campaign's composite read the old version's product, not outdated yet, and ran from it (or the call failed with a
--   bare "could not serialize access due to concurrent update"). hrwsi.correct_input writes hrwsi.last_correction's
--   one row, and they lock it there (hrwsi.see_the_corrections_before): a correction committed after their snapshot
--   is refused in one sentence that says what to do (SQLSTATE 40001, a new transaction sees it).

CREATE OR REPLACE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
    still_held bigint;  -- (held by their routine, which holds them still)
    holders text[];     -- (... those routines: a campaign's chain runs the routines downstream too)
    own bigint;         -- (held by an operator one by one, blocked since or not: they stay held)
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', release_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign) THEN
        RAISE EXCEPTION 'campaign % is not on hold: only a held campaign can be released',
            release_campaign.campaign USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE id = release_campaign.campaign;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.campaign_id = release_campaign.campaign AND t.state = 'on_hold'
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    WITH changed AS (
        UPDATE hrwsi.processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN 'campaign released by an operator'
                                         || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE 'campaign released by an operator' END
        FROM (SELECT x.id, hrwsi.hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM hrwsi.processing_task x
              WHERE x.campaign_id = release_campaign.campaign AND x.state = 'on_hold'
                AND NOT hrwsi.hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.id, t.routine, t.state, t.state_reason, t.attempts, t.worker
    ), history AS (
        -- (held before and held now, by their routine: no change of state, whose history row the trigger writes)
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = 'on_hold'
    )
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           array_agg(DISTINCT c.routine ORDER BY c.routine) FILTER (WHERE c.state = 'on_hold')
    INTO released, still_held, holders FROM changed c;
    SELECT count(*) INTO own FROM hrwsi.processing_task t
    WHERE t.campaign_id = release_campaign.campaign
      AND ((t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason)) OR (t.state = 'blocked' AND t.held_while_blocked));
    RETURN format('campaign %s released; %s held task(s) will be planned', release_campaign.campaign, released)
        || CASE WHEN cardinality(holders) = 1
                THEN format('; %s stay held with their routine %s, on hold: `hrwsi release %s` releases it', still_held,
                            holders[1], holders[1])
                WHEN still_held > 0
                THEN format('; %s stay held with their routines %s, on hold: `hrwsi release ROUTINE` releases each',
                            still_held, array_to_string(holders, ', '))
                ELSE '' END
        || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                         'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;

CREATE TABLE hrwsi.last_correction (
    only_row     boolean PRIMARY KEY DEFAULT true CONSTRAINT last_correction_is_one_row CHECK (only_row),
    input_id     bigint,        -- (the input corrected last: no key, retention removes inputs)
    corrected_at timestamptz
);
INSERT INTO hrwsi.last_correction (only_row) VALUES (true);
REVOKE ALL ON hrwsi.last_correction FROM PUBLIC;
GRANT SELECT ON hrwsi.last_correction TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

CREATE OR REPLACE FUNCTION hrwsi.see_the_corrections_before(caller text, reads text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM 1 FROM hrwsi.last_correction FOR SHARE;
    EXCEPTION WHEN serialization_failure THEN
        RAISE EXCEPTION 'an input was corrected after this transaction''s snapshot was taken: % would read % as they '
                        'were before the correction, and is refused', caller, reads
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('A %s transaction reads what its snapshot shows, taken before %s waited for the '
                                  'correction under way.', upper(current_setting('transaction_isolation')), caller),
                  HINT = 'run it again in a new transaction (its snapshot sees the correction), or in a READ COMMITTED one';
    END;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.see_the_corrections_before(text, text) FROM PUBLIC;

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
    -- that committed since: its composite read the old version's product; migration 0105, found by review)
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
        FROM campaign k WHERE k.id = new_campaign;
END $$;

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
        -- (nor in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot misses a correction that committed since:
        -- migration 0105)
        PERFORM hrwsi.see_the_corrections_before('hrwsi.chain_missed_products', 'the products');
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
    -- (how the task was made from it, said as it is: a group the old input itself is a member of, or a campaign's
    -- composite that reads it, was said made "down a chain, from its products"; migration 0102, found by review)
    SELECT t.id, t.routine, t.state, t.input_id, j.backend_job_id, j.state AS job_state,
           CASE WHEN t.input_id = was.id THEN 'own'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_member g
                                                        WHERE g.input_id = t.input_id AND g.member_path = was.input_path)
                THEN 'group'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member c
                                                        WHERE c.task_id = t.id AND c.member_path = was.input_path)
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
    -- snapshot: hrwsi.see_the_corrections_before; migration 0105)
    UPDATE hrwsi.last_correction SET input_id = was.id, corrected_at = now();
    RETURN new_id;
END $$;
