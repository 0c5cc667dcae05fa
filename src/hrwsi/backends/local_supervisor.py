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
  supervisor that finds it (or an outcome, or a tombstone) refuses to run.
- `exit.json`: the outcome (exit code, signal, times, timed out, stopped), written atomically
  (temporary file, then rename) after every process of the attempt has ended.
- `tombstone.json`: written by whoever adopts the attempt and finds it neither running nor finished
  (its launcher died before starting it). It is written under the lock, so a supervisor started late
  (a paused launcher that resumes) finds it and refuses: no attempt runs after it was recorded lost.

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

LOCK_FILE = "supervisor.lock"
STARTED_FILE = "started.json"
EXIT_FILE = "exit.json"
TOMBSTONE_FILE = "tombstone.json"
# The supervisor did not run the routine (tombstoned, started before, or another process holds the
# attempt): EX_TEMPFAIL. When it did run it, it exits 0 and the outcome is in exit.json.
REFUSED_EXIT_CODE = 75
CANNOT_START_EXIT_CODE = 127
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = {signals.SIGTERM: "SIGTERM", signals.SIGINT: "SIGINT", signals.SIGHUP: "SIGHUP"}


def _now() -> str:
    """Now in UTC, as `datetime.now(UTC).isoformat()` writes it (with its microseconds always):
    `datetime` costs the supervisor 2 ms of CPU to import at every start."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanoseconds // 1000:06d}+00:00"


def _say(message: str) -> None:
    """One line in the job log, marked as the supervisor's."""
    sys.stderr.write(f"[hrwsi supervisor {_now()}] {message}\n")
    sys.stderr.flush()


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
    return int(text) if text.isdigit() else None


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
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stats[int(entry)] = _state_and_parent(handle.read())
        except OSError:
            continue
        children.setdefault(stats[int(entry)][1], []).append(int(entry))
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


class Supervisor:
    def __init__(self, attempt_dir: str, argv: list[str], *, timeout_s: float | None, grace_s: float,
                 cwd: str | None):
        self.attempt_dir = attempt_dir
        self.argv = argv
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.cwd = cwd
        self.routine: int | None = None  # the routine's pid, which is also its process group's
        self.routine_status: int | None = None  # its wait status, once collected
        self.stop_requested: int | None = None
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
        ready, _, _ = select.select([self._wakeup_read], [], [], max(0.0, seconds))
        if ready:
            try:
                while os.read(self._wakeup_read, 512):
                    pass
            except BlockingIOError:
                pass

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
        return os.posix_spawnp(self.argv[0], self.argv, os.environ, setsid=True,
                               setsigdef=(signals.SIGPIPE, signals.SIGXFSZ),
                               file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])

    def run(self) -> dict:
        started = _now()
        begun = time.monotonic()
        if self.stop_requested is not None:  # asked to stop before anything started
            return {"exit_code": None, "signal": None, "started_at": started, "finished_at": _now(),
                    "timed_out": False, "stopped": True, "error": None}
        try:
            self.routine = self.spawn()
        except (OSError, ValueError) as error:
            # (ValueError: an empty program name, ARRAY[''] set by hand: the supervisor died without an
            # outcome, and each attempt was recorded lost, retried without limit)
            return {"exit_code": CANNOT_START_EXIT_CODE, "signal": None, "started_at": started,
                    "finished_at": _now(), "timed_out": False, "stopped": False,
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
        return {"exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
                "started_at": started, "finished_at": _now(), "timed_out": timed_out, "timeout_s": self.timeout_s,
                "stopped": stopped,
                "routine_pid": self.routine, "leftover_processes": leftovers, "error": None}


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
              cwd: str | None) -> int:
    descriptor = _try_lock(attempt_dir)
    if descriptor is None:
        _say(f"refusing to run the attempt in {attempt_dir}: another process holds it")
        return REFUSED_EXIT_CODE
    refusal = _refusal(attempt_dir)
    if refusal is not None:
        _say(f"refusing to run the attempt in {attempt_dir}: {refusal}")
        return REFUSED_EXIT_CODE
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    if not become_subreaper():
        _say("cannot become a child subreaper (not Linux?): processes that leave the routine's process "
             "group may outlive a timeout or a stop")
    supervisor = Supervisor(attempt_dir, argv, timeout_s=timeout_s, grace_s=grace_s, cwd=cwd)
    write_json_atomically(os.path.join(attempt_dir, STARTED_FILE), {"supervisor_pid": os.getpid(),
                                                                    "started_at": _now()})
    outcome = supervisor.run()
    if outcome.get("error"):
        _say(outcome["error"])
    write_json_atomically(os.path.join(attempt_dir, EXIT_FILE), outcome)
    return 0  # the lock is released when this process ends, after the outcome is on disk


USAGE = ("usage: local_supervisor.py --attempt-dir DIR [--timeout SECONDS] [--grace SECONDS] [--cwd DIR] "
         "-- COMMAND [ARG ...]")
OPTIONS = ("--attempt-dir", "--timeout", "--grace", "--cwd")


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
              "no timeout by default, grace 5 s between SIGTERM and SIGKILL).")
        return 0
    try:
        options, command = parse_arguments(arguments)
        if "--attempt-dir" not in options:
            raise UsageError("the following arguments are required: --attempt-dir")
        if not command:
            raise UsageError("no routine command after --")
        timeout, grace = _seconds(options, "--timeout", None), _seconds(options, "--grace", 5.0)
    except UsageError as error:  # as argparse says it: the usage, the error, exit status 2
        sys.stderr.write(f"{USAGE}\nlocal_supervisor.py: error: {error}\n")
        return 2
    return supervise(os.path.abspath(options["--attempt-dir"]), command,
                     timeout_s=timeout if timeout and timeout > 0 else None, grace_s=grace,
                     cwd=options.get("--cwd"))


if __name__ == "__main__":
    sys.exit(main())
