"""The `hrwsi` command as ops run it: in a subprocess, with the environment of the test's database."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

HRWSI = [sys.executable, "-m", "hrwsi"]


def run(args, env, timeout=120, check=True):
    result = subprocess.run([*HRWSI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"hrwsi {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def env(tmp_path, database_url):
    # (HRWSI_WEB_PORT=0: `hrwsi up` serves its dashboard on 8470 unless told, and two tests' at once took turns on it,
    # the second's logging an error; a user's own dashboard on 8470 was met by a test's.)
    return {**os.environ, "HRWSI_HOME": str(tmp_path / "home"), "HRWSI_DATABASE_URL": database_url,
            "COLUMNS": "200", "HRWSI_WEB_PORT": "0", "HRWSI_BACKSTOP_POLL_S": "0.5", "HRWSI_HEARTBEAT_S": "0.5",
            "HRWSI_LEASE_TIMEOUT_S": "1.5", "HRWSI_RETRY_BACKOFF_S": "0.05"}


def wait_for(db, sql, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.execute(sql).fetchone()[0]:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {sql}")
