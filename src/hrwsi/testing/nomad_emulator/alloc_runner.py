"""The client side of the emulator (test double): one allocation's tasks run as real processes.

Each task runs as a subprocess (raw_exec, exec; docker only when `config.command` is given), with
the task's Env, stdout/stderr under the work directory, Nomad's task events (Received, Task Setup,
Started, Terminated, Restarting, Not Restarting, Killing, Killed, Driver Failure, Failed Restoring
Task) and its restart policy. The allocation's status is reported to the cluster through its
transactions.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrwsi.testing.nomad_emulator.model import (
    DEPRECATED_EVENT_FIELDS,
    NS,
    ZERO_TIME,
    EmulatedNode,
    format_duration,
    node_target,
    now_ns,
    rfc3339,
    task_event,
)
from hrwsi.testing.nomad_emulator.templates import render_templates

if TYPE_CHECKING:
    from hrwsi.testing.nomad_emulator.cluster import Cluster

logger = logging.getLogger("hrwsi.testing.nomad_emulator")

MAX_TASK_EVENTS = 10  # client/allocrunner/taskrunner/task_runner.go defaultMaxEvents

# Nomad's client env.denylist default, plus the emulator's own token: never passed to tasks.
ENV_DENYLIST = {"CONSUL_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN", "NOMAD_LICENSE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "NOMAD_TOKEN"}



def _default_signal_handling() -> None:
    """(In the task's process, before its command runs.) A task starts with every signal deliverable and
    handled by default, as a Nomad client run by an init system starts it: a test runner's SIGINT,
    ignored or blocked where the emulator runs in-process (inherited by whatever it starts: a
    background job of a non-interactive shell, a thread that blocked it), made the client's stop
    signal (SIGINT, Nomad's default kill_signal) do nothing, and every stop waited the whole
    KillTimeout, 30 s, in the full suite only (ci56, ci57 and ci64: seven contract tests)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)

class AllocRunner:
    """The client side of one allocation: runs its tasks as real processes and reports their events."""

    def __init__(self, cluster: Cluster, alloc: dict, *, restored: bool = False):
        self.cluster = cluster
        self.alloc = alloc
        # The runner its client restored from its state after the node was away with its processes killed (a
        # reboot): the tasks cannot be reattached and run again from the start (see run).
        self.restored = restored
        self.killed = asyncio.Event()
        self.lost = False
        self.abandoned = False
        # Its node lost touch with the servers: what it does is reported when the node is back.
        self.cut_off = False
        self._unsent: list = []  # the allocation's updates since
        self._status_before_cut_off = "pending"
        self._stop_handle: asyncio.TimerHandle | None = None
        self.finished = False
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._restore_failed: set[str] = set()  # tasks whose client restarted and lost their process

    def kill(self) -> None:
        self.killed.set()

    def lose(self) -> None:
        """The node went down: processes die with it and nothing more is reported."""
        self.lost = True
        if self._stop_handle is not None:
            self._stop_handle.cancel()
        self._signal_all(signal.SIGKILL)
        self.killed.set()

    def cut_off_from_servers(self, status: str, stop_after_s: float | None) -> None:
        """The node is cut off from the servers but alive: its processes run on, their updates kept for
        the servers, until the client stops the allocation `stop_after_s` later (the group's
        disconnect.stop_on_client_after; client/heartbeatstop.go kills its tasks), or for as long as
        the node stays away when the group has none. `status`: the allocation's as the client knows it."""
        if not self.cut_off:
            self.cut_off, self._status_before_cut_off = True, status
        if stop_after_s is not None and self._stop_handle is None:
            self._stop_handle = asyncio.get_running_loop().call_later(stop_after_s, self.kill)

    def reconnect(self) -> None:
        """The node is back: the client sends what happened meanwhile (the allocation's real state, not
        lost), and stops the allocation if the servers want it stopped."""
        if not self.cut_off:
            return
        self.cut_off = False
        if self._stop_handle is not None:
            self._stop_handle.cancel()
            self._stop_handle = None
        unsent, self._unsent = self._unsent, []

        def replay(alloc: dict) -> None:
            alloc["ClientStatus"] = self._status_before_cut_off
            alloc["ClientDescription"] = "Tasks are running" if self._status_before_cut_off == "running" else ""
            for mutate in unsent:
                mutate(alloc)
        # The client sends its copy of the allocation (whose client status it is the authority on,
        # nomad/state/state_store.go nestedUpdateAllocFromClient) when it has updates queued from the time it
        # was away, or to reconnect one the servers marked unknown and did not stop (client/client.go
        # updateAlloc, allocrunner Reconnect). One the servers marked lost is server-terminal: nothing queued,
        # the client only stops it (below), and it goes from lost to the end its tasks report, never running.
        if unsent or self.alloc["ClientStatus"] == "unknown":
            self._update(replay)
        if self.finished:  # (a runner that finished before the cut is gone: it ended meanwhile)
            self.cluster.alloc_terminal(self.alloc)
        elif self.alloc["DesiredStatus"] == "stop":
            self.kill()

    def fail_restore(self) -> bool:
        """Its client restarted and could not reattach to the running tasks (their processes are gone:
        an executor that died, a reboot the servers did not notice). Each is set back to pending with
        a Failed Restoring Task event and, as the servers still want it, runs again from the start
        (client/allocrunner/taskrunner/task_runner.go: Restore, restoreHandle's DestroyTask,
        waitOnServers; the new run is not a restart of the restart policy)."""
        running = [name for name, process in self.processes.items() if process.returncode is None]
        self._restore_failed.update(running)
        self._signal_all(signal.SIGKILL)
        return bool(running)  # (whether a task will run again)

    def abandon(self) -> None:
        """The emulator stops: kill the processes, report nothing (as a `nomad agent -dev` does on exit:
        client/client.go Shutdown destroys every allocation runner in dev mode)."""
        self.abandoned = True
        self._signal_all(signal.SIGKILL)
        self.killed.set()

    @staticmethod
    def _kill_group(process: asyncio.subprocess.Process) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _signal_all(self, sig: int) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass

    @property
    def silent(self) -> bool:
        return self.lost or self.abandoned or self.cluster._closing

    def _update(self, mutate) -> None:
        if self.silent:
            return
        if self.cut_off:
            self._unsent.append(mutate)
            return
        with self.cluster.txn("AllocationUpdated") as t:
            mutate(self.alloc)
            t.put("allocs", self.alloc)

    def _task_event(self, task: str, event: dict, **state: Any) -> None:
        if not self.cluster.deprecated_event_fields:  # a Nomad that dropped them: Details only
            event = {k: v for k, v in event.items() if k not in DEPRECATED_EVENT_FIELDS}

        def mutate(alloc: dict) -> None:
            task_state = alloc["TaskStates"][task]
            # client/allocrunner/taskrunner/task_runner.go appendTaskEvent: at most defaultMaxEvents (10),
            # the oldest dropped first (the first ones, Received and Task Setup, are gone from a long story)
            task_state["Events"] = [*task_state["Events"], event][-MAX_TASK_EVENTS:]
            task_state.update(state)
            if state.get("State") == "running" and alloc["ClientStatus"] == "pending":
                alloc["ClientStatus"] = "running"
                alloc["ClientDescription"] = "Tasks are running"
        self._update(mutate)

    async def run(self) -> None:
        job, alloc = self.alloc["Job"], self.alloc
        group = next(g for g in job["TaskGroups"] if g["Name"] == alloc["TaskGroup"])

        def received(a: dict) -> None:
            a["TaskStates"] = {t["Name"]: {"State": "pending", "Failed": False, "Restarts": 0, "LastRestart": ZERO_TIME,
                                           "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME, "TaskHandle": None,
                                           "Events": [task_event("Received", "Task received by client")]}
                               for t in group["Tasks"]}
        if self.restored:
            # Its node back after a reboot, the client restores the allocation from its state: no task handle
            # can be recovered, so each task is set back to pending with Failed Restoring Task and waits for the
            # servers; as they still want it, it runs again from the start in the same allocation
            # (client/allocrunner/taskrunner/task_runner.go Restore, waitOnServers; not a restart of the restart
            # policy). The client's status is then its own: pending, then running (nomad/state/state_store.go
            # nestedUpdateAllocFromClient), and the servers reconnect it (scheduler/reconciler/filters.go).
            def back(a: dict) -> None:
                a["ClientStatus"], a["ClientDescription"] = "pending", "No tasks have started"
            self._update(back)
            for task in group["Tasks"]:
                self._task_event(task["Name"], task_event(
                    "Failed Restoring Task", "failed to restore task; will not run until server is contacted"),
                    State="pending")
        else:
            self._update(received)
        await asyncio.sleep(0)
        results = await asyncio.gather(*(self._run_task(job, group, task) for task in group["Tasks"]),
                                       return_exceptions=True)
        if self.silent:
            return
        outcomes = [r if isinstance(r, str) else "failed" for r in results]
        for r in results:
            if isinstance(r, BaseException):
                logger.error("emulator (test double): task runner crashed: %r", r)

        def finish(a: dict) -> None:
            if "failed" in outcomes and not self.killed.is_set():
                a["ClientStatus"], a["ClientDescription"] = "failed", "Failed tasks"
            else:
                a["ClientStatus"], a["ClientDescription"] = "complete", "All tasks have completed"
                if not self.killed.is_set():
                    self.cluster.completed_runs[a["JobID"]] += 1
        self._update(finish)
        self.finished = True
        if not self.cut_off:  # (else reported when the node is back: reconnect)
            self.cluster.alloc_terminal(self.alloc)

    def _environment(self, job: dict, group: dict, task: dict, task_dir: Path, alloc_dir: Path) -> dict[str, str]:
        alloc = self.alloc
        node = self.cluster.nodes.get(alloc["NodeID"], {})
        env = {k: v for k, v in os.environ.items() if k not in ENV_DENYLIST}
        nomad = {
            "NOMAD_ALLOC_DIR": str(alloc_dir), "NOMAD_TASK_DIR": str(task_dir / "local"),
            "NOMAD_SECRETS_DIR": str(task_dir / "secrets"), "NOMAD_ALLOC_ID": alloc["ID"],
            "NOMAD_SHORT_ALLOC_ID": alloc["ID"][:8], "NOMAD_ALLOC_NAME": alloc["Name"],
            "NOMAD_ALLOC_INDEX": str(self.cluster._name_index(alloc)), "NOMAD_CPU_LIMIT": str(task["Resources"]["CPU"]),
            "NOMAD_MEMORY_LIMIT": str(task["Resources"]["MemoryMB"]), "NOMAD_DC": node.get("Datacenter", ""),
            "NOMAD_GROUP_NAME": group["Name"], "NOMAD_JOB_ID": job["ID"], "NOMAD_JOB_NAME": job["Name"],
            "NOMAD_JOB_PARENT_ID": job.get("ParentID") or "", "NOMAD_NAMESPACE": job["Namespace"],
            "NOMAD_REGION": job["Region"], "NOMAD_TASK_NAME": task["Name"],
        }
        meta = {**(job.get("Meta") or {}), **(group.get("Meta") or {}), **(task.get("Meta") or {})}
        for k, v in meta.items():
            nomad[f"NOMAD_META_{k}"] = str(v)
            nomad[f"NOMAD_META_{k.upper()}"] = str(v)
        env.update(nomad)
        for k, v in (task.get("Env") or {}).items():
            env[k] = self._interpolate(str(v), nomad, node, meta)
        return env

    @staticmethod
    def _interpolate(text: str, nomad: dict, node: dict, meta: dict) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in nomad:
                return nomad[name]
            if name.startswith("meta.") and name[5:] in meta:
                return str(meta[name[5:]])
            if node and (name.startswith("node.") or name.startswith("attr.")):
                value, found = node_target("${" + name + "}", node)
                if found and value is not None:
                    return value
            return match.group(0)
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def _command(self, task: dict, nomad: dict, node: dict, meta: dict) -> tuple[list[str] | None, str, str]:
        """(argv, "", "") or (None, the event type that reports why the task cannot start, its message)."""
        config = task.get("Config") or {}
        driver = task["Driver"]
        if driver not in ("raw_exec", "exec", "docker"):
            return None, "Driver Failure", f"emulator (test double): driver {driver!r} is not emulated"
        required = "image" if driver == "docker" else "command"
        if not config.get(required):
            # The task runner validates the driver config first (client/allocrunner/taskrunner/task_runner.go).
            return None, "Failed Validation", (f'failed to parse config: Missing required argument: The argument '
                                               f'"{required}" is required, but no definition was found.')
        args = config.get("args") or []
        if not isinstance(args, list):
            return None, "Failed Validation", 'failed to parse config: Incorrect attribute value type: "args"'
        if driver == "docker":
            return self._docker_command(config, nomad, node, meta)
        argv = [self._interpolate(str(a), nomad, node, meta) for a in [config["command"], *args]]
        if driver == "exec" and not self._in_chroot(argv[0], node):
            # exec runs the task in a chroot of the client's chroot_env (client/config/config.go
            # DefaultChrootEnv) plus mounted volumes; a binary elsewhere is not found
            # (drivers/shared/executor/executor_linux_cgo.go).
            return None, "Driver Failure", (f"failed to launch command with executor: rpc error: code = Unknown "
                                            f"desc = file {argv[0]} not found under path {nomad['NOMAD_TASK_DIR']}")
        return argv, "", ""

    def _docker_command(self, config: dict, nomad: dict, node: dict, meta: dict) -> tuple[list[str] | None, str, str]:
        for bind in config.get("volumes") or []:
            source = str(bind).split(":", 1)[0]
            if source.startswith("/") and not self._node_spec(node).docker_volumes:
                # Host paths need plugin "docker" { config { volumes { enabled = true } } } on the client
                # (drivers/docker/config.go, default false; drivers/docker/driver.go).
                return None, "Driver Failure", f'volumes are not enabled; cannot mount host path: "{bind}"'
        if not config.get("command"):
            return None, "Driver Failure", ("emulator (test double): there is no Docker here; image "
                                            f"{config.get('image')!r} cannot run (give config.command to run the "
                                            "task as a process)")
        args = config.get("args") or []
        return [self._interpolate(str(a), nomad, node, meta) for a in [config["command"], *args]], "", ""

    def _node_spec(self, node: dict) -> EmulatedNode:
        return self.cluster.node_specs[node["ID"]]

    def _in_chroot(self, binary: str, node: dict) -> bool:
        if not binary.startswith("/"):
            return False
        group = next(g for g in self.alloc["Job"]["TaskGroups"] if g["Name"] == self.alloc["TaskGroup"])
        mounted = [m.get("Destination") or "" for t in group["Tasks"] for m in t.get("VolumeMounts") or []]
        roots = [*self._node_spec(node).chroot_env, *mounted]
        return any(binary == r or binary.startswith(r.rstrip("/") + "/") for r in roots if r)

    def _prepare_task(self, job: dict, group: dict, task: dict) -> tuple[Path, dict[str, str]]:
        name = task["Name"]
        alloc_dir = self.cluster.work_dir / "allocs" / self.alloc["ID"] / "alloc"
        task_dir = self.cluster.work_dir / "allocs" / self.alloc["ID"] / name
        for directory in (alloc_dir / "logs", alloc_dir / "data", alloc_dir / "tmp", task_dir / "local",
                          task_dir / "secrets", task_dir / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)
        self._task_event(name, task_event("Task Setup", "Building Task Directory", Message="Building Task Directory"))
        if task.get("DispatchPayload") and job.get("Payload"):
            target = task_dir / "local" / (task["DispatchPayload"].get("File") or "payload")
            target.write_bytes(base64.b64decode(job["Payload"]))
        return task_dir, self._environment(job, group, task, task_dir, alloc_dir)

    async def _render_templates(self, job: dict, group: dict, task: dict, task_dir: Path,
                                env: dict[str, str]) -> str | None:
        """Render the task's templates before it starts, as Nomad's template hook does; None when rendered,
        else the task's outcome ("failed" after a Template failed kill, "killed" while a Variable was missing)."""
        name = task["Name"]
        while task.get("Templates"):
            problem, rendered = render_templates(self.cluster, job, group, task, task_dir)
            if problem is None:
                env.update(rendered)
                return None
            if problem.startswith("Missing: "):
                # A Variable that does not exist yet: the task waits, and says so (template.go, Missing: ...).
                self._task_event(name, task_event("Template", problem))
                try:
                    await asyncio.wait_for(self.killed.wait(), 0.5)
                except TimeoutError:
                    continue
                self._task_event(name, task_event("Killed", "Task successfully killed"), State="dead",
                                 FinishedAt=rfc3339(now_ns()))
                return "killed"
            # A template error kills the task with FailsTask (client/allocrunner/taskrunner/template/template.go).
            self._task_event(name, task_event("Killing", f"Template failed: {problem}", FailsTask=True))
            self._task_event(name, task_event("Killed", "Task successfully killed"), State="dead", Failed=True,
                             FinishedAt=rfc3339(now_ns()))
            return "failed"
        return None

    async def _run_task(self, job: dict, group: dict, task: dict) -> str:
        name = task["Name"]
        task_dir, env = self._prepare_task(job, group, task)
        node = self.cluster.nodes.get(self.alloc["NodeID"], {})
        meta = {**(job.get("Meta") or {}), **(group.get("Meta") or {}), **(task.get("Meta") or {})}
        nomad = {k: v for k, v in env.items() if k.startswith("NOMAD_")}
        ended = await self._render_templates(job, group, task, task_dir, env)
        if ended is not None:
            return ended
        restarts = 0
        while True:
            if self.silent:
                return "lost"
            if self.killed.is_set():
                self._task_event(name, task_event("Killed", "Task successfully killed"), State="dead",
                                 FinishedAt=rfc3339(now_ns()))
                return "killed"
            argv, failure, problem = self._command(task, nomad, node, meta)
            if failure == "Failed Validation":
                self._task_event(name, task_event(failure, problem, ValidationError=problem, FailsTask=True),
                                 State="dead", Failed=True, FinishedAt=rfc3339(now_ns()))
                return "failed"
            outcome = await self._attempt(job, task, argv, env, task_dir, problem)
            if outcome == "not restored":
                continue  # runs again (fail_restore), unless the servers want it stopped meanwhile
            if outcome is not None:
                return outcome
            if not await self._restart_or_fail(task, restarts):
                return "failed"
            restarts += 1

    async def _attempt(self, job: dict, task: dict, argv: list[str] | None, env: dict[str, str], task_dir: Path,
                       problem: str) -> str | None:
        """One run of the task; its outcome, or None when it failed and the restart policy decides."""
        name = task["Name"]
        process = None
        if argv is not None:
            try:
                with open(self.cluster.log_path(self.alloc["ID"], name, "stdout"), "ab") as out, \
                        open(self.cluster.log_path(self.alloc["ID"], name, "stderr"), "ab") as err:
                    process = await asyncio.create_subprocess_exec(
                        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                        cwd=str(task_dir), start_new_session=True, preexec_fn=_default_signal_handling)
            except OSError as error:
                problem = f"failed to launch command with executor: {error.strerror or error}: {argv[0]}"
        if process is None:
            self._task_event(name, task_event("Driver Failure", problem, DriverError=problem))
            return None
        self.processes[name] = process
        self._task_event(name, task_event("Started", "Task started by client"), State="running",
                         StartedAt=rfc3339(now_ns()))
        try:
            outcome = await self._supervise(name, task, process)
        finally:
            # Whatever the task left behind in its process group dies with it: Nomad's executor kills the
            # task's process tree once it ends (drivers/shared/executor/executor.go Shutdown,
            # killProcessTree); an emulator stopped meanwhile (this task cancelled) leaves nothing running.
            self._kill_group(process)
        if self.silent:
            return "lost"
        if name in self._restore_failed:
            self._restore_failed.discard(name)
            self._task_event(name, task_event("Failed Restoring Task",
                                              "failed to restore task; will not run until server is contacted"),
                             State="pending")
            return "not restored"
        if outcome != "exited":
            return outcome
        code, sig = self._exit_result(process.returncode)
        message = f"Exit Code: {code}" + (f", Signal: {sig}" if sig else "")
        self._task_event(name, task_event("Terminated", message, ExitCode=code, Signal=sig,
                                          Details={"exit_code": str(code), "signal": str(sig), "oom_killed": "false"}))
        if code == 0 and job["Type"] == "batch":
            self._task_event(name, task_event("Not Restarting", "Task successfully finished",
                                              RestartReason="Task successfully finished"),
                             State="dead", Failed=False, FinishedAt=rfc3339(now_ns()))
            return "complete"
        return None

    async def _restart_or_fail(self, task: dict, restarts: int) -> bool:
        """Nomad's restart policy after a failed run: True when the task restarts (after its delay)."""
        name, policy = task["Name"], task["RestartPolicy"]
        attempts = int(policy.get("Attempts") or 0)
        if restarts < attempts:
            delay_s = int(policy.get("Delay") or 0) / NS
            wait = format_duration(int(delay_s * NS))
            self._task_event(name, task_event("Restarting", f"Task restarting in {wait}",
                                              RestartReason="Restart within policy", StartDelay=int(delay_s * NS)),
                             State="pending", Restarts=restarts + 1, LastRestart=rfc3339(now_ns()))
            try:
                await asyncio.wait_for(self.killed.wait(), delay_s)
            except TimeoutError:
                pass
            return True
        reason = (f"Exceeded allowed attempts {attempts} in interval "
                  f"{format_duration(int(policy.get('Interval') or 0))} and mode is \"{policy.get('Mode')}\"")
        self._task_event(name, task_event("Not Restarting", reason, FailsTask=True, RestartReason=reason),
                         State="dead", Failed=True, FinishedAt=rfc3339(now_ns()))
        return False

    async def _supervise(self, name: str, task: dict, process: asyncio.subprocess.Process) -> str:
        waiter = asyncio.ensure_future(process.wait())
        killer = asyncio.ensure_future(self.killed.wait())
        try:
            await asyncio.wait({waiter, killer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            killer.cancel()
        if waiter.done():
            return "exited"
        if self.silent:
            self._signal_all(signal.SIGKILL)
            await waiter
            return "lost"
        kill_timeout = int(task.get("KillTimeout") or 5 * NS) / NS
        signame = task.get("KillSignal") or "SIGINT"
        sig = getattr(signal, signame, signal.SIGINT)
        grace = format_duration(int(kill_timeout * NS))
        self._task_event(name, task_event("Killing", f"Sent interrupt. Waiting {grace} before force killing",
                                          KillTimeout=int(kill_timeout * NS)))
        # The stop signal goes to the task's own process, not its process group, as Nomad's executor sends it
        # (drivers/shared/executor/executor_unix.go shutdownProcess: proc.Signal); what the task started is killed
        # with its process tree once the task's process ended or the kill timeout passed (executor.go Shutdown:
        # proc.Kill, killProcessTree; here _attempt's _kill_group). Signalled as a group, a shell's child died of
        # the signal where Nomad's does not (a shell defers SIGINT while it waits for a foreground command), except
        # when it came between the shell's vfork and its child's exec, where the child ignores it: then the stop
        # took the whole kill timeout (a launcher test failed 1 run in 3 under load).
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(waiter), kill_timeout)
        except TimeoutError:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await waiter
        code, sig_number = self._exit_result(process.returncode)
        message = f"Exit Code: {code}" + (f", Signal: {sig_number}" if sig_number else "")
        self._task_event(name, task_event("Terminated", message, ExitCode=code, Signal=sig_number,
                                          Details={"exit_code": str(code), "signal": str(sig_number)}))
        self._task_event(name, task_event("Killed", "Task successfully killed"), State="dead", Failed=False,
                         FinishedAt=rfc3339(now_ns()))
        return "killed"

    @staticmethod
    def _exit_result(returncode: int | None) -> tuple[int, int]:
        if returncode is None:
            return 1, 0
        if returncode < 0:
            return 128 - returncode, -returncode  # Nomad's executor: 128 + signal
        return returncode, 0
