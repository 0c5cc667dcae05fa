-- hrwsi schema, version 9: what the web dashboard (`hrwsi web`) and the metrics endpoints read.
-- - hrwsi.dashboard_task: tasks with their lane, the ONE place where the lane is chosen;
-- - indexes that keep the dashboard's pages fast with 1,000,000 tasks (paginated by id, filtered
--   by routine and state; throughput over the last hours; lineage through multi-input members);
-- - hrwsi.operator_action: who did which operator action from the dashboard, and how it ended.
-- See docs/adr/0007-web-dashboard.md. benchmarks/web_dashboard.py measures the pages on 1,000,000 tasks.

-- ---------------------------------------------------------------------------------------------
-- Tasks as the dashboard and the metrics read them, with their lane (ADR 0009). Every dashboard
-- and metrics query reads tasks through this view, so the lane shown and counted is chosen in
-- this one place: a later rule (e.g. a campaign's lane) is one `CREATE OR REPLACE VIEW`.
-- ---------------------------------------------------------------------------------------------
CREATE VIEW hrwsi.dashboard_task AS
SELECT t.id, t.input_id, t.routine, t.worker, t.planned_start, t.planned_end, t.depends_on, t.state,
       t.state_reason, t.attempts, t.failures, t.not_before, t.plan_id, t.created_at, t.updated_at,
       t.lane, t.deadline_at
FROM hrwsi.processing_task t;

-- ---------------------------------------------------------------------------------------------
-- Indexes.
-- ---------------------------------------------------------------------------------------------

-- The task list filtered by routine or by state, newest first, one page at a time (keyset on
-- id): a rare routine or state (terminated) among a million processed tasks is one index range,
-- not a scan of the table. Both filters together use whichever is rarer.
CREATE INDEX processing_task_routine_id_idx ON hrwsi.processing_task (routine, id);
CREATE INDEX processing_task_state_id_idx ON hrwsi.processing_task (state, id);

-- Throughput and recent failures: jobs that ended in the last hours, without reading the others.
CREATE INDEX job_finished_at_idx ON hrwsi.job (finished_at) WHERE finished_at IS NOT NULL;

-- Lineage downstream of a product that became a member of a multi-input group input.
CREATE INDEX multi_input_member_path_idx ON hrwsi.multi_input_member (member_path);

-- The task list filtered by tile, newest first.
CREATE INDEX input_tile_id_idx ON hrwsi.input (tile, id) WHERE tile IS NOT NULL;

-- The search box: a piece of an input's file name (the last part of its path), any case. A
-- trigram index finds a rare one among a million inputs in milliseconds instead of seconds; it
-- costs about 25 microseconds per inserted input (measured: +0.25 s on a 10,000-input INSERT).
-- pg_trgm ships with PostgreSQL's contrib; where it cannot be created (not installed, or this
-- role may not create extensions) the index is left out and the search scans, as it says.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX input_file_name_trigram_idx ON hrwsi.input
        USING gin (lower(substring(input_path FROM '[^/]*$')) gin_trgm_ops);
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported OR undefined_object THEN
    RAISE NOTICE 'no trigram index on input file names (%): the dashboard''s file name search scans instead',
        SQLERRM;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Audit of operator actions taken through the dashboard or its API: who, from where, what, and
-- the database's answer (the operator functions' sentence, or why it was refused). No foreign key:
-- the record outlives the task it names (retention may prune tasks, not what an operator did).
-- Append-only for the services' role: it may insert and read, never change or delete.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE hrwsi.operator_action (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL CONSTRAINT operator_action_actor_is_not_empty CHECK (btrim(actor) <> ''),
    via       text NOT NULL CONSTRAINT operator_action_via_is_web_api_or_cli CHECK (via IN ('web', 'api', 'cli')),
    action    text NOT NULL CONSTRAINT operator_action_is_known
        CHECK (action IN ('retry_task', 'cancel_task', 'hold_task', 'release_task', 'hold_routine', 'release_routine')),
    target    text NOT NULL CONSTRAINT operator_action_target_is_not_empty CHECK (btrim(target) <> ''),
    succeeded boolean NOT NULL,
    outcome   text NOT NULL,
    client    text            -- the client's address as the dashboard saw it
);
CREATE INDEX operator_action_target_idx ON hrwsi.operator_action (target, id);

GRANT SELECT ON hrwsi.dashboard_task, hrwsi.operator_action TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT INSERT ON hrwsi.operator_action TO hrwsi_service;
