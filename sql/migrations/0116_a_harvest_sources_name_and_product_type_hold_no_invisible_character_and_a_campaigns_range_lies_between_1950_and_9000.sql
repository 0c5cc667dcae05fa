-- hrwsi schema, version 116: a harvest source's name and product type hold no control or invisible character (one stored before is mended: the characters taken out, the source renamed, its last_error saying so); a campaign's sensing range lies between 1950 and 9000, and its command and image hold no ${.
--
-- A data engineer writes a source's name and product type (GRANT INSERT, UPDATE on them), and the database took any
-- character: a name "cat\nS2B  catalogue  fake" printed a line of `hrwsi sources` (and of `hrwsi status`, the
-- dashboard's source list) that was none of its own, and a product type "L1C\n" (a heredoc's last line break) or
-- "L1C\u200b" (pasted) looked like L1C and was another type, so that the source's files were moved into its work
-- directory "with no input", no routine reading that type (found by exploratory testing). The same characters as an
-- input's path, mission and scene_id refuse.
--
-- Mending what is stored, not NOT VALID alone: a CHECK is checked again at each UPDATE of the row, and the
-- harvester claims its due sources in one UPDATE (harvest_claim_due_sources), so one old row breaking the rule would
-- make every claim fail and no source run. Nor setting such a source aside (inactive): it ran and fed production,
-- and would stop at the upgrade over a character nobody meant. So each such source keeps running under the name and
-- type that were meant: a line break, tab or other space among them becomes a space, the invisible ones are taken
-- out, and space around is trimmed; a name taken already (or left empty) gets " (2)", " (3)"...; its landing files
-- follow the name (landing_file's foreign key is ON UPDATE CASCADE). What was done is the source's last_error
-- (`hrwsi sources` shows it until the source's next run) and a notice of `hrwsi db init` (the log of a service that
-- applies the migration). A product type of invisible characters alone names nothing: it becomes 'unknown' and the
-- source is made inactive, its last_error saying why. A row the upgrade cannot rewrite (an older rule kept NOT VALID
-- refuses it too) is left as it is and said: the rule is then kept NOT VALID (`hrwsi db init` names it).
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT harvest_source_name_has_no_control_or_invisible_characters
        CHECK (name !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') NOT VALID,
    ADD CONSTRAINT source_product_type_has_no_control_or_invisible_characters
        CHECK (product_type !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') NOT VALID;
DO $$
DECLARE
    refused CONSTANT text := '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]';
    spacing CONSTANT text := '[\t\n\u000b\f\r\u0085\u00a0\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+';
    source record;
    base text;
    new_name text;
    new_type text;
    nth integer;
    said text;
    shown text;
    shown_type text;
    left_as_it_is integer := 0;
BEGIN
    FOR source IN SELECT s.name, s.product_type, s.active FROM hrwsi.harvest_source s
                  WHERE s.name ~ refused OR s.product_type ~ refused ORDER BY s.created_at, s.name LOOP
        base := btrim(regexp_replace(regexp_replace(source.name, spacing, ' ', 'g'), refused, '', 'g'));
        new_name := coalesce(nullif(base, ''), 'source');
        nth := 1;
        WHILE new_name <> source.name AND EXISTS (SELECT 1 FROM hrwsi.harvest_source s WHERE s.name = new_name) LOOP
            nth := nth + 1;
            new_name := coalesce(nullif(base, ''), 'source') || ' (' || nth || ')';
        END LOOP;
        -- (the old name and type as `hrwsi sources` shows them, each such character as its escape, \x0a or \u200b: written as it
        -- came, its line break would forge the line again, in last_error)
        SELECT string_agg(CASE WHEN c !~ refused THEN c WHEN ascii(c) < 256 THEN format('\x%s', lpad(to_hex(ascii(c)), 2, '0'))
                               WHEN ascii(c) < 65536 THEN format('\u%s', lpad(to_hex(ascii(c)), 4, '0'))
                               ELSE format('\U%s', lpad(to_hex(ascii(c)), 8, '0')) END, '' ORDER BY n) FILTER (WHERE v = 1),
               string_agg(CASE WHEN c !~ refused THEN c WHEN ascii(c) < 256 THEN format('\x%s', lpad(to_hex(ascii(c)), 2, '0'))
                               WHEN ascii(c) < 65536 THEN format('\u%s', lpad(to_hex(ascii(c)), 4, '0'))
                               ELSE format('\U%s', lpad(to_hex(ascii(c)), 8, '0')) END, '' ORDER BY n) FILTER (WHERE v = 2)
        INTO shown, shown_type
        FROM unnest(ARRAY[source.name, source.product_type]) WITH ORDINALITY AS w(value, v),
             regexp_split_to_table(w.value, '') WITH ORDINALITY AS x(c, n);
        new_type := btrim(regexp_replace(regexp_replace(source.product_type, spacing, ' ', 'g'), refused, '', 'g'));
        said := concat_ws('; ',
            CASE WHEN new_name <> source.name THEN format('renamed from %s, its name holding a control or invisible '
                 'character (shown escaped here), which printed as it came forged lines of `hrwsi sources`',
                 hrwsi.quoted_name(shown)) END,
            CASE WHEN new_type = '' THEN format('its product type %s was invisible characters alone, which no routine '
                 'reads: it is ''unknown'' now and the source inactive; give it its product type and UPDATE '
                 'hrwsi.harvest_source SET active = true', hrwsi.quoted_name(shown_type))
                 WHEN new_type <> source.product_type THEN format('its product type %s became %s, without its control '
                 'or invisible characters (it looked like the latter and was another type)',
                 hrwsi.quoted_name(shown_type), hrwsi.quoted_name(new_type)) END);
        BEGIN
            UPDATE hrwsi.harvest_source s
            SET name = new_name, product_type = coalesce(nullif(new_type, ''), 'unknown'),
                active = s.active AND new_type <> '',
                last_error = 'the upgrade to schema 116 ' || said
            WHERE s.name = source.name;
            RAISE NOTICE 'harvest source %: %', hrwsi.quoted_name(new_name), said;
        EXCEPTION WHEN check_violation OR unique_violation OR foreign_key_violation THEN
            left_as_it_is := left_as_it_is + 1;
            RAISE NOTICE 'harvest source % was left as it is (%): %', hrwsi.quoted_name(shown), SQLERRM, said;
        END;
    END LOOP;
    IF left_as_it_is = 0 THEN
        ALTER TABLE hrwsi.harvest_source VALIDATE CONSTRAINT harvest_source_name_has_no_control_or_invisible_characters;
        ALTER TABLE hrwsi.harvest_source
            VALIDATE CONSTRAINT source_product_type_has_no_control_or_invisible_characters;
    END IF;
END $$;

-- A reprocessing campaign's sensing range lies between 1950 and 9000, as a harvest source's times do (migration
-- 0115): hrwsi.reprocess took measured_to '12000-01-01' (or a data engineer's '-infinity' before migration 0045), and
-- then `hrwsi campaigns`, and the dashboard's campaigns, failed on every call with "timestamp too large (after year
-- 10K)" (psycopg reads years 1 to 9999 alone; found by exploratory testing). No input lies outside it (an input is
-- measured from 1950 on, and never in the future), so a range stored before is brought within it and covers the same
-- inputs. The rule replaces campaign_sensing_range_is_finite (NOT VALID since migration 0045).
UPDATE hrwsi.campaign
SET measured_from = least(greatest(measured_from, timestamptz '1950-01-01 00:00Z'), timestamptz '8999-12-31 23:59:59Z'),
    measured_to = greatest(least(measured_to, timestamptz '9000-01-01 00:00Z'),
                           least(greatest(measured_from, timestamptz '1950-01-01 00:00Z'),
                                 timestamptz '8999-12-31 23:59:59Z') + interval '1 second')
WHERE NOT (measured_from >= timestamptz '1950-01-01 00:00Z' AND measured_to <= timestamptz '9000-01-01 00:00Z');
ALTER TABLE hrwsi.campaign DROP CONSTRAINT campaign_sensing_range_is_finite;
ALTER TABLE hrwsi.campaign
    ADD CONSTRAINT campaign_sensing_range_is_between_1950_and_9000
        CHECK (measured_from >= timestamptz '1950-01-01 00:00Z' AND measured_to <= timestamptz '9000-01-01 00:00Z');

-- A campaign's command and image hold no `${`, which Nomad would replace with its own variables, as the configuration
-- file says of a routine's (hrwsi.reprocess refuses them: a CHECK would be checked again at each update of the
-- campaigns stored before, which the failure policy makes).
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
    left_out integer;  -- (inputs chained from products a correction outdated: not reprocessed)
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
    PERFORM pg_advisory_xact_lock_shared(7250098, 1);
    -- (not in a REPEATABLE READ or SERIALIZABLE transaction whose snapshot, taken before that wait, misses a correction
    -- that committed since: its composite read the old version's product; migration 0104, found by review)
    PERFORM hrwsi.see_the_corrections_before('hrwsi.reprocess', 'the inputs');
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

    -- An input chained from a product a correction outdated (product.outdated_by) is of the old version: the
    -- correction cancelled its open tasks but kept the input, processed or not (migration 0094), and a campaign
    -- reprocessed it, making products from the old version's output beside those of the corrected input's chain, in
    -- READ COMMITTED too (found by review; migration 0107). Left out, and counted in the answer, which says why: in the
    -- statement that makes the tasks, from the one scan of the range (migration 0109: a statement before it scanned the
    -- range a second time to count them, and, in READ COMMITTED, each statement with a snapshot of its own).
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

