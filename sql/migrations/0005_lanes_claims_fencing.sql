-- hrwsi schema, version 5: near-real-time lanes and deadlines; tasks created with their input;
-- every claim and every outcome is ONE statement fenced by the caller's lease; infrastructure
-- faults apart from the routine's own failures. See ADR 0009.
--
-- Why one statement: a service process can be paused (SIGSTOP, a frozen VM) at any instant. A
-- lock held by an open transaction across a client round trip then stops every other replica for
-- the whole pause. A server-side function called once runs to its commit without waiting for the
-- client, so no lock is ever held across a pause, and the call costs one round trip.

-- ---------------------------------------------------------------------------------------------
-- The installation: outputs and logs are placed under its id, so that a fresh database on the
-- same HRWSI_HOME never reuses (nor registers as products) the files of an earlier one.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.installation (
    id              boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_has_a_single_row CHECK (id),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO hrwsi.installation DEFAULT VALUES;

-- Routine names become directory names and Nomad job IDs: refuse what could escape a directory.
ALTER TABLE hrwsi.processing_routine ADD CONSTRAINT routine_name_is_a_plain_name_like_snow_cover
    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' AND name !~ '\.\.');

-- ---------------------------------------------------------------------------------------------
-- Lanes: near-real-time work is served before back-fill (ADR 0009).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.lane (
    name          text PRIMARY KEY CONSTRAINT lane_name_is_a_plain_name CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    priority      smallint NOT NULL CONSTRAINT lane_priority_is_unique UNIQUE
        CONSTRAINT lane_priority_is_not_negative CHECK (priority >= 0),
    -- Ageing: a task of this lane waiting longer than this is served as urgently as lane 0.
    promote_after interval CONSTRAINT lane_promote_after_is_positive CHECK (promote_after > interval '0'),
    description   text NOT NULL
);
INSERT INTO hrwsi.lane (name, priority, promote_after, description) VALUES
    ('nrt', 0, NULL, 'near-real-time: fresh scenes; served first, may take capacity back from archive work'),
    ('archive', 1, interval '6 hours',
     'back-fill and reprocessing: uses what near-real-time work leaves; served as nrt after waiting 6 hours');

ALTER TABLE hrwsi.processing_condition
    ADD COLUMN lane text NOT NULL DEFAULT 'nrt' CONSTRAINT condition_lane_must_exist REFERENCES hrwsi.lane (name),
    -- "product due within `deadline` of sensing (or of publication)".
    ADD COLUMN deadline interval CONSTRAINT condition_deadline_is_positive CHECK (deadline > interval '0'),
    ADD COLUMN deadline_from text NOT NULL DEFAULT 'measurement'
        CONSTRAINT condition_deadline_from_is_measurement_or_publication
        CHECK (deadline_from IN ('measurement', 'publication'));

-- An input may name its lane (a back-fill source inserts into 'archive'); else its condition's.
ALTER TABLE hrwsi.input ADD COLUMN lane text CONSTRAINT input_lane_must_exist REFERENCES hrwsi.lane (name);

ALTER TABLE hrwsi.processing_task
    ADD COLUMN lane text NOT NULL DEFAULT 'nrt' CONSTRAINT task_lane_must_exist REFERENCES hrwsi.lane (name),
    -- The lane's priority when the task was created (0 most urgent), raised to 0 by ageing. Kept
    -- on the task so that dispatch walks an index in serving order instead of sorting every task.
    ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD COLUMN deadline_at timestamptz,
    -- Time-series routines (sequential_per_tile): the series a task belongs to, and its place in it.
    ADD COLUMN series_tile text,
    ADD COLUMN series_at timestamptz,
    -- Attempts lost to infrastructure (a vanished launcher, node or allocation): retried without limit,
    -- with backoff, alerted when they repeat; they never count as failures of the routine.
    ADD COLUMN lost_count integer NOT NULL DEFAULT 0 CONSTRAINT task_lost_count_is_not_negative CHECK (lost_count >= 0),
    -- An operator released a task whose dependency did not end processed: it runs without it.
    ADD COLUMN dependency_waived boolean NOT NULL DEFAULT false;

CREATE INDEX processing_task_planned_order_idx ON hrwsi.processing_task
    (priority, deadline_at NULLS LAST, planned_start, id) WHERE state = 'planned';
CREATE INDEX processing_task_pending_order_idx ON hrwsi.processing_task
    (priority, deadline_at NULLS LAST, id) WHERE state = 'pending';
CREATE INDEX processing_task_series_idx ON hrwsi.processing_task (routine, series_tile, series_at, id)
    WHERE series_tile IS NOT NULL;
CREATE INDEX processing_task_deadline_idx ON hrwsi.processing_task (deadline_at)
    WHERE deadline_at IS NOT NULL AND state NOT IN ('processed', 'terminated', 'cancelled');

-- A task whose dependency ended terminated or cancelled does not run ("ready when its preceding
-- task is processed or there is none"): it is blocked until an operator releases or retries.
INSERT INTO hrwsi.task_state VALUES
    ('blocked', false, 'its dependency ended terminated or cancelled; waits for an operator: retry the '
                       'dependency, or release this task to run it without it');
INSERT INTO hrwsi.task_transition VALUES
    ('pending', 'blocked'), ('planned', 'blocked'), ('blocked', 'pending'), ('blocked', 'cancelled'),
    ('on_hold', 'blocked'),
    -- The fast path: a pending task whose dependency is over starts at once where capacity is free.
    ('pending', 'dispatched');

-- ---------------------------------------------------------------------------------------------
-- Job faults: what went wrong around an attempt that is not the routine's fault.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE hrwsi.job
    ADD COLUMN fault text CONSTRAINT job_fault_is_known CHECK (fault IN (
        'launcher_gone',       -- its launcher stopped or lost its lease before the job ended
        'worker_gone',         -- its worker (Nomad node) went away or became inactive
        'backend_lost_track',  -- the backend no longer knows the job (state loss, garbage collected early)
        'stopped_by_hrwsi'     -- hrwsi stopped it (shutdown, a stranded job) without an operator asking
    )),
    ADD COLUMN routine_version text;   -- the command or image the attempt ran (reprocessing keeps them apart)

ALTER TABLE hrwsi.alert DROP CONSTRAINT alert_kind_is_known;
ALTER TABLE hrwsi.alert ADD CONSTRAINT alert_kind_is_known CHECK (kind IN (
    'task_terminated', 'routine_on_hold', 'task_lost_repeatedly', 'task_blocked', 'deadline_at_risk',
    'deadline_missed'));

-- ---------------------------------------------------------------------------------------------
-- Tasks are created with their input, in the INSERT's own statement (no backlog, no round trip).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
BEGIN
    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order.
    FOR series IN
        SELECT DISTINCT c.routine, n.tile
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
        ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
    END LOOP;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, deadline_at,
                                 series_tile, series_at)
    SELECT n.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason END,
           l.name, l.priority,
           coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at ELSE n.measured_at END,
                    n.created_at) + c.deadline,
           CASE WHEN r.sequential_per_tile AND n.measured_at IS NOT NULL THEN n.tile END,
           CASE WHEN r.sequential_per_tile AND n.tile IS NOT NULL THEN n.measured_at END
    FROM new_rows n
    JOIN processing_condition c ON c.name = n.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN lane l ON l.name = coalesce(n.lane, c.lane)
    ORDER BY n.id;

    -- A time-series task depends on the task just before it in its series, by (series_at, id):
    -- among the new tasks by a window (one sort), else the latest earlier task already there (one
    -- index probe each). O(n log n) whatever the table statistics.
    IF EXISTS (SELECT 1 FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
               JOIN processing_routine r ON r.name = c.routine WHERE r.sequential_per_tile) THEN
        EXECUTE $q$
            UPDATE processing_task t SET depends_on = link.previous
            FROM (
                SELECT s.id,
                       CASE WHEN e.id IS NULL THEN s.previous_new
                            WHEN s.previous_new IS NULL THEN e.id
                            WHEN (e.series_at, e.id) > (s.previous_at, s.previous_new) THEN e.id
                            ELSE s.previous_new END AS previous
                FROM (SELECT t.id, t.routine, t.series_tile, t.series_at,
                             lag(t.id) OVER w AS previous_new, lag(t.series_at) OVER w AS previous_at
                      FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                      WHERE t.series_tile IS NOT NULL
                      WINDOW w AS (PARTITION BY t.routine, t.series_tile ORDER BY t.series_at, t.id)) s
                LEFT JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = s.routine AND p.series_tile = s.series_tile
                      AND (p.series_at, p.id) < (s.series_at, s.id) AND p.state <> 'cancelled'
                      AND NOT EXISTS (SELECT 1 FROM new_rows n2 WHERE n2.id = p.input_id)
                    ORDER BY p.series_at DESC, p.id DESC LIMIT 1) e ON true
            ) link
            WHERE t.id = link.id AND link.previous IS NOT NULL $q$;
    END IF;
    RETURN NULL;
END $$;

-- Inputs already waiting in the backlog get their tasks now; the backlog then goes.
DROP TRIGGER input_queue_for_orchestrator ON hrwsi.input;
DROP FUNCTION hrwsi.queue_new_inputs();
INSERT INTO hrwsi.processing_task (input_id, routine, state, lane, priority)
SELECT i.id, c.routine, 'pending', c.lane, 0
FROM hrwsi.input_backlog b JOIN hrwsi.input i ON i.id = b.input_id
JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
ON CONFLICT (input_id) DO NOTHING;
DROP TABLE hrwsi.input_backlog;

CREATE TRIGGER input_create_tasks AFTER INSERT ON hrwsi.input
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.create_tasks_for_new_inputs();

-- A dependency that ends terminated or cancelled blocks its dependents; retried, it unblocks them.
CREATE FUNCTION hrwsi.block_or_unblock_dependents() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE state IN ('terminated', 'cancelled')) THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    state_reason = format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                          'dependency again, `hrwsi release %s` runs this task without it',
                                          d.id, d.state, d.id, t.id)
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked $q$;
    END IF;
    -- (The cheap checks read one transition table each: a join of the two, planned once for a
    -- one-row statement, would be a quadratic nested loop on a large one; see migration 0004.)
    IF EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled')) THEN
        EXECUTE $q$
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried', d.id)
            FROM new_rows d JOIN old_rows o USING (id)
            WHERE t.depends_on = d.id AND d.state = 'pending' AND o.state IN ('terminated', 'cancelled')
              AND t.state = 'blocked' $q$;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER processing_task_block_dependents AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.block_or_unblock_dependents();

-- release_task also releases a blocked task: it then runs without its dependency.
CREATE OR REPLACE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current NOT IN ('on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a held or blocked task can be released', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
        dependency_waived = dependency_waived OR current = 'blocked',
        state_reason = CASE WHEN current = 'blocked' THEN 'released by an operator: runs without its dependency'
                            ELSE 'released by an operator' END
    WHERE id = task;
    RETURN CASE WHEN current = 'blocked'
                THEN format('task %s released; it will be planned and run without its dependency', task)
                ELSE format('task %s released; it will be planned', task) END;
END $$;

-- Retry also lifts a block (the task waits for its dependency again) and takes lost attempts afresh.
CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current NOT IN ('terminated', 'cancelled', 'on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled, held or blocked task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task
    SET state = 'pending', failures = 0, lost_count = 0, not_before = NULL, worker = NULL, planned_start = NULL,
        planned_end = NULL, state_reason = 'retried by an operator'
    WHERE id = task;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

-- Ageing: archive work waiting longer than its lane's promote_after is served as nrt.
CREATE FUNCTION hrwsi.promote_aged_tasks() RETURNS integer LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    WITH promoted AS (
        UPDATE processing_task t SET priority = 0
        FROM lane l
        WHERE l.name = t.lane AND l.promote_after IS NOT NULL AND t.priority > 0
          AND t.state IN ('pending', 'planned') AND t.created_at < now() - l.promote_after
        RETURNING t.id
    )
    SELECT count(*)::integer FROM promoted
$$;

-- ---------------------------------------------------------------------------------------------
-- Leases and fencing.
-- ---------------------------------------------------------------------------------------------

-- True while `instance` holds a lease fresher than `lease_s` seconds.
CREATE FUNCTION hrwsi.lease_is_fresh(instance text, lease_s double precision) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT EXISTS (SELECT 1 FROM service_instance
                   WHERE id = instance AND heartbeat_at > now() - make_interval(secs => lease_s))
$$;

-- Raise the fencing error when `instance` no longer holds its lease: a paused ("zombie") process
-- that resumes must not start, record or stop work that others have taken over meanwhile.
CREATE FUNCTION hrwsi.require_lease(instance text, lease_s double precision) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NOT hrwsi.lease_is_fresh(instance, lease_s) THEN
        RAISE EXCEPTION 'service instance % has no fresh lease (older than % s): it must re-register before acting',
            instance, lease_s
            USING ERRCODE = 'HW001', HINT = 'another replica may have taken over its work while it was paused';
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- What a backend needs to run (or adopt) each job, including the manifest a routine reads: its
-- input, the members of a multi-input task, and the previous product of a time series.
-- ---------------------------------------------------------------------------------------------
CREATE VIEW hrwsi.job_spec AS
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, j.worker, t.lane,
       r.command, r.image, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type,
       jsonb_build_object(
           'task', t.id, 'attempt', j.attempt, 'routine', t.routine, 'condition', i.processing_condition,
           'lane', t.lane, 'deadline_at', t.deadline_at,
           'input', jsonb_build_object('path', i.input_path, 'tile', i.tile, 'mission', i.mission,
                                       'measured_at', i.measured_at, 'published_at', i.published_at,
                                       'product_type', r.input_product_type),
           'members', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                           'path', m.member_path, 'product_type', m.product_type,
                                           'tile', i.tile, 'measured_at', m.measured_at)
                                       ORDER BY m.measured_at, m.member_path)
                                FROM hrwsi.multi_input_member m WHERE m.input_id = i.id), '[]'::jsonb),
           'series', CASE WHEN t.series_tile IS NULL THEN NULL ELSE jsonb_build_object(
               'tile', t.series_tile, 'first', t.depends_on IS NULL, 'previous_task', t.depends_on,
               'previous_products', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                                  'path', p.path, 'product_type', p.product_type) ORDER BY p.path)
                                              FROM hrwsi.product p WHERE p.task_id = t.depends_on), '[]'::jsonb))
           END
       )::text AS manifest
FROM hrwsi.job j
JOIN hrwsi.processing_task t ON t.id = j.task_id
JOIN hrwsi.input i ON i.id = t.input_id
JOIN hrwsi.processing_routine r ON r.name = t.routine;

-- ---------------------------------------------------------------------------------------------
-- Dispatch: one call claims ready work that fits now and returns what to submit.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision, p_max_jobs integer,
                               p_data_dir text)
RETURNS SETOF hrwsi.job_spec LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009).
DECLARE
    names text[]; flavours text[]; cap_cpu float8[]; cap_ram float8[]; cap_disk float8[];
    use_cpu float8[]; use_ram float8[]; use_disk float8[];
    b record;
    total_cpu float8 := 0; total_ram float8 := 0; total_disk float8 := 0; busy integer := 0;
    reserved boolean[]; budget_reserved boolean := false;
    c record; k integer; chosen integer; misses integer;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; state_name text;
    installation text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7250002) THEN
        RAISE EXCEPTION 'another launcher is dispatching right now' USING ERRCODE = 'lock_not_available';
    END IF;
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);

    SELECT array_agg(w.name ORDER BY w.name), array_agg(w.flavour ORDER BY w.name),
           array_agg(f.cpu::float8 ORDER BY w.name), array_agg(f.ram_mb::float8 ORDER BY w.name),
           array_agg(f.disk_mb::float8 ORDER BY w.name)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk
    FROM worker w JOIN flavour f ON f.name = w.flavour WHERE w.active;
    IF names IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(coalesce(u.cpu, 0) ORDER BY w.name), array_agg(coalesce(u.ram, 0) ORDER BY w.name),
           array_agg(coalesce(u.disk, 0) ORDER BY w.name), array_agg(false ORDER BY w.name)
    INTO use_cpu, use_ram, use_disk, reserved
    FROM worker w
    LEFT JOIN (SELECT t.worker, sum(r.cpu)::float8 AS cpu, sum(r.ram_mb)::float8 AS ram,
                      sum(r.storage_mb)::float8 AS disk
               FROM processing_task t JOIN processing_routine r ON r.name = t.routine
               WHERE t.state IN ('dispatched', 'queued', 'running') GROUP BY t.worker) u ON u.worker = w.name
    WHERE w.active;
    -- Budgets count everything that runs, also on workers no longer active.
    SELECT coalesce(sum(r.cpu), 0)::float8, coalesce(sum(r.ram_mb), 0)::float8,
           coalesce(sum(r.storage_mb), 0)::float8, count(DISTINCT t.worker)::integer
    INTO total_cpu, total_ram, total_disk, busy
    FROM processing_task t JOIN processing_routine r ON r.name = t.routine
    WHERE t.state IN ('dispatched', 'queued', 'running');
    SELECT cpu_max::float8 AS cpu, ram_max_mb::float8 AS ram, storage_max_mb::float8 AS disk, vm_max AS vms
    INTO b FROM budget;

    <<lanes>>
    FOR prio IN SELECT DISTINCT priority FROM lane UNION SELECT 0 ORDER BY 1 LOOP
        FOREACH state_name IN ARRAY ARRAY['planned', 'pending'] LOOP
            misses := 0;
            -- Two constant texts, each walking its partial index in serving order (no sort).
            FOR c IN EXECUTE CASE state_name WHEN 'planned' THEN $q$
                SELECT t.id, t.state, t.worker, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
                       r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
                       (t.depends_on IS NULL OR t.dependency_waived
                        OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on)) AS ready
                FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
                WHERE t.state = 'planned' AND t.priority = $1 AND (t.not_before IS NULL OR t.not_before <= now())
                ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
                LIMIT $2 FOR UPDATE OF t SKIP LOCKED $q$ ELSE $q$
                SELECT t.id, t.state, t.worker, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
                       r.storage_mb::float8 AS disk, r.flavour, r.on_hold,
                       (t.depends_on IS NULL OR t.dependency_waived
                        OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on)) AS ready
                FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
                WHERE t.state = 'pending' AND t.priority = $1 AND (t.not_before IS NULL OR t.not_before <= now())
                ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
                LIMIT $2 FOR UPDATE OF t SKIP LOCKED $q$ END
                USING prio, 20 * p_max_jobs + 1000
            LOOP
                EXIT lanes WHEN cardinality(ids) >= p_max_jobs;
                -- Nothing fits after many tries in a row: the rest of this list waits for capacity.
                EXIT WHEN misses >= 200;
                CONTINUE WHEN NOT c.ready OR c.on_hold;
                IF budget_reserved AND prio > 0 THEN
                    EXIT lanes;   -- urgent work waits for a budget: nothing less urgent starts anywhere
                END IF;
                IF (b.cpu IS NOT NULL AND total_cpu + c.cpu > b.cpu + 1e-9)
                   OR (b.ram IS NOT NULL AND total_ram + c.ram > b.ram)
                   OR (b.disk IS NOT NULL AND total_disk + c.disk > b.disk) THEN
                    misses := misses + 1;
                    IF prio = 0 THEN budget_reserved := true; END IF;
                    CONTINUE;
                END IF;
                chosen := NULL;
                -- Its planned worker first; an urgent or pending task may take any worker, those
                -- already busy first (fewest VMs), then idle ones while the VM budget allows.
                FOR pass IN 1..3 LOOP
                    FOR k IN 1..cardinality(names) LOOP
                        CONTINUE WHEN (pass = 1 AND names[k] IS DISTINCT FROM c.worker)
                                   OR (pass > 1 AND c.state = 'planned' AND prio > 0)
                                   OR (pass = 2 AND use_cpu[k] + use_ram[k] + use_disk[k] = 0)
                                   OR (pass = 3 AND use_cpu[k] + use_ram[k] + use_disk[k] > 0);
                        CONTINUE WHEN c.flavour IS NOT NULL AND flavours[k] <> c.flavour;
                        CONTINUE WHEN reserved[k] AND prio > 0;
                        CONTINUE WHEN use_cpu[k] + c.cpu > cap_cpu[k] + 1e-9 OR use_ram[k] + c.ram > cap_ram[k]
                                   OR use_disk[k] + c.disk > cap_disk[k];
                        CONTINUE WHEN b.vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0
                                   AND busy + 1 > b.vms;
                        chosen := k;
                        EXIT;
                    END LOOP;
                    EXIT WHEN chosen IS NOT NULL;
                END LOOP;
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
                IF use_cpu[chosen] + use_ram[chosen] + use_disk[chosen] = 0 THEN busy := busy + 1; END IF;
                use_cpu[chosen] := use_cpu[chosen] + c.cpu;
                use_ram[chosen] := use_ram[chosen] + c.ram;
                use_disk[chosen] := use_disk[chosen] + c.disk;
                total_cpu := total_cpu + c.cpu; total_ram := total_ram + c.ram; total_disk := total_disk + c.disk;
                ids := ids || c.id;
                chosen_workers := chosen_workers || names[chosen];
                was_pending := was_pending || (c.state = 'pending');
            END LOOP;
        END LOOP;
    END LOOP;

    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    SELECT installation_id::text INTO installation FROM hrwsi.installation;
    WITH claimed AS (
        UPDATE processing_task t
        SET state = 'dispatched', attempts = t.attempts + 1, worker = x.worker,
            planned_start = CASE WHEN x.pending THEN now() ELSE t.planned_start END,
            planned_end = CASE WHEN x.pending THEN now() + r.expected_duration ELSE t.planned_end END,
            state_reason = CASE WHEN x.pending THEN 'dispatched at once: capacity was free' END
        FROM unnest(ids, chosen_workers, was_pending) AS x(id, worker, pending), processing_routine r
        WHERE t.id = x.id AND r.name = t.routine
        RETURNING t.id, t.routine, t.attempts, t.worker,
                  'hrwsi-' || lower(regexp_replace(t.routine, '[^A-Za-z0-9_.-]', '-', 'g')) || '-' || t.id
                      || '-' || t.attempts AS backend_job_id
    ), inserted AS (
        INSERT INTO job (task_id, attempt, backend, backend_job_id, worker, owner, log_path, output_dir,
                         routine_version)
        SELECT cl.id, cl.attempts, p_backend, cl.backend_job_id, cl.worker, p_owner,
               p_data_dir || '/logs/' || installation || '/' || cl.routine || '/' || cl.backend_job_id || '.log',
               p_data_dir || '/products/' || installation || '/' || cl.routine || '/task-' || cl.id
                   || '/attempt-' || cl.attempts || '/output',
               coalesce(r.image, array_to_string(r.command, ' '))
        FROM claimed cl JOIN processing_routine r ON r.name = cl.routine
        ORDER BY array_position(ids, cl.id)
        RETURNING id
    )
    SELECT array_agg(id) INTO new_jobs FROM inserted;
    -- A new statement: it sees the jobs just inserted.
    RETURN QUERY SELECT s.* FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Outcomes: one call records how attempts ended, their products and their tasks' next states.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION hrwsi.record_outcomes(
    p_owner text, p_lease_s double precision, p_backoff_s double precision,
    p_jobs bigint[], p_states text[], p_exit_codes integer[], p_messages text[],
    p_started timestamptz[], p_finished timestamptz[], p_faults text[],
    p_product_jobs bigint[], p_product_paths text[], p_product_sizes bigint[])
RETURNS TABLE (job_id bigint, job_state text, task_id bigint, task_state text, failures integer,
               max_attempts integer, lost_count integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
-- Only the owner of a job, holding a fresh lease, records its outcome. A product path that is
-- already registered (or listed twice) fails its job with the reason instead of being dropped.
-- Routine failures count toward max_attempts and the failure policy; lost attempts (a fault of
-- the infrastructure) are retried without limit, with backoff, and alerted when they repeat.
DECLARE
    conflict_jobs bigint[] := '{}';
    conflict_messages text[] := '{}';
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    IF cardinality(p_product_paths) > 0 THEN
        SELECT coalesce(array_agg(x.job), '{}'), coalesce(array_agg(x.message), '{}')
        INTO conflict_jobs, conflict_messages
        FROM (SELECT DISTINCT ON (p.job) p.job,
                     format('product %s is already registered (%s); nothing of this attempt was registered',
                            p.path, coalesce('by task ' || existing.task_id, 'twice in this batch')) AS message
              FROM unnest(p_product_jobs, p_product_paths) AS p(job, path)
              LEFT JOIN product existing ON existing.path = p.path
              WHERE existing.id IS NOT NULL
                 OR (SELECT count(*) FROM unnest(p_product_paths) AS q(path) WHERE q.path = p.path) > 1
              ORDER BY p.job, p.path) x;
    END IF;

    RETURN QUERY
    WITH outcome AS (
        SELECT o.id, CASE WHEN c.job IS NULL THEN o.state ELSE 'internal_error' END AS state, o.exit_code,
               coalesce(c.message, o.message) AS message, o.started_at, o.finished_at,
               CASE WHEN c.job IS NULL THEN o.fault END AS fault
        FROM unnest(p_jobs, p_states, p_exit_codes, p_messages, p_started, p_finished, p_faults)
             AS o(id, state, exit_code, message, started_at, finished_at, fault)
        LEFT JOIN unnest(conflict_jobs, conflict_messages) AS c(job, message) ON c.job = o.id
    ), finished AS (
        UPDATE job j
        SET state = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE o.state END,
            exit_code = o.exit_code,
            message = CASE WHEN j.cancel_requested THEN 'cancelled by an operator: ' || o.message ELSE o.message END,
            fault = CASE WHEN j.cancel_requested THEN NULL ELSE o.fault END,
            started_at = coalesce(j.started_at, o.started_at, now()), finished_at = coalesce(o.finished_at, now())
        FROM outcome o
        WHERE j.id = o.id AND j.owner = p_owner AND j.state IN ('submitted', 'queued', 'running')
        RETURNING j.id, j.state, j.task_id, j.attempt, j.message
    ), products AS (
        INSERT INTO product (task_id, path, product_type, size_bytes)
        SELECT f.task_id, p.path, r.output_product_type, p.size
        FROM finished f
        JOIN unnest(p_product_jobs, p_product_paths, p_product_sizes) AS p(job, path, size) ON p.job = f.id
        JOIN processing_task t ON t.id = f.task_id JOIN processing_routine r ON r.name = t.routine
        WHERE f.state = 'processed'
        RETURNING product.task_id
    ), processed AS (
        UPDATE processing_task t
        SET state = 'processed',
            state_reason = format('%s product(s)', (SELECT count(*) FROM products p WHERE p.task_id = t.id))
        FROM finished f
        WHERE f.state = 'processed' AND t.id = f.task_id AND t.attempts = f.attempt
          AND t.state IN ('dispatched', 'queued', 'running')
        RETURNING t.id, t.state, t.failures, t.lost_count
    ), failed AS (
        UPDATE processing_task t
        SET failures = t.failures + CASE WHEN f.state = 'lost' THEN 0 ELSE 1 END,
            lost_count = t.lost_count + CASE WHEN f.state = 'lost' THEN 1 ELSE 0 END,
            state = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN 'terminated'
                         ELSE 'pending' END,
            state_reason = format('attempt %s %s: %s', f.attempt, f.state, f.message),
            worker = NULL, planned_start = NULL, planned_end = NULL,
            not_before = now() + make_interval(secs => least(600.0, p_backoff_s * power(2, greatest(0,
                CASE WHEN f.state = 'lost' THEN t.lost_count ELSE t.failures END))))
        FROM finished f, processing_routine r
        WHERE f.state IN ('internal_error', 'external_error', 'lost') AND t.id = f.task_id
          AND t.attempts = f.attempt AND r.name = t.routine AND t.state IN ('dispatched', 'queued', 'running')
        RETURNING t.id, t.routine, t.state, t.state_reason, t.failures, t.lost_count, r.max_attempts
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
    SELECT f.id, f.state, f.task_id, coalesce(p.state, x.state), coalesce(p.failures, x.failures),
           x.max_attempts, coalesce(p.lost_count, x.lost_count)
    FROM finished f
    LEFT JOIN processed p ON p.id = f.task_id AND f.state = 'processed'
    LEFT JOIN failed x ON x.id = f.task_id AND f.state <> 'processed';
END $$;

-- The failure policy counts the routine's own failures only, never an infrastructure fault.
CREATE OR REPLACE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- After job outcomes: count consecutive failures per routine; hold a routine that reached its limit.
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('processed', 'internal_error', 'external_error')) THEN
        RETURN NULL;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT t.routine,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL) AS failures,
               max(n.message) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL)
                   AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY t.routine $q$
    LOOP
        IF r.failures = 0 THEN
            IF r.any_success THEN
                UPDATE hrwsi.processing_routine SET consecutive_failures = 0
                WHERE name = r.routine AND consecutive_failures <> 0;
            END IF;
            CONTINUE;
        END IF;
        UPDATE hrwsi.processing_routine
        SET consecutive_failures = CASE WHEN r.any_success THEN r.failures ELSE consecutive_failures + r.failures END
        WHERE name = r.routine;
        UPDATE hrwsi.processing_routine
        SET on_hold = true,
            hold_reason = format('%s consecutive failures (limit %s); last: %s',
                                 consecutive_failures, hold_after_failures, r.last_message)
        WHERE name = r.routine AND NOT on_hold AND consecutive_failures >= hold_after_failures;
    END LOOP;
    RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Plans: computed outside the database, stored in one call if nothing was planned meanwhile.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.plan_generation (
    id         boolean PRIMARY KEY DEFAULT true CONSTRAINT plan_generation_has_a_single_row CHECK (id),
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO hrwsi.plan_generation DEFAULT VALUES;

CREATE FUNCTION hrwsi.store_plan(
    p_owner text, p_lease_s double precision, p_generation bigint, p_planned_at timestamptz,
    p_task_count integer, p_makespan_s double precision, p_lower_bound_s double precision, p_vms integer,
    p_vm_hours double precision, p_planning_s double precision, p_figures jsonb,
    p_ids bigint[], p_workers text[], p_starts double precision[], p_ends double precision[],
    p_unplannable bigint[], p_reasons text[])
RETURNS TABLE (plan_id bigint, stored integer, reasons_changed integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
-- Optimistic: the plan was computed from what the database held at generation p_generation. If
-- another orchestrator stored a plan since, nothing is stored (the caller plans again), so two
-- plans never overlap each other's capacity. No lock is held while the planner computes.
DECLARE
    new_plan bigint;
    n_stored integer := 0;
    n_reasons integer := 0;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    UPDATE plan_generation SET generation = generation + 1 WHERE generation = p_generation;
    IF NOT FOUND THEN
        RETURN;   -- stale: no row
    END IF;
    IF cardinality(p_ids) > 0 THEN
        INSERT INTO plan (task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s, figures)
        VALUES (p_task_count, p_makespan_s, p_lower_bound_s, p_vms, p_vm_hours, p_planning_s, p_figures)
        RETURNING id INTO new_plan;
        UPDATE processing_task t
        SET state = 'planned', worker = a.worker, planned_start = p_planned_at + make_interval(secs => a.start_s),
            planned_end = p_planned_at + make_interval(secs => a.end_s), plan_id = new_plan, state_reason = NULL
        FROM unnest(p_ids, p_workers, p_starts, p_ends) AS a(id, worker, start_s, end_s)
        WHERE t.id = a.id AND t.state = 'pending';
        GET DIAGNOSTICS n_stored = ROW_COUNT;
    END IF;
    IF cardinality(p_unplannable) > 0 THEN
        UPDATE processing_task t SET state_reason = u.reason
        FROM unnest(p_unplannable, p_reasons) AS u(id, reason)
        WHERE t.id = u.id AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason;
        GET DIAGNOSTICS n_reasons = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT new_plan, n_stored, n_reasons;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Privileges of what this migration adds.
-- ---------------------------------------------------------------------------------------------
GRANT SELECT ON hrwsi.installation, hrwsi.lane, hrwsi.plan_generation, hrwsi.job_spec
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT UPDATE ON hrwsi.plan_generation TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.create_tasks_for_new_inputs(), hrwsi.block_or_unblock_dependents(),
    hrwsi.promote_aged_tasks(), hrwsi.lease_is_fresh(text, double precision),
    hrwsi.require_lease(text, double precision),
    hrwsi.dispatch(text, text, double precision, integer, text),
    hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                          timestamptz[], timestamptz[], text[], bigint[], text[], bigint[]),
    hrwsi.store_plan(text, double precision, bigint, timestamptz, integer, double precision, double precision,
                     integer, double precision, double precision, jsonb, bigint[], text[], double precision[],
                     double precision[], bigint[], text[])
    FROM PUBLIC;
-- Trigger functions stay callable by whoever writes the tables that fire them.
GRANT EXECUTE ON FUNCTION hrwsi.create_tasks_for_new_inputs(), hrwsi.block_or_unblock_dependents()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.promote_aged_tasks(), hrwsi.lease_is_fresh(text, double precision),
    hrwsi.require_lease(text, double precision),
    hrwsi.dispatch(text, text, double precision, integer, text),
    hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                          timestamptz[], timestamptz[], text[], bigint[], text[], bigint[]),
    hrwsi.store_plan(text, double precision, bigint, timestamptz, integer, double precision, double precision,
                     integer, double precision, double precision, jsonb, bigint[], text[], double precision[],
                     double precision[], bigint[], text[])
    TO hrwsi_service;
