"""The supervisor of one local attempt: it runs the routine, and its outcome survives the launcher.

The local backend starts one supervisor per attempt (`python -I -S -c "...import local_supervisor..."
/path/to/local_supervisor.py ...`: imported from its cached bytecode, hrwsi.backends.local.SUPERVISOR_ARGV;
it also runs as `python -I -S local_supervisor.py ...` or `python -m hrwsi.backends.local_supervisor`),
in a session of its own, with the routine's environment and the job log as its stdout and stderr. It
needs nothing of the launcher and imports only the standard library's smallest modules: a supervisor
starts for every attempt, so its start-up is paid once per job. Arguments are read by hand, the
routine is started with `os.posix_spawnp` and the outcome written as JSON by a few lines of its own
(argparse, subprocess, dataclasses and json with the `re` it loads took 45 of the 60-70 ms of CPU a
supervisor took to start, 2026-12-02; a three-step chain of 900 one-line routines spent most of its
CPU starting supervisors). Signals come from `_signal`, times from `time` (2026-12-05: with the
bytecode cached, a supervisor of `/bin/true` took 15.6 ms of CPU instead of 28). In the attempt's
directory (beside `output/` and `manifest.json`) it keeps:

- `supervisor.lock`: held (flock, exclusive) for as long as the supervisor lives; holds its pid.
  Held means "the attempt runs". The lock dies with the process, whatever kills it.
- `started.json`: written once, before the routine starts. An attempt starts at most once: a
  supervisor that finds it (or an outcome, or a tombstone) refuses to run. With a log cap it says
  the cap (`log_cap`) and the log's size when the routine started (`log_base`): where a cut writes
  its line, for `hrwsi logs --follow`.
- `exit.json`: the outcome (exit code, signal, times, timed out, stopped), written atomically
  (temporary file, then rename) after every process of the attempt has ended, over room kept for it
  before the routine started (`keep_room_for_outcome`): a routine that fills its storage leaves its
  outcome written. A directory that takes none of these files: exit status 74, nothing written.
- `tombstone.json`: written by whoever adopts the attempt and finds it neither running nor finished
  (its launcher died before starting it). It is written under the lock, so a supervisor started late
  (a paused launcher that resumes) finds it and refuses: no attempt runs after it was recorded lost.

With `--log-cap BYTES` (the launcher passes HRWSI_JOB_LOG_MAX_BYTES, 100 MiB by default) the routine's
stdout and stderr are one pipe the supervisor reads into the log (CappedLog): past the cap the log
keeps the routine's first quarter and its most recent output, with one line where bytes were dropped
saying how many, and ends with a line saying what it kept; the pipe is always read, so the routine
never blocks nor dies because of the cap. (Nomad rotates a task's log, MaxFiles x MaxFileSizeMB,
keeping only its most recent part.) Without the option the routine writes the log itself, as before.

The supervisor is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process of the routine that
detaches (double fork, setsid) is re-parented to it, not to init, so on timeout, on a stop request
(SIGTERM, SIGINT, SIGHUP) and when the routine's main process ends, it finds and stops the attempt's
whole process tree: SIGTERM, a grace period, then SIGKILL until nothing is left.

`settle(attempt_dir)` is what an adopter calls: it says whether the attempt runs, how it ended, or
tombstones it. Linux only for the subreaper and the process tree read from /proc; elsewhere the
supervisor stops the routine's process group.
"""

# (No `from __future__ import annotations`: the `__future__` module is an import of its own, and
# every annotation here is valid as it runs on Python 3.11.)
import ctypes
import errno
import fcntl
import os
import select
import sys
import time

try:
    # The C module that `signal` wraps. `signal` turns its numbers into enums, and `enum`, with the
    # functools and collections it loads, was a third of a supervisor's start-up: `python -I -S` with
    # the imports as they were took 19 ms of CPU, 9 ms a bare interpreter; 11 ms without signal,
    # datetime and collections (60 starts each, 2026-12-05).
    import _signal as signals
except ImportError:  # (an interpreter without it: the same functions, with enums)
    import signal as signals

if __package__:  # imported as hrwsi.backends.local_supervisor (the launcher, `python -m`)
    from hrwsi.backends.ascii_decimal import ascii_decimal
else:  # the local backend's `-c "... import local_supervisor"`, which puts its directory on sys.path, or
    # `python -I -S local_supervisor.py`, which does not (-I leaves a script's directory off); hrwsi may not be
    # importable either way (-I -S)
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
        sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from ascii_decimal import ascii_decimal

LOCK_FILE = "supervisor.lock"
STARTED_FILE = "started.json"
EXIT_FILE = "exit.json"
TOMBSTONE_FILE = "tombstone.json"
# The supervisor did not run the routine (tombstoned, started before, or another process holds the
# attempt): EX_TEMPFAIL. When it did run it, it exits 0 and the outcome is in exit.json.
REFUSED_EXIT_CODE = 75
# What started.json and exit.json say of the protocol between launcher and supervisor. 1 (written by
# none: their documents have no "protocol"): before log caps. 2: `--log-cap BYTES` (the launcher passes
# it; without it a supervisor logs as version 1 did), and exit.json may say log_bytes,
# log_dropped_bytes and log_failed_bytes. Every field added since 1 is optional to whoever reads them:
# a launcher follows and settles an attempt of either version. started.json's log_cap and log_base (with a
# cap) are optional too: `hrwsi logs --follow` reads them, and so are exit.json's ended_elapsed_s and clock
# (`_ended_on_this_boot`).
PROTOCOL = 2
CANNOT_START_EXIT_CODE = 127
# The attempt's directory took none of the supervisor's files (its storage full or read-only): started.json
# unwritten, nothing ran; exit.json unwritten, the routine ran and its outcome is lost (EX_IOERR). The launcher
# records either as lost to the storage (storage_unavailable), retried and not charged to the routine.
OUTCOME_UNWRITTEN_EXIT_CODE = 74
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = {signals.SIGTERM: "SIGTERM", signals.SIGINT: "SIGINT", signals.SIGHUP: "SIGHUP"}


# The clock a jump of the host's wall clock does not move and that counts a suspended host's sleep, as the launcher's
# (hrwsi.database_clock.elapsed).
_ELAPSED_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def elapsed_clock() -> str | None:
    """The boot and time namespace `_ELAPSED_CLOCK` belongs to: its readings compare only under the same (None: cannot
    tell)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
    except OSError:
        return None
    try:
        namespace = os.readlink("/proc/self/ns/time")
    except OSError:
        namespace = "-"
    return f"{boot} {namespace}" if boot else None


def _ended_on_this_boot() -> dict:
    """When the supervisor ended by the clock that only goes forward (`ended_elapsed_s`), and the boot and time
    namespace that clock belongs to (`clock`): a launcher reading the outcome later on the same boot tells its end
    from its own reading of that clock, whatever the host's wall clock did meanwhile. finished_at, by the wall clock,
    was corrected by the offset measured when the outcome was recorded: an attempt that ended while its launcher was
    down, on a host whose clock was then off by another amount, was recorded as ending at another time, after the
    time it was seen even (found by review). Empty where the boot cannot be told (then finished_at serves)."""
    clock = elapsed_clock()
    return {} if clock is None else {"ended_elapsed_s": time.clock_gettime(_ELAPSED_CLOCK), "clock": clock}


def _now() -> str:
    """Now in UTC, as `datetime.now(UTC).isoformat()` writes it (with its microseconds always):
    `datetime` costs the supervisor 2 ms of CPU to import at every start."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanoseconds // 1000:06d}+00:00"


def _say(message: str) -> None:
    """One line in the job log, marked as the supervisor's, if its storage takes it: one write(2) to
    the log's descriptor, whose failure (a full disk, a file size limit) is not the attempt's. (Through
    sys.stderr, a failed write raised out of the supervisor, and stayed in its buffer to fail again as
    the interpreter ended: the supervisor died without writing the attempt's outcome, found by review.)"""
    try:
        os.write(2, f"[hrwsi supervisor {_now()}] {message}\n".encode(errors="backslashreplace"))
    except OSError:
        pass


# JSON's escapes for the characters it may not hold as they are; every other character outside
# printable ASCII is written as \uXXXX, as json.dumps does by default (ensure_ascii).
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_string(text: str) -> str:
    parts = ['"']
    for character in text:
        if " " <= character <= "~" and character not in '"\\':
            parts.append(character)
        elif character in _JSON_ESCAPES:
            parts.append(_JSON_ESCAPES[character])
        elif ord(character) < 0x10000:
            parts.append(f"\\u{ord(character):04x}")
        else:  # outside the basic plane: a surrogate pair, as JSON spells it
            code = ord(character) - 0x10000
            parts.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    parts.append('"')
    return "".join(parts)


def _json_value(value: object) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value - value == 0 else "null"  # NaN and infinities have no JSON form
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_string(str(k))}: {_json_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json_atomically(path: str, document: dict) -> None:
    """Whole or not at all: a reader never sees half a file. (Written without the json module, whose
    import the supervisor cannot afford: the documents are flat, of strings, numbers, booleans and
    None, and a nested dict at most; json.loads reads them back, tests/unit/test_local_supervisor.py.)"""
    text = _json_value(document)  # before any file: a document it cannot write leaves nothing behind
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(temporary, path)


# The room kept for the outcome before the routine starts (OUTCOME_ROOM_BYTES): an outcome is a few hundred
# bytes, its error text bounded (a routine's name and an OSError's).
OUTCOME_ROOM_BYTES = 8192


def keep_room_for_outcome(path: str) -> str:
    """The outcome's temporary file, written now to OUTCOME_ROOM_BYTES (blanks), before the routine starts; its
    path. Why: a routine that fills its storage (products written to the last block, then exit 0) left no room
    for exit.json, the supervisor died writing it, and the launcher recorded the attempt lost and ran it again:
    its finished products were left unregistered, taking the very room that was missing (found by fault
    injection, a 2 MiB tmpfs as the data root). The blocks written now are overwritten in place at the end
    (write_outcome), which takes no new block where a file's blocks are its own (ext4, XFS, tmpfs; not on
    copy-on-write storage such as btrfs or ZFS, where the outcome may still fail to be written: then the
    supervisor exits OUTCOME_UNWRITTEN_EXIT_CODE)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        room = b" " * OUTCOME_ROOM_BYTES
        while room:
            room = room[os.write(descriptor, room):]
    finally:
        os.close(descriptor)
    return temporary


def write_outcome(path: str, room: str | None, document: dict) -> None:
    """exit.json, whole or not at all, written over the room kept for it (keep_room_for_outcome) and cut to its
    length (a cut frees blocks, it takes none); without that room, as any other file (write_json_atomically)."""
    text = _json_value(document).encode("ascii")
    if room is None or len(text) > OUTCOME_ROOM_BYTES:
        write_json_atomically(path, document)
        return
    descriptor = os.open(room, os.O_WRONLY)  # (no O_TRUNC: truncating would give the kept blocks back)
    try:
        while text:
            text = text[os.write(descriptor, text):]
        os.ftruncate(descriptor, os.lseek(descriptor, 0, os.SEEK_CUR))
    finally:
        os.close(descriptor)
    os.replace(room, path)


def read_json(path: str) -> dict | None:
    import json  # the adopter's side (the launcher, where json is loaded already), never the supervisor's

    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # unreadable: say so rather than guess
        return {"unreadable": f"{path}: {error}"}


def _try_lock(attempt_dir: str) -> int | None:
    """The attempt's lock, taken without waiting; None when another process holds it."""
    descriptor = os.open(os.path.join(attempt_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return descriptor


def holder_pid(attempt_dir: str) -> int | None:
    """The pid the running supervisor wrote into its lock file (None if unknown)."""
    try:
        with open(os.path.join(attempt_dir, LOCK_FILE)) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return ascii_decimal(text)


# -- what an adopter sees ----------------------------------------------------------------------------
class Settled:
    """The state of an attempt as an adopter finds it.

    state: "running" (a supervisor holds the lock; `pid`), "finished" (`outcome`: exit.json),
    "tombstoned" (it never ran and never will; `started` when a supervisor had started it and died
    without an outcome). (A class by hand, not a dataclass nor a named tuple: importing dataclasses
    cost the supervisor 27 ms at every start, collections 1.7 ms.)"""

    __slots__ = ("state", "pid", "outcome", "started")

    def __init__(self, state: str, pid: int | None = None, outcome: dict | None = None,
                 started: dict | None = None):
        self.state, self.pid, self.outcome, self.started = state, pid, outcome, started

    def __repr__(self) -> str:
        return f"Settled(state={self.state!r}, pid={self.pid!r}, outcome={self.outcome!r}, started={self.started!r})"


def settle(attempt_dir: str, tombstone_reason: str) -> Settled:
    """Running, finished, or else tombstoned now: under the lock, so that no supervisor starts the
    attempt afterwards. Creates the attempt directory if it does not exist yet (the launcher died
    before preparing it): the tombstone must be there before a late launcher prepares and starts it."""
    os.makedirs(attempt_dir, exist_ok=True)
    descriptor = _try_lock(attempt_dir)
    if descriptor is None:
        return Settled("running", pid=holder_pid(attempt_dir))
    try:
        outcome = read_json(os.path.join(attempt_dir, EXIT_FILE))
        if outcome is not None:
            return Settled("finished", outcome=outcome)
        started = read_json(os.path.join(attempt_dir, STARTED_FILE))
        tombstone = os.path.join(attempt_dir, TOMBSTONE_FILE)
        if not os.path.exists(tombstone):
            write_json_atomically(tombstone, {"reason": tombstone_reason, "at": _now(), "by_pid": os.getpid(),
                                              "started_before": started})
        return Settled("tombstoned", started=started)
    finally:
        os.close(descriptor)  # releases the lock


def is_supervisor_of(pid: int, attempt_dir: str) -> bool:
    """True when `pid` is a supervisor of this attempt (not a recycled pid of something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(attempt_dir) in argv and any(a.endswith(b"local_supervisor.py") or
                                                    a == b"hrwsi.backends.local_supervisor" for a in argv)


# -- the process tree --------------------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    """Live (not zombie) processes below `root`: each one's children as the kernel lists them
    (/proc/PID/task/TID/children), so that what it costs follows the attempt's own tree. Where the
    kernel keeps no such lists (built without CONFIG_PROC_CHILDREN), a scan of every process.

    Why not always the scan: it reads every process of the machine, and a supervisor asks at the end
    of every attempt. With 68 processes on the machine it took 0.9 ms of CPU (the lists: 0.015 ms);
    in the three-step chain, where the machine runs the other attempts' supervisors and routines and
    the engine's processes and sessions, about 5 % of what each attempt cost, and the more processes
    an engine kept, the more its attempts paid (2026-12-05)."""
    children_of, stat_of = (_children_of, _stat) if KERNEL_LISTS_CHILDREN else _every_process()
    found: list[int] = []
    seen = {root}  # (each pid once: lists read at different moments never make the walk go round)
    pending = [root]
    while pending:
        parent = pending.pop()
        for pid in children_of(parent):
            state, its_parent = stat_of(pid) or (None, None)
            if its_parent != parent or pid in seen:
                continue  # gone since its parent's list was read, or its pid now another process's
            seen.add(pid)
            if state != b"Z":  # (a zombie is not live)
                found.append(pid)
            pending.append(pid)
    return found


# Whether this kernel keeps a list of each process's children (one stat, as the module loads).
KERNEL_LISTS_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _children_of(pid: int) -> list[int]:
    """The children of every thread of `pid` (a child belongs to the thread that started it); none
    when it is gone."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", "rb") as handle:
                children.extend(int(child) for child in handle.read().split())
        except OSError:  # the thread ended meanwhile
            continue
    return children


def _stat(pid: int) -> tuple[bytes, int] | None:
    """A process's state letter (b"Z" for a zombie) and its parent's pid; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return _state_and_parent(handle.read())
    except OSError:
        return None


def _state_and_parent(stat: bytes) -> tuple[bytes, int]:
    """From /proc/PID/stat: the fields after "PID (name) " are the state, then the parent's pid."""
    fields = stat[stat.rindex(b")") + 2:].split(maxsplit=2)
    return fields[0], int(fields[1])


def _every_process():
    """Every process's children and state from one scan of /proc: the look-ups `descendants` walks."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[bytes, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    for entry in entries:
        pid = ascii_decimal(entry)
        if pid is None:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stats[pid] = _state_and_parent(handle.read())
        except OSError:
            continue
        children.setdefault(stats[pid][1], []).append(pid)
    return (lambda pid: children.get(pid, [])), stats.get


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int | None, number: int) -> None:
    if pgid is None:
        return
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass


# -- the routine's output, capped ---------------------------------------------------------------------
# Below this a cap is refused (the head, the marker and two halves of a tail must fit in it).
SMALLEST_LOG_CAP = 4096
# Room kept for the line that says where bytes were dropped (it is rewritten at each cut).
MARKER_ROOM = 512
# Reads of the routine's pipe: as large as what the pipe holds, in one system call each.
READ_SIZE = 1 << 20
# How far a cut looks for a line's end, so that the head ends and the tail starts at a line.
LINE_SEARCH = 1 << 16


def _is_regular_file(descriptor: int) -> bool:
    return (os.fstat(descriptor).st_mode & 0o170000) == 0o100000  # (stat.S_ISREG, without importing stat)


class CappedLog:
    """The job log as the routine writes it through a pipe, kept to about `cap` bytes: its head (the
    first quarter: what the routine set out to do) and its most recent output (the rest: what explains
    how it ended), with one line where bytes were dropped saying how many.

    Bytes are appended to the log (`out`, the supervisor's own stdout, opened for appending by the
    launcher) as they come, in large reads and writes; no per-line work. When the log reaches the cap,
    it is cut in place: the line at the head's end says how many bytes were dropped so far, the most
    recent half of the tail's room is copied after it (copy_file_range: in the kernel), and the file is
    truncated there. So the log on disk is always readable as it is (`hrwsi logs --follow` and the
    dashboard read it while the routine runs), never more than about `cap` bytes, and each byte is
    copied at most once more. A write that fails (a full disk) drops its bytes and is counted: the
    routine's pipe is always read, so a routine never blocks nor dies because its log is capped.

    A cut that fails (rewriting in place takes new blocks on copy-on-write storage and under quotas:
    ENOSPC from pwrite or copy_file_range, found by review) raises nothing: the log is truncated to its
    head and one line saying why the rest is not kept, the cuts stop, and every later byte is dropped
    and counted as failed. Its error had left the supervisor, which died with the log half cut and no
    outcome: the attempt was recorded lost and retried, again and again while the disk stayed full."""

    def __init__(self, out: int, cap: int):
        self.out = out
        # Appended to, whatever opened it (the launcher does; a shell's `>` does not): a cut truncates the
        # file under this descriptor, and what comes next must go to its new end, not leave a hole.
        fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) | os.O_APPEND)
        self.cap = cap
        self.head = cap // 4
        self.keep = (cap - self.head - MARKER_ROOM) // 2  # the tail kept at a cut (at least)
        self.base = os.fstat(out).st_size  # what the log held before the routine started
        self.size = self.base  # the log's size as this process last knew it
        self.head_end: int | None = None  # where the head ends, once cut
        self.marker_length = 0
        self.written = 0  # bytes the routine wrote
        self.dropped = 0  # bytes of them no longer in the log
        self.failed = 0  # bytes a write could not keep (full or failing storage)
        self.failure: str | None = None
        self.cut_failed = False  # a cut failed: the log keeps its head, and the routine's output is dropped
        self._rewriter: int | None = None  # the log opened again, not for appending (pwrite, truncate)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.cut_failed:
            self.failed += len(data)
            return
        try:
            view = memoryview(data)
            while view:
                count = os.write(self.out, view)
                self.size += count
                view = view[count:]
        except OSError as error:
            self.failed += len(view)
            self.failure = self.failure or (error.strerror or str(error))
            return
        if self.size - self.base >= self.cap:
            try:
                self.size = os.fstat(self.out).st_size  # (with the supervisor's own lines)
                if self.size - self.base >= self.cap:
                    self._cut()
            except OSError as error:
                self._stop_cutting(error)

    def _find_head_end(self) -> int:
        """Where the head ends: after the last whole line in the cap's first quarter (read through the
        rewriter: the log's own descriptor may be open for writing only)."""
        end = self.base + self.head
        if self._rewriter is None:
            return end
        start = max(self.base, end - LINE_SEARCH)
        found = os.pread(self._rewriter, end - start, start).rfind(b"\n")
        return start + found + 1 if found >= 0 else end

    def _cut(self) -> None:
        if self._rewriter is None:  # (pwrite on a descriptor opened for appending appends, and
            # copy_file_range refuses one)
            self._rewriter = os.open(f"/proc/self/fd/{self.out}", os.O_RDWR | os.O_CLOEXEC)
        rewriter, size = self._rewriter, self.size
        if self.head_end is None:  # the first cut
            self.head_end = self._find_head_end()
        kept_from = size - self.keep  # the kept tail starts at a line, if one starts soon enough
        found = os.pread(rewriter, min(LINE_SEARCH, self.keep), kept_from).find(b"\n")
        if found >= 0:
            kept_from += found + 1
        dropped = self.dropped + kept_from - (self.head_end + self.marker_length)
        marker = (f"[hrwsi supervisor {_now()}] the log reached its cap of {self.cap} bytes "
                  f"(HRWSI_JOB_LOG_MAX_BYTES): {dropped} bytes of the routine's output were dropped here; "
                  "above: the start of its output, below: its most recent output\n").encode()[:MARKER_ROOM]
        os.pwrite(rewriter, marker, self.head_end)
        _copy_within(rewriter, kept_from, self.head_end + len(marker), size - kept_from)
        os.ftruncate(rewriter, self.head_end + len(marker) + size - kept_from)
        self.dropped, self.marker_length = dropped, len(marker)  # (once the cut is whole: _stop_cutting counts)
        self.size = self.head_end + len(marker) + size - kept_from

    def _stop_cutting(self, error: OSError) -> None:
        """A cut failed: keep the head and one line saying why nothing more is kept; cut no more."""
        self.cut_failed = True
        why = error.strerror or str(error)
        self.failure = f"the log could not be cut at its cap ({why}): it keeps its start only"
        try:
            if self.head_end is None:
                try:
                    self.head_end = self._find_head_end()
                except OSError:
                    self.head_end = self.base + self.head
            os.ftruncate(self.out, self.head_end)  # (frees what the cut needed, whatever it left)
        except OSError as also:
            self.failure = (f"the log could not be cut at its cap ({why}) nor truncated to its start "
                            f"({also.strerror or also}): what it holds past its cap is not known")
            return
        # Bytes the log no longer holds: those of earlier cuts stay dropped; the rest failed.
        self.failed = max(self.failed, self.written - self.dropped - (self.head_end - self.base))
        self.marker_length = 0
        self.size = self.head_end
        marker = (f"[hrwsi supervisor {_now()}] the log reached its cap of {self.cap} bytes "
                  f"(HRWSI_JOB_LOG_MAX_BYTES) and could not be cut ({why}): the routine's output is not kept "
                  f"from here on ({self.dropped + self.failed} bytes so far; {self.dropped} of them dropped "
                  "by earlier cuts); above: the start of its output\n").encode()[:MARKER_ROOM]
        try:
            self.size += os.write(self.out, marker)  # (appended: at the head's end)
            self.marker_length = len(marker)
        except OSError:
            pass

    def summary(self) -> str | None:
        """The line that ends a capped log (None when nothing was dropped)."""
        said = []
        if self.dropped and not self.cut_failed:
            said.append(f"the routine wrote {self.written} bytes; its log kept the start and the most recent "
                        f"(cap {self.cap} bytes): {self.dropped} bytes were dropped after its first "
                        f"{self.head_end - self.base} bytes, where a line says so")
        elif self.cut_failed:
            said.append(f"the routine wrote {self.written} bytes; its log reached its cap of {self.cap} bytes and keeps "
                        f"its start only, where a line says so ({self.dropped} bytes dropped by the cuts before)")
        if self.failed:
            said.append(f"{self.failed} bytes of the routine's output could not be written to its log: {self.failure}")
        return "; ".join(said) or None

    def close(self) -> None:
        if self._rewriter is not None:
            try:
                os.close(self._rewriter)
            except OSError:  # (a deferred write error on network storage: the log's, not the attempt's)
                pass
            self._rewriter = None


def _copy_within(descriptor: int, source: int, target: int, count: int) -> None:
    """Copy `count` bytes of a file from `source` to `target` (not overlapping): in the kernel where it
    can, else through a buffer, a megabyte at a time."""
    try:
        while count > 0:
            copied = os.copy_file_range(descriptor, descriptor, count, source, target)
            if copied == 0:
                break
            source, target, count = source + copied, target + copied, count - copied
    except (AttributeError, OSError):
        pass
    while count > 0:
        data = os.pread(descriptor, min(count, READ_SIZE), source)
        if not data:
            return
        os.pwrite(descriptor, data, target)
        source, target, count = source + len(data), target + len(data), count - len(data)


class Supervisor:
    def __init__(self, attempt_dir: str, argv: list[str], *, timeout_s: float | None, grace_s: float,
                 cwd: str | None, log_cap: int | None = None):
        self.attempt_dir = attempt_dir
        self.argv = argv
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.killed = False  # (stop_tree: SIGKILL was needed after the grace period)
        self.cwd = cwd
        self.routine: int | None = None  # the routine's pid, which is also its process group's
        self.routine_status: int | None = None  # its wait status, once collected
        self.stop_requested: int | None = None
        # With a cap, the routine writes to a pipe this process reads into the log (CappedLog); without
        # one, or when the log is not a file, it writes to the log itself, as before caps.
        self.log = CappedLog(1, log_cap) if log_cap and _is_regular_file(1) else None
        self.output: int | None = None  # the pipe's end this process reads, while it is open
        self._wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(wakeup_write, False)
        signals.set_wakeup_fd(wakeup_write)
        signals.signal(signals.SIGCHLD, lambda *_: None)  # only to wake select() through the wakeup fd
        for number in STOP_SIGNALS:
            signals.signal(number, self._on_stop)

    def _on_stop(self, number, _frame) -> None:
        if self.stop_requested is None:
            self.stop_requested = number

    def reap(self) -> None:
        """Collect every ended child (the routine, and orphans re-parented to this subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.routine is not None and pid == self.routine:
                self.routine_status = status

    def wait(self, seconds: float) -> None:
        """Until a signal comes, the routine writes (what it wrote is logged), or `seconds` pass."""
        watched = [self._wakeup_read] if self.output is None else [self._wakeup_read, self.output]
        ready, _, _ = select.select(watched, [], [], max(0.0, seconds))
        if self.output is not None and self.output in ready:
            self.read_output()
        if self._wakeup_read in ready:
            try:
                while os.read(self._wakeup_read, 512):
                    pass
            except BlockingIOError:
                pass

    def read_output(self, reads: int = 16) -> None:
        """Log what the routine wrote: up to `reads` reads (a routine that never stops writing does not
        keep the supervisor from its timeout), until the pipe is empty or closed."""
        for _ in range(reads):
            try:
                data = os.read(self.output, READ_SIZE)
            except BlockingIOError:
                return
            if not data:  # every writer closed it
                os.close(self.output)
                self.output = None
                return
            self.log.write(data)

    def finish_output(self) -> None:
        """After the attempt's processes have all ended: log what is left in the pipe, close it.

        A writer outside the attempt's tree may still hold the pipe (a process the routine passed its
        descriptor to, or any descendant where there is no subreaper): once it is empty the pipe is let
        go, and one that stays readable is read for the grace period at most (found by review: a writer
        that never paused kept the supervisor reading, with no outcome, for as long as it wrote)."""
        deadline = time.monotonic() + self.grace_s
        while self.output is not None:
            before = self.output
            self.read_output(reads=1)
            if self.output is not before:
                break  # every writer closed it
            if not select.select([self.output], [], [], 0)[0]:
                os.close(self.output)  # (a writer outside the attempt's tree holds it open: let go)
                self.output = None
            elif time.monotonic() >= deadline:
                os.close(self.output)  # (its writer gets EPIPE, or SIGPIPE)
                self.output = None
                _say(f"a process outside the attempt still wrote to the routine's output {self.grace_s:g} s after "
                     "the attempt's processes had ended: stopped reading it")
        summary = self.log.summary()
        if summary:
            _say(summary)
        self.log.close()

    def live_processes(self) -> list[int]:
        return descendants(os.getpid())

    def stop_tree(self) -> int:
        """Stop every process of the attempt: SIGTERM, then SIGKILL after the grace period, until none
        is left (a process that forks meanwhile is caught by the next round). Returns how many there were."""
        pgid = self.routine
        alive = self.live_processes()
        count = len(alive)
        if not alive:
            return 0
        _signal_group(pgid, signals.SIGTERM)
        for pid in alive:
            _signal(pid, signals.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while alive and time.monotonic() < deadline:
            self.wait(0.05)
            self.reap()
            alive = self.live_processes()
        rounds = 0
        self.killed = bool(alive)  # (its processes outlived SIGTERM by the grace period: said in the outcome)
        while alive:
            rounds += 1
            _signal_group(pgid, signals.SIGKILL)
            for pid in alive:
                _signal(pid, signals.SIGKILL)
            self.wait(0.02)
            self.reap()
            alive = self.live_processes()
            if rounds % 500 == 0:
                _say(f"{len(alive)} process(es) of the attempt still resist SIGKILL: {alive[:10]}")
        return count

    def spawn(self) -> int:
        """Start the routine in a session (and process group) of its own, stdin from /dev/null, in
        `cwd`, with SIGPIPE and SIGXFSZ back to their defaults (Python ignores them; what
        subprocess.Popen does too). posix_spawn reports a program that cannot be executed as OSError
        here, an empty program name as ValueError. The supervisor's own descriptors (its lock, its
        wake-up pipe) are close-on-exec."""
        if self.cwd:
            os.chdir(self.cwd)  # the routine's working directory: posix_spawn has no option for it
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
        if self.log is None:
            return os.posix_spawnp(self.argv[0], self.argv, os.environ, setsid=True,
                                   setsigdef=(signals.SIGPIPE, signals.SIGXFSZ), file_actions=actions)
        # Its stdout and stderr: one pipe (their lines interleave as they did in the file). Both ends are
        # close-on-exec; dup2 makes the routine's copies its own.
        self.output, writer = os.pipe()
        try:
            return os.posix_spawnp(self.argv[0], self.argv, os.environ, setsid=True,
                                   setsigdef=(signals.SIGPIPE, signals.SIGXFSZ),
                                   file_actions=[*actions, (os.POSIX_SPAWN_DUP2, writer, 1),
                                                 (os.POSIX_SPAWN_DUP2, writer, 2)])
        finally:
            os.close(writer)
            os.set_blocking(self.output, False)

    def run(self) -> dict:
        # run_s: how long it ran, by the clock a jump of the host's clock does not move; finished_at less
        # started_at is off by any such jump while it ran (the launcher reads its start as finished_at - run_s).
        started = _now()
        begun = time.monotonic()
        if self.stop_requested is not None:  # asked to stop before anything started
            return {"exit_code": None, "signal": None, "started_at": started, "finished_at": _now(),
                    "run_s": time.monotonic() - begun, "timed_out": False, "stopped": True, "error": None}
        try:
            self.routine = self.spawn()
        except (OSError, ValueError) as error:
            if self.output is not None:
                os.close(self.output)
                self.output = None
            # (ValueError: an empty program name, ARRAY[''] set by hand: the supervisor died without an
            # outcome, and each attempt was recorded lost, retried without limit)
            return {"exit_code": CANNOT_START_EXIT_CODE, "signal": None, "started_at": started,
                    "finished_at": _now(), "run_s": time.monotonic() - begun, "timed_out": False, "stopped": False,
                    "error": f"cannot start the routine {self.argv[0]!r}: {error}"}
        timed_out = False
        while True:
            self.reap()
            if self.routine_status is not None:
                break
            if self.stop_requested is not None:
                break
            if self.timeout_s is not None and time.monotonic() - begun >= self.timeout_s:
                timed_out = True
                break
            remaining = 1.0 if self.timeout_s is None else self.timeout_s - (time.monotonic() - begun)
            self.wait(min(1.0, remaining))
        if timed_out:
            _say(f"the routine ran longer than its timeout of {self.timeout_s:g} s: stopping its processes")
        elif self.stop_requested is not None:
            _say(f"asked to stop ({STOP_SIGNALS[self.stop_requested]}): stopping the routine's processes")
        # Stopped on request: the request came before the routine's main process ended.
        stopped = self.routine_status is None and self.stop_requested is not None and not timed_out
        leftovers = self.stop_tree()
        self.reap()
        if self.routine_status is None:  # a zombie not collected yet: collect it now
            _, status = os.waitpid(self.routine, 0)
            self.routine_status = status
        code = os.waitstatus_to_exitcode(self.routine_status)  # as subprocess says it: -N when killed by N
        if leftovers and not timed_out and not stopped:
            _say(f"the routine ended but left {leftovers} process(es) running: stopped them")
        capped = {}
        if self.log is not None:
            self.finish_output()
            capped = {"log_bytes": self.log.written, "log_dropped_bytes": self.log.dropped,
                      "log_failed_bytes": self.log.failed}
        return {"protocol": PROTOCOL, **capped, "exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
                "started_at": started, "finished_at": _now(), "run_s": time.monotonic() - begun,
                "timed_out": timed_out, "timeout_s": self.timeout_s,
                "stopped": stopped,
                "routine_pid": self.routine, "leftover_processes": leftovers, "error": None,
                # (asked to stop, it ignored SIGTERM and was killed once the grace period was over)
                **({"ignored_stop_s": self.grace_s} if stopped and self.killed else {})}


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _refusal(attempt_dir: str) -> str | None:
    """Why this attempt must not start (None: it may)."""
    for name, why in ((TOMBSTONE_FILE, "it was recorded as never started (tombstone) by the launcher that "
                                       "adopted it"),
                      (EXIT_FILE, "it already ran to its end"),
                      (STARTED_FILE, "it was started once already")):
        if os.path.exists(os.path.join(attempt_dir, name)):
            return why
    return None


def supervise(attempt_dir: str, argv: list[str], *, timeout_s: float | None, grace_s: float,
              cwd: str | None, log_cap: int | None = None) -> int:
    descriptor = _try_lock(attempt_dir)
    if descriptor is None:
        _say(f"refusing to run the attempt in {attempt_dir}: another process holds it")
        return REFUSED_EXIT_CODE
    refusal = _refusal(attempt_dir)
    if refusal is not None:
        _say(f"refusing to run the attempt in {attempt_dir}: {refusal}")
        return REFUSED_EXIT_CODE
    exit_path = os.path.join(attempt_dir, EXIT_FILE)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        room = keep_room_for_outcome(exit_path)
    except OSError as error:
        # Nothing started: the attempt's directory takes no file (a full or read-only storage). Said in the log if
        # it takes that, and by the exit status, which the launcher reads as the storage's fault, not the routine's.
        _say(f"refusing to run the attempt in {attempt_dir}: its directory takes no file ({error.strerror or error}); "
             "nothing ran")
        return OUTCOME_UNWRITTEN_EXIT_CODE
    if not become_subreaper():
        _say("cannot become a child subreaper (not Linux?): processes that leave the routine's process "
             "group may outlive a timeout or a stop")
    supervisor = Supervisor(attempt_dir, argv, timeout_s=timeout_s, grace_s=grace_s, cwd=cwd, log_cap=log_cap)
    started = {"supervisor_pid": os.getpid(), "started_at": _now(), "protocol": PROTOCOL}
    if supervisor.log is not None:  # (where its cuts go: `hrwsi logs --follow` reads it, whatever its own cap says)
        started.update(log_cap=supervisor.log.cap, log_base=supervisor.log.base)
    try:
        write_json_atomically(os.path.join(attempt_dir, STARTED_FILE), started)
    except OSError as error:
        _say(f"refusing to run the attempt in {attempt_dir}: its started.json could not be written "
             f"({error.strerror or error}); nothing ran")
        return OUTCOME_UNWRITTEN_EXIT_CODE
    outcome = supervisor.run()
    outcome.update(_ended_on_this_boot())
    if outcome.get("error"):
        _say(outcome["error"])
    try:
        write_outcome(exit_path, room, outcome)
    except OSError as error:  # (past the room kept for it, or on copy-on-write storage)
        _say(f"the attempt's outcome could not be written ({error.strerror or error}): exit code "
             f"{outcome.get('exit_code')}, signal {outcome.get('signal')}")
        return OUTCOME_UNWRITTEN_EXIT_CODE
    return 0  # the lock is released when this process ends, after the outcome is on disk


USAGE = ("usage: local_supervisor.py --attempt-dir DIR [--timeout SECONDS] [--grace SECONDS] [--cwd DIR] "
         "[--log-cap BYTES] -- COMMAND [ARG ...]")
OPTIONS = ("--attempt-dir", "--timeout", "--grace", "--cwd", "--log-cap")


class UsageError(Exception):
    pass


def parse_arguments(arguments: list[str]) -> tuple[dict[str, str], list[str]]:
    """The options (each takes a value, as `--name value` or `--name=value`) and the routine's argv:
    what follows `--` or the first word that is not an option. (Read by hand: importing argparse cost
    the supervisor 12 ms at every start.)"""
    options: dict[str, str] = {}
    index = 0
    while index < len(arguments):
        word = arguments[index]
        if word == "--":
            return options, arguments[index + 1:]
        if not word.startswith("-"):  # the command, without `--` before it
            return options, arguments[index:]
        name, has_value, value = word.partition("=")
        if name not in OPTIONS:
            raise UsageError(f"unrecognized argument: {word}")
        if not has_value:
            index += 1
            if index >= len(arguments):
                raise UsageError(f"argument {name}: expected one value")
            value = arguments[index]
        options[name] = value
        index += 1
    raise UsageError("no routine command after --")


def _seconds(options: dict[str, str], name: str, default: float | None) -> float | None:
    if name not in options:
        return default
    try:
        return float(options[name])
    except ValueError:
        raise UsageError(f"argument {name}: not a number of seconds: {options[name]!r}") from None


def main(arguments: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if arguments is None else arguments
    if arguments[:1] in (["-h"], ["--help"]):
        print(f"{USAGE}\n\nRun one attempt of a routine under supervision (timeout and grace in seconds; "
              "no timeout by default, grace 5 s between SIGTERM and SIGKILL; the log capped at --log-cap "
              "bytes, keeping its start and its most recent output; no cap by default).")
        return 0
    try:
        options, command = parse_arguments(arguments)
        if "--attempt-dir" not in options:
            raise UsageError("the following arguments are required: --attempt-dir")
        if not command:
            raise UsageError("no routine command after --")
        timeout, grace = _seconds(options, "--timeout", None), _seconds(options, "--grace", 5.0)
        log_cap = _log_cap(options.get("--log-cap"))
    except UsageError as error:  # as argparse says it: the usage, the error, exit status 2
        sys.stderr.write(f"{USAGE}\nlocal_supervisor.py: error: {error}\n")
        return 2
    return supervise(os.path.abspath(options["--attempt-dir"]), command,
                     timeout_s=timeout if timeout and timeout > 0 else None, grace_s=grace,
                     cwd=options.get("--cwd"), log_cap=log_cap)


def _log_cap(text: str | None) -> int | None:
    if text is None or text.strip() == "0":
        return None  # (no option: as a supervisor before caps, which an older launcher may start)
    cap = ascii_decimal(text.strip())
    if cap is None or cap < SMALLEST_LOG_CAP:
        raise UsageError(f"argument --log-cap: not a number of bytes >= {SMALLEST_LOG_CAP} (or 0: none): {text!r}")
    return cap


if __name__ == "__main__":
    sys.exit(main())
