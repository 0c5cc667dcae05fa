"""The task scripts contract tests stop end on Nomad's stop signal at once, whatever /bin/sh a real agent's node has.

Nomad sends the task's kill_signal (SIGINT) to the task's own process, here the shell, and kills what it
started only after the kill timeout (drivers/shared/executor/executor_unix.go shutdownProcess, executor.go
Shutdown). A script that defers the signal made every stop on a real agent wait the job's kill timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.contract.conftest import script_until_exists, sleeping

pytestmark = pytest.mark.contract

CONTRACT_TESTS = Path(__file__).parent
# The shells a node's /bin/sh may be: dash (Debian, Ubuntu), bash (RHEL, Rocky, Fedora, SUSE), busybox ash.
SHELLS = sorted({path for name in ("sh", "dash", "bash", "ash") if (path := shutil.which(name))})


def _default_signals() -> None:
    """(In the shell's process.) As a Nomad client starts a task: every signal deliverable, default actions."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", ["loop", "loop-then", "sleep"])
def test_a_stopped_script_ends_of_the_stop_signal_at_once_whatever_the_shell(shell: str, kind: str, tmp_path: Path):
    script = {"loop": script_until_exists(tmp_path / "never"),
              "loop-then": script_until_exists(tmp_path / "never", "exit 210"),
              "sleep": sleeping(30)}[kind]
    process = subprocess.Popen([shell, "-c", script], start_new_session=True, preexec_fn=_default_signals)
    try:
        time.sleep(0.3)  # (the shell runs its loop or its sleep by now)
        process.send_signal(signal.SIGINT)  # to the task's own process only, as Nomad's executor sends it
        # Nomad's default kill timeout is 5 s: a script that waited it out would be killed, not end of the signal
        returncode = process.wait(timeout=3)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert returncode == -signal.SIGINT  # died of the signal, as a shell with the default action does


LOOP = re.compile(r"while \[ ! -e ")
LONG_SLEEP = re.compile(r"(?<!exec )\bsleep (\d+)\b(?! &)")  # (a sleep in the background is not waited for)


def test_no_contract_test_runs_a_script_that_defers_the_stop_signal():
    # A loop written out without the trap, or a `sleep` of seconds the shell waits for: stopped on a real agent,
    # each waited the job's kill timeout. Scripts that run to their end on purpose say so on their line.
    found = []
    for path in sorted(CONTRACT_TESTS.glob("test_*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "runs to its end" in line or line.lstrip().startswith("#"):
                continue
            if LOOP.search(line) or any(int(s) >= 5 for s in LONG_SLEEP.findall(line.split("#")[0])
                                        if "asyncio.sleep" not in line and "time.sleep" not in line):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == [], "use conftest's script_until_exists or sleeping:\n" + "\n".join(found)
