-- hrwsi schema, version 117: an urgent task's room on its worker is kept from back-fill for a short window after it ends (a hand-over hold), so that the next step of its chain, or its retry, gets the slot instead of waiting behind an archive task.
--
-- When a near-real-time task ended, hrwsi.dispatch gave its slot at once to waiting back-fill, before the harvester had
-- chained its products and the orchestrator made the next step's task: each step of an NRT chain then waited for one
-- archive run (an hour in production; a 2-step chain beside 10 s archive tasks took 41.7 s instead of 20). A failed
-- urgent task's slot went to back-fill during its retry's back-off likewise. hrwsi.record_outcomes now keeps that
-- room (hrwsi.handover_hold) for p_handover_hold_s (HRWSI_HANDOVER_HOLD_S, 60 s by default), and hrwsi.dispatch counts
-- it against less urgent work only (ADR 0009, "Hand-over holds").

-- Hand-over holds (migration 0117, ADR 0009): the room an urgent task (serving priority 0) had on its worker, kept
-- from less urgent work for a short window after it ended, so that the next step of its chain (made once the
-- harvester has chained its products and the orchestrator its task) or its own retry (after its back-off) finds it
-- free instead of behind an archive task that took the slot meanwhile. Written by hrwsi.record_outcomes, in the
-- statement that records the outcome, only while less urgent work waits; read by hrwsi.dispatch (one probe: the table
-- is empty but for those few seconds), which counts the holds against back-fill only, lets urgent work use them
-- (a task claimed on a held worker ends one hold there), and deletes the holds that ended: claimed, expired (until),
-- of an inactive worker, or of a task no longer waiting (cancelled, held, given up). No key to the task or the worker:
-- a hold of a task or worker gone is ended by that same test, and nothing else ever waits for one.
CREATE TABLE hrwsi.handover_hold (
    task_id    bigint PRIMARY KEY,
    worker     text NOT NULL,
    -- what the task was dispatched with (its attempt's held_* if its routine changed since, as dispatch counts it)
    cpu        float8 NOT NULL,
    ram_mb     float8 NOT NULL,
    storage_mb float8 NOT NULL,
    -- next_step: it was processed and its products chain on; retry: it failed and waits out its back-off
    kind       text NOT NULL CONSTRAINT handover_hold_kind_is_next_step_or_retry CHECK (kind IN ('next_step', 'retry')),
    since      timestamptz NOT NULL DEFAULT now(),
    until      timestamptz NOT NULL
);

-- (as the work tables: whoever reads them reads it; the outcome writer writes it, dispatch deletes as the owner)
GRANT SELECT ON hrwsi.handover_hold TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT INSERT, UPDATE ON hrwsi.handover_hold TO hrwsi_service;

CREATE OR REPLACE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision,
                               p_max_jobs integer, p_data_dir text)
RETURNS TABLE (job hrwsi.job_spec, work_waiting boolean) LANGUAGE plpgsql
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
-- job starts nothing, and the launcher does not call again for it (migration 0029).
DECLARE
    planned_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'planned' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    pending_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid,
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
               coalesce(array_agg(h.task_id) FILTER (WHERE NOT h.live), '{}')
        INTO h_task, h_k, h_cpu, h_ram, h_disk, h_used, h_ended
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
            -- An urgent task takes held room first (migration 0117): its own hold (a retry), else the first
            -- hold where it fits, so that a worker kept for the next step of a chain is where that step goes.
            IF prio = 0 AND h_task IS NOT NULL THEN
                FOR hi IN 1..cardinality(h_task) LOOP
                    k := h_k[hi];
                    IF NOT h_used[hi] AND k IS DISTINCT FROM avoid_k AND (c.flavour IS NULL OR flavours[k] = c.flavour)
                       AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                       AND use_disk[k] + c.disk <= cap_disk[k]
                       AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms)
                       AND (chosen IS NULL OR h_task[hi] = c.id) THEN
                        chosen := k;
                        EXIT WHEN h_task[hi] = c.id;
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
            IF prio = 0 AND h_task IS NOT NULL THEN
                -- An urgent task claimed ends a hold, so that room is not counted twice: its own (a retry,
                -- wherever it goes), else the first one on its worker (the room it takes there).
                hi := array_position(h_task, c.id);
                IF hi IS NULL OR h_used[hi] THEN
                    hi := NULL;
                    FOR k IN 1..cardinality(h_task) LOOP
                        IF NOT h_used[k] AND h_k[k] = chosen THEN hi := k; EXIT; END IF;
                    END LOOP;
                END IF;
                IF hi IS NOT NULL THEN
                    h_used[hi] := true; h_ended := h_ended || h_task[hi];
                END IF;
            END IF;
            IF use_cpu[chosen] + use_ram[chosen] + use_disk[chosen] = 0 THEN
                busy := busy + 1; busy_workers := busy_workers + 1;
            END IF;
            use_cpu[chosen] := use_cpu[chosen] + c.cpu;
            use_ram[chosen] := use_ram[chosen] + c.ram;
            use_disk[chosen] := use_disk[chosen] + c.disk;
            total_cpu := total_cpu + c.cpu; total_ram := total_ram + c.ram; total_disk := total_disk + c.disk;
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
    RETURN QUERY SELECT s, work_waiting FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;

-- (a new last parameter: a new function, whose grants are those of the one it replaces)
DROP FUNCTION hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                                    timestamptz[], timestamptz[], text[], bigint[], text[], bigint[]);
CREATE FUNCTION hrwsi.record_outcomes(
    p_owner text, p_lease_s double precision, p_backoff_s double precision,
    p_jobs bigint[], p_states text[], p_exit_codes integer[], p_messages text[],
    p_started timestamptz[], p_finished timestamptz[], p_faults text[],
    p_product_jobs bigint[], p_product_paths text[], p_product_sizes bigint[],
    p_handover_hold_s double precision DEFAULT 0)
RETURNS TABLE (job_id bigint, job_state text, task_id bigint, task_state text, failures integer,
               max_attempts integer, lost_count integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- Every table is read through an index (a plan cached when the tables were small would otherwise
-- scan them whole on every call once they are large). And every join is a nested loop over the
-- index of its key, without a materialized inner side (migration 0034): a merge join planned while
-- the task table was small read every task up to the batch's in every call (recording one outcome
-- read 40,000 tasks), and a nested loop may read a small table whole once and keep it.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off SET jit = off AS $$
#variable_conflict use_column
-- Only the owner of a job, holding a fresh lease, records its outcome. A product path that is
-- already registered (or listed twice) fails its job with the reason instead of being dropped.
-- Routine failures count toward max_attempts and the failure policy; lost attempts (a fault of
-- the infrastructure) are retried without limit, with backoff, and alerted when they repeat.
-- An urgent task's room on its worker is kept from back-fill for p_handover_hold_s (the launcher's
-- HRWSI_HANDOVER_HOLD_S; 0: never) once it is processed and its products chain on, or once its back-off
-- ends when it is retried (hrwsi.handover_hold, migration 0117).
DECLARE
    -- Per outcome (by its position in p_jobs): where its products start in the product arrays, how
    -- many it has, and why its products cannot be registered. Products are listed in the order of
    -- their outcomes; each is found by its position, never by a join of one list with the other
    -- (under the generic plan, a nested loop: 3,000 outcomes with a product each took 1.6 s).
    outcomes integer := coalesce(cardinality(p_jobs), 0);
    product_first integer[] := array_fill(1, ARRAY[outcomes]);
    product_count integer[] := array_fill(0, ARRAY[outcomes]);
    conflict_message text[] := array_fill(NULL::text, ARRAY[outcomes]);
    product_outcome integer[] := '{}';
    i integer := 1;
    c record;
    done_jobs bigint[]; done_states text[]; done_tasks bigint[];
    -- The urgent tasks that ended on a worker, which may keep a hand-over hold there (migration 0117), and whether
    -- less urgent work waits, without which none is kept
    urgent_tasks bigint[]; urgent_workers text[]; urgent_retried boolean[]; back_fill_waits boolean;
    position_of jsonb;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    FOR k IN 1..coalesce(cardinality(p_product_jobs), 0) LOOP
        WHILE i <= outcomes AND p_jobs[i] IS DISTINCT FROM p_product_jobs[k] LOOP
            i := i + 1;
        END LOOP;
        IF i > outcomes THEN
            RAISE EXCEPTION 'product % lists job %, which is not among the outcomes after the job of the product before it',
                p_product_paths[k], p_product_jobs[k]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'list the products in the order of their outcomes (p_jobs), each after its own job';
        END IF;
        IF product_count[i] = 0 THEN product_first[i] := k; END IF;
        product_count[i] := product_count[i] + 1;
        product_outcome := product_outcome || i;
    END LOOP;
    IF cardinality(product_outcome) > 0 THEN
        -- A path already registered, or listed twice: its attempt fails with the first such path.
        FOR c IN
            SELECT p.k, format('product %s is already registered (%s); nothing of this attempt was registered',
                               p.path, coalesce('by task ' || existing.task_id, 'twice in this batch')) AS message
            FROM (SELECT q.k, q.path, count(*) OVER (PARTITION BY q.path) AS listed
                  FROM unnest(p_product_paths) WITH ORDINALITY AS q(path, k)) p
            LEFT JOIN product existing ON existing.path = p.path
            WHERE existing.id IS NOT NULL OR p.listed > 1
            ORDER BY p.path
        LOOP
            IF conflict_message[product_outcome[c.k]] IS NULL THEN
                conflict_message[product_outcome[c.k]] := c.message;
            END IF;
        END LOOP;
    END IF;

    -- Each job's position in the arrays, found by key: no join of the batch with the job table. (A
    -- job listed twice keeps its first position, where its products are: the last value of a key wins.)
    SELECT jsonb_object_agg(o.id::text, o.n ORDER BY o.n DESC) INTO position_of
    FROM unnest(p_jobs) WITH ORDINALITY AS o(id, n);
    WITH finished AS (
        -- The batch's jobs through their primary key (= ANY), each with the outcome at its position,
        -- so that no plan can read the job table once per outcome. (Joined with the batch, a generic
        -- plan made while the job table was nearly empty took it for one row and did so until the
        -- next ANALYZE: 1,000 outcomes in 0.2-0.4 s instead of 45 ms. The state test is wrapped so
        -- that it cannot be served by the partial index of active jobs either.)
        UPDATE job j
        SET (state, exit_code, message, fault, started_at, finished_at) = (
            SELECT CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN conflict_message[x.n] IS NOT NULL THEN 'internal_error' ELSE p_states[x.n] END,
                   p_exit_codes[x.n],
                   CASE WHEN j.cancel_requested
                        THEN 'cancelled by an operator: ' || coalesce(conflict_message[x.n], p_messages[x.n])
                        ELSE coalesce(conflict_message[x.n], p_messages[x.n]) END,
                   CASE WHEN j.cancel_requested OR conflict_message[x.n] IS NOT NULL THEN NULL ELSE p_faults[x.n] END,
                   coalesce(j.started_at, p_started[x.n], now()), coalesce(p_finished[x.n], now())
            FROM (SELECT (position_of ->> j.id::text)::integer AS n) x),
            updated_at = now()  -- (what hrwsi.enforce_job_transition would set: not called for these rows)
        WHERE j.id = ANY (p_jobs) AND j.owner = p_owner AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
        RETURNING j.id, j.state, j.task_id, j.attempt, j.message, (position_of ->> j.id::text)::integer AS n,
                  j.fault, j.worker
    ), products AS (
        -- A processed attempt's products, by their positions in the product arrays.
        INSERT INTO product (task_id, path, product_type, size_bytes)
        SELECT f.task_id, p_product_paths[k], r.output_product_type, p_product_sizes[k]
        FROM finished f
        CROSS JOIN LATERAL generate_series(product_first[f.n], product_first[f.n] + product_count[f.n] - 1) AS k
        -- (each task and its routine a probe of their keys, `= ANY (ARRAY[...])`, as below)
        JOIN processing_task t ON t.id = ANY (ARRAY[f.task_id]) JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
        -- Only the attempts that list products (migration 0041): the task and routine of every
        -- processed attempt were probed, to register nothing for those without (1,000 outcomes of a
        -- burst without products: 4.4 ms of the call's 50).
        WHERE f.state = 'processed' AND product_count[f.n] > 0
        RETURNING product.task_id
    ), processed AS (
        -- (A processed attempt registered every product it listed: a conflict fails the attempt.)
        UPDATE processing_task t
        SET state = 'processed', state_reason = format('%s product(s)', product_count[f.n]), avoid_worker = NULL,
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = now(), history_pruned_at = NULL
        FROM finished f
        WHERE f.state = 'processed' AND t.id = ANY (ARRAY[f.task_id]) AND t.attempts = f.attempt
          -- (wrapped, as the jobs' state test above: each task is read through its primary key from
          -- the batch. Served by the index of task states, a generic plan made while few tasks ran
          -- took the running tasks for one row and compared every one with every outcome: 1,000
          -- outcomes in 200 ms instead of 50. And each task, and its routine, is a probe of its key,
          -- `= ANY (ARRAY[...])` (migration 0038): an equality with the batch, or with the routines,
          -- let the planner read the tasks in the order of an index, and a plan made while the table
          -- held a task or two read all 40,002 for one outcome.)
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.state, t.failures, t.lost_count, t.priority, f.worker, f.n
    ), failed AS (
        UPDATE processing_task t
        SET failures = t.failures + CASE WHEN f.state = 'lost' THEN 0 ELSE 1 END,
            lost_count = t.lost_count + CASE WHEN f.state = 'lost' THEN 1 ELSE 0 END,
            state = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN 'terminated'
                         ELSE 'pending' END,
            state_reason = format('attempt %s %s: %s', f.attempt, f.state, f.message)
                -- (where its next attempt goes: migration 0087; the workers read only for such an attempt)
                || CASE WHEN f.fault IS DISTINCT FROM 'not_placed' OR f.worker IS NULL THEN ''
                        WHEN EXISTS (SELECT 1 FROM worker w JOIN flavour fl ON fl.name = w.flavour
                                     WHERE w.active AND w.name <> f.worker AND (r.flavour IS NULL OR w.flavour = r.flavour)
                                       AND r.cpu <= fl.cpu AND r.ram_mb <= fl.ram_mb AND r.storage_mb <= fl.disk_mb)
                        THEN format('; its next attempt goes to another worker than %s', f.worker)
                        ELSE format('; no other active worker of a flavour it fits: its next attempt may go to %s again',
                                    f.worker) END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- The worker its next attempt avoids (migration 0087): where the backend could not place this
            -- one; kept through an attempt lost otherwise (it did not run), forgotten after one that ran.
            avoid_worker = CASE WHEN f.fault = 'not_placed' THEN f.worker WHEN f.state = 'lost' THEN t.avoid_worker END,
            not_before = now() + make_interval(secs => least(600.0, p_backoff_s * power(2, greatest(0,
                CASE WHEN f.state = 'lost' THEN t.lost_count ELSE t.failures END)))),
            -- (what hrwsi.enforce_task_transition would set: terminated is final, pending is not)
            updated_at = now(), history_pruned_at = NULL,
            finished_at = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN now() END
        FROM finished f, processing_routine r
        WHERE f.state IN ('internal_error', 'external_error', 'lost') AND t.id = ANY (ARRAY[f.task_id])
          AND t.attempts = f.attempt AND r.name = ANY (ARRAY[t.routine])
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.routine, t.state, t.state_reason, t.failures, t.lost_count, r.max_attempts,
                  t.priority, f.worker
    ), urgent AS (
        -- The urgent tasks (serving priority 0) that ended on a worker: processed with products, or retried
        SELECT p.id, p.worker, false AS retried FROM processed p
        WHERE p.priority = 0 AND product_count[p.n] > 0 AND p.worker IS NOT NULL
        UNION ALL
        SELECT fl.id, fl.worker, true FROM failed fl WHERE fl.priority = 0 AND fl.state = 'pending' AND fl.worker IS NOT NULL
    ), alerted AS (
        -- An attempt lost again and again says the infrastructure is sick: tell ops (3rd, 6th, 12th...).
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_lost_repeatedly', format('hrwsi: task %s lost %s attempts', fl.id, fl.lost_count),
               format('Task %s (routine %s) lost %s attempts to infrastructure faults; last: %s. '
                      'It is retried with backoff; check the launchers, workers and backend.',
                      fl.id, fl.routine, fl.lost_count, fl.state_reason), fl.id, fl.routine
        FROM failed fl
        WHERE fl.lost_count IN (3, 6, 12, 24, 48, 96, 192)
    )
    SELECT array_agg(f.id), array_agg(f.state), array_agg(f.task_id),
           -- (the candidates for a hand-over hold, and whether back-fill waits: a test made once per call, only
           -- with holds on and an urgent task ended, two index probes that stop at their first task; the hold
           -- itself is written by a statement of its own, only then, below)
           (SELECT array_agg(u.id) FROM urgent u), (SELECT array_agg(u.worker) FROM urgent u),
           (SELECT array_agg(u.retried) FROM urgent u),
           p_handover_hold_s > 0 AND EXISTS (SELECT 1 FROM urgent u)
           AND EXISTS (SELECT 1 FROM processing_task b WHERE b.state = 'pending' AND b.priority > 0
                       UNION ALL
                       SELECT 1 FROM processing_task b WHERE b.state = 'planned' AND b.priority > 0)
    INTO done_jobs, done_states, done_tasks, urgent_tasks, urgent_workers, urgent_retried, back_fill_waits
    FROM finished f;  -- (processed, failed and alerted run all the same: a WITH that modifies data
                      -- always runs to completion, read or not)

    -- A failed attempt's task goes back to pending for its retry; when its routine or its campaign
    -- is on hold (by an operator, or by the failure policy in an earlier call) it is held instead.
    -- (The hold held the tasks waiting then; a task whose attempt ended later went back to pending:
    -- a held campaign's tasks were planned, run and terminated one by one, and a held routine's sat
    -- pending, counted as held and shown as "cannot be planned"; migration 0047.) Its state test is not
    -- one an index serves (coalesce): planned on a table of a task or two, PostgreSQL 15 read every pending
    -- task through the index of states for each failed attempt, 20,000 for one (migration 0088).
    IF 'internal_error' = ANY (done_states) OR 'external_error' = ANY (done_states) OR 'lost' = ANY (done_states) THEN
        UPDATE processing_task t
        SET state = 'on_hold',
            state_reason = CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                                WHEN t.campaign_id IS NULL
                                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason)
                                ELSE (SELECT format('campaign %s on hold: %s', k.id, k.hold_reason)
                                      FROM campaign k WHERE k.id = t.campaign_id) END
        FROM processing_routine r
        WHERE t.id = ANY (done_tasks) AND coalesce(t.state = 'pending', false) AND r.name = ANY (ARRAY[t.routine])
          AND (r.on_hold OR (t.campaign_id IS NOT NULL
                             AND EXISTS (SELECT 1 FROM campaign k WHERE k.id = t.campaign_id AND k.on_hold))
               -- (a back-fill task of a routine whose back-fill is on hold: migration 0075)
               OR (t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL
                   AND EXISTS (SELECT 1 FROM lane l WHERE l.name = t.lane AND l.priority > 0)));
    END IF;

    IF back_fill_waits THEN
        -- Hand-over holds (migration 0117; ADR 0009): the room an urgent task had on its worker (what it was dispatched
        -- with), kept from back-fill for p_handover_hold_s: processed, while its products chain on into near-real-time
        -- work (it is in a priority-0 lane, and an active condition of such a lane reads their type: a back-fill's
        -- products stay in its lane, aged or not, and its next step is back-fill), for the next step the harvester
        -- and the orchestrator make of them; retried (still pending: not held above), until its back-off ends and the
        -- window after. Each task and routine a probe of its key.
        INSERT INTO handover_hold AS h (task_id, worker, cpu, ram_mb, storage_mb, kind, until)
        SELECT t.id, x.worker,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END,
               CASE WHEN x.retried THEN 'retry' ELSE 'next_step' END,
               greatest(now(), CASE WHEN x.retried THEN t.not_before END) + make_interval(secs => p_handover_hold_s)
        FROM unnest(urgent_tasks, urgent_workers, urgent_retried) AS x(id, worker, retried)
        CROSS JOIN LATERAL (SELECT t.* FROM processing_task t WHERE t.id = x.id OFFSET 0) t
        CROSS JOIN LATERAL (SELECT r.* FROM processing_routine r WHERE r.name = t.routine OFFSET 0) r
        WHERE CASE WHEN x.retried THEN t.state = 'pending'
                   ELSE EXISTS (SELECT 1 FROM lane l WHERE l.name = t.lane AND l.priority = 0)
                        AND EXISTS (SELECT 1 FROM processing_routine d JOIN processing_condition c ON c.routine = d.name
                                    JOIN lane l ON l.name = c.lane
                                    WHERE d.input_product_type = r.output_product_type AND c.active AND l.priority = 0)
              END
        ON CONFLICT (task_id) DO UPDATE
        SET worker = EXCLUDED.worker, cpu = EXCLUDED.cpu, ram_mb = EXCLUDED.ram_mb, storage_mb = EXCLUDED.storage_mb,
            kind = EXCLUDED.kind, since = EXCLUDED.since, until = EXCLUDED.until;
    END IF;

    -- The tasks as this call left them, read by primary key in a statement of its own (it sees the
    -- updates above). Joining the updates' own results instead was planned as a nested loop of
    -- one batch against the other (the generic plan expects one row each): 1,000 outcomes took
    -- 120 ms of the call's 220 ms, and 4x as long for twice as many. Each task is a probe of its
    -- key (LATERAL, OFFSET 0: never a join, which, planned while the table was small, was a merge
    -- join reading every task up to the batch's in every call; migration 0034).
    RETURN QUERY
    SELECT x.job, x.state, x.task, s.state, s.failures, s.max_attempts, s.lost_count
    FROM unnest(done_jobs, done_states, done_tasks) AS x(job, state, task)
    CROSS JOIN LATERAL (SELECT t.state, t.failures, r.max_attempts, t.lost_count
                        FROM processing_task t JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
                        WHERE t.id = x.task OFFSET 0) s;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[],
    text[], timestamptz[], timestamptz[], text[], bigint[], text[], bigint[], double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[],
    text[], timestamptz[], timestamptz[], text[], bigint[], text[], bigint[], double precision) TO hrwsi_service;
