"""The priority rules tried, and which plan is kept.

Rules (static orders of the plannable tasks, best first): critical path (bottom level) with EASY
backfilling; resource-weighted (a task's demand on each resource relative to capacity, weighted by how
binding that resource is); a blend of the two; plain critical path. With lanes or deadlines, each order is
taken within (effective priority, effective deadline). The best plan is kept (fewest left out, then late,
then makespan, then VMs, then VM-hours), stopping once one is within ``GOOD_ENOUGH`` x LB. The first two
rules always run; the packing search when they end above ``TRY_PACKING_ABOVE`` x LB on coarse-grained
instances; the last two on small instances or when the plan is still above ``QUALITY`` x LB (their cost
buys nothing measurable on large instances, see ADR 0003)."""

from __future__ import annotations

from collections.abc import Sequence

from hrwsi.planner.figures import vm_usage
from hrwsi.planner.lanes import Urgency
from hrwsi.planner.packing import PackingScheduler
from hrwsi.planner.problem import Problem
from hrwsi.planner.schedule import DemandClasses, EventScheduler, Schedule

GOOD_ENOUGH = 1.002  # stop trying priority rules once makespan <= this x LB
TRY_PACKING_ABOVE = 1.01  # try the (slower) packing search when the greedy rules end above this x LB
SMALL = 500  # up to this many tasks, every rule is tried (a pass takes a few milliseconds)
QUALITY = 1.01  # beyond, the blend and the plain critical path only when the best plan is above this x LB
RESOURCE_PARTS = ("cpu", "ram_mb", "storage_mb")


def _capacities(prob: Problem) -> list[float]:
    """Per resource: the budget or the ``vm_max`` largest workers, whichever is smaller (1.0 if 0)."""
    caps = []
    for r, cap_b in enumerate((prob.cpu_max, prob.ram_max, prob.st_max)):
        topk = sum(sorted((c[r] for c in zip(prob.wcpu, prob.wram, prob.wst)), reverse=True)[: prob.vm_max])
        caps.append(min(cap_b, topk) or 1.0)
    return caps


def priority_orders(prob: Problem, parts: dict[str, float], urgency: Urgency | None = None) -> dict[str, list[int]]:
    """Static priority orders (best first) of the plannable tasks; with lanes or deadlines, each rule's
    order within (effective priority, effective deadline) (lanes.Urgency)."""
    P = prob.plannable
    n = prob.n
    dur, tail = prob.dur, prob.chain_after()
    bl = [0.0] * n  # bottom level: longest path from the task's start to the end of the graph
    for i in P:
        bl[i] = dur[i] + tail[i]
    caps = _capacities(prob)
    lbs = [parts.get(k, 0.0) for k in RESOURCE_PARTS]
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
    if urgency is None:
        return {
            "critical-path": sorted(P, key=lambda i: (-bl[i], -wd[i], ids[i])),
            "resource": sorted(P, key=lambda i: (-wd[i], -bl[i], ids[i])),
            "blend": sorted(P, key=lambda i: (-(bl[i] / maxbl + 0.5 * wd[i] / maxwd), ids[i])),
        }
    pr, dl = urgency.priority, urgency.deadline
    return {
        "critical-path": sorted(P, key=lambda i: (pr[i], dl[i], -bl[i], -wd[i], ids[i])),
        "resource": sorted(P, key=lambda i: (pr[i], dl[i], -wd[i], -bl[i], ids[i])),
        "blend": sorted(P, key=lambda i: (pr[i], dl[i], -(bl[i] / maxbl + 0.5 * wd[i] / maxwd), ids[i])),
    }


def packing_weights(prob: Problem, parts: dict[str, float]) -> tuple[float, float, float]:
    """Per-unit value of each resource when packing: 1/capacity of the scarcest resource(s)."""
    caps = _capacities(prob)
    lbs = [parts.get(k, 0.0) for k in RESOURCE_PARTS]
    top = max(lbs) or 1.0
    # the bottleneck counts fully, the others a little (breaks ties towards balanced use)
    w = [(1.0 if lb >= top * 0.999 else 1e-7 * lb / top) / cap for lb, cap in zip(lbs, caps)]
    return w[0], w[1], w[2]


def is_coarse(prob: Problem, parts: dict[str, float]) -> bool:
    """Whether a single task takes >= 5 % of the scarcest resource's capacity."""
    lbs = [parts.get(k, 0.0) for k in RESOURCE_PARTS]
    if max(lbs) <= 0:
        return False
    r = lbs.index(max(lbs))
    vals = (prob.cpu, prob.ram, prob.st)[r]
    caps_w = (prob.wcpu, prob.wram, prob.wst)[r]
    cap = min((prob.cpu_max, prob.ram_max, prob.st_max)[r], sum(sorted(caps_w, reverse=True)[: prob.vm_max]))
    biggest = max((vals[i] for i in prob.plannable), default=0.0)
    return cap > 0 and biggest / cap >= 0.05


def _plan_key(s: Schedule) -> tuple:
    return (len(s.stuck), s.late, round(s.makespan, 6))


class RuleSet:
    """What the rules need, computed once per planning call and reused for every worker subset tried
    (deadline mode): the orders, the demand classes, the bound."""

    def __init__(self, prob: Problem, parts: dict[str, float]) -> None:
        self.prob = prob
        self.parts = parts
        self.lb = max(parts.values(), default=0.0)
        self.urgency = Urgency.of(prob)
        self.orders = priority_orders(prob, parts, self.urgency)
        self.classes = DemandClasses(prob, self.urgency)

    def _good_enough(self, sch: Schedule) -> bool:
        return not sch.stuck and not sch.late and sch.makespan <= self.lb * GOOD_ENOUGH + 1e-9

    def _run(self, name: str, how: str, workers: Sequence[int], vm_cap: int) -> Schedule:
        """One pass of rule ``name``: ``how`` is "reserve" (EASY backfilling), "fill" (packing search) or ""."""
        prob = self.prob
        if how == "fill":
            scheduler: EventScheduler = PackingScheduler(prob, self.classes, self.orders[name], workers, vm_cap,
                                                         packing_weights(prob, self.parts))
        else:
            scheduler = EventScheduler(prob, self.classes, self.orders[name], workers, vm_cap, reserve=how == "reserve")
        sch = scheduler.run(name + (f"+{how}" if how else ""))
        if self.urgency is not None and self.urgency.has_deadlines:
            sch.late = len(late_tasks(prob, sch))
        return sch

    def best_schedule(self, workers: Sequence[int], vm_cap: int) -> Schedule:
        """The best plan on ``workers`` with at most ``vm_cap`` of them in use at once: the fewest tasks
        left out, then late, then the earliest makespan, then the fewest VMs and VM-hours."""
        plans: list[Schedule] = []
        for name, how in self._variants(plans):
            plans.append(self._run(name, how, workers, vm_cap))
            if self._good_enough(plans[-1]):
                break
        return self._best_of(plans)

    def _variants(self, plans: list[Schedule]):
        """The passes to try, decided as the plans come in (``plans``): EASY backfilling on the critical
        path first (it keeps long chains moving while resources stay busy), then the resource-weighted
        order; the blend with backfilling (the most robust where a chain and a bottleneck both bind); the
        packing search where it may pay; the blend and the plain critical path. Beyond the first two,
        the rules run only on small instances or while the best plan is still above ``QUALITY`` x LB."""
        yield "critical-path", "reserve"
        yield "resource", ""
        if self._worth_more(plans):
            yield "blend", "reserve"
        if self._packing_may_pay(min(s.makespan for s in plans)):
            yield "resource", "fill"
            yield "critical-path", "fill"
        if self._worth_more(plans):
            yield "blend", ""
            yield "critical-path", ""

    def _worth_more(self, plans: list[Schedule]) -> bool:
        return self.prob.n <= SMALL or min(s.makespan for s in plans) > self.lb * QUALITY

    def _best_of(self, plans: list[Schedule]) -> Schedule:
        """The best plan; the VMs and VM-hours (a sweep per plan) only for those tied before them."""
        first = min(plans, key=_plan_key)
        tied = [s for s in plans if _plan_key(s) == _plan_key(first)]
        for sch in tied:
            sch.vms, sch.vm_seconds = vm_usage(self.prob, sch)
        return min(tied, key=lambda s: (s.vms, s.vm_seconds))

    def _packing_may_pay(self, makespan: float) -> bool:
        """The packing search only pays with a few demand classes of tasks that are large relative to the
        scarcest capacity (greedy packing then leaves a sizeable part of it unused), when the makespan is
        about packing rather than about a long chain."""
        if self.urgency is not None:
            return False  # it picks tasks by how they pack, not by lane and deadline
        chain = self.parts.get("chain", 0.0)
        return (makespan > self.lb * TRY_PACKING_ABOVE and len(self.classes) <= 64 and chain < 0.9 * self.lb
                and is_coarse(self.prob, self.parts))


def late_tasks(prob: Problem, sch: Schedule) -> list[tuple[float, int, float]]:
    """(deadline, task, planned end) of the planned tasks that end after their own deadline."""
    out = []
    dur = prob.dur
    for i in prob.plannable:
        deadline = prob.tasks[i].deadline_s
        s = sch.start[i]
        if deadline is not None and s is not None and s + dur[i] > deadline + 1e-9:
            out.append((float(deadline), i, s + dur[i]))
    return sorted(out, key=lambda x: (x[0], prob.tasks[x[1]].id))
