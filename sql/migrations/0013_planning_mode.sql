-- hrwsi schema, version 13: the planner's mode and horizon, as configuration (issue 12 item 2).
--
-- makespan (the default): finish everything as soon as possible, then use the fewest VMs. deadline:
-- the fewest workers that still end everything within plan_horizon ("all the tasks within a time
-- horizon using the fewest resources", as the reference system plans); if even every worker misses
-- it, the best plan is stored with the figures saying by how much and which bound binds.
ALTER TABLE hrwsi.budget
    ADD COLUMN plan_mode text NOT NULL DEFAULT 'makespan'
        CONSTRAINT budget_plan_mode_is_makespan_or_deadline CHECK (plan_mode IN ('makespan', 'deadline')),
    ADD COLUMN plan_horizon interval
        CONSTRAINT budget_plan_horizon_is_between_1_minute_and_30_days
        CHECK (plan_horizon BETWEEN interval '1 minute' AND interval '30 days'),
    ADD CONSTRAINT budget_deadline_mode_has_a_horizon CHECK (plan_mode = 'makespan' OR plan_horizon IS NOT NULL);
