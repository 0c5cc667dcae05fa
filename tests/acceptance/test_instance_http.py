"""A service process serves /metrics, /healthz and /readyz for itself when HRWSI_HTTP_PORT is set."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from hrwsi.migrations import build_version


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_service_started_with_an_http_port_answers_for_itself_and_stops_cleanly(tmp_path, database_url):
    log = tmp_path / "orchestrator.log"
    env = {**os.environ, "HRWSI_DATABASE_URL": database_url, "HRWSI_HOME": str(tmp_path / "home"),
           "HRWSI_HTTP_PORT": "0", "HRWSI_BACKSTOP_POLL_S": "0.5", "HRWSI_HEARTBEAT_S": "0.5"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "hrwsi", "orchestrator"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"orchestrator: /metrics, /healthz and /readyz on (http://\S+)",
                                      log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        base = found.group(1)
        while fetch(f"{base}/readyz")[0] != 200:
            assert time.monotonic() < deadline, fetch(f"{base}/readyz")
            time.sleep(0.2)
        status, health = fetch(f"{base}/healthz")
        assert status == 200 and '"service": "orchestrator"' in health
        status, text = fetch(f"{base}/metrics")
        assert status == 200 and re.search(r'^hrwsi_instance\{instance="orchestrator-[^"]+",service="orchestrator"\} 1.0$',
                                           text, re.MULTILINE)
        assert "hrwsi_database_up 1.0" in text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    assert "orchestrator-" in log.read_text() and "stopped" in log.read_text()
    # On uvloop (hrwsi.event_loop): it served, and stopped cleanly on SIGTERM, there.
    assert f"orchestrator (hrwsi {build_version()}) on the uvloop event loop (HRWSI_EVENT_LOOP=auto)" in log.read_text()
