-- hrwsi schema, version 121: a flavour's, a worker's and a condition's name, and the product types of a routine and of a multi-input rule, hold no control or invisible character (refused naming it by its code point); one stored before is kept, and said.
--
-- `hrwsi config load` took a condition named "L1C\u200b" (a zero-width space, pasted), which looked like L1C and was
-- another name, and so did a product type with a bidi control or a no-break space inside (found by exploratory
-- testing); a harvest source's name and product type refuse them since migration 0116.
--
-- What is stored before is kept as it is, not mended as migration 0116 mended harvest sources: a condition's,
-- flavour's or worker's name is named by inputs, tasks, plans and campaigns (no foreign key cascades a rename to
-- them all), and a routine's product type by the products it reads and wrote. Each such value is said, below, in a
-- notice of `hrwsi db init` (the log of a service that applies the migration); it may be written again as it is
-- (`hrwsi config show` writes it into the file that `hrwsi config load` reads back), and a new one is refused.

-- (migration 0121) A name with its control and invisible characters as their escapes (\x0a, \u200b, \U000e0041), as
-- hrwsi.terminal.quoted shows them: a refusal or a notice that quotes it shows what is there, and is one line.
CREATE FUNCTION hrwsi.unseen_characters_escaped(value text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN (SELECT coalesce(string_agg(CASE WHEN c !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]' THEN c
                                        WHEN ascii(c) < 256 THEN '\x' || lpad(to_hex(ascii(c)), 2, '0')
                                        WHEN ascii(c) < 65536 THEN '\u' || lpad(to_hex(ascii(c)), 4, '0')
                                        ELSE '\U' || lpad(to_hex(ascii(c)), 8, '0') END, '' ORDER BY o), '')
        FROM regexp_split_to_table(value, '') WITH ORDINALITY AS s(c, o));

-- (migration 0121) The names a configuration file gives (a flavour's, a worker's, a condition's) and the product types a
-- routine reads and writes, or a multi-input rule requires, hold no control or invisible character, as a harvest
-- source's (migration 0116): `hrwsi config load` took "L1C\u200b" (pasted), which looked like L1C and was another name.
-- A trigger, not a CHECK, so that the refusal names the character by its code point and shows the name with it as its
-- escape (a CHECK's refusal names the constraint alone, and a psql shows an invisible character as nothing).
-- A value stored before this rule (migration 0121 said each) is kept, and may be written again as it is: a rename would
-- leave the inputs, tasks and plans that name it naming nothing, and `hrwsi config show` writes it into the file
-- `hrwsi config load` then reads back (hrwsi.configuration keeps the same exception).
CREATE FUNCTION hrwsi.refuse_unseen_characters_in_names() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    refused CONSTANT text := '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]';
    col text;
    value text;
    found text;
BEGIN
    FOREACH col IN ARRAY TG_ARGV LOOP
        value := to_jsonb(NEW) ->> col;
        found := substring(value FROM refused);
        CONTINUE WHEN found IS NULL;
        -- (unchanged by an UPDATE, or stored before: an INSERT ... ON CONFLICT of a row stored before, as `hrwsi
        -- config load` writes one, or a name or type stored before given again, as hrwsi.configuration takes it)
        CONTINUE WHEN TG_OP = 'UPDATE' AND value = to_jsonb(OLD) ->> col;
        CONTINUE WHEN EXISTS (SELECT 1 FROM flavour WHERE name = value) OR EXISTS (SELECT 1 FROM worker WHERE name = value)
                   OR EXISTS (SELECT 1 FROM processing_condition WHERE name = value)
                   OR EXISTS (SELECT 1 FROM processing_routine WHERE input_product_type = value)
                   OR EXISTS (SELECT 1 FROM processing_routine WHERE output_product_type = value)
                   OR EXISTS (SELECT 1 FROM multi_input_requirement WHERE product_type = value);
        RAISE EXCEPTION '% % % holds U+%, a control or invisible character (shown here as its escape)', TG_TABLE_NAME,
                        col, hrwsi.quoted_name(hrwsi.unseen_characters_escaped(value)),
                        upper(lpad(to_hex(ascii(found)), greatest(length(to_hex(ascii(found))), 4), '0'))
            USING ERRCODE = 'check_violation',
                  HINT = 'a name is shown in tables, logs and pages, where that character is not seen (or looks like '
                         'a space): write the name without it';
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER flavour_name_has_no_unseen_character BEFORE INSERT OR UPDATE OF name ON hrwsi.flavour
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_unseen_characters_in_names('name');
CREATE TRIGGER worker_name_has_no_unseen_character BEFORE INSERT OR UPDATE OF name ON hrwsi.worker
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_unseen_characters_in_names('name');
CREATE TRIGGER routine_product_types_have_no_unseen_character
    BEFORE INSERT OR UPDATE OF input_product_type, output_product_type ON hrwsi.processing_routine
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_unseen_characters_in_names('input_product_type', 'output_product_type');
CREATE TRIGGER condition_name_has_no_unseen_character BEFORE INSERT OR UPDATE OF name ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_unseen_characters_in_names('name');
CREATE TRIGGER multi_input_requirement_product_type_has_no_unseen_character
    BEFORE INSERT OR UPDATE OF product_type ON hrwsi.multi_input_requirement
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_unseen_characters_in_names('product_type');
REVOKE EXECUTE ON FUNCTION hrwsi.unseen_characters_escaped(text), hrwsi.refuse_unseen_characters_in_names()
    FROM PUBLIC;
DO $$
DECLARE
    refused CONSTANT text := '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]';
    kept record;
    code text;
BEGIN
    FOR kept IN
        SELECT what, value FROM (
            SELECT 'flavour' AS what, name AS value FROM hrwsi.flavour
            UNION ALL SELECT 'worker', name FROM hrwsi.worker
            UNION ALL SELECT 'condition', name FROM hrwsi.processing_condition
            UNION ALL SELECT 'product type', input_product_type FROM hrwsi.processing_routine
            UNION ALL SELECT 'product type', output_product_type FROM hrwsi.processing_routine
            UNION ALL SELECT 'product type', product_type FROM hrwsi.multi_input_requirement) v
        WHERE value ~ refused
        GROUP BY what, value ORDER BY what, value
    LOOP
        code := upper(to_hex(ascii(substring(kept.value FROM refused))));
        RAISE NOTICE '% % holds U+%, a control or invisible character (shown here as its escape): kept as it is, '
                     'stored before hrwsi refused them (what names it would name nothing if it were renamed); a new '
                     'one is refused', kept.what, hrwsi.quoted_name(hrwsi.unseen_characters_escaped(kept.value)),
                     lpad(code, greatest(length(code), 4), '0');
    END LOOP;
END $$;
