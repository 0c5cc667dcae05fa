-- hrwsi schema, version 10: retention. Old finished work is deleted in small batches, by the
-- orchestrator (a side task) and by `hrwsi prune`, under a policy that is data (one row, loaded from
-- the configuration file's [retention] table). README.md, "Retention", tells the policy in words.
--
-- - a task knows when it finished (finished_at, kept by the transition trigger) and whether its
--   history was pruned (history_pruned_at), so the age of finished work is read from one indexed
--   column, whatever later updates touch the row;
-- - the history table stays append-only for every role: only the maintenance functions below, owned
--   by the schema owner (SECURITY DEFINER), may delete from it, and only what the policy allows;
--   they are also the services' only way to delete work rows (0007 took DELETE from their role);
-- - lineage is kept: a task is deleted only when it has no product left, and a product only when no
--   input was made from it, so every kept product keeps the tasks, inputs and products it came from;
-- - references that must not block deleting old rows: a task's dependency and plan, and an alert's
--   task, become NULL when what they point to is deleted.

ALTER TABLE hrwsi.processing_task
    ADD COLUMN finished_at timestamptz,        -- when it reached a final state (NULL while open)
    ADD COLUMN history_pruned_at timestamptz;  -- when retention deleted its history and attempts

-- Tasks already final: their last change is when they finished.
UPDATE hrwsi.processing_task SET finished_at = updated_at WHERE state IN ('processed', 'terminated', 'cancelled');

CREATE OR REPLACE FUNCTION hrwsi.enforce_task_transition() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    final boolean;
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        SELECT s.is_final INTO final
        FROM hrwsi.task_transition t JOIN hrwsi.task_state s ON s.name = t.to_state
        WHERE t.from_state = OLD.state AND t.to_state = NEW.state;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'task %: the transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'task_transition_is_allowed',
                      HINT = (SELECT 'from ' || OLD.state || ' a task may go to: '
                                     || coalesce(string_agg(to_state, ', ' ORDER BY to_state), 'nothing (final)')
                              FROM hrwsi.task_transition WHERE from_state = OLD.state);
        END IF;
        -- Finished now, or open again (an operator's retry): its age for retention starts afresh.
        NEW.finished_at := CASE WHEN final THEN now() END;
        NEW.history_pruned_at := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- Finding old finished tasks: by state and age; those whose history is still there, by age.
CREATE INDEX processing_task_finished_idx ON hrwsi.processing_task (state, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX processing_task_history_to_prune_idx ON hrwsi.processing_task (finished_at)
    WHERE finished_at IS NOT NULL AND history_pruned_at IS NULL;
-- A plan is deleted only when no open task holds it (a product listed by a group input is found by
-- multi_input_member_path_idx, migration 0009).
CREATE INDEX processing_task_plan_idx ON hrwsi.processing_task (plan_id) WHERE plan_id IS NOT NULL;
CREATE INDEX landing_file_done_idx ON hrwsi.landing_file (updated_at)
    WHERE state IN ('previously_received', 'failed');

ALTER TABLE hrwsi.processing_task
    DROP CONSTRAINT task_dependency_must_exist,
    ADD CONSTRAINT task_dependency_must_exist FOREIGN KEY (depends_on)
        REFERENCES hrwsi.processing_task (id) ON DELETE SET NULL,
    DROP CONSTRAINT processing_task_plan_id_fkey,
    ADD CONSTRAINT task_plan_must_exist FOREIGN KEY (plan_id) REFERENCES hrwsi.plan (id) ON DELETE SET NULL;
ALTER TABLE hrwsi.alert
    DROP CONSTRAINT alert_task_id_fkey,
    ADD CONSTRAINT alert_task_must_exist FOREIGN KEY (task_id) REFERENCES hrwsi.processing_task (id)
        ON DELETE SET NULL;

-- ---------------------------------------------------------------------------------------------
-- The policy: one row. An interval that is NULL keeps that kind of row forever.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.retention_policy (
    id             boolean PRIMARY KEY DEFAULT true CONSTRAINT retention_policy_has_a_single_row CHECK (id),
    enabled        boolean NOT NULL DEFAULT true,   -- false: the orchestrator does not prune (hrwsi prune does)
    task_history   interval DEFAULT interval '7 days'
        CONSTRAINT retention_task_history_is_positive CHECK (task_history > interval '0'),
    finished_tasks interval DEFAULT interval '30 days'
        CONSTRAINT retention_finished_tasks_is_positive CHECK (finished_tasks > interval '0'),
    products       interval
        CONSTRAINT retention_products_is_positive CHECK (products > interval '0'),
    plans          interval DEFAULT interval '7 days'
        CONSTRAINT retention_plans_is_positive CHECK (plans > interval '0'),
    alerts         interval DEFAULT interval '30 days'
        CONSTRAINT retention_alerts_is_positive CHECK (alerts > interval '0'),
    landing_files  interval DEFAULT interval '30 days'
        CONSTRAINT retention_landing_files_is_positive CHECK (landing_files > interval '0'),
    dead_services  interval NOT NULL DEFAULT interval '1 hour'
        CONSTRAINT retention_dead_services_is_positive CHECK (dead_services > interval '0'),
    batch_size     integer NOT NULL DEFAULT 500
        CONSTRAINT retention_batch_size_between_1_and_10000 CHECK (batch_size BETWEEN 1 AND 10000),
    run_every      interval NOT NULL DEFAULT interval '10 minutes'
        CONSTRAINT retention_run_every_is_at_least_10_seconds CHECK (run_every >= interval '10 seconds'),
    last_run_at    timestamptz,   -- claimed by the orchestrator replica that prunes
    last_report    jsonb          -- what the last run deleted
);
INSERT INTO hrwsi.retention_policy (id) VALUES (true);

-- ---------------------------------------------------------------------------------------------
-- The history stays append-only: UPDATE is always refused, DELETE only inside the maintenance
-- functions below (they set hrwsi.pruning_history for their own statement, and run as the owner).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION hrwsi.refuse_history_change() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hrwsi.pruning_history', true) = 'on'
       AND current_user = (SELECT tableowner FROM pg_tables WHERE schemaname = 'hrwsi' AND tablename = 'task_event') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'hrwsi.task_event is append-only: its rows are the status history'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old history is deleted by the retention policy only (hrwsi prune; README.md, Retention)';
END $$;

CREATE FUNCTION hrwsi.delete_history_and_attempts(ids bigint[]) RETURNS TABLE (kind text, path text, root text)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
-- The one place that deletes history: the given tasks' events and jobs; returned are the attempts'
-- log files and the output directories of attempts that did not succeed. Callable by its owner only
-- (the two maintenance functions below, which run as the owner and choose the tasks by the policy).
#variable_conflict use_column
BEGIN
    PERFORM set_config('hrwsi.pruning_history', 'on', true);
    DELETE FROM hrwsi.task_event WHERE task_id = ANY (ids);
    PERFORM set_config('hrwsi.pruning_history', 'off', true);
    RETURN QUERY
        WITH gone AS (DELETE FROM hrwsi.job WHERE task_id = ANY (ids) RETURNING log_path, output_dir, state)
        SELECT 'log', log_path, NULL::text FROM gone WHERE log_path IS NOT NULL
        UNION ALL SELECT 'output_dir', output_dir, NULL FROM gone WHERE state <> 'processed' AND output_dir IS NOT NULL;
END $$;

CREATE FUNCTION hrwsi.prune_task_history(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch: the history and attempts (jobs) of tasks finished longer ago than task_history. The
-- task row stays (with its products); returned: the attempts' log files, and the output directories
-- of attempts that did not succeed, for the caller to delete.
#variable_conflict use_column
DECLARE
    keep interval := (SELECT task_history FROM hrwsi.retention_policy);
    ids bigint[];
BEGIN
    IF keep IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(id) INTO ids FROM (
        SELECT id FROM hrwsi.processing_task
        WHERE finished_at < now() - keep AND history_pruned_at IS NULL
        ORDER BY finished_at LIMIT batch FOR UPDATE SKIP LOCKED) s;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    UPDATE hrwsi.processing_task SET history_pruned_at = now() WHERE id = ANY (ids);
    RETURN QUERY SELECT * FROM hrwsi.delete_history_and_attempts(ids);
    RETURN QUERY SELECT 'task', NULL::text, NULL::text FROM unnest(ids);
END $$;

CREATE FUNCTION hrwsi.prune_finished_tasks(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
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
    WITH gone AS (DELETE FROM hrwsi.input WHERE id = ANY (inputs) RETURNING input_path)
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

CREATE FUNCTION hrwsi.prune_products(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of product rows older than products that no input was made from (chaining) and no
-- group input lists: a kept product's ancestors always have a child, so they stay. Only chained
-- products (the harvester has seen them). Their files are not touched: they are the archive's.
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT p.id FROM hrwsi.product p
            WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy)
              AND p.chained_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)
            ORDER BY p.id LIMIT batch
            FOR UPDATE OF p SKIP LOCKED),
        gone AS (DELETE FROM hrwsi.product p USING doomed WHERE p.id = doomed.id RETURNING p.id)
        SELECT 'product', NULL::text, NULL::text FROM gone;
END $$;

CREATE FUNCTION hrwsi.prune_plans(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of stored plans older than plans that no open task holds (finished tasks keep their
-- planned times; their plan_id becomes NULL).
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT p.id FROM hrwsi.plan p
            WHERE p.created_at < now() - (SELECT plans FROM hrwsi.retention_policy)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t WHERE t.plan_id = p.id AND t.finished_at IS NULL)
            ORDER BY p.id LIMIT batch
            FOR UPDATE OF p SKIP LOCKED),
        gone AS (DELETE FROM hrwsi.plan p USING doomed WHERE p.id = doomed.id RETURNING p.id)
        SELECT 'plan', NULL::text, NULL::text FROM gone;
END $$;

CREATE FUNCTION hrwsi.prune_alerts(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of alerts, sent or not, older than alerts.
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT a.id FROM hrwsi.alert a
            WHERE a.created_at < now() - (SELECT alerts FROM hrwsi.retention_policy)
            ORDER BY a.id LIMIT batch
            FOR UPDATE OF a SKIP LOCKED),
        gone AS (DELETE FROM hrwsi.alert a USING doomed WHERE a.id = doomed.id RETURNING a.id)
        SELECT 'alert', NULL::text, NULL::text FROM gone;
END $$;

CREATE FUNCTION hrwsi.prune_landing_files(batch integer) RETURNS TABLE (kind text, path text, root text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of landing-file rows older than landing_files of re-deliveries (their file was moved
-- aside into the work directory: returned as a 'work_file' to delete) and failures. A prepared
-- file goes with its input (prune_finished_tasks).
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT f.id FROM hrwsi.landing_file f
            WHERE f.state IN ('previously_received', 'failed')
              AND f.updated_at < now() - (SELECT landing_files FROM hrwsi.retention_policy)
            ORDER BY f.updated_at LIMIT batch
            FOR UPDATE OF f SKIP LOCKED),
        gone AS (
            DELETE FROM hrwsi.landing_file f USING doomed, hrwsi.harvest_source s
            WHERE f.id = doomed.id AND s.name = f.source
            RETURNING f.state, f.prepared_path, s.config ->> 'work_directory' AS work_directory)
        SELECT 'landing_file', NULL::text, NULL::text FROM gone
        UNION ALL
        SELECT 'work_file', prepared_path, work_directory FROM gone
        WHERE state = 'previously_received' AND prepared_path IS NOT NULL;
END $$;

CREATE FUNCTION hrwsi.prune_dead_services() RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- Instances whose heartbeat stopped longer ago than dead_services (a live one beats every few
-- seconds): their processes are gone, and so are their leases.
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH gone AS (
            DELETE FROM hrwsi.service_instance
            WHERE heartbeat_at < now() - (SELECT dead_services FROM hrwsi.retention_policy)
            RETURNING id)
        SELECT 'service', id, NULL::text FROM gone;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Privileges: services apply the policy (they may not change it); everyone may read it.
-- ---------------------------------------------------------------------------------------------
REVOKE ALL ON hrwsi.retention_policy FROM PUBLIC;
GRANT SELECT ON hrwsi.retention_policy TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT UPDATE (last_run_at, last_report) ON hrwsi.retention_policy TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.prune_task_history(integer), hrwsi.prune_finished_tasks(integer),
    hrwsi.prune_products(integer), hrwsi.prune_plans(integer), hrwsi.prune_alerts(integer),
    hrwsi.prune_landing_files(integer), hrwsi.prune_dead_services(), hrwsi.delete_history_and_attempts(bigint[])
    FROM PUBLIC;
-- The services delete no work themselves (migration 0007): these functions, run as the owner, are
-- their only way, and they delete only what the policy allows.
GRANT EXECUTE ON FUNCTION hrwsi.prune_task_history(integer), hrwsi.prune_finished_tasks(integer),
    hrwsi.prune_products(integer), hrwsi.prune_plans(integer), hrwsi.prune_alerts(integer),
    hrwsi.prune_landing_files(integer), hrwsi.prune_dead_services() TO hrwsi_service;
