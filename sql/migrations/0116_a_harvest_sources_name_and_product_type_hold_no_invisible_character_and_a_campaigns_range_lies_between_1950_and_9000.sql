-- hrwsi schema, version 116: a harvest source's name and product type hold no control or invisible character (one stored before is mended: the characters taken out, the source renamed, its last_error saying so); a campaign's sensing range lies between 1950 and 9000.
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
