-- hrwsi schema, version 1: reference tables, the work tables, the task/job state machines,
-- the status history and the notification triggers.
--
-- Constraint names are part of the user interface: PostgreSQL prints them in every refusal, so
-- each one says what must be true ("input_tile_is_an_mgrs_code"), not where it lives.

CREATE SCHEMA IF NOT EXISTS hrwsi;

-- ---------------------------------------------------------------------------------------------
-- Reference tables: what can run, where, and under which rules.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE hrwsi.flavour (
    name    text PRIMARY KEY CONSTRAINT flavour_name_is_not_empty CHECK (btrim(name) <> ''),
    cpu     numeric NOT NULL CONSTRAINT flavour_cpu_is_positive CHECK (cpu > 0),
    ram_mb  integer NOT NULL CONSTRAINT flavour_ram_mb_is_positive CHECK (ram_mb > 0),
    disk_mb integer NOT NULL CONSTRAINT flavour_disk_mb_is_positive CHECK (disk_mb > 0)
);

CREATE TABLE hrwsi.worker (
    name       text PRIMARY KEY CONSTRAINT worker_name_is_not_empty CHECK (btrim(name) <> ''),
    flavour    text NOT NULL CONSTRAINT worker_flavour_must_exist REFERENCES hrwsi.flavour (name),
    active     boolean NOT NULL DEFAULT true,
    node_id    text,          -- the Nomad node ID when synced from Nomad
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_flavour_idx ON hrwsi.worker (flavour);

-- Budgets over everything running at one moment (one row; NULL means unlimited).
CREATE TABLE hrwsi.budget (
    id             boolean PRIMARY KEY DEFAULT true CONSTRAINT budget_has_a_single_row CHECK (id),
    cpu_max        numeric CONSTRAINT budget_cpu_max_is_positive CHECK (cpu_max > 0),
    ram_max_mb     bigint  CONSTRAINT budget_ram_max_mb_is_positive CHECK (ram_max_mb > 0),
    storage_max_mb bigint  CONSTRAINT budget_storage_max_mb_is_positive CHECK (storage_max_mb > 0),
    vm_max         integer CONSTRAINT budget_vm_max_is_positive CHECK (vm_max > 0)
);
INSERT INTO hrwsi.budget (id) VALUES (true);

CREATE TABLE hrwsi.processing_routine (
    name                text PRIMARY KEY CONSTRAINT routine_name_is_not_empty CHECK (btrim(name) <> ''),
    cpu                 numeric NOT NULL CONSTRAINT routine_cpu_is_positive CHECK (cpu > 0),
    ram_mb              integer NOT NULL CONSTRAINT routine_ram_mb_is_positive CHECK (ram_mb > 0),
    storage_mb          integer NOT NULL CONSTRAINT routine_storage_mb_is_positive CHECK (storage_mb > 0),
    expected_duration   interval NOT NULL
        CONSTRAINT routine_expected_duration_is_positive CHECK (expected_duration > interval '0'),
    timeout             interval CONSTRAINT routine_timeout_is_positive CHECK (timeout > interval '0'),
    image               text,
    command             text[],
    input_product_type  text NOT NULL CONSTRAINT routine_input_product_type_is_not_empty
        CHECK (btrim(input_product_type) <> ''),
    output_product_type text NOT NULL CONSTRAINT routine_output_product_type_is_not_empty
        CHECK (btrim(output_product_type) <> ''),
    max_attempts        integer NOT NULL DEFAULT 3
        CONSTRAINT routine_max_attempts_between_1_and_100 CHECK (max_attempts BETWEEN 1 AND 100),
    flavour             text CONSTRAINT routine_flavour_must_exist REFERENCES hrwsi.flavour (name),
    -- A time-series routine (MAJA-like) needs the previous task of the same tile processed first.
    sequential_per_tile boolean NOT NULL DEFAULT false,
    env                 jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT routine_env_is_a_json_object CHECK (jsonb_typeof(env) = 'object'),
    CONSTRAINT routine_has_an_image_or_a_command
        CHECK (image IS NOT NULL OR coalesce(cardinality(command), 0) > 0)
);

CREATE TABLE hrwsi.processing_condition (
    name               text PRIMARY KEY CONSTRAINT condition_name_is_not_empty CHECK (btrim(name) <> ''),
    routine            text NOT NULL CONSTRAINT condition_routine_must_exist
        REFERENCES hrwsi.processing_routine (name),
    -- Freshness rules: an input older than these windows is refused by the harvester's sources.
    publication_window interval CONSTRAINT condition_publication_window_is_positive
        CHECK (publication_window > interval '0'),
    measurement_window interval CONSTRAINT condition_measurement_window_is_positive
        CHECK (measurement_window > interval '0'),
    tiles              text[],   -- allow-list; NULL means every tile
    active             boolean NOT NULL DEFAULT true
);
CREATE INDEX processing_condition_routine_idx ON hrwsi.processing_condition (routine);

-- ---------------------------------------------------------------------------------------------
-- Work tables.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE hrwsi.input (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    processing_condition text NOT NULL CONSTRAINT input_processing_condition_must_exist
        REFERENCES hrwsi.processing_condition (name),
    input_path           text NOT NULL CONSTRAINT input_path_is_not_empty CHECK (btrim(input_path) <> '')
        CONSTRAINT input_path_is_at_most_4096_characters CHECK (length(input_path) <= 4096),
    tile                 text CONSTRAINT input_tile_is_an_mgrs_code_like_32tpr CHECK (tile ~ '^[0-9]{2}[A-Z]{3}$'),
    mission              text CONSTRAINT input_mission_is_not_empty CHECK (btrim(mission) <> ''),
    measured_at          timestamptz,
    published_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    source               text NOT NULL DEFAULT 'sql',   -- 'sql', 'chaining', or a harvester source name
    product_id           bigint,                        -- the product this input was chained from
    CONSTRAINT input_measured_at_is_not_after_published_at CHECK (measured_at <= published_at),
    CONSTRAINT input_measured_at_is_after_1950 CHECK (measured_at >= timestamptz '1950-01-01 00:00Z'),
    CONSTRAINT input_is_unique_per_condition_and_path UNIQUE (processing_condition, input_path)
);
CREATE INDEX input_product_id_idx ON hrwsi.input (product_id) WHERE product_id IS NOT NULL;

-- Dates in the future are a typo, not a scene: refuse them with the clock of the database.
-- (A CHECK may not call now(); a trigger may.)
CREATE FUNCTION hrwsi.refuse_future_input_dates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.published_at > now() + interval '1 hour' THEN
        RAISE EXCEPTION 'input % is published in the future (published_at %)', NEW.input_path, NEW.published_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'input_published_at_is_not_in_the_future',
                  HINT = 'published_at and measured_at are timestamptz; give a time zone, e.g. 2024-05-01T10:00Z';
    END IF;
    IF NEW.measured_at > now() + interval '1 hour' THEN
        RAISE EXCEPTION 'input % is measured in the future (measured_at %)', NEW.input_path, NEW.measured_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'input_measured_at_is_not_in_the_future',
                  HINT = 'published_at and measured_at are timestamptz; give a time zone, e.g. 2024-05-01T10:00Z';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER input_refuse_future_dates BEFORE INSERT OR UPDATE OF published_at, measured_at ON hrwsi.input
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_future_input_dates();

-- A plan, stored with the figures that say how good it is.
CREATE TABLE hrwsi.plan (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    task_count    integer NOT NULL,
    makespan_s    double precision NOT NULL,
    lower_bound_s double precision NOT NULL,
    vms           integer NOT NULL,
    vm_hours      double precision NOT NULL,
    planning_s    double precision NOT NULL,
    figures       jsonb NOT NULL DEFAULT '{}'
);

-- Task states and the transitions the database allows (see docs/architecture.md for the drawing).
CREATE TABLE hrwsi.task_state (
    name        text PRIMARY KEY,
    is_final    boolean NOT NULL,
    description text NOT NULL
);
INSERT INTO hrwsi.task_state VALUES
    ('pending',    false, 'created; waiting for the orchestrator to plan it'),
    ('planned',    false, 'has a worker and a planned start; waiting for its dependency and free capacity'),
    ('dispatched', false, 'an attempt was handed to the backend'),
    ('queued',     false, 'the backend accepted the attempt but has no room for it yet'),
    ('running',    false, 'the attempt runs'),
    ('processed',  true,  'done; its products are registered'),
    ('on_hold',    false, 'held by an operator or by the failure policy; not planned until released'),
    ('terminated', true,  'failed too many times; never retried automatically'),
    ('cancelled',  true,  'cancelled by an operator');

CREATE TABLE hrwsi.task_transition (
    from_state text NOT NULL REFERENCES hrwsi.task_state (name),
    to_state   text NOT NULL REFERENCES hrwsi.task_state (name),
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO hrwsi.task_transition VALUES
    ('pending', 'planned'), ('pending', 'on_hold'), ('pending', 'cancelled'),
    ('planned', 'pending'), ('planned', 'dispatched'), ('planned', 'on_hold'),
    ('planned', 'cancelled'),
    ('dispatched', 'queued'), ('dispatched', 'running'), ('dispatched', 'processed'),
    ('dispatched', 'pending'), ('dispatched', 'terminated'), ('dispatched', 'cancelled'),
    ('queued', 'running'), ('queued', 'processed'), ('queued', 'pending'), ('queued', 'terminated'),
    ('queued', 'cancelled'),
    ('running', 'processed'), ('running', 'pending'), ('running', 'terminated'), ('running', 'cancelled'),
    ('running', 'queued'),
    ('on_hold', 'pending'), ('on_hold', 'cancelled'),
    ('terminated', 'pending'),   -- an operator's retry
    ('cancelled', 'pending');    -- an operator's retry

CREATE TABLE hrwsi.processing_task (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    input_id       bigint NOT NULL CONSTRAINT task_input_must_exist REFERENCES hrwsi.input (id),
    routine        text NOT NULL CONSTRAINT task_routine_must_exist REFERENCES hrwsi.processing_routine (name),
    worker         text CONSTRAINT task_worker_must_exist REFERENCES hrwsi.worker (name),
    planned_start  timestamptz,
    planned_end    timestamptz,
    depends_on     bigint CONSTRAINT task_dependency_must_exist REFERENCES hrwsi.processing_task (id),
    state          text NOT NULL DEFAULT 'pending' CONSTRAINT task_state_must_exist REFERENCES hrwsi.task_state (name),
    state_reason   text,          -- why it is in this state (e.g. why no plan is possible)
    attempts       integer NOT NULL DEFAULT 0 CONSTRAINT task_attempts_is_not_negative CHECK (attempts >= 0),
    failures       integer NOT NULL DEFAULT 0 CONSTRAINT task_failures_is_not_negative CHECK (failures >= 0),
    not_before     timestamptz,   -- retry backoff: not planned to start before this
    plan_id        bigint REFERENCES hrwsi.plan (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_is_unique_per_input UNIQUE (input_id),
    CONSTRAINT task_does_not_depend_on_itself CHECK (depends_on <> id),
    CONSTRAINT task_planned_has_a_worker_and_start
        CHECK (state NOT IN ('planned', 'dispatched', 'queued', 'running') OR (worker IS NOT NULL AND planned_start IS NOT NULL))
);
CREATE INDEX processing_task_open_state_idx ON hrwsi.processing_task (state)
    WHERE state NOT IN ('processed', 'terminated', 'cancelled');
CREATE INDEX processing_task_depends_on_idx ON hrwsi.processing_task (depends_on) WHERE depends_on IS NOT NULL;
CREATE INDEX processing_task_routine_idx ON hrwsi.processing_task (routine);
CREATE INDEX processing_task_worker_idx ON hrwsi.processing_task (worker);

CREATE FUNCTION hrwsi.enforce_task_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.task_transition
                       WHERE from_state = OLD.state AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'task %: the transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'task_transition_is_allowed',
                      HINT = (SELECT 'from ' || OLD.state || ' a task may go to: '
                                     || coalesce(string_agg(to_state, ', ' ORDER BY to_state), 'nothing (final)')
                              FROM hrwsi.task_transition WHERE from_state = OLD.state);
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER processing_task_enforce_transition BEFORE UPDATE ON hrwsi.processing_task
    FOR EACH ROW EXECUTE FUNCTION hrwsi.enforce_task_transition();

-- Job states: one row per attempt.
CREATE TABLE hrwsi.job_state (
    name        text PRIMARY KEY,
    is_final    boolean NOT NULL,
    description text NOT NULL
);
INSERT INTO hrwsi.job_state VALUES
    ('submitted',      false, 'recorded and being handed to the backend'),
    ('queued',         false, 'the backend has no room for it yet (reason in message)'),
    ('running',        false, 'running'),
    ('processed',      true,  'ended with exit code 0'),
    ('internal_error', true,  'the routine or the backend failed (HR-WSI code 110)'),
    ('external_error', true,  'the input or an external service was at fault (HR-WSI code 210)'),
    ('lost',           true,  'its worker, allocation or launcher vanished before it ended'),
    ('cancelled',      true,  'stopped by an operator');

CREATE TABLE hrwsi.job_transition (
    from_state text NOT NULL REFERENCES hrwsi.job_state (name),
    to_state   text NOT NULL REFERENCES hrwsi.job_state (name),
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO hrwsi.job_transition
SELECT f, t FROM unnest(ARRAY['submitted', 'queued', 'running']) f,
                 unnest(ARRAY['queued', 'running', 'processed', 'internal_error', 'external_error', 'lost', 'cancelled']) t
WHERE f <> t;

CREATE TABLE hrwsi.job (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id        bigint NOT NULL CONSTRAINT job_task_must_exist REFERENCES hrwsi.processing_task (id),
    attempt        integer NOT NULL CONSTRAINT job_attempt_is_positive CHECK (attempt >= 1),
    backend        text NOT NULL,
    backend_job_id text NOT NULL,   -- deterministic: hrwsi-<routine>-<task>-<attempt>
    worker         text,
    state          text NOT NULL DEFAULT 'submitted' CONSTRAINT job_state_must_exist REFERENCES hrwsi.job_state (name),
    exit_code      integer,
    message        text,
    owner          text,            -- the launcher instance following it
    log_path       text,
    output_dir     text,
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_is_unique_per_task_attempt UNIQUE (task_id, attempt),
    CONSTRAINT job_backend_job_id_is_unique UNIQUE (backend, backend_job_id)
);
CREATE INDEX job_active_idx ON hrwsi.job (state) WHERE state IN ('submitted', 'queued', 'running');

CREATE FUNCTION hrwsi.enforce_job_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
        SELECT 1 FROM hrwsi.job_transition WHERE from_state = OLD.state AND to_state = NEW.state) THEN
        RAISE EXCEPTION 'job % (task %): the transition % -> % is not allowed', OLD.id, OLD.task_id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_transition_is_allowed',
                  HINT = 'a job in a final state (processed, internal_error, external_error, lost, cancelled) never changes; retry the task instead';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER job_enforce_transition BEFORE UPDATE ON hrwsi.job
    FOR EACH ROW EXECUTE FUNCTION hrwsi.enforce_job_transition();

-- Append-only status history: one row per task state change, written by trigger.
CREATE TABLE hrwsi.task_event (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  bigint NOT NULL REFERENCES hrwsi.processing_task (id),
    state    text NOT NULL,
    reason   text,
    attempts integer NOT NULL,
    worker   text,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX task_event_task_idx ON hrwsi.task_event (task_id, id);

CREATE FUNCTION hrwsi.refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hrwsi.task_event is append-only: its rows are the status history'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER task_event_is_append_only BEFORE UPDATE OR DELETE ON hrwsi.task_event
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_history_change();

CREATE TABLE hrwsi.product (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      bigint CONSTRAINT product_task_must_exist REFERENCES hrwsi.processing_task (id),
    path         text NOT NULL CONSTRAINT product_path_is_not_empty CHECK (btrim(path) <> ''),
    product_type text NOT NULL CONSTRAINT product_type_is_not_empty CHECK (btrim(product_type) <> ''),
    size_bytes   bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    chained_at   timestamptz,   -- when the harvester turned it into inputs (NULL: not yet)
    CONSTRAINT product_path_is_unique UNIQUE (path)
);
CREATE INDEX product_task_idx ON hrwsi.product (task_id);
CREATE INDEX product_not_chained_idx ON hrwsi.product (id) WHERE chained_at IS NULL;

-- Live service instances: the lease that tells whose jobs are orphans after a crash.
CREATE TABLE hrwsi.service_instance (
    id           text PRIMARY KEY,
    kind         text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- History and notifications: one trigger per statement, payloads of counts only.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION hrwsi.record_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
    ELSE
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT n.id, n.state, n.state_reason, n.attempts, n.worker
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION hrwsi.notify_count() RETURNS trigger LANGUAGE plpgsql AS $$
-- TG_ARGV[0]: the channel. Payload: {"op": "insert", "count": N}.
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM new_rows;
    IF n > 0 THEN
        PERFORM pg_notify(TG_ARGV[0], json_build_object('op', lower(TG_OP), 'count', n)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION hrwsi.notify_state_counts() RETURNS trigger LANGUAGE plpgsql AS $$
-- TG_ARGV[0]: the channel. Payload: {"op": "update", "counts": {"planned": 3}}: rows per new state,
-- counting on UPDATE only the rows whose state changed.
DECLARE
    counts json;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT json_object_agg(state, n) INTO counts
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
    ELSE
        SELECT json_object_agg(state, n) INTO counts
        FROM (SELECT n.state, count(*) AS n FROM new_rows n JOIN old_rows o USING (id)
              WHERE n.state IS DISTINCT FROM o.state GROUP BY n.state) c;
    END IF;
    IF counts IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0], json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER input_notify AFTER INSERT ON hrwsi.input
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_count('hrwsi_input');

CREATE TRIGGER processing_task_history_insert AFTER INSERT ON hrwsi.processing_task
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.record_task_events();
CREATE TRIGGER processing_task_history_update AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.record_task_events();
CREATE TRIGGER processing_task_notify_insert AFTER INSERT ON hrwsi.processing_task
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_state_counts('hrwsi_task');
CREATE TRIGGER processing_task_notify_update AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_state_counts('hrwsi_task');

CREATE TRIGGER job_notify_insert AFTER INSERT ON hrwsi.job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_state_counts('hrwsi_job');
CREATE TRIGGER job_notify_update AFTER UPDATE ON hrwsi.job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_state_counts('hrwsi_job');

CREATE TRIGGER product_notify AFTER INSERT ON hrwsi.product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_count('hrwsi_product');

-- New inputs waiting for the orchestrator to create their task: a queue filled by trigger, so the
-- orchestrator's work per round is proportional to what is new, not to the history.
CREATE TABLE hrwsi.input_backlog (
    input_id bigint PRIMARY KEY REFERENCES hrwsi.input (id)
);

CREATE FUNCTION hrwsi.queue_new_inputs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hrwsi.input_backlog (input_id) SELECT id FROM new_rows;
    RETURN NULL;
END $$;

CREATE TRIGGER input_queue_for_orchestrator AFTER INSERT ON hrwsi.input
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.queue_new_inputs();
