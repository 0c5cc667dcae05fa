"""The planning problem, checked and indexed once for the lower bound and the scheduler.

Tasks and workers get dense indices (lists of floats are what the scheduler's inner loops read), the
dependency graph is sorted topologically (a cycle is named), and each task that can never run gets the
sentence that says why (``reasons``); the others are ``plannable``, in topological order. The validator
does not use this module: it re-derives what it needs from the inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hrwsi.planner.model import (
    Budgets,
    FixedTask,
    PlanningError,
    TaskDemand,
    Worker,
    is_finite,
    number,
    unlimited_if_none,
)

EPS = 1e-9  # tolerance of capacity comparisons (CPU is a float)


class Problem:
    """Validated, indexed input shared by the lower bound and the scheduler."""

    def __init__(
        self,
        tasks: Sequence[TaskDemand],
        workers: Sequence[Worker],
        budgets: Budgets,
        fixed: Sequence[FixedTask],
    ) -> None:
        self.tasks = list(tasks)
        self.workers = list(workers)
        self.budgets = budgets
        self.fixed = list(fixed)
        self.n = len(self.tasks)
        self._check_budgets(budgets)
        self.cpu_max = unlimited_if_none(budgets.cpu_max)
        self.ram_max = unlimited_if_none(budgets.ram_max_mb)
        self.st_max = unlimited_if_none(budgets.storage_max_mb)
        self._index_workers()
        self.vm_max = len(self.workers) if budgets.vm_max is None else int(budgets.vm_max)
        self._index_tasks()
        self._index_fixed()
        self.cpu = [float(t.cpu) for t in self.tasks]
        self.ram = [float(t.ram_mb) for t in self.tasks]
        self.st = [float(t.storage_mb) for t in self.tasks]
        self.dur = [float(t.duration_s) for t in self.tasks]
        self._link_dependencies()
        self.topo = self._toposort()
        self._static_plannability()
        self._chain_after: list[float] | None = None

    # -- checks and indices

    @staticmethod
    def _check_budgets(budgets: Budgets) -> None:
        for name, value in (
            ("cpu_max", budgets.cpu_max),
            ("ram_max_mb", budgets.ram_max_mb),
            ("storage_max_mb", budgets.storage_max_mb),
            ("vm_max", budgets.vm_max),
        ):
            if value is not None and (not is_finite(value) or value < 0):
                raise PlanningError(f"budget {name}={value!r} must be a finite number >= 0 or None")

    def _index_workers(self) -> None:
        self.widx: dict[str, int] = {}
        for j, w in enumerate(self.workers):
            if w.name in self.widx:
                raise PlanningError(f"duplicate worker name {w.name!r}")
            f = w.flavour
            for attr in ("cpu", "ram_mb", "disk_mb"):
                v = getattr(f, attr)
                if not is_finite(v) or v < 0:
                    raise PlanningError(f"flavour {f.name!r} of worker {w.name!r}: {attr}={v!r} is invalid")
            self.widx[w.name] = j
        self.W = len(self.workers)
        self.wcpu = [float(w.flavour.cpu) for w in self.workers]
        self.wram = [float(w.flavour.ram_mb) for w in self.workers]
        self.wst = [float(w.flavour.disk_mb) for w in self.workers]
        self.flavour_names = sorted({w.flavour.name for w in self.workers})
        self.fid = {name: k for k, name in enumerate(self.flavour_names)}
        self.wfl = [self.fid[w.flavour.name] for w in self.workers]
        self.by_flavour: dict[str, list[int]] = {}
        for j, w in enumerate(self.workers):
            self.by_flavour.setdefault(w.flavour.name, []).append(j)
        # worker kinds: same flavour name and size (a name could, in theory, come in two sizes)
        kinds: dict[tuple[str, float, float, float], list[int]] = {}
        for j, w in enumerate(self.workers):
            kinds.setdefault((w.flavour.name, self.wcpu[j], self.wram[j], self.wst[j]), []).append(j)
        self.kinds = list(kinds.items())  # ((flavour, cpu, ram, disk), workers)
        self.worker_kind = [0] * self.W
        for q, (_key, members) in enumerate(self.kinds):
            for j in members:
                self.worker_kind[j] = q

    def _index_tasks(self) -> None:
        self.idx: dict[int, int] = {}
        for i, t in enumerate(self.tasks):
            if t.id in self.idx:
                raise PlanningError(f"duplicate task id {t.id}")
            self.idx[t.id] = i
            try:  # the common case in one test: all >= 0 and their sum finite means each is finite
                ok = (t.cpu >= 0 and t.ram_mb >= 0 and t.storage_mb >= 0 and t.duration_s >= 0
                      and math.isfinite(t.cpu + t.ram_mb + t.storage_mb + t.duration_s + t.earliest_start_s))
            except TypeError:
                ok = False
            if not ok:
                self._check_task_numbers(t)
            if t.deadline_s is not None and not is_finite(t.deadline_s):
                raise PlanningError(f"task {t.id}: deadline_s={t.deadline_s!r} is not finite")
            if not isinstance(t.priority, int):
                raise PlanningError(f"task {t.id}: priority={t.priority!r} must be an integer")

    @staticmethod
    def _check_task_numbers(t: TaskDemand) -> None:
        for attr in ("cpu", "ram_mb", "storage_mb", "duration_s"):
            v = getattr(t, attr)
            if not is_finite(v) or v < 0:
                raise PlanningError(f"task {t.id}: {attr}={v!r} must be a finite number >= 0")
        if not is_finite(t.earliest_start_s):
            raise PlanningError(f"task {t.id}: earliest_start_s={t.earliest_start_s!r} is not finite")

    def _index_fixed(self) -> None:
        self.fixed_by_id: dict[int, FixedTask] = {}
        for f in self.fixed:
            if f.id in self.fixed_by_id:
                raise PlanningError(f"duplicate fixed task id {f.id}")
            if f.id in self.idx:
                raise PlanningError(f"task {f.id} is both fixed and to be planned")
            for attr in ("cpu", "ram_mb", "storage_mb", "start_s", "end_s"):
                v = getattr(f, attr)
                if not is_finite(v):
                    raise PlanningError(f"fixed task {f.id}: {attr}={v!r} is not finite")
            if f.end_s < f.start_s:
                raise PlanningError(f"fixed task {f.id} ends ({f.end_s}) before it starts ({f.start_s})")
            self.fixed_by_id[f.id] = f

    def _link_dependencies(self) -> None:
        """Predecessor and successor lists among the tasks to plan; a dependency on a fixed task
        moves the task's release to that task's end; unknown ids count as finished."""
        n = self.n
        release = [max(0.0, float(t.earliest_start_s)) for t in self.tasks]
        preds: list[list[int]] = [[] for _ in range(n)]
        succs: list[list[int]] = [[] for _ in range(n)]
        idx = self.idx
        fixed_by_id = self.fixed_by_id
        for i, t in enumerate(self.tasks):
            if not t.depends_on:
                continue
            for d in dict.fromkeys(t.depends_on):  # duplicates once, in order
                j = idx.get(d)
                if j is not None:
                    preds[i].append(j)
                    succs[j].append(i)
                    continue
                f = fixed_by_id.get(d)
                if f is not None and f.end_s > release[i]:
                    release[i] = float(f.end_s)
        self.release = release
        self.preds = preds
        self.succs = succs

    # -- dependencies

    def _toposort(self) -> list[int]:
        n = self.n
        indeg = [len(p) for p in self.preds]
        order = [i for i in range(n) if indeg[i] == 0]
        succs = self.succs
        k = 0
        while k < len(order):
            i = order[k]
            k += 1
            for s in succs[i]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    order.append(s)
        if len(order) < n:
            raise PlanningError(self._cycle_sentence({i for i in range(n) if indeg[i] > 0}))
        return order

    def _cycle_sentence(self, remaining: set[int]) -> str:
        """Walk predecessor-wards inside the tasks left over by the sort until a task repeats."""
        v = min(remaining)
        path: list[int] = []
        pos: dict[int, int] = {}
        while v not in pos:
            pos[v] = len(path)
            path.append(v)
            v = next(p for p in self.preds[v] if p in remaining)
        cycle = path[pos[v] :]
        cycle.reverse()  # walked predecessor-wards: reverse to read "a before b"
        cycle.append(cycle[0])
        names = " -> ".join(f"task {self.tasks[c].id}" for c in cycle)
        return f"dependency cycle: {names} (each must end before the next starts)"

    # -- which tasks can ever run

    def _static_plannability(self) -> None:
        """Which tasks can never run, and why; on the way, the tasks' demand kinds: ``demands[demand_of[i]]``
        is task i's (cpu, ram, storage, flavour restriction)."""
        reasons: list[str | None] = [None] * self.n
        kinds: dict[tuple, int] = {}
        why: list[str | None] = []
        self.demand_of = demand_of = [0] * self.n
        cpu, ram, st = self.cpu, self.ram, self.st
        for i, t in enumerate(self.tasks):
            key = (cpu[i], ram[i], st[i], t.flavour)
            k = kinds.get(key)
            if k is None:
                k = kinds[key] = len(why)
                why.append(self._why_never(*key))
            demand_of[i] = k
            if why[k] is not None:
                reasons[i] = f"task {t.id} (routine {t.routine}) {why[k]}"
        self.demands: list[tuple[float, float, float, str | None]] = list(kinds)
        for i in self.topo:
            if reasons[i] is not None:
                continue
            for p in self.preds[i]:
                if reasons[p] is not None:
                    reasons[i] = (
                        f"task {self.tasks[i].id} depends on task {self.tasks[p].id}, which cannot be planned"
                    )
                    break
        self.reasons = reasons
        self.plannable = [i for i in self.topo if reasons[i] is None]  # topological order

    def chain_after(self) -> list[float]:
        """The longest chain of durations after each plannable task ends (computed once)."""
        if self._chain_after is None:
            tail = [0.0] * self.n
            dur, succs, reasons = self.dur, self.succs, self.reasons
            for i in reversed(self.plannable):
                best = 0.0
                for s in succs[i]:
                    v = dur[s] + tail[s]
                    if v > best and reasons[s] is None:  # a task that can never run is left out
                        best = v
                tail[i] = best
            self._chain_after = tail
        return self._chain_after

    def kinds_fitting(self, cpu: float, ram: float, st: float, restriction: str | None) -> int:
        """The worker kinds (a bit mask over ``kinds``) where a task of these demands may run alone."""
        mask = 0
        for q, ((name, c, r, s), _members) in enumerate(self.kinds):
            if (restriction is None or restriction == name) and cpu <= c + EPS and ram <= r + EPS and st <= s + EPS:
                mask |= 1 << q
        return mask

    def fits_worker(self, cpu: float, ram: float, st: float, j: int) -> bool:
        """Whether a task of these demands fits worker ``j`` when the worker is otherwise empty."""
        return cpu <= self.wcpu[j] + EPS and ram <= self.wram[j] + EPS and st <= self.wst[j] + EPS

    def _why_never(self, cpu: float, ram: float, st: float, flavour: str | None) -> str | None:
        if not self.workers:
            # (the planner sees the active workers only: "there are no workers" was said while two were
            # configured, their Nomad nodes ineligible; found by exploratory testing)
            return ("cannot be planned: no worker is active (none is configured, or every one is inactive: "
                    "set so, or its Nomad node down, ineligible or draining)")
        if self.vm_max <= 0:
            return "cannot be planned: vm_max is 0"
        if flavour is not None and flavour not in self.by_flavour:
            return f"requires flavour {flavour!r} but no worker has that flavour"
        if cpu > self.cpu_max + EPS:
            return f"needs {number(cpu)} CPU but the CPU budget is {number(self.cpu_max)}"
        if ram > self.ram_max + EPS:
            return f"needs {number(ram)} MB RAM but the RAM budget is {number(self.ram_max)} MB"
        if st > self.st_max + EPS:
            return f"needs {number(st)} MB storage but the storage budget is {number(self.st_max)} MB"
        allowed = self.by_flavour[flavour] if flavour is not None else range(self.W)
        if any(self.fits_worker(cpu, ram, st, j) for j in allowed):
            return None
        return self._why_no_worker_fits(cpu, ram, st, flavour, allowed)

    def _why_no_worker_fits(self, cpu: float, ram: float, st: float, flavour: str | None,
                            allowed: Sequence[int]) -> str:
        where = f"flavour {flavour!r}" if flavour is not None else "the largest flavour"
        mc = max(self.wcpu[j] for j in allowed)
        mr = max(self.wram[j] for j in allowed)
        ms = max(self.wst[j] for j in allowed)
        if cpu > mc + EPS:
            return f"needs {number(cpu)} CPU but {where} has {number(mc)} CPU"
        if ram > mr + EPS:
            return f"needs {number(ram)} MB RAM but {where} has {number(mr)} MB RAM"
        if st > ms + EPS:
            return f"needs {number(st)} MB storage but {where} has {number(ms)} MB disk"
        return (
            f"needs {number(cpu)} CPU, {number(ram)} MB RAM and {number(st)} MB storage together, "
            f"which no {'worker of flavour ' + repr(flavour) if flavour else 'flavour'} offers"
        )
