-- hrwsi schema, version 79: a service instance records the identity of its process, so that a new
-- instance of its kind on its host can prove it dead and take its lease over at once.
--
-- A launcher killed with kill -9 and restarted at once waited for the dead instance's lease
-- (lease_timeout_s, 30 s) before it adopted its jobs, and meanwhile those jobs held their workers'
-- capacity: near-real-time inputs waited about 30 s (found by exploratory testing). A service records
-- the kernel's boot id, the pid and time namespaces it lives in and its start time in clock ticks
-- (hrwsi.process_identity); a new instance of the same kind on the same host, in the same kernel and
-- namespaces, finds its pid not alive, a zombie, or another process (another start time) and ends the
-- lease as its expiry would (the heartbeat set back by the lease), saying so in its log. NULL: a
-- version before this column, or a platform without /proc: the lease lapses only by the timeout.
ALTER TABLE hrwsi.service_instance
    ADD COLUMN process_identity text;
