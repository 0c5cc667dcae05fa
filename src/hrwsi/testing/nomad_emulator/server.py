"""The HTTP side of the Nomad API emulator (test double): aiohttp handlers with Nomad's semantics.

Errors are text/plain with Nomad's status codes (400 malformed request, 403 ACL, 404 unknown
object, 405 wrong method, 500 validation and lookup errors); every successful answer carries
X-Nomad-Index, an error only a query's 404 (command/agent/http.go wrap: see _middleware);
GET endpoints are blocking queries (?index=N&wait=30s, capped at 300 s); the event stream is
newline-delimited JSON with a `{}` heartbeat first and every `event_heartbeat` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import random
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from hrwsi.testing.nomad_emulator.acl import AclPolicy, Need, allows, need_for
from hrwsi.testing.nomad_emulator.cluster import Cluster, EmulatedNode
from hrwsi.testing.nomad_emulator.event_stream import (
    FRAMING_CHUNKED_GZIP,
    FRAMING_RAW,
    FRAMING_VERSIONS,
    FRAMINGS,
    serve_chunked,
    serve_hijacked,
    stream_lines,
)
from hrwsi.testing.nomad_emulator.model import UUID_RE, CodedError, parse_duration

logger = logging.getLogger("hrwsi.testing.nomad_emulator")

MAX_QUERY_TIME_S = 300.0
DEFAULT_QUERY_TIME_S = 300.0
# A blocking query waits up to a sixteenth more than asked (nomad/rpc.go blockingRPC: MaxQueryTime +=
# helper.RandomStagger(MaxQueryTime / structs.JitterFraction), JitterFraction 16).
QUERY_JITTER_FRACTION = 16
TOO_MANY_CONNECTIONS = "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
STREAM_FAILURE = "emulator (test double): event broker failure"


@dataclass
class Fault:
    """Answer the next `remaining` matching requests with `status`, or (status 0) handle them only after
    `delay_s`, as a slow server does: the client may time out although its request takes effect (a test hook)."""

    remaining: int
    status: int
    body: str
    path_prefix: str
    method: str | None
    delay_s: float = 0.0
    # The request is carried out, then answered with `status` all the same: a Raft entry committed while its
    # leader was deposed (nomad/rpc.go raftApply returns the future's error, raft.ErrLeadershipLost, and
    # nomad/job_endpoint.go Job.Register returns it: a 500 of a registration that may have taken effect).
    carried_out: bool = False


GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _flag(value: str | None) -> bool:
    """A query flag as Nomad reads most of them: Go's strconv.ParseBool, anything else false (the error ignored)."""
    return (value or "") in GO_TRUE


def _strict_flag(request: web.Request, name: str) -> bool:
    """A query flag Nomad refuses when Go's strconv.ParseBool does not take it: ?purge=, ?global=
    (command/agent/job_endpoint.go jobDelete: a plain error, so 500 through command/agent/http.go wrap).
    Absent or empty is false."""
    value = request.query.get(name) or ""
    if value and value not in GO_TRUE + GO_FALSE:
        raise CodedError(500, f'Failed to parse value of "{name}" ({value}) as a bool: '
                              f'strconv.ParseBool: parsing {json.dumps(value)}: invalid syntax')
    return value in GO_TRUE


def _query_meta(index: int) -> dict[str, str]:
    """command/agent/http.go setMeta: the index, the last contact and whether a leader is known."""
    return {"X-Nomad-Index": str(index), "X-Nomad-KnownLeader": "true", "X-Nomad-LastContact": "0"}


def _json(body, index: int, status: int = 200, *, index_may_be_zero: bool = False) -> web.Response:
    # (a blocking query's index is at least 1, nomad/rpc.go blockingRPC; a write's reply is sent as it is)
    shown = index if index_may_be_zero else max(index, 1)
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=_query_meta(shown))


# nomad/structs/errors.go errJobRegistrationDisabled: what Job.Register, Job.Dispatch and Job.Scale answer (403 through
# command/agent/http.go errCodeFromHandler) while the scheduler configuration's RejectJobRegistration holds.
REGISTRATION_DISABLED = "Job registration, dispatch, and scale are disabled by the scheduler configuration"
_JOB_WRITE_SUFFIXES = ("/allocations", "/evaluations", "/summary", "/dispatch", "/plan", "/versions", "/scale")


def _job_write(request: web.Request) -> str | None:
    """"register", "dispatch" or "scale" for a request Job.Register, Job.Dispatch or Job.Scale serves, else None."""
    if request.method not in ("POST", "PUT"):
        return None
    if request.path == "/v1/jobs":
        return "register"
    if not request.path.startswith("/v1/job/"):
        return None
    for suffix in ("/dispatch", "/scale"):
        if request.path.endswith(suffix):
            return suffix[1:]
    return None if request.path.endswith(_JOB_WRITE_SUFFIXES) else "register"


def _validated_first(request: web.Request) -> bool:
    """A registration or a plan: its handler checks the token, in Nomad's order (_registration_token_checks)."""
    return _job_write(request) == "register" or (
        request.method in ("POST", "PUT") and request.path.startswith("/v1/job/") and request.path.endswith("/plan"))


def _allocation_read(request: web.Request) -> str | None:
    """The allocation a GET of one allocation, its logs or a file of it names, or None."""
    if request.method == "GET":
        for prefix in ("/v1/allocation/", "/v1/client/fs/logs/", "/v1/client/fs/cat/"):
            if request.path.startswith(prefix) and "/" not in request.path[len(prefix):]:
                return request.path[len(prefix):]
    return None


def _check_uuid(kind: str, value: str) -> None:
    if len(value) != 36:
        raise CodedError(500, f"{kind} lookup failed: index error: UUID must be 36 characters")
    if not UUID_RE.match(value):
        raise CodedError(500, f"{kind} lookup failed: index error: invalid UUID")


class NomadEmulator:
    """An emulator (test double) of the Nomad HTTP API subset hrwsi uses, on 127.0.0.1.

    async with NomadEmulator(nodes=[EmulatedNode("worker-1", cpu_mhz=4000, memory_mb=8192)]) as emu:
        emu.address  # http://127.0.0.1:<port>
    """

    def __init__(self, nodes: Iterable[EmulatedNode] | None = None, *, acl_token: str | None = None,
                 gc_interval: float = 300.0, job_gc_threshold: float = 4 * 3600.0,
                 work_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 event_heartbeat: float = 30.0, event_buffer_size: int = 100,
                 event_stream_framing: str = FRAMING_RAW, acl_policies: dict[str, AclPolicy] | None = None,
                 forwarded: bool = False, workload_variable_paths: tuple[str, ...] = (),
                 deprecated_event_fields: bool = True, namespaces: Iterable[str] = (),
                 node_pools: Iterable[str] = (), regions: Iterable[str] = ("global",),
                 fs_through_servers: bool = False):
        if event_stream_framing not in FRAMINGS:
            raise ValueError(f"event_stream_framing {event_stream_framing!r}: one of {', '.join(FRAMINGS)}")
        self.event_stream_framing = event_stream_framing
        self.version = FRAMING_VERSIONS[event_stream_framing]
        self._nodes = list(nodes) if nodes is not None else [EmulatedNode("emulated-node-1")]
        self.acl_token = acl_token  # the management token; ACL is off without one
        self.acl_policies = dict(acl_policies or {})  # other tokens: secret -> policy
        self.forwarded = forwarded  # answer as a client agent or a follower server does (RPC errors wrapped)
        # The fs endpoints reach the allocation's client through the servers: the agent at the address is a server,
        # or a client agent that does not run the allocation (command/agent/helpers.go rpcHandlerForAlloc), as a
        # launcher's NOMAD_ADDR is; else the agent is the allocation's own client (a dev agent: server and client).
        self.fs_through_servers = fs_through_servers
        # The scheduler configuration's switch (PUT /v1/operator/scheduler/configuration, `nomad operator scheduler
        # set-config -reject-job-registration=true`): an admin's maintenance switch, in Raft, kept across restarts.
        self.reject_job_registration = False
        self.workload_variable_paths = workload_variable_paths  # a namespace-wide workload policy's Variables
        self.deprecated_event_fields = deprecated_event_fields
        # Namespaces and node pools an admin applied, beyond "default" (and "all", and the nodes' pools):
        # kept across restart_with_fresh_state as the cluster's configuration.
        self.namespaces = tuple(namespaces)
        self.node_pools = tuple(node_pools)
        # The regions this cluster's servers know (Region.List); the first is the agent's own.
        self.known_regions = tuple(regions) or ("global",)
        self.gc_interval = gc_interval
        self.job_gc_threshold = job_gc_threshold
        self.host = host
        self.port = port
        self.event_heartbeat = event_heartbeat
        self.event_buffer_size = event_buffer_size
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.cluster: Cluster | None = None
        self._runner: web.AppRunner | None = None
        self._faults: list[Fault] = []
        self._closing = asyncio.Event()
        self._stream_generation = 0
        self._stream_failures = 0
        self._stream_lags: list[int] = []  # the next subscriptions' servers trail the last frame by this many
        self.event_stream_connections = 0
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, path) -> how many
        # The stagger a blocking query's wait gets, from its jitter interval (a test may set the worst case).
        self.query_stagger: Callable[[float], float] = lambda interval: random.uniform(0.0, interval)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> NomadEmulator:
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="hrwsi-nomad-emulator-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = self._new_cluster()
        self.cluster.start()
        await self._listen()
        logger.info("Nomad API emulator (test double) listening on %s with %d node(s)%s; work dir %s",
                    self.address, len(self._nodes), ", ACL on" if self.acl_token else "", self.work_dir)
        return self

    def _new_cluster(self) -> Cluster:
        return Cluster(self._nodes, work_dir=self.work_dir, job_gc_threshold_s=self.job_gc_threshold,
                       gc_interval_s=self.gc_interval, event_buffer_size=self.event_buffer_size,
                       acl_enabled=bool(self.acl_token), workload_variable_paths=self.workload_variable_paths,
                       deprecated_event_fields=self.deprecated_event_fields, version=self.version,
                       namespaces=self.namespaces, node_pools=self.node_pools)

    async def _listen(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing.set()
        if self.cluster is not None:
            await self.cluster.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_work_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        logger.info("Nomad API emulator (test double) stopped")

    async def __aenter__(self) -> NomadEmulator:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- test hooks --------------------------------------------------------------------------
    def node_down(self, name: str, *, processes_survive: bool = False) -> None:
        """The node stops heartbeating: its allocations become lost (or unknown) and their processes die
        with the machine, or, with `processes_survive` (a network partition; the servers cannot tell the
        two apart), run on until their client stops them (the group's disconnect.stop_on_client_after)."""
        self.cluster.set_node_status(name, "down", processes_survive=processes_survive)

    def node_up(self, name: str) -> None:
        self.cluster.set_node_status(name, "ready")

    def restart_client(self, name: str, *, restore_fails: bool = True) -> list[dict]:
        """The node's Nomad agent restarts; with `restore_fails`, it cannot reattach to its running tasks
        and runs them again from the start (client/allocrunner/taskrunner/task_runner.go, Restore): the
        allocations whose tasks run again."""
        return self.cluster.restart_client(name, restore_fails=restore_fails)

    def drain(self, name: str, deadline_s: float | None = -1.0, *, mark_eligible: bool = False) -> None:
        """`nomad node drain -enable -deadline <deadline_s>` (below 0: -force); None: `-disable`."""
        self.cluster.drain_node(name, None if deadline_s is None else int(deadline_s * 1e9),
                                mark_eligible=mark_eligible)

    def set_eligibility(self, name: str, eligible: bool) -> None:
        self.cluster.set_node_eligibility(name, eligible)

    def add_node(self, node: EmulatedNode) -> dict:
        return self.cluster.add_node(node)

    def node_id(self, name: str) -> str:
        return self.cluster.find_node(name)["ID"]

    def inject_errors(self, count: int, status: int = 500, body: str | None = None, *,
                      path_prefix: str = "/v1/", method: str | None = None, carried_out: bool = False) -> None:
        """Answer the next `count` requests under `path_prefix` (and `method`) with `status`; with `carried_out`,
        after carrying each out (Fault.carried_out)."""
        if body is None:
            body = TOO_MANY_CONNECTIONS if status == 429 else "emulator (test double): injected error"
        self._faults.append(Fault(count, status, body, path_prefix, method.upper() if method else None,
                                  carried_out=carried_out))

    def inject_delays(self, count: int, delay_s: float, *, path_prefix: str = "/v1/",
                      method: str | None = None) -> None:
        """Handle the next `count` requests under `path_prefix` (and `method`) only after `delay_s`."""
        self._faults.append(Fault(count, 0, "", path_prefix, method.upper() if method else None, delay_s))

    def fail_event_streams(self, count: int) -> None:
        """The next `count` subscriptions fail inside Nomad (ACL, a disabled broker) the way the framing
        shows it: an HTTP 500 up to 1.11.1, a 200 that ends without a line since 1.11.2."""
        self._stream_failures += count

    def drop_event_streams(self) -> None:
        """End every open event stream, as a proxy or a leader change would (subscribers reconnect)."""
        self._stream_generation += 1
        self.cluster._wake()

    def lag_event_streams(self, frames: int, subscriptions: int = 1) -> None:
        """Fault hook: the next `subscriptions` event streams are served by a server whose event buffer trails
        by `frames` frames, then catches up. Each server publishes the events of the entries its own FSM applied
        (nomad/state/state_store.go, its own stream.EventBroker; nomad/event_endpoint.go serves the stream from
        the server the agent reaches, forwarding only across regions), and a follower, or a server restarted
        and replaying its log, applies after the leader: a subscription from past its last event starts at
        that event (nomad/stream/event_buffer.go StartAtClosest), below the last one the subscriber saw."""
        self._stream_lags += [frames] * subscriptions

    async def restart_with_fresh_state(self, down_s: float = 0.0, *, busy_until: int = 0) -> None:
        """Fault hook: the API restarts and the servers come back with an EMPTY state, as a cluster
        rebuilt from scratch or restored from nothing: every job, evaluation and allocation is gone,
        the Raft index starts over (X-Nomad-Index goes backwards), every connection (blocking queries,
        event streams) is cut, and the processes of running allocations are killed (their clients
        find that the servers no longer know them and destroy them: client/client.go runAllocs removes
        allocations the servers do not send). The nodes register again, ready and eligible, on the
        same address. Test bookkeeping (`completed_runs`, `frames_missed_by_subscribers`) is carried over.
        `busy_until`: the rebuilt cluster has been busy before it answers (jobs run and collected): its jobs, job
        summaries, allocations and evaluations last written at that index, where an admin's parameterized job was
        registered in the default namespace, its last event (a parameterized job has no evaluation)."""
        old = self.cluster
        if self._runner is not None:
            await self._runner.cleanup()  # the listening socket and every open connection
            self._runner = None
        await old.close()  # kills the allocations' processes, reports nothing
        if down_s > 0:
            await asyncio.sleep(down_s)
        self.cluster = self._new_cluster()
        if busy_until > self.cluster.index + 1:
            self.cluster.index = busy_until - 1
            admin = {"ID": "admin-parameterized", "Type": "batch", "ParameterizedJob": {"Payload": "optional"},
                     "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
                                                               "Config": {"command": "/bin/true"}}]}]}
            self.cluster.register_job(admin, "default")
            for table in ("jobs", "job_summary", "allocs", "evals"):
                self.cluster.table_index[table] = busy_until
        self.cluster.completed_runs.update(old.completed_runs)
        self.cluster.frames_missed_by_subscribers = old.frames_missed_by_subscribers
        self.cluster.start()
        await self._listen()
        logger.warning("emulator (test double): restarted with a fresh state; index back to %d", self.cluster.index)

    def add_namespace(self, name: str) -> None:
        """An admin applies a namespace (`nomad namespace apply NAME`)."""
        self.cluster.namespaces.add(name)

    def delete_namespace(self, name: str) -> None:
        """An admin deletes a namespace (`nomad namespace delete NAME`); its jobs are not touched here
        (Nomad refuses to delete a namespace with non-terminal jobs: not emulated)."""
        self.cluster.namespaces.discard(name)

    def delete_node_pool(self, name: str) -> None:
        """An admin deletes a node pool (`nomad node pool delete NAME`)."""
        self.cluster.node_pools.discard(name)

    def clear_faults(self) -> None:
        self._faults.clear()

    def gc(self) -> int:
        return self.cluster.gc(force=True)

    # -- plumbing ----------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await self._answer(request, handler)
        # Nomad's handlers set X-Nomad-Index themselves (command/agent/http.go setIndex, setMeta) after their
        # RPC answered, and wrap writes an error with only Content-Type: a 400 of the request's parsing, a 403,
        # a 405, a 500 of an RPC (a lookup, a validation) carry no index. Only a query's 404 does (jobQuery,
        # allocGet, nodeQuery, evalQuery, namespaceQuery, ...: setMeta before `return nil, CodedError(404, ...)`),
        # set where it is raised. Here: the success answers of handlers that did not set it.
        if not response.prepared and response.status < 400 and "X-Nomad-Index" not in response.headers:
            response.headers["X-Nomad-Index"] = str(max(self.cluster.index, 1))
        return response

    async def _answer(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        self.requests[(request.method, request.path)] += 1
        delay_s = 0.0
        for fault in self._faults:
            if fault.remaining > 0 and request.path.startswith(fault.path_prefix) and \
                    (fault.method is None or fault.method == request.method):
                fault.remaining -= 1
                if not fault.status:
                    delay_s = fault.delay_s
                    break
                if fault.carried_out:
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    await self._carry_out(request, handler)
                response = web.Response(status=fault.status, text=fault.body, content_type="text/plain")
                if fault.status == 429:
                    # command/agent/http.go connLimiter: a connection over http_max_conns_per_client is answered a
                    # 429 with Connection: close and no Retry-After, before its request is read, and closed
                    response.force_close()
                return response
        self._faults = [f for f in self._faults if f.remaining > 0]
        if delay_s:
            await request.read()  # the request has arrived whole: it is carried out even if the client gives up
            await asyncio.sleep(delay_s)
        return await self._carry_out(request, handler)

    async def _carry_out(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        refusal = self._acl_refusal(request)
        if refusal is not None:
            status, text = refusal
            if status == 403 and self.fs_through_servers and request.path.startswith("/v1/client/fs/"):
                # nomad/client_fs_endpoint.go logs and stream send structs.ErrPermissionDenied without a code
                # (handleStreamResultError(err, nil, ...)), which command/agent/fs_endpoint.go fsStreamImpl answers
                # as 500; only the allocation's own client (client/fs_endpoint.go) codes it 403
                status = 500
            return web.Response(status=status, text=text, content_type="text/plain")
        if self._no_path_to_region(request):
            # nomad/rpc.go forwardRegion: a region no server knows is structs.ErrNoRegionPath, a plain
            # 500 through command/agent/http.go wrap. Region.List (nomad/regions_endpoint.go) and the
            # agent's own endpoints do not forward; the event stream says it in its own framing.
            return web.Response(status=500, text="No path to region", content_type="text/plain")
        try:
            return await handler(request)
        except CodedError as error:
            message = error.message
            if self.forwarded and error.status == 500:
                # Through a client agent or a follower server the RPC's error comes back wrapped
                # (helper/pool/pool.go ConnPool.RPC: fmt.Errorf("rpc error: %w", err)), still HTTP 500.
                message = f"rpc error: {message}"
            headers = _query_meta(max(error.index, 1)) if error.index is not None else None
            return web.Response(status=error.status, text=message, content_type="text/plain", headers=headers)
        except web.HTTPException as error:
            if error.status == 405:
                return web.Response(status=405, text="Invalid method", content_type="text/plain")
            if error.status == 404:
                return web.Response(status=404, text="Invalid URL", content_type="text/plain")
            raise

    def _request_region(self, request: web.Request) -> str:
        """The region a request is for (command/agent/http.go parseRegion: ?region=, else the agent's)."""
        return request.query.get("region") or self.known_regions[0]

    def _no_path_to_region(self, request: web.Request) -> bool:
        if request.path in ("/v1/regions", "/v1/event/stream") or request.path.startswith("/v1/agent/"):
            return False
        if request.method in ("POST", "PUT") and request.path == "/v1/jobs":
            return False  # (registration reads its region from the body too: register_job)
        return self._request_region(request) not in self.known_regions

    @staticmethod
    def _token_of(request: web.Request) -> str:
        token = request.headers.get("X-Nomad-Token", "")
        auth = request.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        return token

    def _acl_refusal(self, request: web.Request) -> tuple[int, str] | None:
        """Why ACL refuses the request (its status and text), or None. The event stream checks its own (see there).
        An allocation's reads look the allocation up before they check the token's capabilities (_alloc_first)."""
        if not self.acl_token or request.path == "/v1/event/stream":
            return None
        alloc_id = _allocation_read(request)
        if alloc_id is not None and self._answered_before_the_capability(request, alloc_id):
            return None
        if _validated_first(request):
            return None  # (checked by register_job and plan_job after their parsing and the job's validation)
        write = _job_write(request) if self.reject_job_registration else None
        refusal = self._token_refusal(request)
        if refusal is None and write is not None and self._registration_disabled(request):
            return 403, REGISTRATION_DISABLED  # (Job.Dispatch, Job.Scale: after their capability)
        if refusal is not None and alloc_id is not None and request.path.startswith("/v1/allocation/") and \
                self._token_known_or_anonymous(request):
            # nomad/alloc_endpoint.go GetAlloc: an allocation the token may not read (read-job in its namespace)
            # is structs.NewErrUnknownAllocation, a plain error that command/agent/http.go wrap answers as 500
            return 500, f'Unknown allocation "{alloc_id}"'
        return None if refusal is None else (403, refusal)

    def _registration_token_checks(self, request: web.Request, *, register: bool) -> Callable[[], None]:
        """The token checks of Job.Register and Job.Plan, in Nomad's order, once the agent parsed the request
        (command/agent/job_endpoint.go jobUpdate, jobPlan: their 400s come first): a token Authenticate does not take
        is Permission denied, then (Register) registrationsAreAllowed, then the admission controllers validate the
        job (500), and only then is the token's capability checked (nomad/job_endpoint.go doRegister, Plan). Raises
        the refusals before the validation; returns the capability check, which register_job calls after it (and
        before EnforceIndex). The emulator checked the capability first: a token without submit-job was told 403 for
        an invalid job, which Nomad refuses as invalid (500)."""
        if not self.acl_token:
            return lambda: None
        if not self._token_known_or_anonymous(request):
            raise CodedError(403, "Permission denied")
        if register and self.reject_job_registration and self._registration_disabled(request):
            raise CodedError(403, REGISTRATION_DISABLED)

        def capability() -> None:
            refusal = self._token_refusal(request)
            if refusal is not None:
                raise CodedError(403, refusal)
        return capability

    def _accessor_of(self, request: web.Request) -> str:
        """The AccessorID of the request's token, which Job.Register records in the job (nomad/job_endpoint.go
        doRegister: NomadTokenID, unless ACLs are off, "acls-disabled"): "anonymous" without a token (nomad/structs/
        acl.go AnonymousACLToken), else one the emulator derives from the secret (its tokens have none of their own)."""
        if not self.acl_token:
            return ""
        token = self._token_of(request)
        return str(uuid.uuid5(uuid.NAMESPACE_OID, f"hrwsi-emulator-accessor:{token}")) if token else "anonymous"

    def _registration_disabled(self, request: web.Request) -> bool:
        """nomad/job_endpoint.go registrationsAreAllowed: refused while RejectJobRegistration holds unless the
        token is a management one; a token Authenticate does not take is refused as such first."""
        token = self._token_of(request)
        return self._token_known_or_anonymous(request) and not (
            token and hmac.compare_digest(token.encode(), (self.acl_token or "").encode()))

    def _token_known_or_anonymous(self, request: web.Request) -> bool:
        """Whether nomad/auth/auth.go Authenticate takes the token: none (the anonymous token), or one it knows."""
        token = self._token_of(request)
        return not token or token in self.acl_policies or hmac.compare_digest(token.encode(),
                                                                            (self.acl_token or "").encode())

    def _answered_before_the_capability(self, request: web.Request, alloc_id: str) -> bool:
        """Whether a read of an allocation is answered before its capability is checked. The fs logs endpoint
        refuses its missing parameters in the HTTP handler (command/agent/fs_endpoint.go Logs, FileCatRequest:
        400), before any RPC. Then nomad/client_fs_endpoint.go logs/stream and nomad/alloc_endpoint.go GetAlloc
        refuse a token Authenticate does not take (Permission denied), look the allocation up (unknown: 404,
        "Unknown allocation" / "alloc not found"; a malformed ID: 500), and only then check the token's
        capability in the allocation's namespace. The emulator checked the capability first: a token without
        read-logs was told 403 where Nomad says the allocation is not there."""
        if request.path.startswith("/v1/client/fs/logs/") and (
                not request.query.get("task") or request.query.get("type") not in ("stdout", "stderr")):
            return True
        if request.path.startswith("/v1/client/fs/cat/") and not request.query.get("path"):
            return True
        return self._token_known_or_anonymous(request) and alloc_id not in self.cluster.allocs

    def _token_refusal(self, request: web.Request) -> str | None:
        """Why ACL refuses the request (the 403 text), or None."""
        if request.method == "DELETE" and any((request.query.get(flag) or "") not in ("", *GO_TRUE, *GO_FALSE)
                                              for flag in ("purge", "global")):
            return None  # refused by jobDelete's parsing, before the RPC checks the token (deregister_job)
        need = need_for(request.method, request.path, purge=_flag(request.query.get("purge")))
        if need is None:
            return None
        token = self._token_of(request)
        if not token:
            return "Permission denied"
        if hmac.compare_digest(token.encode(), self.acl_token.encode()):
            return None  # the management token
        policy = self.acl_policies.get(token)
        if policy is None:
            # A token Nomad does not know (or not a UUID nor a workload identity): the RPC endpoints answer any
            # failed authentication as structs.ErrPermissionDenied (nomad/job_endpoint.go and alloc_endpoint.go,
            # eval_, node_, namespace_, variables_, client_fs_endpoint.go: `if authErr != nil`); only the agent's
            # own endpoints, which resolve the token themselves (command/agent/agent_endpoint.go ResolveToken),
            # say structs.ErrTokenNotFound.
            return "ACL token not found" if request.path.startswith("/v1/agent/") else "Permission denied"
        if request.path.startswith("/v1/namespace/"):
            # nomad/namespace_endpoint.go GetNamespace: aclObj.AllowNamespace(name), any capability there
            name = request.path.removeprefix("/v1/namespace/")
            return None if name in policy.namespaces and policy.capabilities else "Permission denied"
        if request.path.startswith("/v1/node/pool/"):
            # nomad/node_pool_endpoint.go GetNodePool: AllowNodePoolOperation(name, read), a node_pool rule
            name = request.path.removeprefix("/v1/node/pool/")
            return None if name in policy.node_pools else "Permission denied"
        variable = request.path.removeprefix("/v1/var/") if request.path.startswith("/v1/var/") else ""
        capability = {"GET": "read", "PUT": "write", "POST": "write", "DELETE": "destroy"}.get(request.method, "read")
        if not allows(policy, need, self._namespace(request), variable, capability):
            return "Permission denied"
        return None

    def _token_allows(self, request: web.Request, topics: list[tuple[str, str]]) -> bool:
        """The event stream's own check, topic by topic (nomad/event_endpoint.go validateNsOp): Job, Allocation,
        Evaluation, Deployment and Service need read-job in the namespace, Node needs node:read, and any other
        topic, `*` among them (what a subscription without a topic asks: command/agent/event_endpoint.go
        allTopics), a management token. The emulator asked read-job whatever the topics."""
        token = self._token_of(request)
        if token and hmac.compare_digest(token.encode(), (self.acl_token or "").encode()):
            return True
        policy = self.acl_policies.get(token)
        if policy is None:
            return False
        for topic, _ in topics:
            if topic in ("Job", "Allocation", "Evaluation", "Deployment", "Service"):
                need = Need(any_of=("read-job",))
            elif topic == "Node":
                need = Need(node="read")
            else:
                return False
            if not allows(policy, need, self._namespace(request)):
                return False
        return True

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_route("GET", "/v1/jobs", self.list_jobs)
        r.add_route("POST", "/v1/jobs", self.register_job)
        r.add_route("PUT", "/v1/jobs", self.register_job)
        r.add_route("*", "/v1/job/{tail:.+}", self.job_route)
        r.add_route("GET", "/v1/allocations", self.list_allocations)
        r.add_route("GET", "/v1/allocation/{id}", self.get_allocation)
        r.add_route("GET", "/v1/evaluations", self.list_evaluations)
        r.add_route("GET", "/v1/evaluation/{id}", self.get_evaluation)
        r.add_route("GET", "/v1/evaluation/{id}/allocations", self.evaluation_allocations)
        r.add_route("GET", "/v1/nodes", self.list_nodes)
        r.add_route("GET", "/v1/node/pools", self.list_node_pools)
        r.add_route("GET", "/v1/node/pool/{name}", self.get_node_pool)
        r.add_route("GET", "/v1/namespaces", self.list_namespaces)
        r.add_route("GET", "/v1/namespace/{name}", self.get_namespace)
        r.add_route("GET", "/v1/node/{id}", self.get_node)
        r.add_route("GET", "/v1/node/{id}/allocations", self.node_allocations)
        r.add_route("POST", "/v1/node/{id}/eligibility", self.node_eligibility)
        r.add_route("PUT", "/v1/node/{id}/eligibility", self.node_eligibility)
        r.add_route("POST", "/v1/node/{id}/drain", self.node_drain)
        r.add_route("PUT", "/v1/node/{id}/drain", self.node_drain)
        r.add_route("*", "/v1/system/gc", self.system_gc)
        r.add_route("GET", "/v1/status/leader", self.status_leader)
        r.add_route("GET", "/v1/status/peers", self.status_peers)
        r.add_route("GET", "/v1/regions", self.regions)
        r.add_route("GET", "/v1/agent/self", self.agent_self)
        r.add_route("GET", "/v1/agent/health", self.agent_health)
        r.add_route("GET", "/v1/event/stream", self.event_stream)
        r.add_route("GET", "/v1/client/fs/logs/{id}", self.alloc_logs)
        r.add_route("GET", "/v1/client/fs/cat/{id}", self.alloc_cat)
        r.add_route("*", "/v1/var/{path:.+}", self.variable)
        r.add_route("GET", "/v1/operator/scheduler/configuration", self.scheduler_configuration)
        r.add_route("PUT", "/v1/operator/scheduler/configuration", self.set_scheduler_configuration)
        r.add_route("POST", "/v1/operator/scheduler/configuration", self.set_scheduler_configuration)

    async def _blocking(self, request: web.Request, compute: Callable[[], tuple],
                        not_found: str | None = None) -> web.Response:
        """Nomad's blocking query: answer when the result's index passes ?index, or when ?wait ends.
        `compute` gives (index, body) or (index, body, the index answered): a listing Nomad answers with a
        whole table's index still holds only until its own objects change (nomad/rpc.go blockingRPC: the
        query's watch set is on what it read; it runs again when that changes)."""
        query = request.query
        # command/agent/http.go parseWait: ?wait is Go's time.ParseDuration ("30" without a unit is refused,
        # only "0" goes without one), ?index an unsigned integer; each refused in its own words.
        wait_text = query.get("wait") or ""
        try:
            if wait_text.isdigit() and wait_text != "0":
                raise ValueError(wait_text)
            wait = min(parse_duration(wait_text), MAX_QUERY_TIME_S) if wait_text else DEFAULT_QUERY_TIME_S
        except ValueError:
            raise CodedError(400, "Invalid wait time") from None
        try:
            min_index = int(query.get("index") or 0)
            if min_index < 0:
                raise ValueError(min_index)
        except ValueError:
            raise CodedError(400, "Invalid index") from None
        loop = asyncio.get_running_loop()
        if min_index:
            wait += self.query_stagger(wait / QUERY_JITTER_FRACTION)
        deadline = loop.time() + wait
        while True:
            index, body, *answered = compute()
            if min_index == 0 or index > min_index or self._closing.is_set():
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self.cluster.wait_for_change(remaining)
        shown = answered[0] if answered else index
        if body is None and not_found is not None:
            # command/agent/job_endpoint.go jobQuery and the like: setMeta before the 404, so it carries the
            # query's index (for an object that is not there, its table's: nomad/job_endpoint.go GetJob)
            return web.Response(status=404, text=not_found, content_type="text/plain", headers=_query_meta(max(shown, 1)))
        return _json(body, shown)

    @staticmethod
    def _namespace(request: web.Request) -> str:
        return request.query.get("namespace") or "default"

    @staticmethod
    async def _body(request: web.Request, *, allow_empty: bool = False) -> dict:
        text = await request.text()
        if not text.strip() and allow_empty:
            return {}
        try:
            body = json.loads(text)
        except ValueError as error:
            raise CodedError(400, f"Failed to decode request body: {error}") from None
        if not isinstance(body, dict):
            raise CodedError(400, "Failed to decode request body: expected a JSON object")
        return body

    # -- jobs --------------------------------------------------------------------------------
    async def list_jobs(self, request: web.Request) -> web.Response:
        namespace, prefix = self._namespace(request), request.query.get("prefix", "")
        with_meta = _flag(request.query.get("meta"))
        c = self.cluster

        def compute():
            jobs = [c.job_stub(j, with_meta) for (ns, job_id), j in sorted(c.jobs.items())
                    if (namespace == "*" or ns == namespace) and job_id.startswith(prefix)]
            return max(c.table_index["jobs"], c.table_index["job_summary"]), jobs
        return await self._blocking(request, compute)

    async def register_job(self, request: web.Request, path_id: str | None = None) -> web.Response:
        body = await self._body(request)
        job = body.get("Job")
        if job is None:
            raise CodedError(400, "Job must be specified")
        if not isinstance(job, dict):
            raise CodedError(400, "Failed to decode request body: Job must be an object")
        if not job.get("ID"):
            raise CodedError(400, "Job ID hasn't been provided")
        if path_id is not None and job["ID"] != path_id:
            raise CodedError(400, "Job ID does not match name")
        # command/agent/job_endpoint.go namespaceForJob: ?namespace= first, then the request body's
        # Namespace, then the job's own, then "default"; the job is registered in that namespace.
        namespace = (request.query.get("namespace") or body.get("Namespace") or job.get("Namespace")
                     or "default")
        job["Namespace"] = namespace
        # command/agent/job_endpoint.go regionForJob: ?region=, the body's Region, the job's own; "global"
        # (or none) is the agent's region. A region no server knows: nomad/rpc.go forwardRegion.
        region = request.query.get("region") or body.get("Region") or job.get("Region") or ""
        if region in ("", "global"):
            region = self.known_regions[0]
        if region not in self.known_regions:
            raise CodedError(500, "No path to region")
        job["Region"] = region
        capability = self._registration_token_checks(request, register=True)
        try:
            result = self.cluster.register_job(job, namespace, enforce_index=bool(body.get("EnforceIndex")),
                                               job_modify_index=int(body.get("JobModifyIndex") or 0),
                                               authorize=capability, token_accessor=self._accessor_of(request))
        except CodedError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            raise CodedError(400, f"Failed to decode request body: {error!r}") from None
        return _json(result, result["Index"])

    async def plan_job(self, request: web.Request, path_id: str) -> web.Response:
        """POST /v1/job/:id/plan: what registering the job would do, registering nothing (command/agent/
        job_endpoint.go jobPlan, nomad/job_endpoint.go Job.Plan; its ACL rule is acl.need_for's). The emulator
        checks the request as the agent does and answers a plan with no diff nor annotations."""
        body = await self._body(request)
        job = body.get("Job")
        if not isinstance(job, dict):
            raise CodedError(400, "Job must be specified")
        if not job.get("ID"):
            raise CodedError(400, "Job must have a valid ID")
        if job["ID"] != path_id:
            raise CodedError(400, "Job ID does not match")
        capability = self._registration_token_checks(request, register=False)
        try:
            self.cluster.admit(job, self._namespace(request))  # (Job.Plan validates the job as Register does)
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            raise CodedError(400, f"Failed to decode request body: {error!r}") from None
        capability()
        existing = self.cluster.jobs.get((self._namespace(request), job["ID"]))
        index = self.cluster.table_index["jobs"]
        return _json({"Index": index, "JobModifyIndex": existing["JobModifyIndex"] if existing else 0,
                      "Annotations": None, "FailedTGAllocs": None, "CreatedEvals": None, "Diff": None,
                      "NextPeriodicLaunch": "0001-01-01T00:00:00Z", "Warnings": ""}, index)

    async def job_route(self, request: web.Request) -> web.Response:
        """/v1/job/<id>[/<suffix>]: ids may contain '/', so known suffixes are matched first."""
        tail = request.match_info["tail"]
        for suffix, handlers in (("/allocations", {"GET": self.job_allocations}),
                                 ("/evaluations", {"GET": self.job_evaluations}),
                                 ("/summary", {"GET": self.job_summary}),
                                 ("/dispatch", {"POST": self.dispatch_job, "PUT": self.dispatch_job}),
                                 ("/plan", {"POST": self.plan_job, "PUT": self.plan_job}),
                                 ("/versions", {"GET": self.job_versions}),
                                 ("/scale", {"POST": self.scale_job, "PUT": self.scale_job})):
            if tail.endswith(suffix) and len(tail) > len(suffix):
                handler = handlers.get(request.method)
                if handler is None:
                    raise CodedError(405, "Invalid method")
                return await handler(request, tail[: -len(suffix)])
        if request.method == "GET":
            return await self.get_job(request, tail)
        if request.method in ("POST", "PUT"):
            return await self.register_job(request, tail)
        if request.method == "DELETE":
            return await self.deregister_job(request, tail)
        raise CodedError(405, "Invalid method")

    async def get_job(self, request: web.Request, job_id: str) -> web.Response:
        key, c = (self._namespace(request), job_id), self.cluster

        def compute():
            job = c.jobs.get(key)
            if job is None:
                # nomad/job_endpoint.go GetJob: a job not there answers the jobs table's index (the query waits
                # on the job's own entry, here its deletion's index)
                return c.job_deleted_index.get(key, c.table_index["jobs"]), None, c.table_index["jobs"]
            return job["ModifyIndex"], job
        return await self._blocking(request, compute, not_found="job not found")

    async def job_versions(self, request: web.Request, job_id: str) -> web.Response:
        job = self.cluster.jobs.get((self._namespace(request), job_id))
        if job is None:
            # (command/agent/job_endpoint.go jobVersions: setMeta, then the 404; the jobs table's index)
            raise CodedError(404, "job versions not found", index=self.cluster.table_index["jobs"])
        return _json({"Versions": [job], "Diffs": None}, job["ModifyIndex"])

    async def job_allocations(self, request: web.Request, job_id: str) -> web.Response:
        key, c = (self._namespace(request), job_id), self.cluster
        any_index = _flag(request.query.get("all"))
        resources = _flag(request.query.get("resources"))

        def compute():
            allocs = [c.alloc_stub(a, resources) for a in c.job_allocs(*key, any_create_index=any_index)]
            # nomad/job_endpoint.go Allocations: the allocs table's index, whatever the job (at least every
            # allocation's ModifyIndex while the state lasts); the emulator answered the job's own
            return c.job_alloc_index.get(key, 1), allocs, c.table_index["allocs"]
        return await self._blocking(request, compute)

    async def job_evaluations(self, request: web.Request, job_id: str) -> web.Response:
        key, c = (self._namespace(request), job_id), self.cluster

        def compute():
            # nomad/job_endpoint.go Evaluations: the evals table's index, whatever the job
            return c.job_eval_index.get(key, 1), c.job_evals(*key), c.table_index["evals"]
        return await self._blocking(request, compute)

    async def job_summary(self, request: web.Request, job_id: str) -> web.Response:
        key, c = (self._namespace(request), job_id), self.cluster

        def compute():
            job = c.jobs.get(key)
            if job is None:  # (nomad/job_endpoint.go Summary: the job_summary table's index)
                return c.job_deleted_index.get(key, c.table_index["job_summary"]), None, c.table_index["job_summary"]
            return c.job_summary_index.get(key, job["ModifyIndex"]), c.job_summary(job)
        return await self._blocking(request, compute, not_found="job not found")

    async def deregister_job(self, request: web.Request, job_id: str) -> web.Response:
        purge = _strict_flag(request, "purge")
        _strict_flag(request, "global")
        result = self.cluster.deregister_job(self._namespace(request), job_id, purge)
        # A job Nomad does not know is no write: the reply is left as it is, Index 0 (nomad/job_endpoint.go
        # Deregister returns nil before raftApply), and command/agent/job_endpoint.go jobDelete's setIndex sends 0.
        return _json(result, result["Index"], index_may_be_zero=True)

    async def scale_job(self, request: web.Request, job_id: str) -> web.Response:
        """POST /v1/job/:id/scale {"Count": n, "Target": {"Job": id, "Group": name}} (command/agent/job_endpoint.go
        jobScaleAction; a group the job lacks is a 400 from nomad/job_endpoint.go Job.Scale)."""
        body = await self._body(request)
        target = body.get("Target") if isinstance(body.get("Target"), dict) else {}
        if target.get("Job") not in (None, job_id):
            raise CodedError(400, "job ID in payload did not match URL")
        group = str(target.get("Group") or "")
        count = body.get("Count")
        if count is not None and not isinstance(count, int):
            raise CodedError(400, "Failed to decode request body: Count must be a number")
        if count is None:  # (a scaling event without a count changes nothing: Job.Scale)
            job = self.cluster.jobs.get((self._namespace(request), job_id))
            if job is None:
                raise CodedError(404, f'job "{job_id}" not found')  # (Job.Scale: %q)
            return _json({"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": job["JobModifyIndex"],
                          "Warnings": "", "Index": self.cluster.index}, self.cluster.index)
        result = self.cluster.scale_job(self._namespace(request), job_id, group, count)
        return _json(result, result["Index"])

    async def dispatch_job(self, request: web.Request, job_id: str) -> web.Response:
        body = await self._body(request, allow_empty=True)
        result = self.cluster.dispatch_job(self._namespace(request), job_id, body,
                                           request.query.get("idempotency_token", ""))
        return _json(result, result["Index"])

    # -- allocations and evaluations -------------------------------------------------------------
    async def list_allocations(self, request: web.Request) -> web.Response:
        namespace, prefix = self._namespace(request), request.query.get("prefix", "")
        resources = _flag(request.query.get("resources"))
        task_states = request.query.get("task_states", "true").lower() != "false"
        c = self.cluster

        def compute():
            out = []
            for alloc in sorted(c.allocs.values(), key=lambda a: a["CreateIndex"]):
                if (namespace == "*" or alloc["Namespace"] == namespace) and alloc["ID"].startswith(prefix):
                    stub = c.alloc_stub(alloc, resources)
                    if not task_states:
                        stub["TaskStates"] = None
                    out.append(stub)
            return c.table_index["allocs"], out
        return await self._blocking(request, compute)

    async def get_allocation(self, request: web.Request) -> web.Response:
        alloc_id, c = request.match_info["id"], self.cluster
        _check_uuid("alloc", alloc_id)

        def compute():
            alloc = c.allocs.get(alloc_id)
            return (alloc["ModifyIndex"], alloc) if alloc else (c.table_index["allocs"], None)
        return await self._blocking(request, compute, not_found="alloc not found")

    async def list_evaluations(self, request: web.Request) -> web.Response:
        namespace, prefix = self._namespace(request), request.query.get("prefix", "")
        status, job = request.query.get("status"), request.query.get("job")
        c = self.cluster

        def compute():
            out = [e for e in sorted(c.evals.values(), key=lambda e: e["CreateIndex"])
                   if (namespace == "*" or e["Namespace"] == namespace) and e["ID"].startswith(prefix)
                   and (not status or e["Status"] == status) and (not job or e["JobID"] == job)]
            return c.table_index["evals"], out
        return await self._blocking(request, compute)

    async def get_evaluation(self, request: web.Request) -> web.Response:
        eval_id, c = request.match_info["id"], self.cluster
        _check_uuid("eval", eval_id)

        def compute():
            evaluation = c.evals.get(eval_id)
            return (evaluation["ModifyIndex"], evaluation) if evaluation else (c.table_index["evals"], None)
        return await self._blocking(request, compute, not_found="eval not found")

    async def evaluation_allocations(self, request: web.Request) -> web.Response:
        eval_id, c = request.match_info["id"], self.cluster
        _check_uuid("eval", eval_id)

        def compute():
            return c.table_index["allocs"], [c.alloc_stub(a) for a in c.allocs.values() if a["EvalID"] == eval_id]
        return await self._blocking(request, compute)

    # -- nodes -------------------------------------------------------------------------------
    async def list_nodes(self, request: web.Request) -> web.Response:
        prefix, resources, c = request.query.get("prefix", ""), _flag(request.query.get("resources")), self.cluster

        def compute():
            nodes = [c.node_stub(n, resources) for n in sorted(c.nodes.values(), key=lambda n: n["ID"])
                     if n["ID"].startswith(prefix)]
            return c.table_index["nodes"], nodes
        return await self._blocking(request, compute)

    async def get_node(self, request: web.Request) -> web.Response:
        node_id, c = request.match_info["id"], self.cluster
        _check_uuid("node", node_id)

        def compute():
            node = c.nodes.get(node_id)
            return (node["ModifyIndex"], c.node_view(node)) if node else (c.table_index["nodes"], None)
        return await self._blocking(request, compute, not_found="node not found")

    async def node_allocations(self, request: web.Request) -> web.Response:
        node_id, c = request.match_info["id"], self.cluster
        _check_uuid("node", node_id)

        def compute():
            return c.table_index["allocs"], [a for a in c.allocs.values() if a["NodeID"] == node_id]
        return await self._blocking(request, compute)

    async def node_eligibility(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        _check_uuid("node", node_id)
        if node_id not in self.cluster.nodes:
            raise CodedError(404, "node not found")
        body = await self._body(request)
        eligibility = body.get("Eligibility")
        if eligibility not in ("eligible", "ineligible"):
            raise CodedError(400, f"invalid scheduling eligibility {eligibility!r}")
        node = self.cluster.set_node_eligibility(node_id, eligibility == "eligible")
        return _json({"EvalIDs": [], "EvalCreateIndex": 0, "NodeModifyIndex": node["ModifyIndex"],
                      "Index": node["ModifyIndex"]}, node["ModifyIndex"])

    async def node_drain(self, request: web.Request) -> web.Response:
        """POST /v1/node/:id/drain {"DrainSpec": {"Deadline": ns, "IgnoreSystemJobs": b} | null, "MarkEligible": b}
        (command/agent/node_endpoint.go nodeToggleDrain; api/nodes.go NodeUpdateDrainRequest)."""
        node_id = request.match_info["id"]
        _check_uuid("node", node_id)
        if node_id not in self.cluster.nodes:
            raise CodedError(404, "node not found")
        body = await self._body(request)
        spec = body.get("DrainSpec")
        if spec is not None and not isinstance(spec, dict):
            raise CodedError(400, "Failed to decode request body: DrainSpec must be an object")
        try:
            deadline = None if spec is None else int(spec.get("Deadline") or 0)
        except (TypeError, ValueError):
            raise CodedError(400, "Failed to decode request body: Deadline must be a number") from None
        node = self.cluster.drain_node(node_id, deadline, mark_eligible=bool(body.get("MarkEligible")),
                                       ignore_system_jobs=bool((spec or {}).get("IgnoreSystemJobs")))
        return _json({"EvalIDs": None, "EvalCreateIndex": 0, "NodeModifyIndex": node["ModifyIndex"],
                      "Index": node["ModifyIndex"]}, node["ModifyIndex"])

    # -- system, status, agent ---------------------------------------------------------------
    async def system_gc(self, request: web.Request) -> web.Response:
        if request.method != "PUT":
            raise CodedError(405, "Invalid method")
        self.cluster.gc(force=True)
        return web.Response(status=200, headers={"X-Nomad-Index": str(self.cluster.index)})

    async def status_leader(self, request: web.Request) -> web.Response:
        return _json("127.0.0.1:4647", self.cluster.index)

    async def status_peers(self, request: web.Request) -> web.Response:
        return _json(["127.0.0.1:4647"], self.cluster.index)

    async def regions(self, request: web.Request) -> web.Response:
        return _json(sorted(self.known_regions), self.cluster.index)

    # -- namespaces and node pools (nomad/namespace_endpoint.go, nomad/node_pool_endpoint.go) ------------
    async def list_namespaces(self, request: web.Request) -> web.Response:
        return _json([self._namespace_view(n) for n in sorted(self.cluster.namespaces)], self.cluster.index)

    async def get_namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.cluster.namespaces:
            # command/agent/namespace_endpoint.go namespaceQuery: setMeta, then the 404
            raise CodedError(404, "Namespace not found", index=self.cluster.index)
        return _json(self._namespace_view(name), self.cluster.index)

    @staticmethod
    def _namespace_view(name: str) -> dict:
        return {"Name": name, "Description": "Default shared namespace" if name == "default" else "",
                "Quota": "", "Meta": None, "Capabilities": None, "NodePoolConfiguration": None,
                "CreateIndex": 1, "ModifyIndex": 1}

    async def list_node_pools(self, request: web.Request) -> web.Response:
        return _json([self._node_pool_view(p) for p in sorted(self.cluster.node_pools)], self.cluster.index)

    async def get_node_pool(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.cluster.node_pools:
            # command/agent/node_pool_endpoint.go nodePoolQuery: setMeta, then the 404
            raise CodedError(404, "node pool not found", index=self.cluster.index)
        return _json(self._node_pool_view(name), self.cluster.index)

    @staticmethod
    def _node_pool_view(name: str) -> dict:
        description = {"all": "Node pool with all nodes in the cluster.", "default": "Default node pool."}
        return {"Name": name, "Description": description.get(name, ""), "Meta": None,
                "SchedulerConfiguration": None, "CreateIndex": 1, "ModifyIndex": 1}

    async def agent_health(self, request: web.Request) -> web.Response:
        return _json({"server": {"ok": True, "message": "ok"}}, self.cluster.index)

    async def agent_self(self, request: web.Request) -> web.Response:
        return _json({"config": {"Region": self.known_regions[0], "Datacenter": "dc1", "ACL": {"Enabled": bool(self.acl_token)},
                                 "Version": {"Version": self.version, "VersionMetadata": "emulated"}},
                      "member": {"Name": "nomad-emulator (test double)", "Tags": {"region": self.known_regions[0]}},
                      "stats": {}}, self.cluster.index)

    # -- operator ----------------------------------------------------------------------------
    def _scheduler_config(self) -> dict:
        return {"SchedulerAlgorithm": "binpack", "MemoryOversubscriptionEnabled": False,
                "RejectJobRegistration": self.reject_job_registration, "PauseEvalBroker": False,
                "NodeLimitForFeasibilityChecks": 0,
                "PreemptionConfig": {"SystemSchedulerEnabled": True, "SysBatchSchedulerEnabled": False,
                                     "BatchSchedulerEnabled": False, "ServiceSchedulerEnabled": False},
                "CreateIndex": 1, "ModifyIndex": 1}

    async def scheduler_configuration(self, request: web.Request) -> web.Response:
        """GET /v1/operator/scheduler/configuration (command/agent/operator_endpoint.go schedulerGetConfig; its
        fields as nomad/structs/operator.go SchedulerConfiguration; operator:read, management here)."""
        return _json({"SchedulerConfig": self._scheduler_config(), "Index": self.cluster.index,
                      "LastContact": 0, "KnownLeader": True}, self.cluster.index)

    async def set_scheduler_configuration(self, request: web.Request) -> web.Response:
        """PUT /v1/operator/scheduler/configuration: the whole configuration, of which the emulator keeps
        RejectJobRegistration (schedulerUpdateConfig; nomad/operator_endpoint.go SchedulerSetConfiguration:
        operator:write, management here)."""
        body = await self._body(request)
        self.reject_job_registration = bool(body.get("RejectJobRegistration"))
        return _json({"Updated": True, "Index": self.cluster.index}, self.cluster.index)

    # -- logs --------------------------------------------------------------------------------
    def _alloc_file(self, alloc_id: str, relative: str) -> Path:
        _check_uuid("alloc", alloc_id)
        if alloc_id not in self.cluster.allocs:
            raise CodedError(404, f'Unknown allocation "{alloc_id}"')  # (structs.NewErrUnknownAllocation: %q)
        node = self.cluster.nodes.get(self.cluster.allocs[alloc_id]["NodeID"])
        if node is None:
            raise CodedError(400, f"Unknown node {self.cluster.allocs[alloc_id]['NodeID']!r}")
        if node["Status"] in ("down", "disconnected"):
            # Served by the allocation's client, which a node away is not connected to: nomad/client_fs_endpoint.go
            # logs (serverWithNodeConn) and findNodeConnAndForward (Cat) fail with ErrNoNodeConn, HTTP 404
            # (command/agent/fs_endpoint.go); a node the servers no longer know is 400 "Unknown node".
            raise CodedError(404, "No path to node")
        base = (self.cluster.work_dir / "allocs" / alloc_id).resolve()
        path = (base / relative).resolve()
        if base not in path.parents and path != base:
            raise CodedError(400, "Path escapes the allocation directory")
        return path

    async def alloc_logs(self, request: web.Request) -> web.Response:
        q = request.query
        task, kind = q.get("task", ""), q.get("type", "")
        if not task:
            raise CodedError(400, "must provide task name")  # (command/agent/fs_endpoint.go taskNotPresentErr)
        if kind not in ("stdout", "stderr"):
            raise CodedError(400, "must provide log type (stdout/stderr)")  # (logTypeNotPresentErr)
        path = self._alloc_file(request.match_info["id"], f"alloc/logs/{task}.{kind}.0")
        data = await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else b"")
        offset = int(q.get("offset") or 0)
        data = data[-offset:] if q.get("origin") == "end" and offset else data[offset:]
        if _flag(q.get("plain")):
            return web.Response(body=data, content_type="text/plain")
        frame = {"Data": base64.b64encode(data).decode(), "File": f"alloc/logs/{task}.{kind}.0",
                 "Offset": len(data)} if data else {}
        return web.Response(text=json.dumps(frame), content_type="application/json")

    async def alloc_cat(self, request: web.Request) -> web.Response:
        path = self._alloc_file(request.match_info["id"], request.query.get("path", "/").lstrip("/"))
        if not path.is_file():
            raise CodedError(404, "file does not exist")
        return web.Response(body=await asyncio.to_thread(path.read_bytes), content_type="text/plain")

    # -- variables ---------------------------------------------------------------------------
    async def variable(self, request: web.Request) -> web.Response:
        """GET/PUT/DELETE /v1/var/:path (nomad/variables_endpoint.go; paths under nomad/ as structs/variables.go)."""
        path, namespace, c = request.match_info["path"], self._namespace(request), self.cluster
        key = (namespace, path)
        if request.method == "GET":
            if key not in c.variables:
                # command/agent/variable_endpoint.go variableQuery: setMeta, then the 404
                raise CodedError(404, "variable not found", index=c.index)
            return _json(c.variables[key], c.variables[key]["ModifyIndex"])
        if request.method == "DELETE":
            c.variables.pop(key, None)
            return _json(None, c.index)
        if request.method != "PUT":
            raise CodedError(405, "Invalid method")
        parts = path.split("/")
        if parts[0] == "nomad" and (len(parts) == 1 or parts[1] not in ("jobs", "job-templates", "sentinel")):
            raise CodedError(400, 'only paths at "nomad/jobs" or "nomad/job-templates" and below are valid paths '
                                  'under the top-level "nomad" directory')
        body = await self._body(request)
        items = body.get("Items") or {}
        if not isinstance(items, dict) or not all(isinstance(v, str) for v in items.values()):
            raise CodedError(400, "Items must be a map of strings")
        c.index += 1
        created = c.variables.get(key, {}).get("CreateIndex", c.index)
        c.variables[key] = {"Namespace": namespace, "Path": path, "Items": dict(items), "CreateIndex": created,
                            "ModifyIndex": c.index, "CreateTime": 0, "ModifyTime": 0}
        return _json(c.variables[key], c.index)

    # -- event stream ------------------------------------------------------------------------
    async def event_stream(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/event/stream in the framing of the Nomad version emulated (see event_stream.py)."""
        namespace = self._namespace(request)
        topics: list[tuple[str, str]] = []
        for raw in request.query.getall("topic", []):
            topic, _, key = raw.partition(":")
            if not topic:
                raise CodedError(400, f"Invalid topic query: {raw}")
            topics.append((topic, key or "*"))
        topics = topics or [("*", "*")]
        try:
            start = int(request.query.get("index") or 0)
        except ValueError:
            raise CodedError(400, "Unable to parse index") from None
        self.event_stream_connections += 1
        failing = self._stream_failures > 0
        self._stream_failures = max(0, self._stream_failures - 1)
        # A region no server knows (nomad/rpc.go forwardRegion) fails the subscription as any RPC error does.
        failing = failing or self._request_region(request) not in self.known_regions
        denied = self.acl_token is not None and not self._token_allows(request, topics)
        if self.event_stream_framing == FRAMING_CHUNKED_GZIP and (failing or denied):
            # <= 1.11.1: the RPC's error comes before the first line, so it is the answer's status.
            raise CodedError(403, "Permission denied") if denied else CodedError(500, STREAM_FAILURE)
        generation = self._stream_generation

        def wanted(event: dict) -> bool:
            if namespace != "*" and event["Namespace"] not in ("", namespace):
                return False
            return any((t == "*" or t == event["Topic"]) and
                       (k == "*" or k == event["Key"] or k in event["FilterKeys"]) for t, k in topics)

        def still_open() -> bool:
            return not self._closing.is_set() and generation == self._stream_generation

        lag = self._stream_lags.pop(0) if self._stream_lags else 0
        lines = stream_lines(self.cluster, wanted, start, self.event_heartbeat, still_open, lag_frames=lag)
        if self.event_stream_framing == FRAMING_CHUNKED_GZIP:
            return await serve_chunked(request, lines)
        # >= 1.11.2: hijacked before the subscription, so an error is a 200 that ends without a line.
        return await serve_hijacked(request, self.event_stream_framing, None if failing or denied else lines)
