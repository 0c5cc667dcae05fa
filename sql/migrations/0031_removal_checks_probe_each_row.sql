-- hrwsi schema, version 31: the checks that refuse removing a task that jobs name, and an input
-- that tasks name, read the rows through their keys, whatever the plan of the session was made
-- with (issue 15; the same hazard as migration 0030).
--
-- Both checks run once per DELETE statement (migrations 0026, 0028) and looked for a named row
-- with EXISTS over the statement's old rows: PostgreSQL turns that into a join of the old rows with
-- the job (or task) table. A trigger's plans are made once per session and kept until the table's
-- statistics change; a session that first removed rows while the tables were small read them whole
-- (the cheaper plan then), and kept doing so: with plans made on 290 jobs and 300 tasks, removing
-- five tasks and their inputs after 20,000 more of each read all 20,290 jobs and all 20,290
-- tasks. Retention removes in batches from one long session (the orchestrator's). Each removed
-- row is now looked up by a sub-select of its own, which PostgreSQL never turns into a join, and
-- the functions have `enable_seqscan = off` (a sub-select planned on a table of a few pages would
-- otherwise scan it once per row): one probe of the index per removed row. The errors, their
-- messages, constraint names and hints are unchanged.

CREATE OR REPLACE FUNCTION hrwsi.refuse_removing_tasks_jobs_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through the job's key to its task, never by reading the table whole, however small it was
-- when planned)
SET enable_seqscan = off AS $$
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
    -- One probe per removed task (a sub-select per row, never a join: migration 0031).
    SELECT o.id, (SELECT count(*) FROM job j WHERE j.task_id = o.id) INTO named_task, named
    FROM old_rows o
    WHERE (SELECT j.id FROM job j WHERE j.task_id = o.id LIMIT 1) IS NOT NULL
    ORDER BY o.id LIMIT 1;
    IF named_task IS NOT NULL THEN
        RAISE EXCEPTION 'task % cannot be removed while % job(s) name it', named_task, named
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  HINT = 'jobs are the record of what ran: retention (`hrwsi prune`) removes a task with its jobs';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.refuse_removing_inputs_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through the task's key to its input, never by reading the table whole, however small it
-- was when planned)
SET enable_seqscan = off AS $$
DECLARE
    named_input bigint;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT 1 FROM processing_task t WHERE t.input_id = OLD.id) THEN
            RAISE EXCEPTION 'input % cannot change its id while tasks name it', OLD.id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist';
        END IF;
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    -- After the rows' locks were taken: tasks of a transaction that held one are committed and
    -- seen. A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'an input is removed only in a READ COMMITTED transaction (the default)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for its tasks cannot see tasks created meanwhile';
    END IF;
    -- One probe per removed input (a sub-select per row, never a join: migration 0031).
    SELECT o.id, (SELECT count(*) FROM processing_task t WHERE t.input_id = o.id) INTO named_input, named
    FROM old_rows o
    WHERE (SELECT t.id FROM processing_task t WHERE t.input_id = o.id LIMIT 1) IS NOT NULL
    ORDER BY o.id LIMIT 1;
    IF named_input IS NOT NULL THEN
        RAISE EXCEPTION 'input % cannot be removed while % task(s) name it', named_input, named
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist',
                  HINT = 'tasks are the record of what ran: retention (`hrwsi prune`) removes an input with its tasks';
    END IF;
    RETURN NULL;
END $$;
