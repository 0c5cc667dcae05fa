"""The planner ladder's instance families (deterministic for a given size and seed).

- ``reference_family``: planning.md's family, n/2 tasks A (cpu 2, ram 1, storage 2, 5 s) and n/2 tasks B
  (cpu 3, ram 2, storage 2, 2 s), each B after one A; budgets cpu 10, ram 10, storage 10, 4 VMs. Two
  worker pools: 4 workers of a large flavour (10/10/10, several tasks per worker: LB is the CPU bound) and
  4 of a flavour that holds one task at a time (3/2/2: the reference scheduler's setting).
- ``random_instance``: random heterogeneous graphs, six routines (one restricted to a flavour), three
  flavours, random dependencies to recent tasks (``window``), some retry backoffs, all four budgets binding.
- ``flavour_fit_instance``: per-worker flavour fit binds: 4-CPU/30 GB and 2-CPU/7.4 GB workers; MAJA
  (3 CPU, 12 GB) and GFSC (16 GB) fit only the big ones, and only one MAJA at a time on each.
- ``tile_series_instance``: HR-WSI's time series: per tile, each date's L2A waits for the previous date's
  (sequential per tile), then FSC, then a quicklook; as many tiles as make the longest chain about equal to
  the CPU bound (the hardest case for list scheduling, and for a bound that is a max of separate terms).
- ``lanes_instance``: a random graph where a tenth of the tasks are near-real-time (priority 0, a deadline)
  and the rest archive back-fill (priority 1).
"""

from __future__ import annotations

import random

from hrwsi.planner import Budgets, Flavour, TaskDemand, Worker


def reference_family(n: int, one_task_per_worker: bool = False):
    half = n // 2
    tasks = [TaskDemand(i, "A", 2, 1, 2, 5) for i in range(half)]
    tasks += [TaskDemand(half + i, "B", 3, 2, 2, 2, depends_on=(i,)) for i in range(half)]
    flavour = Flavour("one-task", 3, 2, 2) if one_task_per_worker else Flavour("large", 10, 10, 10)
    workers = [Worker(f"w{i}", flavour) for i in range(4)]
    return tasks, workers, Budgets(cpu_max=10, ram_max_mb=10, storage_max_mb=10, vm_max=4)


ROUTINES = [
    # name, cpu, ram MB, storage MB, mean duration s, flavour restriction, weight
    ("L1C", 1, 2000, 4000, 120, None, 4),
    ("MAJA", 4, 8000, 12000, 900, None, 2),
    ("SNOW", 2, 4000, 3000, 300, None, 2),
    ("WATER", 2, 6000, 3000, 400, None, 1),
    ("QUICKLOOK", 0.5, 1000, 500, 60, None, 2),
    ("GFSC", 8, 30000, 20000, 1500, "large", 1),
]


def _random_tasks(n: int, rng: random.Random, routines, window: int, backoffs: bool = True) -> list[TaskDemand]:
    names = [r[0] for r in routines]
    weights = [r[-1] for r in routines]
    tasks = []
    for i in range(n):
        k = rng.choices(range(len(routines)), weights)[0]
        name, cpu, ram, st, dur, flav = routines[k][:6]
        deps = set()
        if i > 0:
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                deps.add(rng.randrange(max(0, i - window), i))
        tasks.append(
            TaskDemand(
                id=1000 + i,
                routine=names[k],
                cpu=cpu,
                ram_mb=ram,
                storage_mb=st,
                duration_s=round(dur * rng.uniform(0.5, 1.5), 1),
                depends_on=tuple(sorted(1000 + d for d in deps)),
                earliest_start_s=rng.choice((0.0,) * 19 + (rng.uniform(0, 600),)) if backoffs else 0.0,
                flavour=flav,
            )
        )
    return tasks


def random_instance(n: int, seed: int = 1, window: int | None = None):
    """A random heterogeneous instance with n tasks."""
    rng = random.Random(seed)
    small = Flavour("small", 4, 16000, 40000)
    medium = Flavour("medium", 8, 32000, 80000)
    large = Flavour("large", 16, 64000, 160000)
    workers = [Worker(f"s{i}", small) for i in range(10)]
    workers += [Worker(f"m{i}", medium) for i in range(10)]
    workers += [Worker(f"l{i}", large) for i in range(6)]
    budgets = Budgets(cpu_max=100, ram_max_mb=360000, storage_max_mb=480000, vm_max=14)
    return _random_tasks(n, rng, ROUTINES, window or max(40, n // 25)), workers, budgets


FLAVOUR_FIT_ROUTINES = [
    # name, cpu, ram MB, storage MB, mean duration s, flavour restriction, weight
    ("MAJA", 3, 12000, 20000, 900, None, 2),  # 3 CPU: only on the big workers, one at a time
    ("SIG0", 1, 6000, 8000, 300, None, 2),  # 6 GB: one at a time on a small worker
    ("FSC", 2, 4000, 5000, 200, None, 3),
    ("GFSC", 1, 16000, 10000, 600, None, 1),  # 16 GB: only on the big workers
    ("QUICKLOOK", 0.5, 1000, 1000, 60, None, 3),
]


def flavour_fit_instance(n: int, seed: int = 1, window: int | None = None, big_workers: int = 8,
                         small_workers: int = 16):
    """A random graph on workers of two flavours where which tasks fit which worker binds. With the
    default 8 + 16 workers (20 VMs) the big workers' share binds; with many more workers (80 % of them as
    VMs, CPU budget 3/4 of theirs) the chain comes close to it too."""
    rng = random.Random(seed)
    big = Flavour("big", 4, 30000, 100000)
    small = Flavour("small", 2, 7400, 40000)
    workers = [Worker(f"b{i}", big) for i in range(big_workers)] + [Worker(f"s{i}", small)
                                                                    for i in range(small_workers)]
    if (big_workers, small_workers) == (8, 16):
        budgets = Budgets(cpu_max=48, ram_max_mb=260000, storage_max_mb=800000, vm_max=20)
    else:
        budgets = Budgets(cpu_max=3 * (4 * big_workers + 2 * small_workers) // 4,
                          vm_max=(big_workers + small_workers) * 4 // 5)
    return _random_tasks(n, rng, FLAVOUR_FIT_ROUTINES, window or max(40, n // 25)), workers, budgets


def tile_series_instance(n: int, seed: int = 1, tiles: int = 8):
    """Per tile and date: L2A (after the tile's previous L2A), FSC (after it), QUICKLOOK (after FSC)."""
    rng = random.Random(seed)
    medium = Flavour("medium", 8, 32000, 80000)
    workers = [Worker(f"m{i}", medium) for i in range(6)]
    budgets = Budgets(cpu_max=40, ram_max_mb=160000, storage_max_mb=400000, vm_max=6)
    dates = max(1, n // (3 * tiles))
    tasks: list[TaskDemand] = []
    previous: dict[int, int] = {}
    for _date in range(dates):
        for tile in range(tiles):
            base = len(tasks)
            deps = (previous[tile],) if tile in previous else ()
            tasks.append(TaskDemand(base, "L2A", 4, 8000, 12000, round(600 * rng.uniform(0.7, 1.3), 1), deps))
            tasks.append(TaskDemand(base + 1, "FSC", 2, 4000, 3000, round(200 * rng.uniform(0.7, 1.3), 1), (base,)))
            tasks.append(TaskDemand(base + 2, "QUICKLOOK", 0.5, 1000, 500, round(60 * rng.uniform(0.7, 1.3), 1),
                                    (base + 1,)))
            previous[tile] = base
    return tasks, workers, budgets


def lanes_instance(n: int, seed: int = 1):
    """Archive back-fill and near-real-time arrivals: ``random_instance`` (priority 1, no deadline) plus,
    for about a tenth more tasks, NRT scenes arriving over the first 6 hours, each a chain L2A -> FSC ->
    QUICKLOOK (priority 0), every task due 3 hours after the scene arrives plus its chain's durations."""
    tasks, workers, budgets = random_instance(n, seed)
    archive = [TaskDemand(t.id, t.routine, t.cpu, t.ram_mb, t.storage_mb, t.duration_s, t.depends_on,
                          t.earliest_start_s, t.flavour, priority=1) for t in tasks]
    rng = random.Random(seed + 1)
    nrt: list[TaskDemand] = []
    next_id = 1000 + n
    for _scene in range(max(1, n // 30)):
        arrival = round(rng.uniform(0, 6 * 3600), 1)
        due = arrival + 3 * 3600
        previous: tuple[int, ...] = ()
        for routine, cpu, ram, st, dur in (("L2A", 4, 8000, 12000, 600), ("FSC", 2, 4000, 3000, 200),
                                           ("QUICKLOOK", 0.5, 1000, 500, 60)):
            duration = round(dur * rng.uniform(0.7, 1.3), 1)
            due += duration
            nrt.append(TaskDemand(next_id, routine, cpu, ram, st, duration, previous, arrival, priority=0,
                                  deadline_s=due))
            previous = (next_id,)
            next_id += 1
    return archive + nrt, workers, budgets
