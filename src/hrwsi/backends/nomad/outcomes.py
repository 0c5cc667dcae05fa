"""How an attempt ended, read from Nomad's allocation; why it waits, read from its evaluation. Pure.

- Terminated with exit code N: JobOutcome.from_exit_code (0 processed, 210 external_error, else
  internal_error); out of memory or killed by a signal: internal_error.
- A failure event (Driver Failure, Failed Validation, Setup Failure, ...), or a Killing event that
  fails the task (a template that failed: "Template failed: ...", client/allocrunner/taskrunner/
  template/template.go): internal_error with Nomad's message, so a broken routine is counted.
- Killed otherwise: cancelled (the launcher asked), internal_error (over its timeout) or lost
  (stopped in Nomad by someone else: it runs again as a new attempt, and the message says what stops
  the work, `hrwsi cancel` or `hrwsi hold`).
- Failed Restoring Task is not an end: a client that restarted and could not reattach to its task
  sets it back to pending and, still wanted by the servers, runs it again from the start
  (client/allocrunner/taskrunner/task_runner.go, Restore). The outcome is the last run's, and says
  how many runs the allocation had.
- Event fields are read from `Details` first: ExitCode, Signal, DriverError, ... are deprecated in
  favour of Details[...] (nomad/structs/structs.go TaskEvent).
- A blocked evaluation's FailedTGAllocs in one line: "Resources exhausted on 2 nodes: memory".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hrwsi.backends.ascii_decimal import signed_ascii_decimal
from hrwsi.backends.base import JobOutcome, JobSpec
from hrwsi.backends.nomad.job_spec import NS, task_name
from hrwsi.terminal import shown

# Task event types that end a task as failed (nomad/structs/structs.go, TaskSetupFailure ...).
FAILURE_EVENTS = ("Setup Failure", "Driver Failure", "Failed Validation", "Failed Artifact Download",
                  "Task hook failed", "Disk Resources Exceeded", "Sibling Task Failed")
# Its client restarted and lost the task's process: the task waits for the servers and runs again.
RESTORE_FAILED = "Failed Restoring Task"
# (Details key, deprecated field) of the messages a failure event may carry, in the order they explain it.
FAILURE_DETAILS = (("driver_error", "DriverError"), ("setup_error", "SetupError"),
                   ("validation_error", "ValidationError"), ("download_error", "DownloadError"))


def detail(event: Mapping[str, Any], key: str, deprecated: str) -> str:
    """A task event's value from Details[key], else from its deprecated field ("" when neither has it)."""
    value = (event.get("Details") or {}).get(key)
    if value not in (None, ""):
        return str(value)
    old = event.get(deprecated)
    return "" if old in (None, False) else str(old)


def _int_detail(event: Mapping[str, Any], key: str, deprecated: str) -> int | None:
    """The detail as a whole number, 0 when absent, None when it is no number: ASCII digits, perhaps after a minus.
    int() read an exit code '1_0' as 10 and '\u0663' as 3 (found by review); one that is no number is not taken for
    0, a success."""
    return signed_ascii_decimal(detail(event, key, deprecated).strip() or "0")


def fails_task(event: Mapping[str, Any]) -> bool:
    return detail(event, "fails_task", "FailsTask").lower() == "true"


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


def restore_failures(alloc: Mapping[str, Any], routine: str | None = None) -> int:
    """How many times the task's client restarted without reattaching to it (each time it ran again)."""
    return sum(1 for e in task_state(alloc, routine).get("Events") or [] if e.get("Type") == RESTORE_FAILED)


def rerun_note(alloc: Mapping[str, Any], routine: str | None = None) -> str:
    """What a reader of the outcome must know when the task's client lost it: how often it restarted
    without reattaching, and how many times the routine started in the allocation."""
    failures = restore_failures(alloc, routine)
    if not failures:
        return ""
    starts = sum(1 for e in task_state(alloc, routine).get("Events") or [] if e.get("Type") == "Started")
    return (f"Nomad's client restarted {failures} time(s) without reattaching to the routine, which started "
            f"{starts} time(s) in {where(alloc)} (a task its client cannot restore runs again from the start)")


def allocation_outcome(alloc: Mapping[str, Any], spec: JobSpec, *, cancelled: bool, timed_out: bool,
                       job_stopped: bool = False, job_purged: bool = False) -> JobOutcome:
    """The outcome of an allocation that is complete or failed (with the note of rerun_note). `job_stopped`:
    the job's Stop flag was seen set, and not by hrwsi (an admin's `nomad job stop`); `job_purged`: the job
    was purged, and not by hrwsi (`nomad job stop -purge`)."""
    outcome = _allocation_outcome(alloc, spec, cancelled=cancelled, timed_out=timed_out,
                                  job_stopped=job_stopped or job_purged, job_purged=job_purged)
    note = rerun_note(alloc, spec.routine)
    return dataclasses.replace(outcome, message=f"{outcome.message}; {note}") if note else outcome


def _allocation_outcome(alloc: Mapping[str, Any], spec: JobSpec, *, cancelled: bool, timed_out: bool,
                        job_stopped: bool, job_purged: bool) -> JobOutcome:
    events = task_state(alloc, spec.routine).get("Events") or []
    started, finished = task_times(alloc, spec.routine)
    finished = finished or datetime.now(UTC)
    types = [e.get("Type") for e in events]
    terminated = next((e for e in reversed(events) if e.get("Type") == "Terminated"), None)
    failure = next((e for e in reversed(events) if e.get("Type") in FAILURE_EVENTS
                    or (e.get("Type") == "Killing" and fails_task(e))), None)
    if failure is not None and not cancelled and not timed_out:
        return JobOutcome("internal_error", _int_detail(terminated, "exit_code", "ExitCode") if terminated else None,
                          f"Nomad {failure.get('Type')}: {_failure_message(failure)} ({where(alloc)})",
                          started, finished)
    if "Killed" in types or "Killing" in types or (alloc.get("DesiredStatus") == "stop" and terminated is None):
        return _killed(alloc, spec, terminated, started, finished, cancelled=cancelled, timed_out=timed_out,
                       job_stopped=job_stopped, job_purged=job_purged)
    if terminated is not None:
        return _terminated(alloc, spec, terminated, started, finished)
    return JobOutcome("internal_error", None, f"{where(alloc)} ended {alloc.get('ClientStatus')} without a task exit "
                                              f"({alloc.get('ClientDescription') or 'no task event'})",
                      started, finished)


def _failure_message(event: Mapping[str, Any]) -> str:
    for key, deprecated in FAILURE_DETAILS:
        message = detail(event, key, deprecated)
        if message:
            return message
    return event.get("DisplayMessage") or event.get("Message") or event.get("Type") or "failed"


def waiting_reason(alloc: Mapping[str, Any], routine: str | None = None) -> str:
    """Why a pending allocation has not started, when Nomad says (a template's missing Variable), else ""."""
    for event in reversed(task_state(alloc, routine).get("Events") or []):
        message = event.get("DisplayMessage") or ""
        if event.get("Type") == "Template" and message.startswith("Missing: "):
            return f"a template waits for what does not exist yet ({message})"
    return ""


def stop_the_work(spec: JobSpec) -> str:
    """What stops an attempt's work for good: a job stopped in Nomad is hrwsi's lost attempt, run again."""
    return (f"it runs again as a new attempt; to stop the work, `hrwsi cancel {spec.task_id}` (this task) or "
            f"`hrwsi hold {spec.routine}` (the routine)")


def _killed(alloc: Mapping[str, Any], spec: JobSpec, terminated: Mapping[str, Any] | None,
            started: datetime | None, finished: datetime, *, cancelled: bool, timed_out: bool,
            job_stopped: bool, job_purged: bool = False) -> JobOutcome:
    if cancelled:
        return JobOutcome("cancelled", _int_detail(terminated, "exit_code", "ExitCode") if terminated else None,
                          f"cancelled: the Nomad job was stopped ({where(alloc)})", started, finished)
    if timed_out:
        return JobOutcome("internal_error", None, f"timed out after {spec.timeout_s:.0f} s; the Nomad job was stopped",
                          started, finished)
    # Not hrwsi: an admin's `nomad job stop` (the job's Stop flag), or a drain or preemption. hrwsi owns the
    # retries (RestartPolicy and ReschedulePolicy 0), so the attempt is lost and the task runs again:
    # found by exploratory testing, the admin saw the job back as attempt N+1 and nothing said why.
    if job_purged:  # (its allocation's "alloc not needed due to job update" said nothing of it)
        return JobOutcome("lost", None, f"the Nomad job was stopped and purged in Nomad by someone other than hrwsi "
                                        f"(`nomad job stop -purge`?) before it ended ({where(alloc)}); "
                                        f"{stop_the_work(spec)}", started, finished)
    if job_stopped:
        return JobOutcome("lost", None, f"the Nomad job was stopped in Nomad by someone other than hrwsi (`nomad job "
                                        f"stop`?) before it ended ({where(alloc)}); {stop_the_work(spec)}",
                          started, finished)
    return JobOutcome("lost", None, f"{where(alloc)} was stopped in Nomad, not by hrwsi, before it ended "
                                    f"({alloc.get('DesiredDescription') or 'killed'}); {stop_the_work(spec)}",
                      started, finished)


def _terminated(alloc: Mapping[str, Any], spec: JobSpec, terminated: Mapping[str, Any],
                started: datetime | None, finished: datetime) -> JobOutcome:
    code = _int_detail(terminated, "exit_code", "ExitCode")
    sig = _int_detail(terminated, "signal", "Signal")
    if code is None or sig is None:
        said = shown(detail(terminated, "exit_code", "ExitCode") if code is None else detail(terminated, "signal", "Signal"))
        return JobOutcome("internal_error", code, f"Nomad said the task ended with {'exit code' if code is None else 'signal'} "
                                                  f"{said}, which is no number ({where(alloc)})", started, finished)
    if str((terminated.get("Details") or {}).get("oom_killed", "")).lower() == "true":
        return JobOutcome("internal_error", code, f"out of memory: killed at its {spec.ram_mb} MB "
                                                  f"limit (exit code {code}; {where(alloc)})", started, finished)
    if sig:
        return JobOutcome("internal_error", code, f"killed by signal {sig} (exit code {code}; {where(alloc)})",
                          started, finished)
    return JobOutcome.from_exit_code(code, started_at=started, finished_at=finished,
                                     detail=f"exit code {code} ({where(alloc)})")
