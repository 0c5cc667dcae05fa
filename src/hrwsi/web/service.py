"""`hrwsi web`: the dashboard as a service like the others (listener, heartbeat, graceful stop),
whose one step pushes the notifications it hears to the open pages.

It serves on HRWSI_WEB_HOST:HRWSI_WEB_PORT (default 127.0.0.1:8470; port 0 picks a free one, logged),
with its own small pool (its reads never wait for the services' connections, and each statement is
planned with its actual parameters). It also serves /metrics, /healthz and /readyz for the
instances of its process.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

import asyncpg
from aiohttp import web

from hrwsi import process_identity
from hrwsi.backoff import DASHBOARD_LISTENER_CAP_S
from hrwsi.database import create_pool
from hrwsi.instance_server import InstanceEndpoints, liveness_limit_s
from hrwsi.listener import Notification
from hrwsi.service import Service, SideTask
from hrwsi.settings import Settings
from hrwsi.terminal import one_line
from hrwsi.web.app import Dashboard
from hrwsi.web.config import WebSettings
from hrwsi.web.data import SESSION_SETTINGS, OverviewCache
from hrwsi.web.live import CHANNELS, LiveHub

logger = logging.getLogger(__name__)

LISTENER_WATCH_S = 0.5  # how soon the pages hear that the listener lost or regained the database


class DashboardUnavailable(RuntimeError):
    """The dashboard cannot listen where it was asked to (the message says where and why)."""


class UiLinks:
    """Links to a job in its backend's UI (Nomad), from the backend's own ui_link."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._backends: dict[str, object] = {}

    def __call__(self, backend_name: str, backend_job_id: str) -> str | None:
        backend = self._backends.get(backend_name)
        if backend is None and backend_name == "nomad":  # the only backend with a UI
            from hrwsi.backends import make_backend

            backend = self._backends[backend_name] = make_backend(backend_name, self.settings)
        return backend.ui_link(backend_job_id) if backend is not None else None

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()


async def cannot_listen(host: str, port: int, error: OSError) -> str:
    """Why the dashboard cannot listen on host:port, in one line naming the port, the setting that changes it
    and, when the port is taken, who holds it if this host tells. (It said "the dashboard cannot listen on
    127.0.0.1:8470: error while attempting to bind on address ('127.0.0.1', 8470): address already in use":
    aiohttp's text, repeating the address and naming no one; found by exploratory testing.)"""
    where = f"the dashboard cannot listen on {host}:{port}"
    change = "set HRWSI_WEB_PORT to another port (0 picks a free one)"
    if error.errno == errno.EADDRINUSE:
        holder = await asyncio.to_thread(process_identity.port_holder, port)
        held = (f"held by {one_line(holder)}" if holder is not None else
                f"held by a process this user cannot see (`ss -ltnp 'sport = :{port}'` as root names it)")
        return f"{where}: port {port} is taken ({held}); {change}, or stop what holds it"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{where}: port {port} needs privileges hrwsi does not have; {change}, above 1023"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no interface of this host has the address {host}; set HRWSI_WEB_HOST to one it has"
    why = os.strerror(error.errno).lower() if error.errno else one_line(error)
    return f"{where}: {why}; check HRWSI_WEB_HOST and HRWSI_WEB_PORT"


class WebService(Service):
    kind = "web"
    listener_cap_s = DASHBOARD_LISTENER_CAP_S  # pages are not live without it: back within seconds
    # A failover onto a standby is when ops need the dashboard most: like every service it waits for writes at start
    # (Service._register), and serves its pages meanwhile (the overview's first line says the database refuses
    # writes); its actions are refused meanwhile.

    def __init__(self, pool: asyncpg.Pool, settings: Settings, web_settings: WebSettings | None = None,
                 *, required: bool = True):
        super().__init__(pool, settings)
        self.web_settings = web_settings or WebSettings.from_env()
        self.required = required  # `hrwsi up` goes on without its dashboard when the port is taken
        self.hub = LiveHub()
        self.steps = {"broadcast": self.broadcast}
        for channel in CHANNELS:
            self.router.on(channel, "broadcast")
        self.instances: list[Service] = [self]  # whose health /healthz reports: the composition root sets it
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._read_pool: asyncpg.Pool | None = None
        self._seen_reconnects = 0
        self._ui_links = UiLinks(settings)
        self.overview: OverviewCache | None = None
        self.endpoints: InstanceEndpoints | None = None

    def side_tasks(self) -> list[SideTask]:
        return [SideTask("watch the listener", self.watch_listener, LISTENER_WATCH_S)]

    async def watch_listener(self) -> None:
        """Tell the open pages when the listener loses or regains the database: without it no change
        reaches them, and a task page kept its green "live" through an outage (found by exploratory
        testing). (It only reads the listener's state: no query.)"""
        listener = getattr(self, "listener", None)
        if listener is not None and listener.listen_refused:
            self.hub.set_database(True, live=False)  # (a hot standby refuses LISTEN: the pages poll meanwhile)
            return
        if listener is None or (listener.reconnects == 0 and not listener.connected):
            return  # starting: not known yet (the pages say nothing rather than "unreachable" for a moment)
        self.hub.set_database(listener.connected)

    def waiting_for_writes(self, waiting: bool) -> None:
        """Its listener runs once it has registered: until then no notification reaches the pages, which poll."""
        if waiting:
            self.hub.set_database(True, live=False)

    def notify(self, notification: Notification) -> None:
        self.hub.collect(notification)
        super().notify(notification)

    async def broadcast(self) -> bool:
        listener = getattr(self, "listener", None)
        if listener is not None and listener.reconnects != self._seen_reconnects:
            self._seen_reconnects = listener.reconnects
            self.hub.set_database(True)  # (said before the change that follows: the pages are live again)
            self.hub.collect_everything()  # what was missed while away: pages catch up
        wait = self.hub.due_in()
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self.wake, "broadcast")
            return False
        if self.hub.flush() is not None and self.overview is not None:
            self.overview.invalidate()
        return False

    async def run(self, url: str) -> None:
        await self._open(url)
        try:
            await super().run(url)
        finally:
            await self._close()

    async def _open(self, url: str) -> None:
        # min_size=0: the pages answer "database unreachable" while it is, rather than not at all.
        self._read_pool = await create_pool(url, min_size=0, max_size=self.web_settings.pool_size,
                                            application_name="hrwsi-web",
                                            server_settings=SESSION_SETTINGS)
        self.overview = OverviewCache(self._read_pool, liveness_limit_s(self.settings),
                                      refused_here=lambda: self._read_only is not None)
        self.endpoints = endpoints = InstanceEndpoints(self.instances, self.pool, self.settings)
        dashboard = Dashboard(self._read_pool, self.hub, self.overview, self.web_settings.auth,
                              self.settings.data_dir, self._ui_links, endpoints.routes(), self.web_settings.hosts,
                              clock=self.clock.now)
        self._runner = web.AppRunner(dashboard.application(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        host, port = self.web_settings.host, self.web_settings.port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as error:
            await self._close()
            message = await cannot_listen(host, port, error)
            if self.required:
                raise DashboardUnavailable(message) from None
            logger.error("%s; the other services go on without it", message)
            return
        self.port = self._runner.addresses[0][1]
        await endpoints.figures.start()
        actions = ("operator actions need a token (HRWSI_WEB_TOKEN is set)" if self.web_settings.auth.enabled
                   else "read-only: set HRWSI_WEB_TOKEN to allow operator actions")
        logger.info("web dashboard on http://%s:%d (%s)", host, self.port, actions)

    async def _close(self) -> None:
        self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._read_pool is not None:
            await self._read_pool.close()
            self._read_pool = None
        await self._ui_links.close()
