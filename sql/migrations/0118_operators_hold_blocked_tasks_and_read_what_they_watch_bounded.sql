-- hrwsi schema, version 118: an operator may hold a blocked task, which stays blocked and is held once its wait
-- ends; the release of a blocked task an operator held lifts that hold alone, giving it back to its wait; a routine's
-- release names the campaigns that still hold its tasks in the order of their ids; hrwsi.reprocess whose lock wait ran
-- out says what is locked, by whom, and what to do; `hrwsi status` reads the products a missed range may hold, from
-- when they were recorded, not every product of the type.
--
-- (migration 0118) A blocked task is held by an operator as one held before it was blocked is (held_while_blocked,
-- migration 0095): it stays blocked, is held when its wait ends, and its release lifts that hold alone, giving it
-- back to its wait. It was refused ("task N is blocked: only a pending or planned task ... can be held"), and the
-- release of a blocked task an operator had held ran it without its dependency (found by exploration).
CREATE OR REPLACE FUNCTION hrwsi.hold_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    reason text;
    held_with text;  -- (what holds it besides the operator: its routine, campaign or back-fill, as a new task of it)
BEGIN
    SELECT t.state_reason,
           CASE WHEN r.on_hold THEN format('routine %s', r.name)
                WHEN k.on_hold THEN format('campaign %s', k.id)
                WHEN t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('the back-fill of routine %s', r.name) END
    INTO reason, held_with
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
    LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id LEFT JOIN hrwsi.lane l ON l.name = t.lane
    WHERE t.id = task;
    IF current = 'on_hold' AND hrwsi.hold_is_the_tasks_own(reason)
       OR current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        RAISE EXCEPTION 'task % is already held by an operator: `hrwsi release %` releases it', task, task
            USING ERRCODE = 'check_violation';
    END IF;
    IF current = 'blocked' THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = true WHERE id = task;
        -- (blocked before and after: no change of state, whose history row the trigger writes; said as `hrwsi status`
        -- lists it, its reason the block's, which names the commands that end the wait)
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'held by an operator, and blocked: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s is on hold: blocked still, it is held once its wait ends, until `hrwsi release %s`',
                      task, task);
    END IF;
    IF current NOT IN ('pending', 'planned', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a pending, planned or blocked task, or one held with its routine or '
                        'campaign, can be held', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'held by an operator' WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN current = 'on_hold' AND held_with IS NOT NULL
                THEN format('task %s is on hold, by an operator too: it stays held once %s is released, until '
                            '`hrwsi release %s`', task, held_with, task)
                ELSE format('task %s is on hold', task) END;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which still holds it)
    lift text;
BEGIN
    IF current NOT IN ('on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a held or blocked task can be released', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a blocked task an operator held: the release lifts that hold alone, and it waits for its dependency again, as
    -- before it was held; a second release runs it without: migration 0118)
    IF current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = false WHERE id = task;
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'released by an operator, blocked still: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s released from its operator''s hold; it is still blocked: %s', task,
                      (SELECT t.state_reason FROM hrwsi.processing_task t WHERE t.id = task));
    END IF;
    -- The release of a task lifts its own hold (and its block) only (migration 0098): a task of a routine, campaign
    -- or back-fill on hold is held with it, as a new task of it is, and the answer says what still holds it and how
    -- to lift that. A blocked one was made pending, shown pending by `hrwsi status` and the dashboard while dispatch
    -- skipped its held routine (found by review).
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task;
    -- (a blocked task runs without what it waited for, upstream work included; a held one that still
    -- waits for upstream work says so, not only that it was released: migration 0077)
    UPDATE hrwsi.processing_task SET state = CASE WHEN group_hold IS NOT NULL THEN 'on_hold' ELSE 'pending' END,
        worker = NULL, planned_start = NULL, planned_end = NULL, held_while_blocked = false,
        dependency_waived = dependency_waived OR current = 'blocked',
        waits_for_upstream = CASE WHEN current = 'blocked' THEN NULL ELSE waits_for_upstream END,
        state_reason = coalesce(group_hold || '; ', '') || CASE
                            WHEN current = 'blocked' THEN 'released by an operator: runs without its dependency'
                            WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'released by an operator' || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'released by an operator' END
    WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' AND group_hold IS NOT NULL THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN group_hold IS NOT NULL
                THEN format('task %s released%s, but it is still held: %s', task,
                            CASE WHEN current = 'blocked' THEN ' to run without its dependency' ELSE '' END, lift)
                WHEN current = 'blocked'
                THEN format('task %s released; it will be planned and run without its dependency', task)
                ELSE format('task %s released; it will be planned', task) END;
END $$;

-- (migration 0118) A routine's release names the campaigns that still hold its tasks in the order of their ids, as
-- numbers: sorted as text they read "campaigns 10, 9" (found by exploration).
CREATE OR REPLACE FUNCTION hrwsi.release_held_tasks(held bigint[], released_reason text, still_held_by text, blocked_held bigint,
                                         OUT released bigint, OUT rest text) LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    still_held bigint;
    holders text[];  -- (the campaigns or routines that still hold them: a campaign's chain runs routines downstream)
    own bigint;
BEGIN
    WITH changed AS (
        UPDATE processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN released_reason || coalesce('; ' || upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE released_reason END
        FROM (SELECT x.id, hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM processing_task x
              WHERE x.id = ANY (held) AND x.state = 'on_hold' AND NOT hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.id, t.routine, t.campaign_id, t.state, t.state_reason, t.attempts, t.worker
    ), history AS (
        -- (held before and held now: no change of state, whose history row the trigger writes)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = 'on_hold'
    )
    -- (the campaigns in the order of their ids, as numbers: sorted as text they read "campaigns 10, 9"; migration 0118)
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           (SELECT array_agg(h.holder ORDER BY h.campaign_id, h.holder)
            FROM (SELECT DISTINCT CASE still_held_by WHEN 'routine' THEN x.routine ELSE x.campaign_id::text END AS holder,
                                  CASE still_held_by WHEN 'campaign' THEN x.campaign_id END AS campaign_id
                  FROM changed x WHERE x.state = 'on_hold') h)
    INTO released, still_held, holders FROM changed c;
    SELECT count(*) + blocked_held INTO own FROM processing_task t
    WHERE t.id = ANY (held) AND t.state = 'on_hold' AND hold_is_the_tasks_own(t.state_reason);
    rest := CASE WHEN cardinality(holders) = 1
                 THEN format('; %s stay held with their %s %s, on hold: `%s` releases it', still_held, still_held_by,
                             holders[1], CASE still_held_by WHEN 'routine' THEN 'hrwsi release ' ELSE 'hrwsi campaigns --release '
                                         END || holders[1])
                 WHEN still_held > 0
                 THEN format('; %s stay held with their %ss %s, on hold: `%s` releases each', still_held, still_held_by,
                             array_to_string(holders, ', '), CASE still_held_by WHEN 'routine' THEN 'hrwsi release ROUTINE'
                                                                 ELSE 'hrwsi campaigns --release ID' END)
                 ELSE '' END
         || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                          'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;


-- (migration 0118) hrwsi.reprocess called in SQL whose wait ran out (lock_timeout) said PostgreSQL's "canceling
-- statement due to lock timeout", which only the CLI worded: it says what it waited for (a correction under way,
-- another start of a campaign, an input of its range that another transaction locks), the session that holds it and
-- what to do (found by exploration); hrwsi.chain_missed_products likewise for a correction.
-- (migration 0118) A session as an error names it for a data engineer: `session 123, role alice, application 'psql',
-- its transaction open for 42 s`, as the CLI names a correction's (hrwsi.harvest.corrections.Corrector).
CREATE FUNCTION hrwsi.session_named(p_pid integer) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT concat_ws(', ', format('session %s', p_pid), 'role ' || a.usename::text,
                     'application ' || quote_literal(nullif(a.application_name, '')),
                     format('its transaction open for %s s', round(extract(epoch FROM clock_timestamp() - a.xact_start))))
    FROM (SELECT p_pid) x LEFT JOIN pg_stat_activity a ON a.pid = p_pid
$$;

-- (migration 0118) The lock of a correction (shared: no input is corrected meanwhile) or of a campaign's start (one
-- at a time), taken by hrwsi.reprocess and hrwsi.chain_missed_products; a wait that runs out (lock_timeout) says what
-- it waited for, the session that holds it and what to do, in SQL as the CLI says it: it said PostgreSQL's "canceling
-- statement due to lock timeout" at an advisory lock (found by exploration). Taken at once when free, as nearly
-- always; the block that names the holder, a subtransaction, is entered only when the lock is busy.
CREATE FUNCTION hrwsi.take_a_lock_or_say_who_holds_it(waited_for text, caller text, not_done text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    correction boolean := waited_for = 'correction';
    holder text;
    free boolean;
BEGIN
    -- (one lock tried, never both: SQL does not promise the order in which AND and OR evaluate their terms)
    IF correction THEN
        free := pg_try_advisory_xact_lock_shared(7250098, 1);
    ELSE
        free := pg_try_advisory_xact_lock(1752332131);
    END IF;
    IF free THEN
        RETURN;
    END IF;
    BEGIN
        IF correction THEN
            PERFORM pg_advisory_xact_lock_shared(7250098, 1);
        ELSE
            PERFORM pg_advisory_xact_lock(1752332131);
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        SELECT hrwsi.session_named(l.pid) INTO holder
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
          AND CASE WHEN correction THEN l.classid = 7250098::oid AND l.objid = 1::oid AND l.objsubid = 2
                   ELSE l.classid = 0::oid AND l.objid = 1752332131::oid AND l.objsubid = 1 END
        LIMIT 1;
        RAISE EXCEPTION '% waited lock_timeout (%) for %, and %', caller, current_setting('lock_timeout'),
            CASE WHEN correction THEN 'the correction of an input under way (hrwsi.correct_input in '
                 ELSE 'another start of a campaign under way (hrwsi.reprocess in ' END
            || coalesce(holder, 'a session that has ended since') || ')', not_done
            USING ERRCODE = 'lock_not_available',
                  HINT = 'run it again once that transaction commits or rolls back (one left open: '
                         'SELECT pg_terminate_backend(pid) ends it)';
    END;
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
    holder text;       -- (the session that holds a lock on an input of the range, which a wait ran out for)
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    -- Nomad reads `${...}` in a job's arguments and driver config as its own variables, as the configuration file
    -- says of a routine's command and image: a campaign's was taken, and the Nomad backend refused each of its
    -- attempts ("contains '${', which Nomad would interpolate"), charged to the campaign until it went on hold
    -- (migration 0116, found by exploratory testing). Checked here, not by a CHECK: campaign rows stored before are
    -- updated by the failure policy.
    IF strpos(array_to_string(reprocess.command, ' '), '${') > 0 OR strpos(reprocess.image, '${') > 0 THEN
        RAISE EXCEPTION 'the campaign''s command or image holds ''${'', which Nomad would replace with a node '
                        'attribute or a runtime variable in the job''s arguments: give the value itself (HRWSI_* '
                        'variables name the attempt''s paths)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'campaign_command_and_image_have_no_dollar_brace';
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
    -- (a wait that runs out says for what, whose, and what to do: migration 0118)
    PERFORM hrwsi.take_a_lock_or_say_who_holds_it('correction', 'hrwsi.reprocess', 'started no campaign');
    -- (not in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot, taken before that wait, misses a correction
    -- that committed since: its composite read the old version's product; migration 0104, found by review)
    PERFORM hrwsi.see_the_corrections_before('hrwsi.reprocess', 'the inputs');
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773):
    -- pg_advisory_xact_lock(1752332131), 0x68727763, "hrwc".
    PERFORM hrwsi.take_a_lock_or_say_who_holds_it('campaign start', 'hrwsi.reprocess', 'started no campaign');
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

    -- An input chained from a product a correction outdated (product.outdated_by) is of the old version: the
    -- correction cancelled its open tasks but kept the input, processed or not (migration 0094), and a campaign
    -- reprocessed it, making products from the old version's output beside those of the corrected input's chain, in
    -- READ COMMITTED too (found by review; migration 0107). Left out, and counted in the answer, which says why: in the
    -- statement that makes the tasks, from the one scan of the range (migration 0109: a statement before it scanned the
    -- range a second time to count them, and, in READ COMMITTED, each statement with a snapshot of its own).
    -- (a lock another transaction holds on an input of the range, which a wait ran out for, is named: migration 0118)
    BEGIN
    WITH candidate AS (
        SELECT i.id, i.measured_at, i.tile, c.routine, r.on_hold, r.hold_reason, r.sequential_per_tile,
               EXISTS (SELECT 1 FROM product p WHERE p.id = i.product_id AND p.outdated_by IS NOT NULL) AS outdated
        FROM input i
        JOIN processing_condition c ON c.name = i.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
          -- (an input a correction superseded is reprocessed as its correction: migration 0083, found by review)
          AND i.campaign_id IS NULL AND i.superseded_by IS NULL
          AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
          AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
          AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
        -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
        -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
        FOR KEY SHARE OF i
    ), made AS (
        INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                     campaign_id)
        SELECT x.id, x.routine, CASE WHEN x.on_hold THEN 'on_hold' ELSE 'pending' END,
               CASE WHEN x.on_hold THEN 'routine on hold: ' || x.hold_reason
                    ELSE format('reprocessing campaign %s', new_campaign) END,
               l.name, l.priority,
               CASE WHEN x.sequential_per_tile AND x.measured_at IS NOT NULL THEN x.tile END,
               CASE WHEN x.sequential_per_tile AND x.tile IS NOT NULL THEN x.measured_at END,
               new_campaign
        FROM candidate x
        JOIN campaign k ON k.id = new_campaign
        JOIN lane l ON l.name = k.lane
        WHERE NOT x.outdated
        ORDER BY x.measured_at, x.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM made), (SELECT count(*) FROM candidate x WHERE x.outdated) INTO created, left_out;
    EXCEPTION WHEN lock_not_available THEN
        -- (a row's locker: the transaction its xmax names, while it lasts; several lockers share a multixact, unnamed)
        SELECT hrwsi.session_named(l.pid) INTO holder
        FROM input i
        JOIN processing_condition c ON c.name = i.processing_condition
        JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = i.xmax AND l.granted
                           AND l.mode = 'ExclusiveLock'
        WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
          AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
          AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
        LIMIT 1;
        RAISE EXCEPTION 'hrwsi.reprocess waited lock_timeout (%) for %, and started no campaign',
            current_setting('lock_timeout'),
            coalesce(format('an input of the range that another transaction changes or locks (in %s)', holder),
                     'a lock another transaction holds on the inputs of the range or their tasks')
            USING ERRCODE = 'lock_not_available',
                  HINT = 'run it again once that transaction commits or rolls back (one left open: '
                         'SELECT pg_terminate_backend(pid) ends it; `hrwsi status` names it)';
    END;
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
        PERFORM hrwsi.take_a_lock_or_say_who_holds_it('correction', 'hrwsi.chain_missed_products', 'chained nothing');
        -- (nor in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot misses a correction that committed since:
        -- migration 0104)
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

REVOKE EXECUTE ON FUNCTION hrwsi.session_named(integer), hrwsi.take_a_lock_or_say_who_holds_it(text, text, text)
    FROM PUBLIC;

-- (migration 0118) `hrwsi status`'s missed products (hrwsi.conditions_missing_products, through hrwsi.missed_products)
-- read every product of the type a condition reads while its missed range was open (0.9-1.6 s, ~500,000 buffers at
-- 1,000,000 products); an index on when products were chained would bound it, at a cost on the harvester's chaining
-- UPDATE. The range keeps from when the products it missed were recorded, and the read takes those alone, by the
-- products' day index. A range already open is read whole (-infinity), as before.
ALTER TABLE hrwsi.processing_condition ADD COLUMN missed_products_from timestamptz;
UPDATE hrwsi.processing_condition SET missed_products_from = '-infinity' WHERE missed_since IS NOT NULL;

-- (migration 0118) The time from which every product that is chained from now on was recorded (product.created_at,
-- the start of the transaction that recorded it): the oldest product not chained yet (product_not_chained_idx: few),
-- and the start of the oldest transaction under way, which may be recording products it has not committed; now() at
-- the latest. -infinity when a session's transaction cannot be seen (pg_stat_activity hides it from a role without
-- pg_read_all_stats): the read it bounds then reads every product of the type, as before. A product given a
-- created_at of its own by hand, older than that, is not bounded so.
CREATE FUNCTION hrwsi.products_to_chain_were_recorded_from() RETURNS timestamptz LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity a
                             WHERE a.backend_type = 'client backend' AND a.state IS NULL)
                THEN '-infinity'::timestamptz
                ELSE least(now(), (SELECT min(p.created_at) FROM product p WHERE p.chained_at IS NULL),
                           (SELECT min(a.xact_start) FROM pg_stat_activity a WHERE a.backend_type = 'client backend'))
           END
$$;

CREATE OR REPLACE FUNCTION hrwsi.keep_a_conditions_missed_range() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
-- A condition's range of missed products (migration 0073): opened when it is made inactive (or is
-- made: what came before it), closed when it is made active again; written by nobody else, but
-- cleared by hrwsi.chain_missed_products once it chained them all.
BEGIN
    -- (and, from migration 0118, from when the products it missed were recorded: missed_products_from)
    IF TG_OP = 'INSERT' THEN
        NEW.missed_since := '-infinity';
        NEW.missed_until := CASE WHEN NEW.active THEN now() END;
        NEW.missed_products_from := '-infinity';
    ELSIF OLD.active AND NOT NEW.active THEN
        NEW.missed_since := now();
        NEW.missed_until := NULL;
        NEW.missed_products_from := hrwsi.products_to_chain_were_recorded_from();
    ELSIF NEW.active AND NOT OLD.active THEN
        NEW.missed_since := coalesce(OLD.missed_since, now());
        NEW.missed_until := now();
        NEW.missed_products_from := CASE WHEN OLD.missed_since IS NULL THEN now()
                                         ELSE coalesce(OLD.missed_products_from, '-infinity') END;
    ELSIF current_setting('hrwsi.clearing_missed_range', true) IS DISTINCT FROM 'on' THEN
        NEW.missed_since := OLD.missed_since;
        NEW.missed_until := OLD.missed_until;
        NEW.missed_products_from := OLD.missed_products_from;
    ELSIF NEW.missed_since IS NULL THEN
        NEW.missed_products_from := NULL;
    END IF;
    RETURN NEW;
END $$;

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
      -- (recorded since the range opened, read by their day's index: every product of the type was read, to keep
      -- those chained in the range; migration 0118)
      AND p.created_at >= coalesce(c.missed_products_from, '-infinity')
      AND (p.created_at AT TIME ZONE 'UTC')::date >= (coalesce(c.missed_products_from, '-infinity') AT TIME ZONE 'UTC')::date
      AND (c.tiles IS NULL OR i.tile = ANY (c.tiles))
      AND NOT EXISTS (SELECT 1 FROM hrwsi.input x WHERE x.processing_condition = c.name AND x.input_path = p.path)
      -- (nor a product of a corrected input's old version, or of its chain: migration 0097; it was chained to a
      -- condition made active after the correction, and started the old version's chain again)
      AND p.outdated_by IS NULL
$$;

-- (migration 0118) Each condition's products read from the day its range's products were recorded
-- (missed_products_from, by product_day_idx), planned with that day known (EXECUTE plans with the values it is
-- given: a plan made for any day read every product of the type, by product_type_idx; 0.9-1.6 s at 1,000,000).
CREATE OR REPLACE FUNCTION hrwsi.conditions_missing_products()
RETURNS TABLE (condition text, product_type text, missed bigint, outside_window bigint) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    c record;
    from_day date;
BEGIN
    FOR c IN SELECT x.name, r.input_product_type AS reads, x.missed_products_from
             FROM processing_condition x JOIN processing_routine r ON r.name = x.routine
             WHERE x.active AND x.missed_until IS NOT NULL
               -- (only those: chain_missed_products refuses a multi-input condition)
               AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = x.name)
             ORDER BY x.name
    LOOP
        -- (a range read whole, of a condition added or one opened before migration 0118: every product of the type, by
        -- product_type_idx, not every product there is by their days)
        from_day := CASE WHEN c.missed_products_from > '-infinity' THEN (c.missed_products_from AT TIME ZONE 'UTC')::date END;
        EXECUTE $q$SELECT count(*) FROM (SELECT 1 FROM hrwsi.missed_products($1) p WHERE p.in_window
                   AND ($2::date IS NULL OR (p.created_at AT TIME ZONE 'UTC')::date >= $2) LIMIT 10001) n$q$
            INTO missed USING c.name, from_day;
        CONTINUE WHEN missed = 0;
        EXECUTE $q$SELECT count(*) FROM (SELECT 1 FROM hrwsi.missed_products($1) p WHERE NOT p.in_window
                   AND ($2::date IS NULL OR (p.created_at AT TIME ZONE 'UTC')::date >= $2) LIMIT 10001) n$q$
            INTO outside_window USING c.name, from_day;
        condition := c.name;
        product_type := c.reads;
        RETURN NEXT;
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.products_to_chain_were_recorded_from() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.products_to_chain_were_recorded_from() TO hrwsi_readonly, hrwsi_data_engineer,
    hrwsi_service;
