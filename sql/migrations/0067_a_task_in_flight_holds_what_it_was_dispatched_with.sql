-- hrwsi schema, version 67: a task in flight holds what it was dispatched with.
--
-- A routine's CPU, RAM or storage changed (`hrwsi config load`) while its tasks ran: dispatch, the
-- fast path's check, the plan and the schedule counted those tasks at the routine's new size. After
-- a routine went from 4 CPU to 1, dispatch put more on a full 4-CPU worker; after 1 -> 2 a plan's
-- peak use read 4 CPU on a budget of 2 (found by exploratory testing, 2026-12-06). The change of a
-- routine records, on each of its tasks in flight, the sizes it was dispatched with, and what is in
-- flight is counted at those. (Not the claim: recording them at every dispatch cost its calls a
-- tenth more of the server's CPU, for an event that is rare.)

ALTER TABLE hrwsi.processing_task ADD COLUMN held_cpu numeric, ADD COLUMN held_ram_mb integer,
    ADD COLUMN held_storage_mb integer, ADD COLUMN held_attempt integer;

CREATE OR REPLACE FUNCTION hrwsi.plan_again_what_no_longer_fits() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF TG_TABLE_NAME = 'processing_routine' THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('routine %s changed (CPU, RAM, storage or flavour): planned again', NEW.name)
        WHERE routine = NEW.name AND state = 'planned';
        -- Its attempts in flight keep what they were dispatched with (migration 0067): the sizes
        -- before this change, unless an earlier change already recorded theirs.
        UPDATE processing_task SET held_cpu = OLD.cpu, held_ram_mb = OLD.ram_mb, held_storage_mb = OLD.storage_mb,
            held_attempt = attempts
        WHERE routine = NEW.name AND state IN ('dispatched', 'queued', 'running')
          AND held_attempt IS DISTINCT FROM attempts
          AND (OLD.cpu, OLD.ram_mb, OLD.storage_mb) IS DISTINCT FROM (NEW.cpu, NEW.ram_mb, NEW.storage_mb);
    ELSIF TG_TABLE_NAME = 'flavour' THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('the flavour %s of its worker %s changed: planned again', NEW.name, worker)
        WHERE state = 'planned' AND worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name);
    ELSIF TG_TABLE_NAME = 'budget' THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = 'the budget changed: planned again'
        WHERE state = 'planned';
    ELSIF TG_OP = 'INSERT' OR NOT OLD.active THEN
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('worker %s was added: planned again', NEW.name)
        WHERE state = 'planned';
    ELSE
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('its worker %s changed flavour: planned again', NEW.name)
        WHERE state = 'planned' AND worker = NEW.name;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE VIEW hrwsi.job_spec AS
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, j.worker, t.lane,
       p.command, p.image,
       -- (what its attempt was dispatched with, if its routine changed since: migration 0067)
       CASE WHEN t.held_attempt = j.attempt THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type,
       json_build_object(
           'task', t.id, 'attempt', j.attempt, 'routine', t.routine, 'condition', i.processing_condition,
           'lane', t.lane, 'deadline_at', t.deadline_at, 'campaign', t.campaign_id,
           'routine_version', j.routine_version,
           'input', json_build_object('path', i.input_path, 'tile', i.tile, 'mission', i.mission,
                                       'measured_at', i.measured_at, 'published_at', i.published_at,
                                       'product_type', r.input_product_type),
           'members', coalesce((SELECT json_agg(json_build_object(
                                           'path', m.member_path, 'product_type', m.product_type,
                                           'tile', i.tile, 'measured_at', m.measured_at)
                                       ORDER BY m.measured_at, m.member_path)
                                FROM (SELECT m.* FROM hrwsi.multi_input_member m WHERE m.input_id = i.id OFFSET 0) m),
                             '[]'::json),
           'series', CASE WHEN t.series_tile IS NULL THEN NULL ELSE json_build_object(
               'tile', t.series_tile, 'first', t.depends_on IS NULL, 'previous_task', t.depends_on,
               'previous_products', coalesce((SELECT json_agg(json_build_object(
                                                  'path', p.path, 'product_type', p.product_type) ORDER BY p.path)
                                              FROM (SELECT p.* FROM hrwsi.product p WHERE p.task_id = t.depends_on OFFSET 0) p),
                                             '[]'::json))
           END
       )::text AS manifest
FROM hrwsi.job j
CROSS JOIN LATERAL (SELECT t.* FROM hrwsi.processing_task t WHERE t.id = j.task_id OFFSET 0) t
CROSS JOIN LATERAL (SELECT i.* FROM hrwsi.input i WHERE i.id = t.input_id OFFSET 0) i
JOIN hrwsi.processing_routine r ON r.name = t.routine
CROSS JOIN LATERAL (SELECT p.command, p.image FROM hrwsi.task_program p WHERE p.task_id = t.id OFFSET 0) p;

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
SET hrwsi.in_dispatch_claim = off AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009).
-- Returns a row per job to submit, each saying whether work was left waiting: a task this call
-- saw and did not start (its dependency, its routine's hold, capacity, a budget, the batch's
-- size). When it starts nothing, one row without a job says it. If no work waits, the end of a
-- job starts nothing, and the launcher does not call again for it (migration 0029).
DECLARE
    planned_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
               (t.depends_on IS NULL OR t.dependency_waived
                OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on)) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'planned' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    pending_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
               (t.depends_on IS NULL OR t.dependency_waived
                OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on)) AS ready
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
    scan_limit integer := 20 * p_max_jobs + 1000;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; from_planned boolean; seen integer := 0;
    installation text;
    idle boolean; idle_k integer; busy_seen integer;
    busy_workers integer;  -- active workers running something (of this call's claims too)
    locked_workers integer; named_workers integer;
    ignored text;  -- what set_config and pg_notify return, not used
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
           (SELECT i.installation_id::text FROM hrwsi.installation i WHERE i.id)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk, use_cpu, use_ram, use_disk, reserved,
         total_cpu, total_ram, total_disk, busy, busy_workers, lease_fresh, b_cpu, b_ram, b_disk, b_vms, installation
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
            -- Its planned worker first; an urgent or pending task may take any worker: the one
            -- chosen last if it still fits (a burst fills one worker after the other without
            -- scanning them all), else those already busy first (fewest VMs), then idle ones
            -- while the VM budget allows.
            IF last_k IS NOT NULL AND NOT (c.state = 'planned' AND prio > 0)
               AND (c.worker IS NULL OR c.worker = names[last_k] OR NOT c.worker = ANY (names))
               AND (c.flavour IS NULL OR flavours[last_k] = c.flavour) AND NOT (reserved[last_k] AND prio > 0)
               AND use_cpu[last_k] + c.cpu <= cap_cpu[last_k] + 1e-9 AND use_ram[last_k] + c.ram <= cap_ram[last_k]
               AND use_disk[last_k] + c.disk <= cap_disk[last_k] THEN
                chosen := last_k;
            END IF;
            IF chosen IS NULL AND c.worker IS NOT NULL THEN
                k := array_position(names, c.worker);  -- its planned worker, if active
                IF k IS NOT NULL AND (c.flavour IS NULL OR flavours[k] = c.flavour) AND NOT (reserved[k] AND prio > 0)
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
                               OR use_cpu[k] + c.cpu > cap_cpu[k] + 1e-9 OR use_ram[k] + c.ram > cap_ram[k]
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
                    WHERE NOT reserved[i] AND (c.flavour IS NULL OR flavours[i] = c.flavour)
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
            ids := ids || c.id;
            chosen_workers := chosen_workers || names[chosen];
            was_pending := was_pending || (c.state = 'pending');
        END LOOP;
        IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
    END LOOP;

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
            state_reason = CASE WHEN x.pending THEN 'dispatched at once: capacity was free' END,
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

CREATE OR REPLACE VIEW hrwsi.dashboard_task AS
SELECT t.id, t.input_id, t.routine, t.worker, t.planned_start, t.planned_end, t.depends_on, t.state,
       t.state_reason, t.attempts, t.failures, t.not_before, t.plan_id, t.created_at, t.updated_at,
       t.lane, t.deadline_at, t.held_cpu, t.held_ram_mb, t.held_storage_mb, t.held_attempt
FROM hrwsi.processing_task t;
