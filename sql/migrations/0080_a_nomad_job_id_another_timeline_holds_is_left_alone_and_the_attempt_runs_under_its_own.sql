-- hrwsi schema, version 80: a Nomad job ID taken by a job this database does not know is left alone,
-- and the attempt runs under an ID of its own.
--
-- Job IDs are deterministic (hrwsi-<routine>-<task>-<attempt>, ADR 0002), so that a launcher that
-- crashed between registering a job and recording it finds it again. After a restore from a backup
-- older than some work, new attempts reuse that work's task ids and attempts, and so its Nomad job
-- IDs: each such attempt was lost (not charged) and the next one tried, lost alike while the later
-- work's jobs held the IDs (found by exploratory testing). Each job row now has a claim token, unique
-- per claim, which the launcher puts in its Nomad job's Meta (hrwsi_claim): a job on the attempt's ID
-- carrying it is this claim's own registration (adopted, as before); one without it is not this
-- database's, left untouched, and the attempt runs as hrwsi-<routine>-<task>-<attempt>-c<the token's
-- first 8 hex digits>, recorded in backend_job_id. Rows claimed before this migration keep no token
-- (NULL, nothing rewritten): their jobs are judged as before.
--
-- And hrwsi.raise_deadline_alerts writes its deadline_missed alerts in one INSERT (two, of a task still
-- not done and of one processed late, kept the alert's subject, its body's task line and the rule of one
-- alert per task in step by hand); what it writes is unchanged.

ALTER TABLE hrwsi.job ADD COLUMN claim_token uuid;
-- (set after the column is added: as ADD COLUMN's default, a volatile one, it rewrote every job row)
ALTER TABLE hrwsi.job ALTER COLUMN claim_token SET DEFAULT gen_random_uuid();

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
       j.claim_token
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
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.deadline_at))
               || CASE WHEN t.state = 'processed'
                       THEN format('was processed at %s, %s late. `hrwsi timeliness` shows how late products are.',
                                   hrwsi.utc_text(t.finished_at), hrwsi.duration_text(t.finished_at - t.deadline_at))
                       ELSE format('is still %s%s. `hrwsi task show %s` tells why; `hrwsi timeliness` shows how late '
                                   'products are.', t.state, coalesce(' (' || t.state_reason || ')', ''), t.id) END,
               t.id, t.routine
        FROM (SELECT t.* FROM processing_task t
              WHERE t.deadline_at <= now() AND t.state NOT IN ('processed', 'terminated', 'cancelled')
              UNION ALL
              SELECT t.* FROM processing_task t
              WHERE t.state = 'processed' AND t.finished_at > now() - interval '1 hour'
                AND t.finished_at > t.deadline_at) t
        JOIN input i ON i.id = t.input_id
        WHERE NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_missed')
        ORDER BY t.deadline_at, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    ), at_risk AS (
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_at_risk', format('hrwsi: task %s (%s) will miss its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) is due at %s, but its plan ends it at %s '
                      '(%s late); it is %s. Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.deadline_at),
                      hrwsi.utc_text(t.planned_end), hrwsi.duration_text(t.planned_end - t.deadline_at), t.state),
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
