"""The planner's vocabulary: workers and their flavours, budgets, tasks to plan, tasks already running, and
the plan it returns (assignments, unplannable tasks, figures). Plain frozen dataclasses, no behaviour beyond
turning a plan into JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Flavour:
    name: str
    cpu: float
    ram_mb: int
    disk_mb: int


@dataclass(frozen=True)
class Worker:
    name: str
    flavour: Flavour


@dataclass(frozen=True)
class Budgets:
    """Limits over everything running at one instant; None = unlimited."""

    cpu_max: float | None = None
    ram_max_mb: int | None = None
    storage_max_mb: int | None = None
    vm_max: int | None = None


@dataclass(frozen=True)
class TaskDemand:
    id: int
    routine: str
    cpu: float
    ram_mb: int
    storage_mb: int
    duration_s: float
    depends_on: tuple[int, ...] = ()  # must END before this starts; unknown ids count as finished
    earliest_start_s: float = 0.0  # retry backoff
    flavour: str | None = None  # only workers of this flavour may run it
    priority: int = 0  # lane: smaller is more urgent (e.g. 0 near-real-time, 1 archive back-fill)
    deadline_s: float | None = None  # should END by then (seconds after the plan's time zero); None: no deadline
    # The worker the backend could not place its last attempt on: not planned there (the caller passes it
    # only while another worker of a flavour it fits exists: planning_input.screen). None: any.
    avoid_worker: str | None = None


@dataclass(frozen=True)
class FixedTask:
    """Already dispatched or running: stays where it is and occupies its worker and the budgets."""

    id: int
    worker: str
    cpu: float
    ram_mb: int
    storage_mb: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Assignment:
    task_id: int
    worker: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Unplannable:
    task_id: int
    reason: str


@dataclass(frozen=True)
class LateTask:
    """A planned task that ends after its deadline."""

    task_id: int
    planned_end_s: float
    deadline_s: float


@dataclass(frozen=True)
class PlanFigures:
    task_count: int
    makespan_s: float
    lower_bound_s: float
    vms: int
    vm_hours: float
    peak_use: dict[str, float]  # "cpu", "ram_mb", "storage_mb", "vms"
    mean_use: dict[str, float]  # same keys, time-averaged over [0, makespan]
    planning_s: float
    horizon_s: float | None = None
    horizon_missed_by_s: float | None = None
    # additions (optional, with defaults)
    horizon_note: str | None = None  # why a horizon is missed (which bound), or None
    lower_bound_parts: dict[str, float] = field(default_factory=dict)  # each term of the LB
    binding_bound: str | None = None  # the LB term that is largest ("cpu", "chain", ...)
    rule: str | None = None  # the priority rule that produced the plan
    vm_cap: int | None = None  # deadline mode: the number of workers the plan was limited to
    late_count: int = 0  # planned tasks that end after their deadline (Plan.late lists them)


@dataclass
class Plan:
    assignments: dict[int, Assignment]
    unplannable: list[Unplannable]
    figures: PlanFigures
    late: list[LateTask] = field(default_factory=list)  # by deadline, then task id

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (no infinities) for storage."""
        return {
            "figures": json_safe(asdict(self.figures)),
            "assignments": [
                {"task_id": a.task_id, "worker": a.worker, "start_s": a.start_s, "end_s": a.end_s}
                for a in sorted(self.assignments.values(), key=lambda a: (a.start_s, a.task_id))
            ],
            "unplannable": [{"task_id": u.task_id, "reason": u.reason} for u in self.unplannable],
            "late": [{"task_id": x.task_id, "planned_end_s": x.planned_end_s, "deadline_s": x.deadline_s}
                     for x in self.late],
        }


class PlanningError(Exception):
    """Misuse of the planner: duplicate ids, a dependency cycle, non-finite numbers, ..."""


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def number(x: float) -> str:
    """A number as a sentence shows it: 4, 0.5, 1e+06."""
    return f"{x:g}"


def unlimited_if_none(x: float | int | None) -> float:
    return math.inf if x is None else float(x)


def is_finite(x: Any) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False
