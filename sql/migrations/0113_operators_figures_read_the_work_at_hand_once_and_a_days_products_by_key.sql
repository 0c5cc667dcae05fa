-- hrwsi schema, version 113: the overview's timeliness reads the tasks and inputs of a day's products by their keys.
--
-- The overview reads the timeliness view a day at a time (migration 0100), the newest day first. At a production day
-- (26,070 products among 1,300,000 tasks) the server joined the day's products to their tasks by hash, reading every
-- task ever run: 870 ms and 125,000 buffers on each read of the overview, growing with the archive. A day's rows are
-- read by hrwsi.timeliness_of_day, whose statement joins by nested loops (the tasks and inputs probed by their keys:
-- 180 ms, growing with that day's products alone), with JIT off as every function that turns a planner method off
-- (migration 0088).
CREATE FUNCTION hrwsi.timeliness_of_day(p_day date, max_rows integer)
RETURNS TABLE (routine text, lane text, tile text, day date, products bigint, p50_from_sensing_s float8,
               p95_from_sensing_s float8, p50_from_publication_s float8, p95_from_publication_s float8,
               on_time bigint, with_deadline bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, hrwsi SET enable_hashjoin = off SET enable_mergejoin = off
SET jit = off AS $$
    SELECT v.routine, v.lane, v.tile, v.day, v.products, v.p50_from_sensing_s, v.p95_from_sensing_s,
           v.p50_from_publication_s, v.p95_from_publication_s, v.on_time, v.with_deadline
    FROM hrwsi.timeliness v WHERE v.day = p_day
    ORDER BY v.routine, v.lane, v.tile LIMIT max_rows
$$;
REVOKE EXECUTE ON FUNCTION hrwsi.timeliness_of_day(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.timeliness_of_day(date, integer) TO hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
