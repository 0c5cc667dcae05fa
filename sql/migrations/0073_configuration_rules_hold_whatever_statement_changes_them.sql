-- hrwsi schema, version 73: the rules of a processing chain hold whatever statement changes them.
--
-- A cycle of chaining (routine A reads what B writes and B what A writes) was refused by `hrwsi
-- config load` alone: a data engineer's plain SQL (`UPDATE hrwsi.processing_condition SET active =
-- true`, a condition inserted, a routine's product types changed, a multi-input rule removed)
-- closed one, and each product chained into a new input for ever (found by exploratory testing).
-- The check is a function now, hrwsi.chain_cycle(), read by `config load` and by a deferred
-- constraint trigger on the statements that can close a cycle.

-- The shortest cycle of chaining among the routines as they are (routine names, the first again at
-- the end), or NULL. Routine A's products (its output type) become inputs of routine B when B reads
-- that type and has an active condition that is not multi-input (the harvester's chain_products; a
-- campaign's products chain by the same rule, within the campaign). A multi-input condition makes
-- one input per condition, tile and day, never one per product: a cycle through it ends. One
-- definition for `hrwsi config load` (sql/queries/configuration.sql, config_chain_cycle) and for
-- the guard below, so that the two never disagree.
CREATE FUNCTION hrwsi.chain_cycle() RETURNS text[] LANGUAGE sql STABLE
SET search_path = pg_catalog, hrwsi
BEGIN ATOMIC
    WITH RECURSIVE edge AS (
        SELECT a.name AS source, b.name AS target
        FROM hrwsi.processing_routine a
        JOIN hrwsi.processing_routine b ON b.input_product_type = a.output_product_type
        WHERE EXISTS (SELECT 1 FROM hrwsi.processing_condition c
                      WHERE c.routine = b.name AND c.active
                        AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule m WHERE m.processing_condition = c.name))
    ), walk (start, node, path) AS (
        SELECT edge.source, edge.target, ARRAY[edge.source, edge.target] FROM edge
        UNION ALL
        SELECT w.start, e.target, w.path || e.target
        FROM walk w JOIN edge e ON e.source = w.node
        WHERE w.node <> w.start AND e.target <> ALL (w.path[2:])
    )
    SELECT walk.path FROM walk WHERE walk.node = walk.start ORDER BY cardinality(walk.path), walk.path LIMIT 1;
END;

-- The sentence that names a cycle and what to change (the same as hrwsi.configuration's
-- chain_cycle_problem: a test keeps the two equal).
CREATE FUNCTION hrwsi.chain_cycle_problem(cycle text[]) RETURNS text LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, hrwsi
RETURN CASE WHEN cardinality(cycle) = 2 THEN
           format('routine %L chains into itself for ever (%s): it reads the product type it writes, so each of its '
                  'products would make a new input; give it another output_product_type or make its condition '
                  'inactive', cycle[1], array_to_string(cycle, ' -> '))
       ELSE
           format('routines %s chain into each other for ever (%s): each reads the product type the one before '
                  'writes, so each product would make a new input; give one of them another output_product_type or '
                  'make its condition inactive',
                  (SELECT string_agg(quote_literal(n), ', ' ORDER BY o) FROM unnest(cycle[1:cardinality(cycle) - 1])
                   WITH ORDINALITY AS u(n, o)),
                  array_to_string(cycle, ' -> '))
       END;

-- A statement that can close a cycle of chaining is refused (migration 0073). `hrwsi config load`
-- refused one, but a data engineer's plain SQL did not: `UPDATE hrwsi.processing_condition SET
-- active = true`, a condition inserted or moved to another routine, a routine's product types
-- changed, or a multi-input rule removed (its condition then takes one input per product), and each
-- product chained into a new input for ever (found by exploratory testing). A constraint trigger,
-- deferred to the end of the transaction: the state at commit is what chains, so a transaction may
-- pass through a cycle (swapping two routines' types) and `hrwsi config load`, which checks before
-- it commits, explains a cycle in its file's terms first. It fires only for the rows that can close
-- one (an active condition, a changed product type, a removed rule), on configuration tables alone,
-- and checks once per statement: the tables are small and rarely written.
CREATE FUNCTION hrwsi.refuse_a_chain_cycle() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cycle text[];
BEGIN
    -- (one check per statement: the rows of one statement fire it at the same moment, on one state)
    IF current_setting('hrwsi.chain_checked_at', true) = statement_timestamp()::text THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('hrwsi.chain_checked_at', statement_timestamp()::text, true);
    cycle := hrwsi.chain_cycle();
    IF cycle IS NOT NULL THEN
        RAISE EXCEPTION '%', hrwsi.chain_cycle_problem(cycle)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'routines_do_not_chain_for_ever',
                  HINT = 'nothing of this transaction was kept; a multi-input condition, or an inactive one, breaks '
                         'the cycle (`hrwsi config validate` checks a file the same way)';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER processing_condition_added_closes_no_chain_cycle
    AFTER INSERT ON hrwsi.processing_condition DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER processing_condition_changed_closes_no_chain_cycle
    AFTER UPDATE OF active, routine ON hrwsi.processing_condition DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.active AND (NOT OLD.active OR NEW.routine IS DISTINCT FROM OLD.routine))
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER processing_routine_types_close_no_chain_cycle
    AFTER UPDATE OF input_product_type, output_product_type ON hrwsi.processing_routine DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.input_product_type IS DISTINCT FROM OLD.input_product_type
                       OR NEW.output_product_type IS DISTINCT FROM OLD.output_product_type)
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER multi_input_rule_removed_closes_no_chain_cycle
    AFTER DELETE ON hrwsi.multi_input_rule DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
CREATE CONSTRAINT TRIGGER multi_input_rule_moved_closes_no_chain_cycle
    AFTER UPDATE OF processing_condition ON hrwsi.multi_input_rule DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.processing_condition IS DISTINCT FROM OLD.processing_condition)
    EXECUTE FUNCTION hrwsi.refuse_a_chain_cycle();
REVOKE EXECUTE ON FUNCTION hrwsi.chain_cycle(), hrwsi.chain_cycle_problem(text[]), hrwsi.refuse_a_chain_cycle()
    FROM PUBLIC;
-- (read by `hrwsi config load` and `config validate`, whatever the role; the trigger function is
-- callable by whoever writes the tables that fire it)
GRANT EXECUTE ON FUNCTION hrwsi.chain_cycle(), hrwsi.chain_cycle_problem(text[]), hrwsi.refuse_a_chain_cycle()
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
