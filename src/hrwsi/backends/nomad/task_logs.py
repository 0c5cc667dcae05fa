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


async def save_task_logs(client: NomadClient, spec: JobSpec, alloc: Mapping[str, Any]) -> None:
    """Append the task's stdout and stderr (GET /v1/client/fs/logs/:alloc) to spec.log_path."""
    states = alloc.get("TaskStates") or {}
    task = task_name(spec.routine) if task_name(spec.routine) in states else next(iter(states), None)
    if task is None:
        return
    parts = []
    try:
        for kind in ("stdout", "stderr"):
            response = await asyncio.wait_for(client.call(
                f"read the {kind} of {spec.job_id}", "client.stream_logs", alloc["ID"],
                params={"task": task, "type": kind, "plain": "true", "origin": "start", "offset": "0",
                        "follow": "false"}, retry=False), 60)
            if response.status == 200 and response.text:
                parts.append((kind, response.text))
        if parts:
            header = (f"Nomad job {spec.job_id}, allocation {alloc['ID']} on node "
                      f"{alloc.get('NodeName') or alloc.get('NodeID')}")
            await asyncio.to_thread(_append_log, spec.log_path, header, parts)
    except (TimeoutError, NomadError, OSError) as error:
        logger.debug("could not keep the logs of %s in %s: %s", spec.job_id, spec.log_path, error)
