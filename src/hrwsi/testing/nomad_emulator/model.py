"""Nomad's data model as the emulator (test double) needs it: defaults, validation, constraints.

Written from the semantics in docs (see /work/shared/reference/nomad-api.md): server-side
defaults applied at registration, job validation errors as Nomad words them, node feasibility and
the allocation metrics Nomad records when a task group fits nowhere.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NS = 1_000_000_000  # Nomad durations are integer nanoseconds
HOUR = 3600 * NS

JOB_TYPES = ("service", "batch", "system", "sysbatch")
EMULATED_JOB_TYPES = ("service", "batch")
DELAY_FUNCTIONS = ("constant", "exponential", "fibonacci")
CONSTRAINT_OPERANDS = ("=", "==", "is", "!=", "not", "<", "<=", ">", ">=", "distinct_hosts", "distinct_property",
                       "regexp", "version", "semver", "set_contains", "set_contains_all", "set_contains_any",
                       "is_set", "is_not_set")

RESTART_DEFAULTS = {
    "batch": {"Attempts": 3, "Interval": 24 * HOUR, "Delay": 15 * NS, "Mode": "fail", "RenderTemplates": False},
    "service": {"Attempts": 2, "Interval": 30 * 60 * NS, "Delay": 15 * NS, "Mode": "fail", "RenderTemplates": False},
}
RESCHEDULE_DEFAULTS = {
    "batch": {"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * NS, "DelayFunction": "constant", "MaxDelay": 0,
              "Unlimited": False},
    "service": {"Attempts": 0, "Interval": 0, "Delay": 30 * NS, "DelayFunction": "exponential",
                "MaxDelay": HOUR, "Unlimited": True},
}
RESOURCE_DEFAULTS = {"CPU": 100, "Cores": 0, "MemoryMB": 300, "MemoryMaxMB": 0, "DiskMB": 0, "IOPS": 0,
                     "Networks": [], "Devices": []}
EPHEMERAL_DISK_DEFAULTS = {"Sticky": False, "SizeMB": 300, "Migrate": False}
LOG_CONFIG_DEFAULTS = {"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": False}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class CodedError(Exception):
    """An HTTP error as Nomad answers it: a status and a plain-text body; `index` for a query's 404 (the
    handler ran setMeta before finding nothing: X-Nomad-Index and the other query headers go with it)."""

    def __init__(self, status: int, message: str, *, index: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.index = index


def now_ns() -> int:
    return time.time_ns()


def new_id() -> str:
    return str(uuid.uuid4())


def multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's text, which Nomad returns for validation errors."""
    head = "1 error occurred:" if len(errors) == 1 else f"{len(errors)} errors occurred:"
    return head + "\n" + "".join(f"\t* {e}\n" for e in errors) + "\n"


def _default(d: dict, key: str, value: Any) -> None:
    if d.get(key) is None:
        d[key] = copy.deepcopy(value)


def _merged(defaults: dict, given: dict | None) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if value is not None:
            out[key] = value
    return out


def canonicalize_job(raw: dict, namespace: str) -> dict:
    """The job as Nomad stores it: the API's Canonicalize plus the server's defaults."""
    job = copy.deepcopy(raw)
    _default(job, "Namespace", namespace)
    _default(job, "Region", "global")
    _default(job, "Name", job.get("ID"))
    if not job.get("Type"):
        job["Type"] = "service"
    _default(job, "Priority", 50)
    _default(job, "AllAtOnce", False)
    if not job.get("Datacenters"):
        job["Datacenters"] = ["*"]
    if not job.get("NodePool"):
        job["NodePool"] = "default"  # nomad/job_endpoint_hook_node_pool_ce.go (jobNodePoolMutatingHook)
    for key, value in (("Constraints", []), ("Affinities", None), ("Spreads", None), ("Meta", {}),
                       ("Periodic", None), ("ParameterizedJob", None), ("Payload", None), ("Dispatched", False),
                       ("DispatchIdempotencyToken", ""), ("ParentID", ""), ("Stop", False),
                       ("ConsulToken", ""), ("VaultToken", ""), ("NomadTokenID", ""), ("TaskGroups", [])):
        _default(job, key, value)
    kind = job["Type"] if job["Type"] in RESTART_DEFAULTS else "service"
    for group in job["TaskGroups"]:
        if not isinstance(group, dict):
            continue
        _default(group, "Count", 1)
        for key, value in (("Constraints", []), ("Meta", {}), ("Networks", []), ("Services", []),
                           ("Affinities", None), ("Spreads", None), ("Tasks", [])):
            _default(group, key, value)
        group["RestartPolicy"] = _merged(RESTART_DEFAULTS[kind], group.get("RestartPolicy"))
        if job["Type"] in RESCHEDULE_DEFAULTS:
            group["ReschedulePolicy"] = _merged(RESCHEDULE_DEFAULTS[kind], group.get("ReschedulePolicy"))
        group["EphemeralDisk"] = _merged(EPHEMERAL_DISK_DEFAULTS, group.get("EphemeralDisk"))
        # Deprecated in 1.8 for the Disconnect block and ignored since 1.10: the agent does not copy them into the
        # job it registers (command/agent/job_endpoint.go ApiTgToStructsTG), which shows them unset.
        group.update(MaxClientDisconnect=None, StopAfterClientDisconnect=None, PreventRescheduleOnLost=False)
        _default(group, "Disconnect", None)
        if isinstance(group["Disconnect"], dict):
            # api/tasks.go DisconnectStrategy.Canonicalize (Replace true, Reconcile best_score), and the fields of
            # nomad/structs/group.go DisconnectStrategy that the agent fills (LostAfter 0 when not given)
            group["Disconnect"] = {"LostAfter": 0, "StopOnClientAfter": None, "Replace": True,
                                   "Reconcile": "best_score", **{k: v for k, v in group["Disconnect"].items()
                                                                 if v is not None}}
        for task in group["Tasks"]:
            if not isinstance(task, dict):
                continue
            for key, value in (("User", ""), ("Config", {}), ("Env", {}), ("Meta", {}), ("Constraints", []),
                               ("Artifacts", []), ("Templates", []), ("Services", []), ("Leader", False),
                               ("KillSignal", ""), ("KillTimeout", 5 * NS), ("ShutdownDelay", 0),
                               ("Lifecycle", None), ("DispatchPayload", None)):
                _default(task, key, value)
            task["Resources"] = _merged(RESOURCE_DEFAULTS, task.get("Resources"))
            task["LogConfig"] = _merged(LOG_CONFIG_DEFAULTS, task.get("LogConfig"))
            task["RestartPolicy"] = copy.deepcopy(group["RestartPolicy"])
    return job


def validate_job(job: dict, admission_errors: list[str] | None = None) -> None:
    """Raise CodedError(500, multierror text) as Nomad's Job.Validate does. `admission_errors` are
    those of the validators Nomad runs before Job.Validate (the namespace's and the node pool's
    existence): nomad/job_endpoint_hooks.go admissionValidators appends every validator's errors to
    one multierror, flattened, so they come first in the same text."""
    errors: list[str] = list(admission_errors or [])
    job_id = job.get("ID") or ""
    if " " in job_id:
        errors.append("Job ID contains a space")
    if "\x00" in job_id:
        errors.append("Job ID contains a null character")
    if job["Type"] not in JOB_TYPES:
        errors.append(f'Invalid job type: "{job["Type"]}"')
    if not 1 <= int(job["Priority"]) <= 100:
        errors.append("Job priority must be between [1, 100]")
    for constraint in job["Constraints"]:
        errors.extend(_constraint_errors(constraint))
    if job.get("ParameterizedJob") is not None and job["Type"] not in ("batch", "sysbatch"):
        errors.append('Parameterized job can only be used with "batch" or "sysbatch" scheduler')
    groups = job["TaskGroups"]
    if not groups:
        errors.append("Missing job task groups")
    seen: dict[str, int] = {}
    for i, group in enumerate(groups, start=1):
        if not isinstance(group, dict):
            errors.append(f"Job task group {i} is not an object")
            continue
        name = group.get("Name") or ""
        if not name:
            errors.append(f"Job task group {i} missing name")
        elif name in seen:
            errors.append(f"Job task group {i} redefines '{name}' from group {seen[name]}")
        else:
            seen[name] = i
        group_errors = _group_errors(group, job)
        if group_errors:
            errors.append(f"Task group {name} validation failed: {multierror(group_errors)}")
    if errors:
        raise CodedError(500, multierror(errors))
    if job["Type"] not in EMULATED_JOB_TYPES:
        raise CodedError(500, f"emulator (test double): job type {job['Type']!r} is not emulated; "
                              "use service or batch")


def _constraint_errors(constraint: dict) -> list[str]:
    operand = constraint.get("Operand") or "="
    if operand not in CONSTRAINT_OPERANDS:
        return [f'Unknown constraint type "{operand}"']
    if operand not in ("distinct_hosts", "distinct_property") and not constraint.get("LTarget"):
        return ["No LTarget provided but is required by constraint"]
    if operand == "regexp":
        try:
            re.compile(constraint.get("RTarget") or "")
        except re.error as error:
            return [f"Regular expression failed to compile: {error}"]
    return []


def _group_errors(group: dict, job: dict) -> list[str]:
    errors: list[str] = []
    if int(group["Count"]) < 0:
        errors.append("Task group count can't be negative")
    if not group["Tasks"]:
        errors.append("Missing tasks for task group")
    restart = group["RestartPolicy"]
    if restart.get("Mode") not in ("delay", "fail"):
        errors.append(f'Unsupported restart mode: "{restart.get("Mode")}"')
    if int(restart.get("Attempts", 0)) < 0:
        errors.append("Restart attempts can't be negative")
    reschedule = group.get("ReschedulePolicy")
    if reschedule is not None and reschedule.get("DelayFunction") not in DELAY_FUNCTIONS:
        errors.append(f'Invalid delay function "{reschedule.get("DelayFunction")}", must be one of '
                      f"[{' '.join(DELAY_FUNCTIONS)}]")
    size = int(group["EphemeralDisk"].get("SizeMB") or 0)
    if size < 10:
        errors.append(f"minimum DiskMB value is 10; got {size}")
    for constraint in group["Constraints"]:
        errors.extend(_constraint_errors(constraint))
    errors.extend(_disconnect_errors(group.get("Disconnect"), job))
    names: set[str] = set()
    for i, task in enumerate(group["Tasks"], start=1):
        if not isinstance(task, dict):
            errors.append(f"Task {i} is not an object")
            continue
        name = task.get("Name") or ""
        if not name:
            errors.append(f"Task {i} missing name")
        elif name in names:
            errors.append(f"Task {i} redefines '{name}' from task {i - 1}")
        names.add(name)
        task_errors = _task_errors(task) + _log_config_errors(task, group["EphemeralDisk"])
        if task_errors:
            errors.append(f"Task {name} validation failed: {multierror(task_errors)}")
    return errors


def _task_errors(task: dict) -> list[str]:
    errors: list[str] = []
    if task.get("Name") == "alloc":
        # nomad/structs/structs.go Task.Validate: the name would clash with the allocation's shared
        # "alloc" directory (task filesystem isolation).
        errors.append('Task cannot be named "alloc"')
    if not task.get("Driver"):
        errors.append("Missing task driver")
    resources = task["Resources"]
    if int(resources.get("DiskMB") or 0) > 0:
        errors.append("Task can't ask for disk resources, they have to be specified at the task group level.")
    cpu, cores = int(resources.get("CPU") or 0), int(resources.get("Cores") or 0)
    if cores == 0 and cpu < 1:
        errors.append(f"minimum CPU value is 1; got {cpu}")
    memory = int(resources.get("MemoryMB") or 0)
    if memory < 10:
        errors.append(f"minimum MemoryMB value is 10; got {memory}")
    if int(task.get("KillTimeout") or 0) < 0:
        errors.append("KillTimeout must be a positive value")
    for constraint in task["Constraints"]:
        errors.extend(_constraint_errors(constraint))
    return errors


def _log_config_errors(task: dict, disk: dict) -> list[str]:
    """LogConfig.Validate (nomad/structs/structs.go): log storage must be less than the group's disk."""
    log = task.get("LogConfig") or {}
    files, size = int(log.get("MaxFiles") or 0), int(log.get("MaxFileSizeMB") or 0)
    errors = []
    if files < 1:
        errors.append(f"minimum number of files is 1; got {files}")
    if size < 1:
        errors.append(f"minimum file size is 1MB; got {size}")
    if int(disk.get("SizeMB") or 0) <= files * size:
        errors.append(f"log storage ({files * size} MB) must be less than requested disk capacity "
                      f"({int(disk.get('SizeMB') or 0)} MB)")
    return errors


def spec_fingerprint(job: dict) -> dict:
    """The user-controlled part of a job: two registrations with equal fingerprints change nothing."""
    ignored = {"Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex", "ModifyIndex",
               "JobModifyIndex"}
    return {k: v for k, v in job.items() if k not in ignored}


# -- durations ----------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds ('30s', '5m', '1m30s', '100ms')."""
    text = text.strip()
    if text == "0":
        return 0.0  # (the one duration Go reads without a unit)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def format_duration(ns: int) -> str:
    """Go's Duration.String() for whole seconds and up, e.g. 24h0m0s."""
    seconds = ns / NS
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


# -- nodes and feasibility -------------------------------------------------------------------------
def node_target(target: str, node: dict) -> tuple[str | None, bool]:
    """Resolve a constraint target (${node.unique.name}, ${attr.x}, ${meta.x}) against a node."""
    if not (target.startswith("${") and target.endswith("}")):
        return target, True
    name = target[2:-1]
    fixed = {"node.unique.id": node["ID"], "node.unique.name": node["Name"], "node.datacenter": node["Datacenter"],
             "node.class": node["NodeClass"], "node.pool": node["NodePool"], "node.region": "global"}
    if name in fixed:
        return fixed[name], True
    if name.startswith("attr."):
        value = node["Attributes"].get(name[5:])
        return value, value is not None
    if name.startswith("meta."):
        value = (node.get("Meta") or {}).get(name[5:])
        return value, value is not None
    return None, False


def _compare(left: str, right: str, op: str) -> bool:
    try:
        a, b = float(left), float(right)
    except ValueError:
        a, b = left, right  # type: ignore[assignment]
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def constraint_holds(constraint: dict, node: dict, job_allocs_on_node: int) -> bool:
    operand = constraint.get("Operand") or "="
    if operand == "distinct_hosts":
        return job_allocs_on_node == 0
    if operand in ("distinct_property", "version", "semver"):
        return True  # accepted, not emulated
    left, left_found = node_target(constraint.get("LTarget") or "", node)
    right, right_found = node_target(constraint.get("RTarget") or "", node)
    if operand == "is_set":
        return left_found
    if operand == "is_not_set":
        return not left_found
    if operand in ("!=", "not"):
        return not (left_found and right_found) or left != right
    if not (left_found and right_found) or left is None or right is None:
        return False
    if operand in ("=", "==", "is"):
        return left == right
    if operand == "regexp":
        return re.search(right, left) is not None
    if operand in ("set_contains", "set_contains_all"):
        have = {s.strip() for s in left.split(",")}
        return all(s.strip() in have for s in right.split(","))
    if operand == "set_contains_any":
        have = {s.strip() for s in left.split(",")}
        return any(s.strip() in have for s in right.split(","))
    if operand in ("<", "<=", ">", ">="):
        return _compare(left, right, operand)
    return False


def constraint_text(constraint: dict) -> str:
    return f"{constraint.get('LTarget', '')} {constraint.get('Operand') or '='} {constraint.get('RTarget', '')}"


def datacenter_matches(patterns: list[str], datacenter: str) -> bool:
    return any(fnmatch.fnmatchcase(datacenter, p) for p in patterns)


def pool_matches(job_pool: str, node_pool: str) -> bool:
    """A job sees only the nodes of its pool, or all of them for "all" (scheduler/util.go)."""
    return job_pool == "all" or job_pool == node_pool


def new_alloc_metric() -> dict:
    return {"NodesEvaluated": 0, "NodesFiltered": 0, "NodesInPool": 0, "NodesAvailable": {}, "ClassFiltered": {},
            "ConstraintFiltered": {}, "NodesExhausted": 0, "ClassExhausted": {}, "DimensionExhausted": {},
            "QuotaExhausted": [], "ResourcesExhausted": None, "ScoreMetaData": [], "AllocationTime": 0,
            "CoalescedFailures": 0}


def bump(mapping: dict, key: str, by: int = 1) -> None:
    mapping[key] = mapping.get(key, 0) + by


# -- shared by the scheduler and the clients ---------------------------------------------------
ZERO_TIME = "0001-01-01T00:00:00Z"
TERMINAL_CLIENT = ("complete", "failed", "lost")
TERMINAL_EVAL = ("complete", "failed", "canceled")
# What the exec driver's chroot holds unless the client says otherwise (client/config/config.go DefaultChrootEnv).
DEFAULT_CHROOT_ENV = ("/bin", "/etc", "/lib", "/lib32", "/lib64", "/run/resolvconf", "/sbin", "/usr",
                      "/run/systemd/resolve")


def rfc3339(ns: int | None) -> str:
    if not ns:
        return ZERO_TIME
    seconds, rest = divmod(ns, NS)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


@dataclass
class EmulatedNode:
    """One emulated Nomad client node. CPU is in MHz, as Nomad counts it."""

    name: str
    cpu_mhz: int = 4000
    memory_mb: int = 8192
    disk_mb: int = 50_000
    reserved_cpu_mhz: int = 0
    reserved_memory_mb: int = 0
    reserved_disk_mb: int = 0
    node_pool: str = "default"
    node_class: str = ""
    datacenter: str = "dc1"
    cpu_cores: int | None = None
    drivers: tuple[str, ...] = ("raw_exec", "exec", "docker")
    meta: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    # plugin "docker" { config { volumes { enabled = true } } }: host paths may be mounted (default false)
    docker_volumes: bool = False
    # client { chroot_env { ... } }: what the exec driver's chroot holds (default: DefaultChrootEnv)
    chroot_env: tuple[str, ...] = DEFAULT_CHROOT_ENV
    # client { host_volume "name" { path = "..." } }
    host_volumes: dict[str, str] = field(default_factory=dict)


def is_terminal_alloc(alloc: dict) -> bool:
    return alloc["DesiredStatus"] in ("stop", "evict") or alloc["ClientStatus"] in TERMINAL_CLIENT


def alloc_usage(alloc: dict) -> tuple[int, int, int]:
    resources = alloc["AllocatedResources"]
    cpu = sum(t["Cpu"]["CpuShares"] for t in resources["Tasks"].values())
    memory = sum(t["Memory"]["MemoryMB"] for t in resources["Tasks"].values())
    return cpu, memory, resources["Shared"]["DiskMB"]


# TaskEvent fields Nomad marks deprecated, each with the Details key its setter fills as well
# (nomad/structs/structs.go: "Deprecated, use Details[...] to access this"; e.g. SetExitCode).
DEPRECATED_EVENT_FIELDS = {
    "FailsTask": "fails_task", "RestartReason": "restart_reason", "SetupError": "setup_error",
    "DriverError": "driver_error", "ExitCode": "exit_code", "Signal": "signal", "KillTimeout": "kill_timeout",
    "KillError": "kill_error", "KillReason": "kill_reason", "StartDelay": "start_delay",
    "DownloadError": "download_error", "ValidationError": "validation_error", "DiskLimit": "disk_limit",
    "FailedSibling": "failed_sibling", "VaultError": "vault_renewal_error", "TaskSignalReason": "task_signal_reason",
    "TaskSignal": "task_signal", "DriverMessage": "driver_message",
}


def task_event(type_: str, message: str = "", **extra: Any) -> dict:
    """A TaskEvent as Nomad's setters build it: each deprecated field given also lands in Details."""
    event = {"Type": type_, "Time": now_ns(), "DisplayMessage": message, "Details": {}, "Message": "",
             "FailsTask": False, "RestartReason": "", "SetupError": "", "DriverError": "", "ExitCode": 0,
             "Signal": 0, "KillTimeout": 0, "KillError": "", "KillReason": "", "StartDelay": 0,
             "DownloadError": "", "ValidationError": "", "DiskLimit": 0, "FailedSibling": "", "VaultError": "",
             "TaskSignalReason": "", "TaskSignal": "", "DriverMessage": "", "GenericSource": ""}
    details = dict(extra.pop("Details", None) or {})
    for name, value in extra.items():
        key = DEPRECATED_EVENT_FIELDS.get(name)
        if key is not None and key not in details and (value or name in ("ExitCode", "Signal")):
            details[key] = "true" if value is True else str(value)
    event.update(extra)
    event["Details"] = details
    return event


def _disconnect_errors(disconnect: dict | None, job: dict) -> list[str]:
    """nomad/structs/group.go DisconnectStrategy.Validate."""
    if disconnect is None:
        return []
    errors = []
    stop_after = disconnect.get("StopOnClientAfter")
    lost_after = int(disconnect.get("LostAfter") or 0)
    if stop_after is not None:
        if int(stop_after) < 0:
            errors.append("stop_after cannot be a negative duration")
        if job["Type"] not in ("service", "batch"):
            errors.append("stop_after can only be used with service or batch job types")
    if lost_after < 0:
        errors.append("lost_after cannot be a negative duration")
    if stop_after is not None and lost_after != 0:
        errors.append("Disconnect cannot be configured with both lost_after and stop_after")
    return errors


def stop_on_client_after_s(alloc: dict) -> float | None:
    """How long a client cut off from the servers keeps the allocation running: the group's
    Disconnect.StopOnClientAfter; None (or 0, which Nomad reads as unset: nomad/structs/alloc.go
    ShouldClientStop) keeps it running (client/heartbeatstop.go)."""
    group = next((g for g in alloc["Job"]["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), {})
    stop_after = int((group.get("Disconnect") or {}).get("StopOnClientAfter") or 0)
    return stop_after / NS if stop_after > 0 else None


def lost_after_ns(alloc: dict) -> int:
    """The group's Disconnect.LostAfter (nomad/structs/structs.go GetDisconnectLostAfter): 0 unless set
    (nomad/structs/alloc.go DisconnectTimeout)."""
    group = next((g for g in alloc["Job"]["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), {})
    return int((group.get("Disconnect") or {}).get("LostAfter") or 0)


def replace_on_disconnect(alloc: dict) -> bool:
    """The group's Disconnect.Replace, true unless set false (nomad/structs/structs.go TaskGroup.Replace)."""
    group = next((g for g in alloc["Job"]["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), {})
    replace = (group.get("Disconnect") or {}).get("Replace")
    return replace is None or bool(replace)


def registration_warnings(job: dict) -> str:
    """The Warnings of a registration (nomad/structs/structs.go Job.Warnings, TaskGroup.Warnings; nomad/
    job_endpoint_hooks.go: memory_max without oversubscription), merged as helper/warning.go does."""
    warnings = []
    for group in job["TaskGroups"]:
        for task in group["Tasks"]:
            if int((task.get("Resources") or {}).get("MemoryMaxMB") or 0) > 0:
                warnings.append(f'Memory oversubscription is not enabled; Task "{group["Name"]}.{task["Name"]}" '
                                "memory_max value will be ignored. Update the Scheduler Configuration to allow "
                                "oversubscription.")
    if not warnings:
        return ""
    head = "1 warning:\n" if len(warnings) == 1 else f"{len(warnings)} warnings:\n"
    return head + "".join(f"\n* {w.strip()}" for w in warnings)
