-- hrwsi schema, version 44: each service instance records the hrwsi version it runs.
--
-- During an upgrade, services of two versions may run side by side on one database (one host
-- upgraded, the other not yet); ops see which runs what in `hrwsi status` and on the dashboard.
-- NULL: an instance registered by a version before this column.
ALTER TABLE hrwsi.service_instance ADD COLUMN version text;
