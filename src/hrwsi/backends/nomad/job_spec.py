"""The Nomad job of one attempt (JSON API form), built without I/O, and the secret check before submitting.

- ID = spec.job_id, Type batch, one group ("hrwsi") with one task named after the routine.
- Resources: CPU = ceil(cores x MHz per core), MemoryMB; disk is the group's EphemeralDisk.
- Placement: pin mode constrains `${node.unique.name}` = the planned worker; flavour mode
  constrains `${node.class}` = the worker's flavour (node pool names cannot hold the dots of
  flavour names such as "eo2.large", classes can), so Nomad picks any node of that size.
- hrwsi owns retries: RestartPolicy 0 attempts (mode fail), ReschedulePolicy 0 attempts.
- Meta shows the task in Nomad's UI; Env is spec.environment() minus anything named like a
  secret (use HRWSI_NOMAD_SECRETS_VARIABLE: a Nomad Variable rendered by a template).
- Driver: docker when the routine has an image, else raw_exec (or exec) running spec.argv().
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hrwsi.backends.base import SECRET_NAME, JobSpec
from hrwsi.backends.nomad.config import NomadConfig

logger = logging.getLogger(__name__)

NS = 1_000_000_000  # Nomad durations are integer nanoseconds
GROUP_NAME = "hrwsi"
META_KEYS = ("hrwsi_task_id", "hrwsi_input_path", "hrwsi_routine", "hrwsi_condition", "hrwsi_tile", "hrwsi_attempt")
LOG_CONFIG = {"MaxFiles": 5, "MaxFileSizeMB": 20}


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


def _driver_and_config(spec: JobSpec, config: NomadConfig) -> tuple[str, dict[str, Any]]:
    argv = spec.argv()
    if not spec.image:
        if not spec.command:
            raise ValueError(f"routine {spec.routine} has neither an image nor a command")
        return config.exec_driver, {"command": argv[0], "args": argv[1:]}
    task_config: dict[str, Any] = {"image": spec.image}
    if spec.command:
        task_config["command"] = argv[0]
        task_config["args"] = argv[1:]
    else:
        task_config["args"] = argv
    mounts = [f"{spec.output_dir}:{spec.output_dir}"]
    if spec.input_path.startswith("/"):
        parent = str(Path(spec.input_path).parent)
        mounts.append(f"{parent}:{parent}:ro")
    task_config["volumes"] = mounts
    return "docker", task_config


def _constraints(spec: JobSpec, config: NomadConfig, flavour: str | None) -> list[dict[str, str]]:
    if config.placement == "flavour" and flavour:
        return [{"LTarget": "${node.class}", "Operand": "=", "RTarget": flavour}]
    if spec.worker:
        return [{"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": spec.worker}]
    return []


def _secrets_template(variable: str) -> dict[str, Any]:
    return {"EmbeddedTmpl": ('{{ with nomadVar "' + variable + '" }}{{ range .Tuples }}'
                             '{{ .K }}={{ .V | toJSON }}\n{{ end }}{{ end }}'),
            "DestPath": "secrets/hrwsi.env", "Envvars": True, "ChangeMode": "noop"}


def build_job(spec: JobSpec, config: NomadConfig, *, flavour: str | None = None) -> dict:
    """The Nomad job (JSON API form) of one attempt. Pure: no I/O, no clock. See the module docstring."""
    driver, task_config = _driver_and_config(spec, config)
    task: dict[str, Any] = {
        "Name": task_name(spec.routine),
        "Driver": driver,
        "Config": task_config,
        "Env": _task_env(spec),
        "Resources": {"CPU": nomad_cpu_mhz(spec.cpu, config.mhz_per_core), "MemoryMB": int(spec.ram_mb)},
        "KillTimeout": 30 * NS,
        "LogConfig": dict(LOG_CONFIG),
    }
    if config.secrets_variable:
        task["Templates"] = [_secrets_template(config.secrets_variable)]
    job = {
        "ID": spec.job_id,
        "Name": spec.job_id,
        "Type": "batch",
        "Namespace": config.namespace,
        "Datacenters": list(config.datacenters),
        "Priority": 50,
        "Meta": {
            "hrwsi_task_id": str(spec.task_id),
            "hrwsi_input_path": spec.input_path,
            "hrwsi_routine": spec.routine,
            "hrwsi_condition": spec.condition,
            "hrwsi_tile": spec.tile or "",
            "hrwsi_attempt": str(spec.attempt),
        },
        "TaskGroups": [{
            "Name": GROUP_NAME,
            "Count": 1,
            "Constraints": _constraints(spec, config, flavour),
            "RestartPolicy": {"Attempts": 0, "Mode": "fail", "Interval": 24 * 3600 * NS, "Delay": 15 * NS},
            "ReschedulePolicy": {"Attempts": 0, "Unlimited": False, "Interval": 24 * 3600 * NS, "Delay": 5 * NS,
                                 "DelayFunction": "constant", "MaxDelay": 0},
            "EphemeralDisk": {"SizeMB": int(spec.storage_mb), "Sticky": False, "Migrate": False},
            "Tasks": [task],
        }],
    }
    if config.region:
        job["Region"] = config.region
    return job
