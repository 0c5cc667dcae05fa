-- hrwsi schema, version 115: a harvest source's times and back-fill dates lie between 1950 and 9000, its overlap and first_lookback at most 36,525 days (100 years) and its period under that; an input's mission and scene_id hold no control or invisible character; a multi-input requirement is what the configuration file allows; the database's sentences say an infinite time as such.
--
-- A data engineer writes these columns (GRANT INSERT, UPDATE on them). An infinite time, or one past the year 9999 or
-- before the year 1, was taken, and then every reading of the sources failed: one source with next_run_at
-- '-infinity' ("due since ever") or backfill_to '12000-01-01' made `hrwsi status` and `hrwsi sources` end in
-- "database error: timestamp too small (before year 1): '-infinity'" (psycopg reads years 1 to 9999 alone), whatever
-- else was wrong, and such a back-fill date (or a last_success_at of year 12000) made the harvester's round fail as
-- it claimed the sources due: it claimed them and ran none, nothing recorded, round after round. An overlap or
-- first_lookback of '5000000 years' passed its check (not negative, positive) and the harvester could not read it
-- (Python's timedelta holds 999,999,999 days), with the same end (found by exploratory testing). Times lie between
-- 1950 (an input's times do: input_measured_at_is_after_1950) and 9000 (a next_run_at far ahead is no way to stop a
-- source: active = false is); the windows stop at 36,525 days, 100 years, as a condition's do (MAX_WINDOW_DAYS).
-- So does a schedule's period: hourly with a frequency_interval of 2147483647 (245,000 years) was taken, and its
-- next run could not be reckoned ("date value out of range"): the run's failure was recorded nowhere, the source
-- stayed claimed until its claim lapsed, and `hrwsi sources` said "every 2147483647th hour" and no error.
--
-- What was stored before is mended by the upgrade, so that every reading works again: a next_run_at before 1950
-- (-infinity) becomes NULL (never ran: due now, what it said); one from 9000 on (infinity: "never") becomes NULL
-- with the source made inactive, which is how a source is stopped, its last_error saying so; a last_success_at out
-- of range becomes NULL (the next run looks first_lookback back); back-fill dates out of range are brought within
-- it (the cursor with them); an overlap or first_lookback beyond 36,525 days becomes 36,525 days, and a period of
-- 36,525 days or more the longest under it.
UPDATE hrwsi.harvest_source
SET next_run_at = NULL, active = false,
    last_error = 'next_run_at was ' || CASE WHEN isfinite(next_run_at) THEN 'in the year 9000 or later' ELSE 'infinity' END
                 || ' (never): the upgrade to schema 114 made the source inactive instead, which is how a source is '
                 'stopped (UPDATE hrwsi.harvest_source SET active = true to run it again)'
WHERE next_run_at >= timestamptz '9000-01-01 00:00Z';
UPDATE hrwsi.harvest_source SET next_run_at = NULL WHERE next_run_at < timestamptz '1950-01-01 00:00Z';
UPDATE hrwsi.harvest_source SET last_success_at = NULL
WHERE NOT last_success_at BETWEEN timestamptz '1950-01-01 00:00Z' AND timestamptz '9000-01-01 00:00Z';
UPDATE hrwsi.harvest_source
SET backfill_from = least(greatest(backfill_from, date '1950-01-01'), date '8999-12-31'),
    backfill_to = least(greatest(backfill_to, date '1950-01-01'), date '8999-12-31'),
    backfill_cursor = least(greatest(backfill_cursor, least(greatest(backfill_from, date '1950-01-01'), date '8999-12-31')),
                            least(greatest(backfill_to, date '1950-01-01'), date '8999-12-31') + 1)
WHERE backfill_from < date '1950-01-01' OR backfill_to >= date '9000-01-01';
UPDATE hrwsi.harvest_source SET overlap = interval '36525 days' WHERE overlap > interval '36525 days';
UPDATE hrwsi.harvest_source SET first_lookback = interval '36525 days' WHERE first_lookback > interval '36525 days';
UPDATE hrwsi.harvest_source
SET frequency_interval = 876599 / CASE frequency WHEN 'hourly' THEN 1 WHEN 'daily' THEN 24 ELSE 168 END
WHERE frequency_interval::bigint * CASE frequency WHEN 'hourly' THEN 1 WHEN 'daily' THEN 24 WHEN 'weekly' THEN 168
                                                  ELSE 0 END >= 876600;
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

-- hrwsi.utc_text of an infinite time was NULL (to_char gives none), so that an input published 'infinity' was refused
-- with "input /eodata/X.SAFE is published in the future (published_at <NULL>)": it says infinity now.
CREATE OR REPLACE FUNCTION hrwsi.utc_text(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN moment = 'infinity' THEN 'infinity' WHEN moment = '-infinity' THEN '-infinity'
                ELSE to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"') END
$$;

-- An input's mission and scene_id hold no control or invisible character, as its path holds none (the same list:
-- input_path_has_no_control_or_invisible_characters). A data engineer's mission with a line break was printed by
-- `hrwsi task show` as it came, and what followed read as a line of the command's own; a scene_id "X\u200b" (or a
-- catalogue's Name "X.SAFE\x1b[2J") was a scene of its own, so that the same scene from a landing directory, X,
-- was a second input (found by exploratory testing). One stored before is mended: a scene_id holding one is
-- dropped (NULL: it matched no harvester's scene anyway, and the input keeps its path); a mission loses those
-- characters (NULL if nothing is left). Both may be changed once a task is made from the input.
UPDATE hrwsi.input SET scene_id = NULL
WHERE scene_id ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]';
UPDATE hrwsi.input SET mission = nullif(btrim(regexp_replace(mission, '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]', '', 'g')), '')
WHERE mission ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]';
ALTER TABLE hrwsi.input
    ADD CONSTRAINT input_mission_has_no_control_or_invisible_characters
        CHECK (mission !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'),
    ADD CONSTRAINT input_scene_id_has_no_control_or_invisible_characters
        CHECK (scene_id !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]');

-- A multi-input requirement a data engineer writes is what the configuration file allows (its product_type a name:
-- at most 200 characters, no control character, no space around it; min_count at most 10,000): the database took
-- 'SWS\n...\x1b[2J' and 2147483647, which `hrwsi config show` then wrote into a file that `hrwsi config load` refused
-- (found by exploratory testing). NOT VALID: a row stored before is left as it is (no group could need it: no
-- routine's output type holds a control character), and checked again when it is written.
ALTER TABLE hrwsi.multi_input_requirement
    ADD CONSTRAINT multi_input_requirement_product_type_is_a_name
        CHECK (char_length(product_type) <= 200 AND product_type = btrim(product_type)
               AND product_type !~ '[[:cntrl:]\u0080-\u009f]') NOT VALID,
    ADD CONSTRAINT multi_input_requirement_min_count_is_at_most_10000 CHECK (min_count <= 10000) NOT VALID;
