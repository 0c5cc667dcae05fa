"""hrwsi.backends.nomad.workers: Nomad's nodes become hrwsi workers and flavours (`hrwsi workers sync`)."""

from __future__ import annotations

import asyncio

import pytest

from hrwsi.backends.nomad.workers import fetch_nodes, sync_workers
from hrwsi.testing.nomad_emulator import EmulatedNode
from tests.contract.conftest import NODE_1, NODE_2, Target, open_emulator

pytestmark = pytest.mark.contract


async def test_nodes_expose_capacity_and_sync_into_workers(nomad: Target, db):
    nodes = await fetch_nodes(nomad.config())
    assert nodes and all("NodeResources" in n and "ReservedResources" in n for n in nodes)
    detail = (await nomad.ahttp("GET", f"/v1/node/{nodes[0]['ID']}")).json()
    assert detail["NodeResources"]["Cpu"]["CpuShares"] > 0 and "Disk" in detail["NodeResources"]
    report = await asyncio.to_thread(sync_workers, db, nodes, mhz_per_core=1000.0)
    workers = {r[0]: r[1:] for r in db.execute("SELECT name, flavour, active, node_id FROM hrwsi.worker")}
    assert set(workers) == {n["Name"] for n in nodes}
    assert {w[2] for w in workers.values()} == {n["ID"] for n in nodes}
    if nomad.is_emulator:
        flavours = {r[0]: (float(r[1]), r[2], r[3]) for r in
                    db.execute("SELECT name, cpu, ram_mb, disk_mb FROM hrwsi.flavour")}
        assert flavours == {"nomad-default": (4.0, 2048, 20_000), "contract.small": (2.0, 1000, 10_000)}
        assert workers[NODE_2][0] == "contract.small" and report.active == sorted(workers)
        without_node_2 = await asyncio.to_thread(sync_workers, db, [n for n in nodes if n["Name"] != NODE_2])
        assert without_node_2.vanished == [NODE_2]
        assert db.execute("SELECT active FROM hrwsi.worker WHERE name = %s", (NODE_2,)).fetchone() == (False,)
        nomad.emulator.node_down(NODE_1)
        again = await asyncio.to_thread(sync_workers, db, await fetch_nodes(nomad.config()))
        assert (again.inactive, again.active, again.vanished) == ([NODE_1], [NODE_2], [])
        active = dict(db.execute("SELECT name, active FROM hrwsi.worker").fetchall())
        assert active == {NODE_1: False, NODE_2: True}


async def test_only_nodes_of_the_jobs_node_pool_become_workers(nomad: Target, db, tmp_path):
    nomad.require_emulator("nodes in two node pools")
    nodes = [EmulatedNode("pool-default"), EmulatedNode("pool-gpu", node_pool="gpu", node_class="gpu.large")]
    async with open_emulator(tmp_path, "pools", nodes) as target:
        listed = await fetch_nodes(target.config())
        # A job without NodePool runs only in "default" (nomad/job_endpoint_hook_node_pool_ce.go): a gpu node could
        # never run one, so it is no worker of a launcher that submits to "default".
        report = await asyncio.to_thread(sync_workers, db, listed)
        assert report.active == ["pool-default"] and any("pool-gpu" in s for s in report.skipped)
        assert await target.backend().worker_activity() == {"pool-default": True}
        gpu = await asyncio.to_thread(sync_workers, db, listed, node_pool="gpu")
        assert gpu.active == ["pool-gpu"] and gpu.vanished == ["pool-default"]
        everywhere = await asyncio.to_thread(sync_workers, db, listed, node_pool="all")
        assert everywhere.active == ["pool-default", "pool-gpu"]
        assert await target.backend(node_pool="all").worker_activity() == {"pool-default": True, "pool-gpu": True}


async def test_sync_names_active_workers_defined_by_hand_that_no_nomad_node_is_named_after(nomad: Target, db):
    """Planned on one, a task waited queued for ever ("Constraint ${node.unique.name} = ... filtered")
    and the sync said nothing of it."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('hand', 4, 16000, 50000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour, active) VALUES ('worker-large-01', 'hand', true), "
               "('worker-large-02', 'hand', false)")
    report = await asyncio.to_thread(sync_workers, db, await fetch_nodes(nomad.config()))
    assert report.lines()[-1:] == [
        "1 active worker(s) defined by hand have no Nomad node of that name (worker-large-01): the Nomad backend "
        "can run nothing planned on them (tasks would wait queued); set `active = false` for them in the "
        "configuration if they are not Nomad nodes"]
    assert db.execute("SELECT active FROM hrwsi.worker WHERE name = 'worker-large-01'").fetchone() == (True,), \
        "it changes nothing: they are the configuration's"
