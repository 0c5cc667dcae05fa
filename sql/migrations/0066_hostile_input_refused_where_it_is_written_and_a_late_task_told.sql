-- hrwsi schema, version 66: hostile input refused where it is written, and a late task told.
--
-- Found by exploratory testing (2026-12-06):
-- - an input path holding `${` was accepted, then refused by the Nomad backend (Nomad reads `${...}`
--   in a job's arguments as its variables) and charged to the routine: five such inputs put it on
--   hold. The database refuses it now, and in a product's path, which becomes the next input's;
-- - an input's mission (50 MB) and scene_id (1 MB: "index row requires 11480 bytes") had no limit;
-- - a data engineer could write a source's claim, last run and error: a planted claim stopped a
--   source for a day, and a planted last_error read as hrwsi's. They may write what a source is;
-- - a task processed after its deadline between two deadline checks got no alert of any kind.
-- Rows already there that break a new rule are kept: the rule then holds for new rows only (NOT
-- VALID), and `hrwsi db check` says so.

ALTER TABLE hrwsi.input ADD CONSTRAINT input_path_has_no_dollar_brace CHECK (strpos(input_path, '${') = 0) NOT VALID;
ALTER TABLE hrwsi.input ADD CONSTRAINT input_mission_is_at_most_100_bytes CHECK (octet_length(mission) <= 100) NOT VALID;
ALTER TABLE hrwsi.input ADD CONSTRAINT input_scene_id_is_at_most_500_bytes
    CHECK (octet_length(scene_id) <= 500) NOT VALID;
ALTER TABLE hrwsi.product ADD CONSTRAINT product_path_has_no_dollar_brace CHECK (strpos(path, '${') = 0) NOT VALID;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE strpos(input_path, '${') > 0) THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_path_has_no_dollar_brace;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE octet_length(mission) > 100) THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_mission_is_at_most_100_bytes;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.input WHERE octet_length(scene_id) > 500) THEN
        ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_scene_id_is_at_most_500_bytes;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE strpos(path, '${') > 0) THEN
        ALTER TABLE hrwsi.product VALIDATE CONSTRAINT product_path_has_no_dollar_brace;
    END IF;
END $$;

REVOKE INSERT, UPDATE ON hrwsi.harvest_source FROM hrwsi_data_engineer;
GRANT INSERT (name, kind, product_type, config, frequency, frequency_interval, cron, mode, overlap, first_lookback,
              backfill_from, backfill_to, backfill_cursor, last_success_at, next_run_at, active),
      UPDATE (name, kind, product_type, config, frequency, frequency_interval, cron, mode, overlap, first_lookback,
              backfill_from, backfill_to, backfill_cursor, last_success_at, next_run_at, active)
      ON hrwsi.harvest_source TO hrwsi_data_engineer;

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
    ), processed_late AS (
        -- A task processed after its deadline between two checks was never told (found by
        -- exploratory testing; migration 0066): within the hour after it ended, through the index of
        -- finished tasks.
        INSERT INTO alert (kind, subject, body, task_id, routine)
        SELECT 'deadline_missed', format('hrwsi: task %s (%s) missed its deadline', t.id, t.routine),
               format('Task %s (routine %s, lane %s, tile %s, input %s) was due at %s and was processed at %s, %s '
                      'late. `hrwsi timeliness` shows how late products are.',
                      t.id, t.routine, t.lane, coalesce(i.tile, '-'), i.input_path, hrwsi.utc_text(t.deadline_at),
                      hrwsi.utc_text(t.finished_at), hrwsi.duration_text(t.finished_at - t.deadline_at)),
               t.id, t.routine
        FROM processing_task t JOIN input i ON i.id = t.input_id
        WHERE t.state = 'processed' AND t.finished_at > now() - interval '1 hour' AND t.finished_at > t.deadline_at
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
    SELECT (SELECT count(*) FROM at_risk)::integer,
           ((SELECT count(*) FROM missed) + (SELECT count(*) FROM processed_late))::integer
$$;
