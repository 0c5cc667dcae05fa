"""/metrics, /healthz and /readyz of running services: each process answers for its own instances."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re

import aiohttp

from hrwsi import metrics
from hrwsi.database import create_pool
from hrwsi.instance_server import InstanceEndpoints, InstanceServer, start_instance_server
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def serve_one(service, pool=None) -> InstanceServer:
    server = InstanceServer(InstanceEndpoints([service], pool or service.pool, service.settings), "127.0.0.1", 0)
    await server.start()
    return server


async def test_a_hung_replica_fails_its_own_check_while_its_twin_passes(database_url, settings, configure):
    configure(single_routine_configuration(["true"]))
    async with running(database_url, ["launcher", "launcher"], settings) as (hung, healthy):
        servers = [await serve_one(hung), await serve_one(healthy)]
        try:
            for server in servers:
                assert (await get(server.port, "/healthz"))[0] == 200
            never = asyncio.Event()

            async def stuck() -> bool:  # a step that never returns: this instance's loop no longer turns
                await never.wait()
                return False

            hung.steps["stuck"] = stuck
            hung.wake("stuck")
            deadline = asyncio.get_running_loop().time() + 15
            while (await get(servers[0].port, "/healthz"))[0] == 200:
                assert asyncio.get_running_loop().time() < deadline, "the hung launcher still looks alive"
                await asyncio.sleep(0.2)
            status, body = await get(servers[0].port, "/healthz")
            assert status == 503 and "its loop has not turned for" in body and hung.instance_id in body
            assert (await get(servers[1].port, "/healthz"))[0] == 200, "its twin is not hidden behind it"
            assert (await get(servers[1].port, "/readyz"))[0] == 200
            never.set()
        finally:
            for server in servers:
                await server.stop()


async def test_readiness_needs_the_database_but_liveness_does_not(database_url, settings, configure):
    configure(single_routine_configuration(["true"]))
    unreachable = await create_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1)
    async with running(database_url, ["orchestrator"], settings) as (orchestrator,):
        await wait_until(database_url, "SELECT count(*) FROM hrwsi.service_instance WHERE kind = 'orchestrator'")
        await asyncio.sleep(settings.backstop_poll_s)
        server = await serve_one(orchestrator, unreachable)
        try:
            assert (await get(server.port, "/healthz"))[0] == 200
            status, body = await get(server.port, "/readyz")
            assert status == 503 and '"database": "unreachable: ' in body
        finally:
            await server.stop()
        server = await serve_one(orchestrator)
        try:
            status, body = await get(server.port, "/readyz")
            assert status == 200 and '"database": "reachable"' in body, body
            orchestrator.request_stop()
            status, body = await get(server.port, "/readyz")
            assert status == 503 and "it is stopping" in body
        finally:
            await server.stop()
    await unreachable.close()


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no {name} {labels} in the exposition"
    return float(found.group(1))


async def test_metrics_count_the_work_and_read_the_database(database_url, settings, configure, db):
    # One task at a time, long enough for the others to wait for capacity: the orchestrator plans
    # them (while the worker is free, pending work is left to the launcher's fast path).
    configure(single_routine_configuration(["/bin/sh", "-c", "sleep 0.3", "routine"], cpu=4, workers=1))
    latency_before = metrics.REGISTRY.get_sample_value("hrwsi_dispatch_latency_seconds_count") or 0.0
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local") as services:
        services[0].plan_after_s = 0.0  # plan what waits at once (the fast path has had its chance)
        endpoints = InstanceEndpoints(services, services[0].pool, settings)
        endpoints.figures.max_age_s = 0  # no cached snapshot from before the work
        server = InstanceServer(endpoints, "127.0.0.1", 0)
        await server.start()
        try:
            insert_inputs(db, 5)
            await wait_until(database_url, "SELECT count(*) = 5 FROM hrwsi.processing_task WHERE state = 'processed'")
            status, text = await get(server.port, "/metrics")
        finally:
            await server.stop()
    assert status == 200
    assert metric(text, "hrwsi_tasks", routine="work", lane="nrt", state="processed") == 5
    assert metric(text, "hrwsi_jobs_finished_last_hour", routine="work", lane="nrt", state="processed") == 5
    assert metric(text, "hrwsi_dispatched_tasks_total", service="launcher") == 5
    assert metric(text, "hrwsi_step_seconds_count", service="orchestrator", step="plan") >= 1
    assert metric(text, "hrwsi_step_seconds_count", service="launcher", step="dispatch") >= 1
    assert metric(text, "hrwsi_listener_reconnects_total", service="launcher") == 0
    assert metric(text, "hrwsi_database_up") == 1 and metric(text, "hrwsi_alerts_unsent") == 0
    assert metric(text, "hrwsi_dispatch_latency_seconds_count") - latency_before == 5, "each first attempt, once"
    assert metric(text, "hrwsi_plan_seconds_count") >= 1


async def test_port_zero_picks_a_free_port_and_says_which(database_url, settings, caplog):
    pool = await create_pool(database_url, max_size=2)
    try:
        from hrwsi.orchestrator import Orchestrator

        service = Orchestrator(pool, dataclasses.replace(settings, http_port=0))
        with caplog.at_level(logging.INFO, logger="hrwsi.instance_server"):
            server = await start_instance_server([service])
        try:
            assert server.port > 0
            assert f"orchestrator: /metrics, /healthz and /readyz on http://127.0.0.1:{server.port}" in caplog.text
            assert (await get(server.port, "/healthz"))[0] == 200, "not started yet is not hung"
            assert (await get(server.port, "/readyz"))[0] == 503, "but not ready"
        finally:
            await server.stop()
        assert await start_instance_server([Orchestrator(pool, settings)]) is None, "off unless a port is set"
    finally:
        await pool.close()
