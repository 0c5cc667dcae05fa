"""The HTTP endpoints of a service process: /metrics, /healthz and /readyz, about THIS process's
instances only (never "some replica of the kind": each replica answers for itself).

- `/healthz` (liveness, for restarts): 200 while every instance's loop turns and its heartbeat
  task runs. A database outage is not a liveness failure (the loop and the heartbeat go on
  trying), so Nomad does not restart services that are waiting for the database.
- `/readyz` (readiness): 200 when, in addition, every instance has started, is not stopping, its
  heartbeat reached the database within its lease and its last heartbeat did, and a query answers
  within 2 s (asked at each request: never an older answer).
- `/metrics`: the Prometheus exposition (`hrwsi.metrics`).

One server per process (`hrwsi up` runs several services in one process): HRWSI_HTTP_PORT (unset:
off; 0: any free port, logged), HRWSI_HTTP_HOST (default 127.0.0.1; on Nomad the allocation's IP).
The web dashboard mounts the same routes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import asyncpg
from aiohttp import web

from hrwsi import metrics
from hrwsi.database import EMBEDDED_START_HINT, TRANSIENT_DATABASE_ERRORS, embedded_server_down, names_embedded_server

logger = logging.getLogger(__name__)

DATABASE_CHECK_TIMEOUT_S = 2.0


def liveness_limit_s(settings) -> float:
    """How long a loop or heartbeat may be silent before the instance counts as hung: a long step
    (planning 100,000 tasks takes seconds) must not look like a hang."""
    return max(settings.lease_timeout_s, 3 * settings.backstop_poll_s, 3 * settings.heartbeat_s)


class InstanceEndpoints:
    """The handlers, over the live service objects of this process."""

    def __init__(self, instances: list, pool: asyncpg.Pool, settings):
        self.instances = instances
        self.pool = pool
        self.settings = settings
        self.figures = metrics.DatabaseFigures(pool, self._launcher_ids)

    def _launcher_ids(self) -> list[str]:
        return [s.instance_id for s in self.instances if s.kind == "launcher"]

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self.metrics), web.get("/healthz", self.healthz), web.get("/readyz", self.readyz)]

    def _report(self, problems_of) -> tuple[bool, list[dict]]:
        now = time.monotonic()
        report = []
        for service in self.instances:
            ages = service.health.ages(now)
            problems = problems_of(service, now)
            report.append({"service": service.kind, "instance": service.instance_id,
                           **{k: None if v is None else round(v, 3) for k, v in ages.items()},
                           "problems": problems})
        return all(not r["problems"] for r in report), report

    async def healthz(self, _request: web.Request) -> web.Response:
        limit = liveness_limit_s(self.settings)
        ok, report = self._report(lambda s, now: s.health.liveness_problems(limit, now))
        return web.json_response({"status": "alive" if ok else "hung", "instances": report},
                                 status=200 if ok else 503)

    async def readyz(self, _request: web.Request) -> web.Response:
        limit = liveness_limit_s(self.settings)

        def problems(service, now):
            found = service.health.liveness_problems(limit, now)
            if service.stopping.is_set():
                found.append("it is stopping")
            return found + service.health.readiness_problems(self.settings.lease_timeout_s, now)

        ok, report = self._report(problems)
        database = await self._database_problem()
        body = {"status": "ready" if ok and database is None else "not ready", "instances": report,
                "database": database or "reachable"}
        return web.json_response(body, status=200 if ok and database is None else 503)

    async def _database_problem(self) -> str | None:
        try:
            async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
            return None
        except TimeoutError:
            return f"no answer within {DATABASE_CHECK_TIMEOUT_S:.0f} s"
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
            # not str(error): it may name the server
            return f"unreachable: {type(error).__name__}" + self._embedded_server_down()

    def _embedded_server_down(self) -> str:
        """What to add when the database is the embedded server and it does not run (no path: this
        answer may be read from another host; the services' log names it)."""
        settings = self.settings
        if settings.database_url is not None and not names_embedded_server(settings.database_url, settings.pgdata):
            return ""
        if embedded_server_down(settings.pgdata) is None:
            return ""
        return f"; the embedded PostgreSQL server is not running ({EMBEDDED_START_HINT})"

    async def metrics(self, _request: web.Request) -> web.Response:
        snapshot = await self.figures.refresh()
        body = metrics.exposition(self.instances, snapshot)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


class EndpointsUnavailable(RuntimeError):
    """The endpoints cannot listen where HRWSI_HTTP_HOST and HRWSI_HTTP_PORT say (the message says
    where, why and what to do)."""


class InstanceServer:
    def __init__(self, endpoints: InstanceEndpoints, host: str, port: int):
        self.endpoints = endpoints
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.add_routes(self.endpoints.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            # (it said "error while attempting to bind on address ('127.0.0.1', 9471): address already in
            # use", naming no setting, where the dashboard's port names HRWSI_WEB_PORT; found by
            # exploratory testing)
            await self.stop()
            why = os.strerror(error.errno).lower() if error.errno else str(error)  # (aiohttp's text repeats the address)
            raise EndpointsUnavailable(f"the /metrics, /healthz and /readyz endpoints cannot listen on {self.host}:"
                                       f"{self.port}: {why}; choose another port with HRWSI_HTTP_PORT (0 picks a free "
                                       "one), or unset it to serve none") from None
        self.port = self._runner.addresses[0][1]  # the real one when 0 was asked for
        await self.endpoints.figures.start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_instance_server(services: list) -> InstanceServer | None:
    """Serve /metrics, /healthz, /readyz for these services when HRWSI_HTTP_PORT is set."""
    if not services:
        return None
    settings = services[0].settings
    if settings.http_port is None:
        return None
    server = InstanceServer(InstanceEndpoints(services, services[0].pool, settings), settings.http_host,
                            settings.http_port)
    port = await server.start()
    logger.info("%s: /metrics, /healthz and /readyz on http://%s:%d", "/".join(s.kind for s in services),
                settings.http_host, port)
    return server
