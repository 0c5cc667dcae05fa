-- hrwsi schema, version 47: a failed attempt's task is held, not retried, when its routine or its
-- campaign is on hold.
--
-- The hold of a routine or a campaign held the tasks waiting at that moment. A task whose attempt
-- ended later went back to pending for its retry: a held campaign's tasks were planned, run and
-- terminated one by one, and a held routine's sat pending, counted as held and listed as "cannot be
-- planned" with their old reason (found by exploratory testing, 2026-12-05).
--
-- Also: a cancelled campaign is no longer on hold (it still said "on hold ... --release" after its
-- cancel), and releasing a campaign that is not on hold is refused instead of "released; 0 held".

CREATE OR REPLACE FUNCTION hrwsi.record_outcomes(
    p_owner text, p_lease_s double precision, p_backoff_s double precision,
    p_jobs bigint[], p_states text[], p_exit_codes integer[], p_messages text[],
    p_started timestamptz[], p_finished timestamptz[], p_faults text[],
    p_product_jobs bigint[], p_product_paths text[], p_product_sizes bigint[])
RETURNS TABLE (job_id bigint, job_state text, task_id bigint, task_state text, failures integer,
               max_attempts integer, lost_count integer)
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
-- Every table is read through an index (a plan cached when the tables were small would otherwise
-- scan them whole on every call once they are large). And every join is a nested loop over the
-- index of its key, without a materialized inner side (migration 0034): a merge join planned while
-- the task table was small read every task up to the batch's in every call (recording one outcome
-- read 40,000 tasks), and a nested loop may read a small table whole once and keep it.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off AS $$
#variable_conflict use_column
-- Only the owner of a job, holding a fresh lease, records its outcome. A product path that is
-- already registered (or listed twice) fails its job with the reason instead of being dropped.
-- Routine failures count toward max_attempts and the failure policy; lost attempts (a fault of
-- the infrastructure) are retried without limit, with backoff, and alerted when they repeat.
DECLARE
    -- Per outcome (by its position in p_jobs): where its products start in the product arrays, how
    -- many it has, and why its products cannot be registered. Products are listed in the order of
    -- their outcomes; each is found by its position, never by a join of one list with the other
    -- (under the generic plan, a nested loop: 3,000 outcomes with a product each took 1.6 s).
    outcomes integer := coalesce(cardinality(p_jobs), 0);
    product_first integer[] := array_fill(1, ARRAY[outcomes]);
    product_count integer[] := array_fill(0, ARRAY[outcomes]);
    conflict_message text[] := array_fill(NULL::text, ARRAY[outcomes]);
    product_outcome integer[] := '{}';
    i integer := 1;
    c record;
    done_jobs bigint[]; done_states text[]; done_tasks bigint[];
    position_of jsonb;
BEGIN
    PERFORM hrwsi.require_lease(p_owner, p_lease_s);
    FOR k IN 1..coalesce(cardinality(p_product_jobs), 0) LOOP
        WHILE i <= outcomes AND p_jobs[i] IS DISTINCT FROM p_product_jobs[k] LOOP
            i := i + 1;
        END LOOP;
        IF i > outcomes THEN
            RAISE EXCEPTION 'product % lists job %, which is not among the outcomes after the job of the product before it',
                p_product_paths[k], p_product_jobs[k]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'list the products in the order of their outcomes (p_jobs), each after its own job';
        END IF;
        IF product_count[i] = 0 THEN product_first[i] := k; END IF;
        product_count[i] := product_count[i] + 1;
        product_outcome := product_outcome || i;
    END LOOP;
    IF cardinality(product_outcome) > 0 THEN
        -- A path already registered, or listed twice: its attempt fails with the first such path.
        FOR c IN
            SELECT p.k, format('product %s is already registered (%s); nothing of this attempt was registered',
                               p.path, coalesce('by task ' || existing.task_id, 'twice in this batch')) AS message
            FROM (SELECT q.k, q.path, count(*) OVER (PARTITION BY q.path) AS listed
                  FROM unnest(p_product_paths) WITH ORDINALITY AS q(path, k)) p
            LEFT JOIN product existing ON existing.path = p.path
            WHERE existing.id IS NOT NULL OR p.listed > 1
            ORDER BY p.path
        LOOP
            IF conflict_message[product_outcome[c.k]] IS NULL THEN
                conflict_message[product_outcome[c.k]] := c.message;
            END IF;
        END LOOP;
    END IF;

    -- Each job's position in the arrays, found by key: no join of the batch with the job table. (A
    -- job listed twice keeps its first position, where its products are: the last value of a key wins.)
    SELECT jsonb_object_agg(o.id::text, o.n ORDER BY o.n DESC) INTO position_of
    FROM unnest(p_jobs) WITH ORDINALITY AS o(id, n);
    WITH finished AS (
        -- The batch's jobs through their primary key (= ANY), each with the outcome at its position,
        -- so that no plan can read the job table once per outcome. (Joined with the batch, a generic
        -- plan made while the job table was nearly empty took it for one row and did so until the
        -- next ANALYZE: 1,000 outcomes in 0.2-0.4 s instead of 45 ms. The state test is wrapped so
        -- that it cannot be served by the partial index of active jobs either.)
        UPDATE job j
        SET (state, exit_code, message, fault, started_at, finished_at) = (
            SELECT CASE WHEN j.cancel_requested THEN 'cancelled'
                        WHEN conflict_message[x.n] IS NOT NULL THEN 'internal_error' ELSE p_states[x.n] END,
                   p_exit_codes[x.n],
                   CASE WHEN j.cancel_requested
                        THEN 'cancelled by an operator: ' || coalesce(conflict_message[x.n], p_messages[x.n])
                        ELSE coalesce(conflict_message[x.n], p_messages[x.n]) END,
                   CASE WHEN j.cancel_requested OR conflict_message[x.n] IS NOT NULL THEN NULL ELSE p_faults[x.n] END,
                   coalesce(j.started_at, p_started[x.n], now()), coalesce(p_finished[x.n], now())
            FROM (SELECT (position_of ->> j.id::text)::integer AS n) x),
            updated_at = now()  -- (what hrwsi.enforce_job_transition would set: not called for these rows)
        WHERE j.id = ANY (p_jobs) AND j.owner = p_owner AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
        RETURNING j.id, j.state, j.task_id, j.attempt, j.message, (position_of ->> j.id::text)::integer AS n
    ), products AS (
        -- A processed attempt's products, by their positions in the product arrays.
        INSERT INTO product (task_id, path, product_type, size_bytes)
        SELECT f.task_id, p_product_paths[k], r.output_product_type, p_product_sizes[k]
        FROM finished f
        CROSS JOIN LATERAL generate_series(product_first[f.n], product_first[f.n] + product_count[f.n] - 1) AS k
        -- (each task and its routine a probe of their keys, `= ANY (ARRAY[...])`, as below)
        JOIN processing_task t ON t.id = ANY (ARRAY[f.task_id]) JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
        -- Only the attempts that list products (migration 0041): the task and routine of every
        -- processed attempt were probed, to register nothing for those without (1,000 outcomes of a
        -- burst without products: 4.4 ms of the call's 50).
        WHERE f.state = 'processed' AND product_count[f.n] > 0
        RETURNING product.task_id
    ), processed AS (
        -- (A processed attempt registered every product it listed: a conflict fails the attempt.)
        UPDATE processing_task t
        SET state = 'processed', state_reason = format('%s product(s)', product_count[f.n]),
            -- (what hrwsi.enforce_task_transition would set: it is not called for these rows)
            updated_at = now(), finished_at = now(), history_pruned_at = NULL
        FROM finished f
        WHERE f.state = 'processed' AND t.id = ANY (ARRAY[f.task_id]) AND t.attempts = f.attempt
          -- (wrapped, as the jobs' state test above: each task is read through its primary key from
          -- the batch. Served by the index of task states, a generic plan made while few tasks ran
          -- took the running tasks for one row and compared every one with every outcome: 1,000
          -- outcomes in 200 ms instead of 50. And each task, and its routine, is a probe of its key,
          -- `= ANY (ARRAY[...])` (migration 0038): an equality with the batch, or with the routines,
          -- let the planner read the tasks in the order of an index, and a plan made while the table
          -- held a task or two read all 40,002 for one outcome.)
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.state, t.failures, t.lost_count
    ), failed AS (
        UPDATE processing_task t
        SET failures = t.failures + CASE WHEN f.state = 'lost' THEN 0 ELSE 1 END,
            lost_count = t.lost_count + CASE WHEN f.state = 'lost' THEN 1 ELSE 0 END,
            state = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN 'terminated'
                         ELSE 'pending' END,
            state_reason = format('attempt %s %s: %s', f.attempt, f.state, f.message),
            worker = NULL, planned_start = NULL, planned_end = NULL,
            not_before = now() + make_interval(secs => least(600.0, p_backoff_s * power(2, greatest(0,
                CASE WHEN f.state = 'lost' THEN t.lost_count ELSE t.failures END)))),
            -- (what hrwsi.enforce_task_transition would set: terminated is final, pending is not)
            updated_at = now(), history_pruned_at = NULL,
            finished_at = CASE WHEN f.state <> 'lost' AND t.failures + 1 >= r.max_attempts THEN now() END
        FROM finished f, processing_routine r
        WHERE f.state IN ('internal_error', 'external_error', 'lost') AND t.id = ANY (ARRAY[f.task_id])
          AND t.attempts = f.attempt AND r.name = ANY (ARRAY[t.routine])
          AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
        RETURNING t.id, t.routine, t.state, t.state_reason, t.failures, t.lost_count, r.max_attempts
    ), alerted AS (
        -- An attempt lost again and again says the infrastructure is sick: tell ops (3rd, 6th, 12th...).
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'task_lost_repeatedly', format('hrwsi: task %s lost %s attempts', fl.id, fl.lost_count),
               format('Task %s (routine %s) lost %s attempts to infrastructure faults; last: %s. '
                      'It is retried with backoff; check the launchers, workers and backend.',
                      fl.id, fl.routine, fl.lost_count, fl.state_reason), fl.id, fl.routine
        FROM failed fl
        WHERE fl.lost_count IN (3, 6, 12, 24, 48, 96, 192)
    )
    SELECT array_agg(f.id), array_agg(f.state), array_agg(f.task_id)
    INTO done_jobs, done_states, done_tasks
    FROM finished f;  -- (processed, failed and alerted run all the same: a WITH that modifies data
                      -- always runs to completion, read or not)

    -- A failed attempt's task goes back to pending for its retry; when its routine or its campaign
    -- is on hold (by an operator, or by the failure policy in an earlier call) it is held instead.
    -- (The hold held the tasks waiting then; a task whose attempt ended later went back to pending:
    -- a held campaign's tasks were planned, run and terminated one by one, and a held routine's sat
    -- pending, counted as held and shown as "cannot be planned"; migration 0047.)
    IF 'internal_error' = ANY (done_states) OR 'external_error' = ANY (done_states) OR 'lost' = ANY (done_states) THEN
        UPDATE processing_task t
        SET state = 'on_hold',
            state_reason = CASE WHEN r.on_hold THEN 'routine on hold: ' || coalesce(r.hold_reason, 'held by an operator')
                                ELSE (SELECT format('campaign %s on hold: %s', k.id, k.hold_reason)
                                      FROM campaign k WHERE k.id = t.campaign_id) END
        FROM processing_routine r
        WHERE t.id = ANY (done_tasks) AND t.state = 'pending' AND r.name = ANY (ARRAY[t.routine])
          AND (r.on_hold OR (t.campaign_id IS NOT NULL
                             AND EXISTS (SELECT 1 FROM campaign k WHERE k.id = t.campaign_id AND k.on_hold)));
    END IF;

    -- The tasks as this call left them, read by primary key in a statement of its own (it sees the
    -- updates above). Joining the updates' own results instead was planned as a nested loop of
    -- one batch against the other (the generic plan expects one row each): 1,000 outcomes took
    -- 120 ms of the call's 220 ms, and 4x as long for twice as many. Each task is a probe of its
    -- key (LATERAL, OFFSET 0: never a join, which, planned while the table was small, was a merge
    -- join reading every task up to the batch's in every call; migration 0034).
    RETURN QUERY
    SELECT x.job, x.state, x.task, s.state, s.failures, s.max_attempts, s.lost_count
    FROM unnest(done_jobs, done_states, done_tasks) AS x(job, state, task)
    CROSS JOIN LATERAL (SELECT t.state, t.failures, r.max_attempts, t.lost_count
                        FROM processing_task t JOIN processing_routine r ON r.name = ANY (ARRAY[t.routine])
                        WHERE t.id = x.task OFFSET 0) s;
END $$;

CREATE OR REPLACE FUNCTION hrwsi.cancel_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    cancelled integer;
    stopping integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = cancel_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', cancel_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE hrwsi.job SET cancel_requested = true
    WHERE state IN ('submitted', 'queued', 'running')
      AND task_id IN (SELECT t.id FROM hrwsi.processing_task t WHERE t.campaign_id = cancel_campaign.campaign);
    GET DIAGNOSTICS stopping = ROW_COUNT;
    UPDATE hrwsi.processing_task SET state = 'cancelled',
        state_reason = format('its campaign %s was cancelled by an operator', cancel_campaign.campaign)
    WHERE campaign_id = cancel_campaign.campaign AND state NOT IN ('processed', 'terminated', 'cancelled');
    GET DIAGNOSTICS cancelled = ROW_COUNT;
    -- Ended: no longer on hold (it said "on hold ... --release" after its cancel; migration 0047).
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE id = cancel_campaign.campaign AND (on_hold OR consecutive_failures <> 0);
    RETURN format('campaign %s: %s open task(s) cancelled, %s running job(s) being stopped; its products are kept',
                  cancel_campaign.campaign, cancelled, stopping);
END $$;

CREATE OR REPLACE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', release_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign) THEN
        RAISE EXCEPTION 'campaign % is not on hold: only a campaign its failures held can be released',
            release_campaign.campaign USING ERRCODE = 'check_violation';
    END IF;
    UPDATE hrwsi.campaign SET on_hold = false, hold_reason = NULL, consecutive_failures = 0
    WHERE id = release_campaign.campaign;
    UPDATE hrwsi.processing_task t SET state = 'pending', state_reason = 'campaign released by an operator',
        worker = NULL, planned_start = NULL, planned_end = NULL
    WHERE t.campaign_id = release_campaign.campaign AND t.state = 'on_hold'
      AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine p WHERE p.name = t.routine AND p.on_hold);
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN format('campaign %s released; %s held task(s) will be planned', release_campaign.campaign, released);
END $$;
