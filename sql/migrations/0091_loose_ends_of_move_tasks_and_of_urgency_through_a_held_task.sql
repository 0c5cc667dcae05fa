-- hrwsi schema, version 91: the loose ends of migration 0090, in hrwsi.move_tasks, in the urgency a held task had
-- passed on, and in the reason of a task behind one cancelled while its series' lock was busy.
--
-- - hrwsi.move_tasks into a time series: the first moved task of a tile, with no task before it there, kept the
--   task it waited for on the old routine (blocked behind it, if that one had ended terminated); it waits for
--   none now, as an INSERT would link it. Each task it links decides again what it waits for upstream: each kept
--   the wait of its place in the old series, so that one moved first of its tile ran before a scene sensed before
--   it whose upstream work was open. A task the move makes pending (a blocked one that may run now) on a routine
--   on hold is held with it, as a pending one is (blocked cannot be held in one step). The move takes the series'
--   locks of the tiles it moves in both routines, in one ordered pass: an INSERT into the old routine's series in
--   flight linked its scene behind a task the move took away, and it stayed on the old routine waiting for a task
--   of the new one; a tile whose first task was made after that pass keeps its tasks, and the answer says so.
--   (All found by review.)
-- - A task held in the middle of a chain takes back what passed through it, from the tasks before it: the task
--   it came from cannot run before the held one is released (found by review). The hold step of
--   hrwsi.after_task_changes gives back from every task that took it the urgency the held task itself took
--   (read from the transition rows at hand, no statement more), and it is passed down again as far as the held
--   task; a planned task that gives it back says it was held up (hrwsi.give_back_taken_deadlines).
-- - The task after a task of its series cancelled while the series' lock was busy says that the orchestrator's
--   sweep links it to the task before the cancelled one, as do the tasks after it, and no task_blocked alert is
--   raised: it offered a retry of the cancelled task, or a release that would run it out of sensing order, until
--   the sweep (found by review).

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

CREATE OR REPLACE FUNCTION hrwsi.give_back_taken_deadlines(cancelled bigint[]) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
DECLARE
    given bigint[];
BEGIN
    WITH back AS (
        UPDATE processing_task t
        SET deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN t.own_deadline_at
                               ELSE t.deadline_at END,
            deadline_inherited_from = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.deadline_inherited_from END,
            own_deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL ELSE t.own_deadline_at END,
            priority = CASE WHEN t.priority_inherited_from = ANY (cancelled)
                                 OR (t.priority_inherited_from IS NULL AND t.deadline_inherited_from = ANY (cancelled))
                            THEN CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                      THEN least(l.priority, 0) ELSE l.priority END
                            ELSE t.priority END,
            priority_inherited_from = CASE WHEN t.priority_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.priority_inherited_from END,
            state = CASE WHEN t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            -- (not "served by its own": a task after it may give it its deadline at once, below)
            -- (held or cancelled, as that task is now: migration 0090)
            state_reason = CASE WHEN t.state = 'planned' AND t.deadline_inherited_from = ANY (cancelled)
                                THEN format('task %s, whose deadline it took, was %s: it gave it back, planned '
                                            'again', t.deadline_inherited_from,
                                            (SELECT CASE x.state WHEN 'on_hold' THEN 'held' WHEN 'cancelled' THEN 'cancelled'
                                                        ELSE 'held up by a held task, or moved' END
                                             FROM processing_task x WHERE x.id = t.deadline_inherited_from))
                                WHEN t.state = 'planned'
                                THEN format('task %s, whose priority it took, was %s: it gave it back, planned '
                                            'again', t.priority_inherited_from,
                                            (SELECT CASE x.state WHEN 'on_hold' THEN 'held' WHEN 'cancelled' THEN 'cancelled'
                                                        ELSE 'held up by a held task, or moved' END
                                             FROM processing_task x WHERE x.id = t.priority_inherited_from))
                                ELSE t.state_reason END
        FROM lane l
        -- (the tasks that took one, by key through the partial indexes of the names, at every cancel since
        -- migration 0089; the state test wrapped so that no index of states serves it: a plan made on a table
        -- of few tasks read every pending task for it)
        WHERE (t.deadline_inherited_from = ANY (cancelled) OR t.priority_inherited_from = ANY (cancelled))
          AND l.name = t.lane AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'), false)
        RETURNING t.id
    )
    SELECT coalesce(array_agg(b.id), '{}') INTO given FROM back b;
    IF cardinality(given) > 0 THEN
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT t.id FROM processing_task t
                                                WHERE t.depends_on = ANY (given)
                                                  AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'),
                                                               false)));
    END IF;
    RETURN cardinality(given);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on SET jit = off AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state ...
    progress json;         -- ... but those of work under way (hrwsi.state_is_under_way), told apart
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    upstream bigint[];     -- (of an UPDATE) tasks upstream of a time series that ended ...
    reopened bigint[];     -- ... or were retried from their end
    cancelled bigint[];    -- (of an UPDATE) tasks cancelled ...
    lenders bigint[];      -- ... or held: they lend no priority nor deadline (migration 0090)
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
            OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending', 'blocked', 'on_hold'] THEN
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
    -- 0084) ... and the tasks that took the cancelled ones' priority or deadline give them back (migration 0089:
    -- whoever cancels, a campaign's cancel of its tasks or an UPDATE by hand too, not hrwsi.cancel_task and
    -- hrwsi.correct_input alone: the tasks before a fresh scene cancelled otherwise kept its priority for good,
    -- served ahead of near-real-time work; found by review). After the skip, as those two call them: the tasks
    -- after a cancelled one wait for the task before it by then, and pass their own down at once. Each task
    -- that took one is found by key (the partial indexes of the names): none found, nothing more is read.
    -- A task held (by hand, with its routine, its campaign or its back-fill) gives back in the same step what
    -- it lent (migration 0090): it lends nothing while held (hrwsi.pass_deadlines_down), and the tasks before
    -- an urgent scene an operator held stayed raised, served ahead of near-real-time work that could run;
    -- released, it lends again at once (below, with the tasks pending again). The only caller of the
    -- give-back: hrwsi.cancel_task and hrwsi.correct_input called it again after their UPDATE, which found
    -- nothing left, two probes of the indexes for nothing.
    IF new_states && ARRAY['cancelled', 'on_hold'] THEN
        -- (a task held in the middle of a chain takes back too what passed through it, from the tasks before it:
        -- the task it took that from waits behind it, and cannot run before it is released, so that the tasks
        -- before it had no reason to be urgent on its behalf; they record only whose urgency it was, so that
        -- is given back from all who took it, and passed down again as far as the held task: migration 0091,
        -- found by review; read from the rows at hand, no statement more)
        SELECT array_agg(d.id) FILTER (WHERE d.state = 'cancelled'),
               array_agg(d.id)
               || array_agg(d.deadline_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.deadline_inherited_from IS NOT NULL)
               || array_agg(d.priority_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.priority_inherited_from IS NOT NULL)
        INTO cancelled, lenders
        FROM new_rows d JOIN old_rows o USING (id)
        WHERE d.state IN ('cancelled', 'on_hold') AND o.state <> d.state;
        IF 'cancelled' = ANY (new_states) THEN
            PERFORM hrwsi.skip_cancelled_tasks(ARRAY(SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
                                                     WHERE d.state = 'cancelled' AND o.state <> 'cancelled'
                                                       AND d.series_tile IS NOT NULL));
        END IF;
        IF lenders IS NOT NULL THEN
            PERFORM hrwsi.give_back_taken_deadlines(lenders);
        END IF;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents (a time series' task that
    -- did not take the one before a cancelled task: its series' lock was busy; the orchestrator's sweep,
    -- hrwsi.recheck_upstream_waits, links it once the lock is free: migration 0090) ...
    IF new_states && ARRAY['terminated', 'cancelled'] THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    -- (a task of a time series whose previous task was cancelled while the series' lock was busy,
                    -- as the sweep finds it: the sweep links it to the task before the cancelled one, and ops are
                    -- not alerted; its reason offered a retry of the cancelled task, or a release that would run
                    -- it out of sensing order, until the sweep: migration 0091, found by review)
                    state_reason = CASE WHEN d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                                             AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id
                                        THEN format('task %s before it in its time series was cancelled while another '
                                                    'transaction held the series'' lock: the orchestrator''s sweep links '
                                                    'it to the task before that one within a minute', d.id)
                                        ELSE format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                                    'dependency again, `hrwsi release %s` runs this task without it',
                                                    d.id, d.state, d.id, t.id) END
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason,
                          d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                          AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id AS swept
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked WHERE swept IS NOT TRUE $q$;
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
                    -- (behind one the sweep links past a task cancelled while its series' lock was busy, above)
                    WHEN cause.state = 'cancelled' AND r.series_tile = cause.series_tile AND r.routine = cause.routine
                         AND r.campaign_id IS NOT DISTINCT FROM cause.campaign_id THEN
                        format('waits for task %s, which is blocked behind task %s, cancelled while its time series'' '
                               'lock was busy: the orchestrator''s sweep links it past that task within a minute, and '
                               'the tasks after it then run in order', t.depends_on, cause.id)
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
    -- ... and, retried, released or linked to another task (a late scene, a cancelled one skipped), unblocks
    -- them and the tasks after them in their chain, saying which of these happened (migration 0085: "its
    -- dependency was retried or released" was said of a task that had been neither, but now waited for
    -- another task, or for none: found by review).
    -- (one look at the old rows for the two steps below: a statement of the outcome writer that retries
    -- failed tasks pays no more than before migration 0089)
    IF 'pending' = ANY (new_states)
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked', 'on_hold')) THEN
      IF EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root, what) AS (
                SELECT t.id, d.id,
                       CASE WHEN o.state IN ('terminated', 'cancelled') THEN 'was retried'
                            WHEN d.dependency_waived AND NOT o.dependency_waived
                            THEN 'was released by an operator, to run without the task it waited for'
                            WHEN d.depends_on IS NULL AND o.depends_on IS NOT NULL THEN 'waits for no task now'
                            WHEN d.depends_on IS DISTINCT FROM o.depends_on THEN format('waits for task %s now', d.depends_on)
                            ELSE 'is no longer blocked' END
                FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = 'pending')
                UNION ALL
                SELECT t.id, a.root, a.what FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            ), locked AS MATERIALIZED (
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (one that still waits for upstream work says so too: migration 0077)
            UPDATE processing_task t SET state = 'pending',
                state_reason = CASE WHEN t.depends_on = a.root THEN format('its dependency, task %s, %s', a.root, a.what)
                                    ELSE format('its dependency, task %s, is no longer blocked: task %s before it %s',
                                                t.depends_on, a.root, a.what) END
                    || CASE WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                            THEN coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '') ELSE '' END
            FROM after_it a WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
      END IF;
      -- A task that waits for a task now pending again (released from a hold, its own or its routine's, its
      -- campaign's or its back-fill's; released or unblocked from blocked; retried) passes its priority and
      -- deadline down to it at once (migration 0089): held or blocked, that task took nothing, and its release
      -- passed nothing down until the series' next INSERT, a near-real-time scene waiting behind archive work
      -- served at the archive lane's priority meanwhile (found by review). The tasks this unblocked, above, do
      -- the same for the tasks after them in this trigger's call for their own UPDATE. (Not a task released to
      -- run without it, dependency_waived: it waits for it no more; hrwsi.pass_deadlines_down's rule.) A task
      -- released from a hold lends its own again, to the tasks it waits for (migration 0090: held, it gave back).
      EXECUTE $q$
          SELECT hrwsi.pass_deadlines_down(ARRAY(
              SELECT t.id FROM new_rows d JOIN old_rows o USING (id) JOIN processing_task t ON t.depends_on = d.id
              WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked', 'on_hold')
                AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              UNION ALL
              SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
              WHERE d.state = 'pending' AND o.state = 'on_hold' AND d.depends_on IS NOT NULL)) $q$;
    END IF;
    RETURN NULL;
END $$;
