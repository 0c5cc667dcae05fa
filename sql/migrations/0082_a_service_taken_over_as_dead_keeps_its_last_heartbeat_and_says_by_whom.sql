-- hrwsi schema, version 82: a service instance whose lease another instance took over, its process
-- proven dead, keeps its real last heartbeat and records by which instance, when and why.
--
-- The takeover (migration 0081) ended the lease as its expiry would, by setting the heartbeat back by
-- the lease: `hrwsi status` and the dashboard then showed a last heartbeat 30 s older than the real
-- one, and nothing said that the instance was found dead and replaced, nor by which instance (found by
-- exploratory testing). heartbeat_at is still set back (every check of a lease reads it, the lease must
-- end at once); the real last heartbeat is kept beside it, with the instance that took the lease over,
-- when, and the proof it had (hrwsi.process_identity.verdict). NULL: not taken over.
ALTER TABLE hrwsi.service_instance
    ADD COLUMN taken_over_by text,
    ADD COLUMN taken_over_at timestamptz,
    ADD COLUMN taken_over_why text,
    ADD COLUMN last_heartbeat_at timestamptz;
