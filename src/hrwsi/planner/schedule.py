"""One pass of the event-driven list scheduler (a "parallel schedule generation scheme").

Time jumps from event to event (a task ends, a task is released, a fixed task starts or ends); at each
event the ready tasks are started in priority order wherever they fit now, first-fit on workers already
in use, else on an idle worker (one used before, then the largest) while fewer than ``vm_cap`` are in
use; a task that fits every kind of worker tries the kinds no class is confined to first (spare-first).
Ready tasks are grouped by demand class (same CPU/RAM/storage/flavour), so a class that does not fit
is skipped as a whole until the next event: an event costs O(started + classes), a pass O(n log n).
With several lanes, less urgent work only back-fills (lanes.LaneGuard).

With ``reserve`` (EASY backfilling), the highest-priority blocked class gets a reservation at the
earliest end of running tasks that frees enough for it; other tasks may then start only if they end
before it or use what it leaves over, so big tasks on a long chain are not starved by small ones."""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Generator, Sequence
from heapq import heappop, heappush
from typing import Any

from hrwsi.planner.lanes import LaneGuard, Urgency
from hrwsi.planner.problem import EPS, Problem

MAX_FAILS_PER_EVENT = 48  # classes tried in vain at one event before waiting for the next one


class Schedule:
    """The outcome of one pass: start time and worker index per task index (None/-1 if not placed)."""

    __slots__ = ("start", "worker", "makespan", "rule", "vms", "vm_seconds", "stuck", "late", "peak")

    def __init__(self, start: list[float | None], worker: list[int], makespan: float, rule: str,
                 stuck: list[int], peak: list[float]) -> None:
        self.start = start
        self.worker = worker
        self.makespan = makespan
        self.rule = rule
        self.stuck = stuck  # plannable tasks that were never placed (not expected; reported, not dropped)
        self.vms = 0
        self.vm_seconds = 0.0
        self.late = 0  # planned tasks ending after their deadline
        self.peak = peak  # the most CPU, RAM, storage and VMs in use at once (fixed tasks included)


class DemandClasses:
    """Plannable tasks grouped by identical demands (CPU, RAM, storage, flavour restriction; with fixed
    tasks starting later, the duration too, since whether a task fits now then depends on it; with several
    lanes, the lane too; and the worker it avoids, TaskDemand.avoid_worker)."""

    def __init__(self, prob: Problem, urgency: Urgency | None = None) -> None:
        self.of_task = [-1] * prob.n
        keys: dict[tuple, int] = {}
        self.cpu: list[float] = []
        self.ram: list[float] = []
        self.storage: list[float] = []
        self.flavour: list[int] = []  # flavour index, or -1 for any
        self.lane: list[int] = []  # effective priority (0 without lanes)
        self.kinds: list[int] = []  # worker kinds (bit mask) where a task of the class may ever run
        self.avoid: list[int] = []  # the worker a task of the class is not put on, or -1
        by_duration = any(f.start_s > 0 and f.end_s > f.start_s for f in prob.fixed)
        lane_of = urgency.priority if urgency is not None and urgency.several_lanes else None
        demand_of = prob.demand_of
        for i in prob.plannable:
            key: tuple = (demand_of[i],)
            if by_duration:
                key += (prob.dur[i],)
            if lane_of is not None:
                key += (lane_of[i],)
            avoid = prob.widx.get(prob.tasks[i].avoid_worker, -1) if prob.tasks[i].avoid_worker else -1
            if avoid >= 0:
                key += ("avoid", avoid)
            k = keys.get(key)
            if k is None:
                k = keys[key] = len(self.cpu)
                self._add(prob, prob.demands[demand_of[i]], 0 if lane_of is None else lane_of[i])
                self.avoid.append(avoid)
            self.of_task[i] = k
        self.several_lanes = lane_of is not None

    def _add(self, prob: Problem, demand: tuple, lane: int) -> None:
        cpu, ram, storage, restriction = demand
        self.cpu.append(cpu)
        self.ram.append(ram)
        self.storage.append(storage)
        self.flavour.append(-1 if restriction is None else prob.fid[restriction])
        self.lane.append(lane)
        self.kinds.append(prob.kinds_fitting(cpu, ram, storage, restriction))

    def __len__(self) -> int:
        return len(self.cpu)


def size_order(prob: Problem, workers: Sequence[int]) -> list[int]:
    """``workers`` largest first (CPU, RAM and disk, each relative to the largest worker's)."""
    mc, mr, ms = _max_positive(prob.wcpu), _max_positive(prob.wram), _max_positive(prob.wst)
    return sorted(workers, key=lambda j: (-(prob.wcpu[j] / mc + prob.wram[j] / mr + prob.wst[j] / ms), j))


def _max_positive(vals: Sequence[float]) -> float:
    m = max(vals, default=0.0)
    return m if m > 0 else 1.0


def _spare_kinds(class_kinds: list[int], every_kind: int) -> list[int]:
    """Per class, the worker kinds it may use that no class is confined to (0: no preference). A kind is
    contended when some class cannot run everywhere and may run there."""
    contended = 0
    for mask in class_kinds:
        if mask != every_kind:
            contended |= mask
    return [mask & ~contended if mask & contended else 0 for mask in class_kinds]


class Reservation:
    """EASY backfilling: where and when the highest-priority blocked class will fit (the earliest end of
    running tasks that frees enough), and what is left over then, globally and on that worker. A task
    that would still run at ``at`` may only take from the leftovers."""

    __slots__ = ("at", "worker", "cpu", "ram", "storage", "vms", "worker_cpu", "worker_ram", "worker_storage",
                 "ended_on")

    def __init__(self, at: float, worker: int, cpu: float, ram: float, storage: float, vms: int,
                 worker_cpu: float, worker_ram: float, worker_storage: float, ended_on: dict[int, int]) -> None:
        self.at = at
        self.worker = worker
        self.cpu, self.ram, self.storage = cpu, ram, storage  # left over globally
        self.vms = vms  # workers that may still be opened then
        self.worker_cpu, self.worker_ram, self.worker_storage = worker_cpu, worker_ram, worker_storage
        self.ended_on = ended_on  # worker -> how many of its running tasks have ended by then

    def admits(self, w: int, c: float, rm: float, s: float, tasks_on_w: int) -> bool:
        """Whether a task of demands (c, rm, s) on worker ``w`` running past ``at`` fits in the leftovers;
        if so, it takes them."""
        if self.cpu + EPS < c or self.ram + EPS < rm or self.storage + EPS < s:
            return False
        on_reserved = w == self.worker
        if on_reserved and (self.worker_cpu + EPS < c or self.worker_ram + EPS < rm
                            or self.worker_storage + EPS < s):
            return False
        takes_vm = not on_reserved and tasks_on_w - self.ended_on.get(w, 0) <= 0
        if takes_vm and self.vms < 1:
            return False
        self.cpu -= c
        self.ram -= rm
        self.storage -= s
        if on_reserved:
            self.worker_cpu -= c
            self.worker_ram -= rm
            self.worker_storage -= s
        if takes_vm:
            self.vms -= 1
            self.ended_on[w] = self.ended_on.get(w, 0) - 1  # stays busy at the reservation
        return True


NO_RESERVATION = Reservation(math.inf, -1, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, {})  # nothing to protect


class EventScheduler:
    """The state of one pass: capacity in use (globally and per worker), the fixed tasks' events, the
    ready tasks by demand class, the tasks pending release and the running ones."""

    # slots: the inner loops read these attributes hundreds of thousands of times per plan
    __slots__ = (
        "prob", "dur", "cpu_max", "ram_max", "storage_max", "budget_limits", "vm_cap", "reserve", "task_at", "rank_of",
        "task_class", "class_cpu", "class_ram", "class_storage", "class_flavour", "class_demand",
        "worker_flavour", "free_cpu", "free_ram", "free_storage", "tasks_on", "used_before", "idle_any",
        "idle_by_flavour", "busy", "busy_count", "external_tasks", "used_cpu", "used_ram", "used_storage",
        "fixed_events", "next_fixed_event", "future_fixed", "future_started",
        "unmet", "ready_at", "ready_by_class", "tops", "is_blocked", "blocked", "pending", "running", "start",
        "worker_of", "greedy", "guard", "started", "peak", "momentary", "spare_kinds", "spare_idle", "spare_kind",
        "busy_of_kind", "worker_kind", "class_avoid",
        "opened", "failed_at", "failed_capped",
    )

    def __init__(self, prob: Problem, classes: DemandClasses, order: list[int], workers: Sequence[int],
                 vm_cap: int, reserve: bool = False) -> None:
        self.prob = prob
        self.dur = prob.dur
        self.cpu_max, self.ram_max, self.storage_max = prob.cpu_max, prob.ram_max, prob.st_max
        self.budget_limits = (prob.cpu_max + EPS, prob.ram_max + EPS, prob.st_max + EPS)
        self.task_class = classes.of_task
        self.class_cpu, self.class_ram, self.class_storage = classes.cpu, classes.ram, classes.storage
        self.class_flavour = classes.flavour
        self.class_demand = list(zip(classes.cpu, classes.ram, classes.storage, classes.flavour))
        self.class_avoid = classes.avoid if any(w >= 0 for w in classes.avoid) else None
        self.vm_cap = vm_cap
        self.reserve = reserve
        self.task_at = order  # rank -> task (best first)
        self.rank_of = [0] * prob.n
        for r, i in enumerate(order):
            self.rank_of[i] = r
        self._init_workers(workers)
        self._init_fixed()
        self._init_tasks(len(classes))
        self.guard = LaneGuard(self, classes.lane, classes.kinds) if classes.several_lanes else None
        self.spare_kinds = _spare_kinds(classes.kinds, (1 << len(prob.kinds)) - 1)
        # the one kind a class's spare kinds are, or -1 (several, or none): its search then reads the busy
        # workers of that kind alone (busy_of_kind), not every busy worker
        self.spare_kind = [spare.bit_length() - 1 if spare and spare & (spare - 1) == 0 else -1
                           for spare in self.spare_kinds]
        # per class with spare kinds, the idle list it reads narrowed to those kinds (same order): the
        # spare-first search read every worker of the list and tested its kind, on every call
        kind = prob.worker_kind
        self.spare_idle = [[w for w in (self.idle_any if f < 0 else self.idle_by_flavour.get(f, ())) if spare >> kind[w] & 1]
                           if spare else [] for spare, (_c, _r, _s, f) in zip(self.spare_kinds, self.class_demand)]
        greedy = self._greedy_dispatcher()
        next(greedy)
        self.greedy = greedy.send

    def _init_workers(self, workers: Sequence[int]) -> None:
        prob = self.prob
        self.worker_flavour = prob.wfl
        self.free_cpu = prob.wcpu[:]
        self.free_ram = prob.wram[:]
        self.free_storage = prob.wst[:]
        self.tasks_on = [0] * prob.W  # tasks running on each worker (planned and fixed)
        self.used_before = [False] * prob.W
        # idle workers in order of preference (largest first), per flavour and for "any"
        self.idle_any = size_order(prob, workers)
        self.idle_by_flavour: dict[int, list[int]] = {}
        for j in self.idle_any:
            self.idle_by_flavour.setdefault(self.worker_flavour[j], []).append(j)
        self.busy: list[int] = []  # workers running something
        self.worker_kind = prob.worker_kind
        self.busy_of_kind: list[list[int]] = [[] for _ in prob.kinds]  # the busy workers of each kind, in busy's order
        self.busy_count = 0  # the same, plus workers of fixed tasks that are not among the workers
        self.external_tasks: dict[str, int] = {}  # such a worker -> fixed tasks running there
        self.used_cpu = self.used_ram = self.used_storage = 0.0

    def _init_fixed(self) -> None:
        """Fixed tasks become events (time, kind 0=end/1=start, index); those already started occupy
        now (time -1)."""
        fixed = self.prob.fixed
        events: list[tuple[float, int, int]] = []
        for q, f in enumerate(fixed):
            if f.end_s <= 0 or f.end_s <= f.start_s:
                continue
            events.append((float(f.start_s) if f.start_s > 0 else -1.0, 1, q))
            events.append((float(f.end_s), 0, q))
        events.sort()
        self.fixed_events = events
        self.next_fixed_event = 0
        # fixed tasks starting strictly in the future, by start time; the first ``future_started`` have started
        self.future_fixed = sorted((q for _t, kind, q in events if kind == 1 and fixed[q].start_s > 0),
                                   key=lambda q: fixed[q].start_s)
        self.future_started = 0

    def _init_tasks(self, class_count: int) -> None:
        prob = self.prob
        n = prob.n
        self.unmet = [0] * n  # predecessors not ended yet
        self.ready_at = prob.release[:]
        self.ready_by_class: list[list[int]] = [[] for _ in range(class_count)]  # heaps of ranks
        self.tops: list[int] = []  # heap of the best rank of each class that is not blocked
        self.is_blocked = [False] * class_count
        self.blocked: list[int] = []
        self.pending: list[tuple[float, int]] = []  # (release, task): predecessors done, not yet released
        self.running: list[tuple[float, int]] = []  # (end, task)
        # What lets a search for a class that found no worker skip the next ones that cannot find one
        # (_fits_nowhere_still): the workers that gained room (a task ended) or became busy, in order, and
        # per class where that list stood at its last such search (-1: none) and whether the VMs were all
        # in use then. A blocked class is searched again at every event, and most searches fail: each read
        # every worker (100 of them on the ladder's 40+60-worker family, where they were half the plan).
        self.opened: list[int] = []
        self.failed_at = [-1] * class_count
        self.failed_capped = [False] * class_count
        self.start: list[float | None] = [None] * n
        self.worker_of = [-1] * n
        self.started = 0
        self.peak = [0.0, 0.0, 0.0, 0.0]
        self.momentary: list[tuple[float, float, float, int]] = []  # tasks of no duration started now
        for i in prob.plannable:
            self.unmet[i] = len(prob.preds[i])
        for i in prob.plannable:
            if self.unmet[i] == 0:
                if self.ready_at[i] <= 0.0:
                    self._make_ready(i)
                else:
                    heapq.heappush(self.pending, (self.ready_at[i], i))

    # -------------------------------------------------------------------------------- event loop

    def run(self, rule: str) -> Schedule:
        """The event loop: at each event, tasks that end free their capacity (their successors become
        ready or pending), fixed tasks start or end, released tasks become ready, then ready tasks start."""
        running, pending, events, succs = self.running, self.pending, self.fixed_events, self.prob.succs
        unmet, ready_at, worker_of, task_class = self.unmet, self.ready_at, self.worker_of, self.task_class
        class_demand, tasks_on, fc, fr, fs = self.class_demand, self.tasks_on, self.free_cpu, self.free_ram, self.free_storage
        dispatch, make_ready, opened = self.dispatch, self._make_ready, self.opened
        self._apply_fixed_until(0.0)
        t = last = 0.0
        while True:
            while running and running[0][0] <= t:
                e, i = heappop(running)
                w = worker_of[i]
                c, rm, s, _f = class_demand[task_class[i]]
                self.used_cpu -= c
                self.used_ram -= rm
                self.used_storage -= s
                fc[w] += c
                fr[w] += rm
                fs[w] += s
                opened.append(w)
                tasks_on[w] -= 1
                if tasks_on[w] == 0:
                    self.busy.remove(w)
                    self.busy_of_kind[self.worker_kind[w]].remove(w)
                    self.busy_count -= 1
                for x in succs[i]:
                    unmet[x] -= 1
                    if ready_at[x] < e:
                        ready_at[x] = e
                    if unmet[x] == 0:
                        make_ready(x) if ready_at[x] <= t else heappush(pending, (ready_at[x], x))
            if self.next_fixed_event < len(events) and events[self.next_fixed_event][0] <= t:
                self._apply_fixed_until(t)
            while pending and pending[0][0] <= t:
                make_ready(heappop(pending)[1])
            dispatch(t)
            t = self._next_event()
            if t == math.inf:
                return self._result(rule, last)
            last = t

    def _next_event(self) -> float:
        """A task ends, a task is released, a fixed task starts or ends: the earliest of these."""
        nt = self.running[0][0] if self.running else math.inf
        if self.pending and self.pending[0][0] < nt:
            nt = self.pending[0][0]
        q = self.next_fixed_event
        if q < len(self.fixed_events) and self.fixed_events[q][0] < nt:
            nt = self.fixed_events[q][0]
        return nt

    def _make_ready(self, i: int) -> None:
        k = self.task_class[i]
        h = self.ready_by_class[k]
        r = self.rank_of[i]
        heapq.heappush(h, r)
        if h[0] == r and not self.is_blocked[k]:
            heapq.heappush(self.tops, r)

    def _apply_fixed_until(self, t: float) -> None:
        events = self.fixed_events
        fixed = self.prob.fixed
        while self.next_fixed_event < len(events) and events[self.next_fixed_event][0] <= t:
            _t, kind, q = events[self.next_fixed_event]
            self.next_fixed_event += 1
            if kind == 1 and fixed[q].start_s > 0:
                self.future_started += 1
            self._apply_fixed(q, 1 if kind == 1 else -1)
        self._note_peak()

    def _apply_fixed(self, q: int, sign: int) -> None:
        f = self.prob.fixed[q]
        self.failed_at = [-1] * len(self.failed_at)  # (rare: what a search found no longer says anything)
        self.used_cpu += sign * f.cpu
        self.used_ram += sign * f.ram_mb
        self.used_storage += sign * f.storage_mb
        j = self.prob.widx.get(f.worker, -1)
        if j < 0:
            self._apply_external(f.worker, sign)
            return
        self.free_cpu[j] -= sign * f.cpu
        self.free_ram[j] -= sign * f.ram_mb
        self.free_storage[j] -= sign * f.storage_mb
        if sign > 0:
            if self.tasks_on[j] == 0:
                self.busy.append(j)
                self.busy_of_kind[self.worker_kind[j]].append(j)
                self.busy_count += 1
            self.tasks_on[j] += 1
        else:
            self.tasks_on[j] -= 1
            if self.tasks_on[j] == 0:
                self.busy.remove(j)
                self.busy_of_kind[self.worker_kind[j]].remove(j)
                self.busy_count -= 1

    def _apply_external(self, worker: str, sign: int) -> None:
        """A fixed task on a worker that is gone still counts as a VM in use."""
        c = self.external_tasks.get(worker, 0)
        self.external_tasks[worker] = c + sign
        if sign > 0 and c == 0:
            self.busy_count += 1
        elif sign < 0 and c - 1 == 0:
            self.busy_count -= 1

    def _result(self, rule: str, t: float) -> Schedule:
        """The pass's outcome; ``t`` is its last event, the end of the last task when every task started."""
        fixed_end = max((float(f.end_s) for f in self.prob.fixed), default=0.0)
        if self.started == len(self.prob.plannable):
            return Schedule(self.start, self.worker_of, max(t, fixed_end, 0.0), rule, [], self.peak)
        makespan = fixed_end if fixed_end > 0 else 0.0
        stuck = []
        dur = self.dur
        for i in self.prob.plannable:
            s = self.start[i]
            if s is None:
                stuck.append(i)
            elif s + dur[i] > makespan:
                makespan = s + dur[i]
        return Schedule(self.start, self.worker_of, makespan, rule, stuck, self.peak)

    def _note_peak(self) -> None:
        """Use only grows after the ends at an instant: noting it after each event's starts gives the peaks
        (tasks of no duration, which hold nothing, left out)."""
        use = [self.used_cpu, self.used_ram, self.used_storage, float(self.busy_count)]
        if self.momentary:
            on: dict[int, int] = {}
            for c, rm, s, w in self.momentary:
                use[0] -= c
                use[1] -= rm
                use[2] -= s
                on[w] = on.get(w, 0) + 1
            use[3] -= sum(1 for w, count in on.items() if self.tasks_on[w] == count)
            self.momentary.clear()
        peak = self.peak
        for r in range(4):
            if use[r] > peak[r]:
                peak[r] = use[r]

    # ---------------------------------------------------------------------------- where a task fits

    def find_worker(self, k: int, t: float, e: float) -> int:
        """A worker on which a task of class ``k`` can run from ``t`` to ``e``, or -1."""
        c, rm, s, _f = self.class_demand[k]
        if (self.used_cpu + c > self.cpu_max + EPS or self.used_ram + rm > self.ram_max + EPS
                or self.used_storage + s > self.storage_max + EPS):
            return -1
        if self.class_avoid is not None:
            return self._avoiding(self._find_worker_within_budgets, k, t, e)
        return self._find_worker_within_budgets(k, t, e)

    def _avoiding(self, find: Callable[..., Any], k: int, *args: Any) -> Any:
        """``find(k, *args)`` (a search of workers for class ``k``), to which the worker the class avoids
        (TaskDemand.avoid_worker: the backend could not place its task's last attempt there) looks full:
        every search reads a worker's free CPU, and none changes it."""
        w = self.class_avoid[k] if self.class_avoid is not None else -1
        if w < 0:
            return find(k, *args)
        kept, self.free_cpu[w] = self.free_cpu[w], -math.inf
        try:
            return find(k, *args)
        finally:
            self.free_cpu[w] = kept

    def _find_worker_within_budgets(self, k: int, t: float, e: float) -> int:
        """find_worker once the budgets are known to have room for class ``k``."""
        if self.busy_count > self.vm_cap:  # fixed tasks alone use too many workers: wait until they end
            return -1
        if self.future_started < len(self.future_fixed) and e > t:
            return self._find_worker_around_fixed(k, t, e)
        if self.failed_at[k] >= 0 and self._fits_nowhere_still(k):
            return -1
        w = self._first_fit(k)
        if w < 0:
            self.failed_at[k] = len(self.opened)
            self.failed_capped[k] = self.busy_count >= self.vm_cap
        else:
            self.failed_at[k] = -1
        return w

    def _fits_nowhere_still(self, k: int) -> bool:
        """Whether class ``k``, which fit on no worker at its last search, still fits on none; then that is
        noted as its last search. Since then workers only lost room, except those that gained some (a task
        ended) or became busy (``opened``): only those can fit it now, and the idle ones, were they
        skipped then because the VMs were all in use and are no longer. Exact: a False leads to the full
        search, which finds the worker it always found."""
        if self.failed_capped[k] and self.busy_count < self.vm_cap:
            return False
        c, rm, s, f = self.class_demand[k]
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        opened = self.opened
        for w in opened[self.failed_at[k]:] if self.failed_at[k] < len(opened) else ():
            if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                return False
        self.failed_at[k] = len(opened)
        self.failed_capped[k] = self.busy_count >= self.vm_cap
        return True

    def _first_fit(self, k: int) -> int:
        """The worker a task of class ``k`` starts on now (the rules of the module's docstring), or -1."""
        c, rm, s, f = self.class_demand[k]
        if self.spare_kinds[k]:
            w = self._find_spare_worker(k)
            if w >= 0:
                return w
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        for w in self.busy:
            if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                return w
        if self.busy_count >= self.vm_cap:
            return -1
        fallback = -1
        tasks_on, used_before = self.tasks_on, self.used_before
        for w in self.idle_any if f < 0 else self.idle_by_flavour.get(f, ()):
            if tasks_on[w] == 0 and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                if used_before[w]:
                    return w
                if fallback < 0:
                    fallback = w
        return fallback

    def _find_spare_worker(self, k: int) -> int:
        """A worker of a kind that no class is confined to (``spare_kinds``), so that the workers that only
        some tasks fit stay free for them (3-CPU tasks on the 4-CPU workers, say, while 1-CPU tasks could
        run on 2-CPU ones)."""
        c, rm, s, f = self.class_demand[k]
        spare, kind, one_kind = self.spare_kinds[k], self.worker_kind, self.spare_kind[k]
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        if one_kind >= 0:
            for w in self.busy_of_kind[one_kind]:
                if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                    return w
        else:
            for w in self.busy:
                if spare >> kind[w] & 1 and (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm \
                        and fs[w] + EPS >= s:
                    return w
        if self.busy_count >= self.vm_cap:
            return -1
        tasks_on = self.tasks_on
        for w in self.spare_idle[k]:
            if tasks_on[w] == 0 and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                return w
        return -1

    def _future_window(self, t: float, e: float) -> tuple[list[float], dict[int, list[float]], set]:
        """Usage of fixed tasks that start in (t, e): global, per worker, and newly busy workers."""
        g = [0.0, 0.0, 0.0]
        per: dict[int, list[float]] = {}
        newly: set = set()
        fixed = self.prob.fixed
        widx = self.prob.widx
        for q in self.future_fixed[self.future_started:]:
            f = fixed[q]
            if f.start_s >= e:
                break
            if f.start_s <= t:
                continue
            g[0] += f.cpu
            g[1] += f.ram_mb
            g[2] += f.storage_mb
            j = widx.get(f.worker, -1)
            if j >= 0:
                u = per.setdefault(j, [0.0, 0.0, 0.0])
                u[0] += f.cpu
                u[1] += f.ram_mb
                u[2] += f.storage_mb
                if self.tasks_on[j] == 0:
                    newly.add(j)
            elif self.external_tasks.get(f.worker, 0) == 0:
                newly.add(f.worker)
        return g, per, newly

    def _find_worker_around_fixed(self, k: int, t: float, e: float) -> int:
        """find_worker when fixed tasks start before ``e``: the task must fit beside them too."""
        c = self.class_cpu[k]
        rm = self.class_ram[k]
        s = self.class_storage[k]
        g, per, newly = self._future_window(t, e)
        if (self.used_cpu + c + g[0] > self.cpu_max + EPS or self.used_ram + rm + g[1] > self.ram_max + EPS
                or self.used_storage + s + g[2] > self.storage_max + EPS):
            return -1
        if self.busy_count + len(newly) > self.vm_cap:
            return -1
        f = self.class_flavour[k]
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        for w in self.busy:
            if f >= 0 and wfl[w] != f:
                continue
            x = per.get(w, (0.0, 0.0, 0.0))
            if fc[w] - x[0] + EPS >= c and fr[w] - x[1] + EPS >= rm and fs[w] - x[2] + EPS >= s:
                return w
        fallback = -1
        for w in self.idle_any if f < 0 else self.idle_by_flavour.get(f, ()):
            if self.tasks_on[w] or self.busy_count + len(newly - {w}) + 1 > self.vm_cap:
                continue
            x = per.get(w, (0.0, 0.0, 0.0))
            if fc[w] - x[0] + EPS >= c and fr[w] - x[1] + EPS >= rm and fs[w] - x[2] + EPS >= s:
                if self.used_before[w]:
                    return w
                if fallback < 0:
                    fallback = w
        return fallback

    def begin(self, i: int, w: int, t: float) -> None:
        c, rm, s, _f = self.class_demand[self.task_class[i]]
        self.used_cpu += c
        self.used_ram += rm
        self.used_storage += s
        self._occupy(i, w, t, c, rm, s)

    def _occupy(self, i: int, w: int, t: float, c: float, rm: float, s: float) -> None:
        """Task ``i`` starts on worker ``w`` at ``t`` (the budgets' use is the caller's)."""
        self.free_cpu[w] -= c
        self.free_ram[w] -= rm
        self.free_storage[w] -= s
        if self.tasks_on[w] == 0:
            self.busy.append(w)
            self.busy_of_kind[self.worker_kind[w]].append(w)
            self.busy_count += 1
            self.used_before[w] = True
            self.opened.append(w)  # (an idle worker a search skipped, the VMs all in use, may fit it now)
        self.tasks_on[w] += 1
        self.start[i] = t
        self.worker_of[i] = w
        self.started += 1
        e = t + self.dur[i]
        if e == t:  # a task of no duration holds nothing: kept out of the peaks
            self.momentary.append((c, rm, s, w))
        heapq.heappush(self.running, (e, i))

    # ----------------------------------------------------------------------------- reservations

    def _fitting_now(self, k: int) -> list[int]:
        """Busy workers with room for class ``k`` now, and the first idle one that has."""
        c, rm, s, f = self.class_demand[k]
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        fitting = [w for w in self.busy
                   if (f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s]
        tasks_on = self.tasks_on
        for w in self.idle_any if f < 0 else self.idle_by_flavour.get(f, ()):
            if tasks_on[w] == 0 and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s:
                fitting.append(w)
                break
        return fitting

    def reservation(self, k: int) -> Reservation | None:
        """EASY-backfilling reservation for class ``k``, blocked now: the earliest end of running tasks
        after which it fits (nothing else starting), where, and what is left over then."""
        if self.future_started < len(self.future_fixed):
            return None
        c, rm, s, f = self.class_demand[k]
        free = [self.cpu_max - self.used_cpu, self.ram_max - self.used_ram, self.storage_max - self.used_storage]
        freed: dict[int, list[float]] = {}
        ended_on: dict[int, int] = {}
        busy_then = self.busy_count
        fitting = self._fitting_now(k)
        worker_of, task_class, tasks_on, wfl = self.worker_of, self.task_class, self.tasks_on, self.worker_flavour
        class_demand = self.class_demand
        fc, fr, fs = self.free_cpu, self.free_ram, self.free_storage
        # The running tasks' ends in order, popped from a copy of their heap as far as needed: most
        # reservations are found within the first few of a hundred (sorting them all was a sixth of a plan)
        ends = self.running[:]
        while ends:
            e, i = heappop(ends)
            w = worker_of[i]
            dc, dr, ds, _f = class_demand[task_class[i]]
            free[0] += dc
            free[1] += dr
            free[2] += ds
            u = freed.get(w)
            if u is None:
                u = freed[w] = [0.0, 0.0, 0.0]
            u[0] += dc
            u[1] += dr
            u[2] += ds
            g = ended_on[w] = ended_on.get(w, 0) + 1
            if tasks_on[w] == g:
                busy_then -= 1
            if ((f < 0 or wfl[w] == f) and w not in fitting and fc[w] + u[0] + EPS >= c
                    and fr[w] + u[1] + EPS >= rm and fs[w] + u[2] + EPS >= s):
                fitting.append(w)
            if (ends and ends[0][0] == e) or free[0] + EPS < c or free[1] + EPS < rm or free[2] + EPS < s:
                continue
            for w2 in fitting:
                idle_then = tasks_on[w2] - ended_on.get(w2, 0) == 0
                if not idle_then or busy_then < self.vm_cap:
                    u = freed.get(w2, (0.0, 0.0, 0.0))
                    return Reservation(e, w2, free[0] - c, free[1] - rm, free[2] - s,
                                       self.vm_cap - busy_then - (1 if idle_then else 0),
                                       fc[w2] + u[0] - c, fr[w2] + u[1] - rm, fs[w2] + u[2] - s, ended_on)
        return None

    # --------------------------------------------------------------------------------- dispatching

    def _begin_event(self) -> None:
        """Blocked classes are tried again at each event."""
        if self.guard is not None:
            self.guard.start_event()
        is_blocked, ready_by_class, top = self.is_blocked, self.ready_by_class, self.tops
        for k in self.blocked:
            is_blocked[k] = False
            if ready_by_class[k]:
                heappush(top, ready_by_class[k][0])
        self.blocked.clear()

    def _block(self, k: int) -> None:
        self.is_blocked[k] = True
        self.blocked.append(k)

    def dispatch(self, t: float) -> None:
        """Start the ready tasks that fit now, best rank first (the greedy rule)."""
        self.greedy(t)

    def _greedy_dispatcher(self) -> Generator[None, float, None]:
        """The greedy rule as a coroutine, ``send(t)`` at each event: it binds what its loop reads once per
        pass instead of once per event (this is the hottest loop; a pass has about two events per task)."""
        top, ready_by_class, is_blocked, blocked = self.tops, self.ready_by_class, self.is_blocked, self.blocked
        task_at, task_class, dur, class_demand = self.task_at, self.task_class, self.dur, self.class_demand
        cpu_limit, ram_limit, storage_limit = self.budget_limits
        occupy, guard = self._occupy, self.guard
        find_worker = self._find_worker_within_budgets if guard is None else self._find_admitted_worker
        if self.class_avoid is not None:  # (only then: this is the hottest loop)
            find_worker = functools.partial(self._avoiding, find_worker)
        while True:
            t = yield
            self._begin_event()
            fails = 0
            reserved = -1  # the class promised a reservation (the first that did not fit), if any
            resv: Reservation | None = None  # computed when first needed: nothing starts in between
            started = self.started
            # the budgets' use, kept here too: most attempts fail on them
            used_cpu, used_ram, used_storage = self.used_cpu, self.used_ram, self.used_storage
            while top:
                r = heappop(top)
                i = task_at[r]
                k = task_class[i]
                h = ready_by_class[k]
                if not h or h[0] != r or is_blocked[k]:
                    continue
                c, rm, s, _f = class_demand[k]
                w = -1
                if used_cpu + c <= cpu_limit and used_ram + rm <= ram_limit and used_storage + s <= storage_limit:
                    w = find_worker(k, t, t + dur[i])
                    if w >= 0 and reserved >= 0:
                        if resv is None:
                            resv = self._avoiding(self.reservation, reserved) or NO_RESERVATION
                        if t + dur[i] > resv.at + EPS and not resv.admits(w, c, rm, s, self.tasks_on[w]):
                            w = -1  # it would still run at the reservation, beyond what the reserved task leaves
                if w < 0:
                    is_blocked[k] = True
                    blocked.append(k)
                    if guard is not None:
                        guard.blocked(k)
                    fails += 1
                    if fails >= MAX_FAILS_PER_EVENT:
                        break
                    if self.reserve and fails == 1:
                        reserved = k
                    continue
                heappop(h)
                if h:
                    heappush(top, h[0])
                occupy(i, w, t, c, rm, s)
                used_cpu += c
                used_ram += rm
                used_storage += s
                self.used_cpu, self.used_ram, self.used_storage = used_cpu, used_ram, used_storage
            if self.started != started:
                self._note_peak()

    # ------------------------------------------------------------------------------------- lanes

    def _find_admitted_worker(self, k: int, t: float, e: float) -> int:
        """find_worker, when less urgent work may only back-fill (lanes.LaneGuard): the first-fit worker if
        the guard admits it, else another worker it admits."""
        w = self._find_worker_within_budgets(k, t, e)
        if w < 0 or self.guard.admits(k, w, e):
            return w
        if self.future_started < len(self.future_fixed) or self.busy_count > self.vm_cap:
            return -1  # keep it simple around fixed tasks starting later: wait
        c, rm, s, f = self.class_demand[k]
        wfl, fc, fr, fs = self.worker_flavour, self.free_cpu, self.free_ram, self.free_storage
        idle = [w for w in (self.idle_any if f < 0 else self.idle_by_flavour.get(f, ())) if self.tasks_on[w] == 0]
        for w in self.busy + (idle if self.busy_count < self.vm_cap else []):
            if ((f < 0 or wfl[w] == f) and fc[w] + EPS >= c and fr[w] + EPS >= rm and fs[w] + EPS >= s
                    and self.guard.leaves_room(k, w)):
                return w
        return -1
