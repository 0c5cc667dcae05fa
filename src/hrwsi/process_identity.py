"""Whether a service instance's process is provably dead, so that its lease may be broken at once.

A service instance's id is KIND-HOST-PID-RANDOM, and its lease lapses `lease_timeout_s` after its last
heartbeat. A launcher killed with kill -9 and restarted at once left the dead instance's jobs holding
their workers' capacity for that long, and near-real-time inputs waited behind them (found by
exploratory testing). Mature schedulers break a lease as soon as its holder is proven dead; a wrong
"dead" would run an attempt twice, so every doubt keeps the lease (the timeout stays the fallback).

Each instance records, with its pid, the identity of its process (`identity()`): the kernel's boot id,
the pid and time namespaces it lives in, and its start time in clock ticks since boot. A new instance
of the same kind on the same host then proves an older one dead only when both share the kernel and
the namespaces (so that the pid means the same process to both: containers repeat hostnames, and each
pid namespace its pids) and either no process has that pid (kill(pid, 0) says ESRCH), or the process
with that pid is a zombie, or it started at another time (the pid was reused). A /proc that hides other
users' processes (hidepid), any file it cannot read, or a platform without /proc: not proven.
(A pid namespace's inode is unique among live namespaces; one reused by a later namespace means the
first is gone, and every process in it with it: the verdict holds.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True)
class Verdict:
    dead: bool
    why: str  # dead: what proves it; alive: why it may not be taken over


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def _namespace(kind: str) -> str | None:
    try:
        return os.readlink(f"{PROC}/self/ns/{kind}")
    except OSError:
        return None


def _stat(pid: int | str) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot), from /proc/PID/stat."""
    text = _read(f"{PROC}/{pid}/stat")
    if text is None or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # (the command, in parentheses, may hold spaces)
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _place() -> str | None:
    """The kernel and the namespaces this process sees pids in: "BOOT_ID PIDNS TIMENS" (None: cannot tell).
    A time namespace shifts the start times /proc shows: it must be the same too (none: '-')."""
    boot = _read(f"{PROC}/sys/kernel/random/boot_id")
    pid_ns = _namespace("pid")
    own = _read(f"{PROC}/self/stat")
    if not boot or not pid_ns or own is None or own.split(" ", 1)[0] != str(os.getpid()):
        return None  # (a /proc of another pid namespace, mounted here, would answer for other processes)
    return f"{boot} {pid_ns} {_namespace('time') or '-'}"


def identity() -> str | None:
    """This process's identity, recorded with its lease: "BOOT_ID PIDNS TIMENS START_TICKS"; None where
    /proc cannot tell (then no other instance ever takes its lease over before the timeout)."""
    place = _place()
    stat = _stat("self")
    return None if place is None or stat is None else f"{place} {stat[1]}"


def verdict(pid: int, recorded: str | None) -> Verdict:
    """Whether the process recorded as `recorded` (its identity()) with `pid` is provably dead, as this
    process sees it. Never dead without proof."""
    place = _place()
    if recorded is None or place is None:
        return Verdict(False, "its process cannot be identified")
    where, _, started = recorded.rpartition(" ")
    if where != place:
        return Verdict(False, "it runs in another kernel or pid namespace (a container?)")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Verdict(True, f"no process has its pid {pid} on this host")
    except PermissionError:
        pass  # (it exists, another user's)
    except OSError:
        return Verdict(False, f"whether its pid {pid} is alive cannot be told")
    stat = _stat(pid)
    if stat is None:
        return Verdict(False, f"its pid {pid} is alive and cannot be read (hidepid?)")
    state, start = stat
    if start != started:
        return Verdict(True, f"its pid {pid} is another process now (its start time differs: the pid was reused)")
    if state in ("Z", "X"):
        return Verdict(True, f"its process {pid} has exited (a zombie not yet reaped)")
    return Verdict(False, f"its process {pid} is alive")


def port_holder(port: int) -> str | None:
    """Who listens on TCP `port` on this host, in words ("pid 4321: python3 -m http.server 8470"), as far
    as /proc tells this user: the listening sockets of /proc/net/tcp and tcp6, then the processes whose
    open files are one of them. None: not known (another user's process, another network namespace, a
    platform without /proc). Reads files only; for a message, never for a decision. (The dashboard's
    "port taken" line repeated aiohttp's text and named no one: found by exploratory testing.)"""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(PROC, "net", table), encoding="ascii") as rows:
                next(rows, None)  # (the header)
                for row in rows:
                    fields = row.split()
                    # local_address is ADDRESS:PORT in hex; st 0A is LISTEN; the 10th field the socket's inode
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        except (OSError, ValueError):
            continue
    if not inodes:
        return None
    try:
        pids = [name for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = os.path.join(PROC, pid, "fd")
        try:
            held = any(os.readlink(os.path.join(fd_dir, fd)) in inodes for fd in os.listdir(fd_dir))
        except OSError:  # (another user's process, or one gone meanwhile)
            continue
        if held:
            try:
                with open(os.path.join(PROC, pid, "cmdline"), "rb") as raw:
                    command = raw.read(4096).rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                command = ""
            return f"pid {pid}: {command}" if command else f"pid {pid}"
    return None
