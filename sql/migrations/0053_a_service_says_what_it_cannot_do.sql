-- hrwsi schema, version 53: a service says what it cannot do now.
--
-- With Nomad out of reach, or refusing the launcher's token, the launcher retried each registration
-- for two minutes and said so only in its log: `hrwsi status` and the dashboard showed the task
-- dispatched and its job submitted, as though all were well (found by exploratory testing,
-- 2026-12-05). Each heartbeat now writes what the service cannot do (the launcher: its backend's
-- problem, and what happens to its jobs meanwhile), and since when; NULL: nothing. A service of an
-- earlier version leaves both NULL.

ALTER TABLE hrwsi.service_instance
    ADD COLUMN problem       text,
    ADD COLUMN problem_since timestamptz;
