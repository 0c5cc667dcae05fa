-- hrwsi schema, version 62: what cannot be planned is said in one place.
--
-- `hrwsi status` and the dashboard list the pending tasks the planner cannot place. Each query
-- wrote the same filter of reasons that are no planning problem (a retry waiting out its backoff,
-- a released task, a campaign's ...); one function now says it, for both.

CREATE FUNCTION hrwsi.cannot_be_planned(state text, reason text, not_before timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT state = 'pending' AND reason IS NOT NULL AND reason NOT LIKE 'retried%'
       AND reason NOT LIKE '%released%' AND reason NOT LIKE 'attempt %'
       AND reason NOT LIKE 'reprocessing campaign %' AND reason NOT LIKE '%planned again%'
       AND reason NOT LIKE '%was retried' AND (not_before IS NULL OR not_before <= now())
$$;

REVOKE EXECUTE ON FUNCTION hrwsi.cannot_be_planned(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.cannot_be_planned(text, text, timestamptz)
    TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
