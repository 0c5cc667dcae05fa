"""`hrwsi logs TASK [--attempt N] [--follow]`: an attempt's log, printed as it is.

Every backend's log ends up in the job's `log_path`: the local backend writes the routine's stdout
and stderr there while it runs; the Nomad backend appends the allocation's stdout and stderr there
(read from Nomad) when the job ends, so a Nomad job's log is not available before. The log goes to
stdout byte for byte (it is the routine's output, not markup); what the command says about it goes
to stderr.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import typer

from hrwsi import reports
from hrwsi.cli.common import CliError, app, database, error_console

FOLLOW_POLL_S = 0.5


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
    return (f"the log of {which} is not at {job['log_path']}: it was pruned by the retention policy, or it is on "
            f"the machine of launcher {job['owner'] or '?'}")


def _copy(path: Path, offset: int) -> int:
    """Write the file from `offset` to stdout; the new offset."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            shutil.copyfileobj(log, sys.stdout.buffer)
            offset = log.tell()
    except FileNotFoundError:
        return offset
    sys.stdout.buffer.flush()
    return offset


@app.command()
def logs(task_id: int = typer.Argument(..., help="a task id"),
         attempt: int | None = typer.Option(None, "--attempt", "-a", min=1, max=2**31 - 1,
                                            help="which attempt (default: the latest)"),
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the attempt ends")) -> None:
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
        error_console.print(f"==> task {task_id} attempt {job['attempt']} ({job['backend']} job "
                            f"{job['backend_job_id']}, {job['state']}): {job['log_path'] or '-'}",
                            style="dim", markup=False)
        if not follow:
            if path is None or not path.is_file():
                raise CliError(_not_available(task_id, job))
            _copy(path, 0)
            return
        if job["backend"] == "dry-run" or path is None:
            raise CliError(_not_available(task_id, job))
        _follow(conn, task_id, job["attempt"], path)


def _follow(conn, task_id: int, attempt: int, path: Path) -> None:
    offset = 0
    while True:
        final = reports.job_is_final(conn, task_id, attempt)
        offset = _copy(path, offset)
        if final:
            # The attempt ended before this read: everything it wrote is in the file now.
            if not path.is_file():
                raise CliError(f"task {task_id} attempt {attempt} ended and left no log at {path}")
            return
        time.sleep(FOLLOW_POLL_S)
