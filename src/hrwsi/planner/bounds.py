"""Lower bounds on the makespan (how good is a plan?) and the sentences that explain a missed horizon.

planning.md's terms, extended soundly: resource work / capacity (the budget or the ``vm_max`` largest
workers), fixed tasks' remaining work included but clipped to capacity; total duration / the most tasks
that can run at once; work of tasks restricted to a flavour / that flavour's capacity; the longest chain
with earliest starts and fixed predecessors; the last fixed task's end. Unplannable tasks are left out."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    parts.update(_resource_parts(prob, budgets, topks))
    if P:
        concurrency = _concurrency_part(prob, budgets, k)
        if concurrency > 0:
            parts["tasks"] = concurrency
        restricted = _restricted_flavour_part(prob, budgets, k)
        if restricted > 0:
            parts["flavour"] = restricted
        # the longest chain, with release times (retry backoff, fixed predecessors)
        parts["chain"] = max(earliest_finish(prob))
    return parts


def _resource_parts(prob: Problem, budgets: Sequence[float], topks: Sequence[float]) -> dict[str, float]:
    """Work per resource (planned and fixed) over the budget, and over the largest workers."""
    fa_all, fa_known = _fixed_work(prob, budgets, topks)
    area = [0.0, 0.0, 0.0]
    for i in prob.plannable:
        d = prob.dur[i]
        area[0] += prob.cpu[i] * d
        area[1] += prob.ram[i] * d
        area[2] += prob.st[i] * d
    parts: dict[str, float] = {}
    for r, key in enumerate(RESOURCES):
        best = 0.0
        for a, cap in ((area[r] + fa_all[r], budgets[r]), (area[r] + fa_known[r], topks[r])):
            if a > 0:
                best = max(best, a / cap if cap > 0 else math.inf)
        if best > 0:
            parts[key] = best
    return parts


def _concurrency_part(prob: Problem, budgets: Sequence[float], k: int) -> float:
    """Total duration / how many tasks can run at once at most (planning.md's sum(duration)/vm_max,
    generalised to workers that hold several tasks)."""
    P = prob.plannable
    mins = (min(prob.cpu[i] for i in P), min(prob.ram[i] for i in P), min(prob.st[i] for i in P))

    def count_fit(caps: Sequence[float]) -> float:
        m = math.inf
        for c, lo in zip(caps, mins):
            if lo > 0 and math.isfinite(c):  # an unlimited budget limits nothing
                m = min(m, math.floor(c / lo + 1e-9))
        return m

    per_worker = sorted((count_fit((prob.wcpu[j], prob.wram[j], prob.wst[j])) for j in range(prob.W)), reverse=True)
    conc = min(count_fit(budgets), sum(per_worker[:k]))
    total = sum(prob.dur[i] for i in P)
    if not math.isfinite(conc) or total <= 0:
        return 0.0
    return total / conc if conc > 0 else math.inf


def _restricted_flavour_part(prob: Problem, budgets: Sequence[float], k: int) -> float:
    """Tasks restricted to one flavour only have that flavour's workers."""
    restricted: dict[str, list[int]] = {}
    for i in prob.plannable:
        fl = prob.tasks[i].flavour
        if fl is not None:
            restricted.setdefault(fl, []).append(i)
    caps_w = (prob.wcpu, prob.wram, prob.wst)
    best = 0.0
    for fl, members in restricted.items():
        fws = prob.by_flavour.get(fl, [])
        kf = min(k, len(fws))
        for r, vals in enumerate((prob.cpu, prob.ram, prob.st)):
            a = sum(vals[i] * prob.dur[i] for i in members)
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
    can run at once; planning.md's sum(duration)/vm_max when a worker holds one task at a time),
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
    "tasks": "the total duration divided by the most tasks that can run at once",
    "flavour": "the work of tasks restricted to one flavour divided by that flavour's capacity",
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
