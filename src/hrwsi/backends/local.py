"""The local backend: each attempt runs on this machine under a supervisor of its own.

`submit` starts `local_supervisor` (stdlib only, in a session of its own) with the routine's
environment and the job log as its output; the supervisor runs the routine, enforces its timeout,
stops its whole process tree (detached children included) on timeout or stop, and writes the outcome
(`exit.json`) in the attempt's directory. The routine inherits the launcher's environment minus the
launcher's secrets (routine_environment), as a Nomad client keeps its own out of tasks.

An attempt's outcome survives its launcher: the launcher that started the supervisor waits for it;
a launcher that adopts the job (another launcher on this machine, or this one under a new identity
after its lease lapsed) finds the attempt directory and settles it (`local_supervisor.settle`):
- lock held: the attempt still runs; it is followed until its outcome is written;
- outcome written: the real outcome is recorded, with its products;
- neither: the launcher died before starting it. A tombstone is written under the lock, so a
  supervisor started late by a paused launcher refuses to run it, and the attempt is recorded lost
  (`launcher_gone`); retried as a new attempt.
A stopping launcher waits for its jobs (HRWSI_SHUTDOWN_GRACE_S), then stops the rest (lost,
`stopped_by_hrwsi`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psutil

import hrwsi.backends.local_supervisor as local_supervisor
from hrwsi import database_clock
from hrwsi.backends.base import (
    SECRET_NAME,
    AttemptLost,
    Backend,
    JobOutcome,
    JobSpec,
    ProgressCallback,
    discover_products,
    full_storage,
    lost_with_its_directory,
    output_directory_problem,
    prepare_attempt,
    refuse_missing_product_inputs,
)

logger = logging.getLogger(__name__)

# The launcher's settings that carry credentials without being named like a secret: its database and
# webhook URLs, and Nomad's (a password in NOMAD_ADDR's userinfo, NOMAD_HTTP_AUTH's user:password)
# whichever backend runs: a local routine printing its environment put NOMAD_ADDR's password in its
# job log and the dashboard (found by exploratory testing).
LAUNCHER_SECRETS = ("HRWSI_DATABASE_URL", "HRWSI_ALERT_WEBHOOK_URL", "NOMAD_ADDR", "NOMAD_HTTP_AUTH")
# Names of a credential without a secret's name (HTTP_AUTH, PROXY_AUTHORIZATION, ...).
AUTHENTICATION_NAME = re.compile(r"AUTH", re.IGNORECASE)
# A URL with userinfo (scheme://user:password@host, or a token as the user): whatever its variable's name.
URL_WITH_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]*@")
# -I: no user site, no PYTHON* variables; -S: no site-packages. The supervisor needs the standard
# library only, and starts in milliseconds. It is imported, not run as a script: its file's path
# (which names it in `ps` and to is_supervisor_of) goes last on the module path, after the standard
# library's, and the import reads the bytecode cached beside it, checked against the source as any
# import's is. Run as a script, its 550 lines were compiled again at every start: 3.4 ms of the 22
# ms of CPU a supervisor of `/bin/true` took (2026-12-05).
SUPERVISOR_ARGV = (sys.executable, "-I", "-S", "-c",
                   "import os, sys; sys.path.append(os.path.dirname(sys.argv.pop(1))); import local_supervisor; "
                   "sys.exit(local_supervisor.main())",
                   os.path.abspath(local_supervisor.__file__))


def _now() -> datetime:
    return datetime.now(UTC)


# The boot and time namespace of the clock database_clock.elapsed reads (the supervisor's, on this host).
_ELAPSED_CLOCK_ID = local_supervisor.elapsed_clock()


def _ended_at(found: dict) -> datetime | None:
    """When an attempt's supervisor ended, by this host's wall clock now, from its reading of the clock that only goes
    forward (exit.json's ended_elapsed_s, on this boot): its finished_at is by the wall clock as it was then, which
    the launcher corrects by the offset it measures now (an attempt that ended while its launcher was down, the clock
    since stepped, was recorded at another time: found by review). None: not on this boot, or an older supervisor."""
    ended = found.get("ended_elapsed_s")
    if not isinstance(ended, int | float) or isinstance(ended, bool) or found.get("clock") != _ELAPSED_CLOCK_ID:
        return None
    ago = database_clock.elapsed() - ended
    return _now() - timedelta(seconds=ago) if 0 <= ago < 1e9 else None


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def supervisor_argv(spec: JobSpec, grace_s: float, log_cap: int | None = None) -> list[str]:
    argv = [*SUPERVISOR_ARGV, "--attempt-dir", os.path.abspath(spec.attempt_dir), "--grace", f"{grace_s:g}",
            "--cwd", os.path.abspath(spec.output_dir)]
    if spec.timeout_s:
        argv += ["--timeout", f"{spec.timeout_s:g}"]
    if log_cap:
        argv += ["--log-cap", str(log_cap)]
    return [*argv, "--", *spec.argv()]


# Where pidfds are missing (not Linux, a kernel before 5.3, or a sandbox that refuses the call), a
# supervisor's end is looked for this often instead.
EXIT_POLL_S = 0.05


def start_supervisor(spec: JobSpec, grace_s: float, first_start: bool,
                     log_cap: int | None = None) -> tuple[subprocess.Popen, int | None]:
    """Start the attempt's supervisor (blocking: call it in a thread): its directories (on its first
    start the whole attempt directory: prepare_attempt), the job log as its stdout and stderr, stdin
    from /dev/null, a session of its own (a signal to the launcher's group does not reach it). The
    process and a pidfd to follow it by (None where there is none). Popen, not os.posix_spawn: Popen
    lets go of the GIL while the new process starts, posix_spawn holds it until the exec, which on a
    busy machine stalled the launcher's event loop for milliseconds per job."""
    if first_start:
        refuse_missing_product_inputs(spec)  # (a product file ops deleted: the task's, not the routine's fault)
        prepare_attempt(spec)
    else:
        spec.prepare_paths()
    try:
        log = open(spec.log_path, "ab")  # noqa: SIM115 - closed below, once the supervisor has it
    except OSError as error:
        # A read-only or full log storage (or a directory where the log goes) is no fault of the
        # routine, which has not run: it was "the backend refused the job", charged to the routine,
        # and its tasks were terminated and the routine held (found by exploratory testing).
        raise AttemptLost("storage_unavailable", f"could not open the attempt's log {spec.log_path}: "
                          f"{error.strerror or error}; nothing ran, not the routine's fault: it is retried") from None
    with log:
        process = subprocess.Popen(supervisor_argv(spec, grace_s, log_cap), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=routine_environment(spec), cwd=spec.output_dir,
                                   start_new_session=True)
    try:
        return process, os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return process, None


def read_attempt_end(spec: JobSpec, find_products: bool) -> tuple[dict | None, tuple | None, str | None]:
    """The attempt's outcome as its supervisor wrote it (None: none written), if its routine exited 0
    its products (discover_products), and what is wrong with its output directory if its routine
    ran (output_directory_problem), in one turn of a thread (blocking): a second turn per attempt,
    for the directory alone, cost the chain's launcher a tenth more CPU per job (2026-12-06)."""
    found = local_supervisor.read_json(os.path.join(spec.attempt_dir, local_supervisor.EXIT_FILE))
    if found is None or found.get("exit_code") is None:
        return found, None, None
    problem = output_directory_problem(spec.output_dir, spec.log_path if found.get("exit_code") != 0 else None)
    if problem is None and found.get("exit_code") == 0:
        # A routine that succeeded while its log's storage was full wrote a log cut short, or none,
        # and nothing said so: `hrwsi logs` showed an empty file (found by exploratory testing).
        log_dir = os.path.dirname(spec.log_path) or "."
        full = full_storage(log_dir)
        if full is not None:
            found["log_cut"] = f"its log may be cut short: the storage of {log_dir} is full ({full})"
    if find_products and problem is None and found.get("exit_code") == 0:
        return found, discover_products(spec.output_dir), None
    return found, None, problem


class Supervisor:
    """A supervisor this backend started, followed without a thread: its pidfd wakes the event loop
    when it exits, and it is reaped then (asyncio's subprocesses on Python 3.11 start a thread per
    process to wait for it, and build pipes and transports this backend does not use). Only this
    object reaps it, so until `returncode` is set its pid is still its own: a signal never reaches a
    process that took a recycled pid. The Popen object is kept with its exit code, so that
    subprocess never reaps it too."""

    def __init__(self, process: subprocess.Popen, pidfd: int | None):
        self._process = process
        self.pid = process.pid
        self._pidfd = pidfd
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._poll: asyncio.TimerHandle | None = None
        if pidfd is not None:
            self._loop.add_reader(pidfd, self._reap)
        else:
            self._poll = self._loop.call_later(EXIT_POLL_S, self._reap)

    @property
    def returncode(self) -> int | None:
        """Its exit code once reaped (negative: the signal that ended it); None until then."""
        return self._process.returncode

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: how it ended is unknown (as asyncio says it)
            logger.warning("the supervisor pid %d was reaped by someone else; its exit status is unknown", self.pid)
            pid, status = self.pid, 255 << 8
        if pid == 0:  # still running
            if self._pidfd is None:
                self._poll = self._loop.call_later(EXIT_POLL_S, self._reap)
            return
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self.stop_watching()
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        """Its exit code (negative: the signal that ended it)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, number: int) -> None:
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        os.kill(self.pid, number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def stop_watching(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None


def reap_when_started(starting: asyncio.Future) -> None:
    """A supervisor whose start was no longer waited for is started all the same: reap it when it
    ends (and close its pidfd). Its attempt is settled by whoever follows the job next, as any
    attempt whose launcher let go of it."""
    if not starting.cancelled() and starting.exception() is None:
        Supervisor(*starting.result())


class LocalBackend(Backend):
    name = "local"
    times_from_this_host = True
    resubmit_is_idempotent = False  # never start a supervisor twice: the first one may have run it
    jobs_outlive_launcher = False  # a stopping launcher waits for its jobs, then stops them
    checks_its_output_directory = True  # (with the outcome, in the thread that reads it: read_attempt_end)
    def __init__(self, max_parallel_jobs: int = 64, *, grace_s: float = 5.0, adopted_poll_s: float = 0.5,
                 finds_products: bool = True, site_dir: str | os.PathLike | None = None,
                 log_cap: int | None = None):
        self.max_concurrent_jobs = max_parallel_jobs
        self.log_cap = log_cap  # the most an attempt's log keeps (None or 0: no cap; HRWSI_JOB_LOG_MAX_BYTES)
        self._site_dir = site_dir  # the data directory the attempts' files are in (None: no site kept)
        self._site: str | None = None
        # A processed attempt's outcome carries its products, found in the thread that reads the
        # outcome (the launcher records them; a caller that records none turns it off).
        self.finds_products = finds_products
        self.grace_s = grace_s
        self.stop_grace_s = grace_s  # (the supervisor's: SIGTERM, then SIGKILL)
        self.adopted_poll_s = adopted_poll_s
        self._slots = asyncio.Semaphore(max_parallel_jobs)
        self._supervisors: dict[str, Supervisor] = {}  # started here, by job ID
        self._adopted: dict[str, str] = {}  # job ID -> attempt directory, followed without being our child
        self._cancelled: set[str] = set()
        self._abandoned: set[str] = set()  # stopped because the launcher shuts down

    async def site(self) -> str | None:
        # An attempt runs on this host, its files in the data directory: a launcher elsewhere can
        # neither see them nor signal its supervisor, so only a launcher sharing the directory adopts it.
        if self._site is None and self._site_dir is not None:
            self._site = await asyncio.to_thread(local_site, os.fspath(self._site_dir))
        return self._site

    async def submit(self, spec: JobSpec, *, first_start: bool = False) -> str:
        if spec.job_id in self._supervisors:
            return spec.job_id  # already started here: submitting again changes nothing
        if not spec.command:
            raise ValueError(f"routine {spec.routine} has no command; the local backend cannot run an image")
        await self._slots.acquire()
        # One turn in a thread prepares, opens and starts (each turn costs the event loop's thread a
        # wake-up and a handover of the GIL, about 0.25 ms of CPU here: in the three-step chain, the
        # launcher's five turns a job and asyncio's waiting thread per process were about a third of
        # its time holding the GIL, 2026-12-03).
        starting = asyncio.ensure_future(asyncio.to_thread(start_supervisor, spec, self.grace_s, first_start,
                                                      self.log_cap))
        try:
            process, pidfd = await asyncio.shield(starting)
        except BaseException:
            self._slots.release()
            # Cancelled (a lapsed lease) while the thread starts it: it is started all the same.
            starting.add_done_callback(reap_when_started)
            raise
        self._supervisors[spec.job_id] = Supervisor(process, pidfd)
        return spec.job_id

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        process = self._supervisors.get(backend_job_id)
        if process is None:
            return await self._follow_adopted(spec, backend_job_id, on_progress)
        try:
            await on_progress("running", f"supervisor pid {process.pid}")
            code = await process.wait()
            found, products, problem = await asyncio.to_thread(read_attempt_end, spec, self.finds_products)
            if found is None:
                return await self._without_outcome(spec, backend_job_id, code)
            outcome = self._outcome(backend_job_id, found)
            if problem is not None:
                return lost_with_its_directory(outcome, problem)
            if found.get("log_cut"):
                logger.warning("task %d (%s) attempt %d: %s; %s", spec.task_id, spec.routine, spec.attempt,
                               found["log_cut"], spec.log_path)
            return dataclasses.replace(outcome, products=products) if outcome.state == "processed" else outcome
        finally:
            self._supervisors.pop(backend_job_id, None)
            self._forget_flags(backend_job_id)
            self._slots.release()

    async def _follow_adopted(self, spec: JobSpec, job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        """A job this launcher did not start (adopted): follow its attempt directory."""
        attempt_dir = os.path.abspath(spec.attempt_dir)
        reason = f"job {job_id} was adopted and found neither running nor finished: its launcher stopped first"
        self._adopted[job_id] = attempt_dir
        reported = None
        try:
            while True:
                try:
                    found = await asyncio.to_thread(local_supervisor.settle, attempt_dir, reason)
                except OSError as error:
                    # Neither running nor finished, and its tombstone refused (a full or read-only storage): recorded
                    # lost without one, the attempt could still be started by its launcher, only paused, once room is
                    # made, and run beside its retry (ADR 0006). It raised out of the follower, and the attempt was
                    # recorded lost so. Waited for until the storage takes the tombstone, said once.
                    if reported != "storage":
                        reported = "storage"
                        await on_progress("running", f"adopted; it cannot be settled until its attempt directory takes "
                                                     f"a file ({error.strerror or error}): a full or read-only storage?")
                    await asyncio.sleep(self.adopted_poll_s)
                    continue
                if found.state == "finished":
                    return self._outcome(job_id, found.outcome or {})
                if found.state == "tombstoned":
                    return await self._tombstoned(spec, job_id, found)
                if reported != "running":
                    reported = "running"
                    await on_progress("running", f"adopted; supervisor pid {found.pid}")
                await asyncio.sleep(self.adopted_poll_s)
        finally:
            self._adopted.pop(job_id, None)
            self._forget_flags(job_id)

    async def _tombstoned(self, spec: JobSpec, job_id: str, found: local_supervisor.Settled) -> JobOutcome:
        # A supervisor that died mid-run (killed) may have left the routine running: stop it.
        detail = await _orphans_stopped(job_id, spec)
        if job_id in self._cancelled:
            return JobOutcome("cancelled", None, f"cancelled; it was not running{detail}", None, _now())
        if found.started:
            return JobOutcome("lost", None, f"its supervisor (pid {found.started.get('supervisor_pid')}) died "
                              f"before the routine ended, leaving no outcome{detail}", _time(
                                  found.started.get("started_at")), _now(), fault="backend_lost_track")
        return JobOutcome("lost", None, f"its launcher stopped before starting it; it will never start "
                          f"(tombstoned){detail}", None, _now(), fault="launcher_gone")

    async def _without_outcome(self, spec: JobSpec, job_id: str, code: int) -> JobOutcome:
        """Our supervisor ended without writing an outcome: it refused, or it was killed."""
        if code == local_supervisor.REFUSED_EXIT_CODE:
            # Adopted and settled by another launcher while this one was paused (see the job log).
            return JobOutcome("lost", None, "its supervisor refused to start it: another launcher settled this "
                              "attempt meanwhile (see the job log)", None, _now(), fault="launcher_gone")
        if not await asyncio.to_thread(os.path.isdir, spec.attempt_dir):
            # Our supervisor ran, and its directory (outcome, started.json, products) was taken away
            # meanwhile: settle would make it again and call the attempt one its launcher never started
            # (found by exploratory testing, `mv` of data/products while jobs ran).
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
            return JobOutcome("lost", None, f"its attempt directory {spec.attempt_dir} vanished while it ran (moved, "
                              f"deleted or unmounted; its supervisor ended with {how}): its outcome and products are "
                              "gone; not the routine's fault: it is retried", None, _now(), fault="storage_unavailable")
        if code == local_supervisor.OUTCOME_UNWRITTEN_EXIT_CODE:
            return await asyncio.to_thread(_outcome_unwritten, spec)
        try:
            found = await asyncio.to_thread(local_supervisor.settle, os.path.abspath(spec.attempt_dir),
                                            f"its supervisor ended with code {code} and no outcome")
        except OSError as error:
            # Its tombstone could not be written (a full or read-only storage). None is needed: our supervisor
            # ended, and only this launcher starts this attempt. (It raised out of the follower: a traceback, and
            # "the launcher could not follow the job", not counted as the storage's problem.)
            detail = await _orphans_stopped(job_id, spec)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
            return JobOutcome("lost", None, f"its supervisor ended with {how} and no outcome, and its attempt "
                              f"directory {spec.attempt_dir} takes no file ({error.strerror or error}){detail}; not "
                              "the routine's fault: it is retried", None, _now(), fault="storage_unavailable")
        if found.state == "finished":  # written between our read and the settle: not lost after all
            return self._outcome(job_id, found.outcome or {})
        outcome = await self._tombstoned(spec, job_id, found)
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return JobOutcome(outcome.state, None, f"{outcome.message} (the supervisor: {how})", outcome.started_at,
                          outcome.finished_at, fault=outcome.fault)

    def _outcome(self, job_id: str, found: dict) -> JobOutcome:
        """The JobOutcome of an attempt's exit.json."""
        started, finished = _time(found.get("started_at")), _ended_at(found) or _time(found.get("finished_at")) or _now()
        run_s = found.get("run_s")
        if isinstance(run_s, int | float) and not isinstance(run_s, bool) and 0 <= run_s < 1e9 and finished is not None:
            # (its run time by the supervisor's monotonic clock: a jump of the host's clock while it ran moved
            # finished_at from started_at by the jump; an older supervisor's outcome has no run_s)
            started = finished - timedelta(seconds=run_s)
        code, signal_number = found.get("exit_code"), found.get("signal")
        leftovers = found.get("leftover_processes") or 0
        note = f" (stopped {leftovers} process(es) it left running)" if leftovers and not found.get("stopped") \
            and not found.get("timed_out") else ""
        if found.get("unreadable"):
            return JobOutcome("lost", None, f"its outcome cannot be read: {found['unreadable']}", None, finished,
                              fault="backend_lost_track")
        ignored = found.get("ignored_stop_s")
        killed = (f"; it ignored the stop (SIGTERM) and was killed (SIGKILL) {ignored:g} s after it was asked to stop"
                  if isinstance(ignored, int | float) and not isinstance(ignored, bool) and found.get("stopped") else "")
        if job_id in self._cancelled:
            return JobOutcome("cancelled", code, f"cancelled{killed}", started, finished)
        if found.get("stopped"):
            why = "its launcher shut down" if job_id in self._abandoned else "its supervisor was told to stop"
            return JobOutcome("lost", code, f"stopped because {why}{killed}; it will be retried", started, finished,
                              fault="stopped_by_hrwsi")
        if found.get("error"):
            return JobOutcome("internal_error", code, found["error"], started, finished)
        if found.get("timed_out"):
            return JobOutcome("internal_error", code, f"timed out after {found.get('timeout_s') or 0:.0f} s; its "
                              "processes were stopped", started, finished)
        if signal_number:
            return JobOutcome("internal_error", -signal_number,
                              f"killed by signal {_signal_name(signal_number)}{_signal_note(signal_number)}{note}",
                              started, finished)
        cut = f"; {found['log_cut']}" if found.get("log_cut") else ""
        if found.get("log_dropped_bytes"):  # (protocol 2; an older supervisor's outcome has no such field)
            cut += (f"; its log reached its cap: {found['log_dropped_bytes']} of the {found.get('log_bytes')} bytes it "
                    "wrote were dropped between its start and its most recent output")
        if found.get("log_failed_bytes"):  # (protocol 2: a write to the log, or a cut of it, failed)
            cut += (f"; {found['log_failed_bytes']} of the {found.get('log_bytes')} bytes it wrote could not be kept in "
                    "its log: its storage failed")
        return JobOutcome.from_exit_code(int(code), started_at=started, finished_at=finished,
                                         detail=f"exit code {code}{_shell_signal_note(int(code))}{note}{cut}")

    def _forget_flags(self, job_id: str) -> None:
        self._cancelled.discard(job_id)
        self._abandoned.discard(job_id)

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        self._cancelled.add(backend_job_id)
        process = self._supervisors.get(backend_job_id)
        if process is not None:
            await self._stop(process)
            return
        attempt_dir = self._adopted.get(backend_job_id, os.path.abspath(spec.attempt_dir))
        if not await asyncio.to_thread(signal_supervisor, attempt_dir, signal.SIGTERM):
            await asyncio.to_thread(stop_orphans, backend_job_id, spec.manifest_path)

    async def stop_all(self) -> None:
        """Stop every job this backend follows (launcher shutdown after its grace period)."""
        self._abandoned.update(self._supervisors)
        self._abandoned.update(self._adopted)
        for attempt_dir in list(self._adopted.values()):
            await asyncio.to_thread(signal_supervisor, attempt_dir, signal.SIGTERM)
        await asyncio.gather(*(self._stop(p) for p in list(self._supervisors.values())))

    @property
    def stop_all_allowance_s(self) -> float:
        # (each supervisor's own grace to stop its routine, SIGTERM then SIGKILL, and the margin _stop gives it)
        return self.grace_s + 5.0

    async def close(self) -> None:
        """Stop watching the supervisors still running (they run on, and an adopter settles them)."""
        for process in self._supervisors.values():
            process.stop_watching()

    async def _stop(self, process: Supervisor) -> None:
        """Ask the supervisor to stop the attempt (it stops the whole process tree and writes the
        outcome); kill it only if it does not end within its own grace period and a margin."""
        if process.returncode is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), self.grace_s + 5.0)
            except TimeoutError:
                logger.error("the supervisor pid %d did not stop within %.0f s: killing it", process.pid,
                             self.grace_s + 5.0)
                process.kill()
        except ProcessLookupError:
            pass


# Why: "killed by signal SIGKILL" and "exit code 137" (a shell's, or a container's, for a command
# that SIGKILL ended) are what a routine out of memory ends with on a local worker, where nothing
# else tells; read as an ordinary failure, ops raised no ram_mb (found by exploratory testing).
# The local backend cannot tell the kernel's OOM killer from a `kill -9`; the system log can.
OOM_HINT = ("the kernel's OOM killer sends it when memory runs out (or someone's kill -9): the system log "
            "(`journalctl -k | grep -i oom`) says which; is its routine's ram_mb enough?")


def _outcome_unwritten(spec: JobSpec) -> JobOutcome:
    """The outcome of an attempt whose supervisor ended with OUTCOME_UNWRITTEN_EXIT_CODE: its directory took
    no started.json (nothing ran) or no exit.json (the routine ran, its outcome is lost), its storage full or
    read-only. Lost to the storage, retried and not charged to the routine, and said as such: the launcher
    had logged a traceback and recorded "the launcher could not follow the job: [Errno 28] No space left on
    device" (backend_lost_track), which `hrwsi status` did not count as the storage's problem. (Blocking.)"""
    started = local_supervisor.read_json(os.path.join(spec.attempt_dir, local_supervisor.STARTED_FILE))
    full = full_storage(spec.attempt_dir)
    storage = f"its storage is full ({full})" if full else "a full or read-only storage?"
    if started is None:
        return JobOutcome("lost", None, f"its attempt directory {spec.attempt_dir} takes no file ({storage}): its "
                          "supervisor could not write started.json and ran nothing; not the routine's fault: it is "
                          "retried", None, _now(), fault="storage_unavailable")
    return JobOutcome("lost", None, f"its outcome could not be written in {spec.attempt_dir} ({storage}): the routine "
                      "ran but how it ended is unknown (the job log's last line says it); not the routine's fault: it "
                      "is retried", _time(started.get("started_at")), _now(), fault="storage_unavailable")


def _signal_note(number: int) -> str:
    return f" ({OOM_HINT})" if number == signal.SIGKILL else ""


def _shell_signal_note(code: int) -> str:
    """What an exit code above 128 most often means: a shell (or a container) reporting a command
    that a signal ended, as 128 + its number (137: SIGKILL, 143: SIGTERM)."""
    number = code - 128
    if not 0 < number < 65:
        return ""
    said = f" (128 + {number}: as a shell says of a command {_signal_name(number)} ended"
    return said + (f"; {OOM_HINT})" if number == signal.SIGKILL else ")")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


SITE_FILE = ".hrwsi-local-site"


def local_site(data_dir: str) -> str:
    """The id of the site whose attempts' files `data_dir` holds, made once and kept there: the
    launchers that share the directory (on one host, or on hosts that mount it) share the id.
    Made aside and linked into place, so that two launchers starting at once read the same id."""
    path = os.path.join(data_dir, SITE_FILE)
    try:
        with open(path, encoding="ascii") as kept:
            return kept.read().strip()
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    aside = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    with open(aside, "w", encoding="ascii") as made:
        made.write(f"{uuid.uuid4()}\n")
        made.flush()
        os.fsync(made.fileno())
    try:
        os.link(aside, path)  # (fails if another launcher linked its id first: that one is kept)
    except FileExistsError:
        pass
    finally:
        os.unlink(aside)
    with open(path, encoding="ascii") as kept:
        return kept.read().strip()


def signal_supervisor(attempt_dir: str, number: int) -> bool:
    """Signal the supervisor running this attempt (checked by its command line, so a recycled pid is
    never signalled); False when none runs."""
    pid = local_supervisor.holder_pid(attempt_dir)
    if pid is None or not local_supervisor.is_supervisor_of(pid, attempt_dir):
        return False
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        return False
    return True


def routine_environment(spec: JobSpec) -> dict[str, str]:
    """The launcher's environment without its secrets (the database URL holds its password; anything named
    like a secret, as Nomad job specs leave out), plus the task's: a routine that prints its environment
    must not put them in its job log."""
    inherited = {name: value for name, value in os.environ.items() if not holds_a_credential(name, value)}
    return {**inherited, **spec.environment()}


def holds_a_credential(name: str, value: str) -> bool:
    """Whether an inherited variable may carry a credential: one of the launcher's settings that does,
    a name like a secret's or an authentication's, or a URL with userinfo."""
    return (name in LAUNCHER_SECRETS or bool(SECRET_NAME.search(name)) or bool(AUTHENTICATION_NAME.search(name))
            or bool(URL_WITH_USERINFO.search(value)))


async def _orphans_stopped(job_id: str, spec: JobSpec) -> str:
    """Stop what is left of an attempt whose supervisor is gone (stop_orphans); the words that say it, or ""."""
    stopped = await asyncio.to_thread(stop_orphans, job_id, spec.manifest_path)
    return f"; stopped orphaned process(es) {', '.join(map(str, stopped))}" if stopped else ""


def stop_orphans(job_id: str, manifest_path: str, grace_s: float = 3.0) -> list[int]:
    """Stop processes of a job left running without their supervisor; their pids. They are found by their
    HRWSI_JOB_ID and HRWSI_MANIFEST together: a job ID (hrwsi-<routine>-<task>-<attempt>) is unique within one
    installation only, and by the ID alone an installation's cancel killed another's routine of the same task
    number on the same machine (two test processes' servers, found by CI; a demo beside production would be
    the same); the manifest's path lies under the attempt's own directory."""
    wanted = os.path.abspath(manifest_path)
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            environment = process.environ()
            if environment.get("HRWSI_JOB_ID") == job_id and \
                    os.path.abspath(environment.get("HRWSI_MANIFEST") or "/") == wanted:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for process in found:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(found, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    if found:
        logger.warning("stopped %d orphaned process(es) of job %s", len(found), job_id)
    return [p.pid for p in found]
