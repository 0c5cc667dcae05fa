-- hrwsi schema, version 112: an operator may hold a task that its routine, campaign or back-fill holds, and the
-- release of that routine or campaign then leaves it held; the two releases share one statement, which writes the
-- history of a task that stays held with what holds it now, and names that campaign or routine in the answer.
--
-- An operator's hold of a task that its routine, campaign or back-fill holds (migration 0112): the task is held by
-- the operator too, its reason and history say so, and the release of its routine or campaign leaves it held, as it
-- leaves every hold an operator put on a task one by one (migrations 0101, 0104). `hrwsi hold TASK` of such a task was
-- refused, "task N is on_hold: only a pending or planned task can be held", so that no hold of the operator's could be
-- put on it, and `hrwsi campaigns --release` then ran the task the operator wanted kept back (found by review). A task
-- an operator holds already is refused, saying so; a blocked one too (its release runs it without what it waits for).
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
    IF current = 'on_hold' AND hrwsi.hold_is_the_tasks_own(reason) THEN
        RAISE EXCEPTION 'task % is already held by an operator: `hrwsi release %` releases it', task, task
            USING ERRCODE = 'check_violation';
    END IF;
    IF current NOT IN ('pending', 'planned', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a pending or planned task, or one held with its routine or campaign, can be '
                        'held', task, current
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
-- (whether a held task's hold is an operator's, which the dashboard's page of a task reads to offer a Hold of one
-- held with its routine or campaign alone)
GRANT EXECUTE ON FUNCTION hrwsi.hold_is_the_tasks_own(text) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- The release of a routine's or a campaign's hold, shared by hrwsi.release_routine and hrwsi.release_campaign
-- (migration 0112; they were two copies of one statement, and had drifted): of the held tasks given (the group's,
-- locked by the caller in the order of their ids), those held by the group are released, and held again at once
-- with what still holds them (a routine's task of a campaign on hold, a campaign's task of a routine on hold), as a new
-- task of it is; those an operator held one by one stay held (migration 0098). A task held before and after gets a
-- history row saying what holds it now: the routine's release wrote none, and a task its campaign held still read
-- "routine on hold" last in its history (found by review). Returns how many will be planned, and the end of the
-- answer: how many stay held, by which campaigns or routines (`still_held_by`: 'campaign' or 'routine', what may still
-- hold them) and how to release those, and how many an operator held one by one (`blocked_held`: those blocked since).
CREATE FUNCTION hrwsi.release_held_tasks(held bigint[], released_reason text, still_held_by text, blocked_held bigint,
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
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           array_agg(DISTINCT CASE still_held_by WHEN 'routine' THEN c.routine ELSE c.campaign_id::text END
                     ORDER BY CASE still_held_by WHEN 'routine' THEN c.routine ELSE c.campaign_id::text END)
               FILTER (WHERE c.state = 'on_hold')
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
REVOKE EXECUTE ON FUNCTION hrwsi.release_held_tasks(bigint[], text, text, bigint) FROM PUBLIC;

-- A routine that is not on hold is released still (its failure counts and its back-fill's hold are lifted with
-- the routine's own), and the answer says it was not on hold and what the release did: it said "routine X released;
-- 0 held task(s) will be planned", as if it had been held (found by review; migration 0111). A campaign's release
-- refuses one that is not on hold: a campaign has nothing else its release lifts.
-- The routine's release lifts the routine's hold (and its back-fill's) only, as a task's release lifts the task's
-- own (migration 0098): a task an operator held one by one stays held, and one of a campaign on hold stays held
-- with it, its reason saying so (hrwsi.release_held_tasks; migration 0112: the answer names the campaign). It released
-- them all, undoing each operator's hold (found by review; 0101).
CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint[];
    released bigint;
    rest text;
    was_held boolean;
    backfill_was_held boolean;
    failures integer;
    backfill_failures integer;
    did text;
BEGIN
    SELECT r.on_hold, r.backfill_hold_reason IS NOT NULL, r.consecutive_failures, r.backfill_consecutive_failures
    INTO was_held, backfill_was_held, failures, backfill_failures
    FROM hrwsi.processing_routine r WHERE r.name = routine_name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        backfill_hold_reason = NULL, backfill_consecutive_failures = 0  -- (and its back-fill: migration 0075)
    WHERE name = routine_name;
    -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}') INTO held
    FROM (SELECT t.id FROM hrwsi.processing_task t WHERE t.routine = routine_name AND t.state = 'on_hold'
          ORDER BY t.id FOR NO KEY UPDATE OF t) x;
    SELECT r.released, r.rest INTO released, rest
    FROM hrwsi.release_held_tasks(held, 'routine released by an operator', 'campaign',
                                  (SELECT count(*) FROM hrwsi.processing_task t
                                   WHERE t.routine = routine_name AND t.state = 'blocked' AND t.held_while_blocked)) r;
    IF was_held THEN
        did := format('routine %s released; %s held task(s) will be planned', routine_name, released);
    ELSE
        did := CASE WHEN backfill_was_held
                    THEN format('back-fill of routine %s released (the routine itself was not on hold); %s held task(s) '
                                'will be planned', routine_name, released)
                    ELSE format('routine %s was not on hold', routine_name)
                         || CASE WHEN released > 0 THEN format('; %s held task(s) will be planned', released) ELSE '' END
               END
            || CASE WHEN failures > 0 OR backfill_failures > 0
                    THEN '; its count of consecutive failures is reset to 0 (was '
                         || concat_ws(', ', CASE WHEN failures > 0 THEN format('%s of its own', failures) END,
                                      CASE WHEN backfill_failures > 0 THEN format('%s of its back-fill', backfill_failures)
                                      END) || ')'
                    WHEN NOT backfill_was_held AND released = 0 THEN '; nothing to release, and no failures to reset'
                    ELSE '' END;
    END IF;
    RETURN did || rest;
END $$;

-- Start a held campaign again: the campaign's hold is lifted, and only it (migration 0104), as a routine's release
-- lifts the routine's hold only (migration 0101): a task an operator held one by one stays held, and one of a routine
-- on hold stays held with it, its reason saying so; the answer counts both, and says how to lift them. It released
-- every held task of the campaign, undoing each operator's hold, and left those of a held routine saying "campaign N
-- on hold" once the campaign was not (found by review). (hrwsi.release_held_tasks, the routine's release's too:
-- migration 0112)
CREATE OR REPLACE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint[];
    released bigint;
    rest text;
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
    -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}') INTO held
    FROM (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = release_campaign.campaign AND t.state = 'on_hold'
          ORDER BY t.id FOR NO KEY UPDATE OF t) x;
    SELECT r.released, r.rest INTO released, rest
    FROM hrwsi.release_held_tasks(held, 'campaign released by an operator', 'routine',
                                  (SELECT count(*) FROM hrwsi.processing_task t
                                   WHERE t.campaign_id = release_campaign.campaign AND t.state = 'blocked'
                                     AND t.held_while_blocked)) r;
    RETURN format('campaign %s released; %s held task(s) will be planned', release_campaign.campaign, released) || rest;
END $$;
