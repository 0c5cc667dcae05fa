-- hrwsi schema, version 82: paths refuse the characters that look like a space or nothing, and
-- hrwsi.scene_id_of gives the harvester's scene id for every path.
--
-- Found by exploratory testing (2026-12-06):
-- - a path could hold a no-break space (U+00A0) or a Hangul filler (U+115F, U+1160, U+3164, U+FFA0):
--   the first looks like a space, the others like nothing, and two paths that look the same differed.
--   They are refused with the other Unicode spaces that are not the ASCII space (U+2000-U+200A,
--   U+202F, U+205F, U+3000), in the same single regular expression (the INSERT of inputs is a hot
--   path), in inputs and in products, whose paths become the next step's inputs. Rows already there
--   are kept (the rule is then NOT VALID for them, as migration 0079's); a product not chained yet
--   whose path holds one could not become an input: it is set aside as chained, and said.
-- - hrwsi.scene_id_of differed from the harvester's (hrwsi.harvest.product_names.scene_id_of) on a path
--   ending in `/.`: `/a/X.SAFE/.` gave `.`, the harvester `X`. A path's `.` and empty segments name
--   nothing of their own, as the harvester reads them (PurePosixPath): the scene is the last other one.
UPDATE hrwsi.product SET chained_at = now()
WHERE chained_at IS NULL AND path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';

ALTER TABLE hrwsi.input DROP CONSTRAINT input_path_has_no_control_or_invisible_characters;
ALTER TABLE hrwsi.input ADD CONSTRAINT input_path_has_no_control_or_invisible_characters
    CHECK (input_path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') NOT VALID;
ALTER TABLE hrwsi.product DROP CONSTRAINT product_path_is_absolute_without_control_characters;
ALTER TABLE hrwsi.product ADD CONSTRAINT product_path_is_absolute_without_control_characters
    CHECK (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]' AND path !~ '(^|/)\.\.(/|$)') NOT VALID;
DO $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE input_path ~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]') THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_path_has_no_control_or_invisible_characters;
    ELSE
        SELECT count(*) INTO n FROM hrwsi.input WHERE input_path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';
        RAISE NOTICE '% input(s) have a path with a no-break space, another Unicode space or a Hangul filler: kept, but a new input may not have one: SELECT id, input_path FROM hrwsi.input WHERE input_path ~ ''[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]'' lists them', n;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE NOT (left(path, 1) = '/' AND path !~ '[[:cntrl:]\u0080-\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]'
                                                          AND path !~ '(^|/)\.\.(/|$)')) THEN
        ALTER TABLE hrwsi.product VALIDATE CONSTRAINT product_path_is_absolute_without_control_characters;
    ELSE
        SELECT count(*) INTO n FROM hrwsi.product WHERE path ~ '[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]';
        RAISE NOTICE '% product(s) have a path with a no-break space, another Unicode space or a Hangul filler: kept, and set aside from the chaining (marked chained) if not chained yet', n;
    END IF;
END $$;

-- (the same text as in sql/schema.sql)
CREATE OR REPLACE FUNCTION hrwsi.scene_id_of(path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
RETURN nullif(regexp_replace(substring(path FROM '([^/.][^/]*|\.[^/]+)(/+\.)*/*$'),
                             '(\.(safe|sen3|zip|json|tif|tiff|nc|tar|tgz|gz|h5|xml|jp2))+$', '', 'i'), '');
