-- hrwsi schema, version 30: the check of a job's task reads each task through its key, whatever
-- the plan of the session was made with (issue 15: 100,000 inputs in at most 10x the time of
-- 10,000).
--
-- Migration 0028 checks the jobs a statement inserts once per statement: it locks the tasks they
-- name (unless this transaction changed them already) and looks for one that does not exist. Both
-- were joins of the statement's new rows with the task table. A trigger's plans are made once per
-- session and kept until the table's statistics change; the launcher's dispatch session made them
-- while the table was small (a few hundred tasks, a first burst of 2,000 jobs), and reading the
-- whole table was then the cheaper plan. It stayed: during a burst of 100,000 every dispatch call
-- of 2,000 jobs read every task there was (100,301 rows in 46 ms at the 45th call;
-- auto_explain), each call slower than the one before (the calls' time per 10,000 tasks grew from
-- 0.63 to 0.82 s, 6.9 s for the 50 calls). Each job's task is now read by a sub-select of its
-- own, which PostgreSQL never turns into a join: one probe of the task's key per job, whatever
-- the statistics (5.1 s for the same 50 calls, 0.46-0.55 s per 10,000 from the first to the last).
-- The lock, the check, their error and message are unchanged.

CREATE OR REPLACE FUNCTION hrwsi.refuse_a_job_of_a_missing_task() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through its key, never by reading the table whole, however small it was when planned)
SET enable_seqscan = off AS $$
DECLARE
    missing bigint;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        IF NOT EXISTS (SELECT 1 FROM processing_task t WHERE t.id = NEW.task_id FOR KEY SHARE) THEN
            missing := NEW.task_id;
        END IF;
    ELSE
        -- Each task read through its key, once per job (a sub-select per row, never a join, and
        -- no sequential scan): the plans are made once per session and kept, and a join planned
        -- while the task table was small read the whole table in every later statement
        -- (migration 0030).
        PERFORM (SELECT 1 FROM processing_task t
                 WHERE t.id = n.task_id AND t.xmin <> pg_current_xact_id()::xid FOR KEY SHARE OF t)
        FROM new_rows n;
        SELECT n.task_id INTO missing FROM new_rows n
        WHERE (SELECT t.id FROM processing_task t WHERE t.id = n.task_id) IS NULL
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "job" violates foreign key constraint "job_task_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  DETAIL = format('Key (task_id)=(%s) is not present in table "processing_task".', missing);
    END IF;
    RETURN CASE WHEN TG_LEVEL = 'ROW' THEN NEW END;
END $$;
