-- Harvest hardening (issue 14): a source's run is a claim with a lease, not a row lock held for
-- the whole run; a landing source's paths cannot climb out with `..`; two landing sources cannot
-- share or nest their work directories. Which directories a source may use at all is decided by
-- ops (HRWSI_LANDING_ROOTS), checked by the harvester before every scan: a row cannot decide it.

-- ---------------------------------------------------------------------------------------------
-- Claims. A harvester takes a due source by writing a fresh token and a lease end (its run's
-- timeout plus a margin) and commits at once; sources run concurrently, each on its own, and no
-- transaction stays open while a source runs. The run's writes about the source (progress, the
-- outcome) name the token: a harvester that lost its claim (paused past the lease, and another
-- one took the source over) changes nothing. A crashed harvester's claim lapses at claimed_until.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE hrwsi.harvest_source
    ADD COLUMN claim_token   uuid,          -- the claim of the run going on now; NULL: not running
    ADD COLUMN claimed_by    text,          -- the harvester instance running it
    ADD COLUMN claimed_until timestamptz,   -- the claim lapses then: another harvester may run it
    ADD CONSTRAINT harvest_source_claim_has_a_token_a_harvester_and_an_end
        CHECK ((claim_token IS NULL) = (claimed_by IS NULL) AND (claim_token IS NULL) = (claimed_until IS NULL));

GRANT UPDATE (claim_token, claimed_by, claimed_until) ON hrwsi.harvest_source TO hrwsi_service;

-- ---------------------------------------------------------------------------------------------
-- Paths in a landing source's config. NOT VALID: a database that already holds such a row still
-- migrates; the harvester refuses that source at run time with the same reason (last_error).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT landing_directories_have_no_dot_dot_and_no_control_characters
        CHECK (kind <> 'landing_directory'
               OR coalesce(NOT (config ->> 'directory' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'work_directory' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'directory' ~ '[[:cntrl:]]')
                           AND NOT (config ->> 'work_directory' ~ '[[:cntrl:]]'), false)) NOT VALID,
    ADD CONSTRAINT landing_pattern_is_relative_without_dot_dot
        CHECK (NOT config ? 'pattern'
               OR coalesce(config ->> 'pattern' <> '' AND config ->> 'pattern' NOT LIKE '/%'
                           AND NOT (config ->> 'pattern' ~ '(^|/)\.\.(/|$)')
                           AND NOT (config ->> 'pattern' ~ '[[:cntrl:]]'), false)) NOT VALID;

-- ---------------------------------------------------------------------------------------------
-- A landing source's work directory is its own: it is not, does not contain and does not lie in
-- the work or landing directory of another active landing source (and its landing directory is
-- not in another's work directory). Compared as written, at INSERT/UPDATE, for a clear refusal
-- there and then; the harvester compares them again with symbolic links resolved.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION hrwsi.landing_source_work_directory_is_its_own() RETURNS trigger LANGUAGE plpgsql
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
    IF FOUND THEN
        RAISE EXCEPTION 'landing source %: its directories (landing %, work %) overlap those of source % '
                        '(landing %, work %): two sources would take or overwrite each other''s files; give each '
                        'source a work directory of its own, apart from every landing directory',
                        NEW.name, landing, work, other.name, other.landing, other.work
            USING ERRCODE = 'check_violation', CONSTRAINT = 'landing_source_work_directory_is_its_own';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER landing_source_work_directory_is_its_own
    BEFORE INSERT OR UPDATE OF kind, config, active, name ON hrwsi.harvest_source
    FOR EACH ROW EXECUTE FUNCTION hrwsi.landing_source_work_directory_is_its_own();
-- A trigger function fires without EXECUTE; nobody needs to call it (as the other functions).
REVOKE EXECUTE ON FUNCTION hrwsi.landing_source_work_directory_is_its_own() FROM PUBLIC;
