"""How an attempt ended, read from Nomad's allocation; why it waits, read from its evaluation. Pure.

- Terminated with exit code N: JobOutcome.from_exit_code (0 processed, 210 external_error, else
  internal_error); out of memory or killed by a signal: internal_error.
- A failure event (Driver Failure, Setup Failure, ...): internal_error with Nomad's message.
- Killed: cancelled (the launcher asked), internal_error (over its timeout) or lost (stopped in
  Nomad by someone else).
- A blocked evaluation's FailedTGAllocs in one line: "Resources exhausted on 2 nodes: memory".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hrwsi.backends.base import JobOutcome, JobSpec
from hrwsi.backends.nomad.job_spec import NS, task_name

FAILURE_EVENTS = ("Setup Failure", "Failed Validating Task Config", "Failed Artifact Download", "Template",
                  "Failed Restoring Task", "Task hook failed", "Driver Failure")


def describe_placement_failure(failed: Mapping[str, Any] | None) -> str:
    """Nomad's FailedTGAllocs (AllocMetric per group) in one line: 'Resources exhausted on 2 nodes: memory'."""
    if not failed:
        return ""
    lines = []
    for group, metric in sorted(failed.items()):
        pieces = _metric_pieces(metric or {})
        lines.append(("" if len(failed) == 1 else f"group {group}: ") + "; ".join(pieces))
    return " | ".join(lines)


def _metric_pieces(metric: Mapping[str, Any]) -> list[str]:
    pieces = []
    if not metric.get("NodesEvaluated"):
        in_pool = metric.get("NodesInPool")
        pieces.append("no ready, eligible node in the job's datacenters and node pool"
                      + (f" ({in_pool} node(s) in the pool)" if in_pool is not None else ""))
    exhausted = metric.get("NodesExhausted") or 0
    if exhausted:
        dimensions = ", ".join(sorted((metric.get("DimensionExhausted") or {}).keys()))
        pieces.append(f"Resources exhausted on {exhausted} nodes" + (f": {dimensions}" if dimensions else ""))
    for constraint, count in sorted((metric.get("ConstraintFiltered") or {}).items()):
        pieces.append(f'Constraint "{constraint}" filtered {count} nodes')
    quota = metric.get("QuotaExhausted")
    if quota:
        pieces.append(f"Quota exhausted: {', '.join(quota)}")
    return pieces or ["no node can run it now"]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time of Nomad's (nanosecond fraction); None for Go's zero time."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not match:
        return None
    fraction = (match.group(2) or "")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)


def event_time(ns: Any) -> datetime | None:
    """A task event's Time (Unix nanoseconds)."""
    try:
        return datetime.fromtimestamp(int(ns) / NS, UTC) if ns else None
    except (TypeError, ValueError, OverflowError):
        return None


def where(alloc: Mapping[str, Any]) -> str:
    return f"allocation {alloc['ID'][:8]} on node {alloc.get('NodeName') or alloc.get('NodeID')}"


def task_state(alloc: Mapping[str, Any], routine: str | None = None) -> dict:
    """The routine's task state in the allocation (its only task if the name does not match)."""
    states = alloc.get("TaskStates") or {}
    if routine is not None and task_name(routine) in states:
        return states[task_name(routine)]
    return next(iter(states.values()), {}) if states else {}


def task_times(alloc: Mapping[str, Any], routine: str | None = None) -> tuple[datetime | None, datetime | None]:
    state = task_state(alloc, routine)
    events = state.get("Events") or []
    started = parse_time(state.get("StartedAt")) or next(
        (event_time(e.get("Time")) for e in events if e.get("Type") == "Started"), None)
    finished = parse_time(state.get("FinishedAt")) or (event_time(events[-1].get("Time")) if events else None)
    return started, finished


def allocation_outcome(alloc: Mapping[str, Any], spec: JobSpec, *, cancelled: bool, timed_out: bool) -> JobOutcome:
    """The outcome of an allocation that is complete or failed."""
    events = task_state(alloc, spec.routine).get("Events") or []
    started, finished = task_times(alloc, spec.routine)
    finished = finished or datetime.now(UTC)
    types = [e.get("Type") for e in events]
    terminated = next((e for e in reversed(events) if e.get("Type") == "Terminated"), None)
    if "Killed" in types or "Killing" in types or (alloc.get("DesiredStatus") == "stop" and terminated is None):
        return _killed(alloc, spec, terminated, started, finished, cancelled=cancelled, timed_out=timed_out)
    if terminated is not None:
        return _terminated(alloc, spec, terminated, started, finished)
    failure = next((e for e in reversed(events) if any(e.get("Type", "").startswith(f) for f in FAILURE_EVENTS)),
                   None)
    if failure is not None:
        message = failure.get("DriverError") or failure.get("SetupError") or failure.get("DisplayMessage") \
            or failure.get("Message") or failure.get("Type")
        return JobOutcome("internal_error", None, f"Nomad {failure.get('Type')}: {message} ({where(alloc)})",
                          started, finished)
    return JobOutcome("internal_error", None, f"{where(alloc)} ended {alloc.get('ClientStatus')} without a task exit "
                                              f"({alloc.get('ClientDescription') or 'no task event'})",
                      started, finished)


def _killed(alloc: Mapping[str, Any], spec: JobSpec, terminated: Mapping[str, Any] | None,
            started: datetime | None, finished: datetime, *, cancelled: bool, timed_out: bool) -> JobOutcome:
    if cancelled:
        return JobOutcome("cancelled", terminated.get("ExitCode") if terminated else None,
                          f"cancelled: the Nomad job was stopped ({where(alloc)})", started, finished)
    if timed_out:
        return JobOutcome("internal_error", None, f"timed out after {spec.timeout_s:.0f} s; the Nomad job was stopped",
                          started, finished)
    return JobOutcome("lost", None, f"{where(alloc)} was stopped in Nomad before it ended "
                                    f"({alloc.get('DesiredDescription') or 'killed'})", started, finished)


def _terminated(alloc: Mapping[str, Any], spec: JobSpec, terminated: Mapping[str, Any],
                started: datetime | None, finished: datetime) -> JobOutcome:
    code = int(terminated.get("ExitCode") or 0)
    details = terminated.get("Details") or {}
    sig = int(terminated.get("Signal") or 0)
    if str(details.get("oom_killed", "")).lower() == "true":
        return JobOutcome("internal_error", code, f"out of memory: killed at its {spec.ram_mb} MB "
                                                  f"limit (exit code {code}; {where(alloc)})", started, finished)
    if sig:
        return JobOutcome("internal_error", code, f"killed by signal {sig} (exit code {code}; {where(alloc)})",
                          started, finished)
    return JobOutcome.from_exit_code(code, started_at=started, finished_at=finished,
                                     detail=f"exit code {code} ({where(alloc)})")
