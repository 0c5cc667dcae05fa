-- Retention (hrwsi.retention; README.md, Retention): small batches, each its own short transaction,
-- rows locked with SKIP LOCKED so that pruning never waits for (nor blocks) the services' work.
-- Every deletion is a maintenance function of migration 0011 (SECURITY DEFINER, owned by the schema
-- owner): it reads the policy itself (a NULL interval deletes nothing) and returns one row per
-- deleted row of its kind, and one per file the caller should remove.
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
SELECT kind, path, root FROM hrwsi.prune_products($1);

-- name: retention_prune_plans
SELECT kind, path, root FROM hrwsi.prune_plans($1);

-- name: retention_prune_alerts
SELECT kind, path, root FROM hrwsi.prune_alerts($1);

-- name: retention_prune_landing_files
SELECT kind, path, root FROM hrwsi.prune_landing_files($1);

-- name: retention_prune_dead_services
SELECT kind, path, root FROM hrwsi.prune_dead_services();

-- name: retention_unknown_jobs
-- Of these backend job IDs (log file names), those no job row has any more.
SELECT b FROM unnest($1::text[]) AS b
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.job j WHERE j.backend IN ('local', 'nomad', 'dry-run') AND j.backend_job_id = b);

-- name: retention_installation
-- The directory under <data>/products that hrwsi.dispatch puts this installation's attempts in.
SELECT installation_id::text FROM hrwsi.installation WHERE id;

-- name: retention_unknown_attempts
-- Of these attempts (task id, attempt number; attempt directories on disk), those no job row has any
-- more: retention deleted it (one probe of job_is_unique_per_task_attempt each).
SELECT a.task_id, a.attempt FROM unnest($1::bigint[], $2::integer[]) AS a(task_id, attempt)
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.job j WHERE j.task_id = a.task_id AND j.attempt = a.attempt);

-- name: retention_unknown_landing_paths
-- Of these paths in a work directory's previously_received/, those no landing-file row holds any more.
SELECT p FROM unnest($1::text[]) AS p
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.landing_file f WHERE f.source = $2 AND f.prepared_path = p);

-- name: retention_landing_work_directories
SELECT name, config ->> 'work_directory' AS work_directory
FROM hrwsi.harvest_source WHERE kind = 'landing_directory';

-- name: retention_preview
-- What a run would delete now (hrwsi prune --dry-run), per rule. A run prunes products before
-- finished tasks, so a processed task whose products all go in this run goes too: counted here (the
-- dry run said 0 finished tasks where the run then deleted 271, found by exploratory testing).
WITH doomed_products AS (
    SELECT p.id, p.task_id FROM hrwsi.product p
    WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy) AND p.chained_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member m WHERE m.member_path = p.path)
)
SELECT
    (SELECT count(*) FROM hrwsi.processing_task
     WHERE finished_at < now() - (SELECT task_history FROM hrwsi.retention_policy)
       AND history_pruned_at IS NULL) AS task_history,
    (SELECT count(*) FROM hrwsi.processing_task t
     WHERE t.finished_at < now() - (SELECT finished_tasks FROM hrwsi.retention_policy)
       AND (t.state IN ('terminated', 'cancelled')
            OR (t.state = 'processed' AND (SELECT products IS NOT NULL FROM hrwsi.retention_policy)
                AND NOT EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = t.id
                                AND p.id NOT IN (SELECT d.id FROM doomed_products d WHERE d.task_id = t.id))))
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task d WHERE d.depends_on = t.id AND d.finished_at IS NULL))
        AS finished_tasks,
    (SELECT count(*) FROM doomed_products) AS products,
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

-- name: retention_fold_task_counts
-- The finished tasks' kept counts folded into one row per routine, lane and state (hrwsi.finished_task_counts, which
-- folds before it reads; migration 0105), once a minute by the orchestrator's retention side task.
SELECT count(*) FROM hrwsi.finished_task_counts();
