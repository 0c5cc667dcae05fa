"""The Nomad API the backend relies on: the emulator (a test double) always, a real agent when NOMAD_ADDR is set.

Every contract test takes the `nomad` fixture, parametrised over both targets, so the emulator and
a real agent answer the very same assertions. Tests that need a test hook only the emulator has
(make a node go down, inject errors) say so and are skipped on a real agent.

For a real agent: NOMAD_ADDR (and NOMAD_TOKEN with a management token when ACLs are on), at least
one ready Linux client with the raw_exec driver enabled, /bin/sh on it; NOMAD_CONTRACT_NODE names
the node to pin on (default: the first ready, eligible one); NOMAD_CONTRACT_GC=1 allows the test
that forces a cluster-wide garbage collection. With HRWSI_NOMAD_RECORD set (python -m
hrwsi.testing.nomad_recorder sets it), every exchange with the agent is recorded, raw, into
tests/contract/recordings/<agent version>/; each recorded version then runs as a third target,
`replay-<version>`, answered from those recordings (in CI, with no agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from hrwsi.backends.base import JobSpec
from hrwsi.backends.nomad import NomadBackend, NomadConfig
from hrwsi.backends.nomad.event_stream import ssl_context
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from hrwsi.testing.nomad_emulator.event_stream import FRAMING_RAW, FRAMINGS
from hrwsi.testing.nomad_recorder import (
    RECORD_ENV,
    RECORDINGS,
    RecordingProxy,
    ReplayServer,
    agent_version,
    cassette_name,
    cassettes,
    load_cassette,
)

pytestmark = pytest.mark.contract

NO_AGENT = "NOMAD_ADDR not set: no real Nomad agent to check against"
NODE_1 = "contract-node-1"
NODE_2 = "contract-node-2"
GUARD_S = 60.0  # a liveness guard against hangs, not a timing assertion
# ACL tokens of the emulator in tests that need several: made up per run, never committed.
MANAGEMENT_TOKEN, SUBMITTER_TOKEN, READER_TOKEN = (str(uuid.uuid4()) for _ in range(3))


@dataclass
class Target:
    """One Nomad API to check: the emulator or a real agent."""

    kind: str
    address: str
    token: str | None
    node: str
    work: Path
    emulator: NomadEmulator | None = None
    backends: list[NomadBackend] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # replays reuse the recorded one

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    def require_emulator(self, why: str) -> NomadEmulator:
        if self.emulator is None:
            pytest.skip(f"needs the emulator's test hooks ({why}); a real agent cannot be told to")
        return self.emulator

    def require_gc_allowed(self) -> None:
        """PUT /v1/system/gc collects the whole cluster, not only this suite's jobs: opt-in on a real agent."""
        if self.emulator is None and os.environ.get("NOMAD_CONTRACT_GC") != "1":
            pytest.skip("PUT /v1/system/gc collects every dead job of the cluster; set NOMAD_CONTRACT_GC=1 to allow")

    async def acl_enabled(self) -> bool:
        agent = (await self.ahttp("GET", "/v1/agent/self")).json()
        return bool(((agent.get("config") or {}).get("ACL") or {}).get("Enabled"))

    def config(self, **overrides: Any) -> NomadConfig:
        options: dict[str, Any] = {"address": self.address, "token": self.token, "stream_read_timeout_s": 20.0,
                                   "retry_for_s": 20.0, "blocking_wait_s": 5.0}
        options.update(overrides)
        return NomadConfig(**options)

    def backend(self, **overrides: Any) -> NomadBackend:
        backend = NomadBackend(self.config(**overrides))
        self.backends.append(backend)
        return backend

    def job_id(self, name: str) -> str:
        return f"hrwsi-contract-{self.run_id}-{name}-1"

    def spec(self, name: str, script: str, *, worker: str | None = None, ram_mb: int = 64, cpu: float = 0.1,
             storage_mb: int = 50, timeout_s: float | None = None, image: str | None = None,
             command: tuple[str, ...] | None = None, env: dict[str, str] | None = None) -> JobSpec:
        base = self.work / name
        return JobSpec(job_id=self.job_id(name), task_id=zlib.crc32(name.encode()) % 100_000, attempt=1, routine="contract",
                       condition="contract_condition", input_path=str(base / "input.json"), tile="32TPR",
                       worker=worker or self.node,
                       command=command if command is not None else ("/bin/sh", "-c", script),
                       image=image, cpu=cpu, ram_mb=ram_mb, storage_mb=storage_mb, output_dir=str(base / "out"),
                       log_path=str(base / "job.log"), timeout_s=timeout_s, env=env or {})

    # -- raw HTTP, for the API's own semantics ---------------------------------------------------
    def http(self, method: str, path: str, *, token: str | None | bool = True, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        use = self.token if token is True else (token or None)
        if use:
            headers["X-Nomad-Token"] = use
        kwargs.setdefault("timeout", 90)
        return requests.request(method, self.address + path, headers=headers, **kwargs)

    async def ahttp(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return await asyncio.to_thread(self.http, method, path, **kwargs)

    @staticmethod
    def path_id(job_id: str) -> str:
        return quote(job_id, safe="")

    async def purge(self, job_id: str) -> None:
        await self.ahttp("DELETE", f"/v1/job/{self.path_id(job_id)}", params={"purge": "true"})

    async def final_allocation(self, job_id: str) -> dict:
        """The job's allocation once it ended (complete, failed or lost), read in full."""
        async def ended() -> dict:
            while True:
                for stub in (await self.ahttp("GET", f"/v1/job/{self.path_id(job_id)}/allocations")).json() or []:
                    if stub["ClientStatus"] in ("complete", "failed", "lost"):
                        return (await self.ahttp("GET", f"/v1/allocation/{stub['ID']}")).json()
                await asyncio.sleep(0.05)
        return await asyncio.wait_for(ended(), GUARD_S)

    async def free_memory_mb(self, node_name: str) -> int:
        """What Nomad can still place on the node: NodeResources - ReservedResources - running allocations."""
        nodes = (await self.ahttp("GET", "/v1/nodes", params={"resources": "true"})).json()
        node = next(n for n in nodes if n["Name"] == node_name)
        free = node["NodeResources"]["Memory"]["MemoryMB"] - node["ReservedResources"]["Memory"]["MemoryMB"]
        allocs = (await self.ahttp("GET", f"/v1/node/{node['ID']}/allocations")).json()
        for alloc in allocs:
            if alloc["DesiredStatus"] == "run" and alloc["ClientStatus"] in ("pending", "running"):
                free -= sum(t["Memory"]["MemoryMB"] for t in alloc["AllocatedResources"]["Tasks"].values())
        return int(free)


class Progress:
    """Collects on_progress calls; lets a test wait for a given state."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    async def __call__(self, state: str, reason: str) -> None:
        self.calls.append((state, reason))
        self._changed.set()

    async def reached(self, state: str, containing: str = "") -> str:
        async def until() -> str:
            while True:
                for s, reason in self.calls:
                    if s == state and containing in reason:
                        return reason
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(until(), GUARD_S)


# Scripts a test may stop. Nomad sends the stop signal (SIGINT) to the task's own process, the shell, not to its
# process group (drivers/shared/executor/executor_unix.go shutdownProcess), and kills the rest only after the kill
# timeout (executor.go Shutdown). A shell defers SIGINT while a foreground command runs: any /bin/sh waits out a
# plain `sleep 30` (dash does not exec a -c script's last command), and bash, /bin/sh on some distributions, goes
# on with a loop whose `sleep` did not die of the signal (its wait-and-cooperative-exit). Either way a stop on a
# real agent waited the job's kill timeout (30 s for the backend's jobs). A trap runs once the foreground command
# returns; it dies of the signal itself, as a shell with the default action would.
STOP_AT_ONCE = "trap 'trap - INT; kill -INT $$' INT; "


def script_until_exists(path: Path | str, then: str = "") -> str:
    """A task script that waits until `path` exists (never, on a real agent's node, for a path of this machine's),
    then runs `then`; stopped, it ends within one 0.05 s sleep whatever /bin/sh is."""
    return f'{STOP_AT_ONCE}while [ ! -e "{path}" ]; do sleep 0.05; done' + (f"; {then}" if then else "")


def sleeping(seconds: float) -> str:
    """A task script that sleeps `seconds` unless stopped: the sleep is the task's process (exec), so the stop
    signal reaches it at once."""
    return f"exec sleep {seconds:g}"


def minimal_job(job_id: str, script: str = "exit 0", **task_extra) -> dict:
    task = {"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sh", "args": ["-c", script]}}
    task.update(task_extra)
    return {"ID": job_id, "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [task]}]}


async def follow(backend, spec, progress: Progress | None = None):
    return await asyncio.wait_for(backend.wait(spec, spec.job_id, progress or Progress()), GUARD_S)


def _agent_node(address: str, token: str | None) -> str:
    wanted = os.environ.get("NOMAD_CONTRACT_NODE")
    if wanted:
        return wanted
    headers = {"X-Nomad-Token": token} if token else {}
    nodes = requests.get(address + "/v1/nodes", headers=headers, timeout=30).json()
    ready = [n["Name"] for n in nodes if n["Status"] == "ready" and n["SchedulingEligibility"] == "eligible"]
    if not ready:
        pytest.skip("the Nomad agent at NOMAD_ADDR has no ready, eligible client node")
    return sorted(ready)[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so a recording can be kept only for a test that passed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@contextlib.asynccontextmanager
async def open_target(kind: str, tmp_path: Path, framing: str = FRAMING_RAW, test_id: str = "",
                      passed=lambda: True) -> AsyncIterator[Target]:
    """The emulator (a test double) serving the event stream in `framing`; the agent at NOMAD_ADDR (recorded
    through a proxy when HRWSI_NOMAD_RECORD is set); or `replay-<version>`, that agent's recorded answers."""
    work = tmp_path / "jobs"
    work.mkdir(exist_ok=True)
    if kind == "agent":
        async with _agent_target(work, test_id, passed) as target:
            yield target
        return
    if kind.startswith("replay-"):
        async with _replay_target(work, kind.removeprefix("replay-"), test_id) as target:
            yield target
        return
    nodes = [EmulatedNode(NODE_1, cpu_mhz=4000, memory_mb=2048, disk_mb=20_000, docker_volumes=True),
             EmulatedNode(NODE_2, cpu_mhz=2000, memory_mb=1024, disk_mb=10_000, reserved_memory_mb=24,
                          node_class="contract.small")]
    emulator = NomadEmulator(nodes, event_heartbeat=0.2, work_dir=tmp_path / "emulator", event_stream_framing=framing)
    await emulator.__aenter__()
    target = Target("emulator", emulator.address, None, NODE_1, work, emulator)
    try:
        yield target
    finally:
        await _close_within_guard(target, emulator)


async def _close_within_guard(target: Target, emulator: NomadEmulator) -> None:
    """Close the test's backends, then the emulator; a close that hangs fails the test with every
    task's stack instead of stopping the suite (once, in CI, a teardown here never ended)."""
    async def close() -> None:
        for backend in target.backends:
            await backend.close()
        await emulator.__aexit__(None, None, None)

    closing = asyncio.ensure_future(close())
    done, _ = await asyncio.wait({closing}, timeout=GUARD_S)
    if closing in done:
        closing.result()
        return
    stacks = []
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        stacks.append(f"{task.get_name()}: " + " <- ".join(
            f"{f.f_code.co_name} ({Path(f.f_code.co_filename).name}:{f.f_lineno})" for f in reversed(frames)))
    closing.cancel()
    raise AssertionError(f"closing the Nomad backends and the emulator took over {GUARD_S:.0f} s; tasks:\n"
                         + "\n".join(stacks))


@contextlib.asynccontextmanager
async def _agent_target(work: Path, test_id: str, passed) -> AsyncIterator[Target]:
    address = os.environ.get("NOMAD_ADDR")
    if not address:
        pytest.skip(NO_AGENT)
    address, token, run_id = address.rstrip("/"), os.environ.get("NOMAD_TOKEN") or None, uuid.uuid4().hex[:8]
    node = await asyncio.to_thread(_agent_node, address, token)
    proxy = None
    if os.environ.get(RECORD_ENV):
        tls = ssl_context(NomadConfig.from_env()) if address.startswith("https") else None
        version = await asyncio.to_thread(agent_version, address, token, tls)
        cassette = Path(os.environ[RECORD_ENV]) / version / cassette_name(test_id)
        proxy = RecordingProxy(address, cassette, {"agent_version": version, "test": test_id, "run_id": run_id,
                                                   "node": node, "recorded_at": datetime.now(UTC).isoformat()}, tls)
        address = await proxy.start()
    try:
        target = Target("agent", address, token, node, work, run_id=run_id)
        try:
            yield target
        finally:
            for backend in target.backends:
                await backend.close()
            prefix = f"hrwsi-contract-{target.run_id}-"
            leftovers = (await target.ahttp("GET", "/v1/jobs", params={"prefix": prefix})).json() or []
            for job in leftovers:
                await target.purge(job["ID"])
    finally:
        if proxy is not None:
            await proxy.close()
            if not passed():
                proxy.cassette.unlink(missing_ok=True)  # only what a passing test saw is worth replaying


@contextlib.asynccontextmanager
async def _replay_target(work: Path, version: str, test_id: str) -> AsyncIterator[Target]:
    recorded_id = re.sub(rf"\[replay-{re.escape(version)}", "[agent", test_id)
    path = RECORDINGS / version / cassette_name(recorded_id)
    if not path.is_file():
        pytest.skip(f"no recording of this test against Nomad {version}")
    header, exchanges = load_cassette(path)
    server = ReplayServer(exchanges)
    address = await server.start()
    target = Target("replay", address, None, header.get("node") or NODE_1, work, run_id=header["run_id"])
    try:
        yield target
    finally:
        for backend in target.backends:
            await backend.close()
        await server.close()


@contextlib.asynccontextmanager
async def open_emulator(tmp_path: Path, name: str, nodes: list[EmulatedNode] | None = None,
                        **options: Any) -> AsyncIterator[Target]:
    """An emulator of its own for one test (options: NomadEmulator's), as a Target on its first node."""
    nodes = nodes or [EmulatedNode(f"{name}-node")]
    work = tmp_path / "jobs"
    work.mkdir(exist_ok=True)
    options.setdefault("event_heartbeat", 0.2)
    async with NomadEmulator(nodes, work_dir=tmp_path / name, **options) as emulator:
        target = Target("emulator", emulator.address, options.get("acl_token"), nodes[0].name, work, emulator)
        try:
            yield target
        finally:
            for backend in target.backends:
                await backend.close()


def _passed(request) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is not None and report.passed


# Recorded agents: their answers replay in CI (hrwsi.testing.nomad_recorder).
REPLAYS = [f"replay-{version}" for version in sorted({version for version, _ in cassettes()})]


@pytest.fixture(params=["emulator", "agent", *REPLAYS])
async def nomad(request, tmp_path):
    """The Nomad API under test: the emulator (a test double), the real agent at NOMAD_ADDR, or a recorded one."""
    async with open_target(request.param, tmp_path, test_id=request.node.nodeid, passed=lambda: _passed(request)) \
            as target:
        yield target


@pytest.fixture(params=[f"emulator-{f}" for f in FRAMINGS] + ["agent", *REPLAYS])
async def framed(request, tmp_path):
    """As `nomad`, with the emulator serving the event stream in each framing Nomad has used (1.10 to 2.0)."""
    kind, framing = (request.param.split("-", 1) + [FRAMING_RAW])[:2] if request.param.startswith("emulator") \
        else (request.param, FRAMING_RAW)
    async with open_target(kind, tmp_path, framing, test_id=request.node.nodeid, passed=lambda: _passed(request)) \
            as target:
        yield target
