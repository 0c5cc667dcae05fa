-- hrwsi schema, version 99: a long name a refusal quotes is cut, its length said.
--
-- - hrwsi.quoted_name repeated a name whole: `hrwsi hold` of a 5,000-character name made a 5,000-character
--   refusal, what to do lost at its end (found by review). A name longer than 118 characters is cut there, its
--   length said after it ('aaa'... (5,000 characters)), as hrwsi.terminal.quoted cuts a name the CLI quotes.

CREATE OR REPLACE FUNCTION hrwsi.quoted_name(name text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN length(name) <= 118 THEN '''' || replace(name, '''', '''''') || ''''
            ELSE '''' || replace(left(name, 118), '''', '''''') || '''... ('
                 || regexp_replace(length(name)::text, '(\d)(?=(\d{3})+$)', '\1,', 'g') || ' characters)' END;
