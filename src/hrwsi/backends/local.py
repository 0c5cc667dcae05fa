"""The local backend: each attempt is a subprocess on this machine.

The routine's command runs with the task's metadata in its environment and arguments; stdout and
stderr go to the job's log file. It inherits the launcher's environment minus the launcher's secrets
(routine_environment), as a Nomad client keeps its own out of tasks. Processes run in their own
session so a stopping launcher can stop a whole process group. A local job does not survive its
launcher: a job adopted after a crash is found by its HRWSI_JOB_ID environment variable, stopped,
and reported lost (retried).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import UTC, datetime

import psutil

from hrwsi.backends.base import SECRET_NAME, Backend, JobOutcome, JobSpec, ProgressCallback

logger = logging.getLogger(__name__)

# The launcher's settings that carry credentials without being named like a secret.
LAUNCHER_SECRETS = ("HRWSI_DATABASE_URL", "HRWSI_ALERT_WEBHOOK_URL")


def _now() -> datetime:
    return datetime.now(UTC)


class LocalBackend(Backend):
    name = "local"
    resubmit_is_idempotent = False
    jobs_outlive_launcher = False  # its processes die with the launcher: a stopping launcher stops them

    def __init__(self, max_parallel_jobs: int = 64):
        self.max_concurrent_jobs = max_parallel_jobs
        self._slots = asyncio.Semaphore(max_parallel_jobs)
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._started: dict[str, datetime] = {}
        self._cancelled: set[str] = set()
        self._abandoned: set[str] = set()  # stopped because the launcher shuts down

    async def submit(self, spec: JobSpec) -> str:
        if spec.job_id in self._processes:
            return spec.job_id  # already running here: submitting again changes nothing
        if not spec.command:
            raise ValueError(f"routine {spec.routine} has no command; the local backend cannot run an image")
        await self._slots.acquire()
        try:
            await asyncio.to_thread(spec.prepare_paths)
            log = await asyncio.to_thread(open, spec.log_path, "ab")
            try:
                process = await asyncio.create_subprocess_exec(
                    *spec.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                    env=routine_environment(spec), cwd=spec.output_dir, start_new_session=True)
            finally:
                log.close()
        except BaseException:
            self._slots.release()
            raise
        self._processes[spec.job_id] = process
        self._started[spec.job_id] = _now()
        return spec.job_id

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        process = self._processes.get(backend_job_id)
        if process is None:
            stopped = await asyncio.to_thread(stop_orphans, backend_job_id)
            detail = f" (stopped orphaned process {', '.join(map(str, stopped))})" if stopped else ""
            return JobOutcome("lost", None, f"no process of this launcher runs job {backend_job_id}; "
                              f"its launcher stopped before it ended{detail}", None, _now(), fault="launcher_gone")
        try:
            await on_progress("running", f"pid {process.pid}")
            try:
                exit_code = await asyncio.wait_for(process.wait(), spec.timeout_s)
            except TimeoutError:
                await self._stop(process)
                return JobOutcome("internal_error", None, f"timed out after {spec.timeout_s:.0f} s; stopped",
                                  self._started.get(backend_job_id), _now())
            if backend_job_id in self._abandoned:
                return JobOutcome("lost", exit_code, "stopped because its launcher shut down; it will be retried",
                                  self._started.get(backend_job_id), _now(), fault="stopped_by_hrwsi")
            if backend_job_id in self._cancelled:
                return JobOutcome("cancelled", exit_code, "cancelled", self._started.get(backend_job_id), _now())
            if exit_code < 0:
                return JobOutcome("internal_error", exit_code,
                                  f"killed by signal {signal.Signals(-exit_code).name}",
                                  self._started.get(backend_job_id), _now())
            return JobOutcome.from_exit_code(exit_code, started_at=self._started.get(backend_job_id),
                                             finished_at=_now(), detail=f"exit code {exit_code}")
        finally:
            self._processes.pop(backend_job_id, None)
            self._started.pop(backend_job_id, None)
            self._cancelled.discard(backend_job_id)
            self._abandoned.discard(backend_job_id)
            self._slots.release()

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        process = self._processes.get(backend_job_id)
        if process is None:
            await asyncio.to_thread(stop_orphans, backend_job_id)
            return
        self._cancelled.add(backend_job_id)
        await self._stop(process)

    async def stop_all(self) -> None:
        """Stop every job this backend runs (launcher shutdown after its grace period)."""
        self._abandoned.update(self._processes)
        await asyncio.gather(*(self._stop(p) for p in list(self._processes.values())))

    async def _stop(self, process: asyncio.subprocess.Process, grace_s: float = 5.0) -> None:
        if process.returncode is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        except ProcessLookupError:
            pass


def routine_environment(spec: JobSpec) -> dict[str, str]:
    """The launcher's environment without its secrets (the database URL holds its password; anything named
    like a secret, as Nomad job specs leave out), plus the task's: a routine that prints its environment
    must not put them in its job log."""
    inherited = {name: value for name, value in os.environ.items()
                 if name not in LAUNCHER_SECRETS and not SECRET_NAME.search(name)}
    return {**inherited, **spec.environment()}


def stop_orphans(job_id: str, grace_s: float = 3.0) -> list[int]:
    """Stop processes left running by a launcher that died (found by HRWSI_JOB_ID); return their pids."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("HRWSI_JOB_ID") == job_id:
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

