-- hrwsi schema, version 121: a launcher that waits for its jobs as it stops says so in its service row, with when it
-- stops those still running, for `hrwsi status` and the dashboard.
--
-- (migration 0121) During a launcher's shutdown grace (HRWSI_SHUTDOWN_GRACE_S, 20 s) `hrwsi status` and the dashboard
-- showed it as any running launcher, its heartbeat fresh: ops could not tell it was stopping, nor when the jobs it
-- waits for would be stopped and their tasks retried (found by exploratory testing). NULL: not stopping.

ALTER TABLE hrwsi.service_instance ADD COLUMN stopping_since timestamptz, ADD COLUMN stopping text;
