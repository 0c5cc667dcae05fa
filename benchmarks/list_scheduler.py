"""The planner's peer in the ladder: a plain event-driven list scheduler of the same rules.

Same model as ``hrwsi.planner`` (workers of a flavour holding several tasks, budgets on CPU, RAM, storage and
VMs in use, dependencies, earliest starts, flavour restrictions) and the same rules as the planner's first
pass: time jumps from event to event (a task ends, a task is released); at each event the ready tasks are
tried in critical-path order (bottom level, then resource weight, then id), each first-fit on a worker in use,
else on an idle worker (one used before, then the largest) while fewer than ``vm_max`` are in use.

What makes it plain: one pass, one rule, no demand classes, no reservation, no lower bound. It is written to be
reasonably fast so that the planner's "x peer" figure compares like with like: heaps, dense indices, and, like
the planner, it gives up on an event after 48 ready tasks that do not fit (the planner: 48 demand classes) or
when no capacity is left for the smallest task; trying every ready task at every event would make it
quadratic (minutes for 10,000 tasks when thousands wait). No fixed tasks (the ladder has none). Its plans are
checked with ``validate_plan`` like the planner's.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from hrwsi.planner import Assignment, Budgets, TaskDemand, Worker

EPS = 1e-9
MAX_FAILS_PER_EVENT = 48


def list_schedule(tasks: Sequence[TaskDemand], workers: Sequence[Worker], budgets: Budgets) -> dict[int, Assignment]:
    """Assignments of every task that fits some allowed worker and the budgets (others are left out)."""
    return _ListScheduler(tasks, workers, budgets).run()


class _ListScheduler:
    def __init__(self, tasks: Sequence[TaskDemand], workers: Sequence[Worker], budgets: Budgets) -> None:
        n = len(tasks)
        self.tasks, self.workers = tasks, workers
        index = {t.id: i for i, t in enumerate(tasks)}
        self.preds = [[index[d] for d in dict.fromkeys(t.depends_on) if d in index] for t in tasks]
        self.succs: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(self.preds):
            for p in ps:
                self.succs[p].append(i)
        self.limit = [math.inf if b is None else float(b)
                      for b in (budgets.cpu_max, budgets.ram_max_mb, budgets.storage_max_mb)]
        self.vm_max = len(workers) if budgets.vm_max is None else budgets.vm_max
        self.wcap = [(w.flavour.cpu, w.flavour.ram_mb, w.flavour.disk_mb) for w in workers]
        self.dem = [(t.cpu, t.ram_mb, t.storage_mb) for t in tasks]
        order = _topological(self.preds, self.succs)
        self.runnable = [_fits_somewhere(t, self.dem[i], workers, self.wcap, self.limit, self.vm_max)
                         for i, t in enumerate(tasks)]
        for i in order:  # a task after one that can never run can never run either
            if self.runnable[i] and any(not self.runnable[p] for p in self.preds[i]):
                self.runnable[i] = False
        self.prio = _critical_path_keys(tasks, self.succs, order, self.dem, self.limit, self.wcap, self.vm_max)
        largest = max((sum(c) for c in self.wcap), default=1.0) or 1.0
        self.idle_order = sorted(range(len(workers)), key=lambda j: (-sum(self.wcap[j]) / largest, j))
        self.free = [list(c) for c in self.wcap]
        self.count = [0] * len(workers)
        self.used_before = [False] * len(workers)
        self.busy: list[int] = []
        self.used = [0.0, 0.0, 0.0]
        self.unmet = [len(ps) for ps in self.preds]
        self.ready_at = [max(0.0, t.earliest_start_s) for t in tasks]
        self.ready: list[tuple] = []
        self.pending: list[tuple[float, int]] = []
        self.running: list[tuple[float, int]] = []
        self.start: dict[int, tuple[float, int]] = {}
        self.min_dem = [min((self.dem[i][r] for i in range(n) if self.runnable[i]), default=0.0) for r in range(3)]
        for i in range(n):
            if self.runnable[i] and self.unmet[i] == 0:
                heapq.heappush(self.pending, (self.ready_at[i], i))

    def run(self) -> dict[int, Assignment]:
        t = 0.0
        pending, running = self.pending, self.running
        while pending or running or self.ready:
            self._finish_until(t)
            while pending and pending[0][0] <= t:
                i = heapq.heappop(pending)[1]
                heapq.heappush(self.ready, (self.prio[i], i))
            self._dispatch(t)
            nxt = min(running[0][0] if running else math.inf, pending[0][0] if pending else math.inf)
            if nxt == math.inf:
                break  # ready tasks left that can never start: not expected for runnable tasks
            t = nxt
        tasks, workers = self.tasks, self.workers
        return {tasks[i].id: Assignment(tasks[i].id, workers[w].name, s, s + tasks[i].duration_s)
                for i, (s, w) in self.start.items()}

    def _finish_until(self, t: float) -> None:
        running, dem, free, used = self.running, self.dem, self.free, self.used
        while running and running[0][0] <= t:
            e, i = heapq.heappop(running)
            w = self.start[i][1]
            self.count[w] -= 1
            if self.count[w] == 0:
                self.busy.remove(w)
            for r in range(3):
                free[w][r] += dem[i][r]
                used[r] -= dem[i][r]
            for s in self.succs[i]:
                self.unmet[s] -= 1
                self.ready_at[s] = max(self.ready_at[s], e)
                if self.unmet[s] == 0 and self.runnable[s]:
                    heapq.heappush(self.pending, (self.ready_at[s], s))

    def _dispatch(self, t: float) -> None:
        ready, used, limit, min_dem, dem = self.ready, self.used, self.limit, self.min_dem, self.dem
        kept = []
        while ready and len(kept) < MAX_FAILS_PER_EVENT:
            if used[0] + min_dem[0] > limit[0] + EPS or used[1] + min_dem[1] > limit[1] + EPS \
                    or used[2] + min_dem[2] > limit[2] + EPS:
                break  # no capacity left for even the smallest task
            key, i = heapq.heappop(ready)
            w = _first_fit(dem[i], self.tasks[i].flavour, self.workers, self.busy, self.idle_order, self.free,
                           self.count, self.used_before, used, limit, self.vm_max)
            if w < 0:
                kept.append((key, i))
                continue
            self.start[i] = (t, w)
            if self.count[w] == 0:
                self.busy.append(w)
                self.used_before[w] = True
            self.count[w] += 1
            for r in range(3):
                self.free[w][r] -= dem[i][r]
                used[r] += dem[i][r]
            heapq.heappush(self.running, (t + self.tasks[i].duration_s, i))
        for item in kept:
            heapq.heappush(ready, item)


def _fits_somewhere(t: TaskDemand, d, workers, wcap, limit, vm_max) -> bool:
    if vm_max < 1 or any(d[r] > limit[r] + EPS for r in range(3)):
        return False
    return any((t.flavour is None or w.flavour.name == t.flavour) and all(d[r] <= wcap[j][r] + EPS for r in range(3))
               for j, w in enumerate(workers))


def _first_fit(d, flavour, workers, busy, idle_order, free, count, used_before, used, limit, vm_max) -> int:
    c, rm, s = d
    if used[0] + c > limit[0] + EPS or used[1] + rm > limit[1] + EPS or used[2] + s > limit[2] + EPS:
        return -1
    for w in busy:
        f = free[w]
        if f[0] + EPS >= c and f[1] + EPS >= rm and f[2] + EPS >= s and (
                flavour is None or workers[w].flavour.name == flavour):
            return w
    if len(busy) >= vm_max:
        return -1
    fallback = -1
    for w in idle_order:
        f = free[w]
        if count[w] == 0 and f[0] + EPS >= c and f[1] + EPS >= rm and f[2] + EPS >= s and (
                flavour is None or workers[w].flavour.name == flavour):
            if used_before[w]:
                return w
            if fallback < 0:
                fallback = w
    return fallback


def _topological(preds, succs) -> list[int]:
    indeg = [len(p) for p in preds]
    order = [i for i, k in enumerate(indeg) if k == 0]
    for i in order:
        for s in succs[i]:
            indeg[s] -= 1
            if indeg[s] == 0:
                order.append(s)
    return order


def _critical_path_keys(tasks, succs, order, dem, limit, wcap, vm_max) -> list[tuple]:
    """(-bottom level, -resource weight, id): the longest path to the end first."""
    bl = [0.0] * len(tasks)
    for i in reversed(order):
        bl[i] = tasks[i].duration_s + max((bl[s] for s in succs[i]), default=0.0)
    caps = []
    for r in range(3):
        top = sum(sorted((c[r] for c in wcap), reverse=True)[:vm_max])
        caps.append(min(limit[r], top) or 1.0)
    return [(-bl[i], -sum(dem[i][r] / caps[r] for r in range(3)), tasks[i].id) for i in range(len(tasks))]
