-- hrwsi schema, version 55: two landing sources do not take the same files.
--
-- Two active landing sources on one landing directory, each with its own work directory and the
-- default pattern, were accepted: each file went to whichever scanned first, with that source's
-- product type and work directory, and the other logged it as vanished and recorded it failed
-- (found by exploratory testing, 2026-12-05). Now a landing source whose landing directory is
-- another active one's, as written, is refused unless their patterns differ and neither is `*`.
-- Sources already so configured are left as they are: the check runs when one is written.

CREATE OR REPLACE FUNCTION hrwsi.landing_source_work_directory_is_its_own() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    work text := rtrim(NEW.config ->> 'work_directory', '/') || '/';
    landing text := rtrim(NEW.config ->> 'directory', '/') || '/';
    other record;
BEGIN
    IF NEW.kind <> 'landing_directory' OR NOT NEW.active THEN
        RETURN NEW;
    END IF;
    SELECT s.name, rtrim(s.config ->> 'work_directory', '/') || '/' AS work,
           rtrim(s.config ->> 'directory', '/') || '/' AS landing
    INTO other
    FROM hrwsi.harvest_source s
    WHERE s.kind = 'landing_directory' AND s.active AND s.name <> NEW.name
      AND (TG_OP = 'INSERT' OR s.name <> OLD.name)
      AND (starts_with(work, rtrim(s.config ->> 'work_directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'work_directory', '/') || '/', work)
           OR starts_with(work, rtrim(s.config ->> 'directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'directory', '/') || '/', work)
           OR starts_with(landing, rtrim(s.config ->> 'work_directory', '/') || '/')
           OR starts_with(rtrim(s.config ->> 'work_directory', '/') || '/', landing))
    ORDER BY s.name
    LIMIT 1;
    IF NOT FOUND THEN
        -- (two sources on one landing directory, taking the same files: which source, product type and
        -- work directory a file got was a race; migration 0055, found by exploratory testing)
        SELECT s.name, rtrim(s.config ->> 'work_directory', '/') || '/' AS work, landing AS landing
        INTO other
        FROM hrwsi.harvest_source s
        WHERE s.kind = 'landing_directory' AND s.active AND s.name <> NEW.name
          AND (TG_OP = 'INSERT' OR s.name <> OLD.name)
          AND rtrim(s.config ->> 'directory', '/') || '/' = landing
          AND (coalesce(s.config ->> 'pattern', '*') IN ('*', coalesce(NEW.config ->> 'pattern', '*'))
               OR coalesce(NEW.config ->> 'pattern', '*') = '*')
        ORDER BY s.name
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'landing source %: its landing directory % is the landing directory of source %, and '
                            'their patterns take the same files: the two would race for each file (which source, '
                            'product type and work directory it gets); give each a pattern of its own (e.g. '
                            '"S2*.zip" and "S1*.zip"), or one source', NEW.name, landing, other.name
                USING ERRCODE = 'check_violation', CONSTRAINT = 'landing_source_work_directory_is_its_own';
        END IF;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'landing source %: its directories (landing %, work %) overlap those of source % '
                        '(landing %, work %): two sources would take or overwrite each other''s files; give each '
                        'source a work directory of its own, apart from every landing directory',
                        NEW.name, landing, work, other.name, other.landing, other.work
            USING ERRCODE = 'check_violation', CONSTRAINT = 'landing_source_work_directory_is_its_own';
    END IF;
    RETURN NEW;
END $$;
