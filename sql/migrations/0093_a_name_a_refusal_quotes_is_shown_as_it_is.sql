-- hrwsi schema, version 93: a name a refusal quotes is shown as it is.
--
-- - quote_literal (and format('%L')) wrote a name holding a backslash in SQL's E'' form: `hrwsi hold 'a\b'`
--   said "no routine E'a\\b'", which a data engineer reads as another name (found by review). Every refusal
--   that quotes a name (hrwsi.hold_routine, release_routine, move_tasks, chain_missed_products, reprocess,
--   chain_cycle_problem) quotes it with hrwsi.quoted_name now: between single quotes, as it is, a quote in it
--   doubled ('a''b'), as SQL writes it with standard_conforming_strings.

CREATE FUNCTION hrwsi.quoted_name(name text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN '''' || replace(name, '''', '''''') || '''';

CREATE OR REPLACE FUNCTION hrwsi.chain_cycle_problem(cycle text[]) RETURNS text LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN cardinality(cycle) = 2 THEN
           format('routine %s chains into itself for ever (%s): it reads the product type it writes, so each of its '
                  'products would make a new input; give it another output_product_type or make its condition '
                  'inactive', hrwsi.quoted_name(cycle[1]), array_to_string(cycle, ' -> '))
       ELSE
           format('routines %s chain into each other for ever (%s): each reads the product type the one before '
                  'writes, so each product would make a new input; give one of them another output_product_type or '
                  'make its condition inactive',
                  (SELECT string_agg(hrwsi.quoted_name(n), ', ' ORDER BY o) FROM unnest(cycle[1:cardinality(cycle) - 1])
                   WITH ORDINALITY AS u(n, o)),
                  array_to_string(cycle, ' -> '))
       END;

CREATE OR REPLACE FUNCTION hrwsi.hold_routine(routine_name text, reason text DEFAULT 'held by an operator')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = reason WHERE name = routine_name AND NOT on_hold;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
            RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
        END IF;
        RETURN format('routine %s was already on hold', routine_name);
    END IF;
    -- (how many it holds, and what goes on: "its new and waiting tasks are held" said neither; 0054)
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.routine = routine_name AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('routine %s is on hold: %s waiting task(s) held, and its new tasks will be until it is released; '
                  '%s dispatched or running go on', routine_name, held, under_way);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
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

CREATE OR REPLACE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
    moved_ids bigint[];
    relinked bigint[];
    key integer;
    refused text;
    stay_under_way bigint;
    stay_campaign bigint;
    stay_made bigint;      -- (tasks made meanwhile on a tile whose series' locks were not taken: they stay)
    tiles text[] := '{}';  -- (the tiles whose series' locks are held)
    moved_reason text := format('moved from routine %s to routine %s by an operator', from_routine, to_routine);
BEGIN
    SELECT * INTO source FROM processing_routine r WHERE r.name = from_routine;
    SELECT * INTO target FROM processing_routine r WHERE r.name = to_routine FOR KEY SHARE;
    IF source.name IS NULL OR target.name IS NULL THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(CASE WHEN source.name IS NULL THEN from_routine ELSE to_routine END)
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
    IF target.sequential_per_tile THEN
        SELECT format('task %s (input %s, tile %s)', t.id, i.id, i.tile) INTO refused
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
          AND t.series_tile IS NULL AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
        ORDER BY t.id LIMIT 1;
        IF refused IS NOT NULL THEN
            -- (all in the message: `hrwsi move-tasks` prints its first line alone)
            RAISE EXCEPTION 'routine % is a time series (sequential_per_tile), routine % is not: its tasks cannot join '
                            'the series of % by a move (%, made outside any series, would run beside the tasks of its '
                            'tile there, out of sensing order); let them run on %, or cancel them (`hrwsi cancel`)',
                            to_routine, from_routine, to_routine, refused, from_routine
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    -- The series' locks first, in the order of their keys, then the rows, as every holder of both: those of the
    -- tiles of the tasks it moves, in the series they leave and in the one they join, in one ordered pass
    -- (migration 0091). Only the series they joined were locked: an INSERT into the old routine's series of a
    -- tile, in flight during the move, linked its scene behind a task the move took away, and it stayed on the
    -- old routine waiting for a task of the new one (found by review). The tasks moved are those of the tiles
    -- locked here: a tile whose first task was made after this pass (its series' lock not taken) keeps its
    -- tasks on the old routine, and the answer says so (a second move takes them).
    tiles := ARRAY(SELECT DISTINCT t.series_tile FROM processing_task t
                   WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.series_tile IS NOT NULL
                     AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'));
    IF source.sequential_per_tile OR target.sequential_per_tile THEN
        FOR key IN
            SELECT DISTINCT k.key
            FROM unnest(tiles) x(tile)
            CROSS JOIN LATERAL (VALUES (hrwsi.series_lock_key(from_routine, x.tile)),
                                       (hrwsi.series_lock_key(to_routine, x.tile))) k(key)
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(7250010, key);
        END LOOP;
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
          AND (t.series_tile IS NULL OR t.series_tile = ANY (tiles))
        ORDER BY t.id  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        FOR UPDATE
    ), changed AS (
        UPDATE processing_task t
        SET routine = to_routine,
            state = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                         WHEN c.state = 'planned' THEN 'pending'
                         WHEN c.state = 'on_hold' AND NOT target.on_hold AND c.state_reason LIKE 'routine on hold: %'
                             THEN 'pending'
                         WHEN c.state = 'blocked' AND NOT target.sequential_per_tile AND NOT t.dependency_waived
                             THEN 'pending'
                         ELSE c.state END,
            -- (out of its series, if the target is no time series: migration 0090)
            series_tile = CASE WHEN target.sequential_per_tile THEN t.series_tile END,
            series_at = CASE WHEN target.sequential_per_tile THEN t.series_at END,
            dependency_waived = t.dependency_waived OR (NOT target.sequential_per_tile AND t.depends_on IS NOT NULL),
            waits_for_upstream = CASE WHEN target.sequential_per_tile THEN t.waits_for_upstream END,
            worker = CASE WHEN c.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold
                                    THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                                WHEN c.state = 'on_hold' AND (target.on_hold OR c.state_reason NOT LIKE 'routine on hold: %')
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN NOT target.sequential_per_tile AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
                                    THEN moved_reason || format('; routine %s is not a time series: it no longer waits '
                                                                'for task %s', to_routine, t.depends_on)
                                WHEN c.state = 'blocked' THEN moved_reason || '; ' || c.state_reason
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                     AND target.sequential_per_tile
                                    THEN moved_reason || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE moved_reason END
        FROM chosen c
        WHERE t.id = c.id
        RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, c.state AS old_state
    ), history AS (
        -- (with the task's whole reason, as the trigger writes it: the move alone left out the wait it names,
        -- upstream work or a blocked task; found by review, migration 0085)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT m.id, m.state, m.state_reason, m.attempts, m.worker FROM changed m WHERE m.state = m.old_state
    )
    SELECT count(*), coalesce(array_agg(m.id), '{}') INTO moved, moved_ids FROM changed m;
    IF NOT target.sequential_per_tile THEN
        -- (the tasks before them that took their urgency, they no longer wait for)
        PERFORM give_back_taken_deadlines(moved_ids);
    ELSIF cardinality(moved_ids) > 0 THEN
        -- Each task of the series of the moved tasks' tiles that has not started waits for the task sensed just
        -- before it, as an INSERT links a scene, or for none (migration 0091: the first moved of its tile, with
        -- none before it, kept the task it waited for on the old routine, and stayed blocked behind it if that
        -- one had ended terminated; found by review); urgency is given back and passed down again along the
        -- links, and what each waits for upstream is decided again, below.
        WITH members AS MATERIALIZED (
            SELECT x.id, x.state, lag(x.id) OVER w AS previous, lag(x.state) OVER w AS previous_state
            FROM processing_task x
            WHERE x.routine = to_routine AND x.campaign_id IS NULL AND x.state <> 'cancelled'
              AND x.series_tile IN (SELECT m.series_tile FROM processing_task m WHERE m.id = ANY (moved_ids))
            WINDOW w AS (PARTITION BY x.series_tile ORDER BY x.series_at, x.id)
        ), locked AS MATERIALIZED (
            -- (in the order of their ids, as every writer of many tasks locks them)
            SELECT t.id FROM processing_task t
            WHERE t.id IN (SELECT s.id FROM members s WHERE s.previous IS NOT NULL OR s.id = ANY (moved_ids))
            ORDER BY t.id FOR NO KEY UPDATE OF t
        ), changed AS (
            UPDATE processing_task t
            SET depends_on = s.previous,
                state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN s.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                                    ELSE CASE WHEN t.id = ANY (moved_ids) THEN moved_reason
                                              ELSE format('tasks of routine %s moved into its time series', from_routine) END
                                         || CASE WHEN s.previous IS NULL
                                                 THEN ': it is the first of its time series now, and waits for no task'
                                                 WHEN s.previous_state IN ('terminated', 'blocked')
                                                 THEN format(': it waits for task %s, sensed before it, which is %s '
                                                             '(`hrwsi task show %s` says why)', s.previous,
                                                             s.previous_state, s.previous)
                                                 ELSE format(': it runs after task %s, sensed before it', s.previous) END
                               END
            FROM members s
            WHERE t.id = s.id AND t.id IN (SELECT l.id FROM locked l) AND (s.previous IS NOT NULL OR t.id = ANY (moved_ids))
              AND t.depends_on IS DISTINCT FROM s.previous AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
            RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, s.state AS old_state
        ), history AS (
            -- (a change of state writes its own row: hrwsi.after_task_changes)
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state
        )
        SELECT coalesce(array_agg(c.id), '{}') INTO relinked FROM changed c;
        IF cardinality(relinked) > 0 THEN
            PERFORM give_back_taken_deadlines(moved_ids || relinked);
            PERFORM pass_deadlines_down(moved_ids || relinked);
        END IF;
        -- What they wait for upstream, from the task before them now (migration 0091): each kept the wait of its
        -- place in the old series, so that the first of its tile there, moved behind a task sensed later than
        -- the open scene it waited for, still waited for that scene, and one moved first of its tile, waiting
        -- for none, ran before a scene sensed before it whose upstream work was open (found by review). Only
        -- those whose wait changes (hrwsi.wait_for_upstream says what it waits for then, or no longer, in its
        -- reason and history): one whose wait stays keeps its reason, which says why it moved.
        PERFORM wait_for_upstream(ARRAY(
            SELECT t.id FROM processing_task t
            LEFT JOIN processing_task p ON p.id = t.depends_on
            LEFT JOIN LATERAL open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at, t.series_at) w ON true
            WHERE t.id = ANY (moved_ids || relinked) AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              AND t.waits_for_upstream IS DISTINCT FROM w.task_id));
    END IF;
    -- Moved to a routine on hold, a task made pending by the move (a blocked one that waits for nothing now, or
    -- for a task that may run) is held with it, as a pending one is (migration 0091: it was pending, though
    -- blocked cannot be held in one step, on a routine whose tasks wait for its release; found by review). So is
    -- one of the series there that the relinking unblocked.
    IF target.on_hold THEN
        UPDATE processing_task t SET state = 'on_hold',
            state_reason = CASE WHEN t.id = ANY (moved_ids) THEN moved_reason || '; ' ELSE '' END
                           || 'routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
        WHERE t.id = ANY (moved_ids || coalesce(relinked, '{}')) AND t.state = 'pending' AND t.routine = to_routine;
    END IF;
    SELECT count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('dispatched', 'queued', 'running')),
           count(*) FILTER (WHERE t.campaign_id IS NOT NULL AND NOT task_state_is_final(t.state)),
           count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'))
    INTO stay_under_way, stay_campaign, stay_made
    FROM processing_task t WHERE t.routine = from_routine;
    RETURN format('%s task(s) of routine %s moved to routine %s%s%s%s', moved, from_routine, to_routine,
                  CASE WHEN stay_under_way > 0
                       THEN format('; %s under way end on %s', stay_under_way, from_routine) ELSE '' END,
                  CASE WHEN stay_campaign > 0
                       THEN format('; %s open task(s) of campaigns stay on %s, their campaign''s routine',
                                   stay_campaign, from_routine) ELSE '' END,
                  CASE WHEN stay_made > 0
                       THEN format('; %s made or reopened on %s during the move stay on it: move them again', stay_made,
                                   from_routine)
                       ELSE '' END);
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
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
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

REVOKE EXECUTE ON FUNCTION hrwsi.quoted_name(text) FROM PUBLIC;
