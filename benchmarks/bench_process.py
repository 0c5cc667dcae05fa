"""One process of a system under test in `make bench` (the driver, benchmarks/run.py, starts them).

    python benchmarks/bench_process.py ROLE --url URL --home DIR [--parallel N] [--batch-size N]

Roles:
  hrwsi-orchestrator, hrwsi-harvester   the hrwsi service, as `hrwsi orchestrator` runs it (hrwsi.app.App)
  hrwsi-launcher                        the launcher on the dry-run backend; reports each job as submitted
  hrwsi-launcher-local                  the launcher on the local backend; reports each job of routine c
                                        as ended (the last step of the chain)
  pgqueuer                              a pgqueuer consumer; reports each job as its handler is entered
  pgqueuer-chain                        pgqueuer running the chain a -> b -> c, one subprocess per job
  floor                                 one asyncpg listener reacting to each notification with one INSERT
  floor-chain                           the same listener running the chain, one subprocess per job

The line protocol with the driver is in benchmarks/process_protocol.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path

import asyncpg

from bench_sql import bench_query
from hrwsi import service_logging
from hrwsi.backends.base import JobOutcome, JobSpec
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.backends.local import LocalBackend
from process_protocol import clock, memory_mb, send

LISTEN_TIMEOUT_S = 60.0
CHAIN = {"a": "b", "b": "c", "c": None}  # each step's next step (pgqueuer and the floor)
# The routine every chain step runs: a real process writing one product file. hrwsi appends
# `--input PATH --output-dir DIR` (they become $1..$4 of the script), and sets HRWSI_OUTPUT_DIR.
ROUTINE_COMMAND = ("/bin/sh", "-c", ': > "$HRWSI_OUTPUT_DIR/product"', "routine")


class Reporter:
    """Tells the driver when jobs reach the system: one line per job, or one line when N have."""

    def __init__(self) -> None:
        self.each = False
        self.expected = 0
        self.count = 0

    def report(self, key: str, jobs: int = 1) -> None:
        at = clock()
        if self.each:
            send("job", key, repr(at))
        elif self.expected:
            self.count += jobs
            if self.count >= self.expected:
                send("all", self.count, repr(at))
                self.expected = 0

    def command(self, words: list[str]) -> bool:
        """Apply one driver command; False when the driver asks to stop."""
        if words[0] == "each":
            self.each, self.expected, self.count = True, 0, 0
        elif words[0] == "expect":
            self.each, self.expected, self.count = False, int(words[1]), 0
        elif words[0] == "rss":
            send("rss", *memory_mb())
        elif words[0] == "stop":
            return False
        send("ok", words[0])
        return True


async def serve_commands(reporter: Reporter) -> None:
    """Read driver commands from stdin until `stop` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if words and not reporter.command(words):
            return


async def serve_until_stopped(reporter: Reporter, *running: asyncio.Future) -> None:
    """Serve driver commands until it says stop, or until the system itself ends (an error)."""
    commands = asyncio.ensure_future(serve_commands(reporter))
    done, _ = await asyncio.wait({commands, *running}, return_when=asyncio.FIRST_COMPLETED)
    if commands not in done:
        send("error", "the system under test ended on its own; see this process's log")
        commands.cancel()


async def serve_beside(reporter: Reporter, work: Coroutine) -> None:
    """Say ready, then run `work` beside the driver's commands until it says stop; then cancel the work."""
    send("ready")
    running = asyncio.create_task(work)
    try:
        await serve_until_stopped(reporter, running)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# -- hrwsi ----------------------------------------------------------------------------------------

class ReportingDryRunBackend(DryRunBackend):
    """The dry-run backend, telling the driver when each job is submitted. It keeps no list of the
    jobs (the dry-run backend's `submitted`, a test aid, would add ~10 MB per 100,000 jobs to the
    launcher's RSS that no real backend costs)."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    async def submit(self, spec: JobSpec, *, first_start: bool = False) -> str:
        self.reporter.report(spec.input_path)
        return spec.job_id

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress) -> JobOutcome:
        if spec.lane == "archive":
            await asyncio.Event().wait()  # back-fill that runs on and on (the NRT-under-back-fill scenario)
        return await super().wait(spec, backend_job_id, on_progress)


class ReportingLocalBackend(LocalBackend):
    """The local backend, telling the driver when a job of the chain's last routine has ended."""

    def __init__(self, reporter: Reporter, max_parallel_jobs: int, last_routine: str = "c") -> None:
        super().__init__(max_parallel_jobs)
        self.reporter = reporter
        self.last_routine = last_routine

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress) -> JobOutcome:
        outcome = await super().wait(spec, backend_job_id, on_progress)
        if spec.routine == self.last_routine:
            self.reporter.report(spec.input_path)
        return outcome


def hrwsi_service(role: str) -> str:
    """The hrwsi service a role runs ("hrwsi-launcher-local": the launcher, with the local backend)."""
    return role.removeprefix("hrwsi-").removesuffix("-local")


async def run_hrwsi(args: argparse.Namespace, reporter: Reporter) -> None:
    from hrwsi.app import App
    from hrwsi.settings import Settings

    service = hrwsi_service(args.role)
    settings = Settings(home=Path(args.home), max_parallel_jobs=args.parallel)
    backend = None
    if args.role == "hrwsi-launcher":
        backend = ReportingDryRunBackend(reporter)
    elif args.role == "hrwsi-launcher-local":
        backend = ReportingLocalBackend(reporter, args.parallel)
    # As the CLI runs a service (`hrwsi launcher`): startup objects frozen out of the collector's sight.
    async with App(args.url, [service], settings, backend=backend, freeze_startup_objects=True) as app:
        # Ready once every listener has connected (and so caught up).
        deadline = clock() + LISTEN_TIMEOUT_S
        while not all(s.listener is not None and s.listener.reconnects for s in app.services):
            if clock() > deadline:
                raise TimeoutError(f"{service}: its listener did not connect within {LISTEN_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)
        send("ready")
        await serve_until_stopped(reporter, asyncio.ensure_future(app.wait()))
    log_steps_run()


def log_steps_run() -> None:
    """How often each step ran and its total time, into this process's log: where a figure's time went."""
    from hrwsi import metrics

    for family in metrics.REGISTRY.collect():
        if family.name != "hrwsi_step_seconds":
            continue
        runs = {(s.labels["service"], s.labels["step"]): s.value for s in family.samples if s.name.endswith("_count")}
        total = {(s.labels["service"], s.labels["step"]): s.value for s in family.samples if s.name.endswith("_sum")}
        for key in sorted(runs):
            logging.getLogger("bench").info("step %s/%s ran %d time(s), %.2f s in all", *key, runs[key], total[key])


# -- pgqueuer -------------------------------------------------------------------------------------

async def run_routine(local: LocalBackend, home: Path, step: str, job_id: int, input_path: str) -> str:
    """Run the chain's routine for one job exactly as hrwsi's local backend runs it; its product's path."""
    # An attempt directory of its own per job (the supervisor's lock and files live there), the
    # output directory inside it, as hrwsi's launcher lays them out.
    output_dir = home / "data" / "products" / step / f"job-{job_id}" / "output"
    spec = JobSpec(job_id=f"bench-{step}-{job_id}", task_id=job_id, attempt=1, routine=step, condition=step,
                   input_path=input_path, tile=None, worker=None, command=ROUTINE_COMMAND, image=None, cpu=1,
                   ram_mb=100, storage_mb=100, output_dir=str(output_dir),
                   log_path=str(home / "data" / "logs" / step / f"{job_id}.log"))

    async def no_progress(_state: str, _reason: str) -> None:
        return None

    await local.submit(spec)
    outcome = await local.wait(spec, spec.job_id, no_progress)
    if outcome.state != "processed":
        raise RuntimeError(f"routine {step} failed for job {job_id}: {outcome.message}")
    return str(output_dir / "product")


async def wait_for_pgqueuer_listener(pgq, running: asyncio.Task) -> None:
    """Until pgqueuer's own LISTEN/NOTIFY health probe comes back: its consumer is listening."""
    from pgqueuer.errors import FailingListenerError

    deadline = clock() + LISTEN_TIMEOUT_S
    while clock() < deadline and not running.done():
        try:
            await pgq.qm.listener_healthy(timeout=timedelta(seconds=0.5))
            return
        except (FailingListenerError, TimeoutError):
            continue
    if running.done():
        running.result()  # its error
    raise TimeoutError(f"pgqueuer's listener did not answer within {LISTEN_TIMEOUT_S:.0f} s")


async def run_pgqueuer(args: argparse.Namespace, reporter: Reporter) -> None:
    from pgqueuer import PgQueuer, Queries

    connection = await asyncpg.connect(args.url)
    pgq = PgQueuer.from_asyncpg_connection(connection)
    producers = None
    if args.role == "pgqueuer-chain":
        # pgqueuer's docs: a single connection for the QueueManager, a pool for producers.
        producers = await asyncpg.create_pool(args.url, min_size=1, max_size=4)
        queries = Queries.from_asyncpg_pool(producers)
        # Its handler knows its product's path: it records no products.
        local = LocalBackend(args.parallel, finds_products=False)
        for step, following in CHAIN.items():
            _register_chain_step(pgq, queries, local, Path(args.home), reporter, step, following)
    else:
        @pgq.entrypoint("bench")
        async def bench(job) -> None:
            reporter.report(job.payload.decode())

    running = asyncio.create_task(pgq.run(batch_size=args.batch_size))
    try:
        await wait_for_pgqueuer_listener(pgq, running)
        send("ready")
        await serve_until_stopped(reporter, running)
    finally:
        pgq.shutdown.set()
        await asyncio.gather(running, return_exceptions=True)
        if producers is not None:
            await producers.close()
        await connection.close()


def _register_chain_step(pgq, queries, local: LocalBackend, home: Path, reporter: Reporter, step: str,
                         following: str | None) -> None:
    @pgq.entrypoint(step)
    async def handle(job) -> None:
        product = await run_routine(local, home, step, job.id, job.payload.decode())
        if following is None:
            reporter.report(product)
        else:
            await queries.enqueue(following, product.encode())


# -- the floor ------------------------------------------------------------------------------------

async def run_floor(args: argparse.Namespace, reporter: Reporter) -> None:
    """The least a LISTEN/NOTIFY engine can do: on each notification, one INSERT reacting to every
    new event, on the listening connection itself."""
    connection = await asyncpg.connect(args.url)
    wake = asyncio.Event()
    await connection.add_listener("bench_floor", lambda *_args: wake.set())
    react = bench_query("floor_react")

    async def reactor() -> None:
        last = 0
        while True:
            await wake.wait()
            wake.clear()
            row = await connection.fetchrow(react, last, reporter.each)
            if row["n"]:
                last = row["last"]
                if row["keys"] is not None:
                    for key in row["keys"]:
                        reporter.report(key)
                else:
                    reporter.report("", row["n"])

    try:
        await serve_beside(reporter, reactor())
    finally:
        await connection.close()


async def run_floor_chain(args: argparse.Namespace, reporter: Reporter) -> None:
    """The chain on the floor: claim every new event, run the routine for each, insert the next step."""
    listening = await asyncpg.connect(args.url)
    pool = await asyncpg.create_pool(args.url, min_size=1, max_size=4)
    local = LocalBackend(args.parallel, finds_products=False)  # as pgqueuer's handler
    home = Path(args.home)
    wake = asyncio.Event()
    await listening.add_listener("bench_floor", lambda *_args: wake.set())
    claim, next_step = bench_query("floor_claim"), bench_query("floor_next_step")
    steps = list(CHAIN)
    jobs: set[asyncio.Task] = set()

    async def run_one(event_id: int, key: str, step: int) -> None:
        product = await run_routine(local, home, steps[step - 1], event_id, key)
        if step == len(steps):
            reporter.report(product)
        else:
            await pool.execute(next_step, product, step + 1)

    async def claimer() -> None:
        while True:
            await wake.wait()
            wake.clear()
            for row in await pool.fetch(claim):
                job = asyncio.create_task(run_one(row["id"], row["key"], row["step"]))
                jobs.add(job)
                job.add_done_callback(jobs.discard)

    try:
        await serve_beside(reporter, claimer())
    finally:
        for job in list(jobs):
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await pool.close()
        await listening.close()


ROLES = {
    "hrwsi-orchestrator": run_hrwsi, "hrwsi-harvester": run_hrwsi, "hrwsi-launcher": run_hrwsi,
    "hrwsi-launcher-local": run_hrwsi, "pgqueuer": run_pgqueuer, "pgqueuer-chain": run_pgqueuer,
    "floor": run_floor, "floor-chain": run_floor_chain,
}


def event_loop_runner(role: str):
    """Each system's processes on the event loop its users run them on. pgqueuer's consumer: `pgq
    run` runs consumers on uvloop when it is installed (pgqueuer/adapters/cli/cli.py, asyncio_run).
    hrwsi's services: as `hrwsi orchestrator|harvester|launcher` choose it (hrwsi.event_loop: uvloop,
    except for a launcher with the local backend). Not in the chain's consumers of pgqueuer and the
    floor: there every system runs the same subprocesses the same way (hrwsi's local backend, on
    asyncio), and uvloop starts subprocesses 3-6x slower than asyncio here (300 spawns, 16 at once:
    2.9-3.2 s against 0.5-1.1 s), which would measure the event loop rather than the engine."""
    if role.startswith("hrwsi-"):
        from hrwsi import event_loop

        backend = "local" if role == "hrwsi-launcher-local" else "dry-run"  # (as run_hrwsi gives them)
        return event_loop.runner(event_loop.choose("auto", [hrwsi_service(role)], backend))
    if role == "pgqueuer":
        try:
            import uvloop

            return uvloop.run
        except ImportError:  # pragma: no cover - uvloop is a dependency of pgqueuer
            pass
    return asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--url", required=True)
    parser.add_argument("--home", required=True, help="hrwsi's home; where routines write logs and products")
    parser.add_argument("--parallel", type=int, default=16, help="subprocesses at once (local backend)")
    parser.add_argument("--batch-size", type=int, default=10, help="pgqueuer's dequeue batch size")
    args = parser.parse_args()
    # Every role logs as hrwsi's services do (hrwsi.service_logging: UTC times, messages kept to one line).
    service_logging.configure(os.environ.get("HRWSI_LOG_LEVEL", "INFO").upper(), "text")
    reporter = Reporter()
    try:
        event_loop_runner(args.role)(ROLES[args.role](args, reporter))
    finally:
        send("rss", *memory_mb())
        send("bye")


if __name__ == "__main__":
    main()
