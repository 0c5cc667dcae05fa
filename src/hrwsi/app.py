"""The composition root: which services run in this process, on which pool and backend, for how long.

Everything that runs hrwsi's services (the CLI, the demo, the notebook helper, the benchmark, the
tests) goes through `App`, one `async with` lifetime:

    async with App(url, ["orchestrator", "launcher"], settings) as app:
        await app.wait()          # until SIGINT/SIGTERM (handle_signals=True) or app.request_stop()

On entry it waits for the database (a service started while PostgreSQL restarts waits, it does not
die; ADR 0006), applies pending migrations when asked, opens one asyncpg pool, builds the services
and starts them. On exit it asks every service to stop gracefully, waits for them, and closes the
pool. A service that ended on its own is reported by `died()` and re-raised on exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Sequence

import asyncpg
import psycopg

from hrwsi import migrations
from hrwsi.backends.base import Backend
from hrwsi.backoff import START_UP_CAP_S, Backoff
from hrwsi.database import (
    TRANSIENT_DATABASE_ERRORS,
    DatabaseUnavailable,
    connect,
    create_pool,
    redact,
    service_session_settings,
)
from hrwsi.database_trouble import READ_ONLY_CAUSE, READ_ONLY_NEXT, UnusablePooler, describe, pooler_refusal
from hrwsi.home import moved_data_dir
from hrwsi.instance_server import InstanceServer, start_instance_server
from hrwsi.service import WRITES_AWAITED_EVERY_S, WRITES_AWAITED_SAID_EVERY_S, Service
from hrwsi.settings import Settings

logger = logging.getLogger(__name__)

SERVICE_KINDS = ("harvester", "orchestrator", "launcher", "web")
# Allocations between two collections of the youngest generation in a process that runs the services.
SERVICE_GC_YOUNG_THRESHOLD = 50_000
# ... and the oldest generation, collected after millions of allocations at that threshold, once every
# five minutes: a process that makes cyclic garbage slowly grew by it for hours (a dashboard with
# clients coming and going, 77.5 -> 88.2 MB in 14 minutes, 0.2 MB with Python's thresholds; a
# launcher's manifests, written by json's pure-Python encoder, 18,000-41,000 objects of cycles every
# three minutes: found by exploratory testing). With the start-up objects frozen, a collection with
# 10,000 jobs in flight takes about 4 ms, with 100,000 about 90 ms.
FULL_COLLECTION_EVERY_S = 300.0
# What a graceful stop gives the database beyond HRWSI_SHUTDOWN_GRACE_S (the launcher's wait for its
# local jobs) for its last writes (outcomes, progress, unregistering), and then, its connections
# terminated, for the services to end. Half-open connections (a failover that moved the server's
# address, a middlebox that forgot them) made each last write wait asyncpg's command timeout and as
# long again for its cancel's acknowledgement: 241 s, past systemd's 90 s and Nomad's kill_timeout.
STOP_DATABASE_S = 5.0
STOP_AFTER_TERMINATE_S = 2.0


class SchemaNotReady(RuntimeError):
    """The schema lacks migrations and this role may not apply them; the message says what to do."""


def build_services(kinds: Sequence[str], pool: asyncpg.Pool, settings: Settings,
                   backend: str | Backend | None = None) -> list[Service]:
    """The services of `kinds`, sharing `pool`; the launcher gets `backend` (a name or an instance)."""
    from hrwsi.backends import make_backend
    from hrwsi.harvester import Harvester
    from hrwsi.launcher import Launcher
    from hrwsi.orchestrator import Orchestrator

    built: list[Service] = []
    for kind in kinds:
        if kind == "harvester":
            built.append(Harvester(pool, settings))
        elif kind == "orchestrator":
            built.append(Orchestrator(pool, settings))
        elif kind == "launcher":
            chosen = backend if backend is not None else settings.backend
            built.append(Launcher(pool, settings, make_backend(chosen, settings) if isinstance(chosen, str)
                                  else chosen))
        elif kind == "web":  # web dashboard (issue 13); alone it must serve, in `up` it may not
            from hrwsi.web.service import WebService

            built.append(WebService(pool, settings, required=len(kinds) == 1))
        else:
            raise ValueError(f"unknown service {kind!r}: choose from {', '.join(SERVICE_KINDS)}")
    if built:  # (one line for them all while they wait at start for the database to take writes)
        built[0].share_writes_awaited(built)
    for service in built:  # web dashboard (issue 13): its /healthz answers for every instance of the process
        if service.kind == "web":
            service.instances = built
    return built


def ensure_schema(url: str) -> list[str]:
    """Apply pending migrations (synchronous, psycopg); the names applied. A role that may not
    apply them gets SchemaNotReady naming what is missing and who must run `hrwsi db init`; so does
    a database a newer hrwsi upgraded (migrations.NewerSchema)."""
    with connect(url) as conn:
        try:
            missing = migrations.pending(conn)
        except migrations.NewerSchema as error:
            raise SchemaNotReady(str(error)) from None
        if not missing:
            return []
        try:
            return migrations.migrate(conn)
        except psycopg.errors.InsufficientPrivilege as error:
            raise SchemaNotReady(
                f"the database schema lacks {', '.join(missing)} and this role may not apply it "
                f"({error.diag.message_primary}); run `hrwsi db init` as the schema owner") from None


async def wait_for_schema(url: str, stopping: asyncio.Event) -> None:
    """ensure_schema, waiting for a database that is away (start-up during a restart), or that refuses the writes of
    the migrations it lacks (a standby during a failover, as the services wait to register: Service._register),
    until `stopping`."""
    backoff = Backoff(first_s=0.5, cap_s=START_UP_CAP_S)
    refused_since: float | None = None
    told = float("-inf")
    while not stopping.is_set():
        try:
            await asyncio.to_thread(ensure_schema, url)
            if refused_since is not None:
                logger.info("the database takes the migrations' writes again (refused for %.0f s)",
                            time.monotonic() - refused_since)
            return
        except DatabaseUnavailable as error:
            delay = backoff.next()
            logger.warning("%s; hrwsi waits %.1f s and tries again", error, delay)
            await backoff.sleep(delay, stopping)
        except psycopg.errors.ReadOnlySqlTransaction as error:
            # (an upgrade restarted during a failover ended in code 2 and stayed down after the promotion)
            now = time.monotonic()
            refused_since = refused_since or now
            if now - told >= WRITES_AWAITED_SAID_EVERY_S:
                told = now
                logger.warning("the database schema lacks migrations this hrwsi applies at start, and the database "
                               "refuses writes (%s): %s; %s; hrwsi waits and tries every %g s (Ctrl-C or SIGTERM stops "
                               "it at once)", " ".join(error.diag.message_primary.split()) if error.diag.message_primary
                               else error, READ_ONLY_CAUSE, READ_ONLY_NEXT, WRITES_AWAITED_EVERY_S)
            await Backoff.sleep(WRITES_AWAITED_EVERY_S, stopping)


def pool_name(kinds: list[str]) -> str:
    """The application name of a process's pooled sessions, as pg_stat_activity shows it: the services
    it runs (hrwsi-launcher-pool, hrwsi-harvester+orchestrator+launcher-pool), beside each service's
    hrwsi-<kind>-listener. Ops (and the benchmark's CPU split) see which service a session serves."""
    return f"hrwsi-{'+'.join(dict.fromkeys(kinds))}-pool"  # (47 bytes at most: PostgreSQL keeps 63)


async def wait_for_pool(url: str, max_size: int, stopping: asyncio.Event, name: str = "hrwsi",
                        server_settings: dict[str, str] | None = None) -> asyncpg.Pool | None:
    """An asyncpg pool, waiting for a database that is away; None when `stopping` is set first."""
    backoff = Backoff(first_s=0.5, cap_s=START_UP_CAP_S)
    while not stopping.is_set():
        try:
            return await create_pool(url, min_size=1, max_size=max_size, application_name=name,
                                     server_settings=server_settings)
        except TRANSIENT_DATABASE_ERRORS as error:
            if (pooler := pooler_refusal(error)) is not None:  # (it was retried for ever: it never changes by itself)
                raise UnusablePooler(pooler) from None
            delay = backoff.next()
            logger.warning("cannot open connections to %s (%s); hrwsi waits %.1f s and tries again",
                           redact(url), describe(error), delay)
            await backoff.sleep(delay, stopping)
    return None


class App:
    """Services of this process, from database wait to graceful stop, as one `async with`."""

    def __init__(self, url: str, kinds: Sequence[str], settings: Settings, *,
                 backend: str | Backend | None = None, pool_size: int | None = None,
                 migrate: bool = False, handle_signals: bool = False, freeze_startup_objects: bool = False):
        self.url = url
        self.kinds = list(kinds)
        self.settings = settings
        self.backend = backend
        self.pool_size = pool_size or settings.pool_size or 4 * len(self.kinds) + 2
        self.migrate = migrate
        self.handle_signals = handle_signals
        self.freeze_startup_objects = freeze_startup_objects
        self.pool: asyncpg.Pool | None = None
        self.services: list[Service] = []
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._collector: asyncio.Task | None = None  # the periodic full collection (freeze_startup_objects)
        self._stop_bound: asyncio.Task | None = None  # ends the stop at its bound (_bound_the_stop)
        self.http: InstanceServer | None = None  # metrics hook (issue 13): /metrics, /healthz, /readyz

    async def __aenter__(self) -> App:
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            if self.migrate:
                await wait_for_schema(self.url, self._stopping)
            self.pool = await wait_for_pool(self.url, self.pool_size, self._stopping, pool_name(self.kinds),
                                            server_settings=service_session_settings(self.settings.lease_timeout_s))
            if self.pool is not None:  # else stopped (a signal) while waiting for the database
                # (once per process, not per service: `hrwsi up` said it four times)
                moved = await asyncio.to_thread(moved_data_dir, self.settings.data_dir)
                if moved is not None:
                    logger.warning("%s", moved)
                self.services = build_services(self.kinds, self.pool, self.settings, self.backend)
                for service in self.services:  # (a launcher whose Nomad namespace does not exist, say)
                    await service.preflight()
                self.http = await start_instance_server(self.services)  # metrics hook (issue 13)
        except BaseException:
            # A service registered by its start-up check (a Nomad launcher's) that never ran: its row
            # showed in `hrwsi status` until its lease expired (found by review).
            for service in self.services:
                if service.registered:
                    await service.unregister()
            await self._close()
            raise
        if self.freeze_startup_objects:
            # A process that runs the services (the CLI): what it made to start (modules, the pool,
            # the services) lives as long as it does. Frozen, the collector no longer scans it at
            # every full collection: the launcher's time in garbage collection over bursts of 10,000
            # and 100,000 jobs went from 1.5 s to 0.8 s. (Not in a library caller's process: a test
            # run or a notebook would keep its own garbage for ever.)
            gc.collect()
            gc.freeze()
            # A burst keeps thousands of jobs in flight, each a few dozen objects that live until its
            # outcome is recorded: collected every 700 allocations (Python's default), they were
            # scanned again and again on their way to the oldest generation, 28 % of the launcher's
            # CPU in the 100,000 burst (1.9 s). Every 50,000: 0.27 s over both bursts. Cyclic
            # garbage, rare here, waits for at most that many allocations; the peak RSS stayed the
            # same (docs/performance.md, "Since 11:07").
            gc.set_threshold(SERVICE_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            self._collector = asyncio.create_task(_collect_periodically(), name="full-garbage-collection")
        self._tasks = [asyncio.create_task(s.run(self.url), name=f"{s.kind}-service") for s in self.services]
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.request_stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stop_bound is not None:
            await self._stop_bound
        await self._close()
        died = self.died()
        if died and exc is None:
            raise died[0]

    def service(self, kind: str) -> Service:
        """The first service of `kind` in this app."""
        return next(s for s in self.services if s.kind == kind)

    async def wait(self) -> None:
        """Until every service has stopped (request_stop, a signal, or one ended on its own)."""
        if self._tasks:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            # One service ending (by itself, or by request) ends the app: stop the others too.
            self.request_stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def request_stop(self) -> None:
        self._stopping.set()
        for service in self.services:
            service.request_stop()
        if self._stop_bound is None and self._tasks:
            self._stop_bound = asyncio.create_task(self._bound_the_stop(), name="stop-bound")

    async def _bound_the_stop(self) -> None:
        """End the services' stop within HRWSI_SHUTDOWN_GRACE_S (with a launcher) + STOP_DATABASE_S whatever
        the network does.

        Past it, the pool's connections are terminated (asyncpg's Pool.terminate: no cancel is sent or
        waited for) and what was not written stays unwritten, which nothing loses (ADR 0006): the next
        launcher adopts the attempts whose outcomes were not recorded and records them from the backend
        (a local attempt's supervisor keeps its outcome in its directory), and a service's row, not
        removed, expires with its lease. A service still not ended STOP_AFTER_TERMINATE_S later (the
        launcher's outcome writer retries a database that is away for ever) is cancelled."""
        # (the grace and the backend's stop are the launcher's: a harvester's or orchestrator's own process ends
        # within STOP_DATABASE_S, within the kill_timeout of 20 s of their Nomad jobs)
        bound_s = STOP_DATABASE_S + max((service.stop_allowance_s() for service in self.services), default=0.0)
        _, pending = await asyncio.wait(self._tasks, timeout=bound_s)
        if not pending or self.pool is None:
            return
        unwritten = [said for service, task in zip(self.services, self._tasks, strict=True)
                     if task in pending and (said := service.unwritten_at_stop())]
        logger.warning("the stop did not end within %.0f s (the database not answering its last writes): closing its "
                       "connections without waiting; "
                       "not written: %s (the next launcher adopts the attempts and records them; this process's "
                       "service rows expire with their leases)", bound_s, "; ".join(unwritten) or "nothing more")
        self.pool.terminate()
        _, pending = await asyncio.wait(pending, timeout=STOP_AFTER_TERMINATE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def died(self) -> list[BaseException]:
        """Exceptions of services that ended on their own (a service never should)."""
        return [t.exception() for t in self._tasks if t.done() and not t.cancelled() and t.exception()]

    def _on_signal(self, signum: int) -> None:
        logger.info("received %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        self.request_stop()

    async def _close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
            self._collector = None
        if self.http is not None:  # metrics hook (issue 13)
            await self.http.stop()
            self.http = None
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


async def _collect_periodically() -> None:
    """A full collection every FULL_COLLECTION_EVERY_S, for the life of a process running the services."""
    while True:
        await asyncio.sleep(FULL_COLLECTION_EVERY_S)
        started = time.perf_counter()
        found = gc.collect()
        logger.debug("a full garbage collection found %d object(s) in %.1f ms", found,
                     (time.perf_counter() - started) * 1000)
