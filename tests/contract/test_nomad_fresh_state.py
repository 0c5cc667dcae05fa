"""A Nomad cluster that comes back with an empty state (rebuilt, or restored from nothing): its index
goes back near zero, its jobs are gone and their processes killed (issue 14). The backend must treat
the jobs it followed as lost (retried by the launcher) and follow the jobs submitted afterwards.

Emulator only: a real agent cannot be told to forget its state.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import Progress, Target, follow, script_until_exists

pytestmark = pytest.mark.contract

# A liveness guard: a job of a second that is not over 10 s after Nomad came back is not followed.
SHORT_GUARD_S = 10.0


async def test_a_job_running_when_nomad_lost_its_state_ends_lost(nomad: Target):
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend()
    spec = nomad.spec("before", script_until_exists(nomad.work / "never"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    await progress.reached("running")
    index_before = emulator.cluster.index
    await emulator.restart_with_fresh_state()
    assert emulator.cluster.index < index_before, "the index went backwards"
    outcome = await asyncio.wait_for(following, SHORT_GUARD_S)
    assert outcome.state == "lost", outcome.message  # retried as a new attempt, never counted as a failure
    # (found by exploratory testing: it said "purged or garbage-collected", sending the reader to the GC)
    assert "Nomad's state went back while it was followed (its index went backwards" in outcome.message, outcome.message


async def test_a_job_submitted_after_nomad_lost_its_state_is_followed_to_its_end(nomad: Target):
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend()
    first = nomad.spec("first", "exit 0")
    await backend.submit(first)
    assert (await follow(backend, first)).state == "processed"  # the backend follows the stream: its index is high
    for i in range(3):  # Nomad's index moves on, far beyond where the fresh state starts
        warm = nomad.spec(f"warm-{i}", "exit 0")
        await backend.submit(warm)
        await follow(backend, warm)
    await emulator.restart_with_fresh_state()
    after = nomad.spec("after", "sleep 0.5; exit 0")
    await backend.submit(after)
    outcome = await asyncio.wait_for(backend.wait(after, after.job_id, Progress()), SHORT_GUARD_S)
    assert outcome.state == "processed", outcome.message


async def test_a_rebuilt_cluster_whose_index_of_jobs_passed_the_old_one_is_caught_by_the_streams_first_frame(nomad: Target):
    # Found by review (session 74): the probe on each (re)connection compares the job list's index with the highest
    # the old state had shown for jobs; a cluster rebuilt and busy since passes it while its last event is still
    # below the stream's old index. Resumed from past that index, the stream starts at the new state's last event
    # (nomad/stream/event_buffer.go StartAtClosest): a frame below what was seen. Missed, the followed job said
    # "purged or garbage-collected" and the new state's events up to the old index were dropped as seen, so a job
    # submitted afterwards was not followed until Nomad's index passed the old one.
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend()
    spec = nomad.spec("before-rebuild", script_until_exists(nomad.work / "never"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    await progress.reached("running")
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    old = emulator.cluster
    for _ in range(15):  # unchanged re-registrations: evaluations alone move the stream's index, not the jobs'
        again = (await nomad.ahttp("POST", "/v1/jobs", json={"Job": stored})).json()
        while old.evals[again["EvalID"]]["Status"] != "complete":
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # (the stream has carried them by now)
    seen_for_jobs = max(old.table_index["jobs"], old.table_index["job_summary"], old.table_index["allocs"])
    assert seen_for_jobs + 20 < old.index, (seen_for_jobs, old.index)
    await emulator.restart_with_fresh_state(busy_until=seen_for_jobs + 1)
    outcome = await asyncio.wait_for(following, SHORT_GUARD_S)
    assert outcome.state == "lost", outcome.message
    assert "Nomad's state went back while it was followed" in outcome.message, outcome.message
    after = nomad.spec("after-rebuild", "exit 0")
    await backend.submit(after)
    outcome = await asyncio.wait_for(backend.wait(after, after.job_id, Progress()), SHORT_GUARD_S)
    assert outcome.state == "processed", outcome.message


async def test_a_stream_resumed_on_a_server_whose_event_buffer_lags_is_not_taken_for_a_rebuilt_cluster(
        nomad: Target, caplog):
    # Each server publishes the events of what its own FSM applied (nomad/state/state_store.go, one
    # stream.EventBroker a server) and serves the stream itself (nomad/event_endpoint.go forwards only across
    # regions): through a client agent, a load balancer or after a restart, a resumed subscription may reach a
    # server that has not applied the last entries yet, and it starts at that server's last event
    # (nomad/stream/event_buffer.go StartAtClosest), below the last frame seen. The same history, not another
    # state: the first-frame check (session 74) said "went backwards", read every followed job again and marked
    # them as having lost Nomad's state (a job collected meanwhile would have ended lost, not as it ended).
    emulator = nomad.require_emulator("serve the stream from a lagging server")
    backend = nomad.backend()
    release = nomad.work / "lagging-release"
    spec = nomad.spec("lagging", script_until_exists(release, 'echo done > "$HRWSI_OUTPUT_DIR/product.txt"'))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(follow(backend, spec, progress))
    await progress.reached("running")
    stored = (await nomad.ahttp("GET", f"/v1/job/{spec.job_id}")).json()
    for _ in range(6):  # unchanged re-registrations: an evaluation's frames each
        again = (await nomad.ahttp("POST", "/v1/jobs", json={"Job": stored})).json()
        while emulator.cluster.evals[again["EvalID"]]["Status"] != "complete":
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # (the stream has carried them by now)
    connections = emulator.event_stream_connections
    emulator.lag_event_streams(frames=4)
    emulator.drop_event_streams()

    async def reconnected() -> None:
        while emulator.event_stream_connections == connections:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(reconnected(), SHORT_GUARD_S)
    await asyncio.sleep(0.3)  # (its first frames read)
    release.touch()
    outcome = await asyncio.wait_for(following, SHORT_GUARD_S)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert not [r.getMessage() for r in caplog.records if "went backwards" in r.getMessage()]
    await backend.forget(spec.job_id)


async def test_without_the_stream_a_job_registered_after_nomad_lost_its_state_is_followed_without_waiting_out_the_poll(
        nomad: Target, caplog):
    # Nomad holds a blocking query until the index passes the one asked or the wait ends (nomad/rpc.go blockingRPC),
    # so once its state went back, the job list's poll, asked with the old index, waited its whole wait (30 s by
    # default) before it answered a lower index and started over: a job registered meanwhile was followed that late.
    # A registration answered with a JobModifyIndex below the poll's index tells it at once (its write is the jobs
    # table's newest: nomad/state/state_store.go upsertJobImpl).
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend(event_stream=False, blocking_wait_s=120.0)
    for i in range(4):  # Nomad's index moves on, far beyond where the fresh state starts
        warm = nomad.spec(f"poll-warm-{i}", "exit 0")
        await backend.submit(warm)
        assert (await follow(backend, warm)).state == "processed"
    went_back = "a registration was answered an index of jobs below the one the poll waits for"
    assert not [r for r in caplog.records if went_back in r.getMessage()]  # (registrations in one state: never)
    await emulator.restart_with_fresh_state()
    after = nomad.spec("poll-after", "sleep 0.5; exit 0")
    await backend.submit(after)
    outcome = await asyncio.wait_for(backend.wait(after, after.job_id, Progress()), SHORT_GUARD_S)
    assert outcome.state == "processed", outcome.message
    assert [r for r in caplog.records if went_back in r.getMessage()]
