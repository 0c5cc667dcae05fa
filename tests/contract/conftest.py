"""The Nomad API the backend relies on: the emulator (a test double) always, a real agent when NOMAD_ADDR is set.

Every contract test takes the `nomad` fixture, parametrised over both targets, so the emulator and
a real agent answer the very same assertions. Tests that need a test hook only the emulator has
(make a node go down, inject errors) say so and are skipped on a real agent.

For a real agent: NOMAD_ADDR (and NOMAD_TOKEN with a management token when ACLs are on), at least
one ready Linux client with the raw_exec driver enabled, /bin/sh on it; NOMAD_CONTRACT_NODE names
the node to pin on (default: the first ready, eligible one).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from hrwsi.backends.base import JobSpec
from hrwsi.backends.nomad import NomadBackend, NomadConfig
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator

pytestmark = pytest.mark.contract

NO_AGENT = "NOMAD_ADDR not set: no real Nomad agent to check against"
NODE_1 = "contract-node-1"
NODE_2 = "contract-node-2"
GUARD_S = 60.0  # a liveness guard against hangs, not a timing assertion


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
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    def require_emulator(self, why: str) -> NomadEmulator:
        if self.emulator is None:
            pytest.skip(f"needs the emulator's test hooks ({why}); a real agent cannot be told to")
        return self.emulator

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
        return JobSpec(job_id=self.job_id(name), task_id=abs(hash(name)) % 100_000, attempt=1, routine="contract",
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

    async def reached(self, state: str) -> str:
        async def until() -> str:
            while True:
                for s, reason in self.calls:
                    if s == state:
                        return reason
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(until(), GUARD_S)


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


@pytest.fixture(params=["emulator", "agent"])
async def nomad(request, tmp_path):
    """The Nomad API under test: the emulator (a test double) or the real agent at NOMAD_ADDR."""
    work = tmp_path / "jobs"
    work.mkdir()
    if request.param == "agent":
        address = os.environ.get("NOMAD_ADDR")
        if not address:
            pytest.skip(NO_AGENT)
        token = os.environ.get("NOMAD_TOKEN") or None
        target = Target("agent", address.rstrip("/"), token, await asyncio.to_thread(_agent_node, address, token),
                        work)
        yield target
        prefix = f"hrwsi-contract-{target.run_id}-"
        leftovers = (await target.ahttp("GET", "/v1/jobs", params={"prefix": prefix})).json() or []
        for job in leftovers:
            await target.purge(job["ID"])
    else:
        nodes = [EmulatedNode(NODE_1, cpu_mhz=4000, memory_mb=2048, disk_mb=20_000),
                 EmulatedNode(NODE_2, cpu_mhz=2000, memory_mb=1024, disk_mb=10_000, reserved_memory_mb=24,
                              node_class="contract.small")]
        async with NomadEmulator(nodes, event_heartbeat=0.2, work_dir=tmp_path / "emulator") as emulator:
            target = Target("emulator", emulator.address, None, NODE_1, work, emulator)
            yield target
            for backend in target.backends:
                await backend.close()
        return
    for backend in target.backends:
        await backend.close()
