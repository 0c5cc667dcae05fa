-- Named queries of the harvest sources (landing directories, catalogues), their schedules, and
-- the multi-input triggering rules. Placeholders: asyncpg ($1, $2 ...); the CLI's blocks are in
-- harvest_cli.sql.

-- ============================================================================================
-- inputs from any source
-- ============================================================================================

-- name: harvest_register_inputs
-- One input per candidate and per active single-input condition whose routine consumes the
-- source's product type ($7), honouring the condition's tile allow-list and its publication and
-- measurement windows (measured from $8, the harvest's "now"). Set-based: one statement per batch.
-- A back-fill ($10 true: a catalogue source in back-fill mode) harvests old scenes: no window
-- applies, and its inputs go to the least urgent lane (`archive` as installed), where they have no
-- deadline and use what fresh scenes leave (ADR 0009). In their condition's lane they were overdue
-- from the start and served before fresh scenes, and a window refused them all.
-- The same path, or the same scene (scene_id), is one input per condition: duplicates are skipped
-- by the unique constraints, so a scene seen twice, or from two sources, creates nothing new.
-- Returns, per candidate (its 1-based position), how many conditions matched and how many inputs
-- were created; a path listed twice counts its inputs at its first position only (a page listing a
-- product twice said "4 new input(s)" where 3 were made).
WITH candidate AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.input_path ORDER BY c.position) AS nth
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[])
         WITH ORDINALITY AS c(input_path, tile, mission, measured_at, published_at, scene_id, position)
), matching AS (
    SELECT c.*, pc.name AS condition
    FROM candidate c
    JOIN hrwsi.processing_routine r ON r.input_product_type = $7
    JOIN hrwsi.processing_condition pc ON pc.routine = r.name AND pc.active
    WHERE (pc.tiles IS NULL OR c.tile = ANY (pc.tiles))
      AND ($10::boolean OR pc.publication_window IS NULL OR c.published_at >= $8::timestamptz - pc.publication_window)
      AND ($10::boolean OR pc.measurement_window IS NULL OR c.measured_at >= $8::timestamptz - pc.measurement_window)
      -- A multi-input condition gets its inputs from evaluate_multi_input_conditions, per group.
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = pc.name)
), inserted AS (
    INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at, source,
                             scene_id, lane)
    SELECT condition, input_path, tile, mission, measured_at, published_at, $9, scene_id,
           CASE WHEN $10::boolean THEN (SELECT l.name FROM hrwsi.lane l ORDER BY l.priority DESC LIMIT 1) END
    FROM matching
    ORDER BY position, condition
    ON CONFLICT DO NOTHING
    RETURNING processing_condition, input_path
-- Counted once each and joined: a count per candidate read the whole of `matching` and `inserted`
-- for every candidate, quadratic (a landing scan of 10,000 settled files took 41 s in this
-- statement; of 20,000, past the 60 s statement timeout, and every later scan tried the same
-- batch again: no file of the directory ever became an input).
), matched AS (
    SELECT position, count(*) AS n FROM matching GROUP BY position
), created AS (
    SELECT input_path, count(*) AS n FROM inserted GROUP BY input_path
)
SELECT c.position::int AS position, coalesce(m.n, 0)::int AS matching,
       CASE WHEN c.nth = 1 THEN coalesce(i.n, 0) ELSE 0 END::int AS created
FROM candidate c
LEFT JOIN matched m ON m.position = c.position
LEFT JOIN created i ON i.input_path = c.input_path
ORDER BY c.position;

-- ============================================================================================
-- landing directories
-- ============================================================================================

-- name: landing_sources
-- Active landing-directory sources; $1 NULL for all of them, or one name.
SELECT name, product_type, config::text AS config
FROM hrwsi.harvest_source
WHERE kind = 'landing_directory' AND active AND ($1::text IS NULL OR name = $1)
ORDER BY name;

-- name: landing_source_directories
-- Every active landing source's directories as configured, and since when it exists: the
-- harvester checks that no two share or nest a work directory (the older one keeps it).
SELECT name, config ->> 'directory' AS directory, config ->> 'work_directory' AS work_directory, created_at
FROM hrwsi.harvest_source
WHERE kind = 'landing_directory' AND active
ORDER BY created_at, name;

-- name: landing_track_listing
-- Record what a scan of source $1 saw ($2 paths, $3 sizes, $4 modification times) at $5.
-- A version (path, size, mtime) seen by several scans is one row, written when it is first seen
-- and when its state changes, never merely because it is seen again: rewriting every known row at
-- every scan (last_seen_at) made 34 MB of WAL a minute from 3,000 failed files left in an idle
-- directory. So last_seen_at is when a scan first recorded the version; nothing reads it for a
-- decision (settling uses first_seen_at and the mtime, retention updated_at). An unsettled
-- version that changed or vanished is forgotten. Returns every listed version with its state,
-- plus the versions left `ready` by an interrupted scan (listed or not), and whether the same path
-- was already prepared from this source.
WITH listing AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS l(path, size_bytes, modified_at)
), forgotten AS (
    DELETE FROM hrwsi.landing_file f
    WHERE f.source = $1 AND f.state = 'seen'
      AND NOT EXISTS (SELECT 1 FROM listing l
                      WHERE l.path = f.path AND l.size_bytes = f.size_bytes AND l.modified_at = f.modified_at)
), known AS (
    SELECT f.id, f.path, f.size_bytes, f.modified_at, f.state, f.first_seen_at, f.prepared_path, true AS listed
    FROM hrwsi.landing_file f
    JOIN listing l ON l.path = f.path AND l.size_bytes = f.size_bytes AND l.modified_at = f.modified_at
    WHERE f.source = $1 AND f.state <> 'previously_received'
), tracked AS (
    INSERT INTO hrwsi.landing_file AS f (source, path, size_bytes, modified_at, first_seen_at, last_seen_at, updated_at)
    SELECT $1, l.path, l.size_bytes, l.modified_at, $5, $5, $5 FROM listing l
    WHERE NOT EXISTS (SELECT 1 FROM known k
                      WHERE k.path = l.path AND k.size_bytes = l.size_bytes AND k.modified_at = l.modified_at)
    -- Recorded meanwhile by a scan that overran its claim: that scan has it, this one sees it next time.
    ON CONFLICT (source, path, size_bytes, modified_at) WHERE state <> 'previously_received' DO NOTHING
    RETURNING f.id, f.path, f.size_bytes, f.modified_at, f.state, f.first_seen_at, f.prepared_path, true AS listed
), interrupted AS (
    SELECT f.id, f.path, f.size_bytes, f.modified_at, f.state, f.first_seen_at, f.prepared_path, false AS listed
    FROM hrwsi.landing_file f
    WHERE f.source = $1 AND f.state = 'ready'
      AND NOT EXISTS (SELECT 1 FROM listing l
                      WHERE l.path = f.path AND l.size_bytes = f.size_bytes AND l.modified_at = f.modified_at)
)
SELECT t.*,
       (SELECT max(p.id) FROM hrwsi.landing_file p
        WHERE p.source = $1 AND p.path = t.path AND p.state = 'prepared' AND p.id <> t.id) AS prepared_before_id
FROM (SELECT * FROM known UNION ALL SELECT * FROM tracked UNION ALL SELECT * FROM interrupted) t
ORDER BY t.path, t.id;

-- name: landing_scenes_prepared_before
-- Of the scenes $2 about to be prepared by source $1, those a file of the source was prepared as
-- already (in any form: X.SAFE, X.SAFE.zip, X.zip), with the latest such file.
SELECT DISTINCT ON (f.scene_id) f.scene_id, f.id, f.prepared_path
FROM hrwsi.landing_file f
WHERE f.source = $1 AND f.state = 'prepared' AND f.scene_id = ANY ($2::text[])
ORDER BY f.scene_id, f.id DESC;

-- name: landing_mark_ready
-- Settled files about to be prepared, with the path they will have in the work directory: a scan
-- that stops half-way finds them `ready` and finishes the job.
UPDATE hrwsi.landing_file f
SET state = 'ready', prepared_path = r.prepared_path, scene_id = r.scene_id, updated_at = $4
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r(id, prepared_path, scene_id)
WHERE f.id = r.id AND f.state IN ('seen', 'ready');

-- name: landing_record_outcomes
-- How each file ended: prepared, previously_received or failed, with a message for people. Only
-- a file still on its way (seen, ready) changes: a scan that overran its claim cannot turn a file
-- another scan prepared meanwhile into a failure.
UPDATE hrwsi.landing_file f
SET state = o.state, message = o.message,
    prepared_path = CASE WHEN o.state = 'failed' THEN NULL ELSE coalesce(o.prepared_path, f.prepared_path) END,
    scene_id = coalesce(o.scene_id, f.scene_id), input_count = o.input_count, updated_at = $7
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])
     AS o(id, state, message, prepared_path, scene_id, input_count)
WHERE f.id = o.id AND f.state IN ('seen', 'ready');

-- name: landing_record_redeliveries
-- Files found again in the landing directory with the size and time of a version already
-- prepared: recorded as received again (a row each), never turned into inputs.
INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state, message, prepared_path,
                                input_count, first_seen_at, last_seen_at, updated_at)
SELECT $1, r.path, r.size_bytes, r.modified_at, 'previously_received', r.message, r.prepared_path, 0, $6, $6, $6
FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::text[], $7::text[])
     AS r(path, size_bytes, modified_at, message, prepared_path);

-- ============================================================================================
-- sources and schedules
-- ============================================================================================

-- name: harvest_claim_due_sources
-- Up to $3 active sources due at $1 (never run: due) whose claim is free or lapsed, not among
-- $2 (those this harvester runs already, or ran in this round), oldest due first (below). Each gets a
-- fresh claim token, harvester $4 and a lease until $1 + $5 seconds; committed at once, so no
-- transaction stays open while they run (SKIP LOCKED: two harvesters claiming at once take
-- different sources). Returns what a run needs, with the error of the previous run.
-- A claim held by a harvester whose lease lapsed ($6 seconds without a heartbeat; NULL: not
-- looked at) is taken over too: a killed harvester's sources waited for their claim, the source
-- timeout + 60 s (16 minutes by default). Only a harvester service's: a claimant that is no
-- service (run_due_sources) has no lease, and its claim is left to lapse.
-- Near-real-time sources first, and at most $7 back-fills while an active near-real-time source exists (the runner
-- keeps one slot of its own for fresh scenes): by due time alone, back-fill sources, due again as soon as a day is
-- done and always more than the slots, took every freed slot ahead of a catalogue's near-real-time window that fell due
-- after them, which waited for every back-fill due before it to run a day.
WITH due AS (
    SELECT name, mode, next_run_at
    FROM hrwsi.harvest_source
    WHERE active AND (next_run_at IS NULL OR next_run_at <= $1)
      AND (claimed_until IS NULL OR claimed_until <= $1
           OR ($6::double precision IS NOT NULL AND EXISTS (
                   SELECT 1 FROM hrwsi.service_instance i
                   WHERE i.id = harvest_source.claimed_by AND i.heartbeat_at <= now() - make_interval(secs => $6::double precision))))
      AND NOT (name = ANY ($2::text[]))
    ORDER BY mode = 'backfill', next_run_at NULLS FIRST, name
    LIMIT $3
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    SELECT d.name FROM (SELECT d.name, d.mode, row_number() OVER (PARTITION BY d.mode ORDER BY d.next_run_at NULLS FIRST, d.name) AS nth
                        FROM due d) d
    WHERE d.mode <> 'backfill' OR d.nth <= $7
       OR NOT EXISTS (SELECT 1 FROM hrwsi.harvest_source n WHERE n.active AND n.mode <> 'backfill')
)
UPDATE hrwsi.harvest_source s
SET claim_token = gen_random_uuid(), claimed_by = $4,
    claimed_until = $1::timestamptz + make_interval(secs => $5::double precision)
FROM claimed
WHERE s.name = claimed.name
RETURNING s.name, s.kind, s.product_type, s.config::text AS config, s.frequency, s.frequency_interval, s.cron,
          s.mode, s.overlap, s.first_lookback, s.backfill_from, s.backfill_to, s.backfill_cursor, s.backfill_resume_at,
          s.last_success_at, s.last_error, s.claim_token;

-- name: harvest_source_ran
-- After a run at $2 under claim $7: when it runs next, its error (NULL: it worked), and the claim
-- released. $5: the run counts as the last successful harvest at $6 (catalogues record theirs
-- themselves, window by window). Nothing changes if the claim is no longer this run's (it lapsed
-- and another harvester took the source): returns no row then.
UPDATE hrwsi.harvest_source
SET last_run_at = $2, next_run_at = $3, last_error = $4,
    last_success_at = CASE WHEN $5::boolean THEN $6::timestamptz ELSE last_success_at END,
    claim_token = NULL, claimed_by = NULL, claimed_until = NULL
WHERE name = $1 AND claim_token = $7
RETURNING name;

-- name: harvest_release_claims
-- A stopping harvester hands back the sources it was running ($1 claim tokens) as they are: due
-- again at once for another harvester, with nothing recorded about the unfinished run.
UPDATE hrwsi.harvest_source
SET claim_token = NULL, claimed_by = NULL, claimed_until = NULL
WHERE claim_token = ANY ($1::uuid[]);

-- name: harvest_source_progress
-- A catalogue harvested a window up to $2 (near real time) or a day (backfill: $3 is the next
-- day to do), or part of a backfill day, up to the sensing time $5 (a run stopped by its page
-- limit), under claim $4. Committed as soon as the window is done, so an interrupted run resumes
-- after it. No row returned: the claim is no longer this run's, the run must stop.
UPDATE hrwsi.harvest_source
SET last_success_at = coalesce($2::timestamptz, last_success_at), backfill_cursor = coalesce($3::date, backfill_cursor),
    backfill_resume_at = CASE WHEN $3::date IS NOT NULL THEN NULL ELSE coalesce($5::timestamptz, backfill_resume_at) END
WHERE name = $1 AND claim_token = $4
RETURNING name;

-- name: harvest_source_run_goes_on
-- Between two pages of a catalogue run under claim $2: whether source $1 is still active and still
-- this run's. No row: the source was deleted, the run must stop.
SELECT active, claim_token IS NOT DISTINCT FROM $2::uuid AS ours
FROM hrwsi.harvest_source
WHERE name = $1;

-- ============================================================================================
-- multi-input triggering rules (hrwsi.multi_input_rule, hrwsi.multi_input_requirement)
-- ============================================================================================

-- name: multi_input_create_complete_groups
-- One input per complete group of every active multi-input condition, with its members listed in
-- hrwsi.multi_input_member; $1 is "now". A group is a tile and the window_days days ending on an
-- anchor day (each day a member was measured on). Idempotent: a group's input path is
-- multi_input/<condition>/<tile>/<day>, unique per condition, so a group is made once. Products
-- and tasks of reprocessing campaigns are neither members nor open work here (ADR 0010). Also
-- returns how many rules are active: without one, nothing can make a group. Run after
-- chaining_waits_for_corrections, in its transaction (migration 0097): a group made while a correction
-- ran took a product of the old version the correction had not marked yet. Neither a product a correction
-- outdated nor an input it superseded is a member; a group it superseded is made anew.
WITH RECURSIVE rule AS (
    SELECT m.processing_condition AS condition, m.window_days, m.every_day_of_window, m.wait_for_open_tasks,
           c.measurement_window, c.tiles
    FROM hrwsi.multi_input_rule m
    JOIN hrwsi.processing_condition c ON c.name = m.processing_condition AND c.active
), wanted AS (
    SELECT DISTINCT q.product_type FROM hrwsi.multi_input_requirement q JOIN rule r ON r.condition = q.processing_condition
), maker AS (
    -- The routines whose tasks would make a member of a rule's group: those that output a member's
    -- type (depth 0), and those upstream, whose products chain into one (depth 1 and more: an L2A
    -- task makes the FSC of a daily group through the snow routine). Only the makers of depth 0
    -- were waited for: a group was made from a tile's first scene while the L2A of its second
    -- scene ran, and the members that L2A made never joined a group (found by exploratory testing,
    -- 2026-12-05). A product chains only into a routine with an active single-input condition
    -- (chain_products); the depth bounds a cycle of routines.
    SELECT q.processing_condition AS condition, pr.name AS routine, pr.input_product_type, 0 AS depth
    FROM hrwsi.multi_input_requirement q
    JOIN rule r ON r.condition = q.processing_condition
    JOIN hrwsi.processing_routine pr ON pr.output_product_type = q.product_type
    UNION
    SELECT m.condition, up.name, up.input_product_type, m.depth + 1
    FROM maker m
    JOIN hrwsi.processing_routine up ON up.output_product_type = m.input_product_type
    WHERE m.depth < 8
      AND EXISTS (SELECT 1 FROM hrwsi.processing_condition c
                  WHERE c.routine = m.routine AND c.active
                    AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = c.name))
), member AS (
    -- Products, with the tile and time of the input their task processed, and its task's lane ...
    SELECT p.path, p.product_type, i.tile, i.measured_at, (i.measured_at AT TIME ZONE 'UTC')::date AS day,
           ml.name AS lane, ml.priority AS lane_priority
    FROM hrwsi.product p
    JOIN hrwsi.processing_task t ON t.id = p.task_id
    JOIN hrwsi.input i ON i.id = t.input_id
    JOIN hrwsi.lane ml ON ml.name = t.lane
    WHERE p.product_type IN (SELECT product_type FROM wanted) AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
      AND t.campaign_id IS NULL AND p.outdated_by IS NULL
    UNION
    -- ... and inputs not chained from a product (harvested, inserted), as the type their routine reads,
    -- in the lane of their production task (an input arrived a day late is back-fill: arrives_as_back_fill).
    SELECT i.input_path, r.input_product_type, i.tile, i.measured_at, (i.measured_at AT TIME ZONE 'UTC')::date,
           ml.name, ml.priority
    FROM hrwsi.input i
    JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
    JOIN hrwsi.processing_routine r ON r.name = c.routine
    JOIN hrwsi.lane ml ON ml.name = coalesce((SELECT t.lane FROM hrwsi.processing_task t
                                              WHERE t.input_id = i.id AND t.campaign_id IS NULL ORDER BY t.id LIMIT 1),
                                             i.lane, c.lane)
    WHERE i.product_id IS NULL AND i.superseded_by IS NULL AND r.input_product_type IN (SELECT product_type FROM wanted)
      AND i.tile IS NOT NULL AND i.measured_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = i.processing_condition)
), anchor AS (
    SELECT DISTINCT r.condition, m.tile, m.day,
           'multi_input/' || r.condition || '/' || m.tile || '/' || to_char(m.day, 'YYYY-MM-DD') AS group_path
    FROM rule r
    JOIN hrwsi.multi_input_requirement q ON q.processing_condition = r.condition
    JOIN member m ON m.product_type = q.product_type
    WHERE (r.tiles IS NULL OR m.tile = ANY (r.tiles))
      AND (r.measurement_window IS NULL OR m.measured_at >= $1::timestamptz - r.measurement_window)
), complete AS (
    SELECT a.*, r.window_days
    FROM anchor a
    JOIN rule r ON r.condition = a.condition
    WHERE NOT EXISTS (SELECT 1 FROM hrwsi.input done
                      WHERE done.processing_condition = a.condition AND done.input_path = a.group_path
                        AND done.superseded_by IS NULL)
      -- every requirement is met: enough members in the window (on each of its days, if asked)
      AND NOT EXISTS (
          SELECT 1 FROM hrwsi.multi_input_requirement q
          WHERE q.processing_condition = a.condition
            AND CASE WHEN r.every_day_of_window THEN EXISTS (
                         SELECT 1 FROM generate_series(0, r.window_days - 1) AS back(days)
                         WHERE (SELECT count(*) FROM member m
                                WHERE m.product_type = q.product_type AND m.tile = a.tile
                                  AND m.day = a.day - back.days) < q.min_count)
                     ELSE (SELECT count(*) FROM member m
                           WHERE m.product_type = q.product_type AND m.tile = a.tile
                             AND m.day BETWEEN a.day - (r.window_days - 1) AND a.day) < q.min_count
                END)
      -- "once all are processed": no work that would make such a member, itself or through what it
      -- makes, is still waiting or running; upstream, a product not chained yet is work to come
      AND NOT (r.wait_for_open_tasks AND EXISTS (
          SELECT 1
          FROM maker mk
          JOIN hrwsi.processing_condition pc ON pc.routine = mk.routine
          JOIN hrwsi.input i ON i.processing_condition = pc.name
          LEFT JOIN hrwsi.processing_task t ON t.input_id = i.id
          WHERE mk.condition = a.condition AND i.tile = a.tile AND i.campaign_id IS NULL
            AND (t.id IS NULL OR t.campaign_id IS NULL)
            AND i.measured_at >= (a.day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
            AND i.measured_at < (a.day + 1)::timestamp AT TIME ZONE 'UTC'
            AND (t.id IS NULL OR t.state NOT IN ('processed', 'terminated', 'cancelled')
                 OR (mk.depth > 0 AND t.state = 'processed'
                     AND EXISTS (SELECT 1 FROM hrwsi.product p WHERE p.task_id = t.id AND p.chained_at IS NULL)))))
), grouped AS (
    SELECT c.condition, c.group_path, c.tile, c.day, c.window_days, m.path, m.product_type, m.measured_at, m.lane,
           m.lane_priority
    FROM complete c
    JOIN hrwsi.multi_input_requirement q ON q.processing_condition = c.condition
    JOIN member m ON m.product_type = q.product_type AND m.tile = c.tile
                 AND m.day BETWEEN c.day - (c.window_days - 1) AND c.day
), inserted AS (
    -- A back-fill's group (every member made in a lane less urgent than its condition's) stays in the most
    -- urgent of its members' lanes, without a deadline there, as chain_products keeps a back-fill's product in
    -- its lane (ADR 0009): in its condition's lane, with a deadline from now (its publication), a month of
    -- back-fill made a composite per tile and day that went before the fresh scenes' and was counted on time as
    -- near-real-time (found by exploratory testing, 2026-12-07). One fresh member makes it near-real-time.
    INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at, source, lane)
    SELECT g.condition, g.group_path, g.tile, least(max(g.measured_at), $1::timestamptz), $1::timestamptz,
           'multi_input',
           CASE WHEN min(g.lane_priority) > min(gl.priority)
                THEN (array_agg(g.lane ORDER BY g.lane_priority, g.lane))[1] END
    FROM grouped g
    JOIN hrwsi.processing_condition gc ON gc.name = g.condition
    JOIN hrwsi.lane gl ON gl.name = gc.lane
    GROUP BY g.condition, g.group_path, g.tile
    ORDER BY g.condition, g.tile, g.group_path
    ON CONFLICT DO NOTHING
    RETURNING id, processing_condition, input_path
), listed AS (
    INSERT INTO hrwsi.multi_input_member (input_id, member_path, product_type, measured_at)
    SELECT DISTINCT ON (ins.id, g.path) ins.id, g.path, g.product_type, g.measured_at
    FROM inserted ins
    JOIN grouped g ON g.condition = ins.processing_condition AND g.group_path = ins.input_path
    ORDER BY ins.id, g.path
    ON CONFLICT DO NOTHING
    RETURNING input_id
)
SELECT (SELECT count(*) FROM inserted)::int AS inputs, (SELECT count(*) FROM listed)::int AS members,
       (SELECT count(*) FROM rule)::int AS rules;
