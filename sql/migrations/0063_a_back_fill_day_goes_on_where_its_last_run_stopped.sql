-- hrwsi schema, version 63: a back-fill day goes on where its last run stopped.
--
-- A catalogue source's back-fill asks one day at a time, page by page, at most max_pages_per_run
-- pages a run. A day with more products than that was asked again from its start by every run,
-- which registered the same pages and stopped: the back-fill never got past it. A run stopped by
-- its page limit now records the sensing time of the last product it registered, and the next run
-- asks the day from there.

ALTER TABLE hrwsi.harvest_source ADD COLUMN backfill_resume_at timestamptz;
GRANT UPDATE (backfill_resume_at) ON hrwsi.harvest_source TO hrwsi_service;
