"""Keep a finished task's stdout and stderr (read from Nomad) in the attempt's log file; best effort."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hrwsi.backends.base import JobSpec
from hrwsi.backends.nomad.client import NomadClient, NomadError
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


class TaskLogs:
    """Keeps finished tasks' stdout and stderr (GET /v1/client/fs/logs/:alloc) in their attempts' log files."""

    def __init__(self, client: NomadClient):
        self.client = client
        self.forbidden = False  # the token lacks read-logs: said once, then not asked again

    async def save(self, spec: JobSpec, alloc: Mapping[str, Any]) -> None:
        """Append the task's stdout and stderr to spec.log_path; best effort, failures are logged."""
        states = alloc.get("TaskStates") or {}
        task = task_name(spec.routine) if task_name(spec.routine) in states else next(iter(states), None)
        if task is None or self.forbidden:
            return
        parts = []
        try:
            for kind in ("stdout", "stderr"):
                response = await asyncio.wait_for(self.client.call(
                    f"read the {kind} of {spec.job_id}", "client.stream_logs", alloc["ID"],
                    params={"task": task, "type": kind, "plain": "true", "origin": "start", "offset": "0",
                            "follow": "false"}, retry=False), 60)
                if response.status == 403:
                    self._refused(response.text)
                    return
                if response.status == 200 and response.text:
                    parts.append((kind, response.text))
            header = (f"Nomad job {spec.job_id}, allocation {alloc['ID']} on node "
                      f"{alloc.get('NodeName') or alloc.get('NodeID')}")
            # A task that wrote nothing still has its log (the header alone), as on the local backend:
            # without a file, `hrwsi logs` said it was pruned by retention (found by exploratory testing).
            await asyncio.to_thread(_append_log, spec.log_path, header, parts or [("no stdout, no stderr", "")])
        except (TimeoutError, NomadError, OSError) as error:
            logger.warning("could not keep the logs of %s in %s: %s", spec.job_id, spec.log_path, error)

    def _refused(self, text: str) -> None:
        # The fs logs endpoint needs read-logs (or read-fs) in the job's namespace (client/fs_endpoint.go).
        self.forbidden = True
        logger.warning("Nomad refused to show task logs (HTTP 403: %s): the launcher's token needs the "
                       "read-logs capability (see nomad-jobs/README.md); job logs will not hold the tasks' "
                       "output until the launcher restarts with such a token", text.strip()[:200])
