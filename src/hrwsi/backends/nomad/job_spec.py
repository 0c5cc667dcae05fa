"""The Nomad job of one attempt (JSON API form), built without I/O, and the secret check before submitting.

- ID = spec.job_id, Type batch, one group ("hrwsi") with one task named after the routine.
- Resources: CPU = ceil(cores x MHz per core), MemoryMB; disk is the group's EphemeralDisk.
- Placement: pin mode constrains `${node.unique.name}` = the planned worker; flavour mode
  constrains `${node.class}` = the worker's flavour (node pool names cannot hold the dots of
  flavour names such as "eo2.large", classes can), so Nomad picks any node of that size.
- hrwsi owns retries: RestartPolicy 0 attempts (mode fail), ReschedulePolicy 0 attempts, and
  Disconnect.Replace false: an allocation lost with its node is not replaced by Nomad (whatever the
  reschedule policy says, Nomad replaces lost allocations otherwise: structs.go TaskGroup.Replace).
  Disconnect.StopOnClientAfter (HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S): a client cut off from the
  servers stops the attempt after that long (client/heartbeatstop.go), so the launcher knows when an
  attempt whose node is away can no longer run, and retries it only then (following.py).
- KillTimeout HRWSI_NOMAD_KILL_TIMEOUT_S (default 30 s): from the stop signal to SIGKILL.
- Disk: the routine's storage as EphemeralDisk (at least Nomad's minimum, 10 MB); the task's log
  rotation is sized to stay below it, since Nomad refuses log storage (MaxFiles x MaxFileSizeMB)
  that is not less than the disk (structs.go LogConfig.Validate).
- Priority: NOMAD_URGENT_PRIORITY (59) for a task served urgently (priority 0: near-real-time, or archive work aged or
  raised by a fresh scene of its time series), Nomad's default 50 otherwise, so that among jobs waiting in Nomad for
  room the urgent one is placed first (see nomad_priority).
- NodePool from HRWSI_NOMAD_NODE_POOL (Nomad puts a job without one in "default").
- Meta shows the task in Nomad's UI (and the hrwsi version and installation that registered it); Env is
  spec.environment() minus anything named like a secret (use HRWSI_NOMAD_SECRETS_VARIABLE: a
  Nomad Variable rendered by a template).
- Driver: docker when the routine has an image, else raw_exec (or exec) running spec.argv(). The
  data reaches the task through the host volume HRWSI_NOMAD_HOST_VOLUME when set (any driver);
  otherwise docker mounts host paths, which clients allow only with `volumes { enabled = true }`
  (drivers/docker/config.go, default false), so the job is constrained to nodes whose docker
  driver reports `driver.docker.volumes.enabled`. exec needs the host volume (see NomadConfig), and
  its command must be inside the clients' chroot (HRWSI_NOMAD_EXEC_CHROOT) or the volume.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hrwsi.backends.base import SECRET_NAME, JobSpec, TaskRefused
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.migrations import build_version

logger = logging.getLogger(__name__)

NS = 1_000_000_000  # Nomad durations are integer nanoseconds
GROUP_NAME = "hrwsi"
META_KEYS = ("hrwsi_task_id", "hrwsi_input_path", "hrwsi_routine", "hrwsi_condition", "hrwsi_tile", "hrwsi_attempt",
             "hrwsi_version", "hrwsi_installation")
# The Meta key naming the installation that registered a job: job IDs (made in SQL) carry none, so two
# installations sharing a namespace make the same IDs, and only this tells whose a job is.
INSTALLATION_META = "hrwsi_installation"
# The Meta key of an attempt's registration: its job row's claim token (hrwsi.job.claim_token, unique per
# claim; a random one for a spec without it, on its first start). Job IDs are deterministic, and a database
# restored from an older backup (or a copy of HRWSI_HOME, another installation on the same namespace) makes
# IDs that jobs it does not know hold: only this tells this claim's own registration, which an adopter
# after a crash follows, from such a job, which is left alone while the attempt runs under an ID of its own.
CLAIM_META = "hrwsi_claim"
MIN_DISK_MB = 10  # nomad/structs/structs.go EphemeralDisk.Validate: "minimum DiskMB value is 10" (configuration
# refuses a routine's storage_mb below it: MIN_ROUTINE_STORAGE_MB; disk_mb still raises a smaller one, for a job spec
# built otherwise)
MAX_LOG_FILES, MAX_LOG_FILE_MB = 5, 20
# Job priorities. Nomad's eval broker hands out the evaluations waiting for a scheduler highest priority first, then
# highest ModifyIndex (nomad/eval_broker.go, PendingEvaluations.Less); so do the blocked ones a freed node unblocks
# (nomad/blocked_evals.go, enqueued together). Every job at one priority, which waiting job took the room freed was
# told by which evaluation was written last, not by lane. Urgent work one notch up orders the queue; less than 10
# apart, so that where an operator turned batch preemption on Nomad still never evicts a running hrwsi job (nor
# anyone's at the default 50) for it (scheduler/feasible/preemption.go: "if p.jobPriority-alloc.Job.Priority < 10",
# not preemptible): ADR 0009, preempt the queue position, not running work.
NOMAD_DEFAULT_PRIORITY = 50  # nomad/structs/structs.go JobDefaultPriority
NOMAD_URGENT_PRIORITY = 59


def nomad_priority(spec: JobSpec) -> int:
    """The Nomad job priority of an attempt: its task served urgently (priority 0) above the rest (a spec that does
    not say its task's priority is not told urgent: Nomad's default, as before)."""
    return NOMAD_URGENT_PRIORITY if spec.priority == 0 else NOMAD_DEFAULT_PRIORITY


DOCKER_VOLUMES = "${attr.driver.docker.volumes.enabled}"
HOST_VOLUME_KEY = "hrwsi-data"


def scale_body(job_id: str, count: int | None, message: str) -> dict:
    """POST /v1/job/:id/scale: the group's count (api.ScalingRequest, nomad/job_endpoint.go Job.Scale); without a
    count, a scaling event that changes nothing."""
    body = {"Count": count, "Target": {"Job": job_id, "Group": GROUP_NAME}, "Message": message}
    if count is None:
        del body["Count"]
    return body


def disk_mb(storage_mb: int) -> int:
    return max(MIN_DISK_MB, int(storage_mb))


def log_config(disk: int) -> dict[str, int]:
    """Log rotation that keeps the task's logs within a quarter of its disk (at most 5 x 20 MB)."""
    budget = max(1, disk // 4)
    files = min(MAX_LOG_FILES, budget)
    return {"MaxFiles": files, "MaxFileSizeMB": max(1, min(MAX_LOG_FILE_MB, budget // files))}


def nomad_cpu_mhz(cores: float, mhz_per_core: float) -> int:
    """Cores as Nomad's CPU MHz, rounded up (0.5 core at 1000 MHz/core = 500)."""
    return max(1, math.ceil(round(cores * mhz_per_core, 6)))


def task_name(routine: str) -> str:
    """The Nomad task name of a routine (also the key of its TaskStates in an allocation)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", routine).lower() or "routine"


def secret_values(config: NomadConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values that must never appear in a job spec: the Nomad token and every *PASSWORD*/*SECRET*/*TOKEN* variable."""
    env = os.environ if environ is None else environ
    found = {name: value for name, value in env.items()
             if SECRET_NAME.search(name) and len(value) >= 8 and not value.startswith(("/", ".", "~"))}
    if config.token:
        found["NOMAD_TOKEN"] = config.token
    return found


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _strings(value)


def assert_no_secrets(job: dict, config: NomadConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to submit a spec that contains the value of a secret (a bug, or a secret in a routine's command)."""
    secrets = secret_values(config, environ)
    for text in _strings(job):
        for name, value in secrets.items():
            if value in text:
                raise ValueError(f"refusing to submit job {job.get('ID')}: its spec would contain the value of "
                                 f"${name}; pass secrets through Nomad Variables, never in a job spec")


def _task_env(spec: JobSpec) -> dict[str, str]:
    env = {}
    for key, value in spec.environment().items():
        if SECRET_NAME.search(key):
            logger.warning("job %s: leaving %s out of the Nomad job spec (it looks like a secret; give it "
                           "through a Nomad Variable: HRWSI_NOMAD_SECRETS_VARIABLE)", spec.job_id, key)
            continue
        env[key] = value
    return env


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _driver_and_config(spec: JobSpec, config: NomadConfig) -> tuple[str, dict[str, Any]]:
    argv = spec.argv()
    if not spec.image:
        if not spec.command:
            raise ValueError(f"routine {spec.routine} has neither an image nor a command")
        if config.exec_driver == "exec":
            _check_exec_paths(spec, config, argv[0])
        return config.exec_driver, {"command": argv[0], "args": argv[1:]}
    task_config: dict[str, Any] = {"image": spec.image}
    if spec.command:
        task_config["command"] = argv[0]
        task_config["args"] = argv[1:]
    else:
        task_config["args"] = argv
    if config.host_volume is None:
        # The attempt's own directory (its output and manifest) read-write, and exactly the data the
        # task reads (its input, a multi-input task's members, the previous products of its series)
        # read-only, each at its own path: never a parent directory chosen by input data (`/` for a
        # top-level path), so an input cannot steer what the container sees.
        mounts = [f"{spec.attempt_dir}:{spec.attempt_dir}"]
        mounts += [f"{path}:{path}:ro" for path in data_paths(spec) if not _under(path, spec.attempt_dir)]
        task_config["volumes"] = mounts
    return "docker", task_config


def data_paths(spec: JobSpec) -> list[str]:
    """The absolute paths a task reads: its input, and from its manifest the members of a multi-input
    task and the previous products of its series (in order, without repeats)."""
    paths = [spec.input_path]
    if spec.manifest:
        manifest = json.loads(spec.manifest)
        paths += [m.get("path") for m in manifest.get("members") or []]
        series = manifest.get("series") or {}
        paths += [p.get("path") for p in series.get("previous_products") or []]
    return list(dict.fromkeys(p for p in paths if isinstance(p, str) and p.startswith("/")))


def refuse_interpolation(spec: JobSpec) -> None:
    """Nomad replaces `${...}` in a task's args, env and mounts with node attributes and runtime
    variables (client/taskenv, helper/args.ReplaceEnv): data that carries `${` could steer what a job
    reads or writes. The database refuses new such input paths; this refuses whatever reaches a spec
    (rows older than that check, chained products). A path of the task's own data raises TaskRefused:
    no attempt of that task can run, and it is no failure of its routine."""
    for value in (spec.input_path, *data_paths(spec)):
        if "${" in value:
            raise TaskRefused(f"job {spec.job_id}: the task's data path {value!r} contains '${{', which Nomad would "
                              f"interpolate (a node attribute or a runtime variable); refusing to submit it")
    for value in (spec.output_dir, spec.log_path, spec.image or "", *spec.command, *spec.env.values()):
        if "${" in value:
            raise ValueError(f"job {spec.job_id}: {value!r} contains '${{', which Nomad would interpolate "
                             f"(a node attribute or a runtime variable); refusing to submit it")


def _check_exec_paths(spec: JobSpec, config: NomadConfig, binary: str) -> None:
    """exec runs the task in a chroot (the clients' chroot_env) plus the data's host volume: refuse what it
    cannot see there (drivers/shared/executor: "file ... not found under path")."""
    _, data = config.host_volume_mount()
    if not any(_under(binary, root) for root in (*config.exec_chroot, data)):
        raise ValueError(f"routine {spec.routine}: the exec driver cannot run {binary}: it is neither in the clients' "
                         f"chroot ({', '.join(config.exec_chroot)}; HRWSI_NOMAD_EXEC_CHROOT, client chroot_env) nor in "
                         f"the host volume at {data}")
    for what, path in (("output directory", spec.output_dir), ("input", spec.input_path)):
        if path.startswith("/") and not _under(path, data):
            raise ValueError(f"routine {spec.routine}: its {what} {path} is outside the host volume mounted at {data} "
                             "(HRWSI_NOMAD_HOST_VOLUME): the exec driver's chroot would not see it")


def _constraints(spec: JobSpec, config: NomadConfig, flavour: str | None) -> list[dict[str, str]]:
    constraints = []
    if config.placement == "flavour" and flavour:
        constraints.append({"LTarget": "${node.class}", "Operand": "=", "RTarget": flavour})
    elif spec.worker:
        constraints.append({"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": spec.worker})
    if spec.image and config.host_volume is None:
        # Nomad then says why it waits ('Constraint "... = true" filtered 1 nodes') instead of failing it.
        constraints.append({"LTarget": DOCKER_VOLUMES, "Operand": "=", "RTarget": "true"})
    return constraints


def secrets_template(variable: str) -> dict[str, Any]:
    return {"EmbeddedTmpl": ('{{ with nomadVar "' + variable + '" }}{{ range .Tuples }}'
                             '{{ .K }}={{ .V | toJSON }}\n{{ end }}{{ end }}'),
            "DestPath": "secrets/hrwsi.env", "Envvars": True, "ChangeMode": "noop"}


def build_job(spec: JobSpec, config: NomadConfig, *, flavour: str | None = None) -> dict:
    """The Nomad job (JSON API form) of one attempt. Pure: no I/O, no clock. See the module docstring."""
    refuse_interpolation(spec)
    driver, task_config = _driver_and_config(spec, config)
    task: dict[str, Any] = {
        "Name": task_name(spec.routine),
        "Driver": driver,
        "Config": task_config,
        "Env": _task_env(spec),
        "Resources": {"CPU": nomad_cpu_mhz(spec.cpu, config.mhz_per_core), "MemoryMB": int(spec.ram_mb)},
        "KillTimeout": round(config.kill_timeout_s * NS),
        "LogConfig": log_config(disk_mb(spec.storage_mb)),
    }
    if config.secrets_variable:
        task["Templates"] = [secrets_template(config.secrets_variable)]
    group: dict[str, Any] = {
        "Name": GROUP_NAME,
        "Count": 1,
        "Constraints": _constraints(spec, config, flavour),
        "RestartPolicy": {"Attempts": 0, "Mode": "fail", "Interval": 24 * 3600 * NS, "Delay": 15 * NS},
        "ReschedulePolicy": {"Attempts": 0, "Unlimited": False, "Interval": 24 * 3600 * NS, "Delay": 5 * NS,
                             "DelayFunction": "constant", "MaxDelay": 0},
        "Disconnect": {"Replace": False, "StopOnClientAfter": round(config.stop_after_disconnect_s * NS)},
        "EphemeralDisk": {"SizeMB": disk_mb(spec.storage_mb), "Sticky": False, "Migrate": False},
        "Tasks": [task],
    }
    if config.host_volume is not None:
        name, path = config.host_volume_mount()
        group["Volumes"] = {HOST_VOLUME_KEY: {"Name": HOST_VOLUME_KEY, "Type": "host", "Source": name,
                                              "ReadOnly": False}}
        task["VolumeMounts"] = [{"Volume": HOST_VOLUME_KEY, "Destination": path, "ReadOnly": False}]
    job = {
        "ID": spec.job_id,
        "Name": spec.job_id,
        "Type": "batch",
        "Namespace": config.namespace,
        "Datacenters": list(config.datacenters),
        "NodePool": config.node_pool,
        "Priority": nomad_priority(spec),
        "Meta": {
            "hrwsi_task_id": str(spec.task_id),
            "hrwsi_input_path": spec.input_path,
            "hrwsi_routine": spec.routine,
            "hrwsi_condition": spec.condition,
            "hrwsi_tile": spec.tile or "",
            "hrwsi_attempt": str(spec.attempt),
            "hrwsi_version": build_version(),  # the launcher's that registered it (an upgrade under way)
            INSTALLATION_META: spec.installation or "",  # whose job it is (NomadBackend._is_ours)
        },
        "TaskGroups": [group],
    }
    if config.region:
        job["Region"] = config.region
    return job


def register_body(job: dict) -> dict:
    """POST /v1/jobs: register only if no job has this ID (EnforceIndex with JobModifyIndex 0, Nomad's
    check-and-set), so registering an attempt again never runs it twice."""
    return {"Job": job, "EnforceIndex": True, "JobModifyIndex": 0}
