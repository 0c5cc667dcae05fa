-- hrwsi schema, version 108: a routine's storage is at least Nomad's least disk, 10 MB, in the database too.
--
-- The configuration file refuses storage_mb below 10 (hrwsi.configuration.MIN_ROUTINE_STORAGE_MB, Nomad's least
-- EphemeralDisk); a routine stored before that, or by a data engineer's own UPDATE, kept its 1 MB: its Nomad jobs
-- asked for 10 MB (a job spec never carries less) while the planner counted 1 MB on the worker's disk, until the
-- next `hrwsi config load` (`hrwsi status` only said so). Such a value is now read as what Nomad reserves from the
-- upgrade on, and refused where it is written. The sizes its attempts in flight hold (held_storage_mb, migration
-- 0067) are raised with it: Nomad reserved 10 MB for them too.
UPDATE hrwsi.processing_routine SET storage_mb = 10 WHERE storage_mb < 10;
UPDATE hrwsi.processing_task SET held_storage_mb = 10 WHERE held_storage_mb < 10;
ALTER TABLE hrwsi.processing_routine DROP CONSTRAINT routine_storage_mb_is_positive,
    ADD CONSTRAINT routine_storage_mb_is_at_least_nomads_least_disk CHECK (storage_mb >= 10);
