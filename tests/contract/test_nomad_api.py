"""The Nomad API semantics hrwsi relies on, asked of the API directly (the emulator's rules, hrwsi.testing.nomad_emulator).

Runs against the emulator (a test double) always and against a real agent when NOMAD_ADDR is set
(see conftest.py), so the emulator cannot drift from Nomad unnoticed. No timing assertions: waits
are bounded only by a liveness guard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from hrwsi.backends.nomad import NomadError
from hrwsi.backends.nomad.event_stream import EventStream
from hrwsi.backends.nomad.job_spec import build_job, secrets_template
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from hrwsi.testing.nomad_emulator.acl import AclPolicy
from hrwsi.testing.nomad_emulator.event_stream import FRAMING_HTTP_0_0, FRAMING_RAW
from tests.contract.conftest import (
    GUARD_S,
    MANAGEMENT_TOKEN,
    READER_TOKEN,
    SUBMITTER_TOKEN,
    Target,
    minimal_job,
    open_emulator,
    sleeping,
)

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
    job = minimal_job(nomad.job_id("service"), sleeping(30))
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


async def test_a_connection_over_the_agents_limit_is_answered_429_without_retry_after_and_closed(nomad: Target):
    # command/agent/http.go connLimiter: past http_max_conns_per_client (nomad/structs/config/limits.go, 100) open
    # connections from one IP, a new one is answered "HTTP/1.1 429 Too Many Requests" with Connection: close and no
    # Retry-After, written before its request is read, then closed (or, past 10 such answers a second, closed
    # without one). hrwsi retries it as Nomad's overload (client.is_transient). The emulator's 429 kept the connection.
    idle: list[socket.socket] = []
    if nomad.is_emulator:
        nomad.require_emulator("a 429 injected").inject_errors(1, 429, path_prefix="/v1/jobs")
    else:
        limits = ((await nomad.ahttp("GET", "/v1/agent/self")).json().get("config") or {}).get("Limits") or {}
        limit = limits.get("HTTPMaxConnsPerClient")
        if not limit or limit > 1000:
            pytest.skip(f"the agent's http_max_conns_per_client is {limit!r}: no limit this test can reach")
        url = urlsplit(nomad.address)
        port = url.port or (443 if url.scheme == "https" else 80)
        idle = [socket.create_connection((url.hostname, port), timeout=30) for _ in range(limit)]
    try:
        answer = await nomad.ahttp("GET", "/v1/jobs", params={"prefix": nomad.job_id("over-the-limit")})
    except requests.ConnectionError:
        if nomad.is_emulator:
            raise
        pytest.skip("the agent closed the connection before its 429 was read (a reset: the kernel dropped it)")
    finally:
        for connection in idle:
            connection.close()
    assert answer.status_code == 429
    assert answer.text == "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    assert answer.headers.get("Connection", "").lower() == "close", dict(answer.headers)
    assert "Retry-After" not in answer.headers and "X-Nomad-Index" not in answer.headers


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


async def test_an_error_carries_an_index_only_when_a_query_found_nothing(nomad: Target):
    """command/agent/http.go wrap writes an error with Content-Type alone; X-Nomad-Index is there only when
    the handler ran setMeta before its 404 (jobQuery, allocGet, nodeQuery, evalQuery): a 400 of the request's
    parsing, a 405, a 500 of an RPC (a validation, a lookup) carry none, so hrwsi must not need one."""
    unknown = nomad.job_id("never-registered-index")
    for path in (f"/v1/job/{unknown}", f"/v1/job/{unknown}/summary", f"/v1/allocation/{uuid.uuid4()}",
                 f"/v1/evaluation/{uuid.uuid4()}", f"/v1/node/{uuid.uuid4()}"):
        missing = await nomad.ahttp("GET", path)
        assert missing.status_code == 404, (path, missing.status_code)
        assert int(missing.headers["X-Nomad-Index"]) >= 1, path
        assert missing.headers["X-Nomad-KnownLeader"] == "true", path
    invalid = minimal_job(nomad.job_id("invalid-index"), Resources={"CPU": 100, "MemoryMB": 1})
    errors = {
        "malformed registration (400)": await nomad.ahttp("POST", "/v1/jobs", data=""),
        "invalid job (500)": await nomad.ahttp("POST", "/v1/jobs", json={"Job": invalid}),
        "lookup failure (500)": await nomad.ahttp("GET", "/v1/allocation/not-a-uuid"),
        "invalid wait (400)": await nomad.ahttp("GET", "/v1/jobs", params={"index": "1", "wait": "30"}),
        "wrong method (405)": await nomad.ahttp("PATCH", "/v1/jobs"),
    }
    for what, answer in errors.items():
        assert answer.status_code >= 400, (what, answer.status_code)
        assert "X-Nomad-Index" not in answer.headers, (what, dict(answer.headers))


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


async def _raw_head(target: Target, path: str) -> tuple[str, dict[str, str], bytes]:
    """GET path on a raw connection: the status line, the headers and the first body bytes as they come."""
    url = urlsplit(target.address)
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 4646)
    token = f"X-Nomad-Token: {target.token}\r\n" if target.token else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept-Encoding: gzip\r\n{token}\r\n".encode())
    try:
        status = (await asyncio.wait_for(reader.readline(), GUARD_S)).decode().rstrip()
        headers = {}
        while (line := await asyncio.wait_for(reader.readline(), GUARD_S)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        first = await asyncio.wait_for(reader.read(64), GUARD_S)  # bytes arrive before the connection closes
        return status, headers, first
    finally:
        writer.close()


async def test_the_event_stream_is_framed_as_the_nomad_version_emulated(framed: Target):
    status, headers, first = await _raw_head(framed, "/v1/event/stream?topic=Job:hrwsi-none&index=0")
    assert first, "the first line arrives while the stream is open"
    if not framed.is_emulator:  # a real agent: one of the three framings (hashicorp/nomad event_endpoint.go)
        assert status in ("HTTP/1.1 200 OK", "HTTP/0.0 200 OK"), status
        return
    framing = framed.emulator.event_stream_framing
    if framing == FRAMING_RAW:  # >= 1.11.3: hijacked, Go's Response.Write adds Connection: close
        assert status == "HTTP/1.1 200 OK" and headers.get("connection") == "close"
        assert "transfer-encoding" not in headers and "content-length" not in headers
        assert first.startswith(b"{}\n")
    elif framing == FRAMING_HTTP_0_0:  # 1.11.2: the response's protocol was left unset
        assert status == "HTTP/0.0 200 OK" and "connection" not in headers
        assert "transfer-encoding" not in headers and first.startswith(b"{}\n")
    else:  # <= 1.11.1: chunked, gzip when accepted (the agent's CompressHandler), flushed per line
        assert status == "HTTP/1.1 200 OK"
        assert headers.get("transfer-encoding") == "chunked" and headers.get("content-encoding") == "gzip"


async def test_each_event_stream_topic_needs_its_own_capability(nomad: Target, tmp_path):
    # nomad/event_endpoint.go validateNsOp: Job, Allocation and Evaluation need read-job, Node needs node:read,
    # any other topic (`*`, what no topic asks: command/agent/event_endpoint.go allTopics) a management token.
    # Since 1.11.2 a refusal is a 200 that ends without a line. The emulator asked read-job whatever the topics.
    nomad.require_emulator("ACL tokens with a policy")
    reader = AclPolicy(capabilities=frozenset({"read-job", "list-jobs"}))  # no node policy
    async with open_emulator(tmp_path, "stream-acl", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={READER_TOKEN: reader}) as target:
        as_reader = dataclasses.replace(target, token=READER_TOKEN)
        for query, served in (("topic=Job:*&topic=Allocation:*&topic=Evaluation:*", True), ("topic=Node:*", False),
                              ("topic=Job:*&topic=Node:*", False), ("", False), ("topic=*", False)):
            status, _, first = await _raw_head(as_reader, f"/v1/event/stream?index=0&{query}")
            assert status == "HTTP/1.1 200 OK", (query, status)
            assert first.startswith(b"{}\n") if served else first == b"", (query, first)
        status, _, first = await _raw_head(target, "/v1/event/stream?index=0")  # management: every topic
        assert first.startswith(b"{}\n"), first


async def test_event_stream_heartbeats_and_frames(framed: Target):
    job_id, other = framed.job_id("events"), framed.job_id("events-other")
    await framed.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id)})  # buffered before we subscribe
    connection = await EventStream(framed.config()).connect({"topic": f"Job:{job_id}", "index": "0"})
    lines: list[dict] = []
    frames = connection.frames()

    def events() -> list[dict]:
        return [e for x in lines for e in x.get("Events") or []]

    async def read_until(done) -> None:
        while not done():
            lines.append(await frames.__anext__())

    try:
        assert connection.response.status == 200
        await asyncio.wait_for(read_until(lambda: events()), GUARD_S)
        assert lines[0] == {}  # a heartbeat first, then the buffered events
        assert events()[0]["Type"] == "JobRegistered"
        await framed.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(other)})
        await framed.ahttp("DELETE", f"/v1/job/{job_id}")  # stop: a live JobDeregistered event
        heartbeats_wanted = 2 if framed.is_emulator else 1
        await asyncio.wait_for(read_until(lambda: any(e["Type"] == "JobDeregistered" for e in events())
                                          and lines.count({}) >= heartbeats_wanted), GUARD_S)
    finally:
        connection.close()
    with_events = [x for x in lines if x.get("Events")]
    assert all(isinstance(f["Index"], int) and f["Index"] > 0 for f in with_events)
    assert [f["Index"] for f in with_events] == sorted(f["Index"] for f in with_events)
    assert all(e["Topic"] == "Job" and e["Key"] == job_id for e in events())  # the topic filter holds
    registered = next(e for e in events() if e["Type"] == "JobRegistered")
    assert registered["Payload"]["Job"]["ID"] == job_id and registered["Index"] > 0
    for job in (job_id, other):
        await framed.purge(job)


async def test_a_purged_jobs_event_carries_the_job_as_it_was_and_says_deleted_from_nomad_2(framed: Target):
    # nomad/state/events.go eventFromChange: a job deleted (purged) by a JobDeregistered write is one Job event
    # whose payload is the job before the purge (a running job's Stop still false: only the Type tells a purge
    # from a stop on 1.10 and 1.11), with `Deleted: true` since 2.0.0 (nomad/structs/event.go JobEvent).
    job_id = framed.job_id("purged-event")
    await framed.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(job_id, "exec sleep 60")})
    version = (await framed.ahttp("GET", "/v1/agent/self")).json()["config"]["Version"]["Version"]
    connection = await EventStream(framed.config()).connect({"topic": f"Job:{job_id}", "index": "0"})
    lines: list[dict] = []
    frames = connection.frames()

    def deregistered() -> list[dict]:
        return [e for x in lines for e in x.get("Events") or [] if e["Type"] == "JobDeregistered"]

    try:
        await framed.purge(job_id)
        while not deregistered():
            lines.append(await asyncio.wait_for(frames.__anext__(), GUARD_S))
    finally:
        connection.close()
    event = deregistered()[0]
    assert event["Key"] == job_id and event["Payload"]["Job"]["ID"] == job_id
    assert not event["Payload"]["Job"]["Stop"]  # the job as it was: not a stop
    assert event["Payload"].get("Deleted", False) is (int(version.split(".")[0]) >= 2)
    assert (await framed.ahttp("GET", f"/v1/job/{job_id}")).status_code == 404


async def test_a_subscription_from_past_the_last_event_gets_the_last_event_again(framed: Target):
    # nomad/stream/event_buffer.go StartAtClosest: an index past every buffered event starts the subscription at
    # the last one, which it sends again (the launcher resumes from the index after the last frame it saw, and
    # must take that frame for one seen); the emulator sent nothing. A parameterized job's registration is one
    # frame and the last (no evaluation: nomad/job_endpoint.go Register). (A quiet agent: a later write would be
    # the last one.)
    job = minimal_job(framed.job_id("past-the-end"))
    job["ParameterizedJob"] = {"Payload": "forbidden"}
    assert (await framed.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    registered_at = (await framed.ahttp("GET", f"/v1/job/{job['ID']}")).json()["ModifyIndex"]
    connection = await EventStream(framed.config()).connect({"topic": f"Job:{job['ID']}",
                                                             "index": str(registered_at + 1)})
    lines: list[dict] = []
    frames = connection.frames()

    async def first_frame() -> None:
        while not any(line.get("Events") for line in lines):
            lines.append(await frames.__anext__())
    try:
        await asyncio.wait_for(first_frame(), GUARD_S)
    finally:
        connection.close()
    frame = next(line for line in lines if line.get("Events"))
    assert frame["Index"] == registered_at and frame["Events"][0]["Type"] == "JobRegistered", frame
    await framed.purge(job["ID"])


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


async def test_an_unknown_allocation_is_not_found_before_the_tokens_capabilities_are_checked(nomad: Target, tmp_path):
    if nomad.is_emulator:
        async with open_emulator(tmp_path, "alloc-acl", acl_token=MANAGEMENT_TOKEN) as target:
            await _check_allocation_reads_order(target)
    else:
        if not nomad.token or not await nomad.acl_enabled():
            pytest.skip("needs ACLs on and NOMAD_TOKEN (a management token) to register a job")
        await _check_allocation_reads_order(nomad)


async def _check_allocation_reads_order(target: Target) -> None:
    # Order of an allocation's reads: the HTTP handler's parameters (command/agent/fs_endpoint.go Logs: 400), then
    # Authenticate (a token Nomad does not know: Permission denied), then the allocation's lookup (unknown: 404),
    # then the capability in its namespace (nomad/client_fs_endpoint.go logs, nomad/alloc_endpoint.go GetAlloc).
    # The anonymous token (none sent) is one Authenticate takes, with no capability unless the admins gave it one.
    if (await target.ahttp("GET", "/v1/jobs", token=False)).status_code != 403:
        pytest.skip("the agent's anonymous token may list jobs: it has a policy")
    unknown = str(uuid.uuid4())
    logs = {"task": "t", "type": "stdout", "plain": "true"}
    missing = await target.ahttp("GET", f"/v1/client/fs/logs/{unknown}", params={"type": "stdout"}, token=False)
    assert (missing.status_code, missing.text.strip()) == (400, "must provide task name")
    not_found = await target.ahttp("GET", f"/v1/client/fs/logs/{unknown}", params=logs, token=False)
    assert (not_found.status_code, not_found.text.strip()) == (404, f'Unknown allocation "{unknown}"')
    not_found = await target.ahttp("GET", f"/v1/allocation/{unknown}", token=False)
    assert (not_found.status_code, not_found.text.strip()) == (404, "alloc not found")
    wrong = await target.ahttp("GET", f"/v1/client/fs/logs/{unknown}", params=logs, token=str(uuid.uuid4()))
    # (403 from the allocation's client agent, 500 from a server: nomad/client_fs_endpoint.go sends it uncoded)
    assert wrong.status_code in (403, 500) and wrong.text.strip() == "Permission denied"
    job = minimal_job(target.job_id("alloc-acl"), "echo hello")
    assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    alloc = await target.final_allocation(job["ID"])
    refused = await target.ahttp("GET", f"/v1/client/fs/logs/{alloc['ID']}", params=logs, token=False)
    assert refused.status_code in (403, 500) and refused.text.strip() == "Permission denied"
    # nomad/alloc_endpoint.go GetAlloc: an allocation the token may not read is NewErrUnknownAllocation, a plain
    # error (HTTP 500), not 403
    hidden = await target.ahttp("GET", f"/v1/allocation/{alloc['ID']}", token=False)
    assert (hidden.status_code, hidden.text.strip()) == (500, f'Unknown allocation "{alloc["ID"]}"')
    await target.purge(job["ID"])


async def test_a_registration_is_validated_before_the_tokens_capability_is_checked(nomad: Target, tmp_path):
    if nomad.is_emulator:
        reader = AclPolicy(capabilities=frozenset({"read-job", "list-jobs"}))
        async with open_emulator(tmp_path, "register-order", acl_token=MANAGEMENT_TOKEN,
                                 acl_policies={READER_TOKEN: reader}) as target:
            await _check_registration_order(target, READER_TOKEN)
    else:
        if not nomad.token or not await nomad.acl_enabled():
            pytest.skip("needs ACLs on and NOMAD_TOKEN (a management token) to register a job")
        if (await nomad.ahttp("GET", "/v1/jobs", token=False)).status_code != 403:
            pytest.skip("the agent's anonymous token may list jobs: it has a policy, maybe submit-job too")
        await _check_registration_order(nomad, False)  # (the anonymous token: Authenticate takes it)


async def _check_registration_order(target: Target, without_submit: str | bool) -> None:
    # The order Nomad answers a registration (and a plan) in: the agent's parsing (command/agent/job_endpoint.go
    # jobUpdate, jobPlan: 400), then Job.Register's Authenticate (a token Nomad does not know: Permission denied),
    # registrationsAreAllowed, the admission controllers, which validate the job (500), and only then the token's
    # submit-job (403), before EnforceIndex (nomad/job_endpoint.go Register/doRegister, Plan). The emulator checked
    # the capability first: an invalid job of a token without submit-job was 403, a job refused for the token.
    valid = minimal_job(target.job_id("register-order"), "exit 0")
    invalid = minimal_job(target.job_id("register-order-invalid"), Resources={"CPU": 100, "MemoryMB": 1})
    as_reader = {"token": without_submit}
    malformed = await target.ahttp("POST", "/v1/jobs", json={"NotAJob": {}}, **as_reader)
    assert (malformed.status_code, malformed.text.strip()) == (400, "Job must be specified")
    unknown = await target.ahttp("POST", "/v1/jobs", json={"Job": invalid}, token=str(uuid.uuid4()))
    assert (unknown.status_code, unknown.text.strip()) == (403, "Permission denied")
    refused = await target.ahttp("POST", "/v1/jobs", json={"Job": invalid}, **as_reader)
    assert refused.status_code == 500 and "MemoryMB" in refused.text, (refused.status_code, refused.text)
    refused = await target.ahttp("POST", "/v1/jobs", json={"Job": valid}, **as_reader)
    assert (refused.status_code, refused.text.strip()) == (403, "Permission denied")
    planned = await target.ahttp("POST", f"/v1/job/{invalid['ID']}/plan", json={"Job": invalid}, **as_reader)
    assert planned.status_code == 500 and "MemoryMB" in planned.text, (planned.status_code, planned.text)
    planned = await target.ahttp("POST", f"/v1/job/{valid['ID']}/plan", json={"Job": valid}, **as_reader)
    assert (planned.status_code, planned.text.strip()) == (403, "Permission denied")
    assert (await target.ahttp("POST", "/v1/jobs", json={"Job": valid})).status_code == 200  # (management)
    # the capability before EnforceIndex: the job is there, and the token is told it may not submit
    again = await target.ahttp("POST", "/v1/jobs", json={"Job": valid, "EnforceIndex": True, "JobModifyIndex": 0},
                               **as_reader)
    assert (again.status_code, again.text.strip()) == (403, "Permission denied")
    await target.purge(valid["ID"])


async def test_an_unchanged_spec_registered_with_another_token_is_a_new_version(nomad: Target, tmp_path):
    # Job.Register records the registering token's accessor in the job (nomad/job_endpoint.go doRegister:
    # NomadTokenID, with ACLs on), and Job.SpecChanged (nomad/structs/structs.go) compares it with the rest: the same
    # spec registered with another token is written again, a new Version and JobModifyIndex, where with the same
    # token it is not. The emulator kept no NomadTokenID, so another token's registration changed nothing. (hrwsi
    # registers with EnforceIndex: a job that is there is never registered again, whatever the token.)
    nomad.require_emulator("two tokens that may submit")
    submitter = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}))
    async with open_emulator(tmp_path, "token-version", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: submitter}) as target:
        job = minimal_job(target.job_id("token-version"), sleeping(60))
        path = f"/v1/job/{job['ID']}"
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
        first = (await target.ahttp("GET", path)).json()
        assert first["NomadTokenID"], first.get("NomadTokenID")
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
        same = (await target.ahttp("GET", path)).json()
        assert (same["Version"], same["JobModifyIndex"]) == (first["Version"], first["JobModifyIndex"])
        other = await target.ahttp("POST", "/v1/jobs", json={"Job": job}, token=SUBMITTER_TOKEN)
        assert other.status_code == 200, other.text
        again = (await target.ahttp("GET", path)).json()
        assert again["Version"] == first["Version"] + 1 and again["JobModifyIndex"] == other.json()["JobModifyIndex"]
        assert again["NomadTokenID"] not in ("", first["NomadTokenID"])
        await target.purge(job["ID"])


async def test_registrations_the_scheduler_configuration_rejects_are_refused_for_all_but_a_management_token(
        nomad: Target, tmp_path):
    # nomad/job_endpoint.go registrationsAreAllowed (RejectJobRegistration): Job.Register refuses before the token's
    # capability, Job.Scale and Job.Dispatch after it, all with errJobRegistrationDisabled (403, errCodeFromHandler);
    # Job.Plan does not ask, and Job.Scale refuses before it looks for the job (then 404 'job "ID" not found').
    nomad.require_emulator("a token with a policy, and the cluster's scheduler configuration changed")
    submitter = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}))
    reader = AclPolicy(capabilities=frozenset({"read-job"}))
    async with open_emulator(tmp_path, "reject", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={SUBMITTER_TOKEN: submitter, READER_TOKEN: reader}) as target:
        switch = "/v1/operator/scheduler/configuration"
        assert (await target.ahttp("PUT", switch, json={"RejectJobRegistration": True}, token=SUBMITTER_TOKEN)
                ).status_code == 403  # (operator:write)
        assert (await target.ahttp("PUT", switch, json={"RejectJobRegistration": True})).status_code == 200
        assert (await target.ahttp("GET", switch)).json()["SchedulerConfig"]["RejectJobRegistration"] is True
        job = minimal_job(target.job_id("rejected"), "exit 0")
        disabled = "Job registration, dispatch, and scale are disabled by the scheduler configuration"
        invalid = minimal_job(target.job_id("rejected-invalid"), Resources={"CPU": 100, "MemoryMB": 1})
        for token in (SUBMITTER_TOKEN, READER_TOKEN):
            refused = await target.ahttp("POST", "/v1/jobs", json={"Job": job}, token=token)
            assert (refused.status_code, refused.text) == (403, disabled)
            refused = await target.ahttp("POST", "/v1/jobs", json={"Job": invalid}, token=token)  # (before validation)
            assert (refused.status_code, refused.text) == (403, disabled)
        planned = await target.ahttp("POST", f"/v1/job/{job['ID']}/plan", json={"Job": job}, token=SUBMITTER_TOKEN)
        assert planned.status_code == 200
        scale = {"Target": {"Group": "g"}}
        refused = await target.ahttp("POST", f"/v1/job/{job['ID']}/scale", json=scale, token=SUBMITTER_TOKEN)
        assert (refused.status_code, refused.text) == (403, disabled)
        refused = await target.ahttp("POST", f"/v1/job/{job['ID']}/scale", json=scale, token=READER_TOKEN)
        assert (refused.status_code, refused.text) == (403, "Permission denied")
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200  # (management)
        await target.purge(job["ID"])
        assert (await target.ahttp("PUT", switch, json={"RejectJobRegistration": False})).status_code == 200
        absent = await target.ahttp("POST", f"/v1/job/{job['ID']}-absent/scale", json=scale, token=SUBMITTER_TOKEN)
        assert (absent.status_code, absent.text) == (404, f'job "{job["ID"]}-absent" not found')


async def _check_acl(target: Target) -> None:
    anonymous = await target.ahttp("GET", "/v1/jobs", token=False)
    assert anonymous.status_code == 403 and anonymous.headers["Content-Type"].startswith("text/plain")
    wrong = await target.ahttp("GET", "/v1/jobs", token=str(uuid.uuid4()))
    # An unknown token is "Permission denied" on the RPC endpoints (nomad/job_endpoint.go List: `if authErr !=
    # nil`), not "ACL token not found" as the emulator said, and so is one that is not a UUID.
    assert (wrong.status_code, wrong.text.strip()) == (403, "Permission denied")
    for path in ("/v1/job/never-registered/allocations", "/v1/nodes", f"/v1/allocation/{uuid.uuid4()}"):
        refused = await target.ahttp("GET", path, token=str(uuid.uuid4()))
        assert (refused.status_code, refused.text.strip()) == (403, "Permission denied"), path
    not_a_uuid = await target.ahttp("GET", "/v1/jobs", token="not-a-uuid")
    assert (not_a_uuid.status_code, not_a_uuid.text.strip()) == (403, "Permission denied")
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




# -- Nomad's rules the backend must live with (each emulated, with its Nomad source cited) -------------
def task_events(alloc: dict) -> list[dict]:
    (state,) = alloc["TaskStates"].values()
    return state["Events"]


async def test_log_storage_must_be_less_than_the_disk(nomad: Target):
    # nomad/structs/structs.go LogConfig.Validate: MaxFiles x MaxFileSizeMB < EphemeralDisk.SizeMB.
    job = minimal_job(nomad.job_id("small-disk"))
    job["TaskGroups"][0]["EphemeralDisk"] = {"SizeMB": 100}  # the default log config is 10 x 10 MB
    refused = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert refused.status_code == 500
    assert "log storage (100 MB) must be less than requested disk capacity (100 MB)" in refused.text
    job["TaskGroups"][0]["EphemeralDisk"] = {"SizeMB": 101}
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    await nomad.purge(job["ID"])


async def test_behind_a_client_agent_rpc_errors_come_wrapped(nomad: Target, tmp_path):
    nomad.require_emulator("answer as a client agent or a follower server would")
    async with open_emulator(tmp_path, "forwarded", forwarded=True) as target:
        # helper/pool/pool.go ConnPool.RPC: fmt.Errorf("rpc error: %w", err); still HTTP 500.
        invalid = minimal_job(target.job_id("invalid"), Resources={"CPU": 100, "MemoryMB": 1})
        response = await target.ahttp("POST", "/v1/jobs", json={"Job": invalid})
        assert response.status_code == 500 and response.text.startswith("rpc error: 1 error occurred:")
        job = minimal_job(target.job_id("twice"))
        await target.ahttp("POST", "/v1/jobs", json={"Job": job})
        again = await target.ahttp("POST", "/v1/jobs", json={"Job": job, "EnforceIndex": True, "JobModifyIndex": 0})
        assert again.status_code == 500
        assert again.text == "rpc error: Enforcing job modify index 0: job already exists"


async def test_a_task_config_nomad_cannot_parse_fails_validation(nomad: Target):
    # client/allocrunner/taskrunner/task_runner.go: TaskFailedValidation ("Failed Validation"), with
    # Details["validation_error"] (structs.go SetValidationError).
    job = minimal_job(nomad.job_id("no-command"))
    job["TaskGroups"][0]["Tasks"][0]["Config"] = {"args": ["-c", "exit 0"]}
    job["TaskGroups"][0]["RestartPolicy"] = {"Attempts": 0, "Mode": "fail"}
    job["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    alloc = await nomad.final_allocation(job["ID"])
    assert alloc["ClientStatus"] == "failed"
    failed = next(e for e in task_events(alloc) if e["Type"] == "Failed Validation")
    assert "failed to parse config" in failed["Details"]["validation_error"]
    await nomad.purge(job["ID"])


async def test_task_events_carry_their_values_in_details(nomad: Target):
    # structs.go: ExitCode, Signal, DriverError... are deprecated, "use Details[...] to access this".
    job = minimal_job(nomad.job_id("details"), "exit 3")
    job["TaskGroups"][0]["RestartPolicy"] = {"Attempts": 0, "Mode": "fail"}
    job["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    alloc = await nomad.final_allocation(job["ID"])
    terminated = next(e for e in task_events(alloc) if e["Type"] == "Terminated")
    assert terminated["Details"]["exit_code"] == "3" and terminated["Details"]["signal"] == "0"
    not_restarting = next(e for e in task_events(alloc) if e["Type"] == "Not Restarting")
    assert not_restarting["Details"]["fails_task"] == "true"
    await nomad.purge(job["ID"])


async def test_a_setting_nomad_ignores_comes_back_as_a_registration_warning(nomad: Target):
    # nomad/job_endpoint_hooks.go (memory_max while the scheduler configuration does not oversubscribe memory, its
    # default), merged by helper/warning.go: "1 warning:\n\n* ...".
    job = minimal_job(nomad.job_id("warned"), Resources={"CPU": 100, "MemoryMB": 64, "MemoryMaxMB": 128})
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert response.status_code == 200
    warnings = response.json()["Warnings"]
    assert warnings.startswith("1 warning:")
    assert 'Memory oversubscription is not enabled; Task "g.t" memory_max value will be ignored' in warnings
    plain = await nomad.ahttp("POST", "/v1/jobs", json={"Job": minimal_job(nomad.job_id("not-warned"))})
    assert plain.json()["Warnings"] == ""
    for job_id in (job["ID"], nomad.job_id("not-warned")):
        await nomad.purge(job_id)


async def test_the_disconnect_settings_nomad_replaced_are_dropped_without_a_warning_nor_a_refusal(nomad: Target):
    # max_client_disconnect, stop_after_client_disconnect and prevent_reschedule_on_lost, deprecated in 1.8 for the
    # disconnect block, are ignored since 1.10 (api/tasks.go) and still taken in 2.0: the agent does not copy them
    # into the job it registers (command/agent/job_endpoint.go ApiTgToStructsTG copies Disconnect alone), so they
    # reach neither TaskGroup.Warnings (nomad/structs/structs.go) nor the scheduler. The emulator kept them, warned of
    # PreventRescheduleOnLost and took MaxClientDisconnect for Disconnect.LostAfter. hrwsi sends the block only.
    job = minimal_job(nomad.job_id("deprecated-disconnect"))
    job["TaskGroups"][0].update(MaxClientDisconnect=3600 * 10**9, StopAfterClientDisconnect=60 * 10**9,
                                PreventRescheduleOnLost=True)
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert response.status_code == 200, response.text
    assert response.json()["Warnings"] == ""
    (group,) = (await nomad.ahttp("GET", f"/v1/job/{job['ID']}")).json()["TaskGroups"]
    assert (group["MaxClientDisconnect"], group["StopAfterClientDisconnect"], group["PreventRescheduleOnLost"],
            group["Disconnect"]) == (None, None, False, None), group
    # the block hrwsi sends (job_spec.build_job) is kept, with Nomad's defaults (api/tasks.go Canonicalize)
    block = minimal_job(nomad.job_id("disconnect-block"))
    block["TaskGroups"][0]["Disconnect"] = {"StopOnClientAfter": 60 * 10**9, "Replace": False}
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": block})).json()["Warnings"] == ""
    (group,) = (await nomad.ahttp("GET", f"/v1/job/{block['ID']}")).json()["TaskGroups"]
    assert group["Disconnect"] == {"LostAfter": 0, "StopOnClientAfter": 60 * 10**9, "Replace": False,
                                   "Reconcile": "best_score"}, group["Disconnect"]
    for job_id in (job["ID"], block["ID"]):
        await nomad.purge(job_id)


async def test_a_blocked_evaluation_waits_for_room_until_a_later_evaluation_of_its_job_succeeds(nomad: Target):
    # A job that fits nowhere is not failed: its evaluation completes with FailedTGAllocs and BlockedEval, the
    # blocked evaluation it made (TriggeredBy queued-allocs, PreviousEval, "created to place remaining allocations":
    # nomad/structs/eval.go CreateBlockedEval, scheduler/generic_sched.go) waits, and the job stays pending. It is
    # canceled when a later evaluation of the job completes without failed placements, the stop's here, saying which
    # (nomad/state/state_store.go nestedUpsertEval: `evaluation "<ID>" successful`). The emulator canceled it, and
    # the job's pending evaluations, at the stop itself, in words of its own.
    job = minimal_job(nomad.job_id("never-fits"), "exit 0", Resources={"CPU": 100, "MemoryMB": 10**8})
    job["TaskGroups"][0]["Constraints"] = [{"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": nomad.node}]
    registered = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert registered.status_code == 200, registered.text
    path = f"/v1/job/{nomad.path_id(job['ID'])}"

    async def evaluations(until) -> dict[str, dict]:
        while True:
            found = {e["ID"]: e for e in (await nomad.ahttp("GET", f"{path}/evaluations")).json() or []}
            if until(found):
                return found
            await asyncio.sleep(0.05)

    def blocked_of(found: dict[str, dict]) -> list[dict]:
        return [e for e in found.values() if e["Status"] == "blocked"]
    found = await asyncio.wait_for(evaluations(blocked_of), GUARD_S)
    first = found[registered.json()["EvalID"]]
    (blocked,) = blocked_of(found)
    assert (first["Status"], first["BlockedEval"]) == ("complete", blocked["ID"]), first
    assert first["FailedTGAllocs"]["g"]["DimensionExhausted"] or first["FailedTGAllocs"]["g"]["NodesExhausted"], first
    assert (blocked["TriggeredBy"], blocked["PreviousEval"], blocked["StatusDescription"]) == \
        ("queued-allocs", first["ID"], "created to place remaining allocations"), blocked
    assert blocked["FailedTGAllocs"]["g"], blocked
    assert (await nomad.ahttp("GET", path)).json()["Status"] == "pending"
    # Evaluated again (an unchanged spec registered again forces an evaluation) and still no room: a new blocked
    # evaluation, the older one canceled as a duplicate (nomad/blocked_evals.go processBlockJobDuplicate keeps the
    # newer; nomad/leader.go reapDupBlockedEvaluations cancels the other). The emulator kept the older one.
    again = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert again.status_code == 200 and again.json()["EvalID"], again.text
    found = await asyncio.wait_for(evaluations(
        lambda f: f.get(again.json()["EvalID"], {}).get("BlockedEval") and f[blocked["ID"]]["Status"] != "blocked"),
        GUARD_S)
    assert (found[blocked["ID"]]["Status"], found[blocked["ID"]]["StatusDescription"]) == \
        ("canceled", f'existing blocked evaluation exists for job "{job["ID"]}"'), found[blocked["ID"]]
    blocked = found[found[again.json()["EvalID"]]["BlockedEval"]]
    assert (blocked["Status"], blocked["PreviousEval"]) == ("blocked", again.json()["EvalID"]), blocked
    stopped = await nomad.ahttp("DELETE", path)
    assert stopped.status_code == 200 and stopped.json()["EvalID"], stopped.text
    found = await asyncio.wait_for(evaluations(lambda f: f[blocked["ID"]]["Status"] != "blocked"), GUARD_S)
    assert (found[blocked["ID"]]["Status"], found[blocked["ID"]]["StatusDescription"]) == \
        ("canceled", f'evaluation "{stopped.json()["EvalID"]}" successful'), found[blocked["ID"]]
    await nomad.purge(job["ID"])


async def test_a_job_runs_only_in_its_node_pool(nomad: Target, tmp_path):
    nomad.require_emulator("nodes in two node pools")
    nodes = [EmulatedNode("pool-node-gpu", node_pool="gpu")]
    async with open_emulator(tmp_path, "pools", nodes) as target:
        # A job without NodePool goes to "default" (nomad/job_endpoint_hook_node_pool_ce.go):
        # the only node is in "gpu", so it waits.
        job = minimal_job(target.job_id("default-pool"))
        await target.ahttp("POST", "/v1/jobs", json={"Job": job})

        async def blocked() -> dict:
            while True:
                for evaluation in (await target.ahttp("GET", f"/v1/job/{job['ID']}/evaluations")).json():
                    if evaluation.get("FailedTGAllocs"):
                        return evaluation["FailedTGAllocs"]["g"]
                await asyncio.sleep(0.05)
        metric = await asyncio.wait_for(blocked(), GUARD_S)
        assert metric["NodesInPool"] == 0 and metric["NodesEvaluated"] == 0
        for pool in ("gpu", "all"):
            placed = minimal_job(target.job_id(f"pool-{pool}"))
            placed["NodePool"] = pool
            await target.ahttp("POST", "/v1/jobs", json={"Job": placed})
            assert (await target.final_allocation(placed["ID"]))["ClientStatus"] == "complete"


async def test_a_lost_allocation_is_replaced_unless_its_group_says_disconnect_replace_false(nomad: Target, tmp_path):
    nomad.require_emulator("make a node go down")
    nodes = [EmulatedNode(f"lost-{i}", node_class="lost") for i in range(3)]  # one stays up whatever goes down
    async with open_emulator(tmp_path, "lost", nodes) as target:
        jobs = {}
        for replace in (True, False):
            job = minimal_job(target.job_id(f"replace-{replace}"), sleeping(600))
            group = job["TaskGroups"][0]
            group["Constraints"] = [{"LTarget": "${node.class}", "Operand": "=", "RTarget": "lost"}]
            group["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}  # no say over lost allocations
            if not replace:
                group["Disconnect"] = {"Replace": False}
            await target.ahttp("POST", "/v1/jobs", json={"Job": job})
            jobs[replace] = job["ID"]

        async def allocs(job_id: str, wanted) -> list[dict]:
            while not wanted(found := (await target.ahttp("GET", f"/v1/job/{job_id}/allocations")).json()):
                await asyncio.sleep(0.05)
            return found
        first = {r: (await asyncio.wait_for(allocs(j, lambda a: any(x["ClientStatus"] == "running" for x in a)),
                                            GUARD_S))[0] for r, j in jobs.items()}
        for node in {a["NodeName"] for a in first.values()}:
            target.emulator.node_down(node)
        # structs.go TaskGroup.Replace; scheduler/reconciler/filters.go: replaced when lost, left unknown if not.
        replaced = await asyncio.wait_for(allocs(jobs[True], lambda a: len(a) == 2), GUARD_S)
        assert sorted(a["ClientStatus"] == "lost" for a in replaced) == [False, True]
        kept = (await target.ahttp("GET", f"/v1/job/{jobs[False]}/allocations")).json()
        assert [a["ClientStatus"] for a in kept] == ["unknown"]


async def test_a_node_away_with_a_lost_after_allocation_is_disconnected_its_others_lost_and_replaced_after_stop_after(
        nomad: Target, tmp_path):
    # nomad/heartbeat.go disconnectState: a node that misses its heartbeats with an allocation whose group sets
    # disconnect.lost_after is "disconnected", not "down"; scheduler/reconciler/filters.go then marks its running
    # allocations of such groups unknown (not replaced until lost_after passes), whatever their Replace, and
    # those of groups without lost_after lost, Replace false or not (hrwsi's), and replaced (Replace keeps only a
    # running allocation of a node down), with stop_on_client_after once its client must have stopped it
    # (filters.go delayByStopAfter, structs/alloc.go WaitClientStop: stop_after + max(kill timeouts, 5 s)). The
    # emulator said "down", lost the first (Replace true) and replaced it at once, left hrwsi's unknown, and never
    # replaced a lost allocation of a group with Replace false.
    nomad.require_emulator("make a node go down")
    nodes = [EmulatedNode("away-1", node_class="away"), EmulatedNode("away-2", node_class="away")]
    async with open_emulator(tmp_path, "away", nodes) as target:
        pinned = [{"LTarget": "${node.class}", "Operand": "=", "RTarget": "away"}]
        target.emulator.set_eligibility("away-2", False)  # (both placed on away-1; away-2 then takes a replacement)
        waits = minimal_job(target.job_id("lost-after"), sleeping(600))
        waits["TaskGroups"][0].update(Constraints=pinned, Disconnect={"LostAfter": 3600 * 10**9})
        hrwsi_like = minimal_job(target.job_id("stop-after"), sleeping(600))
        hrwsi_like["TaskGroups"][0].update(Constraints=pinned, Disconnect={"Replace": False,
                                                                            "StopOnClientAfter": 10**9})
        for job in (waits, hrwsi_like):
            assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
            await _running(target, job)
        target.emulator.node_down("away-1", processes_survive=True)
        node = (await target.ahttp("GET", f"/v1/node/{target.emulator.node_id('away-1')}")).json()
        assert node["Status"] == "disconnected", node["Status"]
        target.emulator.set_eligibility("away-2", True)

        async def statuses(job: dict) -> list[str]:
            return [a["ClientStatus"] for a in (await target.ahttp("GET", f"/v1/job/{job['ID']}/allocations")).json()]
        await asyncio.sleep(0.3)  # (time for an evaluation to place a replacement, if one were wrongly asked for)
        assert await statuses(waits) == ["unknown"]
        assert await statuses(hrwsi_like) == ["lost"]
        lost_at = asyncio.get_running_loop().time()
        path = f"/v1/job/{hrwsi_like['ID']}/allocations"
        while len(allocations := (await target.ahttp("GET", path)).json()) < 2:
            assert asyncio.get_running_loop().time() - lost_at < GUARD_S
            await asyncio.sleep(0.1)
        assert asyncio.get_running_loop().time() - lost_at >= 1 + 5 - 0.5  # (not before its client stopped it)
        lost, replacement = sorted(allocations, key=lambda a: a["CreateIndex"])
        assert replacement["PreviousAllocation"] == lost["ID"] and replacement["Name"] == lost["Name"]
        assert replacement["NodeName"] == "away-2"
        assert await statuses(waits) == ["unknown"]  # (not replaced before its lost_after)
        target.emulator.node_up("away-1")



async def test_an_unknown_allocation_is_lost_and_replaced_once_its_lost_after_passes_with_its_node_still_away(
        nomad: Target, tmp_path):
    # scheduler/reconciler/reconcile_cluster.go createTimeoutLaterEvals: an allocation going unknown on a
    # disconnected node gets a follow-up evaluation (TriggeredBy max-disconnect-timeout) at the end of its
    # lost_after; filters.go classifies it "expiring" then (nomad/structs/alloc.go Expired), and the reconciler
    # stops it lost and replaces it as any lost one, whatever Disconnect.Replace says. The emulator left it
    # unknown for ever.
    nomad.require_emulator("make a node go away")
    nodes = [EmulatedNode("expiry-1", node_class="expiry"), EmulatedNode("expiry-2", node_class="expiry")]
    async with open_emulator(tmp_path, "expiry", nodes) as target:
        target.emulator.set_eligibility("expiry-2", False)  # (placed on expiry-1; expiry-2 then takes the replacement)
        job = minimal_job(target.job_id("expires"), sleeping(600))
        job["TaskGroups"][0].update(Constraints=[{"LTarget": "${node.class}", "Operand": "=", "RTarget": "expiry"}],
                                    ReschedulePolicy={"Attempts": 0, "Unlimited": False},
                                    Disconnect={"LostAfter": 1_500_000_000, "Replace": False})
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
        await _running(target, job)
        target.emulator.node_down("expiry-1", processes_survive=True)
        target.emulator.set_eligibility("expiry-2", True)
        path = f"/v1/job/{job['ID']}/allocations"
        (unknown,) = (await target.ahttp("GET", path)).json()
        assert unknown["ClientStatus"] == "unknown" and unknown["FollowupEvalID"]
        followup = (await target.ahttp("GET", f"/v1/evaluation/{unknown['FollowupEvalID']}")).json()
        assert followup["TriggeredBy"] == "max-disconnect-timeout" and followup["WaitUntil"] != "0001-01-01T00:00:00Z"
        went_unknown = asyncio.get_running_loop().time()
        while len(allocations := (await target.ahttp("GET", path)).json()) < 2:
            assert asyncio.get_running_loop().time() - went_unknown < GUARD_S
            await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() - went_unknown >= 1.5 - 0.3  # (not before its lost_after)
        expired, replacement = sorted(allocations, key=lambda a: a["CreateIndex"])
        assert (expired["ClientStatus"], expired["DesiredStatus"]) == ("lost", "stop")
        assert replacement["PreviousAllocation"] == expired["ID"] and replacement["NodeName"] == "expiry-2"
        target.emulator.node_up("expiry-1")


async def test_an_unknown_allocation_whose_client_is_back_within_its_lost_after_runs_on_and_is_not_replaced(
        nomad: Target, tmp_path):
    # client/client.go updateAlloc: an unknown allocation the servers did not stop is reconnected (allocrunner
    # Reconnect sends its real state: running); nomad/state/state_store.go cancelFollowupEvalsForReconnect; the
    # follow-up evaluation then finds it running (filters.go: Expired needs the unknown status).
    nomad.require_emulator("make a node go away")
    async with open_emulator(tmp_path, "back-in-window", [EmulatedNode("window-1")]) as target:
        job = minimal_job(target.job_id("back-in-window"), sleeping(600))
        job["TaskGroups"][0].update(ReschedulePolicy={"Attempts": 0, "Unlimited": False},
                                    Disconnect={"LostAfter": 1_000_000_000})
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
        await _running(target, job)
        target.emulator.node_down("window-1", processes_survive=True)
        path = f"/v1/job/{job['ID']}/allocations"
        assert [a["ClientStatus"] for a in (await target.ahttp("GET", path)).json()] == ["unknown"]
        target.emulator.node_up("window-1")
        assert [a["ClientStatus"] for a in (await target.ahttp("GET", path)).json()] == ["running"]
        await asyncio.sleep(1.5)  # (past the lost_after: its follow-up evaluation has run)
        assert [a["ClientStatus"] for a in (await target.ahttp("GET", path)).json()] == ["running"]


async def test_a_lost_allocation_whose_client_comes_back_with_it_running_is_stopped_and_ends_complete_not_running(
        nomad: Target, tmp_path):
    # A lost allocation is server-terminal (nomad/structs/plan.go AppendStoppedAlloc: DesiredStatus stop, client
    # status lost appended to its AllocStates), so a client back with it still running does not reconnect it
    # (client/client.go updateAlloc: only an unknown one that is not server-terminal) nor does the reconciler
    # (filters.go: server-terminal and not reconnecting is ignored: not replaced again). The client stops its
    # tasks and reports them dead: the client status is the client's (nomad/state/state_store.go
    # nestedUpdateAllocFromClient), complete. The emulator first said it running again (Disconnect.Replace false).
    nomad.require_emulator("make a node go away")
    nodes = [EmulatedNode("returns-1"), EmulatedNode("returns-2")]
    async with open_emulator(tmp_path, "returns", nodes) as target:
        target.emulator.set_eligibility("returns-2", False)
        job = minimal_job(target.job_id("returns"), sleeping(600))
        job["TaskGroups"][0].update(ReschedulePolicy={"Attempts": 0, "Unlimited": False},
                                    Disconnect={"Replace": False})
        # (another group's lost_after makes the node "disconnected", where this group's allocation is lost at once)
        waits = minimal_job(target.job_id("returns-waits"), sleeping(600))
        waits["TaskGroups"][0].update(Disconnect={"LostAfter": 3600 * 10**9})
        for each in (job, waits):
            assert (await target.ahttp("POST", "/v1/jobs", json={"Job": each})).status_code == 200
            await _running(target, each)
        target.emulator.node_down("returns-1", processes_survive=True)
        path = f"/v1/job/{job['ID']}/allocations"
        (lost,) = [a for a in (await target.ahttp("GET", path)).json() if a["NodeName"] == "returns-1"]
        assert (lost["ClientStatus"], lost["DesiredStatus"]) == ("lost", "stop")
        index = int((await target.ahttp("GET", path)).headers["X-Nomad-Index"])
        target.emulator.node_up("returns-1")
        seen = []
        while True:
            answer = await asyncio.wait_for(target.ahttp("GET", path, params={"index": str(index), "wait": "5s"}),
                                            GUARD_S)
            index = int(answer.headers["X-Nomad-Index"])
            now = next(a for a in answer.json() if a["ID"] == lost["ID"])
            seen.append(now["ClientStatus"])
            if now["ClientStatus"] not in ("lost", "running"):
                break
        assert "running" not in seen, seen
        assert (now["ClientStatus"], now["DesiredStatus"]) == ("complete", "stop"), seen

async def test_allocations_whose_processes_died_with_their_node_are_the_clients_when_it_is_back_after_a_reboot(
        nomad: Target, tmp_path):
    # A node back after a reboot (its data dir kept: the same node ID) restores its allocations and can reattach
    # to none (client/allocrunner/taskrunner/task_runner.go Restore: Failed Restoring Task, waitOnServers). One
    # left unknown (Disconnect.Replace false on a node down, or within lost_after) and still wanted runs again
    # from the start in the same allocation, not replaced; one the servers marked lost (server-terminal, stopped:
    # nomad/structs/plan.go AppendStoppedAlloc) is killed as it waits and ends complete, the client's status
    # (nomad/state/state_store.go nestedUpdateAllocFromClient). The emulator said the first lost, a status no
    # client sets (nothing under client/ sets AllocClientStatusLost), and left the second lost.
    nomad.require_emulator("reboot a node")
    async with open_emulator(tmp_path, "reboot", [EmulatedNode("reboot-1")]) as target:
        async def allocation(job: dict, alloc_id: str, wanted: str) -> dict:
            path = f"/v1/job/{job['ID']}/allocations"
            while (found := next(a for a in (await target.ahttp("GET", path)).json() if a["ID"] == alloc_id)
                   )["ClientStatus"] != wanted:
                await asyncio.sleep(0.05)
            return found

        def started_again(alloc: dict) -> bool:
            events = [e["Type"] for e in alloc["TaskStates"]["t"]["Events"]]
            return events.count("Started") == 2 and events.index("Failed Restoring Task") > events.index("Started")

        kept = minimal_job(target.job_id("reboot-kept"), sleeping(600))  # hrwsi's: Replace false, no rescheduling
        kept["TaskGroups"][0].update(ReschedulePolicy={"Attempts": 0, "Unlimited": False},
                                     Disconnect={"Replace": False})
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": kept})).status_code == 200
        await _running(target, kept)
        target.emulator.node_down("reboot-1")  # (a node "down": the processes die with the machine)
        (unknown,) = (await target.ahttp("GET", f"/v1/job/{kept['ID']}/allocations")).json()
        assert (unknown["ClientStatus"], unknown["DesiredStatus"]) == ("unknown", "run")
        target.emulator.node_up("reboot-1")
        again = await asyncio.wait_for(allocation(kept, unknown["ID"], "running"), GUARD_S)
        assert again["DesiredStatus"] == "run" and started_again(again), again["TaskStates"]
        assert len((await target.ahttp("GET", f"/v1/job/{kept['ID']}/allocations")).json()) == 1  # not replaced
        await target.purge(kept["ID"])

        # Another job's lost_after makes the node "disconnected" (nomad/heartbeat.go disconnectState): hrwsi's
        # allocation is lost there, stopped (scheduler/reconciler/filters.go: no lost_after), the other unknown.
        waits = minimal_job(target.job_id("reboot-waits"), sleeping(600))
        waits["TaskGroups"][0]["Disconnect"] = {"LostAfter": 3600 * 10**9}
        lost_job = minimal_job(target.job_id("reboot-lost"), sleeping(600))
        lost_job["TaskGroups"][0].update(ReschedulePolicy={"Attempts": 0, "Unlimited": False},
                                         Disconnect={"Replace": False})
        for job in (waits, lost_job):
            assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
            await _running(target, job)
        target.emulator.node_down("reboot-1")
        (lost,) = (await target.ahttp("GET", f"/v1/job/{lost_job['ID']}/allocations")).json()
        assert (lost["ClientStatus"], lost["DesiredStatus"]) == ("lost", "stop")
        (away,) = (await target.ahttp("GET", f"/v1/job/{waits['ID']}/allocations")).json()
        assert away["ClientStatus"] == "unknown"
        target.emulator.node_up("reboot-1")
        ended = await asyncio.wait_for(allocation(lost_job, lost["ID"], "complete"), GUARD_S)
        assert ended["DesiredStatus"] == "stop" and ended["TaskStates"]["t"]["State"] == "dead"
        assert started_again(await asyncio.wait_for(allocation(waits, away["ID"], "running"), GUARD_S))
        for job in (waits, lost_job):
            await target.purge(job["ID"])


async def test_a_group_may_not_say_both_when_its_node_is_lost_and_when_its_client_stops_it(nomad: Target):
    # nomad/structs/group.go DisconnectStrategy.Validate: stop_on_client_after and lost_after exclude each other
    job = minimal_job(nomad.job_id("stop-and-lost"))
    job["TaskGroups"][0]["Disconnect"] = {"Replace": False, "StopOnClientAfter": 60_000_000_000,
                                          "LostAfter": 60_000_000_000}
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert response.status_code == 500
    assert "Disconnect cannot be configured with both lost_after and stop_after" in response.text
    negative = minimal_job(nomad.job_id("stop-negative"))
    negative["TaskGroups"][0]["Disconnect"] = {"StopOnClientAfter": -1}
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": negative})
    assert response.status_code == 500 and "stop_after cannot be a negative duration" in response.text


async def test_fs_logs_need_the_read_logs_capability(nomad: Target, tmp_path):
    nomad.require_emulator("ACL tokens with a policy")
    submitter = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs"}), node="read")
    reader = AclPolicy(capabilities=frozenset({"submit-job", "read-job", "list-jobs", "read-logs"}), node="read")
    tokens = {SUBMITTER_TOKEN: submitter, READER_TOKEN: reader}
    async with open_emulator(tmp_path, "logs-acl", acl_token=MANAGEMENT_TOKEN, acl_policies=tokens) as target:
        job = minimal_job(target.job_id("logged"), "echo hello")
        await target.ahttp("POST", "/v1/jobs", json={"Job": job}, token=SUBMITTER_TOKEN)
        alloc = await target.final_allocation(job["ID"])
        path, params = f"/v1/client/fs/logs/{alloc['ID']}", {"task": "t", "type": "stdout", "plain": "true"}
        # client/fs_endpoint.go: logs need read-fs or read-logs in the allocation's namespace.
        refused = await target.ahttp("GET", path, params=params, token=SUBMITTER_TOKEN)
        assert refused.status_code == 403
        shown = await target.ahttp("GET", path, params=params, token=READER_TOKEN)
        assert shown.status_code == 200 and shown.text == "hello\n"


async def test_the_logs_of_an_allocation_whose_node_is_away_are_not_served_until_it_is_back(nomad: Target, tmp_path):
    # The logs come from the allocation's client: with its node away (no connection to any server), Nomad answers
    # 404 "No path to node" (nomad/client_fs_endpoint.go logs, serverWithNodeConn; command/agent/fs_endpoint.go
    # maps ErrNoNodeConn to 404). The emulator served them from its disk, whatever the node's status.
    nomad.require_emulator("make a node go away")
    async with open_emulator(tmp_path, "logs-away", [EmulatedNode("logs-away-1")]) as target:
        job = minimal_job(target.job_id("logged-away"), "echo hello")
        assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
        alloc = await target.final_allocation(job["ID"])
        path, params = f"/v1/client/fs/logs/{alloc['ID']}", {"task": "t", "type": "stdout", "plain": "true"}
        target.emulator.node_down("logs-away-1")
        away = await target.ahttp("GET", path, params=params)
        assert (away.status_code, away.text.strip()) == (404, "No path to node"), away.text
        target.emulator.node_up("logs-away-1")
        shown = await target.ahttp("GET", path, params=params)
        assert shown.status_code == 200 and shown.text == "hello\n"
        await target.purge(job["ID"])


async def _run_template_job(target: Target, name: str, variable: str) -> dict:
    job = minimal_job(target.job_id(name), 'printf "%s" "$SECRET_VALUE" > "$NOMAD_ALLOC_DIR/seen"')
    job["TaskGroups"][0]["RestartPolicy"] = {"Attempts": 0, "Mode": "fail"}
    job["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
    job["TaskGroups"][0]["Tasks"][0]["Templates"] = [secrets_template(variable)]
    assert (await target.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    return job


async def test_a_workload_reads_only_the_variables_its_identity_allows(nomad: Target, tmp_path):
    nomad.require_emulator("ACL on, and a namespace-wide workload policy")
    async with open_emulator(tmp_path, "variables", acl_token=MANAGEMENT_TOKEN,
                             workload_variable_paths=("hrwsi/shared/*",)) as target:
        for path in ("nomad/jobs", "nomad/jobs/other-job", "hrwsi/shared/routines", "hrwsi/private"):
            put = await target.ahttp("PUT", f"/v1/var/{path}", json={"Path": path, "Items": {"SECRET_VALUE": path}})
            assert put.status_code == 200, put.text
        # acl/acl.go: implicitly nomad/jobs and nomad/jobs/<own job>[/...]; else only what a policy grants.
        for name, path, readable in (("implicit", "nomad/jobs", True), ("granted", "hrwsi/shared/routines", True),
                                     ("other-job", "nomad/jobs/other-job", False), ("private", "hrwsi/private", False)):
            job = await _run_template_job(target, name, path)
            alloc = await target.final_allocation(job["ID"])
            if readable:
                assert alloc["ClientStatus"] == "complete", task_events(alloc)
            else:  # template.go: a template error kills the task, FailsTask, "Template failed: ..."
                assert alloc["ClientStatus"] == "failed"
                killing = next(e for e in task_events(alloc) if e["Type"] == "Killing")
                assert killing["Details"]["fails_task"] == "true"
                assert killing["DisplayMessage"].startswith("Template failed: ") and "403" in killing["DisplayMessage"]


async def test_a_missing_variable_makes_the_task_wait(nomad: Target, tmp_path):
    nomad.require_emulator("a template's Variable")
    async with open_emulator(tmp_path, "missing-variable") as target:
        job = await _run_template_job(target, "waits", "nomad/jobs/not-yet")

        async def missing() -> dict:
            while True:
                for stub in (await target.ahttp("GET", f"/v1/job/{job['ID']}/allocations")).json():
                    events = (stub.get("TaskStates") or {}).get("t", {}).get("Events") or []
                    if any(e["Type"] == "Template" and e["DisplayMessage"].startswith("Missing: ") for e in events):
                        return stub
                await asyncio.sleep(0.05)
        # template.go: a missing dependency is an event "Missing: nomad.var.block(...)", not a failure.
        stub = await asyncio.wait_for(missing(), GUARD_S)
        assert stub["ClientStatus"] == "pending"
        await target.ahttp("PUT", "/v1/var/nomad/jobs/not-yet", json={"Items": {"SECRET_VALUE": "now"}})
        assert (await target.final_allocation(job["ID"]))["ClientStatus"] == "complete"


async def test_docker_host_paths_need_volumes_enabled_on_the_client(nomad: Target, tmp_path):
    nomad.require_emulator("a docker plugin with and without volumes enabled")
    nodes = [EmulatedNode("docker-closed"), EmulatedNode("docker-open", docker_volumes=True)]
    async with open_emulator(tmp_path, "docker", nodes) as target:
        listed = {n["Name"]: n for n in (await target.ahttp("GET", "/v1/nodes")).json()}
        attributes = {name: (await target.ahttp("GET", f"/v1/node/{n['ID']}")).json()["Attributes"]
                      for name, n in listed.items()}
        # drivers/docker/fingerprint.go: the attribute exists only where volumes are enabled.
        assert attributes["docker-open"]["driver.docker.volumes.enabled"] == "true"
        assert "driver.docker.volumes.enabled" not in attributes["docker-closed"]
        for node in ("docker-closed", "docker-open"):
            job = minimal_job(target.job_id(node))
            task = job["TaskGroups"][0]["Tasks"][0]
            task.update({"Driver": "docker", "Config": {"image": "busybox", "command": "/bin/sh", "args": ["-c", "true"],
                                                        "volumes": [f"{tmp_path}:{tmp_path}"]}})
            job["TaskGroups"][0]["Constraints"] = [{"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": node}]
            job["TaskGroups"][0]["RestartPolicy"] = {"Attempts": 0, "Mode": "fail"}
            job["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
            await target.ahttp("POST", "/v1/jobs", json={"Job": job})
            alloc = await target.final_allocation(job["ID"])
            if node == "docker-closed":  # drivers/docker/driver.go
                failure = next(e for e in task_events(alloc) if e["Type"] == "Driver Failure")
                assert failure["Details"]["driver_error"].startswith("volumes are not enabled; cannot mount host path")
            else:
                assert alloc["ClientStatus"] == "complete"


async def test_exec_sees_only_its_chroot_and_mounted_host_volumes(nomad: Target, tmp_path):
    nomad.require_emulator("a client's chroot_env and host volumes")
    data = tmp_path / "data"
    data.mkdir()
    (data / "tool.sh").write_text("#!/bin/sh\nexit 0\n")
    (data / "tool.sh").chmod(0o755)
    nodes = [EmulatedNode("exec-node", host_volumes={"hrwsi-data": str(data)}), EmulatedNode("no-volume")]
    async with open_emulator(tmp_path, "exec", nodes) as target:
        outcomes = {}
        for name, command, volume in (("in-chroot", "/bin/sh", False), ("outside", str(data / "tool.sh"), False),
                                      ("in-volume", str(data / "tool.sh"), True)):
            job = minimal_job(target.job_id(name))
            group, task = job["TaskGroups"][0], job["TaskGroups"][0]["Tasks"][0]
            task.update({"Driver": "exec", "Config": {"command": command, "args": [] if volume else ["-c", "true"]}})
            group["Constraints"] = [{"LTarget": "${node.unique.name}", "Operand": "=", "RTarget": "exec-node"}]
            group["RestartPolicy"] = {"Attempts": 0, "Mode": "fail"}
            group["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
            if volume:
                group["Volumes"] = {"data": {"Name": "data", "Type": "host", "Source": "hrwsi-data"}}
                task["VolumeMounts"] = [{"Volume": "data", "Destination": str(data)}]
            await target.ahttp("POST", "/v1/jobs", json={"Job": job})
            outcomes[name] = await target.final_allocation(job["ID"])
        assert outcomes["in-chroot"]["ClientStatus"] == "complete"
        assert outcomes["in-volume"]["ClientStatus"] == "complete"
        # client/config/config.go DefaultChrootEnv; drivers/shared/executor: "file ... not found under path".
        failure = next(e for e in task_events(outcomes["outside"]) if e["Type"] == "Driver Failure")
        assert "not found under path" in failure["Details"]["driver_error"]
        # scheduler/feasible/feasible.go: a node without the host volume is filtered.
        job = minimal_job(target.job_id("needs-volume"))
        job["TaskGroups"][0]["Volumes"] = {"data": {"Name": "data", "Type": "host", "Source": "hrwsi-data"}}
        job["TaskGroups"][0]["Constraints"] = [{"LTarget": "${node.unique.name}", "Operand": "=",
                                                "RTarget": "no-volume"}]
        await target.ahttp("POST", "/v1/jobs", json={"Job": job})

        async def filtered() -> dict:
            while True:
                for evaluation in (await target.ahttp("GET", f"/v1/job/{job['ID']}/evaluations")).json():
                    if evaluation.get("FailedTGAllocs"):
                        return evaluation["FailedTGAllocs"]["g"]["ConstraintFiltered"]
                await asyncio.sleep(0.05)
        assert "missing compatible host volumes" in await asyncio.wait_for(filtered(), GUARD_S)


# -- what the cluster has: namespaces, node pools, regions (found by exploratory testing) ---------------
async def test_a_job_in_a_namespace_that_does_not_exist_is_refused_and_the_namespace_reads_not_found(nomad: Target):
    missing = f"hrwsi-contract-{nomad.run_id}-missing"
    job = minimal_job(nomad.job_id("no-namespace"))
    job["Namespace"] = missing
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    # nomad/job_endpoint_validators.go jobNamespaceConstraintCheckHook.Validate
    assert response.status_code == 500, response.text
    assert f'job "{job["ID"]}" is in nonexistent namespace "{missing}"' in response.text
    assert (await nomad.ahttp("GET", f"/v1/namespace/{missing}")).status_code == 404
    default = await nomad.ahttp("GET", "/v1/namespace/default")
    assert default.status_code == 200 and default.json()["Name"] == "default"
    assert "default" in [n["Name"] for n in (await nomad.ahttp("GET", "/v1/namespaces")).json()]


async def test_the_namespace_of_the_query_comes_before_the_jobs_own(nomad: Target):
    # command/agent/job_endpoint.go namespaceForJob: ?namespace= first, then the body's, then the job's.
    missing = f"hrwsi-contract-{nomad.run_id}-query"
    job = minimal_job(nomad.job_id("query-namespace"))
    job["Namespace"] = "default"
    response = await nomad.ahttp("POST", "/v1/jobs", params={"namespace": missing}, json={"Job": job})
    assert response.status_code == 500 and f'nonexistent namespace "{missing}"' in response.text


async def test_a_job_in_a_node_pool_that_does_not_exist_is_refused_and_the_pool_reads_not_found(nomad: Target):
    missing = f"hrwsi-contract-{nomad.run_id}-nopool"
    job = minimal_job(nomad.job_id("no-pool"))
    job["NodePool"] = missing
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    # nomad/job_endpoint_hook_node_pool.go jobNodePoolValidatingHook.Validate
    assert response.status_code == 500, response.text
    assert f'job "{job["ID"]}" is in nonexistent node pool "{missing}"' in response.text
    assert (await nomad.ahttp("GET", f"/v1/node/pool/{missing}")).status_code == 404
    for pool in ("default", "all"):  # built in (nomad/structs/node_pool.go)
        answer = await nomad.ahttp("GET", f"/v1/node/pool/{pool}")
        assert answer.status_code == 200 and answer.json()["Name"] == pool


async def test_a_region_no_server_knows_has_no_path(nomad: Target):
    regions = (await nomad.ahttp("GET", "/v1/regions")).json()
    assert regions and all(isinstance(r, str) for r in regions)
    missing = f"hrwsi-contract-{nomad.run_id}-nowhere"
    response = await nomad.ahttp("GET", "/v1/jobs", params={"prefix": "hrwsi-contract-", "region": missing})
    assert response.status_code == 500 and "No path to region" in response.text  # nomad/rpc.go ErrNoRegionPath
    job = minimal_job(nomad.job_id("no-region"))
    job["Region"] = missing
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert response.status_code == 500 and "No path to region" in response.text


async def test_a_task_may_not_be_named_alloc(nomad: Target):
    job = minimal_job(nomad.job_id("alloc-task"))
    job["TaskGroups"][0]["Tasks"][0]["Name"] = "alloc"
    response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert response.status_code == 500 and 'Task cannot be named "alloc"' in response.text  # structs.go Task.Validate


async def test_a_wait_without_a_unit_or_an_index_that_is_no_number_is_refused(nomad: Target):
    # command/agent/http.go parseWait: Go's time.ParseDuration refuses "30" (only "0" needs no unit).
    response = await nomad.ahttp("GET", "/v1/jobs", params={"index": "1", "wait": "30"})
    assert response.status_code == 400 and response.text.strip() == "Invalid wait time"
    response = await nomad.ahttp("GET", "/v1/jobs", params={"index": "one", "wait": "1s"})
    assert response.status_code == 400 and response.text.strip() == "Invalid index"
    assert (await nomad.ahttp("GET", "/v1/jobs", params={"index": "1", "wait": "10ms"})).status_code == 200


async def test_purging_a_job_needs_submit_job_or_purge_job_not_deregister_job(nomad: Target, tmp_path):
    nomad.require_emulator("ACL tokens with a policy")
    stopper = AclPolicy(capabilities=frozenset({"deregister-job", "read-job", "list-jobs"}))
    async with open_emulator(tmp_path, "purge-acl", acl_token=MANAGEMENT_TOKEN,
                             acl_policies={READER_TOKEN: stopper}) as target:
        job = minimal_job(target.job_id("purged"), sleeping(30))
        await target.ahttp("POST", "/v1/jobs", json={"Job": job}, token=MANAGEMENT_TOKEN)
        path = f"/v1/job/{job['ID']}"
        # nomad/job_endpoint.go Job.Deregister: deregister-job may stop a job, never purge it
        refused = await target.ahttp("DELETE", path, params={"purge": "true"}, token=READER_TOKEN)
        assert refused.status_code == 403
        assert (await target.ahttp("DELETE", path, token=READER_TOKEN)).status_code == 200


async def test_a_task_keeps_its_last_ten_events(nomad: Target, tmp_path):
    emulator = nomad.require_emulator("restart a node's Nomad agent again and again")
    job = minimal_job(nomad.job_id("many-events"), sleeping(30))
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})

    async def started_after(time: int) -> dict:
        """The allocation once its task last started after `time` (its last event, Started)."""
        while True:
            for stub in (await nomad.ahttp("GET", f"/v1/job/{job['ID']}/allocations")).json() or []:
                events = task_events(stub) if stub.get("TaskStates") else []
                if events and events[-1]["Type"] == "Started" and events[-1]["Time"] > time:
                    return stub
            await asyncio.sleep(0.05)
    stub = await asyncio.wait_for(started_after(0), GUARD_S)
    for _ in range(6):  # each: Failed Restoring Task, then the task started again
        emulator.restart_client(stub["NodeName"], restore_fails=True)
        stub = await asyncio.wait_for(started_after(task_events(stub)[-1]["Time"]), GUARD_S)
    alloc = (await nomad.ahttp("GET", f"/v1/allocation/{stub['ID']}")).json()
    # client/allocrunner/taskrunner/task_runner.go appendTaskEvent: defaultMaxEvents, the oldest dropped
    events = task_events(alloc)
    assert len(events) == 10 and events[0]["Type"] != "Received"
    await nomad.purge(job["ID"])


async def test_scaling_a_job_up_places_another_allocation_and_scaling_down_stops_the_highest_index(nomad: Target):
    # nomad/job_endpoint.go Job.Scale: the group's Count changes in a new job version, evaluated ("job-scaling");
    # scheduler/reconciler/reconcile_cluster.go computeStop: a lower Count stops the highest name indexes.
    job = minimal_job(nomad.job_id("scaled"), sleeping(120))
    await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    path = f"/v1/job/{Target.path_id(job['ID'])}"

    async def allocs(wanted) -> list[dict]:
        while not wanted(found := (await nomad.ahttp("GET", f"{path}/allocations")).json() or []):
            await asyncio.sleep(0.05)
        return found
    await asyncio.wait_for(allocs(lambda a: any(x["ClientStatus"] == "running" for x in a)), GUARD_S)
    before = (await nomad.ahttp("GET", path)).json()
    up = await nomad.ahttp("POST", f"{path}/scale", json={"Count": 2, "Target": {"Job": job["ID"], "Group": "g"}})
    assert up.status_code == 200, up.text
    assert up.json()["EvalID"] and up.json()["JobModifyIndex"] > before["JobModifyIndex"]
    scaled = (await nomad.ahttp("GET", path)).json()
    assert scaled["Version"] == before["Version"] + 1 and scaled["TaskGroups"][0]["Count"] == 2
    two = await asyncio.wait_for(allocs(lambda a: len(a) == 2), GUARD_S)
    assert sorted(a["Name"] for a in two) == [f"{job['ID']}.g[0]", f"{job['ID']}.g[1]"]
    unknown_group = await nomad.ahttp("POST", f"{path}/scale", json={"Count": 1, "Target": {"Group": "nope"}})
    assert unknown_group.status_code == 400
    down = await nomad.ahttp("POST", f"{path}/scale", json={"Count": 1, "Target": {"Job": job["ID"], "Group": "g"}})
    assert down.status_code == 200, down.text
    after = await asyncio.wait_for(allocs(lambda a: any(x["DesiredStatus"] == "stop" for x in a)), GUARD_S)
    assert {a["Name"].rsplit(".", 1)[1]: a["DesiredStatus"] for a in after} == {"g[0]": "run", "g[1]": "stop"}
    await nomad.purge(job["ID"])


async def test_the_emulator_stopped_by_sigterm_leaves_no_task_process_behind(tmp_path):
    # Found by exploratory testing: processes of the emulator's allocations outlived it. A `nomad agent -dev`
    # destroys its allocations on exit (client/client.go Shutdown), and a task's executor kills what the task
    # left in its process group when it ends (drivers/shared/executor/executor.go Shutdown, killProcessTree).
    # (--port 0, and the address it says: a fixed port was another process's whenever two ran this test at once)
    emulator = subprocess.Popen([sys.executable, "-m", "hrwsi.testing.nomad_emulator", "--port", "0",
                                 "--work-dir", str(tmp_path / "work")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
    try:
        async def up() -> str:
            while line := await asyncio.to_thread(emulator.stdout.readline):
                if found := re.search(r"export NOMAD_ADDR=(http://\S+)", line):
                    return found.group(1)
            raise AssertionError(f"the emulator exited {emulator.wait()} without saying its address")
        address = await asyncio.wait_for(up(), GUARD_S)
        pids = {name: tmp_path / f"{name}.pid" for name in ("running", "left-behind")}
        scripts = {"running": f"echo $$ > {pids['running']}; {sleeping(300)}",
                   "left-behind": f"sleep 300 & echo $! > {pids['left-behind']}; exit 0"}
        for name, script in scripts.items():
            job = minimal_job(f"orphan-{name}", script)
            await asyncio.to_thread(requests.post, f"{address}/v1/jobs", json={"Job": job}, timeout=30)

        async def written() -> None:
            while not all(p.is_file() and p.read_text().strip() for p in pids.values()):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(written(), GUARD_S)


        async def left_behind_task_ended() -> None:  # (a sleep stood for it: on a loaded machine it had not yet)
            url = f"{address}/v1/job/orphan-left-behind/allocations"
            while not any(a["ClientStatus"] == "complete"
                          for a in (await asyncio.to_thread(requests.get, url, timeout=30)).json()):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(left_behind_task_ended(), GUARD_S)
        emulator.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.to_thread(emulator.wait), GUARD_S)

        def alive(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            stat = Path(f"/proc/{pid}/stat")
            return not (stat.is_file() and stat.read_text().split(") ", 1)[1].startswith("Z"))
        left = {name: int(p.read_text()) for name, p in pids.items() if alive(int(p.read_text()))}
        for pid in left.values():
            os.kill(pid, signal.SIGKILL)  # (this test's own leftovers, by pid)
        assert left == {}
    finally:
        if emulator.poll() is None:
            emulator.kill()
            emulator.wait()


async def test_a_task_starts_with_default_signal_handling_whatever_the_process_running_the_emulator_ignores(
        nomad: Target, tmp_path):
    # ci56, ci57, ci64: in the full suite the test runner's SIGINT was ignored or blocked, the tasks
    # inherited it, Nomad's stop signal (SIGINT) did nothing, and every stop waited its whole
    # KillTimeout (30 s; seven contract tests). A Nomad client run by an init system starts its tasks
    # with every signal deliverable and handled by default.
    nomad.require_emulator("the signal handling of the process it runs in")
    status = tmp_path / "status"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        async with open_emulator(tmp_path, "signals") as target:
            job = minimal_job(target.job_id("signals"), f"grep -E '^Sig(Blk|Ign):' /proc/self/status > {status}")
            await target.ahttp("POST", "/v1/jobs", json={"Job": job})
            assert (await target.final_allocation(job["ID"]))["ClientStatus"] == "complete"
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, previous)
    masks = dict(line.split(":\t") for line in status.read_text().splitlines())
    sigint = 1 << (signal.SIGINT - 1)
    assert not int(masks["SigBlk"], 16) & sigint and not int(masks["SigIgn"], 16) & sigint, masks


async def test_the_stop_signal_goes_to_the_tasks_own_process_and_what_it_started_is_killed_after_the_kill_timeout(
        nomad: Target):
    # Nomad's executor sends the task's kill_signal to the task's own process, not to its process group
    # (drivers/shared/executor/executor_unix.go shutdownProcess: proc.Signal), and kills the process and then
    # its process tree only after the kill timeout (executor.go Shutdown: proc.Kill, killProcessTree). The
    # emulator signalled the whole group: a shell's children died of the stop signal where Nomad's would not,
    # except when it came between the shell's vfork and its child's exec (the child ignores a signal there,
    # the shell defers SIGINT while it waits for a foreground command), and then the stop took the whole
    # kill timeout: 1 run in 3 of a launcher test under load.
    job_id = nomad.job_id("stop-signal")
    work = nomad.work / "stop-signal"
    work.mkdir(parents=True, exist_ok=True)
    child = (f"trap 'echo SIGINT >> {work}/child-got' INT; echo ready > {work}/ready; "
             "while :; do sleep 0.1; done")
    job = minimal_job(job_id, f"({child})", KillTimeout=2_000_000_000)  # (a foreground subshell: the task's child)
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200

    async def ready() -> None:
        while not (work / "ready").is_file():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ready(), GUARD_S)
    await nomad.ahttp("DELETE", f"/v1/job/{nomad.path_id(job_id)}")
    alloc = await nomad.final_allocation(job_id)
    events = [e["Type"] for e in alloc["TaskStates"]["t"]["Events"]]
    assert "Killing" in events and "Killed" in events, events
    assert not (work / "child-got").exists(), "the task's child got the stop signal meant for the task's process"
    await nomad.purge(job_id)


async def test_the_job_lists_index_moves_with_jobs_and_summaries_not_with_an_evaluations_write(nomad: Target):
    # nomad/job_endpoint.go List answers max(index of jobs, index of job_summary); an evaluation's write moves
    # neither when it changes no job status and no summary count (nomad/state/state_store.go nestedUpsertEval,
    # setJobStatuses). Re-registering a running job's unchanged spec writes only an evaluation
    # (nomad/job_endpoint.go Register: EvalUpdateRequestType), which the scheduler completes without a change.
    # The emulator moved the summaries' index with every write touching a job, so the list's index never
    # trailed the event stream's as Nomad's does (the launcher compared the two). (A quiet agent: another job's
    # write meanwhile would move the list's index.)
    job = minimal_job(nomad.job_id("index-of-jobs"), sleeping(60))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    path = f"/v1/job/{nomad.path_id(job['ID'])}"

    async def running() -> None:
        while not any(a["ClientStatus"] == "running" for a in (await nomad.ahttp("GET", f"{path}/allocations")).json()):
            await asyncio.sleep(0.05)
    await asyncio.wait_for(running(), GUARD_S)
    probe = {"prefix": nomad.job_id("no-such-job-")}
    before = int((await nomad.ahttp("GET", "/v1/jobs", params=probe)).headers["X-Nomad-Index"])
    stored = (await nomad.ahttp("GET", path)).json()
    again = await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})
    assert again.status_code == 200 and again.json()["EvalID"]
    assert again.json()["JobModifyIndex"] == stored["ModifyIndex"]  # no changes: not written again

    async def evaluated() -> dict:
        while (found := (await nomad.ahttp("GET", f"/v1/evaluation/{again.json()['EvalID']}")).json())["Status"] \
                != "complete":
            await asyncio.sleep(0.05)
        return found
    evaluation = await asyncio.wait_for(evaluated(), GUARD_S)
    after = int((await nomad.ahttp("GET", "/v1/jobs", params=probe)).headers["X-Nomad-Index"])
    assert before < evaluation["ModifyIndex"] and after == before, (before, evaluation["ModifyIndex"], after)
    assert (await nomad.ahttp("GET", path)).json()["ModifyIndex"] == stored["ModifyIndex"]
    await nomad.purge(job["ID"])


async def test_a_jobs_allocations_and_evaluations_answer_the_index_of_all_allocations_and_evaluations(nomad: Target):
    # nomad/job_endpoint.go Allocations and Evaluations answer the allocs and evals tables' index, whatever the job
    # (at least every allocation's and evaluation's ModifyIndex while Nomad's state lasts: the launcher compares an
    # allocation it saw with it); the emulator answered the job's own (1 for a job it never had).
    job = minimal_job(nomad.job_id("table-index"))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    alloc = await nomad.final_allocation(job["ID"])
    evaluations = (await nomad.ahttp("GET", f"/v1/job/{nomad.path_id(job['ID'])}/evaluations")).json()
    other = nomad.path_id(nomad.job_id("table-index-never-registered"))
    allocs_index = int((await nomad.ahttp("GET", f"/v1/job/{other}/allocations")).headers["X-Nomad-Index"])
    evals_index = int((await nomad.ahttp("GET", f"/v1/job/{other}/evaluations")).headers["X-Nomad-Index"])
    assert allocs_index >= alloc["ModifyIndex"], (allocs_index, alloc["ModifyIndex"])
    assert evals_index >= max(e["ModifyIndex"] for e in evaluations), (evals_index, evaluations)
    # (a blocking query on the job that has none still waits for one of its own)
    held = await nomad.ahttp("GET", f"/v1/job/{other}/allocations", params={"index": allocs_index, "wait": "300ms"})
    assert held.json() == [] and int(held.headers["X-Nomad-Index"]) >= allocs_index
    await nomad.purge(job["ID"])


async def test_stopping_a_stopped_job_writes_it_again_with_the_next_version(nomad: Target):
    # nomad/fsm.go handleJobDeregister upserts the stopped copy whether or not it was stopped already, and
    # nomad/state/state_store.go upsertJobImpl gives it the next Version and JobModifyIndex; the emulator left a
    # stopped job's Version and JobModifyIndex as they were.
    job = minimal_job(nomad.job_id("stopped-twice"))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    path = f"/v1/job/{nomad.path_id(job['ID'])}"
    first = await nomad.ahttp("DELETE", path)
    once = (await nomad.ahttp("GET", path)).json()
    assert once["Stop"] and once["JobModifyIndex"] == first.json()["JobModifyIndex"]
    second = await nomad.ahttp("DELETE", path)
    assert second.status_code == 200
    twice = (await nomad.ahttp("GET", path)).json()
    assert twice["Stop"] and twice["Version"] == once["Version"] + 1, (once["Version"], twice["Version"])
    assert twice["JobModifyIndex"] == second.json()["JobModifyIndex"] > once["JobModifyIndex"]
    await nomad.purge(job["ID"])


async def test_deleting_a_job_nomad_does_not_know_writes_nothing_and_answers_index_zero(nomad: Target):
    # nomad/job_endpoint.go Deregister returns before raftApply for a job it does not have, its reply left at
    # Index 0, which command/agent/job_endpoint.go jobDelete sends (setIndex); the emulator sent its current index.
    unknown = nomad.path_id(nomad.job_id("never-there"))
    for params in ({}, {"purge": "true"}):
        response = await nomad.ahttp("DELETE", f"/v1/job/{unknown}", params=params)
        assert response.status_code == 200 and response.headers["X-Nomad-Index"] == "0", response.headers
        assert response.json()["Index"] == 0 and response.json()["EvalID"] == ""


async def test_purge_takes_what_go_parses_as_a_bool_and_refuses_anything_else(nomad: Target):
    # command/agent/job_endpoint.go jobDelete: strconv.ParseBool (1 t T TRUE true True, 0 f F FALSE false False),
    # anything else a plain error, 500 (command/agent/http.go wrap), before the job is touched; the emulator
    # took "yes" for a purge and anything else for a stop.
    job = minimal_job(nomad.job_id("purge-flag"))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    path = f"/v1/job/{nomad.path_id(job['ID'])}"
    refused = await nomad.ahttp("DELETE", path, params={"purge": "yes"})
    assert refused.status_code == 500, (refused.status_code, refused.text)
    assert refused.text == 'Failed to parse value of "purge" (yes) as a bool: strconv.ParseBool: parsing "yes": ' \
                           'invalid syntax', refused.text
    assert (await nomad.ahttp("GET", path)).json()["Stop"] is False  # not even stopped
    assert (await nomad.ahttp("DELETE", path, params={"purge": "F"})).status_code == 200
    assert (await nomad.ahttp("GET", path)).json()["Stop"] is True  # F: stopped, not purged
    assert (await nomad.ahttp("DELETE", path, params={"purge": "T"})).status_code == 200
    assert (await nomad.ahttp("GET", path)).status_code == 404


async def test_a_deregistration_evaluation_is_of_type_service_and_none_for_a_parameterized_job(nomad: Target):
    # nomad/job_endpoint.go Deregister: the evaluation is structs.JobTypeService whatever the job's type, at the
    # job's priority; a periodic or parameterized job gets none (the entry is written all the same). The emulator
    # gave the job's type, and an evaluation to every job.
    job = minimal_job(nomad.job_id("deregister-eval"))
    job["Priority"] = 70
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    stopped = (await nomad.ahttp("DELETE", f"/v1/job/{nomad.path_id(job['ID'])}")).json()
    evaluation = (await nomad.ahttp("GET", f"/v1/evaluation/{stopped['EvalID']}")).json()
    assert evaluation["Type"] == "service" and evaluation["Priority"] == 70, evaluation
    assert evaluation["TriggeredBy"] == "job-deregister"
    parent = minimal_job(nomad.job_id("deregister-parameterized"))
    parent["ParameterizedJob"] = {"Payload": "forbidden"}
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": parent})).status_code == 200
    response = await nomad.ahttp("DELETE", f"/v1/job/{nomad.path_id(parent['ID'])}")
    assert response.status_code == 200 and response.json()["EvalID"] == "", response.json()
    assert response.json()["Index"] > 0 and response.json()["JobModifyIndex"] == response.json()["Index"]
    assert (await nomad.ahttp("GET", f"/v1/job/{nomad.path_id(parent['ID'])}")).json()["Stop"] is True
    for job_id in (job["ID"], parent["ID"]):
        await nomad.purge(job_id)


async def _running(target: Target, job: dict) -> None:
    path = f"/v1/job/{target.path_id(job['ID'])}/allocations"

    async def running() -> None:
        while not any(a["ClientStatus"] == "running" for a in (await target.ahttp("GET", path)).json()):
            await asyncio.sleep(0.05)
    await asyncio.wait_for(running(), GUARD_S)


async def _evaluated(target: Target, eval_id: str) -> dict:
    async def complete() -> dict:
        while (found := (await target.ahttp("GET", f"/v1/evaluation/{eval_id}")).json())["Status"] != "complete":
            await asyncio.sleep(0.05)
        return found
    return await asyncio.wait_for(complete(), GUARD_S)


async def test_an_unchanged_reregistration_is_an_evaluation_update_in_the_event_stream(nomad: Target):
    # nomad/job_endpoint.go Register: an unchanged spec writes its forced evaluation alone, an EvalUpdateRequestType
    # entry, whose events nomad/state/events.go MsgTypeEvents types "EvaluationUpdated"; the emulator typed them
    # "JobRegistered", as a new version's.
    job = minimal_job(nomad.job_id("unchanged-events"), sleeping(60))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    await _running(nomad, job)
    again = (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).json()
    assert again["EvalID"]
    connection = await EventStream(nomad.config()).connect({"topic": [f"Evaluation:{job['ID']}", f"Job:{job['ID']}"],
                                                            "index": str(again["EvalCreateIndex"])})
    frames = connection.frames()
    written: list[dict] = []

    async def eval_written() -> None:
        while not any(e["Key"] == again["EvalID"] for e in written):
            frame = await frames.__anext__()
            written.extend(e for e in frame.get("Events") or [] if e["Index"] == again["EvalCreateIndex"])
    try:
        await asyncio.wait_for(eval_written(), GUARD_S)
    finally:
        connection.close()
    assert {(e["Topic"], e["Type"]) for e in written} <= {("Evaluation", "EvaluationUpdated"), ("Job", "EvaluationUpdated")}, \
        written
    await nomad.purge(job["ID"])


async def test_a_job_not_there_reads_not_found_with_the_index_of_its_table(nomad: Target):
    # nomad/job_endpoint.go GetJob and Summary answer a job they do not have with the jobs (job_summary) table's
    # index, which command/agent/job_endpoint.go sends with the 404 (setMeta first); the emulator sent its current
    # index, past an evaluation's write that moves neither table (nomad/state/state_store.go nestedUpsertEval).
    # (A quiet agent: another job's write meanwhile would move the tables' index.)
    gone = minimal_job(nomad.job_id("purged-then-read"))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": gone})).status_code == 200
    await nomad.purge(gone["ID"])
    job = minimal_job(nomad.job_id("purged-then-read-other"), sleeping(60))
    assert (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).status_code == 200
    await _running(nomad, job)
    again = (await nomad.ahttp("POST", "/v1/jobs", json={"Job": job})).json()  # unchanged: an evaluation alone
    evaluation = await _evaluated(nomad, again["EvalID"])
    listed = int((await nomad.ahttp("GET", "/v1/jobs", params={"prefix": nomad.job_id("none-")})).headers["X-Nomad-Index"])
    for suffix in ("", "/summary"):
        missing = await nomad.ahttp("GET", f"/v1/job/{nomad.path_id(gone['ID'])}{suffix}")
        assert missing.status_code == 404 and missing.text == "job not found"
        index = int(missing.headers["X-Nomad-Index"])
        assert index <= listed < evaluation["ModifyIndex"], (suffix, index, listed, evaluation["ModifyIndex"])
    await nomad.purge(job["ID"])


async def test_of_two_attempts_waiting_in_nomad_for_room_the_urgent_ones_is_placed_first(nomad: Target):
    # Nomad hands out the evaluations a freed node unblocks highest priority first, then highest ModifyIndex
    # (nomad/eval_broker.go PendingEvaluations.Less): every hrwsi job at 50, the back-fill's attempt registered after
    # the fresh scene's took the room. build_job gives a task served urgently 59.
    if not nomad.is_emulator:
        pytest.skip("on a real agent, evaluations unblocked together may be planned by parallel scheduler workers")
    config = nomad.config()
    filler = nomad.spec("room-filler", sleeping(60), cpu=3.0)
    urgent = dataclasses.replace(nomad.spec("room-urgent", sleeping(60), cpu=3.0), lane="nrt", priority=0)
    backfill = dataclasses.replace(nomad.spec("room-backfill", sleeping(60), cpu=3.0), lane="archive", priority=1)

    async def allocations(spec) -> list[dict]:
        return (await nomad.ahttp("GET", f"/v1/job/{nomad.path_id(spec.job_id)}/allocations")).json() or []

    async def until(condition) -> None:
        async def poll() -> None:
            while not await condition():
                await asyncio.sleep(0.05)
        await asyncio.wait_for(poll(), GUARD_S)

    try:
        for spec in (filler, urgent, backfill):  # the back-fill's evaluation is written last
            response = await nomad.ahttp("POST", "/v1/jobs", json={"Job": build_job(spec, config)})
            assert response.status_code == 200, response.text
            if spec is filler:
                await until(lambda: _any_running(allocations(filler)))
        for spec in (urgent, backfill):
            await until(lambda spec=spec: _blocked(nomad, spec.job_id))
        await nomad.ahttp("DELETE", f"/v1/job/{nomad.path_id(filler.job_id)}")
        await until(lambda: _any_placed(allocations(urgent), allocations(backfill)))
        assert await allocations(urgent) and not await allocations(backfill), "the back-fill took the room"
    finally:
        for spec in (filler, urgent, backfill):
            await nomad.purge(spec.job_id)


async def _any_running(allocations) -> bool:
    return any(a["ClientStatus"] == "running" for a in await allocations)


async def _any_placed(*allocation_lists) -> bool:
    return any([await allocations for allocations in allocation_lists])


async def _blocked(nomad: Target, job_id: str) -> bool:
    evaluations = (await nomad.ahttp("GET", f"/v1/job/{nomad.path_id(job_id)}/evaluations")).json() or []
    return any(e["Status"] == "blocked" for e in evaluations)
