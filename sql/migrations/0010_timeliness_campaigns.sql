-- hrwsi schema, version 10: the timeliness of every product, deadline alerts, and reprocessing
-- campaigns (ADR 0010).
--
-- Timeliness is a VIEW, not a column: a product's registration time (product.created_at), its
-- input's sensing and publication times and its task's deadline are all stored already and never
-- change once the product exists, so the figures are derived, exact, and cost the outcome writer
-- (hrwsi.record_outcomes) nothing.
--
-- A campaign reprocesses inputs that were processed already: one new task per input and campaign
-- (a task was unique per input; it is now unique per input and campaign), in the archive lane,
-- without a deadline, running the campaign's version of the routine when it names one. The old
-- tasks, products and lineage stay as they are; the new products are written beside them (an
-- attempt's directory is unique per task and attempt). A campaign's products chain downstream
-- within the campaign (its own inputs, archive lane, no deadline) unless it says `chain = false`.

-- ---------------------------------------------------------------------------------------------
-- Campaigns.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.campaign (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text CONSTRAINT campaign_name_is_not_empty CHECK (btrim(name) <> ''),
    -- What it reprocesses: the inputs of this routine (of one condition of it when given) sensed in
    -- [measured_from, measured_to), on these tiles (NULL: every tile), that were processed.
    routine       text NOT NULL CONSTRAINT campaign_routine_must_exist REFERENCES hrwsi.processing_routine (name),
    condition     text CONSTRAINT campaign_condition_must_exist REFERENCES hrwsi.processing_condition (name),
    measured_from timestamptz NOT NULL,
    measured_to   timestamptz NOT NULL,
    tiles         text[],
    -- The version of the routine it runs; NULL: the routine's own command and image.
    command       text[] CONSTRAINT campaign_command_is_not_empty CHECK (cardinality(command) > 0),
    image         text CONSTRAINT campaign_image_is_not_empty CHECK (btrim(image) <> ''),
    lane          text NOT NULL DEFAULT 'archive' CONSTRAINT campaign_lane_must_exist REFERENCES hrwsi.lane (name),
    -- Its products become inputs downstream (within the campaign); false: it stops at its routine.
    chain         boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT session_user,   -- who asked (not the definer of hrwsi.reprocess)
    CONSTRAINT campaign_measured_from_is_before_measured_to CHECK (measured_from < measured_to)
);

-- A product a campaign made becomes an input of the campaign (chained), never of production.
ALTER TABLE hrwsi.input
    ADD COLUMN campaign_id bigint CONSTRAINT input_campaign_must_exist REFERENCES hrwsi.campaign (id);

ALTER TABLE hrwsi.processing_task
    ADD COLUMN campaign_id bigint CONSTRAINT task_campaign_must_exist REFERENCES hrwsi.campaign (id);
-- One task per input for production, and one more per campaign that reprocesses it.
ALTER TABLE hrwsi.processing_task DROP CONSTRAINT task_is_unique_per_input;
ALTER TABLE hrwsi.processing_task ADD CONSTRAINT task_is_unique_per_input_and_campaign
    UNIQUE NULLS NOT DISTINCT (input_id, campaign_id);
CREATE INDEX processing_task_campaign_idx ON hrwsi.processing_task (campaign_id) WHERE campaign_id IS NOT NULL;

-- The program a task runs: its routine's command and image or, for the routine a campaign
-- reprocesses, the campaign's version of them. Every job records it (job.routine_version).
CREATE VIEW hrwsi.task_program AS
SELECT t.id AS task_id, coalesce(k.command, r.command) AS command, coalesce(k.image, r.image) AS image,
       concat_ws(' ', coalesce(k.image, r.image), array_to_string(coalesce(k.command, r.command), ' '))
           AS routine_version
FROM hrwsi.processing_task t
JOIN hrwsi.processing_routine r ON r.name = t.routine
LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id AND k.routine = t.routine;

-- ---------------------------------------------------------------------------------------------
-- Tasks created with their input: a campaign's input (a product it made) gets a campaign task.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
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
                                 series_tile, series_at, campaign_id)
    SELECT n.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason END,
           l.name, l.priority,
           -- A campaign's input (a product it made, chained) is reprocessing: it has no deadline.
           CASE WHEN n.campaign_id IS NULL THEN
               coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at ELSE n.measured_at END,
                        n.created_at) + c.deadline END,
           CASE WHEN r.sequential_per_tile AND n.measured_at IS NOT NULL THEN n.tile END,
           CASE WHEN r.sequential_per_tile AND n.tile IS NOT NULL THEN n.measured_at END,
           n.campaign_id
    FROM new_rows n
    JOIN processing_condition c ON c.name = n.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN lane l ON l.name = coalesce(n.lane, c.lane)
    ORDER BY n.id;

    -- A time-series task depends on the task just before it in its series, by (series_at, id):
    -- among the new tasks by a window (one sort), else the latest earlier task already there (one
    -- index probe each). O(n log n) whatever the table statistics. A campaign's tasks form series
    -- of their own: production tasks never wait for reprocessing, nor the other way round.
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
                FROM (SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id,
                             lag(t.id) OVER w AS previous_new, lag(t.series_at) OVER w AS previous_at
                      FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                      WHERE t.series_tile IS NOT NULL
                      WINDOW w AS (PARTITION BY t.routine, t.series_tile, t.campaign_id
                                   ORDER BY t.series_at, t.id)) s
                LEFT JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = s.routine AND p.series_tile = s.series_tile
                      AND p.campaign_id IS NOT DISTINCT FROM s.campaign_id
                      AND (p.series_at, p.id) < (s.series_at, s.id) AND p.state <> 'cancelled'
                      AND NOT EXISTS (SELECT 1 FROM new_rows n2 WHERE n2.id = p.input_id)
                    ORDER BY p.series_at DESC, p.id DESC LIMIT 1) e ON true
            ) link
            WHERE t.id = link.id AND link.previous IS NOT NULL $q$;
    END IF;
    RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------------------------
-- The job spec and dispatch run a task's program (task_program): a campaign's version of its
-- routine when it names one. The manifest says which campaign and version.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW hrwsi.job_spec AS
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, j.worker, t.lane,
       p.command, p.image, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type,
       jsonb_build_object(
           'task', t.id, 'attempt', j.attempt, 'routine', t.routine, 'condition', i.processing_condition,
           'lane', t.lane, 'deadline_at', t.deadline_at, 'campaign', t.campaign_id,
           'routine_version', j.routine_version,
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
JOIN hrwsi.processing_routine r ON r.name = t.routine
JOIN hrwsi.task_program p ON p.task_id = t.id;

CREATE OR REPLACE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision,
                                          p_max_jobs integer, p_data_dir text)
RETURNS SETOF hrwsi.job_spec LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009).
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
    b record;
    total_cpu float8 := 0; total_ram float8 := 0; total_disk float8 := 0; busy integer := 0;
    reserved boolean[]; budget_reserved boolean := false;
    c record; k integer; chosen integer; misses integer; scan_limit integer := 20 * p_max_jobs + 1000;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; from_planned boolean;
    installation text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7250002) THEN
        RAISE EXCEPTION 'another launcher is dispatching right now' USING ERRCODE = 'lock_not_available';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM service_instance
                   WHERE id = p_owner AND heartbeat_at > now() - make_interval(secs => p_lease_s)) THEN
        PERFORM hrwsi.require_lease(p_owner, p_lease_s);  -- raises the fencing error, with its message
    END IF;

    -- Active workers with their flavour and what runs on them now.
    SELECT array_agg(w.name ORDER BY w.name), array_agg(w.flavour ORDER BY w.name),
           array_agg(f.cpu::float8 ORDER BY w.name), array_agg(f.ram_mb::float8 ORDER BY w.name),
           array_agg(f.disk_mb::float8 ORDER BY w.name),
           array_agg(coalesce(u.cpu, 0) ORDER BY w.name), array_agg(coalesce(u.ram, 0) ORDER BY w.name),
           array_agg(coalesce(u.disk, 0) ORDER BY w.name), array_agg(false ORDER BY w.name)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk, use_cpu, use_ram, use_disk, reserved
    FROM worker w JOIN flavour f ON f.name = w.flavour
    LEFT JOIN (SELECT t.worker, sum(r.cpu)::float8 AS cpu, sum(r.ram_mb)::float8 AS ram,
                      sum(r.storage_mb)::float8 AS disk
               FROM processing_task t JOIN processing_routine r ON r.name = t.routine
               WHERE t.state IN ('dispatched', 'queued', 'running') GROUP BY t.worker) u ON u.worker = w.name
    WHERE w.active;
    IF names IS NULL THEN
        RETURN;
    END IF;
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
        FOREACH from_planned IN ARRAY ARRAY[true, false] LOOP
            misses := 0;
            IF from_planned THEN OPEN planned_tasks(prio, scan_limit); ELSE OPEN pending_tasks(prio, scan_limit); END IF;
            LOOP
                IF from_planned THEN FETCH planned_tasks INTO c; ELSE FETCH pending_tasks INTO c; END IF;
                EXIT WHEN NOT FOUND;
                IF cardinality(ids) >= p_max_jobs OR (budget_reserved AND prio > 0) THEN
                    -- Enough for this call, or urgent work waits for a budget: nothing less urgent starts.
                    IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
                    EXIT lanes;
                END IF;
                -- Nothing fits after many tries in a row: the rest of this list waits for capacity.
                EXIT WHEN misses >= 200;
                CONTINUE WHEN NOT c.ready OR c.on_hold;
                IF EXISTS (SELECT 1 FROM job j WHERE j.task_id = c.id AND j.attempt = c.attempts + 1) THEN
                    -- A stray job row for the attempt this would start: set the task aside, say why.
                    UPDATE processing_task SET state_reason = format(
                        'not dispatched: a job row for its attempt %s already exists (job %s) that hrwsi did not '
                        'create; remove that row (or cancel the task) and it is dispatched',
                        c.attempts + 1, (SELECT j.id FROM job j WHERE j.task_id = c.id AND j.attempt = c.attempts + 1))
                    WHERE id = c.id AND state_reason IS DISTINCT FROM format(
                        'not dispatched: a job row for its attempt %s already exists (job %s) that hrwsi did not '
                        'create; remove that row (or cancel the task) and it is dispatched',
                        c.attempts + 1, (SELECT j.id FROM job j WHERE j.task_id = c.id AND j.attempt = c.attempts + 1));
                    CONTINUE;
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
            IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
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
               -- one index probe per claimed task (a join would be planned as a scan of every task)
               (SELECT p.routine_version FROM task_program p WHERE p.task_id = cl.id)
        FROM claimed cl
        ORDER BY array_position(ids, cl.id)
        RETURNING id
    )
    SELECT array_agg(id) INTO new_jobs FROM inserted;
    -- A new statement: it sees the jobs just inserted.
    RETURN QUERY SELECT s.* FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Reprocessing campaigns (operator functions).
-- ---------------------------------------------------------------------------------------------
-- A reprocessing campaign: one new task per input of a routine (or of one condition of it) sensed
-- in [measured_from, measured_to), on the given tiles (NULL: every tile), that was processed
-- already, in the campaign's lane (archive) and without a deadline. A production input only: the
-- inputs an earlier campaign chained stay that campaign's. The routine runs the campaign's
-- command or image when given. Old tasks and products are kept.
CREATE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
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
            RAISE EXCEPTION 'no condition %', reprocess.condition USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', target USING ERRCODE = 'no_data_found';
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
      AND i.campaign_id IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
    ORDER BY i.measured_at, i.id;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
            CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' (tiles ' || array_to_string(reprocess.tiles, ', ') || ')' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, reprocess.measured_from, reprocess.measured_to,
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
        FROM campaign k WHERE k.id = new_campaign;
END $$;

-- Cancel what a campaign has not done yet (its running jobs are stopped); its products are kept.
CREATE FUNCTION hrwsi.cancel_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cancelled integer;
    stopping integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = cancel_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', cancel_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE state IN ('submitted', 'queued', 'running')
      AND task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = cancel_campaign.campaign);
    GET DIAGNOSTICS stopping = ROW_COUNT;
    UPDATE hrwsi.processing_task SET state = 'cancelled',
        state_reason = format('its campaign %s was cancelled by an operator', cancel_campaign.campaign)
    WHERE campaign_id = cancel_campaign.campaign AND state NOT IN ('processed', 'terminated', 'cancelled');
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    RETURN format('campaign %s: %s open task(s) cancelled, %s running job(s) being stopped; its products are kept',
                  cancel_campaign.campaign, cancelled, stopping);
END $$;

-- ---------------------------------------------------------------------------------------------
-- Deadlines.
-- ---------------------------------------------------------------------------------------------
-- Deadline alerts, each kind once per task.
CREATE UNIQUE INDEX alert_deadline_is_raised_once_per_task ON hrwsi.alert (task_id, kind)
    WHERE kind IN ('deadline_at_risk', 'deadline_missed');

-- Called by the orchestrator's side task `raise_deadline_alerts`: `deadline_at_risk` when the
-- plan already ends a task after its deadline (before it is late), `deadline_missed` when an open
-- task is past its deadline. A terminated task has its own alert; a cancelled one was an
-- operator's decision. The NOT EXISTS keeps a repeated check from trying again (each try would
-- take an identity value); the ON CONFLICT settles two orchestrators checking at once.
CREATE FUNCTION hrwsi.raise_deadline_alerts() RETURNS TABLE (at_risk integer, missed integer)
LANGUAGE sql SET search_path = pg_catalog, hrwsi AS $$
    WITH missed AS (
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_missed', format('hrwsi: task %s (%s) missed its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) was due at %s and is still %s%s. '
                      '`hrwsi task show %s` tells why; `hrwsi timeliness` shows how late products are.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, t.deadline_at, t.state,
                      coalesce(' (' || t.state_reason || ')', ''), t.id),
               t.id, t.routine
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.deadline_at <= now() AND t.state NOT IN ('processed', 'terminated', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_missed')
        ORDER BY t.deadline_at, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    ), at_risk AS (
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_at_risk', format('hrwsi: task %s (%s) will miss its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) is due at %s, but its plan ends it at %s '
                      '(%s late); it is %s. Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, t.deadline_at, t.planned_end,
                      date_trunc('second', t.planned_end - t.deadline_at), t.state),
               t.id, t.routine
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.deadline_at > now() AND t.planned_end > t.deadline_at
          AND t.state NOT IN ('processed', 'terminated', 'cancelled')
          AND t.state IN ('planned', 'dispatched', 'queued', 'running')
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_at_risk')
        ORDER BY t.deadline_at, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM at_risk)::integer, (SELECT count(*) FROM missed)::integer
$$;

-- ---------------------------------------------------------------------------------------------
-- Timeliness: how long after sensing, and after publication, each product was registered.
-- ---------------------------------------------------------------------------------------------

-- One row per product: seconds from its input's sensing time (measured_at) and publication time
-- (published_at) to its registration (product.created_at, when the launcher recorded it), and
-- whether it met its task's deadline (NULL: the task had none). A chained input carries the
-- original scene's sensing time and, as publication, the upstream product's registration: so
-- from_sensing_s is the delay from the satellite, from_publication_s the delay of this step.
-- day is the UTC day of registration.
CREATE VIEW hrwsi.product_timeliness AS
SELECT p.id AS product_id, p.product_type, p.path, p.task_id, t.routine, t.lane, t.campaign_id,
       i.processing_condition AS condition, i.tile, (p.created_at AT TIME ZONE 'UTC')::date AS day,
       i.measured_at, i.published_at, p.created_at AS registered_at, t.deadline_at,
       extract(epoch FROM p.created_at - i.measured_at)::float8 AS from_sensing_s,
       extract(epoch FROM p.created_at - i.published_at)::float8 AS from_publication_s,
       p.created_at <= t.deadline_at AS on_time
FROM hrwsi.product p
JOIN hrwsi.processing_task t ON t.id = p.task_id
JOIN hrwsi.input i ON i.id = t.input_id;

-- Per routine, lane, tile and day: products, the median and 95th percentile of both delays, and
-- the share on time among the products that had a deadline (NULL: none had one).
CREATE VIEW hrwsi.timeliness AS
SELECT routine, lane, tile, day, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline,
       count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time
FROM hrwsi.product_timeliness
GROUP BY routine, lane, tile, day;

-- A campaign's progress, per routine (its own, and the routines its products chained into):
-- tasks per state, products, when its first attempt started, and when it finished (every task
-- final and every product chained; NULL while it runs).
CREATE VIEW hrwsi.campaign_progress AS
SELECT k.id AS campaign_id, k.name, k.routine AS campaign_routine, k.condition, k.measured_from, k.measured_to,
       k.tiles, nullif(concat_ws(' ', k.image, array_to_string(k.command, ' ')), '') AS version, k.lane, k.chain,
       k.created_at, k.created_by, t.routine, count(t.id) AS tasks,
       count(t.id) FILTER (WHERE t.state IN ('pending', 'planned', 'on_hold', 'blocked')) AS waiting,
       count(t.id) FILTER (WHERE t.state IN ('dispatched', 'queued', 'running')) AS running,
       count(t.id) FILTER (WHERE t.state = 'processed') AS processed,
       count(t.id) FILTER (WHERE t.state = 'terminated') AS terminated,
       count(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled,
       coalesce(sum(x.products), 0)::bigint AS products,
       coalesce(sum(x.unchained), 0)::bigint AS unchained_products,
       min(x.started_at) AS started_at,
       CASE WHEN count(t.id) > 0 AND bool_and(t.state IN ('processed', 'terminated', 'cancelled'))
                 AND coalesce(sum(x.unchained), 0) = 0
            THEN max(greatest(t.updated_at, x.chained_at)) END AS finished_at
FROM hrwsi.campaign k
LEFT JOIN hrwsi.processing_task t ON t.campaign_id = k.id
LEFT JOIN LATERAL (SELECT count(*) AS products, count(*) FILTER (WHERE p.chained_at IS NULL) AS unchained,
                          max(p.chained_at) AS chained_at,
                          (SELECT min(j.started_at) FROM hrwsi.job j WHERE j.task_id = t.id) AS started_at
                   FROM hrwsi.product p WHERE p.task_id = t.id) x ON true
GROUP BY k.id, t.routine;

-- ---------------------------------------------------------------------------------------------
-- Privileges of what this migration adds.
-- ---------------------------------------------------------------------------------------------
GRANT SELECT ON hrwsi.campaign, hrwsi.task_program, hrwsi.product_timeliness, hrwsi.timeliness,
    hrwsi.campaign_progress TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text),
    hrwsi.cancel_campaign(bigint), hrwsi.raise_deadline_alerts()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text),
    hrwsi.cancel_campaign(bigint), hrwsi.raise_deadline_alerts()
    TO hrwsi_service;
