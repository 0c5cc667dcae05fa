-- hrwsi schema, version 35: the launcher writes how its jobs progressed through a function,
-- hrwsi.mark_jobs_progress, whose joins are nested loops over the index of their keys whatever the
-- table sizes its plans were made on (issue 15; as hrwsi.record_outcomes, migration 0034). The
-- statement it replaces, sent by the launcher as a prepared statement, kept a generic plan made on
-- a small task table: with plans made on 5 or 30 tasks and 20,000 added since, marking one job
-- running read 20,015 and 20,040 tasks; made on 300, 1.

CREATE FUNCTION hrwsi.mark_jobs_progress(p_jobs bigint[], p_states text[], p_reasons text[],
                                         p_seen timestamptz[], p_owners text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, hrwsi SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_material = off AS $$
BEGIN
    WITH mark AS (
        SELECT m.job_id, m.state, m.reason, m.seen_at, m.owner
        FROM unnest(p_jobs, p_states, p_reasons, p_seen, p_owners) AS m(job_id, state, reason, seen_at, owner)
    ), j AS (
        UPDATE job j SET state = m.state, message = m.reason, updated_at = now(),
            started_at = CASE WHEN m.state = 'running' THEN coalesce(j.started_at, m.seen_at) ELSE j.started_at END
        FROM mark m
        WHERE j.id = m.job_id AND j.owner = m.owner AND j.state IN ('submitted', 'queued', 'running')
          AND j.state <> m.state
        RETURNING j.task_id, j.attempt, m.state, m.reason
    )
    -- (updated_at as the transition triggers would set it: they are not called for these rows)
    UPDATE processing_task t SET state = j.state, state_reason = j.reason, updated_at = now()
    FROM j WHERE t.id = j.task_id AND t.attempts = j.attempt
      AND t.state IN ('dispatched', 'queued', 'running') AND t.state <> j.state;
END $$;
REVOKE EXECUTE ON FUNCTION hrwsi.mark_jobs_progress(bigint[], text[], text[], timestamptz[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.mark_jobs_progress(bigint[], text[], text[], timestamptz[], text[]) TO hrwsi_service;
