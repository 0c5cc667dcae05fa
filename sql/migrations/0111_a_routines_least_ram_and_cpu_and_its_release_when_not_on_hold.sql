-- hrwsi schema, version 111: a routine's RAM is at least Nomad's least memory, 10 MB, and its CPU at least a
-- hundredth of a core, in the database too, as the configuration file says; the release of a routine that is not on
-- hold says so.
--
-- The configuration file refuses ram_mb below 10 (hrwsi.configuration.MIN_ROUTINE_RAM_MB: Nomad's Resources.Validate,
-- "minimum MemoryMB value is 10") and cpu below 0.01 (MIN_CPU); the database took any positive value, so that a
-- routine stored before, or by a data engineer's own UPDATE, kept 1 MB: every Nomad job of it was refused and charged
-- to it until the routine was held. Such a value is now raised by the upgrade and refused where it is written. The
-- RAM its attempts in flight hold (held_ram_mb, migration 0067) is raised with it, as migration 0108 did for storage.
-- A CPU below a hundredth (1e-300 was valid) was counted as nothing by the planner while the job builder reserved at
-- least 1 MHz (Nomad's least CPU): raised to 0.01, what the file asks. held_cpu is left alone: its job reserved
-- ceil(held_cpu x HRWSI_NOMAD_MHZ_PER_CORE) MHz, at least 1, which the database cannot say in cores.
UPDATE hrwsi.processing_routine SET ram_mb = 10 WHERE ram_mb < 10;
UPDATE hrwsi.processing_routine SET cpu = 0.01 WHERE cpu < 0.01;
UPDATE hrwsi.processing_task SET held_ram_mb = 10 WHERE held_ram_mb < 10;
ALTER TABLE hrwsi.processing_routine DROP CONSTRAINT routine_ram_mb_is_positive,
    ADD CONSTRAINT routine_ram_mb_is_at_least_nomads_least_memory CHECK (ram_mb >= 10),
    DROP CONSTRAINT routine_cpu_is_positive,
    ADD CONSTRAINT routine_cpu_is_at_least_a_hundredth CHECK (cpu >= 0.01);

-- hrwsi.release_routine of a routine that is not on hold said "routine X released; 0 held task(s) will be planned",
-- as if it had been held, while a campaign's release refuses one that is not on hold (found by review). It is not
-- refused (it resets the routine's failure counts and lifts its back-fill's hold, which an operator may want): the
-- answer says the routine was not on hold and what the release did.
CREATE OR REPLACE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released bigint;
    still_held bigint;  -- (held by their campaign, which holds them still)
    own bigint;         -- (held by an operator one by one, blocked since or not: they stay held)
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
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = routine_name AND t.state = 'on_hold'
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    -- The routine's release lifts the routine's hold (and its back-fill's) only, as a task's release lifts the task's
    -- own (migration 0098): a task an operator held one by one stays held, and one of a campaign on hold stays held
    -- with it, its reason saying so. It released them all, undoing each operator's hold (found by review; 0101).
    WITH changed AS (
        UPDATE hrwsi.processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN 'routine released by an operator'
                                         || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE 'routine released by an operator' END
        FROM (SELECT x.id, hrwsi.hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM hrwsi.processing_task x
              WHERE x.routine = routine_name AND x.state = 'on_hold'
                AND NOT hrwsi.hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.state
    )
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold')
    INTO released, still_held FROM changed c;
    SELECT count(*) INTO own FROM hrwsi.processing_task t
    WHERE t.routine = routine_name
      AND ((t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason)) OR (t.state = 'blocked' AND t.held_while_blocked));
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
    RETURN did
        || CASE WHEN still_held > 0 THEN format('; %s stay held with their campaign (`hrwsi status` names it and its '
                                                '`hrwsi campaigns --release ID`)', still_held) ELSE '' END
        || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                         'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;
