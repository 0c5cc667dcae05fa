-- hrwsi schema, version 126: a harvest source's name and product type are at most 200 characters, refused saying so (a name of 6,400 characters was refused by PostgreSQL's own index error, telling of an MD5 index); one stored before is kept.

-- (migration 0126) A harvest source's name and product type are at most 200 characters, as a configuration file's
-- names and product types are (a routine reads a type of at most 200): a name of 6,400 characters was refused by
-- PostgreSQL's own "index row size 6416 exceeds btree version 4 maximum 2704 for index harvest_source_pkey", whose
-- hint tells of an MD5 index, and one of 100,000 characters that compress was taken (found by exploratory testing).
-- A trigger on the INSERT and a change of either, not a CHECK: the harvester's claim updates every due source in one
-- statement, which a rule kept NOT VALID for a row stored before would make fail for all (migration 0116); a row
-- stored before is kept.
CREATE FUNCTION hrwsi.refuse_a_long_harvest_source_name() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
BEGIN
    IF char_length(NEW.name) > 200 AND (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name) THEN
        RAISE EXCEPTION 'harvest source name % is longer than the 200 characters a name may have',
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.name))
            USING ERRCODE = 'check_violation', HINT = 'give the source a shorter name';
    END IF;
    IF char_length(NEW.product_type) > 200 AND (TG_OP = 'INSERT' OR NEW.product_type IS DISTINCT FROM OLD.product_type)
    THEN
        RAISE EXCEPTION 'harvest source % product_type % is longer than the 200 characters a product type may have',
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.name)),
                        hrwsi.quoted_name(hrwsi.unseen_characters_escaped(NEW.product_type))
            USING ERRCODE = 'check_violation',
                  HINT = 'a routine reads a product type of at most 200 characters (the configuration file''s rule)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER harvest_source_name_and_product_type_are_at_most_200_chars
    BEFORE INSERT OR UPDATE OF name, product_type ON hrwsi.harvest_source
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_a_long_harvest_source_name();
REVOKE EXECUTE ON FUNCTION hrwsi.refuse_a_long_harvest_source_name() FROM PUBLIC;
