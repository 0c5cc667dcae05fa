"""What the routines' own execution ledger says about a fault-injection run (hrwsi.testing.chaos_routine
writes it): executions the database cannot hide.

- attempts executed more than once: one (task, attempt) started by two processes;
- executions after their job was recorded final: a routine that started, or ended, after the moment
  its job row became final (`job.updated_at`), e.g. started by a paused launcher after another one
  recorded the attempt lost;
- finished work redone: an attempt whose routine wrote its product and ended whose task then ran
  another attempt, unless a fault destroyed that work (the harness killed the routine, or its
  allocation was lost with its node or with Nomad's state before the end was reported): those are
  counted apart, as work the fault destroyed.
- an attempt a restarted Nomad client ran again (it could not reattach to the routine: Nomad runs
  the task again from the start, client/allocrunner/taskrunner/task_runner.go) is counted apart
  from the attempts run twice: Nomad's doing, which hrwsi cannot prevent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

FINAL_JOB_STATES = ("processed", "internal_error", "external_error", "lost", "cancelled")


@dataclass
class Execution:
    task: int
    attempt: int
    job: str
    pid: int
    started: float
    ended: float | None = None


@dataclass
class LedgerFigures:
    executions: int = 0
    attempts_run_twice: int = 0
    executions_after_final: int = 0
    finished_work_redone: int = 0
    redone_after_a_fault_destroyed_it: int = 0
    attempts_rerun_by_nomad: int = 0
    # How the thrown-away attempts were recorded (job state / fault), for the report.
    redone_as: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def read_ledger(path: Path) -> list[Execution]:
    """Executions in start order; an `end` line closes the execution of the same job and pid."""
    executions: list[Execution] = []
    open_ones: dict[tuple[str, int], Execution] = {}
    if not path.exists():
        return executions
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        key = (entry["job"], entry["pid"])
        if entry["event"] == "start":
            execution = Execution(entry["task"], entry["attempt"], entry["job"], entry["pid"], entry["at"])
            executions.append(execution)
            open_ones[key] = execution
        elif entry["event"] == "end" and key in open_ones:
            open_ones.pop(key).ended = entry["at"]
    return executions


def ledger_figures(executions: list[Execution], jobs: dict[tuple[int, int], tuple[str, str | None, float]],
                   destroyed: set[tuple[int, int]],
                   rerun_by_nomad: AbstractSet[tuple[int, int]] = frozenset()) -> LedgerFigures:
    """jobs: (task, attempt) -> (state, fault, epoch when it became final, or +inf while active);
    destroyed: the (task, attempt) whose work a fault destroyed on purpose; rerun_by_nomad: those a
    restarted Nomad client ran again."""
    figures = LedgerFigures(executions=len(executions))
    runs = Counter((e.task, e.attempt) for e in executions)
    for (task, attempt), count in runs.items():
        if count > 1 and (task, attempt) in rerun_by_nomad:
            figures.attempts_rerun_by_nomad += 1
        elif count > 1:
            figures.attempts_run_twice += 1
            figures.examples.append(f"task {task} attempt {attempt} executed {count} times")
    latest_attempt: dict[int, int] = {}
    for e in executions:
        latest_attempt[e.task] = max(latest_attempt.get(e.task, 0), e.attempt)
    for e in executions:
        state, fault, final_at = jobs.get((e.task, e.attempt), ("unknown", None, float("inf")))
        if e.started > final_at or (e.ended is not None and e.ended > final_at):
            figures.executions_after_final += 1
            figures.examples.append(f"task {e.task} attempt {e.attempt} (pid {e.pid}) ran after its job was "
                                    f"recorded {state}")
        if e.ended is None or latest_attempt[e.task] <= e.attempt:
            continue
        if (e.task, e.attempt) in destroyed:
            figures.redone_after_a_fault_destroyed_it += 1
        else:
            figures.finished_work_redone += 1
            figures.redone_as[f"{state}/{fault or '-'}"] += 1
            figures.examples.append(f"task {e.task} attempt {e.attempt} finished its work, was recorded "
                                    f"{state} ({fault or 'no fault'}) and the task ran attempt {latest_attempt[e.task]}")
    return figures
