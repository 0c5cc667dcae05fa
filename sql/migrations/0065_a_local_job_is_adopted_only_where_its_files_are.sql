-- hrwsi schema, version 65: a local job is adopted only where its files are.
--
-- The local backend runs an attempt on the launcher's own host, its files in that launcher's data
-- directory. A launcher on another host adopted such a job once its owner's lease lapsed (paused,
-- cut off), found none of its files, recorded it "lost: it will never start (tombstoned)" and ran
-- it again, while it had run, or still ran, on the first host (found by exploratory testing,
-- 2026-12-06). A launcher now records the site it runs its local attempts in (an id kept in its
-- data directory), and adopts only the local jobs of launchers of the same site.

ALTER TABLE hrwsi.service_instance ADD COLUMN site text;
