"""Lanes and deadlines: which ready task goes first, and what less urgent work may take.

Rules (issue 12; ADR 0003):
- A task of a more urgent priority (smaller number: 0 near-real-time, 1 archive back-fill) is considered
  before any less urgent ready task at every event; within one priority, earliest deadline first (tasks
  without a deadline after those with one), then the rule's own order (critical path, ...).
- The task an urgent task waits for is as urgent: a task's effective priority is the most urgent of its own
  and its successors', and its effective deadline the earliest of its own and its successors' deadlines
  less their durations (it must end by then for them to make theirs).
- Back-fill, never delay: while more urgent ready tasks wait at an event for lack of room, a less urgent
  task may start only if it ends before any capacity is freed (the next end of a running task), or if it runs
  on a worker none of the waiting urgent tasks can ever use and leaves room in the budgets and VMs for all
  of them. So it never holds capacity that a waiting more urgent task could use before it ends.
"""

from __future__ import annotations

import math

from hrwsi.planner.problem import EPS, Problem


class Urgency:
    """Effective priority and deadline of every plannable task (see the module's rules)."""

    def __init__(self, prob: Problem) -> None:
        n = prob.n
        tasks, dur, succs = prob.tasks, prob.dur, prob.succs
        priority = [tasks[i].priority for i in range(n)]
        deadline = [math.inf if tasks[i].deadline_s is None else float(tasks[i].deadline_s) for i in range(n)]
        plannable = [False] * n
        for i in prob.plannable:
            plannable[i] = True
        for i in reversed(prob.plannable):  # successors first
            for s in succs[i]:
                if not plannable[s]:
                    continue
                if priority[s] < priority[i]:
                    priority[i] = priority[s]
                if deadline[s] - dur[s] < deadline[i]:
                    deadline[i] = deadline[s] - dur[s]
        self.priority = priority
        self.deadline = deadline
        self.lanes = sorted({priority[i] for i in prob.plannable})
        self.has_deadlines = any(tasks[i].deadline_s is not None for i in prob.plannable)

    @staticmethod
    def of(prob: Problem) -> Urgency | None:
        """None when every task has the same priority and none has a deadline (the plain rules apply)."""
        plannable = prob.plannable
        if not plannable:
            return None
        first = prob.tasks[plannable[0]].priority
        if all(prob.tasks[i].priority == first and prob.tasks[i].deadline_s is None for i in plannable):
            return None
        return Urgency(prob)

    @property
    def several_lanes(self) -> bool:
        return len(self.lanes) > 1


class LaneGuard:
    """Per event, what the more urgent ready tasks that could not start need; whether a less urgent task
    may take a worker now (see the module's rules). Candidates come in rank order, so lane by lane."""

    __slots__ = ("sched", "class_lane", "class_kinds", "kind_capacity", "lane", "count", "demand", "kinds",
                 "urgent_count", "urgent_demand", "urgent_kinds")

    def __init__(self, sched, class_lane: list[int], class_kinds: list[int]) -> None:
        self.sched = sched  # the EventScheduler whose state it reads
        self.class_lane = class_lane
        self.class_kinds = class_kinds  # per class: the worker kinds (bit mask) where it may ever run
        prob = sched.prob
        self.kind_capacity = [[sum(cap[j] for j in members) for cap in (prob.wcpu, prob.wram, prob.wst)]
                              for _key, members in prob.kinds]
        self.start_event()

    def start_event(self) -> None:
        self.lane = -math.inf  # the lane of the candidates now
        self.count = 0  # blocked tasks of that lane, their demand and kinds
        self.demand = [0.0, 0.0, 0.0]
        self.kinds = 0
        self.urgent_count = 0  # blocked tasks of the lanes before it
        self.urgent_demand = [0.0, 0.0, 0.0]
        self.urgent_kinds = 0

    def _enter(self, lane: int) -> None:
        if lane > self.lane:
            self.urgent_count += self.count
            for r in range(3):
                self.urgent_demand[r] += self.demand[r]
            self.urgent_kinds |= self.kinds
            self.count = 0
            self.demand = [0.0, 0.0, 0.0]
            self.kinds = 0
            self.lane = lane

    def blocked(self, k: int) -> None:
        """Class ``k`` could not start at this event: its ready tasks wait."""
        self._enter(self.class_lane[k])
        waiting = len(self.sched.ready_by_class[k])
        c, rm, s, _f = self.sched.class_demand[k]
        self.count += waiting
        self.demand[0] += waiting * c
        self.demand[1] += waiting * rm
        self.demand[2] += waiting * s
        self.kinds |= self.class_kinds[k]

    def admits(self, k: int, w: int, end: float) -> bool:
        """Whether a task of class ``k`` may start now on worker ``w`` and run until ``end``."""
        self._enter(self.class_lane[k])
        if self.urgent_count == 0 or end <= self._next_release() + EPS:
            return True
        return self.leaves_room(k, w)

    def _next_release(self) -> float:
        sched = self.sched
        t = sched.running[0][0] if sched.running else math.inf
        q = sched.next_fixed_event
        if q < len(sched.fixed_events) and sched.fixed_events[q][0] < t:
            t = sched.fixed_events[q][0]
        return t

    def leaves_room(self, k: int, w: int) -> bool:
        """On a worker the waiting urgent tasks cannot use, with room left in the budgets and VMs for all of
        them (as much as their workers can hold)."""
        sched = self.sched
        if self.urgent_kinds >> sched.prob.worker_kind[w] & 1:
            return False
        reach = [0.0, 0.0, 0.0]  # what the urgent tasks could use at most: their workers' capacity
        for q, cap in enumerate(self.kind_capacity):
            if self.urgent_kinds >> q & 1:
                for r in range(3):
                    reach[r] += cap[r]
        c, rm, s, _f = sched.class_demand[k]
        used = (sched.used_cpu + c, sched.used_ram + rm, sched.used_storage + s)
        limits = sched.budget_limits
        for r in range(3):
            if used[r] + min(self.urgent_demand[r], reach[r]) > limits[r]:
                return False
        if sched.tasks_on[w] > 0:
            return True
        # it opens a worker: the urgent tasks may still need to open as many as they are, on idle workers
        # of their kinds
        kind_of, tasks_on = sched.prob.worker_kind, sched.tasks_on
        idle = sum(1 for j in sched.idle_any if tasks_on[j] == 0 and self.urgent_kinds >> kind_of[j] & 1)
        return sched.busy_count + 1 + min(self.urgent_count, idle) <= sched.vm_cap
