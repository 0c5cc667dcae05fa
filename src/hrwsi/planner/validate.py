"""``validate_plan``: an independent check of a plan against its inputs.

Independent of the scheduler on purpose (ADR 0003): it imports nothing of the planner but the data
classes, and re-derives from the inputs what it needs (which tasks can never run, the dependency graph,
the capacity in use over time by a sweep over interval ends). The orchestrator refuses to store a plan
it rejects."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hrwsi.planner.model import Budgets, FixedTask, Plan, TaskDemand, Worker

TOLERANCE = 1e-6  # relative tolerance of time and capacity comparisons
FIT_TOLERANCE = 1e-9  # absolute tolerance of "this demand fits this capacity" (CPU is a float)
MAX_VIOLATIONS = 200


class _Violations(list):
    """The violations found, at most MAX_VIOLATIONS of them."""

    def add(self, msg: str) -> None:
        if len(self) < MAX_VIOLATIONS:
            self.append(msg)


def validate_plan(
    plan: Plan,
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> list[str]:
    """Check ``plan`` independently of how it was made; returns violations (empty list = valid).

    Every task planned exactly once or reported unplannable (and only if it really cannot run), on an
    existing worker of an allowed flavour (not the one it avoids while another it fits exists), for its
    duration, not before now, its earliest start or the end of its dependencies; at every instant, no
    worker over its flavour and no budget or ``vm_max`` exceeded, counting fixed tasks' usage (an
    instant where only fixed tasks run is not the plan's fault and is not reported, nor are too many
    VMs when every busy worker runs a fixed task). A task that ends after its deadline is not a
    violation, but ``plan.late`` must list exactly those."""
    out = _Violations()
    task_by_id: dict[int, TaskDemand] = {}
    for t in tasks:
        if t.id in task_by_id:
            out.add(f"duplicate task id {t.id} in the input")
        task_by_id[t.id] = t
    _check_input(tasks, task_by_id, out)
    never = tasks_that_can_never_run(tasks, workers, budgets)
    _check_coverage(plan, tasks, task_by_id, never, out)
    _check_assignments(plan, task_by_id, workers, fixed, out)
    _check_capacity(plan, task_by_id, workers, budgets, fixed, out)
    _check_late(plan, task_by_id, out)
    if len(out) >= MAX_VIOLATIONS:
        out.append("(more violations not listed)")
    return list(out)


# ------------------------------------------------------------------------------ which tasks can run


def _fits(demand: float, capacity: float | None) -> bool:
    return capacity is None or demand <= capacity + FIT_TOLERANCE


def _could_run_alone(t: TaskDemand, workers: Sequence[Worker], budgets: Budgets) -> bool:
    """Whether ``t`` fits the budgets and, alone, some worker of an allowed flavour."""
    if budgets.vm_max is not None and budgets.vm_max < 1:
        return False
    if not (_fits(t.cpu, budgets.cpu_max) and _fits(t.ram_mb, budgets.ram_max_mb)
            and _fits(t.storage_mb, budgets.storage_max_mb)):
        return False
    return any(
        (t.flavour is None or w.flavour.name == t.flavour)
        and _fits(t.cpu, w.flavour.cpu) and _fits(t.ram_mb, w.flavour.ram_mb) and _fits(t.storage_mb, w.flavour.disk_mb)
        for w in workers
    )


def tasks_that_can_never_run(tasks: Sequence[TaskDemand], workers: Sequence[Worker], budgets: Budgets) -> set[int]:
    """Ids of the tasks that no plan can run: alone, they fit no budget or no allowed worker (or there
    is no worker, or ``vm_max`` is 0); or they depend, directly or not, on such a task."""
    never: set[int] = set()
    seen: dict[tuple, bool] = {}
    for t in tasks:
        key = (t.cpu, t.ram_mb, t.storage_mb, t.flavour)
        if key not in seen:
            seen[key] = _could_run_alone(t, workers, budgets)
        if not seen[key]:
            never.add(t.id)
    dependants: dict[int, list[int]] = {}
    for t in tasks:
        for d in t.depends_on:
            dependants.setdefault(d, []).append(t.id)
    stack = list(never)
    while stack:
        for s in dependants.get(stack.pop(), ()):
            if s not in never:
                never.add(s)
                stack.append(s)
    return never


def _check_input(tasks: Sequence[TaskDemand], task_by_id: dict[int, TaskDemand], out: _Violations) -> None:
    """Numbers that make no sense and dependency cycles: no plan of such an input is valid."""
    for t in tasks:
        for attr in ("cpu", "ram_mb", "storage_mb", "duration_s"):
            v = getattr(t, attr)
            if not _finite(v) or v < 0:
                out.add(f"the input itself is invalid: task {t.id} has {attr}={v!r}")
    # Kahn's algorithm on the dependencies among the tasks: what is left over lies on a cycle
    indeg = {tid: 0 for tid in task_by_id}
    dependants: dict[int, list[int]] = {}
    for t in task_by_id.values():
        for d in dict.fromkeys(t.depends_on):
            if d in task_by_id:
                indeg[t.id] += 1
                dependants.setdefault(d, []).append(t.id)
    queue = [tid for tid, k in indeg.items() if k == 0]
    for tid in queue:
        for s in dependants.get(tid, ()):
            indeg[s] -= 1
            if indeg[s] == 0:
                queue.append(s)
    on_cycle = sorted(tid for tid, k in indeg.items() if k > 0)
    if on_cycle:
        shown = ", ".join(str(x) for x in on_cycle[:8]) + (", ..." if len(on_cycle) > 8 else "")
        out.add(f"the input itself is invalid: a dependency cycle through tasks {shown}")


# ----------------------------------------------------------------------------- per task


def _check_coverage(plan: Plan, tasks: Sequence[TaskDemand], task_by_id: dict[int, TaskDemand], never: set[int],
                    out: _Violations) -> None:
    """Every task planned exactly once or reported unplannable, and unplannable only if it is."""
    unplannable: dict[int, str] = {}
    for u in plan.unplannable:
        if u.task_id in unplannable:
            out.add(f"task {u.task_id} is reported unplannable twice")
        unplannable[u.task_id] = u.reason
        if u.task_id not in task_by_id:
            out.add(f"unplannable task {u.task_id} is not among the tasks")
    for key, a in plan.assignments.items():
        if key != a.task_id:
            out.add(f"assignment stored under {key} is for task {a.task_id}")
        if a.task_id not in task_by_id:
            out.add(f"assignment for unknown task {a.task_id}")
        if a.task_id in unplannable:
            out.add(f"task {a.task_id} is both assigned and reported unplannable")
    for t in tasks:
        if t.id not in plan.assignments and t.id not in unplannable:
            out.add(f"task {t.id} is neither planned nor reported unplannable")
        if t.id in unplannable and t.id not in never:
            out.add(f"task {t.id} is reported unplannable ({unplannable[t.id]!r}) but it could run")
        if t.id in plan.assignments and t.id in never:
            out.add(f"task {t.id} is planned although it can never run")


def _check_assignments(plan: Plan, task_by_id: dict[int, TaskDemand], workers: Sequence[Worker],
                       fixed: Sequence[FixedTask], out: _Violations) -> None:
    """Each assignment: an existing worker of an allowed flavour, the task's duration, not before now,
    its earliest start or the end of its dependencies."""
    by_name = {w.name: w for w in workers}
    fixed_end = {f.id: f.end_s for f in fixed}
    for a in plan.assignments.values():
        t = task_by_id.get(a.task_id)
        if t is None:
            continue
        w = by_name.get(a.worker)
        if w is None:
            out.add(f"task {t.id} is on unknown worker {a.worker!r}")
            continue
        if t.flavour is not None and w.flavour.name != t.flavour:
            out.add(f"task {t.id} needs flavour {t.flavour!r} but runs on {w.name!r} ({w.flavour.name!r})")
        if t.avoid_worker is not None and w.name == t.avoid_worker and (other := _another_worker_fitting(t, workers)):
            out.add(f"task {t.id} is on worker {w.name!r}, which it avoids (its last attempt could not be placed "
                    f"there), while worker {other!r} of a flavour it fits exists")
        if abs((a.end_s - a.start_s) - t.duration_s) > TOLERANCE * max(1.0, t.duration_s):
            out.add(f"task {t.id} runs {a.end_s - a.start_s:g} s instead of its duration {t.duration_s:g} s")
        if a.start_s < -TOLERANCE:
            out.add(f"task {t.id} starts in the past ({a.start_s:g} s)")
        if a.start_s < t.earliest_start_s - TOLERANCE:
            out.add(f"task {t.id} starts at {a.start_s:g} s before its earliest start {t.earliest_start_s:g} s")
        _check_dependencies(plan, t, a.start_s, task_by_id, fixed_end, out)


def _another_worker_fitting(t: TaskDemand, workers: Sequence[Worker]) -> str | None:
    """The first worker other than the one ``t`` avoids that it fits alone, of an allowed flavour; None: none, and
    it may go back there (migration 0087's rule, as hrwsi.dispatch applies it; re-derived here, not taken from
    planning_input.screen, which drops the avoided worker where none fits)."""
    for w in workers:
        if w.name != t.avoid_worker and (t.flavour is None or w.flavour.name == t.flavour) \
                and _fits(t.cpu, w.flavour.cpu) and _fits(t.ram_mb, w.flavour.ram_mb) \
                and _fits(t.storage_mb, w.flavour.disk_mb):
            return w.name
    return None


def _check_dependencies(plan: Plan, t: TaskDemand, start: float, task_by_id: dict[int, TaskDemand],
                        fixed_end: dict[int, float], out: _Violations) -> None:
    for d in t.depends_on:
        if d in plan.assignments:
            end = plan.assignments[d].end_s
        elif d in fixed_end:
            end = fixed_end[d]
        elif d in task_by_id:
            out.add(f"task {t.id} is planned but its dependency {d} is not")
            continue
        else:
            continue  # already finished
        if start < end - TOLERANCE:
            out.add(f"task {t.id} starts at {start:g} s before its dependency {d} ends at {end:g} s")


def _check_late(plan: Plan, task_by_id: dict[int, TaskDemand], out: _Violations) -> None:
    """``plan.late`` lists exactly the planned tasks that end after their deadline, with their figures."""
    listed = {x.task_id: x for x in plan.late}
    if len(listed) < len(plan.late):
        out.add("a task is listed late twice")
    for a in plan.assignments.values():
        t = task_by_id.get(a.task_id)
        if t is None or t.deadline_s is None:
            continue
        late = a.end_s > t.deadline_s + TOLERANCE * max(1.0, abs(t.deadline_s))
        if late and t.id not in listed:
            out.add(f"task {t.id} ends at {a.end_s:g} s after its deadline {t.deadline_s:g} s but is not listed late")
    for tid, x in listed.items():
        t = task_by_id.get(tid)
        a = plan.assignments.get(tid)
        if t is None or a is None or t.deadline_s is None:
            out.add(f"task {tid} is listed late but is not a planned task with a deadline")
        elif a.end_s <= t.deadline_s or abs(x.planned_end_s - a.end_s) > TOLERANCE * max(1.0, a.end_s) \
                or x.deadline_s != t.deadline_s:
            out.add(f"task {tid} is listed late (ends {x.planned_end_s:g} s, deadline {x.deadline_s:g} s) but it "
                    f"ends at {a.end_s:g} s and its deadline is {t.deadline_s:g} s")


# ------------------------------------------------------------------------------ capacity over time


class _WorkerUse:
    """What runs on one worker at the sweep's instant."""

    __slots__ = ("cpu", "ram", "storage", "tasks", "planned")

    def __init__(self) -> None:
        self.cpu = self.ram = self.storage = 0.0
        self.tasks = 0
        self.planned = 0

    def planned_only(self) -> bool:
        return self.tasks > 0 and self.tasks == self.planned


class _Sweep:
    """Capacity in use over time: a sweep over interval ends (ends before starts at the same instant)."""

    def __init__(self, budgets: Budgets, workers: Sequence[Worker], out: _Violations) -> None:
        self.limits = {
            "CPU": _limit(budgets.cpu_max),
            "RAM": _limit(budgets.ram_max_mb),
            "storage": _limit(budgets.storage_max_mb),
            "VMs": _limit(budgets.vm_max),
        }
        self.by_name = {w.name: w for w in workers}
        self.out = out
        self.total = {"CPU": 0.0, "RAM": 0.0, "storage": 0.0}
        self.planned_running = 0
        self.per: dict[str, _WorkerUse] = {}
        self.busy = 0  # workers running anything
        self.planned_only = 0  # workers in use by planned tasks alone
        self.reported: set[tuple] = set()

    def apply(self, sign: int, cpu: float, ram: float, storage: float, worker: str, planned: int) -> None:
        u = self.per.setdefault(worker, _WorkerUse())
        if u.tasks == 0 and sign > 0:
            self.busy += 1
        if u.planned_only():
            self.planned_only -= 1
        u.cpu += sign * cpu
        u.ram += sign * ram
        u.storage += sign * storage
        u.tasks += sign
        u.planned += sign * planned
        if u.tasks == 0 and sign < 0:
            self.busy -= 1
        if u.planned_only():
            self.planned_only += 1
        self.total["CPU"] += sign * cpu
        self.total["RAM"] += sign * ram
        self.total["storage"] += sign * storage
        self.planned_running += sign * planned

    def check(self, t: float, touched: set[str]) -> None:
        if self.planned_running <= 0:
            return  # only fixed tasks run: not the plan's fault
        # VMs: the plan is at fault when it keeps a worker busy that fixed tasks alone would not
        values = dict(self.total, VMs=self.busy if self.planned_only else 0)
        for name, val in values.items():
            cap = self.limits[name]
            if _over(val, cap) and ("g", name) not in self.reported:
                self.reported.add(("g", name))
                self.out.add(f"at {t:g} s the {name} in use ({val:g}) exceeds the budget {cap:g} (first instant)")
        for wn in touched:
            self._check_worker(t, wn)

    def _check_worker(self, t: float, wn: str) -> None:
        u = self.per[wn]
        w = self.by_name.get(wn)
        if w is None or u.planned <= 0:
            return
        fl = w.flavour
        for name, val, cap in (("CPU", u.cpu, fl.cpu), ("RAM", u.ram, fl.ram_mb), ("disk", u.storage, fl.disk_mb)):
            if _over(val, cap) and (wn, name) not in self.reported:
                self.reported.add((wn, name))
                self.out.add(f"at {t:g} s worker {wn!r} uses {val:g} {name}, over its flavour {fl.name!r} ({cap:g})")


def _finite(x: object) -> bool:
    try:
        return math.isfinite(x)  # type: ignore[arg-type]
    except TypeError:
        return False


def _limit(x: float | int | None) -> float:
    return math.inf if x is None else float(x)


def _over(val: float, cap: float) -> bool:
    return val > cap + TOLERANCE * max(1.0, cap if math.isfinite(cap) else 1.0)


def _check_capacity(plan: Plan, task_by_id: dict[int, TaskDemand], workers: Sequence[Worker], budgets: Budgets,
                    fixed: Sequence[FixedTask], out: _Violations) -> None:
    ev: list[tuple[float, int, float, float, float, str, int]] = []
    for a in plan.assignments.values():
        t = task_by_id.get(a.task_id)
        if t is None or a.end_s <= a.start_s:
            continue
        ev.append((a.start_s, 1, t.cpu, t.ram_mb, t.storage_mb, a.worker, 1))
        ev.append((a.end_s, -1, t.cpu, t.ram_mb, t.storage_mb, a.worker, 1))
    for f in fixed:
        if f.end_s <= f.start_s:
            continue
        ev.append((f.start_s, 1, f.cpu, f.ram_mb, f.storage_mb, f.worker, 0))
        ev.append((f.end_s, -1, f.cpu, f.ram_mb, f.storage_mb, f.worker, 0))
    ev.sort(key=lambda e: (e[0], e[1]))
    sweep = _Sweep(budgets, workers, out)
    k = 0
    m = len(ev)
    while k < m:
        t = ev[k][0]
        touched: set[str] = set()
        while k < m and ev[k][0] == t:
            _t, sign, c, r, s, wn, planned = ev[k]
            sweep.apply(sign, c, r, s, wn, planned)
            touched.add(wn)
            k += 1
        sweep.check(t, touched)
