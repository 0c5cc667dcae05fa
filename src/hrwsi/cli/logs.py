"""`hrwsi logs TASK [--attempt N] [--follow]`: an attempt's log, printed as it is.

Every backend's log ends up in the job's `log_path`: the local backend writes the routine's stdout
and stderr there while it runs; the Nomad backend appends the allocation's stdout and stderr there
(read from Nomad) when the job ends, so a Nomad job's log is not available before. A local log past
its cap (HRWSI_JOB_LOG_MAX_BYTES) keeps its start and its most recent output, with a line between them
saying how many bytes were dropped; it is cut in place while the routine runs, and --follow goes on
from that line when it finds the log cut under it (`_Followed`; the cap as the attempt's supervisor wrote it
in started.json, not this machine's setting). The log goes to
stdout byte for byte when stdout is a file or a pipe (it is the routine's output, for tools to read).
To a terminal, its control characters are shown escaped (`\x1b`), as every other command shows what
users and routines wrote: a routine's log could clear the screen, set the window's title or write the
clipboard (OSC 52) of the operator reading it (found by exploratory testing, 2026-12-05); `--raw`
passes them through. What the command says about the log goes to stderr.
"""

from __future__ import annotations

import codecs
import os
import re
import sys
import time
from pathlib import Path

import typer

from hrwsi import reports
from hrwsi.backends import local_supervisor
from hrwsi.cli.common import CliError, app, database, error_console, whole_argument, whole_option
from hrwsi.terminal import in_page, visible

FOLLOW_POLL_S = 0.5
# Before a log's first cut has been seen, the follower looks for a cap line in what it read (_Followed.was_cut)
# at most this often: the look reads the log again up to where it was read (20-75 ms for a log of 100 MiB,
# measured), and made at every poll (FOLLOW_POLL_S) of a chatty routine's log it would take 4-15 % of a core.
# The cheaper checks still run at every poll; this one only catches output that repeats exactly across a cut.
CUT_LOOK_EVERY_S = 5.0


def _not_available(task_id: int, job: dict) -> str:
    """Why there is no log to show yet (or any more), and what to do."""
    which = f"task {task_id} attempt {job['attempt']} (job {job['backend_job_id']}, {job['state']})"
    if job["backend"] == "dry-run":
        return f"{which} ran on the dry-run backend, which writes no log"
    if not job["log_path"]:
        return f"{which} has no log path recorded"
    if not job["is_final"]:
        if job["backend"] == "nomad":
            return (f"the Nomad log of {which} is not available yet: the Nomad backend saves the job's stdout and "
                    f"stderr to {job['log_path']} when the job ends; until then `nomad alloc logs -job "
                    f"{job['backend_job_id']}` shows them, and `hrwsi logs {task_id} --follow` waits for it")
        return (f"the log of {which} is not written yet; `hrwsi logs {task_id} --follow` waits for it")
    # Retention deletes a log only with its attempt's row (retention.py): this one's row is here, so its log
    # was never kept where this machine sees it. Blaming retention sent the tester after a policy that had
    # not run, when Nomad had refused the logs (found by exploratory testing).
    where = f"it is on the machine of launcher {job['owner'] or '?'} (not shared with this one)"
    if job["backend"] == "nomad":
        return (f"the log of {which} is not at {job['log_path']}: it was never kept there (the launcher that "
                f"followed the job logs why: Nomad refused or failed to show the task's output, or the launcher "
                f"stopped before the job ended; `nomad alloc logs -job {job['backend_job_id']}` shows it while "
                f"Nomad keeps the job), or {where}; retention deletes a log only with its attempt's record")
    return (f"the log of {which} is not at {job['log_path']}: it was never written there, or {where}; retention "
            "deletes a log only with its attempt's record")


class _ShownEscaped:
    """A log for a terminal: UTF-8 text, its control characters escaped (`terminal.in_page`: line
    breaks, tabs and CRLF kept), in pieces as they come (a character or a CRLF cut between two reads
    is written whole with the next)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # a carriage return at the end of a piece: a CRLF's first half, or alone

    def write(self, data: bytes, final: bool = False) -> None:
        text = self._held + self._decoder.decode(data, final)
        self._held = "" if final or not text.endswith("\r") else "\r"
        text = text[: len(text) - len(self._held)]
        sys.stdout.write(in_page(text))
        sys.stdout.flush()


# The line the local backend's supervisor writes where it dropped bytes of a log past its cap
# (local_supervisor.CappedLog): the log is cut in place, so a follower finds it changed under what it read.
CAP_LINE = b"] the log reached its cap of "
SUPERVISOR_LINE = b"[hrwsi supervisor "
# The bytes a follower read last, checked again before it reads on.
CHECKED_BYTES = 4096
# Where a first cut writes its line: at the start of the line that ends the log's head, a quarter of the cap in,
# found at most this far before it (local_supervisor.CappedLog, LINE_SEARCH), the log empty when the routine
# started (a log per attempt).
HEAD_LINE_SEARCH = 1 << 16
# How far after its start a cap line's words end ("[hrwsi supervisor TIME] the log reached its cap of N bytes").
CAP_WORDS_AFTER = 128
# The supervisor's time in its lines (local_supervisor._now: microseconds always, UTC): its cap line's words come
# exactly this far after "[hrwsi supervisor ".
SUPERVISOR_TIME_LENGTH = len("2026-12-06T12:00:00.000000+00:00")
CAP_NUMBER = re.compile(rb"(\d{1,19}) bytes")


def _cap_line_start(descriptor: int, at: int, base: int = 0) -> int | None:
    """Where the supervisor's cap line whose words (CAP_LINE) are at `at` starts; None for a routine's line that
    quotes it. The supervisor's starts at a line's start, or, when no line ends within LINE_SEARCH before the
    head's end (a routine's line longer than 64 KiB), exactly at the head's end, mid-line: `base` (the log's size
    when the routine started, 0 for a log per attempt) plus a quarter of the cap its own words name. Taken for a
    routine's before, that cut was told by neither look (found by review)."""
    start = at - SUPERVISOR_TIME_LENGTH - len(SUPERVISOR_LINE)
    if start < 0:
        return None
    text = os.pread(descriptor, CAP_WORDS_AFTER, start)
    words = len(SUPERVISOR_LINE) + SUPERVISOR_TIME_LENGTH
    if not text.startswith(SUPERVISOR_LINE) or text[words:words + len(CAP_LINE)] != CAP_LINE:
        return None
    if start == 0 or os.pread(descriptor, 1, start - 1) == b"\n":
        return start
    cap = CAP_NUMBER.match(text, words + len(CAP_LINE))
    return start if cap is not None and start == base + int(cap[1]) // 4 else None


class _Followed:
    """Where a follower is in a log, and what it checks there before it reads on, to tell that the log
    was cut in place under it: the log shorter than what it read; the bytes it read last no longer
    there; the cap's line (rewritten at each cut, with the bytes dropped so far) no longer the one it
    read. A writer faster than about 75 MB/s regrows a cut log past the follower's offset between two
    polls, and the size alone went unnoticed: the follower went on mid-line in other output, without
    saying so (found by review). Before the follower has read a cap's line, the log's first cut is
    also told by a cap's line now standing in what it read (written there by the cut): a log whose
    output repeats exactly (the same bytes at the same offsets after the cut) was read on without the
    notice (found by review). That look reads what the follower read again, at most the cap (100 MiB
    by default: tens of milliseconds), and only at a poll that finds the log changed since the last look, at most
    every CUT_LOOK_EVERY_S.
    Where the log's cap is known (`cap` and `base`: as its supervisor wrote them in the attempt's started.json,
    not this machine's HRWSI_JOB_LOG_MAX_BYTES, which may be another launcher's), the window where a first cut
    writes its line is read at every poll instead, a few kilobytes: the notice came up to CUT_LOOK_EVERY_S late,
    after output that followed the cut (found by review). The periodic look stays for a log whose cap is not
    known (a supervisor whose started.json does not say it, from before it did, or an attempt directory this
    machine does not see).
    What remains: a cut while the follower reads mixes what it shows of that read (the next poll sees
    the cut)."""

    __slots__ = ("offset", "last", "cap_line_at", "cap_line", "looked_at", "looked_when", "head", "base")

    def __init__(self, cap: int | None = None, base: int = 0) -> None:
        self.base = base  # the log's size when its routine started (0: a log per attempt)
        self.head: int | None = None  # where the head of the log ends, at the latest, once its cap is known
        self.knows_cap(cap, base)
        self.offset = 0
        self.last = b""  # the bytes just before `offset`, as read
        self.cap_line_at: int | None = None  # where the cap's line starts, once read
        self.cap_line = b""
        self.looked_at: tuple[int, int] | None = None  # the log's (mtime, size) when last looked at for a cut
        self.looked_when = float("-inf")  # (time.monotonic) when it was

    def knows_cap(self, cap: int | None, base: int = 0) -> None:
        if cap:
            self.base, self.head = base, base + cap // 4

    def was_cut(self, descriptor: int) -> bool:
        status = os.fstat(descriptor)
        if self.offset > status.st_size:
            return True
        if self.last and os.pread(descriptor, len(self.last), self.offset - len(self.last)) != self.last:
            return True
        if self.cap_line_at is not None:
            return os.pread(descriptor, len(self.cap_line), self.cap_line_at) != self.cap_line
        if self.head is not None and self.offset > self.head - HEAD_LINE_SEARCH:  # (the window, read: at every poll)
            start = max(0, self.head - HEAD_LINE_SEARCH)
            if _supervisor_cap_line_before(descriptor, min(self.offset, self.head + 1), start, CAP_WORDS_AFTER,
                                           self.base) is not None:
                return True
        now, seen = time.monotonic(), (status.st_mtime_ns, status.st_size)
        # (a cut is a write: a log unchanged since the last look was not cut; and at most a look per CUT_LOOK_EVERY_S)
        if seen == self.looked_at or now - self.looked_when < CUT_LOOK_EVERY_S:
            return False
        self.looked_at, self.looked_when = seen, now
        return _supervisor_cap_line_before(descriptor, self.offset, 0, 0, self.base) is not None

    def went_on_from(self, offset: int) -> None:
        self.offset, self.last, self.cap_line_at, self.cap_line = offset, b"", None, b""

    def read(self, descriptor: int, chunk: bytes) -> None:
        """`chunk`, read at `offset`: the cap's line noted if it starts in it."""
        if self.cap_line_at is None:
            window = self.last[-(len(CAP_LINE) - 1):] + chunk
            found = window.find(CAP_LINE)
            if found >= 0:
                self._note_cap_line(descriptor, self.offset - (len(window) - len(chunk)) + found)
        self.offset += len(chunk)
        self.last = (self.last + chunk)[-CHECKED_BYTES:]

    def _note_cap_line(self, descriptor: int, at: int) -> None:
        line_start = _cap_line_start(descriptor, at, self.base)
        if line_start is None:  # (a routine's line that quotes it)
            return
        line = os.pread(descriptor, 1024, line_start)
        end = line.find(b"\n")
        if end >= 0:
            self.cap_line_at, self.cap_line = line_start, line[:end + 1]


def _supervisor_cap_line_before(descriptor: int, end: int, start: int = 0, beyond: int = 0, base: int = 0) -> int | None:
    """Where the first supervisor's cap line starting before `end` starts, if there is one (not a routine's
    line that quotes it), searched from `start` to `beyond` bytes past `end` (its words come a timestamp after
    its start). Read in pieces, not mapped: a cut truncates the file under a reader."""
    carried = b""
    while start < end + beyond:
        chunk = os.pread(descriptor, min(1 << 20, end + beyond - start), start)
        if not chunk:
            return None
        window, found = carried + chunk, 0
        while (found := window.find(CAP_LINE, found)) >= 0:
            line_start = _cap_line_start(descriptor, start - len(carried) + found, base)
            if line_start is not None and line_start < end:
                return line_start
            found += 1
        start, carried = start + len(chunk), window[-(len(CAP_LINE) - 1):]
    return None


def _where_the_cap_cut(descriptor: int, base: int = 0) -> int:
    """The offset of the supervisor's line where a capped log's bytes were dropped (0 if none is found): mid-line
    too, where the cut fell mid-line (it went on from 4 KiB before it, in the routine's bytes)."""
    found = _supervisor_cap_line_before(descriptor, os.fstat(descriptor).st_size, base=base)
    return found or 0


def _copy(path: Path, followed: _Followed, shown: _ShownEscaped | None) -> None:
    """Write the file from where `followed` is to stdout (raw, or through `shown`)."""
    try:
        with path.open("rb") as log:
            descriptor = log.fileno()
            if followed.offset and followed.was_cut(descriptor):  # cut to its cap since the last read
                followed.went_on_from(_where_the_cap_cut(descriptor, followed.base))
                error_console.print("(the log reached its cap and was cut while followed: it goes on from the line "
                                    "that says how many bytes were dropped; lines shown above may show again)",
                                    style="dim", markup=False)
            log.seek(followed.offset)
            while chunk := log.read(1 << 16):
                if shown is None:
                    sys.stdout.buffer.write(chunk)
                else:
                    shown.write(chunk)
                followed.read(descriptor, chunk)
    except FileNotFoundError:
        return
    sys.stdout.buffer.flush()


@app.command()
def logs(task_id: int = whole_argument(..., help="a task id"),
         attempt: int | None = whole_option(None, "--attempt", "-a", min=1, max=2**31 - 1,
                                            help="which attempt (default: the latest)"),
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the attempt ends"),
         raw: bool = typer.Option(False, "--raw", help="to a terminal too, the routine's bytes as they are (escape "
                                                      "sequences obeyed); to a file or a pipe they always are")) -> None:
    """Print a task's log (its latest attempt, or --attempt N); --follow waits for more until it ends."""
    with database(autocommit=True) as conn:
        task = reports.task_state(conn, task_id)
        if task is None:
            raise CliError(f"no task {task_id}: `hrwsi tasks` lists the tasks")
        job = reports.task_log(conn, task_id, attempt)
        if job is None:
            if task["history_pruned_at"] is not None:
                raise CliError(f"task {task_id}'s attempts and logs were deleted by the retention policy "
                               "(README.md, Retention)")
            if attempt is not None:
                raise CliError(f"task {task_id} has no attempt {attempt}: `hrwsi task show {task_id}` lists them")
            raise CliError(f"task {task_id} has not run yet, so it has no log: `hrwsi task show {task_id}` says why")
        path = Path(job["log_path"]) if job["log_path"] else None
        error_console.print(visible(f"==> task {task_id} attempt {job['attempt']} ({job['backend']} job "
                                    f"{job['backend_job_id']}, {job['state']}): {job['log_path'] or '-'}"),
                            style="dim", markup=False)
        shown = None if raw or not sys.stdout.isatty() else _ShownEscaped()
        if not follow:
            if path is None or not path.is_file():
                raise CliError(_not_available(task_id, job))
            _copy(path, _Followed(), shown)  # (read once: no cut to tell)
            if shown is not None:
                shown.write(b"", final=True)
            return
        if job["backend"] == "dry-run" or path is None:
            raise CliError(_not_available(task_id, job))
        _follow(conn, task_id, job["attempt"], path, shown, job["output_dir"])


def _ended_said(task_id: int, attempt: int, ended: dict) -> str:
    """The line `--follow` ends with: how the attempt ended, and where its task is now. The log just stopped,
    exit code 0, whether the attempt was processed, failed and retried, or the task given up (found by
    exploratory testing, 2026-12-07)."""
    said = f"==> task {task_id} attempt {attempt} ended {ended['job_state']}"
    if ended["message"]:
        said += f": {ended['message']}"
    said += f"; task {task_id} is {ended['task_state']} now"
    reason = ended["task_reason"]
    if reason and not (ended["message"] and reason.endswith(ended["message"])):  # (not the message again)
        said += f": {reason}"
    return said + f" (`hrwsi task show {task_id}` says what comes next)"


def _log_cap(output_dir: str | None) -> tuple[int, int] | None:
    """The cap and base the attempt's supervisor gave its log, as its started.json says (None: not said, or not
    yet: it is written when the routine starts). Its launcher's cap, not this machine's HRWSI_JOB_LOG_MAX_BYTES:
    the two may differ, and the window read at every poll was then the wrong one (found by review)."""
    if not output_dir:
        return None
    started = local_supervisor.read_json(os.path.join(os.path.dirname(output_dir.rstrip("/")),
                                                      local_supervisor.STARTED_FILE)) or {}
    cap, base = started.get("log_cap"), started.get("log_base", 0)
    if type(cap) is int and cap > 0 and type(base) is int and base >= 0:
        return cap, base
    return None


def _follow(conn, task_id: int, attempt: int, path: Path, shown: _ShownEscaped | None,
            output_dir: str | None = None) -> None:
    followed = _Followed()
    while True:
        if followed.head is None and followed.cap_line_at is None:  # (a small file, read until it is there)
            followed.knows_cap(*(_log_cap(output_dir) or (None,)))
        final = reports.job_is_final(conn, task_id, attempt)
        _copy(path, followed, shown)
        if final:
            if shown is not None:
                shown.write(b"", final=True)
            # The attempt ended before this read: everything it wrote is in the file now.
            if not path.is_file():
                raise CliError(f"task {task_id} attempt {attempt} ended and left no log at {path}")
            ended = reports.attempt_ended(conn, task_id, attempt)
            if ended is not None:
                error_console.print(visible(_ended_said(task_id, attempt, ended)), style="dim", markup=False)
            return
        time.sleep(FOLLOW_POLL_S)
