"""Task planner: which worker runs each task, and when.

Pure Python, standard library only: no database, no I/O. Times are seconds relative to "now" = 0.0.

The problem (see docs/adr/0003-planner.md): workers of a flavour (CPU, RAM, disk) run several tasks at
once as long as their sum fits the flavour; budgets cap the totals over everything running at one
instant (CPU, RAM, storage, and ``vm_max`` workers in use); tasks have dependencies and an earliest
start; tasks already running (``fixed``) stay where they are and occupy capacity.

The core is an event-driven list scheduler (a "parallel schedule generation scheme"): time jumps from
event to event (a task ends, a task is released, a fixed task starts or ends); at each event the ready
tasks are started in priority order wherever they fit now, packed onto workers already in use before a
new worker is opened. Ready tasks are grouped by demand class (same CPU/RAM/storage/flavour), so a class
that does not fit is skipped as a whole until the next event: an event costs O(started + classes),
a plan O(n log n) overall. A few priority rules (critical path, resource-weighted, a blend, and a
utilisation-maximising fill for coarse-grained packing) are tried and the best plan is kept; the loop
stops early once a plan is within 0.2 % of the lower bound.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Assignment",
    "Budgets",
    "FixedTask",
    "Flavour",
    "Plan",
    "PlanFigures",
    "PlanningError",
    "TaskDemand",
    "Unplannable",
    "Worker",
    "explain_infeasible_horizon",
    "lower_bound",
    "lower_bound_parts",
    "plan_tasks",
    "validate_plan",
]

EPS = 1e-9  # tolerance of capacity comparisons (CPU is a float)
_TOL = 1e-6  # tolerance of the validator
_MAX_FAILS_PER_EVENT = 48  # classes tried in vain at one event before waiting for the next one
_GOOD_ENOUGH = 1.002  # stop trying priority rules once makespan <= this x LB
_FILL_NODES = 3000  # search nodes per event of the packing search (it keeps the best found)
_TRY_FILL_ABOVE = 1.01  # try the (slower) packing search when the greedy rules end above this x LB


# --------------------------------------------------------------------------------------------- types


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


@dataclass
class Plan:
    assignments: dict[int, Assignment]
    unplannable: list[Unplannable]
    figures: PlanFigures

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (no infinities) for storage."""
        return {
            "figures": _json_safe(asdict(self.figures)),
            "assignments": [
                {"task_id": a.task_id, "worker": a.worker, "start_s": a.start_s, "end_s": a.end_s}
                for a in sorted(self.assignments.values(), key=lambda a: (a.start_s, a.task_id))
            ],
            "unplannable": [{"task_id": u.task_id, "reason": u.reason} for u in self.unplannable],
        }


class PlanningError(Exception):
    """Misuse of the planner: duplicate ids, a dependency cycle, non-finite numbers, ..."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _num(x: float) -> str:
    return f"{x:g}"


def _inf(x: float | int | None) -> float:
    return math.inf if x is None else float(x)


# ----------------------------------------------------------------------------------- preparation


class _Problem:
    """Validated, indexed input shared by the lower bound, the scheduler and the validator."""

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
        n = len(self.tasks)
        self.n = n

        for name, value in (
            ("cpu_max", budgets.cpu_max),
            ("ram_max_mb", budgets.ram_max_mb),
            ("storage_max_mb", budgets.storage_max_mb),
            ("vm_max", budgets.vm_max),
        ):
            if value is not None and (not _finite(value) or value < 0):
                raise PlanningError(f"budget {name}={value!r} must be a finite number >= 0 or None")
        self.cpu_max = _inf(budgets.cpu_max)
        self.ram_max = _inf(budgets.ram_max_mb)
        self.st_max = _inf(budgets.storage_max_mb)

        # workers
        self.widx: dict[str, int] = {}
        for j, w in enumerate(self.workers):
            if w.name in self.widx:
                raise PlanningError(f"duplicate worker name {w.name!r}")
            f = w.flavour
            for attr in ("cpu", "ram_mb", "disk_mb"):
                v = getattr(f, attr)
                if not _finite(v) or v < 0:
                    raise PlanningError(f"flavour {f.name!r} of worker {w.name!r}: {attr}={v!r} is invalid")
            self.widx[w.name] = j
        self.W = len(self.workers)
        self.wcpu = [float(w.flavour.cpu) for w in self.workers]
        self.wram = [float(w.flavour.ram_mb) for w in self.workers]
        self.wst = [float(w.flavour.disk_mb) for w in self.workers]
        self.flavour_names = sorted({w.flavour.name for w in self.workers})
        self.fid = {name: k for k, name in enumerate(self.flavour_names)}
        self.wfl = [self.fid[w.flavour.name] for w in self.workers]
        vm_max = len(self.workers) if budgets.vm_max is None else int(budgets.vm_max)
        self.vm_max = vm_max

        # tasks
        self.idx: dict[int, int] = {}
        for i, t in enumerate(self.tasks):
            if t.id in self.idx:
                raise PlanningError(f"duplicate task id {t.id}")
            self.idx[t.id] = i
            for attr in ("cpu", "ram_mb", "storage_mb", "duration_s"):
                v = getattr(t, attr)
                if not _finite(v) or v < 0:
                    raise PlanningError(f"task {t.id}: {attr}={v!r} must be a finite number >= 0")
            if not _finite(t.earliest_start_s):
                raise PlanningError(f"task {t.id}: earliest_start_s={t.earliest_start_s!r} is not finite")
        self.fixed_by_id: dict[int, FixedTask] = {}
        for f in self.fixed:
            if f.id in self.fixed_by_id:
                raise PlanningError(f"duplicate fixed task id {f.id}")
            if f.id in self.idx:
                raise PlanningError(f"task {f.id} is both fixed and to be planned")
            for attr in ("cpu", "ram_mb", "storage_mb", "start_s", "end_s"):
                v = getattr(f, attr)
                if not _finite(v):
                    raise PlanningError(f"fixed task {f.id}: {attr}={v!r} is not finite")
            if f.end_s < f.start_s:
                raise PlanningError(f"fixed task {f.id} ends ({f.end_s}) before it starts ({f.start_s})")
            self.fixed_by_id[f.id] = f

        self.cpu = [float(t.cpu) for t in self.tasks]
        self.ram = [float(t.ram_mb) for t in self.tasks]
        self.st = [float(t.storage_mb) for t in self.tasks]
        self.dur = [float(t.duration_s) for t in self.tasks]
        release = [max(0.0, float(t.earliest_start_s)) for t in self.tasks]
        preds: list[list[int]] = [[] for _ in range(n)]
        succs: list[list[int]] = [[] for _ in range(n)]
        idx = self.idx
        fixed_by_id = self.fixed_by_id
        for i, t in enumerate(self.tasks):
            if not t.depends_on:
                continue
            seen = set()
            for d in t.depends_on:
                if d in seen:
                    continue
                seen.add(d)
                j = idx.get(d)
                if j is not None:
                    preds[i].append(j)
                    succs[j].append(i)
                else:
                    f = fixed_by_id.get(d)
                    if f is not None and f.end_s > release[i]:
                        release[i] = float(f.end_s)
        self.release = release
        self.preds = preds
        self.succs = succs
        self.topo = self._toposort()
        self._static_plannability()
        self._lb_cache: dict[str, float] | None = None

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
            remaining = {i for i in range(n) if indeg[i] > 0}
            v = next(iter(sorted(remaining)))
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
            raise PlanningError(f"dependency cycle: {names} (each must end before the next starts)")
        return order

    # -- which tasks can ever run

    def _static_plannability(self) -> None:
        n = self.n
        reasons: list[str | None] = [None] * n
        by_flavour: dict[str, list[int]] = {}
        for j, w in enumerate(self.workers):
            by_flavour.setdefault(w.flavour.name, []).append(j)
        self.by_flavour = by_flavour
        cache: dict[tuple, str | None] = {}
        for i, t in enumerate(self.tasks):
            key = (self.cpu[i], self.ram[i], self.st[i], t.flavour)
            if key in cache:
                r = cache[key]
            else:
                r = self._why_never(*key)
                cache[key] = r
            if r is not None:
                reasons[i] = f"task {t.id} (routine {t.routine}) {r}"
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

    def _why_never(self, cpu: float, ram: float, st: float, flavour: str | None) -> str | None:
        if not self.workers:
            return "cannot be planned: there are no workers"
        if self.vm_max <= 0:
            return "cannot be planned: vm_max is 0"
        if flavour is not None and flavour not in self.by_flavour:
            return f"requires flavour {flavour!r} but no worker has that flavour"
        if cpu > self.cpu_max + EPS:
            return f"needs {_num(cpu)} CPU but the CPU budget is {_num(self.cpu_max)}"
        if ram > self.ram_max + EPS:
            return f"needs {_num(ram)} MB RAM but the RAM budget is {_num(self.ram_max)} MB"
        if st > self.st_max + EPS:
            return f"needs {_num(st)} MB storage but the storage budget is {_num(self.st_max)} MB"
        allowed = self.by_flavour[flavour] if flavour is not None else range(self.W)
        for j in allowed:
            if cpu <= self.wcpu[j] + EPS and ram <= self.wram[j] + EPS and st <= self.wst[j] + EPS:
                return None
        where = f"flavour {flavour!r}" if flavour is not None else "the largest flavour"
        mc = max(self.wcpu[j] for j in allowed)
        mr = max(self.wram[j] for j in allowed)
        ms = max(self.wst[j] for j in allowed)
        if cpu > mc + EPS:
            return f"needs {_num(cpu)} CPU but {where} has {_num(mc)} CPU"
        if ram > mr + EPS:
            return f"needs {_num(ram)} MB RAM but {where} has {_num(mr)} MB RAM"
        if st > ms + EPS:
            return f"needs {_num(st)} MB storage but {where} has {_num(ms)} MB disk"
        return (
            f"needs {_num(cpu)} CPU, {_num(ram)} MB RAM and {_num(st)} MB storage together, "
            f"which no {'worker of flavour ' + repr(flavour) if flavour else 'flavour'} offers"
        )

    # -- lower bound

    def lb_parts(self, worker_subset: Sequence[int] | None = None, vm_cap: int | None = None) -> dict[str, float]:
        if worker_subset is None and vm_cap is None:
            if self._lb_cache is None:
                self._lb_cache = self._lb_parts(None, None)
            return dict(self._lb_cache)
        return self._lb_parts(worker_subset, vm_cap)

    def _lb_parts(self, worker_subset: Sequence[int] | None, vm_cap: int | None) -> dict[str, float]:
        ws = list(range(self.W)) if worker_subset is None else list(worker_subset)
        k = min(self.vm_max if vm_cap is None else vm_cap, len(ws))
        P = self.plannable
        parts: dict[str, float] = {}
        if not P and not self.fixed:
            return parts
        cpu, ram, st, dur = self.cpu, self.ram, self.st, self.dur
        caps_w = (self.wcpu, self.wram, self.wst)
        budgets = (self.cpu_max, self.ram_max, self.st_max)
        topks = [sum(sorted((caps_w[r][j] for j in ws), reverse=True)[:k]) for r in range(3)]
        fa_all, fa_known = self._fixed_areas(set(ws), budgets, topks)
        fixed_end = max((float(f.end_s) for f in self.fixed), default=0.0)
        if fixed_end > 0:
            parts["fixed"] = fixed_end
        area = [0.0, 0.0, 0.0]
        for i in P:
            d = dur[i]
            area[0] += cpu[i] * d
            area[1] += ram[i] * d
            area[2] += st[i] * d
        for r, key in enumerate(("cpu", "ram_mb", "storage_mb")):
            topk = topks[r]
            best = 0.0
            for a, cap in ((area[r] + fa_all[r], budgets[r]), (area[r] + fa_known[r], topk)):
                if a > 0:
                    best = max(best, a / cap if cap > 0 else math.inf)
            if best > 0:
                parts[key] = best
        # concurrency: how many tasks can run at once at most (planning.md's sum(duration)/vm_max,
        # generalised to workers that hold several tasks)
        if P:
            mins = (min(cpu[i] for i in P), min(ram[i] for i in P), min(st[i] for i in P))

            def count_fit(caps: Sequence[float]) -> float:
                m = math.inf
                for c, lo in zip(caps, mins):
                    if lo > 0 and math.isfinite(c):  # an unlimited budget limits nothing
                        m = min(m, math.floor(c / lo + 1e-9))
                return m

            per_worker = sorted((count_fit((self.wcpu[j], self.wram[j], self.wst[j])) for j in ws), reverse=True)
            conc = min(count_fit(budgets), sum(per_worker[:k]))
            total = sum(dur[i] for i in P)
            if math.isfinite(conc) and total > 0:
                parts["tasks"] = total / conc if conc > 0 else math.inf
            # tasks restricted to one flavour only have that flavour's workers
            restricted: dict[str, list[int]] = {}
            for i in P:
                fl = self.tasks[i].flavour
                if fl is not None:
                    restricted.setdefault(fl, []).append(i)
            fl_best = 0.0
            for fl, members in restricted.items():
                fws = [j for j in ws if self.workers[j].flavour.name == fl]
                kf = min(k, len(fws))
                for r, vals in enumerate((cpu, ram, st)):
                    a = sum(vals[i] * dur[i] for i in members)
                    if a <= 0:
                        continue
                    cap = min(budgets[r], sum(sorted((caps_w[r][j] for j in fws), reverse=True)[:kf]))
                    fl_best = max(fl_best, a / cap if cap > 0 else math.inf)
            if fl_best > 0:
                parts["flavour"] = fl_best
            # the longest chain, with release times (retry backoff, fixed predecessors)
            parts["chain"] = max(self.earliest_finish())
        return parts

    def _fixed_areas(self, ws: set, budgets, topks) -> tuple[list[float], list[float]]:
        """Work of the fixed tasks after t=0, each instant clipped to what it can take from the
        capacity (budgets; the workers in ``ws``), so that the bound stays valid even when the fixed
        tasks alone exceed a limit."""
        fa_all = [0.0, 0.0, 0.0]
        fa_known = [0.0, 0.0, 0.0]
        ev = []
        for f in self.fixed:
            s = max(0.0, float(f.start_s))
            if f.end_s > s:
                ev.append((s, 1, f))
                ev.append((float(f.end_s), -1, f))
        if not ev:
            return fa_all, fa_known
        ev.sort(key=lambda e: (e[0], e[1]))
        g = [0.0, 0.0, 0.0]
        per: dict[int, list[float]] = {}
        prev = ev[0][0]
        for t, sign, f in ev:
            dt = t - prev
            if dt > 0:
                known = [0.0, 0.0, 0.0]
                for j, u in per.items():
                    for r, cap in enumerate((self.wcpu[j], self.wram[j], self.wst[j])):
                        known[r] += min(u[r], cap)
                for r in range(3):
                    fa_all[r] += min(g[r], budgets[r]) * dt
                    fa_known[r] += min(known[r], topks[r]) * dt
                prev = t
            vals = (f.cpu, f.ram_mb, f.storage_mb)
            for r in range(3):
                g[r] += sign * vals[r]
            j = self.widx.get(f.worker, -1)
            if j >= 0 and j in ws:
                u = per.setdefault(j, [0.0, 0.0, 0.0])
                for r in range(3):
                    u[r] += sign * vals[r]
        return fa_all, fa_known

    def earliest_finish(self) -> list[float]:
        """Earliest finish of every plannable task ignoring resources (chain + release times)."""
        ef = [0.0] * self.n
        release, dur, preds = self.release, self.dur, self.preds
        out = []
        for i in self.plannable:
            s = release[i]
            for p in preds[i]:
                if ef[p] > s:
                    s = ef[p]
            ef[i] = s + dur[i]
            out.append(ef[i])
        return out or [0.0]

    def critical_chain(self) -> list[int]:
        """Task ids of one longest chain (for explanations)."""
        ef = [0.0] * self.n
        via = [-1] * self.n
        release, dur, preds = self.release, self.dur, self.preds
        for i in self.plannable:
            s = release[i]
            for p in preds[i]:
                if ef[p] > s:
                    s = ef[p]
                    via[i] = p
            ef[i] = s + dur[i]
        if not self.plannable:
            return []
        i = max(self.plannable, key=lambda x: ef[x])
        chain = []
        while i >= 0:
            chain.append(self.tasks[i].id)
            i = via[i]
        chain.reverse()
        return chain


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


# ------------------------------------------------------------------------------------- scheduler


class _Schedule:
    __slots__ = ("start", "worker", "makespan", "rule", "vms", "vm_seconds", "stuck")

    def __init__(self, start, worker, makespan, rule, stuck):
        self.start = start
        self.worker = worker
        self.makespan = makespan
        self.rule = rule
        self.stuck = stuck
        self.vms = 0
        self.vm_seconds = 0.0


def _classes(prob: _Problem) -> tuple[list[int], list[tuple]]:
    cls = [-1] * prob.n
    keys: dict[tuple, int] = {}
    out: list[tuple] = []  # (cpu, ram, storage, flavour index or -1[, duration])
    fid = prob.fid
    # with fixed tasks starting later, whether a task fits now also depends on its duration
    by_duration = any(f.start_s > 0 and f.end_s > f.start_s for f in prob.fixed)
    for i in prob.plannable:
        fl = prob.tasks[i].flavour
        key = (prob.cpu[i], prob.ram[i], prob.st[i], -1 if fl is None else fid[fl])
        if by_duration:
            key += (prob.dur[i],)
        k = keys.get(key)
        if k is None:
            k = len(out)
            keys[key] = k
            out.append(key)
        cls[i] = k
    return cls, out


def _run(
    prob: _Problem,
    order: list[int],
    cls: list[int],
    classes: list[tuple],
    wsubset: Sequence[int],
    vm_cap: int,
    fill: bool,
    rule: str,
    reserve: bool = False,
) -> _Schedule:
    """One pass of the event-driven list scheduler, ready tasks started in ``order`` (best first)."""
    n = prob.n
    dur = prob.dur
    succs = prob.succs
    preds = prob.preds
    cpu_max, ram_max, st_max = prob.cpu_max, prob.ram_max, prob.st_max
    ccpu = [c[0] for c in classes]
    cram = [c[1] for c in classes]
    cst = [c[2] for c in classes]
    cfl = [c[3] for c in classes]
    ncls = len(classes)

    rank_of = [0] * n
    for r, i in enumerate(order):
        rank_of[i] = r
    task_at = order

    W = prob.W
    insub = [False] * W
    for j in wsubset:
        insub[j] = True
    fc = prob.wcpu[:]
    fr = prob.wram[:]
    fs = prob.wst[:]
    wfl = prob.wfl
    wcount = [0] * W
    used_before = [False] * W
    # idle workers in order of preference (largest first), per flavour and for "any"
    pref = sorted(
        (j for j in wsubset),
        key=lambda j: (-(prob.wcpu[j] / _maxpos(prob.wcpu) + prob.wram[j] / _maxpos(prob.wram)
                        + prob.wst[j] / _maxpos(prob.wst)), j),
    )
    idle_any = pref
    idle_fl: dict[int, list[int]] = {}
    for j in pref:
        idle_fl.setdefault(wfl[j], []).append(j)
    active: list[int] = []
    ext_count: dict[str, int] = {}
    n_active = 0
    gc = gr = gs = 0.0

    # fixed tasks: events (time, kind 0=end/1=start, index); those already started occupy now
    fx = prob.fixed
    fev: list[tuple[float, int, int]] = []
    for q, f in enumerate(fx):
        if f.end_s <= 0 or f.end_s <= f.start_s:
            continue
        fev.append((float(f.start_s) if f.start_s > 0 else -1.0, 1, q))
        fev.append((float(f.end_s), 0, q))
    fev.sort()
    fpos = 0
    fut: list[int] = []  # fixed tasks starting strictly in the future, by start time
    for _t, kind, q in fev:
        if kind == 1 and fx[q].start_s > 0:
            fut.append(q)
    fut.sort(key=lambda q: fx[q].start_s)
    fut_started = 0

    npred = [0] * n
    ready_t = prob.release[:]
    for i in prob.plannable:
        npred[i] = len(preds[i])
    cheaps: list[list[int]] = [[] for _ in range(ncls)]
    top: list[int] = []
    isblocked = [False] * ncls
    blocked: list[int] = []
    pending: list[tuple[float, int]] = []
    running: list[tuple[float, int]] = []
    start: list[float | None] = [None] * n
    wof = [-1] * n
    heappush, heappop = heapq.heappush, heapq.heappop

    def make_ready(i: int) -> None:
        k = cls[i]
        h = cheaps[k]
        r = rank_of[i]
        heappush(h, r)
        if h[0] == r and not isblocked[k]:
            heappush(top, r)

    for i in prob.plannable:
        if npred[i] == 0:
            if ready_t[i] <= 0.0:
                make_ready(i)
            else:
                heappush(pending, (ready_t[i], i))

    def fixed_apply(q: int, sign: int) -> None:
        nonlocal gc, gr, gs, n_active
        f = fx[q]
        gc += sign * f.cpu
        gr += sign * f.ram_mb
        gs += sign * f.storage_mb
        j = prob.widx.get(f.worker, -1)
        if j >= 0:
            fc[j] -= sign * f.cpu
            fr[j] -= sign * f.ram_mb
            fs[j] -= sign * f.storage_mb
            if sign > 0:
                if wcount[j] == 0:
                    active.append(j)
                    n_active += 1
                wcount[j] += 1
            else:
                wcount[j] -= 1
                if wcount[j] == 0:
                    active.remove(j)
                    n_active -= 1
        else:
            c = ext_count.get(f.worker, 0)
            if sign > 0:
                if c == 0:
                    n_active += 1
                ext_count[f.worker] = c + 1
            else:
                ext_count[f.worker] = c - 1
                if c - 1 == 0:
                    n_active -= 1

    def future_window(t: float, e: float):
        """Usage of fixed tasks that start in (t, e): global, per worker, and newly busy workers."""
        g = [0.0, 0.0, 0.0]
        per: dict[int, list[float]] = {}
        newly: set = set()
        for q in fut[fut_started:]:
            f = fx[q]
            if f.start_s >= e:
                break
            if f.start_s <= t:
                continue
            g[0] += f.cpu
            g[1] += f.ram_mb
            g[2] += f.storage_mb
            j = prob.widx.get(f.worker, -1)
            if j >= 0:
                u = per.setdefault(j, [0.0, 0.0, 0.0])
                u[0] += f.cpu
                u[1] += f.ram_mb
                u[2] += f.storage_mb
                if wcount[j] == 0:
                    newly.add(j)
            elif ext_count.get(f.worker, 0) == 0:
                newly.add(f.worker)
        return g, per, newly

    def find_worker(k: int, t: float, e: float) -> int:
        c = ccpu[k]
        rm = cram[k]
        s = cst[k]
        if gc + c > cpu_max + EPS or gr + rm > ram_max + EPS or gs + s > st_max + EPS:
            return -1
        if n_active > vm_cap:  # fixed tasks alone use too many workers: wait until they end
            return -1
        f = cfl[k]
        if fut_started < len(fut) and e > t:
            g, per, newly = future_window(t, e)
            if gc + c + g[0] > cpu_max + EPS or gr + rm + g[1] > ram_max + EPS or gs + s + g[2] > st_max + EPS:
                return -1
            if n_active + len(newly) > vm_cap:
                return -1
            for w in active:
                if f >= 0 and wfl[w] != f:
                    continue
                x = per.get(w, (0.0, 0.0, 0.0))
                if fc[w] - x[0] + EPS >= c and fr[w] - x[1] + EPS >= rm and fs[w] - x[2] + EPS >= s:
                    return w
            cands = idle_any if f < 0 else idle_fl.get(f, ())
            fallback = -1
            for w in cands:
                if wcount[w]:
                    continue
                if n_active + len(newly - {w}) + 1 > vm_cap:
                    continue
                x = per.get(w, (0.0, 0.0, 0.0))
                if fc[w] - x[0] + EPS >= c and fr[w] - x[1] + EPS >= rm and fs[w] - x[2] + EPS >= s:
                    if used_before[w]:
                        return w
                    if fallback < 0:
                        fallback = w
            return fallback
        for w in active:
            if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                return w
        if n_active >= vm_cap:
            return -1
        fallback = -1
        for w in idle_any if f < 0 else idle_fl.get(f, ()):
            if wcount[w] == 0 and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                if used_before[w]:
                    return w
                if fallback < 0:
                    fallback = w
        return fallback

    def begin(i: int, w: int, t: float) -> None:
        nonlocal gc, gr, gs, n_active
        k = cls[i]
        c = ccpu[k]
        rm = cram[k]
        s = cst[k]
        gc += c
        gr += rm
        gs += s
        fc[w] -= c
        fr[w] -= rm
        fs[w] -= s
        if wcount[w] == 0:
            active.append(w)
            n_active += 1
            used_before[w] = True
        wcount[w] += 1
        start[i] = t
        wof[i] = w
        heappush(running, (t + dur[i], i))

    def shadow(k: int, t: float):
        """EASY-backfilling reservation for class k, blocked now: the earliest end of running tasks
        after which it fits (nothing else starting), where, and what is left over then."""
        if fut_started < len(fut):
            return None
        c = ccpu[k]
        rm = cram[k]
        s = cst[k]
        f = cfl[k]
        gfc, gfr, gfs = cpu_max - gc, ram_max - gr, st_max - gs
        freed: dict[int, list[float]] = {}
        gone: dict[int, int] = {}
        nact = n_active
        fitting = []
        for w in active:
            if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                fitting.append(w)
        for w in idle_any if f < 0 else idle_fl.get(f, ()):
            if wcount[w] == 0 and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                fitting.append(w)
                break
        ends = sorted(running)
        m = len(ends)
        for q in range(m):
            e, i = ends[q]
            w = wof[i]
            kk = cls[i]
            gfc += ccpu[kk]
            gfr += cram[kk]
            gfs += cst[kk]
            u = freed.get(w)
            if u is None:
                u = freed[w] = [0.0, 0.0, 0.0]
            u[0] += ccpu[kk]
            u[1] += cram[kk]
            u[2] += cst[kk]
            g = gone.get(w, 0) + 1
            gone[w] = g
            if wcount[w] == g:
                nact -= 1
            if (f < 0 or wfl[w] == f) and w not in fitting and fc[w] + u[0] + EPS >= c \
                    and fr[w] + u[1] + EPS >= rm and fs[w] + u[2] + EPS >= s:
                fitting.append(w)
            if q + 1 < m and ends[q + 1][0] == e:
                continue
            if gfc + EPS < c or gfr + EPS < rm or gfs + EPS < s:
                continue
            for w2 in fitting:
                idle_then = wcount[w2] - gone.get(w2, 0) == 0
                if idle_then and nact >= vm_cap:
                    continue
                u2 = freed.get(w2, (0.0, 0.0, 0.0))
                return [e, w2, gfc - c, gfr - rm, gfs - s, vm_cap - nact - (1 if idle_then else 0),
                        fc[w2] + u2[0] - c, fr[w2] + u2[1] - rm, fs[w2] + u2[2] - s, gone]
        return None

    def dispatch_greedy(t: float) -> None:
        for k in blocked:
            isblocked[k] = False
            h = cheaps[k]
            if h:
                heappush(top, h[0])
        blocked.clear()
        fails = 0
        resv = None
        while top:
            r = heappop(top)
            i = task_at[r]
            k = cls[i]
            h = cheaps[k]
            if not h or h[0] != r or isblocked[k]:
                continue
            w = find_worker(k, t, t + dur[i])
            if w >= 0 and resv is not None and t + dur[i] > resv[0] + EPS:
                # backfilling past the reservation: only with what the reserved task leaves over
                c = ccpu[k]
                rm = cram[k]
                s = cst[k]
                ok = resv[2] + EPS >= c and resv[3] + EPS >= rm and resv[4] + EPS >= s
                if ok and w == resv[1]:
                    ok = resv[6] + EPS >= c and resv[7] + EPS >= rm and resv[8] + EPS >= s
                takes_vm = w != resv[1] and wcount[w] - resv[9].get(w, 0) <= 0
                if ok and takes_vm:
                    ok = resv[5] >= 1
                if ok:
                    resv[2] -= c
                    resv[3] -= rm
                    resv[4] -= s
                    if w == resv[1]:
                        resv[6] -= c
                        resv[7] -= rm
                        resv[8] -= s
                    if takes_vm:
                        resv[5] -= 1
                        resv[9] = dict(resv[9])
                        resv[9][w] = resv[9].get(w, 0) - 1  # stays busy at the reservation
                else:
                    w = -1
            if w < 0:
                isblocked[k] = True
                blocked.append(k)
                fails += 1
                if fails >= _MAX_FAILS_PER_EVENT:
                    return
                if reserve and resv is None and fails == 1:
                    resv = shadow(k, t)
                continue
            heappop(h)
            if h:
                heappush(top, h[0])
            begin(i, w, t)

    def dispatch_fill(t: float) -> None:
        """Coarse packing: among the classes ready now, start the combination that uses the scarcest
        resource the most (ties: the higher-priority combination), then fill greedily."""
        nonlocal top
        for k in blocked:
            isblocked[k] = False
        blocked.clear()
        ready = [k for k in range(ncls) if cheaps[k]]
        if not ready:
            top = []
            return
        # free capacity: the budgets, bounded by what the workers offer (budgets may be unlimited)
        wsum = [0.0, 0.0, 0.0]
        for w in wsubset:
            if fc[w] > 0:
                wsum[0] += fc[w]
            if fr[w] > 0:
                wsum[1] += fr[w]
            if fs[w] > 0:
                wsum[2] += fs[w]
        free = (min(cpu_max - gc, wsum[0]), min(ram_max - gr, wsum[1]), min(st_max - gs, wsum[2]))
        # bound on how many tasks fit at once: only search small combinations
        ready.sort(key=lambda k: cheaps[k][0])
        ready = ready[:8]
        cap_n = 0
        for k in ready:
            m = len(cheaps[k])
            for v, dem in zip(free, (ccpu[k], cram[k], cst[k])):
                if dem > 0:
                    m = min(m, int((v + EPS) // dem))
            cap_n = max(cap_n, m)
        if cap_n <= 12:
            weights = fill_weights
            best_val = -1.0
            best_combo: list[int] = []
            combo: list[int] = []
            nk = len(ready)

            nodes = 0
            bonus_max = 1e-5 * nk * (cap_n + 1) * nk

            def dfs(pos: int, used: list[float], val: float) -> None:
                nonlocal best_val, best_combo, nodes
                nodes += 1
                if val > best_val + 1e-12:
                    best_val = val
                    best_combo = combo[:]
                if pos >= nk or nodes > _FILL_NODES:
                    return
                # optimistic: the rest of the free capacity filled completely
                if val + sum(wr * (fr_ - ur) for wr, fr_, ur in zip(weights, free, used)) + bonus_max \
                        <= best_val:
                    return
                k = ready[pos]
                dem = (ccpu[k], cram[k], cst[k])
                m = len(cheaps[k])
                for v, u, d in zip(free, used, dem):
                    if d > 0:
                        m = min(m, int((v - u + EPS) // d))
                # value: use of the scarcest resource; ties go to the higher-priority class
                w = weights[0] * dem[0] + weights[1] * dem[1] + weights[2] * dem[2] + 1e-5 * (nk - pos)
                for cnt in range(m, -1, -1):
                    combo.extend([k] * cnt)
                    dfs(pos + 1, [used[0] + cnt * dem[0], used[1] + cnt * dem[1], used[2] + cnt * dem[2]],
                        val + cnt * w)
                    del combo[len(combo) - cnt :]

            dfs(0, [0.0, 0.0, 0.0], 0.0)
            for k in best_combo:
                h = cheaps[k]
                if not h or isblocked[k]:
                    continue
                i = task_at[h[0]]
                w = find_worker(k, t, t + dur[i])
                if w < 0:
                    isblocked[k] = True
                    blocked.append(k)
                    continue
                heappop(h)
                begin(i, w, t)
        # the tops changed: rebuild the class-top heap (few classes here)
        top = [cheaps[k][0] for k in range(ncls) if cheaps[k] and not isblocked[k]]
        heapq.heapify(top)
        dispatch_greedy(t)

    fill_weights = _fill_weights(prob) if fill else (0.0, 0.0, 0.0)
    dispatch = dispatch_fill if fill else dispatch_greedy

    t = 0.0
    # fixed tasks already running at t=0
    while fpos < len(fev) and fev[fpos][0] <= 0.0:
        _tt, kind, q = fev[fpos]
        fpos += 1
        fixed_apply(q, 1 if kind == 1 else -1)
    while True:
        while running and running[0][0] <= t:
            e, i = heappop(running)
            w = wof[i]
            k = cls[i]
            gc -= ccpu[k]
            gr -= cram[k]
            gs -= cst[k]
            fc[w] += ccpu[k]
            fr[w] += cram[k]
            fs[w] += cst[k]
            wcount[w] -= 1
            if wcount[w] == 0:
                active.remove(w)
                n_active -= 1
            for s in succs[i]:
                if ready_t[s] < e:
                    ready_t[s] = e
                npred[s] -= 1
                if npred[s] == 0:
                    if ready_t[s] <= t:
                        make_ready(s)
                    else:
                        heappush(pending, (ready_t[s], s))
        while fpos < len(fev) and fev[fpos][0] <= t:
            _tt, kind, q = fev[fpos]
            fpos += 1
            if kind == 1:
                fut_started += 1
            fixed_apply(q, 1 if kind == 1 else -1)
        while pending and pending[0][0] <= t:
            make_ready(heappop(pending)[1])
        dispatch(t)
        nt = math.inf
        if running:
            nt = running[0][0]
        if pending and pending[0][0] < nt:
            nt = pending[0][0]
        if fpos < len(fev) and fev[fpos][0] < nt:
            nt = fev[fpos][0]
        if nt == math.inf:
            break
        t = nt

    makespan = 0.0
    stuck = []
    for i in prob.plannable:
        s = start[i]
        if s is None:
            stuck.append(i)
            continue
        e = s + dur[i]
        if e > makespan:
            makespan = e
    for f in fx:
        if f.end_s > makespan:
            makespan = float(f.end_s)
    return _Schedule(start, wof, makespan, rule, stuck)


def _maxpos(vals: Sequence[float]) -> float:
    m = max(vals, default=0.0)
    return m if m > 0 else 1.0


def _coarse(prob: _Problem) -> bool:
    """Whether a single task takes >= 5 % of the scarcest resource's capacity."""
    parts = prob.lb_parts()
    keys = ("cpu", "ram_mb", "storage_mb")
    lbs = [parts.get(k, 0.0) for k in keys]
    if max(lbs) <= 0:
        return False
    r = lbs.index(max(lbs))
    vals = (prob.cpu, prob.ram, prob.st)[r]
    caps_w = (prob.wcpu, prob.wram, prob.wst)[r]
    cap = min((prob.cpu_max, prob.ram_max, prob.st_max)[r], sum(sorted(caps_w, reverse=True)[: prob.vm_max]))
    biggest = max((vals[i] for i in prob.plannable), default=0.0)
    return cap > 0 and biggest / cap >= 0.05


def _fill_weights(prob: _Problem) -> tuple[float, float, float]:
    """Per-unit value of each resource when packing: 1/capacity of the scarcest resource(s)."""
    parts = prob.lb_parts()
    caps = []
    for r, cap_b in enumerate((prob.cpu_max, prob.ram_max, prob.st_max)):
        topk = sum(sorted((c[r] for c in zip(prob.wcpu, prob.wram, prob.wst)), reverse=True)[: prob.vm_max])
        caps.append(min(cap_b, topk) or 1.0)
    lbs = [parts.get(k, 0.0) for k in ("cpu", "ram_mb", "storage_mb")]
    top = max(lbs) or 1.0
    # the bottleneck counts fully, the others a little (breaks ties towards balanced use)
    return tuple((1.0 if lb >= top * 0.999 else 1e-7 * lb / top) / cap for lb, cap in zip(lbs, caps))


def _priorities(prob: _Problem) -> dict[str, list[int]]:
    """Static priority orders (best first) of the plannable tasks."""
    P = prob.plannable
    n = prob.n
    dur, succs = prob.dur, prob.succs
    bl = [0.0] * n  # bottom level: longest path from the task's start to the end of the graph
    for i in reversed(P):
        m = 0.0
        for s in succs[i]:
            if bl[s] > m:
                m = bl[s]
        bl[i] = dur[i] + m
    parts = prob.lb_parts()
    caps = []
    for r, cap_b in enumerate((prob.cpu_max, prob.ram_max, prob.st_max)):
        topk = sum(sorted((c[r] for c in zip(prob.wcpu, prob.wram, prob.wst)), reverse=True)[: prob.vm_max])
        caps.append(min(cap_b, topk) or 1.0)
    lbs = [parts.get(k, 0.0) for k in ("cpu", "ram_mb", "storage_mb")]
    top = max(lbs) or 1.0
    wts = [lb / top for lb in lbs]
    cpu, ram, st = prob.cpu, prob.ram, prob.st
    # resource weight of a task: its demand on each resource relative to capacity, weighted by how
    # binding that resource is
    wd = [0.0] * n
    for i in P:
        wd[i] = wts[0] * cpu[i] / caps[0] + wts[1] * ram[i] / caps[1] + wts[2] * st[i] / caps[2]
    maxbl = max((bl[i] for i in P), default=1.0) or 1.0
    maxwd = max((wd[i] for i in P), default=1.0) or 1.0
    ids = [t.id for t in prob.tasks]
    orders = {
        "critical-path": sorted(P, key=lambda i: (-bl[i], -wd[i], ids[i])),
        "resource": sorted(P, key=lambda i: (-wd[i], -bl[i], ids[i])),
        "blend": sorted(P, key=lambda i: (-(bl[i] / maxbl + 0.5 * wd[i] / maxwd), ids[i])),
    }
    return orders


def _vm_usage(prob: _Problem, sch: _Schedule) -> tuple[int, float]:
    """Distinct workers used (planned or fixed, after t=0) and their busy seconds (union of intervals)."""
    iv: dict[str, list[tuple[float, float]]] = {}
    names = [w.name for w in prob.workers]
    dur = prob.dur
    for i in prob.plannable:
        s = sch.start[i]
        if s is None:
            continue
        iv.setdefault(names[sch.worker[i]], []).append((s, s + dur[i]))
    for f in prob.fixed:
        if f.end_s > 0 and f.end_s > f.start_s:
            iv.setdefault(f.worker, []).append((max(0.0, f.start_s), f.end_s))
    total = 0.0
    for lst in iv.values():
        lst.sort()
        cs, ce = lst[0]
        for s, e in lst[1:]:
            if s > ce:
                total += ce - cs
                cs, ce = s, e
            elif e > ce:
                ce = e
        total += ce - cs
    return len(iv), total


def _best_schedule(
    prob: _Problem,
    wsubset: Sequence[int],
    vm_cap: int,
    lb: float,
    orders: dict[str, list[int]],
    cls_info,
) -> _Schedule:
    cls, classes = cls_info
    plans: list[_Schedule] = []
    # (order, reservation): EASY backfilling on the critical path first (it keeps long chains moving
    # while resources stay busy), then plain list scheduling with other orders
    variants: list[tuple[str, bool]] = [("critical-path", True), ("resource", False), ("blend", False),
                                        ("critical-path", False)]

    def key(s: _Schedule):
        return (len(s.stuck), round(s.makespan, 6), s.vms, s.vm_seconds)

    for name, reserve in variants:
        sch = _run(prob, orders[name], cls, classes, wsubset, vm_cap, False,
                   name + ("+reserve" if reserve else ""), reserve=reserve)
        sch.vms, sch.vm_seconds = _vm_usage(prob, sch)
        plans.append(sch)
        if not sch.stuck and sch.makespan <= lb * _GOOD_ENOUGH + 1e-9:
            return sch
    best = min(plans, key=key)
    chain = prob.lb_parts().get("chain", 0.0)
    if best.makespan > lb * _TRY_FILL_ABOVE and len(classes) <= 64 and chain < 0.9 * lb and _coarse(prob):
        # the packing search only pays with a few demand classes of tasks that are large relative to
        # the scarcest capacity (greedy packing then leaves a sizeable part of it unused), when the
        # makespan is about packing rather than about a long chain
        for name in ("resource", "critical-path"):
            sch = _run(prob, orders[name], cls, classes, wsubset, vm_cap, True, name + "+fill")
            sch.vms, sch.vm_seconds = _vm_usage(prob, sch)
            plans.append(sch)
            if not sch.stuck and sch.makespan <= lb * _GOOD_ENOUGH + 1e-9:
                break
        best = min(plans, key=key)
    return best


# --------------------------------------------------------------------------------------- figures


USAGE_KEYS = ("cpu", "ram_mb", "storage_mb", "vms")


def usage_steps(
    assignments: Iterable[Assignment], demands: Mapping[int, TaskDemand], fixed: Sequence[FixedTask] = ()
) -> dict[str, tuple[list[float], list[float]]]:
    """Step functions (times, values) of "cpu", "ram_mb", "storage_mb" and "vms" in use over time,
    counting planned and fixed tasks (fixed tasks from t=0). values[i] holds from times[i] to times[i+1]."""
    ev: list[tuple[float, int, float, float, float, str]] = []
    for a in assignments:
        t = demands.get(a.task_id)
        if t is None or a.end_s <= a.start_s:
            continue
        ev.append((a.start_s, 1, t.cpu, t.ram_mb, t.storage_mb, a.worker))
        ev.append((a.end_s, -1, t.cpu, t.ram_mb, t.storage_mb, a.worker))
    for f in fixed:
        s = max(0.0, f.start_s)
        if f.end_s <= s:
            continue
        ev.append((s, 1, f.cpu, f.ram_mb, f.storage_mb, f.worker))
        ev.append((f.end_s, -1, f.cpu, f.ram_mb, f.storage_mb, f.worker))
    ev.sort(key=lambda e: (e[0], e[1]))
    out: dict[str, tuple[list[float], list[float]]] = {k: ([0.0], [0.0]) for k in USAGE_KEYS}
    use = [0.0, 0.0, 0.0, 0.0]
    cnt: dict[str, int] = {}
    k = 0
    while k < len(ev):
        t = ev[k][0]
        while k < len(ev) and ev[k][0] == t:
            _t, sign, c, r, st, w = ev[k]
            use[0] += sign * c
            use[1] += sign * r
            use[2] += sign * st
            before = cnt.get(w, 0)
            cnt[w] = before + sign
            if before == 0 and sign > 0:
                use[3] += 1
            elif before == 1 and sign < 0:
                use[3] -= 1
            k += 1
        for i, key in enumerate(USAGE_KEYS):
            xs, ys = out[key]
            xs.append(t)
            ys.append(use[i])
    return out


def _profile(
    prob: _Problem, assignments: dict[int, Assignment], makespan: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Peak and time-averaged use over [0, makespan] of CPU, RAM, storage and VMs in use."""
    steps = usage_steps(assignments.values(), {t.id: t for t in prob.tasks}, prob.fixed)
    peak = dict.fromkeys(USAGE_KEYS, 0.0)
    mean = dict.fromkeys(USAGE_KEYS, 0.0)
    for key, (xs, ys) in steps.items():
        peak[key] = max(ys)
        if makespan > 0:
            area = sum(ys[i] * max(0.0, min(xs[i + 1], makespan) - max(xs[i], 0.0)) for i in range(len(xs) - 1))
            mean[key] = area / makespan
    return peak, mean


# ------------------------------------------------------------------------------------------ API


def lower_bound_parts(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> dict[str, float]:
    """Each term of the lower bound, by name: "cpu", "ram_mb", "storage_mb" (work / capacity, capacity
    being the budget or the ``vm_max`` largest workers), "tasks" (total duration / the most tasks that
    can run at once; planning.md's sum(duration)/vm_max when a worker holds one task at a time),
    "flavour" (work of tasks restricted to one flavour / that flavour's capacity), "chain" (longest
    dependency chain, with earliest starts and fixed predecessors), "fixed" (the last fixed task's end).
    Unplannable tasks are left out."""
    return _Problem(tasks, workers, budgets, fixed).lb_parts()


def lower_bound(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> float:
    """planning.md's lower bound on the makespan, extended to multi-task workers, flavour
    restrictions, earliest starts and fixed tasks (see :func:`lower_bound_parts`)."""
    return max(lower_bound_parts(tasks, workers, budgets, fixed).values(), default=0.0)


def _bound_sentence(parts: dict[str, float], prob: _Problem | None = None) -> tuple[str, str]:
    name, value = max(parts.items(), key=lambda kv: kv[1])
    what = {
        "cpu": "the CPU work divided by the CPU capacity (budget or largest workers)",
        "ram_mb": "the RAM work divided by the RAM capacity",
        "storage_mb": "the storage work divided by the storage capacity",
        "tasks": "the total duration divided by the most tasks that can run at once",
        "flavour": "the work of tasks restricted to one flavour divided by that flavour's capacity",
        "chain": "the longest dependency chain",
        "fixed": "the end of the last task already running",
    }.get(name, name)
    if name == "chain" and prob is not None:
        chain = prob.critical_chain()
        shown = ", ".join(str(c) for c in chain[:8]) + (", ..." if len(chain) > 8 else "")
        what += f" (tasks {shown})"
    return name, f"{what} is {_num(round(value, 3))} s"


def explain_infeasible_horizon(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
    *,
    horizon_s: float,
    makespan_s: float | None = None,
) -> str | None:
    """A sentence saying why the horizon cannot be (or was not) met, or None when nothing shows it.

    If the lower bound exceeds the horizon, no plan can meet it: the sentence names the binding
    bound (a resource or the dependency chain) and by how much. Otherwise, if ``makespan_s`` is given
    and exceeds the horizon, it says the plan misses it although the bound would allow it."""
    prob = _Problem(tasks, workers, budgets, fixed)
    return _explain(prob, prob.lb_parts(), horizon_s, makespan_s)


def _explain(prob: _Problem, parts: dict[str, float], horizon_s: float, makespan_s: float | None) -> str | None:
    if not parts:
        return None
    lb = max(parts.values())
    if lb > horizon_s + 1e-9:
        name, sentence = _bound_sentence(parts, prob)
        return (
            f"horizon {_num(horizon_s)} s cannot be met by any plan: {sentence}, "
            f"{_num(round(lb - horizon_s, 3))} s beyond it ({name} bound)"
        )
    if makespan_s is not None and makespan_s > horizon_s + 1e-9:
        name, sentence = _bound_sentence(parts, prob)
        return (
            f"the plan ends at {_num(round(makespan_s, 3))} s, {_num(round(makespan_s - horizon_s, 3))} s after the "
            f"horizon {_num(horizon_s)} s; the lower bound ({sentence}, {name}) would allow it, "
            f"so the resources (mostly {name}) are too tight for this planner to meet it"
        )
    return None


def plan_tasks(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
    *,
    horizon_s: float | None = None,
    mode: Literal["makespan", "deadline"] = "makespan",
) -> Plan:
    """Plan ``tasks`` onto ``workers`` within ``budgets`` around the ``fixed`` (running) tasks.

    makespan mode: earliest makespan, then fewest VMs and VM-hours. deadline mode (needs
    ``horizon_s``): the fewest workers that still meet the horizon; if none does, the best plan with
    every worker, with ``horizon_missed_by_s`` and ``horizon_note`` set. Tasks that can never run go to
    ``unplannable`` with a reason. Raises :class:`PlanningError` only for misuse."""
    t0 = time.perf_counter()
    if mode not in ("makespan", "deadline"):
        raise PlanningError(f"unknown mode {mode!r} (makespan or deadline)")
    if horizon_s is not None and not _finite(horizon_s):
        raise PlanningError(f"horizon_s={horizon_s!r} is not finite")
    if mode == "deadline" and horizon_s is None:
        raise PlanningError("deadline mode needs horizon_s")
    prob = _Problem(tasks, workers, budgets, fixed)
    parts = prob.lb_parts()
    lb = max(parts.values(), default=0.0)
    orders = _priorities(prob)
    cls_info = _classes(prob)
    all_w = list(range(prob.W))
    vm_cap_all = min(prob.vm_max, prob.W)
    best = _best_schedule(prob, all_w, vm_cap_all, lb, orders, cls_info)
    used_cap: int | None = None
    if mode == "deadline" and horizon_s is not None and best.makespan <= horizon_s + 1e-9 and prob.plannable:
        # the fewest workers that still meet the horizon: binary search over a prefix of the workers
        # (those already running fixed tasks first, then one of each flavour some task requires,
        # then the largest)
        ranked = _worker_ranking(prob)
        lo = _min_prefix(prob, ranked)
        hi = best.vms  # the full plan meets the horizon with this many workers
        found: tuple[int, _Schedule] | None = None
        while lo < hi:
            mid = (lo + hi) // 2
            sch = _best_schedule(prob, ranked[:mid], min(prob.vm_max, mid), lb, orders, cls_info)
            if not sch.stuck and sch.makespan <= horizon_s + 1e-9:
                hi = mid
                found = (mid, sch)
            else:
                lo = mid + 1
        if found is not None and (found[1].vms, found[1].vm_seconds) < (best.vms, best.vm_seconds):
            best = found[1]
            used_cap = found[0]
    return _assemble(prob, best, parts, lb, horizon_s, used_cap, t0)


def _worker_ranking(prob: _Problem) -> list[int]:
    busy = {f.worker for f in prob.fixed if f.end_s > 0}
    need = [prob.tasks[i].flavour for i in prob.plannable if prob.tasks[i].flavour is not None]
    size = sorted(
        range(prob.W),
        key=lambda j: (-(prob.wcpu[j] / _maxpos(prob.wcpu) + prob.wram[j] / _maxpos(prob.wram)
                         + prob.wst[j] / _maxpos(prob.wst)), j),
    )
    ranked: list[int] = [j for j in size if prob.workers[j].name in busy]
    seen = set(ranked)
    for fl in dict.fromkeys(need):
        if any(prob.workers[j].flavour.name == fl for j in ranked):
            continue
        j = next(j for j in size if prob.workers[j].flavour.name == fl)
        ranked.append(j)
        seen.add(j)
    ranked += [j for j in size if j not in seen]
    return ranked


def _min_prefix(prob: _Problem, ranked: list[int]) -> int:
    """Smallest prefix of ``ranked`` on which every plannable task fits some allowed worker."""
    kinds = {}
    for i in prob.plannable:
        kinds[(prob.cpu[i], prob.ram[i], prob.st[i], prob.tasks[i].flavour)] = True
    need = 1
    for c, r, s, fl in kinds:
        for pos, j in enumerate(ranked):
            if (fl is None or prob.workers[j].flavour.name == fl) and c <= prob.wcpu[j] + EPS \
                    and r <= prob.wram[j] + EPS and s <= prob.wst[j] + EPS:
                need = max(need, pos + 1)
                break
    return max(need, len({f.worker for f in prob.fixed if f.end_s > 0 and f.worker in prob.widx}))


def _assemble(
    prob: _Problem,
    sch: _Schedule,
    parts: dict[str, float],
    lb: float,
    horizon_s: float | None,
    vm_cap: int | None,
    t0: float,
) -> Plan:
    names = [w.name for w in prob.workers]
    tasks = prob.tasks
    assignments: dict[int, Assignment] = {}
    dur = prob.dur
    for i in prob.plannable:
        s = sch.start[i]
        if s is None:
            continue
        assignments[tasks[i].id] = Assignment(tasks[i].id, names[sch.worker[i]], s, s + dur[i])
    unplannable = [Unplannable(tasks[i].id, r) for i, r in enumerate(prob.reasons) if r is not None]
    for i in sch.stuck:  # never expected: reported rather than silently dropped
        unplannable.append(
            Unplannable(tasks[i].id, f"task {tasks[i].id} (routine {tasks[i].routine}) could not be placed "
                                     "by the planner (internal limit; please report)")
        )
    makespan = sch.makespan
    peak, mean = _profile(prob, assignments, makespan)
    missed = None
    note = None
    if horizon_s is not None and makespan > horizon_s + 1e-9:
        missed = makespan - horizon_s
        note = _explain(prob, parts, horizon_s, makespan)
    binding = max(parts.items(), key=lambda kv: kv[1])[0] if parts else None
    figures = PlanFigures(
        task_count=len(tasks),
        makespan_s=makespan,
        lower_bound_s=lb,
        vms=sch.vms,
        vm_hours=sch.vm_seconds / 3600.0,
        peak_use=peak,
        mean_use=mean,
        planning_s=time.perf_counter() - t0,
        horizon_s=horizon_s,
        horizon_missed_by_s=missed,
        horizon_note=note,
        lower_bound_parts=dict(parts),
        binding_bound=binding,
        rule=sch.rule,
        vm_cap=vm_cap,
    )
    return Plan(assignments, unplannable, figures)


# ------------------------------------------------------------------------------------- validator


def validate_plan(
    plan: Plan,
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> list[str]:
    """Check ``plan`` independently of how it was made; returns violations (empty list = valid).

    Every task planned exactly once or reported unplannable (and only if it really cannot run), on an
    existing worker of an allowed flavour, for its duration, not before now, its earliest start or the
    end of its dependencies; at every instant, no worker over its flavour and no budget or ``vm_max``
    exceeded, counting fixed tasks' usage (an instant where only fixed tasks run is not the plan's
    fault and is not reported, nor are too many VMs when every busy worker runs a fixed task)."""
    out: list[str] = []
    limit = 200

    def bad(msg: str) -> None:
        if len(out) < limit:
            out.append(msg)

    task_by_id: dict[int, TaskDemand] = {}
    for t in tasks:
        if t.id in task_by_id:
            bad(f"duplicate task id {t.id} in the input")
        task_by_id[t.id] = t
    wmap = {w.name: w for w in workers}
    fixed_by_id = {f.id: f for f in fixed}
    unpl: dict[int, str] = {}
    for u in plan.unplannable:
        if u.task_id in unpl:
            bad(f"task {u.task_id} is reported unplannable twice")
        unpl[u.task_id] = u.reason
        if u.task_id not in task_by_id:
            bad(f"unplannable task {u.task_id} is not among the tasks")
    # which tasks truly cannot run (computed here from the input, not taken from the planner)
    try:
        prob = _Problem(tasks, workers, budgets, fixed)
        never = {tasks[i].id for i, r in enumerate(prob.reasons) if r is not None}
    except PlanningError as exc:
        bad(f"the input itself is invalid: {exc}")
        never = set()
    for key, a in plan.assignments.items():
        if key != a.task_id:
            bad(f"assignment stored under {key} is for task {a.task_id}")
        if a.task_id not in task_by_id:
            bad(f"assignment for unknown task {a.task_id}")
        if a.task_id in unpl:
            bad(f"task {a.task_id} is both assigned and reported unplannable")
    for t in tasks:
        if t.id not in plan.assignments and t.id not in unpl:
            bad(f"task {t.id} is neither planned nor reported unplannable")
        if t.id in unpl and t.id not in never:
            bad(f"task {t.id} is reported unplannable ({unpl[t.id]!r}) but it could run")
        if t.id in plan.assignments and t.id in never:
            bad(f"task {t.id} is planned although it can never run")

    for a in plan.assignments.values():
        t = task_by_id.get(a.task_id)
        if t is None:
            continue
        w = wmap.get(a.worker)
        if w is None:
            bad(f"task {t.id} is on unknown worker {a.worker!r}")
            continue
        if t.flavour is not None and w.flavour.name != t.flavour:
            bad(f"task {t.id} needs flavour {t.flavour!r} but runs on {w.name!r} ({w.flavour.name!r})")
        if abs((a.end_s - a.start_s) - t.duration_s) > _TOL * max(1.0, t.duration_s):
            bad(f"task {t.id} runs {a.end_s - a.start_s:g} s instead of its duration {t.duration_s:g} s")
        if a.start_s < -_TOL:
            bad(f"task {t.id} starts in the past ({a.start_s:g} s)")
        if a.start_s < t.earliest_start_s - _TOL:
            bad(f"task {t.id} starts at {a.start_s:g} s before its earliest start {t.earliest_start_s:g} s")
        for d in t.depends_on:
            if d in plan.assignments:
                pe = plan.assignments[d].end_s
            elif d in fixed_by_id:
                pe = fixed_by_id[d].end_s
            elif d in task_by_id:
                bad(f"task {t.id} is planned but its dependency {d} is not")
                continue
            else:
                continue  # already finished
            if a.start_s < pe - _TOL:
                bad(f"task {t.id} starts at {a.start_s:g} s before its dependency {d} ends at {pe:g} s")

    # capacity over time: a sweep over interval ends (before starts at the same instant)
    cpu_max, ram_max, st_max = _inf(budgets.cpu_max), _inf(budgets.ram_max_mb), _inf(budgets.storage_max_mb)
    vm_max = _inf(budgets.vm_max)
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
    g = [0.0, 0.0, 0.0]
    planned_running = 0
    per: dict[str, list[float]] = {}  # worker -> [cpu, ram, storage, tasks, planned tasks]
    busy = 0
    planned_only = 0  # workers in use by planned tasks alone
    k = 0
    m = len(ev)
    reported: set[tuple] = set()
    while k < m:
        t = ev[k][0]
        touched: set[str] = set()
        while k < m and ev[k][0] == t:
            _t, sign, c, r, s, wn, planned = ev[k]
            u = per.setdefault(wn, [0.0, 0.0, 0.0, 0, 0])
            if u[3] == 0 and sign > 0:
                busy += 1
            if u[3] > 0 and u[3] == u[4]:
                planned_only -= 1
            u[0] += sign * c
            u[1] += sign * r
            u[2] += sign * s
            u[3] += sign
            u[4] += sign * planned
            if u[3] == 0 and sign < 0:
                busy -= 1
            if u[3] > 0 and u[3] == u[4]:
                planned_only += 1
            g[0] += sign * c
            g[1] += sign * r
            g[2] += sign * s
            planned_running += sign * planned
            touched.add(wn)
            k += 1
        if planned_running <= 0:
            continue
        # VMs: the plan is at fault when it keeps a worker busy that fixed tasks alone would not
        for name, val, cap in (("CPU", g[0], cpu_max), ("RAM", g[1], ram_max), ("storage", g[2], st_max),
                               ("VMs", busy if planned_only else 0, vm_max)):
            if val > cap + _TOL * max(1.0, cap if math.isfinite(cap) else 1.0) and ("g", name) not in reported:
                reported.add(("g", name))
                bad(f"at {t:g} s the {name} in use ({val:g}) exceeds the budget {cap:g} (first instant)")
        for wn in touched:
            u = per[wn]
            w = wmap.get(wn)
            if w is None or u[4] <= 0:
                continue
            fl = w.flavour
            for name, val, cap in (("CPU", u[0], fl.cpu), ("RAM", u[1], fl.ram_mb), ("disk", u[2], fl.disk_mb)):
                if val > cap + _TOL * max(1.0, cap) and (wn, name) not in reported:
                    reported.add((wn, name))
                    bad(f"at {t:g} s worker {wn!r} uses {val:g} {name}, over its flavour {fl.name!r} ({cap:g})")
    if len(out) >= limit:
        out.append("(more violations not listed)")
    return out
