"""How much of a group of tasks a capacity can hold at once: the lower bound's knapsack.

At any instant, the tasks of a group running on one worker form a multiset of their demand vectors that
fits the worker's flavour (CPU, RAM and disk together). So the most of a measure (CPU, RAM, storage, or
the number of tasks) that they can use there at once is the optimum of a small integer knapsack:

    max sum(value_c * n_c)  subject to  sum(demand_c * n_c) <= capacity in every resource, n_c >= 0.

With 3-CPU tasks on a 4-CPU worker that is 3 CPU, not 4: this is what makes the bound see that only one
such task runs per worker at a time. The search is exact when it finishes within its node budget; when it
does not, it returns an upper bound (the relaxation at its root), so the bound built on it stays sound."""

from __future__ import annotations

import math
from collections.abc import Sequence

NODE_BUDGET = 1000  # search nodes per knapsack before settling for the (sound) relaxation
SEARCH_UP_TO = 24  # search only when at most this many items fit at once; beyond, rounding matters little
EPS = 1e-9

Demand = tuple[float, float, float]


def most_held(capacity: Sequence[float], items: Sequence[tuple[float, Demand]]) -> float:
    """The largest total value of a multiset of ``items`` (value, demand) that fits ``capacity`` (math.inf
    where unlimited), or an upper bound of it; math.inf when nothing limits how many of an item fit."""
    kept = [(v, d) for v, d in items if v > 0 and all(d[r] <= capacity[r] + EPS for r in range(3))]
    if not kept:
        return 0.0
    for _v, d in kept:
        if not any(d[r] > 0 and math.isfinite(capacity[r]) for r in range(3)):
            return math.inf  # this item fits without limit
    search = _Knapsack(capacity, kept)
    if _most_items(capacity, kept) > SEARCH_UP_TO:
        return search.relaxation(0, capacity)  # an upper bound, nearly exact when many items fit
    return search.solve()


def _most_items(capacity: Sequence[float], items: Sequence[tuple[float, Demand]]) -> float:
    """An upper bound on how many items fit at once."""
    most = math.inf
    for r in range(3):
        if math.isfinite(capacity[r]):
            smallest = min(d[r] for _v, d in items)
            if smallest > 0:
                most = min(most, capacity[r] / smallest)
    return most


class _Knapsack:
    """Depth-first over "how many of item ``pos``", most first, best value density first, pruned by the
    relaxation: what is left of each resource times the best value per unit of it among the items left."""

    def __init__(self, capacity: Sequence[float], items: list[tuple[float, Demand]]) -> None:
        self.capacity = list(capacity)
        # best value per share of the capacity first: good solutions early, so pruning bites
        self.items = sorted(items, key=lambda it: -it[0] / _share(it[1], capacity))
        self.best = 0.0
        self.nodes = 0
        # per position, per resource: the best value per unit among the items from there on (inf if one
        # of them does not use that resource)
        n = len(self.items)
        self.ratio = [[0.0, 0.0, 0.0] for _ in range(n + 1)]
        for pos in range(n - 1, -1, -1):
            v, d = self.items[pos]
            for r in range(3):
                mine = v / d[r] if d[r] > 0 else math.inf
                self.ratio[pos][r] = max(self.ratio[pos + 1][r], mine)

    def relaxation(self, pos: int, left: Sequence[float]) -> float:
        best = math.inf
        for r in range(3):
            if math.isfinite(left[r]):
                best = min(best, max(left[r], 0.0) * self.ratio[pos][r])
        return best

    def solve(self) -> float:
        root = self.relaxation(0, self.capacity)
        self.visit(0, self.capacity, 0.0)
        if self.nodes > NODE_BUDGET:
            return max(self.best, root)  # cut short: the relaxation is an upper bound
        return self.best

    def visit(self, pos: int, left: list[float], value: float) -> None:
        self.nodes += 1
        if value > self.best:
            self.best = value
        if pos >= len(self.items) or self.nodes > NODE_BUDGET:
            return
        if value + self.relaxation(pos, left) <= self.best + EPS:
            return
        v, d = self.items[pos]
        most = math.inf
        for r in range(3):
            if d[r] > 0 and math.isfinite(left[r]):
                most = min(most, math.floor((left[r] + EPS) / d[r]))
        most = int(most)  # finite: most_held only searches items that some finite resource limits
        for cnt in range(most, -1, -1):
            self.visit(pos + 1, [left[r] - cnt * d[r] for r in range(3)], value + cnt * v)
            if self.nodes > NODE_BUDGET:
                return


def _share(d: Demand, capacity: Sequence[float]) -> float:
    """The largest share of a limited resource that one item takes (> 0 for the items searched)."""
    share = 0.0
    for r in range(3):
        if d[r] > 0 and math.isfinite(capacity[r]):
            share = max(share, d[r] / capacity[r] if capacity[r] > 0 else math.inf)
    return share
