"""Lost connections, concurrent replicas, restarts: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import asyncpg

from hrwsi import database
from hrwsi.app import STOP_AFTER_TERMINATE_S, STOP_DATABASE_S, App
from hrwsi.database import COMMAND_TIMEOUT_S
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until
from tests.integration.database_door import DatabaseDoor

NO_DUPLICATES = """SELECT count(*) FROM (SELECT task_id FROM hrwsi.job WHERE state = 'processed'
                   GROUP BY task_id HAVING count(*) > 1) d"""


async def terminate(url: str, application_name_like: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name LIKE $1 AND datname = current_database()""", application_name_like)
    finally:
        await conn.close()


async def test_listener_killed_while_inputs_arrive_loses_nothing(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    # A backstop poll far beyond the test's length: only the catch-up after reconnecting can save us.
    slow_backstop = dataclasses.replace(settings, backstop_poll_s=600)
    async with running(database_url, ["orchestrator", "launcher"], slow_backstop) as services:
        killed = 0
        for batch in range(8):
            insert_inputs(db, 10, start=batch * 10)
            killed += await terminate(database_url, "hrwsi-%-listener")
            await asyncio.sleep(0.05)
        await wait_until(database_url, "SELECT count(*) = 80 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=60)
        assert killed >= 8
        assert all(s.listener.reconnects >= 2 for s in services)
    assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 80
    assert db.execute(NO_DUPLICATES).fetchone()[0] == 0


async def test_pool_connections_killed_mid_run_lose_nothing(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    killed = 0
    async with running(database_url, ["orchestrator", "launcher"], settings):
        for batch in range(5):
            insert_inputs(db, 20, start=batch * 20)
            killed += await terminate(database_url, "hrwsi-%-pool")  # the services' pool connections
            await asyncio.sleep(0.1)
        await wait_until(database_url, "SELECT count(*) = 100 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=60)
    assert killed >= 2  # (the pattern finds the pools' sessions: at least each process's first one)
    assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 100
    assert db.execute(NO_DUPLICATES).fetchone()[0] == 0


async def test_connections_gone_half_open_stall_the_services_only_until_their_listeners_notice(
        db, database_url, settings, configure, caplog):
    """Every connection of `hrwsi up` goes silent without being closed (a failover that moved the server's
    address, a NAT or load balancer that forgot them): nothing is forwarded any more, neither end is told, new
    connections go through. The listeners notice by their own NOTIFY and end the pooled connections as silent
    as theirs. Before, each step's statement waited asyncpg's command timeout (60 s), its release as long again
    for the acknowledgement of its cancel, and the dispatch session twice: 242 s without work, 120 s of them
    without a line in the log; and the server kept 7 of their 15 sessions, idle until its TCP keepalive gave up."""
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.5)"], workers=2))
    # (a realistic lease: this is not about leases; a heartbeat of 1 s makes the listeners ping every second)
    realistic = dataclasses.replace(settings, heartbeat_s=1.0, lease_timeout_s=30.0, backstop_poll_s=2.0)
    door = DatabaseDoor(database_url)
    try:
        async with running(door.url, ["orchestrator", "launcher", "harvester"], realistic,
                           backend="local") as services:
            insert_inputs(db, 10)
            await wait_until(database_url, "SELECT count(*) >= 1 FROM hrwsi.job WHERE state = 'running'")
            door.freeze()  # (jobs running: their outcomes come after it)
            insert_inputs(db, 10, start=10)
            # (well within one command timeout: before, nothing moved for two of them)
            await wait_until(database_url, "SELECT count(*) = 20 FROM hrwsi.processing_task WHERE state = 'processed'",
                             timeout=COMMAND_TIMEOUT_S / 2)
            # Nor does the server keep their sessions, idle until its TCP keepalive gives up (2 hours by default).
            held = [conn.get_server_pid() for conn in list(database._POOLED) if not conn.is_closed()]
            held += [service.listener._conn.get_server_pid() for service in services]
            await wait_until(database_url, """SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database()
                                              AND application_name LIKE 'hrwsi-%' AND pid <> ALL($1::int[])""", held,
                             timeout=5)
    finally:
        door.close()
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM hrwsi.job").fetchone() == (20, 20)
    said = [r.getMessage() for r in caplog.records if "waiting on no statement of the server" in r.getMessage()]
    assert said and "half-open" in said[0]


async def test_a_burst_after_a_quiet_spell_is_not_held_up_by_pooled_connections_a_middlebox_forgot(
        db, database_url, settings, configure, monkeypatch):
    """A NAT, firewall or load balancer between the services and the database forgets a connection that carried
    nothing for a while, which stays half-open. The listener, pinging every heartbeat, stays heard; the pool's
    spare connections do not, and a burst took them: each statement waited the command timeout (60 s), its
    release as long again, over 6 minutes in all. The pool closes a connection unused for POOL_IDLE_LIFETIME_S
    (60 s, below common middleboxes' idle timeouts), here scaled down with the middlebox's."""
    monkeypatch.setattr(database, "POOL_IDLE_LIFETIME_S", 1.0)
    configure(single_routine_configuration(["true"], workers=4))
    door = DatabaseDoor(database_url)
    try:
        async with running(door.url, ["orchestrator", "launcher", "harvester"], settings, backend="local"):
            insert_inputs(db, 100)
            await wait_until(database_url, "SELECT count(*) = 100 FROM hrwsi.processing_task WHERE state = 'processed'")
            door.idle_timeout_s = 3.0  # (from now on: the first burst's connections were all in use)
            await asyncio.sleep(4.0)  # the quiet spell: the spare connections carried nothing for longer
            insert_inputs(db, 100, start=100)
            await wait_until(database_url, "SELECT count(*) = 200 FROM hrwsi.processing_task WHERE state = 'processed'",
                             timeout=COMMAND_TIMEOUT_S / 2)
    finally:
        door.close()
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM hrwsi.job").fetchone() == (200, 200)


async def test_two_orchestrators_and_two_launchers_create_no_duplicates(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=3))
    kinds = ["orchestrator", "orchestrator", "launcher", "launcher"]
    async with running(database_url, kinds, settings):
        # Both launchers registered (and so listening) before the first input, and the batches a turn
        # apart: under a loaded machine, a launcher that started late found every task claimed (once,
        # in `make test`, 2026-12-05), which proves nothing about duplicates.
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.service_instance WHERE kind = 'launcher'")
        for batch in range(10):
            insert_inputs(db, 30, start=batch * 30)
            await asyncio.sleep(0.05)
        await wait_until(database_url, "SELECT count(*) = 300 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=60)
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 300
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM hrwsi.job").fetchone() == (300, 300)
    owners = db.execute("SELECT count(DISTINCT owner) FROM hrwsi.job").fetchone()[0]
    assert owners == 2, "both launchers took part"


async def test_stopped_and_restarted_mid_run_loses_and_duplicates_nothing(db, database_url, settings, configure):
    # Each job runs 2 s: a job is seen running about PROGRESS_BATCH_S (0.2 s) after it starts, and it
    # must still run after the 0.1 s grace of the stop below. (Jobs of 0.3 s had all ended by then in a
    # CI run of 2026-12-03, and none was interrupted.)
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(2)"], workers=2))
    # A lease of 10 s, not the suite's 2 s: this test is about a stop, and on a loaded machine a launcher once went
    # unheard for over 2 s, dropped a job it held as its lease had lapsed, and left it running for its next identity
    # to adopt, which the stop came before (a CI run of 2026-12-07; leases are test_leases').
    quick_stop = dataclasses.replace(settings, shutdown_grace_s=0.1, lease_timeout_s=10.0)
    insert_inputs(db, 24)
    async with running(database_url, ["orchestrator", "launcher"], quick_stop, backend="local"):
        await wait_until(database_url, "SELECT count(*) FILTER (WHERE state = 'processed') >= 4 "
                                       "AND count(*) FILTER (WHERE state = 'running') >= 1 FROM hrwsi.job",
                         timeout=60, interval=0.01)
    # Stopped with jobs running: those were stopped and handed back as lost, to be retried.
    interrupted = db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'lost'").fetchone()[0]
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state IN ('submitted', 'running')").fetchone()[0] == 0
    async with running(database_url, ["orchestrator", "launcher"], quick_stop, backend="local"):
        await wait_until(database_url, "SELECT count(*) = 24 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=90)
    assert interrupted >= 1
    assert db.execute(NO_DUPLICATES).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 24


async def test_the_heartbeat_outlives_an_unexpected_database_error(database_url, settings):
    async with running(database_url, ["launcher"], settings) as (launcher,):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance")
        # DDL through asyncpg, not the blocking psycopg fixture: waiting for its lock must not stop the loop.
        conn = await asyncpg.connect(database_url)
        try:
            # Every heartbeat is refused by a constraint (not a connection problem) for a few beats.
            await conn.execute("""ALTER TABLE hrwsi.service_instance ADD CONSTRAINT test_refuses_heartbeats
                                  CHECK (heartbeat_at < '2000-01-01') NOT VALID""")
            # (for less than the lease: a longer silence is a lapsed lease, see test_leases)
            await asyncio.sleep(2 * settings.heartbeat_s)
            refused_at = await conn.fetchval("SELECT heartbeat_at FROM hrwsi.service_instance WHERE id = $1",
                                             launcher.instance_id)
            await conn.execute("ALTER TABLE hrwsi.service_instance DROP CONSTRAINT test_refuses_heartbeats")
        finally:
            await conn.close()
        await wait_until(database_url, "SELECT heartbeat_at > $1 FROM hrwsi.service_instance WHERE id = $2",
                         refused_at, launcher.instance_id, timeout=10)


async def test_a_stop_while_every_connection_is_half_open_ends_within_its_bound_and_loses_nothing(
        db, database_url, settings, configure, caplog):
    """Stopped while every connection of the services has gone half-open, the services end within
    HRWSI_SHUTDOWN_GRACE_S + STOP_DATABASE_S (and a little more, STOP_AFTER_TERMINATE_S): before, writing the
    last outcomes and unregistering each waited asyncpg's command timeout and as long again for its cancel's
    acknowledgement (241 s: systemd and Nomad would have killed it first). What was not written is not lost
    (ADR 0006): the next launcher adopts the attempts, reads how they ended from their supervisors, and records
    each once; nothing runs twice."""
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.5)"], workers=2))
    # Jobs end within the grace, so that their outcomes are the last writes. A lease longer than the stop's bound (17 s):
    # with one of 5 s, on a loaded machine the launcher's lease lapsed during the stop and it dropped its jobs first,
    # so the outcomes were not what the stop left unwritten (failed in CI).
    quick = dataclasses.replace(settings, shutdown_grace_s=2.0, lease_timeout_s=25.0, heartbeat_s=1.0)
    insert_inputs(db, 4)
    door = DatabaseDoor(database_url)
    try:
        async with App(door.url, ["orchestrator", "launcher"], quick, backend="local", pool_size=10) as app:
            await wait_until(database_url, "SELECT count(*) >= 1 FROM hrwsi.job WHERE state = 'running'")
            door.freeze()
            app.request_stop()
            try:
                bound_s = STOP_DATABASE_S + max(service.stop_allowance_s() for service in app.services)
                async with asyncio.timeout(bound_s + STOP_AFTER_TERMINATE_S + 5):
                    await asyncio.gather(*app._tasks, return_exceptions=True)
            finally:
                door.close()  # (before, the stop still waited here: closing the door ended it, and the test failed)
    finally:
        door.close()
    said = [r.getMessage() for r in caplog.records if "closing its connections without waiting" in r.getMessage()]
    assert said and "the outcomes of" in said[0] and "the next launcher adopts" in said[0]
    unrecorded = db.execute("SELECT count(*) FROM hrwsi.job WHERE state IN ('submitted', 'running')").fetchone()[0]
    async with running(database_url, ["orchestrator", "launcher"], quick, backend="local"):
        await wait_until(database_url, "SELECT count(*) = 4 FROM hrwsi.processing_task WHERE state = 'processed'")
    assert unrecorded >= 1  # (outcomes the stop did not write, recorded by the launcher after it)
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM hrwsi.job").fetchone() == (4, 4)
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 4
