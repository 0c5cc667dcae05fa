"""Leases and fencing (ADR 0009): a process whose lease lapsed can neither claim, record nor adopt
work under its old identity; it drops what it held and goes on under a new one."""

import asyncio
import dataclasses
import sys

import psycopg
import pytest

from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until

LEASE = 30.0


def register(db, instance, age="0 s", site=None):
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, heartbeat_at, site)
                  VALUES (%s, 'launcher', 'here', 1, now() - %s::interval, %s)""", (instance, age, site))


def a_dispatched_job(db, owner):
    db.execute("""INSERT INTO hrwsi.flavour VALUES ('f', 4, 16000, 1000)""")
    db.execute("""INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')""")
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES ('work', 1, 100, 10, '1 min', ARRAY['true'],
                  'IN', 'OUT')""")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('in', 'work')")
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('in', '/in/1')")
    return db.execute("SELECT (job).job_id FROM hrwsi.dispatch(%s, 'local', %s, 10, '/data')",
                      (owner, LEASE)).fetchone()[0]


def record(db, owner, job, state="processed"):
    return db.execute("""SELECT job_state, task_state FROM hrwsi.record_outcomes(%s, %s, 1, ARRAY[%s]::bigint[],
                         ARRAY[%s], ARRAY[0], ARRAY['done'], ARRAY[now()], ARRAY[now()], ARRAY[NULL]::text[],
                         '{}'::bigint[], '{}'::text[], '{}'::bigint[])""", (owner, LEASE, job, state)).fetchall()


def test_only_the_owner_of_a_job_records_its_outcome(db):
    register(db, "a")
    register(db, "b")
    job = a_dispatched_job(db, "a")
    assert record(db, "b", job) == [], "b does not own the job: nothing recorded"
    assert db.execute("SELECT state FROM hrwsi.job").fetchone()[0] == "submitted"
    assert record(db, "a", job) == [("processed", "processed")]


def test_a_launcher_whose_lease_lapsed_records_nothing(db):
    register(db, "a")
    job = a_dispatched_job(db, "a")
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour'")
    with pytest.raises(psycopg.Error, match="no fresh lease") as refused:
        record(db, "a", job)
    assert refused.value.sqlstate == "HW001"
    assert db.execute("SELECT state FROM hrwsi.job").fetchone()[0] == "submitted"


@pytest.mark.parametrize("job_row", ["kept", "gone"])
async def test_a_launcher_whose_lease_lapsed_is_refused_the_end_of_a_job_the_backend_refused_even_one_gone(
        db, database_url, job_row):
    """Found by review: end_task_refused_by_backend joined the lease check to the job's row, so that with no such row
    (retention removed it, or it was never this launcher's) the check never ran, and a launcher whose lease had
    lapsed was told "not this launcher's job any more" instead of re-registering. The lease is checked first."""
    import asyncpg

    from hrwsi.sql_files import query
    register(db, "a")
    job = a_dispatched_job(db, "a")
    if job_row == "gone":
        job = job + 1000
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour'")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="no fresh lease") as refused:
            await conn.fetch(query("end_task_refused_by_backend"), "a", LEASE, job, "a path Nomad would interpolate")
    finally:
        await conn.close()
    assert refused.value.sqlstate == "HW001"


async def test_a_launcher_with_a_fresh_lease_ends_the_job_the_backend_refused_and_terminates_its_task(db, database_url):
    import asyncpg

    from hrwsi.sql_files import query
    register(db, "a")
    job = a_dispatched_job(db, "a")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(query("end_task_refused_by_backend"), "a", LEASE, job, "a path Nomad would interpolate")
    finally:
        await conn.close()
    assert [r["state"] for r in rows] == ["terminated"]
    assert db.execute("SELECT state, fault FROM hrwsi.job").fetchone() == ("internal_error", "stopped_by_hrwsi")


def test_adoption_needs_a_fresh_lease_of_the_adopter_and_a_stale_one_of_the_owner(db):
    register(db, "a")
    register(db, "zombie", age="1 hour")
    job = a_dispatched_job(db, "a")
    from hrwsi.sql_files import query

    adopt = query("adopt_orphaned_jobs").replace("$1", "%(me)s").replace("$2", "%(lease)s") \
        .replace("$3", "'local'").replace("$4", "%(mine)s").replace("$5", "NULL")
    assert db.execute(adopt, {"me": "zombie", "lease": LEASE, "mine": []}).fetchall() == []  # no fresh lease
    register(db, "c")
    assert db.execute(adopt, {"me": "c", "lease": LEASE, "mine": []}).fetchall() == []  # a is alive
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = 'a'")
    assert [r[0] for r in db.execute(adopt, {"me": "c", "lease": LEASE, "mine": []})] == [job]
    assert db.execute("SELECT owner FROM hrwsi.job").fetchone()[0] == "c"


def test_a_local_job_is_adopted_only_by_a_launcher_of_its_site(db):
    """A launcher on another host adopted a local job whose files it could not see, recorded it
    "lost: it will never start" and ran it again while it ran, or had run, on the first host (found
    by exploratory testing)."""
    register(db, "a", site="site-1")
    job = a_dispatched_job(db, "a")
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = 'a'")
    register(db, "elsewhere", site="site-2")
    register(db, "beside", site="site-1")
    from hrwsi.sql_files import query

    adopt = query("adopt_orphaned_jobs").replace("$1", "%(me)s").replace("$2", "%(lease)s") \
        .replace("$3", "'local'").replace("$4", "%(mine)s").replace("$5", "%(site)s")
    assert db.execute(adopt, {"me": "elsewhere", "lease": LEASE, "mine": [], "site": "site-2"}).fetchall() == []
    assert [r[0] for r in db.execute(adopt, {"me": "beside", "lease": LEASE, "mine": [], "site": "site-1"})] == [job]
    # `hrwsi status` says what such jobs wait for.
    from io import StringIO

    from rich.console import Console

    from hrwsi import reports
    from hrwsi.cli import views
    db.execute("UPDATE hrwsi.job SET owner = 'a'")
    out = StringIO()
    views.status(Console(file=out, width=1000), reports.status(db), stale_after_s=30)
    assert "; its 1 local job(s) wait for a launcher sharing its data directory on here " \
           "(or for its row to be pruned after dead_service_hours)" in out.getvalue()
    # A Nomad launcher's, for a launcher whose jobs are in its namespace (migration 0070).
    db.execute("UPDATE hrwsi.service_instance SET site = 'nomad namespace hrwsi' WHERE id = 'a'")
    out = StringIO()
    views.status(Console(file=out, width=1000), reports.status(db), stale_after_s=30)
    assert "; its 1 Nomad job(s) wait for a launcher whose jobs are in namespace hrwsi " \
           "(or for its row to be pruned after dead_service_hours)" in out.getvalue()
    # Its owner's row gone (pruned after dead_service_hours): anyone's, as before sites were kept.
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = 'beside'")
    db.execute("DELETE FROM hrwsi.service_instance WHERE id IN ('beside', 'a')")
    assert [r[0] for r in db.execute(adopt, {"me": "elsewhere", "lease": LEASE, "mine": [], "site": "site-2"})] \
        == [job]


async def test_a_service_whose_lease_lapsed_drops_its_claims_and_takes_a_new_identity(db, database_url, settings,
                                                                                  configure):
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(30)"]))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local") as (_, launcher):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'")
        old = launcher.instance_id
        site = (settings.data_dir / ".hrwsi-local-site").read_text().strip()
        assert db.execute("SELECT site FROM hrwsi.service_instance WHERE id = %s", (old,)).fetchone()[0] == site
        # As if the process had been paused for longer than its lease: another launcher would
        # now adopt its job. Its next heartbeat finds the lease lapsed.
        db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (old,))
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance WHERE id <> $1 "
                         "AND kind = 'launcher'", old)
        assert launcher.instance_id != old
        # Under its new identity it adopts its own job back (its old identity is stale): it never
        # records anything as `old`, and the attempt is reconciled by its new owner.
        await wait_until(database_url, "SELECT bool_and(owner = $1) FROM hrwsi.job", launcher.instance_id,
                         timeout=15)
        await asyncio.sleep(0.2)
        assert db.execute("SELECT count(*) FROM hrwsi.job WHERE owner = %s", (old,)).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state IN ('submitted', 'queued', 'running')"
                          ).fetchone()[0] <= 1, "never two attempts of the task at once"
    # Stopped: its old identity goes with its new one (it showed as "stale: dead or hung?" for an
    # hour after the stop; found by exploratory testing).
    assert db.execute("SELECT id FROM hrwsi.service_instance").fetchall() == []


async def test_a_launcher_whose_lease_lapsed_says_in_one_line_that_it_follows_its_own_jobs_again_under_its_new_identity(
        db, database_url, settings, configure, caplog):
    # Found pausing the database server (SIGSTOP) for longer than the lease during a burst: each job the launcher
    # followed again as its new identity was said "adopting job ... from a launcher that is gone", one line per job,
    # of the launcher that had just said it goes on under a new identity.
    caplog.set_level("INFO", logger="hrwsi")
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(30)"], workers=2))
    # (a lease of 10 s, not the suite's 2 s: on a loaded machine the new identity's own lapsed once more)
    steady = dataclasses.replace(settings, lease_timeout_s=10.0)
    async with running(database_url, ["orchestrator", "launcher"], steady, backend="local") as (_, launcher):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
        old = launcher.instance_id
        db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (old,))
        await wait_until(database_url, "SELECT bool_and(owner <> $1) FROM hrwsi.job", old, timeout=15)
        await wait_until(database_url, "SELECT bool_and(owner = $1) FROM hrwsi.job", launcher.instance_id, timeout=15)
        jobs = [row[0] for row in db.execute("SELECT backend_job_id FROM hrwsi.job ORDER BY id")]
        new = launcher.instance_id
    lines = [r.getMessage() for r in caplog.records if r.name == "hrwsi.launcher"]
    assert not [line for line in lines if line.startswith("adopting job")], lines
    assert [line for line in lines if "follows again" in line] == [
        f"{new} follows again 2 job(s) it followed as {old} before its lease lapsed (none taken over "
        f"by another launcher meanwhile): {', '.join(jobs)}"]


async def test_a_service_tells_once_that_a_newer_hrwsi_migrated_the_database_under_it(db, database_url, settings,
                                                                                      caplog):
    caplog.set_level("ERROR", logger="hrwsi.service")
    newer = db.execute("SELECT max(version) + 1 FROM public.hrwsi_schema_migration").fetchone()[0]

    def told() -> list[str]:
        return [r.getMessage() for r in caplog.records if "a newer hrwsi upgraded" in r.getMessage()]

    async with running(database_url, ["orchestrator"], settings):
        await asyncio.sleep(3 * settings.heartbeat_s)
        assert told() == [], "the schema this installation ships: nothing to tell"
        db.execute("INSERT INTO public.hrwsi_schema_migration (version, name, checksum) VALUES (%s, 'newer', 'x')",
                   (newer,))
        for _ in range(40):
            if told():
                break
            await asyncio.sleep(settings.heartbeat_s / 2)
        await asyncio.sleep(3 * settings.heartbeat_s)  # more heartbeats: told once
    assert len(told()) == 1, told()
    assert f"it records migration {newer:04d}" in told()[0] and "orchestrator (hrwsi " in told()[0]


async def test_a_step_whose_lease_lapsed_while_the_server_refuses_connections_is_retried_not_fatal(
        pool, settings, monkeypatch, caplog):
    """A role's connection limit reached for longer than the lease ended the whole `hrwsi up`
    process: the new identity could not be registered, and the error escaped the step (found by
    exploratory testing). It is waited out as the database being away is."""
    import asyncpg

    from hrwsi.service import Service

    class Fenced(Service):
        kind = "orchestrator"

    service = Fenced(pool, settings)

    async def fenced_step():
        async with pool.acquire() as conn:  # the lease of an identity the database does not know: HW001
            await conn.execute("SELECT hrwsi.require_lease($1, 30)", service.instance_id)

    async def no_connection_left():
        raise asyncpg.TooManyConnectionsError('too many connections for role "svc"')

    service.steps = {"fenced": fenced_step}
    monkeypatch.setattr(service, "lease_lost", no_connection_left)
    assert await service.run_step("fenced") is False
    assert any("too many connections" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def test_a_notification_queue_past_half_full_is_the_services_problem_naming_the_oldest_open_transaction(
        pool, settings, database_url, caplog):
    """A session that LISTENs and stays in a transaction filled the queue: every write of hrwsi then
    failed, production stopped, and `hrwsi status` showed nothing wrong (found by exploratory
    testing; the queue itself is gigabytes, so its reading is given here)."""
    from hrwsi.service import Service

    class Watching(Service):
        kind = "launcher"

    service = Watching(pool, settings)
    await service._register_once()
    with psycopg.connect(database_url) as holder:
        holder.execute("LISTEN other_app_channel")
        holder.execute("SELECT 1")  # (a transaction left open)
        pid = holder.info.backend_pid
        async with pool.acquire() as conn:
            await service._watch_notification_queue(conn, 0.73)
            await service._heartbeat_once()  # writes what the last reading said, then reads the queue again
            problem = await conn.fetchval("SELECT problem FROM hrwsi.service_instance WHERE id = $1",
                                          service.instance_id)
    assert problem.startswith("the database's notification queue is 73% full: a session that LISTENs")
    assert f"the oldest open transaction is pid {pid}" in problem and f"pg_terminate_backend({pid})" in problem
    assert [r.levelname for r in caplog.records if "notification queue is 73%" in r.getMessage()] == ["WARNING"]
    assert service._queue_problem is None, "emptied (its real reading): said no more"


async def test_a_new_instance_takes_over_only_the_leases_of_this_hosts_instances_proven_dead(db, database_url, settings):
    """A launcher restarted after a kill -9 waited the dead one's lease (found by exploratory testing): a
    new instance of the same kind on the same host takes over the lease of one whose pid is another
    process now (reused), never that of a live one, nor one whose process cannot be identified."""
    import dataclasses
    import socket
    import subprocess

    from hrwsi import process_identity
    if process_identity.identity() is None:
        pytest.skip("this platform's /proc cannot tell")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        place, started = process_identity._place(), process_identity._stat(live.pid)[1]
        rows = {"live": f"{place} {started}", "reused": f"{place} {int(started) - 100}", "unidentified": None}
        for instance, identity in rows.items():
            db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, process_identity)
                          VALUES (%s, 'launcher', %s, %s, %s)""", (instance, socket.gethostname(), live.pid, identity))
        long_lease = dataclasses.replace(settings, lease_timeout_s=60.0, heartbeat_s=5.0)
        async with running(database_url, ["launcher"], long_lease):
            await wait_until(database_url, "SELECT NOT hrwsi.lease_is_fresh('reused', 60)", timeout=10)
            await asyncio.sleep(0.5)  # (its registration is over: it took over what it would)
            fresh = dict(db.execute("SELECT id, hrwsi.lease_is_fresh(id, 60) FROM hrwsi.service_instance "
                                    "WHERE id = ANY (%s)", (list(rows),)).fetchall())
        assert fresh == {"live": True, "reused": False, "unidentified": True}
    finally:
        live.kill()
        live.wait()


async def test_status_shows_the_real_last_heartbeat_of_an_instance_taken_over_as_dead_and_by_whom_and_when(
        db, database_url, settings):
    """Its lease is ended by setting its heartbeat back by the lease: status showed a last heartbeat a lease
    older than the real one, and nothing of the takeover (found by exploratory testing). Now the real one, and
    "found dead and replaced by" the instance that took it over, when, and its proof; not alive for all that."""
    import dataclasses
    import socket
    import subprocess

    from rich.console import Console

    from hrwsi import process_identity, reports
    from hrwsi.cli import views
    if process_identity.identity() is None:
        pytest.skip("this platform's /proc cannot tell")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        reused = f"{process_identity._place()} {int(process_identity._stat(live.pid)[1]) - 100}"
        db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, process_identity, started_at, heartbeat_at)
                      VALUES ('launcher-dead', 'launcher', %s, %s, %s, now() - interval '1 hour',
                              now() - interval '2 seconds')""", (socket.gethostname(), live.pid, reused))
        long_lease = dataclasses.replace(settings, lease_timeout_s=60.0, heartbeat_s=5.0)
        async with running(database_url, ["launcher"], long_lease) as (launcher,):
            # The takeover comes before the launcher registers its own lease (its start-up check may need
            # the dead one's lease ended first): status read between the two showed no launcher alive (twice,
            # on a loaded machine).
            await wait_until(database_url, "SELECT NOT hrwsi.lease_is_fresh('launcher-dead', 60) "
                             "AND hrwsi.lease_is_fresh($1, 60)", launcher.instance_id, timeout=10)
            data = reports.status(db, stale_after_s=60.0)
            [dead] = [s for s in data["services"] if s["id"] == "launcher-dead"]
            assert dead["heartbeat_age_s"] < 30, "the real last heartbeat, not one set back by the 60 s lease"
            assert dead["taken_over_by"] == launcher.instance_id and dead["taken_over_at"] is not None
            assert dead["taken_over_why"] == f"its pid {live.pid} is another process now (its start time differs: the pid " \
                "was reused)"
            assert dead["heartbeat_at"] < dead["taken_over_at"]
            console = Console(record=True, width=400)
            views.status(console, data, 60.0)
            shown = " ".join(console.export_text().split())
            assert f"found dead and replaced by {launcher.instance_id} at " in shown, shown
            assert "dead or hung?" not in shown
            assert launcher.instance_id in [s["id"] for s in data["services"] if reports.is_alive(s, 60.0)]
            assert "launcher-dead" not in [s["id"] for s in data["services"] if reports.is_alive(s, 60.0)]
    finally:
        live.kill()
        live.wait()
