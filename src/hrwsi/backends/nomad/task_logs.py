"""Keep a finished task's stdout and stderr (read from Nomad) in the attempt's log file; best effort."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrwsi.backends.base import JobSpec
from hrwsi.backends.nomad.client import NomadClient, NomadError, error_text, refuses_the_token
from hrwsi.backends.nomad.job_spec import task_name

logger = logging.getLogger(__name__)


def _append_log(path: str, header: str, parts: list[tuple[str, str]]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8", errors="replace") as log:
        for kind, text in parts:
            log.write(f"=== {header}: {kind} ===\n{text}")
            if not text.endswith("\n"):
                log.write("\n")


def _append_text(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8", errors="replace") as log:
        log.write(text)


# After Nomad refused the logs (HTTP 403), how long before they are asked for again: an ACL policy being
# edited, or a token renewed, refuses for a moment only. Never asked again (until a restart), one 60 s
# blip left 65 attempts without their output: found by exploratory testing.
FORBIDDEN_RETRY_S = 60.0
# The longest a finished task's outcome waits for its stdout and stderr, their transient errors retried.
LOGS_WAIT_S = 30.0
# While the attempts' log directory takes no writes (full, read-only, its permissions), how often it is said again.
UNWRITABLE_SAID_EVERY_S = 600.0


@dataclass
class _Unwritable:
    """Jobs whose logs the disk did not take, in a row: since when (loop time), how many, when last said."""

    since: float
    said: float
    jobs: int = 1


def not_kept_note(spec: JobSpec, alloc: Mapping[str, Any], why: str, what: str = "stdout and stderr") -> str:
    """The line a log file gets instead of the task's output, so that `hrwsi logs` says why it is missing."""
    return (f"=== Nomad job {spec.job_id}, allocation {alloc.get('ID')}: hrwsi could not keep the task's {what}"
            f": {why}; while Nomad keeps the allocation, `nomad alloc logs {alloc.get('ID')}` shows "
            "them ===\n")


class TaskLogs:
    """Keeps finished tasks' stdout and stderr (GET /v1/client/fs/logs/:alloc) in their attempts' log files."""

    def __init__(self, client: NomadClient, *, forbidden_retry_s: float = FORBIDDEN_RETRY_S):
        self.client = client
        self.forbidden_retry_s = forbidden_retry_s
        # (loop time, Nomad's text) of the latest refusal while logs are refused: said once, asked again
        # forbidden_retry_s later, and said again once they are served.
        self.forbidden: tuple[float, str] | None = None
        # The log directory refusing writes (ENOSPC, EACCES, EROFS): said once, then every UNWRITABLE_SAID_EVERY_S
        # with how many jobs since, and once when a log is kept again. Each job said it: one warning per finished
        # job while the disk stayed full (found by rehearsal).
        self.unwritable: _Unwritable | None = None

    async def save(self, spec: JobSpec, alloc: Mapping[str, Any]) -> None:
        """Append the task's stdout and stderr to spec.log_path; best effort, failures are logged, and the
        log file says why it holds no output (a line of not_kept_note)."""
        states = alloc.get("TaskStates") or {}
        task = task_name(spec.routine) if task_name(spec.routine) in states else next(iter(states), None)
        if task is None:
            return
        now = asyncio.get_running_loop().time()
        if self.forbidden is not None and now - self.forbidden[0] < self.forbidden_retry_s:
            await self._note(spec, alloc, self._forbidden_why(self.forbidden[1]))
            return
        parts, failed = [], []
        try:
            # Transient answers (a gateway's 502, a 429, a 500 of the client agent) are asked again, within
            # LOGS_WAIT_S in all: the outcome waits for this. Asked once, such an answer was taken for a task that
            # wrote nothing, and the log said "no stdout, no stderr" of a routine that wrote both (found by
            # exploratory testing).
            async with asyncio.timeout(LOGS_WAIT_S):
                for kind in ("stdout", "stderr"):
                    response = await self.client.call(
                        f"read the {kind} of {spec.job_id}", "client.stream_logs", alloc["ID"],
                        params={"task": task, "type": kind, "plain": "true", "origin": "start", "offset": "0",
                                "follow": "false"})
                    if refuses_the_token(response):  # (403 from the allocation's client, 500 through the servers)
                        refusal = f"HTTP {response.status}: {' '.join(error_text(response.text).split())[:200]}"
                        self._refused(refusal)
                        await self._note(spec, alloc, self._forbidden_why(refusal))
                        return
                    if response.status != 200:
                        failed.append((kind, f"Nomad answered HTTP {response.status}: "
                                             f"{' '.join(error_text(response.text).split())[:200]}"))
                    elif response.text:
                        parts.append((kind, response.text))
            self._served()
            header = (f"Nomad job {spec.job_id}, allocation {alloc['ID']} on node "
                      f"{alloc.get('NodeName') or alloc.get('NodeID')}")
            # A task that wrote nothing still has its log (the header alone), as on the local backend:
            # without a file, `hrwsi logs` said it was pruned by retention (found by exploratory testing).
            if parts or not failed:
                try:
                    await asyncio.to_thread(_append_log, spec.log_path, header, parts or [("no stdout, no stderr", "")])
                except OSError as error:
                    self._not_written(spec, error)
                    return
                self._written()
            if failed:
                logger.warning("could not keep the %s of %s in %s: %s", " and ".join(k for k, _ in failed),
                               spec.job_id, spec.log_path, failed[0][1])
                await self._note(spec, alloc, failed[0][1], " and ".join(k for k, _ in failed))
        except (TimeoutError, NomadError, OSError) as error:
            why = f"Nomad did not serve them within {LOGS_WAIT_S:g} s" if isinstance(error, TimeoutError) else str(error)
            logger.warning("could not keep the logs of %s in %s: %s", spec.job_id, spec.log_path, why)
            if not isinstance(error, OSError):
                await self._note(spec, alloc, f"reading them from Nomad failed ({why})")

    @staticmethod
    def _forbidden_why(text: str) -> str:
        return f"Nomad refused to show them ({text}); the launcher's token needs the read-logs capability"

    async def _note(self, spec: JobSpec, alloc: Mapping[str, Any], why: str, what: str = "stdout and stderr") -> None:
        try:
            await asyncio.to_thread(_append_text, spec.log_path, not_kept_note(spec, alloc, why, what))
        except OSError as error:
            logger.debug("could not write in %s why the logs of %s were not kept: %s", spec.log_path, spec.job_id,
                         error)

    def _not_written(self, spec: JobSpec, error: OSError) -> None:
        """The disk did not take a job's log: the first said with what happens, the next counted and said every
        UNWRITABLE_SAID_EVERY_S while it lasts."""
        now = asyncio.get_running_loop().time()
        trouble = self.unwritable
        if trouble is None:
            self.unwritable = _Unwritable(since=now, said=now)
            logger.warning("could not keep the logs of %s in %s: %s; the jobs' outcomes are recorded all the same "
                           "(their output stays in Nomad while it keeps their allocations: `nomad alloc logs`); the "
                           "next jobs whose logs cannot be kept are counted and said every %g s, until one is kept "
                           "again", spec.job_id, spec.log_path, error, UNWRITABLE_SAID_EVERY_S)
            return
        trouble.jobs += 1
        if now - trouble.said >= UNWRITABLE_SAID_EVERY_S:
            trouble.said = now
            logger.warning("still could not keep the logs of %d job(s) in %.0f s (the latest, %s in %s: %s); their "
                           "outcomes are recorded all the same", trouble.jobs, now - trouble.since, spec.job_id,
                           spec.log_path, error)

    def _written(self) -> None:
        if (trouble := self.unwritable) is not None:
            self.unwritable = None
            logger.info("job logs are kept again (after %d job(s) whose logs could not be kept in %.0f s)",
                        trouble.jobs, asyncio.get_running_loop().time() - trouble.since)

    def _refused(self, text: str) -> None:
        # The fs logs endpoint needs read-logs (or read-fs) in the job's namespace (client/fs_endpoint.go).
        if self.forbidden is None:
            logger.warning("Nomad refused to show task logs (%s): the launcher's token needs the "
                           "read-logs capability (see nomad-jobs/README.md); until it has, each job's log says "
                           "its output was not kept, and the logs are asked for again every %g s",
                           text, self.forbidden_retry_s)
        self.forbidden = (asyncio.get_running_loop().time(), text)

    def _served(self) -> None:
        if self.forbidden is not None:
            logger.info("Nomad shows task logs again: job logs hold the tasks' output again")
            self.forbidden = None
