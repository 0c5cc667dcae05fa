"""What the three services share: wake-ups routed to steps, catch-up, backstop poll, heartbeat,
side tasks, and a graceful shutdown.

A service is a set of named **steps** (e.g. "plan", "dispatch", "chain"). Each step does one batch
of work in its own transaction and returns True while more work remains. The **router** maps a
notification to the steps it makes dirty; bursts of notifications merge because a step runs once
for everything that arrived while it was busy. Every step is also made dirty on start, after every
listener reconnect, and by the backstop poll, so a lost notification only delays work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from hrwsi.database import TRANSIENT_DATABASE_ERRORS, create_pool
from hrwsi.listener import Listener, Notification
from hrwsi.metrics import InstanceHealth
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)


Step = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Route:
    channel: str
    step: str
    when: Callable[[Notification], bool] = lambda _n: True


class Router:
    """A small typed router from notification to the steps it wakes."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def on(self, channel: str, step: str, when: Callable[[Notification], bool] = lambda _n: True) -> None:
        self.routes.append(Route(channel, step, when))

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.channel for r in self.routes))

    def steps_for(self, notification: Notification) -> set[str]:
        return {r.step for r in self.routes if r.channel == notification.channel and r.when(notification)}


class Service:
    """Base of harvester, orchestrator and launcher. Subclasses fill `steps`, `router`, `side_tasks`."""

    kind = "service"

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.settings = settings
        self.instance_id = f"{self.kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.router = Router()
        self.steps: dict[str, Step] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.rounds = 0
        self.health = InstanceHealth(self.kind, self.instance_id)  # metrics hook (issue 13): /healthz, /metrics

    # -- hooks -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Before the loop: e.g. adopt orphaned work."""

    async def stop(self) -> None:
        """After the loop: e.g. hand back in-flight work."""

    def side_tasks(self) -> list[Callable[[], Awaitable[None]]]:
        """Periodic coroutines that run beside the loop until the service stops."""
        return []

    # -- waking ----------------------------------------------------------------------------
    def wake(self, *steps: str) -> None:
        self._dirty.update(steps or self.steps)
        self._wake.set()

    def notify(self, notification: Notification) -> None:
        steps = self.router.steps_for(notification)
        if steps:
            self.wake(*steps)

    # -- the loop --------------------------------------------------------------------------
    async def run_step(self, name: str) -> bool:
        """Run one step once; a failure is logged and retried later, never fatal to the service."""
        try:
            return await self.health.timed_step(name, self.steps[name])  # metrics hook (issue 13)
        except TRANSIENT_DATABASE_ERRORS as error:
            logger.warning("%s: step %s could not reach the database (%s); retrying in %.1f s",
                           self.kind, name, error, self.settings.backstop_poll_s)
        except asyncpg.PostgresError as error:
            logger.error("%s: step %s failed in the database: %s; retrying in %.1f s",
                         self.kind, name, error, self.settings.backstop_poll_s)
        except Exception:
            # A row or a state nobody foresaw: say so loudly, keep serving, try again later.
            logger.exception("%s: step %s failed; retrying in %.1f s", self.kind, name,
                             self.settings.backstop_poll_s)
        self._retry_later(name)
        return False

    def _retry_later(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.settings.backstop_poll_s, self.wake, name)

    async def run_dirty_steps(self) -> None:
        while self._dirty and not self.stopping.is_set():
            name = sorted(self._dirty)[0]
            self._dirty.discard(name)
            if await self.run_step(name):
                self._dirty.add(name)  # more work remains: go again, after the other steps
            self.rounds += 1

    async def run(self, url: str) -> None:
        """Serve until stop is requested (SIGINT/SIGTERM or request_stop())."""
        listener = Listener(url, self.router.channels, self.notify, lambda: self.wake(),
                            ping_interval_s=self.settings.heartbeat_s,
                            application_name=f"hrwsi-{self.kind}-listener")
        self.listener = listener
        await self._register()
        await self.start()
        background = [asyncio.create_task(listener.run(), name=f"{self.kind}-listener"),
                      asyncio.create_task(self._heartbeat(), name=f"{self.kind}-heartbeat"),
                      asyncio.create_task(self._backstop(), name=f"{self.kind}-backstop")]
        background += [asyncio.create_task(self._side(task), name=f"{self.kind}-{task.__name__}")
                       for task in self.side_tasks()]
        logger.info("%s %s started; listening on %s", self.kind, self.instance_id, ", ".join(self.router.channels))
        self.wake()
        self.health.loop_turned()  # metrics hook (issue 13): the loop runs from here on
        try:
            while not self.stopping.is_set():
                await self._wait_for_wake()
                self._wake.clear()
                await self.run_dirty_steps()
                self.health.loop_turned()  # metrics hook (issue 13): /healthz
        finally:
            logger.info("%s %s stopping", self.kind, self.instance_id)
            listener.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.stop()
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(query("unregister_instance"), self.instance_id)
            except TRANSIENT_DATABASE_ERRORS as error:
                logger.warning("%s: could not unregister (%s); its lease expires on its own", self.kind, error)
            logger.info("%s %s stopped", self.kind, self.instance_id)

    async def _wait_for_wake(self) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self.stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
            return False
        except TimeoutError:
            return True

    async def _backstop(self) -> None:
        while await self._sleep(self.settings.backstop_poll_s):
            self.wake()

    async def _heartbeat_once(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(query("heartbeat_instance"), self.instance_id, self.kind,
                               socket.gethostname(), os.getpid())
        self.health.heartbeat_ok()  # metrics hook (issue 13): /readyz

    async def _register(self) -> None:
        """The first heartbeat; a database away at start-up is waited for, not fatal."""
        delay = 0.1
        while True:
            try:
                return await self._heartbeat_once()
            except TRANSIENT_DATABASE_ERRORS as error:
                logger.warning("%s: cannot register with the database (%s); trying again in %.1f s",
                               self.kind, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _heartbeat(self) -> None:
        while await self._sleep(self.settings.heartbeat_s):
            self.health.heartbeat_tried()  # metrics hook (issue 13): /healthz
            try:
                await self._heartbeat_once()
            except TRANSIENT_DATABASE_ERRORS as error:
                logger.warning("%s: heartbeat failed (%s); trying again in %.1f s",
                               self.kind, error, self.settings.heartbeat_s)
            except Exception:
                # Never let the heartbeat end while the service runs: without it, the lease runs out
                # and other replicas adopt work this one still does.
                logger.exception("%s: heartbeat failed; trying again in %.1f s", self.kind,
                                 self.settings.heartbeat_s)

    async def _side(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one side task repeatedly; a failure is logged and the task goes on."""
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                await task()
            except TRANSIENT_DATABASE_ERRORS as error:
                logger.warning("%s: %s could not reach the database (%s); trying again",
                               self.kind, task.__name__, error)
            except Exception:
                logger.exception("%s: %s failed; it runs again at its next interval", self.kind, task.__name__)
            if time.monotonic() - started < 0.05 and not await self._sleep(0.05):
                break

    def request_stop(self) -> None:
        self.stopping.set()


async def serve(services: list[Service], url: str) -> None:
    """Run services in this process until SIGINT/SIGTERM."""
    from hrwsi.instance_server import start_instance_server  # metrics hook (issue 13)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda s=signum: _on_signal(services, s))
    http = await start_instance_server(services)  # metrics hook (issue 13): /metrics, /healthz, /readyz
    try:
        await asyncio.gather(*(service.run(url) for service in services))
    finally:
        if http is not None:  # metrics hook (issue 13)
            await http.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _on_signal(services: list[Service], signum: int) -> None:
    logger.info("received %s: finishing the current batch, then stopping", signal.Signals(signum).name)
    for service in services:
        service.request_stop()


async def open_pool(url: str, max_size: int = 5, name: str = "hrwsi") -> asyncpg.Pool:
    return await create_pool(url, min_size=1, max_size=max_size, application_name=name)
