-- hrwsi schema, version 120: a hand-over hold ends when its chain's next step starts on any worker, an urgent task ends only the holds its room overlaps, and hrwsi.dispatch says when the first hold left ends, so that the launcher calls again then.
--
-- Found in session 78 (ADR 0009, "Hand-over holds"): a next step that went to another worker (its step's worker too
-- small for it, of another flavour, or the one its last attempt could not be placed on) left its step's room held from
-- back-fill until the hold's end (60 s); an urgent task of another chain that fitted beside a hold ended it all the
-- same, and the next step it was kept for then waited behind back-fill; and when a hold ended, nothing woke dispatch:
-- back-fill waited for the launcher's backstop poll (1.0-1.7 s measured, up to HRWSI_BACKSTOP_POLL_S, 2 s). hrwsi.dispatch
-- returns a third column, holds_end_in (seconds; NULL: no hold left), read by the launcher, which wakes its dispatch
-- step then.

-- (a new result column: a new function, whose grants are those of the one it replaces)
DROP FUNCTION hrwsi.dispatch(text, text, double precision, integer, text);
CREATE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision,
                               p_max_jobs integer, p_data_dir text)
RETURNS TABLE (job hrwsi.job_spec, work_waiting boolean, holds_end_in double precision) LANGUAGE plpgsql
-- As the owner (migration 0040), as the task trigger whose work its claim does: the history is
-- written by no role but the owner. Only hrwsi_service may call it (the grants at the end).
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- (as hrwsi.record_outcomes: every table through an index, whatever the statistics the plans were made with;
-- and no bitmap scan: a plain index scan marks the index entries of rows no longer there, so that the
-- next call skips them, where a bitmap scan read them all again in every call until a vacuum, in a
-- burst tens of thousands of tasks' entries for the states they left (migration 0034); hash and merge
-- joins and materialized inner sides as the planner's defaults, whatever the session's, turned off for
-- the claim's statements below; sorts too, turned off for the search of the serving lists)
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on SET enable_sort = on
-- (and the claim's statement says that it does the task and job triggers' work itself: migration 0040)
SET hrwsi.in_dispatch_claim = off SET jit = off AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A task is ready when its dependency
-- is processed and it waits for no upstream work of an earlier scene (waits_for_upstream, migration
-- 0072: a column of the row the cursor reads, no probe), or an operator released it. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009). The room an urgent task left for the next step
-- of its chain or its retry (hrwsi.handover_hold, migration 0117) counts as used for less urgent lists only.
-- Returns a row per job to submit, each saying whether work was left waiting: a task this call
-- saw and did not start (its dependency, its routine's hold, capacity, a budget, the batch's
-- size). When it starts nothing, one row without a job says it. If no work waits, the end of a
-- job starts nothing, and the launcher does not call again for it (migration 0029). Each row also says in how
-- many seconds the first hand-over hold left ends (NULL: none), when the launcher calls again (migration 0120:
-- nothing else would wake it then, and back-fill waited for the backstop poll).
DECLARE
    planned_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid, t.input_id,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'planned' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    pending_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid, t.input_id,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'pending' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    names text[]; flavours text[]; cap_cpu float8[]; cap_ram float8[]; cap_disk float8[];
    use_cpu float8[]; use_ram float8[]; use_disk float8[];
    b_cpu float8; b_ram float8; b_disk float8; b_vms integer;  -- the budgets (NULL: none)
    lease_fresh boolean;
    total_cpu float8 := 0; total_ram float8 := 0; total_disk float8 := 0; busy integer := 0;
    reserved boolean[]; budget_reserved boolean := false;
    c record; k integer; chosen integer; misses integer; last_k integer;
    avoid_k integer;  -- the worker the task's next attempt avoids (avoid_worker), while another fits it
    scan_limit integer := 20 * p_max_jobs + 1000;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; from_planned boolean; seen integer := 0;
    installation text;
    idle boolean; idle_k integer; busy_seen integer;
    busy_workers integer;  -- active workers running something (of this call's claims too)
    locked_workers integer; named_workers integer;
    ignored text;  -- what set_config and pg_notify return, not used
    -- The hand-over holds (migration 0117): whether any row is there (the one probe a call without holds makes),
    -- those that still count, in the order they end (task, worker's index, room, whether an urgent claim ended it),
    -- and the tasks of those that ended (deleted before the claim)
    holds_exist boolean; h_task bigint[]; h_k integer[]; h_cpu float8[]; h_ram float8[]; h_disk float8[];
    h_used boolean[]; h_ended bigint[]; holds_applied boolean := false; hi integer;
    -- (migration 0120) when each hold that counts ends; the hold of an urgent task's chain (its own, a retry's, or
    -- that of the task whose product it reads: its step before it), and the room held on the worker it took
    h_until timestamptz[]; mine integer; held_cpu float8; held_ram float8; held_disk float8;
BEGIN
    work_waiting := true;  -- until this call has seen every list
    IF NOT pg_try_advisory_xact_lock(7250002) THEN
        RAISE EXCEPTION 'another launcher is dispatching right now' USING ERRCODE = 'lock_not_available';
    END IF;

    -- Active workers with their flavour and what runs on them now; and, for the budgets, everything
    -- that runs, also on workers no longer active. (One pass over the running tasks for both: it is
    -- the part of a call that grows with the work in flight.) In the same statement, after the lock
    -- (its snapshot sees every claim committed before): whether our lease is fresh, the budgets and
    -- the installation (migration 0037: four statements before; what a call's statements cost is
    -- paid again, and more, by a server that has sat idle between two inputs).
    WITH usage AS (
        -- The tasks in flight through the index of their states: in a sub-query of its own (OFFSET
        -- 0), where no order of the tasks serves anything (migration 0038). Grouped by worker in
        -- the same query, a plan made while the table held a task or two read every task, in the
        -- order of the workers' index, in every call (40,002 to find none in flight).
        -- Each at what it was dispatched with, if its routine changed since (migration 0067).
        SELECT a.worker, sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_cpu ELSE r.cpu END)::float8 AS cpu,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_ram_mb ELSE r.ram_mb END)::float8 AS ram,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_storage_mb ELSE r.storage_mb END)::float8 AS disk
        FROM (SELECT t.worker, t.routine, t.attempts, t.held_attempt, t.held_cpu, t.held_ram_mb, t.held_storage_mb
              FROM processing_task t WHERE t.state IN ('dispatched', 'queued', 'running') OFFSET 0) a
        JOIN processing_routine r ON r.name = a.routine GROUP BY a.worker
    )
    SELECT array_agg(w.name ORDER BY w.name), array_agg(w.flavour ORDER BY w.name),
           array_agg(f.cpu::float8 ORDER BY w.name), array_agg(f.ram_mb::float8 ORDER BY w.name),
           array_agg(f.disk_mb::float8 ORDER BY w.name),
           array_agg(coalesce(u.cpu, 0) ORDER BY w.name), array_agg(coalesce(u.ram, 0) ORDER BY w.name),
           array_agg(coalesce(u.disk, 0) ORDER BY w.name), array_agg(false ORDER BY w.name),
           (SELECT coalesce(sum(a.cpu), 0) FROM usage a), (SELECT coalesce(sum(a.ram), 0) FROM usage a),
           (SELECT coalesce(sum(a.disk), 0) FROM usage a), (SELECT count(a.worker)::integer FROM usage a),
           count(*) FILTER (WHERE coalesce(u.cpu, 0) + coalesce(u.ram, 0) + coalesce(u.disk, 0) > 0)::integer,
           EXISTS (SELECT 1 FROM service_instance s
                   WHERE s.id = p_owner AND s.heartbeat_at > now() - make_interval(secs => p_lease_s)),
           (SELECT g.cpu_max::float8 FROM budget g WHERE g.id), (SELECT g.ram_max_mb::float8 FROM budget g WHERE g.id),
           (SELECT g.storage_max_mb::float8 FROM budget g WHERE g.id), (SELECT g.vm_max FROM budget g WHERE g.id),
           (SELECT i.installation_id::text FROM hrwsi.installation i WHERE i.id),
           EXISTS (SELECT 1 FROM handover_hold h)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk, use_cpu, use_ram, use_disk, reserved,
         total_cpu, total_ram, total_disk, busy, busy_workers, lease_fresh, b_cpu, b_ram, b_disk, b_vms, installation,
         holds_exist
    FROM worker w JOIN flavour f ON f.name = w.flavour
    LEFT JOIN usage u ON u.worker = w.name
    WHERE w.active;
    IF NOT lease_fresh THEN
        PERFORM hrwsi.require_lease(p_owner, p_lease_s);  -- raises the fencing error, with its message
    END IF;
    IF names IS NULL THEN
        RETURN NEXT;  -- no job; work may wait
        RETURN;
    END IF;
    IF holds_exist THEN
        -- The hand-over holds that still count (migration 0117): before their end, on an active worker, of a task
        -- still as it was when the hold was taken (processed, for its next step; waiting, for its retry). The
        -- others ended (expired, the worker inactive, the task cancelled, held or given up): deleted below.
        -- (Each task a probe of its key; a few rows, a few seconds at a time.)
        SELECT array_agg(h.task_id ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.k ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.cpu ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.ram_mb ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.storage_mb ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(false) FILTER (WHERE h.live),
               coalesce(array_agg(h.task_id) FILTER (WHERE NOT h.live), '{}'),
               array_agg(h.until ORDER BY h.until, h.task_id) FILTER (WHERE h.live)
        INTO h_task, h_k, h_cpu, h_ram, h_disk, h_used, h_ended, h_until
        FROM (SELECT h.task_id, h.cpu, h.ram_mb, h.storage_mb, h.until, array_position(names, h.worker) AS k,
                     h.until > now() AND h.worker = ANY (names)
                     AND coalesce((SELECT CASE h.kind WHEN 'next_step' THEN t.state = 'processed'
                                                      ELSE t.state IN ('pending', 'planned') END
                                   FROM processing_task t WHERE t.id = h.task_id OFFSET 0), false) AS live
              FROM handover_hold h) h;
    END IF;

    -- The serving lists are read in their indexes' order, never sorted (migration 0039): a call
    -- makes its plans at its session's first run and keeps them, and the first run of a launcher
    -- started while a burst waited that the table's statistics had not seen yet (a new
    -- installation, before autovacuum analyzed it) planned the probe below as a read of every
    -- pending task through the index of all states and a sort, in every call (40,010 tasks read
    -- to claim one of 20,001). Sorts are back for the statements after the search.
    -- (Each setting and wake-up call below is an assignment, not a PERFORM: a PERFORM is a query
    -- the executor starts and ends, an assignment's expression is evaluated without one; the four
    -- of a one-task call, 0.02 ms of its 1.1-1.2 ms, migration 0042.)
    ignored := set_config('enable_sort', 'off', true);
    <<lanes>>
    -- The serving lists in order (lane priority, then planned before pending), only those with a
    -- task in them: a probe of a list's index costs less than opening its cursor (migration 0033).
    -- Each probe reads its list's index in serving order and stops at the first task (migration
    -- 0034): without OFFSET 0, PostgreSQL made the EXISTS one hashed sub-query, which read every task
    -- of the list in every call; without the order, a probe of an empty list could read every
    -- pending task of the other priorities through the index of all states.
    FOR prio, from_planned IN
        SELECT p.priority, s.planned FROM (SELECT DISTINCT priority FROM lane UNION SELECT 0) p,
               (VALUES (true), (false)) s(planned)
        WHERE CASE WHEN s.planned
                   THEN EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'planned' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id OFFSET 0)
                   ELSE EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'pending' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.id OFFSET 0) END
        ORDER BY p.priority, s.planned DESC
    LOOP
        IF prio > 0 AND h_task IS NOT NULL AND NOT holds_applied THEN
            -- From the first less urgent list on, the hand-over holds left count as used (migration 0117; ADR
            -- 0009): on their workers, and in the budgets' totals, as the tasks that ended there were counted.
            holds_applied := true;
            FOR hi IN 1..cardinality(h_task) LOOP
                CONTINUE WHEN h_used[hi];
                k := h_k[hi];
                IF use_cpu[k] + use_ram[k] + use_disk[k] = 0 THEN
                    busy := busy + 1; busy_workers := busy_workers + 1;
                END IF;
                use_cpu[k] := use_cpu[k] + h_cpu[hi]; use_ram[k] := use_ram[k] + h_ram[hi];
                use_disk[k] := use_disk[k] + h_disk[hi];
                total_cpu := total_cpu + h_cpu[hi]; total_ram := total_ram + h_ram[hi];
                total_disk := total_disk + h_disk[hi];
            END LOOP;
        END IF;
        misses := 0;
        IF from_planned THEN OPEN planned_tasks(prio, scan_limit); ELSE OPEN pending_tasks(prio, scan_limit); END IF;
        LOOP
            IF from_planned THEN FETCH planned_tasks INTO c; ELSE FETCH pending_tasks INTO c; END IF;
            EXIT WHEN NOT FOUND;
            seen := seen + 1;
            IF cardinality(ids) >= p_max_jobs OR (budget_reserved AND prio > 0) THEN
                -- Enough for this call, or urgent work waits for a budget: nothing less urgent starts.
                IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
                EXIT lanes;
            END IF;
            -- Nothing fits after many tries in a row: the rest of this list waits for capacity.
            EXIT WHEN misses >= 200;
            CONTINUE WHEN NOT c.ready OR c.on_hold;
            IF (b_cpu IS NOT NULL AND total_cpu + c.cpu > b_cpu + 1e-9)
               OR (b_ram IS NOT NULL AND total_ram + c.ram > b_ram)
               OR (b_disk IS NOT NULL AND total_disk + c.disk > b_disk) THEN
                misses := misses + 1;
                -- An urgent task waits for the budget, and nothing less urgent starts meanwhile;
                -- unless it needs more than the whole budget: it never starts, and it held every
                -- back-fill with it (found by exploratory testing; migration 0064).
                IF prio = 0 AND NOT ((b_cpu IS NOT NULL AND c.cpu > b_cpu + 1e-9) OR (b_ram IS NOT NULL AND c.ram > b_ram)
                                     OR (b_disk IS NOT NULL AND c.disk > b_disk)) THEN
                    budget_reserved := true;
                END IF;
                CONTINUE;
            END IF;
            chosen := NULL;
            -- The backend could not place its last attempt on avoid_worker (migration 0087; rare, a column
            -- of the row, no probe): no choice below takes that worker while an active worker of another
            -- name and a flavour it fits exists (it waits for that one, as for any capacity); else it may
            -- go back there. The claim's reason says which.
            avoid_k := NULL;
            IF c.avoid IS NOT NULL THEN
                avoid_k := array_position(names, c.avoid);
                IF avoid_k IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM generate_subscripts(names, 1) i
                        WHERE i <> avoid_k AND (c.flavour IS NULL OR flavours[i] = c.flavour)
                          AND c.cpu <= cap_cpu[i] + 1e-9 AND c.ram <= cap_ram[i] AND c.disk <= cap_disk[i]) THEN
                    avoid_k := NULL;
                END IF;
            END IF;
            -- An urgent task takes held room first (migration 0117): its chain's hold (its own, a retry; or, migration
            -- 0120, that of the task whose product it reads: the step before it, two probes of keys, made only while
            -- holds count), else the first hold where it fits, so that a worker kept for the next step of a chain is
            -- where that step goes.
            mine := NULL;
            IF prio = 0 AND h_task IS NOT NULL THEN
                mine := array_position(h_task, c.id);
                IF mine IS NULL THEN
                    mine := array_position(h_task, (SELECT p.task_id FROM product p
                                                    WHERE p.id = (SELECT i.product_id FROM input i WHERE i.id = c.input_id)));
                END IF;
                IF h_used[mine] THEN mine := NULL; END IF;
                FOR hi IN 1..cardinality(h_task) LOOP
                    k := h_k[hi];
                    IF NOT h_used[hi] AND k IS DISTINCT FROM avoid_k AND (c.flavour IS NULL OR flavours[k] = c.flavour)
                       AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                       AND use_disk[k] + c.disk <= cap_disk[k]
                       AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms)
                       AND (chosen IS NULL OR hi = mine) THEN
                        chosen := k;
                        EXIT WHEN hi = mine;
                    END IF;
                END LOOP;
            END IF;
            -- Its planned worker first; an urgent or pending task may take any worker: the one
            -- chosen last if it still fits (a burst fills one worker after the other without
            -- scanning them all), else those already busy first (fewest VMs), then idle ones
            -- while the VM budget allows.
            IF chosen IS NULL AND last_k IS NOT NULL AND NOT (c.state = 'planned' AND prio > 0) AND last_k IS DISTINCT FROM avoid_k
               AND (c.worker IS NULL OR c.worker = names[last_k] OR NOT c.worker = ANY (names))
               AND (c.flavour IS NULL OR flavours[last_k] = c.flavour) AND NOT (reserved[last_k] AND prio > 0)
               AND use_cpu[last_k] + c.cpu <= cap_cpu[last_k] + 1e-9 AND use_ram[last_k] + c.ram <= cap_ram[last_k]
               AND use_disk[last_k] + c.disk <= cap_disk[last_k] THEN
                chosen := last_k;
            END IF;
            IF chosen IS NULL AND c.worker IS NOT NULL THEN
                k := array_position(names, c.worker);  -- its planned worker, if active
                IF k IS NOT NULL AND k IS DISTINCT FROM avoid_k AND (c.flavour IS NULL OR flavours[k] = c.flavour)
                   AND NOT (reserved[k] AND prio > 0)
                   AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                   AND use_disk[k] + c.disk <= cap_disk[k]
                   AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms) THEN
                    chosen := k;
                END IF;
            END IF;
            IF chosen IS NULL AND NOT (c.state = 'planned' AND prio > 0) THEN
                -- One pass: the first busy worker where it fits, else the first idle one where
                -- it fits (the scan ends there once every busy worker has been seen).
                idle_k := NULL; busy_seen := 0;
                FOR k IN 1..cardinality(names) LOOP
                    EXIT WHEN idle_k IS NOT NULL AND busy_seen >= busy_workers;  -- no busy one left
                    idle := use_cpu[k] + use_ram[k] + use_disk[k] = 0;
                    IF NOT idle THEN busy_seen := busy_seen + 1; END IF;
                    CONTINUE WHEN idle AND (idle_k IS NOT NULL OR (b_vms IS NOT NULL AND busy + 1 > b_vms));
                    CONTINUE WHEN (c.flavour IS NOT NULL AND flavours[k] <> c.flavour) OR (reserved[k] AND prio > 0)
                               OR k = avoid_k OR use_cpu[k] + c.cpu > cap_cpu[k] + 1e-9 OR use_ram[k] + c.ram > cap_ram[k]
                               OR use_disk[k] + c.disk > cap_disk[k];
                    IF NOT idle THEN
                        chosen := k;
                        EXIT;
                    END IF;
                    idle_k := k;
                END LOOP;
                chosen := coalesce(chosen, idle_k);
            END IF;
            IF chosen IS NULL THEN
                misses := misses + 1;
                IF prio = 0 THEN
                    -- Reserve the worker (of a flavour it fits) with the most free CPU: it frees
                    -- enough first, as far as hrwsi can tell.
                    SELECT i INTO k FROM generate_subscripts(names, 1) i
                    WHERE NOT reserved[i] AND (c.flavour IS NULL OR flavours[i] = c.flavour) AND i IS DISTINCT FROM avoid_k
                      AND c.cpu <= cap_cpu[i] AND c.ram <= cap_ram[i] AND c.disk <= cap_disk[i]
                    ORDER BY cap_cpu[i] - use_cpu[i] DESC, i LIMIT 1;
                    IF k IS NOT NULL THEN reserved[k] := true; END IF;
                END IF;
                CONTINUE;
            END IF;
            misses := 0;
            last_k := chosen;
            IF use_cpu[chosen] + use_ram[chosen] + use_disk[chosen] = 0 THEN
                busy := busy + 1; busy_workers := busy_workers + 1;
            END IF;
            use_cpu[chosen] := use_cpu[chosen] + c.cpu;
            use_ram[chosen] := use_ram[chosen] + c.ram;
            use_disk[chosen] := use_disk[chosen] + c.disk;
            total_cpu := total_cpu + c.cpu; total_ram := total_ram + c.ram; total_disk := total_disk + c.disk;
            IF prio = 0 AND h_task IS NOT NULL THEN
                -- An urgent task claimed ends its chain's hold wherever it goes (migration 0120: a next step placed
                -- on another worker left its step's room held for nothing until the hold's end); and, on the worker
                -- it took, the first holds there while they and it no longer fit together, so that room is never
                -- counted twice (migration 0117 ended one there whatever room it took: a task that fitted beside a
                -- hold ended it all the same).
                IF mine IS NOT NULL THEN
                    h_used[mine] := true; h_ended := h_ended || h_task[mine];
                END IF;
                held_cpu := 0; held_ram := 0; held_disk := 0;
                FOR hi IN 1..cardinality(h_task) LOOP
                    IF NOT h_used[hi] AND h_k[hi] = chosen THEN
                        held_cpu := held_cpu + h_cpu[hi]; held_ram := held_ram + h_ram[hi];
                        held_disk := held_disk + h_disk[hi];
                    END IF;
                END LOOP;
                FOR hi IN 1..cardinality(h_task) LOOP
                    EXIT WHEN use_cpu[chosen] + held_cpu <= cap_cpu[chosen] + 1e-9
                              AND use_ram[chosen] + held_ram <= cap_ram[chosen]
                              AND use_disk[chosen] + held_disk <= cap_disk[chosen];
                    IF NOT h_used[hi] AND h_k[hi] = chosen THEN
                        h_used[hi] := true; h_ended := h_ended || h_task[hi];
                        held_cpu := held_cpu - h_cpu[hi]; held_ram := held_ram - h_ram[hi];
                        held_disk := held_disk - h_disk[hi];
                    END IF;
                END LOOP;
            END IF;
            ids := ids || c.id;
            chosen_workers := chosen_workers || names[chosen];
            was_pending := was_pending || (c.state = 'pending');
        END LOOP;
        IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
    END LOOP;
    IF holds_exist THEN
        -- The holds that ended: expired or no longer counted, ended by an urgent claim, or of a task claimed now
        -- (a retry that went elsewhere). Each a probe of its key.
        DELETE FROM handover_hold h WHERE h.task_id = ANY (h_ended || ids);
        -- When the first hold left ends (they are in the order they end): the launcher calls again then.
        FOR hi IN 1..coalesce(cardinality(h_task), 0) LOOP
            IF NOT h_used[hi] AND NOT h_task[hi] = ANY (ids) THEN
                holds_end_in := extract(epoch FROM h_until[hi] - now())::float8;
                EXIT;
            END IF;
        END LOOP;
    END IF;

    -- From here on, the statements look up the claimed tasks and their jobs by key: nested loops
    -- over index probes, planned so whatever the tables' sizes when the plans were made (a merge
    -- or hash join planned on small tables read every job or every task in every call, and a
    -- nested loop may read a small table whole once and keep it; for the rest of this call: its
    -- SET clauses restore them on return).
    ignored := set_config('enable_hashjoin', 'off', true) || set_config('enable_mergejoin', 'off', true)
               || set_config('enable_material', 'off', true) || set_config('enable_sort', 'on', true)
               || set_config('hrwsi.in_dispatch_claim', 'on', true);
    IF cardinality(ids) = 0 THEN
        work_waiting := seen > 0;
        RETURN NEXT;  -- no job
        RETURN;
    END IF;
    -- A task whose next attempt already has a job row (a stray row someone inserted by hand) is not
    -- claimed (the claim's probe of the job's key per task: OFFSET 0, never a join, which, planned
    -- on a few jobs, read them all in every call); it is set aside with the reason below, and the
    -- others are dispatched. (A statement of its own before the claim until migration 0037.)
    -- Each claimed task is a probe of its key, `= ANY (ARRAY[x.id])` (migration 0038): an equality
    -- with the batch, or a join with the routines, let the planner read the task table in the order
    -- of an index, and a plan made while the table held a task or two did so, whole, for every
    -- claimed task (a burst's call of 2,000 tasks against 20,000 took 5.4 s until autovacuum
    -- analyzed the table). As written, no order of the tasks serves the statement, and the only
    -- way to them the plan may take is through their key.
    WITH claimed AS (
        UPDATE processing_task t
        SET state = 'dispatched', attempts = t.attempts + 1, worker = x.worker,
            planned_start = CASE WHEN x.pending THEN now() ELSE t.planned_start END,
            planned_end = CASE WHEN x.pending
                               THEN now() + (SELECT r.expected_duration FROM processing_routine r WHERE r.name = t.routine)
                               ELSE t.planned_end END,
            state_reason = nullif(concat_ws('; ', CASE WHEN x.pending THEN 'dispatched at once: capacity was free' END,
                -- (why here, when the backend could not place its last attempt on a worker: migration 0087)
                CASE WHEN t.avoid_worker = x.worker
                     THEN format('back on worker %s, where its last attempt could not be placed: no other active '
                                 'worker of a flavour it fits', x.worker)
                     WHEN t.avoid_worker IS NOT NULL
                     THEN format('on worker %s, not %s, where its last attempt could not be placed', x.worker,
                                 t.avoid_worker) END), ''),
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = NULL, history_pruned_at = NULL
        FROM unnest(ids, chosen_workers, was_pending) WITH ORDINALITY AS x(id, worker, pending, n)
        WHERE t.id = ANY (ARRAY[x.id])
          AND NOT EXISTS (SELECT 1 FROM job j WHERE j.task_id = x.id AND j.attempt = t.attempts + 1 OFFSET 0)
        RETURNING t.id, t.routine, t.attempts, t.worker, t.state_reason, x.n,
                  'hrwsi-' || lower(regexp_replace(t.routine, '[^A-Za-z0-9_.-]', '-', 'g')) || '-' || t.id
                      || '-' || t.attempts AS backend_job_id
    ), inserted AS (
        INSERT INTO job (task_id, attempt, backend, backend_job_id, worker, owner, log_path, output_dir,
                         routine_version)
        SELECT cl.id, cl.attempts, p_backend, cl.backend_job_id, cl.worker, p_owner,
               p_data_dir || '/logs/' || installation || '/' || cl.routine || '/' || cl.backend_job_id || '.log',
               p_data_dir || '/products/' || installation || '/' || cl.routine || '/task-' || cl.id
                   || '/attempt-' || cl.attempts || '/output',
               -- one index probe per claimed task (a join would be planned as a scan of every task)
               (SELECT p.routine_version FROM task_program p WHERE p.task_id = cl.id)
        FROM claimed cl
        ORDER BY cl.n  -- job ids in serving order (array_position(ids, id) was quadratic in the batch)
        RETURNING id
    ), history AS (
        -- What hrwsi.after_task_changes writes for an UPDATE, which this statement does not call
        -- (hrwsi.in_dispatch_claim; nor hrwsi.after_jobs_inserted: its jobs name the tasks claimed
        -- here): a history row per claimed task ...
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT cl.id, 'dispatched', cl.state_reason, cl.attempts, cl.worker FROM claimed cl
    ), workers_locked AS (
        -- ... and each worker it puts tasks on locked, as a foreign key would, then counted below
        SELECT w.name FROM worker w WHERE w.name = ANY (chosen_workers) FOR KEY SHARE OF w
    )
    SELECT array_agg(i.id), (SELECT count(*) FROM workers_locked),
           (SELECT count(DISTINCT n.name) FROM unnest(chosen_workers) n(name))
    INTO new_jobs, locked_workers, named_workers FROM inserted i;
    IF locked_workers < named_workers THEN
        PERFORM hrwsi.refuse_a_missing_worker(chosen_workers);  -- removed since this call read the active ones
    END IF;
    IF new_jobs IS NOT NULL THEN
        -- The wake-up calls the triggers send (docs/adr/0001), at commit: work under way, on the
        -- `_progress` channels, which the launcher does not listen to (migration 0043).
        ignored := pg_notify('hrwsi_task_progress', json_build_object(
            'op', 'update', 'counts', json_build_object('dispatched', cardinality(new_jobs)))::text);
        ignored := pg_notify('hrwsi_job_progress', json_build_object(
            'op', 'insert', 'counts', json_build_object('submitted', cardinality(new_jobs)))::text);
    END IF;
    work_waiting := seen > coalesce(cardinality(new_jobs), 0);
    IF coalesce(cardinality(new_jobs), 0) < cardinality(ids) THEN
        -- Stray job rows: the tasks not claimed say why (each still locked by this call's cursor).
        UPDATE processing_task t SET state_reason = format(
            'not dispatched: a job row for its attempt %s already exists (job %s) that hrwsi did not create; '
            'remove that row (or cancel the task) and it is dispatched', t.attempts + 1,
            (SELECT j.id FROM job j WHERE j.task_id = t.id AND j.attempt = t.attempts + 1))
        WHERE t.id = ANY (ids) AND t.state IS DISTINCT FROM 'dispatched';
        IF new_jobs IS NULL THEN
            RETURN NEXT;  -- no job
            RETURN;
        END IF;
    END IF;
    -- A new statement: it sees the jobs just inserted.
    RETURN QUERY SELECT s, work_waiting, holds_end_in FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.dispatch(text, text, double precision, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.dispatch(text, text, double precision, integer, text) TO hrwsi_service;
