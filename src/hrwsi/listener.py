"""A LISTEN connection that stays alive: reconnects with jittered backoff and proves it is alive.

A notification is only a wake-up call (the tables are the truth), so after every (re)connect the
listener reports `reconnected` and the service catches up on what it may have missed.

A channel can be made quiet for a while (`set_quiet`, then `apply`): it is not listened to until it
is wanted again, so that its notifications wake neither this connection's server process nor this
process. The service does so while the only step a channel wakes is due anyway (Service.wake_later),
and listens again before that step runs, so that it misses nothing it would not read then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import asyncpg

from hrwsi.backoff import LISTENER_CAP_S, Backoff
from hrwsi.database import SESSION_SETTINGS, TRANSIENT_DATABASE_ERRORS, end_silent_sessions, redact
from hrwsi.database_trouble import describe, pooler_refusal

logger = logging.getLogger(__name__)

# Payloads hrwsi cannot read are said at most this often, with how many came: any role may NOTIFY on
# hrwsi's channels, and a read-only one's 1,000 pg_notify calls wrote 4,000 warnings (one per
# listener; found by exploratory testing).
UNREADABLE_SAID_EVERY_S = 60.0
_unreadable = {"said_at": None, "since": 0}


def _tell_unreadable(channel: str, payload: str) -> None:
    now = time.monotonic()
    _unreadable["since"] += 1
    if _unreadable["said_at"] is not None and now - _unreadable["said_at"] < UNREADABLE_SAID_EVERY_S:
        return
    logger.warning("ignoring %d unreadable payload(s) on hrwsi's channels since this was last said, e.g. %r on "
                   "%s (a notification hrwsi did not send?); waking up anyway", _unreadable["since"], payload[:200],
                   channel)
    _unreadable.update(said_at=now, since=0)


@dataclass(frozen=True)
class Notification:
    channel: str
    op: str = ""
    count: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, channel: str, payload: str) -> Notification:
        """Payloads are small JSON objects of counts; anything else still wakes the service."""
        try:
            data = json.loads(payload) if payload else {}
        except json.JSONDecodeError:
            _tell_unreadable(channel, payload)
            data = {}
        if not isinstance(data, dict):
            data = {}
        counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
        count = data.get("count") if isinstance(data.get("count"), int) else sum(
            v for v in counts.values() if isinstance(v, int)
        )
        return cls(channel, str(data.get("op", "")), count, {str(k): int(v) for k, v in counts.items()
                                                              if isinstance(v, int)})


class Listener:
    """Keeps one asyncpg connection LISTENing on `channels` until `stop()`."""

    def __init__(
        self,
        url: str,
        channels: tuple[str, ...],
        on_notification: Callable[[Notification], None],
        on_connected: Callable[[], None],
        *,
        application_name: str = "hrwsi-listener",
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 5.0,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = LISTENER_CAP_S,
    ):
        self.url = url
        self.application_name = application_name
        # Its log lines' name: `hrwsi up` runs one listener per service, and three identical lines
        # "listener: the database closed our connection" did not say whose (found by exploratory testing).
        self._pooler_told = False
        self.name = application_name.removeprefix("hrwsi-").replace("-listener", " listener")
        self.channels = channels
        self.on_notification = on_notification
        self.on_connected = on_connected
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        # Our own channel: a NOTIFY we send must come back, or the connection is dead.
        self._ping_channel = f"hrwsi_ping_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._pong = asyncio.Event()
        self._stopping = asyncio.Event()
        self.reconnects = 0
        # True while a connection listens (from on_connected until it is lost): the dashboard tells its
        # pages, which learn of changes only through it (hrwsi.web.live).
        self.connected = False
        # The server answered and refused LISTEN (a hot standby: "cannot execute LISTEN during recovery"), since when
        # (monotonic) and when that was last said; None: not refused (listening, connecting, or the server away).
        self.listen_refused: float | None = None
        self._refusal_told: float | None = None
        self.quiet: frozenset[str] = frozenset()  # channels not to listen to for now
        self._conn: asyncpg.Connection | None = None
        self._listening: set[str] = set()  # what the current connection listens to
        # One statement at a time on the connection: LISTEN, UNLISTEN and the ping.
        self._statements = asyncio.Lock()
        self._backoff = Backoff(first_s=backoff_min_s, cap_s=backoff_max_s)
        # When (monotonic) a connection was found silent (its own NOTIFY unanswered), until the next one has
        # checked this process's pooled connections (end_silent_sessions).
        self._went_silent_at: float | None = None
        self._silent_pid: int | None = None  # its server session, left on the server (ended then too)
        self._ended_here: asyncpg.Connection | None = None  # a connection apply() gave up on and ended (said there)

    def set_quiet(self, channels: Iterable[str]) -> None:
        """Which channels not to listen to from now on; `apply` makes it so on the connection (a
        new connection starts so)."""
        self.quiet = frozenset(channels) & frozenset(self.channels)

    async def apply(self) -> None:
        """LISTEN to every channel that is not quiet and UNLISTEN the quiet ones, on the current
        connection. Once it returns, a notification committed on a channel that is not quiet is
        delivered. A connection that fails here is dropped: the listener reconnects, and the
        service catches up as after any reconnect."""
        async with self._statements:
            conn = self._conn
            if conn is None or conn.is_closed():
                return  # the next connection listens as wanted
            try:
                for channel in self.channels:
                    # (bounded, as the ping: a statement on a dead connection must not hold the others)
                    if channel in self.quiet and channel in self._listening:
                        await asyncio.wait_for(conn.remove_listener(channel, self._deliver), self.ping_timeout_s)
                        self._listening.discard(channel)
                    elif channel not in self.quiet and channel not in self._listening:
                        await asyncio.wait_for(conn.add_listener(channel, self._deliver), self.ping_timeout_s)
                        self._listening.add(channel)
            except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:  # (a timeout too)
                # One line for what happened and what the listener does, in its words: it ends this connection
                # itself, and "LISTEN or UNLISTEN failed (...)" was followed by "the database closed our connection"
                # (found by exploratory testing, connections gone half-open).
                self._ended_here = conn
                if isinstance(error, TimeoutError):  # (silent: half-open, as when its own NOTIFY goes unanswered)
                    logger.warning("%s: no answer within %.1f s to the LISTEN or UNLISTEN it sent as the channels its "
                                   "steps wait for changed: its connection went silent (half-open?); reconnecting, "
                                   "then ending this process's pooled connections as silent", self.name,
                                   self.ping_timeout_s)
                    self._went_silent_at, self._silent_pid = time.monotonic(), conn.get_server_pid()
                else:
                    logger.warning("%s: its connection failed as it changed the channels it listens to (%s); "
                                   "reconnecting", self.name, describe(error))
                conn.terminate()

    def _deliver(self, _conn, _pid, channel: str, payload: str) -> None:
        if channel == self._ping_channel:
            self._pong.set()
            return
        self.on_notification(Notification.parse(channel, payload))

    async def run(self) -> None:
        backoff = self._backoff = Backoff(first_s=self.backoff_min_s, cap_s=self.backoff_max_s)
        while not self._stopping.is_set():
            try:
                # Bounded: a connection cut during its handshake must not hang us for asyncpg's 60 s default.
                # (A role's idle_session_timeout cut this connection, idle by design, again and again,
                # and a role's tiny statement_timeout failed its LISTEN: found by exploratory testing.)
                conn = await asyncpg.connect(self.url, timeout=self.ping_timeout_s,
                                             server_settings={"application_name": self.application_name,
                                                              **SESSION_SETTINGS, "idle_session_timeout": "0",
                                                              "statement_timeout": "0"})
            except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
                # (A connection cut during its handshake raises InterfaceError.)
                self.listen_refused = None
                delay = backoff.next()
                self._tell_a_pooler(error)
                # (its own limit, not the pool's that describe names: a server paused (SIGSTOP) was said "no answer
                # within the client's timeout (TimeoutError: 60 s for a statement, 10 s for a new connection)")
                why = (f"no answer within {self.ping_timeout_s:g} s, the listener's connection timeout: the server "
                       "stopped, paused or overloaded?" if isinstance(error, TimeoutError) else describe(error))
                logger.warning("%s: cannot connect to %s (%s); retrying in %.1f s",
                               self.name, redact(self.url), why, delay)
                await self._sleep(delay)
                continue
            refused = False
            try:
                refused = not await self._listen(conn)
            except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
                logger.warning("%s: connection failed (%s); reconnecting", self.name, describe(error))
            finally:
                self._conn = None
                self.connected = False
                if not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), 2)
                    except (TimeoutError, OSError, asyncpg.PostgresError):
                        conn.terminate()
            if refused:  # (it reconnected at once: a connection and a warning every few milliseconds on a standby)
                await self._sleep(backoff.next())

    async def _listen(self, conn: asyncpg.Connection) -> bool:
        """Listen on `conn` until it is lost or the listener stops; False when LISTEN was refused."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            async with self._statements:
                self._conn, self._listening = conn, set()
                await conn.add_listener(self._ping_channel, self._deliver)
                for channel in self.channels:
                    if channel not in self.quiet:
                        await conn.add_listener(channel, self._deliver)
                        self._listening.add(channel)
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
            self._tell_a_pooler(error)
            if isinstance(error, asyncpg.PostgresError) and not isinstance(error, TRANSIENT_DATABASE_ERRORS):
                self._tell_listen_refused(error)
            else:
                logger.warning("%s: LISTEN failed (%s); reconnecting", self.name, describe(error))
            return False
        if self.listen_refused is not None:
            logger.info("%s: LISTEN is taken again (refused for %.0f s); catching up on missed work", self.name,
                        time.monotonic() - self.listen_refused)
        self.listen_refused = self._refusal_told = None
        self._backoff.reset()  # (once it listens: a refused LISTEN is retried with a growing pause)
        if self.reconnects:
            logger.info("%s: reconnected; catching up on missed work", self.name)
        self.reconnects += 1
        self.connected = True
        await self._end_silent_sessions(conn)
        self.on_connected()  # catch up: notifications sent while we were away are gone
        while not self._stopping.is_set() and not lost.is_set():
            await self._sleep(self.ping_interval_s, lost)
            if self._stopping.is_set() or lost.is_set():
                break
            if not await self._ping(conn):
                logger.warning("%s: no answer to our own NOTIFY within %.1f s; reconnecting",
                               self.name, self.ping_timeout_s)
                self._went_silent_at, self._silent_pid = time.monotonic(), conn.get_server_pid()
                conn.terminate()
                return
        if lost.is_set() and not self._stopping.is_set() and self._ended_here is not conn:
            logger.warning("%s: the database closed our connection; reconnecting", self.name)
        return True

    async def _end_silent_sessions(self, conn: asyncpg.Connection) -> None:
        """After a connection went silent, end the pooled ones of this process that are as silent, read on the new
        connection (hrwsi.database.end_silent_sessions); a failure leaves them to asyncpg's command timeout."""
        silent_at, self._went_silent_at = self._went_silent_at, None
        if silent_at is None:
            return
        try:
            async with self._statements:
                # (quiet for half the ping's timeout: a connection dead before the ping was sent has been quiet
                # for all of it, and a step between two statements for milliseconds)
                ended = await asyncio.wait_for(end_silent_sessions(conn, silent_at, self.ping_timeout_s / 2,
                                                                   self._silent_pid), self.ping_timeout_s)
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError) as error:
            logger.warning("%s: cannot check the pooled connections of this process (%s); any that went silent "
                           "too waits for its statement's timeout", self.name, describe(error))
            return
        if ended:
            logger.warning("%s: %d pooled connection(s) of this process, opened before its own went silent, were "
                           "waiting on no statement of the server: ended, the steps that used them start again on "
                           "new connections (a half-open connection: a failover, or a NAT, firewall or load "
                           "balancer that dropped them?)", self.name, ended)

    def _tell_listen_refused(self, error: asyncpg.PostgresError) -> None:
        """The server refuses LISTEN (a hot standby): said once, then every UNREADABLE_SAID_EVERY_S while it lasts,
        not at every try."""
        now = time.monotonic()
        if self.listen_refused is None:
            self.listen_refused = now
        if self._refusal_told is not None and now - self._refusal_told < UNREADABLE_SAID_EVERY_S:
            return
        self._refusal_told = now
        logger.warning("%s: the database refuses LISTEN (%s%s): no notification reaches this process, whose work "
                       "waits for its backstop poll; trying again every %.0f s at most", self.name, describe(error),
                       "; a standby, in recovery?" if "recovery" in str(error) else "", self.backoff_max_s)

    def _tell_a_pooler(self, error: BaseException) -> None:
        """A pooler that refuses what a listener needs is said once, as an error (it retries for ever)."""
        pooler = pooler_refusal(error)
        if pooler is not None and not self._pooler_told:
            self._pooler_told = True
            logger.error("%s: %s", self.name, pooler)

    async def _ping(self, conn: asyncpg.Connection) -> bool:
        self._pong.clear()
        try:
            async with self._statements:
                await asyncio.wait_for(conn.execute("SELECT pg_notify($1, '')", self._ping_channel),
                                       self.ping_timeout_s)
            await asyncio.wait_for(self._pong.wait(), self.ping_timeout_s)
            return True
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError):
            return False

    async def _sleep(self, seconds: float, also: asyncio.Event | None = None) -> None:
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if also is not None:
            waiters.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def stop(self) -> None:
        self._stopping.set()

