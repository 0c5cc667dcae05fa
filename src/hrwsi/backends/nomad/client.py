"""The Nomad HTTP API, called from asyncio: python-nomad in a bounded thread pool, with retries.

python-nomad is synchronous: every call runs in a thread pool of `max_connections` threads (one
client and one requests.Session per thread, so Nomad's limit of 100 connections per client is
never reached) through its raw `.request(...)` method, which sidesteps its traps (no blocking
queries, a broken event-stream helper, dispatch idempotency token in the body). A transient
error (429, 502-504, a 500 of a read or one that names a transient cause) is retried with
backoff for `retry_for_s`; anything else is answered to the caller, who decides.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import nomad
import requests
import urllib3
from nomad.api.base import Requester
from nomad.api.exceptions import BaseNomadException

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.backends.nomad.config import NomadConfig, public_address

logger = logging.getLogger(__name__)

# What a 500 says when it is worth retrying: no leader, a connection that broke or timed out, or Raft's errors
# while the servers elect a leader, which a write returns as they are (nomad/rpc.go raftApply; hashicorp/raft
# api.go ErrLeadershipLost, ErrNotLeader, ErrEnqueueTimeout, ErrRaftShutdown, ErrLeadershipTransferInProgress).
TRANSIENT_500 = ("No cluster leader", "i/o timeout", "connection refused", "connection reset", "broken pipe", "EOF",
                 "context deadline exceeded", "lead thread didn't get connection", "injected error",
                 "leadership lost while committing log", "node is not the leader", "timed out enqueuing operation",
                 "raft is already shutdown", "leadership transfer in progress")
# Of those, the ones said before a write could take effect (no leader to take it, none reached, not enqueued).
NOT_CARRIED_OUT_500 = ("No cluster leader", "connection refused", "node is not the leader",
                       "timed out enqueuing operation")
RPC_ERROR_PREFIX = "rpc error: "


def error_text(text: str) -> str:
    """Nomad's error without the wrapping of a forwarded RPC: behind a client agent or a follower server
    every RPC error reads "rpc error: <the error>" (helper/pool/pool.go ConnPool.RPC), so "job already
    exists" or a validation error must be read after it, not taken for a connection problem."""
    text = text.strip()
    while text.startswith(RPC_ERROR_PREFIX):
        text = text[len(RPC_ERROR_PREFIX):].lstrip()
    return text


class NomadError(Exception):
    """Nomad answered an error (status) or could not be reached (status None)."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status
        # Nomad could not serve the call whatever it asked (out of reach, overloaded, the token refused)
        self.unavailable = status is None
        # A try of the call went out and its answer never came (a read timeout, a connection cut mid-answer, a
        # gateway's 502/504): Nomad may have carried it out (NomadClient.call)
        self.may_have_arrived = False


@dataclass
class NomadResponse:
    status: int
    headers: Mapping[str, str]
    text: str
    # (as NomadError.may_have_arrived, for a transient answer returned when the retries ran out)
    may_have_arrived: bool = False

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None

    @property
    def index(self) -> int:
        # (ASCII digits: int() read '1_0' as 10 and other scripts' digits as an index Nomad never sent)
        return ascii_decimal(self.headers.get("X-Nomad-Index") or "0") or 0


def _text(response: requests.Response) -> str:
    """The body as UTF-8, which Nomad's API speaks (JSON, and the tasks' logs as the tasks wrote
    them). requests decodes a text/plain body without a charset as Latin-1 (RFC 2616), so a task's
    "ünïcødé" was kept in its log file as "Ã¼nÃ¯cÃ¸dÃ©" (found by exploratory testing)."""
    return response.content.decode("utf-8", errors="replace")


def _cut_off(response: requests.Response, text: str) -> bool:
    """A JSON answer that only the connection's close ended and that is not whole. Nomad sends a length or
    chunks (Go's net/http), and urllib3 raises when either falls short; an HTTP/1.0 proxy in front of Nomad
    sends neither, and a connection cut mid-body then reads as a whole answer (RFC 9112 6.3: the close is the
    end), which failed in the caller's JSON parsing as if Nomad had said it. A transport fault: retried."""
    headers = response.headers
    if "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return False
    if not headers.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


# urllib3's wrapping of a cause ("HTTPConnectionPool(host='h', port=4646): Max retries exceeded with url:
# /v1/nodes (Caused by NewConnectionError(...))"): the address is said already, the cause is what ops need
CONNECTION_PREFIX = re.compile(r"^HTTPS?Connection(Pool)?\(host=[^)]*\): ")


def _cause(error: object) -> str:
    """A connection error's cause in one short line: "Failed to establish a new connection: [Errno 111]
    Connection refused", "Read timed out. (read timeout=30)"."""
    args = getattr(error, "args", None)
    reason = getattr(args[0], "reason", None) if args else None
    return CONNECTION_PREFIX.sub("", str(reason if reason is not None else error))


def may_have_arrived(error: object) -> bool:
    """Whether a call that got no answer may have reached Nomad: anything but a connection never made (refused,
    its name not resolved, its connect or TLS handshake timed out), after which nothing was sent."""
    if isinstance(error, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return False
    args = getattr(error, "args", None)
    reason = getattr(args[0], "reason", None) if args else None
    return not isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def quote_id(job_id: str) -> str:
    """A job ID as one path segment (dispatched job IDs contain '/')."""
    return quote(job_id, safe="")


def _requesters(client: nomad.Nomad):
    """Every python-nomad endpoint object of a client, including nested ones (event.stream, status.leader)."""
    for value in vars(client).values():
        if isinstance(value, Requester):
            yield value
        elif hasattr(value, "__dict__"):
            yield from (v for v in vars(value).values() if isinstance(v, Requester))


def may_have_taken_effect(method: str, response: NomadResponse) -> bool:
    """A transient answer to a write that may have been carried out all the same: a gateway's that cannot tell
    (502, 504), or a 500 of Nomad's whose write may have been committed (ErrLeadershipLost: the entry was
    appended before the leader was deposed) or forwarded to the leader before the connection broke."""
    if method == "get":
        return False
    if response.status in GATEWAY_CANNOT_REACH:
        return True
    text = error_text(response.text)
    return response.status == 500 and is_transient(method, response) and not any(m in text for m in NOT_CARRIED_OUT_500)


# What Nomad answers (HTTP 403) registrations, dispatches and scales of every token but a management one while its
# scheduler configuration rejects them (RejectJobRegistration: nomad/job_endpoint.go registrationsAreAllowed;
# nomad/structs/errors.go errJobRegistrationDisabled).
REGISTRATION_DISABLED = "Job registration, dispatch, and scale are disabled by the scheduler configuration"
# What Nomad says refusing a token (nomad/structs/errors.go errPermissionDenied, errTokenNotFound).
ACL_REFUSALS = ("Permission denied", "ACL token not found")


def refuses_the_token(response: NomadResponse) -> bool:
    """An ACL refusal: HTTP 401/403, or a 500 saying one. The fs endpoints answer a token without read-logs 500
    "Permission denied" through the servers (nomad/client_fs_endpoint.go logs sends it without a code, which
    command/agent/fs_endpoint.go fsStreamImpl answers 500), 403 only from the allocation's own client agent."""
    return response.status in (401, 403) or (response.status == 500 and error_text(response.text) in ACL_REFUSALS)


def is_transient(method: str, response: NomadResponse) -> bool:
    """Worth retrying: overload and gateway errors, a 500 of a read, or a 500 naming a transient cause; never
    an ACL refusal (refuses_the_token), which asking again does not mend."""
    if response.status in (429, 502, 503, 504):
        return True
    if response.status >= 500 and not refuses_the_token(response):
        text = error_text(response.text)
        return method == "get" or text == "shutdown" or any(m in text for m in TRANSIENT_500)
    return False


@dataclass
class NomadProblem:
    """What kept Nomad from serving the latest calls: out of reach, overloaded, or refusing the token."""

    text: str
    since: datetime
    seen: float  # (monotonic) when last met
    # A refused token is Nomad's answer for one endpoint (an ACL policy may allow jobs but not nodes):
    # only a call of that endpoint served clears it. Out of reach or overloaded: any call served.
    refused_endpoint: str | None = None
    # Nomad out of reach: the call got no answer (a connection refused, reset or timed out), or only a
    # gateway's that cannot reach Nomad (502, 504). An answer of Nomad's own (503 "No cluster leader",
    # a 429) is not: it is reached, and its answers are retried.
    unreachable: bool = False
    refused_method: str | None = None  # the refused call's: a read refused keeps the attempts, a write loses them


# A problem not met again for this long is no longer said (the call that met it may not be made again).
PROBLEM_FORGOTTEN_S = 600.0
# What a proxy or load balancer in front of Nomad answers when it cannot reach it (Bad Gateway, Gateway Timeout).
GATEWAY_CANNOT_REACH = (502, 504)
# The longest a probe of whether Nomad answers again waits for its answer (NomadBackend.probe): a Nomad
# that answers at all answers its index of jobs at once.
PROBE_TIMEOUT_S = 5.0


class NomadClient:
    """Nomad API calls in a bounded thread pool (created on first use), retried while transient."""

    def __init__(self, config: NomadConfig):
        self.config = config
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.closed = False
        self._problem: NomadProblem | None = None
        # How each retry is logged: a warning in a service (ops read its log); a command a person waits
        # for says the outcome in one line and sets DEBUG (`hrwsi workers sync` printed five retries).
        self.retry_log_level = logging.WARNING

    def problem(self) -> NomadProblem | None:
        """What kept Nomad from serving the latest calls (None: they were served)."""
        found = self._problem
        if found is not None and time.monotonic() - found.seen > PROBLEM_FORGOTTEN_S:
            return None
        return found

    def _note(self, endpoint: str, response: NomadResponse | None, problem: str, method: str) -> None:
        """Keep what a call met for `hrwsi status` (the launcher's heartbeat writes it)."""
        if response is not None and refuses_the_token(response):
            text = (f"Nomad refuses the launcher's token (HTTP {response.status}: {error_text(response.text)[:200]}): "
                    "check NOMAD_TOKEN and its ACL policy")
            refused: str | None = endpoint
        elif response is None or is_transient(method, response):
            text, refused = problem, None
        else:  # served (an answer of its own, a 404 say, is the call's business)
            if self._problem is not None and self._problem.refused_endpoint in (None, endpoint):
                self._problem = None
            return
        since = self._problem.since if self._problem is not None else datetime.now(UTC)
        unreachable = response is None or response.status in GATEWAY_CANNOT_REACH
        self._problem = NomadProblem(text, since, time.monotonic(), refused, unreachable,
                                     method if refused is not None else None)

    def forget_refusal(self, endpoint: str) -> None:
        """A refusal of `endpoint` is over, told by another call (a plan taken where a registration was refused)."""
        if self._problem is not None and self._problem.refused_endpoint == endpoint:
            self._problem = None

    def session_client(self) -> nomad.Nomad:
        """This thread's python-nomad client, configured from our config only."""
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
            timeout: Any) -> NomadResponse:
        requester: Any = self.session_client()
        for attribute in endpoint.split("."):  # e.g. "jobs", "job", "client.stream_logs"
            requester = getattr(requester, attribute)
        try:
            response = requester.request(*path, method=method, params=dict(params or {}), json=body,
                                         timeout=timeout or self.config.request_timeout_s)
        except BaseNomadException as error:
            raw = error.nomad_resp
            if isinstance(raw, requests.Response):
                return NomadResponse(raw.status_code, raw.headers, _text(raw))
            failure: object = raw
        except requests.RequestException as error:
            failure = error
        else:
            text = _text(response)
            if not _cut_off(response, text):
                return NomadResponse(response.status_code, response.headers, text)
            failure = (f"its answer was cut off after {len(response.content):,} bytes (no Content-Length: "
                       "an HTTP/1.0 proxy in between?)")
        unanswered = NomadError(None, self.unreachable(failure))
        unanswered.may_have_arrived = may_have_arrived(failure)
        raise unanswered from None

    def unreachable(self, error: object) -> str:
        """Why Nomad could not be reached, without the token or the address's password (requests
        quotes a header's value and the URL in some of its errors)."""
        text = f"cannot reach Nomad at {public_address(self.config.address)}: {_cause(error)}"
        for secret in (self.config.token, urlsplit(self.config.address).password):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.config.max_connections, thread_name_prefix="hrwsi-nomad")
        return self._pool

    async def call(self, what: str, endpoint: str, *path: str, method: str = "get", params: dict | None = None,
                   body: Any = None, timeout: Any = None, retry: bool = True,
                   before_retry: Callable[[], Awaitable[bool]] | None = None) -> NomadResponse:
        """One Nomad API call in the thread pool; transient errors are retried with backoff for retry_for_s.
        `before_retry`, awaited before each retry, says whether to send the request again now (False:
        wait and ask again); it may end the call by raising."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.retry_for_s
        delay = 0.2
        arrived = False  # a try whose answer never came may have been carried out (NomadError.may_have_arrived)
        while True:
            if self.closed:
                raise NomadError(None, "the Nomad backend is closed")
            try:
                response = await loop.run_in_executor(
                    self._executor(), functools.partial(self._do, endpoint, path, method, params, body, timeout))
            except NomadError as error:
                problem, response = str(error), None
                arrived = arrived or error.may_have_arrived
            else:
                problem = f"HTTP {response.status}: {response.text.strip()[:200]}"
                arrived = arrived or may_have_taken_effect(method, response)
            self._note(endpoint, response, f"Nomad at {public_address(self.config.address)} answers {problem}"
                       if response is not None else problem, method)
            if response is not None and not is_transient(method, response):
                return response
            if not retry or loop.time() + delay > deadline:
                if response is not None:
                    response.may_have_arrived = arrived
                    return response
                raise self._gave_up(what, problem, arrived)
            logger.log(self.retry_log_level, "could not %s (%s); retrying in %.1f s", what, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            while before_retry is not None and not await before_retry():
                if loop.time() + delay > deadline:
                    raise self._gave_up(what, problem, arrived)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    def _gave_up(what: str, problem: str, arrived: bool) -> NomadError:
        error = NomadError(None, f"could not {what}: {problem}")
        error.may_have_arrived = arrived
        return error

    async def jobs_index(self, *, retry: bool = True, timeout: float | None = None) -> NomadResponse:
        """Nomad's index of jobs (X-Nomad-Index; the jobs table's whatever the prefix) from a list
        whose prefix names no job, so that it lists nothing: the cheapest read Nomad serves (the
        agent's jobListRequest, command/agent/job_endpoint.go, forwards it to Job.List,
        nomad/job_endpoint.go, which walks its state store's jobs by that prefix only)."""
        return await self.call("read Nomad's index of jobs", "jobs",
                               params={"prefix": f"{self.config.job_prefix}index-probe-"}, retry=retry,
                               timeout=timeout)

    def close(self) -> None:
        self.closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
