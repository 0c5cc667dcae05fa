"""hrwsi.testing.nomad_recorder: a real agent's answers are recorded byte for byte and replayed as they came.

Checked here against the emulator (the one test double) in each event-stream framing: what the
recording proxy writes is what the agent sent, the token never lands in a cassette, and the
replay server gives the backend's reader the same bytes back.
"""

from __future__ import annotations

import asyncio

import pytest
import requests

from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.backends.nomad.event_stream import EventStream
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from hrwsi.testing.nomad_emulator.event_stream import FRAMINGS
from hrwsi.testing.nomad_recorder import RecordingProxy, ReplayServer, agent_version, load_cassette
from tests.contract.conftest import GUARD_S, MANAGEMENT_TOKEN, minimal_job

pytestmark = pytest.mark.contract


async def read_lines(address: str, token: str | None, job_id: str, count: int) -> tuple[str, list[dict]]:
    connection = await EventStream(NomadConfig(address=address, token=token)).connect(
        {"topic": f"Job:{job_id}", "index": "0"})
    frames = connection.frames()
    try:
        lines = [await asyncio.wait_for(frames.__anext__(), GUARD_S) for _ in range(count)]
        return f"{connection.response.version} {connection.response.status}", lines
    finally:
        connection.close()


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_the_event_stream_is_recorded_raw_and_replayed_the_same(tmp_path, framing):
    async with NomadEmulator([EmulatedNode("recorded")], acl_token=MANAGEMENT_TOKEN, event_heartbeat=0.2,
                             event_stream_framing=framing, work_dir=tmp_path / "emulator") as emulator:
        version = await asyncio.to_thread(agent_version, emulator.address, MANAGEMENT_TOKEN, None)
        assert version == f"{emulator.version}+emulated"
        cassette = tmp_path / "recordings" / version / "stream.jsonl.gz"
        proxy = RecordingProxy(emulator.address, cassette, {"agent_version": version, "run_id": "r"})
        address = await proxy.start()
        job = minimal_job("hrwsi-recorded-1")
        await asyncio.to_thread(requests.post, f"{emulator.address}/v1/jobs", json={"Job": job},
                                headers={"X-Nomad-Token": MANAGEMENT_TOKEN}, timeout=30)
        live_status, live = await read_lines(address, MANAGEMENT_TOKEN, job["ID"], 3)
        await proxy.close()
    header, exchanges = load_cassette(cassette)
    assert header["agent_version"] == version
    (stream,) = [e for e in exchanges if e.target.startswith("/v1/event/stream")]
    raw = stream.response_bytes()
    assert raw.startswith(b"HTTP/0.0 200 OK" if framing == "raw-http-0.0" else b"HTTP/1.1 200 OK")
    assert (b"Transfer-Encoding: chunked" in raw) == (framing == "chunked-gzip")
    assert stream.request_headers["x-nomad-token"] == "<redacted>"
    assert MANAGEMENT_TOKEN.encode() not in cassette.read_bytes() and MANAGEMENT_TOKEN not in str(exchanges)
    replay = ReplayServer(exchanges)
    replayed_status, replayed = await read_lines(await replay.start(), None, job["ID"], 3)
    await replay.close()
    assert (replayed_status, replayed) == (live_status, live)
    assert live[0] == {} and live[1]["Events"][0]["Type"] == "JobRegistered"


async def test_a_replay_answers_in_recorded_order_then_repeats_the_last(tmp_path):
    async with NomadEmulator([EmulatedNode("recorded")], work_dir=tmp_path / "emulator") as emulator:
        cassette = tmp_path / "order.jsonl.gz"
        proxy = RecordingProxy(emulator.address, cassette, {"agent_version": "x", "run_id": "r"})
        address = await proxy.start()
        get = requests.get
        statuses = []
        for _ in range(2):
            statuses.append((await asyncio.to_thread(get, f"{address}/v1/job/hrwsi-order-1", timeout=30)).status_code)
            await asyncio.to_thread(requests.post, f"{address}/v1/jobs",
                                    json={"Job": minimal_job("hrwsi-order-1")}, timeout=30)
        await proxy.close()
    assert statuses == [404, 200]
    replay = ReplayServer(load_cassette(cassette)[1])
    address = await replay.start()
    try:
        again = [(await asyncio.to_thread(get, f"{address}/v1/job/hrwsi-order-1", params={"index": i}, timeout=30))
                 .status_code for i in range(3)]
        unknown = await asyncio.to_thread(get, f"{address}/v1/job/never-recorded", timeout=30)
    finally:
        await replay.close()
    assert again == [404, 200, 200]  # ?index= is a blocking-query parameter: the same question
    assert unknown.status_code == 404 and replay.unmatched == ["GET /v1/job/never-recorded"]


async def test_a_replayed_event_waits_for_the_write_it_was_recorded_after(tmp_path):
    # Found by CI: on a loaded machine the replay, keeping only the recorded timing, delivered an
    # allocation's stop before the test's own DELETE of its job, and the backend judged it an admin's.
    async with NomadEmulator([EmulatedNode("recorded")], event_heartbeat=60, work_dir=tmp_path / "emulator") as emulator:
        cassette = tmp_path / "causal.jsonl.gz"
        proxy = RecordingProxy(emulator.address, cassette, {"agent_version": "x", "run_id": "r"})
        address = await proxy.start()
        job = minimal_job("hrwsi-causal-1")
        await asyncio.to_thread(requests.post, f"{address}/v1/jobs", json={"Job": job}, timeout=30)
        types = await registered_then_deregistered(address, job["ID"], pause_s=0.0)
        await proxy.close()
    assert types == ["JobRegistered", "JobDeregistered"]
    replay = ReplayServer(load_cassette(cassette)[1])
    address = await replay.start()
    try:
        await asyncio.to_thread(requests.post, f"{address}/v1/jobs", json={"Job": job}, timeout=30)
        assert await registered_then_deregistered(address, job["ID"], pause_s=0.5) == types
    finally:
        await replay.close()


async def registered_then_deregistered(address: str, job_id: str, *, pause_s: float) -> list[str]:
    """The job's event types: its registration, then, once it is stopped (`DELETE` after pause_s, in which
    nothing more may arrive), its deregistration."""
    connection = await EventStream(NomadConfig(address=address)).connect({"topic": f"Job:{job_id}", "index": "0"})
    frames = connection.frames()

    async def next_of(wanted: str) -> str:
        while not any(event["Type"] == wanted for event in (await frames.__anext__()).get("Events") or []):
            pass  # the stream's opening heartbeat; the job's placement (PlanResult) and other updates
        return wanted

    try:
        types = [await asyncio.wait_for(next_of("JobRegistered"), GUARD_S)]
        deregistered = asyncio.ensure_future(next_of("JobDeregistered"))
        if pause_s:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(deregistered), pause_s)
        await asyncio.to_thread(requests.delete, f"{address}/v1/job/{job_id}", timeout=30)
        types.append(await asyncio.wait_for(deregistered, GUARD_S))
        return types
    finally:
        connection.close()
