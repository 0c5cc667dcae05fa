"""The Nomad API semantics hrwsi relies on, asked of the API directly (the emulator's rules, hrwsi.testing.nomad_emulator).

Runs against the emulator (a test double) always and against a real agent when NOMAD_ADDR is set
(see conftest.py), so the emulator cannot drift from Nomad unnoticed. No timing assertions: waits
are bounded only by a liveness guard.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest

from hrwsi.backends.nomad import NomadError
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.contract.conftest import GUARD_S, Target, minimal_job

pytestmark = pytest.mark.contract


# -- the API's own semantics -----------------------------------------------------------------------
async def test_register_stores_nomad_server_side_defaults(nomad: Target):
    job_id = nomad.job_id("defaults")
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id)})
    assert response.status_code == 200, response.text
    assert response.json()["EvalID"]
    assert int(response.headers["X-Nomad-Index"]) > 0
    stored = (await nomad.ahttp("GET", f"/v1/job/{job_id}")).json()
    group = stored["TaskGroups"][0]
    task = group["Tasks"][0]
    assert stored["Type"] == "batch"
    assert stored["Status"] in ("pending", "running", "dead")
    assert group["Count"] == 1
    assert group["EphemeralDisk"]["SizeMB"] == 300
    assert (task["Resources"]["CPU"], task["Resources"]["MemoryMB"]) == (100, 300)
    assert (group["RestartPolicy"]["Attempts"], group["RestartPolicy"]["Mode"]) == (3, "fail")
    assert group["ReschedulePolicy"]["Attempts"] == 1 and group["ReschedulePolicy"]["Unlimited"] is False
    assert isinstance(group["RestartPolicy"]["Delay"], int)  # durations are integer nanoseconds
    await nomad.purge(job_id)


async def test_a_job_without_type_is_a_service_job(nomad: Target):
    job = minimal_job(nomad.job_id("service"), "sleep 30")
    del job["Type"]
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    stored = (await nomad.ahttp("GET", f"/v1/job/{job['ID']}")).json()
    assert stored["Type"] == "service"
    await nomad.purge(job["ID"])


async def test_validation_errors_are_500_plain_text_and_malformed_requests_400(nomad: Target):
    disk = minimal_job(nomad.job_id("disk"), Resources={"CPU": 100, "MemoryMB": 64, "DiskMB": 100})
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": disk})
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "disk" in response.text.lower()
    tiny = minimal_job(nomad.job_id("tiny"), Resources={"CPU": 100, "MemoryMB": 1})
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": tiny})
    assert response.status_code == 500 and "MemoryMB" in response.text
    assert (await nomad.ahttp("POST", "/v1/jobs", data="")).status_code == 400
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"NotAJob": {}})).status_code == 400
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": {"Type": "batch"}})).status_code == 400
    assert (await nomad.ahttp("GET", f"/v1/job/{disk['ID']}")).status_code == 404


async def test_unknown_objects(nomad: Target):
    unknown = nomad.job_id("never-registered")
    allocations = await nomad.ahttp("GET", f"/v1/job/{unknown}/allocations")
    assert allocations.status_code == 200 and allocations.json() == []
    assert "X-Nomad-Index" in allocations.headers
    assert (await nomad.ahttp("GET", f"/v1/job/{unknown}")).status_code == 404
    assert (await nomad.ahttp("GET", f"/v1/allocation/{uuid.uuid4()}")).status_code == 404
    assert (await nomad.ahttp("GET", "/v1/allocation/not-a-uuid")).status_code == 500
    purge = await nomad.ahttp("DELETE", f"/v1/job/{unknown}", params={"purge": "true"})
    assert purge.status_code == 200 and purge.json()["EvalID"] == ""


async def test_dispatched_job_ids_contain_a_slash(nomad: Target):
    parent = minimal_job(nomad.job_id("parameterized"), "exit 0")
    parent["ParameterizedJob"] = {"Payload": "forbidden", "MetaRequired": ["tile"]}
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": parent})).status_code == 200
    response = await nomad.ahttp("POST", f"/v1/job/{parent['ID']}/dispatch", json={"Meta": {"tile": "32TPR"}})
    assert response.status_code == 200, response.text
    child = response.json()["DispatchedJobID"]
    assert child.startswith(parent["ID"] + "/dispatch-")
    for path_id in (child, nomad.path_id(child)):  # raw and encoded '/': both reach the child's routes
        allocations = await nomad.ahttp("GET", f"/v1/job/{path_id}/allocations")
        assert allocations.status_code == 200 and isinstance(allocations.json(), list)
        job = await nomad.ahttp("GET", f"/v1/job/{path_id}")
        assert job.status_code == 200 and job.json()["ParentID"] == parent["ID"]
        summary = await nomad.ahttp("GET", f"/v1/job/{path_id}/summary")
        assert summary.status_code == 200 and summary.json()["JobID"] == child
    missing_meta = await nomad.ahttp("POST", f"/v1/job/{parent['ID']}/dispatch", json={"Meta": {}})
    assert missing_meta.status_code == 500
    plain = minimal_job(nomad.job_id("not-parameterized"))
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": plain})
    assert (await nomad.ahttp("POST", f"/v1/job/{plain['ID']}/dispatch", json={})).status_code == 500
    for job_id in (child, parent["ID"], plain["ID"]):
        await nomad.purge(job_id)


async def test_blocking_query_returns_on_change_with_a_new_index(nomad: Target):
    job_id = nomad.job_id("blocking")
    first = await nomad.ahttp("GET", f"/v1/job/{job_id}/allocations")
    index = int(first.headers["X-Nomad-Index"])
    unchanged = await nomad.ahttp("GET", f"/v1/job/{job_id}/allocations", params={"index": index, "wait": "1s"})
    assert unchanged.status_code == 200 and unchanged.json() == []
    assert int(unchanged.headers["X-Nomad-Index"]) == index
    blocked = asyncio.ensure_future(nomad.ahttp("GET", f"/v1/job/{job_id}/allocations",
                                                params={"index": index, "wait": "120s"}))
    await asyncio.sleep(0.2)
    assert not blocked.done()  # nothing changed yet: the query holds
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id)})
    answer = await asyncio.wait_for(blocked, GUARD_S)
    assert answer.status_code == 200
    assert int(answer.headers["X-Nomad-Index"]) > index
    assert [a["JobID"] for a in answer.json()] == [job_id]
    await nomad.purge(job_id)


def _read_stream(target: Target, params: dict, stop: threading.Event, lines: list, enough) -> None:
    with target.http("GET", "/v1/event/stream", params=params, stream=True, timeout=(10, GUARD_S)) as response:
        lines.append(("status", response.status_code))
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    lines.append(json.loads(line))
            if stop.is_set() or enough(lines):
                return


async def test_event_stream_heartbeats_and_frames(nomad: Target):
    job_id, other = nomad.job_id("events"), nomad.job_id("events-other")
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id)})  # buffered before we subscribe
    lines: list = []
    stop = threading.Event()
    heartbeats_wanted = 2 if nomad.is_emulator else 1

    def events(seen: list) -> list[dict]:
        return [e for x in seen if isinstance(x, dict) and x.get("Events") for e in x["Events"]]

    def enough(seen: list) -> bool:
        return (any(e["Type"] == "JobDeregistered" for e in events(seen))
                and sum(1 for x in seen if x == {}) >= heartbeats_wanted)

    reader = asyncio.ensure_future(asyncio.to_thread(
        _read_stream, nomad, {"topic": f"Job:{job_id}", "index": "0"}, stop, lines, enough))
    while not any(isinstance(x, dict) and x.get("Events") for x in lines) and not reader.done():
        await asyncio.sleep(0.05)
    assert lines[:2] == [("status", 200), {}]  # a heartbeat first, then the buffered events
    assert lines[2]["Events"][0]["Type"] == "JobRegistered"
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(other)})
    await nomad.ahttp("DELETE", f"/v1/job/{job_id}")  # stop: a live JobDeregistered event
    try:
        await asyncio.wait_for(reader, GUARD_S)
    finally:
        stop.set()
    frames = [x for x in lines if isinstance(x, dict) and x.get("Events")]
    assert frames and all(isinstance(f["Index"], int) and f["Index"] > 0 for f in frames)
    assert [f["Index"] for f in frames] == sorted(f["Index"] for f in frames)
    assert all(e["Topic"] == "Job" and e["Key"] == job_id for e in events(lines))  # the topic filter holds
    registered = next(e for e in events(lines) if e["Type"] == "JobRegistered")
    assert registered["Payload"]["Job"]["ID"] == job_id and registered["Index"] > 0
    assert sum(1 for x in lines if x == {}) >= heartbeats_wanted
    for job in (job_id, other):
        await nomad.purge(job)


async def test_acl_token_is_checked(nomad: Target, tmp_path):
    if nomad.is_emulator:
        async with NomadEmulator([EmulatedNode("acl-node")], acl_token="s3cr3t-acl-token",
                                 work_dir=tmp_path / "acl") as emulator:
            await _check_acl(Target("emulator", emulator.address, "s3cr3t-acl-token", "acl-node", nomad.work,
                                    emulator))
    else:
        if not nomad.token:
            pytest.skip("NOMAD_TOKEN not set: cannot check the agent's ACLs")
        await _check_acl(nomad)


async def _check_acl(target: Target) -> None:
    anonymous = await target.ahttp("GET", "/v1/jobs", token=False)
    assert anonymous.status_code == 403 and anonymous.headers["Content-Type"].startswith("text/plain")
    wrong = await target.ahttp("GET", "/v1/jobs", token=str(uuid.uuid4()))
    assert wrong.status_code == 403
    assert (await target.ahttp("GET", "/v1/jobs")).status_code == 200
    backend = target.backend()
    try:
        assert isinstance(await backend.list_jobs(), dict)
    finally:
        await backend.close()
    refused = target.backend(token=None)
    try:
        with pytest.raises(NomadError) as error:
            await refused.list_jobs()
        assert error.value.status == 403
    finally:
        await refused.close()


