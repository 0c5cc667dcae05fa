-- hrwsi schema, version 127: a name a refusal quotes (hrwsi.quoted_name) shows its control and invisible characters as their escapes, as the CLI does.
--
-- psql printed a refused name's line break and escape sequence as they came: SELECT hrwsi.hold_routine(E'x\n\x1b[2J...')
-- answered "no routine 'x" and a forged line, the screen cleared; and 'snow\u200b_cover' (a zero-width space, pasted)
-- read "no routine 'snow_cover'" while snow_cover was there (found by exploratory testing). Every refusal that quotes
-- a name goes through this one function; the CLI showed the same escapes already (hrwsi.terminal.quoted).

CREATE OR REPLACE FUNCTION hrwsi.quoted_name(name text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN length(name) <= 118
            THEN '''' || replace(hrwsi.unseen_characters_escaped(name), '''', '''''') || ''''
            ELSE '''' || replace(hrwsi.unseen_characters_escaped(left(name, 118)), '''', '''''') || '''... ('
                 || regexp_replace(length(name)::text, '(\d)(?=(\d{3})+$)', '\1,', 'g') || ' characters)' END;
