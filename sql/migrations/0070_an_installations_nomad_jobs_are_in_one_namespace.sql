-- hrwsi schema, version 70: an installation's Nomad jobs are in one namespace.
--
-- A launcher started without NOMAD_NAMESPACE (an admin forgot it in one launcher's job spec) put its
-- jobs in `default` while the other launchers' were in the installation's namespace, without a word;
-- when it stopped, another launcher adopted its jobs, found none of them, recorded them lost and ran
-- them again while the first runs went on (found by exploratory testing, 2026-12-06). The first
-- launcher records where the jobs are; another is refused while jobs or launchers are elsewhere.

ALTER TABLE hrwsi.installation ADD COLUMN backend_scope text;

-- A launcher of a backend whose jobs must all be in one place (Nomad: one namespace) takes
-- that place for the installation at start, or is refused while jobs or launchers are in another:
-- a launcher started without NOMAD_NAMESPACE put its jobs in `default` while the others' were in
-- the installation's namespace; when it stopped, another launcher adopted its jobs, found none of
-- them, recorded them lost and ran them again beside the first runs (found by exploratory testing,
-- 2026-12-06; migration 0070). With no job active there and no launcher there, the installation
-- moves (the message says so); NULL: nothing to say.
CREATE FUNCTION hrwsi.take_backend_scope(backend text, scope text, lease_s double precision) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$
DECLARE
    recorded text;
    active bigint;
    launchers text;
BEGIN
    SELECT i.backend_scope INTO recorded FROM installation i WHERE i.id FOR UPDATE;
    IF recorded IS NOT DISTINCT FROM take_backend_scope.scope THEN
        RETURN NULL;
    END IF;
    IF recorded IS NOT NULL THEN
        SELECT count(*) INTO active FROM job j
        WHERE j.backend = take_backend_scope.backend AND j.state IN ('submitted', 'queued', 'running');
        SELECT string_agg(s.id, ', ' ORDER BY s.id) INTO launchers FROM service_instance s
        WHERE s.kind = 'launcher' AND s.site = recorded
          AND s.heartbeat_at > now() - make_interval(secs => take_backend_scope.lease_s);
        IF active > 0 OR launchers IS NOT NULL THEN
            RAISE EXCEPTION 'this installation''s % jobs are in %, and this launcher would put its own in %: '
                            'neither would find the other''s jobs, and attempts would run twice (% active job(s)%)',
                            take_backend_scope.backend, recorded, take_backend_scope.scope, active,
                            CASE WHEN launchers IS NULL THEN '' ELSE '; launcher(s) there: ' || launchers END
                USING ERRCODE = 'check_violation', CONSTRAINT = 'installation_jobs_are_in_one_place',
                      HINT = 'set NOMAD_NAMESPACE as the other launchers have it; to move the '
                             'installation, stop its launchers and let its active jobs end first';
        END IF;
    END IF;
    UPDATE installation i SET backend_scope = take_backend_scope.scope WHERE i.id;
    RETURN CASE WHEN recorded IS NOT NULL THEN
        format('this installation''s %s jobs move from %s to %s: none was active there, and no launcher',
               take_backend_scope.backend, recorded, take_backend_scope.scope) END;
END $$;

REVOKE EXECUTE ON FUNCTION hrwsi.take_backend_scope(text, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hrwsi.take_backend_scope(text, text, double precision) TO hrwsi_service;
