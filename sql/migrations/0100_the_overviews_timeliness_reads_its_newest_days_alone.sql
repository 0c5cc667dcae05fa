-- hrwsi schema, version 100: the dashboard's overview reads the newest of the archive alone.
--
-- - The overview's timeliness section (the newest 50 rows of hrwsi.timeliness, per routine, lane, tile and day)
--   grouped every product ever registered and sorted the groups, to show the newest day's: 0.4 s at 100,000
--   products, growing with the archive, on every read of the overview, which the live update asks for again
--   on every change (found measuring the dashboard at 10,000 and 100,000 tasks). An index on a product's day
--   (the view's own expression) lets it find the newest days and read their products alone (web_timeliness_day).
-- - Its recent failures (the 10 latest failed attempts) walked job_finished_at_idx newest first through every attempt
--   that succeeded until it found 10 failures: the whole archive of jobs, on an installation with fewer (found by
--   the same measure). A partial index of the failed attempts alone (`hrwsi status`'s recent failures use it too).
CREATE INDEX product_day_idx ON hrwsi.product (((created_at AT TIME ZONE 'UTC')::date));
CREATE INDEX job_failed_idx ON hrwsi.job (finished_at DESC NULLS LAST, id DESC)
    WHERE state IN ('internal_error', 'external_error', 'lost');
