-- hrwsi schema, version 49: an attempt the backend could not take (Nomad out of reach, overloaded,
-- or refusing the launcher's token) is lost with the fault `backend_unavailable`, retried without
-- counting as a failure of its routine.
--
-- Before, the launcher recorded it `internal_error`, the routine's failure: a Nomad outage of a few
-- minutes, or a wrong NOMAD_TOKEN, terminated tasks at max_attempts and put their routine on hold
-- ("6 consecutive failures"), though nothing was wrong with it (found by exploratory testing,
-- 2026-12-05). A job Nomad refuses as invalid still fails.

ALTER TABLE hrwsi.job DROP CONSTRAINT job_fault_is_known;
-- (NOT VALID, then validated: the check of the rows already there takes no lock that stops writers)
ALTER TABLE hrwsi.job ADD CONSTRAINT job_fault_is_known CHECK (fault IN (
    'launcher_gone', 'worker_gone', 'backend_lost_track', 'stopped_by_hrwsi', 'backend_unavailable')) NOT VALID;
ALTER TABLE hrwsi.job VALIDATE CONSTRAINT job_fault_is_known;
