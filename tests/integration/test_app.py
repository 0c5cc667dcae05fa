"""hrwsi.app: the one lifecycle every entry point uses."""

import asyncio
import gc

import asyncpg
import pytest

from hrwsi.app import App, build_services
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.migrations import build_version
from tests.integration.conftest import insert_inputs, single_routine_configuration, wait_until


async def pooled_session_names(database_url: str) -> set[str]:
    """The application names of hrwsi's pooled sessions on the test's database (not the listeners')."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'hrwsi%' "
                                "AND application_name NOT LIKE '%-listener'")
    finally:
        await conn.close()
    return {r["application_name"] for r in rows}


async def test_an_app_runs_its_services_until_asked_to_stop_and_unregisters_them(db, database_url, settings,
                                                                                  configure):
    configure(single_routine_configuration(["true"]))
    backend = DryRunBackend()
    async with App(database_url, ["orchestrator", "launcher"], settings, backend=backend) as app:
        assert [s.kind for s in app.services] == ["orchestrator", "launcher"]
        assert app.service("launcher").backend is backend
        insert_inputs(db, 3)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.job WHERE state = 'processed'")
        assert db.execute("SELECT count(*) FROM hrwsi.service_instance").fetchone()[0] == 2
        assert db.execute("SELECT array_agg(DISTINCT version) FROM hrwsi.service_instance").fetchone()[0] == \
            [build_version()], "each instance records the version it runs (migration 0044)"
    assert db.execute("SELECT count(*) FROM hrwsi.service_instance").fetchone()[0] == 0
    assert app.pool is None  # closed


async def test_each_session_of_an_app_names_the_services_it_serves_in_pg_stat_activity(database_url, settings):
    # Ops looking at the server's sessions see whose they are: the pool of the process's services and
    # each service's listener.
    async with App(database_url, ["orchestrator", "launcher"], settings):
        await wait_until(database_url, "SELECT count(*) = 2 FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name IN ('hrwsi-orchestrator-listener', 'hrwsi-launcher-listener')")
        assert await pooled_session_names(database_url) == {"hrwsi-orchestrator+launcher-pool"}


async def test_wait_returns_when_a_stop_is_requested(database_url, settings):
    async with App(database_url, ["harvester"], settings) as app:
        asyncio.get_running_loop().call_later(0.3, app.request_stop)
        await asyncio.wait_for(app.wait(), 10)
        assert app.services[0].stopping.is_set()


async def test_a_process_running_the_services_freezes_its_startup_objects_and_a_library_caller_does_not(
        database_url, settings):
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        async with App(database_url, ["harvester"], settings):
            assert gc.get_freeze_count() == 0  # a test run, a notebook: their garbage stays collectable
            assert gc.get_threshold() == thresholds  # and is collected as often as their Python does
        async with App(database_url, ["harvester"], settings, freeze_startup_objects=True) as app:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # the modules, the pool and the services, out of the collector's sight
            # the youngest generation collected after 50,000 allocations, the older ones as before
            assert gc.get_threshold() == (50_000, *thresholds[1:])
            assert app.services[0].kind == "harvester"
    finally:
        gc.unfreeze()  # the rest of this test run collects as usual
        gc.set_threshold(*thresholds)


async def test_a_process_running_the_services_collects_cyclic_garbage_periodically(database_url, settings, monkeypatch):
    """With the young generation collected after 50,000 allocations, the oldest was collected so rarely that
    cyclic garbage made slowly (a dashboard's clients, a launcher's manifests) grew for hours (found by
    exploratory testing): a full collection comes every FULL_COLLECTION_EVERY_S."""
    import weakref

    from hrwsi import app as app_module

    class Node:
        pass

    monkeypatch.setattr(app_module, "FULL_COLLECTION_EVERY_S", 0.05)
    thresholds = gc.get_threshold()
    try:
        async with App(database_url, ["harvester"], settings, freeze_startup_objects=True):
            gc.disable()  # (only the periodic collection may find it)
            node = Node()
            node.self = node  # a cycle, unreachable once dropped
            gone = weakref.ref(node)
            del node
            for _ in range(100):
                if gone() is None:
                    break
                await asyncio.sleep(0.02)
            gc.enable()
            assert gone() is None, "the cycle was collected by the periodic full collection"
    finally:
        gc.enable()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_a_service_that_dies_is_reported_on_exit(database_url, settings):
    with pytest.raises(RuntimeError, match="boom"):
        async with App(database_url, ["orchestrator"], settings) as app:
            async def broken(url):
                raise RuntimeError("boom")
            app._tasks[0].cancel()
            app._tasks[0] = asyncio.create_task(broken(database_url))
            await asyncio.wait_for(app.wait(), 10)
            assert app.died()


async def test_an_unknown_service_kind_is_refused_with_the_known_ones(pool, settings):
    with pytest.raises(ValueError, match="harvester, orchestrator, launcher"):
        build_services(["scheduler"], pool, settings)


async def test_a_launcher_whose_nomad_namespace_does_not_exist_stops_at_start_in_one_line(db, database_url, settings,
                                                                                          tmp_path):
    # Found by exploratory testing: the launcher started, and Nomad refused each job ("nonexistent
    # namespace"), recorded as the routine's internal_error until the routine was held.
    from hrwsi.backends.base import BackendSettingError
    from hrwsi.backends.nomad import NomadBackend, NomadConfig
    from hrwsi.cli.errors import explain
    from hrwsi.testing.nomad_emulator import NomadEmulator

    async with NomadEmulator(work_dir=tmp_path / "nomad") as emulator:
        backend = NomadBackend(NomadConfig(address=emulator.address, namespace="hrwsi-prod", retry_for_s=0.3))
        with pytest.raises(BackendSettingError) as refused:
            async with App(database_url, ["launcher"], settings, backend=backend):
                pass
    message, exit_code = explain(refused.value)
    assert message.startswith("NOMAD_NAMESPACE='hrwsi-prod': Nomad at http://127.0.0.1:") and exit_code == 2
    assert "nomad namespace apply hrwsi-prod" in message and "\n" not in message
    assert backend.client.closed
    assert db.execute("SELECT count(*) FROM hrwsi.service_instance").fetchone()[0] == 0


async def test_a_nomad_launcher_in_another_namespace_than_the_installations_jobs_stops_at_start_in_one_line(
        db, database_url, settings, tmp_path):
    """A launcher started without NOMAD_NAMESPACE put its jobs in `default` beside launchers whose jobs
    were in the installation's namespace; once it stopped, they adopted its jobs, found none, and ran
    their attempts again while the first runs went on (found by exploratory testing). The Nomad here is
    hrwsi's emulator, the project's one test double for Nomad."""
    from hrwsi.backends.base import BackendSettingError
    from hrwsi.backends.nomad import NomadBackend, NomadConfig
    from hrwsi.cli.errors import explain
    from hrwsi.testing.nomad_emulator import NomadEmulator

    async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
        def backend(namespace):
            return NomadBackend(NomadConfig(address=emulator.address, namespace=namespace, retry_for_s=0.3))

        async with App(database_url, ["launcher"], settings, backend=backend("hrwsi")):
            await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance")
            assert db.execute("SELECT backend_scope FROM hrwsi.installation").fetchone() == ("nomad namespace hrwsi",)
            forgot = backend("default")
            with pytest.raises(BackendSettingError) as refused:
                async with App(database_url, ["launcher"], settings, backend=forgot):
                    pass
            message, exit_code = explain(refused.value)
            assert message.startswith("this installation's nomad jobs are in nomad namespace hrwsi, and this "
                                      "launcher would put its own in nomad namespace default") and exit_code == 2
            assert "launcher(s) there: launcher-" in message and "set NOMAD_NAMESPACE" in message
            assert "\n" not in message and forgot.client.closed
        # no launcher there now and no job active: the installation moves, saying so
        async with App(database_url, ["launcher"], settings, backend=backend("default")):
            pass
    assert db.execute("SELECT backend_scope FROM hrwsi.installation").fetchone() == ("nomad namespace default",)


async def test_services_started_from_a_moved_home_say_it_once_in_one_line(database_url, settings, caplog):
    """Ops moved HRWSI_HOME: the recorded product and log paths named the old place and nothing said
    so (found by exploratory testing). `hrwsi up` runs four services in one process: one line."""
    import dataclasses
    import logging
    import os

    async with App(database_url, ["orchestrator"], settings, backend=DryRunBackend()):
        pass  # records where the data directory is
    moved = dataclasses.replace(settings, home=settings.home.parent / "moved-home")
    os.rename(settings.home, moved.home)
    caplog.set_level(logging.WARNING, logger="hrwsi")
    async with App(database_url, ["harvester", "orchestrator", "launcher", "web"], moved, backend=DryRunBackend()):
        pass
    said = [r.getMessage() for r in caplog.records if "HRWSI_HOME moved" in r.getMessage()]
    assert len(said) == 1 and f"was {settings.data_dir} and is {moved.data_dir} now" in said[0], said
def _two_launchers(pool, settings, address):
    """Launchers of one installation, one with NOMAD_NAMESPACE=hrwsi and one that forgot it."""
    from hrwsi.backends.nomad import NomadBackend, NomadConfig

    def launcher(namespace):
        backend = NomadBackend(NomadConfig(address=address, namespace=namespace, retry_for_s=0.3))
        return build_services(["launcher"], pool, settings, backend)[0]

    return launcher("hrwsi"), launcher("default")


async def test_a_nomad_launcher_of_another_namespace_starting_before_the_first_has_registered_is_refused(
        db, pool, settings, tmp_path):
    """Two launchers with different NOMAD_NAMESPACE started at the same moment both passed the check,
    each made before either registered: the second saw no launcher in the first's namespace, moved the
    installation, and both ran, neither finding the other's jobs (found by exploratory testing). Forced
    here: the second starts after the first's start-up check, before its service loop runs."""
    from hrwsi.backends.base import BackendSettingError
    from hrwsi.cli.errors import explain
    from hrwsi.testing.nomad_emulator import NomadEmulator

    async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
        first, second = _two_launchers(pool, settings, emulator.address)
        try:
            await first.preflight()
            with pytest.raises(BackendSettingError) as refused:
                await second.preflight()
        finally:
            await first.backend.close()
    message, exit_code = explain(refused.value)
    assert message.startswith("this installation's nomad jobs are in nomad namespace hrwsi") and exit_code == 2
    assert f"launcher(s) there: {first.instance_id}" in message and "\n" not in message
    assert second.backend.client.closed
    assert db.execute("SELECT backend_scope FROM hrwsi.installation").fetchone() == ("nomad namespace hrwsi",)
    assert db.execute("SELECT array_agg(id) FROM hrwsi.service_instance").fetchone()[0] == [first.instance_id]


async def test_a_nomad_launcher_of_another_namespace_waits_for_the_first_launchers_registration_then_is_refused(
        db, pool, database_url, settings, tmp_path):
    """The check and the registration are one transaction: held open between them (forced here), the
    installation's row stays locked, and a launcher of another namespace waits for it rather than pass."""
    from hrwsi.backends.base import BackendSettingError
    from hrwsi.testing.nomad_emulator import NomadEmulator

    async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
        first, second = _two_launchers(pool, settings, emulator.address)
        checked, release = asyncio.Event(), asyncio.Event()
        check = first._take_the_installations_site

        async def check_then_hold(conn, site):
            await check(conn, site)
            checked.set()
            await release.wait()

        first._take_the_installations_site = check_then_hold
        starting = asyncio.create_task(first.preflight())
        try:
            await asyncio.wait_for(checked.wait(), 30)
            refusing = asyncio.create_task(second.preflight())
            await wait_until(database_url, "SELECT count(*) = 1 FROM pg_stat_activity "
                                           "WHERE datname = current_database() AND wait_event_type = 'Lock'")
            assert not refusing.done()
            release.set()
            await starting
            with pytest.raises(BackendSettingError, match="launcher\\(s\\) there: " + first.instance_id):
                await refusing
        finally:
            release.set()
            await first.backend.close()
    assert db.execute("SELECT backend_scope FROM hrwsi.installation").fetchone() == ("nomad namespace hrwsi",)
    assert db.execute("SELECT array_agg(id) FROM hrwsi.service_instance").fetchone()[0] == [first.instance_id]


async def test_a_nomad_launcher_paused_past_its_lease_registers_anew_only_if_its_namespace_is_the_installations(
        db, pool, settings, tmp_path):
    """A launcher whose lease lapsed (SIGSTOP) registered anew without the one-namespace check of its
    start: a launcher of another namespace started meanwhile had moved the installation, and both ran,
    neither finding the other's jobs (found by review). It stops, with the refusal of a start."""
    from hrwsi.backends.base import BackendSettingError
    from hrwsi.testing.nomad_emulator import NomadEmulator

    async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
        paused, other = _two_launchers(pool, settings, emulator.address)
        try:
            await paused.preflight()
            # Paused past its lease: the launcher of the other namespace starts, and moves the installation.
            db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                       (paused.instance_id,))
            await other.preflight()
            assert db.execute("SELECT backend_scope FROM hrwsi.installation").fetchone() == \
                ("nomad namespace default",)
            await paused._heartbeat_once()  # resumed: its lease lapsed
        finally:
            await paused.backend.close()
            await other.backend.close()
    live = db.execute("SELECT array_agg(id) FROM hrwsi.service_instance WHERE heartbeat_at > now() - interval '1 min'")
    assert live.fetchone()[0] == [other.instance_id], "its new identity is not registered"
    assert isinstance(paused.refused, BackendSettingError) and paused.stopping.is_set()
    assert "this installation's nomad jobs are in nomad namespace default" in str(paused.refused)


async def test_a_launcher_whose_process_fails_to_start_leaves_no_service_row(db, database_url, settings, tmp_path):
    """A Nomad launcher registers at its start-up check; when the start failed after it (the process's
    HTTP port taken), its row stayed, and `hrwsi status` showed a launcher that never ran until its lease
    expired (found by review)."""
    import dataclasses
    import socket

    from hrwsi.backends.nomad import NomadBackend, NomadConfig
    from hrwsi.instance_server import EndpointsUnavailable
    from hrwsi.testing.nomad_emulator import NomadEmulator

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dataclasses.replace(settings, http_host="127.0.0.1", http_port=taken.getsockname()[1])
        async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
            backend = NomadBackend(NomadConfig(address=emulator.address, namespace="hrwsi", retry_for_s=0.3))
            with pytest.raises(EndpointsUnavailable, match="address already in use; choose another port with HRWSI_HTTP_PORT"):
                async with App(database_url, ["launcher"], busy, backend=backend):
                    pass
    assert db.execute("SELECT count(*) FROM hrwsi.service_instance").fetchone() == (0,)


async def test_services_started_on_a_standby_wait_and_start_once_it_is_promoted_a_nomad_launcher_with_its_check(
        standby, settings, tmp_path, caplog):
    """A restart during a failover, the URL on the standby about to be promoted: the services, and a Nomad launcher
    whose start-up check registers it (one namespace per installation), ended on the refused write, and stayed down
    after the promotion (found by review). They wait, saying so in one line, and start once it takes writes; the
    launcher's check runs then, in the transaction that registers it."""
    import logging

    from hrwsi.backends.nomad import NomadBackend, NomadConfig
    from hrwsi.testing.nomad_emulator import NomadEmulator

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    async with NomadEmulator(work_dir=tmp_path / "nomad", namespaces=["hrwsi"]) as emulator:
        backend = NomadBackend(NomadConfig(address=emulator.address, namespace="hrwsi", retry_for_s=0.3))
        async with App(standby.url, ["orchestrator", "launcher"], settings, backend=backend) as app:
            while "launcher, orchestrator: the database refuses hrwsi's writes" not in caplog.text:
                assert not app.died(), app.died()
                await asyncio.sleep(0.05)
            assert "in a read-only transaction)" in caplog.text
            await asyncio.to_thread(standby.promote)
            await wait_until(standby.url, "SELECT count(*) = 2 FROM hrwsi.service_instance", timeout=20)
            assert not app.died(), app.died()
            assert all(service.registered for service in app.services)
        await wait_until(standby.url, "SELECT backend_scope = 'nomad namespace hrwsi' FROM hrwsi.installation")
    assert caplog.text.count("the database refuses hrwsi's writes") == 1, caplog.text


async def test_services_that_apply_migrations_at_start_wait_while_the_database_refuses_writes_then_apply_them(
        db, database_url, settings, caplog, monkeypatch, tmp_path):
    """An upgrade restarted during a failover: the migrations it applies at start were refused as writes and the
    process ended with code 2, down after the promotion, where the services themselves now wait (found by review).
    It waits for writes, saying so in one line, then applies them and starts."""
    import logging

    from psycopg import sql

    from hrwsi import migrations

    name = db.execute("SELECT current_database()").fetchone()[0]
    # A migration of the next version, pending (the shipped ones are applied, and not every one can run twice: a
    # shipped one un-recorded for this test failed on its CREATE TABLE once the newest made a table)
    shipped = migrations.migrations()
    newest = shipped[-1][0] + 1
    probe = tmp_path / f"{newest:04d}_a_pending_migration.sql"
    probe.write_text("CREATE TABLE hrwsi.a_pending_migrations_table (id integer);\n")
    monkeypatch.setattr(migrations, "migrations", lambda: [*shipped, (newest, "a_pending_migration", probe)])

    def read_only(on: bool) -> None:
        db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
            sql.Identifier(name), sql.SQL("on" if on else "off")))

    caplog.set_level(logging.INFO, logger="hrwsi.app")
    read_only(True)
    try:
        entered = asyncio.Event()

        async def start() -> None:
            async with App(database_url, ["orchestrator"], settings, backend=DryRunBackend(), migrate=True):
                entered.set()

        started = asyncio.create_task(start())
        while "the database schema lacks migrations this hrwsi applies at start, and the database refuses writes " \
                "(cannot execute CREATE TABLE in a read-only transaction)" not in caplog.text:
            assert not started.done(), started
            await asyncio.sleep(0.05)
        read_only(False)
        await asyncio.wait_for(started, 20)
        assert entered.is_set()
    finally:
        read_only(False)
    assert db.execute("SELECT count(*) FROM public.hrwsi_schema_migration WHERE version = %s", (newest,)).fetchone() == (1,)
    assert caplog.text.count("lacks migrations") == 1
