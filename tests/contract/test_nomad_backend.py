"""hrwsi.backends.nomad on top of the Nomad API: submit, follow, outcomes, cancel, purge, errors.

Runs against the emulator (a test double) always and against a real agent when NOMAD_ADDR is set
(see conftest.py). No timing assertions: waits are bounded only by a liveness guard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from hrwsi.backends.base import AttemptLost, BackendSettingError, JobSpec, claims_own_job_id
from hrwsi.backends.nomad import NomadBackend, NomadError, build_job
from hrwsi.backends.nomad import backend as backend_module
from hrwsi.backends.nomad import task_logs as task_logs_module
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from hrwsi.testing.nomad_emulator.acl import AclPolicy
from hrwsi.testing.nomad_emulator.event_stream import FRAMINGS
from tests.contract.conftest import (
    GUARD_S,
    MANAGEMENT_TOKEN,
    NODE_2,
    SUBMITTER_TOKEN,
    Progress,
    Target,
    follow,
    minimal_job,
    open_emulator,
    script_until_exists,
)

pytestmark = pytest.mark.contract


async def test_submit_then_wait_reports_processed_with_the_task_environment(framed: Target):
    nomad = framed  # every event-stream framing: Nomad 1.10-1.11.1, 1.11.2, 1.11.3 and 2.0
    backend = nomad.backend()
    task_id = nomad.spec("processed", "").task_id
    # A remote agent's client does not share this machine's file system: the output directory the backend
    # prepared here is not there, and writing into it failed the task (found by exploratory testing).
    spec = nomad.spec("processed", f'test "$HRWSI_TASK_ID" = "{task_id}" || exit 7; '
                                   'if [ -d "$HRWSI_OUTPUT_DIR" ]; then echo done > "$HRWSI_OUTPUT_DIR/product.txt"; fi')
    assert await backend.submit(spec) == spec.job_id
    outcome = await follow(backend, spec)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert outcome.started_at is not None and outcome.finished_at is not None
    if nomad.is_emulator:  # the task ran here, so its product is on this filesystem
        assert (Path(spec.output_dir) / "product.txt").read_text() == "done\n"
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert stored["Meta"]["hrwsi_task_id"] == str(spec.task_id)
    assert stored["TaskGroups"][0]["RestartPolicy"]["Attempts"] == 0
    if nomad.is_emulator:  # its end came through the event stream, not through polling
        assert not backend._following.stream_unavailable
        # the index reads only: before the first registration, and the stream's probe
        assert nomad.emulator.requests[("GET", "/v1/jobs")] <= 2
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
    blocker_script = script_until_exists(release) if nomad.is_emulator else "sleep 20"  # runs to its end
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


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


async def test_an_attempt_whose_node_is_cut_off_is_lost_only_once_its_client_must_have_stopped_it(nomad: Target):
    # A node cut off from the servers (a network partition) keeps running its allocations: recorded
    # lost at once, the attempt would run there beside its retry (chaos55: task 112's first attempt).
    emulator = nomad.require_emulator("cut a node off from the servers")
    backend = nomad.backend(stop_after_disconnect_s=1.5, kill_timeout_s=1)
    pid_file = nomad.work / "cut-off.pid"
    # A routine that the client's stop signal (SIGINT) ends at once, even when it inherits SIGINT ignored
    # or blocked (ci56, ci57: alive at the end of the kill timeout in the full suite only): the kill
    # timeout is then all margin, not a tie with the client's SIGKILL.
    routine = ("import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
               f"open({str(pid_file) + '.tmp'!r}, 'w').write(str(os.getpid())); "
               f"os.replace({str(pid_file) + '.tmp'!r}, {str(pid_file)!r}); time.sleep(600)")
    spec = nomad.spec("cut-off", "", command=(sys.executable, "-c", routine), worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert stored["TaskGroups"][0]["Disconnect"]["StopOnClientAfter"] == 1_500_000_000
    assert stored["TaskGroups"][0]["Tasks"][0]["KillTimeout"] == 1_000_000_000

    async def started() -> int:
        while not pid_file.exists():
            await asyncio.sleep(0.02)
        return int(pid_file.read_text())
    pid = await asyncio.wait_for(started(), GUARD_S)
    emulator.node_down(NODE_2, processes_survive=True)
    reason = await progress.reached("running", "disconnected")
    assert "retried" in reason and not following.done(), reason
    assert alive(pid)  # it still runs on its node: not lost yet
    outcome = await following
    assert outcome.state == "lost" and NODE_2 in outcome.message and "its node was away" in outcome.message, \
        outcome.message
    assert not alive(pid)  # its client stopped it before the attempt was given up: it cannot run beside its retry


async def test_an_attempt_that_ended_on_a_node_cut_off_is_recorded_with_its_real_end_when_the_node_is_back(
        nomad: Target):
    emulator = nomad.require_emulator("cut a node off from the servers")
    backend = nomad.backend(stop_after_disconnect_s=60, kill_timeout_s=1)
    gate, finished = nomad.work / "cut-off-gate", nomad.work / "cut-off-finished"
    spec = nomad.spec("back-in-time",
                      script_until_exists(gate, f'echo done > "$HRWSI_OUTPUT_DIR/product.txt"; touch "{finished}"'),
                      worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.node_down(NODE_2, processes_survive=True)
    await progress.reached("running", "disconnected")
    gate.touch()  # the routine ends while its node is away: nobody hears of it yet

    async def ended() -> None:
        while not finished.exists():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ended(), GUARD_S)
    assert not following.done()
    emulator.node_up(NODE_2)
    outcome = await following
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocations] == ["complete"]  # not lost, not replaced: run once
    await backend.forget(spec.job_id)


async def test_a_task_its_client_restarted_without_restoring_runs_again_and_the_attempt_is_judged_by_that_run(
        nomad: Target, caplog):
    # client/allocrunner/taskrunner/task_runner.go, Restore: a client that restarts and cannot reattach
    # to a running task (its process gone) sets it back to pending and runs it again from the start.
    emulator = nomad.require_emulator("restart a node's Nomad agent")
    backend = nomad.backend()
    runs, gate = nomad.work / "not-restored-runs", nomad.work / "not-restored-gate"
    spec = nomad.spec("not-restored", f'echo run >> "{runs}"; '
                      + script_until_exists(gate, 'echo done > "$HRWSI_OUTPUT_DIR/product.txt"'), worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")

    async def started(times: int) -> None:
        while not runs.exists() or len(runs.read_text().splitlines()) < times:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(started(1), GUARD_S)
    emulator.restart_client(NODE_2, restore_fails=True)
    reason = await progress.reached("running", "without reattaching")
    assert "started" in reason and NODE_2 in reason
    await asyncio.wait_for(started(2), GUARD_S)
    gate.touch()
    outcome = await following
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert "started 2 time(s)" in outcome.message, outcome.message
    assert any("without reattaching" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocations] == ["complete"]  # the same allocation ran it again
    await backend.forget(spec.job_id)


async def test_an_attempt_whose_node_rebooted_and_is_back_before_it_is_lost_runs_again_and_is_judged_by_that_run(
        nomad: Target, caplog):
    # A node down (its processes killed: a reboot) keeps the attempt's allocation unknown (Disconnect.Replace
    # false); back with its state before hrwsi's wait for its client to have stopped it, the client cannot
    # reattach and runs the task again from the start in the same allocation (client/allocrunner/taskrunner/
    # task_runner.go Restore). The emulator said it lost, and hrwsi recorded the attempt lost while it ran again.
    emulator = nomad.require_emulator("reboot a node")
    backend = nomad.backend(stop_after_disconnect_s=60, kill_timeout_s=0.5)
    runs, gate = nomad.work / "rebooted-runs", nomad.work / "rebooted-gate"
    spec = nomad.spec("rebooted", f'echo run >> "{runs}"; '
                      + script_until_exists(gate, 'echo done > "$HRWSI_OUTPUT_DIR/product.txt"'), worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")

    async def started(times: int) -> None:
        while not runs.exists() or len(runs.read_text().splitlines()) < times:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(started(1), GUARD_S)
    emulator.node_down(NODE_2)
    await progress.reached("running", "disconnected (unknown)")
    emulator.node_up(NODE_2)
    await asyncio.wait_for(started(2), GUARD_S)
    assert not following.done(), following.result()
    gate.touch()
    outcome = await following
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert "started 2 time(s)" in outcome.message, outcome.message
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocations] == ["complete"]  # the same allocation ran it again
    await backend.forget(spec.job_id)


async def test_a_lost_node_loses_its_job_and_the_attempt_is_not_rerun(nomad: Target):
    emulator = nomad.require_emulator("make a node go down")
    backend = nomad.backend(stop_after_disconnect_s=0.2, kill_timeout_s=0.1)
    spec = nomad.spec("lost", script_until_exists(nomad.work / "never"), worker=NODE_2)
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
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert len(allocations) == 1  # Disconnect.Replace false: Nomad did not place a replacement meanwhile
    emulator.node_up(NODE_2)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert all(a["ClientStatus"] != "running" for a in allocations)


async def test_a_replacement_nomad_placed_before_the_stop_does_not_hide_the_loss(nomad: Target):
    emulator = nomad.require_emulator("make a node go down")
    backend = nomad.backend(stop_after_disconnect_s=0.2, kill_timeout_s=0.1)
    spec = nomad.spec("replaced", script_until_exists(nomad.work / "never"), worker=NODE_2)
    job = build_job(spec, backend.config)
    del job["TaskGroups"][0]["Disconnect"]  # as a job registered by an older hrwsi: Nomad replaces lost ones
    job["TaskGroups"][0]["Constraints"] = []
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    first = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()[0]
    emulator.node_down(first["NodeName"])
    outcome = await following
    assert outcome.state == "lost", outcome.message  # not the replacement's later end: hrwsi retries it


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
    # Re-registering the unchanged spec through the plain API changes nothing either. Its answer's
    # JobModifyIndex is the job's ModifyIndex, which moved with its status (nomad/job_endpoint.go).
    before = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    raw = await nomad.ahttp("POST", "/v1/jobs", json={"Job": build_job(spec, backend.config)})
    assert raw.status_code == 200 and raw.json()["JobModifyIndex"] == before["ModifyIndex"]
    assert before["ModifyIndex"] != first["JobModifyIndex"]  # pending -> running -> dead moved it
    after = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert (after["Version"], after["JobModifyIndex"]) == (first["Version"], first["JobModifyIndex"])
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
    nomad.require_gc_allowed()
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
    spec = nomad.spec("cancelled", script_until_exists(nomad.work / "never"))
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
    spec = nomad.spec("timeout", script_until_exists(nomad.work / "never"), timeout_s=0.5)
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert outcome.state == "internal_error" and "timed out" in outcome.message
    job = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    assert job["Stop"] is True
    await backend.forget(spec.job_id)


async def test_without_the_event_stream_blocking_queries_follow_jobs(nomad: Target):
    backend = nomad.backend(event_stream=False)
    release = nomad.work / "no-stream-release"
    spec = nomad.spec("no-stream", script_until_exists(release, "exit 210")
                      if nomad.is_emulator else "sleep 3; exit 210")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    release.touch()  # the end is only seen through the blocking query on the job list
    assert (await following).state == "external_error"
    await backend.forget(spec.job_id)


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_events_missed_while_the_stream_was_down_are_reconciled(nomad: Target, tmp_path, framing: str):
    nomad.require_emulator("cut the event stream and overrun its buffer")
    async with NomadEmulator([EmulatedNode("gap-node")], event_heartbeat=0.2, event_buffer_size=3,
                             work_dir=tmp_path / "gap", event_stream_framing=framing) as emulator:
        target = Target("emulator", emulator.address, None, "gap-node", nomad.work, emulator)
        backend = target.backend()
        release = nomad.work / "gap-release"
        spec = target.spec("gap", script_until_exists(release, "exit 210"))
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
    assert backend._following.stream_unavailable  # it fell back to blocking queries
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


async def test_a_retried_registration_that_finds_its_job_registered_does_not_send_it_again(nomad: Target):
    emulator = nomad.require_emulator("answer a registration after the client's timeout")
    backend = nomad.backend(request_timeout_s=0.5)
    await backend.read_jobs_index()  # (what its first submit does first: not one of the requests below)
    # Carried out at 0.8 s, after the client gave up (0.5 s); its first look for the job (0.7 s)
    # is not answered, the next (1.1 s) finds it.
    emulator.inject_delays(1, 0.8, path_prefix="/v1/jobs", method="POST")
    emulator.inject_errors(1, 503, path_prefix="/v1/jobs", method="GET")
    spec = nomad.spec("found", "exit 0")
    await backend.submit(spec)
    assert emulator.requests[("POST", "/v1/jobs")] == 1, "registered once, not again"
    assert (await follow(backend, spec)).state == "processed"
    assert emulator.cluster.completed_runs[spec.job_id] == 1


async def test_a_registration_answered_while_a_retry_looks_for_its_job_is_not_taken_for_a_lost_state(
        nomad: Target):
    # chaos63: a look answered at index 2509 was compared with the 2517 of a registration answered
    # while the look was on its way; no state was lost, yet the attempt was recorded lost, and the
    # late registration ran it after that.
    emulator = nomad.require_emulator("answer a registration after the client's timeout")
    backend = nomad.backend(request_timeout_s=0.5)
    before = nomad.spec("before-look", "exit 0")
    await backend.submit(before)
    assert (await follow(backend, before)).state == "processed"
    emulator.inject_delays(1, 1.0, path_prefix="/v1/jobs", method="POST")  # carried out after the timeout
    other, call, interleaved = nomad.spec("meanwhile", "exit 0"), backend.client.call, []

    async def call_with_a_registration_answered_meanwhile(name: str, *args, **kwargs):
        response = await call(name, *args, **kwargs)
        if name.startswith("look for Nomad job") and not interleaved:
            interleaved.append(await backend.submit(other))  # its JobModifyIndex is above the look's index
        return response
    backend.client.call = call_with_a_registration_answered_meanwhile
    spec = nomad.spec("looked-for", "exit 0")
    assert await backend.submit(spec) == spec.job_id  # not AttemptLost
    assert interleaved == [other.job_id]
    assert (await follow(backend, spec)).state == "processed"
    assert emulator.cluster.completed_runs[spec.job_id] == 1


async def submit_with_its_answer_lost_with_nomads_state(emulator: NomadEmulator, backend, spec) -> AttemptLost:
    """Submit `spec` so that its registration is carried out 1 s late, after the client gave up
    (0.5 s); the three requests after it fail (503: any retry, or any look for the job, before 2 s);
    Nomad loses its state at 2.2 s, between the try carried out and the first retry answered (3.5 s)."""
    emulator.inject_delays(1, 1.0, path_prefix="/v1/jobs", method="POST")
    emulator.inject_errors(3, 503, path_prefix="/v1/jobs")

    async def lose_the_state() -> None:
        await asyncio.sleep(2.2)
        await emulator.restart_with_fresh_state(0.1)

    losing = asyncio.create_task(lose_the_state())
    with pytest.raises(AttemptLost, match="Nomad's state was lost or restored") as lost:
        await backend.submit(spec)
    await losing
    return lost.value


async def test_a_registration_whose_answer_was_lost_with_nomads_state_is_lost_not_run_again(nomad: Target):
    """Chaos found it (2026-12-01): a registration carried out after the client timed out, then
    Nomad restarted with a fresh state while the client was retrying; the retry registered the job
    in the new state and the attempt ran twice. Whether it ran cannot be told any more: it is lost."""
    emulator = nomad.require_emulator("time a registration out, then lose Nomad's state before the retry")
    backend = nomad.backend(request_timeout_s=0.5)
    before = nomad.spec("before", "exit 0")
    await backend.submit(before)  # a registration this backend saw answered: the index of jobs reached it
    assert (await follow(backend, before)).state == "processed"
    spec = nomad.spec("lost", "exit 0")
    lost = await submit_with_its_answer_lost_with_nomads_state(emulator, backend, spec)
    assert lost.fault == "backend_lost_track"
    assert emulator.cluster.completed_runs[spec.job_id] == 1, "it ran once, in the state that is gone"
    found = await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")
    assert found.status_code == 404, "not registered again in the new state"
    # Registrations go on in the new state (its index of jobs starts over).
    after = nomad.spec("after", "exit 0")
    await backend.submit(after)
    assert (await follow(backend, after)).state == "processed"


async def test_a_launchers_first_registration_whose_answer_was_lost_with_nomads_state_is_lost_too(nomad: Target):
    # A backend that registered nothing yet compares with Nomad's index of jobs read before its
    # first registration (without it, that registration was sent again into the new state).
    emulator = nomad.require_emulator("time a registration out, then lose Nomad's state before the retry")
    for i in range(5):  # a cluster with a history: its index of jobs is past a fresh state's
        other = minimal_job(nomad.job_id(f"history-{i}"))
        assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": other})).status_code == 200
        await nomad.final_allocation(other["ID"])
    fresh = nomad.backend()
    for name in ("first", "second"):  # the index is read before the first registration only
        reads = emulator.requests[("GET", "/v1/jobs")]
        await fresh.submit(nomad.spec(name, "exit 0"))
        assert emulator.requests[("GET", "/v1/jobs")] - reads == (1 if name == "first" else 0)
    backend = nomad.backend(request_timeout_s=0.5)
    await backend.read_jobs_index()  # (what its first submit does first: not one of the requests below)
    spec = nomad.spec("first-lost", "exit 0")
    lost = await submit_with_its_answer_lost_with_nomads_state(emulator, backend, spec)
    assert lost.fault == "backend_lost_track"
    assert (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).status_code == 404, "not registered again"


async def test_docker_routines_without_a_command_fail_in_the_emulator(nomad: Target):
    nomad.require_emulator("no Docker: the emulator's docker driver reports a Driver Failure")
    backend = nomad.backend()
    spec = nomad.spec("docker", "", command=(), image="registry.example/hrwsi/maja:4.1")
    await backend.submit(spec)
    outcome = await follow(backend, spec)
    assert outcome.state == "internal_error" and "Docker" in outcome.message


async def test_list_jobs_reports_status_by_deterministic_id(nomad: Target):
    backend = nomad.backend()
    # The running one is ended by a cancel, not by a file this machine writes: a remote agent's client
    # would never see the file, and the test hung until its guard (found by exploratory testing).
    done, running = nomad.spec("listed-done", "exit 0"), nomad.spec("listed-running", "exec sleep 300")
    await backend.submit(done)
    await follow(backend, done)
    await backend.submit(running)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, running, progress))
    await progress.reached("running")
    listed = await backend.list_jobs(prefix=f"hrwsi-contract-{nomad.run_id}-listed-")
    assert listed == {done.job_id: "dead", running.job_id: "running"}
    await backend.cancel(running, running.job_id)
    assert (await following).state == "cancelled"
    for spec in (done, running):
        await backend.forget(spec.job_id)


async def test_ui_link_names_the_job_and_namespace(nomad: Target):
    backend = nomad.backend(namespace="default")
    link = backend.ui_link("parent/dispatch-1-abcd")
    assert link == f"{nomad.address}/ui/jobs/parent%2Fdispatch-1-abcd@default"
    assert requests.utils.urlparse(link).path.startswith("/ui/jobs/")


async def test_subscriptions_that_fail_inside_nomad_fall_back_to_blocking_queries(framed: Target):
    emulator = framed.require_emulator("fail subscriptions inside Nomad")
    # >= 1.11.2: 200 and the end without a line; <= 1.11.1: HTTP 500 (command/agent/event_endpoint.go).
    emulator.fail_event_streams(1_000)
    backend = framed.backend()
    release = framed.work / "fallback-release"
    spec = framed.spec("fallback", script_until_exists(release, "exit 210"))
    await backend.submit(spec)
    following = asyncio.ensure_future(follow(backend, spec))

    async def fell_back() -> None:
        while not backend._following.stream_unavailable:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(fell_back(), GUARD_S)
    assert 3 <= emulator.event_stream_connections < 10  # it gave up on the stream after a few tries
    release.touch()  # the end can only be seen through blocking queries now
    assert (await following).state == "external_error"
    assert emulator.requests[("GET", "/v1/jobs")] >= 2


async def test_exit_codes_are_read_from_details_when_the_deprecated_fields_are_gone(nomad: Target, tmp_path):
    nomad.require_emulator("a Nomad without the deprecated TaskEvent fields")
    async with open_emulator(tmp_path, "details", deprecated_event_fields=False) as target:
        backend = target.backend()
        for code, state in ((210, "external_error"), (3, "internal_error")):
            spec = target.spec(f"details-{code}", f"exit {code}")
            await backend.submit(spec)
            outcome = await follow(backend, spec)
            assert (outcome.state, outcome.exit_code) == (state, code), outcome.message
        failing = target.spec("details-driver", "", command=("/nonexistent/routine",))
        await backend.submit(failing)
        outcome = await follow(backend, failing)
        assert outcome.state == "internal_error" and "/nonexistent/routine" in outcome.message


async def test_forwarded_errors_are_read_after_their_rpc_prefix_and_not_retried(nomad: Target, tmp_path):
    nomad.require_emulator("answer as a client agent does")
    async with open_emulator(tmp_path, "forwarded", forwarded=True) as target:
        backend = target.backend(retry_for_s=30.0)
        with pytest.raises(NomadError) as refused:
            await backend.submit(target.spec("too-small", "exit 0", ram_mb=1))  # MemoryMB below Nomad's 10
        assert refused.value.status == 500 and "minimum MemoryMB value is 10" in str(refused.value)
        assert "rpc error" not in str(refused.value)
        assert target.emulator.requests[("POST", "/v1/jobs")] == 1  # a validation error is not retried
        spec = target.spec("exists", "exit 0")
        await backend.submit(spec)
        await backend.submit(spec)  # "rpc error: Enforcing job modify index 0: job already exists": fine
        assert target.emulator.requests[("POST", "/v1/jobs")] == 3
        assert (await follow(backend, spec)).state == "processed"


async def test_a_template_failure_is_a_failure_of_the_routine_with_nomads_message(nomad: Target, tmp_path):
    nomad.require_emulator("ACL on, so a workload may not read another job's Variable")
    async with open_emulator(tmp_path, "template", acl_token=MANAGEMENT_TOKEN) as target:
        await target.ahttp("PUT", "/v1/var/nomad/jobs/hrwsi-routines", json={"Items": {"GREETING": "hello"}})
        # A per-attempt job ID cannot read nomad/jobs/hrwsi-routines (acl/acl.go): the template fails.
        backend = target.backend(secrets_variable="nomad/jobs/hrwsi-routines")
        spec = target.spec("template", "exit 0")
        await backend.submit(spec)
        outcome = await follow(backend, spec)
        assert outcome.state == "internal_error", outcome.message  # counted: not retried for ever as "lost"
        assert "Template failed: " in outcome.message and "403" in outcome.message
        # nomad/jobs itself is readable by every workload of the namespace: the secrets arrive.
        await target.ahttp("PUT", "/v1/var/nomad/jobs", json={"Items": {"GREETING": "hello"}})
        shared = target.backend(secrets_variable="nomad/jobs")
        spec = target.spec("template-shared", 'test "$GREETING" = hello')
        await shared.submit(spec)
        assert (await follow(shared, spec)).state == "processed"


async def test_a_missing_variable_is_reported_as_waiting(nomad: Target, tmp_path):
    nomad.require_emulator("a template whose Variable does not exist")
    async with open_emulator(tmp_path, "missing") as target:
        backend = target.backend(secrets_variable="nomad/jobs")
        spec = target.spec("missing", "exit 0")
        await backend.submit(spec)
        progress = Progress()
        following = asyncio.ensure_future(follow(backend, spec, progress))
        reason = await progress.reached("queued")
        assert "Missing: nomad.var.block(nomad/jobs@default.global)" in reason
        await target.ahttp("PUT", "/v1/var/nomad/jobs", json={"Items": {"X": "1"}})
        assert (await following).state == "processed"


async def test_a_job_nomad_does_not_place_in_time_is_purged_and_its_attempt_lost_saying_why(nomad: Target):
    # Found by exploratory testing: a job pinned to a node whose CPU another team's job had taken stayed
    # queued for ever, newer inputs overtook it, and production stopped when the other node went away.
    backend = nomad.backend(unplaced_limit_s=1.0)
    free = await nomad.free_memory_mb(nomad.node)
    spec = nomad.spec("never-placed", "exit 0", ram_mb=free + 1000)
    await backend.submit(spec)
    progress = Progress()
    outcome = await follow(backend, spec, progress)
    assert [s for s, _ in progress.calls][:1] == ["queued"]
    assert outcome.state == "lost" and outcome.fault == "not_placed", outcome  # (its task's next attempt avoids the node)
    assert outcome.message.startswith(f"Nomad could not place job {spec.job_id} for 1 s"), outcome.message
    assert "Resources exhausted on 1 nodes: memory" in outcome.message and "retried as a new attempt" in outcome.message
    assert (await nomad.ahttp("GET", f"/v1/job/{Target.path_id(spec.job_id)}")).status_code == 404  # purged
    await backend.forget(spec.job_id)


@pytest.mark.parametrize("through_servers", [False, True], ids=["allocations-client", "through-servers"])
async def test_without_read_logs_the_backend_says_so_once_and_asks_no_more(nomad: Target, tmp_path, caplog,
                                                                           through_servers):
    # Through the servers (the launcher's NOMAD_ADDR a server, or a client agent not running the allocation),
    # Nomad answers a token without read-logs HTTP 500 "Permission denied" (nomad/client_fs_endpoint.go logs sends
    # it uncoded; command/agent/fs_endpoint.go fsStreamImpl: 500), 403 only from the allocation's own client. The
    # backend took that 500 for a transient error: each attempt's logs were asked again and again for 30 s
    # (LOGS_WAIT_S), its outcome recorded that much later, and the log said Nomad did not serve them in time.
    nomad.require_emulator("a token without read-logs")
    policy = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}), node="read")
    async with open_emulator(tmp_path, "no-logs", acl_token=MANAGEMENT_TOKEN, acl_policies={SUBMITTER_TOKEN: policy},
                             fs_through_servers=through_servers) as target:
        backend = target.backend(token=SUBMITTER_TOKEN)
        for name in ("no-logs-1", "no-logs-2"):
            spec = target.spec(name, "echo hidden")
            await backend.submit(spec)
            assert (await follow(backend, spec)).state == "processed"  # the outcome does not need the logs
            assert "the launcher's token needs the read-logs capability" in Path(spec.log_path).read_text()
        said = [r for r in caplog.records if "read-logs" in r.getMessage()]
        assert len(said) == 1 and said[0].levelname == "WARNING"
        asked = sum(n for (method, path), n in target.emulator.requests.items() if path.startswith("/v1/client/fs/"))
        assert asked == 1  # (refused once: the next attempt's log says so without asking within forbidden_retry_s)


async def test_status_says_a_token_without_read_logs_keeps_no_output_and_not_that_attempts_are_lost(
        nomad: Target, tmp_path):
    # Found by reading Nomad's ACL checks (nomad/client_fs_endpoint.go logs: read-logs or read-fs): the launcher's
    # problem said "an attempt it refuses is lost (backend_unavailable) and its task retried" of a refusal of the
    # logs alone, while every attempt ran and was recorded as before.
    nomad.require_emulator("a token without read-logs")
    policy = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}), node="read")
    async with open_emulator(tmp_path, "no-logs-said", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: policy}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN)
        spec = target.spec("no-logs-said", "echo hidden")
        await backend.submit(spec)
        assert (await follow(backend, spec)).state == "processed"
        said, _ = backend.problem()
        assert said.startswith("Nomad refuses the launcher's token (HTTP 403"), said
        assert "it needs read-logs to keep the routines' output" in said and "lost" not in said, said


async def test_logs_refused_for_a_while_are_asked_for_again_and_the_attempts_log_says_why_it_holds_no_output(
        nomad: Target, caplog):
    # Found by exploratory testing: after one 403 of an ACL blip, no log was kept until the launcher
    # restarted (65 attempts without their output), and nothing said why the log files were missing.
    emulator = nomad.require_emulator("refuse the logs endpoint for a moment")
    caplog.set_level(logging.INFO, logger="hrwsi.backends.nomad.task_logs")
    backend = nomad.backend()
    backend._following.task_logs.forbidden_retry_s = 0.5
    emulator.inject_errors(1, 403, "Permission denied", path_prefix="/v1/client/fs/logs", method="GET")
    refused = nomad.spec("logs-blip-1", "echo kept-or-not")
    await backend.submit(refused)
    assert (await follow(backend, refused)).state == "processed"
    note = Path(refused.log_path).read_text()
    assert "hrwsi could not keep the task's stdout and stderr: Nomad refused to show them (HTTP 403" in note, note
    await asyncio.sleep(0.6)
    served = nomad.spec("logs-blip-2", "echo kept-again")
    await backend.submit(served)
    assert (await follow(backend, served)).state == "processed"
    assert "kept-again" in Path(served.log_path).read_text()
    assert any("Nomad shows task logs again" in r.getMessage() for r in caplog.records)
    for spec in (refused, served):
        await backend.forget(spec.job_id)


async def test_job_logs_the_disk_cannot_take_are_said_once_while_it_lasts_and_once_when_they_are_kept_again(
        nomad: Target, caplog, monkeypatch):
    """The attempts' log directory full (ENOSPC) or made unwritable (EACCES) while the launcher runs on Nomad: every
    finished job logged its own "could not keep the logs of ..." warning, one line per job for as long as it lasted
    (found by rehearsal). The outcomes are recorded all the same; the first is said with what happens, the next are
    counted, and one line says when a log is kept again."""
    nomad.require_emulator("a log directory that takes no more writes")
    caplog.set_level(logging.INFO, logger="hrwsi.backends.nomad.task_logs")
    append = task_logs_module._append_log

    def full(path, header, parts):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    backend = nomad.backend()
    monkeypatch.setattr(task_logs_module, "_append_log", full)
    specs = [nomad.spec(f"log-disk-full-{n}", "echo lost-output") for n in range(3)]
    for spec in specs:
        await backend.submit(spec)
        assert (await follow(backend, spec)).state == "processed"  # the outcome does not need its log
    said = [r for r in caplog.records if "log" in r.getMessage() and r.levelname == "WARNING"]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].getMessage().startswith(f"could not keep the logs of {specs[0].job_id} in {specs[0].log_path}: "
                                           "[Errno 28] No space left on device"), said[0].getMessage()
    assert "outcomes are recorded all the same" in said[0].getMessage()
    monkeypatch.setattr(task_logs_module, "_append_log", append)
    kept = nomad.spec("log-disk-full-kept", "echo kept-again")
    await backend.submit(kept)
    assert (await follow(backend, kept)).state == "processed"
    assert "kept-again" in Path(kept.log_path).read_text()
    [again] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job logs are kept again")]
    assert again.startswith("job logs are kept again (after 3 job(s) whose logs could not be kept"), again
    for spec in (*specs, kept):
        await backend.forget(spec.job_id)


async def test_registration_warnings_are_logged(nomad: Target, caplog):
    emulator = nomad.require_emulator("answer a registration with a warning")
    warning = "1 warning:\n\n* Group \"hrwsi\" has warnings: something Nomad ignores"
    emulator.inject_errors(1, 200, json.dumps({"EvalID": "", "JobModifyIndex": 1, "Warnings": warning}),
                           path_prefix="/v1/jobs", method="POST")
    backend = nomad.backend()
    await backend.submit(nomad.spec("warned", "exit 0"))
    assert any("with warnings" in r.getMessage() and "something Nomad ignores" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


async def test_a_docker_routine_waits_for_a_node_that_allows_host_mounts(nomad: Target):
    nomad.require_emulator("a node whose docker plugin has volumes disabled")
    backend = nomad.backend()
    spec = nomad.spec("docker-closed", "", command=("/bin/sh", "-c", "true"), image="busybox", worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    reason = await progress.reached("queued")  # visible, instead of a Driver Failure on the node
    assert '${attr.driver.docker.volumes.enabled} = true' in reason
    await backend.cancel(spec, spec.job_id)
    assert (await following).state == "cancelled"


async def test_a_nomad_out_of_reach_loses_the_attempt_without_charging_the_routine(nomad: Target):
    # Found by exploratory testing (2026-12-05): a Nomad outage of two minutes was recorded as the
    # routine's internal_error, and its tasks were terminated and the routine put on hold.
    backend = nomad.backend(address="http://127.0.0.1:9", retry_for_s=0.3)  # (port 9: nothing listens)
    with pytest.raises(AttemptLost, match="cannot reach Nomad") as lost:
        await backend.submit(nomad.spec("out-of-reach", "exit 0"))
    assert lost.value.fault == "backend_unavailable"
    assert "not the routine's fault" in str(lost.value)
    # ... and the launcher's heartbeat tells `hrwsi status` what it cannot do, in one short line
    said, since = backend.problem()
    assert said.startswith("cannot reach Nomad at http://127.0.0.1:9: Failed to establish a new connection")
    assert "Max retries" not in said and "HTTPConnectionPool" not in said  # (urllib3's wrapping)
    assert "lost (backend_unavailable) and its task retried" in said
    assert timedelta(0) <= datetime.now(UTC) - since < timedelta(minutes=1)


async def test_what_kept_nomad_from_serving_is_said_until_it_serves_again(nomad: Target):
    emulator = nomad.require_emulator("answer 503 twice")
    backend = nomad.backend(retry_for_s=0.3)
    assert backend.problem() is None
    emulator.inject_errors(2, 503, "rpc error: No cluster leader", path_prefix="/v1/jobs", method="GET")
    assert (await backend.client.jobs_index(retry=False)).status == 503
    said, since = backend.problem()
    assert "answers HTTP 503: rpc error: No cluster leader" in said
    assert (await backend.client.jobs_index(retry=False)).status == 503
    assert backend.problem()[1] == since  # (since the first call it met)
    assert (await backend.client.jobs_index(retry=False)).status == 200
    assert backend.problem() is None


async def test_a_nomad_that_answers_no_call_is_out_of_reach_until_a_probe_is_answered(nomad: Target):
    # A launcher whose Nomad was out of reach kept claiming tasks, each lost once its registration's
    # retries ran out, while another launcher reached Nomad (found by exploratory testing): the
    # launcher now claims nothing while its backend is out of reach, and probes it.
    emulator = nomad.require_emulator("answer later than the client waits, as a blackholing proxy")
    backend = nomad.backend(request_timeout_s=0.3, retry_for_s=0.3)
    assert not backend.out_of_reach()
    emulator.inject_delays(1, 2.0, path_prefix="/v1/jobs", method="GET")
    await asyncio.wait_for(backend.probe(), GUARD_S)  # (raises nothing)
    assert backend.out_of_reach()
    said, _ = backend.problem()
    assert said.startswith("cannot reach Nomad at ") and "Read timed out" in said
    await backend.probe()  # answered: reached again
    assert not backend.out_of_reach() and backend.problem() is None
    # An answer of Nomad's own says it is reached, however it answers; a gateway's that cannot reach it does not.
    emulator.inject_errors(1, 503, "rpc error: No cluster leader", path_prefix="/v1/jobs", method="GET")
    await backend.probe()
    assert backend.problem() is not None and not backend.out_of_reach()
    emulator.inject_errors(1, 502, "Bad Gateway", path_prefix="/v1/jobs", method="GET")
    await backend.probe()
    assert backend.out_of_reach()
    await backend.probe()
    assert not backend.out_of_reach()


async def test_a_nomad_refusing_the_token_is_reached_not_out_of_reach(nomad: Target, tmp_path):
    nomad.require_emulator("ACLs enabled with known tokens")
    async with open_emulator(tmp_path, "refused-reached", acl_token=MANAGEMENT_TOKEN) as target:
        backend = target.backend(token=str(uuid.uuid4()), retry_for_s=0.3)
        await backend.probe()
        assert backend.problem()[0].startswith("Nomad refuses the launcher's token")
        assert not backend.out_of_reach()  # (its registrations say it: lost, backend_unavailable)


async def test_a_token_nomad_refuses_loses_the_attempt_and_names_nomad_token(nomad: Target, tmp_path):
    nomad.require_emulator("ACLs enabled with known tokens")
    async with open_emulator(tmp_path, "wrong-token", acl_token=MANAGEMENT_TOKEN) as target:
        wrong = str(uuid.uuid4())
        backend = target.backend(token=wrong, retry_for_s=0.3)
        spec = target.spec("wrong-token", "exit 0")
        with pytest.raises(AttemptLost, match="NOMAD_TOKEN") as lost:  # (a claim's first start; one adopted, whose
            await backend.submit(spec, first_start=True)                # job may run, waits: the test after the next)
        assert lost.value.fault == "backend_unavailable"
        assert wrong not in str(lost.value)  # the token itself is never said
        said, _ = backend.problem()
        assert said.startswith("Nomad refuses the launcher's token (HTTP 403") and "check NOMAD_TOKEN" in said
        assert wrong not in said
        assert (await target.ahttp("GET", f"/v1/job/{Target.path_id(spec.job_id)}")).status_code == 404


async def test_a_plan_registers_nothing_and_needs_what_a_registration_needs(nomad: Target, tmp_path):
    # The launcher asks with a plan whether a token refused may submit again (NomadBackend.submissions_refused):
    # nomad/job_endpoint.go Job.Plan checks submit-job (or plan-job) and registers nothing.
    job = minimal_job(nomad.job_id("plan"))
    answer = await nomad.ahttp("POST", f"/v1/job/{Target.path_id(job['ID'])}/plan", json={"Job": job, "Diff": False})
    assert answer.status_code == 200, answer.text
    assert (await nomad.ahttp("GET", f"/v1/job/{Target.path_id(job['ID'])}")).status_code == 404
    if not nomad.is_emulator:
        return
    reader, planner = str(uuid.uuid4()), str(uuid.uuid4())
    async with open_emulator(tmp_path, "plan-acl", acl_token=MANAGEMENT_TOKEN, acl_policies={
            reader: AclPolicy(capabilities=frozenset({"read-job", "list-jobs"})),
            planner: AclPolicy(capabilities=frozenset({"plan-job"}))}) as target:
        path = f"/v1/job/{Target.path_id(job['ID'])}/plan"
        assert (await target.ahttp("POST", path, json={"Job": job}, token=reader)).status_code == 403
        assert (await target.ahttp("POST", path, json={"Job": job}, token=planner)).status_code == 200
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job}, token=planner)).status_code == 403
        assert not target.emulator.cluster.jobs


async def test_a_token_that_may_not_submit_gives_back_each_attempt_unregistered_until_a_plan_is_taken(nomad: Target,
                                                                                                      tmp_path):
    # Each attempt of a burst was registered, refused and lost (found by exploratory testing): after the first,
    # nothing is registered until a plan of the refused job is taken. The attempts submitted meanwhile waited,
    # claimed, for the token to be mended (an operator's cancel of one held until then, when it was registered
    # and stopped); each is now given back at once, unregistered, for a launcher whose jobs Nomad takes.
    nomad.require_emulator("ACLs enabled with known tokens, a policy changed by the test")
    read_only = AclPolicy(capabilities=frozenset({"read-job", "list-jobs", "read-logs"}), node="read")
    async with open_emulator(tmp_path, "may-not-submit", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: read_only}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN, retry_for_s=0.3)
        first, second = target.spec("refused-first", "exit 0"), target.spec("refused-second", "exit 0")
        with pytest.raises(AttemptLost, match="NOMAD_TOKEN") as lost:
            await backend.submit(first)
        assert lost.value.fault == "backend_unavailable" and backend.submissions_refused()
        said, _ = backend.problem()
        assert "for every job: it needs submit-job in namespace default" in said and "given back" in said
        assert SUBMITTER_TOKEN not in said
        with pytest.raises(AttemptLost, match="not registered") as given_back:  # (a fresh claim, as dispatch's)
            await asyncio.wait_for(backend.submit(second, first_start=True), GUARD_S)
        assert given_back.value.fault == "backend_unavailable"
        assert target.emulator.requests[("POST", "/v1/jobs")] == 1
        await backend.probe()  # (what the launcher calls while its backend refuses its jobs: a plan)
        assert backend.submissions_refused() and not target.emulator.cluster.jobs
        target.emulator.acl_policies[SUBMITTER_TOKEN] = AclPolicy(capabilities=frozenset({"submit-job", "read-job",
                                                                                           "list-jobs", "read-logs"}),
                                                                  node="read")
        await asyncio.sleep(backend_module.TOKEN_PROBE_S / 2)  # (the probe plans no more often than that)
        await backend.probe()
        assert not backend.submissions_refused() and backend.problem() is None
        assert await backend.submit(second) == second.job_id
        assert (await follow(backend, second)).state == "processed"


async def test_an_adopted_attempt_whose_job_runs_is_followed_not_given_back_while_the_token_may_not_submit(
        nomad: Target, tmp_path):
    # Nomad's Job.Register checks the token before EnforceIndex (nomad/job_endpoint.go): an attempt adopted from a
    # launcher that is gone, its job registered and running, would be given back as lost and run again beside it.
    nomad.require_emulator("ACLs enabled with known tokens")
    read_only = AclPolicy(capabilities=frozenset({"read-job", "list-jobs", "read-logs"}), node="read")
    async with open_emulator(tmp_path, "adopted-refused", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: read_only}) as target:
        gone, refused = target.backend(), target.backend(token=SUBMITTER_TOKEN, retry_for_s=0.3)
        with pytest.raises(AttemptLost, match="NOMAD_TOKEN"):
            await refused.submit(target.spec("adopted-refused-first", "exit 0"))
        assert refused.submissions_refused()
        spec = dataclasses.replace(target.spec("adopted-running", "exit 0"), claim=uuid.uuid4().hex)
        assert await gone.submit(spec, first_start=True) == spec.job_id  # (by the launcher that is gone)
        assert await asyncio.wait_for(refused.submit(spec), GUARD_S) == spec.job_id
        assert (await follow(refused, spec)).state == "processed"
        assert len(target.emulator.cluster.jobs) == 1, list(target.emulator.cluster.jobs)


async def test_an_adopted_attempt_whose_job_cannot_be_read_waits_for_the_token_and_is_never_run_twice(
        nomad: Target, tmp_path):
    # A token Nomad does not know (expired, rotated) may neither register nor read: whether the adopted attempt's
    # job runs cannot be told, so it is not given back (its task would run again beside it) but waits, as before.
    nomad.require_emulator("ACLs enabled with known tokens, a policy changed by the test")
    wrong = str(uuid.uuid4())
    async with open_emulator(tmp_path, "adopted-unread", acl_token=MANAGEMENT_TOKEN) as target:
        gone, refused = target.backend(), target.backend(token=wrong, retry_for_s=0.3)
        with pytest.raises(AttemptLost, match="NOMAD_TOKEN"):
            await refused.submit(target.spec("adopted-unread-first", "exit 0"), first_start=True)
        spec = dataclasses.replace(target.spec("adopted-unread", "exit 0"), claim=uuid.uuid4().hex)
        assert await gone.submit(spec, first_start=True) == spec.job_id  # (by the launcher that is gone)
        waiting = asyncio.ensure_future(refused.submit(spec))
        await asyncio.sleep(backend_module.TOKEN_PROBE_S + 1.0)
        assert not waiting.done()
        target.emulator.acl_policies[wrong] = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs",
                                                                                "read-logs"}), node="read")
        assert await asyncio.wait_for(waiting, GUARD_S) == spec.job_id
        assert (await follow(refused, spec)).state == "processed"
        assert len(target.emulator.cluster.jobs) == 1


async def test_registrations_an_admin_rejects_in_the_scheduler_configuration_stop_the_claims_until_taken_again(
        nomad: Target, tmp_path):
    # `nomad operator scheduler set-config -reject-job-registration=true` (an admin's maintenance switch): Job.Register
    # answers every token but a management one 403 "Job registration, dispatch, and scale are disabled by the
    # scheduler configuration" (nomad/job_endpoint.go registrationsAreAllowed), while a plan is taken. The backend
    # took it for a refusal of the job alone (the plan was taken): each attempt was lost and the launcher claimed
    # on, a lost attempt per task for as long as the switch held, and the problem said to check NOMAD_TOKEN.
    nomad.require_emulator("ACLs enabled with known tokens, the scheduler configuration changed by the test")
    submitter = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs", "read-logs"}), node="read")
    async with open_emulator(tmp_path, "rejected", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: submitter}) as target:
        switch = "/v1/operator/scheduler/configuration"
        assert (await target.ahttp("PUT", switch, json={"RejectJobRegistration": True})).status_code == 200
        backend = target.backend(token=SUBMITTER_TOKEN, retry_for_s=0.3)
        first, second = target.spec("rejected-first", "exit 0"), target.spec("rejected-second", "exit 0")
        with pytest.raises(AttemptLost, match="RejectJobRegistration") as lost:
            await backend.submit(first, first_start=True)
        assert lost.value.fault == "backend_unavailable" and backend.submissions_refused()
        said, _ = backend.problem()
        assert "set-config -reject-job-registration=false" in said and "NOMAD_TOKEN" not in said, said
        with pytest.raises(AttemptLost, match="not registered"):
            await backend.submit(second, first_start=True)
        assert target.emulator.requests[("POST", "/v1/jobs")] == 1
        await backend.probe()
        assert backend.submissions_refused() and not target.emulator.cluster.jobs
        assert (await target.ahttp("PUT", switch, json={"RejectJobRegistration": False})).status_code == 200
        await asyncio.sleep(backend_module.TOKEN_PROBE_S / 2)  # (the probe asks no more often than that)
        await backend.probe()
        assert not backend.submissions_refused() and backend.problem() is None
        assert await backend.submit(second, first_start=True) == second.job_id
        assert (await follow(backend, second)).state == "processed"


async def test_a_registration_refused_while_a_plan_of_it_is_taken_stays_that_attempts_refusal(nomad: Target,
                                                                                               tmp_path):
    # Nomad's Register refuses a job, not the token, for a volume the token may not mount, which Plan does not
    # check (nomad/job_endpoint.go): only that attempt is lost, and the launcher claims on.
    nomad.require_emulator("ACLs enabled with known tokens")
    plan_only = AclPolicy(capabilities=frozenset({"plan-job", "read-job", "list-jobs"}), node="read")
    async with open_emulator(tmp_path, "plan-only", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: plan_only}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN, retry_for_s=0.3)
        for name in ("refused-a", "refused-b"):
            with pytest.raises(AttemptLost, match="NOMAD_TOKEN"):
                await asyncio.wait_for(backend.submit(target.spec(name, "exit 0")), GUARD_S)
            assert not backend.submissions_refused()


@pytest.mark.parametrize("event_stream", [True, False])
async def test_a_token_that_may_submit_but_not_read_jobs_keeps_the_attempt_says_so_once_and_follows_it_once_it_may(
        nomad: Target, tmp_path, caplog, event_stream: bool):
    # Found by reading Nomad's ACL checks (nomad/job_endpoint.go Allocations, GetJob: read-job): with a policy of
    # submit-job alone, each followed job was asked again every 2 s, each time with a warning of its own, and
    # `hrwsi status` said that the attempts Nomad refuses are lost and retried, while they ran unfollowed.
    nomad.require_emulator("ACLs enabled with known tokens")
    caplog.set_level(logging.INFO, logger="hrwsi.backends.nomad.following")
    submit_only = AclPolicy(capabilities=frozenset({"submit-job"}), node="read")
    async with open_emulator(tmp_path, f"no-read-{event_stream}", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: submit_only}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN, event_stream=event_stream, retry_for_s=0.3)
        backend._following.refused_read_retry_s = 0.5
        specs = [target.spec(f"no-read-{event_stream}-{i}", "exit 0") for i in range(3)]
        for spec in specs:
            await backend.submit(spec)
        followings = [asyncio.ensure_future(follow(backend, spec)) for spec in specs]

        async def refused() -> None:
            while (backend.problem() or ("",))[0].find("needs read-job") < 0:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(refused(), GUARD_S)
        await asyncio.sleep(2.0)  # (each job read again several times)
        said, _ = backend.problem()
        assert said.startswith("Nomad refuses the launcher's token (HTTP 403"), said
        assert "the attempts submitted keep their state, unfollowed" in said and "lost (backend_unavailable)" not in said, said
        assert not any(f.done() for f in followings)
        refusals = [r for r in caplog.records if "refuses to show the launcher's jobs" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        assert not any("could not read Nomad job" in r.getMessage() for r in caplog.records)
        target.emulator.acl_policies[SUBMITTER_TOKEN] = AclPolicy(
            capabilities=frozenset({"submit-job", "read-job", "list-jobs"}), node="read")  # the admin's fix
        outcomes = await asyncio.wait_for(asyncio.gather(*followings), GUARD_S)
        assert [o.state for o in outcomes] == ["processed"] * 3, [o.message for o in outcomes]
        assert any("shows the launcher's jobs again" in r.getMessage() for r in caplog.records)
        for spec in specs:
            await backend.forget(spec.job_id)


async def test_a_token_that_may_read_jobs_but_not_list_them_follows_its_attempts_to_their_end_without_the_stream(
        nomad: Target, tmp_path, caplog):
    # Found by reading Nomad's ACL checks (nomad/job_endpoint.go List: list-jobs; Allocations: read-job): without
    # the event stream, the job list's blocking query was refused for ever and nothing read the followed jobs,
    # so an attempt that ended in Nomad showed running until its timeout stopped it.
    nomad.require_emulator("ACLs enabled with known tokens")
    no_list = AclPolicy(capabilities=frozenset({"submit-job", "read-job"}), node="read")
    async with open_emulator(tmp_path, "no-list", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: no_list}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN, event_stream=False, retry_for_s=0.3)
        backend._following.refused_read_retry_s = 0.3
        gate = target.work / "no-list-gate"
        spec = target.spec("no-list", script_until_exists(gate, 'echo done > "$HRWSI_OUTPUT_DIR/product.txt"'))
        await backend.submit(spec)
        progress = Progress()
        following = asyncio.ensure_future(follow(backend, spec, progress))
        await progress.reached("running")
        await asyncio.sleep(1.0)  # (the job list refused several times meanwhile)
        gate.touch()
        outcome = await asyncio.wait_for(following, GUARD_S)
        assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
        said = [r for r in caplog.records if "refuses to list the launcher's jobs" in r.getMessage()]
        assert len(said) == 1 and "list-jobs" in said[0].getMessage(), [r.getMessage() for r in said]
        await backend.forget(spec.job_id)


async def test_a_job_nomad_refuses_as_invalid_is_still_the_attempts_failure(nomad: Target):
    backend = nomad.backend()
    spec = nomad.spec("invalid", "exit 0", ram_mb=0)  # Nomad: "minimum MemoryMB value is 10"
    with pytest.raises(NomadError, match=r"refused job .*HTTP 400|refused job .*HTTP 500") as refused:
        await backend.submit(spec)
    assert refused.value.status in (400, 500)


async def test_a_tasks_output_is_kept_as_it_wrote_it_whatever_its_characters(nomad: Target):
    if nomad.kind == "replay":
        pytest.skip("recorded before this test existed: runs against the emulator and a real agent")
    backend = nomad.backend()
    spec = nomad.spec("unicode-log", "echo 'snow: ünïcødé ✓ 雪'; echo 'neige: é' >&2")
    await backend.submit(spec)
    assert (await follow(backend, spec)).state == "processed"
    # UTF-8 was kept as if it were Latin-1 ("Ã¼nÃ¯cÃ¸dÃ©"): found by exploratory testing, 2026-12-05
    kept = Path(spec.log_path).read_text(encoding="utf-8")
    assert "snow: ünïcødé ✓ 雪" in kept and "neige: é" in kept
    await backend.forget(spec.job_id)


async def test_a_task_that_writes_nothing_has_a_log_that_says_so(nomad: Target):
    # Found by exploratory testing: no output, no log file, and `hrwsi logs` blamed the retention policy.
    if nomad.kind == "replay":
        pytest.skip("recorded before this test existed: runs against the emulator and a real agent")
    backend = nomad.backend()
    spec = nomad.spec("silent", "exit 0")
    await backend.submit(spec)
    assert (await follow(backend, spec)).state == "processed"
    kept = Path(spec.log_path).read_text(encoding="utf-8")
    assert kept.startswith(f"=== Nomad job {spec.job_id}, allocation ") and kept.rstrip().endswith(": no stdout, no stderr ===")
    await backend.forget(spec.job_id)


# -- settings naming what Nomad does not have (found by exploratory testing) ------------------------------
async def test_a_namespace_node_pool_or_region_nomad_does_not_have_stops_the_launcher_at_start(nomad: Target):
    missing = f"hrwsi-contract-{nomad.run_id}-absent"
    await nomad.backend().check_settings()  # default namespace, default pool, the agent's region
    for setting, overrides in (("NOMAD_NAMESPACE", {"namespace": missing}),
                               ("HRWSI_NOMAD_NODE_POOL", {"node_pool": missing}),
                               ("NOMAD_REGION", {"region": missing})):
        with pytest.raises(BackendSettingError) as refused:
            await nomad.backend(**overrides).check_settings()
        said = str(refused.value)
        assert said.startswith(f"{setting}={missing!r}: Nomad at ") and "\n" not in said, said
        assert "would refuse every" in said


async def test_settings_that_cannot_be_checked_now_let_the_launcher_start(nomad: Target):
    # Nomad out of reach at start: registrations tell later (lost, not charged), as before.
    await nomad.backend(address="http://127.0.0.1:9", namespace="whatever").check_settings()


async def test_a_namespace_deleted_while_the_launcher_runs_loses_the_attempt_and_says_so(nomad: Target, tmp_path):
    nomad.require_emulator("an admin deletes a namespace")
    async with open_emulator(tmp_path, "deleted-namespace", namespaces=["hrwsi-staging"]) as target:
        backend = target.backend(namespace="hrwsi-staging", retry_for_s=0.3)
        await backend.check_settings()
        target.emulator.delete_namespace("hrwsi-staging")
        with pytest.raises(AttemptLost, match="nonexistent namespace") as lost:
            await backend.submit(target.spec("deleted-namespace", "exit 0"))
        # charged to the routine, it was an internal_error and the routine was held
        assert lost.value.fault == "backend_unavailable" and "not the routine's fault" in str(lost.value)
        said, _ = backend.problem()
        assert "NOMAD_NAMESPACE names what Nomad does not have" in said
        assert "not charged to the routine" in said
        target.emulator.add_namespace("hrwsi-staging")
        spec = target.spec("namespace-back", "exit 0")
        assert await backend.submit(spec) == spec.job_id
        assert backend.problem() is None


async def test_a_node_pool_deleted_while_the_launcher_runs_loses_the_attempt(nomad: Target, tmp_path):
    nomad.require_emulator("an admin deletes a node pool")
    async with open_emulator(tmp_path, "deleted-pool", node_pools=["batch"]) as target:
        backend = target.backend(node_pool="batch", retry_for_s=0.3)
        await backend.check_settings()
        target.emulator.delete_node_pool("batch")
        with pytest.raises(AttemptLost, match="nonexistent node pool") as lost:
            await backend.submit(target.spec("deleted-pool", "exit 0"))
        assert lost.value.fault == "backend_unavailable"
        assert "HRWSI_NOMAD_NODE_POOL names what Nomad does not have" in backend.problem()[0]


def installation_spec(target: Target, name: str, installation: str):
    """A spec whose output directory is laid out as hrwsi.dispatch lays it, under `installation`."""
    spec = target.spec(name, "sleep 0.2")
    output = target.work / name / "products" / installation / spec.routine / f"task-{spec.task_id}" / \
        f"attempt-{spec.attempt}" / "output"
    return JobSpec(**{**spec.__dict__, "output_dir": str(output)})


def claimed(spec: JobSpec, **changes) -> JobSpec:
    """`spec` as a job row claims it: with a claim token of its own (hrwsi.job.claim_token)."""
    return dataclasses.replace(spec, claim=str(uuid.uuid4()), **changes)


async def registration_of(nomad: Target, job_id: str) -> tuple:
    job = (await nomad.ahttp("GET", f"/v1/job/{Target.path_id(job_id)}")).json()
    return job["JobModifyIndex"], job["Version"], job["Stop"], job["Meta"]


async def test_another_installations_job_on_the_same_id_is_left_alone_and_the_attempt_runs_under_its_own(
        nomad: Target, caplog):
    # Found by exploratory testing: staging (sharing prod's namespace) found prod's job on its own
    # job ID, recorded prod's outcome as its own task's, and then purged prod's job. Then its attempt was
    # lost instead, and the next one too while prod's job held its ID; now it runs under an ID of its own.
    prod, staging = str(uuid.uuid4()), str(uuid.uuid4())
    prod_backend, staging_backend = nomad.backend(), nomad.backend(purge_delay_s=0.0)
    prods = claimed(installation_spec(nomad, "shared-namespace", prod))
    assert prods.installation == prod
    assert await prod_backend.submit(prods, first_start=True) == prods.job_id
    before = await registration_of(nomad, prods.job_id)
    assert before[3]["hrwsi_installation"] == prod and before[3]["hrwsi_claim"] == prods.claim
    stagings = claimed(installation_spec(nomad, "shared-namespace", staging))
    assert stagings.job_id == prods.job_id
    own = await staging_backend.submit(stagings, first_start=True)
    assert own == f"{stagings.job_id}-c{stagings.claim.replace('-', '')[:8]}"
    said = [r.getMessage() for r in caplog.records if "was already taken" in r.getMessage()]
    assert len(said) == 1 and f"Nomad job ID {prods.job_id} in namespace 'default'" in said[0], said
    assert f"by another hrwsi installation ({prod})" in said[0] and "needs a Nomad namespace of its own" in said[0]
    assert f"runs as Nomad job {own} instead" in said[0]
    assert f"another hrwsi installation ({prod}) registers its jobs" in staging_backend.problem()[0]  # (status)
    staging_run = dataclasses.replace(stagings, job_id=own)
    assert (await follow(staging_backend, staging_run)).state == "processed"
    await staging_backend.forget(own)
    await asyncio.sleep(0.2)
    assert await registration_of(nomad, prods.job_id) == before  # neither registered again, stopped nor purged
    assert (await follow(prod_backend, prods)).state == "processed"
    # the same installation resubmitting (a launcher restarted) follows its own job, as before
    again = nomad.backend()
    assert await again.submit(prods) == prods.job_id
    assert await registration_of(nomad, prods.job_id) == before
    await prod_backend.forget(prods.job_id)


async def test_a_job_of_another_timeline_of_the_installation_on_the_same_id_is_left_alone_and_the_attempt_runs_under_its_own(
        nomad: Target, caplog):
    # Found by exploratory testing: after pg_restore of an older dump (task ids reused), or with a
    # copy of HRWSI_HOME on the same Nomad, the launcher found "Nomad job hrwsi-step1-3832-1 already
    # exists (status dead): not registered again" and recorded the new task processed with 0
    # products from the old run. Then the attempt was lost instead, and each next one whose ID the other
    # timeline had made too; now it runs under the ID of its claim, the old job left alone.
    installation = str(uuid.uuid4())
    old_backend, new_backend = nomad.backend(), nomad.backend(purge_delay_s=0.0)
    old = claimed(installation_spec(nomad, "another-timeline", installation))
    await old_backend.submit(old, first_start=True)
    assert (await follow(old_backend, old)).state == "processed"
    before = await registration_of(nomad, old.job_id)
    # the restored database's new claim of the same task and attempt (another input, or the same)
    for new in (claimed(old, input_path=old.input_path + ".new"), claimed(old)):
        own = await new_backend.submit(new, first_start=True)
        assert own == f"{old.job_id}-c{new.claim.replace('-', '')[:8]}"
        assert (await registration_of(nomad, own))[3]["hrwsi_claim"] == new.claim
        assert (await follow(new_backend, dataclasses.replace(new, job_id=own))).state == "processed"
        await new_backend.forget(own)
    said = [r.getMessage() for r in caplog.records if "was already taken" in r.getMessage()]
    assert len(said) == 2 and all("restored from a backup older than that job" in line for line in said), said
    assert f"of input {old.input_path!r}" in said[0]
    await new_backend.forget(old.job_id)  # (even asked to, never purges a job it did not register)
    await asyncio.sleep(0.2)
    assert await registration_of(nomad, old.job_id) == before  # neither registered again, stopped nor purged
    await old_backend.forget(old.job_id)


async def test_an_adopter_follows_the_job_its_claim_registered_on_either_id_and_registers_nothing_again(
        nomad: Target, caplog):
    # ADR 0002: a launcher that crashed between registering an attempt's job and recording it; its adopter
    # resubmits the attempt from the job row (its ID as dispatch made it, its claim token) and must find
    # that very job, on the deterministic ID or on the claim's own, without running the attempt twice.
    installation = str(uuid.uuid4())
    crashed = nomad.backend()
    spec = claimed(installation_spec(nomad, "adopted", installation))
    assert await crashed.submit(spec, first_start=True) == spec.job_id
    registered = await registration_of(nomad, spec.job_id)
    assert await nomad.backend().submit(spec) == spec.job_id  # adopted: its own registration, as before
    assert await registration_of(nomad, spec.job_id) == registered
    # a claim whose ID another timeline's job held: it ran under its own; the crash came before the
    # launcher recorded that ID, so its row still names the first one
    taken = claimed(spec)
    own = await crashed.submit(taken, first_start=True)
    assert own != taken.job_id
    own_registered = await registration_of(nomad, own)
    adopter = nomad.backend()
    assert await adopter.submit(taken) == own
    assert await nomad.backend().submit(dataclasses.replace(taken, job_id=own)) == own  # the ID recorded
    assert await registration_of(nomad, own) == own_registered and await registration_of(nomad, spec.job_id) == registered
    assert (await follow(adopter, dataclasses.replace(taken, job_id=own))).state == "processed"
    for job_id in (spec.job_id, own):
        await crashed.forget(job_id)


async def job_status(nomad: Target, job_id: str) -> int:
    return (await nomad.ahttp("GET", f"/v1/job/{Target.path_id(job_id)}")).status_code


async def test_an_adopter_follows_the_job_on_its_claims_own_id_and_never_registers_the_first_again_once_it_is_free(
        nomad: Target):
    # Found by review: the adopter tried the first ID first and went to the claim's own only while a job it
    # did not know still held the first. Its launcher had crashed before recording the claim's ID; once that
    # job was gone (purged by its installation, Nomad's GC), the adopter registered the first ID with the same
    # token, and the attempt ran under both IDs.
    foreign = claimed(installation_spec(nomad, "freed-first-id", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "freed-first-id", str(uuid.uuid4())))
    own = await nomad.backend().submit(taken, first_start=True)
    assert own != taken.job_id
    own_registered = await registration_of(nomad, own)
    await nomad.purge(taken.job_id)  # the job this database did not know is gone from the first ID
    assert await job_status(nomad, taken.job_id) == 404
    adopter = nomad.backend()
    assert await adopter.submit(taken) == own  # (from the row: the first ID, the claim token)
    assert await job_status(nomad, taken.job_id) == 404, "the attempt was registered a second time"
    assert await registration_of(nomad, own) == own_registered
    assert (await follow(adopter, dataclasses.replace(taken, job_id=own))).state == "processed"
    await adopter.forget(own)


async def test_a_readopted_attempt_looks_for_its_claims_own_job_until_nomad_answers_as_a_registration_does(
        nomad: Target):
    # Round 11 of exploratory testing: re-registered after an adoption, an attempt whose row an older launcher
    # claimed looked for its claim's own job ID only for the retry window, then was lost (backend_unavailable)
    # and retried as a new one while that job ran on; an unanswered registration waits for Nomad's answer.
    emulator = nomad.require_emulator("answer nothing in time about one job")
    foreign = claimed(installation_spec(nomad, "slow-own-id", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "slow-own-id", str(uuid.uuid4())))
    own = await nomad.backend().submit(taken, first_start=True)
    assert own != taken.job_id
    own_registered = await registration_of(nomad, own)
    adopter = nomad.backend(request_timeout_s=0.3, retry_for_s=1.0)
    await adopter.read_jobs_index()
    emulator.inject_delays(12, 0.5, path_prefix=f"/v1/job/{Target.path_id(own)}", method="GET")  # ~4 s of silence
    assert await adopter.submit(taken) == own  # (not AttemptLost)
    assert await registration_of(nomad, own) == own_registered, "registered again"
    assert (await follow(adopter, dataclasses.replace(taken, job_id=own))).state == "processed"
    await adopter.forget(own)


async def test_an_attempt_adopted_as_it_runs_is_followed_under_its_claims_id_and_never_on_a_job_without_its_token(
        nomad: Target):
    # Found by review: an attempt whose launcher could not record the claim's own ID it ran under, and that
    # was seen running, was adopted without a new registration on the row's first ID: the adopter followed
    # the job this database did not know there, recorded its outcome as the attempt's and purged it.
    foreign = claimed(installation_spec(nomad, "adopted-running", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "adopted-running", str(uuid.uuid4())))
    own = await nomad.backend().submit(taken, first_start=True)
    assert own != taken.job_id
    adopter = nomad.backend()
    assert await adopter.adopted_job_id(taken) == own
    assert (await follow(adopter, dataclasses.replace(taken, job_id=own))).state == "processed"
    await adopter.forget(own)
    await nomad.purge(own)  # the attempt's own job gone too: only the one it does not know is left
    foreigns = await registration_of(nomad, foreign.job_id)
    other = nomad.backend(purge_delay_s=0.0)
    assert await other.adopted_job_id(taken) == taken.job_id
    outcome = await follow(other, taken)
    assert (outcome.state, outcome.fault) == ("lost", "backend_lost_track"), outcome
    assert f"Nomad job {taken.job_id} in namespace 'default' is not this attempt's" in outcome.message
    await other.forget(taken.job_id)
    await asyncio.sleep(0.2)
    assert await registration_of(nomad, foreign.job_id) == foreigns  # neither registered again, stopped nor purged
    assert await job_status(nomad, foreign.job_id) == 200


async def test_a_job_of_another_installation_on_an_id_whose_attempt_ended_here_is_not_purged_as_started_again(
        nomad: Target):
    # Found by review: a job on the ID of an attempt whose end this backend saw, live with an allocation it did
    # not know, was purged as that attempt started again behind hrwsi's back; once the attempt's own job was
    # purged, the ID is free, and another installation's job on the same namespace may hold it.
    prod = nomad.backend(purge_delay_s=0.0)
    prods = claimed(installation_spec(nomad, "freed-id", str(uuid.uuid4())))
    assert await prod.submit(prods, first_start=True) == prods.job_id
    assert (await follow(prod, prods)).state == "processed"
    await prod.forget(prods.job_id)

    async def purged() -> None:
        while await job_status(nomad, prods.job_id) != 404:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(purged(), GUARD_S)
    staging = nomad.backend()
    stagings = claimed(installation_spec(nomad, "freed-id", str(uuid.uuid4())), command=("/bin/sh", "-c", "sleep 1"))
    assert await staging.submit(stagings, first_start=True) == stagings.job_id  # (the ID was free)
    assert (await follow(staging, stagings)).state == "processed"
    assert (await registration_of(nomad, stagings.job_id))[3]["hrwsi_claim"] == stagings.claim
    await staging.forget(stagings.job_id)


async def test_a_stop_naming_an_id_a_job_this_database_does_not_know_holds_stops_only_the_attempts_own_job(
        nomad: Target):
    # Found by review: the launcher's spec names the row's first ID until the attempt is known to run under
    # its claim's own; an operator's cancel (or a stranded job's stop) meanwhile stopped the job that held it.
    foreign = claimed(installation_spec(nomad, "stop-taken", str(uuid.uuid4())),
                      command=("/bin/sh", "-c", script_until_exists(nomad.work / "never")))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    foreigns = await registration_of(nomad, foreign.job_id)
    taken = claimed(installation_spec(nomad, "stop-taken", str(uuid.uuid4())), command=foreign.command)
    backend = nomad.backend()
    await backend.cancel(taken, taken.job_id)  # before its registration: nothing of the attempt's to stop
    assert await registration_of(nomad, foreign.job_id) == foreigns
    own = await backend.submit(taken, first_start=True)
    assert own != taken.job_id
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, dataclasses.replace(taken, job_id=own), progress))
    await progress.reached("running")
    await backend.cancel(taken, taken.job_id)  # (the spec as it was before the launcher learnt the ID)
    assert (await following).state == "cancelled"
    assert await registration_of(nomad, foreign.job_id) == foreigns  # not stopped
    await nomad.backend().cancel(taken, taken.job_id)  # another launcher's (it read the job): not stopped either
    assert await registration_of(nomad, foreign.job_id) == foreigns
    await backend.forget(own)
    await nomad.purge(foreign.job_id)


async def until_exists(path: Path) -> None:
    async def exists() -> None:
        while not path.exists():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(exists(), GUARD_S)


def registered_env(job: dict) -> dict:
    return job["TaskGroups"][0]["Tasks"][0]["Env"]


async def test_an_attempt_whose_id_a_running_job_of_another_timeline_holds_runs_in_a_directory_and_log_of_its_own(
        nomad: Target, caplog):
    # Found by exploratory testing: after a restore in the same installation, the attempt that ran under its claim's
    # own ID was given the attempt directory and log of the job that held the first ID, which may still run: its
    # first start moved that job's directory aside from under it, and both wrote one output directory and one log.
    # Now it has its own (named after the claim's own ID), and that job's are neither moved, used nor removed.
    installation = str(uuid.uuid4())
    script = 'echo old > "$HRWSI_OUTPUT_DIR/old.txt"; sleep 1; echo still old >> "$HRWSI_OUTPUT_DIR/old.txt"'
    old = claimed(installation_spec(nomad, "own-paths", installation), command=("/bin/sh", "-c", script))
    old_backend, new_backend = nomad.backend(), nomad.backend(purge_delay_s=0.0)
    assert await old_backend.submit(old, first_start=True) == old.job_id
    await until_exists(Path(old.output_dir) / "old.txt")  # it runs, and writes in its attempt directory
    new = claimed(old, command=("/bin/sh", "-c", 'echo new > "$HRWSI_OUTPUT_DIR/new.txt"; echo a line of its own'))
    own_id = await new_backend.submit(new, first_start=True)
    suffix = f"-c{new.claim.replace('-', '')[:8]}"
    assert own_id == new.job_id + suffix
    env = registered_env((await nomad.ahttp("GET", f"/v1/job/{Target.path_id(own_id)}")).json())
    assert env["HRWSI_OUTPUT_DIR"] == f"{old.attempt_dir}{suffix}/output"
    assert env["HRWSI_MANIFEST"] == f"{old.attempt_dir}{suffix}/manifest.json"
    own = dataclasses.replace(new, job_id=own_id, output_dir=env["HRWSI_OUTPUT_DIR"],
                              log_path=old.log_path.removesuffix(".log") + f"{suffix}.log")
    assert own.installation == installation  # (hrwsi.dispatch's layout, with the ID's suffix: _is_ours, products)
    assert (await follow(new_backend, own)).state == "processed"
    assert (await follow(old_backend, old)).state == "processed"
    assert os.listdir(own.output_dir) == ["new.txt"]
    assert os.listdir(old.output_dir) == ["old.txt"]
    assert (Path(old.output_dir) / "old.txt").read_text() == "old\nstill old\n"
    assert "a line of its own" in Path(own.log_path).read_text()
    assert "a line of its own" not in Path(old.log_path).read_text()
    assert sorted(p.name for p in Path(old.attempt_dir).parent.iterdir()) == ["attempt-1", f"attempt-1{suffix}"]
    assert not [r for r in caplog.records if "moved aside" in r.getMessage()]
    for backend, job_id in ((new_backend, own_id), (old_backend, old.job_id)):
        await backend.forget(job_id)


async def test_an_attempt_goes_to_its_claims_own_id_only_once_that_id_and_its_paths_are_recorded(nomad: Target):
    # Found by exploratory testing: the launcher recorded the claim's own ID after registering it; one that crashed
    # or lost its lease in between left the row on the first ID, and its adopter, finding the claim's own job
    # collected by Nomad's GC, registered the first ID again: the attempt ran under two IDs. Now the ID and its
    # paths are recorded first (Backend.record_runs_under), and nothing is registered when they cannot be.
    foreign = claimed(installation_spec(nomad, "recorded-first", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "recorded-first", str(uuid.uuid4())))
    own_id = claims_own_job_id(taken.job_id, taken.claim)
    recorded: list[tuple[str, str, str, int]] = []

    async def record(spec: JobSpec) -> None:
        recorded.append((spec.job_id, spec.output_dir, spec.log_path, await job_status(nomad, spec.job_id)))

    async def refuse(spec: JobSpec) -> None:
        raise AttemptLost("launcher_gone", "its lease lapsed")

    refusing = nomad.backend()
    refusing.record_runs_under = refuse
    with pytest.raises(AttemptLost, match="its lease lapsed"):
        await refusing.submit(taken, first_start=True)
    assert await job_status(nomad, own_id) == 404, "registered under an ID its row does not name"
    backend = nomad.backend()
    backend.record_runs_under = record
    assert await backend.submit(taken) == own_id  # (its adopter: the row still names the first ID)
    assert recorded == [(own_id, taken.output_dir.replace("/attempt-1/", f"/attempt-1{own_id[-10:]}/"),
                         taken.log_path.removesuffix(".log") + f"{own_id[-10:]}.log", 404)]
    own = dataclasses.replace(taken, job_id=own_id, output_dir=recorded[0][1], log_path=recorded[0][2])
    assert (await follow(backend, own)).state == "processed"
    await backend.forget(own_id)
    await nomad.purge(foreign.job_id)



async def test_a_claims_own_id_and_paths_are_recorded_before_anything_is_prepared_there(nomad: Target):
    # Found by review: the attempt's own paths were prepared (its manifest written) before they were recorded; a
    # launcher that crashed in between left files the row did not name, and its adopter moved them aside with a
    # warning about "another timeline's files" that were this installation's own. Now they are recorded first.
    foreign = claimed(installation_spec(nomad, "recorded-before-prepared", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "recorded-before-prepared", str(uuid.uuid4())))
    seen: list[bool] = []

    async def record(spec: JobSpec) -> None:
        seen.append(Path(spec.output_dir).parent.exists())

    backend = nomad.backend()
    backend.record_runs_under = record
    own_id = await backend.submit(taken, first_start=True)
    assert seen == [False], "its own attempt directory existed before it was recorded"
    own = dataclasses.replace(taken, job_id=own_id, output_dir=taken.output_dir.replace(
        "/attempt-1/", f"/attempt-1{own_id[-10:]}/"), log_path=taken.log_path.removesuffix(".log") + f"{own_id[-10:]}.log")
    assert (await follow(backend, own)).state == "processed"
    await backend.forget(own_id)
    await nomad.purge(foreign.job_id)

async def until(condition, what: str) -> None:
    async def met() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(met(), GUARD_S)
    except TimeoutError:
        pytest.fail(f"never: {what}")


async def test_a_namespace_shared_with_another_installation_is_said_by_status_while_its_jobs_are_there(
        nomad: Target, monkeypatch, caplog):
    # Found by exploratory testing: since attempts whose ID another installation's job holds run under an ID of
    # their own, nothing refused them any more, and `hrwsi status` (and the dashboard) no longer said the
    # namespace was shared: only each such attempt's warning did. Now the launcher's problem says it, what it
    # means and what to do, from its first submit (the namespace's jobs listed) or the first job met on an
    # attempt's ID, for as long as a listing of the namespace finds another installation's jobs.
    monkeypatch.setattr(backend_module, "SHARED_NAMESPACE_CHECK_S", 0.05)
    caplog.set_level(logging.INFO, logger=backend_module.__name__)
    prod, staging = str(uuid.uuid4()), str(uuid.uuid4())
    prod_backend, staging_backend = nomad.backend(), nomad.backend()
    prods = claimed(installation_spec(nomad, "said-shared", prod))
    assert await prod_backend.submit(prods, first_start=True) == prods.job_id
    await asyncio.sleep(0.2)
    assert prod_backend.problem() is None  # (its own jobs only)
    stagings = claimed(installation_spec(nomad, "said-shared-other", staging))  # (another ID: none taken)
    assert await staging_backend.submit(stagings, first_start=True) == stagings.job_id
    await until(lambda: staging_backend.problem() is not None, "the staging launcher says the namespace is shared")
    text, since = staging_backend.problem()
    assert text.startswith(f"another hrwsi installation ({prod}) registers its jobs in Nomad namespace 'default' too "
                           f"(job {prods.job_id}; this installation is {staging})"), text
    assert "job IDs name no installation" in text and "NOMAD_NAMESPACE=<name>" in text and "\n" not in text
    assert since <= datetime.now(UTC)
    said = [r.getMessage() for r in caplog.records if "registers its jobs in Nomad namespace" in r.getMessage()]
    assert len(said) == 1, said  # (said once in the log as it is found, not at each check)
    assert (await follow(prod_backend, prods)).state == "processed"
    await asyncio.sleep(0.2)
    assert staging_backend.problem() is not None  # (its dead job is still in the namespace)
    await nomad.purge(prods.job_id)  # the other installation's jobs are gone from the namespace
    await until(lambda: staging_backend.problem() is None, "the problem ends once their jobs are gone")
    assert any("holds no job of another hrwsi installation any more" in r.getMessage() for r in caplog.records)
    assert (await follow(staging_backend, stagings)).state == "processed"
    await staging_backend.forget(stagings.job_id)


async def test_an_adopter_of_a_claims_own_job_registered_before_it_had_paths_of_its_own_keeps_the_paths_it_writes_in(
        nomad: Target):
    # A launcher before the claim's own ID had paths of its own registered it with the row's first paths, and
    # stopped before recording the ID. Its adopter, after the upgrade, follows that job: the row must name the
    # paths it writes in (its products are discovered there), not the -c ones nothing writes in.
    foreign = claimed(installation_spec(nomad, "first-paths", str(uuid.uuid4())))
    assert await nomad.backend().submit(foreign, first_start=True) == foreign.job_id
    taken = claimed(installation_spec(nomad, "first-paths", str(uuid.uuid4())))
    own_id = claims_own_job_id(taken.job_id, taken.claim)
    before = build_job(dataclasses.replace(taken, job_id=own_id), nomad.config())  # (as that launcher built it)
    before["Meta"]["hrwsi_claim"] = taken.claim
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": before, "EnforceIndex": True, "JobModifyIndex": 0})
    assert response.status_code == 200, response.text
    adopter = nomad.backend()
    assert await adopter.submit(taken) == own_id
    kept = adopter.runs_as(taken, own_id)
    assert (kept.job_id, kept.output_dir, kept.log_path) == (own_id, taken.output_dir, taken.log_path)
    assert (await follow(adopter, kept)).state == "processed"
    await adopter.forget(own_id)
    fresh = claimed(taken)  # (one its own start registered has paths of its own)
    own = nomad.backend().runs_as(fresh, claims_own_job_id(fresh.job_id, fresh.claim))
    assert own.output_dir != fresh.output_dir and own.log_path != fresh.log_path
    await nomad.purge(foreign.job_id)


async def test_an_attempt_whose_recorded_claims_own_id_is_taken_too_is_lost_and_goes_to_no_third_id(nomad: Target):
    # Found by review: "or that one is taken too" could never be true (the claim's own ID of the claim's own ID
    # was a third, longer one), so such an attempt registered as <ID>-c<token>-c<token>.
    taken = claimed(installation_spec(nomad, "own-taken", str(uuid.uuid4())))
    recorded = dataclasses.replace(taken, job_id=claims_own_job_id(taken.job_id, taken.claim))
    assert claims_own_job_id(recorded.job_id, taken.claim) == recorded.job_id
    holder = claimed(recorded)  # a job this database does not know on the very ID the row recorded
    assert await nomad.backend().submit(holder, first_start=True) == recorded.job_id
    with pytest.raises(AttemptLost, match=f"Nomad job {recorded.job_id} in namespace 'default' is not this attempt's"):
        await nomad.backend().submit(recorded)
    listed = (await nomad.ahttp("GET", "/v1/jobs", params={"prefix": recorded.job_id})).json()
    assert [job["ID"] for job in listed] == [recorded.job_id]  # registered under no third ID
    await nomad.purge(recorded.job_id)


async def test_the_ids_jobs_not_ours_hold_are_kept_within_a_bound_and_never_purged_while_kept(nomad: Target):
    # Found by review: the IDs found held by a job this database does not know were only ever added to (an
    # attempt that ran under its claim's own ID is forgotten by that ID, never by the first): a launcher runs
    # for months.
    taken = [claimed(installation_spec(nomad, f"kept-{n}", str(uuid.uuid4()))) for n in range(4)]
    for spec in taken:
        assert await nomad.backend().submit(claimed(spec), first_start=True) == spec.job_id  # the job not ours
    backend = NomadBackend(nomad.config(purge_delay_s=0.0), finished_memory=2)
    nomad.backends.append(backend)
    own = await backend.submit(taken[0], first_start=True)
    assert (await follow(backend, dataclasses.replace(taken[0], job_id=own))).state == "processed"
    await backend.forget(own)
    before = await registration_of(nomad, taken[0].job_id)
    await backend.forget(taken[0].job_id)  # (even asked to, it purges no job not ours)
    await asyncio.sleep(0.2)
    assert await registration_of(nomad, taken[0].job_id) == before
    for spec in taken[1:]:  # attempts never forgotten here (their launcher's lease lapsed, say)
        assert await backend.submit(spec, first_start=True) != spec.job_id
    assert list(backend._not_ours) == [spec.job_id for spec in taken[2:]]  # at most finished_memory: the newest
    assert len(backend._checked) == 2
    for spec in taken:
        await nomad.purge(spec.job_id)


async def test_an_attempt_without_a_claim_token_is_lost_on_a_job_it_did_not_register(nomad: Target):
    # A spec without a claim token (a job row claimed before migration 0080) has no ID of its own to go to:
    # a job on its ID that its first start did not register is neither followed nor purged, the attempt lost.
    installation = str(uuid.uuid4())
    old_backend, new_backend = nomad.backend(), nomad.backend(purge_delay_s=0.0)
    old = installation_spec(nomad, "claimless", installation)
    await old_backend.submit(old, first_start=True)
    before = await registration_of(nomad, old.job_id)
    with pytest.raises(AttemptLost, match=f"Nomad job {old.job_id} in namespace 'default' is not this attempt's") as lost:
        await new_backend.submit(old, first_start=True)
    assert lost.value.fault == "backend_unavailable" and "not the routine's fault" in str(lost.value)
    await new_backend.forget(old.job_id)
    await asyncio.sleep(0.2)
    assert await registration_of(nomad, old.job_id) == before
    assert await nomad.backend().submit(old) == old.job_id  # adopted (no token either): judged as before
    assert (await follow(old_backend, old)).state == "processed"
    await old_backend.forget(old.job_id)


@pytest.mark.parametrize("event_stream", [True, False])
async def test_a_job_an_admin_stopped_in_nomad_is_lost_saying_so_and_what_stops_the_work(nomad: Target,
                                                                                         event_stream: bool):
    # Found by exploratory testing: an admin's `nomad job stop` came back as attempt N+1, and the lost
    # attempt's message did not say why nor what stops the work.
    backend = nomad.backend(event_stream=event_stream)
    spec = nomad.spec(f"admin-stop-{event_stream}", "exec sleep 60")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    assert (await nomad.ahttp("DELETE", f"/v1/job/{Target.path_id(spec.job_id)}")).status_code == 200  # nomad job stop
    outcome = await following
    assert outcome.state == "lost", outcome.message
    assert outcome.message.startswith("the Nomad job was stopped in Nomad by someone other than hrwsi"), outcome.message
    assert f"it runs again as a new attempt; to stop the work, `hrwsi cancel {spec.task_id}`" in outcome.message
    assert "`hrwsi hold contract`" in outcome.message
    await backend.forget(spec.job_id)


@pytest.mark.parametrize("event_stream", [True, False])
async def test_a_job_an_admin_purged_in_nomad_is_lost_saying_so_and_what_stops_the_work(nomad: Target,
                                                                                       event_stream: bool):
    # Found by reading Nomad's event stream (nomad/state/events.go): `nomad job stop -purge` of a running attempt
    # said only "allocation ... was stopped in Nomad, not by hrwsi (alloc not needed due to job update)", as if
    # the job had been updated: a purge's Job event carries the job as it was (Stop false), and the job is 404.
    backend = nomad.backend(event_stream=event_stream)
    spec = nomad.spec(f"admin-purge-{event_stream}", "exec sleep 60")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    assert (await nomad.ahttp("DELETE", f"/v1/job/{Target.path_id(spec.job_id)}",
                              params={"purge": "true"})).status_code == 200  # nomad job stop -purge
    outcome = await following
    assert outcome.state == "lost", outcome.message
    assert outcome.message.startswith("the Nomad job was stopped and purged in Nomad by someone other than hrwsi"), \
        outcome.message
    assert f"it runs again as a new attempt; to stop the work, `hrwsi cancel {spec.task_id}`" in outcome.message
    await backend.forget(spec.job_id)


async def test_a_job_an_admin_stopped_is_said_so_when_its_allocations_are_read_before_the_job_list_shows_it(
        nomad: Target):
    # Found by CI: without the event stream, a read of the allocations already on its way saw the one
    # Nomad stopped before the job list showed the Stop flag, and the outcome blamed "a job update".
    emulator = nomad.require_emulator("hold the job list back")
    backend = nomad.backend(event_stream=False, blocking_wait_s=0.2)
    spec = nomad.spec("admin-stop-listed-late", "exec sleep 60")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.inject_delays(1_000, 3.0, path_prefix="/v1/jobs", method="GET")
    await asyncio.sleep(0.6)  # the blocking query in flight has returned; the next one is held back
    path = f"/v1/job/{Target.path_id(spec.job_id)}"
    assert (await nomad.ahttp("DELETE", path)).status_code == 200  # nomad job stop

    async def stopped() -> None:
        while not any(a["ClientStatus"] == "complete" for a in (await nomad.ahttp("GET", f"{path}/allocations")).json()):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(stopped(), GUARD_S)
    backend._following.refresh(spec.job_id)  # the read already on its way
    outcome = await asyncio.wait_for(following, 2.0)  # before the job list's next answer
    emulator.clear_faults()
    assert outcome.state == "lost", outcome.message
    assert outcome.message.startswith("the Nomad job was stopped in Nomad by someone other than hrwsi"), outcome.message
    await backend.forget(spec.job_id)


@pytest.mark.parametrize("event_stream", [True, False])
async def test_a_job_an_admin_stopped_then_started_again_is_purged_so_the_attempt_does_not_run_twice(
        nomad: Target, event_stream: bool, caplog):
    # Found by exploratory testing: `nomad job stop` then `nomad job run` of the same spec (the UI's Start)
    # ran the attempt recorded lost to its end, beside its retry, writing the old attempt's directory.
    backend = nomad.backend(event_stream=event_stream)
    spec = nomad.spec(f"stop-start-{event_stream}", "exec sleep 60")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    path = f"/v1/job/{Target.path_id(spec.job_id)}"
    job = (await nomad.ahttp("GET", path)).json()
    assert (await nomad.ahttp("DELETE", path)).status_code == 200  # nomad job stop
    outcome = await following
    assert outcome.state == "lost", outcome.message
    await backend.forget(spec.job_id)

    async def gone() -> None:
        while (await nomad.ahttp("GET", path)).status_code != 404:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(gone(), GUARD_S)  # purged at once: nothing left for the UI to start
    job["Stop"] = False
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200  # nomad job run
    await asyncio.wait_for(gone(), GUARD_S)  # started again: stopped and purged by hrwsi
    assert any("an attempt already recorded ended was started again in Nomad" in r.getMessage()
               and spec.job_id in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("event_stream", [True, False])
async def test_a_job_an_admin_scaled_to_two_is_scaled_back_and_the_attempt_runs_once_to_its_end(
        nomad: Target, event_stream: bool, caplog):
    # Found by exploratory testing: `nomad job scale <job> 2` ran the attempt a second time into the same
    # output directory, and nothing said so.
    backend = nomad.backend(event_stream=event_stream)
    flag = nomad.work / f"scaled-{event_stream}.go"
    spec = nomad.spec(f"scaled-{event_stream}", script_until_exists(flag))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    path = f"/v1/job/{Target.path_id(spec.job_id)}"
    scaled = await nomad.ahttp("POST", f"{path}/scale", json={"Count": 2, "Target": {"Group": "hrwsi"}})
    assert scaled.status_code == 200, scaled.text  # nomad job scale <job> hrwsi 2

    async def scaled_back() -> list[dict]:
        while True:
            job = (await nomad.ahttp("GET", path)).json()
            allocs = (await nomad.ahttp("GET", f"{path}/allocations")).json() or []
            if job["TaskGroups"][0]["Count"] == 1 and any(a["Name"].endswith("[1]") and a["DesiredStatus"] == "stop"
                                                          for a in allocs):
                return allocs
            await asyncio.sleep(0.1)
    allocs = await asyncio.wait_for(scaled_back(), GUARD_S)
    first = next(a for a in allocs if a["Name"].endswith("[0]"))
    assert first["DesiredStatus"] == "run" and first["ClientStatus"] == "running"  # the attempt runs on
    flag.write_text("")
    outcome = await following
    assert outcome.state == "processed", outcome.message
    assert "an admin raised the Nomad job's count" in outcome.message and "scaled the job back to 1" in outcome.message
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "raised the Nomad job's count" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"task {spec.task_id}" in warnings[0] and spec.job_id in warnings[0] and "nomad job scale" in warnings[0]
    assert any("raised the Nomad job's count" in reason for _, reason in progress.calls)
    await backend.forget(spec.job_id)


async def test_a_token_without_node_read_is_said_once_while_workers_activity_is_not_followed_and_when_it_is_over(
        nomad: Target, tmp_path, caplog, monkeypatch):
    # Found by exploratory testing: follow_node_status logged a traceback every 15 s while Nomad answered 403.
    nomad.require_emulator("a token without node:read")
    caplog.set_level(logging.INFO, logger="hrwsi.backends.nomad")
    policy = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}))
    async with open_emulator(tmp_path, "no-node-read", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: policy}) as target:
        backend = target.backend(token=SUBMITTER_TOKEN)
        for _ in range(3):
            assert await backend.worker_activity() == {}  # nothing changes meanwhile
        said = [r for r in caplog.records if "node:read" in r.getMessage()]
        assert len(said) == 1 and said[0].levelname == "WARNING", [r.getMessage() for r in said]
        assert "workers' activity is not followed" in said[0].getMessage()
        problem = backend.problem()
        assert problem is not None and "node:read" in problem[0] and "workers' activity is not followed" in problem[0]
        monkeypatch.setattr("hrwsi.backends.nomad.backend.NODES_REFUSED_REPEAT_S", 0.0)
        await backend.worker_activity()  # (said again once the repeat interval has passed)
        assert len([r for r in caplog.records if "node:read" in r.getMessage()]) == 2
        target.emulator.acl_policies[SUBMITTER_TOKEN] = dataclasses.replace(policy, node="read")  # (policy fixed)
        assert await backend.worker_activity() == {target.node: True}
        assert any("Nomad lists its nodes again" in r.getMessage() for r in caplog.records)


async def test_an_attempt_on_a_node_disconnected_without_lost_after_is_lost_not_unknown_and_handled_alike(
        nomad: Target):
    # scheduler/reconciler/filters.go: on a "disconnected" node an allocation of a group without lost_after is
    # lost; on a "down" one, a running allocation of a group with Disconnect.Replace false is unknown. hrwsi
    # treats both alike: running until its client must have stopped it, then lost, its job stopped.
    emulator = nomad.require_emulator("disconnect a node")
    backend = nomad.backend(stop_after_disconnect_s=0.2, kill_timeout_s=0.1)
    spec = nomad.spec("disconnected", script_until_exists(nomad.work / "never"), worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.cluster.set_node_status(NODE_2, "disconnected")
    allocs = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocs] == ["lost"]
    await progress.reached("running", "its node is disconnected (lost)")
    outcome = await following
    assert outcome.state == "lost" and NODE_2 in outcome.message, outcome.message
    emulator.node_up(NODE_2)


async def test_a_registration_carried_out_while_nomad_answered_nothing_for_the_retry_window_is_not_run_beside_a_retry(
        nomad: Target):
    # Round 11 of exploratory testing: a Nomad too slow to answer for the whole retry window (every call
    # timed out) carried out the registration all the same; the attempt was recorded lost (backend_unavailable)
    # and retried as a new attempt while its job ran, unfollowed, never stopped nor purged: the work ran twice.
    emulator = nomad.require_emulator("answer nothing in time while carrying a registration out")
    backend = nomad.backend(request_timeout_s=0.3, retry_for_s=1.5)
    await backend.read_jobs_index()
    emulator.inject_delays(1, 0.5, path_prefix="/v1/jobs", method="POST")  # carried out after the timeout
    emulator.inject_delays(3, 0.5, path_prefix="/v1/jobs", method="GET")  # the looks for it too late till 2.5 s
    spec = nomad.spec("slow", "sleep 1; exit 0")
    try:
        registered = await backend.submit(spec)
    except AttemptLost:
        await asyncio.sleep(1.0)
        found = await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")
        assert found.status_code == 404 or found.json().get("Stop"), "lost, yet its job runs unfollowed"
    else:
        assert registered == spec.job_id
        assert (await follow(backend, spec)).state == "processed"
    assert emulator.requests[("POST", "/v1/jobs")] == 1


@pytest.mark.parametrize("status", [429, 500, 502, 504, 404])
async def test_a_task_output_nomad_failed_to_serve_is_asked_again_and_never_kept_as_no_output(nomad: Target, status):
    # Round 11 of exploratory testing: a gateway's 502, Nomad's 429 or a 500 of the client agent (its node out of
    # reach) for the logs endpoint was taken for a task that wrote nothing: the attempt's log said "no stdout,
    # no stderr" for a routine that wrote both, and nothing said the output was not kept.
    emulator = nomad.require_emulator("fail the logs endpoint")
    backend = nomad.backend()
    emulator.inject_errors(1, status, "emulator (test double): injected error", path_prefix="/v1/client/fs/logs",
                           method="GET")
    spec = nomad.spec(f"logs-failed-{status}", "echo written-out; echo written-err >&2")
    await backend.submit(spec)
    assert (await follow(backend, spec)).state == "processed"
    kept = Path(spec.log_path).read_text()
    assert "no stdout, no stderr" not in kept, kept
    assert "written-err" in kept, kept
    if status == 404:  # (not transient: not asked again, and the log says why its stdout is missing)
        assert f"hrwsi could not keep the task's stdout: Nomad answered HTTP {status}: emulator" \
            in kept, kept
    else:
        assert "written-out" in kept, kept
    await backend.forget(spec.job_id)


@pytest.mark.parametrize(("error", "carried_out"), [
    ("leadership lost while committing log", True), ("leadership lost while committing log", False),
    ("node is not the leader", False), ("timed out enqueuing operation", False),
    ("rpc error: raft is already shutdown", False)])
async def test_a_registration_failed_by_a_leader_election_is_retried_and_runs_once(nomad: Target, error, carried_out):
    # Round 11 of exploratory testing: Job.Register returns Raft's error as it is (nomad/job_endpoint.go, raftApply in
    # nomad/rpc.go; hashicorp/raft api.go ErrLeadershipLost, ErrNotLeader, ErrEnqueueTimeout, ErrRaftShutdown), a
    # 500 while the servers elect a leader. It was taken for the job's own refusal: the attempt failed, charged to
    # the routine (five of them held it), and a registration whose entry was committed all the same ran beside
    # the task's next attempt.
    emulator = nomad.require_emulator("fail a registration as a leader election does")
    backend = nomad.backend()
    emulator.inject_errors(1, 500, error, path_prefix="/v1/jobs", method="POST", carried_out=carried_out)
    spec = nomad.spec("election", "exit 0")
    assert await backend.submit(spec) == spec.job_id
    assert (await follow(backend, spec)).state == "processed"
    assert emulator.requests[("POST", "/v1/jobs")] == (1 if carried_out else 2)
    assert emulator.cluster.completed_runs[spec.job_id] == 1


async def test_a_job_placed_while_its_launcher_could_not_see_it_is_not_purged_as_unplaced(nomad: Target):
    # Round 11 of exploratory testing: a job queued (its node ineligible) was placed while Nomad's event stream was
    # down; when its unplaced limit came, the launcher purged it from what it had last seen, stopping the running
    # attempt, and recorded it lost as "Nomad could not place job ..." (its next attempt kept off that node).
    emulator = nomad.require_emulator("make a node ineligible and break the event stream")
    backend = nomad.backend(unplaced_limit_s=2.0)
    emulator.set_eligibility(nomad.node, False)
    spec = nomad.spec("placed-unseen", "sleep 2; exit 0")
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("queued")
    emulator.inject_errors(10_000, 502, "Bad Gateway", path_prefix="/v1/event/stream")
    emulator.drop_event_streams()
    await asyncio.sleep(0.3)
    emulator.set_eligibility(nomad.node, True)  # placed now, unseen by the launcher
    await asyncio.sleep(2.2)  # its unplaced limit passes while the stream is down
    emulator.clear_faults()
    outcome = await asyncio.wait_for(following, GUARD_S)
    assert outcome.fault != "not_placed", outcome
    assert outcome.state == "processed", outcome
    assert emulator.cluster.completed_runs[spec.job_id] == 1
    await backend.forget(spec.job_id)


async def test_a_stream_reconnected_after_an_evaluation_is_not_taken_for_nomads_state_going_back(nomad: Target, caplog):
    # Found by review against Nomad's source: the job list's X-Nomad-Index, the launcher's probe on each
    # (re)connection, is max(index of jobs, index of job summaries) (nomad/job_endpoint.go List); an evaluation's
    # write moves neither (nomad/state/state_store.go nestedUpsertEval), yet the event stream carries it. The
    # launcher compared the probe with the stream's index: a reconnection after an evaluation said "Nomad's index
    # went backwards: its state was lost or restored", read every followed job again, and would have said a job
    # an admin purged meanwhile was lost with Nomad's state.
    emulator = nomad.require_emulator("end the event stream")
    backend = nomad.backend()
    spec = nomad.spec("evaluated", script_until_exists(nomad.work / "evaluated-release", "exit 0"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    again = (await nomad.ahttp("POST", "/v1/jobs", json={"Job": stored})).json()  # unchanged: an evaluation alone

    async def evaluated() -> None:
        while (await nomad.ahttp("GET", f"/v1/evaluation/{again['EvalID']}")).json()["Status"] != "complete":
            await asyncio.sleep(0.05)
    await asyncio.wait_for(evaluated(), GUARD_S)
    await asyncio.sleep(0.3)  # (the stream has carried the evaluation's events by now)
    connections = emulator.event_stream_connections
    emulator.drop_event_streams()

    async def reconnected() -> None:
        while emulator.event_stream_connections == connections:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(reconnected(), GUARD_S)
    (nomad.work / "evaluated-release").touch()
    assert (await following).state == "processed"
    assert not [r.getMessage() for r in caplog.records if "went backwards" in r.getMessage()]
    await backend.forget(spec.job_id)


async def test_polls_that_find_nothing_wait_out_nomads_stagger_of_the_wait_without_timing_out(nomad: Target, caplog):
    # Found by review against Nomad's source: Nomad holds a blocking query up to a sixteenth longer than its wait
    # (nomad/rpc.go blockingRPC: RandomStagger(MaxQueryTime / JitterFraction)). The poll's read timeout was the wait
    # plus the request timeout: with HRWSI_NOMAD_REQUEST_TIMEOUT_S below the stagger, polls that found nothing
    # timed out, were retried with a warning, and `hrwsi status` said Nomad was out of reach.
    emulator = nomad.require_emulator("stagger every blocking query by its most")
    emulator.query_stagger = lambda interval: interval * 0.95  # 5 s: 0.3 s more
    backend = nomad.backend(event_stream=False, request_timeout_s=0.25, blocking_wait_s=5.0)
    release = nomad.work / "staggered-release"
    spec = nomad.spec("staggered", script_until_exists(release, "exit 0"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    polls = emulator.requests[("GET", "/v1/jobs")]

    async def polled_twice_more() -> None:  # (at least one of them found nothing: the job runs on)
        while emulator.requests[("GET", "/v1/jobs")] < polls + 2:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(polled_twice_more(), GUARD_S)
    release.touch()
    assert (await following).state == "processed"
    assert not [r.getMessage() for r in caplog.records if "wait for changes of Nomad jobs" in r.getMessage()]
    assert backend.client.problem() is None
    await backend.forget(spec.job_id)


async def test_a_lost_attempt_whose_first_stop_failed_is_stopped_again_before_nomad_replaces_it(nomad: Target, caplog):
    # Found by review against Nomad's source (session 74): Nomad replaces a lost allocation whatever
    # Disconnect.Replace says (it keeps only a running allocation of a node down unknown), once its client must
    # have stopped it (scheduler/reconciler/filters.go delayByStopAfter: stop_on_client_after + max(kill timeouts,
    # 5 s)). The launcher stops a lost allocation's job when it first sees it, and never again: that stop failing
    # (Nomad out of reach for the retry window), the replacement ran the attempt again beside its retry.
    emulator = nomad.require_emulator("disconnect a node")
    backend = nomad.backend(stop_after_disconnect_s=3, kill_timeout_s=0.1, retry_for_s=0.5)
    spec = nomad.spec("lost-stop-failed", script_until_exists(nomad.work / "never"), worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.inject_errors(10_000, 503, path_prefix="/v1/job/", method="DELETE")
    emulator.cluster.set_node_status(NODE_2, "disconnected")
    lost_at = asyncio.get_running_loop().time()
    await progress.reached("running", "its node is disconnected (lost)")

    async def stop_failed() -> None:
        while not any("could not stop Nomad job" in r.getMessage() for r in caplog.records
                      if r.name == "hrwsi.backends.nomad.following"):  # (given up, not a retry of the client's)
            await asyncio.sleep(0.05)
    await asyncio.wait_for(stop_failed(), GUARD_S)
    emulator.clear_faults()  # Nomad in reach again
    outcome = await following
    assert outcome.state == "lost", outcome.message
    await asyncio.sleep(max(0.0, lost_at + 3 + 5 + 0.5 - asyncio.get_running_loop().time()))  # (Nomad's wait)
    emulator.node_up(NODE_2)  # (pinned to it: a replacement waits for it)
    await asyncio.sleep(0.5)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    # never replaced: run once (its client, back, reports the stopped allocation complete: session 76)
    assert [a["ClientStatus"] for a in allocations] == ["complete"], allocations
    assert (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()["Stop"] is True
    await backend.forget(spec.job_id)


async def test_an_attempt_whose_node_is_back_while_it_runs_is_followed_on_to_its_real_end_not_lost(nomad: Target):
    # Its allocation unknown (a node down, Disconnect.Replace false: scheduler/reconciler/filters.go), then running
    # again when the client is back (client/client.go updateAlloc, allocrunner Reconnect): the attempt runs on,
    # is not lost when the wait for its client to have stopped it would have passed, and ends processed, once.
    emulator = nomad.require_emulator("cut a node off from the servers")
    backend = nomad.backend(stop_after_disconnect_s=1.0, kill_timeout_s=0.5)
    gate = nomad.work / "back-running-gate"
    spec = nomad.spec("back-running", script_until_exists(gate, 'echo done > "$HRWSI_OUTPUT_DIR/product.txt"'),
                      worker=NODE_2)
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    emulator.node_down(NODE_2, processes_survive=True)
    await progress.reached("running", "disconnected (unknown)")
    emulator.node_up(NODE_2)
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocations] == ["running"]
    await asyncio.sleep(1.0 + 0.5 + 0.5)  # (past the launcher's wait for a client to have stopped it)
    assert not following.done(), following.result()
    gate.touch()
    outcome = await following
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    allocations = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
    assert [a["ClientStatus"] for a in allocations] == ["complete"]  # not replaced: run once
    await backend.forget(spec.job_id)


async def test_an_attempt_lost_with_its_node_is_lost_when_the_node_comes_back_and_its_client_stops_it(
        nomad: Target, tmp_path):
    # On a node "disconnected" (another job's lost_after: nomad/heartbeat.go disconnectState) the attempt's
    # allocation is lost at once (filters.go: no lost_after), server-terminal (nomad/structs/plan.go
    # AppendStoppedAlloc). Its client back with it still running stops it; the client status is then the
    # client's, complete (nomad/state/state_store.go nestedUpdateAllocFromClient), never running again. The
    # attempt did not finish: lost (retried), not processed from the killed run's "complete".
    nomad.require_emulator("disconnect a node")
    async with open_emulator(tmp_path, "lost-back", [EmulatedNode("lost-back-1")]) as target:
        emulator = target.emulator
        waits = minimal_job(target.job_id("lost-back-waits"), "exec sleep 600")
        waits["TaskGroups"][0]["Disconnect"] = {"LostAfter": 3600 * 10**9}
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": waits})).status_code == 200
        backend = target.backend(stop_after_disconnect_s=60, kill_timeout_s=0.5)
        spec = target.spec("lost-back", script_until_exists(target.work / "never"), worker="lost-back-1")
        await backend.submit(spec)
        progress = Progress()
        following = asyncio.ensure_future(follow(backend, spec, progress))
        await progress.reached("running")
        emulator.node_down("lost-back-1", processes_survive=True)
        await progress.reached("running", "disconnected (lost)")
        emulator.node_up("lost-back-1")
        outcome = await asyncio.wait_for(following, GUARD_S)
        assert outcome.state == "lost", (outcome.state, outcome.message)
        allocations = (await target.ahttp("GET", f"/v1/job/{spec.job_id}/allocations")).json()
        assert [a["ClientStatus"] for a in allocations] == ["complete"], allocations  # stopped; not replaced
        await backend.forget(spec.job_id)
