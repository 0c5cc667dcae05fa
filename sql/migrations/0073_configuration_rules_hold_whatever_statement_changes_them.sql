-- hrwsi schema, version 73: the rules of a processing chain hold whatever statement changes them.
--
-- A cycle of chaining (routine A reads what B writes and B what A writes) was refused by `hrwsi
-- config load` alone: a data engineer's plain SQL (`UPDATE hrwsi.processing_condition SET active =
-- true`, a condition inserted, a routine's product types changed, a multi-input rule removed)
-- closed one, and each product chained into a new input for ever (found by exploratory testing).
-- The check is a function now, hrwsi.chain_cycle(), read by `config load` and by a deferred
-- constraint trigger on the statements that can close a cycle.
--
-- A task blocked behind a blocked task of its series named the chain's first blocked task, not the
-- one it waits for, nor the task whose end blocked them all: hrwsi.after_task_changes names both now.
--
-- A routine whose sequential_per_tile was turned off kept its tasks' links: they went on waiting for
-- the task before them. Its tasks that have not started no longer wait (hrwsi.end_a_routines_series).
--
-- A member of a multi-input group that arrived after its group's composite was made was in no
-- composite, and a campaign on the condition reran the composite without it: a campaign's composite
-- reads the members its group has when the campaign starts (hrwsi.multi_input_campaign_member).
--
-- A routine renamed in the configuration file is a new routine beside the old one: the old one's
-- open tasks went on running its command, held ones stayed on it, and nothing said so.
-- hrwsi.move_tasks moves those that have not started to a routine that reads the same type.
--
-- A condition made active again got none of the products made while it was inactive: the harvester
-- chains a product once. hrwsi.chain_missed_products chains them, bounded and idempotent.

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
-- and checks at each: the tables are small and rarely written. (It checked once per statement,
-- remembered in a setting, which anyone may set: a data engineer who set it skipped the check;
-- found by review.)
CREATE FUNCTION hrwsi.refuse_a_chain_cycle() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cycle text[];
BEGIN
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

-- The tasks after a blocked task of a series name the task they wait for directly and the root cause
-- (the task that ended terminated or cancelled, and `hrwsi retry`): they named the chain's first
-- blocked task alone (found by exploratory testing).
CREATE OR REPLACE FUNCTION hrwsi.after_task_changes() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_nestloop = off SET enable_hashjoin = on
SET enable_mergejoin = on AS $$
DECLARE
    counts json;           -- rows per new state: every row inserted, the rows updated to another state ...
    progress json;         -- ... but those of work under way (hrwsi.state_is_under_way), told apart
    new_states text[];     -- (of an UPDATE) the states tasks went to
    named_workers text[];  -- the workers tasks were put on: each must exist (the key's check)
    locked integer;
    upstream bigint[];     -- (of an UPDATE) tasks upstream of a time series that ended ...
    reopened bigint[];     -- ... or were retried from their end
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('hrwsi.in_dispatch_claim', true) = 'on' THEN
        RETURN NULL;  -- hrwsi.dispatch's claim: it writes all of this itself, in its own statement
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_event (task_id, state, reason, attempts, worker)
        SELECT id, state, state_reason, attempts, worker FROM new_rows;
        SELECT json_object_agg(state, n) FILTER (WHERE NOT hrwsi.state_is_under_way(state)),
               json_object_agg(state, n) FILTER (WHERE hrwsi.state_is_under_way(state))
        INTO counts, progress
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) c;
        SELECT array_agg(DISTINCT worker) INTO named_workers FROM new_rows WHERE worker IS NOT NULL;
    ELSE
        -- The history, the counts and the workers named from one join of the transition tables.
        WITH changed AS MATERIALIZED (
            SELECT n.id, n.state, n.state_reason, n.attempts, n.worker,
                   n.state IS DISTINCT FROM o.state AS state_changed,
                   n.worker IS DISTINCT FROM o.worker AS worker_changed
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state OR n.worker IS DISTINCT FROM o.worker
        ), event AS (
            INSERT INTO task_event (task_id, state, reason, attempts, worker)
            SELECT id, state, state_reason, attempts, worker FROM changed
        ), per_state AS (
            SELECT state, count(*) AS n FROM changed WHERE state_changed GROUP BY state
        ), named AS MATERIALIZED (
            SELECT array_agg(DISTINCT c.worker) AS workers FROM changed c WHERE c.worker_changed AND c.worker IS NOT NULL
        ), locked_workers AS (
            -- (each worker a statement put tasks on locked once, as below for an INSERT; in this
            -- statement since migration 0037: a claim's UPDATE paid a statement more)
            SELECT 1 FROM worker w WHERE w.name = ANY ((SELECT n.workers FROM named n)::text[]) FOR KEY SHARE OF w
        )
        SELECT (SELECT json_object_agg(p.state, p.n) FILTER (WHERE NOT hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT json_object_agg(p.state, p.n) FILTER (WHERE hrwsi.state_is_under_way(p.state)) FROM per_state p),
               (SELECT array_agg(p.state) FROM per_state p),
               (SELECT n.workers FROM named n), (SELECT count(*) FROM locked_workers)
        INTO counts, progress, new_states, named_workers, locked;
        -- (migration 0072) Tasks that ended, or were retried from their end, of a routine whose output
        -- a time-series routine reads: the series' tasks after their scene may wait no more, or again.
        -- Read only where some time series reads another routine's output: elsewhere a statement pays
        -- one look at the routines, not a test of every changed row.
        IF EXISTS (SELECT 1 FROM processing_routine r JOIN processing_routine d
                   ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile) THEN
            SELECT array_agg(n.id) FILTER (WHERE hrwsi.task_state_is_final(n.state)),
                   array_agg(n.id) FILTER (WHERE NOT hrwsi.task_state_is_final(n.state))
            INTO upstream, reopened
            FROM new_rows n JOIN old_rows o USING (id)
            WHERE n.state IS DISTINCT FROM o.state
              AND (hrwsi.task_state_is_final(n.state) OR hrwsi.task_state_is_final(o.state))
              AND n.routine IN (SELECT r.name FROM processing_routine r JOIN processing_routine d
                                ON d.input_product_type = r.output_product_type WHERE d.sequential_per_tile);
        END IF;
    END IF;
    -- A task names an existing worker (migration 0036): each worker a statement put tasks on is
    -- locked once, as the key locked it for every task, then must be there.
    IF named_workers IS NOT NULL THEN
        IF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO locked
            FROM (SELECT 1 FROM worker w WHERE w.name = ANY (named_workers) FOR KEY SHARE OF w) l;
        END IF;
        IF locked < cardinality(named_workers) THEN
            PERFORM hrwsi.refuse_a_missing_worker(named_workers);
        END IF;
    END IF;
    -- A wake-up call (docs/adr/0001), sent at commit: {"op": "update", "counts": {"planned": 3}}.
    IF counts IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', lower(TG_OP), 'counts', counts)::text);
    END IF;
    IF progress IS NOT NULL THEN
        PERFORM pg_notify('hrwsi_task_progress', json_build_object('op', lower(TG_OP), 'counts', progress)::text);
    END IF;
    -- The time-series tasks that wait for these upstream tasks wait no more, or for the next open
    -- scene before them; those after a retried one's scene wait for it again (migration 0072). An end
    -- only releases: a series whose lock another transaction holds is left to the orchestrator's sweep,
    -- not waited for (the launcher's outcome writer waited, then failed: found by review); a retry
    -- adds waits, and waits for the locks.
    IF upstream IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(upstream, false);
    END IF;
    IF reopened IS NOT NULL THEN
        PERFORM hrwsi.wait_for_upstream_after(reopened, true);
    END IF;
    IF TG_OP = 'INSERT' OR new_states IS NULL
            OR NOT new_states && ARRAY['terminated', 'cancelled', 'pending', 'blocked'] THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('enable_nestloop', 'on', true);  -- until this call returns (its SET clause)

    -- A task that failed for good: ops are told, with what to do.
    IF 'terminated' = ANY (new_states) THEN
        EXECUTE $q$
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_terminated', format('hrwsi: task %s (%s) terminated', n.id, n.routine),
                   format('Task %s (routine %s, input %s) failed %s time(s) and will not be retried automatically. '
                          'Last: %s. Retry it with `hrwsi retry %s`.', n.id, n.routine, i.input_path, n.failures,
                          coalesce(n.state_reason, '-'), n.id),
                   n.id, n.routine
            FROM new_rows n JOIN old_rows o USING (id) JOIN input i ON i.id = n.input_id
            WHERE n.state = 'terminated' AND o.state <> 'terminated' $q$;
    END IF;
    -- A dependency that ends terminated or cancelled blocks its dependents ...
    IF new_states && ARRAY['terminated', 'cancelled'] THEN
        EXECUTE $q$
            WITH blocked AS (
                UPDATE processing_task t
                SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                    state_reason = format('its dependency, task %s, ended %s; `hrwsi retry %s` runs the '
                                          'dependency again, `hrwsi release %s` runs this task without it',
                                          d.id, d.state, d.id, t.id)
                FROM new_rows d JOIN old_rows o USING (id)
                WHERE t.depends_on = d.id AND d.state IN ('terminated', 'cancelled') AND o.state <> d.state
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                RETURNING t.id, t.routine, t.state_reason
            )
            INSERT INTO alert (kind, subject, body, task_id, routine)
            SELECT 'task_blocked', format('hrwsi: task %s (%s) is blocked', id, routine), state_reason, id, routine
            FROM blocked $q$;
    END IF;
    -- ... and, blocked, the tasks after them in their chain (a time series' later scenes of the tile),
    -- all at once, without an alert of their own: they stayed planned, at a time long past and with
    -- no reason, for as long as the blocked task waited (found by exploratory testing; migration
    -- 0060). One statement for the whole chain: a trigger per link would nest as deep as the series
    -- is long. (This trigger then runs for the rows it blocked, and finds nothing left to block.)
    IF 'blocked' = ANY (new_states) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root) AS (
                SELECT t.id, b.id FROM new_rows b JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = b.id
                WHERE b.state = 'blocked' AND o.state <> 'blocked'
                  AND t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
                UNION ALL
                SELECT t.id, a.root FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state IN ('pending', 'planned', 'on_hold') AND NOT t.dependency_waived
            )
            -- (the reason names the task it waits for directly, and the root cause: the task that
            -- ended, behind which the chain waits; it named the chain's first blocked task alone, so
            -- that a task three links down named a task it did not wait for: migration 0073)
            UPDATE processing_task t
            SET state = 'blocked', worker = NULL, planned_start = NULL, planned_end = NULL,
                state_reason = CASE
                    WHEN cause.id IS NOT NULL THEN
                        format('waits for task %s, which is blocked behind task %s, which ended %s: `hrwsi retry %s` '
                               'runs that task again, and the tasks after it then run in order', t.depends_on,
                               cause.id, cause.state, cause.id)
                    WHEN t.depends_on = a.root THEN
                        format('waits for task %s, which is blocked (`hrwsi task show %s` says why): it runs once '
                               'that task has run', a.root, a.root)
                    ELSE format('waits for task %s, which is blocked behind task %s (`hrwsi task show %s` says why): '
                                'it runs once those have run', t.depends_on, a.root, a.root) END
            FROM after_it a JOIN processing_task r ON r.id = a.root
            LEFT JOIN processing_task cause ON cause.id = r.depends_on AND cause.state IN ('terminated', 'cancelled')
            WHERE t.id = a.id $q$;
    END IF;
    -- ... and, retried (or released), unblocks them and the tasks after them in their chain.
    IF 'pending' = ANY (new_states)
            AND EXISTS (SELECT 1 FROM old_rows WHERE state IN ('terminated', 'cancelled', 'blocked')) THEN
        EXECUTE $q$
            WITH RECURSIVE after_it (id, root) AS (
                SELECT t.id, d.id FROM new_rows d JOIN old_rows o USING (id)
                JOIN processing_task t ON t.depends_on = d.id
                WHERE d.state = 'pending' AND o.state IN ('terminated', 'cancelled', 'blocked')
                  AND t.state = 'blocked'
                  -- (still pending: a task a late scene's link unblocked and the block above
                  -- blocked again, behind the late one, keeps the tasks after it blocked)
                  AND EXISTS (SELECT 1 FROM processing_task c WHERE c.id = d.id AND c.state = 'pending')
                UNION ALL
                SELECT t.id, a.root FROM after_it a JOIN processing_task t ON t.depends_on = a.id
                WHERE t.state = 'blocked'
            )
            UPDATE processing_task t SET state = 'pending',
                state_reason = format('its dependency, task %s, was retried or released', a.root)
            FROM after_it a WHERE t.id = a.id $q$;
    END IF;
    RETURN NULL;
END $$;

-- A routine that is no longer a time series (sequential_per_tile turned off, by `hrwsi config load`
-- or by SQL): its tasks that have not started no longer wait for the task before them on their tile
-- (migration 0073). They kept their links, so pending and planned tasks waited, and blocked ones
-- stayed blocked, for a series that no longer was one (found by exploratory testing). The link is
-- waived, not cleared (as `hrwsi release` waives it): the history keeps what it was. Blocked and
-- planned tasks go back to pending, to be planned without it; each says why in its history. Turned
-- on, a routine links the tasks created from then on; its open tasks run as they are.
CREATE FUNCTION hrwsi.end_a_routines_series() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released integer;
BEGIN
    -- (a task that stays pending or held gets no history row from hrwsi.after_task_changes, nor a
    -- wake-up call: its own here, below)
    WITH event AS (
    INSERT INTO task_event (task_id, state, reason, attempts, worker)
    SELECT t.id, t.state, format('routine %s is no longer a time series (sequential_per_tile off): it no longer '
                                 'waits for task %s', NEW.name, coalesce(t.depends_on, t.waits_for_upstream)),
           t.attempts, t.worker
    FROM processing_task t
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'on_hold')
    RETURNING state)
    SELECT count(*) FILTER (WHERE state = 'pending') INTO released FROM event;
    UPDATE processing_task t
    SET dependency_waived = true,
        waits_for_upstream = NULL,  -- (nor for an earlier scene's upstream work: migration 0072)
        state = CASE WHEN t.state IN ('planned', 'blocked') THEN 'pending' ELSE t.state END,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state = 'on_hold' THEN t.state_reason
                            ELSE format('routine %s is no longer a time series (sequential_per_tile off): it no '
                                        'longer waits for task %s', NEW.name,
                                        coalesce(t.depends_on, t.waits_for_upstream)) END
    WHERE t.routine = NEW.name AND (t.depends_on IS NOT NULL OR t.waits_for_upstream IS NOT NULL)
      AND NOT t.dependency_waived AND t.state IN ('pending', 'planned', 'blocked', 'on_hold');
    -- (those that stayed pending: a planned or blocked one went to pending, and that trigger said so;
    -- they waited, unannounced, for the next plan or dispatch: found by review)
    IF released > 0 THEN
        PERFORM pg_notify('hrwsi_task', json_build_object('op', 'update', 'counts',
                                                          json_build_object('pending', released))::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER processing_routine_series_ended
    AFTER UPDATE OF sequential_per_tile ON hrwsi.processing_routine FOR EACH ROW
    WHEN (OLD.sequential_per_tile AND NOT NEW.sequential_per_tile)
    EXECUTE FUNCTION hrwsi.end_a_routines_series();
-- (a trigger function: callable by whoever writes the table that fires it)
REVOKE EXECUTE ON FUNCTION hrwsi.end_a_routines_series() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.end_a_routines_series() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- A member of a multi-input group that arrived after its group's composite was made was in no
-- composite, and a campaign on the condition reran the composite from production's record of its
-- members, without it (found by exploratory testing). A campaign's composite now reads the members
-- its group has when the campaign starts, recorded for its task; `hrwsi groups` lists the members
-- that arrived late, with the command that makes a composite with them.
-- The members a campaign's task of a multi-input condition reads (migration 0073): those its group
-- has when the campaign starts (hrwsi.multi_input_members_now), not production's record of the
-- members there were when the group was made. A member that arrived after its group's composite ran
-- was in no composite, and a campaign on the condition reran the composite without it (found by
-- exploratory testing). Production's record (multi_input_member) stays what its composite read.
CREATE TABLE hrwsi.multi_input_campaign_member (
    task_id      bigint NOT NULL CONSTRAINT multi_input_campaign_member_task_must_exist
        REFERENCES hrwsi.processing_task (id) ON DELETE CASCADE,
    member_path  text NOT NULL,
    product_type text NOT NULL,
    measured_at  timestamptz,
    CONSTRAINT multi_input_campaign_member_is_listed_once_per_task PRIMARY KEY (task_id, member_path)
);
-- (lineage and retention find the composites a product is a member of by its path)
CREATE INDEX multi_input_campaign_member_path_idx ON hrwsi.multi_input_campaign_member (member_path);

-- The members a group of a multi-input condition has now: a tile and the window_days days ending on
-- the anchor day, as the harvester's statement reads them (multi_input_create_complete_groups:
-- production products of a required type, with the tile and time of the input their task processed,
-- and inputs not chained from a product, as the type their routine reads), with when each arrived
-- (the product's or the input's registration). Read by hrwsi.reprocess for a campaign's composite
-- and by `hrwsi groups` for the members that arrived after their group's composite was made.
CREATE FUNCTION hrwsi.multi_input_members_now(group_condition text, group_tile text, anchor_day date)
RETURNS TABLE (member_path text, product_type text, measured_at timestamptz, arrived_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi
BEGIN ATOMIC
    SELECT p.path, p.product_type, i.measured_at, p.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_task t ON t.input_id = i.id AND t.campaign_id IS NULL
    JOIN hrwsi.product p ON p.task_id = t.id
    WHERE r.processing_condition = group_condition
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND p.product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                             WHERE q.processing_condition = group_condition)
    UNION
    SELECT i.input_path, ro.input_product_type, i.measured_at, i.created_at
    FROM hrwsi.multi_input_rule r
    JOIN hrwsi.input i ON i.tile = group_tile
    JOIN hrwsi.processing_condition c ON c.name = i.processing_condition
    JOIN hrwsi.processing_routine ro ON ro.name = c.routine
    WHERE r.processing_condition = group_condition AND i.product_id IS NULL
      AND i.measured_at >= (anchor_day - (r.window_days - 1))::timestamp AT TIME ZONE 'UTC'
      AND i.measured_at < (anchor_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND ro.input_product_type IN (SELECT q.product_type FROM hrwsi.multi_input_requirement q
                                    WHERE q.processing_condition = group_condition)
      AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_rule x WHERE x.processing_condition = i.processing_condition);
END;

-- hrwsi.reprocess records them for each task of a multi-input condition it creates.
CREATE OR REPLACE FUNCTION hrwsi.reprocess(
    routine text DEFAULT NULL, condition text DEFAULT NULL, measured_from timestamptz DEFAULT NULL,
    measured_to timestamptz DEFAULT NULL, tiles text[] DEFAULT NULL, command text[] DEFAULT NULL,
    image text DEFAULT NULL, chain boolean DEFAULT true, name text DEFAULT NULL, again boolean DEFAULT false)
RETURNS TABLE (campaign_id bigint, tasks integer, summary text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    target text := reprocess.routine;
    new_campaign bigint;
    created integer;
    twin bigint;
BEGIN
    IF (reprocess.routine IS NULL) = (reprocess.condition IS NULL) THEN
        RAISE EXCEPTION 'give the routine or the condition to reprocess, one of them' USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.measured_from IS NULL OR reprocess.measured_to IS NULL THEN
        RAISE EXCEPTION 'give the sensing times to reprocess: measured_from and measured_to'
            USING ERRCODE = 'check_violation';
    END IF;
    IF reprocess.condition IS NOT NULL THEN
        SELECT c.routine INTO target FROM processing_condition c WHERE c.name = reprocess.condition;
        IF target IS NULL THEN
            RAISE EXCEPTION 'no condition %', reprocess.condition USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM processing_routine r WHERE r.name = target) THEN
        RAISE EXCEPTION 'no routine %', target USING ERRCODE = 'no_data_found';
    END IF;
    -- Two starts of one request at once would both find no twin: starts are serialised until the
    -- transaction ends (any constant shared by every hrwsi process; hrwsi.migrations holds 0x68727773).
    PERFORM pg_advisory_xact_lock(1752332131);  -- 0x68727763, "hrwc"
    IF NOT reprocess.again THEN
        SELECT k.id INTO twin
        FROM campaign k
        WHERE k.routine = target AND k.condition IS NOT DISTINCT FROM reprocess.condition
          AND k.measured_from = reprocess.measured_from AND k.measured_to = reprocess.measured_to
          AND (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(k.tiles) x)
              IS NOT DISTINCT FROM (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(reprocess.tiles) x)
          AND k.command IS NOT DISTINCT FROM reprocess.command AND k.image IS NOT DISTINCT FROM reprocess.image
          AND k.cancelled_at IS NULL
          AND EXISTS (SELECT 1 FROM campaign_progress p WHERE p.campaign_id = k.id AND p.finished_at IS NULL)
        ORDER BY k.id DESC
        LIMIT 1;
        IF twin IS NOT NULL THEN
            RAISE EXCEPTION 'campaign % already reprocesses these inputs with this version and has not finished', twin
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'campaign_is_not_started_twice',
                      HINT = format('SELECT * FROM hrwsi.campaign_progress WHERE campaign_id = %s shows it; call '
                                    'hrwsi.reprocess with again => true to start another one anyway (both run)', twin);
        END IF;
    END IF;
    INSERT INTO campaign (name, routine, condition, measured_from, measured_to, tiles, command, image, chain)
    VALUES (reprocess.name, target, reprocess.condition, reprocess.measured_from, reprocess.measured_to,
            reprocess.tiles, reprocess.command, reprocess.image, reprocess.chain)
    RETURNING id INTO new_campaign;

    INSERT INTO processing_task (input_id, routine, state, state_reason, lane, priority, series_tile, series_at,
                                 campaign_id)
    SELECT i.id, c.routine, CASE WHEN r.on_hold THEN 'on_hold' ELSE 'pending' END,
           CASE WHEN r.on_hold THEN 'routine on hold: ' || r.hold_reason
                ELSE format('reprocessing campaign %s', new_campaign) END,
           l.name, l.priority,
           CASE WHEN r.sequential_per_tile AND i.measured_at IS NOT NULL THEN i.tile END,
           CASE WHEN r.sequential_per_tile AND i.tile IS NOT NULL THEN i.measured_at END,
           new_campaign
    FROM input i
    JOIN processing_condition c ON c.name = i.processing_condition
    JOIN processing_routine r ON r.name = c.routine
    JOIN campaign k ON k.id = new_campaign
    JOIN lane l ON l.name = k.lane
    WHERE c.routine = target AND (reprocess.condition IS NULL OR c.name = reprocess.condition)
      AND i.campaign_id IS NULL
      AND i.measured_at >= reprocess.measured_from AND i.measured_at < reprocess.measured_to
      AND (reprocess.tiles IS NULL OR i.tile = ANY (reprocess.tiles))
      AND EXISTS (SELECT 1 FROM processing_task d WHERE d.input_id = i.id AND d.state = 'processed')
    ORDER BY i.measured_at, i.id
    -- Each input locked, as the tasks' key to their input locked it (migration 0026): none of them
    -- can be removed before this transaction ends (hrwsi.refuse_removing_inputs_tasks_name).
    FOR KEY SHARE OF i;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created = 0 THEN
        RAISE EXCEPTION 'nothing to reprocess: no input of % % sensed from % to % was processed%',
            CASE WHEN reprocess.condition IS NULL THEN 'routine' ELSE 'condition' END,
            coalesce(reprocess.condition, target), reprocess.measured_from, reprocess.measured_to,
            CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' (tiles ' || array_to_string(reprocess.tiles, ', ') || ')' END
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A time-series routine reads the previous product of its tile: the campaign's tasks of a tile
    -- form a series of their own, in sensing order.
    UPDATE processing_task t SET depends_on = s.previous
    FROM (SELECT x.id, lag(x.id) OVER (PARTITION BY x.series_tile ORDER BY x.series_at, x.id) AS previous
          FROM processing_task x WHERE x.campaign_id = new_campaign AND x.series_tile IS NOT NULL) s
    WHERE t.id = s.id AND s.previous IS NOT NULL;
    -- A composite (a task of a multi-input condition) is made again from the members its group has
    -- now, recorded for the campaign's task (migration 0073): production's record is the members
    -- there were when the group was made, and a member that arrived after its composite ran was in
    -- no composite, the campaign's neither (found by exploratory testing).
    INSERT INTO multi_input_campaign_member (task_id, member_path, product_type, measured_at)
    SELECT t.id, m.member_path, min(m.product_type), min(m.measured_at)
    FROM processing_task t
    JOIN input g ON g.id = t.input_id
    CROSS JOIN LATERAL multi_input_members_now(g.processing_condition, g.tile,
                                               substring(g.input_path FROM '[0-9]{4}-[0-9]{2}-[0-9]{2}$')::date) m
    WHERE t.campaign_id = new_campaign AND g.source = 'multi_input' AND g.tile IS NOT NULL
    GROUP BY t.id, m.member_path;
    RETURN QUERY SELECT new_campaign, created,
        format('campaign %s: %s task(s) of routine %s for inputs sensed from %s to %s%s, in the %s lane, running %s%s',
               new_campaign, created, target, hrwsi.utc_text(reprocess.measured_from),
               hrwsi.utc_text(reprocess.measured_to),
               CASE WHEN reprocess.tiles IS NULL THEN '' ELSE ' on tiles ' || array_to_string(reprocess.tiles, ', ') END,
               k.lane, CASE WHEN k.command IS NULL AND k.image IS NULL THEN 'the routine''s own version'
                            ELSE concat_ws(' ', k.image, array_to_string(k.command, ' ')) END,
               CASE WHEN k.chain THEN '; its products chain downstream within the campaign' ELSE '' END)
        FROM campaign k WHERE k.id = new_campaign;
END $$;

-- The manifest of a campaign's composite lists the members recorded for its task.
CREATE OR REPLACE VIEW hrwsi.job_spec AS
SELECT j.id AS job_id, j.task_id, j.attempt, j.backend, j.backend_job_id, j.state, j.log_path, j.output_dir,
       t.routine, i.processing_condition AS condition, i.input_path, i.tile, j.worker, t.lane,
       p.command, p.image,
       -- (what its attempt was dispatched with, if its routine changed since: migration 0067)
       CASE WHEN t.held_attempt = j.attempt THEN t.held_cpu ELSE r.cpu END::float8 AS cpu,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_ram_mb ELSE r.ram_mb END AS ram_mb,
       CASE WHEN t.held_attempt = j.attempt THEN t.held_storage_mb ELSE r.storage_mb END AS storage_mb,
       extract(epoch FROM r.timeout)::float8 AS timeout_s, r.env::text AS env, r.output_product_type,
       json_build_object(
           'task', t.id, 'attempt', j.attempt, 'routine', t.routine, 'condition', i.processing_condition,
           'lane', t.lane, 'deadline_at', t.deadline_at, 'campaign', t.campaign_id,
           'routine_version', j.routine_version,
           'input', json_build_object('path', i.input_path, 'tile', i.tile, 'mission', i.mission,
                                       'measured_at', i.measured_at, 'published_at', i.published_at,
                                       'product_type', r.input_product_type),
           -- (a campaign's composite reads the members recorded for its task when the campaign
           -- started, those its group had then; production's, those recorded with its group:
           -- migration 0073. A campaign's task started before has none of its own: production's.)
           'members', coalesce(CASE WHEN t.campaign_id IS NOT NULL THEN
                                   (SELECT json_agg(json_build_object(
                                               'path', m.member_path, 'product_type', m.product_type,
                                               'tile', i.tile, 'measured_at', m.measured_at)
                                           ORDER BY m.measured_at, m.member_path)
                                    FROM (SELECT m.* FROM hrwsi.multi_input_campaign_member m
                                          WHERE m.task_id = t.id OFFSET 0) m) END,
                               (SELECT json_agg(json_build_object(
                                           'path', m.member_path, 'product_type', m.product_type,
                                           'tile', i.tile, 'measured_at', m.measured_at)
                                       ORDER BY m.measured_at, m.member_path)
                                FROM (SELECT m.* FROM hrwsi.multi_input_member m WHERE m.input_id = i.id OFFSET 0) m),
                             '[]'::json),
           'series', CASE WHEN t.series_tile IS NULL THEN NULL ELSE json_build_object(
               'tile', t.series_tile, 'first', t.depends_on IS NULL, 'previous_task', t.depends_on,
               'previous_products', coalesce((SELECT json_agg(json_build_object(
                                                  'path', p.path, 'product_type', p.product_type) ORDER BY p.path)
                                              FROM (SELECT p.* FROM hrwsi.product p WHERE p.task_id = t.depends_on OFFSET 0) p),
                                             '[]'::json))
           END
       )::text AS manifest
FROM hrwsi.job j
CROSS JOIN LATERAL (SELECT t.* FROM hrwsi.processing_task t WHERE t.id = j.task_id OFFSET 0) t
CROSS JOIN LATERAL (SELECT i.* FROM hrwsi.input i WHERE i.id = t.input_id OFFSET 0) i
JOIN hrwsi.processing_routine r ON r.name = t.routine
CROSS JOIN LATERAL (SELECT p.command, p.image FROM hrwsi.task_program p WHERE p.task_id = t.id OFFSET 0) p;

-- A product a campaign's composite lists is kept, as one a group input lists.
CREATE OR REPLACE FUNCTION hrwsi.prune_products(batch integer) RETURNS TABLE (kind text, path text, root text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- One batch of product rows older than products that no input was made from (chaining) and no
-- group input lists, nor a campaign's composite (migration 0073): a kept product's ancestors always
-- have a child, so they stay. Only chained products (the harvester has seen them). Their files are not touched: they are the archive's.
#variable_conflict use_column
BEGIN
    RETURN QUERY
        WITH doomed AS (
            SELECT p.id FROM hrwsi.product p
            WHERE p.created_at < now() - (SELECT products FROM hrwsi.retention_policy)
              AND p.chained_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_member m WHERE m.member_path = p.path)
              AND NOT EXISTS (SELECT 1 FROM hrwsi.multi_input_campaign_member m WHERE m.member_path = p.path)
            ORDER BY p.id LIMIT batch
            FOR UPDATE OF p SKIP LOCKED),
        gone AS (DELETE FROM hrwsi.product p USING doomed WHERE p.id = doomed.id RETURNING p.id)
        SELECT 'product', NULL::text, NULL::text FROM gone;
END $$;

GRANT SELECT ON hrwsi.multi_input_campaign_member TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
-- (the members a multi-input group has now: `hrwsi groups` reads it, as any role)
REVOKE EXECUTE ON FUNCTION hrwsi.multi_input_members_now(text, text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.multi_input_members_now(text, text, date) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Move a routine's production tasks that have not started (pending, planned, blocked, on hold) to
-- another routine that reads the same input type (migration 0073). `hrwsi config load` never
-- removes a routine: a routine renamed in the file is a new routine beside the old one, its
-- conditions move to the new one, and the old one's open tasks went on running the old command,
-- held ones stayed held on it, and nothing said so (found by exploratory testing). Tasks under way
-- (dispatched, queued, running) end on the routine they started on; a campaign's tasks stay with
-- their campaign's routine. A planned task is planned again; a task held because its old routine is
-- on hold is released when the new one is not, and one moved to a routine on hold is held; a task
-- held by hand stays held. A blocked task still waits for its task. Each says so in its history.
CREATE FUNCTION hrwsi.move_tasks(from_routine text, to_routine text) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    source processing_routine;
    target processing_routine;
    moved bigint;
    stay_under_way bigint;
    stay_campaign bigint;
    moved_reason text := format('moved from routine %s to routine %s by an operator', from_routine, to_routine);
BEGIN
    SELECT * INTO source FROM processing_routine r WHERE r.name = from_routine;
    SELECT * INTO target FROM processing_routine r WHERE r.name = to_routine FOR KEY SHARE;
    IF source.name IS NULL OR target.name IS NULL THEN
        RAISE EXCEPTION 'no routine %', CASE WHEN source.name IS NULL THEN from_routine ELSE to_routine END
            USING ERRCODE = 'no_data_found';
    END IF;
    IF source.name = target.name THEN
        RAISE EXCEPTION 'routine %: give another routine to move its tasks to', from_routine
            USING ERRCODE = 'check_violation';
    END IF;
    IF source.input_product_type IS DISTINCT FROM target.input_product_type THEN
        RAISE EXCEPTION 'routine % reads %, routine % reads %: the tasks of % cannot run on %', from_routine,
            source.input_product_type, to_routine, target.input_product_type, from_routine, to_routine
            USING ERRCODE = 'check_violation';
    END IF;
    -- (a task whose state stays gets no history row from hrwsi.after_task_changes: its own here)
    INSERT INTO task_event (task_id, state, reason, attempts, worker)
    SELECT t.id, t.state, moved_reason, t.attempts, t.worker
    FROM processing_task t
    WHERE t.routine = from_routine AND t.campaign_id IS NULL
      AND (t.state = 'blocked'
           OR (t.state = 'pending' AND NOT target.on_hold)
           OR (t.state = 'on_hold' AND (target.on_hold OR t.state_reason NOT LIKE 'routine on hold: %')));
    UPDATE processing_task t
    SET routine = to_routine,
        state = CASE WHEN t.state IN ('pending', 'planned') AND target.on_hold THEN 'on_hold'
                     WHEN t.state = 'planned' THEN 'pending'
                     WHEN t.state = 'on_hold' AND NOT target.on_hold AND t.state_reason LIKE 'routine on hold: %'
                         THEN 'pending'
                     ELSE t.state END,
        worker = CASE WHEN t.state = 'planned' THEN NULL ELSE t.worker END,
        planned_start = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_start END,
        planned_end = CASE WHEN t.state = 'planned' THEN NULL ELSE t.planned_end END,
        state_reason = CASE WHEN t.state IN ('pending', 'planned') AND target.on_hold
                                THEN moved_reason || '; routine on hold: ' || coalesce(target.hold_reason, 'by an operator')
                            WHEN t.state = 'on_hold' AND (target.on_hold OR t.state_reason NOT LIKE 'routine on hold: %')
                                THEN moved_reason || '; ' || t.state_reason
                            WHEN t.state = 'blocked' THEN moved_reason || '; ' || t.state_reason
                            ELSE moved_reason END
    WHERE t.routine = from_routine AND t.campaign_id IS NULL
      AND t.state IN ('pending', 'planned', 'blocked', 'on_hold');
    GET DIAGNOSTICS moved = ROW_COUNT;
    SELECT count(*) FILTER (WHERE t.campaign_id IS NULL AND t.state IN ('dispatched', 'queued', 'running')),
           count(*) FILTER (WHERE t.campaign_id IS NOT NULL AND NOT task_state_is_final(t.state))
    INTO stay_under_way, stay_campaign
    FROM processing_task t WHERE t.routine = from_routine;
    RETURN format('%s task(s) of routine %s moved to routine %s%s%s', moved, from_routine, to_routine,
                  CASE WHEN stay_under_way > 0
                       THEN format('; %s under way end on %s', stay_under_way, from_routine) ELSE '' END,
                  CASE WHEN stay_campaign > 0
                       THEN format('; %s open task(s) of campaigns stay on %s, their campaign''s routine',
                                   stay_campaign, from_routine) ELSE '' END);
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.move_tasks(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.move_tasks(text, text) TO hrwsi_service;

-- A condition's range of missed products: a product whose input of the condition retention pruned
-- was counted missed and chained again (found by review). Conditions inactive at this upgrade missed
-- what came from now on; active ones, nothing.
ALTER TABLE hrwsi.processing_condition ADD COLUMN missed_since timestamptz, ADD COLUMN missed_until timestamptz;
UPDATE hrwsi.processing_condition SET missed_since = now() WHERE NOT active;
CREATE FUNCTION hrwsi.keep_a_conditions_missed_range() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, hrwsi AS $$
-- A condition's range of missed products (migration 0073): opened when it is made inactive (or is
-- made: what came before it), closed when it is made active again; written by nobody else, but
-- cleared by hrwsi.chain_missed_products once it chained them all.
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.missed_since := '-infinity';
        NEW.missed_until := CASE WHEN NEW.active THEN now() END;
    ELSIF OLD.active AND NOT NEW.active THEN
        NEW.missed_since := now();
        NEW.missed_until := NULL;
    ELSIF NEW.active AND NOT OLD.active THEN
        NEW.missed_since := coalesce(OLD.missed_since, now());
        NEW.missed_until := now();
    ELSIF current_setting('hrwsi.clearing_missed_range', true) IS DISTINCT FROM 'on' THEN
        NEW.missed_since := OLD.missed_since;
        NEW.missed_until := OLD.missed_until;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER processing_condition_missed_range BEFORE INSERT OR UPDATE ON hrwsi.processing_condition
    FOR EACH ROW EXECUTE FUNCTION hrwsi.keep_a_conditions_missed_range();
REVOKE EXECUTE ON FUNCTION hrwsi.keep_a_conditions_missed_range() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.keep_a_conditions_missed_range() TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;

-- Chain to a condition the products of the type it reads that were made while it was inactive (or
-- before it existed) and so were never chained to it (migration 0073): the harvester chains a product
-- once, into the conditions active then, and marks it chained; a condition made active again got
-- nothing of what was made meanwhile, and nothing said so (found by exploratory testing). The rules
-- are chain_products' for production (sql/queries/core.sql): production products (a campaign's chain
-- within it), the condition's tiles, a back-fill's lane kept, and its measurement window: a product
-- whose scene is older than the window is not chained, only counted (`hrwsi reprocess` of the routine
-- upstream makes such products again, chained within a campaign). Bounded (at most max_products
-- inputs a call, oldest products first; made_since: products made from then on) and idempotent (an
-- input is unique per condition and path: a product chained already is skipped). dry_run counts only.
CREATE FUNCTION hrwsi.chain_missed_products(condition text, made_since timestamptz DEFAULT NULL,
                                            max_products integer DEFAULT 10000, dry_run boolean DEFAULT false)
RETURNS TABLE (chained integer, missed bigint, outside_window bigint, summary text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
#variable_conflict use_column
DECLARE
    c processing_condition;
    reads text;
    made integer := 0;
    in_window bigint;
    too_old bigint;
BEGIN
    SELECT * INTO c FROM processing_condition x WHERE x.name = chain_missed_products.condition;
    IF c.name IS NULL THEN
        RAISE EXCEPTION 'no condition %', chain_missed_products.condition USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM multi_input_rule m WHERE m.processing_condition = c.name) THEN
        RAISE EXCEPTION 'condition % is multi-input: the harvester makes its groups from the products there are '
                        '(`hrwsi groups` lists them)', c.name USING ERRCODE = 'check_violation';
    END IF;
    IF NOT c.active AND NOT dry_run THEN
        RAISE EXCEPTION 'condition % is inactive: make it active first (its products would make no task)', c.name
            USING ERRCODE = 'check_violation';
    END IF;
    IF max_products IS NULL OR max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1' USING ERRCODE = 'check_violation';
    END IF;
    SELECT r.input_product_type INTO reads FROM processing_routine r WHERE r.name = c.routine;
    WITH candidate AS (
        SELECT p.id, p.path, i.tile, i.mission, i.measured_at, p.created_at,
               CASE WHEN upstream.priority > downstream.priority THEN t.lane END AS lane,
               (upstream.priority > downstream.priority OR c.measurement_window IS NULL OR i.measured_at IS NULL
                OR i.measured_at >= now() - c.measurement_window) IS TRUE AS in_window
        FROM product p
        JOIN lane downstream ON downstream.name = c.lane
        LEFT JOIN processing_task t ON t.id = p.task_id
        LEFT JOIN lane upstream ON upstream.name = t.lane
        LEFT JOIN input i ON i.id = t.input_id
        WHERE p.product_type = reads AND p.chained_at IS NOT NULL AND t.campaign_id IS NULL
          AND (made_since IS NULL OR p.created_at >= made_since)
          -- (chained while it missed them: a product whose input of this condition retention pruned
          -- is not chained again, nor one chained to it before it was made inactive)
          AND p.chained_at >= c.missed_since AND (c.missed_until IS NULL OR p.chained_at < c.missed_until)
          AND (c.tiles IS NULL OR i.tile = ANY (c.tiles))
          AND NOT EXISTS (SELECT 1 FROM input x WHERE x.processing_condition = c.name AND x.input_path = p.path)
    ), inserted AS (
        INSERT INTO input (processing_condition, input_path, tile, mission, measured_at, published_at, source,
                           product_id, lane)
        SELECT c.name, m.path, m.tile, m.mission, m.measured_at, m.created_at, 'chaining', m.id, m.lane
        FROM candidate m
        WHERE m.in_window AND NOT dry_run
        ORDER BY m.id
        LIMIT max_products
        ON CONFLICT (processing_condition, input_path) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted), count(*) FILTER (WHERE m.in_window), count(*) FILTER (WHERE NOT m.in_window)
    INTO made, in_window, too_old
    FROM candidate m;
    -- All chained (those older than its window are not, and are said below): it misses nothing now.
    IF NOT dry_run AND in_window <= made THEN
        PERFORM set_config('hrwsi.clearing_missed_range', 'on', true);
        UPDATE processing_condition x SET missed_since = NULL, missed_until = NULL WHERE x.name = c.name;
        PERFORM set_config('hrwsi.clearing_missed_range', 'off', true);
    END IF;
    RETURN QUERY SELECT made, in_window, too_old,
        CASE WHEN dry_run THEN format('condition %s: %s product(s) of type %s not chained to it', c.name, in_window, reads)
             ELSE format('condition %s: %s product(s) of type %s chained to it%s', c.name, made, reads,
                         CASE WHEN in_window > made THEN format('; %s more: run it again', in_window - made) ELSE '' END)
        END
        || CASE WHEN too_old > 0
                THEN format('; %s older than its measurement window (%s) are not chained: `hrwsi reprocess` of the '
                            'routine that makes %s chains their products again, within a campaign', too_old,
                            c.measurement_window, reads)
                ELSE '' END;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.chain_missed_products(text, timestamptz, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.chain_missed_products(text, timestamptz, integer, boolean)
    TO hrwsi_data_engineer, hrwsi_service;
