"""One suite: the Nomad API semantics hrwsi relies on, and the Nomad backend's behaviour on top of them.

Runs against the emulator (a test double) always and against a real agent when NOMAD_ADDR is set
(see conftest.py). No timing assertions: waits are bounded only by a liveness guard.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import pytest
import requests

from hrwsi.backends.nomad import NomadError, build_job
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.contract.conftest import GUARD_S, NODE_1, NODE_2, Progress, Target

pytestmark = pytest.mark.contract


def minimal_job(job_id: str, script: str = "exit 0", **task_extra) -> dict:
    task = {"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sh", "args": ["-c", script]}}
    task.update(task_extra)
    return {"ID": job_id, "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [task]}]}


async def follow(backend, spec, progress: Progress | None = None):
    return await asyncio.wait_for(backend.wait(spec, spec.job_id, progress or Progress()), GUARD_S)


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


# -- the backend on top of it ------------------------------------------------------------------------
async def test_submit_then_wait_reports_processed_with_the_task_environment(nomad: Target):
    backend = nomad.backend()
    task_id = nomad.spec("processed", "").task_id
    spec = nomad.spec("processed", f'test "$HRWSI_TASK_ID" = "{task_id}" || exit 7; '
                                   'echo done > "$HRWSI_OUTPUT_DIR/product.txt"')
    assert await backend.submit(spec) == spec.job_id
    outcome = await follow(backend, spec)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert outcome.started_at is not None and outcome.finished_at is not None
    if nomad.is_emulator:  # the task ran here, so its product is on this filesystem
        assert (Path(spec.output_dir) / "product.txt").read_text() == "done\n"
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert stored["Meta"]["hrwsi_task_id"] == str(spec.task_id)
    assert stored["TaskGroups"][0]["RestartPolicy"]["Attempts"] == 0
    await backend.forget(spec.job_id)


@pytest.mark.parametrize("code, state", [(3, "internal_error"), (210, "external_error")])
async def test_exit_codes_map_to_outcomes(nomad: Target, code: int, state: str):
    backend = nomad.backend()
    spec = nomad.spec(f"exit-{code}", f"echo failing >&2; exit {code}")
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert (outcome.state, outcome.exit_code) == (state, code), outcome.message
    assert "failing" in Path(spec.log_path).read_text()  # the task's stderr, kept from Nomad's logs
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert len(allocations) == 1  # restart and reschedule attempts 0: Nomad did not retry
    await backend.forget(spec.job_id)


async def test_driver_failure_is_an_internal_error_with_nomads_message(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("driver-failure", "", command=("/nonexistent/hrwsi-routine",))
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert outcome.state == "internal_error" and outcome.exit_code is None
    assert "Driver Failure" in outcome.message
    await backend.forget(spec.job_id)


async def test_a_job_that_fits_nowhere_is_queued_then_runs_when_capacity_frees(nomad: Target):
    backend = nomad.backend()
    release = nomad.work / "release"
    free = await nomad.free_memory_mb(nomad.node)
    blocker_script = (f'while [ ! -e "{release}" ]; do sleep 0.05; done' if nomad.is_emulator else "sleep 20")
    blocker = nomad.spec("blocker", blocker_script, ram_mb=free - 100)
    waiting = nomad.spec("waiting", "exit 0", ram_mb=200)
    await backend.submit(blocker)
    blocker_progress, waiting_progress = Progress(), Progress()
    blocker_task = asyncio.ensure_future(follow(backend, blocker, blocker_progress))
    await blocker_progress.reached("running")
    await backend.submit(waiting)
    waiting_task = asyncio.ensure_future(follow(backend, waiting, waiting_progress))
    reason = await waiting_progress.reached("queued")
    assert "Resources exhausted on 1 nodes: memory" in reason, reason
    stored = (await nomad.ahttp("GET", f"/v1/job/{waiting.job_id}")).json()
    assert stored["Status"] == "pending"  # blocked, not failed
    evaluations = (await nomad.ahttp("GET", f"/v1/job/{waiting.job_id}/evaluations")).json()
    assert any(e["Status"] == "blocked" for e in evaluations)
    assert any(e.get("FailedTGAllocs") for e in evaluations)
    release.touch()
    assert (await blocker_task).state == "processed"
    outcome = await waiting_task
    assert outcome.state == "processed", outcome.message
    assert [s for s, _ in waiting_progress.calls][:1] == ["queued"]
    for spec in (blocker, waiting):
        await backend.forget(spec.job_id)


async def test_a_lost_node_loses_its_job_and_the_attempt_is_not_rerun(nomad: Target):
    emulator = nomad.require_emulator("make a node go down")
    backend = nomad.backend()
    spec = nomad.spec("lost", f'while [ ! -e "{nomad.work / "never"}" ]; do sleep 0.05; done', worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.node_down(NODE_2)
    outcome = await following
    assert outcome.state == "lost" and NODE_2 in outcome.message, outcome.message

    async def stopped() -> dict:
        while True:
            job = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
            if job["Stop"]:
                return job
            await asyncio.sleep(0.05)
    job = await asyncio.wait_for(stopped(), GUARD_S)
    assert job["Stop"] is True  # the backend stopped it: Nomad's replacement will not run this attempt
    emulator.node_up(NODE_2)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert all(a["ClientStatus"] != "running" for a in allocations)


async def test_flavour_placement_lets_nomad_pick_any_node_of_the_class(nomad: Target):
    backend = nomad.backend(placement="flavour")
    worker = NODE_2 if nomad.is_emulator else nomad.node
    node_class = next(n["NodeClass"] for n in await backend.nodes() if n["Name"] == worker)
    spec = nomad.spec("flavour", "exit 0", worker=worker)
    await backend.submit(spec)
    (constraint,) = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()["TaskGroups"][0]["Constraints"]
    if node_class:
        assert constraint == {"LTarget": "${node.class}", "Operand": "=", "RTarget": node_class}
    else:  # a node without a class: the job is pinned to it instead
        assert (constraint["LTarget"], constraint["RTarget"]) == ("${node.unique.name}", worker)
    assert (await follow(backend, spec)).state == "processed"
    (allocation,) = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    if nomad.is_emulator:
        assert allocation["NodeName"] == NODE_2  # the only node of class contract.small
    await backend.forget(spec.job_id)


async def test_resubmitting_is_idempotent_and_never_reruns_a_finished_job(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("idempotent", "exit 0")
    await backend.submit(spec)
    first = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    await backend.submit(spec)  # e.g. a launcher adopting a 'submitted' job after a crash
    again = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert (again["Version"], again["JobModifyIndex"]) == (first["Version"], first["JobModifyIndex"])
    assert (await follow(backend, spec)).state == "processed"
    # Re-registering the unchanged spec through the plain API is a no-op too.
    raw = await nomad.ahttp("POST", "/v1/jobs", json={"Job": build_job(spec, backend.config)})
    assert raw.status_code == 200 and raw.json()["JobModifyIndex"] == first["JobModifyIndex"]
    await backend.submit(spec)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert len(allocations) == 1
    assert (await follow(backend, spec)).state == "processed"  # following it again reads the same end
    await backend.forget(spec.job_id)


async def test_forget_purges_the_finished_job_after_the_purge_delay(nomad: Target):
    backend = nomad.backend(purge_delay_s=1.0)
    spec = nomad.spec("purged", "exit 0")
    await backend.submit(spec)
    await follow(backend, spec)
    assert spec.job_id in await backend.list_jobs(prefix=spec.job_id)
    await backend.forget(spec.job_id)
    # Within the delay the dead job still holds its ID: registering the attempt again runs nothing.
    assert (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).status_code == 200
    await backend.submit(spec)
    assert len((await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()) == 1

    async def purged() -> None:
        while (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).status_code != 404:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(purged(), GUARD_S)
    assert spec.job_id not in await backend.list_jobs(prefix=spec.job_id)
    keeper = nomad.backend(purge=False)
    kept = nomad.spec("kept", "exit 0")
    await keeper.submit(kept)
    await follow(keeper, kept)
    await keeper.forget(kept.job_id)
    assert (await nomad.ahttp("GET", f"/v1/job/{kept.job_id}")).status_code == 200
    await nomad.purge(kept.job_id)


async def test_garbage_collection_gives_404_and_a_seen_end_is_not_lost(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("collected", "exit 0")
    await backend.submit(spec)
    assert (await follow(backend, spec)).state == "processed"
    gc = await nomad.ahttp("PUT", "/v1/system/gc")
    assert gc.status_code == 200, gc.text

    async def collected() -> None:
        while (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).status_code != 404:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(collected(), GUARD_S)
    assert (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json() == []
    again = await follow(backend, spec)  # this backend saw it end: collected, not lost
    assert again.state == "processed"
    stranger = nomad.backend()  # a fresh launcher never saw it end: lost
    assert (await follow(stranger, spec)).state == "lost"


async def test_the_emulator_collects_dead_jobs_after_its_threshold(nomad: Target, tmp_path):
    nomad.require_emulator("configure the GC threshold (Nomad's default is 4 h)")
    async with NomadEmulator([EmulatedNode("gc-node")], gc_interval=0.05, job_gc_threshold=0.2,
                             work_dir=tmp_path / "gc") as emulator:
        target = Target("emulator", emulator.address, None, "gc-node", nomad.work, emulator)
        job_id = target.job_id("auto-gc")
        await target.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id)})

        async def gone() -> None:
            while (await target.ahttp("GET", f"/v1/job/{job_id}")).status_code != 404:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(gone(), GUARD_S)
        assert (await target.ahttp("GET", f"/v1/job/{job_id}/allocations")).json() == []


async def test_cancel_stops_the_job(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("cancelled", f'while [ ! -e "{nomad.work / "never"}" ]; do sleep 0.05; done')
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    await backend.cancel(spec, spec.job_id)
    outcome = await following
    assert outcome.state == "cancelled", outcome.message
    await backend.cancel(spec, spec.job_id)  # already stopped: no error
    await backend.submit(spec)  # resubmitting a stopped attempt does not revive it
    job = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert job["Stop"] is True
    assert len((await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()) == 1
    await backend.forget(spec.job_id)
    await backend.cancel(spec, spec.job_id)  # gone: no error


async def test_a_job_over_its_timeout_is_stopped_as_an_internal_error(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("timeout", f'while [ ! -e "{nomad.work / "never"}" ]; do sleep 0.05; done', timeout_s=0.5)
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert outcome.state == "internal_error" and "timed out" in outcome.message
    job = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert job["Stop"] is True
    await backend.forget(spec.job_id)


async def test_without_the_event_stream_blocking_queries_follow_jobs(nomad: Target):
    backend = nomad.backend(event_stream=False)
    release = nomad.work / "no-stream-release"
    spec = nomad.spec("no-stream", f'while [ ! -e "{release}" ]; do sleep 0.05; done; exit 210'
                      if nomad.is_emulator else "sleep 3; exit 210")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    release.touch()  # the end is only seen through the blocking query on the job list
    assert (await following).state == "external_error"
    await backend.forget(spec.job_id)


async def test_events_missed_while_the_stream_was_down_are_reconciled(nomad: Target, tmp_path):
    nomad.require_emulator("cut the event stream and overrun its buffer")
    async with NomadEmulator([EmulatedNode("gap-node")], event_heartbeat=0.2, event_buffer_size=3,
                             work_dir=tmp_path / "gap") as emulator:
        target = Target("emulator", emulator.address, None, "gap-node", nomad.work, emulator)
        backend = target.backend()
        release = nomad.work / "gap-release"
        spec = target.spec("gap", f'while [ ! -e "{release}" ]; do sleep 0.05; done; exit 210')
        await backend.submit(spec)
        progress = Progress()
        following = asyncio.ensure_future(follow(backend, spec, progress))
        await progress.reached("running")
        connections = emulator.event_stream_connections
        emulator.inject_errors(10_000, 503, path_prefix="/v1/event/stream")
        emulator.drop_event_streams()
        release.touch()

        async def dead() -> None:
            while (await target.ahttp("GET", f"/v1/job/{spec.job_id}")).json()["Status"] != "dead":
                await asyncio.sleep(0.05)
        await asyncio.wait_for(dead(), GUARD_S)
        for i in range(5):  # more events than the buffer keeps: the job's end cannot be replayed
            await target.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(target.job_id(f"filler-{i}"))})
        assert not following.done()
        emulator.clear_faults()
        outcome = await following
        assert outcome.state == "external_error" and outcome.exit_code == 210
        assert emulator.event_stream_connections > connections  # it came back through a new stream
        await backend.close()


async def test_an_unavailable_stream_and_transient_errors_are_survived(nomad: Target):
    emulator = nomad.require_emulator("inject errors")
    emulator.inject_errors(2, 429, path_prefix="/v1/jobs", method="POST")
    emulator.inject_errors(1, 404, path_prefix="/v1/event/stream")
    emulator.inject_errors(2, 500, path_prefix="/v1/job/", method="GET")
    backend = nomad.backend()
    spec = nomad.spec("flaky", "exit 0")
    await backend.submit(spec)  # 429 twice, then accepted
    assert (await follow(backend, spec)).state == "processed"
    assert backend._stream_unavailable  # it fell back to blocking queries
    emulator.inject_errors(1, 400, path_prefix="/v1/jobs", method="POST", body="Job must be specified")
    with pytest.raises(NomadError) as refused:
        await backend.submit(nomad.spec("refused", "exit 0"))
    assert refused.value.status == 400


async def test_a_registration_answered_after_the_client_timed_out_runs_the_attempt_once(nomad: Target):
    emulator = nomad.require_emulator("answer a registration after the client's timeout")
    # The first registration is carried out 2 s late, after the backend gave up (1 s) and registered again;
    # the job ends and its outcome is forgotten before the late registration lands.
    emulator.inject_delays(1, 2.0, path_prefix="/v1/jobs", method="POST")
    backend = nomad.backend(request_timeout_s=1.0, purge_delay_s=5.0)
    spec = nomad.spec("late", "exit 0")
    await backend.submit(spec)
    assert (await follow(backend, spec)).state == "processed"
    await backend.forget(spec.job_id)
    await asyncio.sleep(2.5)  # the late registration has landed by now
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert len(allocations) == 1, "the attempt ran twice"
    assert emulator.cluster.completed_runs[spec.job_id] == 1


async def test_docker_routines_without_a_command_fail_in_the_emulator(nomad: Target):
    nomad.require_emulator("no Docker: the emulator's docker driver reports a Driver Failure")
    backend = nomad.backend()
    spec = nomad.spec("docker", "", command=(), image="registry.example/hrwsi/maja:4.1")
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert outcome.state == "internal_error" and "Docker" in outcome.message


async def test_list_jobs_reports_status_by_deterministic_id(nomad: Target):
    backend = nomad.backend()
    done, running = nomad.spec("listed-done", "exit 0"), nomad.spec(
        "listed-running", f'while [ ! -e "{nomad.work / "stop"}" ]; do sleep 0.05; done')
    await backend.submit(done)
    await follow(backend, done)
    await backend.submit(running)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, running, progress))
    await progress.reached("running")
    listed = await backend.list_jobs(prefix=f"hrwsi-contract-{nomad.run_id}-listed-")
    assert listed == {done.job_id: "dead", running.job_id: "running"}
    (nomad.work / "stop").touch()
    assert (await following).state == "processed"
    for spec in (done, running):
        await backend.forget(spec.job_id)


async def test_nodes_expose_capacity_and_sync_into_workers(nomad: Target, db):
    from hrwsi.nomad_workers import fetch_nodes, sync_workers

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


async def test_ui_link_names_the_job_and_namespace(nomad: Target):
    backend = nomad.backend(namespace="default")
    link = backend.ui_link("parent/dispatch-1-abcd")
    assert link == f"{nomad.address}/ui/jobs/parent%2Fdispatch-1-abcd@default"
    assert requests.utils.urlparse(link).path.startswith("/ui/jobs/")
