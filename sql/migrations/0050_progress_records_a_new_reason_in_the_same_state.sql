-- hrwsi schema, version 50: the progress of a job records a new reason in the same state.
--
-- The Nomad backend reports a running attempt whose node is cut off as still running, with the
-- reason ("its node is disconnected (unknown); if it is not back by 17:42:24 UTC ... it is retried
-- then"), and one its client ran again after a restart likewise. hrwsi.mark_jobs_progress wrote a
-- job's progress only when its state changed: the launcher logged the reason, and `hrwsi status`,
-- `hrwsi tasks` and the dashboard kept "running: allocation ... on node-a" (found by exploratory
-- testing, 2026-12-05).

CREATE OR REPLACE FUNCTION hrwsi.mark_jobs_progress(p_jobs bigint[], p_states text[], p_reasons text[],
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
        -- Each job, then each task, a probe of its key (`= ANY (ARRAY[...])`; migration 0038): a plan
        -- made while the tables held a row or two read, to mark one job running, 20,004 jobs (most
        -- likely, as the claim's did, in the order of the key an equality with the batch makes
        -- worth reading; this plan was not read). The state tests are wrapped as in
        -- hrwsi.record_outcomes, so that no index of states serves them.
        WHERE j.id = ANY (ARRAY[m.job_id]) AND j.owner = m.owner
          AND coalesce(j.state IN ('submitted', 'queued', 'running'), false)
          -- (a new reason in the same state too: "its node is disconnected ... retried at 17:42 UTC"
          -- was logged, while status and the dashboard kept "running on node-a"; migration 0050)
          AND (j.state <> m.state OR j.message IS DISTINCT FROM m.reason)
        RETURNING j.task_id, j.attempt, m.state, m.reason
    )
    -- (updated_at as the transition triggers would set it: they are not called for these rows)
    UPDATE processing_task t SET state = j.state, state_reason = j.reason, updated_at = now()
    FROM j WHERE t.id = ANY (ARRAY[j.task_id]) AND t.attempts = j.attempt
      AND coalesce(t.state IN ('dispatched', 'queued', 'running'), false)
      AND (t.state <> j.state OR t.state_reason IS DISTINCT FROM j.reason);
END $$;
