"""What a benchmark process and the driver say to each other, and the clock they share.

A system under test runs in child processes (benchmarks/bench_process.py), one per service, so that
each service's peak RSS is its own. The driver (benchmarks/run.py) writes commands to a child's
stdin, one per line, each acknowledged with `ok <command>`:

    each        report every job as it reaches the system: `job <key> <time>`
    expect N    count jobs from now on and report once N have: `all <count> <time>`
    rss         report memory now: `rss <peak MB> <current MB>`
    stop        (or end of input) stop gracefully; the last lines are `rss ...` and `bye`

and the child writes `ready` once it listens. Times are CLOCK_MONOTONIC, one clock for every process
of the machine, so a time taken in a child compares with one taken in the driver.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path


def clock() -> float:
    """Seconds on the machine-wide monotonic clock (comparable across processes)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def memory_mb() -> tuple[float, float]:
    """(peak RSS, current RSS) of this process in MB. VmHWM is the peak of this program's own address
    space (reset at exec), unlike ru_maxrss, which may include the forking parent's pages."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        peak = int(fields["VmHWM"].split()[0]) / 1024
        current = int(fields["VmRSS"].split()[0]) / 1024
        return round(peak, 1), round(current, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux
    return round(peak, 1), round(peak, 1)


def send(*words: object) -> None:
    """One line to the driver."""
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()
