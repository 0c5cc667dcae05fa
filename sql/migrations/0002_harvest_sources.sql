-- hrwsi schema, version 2: where inputs come from.
-- - harvest sources (a landing directory, a catalogue), each with its schedule and mode;
-- - the tracking of every file seen in a landing directory (seen -> ready -> prepared ...);
-- - the same scene seen twice, or from two sources, is one input: a scene identifier per input;
-- - multi-input triggering rules as data: "needs N products of the same tile and day",
--   "a composite of the last 7 days once all are processed".
--
-- As in 0001, constraint names are what a data engineer reads when a row is refused: each says
-- what must be true. CHECKs on the config wrap their test in coalesce(..., false), because a
-- missing key makes the test NULL, and a NULL CHECK lets the row in.

-- ---------------------------------------------------------------------------------------------
-- Harvest sources.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE hrwsi.harvest_source (
    name               text PRIMARY KEY CONSTRAINT harvest_source_name_is_not_empty CHECK (btrim(name) <> ''),
    kind               text NOT NULL CONSTRAINT harvest_source_kind_is_catalogue_or_landing_directory
        CHECK (kind IN ('catalogue', 'landing_directory')),
    -- The type its inputs have, as routines name it in input_product_type (e.g. L1C).
    product_type       text NOT NULL CONSTRAINT harvest_source_product_type_is_not_empty
        CHECK (btrim(product_type) <> ''),
    config             jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT harvest_source_config_is_a_json_object CHECK (jsonb_typeof(config) = 'object'),
    -- Schedule, IAGOS style: frequency hourly + interval 2 = every second hour; or a cron expression.
    -- A landing directory without a schedule is scanned continuously: again after config.scan_interval_s
    -- (default: its settle time, at least 1 s).
    frequency          text CONSTRAINT harvest_source_frequency_is_hourly_daily_or_weekly
        CHECK (frequency IN ('hourly', 'daily', 'weekly')),
    frequency_interval integer NOT NULL DEFAULT 1
        CONSTRAINT harvest_source_frequency_interval_is_at_least_1 CHECK (frequency_interval >= 1),
    cron               text CONSTRAINT harvest_source_cron_has_five_fields
        CHECK (cron ~ '^\s*\S+(\s+\S+){4}\s*$'),
    mode               text NOT NULL DEFAULT 'near_real_time'
        CONSTRAINT harvest_source_mode_is_near_real_time_or_backfill CHECK (mode IN ('near_real_time', 'backfill')),
    -- Near real time: each run asks for (last successful harvest - overlap, now]; the first run
    -- looks first_lookback back.
    overlap            interval NOT NULL DEFAULT interval '1 hour'
        CONSTRAINT harvest_source_overlap_is_not_negative CHECK (overlap >= interval '0'),
    first_lookback     interval NOT NULL DEFAULT interval '1 day'
        CONSTRAINT harvest_source_first_lookback_is_positive CHECK (first_lookback > interval '0'),
    -- Backfill: day by day from backfill_from to backfill_to (both included); the cursor is the
    -- next day to harvest, so an interrupted backfill resumes where it stopped.
    backfill_from      date,
    backfill_to        date,
    backfill_cursor    date,
    last_run_at        timestamptz,
    last_success_at    timestamptz,
    next_run_at        timestamptz,
    last_error         text,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT harvest_source_has_a_frequency_or_a_cron_expression_not_both
        CHECK (frequency IS NULL OR cron IS NULL),
    CONSTRAINT catalogue_source_has_a_schedule
        CHECK (kind <> 'catalogue' OR frequency IS NOT NULL OR cron IS NOT NULL),
    CONSTRAINT backfill_source_has_backfill_from_and_backfill_to
        CHECK (mode <> 'backfill' OR (backfill_from IS NOT NULL AND backfill_to IS NOT NULL)),
    CONSTRAINT backfill_from_is_not_after_backfill_to CHECK (backfill_from <= backfill_to),
    CONSTRAINT backfill_cursor_is_within_backfill_from_and_backfill_to_plus_1
        CHECK (backfill_cursor BETWEEN backfill_from AND backfill_to + 1),
    CONSTRAINT landing_directory_source_is_near_real_time
        CHECK (kind <> 'landing_directory' OR mode = 'near_real_time'),
    -- Secrets stay in the environment: the config names the variables that hold them.
    CONSTRAINT harvest_source_config_names_environment_variables_not_secrets
        CHECK (NOT (config ?| ARRAY['password', 'zip_password', 'client_secret', 'secret', 'token', 'access_token'])
               AND NOT (coalesce(config -> 'auth', '{}') ?| ARRAY['password', 'client_secret', 'secret', 'token',
                                                                   'access_token'])),
    CONSTRAINT landing_config_has_absolute_directory_and_work_directory
        CHECK (kind <> 'landing_directory'
               OR coalesce(jsonb_typeof(config -> 'directory') = 'string' AND config ->> 'directory' LIKE '/%'
                           AND jsonb_typeof(config -> 'work_directory') = 'string'
                           AND config ->> 'work_directory' LIKE '/%', false)),
    CONSTRAINT landing_directory_work_directory_differs_from_directory
        CHECK (kind <> 'landing_directory'
               OR rtrim(config ->> 'directory', '/') <> rtrim(config ->> 'work_directory', '/')),
    CONSTRAINT landing_directory_settle_s_is_a_number_of_at_least_0
        CHECK (NOT config ? 'settle_s'
               -- CASE, not AND: the cast must not run on a value that is not a number
               OR CASE WHEN jsonb_typeof(config -> 'settle_s') = 'number'
                       THEN (config ->> 'settle_s')::numeric >= 0 ELSE false END),
    CONSTRAINT landing_directory_scan_interval_s_is_a_positive_number
        CHECK (NOT config ? 'scan_interval_s'
               OR CASE WHEN jsonb_typeof(config -> 'scan_interval_s') = 'number'
                       THEN (config ->> 'scan_interval_s')::numeric > 0 ELSE false END),
    CONSTRAINT landing_directory_unzip_is_true_or_false
        CHECK (NOT config ? 'unzip' OR jsonb_typeof(config -> 'unzip') = 'boolean'),
    CONSTRAINT landing_directory_pattern_and_zip_password_env_are_text
        CHECK ((NOT config ? 'pattern' OR jsonb_typeof(config -> 'pattern') = 'string')
               AND (NOT config ? 'zip_password_env' OR jsonb_typeof(config -> 'zip_password_env') = 'string')),
    CONSTRAINT catalogue_config_has_an_http_url_and_a_collection
        CHECK (kind <> 'catalogue'
               OR coalesce(jsonb_typeof(config -> 'url') = 'string' AND config ->> 'url' ~ '^https?://'
                           AND jsonb_typeof(config -> 'collection') = 'string'
                           AND btrim(config ->> 'collection') <> '', false)),
    CONSTRAINT catalogue_auth_type_is_none_basic_or_an_oauth2_grant
        CHECK (NOT config ? 'auth'
               OR coalesce(config -> 'auth' ->> 'type' IN ('none', 'basic', 'oauth2_password',
                                                           'oauth2_client_credentials'), false)),
    CONSTRAINT catalogue_config_tiles_is_a_list_of_mgrs_codes
        CHECK (NOT config ? 'tiles'
               OR (jsonb_typeof(config -> 'tiles') = 'array'
                   AND NOT jsonb_path_exists(
                       config, '$.tiles[*] ? (@.type() != "string" || !(@ like_regex "^[0-9]{2}[A-Z]{3}$"))')))
);
-- The harvester's question, every round: which active sources are due?
CREATE INDEX harvest_source_due_idx ON hrwsi.harvest_source (next_run_at) WHERE active;

-- ---------------------------------------------------------------------------------------------
-- Files of landing directories: one row per file (or .SAFE directory) and version of it.
--   seen                the file is there but may still be written (not settled yet)
--   ready               settled; being prepared (a crash here resumes at the next scan)
--   prepared            unzipped/moved to the work directory and registered as input(s)
--   previously_received the same file, or the same scene, was received before: no new input
--   failed              could not be prepared; message says why (touch the file to retry)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE hrwsi.landing_file (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL CONSTRAINT landing_file_source_must_exist
        REFERENCES hrwsi.harvest_source (name) ON DELETE CASCADE ON UPDATE CASCADE,
    path          text NOT NULL CONSTRAINT landing_file_path_is_not_empty CHECK (btrim(path) <> ''),
    size_bytes    bigint NOT NULL CONSTRAINT landing_file_size_bytes_is_not_negative CHECK (size_bytes >= 0),
    modified_at   timestamptz NOT NULL,
    checksum      text CONSTRAINT landing_file_checksum_is_not_empty CHECK (btrim(checksum) <> ''),
    state         text NOT NULL DEFAULT 'seen' CONSTRAINT file_state_is_seen_ready_prepared_previously_received_or_failed
        CHECK (state IN ('seen', 'ready', 'previously_received', 'prepared', 'failed')),
    message       text,
    prepared_path text,             -- where the prepared file (or its unzipped product) is now
    scene_id      text,             -- the product name the file carries, when it could be parsed
    input_count   integer CONSTRAINT landing_file_input_count_is_not_negative CHECK (input_count >= 0),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT landing_file_failed_has_a_message CHECK (state <> 'failed' OR message IS NOT NULL),
    CONSTRAINT landing_file_prepared_has_a_prepared_path CHECK (state <> 'prepared' OR prepared_path IS NOT NULL),
    CONSTRAINT landing_file_last_seen_at_is_not_before_first_seen_at CHECK (last_seen_at >= first_seen_at)
);
-- A file seen by several scans is one row; a new copy (other size or mtime) is a new row.
-- Re-deliveries recorded as previously_received are each a row of their own (the history).
CREATE UNIQUE INDEX landing_file_is_tracked_once_per_source_path_size_and_mtime
    ON hrwsi.landing_file (source, path, size_bytes, modified_at) WHERE state <> 'previously_received';
CREATE INDEX landing_file_source_path_idx ON hrwsi.landing_file (source, path);
CREATE INDEX landing_file_unfinished_idx ON hrwsi.landing_file (source) WHERE state IN ('seen', 'ready');

-- ---------------------------------------------------------------------------------------------
-- The same scene from two sources (a catalogue and a landing directory), or under two paths, is
-- one input per condition: the scene identifier is the product name without its extension.
-- ---------------------------------------------------------------------------------------------

ALTER TABLE hrwsi.input ADD COLUMN scene_id text
    CONSTRAINT input_scene_id_is_not_empty CHECK (btrim(scene_id) <> '');
CREATE UNIQUE INDEX input_scene_is_registered_once_per_condition
    ON hrwsi.input (processing_condition, scene_id) WHERE scene_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Multi-input triggering rules, as data. A condition with a rule gets one input per complete
-- group instead of one input per product:
--   group      = one tile and one window of window_days days ending on a day (the anchor day)
--   complete   = for each requirement, at least min_count members of its product type in the
--                window (on each day of it when every_day_of_window), and, when
--                wait_for_open_tasks, no task that would produce such a member still open.
-- Members are products (tile and day from the input of the task that made them) and inputs that
-- were not chained from a product (tile and day of the input, type of its routine's input).
-- Adding a routine with such a condition is three INSERTs, no code.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE hrwsi.multi_input_rule (
    processing_condition text PRIMARY KEY CONSTRAINT multi_input_rule_condition_must_exist
        REFERENCES hrwsi.processing_condition (name) ON DELETE CASCADE ON UPDATE CASCADE,
    window_days          integer NOT NULL DEFAULT 1
        CONSTRAINT multi_input_rule_window_days_between_1_and_366 CHECK (window_days BETWEEN 1 AND 366),
    every_day_of_window  boolean NOT NULL DEFAULT false,
    wait_for_open_tasks  boolean NOT NULL DEFAULT true
);

CREATE TABLE hrwsi.multi_input_requirement (
    processing_condition text NOT NULL CONSTRAINT multi_input_requirement_rule_must_exist
        REFERENCES hrwsi.multi_input_rule (processing_condition) ON DELETE CASCADE ON UPDATE CASCADE,
    product_type         text NOT NULL CONSTRAINT multi_input_requirement_product_type_is_not_empty
        CHECK (btrim(product_type) <> ''),
    min_count            integer NOT NULL DEFAULT 1
        CONSTRAINT multi_input_requirement_min_count_is_at_least_1 CHECK (min_count >= 1),
    CONSTRAINT multi_input_requirement_is_unique_per_condition_and_type
        PRIMARY KEY (processing_condition, product_type)
);

-- The members a multi-input input was made from: what its routine reads.
CREATE TABLE hrwsi.multi_input_member (
    input_id     bigint NOT NULL CONSTRAINT multi_input_member_input_must_exist
        REFERENCES hrwsi.input (id) ON DELETE CASCADE,
    member_path  text NOT NULL CONSTRAINT multi_input_member_path_is_not_empty CHECK (btrim(member_path) <> ''),
    product_type text NOT NULL,
    measured_at  timestamptz,
    CONSTRAINT multi_input_member_is_listed_once_per_input PRIMARY KEY (input_id, member_path)
);

-- Finding members fast: products by type, inputs by condition and tile.
CREATE INDEX product_type_idx ON hrwsi.product (product_type);
CREATE INDEX input_condition_tile_measured_idx ON hrwsi.input (processing_condition, tile, measured_at);

-- ---------------------------------------------------------------------------------------------
-- Privileges. The roles are created here when missing (0003 does the same), so that this file
-- gives the harvester what it needs whichever order a database received its migrations in.
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hrwsi_readonly') THEN
        CREATE ROLE hrwsi_readonly NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hrwsi_data_engineer') THEN
        CREATE ROLE hrwsi_data_engineer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hrwsi_service') THEN
        CREATE ROLE hrwsi_service NOLOGIN;
    END IF;
END $$;

GRANT SELECT ON hrwsi.harvest_source, hrwsi.landing_file, hrwsi.multi_input_rule, hrwsi.multi_input_requirement,
    hrwsi.multi_input_member TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- Data engineers configure sources and rules; services run them.
GRANT INSERT, UPDATE, DELETE ON hrwsi.harvest_source, hrwsi.multi_input_rule, hrwsi.multi_input_requirement
    TO hrwsi_data_engineer;
GRANT UPDATE (last_run_at, last_success_at, next_run_at, last_error, backfill_cursor) ON hrwsi.harvest_source
    TO hrwsi_service;
GRANT INSERT, UPDATE, DELETE ON hrwsi.landing_file, hrwsi.multi_input_member TO hrwsi_service;
