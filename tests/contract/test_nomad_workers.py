"""hrwsi.backends.nomad.workers: Nomad's nodes become hrwsi workers and flavours (`hrwsi workers sync`)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import pytest

from hrwsi.backends.nomad.workers import NoNodeInPool, fetch_nodes, flavour_of, sync_from_nomad, sync_workers
from hrwsi.testing.nomad_emulator import EmulatedNode
from tests.contract.conftest import GUARD_S, MANAGEMENT_TOKEN, NODE_1, NODE_2, Progress, Target, follow, open_emulator

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
        # the nodes' own cores (4000 and 2000 MHz at the emulator's 2000 MHz a core), not MHz / 1000
        assert flavours == {"nomad-default": (2.0, 2048, 20_000), "contract.small": (1.0, 1000, 10_000)}
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


async def test_a_node_pool_with_no_node_changes_nothing_and_says_which_pools_there_are(nomad: Target, db):
    # Found by exploratory testing (2026-12-05): HRWSI_NOMAD_NODE_POOL=nopool deactivated every worker
    # ("1 gone from Nomad") and `workers sync` exited 0.
    await asyncio.to_thread(sync_from_nomad, db, nomad.config())
    before = db.execute("SELECT name, active FROM hrwsi.worker ORDER BY name").fetchall()
    assert before and all(active for _, active in before)
    with pytest.raises(NoNodeInPool, match=r"no Nomad node is in node pool 'nopool' \(HRWSI_NOMAD_NODE_POOL; "
                                           r"Nomad lists \d+ node\(s\) in default.*\): nothing changed"):
        await asyncio.to_thread(sync_from_nomad, db, nomad.config(node_pool="nopool"))
    assert db.execute("SELECT name, active FROM hrwsi.worker ORDER BY name").fetchall() == before


async def test_a_nomad_out_of_reach_or_refusing_the_token_is_one_line_for_workers_sync(nomad: Target, db, tmp_path,
                                                                                         caplog):
    from hrwsi.backends.nomad.client import NomadError
    from hrwsi.cli.errors import explain
    caplog.set_level(logging.DEBUG, logger="hrwsi.backends.nomad.client")
    with pytest.raises(NomadError) as unreachable:
        await asyncio.to_thread(sync_from_nomad, db, nomad.config(address="http://127.0.0.1:9"))
    said, code = explain(unreachable.value)
    assert said.startswith("could not list Nomad nodes: cannot reach Nomad at http://127.0.0.1:9") and code == 1
    # Retried all the same, at DEBUG: the error is the one line (five "retrying in ..." warnings came first).
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all(r.levelno == logging.DEBUG for r in retries), [(r.levelname, r.getMessage()) for r in retries]
    if nomad.is_emulator:
        wrong = str(uuid.uuid4())
        async with open_emulator(tmp_path, "acl", acl_token=MANAGEMENT_TOKEN) as target:
            with pytest.raises(NomadError) as refused:
                await asyncio.to_thread(sync_from_nomad, db, target.config(token=wrong))
            said, code = explain(refused.value)
            assert "Nomad refused to list its nodes (HTTP 403" in said and "check NOMAD_TOKEN" in said
            assert wrong not in said and "\n" not in said


async def test_a_flavour_counts_the_nodes_own_cores_and_the_sync_says_when_mhz_per_core_is_far_off(nomad: Target, db,
                                                                                                   tmp_path):
    # Found by exploratory testing: a 4-core 2600 MHz node (CpuShares 10400, client/fingerprint/cpu.go)
    # became a flavour of 10.4 cores at HRWSI_NOMAD_MHZ_PER_CORE=1000.
    if not nomad.is_emulator:  # a real agent's nodes: at most their own cores, whatever their clock
        nodes = await fetch_nodes(nomad.config())
        report = await asyncio.to_thread(sync_workers, db, nodes, mhz_per_core=1000.0)
        flavours = {r[0]: float(r[1]) for r in db.execute("SELECT name, cpu FROM hrwsi.flavour")}
        for node in nodes:
            cores = node["NodeResources"]["Cpu"].get("TotalCpuCores")
            if cores and node["Name"] in report.active + report.inactive:
                assert flavours[flavour_of(node)] <= cores, node["Name"]
        return
    nodes = [EmulatedNode("fast-node", cpu_mhz=10_400, cpu_cores=4, reserved_cpu_mhz=2600, node_class="eo.fast")]
    async with open_emulator(tmp_path, "cores", nodes) as target:
        listed = await fetch_nodes(target.config())
        assert listed[0]["NodeResources"]["Cpu"]["TotalCpuCores"] == 4
        report = await asyncio.to_thread(sync_workers, db, listed, mhz_per_core=1000.0)
        assert db.execute("SELECT cpu FROM hrwsi.flavour WHERE name = 'eo.fast'").fetchone()[0] == 3  # 4 - 2600 MHz
        [said] = [n for n in report.lines() if "MHZ_PER_CORE" in n]
        assert said.startswith("HRWSI_NOMAD_MHZ_PER_CORE is 1000 but Nomad gives 2600 MHz per core on fast-node"), said
        assert "HRWSI_NOMAD_MHZ_PER_CORE=2600" in said
        matching = await asyncio.to_thread(sync_workers, db, listed, mhz_per_core=2600.0)
        assert not [n for n in matching.lines() if "MHZ_PER_CORE" in n]


async def test_a_drained_node_is_no_active_worker_and_its_batch_job_runs_until_the_deadline_then_is_lost(
        nomad: Target):
    # An admin's most common action, `nomad node drain -enable -deadline 1s` (POST /v1/node/:id/drain): the node
    # becomes ineligible and draining (nomad/node_endpoint.go Node.UpdateDrain), so its worker is inactive;
    # a batch allocation runs until the deadline, then is stopped and not replaced (nomad/drainer/drainer.go
    # handleDeadlinedNodes, drainAllocs: MigrateDisablePlacement); the drain then completes, the node ineligible.
    if not nomad.is_emulator and os.environ.get("NOMAD_CONTRACT_DRAIN") != "1":
        pytest.skip("drains a node of the cluster at NOMAD_ADDR; set NOMAD_CONTRACT_DRAIN=1 to allow")
    backend = nomad.backend()
    spec = nomad.spec("drained", "exec sleep 600")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    node_id = next(n["ID"] for n in (await nomad.ahttp("GET", "/v1/nodes")).json() if n["Name"] == nomad.node)
    try:
        drained = await nomad.ahttp("POST", f"/v1/node/{node_id}/drain",
                                    json={"DrainSpec": {"Deadline": 1_000_000_000, "IgnoreSystemJobs": False},
                                          "MarkEligible": False})
        assert drained.status_code == 200, drained.text
        assert (await backend.worker_activity())[nomad.node] is False
        outcome = await following
        assert outcome.state == "lost", outcome.message
        allocs = (await nomad.ahttp("GET", f"/v1/job/{Target.path_id(spec.job_id)}/allocations")).json()
        assert len(allocs) == 1 and allocs[0]["DesiredTransition"].get("Migrate") is True  # not replaced

        async def drain_complete() -> dict:
            while (node := (await nomad.ahttp("GET", f"/v1/node/{node_id}")).json())["DrainStrategy"] is not None:
                await asyncio.sleep(0.1)
            return node
        node = await asyncio.wait_for(drain_complete(), GUARD_S)
        assert node["SchedulingEligibility"] == "ineligible" and (await backend.worker_activity())[nomad.node] is False
    finally:
        undone = await nomad.ahttp("POST", f"/v1/node/{node_id}/drain", json={"DrainSpec": None, "MarkEligible": True})
        assert undone.status_code == 200, undone.text
    assert (await backend.worker_activity())[nomad.node] is True
    await backend.forget(spec.job_id)
