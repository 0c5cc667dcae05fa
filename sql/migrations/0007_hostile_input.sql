-- hrwsi schema, version 7: what enters is checked where it enters (issue 14, hostile input).
--
-- A refusal names the rule it broke (the constraint name), so the data engineer knows what to fix.
-- Paths must be absolute, without surrounding white space, control characters or '..' segments,
-- and short enough for the unique indexes that guard them (a btree entry holds at most ~2,700
-- bytes: a longer path failed with an unclear index error). Numbers must be numbers: PostgreSQL's
-- numeric NaN passes `cpu > 0` (NaN sorts above every number), and intervals may be infinite.
-- Roles: the services change no configuration and delete nothing but their own leases; the
-- history and the inputs refuse TRUNCATE, even from their owner (retention deletes in batches).

-- ---------------------------------------------------------------------------------------------
-- Paths
-- ---------------------------------------------------------------------------------------------
ALTER TABLE hrwsi.input DROP CONSTRAINT input_path_is_at_most_4096_characters;
ALTER TABLE hrwsi.input
    ADD CONSTRAINT input_path_is_at_most_2000_bytes CHECK (octet_length(input_path) <= 2000),
    ADD CONSTRAINT input_path_has_no_surrounding_white_space CHECK (btrim(input_path) = '' OR input_path = btrim(input_path)),
    ADD CONSTRAINT input_path_has_no_control_characters CHECK (input_path !~ '[[:cntrl:]]'),
    ADD CONSTRAINT input_path_is_absolute_or_a_multi_input_group
        CHECK (btrim(input_path) = '' OR left(input_path, 1) = '/'
               OR (source = 'multi_input' AND input_path LIKE 'multi_input/%')),
    ADD CONSTRAINT input_path_has_no_dot_dot_segment CHECK (input_path !~ '(^|/)\.\.(/|$)'),
    ADD CONSTRAINT input_published_at_is_after_1950 CHECK (published_at >= timestamptz '1950-01-01 00:00Z');

ALTER TABLE hrwsi.product
    ADD CONSTRAINT product_path_is_at_most_2000_bytes CHECK (octet_length(path) <= 2000),
    ADD CONSTRAINT product_path_is_absolute_without_control_characters
        CHECK (left(path, 1) = '/' AND path !~ '[[:cntrl:]]' AND path !~ '(^|/)\.\.(/|$)');

ALTER TABLE hrwsi.multi_input_member
    ADD CONSTRAINT multi_input_member_path_has_no_control_characters CHECK (member_path !~ '[[:cntrl:]]');

-- ---------------------------------------------------------------------------------------------
-- Numbers and durations
-- ---------------------------------------------------------------------------------------------
ALTER TABLE hrwsi.flavour
    ADD CONSTRAINT flavour_cpu_is_a_number CHECK (cpu <> 'NaN'::numeric);
ALTER TABLE hrwsi.processing_routine
    ADD CONSTRAINT routine_cpu_is_a_number CHECK (cpu <> 'NaN'::numeric),
    ADD CONSTRAINT routine_expected_duration_is_at_most_30_days
        CHECK (expected_duration <= interval '30 days'),
    ADD CONSTRAINT routine_timeout_is_at_most_30_days CHECK (timeout <= interval '30 days');
ALTER TABLE hrwsi.budget
    ADD CONSTRAINT budget_cpu_max_is_a_number CHECK (cpu_max <> 'NaN'::numeric);
ALTER TABLE hrwsi.processing_condition
    ADD CONSTRAINT condition_windows_are_finite
        CHECK (publication_window < interval '100 years' AND measurement_window < interval '100 years'),
    ADD CONSTRAINT condition_deadline_is_at_most_366_days CHECK (deadline <= interval '366 days');

-- ---------------------------------------------------------------------------------------------
-- TRUNCATE: the history and the inputs are never emptied in one blow (retention deletes old
-- finished rows in batches and keeps every product's lineage).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION hrwsi.refuse_truncate() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of hrwsi.% is refused: it would lose the history and the lineage of products',
        TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old finished rows are removed by retention (hrwsi prune), which keeps every kept product''s lineage';
END $$;
CREATE TRIGGER task_event_refuses_truncate BEFORE TRUNCATE ON hrwsi.task_event
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_truncate();
CREATE TRIGGER input_refuses_truncate BEFORE TRUNCATE ON hrwsi.input
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_truncate();
CREATE TRIGGER processing_task_refuses_truncate BEFORE TRUNCATE ON hrwsi.processing_task
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_truncate();
CREATE TRIGGER job_refuses_truncate BEFORE TRUNCATE ON hrwsi.job
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_truncate();
CREATE TRIGGER product_refuses_truncate BEFORE TRUNCATE ON hrwsi.product
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_truncate();
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_truncate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.refuse_truncate() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- ---------------------------------------------------------------------------------------------
-- Roles, as the README says: the services change no configuration (flavours, workers other than
-- their active flag, routines, conditions, budget) and delete nothing but their own leases and
-- the bookkeeping of landing files and multi-input members.
-- ---------------------------------------------------------------------------------------------
REVOKE INSERT ON hrwsi.worker, hrwsi.flavour FROM hrwsi_service;
REVOKE UPDATE (cpu, ram_mb, disk_mb) ON hrwsi.flavour FROM hrwsi_service;
REVOKE UPDATE (flavour) ON hrwsi.worker FROM hrwsi_service;
REVOKE DELETE ON hrwsi.input, hrwsi.processing_task, hrwsi.job, hrwsi.product, hrwsi.plan, hrwsi.alert
    FROM hrwsi_service;
