-- hrwsi schema, version 46: retention keeps an input that another task still names.
--
-- A reprocessing campaign's task names the production task's input. Once a campaign task had ended
-- terminated or cancelled, hrwsi.prune_finished_tasks deleted its input with it, which the
-- production task still named: refused (task_input_must_exist), and since each run took the same
-- oldest batch first, every later run of retention failed the same way (found by exploratory
-- testing, 2026-12-05).

CREATE OR REPLACE FUNCTION hrwsi.prune_finished_tasks(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch: tasks finished longer ago than finished_tasks that have no product (terminated and
-- cancelled ones; processed ones too when products are pruned, once their products are gone), with
-- their history, attempts and input, and the landing-file rows of those inputs. Not deleted: a task
-- an open task depends on. Returned: files for the caller to delete ('log', 'output_dir', and
-- 'work_file' with the landing source's work directory as root: it is deleted only inside it).
#variable_conflict use_column
DECLARE
    keep interval := (SELECT finished_tasks FROM hrwsi.retention_policy);
    processed_too boolean := (SELECT products IS NOT NULL FROM hrwsi.retention_policy);
    ids bigint[];
    more bigint[];
    inputs bigint[];
    paths text[];
BEGIN
    IF keep IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(id) INTO ids FROM (
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.state IN ('terminated', 'cancelled') AND t.finished_at < now() - keep
          AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task d WHERE d.depends_on = t.id AND d.finished_at IS NULL)
        ORDER BY t.finished_at LIMIT batch FOR UPDATE OF t SKIP LOCKED) s;
    IF processed_too THEN
        SELECT array_agg(id) INTO more FROM (
            SELECT t.id FROM hrwsi.processing_task t
            WHERE t.state = 'processed' AND t.finished_at < now() - keep
              AND NOT EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = t.id)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task d WHERE d.depends_on = t.id AND d.finished_at IS NULL)
            ORDER BY t.finished_at LIMIT batch FOR UPDATE OF t SKIP LOCKED) s;
        ids := coalesce(ids, '{}') || coalesce(more, '{}');
    END IF;
    IF coalesce(cardinality(ids), 0) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM hrwsi.delete_history_and_attempts(ids);
    WITH gone AS (DELETE FROM hrwsi.processing_task WHERE id = ANY (ids) RETURNING input_id)
    SELECT array_agg(input_id) INTO inputs FROM gone;
    -- An input another task still names stays: a campaign's task reprocesses the production task's
    -- input (deleting it failed every run of retention once a campaign task had ended terminated or
    -- cancelled; migration 0046).
    WITH gone AS (DELETE FROM hrwsi.input i WHERE i.id = ANY (inputs)
                    AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t WHERE t.input_id = i.id)
                  RETURNING i.input_path)
    SELECT array_agg(DISTINCT input_path) INTO paths FROM gone;
    RETURN QUERY SELECT 'task', NULL::text, NULL::text FROM unnest(ids);
    -- The landing files those inputs were prepared from, unless another input still reads the file.
    RETURN QUERY
        WITH gone AS (
            DELETE FROM hrwsi.landing_file f USING hrwsi.harvest_source s
            WHERE s.name = f.source AND f.state = 'prepared' AND f.prepared_path = ANY (paths)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.input_path = f.prepared_path)
            RETURNING f.prepared_path, s.config ->> 'work_directory' AS work_directory)
        SELECT 'work_file', prepared_path, work_directory FROM gone;
END $$;
