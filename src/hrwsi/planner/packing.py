"""The packing search: at each event, among the demand classes ready now, start the combination that uses
the scarcest resource the most (ties: the higher-priority combination), then fill greedily.

It only pays on coarse-grained instances (a task takes >= 5 % of the scarcest capacity, few classes, the
makespan about packing rather than a long chain), where greedy packing leaves a sizeable part of the
bottleneck unused; it is a bounded depth-first search over how many tasks of each class to start."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from hrwsi.planner.problem import EPS, Problem
from hrwsi.planner.schedule import DemandClasses, EventScheduler

SEARCH_NODES = 3000  # search nodes per event (the search keeps the best combination found)
MAX_CLASSES = 8  # the best-ranked ready classes the search considers
MAX_TASKS = 12  # the search runs only when at most this many tasks of one class fit at once


class PackingScheduler(EventScheduler):
    """The event-driven scheduler with the packing search before the greedy rule at each event."""

    __slots__ = ("workers", "weights", "memo")

    def __init__(self, prob: Problem, classes: DemandClasses, order: list[int], workers: Sequence[int],
                 vm_cap: int, weights: tuple[float, float, float]) -> None:
        super().__init__(prob, classes, order, workers, vm_cap, reserve=False)
        self.workers = list(workers)
        self.weights = weights
        self.memo: dict[tuple, list[int]] = {}  # regular instances meet the same state again and again

    def _free_capacity(self) -> tuple[float, float, float]:
        """Free capacity: the budgets, bounded by what the workers offer (budgets may be unlimited)."""
        wsum = [0.0, 0.0, 0.0]
        for w in self.workers:
            if self.free_cpu[w] > 0:
                wsum[0] += self.free_cpu[w]
            if self.free_ram[w] > 0:
                wsum[1] += self.free_ram[w]
            if self.free_storage[w] > 0:
                wsum[2] += self.free_storage[w]
        return (min(self.cpu_max - self.used_cpu, wsum[0]), min(self.ram_max - self.used_ram, wsum[1]),
                min(self.storage_max - self.used_storage, wsum[2]))

    def dispatch(self, t: float) -> None:
        for k in self.blocked:
            self.is_blocked[k] = False
        self.blocked.clear()
        ready_by_class = self.ready_by_class
        ready = [k for k in range(len(ready_by_class)) if ready_by_class[k]]
        if not ready:
            self.tops.clear()
            return
        free = self._free_capacity()
        ready.sort(key=lambda k: ready_by_class[k][0])
        ready = ready[:MAX_CLASSES]
        demands = [(self.class_cpu[k], self.class_ram[k], self.class_storage[k]) for k in ready]
        counts = [_most_that_fit(free, dem, len(ready_by_class[k])) for k, dem in zip(ready, demands)]
        cap_n = max(counts)
        if cap_n <= MAX_TASKS and len(ready) > 1:  # one class alone: the greedy rule does the same
            key = (tuple(ready), tuple(counts), free)
            combo = self.memo.get(key)
            if combo is None:
                combo = self.memo[key] = best_combination(ready, demands, counts, free, self.weights, cap_n)
            self._start_combination(combo, t)
        # the tops changed: rebuild the class-top heap (few classes here)
        self.tops[:] = [h[0] for k, h in enumerate(ready_by_class) if h and not self.is_blocked[k]]
        heapq.heapify(self.tops)
        self.greedy(t)

    def _start_combination(self, combo: list[int], t: float) -> None:
        for k in combo:
            h = self.ready_by_class[k]
            if not h or self.is_blocked[k]:
                continue
            i = self.task_at[h[0]]
            w = self.find_worker(k, t, t + self.dur[i])
            if w < 0:
                self._block(k)
                continue
            heapq.heappop(h)
            self.begin(i, w, t)
        self._note_peak()


def _most_that_fit(free: Sequence[float], dem: Sequence[float], count: int) -> int:
    m = count
    for v, d in zip(free, dem):
        if d > 0:
            m = min(m, int((v + EPS) // d))
    return m


def best_combination(classes: list[int], demands: list[tuple[float, float, float]], counts: list[int],
                     free: Sequence[float], weights: Sequence[float], cap_n: int) -> list[int]:
    """The classes (repeated once per task) of the combination of value: weighted use of the free
    capacity, plus a small bonus per task of a better-ranked class (``classes`` are best first)."""
    search = _Search(classes, demands, counts, free, weights, cap_n)
    search.visit(0, [0.0, 0.0, 0.0], 0.0)
    return search.best_combo


class _Search:
    """Depth-first over "how many of class ``pos``", most first, pruned by an optimistic bound (the rest
    of the free capacity filled completely)."""

    def __init__(self, classes: list[int], demands: list[tuple[float, float, float]], counts: list[int],
                 free: Sequence[float], weights: Sequence[float], cap_n: int) -> None:
        self.classes = classes
        self.demands = demands
        self.counts = counts
        self.free = free
        self.weights = weights
        self.nk = len(classes)
        self.bonus_max = 1e-5 * self.nk * (cap_n + 1) * self.nk
        self.best_val = -1.0
        self.best_combo: list[int] = []
        self.combo: list[int] = []
        self.nodes = 0

    def visit(self, pos: int, used: list[float], val: float) -> None:
        self.nodes += 1
        if val > self.best_val + 1e-12:
            self.best_val = val
            self.best_combo = self.combo[:]
        if pos >= self.nk or self.nodes > SEARCH_NODES:
            return
        weights, free = self.weights, self.free
        if val + sum(wr * (fr_ - ur) for wr, fr_, ur in zip(weights, free, used)) + self.bonus_max <= self.best_val:
            return
        k = self.classes[pos]
        dem = self.demands[pos]
        m = self.counts[pos]
        for v, u, d in zip(free, used, dem):
            if d > 0:
                m = min(m, int((v - u + EPS) // d))
        # value: use of the scarcest resource; ties go to the higher-priority class
        w = weights[0] * dem[0] + weights[1] * dem[1] + weights[2] * dem[2] + 1e-5 * (self.nk - pos)
        combo = self.combo
        for cnt in range(m, -1, -1):
            combo.extend([k] * cnt)
            self.visit(pos + 1, [used[0] + cnt * dem[0], used[1] + cnt * dem[1], used[2] + cnt * dem[2]],
                       val + cnt * w)
            del combo[len(combo) - cnt :]
