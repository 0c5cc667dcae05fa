"""The emulated cluster (test double): state store, scheduler, clients and garbage collector.

Everything here runs on one asyncio loop, so a "transaction" is simply code between two awaits.
Each write gets the next Raft-like index, stamps ModifyIndex on what it changed, records events
(the last `event_buffer_size` writes are kept, as Nomad's event buffer) and wakes blocking queries.

- Scheduler: an evaluation queue processed in order. Feasibility (node status, eligibility,
  datacenter, node pool, drivers, constraints) then capacity (CPU MHz, memory, disk, minus the
  node's reserved resources and what non-terminal allocations use), bin-packing among feasible
  nodes. A task group that fits nowhere leaves FailedTGAllocs on the evaluation and a *blocked*
  evaluation that is retried whenever capacity frees; the job stays pending, never failed.
- Clients: each allocation on a ready node runs for real, as a subprocess (raw_exec, exec; docker
  only when `config.command` is given), with the task's Env, stdout/stderr under the work
  directory, Nomad's task events (Received, Task Setup, Started, Terminated, Restarting,
  Not Restarting, Killing, Killed, Driver Failure) and its restart and reschedule policies.
- Nodes can be marked down (their allocations become lost or unknown; "disconnected" when one of them
  sets disconnect.lost_after), ineligible, or ready again.
- Garbage collection: dead jobs older than the threshold (4 h by default), or all of them on a
  forced GC, are removed with their allocations and evaluations.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path

from hrwsi.testing.nomad_emulator.alloc_runner import MAX_TASK_EVENTS, AllocRunner
from hrwsi.testing.nomad_emulator.model import (
    DEPRECATED_EVENT_FIELDS,
    NS,
    TERMINAL_EVAL,
    ZERO_TIME,
    CodedError,
    EmulatedNode,
    alloc_usage,
    bump,
    canonicalize_job,
    constraint_holds,
    constraint_text,
    datacenter_matches,
    is_terminal_alloc,
    lost_after_ns,
    new_alloc_metric,
    new_id,
    now_ns,
    pool_matches,
    registration_warnings,
    replace_on_disconnect,
    rfc3339,
    spec_fingerprint,
    stop_on_client_after_s,
    task_event,
    validate_job,
)

__all__ = ["AllocRunner", "Cluster", "EmulatedNode", "is_terminal_alloc"]

logger = logging.getLogger("hrwsi.testing.nomad_emulator")

EMULATED_MHZ_PER_CORE = 2000  # an emulated node's clock when EmulatedNode.cpu_cores is not given

MAX_DISPATCH_PAYLOAD = 16 * 1024


class Txn:
    """One write: the changes, the events they cause, and their index."""

    def __init__(self, cluster: Cluster, msg_type: str):
        self.cluster = cluster
        self.type = msg_type
        self.index = cluster.index + 1
        self._changed: dict[tuple[str, str], tuple[dict, bool]] = {}  # (table, id) -> (object, deleted)
        self.touched_jobs: set[tuple[str, str]] = set()
        self.capacity_freed = False

    def put(self, table: str, obj: dict) -> dict:
        if obj.get("CreateIndex") in (None, 0):
            obj["CreateIndex"] = self.index
        obj["ModifyIndex"] = self.index
        if table == "allocs":
            obj["AllocModifyIndex"] = self.index
            obj["ModifyTime"] = now_ns()
            self.touched_jobs.add((obj["Namespace"], obj["JobID"]))
        if table == "evals":
            obj["ModifyTime"] = now_ns()
            self.touched_jobs.add((obj["Namespace"], obj["JobID"]))
        if table == "jobs":
            self.touched_jobs.add((obj["Namespace"], obj["ID"]))
        self._changed[(table, obj["ID"])] = (obj, False)
        return obj

    def delete(self, table: str, obj: dict) -> None:
        if table in ("allocs", "evals"):
            self.touched_jobs.add((obj["Namespace"], obj["JobID"]))
        if table == "jobs":
            self.touched_jobs.add((obj["Namespace"], obj["ID"]))
        self._changed[(table, obj["ID"])] = (obj, True)

    def __enter__(self) -> Txn:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.cluster._commit(self)


class Cluster:
    def __init__(self, nodes: Iterable[EmulatedNode], *, work_dir: Path, job_gc_threshold_s: float = 4 * 3600,
                 gc_interval_s: float = 300.0, event_buffer_size: int = 100, acl_enabled: bool = False,
                 workload_variable_paths: tuple[str, ...] = (), deprecated_event_fields: bool = True,
                 version: str = "2.0.5", namespaces: Iterable[str] = (), node_pools: Iterable[str] = ()):
        self.work_dir = Path(work_dir)
        # Namespaces: "default" always exists (nomad/state/state_store.go, the default namespace is
        # created with the state); others only once an admin applied them.
        self.namespaces: set[str] = {"default", *namespaces}
        # Node pools: the built-in "all" and "default" (nomad/structs/node_pool.go), those applied by an
        # admin, and those a node registered in (nomad/node_endpoint.go Register creates a node's pool
        # when it does not exist).
        self.node_pools: set[str] = {"all", "default", *node_pools}
        self.version = version
        self.acl_enabled = acl_enabled
        # Variables a namespace-wide workload policy lets every task read (globs), beyond the implicit ones.
        self.workload_variable_paths = tuple(workload_variable_paths)
        # Nomad 2.0 still fills the deprecated TaskEvent fields; False emulates one that dropped them.
        self.deprecated_event_fields = deprecated_event_fields
        self.variables: dict[tuple[str, str], dict] = {}  # (namespace, path) -> Variable
        self.node_specs: dict[str, EmulatedNode] = {}  # node ID -> how it was configured
        self.job_gc_threshold_s = job_gc_threshold_s
        self.gc_interval_s = gc_interval_s
        self.index = 10
        self.table_index = {"jobs": 1, "job_summary": 1, "allocs": 1, "evals": 1, "nodes": 1}
        self.jobs: dict[tuple[str, str], dict] = {}
        self.allocs: dict[str, dict] = {}
        self.evals: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self._allocs_by_job: dict[tuple[str, str], dict[str, dict]] = {}
        self._allocs_by_node: dict[str, dict[str, dict]] = {}
        self._evals_by_job: dict[tuple[str, str], dict[str, dict]] = {}
        self.job_alloc_index: dict[tuple[str, str], int] = {}
        self.job_eval_index: dict[tuple[str, str], int] = {}
        self.job_summary_index: dict[tuple[str, str], int] = {}
        self.job_deleted_index: dict[tuple[str, str], int] = {}
        self._summaries: dict[tuple[str, str], tuple[dict, dict]] = {}  # the counts each summary was written with
        self._job_touched_ns: dict[tuple[str, str], int] = {}
        self._queued_allocs: dict[tuple[str, str], dict[str, int]] = {}
        self._lost_at: dict[str, int] = {}  # allocation ID -> when its node's loss made it lost (WaitClientStop)
        # allocation ID -> when it went unknown on a disconnected node (nomad/structs/alloc.go LastUnknown)
        self._unknown_at: dict[str, int] = {}
        self.event_buffer_size = event_buffer_size
        self.frames: deque[tuple[int, list[dict]]] = deque()
        self.dropped_through = 0  # the index of the last frame dropped from the event buffer
        self.frames_missed_by_subscribers = 0  # test bookkeeping: event streams that fell behind the buffer
        self._buffered_events = 0
        self._changed = asyncio.Event()
        self._eval_queue: asyncio.Queue[str] = asyncio.Queue()
        self._enqueued: set[str] = set()
        self._runners: dict[str, AllocRunner] = {}
        self._background: set[asyncio.Task] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._drain_timers: dict[str, asyncio.TimerHandle] = {}  # node ID -> its drain's deadline
        self._closing = False
        # Test bookkeeping that survives purge and GC: allocations of each job whose tasks all succeeded.
        self.completed_runs: Counter[str] = Counter()
        for node in nodes:
            self.add_node(node)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._eval_worker(), "eval-worker")
        if self.gc_interval_s > 0:
            self._spawn(self._gc_loop(), "gc")

    async def close(self) -> None:
        self._closing = True
        for timer in [*self._timers, *self._drain_timers.values()]:
            timer.cancel()
        for runner in list(self._runners.values()):
            runner.abandon()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._wake()

    def _spawn(self, coroutine, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine, name=f"nomad-emulator-{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- writes ------------------------------------------------------------------------------
    def txn(self, msg_type: str) -> Txn:
        return Txn(self, msg_type)

    def _commit(self, txn: Txn) -> None:
        index = txn.index
        self.index = index
        for (table, obj_id), (obj, deleted) in txn._changed.items():
            self._store(table, obj_id, obj, deleted, index)
            self.table_index[table] = index
        self._update_job_statuses(txn)
        events = [event for (table, _), (obj, deleted) in txn._changed.items()
                  if (event := self._event_for(table, obj, deleted, txn.type, index)) is not None]
        if events:
            self.frames.append((index, events))
            self._buffered_events += len(events)
            while self._buffered_events > self.event_buffer_size and len(self.frames) > 1:
                self.dropped_through, dropped = self.frames.popleft()  # Nomad keeps only the last events
                self._buffered_events -= len(dropped)
        self._wake()

    def _store(self, table: str, obj_id: str, obj: dict, deleted: bool, index: int) -> None:
        """One changed object into its table and the indexes kept beside it."""
        if table == "jobs":
            key = (obj["Namespace"], obj["ID"])
            if deleted:
                self.jobs.pop(key, None)
                self.job_deleted_index[key] = index
            else:
                self.jobs[key] = obj
            self._job_touched_ns[key] = now_ns()
        elif table == "allocs":
            key = (obj["Namespace"], obj["JobID"])
            by_job = self._allocs_by_job.setdefault(key, {})
            by_node = self._allocs_by_node.setdefault(obj["NodeID"], {})
            if deleted:
                self.allocs.pop(obj_id, None)
                self._lost_at.pop(obj_id, None)
                self._unknown_at.pop(obj_id, None)
                by_job.pop(obj_id, None)
                by_node.pop(obj_id, None)
            else:
                self.allocs[obj_id] = by_job[obj_id] = by_node[obj_id] = obj
            self.job_alloc_index[key] = index
        elif table == "evals":
            key = (obj["Namespace"], obj["JobID"])
            by_job = self._evals_by_job.setdefault(key, {})
            if deleted:
                self.evals.pop(obj_id, None)
                by_job.pop(obj_id, None)
            else:
                self.evals[obj_id] = by_job[obj_id] = obj
            self.job_eval_index[key] = index
        elif table == "nodes":
            self.nodes[obj_id] = obj

    def _update_job_statuses(self, txn: Txn) -> None:
        """Job status follows its allocations and evaluations (Nomad's getJobStatus)."""
        index = txn.index
        for key in txn.touched_jobs:
            self._job_touched_ns[key] = now_ns()
            job = self.jobs.get(key)
            change = txn._changed.get(("jobs", job["ID"])) if job is not None else None
            if job is None:
                if self._summaries.pop(key, None) is not None:  # (deleted with its job: DeleteJobTxn)
                    self.table_index["job_summary"] = index
                continue
            # The job_summary table moves only when a summary changes (nomad/state/state_store.go: a job's
            # upsert, updateSummaryWithAlloc on a new allocation or a ClientStatus change, nestedUpsertEval
            # on a new Queued count), never for an evaluation's or a task event's write alone: the job
            # list's X-Nomad-Index, max(jobs, job_summary) (nomad/job_endpoint.go List), trails the
            # index of the allocations, the evaluations and the event stream.
            summary = self.job_summary(job)
            counts = (summary["Summary"], summary["Children"])
            if change is not None or counts != self._summaries.get(key):
                self._summaries[key] = counts
                self.job_summary_index[key] = index
                self.table_index["job_summary"] = index
            status = self.job_status(job)
            if status != job["Status"] or change is not None:
                job["Status"] = status
                job["ModifyIndex"] = index
                self.table_index["jobs"] = index
                txn._changed[("jobs", job["ID"])] = (job, False)

    def _event_for(self, table: str, obj: dict, deleted: bool, msg_type: str, index: int) -> dict | None:
        if table == "jobs":
            topic, key, filter_keys, payload = "Job", obj["ID"], [], {"Job": copy.deepcopy(obj)}
            if deleted and msg_type not in ("JobDeregistered", "JobBatchDeregistered"):
                return None
            if deleted and int(self.version.split(".")[0]) >= 2:
                # A deleted job's event carries the job as it was before (a purge of a running job: Stop false,
                # its Status as it was), and since 2.0.0 `Deleted: true` beside it (nomad/state/events.go
                # eventFromChange, the "jobs" table's deleted change; nomad/structs/event.go JobEvent.Deleted,
                # absent from 1.10 and 1.11, where only the Type, JobDeregistered, tells a purge from a stop).
                payload["Deleted"] = True
        elif table == "allocs":
            if deleted:
                return None
            stripped = {k: copy.deepcopy(v) for k, v in obj.items() if k != "Job"}
            topic, key, filter_keys, payload = "Allocation", obj["ID"], [obj["JobID"], ""], {"Allocation": stripped}
        elif table == "evals":
            if deleted:
                return None
            topic, key, filter_keys, payload = "Evaluation", obj["ID"], [obj["JobID"], ""], \
                {"Evaluation": copy.deepcopy(obj)}
        elif table == "nodes":
            topic, key, filter_keys, payload = "Node", obj["ID"], [], {"Node": self.node_view(obj)}
        else:
            return None
        return {"Topic": topic, "Type": msg_type, "Key": key, "Namespace": obj.get("Namespace", ""),
                "FilterKeys": filter_keys, "Index": index, "Payload": payload}

    def _wake(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def wait_for_change(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # -- reads -------------------------------------------------------------------------------
    def job_allocs(self, namespace: str, job_id: str, *, any_create_index: bool = False) -> list[dict]:
        job = self.jobs.get((namespace, job_id))
        out = list(self._allocs_by_job.get((namespace, job_id), {}).values())
        if job is not None and not any_create_index:
            out = [a for a in out if a["Job"]["CreateIndex"] == job["CreateIndex"]]
        return sorted(out, key=lambda a: a["CreateIndex"])

    def job_evals(self, namespace: str, job_id: str) -> list[dict]:
        return sorted(self._evals_by_job.get((namespace, job_id), {}).values(), key=lambda e: e["CreateIndex"])

    def job_status(self, job: dict) -> str:
        if job.get("Periodic") or (job.get("ParameterizedJob") and not job.get("Dispatched")):
            return "dead" if job["Stop"] else "running"
        allocs = self.job_allocs(job["Namespace"], job["ID"])
        if any(not is_terminal_alloc(a) for a in allocs):
            return "running"
        evals = self.job_evals(job["Namespace"], job["ID"])
        if any(e["Status"] not in TERMINAL_EVAL for e in evals):
            return "pending"
        if allocs or evals:
            return "dead"
        return "pending"

    def job_summary(self, job: dict) -> dict:
        key = (job["Namespace"], job["ID"])
        summary = {tg["Name"]: {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0,
                                "Unknown": 0} for tg in job["TaskGroups"]}
        names = {"pending": "Starting", "running": "Running", "complete": "Complete", "failed": "Failed",
                 "lost": "Lost", "unknown": "Unknown"}
        for alloc in self.job_allocs(*key):
            if alloc["TaskGroup"] in summary:
                summary[alloc["TaskGroup"]][names[alloc["ClientStatus"]]] += 1
        for group, queued in self._queued_allocs.get(key, {}).items():
            if group in summary:
                summary[group]["Queued"] = queued
        children = {"Pending": 0, "Running": 0, "Dead": 0}
        if job.get("Periodic") or (job.get("ParameterizedJob") and not job.get("Dispatched")):
            for child in self.jobs.values():
                if child.get("ParentID") == job["ID"] and child["Namespace"] == job["Namespace"]:
                    children[child["Status"].capitalize()] += 1
        return {"JobID": job["ID"], "Namespace": job["Namespace"], "Summary": summary, "Children": children,
                "CreateIndex": job["CreateIndex"], "ModifyIndex": self.job_summary_index.get(key, job["ModifyIndex"])}

    def job_stub(self, job: dict, with_meta: bool = False) -> dict:
        stub = {k: job.get(k) for k in ("ID", "ParentID", "Name", "Namespace", "Datacenters", "NodePool", "Type",
                                         "Priority", "Stop", "Status", "StatusDescription", "CreateIndex",
                                         "ModifyIndex", "JobModifyIndex", "SubmitTime")}
        stub.update({"Multiregion": None, "Periodic": bool(job.get("Periodic")),
                     "ParameterizedJob": bool(job.get("ParameterizedJob")), "JobSummary": self.job_summary(job)})
        if with_meta:
            stub["Meta"] = job.get("Meta")
        return stub

    @staticmethod
    def alloc_stub(alloc: dict, with_resources: bool = False) -> dict:
        keys = ("ID", "EvalID", "Name", "Namespace", "NodeID", "NodeName", "JobID", "JobVersion", "TaskGroup",
                "DesiredStatus", "DesiredDescription", "ClientStatus", "ClientDescription", "DesiredTransition",
                "TaskStates", "DeploymentStatus", "FollowupEvalID", "NextAllocation", "PreviousAllocation",
                "RescheduleTracker", "PreemptedAllocations", "PreemptedByAllocation", "CreateIndex",
                "ModifyIndex", "CreateTime", "ModifyTime")
        stub = {k: copy.deepcopy(alloc.get(k)) for k in keys}
        stub["JobType"] = alloc["Job"]["Type"]
        if with_resources:
            stub["AllocatedResources"] = copy.deepcopy(alloc["AllocatedResources"])
        return stub

    def node_view(self, node: dict) -> dict:
        return copy.deepcopy(node)

    def node_stub(self, node: dict, with_resources: bool = False) -> dict:
        stub = {k: copy.deepcopy(node[k]) for k in ("ID", "Datacenter", "Name", "NodeClass", "NodePool", "Drain",
                                                     "SchedulingEligibility", "Status", "StatusDescription",
                                                     "Drivers", "HostVolumes", "LastDrain", "CreateIndex",
                                                     "ModifyIndex")}
        stub["Address"] = "127.0.0.1"
        stub["Version"] = node["Attributes"]["nomad.version"]
        if with_resources:
            stub["NodeResources"] = copy.deepcopy(node["NodeResources"])
            stub["ReservedResources"] = copy.deepcopy(node["ReservedResources"])
        return stub

    def find_node(self, name_or_id: str) -> dict:
        for node in self.nodes.values():
            if node["ID"] == name_or_id or node["Name"] == name_or_id:
                return node
        raise KeyError(f"no emulated node {name_or_id!r}")

    # -- nodes -------------------------------------------------------------------------------
    def add_node(self, spec: EmulatedNode) -> dict:
        # Nomad's CpuShares is cores x the CPU's clock (client/fingerprint/cpu.go): 2000 MHz a core unless
        # given, so that a node's cores and its MHz / HRWSI_NOMAD_MHZ_PER_CORE (1000) are not one number.
        cores = spec.cpu_cores or max(1, round(spec.cpu_mhz / EMULATED_MHZ_PER_CORE))
        drivers = {d: {"Attributes": {f"driver.{d}": "1"}, "Detected": True, "Healthy": True,
                       "HealthDescription": "Healthy", "UpdateTime": rfc3339(now_ns())} for d in spec.drivers}
        attributes = {"unique.hostname": spec.name, "kernel.name": "linux", "os.name": "emulated",
                      "cpu.arch": "amd64", "cpu.numcores": str(cores), "cpu.totalcompute": str(spec.cpu_mhz),
                      "memory.totalbytes": str(spec.memory_mb * 1024 * 1024), "nomad.version": self.version,
                      "unique.storage.bytesfree": str(spec.disk_mb * 1024 * 1024),
                      **{f"driver.{d}": "1" for d in spec.drivers}, **spec.attributes}
        if spec.docker_volumes and "docker" in spec.drivers:
            # The docker driver fingerprints this when volumes are enabled (drivers/docker/fingerprint.go).
            attributes["driver.docker.volumes.enabled"] = "true"
        node = {
            "ID": new_id(), "SecretID": "", "Datacenter": spec.datacenter, "Name": spec.name,
            "HTTPAddr": "127.0.0.1:4646", "TLSEnabled": False, "Attributes": attributes,
            "NodeResources": {"Cpu": {"CpuShares": spec.cpu_mhz, "TotalCpuCores": cores,
                                      "ReservableCpuCores": list(range(cores))},
                              "Memory": {"MemoryMB": spec.memory_mb}, "Disk": {"DiskMB": spec.disk_mb},
                              "Networks": [], "Devices": [], "MinDynamicPort": 20000, "MaxDynamicPort": 32000},
            "ReservedResources": {"Cpu": {"CpuShares": spec.reserved_cpu_mhz, "ReservedCpuCores": []},
                                  "Memory": {"MemoryMB": spec.reserved_memory_mb},
                                  "Disk": {"DiskMB": spec.reserved_disk_mb},
                                  "Networks": {"ReservedHostPorts": ""}},
            "Resources": {"CPU": spec.cpu_mhz, "MemoryMB": spec.memory_mb, "DiskMB": spec.disk_mb},
            "Reserved": {"CPU": spec.reserved_cpu_mhz, "MemoryMB": spec.reserved_memory_mb,
                         "DiskMB": spec.reserved_disk_mb},
            "Links": {}, "Meta": dict(spec.meta), "NodeClass": spec.node_class, "NodePool": spec.node_pool,
            "ComputedClass": f"v1:{abs(hash((spec.node_class, spec.datacenter))) % 10**18}",
            "Drain": False, "DrainStrategy": None, "SchedulingEligibility": "eligible", "Status": "ready",
            "StatusDescription": "", "StatusUpdatedAt": now_ns() // NS, "Events": [
                {"Message": "Node registered", "Subsystem": "Cluster", "Details": None,
                 "Timestamp": rfc3339(now_ns()), "CreateIndex": 0}],
            "Drivers": drivers, "LastDrain": None,
            "HostVolumes": {name: {"Path": path, "ReadOnly": False} for name, path in spec.host_volumes.items()} or None,
        }
        self.node_specs[node["ID"]] = spec
        self.node_pools.add(spec.node_pool)
        with self.txn("NodeRegistration") as t:
            t.put("nodes", node)
        self._unblock()
        return node

    def set_node_status(self, name_or_id: str, status: str, *, processes_survive: bool = False) -> None:
        """'down' loses the node's allocations: their processes are killed (the machine is gone) or, with
        `processes_survive` (a network partition), run on until their client stops them; 'ready' brings
        the node back."""
        node = self.find_node(name_or_id)
        if status not in ("ready", "down", "disconnected", "initializing"):
            raise ValueError(f"unknown node status {status!r}")
        if status == "down" and any(lost_after_ns(a) > 0 for a in self._allocs_by_node.get(node["ID"], {}).values()
                                    if not is_terminal_alloc(a)):
            # A node that missed its heartbeats with an allocation whose group sets disconnect.lost_after is
            # "disconnected", not "down" (nomad/heartbeat.go disconnectState; allocations past their window aside).
            status = "disconnected"
        with self.txn("NodeEvent") as t:
            node["Status"] = status
            node["StatusUpdatedAt"] = now_ns() // NS
            node["Events"].append({"Message": "Node heartbeat missed" if status == "down" else f"Node {status}",
                                   "Subsystem": "Cluster", "Details": None, "Timestamp": rfc3339(now_ns()),
                                   "CreateIndex": t.index})
            t.put("nodes", node)
        if status in ("down", "disconnected"):
            self._lose_node_allocs(node, processes_survive)
        else:
            self._node_back(node)

    def restart_client(self, name_or_id: str, *, restore_fails: bool) -> list[dict]:
        """The node's Nomad agent restarts, too briefly for the servers to notice. Its running tasks are
        reattached, or, with `restore_fails`, lost and run again (AllocRunner.fail_restore): the
        allocations whose tasks run again."""
        node = self.find_node(name_or_id)
        if not restore_fails:
            return []
        again = []
        for alloc in list(self._allocs_by_node.get(node["ID"], {}).values()):
            runner = self._runners.get(alloc["ID"])
            if runner is not None and not runner.finished and runner.fail_restore():
                again.append(alloc)
        return again

    def set_node_eligibility(self, name_or_id: str, eligible: bool) -> dict:
        node = self.find_node(name_or_id)
        with self.txn("NodeDrain") as t:
            node["SchedulingEligibility"] = "eligible" if eligible else "ineligible"
            t.put("nodes", node)
        if eligible:
            self._unblock()
        return node

    def drain_node(self, name_or_id: str, deadline_ns: int | None, *, mark_eligible: bool = False,
                   ignore_system_jobs: bool = False) -> dict:
        """`nomad node drain` (POST /v1/node/:id/drain). With a DrainSpec (deadline_ns not None) the node is
        ineligible and draining (nomad/node_endpoint.go Node.UpdateDrain, nomad/state/state_store.go
        updateNodeDrainImpl); without one the drain stops, and MarkEligible makes the node eligible again.
        The drainer lets batch allocations run until the deadline and then stops them without a replacement
        (nomad/drainer/watch_jobs.go handleTaskGroup, drainer.go handleDeadlinedNodes and drainAllocs:
        MigrateDisablePlacement); other jobs' allocations are migrated (stopped, placed elsewhere). Deadline
        below 0 is a forced drain, now; 0 none (nomad/structs/structs.go DrainStrategy.DeadlineTime). The drain
        is complete when nothing but system jobs is left: DrainStrategy cleared, the node left ineligible
        (drainer.go handleMigratedAllocs)."""
        node = self.find_node(name_or_id)
        timer = self._drain_timers.pop(node["ID"], None)
        if timer is not None:
            timer.cancel()
        with self.txn("NodeDrain") as t:
            if deadline_ns is not None:
                started = node["DrainStrategy"]["StartedAt"] if node["DrainStrategy"] else rfc3339(now_ns())
                message = "Node drain strategy set" if node["DrainStrategy"] is None else "Node drain updated"
                node["DrainStrategy"] = {"Deadline": deadline_ns, "IgnoreSystemJobs": ignore_system_jobs,
                                         "ForceDeadline": rfc3339(now_ns() + deadline_ns) if deadline_ns > 0
                                         else ZERO_TIME, "StartedAt": started}
                node["Drain"] = True
                node["SchedulingEligibility"] = "ineligible"
                node["LastDrain"] = {"Status": "draining", "StartedAt": started, "UpdatedAt": rfc3339(now_ns()),
                                     "AccessorID": "", "Meta": None}
            else:
                message = "Node drain disabled" if node["DrainStrategy"] is not None else ""
                if node["LastDrain"] and node["DrainStrategy"] is not None:
                    node["LastDrain"]["Status"] = "canceled"
                node["DrainStrategy"], node["Drain"] = None, False
                if mark_eligible:
                    node["SchedulingEligibility"] = "eligible"
            if message:
                node["Events"].append({"Message": message, "Subsystem": "Drain", "Details": None,
                                       "Timestamp": rfc3339(now_ns()), "CreateIndex": t.index})
            t.put("nodes", node)
        if deadline_ns is None:
            if mark_eligible:
                self._unblock()
            return node
        self._migrate(node, batch=False)
        if deadline_ns < 0:
            self._drain_deadline(node["ID"])
        elif deadline_ns > 0:
            self._drain_timers[node["ID"]] = asyncio.get_running_loop().call_later(
                deadline_ns / NS, self._drain_deadline, node["ID"])
        self._drain_done(node)
        return node

    def _draining_allocs(self, node: dict) -> list[dict]:
        return [a for a in self._allocs_by_node.get(node["ID"], {}).values()
                if not is_terminal_alloc(a) and a["DesiredStatus"] == "run" and a["Job"].get("Type") != "system"]

    def _migrate(self, node: dict, *, batch: bool) -> None:
        """Stop the draining node's allocations of non-batch jobs (batch ones too at the deadline, without a
        replacement); the others are placed elsewhere by an evaluation (drainer.go drainAllocs)."""
        allocs = [a for a in self._draining_allocs(node) if batch or a["Job"].get("Type") != "batch"]
        if not allocs:
            return
        with self.txn("AllocUpdateDesiredTransition") as t:
            for alloc in allocs:
                alloc["DesiredTransition"] = {"Migrate": True}
                if alloc["Job"].get("Type") == "batch":
                    alloc["DesiredTransition"]["MigrateDisablePlacement"] = True
                t.put("allocs", alloc)
        self._stop_allocs(allocs, "alloc is being migrated")
        for key in {(a["Namespace"], a["JobID"]) for a in allocs}:
            job = self.jobs.get(key)
            if job is not None and not job["Stop"]:
                self._create_eval(job, "node-drain", node_id=node["ID"])

    def _drain_deadline(self, node_id: str) -> None:
        self._drain_timers.pop(node_id, None)
        node = self.nodes.get(node_id)
        if node is None or node["DrainStrategy"] is None:
            return
        self._migrate(node, batch=True)
        self._drain_done(node)

    def _drain_done(self, node: dict) -> None:
        """The drain is complete once nothing but system jobs runs there: the node stays ineligible."""
        if node["DrainStrategy"] is None or self._draining_allocs(node):
            return
        timer = self._drain_timers.pop(node["ID"], None)
        if timer is not None:
            timer.cancel()
        with self.txn("NodeDrain") as t:
            node["DrainStrategy"], node["Drain"] = None, False
            if node["LastDrain"]:
                node["LastDrain"]["Status"] = "complete"
                node["LastDrain"]["UpdatedAt"] = rfc3339(now_ns())
            node["Events"].append({"Message": "Node drain complete", "Subsystem": "Drain", "Details": None,
                                   "Timestamp": rfc3339(now_ns()), "CreateIndex": t.index})
            t.put("nodes", node)

    def _lose_node_allocs(self, node: dict, processes_survive: bool = False) -> None:
        """A node down: its allocations are lost and replaced (with stop_on_client_after, once their client must
        have stopped them: _lost_alloc_is_due), or, for a group whose Disconnect.Replace is false, a running
        one is unknown and left alone (nomad/structs/structs.go TaskGroup.Replace; scheduler/reconciler/filters.go: running
        terminal-node allocations that cannot be replaced are "disconnecting", marked unknown; the
        remaining terminal-node allocations are lost). A node "disconnected" (set_node_status) keeps its
        running allocations of groups with a lost_after unknown instead, and loses the others."""
        allocs = [a for a in self._allocs_by_node.get(node["ID"], {}).values() if not is_terminal_alloc(a)]
        if not allocs:
            return
        known_to_client = {a["ID"]: a["ClientStatus"] for a in allocs}
        # A node "disconnected" (only one with an allocation of lost_after above 0 gets that status from
        # the servers: nomad/heartbeat.go disconnectState; "down" otherwise) loses its pending allocations
        # and those whose group has no lost_after; the others, running, are unknown whatever their Replace
        # (scheduler/reconciler/filters.go: "Disconnected pending allocs should be replaced immediately",
        # "Disconnected allocs with nil disconnect block or lost_after=0 are lost", "Remaining disconnected
        # allocs are disconnecting"). On a node "down", a running one of a group with Replace false is unknown
        # ("Terminal node allocations that can't be replaced but still need to be updated to unknown").
        disconnected = node["Status"] == "disconnected"
        with self.txn("PlanResult") as t:
            for alloc in allocs:
                keeps = lost_after_ns(alloc) > 0 if disconnected else not replace_on_disconnect(alloc)
                if not keeps or alloc["ClientStatus"] != "running":
                    alloc["ClientStatus"] = "lost"
                    alloc["ClientDescription"] = alloc["DesiredDescription"] = "alloc is lost since its node is down"
                    alloc["DesiredStatus"] = "stop"
                    self._lost_at[alloc["ID"]] = now_ns()
                else:
                    alloc["ClientStatus"] = "unknown"
                    alloc["ClientDescription"] = "alloc is unknown since its node is disconnected"
                    self._unknown_at[alloc["ID"]] = now_ns()
                t.put("allocs", alloc)
        for alloc in allocs:
            runner = self._runners.get(alloc["ID"])
            if runner is None:
                continue
            if processes_survive:
                runner.cut_off_from_servers(known_to_client[alloc["ID"]], stop_on_client_after_s(alloc))
            else:
                runner.lose()
        jobs = {(a["Namespace"], a["JobID"]) for a in allocs if a["ClientStatus"] == "lost"}
        for key in jobs:
            job = self.jobs.get(key)
            if job is not None and not job["Stop"]:
                self._create_eval(job, "node-update", node_id=node["ID"])
        self._expire_unknown_later([a for a in allocs if a["ID"] in self._unknown_at and lost_after_ns(a) > 0])

    def _expire_unknown_later(self, allocs: list[dict]) -> None:
        """An allocation unknown on a disconnected node gets a follow-up evaluation at the end of its group's
        disconnect.lost_after (scheduler/reconciler/reconcile_cluster.go createTimeoutLaterEvals, TriggeredBy
        max-disconnect-timeout, WaitUntil = filters.go delayByLostAfter; its FollowupEvalID, appendUnknown-
        DisconnectingUpdates). That evaluation finds it expired and lost (_group_placements)."""
        for alloc in allocs:
            job = self.jobs.get((alloc["Namespace"], alloc["JobID"]))
            if job is None or job["Stop"]:
                continue
            due_at = self._unknown_at[alloc["ID"]] + lost_after_ns(alloc)
            followup = self._create_eval(job, "max-disconnect-timeout", wait_until_ns=due_at)
            with self.txn("AllocationUpdated") as t:
                alloc["FollowupEvalID"] = followup["ID"]
                t.put("allocs", alloc)

    def _expired(self, alloc: dict, now: int) -> bool:
        """nomad/structs/alloc.go Allocation.Expired: unknown, and its lost_after passed since it went unknown."""
        unknown_at = self._unknown_at.get(alloc["ID"])
        return alloc["ClientStatus"] == "unknown" and unknown_at is not None and lost_after_ns(alloc) > 0 and \
            unknown_at + lost_after_ns(alloc) <= now

    def _expire(self, alloc: dict, now: int) -> None:
        """An expired allocation is lost: stopped with the lost client status, as any lost one
        (scheduler/reconciler/reconcile_cluster.go: `lost = lost.union(expiring)`, then markStop(lost,
        AllocClientStatusLost, StatusAllocLost); nomad/structs/plan.go AppendStoppedAlloc)."""
        self._unknown_at.pop(alloc["ID"], None)
        self._lost_at[alloc["ID"]] = now
        with self.txn("PlanResult") as t:
            alloc["ClientStatus"] = "lost"
            alloc["ClientDescription"] = alloc["DesiredDescription"] = "alloc is lost since its node is down"
            alloc["DesiredStatus"] = "stop"
            t.put("allocs", alloc)

    def _node_back(self, node: dict) -> None:
        """A node up again. A client that was only cut off reports what its allocations did meanwhile
        (their real end, or running; one the servers stopped meanwhile is stopped now: the reconnect
        flow of scheduler/reconciler/filters.go). The allocations whose processes died with the node (a
        reboot; the client keeps its state, as its node ID) are restored by the client, and none can be
        reattached (client/allocrunner/taskrunner/task_runner.go Restore): one the servers stopped meanwhile
        (lost, or unknown then stopped) is killed as it waits for them and ends complete, the client's status
        (nomad/state/state_store.go nestedUpdateAllocFromClient: the emulator left a lost one lost); one
        still wanted (unknown: Disconnect.Replace false) runs again from the start in the same allocation
        (the emulator said it lost, a status no client sets, and left it so)."""
        for alloc in list(self._allocs_by_node.get(node["ID"], {}).values()):
            runner = self._runners.get(alloc["ID"])
            if runner is not None and runner.cut_off:
                self._unknown_at.pop(alloc["ID"], None)  # (back within its lost_after: reconnected, not expired)
                runner.reconnect()
                if runner.finished:
                    self._runners.pop(alloc["ID"], None)
        died = [a for a in self._allocs_by_node.get(node["ID"], {}).values()
                if a["ClientStatus"] in ("unknown", "lost")
                and (a["ID"] not in self._runners or self._runners[a["ID"]].lost)]
        stopped = [a for a in died if a["DesiredStatus"] != "run"]
        if stopped:
            with self.txn("AllocationUpdated") as t:
                for alloc in stopped:
                    alloc["ClientStatus"], alloc["ClientDescription"] = "complete", "All tasks have completed"
                    for state in (alloc.get("TaskStates") or {}).values():
                        if state.get("State") != "dead":
                            said = [task_event("Failed Restoring Task", "failed to restore task; will not run until "
                                               "server is contacted"), task_event("Killed", "Task successfully killed")]
                            if not self.deprecated_event_fields:
                                said = [{k: v for k, v in e.items() if k not in DEPRECATED_EVENT_FIELDS} for e in said]
                            events = [*(state.get("Events") or []), *said][-MAX_TASK_EVENTS:]
                            state.update(State="dead", FinishedAt=rfc3339(now_ns()), Events=events)
                    t.put("allocs", alloc)
        for alloc in died:
            if alloc["DesiredStatus"] == "run":
                self._unknown_at.pop(alloc["ID"], None)
                self._start_runner(alloc, restored=True)
        self._unblock()

    # -- jobs --------------------------------------------------------------------------------
    def admit(self, raw: dict, namespace: str) -> dict:
        """The job as Job.Register and Job.Plan's admission controllers leave it (nomad/job_endpoint_hooks.go
        admissionControllers: the mutators, canonicalize_job, then the validators), or CodedError(500)."""
        job = canonicalize_job(raw, namespace)
        admission_errors = []
        if job["Namespace"] not in self.namespaces:
            # nomad/job_endpoint_validators.go jobNamespaceConstraintCheckHook.Validate
            admission_errors.append(f'job "{job["ID"]}" is in nonexistent namespace "{job["Namespace"]}"')
        if job["NodePool"] not in self.node_pools:
            # nomad/job_endpoint_hook_node_pool.go jobNodePoolValidatingHook.Validate
            admission_errors.append(f'job "{job["ID"]}" is in nonexistent node pool "{job["NodePool"]}"')
        validate_job(job, admission_errors)
        return job

    def register_job(self, raw: dict, namespace: str, *, enforce_index: bool = False,
                     job_modify_index: int = 0, authorize: Callable[[], None] | None = None,
                     token_accessor: str = "") -> dict:
        """Job.Register from its admission on. `authorize` is the token's capability check, which Nomad makes after
        the admission controllers and before EnforceIndex (nomad/job_endpoint.go doRegister). `token_accessor`, the
        registering token's AccessorID, is kept as the job's NomadTokenID, which Job.SpecChanged compares with the rest
        (nomad/structs/structs.go): an unchanged spec registered with another token is a new version."""
        job = self.admit(raw, namespace)
        if authorize is not None:
            authorize()
        job["NomadTokenID"] = token_accessor  # (never the request's own: command/agent/job_endpoint.go does not copy it)
        key = (job["Namespace"], job["ID"])
        existing = self.jobs.get(key)
        if enforce_index:
            # The request's EnforceIndex (nomad/structs/structs.go JobRegisterRequest.EnforceIndex, with its
            # JobModifyIndex), checked by nomad/job_endpoint.go Register before anything is written (inline up to
            # 2.0.0; since 2.0.1 through nomad/structs/job.go Job.EnforceIndex, checked again where the write is
            # applied, nomad/state/state_store.go upsertJobImpl, hashicorp/nomad#27832): a job of the ID, running
            # or dead, is left as it is (without EnforceIndex, a changed spec becomes its next version and runs
            # again). Checked and written here in one step, as 2.0.1 and later do; up to 2.0.0 two registrations
            # of one ID at the same moment could both pass the check.
            prefix = "Enforcing job modify index"
            if existing is not None:
                if job_modify_index == 0:
                    raise CodedError(500, f"{prefix} 0: job already exists")
                if job_modify_index != existing["JobModifyIndex"]:
                    raise CodedError(500, f"{prefix} {job_modify_index}: job exists with conflicting job modify "
                                          f"index: {existing['JobModifyIndex']}")
            elif job_modify_index != 0:
                raise CodedError(500, f"{prefix} {job_modify_index}: job does not exist")
        changed = existing is None or spec_fingerprint(existing) != spec_fingerprint(job)
        # An unchanged spec is not written again; the answer's JobModifyIndex is then the existing job's
        # ModifyIndex, which moves with its status (nomad/job_endpoint.go: reply.JobModifyIndex =
        # existingJob.ModifyIndex), not its JobModifyIndex.
        unchanged_index = existing["ModifyIndex"] if existing is not None and not changed else None
        if not changed and (existing.get("Periodic") or (existing.get("ParameterizedJob") and not existing["Dispatched"])):
            # Unchanged and no evaluation to force: nothing is written (nomad/job_endpoint.go Register,
            # reply.Index = existingJob.ModifyIndex).
            return {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": unchanged_index,
                    "Warnings": registration_warnings(job), "Index": unchanged_index, "LastContact": 0,
                    "KnownLeader": False}
        # An unchanged spec writes its forced evaluation alone, an EvalUpdateRequestType entry: its events (and a
        # job status it changes) are "EvaluationUpdated", not "JobRegistered" (nomad/job_endpoint.go Register,
        # nomad/state/events.go MsgTypeEvents).
        with self.txn("JobRegistered" if changed else "EvaluationUpdated") as t:
            if changed:
                job["Version"] = 0 if existing is None else existing["Version"] + 1
                job["CreateIndex"] = 0 if existing is None else existing["CreateIndex"]
                job["JobModifyIndex"] = t.index
                job["SubmitTime"] = now_ns()
                job["Stable"] = False
                job["Status"] = "pending"
                job["StatusDescription"] = ""
                t.put("jobs", job)
                current = job
            else:
                current = existing
            evaluation = None
            if not (current.get("Periodic") or (current.get("ParameterizedJob") and not current["Dispatched"])):
                evaluation = self._new_eval(current, "job-register")
                t.put("evals", evaluation)
        if evaluation is not None:
            self._enqueue(evaluation["ID"])
        return {"EvalID": evaluation["ID"] if evaluation else "", "EvalCreateIndex": t.index if evaluation else 0,
                "JobModifyIndex": current["JobModifyIndex"] if unchanged_index is None else unchanged_index,
                "Warnings": registration_warnings(job), "Index": t.index, "LastContact": 0, "KnownLeader": False}

    def deregister_job(self, namespace: str, job_id: str, purge: bool) -> dict:
        job = self.jobs.get((namespace, job_id))
        if job is None:
            return {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "VolumeEvalID": "",
                    "VolumeEvalIndex": 0, "Index": 0, "LastContact": 0, "KnownLeader": False}
        with self.txn("JobDeregistered") as t:
            if purge:
                t.delete("jobs", job)
            else:
                # Stopped again if it already was: nomad/fsm.go handleJobDeregister upserts the stopped copy
                # (SubmitTime the request's), and nomad/state/state_store.go upsertJobImpl gives it the next
                # Version and JobModifyIndex whatever changed.
                job["Stop"] = True
                job["Version"] += 1
                job["JobModifyIndex"] = t.index
                job["SubmitTime"] = now_ns()
                t.put("jobs", job)
            # (its blocked evaluation is canceled once the deregistration's completes: _finish_eval)
            evaluation = None
            # nomad/job_endpoint.go Deregister: no evaluation for a periodic or parameterized job; the one of
            # any other is of type "service" whatever the job's (structs.JobTypeService), at the job's priority.
            if not (job.get("Periodic") or (job.get("ParameterizedJob") and not job.get("Dispatched"))):
                evaluation = self._new_eval(job, "job-deregister")
                evaluation["Type"] = "service"
                evaluation["Priority"] = job.get("Priority") or 50
                t.put("evals", evaluation)
        self._queued_allocs.pop((namespace, job_id), None)
        if evaluation is not None:
            self._enqueue(evaluation["ID"])
        return {"EvalID": evaluation["ID"] if evaluation else "", "EvalCreateIndex": t.index, "JobModifyIndex": t.index,
                "VolumeEvalID": "", "VolumeEvalIndex": 0, "Index": t.index, "LastContact": 0, "KnownLeader": False}

    def scale_job(self, namespace: str, job_id: str, group_name: str, count: int) -> dict:
        """`nomad job scale` (POST /v1/job/:id/scale): the group's Count changes, the job is written again
        (a new Version and JobModifyIndex, a JobRegistered event) and an evaluation triggered by
        "job-scaling" places the new allocations or stops the extra ones (nomad/job_endpoint.go Job.Scale)."""
        job = self.jobs.get((namespace, job_id))
        if job is None:
            raise CodedError(404, f'job "{job_id}" not found')  # (Job.Scale: %q)
        group = next((g for g in job["TaskGroups"] if g["Name"] == group_name), None)
        if group is None:
            raise CodedError(400, f"task group {group_name!r} specified for scaling does not exist in job")
        if count < 0:
            raise CodedError(400, "scaling action count can't be negative")
        with self.txn("JobRegistered") as t:
            group["Count"] = count
            job["Version"] += 1
            job["JobModifyIndex"] = t.index
            job["SubmitTime"] = now_ns()
            job["Stable"] = False
            t.put("jobs", job)
            evaluation = None
            if not job["Stop"]:  # (a stopped job is scaled without an evaluation: Job.Scale's !job.Stop)
                evaluation = self._new_eval(job, "job-scaling")
                t.put("evals", evaluation)
        if evaluation is not None:
            self._enqueue(evaluation["ID"])
        return {"EvalID": evaluation["ID"] if evaluation else "", "EvalCreateIndex": t.index if evaluation else 0,
                "JobModifyIndex": t.index, "Warnings": "", "Index": t.index, "LastContact": 0, "KnownLeader": False}

    def dispatch_job(self, namespace: str, parent_id: str, body: dict, idempotency_token: str) -> dict:
        parent = self.jobs.get((namespace, parent_id))
        if parent is None:
            raise CodedError(404, "parameterized job not found")
        spec = parent.get("ParameterizedJob")
        if spec is None or parent.get("Dispatched"):
            raise CodedError(500, f'Specified job "{parent_id}" is not a parameterized job')
        if parent["Stop"]:
            raise CodedError(500, f'Parameterized job "{parent_id}" is stopped')
        payload_b64 = body.get("Payload") or ""
        try:
            payload = base64.b64decode(payload_b64) if payload_b64 else b""
        except ValueError:
            raise CodedError(400, "Failed to decode payload: illegal base64 data") from None
        rule = spec.get("Payload") or "optional"
        if len(payload) > MAX_DISPATCH_PAYLOAD:
            raise CodedError(500, f"Payload exceeds maximum size; {len(payload)} > {MAX_DISPATCH_PAYLOAD}")
        if rule == "required" and not payload:
            raise CodedError(500, "Payload is not provided but required by parameterized job")
        if rule == "forbidden" and payload:
            raise CodedError(500, "Payload provided but forbidden by parameterized job")
        meta = body.get("Meta") or {}
        required = list(spec.get("MetaRequired") or [])
        optional = list(spec.get("MetaOptional") or [])
        missing = [k for k in required if k not in meta]
        if missing:
            raise CodedError(500, f"Dispatch did not provide required meta keys: {missing}")
        unpermitted = sorted(k for k in meta if k not in required and k not in optional)
        if unpermitted:
            raise CodedError(500, f"Dispatch only allows user metadata keys {sorted(required + optional)}: "
                                  f"unpermitted metadata keys {unpermitted}")
        if idempotency_token:
            for child in self.jobs.values():
                if (child.get("ParentID") == parent_id and child["Namespace"] == namespace
                        and child.get("DispatchIdempotencyToken") == idempotency_token and child["Status"] != "dead"):
                    return {"DispatchedJobID": child["ID"], "EvalID": "", "EvalCreateIndex": 0,
                            "JobCreateIndex": child["CreateIndex"], "Index": child["ModifyIndex"]}
        child = copy.deepcopy(parent)
        child_id = f"{parent_id}/dispatch-{now_ns() // NS}-{new_id()[:8]}"
        child.update({"ID": child_id, "Name": child_id, "ParentID": parent_id, "Dispatched": True,
                      "DispatchIdempotencyToken": idempotency_token, "Meta": {**(parent.get("Meta") or {}), **meta},
                      "Payload": payload_b64 or None, "Version": 0, "CreateIndex": 0, "Status": "pending",
                      "SubmitTime": now_ns()})
        with self.txn("JobRegistered") as t:
            child["JobModifyIndex"] = t.index
            t.put("jobs", child)
            evaluation = self._new_eval(child, "job-register")
            t.put("evals", evaluation)
        self._enqueue(evaluation["ID"])
        return {"DispatchedJobID": child_id, "EvalID": evaluation["ID"], "EvalCreateIndex": t.index,
                "JobCreateIndex": t.index, "Index": t.index}

    # -- evaluations and scheduling ----------------------------------------------------------------
    def _new_eval(self, job: dict, triggered_by: str, *, status: str = "pending", node_id: str = "",
                  wait_until_ns: int = 0, previous: str = "") -> dict:
        return {"ID": new_id(), "Namespace": job["Namespace"], "Priority": job["Priority"], "Type": job["Type"],
                "TriggeredBy": triggered_by, "JobID": job["ID"], "JobModifyIndex": job.get("JobModifyIndex", 0),
                "NodeID": node_id, "NodeModifyIndex": 0, "DeploymentID": "", "Status": status,
                "StatusDescription": "", "Wait": 0, "WaitUntil": rfc3339(wait_until_ns) if wait_until_ns else ZERO_TIME,
                "NextEval": "", "PreviousEval": previous, "BlockedEval": "", "RelatedEvals": None,
                "FailedTGAllocs": None, "ClassEligibility": None, "EscapedComputedClass": False,
                "QuotaLimitReached": "", "AnnotatePlan": False, "QueuedAllocations": None, "LeaderACL": "",
                "SnapshotIndex": 0, "CreateIndex": 0, "ModifyIndex": 0, "CreateTime": now_ns(),
                "ModifyTime": now_ns()}

    def _create_eval(self, job: dict, triggered_by: str, *, node_id: str = "", wait_until_ns: int = 0) -> dict:
        with self.txn("EvaluationUpdated") as t:
            evaluation = t.put("evals", self._new_eval(job, triggered_by, node_id=node_id,
                                                       wait_until_ns=wait_until_ns))
        self._enqueue(evaluation["ID"], at_ns=wait_until_ns)
        return evaluation

    def _enqueue(self, eval_id: str, at_ns: int = 0) -> None:
        if self._closing:
            return
        delay = (at_ns - now_ns()) / NS if at_ns else 0
        if delay > 0:
            handle = asyncio.get_running_loop().call_later(delay, self._enqueue, eval_id, 0)
            self._timers.append(handle)
            return
        if eval_id not in self._enqueued:
            self._enqueued.add(eval_id)
            self._eval_queue.put_nowait(eval_id)

    def _unblock(self) -> None:
        """Capacity changed: retry every blocked evaluation, in the order Nomad's eval broker hands them out: highest
        priority first, then highest ModifyIndex (nomad/eval_broker.go PendingEvaluations.Less; nomad/blocked_evals.go
        enqueues the unblocked ones together). In creation order, the emulator placed the job that waited longest,
        whatever its priority."""
        blocked = [e for e in self.evals.values() if e["Status"] == "blocked"]
        for evaluation in sorted(blocked, key=lambda e: (-int(e.get("Priority") or 50), -int(e.get("ModifyIndex") or 0))):
            self._enqueue(evaluation["ID"])

    async def _eval_worker(self) -> None:
        while True:
            eval_id = await self._eval_queue.get()
            self._enqueued.discard(eval_id)
            try:
                self._process_eval(eval_id)
            except Exception:  # a bug in the emulator must not stop its scheduler
                logger.exception("emulator (test double): evaluation %s failed", eval_id)
            await asyncio.sleep(0)

    def _process_eval(self, eval_id: str) -> None:
        evaluation = self.evals.get(eval_id)
        if evaluation is None or evaluation["Status"] not in ("pending", "blocked"):
            return
        key = (evaluation["Namespace"], evaluation["JobID"])
        job = self.jobs.get(key)
        allocs = [a for a in self.job_allocs(*key, any_create_index=job is None)]
        if job is None or job["Stop"]:
            self._stop_allocs([a for a in allocs if not is_terminal_alloc(a)], "alloc not needed due to job update")
            self._finish_eval(evaluation, {}, {})
            return
        if job.get("Periodic") or (job.get("ParameterizedJob") and not job["Dispatched"]):
            self._finish_eval(evaluation, {}, {})
            return
        now = now_ns()
        placements: list[tuple[dict, dict | None, int]] = []
        extra: list[dict] = []
        for group in job["TaskGroups"]:
            group_allocs = [a for a in allocs if a["TaskGroup"] == group["Name"] and not a["NextAllocation"]]
            placements += self._group_placements(job, group, group_allocs, now, extra)
        self._stop_allocs(extra, "alloc not needed due to job update")
        failed, queued, placed = self._place(job, evaluation, placements)
        if queued:
            self._queued_allocs[key] = queued
        else:
            self._queued_allocs.pop(key, None)
        self._finish_eval(evaluation, failed, queued)
        for alloc, _ in placed:
            self._start_runner(alloc)

    def _group_placements(self, job: dict, group: dict, group_allocs: list[dict], now: int,
                          extra: list[dict]) -> list[tuple[dict, dict | None, int]]:
        """What the reconciler asks for one group: (group, allocation it replaces or None, name index);
        the allocations beyond the group's Count (a scale-down) are added to `extra`, to be stopped."""
        live, replace = [], []
        for alloc in group_allocs:
            status = alloc["ClientStatus"]
            if (alloc.get("DesiredTransition") or {}).get("MigrateDisablePlacement"):
                # a drained batch allocation keeps its slot: never replaced (scheduler/reconciler/filters.go)
                live.append(alloc)
                continue
            if alloc["DesiredStatus"] in ("stop", "evict") and status != "lost":
                continue
            if status in ("pending", "running", "complete"):
                live.append(alloc)
            elif status == "failed":
                (replace if self._failed_alloc_is_due(job, group, alloc, now) else live).append(alloc)
            elif self._expired(alloc, now):
                # Past its lost_after, its node still away: lost, and replaced as any lost allocation, whatever
                # Disconnect.Replace says (scheduler/reconciler/filters.go: expired allocations are classified
                # "expiring" before the disconnected-node rules; reconcile_cluster.go joins them to the lost).
                self._expire(alloc, now)
                replace.append(alloc)
            elif status == "unknown":
                # Disconnect.Replace false on a node down, or within its lost_after on a node disconnected: not
                # replaced while its node is away. (Nomad reschedules a disconnecting allocation of a group with
                # Replace true when its ReschedulePolicy allows, filters.go updateByReschedulable: not emulated;
                # hrwsi's groups reschedule 0 times.)
                live.append(alloc)
            elif status == "lost":
                # Replaced whatever Disconnect.Replace says (it keeps only a running allocation of a node down
                # unknown, filters.go; PreventRescheduleOnLost, ignored since 1.10, never reaches the servers:
                # canonicalize_job); with stop_on_client_after, once its client must have stopped it.
                (replace if self._lost_alloc_is_due(job, alloc, now) else live).append(alloc)
        used_indexes = {self._name_index(a) for a in live}
        missing = int(group["Count"]) - len(live)
        if missing < 0:
            # Count lowered: the allocations with the highest name indexes stop, the others run on
            # (scheduler/reconciler/reconcile_cluster.go computeStop: nameIndex.Highest(remove); allocations
            # the servers already stopped are not stopped again).
            highest = sorted(live, key=self._name_index, reverse=True)[:-missing]
            extra += [a for a in highest if a["DesiredStatus"] == "run" and not is_terminal_alloc(a)]
        free_indexes = (i for i in range(10**6) if i not in used_indexes)
        placements = []
        for i in range(max(0, missing)):
            previous = replace[i] if i < len(replace) else None
            index = self._name_index(previous) if previous is not None else next(free_indexes)
            used_indexes.add(index)
            placements.append((group, previous, index))
        return placements

    def _lost_alloc_is_due(self, job: dict, alloc: dict, now: int) -> bool:
        """A lost allocation whose group sets disconnect.stop_on_client_after is replaced only once its client
        must have stopped it: the stop_after plus the longest kill timeout (at least 5 s) after it was lost
        (scheduler/reconciler/filters.go delayByStopAfter, nomad/structs/alloc.go WaitClientStop); later: a
        follow-up evaluation then."""
        stop_after_s = stop_on_client_after_s(alloc)
        if stop_after_s is None:
            return True
        kill_ns = max([5 * NS] + [int(t.get("KillTimeout") or 0) for g in alloc["Job"]["TaskGroups"]
                                  if g["Name"] == alloc["TaskGroup"] for t in g["Tasks"]])
        due_at = self._lost_at.get(alloc["ID"], now) + int(stop_after_s * NS) + kill_ns
        if due_at <= now:
            return True
        if not alloc["FollowupEvalID"]:
            followup = self._create_eval(job, "alloc-failure", wait_until_ns=due_at)
            with self.txn("AllocationUpdated") as t:
                alloc["FollowupEvalID"] = followup["ID"]
                t.put("allocs", alloc)
        return False

    def _failed_alloc_is_due(self, job: dict, group: dict, alloc: dict, now: int) -> bool:
        """A failed allocation is replaced when its reschedule policy allows it now; later: a follow-up eval."""
        eligible_at = self._reschedule_at(job, group, alloc, now)
        if eligible_at is None:
            return False
        if eligible_at <= now:
            return True
        if not alloc["FollowupEvalID"]:
            followup = self._create_eval(job, "alloc-failure", wait_until_ns=eligible_at)
            with self.txn("AllocationUpdated") as t:
                alloc["FollowupEvalID"] = followup["ID"]
                t.put("allocs", alloc)
        return False

    def _place(self, job: dict, evaluation: dict, placements: list[tuple[dict, dict | None, int]]
               ) -> tuple[dict[str, dict], dict[str, int], list[tuple[dict, dict | None]]]:
        """Pick a node for each placement; (FailedTGAllocs, queued per group, placed allocations)."""
        failed: dict[str, dict] = {}
        queued: dict[str, int] = {}
        placed: list[tuple[dict, dict | None]] = []
        extra_usage: dict[str, tuple[int, int, int]] = {}
        for group, previous, index in placements:
            node, metric = self._select_node(job, group, extra_usage)
            if node is None:
                if group["Name"] in failed:
                    failed[group["Name"]]["CoalescedFailures"] += 1
                else:
                    failed[group["Name"]] = metric
                bump(queued, group["Name"])
                continue
            alloc = self._new_alloc(job, group, node, evaluation, index, previous, metric)
            usage = alloc_usage(alloc)
            prior = extra_usage.get(node["ID"], (0, 0, 0))
            extra_usage[node["ID"]] = (prior[0] + usage[0], prior[1] + usage[1], prior[2] + usage[2])
            placed.append((alloc, previous))
        if placed:
            with self.txn("PlanResult") as t:
                for alloc, previous in placed:
                    t.put("allocs", alloc)
                    if previous is not None:
                        previous["NextAllocation"] = alloc["ID"]
                        t.put("allocs", previous)
        return failed, queued, placed

    def _finish_eval(self, evaluation: dict, failed: dict, queued: dict) -> None:
        job = self.jobs.get((evaluation["Namespace"], evaluation["JobID"]))
        with self.txn("EvaluationUpdated") as t:
            evaluation["FailedTGAllocs"] = failed or None
            evaluation["QueuedAllocations"] = queued or {}
            if failed and evaluation["Status"] == "blocked":
                pass  # still no room: it stays blocked (Nomad's reblock)
            elif failed:
                evaluation["Status"] = "complete"
                if job is not None:
                    # A blocked evaluation whatever the job has already (scheduler/generic_sched.go process); the
                    # older one is then a duplicate, canceled (nomad/blocked_evals.go processBlockJobDuplicate keeps
                    # the newer, nomad/leader.go reapDupBlockedEvaluations cancels the other). The emulator made
                    # none while one was there, and the older one waited on.
                    for older in self.job_evals(evaluation["Namespace"], evaluation["JobID"]):
                        if older["Status"] == "blocked":
                            older["Status"] = "canceled"
                            older["StatusDescription"] = \
                                f'existing blocked evaluation exists for job "{evaluation["JobID"]}"'
                            t.put("evals", older)
                    blocked = self._new_eval(job, "queued-allocs", status="blocked", previous=evaluation["ID"])
                    # scheduler/generic_sched.go createBlockedEval: DescBlockedEvalFailedPlacements (scheduler/structs/
                    # const.go); "created due to placement conflicts", which the emulator said, is a plan that failed
                    # too often (DescBlockedEvalMaxPlan, TriggeredBy max-plan-attempts)
                    blocked["StatusDescription"] = "created to place remaining allocations"
                    blocked["ClassEligibility"] = {}
                    blocked["FailedTGAllocs"] = copy.deepcopy(failed)
                    t.put("evals", blocked)
                    evaluation["BlockedEval"] = blocked["ID"]
            else:
                evaluation["Status"] = "complete"
                evaluation["StatusDescription"] = ""
                # An evaluation that completes without failed placements cancels the job's blocked one (nomad/state/
                # state_store.go nestedUpsertEval; nomad/fsm.go handleUpsertedEval untracks it): a stop's, another
                # registration's, a node's. The emulator canceled it, and pending ones, at the job's deregistration.
                for blocked in self.job_evals(evaluation["Namespace"], evaluation["JobID"]):
                    if blocked["Status"] == "blocked" and blocked["ID"] != evaluation["ID"]:
                        blocked["Status"] = "canceled"
                        blocked["StatusDescription"] = f'evaluation "{evaluation["ID"]}" successful'
                        t.put("evals", blocked)
            t.put("evals", evaluation)

    @staticmethod
    def _name_index(alloc: dict) -> int:
        match = re.search(r"\[(\d+)\]$", alloc["Name"])
        return int(match.group(1)) if match else 0

    def _reschedule_at(self, job: dict, group: dict, alloc: dict, now: int) -> int | None:
        policy = group.get("ReschedulePolicy")
        if not policy or alloc["DesiredStatus"] != "run":
            return None
        events = (alloc.get("RescheduleTracker") or {}).get("Events") or []
        if not policy.get("Unlimited"):
            interval = int(policy.get("Interval") or 0)
            recent = [e for e in events if interval == 0 or now - e["RescheduleTime"] <= interval]
            if len(recent) >= int(policy.get("Attempts") or 0):
                return None
        delay = int(policy.get("Delay") or 0)
        if policy.get("DelayFunction") in ("exponential", "fibonacci") and events:
            delay = delay * (2 ** len(events))
            if policy.get("MaxDelay"):
                delay = min(delay, int(policy["MaxDelay"]))
        return alloc["ModifyTime"] + delay

    def _select_node(self, job: dict, group: dict, extra_usage: dict) -> tuple[dict | None, dict]:
        """Feasibility, then capacity, then bin-packing among a couple of feasible nodes, as Nomad's scheduler."""
        metric = new_alloc_metric()
        constraints = list(job["Constraints"]) + list(group["Constraints"])
        for task in group["Tasks"]:
            constraints += list(task["Constraints"])
        ask = (sum(int(t["Resources"]["CPU"]) for t in group["Tasks"]),
               sum(int(t["Resources"]["MemoryMB"]) for t in group["Tasks"]), int(group["EphemeralDisk"]["SizeMB"]))
        feasible = []
        for node in self._candidate_nodes(job, metric):
            metric["NodesEvaluated"] += 1
            if not self._node_is_feasible(job, node, group, constraints, metric):
                continue
            score = self._binpack_score(node, ask, extra_usage.get(node["ID"], (0, 0, 0)), metric)
            if score is None:
                continue
            feasible.append((score, node))
            metric["ScoreMetaData"].append({"NodeID": node["ID"], "Scores": {"binpack": round(score, 4)},
                                            "NormScore": round(score, 4)})
            if len(feasible) >= 2:
                break  # Nomad scores a couple of feasible nodes (power of two choices), not all of them
        if not feasible:
            metric["ScoreMetaData"] = []
            return None, metric
        feasible.sort(key=lambda item: item[0], reverse=True)
        return feasible[0][1], metric

    def _candidate_nodes(self, job: dict, metric: dict) -> list[dict]:
        """Ready, eligible nodes of the job's node pool and datacenters, in random order."""
        candidates = []
        for node in self.nodes.values():
            if not pool_matches(job["NodePool"], node["NodePool"]):
                continue
            metric["NodesInPool"] += 1
            if not datacenter_matches(job["Datacenters"], node["Datacenter"]):
                continue
            if node["Status"] != "ready" or node["SchedulingEligibility"] != "eligible":
                continue
            bump(metric["NodesAvailable"], node["Datacenter"])
            candidates.append(node)
        random.shuffle(candidates)
        return candidates

    def _node_is_feasible(self, job: dict, node: dict, group: dict, constraints: list[dict], metric: dict) -> bool:
        """Drivers, host volumes, then constraints, with the reasons of scheduler/feasible/feasible.go."""
        drivers = {task["Driver"] for task in group["Tasks"]}
        volumes = {v.get("Source") for v in (group.get("Volumes") or {}).values() if v.get("Type") == "host"}
        node_allocs = self._allocs_by_node.get(node["ID"], {}).values()
        on_node = sum(1 for a in node_allocs if a["JobID"] == job["ID"] and not is_terminal_alloc(a))
        reason = None
        if any(not node["Drivers"].get(d, {}).get("Healthy") for d in drivers):
            reason = "missing drivers"
        elif not volumes <= set(node.get("HostVolumes") or {}):
            reason = "missing compatible host volumes"
        else:
            rejected = next((c for c in constraints if not constraint_holds(c, node, on_node)), None)
            reason = constraint_text(rejected) if rejected is not None else None
        if reason is None:
            return True
        metric["NodesFiltered"] += 1
        bump(metric["ConstraintFiltered"], reason)
        if node["NodeClass"]:
            bump(metric["ClassFiltered"], node["NodeClass"])
        return False

    def _binpack_score(self, node: dict, ask: tuple[int, int, int], extra: tuple[int, int, int],
                       metric: dict) -> float | None:
        """The node's bin-packing score with the ask placed, or None (and the metric noted) when it does not fit."""
        used_cpu, used_memory, used_disk = extra
        for alloc in self._allocs_by_node.get(node["ID"], {}).values():
            if not is_terminal_alloc(alloc):
                cpu, memory, disk = alloc_usage(alloc)
                used_cpu, used_memory, used_disk = used_cpu + cpu, used_memory + memory, used_disk + disk
        total, reserved = node["NodeResources"], node["ReservedResources"]
        capacity_cpu = total["Cpu"]["CpuShares"] - reserved["Cpu"]["CpuShares"]
        capacity_memory = total["Memory"]["MemoryMB"] - reserved["Memory"]["MemoryMB"]
        capacity_disk = total["Disk"]["DiskMB"] - reserved["Disk"]["DiskMB"]
        ask_cpu, ask_memory, ask_disk = ask
        dimension = ("cpu" if ask_cpu > capacity_cpu - used_cpu
                     else "memory" if ask_memory > capacity_memory - used_memory
                     else "disk" if ask_disk > capacity_disk - used_disk else None)
        if dimension is not None:
            metric["NodesExhausted"] += 1
            bump(metric["DimensionExhausted"], dimension)
            if node["NodeClass"]:
                bump(metric["ClassExhausted"], node["NodeClass"])
            return None
        return ((used_cpu + ask_cpu) / max(1, capacity_cpu) + (used_memory + ask_memory) / max(1, capacity_memory)) / 2

    def _new_alloc(self, job: dict, group: dict, node: dict, evaluation: dict, index: int,
                   previous: dict | None, metric: dict) -> dict:
        disk = int(group["EphemeralDisk"]["SizeMB"])
        tasks = {t["Name"]: {"Cpu": {"CpuShares": int(t["Resources"]["CPU"]), "ReservedCores": None},
                             "Memory": {"MemoryMB": int(t["Resources"]["MemoryMB"]),
                                        "MemoryMaxMB": int(t["Resources"].get("MemoryMaxMB") or 0)},
                             "Networks": None, "Devices": None} for t in group["Tasks"]}
        tracker = None
        if previous is not None:
            events = list((previous.get("RescheduleTracker") or {}).get("Events") or [])
            if previous["ClientStatus"] == "failed":
                events.append({"RescheduleTime": now_ns(), "PrevAllocID": previous["ID"],
                               "PrevNodeID": previous["NodeID"], "Delay": 0})
            tracker = {"Events": events}
        return {
            "ID": new_id(), "Namespace": job["Namespace"], "EvalID": evaluation["ID"],
            "Name": f"{job['ID']}.{group['Name']}[{index}]", "NodeID": node["ID"], "NodeName": node["Name"],
            "JobID": job["ID"], "Job": copy.deepcopy(job), "JobVersion": job["Version"], "TaskGroup": group["Name"],
            "AllocatedResources": {"Tasks": tasks, "TaskLifecycles": {name: None for name in tasks},
                                   "Shared": {"DiskMB": disk, "Networks": None, "Ports": None}},
            "Resources": {"CPU": sum(t["Cpu"]["CpuShares"] for t in tasks.values()),
                          "MemoryMB": sum(t["Memory"]["MemoryMB"] for t in tasks.values()), "DiskMB": disk},
            "Metrics": metric, "DesiredStatus": "run", "DesiredDescription": "", "DesiredTransition": {},
            "ClientStatus": "pending", "ClientDescription": "No tasks have started", "TaskStates": None,
            "DeploymentID": "", "DeploymentStatus": None,
            "PreviousAllocation": previous["ID"] if previous is not None else "", "NextAllocation": "",
            "RescheduleTracker": tracker, "FollowupEvalID": "", "PreemptedAllocations": None,
            "PreemptedByAllocation": "", "CreateIndex": 0, "ModifyIndex": 0, "AllocModifyIndex": 0,
            "CreateTime": now_ns(), "ModifyTime": now_ns(),
        }

    def _stop_allocs(self, allocs: list[dict], description: str) -> None:
        if not allocs:
            return
        with self.txn("PlanResult") as t:
            for alloc in allocs:
                alloc["DesiredStatus"] = "stop"
                alloc["DesiredDescription"] = description
                if alloc["ClientStatus"] == "pending" and alloc["ID"] not in self._runners:
                    alloc["ClientStatus"] = "complete"
                t.put("allocs", alloc)
        for alloc in allocs:
            runner = self._runners.get(alloc["ID"])
            if runner is not None and not runner.cut_off:  # (a cut-off client hears of it when it is back)
                runner.kill()
        self._unblock()

    # -- clients -----------------------------------------------------------------------------
    def _start_runner(self, alloc: dict, *, restored: bool = False) -> None:
        runner = AllocRunner(self, alloc, restored=restored)
        self._runners[alloc["ID"]] = runner
        task = self._spawn(runner.run(), f"alloc-{alloc['ID'][:8]}")
        # (a runner cut off from the servers stays known until its node is back to report its end)
        # (and one that died with its node leaves the runner its client restored in place: _node_back)
        task.add_done_callback(lambda _t, alloc_id=alloc["ID"], runner=runner: None if runner.cut_off or
                               self._runners.get(alloc_id) is not runner else self._runners.pop(alloc_id, None))

    def alloc_terminal(self, alloc: dict) -> None:
        """A client reported an allocation ended: reschedule if the policy says so, and free capacity."""
        node = self.nodes.get(alloc["NodeID"])
        if node is not None and node["DrainStrategy"] is not None:
            self._drain_done(node)
        job = self.jobs.get((alloc["Namespace"], alloc["JobID"]))
        if alloc["ClientStatus"] == "failed" and job is not None and not job["Stop"]:
            group = next((g for g in job["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), None)
            if group is not None and self._reschedule_at(job, group, alloc, now_ns()) is not None:
                self._create_eval(job, "alloc-failure")
        self._unblock()

    def log_path(self, alloc_id: str, task: str, kind: str) -> Path:
        return self.work_dir / "allocs" / alloc_id / "alloc" / "logs" / f"{task}.{kind}.0"

    # -- garbage collection ---------------------------------------------------------------------
    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.gc_interval_s)
            self.gc(force=False)

    def gc(self, force: bool) -> int:
        """Remove dead jobs (older than the threshold unless forced) with their allocations and evaluations."""
        threshold = int(self.job_gc_threshold_s * NS)
        now = now_ns()
        doomed = []
        for key, job in self.jobs.items():
            if job["Status"] != "dead":
                continue
            allocs = self.job_allocs(*key, any_create_index=True)
            evals = self.job_evals(*key)
            if any(not is_terminal_alloc(a) or a["ID"] in self._runners for a in allocs):
                continue
            if any(e["Status"] not in TERMINAL_EVAL for e in evals):
                continue
            if any(c.get("ParentID") == job["ID"] and c["Namespace"] == job["Namespace"] and c["Status"] != "dead"
                   for c in self.jobs.values()):
                continue
            if force or now - self._job_touched_ns.get(key, 0) >= threshold:
                doomed.append((job, allocs, evals))
        orphans = [a for a in self.allocs.values()
                   if (a["Namespace"], a["JobID"]) not in self.jobs and is_terminal_alloc(a)
                   and a["ID"] not in self._runners
                   and (force or now - a["ModifyTime"] >= threshold)]
        orphan_evals = [e for e in self.evals.values()
                        if (e["Namespace"], e["JobID"]) not in self.jobs and e["Status"] in TERMINAL_EVAL
                        and (force or now - e["ModifyTime"] >= threshold)]
        if not doomed and not orphans and not orphan_evals:
            return 0
        with self.txn("JobBatchDeregistered") as t:
            for job, allocs, evals in doomed:
                t.delete("jobs", job)
                for alloc in allocs:
                    t.delete("allocs", alloc)
                for evaluation in evals:
                    t.delete("evals", evaluation)
            for alloc in orphans:
                t.delete("allocs", alloc)
            for evaluation in orphan_evals:
                t.delete("evals", evaluation)
        for job, _allocs, _ in doomed:
            self._queued_allocs.pop((job["Namespace"], job["ID"]), None)
        if doomed:
            logger.info("emulator (test double): garbage-collected %d dead job(s)", len(doomed))
        return len(doomed)
