-- hrwsi: the current schema, as a fresh install creates it.
--
-- `hrwsi db init` runs this file on an empty database, in one transaction, and records every
-- migration in sql/migrations/ as applied; a database that already has migrations gets only the
-- pending ones. So every schema change is a new migration AND an edit of this file, in the same
-- commit, and tests/integration/test_schema.py proves that a database built from this file
-- equals one built from the migrations (docs/adr/0008-schema-sql-and-migrations.md).
--
-- Two rules that keep the two paths equal:
-- - a column added by a migration goes at the END of its table here too, so that column order
--   (SELECT *, INSERT without a column list) is the same whichever way a database was built;
-- - a function body is copied character for character from its latest migration: PostgreSQL
--   keeps the text, and the comparison reads it.
--
-- A function that turns a planner method off for its statements (SET enable_seqscan = off, ...) turns
-- JIT off too (SET jit = off, last of its SET clauses; migration 0088). Up to PostgreSQL 17 a plan that
-- uses a method turned off costs ten billion more (disable_cost; PostgreSQL 18 counts such nodes apart),
-- which passes jit_above_cost, and JIT, on by default where the server was built with LLVM (Debian's, the
-- PGDG packages), compiled the statement at every call: on Debian 12's PostgreSQL 15 a lone input's
-- reaction took 82 ms instead of 2.6 ms (found by running the bench against it). hrwsi's statements
-- read a few rows by key; compiling them never pays.
--
-- Constraint names are part of the user interface: PostgreSQL prints them in every refusal, so
-- each one says what must be true ("input_tile_is_an_mgrs_code_like_32tpr"), not where it lives.
--
-- Run by `hrwsi db init`, which creates public.hrwsi_schema_migration first (granted below).
--
-- Contents, in order (each section only uses what comes before it):
--   reference tables, inputs, plans, tasks and their state machine, jobs, products, history,
--   services, alerts and the failure policy, harvest sources and landing files, multi-input
--   rules, operator functions, notification triggers, timeliness and campaigns, roles and grants.

-- hrwsi needs a UTF-8 database (migration 0079): paths are Unicode text, and the rules refusing invisible
-- characters in them name Unicode's code points; in a single-byte encoding (SQL_ASCII, LATIN1, WIN1252)
-- those code points are bytes of other characters, and valid paths (a German or Polish place name) were refused (found by
-- review).
DO $$
BEGIN
    IF getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'database % is encoded %: hrwsi needs a UTF8 database', current_database(), getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'create one with ENCODING ''UTF8'' (CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0), '
                         'then pg_dump this one and restore it there (README.md, "Backup and restore")';
    END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS hrwsi;

-- =============================================================================================
-- Reference tables: what can run, where, and under which rules.
-- =============================================================================================

CREATE TABLE hrwsi.flavour (
    name    text PRIMARY KEY CONSTRAINT flavour_name_is_not_empty CHECK (btrim(name) <> ''),
    -- (NaN passes `cpu > 0` in PostgreSQL: NaN sorts above every number.)
    cpu     numeric NOT NULL CONSTRAINT flavour_cpu_is_positive CHECK (cpu > 0)
        CONSTRAINT flavour_cpu_is_a_number CHECK (cpu <> 'NaN'::numeric),
    ram_mb  integer NOT NULL CONSTRAINT flavour_ram_mb_is_positive CHECK (ram_mb > 0),
    disk_mb integer NOT NULL CONSTRAINT flavour_disk_mb_is_positive CHECK (disk_mb > 0)
);

CREATE TABLE hrwsi.worker (
    name       text PRIMARY KEY CONSTRAINT worker_name_is_not_empty CHECK (btrim(name) <> ''),
    flavour    text NOT NULL CONSTRAINT worker_flavour_must_exist REFERENCES hrwsi.flavour (name),
    -- With Nomad, follows its node (ready and eligible); tasks planned on an inactive worker are planned again.
    active     boolean NOT NULL DEFAULT true,
    node_id    text,          -- the Nomad node ID when synced from Nomad
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_flavour_idx ON hrwsi.worker (flavour);

-- Budgets over everything running at one moment (one row; NULL means unlimited).
CREATE TABLE hrwsi.budget (
    id             boolean PRIMARY KEY DEFAULT true CONSTRAINT budget_has_a_single_row CHECK (id),
    cpu_max        numeric CONSTRAINT budget_cpu_max_is_positive CHECK (cpu_max > 0)
        CONSTRAINT budget_cpu_max_is_a_number CHECK (cpu_max <> 'NaN'::numeric),
    ram_max_mb     bigint  CONSTRAINT budget_ram_max_mb_is_positive CHECK (ram_max_mb > 0),
    storage_max_mb bigint  CONSTRAINT budget_storage_max_mb_is_positive CHECK (storage_max_mb > 0),
    vm_max         integer CONSTRAINT budget_vm_max_is_positive CHECK (vm_max > 0),
    -- The planner's mode: makespan (finish soonest, then fewest VMs) or deadline (the fewest workers
    -- that end everything within plan_horizon; migration 0013).
    plan_mode      text NOT NULL DEFAULT 'makespan'
        CONSTRAINT budget_plan_mode_is_makespan_or_deadline CHECK (plan_mode IN ('makespan', 'deadline')),
    plan_horizon   interval
        CONSTRAINT budget_plan_horizon_is_between_1_minute_and_30_days
        CHECK (plan_horizon BETWEEN interval '1 minute' AND interval '30 days'),
    CONSTRAINT budget_deadline_mode_has_a_horizon CHECK (plan_mode = 'makespan' OR plan_horizon IS NOT NULL)
);
INSERT INTO hrwsi.budget (id) VALUES (true);

-- The installation: outputs and logs are placed under its id, so that a fresh database on the
-- same HRWSI_HOME never reuses (nor registers as products) the files of an earlier one.
CREATE TABLE hrwsi.installation (
    id              boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_has_a_single_row CHECK (id),
    installation_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Where this installation's jobs are, for a backend whose launchers must all put them in one
    -- place (Nomad: `nomad namespace NAME`), taken by the first launcher (hrwsi.take_backend_scope;
    -- migration 0070).
    backend_scope   text
);
INSERT INTO hrwsi.installation DEFAULT VALUES;

-- Lanes: near-real-time work is served before back-fill (ADR 0009).
CREATE TABLE hrwsi.lane (
    name          text PRIMARY KEY CONSTRAINT lane_name_is_a_plain_name CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    priority      smallint NOT NULL CONSTRAINT lane_priority_is_unique UNIQUE
        CONSTRAINT lane_priority_is_not_negative CHECK (priority >= 0),
    -- Ageing: a task of this lane waiting longer than this is served as urgently as lane 0.
    promote_after interval CONSTRAINT lane_promote_after_is_positive CHECK (promote_after > interval '0'),
    description   text NOT NULL
);
INSERT INTO hrwsi.lane (name, priority, promote_after, description) VALUES
    ('nrt', 0, NULL, 'near-real-time: fresh scenes; served first, may take capacity back from archive work'),
    ('archive', 1, interval '6 hours',
     'back-fill and reprocessing: uses what near-real-time work leaves; served as nrt after waiting 6 hours');

CREATE TABLE hrwsi.processing_routine (
    name                 text PRIMARY KEY CONSTRAINT routine_name_is_not_empty CHECK (btrim(name) <> ''),
    -- (at least a hundredth of a core, and ram_mb at least Nomad's least MemoryMB, as the configuration file says:
    -- migration 0111; the planner counted a smaller CPU as nothing while Nomad reserved at least 1 MHz)
    cpu                  numeric NOT NULL CONSTRAINT routine_cpu_is_at_least_a_hundredth CHECK (cpu >= 0.01)
        CONSTRAINT routine_cpu_is_a_number CHECK (cpu <> 'NaN'::numeric),
    ram_mb               integer NOT NULL CONSTRAINT routine_ram_mb_is_at_least_nomads_least_memory CHECK (ram_mb >= 10),
    -- (at least Nomad's least EphemeralDisk, as the configuration file says: migration 0108)
    storage_mb           integer NOT NULL CONSTRAINT routine_storage_mb_is_at_least_nomads_least_disk
        CHECK (storage_mb >= 10),
    expected_duration    interval NOT NULL
        CONSTRAINT routine_expected_duration_is_positive CHECK (expected_duration > interval '0')
        CONSTRAINT routine_expected_duration_is_at_most_30_days CHECK (expected_duration <= interval '30 days'),
    timeout              interval CONSTRAINT routine_timeout_is_positive CHECK (timeout > interval '0')
        CONSTRAINT routine_timeout_is_at_most_30_days CHECK (timeout <= interval '30 days'),
    image                text,
    command              text[],
    input_product_type   text NOT NULL CONSTRAINT routine_input_product_type_is_not_empty
        CHECK (btrim(input_product_type) <> ''),
    output_product_type  text NOT NULL CONSTRAINT routine_output_product_type_is_not_empty
        CHECK (btrim(output_product_type) <> ''),
    max_attempts         integer NOT NULL DEFAULT 3
        CONSTRAINT routine_max_attempts_between_1_and_100 CHECK (max_attempts BETWEEN 1 AND 100),
    flavour              text CONSTRAINT routine_flavour_must_exist REFERENCES hrwsi.flavour (name),
    -- A time-series routine (MAJA-like) needs the previous task of the same tile processed first.
    sequential_per_tile  boolean NOT NULL DEFAULT false,
    env                  jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT routine_env_is_a_json_object CHECK (jsonb_typeof(env) = 'object'),
    -- The failure policy (see "alerts and the failure policy"): a routine goes on hold after
    -- hold_after_failures consecutive failed attempts; its waiting tasks are held with it.
    on_hold              boolean NOT NULL DEFAULT false,
    hold_reason          text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    hold_after_failures  integer DEFAULT 5
        CONSTRAINT routine_hold_after_failures_is_positive CHECK (hold_after_failures > 0),
    -- Its back-fill's failures (production tasks in a lane less urgent than near-real-time, priority
    -- above 0) are counted apart, and put its back-fill alone on hold (migration 0075): NULL while
    -- its back-fill is not held.
    backfill_consecutive_failures integer NOT NULL DEFAULT 0,
    backfill_hold_reason text,
    CONSTRAINT routine_has_an_image_or_a_command
        CHECK (image IS NOT NULL OR coalesce(cardinality(command), 0) > 0),
    -- Routine names become directory names and Nomad job IDs: refuse what could escape a directory.
    CONSTRAINT routine_name_is_a_plain_name_like_snow_cover
        CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' AND name !~ '\.\.')
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
    active             boolean NOT NULL DEFAULT true,
    lane               text NOT NULL DEFAULT 'nrt' CONSTRAINT condition_lane_must_exist REFERENCES hrwsi.lane (name),
    -- "product due within `deadline` of sensing (or of publication)".
    deadline           interval CONSTRAINT condition_deadline_is_positive CHECK (deadline > interval '0')
        CONSTRAINT condition_deadline_is_at_most_366_days CHECK (deadline <= interval '366 days'),
    deadline_from      text NOT NULL DEFAULT 'measurement'
        CONSTRAINT condition_deadline_from_is_measurement_or_publication
        CHECK (deadline_from IN ('measurement', 'publication')),
    -- (migration 0073) What it missed, by when the harvester chained the products it reads: from
    -- missed_since (made inactive; -infinity: before it existed) to missed_until (made active again;
    -- NULL: still inactive); both NULL: nothing (or all chained since by hrwsi.chain_missed_products).
    -- Kept by hrwsi.keep_a_conditions_missed_range. Counted by whether an input of the condition has
    -- the product's path, a product whose task retention pruned (and its input) was chained again.
    missed_since       timestamptz,
    missed_until       timestamptz,
    -- (migration 0118) No product the range missed was recorded (product.created_at) before it: the oldest product
    -- not chained yet, or the start of the oldest transaction under way (one may be recording products), when the
    -- range opened (hrwsi.products_to_chain_were_recorded_from); -infinity when that is not known. hrwsi.missed_products
    -- reads the products from then on (product_day_idx), not every product of the type: `hrwsi status` read them all,
    -- 0.9-1.6 s at 1,000,000 products, while a range was open.
    missed_products_from timestamptz,
    CONSTRAINT condition_windows_are_finite
        CHECK (publication_window < interval '100 years' AND measurement_window < interval '100 years')
);
CREATE INDEX processing_condition_routine_idx ON hrwsi.processing_condition (routine);

-- Reprocessing campaigns (ADR 0010): what a campaign reprocesses and with which version of the
-- routine. Its tasks (processing_task.campaign_id) run in its lane without a deadline; the products
-- they make chain downstream within it (input.campaign_id) unless chain is false.
CREATE TABLE hrwsi.campaign (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text CONSTRAINT campaign_name_is_not_empty CHECK (btrim(name) <> ''),
    -- What it reprocesses: the inputs of this routine (of one condition of it when given) sensed in
    -- [measured_from, measured_to), on these tiles (NULL: every tile), that were processed.
    routine       text NOT NULL CONSTRAINT campaign_routine_must_exist REFERENCES hrwsi.processing_routine (name),
    condition     text CONSTRAINT campaign_condition_must_exist REFERENCES hrwsi.processing_condition (name),
    measured_from timestamptz NOT NULL,
    measured_to   timestamptz NOT NULL,
    tiles         text[],
    -- The version of the routine it runs; NULL: the routine's own command and image.
    command       text[] CONSTRAINT campaign_command_is_not_empty CHECK (cardinality(command) > 0),
    image         text CONSTRAINT campaign_image_is_not_empty CHECK (btrim(image) <> ''),
    lane          text NOT NULL DEFAULT 'archive' CONSTRAINT campaign_lane_must_exist REFERENCES hrwsi.lane (name),
    -- Its products become inputs downstream (within the campaign); false: it stops at its routine.
    chain         boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT session_user,   -- who asked (not the definer of hrwsi.reprocess)
    -- Its own failure count and hold (migration 0045): a campaign's failures never hold production.
    consecutive_failures integer NOT NULL DEFAULT 0,
    on_hold       boolean NOT NULL DEFAULT false,
    hold_reason   text,
    -- Cancelled as a whole (`hrwsi campaigns --cancel`, hrwsi.cancel_campaign; migration 0058): its
    -- cancel was recorded only in its tasks' reasons.
    cancelled_at  timestamptz,
    cancelled_by  text,
    CONSTRAINT campaign_measured_from_is_before_measured_to CHECK (measured_from < measured_to)
);
-- Between 1950 and 9000 (migration 0116, which brought the ranges stored before within it), as a harvest source's
-- times: a measured_to of 12000-01-01 made `hrwsi campaigns` and the dashboard's campaigns fail on every call (psycopg
-- reads years 1 to 9999 alone). No input lies outside it.
ALTER TABLE hrwsi.campaign
    ADD CONSTRAINT campaign_sensing_range_is_between_1950_and_9000
        CHECK (measured_from >= timestamptz '1950-01-01 00:00Z' AND measured_to <= timestamptz '9000-01-01 00:00Z');

-- =============================================================================================
-- Inputs: one thing to process under one condition (plain SQL, a harvest source, or chaining).
-- =============================================================================================

CREATE TABLE hrwsi.input (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- no foreign key (migration 0027): checked once per statement by hrwsi.create_tasks_for_new_inputs
    processing_condition text NOT NULL,
    -- Paths are absolute, without surrounding white space, control characters or '..' segments,
    -- and short enough for the unique index that guards them (a btree entry holds ~2,700 bytes).
    -- Nor invisible characters (migration 0079): Unicode's line and paragraph separators, which logs
    -- and pages show as line breaks, and its format characters, shown as nothing (zero-width space
    -- and joiners, directional marks and overrides, soft hyphen, byte order mark, tags), which made two
    -- paths that look the same differ. Nor (migration 0083) the characters that look like a space or
    -- nothing though they are not the ASCII space: the no-break space U+00A0, Unicode's other spaces
    -- (U+2000-U+200A, U+202F, U+205F, U+3000) and the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0).
    -- One regular expression with [[:cntrl:]], the C1 controls named
    -- (a server in the C locale leaves them out of [[:cntrl:]]): the INSERT of inputs is a hot path.
    input_path           text NOT NULL CONSTRAINT input_path_is_not_empty CHECK (btrim(input_path) <> '')
        CONSTRAINT input_path_is_at_most_2000_bytes CHECK (octet_length(input_path) <= 2000)
        CONSTRAINT input_path_has_no_surrounding_white_space CHECK (btrim(input_path) = '' OR input_path = btrim(input_path))
        CONSTRAINT input_path_has_no_control_or_invisible_characters
        CHECK (superseded_by IS NOT NULL OR input_path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]')
        CONSTRAINT input_path_has_no_dot_dot_segment CHECK (input_path !~ '(^|/)\.\.(/|$)')
        -- (Nomad reads `${...}` in a job's arguments as its own variables: such a path cannot run
        -- there, and was charged to the routine; migration 0066)
        CONSTRAINT input_path_has_no_dollar_brace CHECK (strpos(input_path, '${') = 0),
    tile                 text CONSTRAINT input_tile_is_an_mgrs_code_like_32tpr CHECK (tile ~ '^[0-9]{2}[A-Z]{3}$'),
    -- Mission and scene_id hold no control or invisible character either (migration 0115): a mission's line break
    -- began a line of `hrwsi task show`'s own, and a scene_id "X\u200b" was a scene of its own.
    mission              text CONSTRAINT input_mission_is_not_empty CHECK (btrim(mission) <> '')
        CONSTRAINT input_mission_is_at_most_100_bytes CHECK (octet_length(mission) <= 100)
        CONSTRAINT input_mission_has_no_control_or_invisible_characters
        CHECK (mission !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'),
    measured_at          timestamptz,
    published_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    source               text NOT NULL DEFAULT 'sql',   -- 'sql', 'chaining', or a harvester source name
    product_id           bigint,                        -- the product this input was chained from
    -- The same scene from two sources (a catalogue and a landing directory), or under two paths,
    -- is one input per condition: the scene identifier is the product name without its extension.
    scene_id             text CONSTRAINT input_scene_id_is_not_empty CHECK (btrim(scene_id) <> '')
        CONSTRAINT input_scene_id_is_at_most_500_bytes CHECK (octet_length(scene_id) <= 500)
        CONSTRAINT input_scene_id_has_no_control_or_invisible_characters
        CHECK (scene_id !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'),
    -- An input may name its lane (a back-fill source inserts into 'archive'); else its condition's.
    lane                 text CONSTRAINT input_lane_must_exist REFERENCES hrwsi.lane (name),
    -- A product a campaign made becomes an input of the campaign (chained), never of production.
    campaign_id          bigint CONSTRAINT input_campaign_must_exist REFERENCES hrwsi.campaign (id),
    -- The input that corrects this one (hrwsi.correct_input, migration 0083): this one's tasks were
    -- cancelled, and it no longer holds its path nor its scene for its condition. NULL: not corrected.
    -- (The path rule input_path_has_no_control_or_invisible_characters holds for the inputs not
    -- superseded: an old input whose path a later rule refuses can be marked superseded, corrected.)
    superseded_by        bigint,
    CONSTRAINT input_measured_at_is_not_after_published_at CHECK (measured_at <= published_at),
    CONSTRAINT input_measured_at_is_after_1950 CHECK (measured_at >= timestamptz '1950-01-01 00:00Z'),
    CONSTRAINT input_published_at_is_after_1950 CHECK (published_at >= timestamptz '1950-01-01 00:00Z'),
    CONSTRAINT input_path_is_absolute_or_a_multi_input_group
        CHECK (btrim(input_path) = '' OR left(input_path, 1) = '/'
               OR (source = 'multi_input' AND input_path LIKE 'multi_input/%'))
);
-- A path is one input per condition, and so is a scene; an input a correction superseded holds
-- neither (migration 0083: a correction that kept the path could not be inserted until retention
-- removed the old input, found by exploratory testing). An INSERT's ON CONFLICT naming the columns
-- names the index's predicate too: ON CONFLICT (processing_condition, input_path) WHERE superseded_by
-- IS NULL (ON CONFLICT DO NOTHING needs neither).
CREATE UNIQUE INDEX input_is_unique_per_condition_and_path ON hrwsi.input (processing_condition, input_path)
    WHERE superseded_by IS NULL;
CREATE INDEX input_product_id_idx ON hrwsi.input (product_id) WHERE product_id IS NOT NULL;
CREATE UNIQUE INDEX input_scene_is_registered_once_per_condition
    ON hrwsi.input (processing_condition, scene_id) WHERE scene_id IS NOT NULL AND superseded_by IS NULL;
-- Finding the members of multi-input groups fast: inputs by condition and tile.
CREATE INDEX input_condition_tile_measured_idx ON hrwsi.input (processing_condition, tile, measured_at);

-- Dates in the future are a typo, not a scene: refuse them with the clock of the database.
-- (A CHECK may not call now(); a trigger may.) The refusal says the time in UTC with a Z, as the
-- database's other sentences do: it said the session's zone in PostgreSQL's own format
-- ("2026-12-08 11:25:49.427831+01"), the very confusion of zones it refuses (migration 0103).
CREATE FUNCTION hrwsi.refuse_future_input_dates() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.published_at > now() + interval '1 hour' THEN
        RAISE EXCEPTION 'input % is published in the future (published_at %)', NEW.input_path, hrwsi.utc_text(NEW.published_at)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'input_published_at_is_not_in_the_future',
                  HINT = 'published_at and measured_at are timestamptz; give a time zone, e.g. 2024-05-01T10:00Z';
    END IF;
    IF NEW.measured_at > now() + interval '1 hour' THEN
        RAISE EXCEPTION 'input % is measured in the future (measured_at %)', NEW.input_path, hrwsi.utc_text(NEW.measured_at)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'input_measured_at_is_not_in_the_future',
                  HINT = 'published_at and measured_at are timestamptz; give a time zone, e.g. 2024-05-01T10:00Z';
    END IF;
    RETURN NEW;
END $$;
-- Called only for such a row (its condition; migration 0036), not once for every input inserted.
CREATE TRIGGER input_refuse_future_dates BEFORE INSERT OR UPDATE OF published_at, measured_at ON hrwsi.input
    FOR EACH ROW WHEN (NEW.published_at > now() + interval '1 hour' OR NEW.measured_at > now() + interval '1 hour')
    EXECUTE FUNCTION hrwsi.refuse_future_input_dates();

-- A scene's identifier as the harvester gives it (hrwsi.harvest.product_names.scene_id_of): the
-- file name without its extensions, `/eodata/X.SAFE.zip` -> `X` (NULL if nothing is left); `.` and
-- empty segments name nothing, as the harvester reads a path (`/a/X.SAFE/.` -> `X`, where it gave `.`
-- before migration 0083: found by exploratory testing). For a
-- data engineer's INSERT, which gives scene_id only when asked to (migration 0079): with it, the
-- same scene under another path is the same input of a condition, as the harvester's are.
CREATE FUNCTION hrwsi.scene_id_of(path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
RETURN nullif(regexp_replace(substring(path FROM '([^/.][^/]*|\.[^/]+)(/+\.)*/*$'),
                             '(\.(safe|sen3|zip|json|tif|tiff|nc|tar|tgz|gz|h5|xml|jp2))+$', '', 'i'), '');


-- =============================================================================================
-- Plans: each stored plan, with the figures that say how good it is. Tasks point at the plan
-- that placed them.
-- =============================================================================================

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

-- =============================================================================================
-- Tasks and their state machine: the states and the transitions the database allows (see
-- docs/architecture.md for the drawing). Any other transition is refused with a hint.
-- =============================================================================================

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
    ('cancelled',  true,  'cancelled by an operator'),
    ('blocked', false, 'its dependency ended terminated or cancelled; waits for an operator: retry the '
                       'dependency, or release this task to run it without it');

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
    ('cancelled', 'pending'),    -- an operator's retry
    ('pending', 'blocked'), ('planned', 'blocked'), ('blocked', 'pending'), ('blocked', 'cancelled'),
    ('on_hold', 'blocked'),
    ('blocked', 'on_hold'),      -- its wait ended while it, or its routine, was held (migration 0095)
    -- The fast path: a pending task whose dependency is over starts at once where capacity is free.
    ('pending', 'dispatched');

-- The rule of hrwsi.task_transition as an expression: the transition trigger evaluates it without a
-- query (a lookup of the catalogue for each row was about 15 % of recording a batch and 7 % of
-- dispatching one; migration 0020). The catalogue keeps the descriptions and the hints; a test keeps
-- the two equal.
CREATE FUNCTION hrwsi.task_transition_is_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE from_state
    WHEN 'pending'    THEN to_state IN ('planned', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'planned'    THEN to_state IN ('pending', 'dispatched', 'on_hold', 'blocked', 'cancelled')
    WHEN 'dispatched' THEN to_state IN ('queued', 'running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'queued'     THEN to_state IN ('running', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'running'    THEN to_state IN ('queued', 'processed', 'pending', 'terminated', 'cancelled')
    WHEN 'on_hold'    THEN to_state IN ('pending', 'blocked', 'cancelled')
    WHEN 'blocked'    THEN to_state IN ('pending', 'on_hold', 'cancelled')
    WHEN 'terminated' THEN to_state = 'pending'  -- an operator's retry
    WHEN 'cancelled'  THEN to_state = 'pending'  -- an operator's retry
    ELSE false
END;

-- hrwsi.task_state.is_final as an expression (a test keeps the two equal).
CREATE FUNCTION hrwsi.task_state_is_final(state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN state IN ('processed', 'terminated', 'cancelled');

CREATE TABLE hrwsi.processing_task (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    input_id       bigint NOT NULL,  -- no foreign key (migration 0026): hrwsi.refuse_removing_inputs_tasks_name
    routine        text NOT NULL,  -- checked without a key: hrwsi.refuse_removing_what_tasks_name
    worker         text,  -- checked without a key: hrwsi.after_task_changes, hrwsi.refuse_removing_what_tasks_name
    planned_start  timestamptz,
    planned_end    timestamptz,
    depends_on     bigint CONSTRAINT task_dependency_must_exist REFERENCES hrwsi.processing_task (id)
        ON DELETE SET NULL,   -- a dependency pruned by retention is over
    -- One of hrwsi.task_state (a test keeps the two lists equal). A check, not a foreign key: a key
    -- probed and locked the state's row at every change of every task, about a tenth of the time
    -- of dispatching and recording a batch; a change of state is checked by the transition trigger.
    state          text NOT NULL DEFAULT 'pending' CONSTRAINT task_state_must_exist CHECK (state IN (
        'pending', 'planned', 'dispatched', 'queued', 'running', 'processed', 'on_hold', 'terminated',
        'cancelled', 'blocked')),
    state_reason   text,          -- why it is in this state (e.g. why no plan is possible)
    attempts       integer NOT NULL DEFAULT 0 CONSTRAINT task_attempts_is_not_negative CHECK (attempts >= 0),
    failures       integer NOT NULL DEFAULT 0 CONSTRAINT task_failures_is_not_negative CHECK (failures >= 0),
    not_before     timestamptz,   -- retry backoff: not planned to start before this
    plan_id        bigint CONSTRAINT task_plan_must_exist REFERENCES hrwsi.plan (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    lane           text NOT NULL DEFAULT 'nrt',  -- as routine
    -- The lane's priority when the task was created (0 most urgent), raised to 0 by ageing. Kept
    -- on the task so that dispatch walks an index in serving order instead of sorting every task.
    priority       smallint NOT NULL DEFAULT 0,
    deadline_at    timestamptz,
    -- Time-series routines (sequential_per_tile): the series a task belongs to, and its place in it.
    series_tile    text,
    series_at      timestamptz,
    -- Attempts lost to infrastructure (a vanished launcher, node or allocation): retried without limit,
    -- with backoff, alerted when they repeat; they never count as failures of the routine.
    lost_count     integer NOT NULL DEFAULT 0 CONSTRAINT task_lost_count_is_not_negative CHECK (lost_count >= 0),
    -- An operator released a task whose dependency did not end processed: it runs without it.
    dependency_waived boolean NOT NULL DEFAULT false,
    -- A reprocessing campaign's task (NULL: production's).
    campaign_id    bigint CONSTRAINT task_campaign_must_exist REFERENCES hrwsi.campaign (id),
    finished_at    timestamptz,   -- when it reached a final state (NULL while open); kept by the trigger below
    history_pruned_at timestamptz,  -- when retention deleted its history and attempts
    -- What its attempt `held_attempt` holds on its worker when its routine's CPU, RAM or storage
    -- changed while it was in flight: the sizes it was dispatched with (migration 0067). Otherwise
    -- (NULL, or an earlier attempt) it holds what its routine asks. Counted at the new size, a
    -- routine made smaller let dispatch put more on a worker than it has, and plans showed peak use
    -- above the budget. Written when the routine changes (rare), never by the claim (hot).
    held_cpu        numeric,
    held_ram_mb     integer,
    held_storage_mb integer,
    held_attempt    integer,
    -- (a time-series task of a chained step, migration 0072) The task of the routine upstream (its
    -- output is this routine's input) of a scene of the tile sensed before this one, in the same
    -- scope (production, or this task's campaign), that is still open or processed with products
    -- not chained yet: this task is neither planned nor dispatched until it is NULL. Set and cleared
    -- by hrwsi.wait_for_upstream when this task is created, and when that upstream task is created,
    -- ends, is retried, or has its products chained.
    waits_for_upstream bigint,
    -- (migration 0083) The near-real-time task of its time series whose deadline deadline_at is, taken
    -- because that task cannot run before this one (hrwsi.create_tasks_for_new_inputs), and the
    -- deadline this task had of its own then (NULL: none, an archive task). NULL: deadline_at is its
    -- own. Dispatch serves it by deadline_at; alerts and timeliness count its lateness against its own.
    -- (No key: a task retention removes leaves the id said.)
    deadline_inherited_from bigint,
    own_deadline_at timestamptz,
    -- (migration 0086) The task of its time series whose priority it took (priority is then not its lane's),
    -- for the same reason, named apart from the deadline: a task raised for its priority alone (its own
    -- deadline earlier than the waiter's, or the waiter with none) kept that priority when the waiter was
    -- cancelled or corrected, and was served ahead of near-real-time work (found by review). NULL: its
    -- priority is its own (its lane's, or 0 once aged), which hrwsi.give_back_taken_deadlines gives it again.
    priority_inherited_from bigint,
    -- (migration 0087) The worker where the backend could not place its last attempt (fault not_placed:
    -- Nomad held the job unplaced for HRWSI_NOMAD_UNPLACED_LIMIT_S, that node drained, ineligible, or its
    -- CPU taken by another team's job). hrwsi counts that worker free, so the next attempt went back
    -- there, 600 s a round, while another worker was idle (found by review). The planner and
    -- hrwsi.dispatch put its next attempt on another worker of a flavour it fits, where one is active
    -- (else there again, and the reason says so). Set by hrwsi.record_outcomes; cleared once an attempt
    -- of the task runs (hrwsi.mark_jobs_progress) or ends otherwise than lost. No key: a worker removed
    -- leaves the name said, and nothing avoids it.
    avoid_worker text,
    -- (migration 0095) An operator's hold of the task itself (`hrwsi hold <task>`), kept while the end of the task it
    -- waits for blocks it (held -> blocked): its wait ended, it became pending, and the hold was lost (found by
    -- review). Set by the steps of hrwsi.after_task_changes that block, and by hrwsi.hold_task of a blocked task
    -- (migration 0118); read by the steps that unblock (the trigger's, hrwsi.skip_cancelled_tasks), which hold it
    -- again, by hrwsi.release_task, which lifts it alone, and by `hrwsi status` (held tasks).
    held_while_blocked boolean NOT NULL DEFAULT false,
    -- One task per input for production, and one more per campaign that reprocesses it.
    CONSTRAINT task_is_unique_per_input_and_campaign UNIQUE NULLS NOT DISTINCT (input_id, campaign_id),
    CONSTRAINT task_does_not_depend_on_itself CHECK (depends_on <> id),
    CONSTRAINT task_planned_has_a_worker_and_start
        CHECK (state NOT IN ('planned', 'dispatched', 'queued', 'running') OR (worker IS NOT NULL AND planned_start IS NOT NULL))
);
CREATE INDEX processing_task_depends_on_idx ON hrwsi.processing_task (depends_on) WHERE depends_on IS NOT NULL;
CREATE INDEX processing_task_worker_idx ON hrwsi.processing_task (worker);
CREATE INDEX processing_task_planned_order_idx ON hrwsi.processing_task
    (priority, deadline_at NULLS LAST, planned_start, id) WHERE state = 'planned';
CREATE INDEX processing_task_pending_order_idx ON hrwsi.processing_task
    (priority, deadline_at NULLS LAST, id) WHERE state = 'pending';
CREATE INDEX processing_task_series_idx ON hrwsi.processing_task (routine, series_tile, series_at, id)
    WHERE series_tile IS NOT NULL;
CREATE INDEX processing_task_deadline_idx ON hrwsi.processing_task (deadline_at)
    WHERE deadline_at IS NOT NULL AND state NOT IN ('processed', 'terminated', 'cancelled');
CREATE INDEX processing_task_campaign_idx ON hrwsi.processing_task (campaign_id) WHERE campaign_id IS NOT NULL;
-- Retention finds old finished tasks by state and age, and those whose history is still there by age;
-- a plan is deleted only when no open task holds it.
CREATE INDEX processing_task_finished_idx ON hrwsi.processing_task (state, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX processing_task_history_to_prune_idx ON hrwsi.processing_task (finished_at)
    WHERE finished_at IS NOT NULL AND history_pruned_at IS NULL;
CREATE INDEX processing_task_plan_idx ON hrwsi.processing_task (plan_id) WHERE plan_id IS NOT NULL;
-- The tasks that wait for an upstream task (hrwsi.wait_for_upstream_after, when that task ends or its
-- products are chained): empty but for time series of chained steps whose earlier scenes are on their way.
CREATE INDEX processing_task_waits_for_upstream_idx ON hrwsi.processing_task (waits_for_upstream)
    WHERE waits_for_upstream IS NOT NULL;
-- The tasks that took a task's deadline or priority (hrwsi.give_back_taken_deadlines, at every cancel: migration
-- 0089, and every hold: 0090): a probe by key of the few raised, where the cancel of one task read every task.
CREATE INDEX processing_task_deadline_inherited_from_idx ON hrwsi.processing_task (deadline_inherited_from)
    WHERE deadline_inherited_from IS NOT NULL;
CREATE INDEX processing_task_priority_inherited_from_idx ON hrwsi.processing_task (priority_inherited_from)
    WHERE priority_inherited_from IS NOT NULL;

CREATE FUNCTION hrwsi.enforce_task_transition() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT hrwsi.task_transition_is_allowed(OLD.state, NEW.state) THEN
            RAISE EXCEPTION 'task %: the transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'task_transition_is_allowed',
                      HINT = (SELECT 'from ' || OLD.state || ' a task may go to: '
                                     || coalesce(string_agg(to_state, ', ' ORDER BY to_state), 'nothing (final)')
                              FROM hrwsi.task_transition WHERE from_state = OLD.state);
        END IF;
        -- Finished now, or open again (an operator's retry): its age for retention starts afresh.
        NEW.finished_at := CASE WHEN hrwsi.task_state_is_final(NEW.state) THEN now() END;
        NEW.history_pruned_at := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
-- The function runs only for a row it would change or refuse (migration 0023): a statement that
-- sets updated_at to now() and, when it changes the state, finished_at and history_pruned_at as the
-- function would, to a state the rules allow, needs no call of PL/pgSQL for each of its rows (the
-- hot statements of dispatch, outcomes and progress do: recording a batch 6 % faster).
-- Every other UPDATE gets the function, as before. The rules are written here as one constant, the
-- list of allowed "from>to" pairs (migration 0032; a test keeps it equal to hrwsi.task_transition):
-- PostgreSQL prepares the condition for every UPDATE statement, and calling
-- hrwsi.task_transition_is_allowed there made it inline the function, parsing its stored body
-- again each time: 75 us of the 860 us of server CPU a one-task dispatch cost (9 %). (Written out
-- as the function's CASE, the rules cost more than the call: migration 0023.)
CREATE TRIGGER processing_task_enforce_transition BEFORE UPDATE ON hrwsi.processing_task
    FOR EACH ROW
    WHEN (NEW.updated_at IS DISTINCT FROM now()
          OR (NEW.state IS DISTINCT FROM OLD.state
              AND (NOT OLD.state || '>' || NEW.state = ANY ('{pending>planned, pending>dispatched, pending>on_hold,
                       pending>blocked, pending>cancelled, planned>pending, planned>dispatched, planned>on_hold,
                       planned>blocked, planned>cancelled, dispatched>queued, dispatched>running,
                       dispatched>processed, dispatched>pending, dispatched>terminated, dispatched>cancelled,
                       queued>running, queued>processed, queued>pending, queued>terminated, queued>cancelled,
                       running>queued, running>processed, running>pending, running>terminated, running>cancelled,
                       on_hold>pending, on_hold>blocked, on_hold>cancelled, blocked>pending, blocked>cancelled,
                       blocked>on_hold, terminated>pending, cancelled>pending}'::text[])
                   OR NEW.finished_at IS DISTINCT FROM CASE WHEN NEW.state IN ('processed', 'terminated', 'cancelled')
                                                            THEN now() END
                   OR NEW.history_pruned_at IS NOT NULL)))
    EXECUTE FUNCTION hrwsi.enforce_task_transition();

-- =============================================================================================
-- Jobs: one row per attempt of a task. A job in a final state never changes.
-- =============================================================================================

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

-- From each open state to every other state.
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
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id          bigint NOT NULL,  -- no foreign key (migration 0028): hrwsi.refuse_a_job_of_a_missing_task
    attempt          integer NOT NULL CONSTRAINT job_attempt_is_positive CHECK (attempt >= 1),
    backend          text NOT NULL,
    backend_job_id   text NOT NULL,   -- hrwsi-<routine>-<task>-<attempt>[-c<claim_token's first 8 hex>] (ADR 0002)
    worker           text,
    -- One of hrwsi.job_state (a test keeps the two lists equal); a check, as the task's state.
    state            text NOT NULL DEFAULT 'submitted' CONSTRAINT job_state_must_exist CHECK (state IN (
        'submitted', 'queued', 'running', 'processed', 'internal_error', 'external_error', 'lost', 'cancelled')),
    exit_code        integer,
    message          text,
    owner            text,            -- the launcher instance following it
    log_path         text,
    output_dir       text,
    submitted_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A job that is cancelled by an operator while it runs: the launcher stops it in the backend.
    cancel_requested boolean NOT NULL DEFAULT false,
    -- What went wrong around an attempt that is not the routine's fault (a lost attempt).
    fault            text CONSTRAINT job_fault_is_known CHECK (fault IN (
        'launcher_gone',       -- its launcher stopped or lost its lease before the job ended
        'worker_gone',         -- its worker (Nomad node) went away or became inactive
        'backend_lost_track',  -- the backend no longer knows the job (state loss, garbage collected early)
        'stopped_by_hrwsi',    -- hrwsi stopped it (shutdown, a stranded job) without an operator asking
        'backend_unavailable', -- the backend could not be reached, or refused the launcher's credentials (0049)
        'storage_unavailable', -- the attempt's directory could not be made (disk full, read-only; 0054)
        'not_placed'           -- the backend could not place it on its worker in time (Nomad's unplaced limit; 0087)
    )),
    routine_version  text,            -- the command or image the attempt ran (reprocessing keeps them apart)
    -- Unique per claim (each claim inserts its own row), put in the Nomad job's Meta (hrwsi_claim): a job
    -- found on the attempt's ID is this claim's own registration only when it carries it (migration 0080:
    -- after a restore from an older backup, the jobs of the work done since hold the reused IDs). NULL
    -- on rows claimed before 0080.
    claim_token      uuid DEFAULT gen_random_uuid(),
    CONSTRAINT job_is_unique_per_task_attempt UNIQUE (task_id, attempt),
    CONSTRAINT job_backend_job_id_is_unique UNIQUE (backend, backend_job_id)
);
CREATE INDEX job_active_idx ON hrwsi.job (state) WHERE state IN ('submitted', 'queued', 'running');

-- The rule of hrwsi.job_transition as an expression, for the same reason as the task's (a test keeps
-- the two equal).
CREATE FUNCTION hrwsi.job_transition_is_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN from_state IN ('submitted', 'queued', 'running') AND to_state <> from_state
   AND to_state IN ('queued', 'running', 'processed', 'internal_error', 'external_error', 'lost', 'cancelled');

CREATE FUNCTION hrwsi.enforce_job_transition() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT hrwsi.job_transition_is_allowed(OLD.state, NEW.state) THEN
        RAISE EXCEPTION 'job % (task %): the transition % -> % is not allowed', OLD.id, OLD.task_id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_transition_is_allowed',
                  HINT = 'a job in a final state (processed, internal_error, external_error, lost, cancelled) never changes; retry the task instead';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
-- As the task's (migrations 0023, 0032): called only for a row it would change or refuse, the rules
-- as the constant list of allowed "from>to" pairs (a test keeps it equal to hrwsi.job_transition).
CREATE TRIGGER job_enforce_transition BEFORE UPDATE ON hrwsi.job
    FOR EACH ROW
    WHEN (NEW.updated_at IS DISTINCT FROM now()
          OR (NEW.state IS DISTINCT FROM OLD.state
              AND NOT OLD.state || '>' || NEW.state = ANY ('{submitted>queued, submitted>running, submitted>processed,
                      submitted>internal_error, submitted>external_error, submitted>lost, submitted>cancelled,
                      queued>running, queued>processed, queued>internal_error, queued>external_error, queued>lost,
                      queued>cancelled, running>queued, running>processed, running>internal_error,
                      running>external_error, running>lost, running>cancelled}'::text[])))
    EXECUTE FUNCTION hrwsi.enforce_job_transition();

-- =============================================================================================
-- Products: the files a task wrote. The harvester chains them into inputs (chained_at).
-- =============================================================================================

CREATE TABLE hrwsi.product (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      bigint CONSTRAINT product_task_must_exist REFERENCES hrwsi.processing_task (id),
    path         text NOT NULL CONSTRAINT product_path_is_not_empty CHECK (btrim(path) <> '')
        CONSTRAINT product_path_is_at_most_2000_bytes CHECK (octet_length(path) <= 2000)
        -- (nor invisible characters, as an input's path: it becomes the next step's; migration 0079; nor
        -- those that look like a space or nothing: migration 0083)
        CONSTRAINT product_path_is_absolute_without_control_characters
        CHECK (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'
               AND path !~ '(^|/)\.\.(/|$)')
        -- (a product becomes the next step's input, whose path may not hold `${`; migration 0066)
        CONSTRAINT product_path_has_no_dollar_brace CHECK (strpos(path, '${') = 0),
    product_type text NOT NULL CONSTRAINT product_type_is_not_empty CHECK (btrim(product_type) <> ''),
    size_bytes   bigint CONSTRAINT product_size_bytes_is_not_negative CHECK (size_bytes >= 0),  -- (migration 0079)
    created_at   timestamptz NOT NULL DEFAULT now(),
    chained_at   timestamptz,   -- when the harvester turned it into inputs (NULL: not yet)
    CONSTRAINT product_path_is_unique UNIQUE (path),
    -- The input whose correction made this product outdated (hrwsi.correct_input, migration 0097): made from
    -- the old version of the input, or down a chain from its products. Never chained again (nor by
    -- hrwsi.chain_missed_products), never a member of a multi-input group. NULL: current.
    outdated_by  bigint
);
CREATE INDEX product_task_idx ON hrwsi.product (task_id);
CREATE INDEX product_not_chained_idx ON hrwsi.product (id) WHERE chained_at IS NULL;
-- Finding the members of multi-input groups fast: products by type.
CREATE INDEX product_type_idx ON hrwsi.product (product_type);
-- The products of one day (UTC), the timeliness view's day: the dashboard reads its newest days alone (migration 0100).
CREATE INDEX product_day_idx ON hrwsi.product (((created_at AT TIME ZONE 'UTC')::date));

-- =============================================================================================
-- History: one row per task state change, written by trigger, append-only.
-- =============================================================================================

-- No foreign key to the task: only the trigger below writes this table (as the owner), from the
-- rows its statement changed, so the task exists by construction; and a task is deleted only by
-- hrwsi.prune_finished_tasks, after its history, with the task locked. The key probed and locked
-- the task for every history row: about 8 % of inserting, dispatching and recording (migration 0021).
CREATE TABLE hrwsi.task_event (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  bigint NOT NULL,
    state    text NOT NULL,
    reason   text,
    attempts integer NOT NULL,
    worker   text,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX task_event_task_idx ON hrwsi.task_event (task_id, id);

-- DELETE only inside the retention functions (end of this file), which run as the owner.
CREATE FUNCTION hrwsi.refuse_history_change() RETURNS trigger LANGUAGE plpgsql
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
CREATE TRIGGER task_event_is_append_only BEFORE UPDATE OR DELETE ON hrwsi.task_event
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_history_change();

-- TRUNCATE: the history and the inputs are never emptied in one blow (retention deletes old
-- finished rows in batches and keeps every product's lineage).
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

-- The refusal the task's foreign key to its worker gave (migration 0036: the key is gone), with its
-- name, message and detail, for the first of the named workers that does not exist: raised by the
-- two writers that check the workers tasks are put on, hrwsi.after_task_changes and hrwsi.dispatch's
-- claim (migration 0040), each after locking those it found.
CREATE FUNCTION hrwsi.refuse_a_missing_worker(named_workers text[]) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    missing text;
BEGIN
    SELECT x.name INTO missing FROM unnest(named_workers) x(name)
    WHERE NOT EXISTS (SELECT 1 FROM worker w WHERE w.name = x.name) LIMIT 1;
    RAISE EXCEPTION 'insert or update on table "processing_task" violates foreign key constraint "task_worker_must_exist"'
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_worker_must_exist',
              DETAIL = format('Key (worker)=(%s) is not present in table "worker".', missing),
              HINT = 'the workers are configuration: `hrwsi config show` lists them';
END $$;

-- The states of work under way (migration 0043): a task dispatched, queued or running, a job submitted,
-- queued or running. A change to one of them gives no service work (the launcher that made it
-- follows the job already; what ends it is told on the table's channel), so it is told on the
-- table's channel `_progress` (hrwsi_task_progress, hrwsi_job_progress), which only observers (the
-- dashboard) listen to: the launcher heard each of its own claims and progress marks on the channels
-- it listens to, at the moment it was handing the job to its backend (issue 15: the reaction
-- latency). An SQL function of one expression: inlined into the queries that call it.
CREATE FUNCTION hrwsi.state_is_under_way(state text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN state IN ('dispatched', 'submitted', 'queued', 'running');

-- A task of a time series cancelled (`hrwsi cancel`): the task after it in its series, if it has not
-- started, takes the task sensed before the cancelled one as its own, as a scene inserted now would
-- (the series' links skip cancelled tasks), and says so in its reason and its history; behind a task
-- that cannot run it is blocked, saying so. It was blocked behind the cancelled task for ever, waiting
-- for a product that would never come, and its reason offered only `hrwsi retry` of what ops had
-- cancelled or `hrwsi release`, which runs it as the series' first, without a previous product (found
-- by exploratory testing; migration 0084). Under the series' lock: hrwsi.cancel_task takes it before
-- the row; a cancel by another statement tries it (this runs holding the cancelled rows, and must not
-- wait), and a series whose lock another transaction holds keeps the old way: its next task is
-- blocked, its reason naming both commands. A relinked task passes its urgency down (migration 0086).
-- (migration 0095) The hold a task of this routine, campaign and lane takes now, as a new one would: its routine's
-- (on hold), its campaign's, or its routine's back-fill's (a production task of a lane less urgent than near-real-time);
-- NULL when none. The steps that unblock a task hold it with it: it became pending, shown so while no new task of its
-- routine was (found by review). Read only where a task is unblocked, never by a claim or an outcome.
CREATE FUNCTION hrwsi.hold_a_new_task_takes(p_routine text, p_campaign bigint, p_lane text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                WHEN k.on_hold THEN format('campaign %s on hold: %s', k.id, k.hold_reason)
                WHEN p_campaign IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason) END
    FROM processing_routine r
    LEFT JOIN campaign k ON k.id = p_campaign
    LEFT JOIN lane l ON l.name = p_lane
    WHERE r.name = p_routine
$$;

-- (migration 0095) Whether a held task's reason is a hold of its own, an operator's (hrwsi.hold_task; kept by a move,
-- or a block, after what it says), not its routine's, campaign's or back-fill's, which hold it again by themselves.
CREATE FUNCTION hrwsi.hold_is_the_tasks_own(reason text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(starts_with(reason, 'held by an operator')
                OR reason LIKE 'moved from routine % by an operator; held by an operator%', false);

-- (migration 0123) The words that open the reason of a task an operator held while it was blocked (held_while_blocked),
-- once its wait ends and it is held again, before what it waited for. One place, for the seven functions that end a
-- blocked task's wait; it starts as hrwsi.hold_is_the_tasks_own reads an operator's hold.
CREATE FUNCTION hrwsi.held_while_blocked_reason() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'held by an operator, its hold kept while it was blocked: ';

-- What an operator runs to lift the hold hrwsi.hold_a_new_task_takes names (the same cases, in its order), said in the
-- answer of an operator's release or retry of one task of it (migration 0098): that lifts the task's own hold (and its
-- block) only, the task stays held with its routine, campaign or back-fill, and the answer says so and how to lift it.
CREATE FUNCTION hrwsi.how_to_lift_a_group_hold(p_routine text, p_campaign bigint, p_lane text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT CASE WHEN r.on_hold THEN format('routine %s is on hold: `hrwsi release %s` releases it', r.name, r.name)
                WHEN k.on_hold THEN format('campaign %s is on hold: `hrwsi campaigns --release %s` releases it', k.id, k.id)
                WHEN p_campaign IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('the back-fill of routine %s is on hold: `hrwsi release %s` releases it', r.name, r.name) END
    FROM processing_routine r
    LEFT JOIN campaign k ON k.id = p_campaign
    LEFT JOIN lane l ON l.name = p_lane
    WHERE r.name = p_routine
$$;

CREATE FUNCTION hrwsi.skip_cancelled_tasks(p_cancelled bigint[]) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi SET enable_nestloop = on AS $$
DECLARE
    key integer;
    keys integer[] := '{}';  -- the keys of the series' locks held (hrwsi.series_lock_key)
    relinked bigint[];
    released integer;
BEGIN
    FOR key IN
        SELECT DISTINCT hrwsi.series_lock_key(t.routine, t.series_tile)
        FROM processing_task c JOIN processing_task t ON t.depends_on = c.id
        WHERE c.id = ANY (p_cancelled) AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ORDER BY 1
    LOOP
        IF pg_try_advisory_xact_lock(7250010, key) THEN
            keys := keys || key;
        END IF;
    END LOOP;
    IF cardinality(keys) = 0 THEN
        RETURN;
    END IF;
    WITH next AS (
        SELECT t.id, t.state AS old_state, c.id AS cancelled, p.id AS previous, p.state AS previous_state,
               CASE WHEN t.state = 'blocked' THEN hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) END AS group_hold
        FROM processing_task c JOIN processing_task t ON t.depends_on = c.id
        JOIN processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        LEFT JOIN LATERAL (
            SELECT p.id, p.state FROM processing_task p
            WHERE p.routine = t.routine AND p.series_tile = t.series_tile AND p.state <> 'cancelled'
              AND p.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (p.series_at, p.id) < (t.series_at, t.id)
            ORDER BY p.series_at DESC, p.id DESC LIMIT 1) p ON true
        WHERE c.id = ANY (p_cancelled) AND c.state = 'cancelled' AND t.series_tile IS NOT NULL
          AND c.routine = t.routine AND c.series_tile = t.series_tile AND c.campaign_id IS NOT DISTINCT FROM t.campaign_id
          AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
          AND hrwsi.series_lock_key(t.routine, t.series_tile) = ANY (keys)
    ), locked AS MATERIALIZED (
        -- (in the order of their ids, as every writer of many tasks locks them)
        SELECT t.id FROM processing_task t WHERE t.id IN (SELECT n.id FROM next n) ORDER BY t.id FOR NO KEY UPDATE OF t
    ), changed AS (
        UPDATE processing_task t
        SET depends_on = n.previous,
            -- (a blocked one that runs now is held again if an operator held it before it was blocked, or with its
            -- routine, campaign or back-fill if that is held: migration 0095; a held one behind a task that cannot
            -- run is blocked, an operator's hold of it kept to hold it again when its wait ends, as the end of the
            -- task it waits for blocks it: migration 0098, found by review. It stayed held, its wait never decided
            -- again, and was pending once released, behind a task that could not run)
            state = CASE WHEN n.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'on_hold' THEN 'on_hold'
                         WHEN t.state = 'blocked' AND (t.held_while_blocked OR n.group_hold IS NOT NULL) THEN 'on_hold'
                         WHEN t.state = 'blocked' THEN 'pending' ELSE t.state END,
            held_while_blocked = CASE WHEN NOT coalesce(n.previous_state IN ('terminated', 'blocked'), false) THEN false
                                      WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                      ELSE t.held_while_blocked END,
            worker = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                                 ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' AND n.previous_state IN ('terminated', 'blocked') THEN NULL
                               ELSE t.planned_end END,
            state_reason = CASE WHEN t.state <> 'blocked' OR n.previous_state IN ('terminated', 'blocked') THEN ''
                                WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                WHEN n.group_hold IS NOT NULL THEN n.group_hold || '; ' ELSE '' END || CASE
                WHEN t.state = 'on_hold' AND NOT coalesce(n.previous_state IN ('terminated', 'blocked'), false)
                THEN t.state_reason
                WHEN n.previous IS NULL THEN
                    format('task %s before it in its time series was cancelled: it is the first of its series now, and '
                           'runs without a previous product', n.cancelled)
                WHEN n.previous_state = 'terminated' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which ended terminated; `hrwsi retry %s` runs that task again, `hrwsi release %s` '
                           'runs this task without it', n.cancelled, n.previous, n.previous, t.id)
                WHEN n.previous_state = 'blocked' THEN
                    format('task %s before it in its time series was cancelled: it waits for task %s, sensed before '
                           'that one, which has to run before it (`hrwsi task show %s` says what that task waits for): '
                           'it runs once that task has run', n.cancelled, n.previous, n.previous)
                ELSE format('task %s before it in its time series was cancelled: it runs after task %s, sensed before '
                            'that one', n.cancelled, n.previous) END
        FROM next n
        WHERE t.id = n.id AND t.id IN (SELECT l.id FROM locked l) AND t.depends_on = n.cancelled
          AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        RETURNING t.id, t.routine, t.state, t.state_reason, t.attempts, t.worker, n.old_state, n.previous_state
    ), history AS (
        -- (a change of state writes its own row: hrwsi.after_task_changes)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state
    ), alerted AS (
        -- (ops are told of a task blocked behind a terminated one, as when it ends so)
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', c.id, c.routine), c.state_reason, c.id, c.routine
        FROM changed c WHERE c.previous_state = 'terminated' AND c.state = 'blocked'
    )
    SELECT array_agg(c.id), count(*) FILTER (WHERE c.state = 'pending' AND c.old_state = 'pending')
    INTO relinked, released FROM changed c;
    -- (a pending one that stays pending is told to no one by the trigger: its dispatch may be ready now)
    IF released > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts',
                                                          json_build_object('pending', released))::text);
    END IF;
    -- (the scenes before it it waits for upstream now reach back to the task before the cancelled one)
    IF relinked IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(relinked);
        -- (and an urgent one passes its priority and deadline down to the less urgent tasks it waits for now,
        -- at once, as a task linked by an INSERT does: behind a held or blocked task, or after a cancel that
        -- gave nothing back, it passed nothing on until the series' next INSERT; migration 0086)
        PERFORM hrwsi.pass_deadlines_down(relinked);
    END IF;
END $$;

-- After tasks are inserted or updated, once per statement (migration 0032): their history, the
-- wake-up call on hrwsi_task (hrwsi_task_progress for the states of work under way, migration
-- 0043), and, for an UPDATE that ends tasks terminated or cancelled or retries them from there,
-- their dependents blocked or unblocked and ops alerted. One trigger, not the
-- four it replaces (history, notification, dependents, alert): each trigger is a call of PL/pgSQL
-- with its transition tables set up, and the alerts and the dependents ran a query each to learn
-- they had nothing to do; with the transition trigger's condition (above), 95 us less of the
-- server's CPU in a one-task dispatch, 860 us before (11 %).
--
-- The history and the counts join the transition tables with nested loops off. PL/pgSQL prepares a
-- parameterless query once per session and keeps that plan; planned for a statement of a few rows,
-- the join is a nested loop, and the same plan then compared every pair of rows of a 10,000-row
-- UPDATE (100 million comparisons: 8 s to store one plan's assignments). Without nested loops that
-- join is a hash join at any size, and its cached plan stays cheap for one row. The rare
-- statements (dependents, alerts) read the task and input tables through their keys: planned at
-- each run (EXECUTE), with nested loops on again. Hash and merge joins are set on, whatever the
-- session's settings when the plans are made: hrwsi.dispatch turns them off for its claim, whose
-- UPDATE fires this trigger, and a plan made then, with no join allowed, was a nested loop kept for
-- the session (a later 20,000-row UPDATE in it: 57 s instead of 0.6; migration 0034).
--
-- A task names an existing worker without a foreign key (migration 0036): the key probed and locked
-- the worker for every task a statement put on one (2,000 queries in a claim of 2,000 tasks; without
-- it, the dispatch calls of a burst took 9-19 % less of the server's CPU). Each worker a statement
-- puts tasks on is locked here once, as the key locked it, and a missing one is refused with the
-- key's name and message; removing or renaming a worker that tasks name is refused by
-- hrwsi.refuse_removing_what_tasks_name.
-- The claim of hrwsi.dispatch is the one UPDATE this trigger leaves alone (migration 0040): the
-- claim writes the history rows, locks the workers and sends the wake-up call itself, in its own
-- statement, and says so for that statement in the transaction's setting `hrwsi.in_dispatch_claim`
-- (the function's SET clause turns it off again on return). This trigger's call, with its transition
-- tables and its statements, was 0.2 of the 2 ms a one-task dispatch call takes on a server idle
-- between two inputs, which is where the reaction latency is spent. Only the services may update
-- tasks, so only they could set it otherwise.
-- SECURITY DEFINER: whoever changes a task writes its history and its alerts.
CREATE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on SET jit = off AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state ...
    progress json;         -- ... but those of work under way (hrwsi.state_is_under_way), told apart
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    upstream bigint[];     -- (of an UPDATE) tasks upstream of a time series that ended ...
    reopened bigint[];     -- ... or were retried from their end
    cancelled bigint[];    -- (of an UPDATE) tasks cancelled ...
    lenders bigint[];      -- ... or held: they lend no priority nor deadline (migration 0090)
    finished boolean;      -- tasks ended, were retried from their end, or moved once finished (migration 0105)
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('hrwsi.in_dispatch_claim', true) = 'on' THEN
        RETURN NULL;  -- hrwsi.dispatch's claim: it writes all of this itself, in its own statement
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) FILTER (WHERE NOT hrwsi.state_is_under_way(state)),
               json_object_agg(state, n) FILTER (WHERE hrwsi.state_is_under_way(state)),
               bool_or(hrwsi.task_state_is_final(state))
        INTO counts, progress, finished
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
        SELECT array_agg(DISTINCT worker) INTO named_workers FROM new_rows WHERE worker IS NOT NULL;
        -- (the finished tasks' counts, hrwsi.finished_task_count: migration 0105; a task is created pending, so
        -- this is a statement more only for tasks written finished, a back-fill of history)
        IF finished THEN
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT routine, lane, state, count(*) FROM new_rows WHERE hrwsi.task_state_is_final(state)
            GROUP BY routine, lane, state;
        END IF;
    ELSE
        -- The history, the counts and the workers named from one join of the transition tables.
        -- (and whether the finished tasks' counts change: a task that ends, is retried from its end, or is moved to
        -- another routine or lane once finished; migration 0105)
        WITH changed AS MATERIALIZED (
            SELECT n.id, n.state, n.state_reason, n.attempts, n.worker,
                   n.state IS DISTINCT FROM o.state AS state_changed,
                   n.worker IS DISTINCT FROM o.worker AS worker_changed,
                   (n.state IS DISTINCT FROM o.state
                    AND (hrwsi.task_state_is_final(n.state) OR hrwsi.task_state_is_final(o.state)))
                   OR (hrwsi.task_state_is_final(n.state) AND (n.routine, n.lane) IS DISTINCT FROM (o.routine, o.lane))
                       AS finished_changed
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker
               OR (hrwsi.task_state_is_final(n.state) AND (n.routine, n.lane) IS DISTINCT FROM (o.routine, o.lane))
        ), event AS (
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT id, state, state_reason, attempts, worker FROM changed WHERE state_changed OR worker_changed
        ), per_state AS (
            SELECT state, count(*) AS n FROM changed WHERE state_changed GROUP BY state
        ), named AS MATERIALIZED (
            SELECT array_agg(DISTINCT c.worker) AS workers FROM changed c WHERE c.worker_changed AND c.worker IS NOT NULL
        ), locked_workers AS (
            -- (each worker a statement put tasks on locked once, as below for an INSERT; in this
            -- statement since migration 0037: a claim's UPDATE paid a statement more)
            SELECT 1 FROM worker w WHERE w.name = ANY ((SELECT n.workers FROM named n)::text[]) FOR KEY SHARE OF w
        )
        SELECT (SELECT json_object_agg(p.state, p.n) FILTER (WHERE NOT hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT json_object_agg(p.state, p.n) FILTER (WHERE hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT array_agg(p.state) FROM per_state p),
               (SELECT n.workers FROM named n), (SELECT count(*) FROM locked_workers),
               (SELECT bool_or(c.finished_changed) FROM changed c)
        INTO counts, progress, new_states, named_workers, locked, finished;
        -- The finished tasks' counts (migration 0105), read again from the transition tables only when they change:
        -- a statement that moves work along (dispatched, running, planned again) pays the flag above alone.
        IF finished THEN
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT f.routine, f.lane, f.state, sum(f.n)
            FROM new_rows n JOIN old_rows o USING (id)
            CROSS JOIN LATERAL (VALUES (o.routine, o.lane, o.state, -1), (n.routine, n.lane, n.state, 1))
                f (routine, lane, state, n)
            WHERE (n.state, n.routine, n.lane) IS DISTINCT FROM (o.state, o.routine, o.lane)
              AND hrwsi.task_state_is_final(f.state)
            GROUP BY f.routine, f.lane, f.state HAVING sum(f.n) <> 0;
        END IF;
        -- (migration 0072) Tasks that ended, or were retried from their end, of a routine whose output
        -- a time-series routine reads: the series' tasks after their scene may wait no more, or again.
        -- Read only where some time series reads another routine's output: elsewhere a statement pays
        -- one look at the routines, not a test of every changed row.
        IF EXISTS (SELECT 1 FROM processing_routine r JOIN processing_routine d
                   ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile) THEN
            SELECT array_agg(n.id) FILTER (WHERE hrwsi.task_state_is_final(n.state)),
                   array_agg(n.id) FILTER (WHERE NOT hrwsi.task_state_is_final(n.state))
            INTO upstream, reopened
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state
              AND (hrwsi.task_state_is_final(n.state) OR hrwsi.task_state_is_final(o.state))
              AND n.routine IN (SELECT r.name FROM processing_routine r JOIN processing_routine d
                                ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile);
        END IF;
    END IF;
    -- A task names an existing worker (migration 0036): each worker a statement put tasks on is
    -- locked once, as the key locked it for every task, then must be there.
    IF named_workers IS NOT NULL THEN
        IF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO locked
            FROM (SELECT 1 FROM worker w WHERE w.name = ANY (named_workers) FOR KEY SHARE OF w) l;
        END IF;
        IF locked < cardinality(named_workers) THEN
            PERFORM hrwsi.refuse_a_missing_worker(named_workers);
        END IF;
    END IF;
    -- A wake-up call (docs/adr/0001), sent at commit: {"op": "update", "counts": {"planned": 3}}.
    IF counts IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    END IF;
    IF progress IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task_progress', json_build_object('op', lower(TG_OP), 'counts', progress)::text);
    END IF;
    -- The time-series tasks that wait for these upstream tasks wait no more, or for the next open
    -- scene before them; those after a retried one's scene wait for it again (migration 0072). An end
    -- only releases: a series whose lock another transaction holds is left to the orchestrator's sweep,
    -- not waited for (the launcher's outcome writer waited, then failed: found by review); a retry
    -- adds waits, and waits for the locks.
    IF upstream IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(upstream, false);
    END IF;
    IF reopened IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(reopened, true);
    END IF;
    IF TG_OP = 'INSERT' OR new_states IS NULL
            OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending', 'blocked', 'on_hold'] THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('enable_nestloop', 'on', true);  -- until this call returns (its SET clause)

    -- A task that failed for good: ops are told, with what to do.
    IF 'terminated' = ANY (new_states) THEN
        EXECUTE $q$
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', n.id, n.routine),
                   format('Task %s (routine %s, input %s) failed %s time(s) and will not be retried automatically. '
                          'Last: %s. Retry it with `hrwsi retry %s`.', n.id, n.routine, i.input_path, n.failures,
                          coalesce(n.state_reason, '-'), n.id),
                   n.id, n.routine
            FROM new_rows n JOIN old_rows o USING (id) JOIN input i ON i.id = n.input_id
            WHERE n.state = 'terminated' AND o.state <> 'terminated' $q$;
    END IF;
    -- A task of a time series cancelled: the task after it takes the one before it as its own (migration
    -- 0084) ... and the tasks that took the cancelled ones' priority or deadline give them back (migration 0089:
    -- whoever cancels, a campaign's cancel of its tasks or an UPDATE by hand too, not hrwsi.cancel_task and
    -- hrwsi.correct_input alone: the tasks before a fresh scene cancelled otherwise kept its priority for good,
    -- served ahead of near-real-time work; found by review). After the skip, as those two call them: the tasks
    -- after a cancelled one wait for the task before it by then, and pass their own down at once. Each task
    -- that took one is found by key (the partial indexes of the names): none found, nothing more is read.
    -- A task held (by hand, with its routine, its campaign or its back-fill) gives back in the same step what
    -- it lent (migration 0090): it lends nothing while held (hrwsi.pass_deadlines_down), and the tasks before
    -- an urgent scene an operator held stayed raised, served ahead of near-real-time work that could run;
    -- released, it lends again at once (below, with the tasks pending again). The only caller of the
    -- give-back: hrwsi.cancel_task and hrwsi.correct_input called it again after their UPDATE, which found
    -- nothing left, two probes of the indexes for nothing.
    IF new_states && ARRAY['cancelled', 'on_hold'] THEN
        -- (a task held in the middle of a chain takes back too what passed through it, from the tasks before it:
        -- the task it took that from waits behind it, and cannot run before it is released, so that the tasks
        -- before it had no reason to be urgent on its behalf; they record only whose urgency it was, so that
        -- is given back from all who took it, and passed down again as far as the held task: migration 0091,
        -- found by review; read from the rows at hand, no statement more)
        SELECT array_agg(d.id) FILTER (WHERE d.state = 'cancelled'),
               array_agg(d.id)
               || array_agg(d.deadline_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.deadline_inherited_from IS NOT NULL)
               || array_agg(d.priority_inherited_from) FILTER (WHERE d.state = 'on_hold' AND d.priority_inherited_from IS NOT NULL)
        INTO cancelled, lenders
        FROM new_rows d JOIN old_rows o USING (id)
        WHERE d.state IN ('cancelled', 'on_hold') AND o.state <> d.state;
        IF 'cancelled' = ANY (new_states) THEN
            PERFORM hrwsi.skip_cancelled_tasks(ARRAY(SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
                                                     WHERE d.state = 'cancelled' AND o.state <> 'cancelled'
                                                       AND d.series_tile IS NOT NULL));
        END IF;
        IF lenders IS NOT NULL THEN
            PERFORM hrwsi.give_back_taken_deadlines(lenders);
        END IF;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents (a time series' task that
    -- did not take the one before a cancelled task: its series' lock was busy; the orchestrator's sweep,
    -- hrwsi.recheck_upstream_waits, links it once the lock is free: migration 0090) ...
    IF new_states && ARRAY['terminated', 'cancelled'] THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    -- (an operator's hold of it kept, to hold it again when its wait ends: migration 0095)
                    held_while_blocked = t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason),
                    -- (a task of a time series whose previous task was cancelled while the series' lock was busy,
                    -- as the sweep finds it: the sweep links it to the task before the cancelled one, and ops are
                    -- not alerted; its reason offered a retry of the cancelled task, or a release that would run
                    -- it out of sensing order, until the sweep: migration 0091, found by review)
                    state_reason = CASE WHEN d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                                             AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id
                                        THEN format('task %s before it in its time series was cancelled while another '
                                                    'transaction held the series'' lock: the orchestrator''s sweep links '
                                                    'it to the task before that one within a minute', d.id)
                                        ELSE format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                                    'dependency again, `hrwsi release %s` runs this task without it',
                                                    d.id, d.state, d.id, t.id) END
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason,
                          d.state = 'cancelled' AND t.series_tile = d.series_tile AND t.routine = d.routine
                          AND t.campaign_id IS NOT DISTINCT FROM d.campaign_id AS swept
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked WHERE swept IS NOT TRUE $q$;
    END IF;
    -- ... and, blocked, the tasks after them in their chain (a time series' later scenes of the tile),
    -- all at once, without an alert of their own: they stayed planned, at a time long past and with
    -- no reason, for as long as the blocked task waited (found by exploratory testing; migration
    -- 0060). One statement for the whole chain: a trigger per link would nest as deep as the series
    -- is long. (This trigger then runs for the rows it blocked, and finds nothing left to block.)
    IF 'blocked' = ANY (new_states) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root) AS (
                SELECT t.id, b.id FROM new_rows b JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = b.id
                WHERE b.state = 'blocked' AND o.state <> 'blocked'
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                UNION ALL
                SELECT t.id, a.root FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
            ), locked AS MATERIALIZED (
                -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (the reason names the task it waits for directly, and the root cause: the task that
            -- ended, behind which the chain waits; it named the chain's first blocked task alone, so
            -- that a task three links down named a task it did not wait for: migration 0073. What it waits
            -- for, not the state of those tasks, which they outgrow while the reason stays, "which is blocked"
            -- of a task cancelled, held or moved since: migration 0098)
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                held_while_blocked = t.state = 'on_hold' AND hrwsi.hold_is_the_tasks_own(t.state_reason),
                state_reason = CASE
                    -- (behind one the sweep links past a task cancelled while its series' lock was busy, above)
                    WHEN cause.state = 'cancelled' AND r.series_tile = cause.series_tile AND r.routine = cause.routine
                         AND r.campaign_id IS NOT DISTINCT FROM cause.campaign_id THEN
                        format('waits for task %s, which waits behind task %s, cancelled while its time series'' '
                               'lock was busy: the orchestrator''s sweep links it past that task within a minute, and '
                               'the tasks after it then run in order', t.depends_on, cause.id)
                    WHEN cause.id IS NOT NULL THEN
                        format('waits for task %s, which waits behind task %s, which ended %s: `hrwsi retry %s` '
                               'runs that task again, and the tasks after it then run in order', t.depends_on,
                               cause.id, cause.state, cause.id)
                    WHEN t.depends_on = a.root THEN
                        format('waits for task %s, which has to run before it (`hrwsi task show %s` says what that '
                               'task waits for): it runs once that task has run', a.root, a.root)
                    ELSE format('waits for task %s, which waits behind task %s (`hrwsi task show %s` says what that '
                                'task waits for): it runs once those have run', t.depends_on, a.root, a.root) END
            FROM after_it a JOIN processing_task r ON r.id = a.root
            LEFT JOIN processing_task cause ON cause.id = r.depends_on AND cause.state IN ('terminated', 'cancelled')
            WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
    END IF;
    -- ... and, retried, released or linked to another task (a late scene, a cancelled one skipped), unblocks
    -- them and the tasks after them in their chain, saying which of these happened (migration 0085: "its
    -- dependency was retried or released" was said of a task that had been neither, but now waited for
    -- another task, or for none: found by review).
    -- (one look at the old rows for the two steps below: a statement of the outcome writer that retries
    -- failed tasks pays no more than before migration 0089)
    -- (and a blocked task held again as its wait ends, migration 0095: the tasks after it are no longer blocked)
    IF new_states && ARRAY['pending', 'on_hold']
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked', 'on_hold')) THEN
      IF EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root, what, hold) AS (
                SELECT t.id, d.id,
                       CASE WHEN o.state IN ('terminated', 'cancelled') THEN 'was retried'
                            WHEN d.dependency_waived AND NOT o.dependency_waived
                            THEN 'was released by an operator, to run without the task it waited for'
                            WHEN d.depends_on IS NULL AND o.depends_on IS NOT NULL THEN 'waits for no task now'
                            WHEN d.depends_on IS DISTINCT FROM o.depends_on THEN format('waits for task %s now', d.depends_on)
                            ELSE 'is no longer blocked' END,
                       hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
                FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE (d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                       OR d.state = 'on_hold' AND o.state = 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending, or held: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = d.state)
                UNION ALL
                SELECT t.id, a.root, a.what, hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
                FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            ), locked AS MATERIALIZED (
                SELECT t.id FROM processing_task t WHERE t.id IN (SELECT a.id FROM after_it a)
                ORDER BY t.id FOR NO KEY UPDATE OF t
            )
            -- (one that still waits for upstream work says so too: migration 0077; one an operator held before it
            -- was blocked, or whose routine, campaign or back-fill is held, is held, as a new task of it would be, and
            -- says so first: it was pending, its hold lost, or shown pending while no new task was; migration 0095)
            UPDATE processing_task t
            SET state = CASE WHEN t.held_while_blocked OR a.hold IS NOT NULL THEN 'on_hold' ELSE 'pending' END,
                held_while_blocked = false,
                state_reason = CASE WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                    WHEN a.hold IS NOT NULL THEN a.hold || '; ' ELSE '' END
                    || CASE WHEN t.depends_on = a.root THEN format('its dependency, task %s, %s', a.root, a.what)
                                    ELSE format('its dependency, task %s, is no longer blocked: task %s before it %s',
                                                t.depends_on, a.root, a.what) END
                    || CASE WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                            THEN coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '') ELSE '' END
            FROM after_it a WHERE t.id = a.id AND t.id IN (SELECT l.id FROM locked l) $q$;
      END IF;
      -- A task that waits for a task now pending again (released from a hold, its own or its routine's, its
      -- campaign's or its back-fill's; released or unblocked from blocked; retried) passes its priority and
      -- deadline down to it at once (migration 0089): held or blocked, that task took nothing, and its release
      -- passed nothing down until the series' next INSERT, a near-real-time scene waiting behind archive work
      -- served at the archive lane's priority meanwhile (found by review). The tasks this unblocked, above, do
      -- the same for the tasks after them in this trigger's call for their own UPDATE. (Not a task released to
      -- run without it, dependency_waived: it waits for it no more; hrwsi.pass_deadlines_down's rule.) A task
      -- released from a hold lends its own again, to the tasks it waits for (migration 0090: held, it gave back).
      EXECUTE $q$
          SELECT hrwsi.pass_deadlines_down(ARRAY(
              SELECT t.id FROM new_rows d JOIN old_rows o USING (id) JOIN processing_task t ON t.depends_on = d.id
              WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked', 'on_hold')
                AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              UNION ALL
              SELECT d.id FROM new_rows d JOIN old_rows o USING (id)
              WHERE d.state = 'pending' AND o.state = 'on_hold' AND d.depends_on IS NOT NULL)) $q$;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_task_inserted AFTER INSERT ON hrwsi.processing_task
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_task_changes();
CREATE TRIGGER processing_task_updated AFTER UPDATE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_task_changes();

-- The finished tasks (processed, terminated, cancelled) per routine, lane and state, kept as they change (migration
-- 0105): the dashboard's overview and /metrics showed them counted, which read every task ever run on every read (a
-- scan of the archive, 0.2 to 0.5 s at 1,000,000 tasks, every few seconds while anyone watched or Prometheus
-- scraped). The open tasks are counted through processing_task_state_id_idx: they are the work at hand, not the
-- archive. A count is the sum of its rows: hrwsi.after_task_changes and hrwsi.uncount_removed_tasks add a row of
-- +n or -n per routine, lane and state a statement changes, and never update one, so that writers never wait for
-- each other on a counter (one row per count, updated, made every launcher's outcome wait for the one before it to
-- commit, and two statements of a transaction that touched two routines in turn could deadlock). The readers fold
-- the rows into one per count (hrwsi.finished_task_counts).
CREATE TABLE hrwsi.finished_task_count (
    routine text NOT NULL,
    lane    text NOT NULL,
    state   text NOT NULL,
    n       bigint NOT NULL
);

-- Tasks deleted (retention's finished tasks, or by hand): their counts less them.
CREATE FUNCTION hrwsi.uncount_removed_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    INSERT INTO finished_task_count (routine, lane, state, n)
    SELECT routine, lane, state, -count(*) FROM old_rows WHERE hrwsi.task_state_is_final(state)
    GROUP BY routine, lane, state;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_task_removed_uncounted AFTER DELETE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.uncount_removed_tasks();

-- The finished tasks per routine, lane and state (zero counts left out), as one read of hrwsi.finished_task_count:
-- its rows since the last fold are folded first into one per count, by one reader at a time (the others do not
-- wait: they sum the rows as they are). What it reads grows with the routines and with the statements that ended
-- tasks since the last read, never with the archive. A fold that cannot be written (a read-only transaction, a
-- standby, a full disk, a lock not granted in the session's lock_timeout) is left to the next read: the sums are
-- the same either way. SECURITY DEFINER: any role that reads the dashboard's counts may fold them.
CREATE FUNCTION hrwsi.finished_task_counts() RETURNS TABLE (routine text, lane text, state text, n bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
BEGIN
    IF (SELECT count(*) > count(DISTINCT (c.routine, c.lane, c.state)) FROM finished_task_count c)
            AND pg_try_advisory_xact_lock('hrwsi.finished_task_count'::regclass::oid::bigint) THEN
        BEGIN
            WITH gone AS (DELETE FROM finished_task_count RETURNING routine, lane, state, n)
            INSERT INTO finished_task_count (routine, lane, state, n)
            SELECT g.routine, g.lane, g.state, sum(g.n) FROM gone g
            GROUP BY g.routine, g.lane, g.state HAVING sum(g.n) <> 0;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- (not folded: read as it is; see above)
        END;
    END IF;
    RETURN QUERY
        SELECT c.routine, c.lane, c.state, sum(c.n)::bigint FROM finished_task_count c
        GROUP BY c.routine, c.lane, c.state HAVING sum(c.n) <> 0;
END $$;

-- =============================================================================================
-- Services: live service instances, the lease that tells whose jobs are orphans after a crash.
-- =============================================================================================

CREATE TABLE hrwsi.service_instance (
    id           text PRIMARY KEY,
    kind         text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- (migration 0044) During an upgrade, services of two versions may run side by side on one
    -- database; ops see which runs what in `hrwsi status` and on the dashboard. NULL: registered
    -- by a version before this column.
    version      text,
    -- (migration 0053) What the service cannot do now, in its own words, written at each heartbeat
    -- (the launcher: Nomad out of reach or refusing its token, and what happens to its jobs
    -- meanwhile), and since when; NULL: nothing. `hrwsi status` and the dashboard show it.
    problem       text,
    problem_since timestamptz,
    -- (migration 0065) A launcher of the local backend: the data directory its attempts live in
    -- (an id kept there), since only a launcher that shares it can follow them; NULL: another
    -- backend, or a version before this column. A launcher on another host adopted such jobs it
    -- could not see, recorded them "lost: never started" and ran them again beside the first run
    -- (found by exploratory testing, 2026-12-06).
    site          text,
    -- (migration 0074) Where the service's hrwsi package is and a fingerprint of its files at start
    -- (hrwsi.installed_code): `make install` is editable, and a `git pull` replaced the code under
    -- running services without a word; `hrwsi status` and the dashboard compute it again on their host
    -- and say "code on disk changed since SERVICE started: restart it". NULL: a version before them.
    code_dir         text,
    code_fingerprint text,
    -- (migration 0081) The identity of its process (hrwsi.process_identity): "BOOT_ID PIDNS TIMENS
    -- START_TICKS". A new instance of the same kind on the same host, in the same kernel and namespaces,
    -- that finds this pid not alive or another process ends the lease at once, as its expiry would: a
    -- launcher restarted after a kill -9 waited the dead one's lease (30 s) before its jobs, which held
    -- their workers' capacity, were adopted (found by exploratory testing). NULL: no lease is taken over.
    process_identity text,
    -- (migration 0082) An instance whose lease another took over, its process proven dead: which instance,
    -- when, the proof it had, and the real last heartbeat (heartbeat_at is set back by the lease, so that
    -- every check of a lease finds it lapsed): status showed a last heartbeat 30 s older than the real
    -- one, and not that it was found dead and replaced (found by exploratory testing). NULL: not taken over.
    taken_over_by     text,
    taken_over_at     timestamptz,
    taken_over_why    text,
    last_heartbeat_at timestamptz,
    -- (migration 0121) A launcher waiting for its jobs as it stops (HRWSI_SHUTDOWN_GRACE_S): since when, and what
    -- it waits for in its own words, with when it stops the jobs still running; written as it begins to wait and
    -- at each heartbeat meanwhile, which renews its lease. `hrwsi status` and the dashboard showed it as any
    -- running launcher (found by exploratory testing). NULL: not stopping.
    stopping_since    timestamptz,
    stopping          text
);

-- =============================================================================================
-- Alerts and the failure policy, kept by triggers so that every writer obeys them. The alerts
-- are an outbox (task terminated, routine on hold), sent by the orchestrator's alert side task.
-- =============================================================================================

CREATE TABLE hrwsi.alert (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL,
    subject    text NOT NULL,
    body       text NOT NULL,
    task_id    bigint CONSTRAINT alert_task_must_exist REFERENCES hrwsi.processing_task (id) ON DELETE SET NULL,
    routine    text REFERENCES hrwsi.processing_routine (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    CONSTRAINT alert_kind_is_known CHECK (kind IN (
        'task_terminated', 'routine_on_hold', 'task_lost_repeatedly', 'task_blocked', 'deadline_at_risk',
        'deadline_missed', 'campaign_on_hold'))
);
CREATE INDEX alert_unsent_idx ON hrwsi.alert (id) WHERE sent_at IS NULL;
-- A pending task the planner cannot place: its reason is the planner's. A pending task's reason may
-- also say why it is pending again, which is no planning problem: retried, released, back from a
-- failed attempt (waiting out its backoff: status listed every routine failure as a task that
-- "cannot be planned", found by exploratory testing), a campaign's, planned again after a change.
-- One definition for `hrwsi status` and the dashboard (they filtered differently; migration 0062).
-- (No SET clause, so that it is inlined into the queries that filter with it.)
CREATE FUNCTION hrwsi.cannot_be_planned(state text, reason text, not_before timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT state = 'pending' AND reason IS NOT NULL AND reason NOT LIKE 'retried%'
       AND reason NOT LIKE '%released%' AND reason NOT LIKE 'attempt %'
       AND reason NOT LIKE 'reprocessing campaign %' AND reason NOT LIKE '%planned again%'
       AND reason NOT LIKE '%was retried' AND reason NOT LIKE 'arrived % after its deadline %: served as back-fill%'
       AND (not_before IS NULL OR not_before <= now())
$$;

-- Deadline alerts, each kind once per task.
CREATE UNIQUE INDEX alert_deadline_is_raised_once_per_task ON hrwsi.alert (task_id, kind)
    WHERE kind IN ('deadline_at_risk', 'deadline_missed');

-- Times and durations in the sentences the database writes (alerts, a campaign's summary), as
-- every other time hrwsi shows: UTC with a Z, to the second, whatever the session's TimeZone (a
-- server whose zone followed the shell's TZ wrote alert texts in +01, and PostgreSQL's own format,
-- "2026-12-05 23:18:42.74337+00"); and a lateness people read ("8 min 41 s", where 17 ms read
-- "00:00:00 late"). Migration 0059, found by exploratory testing.
-- An infinite time is said as such (migration 0115: it was NULL, "published_at <NULL>").
CREATE FUNCTION hrwsi.utc_text(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN moment = 'infinity' THEN 'infinity' WHEN moment = '-infinity' THEN '-infinity'
                ELSE to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"') END
$$;

CREATE FUNCTION hrwsi.duration_text(span interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN s < 1 THEN 'less than a second'
                WHEN s < 60 THEN format('%s s', floor(s))
                WHEN s < 3600 THEN format('%s min %s s', floor(s / 60), floor(s)::bigint % 60)
                WHEN s < 86400 THEN format('%s h %s min', floor(s / 3600), floor(s / 60)::bigint % 60)
                ELSE format('%s d %s h', floor(s / 86400), floor(s / 3600)::bigint % 24) END
    FROM (SELECT abs(extract(epoch FROM span)) AS s) x
$$;

-- Called by the orchestrator's side task `raise_deadline_alerts`: `deadline_at_risk` when the
-- plan already ends a task after its deadline (before it is late), `deadline_missed` when an open
-- task is past its deadline. A terminated task has its own alert; a cancelled one was an
-- operator's decision. The NOT EXISTS keeps a repeated check from trying again (each try would
-- take an identity value); the ON CONFLICT settles two orchestrators checking at once. A task
-- counts against its own deadline (migration 0083): one that took the deadline of a near-real-time
-- task after it in its time series (deadline_inherited_from) is served by it but not alerted by it,
-- only by its own (own_deadline_at; none for an archive task); the near-real-time task, alerted when
-- it misses its deadline, names the task it still waits for. (One late fresh scene raised an alert
-- for each archive task before it: found by exploratory testing.)
CREATE FUNCTION hrwsi.raise_deadline_alerts() RETURNS TABLE (at_risk integer, missed integer)
LANGUAGE sql SET search_path = pg_catalog, hrwsi AS $$
    WITH missed AS (
        -- One INSERT (migration 0080: two kept the alert's subject, its body's task line and the rule of
        -- one alert per task in step by hand) for the tasks of two reads, each through its own index: a task
        -- not done past its deadline, and one processed after its deadline between two checks, never told
        -- otherwise (found by exploratory testing; migration 0066), within the hour after it ended.
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_missed', format('hrwsi: task %s (%s) missed its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) was due at %s and ',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.due))
               || CASE WHEN t.state = 'processed'
                       THEN format('was processed at %s, %s late. `hrwsi timeliness` shows how late products are.',
                                   hrwsi.utc_text(t.finished_at), hrwsi.duration_text(t.finished_at - t.due))
                       ELSE format('is still %s%s.%s `hrwsi task show %s` tells why; `hrwsi timeliness` shows how late '
                                   'products are.', t.state, coalesce(' (' || t.state_reason || ')', ''),
                                   CASE WHEN w.id IS NOT NULL
                                        THEN format(' It waits for task %s (routine %s, %s), before it in its time series%s.',
                                                    w.id, w.routine, w.state,
                                                    CASE WHEN w.deadline_inherited_from IS NOT NULL
                                                         THEN ', served with this deadline (it is not alerted itself)'
                                                         ELSE '' END)
                                        ELSE '' END, t.id) END,
               t.id, t.routine
        FROM (SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS due
              FROM processing_task t
              WHERE t.deadline_at <= now() AND t.state NOT IN ('processed', 'terminated', 'cancelled')
                AND (t.deadline_inherited_from IS NULL OR t.own_deadline_at <= now())
              UNION ALL
              SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END
              FROM processing_task t
              WHERE t.state = 'processed' AND t.finished_at > now() - interval '1 hour'
                AND t.finished_at > CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at
                                         ELSE t.own_deadline_at END) t
        JOIN input i ON i.id = t.input_id
        LEFT JOIN processing_task w ON w.id = t.depends_on AND w.state NOT IN ('processed', 'terminated', 'cancelled')
                                   AND NOT t.dependency_waived
        WHERE NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_missed')
        ORDER BY t.due, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    ), at_risk AS (
        -- (against its own deadline, as report_open_deadlines counts it: a task that took another's and has one
        -- of its own was counted at risk by `hrwsi status` and never alerted; found by review. One that took
        -- another's and has none is not: that task is planned after it, and alerted itself)
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_at_risk', format('hrwsi: task %s (%s) will miss its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) is due at %s, but its plan ends it at %s '
                      '(%s late); it is %s.%s Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.due),
                      hrwsi.utc_text(t.planned_end), hrwsi.duration_text(t.planned_end - t.due), t.state,
                      coalesce(b.said, '')),
               t.id, t.routine
        FROM (SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS due
              FROM processing_task t
              WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
                AND t.state IN ('planned', 'dispatched', 'queued', 'running')) t
        JOIN input i ON i.id = t.input_id
        -- Why (migration 0114): a task planned to start later waits for the work in flight on the worker its plan puts it
        -- on, named here (the first 3 by expected end, and how many): the alert said only "Add capacity, or hold less
        -- urgent work", and ops looked for what held it. Read only for a task alerted (rare), through the index of states.
        LEFT JOIN LATERAL (
            SELECT format(' It starts at %s on worker %s, after %s in flight there: %s%s.', hrwsi.utc_text(t.planned_start),
                          t.worker, CASE WHEN count(*) = 1 THEN 'the task' ELSE format('the %s tasks', count(*)) END,
                          array_to_string((array_agg(format('task %s (routine %s, lane %s%s, expected to end at %s)',
                                                            r.id, r.routine, r.lane,
                                                            CASE WHEN r.priority <> l.priority THEN ', served as ' || r.priority
                                                                 ELSE '' END,
                                                            hrwsi.utc_text(r.planned_end))
                                                     ORDER BY r.planned_end NULLS LAST, r.id))[1:3], ', '),
                          CASE WHEN count(*) > 3 THEN format(' and %s more', count(*) - 3) ELSE '' END) AS said
            FROM processing_task r LEFT JOIN lane l ON l.name = r.lane
            WHERE t.state = 'planned' AND t.planned_start > now() AND r.worker = t.worker
              AND r.state IN ('dispatched', 'queued', 'running')
            HAVING count(*) > 0) b ON true
        WHERE t.due > now() AND t.planned_end > t.due
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_at_risk')
        ORDER BY t.due, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM at_risk)::integer, (SELECT count(*) FROM missed)::integer
$$;

-- The failure policy (as the terminated-task alert, in hrwsi.after_task_changes) joins the
-- transition tables and a base table by its key, where a nested loop over an index is right. So it
-- runs its query through EXECUTE, planned each time with the transition tables' real sizes, and
-- only when a row of interest is in the statement (a cheap check first), so the common one-row
-- progress UPDATE pays nothing. The query texts are constants: nothing is formatted into SQL.
-- (Its joins as the planner's defaults, whatever the caller's settings: hrwsi.record_outcomes, whose
-- job UPDATE fires it, plans its own statements with nested loops only; migration 0034.)
CREATE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on AS $$
-- After job outcomes: count consecutive failures per routine (production), per routine's back-fill
-- and per campaign; hold a routine, its back-fill or a campaign that reached the routine's limit.
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('processed', 'internal_error', 'external_error')) THEN
        RETURN NULL;
    END IF;
    -- Successes only, and no routine or campaign has failures to forget: nothing to count. (The usual
    -- outcome; the query below is planned at each call, 0.3 ms, most of the cost of recording one outcome.)
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('internal_error', 'external_error') AND fault IS NULL)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine
                       WHERE consecutive_failures <> 0 OR backfill_consecutive_failures <> 0)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.campaign WHERE consecutive_failures <> 0) THEN
        RETURN NULL;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT t.routine, t.campaign_id, coalesce(t.campaign_id IS NULL AND l.priority > 0, false) AS backfill,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL) AS failures,
               -- (the latest-finished failure's: max(message) named the greatest text of the batch, said "last",
               -- found by exploratory testing; migration 0122)
               (array_agg(n.message ORDER BY n.finished_at DESC NULLS LAST, n.id DESC)
                    FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL))[1]
                   AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        LEFT JOIN hrwsi.lane l ON l.name = t.lane
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY 1, 2, 3 $q$
    LOOP
        IF r.campaign_id IS NOT NULL THEN
            -- Reprocessing (another version, archive inputs) says nothing of production: the campaign's own count.
            UPDATE hrwsi.campaign
            SET consecutive_failures = CASE WHEN r.failures = 0 THEN 0
                                            WHEN r.any_success THEN r.failures
                                            ELSE consecutive_failures + r.failures END
            WHERE id = r.campaign_id AND (r.failures > 0 OR (r.any_success AND consecutive_failures <> 0));
            UPDATE hrwsi.campaign k
            SET on_hold = true,
                hold_reason = format('%s consecutive failures (limit %s of routine %s); last: %s',
                                     k.consecutive_failures, p.hold_after_failures, p.name, r.last_message)
            FROM hrwsi.processing_routine p
            WHERE k.id = r.campaign_id AND p.name = r.routine AND r.failures > 0 AND NOT k.on_hold
              AND k.consecutive_failures >= p.hold_after_failures;
            CONTINUE;
        END IF;
        IF r.backfill THEN
            -- A back-fill's failures (archive inputs of another format, say) say little of the routine's
            -- near-real-time work: they held the routine, and with it the fresh scenes (found by
            -- exploratory testing; migration 0075). They hold the back-fill alone.
            UPDATE hrwsi.processing_routine
            SET backfill_consecutive_failures = CASE WHEN r.failures = 0 THEN 0
                                                     WHEN r.any_success THEN r.failures
                                                     ELSE backfill_consecutive_failures + r.failures END
            WHERE name = r.routine AND (r.failures > 0 OR (r.any_success AND backfill_consecutive_failures <> 0));
            UPDATE hrwsi.processing_routine
            SET backfill_hold_reason = format('%s consecutive failures of back-fill tasks (limit %s); last: %s',
                                              backfill_consecutive_failures, hold_after_failures, r.last_message)
            WHERE name = r.routine AND r.failures > 0 AND backfill_hold_reason IS NULL
              AND backfill_consecutive_failures >= hold_after_failures;
            CONTINUE;
        END IF;
        IF r.failures = 0 THEN
            IF r.any_success THEN
                UPDATE hrwsi.processing_routine SET consecutive_failures = 0
                WHERE name = r.routine AND consecutive_failures <> 0;
            END IF;
            CONTINUE;
        END IF;
        UPDATE hrwsi.processing_routine
        SET consecutive_failures = CASE WHEN r.any_success THEN r.failures ELSE consecutive_failures + r.failures END
        WHERE name = r.routine;
        UPDATE hrwsi.processing_routine
        SET on_hold = true,
            hold_reason = format('%s consecutive failures (limit %s); last: %s',
                                 consecutive_failures, hold_after_failures, r.last_message)
        WHERE name = r.routine AND NOT on_hold AND consecutive_failures >= hold_after_failures;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER job_failure_policy AFTER UPDATE ON hrwsi.job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.apply_failure_policy();

-- The tasks held leave out those whose history lags behind them (migration 0096): a task the statement
-- that holds the routine sent back to pending, and whose row for that its task trigger has not written
-- yet. The failure policy holds a routine (its back-fill, its campaign) from the trigger of the outcome
-- writer's job UPDATE, which fires before the same statement's task trigger: held here, such a task's
-- history said "on_hold", then "pending - attempt 1 internal_error" last, of a task on hold (found by
-- review). hrwsi.record_outcomes holds it in its next statement, as any failed attempt of a held
-- routine, after that row. Only a task changed in this transaction is looked up (updated_at, set to
-- now() by every change): one probe of the history's index for each, on a hold alone.
CREATE FUNCTION hrwsi.hold_routine_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A routine put on hold: its waiting tasks are held too, and ops are told.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        PERFORM 1 FROM hrwsi.processing_task t WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE hrwsi.processing_task t SET state = 'on_hold', state_reason = 'routine on hold: ' || NEW.hold_reason
        WHERE t.routine = NEW.name AND t.state IN ('pending', 'planned')
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('routine_on_hold', format('hrwsi: routine %s is on hold', NEW.name),
                format('Routine %s was put on hold: %s. Its new tasks wait until an operator runs '
                       '`hrwsi release %s`.', NEW.name, coalesce(NEW.hold_reason, 'by an operator'), NEW.name),
                NEW.name);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_hold AFTER UPDATE OF on_hold ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.hold_routine_tasks();

-- A routine's back-fill put on hold by its failures (migration 0075): its waiting production tasks in
-- a lane less urgent than near-real-time are held; its near-real-time work goes on. Ops are told.
CREATE FUNCTION hrwsi.hold_routine_back_fill() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
BEGIN
    PERFORM 1 FROM hrwsi.processing_task t JOIN hrwsi.lane l ON l.name = t.lane AND l.priority > 0
    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned')
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    UPDATE hrwsi.processing_task t
    SET state = 'on_hold', state_reason = format('back-fill of routine %s on hold: %s', NEW.name, NEW.backfill_hold_reason)
    FROM hrwsi.lane l
    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state IN ('pending', 'planned')
      AND l.name = t.lane AND l.priority > 0
      -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0096)
      AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                  ORDER BY e.id DESC LIMIT 1) <> t.state, false));
    GET DIAGNOSTICS held = ROW_COUNT;
    -- (and counted, those left out: the failed task whose failure put the back-fill on hold, which hrwsi.record_outcomes
    -- holds in its next statement; the alert said one task fewer than were held, migration 0098, found by review)
    held := held + (SELECT count(*) FROM hrwsi.processing_task t JOIN hrwsi.lane l ON l.name = t.lane AND l.priority > 0
                    WHERE t.routine = NEW.name AND t.campaign_id IS NULL AND t.state = 'pending' AND t.updated_at = now()
                      AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                    ORDER BY e.id DESC LIMIT 1) <> t.state, false));
    INSERT INTO hrwsi.alert (kind, subject, body, routine)
    VALUES ('routine_on_hold', format('hrwsi: the back-fill of routine %s is on hold', NEW.name),
            format('The back-fill of routine %s (its tasks in the archive lane) was put on hold: %s. %s waiting '
                   'task(s) held, and its new back-fill tasks will be held too; its near-real-time work goes on. Fix the '
                   'cause, then `hrwsi release %s`.', NEW.name, NEW.backfill_hold_reason, held, NEW.name),
            NEW.name);
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_back_fill_hold AFTER UPDATE OF backfill_hold_reason ON hrwsi.processing_routine
    FOR EACH ROW WHEN (OLD.backfill_hold_reason IS NULL AND NEW.backfill_hold_reason IS NOT NULL)
    EXECUTE FUNCTION hrwsi.hold_routine_back_fill();

-- A routine that is no longer a time series (sequential_per_tile turned off, by `hrwsi config load`
-- or by SQL): its tasks that have not started no longer wait for the task before them on their tile
-- (migration 0073). They kept their links, so pending and planned tasks waited, and blocked ones
-- stayed blocked, for a series that no longer was one (found by exploratory testing). The link is
-- waived, not cleared (as `hrwsi release` waives it): the history keeps what it was. Blocked and
-- planned tasks go back to pending, to be planned without it; each says why in its history. Turned
-- on, a routine links the tasks created from then on; its open tasks run as they are.
CREATE FUNCTION hrwsi.end_a_routines_series() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released integer;
BEGIN
    -- (alone: a retry of one of its tasks holds this lock shared while it links the task in its series,
    -- and the tasks it releases below are read once that retry committed: migration 0077)
    PERFORM pg_advisory_xact_lock(7250078, hashtext(NEW.name));
    PERFORM 1 FROM processing_task t
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
    ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    -- (a task that stays pending or held gets no history row from hrwsi.after_task_changes, nor a
    -- wake-up call: its own here, below)
    WITH event AS (
    INSERT INTO task_event (task_id, state, reason, attempts, worker)
    SELECT t.id, t.state, format('routine %s is no longer a time series (sequential_per_tile off): it no longer '
                                 'waits for task %s', NEW.name, coalesce(t.depends_on, t.waits_for_upstream)),
           t.attempts, t.worker
    FROM processing_task t
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'on_hold')
    RETURNING state)
    SELECT count(*) FILTER (WHERE state = 'pending') INTO released FROM event;
    -- (a blocked one held by an operator before it was blocked, or whose routine, campaign or back-fill is held, is
    -- held, as every step that unblocks holds it: migration 0095, found by review)
    UPDATE processing_task t
    SET dependency_waived = true,
        waits_for_upstream = NULL,  -- (nor for an earlier scene's upstream work: migration 0072)
        state = CASE WHEN t.state = 'blocked'
                          AND (t.held_while_blocked OR hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) IS NOT NULL)
                     THEN 'on_hold'
                     WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
        held_while_blocked = false,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                      WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                      ELSE coalesce(hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) || '; ', '')
                                 END
                                 || format('routine %s is no longer a time series (sequential_per_tile off): it no '
                                           'longer waits for task %s', NEW.name,
                                           coalesce(t.depends_on, t.waits_for_upstream)) END
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'blocked', 'on_hold');
    -- (those that stayed pending: a planned or blocked one went to pending, and that trigger said so;
    -- they waited, unannounced, for the next plan or dispatch: found by review)
    IF released > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts',
                                                          json_build_object('pending', released))::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_series_ended
    AFTER UPDATE OF sequential_per_tile ON hrwsi.processing_routine FOR EACH ROW
    WHEN (OLD.sequential_per_tile AND NOT NEW.sequential_per_tile)
    EXECUTE FUNCTION hrwsi.end_a_routines_series();

-- A routine's needs, a flavour's size or a worker's flavour changed (`hrwsi config load`): the
-- tasks planned with the old figures go back to pending, to be planned again or named among what
-- cannot be planned. Planned on a worker they no longer fit, they waited there for ever, without a
-- reason (found by exploratory testing, 2026-12-05; migration 0054). So do every planned task when
-- the budget changes or a worker is added or comes back (migration 0064): a smaller budget left a
-- plan that missed its deadlines with no at-risk alert, and a worker added to catch up stayed
-- idle while the work waited on the old ones (found by exploratory testing, 2026-12-06).
CREATE FUNCTION hrwsi.plan_again_what_no_longer_fits() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF TG_TABLE_NAME = 'processing_routine' THEN
        PERFORM 1 FROM processing_task t WHERE t.routine = NEW.name AND t.state = 'planned'
        ORDER BY t.id FOR NO KEY UPDATE OF t;  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('routine %s changed (CPU, RAM, storage or flavour): planned again', NEW.name)
        WHERE routine = NEW.name AND state = 'planned';
        -- Its attempts in flight keep what they were dispatched with (migration 0067): the sizes
        -- before this change, unless an earlier change already recorded theirs.
        UPDATE processing_task SET held_cpu = OLD.cpu, held_ram_mb = OLD.ram_mb, held_storage_mb = OLD.storage_mb,
            held_attempt = attempts
        WHERE routine = NEW.name AND state IN ('dispatched', 'queued', 'running')
          AND held_attempt IS DISTINCT FROM attempts
          AND (OLD.cpu, OLD.ram_mb, OLD.storage_mb) IS DISTINCT FROM (NEW.cpu, NEW.ram_mb, NEW.storage_mb);
    ELSIF TG_TABLE_NAME = 'flavour' THEN
        PERFORM 1 FROM processing_task t
        WHERE t.state = 'planned' AND t.worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name)
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('the flavour %s of its worker %s changed: planned again', NEW.name, worker)
        WHERE state = 'planned' AND worker IN (SELECT w.name FROM worker w WHERE w.flavour = NEW.name);
    ELSIF TG_TABLE_NAME = 'budget' THEN
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = 'the budget changed: planned again'
        WHERE state = 'planned';
    ELSIF TG_OP = 'INSERT' OR NOT OLD.active THEN
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('worker %s was added: planned again', NEW.name)
        WHERE state = 'planned';
    ELSE
        PERFORM 1 FROM processing_task t WHERE t.state = 'planned' AND t.worker = NEW.name
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task SET state = 'pending', worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = format('its worker %s changed flavour: planned again', NEW.name)
        WHERE state = 'planned' AND worker = NEW.name;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER processing_routine_needs_changed
    AFTER UPDATE OF cpu, ram_mb, storage_mb, flavour ON hrwsi.processing_routine FOR EACH ROW
    WHEN (OLD.cpu IS DISTINCT FROM NEW.cpu OR OLD.ram_mb IS DISTINCT FROM NEW.ram_mb
          OR OLD.storage_mb IS DISTINCT FROM NEW.storage_mb OR OLD.flavour IS DISTINCT FROM NEW.flavour)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER flavour_size_changed
    AFTER UPDATE OF cpu, ram_mb, disk_mb ON hrwsi.flavour FOR EACH ROW
    WHEN (OLD.cpu IS DISTINCT FROM NEW.cpu OR OLD.ram_mb IS DISTINCT FROM NEW.ram_mb
          OR OLD.disk_mb IS DISTINCT FROM NEW.disk_mb)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER worker_flavour_changed
    AFTER UPDATE OF flavour ON hrwsi.worker FOR EACH ROW
    WHEN (OLD.flavour IS DISTINCT FROM NEW.flavour)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER worker_added AFTER INSERT ON hrwsi.worker FOR EACH ROW WHEN (NEW.active)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER worker_back AFTER UPDATE OF active ON hrwsi.worker FOR EACH ROW WHEN (NEW.active AND NOT OLD.active)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();
CREATE TRIGGER budget_changed AFTER UPDATE ON hrwsi.budget FOR EACH ROW
    WHEN (OLD.cpu_max IS DISTINCT FROM NEW.cpu_max OR OLD.ram_max_mb IS DISTINCT FROM NEW.ram_max_mb
          OR OLD.storage_max_mb IS DISTINCT FROM NEW.storage_max_mb OR OLD.vm_max IS DISTINCT FROM NEW.vm_max
          OR OLD.plan_mode IS DISTINCT FROM NEW.plan_mode OR OLD.plan_horizon IS DISTINCT FROM NEW.plan_horizon)
    EXECUTE FUNCTION hrwsi.plan_again_what_no_longer_fits();

CREATE FUNCTION hrwsi.hold_campaign_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A campaign put on hold: its waiting tasks are held too, and ops are told; production goes on.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        UPDATE hrwsi.processing_task t
        SET state = 'on_hold', state_reason = format('campaign %s on hold: %s', NEW.id, NEW.hold_reason)
        WHERE t.campaign_id = NEW.id AND t.state IN ('pending', 'planned')
          -- (not a task whose history lags behind it: hrwsi.hold_routine_tasks says why; migration 0096)
          AND NOT (t.updated_at = now() AND coalesce((SELECT e.state FROM hrwsi.task_event e WHERE e.task_id = t.id
                                                      ORDER BY e.id DESC LIMIT 1) <> t.state, false));
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('campaign_on_hold', format('hrwsi: campaign %s (routine %s) is on hold', NEW.id, NEW.routine),
                format('Reprocessing campaign %s of routine %s was put on hold: %s. Its waiting tasks are held; the '
                       'production of routine %s goes on. Fix the cause, then run `hrwsi campaigns --release %s`, '
                       'or end it with `hrwsi campaigns --cancel %s`.', NEW.id, NEW.routine,
                       coalesce(NEW.hold_reason, 'by an operator'), NEW.routine, NEW.id, NEW.id),
                NEW.routine);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER campaign_hold AFTER UPDATE OF on_hold ON hrwsi.campaign
    FOR EACH ROW EXECUTE FUNCTION hrwsi.hold_campaign_tasks();

-- =============================================================================================
-- Harvest sources: where inputs come from (a landing directory, a catalogue), each with its
-- schedule and mode. CHECKs on the config wrap their test in coalesce(..., false), because a
-- missing key makes the test NULL, and a NULL CHECK lets the row in.
-- =============================================================================================

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
    -- Both at most 36,525 days (migration 0115), as a condition's windows (MAX_WINDOW_DAYS): '5000000 years'
    -- passed, and the harvester could not read it (a timedelta holds 999,999,999 days), so that its round ran none
    -- of the sources it claimed.
    overlap            interval NOT NULL DEFAULT interval '1 hour'
        CONSTRAINT harvest_source_overlap_is_not_negative CHECK (overlap >= interval '0'),
    first_lookback     interval NOT NULL DEFAULT interval '1 day'
        CONSTRAINT harvest_source_first_lookback_is_positive CHECK (first_lookback > interval '0'),
    -- Backfill: day by day from backfill_from to backfill_to (both included); the cursor is the
    -- next day to harvest, so an interrupted backfill resumes where it stopped (and within a day,
    -- backfill_resume_at below).
    backfill_from      date,
    backfill_to        date,
    backfill_cursor    date,
    last_run_at        timestamptz,
    last_success_at    timestamptz,
    next_run_at        timestamptz,
    last_error         text,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- A run is a claim with a lease (migration 0006): a fresh token per run, the harvester running
    -- it, when the claim lapses (another harvester may then run it). NULL: not running.
    claim_token        uuid,
    claimed_by         text,
    claimed_until      timestamptz,
    -- A backfill day with more products than a run asks pages for (max_pages_per_run) goes on from
    -- the sensing time of the last product registered, if it is within the cursor's day (migration
    -- 0063): each run asked the day again from its start, registered the same pages and stopped,
    -- for ever.
    backfill_resume_at timestamptz,
    CONSTRAINT harvest_source_claim_has_a_token_a_harvester_and_an_end
        CHECK ((claim_token IS NULL) = (claimed_by IS NULL) AND (claim_token IS NULL) = (claimed_until IS NULL)),
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
-- (Migration 0045; NOT VALID there: an infinite date made every listing of the sources fail.)
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT harvest_source_backfill_dates_are_finite
        CHECK (isfinite(backfill_from) AND isfinite(backfill_to)) NOT VALID;
-- (Migration 0115) Times and back-fill dates between 1950 and 9000, which a data engineer writes: one source's
-- next_run_at of '-infinity' or backfill_to of 12000-01-01 made `hrwsi status` and `hrwsi sources` fail (psycopg reads
-- years 1 to 9999 alone), and the harvester's round; and windows and a period a harvester can reckon with
-- (2147483647 hours: its next run could not be reckoned, and its failure was recorded nowhere).
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT harvest_source_next_run_at_is_between_1950_and_9000
        CHECK (next_run_at >= timestamptz '1950-01-01 00:00Z' AND next_run_at < timestamptz '9000-01-01 00:00Z'),
    ADD CONSTRAINT harvest_source_last_success_at_is_between_1950_and_9000
        CHECK (last_success_at >= timestamptz '1950-01-01 00:00Z' AND last_success_at < timestamptz '9000-01-01 00:00Z'),
    ADD CONSTRAINT harvest_source_backfill_dates_are_between_1950_and_9000
        CHECK (backfill_from >= date '1950-01-01' AND backfill_to < date '9000-01-01'),
    ADD CONSTRAINT harvest_source_overlap_is_at_most_36525_days CHECK (overlap <= interval '36525 days'),
    ADD CONSTRAINT harvest_source_first_lookback_is_at_most_36525_days CHECK (first_lookback <= interval '36525 days'),
    -- (in hours: 36,525 days are 876,600; an interval's product overflowed for weekly ones)
    ADD CONSTRAINT harvest_source_frequency_is_under_every_100_years
        CHECK (frequency_interval::bigint * CASE frequency WHEN 'hourly' THEN 1 WHEN 'daily' THEN 24 WHEN 'weekly' THEN 168
                                                          ELSE 0 END < 876600);
-- (Migration 0116) A name and a product type without control or invisible characters, as an input's path: a name
-- "cat\nS2B  catalogue  fake" forged a line of `hrwsi sources`, and a product type "L1C\n" looked like L1C and was
-- read by no routine. The upgrade mended the rows stored before (the characters taken out, its last_error saying so).
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT harvest_source_name_has_no_control_or_invisible_characters
        CHECK (name !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'),
    ADD CONSTRAINT source_product_type_has_no_control_or_invisible_characters
        CHECK (product_type !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]');
-- (migration 0126) A harvest source's name and product type are at most 200 characters, as a configuration file's
-- names and product types are (a routine reads a type of at most 200): a name of 6,400 characters was refused by
-- PostgreSQL's own "index row size 6416 exceeds btree version 4 maximum 2704 for index harvest_source_pkey", whose
-- hint tells of an MD5 index, and one of 100,000 characters that compress was taken (found by exploratory testing).
-- A trigger on the INSERT and a change of either, not a CHECK: the harvester's claim updates every due source in one
-- statement, which a rule kept NOT VALID for a row stored before would make fail for all (migration 0116); a row
-- stored before is kept.
CREATE FUNCTION hrwsi.refuse_a_long_harvest_source_name() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF char_length(NEW.name) > 200 AND (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name) THEN
        RAISE EXCEPTION 'harvest source name % is longer than the 200 characters a name may have',
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.name))
            USING ERRCODE = 'check_violation', HINT = 'give the source a shorter name';
    END IF;
    IF char_length(NEW.product_type) > 200 AND (TG_OP = 'INSERT' OR NEW.product_type IS DISTINCT FROM OLD.product_type)
    THEN
        RAISE EXCEPTION 'harvest source % product_type % is longer than the 200 characters a product type may have',
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.name)),
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.product_type))
            USING ERRCODE = 'check_violation',
                  HINT = 'a routine reads a product type of at most 200 characters (the configuration file''s rule)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER harvest_source_name_and_product_type_are_at_most_200_chars
    BEFORE INSERT OR UPDATE OF name, product_type ON hrwsi.harvest_source
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_a_long_harvest_source_name();

-- The harvester's question, every round: which active sources are due?
CREATE INDEX harvest_source_due_idx ON hrwsi.harvest_source (next_run_at) WHERE active;

-- Paths a landing source's config may not hold (migration 0006). NOT VALID there, so that a
-- database holding such a row still migrates (the harvester refuses that source at run time);
-- NOT VALID here too, so that both paths build the same constraints.
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT landing_directories_have_no_dot_dot_and_no_control_characters
        CHECK (kind <> 'landing_directory'
               OR coalesce(NOT (config ->> 'directory' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'work_directory' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'directory' ~ '[[:cntrl:]]')
                           AND NOT (config ->> 'work_directory' ~ '[[:cntrl:]]'), false)) NOT VALID,
    ADD CONSTRAINT landing_pattern_is_relative_without_dot_dot
        CHECK (NOT config ? 'pattern'
               OR coalesce(config ->> 'pattern' <> '' AND config ->> 'pattern' NOT LIKE '/%'
                           AND NOT (config ->> 'pattern' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'pattern' ~ '[[:cntrl:]]'), false)) NOT VALID;

-- A landing source's work directory is its own: it is not, does not contain and does not lie in
-- the work or landing directory of another active landing source (and its landing directory is
-- not in another's work directory). Compared as written; the harvester compares them again with
-- symbolic links resolved, and refuses the newer source (hrwsi.harvest.confinement).
CREATE FUNCTION hrwsi.landing_source_work_directory_is_its_own() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    work text := rtrim(NEW.config ->> 'work_directory', '/') || '/';
    landing text := rtrim(NEW.config ->> 'directory', '/') || '/';
    other record;
BEGIN
    IF NEW.kind <> 'landing_directory' OR NOT NEW.active THEN
        RETURN NEW;
    END IF;
    SELECT s.name, rtrim(s.config ->> 'work_directory', '/') || '/' AS work,
           rtrim(s.config ->> 'directory', '/') || '/' AS landing
    INTO other
    FROM hrwsi.harvest_source s
    WHERE s.kind = 'landing_directory' AND s.active AND s.name <> NEW.name
      AND (TG_OP = 'INSERT' OR s.name <> OLD.name)
      AND (starts_with(work, rtrim(s.config ->> 'work_directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'work_directory', '/') || '/', work)
           OR starts_with(work, rtrim(s.config ->> 'directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'directory', '/') || '/', work)
           OR starts_with(landing, rtrim(s.config ->> 'work_directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'work_directory', '/') || '/', landing))
    ORDER BY s.name
    LIMIT 1;
    IF NOT FOUND THEN
        -- (two sources on one landing directory, taking the same files: which source, product type and
        -- work directory a file got was a race; migration 0055, found by exploratory testing)
        SELECT s.name, rtrim(s.config ->> 'work_directory', '/') || '/' AS work, landing AS landing
        INTO other
        FROM hrwsi.harvest_source s
        WHERE s.kind = 'landing_directory' AND s.active AND s.name <> NEW.name
          AND (TG_OP = 'INSERT' OR s.name <> OLD.name)
          AND rtrim(s.config ->> 'directory', '/') || '/' = landing
          AND (coalesce(s.config ->> 'pattern', '*') IN ('*', coalesce(NEW.config ->> 'pattern', '*'))
               OR coalesce(NEW.config ->> 'pattern', '*') = '*')
        ORDER BY s.name
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'landing source %: its landing directory % is the landing directory of source %, and '
                            'their patterns take the same files: the two would race for each file (which source, '
                            'product type and work directory it gets); give each a pattern of its own (e.g. '
                            '"S2*.zip" and "S1*.zip"), or one source', NEW.name, landing, other.name
                USING ERRCODE = 'check_violation', CONSTRAINT = 'landing_source_work_directory_is_its_own';
        END IF;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'landing source %: its directories (landing %, work %) overlap those of source % '
                        '(landing %, work %): two sources would take or overwrite each other''s files; give each '
                        'source a work directory of its own, apart from every landing directory',
                        NEW.name, landing, work, other.name, other.landing, other.work
            USING ERRCODE = 'check_violation', CONSTRAINT = 'landing_source_work_directory_is_its_own';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER landing_source_work_directory_is_its_own
    BEFORE INSERT OR UPDATE OF kind, config, active, name ON hrwsi.harvest_source
    FOR EACH ROW EXECUTE FUNCTION hrwsi.landing_source_work_directory_is_its_own();

-- Files of landing directories: one row per file (or .SAFE directory) and version of it.
--   seen                the file is there but may still be written (not settled yet)
--   ready               settled; being prepared (a crash here resumes at the next scan)
--   prepared            unzipped/moved to the work directory and registered as input(s)
--   previously_received the same file, or the same scene, was received before: no new input
--   failed              could not be prepared; message says why (touch the file to retry)
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

-- =============================================================================================
-- Multi-input triggering rules, as data. A condition with a rule gets one input per complete
-- group instead of one input per product:
--   group      = one tile and one window of window_days days ending on a day (the anchor day)
--   complete   = for each requirement, at least min_count members of its product type in the
--                window (on each day of it when every_day_of_window), and, when
--                wait_for_open_tasks, no task that would produce such a member still open.
-- Members are products (tile and day from the input of the task that made them) and inputs that
-- were not chained from a product (tile and day of the input, type of its routine's input).
-- Adding a routine with such a condition is three INSERTs, no code.
-- =============================================================================================

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
-- (Migration 0115; NOT VALID there, a row stored before left as it is, so here too) What the configuration file
-- allows: 'SWS\n...' and 2147483647 were taken, and `hrwsi config show` wrote a file `hrwsi config load` refused.
ALTER TABLE hrwsi.multi_input_requirement
    ADD CONSTRAINT multi_input_requirement_product_type_is_a_name
        CHECK (char_length(product_type) <= 200 AND product_type = btrim(product_type)
               AND product_type !~ '[[:cntrl:]\u0080-\u009f]') NOT VALID,
    ADD CONSTRAINT multi_input_requirement_min_count_is_at_most_10000 CHECK (min_count <= 10000) NOT VALID;

-- (migration 0124) A name with its control and invisible characters as their escapes (\x0a, \u200b, \U000e0041), as
-- hrwsi.terminal.quoted shows them: a refusal or a notice that quotes it shows what is there, and is one line.
CREATE FUNCTION hrwsi.unseen_characters_escaped(value text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN (SELECT coalesce(string_agg(CASE WHEN c !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]' THEN c
                                        WHEN ascii(c) < 256 THEN '\x' || lpad(to_hex(ascii(c)), 2, '0')
                                        WHEN ascii(c) < 65536 THEN '\u' || lpad(to_hex(ascii(c)), 4, '0')
                                        ELSE '\U' || lpad(to_hex(ascii(c)), 8, '0') END, '' ORDER BY o), '')
        FROM regexp_split_to_table(value, '') WITH ORDINALITY AS s(c, o));

-- (migration 0124) Why a configuration file refuses a name (hrwsi.configuration's Name: a flavour's, a worker's, a
-- condition's name, a product type), or NULL: a control or invisible character, named by its code point, more than 200
-- characters, or white space around it.
CREATE FUNCTION hrwsi.name_problem(value text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN value ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'
            THEN 'holds U+' || upper(lpad(to_hex(ascii(substring(value FROM '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'))),
                                          greatest(length(to_hex(ascii(substring(value FROM '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]')))), 4), '0'))
                 || ', a control or invisible character (shown here as its escape)'
            WHEN char_length(value) > 200 THEN 'is longer than the 200 characters a name may have'
            WHEN value ~ '^[[:space:]]|[[:space:]]$' THEN 'begins or ends with white space' END;

-- (migration 0124) The names a configuration file gives (a flavour's, a worker's, a condition's) and the product types a
-- routine reads and writes, or a multi-input rule requires, are names as the file takes them (hrwsi.name_problem): no
-- control or invisible character, as a harvest source's (migration 0116), at most 200 characters, no white space around.
-- `hrwsi config load` took "L1C\u200b" (pasted), which looked like L1C and was another name; and a name written with
-- SQL, ' l1c' or of 300 characters, was taken, and `hrwsi config show` wrote it into a file `hrwsi config load` refused.
-- A trigger, not a CHECK, so that the refusal says why, naming a character by its code point, and shows the name with
-- its escapes (a CHECK's refusal names the constraint alone, and a psql shows an invisible character as nothing).
-- A value stored before this rule (migration 0124 said each) is kept, and may be written again as it is: a rename would
-- leave the inputs, tasks and plans that name it naming nothing, and `hrwsi config show` writes it into the file
-- `hrwsi config load` then reads back (hrwsi.configuration keeps the same exception).
CREATE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    col text;
    value text;
    problem text;
BEGIN
    FOREACH col IN ARRAY TG_ARGV LOOP
        value := to_jsonb(NEW) ->> col;
        problem := hrwsi.name_problem(value);
        CONTINUE WHEN problem IS NULL;
        -- (unchanged by an UPDATE, or stored before: an INSERT ... ON CONFLICT of a row stored before, as `hrwsi
        -- config load` writes one, or a name or type stored before given again, as hrwsi.configuration takes it)
        CONTINUE WHEN TG_OP = 'UPDATE' AND value = to_jsonb(OLD) ->> col;
        CONTINUE WHEN EXISTS (SELECT 1 FROM flavour WHERE name = value) OR EXISTS (SELECT 1 FROM worker WHERE name = value)
                   OR EXISTS (SELECT 1 FROM processing_condition WHERE name = value)
                   OR EXISTS (SELECT 1 FROM processing_routine WHERE input_product_type = value)
                   OR EXISTS (SELECT 1 FROM processing_routine WHERE output_product_type = value)
                   OR EXISTS (SELECT 1 FROM multi_input_requirement WHERE product_type = value);
        RAISE EXCEPTION '% % % %', TG_TABLE_NAME, col, hrwsi.quoted_name(hrwsi.unseen_characters_escaped(value)), problem
            USING ERRCODE = 'check_violation', CONSTRAINT = TG_NAME,
                  HINT = 'a name of the configuration is at most 200 characters, without white space around it, nor a '
                         'control or invisible character, not seen where the name is shown (`hrwsi config load` '
                         'refuses the same): write it so';
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER flavour_name_is_a_name_a_configuration_file_takes BEFORE INSERT OR UPDATE OF name ON hrwsi.flavour
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses('name');
CREATE TRIGGER worker_name_is_a_name_a_configuration_file_takes BEFORE INSERT OR UPDATE OF name ON hrwsi.worker
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses('name');
CREATE TRIGGER routine_product_types_are_names_a_configuration_file_takes
    BEFORE INSERT OR UPDATE OF input_product_type, output_product_type ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses('input_product_type',
                                                                                 'output_product_type');
CREATE TRIGGER condition_name_is_a_name_a_configuration_file_takes
    BEFORE INSERT OR UPDATE OF name ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses('name');
CREATE TRIGGER multi_input_requirement_product_type_is_a_configuration_name
    BEFORE INSERT OR UPDATE OF product_type ON hrwsi.multi_input_requirement
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_names_a_configuration_file_refuses('product_type');

-- The members a multi-input input was made from: what its routine reads.
CREATE TABLE hrwsi.multi_input_member (
    input_id     bigint NOT NULL CONSTRAINT multi_input_member_input_must_exist
        REFERENCES hrwsi.input (id) ON DELETE CASCADE,
    member_path  text NOT NULL CONSTRAINT multi_input_member_path_is_not_empty CHECK (btrim(member_path) <> '')
        CONSTRAINT multi_input_member_path_has_no_control_characters CHECK (member_path !~ '[[:cntrl:]]'),
    product_type text NOT NULL,
    measured_at  timestamptz,
    CONSTRAINT multi_input_member_is_listed_once_per_input PRIMARY KEY (input_id, member_path)
);

-- The members a campaign's task of a multi-input condition reads (migration 0073): those its group
-- has when the campaign starts (hrwsi.multi_input_members_now), not production's record of the
-- members there were when the group was made. A member that arrived after its group's composite ran
-- was in no composite, and a campaign on the condition reran the composite without it (found by
-- exploratory testing). Production's record (multi_input_member) stays what its composite read.
CREATE TABLE hrwsi.multi_input_campaign_member (
    task_id      bigint NOT NULL CONSTRAINT multi_input_campaign_member_task_must_exist
        REFERENCES hrwsi.processing_task (id) ON DELETE CASCADE,
    member_path  text NOT NULL,
    product_type text NOT NULL,
    measured_at  timestamptz,
    CONSTRAINT multi_input_campaign_member_is_listed_once_per_task PRIMARY KEY (task_id, member_path),
    -- (migration 0104) the corrected input that replaced the version of this member the composite read
    -- (hrwsi.correct_input): `hrwsi retry` refuses such a composite. It was told by creation times, a transaction's
    -- start: a correction begun before the campaign was started made its input "older" than the composite.
    outdated_by  bigint
);
-- (lineage and retention find the composites a product is a member of by its path)
CREATE INDEX multi_input_campaign_member_path_idx ON hrwsi.multi_input_campaign_member (member_path);

-- The members a group of a multi-input condition has now: a tile and the window_days days ending on
-- the anchor day, as the harvester's statement reads them (multi_input_create_complete_groups:
-- production products of a required type, with the tile and time of the input their task processed,
-- and inputs not chained from a product, as the type their routine reads), with when each arrived
-- (the product's or the input's registration). Read by hrwsi.reprocess for a campaign's composite
-- and by `hrwsi groups` for the members that arrived after their group's composite was made. Neither a
-- product a correction outdated nor an input it superseded is a member (migration 0097).
CREATE FUNCTION hrwsi.multi_input_members_now(group_condition text, group_tile text, anchor_day date)
RETURNS TABLE (member_path text, product_type text, measured_at timestamptz, arrived_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi
BEGIN ATOMIC
    SELECT p.path, p.product_type, i.measured_at, p.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_task t ON t.input_id = i.id AND t.campaign_id IS NULL
    JOIN hrwsi.product p ON p.task_id = t.id
    WHERE r.processing_condition = group_condition AND p.outdated_by IS NULL
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND p.product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                             WHERE q.processing_condition = group_condition)
    UNION
    SELECT i.input_path, ro.input_product_type, i.measured_at, i.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
    JOIN hrwsi.processing_routine ro ON ro.name = c.routine
    WHERE r.processing_condition = group_condition AND i.product_id IS NULL AND i.superseded_by IS NULL
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND ro.input_product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                                    WHERE q.processing_condition = group_condition)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = i.processing_condition);
END;

-- The shortest cycle of chaining among the routines as they are (routine names, the first again at
-- the end), or NULL. Routine A's products (its output type) become inputs of routine B when B reads
-- that type and has an active condition that is not multi-input (the harvester's chain_products; a
-- campaign's products chain by the same rule, within the campaign). A multi-input condition makes
-- one input per condition, tile and day, never one per product: a cycle through it ends. One
-- definition for `hrwsi config load` (sql/queries/configuration.sql, config_chain_cycle) and for
-- the guard below, so that the two never disagree.
CREATE FUNCTION hrwsi.chain_cycle() RETURNS text[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi
BEGIN ATOMIC
    WITH RECURSIVE edge AS (
        SELECT a.name AS source, b.name AS target
        FROM hrwsi.processing_routine a
        JOIN hrwsi.processing_routine b ON b.input_product_type = a.output_product_type
        WHERE EXISTS (SELECT 1 FROM hrwsi.processing_condition c
                      WHERE c.routine = b.name AND c.active
                        AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name))
    ), walk (start, node, path) AS (
        SELECT edge.source, edge.target, ARRAY[edge.source, edge.target] FROM edge
        UNION ALL
        SELECT w.start, e.target, w.path || e.target
        FROM walk w JOIN edge e ON e.source = w.node
        WHERE w.node <> w.start AND e.target <> ALL (w.path[2:])
    )
    SELECT walk.path FROM walk WHERE walk.node = walk.start ORDER BY cardinality(walk.path), walk.path LIMIT 1;
END;

-- A name as a refusal shows it: between single quotes, as it is, a quote in it doubled ('a''b'), as SQL
-- writes it with standard_conforming_strings. quote_literal and format('%L') write a name holding a
-- backslash in the E'' form, E'a\\b', which a data engineer reads as another name (found by review;
-- migration 0093). Every refusal that quotes a name quotes it so. A name longer than 118 characters is cut
-- there, its length said after it ('aaa'... (5,000 characters)), as hrwsi.terminal.quoted cuts one the CLI
-- quotes: a 5,000-character name made a 5,000-character refusal (found by review; migration 0099). Its control and
-- invisible characters are shown as their escapes (\x0a, \u200b: hrwsi.unseen_characters_escaped), as the CLI shows
-- them: psql printed a name's line break and escape sequence as they came (`SELECT hrwsi.hold_routine(E'x\n\x1b[2J')`
-- forged a line and cleared the screen), and 'snow\u200b_cover' read "no routine 'snow_cover'" (found by exploratory
-- testing; migration 0127). The cut is made before escaping, so that no escape is cut in two.
CREATE FUNCTION hrwsi.quoted_name(name text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN length(name) <= 118
            THEN '''' || replace(hrwsi.unseen_characters_escaped(name), '''', '''''') || ''''
            ELSE '''' || replace(hrwsi.unseen_characters_escaped(left(name, 118)), '''', '''''') || '''... ('
                 || regexp_replace(length(name)::text, '(\d)(?=(\d{3})+$)', '\1,', 'g') || ' characters)' END;

-- The sentence that names a cycle and what to change (the same as hrwsi.configuration's
-- chain_cycle_problem: a test keeps the two equal).
CREATE FUNCTION hrwsi.chain_cycle_problem(cycle text[]) RETURNS text LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN cardinality(cycle) = 2 THEN
           format('routine %s chains into itself for ever (%s): it reads the product type it writes, so each of its '
                  'products would make a new input; give it another output_product_type or make its condition '
                  'inactive', hrwsi.quoted_name(cycle[1]), array_to_string(cycle, ' -> '))
       ELSE
           format('routines %s chain into each other for ever (%s): each reads the product type the one before '
                  'writes, so each product would make a new input; give one of them another output_product_type or '
                  'make its condition inactive',
                  (SELECT string_agg(hrwsi.quoted_name(n), ', ' ORDER BY o) FROM unnest(cycle[1:cardinality(cycle) - 1])
                   WITH ORDINALITY AS u(n, o)),
                  array_to_string(cycle, ' -> '))
       END;

-- A statement that can close a cycle of chaining is refused (migration 0073). `hrwsi config load`
-- refused one, but a data engineer's plain SQL did not: `UPDATE hrwsi.processing_condition SET
-- active = true`, a condition inserted or moved to another routine, a routine's product types
-- changed, or a multi-input rule removed (its condition then takes one input per product), and each
-- product chained into a new input for ever (found by exploratory testing). A constraint trigger,
-- deferred to the end of the transaction: the state at commit is what chains, so a transaction may
-- pass through a cycle (swapping two routines' types) and `hrwsi config load`, which checks before
-- it commits, explains a cycle in its file's terms first. It fires only for the rows that can close
-- one (an active condition, a changed product type, a removed rule), on configuration tables alone,
-- and checks at each: the tables are small and rarely written. (It checked once per statement,
-- remembered in a setting, which anyone may set: a data engineer who set it skipped the check;
-- found by review.)
CREATE FUNCTION hrwsi.refuse_a_chain_cycle() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cycle text[];
BEGIN
    cycle := hrwsi.chain_cycle();
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION '%', hrwsi.chain_cycle_problem(cycle)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'routines_do_not_chain_for_ever',
                  HINT = 'nothing of this transaction was kept; a multi-input condition, or an inactive one, breaks '
                         'the cycle (`hrwsi config validate` checks a file the same way)';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER processing_condition_added_closes_no_chain_cycle
    AFTER INSERT ON hrwsi.processing_condition DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER processing_condition_changed_closes_no_chain_cycle
    AFTER UPDATE OF active, routine ON hrwsi.processing_condition DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.active AND (NOT OLD.active OR NEW.routine IS DISTINCT FROM OLD.routine))
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER processing_routine_types_close_no_chain_cycle
    AFTER UPDATE OF input_product_type, output_product_type ON hrwsi.processing_routine DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.input_product_type IS DISTINCT FROM OLD.input_product_type
                       OR NEW.output_product_type IS DISTINCT FROM OLD.output_product_type)
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER multi_input_rule_removed_closes_no_chain_cycle
    AFTER DELETE ON hrwsi.multi_input_rule DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER multi_input_rule_moved_closes_no_chain_cycle
    AFTER UPDATE OF processing_condition ON hrwsi.multi_input_rule DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition)
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();

-- =============================================================================================
-- Operator functions. The CLI calls them (ops may too). Each returns a sentence saying what it
-- did, and refuses what makes no sense.
-- =============================================================================================

-- What a time-series task that waits for upstream work waits for (its waits_for_upstream), said as
-- hrwsi.wait_for_upstream says it, with that task's state now; NULL if there is no such task. For the
-- paths that release or move a task without deciding its wait again (migration 0077): a held task
-- released, a blocked one unblocked, a task moved to another routine said only that, and a task that
-- still waited looked ready (found by review).
CREATE FUNCTION hrwsi.upstream_wait_reason(upstream bigint) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT format('waits for the scene sensed before it, input %s, whose %s task %s %s: it runs after that '
                  'scene''s own task in its series', o.input_id, o.routine, o.id,
                  CASE WHEN o.state = 'processed'
                            AND EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = o.id AND p.chained_at IS NULL)
                       THEN 'is processed but its products are not chained yet'
                       -- (a wait its end left to the orchestrator's sweep, the series' lock being busy then:
                       -- "is still running" of a task that had ended; found by review, migration 0078)
                       WHEN o.state IN ('processed', 'terminated', 'cancelled')
                       THEN format('ended %s; the orchestrator releases this wait within a minute', o.state)
                       -- (an open one: no state of it, which its next step outgrows while this reason stays, as
                       -- "has not run yet" of a task that ran; only its end, retry or chaining decide the wait again:
                       -- migration 0095, found by review)
                       ELSE format('has not ended yet (`hrwsi task show %s` says where it is)', o.id) END)
    FROM hrwsi.processing_task o WHERE o.id = upstream
$$;

CREATE FUNCTION hrwsi.lock_task(task bigint) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
-- The operator actions' first step: lock the task and return its state, or say it does not exist.
DECLARE
    current text;
BEGIN
    SELECT state INTO current FROM hrwsi.processing_task WHERE id = task FOR UPDATE;
    IF current IS NULL THEN
        RAISE EXCEPTION 'no task %', task USING ERRCODE = 'no_data_found';
    END IF;
    RETURN current;
END $$;

CREATE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock; NULL: in no series now
    keys integer[];        -- the keys of the series' locks it takes (hrwsi.series_lock_key), in order
    keys_now integer[];
    key integer;
    series_now text;
    routine_was text;
    routine_now text;
    refused text;
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which holds it once retried)
    lift text;
    instead text;     -- (a refusal's hint: what does the task's work instead, said for the case refused)
BEGIN
    -- A task of a time series, or one whose products a time series reads, is linked (or makes the series'
    -- tasks wait) by what the retry sees once it holds the series' locks: under REPEATABLE READ or
    -- SERIALIZABLE its snapshot missed a scene another transaction had inserted meanwhile, and the retried
    -- task and that scene's both depended on the task before them and ran side by side (found by review;
    -- migration 0078). Refused there, as an INSERT into a time series is (hrwsi.create_tasks_for_new_inputs).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT CASE WHEN r.sequential_per_tile
                    THEN format('task %s is in the time series of routine %s on tile %s (sequential_per_tile)',
                                t.id, r.name, t.series_tile)
                    ELSE format('task %s of routine %s feeds the time series of routine %s (sequential_per_tile)',
                                t.id, r.name, d.name) END
        INTO refused
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        LEFT JOIN LATERAL (SELECT x.name FROM hrwsi.processing_routine x
                           WHERE x.input_product_type = r.output_product_type AND x.sequential_per_tile
                           ORDER BY x.name LIMIT 1) d ON true
        WHERE t.id = task AND ((r.sequential_per_tile AND t.series_tile IS NOT NULL) OR d.name IS NOT NULL);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'a task of a time series is retried only in a READ COMMITTED transaction (the default), '
                            'not in a % one', upper(current_setting('transaction_isolation'))
                USING ERRCODE = 'feature_not_supported', DETAIL = refused,
                      HINT = 'under a stricter isolation the retry cannot see the tasks other transactions added to '
                             'the series meanwhile, and would link the task out of sensing order: retry without BEGIN '
                             'ISOLATION LEVEL ..., or SET TRANSACTION ISOLATION LEVEL READ COMMITTED first';
        END IF;
    END IF;
    -- A task of a time series takes its series' lock first, then its row (migration 0072, amended):
    -- the task before it is read under the lock the INSERTs and the chaining of its series take, so a
    -- scene being chained meanwhile is seen once it commits, and both locks are taken in their order
    -- (series, then rows). It read the task before it, then took the lock: a scene being chained was
    -- not seen, and both tasks ran at once; and holding its row, it deadlocked with a chaining on the
    -- same tile that held the series and wanted the row (found by review).
    -- Its series is its routine's while that routine is a time series, read under locks (migration 0077):
    -- a shared lock of the routine's series, which hrwsi.end_a_routines_series takes alone when
    -- sequential_per_tile is turned off, so that it releases this task too once this retry commits; then
    -- the series' lock; then the row, and the task's routine and series read again. They were read from
    -- the task alone, before any lock: a task of a routine no longer a time series was linked again
    -- behind the task before it (and blocked behind one that could not run); and a task moved to another
    -- routine in between (`hrwsi move-tasks`) read the task before it in a series whose lock it did not
    -- hold, then took that lock with its row held (found by review). Moved in between, the first try is
    -- rolled back with its subtransaction, which releases its locks, and the task is taken again in the
    -- series it is in now, in the same order.
    -- It takes, with its own series' lock and in the order of their keys, the locks of the series its
    -- task feeds (migration 0084): a retried upstream task makes the series' next task wait again
    -- (hrwsi.after_task_changes), and took their locks there, holding the task's row, while every other
    -- holder of a series lock takes it before the rows: two transactions retrying two upstream tasks of
    -- one tile, or a retry of a series task that feeds another series and an INSERT taking both series
    -- in the order of their keys, deadlocked (found by exploratory testing). Taken again there, they are
    -- held already.
    LOOP
        SELECT t.routine INTO routine_was FROM hrwsi.processing_task t WHERE t.id = task;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(7250078, hashtext(coalesce(routine_was, '')));
            SELECT t.routine || '/' || t.series_tile INTO series
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
            WHERE t.id = task AND t.series_tile IS NOT NULL;
            keys := hrwsi.retry_series_lock_keys(task);
            FOREACH key IN ARRAY keys LOOP
                PERFORM pg_advisory_xact_lock(7250010, key);
            END LOOP;
            current := hrwsi.lock_task(task);
            SELECT t.routine, CASE WHEN r.sequential_per_tile AND t.series_tile IS NOT NULL
                                   THEN t.routine || '/' || t.series_tile END
            INTO routine_now, series_now
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
            WHERE t.id = task;
            keys_now := hrwsi.retry_series_lock_keys(task);
            EXIT WHEN routine_now IS NOT DISTINCT FROM routine_was AND series_now IS NOT DISTINCT FROM series
                      AND keys_now <@ keys;
            RAISE EXCEPTION 'task % moved to another series while it was retried', task USING ERRCODE = 'HR078';
        EXCEPTION WHEN SQLSTATE 'HR078' THEN
            NULL;  -- (its locks released with the subtransaction: again, in the series the task is in now)
        END;
    END LOOP;
    IF current NOT IN ('terminated', 'cancelled', 'on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled, held or blocked task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a campaign's composite that read a member of the old version of a corrected input, which the correction
    -- cancelled: retried, it read that member again; migration 0102, found by review. A member is of the old version
    -- when it is a product the correction outdated, or the corrected input itself, corrected after the task was made)
    SELECT format('task %s, a composite of campaign %s, was made from member %s of input %s, which input %s corrects',
                  t.id, t.campaign_id, c.member_path, o.id, o.superseded_by) INTO refused
    FROM hrwsi.processing_task t JOIN hrwsi.multi_input_campaign_member c ON c.task_id = t.id
    CROSS JOIN LATERAL (
        SELECT x.id, x.superseded_by FROM hrwsi.product p
        JOIN hrwsi.input x ON x.superseded_by = p.outdated_by AND x.source <> 'multi_input'
        WHERE p.path = c.member_path
        UNION ALL
        -- (the corrected input itself, as the correction marked the member: migration 0104. It was told by creation
        -- times, each its transaction's start: a correction begun before the campaign was started seemed to follow it)
        SELECT x.id, x.superseded_by FROM hrwsi.input x
        WHERE x.superseded_by = c.outdated_by AND x.input_path = c.member_path AND x.product_id IS NULL
          AND x.campaign_id IS NULL AND x.source <> 'multi_input'
        ORDER BY 1 LIMIT 1) o
    WHERE t.id = task ORDER BY c.member_path LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'a campaign makes the composite anew from the members there are now: start it again '
                         '(`hrwsi reprocess`, again => true)';
    END IF;
    -- (a task of an input a correction superseded would run the wrong input again: migration 0083. A multi-input
    -- group's input is superseded when a member's input is corrected, and the harvester makes the group anew: the
    -- answer says so, and which task does its work now; it named the group "input G, which input N corrects",
    -- N being the corrected member's input, found by review: migration 0102)
    SELECT CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN format('task %s ran multi-input group %s (input %s), which was made anew when input %s was corrected '
                            '(input %s replaces it)%s', t.id, i.input_path, i.id, x.id, i.superseded_by,
                            CASE WHEN n.task_id IS NOT NULL
                                 THEN format(': task %s, of the new group (input %s), does its work', n.task_id, n.input_id)
                                 ELSE ': the harvester makes the new group once it is complete, and its task does the '
                                      'work (`hrwsi groups` lists it)' END)
                -- (a campaign's: the corrected input's task that runs instead is production's, not the campaign's
                -- version; migration 0104, found by review: it read "the corrected input's task runs instead")
                WHEN t.campaign_id IS NOT NULL AND i.source <> 'multi_input'
                THEN format('task %s, of campaign %s, was made from input %s, which input %s corrects (its production '
                            'task runs the corrected input, and the campaign does not: `hrwsi reprocess` starts a '
                            'campaign that does)', t.id, t.campaign_id, i.id, i.superseded_by)
                ELSE format('task %s was made from input %s, which input %s corrects', t.id, i.id, i.superseded_by) END,
           -- (the hint said "the corrected input's task runs instead" after each, a campaign's too, whose campaign does
           -- not run it; migration 0107, found by review)
           CASE WHEN i.source = 'multi_input' AND t.campaign_id IS NULL
                THEN 'the new group''s task does its work (`hrwsi groups` lists the groups, `hrwsi tasks` their tasks)'
                WHEN t.campaign_id IS NOT NULL AND i.source = 'multi_input'
                THEN 'a campaign makes the composite anew from the members there are now: start it again '
                     '(`hrwsi reprocess`, again => true)'
                WHEN t.campaign_id IS NOT NULL
                THEN 'the campaign does not run the corrected input: `hrwsi reprocess` (again => true) starts a campaign '
                     'that does, once production has processed it'
                ELSE 'the corrected input''s task runs instead (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON true
    LEFT JOIN LATERAL (SELECT g.id AS input_id, k.id AS task_id FROM hrwsi.input g
                       JOIN hrwsi.processing_task k ON k.input_id = g.id AND k.campaign_id IS NULL
                       WHERE g.processing_condition = i.processing_condition AND g.input_path = i.input_path
                         AND g.superseded_by IS NULL
                       ORDER BY k.id DESC LIMIT 1) n ON i.source = 'multi_input'
    WHERE t.id = task AND i.superseded_by IS NOT NULL;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
    END IF;
    -- (nor a task made down a chain from the products of such an input's tasks, which the correction cancelled:
    -- retried, it ran from the old version's product again, beside the corrected input's chain; migration 0096)
    -- (retention cuts no link of the walk while the task retried is kept: its input stays while a task names it
    -- (refuse_removing_inputs_tasks_name), a product while an input was made from it (prune_products), and a task
    -- while it has a product (product_task_must_exist); checked by review for migration 0098)
    -- (up every way a task is made from a product, as the correction walks down, migration 0102: the product its input
    -- was chained from, the products its multi-input group, or its campaign's composite, read as members. It followed
    -- the chained inputs alone, and a task down a chain from a campaign's composite that read an outdated member was
    -- retried; one down from a group named the group as the input corrected; found by review)
    WITH RECURSIVE up(task_id) AS (
        SELECT task
        UNION
        SELECT o.task_id FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id
        CROSS JOIN LATERAL (
            SELECT p.task_id FROM hrwsi.input i JOIN hrwsi.product p ON p.id = i.product_id WHERE i.id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_member g JOIN hrwsi.product p ON p.path = g.member_path
            WHERE g.input_id = t.input_id
            UNION ALL
            SELECT p.task_id FROM hrwsi.multi_input_campaign_member c JOIN hrwsi.product p ON p.path = c.member_path
            WHERE c.task_id = t.id) o
    )
    SELECT format('task %s was made down a chain from the products of input %s, which input %s corrects', task,
                  coalesce(x.id, i.id), i.superseded_by),
           -- (a campaign's task: its campaign does not chain the corrected input's products; migration 0107)
           CASE WHEN (SELECT k.campaign_id FROM hrwsi.processing_task k WHERE k.id = task) IS NOT NULL
                THEN 'the campaign does not redo it: `hrwsi reprocess` (again => true) starts a campaign that does, once '
                     'production has processed the corrected input'
                ELSE 'the corrected input''s products chain anew and make this step''s task (`hrwsi tasks` lists it)' END
    INTO refused, instead
    FROM up u JOIN hrwsi.processing_task t ON t.id = u.task_id JOIN hrwsi.input i ON i.id = t.input_id
    LEFT JOIN LATERAL (SELECT x.id FROM hrwsi.input x WHERE x.superseded_by = i.superseded_by AND x.source <> 'multi_input'
                       ORDER BY x.id LIMIT 1) x ON i.source = 'multi_input'
    WHERE u.task_id <> task AND i.superseded_by IS NOT NULL ORDER BY i.source = 'multi_input', i.id LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation', HINT = instead;
    END IF;
    -- A task of a time series runs again after the scene sensed last before it, as a new task
    -- would: one that ended (or was held) kept the link it ran with, and a late scene that came
    -- meanwhile was processed before it, yet the retried task ran as the series' first, reading no
    -- previous product (found by exploratory testing; migration 0069).
    SELECT p.id, p.state INTO previous, previous_state
    FROM hrwsi.processing_task t CROSS JOIN LATERAL (
        SELECT p.id, p.state FROM hrwsi.processing_task p
        WHERE p.routine = t.routine AND p.series_tile = t.series_tile AND p.state <> 'cancelled'
          AND p.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (p.series_at, p.id) < (t.series_at, t.id)
        ORDER BY p.series_at DESC, p.id DESC LIMIT 1) p
    WHERE t.id = task AND series IS NOT NULL AND NOT t.dependency_waived;
    -- (a task of a routine that is no longer a time series runs without the link it ran with, as the
    -- routine's open tasks do since it was turned off: hrwsi.end_a_routines_series)
    -- (an operator's retry is a fresh start, its failures and losses counted from zero: the worker its last
    -- attempt could not be placed on is avoided no more, migration 0089. Nomad's reason, a drained node or
    -- another team's job on it, was true then, minutes or days before; and the operator who wants a worker
    -- avoided sets it inactive (worker.active), which every attempt avoids. It was kept until an attempt ran.)
    -- (and it starts from the urgency it is owed now, its own, taking again only from the tasks that still wait for it
    -- (the trigger's step for tasks pending again, and the pass below): what it took before it ended it kept, from a
    -- task released since to run without it too, and it was planned at that task's urgency; migration 0095, found by
    -- review. The give-back's own rule, hrwsi.give_back_taken_deadlines)
    -- (an operator's retry lifts the task's own hold, kept through a block too: migration 0098)
    UPDATE hrwsi.processing_task t
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        held_while_blocked = false,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL, avoid_worker = NULL,
        deadline_at = CASE WHEN t.deadline_inherited_from IS NOT NULL THEN t.own_deadline_at ELSE t.deadline_at END,
        own_deadline_at = NULL, deadline_inherited_from = NULL, priority_inherited_from = NULL,
        priority = CASE WHEN t.priority_inherited_from IS NOT NULL OR t.deadline_inherited_from IS NOT NULL
                        THEN (SELECT CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                          THEN least(l.priority, 0) ELSE l.priority END
                              FROM hrwsi.lane l WHERE l.name = t.lane)
                        ELSE t.priority END,
        dependency_waived = dependency_waived OR (series IS NULL AND depends_on IS NOT NULL),
        waits_for_upstream = CASE WHEN series IS NOT NULL THEN waits_for_upstream END,
        state_reason = CASE WHEN series IS NULL AND depends_on IS NOT NULL AND NOT dependency_waived
                            THEN format('retried by an operator; routine %s is no longer a time series: it no longer '
                                        'waits for task %s', routine, depends_on)
                            ELSE 'retried by an operator' END
    WHERE id = task;
    -- Behind a task that cannot run (blocked, or ended terminated), it is blocked, saying so, and so
    -- are the tasks after it (hrwsi.after_task_changes), as a new task there would be (migration 0061).
    IF previous_state IN ('blocked', 'terminated') THEN
        UPDATE hrwsi.processing_task
        SET state = 'blocked', state_reason = CASE WHEN previous_state = 'terminated' THEN
                format('retried by an operator; its dependency, task %s, ended terminated: `hrwsi retry %s` runs '
                       'the dependency again, `hrwsi release %s` runs this task without it', previous, previous, task)
            ELSE format('retried by an operator; waits for task %s, which has to run before it (`hrwsi task show %s` '
                        'says what that task waits for): it runs once that task has run', previous, previous) END
        WHERE id = task;
    END IF;
    -- The task after it in its series that has not started and waits for another (one cancelled was
    -- skipped: hrwsi.skip_cancelled_tasks) waits for it again, as it would for a late scene; behind it
    -- blocked, it is blocked too (migration 0084). Else both waited for the same task and ran side by side.
    IF series IS NOT NULL THEN
        WITH me AS (
            SELECT t.id, t.state, t.routine, t.series_tile, t.series_at, t.campaign_id FROM hrwsi.processing_task t
            WHERE t.id = task AND NOT t.dependency_waived
        ), next AS (
            SELECT n.id, n.state AS old_state, me.state AS my_state,
                   CASE WHEN n.state = 'blocked' THEN hrwsi.hold_a_new_task_takes(n.routine, n.campaign_id, n.lane) END
                       AS group_hold
            FROM me CROSS JOIN LATERAL (
                SELECT n.id, n.state, n.depends_on, n.dependency_waived, n.routine, n.campaign_id, n.lane
                FROM hrwsi.processing_task n
                WHERE n.routine = me.routine AND n.series_tile = me.series_tile AND n.state <> 'cancelled'
                  AND n.campaign_id IS NOT DISTINCT FROM me.campaign_id AND (n.series_at, n.id) > (me.series_at, me.id)
                ORDER BY n.series_at, n.id LIMIT 1) n
            WHERE n.depends_on IS DISTINCT FROM task AND NOT n.dependency_waived
              AND n.state IN ('pending', 'planned', 'on_hold', 'blocked')
        ), changed AS (
            -- (behind it blocked, a held one is blocked too, its own hold kept to hold it again when its wait ends, as
            -- the end of the task it waits for blocks it; and a blocked one whose wait ends is held again if an operator
            -- held it, or with its routine, campaign or back-fill: migration 0098, found by review. A held one stayed
            -- held behind a task that could not run, and was pending once released, its wait never decided again)
            UPDATE hrwsi.processing_task t
            SET depends_on = task,
                state = CASE WHEN x.my_state = 'blocked' THEN 'blocked' WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN t.state = 'blocked' AND (t.held_while_blocked OR x.group_hold IS NOT NULL) THEN 'on_hold'
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = CASE WHEN x.my_state <> 'blocked' THEN false
                                          WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                          ELSE t.held_while_blocked END,
                worker = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state IN ('planned', 'blocked') THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN x.my_state = 'blocked'
                                    THEN format('waits for task %s, which has to run before it (`hrwsi task show %s` says '
                                                'what that task waits for): it runs once that task has run', task, task)
                                    WHEN t.state = 'on_hold' THEN t.state_reason
                                    ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                              WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                              ELSE coalesce(x.group_hold || '; ', '') END
                                         || format('task %s before it in its time series was retried: it runs after it', task)
                               END
            FROM next x
            WHERE t.id = x.id AND t.depends_on IS DISTINCT FROM task AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
            RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, x.old_state
        )
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state;
    END IF;
    -- ... and, of a chained step, waits for the scenes sensed before it whose upstream work is still
    -- open, as a new task would (migration 0072), under its series' lock (taken above).
    IF series IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(ARRAY[t.id]) FROM hrwsi.processing_task t
        WHERE t.id = task AND NOT t.dependency_waived;
        -- The retried task, and the tasks that wait for it again, pass their priority and deadline down to the
        -- less urgent tasks they wait for now, at once, as a task an INSERT links does (migration 0086): a
        -- near-real-time scene behind a retried archive task passed nothing down until the series' next INSERT,
        -- and waited behind it at the archive lane's priority meanwhile (found by review). Each read by key.
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT task UNION ALL
                                                SELECT t.id FROM hrwsi.processing_task t WHERE t.depends_on = task));
    END IF;
    -- A task pending again whose routine, campaign or back-fill is on hold is held with it, as a new task of it is
    -- (migration 0098): the retry lifts its own hold only. It was pending, shown so while dispatch skipped it.
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task AND t.state = 'pending';
    IF group_hold IS NOT NULL THEN
        UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = group_hold || '; ' || state_reason
        WHERE id = task;
        RETURN format('task %s was %s; it is retried, but it is still held: %s', task, current, lift);
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

-- The tasks given (live tasks of time series) pass their priority and deadline down their series to the
-- less urgent tasks they wait for, down to the first that runs or ran; each remembers whose deadline it took
-- and whose priority (priority inheritance: hrwsi.create_tasks_for_new_inputs says why). Called by that
-- trigger with the new tasks and the tasks now after them, by hrwsi.give_back_taken_deadlines with the tasks
-- that waited for those that gave a deadline back (migration 0085: one statement for both, where the second
-- was a copy of the first), and by every other relinking of a series with the tasks whose dependency it
-- changed (migration 0086: hrwsi.retry_task, hrwsi.skip_cancelled_tasks, hrwsi.correct_input; an urgent task
-- linked behind archive work there passed nothing down until the series' next INSERT, and was served after
-- it at the archive lane's priority meanwhile, found by review). Returns how many took a priority or a deadline.
--
-- Every task is read through its key, whatever the table's statistics (a probe in a sub-query of its own,
-- OFFSET 0, and no sequential scan: migration 0085). Planned with the statistics of a table whose rows an
-- INSERT rolled back had left (ANALYZE counts no live row then), this statement took 46 s for the waiters of
-- 10,000 new tasks, and the statement in the trigger before it ran for more than five minutes for a back-fill
-- of 5,000 scenes of a time series over 200 tiles sent again after a refused INSERT, which took half a second
-- on a fresh table (found by measuring it).
CREATE FUNCTION hrwsi.pass_deadlines_down(waiters bigint[]) RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
    WITH RECURSIVE waiting AS (
        SELECT d.id, u.priority, u.deadline_at, coalesce(u.deadline_inherited_from, u.id) AS waiter,
               coalesce(u.deadline_inherited_from, u.id) AS deadline_from,
               coalesce(u.priority_inherited_from, u.id) AS priority_from
        FROM unnest(waiters) AS x(id)
        CROSS JOIN LATERAL (SELECT u.* FROM processing_task u WHERE u.id = x.id OFFSET 0) u
        CROSS JOIN LATERAL (SELECT d.* FROM processing_task d WHERE d.id = u.depends_on OFFSET 0) d
        -- (one rule for every caller, migration 0090: a task released to run without the task it waited for
        -- (dependency_waived) passes nothing to it, nor through it, and a held one lends nothing until it is
        -- released; only the trigger's step for tasks pending again followed the first, and a retry, a
        -- relinking or an INSERT's walk raised a task no one waited for any more)
        WHERE u.state IN ('pending', 'planned', 'blocked') AND NOT u.dependency_waived
          AND (d.priority > u.priority OR u.deadline_at < coalesce(d.deadline_at, 'infinity'))
          AND d.state IN ('pending', 'planned')
        UNION
        -- (the deadline passed on is the earliest on the way, and deadline_from the task whose it is: a task on
        -- the way with an earlier deadline than the waiter's, raised for its priority alone, passes its own;
        -- the waiter was named, and a cancel of that task gave back a deadline that was not its own, while
        -- the task whose it was, cancelled, left it taken: found by review, migration 0085; the priority's name
        -- goes with the priority in the same way, migration 0086)
        SELECT d.id, least(w.priority, p.priority), least(w.deadline_at, p.deadline_at), w.waiter,
               CASE WHEN p.deadline_at < coalesce(w.deadline_at, 'infinity')
                    THEN coalesce(p.deadline_inherited_from, p.id) ELSE w.deadline_from END,
               CASE WHEN p.priority < w.priority THEN coalesce(p.priority_inherited_from, p.id) ELSE w.priority_from END
        FROM waiting w
        CROSS JOIN LATERAL (SELECT p.* FROM processing_task p WHERE p.id = w.id OFFSET 0) p
        CROSS JOIN LATERAL (SELECT d.* FROM processing_task d WHERE d.id = p.depends_on OFFSET 0) d
        WHERE (d.priority > least(w.priority, p.priority)
               OR least(w.deadline_at, p.deadline_at) < coalesce(d.deadline_at, 'infinity'))
          AND d.state IN ('pending', 'planned') AND NOT p.dependency_waived
    ), locked AS MATERIALIZED (
        -- (locked first, in the order of their ids, as every writer of many tasks locks them: in the join's
        -- order, the table's, this UPDATE deadlocked with the planner storing a plan, or the ageing of a lane,
        -- that held one of them and wanted one it held; migration 0084)
        SELECT t.id FROM processing_task t
        WHERE t.id = ANY (ARRAY(SELECT w.id FROM waiting w)) AND t.state IN ('pending', 'planned')
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), raised AS (
        UPDATE processing_task t
        SET priority = least(t.priority, w.priority),
            deadline_at = least(t.deadline_at, w.deadline_at),
            deadline_inherited_from = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity') THEN w.deadline_from
                                           ELSE t.deadline_inherited_from END,
            own_deadline_at = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity')
                                        AND t.deadline_inherited_from IS NULL THEN t.deadline_at
                                   ELSE t.own_deadline_at END,
            priority_inherited_from = CASE WHEN w.priority < t.priority THEN w.priority_from
                                           ELSE t.priority_inherited_from END,
            state = 'pending',
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN t.state = 'planned'
                                THEN format('near-real-time task %s of its time series waits for it: served as '
                                            'urgently, planned again', w.waiter)
                                ELSE t.state_reason END
        FROM (SELECT id, min(priority) AS priority, min(deadline_at) AS deadline_at, min(waiter) AS waiter,
                     (array_agg(deadline_from ORDER BY deadline_at NULLS LAST, deadline_from))[1] AS deadline_from,
                     (array_agg(priority_from ORDER BY priority, priority_from))[1] AS priority_from
              FROM waiting GROUP BY id) w
        -- (its state again here: the recursion read a snapshot, and a row this UPDATE waited for, a task
        -- dispatch claimed meanwhile, is checked once more against this condition alone, as committed;
        -- without it the claimed task went back to pending and ran a second attempt beside the first,
        -- and a cancelled or held one was made pending: found by review, migration 0081)
        WHERE t.id = w.id AND t.id IN (SELECT l.id FROM locked l) AND t.state IN ('pending', 'planned')
          AND (t.priority > w.priority OR w.deadline_at < coalesce(t.deadline_at, 'infinity'))
        RETURNING 1
    )
    SELECT count(*)::integer FROM raised
$$;

-- The tasks of a time series that may pass a priority or a deadline down after new inputs (their ids): the
-- inputs' tasks that wait for a task, and the tasks that wait for one of them now (a late scene landed before
-- them). For hrwsi.create_tasks_for_new_inputs, with hrwsi.pass_deadlines_down (migration 0085): each task a
-- probe of an index by key, whatever the statistics (joined with the trigger's transition table, a plan made
-- on the statistics of a table an INSERT rolled back had filled read every task waiting for another once per
-- new task: 98 million rows compared for 10,000 new tasks).
CREATE FUNCTION hrwsi.series_waiters_of(inputs bigint[]) RETURNS bigint[] LANGUAGE sql
SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
    SELECT ARRAY(
        SELECT t.id FROM unnest(inputs) AS x(id)
        -- (the dependency tested outside the probe: inside, a plan made on such statistics read the index of
        -- dependencies whole for each input, 4 s for 5,000)
        CROSS JOIN LATERAL (SELECT t.id, t.depends_on FROM processing_task t WHERE t.input_id = x.id OFFSET 0) t
        WHERE t.depends_on IS NOT NULL
        UNION ALL
        SELECT s.id FROM unnest(inputs) AS x(id)
        CROSS JOIN LATERAL (SELECT f.id FROM processing_task f WHERE f.input_id = x.id OFFSET 0) f
        CROSS JOIN LATERAL (SELECT s.id FROM processing_task s WHERE s.depends_on = f.id OFFSET 0) s)
$$;

-- A task before a near-real-time task in its time series that took that task's deadline (and its
-- priority) to be served before it gives them back when that task is cancelled (migration 0083): the
-- archive tasks before a fresh scene cancelled or corrected kept its deadline and raised priority, and
-- were served ahead of real near-real-time work (found by review). It is served by its own deadline
-- again (none: NULL), at its lane's priority (an aged one, past its lane's promote_after, stays at 0, as
-- hrwsi.promote_aged_tasks would make it again); a planned one is planned again. Called by
-- hrwsi.after_task_changes with the tasks any UPDATE cancelled (migration 0089; hrwsi.cancel_task and
-- hrwsi.correct_input alone called it before) or held (migration 0090: a held task lends nothing), after the
-- tasks after those took the task before them as their own (hrwsi.skip_cancelled_tasks), and by no one else;
-- returns how many gave back. The
-- live tasks that wait for them then pass their own priority and deadline down at once (migration 0085):
-- a later fresh scene of the series, waiting behind them, passed its deadline on only when the series was
-- next linked, and was served after them meanwhile, at the archive lane's priority (found by review).
-- The deadline and the priority are given back each to the task named for it (migration 0086): a task
-- raised for its priority alone (its own deadline earlier than the waiter's, or the waiter with none) named
-- no one, and kept the priority of a cancelled waiter for good (found by review). A task that took a
-- deadline before migration 0086 named no one for its priority: it gives its priority back with the
-- deadline, as it did (a task whose priority is its own gets the same priority again).
CREATE FUNCTION hrwsi.give_back_taken_deadlines(cancelled bigint[]) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_seqscan = off SET jit = off AS $$
DECLARE
    given bigint[];
BEGIN
    WITH back AS (
        UPDATE processing_task t
        SET deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN t.own_deadline_at
                               ELSE t.deadline_at END,
            deadline_inherited_from = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.deadline_inherited_from END,
            own_deadline_at = CASE WHEN t.deadline_inherited_from = ANY (cancelled) THEN NULL ELSE t.own_deadline_at END,
            priority = CASE WHEN t.priority_inherited_from = ANY (cancelled)
                                 OR (t.priority_inherited_from IS NULL AND t.deadline_inherited_from = ANY (cancelled))
                            THEN CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                                      THEN least(l.priority, 0) ELSE l.priority END
                            ELSE t.priority END,
            priority_inherited_from = CASE WHEN t.priority_inherited_from = ANY (cancelled) THEN NULL
                                           ELSE t.priority_inherited_from END,
            state = CASE WHEN t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            -- (not "served by its own": a task after it may give it its deadline at once, below)
            -- (held or cancelled, as that task is now: migration 0090)
            state_reason = CASE WHEN t.state = 'planned' AND t.deadline_inherited_from = ANY (cancelled)
                                THEN format('task %s, whose deadline it took, was %s: it gave it back, planned '
                                            'again', t.deadline_inherited_from,
                                            (SELECT CASE x.state WHEN 'on_hold' THEN 'held' WHEN 'cancelled' THEN 'cancelled'
                                                        ELSE 'held up by a held task, or moved' END
                                             FROM processing_task x WHERE x.id = t.deadline_inherited_from))
                                WHEN t.state = 'planned'
                                THEN format('task %s, whose priority it took, was %s: it gave it back, planned '
                                            'again', t.priority_inherited_from,
                                            (SELECT CASE x.state WHEN 'on_hold' THEN 'held' WHEN 'cancelled' THEN 'cancelled'
                                                        ELSE 'held up by a held task, or moved' END
                                             FROM processing_task x WHERE x.id = t.priority_inherited_from))
                                ELSE t.state_reason END
        FROM lane l
        -- (the tasks that took one, by key through the partial indexes of the names, at every cancel since
        -- migration 0089; the state test wrapped so that no index of states serves it: a plan made on a table
        -- of few tasks read every pending task for it)
        WHERE (t.deadline_inherited_from = ANY (cancelled) OR t.priority_inherited_from = ANY (cancelled))
          AND l.name = t.lane AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'), false)
        RETURNING t.id
    )
    SELECT coalesce(array_agg(b.id), '{}') INTO given FROM back b;
    IF cardinality(given) > 0 THEN
        PERFORM hrwsi.pass_deadlines_down(ARRAY(SELECT t.id FROM processing_task t
                                                WHERE t.depends_on = ANY (given)
                                                  AND coalesce(t.state IN ('pending', 'planned', 'on_hold', 'blocked'),
                                                               false)));
    END IF;
    RETURN cardinality(given);
END $$;


CREATE FUNCTION hrwsi.cancel_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    series_key integer;  -- (a time series' task) its series' lock (hrwsi.series_lock_key)
    next_task bigint;    -- ... the task after it, which takes the one before it as its own
    next_previous bigint;
BEGIN
    -- A task of a time series: the series' lock first, then the row, as every holder of both takes them:
    -- the tasks after it take the task before it as theirs under that lock (hrwsi.skip_cancelled_tasks,
    -- migration 0084), and a scene inserted meanwhile is linked around it.
    SELECT hrwsi.series_lock_key(t.routine, t.series_tile) INTO series_key
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
    WHERE t.id = task AND t.series_tile IS NOT NULL;
    IF series_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(7250010, series_key);
    END IF;
    current := hrwsi.lock_task(task);
    IF current IN ('processed', 'terminated', 'cancelled') THEN
        RAISE EXCEPTION 'task % is already %: nothing to cancel', task, current USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'cancelled', state_reason = 'cancelled by an operator' WHERE id = task;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE task_id = task AND state IN ('submitted', 'queued', 'running');
    -- (the tasks before it that took its deadline gave it back: hrwsi.after_task_changes, for its UPDATE)
    SELECT t.id, t.depends_on INTO next_task, next_previous FROM hrwsi.processing_task t
    WHERE t.state_reason LIKE format('task %s before it in its time series was cancelled%%', task)
      AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ORDER BY t.series_at, t.id LIMIT 1;
    RETURN format('task %s was %s; it is cancelled%s%s', task, current,
                  CASE WHEN current IN ('dispatched', 'queued', 'running') THEN ' and its job is being stopped' ELSE '' END,
                  CASE WHEN next_task IS NULL THEN ''
                       WHEN next_previous IS NULL THEN format('; task %s after it in its time series is its first now', next_task)
                       ELSE format('; task %s after it in its time series runs after task %s now', next_task, next_previous) END);
END $$;

-- The last correction of an input (migration 0104): hrwsi.correct_input updates its one row as it commits, and a
-- statement that waited for the correction's lock in a REPEATABLE READ or SERIALIZABLE transaction locks the row
-- (hrwsi.see_the_corrections_before): a correction committed after that transaction's snapshot fails the lock, as it
-- fails any row the correction changed. The lock is all: its snapshot, taken before the wait, shows no correction.
CREATE TABLE hrwsi.last_correction (
    only_row     boolean PRIMARY KEY DEFAULT true CONSTRAINT last_correction_is_one_row CHECK (only_row),
    input_id     bigint,        -- (the input corrected last: no key, retention removes inputs)
    corrected_at timestamptz
);
INSERT INTO hrwsi.last_correction (only_row) VALUES (true);

-- (migration 0104) A statement that waited for the correction's lock (7250098/1) reads what the correction did: in
-- READ COMMITTED its next statements take a new snapshot, but a REPEATABLE READ or SERIALIZABLE transaction took its
-- snapshot before the wait, and read the old version (hrwsi.reprocess made a campaign's composite of the old version's
-- product, not outdated in that snapshot; found by review). Refused there, in one sentence, when a correction committed
-- after that snapshot; else it goes on. Run by hrwsi.reprocess and hrwsi.chain_missed_products, after the lock.
CREATE FUNCTION hrwsi.see_the_corrections_before(caller text, reads text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM 1 FROM hrwsi.last_correction FOR SHARE;
    EXCEPTION WHEN serialization_failure THEN
        RAISE EXCEPTION 'an input was corrected after this transaction''s snapshot was taken: % would read % as they '
                        'were before the correction, and is refused', caller, reads
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('A %s transaction reads what its snapshot shows, taken before %s waited for the '
                                  'correction under way.', upper(current_setting('transaction_isolation')), caller),
                  HINT = 'run it again in a new transaction (its snapshot sees the correction), or in a READ COMMITTED one';
    END;
END $$;

-- (migration 0107) The tasks made from the inputs given and down a chain from their products, step after step, every
-- way a task is made from a product (migration 0097): an input chained from it, a multi-input group it is a member of,
-- a campaign's composite that reads it; and the groups and composites that read such an input itself (one not chained
-- from a product: its path is the member's). What hrwsi.correct_input cancels (an input being corrected) and what
-- `hrwsi retry --routine R` leaves out (the inputs corrected before: report_tasks_to_retry) are this one walk: each
-- wrote it out, and the two had drifted (the list told a campaign's composite of the old version by creation times,
-- which hrwsi.retry_task gave up in migration 0104: it listed one a correction begun before the campaign cancelled,
-- and the command stopped at it; found by review). A group or composite reading the input's path is of its version
-- when the input's correction marked it (the group's superseded_by, the member's outdated_by), or, for an input not
-- corrected yet, when no correction marked it: the group made anew, and a composite made since, read the corrected
-- input, which may keep the path.
CREATE FUNCTION hrwsi.tasks_down_a_chain(inputs bigint[]) RETURNS SETOF bigint LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    WITH RECURSIVE below(id) AS (
        SELECT o.id FROM input x JOIN processing_task o ON o.input_id = x.id WHERE x.id = ANY (inputs)
        UNION
        SELECT t.id FROM input x JOIN multi_input_member g ON g.member_path = x.input_path
        JOIN input y ON y.id = g.input_id JOIN processing_task t ON t.input_id = g.input_id
        WHERE x.id = ANY (inputs) AND x.product_id IS NULL AND x.campaign_id IS NULL AND x.source <> 'multi_input'
          AND y.superseded_by IS NOT DISTINCT FROM x.superseded_by
        UNION
        SELECT c.task_id FROM input x JOIN multi_input_campaign_member c ON c.member_path = x.input_path
        WHERE x.id = ANY (inputs) AND x.product_id IS NULL AND x.campaign_id IS NULL AND x.source <> 'multi_input'
          AND c.outdated_by IS NOT DISTINCT FROM x.superseded_by
        UNION
        SELECT m.id FROM below b JOIN product p ON p.task_id = b.id
        CROSS JOIN LATERAL (
            SELECT t.id FROM input i JOIN processing_task t ON t.input_id = i.id WHERE i.product_id = p.id
            UNION ALL
            SELECT t.id FROM multi_input_member g JOIN processing_task t ON t.input_id = g.input_id
            WHERE g.member_path = p.path
            UNION ALL
            SELECT c.task_id FROM multi_input_campaign_member c WHERE c.member_path = p.path) m
    )
    SELECT b.id FROM below b
$$;

-- A data engineer's correction of an input a task was made from (migration 0083): README told them to
-- insert the corrected input and cancel the old task, but an input that keeps the path could not be
-- inserted until retention removed the old one (found by exploratory testing). This cancels the old
-- input's open tasks, marks it superseded (it keeps its tasks, attempts, products and history, and no
-- longer holds its path or scene) and inserts the corrected input, whose task is made as any input's.
-- A NULL argument keeps the old input's value. Refused while an attempt made from the old input runs
-- (a job submitted, queued or running, cancelled or not): the corrected input's attempt would run
-- beside it. Tasks of its time series that waited for a cancelled task wait for the corrected one when
-- it takes its place, else for the task before it, as a retry would link them. Returns the new input's id.
-- The old input's tasks, processed ones too, leave their time series (series_tile and series_at NULL:
-- every lookup of a series' members matches on them), so that no task links behind the wrong version of
-- the scene: the corrected input's task depended on the old one's, which it replaces (found by review).
-- An open task that waited for a processed old one waits for the task before it instead. Tasks before a
-- cancelled one that took its deadline give it back (hrwsi.give_back_taken_deadlines). The tasks made
-- down a chain from the products of the old input's tasks, step after step, are treated as its own
-- (migration 0094): open ones cancelled (their reason names the correction), all leave their series, and
-- the correction is refused while one runs; their inputs stay (the corrected input's products chain
-- anew, under other paths), and their products not chained yet, as the old input's tasks', never are.
-- Down a chain is every way a task is made from a product (migration 0097): an input chained from it, a
-- multi-input group it is a member of (as is the old input itself, not chained from a product), a
-- campaign's composite that reads it. Such a group is superseded too (by the corrected input: its path
-- is free again), and the harvester makes it anew from the members it has then; the products of the old
-- version, and down its chain, are marked outdated_by the corrected input: never chained again (nor by
-- hrwsi.chain_missed_products), never a group's member. A correction and chaining wait for each other
-- (the lock 7250098/1: exclusive here, shared by the harvester's chaining and group statements, by
-- chain_missed_products, and by hrwsi.reprocess since migration 0102): a product chained while the correction
-- ran made a task from the old version that the correction had not seen (found by review). Refused for a
-- campaign's input (reprocessing: the production input at the start of its chain is corrected, then reprocessed
-- again), a multi-input group (its members are not copied: the group would run with none) and a new path for a
-- chained input (its path is its product's): a data engineer could otherwise make inputs the column grants keep
-- from them (found by review).
CREATE FUNCTION hrwsi.correct_input(input_id bigint, tile text DEFAULT NULL, measured_at timestamptz DEFAULT NULL,
                                    published_at timestamptz DEFAULT NULL, lane text DEFAULT NULL,
                                    input_path text DEFAULT NULL, mission text DEFAULT NULL, scene_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    was hrwsi.input;      -- (the input corrected)
    busy record;
    series record;
    cancelled bigint[];
    waiting bigint;
    was_held boolean;  -- (held by an operator before it was blocked: hrwsi.hold_is_the_tasks_own)
    new_id bigint;
    alerted bigint;       -- (the last alert before the cancellations)
    dependents bigint[];  -- (the tasks that waited for a cancelled one)
    old_tasks bigint[];   -- (the old input's tasks, which leave their time series)
    relinked bigint[];    -- (the tasks that waited for a processed old one, linked to the task before it)
    downstream bigint[];  -- (the tasks made down a chain from the products of its tasks)
    outdated text[];      -- (the paths of the old version: its products, those down its chain, the input itself)
BEGIN
    -- No chaining (nor group) runs while a correction does, nor a correction while one runs (migration 0097):
    -- a statement chaining a product of the old version while the walk below ran made a task from it that
    -- the walk had not seen, and the product, locked, was skipped (found by review). Taken first, before
    -- any series lock: chaining takes it first too, before the products and the series of their inputs.
    PERFORM pg_advisory_xact_lock(7250098, 1);
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The tasks made down a chain from the products of its tasks, step after step (migration 0094): their
    -- inputs were chained from products of the old version, and they ran from it, as did the steps after
    -- them, while the corrected input's task chains its own products anew (found by review). Every way a
    -- task is made from a product is followed (migration 0097): an input chained from it, a multi-input group
    -- it is a member of, a campaign's composite that reads it; and the groups the old input itself is a
    -- member of (one not chained from a product: its path is the member's). The walk followed the chained
    -- inputs only, and a group made from the old version's product kept its task (found by review).
    -- (one walk with `hrwsi retry --routine R`'s list of what it leaves out: hrwsi.tasks_down_a_chain, migration 0107)
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') INTO downstream
    FROM hrwsi.tasks_down_a_chain(ARRAY[was.id]) b(id) JOIN hrwsi.processing_task t ON t.id = b.id
    WHERE t.input_id <> was.id;
    -- The series locks of its tasks, of theirs, and of the series the corrected input goes to, before any
    -- row (the order the INSERT of inputs and a retry take them in).
    FOR series IN
        SELECT t.routine, x.tile
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        CROSS JOIN LATERAL (VALUES (was.tile), (coalesce(correct_input.tile, was.tile))) x(tile)
        WHERE t.input_id = was.id AND x.tile IS NOT NULL
        UNION
        SELECT t.routine, t.series_tile FROM hrwsi.processing_task t
        WHERE t.id = ANY (downstream) AND t.series_tile IS NOT NULL
        ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile));
    END LOOP;
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id FOR UPDATE;
    IF was.superseded_by IS NOT NULL THEN
        RAISE EXCEPTION 'input % was corrected already: input % replaces it', was.id, was.superseded_by
            USING ERRCODE = 'check_violation',
                  HINT = format('correct input %s instead: SELECT hrwsi.correct_input(%s, ...)', was.superseded_by,
                                was.superseded_by);
    END IF;
    -- What a data engineer may not insert is not made by a correction either (the function runs as its
    -- owner; the column grants keep them from setting source, product_id and campaign_id).
    IF was.campaign_id IS NOT NULL THEN
        RAISE EXCEPTION 'input % is reprocessing campaign %''s, not corrected itself: correct the production input '
                        'at the start of its chain (`hrwsi lineage %` shows it), which cancels the campaign''s tasks '
                        'made from it, then reprocess it again (`hrwsi reprocess`)', was.id, was.campaign_id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A campaign''s input is chained from a product the campaign made: the campaign makes it, '
                           'as the harvester makes a production one.';
    END IF;
    IF was.source = 'multi_input' THEN
        RAISE EXCEPTION 'input % is a multi-input group (%): it is not corrected', was.id, was.input_path
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The harvester makes a group from its members (`hrwsi groups` lists them); a copy would have none.',
                  HINT = 'correct the members'' inputs or products; to drop the group''s task: `hrwsi cancel TASK`';
    END IF;
    IF was.product_id IS NOT NULL AND correct_input.input_path IS DISTINCT FROM was.input_path
       AND correct_input.input_path IS NOT NULL THEN
        RAISE EXCEPTION 'input % was chained from product %: its path is the product''s, %', was.id, was.product_id,
                        was.input_path
            USING ERRCODE = 'check_violation',
                  HINT = 'correct its tile or times without input_path => ..., or insert an input of the other path';
    END IF;
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.input_id = was.id OR t.id = ANY (downstream) ORDER BY t.id FOR UPDATE;
    -- (how the task was made from it, said as it is: a group the old input itself is a member of, or a campaign's
    -- composite that reads it, was said made "down a chain, from its products"; migration 0102, found by review)
    SELECT t.id, t.routine, t.state, t.input_id, j.backend_job_id, j.state AS job_state,
           CASE WHEN t.input_id = was.id THEN 'own'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_member g
                                                        WHERE g.input_id = t.input_id AND g.member_path = was.input_path)
                THEN 'group'
                WHEN was.product_id IS NULL AND EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member c
                                                        WHERE c.task_id = t.id AND c.member_path = was.input_path
                                                          AND c.outdated_by IS NULL)
                THEN 'composite'
                ELSE 'chain' END AS made
    INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.input_id <> was.id, t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %)% is %', was.id, busy.id, busy.routine,
                        CASE busy.made WHEN 'own' THEN ' made from it'
                                       WHEN 'group' THEN ', the task of a multi-input group it is a member of,'
                                       WHEN 'composite' THEN format(', a composite of campaign %s that reads it,',
                                                                    (SELECT t.campaign_id FROM hrwsi.processing_task t
                                                                     WHERE t.id = busy.id))
                                       ELSE ' made from it down a chain, from its products,' END,
                        busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                           THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                           ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = CASE busy.made
                                WHEN 'own' THEN 'The corrected input''s task would run beside the attempt made from the old input.'
                                WHEN 'group' THEN 'Its attempt reads the old input as a member of its group, which the '
                                                  'correction makes anew.'
                                WHEN 'composite' THEN 'Its attempt reads the old input as a member of its composite.'
                                ELSE 'Its attempt runs from the old input''s products, which the correction makes anew.' END,
                  HINT = format('wait until it ends (`hrwsi task show %s`), or cancel it (`hrwsi cancel %s`) and wait until '
                                'its job has stopped; then correct the input again', busy.id, busy.id);
    END IF;
    IF (correct_input.tile IS NULL OR correct_input.tile = was.tile)
       AND (correct_input.measured_at IS NULL OR correct_input.measured_at = was.measured_at)
       AND (correct_input.published_at IS NULL OR correct_input.published_at = was.published_at)
       AND (correct_input.lane IS NULL OR correct_input.lane = was.lane)
       AND (correct_input.input_path IS NULL OR correct_input.input_path = was.input_path)
       AND (correct_input.mission IS NULL OR correct_input.mission = was.mission)
       AND (correct_input.scene_id IS NULL OR correct_input.scene_id = was.scene_id) THEN
        RAISE EXCEPTION 'input %: nothing to correct (every value given is its own)', was.id
            USING ERRCODE = 'check_violation',
                  HINT = 'name what changes: SELECT hrwsi.correct_input(id, tile => ''32TLR'', measured_at => ''...Z'')';
    END IF;
    new_id := nextval(pg_get_serial_sequence('hrwsi.input', 'id'));
    SELECT coalesce(max(a.id), 0) INTO alerted FROM hrwsi.alert a;
    -- Its open tasks, and those made down a chain from their products, are cancelled (a running one was
    -- refused above), saying why.
    -- (a campaign's task is told that its campaign does not redo it: the corrected input's task, its chain and the group
    -- made anew are production's. It read as a production task's, "input N replaces it", "the group is made anew";
    -- migration 0104, found by review)
    WITH open AS (
        SELECT t.id, t.input_id, t.campaign_id, i.source FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled',
            state_reason = CASE WHEN open.campaign_id IS NOT NULL AND open.input_id = was.id
                                THEN format('its input %s was corrected (input %s replaces it): its production task runs '
                                            'the corrected input, and campaign %s does not; `hrwsi reprocess` starts a '
                                            'campaign that does', was.id, new_id, open.campaign_id)
                                WHEN open.campaign_id IS NOT NULL AND open.source = 'multi_input'
                                THEN format('a composite of campaign %s that read input %s or a product down its chain, '
                                            'which was corrected (input %s replaces it): the campaign does not make it '
                                            'anew; `hrwsi reprocess` starts a campaign that does, once production has '
                                            'processed the corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.campaign_id IS NOT NULL
                                THEN format('made down a chain in campaign %s from the products of input %s, which was '
                                            'corrected (input %s replaces it): the campaign does not redo it; `hrwsi '
                                            'reprocess` starts a campaign that does, once production has processed the '
                                            'corrected input', open.campaign_id, was.id, new_id)
                                WHEN open.input_id = was.id
                                THEN format('its input %s was corrected: input %s replaces it', was.id, new_id)
                                WHEN open.source = 'multi_input'
                                THEN format('its multi-input group was made from input %s or down its chain, which was '
                                            'corrected: input %s replaces it, and the group is made anew', was.id, new_id)
                                ELSE format('made down a chain from the products of input %s, which was corrected: input %s '
                                            'replaces it, and its task''s products chain anew', was.id, new_id) END
        FROM open WHERE t.id = open.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM done;
    SELECT coalesce(array_agg(t.id), '{}') INTO dependents FROM hrwsi.processing_task t WHERE t.depends_on = ANY (cancelled);
    -- (the tasks that took a deadline or a priority from them gave it back: hrwsi.after_task_changes)
    -- Its tasks, and those down a chain, leave their time series before the corrected input's task is
    -- linked into one (and before the tasks its products chain anew are).
    WITH gone AS (
        UPDATE hrwsi.processing_task t SET series_tile = NULL, series_at = NULL
        WHERE (t.input_id = was.id OR t.id = ANY (downstream)) AND t.series_tile IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO old_tasks FROM gone;
    -- Their products not chained yet (a harvester stopped or behind) are not chained: made from the old
    -- version, they would start its chain again. None is being chained now (the lock taken first). All of
    -- them are outdated_by the corrected input (migration 0097): hrwsi.chain_missed_products chained one
    -- to a condition made active after the correction, and a group took one as a member (found by review).
    WITH old AS (
        SELECT x.id FROM hrwsi.product x JOIN hrwsi.processing_task t ON t.id = x.task_id
        WHERE t.input_id = was.id OR t.id = ANY (downstream)
        ORDER BY x.id FOR UPDATE OF x
    ), marked AS (
        UPDATE hrwsi.product p SET chained_at = coalesce(p.chained_at, now()), outdated_by = coalesce(p.outdated_by, new_id)
        FROM old WHERE p.id = old.id
        RETURNING p.path
    )
    SELECT coalesce(array_agg(m.path), '{}') INTO outdated FROM marked m;
    -- The members of campaigns' composites that are of the old version, the corrected input itself or a product marked
    -- above, are marked too (migration 0104): `hrwsi retry` of such a composite is refused. A composite made from then
    -- on reads the corrected version, never marked.
    UPDATE hrwsi.multi_input_campaign_member c SET outdated_by = new_id
    WHERE c.outdated_by IS NULL AND ((c.member_path = was.input_path AND was.product_id IS NULL) OR c.member_path = ANY (outdated));
    -- The multi-input groups made from them, or from the old input itself, are superseded too: the harvester
    -- makes each anew from the members it has then (a group's input is one per condition and path).
    UPDATE hrwsi.input g SET superseded_by = new_id
    WHERE g.source = 'multi_input' AND g.superseded_by IS NULL
      AND g.id IN (SELECT m.input_id FROM hrwsi.multi_input_member m
                   WHERE m.member_path = ANY (outdated) OR (m.member_path = was.input_path AND was.product_id IS NULL));
    UPDATE hrwsi.input SET superseded_by = new_id WHERE id = was.id;
    INSERT INTO hrwsi.input (id, processing_condition, input_path, tile, mission, measured_at, published_at, source,
                             product_id, scene_id, lane, campaign_id)
    OVERRIDING SYSTEM VALUE
    VALUES (new_id, was.processing_condition, coalesce(correct_input.input_path, was.input_path),
            coalesce(correct_input.tile, was.tile), coalesce(correct_input.mission, was.mission),
            coalesce(correct_input.measured_at, was.measured_at), coalesce(correct_input.published_at, was.published_at),
            was.source, was.product_id,
            -- (a scene id the old path gave follows a new path)
            CASE WHEN correct_input.scene_id IS NOT NULL THEN correct_input.scene_id
                 WHEN correct_input.input_path IS NOT NULL AND was.scene_id = hrwsi.scene_id_of(was.input_path)
                 THEN hrwsi.scene_id_of(correct_input.input_path)
                 ELSE was.scene_id END,
            coalesce(correct_input.lane, was.lane), was.campaign_id);
    -- A task of its time series still waiting for a cancelled one (the corrected input went elsewhere in
    -- time or tile) waits for the task before it now, as a retry links it: else blocked for an operator.
    -- (not an operator's retry of it: an operator's hold of it is kept, and it is held again once its wait ends, or
    -- stays marked held behind a task that cannot run; migration 0098: the retry's release of its own hold lost it)
    FOR waiting, was_held IN
        SELECT t.id, t.held_while_blocked FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state = CASE WHEN was_held AND state = 'pending' THEN 'on_hold' ELSE state END,
            held_while_blocked = was_held AND state = 'blocked',
            state_reason = CASE WHEN state = 'blocked' THEN state_reason
                                ELSE CASE WHEN was_held THEN hrwsi.held_while_blocked_reason()
                                          WHEN state = 'on_hold'
                                          THEN coalesce(hrwsi.hold_a_new_task_takes(routine, campaign_id, lane) || '; ', '')
                                          ELSE '' END
                                     || format('relinked: the task it waited for was cancelled by the correction of '
                                               'input %s', was.id) END
        WHERE id = waiting AND state IN ('pending', 'on_hold', 'blocked');
    END LOOP;
    -- A task that has not started and still waits for a processed old task (the corrected input's task
    -- did not take its place) waits for the task before it in its series now, as a new task there would
    -- (a held or blocked one takes it when it is released or retried), and passes its priority and deadline
    -- down to it at once, as a retried one does (migration 0086).
    WITH relink AS (
        SELECT t.id, p.id AS previous, p.state AS previous_state
        FROM hrwsi.processing_task t LEFT JOIN LATERAL (
            SELECT x.id, x.state FROM hrwsi.processing_task x
            WHERE x.routine = t.routine AND x.series_tile = t.series_tile AND x.state <> 'cancelled'
              AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (x.series_at, x.id) < (t.series_at, t.id)
            ORDER BY x.series_at DESC, x.id DESC LIMIT 1) p ON true
        WHERE t.depends_on = ANY (old_tasks) AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
    ), moved AS (
        UPDATE hrwsi.processing_task t
        SET depends_on = r.previous,
            -- (a held one behind a task that cannot run is blocked, an operator's hold of it kept: migration 0098)
            state = CASE WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                         WHEN t.state = 'on_hold' THEN 'on_hold' ELSE 'pending' END,
            held_while_blocked = t.state = 'on_hold' AND coalesce(r.previous_state IN ('terminated', 'blocked'), false)
                                 AND hrwsi.hold_is_the_tasks_own(t.state_reason),
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- (what it waits for, not a state of that task, which outgrows the reason: migration 0098)
            state_reason = CASE WHEN r.previous_state = 'terminated'
                                THEN format('relinked by the correction of input %s: its dependency, task %s, ended '
                                            'terminated; `hrwsi retry %s` runs the dependency again, `hrwsi release %s` '
                                            'runs this task without it', was.id, r.previous, r.previous, t.id)
                                WHEN r.previous_state = 'blocked'
                                THEN format('relinked by the correction of input %s: waits for task %s, which has to run '
                                            'before it (`hrwsi task show %s` says what that task waits for)', was.id,
                                            r.previous, r.previous)
                                WHEN t.state = 'on_hold' THEN t.state_reason
                                ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                            'corrects', was.id, new_id) END
        FROM relink r WHERE t.id = r.id
        RETURNING t.id, t.routine, t.state, t.state_reason, r.previous_state
    ), alerted AS (
        -- (ops are told of a task it blocked behind a terminated one, as the other paths that block tell them:
        -- migration 0102, found by review)
        INSERT INTO hrwsi.alert (kind, subject, body, task_id, routine)
        SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', m.id, m.routine), m.state_reason, m.id, m.routine
        FROM moved m WHERE m.previous_state = 'terminated' AND m.state = 'blocked'
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO relinked FROM moved m;
    PERFORM hrwsi.pass_deadlines_down(relinked);
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    -- (what a REPEATABLE READ transaction that waited for this correction locks, to learn that it came after its
    -- snapshot: hrwsi.see_the_corrections_before; migration 0104)
    UPDATE hrwsi.last_correction SET input_id = was.id, corrected_at = now();
    RETURN new_id;
END $$;

-- An operator's hold of a task that its routine, campaign or back-fill holds (migration 0112): the task is held by
-- the operator too, its reason and history say so, and the release of its routine or campaign leaves it held, as it
-- leaves every hold an operator put on a task one by one (migrations 0101, 0104). `hrwsi hold TASK` of such a task was
-- refused, "task N is on_hold: only a pending or planned task can be held", so that no hold of the operator's could be
-- put on it, and `hrwsi campaigns --release` then ran the task the operator wanted kept back (found by review). A task
-- an operator holds already is refused, saying so.
-- (migration 0118) A blocked task is held by an operator as one held before it was blocked is (held_while_blocked,
-- migration 0095): it stays blocked, is held when its wait ends, and its release lifts that hold alone, giving it
-- back to its wait. It was refused ("task N is blocked: only a pending or planned task ... can be held"), and the
-- release of a blocked task an operator had held ran it without its dependency (found by exploration).
CREATE FUNCTION hrwsi.hold_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    reason text;
    held_with text;  -- (what holds it besides the operator: its routine, campaign or back-fill, as a new task of it)
BEGIN
    SELECT t.state_reason,
           CASE WHEN r.on_hold THEN format('routine %s', r.name)
                WHEN k.on_hold THEN format('campaign %s', k.id)
                WHEN t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL AND l.priority > 0
                THEN format('the back-fill of routine %s', r.name) END
    INTO reason, held_with
    FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
    LEFT JOIN hrwsi.campaign k ON k.id = t.campaign_id LEFT JOIN hrwsi.lane l ON l.name = t.lane
    WHERE t.id = task;
    IF current = 'on_hold' AND hrwsi.hold_is_the_tasks_own(reason)
       OR current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        RAISE EXCEPTION 'task % is already held by an operator: `hrwsi release %` releases it', task, task
            USING ERRCODE = 'check_violation';
    END IF;
    IF current = 'blocked' THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = true WHERE id = task;
        -- (blocked before and after: no change of state, whose history row the trigger writes; said as `hrwsi status`
        -- lists it, its reason the block's, which names the commands that end the wait)
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'held by an operator, and blocked: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s is on hold: blocked still, it is held once its wait ends, until `hrwsi release %s`',
                      task, task);
    END IF;
    IF current NOT IN ('pending', 'planned', 'on_hold') THEN
        RAISE EXCEPTION 'task % is %: only a pending, planned or blocked task, or one held with its routine or '
                        'campaign, can be held', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'on_hold', state_reason = 'held by an operator' WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN current = 'on_hold' AND held_with IS NOT NULL
                THEN format('task %s is on hold, by an operator too: it stays held once %s is released, until '
                            '`hrwsi release %s`', task, held_with, task)
                ELSE format('task %s is on hold', task) END;
END $$;

CREATE FUNCTION hrwsi.release_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
    group_hold text;  -- (its routine's, campaign's or back-fill's hold, which still holds it)
    lift text;
BEGIN
    IF current NOT IN ('on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a held or blocked task can be released', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a blocked task an operator held: the release lifts that hold alone, and it waits for its dependency again, as
    -- before it was held; a second release runs it without: migration 0118)
    IF current = 'blocked' AND (SELECT t.held_while_blocked FROM hrwsi.processing_task t WHERE t.id = task) THEN
        UPDATE hrwsi.processing_task SET held_while_blocked = false WHERE id = task;
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, 'released by an operator, blocked still: ' || t.state_reason, t.attempts, t.worker
        FROM hrwsi.processing_task t WHERE t.id = task;
        RETURN format('task %s released from its operator''s hold; it is still blocked: %s', task,
                      (SELECT t.state_reason FROM hrwsi.processing_task t WHERE t.id = task));
    END IF;
    -- The release of a task lifts its own hold (and its block) only (migration 0098): a task of a routine, campaign
    -- or back-fill on hold is held with it, as a new task of it is, and the answer says what still holds it and how
    -- to lift that. A blocked one was made pending, shown pending by `hrwsi status` and the dashboard while dispatch
    -- skipped its held routine (found by review).
    SELECT hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane),
           hrwsi.how_to_lift_a_group_hold(t.routine, t.campaign_id, t.lane)
    INTO group_hold, lift
    FROM hrwsi.processing_task t WHERE t.id = task;
    -- (a blocked task runs without what it waited for, upstream work included; a held one that still
    -- waits for upstream work says so, not only that it was released: migration 0077)
    UPDATE hrwsi.processing_task SET state = CASE WHEN group_hold IS NOT NULL THEN 'on_hold' ELSE 'pending' END,
        worker = NULL, planned_start = NULL, planned_end = NULL, held_while_blocked = false,
        dependency_waived = dependency_waived OR current = 'blocked',
        waits_for_upstream = CASE WHEN current = 'blocked' THEN NULL ELSE waits_for_upstream END,
        state_reason = coalesce(group_hold || '; ', '') || CASE
                            WHEN current = 'blocked' THEN 'released by an operator: runs without its dependency'
                            WHEN waits_for_upstream IS NOT NULL AND NOT dependency_waived
                                THEN 'released by an operator' || coalesce('; ' || hrwsi.upstream_wait_reason(waits_for_upstream), '')
                            ELSE 'released by an operator' END
    WHERE id = task;
    -- (held before and held now: no change of state, whose history row the trigger writes)
    IF current = 'on_hold' AND group_hold IS NOT NULL THEN
        INSERT INTO hrwsi.task_event (task_id, state, reason, attempts, worker)
        SELECT t.id, t.state, t.state_reason, t.attempts, t.worker FROM hrwsi.processing_task t WHERE t.id = task;
    END IF;
    RETURN CASE WHEN group_hold IS NOT NULL
                THEN format('task %s released%s, but it is still held: %s', task,
                            CASE WHEN current = 'blocked' THEN ' to run without its dependency' ELSE '' END, lift)
                WHEN current = 'blocked'
                THEN format('task %s released; it will be planned and run without its dependency', task)
                ELSE format('task %s released; it will be planned', task) END;
END $$;

-- A name an operator gives that names nothing is quoted in the refusal (hrwsi.quoted_name), as the CLI's own
-- refusals quote it: `hrwsi hold ''` said "no routine : `hrwsi config show` ...", the empty name unseen
-- (found by review; migration 0092). Likewise move_tasks, chain_missed_products and reprocess.
CREATE FUNCTION hrwsi.hold_routine(routine_name text, reason text DEFAULT 'held by an operator')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = reason WHERE name = routine_name AND NOT on_hold;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE name = routine_name) THEN
            RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
        END IF;
        RETURN format('routine %s was already on hold', routine_name);
    END IF;
    -- (how many it holds, and what goes on: "its new and waiting tasks are held" said neither; 0054)
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.routine = routine_name AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('routine %s is on hold: %s waiting task(s) held, and its new tasks will be held until it is released; '
                  '%s dispatched or running go on', routine_name, held, under_way);
END $$;

-- The release of a routine's or a campaign's hold, shared by hrwsi.release_routine and hrwsi.release_campaign
-- (migration 0112; they were two copies of one statement, and had drifted): of the held tasks given (the group's,
-- locked by the caller in the order of their ids), those held by the group are released, and held again at once
-- with what still holds them (a routine's task of a campaign on hold, a campaign's task of a routine on hold), as a new
-- task of it is; those an operator held one by one stay held (migration 0098). A task held before and after gets a
-- history row saying what holds it now: the routine's release wrote none, and a task its campaign held still read
-- "routine on hold" last in its history (found by review). Returns how many will be planned, and the end of the
-- answer: how many stay held, by which campaigns or routines (`still_held_by`: 'campaign' or 'routine', what may still
-- hold them) and how to release those, and how many an operator held one by one (`blocked_held`: those blocked since).
CREATE FUNCTION hrwsi.release_held_tasks(held bigint[], released_reason text, still_held_by text, blocked_held bigint,
                                         OUT released bigint, OUT rest text) LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    still_held bigint;
    holders text[];  -- (the campaigns or routines that still hold them: a campaign's chain runs routines downstream)
    own bigint;
BEGIN
    WITH changed AS (
        UPDATE processing_task t
        SET state = CASE WHEN h.group_hold IS NULL THEN 'pending' ELSE 'on_hold' END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            state_reason = CASE WHEN h.group_hold IS NOT NULL THEN h.group_hold
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                    THEN released_reason || coalesce('; ' || upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE released_reason END
        FROM (SELECT x.id, hold_a_new_task_takes(x.routine, x.campaign_id, x.lane) AS group_hold
              FROM processing_task x
              WHERE x.id = ANY (held) AND x.state = 'on_hold' AND NOT hold_is_the_tasks_own(x.state_reason)) h
        WHERE t.id = h.id
        RETURNING t.id, t.routine, t.campaign_id, t.state, t.state_reason, t.attempts, t.worker
    ), history AS (
        -- (held before and held now: no change of state, whose history row the trigger writes)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = 'on_hold'
    )
    -- (the campaigns in the order of their ids, as numbers: sorted as text they read "campaigns 10, 9"; migration 0118)
    SELECT count(*) FILTER (WHERE c.state = 'pending'), count(*) FILTER (WHERE c.state = 'on_hold'),
           (SELECT array_agg(h.holder ORDER BY h.campaign_id, h.holder)
            FROM (SELECT DISTINCT CASE still_held_by WHEN 'routine' THEN x.routine ELSE x.campaign_id::text END AS holder,
                                  CASE still_held_by WHEN 'campaign' THEN x.campaign_id END AS campaign_id
                  FROM changed x WHERE x.state = 'on_hold') h)
    INTO released, still_held, holders FROM changed c;
    SELECT count(*) + blocked_held INTO own FROM processing_task t
    WHERE t.id = ANY (held) AND t.state = 'on_hold' AND hold_is_the_tasks_own(t.state_reason);
    rest := CASE WHEN cardinality(holders) = 1
                 THEN format('; %s stay held with their %s %s, on hold: `%s` releases it', still_held, still_held_by,
                             holders[1], CASE still_held_by WHEN 'routine' THEN 'hrwsi release ' ELSE 'hrwsi campaigns --release '
                                         END || holders[1])
                 WHEN still_held > 0
                 THEN format('; %s stay held with their %ss %s, on hold: `%s` releases each', still_held, still_held_by,
                             array_to_string(holders, ', '), CASE still_held_by WHEN 'routine' THEN 'hrwsi release ROUTINE'
                                                                 ELSE 'hrwsi campaigns --release ID' END)
                 ELSE '' END
         || CASE WHEN own > 0 THEN format('; %s task(s) an operator held one by one stay held: `hrwsi release ID` releases '
                                          'each (`hrwsi status` lists them)', own) ELSE '' END;
END $$;

-- A routine that is not on hold is released still (its failure counts and its back-fill's hold are lifted with
-- the routine's own), and the answer says it was not on hold and what the release did: it said "routine X released;
-- 0 held task(s) will be planned", as if it had been held (found by review; migration 0111). A campaign's release
-- refuses one that is not on hold: a campaign has nothing else its release lifts.
-- The routine's release lifts the routine's hold (and its back-fill's) only, as a task's release lifts the task's
-- own (migration 0098): a task an operator held one by one stays held, and one of a campaign on hold stays held
-- with it, its reason saying so (hrwsi.release_held_tasks; migration 0112: the answer names the campaign). It released
-- them all, undoing each operator's hold (found by review; 0101).
CREATE FUNCTION hrwsi.release_routine(routine_name text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint[];
    released bigint;
    rest text;
    was_held boolean;
    backfill_was_held boolean;
    failures integer;
    backfill_failures integer;
    did text;
BEGIN
    SELECT r.on_hold, r.backfill_hold_reason IS NOT NULL, r.consecutive_failures, r.backfill_consecutive_failures
    INTO was_held, backfill_was_held, failures, backfill_failures
    FROM hrwsi.processing_routine r WHERE r.name = routine_name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(routine_name) USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.processing_routine SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        backfill_hold_reason = NULL, backfill_consecutive_failures = 0  -- (and its back-fill: migration 0075)
    WHERE name = routine_name;
    -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}') INTO held
    FROM (SELECT t.id FROM hrwsi.processing_task t WHERE t.routine = routine_name AND t.state = 'on_hold'
          ORDER BY t.id FOR NO KEY UPDATE OF t) x;
    SELECT r.released, r.rest INTO released, rest
    FROM hrwsi.release_held_tasks(held, 'routine released by an operator', 'campaign',
                                  (SELECT count(*) FROM hrwsi.processing_task t
                                   WHERE t.routine = routine_name AND t.state = 'blocked' AND t.held_while_blocked)) r;
    IF was_held THEN
        did := format('routine %s released; %s held task(s) will be planned', routine_name, released);
    ELSE
        did := CASE WHEN backfill_was_held
                    THEN format('back-fill of routine %s released (the routine itself was not on hold); %s held task(s) '
                                'will be planned', routine_name, released)
                    ELSE format('routine %s was not on hold', routine_name)
                         || CASE WHEN released > 0 THEN format('; %s held task(s) will be planned', released) ELSE '' END
               END
            || CASE WHEN failures > 0 OR backfill_failures > 0
                    THEN '; its count of consecutive failures is reset to 0 (was '
                         || concat_ws(', ', CASE WHEN failures > 0 THEN format('%s of its own', failures) END,
                                      CASE WHEN backfill_failures > 0 THEN format('%s of its back-fill', backfill_failures)
                                      END) || ')'
                    WHEN NOT backfill_was_held AND released = 0 THEN '; nothing to release, and no failures to reset'
                    ELSE '' END;
    END IF;
    RETURN did || rest;
END $$;

-- Move a routine's production tasks that have not started (pending, planned, blocked, on hold) to
-- another routine that reads the same input type (migration 0073). `hrwsi config load` never
-- removes a routine: a routine renamed in the file is a new routine beside the old one, its
-- conditions move to the new one, and the old one's open tasks went on running the old command,
-- held ones stayed held on it, and nothing said so (found by exploratory testing). Tasks under way
-- (dispatched, queued, running) end on the routine they started on; a campaign's tasks stay with
-- their campaign's routine. A planned task is planned again; a task held because its old routine (or its
-- back-fill: migration 0102) is on hold is released when the new one is not, and one moved to a routine on hold is held; a task
-- held by hand stays held. A blocked task still waits for its task. Each says so in its history.
-- A time series' tasks are linked by the rules of an INSERT into the routine they move to (migration 0090:
-- they kept their links, so that moved into a time series that had tasks of its own on their tile they ran
-- beside those, out of sensing order, and moved to a routine that is not one they waited for each other, or
-- stayed blocked, for nothing; found by review): moved to a time series, each task that has not started waits
-- for the task sensed just before it there, under that series' lock, as does each task of that series after
-- one of them (one that has started keeps what it ran with), and urgency is passed down the series again;
-- moved to a routine that is not one, they leave their series and wait for nothing (blocked ones are pending),
-- as when a routine's sequential_per_tile is turned off, and give back what they lent. Tasks of a routine that
-- is not a time series are refused by one (they were made outside any series, and are not placed in one).
-- (migration 0091) Moved to a time series, the first of its tile waits for no task, and each task linked decides
-- again what it waits for upstream; one the move makes pending on a routine on hold is held; the series' locks
-- of both routines are taken, for the tiles it moves.
CREATE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
    moved_ids bigint[];
    relinked bigint[];
    key integer;
    refused text;
    stay_under_way bigint;
    stay_campaign bigint;
    stay_made bigint;      -- (tasks made meanwhile on a tile whose series' locks were not taken: they stay)
    tiles text[] := '{}';  -- (the tiles whose series' locks are held)
    moved_reason text := format('moved from routine %s to routine %s by an operator', from_routine, to_routine);
BEGIN
    SELECT * INTO source FROM processing_routine r WHERE r.name = from_routine;
    SELECT * INTO target FROM processing_routine r WHERE r.name = to_routine FOR KEY SHARE;
    IF source.name IS NULL OR target.name IS NULL THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(CASE WHEN source.name IS NULL THEN from_routine ELSE to_routine END)
            USING ERRCODE = 'no_data_found';
    END IF;
    IF source.name = target.name THEN
        RAISE EXCEPTION 'routine %: give another routine to move its tasks to', from_routine
            USING ERRCODE = 'check_violation';
    END IF;
    IF source.input_product_type IS DISTINCT FROM target.input_product_type THEN
        RAISE EXCEPTION 'routine % reads %, routine % reads %: the tasks of % cannot run on %', from_routine,
            source.input_product_type, to_routine, target.input_product_type, from_routine, to_routine
            USING ERRCODE = 'check_violation';
    END IF;
    -- The series' locks first, in the order of their keys, then the rows, as every holder of both: those of the
    -- tiles of the tasks it moves, in the series they leave and in the one they join, in one ordered pass
    -- (migration 0091). Only the series they joined were locked: an INSERT into the old routine's series of a
    -- tile, in flight during the move, linked its scene behind a task the move took away, and it stayed on the
    -- old routine waiting for a task of the new one (found by review). The tasks moved are those of the tiles
    -- locked here: a tile whose first task was made after this pass (its series' lock not taken) keeps its
    -- tasks on the old routine, and the answer says so (a second move takes them).
    tiles := ARRAY(SELECT DISTINCT t.series_tile FROM processing_task t
                   WHERE t.routine = from_routine AND t.campaign_id IS NULL AND t.series_tile IS NOT NULL
                     AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'));
    IF source.sequential_per_tile OR target.sequential_per_tile THEN
        FOR key IN
            SELECT DISTINCT k.key
            FROM unnest(tiles) x(tile)
            CROSS JOIN LATERAL (VALUES (hrwsi.series_lock_key(from_routine, x.tile)),
                                       (hrwsi.series_lock_key(to_routine, x.tile))) k(key)
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(7250010, key);
        END LOOP;
    END IF;
    -- One statement moves the tasks and writes the history of those whose state stays (a task whose state
    -- changes gets its row from hrwsi.after_task_changes), from the rows it locked and moved (migration
    -- 0077). The history was written by a statement before the move, from what that statement saw: a task
    -- dispatched meanwhile, which the move then left where it was, had a history row saying it moved
    -- (found by review). A task that still waits for upstream work says so after why it moved.
    WITH chosen AS (
        SELECT t.id, t.state, t.state_reason FROM processing_task t
        WHERE t.routine = from_routine AND t.campaign_id IS NULL
          AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')
          AND (t.series_tile IS NULL OR t.series_tile = ANY (tiles))
        ORDER BY t.id  -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        FOR UPDATE
    ), changed AS (
        UPDATE processing_task t
        SET routine = to_routine,
            state = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                         WHEN c.state = 'planned' THEN 'pending'
                         -- (or its old routine's back-fill: migration 0102, it stayed held by a hold of a routine
                         -- it had left, found by review; held again below if the new routine's back-fill is on hold)
                         WHEN c.state = 'on_hold' AND NOT target.on_hold
                              AND (c.state_reason LIKE 'routine on hold: %'
                                   OR c.state_reason LIKE format('back-fill of routine %s on hold: %%', from_routine))
                             THEN 'pending'
                         -- (held again if an operator held it before it was blocked: migration 0095)
                         WHEN c.state = 'blocked' AND NOT target.sequential_per_tile AND NOT t.dependency_waived
                             THEN CASE WHEN t.held_while_blocked THEN 'on_hold' ELSE 'pending' END
                         ELSE c.state END,
            held_while_blocked = t.held_while_blocked AND (target.sequential_per_tile OR t.dependency_waived),
            -- (out of its series, if the target is no time series: migration 0090)
            series_tile = CASE WHEN target.sequential_per_tile THEN t.series_tile END,
            series_at = CASE WHEN target.sequential_per_tile THEN t.series_at END,
            dependency_waived = t.dependency_waived OR (NOT target.sequential_per_tile AND t.depends_on IS NOT NULL),
            waits_for_upstream = CASE WHEN target.sequential_per_tile THEN t.waits_for_upstream END,
            worker = CASE WHEN c.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN c.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN c.state IN ('pending', 'planned') AND target.on_hold
                                    THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                                WHEN c.state = 'on_hold' AND (target.on_hold OR (c.state_reason NOT LIKE 'routine on hold: %'
                                                                                 AND c.state_reason NOT LIKE
                                                                                     format('back-fill of routine %s on hold: %%',
                                                                                            from_routine)))
                                    THEN moved_reason || '; ' || c.state_reason
                                WHEN NOT target.sequential_per_tile AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
                                    THEN CASE WHEN c.state = 'blocked' AND t.held_while_blocked
                                              THEN hrwsi.held_while_blocked_reason() ELSE '' END
                                         || moved_reason || format('; routine %s is not a time series: it no longer waits '
                                                                   'for task %s', to_routine, t.depends_on)
                                WHEN c.state = 'blocked' THEN moved_reason || '; ' || c.state_reason
                                WHEN t.waits_for_upstream IS NOT NULL AND NOT t.dependency_waived
                                     AND target.sequential_per_tile
                                    THEN moved_reason || coalesce('; ' || hrwsi.upstream_wait_reason(t.waits_for_upstream), '')
                                ELSE moved_reason END
        FROM chosen c
        WHERE t.id = c.id
        RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, c.state AS old_state
    ), history AS (
        -- (with the task's whole reason, as the trigger writes it: the move alone left out the wait it names,
        -- upstream work or a blocked task; found by review, migration 0085)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT m.id, m.state, m.state_reason, m.attempts, m.worker FROM changed m WHERE m.state = m.old_state
    )
    SELECT count(*), coalesce(array_agg(m.id), '{}') INTO moved, moved_ids FROM changed m;
    -- Tasks made outside any series are refused by a time series, decided on the tasks moved (migration 0095): decided
    -- in a statement before the series' locks were waited for, a task made meanwhile on a routine that is no time
    -- series was moved unrefused, and ran beside the tasks of its tile there (found by review). The exception undoes
    -- the move.
    IF target.sequential_per_tile THEN
        SELECT format('task %s (input %s, tile %s)', t.id, i.id, i.tile) INTO refused
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.id = ANY (moved_ids) AND t.series_tile IS NULL AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
        ORDER BY t.id LIMIT 1;
        IF refused IS NOT NULL THEN
            -- (all in the message: `hrwsi move-tasks` prints its first line alone)
            RAISE EXCEPTION 'routine % is a time series (sequential_per_tile), routine % is not: its tasks cannot join '
                            'the series of % by a move (%, made outside any series, would run beside the tasks of its '
                            'tile there, out of sensing order); let them run on %, or cancel them (`hrwsi cancel`)',
                            to_routine, from_routine, to_routine, refused, from_routine
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NOT target.sequential_per_tile THEN
        -- (the tasks before them that took their urgency, they no longer wait for)
        PERFORM give_back_taken_deadlines(moved_ids);
    ELSIF cardinality(moved_ids) > 0 THEN
        -- Each task of the series of the moved tasks' tiles that has not started waits for the task sensed just
        -- before it, as an INSERT links a scene, or for none (migration 0091: the first moved of its tile, with
        -- none before it, kept the task it waited for on the old routine, and stayed blocked behind it if that
        -- one had ended terminated; found by review); urgency is given back and passed down again along the
        -- links, and what each waits for upstream is decided again, below.
        WITH members AS MATERIALIZED (
            SELECT x.id, x.state, lag(x.id) OVER w AS previous, lag(x.state) OVER w AS previous_state
            FROM processing_task x
            WHERE x.routine = to_routine AND x.campaign_id IS NULL AND x.state <> 'cancelled'
              AND x.series_tile IN (SELECT m.series_tile FROM processing_task m WHERE m.id = ANY (moved_ids))
            WINDOW w AS (PARTITION BY x.series_tile ORDER BY x.series_at, x.id)
        ), locked AS MATERIALIZED (
            -- (in the order of their ids, as every writer of many tasks locks them)
            SELECT t.id FROM processing_task t
            WHERE t.id IN (SELECT s.id FROM members s WHERE s.previous IS NOT NULL OR s.id = ANY (moved_ids))
            ORDER BY t.id FOR NO KEY UPDATE OF t
        ), changed AS (
            UPDATE processing_task t
            SET depends_on = s.previous,
                -- (a held one behind a task that cannot run is blocked, an operator's hold of it kept to hold it again
                -- when its wait ends: migration 0098; it stayed held, and was pending once released)
                state = CASE WHEN s.previous_state IN ('terminated', 'blocked') THEN 'blocked'
                             WHEN t.state = 'on_hold' THEN 'on_hold'
                             WHEN t.state = 'blocked' AND t.held_while_blocked THEN 'on_hold'  -- (migration 0095)
                             WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                held_while_blocked = CASE WHEN NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false) THEN false
                                          WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                          ELSE t.held_while_blocked END,
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'on_hold'
                                         AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false)
                                    THEN t.state_reason
                                    WHEN t.state = 'blocked' AND t.held_while_blocked
                                         AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false)
                                    THEN hrwsi.held_while_blocked_reason() ELSE '' END
                               || CASE WHEN t.state = 'on_hold'
                                            AND NOT coalesce(s.previous_state IN ('terminated', 'blocked'), false) THEN ''
                                    ELSE CASE WHEN t.id = ANY (moved_ids) THEN moved_reason
                                              ELSE format('tasks of routine %s moved into its time series', from_routine) END
                                         || CASE WHEN s.previous IS NULL
                                                 THEN ': it is the first of its time series now, and waits for no task'
                                                 -- (what it waits for, not a state of that task, which outgrows
                                                 -- the reason: migration 0098)
                                                 WHEN s.previous_state = 'terminated'
                                                 THEN format(': its dependency, task %s, sensed before it, ended '
                                                             'terminated; `hrwsi retry %s` runs the dependency again, '
                                                             '`hrwsi release %s` runs this task without it', s.previous,
                                                             s.previous, t.id)
                                                 WHEN s.previous_state = 'blocked'
                                                 THEN format(': it waits for task %s, sensed before it, which has to run '
                                                             'before it (`hrwsi task show %s` says what that task waits '
                                                             'for)', s.previous, s.previous)
                                                 ELSE format(': it runs after task %s, sensed before it', s.previous) END
                               END
            FROM members s
            WHERE t.id = s.id AND t.id IN (SELECT l.id FROM locked l) AND (s.previous IS NOT NULL OR t.id = ANY (moved_ids))
              AND t.depends_on IS DISTINCT FROM s.previous AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
            RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, s.state AS old_state
        ), history AS (
            -- (a change of state writes its own row: hrwsi.after_task_changes)
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c WHERE c.state = c.old_state
        )
        SELECT coalesce(array_agg(c.id), '{}') INTO relinked FROM changed c;
        IF cardinality(relinked) > 0 THEN
            PERFORM give_back_taken_deadlines(moved_ids || relinked);
            PERFORM pass_deadlines_down(moved_ids || relinked);
        END IF;
        -- What they wait for upstream, from the task before them now (migration 0091): each kept the wait of its
        -- place in the old series, so that the first of its tile there, moved behind a task sensed later than
        -- the open scene it waited for, still waited for that scene, and one moved first of its tile, waiting
        -- for none, ran before a scene sensed before it whose upstream work was open (found by review). Only
        -- those whose wait changes (hrwsi.wait_for_upstream says what it waits for then, or no longer, in its
        -- reason and history): one whose wait stays keeps its reason, which says why it moved.
        PERFORM wait_for_upstream(ARRAY(
            SELECT t.id FROM processing_task t
            LEFT JOIN processing_task p ON p.id = t.depends_on
            LEFT JOIN LATERAL open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at, t.series_at) w ON true
            WHERE t.id = ANY (moved_ids || relinked) AND NOT t.dependency_waived
              AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
              AND t.waits_for_upstream IS DISTINCT FROM w.task_id));
    END IF;
    -- Moved to a routine on hold, a task made pending by the move (a blocked one that waits for nothing now, or
    -- for a task that may run) is held with it, as a pending one is (migration 0091: it was pending, though
    -- blocked cannot be held in one step, on a routine whose tasks wait for its release; found by review). So is
    -- one of the series there that the relinking unblocked.
    IF target.on_hold THEN
        UPDATE processing_task t SET state = 'on_hold',
            state_reason = CASE WHEN t.id = ANY (moved_ids) THEN moved_reason || '; ' ELSE '' END
                           || 'routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
        WHERE t.id = ANY (moved_ids || coalesce(relinked, '{}')) AND t.state = 'pending' AND t.routine = to_routine;
    ELSIF target.backfill_hold_reason IS NOT NULL THEN
        -- (so is one of a back-fill lane, when the routine's back-fill is on hold, as a new task of it is: migration
        -- 0102; it was pending, and ran, while the back-fill's other tasks waited for its release; found by review)
        UPDATE processing_task t SET state = 'on_hold',
            state_reason = CASE WHEN t.id = ANY (moved_ids) THEN moved_reason || '; ' ELSE '' END
                           || hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane)
        WHERE t.id = ANY (moved_ids || coalesce(relinked, '{}')) AND t.state = 'pending' AND t.routine = to_routine
          AND hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) IS NOT NULL;
    END IF;
    SELECT count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('dispatched', 'queued', 'running')),
           count(*) FILTER (WHERE t.campaign_id IS NOT NULL AND NOT task_state_is_final(t.state)),
           count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('pending', 'planned', 'blocked', 'on_hold'))
    INTO stay_under_way, stay_campaign, stay_made
    FROM processing_task t WHERE t.routine = from_routine;
    RETURN format('%s task(s) of routine %s moved to routine %s%s%s%s', moved, from_routine, to_routine,
                  CASE WHEN stay_under_way > 0
                       THEN format('; %s under way end on %s', stay_under_way, from_routine) ELSE '' END,
                  CASE WHEN stay_campaign > 0
                       THEN format('; %s open task(s) of campaigns stay on %s, their campaign''s routine',
                                   stay_campaign, from_routine) ELSE '' END,
                  CASE WHEN stay_made > 0
                       THEN format('; %s made or reopened on %s during the move stay on it: move them again', stay_made,
                                   from_routine)
                       ELSE '' END);
END $$;

-- (migration 0118) The time from which every product that is chained from now on was recorded (product.created_at,
-- the start of the transaction that recorded it): the oldest product not chained yet (product_not_chained_idx: few),
-- and the start of the oldest transaction under way, which may be recording products it has not committed; now() at
-- the latest. -infinity when a session's transaction cannot be seen (pg_stat_activity hides it from a role without
-- pg_read_all_stats): the read it bounds then reads every product of the type, as before. A product given a
-- created_at of its own by hand, older than that, is not bounded so.
CREATE FUNCTION hrwsi.products_to_chain_were_recorded_from() RETURNS timestamptz LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity a
                             WHERE a.backend_type = 'client backend' AND a.state IS NULL)
                THEN '-infinity'::timestamptz
                ELSE least(now(), (SELECT min(p.created_at) FROM product p WHERE p.chained_at IS NULL),
                           (SELECT min(a.xact_start) FROM pg_stat_activity a WHERE a.backend_type = 'client backend'))
           END
$$;

CREATE FUNCTION hrwsi.keep_a_conditions_missed_range() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
-- A condition's range of missed products (migration 0073): opened when it is made inactive (or is
-- made: what came before it), closed when it is made active again; written by nobody else, but
-- cleared by hrwsi.chain_missed_products once it chained them all.
BEGIN
    -- (and, from migration 0118, from when the products it missed were recorded: missed_products_from)
    IF TG_OP = 'INSERT' THEN
        NEW.missed_since := '-infinity';
        NEW.missed_until := CASE WHEN NEW.active THEN now() END;
        NEW.missed_products_from := '-infinity';
    ELSIF OLD.active AND NOT NEW.active THEN
        NEW.missed_since := now();
        NEW.missed_until := NULL;
        NEW.missed_products_from := hrwsi.products_to_chain_were_recorded_from();
    ELSIF NEW.active AND NOT OLD.active THEN
        NEW.missed_since := coalesce(OLD.missed_since, now());
        NEW.missed_until := now();
        NEW.missed_products_from := CASE WHEN OLD.missed_since IS NULL THEN now()
                                         ELSE coalesce(OLD.missed_products_from, '-infinity') END;
    ELSIF current_setting('hrwsi.clearing_missed_range', true) IS DISTINCT FROM 'on' THEN
        NEW.missed_since := OLD.missed_since;
        NEW.missed_until := OLD.missed_until;
        NEW.missed_products_from := OLD.missed_products_from;
    ELSIF NEW.missed_since IS NULL THEN
        NEW.missed_products_from := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER processing_condition_missed_range BEFORE INSERT OR UPDATE ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.keep_a_conditions_missed_range();

-- The products chain_missed_products would chain to a condition (missed: chained while it was inactive,
-- or before it existed, and never to it), with the lane and the window it keeps: one definition for it,
-- `hrwsi status` (hrwsi.conditions_missing_products, a capped count) and `hrwsi config load`
-- (hrwsi.close_a_missed_range), migration 0078. A plain SQL function without SET or SECURITY DEFINER, so
-- that the planner inlines it into its caller's statement: a LIMIT there stops its scan (status counted
-- every missed product with a dry run of chain_missed_products, 150 ms a condition per 300,000 products,
-- at every call; found by review). Not in order: callers order (or only count) what they take.
CREATE FUNCTION hrwsi.missed_products(p_condition text)
RETURNS TABLE (id bigint, path text, tile text, mission text, measured_at timestamptz, created_at timestamptz,
               lane text, in_window boolean)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.path, i.tile, i.mission, i.measured_at, p.created_at,
           CASE WHEN upstream.priority > downstream.priority THEN t.lane END,
           (upstream.priority > downstream.priority OR c.measurement_window IS NULL OR i.measured_at IS NULL
            OR i.measured_at >= now() - c.measurement_window) IS TRUE
    FROM hrwsi.processing_condition c
    JOIN hrwsi.processing_routine r ON r.name = c.routine
    JOIN hrwsi.lane downstream ON downstream.name = c.lane
    JOIN hrwsi.product p ON p.product_type = r.input_product_type
    LEFT JOIN hrwsi.processing_task t ON t.id = p.task_id
    LEFT JOIN hrwsi.lane upstream ON upstream.name = t.lane
    LEFT JOIN hrwsi.input i ON i.id = t.input_id
    WHERE c.name = p_condition AND p.chained_at IS NOT NULL AND t.campaign_id IS NULL
      -- (chained while it missed them: a product whose input of this condition retention pruned
      -- is not chained again, nor one chained to it before it was made inactive)
      AND p.chained_at >= c.missed_since AND (c.missed_until IS NULL OR p.chained_at < c.missed_until)
      -- (recorded since the range opened, read by their day's index: every product of the type was read, to keep
      -- those chained in the range; migration 0118)
      AND p.created_at >= coalesce(c.missed_products_from, '-infinity')
      AND (p.created_at AT TIME ZONE 'UTC')::date >= (coalesce(c.missed_products_from, '-infinity') AT TIME ZONE 'UTC')::date
      AND (c.tiles IS NULL OR i.tile = ANY (c.tiles))
      AND NOT EXISTS (SELECT 1 FROM hrwsi.input x WHERE x.processing_condition = c.name AND x.input_path = p.path)
      -- (nor a product of a corrected input's old version, or of its chain: migration 0097; it was chained to a
      -- condition made active after the correction, and started the old version's chain again)
      AND p.outdated_by IS NULL
$$;

-- Chain to a condition the products of the type it reads that were made while it was inactive (or
-- before it existed) and so were never chained to it (migration 0073): the harvester chains a product
-- once, into the conditions active then, and marks it chained; a condition made active again got
-- nothing of what was made meanwhile, and nothing said so (found by exploratory testing). The rules
-- are chain_products' for production (sql/queries/core.sql): production products (a campaign's chain
-- within it), the condition's tiles, a back-fill's lane kept, and its measurement window: a product
-- whose scene is older than the window is not chained, only counted (`hrwsi reprocess` of the routine
-- upstream makes such products again, chained within a campaign). Bounded (at most max_products
-- inputs a call, oldest products first; made_since: products made from then on) and idempotent (an
-- input is unique per condition and path: a product chained already is skipped). dry_run counts only.
CREATE FUNCTION hrwsi.chain_missed_products(condition text, made_since timestamptz DEFAULT NULL,
                                            max_products integer DEFAULT 10000, dry_run boolean DEFAULT false)
RETURNS TABLE (chained integer, missed bigint, outside_window bigint, summary text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    c processing_condition;
    reads text;
    made integer := 0;
    in_window bigint;
    too_old bigint;
BEGIN
    SELECT * INTO c FROM processing_condition x WHERE x.name = chain_missed_products.condition;
    IF c.name IS NULL THEN
        RAISE EXCEPTION 'no condition %', hrwsi.quoted_name(chain_missed_products.condition) USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = c.name) THEN
        RAISE EXCEPTION 'condition % is multi-input: the harvester makes its groups from the products there are '
                        '(`hrwsi groups` lists them)', c.name USING ERRCODE = 'check_violation';
    END IF;
    IF NOT c.active AND NOT dry_run THEN
        RAISE EXCEPTION 'condition % is inactive: make it active first (its products would make no task)', c.name
            USING ERRCODE = 'check_violation';
    END IF;
    IF max_products IS NULL OR max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1' USING ERRCODE = 'check_violation';
    END IF;
    SELECT r.input_product_type INTO reads FROM processing_routine r WHERE r.name = c.routine;
    -- No correction runs meanwhile (migration 0097: hrwsi.correct_input), and the statements below see what one
    -- that ran before marked outdated.
    IF NOT dry_run THEN
        PERFORM hrwsi.take_a_lock_or_say_who_holds_it('correction', 'hrwsi.chain_missed_products', 'chained nothing');
        -- (nor in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot misses a correction that committed since:
        -- migration 0104)
        PERFORM hrwsi.see_the_corrections_before('hrwsi.chain_missed_products', 'the products');
    END IF;
    -- The products it chains are locked (FOR KEY SHARE, as a foreign key would lock them) before their
    -- inputs name them: retention (hrwsi.prune_products) skips a locked product, and one it removed
    -- meanwhile is not chained. Unlocked, a product retention removed while this statement ran was named by
    -- the input it made, which no check saw (found by review; migration 0078).
    WITH candidate AS (
        SELECT m.* FROM missed_products(c.name) m WHERE made_since IS NULL OR m.created_at >= made_since
    ), chosen AS (
        SELECT m.* FROM candidate m WHERE m.in_window AND NOT dry_run ORDER BY m.id LIMIT max_products
    ), kept AS (
        SELECT p.id FROM product p WHERE p.id IN (SELECT h.id FROM chosen h) FOR KEY SHARE OF p
    ), inserted AS (
        INSERT INTO input (processing_condition, input_path, tile, mission, measured_at, published_at, source,
                           product_id, lane)
        SELECT c.name, m.path, m.tile, m.mission, m.measured_at, m.created_at, 'chaining', m.id, m.lane
        FROM chosen m JOIN kept k ON k.id = m.id
        ORDER BY m.id
        ON CONFLICT (processing_condition, input_path) WHERE superseded_by IS NULL DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted), count(*) FILTER (WHERE m.in_window), count(*) FILTER (WHERE NOT m.in_window)
    INTO made, in_window, too_old
    FROM candidate m;
    -- All chained (those older than its window are not, and are said below): it misses nothing now.
    IF NOT dry_run AND in_window <= made THEN
        PERFORM set_config('hrwsi.clearing_missed_range', 'on', true);
        UPDATE processing_condition x SET missed_since = NULL, missed_until = NULL WHERE x.name = c.name;
        PERFORM set_config('hrwsi.clearing_missed_range', 'off', true);
    END IF;
    RETURN QUERY SELECT made, in_window, too_old,
        CASE WHEN dry_run THEN format('condition %s: %s product(s) of type %s not chained to it', c.name, in_window, reads)
             ELSE format('condition %s: %s product(s) of type %s chained to it%s', c.name, made, reads,
                         CASE WHEN in_window > made THEN format('; %s more: run it again', in_window - made) ELSE '' END)
        END
        || CASE WHEN too_old > 0
                THEN format('; %s older than its measurement window (%s) are not chained: `hrwsi reprocess` of the '
                            'routine that makes %s chains their products again, within a campaign', too_old,
                            c.measurement_window, reads)
                ELSE '' END;
END $$;

-- The active single-input conditions with products chain_missed_products would chain to them (made while
-- they were inactive, or before they existed), how many, and how many are older than their window: what
-- `hrwsi status` says, however the condition was made active. A plain `UPDATE ... SET active = true` got
-- no note of them, where `hrwsi config load` counts them (found by review; migration 0077). Only the
-- conditions whose missed range is still open are counted (chain_missed_products clears it once it
-- chained them all, and `config load` when there is none), each by chain_missed_products' own rules
-- (hrwsi.missed_products). Each count stops at 10,001 ("more than 10,000"), and it only reads (migration
-- 0078): it ran a dry run of chain_missed_products per condition, a full count (150 ms per 300,000
-- products, at every call, for as long as ops left the old products unchained) and a zero-row INSERT.
-- (migration 0118) Each condition's products read from the day its range's products were recorded
-- (missed_products_from, by product_day_idx), planned with that day known (EXECUTE plans with the values it is
-- given: a plan made for any day read every product of the type, by product_type_idx; 0.9-1.6 s at 1,000,000).
CREATE FUNCTION hrwsi.conditions_missing_products()
RETURNS TABLE (condition text, product_type text, missed bigint, outside_window bigint) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    c record;
    from_day date;
BEGIN
    FOR c IN SELECT x.name, r.input_product_type AS reads, x.missed_products_from
             FROM processing_condition x JOIN processing_routine r ON r.name = x.routine
             WHERE x.active AND x.missed_until IS NOT NULL
               -- (only those: chain_missed_products refuses a multi-input condition)
               AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = x.name)
             ORDER BY x.name
    LOOP
        -- (a range read whole, of a condition added or one opened before migration 0118: every product of the type, by
        -- product_type_idx, not every product there is by their days)
        from_day := CASE WHEN c.missed_products_from > '-infinity' THEN (c.missed_products_from AT TIME ZONE 'UTC')::date END;
        EXECUTE $q$SELECT count(*) FROM (SELECT 1 FROM hrwsi.missed_products($1) p WHERE p.in_window
                   AND ($2::date IS NULL OR (p.created_at AT TIME ZONE 'UTC')::date >= $2) LIMIT 10001) n$q$
            INTO missed USING c.name, from_day;
        CONTINUE WHEN missed = 0;
        EXECUTE $q$SELECT count(*) FROM (SELECT 1 FROM hrwsi.missed_products($1) p WHERE NOT p.in_window
                   AND ($2::date IS NULL OR (p.created_at AT TIME ZONE 'UTC')::date >= $2) LIMIT 10001) n$q$
            INTO outside_window USING c.name, from_day;
        condition := c.name;
        product_type := c.reads;
        RETURN NEXT;
    END LOOP;
END $$;

-- A condition made active (or added) by `hrwsi config load` that misses no product it could chain: its
-- missed range is closed, as chain_missed_products closes it once it chained them all, so that `hrwsi
-- status` does not count it again (true: closed). It only reads the products (migration 0078): config load
-- called chain_missed_products(max_products => 1), which chained a product made meanwhile.
CREATE FUNCTION hrwsi.close_a_missed_range(condition text) RETURNS boolean LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM missed_products(close_a_missed_range.condition) m WHERE m.in_window) THEN
        RETURN false;
    END IF;
    PERFORM set_config('hrwsi.clearing_missed_range', 'on', true);
    UPDATE processing_condition x SET missed_since = NULL, missed_until = NULL
    WHERE x.name = close_a_missed_range.condition AND x.active AND x.missed_until IS NOT NULL;
    PERFORM set_config('hrwsi.clearing_missed_range', 'off', true);
    RETURN FOUND;
END $$;

-- (migration 0118) A session as an error names it for a data engineer: `session 123, role alice, application 'psql',
-- its transaction open for 42 s`, as the CLI names a correction's (hrwsi.harvest.corrections.Corrector).
CREATE FUNCTION hrwsi.session_named(p_pid integer) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT concat_ws(', ', format('session %s', p_pid), 'role ' || a.usename::text,
                     'application ' || quote_literal(nullif(a.application_name, '')),
                     format('its transaction open for %s s', round(extract(epoch FROM clock_timestamp() - a.xact_start))))
    FROM (SELECT p_pid) x LEFT JOIN pg_stat_activity a ON a.pid = p_pid
$$;

-- (migration 0118) The lock of a correction (shared: no input is corrected meanwhile) or of a campaign's start (one
-- at a time), taken by hrwsi.reprocess and hrwsi.chain_missed_products; a wait that runs out (lock_timeout) says what
-- it waited for, the session that holds it and what to do, in SQL as the CLI says it: it said PostgreSQL's "canceling
-- statement due to lock timeout" at an advisory lock (found by exploration). Taken at once when free, as nearly
-- always; the block that names the holder, a subtransaction, is entered only when the lock is busy.
CREATE FUNCTION hrwsi.take_a_lock_or_say_who_holds_it(waited_for text, caller text, not_done text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    correction boolean := waited_for = 'correction';
    holder text;
    free boolean;
BEGIN
    -- (one lock tried, never both: SQL does not promise the order in which AND and OR evaluate their terms)
    IF correction THEN
        free := pg_try_advisory_xact_lock_shared(7250098, 1);
    ELSE
        free := pg_try_advisory_xact_lock(1752332131);
    END IF;
    IF free THEN
        RETURN;
    END IF;
    BEGIN
        IF correction THEN
            PERFORM pg_advisory_xact_lock_shared(7250098, 1);
        ELSE
            PERFORM pg_advisory_xact_lock(1752332131);
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        SELECT hrwsi.session_named(l.pid) INTO holder
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
          AND CASE WHEN correction THEN l.classid = 7250098::oid AND l.objid = 1::oid AND l.objsubid = 2
                   ELSE l.classid = 0::oid AND l.objid = 1752332131::oid AND l.objsubid = 1 END
        LIMIT 1;
        RAISE EXCEPTION '% waited lock_timeout (%) for %, and %', caller, current_setting('lock_timeout'),
            CASE WHEN correction THEN 'the correction of an input under way (hrwsi.correct_input in '
                 ELSE 'another start of a campaign under way (hrwsi.reprocess in ' END
            || coalesce(holder, 'a session that has ended since') || ')', not_done
            USING ERRCODE = 'lock_not_available',
                  HINT = 'run it again once that transaction commits or rolls back (one left open: '
                         'SELECT pg_terminate_backend(pid) ends it)';
    END;
END $$;

-- A reprocessing campaign: one new task per input of a routine (or of one condition of it) sensed
-- in [measured_from, measured_to), on the given tiles (NULL: every tile), that was processed
-- already, in the campaign's lane (archive) and without a deadline. A production input only: the
-- inputs an earlier campaign chained stay that campaign's. The routine runs the campaign's
-- command or image when given. Old tasks and products are kept.
-- A campaign still open (not finished, not cancelled) that reprocesses the same routine or condition,
-- range and tiles (in any order; NULL: every tile) with the same version (command and image) is not
-- started again unless `again`: a request repeated (from a shell's history, or a script run twice)
-- started a second campaign and both ran, the same programs on the same inputs. Its name and whether
-- it chains do not matter. (The check was in `hrwsi reprocess` alone until migration 0058.)
CREATE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL, again boolean DEFAULT false)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
    twin bigint;
    left_out integer;  -- (inputs chained from products a correction outdated: not reprocessed)
    holder text;       -- (the session that holds a lock on an input of the range, which a wait ran out for)
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    -- Nomad reads `${...}` in a job's arguments and driver config as its own variables, as the configuration file
    -- says of a routine's command and image: a campaign's was taken, and the Nomad backend refused each of its
    -- attempts ("contains '${', which Nomad would interpolate"), charged to the campaign until it went on hold
    -- (migration 0116, found by exploratory testing). Checked here, not by a CHECK: campaign rows stored before are
    -- updated by the failure policy.
    IF strpos(array_to_string(reprocess.command, ' '), '${') > 0 OR strpos(reprocess.image, '${') > 0 THEN
        RAISE EXCEPTION 'the campaign''s command or image holds ''${'', which Nomad would replace with a node '
                        'attribute or a runtime variable in the job''s arguments: give the value itself (HRWSI_* '
                        'variables name the attempt''s paths)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'campaign_command_and_image_have_no_dollar_brace';
    END IF;
    IF reprocess.condition IS NOT NULL THEN
        SELECT c.routine INTO target FROM processing_condition c WHERE c.name = reprocess.condition;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no condition %', hrwsi.quoted_name(reprocess.condition) USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', hrwsi.quoted_name(target) USING ERRCODE = 'no_data_found';
    END IF;
    -- No input is corrected while a campaign is started, and a correction under way is waited for (the lock a
    -- correction takes exclusively, hrwsi.correct_input; taken first, as chaining takes it): its composites read the
    -- members a group has now, and one started during a correction read the old version's, which the correction had
    -- not marked outdated yet, nor had it cancelled the task it did not see (found by review; migration 0102). The
    -- statements after it see what the correction did.
    -- (a wait that runs out says for what, whose, and what to do: migration 0118)
    PERFORM hrwsi.take_a_lock_or_say_who_holds_it('correction', 'hrwsi.reprocess', 'started no campaign');
    -- (not in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot, taken before that wait, misses a correction
    -- that committed since: its composite read the old version's product; migration 0104, found by review)
    PERFORM hrwsi.see_the_corrections_before('hrwsi.reprocess', 'the inputs');
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773):
    -- pg_advisory_xact_lock(1752332131), 0x68727763, "hrwc".
    PERFORM hrwsi.take_a_lock_or_say_who_holds_it('campaign start', 'hrwsi.reprocess', 'started no campaign');
    IF NOT reprocess.again THEN
        SELECT k.id INTO twin
        FROM campaign k
        WHERE k.routine = target AND k.condition IS NOT DISTINCT FROM reprocess.condition
          AND k.measured_from = reprocess.measured_from AND k.measured_to = reprocess.measured_to
          AND (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(k.tiles) x)
              IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(reprocess.tiles) x)
          AND k.command IS NOT DISTINCT FROM reprocess.command AND k.image IS NOT DISTINCT FROM reprocess.image
          AND k.cancelled_at IS NULL
          AND EXISTS (SELECT 1 FROM campaign_progress p WHERE p.campaign_id = k.id AND p.finished_at IS NULL)
        ORDER BY k.id DESC
        LIMIT 1;
        IF twin IS NOT NULL THEN
            RAISE EXCEPTION 'campaign % already reprocesses these inputs with this version and has not finished', twin
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'campaign_is_not_started_twice',
                      HINT = format('SELECT * FROM hrwsi.campaign_progress WHERE campaign_id = %s shows it; call '
                                    'hrwsi.reprocess with again => true to start another one anyway (both run)', twin);
        END IF;
    END IF;
    INSERT INTO campaign (name, routine, condition, measured_from, measured_to, tiles, command, image, chain)
    VALUES (reprocess.name, target, reprocess.condition, reprocess.measured_from, reprocess.measured_to,
            reprocess.tiles, reprocess.command, reprocess.image, reprocess.chain)
    RETURNING id INTO new_campaign;

    -- An input chained from a product a correction outdated (product.outdated_by) is of the old version: the
    -- correction cancelled its open tasks but kept the input, processed or not (migration 0094), and a campaign
    -- reprocessed it, making products from the old version's output beside those of the corrected input's chain, in
    -- READ COMMITTED too (found by review; migration 0107). Left out, and counted in the answer, which says why: in the
    -- statement that makes the tasks, from the one scan of the range (migration 0109: a statement before it scanned the
    -- range a second time to count them, and, in READ COMMITTED, each statement with a snapshot of its own).
    -- (a lock another transaction holds on an input of the range, which a wait ran out for, is named: migration 0118)
    BEGIN
    WITH candidate AS (
        SELECT i.id, i.measured_at, i.tile, c.routine, r.on_hold, r.hold_reason, r.sequential_per_tile,
               EXISTS (SELECT 1 FROM product p WHERE p.id = i.product_id AND p.outdated_by IS NOT NULL) AS outdated
        FROM input i
        JOIN processing_condition c ON c.name = i.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
          -- (an input a correction superseded is reprocessed as its correction: migration 0083, found by review)
          AND i.campaign_id IS NULL AND i.superseded_by IS NULL
          AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
          AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
          AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
        -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
        -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
        FOR KEY SHARE OF i
    ), made AS (
        INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                     campaign_id)
        SELECT x.id, x.routine, CASE WHEN x.on_hold THEN 'on_hold' ELSE 'pending' END,
               CASE WHEN x.on_hold THEN 'routine on hold: ' || x.hold_reason
                    ELSE format('reprocessing campaign %s', new_campaign) END,
               l.name, l.priority,
               CASE WHEN x.sequential_per_tile AND x.measured_at IS NOT NULL THEN x.tile END,
               CASE WHEN x.sequential_per_tile AND x.tile IS NOT NULL THEN x.measured_at END,
               new_campaign
        FROM candidate x
        JOIN campaign k ON k.id = new_campaign
        JOIN lane l ON l.name = k.lane
        WHERE NOT x.outdated
        ORDER BY x.measured_at, x.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM made), (SELECT count(*) FROM candidate x WHERE x.outdated) INTO created, left_out;
    EXCEPTION WHEN lock_not_available THEN
        -- (a row's locker: the transaction its xmax names, while it lasts; several lockers share a multixact, unnamed)
        SELECT hrwsi.session_named(l.pid) INTO holder
        FROM input i
        JOIN processing_condition c ON c.name = i.processing_condition
        JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = i.xmax AND l.granted
                           AND l.mode = 'ExclusiveLock'
        WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
          AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
          AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
        LIMIT 1;
        RAISE EXCEPTION 'hrwsi.reprocess waited lock_timeout (%) for %, and started no campaign',
            current_setting('lock_timeout'),
            coalesce(format('an input of the range that another transaction changes or locks (in %s)', holder),
                     'a lock another transaction holds on the inputs of the range or their tasks')
            USING ERRCODE = 'lock_not_available',
                  HINT = 'run it again once that transaction commits or rolls back (one left open: '
                         'SELECT pg_terminate_backend(pid) ends it; `hrwsi status` names it)';
    END;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), hrwsi.utc_text(reprocess.measured_from), hrwsi.utc_text(reprocess.measured_to),
            CASE WHEN reprocess.tiles IS NULL THEN ''
                 ELSE ' (tiles ' || (SELECT string_agg(hrwsi.quoted_name(t), ', ') FROM unnest(reprocess.tiles) t) || ')' END
            || CASE WHEN left_out > 0
                    THEN format('; %s input(s) left out, chained from products of an old version, which a correction '
                                'outdated (the corrected input''s chain makes them anew)', left_out) ELSE '' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    -- A composite (a task of a multi-input condition) is made again from the members its group has
    -- now, recorded for the campaign's task (migration 0073): production's record is the members
    -- there were when the group was made, and a member that arrived after its composite ran was in
    -- no composite, the campaign's neither (found by exploratory testing).
    INSERT INTO multi_input_campaign_member (task_id, member_path, product_type, measured_at)
    SELECT t.id, m.member_path, min(m.product_type), min(m.measured_at)
    FROM processing_task t
    JOIN input g ON g.id = t.input_id
    CROSS JOIN LATERAL multi_input_members_now(g.processing_condition, g.tile,
                                               substring(g.input_path FROM '[0-9]{4}-[0-9]{2}-[0-9]{2}$')::date) m
    WHERE t.campaign_id = new_campaign AND g.source = 'multi_input' AND g.tile IS NOT NULL
    GROUP BY t.id, m.member_path;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, hrwsi.utc_text(reprocess.measured_from),
               hrwsi.utc_text(reprocess.measured_to),
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
           || CASE WHEN left_out > 0
                   THEN format('; %s input(s) left out, chained from products of an old version, which a correction '
                               'outdated (the corrected input''s chain makes them anew)', left_out) ELSE '' END
        FROM campaign k WHERE k.id = new_campaign;
END $$;

-- Cancel what a campaign has not done yet (its running jobs are stopped); its products are kept.
CREATE FUNCTION hrwsi.cancel_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cancelled integer;
    stopping integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = cancel_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', cancel_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE state IN ('submitted', 'queued', 'running')
      AND task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = cancel_campaign.campaign);
    GET DIAGNOSTICS stopping = ROW_COUNT;
    UPDATE hrwsi.processing_task SET state = 'cancelled',
        state_reason = format('its campaign %s was cancelled by an operator', cancel_campaign.campaign)
    WHERE campaign_id = cancel_campaign.campaign AND state NOT IN ('processed', 'terminated', 'cancelled');
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    -- Ended: no longer on hold (it said "on hold ... --release" after its cancel; migration 0047), and
    -- cancelled as a whole, by whom and when, the first time (migration 0058).
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0,
        cancelled_at = coalesce(cancelled_at, now()), cancelled_by = coalesce(cancelled_by, session_user)
    WHERE id = cancel_campaign.campaign;
    RETURN format('campaign %s: %s open task(s) cancelled, %s running job(s) being stopped; its products are kept',
                  cancel_campaign.campaign, cancelled, stopping);
END $$;

-- Start a held campaign again: the campaign's hold is lifted, and only it (migration 0104), as a routine's release
-- lifts the routine's hold only (migration 0101): a task an operator held one by one stays held, and one of a routine
-- on hold stays held with it, its reason saying so; the answer counts both, and says how to lift them. It released
-- every held task of the campaign, undoing each operator's hold, and left those of a held routine saying "campaign N
-- on hold" once the campaign was not (found by review). (hrwsi.release_held_tasks, the routine's release's too:
-- migration 0112)
CREATE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint[];
    released bigint;
    rest text;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', release_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign) THEN
        RAISE EXCEPTION 'campaign % is not on hold: only a held campaign can be released',
            release_campaign.campaign USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE id = release_campaign.campaign;
    -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
    SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}') INTO held
    FROM (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = release_campaign.campaign AND t.state = 'on_hold'
          ORDER BY t.id FOR NO KEY UPDATE OF t) x;
    SELECT r.released, r.rest INTO released, rest
    FROM hrwsi.release_held_tasks(held, 'campaign released by an operator', 'routine',
                                  (SELECT count(*) FROM hrwsi.processing_task t
                                   WHERE t.campaign_id = release_campaign.campaign AND t.state = 'blocked'
                                     AND t.held_while_blocked)) r;
    RETURN format('campaign %s released; %s held task(s) will be planned', release_campaign.campaign, released) || rest;
END $$;

-- A campaign held by hand (`hrwsi campaigns --hold`), to let production catch up: its waiting tasks
-- are held (hrwsi.hold_campaign_tasks), what runs goes on; production is not held. Only a routine
-- could be held by hand, which holds production too (migration 0057).
CREATE FUNCTION hrwsi.hold_campaign(campaign bigint, reason text DEFAULT 'held by an operator') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = hold_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', hold_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = hold_campaign.campaign) THEN
        RETURN format('campaign %s was already on hold', hold_campaign.campaign);
    END IF;
    UPDATE hrwsi.campaign SET on_hold = true, hold_reason = hold_campaign.reason WHERE id = hold_campaign.campaign;
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.campaign_id = hold_campaign.campaign AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('campaign %s is on hold: %s waiting task(s) held, %s dispatched or running go on; production goes '
                  'on. `hrwsi campaigns --release %s` starts it again', hold_campaign.campaign, held, under_way,
                  hold_campaign.campaign);
END $$;

-- =============================================================================================
-- Notification triggers: one per statement, payloads of counts only. A notification is a
-- wake-up call (docs/adr/0001); it is sent at commit, never for a rolled-back statement.
-- =============================================================================================

CREATE FUNCTION hrwsi.notify_count() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
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

-- Joins nothing but the transition tables: no nested loop, and the other joins on whatever the
-- session's settings (see hrwsi.after_task_changes).
CREATE FUNCTION hrwsi.notify_state_counts() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on SET enable_mergejoin = on SET jit = off AS $$
-- TG_ARGV[0]: the channel. Payload: {"op": "update", "counts": {"processed": 3}}: rows per new state,
-- counting only the rows whose state changed; the states of work under way on the channel's
-- `_progress` (hrwsi.state_is_under_way, migration 0043). For UPDATEs (job_notify_update).
DECLARE
    counts json;
    progress json;
BEGIN
    SELECT json_object_agg(state, n) FILTER (WHERE NOT hrwsi.state_is_under_way(state)),
           json_object_agg(state, n) FILTER (WHERE hrwsi.state_is_under_way(state))
    INTO counts, progress
    FROM (SELECT n.state, count(*) AS n FROM new_rows n JOIN old_rows o USING (id)
          WHERE n.state IS DISTINCT FROM o.state GROUP BY n.state) c;
    IF counts IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0], json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    END IF;
    IF progress IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0] || '_progress', json_build_object('op', lower(TG_OP), 'counts', progress)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER input_notify AFTER INSERT ON hrwsi.input
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_count('hrwsi_input');

-- (hrwsi_task: sent by hrwsi.after_task_changes, with the tasks' history.)

-- (hrwsi_job for inserted jobs: sent by hrwsi.after_jobs_inserted, with the check of their tasks.)
CREATE TRIGGER job_notify_update AFTER UPDATE ON hrwsi.job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_state_counts('hrwsi_job');

CREATE TRIGGER product_notify AFTER INSERT ON hrwsi.product
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.notify_count('hrwsi_product');

-- An input that arrives more than a day past the deadline its condition gives it, without a lane of
-- its own, is back-fill: it goes to the least urgent lane, without a deadline (migration 0075). Given
-- its condition's lane, it was served earliest deadline first before every fresh scene: 3,000 scenes
-- of 2019 inserted without lane 'archive' held fresh scenes of the same routine back 50-97 s each,
-- and raised 3,000 deadline_missed alerts (found by exploratory testing). An input given its lane
-- keeps it; a chained product (product_id) and a campaign's input have theirs already.
CREATE FUNCTION hrwsi.arrives_as_back_fill(given_lane text, product_id bigint, campaign_id bigint, due timestamptz,
                                           arrived timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- (arrived - due, not due < arrived - interval '1 day': a timestamptz minus an interval is only
    -- stable, and an immutable SQL function whose body is not is never inlined; the INSERT trigger
    -- then called it for each row, twice, and 10,000 inputs took 20-30 % more of the server's CPU)
    SELECT coalesce(given_lane IS NULL AND product_id IS NULL AND campaign_id IS NULL
                    AND arrived - due > interval '1 day', false)
$$;

-- =============================================================================================
-- Tasks are created with their input, in the INSERT's own statement (no backlog, no round trip).
-- =============================================================================================
-- The lock of a time series (routine, tile): advisory lock (7250010, key), where the key is one of 1024
-- slots the series' name hashes into (migration 0084). Two transactions that insert into one series,
-- retry or chain its tasks, or decide what its tasks wait for upstream, hold it one after the other, so
-- that each reads the series as the other committed it (its links, in sensing order). It was one lock
-- per series, which an INSERT or a back-fill batch holds to its end: over more tiles than the server's
-- lock table holds (max_locks_per_transaction x max_connections, 6,400 by default; HR-WSI has thousands
-- of tiles) it failed with "out of shared memory" (found by exploratory testing). A transaction now holds
-- at most 1024 of them, each taken once, in the order of its key; two series of one slot are held
-- together (a rare wait of one for the other, never a wrong link).
CREATE FUNCTION hrwsi.series_lock_key(p_routine text, p_tile text) RETURNS integer LANGUAGE sql IMMUTABLE
PARALLEL SAFE
RETURN hashtext(p_routine || '/' || p_tile) & 1023;

-- An INSERT into a time series whose lock another transaction holds (a data engineer's INSERT not
-- committed yet) waits for it, as before; it first says for what and for whom, in a notice psql
-- shows at once: the wait said nothing, and a lock_timeout said only "canceling statement due to
-- lock timeout" at an advisory lock (found by exploratory testing). Called only when the lock is busy.
CREATE FUNCTION hrwsi.wait_for_a_series(series_routine text, series_tile text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    key integer := hrwsi.series_lock_key(series_routine, series_tile);
    holders text;
BEGIN
    SELECT string_agg(format('pid %s (role %s, %s%s)', a.pid, coalesce(a.usename::text, '?'),
                             coalesce(nullif(a.application_name, ''), 'no application name'),
                             coalesce(', transaction open ' || round(extract(epoch FROM clock_timestamp() - a.xact_start))
                                      || ' s', '')), ', ' ORDER BY a.pid)
    INTO holders
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 7250010::oid AND l.objsubid = 2
      AND l.objid::bigint = (key::bigint & 4294967295)
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database());
    RAISE NOTICE 'waiting for the time series of routine % on tile %: another transaction inserted into it and has not '
                 'committed: %', series_routine, series_tile, coalesce(holders, 'a session that has just ended')
        USING HINT = 'two INSERTs into one time series run one after the other, so that the second links its tasks '
                     'after the first''s (rarely, the other inserted into another series sharing its lock: one of '
                     '1024); the other transaction should commit or roll back (a forgotten one: '
                     'SELECT pg_terminate_backend(pid))';
    PERFORM pg_advisory_xact_lock(7250010, key);
END $$;

-- (migration 0125) The refusal of an input naming a condition that does not exist, as the input's key refused it
-- (hrwsi.create_tasks_for_new_inputs raises it for an INSERT, naming the statement's first row naming it, and
-- hrwsi.refuse_an_input_naming_what_does_not_exist for an UPDATE). The name is shown with its control and invisible
-- characters as their escapes, and cut past 118 characters with its length said: written as it came, a name with a
-- line break and an escape sequence forged a line of psql's output and cleared the screen, a name of 100,000
-- characters made an error of as many, and 'l1c\u200b' (a zero-width space, pasted) read "l1c is not present" while
-- l1c was there (found by exploratory testing). A condition whose name is the one given without such characters, or
-- in another case, is named in the hint.
CREATE FUNCTION hrwsi.refuse_an_input_of_a_missing_condition(missing text, first_path text, named bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    shown text := hrwsi.unseen_characters_escaped(missing);
    meant text;
BEGIN
    SELECT c.name INTO meant FROM processing_condition c
    WHERE c.name = btrim(regexp_replace(missing, '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]', '', 'g'))
       OR lower(c.name) = lower(missing)
    ORDER BY c.name LIMIT 1;
    RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
              DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition".',
                              CASE WHEN length(shown) <= 118 THEN shown
                                   ELSE left(shown, 118) || '... (' || regexp_replace(length(missing)::text,
                                        '(\d)(?=(\d{3})+$)', '\1,', 'g') || ' characters)' END)
                       || CASE WHEN first_path IS NULL THEN ''
                               ELSE format(' The first row naming it has input_path %s (%s row(s) of the statement '
                                           'name it).', first_path, named) END,
              HINT = CASE WHEN meant IS NOT NULL
                          THEN format('did you mean condition %s? The name given is %s, %s', hrwsi.quoted_name(meant),
                                      hrwsi.quoted_name(shown),
                                      CASE WHEN shown <> missing THEN 'its invisible or control characters shown '
                                                                      'as their escapes'
                                           ELSE 'in another case' END)
                          ELSE 'the conditions are configuration: `hrwsi config show` lists them' END;
END $$;

CREATE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    planner_settings text[];  -- the session's enable_seqscan, enable_sort and jit, put back after the series' linking
    missing text;
    first_path text;   -- (the first row naming what is refused: a COPY's line is not known here)
    named bigint;
    conditions text[];
    sequential boolean;
    upstream boolean;  -- a time-series routine of the new inputs reads what another routine makes
    feeds boolean;     -- a routine of the new inputs makes what a time-series routine reads
    placeless boolean; -- a data engineer's input without a tile or a sensing time
    unplaced record;
BEGIN
    -- The conditions the new inputs name, each locked once, as the input's key locked it for every
    -- row (migration 0027), then checked: an input naming a condition that does not exist is
    -- refused as the key refused it, with its name and its message, and nothing is kept.
    -- (and whether a data engineer's row lacks a tile or a sensing time, in the same scan: said at the end)
    SELECT coalesce(array_agg(DISTINCT n.processing_condition), '{}'),
           coalesce(bool_or(n.source = 'sql' AND (n.tile IS NULL OR n.measured_at IS NULL)), false)
    INTO conditions, placeless
    FROM new_rows n;
    PERFORM 1 FROM processing_condition c WHERE c.name = ANY (conditions) FOR KEY SHARE OF c;
    SELECT x.name INTO missing FROM unnest(conditions) x(name)
    WHERE NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = x.name)
    LIMIT 1;
    IF FOUND THEN
        -- (which row: the statement's first naming it, and how many do; checked once per statement,
        -- after its rows, the refusal could not name a COPY's line; found by exploratory testing)
        SELECT n.input_path, count(*) OVER () INTO first_path, named
        FROM new_rows n WHERE n.processing_condition = missing ORDER BY n.id LIMIT 1;
        PERFORM hrwsi.refuse_an_input_of_a_missing_condition(missing, first_path, named);
    END IF;
    -- An input of a condition ops stopped (`active = false`) is refused, unless a campaign reprocesses
    -- it: a data engineer's INSERT ran all the same, while the harvester and chaining give such a
    -- condition nothing (migration 0056). One probe per condition; the rows only when one is inactive.
    IF EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = ANY (conditions) AND NOT c.active) THEN
        SELECT n.processing_condition INTO missing
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition AND NOT c.active
        WHERE n.campaign_id IS NULL
        LIMIT 1;
        IF FOUND THEN
            SELECT n.input_path, count(*) OVER () INTO first_path, named
            FROM new_rows n WHERE n.processing_condition = missing AND n.campaign_id IS NULL ORDER BY n.id LIMIT 1;
            RAISE EXCEPTION 'condition % is inactive: ops stopped it (active = false), so it takes no new input', missing
                USING ERRCODE = 'check_violation',
                      DETAIL = format('The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                      first_path, named),
                      HINT = 'insert into an active condition (`hrwsi config show` lists them), or ask ops to set it '
                             'active again';
        END IF;
    END IF;
    -- An input of a multi-input condition is a group, which the harvester makes (source 'multi_input', a path
    -- multi_input/<condition>/<tile>/<day>, its members recorded for its manifest) once the group is complete.
    -- A file a data engineer inserted into one ran its routine without members, failed each attempt, and two
    -- such inputs put the routine (or its back-fill) on hold, production's composites with it (found by
    -- exploratory testing; migration 0128). One probe per statement; the rows only when one names such a condition.
    IF EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = ANY (conditions)) THEN
        SELECT n.processing_condition INTO missing
        FROM new_rows n JOIN multi_input_rule m ON m.processing_condition = n.processing_condition
        WHERE n.source <> 'multi_input'
        LIMIT 1;
        IF FOUND THEN
            SELECT n.input_path, count(*) OVER () INTO first_path, named
            FROM new_rows n WHERE n.processing_condition = missing AND n.source <> 'multi_input' ORDER BY n.id LIMIT 1;
            RAISE EXCEPTION 'condition % is a multi-input condition: the harvester makes its inputs, one per complete '
                            'group of members (a tile and its window), and an input inserted into it would run its '
                            'routine without members', hrwsi.quoted_name(missing)
                USING ERRCODE = 'check_violation',
                      DETAIL = format('The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                      first_path, named),
                      HINT = 'insert the scenes into the conditions that make its members (`hrwsi config show` lists '
                             'them): their products make its groups; `hrwsi groups` shows what each group has and lacks';
        END IF;
    END IF;
    -- (one statement for the three, per condition named: migration 0072)
    SELECT coalesce(bool_or(r.sequential_per_tile), false),
           coalesce(bool_or(r.sequential_per_tile AND EXISTS (
               SELECT 1 FROM processing_routine up WHERE up.output_product_type = r.input_product_type)), false),
           coalesce(bool_or(EXISTS (SELECT 1 FROM processing_routine d
                                    WHERE d.input_product_type = r.output_product_type AND d.sequential_per_tile)), false)
    INTO sequential, upstream, feeds
    FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
    WHERE c.name = ANY (conditions);
    -- A time series is linked by what the INSERT sees of it once it holds the series' lock: under
    -- REPEATABLE READ or SERIALIZABLE its snapshot misses the tasks another transaction added
    -- meanwhile, and two INSERTs linked their tasks to the same previous task, out of sensing order
    -- (found by exploratory testing). Refused there, as removing an input is.
    IF (sequential OR feeds) AND current_setting('transaction_isolation') <> 'read committed' THEN
        SELECT format('condition %s feeds the time series of routine %s (sequential_per_tile)', c.name,
                      CASE WHEN r.sequential_per_tile THEN r.name ELSE d.name END)
        INTO missing
        FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
        JOIN processing_routine r ON r.name = c.routine
        LEFT JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
        WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL AND (r.sequential_per_tile OR d.name IS NOT NULL)
        ORDER BY n.id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'inputs of a time series are inserted only in a READ COMMITTED transaction (the default), '
                            'not in a % one', upper(current_setting('transaction_isolation'))
                USING ERRCODE = 'feature_not_supported', DETAIL = missing,
                      HINT = 'under a stricter isolation the INSERT cannot see the tasks other transactions added to the '
                             'series meanwhile, and would link its tasks out of sensing order: insert without BEGIN '
                             'ISOLATION LEVEL ..., or SET TRANSACTION ISOLATION LEVEL READ COMMITTED first';
        END IF;
    END IF;

    -- Two INSERTs on one time series (routine, tile) chain their tasks one after the other: the
    -- second waits here until the first commits, then sees its tasks. Locks in a fixed order. An
    -- upstream task of a time series (feeds) takes the lock of the series downstream of its tile too,
    -- in the same order (migration 0072): it makes the series' tasks after its scene wait for it.
    -- (one lock per key, in the order of the keys, whatever series share it: hrwsi.series_lock_key)
    IF feeds THEN
        FOR series IN
            SELECT hrwsi.series_lock_key(x.routine, x.tile) AS key, (array_agg(x.routine ORDER BY x.routine, x.tile))[1] AS routine,
                   (array_agg(x.tile ORDER BY x.routine, x.tile))[1] AS tile
            FROM (SELECT c.routine, n.tile
                  FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
                  JOIN processing_routine r ON r.name = c.routine
                  WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
                  UNION
                  SELECT d.name, n.tile
                  FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
                  JOIN processing_routine r ON r.name = c.routine
                  JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
                  WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL) x
            GROUP BY 1 ORDER BY 1
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, series.key) THEN
                PERFORM hrwsi.wait_for_a_series(series.routine, series.tile);
            END IF;
        END LOOP;
    ELSIF sequential THEN
        FOR series IN
            SELECT hrwsi.series_lock_key(c.routine, n.tile) AS key, (array_agg(c.routine ORDER BY c.routine, n.tile))[1] AS routine,
                   (array_agg(n.tile ORDER BY c.routine, n.tile))[1] AS tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            GROUP BY 1 ORDER BY 1
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, series.key) THEN
                PERFORM hrwsi.wait_for_a_series(series.routine, series.tile);
            END IF;
        END LOOP;
    END IF;

    -- The routines and lanes the new tasks name, each locked once, as a foreign key would lock it
    -- for every row (hrwsi.refuse_removing_what_tasks_name): none of them can be removed before
    -- this transaction ends. They exist: the tasks are made by joining them.
    PERFORM 1
    FROM (SELECT DISTINCT c.routine,
                 CASE WHEN hrwsi.arrives_as_back_fill(n.lane, n.product_id, n.campaign_id,
                                                      coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at
                                                                    ELSE n.measured_at END, n.created_at) + c.deadline,
                                                      n.created_at)
                      THEN (SELECT bl.name FROM lane bl ORDER BY bl.priority DESC, bl.name LIMIT 1)
                      ELSE coalesce(n.lane, c.lane) END AS lane
          FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition) x
    JOIN processing_routine r ON r.name = x.routine
    JOIN lane l ON l.name = x.lane
    FOR KEY SHARE OF r, l;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, deadline_at,
                                 series_tile, series_at, campaign_id)
    SELECT n.id, c.routine,
           CASE WHEN r.on_hold OR (r.backfill_hold_reason IS NOT NULL AND n.campaign_id IS NULL AND l.priority > 0)
                THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                -- (a back-fill held by its failures: migration 0075)
                WHEN r.backfill_hold_reason IS NOT NULL AND n.campaign_id IS NULL AND l.priority > 0
                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason)
                -- (an input more than a day past its deadline: back-fill, migration 0075)
                WHEN e.back_fill
                THEN format('arrived %s after its deadline (%s): served as back-fill, in lane %s without a deadline; '
                            'an input given lane %s is served as near-real-time', hrwsi.duration_text(n.created_at - e.due),
                            hrwsi.utc_text(e.due), l.name, c.lane) END,
           l.name, l.priority,
           -- A campaign's input (a product it made, chained) is reprocessing, and an input in a lane
           -- less urgent than its condition's is back-fill: neither has a deadline. (A back-fill's
           -- deadline, counted from a sensing months ago, was missed the moment its task existed: it
           -- was served before fresh scenes, earliest deadline first, and alerted; migration 0048.)
           -- (the condition's lane read only for an input naming another: a burst's rows name none)
           CASE WHEN n.campaign_id IS NULL AND NOT e.back_fill
                     AND (n.lane IS NULL OR n.lane = c.lane
                          OR l.priority <= (SELECT cl.priority FROM lane cl WHERE cl.name = c.lane)) THEN
               e.due END,
           CASE WHEN r.sequential_per_tile AND n.measured_at IS NOT NULL THEN n.tile END,
           CASE WHEN r.sequential_per_tile AND n.tile IS NOT NULL THEN n.measured_at END,
           n.campaign_id
    FROM new_rows n
    JOIN processing_condition c ON c.name = n.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    CROSS JOIN LATERAL (
        SELECT d.due, hrwsi.arrives_as_back_fill(n.lane, n.product_id, n.campaign_id, d.due, n.created_at) AS back_fill
        FROM (SELECT coalesce(CASE c.deadline_from WHEN 'publication' THEN n.published_at ELSE n.measured_at END,
                              n.created_at) + c.deadline AS due) d) e
    JOIN lane l ON l.name = CASE WHEN e.back_fill THEN (SELECT bl.name FROM lane bl ORDER BY bl.priority DESC, bl.name LIMIT 1)
                                 ELSE coalesce(n.lane, c.lane) END
    ORDER BY n.id;

    -- A time-series task depends on the task just before it in its series, by (series_at, id). One
    -- window over the new tasks of each series, the tasks already there between its first and last
    -- new one (a late input lands between them), the one task just before its first new one and the
    -- one just after its last (one index probe each per series): O(n log n) in the new tasks
    -- whatever the table statistics, and a series' older history is never read. A task already
    -- there whose place in the series changed (a late scene landed just before it) depends on the
    -- late one from now on, if it has not started: planned, it goes back to be planned again;
    -- blocked by the end of the task it waited for, it waits for the late one instead (before
    -- migration 0048, it kept depending on the scene before the late one, and both ran at
    -- once: found by exploratory testing). One that started keeps what it ran with. (Probing once
    -- per new task, skipping the other new tasks, was quadratic in the new tasks of a series: 3.1 s
    -- for 10,000 over 200 tiles.) A campaign's tasks form series of their own: production tasks
    -- never wait for reprocessing, nor the other way round. A task whose previous task is blocked
    -- or ended terminated is blocked at once, as it would have been had it been there then, and
    -- so are the tasks after it (hrwsi.after_task_changes): a late scene landed behind a blocked
    -- one waited `pending`, with no reason, for ever (found by exploratory testing; migration 0061).
    IF sequential THEN
        -- Every task read by key, whatever the statistics (migration 0085): a probe in a sub-query of its
        -- own (OFFSET 0), no sequential scan, and no sort where an index gives the order. Planned on the
        -- statistics of a table whose rows an INSERT rolled back had left (ANALYZE counts no live row then),
        -- this statement read the series' tasks through the index of routines and sorted them for each
        -- tile, and its UPDATE read every task once per new task: 20,000 scenes over 200 tiles, inserted
        -- after two INSERTs were refused, took 57 s where they take 1.5 s (found by measuring it).
        -- (set for this statement alone, and put back as the session had them: a SET clause on this function
        -- would save and restore them at every INSERT, a series or not; and JIT off with them: on PostgreSQL
        -- 15-17 a plan with a method turned off costs ten billion more, which passes jit_above_cost, and the
        -- statement was compiled at every INSERT into a series, migration 0088)
        planner_settings := ARRAY[current_setting('enable_seqscan'), current_setting('enable_sort'), current_setting('jit')];
        PERFORM set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true), set_config('jit', 'off', true);
        EXECUTE $q$
            WITH fresh AS (
                SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                FROM new_rows n
                CROSS JOIN LATERAL (SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                                    FROM processing_task t WHERE t.input_id = n.id OFFSET 0) t
                WHERE t.series_tile IS NOT NULL
            ), span AS (
                SELECT f.routine, f.series_tile, f.campaign_id, min(f.series_at) AS first_at,
                       max(f.series_at) AS last_at
                FROM fresh f GROUP BY f.routine, f.series_tile, f.campaign_id
            ), spanned AS (
                SELECT f.id, f.routine, f.series_tile, f.series_at, f.campaign_id, true AS fresh FROM fresh f
                UNION ALL
                -- (the span's tasks, the new ones among them: they are told apart by grouping below, by hash;
                -- left out here with a NOT IN, or a NOT EXISTS, the plan compared each task of the span with
                -- every new task once the statistics were those of a table an INSERT rolled back had filled.
                -- In the order of the series' index: no other index of the tasks gives it, sorts are off)
                SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, p.state FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile
                      AND p.series_at BETWEEN g.first_at AND g.last_at ORDER BY p.series_at, p.id OFFSET 0) p
                WHERE p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
            ), series AS (
                SELECT s.id, s.routine, s.series_tile, s.series_at, s.campaign_id, bool_or(s.fresh) AS fresh
                FROM spanned s GROUP BY s.id, s.routine, s.series_tile, s.series_at, s.campaign_id
                UNION ALL
                SELECT e.id, g.routine, g.series_tile, e.series_at, g.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile AND p.series_at < g.first_at
                      AND p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                    ORDER BY p.series_at DESC, p.id DESC LIMIT 1) e
                UNION ALL
                SELECT e.id, g.routine, g.series_tile, e.series_at, g.campaign_id, false
                FROM span g CROSS JOIN LATERAL (
                    SELECT p.id, p.series_at FROM processing_task p
                    WHERE p.routine = g.routine AND p.series_tile = g.series_tile AND p.series_at > g.last_at
                      AND p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                    ORDER BY p.series_at, p.id LIMIT 1) e
            ), link AS (
                SELECT s.id, s.fresh, lag(s.id) OVER (PARTITION BY s.routine, s.series_tile, s.campaign_id
                                                      ORDER BY s.series_at, s.id) AS previous
                FROM series s
            ), locked AS MATERIALIZED (
                -- (the tasks already there whose link changes, locked first in the order of their ids, as
                -- every writer of many tasks locks them: migration 0084)
                SELECT t.id FROM processing_task t JOIN link ON link.id = t.id
                WHERE t.id = ANY (ARRAY(SELECT l.id FROM link l WHERE NOT l.fresh AND l.previous IS NOT NULL))
                  AND NOT link.fresh AND link.previous IS NOT NULL AND t.depends_on IS DISTINCT FROM link.previous
                  AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
                ORDER BY t.id FOR NO KEY UPDATE OF t
            ), linked AS (
                UPDATE processing_task t
                SET depends_on = link.previous,
                    -- (a held one blocked keeps an operator's hold of it, and a blocked one whose wait ends is held
                    -- again if an operator held it, or with its routine, campaign or back-fill, as the other paths
                    -- that block and unblock: migration 0098; the hold was lost, or it was pending under a held routine)
                    state = CASE WHEN p.state IN ('terminated', 'blocked') THEN 'blocked'
                                 WHEN t.state = 'blocked' AND (t.held_while_blocked
                                                               OR hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id,
                                                                                              t.lane) IS NOT NULL)
                                 THEN 'on_hold'
                                 WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                    held_while_blocked = CASE WHEN p.state NOT IN ('terminated', 'blocked') THEN false
                                              WHEN t.state = 'on_hold' THEN hrwsi.hold_is_the_tasks_own(t.state_reason)
                                              ELSE t.held_while_blocked END,
                    worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                    planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                    planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                    state_reason = CASE
                        WHEN p.state = 'terminated' THEN
                            format('its dependency, task %s, ended terminated; `hrwsi retry %s` runs the dependency '
                                   'again, `hrwsi release %s` runs this task without it', p.id, p.id, t.id)
                        WHEN p.state = 'blocked' THEN
                            format('waits for task %s, which has to run before it (`hrwsi task show %s` says what that '
                                   'task waits for): it runs once that task has run', p.id, p.id)
                        WHEN link.fresh OR t.state = 'on_hold' THEN t.state_reason
                        ELSE CASE WHEN t.state <> 'blocked' THEN ''
                                  WHEN t.held_while_blocked THEN hrwsi.held_while_blocked_reason()
                                  ELSE coalesce(hrwsi.hold_a_new_task_takes(t.routine, t.campaign_id, t.lane) || '; ', '')
                             END || format('a scene sensed before it arrived late (task %s): it runs after it',
                                           link.previous) END
                FROM link CROSS JOIN LATERAL (SELECT p.id, p.state FROM processing_task p
                                              WHERE p.id = link.previous OFFSET 0) p
                WHERE t.id = ANY (ARRAY[link.id])
                  AND (link.fresh OR (t.id IN (SELECT l.id FROM locked l) AND t.depends_on IS DISTINCT FROM link.previous
                                      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')))
                RETURNING t.id, t.routine, t.state_reason, p.state AS previous_state
            )
            -- (ops are told of a task blocked by a terminated dependency, as when it ends so)
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', l.id, l.routine), l.state_reason,
                   l.id, l.routine
            FROM linked l WHERE l.previous_state = 'terminated' $q$;
        PERFORM set_config('enable_seqscan', planner_settings[1], true), set_config('enable_sort', planner_settings[2], true),
                set_config('jit', planner_settings[3], true);
        -- An urgent task waits for the tasks before it in its series: those less urgent (a back-fill
        -- of the same tile) are served as urgently as it, down the series to the first that runs or
        -- ran (priority inheritance). Else a near-real-time scene waited for archive tasks served
        -- after every other near-real-time task (found by exploratory testing: 78 s, where the three
        -- archive tasks before it took 24 s; migration 0052). From the new tasks and the tasks now
        -- after them; a statement of its own, so that it follows the links just made. A planned one is
        -- planned again: its plan was made for its old lane, behind the rest of that lane's work, and
        -- the urgent task was planned after it (found by exploratory testing: "40 min late" alerted
        -- at risk for a scene that ended on time; migration 0075). They take its deadline too, when it
        -- has one and theirs is later or none (migration 0081): they must run first for it to run at
        -- all, and without one they were served after every urgent task with a deadline and, among
        -- back-fill aged to priority 0 (promote_aged_tasks), by age: a fresh scene behind 20 aged
        -- archive scenes missed its deadline (found by exploratory testing). So a task already as urgent
        -- (aged) passes the deadline on down the series too. Aged work without a deadline stays behind
        -- work with one (the serving order's deadline_at NULLS LAST). Such a task remembers whose deadline
        -- it took (deadline_inherited_from) and its own (own_deadline_at), and lateness is counted against
        -- its own (migration 0083): the deadline it took serves it early, but it is not a near-real-time
        -- deadline of its own. One late fresh scene raised a deadline_missed alert for each archive task
        -- before it, and `hrwsi timeliness` counted their products late (found by exploratory testing).
        -- (hrwsi.pass_deadlines_down, from the new tasks and the tasks now after them: the same statement passes
        -- on what a cancelled task gave back, migration 0085; the tasks found from the inputs' ids by
        -- hrwsi.series_waiters_of, which reads them by key whatever the statistics)
        PERFORM hrwsi.pass_deadlines_down(hrwsi.series_waiters_of(ARRAY(SELECT n.id FROM new_rows n)));
        -- A new task of a time series whose inputs another routine makes waits for the scenes sensed
        -- before it whose upstream work is still open (migration 0072). A series whose routine has
        -- no routine upstream (a back-fill of harvested inputs) pays nothing more.
        IF upstream THEN
            PERFORM hrwsi.wait_for_upstream(ARRAY(SELECT t.id FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                                                  WHERE t.series_tile IS NOT NULL));
        END IF;
    END IF;
    -- New upstream tasks of a time series: the series' tasks after their scenes wait for them.
    IF feeds THEN
        PERFORM hrwsi.wait_for_upstream_after(ARRAY(
            SELECT t.id FROM processing_task t JOIN new_rows n ON n.id = t.input_id
            JOIN processing_routine r ON r.name = t.routine
            WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL
              AND EXISTS (SELECT 1 FROM processing_routine d
                          WHERE d.input_product_type = r.output_product_type AND d.sequential_per_tile)), true);
    END IF;
    -- A time series and a multi-input group place an input by its tile and sensing time: a data engineer's input
    -- without them is processed, but joins neither, nor do the products chained from it (their inputs inherit
    -- them), and nothing said so: the composite down its chain was never made while `hrwsi groups` said no group
    -- waited (found by exploratory testing; migration 0128). Said once per statement, for the first condition
    -- whose inputs lack them and whose routine is a time series or whose chain reaches a multi-input condition.
    -- (a time series or a multi-input group to miss: an installation without either pays two probes of two small
    -- tables, not the chain's walk, which took 0.12-0.2 ms of every statement of the latency benchmark's plain
    -- INSERTs without a tile: migration 0129)
    IF placeless AND (EXISTS (SELECT 1 FROM processing_routine r WHERE r.sequential_per_tile)
                      OR EXISTS (SELECT 1 FROM multi_input_requirement)) THEN
        SELECT x.condition, x.first_path, x.named, w.series, w.groups INTO unplaced
        FROM (SELECT n.processing_condition AS condition, (array_agg(n.input_path ORDER BY n.id))[1] AS first_path,
                     count(*) AS named, min(n.id) AS first_id
              FROM new_rows n WHERE n.source = 'sql' AND (n.tile IS NULL OR n.measured_at IS NULL)
              GROUP BY 1) x
        CROSS JOIN LATERAL (
            SELECT (SELECT r.name FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
                    WHERE c.name = x.condition AND r.sequential_per_tile) AS series,
                   -- (the product types of the chain from the input on, itself a member when its routine reads a
                   -- type a group requires, as hrwsi.multi_input_members_now takes it)
                   (WITH RECURSIVE made (product_type) AS (
                        SELECT t.product_type FROM processing_condition c JOIN processing_routine r ON r.name = c.routine
                        CROSS JOIN LATERAL (VALUES (r.input_product_type), (r.output_product_type)) t(product_type)
                        WHERE c.name = x.condition
                        UNION
                        SELECT d.output_product_type FROM made JOIN processing_routine d ON d.input_product_type = made.product_type
                        WHERE EXISTS (SELECT 1 FROM processing_condition dc WHERE dc.routine = d.name AND dc.active
                                      AND NOT EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = dc.name))
                    )
                    SELECT string_agg(DISTINCT hrwsi.quoted_name(q.processing_condition), ', ')
                    FROM made JOIN multi_input_requirement q ON q.product_type = made.product_type
                    JOIN processing_condition qc ON qc.name = q.processing_condition AND qc.active) AS groups
        ) w
        WHERE w.series IS NOT NULL OR w.groups IS NOT NULL
        ORDER BY x.first_id LIMIT 1;
        IF FOUND THEN
            RAISE WARNING '% input(s) of condition % have no tile or no sensing time (measured_at): they are processed, '
                          'but %', unplaced.named, hrwsi.quoted_name(unplaced.condition),
                          concat_ws(', and ',
                                    CASE WHEN unplaced.series IS NOT NULL THEN format(
                                        'join no time series of routine %s (sequential_per_tile)',
                                        hrwsi.quoted_name(unplaced.series)) END,
                                    CASE WHEN unplaced.groups IS NOT NULL THEN format(
                                        'neither they nor the products chained from them join a group of the '
                                        'multi-input condition(s) %s, whose composites are never made of them',
                                        unplaced.groups) END)
                USING DETAIL = format('The first such row has input_path %s.', unplaced.first_path),
                      HINT = 'give tile and measured_at; SELECT hrwsi.correct_input(ID, tile => ..., measured_at => ...) '
                             'corrects an input inserted without them';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER input_create_tasks AFTER INSERT ON hrwsi.input
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.create_tasks_for_new_inputs();

-- =============================================================================================
-- A time series of a chained step runs in sensing order (migration 0072). A time-series task reads
-- the products of the task of the scene sensed just before it; when its inputs are the products of
-- an upstream routine (L1C -> L2A -> time series), a scene whose upstream work ended first made its
-- task first: a later scene's ran as the series' first, reading nothing, and the earlier scene's
-- came after it (found by exploratory testing). A time-series task now waits (waits_for_upstream)
-- while a scene of its tile sensed before it, after the task it depends on, has an open task of an
-- upstream routine in its scope, or a processed one whose products are not chained yet: chaining
-- then makes that scene's task, which takes its place before it (hrwsi.create_tasks_for_new_inputs).
--
-- Decided where the work changes, never in dispatch or the plan (they read the column): when a
-- time-series task is created or retried, and when an upstream task is created, ends, is retried or
-- has its products chained. Each of these takes the series' lock (the one two INSERTs of a series
-- take: 7250010, routine/tile) before it reads or after it writes, so that what one wrote the other
-- reads: a task created while the upstream task ended sees it ended, or is seen waiting by the end's
-- own look.
-- =============================================================================================

-- The first open upstream work (by sensing time) of time-series routine p_routine on tile p_tile,
-- in scope p_campaign (NULL: production), sensed in [p_from, p_before): p_from is the sensing time
-- of the task the series task depends on (NULL: none), since the scenes before that one come before
-- that task, not between the two. Through input_condition_tile_measured_idx (one range per upstream
-- condition), the tasks' (input_id, campaign_id) key and product_task_idx.
CREATE FUNCTION hrwsi.open_upstream_work(p_routine text, p_tile text, p_campaign bigint, p_from timestamptz,
                                         p_before timestamptz)
RETURNS TABLE (task_id bigint, input_id bigint, routine text, state text)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT u.id, i.id, u.routine, u.state
    FROM processing_routine r
    JOIN processing_routine up ON up.output_product_type = r.input_product_type
    JOIN processing_condition c ON c.routine = up.name
    JOIN input i ON i.processing_condition = c.name AND i.tile = p_tile
     AND i.measured_at >= coalesce(p_from, '-infinity') AND i.measured_at < p_before
    JOIN processing_task u ON u.input_id = i.id AND u.campaign_id IS NOT DISTINCT FROM p_campaign
    WHERE r.name = p_routine
      AND (u.state NOT IN ('processed', 'terminated', 'cancelled')
           OR (u.state = 'processed' AND EXISTS (SELECT 1 FROM product p WHERE p.task_id = u.id AND p.chained_at IS NULL)))
    ORDER BY i.measured_at, u.id
    LIMIT 1
$$;

-- Decide again what the given time-series tasks wait for, those that have not started (pending,
-- planned, held or blocked) and were not released by an operator: the first open upstream work
-- before them, or nothing. A planned task that waits goes back to pending; a pending one says why in
-- its reason and its history (a held or blocked one keeps its own reason); one that waits no more
-- says what it waited for, and the orchestrator and the launchers are woken (hrwsi_task pending, or
-- planned: a planned task released is dispatched on its plan). The caller holds the series' locks.
-- Returns how many wait no more.
CREATE FUNCTION hrwsi.wait_for_upstream(p_tasks bigint[]) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    released integer;
    released_pending integer;
    released_planned integer;
BEGIN
    WITH target AS (
        SELECT t.id, t.state, w.task_id AS wait,
               format('waits for the scene sensed before it, input %s, whose %s task %s %s: it runs after that '
                      'scene''s own task in its series', w.input_id, w.routine, w.task_id,
                      -- (an open one's state not said: it outgrew it, and the reason stayed; migration 0095)
                      CASE w.state WHEN 'processed' THEN 'is processed but its products are not chained yet'
                           ELSE format('has not ended yet (`hrwsi task show %s` says where it is)', w.task_id) END)
                   AS wait_reason
        FROM processing_task t
        LEFT JOIN processing_task p ON p.id = t.depends_on
        LEFT JOIN LATERAL hrwsi.open_upstream_work(t.routine, t.series_tile, t.campaign_id, p.series_at,
                                                   t.series_at) w ON true
        WHERE t.id = ANY (p_tasks) AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), locked AS MATERIALIZED (
        -- (in the order of their ids, as every writer of many tasks locks them: migration 0084)
        SELECT t.id FROM processing_task t JOIN target x ON x.id = t.id
        WHERE (t.waits_for_upstream IS DISTINCT FROM x.wait
               OR (x.wait IS NOT NULL AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM x.wait_reason))
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked') AND NOT t.dependency_waived
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), changed AS (
        UPDATE processing_task t
        SET waits_for_upstream = x.wait,
            state = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN x.wait IS NOT NULL AND t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE
                WHEN t.state IN ('on_hold', 'blocked') THEN t.state_reason
                WHEN x.wait IS NOT NULL THEN x.wait_reason
                ELSE (SELECT format('no longer waits for the scene sensed before it, input %s: its %s task %s %s',
                                    o.input_id, o.routine, o.id,
                                    CASE WHEN o.state = 'processed' THEN 'was processed and its products chained'
                                         WHEN o.state IN ('terminated', 'cancelled')
                                         THEN 'ended ' || o.state || ': it runs without that scene'
                                         ELSE 'is ' || o.state END)
                      FROM processing_task o WHERE o.id = t.waits_for_upstream)
            END
        FROM target x
        -- (and a pending one that waits for the same task, whose state its reason told, says the new one)
        WHERE t.id = x.id AND (t.waits_for_upstream IS DISTINCT FROM x.wait
                               OR (x.wait IS NOT NULL AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM x.wait_reason))
          -- (the row as it is when this UPDATE locks it: a dispatch that claimed it meanwhile, or an
          -- operator's release, left it dispatched, or waived, with a wait and a "waits for" reason;
          -- found by review)
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked') AND NOT t.dependency_waived
          AND t.id IN (SELECT l.id FROM locked l)
        RETURNING t.id, t.state, t.state_reason, t.attempts, t.worker, x.state AS old_state, x.wait
    ), history AS (
        -- (what it waits for, or waited for, in its history; a change of state writes its own row)
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT c.id, c.state, c.state_reason, c.attempts, c.worker FROM changed c
        WHERE c.state = c.old_state AND c.state = 'pending'
    )
    SELECT count(*) FILTER (WHERE c.wait IS NULL), count(*) FILTER (WHERE c.wait IS NULL AND c.state = 'pending'),
           count(*) FILTER (WHERE c.wait IS NULL AND c.state = 'planned')
    INTO released, released_pending, released_planned FROM changed c;
    -- (a planned task released runs on its plan: the launchers are told too; found by review)
    IF released_pending + released_planned > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts', json_strip_nulls(json_build_object(
            'pending', nullif(released_pending, 0), 'planned', nullif(released_planned, 0))))::text);
    END IF;
    RETURN released;
END $$;

-- The keys of the time series' locks (hrwsi.series_lock_key) that upstream tasks concern, in order: the
-- series downstream of their scenes' tiles, and those of the tasks that wait for them (whatever the
-- routines read now). Taken by hrwsi.wait_for_upstream_after, and first of all by hrwsi.retry_task,
-- before the task's row (migration 0084).
CREATE FUNCTION hrwsi.series_lock_keys_downstream_of(p_upstream bigint[]) RETURNS integer[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT coalesce(array_agg(k.key ORDER BY k.key), '{}')
    FROM (SELECT hrwsi.series_lock_key(d.name, i.tile) AS key
          FROM processing_task u JOIN input i ON i.id = u.input_id
          JOIN processing_routine r ON r.name = u.routine
          JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
          WHERE u.id = ANY (p_upstream) AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
          UNION
          SELECT hrwsi.series_lock_key(t.routine, t.series_tile) FROM processing_task t
          WHERE t.waits_for_upstream = ANY (p_upstream)) k
$$;

-- The keys of the series' locks a retry of the task takes (hrwsi.retry_task), in order: its own series'
-- (a task of a routine that is a time series, with a tile) and those of the series it feeds.
CREATE FUNCTION hrwsi.retry_series_lock_keys(task bigint) RETURNS integer[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi AS $$
    SELECT ARRAY(SELECT DISTINCT k FROM unnest(hrwsi.series_lock_keys_downstream_of(ARRAY[task])
                                               || (SELECT hrwsi.series_lock_key(t.routine, t.series_tile)
                                                   FROM processing_task t
                                                   JOIN processing_routine r ON r.name = t.routine AND r.sequential_per_tile
                                                   WHERE t.id = task AND t.series_tile IS NOT NULL)) k
                 WHERE k IS NOT NULL ORDER BY k)
$$;

-- After upstream tasks were created, ended, retried or had their products chained: the time-series
-- tasks concerned decide again what they wait for, under their series' locks (taken in order). Those
-- are the tasks that waited for one of them and, per downstream series, the first task after its
-- scene (a task after that one waits for it through its dependency; a started one keeps what it ran
-- with).
-- p_may_add_waits: the upstream tasks were created or retried, so tasks may wait from now on: the
-- locks are waited for. Otherwise they ended or their products were chained, which only releases
-- waits: a series whose lock another transaction holds is skipped, not waited for (its tasks keep
-- waiting, safely, until hrwsi.recheck_upstream_waits, the orchestrator's sweep, decides them). The
-- launcher's outcome writer waited here, up to its lock timeout, for any transaction holding one (a
-- data engineer's INSERT of upstream inputs not committed), then failed, and dispatch paused with it
-- (found by review). A lock this transaction holds already is granted again.
CREATE FUNCTION hrwsi.wait_for_upstream_after(p_upstream bigint[], p_may_add_waits boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on
SET enable_hashjoin = on SET enable_mergejoin = on AS $$
DECLARE
    key integer;
    skipped integer[] := '{}';  -- the series' lock keys that were busy (hrwsi.series_lock_key)
BEGIN
    FOREACH key IN ARRAY hrwsi.series_lock_keys_downstream_of(p_upstream) LOOP
        IF p_may_add_waits THEN
            PERFORM pg_advisory_xact_lock(7250010, key);
        ELSIF NOT pg_try_advisory_xact_lock(7250010, key) THEN
            skipped := skipped || key;
        END IF;
    END LOOP;
    PERFORM hrwsi.wait_for_upstream(ARRAY(
        SELECT t.id FROM processing_task t
        WHERE t.waits_for_upstream = ANY (p_upstream) AND hrwsi.series_lock_key(t.routine, t.series_tile) <> ALL (skipped)
        UNION
        SELECT n.id
        FROM processing_task u JOIN input i ON i.id = u.input_id
        JOIN processing_routine r ON r.name = u.routine
        JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
        CROSS JOIN LATERAL (
            SELECT t.id FROM processing_task t
            WHERE t.routine = d.name AND t.series_tile = i.tile AND t.series_at > i.measured_at
              AND t.campaign_id IS NOT DISTINCT FROM u.campaign_id AND t.state <> 'cancelled'
            ORDER BY t.series_at, t.id LIMIT 1) n
        WHERE u.id = ANY (p_upstream) AND hrwsi.series_lock_key(d.name, i.tile) <> ALL (skipped)));
END $$;

-- Products chained (the harvester's chain_products): the time-series tasks that waited for their
-- tasks decide again, in the chaining's own statement, so that the task of the scene they waited
-- for is linked before them (by the input trigger) before either can be dispatched.
CREATE FUNCTION hrwsi.after_products_chained() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    upstream bigint[];
BEGIN
    SELECT array_agg(DISTINCT n.task_id) INTO upstream
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.chained_at IS NOT NULL AND o.chained_at IS NULL AND n.task_id IS NOT NULL
      AND n.product_type IN (SELECT r.input_product_type FROM processing_routine r WHERE r.sequential_per_tile);
    IF upstream IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(upstream, false);  -- (only releases: no lock waited for)
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER product_chained AFTER UPDATE ON hrwsi.product
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_products_chained();

-- The orchestrator's sweep (its periodic step with lane ageing): the time-series tasks, not started,
-- that wait for an upstream task that is over (ended, or processed with its products chained) decide
-- again, under their series' locks, those it gets (try-locks: it never waits). A wait was never
-- cleared when the upstream task's routine no longer fed the series as it ended (`hrwsi move-tasks`
-- to a routine that writes another type, a routine's types changed) or when its end skipped a series
-- whose lock was busy (hrwsi.wait_for_upstream_after; found by review). Bounded (p_limit tasks a
-- call, through the partial index of the waits: one probe when nothing waits). Returns how many wait
-- no more.
CREATE FUNCTION hrwsi.recheck_upstream_waits(p_limit integer DEFAULT 1000) RETURNS integer LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = on SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    series record;
    tasks bigint[] := '{}';
    cancelled bigint[];
BEGIN
    -- (migration 0090) The task after a task of its time series cancelled while the series' lock was busy (a
    -- cancel by plain SQL, or a campaign's, beside an INSERT into that series) was blocked behind it, and the
    -- tasks after it with it, until an operator retried it: the series' next INSERT relinked it only if that
    -- scene came before it (found by review). It takes the task before the cancelled one here, as the cancel
    -- would have (hrwsi.skip_cancelled_tasks, which tries each series' lock: one still busy waits for the next
    -- sweep). The blocked tasks read through the index of states, each dependency by key.
    cancelled := ARRAY(SELECT DISTINCT c.id FROM processing_task t JOIN processing_task c ON c.id = t.depends_on
                       WHERE t.state = 'blocked' AND t.series_tile IS NOT NULL AND NOT t.dependency_waived
                         AND c.state = 'cancelled' AND c.routine = t.routine AND c.series_tile = t.series_tile
                         AND c.campaign_id IS NOT DISTINCT FROM t.campaign_id
                       LIMIT p_limit);
    IF cardinality(cancelled) > 0 THEN
        PERFORM hrwsi.skip_cancelled_tasks(cancelled);
    END IF;
    FOR series IN
        SELECT hrwsi.series_lock_key(w.routine, w.series_tile) AS key, array_agg(w.id) AS ids
        FROM (SELECT t.id, t.routine, t.series_tile
              FROM processing_task t JOIN processing_task u ON u.id = t.waits_for_upstream
              WHERE t.waits_for_upstream IS NOT NULL AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
                AND NOT t.dependency_waived AND hrwsi.task_state_is_final(u.state)
                AND NOT (u.state = 'processed'
                         AND EXISTS (SELECT 1 FROM product p WHERE p.task_id = u.id AND p.chained_at IS NULL))
              ORDER BY t.waits_for_upstream, t.id LIMIT p_limit) w
        GROUP BY 1 ORDER BY 1
    LOOP
        IF pg_try_advisory_xact_lock(7250010, series.key) THEN
            tasks := tasks || series.ids;
        END IF;
    END LOOP;
    IF cardinality(tasks) = 0 THEN
        RETURN 0;
    END IF;
    RETURN hrwsi.wait_for_upstream(tasks);
END $$;

-- A task names its routine and its lane without a foreign key (migration 0022): the key probed and
-- locked the routine and the lane for every task created, about a fifth of inserting a burst.
-- Tasks are made only by hrwsi.create_tasks_for_new_inputs and hrwsi.reprocess (no role but the
-- owner inserts them), by joining the routine and the lane, which they lock (the first once per
-- statement, the second through the campaign's keys); and what the keys refused is refused here:
-- removing or renaming a routine or a lane that tasks name. Likewise a worker that tasks name
-- (migration 0036; hrwsi.after_task_changes checks the worker a task is put on).
CREATE FUNCTION hrwsi.refuse_removing_what_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    what text := CASE TG_TABLE_NAME WHEN 'lane' THEN 'lane' WHEN 'processing_condition' THEN 'condition'
                                    WHEN 'worker' THEN 'worker' ELSE 'routine' END;
    named bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name = OLD.name THEN
        RETURN NULL;
    END IF;
    -- After the row's lock was taken: tasks (inputs) of a transaction that held it are committed
    -- and seen. A stricter isolation would not see them (its snapshot is older): refused there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a % is removed or renamed only in a READ COMMITTED transaction (the default)', what
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('under a stricter isolation the check for its %s cannot see %s created meanwhile',
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END,
                                CASE what WHEN 'condition' THEN 'inputs' ELSE 'tasks' END);
    END IF;
    IF what = 'condition' THEN
        SELECT count(*) INTO named FROM input i WHERE i.processing_condition = OLD.name;
        IF named > 0 THEN
            RAISE EXCEPTION 'condition % cannot be % while % input(s) name it', OLD.name,
                CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                      HINT = 'inputs are the record of what came in: to stop a condition, set it inactive (`active = false`)';
        END IF;
        RETURN NULL;
    END IF;
    IF what = 'lane' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.lane = OLD.name;
    ELSIF what = 'worker' THEN
        SELECT count(*) INTO named FROM processing_task t WHERE t.worker = OLD.name;
    ELSE
        SELECT count(*) INTO named FROM processing_task t WHERE t.routine = OLD.name;
    END IF;
    IF named > 0 THEN
        RAISE EXCEPTION '% % cannot be % while % task(s) name it', what, OLD.name,
            CASE TG_OP WHEN 'DELETE' THEN 'removed' ELSE 'renamed' END, named
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = CASE what WHEN 'lane' THEN 'task_lane_must_exist' WHEN 'worker' THEN 'task_worker_must_exist'
                                         ELSE 'task_routine_must_exist' END,
                  HINT = CASE what WHEN 'worker' THEN 'tasks are the record of what ran: to stop using a worker, set it inactive (`active = false`)'
                              ELSE 'tasks are the record of what ran: to stop a routine, `hrwsi hold <routine>`' END;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();
CREATE TRIGGER lane_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.lane
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();
CREATE TRIGGER processing_condition_named_by_inputs AFTER DELETE OR UPDATE OF name ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();
CREATE TRIGGER worker_named_by_tasks AFTER DELETE OR UPDATE OF name ON hrwsi.worker
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_removing_what_tasks_name();

-- A job names its task without a foreign key (migration 0028): the key ran a query and wrote a lock
-- into the task's row for every job inserted, although the claim inserts each job right after
-- updating its task in the same statement (whose lock holds it already). Checked once per
-- statement instead, with the key's name and message (hrwsi.after_jobs_inserted, below): the
-- tasks a statement's jobs name are locked as the key locked them, except those this transaction
-- changed already (their own lock, the claim's, holds them), then each must exist. An UPDATE
-- naming another task is checked here, per row.
CREATE FUNCTION hrwsi.refuse_a_job_of_a_missing_task() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through its key, never by reading the table whole, however small it was when planned)
SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM processing_task t WHERE t.id = NEW.task_id FOR KEY SHARE) THEN
        RAISE EXCEPTION 'insert or update on table "job" violates foreign key constraint "job_task_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  DETAIL = format('Key (task_id)=(%s) is not present in table "processing_task".', NEW.task_id);
    END IF;
    RETURN NEW;
END $$;
-- After jobs are inserted, once per statement: the check of the tasks they name, and the wake-up
-- call on hrwsi_job (its payload as hrwsi.notify_state_counts'), in one call of PL/pgSQL (migration
-- 0037): a dispatch call's claim paid two triggers (this check was the statement branch of
-- hrwsi.refuse_a_job_of_a_missing_task), each with its transition table set up, and a statement more.
-- Left out for hrwsi.dispatch's claim (migration 0040, as hrwsi.after_task_changes): its jobs name
-- the tasks that statement claimed, and it sends the wake-up call itself.
CREATE FUNCTION hrwsi.after_jobs_inserted() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through its key, never by reading the table whole, however small it was when planned)
SET enable_seqscan = off SET jit = off AS $$
DECLARE
    missing bigint;
    counts json;
    progress json;
BEGIN
    IF current_setting('hrwsi.in_dispatch_claim', true) = 'on' THEN
        RETURN NULL;  -- hrwsi.dispatch's claim: its jobs name the tasks it has just claimed; it notifies itself
    END IF;
    -- Each task read through its key, once per job (a sub-select per row, never a join, and no
    -- sequential scan): the plans are made once per session and kept, and a join planned while the
    -- task table was small read the whole table in every later statement (migration 0030).
    PERFORM (SELECT 1 FROM processing_task t
             WHERE t.id = n.task_id AND t.xmin <> pg_current_xact_id()::xid FOR KEY SHARE OF t)
    FROM new_rows n;
    SELECT (SELECT n.task_id FROM new_rows n
            WHERE (SELECT t.id FROM processing_task t WHERE t.id = n.task_id) IS NULL
            LIMIT 1),
           json_object_agg(c.state, c.n) FILTER (WHERE NOT hrwsi.state_is_under_way(c.state)),
           json_object_agg(c.state, c.n) FILTER (WHERE hrwsi.state_is_under_way(c.state))
    INTO missing, counts, progress
    FROM (SELECT r.state, count(*) AS n FROM new_rows r GROUP BY r.state) c;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "job" violates foreign key constraint "job_task_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_task_must_exist',
                  DETAIL = format('Key (task_id)=(%s) is not present in table "processing_task".', missing);
    END IF;
    -- A wake-up call (docs/adr/0001), sent at commit: {"op": "insert", "counts": {"submitted": 3}}, on
    -- hrwsi_job_progress for jobs under way (a job is inserted submitted), on hrwsi_job otherwise.
    IF counts IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_job', json_build_object('op', 'insert', 'counts', counts)::text);
    END IF;
    IF progress IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_job_progress', json_build_object('op', 'insert', 'counts', progress)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER job_inserted AFTER INSERT ON hrwsi.job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.after_jobs_inserted();
CREATE TRIGGER job_names_a_task_that_exists_updated BEFORE UPDATE OF task_id ON hrwsi.job
    FOR EACH ROW WHEN (NEW.task_id IS DISTINCT FROM OLD.task_id)
    EXECUTE FUNCTION hrwsi.refuse_a_job_of_a_missing_task();

-- What the job's key refused is refused here (migration 0028): removing a task that jobs name
-- (retention removes a task after its attempts), or giving it a new id; once per statement, after
-- the rows' locks (under a stricter isolation than READ COMMITTED the check could not see jobs
-- inserted meanwhile: removing a task is refused there).
CREATE FUNCTION hrwsi.refuse_removing_tasks_jobs_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through the job's key to its task, never by reading the table whole, however small it was
-- when planned)
SET enable_seqscan = off SET jit = off AS $$
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
CREATE TRIGGER processing_task_named_by_jobs_removed AFTER DELETE ON hrwsi.processing_task
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_removing_tasks_jobs_name();
CREATE TRIGGER processing_task_named_by_jobs_renumbered AFTER UPDATE OF id ON hrwsi.processing_task
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION hrwsi.refuse_removing_tasks_jobs_name();

-- An input's condition changed by hand must still name one that exists, as the key required
-- (migration 0027); locked until the transaction ends, as a key locks it. hrwsi never changes it,
-- so this runs only for such an UPDATE (its WHEN condition).
CREATE FUNCTION hrwsi.refuse_an_input_naming_what_does_not_exist() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = NEW.processing_condition FOR KEY SHARE) THEN
        PERFORM hrwsi.refuse_an_input_of_a_missing_condition(NEW.processing_condition, NULL, NULL);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER input_names_a_condition_that_exists BEFORE UPDATE OF processing_condition ON hrwsi.input
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition)
    EXECUTE FUNCTION hrwsi.refuse_an_input_naming_what_does_not_exist();

-- What a task was made from stays what its input says (migration 0079): an input's condition, path,
-- tile, times or lane rewritten after its task existed left the task in its old time series and
-- place (linked by the old tile and time), with its old deadline, and its products named the old
-- path (found by exploratory testing). A correction is a new input; the old task is cancelled.
-- Only for an UPDATE that changes one of them (its WHEN condition); hrwsi itself never does. (Named
-- to fire after the check that the condition exists, which says the more basic thing.)
CREATE FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    task record;
    changed text[];
BEGIN
    SELECT t.id, t.routine, t.state, t.campaign_id, (SELECT count(*) FROM processing_task x WHERE x.input_id = OLD.id) AS n
        INTO task
    FROM processing_task t WHERE t.input_id = OLD.id ORDER BY t.id LIMIT 1;
    IF task.id IS NULL THEN
        RETURN NEW;  -- (no task yet: nothing was made from it)
    END IF;
    changed := array_remove(ARRAY[
        CASE WHEN NEW.processing_condition IS DISTINCT FROM OLD.processing_condition THEN 'processing_condition' END,
        CASE WHEN NEW.input_path IS DISTINCT FROM OLD.input_path THEN 'input_path' END,
        CASE WHEN NEW.tile IS DISTINCT FROM OLD.tile THEN 'tile' END,
        CASE WHEN NEW.measured_at IS DISTINCT FROM OLD.measured_at THEN 'measured_at' END,
        CASE WHEN NEW.published_at IS DISTINCT FROM OLD.published_at THEN 'published_at' END,
        CASE WHEN NEW.lane IS DISTINCT FROM OLD.lane THEN 'lane' END], NULL);
    RAISE EXCEPTION 'input % (%) cannot change its %: task % (routine %, %) was made from it%',
            OLD.id, OLD.input_path, array_to_string(changed, ', '), task.id, task.routine, task.state,
            CASE WHEN task.n > 1 THEN format(', and %s other task(s)', task.n - 1) ELSE '' END
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'input_is_not_changed_once_a_task_is_made_from_it',
              DETAIL = 'A task keeps what its input was when it was made: its time series and place in it, its '
                       'deadline, the path its job reads and its products name.',
              HINT = format('correct it with SELECT hrwsi.correct_input(%s, tile => ..., measured_at => ..., '
                            'published_at => ..., lane => ..., input_path => ...): it cancels the task(s) made from it '
                            'and inserts the corrected input, under the same path or another (migration 0083); for '
                            'another condition, insert the input there and cancel the task: `hrwsi cancel %s`. A '
                            'mission or scene_id may still be corrected.', OLD.id, task.id);
END $$;
CREATE TRIGGER input_what_a_task_was_made_from_stays
    BEFORE UPDATE OF processing_condition, input_path, tile, measured_at, published_at, lane ON hrwsi.input
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition
                       OR NEW.input_path IS DISTINCT FROM OLD.input_path OR NEW.tile IS DISTINCT FROM OLD.tile
                       OR NEW.measured_at IS DISTINCT FROM OLD.measured_at
                       OR NEW.published_at IS DISTINCT FROM OLD.published_at OR NEW.lane IS DISTINCT FROM OLD.lane)
    EXECUTE FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from();

-- A task names its input without a foreign key (migration 0026): the key probed and locked the
-- input for every task created, about a seventh of inserting a burst. Tasks are made only by
-- hrwsi.create_tasks_for_new_inputs, for the inputs its statement inserted, and by hrwsi.reprocess,
-- which locks the inputs it reprocesses; what the key refused is refused here: removing an input
-- that tasks name (retention removes an input after its tasks), or changing its id.
CREATE FUNCTION hrwsi.refuse_removing_inputs_tasks_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
-- (and through the task's key to its input, never by reading the table whole, however small it
-- was when planned)
SET enable_seqscan = off SET jit = off AS $$
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
CREATE TRIGGER input_named_by_tasks_removed AFTER DELETE ON hrwsi.input
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_removing_inputs_tasks_name();
CREATE TRIGGER input_named_by_tasks_renumbered AFTER UPDATE OF id ON hrwsi.input
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION hrwsi.refuse_removing_inputs_tasks_name();

-- An input names the product it was chained from (product_id) without a foreign key, as a task
-- names its input: a product removed by hand (DELETE) left its inputs naming a product that no
-- longer exists, and the lineage of everything made from it ended there, silently (found by
-- exploratory testing). Retention never removes such a product (hrwsi.prune_products): refused here.
CREATE FUNCTION hrwsi.refuse_removing_products_inputs_name() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi
SET enable_seqscan = off SET jit = off AS $$
DECLARE
    named_product bigint;
    named bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    -- After the rows' locks were taken: inputs of a transaction that held one (chain_missed_products locks
    -- the products it chains) are committed and seen. A stricter isolation would not see them (its snapshot
    -- is older): refused there, as removing an input is (migration 0078).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a product is removed only in a READ COMMITTED transaction (the default)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'under a stricter isolation the check for the inputs made from it cannot see inputs made meanwhile';
    END IF;
    -- One probe per removed product (input_product_id_idx), as for inputs.
    SELECT o.id, (SELECT count(*) FROM input i WHERE i.product_id = o.id) INTO named_product, named
    FROM old_rows o
    WHERE (SELECT i.id FROM input i WHERE i.product_id = o.id LIMIT 1) IS NOT NULL
    ORDER BY o.id LIMIT 1;
    IF named_product IS NOT NULL THEN
        -- (no constraint named: an input names its product without one; it named one that does not exist)
        RAISE EXCEPTION 'product % cannot be removed while % input(s) were made from it', named_product, named
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'products are the lineage of what was made from them: retention (`hrwsi prune`) removes a '
                         'product once nothing made from it is kept';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER product_named_by_inputs_removed AFTER DELETE ON hrwsi.product
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hrwsi.refuse_removing_products_inputs_name();

-- A task's input, routine or lane changed by hand must still name one that exists, as the keys
-- required (migrations 0025, 0026); locked until the transaction ends, as a key locks it. hrwsi
-- never changes them, so this runs only for such an UPDATE (its WHEN condition).
CREATE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NEW.input_id IS DISTINCT FROM OLD.input_id
       AND NOT EXISTS (SELECT 1 FROM input i WHERE i.id = NEW.input_id FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no input %', NEW.id, NEW.input_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_input_must_exist';
    END IF;
    IF NEW.routine IS DISTINCT FROM OLD.routine
       AND NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = NEW.routine FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no routine %', NEW.id, NEW.routine
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_routine_must_exist';
    END IF;
    IF NEW.lane IS DISTINCT FROM OLD.lane
       AND NOT EXISTS (SELECT 1 FROM lane l WHERE l.name = NEW.lane FOR KEY SHARE) THEN
        RAISE EXCEPTION 'task %: there is no lane %', NEW.id, NEW.lane
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'task_lane_must_exist';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER processing_task_names_what_exists BEFORE UPDATE OF input_id, routine, lane ON hrwsi.processing_task
    FOR EACH ROW WHEN (NEW.input_id IS DISTINCT FROM OLD.input_id OR NEW.routine IS DISTINCT FROM OLD.routine
                       OR NEW.lane IS DISTINCT FROM OLD.lane)
    EXECUTE FUNCTION hrwsi.refuse_a_task_naming_what_does_not_exist();

-- Ageing: archive work waiting longer than its lane's promote_after is served as nrt. A planned
-- task is planned again: its plan was made behind the rest of its lane, and kept, it was fixed
-- there when the near-real-time work was planned, which then planned fresh scenes after it and
-- alerted them at risk (found by exploratory testing; migration 0075).
CREATE FUNCTION hrwsi.promote_aged_tasks() RETURNS integer LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    -- (locked first, in the order of their ids, as every writer of many tasks locks them: in the table's
    -- order this deadlocked with an INSERT that made such tasks urgent behind a fresh scene; migration 0084)
    WITH locked AS MATERIALIZED (
        SELECT t.id FROM processing_task t JOIN lane l ON l.name = t.lane
        WHERE l.promote_after IS NOT NULL AND t.priority > 0
          AND t.state IN ('pending', 'planned') AND t.created_at < now() - l.promote_after
        ORDER BY t.id FOR NO KEY UPDATE OF t
    ), promoted AS (
        UPDATE processing_task t
        SET priority = 0,
            state = 'pending',
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN t.state = 'planned'
                                THEN format('waited longer than lane %s allows (%s): served as near-real-time, '
                                            'planned again', l.name, hrwsi.duration_text(l.promote_after))
                                ELSE t.state_reason END
        FROM lane l
        WHERE l.name = t.lane AND t.id IN (SELECT k.id FROM locked k) AND l.promote_after IS NOT NULL AND t.priority > 0
          AND t.state IN ('pending', 'planned') AND t.created_at < now() - l.promote_after
        RETURNING t.id
    )
    SELECT count(*)::integer FROM promoted
$$;

-- =============================================================================================
-- Leases and fencing.
-- =============================================================================================

-- True while `instance` holds a lease fresher than `lease_s` seconds.
-- A launcher of a backend whose jobs must all be in one place (Nomad: one namespace) takes
-- that place for the installation at start, or is refused while jobs or launchers are in another:
-- a launcher started without NOMAD_NAMESPACE put its jobs in `default` while the others' were in
-- the installation's namespace; when it stopped, another launcher adopted its jobs, found none of
-- them, recorded them lost and ran them again beside the first runs (found by exploratory testing,
-- 2026-12-06; migration 0070). With no job active there and no launcher there, the installation
-- moves (the message says so); NULL: nothing to say.
CREATE FUNCTION hrwsi.take_backend_scope(backend text, scope text, lease_s double precision) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    recorded text;
    active bigint;
    launchers text;
BEGIN
    SELECT i.backend_scope INTO recorded FROM installation i WHERE i.id FOR UPDATE;
    IF recorded IS NOT DISTINCT FROM take_backend_scope.scope THEN
        RETURN NULL;
    END IF;
    IF recorded IS NOT NULL THEN
        SELECT count(*) INTO active FROM job j
        WHERE j.backend = take_backend_scope.backend AND j.state IN ('submitted', 'queued', 'running');
        SELECT string_agg(s.id, ', ' ORDER BY s.id) INTO launchers FROM service_instance s
        WHERE s.kind = 'launcher' AND s.site = recorded
          AND s.heartbeat_at > now() - make_interval(secs => take_backend_scope.lease_s);
        IF active > 0 OR launchers IS NOT NULL THEN
            RAISE EXCEPTION 'this installation''s % jobs are in %, and this launcher would put its own in %: '
                            'neither would find the other''s jobs, and attempts would run twice (% active job(s)%)',
                            take_backend_scope.backend, recorded, take_backend_scope.scope, active,
                            CASE WHEN launchers IS NULL THEN '' ELSE '; launcher(s) there: ' || launchers END
                USING ERRCODE = 'check_violation', CONSTRAINT = 'installation_jobs_are_in_one_place',
                      HINT = 'set NOMAD_NAMESPACE as the other launchers have it; to move the '
                             'installation, stop its launchers and let its active jobs end first';
        END IF;
    END IF;
    UPDATE installation i SET backend_scope = take_backend_scope.scope WHERE i.id;
    RETURN CASE WHEN recorded IS NOT NULL THEN
        format('this installation''s %s jobs move from %s to %s: none was active there, and no launcher',
               take_backend_scope.backend, recorded, take_backend_scope.scope) END;
END $$;

CREATE FUNCTION hrwsi.lease_is_fresh(instance text, lease_s double precision) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi AS $$
    SELECT EXISTS (SELECT 1 FROM service_instance
                   WHERE id = instance AND heartbeat_at > now() - make_interval(secs => lease_s))
$$;

-- Raise the fencing error when `instance` no longer holds its lease: a paused ("zombie") process
-- that resumes must not start, record or stop work that others have taken over meanwhile.
CREATE FUNCTION hrwsi.require_lease(instance text, lease_s double precision) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF NOT hrwsi.lease_is_fresh(instance, lease_s) THEN
        RAISE EXCEPTION 'service instance % has no fresh lease (older than % s): it must re-register before acting',
            instance, lease_s
            USING ERRCODE = 'HW001', HINT = 'another replica may have taken over its work while it was paused';
    END IF;
END $$;

-- =============================================================================================
-- What a backend needs to run (or adopt) each job, including the manifest a routine reads: its
-- input, the members of a multi-input task, and the previous product of a time series.
-- =============================================================================================
-- The program a task runs: its routine's command and image or, for the routine a campaign
-- reprocesses, the campaign's version of them. Every job records it (job.routine_version).
-- Its routine and campaign are each a probe of their key, in a sub-query of its own (OFFSET 0;
-- migration 0038), so that a task's program read by the task's key reads that task only: joined
-- with the routines, the tasks could be read in the order of their routines, and a plan made while
-- the table held a task or two read them all for each task (hrwsi.dispatch keeps its plans).
CREATE VIEW hrwsi.task_program AS
SELECT t.id AS task_id, coalesce(k.command, r.command) AS command, coalesce(k.image, r.image) AS image,
       concat_ws(' ', coalesce(k.image, r.image), array_to_string(coalesce(k.command, r.command), ' '))
           AS routine_version
FROM hrwsi.processing_task t
CROSS JOIN LATERAL (SELECT r.command, r.image FROM hrwsi.processing_routine r WHERE r.name = t.routine OFFSET 0) r
LEFT JOIN LATERAL (SELECT k.command, k.image FROM hrwsi.campaign k
                   WHERE k.id = t.campaign_id AND k.routine = t.routine OFFSET 0) k ON true;

-- The manifest is built as json, not jsonb (migration 0024): jsonb parses and orders what it
-- builds, a third of the view's time in a batch of 2,000; the launcher writes it out parsed and
-- sorted anyway. Each row a job names (its task, input, program, members, previous products) is
-- read through its key in a sub-query of its own (OFFSET 0; migration 0038): the launcher keeps
-- its plans, and one made while the tables held a row or two read, joined, every task (or every
-- member, every product) in the order of some index for each job of a call.
CREATE VIEW hrwsi.job_spec AS
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, j.worker, t.lane,
       p.command, p.image,
       -- (what its attempt was dispatched with, if its routine changed since: migration 0067)
       CASE WHEN t.held_attempt = j.attempt THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type,
       json_build_object(
           'task', t.id, 'attempt', j.attempt, 'routine', t.routine, 'condition', i.processing_condition,
           'lane', t.lane, 'deadline_at', t.deadline_at, 'campaign', t.campaign_id,
           'routine_version', j.routine_version,
           'input', json_build_object('path', i.input_path, 'tile', i.tile, 'mission', i.mission,
                                       'measured_at', i.measured_at, 'published_at', i.published_at,
                                       'product_type', r.input_product_type),
           -- (a campaign's composite reads the members recorded for its task when the campaign
           -- started, those its group had then; production's, those recorded with its group:
           -- migration 0073. A campaign's task started before has none of its own: production's.)
           'members', coalesce(CASE WHEN t.campaign_id IS NOT NULL THEN
                                   (SELECT json_agg(json_build_object(
                                               'path', m.member_path, 'product_type', m.product_type,
                                               'tile', i.tile, 'measured_at', m.measured_at)
                                           ORDER BY m.measured_at, m.member_path)
                                    FROM (SELECT m.* FROM hrwsi.multi_input_campaign_member m
                                          WHERE m.task_id = t.id OFFSET 0) m) END,
                               (SELECT json_agg(json_build_object(
                                           'path', m.member_path, 'product_type', m.product_type,
                                           'tile', i.tile, 'measured_at', m.measured_at)
                                       ORDER BY m.measured_at, m.member_path)
                                FROM (SELECT m.* FROM hrwsi.multi_input_member m WHERE m.input_id = i.id OFFSET 0) m),
                             '[]'::json),
           'series', CASE WHEN t.series_tile IS NULL THEN NULL ELSE json_build_object(
               'tile', t.series_tile, 'first', t.depends_on IS NULL, 'previous_task', t.depends_on,
               'previous_products', coalesce((SELECT json_agg(json_build_object(
                                                  'path', p.path, 'product_type', p.product_type) ORDER BY p.path)
                                              FROM (SELECT p.* FROM hrwsi.product p WHERE p.task_id = t.depends_on OFFSET 0) p),
                                             '[]'::json))
           END
       )::text AS manifest,
       j.claim_token,
       -- (the task's serving priority as the attempt is read: its lane's, or 0 once aged or raised by a
       -- near-real-time task of its time series; the backend orders what waits in it by it: migration 0114)
       t.priority
FROM hrwsi.job j
CROSS JOIN LATERAL (SELECT t.* FROM hrwsi.processing_task t WHERE t.id = j.task_id OFFSET 0) t
CROSS JOIN LATERAL (SELECT i.* FROM hrwsi.input i WHERE i.id = t.input_id OFFSET 0) i
JOIN hrwsi.processing_routine r ON r.name = t.routine
CROSS JOIN LATERAL (SELECT p.command, p.image FROM hrwsi.task_program p WHERE p.task_id = t.id OFFSET 0) p;

-- =============================================================================================
-- Dispatch: one call claims ready work that fits now and returns what to submit.
-- =============================================================================================
-- Hand-over holds (migration 0117, ADR 0009): the room an urgent task (serving priority 0) had on its worker, kept
-- from less urgent work for a short window after it ended, so that the next step of its chain (made once the
-- harvester has chained its products and the orchestrator its task) or its own retry (after its back-off) finds it
-- free instead of behind an archive task that took the slot meanwhile. Written by hrwsi.record_outcomes, in the
-- statement that records the outcome, only while less urgent work waits; read by hrwsi.dispatch (one probe: the table
-- is empty but for those few seconds), which counts the holds against back-fill only, lets urgent work use them
-- (a task claimed on a held worker ends one hold there), and deletes the holds that ended: claimed, expired (until),
-- of an inactive worker, or of a task no longer waiting (cancelled, held, given up). No key to the task or the worker:
-- a hold of a task or worker gone is ended by that same test, and nothing else ever waits for one.
CREATE TABLE hrwsi.handover_hold (
    task_id    bigint PRIMARY KEY,
    worker     text NOT NULL,
    -- what the task was dispatched with (its attempt's held_* if its routine changed since, as dispatch counts it)
    cpu        float8 NOT NULL,
    ram_mb     float8 NOT NULL,
    storage_mb float8 NOT NULL,
    -- next_step: it was processed and its products chain on; retry: it failed and waits out its back-off
    kind       text NOT NULL CONSTRAINT handover_hold_kind_is_next_step_or_retry CHECK (kind IN ('next_step', 'retry')),
    since      timestamptz NOT NULL DEFAULT now(),
    until      timestamptz NOT NULL
);

CREATE FUNCTION hrwsi.dispatch(p_owner text, p_backend text, p_lease_s double precision,
                               p_max_jobs integer, p_data_dir text)
RETURNS TABLE (job hrwsi.job_spec, work_waiting boolean, holds_end_in double precision) LANGUAGE plpgsql
-- As the owner (migration 0040), as the task trigger whose work its claim does: the history is
-- written by no role but the owner. Only hrwsi_service may call it (the grants at the end).
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- (as hrwsi.record_outcomes: every table through an index, whatever the statistics the plans were made with;
-- and no bitmap scan: a plain index scan marks the index entries of rows no longer there, so that the
-- next call skips them, where a bitmap scan read them all again in every call until a vacuum, in a
-- burst tens of thousands of tasks' entries for the states they left (migration 0034); hash and merge
-- joins and materialized inner sides as the planner's defaults, whatever the session's, turned off for
-- the claim's statements below; sorts too, turned off for the search of the serving lists)
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on SET enable_sort = on
-- (and the claim's statement says that it does the task and job triggers' work itself: migration 0040)
SET hrwsi.in_dispatch_claim = off SET jit = off AS $$
-- Serving order: lane priority (0 first; ageing raises archive work to 0), then earliest deadline,
-- then planned tasks by planned start, then pending tasks by age. A task is ready when its dependency
-- is processed and it waits for no upstream work of an earlier scene (waits_for_upstream, migration
-- 0072: a column of the row the cursor reads, no probe), or an operator released it. A planned task starts on its
-- planned worker; a pending task whose dependency is over starts at once where it fits now (the
-- fast path: capacity is free, nothing planned waits for it); an urgent task (priority 0) may take
-- any worker where it fits. An urgent task that fits nowhere reserves capacity: no less urgent
-- task starts on the worker it waits for, nor anywhere while it waits for a budget, so near-real-
-- time work waits at most for one running task to end (ADR 0009). The room an urgent task left for the next step
-- of its chain or its retry (hrwsi.handover_hold, migration 0117) counts as used for less urgent lists only.
-- Returns a row per job to submit, each saying whether work was left waiting: a task this call
-- saw and did not start (its dependency, its routine's hold, capacity, a budget, the batch's
-- size). When it starts nothing, one row without a job says it. If no work waits, the end of a
-- job starts nothing, and the launcher does not call again for it (migration 0029). Each row also says in how
-- many seconds the first hand-over hold left ends (NULL: none), when the launcher calls again (migration 0120:
-- nothing else would wake it then, and back-fill waited for the backstop poll).
DECLARE
    planned_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid, t.input_id,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'planned' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    pending_tasks CURSOR (p smallint, lim integer) FOR
        SELECT t.id, t.state, t.worker, t.attempts, t.routine, r.cpu::float8 AS cpu, r.ram_mb::float8 AS ram,
               r.storage_mb::float8 AS disk, r.flavour, r.on_hold, t.avoid_worker AS avoid, t.input_id,
               ((t.waits_for_upstream IS NULL OR t.dependency_waived)
                AND (t.depends_on IS NULL OR t.dependency_waived
                     OR (SELECT d.state = 'processed' FROM hrwsi.processing_task d WHERE d.id = t.depends_on))) AS ready
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
        WHERE t.state = 'pending' AND t.priority = p AND (t.not_before IS NULL OR t.not_before <= now())
        ORDER BY t.priority, t.deadline_at NULLS LAST, t.id
        LIMIT lim FOR UPDATE OF t SKIP LOCKED;
    names text[]; flavours text[]; cap_cpu float8[]; cap_ram float8[]; cap_disk float8[];
    use_cpu float8[]; use_ram float8[]; use_disk float8[];
    b_cpu float8; b_ram float8; b_disk float8; b_vms integer;  -- the budgets (NULL: none)
    lease_fresh boolean;
    total_cpu float8 := 0; total_ram float8 := 0; total_disk float8 := 0; busy integer := 0;
    reserved boolean[]; budget_reserved boolean := false;
    c record; k integer; chosen integer; misses integer; last_k integer;
    avoid_k integer;  -- the worker the task's next attempt avoids (avoid_worker), while another fits it
    scan_limit integer := 20 * p_max_jobs + 1000;
    ids bigint[] := '{}'; chosen_workers text[] := '{}'; was_pending boolean[] := '{}'; new_jobs bigint[];
    prio smallint; from_planned boolean; seen integer := 0;
    installation text;
    idle boolean; idle_k integer; busy_seen integer;
    busy_workers integer;  -- active workers running something (of this call's claims too)
    locked_workers integer; named_workers integer;
    ignored text;  -- what set_config and pg_notify return, not used
    -- The hand-over holds (migration 0117): whether any row is there (the one probe a call without holds makes),
    -- those that still count, in the order they end (task, worker's index, room, whether an urgent claim ended it),
    -- and the tasks of those that ended (deleted before the claim)
    holds_exist boolean; h_task bigint[]; h_k integer[]; h_cpu float8[]; h_ram float8[]; h_disk float8[];
    h_used boolean[]; h_ended bigint[]; holds_applied boolean := false; hi integer;
    -- (migration 0120) when each hold that counts ends; the hold of an urgent task's chain (its own, a retry's, or
    -- that of the task whose product it reads: its step before it), and the room held on the worker it took
    h_until timestamptz[]; mine integer; held_cpu float8; held_ram float8; held_disk float8;
BEGIN
    work_waiting := true;  -- until this call has seen every list
    IF NOT pg_try_advisory_xact_lock(7250002) THEN
        RAISE EXCEPTION 'another launcher is dispatching right now' USING ERRCODE = 'lock_not_available';
    END IF;

    -- Active workers with their flavour and what runs on them now; and, for the budgets, everything
    -- that runs, also on workers no longer active. (One pass over the running tasks for both: it is
    -- the part of a call that grows with the work in flight.) In the same statement, after the lock
    -- (its snapshot sees every claim committed before): whether our lease is fresh, the budgets and
    -- the installation (migration 0037: four statements before; what a call's statements cost is
    -- paid again, and more, by a server that has sat idle between two inputs).
    WITH usage AS (
        -- The tasks in flight through the index of their states: in a sub-query of its own (OFFSET
        -- 0), where no order of the tasks serves anything (migration 0038). Grouped by worker in
        -- the same query, a plan made while the table held a task or two read every task, in the
        -- order of the workers' index, in every call (40,002 to find none in flight).
        -- Each at what it was dispatched with, if its routine changed since (migration 0067).
        SELECT a.worker, sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_cpu ELSE r.cpu END)::float8 AS cpu,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_ram_mb ELSE r.ram_mb END)::float8 AS ram,
               sum(CASE WHEN a.held_attempt = a.attempts THEN a.held_storage_mb ELSE r.storage_mb END)::float8 AS disk
        FROM (SELECT t.worker, t.routine, t.attempts, t.held_attempt, t.held_cpu, t.held_ram_mb, t.held_storage_mb
              FROM processing_task t WHERE t.state IN ('dispatched', 'queued', 'running') OFFSET 0) a
        JOIN processing_routine r ON r.name = a.routine GROUP BY a.worker
    )
    SELECT array_agg(w.name ORDER BY w.name), array_agg(w.flavour ORDER BY w.name),
           array_agg(f.cpu::float8 ORDER BY w.name), array_agg(f.ram_mb::float8 ORDER BY w.name),
           array_agg(f.disk_mb::float8 ORDER BY w.name),
           array_agg(coalesce(u.cpu, 0) ORDER BY w.name), array_agg(coalesce(u.ram, 0) ORDER BY w.name),
           array_agg(coalesce(u.disk, 0) ORDER BY w.name), array_agg(false ORDER BY w.name),
           (SELECT coalesce(sum(a.cpu), 0) FROM usage a), (SELECT coalesce(sum(a.ram), 0) FROM usage a),
           (SELECT coalesce(sum(a.disk), 0) FROM usage a), (SELECT count(a.worker)::integer FROM usage a),
           count(*) FILTER (WHERE coalesce(u.cpu, 0) + coalesce(u.ram, 0) + coalesce(u.disk, 0) > 0)::integer,
           EXISTS (SELECT 1 FROM service_instance s
                   WHERE s.id = p_owner AND s.heartbeat_at > now() - make_interval(secs => p_lease_s)),
           (SELECT g.cpu_max::float8 FROM budget g WHERE g.id), (SELECT g.ram_max_mb::float8 FROM budget g WHERE g.id),
           (SELECT g.storage_max_mb::float8 FROM budget g WHERE g.id), (SELECT g.vm_max FROM budget g WHERE g.id),
           (SELECT i.installation_id::text FROM hrwsi.installation i WHERE i.id),
           EXISTS (SELECT 1 FROM handover_hold h)
    INTO names, flavours, cap_cpu, cap_ram, cap_disk, use_cpu, use_ram, use_disk, reserved,
         total_cpu, total_ram, total_disk, busy, busy_workers, lease_fresh, b_cpu, b_ram, b_disk, b_vms, installation,
         holds_exist
    FROM worker w JOIN flavour f ON f.name = w.flavour
    LEFT JOIN usage u ON u.worker = w.name
    WHERE w.active;
    IF NOT lease_fresh THEN
        PERFORM hrwsi.require_lease(p_owner, p_lease_s);  -- raises the fencing error, with its message
    END IF;
    IF names IS NULL THEN
        RETURN NEXT;  -- no job; work may wait
        RETURN;
    END IF;
    IF holds_exist THEN
        -- The hand-over holds that still count (migration 0117): before their end, on an active worker, of a task
        -- still as it was when the hold was taken (processed, for its next step; waiting, for its retry). The
        -- others ended (expired, the worker inactive, the task cancelled, held or given up): deleted below.
        -- (Each task a probe of its key; a few rows, a few seconds at a time.)
        SELECT array_agg(h.task_id ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.k ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.cpu ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.ram_mb ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(h.storage_mb ORDER BY h.until, h.task_id) FILTER (WHERE h.live),
               array_agg(false) FILTER (WHERE h.live),
               coalesce(array_agg(h.task_id) FILTER (WHERE NOT h.live), '{}'),
               array_agg(h.until ORDER BY h.until, h.task_id) FILTER (WHERE h.live)
        INTO h_task, h_k, h_cpu, h_ram, h_disk, h_used, h_ended, h_until
        FROM (SELECT h.task_id, h.cpu, h.ram_mb, h.storage_mb, h.until, array_position(names, h.worker) AS k,
                     h.until > now() AND h.worker = ANY (names)
                     AND coalesce((SELECT CASE h.kind WHEN 'next_step' THEN t.state = 'processed'
                                                      ELSE t.state IN ('pending', 'planned') END
                                   FROM processing_task t WHERE t.id = h.task_id OFFSET 0), false) AS live
              FROM handover_hold h) h;
    END IF;

    -- The serving lists are read in their indexes' order, never sorted (migration 0039): a call
    -- makes its plans at its session's first run and keeps them, and the first run of a launcher
    -- started while a burst waited that the table's statistics had not seen yet (a new
    -- installation, before autovacuum analyzed it) planned the probe below as a read of every
    -- pending task through the index of all states and a sort, in every call (40,010 tasks read
    -- to claim one of 20,001). Sorts are back for the statements after the search.
    -- (Each setting and wake-up call below is an assignment, not a PERFORM: a PERFORM is a query
    -- the executor starts and ends, an assignment's expression is evaluated without one; the four
    -- of a one-task call, 0.02 ms of its 1.1-1.2 ms, migration 0042.)
    ignored := set_config('enable_sort', 'off', true);
    <<lanes>>
    -- The serving lists in order (lane priority, then planned before pending), only those with a
    -- task in them: a probe of a list's index costs less than opening its cursor (migration 0033).
    -- Each probe reads its list's index in serving order and stops at the first task (migration
    -- 0034): without OFFSET 0, PostgreSQL made the EXISTS one hashed sub-query, which read every task
    -- of the list in every call; without the order, a probe of an empty list could read every
    -- pending task of the other priorities through the index of all states.
    FOR prio, from_planned IN
        SELECT p.priority, s.planned FROM (SELECT DISTINCT priority FROM lane UNION SELECT 0) p,
               (VALUES (true), (false)) s(planned)
        WHERE CASE WHEN s.planned
                   THEN EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'planned' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.planned_start, t.id OFFSET 0)
                   ELSE EXISTS (SELECT 1 FROM processing_task t WHERE t.state = 'pending' AND t.priority = p.priority
                                ORDER BY t.priority, t.deadline_at NULLS LAST, t.id OFFSET 0) END
        ORDER BY p.priority, s.planned DESC
    LOOP
        IF prio > 0 AND h_task IS NOT NULL AND NOT holds_applied THEN
            -- From the first less urgent list on, the hand-over holds left count as used (migration 0117; ADR
            -- 0009): on their workers, and in the budgets' totals, as the tasks that ended there were counted.
            holds_applied := true;
            FOR hi IN 1..cardinality(h_task) LOOP
                CONTINUE WHEN h_used[hi];
                k := h_k[hi];
                IF use_cpu[k] + use_ram[k] + use_disk[k] = 0 THEN
                    busy := busy + 1; busy_workers := busy_workers + 1;
                END IF;
                use_cpu[k] := use_cpu[k] + h_cpu[hi]; use_ram[k] := use_ram[k] + h_ram[hi];
                use_disk[k] := use_disk[k] + h_disk[hi];
                total_cpu := total_cpu + h_cpu[hi]; total_ram := total_ram + h_ram[hi];
                total_disk := total_disk + h_disk[hi];
            END LOOP;
        END IF;
        misses := 0;
        IF from_planned THEN OPEN planned_tasks(prio, scan_limit); ELSE OPEN pending_tasks(prio, scan_limit); END IF;
        LOOP
            IF from_planned THEN FETCH planned_tasks INTO c; ELSE FETCH pending_tasks INTO c; END IF;
            EXIT WHEN NOT FOUND;
            seen := seen + 1;
            IF cardinality(ids) >= p_max_jobs OR (budget_reserved AND prio > 0) THEN
                -- Enough for this call, or urgent work waits for a budget: nothing less urgent starts.
                IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
                EXIT lanes;
            END IF;
            -- Nothing fits after many tries in a row: the rest of this list waits for capacity.
            EXIT WHEN misses >= 200;
            CONTINUE WHEN NOT c.ready OR c.on_hold;
            IF (b_cpu IS NOT NULL AND total_cpu + c.cpu > b_cpu + 1e-9)
               OR (b_ram IS NOT NULL AND total_ram + c.ram > b_ram)
               OR (b_disk IS NOT NULL AND total_disk + c.disk > b_disk) THEN
                misses := misses + 1;
                -- An urgent task waits for the budget, and nothing less urgent starts meanwhile;
                -- unless it needs more than the whole budget: it never starts, and it held every
                -- back-fill with it (found by exploratory testing; migration 0064).
                IF prio = 0 AND NOT ((b_cpu IS NOT NULL AND c.cpu > b_cpu + 1e-9) OR (b_ram IS NOT NULL AND c.ram > b_ram)
                                     OR (b_disk IS NOT NULL AND c.disk > b_disk)) THEN
                    budget_reserved := true;
                END IF;
                CONTINUE;
            END IF;
            chosen := NULL;
            -- The backend could not place its last attempt on avoid_worker (migration 0087; rare, a column
            -- of the row, no probe): no choice below takes that worker while an active worker of another
            -- name and a flavour it fits exists (it waits for that one, as for any capacity); else it may
            -- go back there. The claim's reason says which.
            avoid_k := NULL;
            IF c.avoid IS NOT NULL THEN
                avoid_k := array_position(names, c.avoid);
                IF avoid_k IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM generate_subscripts(names, 1) i
                        WHERE i <> avoid_k AND (c.flavour IS NULL OR flavours[i] = c.flavour)
                          AND c.cpu <= cap_cpu[i] + 1e-9 AND c.ram <= cap_ram[i] AND c.disk <= cap_disk[i]) THEN
                    avoid_k := NULL;
                END IF;
            END IF;
            -- An urgent task takes held room first (migration 0117): its chain's hold (its own, a retry; or, migration
            -- 0120, that of the task whose product it reads: the step before it, two probes of keys, made only while
            -- holds count), else the first hold where it fits, so that a worker kept for the next step of a chain is
            -- where that step goes.
            mine := NULL;
            IF prio = 0 AND h_task IS NOT NULL THEN
                mine := array_position(h_task, c.id);
                IF mine IS NULL THEN
                    mine := array_position(h_task, (SELECT p.task_id FROM product p
                                                    WHERE p.id = (SELECT i.product_id FROM input i WHERE i.id = c.input_id)));
                END IF;
                IF h_used[mine] THEN mine := NULL; END IF;
                FOR hi IN 1..cardinality(h_task) LOOP
                    k := h_k[hi];
                    IF NOT h_used[hi] AND k IS DISTINCT FROM avoid_k AND (c.flavour IS NULL OR flavours[k] = c.flavour)
                       AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                       AND use_disk[k] + c.disk <= cap_disk[k]
                       AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms)
                       AND (chosen IS NULL OR hi = mine) THEN
                        chosen := k;
                        EXIT WHEN hi = mine;
                    END IF;
                END LOOP;
            END IF;
            -- Its planned worker first; an urgent or pending task may take any worker: the one
            -- chosen last if it still fits (a burst fills one worker after the other without
            -- scanning them all), else those already busy first (fewest VMs), then idle ones
            -- while the VM budget allows.
            IF chosen IS NULL AND last_k IS NOT NULL AND NOT (c.state = 'planned' AND prio > 0) AND last_k IS DISTINCT FROM avoid_k
               AND (c.worker IS NULL OR c.worker = names[last_k] OR NOT c.worker = ANY (names))
               AND (c.flavour IS NULL OR flavours[last_k] = c.flavour) AND NOT (reserved[last_k] AND prio > 0)
               AND use_cpu[last_k] + c.cpu <= cap_cpu[last_k] + 1e-9 AND use_ram[last_k] + c.ram <= cap_ram[last_k]
               AND use_disk[last_k] + c.disk <= cap_disk[last_k] THEN
                chosen := last_k;
            END IF;
            IF chosen IS NULL AND c.worker IS NOT NULL THEN
                k := array_position(names, c.worker);  -- its planned worker, if active
                IF k IS NOT NULL AND k IS DISTINCT FROM avoid_k AND (c.flavour IS NULL OR flavours[k] = c.flavour)
                   AND NOT (reserved[k] AND prio > 0)
                   AND use_cpu[k] + c.cpu <= cap_cpu[k] + 1e-9 AND use_ram[k] + c.ram <= cap_ram[k]
                   AND use_disk[k] + c.disk <= cap_disk[k]
                   AND NOT (b_vms IS NOT NULL AND use_cpu[k] + use_ram[k] + use_disk[k] = 0 AND busy + 1 > b_vms) THEN
                    chosen := k;
                END IF;
            END IF;
            IF chosen IS NULL AND NOT (c.state = 'planned' AND prio > 0) THEN
                -- One pass: the first busy worker where it fits, else the first idle one where
                -- it fits (the scan ends there once every busy worker has been seen).
                idle_k := NULL; busy_seen := 0;
                FOR k IN 1..cardinality(names) LOOP
                    EXIT WHEN idle_k IS NOT NULL AND busy_seen >= busy_workers;  -- no busy one left
                    idle := use_cpu[k] + use_ram[k] + use_disk[k] = 0;
                    IF NOT idle THEN busy_seen := busy_seen + 1; END IF;
                    CONTINUE WHEN idle AND (idle_k IS NOT NULL OR (b_vms IS NOT NULL AND busy + 1 > b_vms));
                    CONTINUE WHEN (c.flavour IS NOT NULL AND flavours[k] <> c.flavour) OR (reserved[k] AND prio > 0)
                               OR k = avoid_k OR use_cpu[k] + c.cpu > cap_cpu[k] + 1e-9 OR use_ram[k] + c.ram > cap_ram[k]
                               OR use_disk[k] + c.disk > cap_disk[k];
                    IF NOT idle THEN
                        chosen := k;
                        EXIT;
                    END IF;
                    idle_k := k;
                END LOOP;
                chosen := coalesce(chosen, idle_k);
            END IF;
            IF chosen IS NULL THEN
                misses := misses + 1;
                IF prio = 0 THEN
                    -- Reserve the worker (of a flavour it fits) with the most free CPU: it frees
                    -- enough first, as far as hrwsi can tell.
                    SELECT i INTO k FROM generate_subscripts(names, 1) i
                    WHERE NOT reserved[i] AND (c.flavour IS NULL OR flavours[i] = c.flavour) AND i IS DISTINCT FROM avoid_k
                      AND c.cpu <= cap_cpu[i] AND c.ram <= cap_ram[i] AND c.disk <= cap_disk[i]
                    ORDER BY cap_cpu[i] - use_cpu[i] DESC, i LIMIT 1;
                    IF k IS NOT NULL THEN reserved[k] := true; END IF;
                END IF;
                CONTINUE;
            END IF;
            misses := 0;
            last_k := chosen;
            IF use_cpu[chosen] + use_ram[chosen] + use_disk[chosen] = 0 THEN
                busy := busy + 1; busy_workers := busy_workers + 1;
            END IF;
            use_cpu[chosen] := use_cpu[chosen] + c.cpu;
            use_ram[chosen] := use_ram[chosen] + c.ram;
            use_disk[chosen] := use_disk[chosen] + c.disk;
            total_cpu := total_cpu + c.cpu; total_ram := total_ram + c.ram; total_disk := total_disk + c.disk;
            IF prio = 0 AND h_task IS NOT NULL THEN
                -- An urgent task claimed ends its chain's hold wherever it goes (migration 0120: a next step placed
                -- on another worker left its step's room held for nothing until the hold's end); and, on the worker
                -- it took, the first holds there while they and it no longer fit together, so that room is never
                -- counted twice (migration 0117 ended one there whatever room it took: a task that fitted beside a
                -- hold ended it all the same).
                IF mine IS NOT NULL THEN
                    h_used[mine] := true; h_ended := h_ended || h_task[mine];
                END IF;
                held_cpu := 0; held_ram := 0; held_disk := 0;
                FOR hi IN 1..cardinality(h_task) LOOP
                    IF NOT h_used[hi] AND h_k[hi] = chosen THEN
                        held_cpu := held_cpu + h_cpu[hi]; held_ram := held_ram + h_ram[hi];
                        held_disk := held_disk + h_disk[hi];
                    END IF;
                END LOOP;
                FOR hi IN 1..cardinality(h_task) LOOP
                    EXIT WHEN use_cpu[chosen] + held_cpu <= cap_cpu[chosen] + 1e-9
                              AND use_ram[chosen] + held_ram <= cap_ram[chosen]
                              AND use_disk[chosen] + held_disk <= cap_disk[chosen];
                    IF NOT h_used[hi] AND h_k[hi] = chosen THEN
                        h_used[hi] := true; h_ended := h_ended || h_task[hi];
                        held_cpu := held_cpu - h_cpu[hi]; held_ram := held_ram - h_ram[hi];
                        held_disk := held_disk - h_disk[hi];
                    END IF;
                END LOOP;
            END IF;
            ids := ids || c.id;
            chosen_workers := chosen_workers || names[chosen];
            was_pending := was_pending || (c.state = 'pending');
        END LOOP;
        IF from_planned THEN CLOSE planned_tasks; ELSE CLOSE pending_tasks; END IF;
    END LOOP;
    IF holds_exist THEN
        -- The holds that ended: expired or no longer counted, ended by an urgent claim, or of a task claimed now
        -- (a retry that went elsewhere). Each a probe of its key.
        DELETE FROM handover_hold h WHERE h.task_id = ANY (h_ended || ids);
        -- When the first hold left ends (they are in the order they end): the launcher calls again then.
        FOR hi IN 1..coalesce(cardinality(h_task), 0) LOOP
            IF NOT h_used[hi] AND NOT h_task[hi] = ANY (ids) THEN
                holds_end_in := extract(epoch FROM h_until[hi] - now())::float8;
                EXIT;
            END IF;
        END LOOP;
    END IF;

    -- From here on, the statements look up the claimed tasks and their jobs by key: nested loops
    -- over index probes, planned so whatever the tables' sizes when the plans were made (a merge
    -- or hash join planned on small tables read every job or every task in every call, and a
    -- nested loop may read a small table whole once and keep it; for the rest of this call: its
    -- SET clauses restore them on return).
    ignored := set_config('enable_hashjoin', 'off', true) || set_config('enable_mergejoin', 'off', true)
               || set_config('enable_material', 'off', true) || set_config('enable_sort', 'on', true)
               || set_config('hrwsi.in_dispatch_claim', 'on', true);
    IF cardinality(ids) = 0 THEN
        work_waiting := seen > 0;
        RETURN NEXT;  -- no job
        RETURN;
    END IF;
    -- A task whose next attempt already has a job row (a stray row someone inserted by hand) is not
    -- claimed (the claim's probe of the job's key per task: OFFSET 0, never a join, which, planned
    -- on a few jobs, read them all in every call); it is set aside with the reason below, and the
    -- others are dispatched. (A statement of its own before the claim until migration 0037.)
    -- Each claimed task is a probe of its key, `= ANY (ARRAY[x.id])` (migration 0038): an equality
    -- with the batch, or a join with the routines, let the planner read the task table in the order
    -- of an index, and a plan made while the table held a task or two did so, whole, for every
    -- claimed task (a burst's call of 2,000 tasks against 20,000 took 5.4 s until autovacuum
    -- analyzed the table). As written, no order of the tasks serves the statement, and the only
    -- way to them the plan may take is through their key.
    WITH claimed AS (
        UPDATE processing_task t
        SET state = 'dispatched', attempts = t.attempts + 1, worker = x.worker,
            planned_start = CASE WHEN x.pending THEN now() ELSE t.planned_start END,
            planned_end = CASE WHEN x.pending
                               THEN now() + (SELECT r.expected_duration FROM processing_routine r WHERE r.name = t.routine)
                               ELSE t.planned_end END,
            state_reason = nullif(concat_ws('; ', CASE WHEN x.pending THEN 'dispatched at once: capacity was free' END,
                -- (why here, when the backend could not place its last attempt on a worker: migration 0087)
                CASE WHEN t.avoid_worker = x.worker
                     THEN format('back on worker %s, where its last attempt could not be placed: no other active '
                                 'worker of a flavour it fits', x.worker)
                     WHEN t.avoid_worker IS NOT NULL
                     THEN format('on worker %s, not %s, where its last attempt could not be placed', x.worker,
                                 t.avoid_worker) END), ''),
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = NULL, history_pruned_at = NULL
        FROM unnest(ids, chosen_workers, was_pending) WITH ORDINALITY AS x(id, worker, pending, n)
        WHERE t.id = ANY (ARRAY[x.id])
          AND NOT EXISTS (SELECT 1 FROM job j WHERE j.task_id = x.id AND j.attempt = t.attempts + 1 OFFSET 0)
        RETURNING t.id, t.routine, t.attempts, t.worker, t.state_reason, x.n,
                  'hrwsi-' || lower(regexp_replace(t.routine, '[^A-Za-z0-9_.-]', '-', 'g')) || '-' || t.id
                      || '-' || t.attempts AS backend_job_id
    ), inserted AS (
        INSERT INTO job (task_id, attempt, backend, backend_job_id, worker, owner, log_path, output_dir,
                         routine_version)
        SELECT cl.id, cl.attempts, p_backend, cl.backend_job_id, cl.worker, p_owner,
               p_data_dir || '/logs/' || installation || '/' || cl.routine || '/' || cl.backend_job_id || '.log',
               p_data_dir || '/products/' || installation || '/' || cl.routine || '/task-' || cl.id
                   || '/attempt-' || cl.attempts || '/output',
               -- one index probe per claimed task (a join would be planned as a scan of every task)
               (SELECT p.routine_version FROM task_program p WHERE p.task_id = cl.id)
        FROM claimed cl
        ORDER BY cl.n  -- job ids in serving order (array_position(ids, id) was quadratic in the batch)
        RETURNING id
    ), history AS (
        -- What hrwsi.after_task_changes writes for an UPDATE, which this statement does not call
        -- (hrwsi.in_dispatch_claim; nor hrwsi.after_jobs_inserted: its jobs name the tasks claimed
        -- here): a history row per claimed task ...
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT cl.id, 'dispatched', cl.state_reason, cl.attempts, cl.worker FROM claimed cl
    ), workers_locked AS (
        -- ... and each worker it puts tasks on locked, as a foreign key would, then counted below
        SELECT w.name FROM worker w WHERE w.name = ANY (chosen_workers) FOR KEY SHARE OF w
    )
    SELECT array_agg(i.id), (SELECT count(*) FROM workers_locked),
           (SELECT count(DISTINCT n.name) FROM unnest(chosen_workers) n(name))
    INTO new_jobs, locked_workers, named_workers FROM inserted i;
    IF locked_workers < named_workers THEN
        PERFORM hrwsi.refuse_a_missing_worker(chosen_workers);  -- removed since this call read the active ones
    END IF;
    IF new_jobs IS NOT NULL THEN
        -- The wake-up calls the triggers send (docs/adr/0001), at commit: work under way, on the
        -- `_progress` channels, which the launcher does not listen to (migration 0043).
        ignored := pg_notify('hrwsi_task_progress', json_build_object(
            'op', 'update', 'counts', json_build_object('dispatched', cardinality(new_jobs)))::text);
        ignored := pg_notify('hrwsi_job_progress', json_build_object(
            'op', 'insert', 'counts', json_build_object('submitted', cardinality(new_jobs)))::text);
    END IF;
    work_waiting := seen > coalesce(cardinality(new_jobs), 0);
    IF coalesce(cardinality(new_jobs), 0) < cardinality(ids) THEN
        -- Stray job rows: the tasks not claimed say why (each still locked by this call's cursor).
        UPDATE processing_task t SET state_reason = format(
            'not dispatched: a job row for its attempt %s already exists (job %s) that hrwsi did not create; '
            'remove that row (or cancel the task) and it is dispatched', t.attempts + 1,
            (SELECT j.id FROM job j WHERE j.task_id = t.id AND j.attempt = t.attempts + 1))
        WHERE t.id = ANY (ids) AND t.state IS DISTINCT FROM 'dispatched';
        IF new_jobs IS NULL THEN
            RETURN NEXT;  -- no job
            RETURN;
        END IF;
    END IF;
    -- A new statement: it sees the jobs just inserted.
    RETURN QUERY SELECT s, work_waiting, holds_end_in FROM job_spec s WHERE s.job_id = ANY (new_jobs) ORDER BY s.job_id;
END $$;

-- =============================================================================================
-- Outcomes: one call records how attempts ended, their products and their tasks' next states.
-- =============================================================================================
CREATE FUNCTION hrwsi.record_outcomes(
    p_owner text, p_lease_s double precision, p_backoff_s double precision,
    p_jobs bigint[], p_states text[], p_exit_codes integer[], p_messages text[],
    p_started timestamptz[], p_finished timestamptz[], p_faults text[],
    p_product_jobs bigint[], p_product_paths text[], p_product_sizes bigint[],
    p_handover_hold_s double precision DEFAULT 0)
RETURNS TABLE (job_id bigint, job_state text, task_id bigint, task_state text, failures integer,
               max_attempts integer, lost_count integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- Every table is read through an index (a plan cached when the tables were small would otherwise
-- scan them whole on every call once they are large). And every join is a nested loop over the
-- index of its key, without a materialized inner side (migration 0034): a merge join planned while
-- the task table was small read every task up to the batch's in every call (recording one outcome
-- read 40,000 tasks), and a nested loop may read a small table whole once and keep it.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off SET jit = off AS $$
#variable_conflict use_column
-- Only the owner of a job, holding a fresh lease, records its outcome. A product path that is
-- already registered (or listed twice) fails its job with the reason instead of being dropped.
-- Routine failures count toward max_attempts and the failure policy; lost attempts (a fault of
-- the infrastructure) are retried without limit, with backoff, and alerted when they repeat.
-- An urgent task's room on its worker is kept from back-fill for p_handover_hold_s (the launcher's
-- HRWSI_HANDOVER_HOLD_S; 0: never) once it is processed and its products chain on, or once its back-off
-- ends when it is retried (hrwsi.handover_hold, migration 0117).
DECLARE
    -- Per outcome (by its position in p_jobs): where its products start in the product arrays, how
    -- many it has, and why its products cannot be registered. Products are listed in the order of
    -- their outcomes; each is found by its position, never by a join of one list with the other
    -- (under the generic plan, a nested loop: 3,000 outcomes with a product each took 1.6 s).
    outcomes integer := coalesce(cardinality(p_jobs), 0);
    product_first integer[] := array_fill(1, ARRAY[outcomes]);
    product_count integer[] := array_fill(0, ARRAY[outcomes]);
    conflict_message text[] := array_fill(NULL::text, ARRAY[outcomes]);
    product_outcome integer[] := '{}';
    i integer := 1;
    c record;
    done_jobs bigint[]; done_states text[]; done_tasks bigint[];
    -- The urgent tasks that ended on a worker, which may keep a hand-over hold there (migration 0117), and whether
    -- less urgent work waits, without which none is kept
    urgent_tasks bigint[]; urgent_workers text[]; urgent_retried boolean[]; back_fill_waits boolean;
    position_of jsonb;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    FOR k IN 1..coalesce(cardinality(p_product_jobs), 0) LOOP
        WHILE i <= outcomes AND p_jobs[i] IS DISTINCT FROM p_product_jobs[k] LOOP
            i := i + 1;
        END LOOP;
        IF i > outcomes THEN
            RAISE EXCEPTION 'product % lists job %, which is not among the outcomes after the job of the product before it',
                p_product_paths[k], p_product_jobs[k]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'list the products in the order of their outcomes (p_jobs), each after its own job';
        END IF;
        IF product_count[i] = 0 THEN product_first[i] := k; END IF;
        product_count[i] := product_count[i] + 1;
        product_outcome := product_outcome || i;
    END LOOP;
    IF cardinality(product_outcome) > 0 THEN
        -- A path already registered, or listed twice: its attempt fails with the first such path.
        FOR c IN
            SELECT p.k, format('product %s is already registered (%s); nothing of this attempt was registered',
                               p.path, coalesce('by task ' || existing.task_id, 'twice in this batch')) AS message
            FROM (SELECT q.k, q.path, count(*) OVER (PARTITION BY q.path) AS listed
                  FROM unnest(p_product_paths) WITH ORDINALITY AS q(path, k)) p
            LEFT JOIN product existing ON existing.path = p.path
            WHERE existing.id IS NOT NULL OR p.listed > 1
            ORDER BY p.path
        LOOP
            IF conflict_message[product_outcome[c.k]] IS NULL THEN
                conflict_message[product_outcome[c.k]] := c.message;
            END IF;
        END LOOP;
    END IF;

    -- Each job's position in the arrays, found by key: no join of the batch with the job table. (A
    -- job listed twice keeps its first position, where its products are: the last value of a key wins.)
    SELECT jsonb_object_agg(o.id::text, o.n ORDER BY o.n DESC) INTO position_of
    FROM unnest(p_jobs) WITH ORDINALITY AS o(id, n);
    WITH finished AS (
        -- The batch's jobs through their primary key (= ANY), each with the outcome at its position,
        -- so that no plan can read the job table once per outcome. (Joined with the batch, a generic
        -- plan made while the job table was nearly empty took it for one row and did so until the
        -- next ANALYZE: 1,000 outcomes in 0.2-0.4 s instead of 45 ms. The state test is wrapped so
        -- that it cannot be served by the partial index of active jobs either.)
        UPDATE job j
        SET (state, exit_code, message, fault, started_at, finished_at) = (
            SELECT CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN conflict_message[x.n] IS NOT NULL THEN 'internal_error' ELSE p_states[x.n] END,
                   p_exit_codes[x.n],
                   CASE WHEN j.cancel_requested
                        THEN 'cancelled by an operator: ' || coalesce(conflict_message[x.n], p_messages[x.n])
                        ELSE coalesce(conflict_message[x.n], p_messages[x.n]) END,
                   CASE WHEN j.cancel_requested OR conflict_message[x.n] IS NOT NULL THEN NULL ELSE p_faults[x.n] END,
                   coalesce(j.started_at, p_started[x.n], now()), coalesce(p_finished[x.n], now())
            FROM (SELECT (position_of ->> j.id::text)::integer AS n) x),
            updated_at = now()  -- (what hrwsi.enforce_job_transition would set: not called for these rows)
        WHERE j.id = ANY (p_jobs) AND j.owner = p_owner AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
        RETURNING j.id, j.state, j.task_id, j.attempt, j.message, (position_of ->> j.id::text)::integer AS n,
                  j.fault, j.worker
    ), products AS (
        -- A processed attempt's products, by their positions in the product arrays.
        INSERT INTO product (task_id, path, product_type, size_bytes)
        SELECT f.task_id, p_product_paths[k], r.output_product_type, p_product_sizes[k]
        FROM finished f
        CROSS JOIN LATERAL generate_series(product_first[f.n], product_first[f.n] + product_count[f.n] - 1) AS k
        -- (each task and its routine a probe of their keys, `= ANY (ARRAY[...])`, as below)
        JOIN processing_task t ON t.id = ANY (ARRAY[f.task_id]) JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
        -- Only the attempts that list products (migration 0041): the task and routine of every
        -- processed attempt were probed, to register nothing for those without (1,000 outcomes of a
        -- burst without products: 4.4 ms of the call's 50).
        WHERE f.state = 'processed' AND product_count[f.n] > 0
        RETURNING product.task_id
    ), processed AS (
        -- (A processed attempt registered every product it listed: a conflict fails the attempt.)
        UPDATE processing_task t
        SET state = 'processed', state_reason = format('%s product(s)', product_count[f.n]), avoid_worker = NULL,
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = now(), history_pruned_at = NULL
        FROM finished f
        WHERE f.state = 'processed' AND t.id = ANY (ARRAY[f.task_id]) AND t.attempts = f.attempt
          -- (wrapped, as the jobs' state test above: each task is read through its primary key from
          -- the batch. Served by the index of task states, a generic plan made while few tasks ran
          -- took the running tasks for one row and compared every one with every outcome: 1,000
          -- outcomes in 200 ms instead of 50. And each task, and its routine, is a probe of its key,
          -- `= ANY (ARRAY[...])` (migration 0038): an equality with the batch, or with the routines,
          -- let the planner read the tasks in the order of an index, and a plan made while the table
          -- held a task or two read all 40,002 for one outcome.)
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.state, t.failures, t.lost_count, t.priority, f.worker, f.n
    ), failed AS (
        UPDATE processing_task t
        SET failures = t.failures + CASE WHEN f.state = 'lost' THEN 0 ELSE 1 END,
            lost_count = t.lost_count + CASE WHEN f.state = 'lost' THEN 1 ELSE 0 END,
            state = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN 'terminated'
                         ELSE 'pending' END,
            state_reason = format('attempt %s %s: %s', f.attempt, f.state, f.message)
                -- (where its next attempt goes: migration 0087; the workers read only for such an attempt)
                || CASE WHEN f.fault IS DISTINCT FROM 'not_placed' OR f.worker IS NULL THEN ''
                        WHEN EXISTS (SELECT 1 FROM worker w JOIN flavour fl ON fl.name = w.flavour
                                     WHERE w.active AND w.name <> f.worker AND (r.flavour IS NULL OR w.flavour = r.flavour)
                                       AND r.cpu <= fl.cpu AND r.ram_mb <= fl.ram_mb AND r.storage_mb <= fl.disk_mb)
                        THEN format('; its next attempt goes to another worker than %s', f.worker)
                        ELSE format('; no other active worker of a flavour it fits: its next attempt may go to %s again',
                                    f.worker) END,
            worker = NULL, planned_start = NULL, planned_end = NULL,
            -- The worker its next attempt avoids (migration 0087): where the backend could not place this
            -- one; kept through an attempt lost otherwise (it did not run), forgotten after one that ran.
            avoid_worker = CASE WHEN f.fault = 'not_placed' THEN f.worker WHEN f.state = 'lost' THEN t.avoid_worker END,
            not_before = now() + make_interval(secs => least(600.0, p_backoff_s * power(2, greatest(0,
                CASE WHEN f.state = 'lost' THEN t.lost_count ELSE t.failures END)))),
            -- (what hrwsi.enforce_task_transition would set: terminated is final, pending is not)
            updated_at = now(), history_pruned_at = NULL,
            finished_at = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN now() END
        FROM finished f, processing_routine r
        WHERE f.state IN ('internal_error', 'external_error', 'lost') AND t.id = ANY (ARRAY[f.task_id])
          AND t.attempts = f.attempt AND r.name = ANY (ARRAY[t.routine])
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.routine, t.state, t.state_reason, t.failures, t.lost_count, r.max_attempts,
                  t.priority, f.worker
    ), urgent AS (
        -- The urgent tasks (serving priority 0) that ended on a worker: processed with products, or retried
        SELECT p.id, p.worker, false AS retried FROM processed p
        WHERE p.priority = 0 AND product_count[p.n] > 0 AND p.worker IS NOT NULL
        UNION ALL
        SELECT fl.id, fl.worker, true FROM failed fl WHERE fl.priority = 0 AND fl.state = 'pending' AND fl.worker IS NOT NULL
    ), alerted AS (
        -- An attempt lost again and again says the infrastructure is sick: tell ops (3rd, 6th, 12th...).
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_lost_repeatedly', format('hrwsi: task %s lost %s attempts', fl.id, fl.lost_count),
               format('Task %s (routine %s) lost %s attempts to infrastructure faults; last: %s. '
                      'It is retried with backoff; check the launchers, workers and backend.',
                      fl.id, fl.routine, fl.lost_count, fl.state_reason), fl.id, fl.routine
        FROM failed fl
        WHERE fl.lost_count IN (3, 6, 12, 24, 48, 96, 192)
    )
    SELECT array_agg(f.id), array_agg(f.state), array_agg(f.task_id),
           -- (the candidates for a hand-over hold, and whether back-fill waits: a test made once per call, only
           -- with holds on and an urgent task ended, two index probes that stop at their first task; the hold
           -- itself is written by a statement of its own, only then, below)
           (SELECT array_agg(u.id) FROM urgent u), (SELECT array_agg(u.worker) FROM urgent u),
           (SELECT array_agg(u.retried) FROM urgent u),
           p_handover_hold_s > 0 AND EXISTS (SELECT 1 FROM urgent u)
           AND EXISTS (SELECT 1 FROM processing_task b WHERE b.state = 'pending' AND b.priority > 0
                       UNION ALL
                       SELECT 1 FROM processing_task b WHERE b.state = 'planned' AND b.priority > 0)
    INTO done_jobs, done_states, done_tasks, urgent_tasks, urgent_workers, urgent_retried, back_fill_waits
    FROM finished f;  -- (processed, failed and alerted run all the same: a WITH that modifies data
                      -- always runs to completion, read or not)

    -- A failed attempt's task goes back to pending for its retry; when its routine or its campaign
    -- is on hold (by an operator, or by the failure policy in an earlier call) it is held instead.
    -- (The hold held the tasks waiting then; a task whose attempt ended later went back to pending:
    -- a held campaign's tasks were planned, run and terminated one by one, and a held routine's sat
    -- pending, counted as held and shown as "cannot be planned"; migration 0047.) Its state test is not
    -- one an index serves (coalesce): planned on a table of a task or two, PostgreSQL 15 read every pending
    -- task through the index of states for each failed attempt, 20,000 for one (migration 0088).
    IF 'internal_error' = ANY (done_states) OR 'external_error' = ANY (done_states) OR 'lost' = ANY (done_states) THEN
        UPDATE processing_task t
        SET state = 'on_hold',
            state_reason = CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                                WHEN t.campaign_id IS NULL
                                THEN format('back-fill of routine %s on hold: %s', r.name, r.backfill_hold_reason)
                                ELSE (SELECT format('campaign %s on hold: %s', k.id, k.hold_reason)
                                      FROM campaign k WHERE k.id = t.campaign_id) END
        FROM processing_routine r
        WHERE t.id = ANY (done_tasks) AND coalesce(t.state = 'pending', false) AND r.name = ANY (ARRAY[t.routine])
          AND (r.on_hold OR (t.campaign_id IS NOT NULL
                             AND EXISTS (SELECT 1 FROM campaign k WHERE k.id = t.campaign_id AND k.on_hold))
               -- (a back-fill task of a routine whose back-fill is on hold: migration 0075)
               OR (t.campaign_id IS NULL AND r.backfill_hold_reason IS NOT NULL
                   AND EXISTS (SELECT 1 FROM lane l WHERE l.name = t.lane AND l.priority > 0)));
    END IF;

    IF back_fill_waits THEN
        -- Hand-over holds (migration 0117; ADR 0009): the room an urgent task had on its worker (what it was dispatched
        -- with), kept from back-fill for p_handover_hold_s: processed, while its products chain on into near-real-time
        -- work (it is in a priority-0 lane, and an active condition of such a lane reads their type: a back-fill's
        -- products stay in its lane, aged or not, and its next step is back-fill), for the next step the harvester
        -- and the orchestrator make of them; retried (still pending: not held above), until its back-off ends and the
        -- window after. Each task and routine a probe of its key.
        INSERT INTO handover_hold AS h (task_id, worker, cpu, ram_mb, storage_mb, kind, until)
        SELECT t.id, x.worker,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_cpu ELSE r.cpu END,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_ram_mb ELSE r.ram_mb END,
               CASE WHEN t.held_attempt = t.attempts THEN t.held_storage_mb ELSE r.storage_mb END,
               CASE WHEN x.retried THEN 'retry' ELSE 'next_step' END,
               greatest(now(), CASE WHEN x.retried THEN t.not_before END) + make_interval(secs => p_handover_hold_s)
        FROM unnest(urgent_tasks, urgent_workers, urgent_retried) AS x(id, worker, retried)
        CROSS JOIN LATERAL (SELECT t.* FROM processing_task t WHERE t.id = x.id OFFSET 0) t
        CROSS JOIN LATERAL (SELECT r.* FROM processing_routine r WHERE r.name = t.routine OFFSET 0) r
        WHERE CASE WHEN x.retried THEN t.state = 'pending'
                   ELSE EXISTS (SELECT 1 FROM lane l WHERE l.name = t.lane AND l.priority = 0)
                        AND EXISTS (SELECT 1 FROM processing_routine d JOIN processing_condition c ON c.routine = d.name
                                    JOIN lane l ON l.name = c.lane
                                    WHERE d.input_product_type = r.output_product_type AND c.active AND l.priority = 0)
              END
        ON CONFLICT (task_id) DO UPDATE
        SET worker = EXCLUDED.worker, cpu = EXCLUDED.cpu, ram_mb = EXCLUDED.ram_mb, storage_mb = EXCLUDED.storage_mb,
            kind = EXCLUDED.kind, since = EXCLUDED.since, until = EXCLUDED.until;
    END IF;

    -- The tasks as this call left them, read by primary key in a statement of its own (it sees the
    -- updates above). Joining the updates' own results instead was planned as a nested loop of
    -- one batch against the other (the generic plan expects one row each): 1,000 outcomes took
    -- 120 ms of the call's 220 ms, and 4x as long for twice as many. Each task is a probe of its
    -- key (LATERAL, OFFSET 0: never a join, which, planned while the table was small, was a merge
    -- join reading every task up to the batch's in every call; migration 0034).
    RETURN QUERY
    SELECT x.job, x.state, x.task, s.state, s.failures, s.max_attempts, s.lost_count
    FROM unnest(done_jobs, done_states, done_tasks) AS x(job, state, task)
    CROSS JOIN LATERAL (SELECT t.state, t.failures, r.max_attempts, t.lost_count
                        FROM processing_task t JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
                        WHERE t.id = x.task OFFSET 0) s;
END $$;

-- How jobs progressed (queued/running as the backend reported it, the latest per job), written
-- together: the job ids, their states, reasons, when each was seen, and the launcher identity that
-- followed each. Never moves a job out of a final state, nor one another launcher owns now. A
-- function (migration 0035), not a statement of the launcher's: as the other calls of the launcher,
-- its plans are made once per session and kept, and every join is a nested loop over the index of
-- its key. Sent as a prepared statement, a generic plan made while the task table was small read
-- every task (all 20,015, plans made on 5 tasks) to mark one job running.
CREATE FUNCTION hrwsi.mark_jobs_progress(p_jobs bigint[], p_states text[], p_reasons text[],
                                         p_seen timestamptz[], p_owners text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off SET jit = off AS $$
BEGIN
    WITH mark AS (
        SELECT m.job_id, m.state, m.reason, m.seen_at, m.owner
        FROM unnest(p_jobs, p_states, p_reasons, p_seen, p_owners) AS m(job_id, state, reason, seen_at, owner)
    ), j AS (
        UPDATE job j SET state = m.state, message = m.reason, updated_at = now(),
            started_at = CASE WHEN m.state = 'running' THEN coalesce(j.started_at, m.seen_at) ELSE j.started_at END
        FROM mark m
        -- Each job, then each task, a probe of its key (`= ANY (ARRAY[...])`; migration 0038): a plan
        -- made while the tables held a row or two read, to mark one job running, 20,004 jobs (most
        -- likely, as the claim's did, in the order of the key an equality with the batch makes
        -- worth reading; this plan was not read). The state tests are wrapped as in
        -- hrwsi.record_outcomes, so that no index of states serves them.
        WHERE j.id = ANY (ARRAY[m.job_id]) AND j.owner = m.owner
          AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
          -- (a new reason in the same state too: "its node is disconnected ... retried at 17:42 UTC"
          -- was logged, while status and the dashboard kept "running on node-a"; migration 0050)
          AND (j.state <> m.state OR j.message IS DISTINCT FROM m.reason)
        RETURNING j.task_id, j.attempt, m.state, m.reason
    )
    -- (updated_at as the transition triggers would set it: they are not called for these rows; an attempt
    -- that runs was placed: the worker an earlier one could not be placed on is avoided no more, migration 0087)
    UPDATE processing_task t SET state = j.state, state_reason = j.reason, updated_at = now(),
        avoid_worker = CASE WHEN j.state = 'running' THEN NULL ELSE t.avoid_worker END
    FROM j WHERE t.id = ANY (ARRAY[j.task_id]) AND t.attempts = j.attempt
      AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
      AND (t.state <> j.state OR t.state_reason IS DISTINCT FROM j.reason);
END $$;

-- =============================================================================================
-- Plans: computed outside the database, stored in one call if nothing was planned meanwhile.
-- =============================================================================================
CREATE TABLE hrwsi.plan_generation (
    id         boolean PRIMARY KEY DEFAULT true CONSTRAINT plan_generation_has_a_single_row CHECK (id),
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO hrwsi.plan_generation DEFAULT VALUES;

CREATE FUNCTION hrwsi.store_plan(
    p_owner text, p_lease_s double precision, p_generation bigint, p_planned_at timestamptz,
    p_task_count integer, p_makespan_s double precision, p_lower_bound_s double precision, p_vms integer,
    p_vm_hours double precision, p_planning_s double precision, p_figures jsonb,
    p_ids bigint[], p_workers text[], p_starts double precision[], p_ends double precision[],
    p_unplannable bigint[], p_reasons text[])
RETURNS TABLE (plan_id bigint, stored integer, reasons_changed integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
-- Optimistic: the plan was computed from what the database held at generation p_generation. If
-- another orchestrator stored a plan since, nothing is stored (the caller plans again), so two
-- plans never overlap each other's capacity. No lock is held while the planner computes. A task that
-- started to wait for an earlier scene's upstream work after the plan's snapshot (waits_for_upstream,
-- migration 0072) is neither planned nor given a reason: planned, it was never dispatched and held its
-- worker in later plans (found by review).
DECLARE
    new_plan bigint;
    n_stored integer := 0;
    n_reasons integer := 0;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    UPDATE plan_generation SET generation = generation + 1 WHERE generation = p_generation;
    IF NOT FOUND THEN
        RETURN;   -- stale: no row
    END IF;
    IF cardinality(p_ids) > 0 THEN
        INSERT INTO plan (task_count, makespan_s, lower_bound_s, vms, vm_hours, planning_s, figures)
        VALUES (p_task_count, p_makespan_s, p_lower_bound_s, p_vms, p_vm_hours, p_planning_s, p_figures)
        RETURNING id INTO new_plan;
        -- (the tasks locked first, in the order of their ids, as every writer of many tasks locks them: in
        -- the plan's order this deadlocked with an INSERT that made such tasks urgent behind a fresh scene of
        -- their series; migration 0084)
        PERFORM 1 FROM processing_task t WHERE t.id = ANY (p_ids) AND t.state = 'pending'
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        -- (a task that avoids a worker says so, which worker and where it is planned, as its reason said before
        -- the plan: the plan cleared it, and only `hrwsi task show` said it; migration 0089. The planner puts it
        -- back on that worker only when no other active worker of a flavour it fits exists: planning_input.screen)
        UPDATE processing_task t
        SET state = 'planned', worker = a.worker, planned_start = p_planned_at + make_interval(secs => a.start_s),
            planned_end = p_planned_at + make_interval(secs => a.end_s), plan_id = new_plan,
            state_reason = CASE WHEN t.avoid_worker IS NULL THEN NULL
                                WHEN t.avoid_worker = a.worker
                                THEN format('its last attempt could not be placed on worker %s: planned there again, no '
                                            'other active worker of a flavour it fits', t.avoid_worker)
                                ELSE format('its last attempt could not be placed on worker %s: planned on worker %s',
                                            t.avoid_worker, a.worker) END
        FROM unnest(p_ids, p_workers, p_starts, p_ends) AS a(id, worker, start_s, end_s)
        WHERE t.id = a.id AND t.state = 'pending' AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_stored = ROW_COUNT;
    END IF;
    IF cardinality(p_unplannable) > 0 THEN
        -- (only those whose reason changes: the others are not written, and a plan that leaves
        -- thousands of tasks unplaced, a back-fill waiting for capacity, locked each of them again at
        -- every plan, a write-ahead log record apiece)
        PERFORM 1 FROM processing_task t JOIN unnest(p_unplannable, p_reasons) AS u(id, reason) ON u.id = t.id
        WHERE t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason
          AND (t.waits_for_upstream IS NULL OR t.dependency_waived)
        ORDER BY t.id FOR NO KEY UPDATE OF t;
        UPDATE processing_task t SET state_reason = u.reason
        FROM unnest(p_unplannable, p_reasons) AS u(id, reason)
        WHERE t.id = u.id AND t.state = 'pending' AND t.state_reason IS DISTINCT FROM u.reason
          AND (t.waits_for_upstream IS NULL OR t.dependency_waived);
        GET DIAGNOSTICS n_reasons = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT new_plan, n_stored, n_reasons;
END $$;

-- =============================================================================================
-- The web dashboard and the metrics endpoints (migration 0007, docs/adr/0007-web-dashboard.md):
-- the view they read tasks through, their indexes, and the audit of operator actions.
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Tasks as the dashboard and the metrics read them, with their lane (ADR 0009). Every dashboard
-- and metrics query reads tasks through this view, so the lane shown and counted is chosen in
-- this one place: a later rule (e.g. a campaign's lane) is one `CREATE OR REPLACE VIEW`.
-- ---------------------------------------------------------------------------------------------
CREATE VIEW hrwsi.dashboard_task AS
SELECT t.id, t.input_id, t.routine, t.worker, t.planned_start, t.planned_end, t.depends_on, t.state,
       t.state_reason, t.attempts, t.failures, t.not_before, t.plan_id, t.created_at, t.updated_at,
       t.lane, t.deadline_at, t.held_cpu, t.held_ram_mb, t.held_storage_mb, t.held_attempt
FROM hrwsi.processing_task t;

-- ---------------------------------------------------------------------------------------------
-- Indexes.
-- ---------------------------------------------------------------------------------------------

-- The task list filtered by routine or by state, newest first, one page at a time (keyset on
-- id): a rare routine or state (terminated) among a million processed tasks is one index range,
-- not a scan of the table. Both filters together use whichever is rarer.
CREATE INDEX processing_task_routine_id_idx ON hrwsi.processing_task (routine, id);
CREATE INDEX processing_task_state_id_idx ON hrwsi.processing_task (state, id);

-- The held tasks of campaigns (migration 0110): a held campaign's count of them (`hrwsi status`, the overview) without
-- reading every task the campaign ran, nor every task held anywhere.
CREATE INDEX processing_task_campaign_held_idx ON hrwsi.processing_task (campaign_id)
    WHERE campaign_id IS NOT NULL AND state = 'on_hold';
-- The inputs a correction superseded (migration 0110): `hrwsi retry --routine`'s list and the look-ups of an input's
-- correction read the few of them, not every input.
CREATE INDEX input_superseded_by_idx ON hrwsi.input (superseded_by, id) WHERE superseded_by IS NOT NULL;

-- Throughput and recent failures: jobs that ended in the last hours, without reading the others.
CREATE INDEX job_finished_at_idx ON hrwsi.job (finished_at) WHERE finished_at IS NOT NULL;
-- The latest failed attempts (the dashboard's and `hrwsi status`'s recent failures), without reading the attempts that
-- succeeded: through job_finished_at_idx, an installation with few failures read every job back to its 10th latest
-- failure, the whole archive when it had fewer (migration 0100).
CREATE INDEX job_failed_idx ON hrwsi.job (finished_at DESC NULLS LAST, id DESC)
    WHERE state IN ('internal_error', 'external_error', 'lost');

-- Lineage downstream of a product that became a member of a multi-input group input.
CREATE INDEX multi_input_member_path_idx ON hrwsi.multi_input_member (member_path);

-- The task list filtered by tile, newest first.
CREATE INDEX input_tile_id_idx ON hrwsi.input (tile, id) WHERE tile IS NOT NULL;

-- The search box: a piece of an input's file name (the last part of its path), any case. A
-- trigram index finds a rare one among a million inputs in milliseconds instead of seconds; it
-- costs 10-25 microseconds per inserted input (10,000 inputs of 70-character names in one INSERT,
-- with their tasks: 0.40-0.45 s with it, 0.30 s without; 2026-11-30).
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
        CHECK (action IN ('retry_task', 'cancel_task', 'hold_task', 'release_task', 'hold_routine', 'release_routine',
                          'release_campaign')),
    target    text NOT NULL CONSTRAINT operator_action_target_is_not_empty CHECK (btrim(target) <> ''),
    succeeded boolean NOT NULL,
    outcome   text NOT NULL,
    client    text            -- the client's address as the dashboard saw it
);
CREATE INDEX operator_action_target_idx ON hrwsi.operator_action (target, id);

-- =============================================================================================
-- Timeliness (how long after sensing, and after publication, each product was registered) and
-- the progress of reprocessing campaigns (ADR 0010).
-- =============================================================================================

-- One row per product: seconds from its input's sensing time (measured_at) and publication time
-- (published_at) to its registration (product.created_at, when the launcher recorded it), and
-- whether it met its task's own deadline (NULL: the task had none; a deadline it took from a
-- near-real-time task after it in its time series, to be served first, is not its own: migration
-- 0083, an archive product was counted late for a fresh scene's deadline). A chained input carries the
-- original scene's sensing time and, as publication, the upstream product's registration: so
-- from_sensing_s is the delay from the satellite, from_publication_s the delay of this step.
-- day is the UTC day of registration.
CREATE VIEW hrwsi.product_timeliness AS
SELECT p.id AS product_id, p.product_type, p.path, p.task_id, t.routine, t.lane, t.campaign_id,
       i.processing_condition AS condition, i.tile, (p.created_at AT TIME ZONE 'UTC')::date AS day,
       i.measured_at, i.published_at, p.created_at AS registered_at, d.deadline_at,
       extract(epoch FROM p.created_at - i.measured_at)::float8 AS from_sensing_s,
       extract(epoch FROM p.created_at - i.published_at)::float8 AS from_publication_s,
       p.created_at <= d.deadline_at AS on_time
FROM hrwsi.product p
JOIN hrwsi.processing_task t ON t.id = p.task_id
JOIN hrwsi.input i ON i.id = t.input_id
CROSS JOIN LATERAL (SELECT CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at
                                ELSE t.own_deadline_at END AS deadline_at) d;

-- Per routine, lane, tile and day: products, the median and 95th percentile of both delays, and
-- the share on time among the products that had a deadline (NULL: none had one). Production's alone (migration
-- 0122): a reprocessing campaign's products, of scenes sensed months or years before, were counted with the lane's
-- production ones (the archive lane's back-fill), their delays and share on time (found by exploratory testing);
-- `hrwsi campaigns` follows a campaign, and product_timeliness keeps every product with its campaign_id.
CREATE VIEW hrwsi.timeliness AS
SELECT routine, lane, tile, day, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline,
       count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time
FROM hrwsi.product_timeliness
WHERE campaign_id IS NULL
GROUP BY routine, lane, tile, day;

-- One day's rows of the timeliness view, the overview's: the tasks and inputs of the day's products probed by their
-- keys, never the task table read whole for them by a hash join (migration 0113).
CREATE FUNCTION hrwsi.timeliness_of_day(p_day date, max_rows integer)
RETURNS TABLE (routine text, lane text, tile text, day date, products bigint, p50_from_sensing_s float8,
               p95_from_sensing_s float8, p50_from_publication_s float8, p95_from_publication_s float8,
               on_time bigint, with_deadline bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi SET enable_hashjoin = off SET enable_mergejoin = off
SET jit = off AS $$
    SELECT v.routine, v.lane, v.tile, v.day, v.products, v.p50_from_sensing_s, v.p95_from_sensing_s,
           v.p50_from_publication_s, v.p95_from_publication_s, v.on_time, v.with_deadline
    FROM hrwsi.timeliness v WHERE v.day = p_day
    ORDER BY v.routine, v.lane, v.tile LIMIT max_rows
$$;

-- A campaign's progress, per routine (its own, and the routines its products chained into):
-- tasks per state, products, when its first attempt started, and when it finished (every task
-- final and every product chained; NULL while it runs).
CREATE VIEW hrwsi.campaign_progress AS
SELECT k.id AS campaign_id, k.name, k.routine AS campaign_routine, k.condition, k.measured_from, k.measured_to,
       k.tiles, nullif(concat_ws(' ', k.image, array_to_string(k.command, ' ')), '') AS version, k.lane, k.chain,
       k.created_at, k.created_by, t.routine, count(t.id) AS tasks,
       count(t.id) FILTER (WHERE t.state IN ('pending', 'planned', 'on_hold', 'blocked')) AS waiting,
       count(t.id) FILTER (WHERE t.state IN ('dispatched', 'queued', 'running')) AS running,
       count(t.id) FILTER (WHERE t.state = 'processed') AS processed,
       count(t.id) FILTER (WHERE t.state = 'terminated') AS terminated,
       count(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled,
       coalesce(sum(x.products), 0)::bigint AS products,
       coalesce(sum(x.unchained), 0)::bigint AS unchained_products,
       min(x.started_at) AS started_at,
       CASE WHEN count(t.id) > 0 AND bool_and(t.state IN ('processed', 'terminated', 'cancelled'))
                 AND coalesce(sum(x.unchained), 0) = 0
            THEN max(greatest(t.updated_at, x.chained_at)) END AS finished_at,
       k.on_hold, k.hold_reason, k.cancelled_at, k.cancelled_by
FROM hrwsi.campaign k
LEFT JOIN hrwsi.processing_task t ON t.campaign_id = k.id
LEFT JOIN LATERAL (SELECT count(*) AS products, count(*) FILTER (WHERE p.chained_at IS NULL) AS unchained,
                          max(p.chained_at) AS chained_at,
                          (SELECT min(j.started_at) FROM hrwsi.job j WHERE j.task_id = t.id) AS started_at
                   FROM hrwsi.product p WHERE p.task_id = t.id) x ON true
GROUP BY k.id, t.routine;

-- =============================================================================================
-- Roles and grants. Least privilege: three NOLOGIN roles, granted to login users (e.g.
-- GRANT hrwsi_service TO launcher_vm). Roles belong to the server, not to one database: they are
-- created only when missing.
-- =============================================================================================

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

REVOKE ALL ON SCHEMA hrwsi FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hrwsi FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA hrwsi FROM PUBLIC;

-- Everyone reads.
GRANT USAGE ON SCHEMA hrwsi TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT SELECT ON ALL TABLES IN SCHEMA hrwsi TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT SELECT ON public.hrwsi_schema_migration TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Data engineers add inputs and configure harvest sources and multi-input rules; they cannot
-- change tasks, jobs or the history. Of an input, they give what it is, never what hrwsi records
-- (when it came, from which source or product, for which campaign: migration 0051).
GRANT INSERT (processing_condition, input_path, tile, mission, measured_at, published_at, scene_id, lane)
    ON hrwsi.input TO hrwsi_data_engineer;
GRANT INSERT, UPDATE, DELETE ON hrwsi.multi_input_rule, hrwsi.multi_input_requirement TO hrwsi_data_engineer;
-- Of a harvest source, what it is, not the harvester's bookkeeping (its claim, last run and error):
-- a data engineer's claim stopped a source for a day, status said a harvester would take it over,
-- and a planted last_error read as hrwsi's (found by exploratory testing; migration 0066).
GRANT INSERT (name, kind, product_type, config, frequency, frequency_interval, cron, mode, overlap, first_lookback,
              backfill_from, backfill_to, backfill_cursor, last_success_at, next_run_at, active),
      UPDATE (name, kind, product_type, config, frequency, frequency_interval, cron, mode, overlap, first_lookback,
              backfill_from, backfill_to, backfill_cursor, last_success_at, next_run_at, active),
      DELETE ON hrwsi.harvest_source TO hrwsi_data_engineer;

-- Services change the work tables and run the sources; they create no tables and change no
-- configuration. The history (task_event) is written by its trigger alone, as the owner; tasks
-- are created by hrwsi.create_tasks_for_new_inputs and hrwsi.reprocess alone, as the owner.
GRANT INSERT, UPDATE ON hrwsi.input, hrwsi.job, hrwsi.product, hrwsi.plan, hrwsi.alert TO hrwsi_service;
GRANT UPDATE ON hrwsi.processing_task TO hrwsi_service;
-- (the hand-over holds the outcome writer keeps, migration 0117; hrwsi.dispatch ends them as their owner)
GRANT INSERT, UPDATE ON hrwsi.handover_hold TO hrwsi_service;
GRANT INSERT, UPDATE, DELETE ON hrwsi.service_instance TO hrwsi_service;
GRANT UPDATE (active, node_id, updated_at) ON hrwsi.worker TO hrwsi_service;
GRANT UPDATE (last_run_at, last_success_at, next_run_at, last_error, backfill_cursor, claim_token, claimed_by,
              claimed_until, backfill_resume_at) ON hrwsi.harvest_source TO hrwsi_service;
GRANT INSERT, UPDATE, DELETE ON hrwsi.landing_file, hrwsi.multi_input_member TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.retry_task(bigint), hrwsi.cancel_task(bigint), hrwsi.hold_task(bigint),
    hrwsi.release_task(bigint), hrwsi.hold_routine(text, text), hrwsi.release_routine(text) TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.move_tasks(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.move_tasks(text, text) TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.keep_a_conditions_missed_range() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.keep_a_conditions_missed_range() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (migration 0118) Called by that trigger, as whoever makes a condition inactive.
REVOKE EXECUTE ON FUNCTION hrwsi.products_to_chain_were_recorded_from() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.products_to_chain_were_recorded_from() TO hrwsi_readonly, hrwsi_data_engineer,
    hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.chain_missed_products(text, timestamptz, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.chain_missed_products(text, timestamptz, integer, boolean)
    TO hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.give_back_taken_deadlines(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION hrwsi.pass_deadlines_down(bigint[]), hrwsi.series_waiters_of(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION hrwsi.missed_products(text), hrwsi.close_a_missed_range(text) FROM PUBLIC;  -- (migration 0078)
GRANT EXECUTE ON FUNCTION hrwsi.close_a_missed_range(text) TO hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.conditions_missing_products() FROM PUBLIC;  -- (migration 0077: `hrwsi status`)
GRANT EXECUTE ON FUNCTION hrwsi.conditions_missing_products() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Trigger functions must stay callable by whoever writes the tables that fire them.
GRANT EXECUTE ON FUNCTION hrwsi.refuse_future_input_dates(), hrwsi.notify_count(),
    hrwsi.notify_state_counts(), hrwsi.enforce_task_transition(),
    hrwsi.enforce_job_transition(), hrwsi.refuse_history_change(), hrwsi.apply_failure_policy(),
    hrwsi.hold_routine_tasks(), hrwsi.refuse_truncate(),
    hrwsi.task_transition_is_allowed(text, text), hrwsi.task_state_is_final(text),
    hrwsi.job_transition_is_allowed(text, text), hrwsi.state_is_under_way(text)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Lanes, leases and one-statement claims (ADR 0009): the planner's generation, the claim and
-- outcome functions for the services; the trigger functions for whoever inserts inputs.
GRANT UPDATE ON hrwsi.plan_generation TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.create_tasks_for_new_inputs(),
    hrwsi.promote_aged_tasks(), hrwsi.lease_is_fresh(text, double precision),
    hrwsi.require_lease(text, double precision),
    hrwsi.dispatch(text, text, double precision, integer, text),
    hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                          timestamptz[], timestamptz[], text[], bigint[], text[], bigint[], double precision),
    hrwsi.store_plan(text, double precision, bigint, timestamptz, integer, double precision, double precision,
                     integer, double precision, double precision, jsonb, bigint[], text[], double precision[],
                     double precision[], bigint[], text[])
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION hrwsi.mark_jobs_progress(bigint[], text[], text[], timestamptz[], text[]) FROM PUBLIC;
-- Trigger functions stay callable by whoever writes the tables that fire them.
GRANT EXECUTE ON FUNCTION hrwsi.create_tasks_for_new_inputs()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.promote_aged_tasks(), hrwsi.lease_is_fresh(text, double precision),
    hrwsi.require_lease(text, double precision),
    hrwsi.dispatch(text, text, double precision, integer, text),
    hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                          timestamptz[], timestamptz[], text[], bigint[], text[], bigint[], double precision),
    hrwsi.store_plan(text, double precision, bigint, timestamptz, integer, double precision, double precision,
                     integer, double precision, double precision, jsonb, bigint[], text[], double precision[],
                     double precision[], bigint[], text[])
    TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.mark_jobs_progress(bigint[], text[], text[], timestamptz[], text[]) TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.take_backend_scope(text, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.take_backend_scope(text, text, double precision) TO hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.plan_again_what_no_longer_fits() FROM PUBLIC;
-- (a trigger function: callable by whoever writes the tables that fire it)
GRANT EXECUTE ON FUNCTION hrwsi.plan_again_what_no_longer_fits() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.end_a_routines_series() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.end_a_routines_series() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.hold_routine_back_fill() FROM PUBLIC;
-- (a trigger function: callable by whoever writes the table that fires it)
GRANT EXECUTE ON FUNCTION hrwsi.hold_routine_back_fill() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (the members a multi-input group has now: `hrwsi groups` reads it, as any role)
REVOKE EXECUTE ON FUNCTION hrwsi.multi_input_members_now(text, text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.multi_input_members_now(text, text, date) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (the finished tasks' counts, read by the dashboard, /metrics and `hrwsi status` as any role; the trigger function
-- callable by whoever deletes tasks: migration 0105)
REVOKE EXECUTE ON FUNCTION hrwsi.finished_task_counts(), hrwsi.uncount_removed_tasks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.finished_task_counts(), hrwsi.uncount_removed_tasks()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (the walk down a chain from inputs, read by `hrwsi retry --routine R` as any role that reads tasks: migration 0107)
REVOKE EXECUTE ON FUNCTION hrwsi.tasks_down_a_chain(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.tasks_down_a_chain(bigint[]) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- The web dashboard (0007): it reads tasks through dashboard_task; the audit is append-only for the services.
GRANT SELECT ON hrwsi.dashboard_task, hrwsi.operator_action TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (whether a held task's hold is an operator's, which the task's page reads to offer a Hold of one held with its
-- routine or campaign alone: migration 0112)
GRANT EXECUTE ON FUNCTION hrwsi.hold_is_the_tasks_own(text) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT INSERT ON hrwsi.operator_action TO hrwsi_service;

-- Timeliness and reprocessing campaigns (ADR 0010): the operator functions and the deadline check.
GRANT EXECUTE ON FUNCTION hrwsi.reprocess(text, text, timestamptz, timestamptz, text[], text[], text, boolean, text, boolean),
    hrwsi.cancel_campaign(bigint), hrwsi.raise_deadline_alerts()
    TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.release_campaign(bigint), hrwsi.hold_campaign(bigint, text) TO hrwsi_service;
-- Times and durations in the database's sentences (migration 0059): whoever reads them may call them.
GRANT EXECUTE ON FUNCTION hrwsi.utc_text(timestamptz), hrwsi.duration_text(interval)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.cannot_be_planned(text, text, timestamptz)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (a day's timeliness, read by the dashboard as any role: migration 0113)
REVOKE EXECUTE ON FUNCTION hrwsi.timeliness_of_day(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.timeliness_of_day(date, integer) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (an input more than a day past its deadline is back-fill, decided as tasks are made: migration 0075)
REVOKE EXECUTE ON FUNCTION hrwsi.arrives_as_back_fill(text, bigint, bigint, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.arrives_as_back_fill(text, bigint, bigint, timestamptz, timestamptz)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- A time series of a chained step (migration 0072): the functions that decide what its tasks wait
-- for run as the owner, called by the trigger functions and hrwsi.retry_task alone; the trigger
-- function of chained products stays callable by whoever writes products.
REVOKE EXECUTE ON FUNCTION hrwsi.upstream_wait_reason(bigint) FROM PUBLIC;  -- (migration 0077: for the functions above)
REVOKE EXECUTE ON FUNCTION hrwsi.open_upstream_work(text, text, bigint, timestamptz, timestamptz),
    hrwsi.wait_for_upstream(bigint[]), hrwsi.wait_for_upstream_after(bigint[], boolean), hrwsi.after_products_chained(),
    hrwsi.recheck_upstream_waits(integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.recheck_upstream_waits(integer) TO hrwsi_service;
GRANT EXECUTE ON FUNCTION hrwsi.after_products_chained() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (migration 0076) The wait for a busy time series runs inside hrwsi.create_tasks_for_new_inputs, as
-- its owner; the refusal to remove a product inputs name is a trigger function.
REVOKE EXECUTE ON FUNCTION hrwsi.wait_for_a_series(text, text), hrwsi.refuse_removing_products_inputs_name() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.refuse_removing_products_inputs_name() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (migration 0084) A time series' lock key, which the harvester's chaining and `hrwsi status` compute too.
REVOKE EXECUTE ON FUNCTION hrwsi.series_lock_key(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.series_lock_key(text, text) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (migration 0084) The series' locks a retry and the upstream functions take: called by them alone.
REVOKE EXECUTE ON FUNCTION hrwsi.series_lock_keys_downstream_of(bigint[]), hrwsi.retry_series_lock_keys(bigint) FROM PUBLIC;
-- (migration 0084) The tasks after a cancelled one take the one before it: called by hrwsi.after_task_changes alone.
REVOKE EXECUTE ON FUNCTION hrwsi.skip_cancelled_tasks(bigint[]) FROM PUBLIC;
-- (migration 0079) The refusal to change what a task was made from is a trigger function, callable by
-- whoever writes inputs; scene_id_of is for every role's INSERT.
REVOKE EXECUTE ON FUNCTION hrwsi.correct_input(bigint, text, timestamptz, timestamptz, text, text, text, text) FROM PUBLIC;
-- (migration 0104) The last correction: read by all; written by hrwsi.correct_input alone, which runs as the owner.
REVOKE ALL ON hrwsi.last_correction FROM PUBLIC;
GRANT SELECT ON hrwsi.last_correction TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.see_the_corrections_before(text, text) FROM PUBLIC;
-- (migration 0118) Called by hrwsi.reprocess and hrwsi.chain_missed_products, which run as the owner.
REVOKE EXECUTE ON FUNCTION hrwsi.session_named(integer), hrwsi.take_a_lock_or_say_who_holds_it(text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.correct_input(bigint, text, timestamptz, timestamptz, text, text, text, text)
    TO hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from(), hrwsi.scene_id_of(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from(), hrwsi.scene_id_of(text)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- Cycles of chaining (migration 0073): the check `hrwsi config load` and the guard share.
REVOKE EXECUTE ON FUNCTION hrwsi.chain_cycle(), hrwsi.chain_cycle_problem(text[]), hrwsi.refuse_a_chain_cycle()
    FROM PUBLIC;
-- (read by `hrwsi config load` and `config validate`, whatever the role; the trigger function is
-- callable by whoever writes the tables that fire it)
GRANT EXECUTE ON FUNCTION hrwsi.chain_cycle(), hrwsi.chain_cycle_problem(text[]), hrwsi.refuse_a_chain_cycle()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- =============================================================================================
-- Retention (README.md, Retention; hrwsi.retention): the policy, and the maintenance functions,
-- owned by the schema owner, that alone delete history, applying the policy.
-- =============================================================================================
-- (Products listed by a group input are found by multi_input_member_path_idx, migration 0009.)
CREATE INDEX landing_file_done_idx ON hrwsi.landing_file (updated_at)
    WHERE state IN ('previously_received', 'failed');

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

CREATE FUNCTION hrwsi.delete_history_and_attempts(ids bigint[]) RETURNS TABLE (kind text, path text, root text)
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

CREATE FUNCTION hrwsi.prune_products(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of product rows older than products that no input was made from (chaining) and no
-- group input lists, nor a campaign's composite (migration 0073): a kept product's ancestors always
-- have a child, so they stay. Only chained products (the harvester has seen them). Their files are not touched: they are the archive's.
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT p.id FROM hrwsi.product p
            WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy)
              AND p.chained_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member m WHERE m.member_path = p.path)
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
