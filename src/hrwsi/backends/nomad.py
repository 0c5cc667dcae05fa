"""The Nomad backend: each attempt is a Nomad batch job with a deterministic ID.

Submission registers `build_job(spec)` with `EnforceIndex` / `JobModifyIndex 0`, Nomad's
check-and-set "create only if absent": resubmitting the same attempt (after a launcher crash)
never re-runs a job that already exists, running or dead. Following uses ONE event stream per
backend (`/v1/event/stream`, topics Job, Allocation and Evaluation, filtered to the followed jobs),
dispatching to per-job followers; on every (re)connect each followed job is reconciled with list
calls, because Nomad keeps only the last events. When the stream is unavailable (404/403, or
disabled with HRWSI_NOMAD_EVENT_STREAM=false) one blocking query on `/v1/jobs?prefix=` wakes the
backend when a job or its summary changes, and `/v1/job/:id/allocations` is read for those jobs:
one long-held connection instead of one per job (Nomad allows 100 per client).

How an attempt ends, read from the allocation (ClientStatus, TaskStates events, ExitCode):
- Terminated with exit code N: JobOutcome.from_exit_code (0 processed, 210 external_error, else
  internal_error); a Driver Failure: internal_error with Nomad's message; an allocation lost
  with its node: lost (the job is stopped so that Nomad's replacement does not run the same
  attempt twice: the launcher retries as a new attempt).
- No allocation and a blocked evaluation: progress "queued" with Nomad's reason ("Resources
  exhausted on 2 nodes: memory"), never a failure; Nomad places it when capacity frees.
- A job Nomad no longer knows: if this backend saw its end, that outcome (it was collected);
  otherwise lost.

python-nomad is synchronous: every call runs in a bounded thread pool (one client and one
requests.Session per thread) through its raw `.request(...)` method, which sidesteps its traps
(no blocking queries, a broken event-stream helper, dispatch idempotency token in the body).
No secret ever goes into a job spec: the token travels only as X-Nomad-Token.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nomad
import requests
from nomad.api.base import Requester
from nomad.api.exceptions import BaseNomadException

from hrwsi.backends.base import SECRET_NAME, JobOutcome, JobSpec, ProgressCallback

logger = logging.getLogger(__name__)

NS = 1_000_000_000
GROUP_NAME = "hrwsi"
META_KEYS = ("hrwsi_task_id", "hrwsi_input_path", "hrwsi_routine", "hrwsi_condition", "hrwsi_tile", "hrwsi_attempt")
TRANSIENT_500 = ("No cluster leader", "rpc error", "i/o timeout", "connection refused", "EOF", "injected error",
                 "context deadline exceeded")
FAILURE_EVENTS = ("Setup Failure", "Failed Validating Task Config", "Failed Artifact Download", "Template",
                  "Failed Restoring Task", "Task hook failed", "Driver Failure")


def _env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: expected true or false")


@dataclass(frozen=True)
class NomadConfig:
    """Where Nomad is and how hrwsi uses it. Environment names are Nomad's own (NOMAD_*) plus HRWSI_NOMAD_*."""

    address: str = "http://127.0.0.1:4646"          # NOMAD_ADDR
    token: str | None = field(default=None, repr=False)  # NOMAD_TOKEN (never logged, never in a spec)
    namespace: str = "default"                       # NOMAD_NAMESPACE
    region: str | None = None                        # NOMAD_REGION
    cacert: str | None = None                        # NOMAD_CACERT
    client_cert: str | None = None                   # NOMAD_CLIENT_CERT
    client_key: str | None = None                    # NOMAD_CLIENT_KEY
    skip_verify: bool = False                        # NOMAD_SKIP_VERIFY
    mhz_per_core: float = 1000.0                     # HRWSI_NOMAD_MHZ_PER_CORE: Nomad counts CPU in MHz
    placement: str = "pin"                           # HRWSI_NOMAD_PLACEMENT: pin (node name) | flavour (node class)
    purge: bool = True                               # HRWSI_NOMAD_PURGE: purge a job once its outcome is stored
    purge_delay_s: float = 60.0                      # HRWSI_NOMAD_PURGE_DELAY_S: ... this long after (see forget)
    max_connections: int = 8                         # HRWSI_NOMAD_MAX_CONNECTIONS: thread pool size
    exec_driver: str = "raw_exec"                    # HRWSI_NOMAD_EXEC_DRIVER: raw_exec | exec (routines without image)
    datacenters: tuple[str, ...] = ("*",)            # HRWSI_NOMAD_DATACENTERS (comma-separated)
    secrets_variable: str | None = None              # HRWSI_NOMAD_SECRETS_VARIABLE: a Variable path -> env
    event_stream: bool = True                        # HRWSI_NOMAD_EVENT_STREAM: false -> blocking queries only
    job_prefix: str = "hrwsi-"
    request_timeout_s: float = 15.0                  # HRWSI_NOMAD_REQUEST_TIMEOUT_S: one HTTP call (not a blocking query)
    blocking_wait_s: float = 30.0
    stream_read_timeout_s: float = 75.0              # > 2 heartbeats (Nomad sends one every 30 s at most)
    retry_for_s: float = 120.0                       # how long a transient Nomad error is retried per call

    def __post_init__(self) -> None:
        if self.placement not in ("pin", "flavour"):
            raise ValueError(f"HRWSI_NOMAD_PLACEMENT={self.placement!r}: choose pin or flavour")
        if self.exec_driver not in ("raw_exec", "exec"):
            raise ValueError(f"HRWSI_NOMAD_EXEC_DRIVER={self.exec_driver!r}: choose raw_exec or exec")
        if not self.mhz_per_core > 0:
            raise ValueError("HRWSI_NOMAD_MHZ_PER_CORE must be positive")
        if not 1 <= self.max_connections <= 90:
            raise ValueError("HRWSI_NOMAD_MAX_CONNECTIONS must be between 1 and 90 (Nomad allows 100 per client)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NomadConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        datacenters = tuple(d.strip() for d in (get("HRWSI_NOMAD_DATACENTERS") or "*").split(",") if d.strip())
        return cls(
            address=(get("NOMAD_ADDR") or "http://127.0.0.1:4646").rstrip("/"),
            token=get("NOMAD_TOKEN"),
            namespace=get("NOMAD_NAMESPACE") or "default",
            region=get("NOMAD_REGION"),
            cacert=get("NOMAD_CACERT"),
            client_cert=get("NOMAD_CLIENT_CERT"),
            client_key=get("NOMAD_CLIENT_KEY"),
            skip_verify=_env_flag(env, "NOMAD_SKIP_VERIFY", False),
            mhz_per_core=float(get("HRWSI_NOMAD_MHZ_PER_CORE") or 1000),
            placement=get("HRWSI_NOMAD_PLACEMENT") or "pin",
            purge=_env_flag(env, "HRWSI_NOMAD_PURGE", True),
            purge_delay_s=float(get("HRWSI_NOMAD_PURGE_DELAY_S") or 60),
            max_connections=int(get("HRWSI_NOMAD_MAX_CONNECTIONS") or 8),
            exec_driver=get("HRWSI_NOMAD_EXEC_DRIVER") or "raw_exec",
            datacenters=datacenters or ("*",),
            secrets_variable=get("HRWSI_NOMAD_SECRETS_VARIABLE"),
            event_stream=_env_flag(env, "HRWSI_NOMAD_EVENT_STREAM", True),
            request_timeout_s=float(get("HRWSI_NOMAD_REQUEST_TIMEOUT_S") or 15),
        )


# -- the job spec ----------------------------------------------------------------------------------
def nomad_cpu_mhz(cores: float, mhz_per_core: float) -> int:
    """Cores as Nomad's CPU MHz, rounded up (0.5 core at 1000 MHz/core = 500)."""
    return max(1, math.ceil(round(cores * mhz_per_core, 6)))


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text).lower() or "routine"


def secret_values(config: NomadConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values that must never appear in a job spec: the Nomad token and every *PASSWORD*/*SECRET*/*TOKEN* variable."""
    env = os.environ if environ is None else environ
    found = {name: value for name, value in env.items()
             if SECRET_NAME.search(name) and len(value) >= 8 and not value.startswith(("/", ".", "~"))}
    if config.token:
        found["NOMAD_TOKEN"] = config.token
    return found


def _strings(obj: Any):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _strings(value)


def build_job(spec: JobSpec, config: NomadConfig, *, flavour: str | None = None) -> dict:
    """The Nomad job (JSON API form) of one attempt. Pure: no I/O, no clock.

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
    argv = spec.argv()
    env = {}
    for key, value in spec.environment().items():
        if SECRET_NAME.search(key):
            logger.warning("job %s: leaving %s out of the Nomad job spec (it looks like a secret; give it "
                           "through a Nomad Variable: HRWSI_NOMAD_SECRETS_VARIABLE)", spec.job_id, key)
            continue
        env[key] = value
    if spec.image:
        driver = "docker"
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
    else:
        if not argv or not spec.command:
            raise ValueError(f"routine {spec.routine} has neither an image nor a command")
        driver = config.exec_driver
        task_config = {"command": argv[0], "args": argv[1:]}
    constraints = []
    if config.placement == "flavour" and flavour:
        constraints.append({"LTarget": "${node.class}", "Operand": "=", "RTarget": flavour})
    elif spec.worker:
        constraints.append({"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": spec.worker})
    task: dict[str, Any] = {
        "Name": _name(spec.routine),
        "Driver": driver,
        "Config": task_config,
        "Env": env,
        "Resources": {"CPU": nomad_cpu_mhz(spec.cpu, config.mhz_per_core), "MemoryMB": int(spec.ram_mb)},
        "KillTimeout": 30 * NS,
        "LogConfig": {"MaxFiles": 5, "MaxFileSizeMB": 20},
    }
    if config.secrets_variable:
        task["Templates"] = [{
            "EmbeddedTmpl": ('{{ with nomadVar "' + config.secrets_variable + '" }}{{ range .Tuples }}'
                             '{{ .K }}={{ .V | toJSON }}\n{{ end }}{{ end }}'),
            "DestPath": "secrets/hrwsi.env", "Envvars": True, "ChangeMode": "noop"}]
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
            "Constraints": constraints,
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


def assert_no_secrets(job: dict, config: NomadConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to submit a spec that contains the value of a secret (a bug, or a secret in a routine's command)."""
    secrets = secret_values(config, environ)
    for text in _strings(job):
        for name, value in secrets.items():
            if value in text:
                raise ValueError(f"refusing to submit job {job.get('ID')}: its spec would contain the value of "
                                 f"${name}; pass secrets through Nomad Variables, never in a job spec")


def describe_placement_failure(failed: Mapping[str, Any] | None) -> str:
    """Nomad's FailedTGAllocs (AllocMetric per group) in one line: 'Resources exhausted on 2 nodes: memory'."""
    if not failed:
        return ""
    lines = []
    for group, metric in sorted(failed.items()):
        metric = metric or {}
        pieces = []
        if not metric.get("NodesEvaluated"):
            in_pool = metric.get("NodesInPool")
            pieces.append("no ready, eligible node in the job's datacenters and node pool"
                          + (f" ({in_pool} node(s) in the pool)" if in_pool is not None else ""))
        exhausted = metric.get("NodesExhausted") or 0
        if exhausted:
            dimensions = ", ".join(sorted((metric.get("DimensionExhausted") or {}).keys()))
            pieces.append(f"Resources exhausted on {exhausted} nodes" + (f": {dimensions}" if dimensions else ""))
        for constraint, count in sorted((metric.get("ConstraintFiltered") or {}).items()):
            pieces.append(f'Constraint "{constraint}" filtered {count} nodes')
        quota = metric.get("QuotaExhausted")
        if quota:
            pieces.append(f"Quota exhausted: {', '.join(quota)}")
        if not pieces:
            pieces.append("no node can run it now")
        lines.append(("" if len(failed) == 1 else f"group {group}: ") + "; ".join(pieces))
    return " | ".join(lines)


# -- HTTP plumbing ---------------------------------------------------------------------------------
class NomadError(Exception):
    """Nomad answered an error (status) or could not be reached (status None)."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Response:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None

    @property
    def index(self) -> int:
        try:
            return int(self.headers.get("X-Nomad-Index") or 0)
        except ValueError:
            return 0


class StreamUnavailable(Exception):
    """The event stream endpoint answered 4xx: follow with blocking queries instead."""


def _quote(job_id: str) -> str:
    return quote(job_id, safe="")


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not match:
        return None
    fraction = (match.group(2) or "")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)


def _event_time(ns: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ns) / NS, UTC) if ns else None
    except (TypeError, ValueError, OverflowError):
        return None


def _interrupt_stream(response: requests.Response | None) -> None:
    """Wake the thread blocked reading the event stream: shut its socket down (closing the response
    from this thread would wait for the reader's lock, i.e. for the next heartbeat or the read timeout)."""
    if response is None:
        return
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            return
    except OSError:
        return
    threading.Thread(target=response.close, name="hrwsi-nomad-events-close", daemon=True).start()


def _append_log(path: str, header: str, parts: list[tuple[str, str]]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8", errors="replace") as log:
        for kind, text in parts:
            log.write(f"=== {header}: {kind} ===\n{text}")
            if not text.endswith("\n"):
                log.write("\n")


def _requesters(client: nomad.Nomad):
    """Every python-nomad endpoint object of a client, including nested ones (event.stream, status.leader)."""
    for value in vars(client).values():
        if isinstance(value, Requester):
            yield value
        elif hasattr(value, "__dict__"):
            yield from (v for v in vars(value).values() if isinstance(v, Requester))


def _prepare_paths(spec: JobSpec) -> None:
    """Create the output and log directories where the launcher (on a shared filesystem) reads them."""
    for directory in (Path(spec.output_dir), Path(spec.log_path).parent):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            logger.debug("could not create %s here (not a shared filesystem?): %s", directory, error)


@dataclass
class _Follower:
    spec: JobSpec
    job_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    allocs: dict[str, dict] = field(default_factory=dict)
    job_status: str | None = None
    last_progress: tuple[str, str] | None = None
    last_reason: str = ""
    last_listing: tuple | None = None
    done: bool = False
    timed_out: bool = False
    timeout_handle: asyncio.TimerHandle | None = None
    refreshing: bool = False
    refresh_again: bool = False
    final_alloc: dict | None = None


class NomadBackend:
    """Runs each attempt as a Nomad batch job. See the module docstring for the semantics."""

    name = "nomad"
    resubmit_is_idempotent = True
    max_concurrent_jobs = None  # Nomad queues what does not fit (blocked evaluations)
    jobs_outlive_launcher = True
    has_nodes = True
    runs_routines = True

    def __init__(self, config: NomadConfig | None = None, *, finished_memory: int = 10_000):
        self.config = config or NomadConfig.from_env()
        self._pool = ThreadPoolExecutor(max_workers=self.config.max_connections, thread_name_prefix="hrwsi-nomad")
        self._local = threading.local()
        self._followers: dict[str, _Follower] = {}
        self._finished: OrderedDict[str, JobOutcome] = OrderedDict()
        self._finished_memory = finished_memory
        self._cancelled: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._watch_task: asyncio.Task | None = None
        self._stream_response: requests.Response | None = None
        self._stream_index = 0
        self._stream_connected = False
        self._stream_unavailable = not self.config.event_stream
        self._poll_index = 0
        self._nodes_cache: tuple[float, list[dict]] | None = None
        self._closed = False

    # -- python-nomad, in threads ------------------------------------------------------------------
    def _client(self) -> nomad.Nomad:
        client = getattr(self._local, "client", None)
        if client is None:
            cfg = self.config
            verify: bool | str = False if cfg.skip_verify else (cfg.cacert or True)
            cert: tuple = (cfg.client_cert, cfg.client_key) if cfg.client_cert and cfg.client_key else ()
            client = nomad.Nomad(address=cfg.address, token=cfg.token, namespace=cfg.namespace, region=cfg.region,
                                 timeout=cfg.request_timeout_s, verify=verify, cert=cert,
                                 session=requests.Session())
            # python-nomad falls back to NOMAD_* variables for what is left empty: use our config only.
            for requester in _requesters(client):
                requester.token, requester.namespace = cfg.token, cfg.namespace
                requester.region, requester.address = cfg.region, cfg.address
                requester.verify, requester.cert = verify, cert
            self._local.client = client
        return client

    def _do(self, endpoint: str, path: tuple[str, ...], method: str, params: dict | None, body: Any,
            timeout: Any) -> _Response:
        requester: Any = self._client()
        for attribute in endpoint.split("."):  # e.g. "jobs", "job", "client.stream_logs"
            requester = getattr(requester, attribute)
        try:
            response = requester.request(*path, method=method, params=dict(params or {}), json=body,
                                         timeout=timeout or self.config.request_timeout_s)
        except BaseNomadException as error:
            raw = error.nomad_resp
            if isinstance(raw, requests.Response):
                return _Response(raw.status_code, raw.headers, raw.text)
            raise NomadError(None, f"cannot reach Nomad at {self.config.address}: {raw}") from None
        except requests.RequestException as error:
            raise NomadError(None, f"cannot reach Nomad at {self.config.address}: {error}") from None
        return _Response(response.status_code, response.headers, response.text)

    @staticmethod
    def _transient(method: str, response: _Response) -> bool:
        if response.status in (429, 502, 503, 504):
            return True
        if response.status >= 500:
            return method == "get" or any(m in response.text for m in TRANSIENT_500)
        return False

    async def _call(self, what: str, endpoint: str, *path: str, method: str = "get", params: dict | None = None,
                    body: Any = None, timeout: Any = None, retry: bool = True) -> _Response:
        """One Nomad API call in the thread pool; transient errors are retried with backoff for retry_for_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_for_s
        delay = 0.2
        while True:
            if self._closed:
                raise NomadError(None, "the Nomad backend is closed")
            try:
                response = await loop.run_in_executor(
                    self._pool, functools.partial(self._do, endpoint, path, method, params, body, timeout))
            except NomadError as error:
                problem, response = str(error), None
            else:
                if not self._transient(method, response):
                    return response
                problem = f"HTTP {response.status}: {response.text.strip()[:200]}"
            if not retry or loop.time() + delay > deadline:
                if response is not None:
                    return response
                raise NomadError(None, f"could not {what}: {problem}")
            logger.warning("could not %s (%s); retrying in %.1f s", what, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _spawn(self, coroutine, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("Nomad backend task %s failed: %r", name, t.exception())
        task.add_done_callback(done)
        return task

    # -- public API --------------------------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> str:
        """Register the attempt's job unless a job with its ID exists (then nothing is re-run)."""
        await asyncio.to_thread(_prepare_paths, spec)
        flavour = await self._flavour_of(spec.worker) if self.config.placement == "flavour" else None
        job = build_job(spec, self.config, flavour=flavour)
        assert_no_secrets(job, self.config)
        response = await self._call(f"register Nomad job {spec.job_id}", "jobs", method="post",
                                    body={"Job": job, "EnforceIndex": True, "JobModifyIndex": 0})
        if response.status == 200:
            logger.info("registered Nomad job %s (%s)", spec.job_id, self.ui_link(spec.job_id))
            return spec.job_id
        if response.status == 500 and ("Enforcing job modify index" in response.text
                                       or "job already exists" in response.text):
            existing = await self._call(f"read Nomad job {spec.job_id}", "job", _quote(spec.job_id))
            if existing.status == 200:
                logger.info("Nomad job %s already exists (status %s): not registered again", spec.job_id,
                            (existing.json() or {}).get("Status"))
                return spec.job_id
        raise NomadError(response.status, f"Nomad refused job {spec.job_id} (HTTP {response.status}): "
                                          f"{response.text.strip()}")

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        if backend_job_id in self._followers:
            raise RuntimeError(f"job {backend_job_id} is already being followed")
        follower = _Follower(spec, backend_job_id)
        self._followers[backend_job_id] = follower
        self._ensure_watcher()
        self._schedule_refresh(follower)
        try:
            while True:
                item = await follower.queue.get()
                if isinstance(item, JobOutcome):
                    if follower.final_alloc is not None:
                        await self._save_logs(follower, follower.final_alloc)
                    return item
                if isinstance(item, BaseException):
                    raise item
                state, reason = item
                try:
                    await on_progress(state, reason)
                except Exception:
                    logger.exception("job %s: recording progress %s failed", backend_job_id, state)
        finally:
            follower.done = True
            if follower.timeout_handle is not None:
                follower.timeout_handle.cancel()
            if self._followers.get(backend_job_id) is follower:
                del self._followers[backend_job_id]

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        """Stop the job (deregister without purge); its follower then ends 'cancelled'."""
        self._cancelled.add(backend_job_id)
        response = await self._call(f"stop Nomad job {backend_job_id}", "job", _quote(backend_job_id),
                                    method="delete")
        if response.status not in (200, 404):
            raise NomadError(response.status, f"Nomad refused to stop {backend_job_id}: {response.text.strip()}")
        follower = self._followers.get(backend_job_id)
        if follower is not None:
            self._schedule_refresh(follower)

    async def forget(self, backend_job_id: str) -> None:
        """The launcher stored the outcome: purge the finished job from Nomad (HRWSI_NOMAD_PURGE), after
        purge_delay_s. Until then the dead job keeps its ID taken, so a registration of it that timed out
        on our side but reaches Nomad late is refused (EnforceIndex) instead of running the attempt again.
        A purge still pending when the launcher stops is left to Nomad's own job GC."""
        if backend_job_id in self._followers:
            logger.warning("not purging Nomad job %s: it is still being followed", backend_job_id)
            return
        self._finished.pop(backend_job_id, None)
        self._cancelled.discard(backend_job_id)
        if not self.config.purge:
            return
        self._spawn(self._purge_later(backend_job_id), f"purge-{backend_job_id}")

    async def _purge_later(self, backend_job_id: str) -> None:
        await asyncio.sleep(self.config.purge_delay_s)
        try:
            response = await self._call(f"purge Nomad job {backend_job_id}", "job", _quote(backend_job_id),
                                        method="delete", params={"purge": "true"})
        except NomadError as error:
            logger.warning("%s; Nomad's job GC will remove job %s", error, backend_job_id)
            return
        if response.status not in (200, 404):
            logger.warning("Nomad refused to purge job %s (HTTP %d: %s); Nomad's job GC will remove it",
                           backend_job_id, response.status, response.text.strip()[:200])
            return
        logger.debug("purged Nomad job %s", backend_job_id)

    async def list_jobs(self, prefix: str = "hrwsi-") -> dict[str, str]:
        """Every job whose ID starts with prefix in our namespace: {job ID: pending|running|dead}."""
        response = await self._call("list Nomad jobs", "jobs", params={"prefix": prefix})
        if response.status != 200:
            raise NomadError(response.status, f"could not list Nomad jobs: {response.text.strip()}")
        return {job["ID"]: job["Status"] for job in response.json() or [] if job["ID"].startswith(prefix)}

    async def stop_all(self) -> None:
        """Nomad jobs outlive their launcher: nothing to stop (another launcher adopts them)."""

    async def nodes(self) -> list[dict]:
        """GET /v1/nodes?resources=true: every client node with NodeResources and ReservedResources."""
        response = await self._call("list Nomad nodes", "nodes", params={"resources": "true"})
        if response.status != 200:
            raise NomadError(response.status, f"could not list Nomad nodes: {response.text.strip()}")
        return response.json() or []

    def ui_link(self, backend_job_id: str) -> str | None:
        return f"{self.config.address}/ui/jobs/{quote(backend_job_id, safe='')}@{self.config.namespace}"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _interrupt_stream(self._stream_response)
        tasks = [t for t in [self._watch_task, *self._tasks] if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for follower in list(self._followers.values()):
            if not follower.done:
                follower.queue.put_nowait(RuntimeError("the Nomad backend was closed"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- flavour placement ---------------------------------------------------------------------------
    async def _flavour_of(self, worker: str | None) -> str | None:
        """The node class of the planned worker (flavour mode), from a node list cached for 60 s."""
        if not worker:
            return None
        loop = asyncio.get_running_loop()
        if self._nodes_cache is None or loop.time() - self._nodes_cache[0] > 60:
            self._nodes_cache = (loop.time(), await self.nodes())
        for node in self._nodes_cache[1]:
            if node.get("Name") == worker and node.get("NodeClass"):
                return node["NodeClass"]
        logger.warning("flavour placement: Nomad node %s has no node class; pinning the job to it instead", worker)
        return None

    # -- following: state assessment ---------------------------------------------------------------
    def _progress(self, follower: _Follower, state: str, reason: str) -> None:
        if follower.done or follower.last_progress == (state, reason):
            return
        follower.last_progress = (state, reason)
        follower.queue.put_nowait((state, reason))

    def _resolve(self, follower: _Follower, outcome: JobOutcome) -> None:
        if follower.done:
            return
        follower.done = True
        if follower.timeout_handle is not None:
            follower.timeout_handle.cancel()
        self._finished[follower.job_id] = outcome
        while len(self._finished) > self._finished_memory:
            self._finished.popitem(last=False)
        follower.queue.put_nowait(outcome)
        logger.debug("Nomad job %s ended: %s (%s)", follower.job_id, outcome.state, outcome.message)

    def _merge_alloc(self, follower: _Follower, alloc: dict) -> None:
        known = follower.allocs.get(alloc["ID"])
        if known is None or int(alloc.get("ModifyIndex") or 0) >= int(known.get("ModifyIndex") or 0):
            follower.allocs[alloc["ID"]] = alloc

    def _assess(self, follower: _Follower) -> None:
        if follower.done:
            return
        allocs = sorted(follower.allocs.values(), key=lambda a: int(a.get("CreateIndex") or 0))
        lost = next((a for a in allocs if a.get("ClientStatus") == "lost"), None)
        if lost is not None:
            if follower.job_id in self._cancelled:
                self._resolve(follower, JobOutcome("cancelled", None, "cancelled; its allocation was lost",
                                                   None, datetime.now(UTC)))
                return
            # Stop the job so that Nomad's replacement allocation does not run this attempt again.
            self._spawn(self._stop_quietly(follower.job_id), f"stop-lost-{follower.job_id}")
            started, _ = self._task_times(lost)
            self._resolve(follower, JobOutcome(
                "lost", None, f"allocation {lost['ID'][:8]} on node {lost.get('NodeName') or lost.get('NodeID')} "
                              f"lost: {lost.get('ClientDescription') or 'its node went down'}",
                started, datetime.now(UTC)))
            return
        if not allocs:
            return
        current = allocs[-1]
        status = current.get("ClientStatus")
        if status in ("complete", "failed"):
            follower.final_alloc = current
            self._resolve(follower, self._outcome(follower, current))
        elif status == "running":
            self._progress(follower, "running", f"allocation {current['ID'][:8]} on node "
                                                f"{current.get('NodeName') or current.get('NodeID')}")
            self._start_timeout(follower)

    def _task_state(self, follower: _Follower | None, alloc: dict) -> dict:
        states = alloc.get("TaskStates") or {}
        if follower is not None:
            wanted = _name(follower.spec.routine)
            if wanted in states:
                return states[wanted]
        return next(iter(states.values()), {}) if states else {}

    def _task_times(self, alloc: dict, follower: _Follower | None = None) -> tuple[datetime | None, datetime | None]:
        state = self._task_state(follower, alloc)
        events = state.get("Events") or []
        started = _parse_time(state.get("StartedAt")) or next(
            (_event_time(e.get("Time")) for e in events if e.get("Type") == "Started"), None)
        finished = _parse_time(state.get("FinishedAt")) or (_event_time(events[-1].get("Time")) if events else None)
        return started, finished

    def _outcome(self, follower: _Follower, alloc: dict) -> JobOutcome:
        state = self._task_state(follower, alloc)
        events = state.get("Events") or []
        started, finished = self._task_times(alloc, follower)
        finished = finished or datetime.now(UTC)
        where = f"allocation {alloc['ID'][:8]} on node {alloc.get('NodeName') or alloc.get('NodeID')}"
        types = [e.get("Type") for e in events]
        killed = "Killed" in types or "Killing" in types
        terminated = next((e for e in reversed(events) if e.get("Type") == "Terminated"), None)
        if killed or alloc.get("DesiredStatus") == "stop" and terminated is None:
            if follower.job_id in self._cancelled:
                return JobOutcome("cancelled", terminated.get("ExitCode") if terminated else None,
                                  f"cancelled: the Nomad job was stopped ({where})", started, finished)
            if follower.timed_out:
                return JobOutcome("internal_error", None, f"timed out after {follower.spec.timeout_s:.0f} s; "
                                                          "the Nomad job was stopped", started, finished)
            return JobOutcome("lost", None, f"{where} was stopped in Nomad before it ended "
                                            f"({alloc.get('DesiredDescription') or 'killed'})", started, finished)
        if terminated is not None:
            code = int(terminated.get("ExitCode") or 0)
            details = terminated.get("Details") or {}
            sig = int(terminated.get("Signal") or 0)
            if str(details.get("oom_killed", "")).lower() == "true":
                return JobOutcome("internal_error", code, f"out of memory: killed at its {follower.spec.ram_mb} MB "
                                                          f"limit (exit code {code}; {where})", started, finished)
            if sig:
                return JobOutcome("internal_error", code, f"killed by signal {sig} (exit code {code}; {where})",
                                  started, finished)
            return JobOutcome.from_exit_code(code, started_at=started, finished_at=finished,
                                             detail=f"exit code {code} ({where})")
        failure = next((e for e in reversed(events) if any(e.get("Type", "").startswith(f) for f in FAILURE_EVENTS)),
                       None)
        if failure is not None:
            message = failure.get("DriverError") or failure.get("SetupError") or failure.get("DisplayMessage") \
                or failure.get("Message") or failure.get("Type")
            return JobOutcome("internal_error", None, f"Nomad {failure.get('Type')}: {message} ({where})",
                              started, finished)
        return JobOutcome("internal_error", None, f"{where} ended {alloc.get('ClientStatus')} without a task exit "
                                                  f"({alloc.get('ClientDescription') or 'no task event'})",
                          started, finished)

    async def _save_logs(self, follower: _Follower, alloc: dict) -> None:
        """Append the task's stdout and stderr (from Nomad) to the attempt's log file; best effort."""
        states = alloc.get("TaskStates") or {}
        task = _name(follower.spec.routine) if _name(follower.spec.routine) in states else next(iter(states), None)
        if task is None:
            return
        parts = []
        try:
            for kind in ("stdout", "stderr"):
                response = await asyncio.wait_for(self._call(
                    f"read the {kind} of {follower.job_id}", "client.stream_logs", alloc["ID"],
                    params={"task": task, "type": kind, "plain": "true", "origin": "start", "offset": "0",
                            "follow": "false"}, retry=False), 60)
                if response.status == 200 and response.text:
                    parts.append((kind, response.text))
            if parts:
                header = (f"Nomad job {follower.job_id}, allocation {alloc['ID']} on node "
                          f"{alloc.get('NodeName') or alloc.get('NodeID')}")
                await asyncio.to_thread(_append_log, follower.spec.log_path, header, parts)
        except (TimeoutError, NomadError, OSError) as error:
            logger.debug("could not keep the logs of %s in %s: %s", follower.job_id, follower.spec.log_path, error)

    def _start_timeout(self, follower: _Follower) -> None:
        timeout = follower.spec.timeout_s
        if not timeout or follower.timeout_handle is not None:
            return
        loop = asyncio.get_running_loop()
        follower.timeout_handle = loop.call_later(
            timeout, lambda: self._spawn(self._time_out(follower), f"timeout-{follower.job_id}"))

    async def _time_out(self, follower: _Follower) -> None:
        if follower.done:
            return
        follower.timed_out = True
        logger.warning("Nomad job %s ran longer than its %.0f s timeout: stopping it", follower.job_id,
                       follower.spec.timeout_s)
        await self._stop_quietly(follower.job_id)
        self._resolve(follower, JobOutcome("internal_error", None,
                                           f"timed out after {follower.spec.timeout_s:.0f} s; the Nomad job was "
                                           "stopped", None, datetime.now(UTC)))

    async def _stop_quietly(self, job_id: str) -> None:
        try:
            await self._call(f"stop Nomad job {job_id}", "job", _quote(job_id), method="delete")
        except NomadError as error:
            logger.warning("could not stop Nomad job %s: %s", job_id, error)

    # -- following: reconciliation with list calls --------------------------------------------------
    def _schedule_refresh(self, follower: _Follower) -> None:
        if follower.done:
            return
        if follower.refreshing:
            follower.refresh_again = True
            return
        follower.refreshing = True
        self._spawn(self._refresh(follower), f"refresh-{follower.job_id}")

    async def _refresh(self, follower: _Follower) -> None:
        try:
            while not follower.done:
                follower.refresh_again = False
                try:
                    await self._refresh_once(follower)
                except NomadError as error:
                    logger.warning("could not read Nomad job %s: %s", follower.job_id, error)
                    self._progress_unknown(follower, str(error))
                    await asyncio.sleep(2.0)
                    follower.refresh_again = True
                if not follower.refresh_again:
                    break
        finally:
            follower.refreshing = False

    def _progress_unknown(self, follower: _Follower, problem: str) -> None:
        logger.debug("job %s: Nomad unreachable while following: %s", follower.job_id, problem)

    async def _refresh_once(self, follower: _Follower) -> None:
        job_id = follower.job_id
        response = await self._call(f"read allocations of {job_id}", "job", _quote(job_id), "allocations")
        if response.status != 200:
            raise NomadError(response.status, f"allocations of {job_id}: HTTP {response.status} {response.text}")
        for alloc in response.json() or []:
            self._merge_alloc(follower, alloc)
        if follower.allocs:
            self._assess(follower)
            if follower.done or any(a.get("ClientStatus") in ("pending", "running") for a in follower.allocs.values()):
                return
        response = await self._call(f"read Nomad job {job_id}", "job", _quote(job_id))
        if response.status == 404:
            remembered = self._finished.get(job_id)
            if remembered is not None:
                self._resolve(follower, remembered)  # it ended and was then collected: not lost
            elif job_id in self._cancelled:
                self._resolve(follower, JobOutcome("cancelled", None, "cancelled; the Nomad job is gone", None,
                                                   datetime.now(UTC)))
            else:
                self._resolve(follower, JobOutcome(
                    "lost", None, f"Nomad does not know job {job_id} and it was never seen ending (purged or "
                                  "garbage-collected before its outcome was recorded)", None,
                    datetime.now(UTC)))
            return
        if response.status != 200:
            raise NomadError(response.status, f"job {job_id}: HTTP {response.status} {response.text}")
        job = response.json() or {}
        follower.job_status = job.get("Status")
        if follower.allocs:
            return
        if job.get("Status") == "dead":
            if job_id in self._cancelled:
                self._resolve(follower, JobOutcome("cancelled", None, "cancelled before Nomad placed it", None,
                                                   datetime.now(UTC)))
            else:
                self._resolve(follower, JobOutcome("lost", None, f"Nomad job {job_id} is dead without any "
                                                                 "allocation (stopped in Nomad before it was placed)",
                                                   None, datetime.now(UTC)))
            return
        response = await self._call(f"read evaluations of {job_id}", "job", _quote(job_id), "evaluations")
        if response.status == 200:
            for evaluation in sorted(response.json() or [], key=lambda e: int(e.get("CreateIndex") or 0)):
                self._on_evaluation(follower, evaluation)

    def _on_evaluation(self, follower: _Follower, evaluation: dict) -> None:
        if follower.done or any(a.get("ClientStatus") in ("pending", "running", "complete", "failed")
                                for a in follower.allocs.values()):
            return
        reason = describe_placement_failure(evaluation.get("FailedTGAllocs"))
        if reason:
            follower.last_reason = reason
            self._progress(follower, "queued", f"Nomad cannot place it yet: {reason}")
        elif evaluation.get("Status") == "blocked" and follower.last_reason:
            self._progress(follower, "queued", f"Nomad cannot place it yet: {follower.last_reason}")

    async def _reconcile_all(self) -> None:
        for follower in list(self._followers.values()):
            self._schedule_refresh(follower)

    # -- following: the shared event stream ---------------------------------------------------------
    def _ensure_watcher(self) -> None:
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="hrwsi-nomad-watch")

    async def _watch(self) -> None:
        backoff = 0.5
        while not self._closed:
            if self._stream_unavailable:
                try:
                    await self._poll_once()
                except NomadError as error:
                    logger.warning("blocking query on Nomad jobs failed: %s", error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                continue
            try:
                await self._stream_once()
                backoff = 0.5
            except StreamUnavailable as error:
                logger.warning("the Nomad event stream is unavailable (%s): following jobs with blocking queries",
                               error)
                self._stream_unavailable = True
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._closed:
                    return
                logger.warning("the Nomad event stream broke (%s); reconnecting in %.1f s", error, backoff)
            self._stream_connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _stream_once(self) -> None:
        loop = asyncio.get_running_loop()
        connected: asyncio.Future = loop.create_future()
        finished: asyncio.Future = loop.create_future()
        for future in (connected, finished):  # their errors are read through the other one, or not at all
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(future: asyncio.Future, error: BaseException | None = None) -> None:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(None)

        def post(callback, *args) -> None:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop is closed: nobody listens any more
                pass

        if not self._stream_index:
            # Start at the present: replaying the buffer could resurrect events of jobs since
            # collected; followed jobs are reconciled with list calls once connected anyway.
            probe = await self._call("read the Nomad index", "jobs",
                                     params={"prefix": f"{self.config.job_prefix}index-probe-"})
            self._stream_index = probe.index if probe.status == 200 else 0
        params = {"index": str(self._stream_index + 1) if self._stream_index else "0",
                  "topic": ["Job:*", "Allocation:*", "Evaluation:*"], "namespace": self.config.namespace}

        def read() -> None:
            try:
                requester = self._client().event.stream
                try:  # python-nomad's own stream helper replays after reconnects and dies on blank lines
                    response = requester.request(method="get", params=params, stream=True,
                                                 timeout=(self.config.request_timeout_s,
                                                          self.config.stream_read_timeout_s))
                except BaseNomadException as error:
                    raw = error.nomad_resp
                    if isinstance(raw, requests.Response) and raw.status_code in (400, 403, 404, 405, 501):
                        raise StreamUnavailable(f"HTTP {raw.status_code}: {raw.text.strip()[:200]}") from None
                    raise ConnectionError(str(error)) from None
                self._stream_response = response
                post(settle, connected)
                buffer = b""
                for chunk in response.iter_content(chunk_size=None):
                    if self._closed:
                        break
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.strip():
                            continue
                        frame = json.loads(line)
                        if frame.get("Error"):
                            raise ConnectionError(f"event stream error: {frame['Error']}")
                        if frame:
                            post(self._on_frame, frame)
                raise ConnectionError("the event stream ended")
            except BaseException as error:  # handed to the loop, which decides
                post(settle, connected, error)
                post(settle, finished, error)
            finally:
                self._stream_response = None

        thread = threading.Thread(target=read, name="hrwsi-nomad-events", daemon=True)
        thread.start()
        await connected
        self._stream_connected = True
        logger.info("following Nomad jobs through the event stream of %s", self.config.address)
        await self._reconcile_all()  # events before this connection are not retained: read the state
        await finished

    def _on_frame(self, frame: dict) -> None:
        index = int(frame.get("Index") or 0)
        if index and index <= self._stream_index:
            return  # already seen (Nomad resumes at the requested index, inclusive)
        self._stream_index = max(self._stream_index, index)
        for event in frame.get("Events") or []:
            if event.get("Namespace") not in (None, "", self.config.namespace):
                continue
            payload = event.get("Payload") or {}
            topic = event.get("Topic")
            if topic == "Allocation":
                alloc = payload.get("Allocation") or {}
                follower = self._followers.get(alloc.get("JobID", ""))
                if follower is not None and not follower.done:
                    self._merge_alloc(follower, alloc)
                    self._assess(follower)
            elif topic == "Evaluation":
                evaluation = payload.get("Evaluation") or {}
                follower = self._followers.get(evaluation.get("JobID", ""))
                if follower is not None:
                    self._on_evaluation(follower, evaluation)
            elif topic == "Job":
                job = payload.get("Job") or {}
                follower = self._followers.get(job.get("ID", ""))
                if follower is None or follower.done:
                    continue
                follower.job_status = job.get("Status")
                no_live_alloc = not any(a.get("ClientStatus") in ("pending", "running")
                                        for a in follower.allocs.values())
                if event.get("Type") in ("JobDeregistered", "JobBatchDeregistered") or \
                        (job.get("Status") == "dead" and no_live_alloc):
                    self._schedule_refresh(follower)

    # -- following without the stream: one blocking query on the job list ---------------------------
    async def _poll_once(self) -> None:
        prefix = self.config.job_prefix
        params = {"prefix": prefix, "index": str(self._poll_index),
                  "wait": f"{int(self.config.blocking_wait_s)}s"}
        response = await self._call("wait for changes of Nomad jobs", "jobs", params=params,
                                    timeout=(self.config.request_timeout_s,
                                             self.config.blocking_wait_s + self.config.request_timeout_s))
        if response.status != 200:
            raise NomadError(response.status, f"HTTP {response.status}: {response.text.strip()[:200]}")
        index = response.index
        if index < self._poll_index:
            index = 0  # the index went backwards (a new cluster, a restore): start over
        self._poll_index = index
        listing = {job["ID"]: job for job in response.json() or []}
        for follower in list(self._followers.values()):
            stub = listing.get(follower.job_id)
            key = None if stub is None else (stub.get("Status"), stub.get("ModifyIndex"),
                                             json.dumps(stub.get("JobSummary"), sort_keys=True))
            if key is None or key != follower.last_listing or not follower.job_id.startswith(prefix):
                follower.last_listing = key
                self._schedule_refresh(follower)
