"""The priority rules tried, and which plan is kept.

Rules (static orders of the plannable tasks, best first): critical path (bottom level) with EASY
backfilling; resource-weighted (a task's demand on each resource relative to capacity, weighted by how
binding that resource is); a blend of the two; plain critical path. The best plan is kept (makespan, then
VMs, then VM-hours), stopping once one is within ``GOOD_ENOUGH`` x LB. When these end above
``TRY_PACKING_ABOVE`` x LB on coarse-grained instances, the packing search is tried too."""

from __future__ import annotations

from collections.abc import Sequence

from hrwsi.planner.figures import vm_usage
from hrwsi.planner.packing import PackingScheduler
from hrwsi.planner.problem import Problem
from hrwsi.planner.schedule import DemandClasses, EventScheduler, Schedule

GOOD_ENOUGH = 1.002  # stop trying priority rules once makespan <= this x LB
TRY_PACKING_ABOVE = 1.01  # try the (slower) packing search when the greedy rules end above this x LB
RESOURCE_PARTS = ("cpu", "ram_mb", "storage_mb")


def _capacities(prob: Problem) -> list[float]:
    """Per resource: the budget or the ``vm_max`` largest workers, whichever is smaller (1.0 if 0)."""
    caps = []
    for r, cap_b in enumerate((prob.cpu_max, prob.ram_max, prob.st_max)):
        topk = sum(sorted((c[r] for c in zip(prob.wcpu, prob.wram, prob.wst)), reverse=True)[: prob.vm_max])
        caps.append(min(cap_b, topk) or 1.0)
    return caps


def priority_orders(prob: Problem, parts: dict[str, float]) -> dict[str, list[int]]:
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
    return {
        "critical-path": sorted(P, key=lambda i: (-bl[i], -wd[i], ids[i])),
        "resource": sorted(P, key=lambda i: (-wd[i], -bl[i], ids[i])),
        "blend": sorted(P, key=lambda i: (-(bl[i] / maxbl + 0.5 * wd[i] / maxwd), ids[i])),
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
    return (len(s.stuck), round(s.makespan, 6), s.vms, s.vm_seconds)


class RuleSet:
    """What the rules need, computed once per planning call and reused for every worker subset tried
    (deadline mode): the orders, the demand classes, the bound."""

    def __init__(self, prob: Problem, parts: dict[str, float]) -> None:
        self.prob = prob
        self.parts = parts
        self.lb = max(parts.values(), default=0.0)
        self.orders = priority_orders(prob, parts)
        self.classes = DemandClasses(prob)

    def _finish(self, sch: Schedule) -> Schedule:
        sch.vms, sch.vm_seconds = vm_usage(self.prob, sch)
        return sch

    def _good_enough(self, sch: Schedule) -> bool:
        return not sch.stuck and sch.makespan <= self.lb * GOOD_ENOUGH + 1e-9

    def best_schedule(self, workers: Sequence[int], vm_cap: int) -> Schedule:
        """The best plan on ``workers`` with at most ``vm_cap`` of them in use at once."""
        prob, orders, classes = self.prob, self.orders, self.classes
        plans: list[Schedule] = []
        # (order, reservation): EASY backfilling on the critical path first (it keeps long chains moving
        # while resources stay busy), then plain list scheduling with other orders
        for name, reserve in (("critical-path", True), ("resource", False), ("blend", False),
                              ("critical-path", False)):
            scheduler = EventScheduler(prob, classes, orders[name], workers, vm_cap, reserve=reserve)
            sch = self._finish(scheduler.run(name + ("+reserve" if reserve else "")))
            plans.append(sch)
            if self._good_enough(sch):
                return sch
        best = min(plans, key=_plan_key)
        if self._packing_may_pay(best):
            weights = packing_weights(prob, self.parts)
            for name in ("resource", "critical-path"):
                scheduler = PackingScheduler(prob, classes, orders[name], workers, vm_cap, weights)
                sch = self._finish(scheduler.run(name + "+fill"))
                plans.append(sch)
                if self._good_enough(sch):
                    break
            best = min(plans, key=_plan_key)
        return best

    def _packing_may_pay(self, best: Schedule) -> bool:
        """The packing search only pays with a few demand classes of tasks that are large relative to the
        scarcest capacity (greedy packing then leaves a sizeable part of it unused), when the makespan is
        about packing rather than about a long chain."""
        chain = self.parts.get("chain", 0.0)
        return (best.makespan > self.lb * TRY_PACKING_ABOVE and len(self.classes) <= 64 and chain < 0.9 * self.lb
                and is_coarse(self.prob, self.parts))
