"""Fault injection: run the real services as processes, break things at random moments, and count
what went wrong, from the database and from an execution ledger the routines write themselves.

Each run uses a fresh database on a private embedded PostgreSQL server (so that it can be stopped),
two replicas of every service (`hrwsi harvester|orchestrator|launcher` processes) and a two-step
chain (RAW -> MID -> OUT, so the harvester's chaining is exercised). Runs alternate between the
local backend and the Nomad backend against the Nomad API emulator (the project's one test double,
run in this process so that it can be broken on purpose). Inputs arrive in batches (at least ten, two
per fault), one before each fault, one more when the engine fell idle before the fault came, and
the rest afterwards; faults (`hrwsi.testing.chaos_faults`) come one after another,
0.5 to 4 s apart, each while jobs run: kill -9, SIGTERM, SIGSTOP/SIGCONT of a launcher or an orchestrator for longer
than the lease, kill -9 of routines mid-work, killed listener and pool connections, PostgreSQL
restarts and immediate shutdowns; on Nomad runs also HTTP 500 and 429, requests answered after the
client's timeout yet carried out, a node going down, and the API restarting with a fresh state (its
index back near zero).

The figures that must all be 0 (`RunFigures.failed`): inputs lost, duplicate jobs, Nomad jobs that
ran twice, tasks not final, attempts executed more than once, executions after their job was
recorded final, finished work redone (`chaos_ledger`), chains not finished, routines held by faults
(the chaos routine never fails by itself, so any hold is a fault's doing) and routine failures
not caused by the routine (failed attempts the harness did not kill). Also measured: the time to
recover after each fault (until the next job is processed), per kind.

A run ends when every task is final, when nothing has become final for `stall_s` (a stall: the
run fails), or at `timeout_s`. A failed run keeps its database and logs and writes `diagnosis.txt`
beside services.log: the tasks and jobs left, their owners' leases, what the output directories
and the Nomad emulator hold for them, and the faults with their times.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hrwsi import migrations
from hrwsi.configuration import load
from hrwsi.database import create_database, drop_database, start_embedded, stop_embedded
from hrwsi.testing import chaos_faults, chaos_ledger
from hrwsi.testing.chaos_faults import FAULTS, NOMAD_FAULTS, EmulatedNomad, ServiceProcesses, Target

logger = logging.getLogger(__name__)

BACKENDS = ("local", "nomad-emulator")
FLAVOUR = {"name": "f", "cpu": 8, "ram_mb": 32000, "disk_mb": 100000}
PROCESSED = "SELECT count(*) FROM hrwsi.job WHERE state = 'processed'"
# The figures that must be 0.
ZERO_FIGURES = ("inputs_lost", "duplicate_jobs", "duplicate_nomad_runs", "tasks_not_final", "attempts_run_twice",
                "executions_after_final", "finished_work_redone", "chains_not_finished", "routines_held",
                "failures_not_of_the_routine")


def configuration(ledger: Path) -> dict:
    def routine(name: str, consumes: str, makes: str) -> dict:
        return {"name": name, "cpu": 1, "ram_mb": 500, "storage_mb": 100, "expected_duration_s": 1,
                "command": ["{python}", "-m", chaos_faults.ROUTINE_MODULE, makes], "input_product_type": consumes,
                "output_product_type": makes, "max_attempts": 5, "env": {"HRWSI_CHAOS_LEDGER": str(ledger)}}

    return {
        "flavour": [FLAVOUR],
        "worker": [{"prefix": "w", "count": 4, "flavour": "f"}],
        "budget": {"cpu_max": 32, "ram_max_mb": 128000, "storage_max_mb": 400000, "vm_max": 4},
        "routine": [routine("first", "RAW", "MID"), routine("second", "MID", "OUT")],
        "condition": [{"name": "raw", "routine": "first"}, {"name": "mid", "routine": "second"}],
    }


@dataclass
class RunFigures:
    inputs: int
    backend: str = "local"
    tasks: int = 0
    faults: Counter = field(default_factory=Counter)
    recovery_s: dict[str, list[float]] = field(default_factory=dict)  # per fault kind
    inputs_lost: int = 0
    duplicate_jobs: int = 0
    duplicate_nomad_runs: int = 0
    tasks_not_final: int = 0
    attempts_run_twice: int = 0
    executions_after_final: int = 0
    finished_work_redone: int = 0
    chains_not_finished: int = 0
    routines_held: int = 0
    failures_not_of_the_routine: int = 0
    executions: int = 0
    routines_killed: int = 0
    # Finished work a fault destroyed (its allocation lost with its node or Nomad's state, its routine
    # killed) that ran again: the fault's doing, reported apart from finished_work_redone.
    redone_after_a_fault_destroyed_it: int = 0
    # Attempts a restarted Nomad client ran again from the start (it could not reattach): Nomad's doing.
    attempts_rerun_by_nomad: int = 0
    lost_attempts: Counter = field(default_factory=Counter)  # by fault
    # Nomad runs: times an event stream of the emulator fell behind its buffer and missed frames.
    nomad_stream_frames_missed: int = 0
    redone_as: Counter = field(default_factory=Counter)
    ledger_examples: list[str] = field(default_factory=list)
    ended: str = "finished"  # finished | stalled | timed out
    duration_s: float = 0.0
    kept: str | None = None  # where a failed run's database name, logs and diagnosis are

    @property
    def failed(self) -> bool:
        return any(getattr(self, name) for name in ZERO_FIGURES)

    def line(self) -> str:
        zeros = ", ".join(f"{name} {getattr(self, name)}" for name in ZERO_FIGURES)
        return (f"{self.backend}: {self.tasks} tasks, {self.executions} executions, faults {dict(self.faults)}; "
                f"{zeros}; lost attempts {dict(self.lost_attempts)}; {self.ended} in {self.duration_s:.0f} s"
                + (f"; Nomad event streams that missed frames {self.nomad_stream_frames_missed}"
                   if self.backend != "local" else ""))


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


@dataclass
class CampaignReport:
    runs: list[RunFigures] = field(default_factory=list)

    def summary(self) -> dict:
        faults: Counter = Counter()
        lost: Counter = Counter()
        recovery: dict[str, list[float]] = {}
        for run in self.runs:
            faults.update(run.faults)
            lost.update(run.lost_attempts)
            for kind, values in run.recovery_s.items():
                recovery.setdefault(kind, []).extend(values)
        every = [v for values in recovery.values() for v in values]
        return {
            "runs": len(self.runs),
            "runs_failed": sum(1 for r in self.runs if r.failed),
            "runs_by_backend": dict(Counter(r.backend for r in self.runs)),
            "inputs": sum(r.inputs for r in self.runs),
            "tasks": sum(r.tasks for r in self.runs),
            "executions": sum(r.executions for r in self.runs),
            "faults_injected": sum(faults.values()),
            "faults_by_kind": dict(faults),
            **{name: sum(getattr(r, name) for r in self.runs) for name in ZERO_FIGURES},
            "tasks_not_final_by_backend": {b: sum(r.tasks_not_final for r in self.runs if r.backend == b)
                                           for b in sorted({r.backend for r in self.runs})},
            "routines_killed_on_purpose": sum(r.routines_killed for r in self.runs),
            "redone_after_a_fault_destroyed_it": sum(r.redone_after_a_fault_destroyed_it for r in self.runs),
            "attempts_rerun_by_nomad": sum(r.attempts_rerun_by_nomad for r in self.runs),
            "lost_attempts_by_fault": dict(lost),
            "nomad_stream_frames_missed": sum(r.nomad_stream_frames_missed for r in self.runs),
            "recovery_s_median": _median(every),
            "recovery_s_max": max(every) if every else None,
            "recovery_s_by_fault": {kind: {"n": len(v), "median": _median(v), "max": max(v)}
                                    for kind, v in sorted(recovery.items()) if v},
            "duration_s": round(sum(r.duration_s for r in self.runs), 1),
        }


class Arrivals:
    """The run's inputs, inserted in batches at random moments: at least BATCHES of them, and two per
    fault (one before it, one more when the engine is idle before it comes) so every fault meets work."""

    BATCHES = 10

    def __init__(self, url: str, inputs: int, rng: random.Random, faults: int = 0):
        self.url = url
        self.rng = rng
        batches = max(self.BATCHES, 2 * faults + 1)
        self.sizes = [inputs // batches + (1 if b < inputs % batches else 0) for b in range(batches)]
        self.inserted = 0

    @property
    def done(self) -> bool:
        return self.inserted == len(self.sizes)

    def next_batch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                            SELECT 'raw', %s || g FROM generate_series(1, %s::int) g""",
                         (f"/chaos/{self.inserted}/", self.sizes[self.inserted]))
        self.inserted += 1

    def for_a_while(self, seconds: float) -> None:
        """Insert the next batch (if any is left), then let `seconds` pass: inputs keep arriving while
        the faults come."""
        if not self.done:
            self.next_batch()
        time.sleep(seconds)

    def all_of_them(self) -> None:
        while not self.done:
            self.next_batch()
            time.sleep(self.rng.uniform(0.05, 0.4))


class Probe:
    """The harness's one connection for watching a run (a connection per look would cost PostgreSQL a
    process each time, and the watched services the CPU); reconnects while PostgreSQL restarts."""

    def __init__(self, url: str):
        self.url = url
        self.conn: psycopg.Connection | None = None

    def value(self, text: str, params: tuple = ()):
        for _ in range(600):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                return self.conn.execute(text, params).fetchone()[0]
            except psycopg.OperationalError:
                self.close()
                time.sleep(0.1)
        raise RuntimeError("the database did not come back")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    def jobs_in_flight(self, arrivals: Arrivals, patience_s: float = 30.0) -> bool:
        """Wait (up to patience_s) until a job runs in its backend; False when all work is done (every
        input arrived and every task is final). When every task is final but inputs are still to come,
        the next batch arrives now: a fault is meant to hit work in flight, not an idle engine."""
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            active, left = self.value("""SELECT ARRAY[
                (SELECT count(*) FROM hrwsi.job WHERE state = 'running')::int,
                (SELECT count(*) FROM hrwsi.processing_task WHERE state NOT IN ('processed', 'terminated', 'cancelled'))::int]""")
            if active:
                return True
            if not left:
                if arrivals.done:
                    return False
                arrivals.next_batch()
            time.sleep(0.05)
        return True

    def recovery(self, before: int, since: float) -> float | None:
        """Seconds until the next job is processed (None if no work was left to show it)."""
        deadline = since + 120
        while time.monotonic() < deadline:
            processed, left = self.value("""
                SELECT ARRAY[(SELECT count(*) FROM hrwsi.job WHERE state = 'processed')::int,
                             (SELECT count(*) FROM hrwsi.processing_task
                              WHERE state NOT IN ('processed', 'terminated', 'cancelled'))::int]""")
            if processed > before:
                return round(time.monotonic() - since, 3)
            if not left:
                return None
            time.sleep(0.05)
        return None

    def wait_for_the_end(self, timeout_s: float, stall_s: float) -> str:
        """Until every task is final ("finished"), nothing became final for stall_s ("stalled"), or timeout_s."""
        deadline = time.monotonic() + timeout_s
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done, final = self.value("""
                SELECT ARRAY[(count(*) = 2 * (SELECT count(*) FROM hrwsi.input WHERE source = 'sql')
                              AND bool_and(state IN ('processed', 'terminated', 'cancelled')))::int,
                             count(*) FILTER (WHERE state IN ('processed', 'terminated', 'cancelled'))::int]
                FROM hrwsi.processing_task""")
            if done:
                return "finished"
            if final != last_count:
                last_count, last_change = final, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                return f"stalled (nothing became final for {stall_s:.0f} s)"
            time.sleep(0.25)
        return f"timed out after {timeout_s:.0f} s"


def one_run(server: str, pgdata: Path, workdir: Path, inputs: int, rng: random.Random, faults_per_run: int,
            timeout_s: float, backend: str = "local", faults: tuple[str, ...] | None = None,
            stall_s: float = 120.0) -> RunFigures:
    name = f"hrwsi_chaos_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    home = workdir / name
    home.mkdir(parents=True)
    ledger = home / "ledger.jsonl"
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
        conn.autocommit = True
        load(conn, configuration(ledger))
        workers = [row[0] for row in conn.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    figures = RunFigures(inputs=inputs, backend=backend)
    if faults is None:
        faults = FAULTS + (NOMAD_FAULTS if backend == "nomad-emulator" else ())
    started = time.monotonic()
    nomad = EmulatedNomad(workers, FLAVOUR, home / "nomad") if backend == "nomad-emulator" else None
    services = ServiceProcesses(url, home, nomad=nomad)
    target = Target(url, pgdata, services, ledger, nomad)
    # As many different kinds as there are faults in the run, then repeats.
    kinds = rng.sample(faults, len(faults))
    planned = kinds[:faults_per_run] + [rng.choice(faults) for _ in range(faults_per_run - len(kinds))]
    events: list[str] = []
    probe = Probe(url)
    arrivals = Arrivals(url, inputs, rng, len(planned))
    retries = 3  # faults that found nothing to break, tried again after the others
    try:
        for fault in planned:
            # Inputs keep arriving; the fault comes a random moment later, while jobs are in flight.
            arrivals.for_a_while(rng.uniform(0.5, 4.0))
            if not probe.jobs_in_flight(arrivals):
                break  # all done: nothing left to break
            before = probe.value(PROCESSED)
            services.note(f"injecting {fault}")
            try:
                what = chaos_faults.inject(fault, target, rng)
            except chaos_faults.NotInjected as nothing:
                services.note(f"{fault}: {nothing}")
                events.append(f"{time.strftime('%H:%M:%S')} {fault}: {nothing}")
                if retries:
                    retries -= 1
                    planned.append(fault)  # iterating over a list sees what is appended to it
                continue
            services.note(f"{fault}: {what}")
            events.append(f"{time.strftime('%H:%M:%S')} {fault}: {what}")
            figures.faults[fault] += 1
            recovered = probe.recovery(before, time.monotonic())
            if recovered is not None:
                figures.recovery_s.setdefault(fault, []).append(recovered)
        arrivals.all_of_them()
        figures.ended = probe.wait_for_the_end(timeout_s, stall_s)
        services.note(f"run {figures.ended}")
    finally:
        probe.close()
        services.stop()
        if nomad is not None:
            # The same attempt's Nomad job run to success twice (e.g. re-registered after its purge).
            runs = nomad.call(lambda: dict(nomad.emulator.cluster.completed_runs))
            figures.duplicate_nomad_runs = sum(1 for count in runs.values() if count > 1)
            figures.nomad_stream_frames_missed = nomad.call(lambda: nomad.emulator.cluster.frames_missed_by_subscribers)
            nomad_view = nomad.call(_nomad_view, nomad)
            nomad.close()
        else:
            nomad_view = {}
    figures.duration_s = time.monotonic() - started
    figures.routines_killed = len(target.killed_routines)
    with psycopg.connect(url, autocommit=True) as conn:
        _database_figures(conn, figures, target.killed_routines)
        _ledger_figures(conn, figures, ledger, target)
        if figures.failed:  # a failed run keeps its database and logs, and says why
            (home / "diagnosis.txt").write_text(diagnose(conn, figures, events, nomad_view))
    if figures.failed:
        figures.kept = f"database {name}, {home}"
    else:
        drop_database(server, name)
        shutil.rmtree(home, ignore_errors=True)
    return figures


def _database_figures(conn: psycopg.Connection, figures: RunFigures, killed: set[tuple[int, int]]) -> None:
    one = lambda sql, params=(): conn.execute(sql, params).fetchone()[0]  # noqa: E731
    figures.tasks = one("SELECT count(*) FROM hrwsi.processing_task")
    # Lost: an input that never got its task, or a processed first step whose product never
    # became an input of the second.
    figures.inputs_lost = one("""
        SELECT (SELECT count(*) FROM hrwsi.input i WHERE NOT EXISTS
                    (SELECT 1 FROM hrwsi.processing_task t WHERE t.input_id = i.id))
             + (SELECT count(*) FROM hrwsi.product p WHERE p.product_type = 'MID' AND NOT EXISTS
                    (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id))""")
    figures.duplicate_jobs = one("""SELECT count(*) FROM (SELECT task_id FROM hrwsi.job WHERE state = 'processed'
                                    GROUP BY task_id HAVING count(*) > 1) d""")
    figures.tasks_not_final = one("""SELECT count(*) FROM hrwsi.processing_task
                                     WHERE state NOT IN ('processed', 'terminated', 'cancelled')""")
    # A chain is finished when its RAW input led to an OUT product.
    figures.chains_not_finished = one("""
        SELECT count(*) FROM hrwsi.input i WHERE i.source = 'sql' AND NOT EXISTS (
            SELECT 1 FROM hrwsi.processing_task t1 JOIN hrwsi.product p1 ON p1.task_id = t1.id
            JOIN hrwsi.input i2 ON i2.product_id = p1.id JOIN hrwsi.processing_task t2 ON t2.input_id = i2.id
            JOIN hrwsi.product p2 ON p2.task_id = t2.id WHERE t1.input_id = i.id)""")
    figures.routines_held = one("SELECT count(*) FROM hrwsi.processing_routine WHERE on_hold")
    failures = conn.execute("""SELECT task_id, attempt FROM hrwsi.job
                               WHERE state IN ('internal_error', 'external_error') AND fault IS NULL""").fetchall()
    figures.failures_not_of_the_routine = sum(1 for row in failures if tuple(row) not in killed)
    figures.lost_attempts = Counter(dict(conn.execute(
        "SELECT coalesce(fault, '?'), count(*) FROM hrwsi.job WHERE state = 'lost' GROUP BY 1").fetchall()))


def _ledger_figures(conn: psycopg.Connection, figures: RunFigures, ledger: Path, target: Target) -> None:
    jobs = {(task, attempt): (state, fault, final_at if final_at is not None else math.inf)
            for task, attempt, state, fault, final_at in conn.execute(
                """SELECT task_id, attempt, state, fault,
                          CASE WHEN state IN ('processed', 'internal_error', 'external_error', 'lost', 'cancelled')
                               THEN extract(epoch FROM updated_at)::float8 END
                   FROM hrwsi.job""")}
    found = chaos_ledger.ledger_figures(chaos_ledger.read_ledger(ledger), jobs, target.destroyed,
                                        target.rerun_by_nomad)
    figures.executions = found.executions
    figures.attempts_run_twice = found.attempts_run_twice
    figures.executions_after_final = found.executions_after_final
    figures.finished_work_redone = found.finished_work_redone
    figures.redone_after_a_fault_destroyed_it = found.redone_after_a_fault_destroyed_it
    figures.attempts_rerun_by_nomad = found.attempts_rerun_by_nomad
    figures.redone_as = found.redone_as
    figures.ledger_examples = found.examples[:20]


def _nomad_view(nomad: EmulatedNomad) -> dict:
    """What the emulator holds about each job at the end of the run: {job ID: (status, [alloc statuses])}."""
    cluster = nomad.emulator.cluster
    view = {}
    for (_, job_id), job in cluster.jobs.items():
        allocs = [a["ClientStatus"] for a in cluster.allocs.values() if a["JobID"] == job_id]
        view[job_id] = (cluster.job_status(job), allocs)
    return view


def diagnose(conn: psycopg.Connection, figures: RunFigures, events: list[str], nomad_view: dict) -> str:
    """Why a run failed, in words: the figures, the faults with their times, the tasks and jobs left
    and what is known of each (owner's lease, products on disk, the Nomad emulator's view)."""
    lines = [f"run: {figures.line()}", "", "faults:", *(f"  {e}" for e in events), "",
             "tasks by routine and state:"]
    for routine, state, count in conn.execute("""SELECT routine, state, count(*) FROM hrwsi.processing_task
                                                 GROUP BY 1, 2 ORDER BY 1, 2"""):
        lines.append(f"  {routine} {state}: {count}")
    last = conn.execute("""SELECT max(updated_at), now() - max(updated_at) FROM hrwsi.job
                           WHERE state IN ('processed', 'internal_error', 'external_error', 'lost', 'cancelled')
                        """).fetchone()
    lines.append(f"last job outcome recorded at {last[0]} ({last[1]} before the end of the run)")
    lines += ["", "jobs not final (at most 30):"]
    rows = conn.execute("""
        SELECT j.backend_job_id, j.state, j.owner, j.updated_at, j.output_dir,
               (SELECT now() - s.heartbeat_at FROM hrwsi.service_instance s WHERE s.id = j.owner)
        FROM hrwsi.job j WHERE j.state IN ('submitted', 'queued', 'running') ORDER BY j.id LIMIT 30""").fetchall()
    for job_id, state, owner, updated, output_dir, lease_age in rows:
        products = sorted(p.name for p in Path(output_dir).glob("*")) if output_dir else []
        lease = f"lease {lease_age} old" if lease_age is not None else "owner unregistered"
        nomad = f"; Nomad: {nomad_view.get(job_id, 'unknown to Nomad')}" if nomad_view else ""
        lines.append(f"  {job_id} {state} since {updated}, owner {owner} ({lease}); output {products or 'empty'}"
                     f"{nomad}")
    lines += ["", "tasks not final without an active job (at most 10):"]
    for row in conn.execute("""
            SELECT t.id, t.routine, t.state, t.attempts, t.worker, t.planned_start, t.not_before, t.state_reason
            FROM hrwsi.processing_task t WHERE t.state NOT IN ('processed', 'terminated', 'cancelled') AND NOT EXISTS (
                SELECT 1 FROM hrwsi.job j WHERE j.task_id = t.id AND j.state IN ('submitted', 'queued', 'running'))
            ORDER BY t.id LIMIT 10"""):
        lines.append("  task {} ({}) {}: {} attempt(s), worker {}, planned {}, not before {}; {}".format(*row))
    lines += ["", "routines on hold:"]
    for name, reason in conn.execute("SELECT name, hold_reason FROM hrwsi.processing_routine WHERE on_hold"):
        lines.append(f"  {name}: {reason}")
    lines += ["", "from the execution ledger:", *(f"  {e}" for e in figures.ledger_examples)]
    return "\n".join(lines) + "\n"


def run_campaign(runs: int = 20, inputs: int = 1000, *, seed: int = 1, faults_per_run: int = 6,
                 timeout_s: float = 1800.0, stall_s: float = 120.0, workdir: Path | None = None,
                 backends: tuple[str, ...] = BACKENDS, faults: tuple[str, ...] | None = None,
                 progress=print) -> CampaignReport:
    """`runs` runs, the backends taking turns; faults drawn from `faults` (default: all that apply)."""
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="hrwsi-chaos-", dir=workdir or "/tmp"))
    pgdata = base / "pgdata"
    server = start_embedded(pgdata, "postgres", keep_running=True)
    report = CampaignReport()
    completed = False
    try:
        for index in range(runs):
            backend = backends[index % len(backends)]
            figures = one_run(server, pgdata, base, inputs, rng, faults_per_run, timeout_s, backend,
                              faults, stall_s)
            report.runs.append(figures)
            progress(f"run {index + 1}/{runs} {figures.line()}" + (f"; kept: {figures.kept}" if figures.kept else ""))
        completed = True
    finally:
        stop_embedded(pgdata)
        if not completed or any(run.failed for run in report.runs):
            progress(f"the failed runs' databases (server data: {pgdata}), logs and diagnosis.txt are kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return report
