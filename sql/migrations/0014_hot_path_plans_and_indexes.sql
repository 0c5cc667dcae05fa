-- hrwsi schema, version 14: the hot path's plans and indexes (issue 15).
--
-- A statement inside a PL/pgSQL function keeps a prepared plan, but with parameters PostgreSQL
-- plans it afresh ("custom plan") for its first executions and whenever the generic plan's
-- estimate looks worse. The claim and the job_spec view join six tables: planning them cost more
-- than running them (measured per dispatch of one task: 1.77 ms with replanning, 0.61 ms with the
-- generic plans). Their plans walk primary keys and partial indexes, whatever the parameters, so a
-- generic plan is right for every call. (The triggers' transition-table queries have no parameters:
-- they always used one plan, and keep theirs; see migration 0004.)
ALTER FUNCTION hrwsi.dispatch(text, text, double precision, integer, text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION hrwsi.record_outcomes(text, double precision, double precision, bigint[], text[], integer[], text[],
                                     timestamptz[], timestamptz[], text[], bigint[], text[], bigint[])
    SET plan_cache_mode = force_generic_plan;

-- Every state change of a task writes a new row version into each index whose predicate it meets
-- (a state change is never a HOT update). Two indexes repeat what wider ones hold: (routine) is the
-- prefix of (routine, id), and the open-state partial index on (state) is covered by (state, id).
DROP INDEX hrwsi.processing_task_routine_idx;
DROP INDEX hrwsi.processing_task_open_state_idx;
