-- hrwsi schema, version 122: a hold's reason names the failure that finished last, and timeliness counts production's
-- products alone.
--
-- (migration 0122) The failure policy wrote "last: <message>" with max(message) over the outcomes of one call: the
-- greatest text, not the failure that finished last (a batch of failures of two kinds named whichever sorted last).
-- And the timeliness view counted a reprocessing campaign's products (of scenes sensed months or years before) with
-- production's, in the lane's rows (the archive lane's back-fill), their delays and share on time (found by
-- exploratory testing). The function is that of migration 0075 and after with its last_message alone changed.

CREATE OR REPLACE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on AS $$
-- After job outcomes: count consecutive failures per routine (production), per routine's back-fill
-- and per campaign; hold a routine, its back-fill or a campaign that reached the routine's limit.
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('processed', 'internal_error', 'external_error')) THEN
        RETURN NULL;
    END IF;
    -- Successes only, and no routine or campaign has failures to forget: nothing to count. (The usual
    -- outcome; the query below is planned at each call, 0.3 ms, most of the cost of recording one outcome.)
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('internal_error', 'external_error') AND fault IS NULL)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine
                       WHERE consecutive_failures <> 0 OR backfill_consecutive_failures <> 0)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.campaign WHERE consecutive_failures <> 0) THEN
        RETURN NULL;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT t.routine, t.campaign_id, coalesce(t.campaign_id IS NULL AND l.priority > 0, false) AS backfill,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL) AS failures,
               -- (the latest-finished failure's: max(message) named the greatest text of the batch, said "last",
               -- found by exploratory testing; migration 0122)
               (array_agg(n.message ORDER BY n.finished_at DESC NULLS LAST, n.id DESC)
                    FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL))[1]
                   AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        LEFT JOIN hrwsi.lane l ON l.name = t.lane
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY 1, 2, 3 $q$
    LOOP
        IF r.campaign_id IS NOT NULL THEN
            -- Reprocessing (another version, archive inputs) says nothing of production: the campaign's own count.
            UPDATE hrwsi.campaign
            SET consecutive_failures = CASE WHEN r.failures = 0 THEN 0
                                            WHEN r.any_success THEN r.failures
                                            ELSE consecutive_failures + r.failures END
            WHERE id = r.campaign_id AND (r.failures > 0 OR (r.any_success AND consecutive_failures <> 0));
            UPDATE hrwsi.campaign k
            SET on_hold = true,
                hold_reason = format('%s consecutive failures (limit %s of routine %s); last: %s',
                                     k.consecutive_failures, p.hold_after_failures, p.name, r.last_message)
            FROM hrwsi.processing_routine p
            WHERE k.id = r.campaign_id AND p.name = r.routine AND r.failures > 0 AND NOT k.on_hold
              AND k.consecutive_failures >= p.hold_after_failures;
            CONTINUE;
        END IF;
        IF r.backfill THEN
            -- A back-fill's failures (archive inputs of another format, say) say little of the routine's
            -- near-real-time work: they held the routine, and with it the fresh scenes (found by
            -- exploratory testing; migration 0075). They hold the back-fill alone.
            UPDATE hrwsi.processing_routine
            SET backfill_consecutive_failures = CASE WHEN r.failures = 0 THEN 0
                                                     WHEN r.any_success THEN r.failures
                                                     ELSE backfill_consecutive_failures + r.failures END
            WHERE name = r.routine AND (r.failures > 0 OR (r.any_success AND backfill_consecutive_failures <> 0));
            UPDATE hrwsi.processing_routine
            SET backfill_hold_reason = format('%s consecutive failures of back-fill tasks (limit %s); last: %s',
                                              backfill_consecutive_failures, hold_after_failures, r.last_message)
            WHERE name = r.routine AND r.failures > 0 AND backfill_hold_reason IS NULL
              AND backfill_consecutive_failures >= hold_after_failures;
            CONTINUE;
        END IF;
        IF r.failures = 0 THEN
            IF r.any_success THEN
                UPDATE hrwsi.processing_routine SET consecutive_failures = 0
                WHERE name = r.routine AND consecutive_failures <> 0;
            END IF;
            CONTINUE;
        END IF;
        UPDATE hrwsi.processing_routine
        SET consecutive_failures = CASE WHEN r.any_success THEN r.failures ELSE consecutive_failures + r.failures END
        WHERE name = r.routine;
        UPDATE hrwsi.processing_routine
        SET on_hold = true,
            hold_reason = format('%s consecutive failures (limit %s); last: %s',
                                 consecutive_failures, hold_after_failures, r.last_message)
        WHERE name = r.routine AND NOT on_hold AND consecutive_failures >= hold_after_failures;
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE VIEW hrwsi.timeliness AS
SELECT routine, lane, tile, day, count(*) AS products,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_sensing_s) AS p50_from_sensing_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_sensing_s) AS p95_from_sensing_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY from_publication_s) AS p50_from_publication_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY from_publication_s) AS p95_from_publication_s,
       count(deadline_at) AS with_deadline,
       count(*) FILTER (WHERE on_time) AS on_time,
       (count(*) FILTER (WHERE on_time))::float8 / nullif(count(deadline_at), 0) AS share_on_time
FROM hrwsi.product_timeliness
WHERE campaign_id IS NULL
GROUP BY routine, lane, tile, day;
