-- hrwsi schema, version 74: each service instance records the code it started with.
--
-- `make install` is editable: a `git pull` replaced the code under services that were still running,
-- their lazy imports then mixed two versions, and nothing said so (found by exploratory testing). A
-- service records where its hrwsi package is and a fingerprint of its files (paths, sizes, modification
-- times: hrwsi.installed_code); `hrwsi status` and the dashboard compute it again on their host and say
-- "code on disk changed since SERVICE started: restart it to run the new code". NULL: registered by a
-- version before these columns.
ALTER TABLE hrwsi.service_instance
    ADD COLUMN code_dir         text,
    ADD COLUMN code_fingerprint text;
