"""Where a benchmark phase's CPU went, read from /proc (Linux only; elsewhere nothing is reported).

The chain is CPU-bound on a 2-core machine: its time is, within a few per cent, the CPU it uses
divided by the cores. Its time alone does not say whose CPU that was. Split here, per job of the chain:
- engine: the system's own processes (hrwsi's harvester, orchestrator and launcher; pgqueuer's
  consumer; the floor's listener) and their database sessions: what the engine costs;
- subprocesses: what those processes waited for, the local backend's supervisors and their routines
  (the kernel adds a child's CPU to its parent's when the parent reaps it): the same for every
  system, since each runs the same subprocesses the same way;
- the machine's busy share over the phase: how close to CPU-bound it ran.
It moves with the machine as the chain's time does: compare it with the peer's in the same round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import asyncpg

from bench_sql import bench_query

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessTimes:
    own_s: float        # user + system time of the process itself
    children_s: float   # of its children that it reaped (and of theirs that they reaped)


def process_times(pid: int) -> ProcessTimes | None:
    """A process's CPU so far, or None when /proc cannot tell (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (name) ": state is fields[0]
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ProcessTimes((utime + stime) / TICK, (cutime + cstime) / TICK)


def machine_times() -> tuple[float, float] | None:
    """(all, idle) CPU seconds of the machine so far, over every core, without the time the
    hypervisor gave to other machines (steal); None when /proc cannot tell."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values[:7]) / TICK, (values[3] + values[4]) / TICK  # user .. softirq; idle + iowait


def _is_server_process(pid: int) -> bool:
    """A PostgreSQL backend on this machine (a remote server's pids mean nothing here)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().startswith(b"postgres:")
    except OSError:
        return False


@dataclass(frozen=True)
class CpuSnapshot:
    """The CPU so far of a system's processes, of its database sessions and of the machine."""
    processes: dict[str, ProcessTimes]
    sessions: dict[int, tuple[str, float]]  # server pid -> (application name, CPU s)
    machine: tuple[float, float]

    @classmethod
    async def take(cls, conn: asyncpg.Connection, pids: dict[str, int]) -> CpuSnapshot | None:
        """Of the processes `pids` ({name: pid}) and every other session on conn's database; None
        when /proc cannot tell (not Linux, the server on another machine, a process gone)."""
        processes = {name: process_times(pid) for name, pid in pids.items()}
        machine = machine_times()
        sessions: dict[int, tuple[str, float]] = {}
        for row in await conn.fetch(bench_query("database_sessions")):
            times = process_times(row["pid"]) if _is_server_process(row["pid"]) else None
            if times is None:
                return None
            sessions[row["pid"]] = (row["application_name"], times.own_s)
        if machine is None or any(times is None for times in processes.values()):
            return None
        return cls(processes, sessions, machine)  # type: ignore[arg-type]


def cpu_between(before: CpuSnapshot | None, after: CpuSnapshot | None, jobs: int) -> dict | None:
    """The split of the module docstring between two snapshots, in seconds and in ms per job. (A
    session that ended between them is not counted: the systems keep theirs open for a phase.)"""
    if before is None or after is None or not jobs:
        return None
    processes = {name: after.processes[name].own_s - before.processes[name].own_s for name in after.processes}
    subprocesses = sum(after.processes[name].children_s - before.processes[name].children_s
                       for name in after.processes)
    sessions: dict[str, float] = {}
    for pid, (name, cpu) in after.sessions.items():
        sessions[name] = sessions.get(name, 0.0) + cpu - before.sessions.get(pid, (name, 0.0))[1]
    engine = sum(processes.values()) + sum(sessions.values())
    elapsed, idle = (after.machine[0] - before.machine[0]), (after.machine[1] - before.machine[1])
    return {"engine_ms_per_job": round(1000 * engine / jobs, 3),
            "subprocess_ms_per_job": round(1000 * subprocesses / jobs, 3),
            "machine_busy": round(1 - idle / elapsed, 3) if elapsed > 0 else None,
            "engine_s": round(engine, 2), "subprocesses_s": round(subprocesses, 2),
            "processes_s": {name: round(v, 2) for name, v in processes.items()},
            "sessions_s": {name: round(v, 2) for name, v in sorted(sessions.items())}}
