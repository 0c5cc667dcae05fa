-- hrwsi schema, version 59: times in the sentences the database writes are UTC with a Z.
--
-- Alert texts (deadline_at_risk, deadline_missed) and a campaign's summary carried times in the
-- session's zone and PostgreSQL's own format ("2026-12-05 23:18:42.74337+00", "+01" on a server
-- whose zone followed the shell's TZ), where every other time hrwsi shows is UTC with a Z; a
-- plan 17 ms past a deadline read "00:00:00 late" (found by exploratory testing, 2026-12-05).

-- Times and durations in the sentences the database writes (alerts, a campaign's summary), as
-- every other time hrwsi shows: UTC with a Z, to the second, whatever the session's TimeZone (a
-- server whose zone followed the shell's TZ wrote alert texts in +01, and PostgreSQL's own format,
-- "2026-12-05 23:18:42.74337+00"); and a lateness people read ("8 min 41 s", where 17 ms read
-- "00:00:00 late"). Migration 0059, found by exploratory testing.
CREATE FUNCTION hrwsi.utc_text(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')
$$;

CREATE FUNCTION hrwsi.duration_text(span interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN s < 1 THEN 'less than a second'
                WHEN s < 60 THEN format('%s s', floor(s))
                WHEN s < 3600 THEN format('%s min %s s', floor(s / 60), floor(s)::bigint % 60)
                WHEN s < 86400 THEN format('%s h %s min', floor(s / 3600), floor(s / 60)::bigint % 60)
                ELSE format('%s d %s h', floor(s / 86400), floor(s / 3600)::bigint % 24) END
    FROM (SELECT abs(extract(epoch FROM span)) AS s) x
$$;

-- Called by the orchestrator's side task `raise_deadline_alerts`: `deadline_at_risk` when the
-- plan already ends a task after its deadline (before it is late), `deadline_missed` when an open
-- task is past its deadline. A terminated task has its own alert; a cancelled one was an
-- operator's decision. The NOT EXISTS keeps a repeated check from trying again (each try would
-- take an identity value); the ON CONFLICT settles two orchestrators checking at once.
CREATE OR REPLACE FUNCTION hrwsi.raise_deadline_alerts() RETURNS TABLE (at_risk integer, missed integer)
LANGUAGE sql SET search_path = pg_catalog, hrwsi AS $$
    WITH missed AS (
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_missed', format('hrwsi: task %s (%s) missed its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) was due at %s and is still %s%s. '
                      '`hrwsi task show %s` tells why; `hrwsi timeliness` shows how late products are.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.deadline_at),
                      t.state, coalesce(' (' || t.state_reason || ')', ''), t.id),
               t.id, t.routine
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.deadline_at <= now() AND t.state NOT IN ('processed', 'terminated', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_missed')
        ORDER BY t.deadline_at, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    ), at_risk AS (
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_at_risk', format('hrwsi: task %s (%s) will miss its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) is due at %s, but its plan ends it at %s '
                      '(%s late); it is %s. Add capacity, or hold less urgent work.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.deadline_at),
                      hrwsi.utc_text(t.planned_end), hrwsi.duration_text(t.planned_end - t.deadline_at), t.state),
               t.id, t.routine
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.deadline_at > now() AND t.planned_end > t.deadline_at
          AND t.state NOT IN ('processed', 'terminated', 'cancelled')
          AND t.state IN ('planned', 'dispatched', 'queued', 'running')
          AND NOT EXISTS (SELECT 1 FROM alert a WHERE a.task_id = t.id AND a.kind = 'deadline_at_risk')
        ORDER BY t.deadline_at, t.id
        ON CONFLICT (task_id, kind) WHERE kind IN ('deadline_at_risk', 'deadline_missed') DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM at_risk)::integer, (SELECT count(*) FROM missed)::integer
$$;

-- A reprocessing campaign: one new task per input of a routine (or of one condition of it) sensed
-- in [measured_from, measured_to), on the given tiles (NULL: every tile), that was processed
-- already, in the campaign's lane (archive) and without a deadline. A production input only: the
-- inputs an earlier campaign chained stay that campaign's. The routine runs the campaign's
-- command or image when given. Old tasks and products are kept.
-- A campaign still open (not finished, not cancelled) that reprocesses the same routine or condition,
-- range and tiles (in any order; NULL: every tile) with the same version (command and image) is not
-- started again unless `again`: a request repeated (from a shell's history, or a script run twice)
-- started a second campaign and both ran, the same programs on the same inputs. Its name and whether
-- it chains do not matter. (The check was in `hrwsi reprocess` alone until migration 0058.)
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

REVOKE EXECUTE ON FUNCTION hrwsi.utc_text(timestamptz), hrwsi.duration_text(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.utc_text(timestamptz), hrwsi.duration_text(interval)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
