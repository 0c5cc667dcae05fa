-- hrwsi schema, version 114: a job's spec says its task's serving priority, so that the backend orders what waits in it
-- as dispatch does, and a deadline_at_risk alert names the work in flight its task waits behind.
--
-- Every Nomad job was registered at priority 50, near-real-time and archive alike, so when a job waited in Nomad for
-- room (a node busier than hrwsi counted it, a node gone, placement by flavour), which of the waiting jobs Nomad placed
-- first when room freed was told by its evaluations' modify indexes (nomad/eval_broker.go, PendingEvaluations.Less:
-- priority first, then the highest ModifyIndex), not by lane: a fresh scene's job could wait behind back-fill's. The
-- local backend's held jobs (HRWSI_CLAIM_AHEAD) were ordered by their lane's priority, so an archive task raised to 0
-- (aged past promote_after, or waited for by a near-real-time task of its time series) waited behind every job of the
-- archive lane claimed before it. The view gains the task's priority (as dispatch serves it) at its end; the launcher
-- maps it to Nomad's job priority and orders its held jobs by it.
--
-- hrwsi.raise_deadline_alerts: a task planned to start later and alerted at risk says when and on which worker it starts
-- and after which tasks in flight there (the first 3 by expected end, lane and the priority they are served at, and how
-- many more): the alert said "Add capacity, or hold less urgent work" and nothing of what held it (found by
-- exploratory testing: a fresh scene behind four 20 s archive tasks, alerted 19 s before its deadline).

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
           -- (a campaign's composite reads the members recorded for its task when the campaign
           -- started, those its group had then; production's, those recorded with its group:
           -- migration 0073. A campaign's task started before has none of its own: production's.)
           'members', coalesce(CASE WHEN t.campaign_id IS NOT NULL THEN
                                   (SELECT json_agg(json_build_object(
                                               'path', m.member_path, 'product_type', m.product_type,
                                               'tile', i.tile, 'measured_at', m.measured_at)
                                           ORDER BY m.measured_at, m.member_path)
                                    FROM (SELECT m.* FROM hrwsi.multi_input_campaign_member m
                                          WHERE m.task_id = t.id OFFSET 0) m) END,
                               (SELECT json_agg(json_build_object(
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
       )::text AS manifest,
       j.claim_token,
       -- (the task's serving priority as the attempt is read: its lane's, or 0 once aged or raised by a
       -- near-real-time task of its time series; the backend orders what waits in it by it: migration 0114)
       t.priority
FROM hrwsi.job j
CROSS JOIN LATERAL (SELECT t.* FROM hrwsi.processing_task t WHERE t.id = j.task_id OFFSET 0) t
CROSS JOIN LATERAL (SELECT i.* FROM hrwsi.input i WHERE i.id = t.input_id OFFSET 0) i
JOIN hrwsi.processing_routine r ON r.name = t.routine
CROSS JOIN LATERAL (SELECT p.command, p.image FROM hrwsi.task_program p WHERE p.task_id = t.id OFFSET 0) p;

CREATE OR REPLACE FUNCTION hrwsi.raise_deadline_alerts() RETURNS TABLE (at_risk integer, missed integer)
LANGUAGE sql SET search_path = pg_catalog, hrwsi AS $$
    WITH missed AS (
        -- One INSERT (migration 0080: two kept the alert's subject, its body's task line and the rule of
        -- one alert per task in step by hand) for the tasks of two reads, each through its own index: a task
        -- not done past its deadline, and one processed after its deadline between two checks, never told
        -- otherwise (found by exploratory testing; migration 0066), within the hour after it ended.
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_missed', format('hrwsi: task %s (%s) missed its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) was due at %s and ',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.due))
               || CASE WHEN t.state = 'processed'
                       THEN format('was processed at %s, %s late. `hrwsi timeliness` shows how late products are.',
                                   hrwsi.utc_text(t.finished_at), hrwsi.duration_text(t.finished_at - t.due))
                       ELSE format('is still %s%s.%s `hrwsi task show %s` tells why; `hrwsi timeliness` shows how late '
                                   'products are.', t.state, coalesce(' (' || t.state_reason || ')', ''),
                                   CASE WHEN w.id IS NOT NULL
                                        THEN format(' It waits for task %s (routine %s, %s), before it in its time series%s.',
                                                    w.id, w.routine, w.state,
                                                    CASE WHEN w.deadline_inherited_from IS NOT NULL
                                                         THEN ', served with this deadline (it is not alerted itself)'
                                                         ELSE '' END)
                                        ELSE '' END, t.id) END,
               t.id, t.routine
        FROM (SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS due
              FROM processing_task t
              WHERE t.deadline_at <= now() AND t.state NOT IN ('processed', 'terminated', 'cancelled')
                AND (t.deadline_inherited_from IS NULL OR t.own_deadline_at <= now())
              UNION ALL
              SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END
              FROM processing_task t
              WHERE t.state = 'processed' AND t.finished_at > now() - interval '1 hour'
                AND t.finished_at > CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at
                                         ELSE t.own_deadline_at END) t
        JOIN input i ON i.id = t.input_id
        LEFT JOIN processing_task w ON w.id = t.depends_on AND w.state NOT IN ('processed', 'terminated', 'cancelled')
                                   AND NOT t.dependency_waived
        WHERE NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_missed')
        ORDER BY t.due, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    ), at_risk AS (
        -- (against its own deadline, as report_open_deadlines counts it: a task that took another's and has one
        -- of its own was counted at risk by `hrwsi status` and never alerted; found by review. One that took
        -- another's and has none is not: that task is planned after it, and alerted itself)
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_at_risk', format('hrwsi: task %s (%s) will miss its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) is due at %s, but its plan ends it at %s '
                      '(%s late); it is %s.%s Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.due),
                      hrwsi.utc_text(t.planned_end), hrwsi.duration_text(t.planned_end - t.due), t.state,
                      coalesce(b.said, '')),
               t.id, t.routine
        FROM (SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS due
              FROM processing_task t
              WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
                AND t.state IN ('planned', 'dispatched', 'queued', 'running')) t
        JOIN input i ON i.id = t.input_id
        -- Why (migration 0114): a task planned to start later waits for the work in flight on the worker its plan puts it
        -- on, named here (the first 3 by expected end, and how many): the alert said only "Add capacity, or hold less
        -- urgent work", and ops looked for what held it. Read only for a task alerted (rare), through the index of states.
        LEFT JOIN LATERAL (
            SELECT format(' It starts at %s on worker %s, after %s in flight there: %s%s.', hrwsi.utc_text(t.planned_start),
                          t.worker, CASE WHEN count(*) = 1 THEN 'the task' ELSE format('the %s tasks', count(*)) END,
                          array_to_string((array_agg(format('task %s (routine %s, lane %s%s, expected to end at %s)',
                                                            r.id, r.routine, r.lane,
                                                            CASE WHEN r.priority <> l.priority THEN ', served as ' || r.priority
                                                                 ELSE '' END,
                                                            hrwsi.utc_text(r.planned_end))
                                                     ORDER BY r.planned_end NULLS LAST, r.id))[1:3], ', '),
                          CASE WHEN count(*) > 3 THEN format(' and %s more', count(*) - 3) ELSE '' END) AS said
            FROM processing_task r LEFT JOIN lane l ON l.name = r.lane
            WHERE t.state = 'planned' AND t.planned_start > now() AND r.worker = t.worker
              AND r.state IN ('dispatched', 'queued', 'running')
            HAVING count(*) > 0) b ON true
        WHERE t.due > now() AND t.planned_end > t.due
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_at_risk')
        ORDER BY t.due, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM at_risk)::integer, (SELECT count(*) FROM missed)::integer
$$;
