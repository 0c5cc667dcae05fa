-- hrwsi schema, version 115: a job's spec says its task's serving priority, so that the backend orders what waits in it
-- as dispatch does.
--
-- Every Nomad job was registered at priority 50, near-real-time and archive alike, so when a job waited in Nomad for
-- room (a node busier than hrwsi counted it, a node gone, placement by flavour), which of the waiting jobs Nomad placed
-- first when room freed was told by its evaluations' modify indexes (nomad/eval_broker.go, PendingEvaluations.Less:
-- priority first, then the highest ModifyIndex), not by lane: a fresh scene's job could wait behind back-fill's. The
-- local backend's held jobs (HRWSI_CLAIM_AHEAD) were ordered by their lane's priority, so an archive task raised to 0
-- (aged past promote_after, or waited for by a near-real-time task of its time series) waited behind every job of the
-- archive lane claimed before it. The view gains the task's priority (as dispatch serves it) at its end; the launcher
-- maps it to Nomad's job priority and orders its held jobs by it.

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
       -- near-real-time task of its time series; the backend orders what waits in it by it: migration 0115)
       t.priority
FROM hrwsi.job j
CROSS JOIN LATERAL (SELECT t.* FROM hrwsi.processing_task t WHERE t.id = j.task_id OFFSET 0) t
CROSS JOIN LATERAL (SELECT i.* FROM hrwsi.input i WHERE i.id = t.input_id OFFSET 0) i
JOIN hrwsi.processing_routine r ON r.name = t.routine
CROSS JOIN LATERAL (SELECT p.command, p.image FROM hrwsi.task_program p WHERE p.task_id = t.id OFFSET 0) p;
