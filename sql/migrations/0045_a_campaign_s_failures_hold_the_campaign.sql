-- hrwsi schema, version 45: a reprocessing campaign's failures hold the campaign, not the routine.
--
-- A campaign running a version of a routine that cannot start (`hrwsi reprocess --command x`), or
-- archive inputs that fail, counted its failures for the routine: after hold_after_failures of
-- them the routine went on hold, and the near-real-time production of that routine with it (found
-- by exploratory testing, 2026-12-05). Now a campaign's tasks count for the campaign: it goes on
-- hold at the routine's hold_after_failures, its waiting tasks are held, ops get an alert
-- (campaign_on_hold), and production goes on. `hrwsi campaigns --release N` (hrwsi.release_campaign)
-- starts it again; `--cancel N` ends it.
--
-- Also: a campaign's sensing range and a harvest source's back-fill dates must be finite (an
-- infinite one was accepted, and then every listing of campaigns or sources failed on it). NOT
-- VALID: a row written before is not checked again.

ALTER TABLE hrwsi.campaign
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN on_hold boolean NOT NULL DEFAULT false,
    ADD COLUMN hold_reason text,
    ADD CONSTRAINT campaign_sensing_range_is_finite CHECK (isfinite(measured_from) AND isfinite(measured_to)) NOT VALID;

ALTER TABLE hrwsi.harvest_source
    ADD CONSTRAINT harvest_source_backfill_dates_are_finite
        CHECK (isfinite(backfill_from) AND isfinite(backfill_to)) NOT VALID;

ALTER TABLE hrwsi.alert DROP CONSTRAINT alert_kind_is_known;
ALTER TABLE hrwsi.alert ADD CONSTRAINT alert_kind_is_known CHECK (kind IN (
    'task_terminated', 'routine_on_hold', 'task_lost_repeatedly', 'task_blocked', 'deadline_at_risk',
    'deadline_missed', 'campaign_on_hold'));

CREATE OR REPLACE FUNCTION hrwsi.apply_failure_policy() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi SET enable_hashjoin = on SET enable_mergejoin = on
SET enable_material = on AS $$
-- After job outcomes: count consecutive failures per routine (production) and per campaign; hold a
-- routine or a campaign that reached the routine's limit.
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('processed', 'internal_error', 'external_error')) THEN
        RETURN NULL;
    END IF;
    -- Successes only, and no routine or campaign has failures to forget: nothing to count. (The usual
    -- outcome; the query below is planned at each call, 0.3 ms, most of the cost of recording one outcome.)
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN ('internal_error', 'external_error') AND fault IS NULL)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_routine WHERE consecutive_failures <> 0)
       AND NOT EXISTS (SELECT 1 FROM hrwsi.campaign WHERE consecutive_failures <> 0) THEN
        RETURN NULL;
    END IF;
    FOR r IN EXECUTE $q$
        SELECT t.routine, t.campaign_id,
               bool_or(n.state = 'processed') AS any_success,
               count(*) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL) AS failures,
               max(n.message) FILTER (WHERE n.state IN ('internal_error', 'external_error') AND n.fault IS NULL)
                   AS last_message
        FROM new_rows n JOIN old_rows o USING (id) JOIN hrwsi.processing_task t ON t.id = n.task_id
        WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('processed', 'internal_error', 'external_error')
        GROUP BY t.routine, t.campaign_id $q$
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

CREATE FUNCTION hrwsi.hold_campaign_tasks() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
-- A campaign put on hold: its waiting tasks are held too, and ops are told; production goes on.
BEGIN
    IF NEW.on_hold AND NOT OLD.on_hold THEN
        UPDATE hrwsi.processing_task
        SET state = 'on_hold', state_reason = format('campaign %s on hold: %s', NEW.id, NEW.hold_reason)
        WHERE campaign_id = NEW.id AND state IN ('pending', 'planned');
        INSERT INTO hrwsi.alert (kind, subject, body, routine)
        VALUES ('campaign_on_hold', format('hrwsi: campaign %s (routine %s) is on hold', NEW.id, NEW.routine),
                format('Reprocessing campaign %s of routine %s was put on hold: %s. Its waiting tasks are held; the '
                       'production of routine %s goes on. Fix the cause, then run `hrwsi campaigns --release %s`, '
                       'or end it with `hrwsi campaigns --cancel %s`.', NEW.id, NEW.routine,
                       coalesce(NEW.hold_reason, 'by an operator'), NEW.routine, NEW.id, NEW.id),
                NEW.routine);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER campaign_hold AFTER UPDATE OF on_hold ON hrwsi.campaign
    FOR EACH ROW EXECUTE FUNCTION hrwsi.hold_campaign_tasks();

-- Start a held campaign again: its held tasks are planned (those of a routine on hold stay held).
CREATE FUNCTION hrwsi.release_campaign(campaign bigint) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    released integer;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = release_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', release_campaign.campaign USING ERRCODE = 'no_data_found';
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
REVOKE EXECUTE ON FUNCTION hrwsi.hold_campaign_tasks(), hrwsi.release_campaign(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.release_campaign(bigint) TO hrwsi_service;

-- campaign_progress: whether the campaign is on hold, and why (added at the end of the view's columns).
CREATE OR REPLACE VIEW hrwsi.campaign_progress AS
SELECT k.id AS campaign_id, k.name, k.routine AS campaign_routine, k.condition, k.measured_from, k.measured_to,
       k.tiles, nullif(concat_ws(' ', k.image, array_to_string(k.command, ' ')), '') AS version, k.lane, k.chain,
       k.created_at, k.created_by, t.routine, count(t.id) AS tasks,
       count(t.id) FILTER (WHERE t.state IN ('pending', 'planned', 'on_hold', 'blocked')) AS waiting,
       count(t.id) FILTER (WHERE t.state IN ('dispatched', 'queued', 'running')) AS running,
       count(t.id) FILTER (WHERE t.state = 'processed') AS processed,
       count(t.id) FILTER (WHERE t.state = 'terminated') AS terminated,
       count(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled,
       coalesce(sum(x.products), 0)::bigint AS products,
       coalesce(sum(x.unchained), 0)::bigint AS unchained_products,
       min(x.started_at) AS started_at,
       CASE WHEN count(t.id) > 0 AND bool_and(t.state IN ('processed', 'terminated', 'cancelled'))
                 AND coalesce(sum(x.unchained), 0) = 0
            THEN max(greatest(t.updated_at, x.chained_at)) END AS finished_at,
       k.on_hold, k.hold_reason
FROM hrwsi.campaign k
LEFT JOIN hrwsi.processing_task t ON t.campaign_id = k.id
LEFT JOIN LATERAL (SELECT count(*) AS products, count(*) FILTER (WHERE p.chained_at IS NULL) AS unchained,
                          max(p.chained_at) AS chained_at,
                          (SELECT min(j.started_at) FROM hrwsi.job j WHERE j.task_id = t.id) AS started_at
                   FROM hrwsi.product p WHERE p.task_id = t.id) x ON true
GROUP BY k.id, t.routine;
