"""hrwsi behind pgbouncer, a real one before the test's real server: what hrwsi cannot work through
is said in one line, once, naming what it needs and what to do (found by exploratory testing:
every step failed every 2 s on "prepared statement __asyncpg_stmt_1c__ does not exist", and a
refused startup parameter was retried for ever, with nothing saying that hrwsi cannot work there)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from hrwsi.app import wait_for_pool
from hrwsi.database import create_pool, service_session_settings
from hrwsi.database_trouble import UnusablePooler
from hrwsi.harvester import Harvester

pytestmark = pytest.mark.skipif(shutil.which("pgbouncer") is None, reason="pgbouncer is not installed")

# Ports this file's pgbouncers may take (this project's tests use ports 47400-47499).
PORTS = range(47430, 47450)


def start_pgbouncer(database_url: str, **options: str) -> tuple[subprocess.Popen, str, Path]:
    """pgbouncer on a free port of PORTS before the database of `database_url`; (process, its URL, its directory).
    Why not one fixed port: both tests here ran at once in the two test processes of `make test`, and the
    second's pgbouncer, which could not bind the port, exited while the test connected to the first's, which
    forwards to the other test's database with the other test's settings (reproduced: the URL returned reached
    the other database). A port is taken only once our own pgbouncer answers on it for our own database."""
    target = psycopg.conninfo.conninfo_to_dict(database_url)
    directory = Path(tempfile.mkdtemp(prefix="hrwsi-pgb-", dir="/tmp"))
    directory.chmod(0o755)
    (directory / "users.txt").write_text(f'"{target.get("user", "postgres")}" ""\n')
    root = os.geteuid() == 0  # (pgbouncer does not run as root: as the embedded server's user, then)
    if root:
        shutil.chown(directory, "embedded_postgres")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    share = len(PORTS) // 2 * (int(worker) % 2 if worker.isascii() and worker.isdigit() else 0)
    for port in [*PORTS[share:], *PORTS[:share]]:
        started = _pgbouncer_on(port, directory, target, root, options)
        if started is not None:
            return started[0], started[1], directory
    raise AssertionError(f"no pgbouncer could listen on a port of {PORTS.start}-{PORTS.stop - 1}: "
                         f"{(directory / 'pgbouncer.log').read_text()}")


def _pgbouncer_on(port: int, directory: Path, target: dict, root: bool, options: dict[str, str]
                  ) -> tuple[subprocess.Popen, str] | None:
    """pgbouncer on `port`, once it forwards to `target`'s database; None when it exited (the port is taken)."""
    settings = {"listen_addr": "127.0.0.1", "listen_port": str(port), "unix_socket_dir": "", "auth_type": "trust",
                "auth_file": str(directory / "users.txt"), "logfile": str(directory / "pgbouncer.log"),
                **options}
    server = " ".join(f"{key}={target[key]}" for key in ("host", "port", "user", "dbname") if target.get(key))
    (directory / "pgbouncer.ini").write_text("[databases]\nhrwsi = " + server + "\n[pgbouncer]\n"
                                             + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    process = subprocess.Popen(["pgbouncer", *(["-u", "embedded_postgres"] if root else []),
                                str(directory / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"postgresql://{target.get('user', 'postgres')}@127.0.0.1:{port}/hrwsi"
    deadline = time.monotonic() + 30
    while process.poll() is None:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                reached = conn.execute("SELECT current_database()").fetchone()[0]
            if reached == target["dbname"] and process.poll() is None:
                return process, url
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"pgbouncer did not start: {(directory / 'pgbouncer.log').read_text()}")
        time.sleep(0.1)
    return None


def stop_pgbouncer(process: subprocess.Popen, directory: Path) -> None:
    process.terminate()
    process.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_pooler_refusing_hrwsis_session_settings_stops_the_start_in_one_line_naming_what_to_do(database_url):
    process, url, directory = start_pgbouncer(database_url)  # (pgbouncer's defaults: no ignore_startup_parameters)
    try:
        with pytest.raises(UnusablePooler) as refused:
            await asyncio.wait_for(wait_for_pool(url, 2, asyncio.Event(), "hrwsi-test-pool",
                                                 service_session_settings(30.0)), 20)
    finally:
        stop_pgbouncer(process, directory)
    message = str(refused.value)
    assert message.startswith("a connection pooler refused the connection (unsupported startup parameter: "), message
    assert "hrwsi needs session-level connections (LISTEN, prepared statements, session settings)" in message
    assert "pool_mode = session" in message and "ignore_startup_parameters" in message
    assert "README.md, Connection poolers" in message and "\n" not in message


async def test_a_pooler_in_transaction_mode_is_said_once_by_a_step_and_shows_as_the_services_problem(
        database_url, settings, caplog):
    # Each transaction's server connection forgets prepared statements, as one served from another
    # server connection does in transaction mode: the statement asyncpg prepared is gone at once.
    process, url, directory = start_pgbouncer(database_url, pool_mode="transaction",
                                              ignore_startup_parameters=",".join([*service_session_settings(30.0),
                                                                                  "default_transaction_isolation"]),
                                              server_reset_query="DEALLOCATE ALL", server_reset_query_always="1")
    try:
        pool = await create_pool(url, max_size=2, server_settings=service_session_settings(30.0))
        try:
            harvester = Harvester(pool, settings)
            caplog.set_level(logging.INFO, "hrwsi.service")
            for _ in range(3):
                await harvester.run_step("chain")
        finally:
            await pool.close()
    finally:
        stop_pgbouncer(process, directory)
    said = [r.getMessage() for r in caplog.records if "connection pooler" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert said[0].startswith("harvester: a connection pooler in transaction or statement mode stands before the "
                              "database (prepared statement "), said
    assert "set pool_mode = session for hrwsi's database, or connect to PostgreSQL directly" in said[0]
    assert not any("failed in the database" in r.getMessage() for r in caplog.records)
    problem = harvester.problem()
    assert problem is not None and problem[0] == said[0].removeprefix("harvester: ")


def test_two_pgbouncers_started_at_once_each_forward_to_their_own_database(database_url, empty_database_url):
    # Found by CI-like runs (2026-12-07): both tests above on one fixed port in two test processes at once, the
    # second's pgbouncer exited (the port was taken) and the test went on through the other's, to its database.
    first, first_url, first_directory = start_pgbouncer(database_url)
    try:
        second, second_url, second_directory = start_pgbouncer(empty_database_url)
        try:
            with psycopg.connect(second_url) as conn:
                reached = conn.execute("SELECT current_database()").fetchone()[0]
            assert reached == psycopg.conninfo.conninfo_to_dict(empty_database_url)["dbname"]
            assert second.poll() is None and second_url != first_url
        finally:
            stop_pgbouncer(second, second_directory)
    finally:
        stop_pgbouncer(first, first_directory)
