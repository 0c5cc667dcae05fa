"""The benchmark's CPU split (benchmarks/cpu_time.py): read from /proc of real processes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from cpu_time import CpuSnapshot, ProcessTimes, cpu_between, machine_times, process_times  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_own_cpu_and_that_of_the_children_it_reaped_are_told_apart():
    before = process_times(os.getpid())
    burn(0.3)
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    after = process_times(os.getpid())
    assert 0.25 <= after.own_s - before.own_s < 0.75  # (the burn, and starting the child)
    assert 0.45 <= after.children_s - before.children_s < 1.0


def test_the_machine_counts_busy_time_while_a_process_burns_cpu():
    all_before, idle_before = machine_times()
    burn(0.3)
    all_after, idle_after = machine_times()
    busy = (all_after - all_before) - (idle_after - idle_before)
    assert busy >= 0.25 and 0 <= idle_after - idle_before <= all_after - all_before


def test_a_process_that_is_gone_has_no_times():
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    assert process_times(int(finished.stdout)) is None


def test_the_split_is_per_job_and_sums_the_processes_and_the_sessions_between_the_snapshots():
    start = (100.0, 50.0)
    before = CpuSnapshot({"launcher": ProcessTimes(1.0, 10.0), "harvester": ProcessTimes(0.5, 0.0)},
                         {101: ("hrwsi-launcher-pool", 2.0)}, start)
    after = CpuSnapshot({"launcher": ProcessTimes(3.0, 40.0), "harvester": ProcessTimes(1.5, 0.0)},
                        {101: ("hrwsi-launcher-pool", 3.0), 102: ("hrwsi-launcher-pool", 1.0)},
                        (start[0] + 10.0, start[1] + 2.5))
    split = cpu_between(before, after, jobs=100)
    # engine: 2 + 1 (processes) + 1 + 1 (a session already there, one opened meanwhile) = 5 s
    assert split["engine_s"] == 5.0 and split["engine_ms_per_job"] == 50.0
    assert split["subprocesses_s"] == 30.0 and split["subprocess_ms_per_job"] == 300.0
    assert split["sessions_s"] == {"hrwsi-launcher-pool": 2.0}
    assert split["machine_busy"] == 0.75
    assert cpu_between(None, after, 100) is None and cpu_between(before, after, 0) is None
