-- hrwsi schema, version 79: what a task was made from stays, and paths hold no invisible characters.
--
-- Found by exploratory testing (2026-12-06):
-- - the schema's owner (or a service's role) could rewrite an input's tile, sensing time or path
--   after its task existed: the task stayed in its old time series and place, linked by the old
--   tile and time, and its products named the old path. Such an UPDATE is refused now, naming the
--   task and what to do instead (insert the corrected input, cancel the old task);
-- - a path could hold Unicode's line and paragraph separators (U+2028, U+2029), a zero-width space
--   (U+200B) and the other invisible format characters: logs and the dashboard showed a line break
--   or nothing, and two paths that look the same differed. They are refused as control characters
--   are, by the same single regular expression (the INSERT of inputs is a hot path), in inputs
--   (the constraint renamed input_path_has_no_control_or_invisible_characters) and in products,
--   whose paths become the next step's inputs;
-- - a product's size_bytes could be negative.
-- - hrwsi.scene_id_of(path): the scene identifier the harvester gives, for a data engineer's INSERT.
-- Rows already there that break a new rule are kept: the rule then holds for new rows only (NOT
-- VALID), and `hrwsi db init` and `hrwsi db check` say so (migration 0066).

-- hrwsi needs a UTF-8 database (migration 0079): paths are Unicode text, and the rules refusing invisible
-- characters in them name Unicode's code points; in a single-byte encoding (SQL_ASCII, LATIN1, WIN1252)
-- those code points are bytes of other characters, and valid paths (a German or Polish place name) were refused (found by
-- review).
DO $$
BEGIN
    IF getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'database % is encoded %: hrwsi needs a UTF8 database', current_database(), getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'create one with ENCODING ''UTF8'' (CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0), '
                         'then pg_dump this one and restore it there (README.md, "Backup and restore")';
    END IF;
END $$;

-- Products made before this migration that break its rules and were not chained yet: the chaining's
-- UPDATE of chained_at checks every rule of the row, kept NOT VALID or not, and one such row failed each
-- batch it was in, for ever (found by review). A negative size says nothing: it becomes unknown (NULL);
-- a path with an invisible character could not become an input: it is set aside as chained, and said.
UPDATE hrwsi.product SET size_bytes = NULL WHERE size_bytes < 0;
DO $$
DECLARE
    n integer;
BEGIN
    UPDATE hrwsi.product SET chained_at = now()
    WHERE chained_at IS NULL
      AND path ~ '[[:cntrl:]\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE '% product(s) whose path holds an invisible character will not be chained into inputs (an input''s path may not hold one); they are marked chained: SELECT id, path FROM hrwsi.product WHERE path ~ ''[\u200b-\u200f\u2028-\u202e]'' lists most', n;
    END IF;
END $$;

ALTER TABLE hrwsi.input DROP CONSTRAINT input_path_has_no_control_characters;
ALTER TABLE hrwsi.input ADD CONSTRAINT input_path_has_no_control_or_invisible_characters
    CHECK (input_path !~ '[[:cntrl:]\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]') NOT VALID;
ALTER TABLE hrwsi.product DROP CONSTRAINT product_path_is_absolute_without_control_characters;
ALTER TABLE hrwsi.product ADD CONSTRAINT product_path_is_absolute_without_control_characters
    CHECK (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]' AND path !~ '(^|/)\.\.(/|$)') NOT VALID;
ALTER TABLE hrwsi.product ADD CONSTRAINT product_size_bytes_is_not_negative CHECK (size_bytes >= 0) NOT VALID;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE input_path ~ '[[:cntrl:]\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]') THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_path_has_no_control_or_invisible_characters;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE NOT (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]'
                                                          AND path !~ '(^|/)\.\.(/|$)')) THEN
        ALTER TABLE hrwsi.product VALIDATE CONSTRAINT product_path_is_absolute_without_control_characters;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE size_bytes < 0) THEN
        ALTER TABLE hrwsi.product VALIDATE CONSTRAINT product_size_bytes_is_not_negative;
    END IF;
END $$;

-- What a task was made from stays what its input says (migration 0079): an input's condition, path,
-- tile, times or lane rewritten after its task existed left the task in its old time series and
-- place (linked by the old tile and time), with its old deadline, and its products named the old
-- path (found by exploratory testing). A correction is a new input; the old task is cancelled.
-- Only for an UPDATE that changes one of them (its WHEN condition); hrwsi itself never does. (Named
-- to fire after the check that the condition exists, which says the more basic thing.)
CREATE FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from() RETURNS trigger LANGUAGE plpgsql
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
              HINT = format('insert the corrected input as a new row (INSERT INTO hrwsi.input ...; a path is one input '
                            'per condition, so give the corrected file''s path), then cancel the old task if it should '
                            'not run: `hrwsi cancel %s` (or SELECT hrwsi.cancel_task(%s)). A mission or scene_id may '
                            'still be corrected.', task.id, task.id);
END $$;
CREATE TRIGGER input_what_a_task_was_made_from_stays
    BEFORE UPDATE OF processing_condition, input_path, tile, measured_at, published_at, lane ON hrwsi.input
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition
                       OR NEW.input_path IS DISTINCT FROM OLD.input_path OR NEW.tile IS DISTINCT FROM OLD.tile
                       OR NEW.measured_at IS DISTINCT FROM OLD.measured_at
                       OR NEW.published_at IS DISTINCT FROM OLD.published_at OR NEW.lane IS DISTINCT FROM OLD.lane)
    EXECUTE FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from();

-- A scene's identifier as the harvester gives it (hrwsi.harvest.product_names.scene_id_of): the
-- file name without its extensions, `/eodata/X.SAFE.zip` -> `X` (NULL if nothing is left). For a
-- data engineer's INSERT, which gives scene_id only when asked to (migration 0079): with it, the
-- same scene under another path is the same input of a condition, as the harvester's are.
CREATE FUNCTION hrwsi.scene_id_of(path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
RETURN nullif(regexp_replace(substring(rtrim(path, '/') FROM '[^/]*$'),
                             '(\.(safe|sen3|zip|json|tif|tiff|nc|tar|tgz|gz|h5|xml|jp2))+$', '', 'i'), '');

-- The trigger function is callable by whoever writes inputs; scene_id_of by every role.
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from(), hrwsi.scene_id_of(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.refuse_changing_what_a_task_was_made_from(), hrwsi.scene_id_of(text)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
