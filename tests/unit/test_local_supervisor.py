"""hrwsi.backends.local_supervisor: one attempt runs at most once, its outcome outlives the launcher,
and its whole process tree (detached children included) is stopped on timeout, on a stop request, and
when the routine ends. Real processes, no mock."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from hrwsi.backends import local_supervisor
from hrwsi.backends.local import SUPERVISOR_ARGV

GUARD_S = 30.0  # a liveness guard against hangs, not a timing assertion

# A routine that leaves two processes behind, both in sessions of their own: one still its child,
# one detached by a double fork (re-parented to the supervisor, the subreaper). It writes its own pid
# and theirs, then waits for `release` (or forever) and exits 0.
ROUTINE = r"""
import os, subprocess, sys, time
here = sys.argv[1]
open(os.path.join(here, "routine.pid"), "w").write(str(os.getpid()))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    open(os.path.join(here, "detached.pid"), "w").write(str(grandchild.pid))
    os._exit(0)
os.wait()
open(os.path.join(here, "child.pid"), "w").write(str(child.pid))
with open(os.path.join(here, "runs"), "a") as runs:
    runs.write("ran\n")
while not os.path.exists(os.path.join(here, "release")):
    time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def no_process_left(tmp_path):
    """Whatever a failing test leaves running is killed (by the pids the routines wrote)."""
    yield
    for written in tmp_path.rglob("*.pid"):
        pid = int(written.read_text() or 0)
        if pid > 0 and alive(pid):
            os.kill(pid, signal.SIGKILL)


def start(attempt: Path, *, timeout_s: float | None = None, script: str = ROUTINE) -> subprocess.Popen:
    attempt.mkdir(parents=True, exist_ok=True)
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(attempt), "--grace", "1"]
    if timeout_s:
        argv += ["--timeout", str(timeout_s)]
    log = open(attempt / "job.log", "ab")
    try:
        return subprocess.Popen([*argv, "--", sys.executable, "-c", script, str(attempt)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pids(attempt: Path) -> list[int]:
    # Written by the routine's processes, each file exists a moment before its pid is in it.
    def written(name: str) -> bool:
        path = attempt / name
        return path.exists() and path.read_text().strip().isdigit()

    wait_for(lambda: written("child.pid") and written("detached.pid"), "the routine's pids")
    return [int((attempt / name).read_text()) for name in ("child.pid", "detached.pid")]


def outcome(attempt: Path) -> dict:
    return json.loads((attempt / local_supervisor.EXIT_FILE).read_text())


def test_the_lock_says_running_while_the_routine_runs_and_the_outcome_is_written_when_it_ends(tmp_path):
    supervisor = start(tmp_path)
    pids(tmp_path)
    found = local_supervisor.settle(str(tmp_path), "unused")
    assert (found.state, found.pid) == ("running", supervisor.pid)
    assert not (tmp_path / local_supervisor.TOMBSTONE_FILE).exists(), "a running attempt is never tombstoned"
    (tmp_path / "release").touch()
    assert supervisor.wait(GUARD_S) == 0
    written = outcome(tmp_path)
    assert (written["exit_code"], written["signal"], written["timed_out"], written["stopped"]) == (0, None, False,
                                                                                                  False)
    assert written["started_at"] <= written["finished_at"]
    assert 0 <= written["run_s"] < GUARD_S, "its run time by the clock a jump of the host clock does not move"
    found = local_supervisor.settle(str(tmp_path), "unused")
    assert found.state == "finished" and found.outcome == written


def test_the_processes_a_routine_leaves_behind_are_stopped_when_it_ends(tmp_path):
    supervisor = start(tmp_path)
    left = pids(tmp_path)
    (tmp_path / "release").touch()
    assert supervisor.wait(GUARD_S) == 0
    assert not any(alive(pid) for pid in left), "its own-session child and its detached grandchild"
    assert outcome(tmp_path)["leftover_processes"] == 2
    assert "left 2 process(es) running" in (tmp_path / "job.log").read_text()


def test_a_timeout_stops_the_whole_tree_including_children_that_called_setsid(tmp_path):
    supervisor = start(tmp_path, timeout_s=1.0)
    left = pids(tmp_path)
    assert supervisor.wait(GUARD_S) == 0
    written = outcome(tmp_path)
    assert written["timed_out"] and written["timeout_s"] == 1.0
    assert written["signal"] == signal.SIGTERM and written["exit_code"] is None
    assert not any(alive(pid) for pid in left)


def test_a_stop_request_stops_the_whole_tree_and_says_so(tmp_path):
    supervisor = start(tmp_path)
    left = pids(tmp_path)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(GUARD_S) == 0
    written = outcome(tmp_path)
    assert written["stopped"] and not written["timed_out"]
    assert not any(alive(pid) for pid in left)


def test_a_routine_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    stubborn = ("import signal, time, os, sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "open(os.path.join(sys.argv[1], 'child.pid'), 'w').write('0')\n"
                "open(os.path.join(sys.argv[1], 'detached.pid'), 'w').write('0')\ntime.sleep(600)\n")
    supervisor = start(tmp_path, script=stubborn)
    pids(tmp_path)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(GUARD_S) == 0
    assert outcome(tmp_path)["signal"] == signal.SIGKILL


def test_a_tombstoned_attempt_never_starts(tmp_path):
    attempt = tmp_path / "attempt-1"
    found = local_supervisor.settle(str(attempt), "its launcher died before starting it")
    assert found.state == "tombstoned" and found.started is None
    tombstone = json.loads((attempt / local_supervisor.TOMBSTONE_FILE).read_text())
    assert tombstone["reason"] == "its launcher died before starting it"
    late = start(attempt)  # a paused launcher resumes and starts it
    assert late.wait(GUARD_S) == local_supervisor.REFUSED_EXIT_CODE
    assert not (attempt / "runs").exists(), "the routine never ran"
    assert not (attempt / local_supervisor.EXIT_FILE).exists()
    assert "tombstone" in (attempt / "job.log").read_text()
    assert local_supervisor.settle(str(attempt), "again").state == "tombstoned"


def test_an_attempt_starts_at_most_once(tmp_path):
    first = start(tmp_path)
    pids(tmp_path)
    second = start(tmp_path)  # while the first one runs: the lock is held
    assert second.wait(GUARD_S) == local_supervisor.REFUSED_EXIT_CODE
    (tmp_path / "release").touch()
    assert first.wait(GUARD_S) == 0
    third = start(tmp_path)  # after it ended: it ran once already
    assert third.wait(GUARD_S) == local_supervisor.REFUSED_EXIT_CODE
    assert (tmp_path / "runs").read_text() == "ran\n"


def test_an_attempt_whose_supervisor_died_is_tombstoned_with_what_it_had_started(tmp_path):
    supervisor = start(tmp_path)
    left = pids(tmp_path)
    supervisor.kill()  # kill -9: no outcome, the lock is released with the process
    supervisor.wait(GUARD_S)
    found = local_supervisor.settle(str(tmp_path), "its supervisor died")
    assert found.state == "tombstoned" and found.started["supervisor_pid"] == supervisor.pid
    for pid in left:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert start(tmp_path).wait(GUARD_S) == local_supervisor.REFUSED_EXIT_CODE


def test_a_routine_that_cannot_start_has_an_outcome_that_says_why(tmp_path):
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(tmp_path), "--", str(tmp_path / "no-such-program")]
    assert subprocess.run(argv, capture_output=True, timeout=GUARD_S).returncode == 0
    written = outcome(tmp_path)
    assert written["exit_code"] == local_supervisor.CANNOT_START_EXIT_CODE
    assert "cannot start the routine" in written["error"]


def test_a_routine_whose_program_is_empty_has_an_outcome_that_says_why_not_a_dead_supervisor(tmp_path):
    # Found by exploratory testing: a routine's command ARRAY[''] (an UPDATE by hand; the database
    # takes it) made posix_spawnp raise ValueError, the supervisor died without an outcome, and each
    # attempt was recorded lost (never the routine's failure), retried without limit.
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(tmp_path), "--", ""]
    assert subprocess.run(argv, capture_output=True, timeout=GUARD_S).returncode == 0
    written = outcome(tmp_path)
    assert written["exit_code"] == local_supervisor.CANNOT_START_EXIT_CODE
    assert written["error"].startswith("cannot start the routine '': "), written["error"]


@pytest.mark.parametrize("name", [local_supervisor.TOMBSTONE_FILE, local_supervisor.EXIT_FILE])
def test_the_module_runs_with_python_minus_m_too(tmp_path, name):
    (tmp_path / name).write_text("{}")
    argv = [sys.executable, "-m", "hrwsi.backends.local_supervisor", "--attempt-dir", str(tmp_path), "--", "true"]
    assert subprocess.run(argv, capture_output=True, timeout=GUARD_S).returncode == \
        local_supervisor.REFUSED_EXIT_CODE


def test_a_supervisor_starts_from_its_cached_bytecode_and_loads_none_of_the_modules_it_does_without(tmp_path):
    # A supervisor starts for every local attempt: compiling its source at every start (as a script
    # is) and loading signal's enums, datetime and collections were 13 of its 28 ms of CPU.
    first = tmp_path / "first"
    first.mkdir()
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(first), "--cwd", str(first), "--", "true"]
    assert subprocess.run(argv, capture_output=True, timeout=GUARD_S).returncode == 0  # may write the cache
    second = tmp_path / "second"
    second.mkdir()
    argv = [sys.executable, "-v", "-X", "importtime", *SUPERVISOR_ARGV[1:],
            "--attempt-dir", str(second), "--cwd", str(second), "--", "true"]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=GUARD_S)
    assert ran.returncode == 0 and outcome(second)["exit_code"] == 0
    cached = importlib.util.cache_from_source(local_supervisor.__file__)
    assert f"# code object from '{cached}'" in ran.stderr
    imported = {line.split("|")[-1].strip() for line in ran.stderr.splitlines() if line.startswith("import time:")}
    assert "local_supervisor" in imported
    assert not imported & {"signal", "enum", "datetime", "collections", "functools", "__future__", "json"}


def test_a_supervisor_started_as_the_local_backend_starts_it_is_known_by_its_command_line(tmp_path):
    # Stop requests go only to a process whose command line names the supervisor and its attempt
    # (a recycled pid is never signalled): the command line of the import through `-c` must still.
    supervisor = start(tmp_path / "attempt")
    try:
        pids(tmp_path / "attempt")
        assert local_supervisor.is_supervisor_of(supervisor.pid, str(tmp_path / "attempt"))
        assert not local_supervisor.is_supervisor_of(supervisor.pid, str(tmp_path / "another"))
        assert not local_supervisor.is_supervisor_of(os.getpid(), str(tmp_path / "attempt"))
    finally:
        (tmp_path / "attempt" / "release").touch()
        assert supervisor.wait(GUARD_S) == 0


def test_the_supervisors_times_are_utc_iso_8601_that_datetime_reads_and_that_sort_as_they_happened():
    before = datetime.now(UTC)
    first = local_supervisor._now()
    second = local_supervisor._now()
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(first) <= after + timedelta(milliseconds=1)
    assert datetime.fromisoformat(first).utcoffset() == timedelta(0)
    assert first <= second and len(first) == len(second) == len("2026-12-05T02:40:00.123456+00:00")


def test_the_outcome_is_json_that_json_reads_back_whatever_the_text_it_holds(tmp_path):
    # Written without the json module (its import doubled the supervisor's start-up): every
    # character JSON must escape, control characters, non-ASCII text, a character outside the basic
    # plane and a lone surrogate (a file name not in UTF-8, as os.fsdecode gives it) come back as
    # they were written, and the file is plain ASCII.
    tricky = 'quote " backslash \\ newline \n tab \t bell \x07 NUL \x00 é 雪 \U0001F9CA \udcff end'
    document = {"error": tricky, "exit_code": 3, "signal": None, "timed_out": False, "stopped": True,
                "timeout_s": 2.5, "not_finite": float("inf"), "started_before": {"supervisor_pid": 12, "at": "x"}}
    path = tmp_path / "exit.json"
    local_supervisor.write_json_atomically(str(path), document)
    assert path.read_bytes().isascii()
    assert json.loads(path.read_text()) == {**document, "not_finite": None}
    assert local_supervisor.read_json(str(path))["error"] == tricky
    with pytest.raises(TypeError):
        local_supervisor.write_json_atomically(str(tmp_path / "list.json"), {"argv": ["a"]})
    assert not list(tmp_path.glob("list.json*")), "no file, not even a temporary one"


@pytest.mark.parametrize(("arguments", "error"), [
    (["--", "true"], "the following arguments are required: --attempt-dir"),
    (["--attempt-dir"], "argument --attempt-dir: expected one value"),
    (["--attempt-dir", "{dir}", "--timeout", "soon", "--", "true"], "argument --timeout: not a number of seconds: 'soon'"),
    (["--attempt-dir", "{dir}", "--verbose", "--", "true"], "unrecognized argument: --verbose"),
    (["--attempt-dir", "{dir}", "--"], "no routine command after --"),
])
def test_wrong_arguments_get_the_usage_and_one_line_saying_what_is_wrong_and_start_nothing(tmp_path, arguments, error):
    argv = [*SUPERVISOR_ARGV, *(a.format(dir=tmp_path) for a in arguments)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=GUARD_S)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [local_supervisor.USAGE, f"local_supervisor.py: error: {error}"]
    assert not (tmp_path / local_supervisor.STARTED_FILE).exists()


def test_options_may_be_written_with_an_equals_sign_and_the_command_without_the_double_dash(tmp_path):
    argv = [*SUPERVISOR_ARGV, f"--attempt-dir={tmp_path}", "--timeout=0", f"--cwd={tmp_path}",
            "/bin/sh", "-c", "pwd > where"]
    assert subprocess.run(argv, capture_output=True, timeout=GUARD_S).returncode == 0
    written = outcome(tmp_path)
    assert written["exit_code"] == 0 and written["timeout_s"] is None  # 0: no timeout
    assert (tmp_path / "where").read_text().strip() == str(tmp_path)


def test_the_routine_starts_with_stdin_empty_and_sigpipe_as_the_system_default(tmp_path):
    # Python ignores SIGPIPE; a routine started from it must not inherit that (a shell pipeline in
    # the routine would not stop when its reader does), as subprocess.Popen restores it.
    script = "read line; echo \"read:$line:$?\" > stdin; grep SigIgn /proc/self/status > ignored"
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(tmp_path), "--cwd", str(tmp_path), "--", "/bin/sh", "-c", script]
    assert subprocess.run(argv, input=b"not for the routine\n", capture_output=True, timeout=GUARD_S).returncode == 0
    assert outcome(tmp_path)["exit_code"] == 0
    assert (tmp_path / "stdin").read_text() == "read::1\n"  # end of input at once: /dev/null
    ignored = int((tmp_path / "ignored").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


# A process tree: a child that has a child of its own (the grandchild, started by a second thread of
# the child, which lives on: the kernel lists a child under the thread that started it), and a child
# that ended and was not collected (a zombie: not live). The root writes the two children's pids,
# then waits.
TREE = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, threading, time\n"
                          "threading.Thread(target=lambda: [subprocess.Popen([sys.executable, '-c', "
                          "'import time; time.sleep(600)']), time.sleep(600)]).start()\ntime.sleep(600)"])
ended = subprocess.Popen(["/bin/true"])
print(child.pid, ended.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def tree():
    """A root process with a child, a grandchild and a zombie child: (root, child, zombie); all killed after."""
    root = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE)
    child, zombie = (int(pid) for pid in root.stdout.readline().split())
    try:
        wait_for(lambda: len(psutil.Process(root.pid).children(recursive=True)) == 3
                 and psutil.Process(zombie).status() == psutil.STATUS_ZOMBIE, "the tree")
        yield root.pid, child, zombie
    finally:
        for process in [*psutil.Process(root.pid).children(recursive=True), psutil.Process(root.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        root.wait(GUARD_S)


def scanned(root: int) -> list[int]:
    """What `descendants` finds by scanning every process, as where the kernel keeps no lists of children."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(local_supervisor, "KERNEL_LISTS_CHILDREN", False)
        patched.setattr(local_supervisor, "_children_of", lambda _pid: [])  # as if it could not read them
        return local_supervisor.descendants(root)


def test_the_tree_read_from_the_kernels_lists_of_children_is_the_one_a_scan_of_every_process_finds(tree):
    root, child, zombie = tree
    found = local_supervisor.descendants(root)
    grandchildren = [p.pid for p in psutil.Process(child).children()]
    assert len(grandchildren) == 1
    assert sorted(found) == sorted([child, *grandchildren]), "live descendants, the zombie left out"
    assert sorted(found) == sorted(scanned(root))


def test_the_kernels_lists_of_children_are_read_instead_of_every_process_where_they_exist(tree, monkeypatch):
    # The scan reads every process of the machine, at the end of every attempt (about 5 % of what an
    # attempt of the three-step chain cost); the lists, the attempt's own processes only.
    def scan():
        raise AssertionError("scanned every process")

    monkeypatch.setattr(local_supervisor, "_every_process", scan)
    assert len(local_supervisor.descendants(tree[0])) == 2


def test_where_the_kernel_keeps_no_lists_of_children_every_process_is_scanned(tree):
    root, child, zombie = tree
    found = scanned(root)
    assert child in found and zombie not in found and len(found) == 2


def test_a_pid_listed_as_a_child_that_is_now_another_process_is_not_part_of_the_tree(tree, monkeypatch):
    # Between reading a parent's list of children and reading a child, the child may end and its pid
    # go to a process of someone else: that one must never be stopped as part of the attempt.
    root, child, _ = tree
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        listed = local_supervisor._children_of
        monkeypatch.setattr(local_supervisor, "_children_of",
                            lambda pid: [*listed(pid), stranger.pid] if pid == root else listed(pid))
        found = local_supervisor.descendants(root)
        assert stranger.pid not in found
        assert child in found and len(found) == 2
    finally:
        stranger.kill()
        stranger.wait(GUARD_S)


# Writes `lines` numbered lines (to stdout, and every 1000th to stderr), then waits for `release`.
CHATTY = r"""
import os, sys, time
here, lines = sys.argv[1], int(sys.argv[2])
open(os.path.join(here, "routine.pid"), "w").write(str(os.getpid()))
for number in range(lines):
    print(f"line {number:09d} of the routine's output")
    if number % 1000 == 0:
        print(f"line {number:09d} to stderr", file=sys.stderr)
sys.stdout.flush()
open(os.path.join(here, "written"), "w").close()
while not os.path.exists(os.path.join(here, "release")):
    time.sleep(0.05)
print("the last line", flush=True)
"""


def start_capped(attempt: Path, cap: int | None, lines: int) -> subprocess.Popen:
    attempt.mkdir(parents=True, exist_ok=True)
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", str(attempt), "--grace", "1"]
    if cap is not None:
        argv += ["--log-cap", str(cap)]
    with open(attempt / "job.log", "ab") as log:
        return subprocess.Popen([*argv, "--", sys.executable, "-c", CHATTY, str(attempt), str(lines)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_a_log_past_its_cap_keeps_its_start_and_its_most_recent_output_with_a_line_saying_how_many_bytes_were_dropped(
        tmp_path):
    cap, lines = 256 * 1024, 100_000  # about 3.9 MB of output
    supervisor = start_capped(tmp_path, cap, lines)
    wait_for(lambda: (tmp_path / "written").exists(), "the routine's output")
    # While it runs the log is never much above its cap (a read of the pipe at most), and reads as it is.
    wait_for(lambda: b"the routine's output were dropped" in (tmp_path / "job.log").read_bytes(), "the first cut")
    assert (tmp_path / "job.log").stat().st_size <= cap + local_supervisor.READ_SIZE
    (tmp_path / "release").touch()
    assert supervisor.wait(GUARD_S) == 0
    log = (tmp_path / "job.log").read_bytes()
    assert len(log) <= cap + 1024
    text = log.decode()
    assert text.startswith("line 000000000 ") and "\nline 000000001 of the routine's output\n" in text, \
        "its start is kept"
    assert text.splitlines()[-2:-1] == ["the last line"], "its most recent output is kept, then the summary"
    kept = [line for line in text.splitlines() if line.startswith("line ")]
    assert all(line.endswith(("output", "stderr")) for line in kept), "cut at lines' ends"
    numbers = [int(line.split()[1]) for line in kept if line.endswith("output")]
    gaps = [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1]
    assert len(gaps) == 1, "one cut, between the start and the most recent output"
    markers = [line for line in text.splitlines() if "were dropped here" in line]
    assert len(markers) == 1 and markers[0].startswith("[hrwsi supervisor ")
    assert text.index(markers[0]) == text.index(f"line {gaps[0][1]:09d}") - len(markers[0]) - 1, \
        "the line is where the bytes were dropped"
    everything = "".join(f"line {n:09d} of the routine's output\n" + (f"line {n:09d} to stderr\n" if n % 1000 == 0
                                                                           else "") for n in range(lines))
    written = len(everything) + len("the last line\n")
    found = outcome(tmp_path)
    kept_bytes = len(text.encode()) - len(markers[0]) - 1 - len(text.splitlines()[-1]) - 1
    assert found["log_bytes"] == written and found["log_dropped_bytes"] == written - kept_bytes
    assert f"{found['log_dropped_bytes']} bytes of the routine's output were dropped here" in markers[0]
    assert found["protocol"] == local_supervisor.PROTOCOL and found["exit_code"] == 0
    assert f"the routine wrote {written} bytes" in text.splitlines()[-1], "the log ends saying what it kept"


def test_a_routine_writing_far_past_the_cap_is_never_held_up_by_it(tmp_path):
    # 39 MB through a 64 KiB cap: the pipe is always read (the routine would block on a full pipe, and
    # die of SIGPIPE on a closed one), and what is not kept is dropped.
    supervisor = start_capped(tmp_path, 64 * 1024, 1_000_000)
    wait_for(lambda: (tmp_path / "written").exists(), "the routine's output")
    (tmp_path / "release").touch()
    assert supervisor.wait(GUARD_S) == 0
    found = outcome(tmp_path)
    assert (found["exit_code"], found["signal"]) == (0, None)
    assert found["log_bytes"] > 38_000_000 and found["log_dropped_bytes"] > found["log_bytes"] - 70_000
    assert (tmp_path / "job.log").stat().st_size < 70_000


def test_without_a_cap_the_routine_writes_the_log_itself_as_a_supervisor_before_caps_did(tmp_path):
    # What an older launcher starts (no --log-cap): no pipe between the routine and its log.
    script = ("import os, sys; print(os.readlink('/proc/self/fd/1')); print(os.readlink('/proc/self/fd/2'))")
    log = tmp_path / "job.log"
    with open(log, "ab") as out:
        subprocess.run([*SUPERVISOR_ARGV, "--attempt-dir", str(tmp_path), "--", sys.executable, "-c", script],
                       stdout=out, stderr=subprocess.STDOUT, check=True, timeout=GUARD_S)
    assert log.read_text().splitlines() == [str(log), str(log)]
    assert "log_bytes" not in outcome(tmp_path)


@pytest.mark.parametrize("cap", ["12", "-1", "lots", "4095", "\u00b2", "\u0661" * 7, "1_048_576", "9" * 5000])
def test_a_log_cap_that_is_not_a_number_of_bytes_gets_the_usage(tmp_path, cap):
    """(ASCII digits only: '\u00b2' passed str.isdigit and int() refused it, a traceback; Arabic-Indic digits
    were read as the cap 1111111; found by review)"""
    result = subprocess.run([*SUPERVISOR_ARGV, "--attempt-dir", str(tmp_path), "--log-cap", cap, "--", "true"],
                            capture_output=True, text=True, timeout=GUARD_S)
    assert result.returncode == 2 and "argument --log-cap" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / local_supervisor.STARTED_FILE).exists()


# Writes `size` bytes of numbered lines to stdout, then exits with `code`.
WRITES_AND_EXITS = r"""
import sys
size, code = int(sys.argv[1]), int(sys.argv[2])
line = 0
while size > 0:
    text = f"line {line:09d} of the routine's output\n"
    sys.stdout.write(text)
    size, line = size - len(text), line + 1
sys.stdout.flush()
sys.exit(code)
"""


def run_capped(attempt: Path, cap: int, size: int, code: int, *, prelude: str = "", **popen) -> int:
    """A supervisor of WRITES_AND_EXITS, `prelude` run before its module is imported; its exit status."""
    attempt.mkdir(parents=True, exist_ok=True)
    *python, code_of_main, module = SUPERVISOR_ARGV  # (python -I -S -c CODE PATH)
    argv = [*python, prelude + code_of_main, module, "--attempt-dir", str(attempt), "--grace", "1",
            "--log-cap", str(cap), "--", sys.executable, "-c", WRITES_AND_EXITS, str(size), str(code)]
    with open(attempt / "job.log", "ab") as log:
        return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, timeout=GUARD_S,
                              **popen).returncode


def test_an_attempt_whose_log_hits_a_file_size_limit_still_writes_its_exit_status(tmp_path):
    # Found by review: with RLIMIT_FSIZE at 1 MiB on the log, a 4 MiB cap and a routine writing 4 MB then
    # exiting 3, the write of the summary line raised out of the supervisor (exit status 120, no exit.json):
    # the attempt was recorded lost and retried, again and again.
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    assert run_capped(tmp_path, 4 << 20, 4_000_000, 3, preexec_fn=limited) == 0
    found = outcome(tmp_path)
    assert (found["exit_code"], found["signal"], found["error"]) == (3, None, None)
    assert found["log_bytes"] >= 4_000_000 and found["log_failed_bytes"] > 2_900_000
    assert (tmp_path / "job.log").stat().st_size == 1 << 20


def test_a_cut_that_fails_on_full_storage_keeps_the_logs_start_and_the_attempts_exit_status(tmp_path):
    # Found by review: rewriting a log in place takes new blocks on copy-on-write storage and under quotas;
    # pwrite or copy_file_range failing with ENOSPC inside a cut left the supervisor, which died with the
    # log half cut and no exit.json. Here both fail as they would on such full storage.
    full = ("import errno, os\n"
            "def full(*_):\n    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
            "os.pwrite = os.copy_file_range = full\n")
    cap, size = 256 * 1024, 4_000_000
    assert run_capped(tmp_path, cap, size, 3, prelude=full) == 0
    found = outcome(tmp_path)
    assert (found["exit_code"], found["signal"], found["error"]) == (3, None, None)
    lines = (tmp_path / "job.log").read_text().splitlines()
    head = [line for line in lines if line.startswith("line ")]
    assert [int(line.split()[1]) for line in head] == list(range(len(head))), "its start, whole lines"
    assert sum(len(line) + 1 for line in head) <= cap // 4
    said = lines[len(head):]
    assert len(said) == 2 and all(line.startswith("[hrwsi supervisor ") for line in said), said
    assert "the log reached its cap of 262144 bytes (HRWSI_JOB_LOG_MAX_BYTES) and could not be cut (No space " \
           "left on device)" in said[0], "a line says where and why the rest is not kept"
    kept = sum(len(line) + 1 for line in head)
    line = len("line 000000000 of the routine's output\n")
    assert found["log_bytes"] == -(-size // line) * line
    assert (found["log_dropped_bytes"], found["log_failed_bytes"]) == (0, found["log_bytes"] - kept)
    assert f"{found['log_failed_bytes']} bytes of the routine's output could not be written to its log: the log " \
           "could not be cut at its cap (No space left on device)" in said[1]



def test_a_writer_outside_the_attempt_that_never_pauses_keeps_its_output_read_for_the_grace_period_at_most(
        tmp_path, monkeypatch, capfd):
    # Found by review: after the attempt's processes had all ended, the supervisor read its pipe for as long
    # as it stayed readable, and a writer outside the attempt's tree (a descriptor the routine passed on, or
    # any process without a subreaper) that never paused kept it so: no outcome, and no timeout checked there.
    # Here the pipe is written to again after each of the supervisor's reads, so it is never found empty.
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    log = os.open(tmp_path / "job.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    supervisor = local_supervisor.Supervisor.__new__(local_supervisor.Supervisor)  # (no signal handlers here)
    supervisor.output, supervisor.grace_s = reader, 0.5
    supervisor.log = local_supervisor.CappedLog(log, 1 << 20)
    read_output, began = supervisor.read_output, time.monotonic()

    def read_then_written_to(reads: int = 16) -> None:
        read_output(reads)
        assert time.monotonic() - began < 10 * supervisor.grace_s, "still reading the pipe"
        os.write(writer, b"x" * 4095 + b"\n")

    monkeypatch.setattr(supervisor, "read_output", read_then_written_to)
    try:
        supervisor.finish_output()
        assert supervisor.output is None, "the pipe is closed"
        assert supervisor.grace_s <= time.monotonic() - began < 5 * supervisor.grace_s
        with pytest.raises(BrokenPipeError):
            os.write(writer, b"x")  # (its writer gets EPIPE)
        assert "] a process outside the attempt still wrote to the routine's output 0.5 s after the attempt's " \
               "processes had ended: stopped reading it\n" in capfd.readouterr().err, "the log says so (its stderr)"
    finally:
        os.close(writer)
        os.close(log)


@pytest.mark.parametrize("text", ["\u00b2\n", "\u0661\u0662\n", "9" * 5000, "12 13\n"])
def test_a_lock_file_whose_pid_is_not_ascii_digits_names_no_holder(tmp_path, text):
    """(str.isdigit is true of '\u00b2', which int() refused: the adopter settling the attempt raised a
    ValueError; Arabic-Indic digits were read as pid 12, a process the attempt may not own; found by review)"""
    (tmp_path / local_supervisor.LOCK_FILE).write_text(text)
    assert local_supervisor.holder_pid(str(tmp_path)) is None
    (tmp_path / local_supervisor.LOCK_FILE).write_text("12\n")
    assert local_supervisor.holder_pid(str(tmp_path)) == 12


def test_a_supervisor_run_as_a_script_in_isolated_mode_finds_its_own_modules(tmp_path):
    """(`python -I` leaves a script's directory off sys.path: the supervisor finds its ascii_decimal there itself)"""
    argv = [sys.executable, "-I", "-S", local_supervisor.__file__, "--attempt-dir", str(tmp_path), "--cwd", str(tmp_path),
            "--", "true"]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=GUARD_S)
    assert ran.returncode == 0 and outcome(tmp_path)["exit_code"] == 0, ran.stderr
