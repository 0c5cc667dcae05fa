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

PORT = 47431  # (this project's tests use ports 47400-47499)


def start_pgbouncer(database_url: str, **options: str) -> tuple[subprocess.Popen, str, Path]:
    """pgbouncer on PORT before the database of `database_url`; (process, its URL, its directory)."""
    target = psycopg.conninfo.conninfo_to_dict(database_url)
    directory = Path(tempfile.mkdtemp(prefix="hrwsi-pgb-", dir="/tmp"))
    directory.chmod(0o755)
    (directory / "users.txt").write_text(f'"{target.get("user", "postgres")}" ""\n')
    settings = {"listen_addr": "127.0.0.1", "listen_port": str(PORT), "unix_socket_dir": "", "auth_type": "trust",
                "auth_file": str(directory / "users.txt"), "logfile": str(directory / "pgbouncer.log"),
                **options}
    server = " ".join(f"{key}={target[key]}" for key in ("host", "port", "user", "dbname") if target.get(key))
    (directory / "pgbouncer.ini").write_text("[databases]\nhrwsi = " + server + "\n[pgbouncer]\n"
                                             + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    root = os.geteuid() == 0  # (pgbouncer does not run as root: as the embedded server's user, then)
    if root:
        shutil.chown(directory, "embedded_postgres")
    process = subprocess.Popen(["pgbouncer", *(["-u", "embedded_postgres"] if root else []),
                                str(directory / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"postgresql://{target.get('user', 'postgres')}@127.0.0.1:{PORT}/hrwsi"
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return process, url, directory
        except psycopg.OperationalError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"pgbouncer did not start: {(directory / 'pgbouncer.log').read_text()}") from None
            time.sleep(0.1)


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
