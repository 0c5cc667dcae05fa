-- hrwsi schema, version 83: paths refuse the characters that look like a space or nothing;
-- hrwsi.scene_id_of gives the harvester's scene id for every path; a task that took the deadline of a
-- near-real-time task after it in its time series is counted late against its own; an input is
-- corrected under the same path by hrwsi.correct_input.
--
-- Found by exploratory testing (2026-12-06):
-- - a path could hold a no-break space (U+00A0) or a Hangul filler (U+115F, U+1160, U+3164, U+FFA0):
--   the first looks like a space, the others like nothing, and two paths that look the same differed.
--   They are refused with the other Unicode spaces that are not the ASCII space (U+2000-U+200A,
--   U+202F, U+205F, U+3000), in the same single regular expression (the INSERT of inputs is a hot
--   path), in inputs and in products, whose paths become the next step's inputs. Rows already there
--   are kept (the rule is then NOT VALID for them, as migration 0079's); a product not chained yet
--   whose path holds one could not become an input: it is set aside as chained, and said.
-- - hrwsi.scene_id_of differed from the harvester's (hrwsi.harvest.product_names.scene_id_of) on a path
--   ending in `/.`: `/a/X.SAFE/.` gave `.`, the harvester `X`. A path's `.` and empty segments name
--   nothing of their own, as the harvester reads them (PurePosixPath): the scene is the last other one.
UPDATE hrwsi.product SET chained_at = now()
WHERE chained_at IS NULL AND path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';

-- (the column hrwsi.correct_input marks a superseded input with, below: an old input kept with a path now
-- refused can still be corrected, its UPDATE checked by the rule again; found by review)
ALTER TABLE hrwsi.input ADD COLUMN superseded_by bigint;
ALTER TABLE hrwsi.input DROP CONSTRAINT input_path_has_no_control_or_invisible_characters;
ALTER TABLE hrwsi.input ADD CONSTRAINT input_path_has_no_control_or_invisible_characters
    CHECK (superseded_by IS NOT NULL OR input_path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') NOT VALID;
ALTER TABLE hrwsi.product DROP CONSTRAINT product_path_is_absolute_without_control_characters;
ALTER TABLE hrwsi.product ADD CONSTRAINT product_path_is_absolute_without_control_characters
    CHECK (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]' AND path !~ '(^|/)\.\.(/|$)') NOT VALID;
DO $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE input_path ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_path_has_no_control_or_invisible_characters;
    ELSE
        SELECT count(*) INTO n FROM hrwsi.input WHERE input_path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';
        RAISE NOTICE '% input(s) have a path with a no-break space, another Unicode space or a Hangul filler: kept, but a new input may not have one: SELECT id, input_path FROM hrwsi.input WHERE input_path ~ ''[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]'' lists them', n;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE NOT (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'
                                                          AND path !~ '(^|/)\.\.(/|$)')) THEN
        ALTER TABLE hrwsi.product VALIDATE CONSTRAINT product_path_is_absolute_without_control_characters;
    ELSE
        SELECT count(*) INTO n FROM hrwsi.product WHERE path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';
        RAISE NOTICE '% product(s) have a path with a no-break space, another Unicode space or a Hangul filler: kept, and set aside from the chaining (marked chained) if not chained yet', n;
    END IF;
END $$;

-- (the same text as in sql/schema.sql)
CREATE OR REPLACE FUNCTION hrwsi.scene_id_of(path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
RETURN nullif(regexp_replace(substring(path FROM '([^/.][^/]*|\.[^/]+)(/+\.)*/*$'),
                             '(\.(safe|sen3|zip|json|tif|tiff|nc|tar|tgz|gz|h5|xml|jp2))+$', '', 'i'), '');

-- A task that took the deadline of a near-real-time task after it in its time series (migration 0081)
-- remembers whose it took and its own, and its lateness is counted against its own.
--
-- An archive task before a fresh scene in its series took that scene's deadline, to be served before
-- it; when the scene was late, each of them raised a deadline_missed alert, and `hrwsi timeliness`
-- counted their products late (found by exploratory testing): one late scene, many alerts. Dispatch
-- still serves such a task by the deadline it took (deadline_at, its order and indexes unchanged);
-- deadline_inherited_from names the task whose deadline it is, own_deadline_at the deadline it had of
-- its own (NULL: none). hrwsi.raise_deadline_alerts alerts a task against its own deadline only, and
-- the fresh scene's alert names the task it still waits for; hrwsi.product_timeliness and the open
-- deadlines of `hrwsi timeliness` and `hrwsi status` count each task against its own.
ALTER TABLE hrwsi.processing_task
    ADD COLUMN deadline_inherited_from bigint,
    ADD COLUMN own_deadline_at timestamptz;

-- Tasks that took such a deadline before this migration, as far as can be told: a task in a lane less
-- urgent than its condition's (back-fill, which has no deadline of its own) that has a deadline. It names
-- the task after it in its series with the same deadline (the one whose it is, or one that took it too:
-- its dependent may have been relinked, or have ended, since), else the nearest after it with a deadline.
-- (Only those whose dependent had the same deadline were marked: found by review. A near-real-time task
-- that took an earlier deadline than its own cannot be told from the rows; it keeps the deadline it took.)
UPDATE hrwsi.processing_task t
SET deadline_inherited_from = (
        SELECT x.id FROM hrwsi.processing_task x
        WHERE x.routine = t.routine AND x.series_tile = t.series_tile AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id
          AND (x.series_at, x.id) > (t.series_at, t.id) AND x.deadline_at IS NOT NULL
        ORDER BY x.deadline_at = t.deadline_at DESC, x.series_at, x.id LIMIT 1),
    own_deadline_at = NULL
FROM hrwsi.input i, hrwsi.processing_condition c, hrwsi.lane l, hrwsi.lane cl
WHERE t.deadline_at IS NOT NULL AND t.series_tile IS NOT NULL AND t.deadline_inherited_from IS NULL
  AND i.id = t.input_id AND c.name = i.processing_condition AND l.name = t.lane AND cl.name = c.lane
  AND l.priority > cl.priority
  AND EXISTS (SELECT 1 FROM hrwsi.processing_task x
              WHERE x.routine = t.routine AND x.series_tile = t.series_tile
                AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (x.series_at, x.id) > (t.series_at, t.id)
                AND x.deadline_at IS NOT NULL);

CREATE OR REPLACE FUNCTION hrwsi.create_tasks_for_new_inputs() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    series record;
    missing text;
    first_path text;   -- (the first row naming what is refused: a COPY's line is not known here)
    named bigint;
    conditions text[];
    sequential boolean;
    upstream boolean;  -- a time-series routine of the new inputs reads what another routine makes
    feeds boolean;     -- a routine of the new inputs makes what a time-series routine reads
BEGIN
    -- The conditions the new inputs name, each locked once, as the input's key locked it for every
    -- row (migration 0027), then checked: an input naming a condition that does not exist is
    -- refused as the key refused it, with its name and its message, and nothing is kept.
    conditions := ARRAY(SELECT DISTINCT n.processing_condition FROM new_rows n);
    PERFORM 1 FROM processing_condition c WHERE c.name = ANY (conditions) FOR KEY SHARE OF c;
    SELECT x.name INTO missing FROM unnest(conditions) x(name)
    WHERE NOT EXISTS (SELECT 1 FROM processing_condition c WHERE c.name = x.name)
    LIMIT 1;
    IF FOUND THEN
        -- (which row: the statement's first naming it, and how many do; checked once per statement,
        -- after its rows, the refusal could not name a COPY's line; found by exploratory testing)
        SELECT n.input_path, count(*) OVER () INTO first_path, named
        FROM new_rows n WHERE n.processing_condition = missing ORDER BY n.id LIMIT 1;
        RAISE EXCEPTION 'insert or update on table "input" violates foreign key constraint "input_processing_condition_must_exist"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'input_processing_condition_must_exist',
                  DETAIL = format('Key (processing_condition)=(%s) is not present in table "processing_condition". '
                                  'The first row naming it has input_path %s (%s row(s) of the statement name it).',
                                  missing, first_path, named),
                  HINT = 'the conditions are configuration: `hrwsi config show` lists them';
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
    IF feeds THEN
        FOR series IN
            SELECT c.routine, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            UNION
            SELECT d.name, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            JOIN processing_routine d ON d.input_product_type = r.output_product_type AND d.sequential_per_tile
            WHERE n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            ORDER BY 1, 2
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile)) THEN
                PERFORM hrwsi.wait_for_a_series(series.routine, series.tile);
            END IF;
        END LOOP;
    ELSIF sequential THEN
        FOR series IN
            SELECT DISTINCT c.routine, n.tile
            FROM new_rows n JOIN processing_condition c ON c.name = n.processing_condition
            JOIN processing_routine r ON r.name = c.routine
            WHERE r.sequential_per_tile AND n.tile IS NOT NULL AND n.measured_at IS NOT NULL
            ORDER BY 1, 2
        LOOP
            IF NOT pg_try_advisory_xact_lock(7250010, hashtext(series.routine || '/' || series.tile)) THEN
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
        EXECUTE $q$
            WITH fresh AS (
                SELECT t.id, t.routine, t.series_tile, t.series_at, t.campaign_id
                FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                WHERE t.series_tile IS NOT NULL
            ), span AS (
                SELECT f.routine, f.series_tile, f.campaign_id, min(f.series_at) AS first_at,
                       max(f.series_at) AS last_at
                FROM fresh f GROUP BY f.routine, f.series_tile, f.campaign_id
            ), series AS (
                SELECT f.id, f.routine, f.series_tile, f.series_at, f.campaign_id, true AS fresh FROM fresh f
                UNION ALL
                SELECT p.id, p.routine, p.series_tile, p.series_at, p.campaign_id, false
                FROM span g JOIN processing_task p
                  ON p.routine = g.routine AND p.series_tile = g.series_tile
                 AND p.series_at BETWEEN g.first_at AND g.last_at
                WHERE p.campaign_id IS NOT DISTINCT FROM g.campaign_id AND p.state <> 'cancelled'
                  AND p.id NOT IN (SELECT f.id FROM fresh f)
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
            ), linked AS (
                UPDATE processing_task t
                SET depends_on = link.previous,
                    state = CASE WHEN p.state IN ('terminated', 'blocked') THEN 'blocked'
                                 WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
                    worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                    planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                    planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                    state_reason = CASE
                        WHEN p.state = 'terminated' THEN
                            format('its dependency, task %s, ended terminated; `hrwsi retry %s` runs the dependency '
                                   'again, `hrwsi release %s` runs this task without it', p.id, p.id, t.id)
                        WHEN p.state = 'blocked' THEN
                            format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it runs '
                                   'once that task has run', p.id, p.id)
                        WHEN link.fresh OR t.state = 'on_hold' THEN t.state_reason
                        ELSE format('a scene sensed before it arrived late (task %s): it runs after it',
                                    link.previous) END
                FROM link JOIN processing_task p ON p.id = link.previous
                WHERE t.id = link.id
                  AND (link.fresh OR (t.depends_on IS DISTINCT FROM link.previous AND NOT t.dependency_waived
                                      AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')))
                RETURNING t.id, t.routine, t.state_reason, p.state AS previous_state
            )
            -- (ops are told of a task blocked by a terminated dependency, as when it ends so)
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', l.id, l.routine), l.state_reason,
                   l.id, l.routine
            FROM linked l WHERE l.previous_state = 'terminated' $q$;
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
        EXECUTE $q$
            WITH RECURSIVE waiting AS (
                SELECT d.id, u.priority, u.deadline_at, u.waiter
                FROM (SELECT coalesce(t.deadline_inherited_from, t.id) AS waiter, t.priority, t.deadline_at, t.depends_on
                      FROM processing_task t JOIN new_rows n ON n.id = t.input_id
                      WHERE t.depends_on IS NOT NULL
                      UNION ALL
                      SELECT coalesce(s.deadline_inherited_from, s.id), s.priority, s.deadline_at, s.depends_on
                      FROM processing_task f JOIN new_rows n ON n.id = f.input_id
                      JOIN processing_task s ON s.depends_on = f.id) u
                JOIN processing_task d ON d.id = u.depends_on
                WHERE (d.priority > u.priority OR u.deadline_at < coalesce(d.deadline_at, 'infinity'))
                  AND d.state IN ('pending', 'planned')
                UNION
                SELECT d.id, least(w.priority, p.priority), least(w.deadline_at, p.deadline_at), w.waiter
                FROM waiting w JOIN processing_task p ON p.id = w.id JOIN processing_task d ON d.id = p.depends_on
                WHERE (d.priority > least(w.priority, p.priority)
                       OR least(w.deadline_at, p.deadline_at) < coalesce(d.deadline_at, 'infinity'))
                  AND d.state IN ('pending', 'planned')
            )
            UPDATE processing_task t
            SET priority = least(t.priority, w.priority),
                deadline_at = least(t.deadline_at, w.deadline_at),
                deadline_inherited_from = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity') THEN w.deadline_from
                                               ELSE t.deadline_inherited_from END,
                own_deadline_at = CASE WHEN w.deadline_at < coalesce(t.deadline_at, 'infinity')
                                            AND t.deadline_inherited_from IS NULL THEN t.deadline_at
                                       ELSE t.own_deadline_at END,
                state = 'pending',
                worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
                planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
                planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
                state_reason = CASE WHEN t.state = 'planned'
                                    THEN format('near-real-time task %s of its time series waits for it: served as '
                                                'urgently, planned again', w.waiter)
                                    ELSE t.state_reason END
            FROM (SELECT id, min(priority) AS priority, min(deadline_at) AS deadline_at, min(waiter) AS waiter,
                         (array_agg(waiter ORDER BY deadline_at NULLS LAST, waiter))[1] AS deadline_from
                  FROM waiting GROUP BY id) w
            -- (its state again here: the recursion read a snapshot, and a row this UPDATE waited for, a task
            -- dispatch claimed meanwhile, is checked once more against this condition alone, as committed;
            -- without it the claimed task went back to pending and ran a second attempt beside the first,
            -- and a cancelled or held one was made pending: found by review, migration 0081)
            WHERE t.id = w.id AND t.state IN ('pending', 'planned')
              AND (t.priority > w.priority OR w.deadline_at < coalesce(t.deadline_at, 'infinity')) $q$;
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
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.raise_deadline_alerts() RETURNS TABLE (at_risk integer, missed integer)
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
                      '(%s late); it is %s. Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.due),
                      hrwsi.utc_text(t.planned_end), hrwsi.duration_text(t.planned_end - t.due), t.state),
               t.id, t.routine
        FROM (SELECT t.*, CASE WHEN t.deadline_inherited_from IS NULL THEN t.deadline_at ELSE t.own_deadline_at END AS due
              FROM processing_task t
              WHERE t.deadline_at IS NOT NULL AND t.state NOT IN ('processed', 'terminated', 'cancelled')
                AND t.state IN ('planned', 'dispatched', 'queued', 'running')) t
        JOIN input i ON i.id = t.input_id
        WHERE t.due > now() AND t.planned_end > t.due
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_at_risk')
        ORDER BY t.due, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM at_risk)::integer, (SELECT count(*) FROM missed)::integer
$$;

CREATE OR REPLACE VIEW hrwsi.product_timeliness AS
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

-- A correction that keeps the path can be made: hrwsi.correct_input.
--
-- README told data engineers to correct an input a task was made from by inserting the corrected input
-- and cancelling the old task; with the same path the INSERT was refused (a path is one input per
-- condition) until retention removed the old input (found by exploratory testing).
-- hrwsi.correct_input(id, tile => ..., measured_at => ..., ...) cancels the old input's open tasks
-- (refused, saying what to do, while an attempt made from it runs), marks it superseded_by the new
-- one, which it inserts: the old input keeps its tasks, attempts, products and history, and no longer
-- holds its path or scene for its condition (the unique rules become partial unique indexes of the
-- same names). A superseded input's task is not retried. The chaining's ON CONFLICT names the index's
-- predicate.
ALTER TABLE hrwsi.input DROP CONSTRAINT input_is_unique_per_condition_and_path;
CREATE UNIQUE INDEX input_is_unique_per_condition_and_path ON hrwsi.input (processing_condition, input_path)
    WHERE superseded_by IS NULL;
DROP INDEX hrwsi.input_scene_is_registered_once_per_condition;
CREATE UNIQUE INDEX input_scene_is_registered_once_per_condition
    ON hrwsi.input (processing_condition, scene_id) WHERE scene_id IS NOT NULL AND superseded_by IS NULL;
-- A harvester older than this migration chains with ON CONFLICT (processing_condition, input_path) DO
-- NOTHING, which no index matches now: every chaining of it fails (found by review). Harvesters of older
-- versions are stopped before this migration runs (README, Upgrading), and it says so.
DO $$
BEGIN
    RAISE NOTICE 'migration 0083: a harvester older than 0.1.0+schema0083 can no longer chain products (its ON CONFLICT '
                 'names no index now): stop the older harvesters and start this version''s';
END $$;

CREATE OR REPLACE FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from() RETURNS trigger LANGUAGE plpgsql
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

CREATE OR REPLACE FUNCTION hrwsi.retry_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text;
    previous bigint;       -- (a time series' task) the task of the scene sensed last before it
    previous_state text;
    series text;           -- (a time series' task) its routine/tile: the series' lock; NULL: in no series now
    series_now text;
    routine_was text;
    routine_now text;
    refused text;
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
    LOOP
        SELECT t.routine INTO routine_was FROM hrwsi.processing_task t WHERE t.id = task;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(7250078, hashtext(coalesce(routine_was, '')));
            SELECT t.routine || '/' || t.series_tile INTO series
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
            WHERE t.id = task AND t.series_tile IS NOT NULL;
            IF series IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock(7250010, hashtext(series));
            END IF;
            current := hrwsi.lock_task(task);
            SELECT t.routine, CASE WHEN r.sequential_per_tile AND t.series_tile IS NOT NULL
                                   THEN t.routine || '/' || t.series_tile END
            INTO routine_now, series_now
            FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine
            WHERE t.id = task;
            EXIT WHEN routine_now IS NOT DISTINCT FROM routine_was AND series_now IS NOT DISTINCT FROM series;
            RAISE EXCEPTION 'task % moved to another series while it was retried', task USING ERRCODE = 'HR078';
        EXCEPTION WHEN SQLSTATE 'HR078' THEN
            NULL;  -- (its locks released with the subtransaction: again, in the series the task is in now)
        END;
    END LOOP;
    IF current NOT IN ('terminated', 'cancelled', 'on_hold', 'blocked') THEN
        RAISE EXCEPTION 'task % is %: only a terminated, cancelled, held or blocked task can be retried', task, current
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a task of an input a correction superseded would run the wrong input again: migration 0083)
    SELECT format('task %s was made from input %s, which input %s corrects', t.id, i.id, i.superseded_by) INTO refused
    FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
    WHERE t.id = task AND i.superseded_by IS NOT NULL;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: it is not retried', refused
            USING ERRCODE = 'check_violation',
                  HINT = 'the corrected input''s task runs instead (`hrwsi tasks` lists it)';
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
    UPDATE hrwsi.processing_task
    SET state = 'pending', depends_on = coalesce(previous, depends_on), failures = 0, lost_count = 0,
        not_before = NULL, worker = NULL, planned_start = NULL, planned_end = NULL,
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
            ELSE format('retried by an operator; waits for task %s, which is blocked (`hrwsi task show %s` says '
                        'why): it runs once that task has run', previous, previous) END
        WHERE id = task;
    END IF;
    -- ... and, of a chained step, waits for the scenes sensed before it whose upstream work is still
    -- open, as a new task would (migration 0072), under its series' lock (taken above).
    IF series IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream(ARRAY[t.id]) FROM hrwsi.processing_task t
        WHERE t.id = task AND NOT t.dependency_waived;
    END IF;
    IF previous_state IN ('blocked', 'terminated') THEN
        RETURN format('task %s was %s; it waits behind task %s of its series, which is %s: it is blocked', task,
                      current, previous, previous_state);
    END IF;
    RETURN format('task %s was %s; it is pending again and will be replanned', task, current);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.chain_missed_products(condition text, made_since timestamptz DEFAULT NULL,
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
        RAISE EXCEPTION 'no condition %', chain_missed_products.condition USING ERRCODE = 'no_data_found';
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

-- A campaign reprocesses the inputs not superseded by a correction: it reprocessed the old version of a
-- corrected scene beside the corrected one (found by review).
CREATE OR REPLACE FUNCTION hrwsi.reprocess(
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
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.condition IS NOT NULL THEN
        SELECT c.routine INTO target FROM processing_condition c WHERE c.name = reprocess.condition;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no condition %', reprocess.condition USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', target USING ERRCODE = 'no_data_found';
    END IF;
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773).
    PERFORM pg_advisory_xact_lock(1752332131);  -- 0x68727763, "hrwc"
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

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                 campaign_id)
    SELECT i.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                ELSE format('reprocessing campaign %s', new_campaign) END,
           l.name, l.priority,
           CASE WHEN r.sequential_per_tile AND i.measured_at IS NOT NULL THEN i.tile END,
           CASE WHEN r.sequential_per_tile AND i.tile IS NOT NULL THEN i.measured_at END,
           new_campaign
    FROM input i
    JOIN processing_condition c ON c.name = i.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN campaign k ON k.id = new_campaign
    JOIN lane l ON l.name = k.lane
    WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
      -- (an input a correction superseded is reprocessed as its correction: migration 0083, found by review)
      AND i.campaign_id IS NULL AND i.superseded_by IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
    ORDER BY i.measured_at, i.id
    -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
    -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
    FOR KEY SHARE OF i;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
            CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' (tiles ' || array_to_string(reprocess.tiles, ', ') || ')' END
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
        FROM campaign k WHERE k.id = new_campaign;
END $$;

-- A task before a near-real-time task in its time series that took that task's deadline (and its
-- priority) to be served before it gives them back when that task is cancelled (migration 0083): the
-- archive tasks before a fresh scene cancelled or corrected kept its deadline and raised priority, and
-- were served ahead of real near-real-time work (found by review). It is served by its own deadline
-- again (none: NULL), at its lane's priority (an aged one, past its lane's promote_after, stays at 0, as
-- hrwsi.promote_aged_tasks would make it again); a planned one is planned again. Called by
-- hrwsi.cancel_task and hrwsi.correct_input with the tasks they cancelled; returns how many gave back.
CREATE FUNCTION hrwsi.give_back_taken_deadlines(cancelled bigint[]) RETURNS integer LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
    WITH given AS (
        UPDATE processing_task t
        SET deadline_at = t.own_deadline_at, deadline_inherited_from = NULL, own_deadline_at = NULL,
            priority = CASE WHEN l.promote_after IS NOT NULL AND t.created_at < now() - l.promote_after
                            THEN least(l.priority, 0) ELSE l.priority END,
            state = CASE WHEN t.state = 'planned' THEN 'pending' ELSE t.state END,
            worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
            planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
            planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
            state_reason = CASE WHEN t.state = 'planned'
                                THEN format('task %s, whose deadline it took, was cancelled: served by its own, '
                                            'planned again', t.deadline_inherited_from)
                                ELSE t.state_reason END
        FROM lane l
        WHERE t.deadline_inherited_from = ANY (cancelled) AND l.name = t.lane
          AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
        RETURNING 1
    )
    SELECT count(*)::integer FROM given
$$;

CREATE OR REPLACE FUNCTION hrwsi.cancel_task(task bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    current text := hrwsi.lock_task(task);
BEGIN
    IF current IN ('processed', 'terminated', 'cancelled') THEN
        RAISE EXCEPTION 'task % is already %: nothing to cancel', task, current USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.processing_task SET state = 'cancelled', state_reason = 'cancelled by an operator' WHERE id = task;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE task_id = task AND state IN ('submitted', 'queued', 'running');
    -- (the tasks before it that took its deadline give it back: migration 0083)
    PERFORM hrwsi.give_back_taken_deadlines(ARRAY[task]);
    RETURN format('task %s was %s; it is cancelled%s', task, current,
                  CASE WHEN current IN ('dispatched', 'queued', 'running') THEN ' and its job is being stopped' ELSE '' END);
END $$;

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
-- cancelled one that took its deadline give it back (hrwsi.give_back_taken_deadlines). Refused for a
-- campaign's input (reprocessing: the campaign is made again), a multi-input group (its members are not
-- copied: the group would run with none) and a new path for a chained input (its path is its product's):
-- a data engineer could otherwise make inputs the column grants keep from them (found by review).
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
    new_id bigint;
    alerted bigint;       -- (the last alert before the cancellations)
    dependents bigint[];  -- (the tasks that waited for a cancelled one)
    old_tasks bigint[];   -- (the old input's tasks, which leave their time series)
BEGIN
    SELECT * INTO was FROM hrwsi.input i WHERE i.id = correct_input.input_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no input %', correct_input.input_id USING ERRCODE = 'no_data_found';
    END IF;
    -- The series locks of its tasks, and of the series the corrected input goes to, before any row
    -- (the order the INSERT of inputs and a retry take them in).
    FOR series IN
        SELECT DISTINCT t.routine, x.tile
        FROM hrwsi.processing_task t JOIN hrwsi.processing_routine r ON r.name = t.routine AND r.sequential_per_tile
        CROSS JOIN LATERAL (VALUES (was.tile), (coalesce(correct_input.tile, was.tile))) x(tile)
        WHERE t.input_id = was.id AND x.tile IS NOT NULL
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
        RAISE EXCEPTION 'input % is reprocessing campaign %''s: it is not corrected', was.id, was.campaign_id
            USING ERRCODE = 'check_violation',
                  HINT = 'correct the production input it was chained from, then reprocess again (`hrwsi reprocess`)';
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
    PERFORM 1 FROM hrwsi.processing_task t WHERE t.input_id = was.id ORDER BY t.id FOR UPDATE;
    SELECT t.id, t.routine, t.state, j.backend_job_id, j.state AS job_state INTO busy
    FROM hrwsi.processing_task t LEFT JOIN hrwsi.job j ON j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running')
    WHERE t.input_id = was.id AND (t.state IN ('dispatched', 'queued', 'running') OR j.id IS NOT NULL)
    ORDER BY t.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'input % cannot be corrected now: task % (routine %) made from it is %', was.id, busy.id,
                        busy.routine, busy.state || CASE WHEN busy.backend_job_id IS NOT NULL
                                                         THEN format(', its job %s still %s', busy.backend_job_id, busy.job_state)
                                                         ELSE '' END
            USING ERRCODE = 'object_in_use',
                  DETAIL = 'The corrected input''s task would run beside the attempt made from the old input.',
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
    -- Its open tasks are cancelled (a running one was refused above), saying why.
    WITH open AS (
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.input_id = was.id AND t.state IN ('pending', 'planned', 'on_hold', 'blocked')
    ), done AS (
        UPDATE hrwsi.processing_task t
        SET state = 'cancelled', state_reason = format('its input %s was corrected: input %s replaces it', was.id, new_id)
        FROM open WHERE t.id = open.id
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM done;
    SELECT coalesce(array_agg(t.id), '{}') INTO dependents FROM hrwsi.processing_task t WHERE t.depends_on = ANY (cancelled);
    PERFORM hrwsi.give_back_taken_deadlines(cancelled);
    -- Its tasks leave their time series before the corrected input's task is linked into one.
    WITH gone AS (
        UPDATE hrwsi.processing_task t SET series_tile = NULL, series_at = NULL
        WHERE t.input_id = was.id AND t.series_tile IS NOT NULL
        RETURNING t.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO old_tasks FROM gone;
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
    FOR waiting IN
        SELECT t.id FROM hrwsi.processing_task t
        WHERE t.depends_on = ANY (cancelled) AND t.state = 'blocked' AND NOT t.dependency_waived
        ORDER BY t.id
    LOOP
        PERFORM hrwsi.retry_task(waiting);
        UPDATE hrwsi.processing_task
        SET state_reason = format('relinked: the task it waited for was cancelled by the correction of input %s', was.id)
        WHERE id = waiting AND state = 'pending';
    END LOOP;
    -- A task that has not started and still waits for a processed old task (the corrected input's task
    -- did not take its place) waits for the task before it in its series now, as a new task there would
    -- (a held or blocked one takes it when it is released or retried).
    WITH relink AS (
        SELECT t.id, p.id AS previous, p.state AS previous_state
        FROM hrwsi.processing_task t LEFT JOIN LATERAL (
            SELECT x.id, x.state FROM hrwsi.processing_task x
            WHERE x.routine = t.routine AND x.series_tile = t.series_tile AND x.state <> 'cancelled'
              AND x.campaign_id IS NOT DISTINCT FROM t.campaign_id AND (x.series_at, x.id) < (t.series_at, t.id)
            ORDER BY x.series_at DESC, x.id DESC LIMIT 1) p ON true
        WHERE t.depends_on = ANY (old_tasks) AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
    )
    UPDATE hrwsi.processing_task t
    SET depends_on = r.previous,
        state = CASE WHEN t.state = 'on_hold' THEN 'on_hold'
                     WHEN r.previous_state IN ('terminated', 'blocked') THEN 'blocked' ELSE 'pending' END,
        worker = NULL, planned_start = NULL, planned_end = NULL,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            WHEN r.previous_state IN ('terminated', 'blocked')
                            THEN format('relinked by the correction of input %s: waits for task %s, which is %s '
                                        '(`hrwsi task show %s` says why)', was.id, r.previous, r.previous_state, r.previous)
                            ELSE format('relinked: the task it waited for was made from input %s, which input %s '
                                        'corrects', was.id, new_id) END
    FROM relink r WHERE t.id = r.id;
    -- The cancellations blocked the next tasks of their series and alerted ops (task_blocked), which the
    -- correction then linked to run: those alerts, written by this transaction and never sent, said what
    -- is no longer true, and are withdrawn.
    DELETE FROM hrwsi.alert a
    WHERE a.id > alerted AND a.kind = 'task_blocked'
      AND a.task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.id = ANY (dependents) AND t.state <> 'blocked');
    RETURN new_id;
END $$;

REVOKE EXECUTE ON FUNCTION hrwsi.correct_input(bigint, text, timestamptz, timestamptz, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.correct_input(bigint, text, timestamptz, timestamptz, text, text, text, text)
    TO hrwsi_data_engineer, hrwsi_service;
REVOKE EXECUTE ON FUNCTION hrwsi.give_back_taken_deadlines(bigint[]) FROM PUBLIC;
