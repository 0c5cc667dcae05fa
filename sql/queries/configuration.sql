-- Loading a configuration file (hrwsi config load): upserts of the reference tables.
-- Placeholders: psycopg (%(name)s).

-- name: upsert_flavour
INSERT INTO hrwsi.flavour (name, cpu, ram_mb, disk_mb) VALUES (%(name)s, %(cpu)s, %(ram_mb)s, %(disk_mb)s)
ON CONFLICT (name) DO UPDATE SET cpu = EXCLUDED.cpu, ram_mb = EXCLUDED.ram_mb, disk_mb = EXCLUDED.disk_mb;

-- name: upsert_worker
INSERT INTO hrwsi.worker (name, flavour, active) VALUES (%(name)s, %(flavour)s, %(active)s)
ON CONFLICT (name) DO UPDATE SET flavour = EXCLUDED.flavour, active = EXCLUDED.active, updated_at = now();

-- name: update_budget
UPDATE hrwsi.budget SET cpu_max = %(cpu_max)s, ram_max_mb = %(ram_max_mb)s,
    storage_max_mb = %(storage_max_mb)s, vm_max = %(vm_max)s;

-- name: upsert_routine
INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, timeout, image, command,
    input_product_type, output_product_type, max_attempts, flavour, sequential_per_tile, env, hold_after_failures)
VALUES (%(name)s, %(cpu)s, %(ram_mb)s, %(storage_mb)s, make_interval(secs => %(expected_duration_s)s),
    CASE WHEN %(timeout_s)s::float8 IS NULL THEN NULL ELSE make_interval(secs => %(timeout_s)s::float8) END,
    %(image)s, %(command)s, %(input_product_type)s, %(output_product_type)s, %(max_attempts)s, %(flavour)s,
    %(sequential_per_tile)s, %(env)s::jsonb, %(hold_after_failures)s)
ON CONFLICT (name) DO UPDATE SET cpu = EXCLUDED.cpu, ram_mb = EXCLUDED.ram_mb, storage_mb = EXCLUDED.storage_mb,
    expected_duration = EXCLUDED.expected_duration, timeout = EXCLUDED.timeout, image = EXCLUDED.image,
    command = EXCLUDED.command, input_product_type = EXCLUDED.input_product_type,
    output_product_type = EXCLUDED.output_product_type, max_attempts = EXCLUDED.max_attempts,
    flavour = EXCLUDED.flavour, sequential_per_tile = EXCLUDED.sequential_per_tile, env = EXCLUDED.env,
    hold_after_failures = EXCLUDED.hold_after_failures;

-- name: upsert_condition
-- A changed lane or deadline applies to the tasks created from now on (a task keeps its own).
INSERT INTO hrwsi.processing_condition (name, routine, publication_window, measurement_window, tiles, active, lane,
    deadline, deadline_from)
VALUES (%(name)s, %(routine)s,
    CASE WHEN %(publication_window_days)s::float8 IS NULL THEN NULL
         ELSE make_interval(days => 0, secs => %(publication_window_days)s::float8 * 86400) END,
    CASE WHEN %(measurement_window_days)s::float8 IS NULL THEN NULL
         ELSE make_interval(days => 0, secs => %(measurement_window_days)s::float8 * 86400) END,
    %(tiles)s, %(active)s, %(lane)s,
    CASE WHEN %(deadline_hours)s::float8 IS NULL THEN NULL
         ELSE make_interval(secs => %(deadline_hours)s::float8 * 3600) END,
    %(deadline_from)s)
ON CONFLICT (name) DO UPDATE SET routine = EXCLUDED.routine, publication_window = EXCLUDED.publication_window,
    measurement_window = EXCLUDED.measurement_window, tiles = EXCLUDED.tiles, active = EXCLUDED.active,
    lane = EXCLUDED.lane, deadline = EXCLUDED.deadline, deadline_from = EXCLUDED.deadline_from;

-- name: upsert_multi_input_rule
INSERT INTO hrwsi.multi_input_rule (processing_condition, window_days, every_day_of_window, wait_for_open_tasks)
VALUES (%(condition)s, %(window_days)s, %(every_day_of_window)s, %(wait_for_open_tasks)s)
ON CONFLICT (processing_condition) DO UPDATE SET window_days = EXCLUDED.window_days,
    every_day_of_window = EXCLUDED.every_day_of_window, wait_for_open_tasks = EXCLUDED.wait_for_open_tasks;

-- name: replace_multi_input_requirements
-- A rule's requirements are the file's list: those not listed any more go.
WITH gone AS (
    DELETE FROM hrwsi.multi_input_requirement
    WHERE processing_condition = %(condition)s AND NOT product_type = ANY(%(product_types)s::text[])
)
INSERT INTO hrwsi.multi_input_requirement (processing_condition, product_type, min_count)
SELECT %(condition)s, t, n FROM unnest(%(product_types)s::text[], %(min_counts)s::int[]) AS r(t, n)
ON CONFLICT (processing_condition, product_type) DO UPDATE SET min_count = EXCLUDED.min_count;
