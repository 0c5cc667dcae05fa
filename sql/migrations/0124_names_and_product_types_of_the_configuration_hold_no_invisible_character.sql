-- hrwsi schema, version 124: a flavour's, a worker's and a condition's name, and the product types of a routine and of a multi-input rule, are names a configuration file takes: no control or invisible character (refused naming it by its code point), at most 200 characters, no white space around; one stored before is kept, and said.
--
-- `hrwsi config load` took a condition named "L1C\u200b" (a zero-width space, pasted), which looked like L1C and was
-- another name, and so did a product type with a bidi control or a no-break space inside (found by exploratory
-- testing); a harvest source's name and product type refuse them since migration 0116. And a name written with SQL
-- (' l1c', or of 300 characters) was taken, which `hrwsi config show` then wrote into a file `hrwsi config load`
-- refused.
--
-- What is stored before is kept as it is, not mended as migration 0116 mended harvest sources: a condition's,
-- flavour's or worker's name is named by inputs, tasks, plans and campaigns (no foreign key cascades a rename to
-- them all), and a routine's product type by the products it reads and wrote. Each such value is said, below, in a
-- notice of `hrwsi db init` (the log of a service that applies the migration); it may be written again as it is
-- (`hrwsi config show` writes it into the file that `hrwsi config load` reads back), and a new one is refused.

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
REVOKE EXECUTE ON FUNCTION hrwsi.unseen_characters_escaped(text), hrwsi.name_problem(text),
    hrwsi.refuse_names_a_configuration_file_refuses() FROM PUBLIC;
DO $$
DECLARE
    kept record;
BEGIN
    FOR kept IN
        SELECT what, value, hrwsi.name_problem(value) AS problem FROM (
            SELECT 'flavour' AS what, name AS value FROM hrwsi.flavour
            UNION ALL SELECT 'worker', name FROM hrwsi.worker
            UNION ALL SELECT 'condition', name FROM hrwsi.processing_condition
            UNION ALL SELECT 'product type', input_product_type FROM hrwsi.processing_routine
            UNION ALL SELECT 'product type', output_product_type FROM hrwsi.processing_routine
            UNION ALL SELECT 'product type', product_type FROM hrwsi.multi_input_requirement) v
        WHERE hrwsi.name_problem(value) IS NOT NULL
        GROUP BY what, value ORDER BY what, value
    LOOP
        RAISE NOTICE '% % %: kept as it is, stored before hrwsi refused such names (what names it would name nothing if '
                     'it were renamed); a new one is refused', kept.what,
                     hrwsi.quoted_name(hrwsi.unseen_characters_escaped(kept.value)), kept.problem;
    END LOOP;
END $$;
