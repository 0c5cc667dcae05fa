"""What `make bench` measures: the latencies and the bursts of every system in one phase each, the
rest one system at a time (the driver alternates systems within a round).

- latency phase: every system's reaction latency over single inserts, all systems running at once,
  their inputs interleaved (each in a fresh database of its own; hrwsi's aged database beside them);
- service phase: every system running at once, each in a fresh database of its own: a burst of
  `small` inputs in one statement to each system in turn (a shuffled order), then a burst of
  `large` to each; after each burst the system settles (no open work) and each of its processes
  reports its peak RSS;
- chain: `count` inputs through a -> b -> c, each step a real subprocess (local backend);
- back-fill (hrwsi only): create and plan a time series, with and without sequential_per_tile.

Every wait is bounded: a figure that cannot be measured is recorded as missing with the reason,
and the bench goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench_sql import bench_query
from children import Child, start_all, stop_all
from cpu_time import CpuSnapshot, cpu_between
from figures import AGED  # hrwsi on the aged database, a member of the latency phase
from hrwsi.database import drop_database
from process_protocol import clock
from systems import BACKFILL, CHAIN, HRWSI, NRT_BACKLOG, SERVICE, hrwsi_configuration, prepare_hrwsi

LATENCY_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 600.0
QUIET_TIMEOUT_S = 2.0  # after an input of the latency phase, the most it waits for its system to be idle
QUIET_POLL_S = 0.002
LATENCY = "latency"


@dataclass
class Sizes:
    samples: int = 300          # single inserts for the latency
    warmup: int = 5             # inserts before them, not counted (every system: cold caches, first plans)
    pause_s: float = 0.01       # between them: single inputs, not a burst
    small: int = 10_000         # the burst
    large: int = 100_000        # the big burst
    # Inputs through a -> b -> c: 3,000 subprocesses per system and round, about 100 s on 2 cores (the
    # issue measured 10,000: `--chain 10000`, about 16 minutes per system and round).
    chain: int = 1_000
    parallel: int = 16          # subprocesses at once in the chain, every system
    backfill: int = 10_000      # time-series inputs over `tiles` tiles
    tiles: int = 200
    one_tile: int = 4_000       # time-series inputs on one tile
    aged_tasks: int = 1_000_000  # finished tasks (and jobs, products) in the aged database; 4x history rows
    burst_timeout_s: float = 900.0
    chain_s_per_job: float = 0.1  # the chain's timeout grows with it: about 3x the time per job here (32/s)

    @property
    def chain_timeout_s(self) -> float:
        return max(self.burst_timeout_s, 3 * self.chain * self.chain_s_per_job)


@dataclass
class Workspace:
    server_url: str
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def home(self, label: str) -> Path:
        return self.root / "homes" / label


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    missed: int = 0

    def count(self, taken_ms: float | None, counted: bool) -> None:
        """One input's latency (None: it did not reach the system in time); a warm-up one is not counted."""
        if not counted:
            return
        if taken_ms is None:
            self.missed += 1
        else:
            self.samples_ms.append(taken_ms)

    def figures(self) -> dict:
        if not self.samples_ms:
            return {"samples": 0, "missed": self.missed}
        ordered = sorted(self.samples_ms)
        return {"samples": len(ordered), "missed": self.missed, "p50_ms": round(statistics.median(ordered), 3),
                "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3), "max_ms": round(ordered[-1], 3)}


def database_name(system: str, scenario: str) -> str:
    return f"bench_{system}_{scenario}_{uuid.uuid4().hex[:8]}"


async def time_one_input(producer, reporter: Child, key: str) -> float | None:
    """One input committed -> its job reached the system, in ms; None if not within LATENCY_TIMEOUT_S."""
    reached = reporter.expect_key(key)
    await producer.insert_one(key)
    committed = clock()  # autocommit: the row is committed when the call returns
    try:
        at = await asyncio.wait_for(reached, LATENCY_TIMEOUT_S)
    except TimeoutError:
        return None
    return (at - committed) * 1000


async def measure_latency(producer, child: Child, sizes: Sizes, prefix: str) -> Latency:
    """One input committed -> its job reached the system, over single inserts with a small pause."""
    latency = Latency()
    await child.command("each")
    for index in range(-sizes.warmup, sizes.samples):
        taken_ms = await time_one_input(producer, child, f"{prefix}{index}")
        latency.count(taken_ms, index >= 0)
        if taken_ms is not None:
            await asyncio.sleep(sizes.pause_s)
    child.forget_keys()
    return latency


async def measure_burst(system, url: str, child: Child, count: int, prefix: str, timeout_s: float,
                        until_settled: Callable[[], Awaitable[dict]]) -> dict:
    """`count` inputs in one statement -> all reached the system (`seconds`, the figure of issue 15);
    then `until_settled` (the system settles: when, and the burst's CPU from before its statement) while
    the statement's session is still open, so that its CPU is counted: `recorded_s` is the time from
    the statement to the last outcome recorded.

    Why both: the clock of `seconds` stops at the last job's start, and what was still to record then
    is not in it. On the dry-run backend (jobs end at once), 30-40 % of a 10,000 burst's outcomes
    were recorded after its last dispatch call, and 3-4 % (once 10 %) of a 100,000 one's, where the
    launcher pauses while 5,000 outcomes wait for the writer (launcher logs of eight runs,
    2026-12-03). The growth of `seconds` from 10,000 to 100,000 thus counts more of the work at
    100,000; the CPU per job and `recorded_s` count all of it at both sizes.

    The statement runs in a session of its own, as a bulk load would. (A session that first inserted
    single rows keeps the plans its triggers' statements were given for one row: its 100,000-row
    INSERT took 2.4-2.8 s against 2.2-2.5 s in a fresh session, and 2.3-2.4 s after DISCARD PLANS
    (2026-12-01, six and four runs). Until migration 0005 it kept a sequential scan for the
    foreign-key check of hrwsi.input_backlog -> hrwsi.input, and scanned the input table once per
    row: minutes, quadratic. The driver does not add a hazard of its own
    session to the burst; hrwsi's services keep their own long-lived sessions.)"""
    conn = await asyncpg.connect(url)
    try:
        reached = await child.expect_all(count)
        started = clock()
        await system.producer(conn).insert_burst(count, prefix)
        inserted = clock()
        try:
            at = await asyncio.wait_for(reached, timeout_s)
        except TimeoutError:
            at = None
        waited = clock()
        settled = await until_settled()  # also after a timeout: the next burst starts on a settled system
        settle_s = round(settled["settled_at"] - waited, 2)
        if at is None:
            return {"count": count, "insert_s": round(inserted - started, 3), "settle_s": settle_s,
                    "failed": f"not all within {timeout_s:.0f} s"}
        return {"count": count, "started_at": round(started, 3), "seconds": round(at - started, 3),
                "insert_s": round(inserted - started, 3),
                "per_s": round(count / (at - started), 1), "settle_s": settle_s,
                "recorded_s": round(settled["settled_at"] - started, 3), "cpu": settled["cpu"]}
    finally:
        await conn.close()


async def settled_at(producer, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until the system has no open work (outcomes recorded, queue empty); the clock when the
    check that found none began (checks every 0.1 s: the work ended at most that much earlier)."""
    started = clock()
    while True:
        checked = clock()
        if not await producer.open_work():
            return checked
        if checked - started > timeout_s:
            raise TimeoutError(f"work still open after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def settle(producer, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until the system has no open work; the seconds it took."""
    started = clock()
    return round(await settled_at(producer, timeout_s) - started, 2)


async def memory_of(children: dict[str, Child]) -> dict[str, float]:
    """Each process's peak RSS so far, MB."""
    return {name: (await child.memory())[0] for name, child in children.items()}


@contextlib.asynccontextmanager
async def running(space: Workspace, url: str, roles: dict[str, str], label: str, drop: str | None = None,
                  **options) -> AsyncIterator[tuple[asyncpg.Connection, dict[str, Child]]]:
    """A connection of the driver and the system's processes, listening; on exit every process is
    stopped and the database `drop` (if given) dropped. The scratch directory stays until the end of
    the run (benchmarks/run.py removes them all): deleting a chain's thousands of files here made the
    NEXT system's file creations slower for minutes, a tax on whoever ran after. (This machine's ext4
    has no journal and then skips, for every inode it allocates, each inode freed in the last 5-10
    minutes; in a chain of 300 run right after the files of earlier chains were deleted, 46 % of
    hrwsi's launcher's CPU went to allocating the inodes of its directories and files, 2026-12-02, perf.
    Kept until the end, the chain of 300 took 19-23 s for both systems instead of 22-31 s.)"""
    home = space.home(label)
    children: dict[str, Child] = {}
    conn = await asyncpg.connect(url)
    try:
        children = await start_all(roles, url, home, space.logs, label, **options)
        yield conn, children
    finally:
        await conn.close()
        await stop_all(children)
        if drop is not None:
            await asyncio.to_thread(drop_database, space.server_url, drop)


def failure(error: Exception) -> str:
    """A figure that could not be measured is recorded with why; the other systems and rounds go on."""
    return f"{type(error).__name__}: {error}"


PROBE_COMMITS = 100
PROBE_PYTHON_RUNS = 5


def _fixed_python_work() -> int:
    return sum(i * i for i in range(200_000))


async def machine_probe(url: str, commits: int = PROBE_COMMITS, pause_s: float = 0.01) -> dict:
    """How fast the machine is as a system's service phase starts: the median of `commits` one-row
    INSERTs committed `pause_s` apart, as the latency's inputs come (each commit waits for the WAL's
    flush, about 0.45 ms of a 0.9 ms INSERT here, and so do hrwsi's dispatch call and pgqueuer's
    dequeue), and the median of a fixed piece of pure Python (the engines' processes).

    Why: the same code's latency moved 20-50 % from round to round on this shared machine (the
    12-04 13:09 run: hrwsi's p50 2.55, 2.63 and 3.22 ms), and whether p99, the 10,000 burst and the
    growth met their targets moved with it. With these beside each phase's figures, a slow phase
    on a slow machine can be told from a slow system."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(bench_query("probe_table"))
        commit_s = []
        for _ in range(commits):
            await asyncio.sleep(pause_s)
            started = clock()
            await conn.execute(bench_query("probe_commit"))
            commit_s.append(clock() - started)
    finally:
        await conn.close()
    python_s = []
    for _ in range(PROBE_PYTHON_RUNS):
        started = clock()
        _fixed_python_work()  # (blocks the driver's loop, which waits for nothing else yet)
        python_s.append(clock() - started)
    return {"commit_ms": round(statistics.median(commit_s) * 1000, 3),
            "python_ms": round(statistics.median(python_s) * 1000, 2)}


@dataclass
class BurstMember:
    """One system of the service phase: its running processes, and what its bursts measured."""
    system: object
    url: str
    conn: asyncpg.Connection
    children: dict[str, Child]
    result: dict


async def burst_of(member: BurstMember, size_name: str, count: int, sizes: Sizes, round_index: int) -> None:
    """One burst of `count` inputs to one system of the service phase, until it settled; then each of
    its processes' peak RSS so far."""
    producer, reporter = member.system.producer(member.conn), member.children[member.system.reporter]
    pids = {name: child.process.pid for name, child in member.children.items()}
    before = await CpuSnapshot.take(member.conn, pids)

    async def until_settled() -> dict:
        at = await settled_at(producer)
        return {"settled_at": at, "cpu": cpu_between(before, await CpuSnapshot.take(member.conn, pids), count)}

    member.result[size_name] = await measure_burst(member.system, member.url, reporter, count,
                                                   f"/{size_name}/{round_index}/", sizes.burst_timeout_s, until_settled)
    member.result[size_name]["peak_rss_mb"] = await memory_of(member.children)


async def service_phase(systems, space: Workspace, sizes: Sizes, round_index: int) -> dict:
    """Every system's bursts in one phase: all of them running at once, each in a fresh database of its
    own; the `small` bursts one system after the other in an order shuffled by the round, each once
    the system before has settled (no open work), then the `large` ones likewise. After each burst
    every process of its system reports its peak RSS (the others' processes are idle meanwhile).

    Why interleaved (2026-12-04), as the latency phase is: one system's phase after the other's, the
    small bursts of hrwsi and the faster pgqueuer were a minute or more apart, and the machine moved
    between them as much as the systems differ: in the 12-04 20:36 run hrwsi's 10,000 burst took
    1.25, 1.19 and 0.79 s in its three rounds (0.95x, 1.49x and 0.95x pgqueuer's), and the machine's
    probe of pure Python read 14.4, 10.5 and 8.0 ms as its phases started. Interleaved, each
    system's burst of a size comes within seconds of the others'."""
    result: dict = {}
    members: list[BurstMember] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            for system in systems:
                name = database_name(system.name, SERVICE)
                try:
                    url = await system.prepare(space.server_url, name, SERVICE)
                    if not members:
                        machine = await machine_probe(url)  # (as the phase starts: one probe for all)
                    conn, children = await stack.enter_async_context(
                        running(space, url, system.roles(SERVICE), f"r{round_index}-{system.name}-service", name,
                                batch_size=system.batch_size))
                    await settle(system.producer(conn))
                except Exception as error:
                    result[system.name] = {"failed": failure(error)}
                    continue
                members.append(BurstMember(system, url, conn, children, {"machine": machine}))
            order = random.Random(round_index)
            for size_name, count in (("small", sizes.small), ("large", sizes.large)):
                cycle = [member for member in members if "failed" not in member.result]
                order.shuffle(cycle)
                for member in cycle:
                    try:
                        await burst_of(member, size_name, count, sizes, round_index)
                    except Exception as error:  # its process died, its database went away: the others go on
                        member.result["failed"] = failure(error)
    except Exception as error:
        result["failed"] = failure(error)
    result.update({member.system.name: member.result for member in members})
    return result


async def chain_phase(system, space: Workspace, sizes: Sizes, round_index: int) -> dict:
    """`sizes.chain` inputs through a -> b -> c, a real subprocess per step and input."""
    name = database_name(system.name, CHAIN)
    result: dict = {"count": sizes.chain, "parallel": sizes.parallel}
    try:
        url = await system.prepare(space.server_url, name, CHAIN)
        async with running(space, url, system.roles(CHAIN), f"r{round_index}-{system.name}-chain", name,
                           parallel=sizes.parallel, batch_size=system.batch_size) as (conn, children):
            reached = await children[system.reporter].expect_all(sizes.chain)
            pids = {name: child.process.pid for name, child in children.items()}
            before = await CpuSnapshot.take(conn, pids)
            started = clock()
            await system.producer(conn).insert_chain(sizes.chain, f"/chain/{round_index}/")
            try:
                at = await asyncio.wait_for(reached, sizes.chain_timeout_s)
                result.update(seconds=round(at - started, 3), per_s=round(3 * sizes.chain / (at - started), 1))
                result["cpu"] = cpu_between(before, await CpuSnapshot.take(conn, pids), 3 * sizes.chain)
            except TimeoutError:
                result["failed"] = f"not done within {sizes.chain_timeout_s:.0f} s"
            if system is HRWSI:
                result["check"] = await check_hrwsi_chain(conn, sizes.chain)
    except Exception as error:
        result["failed"] = failure(error)
    return result


async def check_hrwsi_chain(conn: asyncpg.Connection, count: int) -> dict:
    """Not timed: every step of every input processed once, no duplicate job."""
    deadline = clock() + 60
    while clock() < deadline:
        states = {r["state"]: r["n"] for r in await conn.fetch(bench_query("hrwsi_tasks_by_state"))}
        if states.get("processed", 0) >= 3 * count:
            break
        await asyncio.sleep(0.2)
    return {"tasks_by_state": states, "duplicate_jobs": await conn.fetchval(bench_query("hrwsi_duplicate_jobs")),
            "complete": states.get("processed", 0) == 3 * count}


async def backfill_phase(space: Workspace, count: int, tiles: int, sequential: bool, round_index: int,
                         timeout_s: float) -> dict:
    """hrwsi only: `count` time-series inputs over `tiles` tiles in one INSERT -> all tasks created
    and planned (orchestrator only), with or without sequential_per_tile."""
    kind = "sequential" if sequential else "plain"
    name = database_name("hrwsi", f"{BACKFILL}_{kind}")
    result: dict = {"count": count, "tiles": tiles, "sequential_per_tile": sequential}
    planned = {"tasks": 0}
    all_planned: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_task(_conn, _pid, _channel, payload: str) -> None:
        # The task triggers' payload: rows per new state; "planned" counts tasks the orchestrator planned.
        planned["tasks"] += json.loads(payload).get("counts", {}).get("planned", 0)
        if planned["tasks"] >= count and not all_planned.done():
            all_planned.set_result(clock())

    try:
        url = await asyncio.to_thread(prepare_hrwsi, space.server_url, name,
                                      hrwsi_configuration(BACKFILL, sequential))
        async with running(space, url, HRWSI.roles(BACKFILL), f"r{round_index}-hrwsi-backfill-{tiles}-{kind}",
                           name) as (conn, _children):
            await conn.add_listener("hrwsi_task", on_task)
            started = clock()
            await conn.execute(bench_query("hrwsi_insert_series"), count, tiles, "series", f"/series/{round_index}/")
            try:
                at = await asyncio.wait_for(all_planned, timeout_s)
                result["seconds"] = round(at - started, 3)
            except TimeoutError:
                result["failed"] = f"{planned['tasks']} of {count} planned after {timeout_s:.0f} s"
    except Exception as error:
        result["failed"] = failure(error)
    return result


@dataclass
class LatencyMember:
    """One system of the latency phase: how the driver puts its inputs in, and what it measured."""
    name: str
    producer: object
    reporter: Child
    latency: Latency = field(default_factory=Latency)
    not_quiet: int = 0  # inputs after which the system still had open work after QUIET_TIMEOUT_S
    failed: str | None = None

    def figures(self) -> dict:
        return {**self.latency.figures(), "not_quiet": self.not_quiet, **({"failed": self.failed} if self.failed else {})}


async def quiet(producer, timeout_s: float = QUIET_TIMEOUT_S) -> bool:
    """Whether the system has no open work left (its outcome recorded, its job acknowledged) within
    `timeout_s`, checked every QUIET_POLL_S."""
    started = clock()
    while await producer.open_work():
        if clock() - started > timeout_s:
            return False
        await asyncio.sleep(QUIET_POLL_S)
    return True


async def one_timed_input(member: LatencyMember, key: str, counted: bool) -> None:
    """One input committed -> its job reached the system; then until the system is idle again, so
    that what it still does for this input (recording the outcome, pgqueuer's acknowledgement, which
    it flushes every 0.1 s) is not done during the next system's input."""
    try:
        member.latency.count(await time_one_input(member.producer, member.reporter, key), counted)
        member.not_quiet += not await quiet(member.producer)
    except Exception as error:  # its process died, its database went away: the others go on
        member.failed = failure(error)


async def latency_phase(systems, space: Workspace, sizes: Sizes, round_index: int, aged_url: str | None = None) -> dict:
    """Every system's reaction latency in one phase: all of them running at once (each in a fresh
    database of its own, hrwsi also on the aged database), one single input to each per cycle in an
    order shuffled every cycle (seeded by the round), `pause_s` after each once its system is idle.
    Their databases differ, so a NOTIFY wakes only its own system's listeners.

    Why interleaved: measured one system after the other, a minute apart, the same code's p50 moved
    20-50 % from round to round (the 12-04 13:09 run: hrwsi 2.55, 2.63 and 3.22 ms), and the probe
    of the machine moved as much between the phases of one round (a commit 0.66-1.10 ms, 12-04
    14:09): the ratios measured the machine's drift as much as the systems. Interleaved, every
    system meets the same machine within a fraction of a second, as the randomized multiple
    interleaved trials of Abedi and Brecht (ICPE 2017) do on clouds' shared machines; the order is
    shuffled so that no system always follows the same one."""
    result: dict = {"systems": {}}
    members: list[LatencyMember] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            prepared = []
            for system in systems:
                name = database_name(system.name, LATENCY)
                try:
                    prepared.append((system.name, system, await system.prepare(space.server_url, name, SERVICE), name))
                except Exception as error:
                    result["systems"][system.name] = {"failed": failure(error)}
            if prepared:
                result["machine"] = await machine_probe(prepared[0][2])  # (a fresh database: its table goes with it)
            if aged_url is not None:
                prepared.append((AGED, HRWSI, aged_url, None))
            for label, system, url, drop in prepared:
                try:
                    conn, children = await stack.enter_async_context(
                        running(space, url, system.roles(SERVICE), f"r{round_index}-{label}-latency", drop,
                                batch_size=system.batch_size))
                except Exception as error:
                    result["systems"][label] = {"failed": failure(error)}
                    continue
                members.append(LatencyMember(label, system.producer(conn), children[system.reporter]))
            for member in members:
                await member.reporter.command("each")
                member.not_quiet += not await quiet(member.producer)
            order = random.Random(round_index)
            for index in range(-sizes.warmup, sizes.samples):
                cycle = [member for member in members if member.failed is None]
                order.shuffle(cycle)
                for member in cycle:
                    await one_timed_input(member, f"/latency/{round_index}/{index}", index >= 0)
                    await asyncio.sleep(sizes.pause_s)
            for member in members:
                member.reporter.forget_keys()
    except Exception as error:
        result["failed"] = failure(error)
    result["systems"].update({member.name: member.figures() for member in members})
    return result


class _NearRealTimeProducer:
    """Near-real-time inputs (condition `new`), one at a time, while back-fill waits."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def insert_one(self, key: str) -> None:
        await self.conn.execute(bench_query("hrwsi_insert_one"), "new", key)


async def nrt_backlog_phase(space: Workspace, sizes: Sizes, round_index: int) -> dict:
    """hrwsi's reaction latency for near-real-time inputs while a back-fill of `sizes.small` archive
    tasks waits (issue 12: "same order as an idle system, <= 50 ms p99 when a slot is free"): the
    archive tasks fill their workers and never end; the rest are queued, planned; each NRT input
    finds a free slot on a worker of its own flavour."""
    name = database_name(HRWSI.name, NRT_BACKLOG)
    result: dict = {}
    try:
        url = await asyncio.to_thread(prepare_hrwsi, space.server_url, name, hrwsi_configuration(NRT_BACKLOG))
        async with running(space, url, HRWSI.roles(NRT_BACKLOG), f"r{round_index}-hrwsi-nrt-backlog", name) \
                as (conn, children):
            started = clock()
            await conn.execute(bench_query("hrwsi_insert_burst"), "old", f"/old/{round_index}/", sizes.small)
            # Queued: every archive task either holds a worker or waits planned (none pending).
            while await conn.fetchval(bench_query("hrwsi_archive_still_pending")) > 0:
                if clock() - started > sizes.burst_timeout_s:
                    raise TimeoutError("the back-fill was not queued (planned) in time")
                await asyncio.sleep(0.2)
            result["backlog"] = dict(await conn.fetchrow(bench_query("hrwsi_archive_queue")))
            result["latency"] = (await measure_latency(_NearRealTimeProducer(conn), children[HRWSI.reporter],
                                                       sizes, f"/new/{round_index}/")).figures()
    except Exception as error:
        result["failed"] = failure(error)
    return result
