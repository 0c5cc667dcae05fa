-- hrwsi schema, version 57: ops hold a reprocessing campaign by hand.
--
-- A campaign went on hold only through its own failures; to pause one so that production could
-- catch up, ops had to cancel it, or hold its routine, which holds production too (found by
-- exploratory testing, 2026-12-05). hrwsi.hold_campaign holds its waiting tasks; what runs goes on.

-- A campaign held by hand (`hrwsi campaigns --hold`), to let production catch up: its waiting tasks
-- are held (hrwsi.hold_campaign_tasks), what runs goes on; production is not held. Only a routine
-- could be held by hand, which holds production too (migration 0057).
CREATE FUNCTION hrwsi.hold_campaign(campaign bigint, reason text DEFAULT 'held by an operator') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    held bigint;
    under_way bigint;
BEGIN
    PERFORM 1 FROM hrwsi.campaign k WHERE k.id = hold_campaign.campaign FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no campaign %', hold_campaign.campaign USING ERRCODE = 'no_data_found';
    END IF;
    IF (SELECT k.on_hold FROM hrwsi.campaign k WHERE k.id = hold_campaign.campaign) THEN
        RETURN format('campaign %s was already on hold', hold_campaign.campaign);
    END IF;
    UPDATE hrwsi.campaign SET on_hold = true, hold_reason = hold_campaign.reason WHERE id = hold_campaign.campaign;
    SELECT count(*) FILTER (WHERE t.state = 'on_hold'), count(*) FILTER (WHERE t.state <> 'on_hold')
    INTO held, under_way
    FROM hrwsi.processing_task t
    WHERE t.campaign_id = hold_campaign.campaign AND t.state IN ('on_hold', 'dispatched', 'queued', 'running');
    RETURN format('campaign %s is on hold: %s waiting task(s) held, %s dispatched or running go on; production goes '
                  'on. `hrwsi campaigns --release %s` starts it again', hold_campaign.campaign, held, under_way,
                  hold_campaign.campaign);
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
        RAISE EXCEPTION 'campaign % is not on hold: only a held campaign can be released',
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

REVOKE EXECUTE ON FUNCTION hrwsi.hold_campaign(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.hold_campaign(bigint, text) TO hrwsi_service;
