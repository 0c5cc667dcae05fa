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
    storage_max_mb = %(storage_max_mb)s, vm_max = %(vm_max)s, plan_mode = %(plan_mode)s,
    plan_horizon = %(plan_horizon_hours)s::float8 * interval '1 hour';

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
INSERT INTO hrwsi.processing_condition (name, routine, publication_window, measurement_window, tiles, active, lane,
    deadline, deadline_from)
VALUES (%(name)s, %(routine)s,
    CASE WHEN %(publication_window_days)s::float8 IS NULL THEN NULL
         ELSE make_interval(days => 0, secs => %(publication_window_days)s::float8 * 86400) END,
    CASE WHEN %(measurement_window_days)s::float8 IS NULL THEN NULL
         ELSE make_interval(days => 0, secs => %(measurement_window_days)s::float8 * 86400) END,
    %(tiles)s, %(active)s, %(lane)s, %(deadline_hours)s::float8 * interval '1 hour', %(deadline_from)s)
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

-- name: update_retention_policy
-- Days as intervals; NULL (the file's "forever") keeps everything of that kind.
UPDATE hrwsi.retention_policy SET enabled = %(enabled)s,
    task_history = %(task_history_days)s::float8 * interval '1 day',
    finished_tasks = %(finished_task_days)s::float8 * interval '1 day',
    products = %(product_days)s::float8 * interval '1 day',
    plans = %(plan_days)s::float8 * interval '1 day',
    alerts = %(alert_days)s::float8 * interval '1 day',
    landing_files = %(landing_file_days)s::float8 * interval '1 day',
    dead_services = %(dead_service_hours)s::float8 * interval '1 hour',
    batch_size = %(batch_size)s,
    run_every = %(interval_s)s::float8 * interval '1 second';

-- name: config_flavour_names
SELECT name FROM hrwsi.flavour;

-- name: config_routine_names
SELECT name FROM hrwsi.processing_routine;

-- name: config_budget
SELECT cpu_max::float8 AS cpu_max, ram_max_mb, storage_max_mb, vm_max, plan_mode,
       extract(epoch FROM plan_horizon)::float8 / 3600 AS plan_horizon_hours
FROM hrwsi.budget;

-- name: config_flavours
SELECT name, cpu::float8 AS cpu, ram_mb, disk_mb FROM hrwsi.flavour ORDER BY name;

-- name: config_workers
SELECT name, flavour, active FROM hrwsi.worker ORDER BY name;

-- name: config_routines
SELECT name, cpu::float8 AS cpu, ram_mb, storage_mb,
       extract(epoch FROM expected_duration)::float8 AS expected_duration_s,
       extract(epoch FROM timeout)::float8 AS timeout_s, command, image, input_product_type, output_product_type,
       max_attempts, hold_after_failures, flavour, sequential_per_tile, env
FROM hrwsi.processing_routine ORDER BY name;

-- name: config_conditions
SELECT name, routine, extract(epoch FROM publication_window)::float8 / 86400 AS publication_window_days,
       extract(epoch FROM measurement_window)::float8 / 86400 AS measurement_window_days, tiles, active, lane,
       extract(epoch FROM deadline)::float8 / 3600 AS deadline_hours, deadline_from
FROM hrwsi.processing_condition ORDER BY name;

-- name: config_multi_input_rules
SELECT processing_condition AS condition, window_days, every_day_of_window, wait_for_open_tasks
FROM hrwsi.multi_input_rule ORDER BY processing_condition;

-- name: config_multi_input_requirements
SELECT processing_condition AS condition, product_type, min_count
FROM hrwsi.multi_input_requirement ORDER BY processing_condition, product_type;

-- name: config_retention
SELECT enabled, extract(epoch FROM task_history)::float8 / 86400 AS task_history_days,
       extract(epoch FROM finished_tasks)::float8 / 86400 AS finished_task_days,
       extract(epoch FROM products)::float8 / 86400 AS product_days,
       extract(epoch FROM plans)::float8 / 86400 AS plan_days,
       extract(epoch FROM alerts)::float8 / 86400 AS alert_days,
       extract(epoch FROM landing_files)::float8 / 86400 AS landing_file_days,
       extract(epoch FROM dead_services)::float8 / 3600 AS dead_service_hours,
       batch_size, extract(epoch FROM run_every)::float8 AS interval_s
FROM hrwsi.retention_policy;

-- name: config_lane_names
SELECT name FROM hrwsi.lane;

-- name: config_chain_cycle
-- The shortest cycle of chaining among the routines as loaded, or no row (hrwsi.chain_cycle: the
-- same definition as the guard that refuses a plain SQL statement closing one, migration 0073). A
-- cycle chains for ever: each turn's products are new inputs (a routine writing the type it reads
-- made 600 tasks in 15 s, 2026-12-05).
SELECT path FROM (SELECT hrwsi.chain_cycle() AS path) c WHERE path IS NOT NULL;

-- name: config_names_held
-- What the database holds of each kind a file names (`config load` upserts and never removes):
-- what a file leaves out is said after a load or a validate.
SELECT 'flavour' AS kind, name, true AS active FROM hrwsi.flavour
UNION ALL SELECT 'worker', name, active FROM hrwsi.worker
UNION ALL SELECT 'routine', name, true FROM hrwsi.processing_routine
UNION ALL SELECT 'condition', name, active FROM hrwsi.processing_condition
ORDER BY 1, 2;

-- name: config_routines_no_worker_fits
-- Routines no active worker can run (CPU, RAM or storage beyond its flavour, or only a flavour no
-- active worker has): their tasks cannot be planned until one can.
SELECT r.name, r.cpu, r.ram_mb, r.storage_mb, r.flavour
FROM hrwsi.processing_routine r
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.worker w JOIN hrwsi.flavour f ON f.name = w.flavour
                  WHERE w.active AND f.cpu >= r.cpu AND f.ram_mb >= r.ram_mb AND f.disk_mb >= r.storage_mb
                    AND (r.flavour IS NULL OR f.name = r.flavour))
ORDER BY r.name;

-- name: config_routines_beyond_budget
-- Routines that ask for more CPU, RAM or storage than the budget allows (NULL: no limit), with the
-- limits: the planner can never plan their tasks.
SELECT r.name, r.cpu::float8 AS cpu, r.ram_mb, r.storage_mb,
       CASE WHEN r.cpu > b.cpu_max THEN b.cpu_max::float8 END AS cpu_max,
       CASE WHEN r.ram_mb > b.ram_max_mb THEN b.ram_max_mb END AS ram_max_mb,
       CASE WHEN r.storage_mb > b.storage_max_mb THEN b.storage_max_mb END AS storage_max_mb
FROM hrwsi.processing_routine r CROSS JOIN hrwsi.budget b
WHERE r.cpu > b.cpu_max OR r.ram_mb > b.ram_max_mb OR r.storage_mb > b.storage_max_mb
ORDER BY r.name;

-- name: config_remove_multi_input_rule
-- A condition the file lists without [condition.multi_input] is single-input: its rule goes (the file
-- is the truth; the rule was kept, silently, and the file's cycle check read the condition as
-- single-input while the database kept it multi-input: found by exploratory testing). Returns what
-- was removed, and the group tasks still open (they go on with the members listed for them), or no row.
WITH rule AS (
    SELECT m.processing_condition, m.window_days,
           (SELECT string_agg(q.product_type || ' x' || q.min_count, ', ' ORDER BY q.product_type)
            FROM hrwsi.multi_input_requirement q WHERE q.processing_condition = m.processing_condition) AS requires,
           (SELECT count(*) FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
            WHERE i.processing_condition = m.processing_condition AND i.source = 'multi_input'
              AND t.state NOT IN ('processed', 'terminated', 'cancelled')) AS open_tasks
    FROM hrwsi.multi_input_rule m WHERE m.processing_condition = %(condition)s
), gone AS (
    DELETE FROM hrwsi.multi_input_rule m USING rule r WHERE m.processing_condition = r.processing_condition
    RETURNING m.processing_condition
)
SELECT r.window_days, r.requires, r.open_tasks FROM rule r JOIN gone g USING (processing_condition);

-- name: config_requirements_nobody_meets
-- Requirements of active multi-input conditions that nothing can meet: no routine with an active
-- condition writes the type, and no active single-input condition reads it (its inputs, harvested or
-- inserted, count as members of the type their routine reads). Such a group never completes: a
-- requirement "NOPE", or a routine's output type changed from FSC to FSC2, was loaded without a word
-- (found by exploratory testing).
SELECT q.processing_condition AS condition, q.product_type
FROM hrwsi.multi_input_requirement q
JOIN hrwsi.processing_condition mc ON mc.name = q.processing_condition AND mc.active
WHERE NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine r JOIN hrwsi.processing_condition c ON c.routine = r.name
                  WHERE r.output_product_type = q.product_type AND c.active)
  AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine r JOIN hrwsi.processing_condition c ON c.routine = r.name
                  WHERE r.input_product_type = q.product_type AND c.active
                    AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = c.name))
ORDER BY 1, 2;

-- name: config_routine_series
-- Whether routine %(name)s is a time series as the database has it, how many of its tasks that have
-- not started wait for the task before them (what turning it off releases), and how many are open
-- (what turning it on leaves as it is). No row: a new routine.
SELECT r.sequential_per_tile,
       (SELECT count(*) FROM hrwsi.processing_task t
        WHERE t.routine = r.name AND t.depends_on IS NOT NULL AND NOT t.dependency_waived
          AND t.state IN ('pending', 'planned', 'blocked', 'on_hold')) AS linked,
       (SELECT count(*) FROM hrwsi.processing_task t
        WHERE t.routine = r.name AND t.state NOT IN ('processed', 'terminated', 'cancelled')) AS open
FROM hrwsi.processing_routine r
WHERE r.name = %(name)s;

-- name: config_routines_open_tasks
-- The routines of %(names)s (those the database keeps and the file does not name) that open tasks
-- still name: how many, held, under way; the routines that read the same input type and that the
-- conditions of those tasks' inputs name now (where the file moved them: a renamed routine's), and
-- the routines of %(file_routines)s that read it (`hrwsi move-tasks` moves the tasks that have not
-- started to one of them). A renamed routine's tasks stayed on the old routine and nothing said so
-- (found by exploratory testing).
SELECT r.name, r.input_product_type,
       count(t.id) AS open_tasks,
       count(t.id) FILTER (WHERE t.state = 'on_hold') AS held,
       count(t.id) FILTER (WHERE t.state IN ('dispatched', 'queued', 'running')) AS under_way,
       count(t.id) FILTER (WHERE t.campaign_id IS NOT NULL) AS of_campaigns,
       ARRAY(SELECT DISTINCT c.routine
             FROM hrwsi.processing_task x
             JOIN hrwsi.input i ON i.id = x.input_id
             JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
             JOIN hrwsi.processing_routine o ON o.name = c.routine
             WHERE x.routine = r.name AND x.state NOT IN ('processed', 'terminated', 'cancelled')
               AND o.name <> r.name AND o.input_product_type = r.input_product_type
             ORDER BY c.routine) AS moved_to,
       ARRAY(SELECT o.name FROM hrwsi.processing_routine o
             WHERE o.name = ANY (%(file_routines)s::text[]) AND o.input_product_type = r.input_product_type
             ORDER BY o.name) AS same_type
FROM hrwsi.processing_routine r
JOIN hrwsi.processing_task t ON t.routine = r.name AND t.state NOT IN ('processed', 'terminated', 'cancelled')
WHERE r.name = ANY (%(names)s::text[])
GROUP BY r.name, r.input_product_type
ORDER BY r.name;

-- name: config_condition_active
SELECT active FROM hrwsi.processing_condition WHERE name = %(name)s;

-- name: config_missed_products
-- The products of the type a condition reads that were never chained to it (made while it was
-- inactive, or before it existed), counted by hrwsi.chain_missed_products itself: within its
-- measurement window, and older.
SELECT missed, outside_window FROM hrwsi.chain_missed_products(%(name)s, dry_run => true);

-- name: config_series_fed_from_two_steps_up
-- Time-series routines (with an active condition) fed by a routine that is itself fed by another:
-- a series task waits for the open work of the step just before it (upstream) on the scenes of its
-- tile sensed before it, not for the work further up (README, "Time series"), and `config load` said
-- nothing of it (found by review). One row per series and routine just before it, with the routines
-- that feed that one (further).
SELECT s.name AS series, u.name AS upstream, u.input_product_type AS upstream_reads,
       array_agg(DISTINCT f.name ORDER BY f.name) AS further
FROM hrwsi.processing_routine s
JOIN hrwsi.processing_routine u ON u.output_product_type = s.input_product_type AND u.name <> s.name
JOIN hrwsi.processing_routine f ON f.output_product_type = u.input_product_type AND f.name NOT IN (u.name, s.name)
WHERE s.sequential_per_tile
  AND EXISTS (SELECT 1 FROM hrwsi.processing_condition c WHERE c.routine = s.name AND c.active
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name))
  AND EXISTS (SELECT 1 FROM hrwsi.processing_condition c WHERE c.routine = u.name AND c.active
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name))
  AND EXISTS (SELECT 1 FROM hrwsi.processing_condition c WHERE c.routine = f.name AND c.active)
GROUP BY s.name, u.name, u.input_product_type
ORDER BY s.name, u.name;

-- name: config_close_missed_range
-- A condition made active (or added) that missed no product it could chain: its missed range is closed,
-- as hrwsi.chain_missed_products closes it once it chained them all, so that `hrwsi status` does not
-- count it again at every call. It only reads the products (migration 0078: chain_missed_products with
-- max_products => 1 chained one made meanwhile, during config load).
SELECT hrwsi.close_a_missed_range(%(name)s);

-- name: config_names_stored_that_a_file_refuses
-- The names and product types stored before the database refused what a configuration file refuses of them
-- (hrwsi.name_problem, migration 0124), which it keeps: a file may give them again as they are (`hrwsi config show`
-- writes them). (The rule written out: a role that reads the configuration may not call the function.)
SELECT value FROM (
    SELECT name AS value FROM hrwsi.flavour
    UNION SELECT name FROM hrwsi.worker
    UNION SELECT name FROM hrwsi.processing_condition
    UNION SELECT input_product_type FROM hrwsi.processing_routine
    UNION SELECT output_product_type FROM hrwsi.processing_routine
    UNION SELECT product_type FROM hrwsi.multi_input_requirement) v
WHERE value ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'
   OR char_length(value) > 200 OR value ~ '^[[:space:]]|[[:space:]]$';
