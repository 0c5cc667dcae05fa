-- Retention (hrwsi.retention; README.md, Retention): small batches, each its own short transaction,
-- rows locked with SKIP LOCKED so that pruning never waits for (nor blocks) the services' work.
-- The policy is read from hrwsi.retention_policy in each statement; a NULL interval deletes nothing.
-- Placeholders: asyncpg ($1).

-- name: retention_policy
SELECT enabled, task_history, finished_tasks, products, plans, alerts, landing_files, dead_services, batch_size,
       run_every, last_run_at, last_report
FROM hrwsi.retention_policy;

-- name: retention_claim_run
-- One orchestrator replica prunes per period: the one whose UPDATE finds the period over.
UPDATE hrwsi.retention_policy SET last_run_at = now()
WHERE enabled AND (last_run_at IS NULL OR last_run_at <= now() - run_every)
RETURNING batch_size;

-- name: retention_record_run
UPDATE hrwsi.retention_policy SET last_report = $1::jsonb;

-- name: retention_prune_task_history
SELECT kind, path, root FROM hrwsi.prune_task_history($1);

-- name: retention_prune_finished_tasks
SELECT kind, path, root FROM hrwsi.prune_finished_tasks($1);

-- name: retention_prune_products
-- Products no input was made from (chaining) and no group input lists: a kept product's ancestors
-- always have a child, so they stay. Only chained products (the harvester has seen them).
WITH doomed AS (
    SELECT p.id FROM hrwsi.product p
    WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy)
      AND p.chained_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)
    ORDER BY p.id LIMIT $1
    FOR UPDATE OF p SKIP LOCKED)
DELETE FROM hrwsi.product p USING doomed WHERE p.id = doomed.id
RETURNING p.id;

-- name: retention_prune_plans
-- Stored plans no open task holds (finished tasks keep their planned times; their plan_id becomes NULL).
WITH doomed AS (
    SELECT p.id FROM hrwsi.plan p
    WHERE p.created_at < now() - (SELECT plans FROM hrwsi.retention_policy)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t WHERE t.plan_id = p.id AND t.finished_at IS NULL)
    ORDER BY p.id LIMIT $1
    FOR UPDATE OF p SKIP LOCKED)
DELETE FROM hrwsi.plan p USING doomed WHERE p.id = doomed.id
RETURNING p.id;

-- name: retention_prune_alerts
WITH doomed AS (
    SELECT a.id FROM hrwsi.alert a
    WHERE a.created_at < now() - (SELECT alerts FROM hrwsi.retention_policy)
    ORDER BY a.id LIMIT $1
    FOR UPDATE OF a SKIP LOCKED)
DELETE FROM hrwsi.alert a USING doomed WHERE a.id = doomed.id
RETURNING a.id;

-- name: retention_prune_landing_files
-- Re-deliveries (moved aside into the work directory's previously_received/) and failures; a
-- prepared file goes with its input (hrwsi.prune_finished_tasks).
WITH doomed AS (
    SELECT f.id FROM hrwsi.landing_file f
    WHERE f.state IN ('previously_received', 'failed')
      AND f.updated_at < now() - (SELECT landing_files FROM hrwsi.retention_policy)
    ORDER BY f.updated_at LIMIT $1
    FOR UPDATE OF f SKIP LOCKED)
DELETE FROM hrwsi.landing_file f USING doomed, hrwsi.harvest_source s
WHERE f.id = doomed.id AND s.name = f.source
RETURNING f.state, f.prepared_path, s.config ->> 'work_directory' AS work_directory;

-- name: retention_prune_dead_services
-- Instances whose heartbeat stopped long ago (a live one beats every few seconds): their processes are gone.
DELETE FROM hrwsi.service_instance
WHERE heartbeat_at < now() - (SELECT dead_services FROM hrwsi.retention_policy)
RETURNING id;

-- name: retention_unknown_jobs
-- Of these backend job IDs (log file names), those no job row has any more.
SELECT b FROM unnest($1::text[]) AS b
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.job j WHERE j.backend IN ('local', 'nomad', 'dry-run') AND j.backend_job_id = b);

-- name: retention_unknown_landing_paths
-- Of these paths in a work directory's previously_received/, those no landing-file row holds any more.
SELECT p FROM unnest($1::text[]) AS p
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.landing_file f WHERE f.source = $2 AND f.prepared_path = p);

-- name: retention_landing_work_directories
SELECT name, config ->> 'work_directory' AS work_directory
FROM hrwsi.harvest_source WHERE kind = 'landing_directory';

-- name: retention_preview
-- What a run would delete now (hrwsi prune --dry-run), per rule.
SELECT
    (SELECT count(*) FROM hrwsi.processing_task
     WHERE finished_at < now() - (SELECT task_history FROM hrwsi.retention_policy)
       AND history_pruned_at IS NULL) AS task_history,
    (SELECT count(*) FROM hrwsi.processing_task t
     WHERE t.finished_at < now() - (SELECT finished_tasks FROM hrwsi.retention_policy)
       AND (t.state IN ('terminated', 'cancelled')
            OR (t.state = 'processed' AND (SELECT products IS NOT NULL FROM hrwsi.retention_policy)
                AND NOT EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = t.id)))
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task d WHERE d.depends_on = t.id AND d.finished_at IS NULL))
        AS finished_tasks,
    (SELECT count(*) FROM hrwsi.product p
     WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy) AND p.chained_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)) AS products,
    (SELECT count(*) FROM hrwsi.plan p
     WHERE p.created_at < now() - (SELECT plans FROM hrwsi.retention_policy)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t WHERE t.plan_id = p.id AND t.finished_at IS NULL))
        AS plans,
    (SELECT count(*) FROM hrwsi.alert WHERE created_at < now() - (SELECT alerts FROM hrwsi.retention_policy))
        AS alerts,
    (SELECT count(*) FROM hrwsi.landing_file
     WHERE state IN ('previously_received', 'failed')
       AND updated_at < now() - (SELECT landing_files FROM hrwsi.retention_policy)) AS landing_files,
    (SELECT count(*) FROM hrwsi.service_instance
     WHERE heartbeat_at < now() - (SELECT dead_services FROM hrwsi.retention_policy)) AS dead_services;
