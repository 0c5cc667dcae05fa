-- hrwsi schema, version 28: a job's task is checked once per statement, not by a foreign key for
-- every job (issue 15).
--
-- The key locked the task for every job inserted: a query of its own and a lock written into the
-- task's row (with its WAL record) for every job, although the claim (hrwsi.dispatch) inserts each
-- job right after updating its task in the same statement, whose lock holds the task already (the
-- server's time for five dispatch calls of 2,000 tasks, three pairs: 530-595 ms with the key,
-- 497-525 ms without it). What it guarded is kept:
-- - every INSERT of jobs is checked once per statement: the tasks its jobs name are locked FOR KEY
--   SHARE, except those this transaction changed already (the claim's lock holds them), and a job
--   naming a task that does not exist is refused with the key's name and message; an UPDATE of a
--   job naming another task is checked alike;
-- - removing a task that jobs name, or giving it a new id, is refused with the key's name, once per
--   statement, after the rows' locks (under REPEATABLE READ or SERIALIZABLE removing a task is
--   refused: the check could not see jobs inserted meanwhile).

ALTER TABLE hrwsi.job DROP CONSTRAINT job_task_must_exist;

-- A job names its task without a foreign key (migration 0028): the key ran a query and wrote a lock
-- into the task's row for every job inserted, although the claim inserts each job right after
-- updating its task in the same statement (whose lock holds it already). Checked once per
-- statement instead, with the key's name and message: the tasks a statement's jobs name are
-- locked as the key locked them, except those this transaction changed already (their own lock,
-- the claim's, holds them), then each must exist. An UPDATE naming another task is checked alike.
CREATE FUNCTION hrwsi.refuse_a_job_of_a_missing_task() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    missing bigint;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF NOT EXISTS (SELECT 1 FROM processing_task t WHERE t.id = NEW.task_id FOR KEY SHARE) THEN
            missing := NEW.task_id;
        END IF;
    ELSE
        PERFORM 1 FROM processing_task t
        WHERE t.id IN (SELECT n.task_id FROM new_rows n) AND t.xmin <> pg_current_xact_id()::xid
        FOR KEY SHARE OF t;
        SELECT n.task_id INTO missing FROM new_rows n
        WHERE NOT EXISTS (SELECT 1 FROM processing_task t WHERE t.id = n.task_id)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "job" violates foreign key constraint "job_task_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  DETAIL = format('Key (task_id)=(%s) is not present in table "processing_task".', missing);
    END IF;
    RETURN CASE WHEN TG_LEVEL = 'ROW' THEN NEW END;
END $$;
CREATE TRIGGER job_names_a_task_that_exists AFTER INSERT ON hrwsi.job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_a_job_of_a_missing_task();
CREATE TRIGGER job_names_a_task_that_exists_updated BEFORE UPDATE OF task_id ON hrwsi.job
    FOR EACH ROW WHEN (NEW.task_id IS DISTINCT FROM OLD.task_id)
    EXECUTE FUNCTION hrwsi.refuse_a_job_of_a_missing_task();

-- What the job's key refused is refused here (migration 0028): removing a task that jobs name
-- (retention removes a task after its attempts), or giving it a new id; once per statement, after
-- the rows' locks (under a stricter isolation than READ COMMITTED the check could not see jobs
-- inserted meanwhile: removing a task is refused there).
CREATE FUNCTION hrwsi.refuse_removing_tasks_jobs_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    named_task bigint;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT 1 FROM job j WHERE j.task_id = OLD.id) THEN
            RAISE EXCEPTION 'task % cannot change its id while jobs name it', OLD.id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist';
        END IF;
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a task is removed only in a READ COMMITTED transaction (the default)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for its jobs cannot see jobs created meanwhile';
    END IF;
    SELECT o.id, (SELECT count(*) FROM job j WHERE j.task_id = o.id) INTO named_task, named
    FROM old_rows o
    WHERE EXISTS (SELECT 1 FROM job j WHERE j.task_id = o.id)
    ORDER BY o.id LIMIT 1;
    IF named_task IS NOT NULL THEN
        RAISE EXCEPTION 'task % cannot be removed while % job(s) name it', named_task, named
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  HINT = 'jobs are the record of what ran: retention (`hrwsi prune`) removes a task with its jobs';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_task_named_by_jobs_removed AFTER DELETE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_removing_tasks_jobs_name();
CREATE TRIGGER processing_task_named_by_jobs_renumbered AFTER UPDATE OF id ON hrwsi.processing_task
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION hrwsi.refuse_removing_tasks_jobs_name();
-- Trigger functions run whoever fires them; no role calls them otherwise.
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_a_job_of_a_missing_task(), hrwsi.refuse_removing_tasks_jobs_name() FROM PUBLIC;
