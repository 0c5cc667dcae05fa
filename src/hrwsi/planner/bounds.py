"""Lower bounds on the makespan (how good is a plan?) and the sentences that explain a missed horizon.

planning.md's terms, extended soundly: resource work / capacity (the budget or the ``vm_max`` largest
workers), fixed tasks' remaining work included but clipped to capacity; total duration / the most tasks
that can run at once, or the rounds whole tasks take at that many at once; the longest chain with
earliest starts and fixed predecessors; the last fixed task's end. Two terms see more of the structure:
- "flavour": for every set of worker kinds, the tasks that fit only those kinds (by their restriction or
  their size) must run there: their work over the most of it those workers, and the budgets, can hold at
  once (a knapsack per kind, ``capacity.most_held``: one 3-CPU task at a time on a 4-CPU worker);
- "window": tasks that cannot start before ``a`` (their chain before them) and must end ``b`` before the
  end (their chain after them) all run within [a, T - b]: T >= a + b + their work / capacity.
Each term is a valid bound on its own, so their max is too. Unplannable tasks are left out."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from hrwsi.planner.capacity import most_held
from hrwsi.planner.model import Budgets, FixedTask, TaskDemand, Worker, number
from hrwsi.planner.problem import Problem

RESOURCES = ("cpu", "ram_mb", "storage_mb")


def bound_parts(prob: Problem) -> dict[str, float]:
    """Each term of the lower bound of ``prob`` by name (see :func:`lower_bound_parts`)."""
    P = prob.plannable
    parts: dict[str, float] = {}
    if not P and not prob.fixed:
        return parts
    k = min(prob.vm_max, prob.W)
    budgets = (prob.cpu_max, prob.ram_max, prob.st_max)
    caps_w = (prob.wcpu, prob.wram, prob.wst)
    topks = [sum(sorted(caps_w[r], reverse=True)[:k]) for r in range(3)]
    fixed_end = max((float(f.end_s) for f in prob.fixed), default=0.0)
    if fixed_end > 0:
        parts["fixed"] = fixed_end
    kinds = _demand_totals(prob)
    parts.update(_resource_parts(prob, budgets, topks, kinds))
    if P:
        concurrency = _concurrency_part(prob, budgets, k, kinds)
        if concurrency > 0:
            parts["tasks"] = concurrency
        # the longest chain, with release times (retry backoff, fixed predecessors)
        heads = earliest_starts(prob)
        chain = max(heads[i] + prob.dur[i] for i in P)
        resource = max((parts.get(key, 0.0) for key in RESOURCES), default=0.0)
        # the window adds at most the chain to a resource term: not worth a pass over the tasks when short
        grid = HeadTailGrid(prob, heads) if chain >= WINDOW_FROM * resource else None
        fit = FitBound(prob, kinds, grid)
        flavour = max(_restricted_flavour_part(prob, budgets, k, kinds), fit.value())
        if flavour > 0:
            parts["flavour"] = flavour
        parts["chain"] = chain
        if grid is not None:
            window = fit.windows(chain, max(parts.values()))
            if window > 0:
                parts["window"] = window
    return parts


WINDOW_FROM = 0.1  # the "window" term is computed when the chain is at least this share of the resource bound

# (cpu, ram, storage), restriction, total duration, index in Problem.demands
Kind = tuple[tuple[float, float, float], "str | None", float, int]


def _demand_totals(prob: Problem) -> list[Kind]:
    """The plannable tasks' demand kinds, each with its restriction and the sum of its tasks' durations."""
    totals = [-1.0] * len(prob.demands)  # -1: no plannable task of this kind
    demand_of, dur = prob.demand_of, prob.dur
    for i in prob.plannable:
        k = demand_of[i]
        totals[k] = dur[i] if totals[k] < 0 else totals[k] + dur[i]
    return [(d[:3], d[3], total, q) for q, (d, total) in enumerate(zip(prob.demands, totals)) if total >= 0]


def _resource_parts(prob: Problem, budgets: Sequence[float], topks: Sequence[float],
                    kinds: list[Kind]) -> dict[str, float]:
    """Work per resource (planned and fixed) over the budget, and over the largest workers."""
    fa_all, fa_known = _fixed_work(prob, budgets, topks)
    area = [sum(d[r] * total for d, _fl, total, _q in kinds) for r in range(3)]
    parts: dict[str, float] = {}
    for r, key in enumerate(RESOURCES):
        best = 0.0
        for a, cap in ((area[r] + fa_all[r], budgets[r]), (area[r] + fa_known[r], topks[r])):
            if a > 0:
                best = max(best, a / cap if cap > 0 else math.inf)
        if best > 0:
            parts[key] = best
    return parts


def _most_tasks_at_once(prob: Problem, budgets: Sequence[float], k: int, kinds: list[Kind]) -> float:
    """How many tasks can run at once at most: each worker and the budgets hold at most capacity / the
    smallest demand of each resource."""
    mins = [min(d[r] for d, _fl, _t, _q in kinds) for r in range(3)]

    def count_fit(caps: Sequence[float]) -> float:
        m = math.inf
        for c, lo in zip(caps, mins):
            if lo > 0 and math.isfinite(c):  # an unlimited budget limits nothing
                m = min(m, math.floor(c / lo + 1e-9))
        return m

    per_worker = sorted((count_fit((prob.wcpu[j], prob.wram[j], prob.wst[j])) for j in range(prob.W)), reverse=True)
    return min(count_fit(budgets), sum(per_worker[:k]))


def _concurrency_part(prob: Problem, budgets: Sequence[float], k: int, kinds: list[Kind]) -> float:
    """Total duration / how many tasks can run at once at most (planning.md's sum(duration)/vm_max,
    generalised to workers that hold several tasks), and, since tasks are whole, the rounds they
    take (_rounds_part)."""
    conc = _most_tasks_at_once(prob, budgets, k, kinds)
    total = sum(t for _d, _fl, t, _q in kinds)
    if not math.isfinite(conc) or total <= 0:
        return 0.0
    if conc <= 0:
        return math.inf
    return max(total / conc, _rounds_part([prob.dur[i] for i in prob.plannable], int(conc)))


def _rounds_part(durations: list[float], m: int) -> float:
    """Tasks are whole: with at most m running at once, they can be laid on m lines (the intervals of
    a schedule with at most m at once colour with m colours), so of the km + 1 longest, k + 1 share a
    line and run one after the other: at least the k + 1 shortest of them. Twenty 20 s tasks, six at
    once, take four rounds, 80 s, where the total over six said 67 s (found by exploratory testing:
    plans read 1.17x their bound when they were as good as can be)."""
    n = len(durations)
    if m <= 0 or n <= m:
        return 0.0  # (the longest task alone: the chain term)
    longest = sorted(durations, reverse=True)
    prefix = [0.0]
    for d in longest:
        prefix.append(prefix[-1] + d)
    return max(prefix[k * m + 1] - prefix[k * m - k] for k in range(1, (n - 1) // m + 1))


def _restricted_flavour_part(prob: Problem, budgets: Sequence[float], k: int, kinds: list[Kind]) -> float:
    """Tasks restricted to one flavour only have that flavour's workers."""
    caps_w = (prob.wcpu, prob.wram, prob.wst)
    best = 0.0
    for fl in {fl for _d, fl, _t, _q in kinds if fl is not None}:
        fws = prob.by_flavour.get(fl, [])
        kf = min(k, len(fws))
        for r in range(3):
            a = sum(d[r] * total for d, f, total, _q in kinds if f == fl)
            if a <= 0:
                continue
            cap = min(budgets[r], sum(sorted((caps_w[r][j] for j in fws), reverse=True)[:kf]))
            best = max(best, a / cap if cap > 0 else math.inf)
    return best


def _fixed_work(prob: Problem, budgets: Sequence[float], topks: Sequence[float]) -> tuple[list[float], list[float]]:
    """Work of the fixed tasks after t=0, each instant clipped to what it can take from the capacity
    (budgets; the known workers), so that the bound stays valid even when the fixed tasks alone exceed
    a limit."""
    fa_all = [0.0, 0.0, 0.0]
    fa_known = [0.0, 0.0, 0.0]
    ev = []
    for f in prob.fixed:
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
                for r, cap in enumerate((prob.wcpu[j], prob.wram[j], prob.wst[j])):
                    known[r] += min(u[r], cap)
            for r in range(3):
                fa_all[r] += min(g[r], budgets[r]) * dt
                fa_known[r] += min(known[r], topks[r]) * dt
            prev = t
        vals = (f.cpu, f.ram_mb, f.storage_mb)
        for r in range(3):
            g[r] += sign * vals[r]
        j = prob.widx.get(f.worker, -1)
        if j >= 0:
            u = per.setdefault(j, [0.0, 0.0, 0.0])
            for r in range(3):
                u[r] += sign * vals[r]
    return fa_all, fa_known


class FitBound:
    """The "flavour" term: tasks that fit only some kinds of worker (flavour restriction or size) over the
    most of them those workers and the budgets can hold at once; and, with a head/tail grid, the "window"
    term of each such group over the same capacity."""

    MAX_SETS = 64  # sets of worker kinds tried (all of them when there are at most 6 kinds)

    def __init__(self, prob: Problem, demand_kinds: list[Kind], grid: HeadTailGrid | None = None) -> None:
        self.prob = prob
        self.grid = grid
        self.kinds = prob.kinds  # worker kinds: ((flavour, cpu, ram, disk), workers)
        self.budget = (prob.cpu_max, prob.ram_max, prob.st_max)
        # demand classes: demand, total duration, the worker kinds (bit mask) each fits, index in Problem.demands
        self.classes = [(d, total, prob.kinds_fitting(*d, fl), q) for d, fl, total, q in demand_kinds]
        self.cache: dict[tuple, float] = {}
        self.bounds: list[tuple[float, list, int, float]] = []  # (fit bound, group, measure, capacity)

    def _kind_sets(self) -> list[int]:
        """The unions of the classes' kind sets (a group is tightest on the union of its members' kinds)."""
        sets = list(dict.fromkeys(m for _d, _t, m, _q in self.classes if m))
        k = 0
        while k < len(sets) and len(sets) < self.MAX_SETS:
            for m in list(sets[: k + 1]):
                u = m | sets[k]
                if u not in sets and len(sets) < self.MAX_SETS:
                    sets.append(u)
            k += 1
        return sets

    def value(self) -> float:
        """The best over groups: for each set of kinds (a union of the classes' kind sets), all the classes
        confined to it; and each class alone on its own kinds (one big class on few workers binds alone
        where its group, diluted by smaller tasks, would not)."""
        groups = [(kind_set, [c for c in self.classes if c[2] and c[2] & ~kind_set == 0])
                  for kind_set in self._kind_sets()]
        if len(self.classes) > 1:
            groups += [(c[2], [c]) for c in self.classes if c[2]]
        best = 0.0
        for kind_set, group in groups:
            for measure in range(4):  # CPU, RAM, storage, number of tasks
                work, cap = self._group_capacity(kind_set, group, measure)
                if work > 0:
                    bound = work / cap if cap > 0 else math.inf
                    self.bounds.append((bound, group, measure, cap))
                    best = max(best, bound)
        return best

    def windows(self, chain: float, best: float) -> float:
        """The "window" term over the groups (after ``value``): only where it could beat ``best``, since
        a group's window is at most the chain plus its fit bound."""
        out = 0.0
        for bound, group, measure, cap in sorted(self.bounds, key=lambda b: -b[0]):
            if bound + chain <= max(best, out) or not math.isfinite(cap) or cap <= 0:
                continue
            members = [(q, d[measure] if measure < 3 else 1.0) for d, _t, _m, q in group]
            out = max(out, self.grid.window(members, cap))
        return out

    def _group_capacity(self, kind_set: int, group: list, measure: int) -> tuple[float, float]:
        """The group's work of ``measure``, and the most of it that can run at once."""
        work = sum((d[measure] if measure < 3 else 1.0) * total for d, total, _m, _q in group)
        if work <= 0:
            return 0.0, 0.0
        items = tuple(sorted({((d[measure] if measure < 3 else 1.0), d) for d, _t, _m, _q in group}))
        held: list[float] = []
        for q, ((_name, c, r, s), workers) in enumerate(self.kinds):
            if kind_set >> q & 1:
                held += [self._most_held((c, r, s), items)] * len(workers)
        held.sort(reverse=True)
        return work, min(sum(held[: self.prob.vm_max]), self._most_held(self.budget, items))

    def _most_held(self, capacity: tuple[float, float, float], items: tuple) -> float:
        key = (capacity, items)
        if key not in self.cache:
            self.cache[key] = most_held(capacity, items)
        return self.cache[key]


Demand = tuple[float, float, float]


class HeadTailGrid:
    """The plannable tasks' durations by demand kind on a grid of (head, tail) thresholds: a task's head is
    its earliest start, its tail the longest chain after it. Tasks with head >= a and tail >= b all run
    within [a, T - b], so T >= a + b + their work / what can run of it at once (``window``)."""

    SIZE = 20  # thresholds per axis (quantiles)

    def __init__(self, prob: Problem, heads: list[float]) -> None:
        P = prob.plannable
        tails = prob.chain_after()
        self.a_values = _thresholds([heads[i] for i in P], self.SIZE)
        self.b_values = _thresholds([tails[i] for i in P], self.SIZE)
        ga, gb = len(self.a_values), len(self.b_values)
        self.cells: dict[int, list[list[float]]] = {}  # demand kind -> [head cell][tail cell] -> duration
        demand_of, dur, a_values, b_values = prob.demand_of, prob.dur, self.a_values, self.b_values
        for i in P:
            cell = self.cells.get(demand_of[i])
            if cell is None:
                cell = self.cells[demand_of[i]] = [[0.0] * gb for _ in range(ga)]
            cell[bisect_right(a_values, heads[i]) - 1][bisect_right(b_values, tails[i]) - 1] += dur[i]

    def window(self, members: list[tuple[int, float]], cap: float) -> float:
        """max over the grid of a + b + (work of the members' tasks with head >= a, tail >= b) / cap;
        ``members``: (demand kind, measure per second of one task)."""
        ga, gb = len(self.a_values), len(self.b_values)
        if ga == 1 and gb == 1:
            return 0.0
        suffix = [[0.0] * (gb + 1) for _ in range(ga + 1)]  # work with head >= a_values[x], tail >= b_values[y]
        cells = [(self.cells[q], v) for q, v in members if v > 0 and q in self.cells]
        best = 0.0
        for x in range(ga - 1, -1, -1):
            row, below = suffix[x], suffix[x + 1]
            for y in range(gb - 1, -1, -1):
                here = sum(cell[x][y] * v for cell, v in cells)
                row[y] = here + below[y] + row[y + 1] - below[y + 1]
                if row[y] > 0:
                    best = max(best, self.a_values[x] + self.b_values[y] + row[y] / cap)
        return best


def _thresholds(values: list[float], grid: int) -> list[float]:
    """0 and up to ``grid`` quantiles of ``values``, sorted and distinct."""
    ordered = sorted(values)
    picks = {0.0}
    for q in range(1, grid):
        picks.add(ordered[(len(ordered) - 1) * q // (grid - 1)])
    return sorted(p for p in picks if p >= 0.0)


def earliest_starts(prob: Problem) -> list[float]:
    """Earliest start of every plannable task ignoring resources (chain + release times)."""
    es = [0.0] * prob.n
    release, dur, preds = prob.release, prob.dur, prob.preds
    for i in prob.plannable:
        s = release[i]
        for p in preds[i]:
            if es[p] + dur[p] > s:
                s = es[p] + dur[p]
        es[i] = s
    return es


def earliest_finish(prob: Problem) -> list[float]:
    """Earliest finish of every plannable task ignoring resources (chain + release times)."""
    ef = [0.0] * prob.n
    release, dur, preds = prob.release, prob.dur, prob.preds
    out = []
    for i in prob.plannable:
        s = release[i]
        for p in preds[i]:
            if ef[p] > s:
                s = ef[p]
        ef[i] = s + dur[i]
        out.append(ef[i])
    return out or [0.0]


def critical_chain(prob: Problem) -> list[int]:
    """Task ids of one longest chain (for explanations)."""
    ef = [0.0] * prob.n
    via = [-1] * prob.n
    release, dur, preds = prob.release, prob.dur, prob.preds
    for i in prob.plannable:
        s = release[i]
        for p in preds[i]:
            if ef[p] > s:
                s = ef[p]
                via[i] = p
        ef[i] = s + dur[i]
    if not prob.plannable:
        return []
    i = max(prob.plannable, key=lambda x: ef[x])
    chain = []
    while i >= 0:
        chain.append(prob.tasks[i].id)
        i = via[i]
    chain.reverse()
    return chain


# ------------------------------------------------------------------------------------------ API


def lower_bound_parts(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> dict[str, float]:
    """Each term of the lower bound, by name: "cpu", "ram_mb", "storage_mb" (work / capacity, capacity
    being the budget or the ``vm_max`` largest workers), "tasks" (total duration / the most tasks that
    can run at once; planning.md's sum(duration)/vm_max when a worker holds one task at a time; or,
    tasks being whole, the rounds they take at that many at once),
    "flavour" (work of tasks restricted to one flavour / that flavour's capacity), "chain" (longest
    dependency chain, with earliest starts and fixed predecessors), "fixed" (the last fixed task's end).
    Unplannable tasks are left out."""
    return bound_parts(Problem(tasks, workers, budgets, fixed))


def lower_bound(
    tasks: Sequence[TaskDemand],
    workers: Sequence[Worker],
    budgets: Budgets,
    fixed: Sequence[FixedTask] = (),
) -> float:
    """planning.md's lower bound on the makespan, extended to multi-task workers, flavour
    restrictions, earliest starts and fixed tasks (see :func:`lower_bound_parts`)."""
    return max(lower_bound_parts(tasks, workers, budgets, fixed).values(), default=0.0)


# ------------------------------------------------------------------------------------ explanations


_BOUND_WORDS = {
    "cpu": "the CPU work divided by the CPU capacity (budget or largest workers)",
    "ram_mb": "the RAM work divided by the RAM capacity",
    "storage_mb": "the storage work divided by the storage capacity",
    "tasks": "the total duration divided by the most tasks that can run at once, or the rounds they take",
    "flavour": "the work of tasks that fit only some flavours divided by what those flavours' workers can hold of it",
    "window": "the work of tasks between their chains before and after, divided by the capacity, plus those chains",
    "chain": "the longest dependency chain",
    "fixed": "the end of the last task already running",
}


def bound_sentence(parts: dict[str, float], prob: Problem | None = None) -> tuple[str, str]:
    """The binding term's name and a sentence saying what it is and its value."""
    name, value = max(parts.items(), key=lambda kv: kv[1])
    what = _BOUND_WORDS.get(name, name)
    if name == "chain" and prob is not None:
        chain = critical_chain(prob)
        shown = ", ".join(str(c) for c in chain[:8]) + (", ..." if len(chain) > 8 else "")
        what += f" (tasks {shown})"
    return name, f"{what} is {number(round(value, 3))} s"


def explain(prob: Problem, parts: dict[str, float], horizon_s: float, makespan_s: float | None) -> str | None:
    """Why ``horizon_s`` cannot be (or was not) met, or None."""
    if not parts:
        return None
    lb = max(parts.values())
    if lb > horizon_s + 1e-9:
        name, sentence = bound_sentence(parts, prob)
        return (
            f"horizon {number(horizon_s)} s cannot be met by any plan: {sentence}, "
            f"{number(round(lb - horizon_s, 3))} s beyond it ({name} bound)"
        )
    if makespan_s is not None and makespan_s > horizon_s + 1e-9:
        name, sentence = bound_sentence(parts, prob)
        return (
            f"the plan ends at {number(round(makespan_s, 3))} s, {number(round(makespan_s - horizon_s, 3))} s "
            f"after the horizon {number(horizon_s)} s; the lower bound ({sentence}, {name}) would allow it, "
            f"so the resources (mostly {name}) are too tight for this planner to meet it"
        )
    return None


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
    prob = Problem(tasks, workers, budgets, fixed)
    return explain(prob, bound_parts(prob), horizon_s, makespan_s)
