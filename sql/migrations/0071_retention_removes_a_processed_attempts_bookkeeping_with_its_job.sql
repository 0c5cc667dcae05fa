-- hrwsi schema, version 71: retention removes a processed attempt's bookkeeping with its job row.
--
-- hrwsi.delete_history_and_attempts returned the directories of failed attempts only: every processed
-- attempt's exit.json, started.json, supervisor.lock and manifest.json stayed on disk for ever, a
-- directory and five inodes per task, long after retention deleted its rows (found by exploratory
-- testing, 2026-12-06: 8,300 inodes per 1,000 tasks). It returns processed attempts' output
-- directories too, as 'processed_output_dir': the caller removes what is not a product.

CREATE OR REPLACE FUNCTION hrwsi.delete_history_and_attempts(ids bigint[]) RETURNS TABLE (kind text, path text, root text)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
-- The one place that deletes history: the given tasks' events and jobs; returned are the attempts'
-- log files, the output directories of attempts that did not succeed ('output_dir': the caller
-- removes the attempt's directory) and those of processed attempts ('processed_output_dir': the
-- caller removes the attempt's bookkeeping and keeps its products; migration 0071: a processed
-- attempt's exit.json, started.json, supervisor.lock and manifest.json stayed on disk for ever,
-- found by exploratory testing). Callable by its owner only (the two maintenance functions below,
-- which run as the owner and choose the tasks by the policy).
#variable_conflict use_column
BEGIN
    PERFORM set_config('hrwsi.pruning_history', 'on', true);
    DELETE FROM hrwsi.task_event WHERE task_id = ANY (ids);
    PERFORM set_config('hrwsi.pruning_history', 'off', true);
    RETURN QUERY
        WITH gone AS (DELETE FROM hrwsi.job WHERE task_id = ANY (ids) RETURNING log_path, output_dir, state)
        SELECT 'log', log_path, NULL::text FROM gone WHERE log_path IS NOT NULL
        UNION ALL SELECT CASE WHEN state = 'processed' THEN 'processed_output_dir' ELSE 'output_dir' END, output_dir,
                         NULL FROM gone WHERE output_dir IS NOT NULL;
END $$;
