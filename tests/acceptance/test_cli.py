"""The command line as ops and data engineers run it: real processes, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from hrwsi.configuration import load
from tests.integration.conftest import single_routine_configuration

HRWSI = [sys.executable, "-m", "hrwsi"]


def run(args, env, timeout=120, check=True):
    result = subprocess.run([*HRWSI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"hrwsi {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def env(tmp_path, database_url):
    return {**os.environ, "HRWSI_HOME": str(tmp_path / "home"), "HRWSI_DATABASE_URL": database_url,
            "COLUMNS": "200", "HRWSI_BACKSTOP_POLL_S": "0.5", "HRWSI_HEARTBEAT_S": "0.5",
            "HRWSI_LEASE_TIMEOUT_S": "1.5", "HRWSI_RETRY_BACKOFF_S": "0.05"}


def wait_for(db, sql, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.execute(sql).fetchone()[0]:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {sql}")


def test_embedded_database_lifecycle(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HRWSI_DATABASE_URL"}
    env["HRWSI_HOME"] = str(Path("/tmp") / f"hrwsi-acc-{os.getpid()}")
    try:
        started = run(["db", "start"], env)
        url = started.stdout.strip().splitlines()[-1]
        assert url.startswith("postgresql://") and "hrwsi" in url
        assert run(["db", "url"], env).stdout.strip() == url, "a second start reuses the server"
        assert "applied 0001_initial" in run(["db", "init"], env).stdout
        assert "schema up to date" in run(["db", "init"], env).stdout
        assert "equals a fresh install" in run(["db", "check"], env).stdout
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM hrwsi.task_state").fetchone()[0] >= 9
        assert "stopped" in run(["db", "stop"], env).stdout
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
    finally:
        run(["db", "stop"], env, check=False)
        subprocess.run(["rm", "-rf", env["HRWSI_HOME"]])


def test_reports_after_a_run(db, env, tmp_path):
    load(db, single_routine_configuration([sys.executable, "-c", "import sys; sys.exit(0)"]))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile) VALUES ('in', '/a', '32TLR')")
    service = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(db, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
        health = run(["health", "launcher"], env)
        assert "healthy" in health.stdout
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    assert "launcher" in stderr and "stopped" in stderr
    status = run(["status"], env).stdout
    assert "processed" in status
    tasks = run(["tasks", "--tile", "32TLR"], env).stdout
    assert "/a" in tasks and "work" in tasks
    assert "/a" not in run(["tasks", "--tile", "31TGL"], env).stdout
    task_id = db.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    shown = run(["task", "show", str(task_id)], env).stdout
    for expected in ("pending", "planned", "dispatched", "running", "processed", "hrwsi-work-", ".log"):
        assert expected in shown
    missing = run(["task", "show", "999999"], env, check=False)
    assert missing.returncode == 1 and "no task 999999" in missing.stdout


def test_kill_9_and_restart_loses_and_duplicates_nothing(db, env):
    load(db, single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.2)"], workers=2))
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT 'in', '/scene/' || g FROM generate_series(1, 30) g""")
    first = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(db, "SELECT count(*) >= 3 FROM hrwsi.job WHERE state = 'processed'")
        wait_for(db, "SELECT count(*) >= 1 FROM hrwsi.job WHERE state = 'running'")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(db, "SELECT count(*) = 30 FROM hrwsi.processing_task WHERE state = 'processed'", timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    duplicates = db.execute("""SELECT count(*) FROM (SELECT task_id FROM hrwsi.job WHERE state = 'processed'
                               GROUP BY task_id HAVING count(*) > 1) d""").fetchone()[0]
    assert duplicates == 0
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'lost'").fetchone()[0] >= 1, \
        "the jobs running at the kill were found and retried"
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state IN ('submitted', 'queued', 'running')"
                      ).fetchone()[0] == 0


def test_demo_runs_the_whole_loop(env, server_url, tmp_path):
    demo_env = {**env, "HRWSI_DATABASE_URL": server_url}
    result = run(["demo", "--inputs", "4", "--home", str(tmp_path / "demo"), "--timeout", "120"], demo_env,
                 timeout=300)
    out = result.stdout
    assert "everything processed" in out
    assert "QUICKLOOK 6" in out  # 4 inserted with SQL + 2 from the landing directory
    assert "GFSC" in out and "SWS 6" in out  # a composite per tile and day, read from its members
    assert "needed 2 attempts" in out
    # outputs live under the installation's own directory: data/products/<installation id>/<routine>/...
    assert list((tmp_path / "demo" / "data" / "products").glob("*/quicklook/**/*.png"))


def test_demo_through_the_nomad_path(env, server_url, tmp_path):
    """The same demo with every job run as a Nomad batch job, on the Nomad API emulator (a test double)."""
    demo_env = {**env, "HRWSI_DATABASE_URL": server_url}
    result = run(["demo", "--inputs", "4", "--backend", "nomad-emulator", "--home", str(tmp_path / "demo")],
                 demo_env, timeout=300)
    assert "everything processed" in result.stdout
    assert "QUICKLOOK 6" in result.stdout and "needed 2 attempts" in result.stdout
