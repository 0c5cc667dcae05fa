"""A service process's log as a log collector reads it: with HRWSI_LOG_FORMAT=json, every line it writes
is one JSON object, its time in UTC, naming the process's service and version."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from hrwsi.migrations import build_version


def test_a_service_started_with_json_logs_writes_only_json_lines_in_utc(tmp_path, database_url):
    log = tmp_path / "harvester.log"
    env = {**os.environ, "HRWSI_DATABASE_URL": database_url, "HRWSI_HOME": str(tmp_path / "home"),
           "HRWSI_LOG_FORMAT": "json", "HRWSI_LOG_LEVEL": "debug", "TZ": "America/Los_Angeles",
           "HRWSI_HEARTBEAT_S": "0.5"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "hrwsi", "harvester"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while "started; listening on" not in log.read_text():  # (its level in lower case was taken)
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line is one JSON object
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    assert all((r["service"], r["hrwsi_version"], r["pid"]) == ("harvester", build_version(), process.pid)
               for r in records)
    started = [r for r in records if r["logger"] == "hrwsi.cli.services"]
    assert started[0]["message"].startswith(f"harvester (hrwsi {build_version()}) on the uvloop event loop")
    assert any(r["message"].endswith("stopped") for r in records)
