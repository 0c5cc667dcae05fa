"""What the three services share: wake-ups routed to steps, catch-up, backstop poll, heartbeat,
side tasks, and a graceful shutdown.

A service is a set of named **steps** (e.g. "plan", "dispatch", "chain"). Each step does one batch
of work in its own transaction and returns True while more work remains. The **router** maps a
notification to the steps it makes dirty; bursts of notifications merge because a step runs once
for everything that arrived while it was busy. Every step is also made dirty on start, after every
listener reconnect, and by the backstop poll, so a lost notification only delays work.

**Side tasks** (`SideTask`) are periodic work beside the steps (harvest due sources, send alerts,
follow Nomad nodes); each declares its interval, and the service runs it. Every background lifetime
of a service (listener, heartbeat, backstop, side tasks) is opened and closed in one `async with`
(`Service._background`). Processes are composed in `hrwsi.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from hrwsi import database_clock, process_identity
from hrwsi.backoff import LISTENER_CAP_S, START_UP_CAP_S, Backoff
from hrwsi.database import EMBEDDED_START_HINT, TRANSIENT_DATABASE_ERRORS, embedded_server_down, names_embedded_server
from hrwsi.database_clock import DatabaseClock
from hrwsi.database_trouble import connections_refused, describe, is_conflict, pooler_refusal, read_only_refusal
from hrwsi.installed_code import CANNOT_TELL, CHECK_EVERY_S, code_dir, fingerprint
from hrwsi.listener import Listener, Notification
from hrwsi.metrics import InstanceHealth, error_kind
from hrwsi.migrations import build_version, newest_shipped
from hrwsi.reports import blocking_session_next_step
from hrwsi.settings import Settings
from hrwsi.sql_files import query
from hrwsi.terminal import shown

logger = logging.getLogger(__name__)


Step = Callable[[], Awaitable[bool]]


# The fencing error raised by the database (hrwsi.require_lease) when a caller's lease lapsed.
LEASE_LAPSED_SQLSTATE = "HW001"
# pg_try_advisory_xact_lock refused: another replica does this step right now (hrwsi.dispatch says
# so); or a lock wait ran out (lock_timeout, service_session_settings), the same SQLSTATE.
BUSY_SQLSTATE = "55P03"
BUSY_RETRY_S = 0.05
# A step whose statement waited lock_timeout tries again after this long, doubling at each wait in a row up to the cap,
# and again at once after its lock is got: each try holds the service's loop for lock_timeout (10 s), and retried
# every BUSY_RETRY_S, the service's other steps got one turn per 10 s while a LOCK TABLE left open in psql lasted
# (found by rehearsal). Meanwhile a wake-up (a notification, the backstop) does not run it before its back-off ends.
LOCK_WAIT_BACKOFF_FIRST_S = 1.0
LOCK_WAIT_BACKOFF_CAP_S = 30.0
# The notification queue this full (0-1) is said: PostgreSQL itself warns from half full on.
NOTIFICATION_QUEUE_SAID = 0.5
# While a step cannot reach the database, it says so again this often (its first failure at once).
UNREACHABLE_LOG_EVERY_S = 30.0
# A heartbeat that could not reach the database tries again this soon (at most every heartbeat_s).
HEARTBEAT_RETRY_S = 1.0


# A service started while the database refuses writes (a standby after a failover, default_transaction_read_only)
# tries to register this often, and says that it still waits this often (one line for the services of its process).
WRITES_AWAITED_EVERY_S = 5.0
WRITES_AWAITED_SAID_EVERY_S = 60.0
# While writes are refused, a service opens its pool's sessions anew (so that a fix of the setting is read) after
# WRITES_AWAITED_EVERY_S, then twice as long each time, at most this long apart: every 5 s, each service's pool
# closed and opened all its sessions for as long as the refusals lasted (found by review).
SESSIONS_RENEWED_AT_MOST_EVERY_S = 60.0


@dataclass
class _WritesAwaited:
    """The services of one process waiting for the database to take writes: at start (since when, how many
    refusals and when last said), and while they run (`refusing`: since when any of them met a refusal, counted
    for them all). Shared (hrwsi.app.build_services): `hrwsi up` runs four services, and one line says it for
    all of them, at start, when writes are refused while they run, and when they go through again (each service
    said those two itself: four lines for one failover, found by review)."""

    services: weakref.WeakSet
    streak: _Streak | None = None
    refusing: _Streak | None = None

    def kinds(self) -> str:
        return ", ".join(sorted({service.kind for service in self.services}))

    def refused(self, refused: BaseException) -> None:
        """A write of one of the services refused while they run: said once for them all, then one line every
        UNREACHABLE_LOG_EVERY_S while it lasts."""
        now = time.monotonic()
        streak = self.refusing = self.refusing or _Streak(now)
        if not streak.another(now):
            return
        if streak.attempts == 1:
            logger.error("%s: %s; the sessions are opened anew (to read the setting again) after %g s, then less often, at "
                         "most every %g s: a fix is taken up within that", self.kinds(), read_only_refusal(refused),
                         WRITES_AWAITED_EVERY_S, SESSIONS_RENEWED_AT_MOST_EVERY_S)
        else:
            logger.error("%s: the database still refuses hrwsi's writes (%d refusals in %.0f s; a standby, or "
                         "default_transaction_read_only on): nothing is written; trying again", self.kinds(),
                         streak.attempts, now - streak.since)

    def taken_again(self) -> None:
        """A write of one of the services went through after refusals: one line for them all (the database takes
        them for every service of the process, which shares one pool and role); the others, whose next write goes
        through in turn, say nothing more."""
        if (streak := self.refusing) is not None:
            self.refusing = None
            logger.info("%s: the database takes hrwsi's writes again (after %d refusal(s) in %.0f s)", self.kinds(),
                        streak.attempts, time.monotonic() - streak.since)

    def tell(self, refused: BaseException) -> None:
        now = time.monotonic()
        self.refusing = self.refusing or _Streak(now)  # (counted for the line that says when writes go through again)
        self.refusing.attempts += 1
        streak = self.streak = self.streak or _Streak(now)
        streak.attempts += 1
        if streak.told is not None and now - streak.told < WRITES_AWAITED_SAID_EVERY_S:
            return
        streak.told = now
        if streak.attempts == 1:
            many = len(self.services) > 1
            logger.warning("%s: %s; %s all the same and %s once the database takes writes, trying every %g s "
                           "(Ctrl-C or SIGTERM stops %s at once)", self.kinds(), read_only_refusal(refused),
                           "they start" if many else "it starts", "register" if many else "registers",
                           WRITES_AWAITED_EVERY_S, "them" if many else "it")
        else:
            logger.warning("%s: still waiting for the database to take hrwsi's writes (%d refusals in %.0f s; a standby, "
                           "or default_transaction_read_only on); trying every %g s", self.kinds(), streak.attempts,
                           now - streak.since, WRITES_AWAITED_EVERY_S)


# A statement that runs longer than this is logged with its name and duration.
SLOW_STATEMENT_S = 5.0


def is_lock_timeout(error: asyncpg.PostgresError) -> bool:
    """A lock wait that ran out (the server's lock_timeout), not a refusal raised by hrwsi's own SQL.
    Told apart by where the server raised it, which no locale translates."""
    return getattr(error, "server_source_function", None) == "ProcessInterrupts"


async def lock_holders(pool: asyncpg.Pool) -> str | None:
    """The sessions that may hold the lock a statement waited lock_timeout for (query
    sessions_holding_locks_a_step_waited_for), in words: pid, client, role, state, since when, what they hold, how
    to end them. A step's line said only that `hrwsi status` names the session, which it does only while a service
    waits (found by rehearsal). None when none is seen or the read fails (the caller says the wait all the same)."""
    try:
        rows = await pool.fetch(query("sessions_holding_locks_a_step_waited_for"), timeout=5.0)
    except (asyncpg.PostgresError, *TRANSIENT_DATABASE_ERRORS):
        return None
    if not rows:
        return None
    return "; ".join(
        f"pid {row['pid']} ({shown(row['application'] or '')}, role {shown(row['role'])}"
        + (f", {row['state']}" if row["state"] else "")
        + (f", its transaction open since {row['xact_start'].astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
           if row["xact_start"] else "")
        + f") holds {row['held']}: {blocking_session_next_step(row['pid'])}" for row in rows)


# (said when no holder is seen: one that ended meanwhile, or of a lock on no table of hrwsi)
LOCK_HOLDER_UNSEEN = "a transaction left open? `hrwsi status` names the session while a service waits"


@dataclass
class _Streak:
    """Failures of one kind of one step in a row: since when (monotonic), how many, when last said.
    The first is said at once, then one line every UNREACHABLE_LOG_EVERY_S while it lasts."""

    since: float
    attempts: int = 0
    told: float | None = None

    def another(self, now: float) -> bool:
        """Count one more; whether to say so now."""
        self.attempts += 1
        if self.told is not None and now - self.told < UNREACHABLE_LOG_EVERY_S:
            return False
        self.told = now
        return True


@dataclass
class _EmbeddedWatch:
    """The embedded server of one data directory, as the services of this process that use it found it:
    since when it does not run, and when that was last said. Shared: `hrwsi up` runs four services,
    and each said its own "the embedded PostgreSQL server ... is not running" line, with each of its
    steps' own "could not reach the database" lines (found by exploratory testing)."""

    services: weakref.WeakSet
    streak: _Streak | None = None

    def kinds(self) -> list[str]:
        return sorted({service.kind for service in self.services})


_EMBEDDED_WATCHES: dict[str, _EmbeddedWatch] = {}


def _embedded_watch(pgdata: os.PathLike) -> _EmbeddedWatch:
    return _EMBEDDED_WATCHES.setdefault(os.fspath(pgdata), _EmbeddedWatch(weakref.WeakSet()))


@dataclass
class _CodeWatch:
    """The code this process started with (its hrwsi package's directory and fingerprint, taken once by
    its first service) and whether its change on disk was said. Shared: `hrwsi up` runs four services,
    and one line says it for all of them."""

    services: weakref.WeakSet
    started: tuple[str, str | None] | None = None
    told: bool = False
    checked_at: float = float("-inf")  # (monotonic) each service's side task calls check: one walk serves them all

    async def start(self) -> tuple[str, str | None]:
        if self.started is None:
            directory = code_dir()
            taken = (directory, await asyncio.to_thread(fingerprint, directory))  # (a walk of the files: not on the loop)
            self.started = self.started or taken
        return self.started

    async def check(self) -> None:
        """Said once, as a warning: `make install` is editable, and a `git pull` replaced the code under
        running services, whose lazy imports then mixed two versions (found by exploratory testing)."""
        if self.told or self.started is None or time.monotonic() - self.checked_at < CHECK_EVERY_S / 2:
            return
        self.checked_at = time.monotonic()
        directory, started = self.started
        now = await asyncio.to_thread(fingerprint, directory)
        if now in (started, CANNOT_TELL) or self.told:
            return
        self.told = True
        kinds = ", ".join(sorted({service.kind for service in self.services}))
        logger.warning("code on disk changed since %s started (%s%s): restart %s to run the new code", kinds,
                       directory, ", now gone" if now is None else "", "it" if "," not in kinds else "them")


_CODE_WATCH = _CodeWatch(weakref.WeakSet())


class StatementTimedOut(Exception):
    """A step's statement was cancelled by the server's statement_timeout."""

    def __init__(self, name: str, seconds: float):
        super().__init__(f"statement {name} was cancelled after {seconds:.1f} s (statement_timeout)")
        self.name = name
        self.seconds = seconds


@dataclass
class AdaptiveBatch:
    """A batch size that halves when a statement of that size times out (so that no step can
    livelock on a statement that never finishes in time) and grows back after successes."""

    size: int
    floor: int = 1

    def __post_init__(self) -> None:
        self.ceiling = self.size

    def shrink(self) -> int:
        self.size = max(self.floor, self.size // 2)
        return self.size

    def succeeded(self) -> None:
        self.size = min(self.ceiling, self.size * 2)


@contextlib.asynccontextmanager
async def timed_statement(name: str) -> AsyncIterator[None]:
    """Name a statement for the log: a slow one is logged with its duration, and a cancelled one
    (statement_timeout) becomes StatementTimedOut, which the step's caller logs and acts on."""
    started = time.monotonic()
    try:
        yield
    except asyncpg.QueryCanceledError:
        raise StatementTimedOut(name, time.monotonic() - started) from None
    elapsed = time.monotonic() - started
    if elapsed > SLOW_STATEMENT_S:
        logger.warning("statement %s took %.1f s", name, elapsed)


def step_error_kind(error: BaseException) -> str:  # metrics hook (issue 13): hrwsi_step_errors_total{kind}
    return "statement_timeout" if isinstance(error, StatementTimedOut) else error_kind(error)


def new_instance_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class SideTask:
    """Work a service does beside its steps every `interval_s` seconds until it stops (the first run
    comes at once, or after one interval with `delay_first`). A failure is logged; the task runs again
    at its next interval."""

    name: str
    run: Callable[[], Awaitable[object]]
    interval_s: float
    delay_first: bool = False
    # After a run that could not reach the database, the next try comes this soon (None: at the
    # next interval), and the log says so once, not at every try.
    retry_s: float | None = None


@dataclass(frozen=True)
class Route:
    channel: str
    step: str
    when: Callable[[Notification], bool] = lambda _n: True
    # Wake the step this long after the first notification (a burst costs one round); a function
    # when the delay follows a setting that may change while the service runs.
    debounce_s: float | Callable[[], float] = 0.0
    # Whether the route wakes anything now (False: as if it were not there). A service whose step
    # makes a route active again listens again before it relies on it (Service.listen_as_routes_need).
    active: Callable[[], bool] = lambda: True

    def delay(self) -> float:
        return self.debounce_s() if callable(self.debounce_s) else self.debounce_s


class Router:
    """A small typed router from notification to the steps it wakes."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def on(self, channel: str, step: str, when: Callable[[Notification], bool] = lambda _n: True,
           debounce_s: float | Callable[[], float] = 0.0, active: Callable[[], bool] = lambda: True) -> None:
        self.routes.append(Route(channel, step, when, debounce_s, active))

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.channel for r in self.routes))

    def steps_for(self, notification: Notification) -> dict[str, float]:
        """The steps a notification wakes, each with its debounce delay."""
        steps: dict[str, float] = {}
        for route in self.routes:
            if route.channel == notification.channel and route.active() and route.when(notification):
                delay = route.delay()
                steps[route.step] = min(steps.get(route.step, delay), delay)
        return steps


class Service:
    """Base of harvester, orchestrator and launcher. Subclasses fill `steps`, `router`, `side_tasks`."""

    kind = "service"
    listener_cap_s = LISTENER_CAP_S  # the longest wait before the LISTEN connection tries again

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.settings = settings
        self.instance_id = new_instance_id(self.kind)
        # Identities this process held before its lease lapsed: removed with its own when it stops
        # (they showed as "stale: dead or hung?" in status for an hour after a graceful stop).
        self.earlier_ids: list[str] = []
        self.registered = False  # its lease was written once: a failed start removes it (unregister)
        # Why it may not register anew (its registration check refused it after its lease lapsed): it
        # stops, and run() raises this, so that the process ends with it as at a refused start.
        self.refused: Exception | None = None
        self.router = Router()
        self.steps: dict[str, Step] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.rounds = 0
        self.listener: Listener | None = None
        self._lease_lock = asyncio.Lock()
        # The database's time as this host reckons it: what the service sends as "now" (plans,
        # claims, progress), measured at every heartbeat (hrwsi.database_clock).
        self.clock = DatabaseClock(self.kind)
        # The notification queue past NOTIFICATION_QUEUE_SAID, as said (and since when); None: not.
        self._queue_problem: tuple[str, datetime] | None = None
        # When the database last confirmed the lease (monotonic, taken before the statement was sent):
        # what `lease_held` reckons from. Never confirmed: not held.
        self._lease_confirmed_at: float | None = None
        self._newer_schema_told: int | None = None  # the newest migration of a newer hrwsi, once logged
        self._due: dict[str, asyncio.TimerHandle] = {}  # steps woken later (wake_later), by name
        # Steps that cannot reach the database, and steps whose statements wait for a lock: step -> streak.
        self._unreachable: dict[str, _Streak] = {}
        self._lock_waits: dict[str, _Streak] = {}
        # Steps backing off after lock waits in a row: step -> (event loop time before which they do not run, pause).
        self._lock_backoff: dict[str, tuple[float, float]] = {}
        self._pooler: tuple[str, datetime] | None = None  # a pooler hrwsi cannot work through, once met
        # The database refusing writes (a standby, default_transaction_read_only): since when, said once
        # and then every UNREACHABLE_LOG_EVERY_S, until a heartbeat (a write) goes through again.
        self._read_only: _Streak | None = None
        self._sessions_renewed_at = float("-inf")  # (monotonic) the pool's sessions last opened anew for a refusal
        self._sessions_renewed_after_s = WRITES_AWAITED_EVERY_S  # (then the next time: doubled, bounded)
        # The server refused a connection for want of a slot (max_connections), and since when: this service's
        # problem (status, the dashboard) until one of its steps or side tasks reaches the database again.
        self._connections_refused: tuple[str, datetime] | None = None
        # The embedded server found not running (said once, then every UNREACHABLE_LOG_EVERY_S), and its
        # data directory when this service's database is the embedded server (None: another server).
        self._embedded_pgdata = settings.pgdata if settings.database_url is None or names_embedded_server(
            settings.database_url, settings.pgdata) else None
        self._embedded_watch = _embedded_watch(settings.pgdata)  # (shared with this process's other services)
        self._embedded_watch.services.add(self)
        # Waiting at start for the database to take writes (shared by the services of the process: share_writes_awaited).
        self._writes_awaited = _WritesAwaited(weakref.WeakSet([self]))
        self._code_watch = _CODE_WATCH  # (the code this process started with: shared by its services)
        self._code_watch.services.add(self)
        self._listen_first = False  # a step fell due: listen again to what only it waits for, then run it
        self._quieting: set[asyncio.Task] = set()
        self.health = InstanceHealth(self.kind, step_error_kind)  # metrics hook (issue 13): /healthz, /metrics
        self._process_identity: str | None = None  # (hrwsi.process_identity, read at the first registration; "": none)

    # -- hooks -----------------------------------------------------------------------------
    async def preflight(self) -> None:
        """Before any service of the process starts (hrwsi.app.App): raise what makes this one unable to
        work (a setting naming what does not exist), so that the process stops at once in one line."""

    async def start(self) -> None:
        """Before the loop: e.g. adopt orphaned work."""

    async def stop(self) -> None:
        """After the loop: e.g. hand back in-flight work."""

    def stop_allowance_s(self) -> float:
        """How long this service's own stop may take beyond its last writes (hrwsi.app.App._bound_the_stop): a
        launcher's wait for its jobs and its backend's stop of the rest; 0 for the others."""
        return 0.0

    def unwritten_at_stop(self) -> str | None:
        """What this service has not written yet, said when a stop cannot wait for the database
        (hrwsi.app.App._bound_the_stop); None: nothing."""
        return f"the removal of {self.kind} {self.instance_id}'s row"

    def side_tasks(self) -> list[SideTask]:
        """Periodic work beside the steps, each with its interval."""
        return []

    def share_writes_awaited(self, others: list[Service]) -> None:
        """One line for the services of one process while they wait at start for the database to take writes."""
        shared = _WritesAwaited(weakref.WeakSet(others))
        for service in others:
            service._writes_awaited = shared

    def waiting_for_writes(self, waiting: bool) -> None:
        """Hook: the service waits at start for the database to take writes (True), or no longer (False)."""

    # -- waking ----------------------------------------------------------------------------
    def wake(self, *steps: str) -> None:
        self._dirty.update(steps or self.steps)
        self._wake.set()

    def notify(self, notification: Notification) -> None:
        for step, delay in self.router.steps_for(notification).items():
            if delay <= 0:
                self.wake(step)
            else:
                self.wake_later(step, delay)

    def wake_later(self, step: str, delay_s: float) -> None:
        """Wake `step` in `delay_s` seconds, unless it is due sooner already (one timer per step).

        While it is due, a channel whose notifications would only wake it is not listened to: they
        would change nothing, and each one woke this process and its listener's server process on
        the machine's other core just as another service reacted to the same commit. (The
        orchestrator's plan step, due within 2 s whenever tasks wait, woke at every new input: with
        the orchestrator not listening at all, the launcher's reaction was 0.15-0.2 ms faster at the
        median, 2026-12-05.) The channel is listened to again before the step runs
        (`run_dirty_steps`): what was committed before, the step reads."""
        loop = asyncio.get_running_loop()
        at = loop.time() + delay_s
        timer = self._due.get(step)
        if timer is not None:
            if timer.when() <= at:
                return
            timer.cancel()
        self._due[step] = loop.call_at(at, self._fell_due, step)
        self._listen_as_routes_need()

    def _fell_due(self, step: str) -> None:
        del self._due[step]
        self._listen_first = self._listen_as_routes_need() or self._listen_first
        self.wake(step)

    async def listen_as_routes_need(self) -> None:
        """After a step made a route active or inactive: quiet or listen again as the routes need
        now; returns once a channel to listen to again is listened to (the step then wakes itself, to
        read what came before)."""
        if self._listen_as_routes_need() and self.listener is not None:
            await self.listener.apply()

    def _listen_as_routes_need(self) -> bool:
        """Quiet the channels whose routes are all inactive or wake steps that are due; True when a
        channel is to be listened to again (which the caller awaits before the step runs)."""
        if self.listener is None:
            return False
        quiet = {channel for channel in self.router.channels
                 if all(route.step in self._due or not route.active()
                        for route in self.router.routes if route.channel == channel)}
        if quiet == self.listener.quiet:
            return False
        louder = bool(self.listener.quiet - quiet)
        self.listener.set_quiet(quiet)
        if not louder:  # only quieter: nothing waits for it
            task = asyncio.get_running_loop().create_task(self.listener.apply())
            self._quieting.add(task)
            task.add_done_callback(self._quieting.discard)
        return louder

    # -- the loop --------------------------------------------------------------------------
    async def run_step(self, name: str) -> bool:
        """Run one step once; a failure is logged and retried later, never fatal to the service."""
        try:
            more = await self.health.timed_step(name, self.steps[name])  # metrics hook (issue 13)
            self._reached_again(name)
            return more
        except StatementTimedOut as timed_out:
            logger.error("%s: step %s: %s; %s", self.kind, name, timed_out, self.on_statement_timeout(timed_out.name))
            self.wake(name)
            return False
        except TRANSIENT_DATABASE_ERRORS as error:
            self._tell_unreachable(name, error)
        except asyncpg.PostgresError as error:
            return await self._step_refused(name, error)
        except Exception:
            # A row or a state nobody foresaw: say so loudly, keep serving, try again later.
            logger.exception("%s: step %s failed; retrying in %.1f s", self.kind, name,
                             self.settings.backstop_poll_s)
        self._retry_later(name)
        return False

    async def _step_refused(self, name: str, error: asyncpg.PostgresError) -> bool:
        if error.sqlstate == BUSY_SQLSTATE:
            if is_lock_timeout(error):
                pause = self._back_off_lock_wait(name)
                await self._tell_lock_wait(name, pause)
                return False
            # Another replica runs this step right now (its commit wakes us, this is the backstop): try again at once.
            asyncio.get_running_loop().call_later(BUSY_RETRY_S, self.wake, name)
            return False
        if error.sqlstate == LEASE_LAPSED_SQLSTATE:
            try:
                await self.lease_lost()
            except TRANSIENT_DATABASE_ERRORS as unreachable:  # (raised here, it ended the service)
                self._tell_unreachable(name, unreachable)
                self._retry_later(name)
                return False
            except asyncpg.ReadOnlySQLTransactionError as refused:  # (a fenced call reads the lease before it
                # writes: on a standby it is told of the lapse, and the new lease is refused; raised here, it ended
                # the service, and `hrwsi up` with it, found by exploratory testing)
                self._tell_read_only(refused)
                self._retry_later(name)
                return False
            return True  # act again, as the new identity
        if (pooler := pooler_refusal(error)) is not None:
            # Said once: it fails at every step and every retry until the pooler or the URL changes.
            if self._pooler is None:
                self._pooler = (pooler, self.clock.now())
                logger.error("%s: %s", self.kind, pooler)
            self._retry_later(name)
            return False
        if isinstance(error, asyncpg.ReadOnlySQLTransactionError):
            self._tell_read_only(error)
            self._retry_later(name)
            return False
        logger.error("%s: step %s failed in the database: %s; retrying in %.1f s",
                     self.kind, name, error, self.settings.backstop_poll_s)
        self._retry_later(name)
        return False

    def _tell_read_only(self, refused: asyncpg.ReadOnlySQLTransactionError) -> None:
        """The database refuses writes: one line for the process's services (every step and heartbeat of each
        meets it; database_trouble.read_only_refusal; _WritesAwaited.refused), then one line every
        UNREACHABLE_LOG_EVERY_S while it lasts."""
        now = time.monotonic()
        streak = self._read_only = self._read_only or _Streak(now)
        if streak.attempts == 0:  # (a new streak of refusals: the first renewal comes after the least pause)
            self._sessions_renewed_after_s = WRITES_AWAITED_EVERY_S
        pause = self._sessions_renewed_after_s
        if now - self._sessions_renewed_at >= pause:
            # A session keeps the default_transaction_read_only it opened with: once ops turn it off, the sessions
            # that met it would refuse on (until the pool closed them idle, if ever). Opened anew as they come back,
            # less and less often while the refusals last (5, 10, 20, 40, 60, 60 ... s apart).
            if streak.attempts > 0:
                self._sessions_renewed_after_s = min(2 * pause, SESSIONS_RENEWED_AT_MOST_EVERY_S)
            self._sessions_renewed_at = now
            task = asyncio.get_running_loop().create_task(self.pool.expire_connections())
            self._quieting.add(task)
            task.add_done_callback(self._quieting.discard)
        streak.attempts += 1
        self._writes_awaited.refused(refused)  # (said for the process's services: one line for them all)

    def _writes_again(self) -> None:
        if self._read_only is not None:
            self._read_only = None
            self._writes_awaited.taken_again()

    def _retry_later(self, name: str) -> None:
        # One timer per step (wake_later): a timer per failure piled up while the database was away,
        # each wake-up of the step (the backstop poll, a notification) adding one more: a step ran,
        # failed and logged 1, 2, 3 ... 9 times per poll after 30 s of an outage (2026-12-05).
        self.wake_later(name, self.settings.backstop_poll_s)

    def pool_cut_by_the_stop(self) -> bool:
        """Whether a bounded stop terminated the pool (hrwsi.app.App._bound_the_stop): its line said what was left
        unwritten, and every write that fails from then on fails for that; said again, each read like a new fault
        ("could not record the outcome of 1 job(s) (pool is closed); retrying", four times in 2 s: found by
        exploratory testing)."""
        return self.stopping.is_set() and self.pool.is_closing()

    def _tell_unreachable(self, name: str, error: BaseException) -> None:
        """The first failure of a step to reach the database is a warning; while it lasts, one line
        every UNREACHABLE_LOG_EVERY_S says so again, with how long and how many attempts."""
        if self.pool_cut_by_the_stop():
            return
        now = time.monotonic()
        streak = self._unreachable.setdefault(name, _Streak(now))
        if not streak.another(now):
            return
        if (refused := self._refused_a_connection(error)) is not None:  # (the server answered: it is no outage)
            logger.warning("%s: step %s %s: %s; retrying every %g s", self.kind, name,
                           "was refused a connection" if streak.attempts == 1 else
                           f"is still refused connections ({streak.attempts} attempts in {now - streak.since:.0f} s)",
                           refused, self.settings.backstop_poll_s)
            return
        if is_conflict(error):  # (a serialization failure or a deadlock: it reached the database)
            logger.warning("%s: step %s %s another transaction (%s); retrying every %g s", self.kind, name,
                           "conflicted with" if streak.attempts == 1 else
                           f"still conflicts ({streak.attempts} attempts in {now - streak.since:.0f} s) with",
                           describe(error), self.settings.backstop_poll_s)
            return
        if self._tell_embedded_server_down(now):
            return  # (what every step would say, the embedded server's line said for them all)
        if streak.attempts == 1:
            logger.warning("%s: step %s could not reach the database (%s); retrying every %g s",
                           self.kind, name, describe(error), self.settings.backstop_poll_s)
        else:
            logger.warning("%s: step %s still cannot reach the database (%s): %d attempts in %.0f s; retrying "
                           "every %g s", self.kind, name, describe(error), streak.attempts, now - streak.since,
                           self.settings.backstop_poll_s)

    def _tell_embedded_server_down(self, now: float) -> bool:
        """When this service's database is the embedded server and that server does not run (killed,
        crashed, stopped), say so, whether it stopped cleanly and what starts it: once for all the
        services of the process, then every UNREACHABLE_LOG_EVERY_S while it lasts; whether it is down
        (then the step's own line would say nothing more). (The services said only "could not reach
        the database ([Errno 111] Connection refused)", naming neither the embedded server nor `hrwsi
        db start`, while production stood still: found by exploratory testing.) It reads two files, no
        more often than it may say so."""
        watch = self._embedded_watch
        streak = watch.streak
        if self._embedded_pgdata is None:
            return False
        if streak is not None and streak.told is not None and now - streak.told < UNREACHABLE_LOG_EVERY_S:
            return True  # (said lately, by this service or another of the process)
        down = embedded_server_down(self._embedded_pgdata)
        if down is None:  # it runs: the trouble is elsewhere (the step's own line says what)
            watch.streak = None
            return False
        streak = watch.streak = streak or _Streak(now)
        streak.another(now)
        kinds = watch.kinds()
        logger.error("%s: %s; %s, and %s%s", ", ".join(kinds) or self.kind, down, EMBEDDED_START_HINT,
                     "this service reconnects by itself" if len(kinds) <= 1 else "these services reconnect by themselves",
                     "" if streak.attempts == 1 else f" (the database unreachable for {now - streak.since:.0f} s)")
        return True

    def _back_off_lock_wait(self, name: str) -> float:
        """The step waited lock_timeout once more: it runs again after its back-off (LOCK_WAIT_BACKOFF_FIRST_S, doubled
        at each wait in a row, at most LOCK_WAIT_BACKOFF_CAP_S), which its timer ends; returns the pause."""
        _until, last = self._lock_backoff.get(name, (0.0, 0.0))
        pause = LOCK_WAIT_BACKOFF_FIRST_S if not last else min(2 * last, LOCK_WAIT_BACKOFF_CAP_S)
        loop = asyncio.get_running_loop()
        self._lock_backoff[name] = (loop.time() + pause, pause)
        self.wake_later(name, pause)
        return pause

    def _backing_off(self, name: str) -> bool:
        """Whether the step is in its back-off after a lock wait (then it is woken again when that ends)."""
        if name not in self._lock_backoff:
            return False
        remaining = self._lock_backoff[name][0] - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        self.wake_later(name, remaining)  # (its timer, in case another timer of the step took its place)
        return True

    async def _tell_lock_wait(self, name: str, pause: float) -> None:
        """A step whose statement waited `lock_timeout` for a lock another session holds says so at
        once, then every UNREACHABLE_LOG_EVERY_S while it lasts, naming the sessions that may hold it
        (_lock_holders). (It was taken for another replica running the step, and retried without a word:
        one transaction left open in a SQL client stopped the chaining of every tile for as long as it
        stayed open.)"""
        now = time.monotonic()
        streak = self._lock_waits.setdefault(name, _Streak(now))
        if not streak.another(now):
            return
        holders = await self._lock_holders()
        logger.warning("%s: step %s %s a lock another session holds; trying again in %g s (up to %g s apart while it "
                       "lasts; the other steps run meanwhile): %s", self.kind, name,
                       "could not get, within lock_timeout," if streak.attempts == 1
                       else f"still waits ({streak.attempts} waits in {now - streak.since:.0f} s) for",
                       pause, LOCK_WAIT_BACKOFF_CAP_S, holders or LOCK_HOLDER_UNSEEN)

    async def _lock_holders(self) -> str | None:
        return await lock_holders(self.pool)

    def _refused_a_connection(self, error: BaseException) -> str | None:
        """The words for a connection refused for want of a slot (database_trouble.connections_refused), kept
        as this service's problem from the first refusal on; None for any other error."""
        refused = connections_refused(error)
        if refused is not None:
            self._connections_refused = (refused, self._connections_refused[1] if self._connections_refused
                                         else self.clock.now())
        return refused

    def _reached_again(self, name: str) -> None:
        self._connections_refused = None  # (it got a connection)
        self._lock_backoff.pop(name, None)  # (it got its lock: a wait later backs off from the least pause again)
        if (waits := self._lock_waits.pop(name, None)) is not None:
            logger.info("%s: step %s got its lock (after %d wait(s) in %.0f s)", self.kind, name, waits.attempts,
                        time.monotonic() - waits.since)
        if (outage := self._unreachable.pop(name, None)) is not None:
            logger.info("%s: step %s reaches the database again (after %d failed attempt(s) in %.0f s)",
                        self.kind, name, outage.attempts, time.monotonic() - outage.since)

    async def run_dirty_steps(self) -> None:
        while self._dirty and not self.stopping.is_set():
            if self._listen_first and self.listener is not None:
                self._listen_first = False
                await self.listener.apply()
            name = sorted(self._dirty)[0]
            self._dirty.discard(name)
            if self._backing_off(name):
                continue  # (a wake-up of a step backing off after lock waits: its timer runs it)
            if await self.run_step(name):
                self._dirty.add(name)  # more work remains: go again, after the other steps
            self.rounds += 1

    async def run(self, url: str) -> None:
        """Serve until stop is requested (SIGINT/SIGTERM through hrwsi.app, or request_stop())."""
        self.listener = Listener(url, self.router.channels, self.notify, lambda: self.wake(),
                                 ping_interval_s=self.settings.heartbeat_s, backoff_max_s=self.listener_cap_s,
                                 application_name=f"hrwsi-{self.kind}-listener")
        self._listen_as_routes_need()  # (a step made due before it runs)
        await self._register()
        if self.stopping.is_set() and not self.registered:
            return  # (stopped while it waited for the database to take writes: nothing of it was written)
        try:
            await self.start()
        except BaseException:
            await self.unregister()  # (a service that never ran showed in status until its lease expired)
            raise
        try:
            async with self._background():
                logger.info("%s %s started; listening on %s", self.kind, self.instance_id,
                            ", ".join(self.router.channels))
                self.wake()
                self.health.loop_turned()  # metrics hook (issue 13): the loop runs from here on
                while not self.stopping.is_set():
                    # One event, which a stop request sets too: a wake-up is one turn of the event loop
                    # (waiting on two events took two tasks and asyncio.wait per wake-up, all of it
                    # between a notification and the step it wakes).
                    await self._wake.wait()
                    self._wake.clear()
                    await self.run_dirty_steps()
                    self.health.loop_turned()  # metrics hook (issue 13): /healthz
                logger.info("%s %s stopping", self.kind, self.instance_id)
        finally:
            for timer in self._due.values():
                timer.cancel()
            self._due.clear()
            await self.stop()
            await self.unregister()
            logger.info("%s %s stopped", self.kind, self.instance_id)
        if self.refused is not None:
            raise self.refused

    @contextlib.asynccontextmanager
    async def _background(self) -> AsyncIterator[None]:
        """Every background lifetime of this service: listener, heartbeat, backstop, side tasks."""
        assert self.listener is not None
        # The heartbeat tries again within a second of the database coming back: at its interval, a
        # 10 s outage cost every service its 15 s lease (found by exploratory testing).
        periodic = [SideTask("heartbeat", self._heartbeat_once, self.settings.heartbeat_s, delay_first=True,
                             retry_s=min(HEARTBEAT_RETRY_S, self.settings.heartbeat_s)),
                    SideTask("backstop", self._backstop_once, self.settings.backstop_poll_s, delay_first=True),
                    SideTask("code check", self._code_watch.check, CHECK_EVERY_S, delay_first=True),
                    *self.side_tasks()]
        background = [asyncio.create_task(self.listener.run(), name=f"{self.kind}-listener")]
        background += [asyncio.create_task(self._every(task), name=f"{self.kind}-{task.name}") for task in periodic]
        try:
            yield
        finally:
            self.listener.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
            return False
        except TimeoutError:
            return True

    async def _every(self, task: SideTask) -> None:
        """Run one side task every interval; a failure is logged and the task goes on.

        Never let a side task end while the service runs: a silent heartbeat, for one, lets the
        lease run out and other replicas adopt work this one still does (ADR 0006)."""
        if task.delay_first and not await self._sleep(task.interval_s):
            return
        unreachable = False  # the last run could not reach the database
        while not self.stopping.is_set():
            pause = task.interval_s
            try:
                await task.run()
                if unreachable:
                    logger.info("%s: %s reaches the database again", self.kind, task.name)
                unreachable = False
            except TRANSIENT_DATABASE_ERRORS as error:
                if (refused := self._refused_a_connection(error)) is not None:
                    pause = task.retry_s or task.interval_s
                    if not unreachable:
                        logger.warning("%s: %s was refused a connection: %s; trying again %s", self.kind, task.name,
                                       refused, f"every {pause:.1f} s" if task.retry_s else f"in {pause:.1f} s")
                    unreachable = bool(task.retry_s)
                elif is_conflict(error):  # (it reached the database: another transaction won)
                    logger.warning("%s: %s conflicted with another transaction (%s); trying again in %.1f s",
                                   self.kind, task.name, describe(error), task.interval_s)
                else:
                    pause = task.retry_s or task.interval_s
                    if self._tell_embedded_server_down(time.monotonic()):
                        unreachable = True  # (the embedded server's line said it for every service)
                    if not unreachable:
                        logger.warning("%s: %s could not reach the database (%s); trying again %s", self.kind,
                                       task.name, describe(error),
                                       f"every {pause:.1f} s" if task.retry_s else f"in {pause:.1f} s")
                    unreachable = bool(task.retry_s)
            except Exception as error:
                if isinstance(error, asyncpg.ReadOnlySQLTransactionError):
                    self._tell_read_only(error)  # (a traceback at every heartbeat said nothing more)
                else:
                    logger.exception("%s: %s failed; it runs again in %.1f s", self.kind, task.name, task.interval_s)
            if not await self._sleep(pause):
                return

    async def _backstop_once(self) -> None:
        self.wake()

    async def _heartbeat_once(self) -> None:
        """Renew the lease; if it lapsed (a pause longer than the lease), stop acting under this
        identity: drop in-flight claims (others may have adopted them) and register anew."""
        self.health.heartbeat_tried()  # metrics hook (issue 13): /healthz
        try:
            async with self.pool.acquire() as conn:
                renewed = await self._renew_lease(conn)
        except TRANSIENT_DATABASE_ERRORS as error:
            if not is_conflict(error):  # (a conflict reached the database)
                self.health.heartbeat_failed()  # metrics hook: /readyz is not ready until one reaches it again
            raise
        except asyncpg.ReadOnlySQLTransactionError:
            self.health.heartbeat_failed()  # (the lease is not renewed: not ready either)
            raise
        self._writes_again()  # (the renewal, or the registration a lapsed lease leads to, is a write)
        if renewed is None:
            await self.lease_lost()
        else:
            self.health.heartbeat_ok()  # metrics hook (issue 13): /readyz
            self._embedded_watch.streak = None  # (a step that reads nothing succeeds whether the server runs or not)
            self._tell_a_newer_schema(renewed["newest_migration"])

    async def _renew_lease(self, conn) -> Any:
        """Renew the lease, with what this service cannot do now (None: nothing); None back: it lapsed.
        Each renewal confirms the lease by this process's clock (lease_held) and reads the database's
        clock (DatabaseClock)."""
        problem = self.problem() or self._queue_problem or self.clock.problem()
        sent, sent_at = time.monotonic(), database_clock.elapsed()
        renewed = await conn.fetchrow(query("renew_lease"), self.instance_id, self.settings.lease_timeout_s,
                                      *(problem or (None, None)))
        if renewed is not None:
            self._lease_confirmed_at = sent
            self.clock.observe(sent_at, database_clock.elapsed(), renewed["heartbeat_at"])
            await self._watch_notification_queue(conn, renewed["notification_queue_usage"])
        return renewed

    async def _watch_notification_queue(self, conn: Any, usage: float) -> None:
        """The server's notification queue filling: a session that LISTENs and stays in a transaction
        holds it, and once full every write of hrwsi fails ("too many notifications in the NOTIFY
        queue"): production stopped and `hrwsi status` showed nothing wrong (found by exploratory
        testing). Past half full it is this service's problem (status, the dashboard), naming the
        oldest open transaction, and said in the log once."""
        if usage < NOTIFICATION_QUEUE_SAID:
            if self._queue_problem is not None:
                logger.info("%s: the database's notification queue is emptying (%.0f %% full)", self.kind, usage * 100)
            self._queue_problem = None
            return
        oldest = await conn.fetchrow(query("oldest_open_transaction"))
        holder = (f"the oldest open transaction is pid {oldest['pid']} (role {oldest['role']}, application "
                  f"{oldest['application_name'] or '-'}, open {oldest['open_for']}): end it if it was forgotten "
                  f"(SELECT pg_terminate_backend({oldest['pid']}))") if oldest else "no transaction is open now"
        text = (f"the database's notification queue is {usage:.0%} full: a session that LISTENs and stays in a "
                f"transaction holds it, and once it is full every write of hrwsi fails; {holder}")
        if self._queue_problem is None:
            logger.warning("%s: %s", self.kind, text)
        self._queue_problem = (text, self._queue_problem[1] if self._queue_problem else self.clock.now())

    def problem(self) -> tuple[str, datetime] | None:
        """Hook: what this service cannot do now and since when, written at each heartbeat for
        `hrwsi status` and the dashboard (the launcher: its backend out of reach, say); None: nothing.
        Here: a connection pooler hrwsi cannot work through, once a step met it; or the server refusing
        connections for want of a slot (max_connections), while it lasts."""
        return self._pooler or self._connections_refused

    def _tell_a_newer_schema(self, newest: int | None) -> None:
        """A newer hrwsi migrated the database while this service runs (an upgrade under way): its
        calls were written for the schema it knows. Said once per migration, as an error; the
        service goes on (a migration may well keep what it uses), ops stop and upgrade it."""
        shipped, _ = newest_shipped()
        if newest is None or newest <= shipped or newest == self._newer_schema_told:
            return
        self._newer_schema_told = newest
        logger.error("%s (hrwsi %s) runs on a database that a newer hrwsi upgraded (it records migration %04d; this "
                     "installation ships migrations up to %04d): its calls were written for the schema it knows; "
                     "stop it and start the new version (`hrwsi status` lists each service's version)",
                     self.kind, build_version(), newest, shipped)

    async def lease_lost(self) -> None:
        """The lease lapsed: forget this identity's claims, then register a new identity."""
        async with self._lease_lock:
            async with self.pool.acquire() as conn:
                if await self._renew_lease(conn) is not None:
                    return  # another path registered anew meanwhile
            await self._renew_identity()

    async def _renew_identity(self) -> None:
        old = self.instance_id
        self.earlier_ids.append(old)
        self.instance_id = new_instance_id(self.kind)
        logger.error("%s %s: its lease lapsed (paused or cut off for more than %.0f s); other replicas may "
                     "have taken over its work, so it drops what it held and goes on as %s", self.kind, old,
                     self.settings.lease_timeout_s, self.instance_id)
        await self.drop_claims()
        try:
            # (with the check of its first registration: a launcher paused past its lease came back
            # without it, beside a launcher of another Nomad namespace started meanwhile; found by review)
            await self._register_once(check=self.registration_check())
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.ReadOnlySQLTransactionError):
            raise  # (the heartbeat tries again, as a new identity; a standby is not a refusal of this service)
        except Exception as error:
            logger.error("%s: it may not register anew after its lease lapsed, and stops: %s", self.kind, error)
            self.refused = error
            self.request_stop()
            return
        self.wake()  # catch up as the new identity

    def on_statement_timeout(self, statement: str) -> str:
        """Hook: a statement of a step timed out; make the next try smaller. Returns what happens next."""
        return "the step runs again"

    async def drop_claims(self) -> None:
        """Hook: forget in-flight work claimed under a lapsed lease, without recording anything."""

    def lease_held(self) -> bool:
        """Whether this process still holds its lease by its own clock: the database confirmed it
        less than the lease's length ago. A local check, no statement: work that acts outside the
        database (a landing run moving files) asks it before each step, so a process paused past
        its lease, whose work another may have taken over, stops at once when it resumes, before
        its next heartbeat says so. (The monotonic clock runs on while a process is stopped.)"""
        confirmed = self._lease_confirmed_at
        return confirmed is not None and time.monotonic() - confirmed < self.settings.lease_timeout_s

    async def site(self) -> str | None:
        """Hook: the site recorded with the lease (the launcher's local backend: where its attempts'
        files are); None: none."""
        return None

    def registration_check(self) -> Callable[[Any, str | None], Awaitable[None]] | None:
        """Hook: what must hold for this service to register, checked in the transaction that registers
        it, at its start and again when it registers anew after its lease lapsed (the launcher: one Nomad
        namespace per installation); None: nothing. An exception it raises refuses the registration."""
        return None

    async def _register_once(self, check: Callable[[Any, str | None], Awaitable[None]] | None = None) -> None:
        """Register (or renew) this identity's lease; `check(conn, site)`, if given, runs first in the same
        transaction: what it locks stays locked until the lease is visible to others (a launcher's one
        namespace per installation: two started at once both passed a check made before either registered)."""
        site = await self.site()
        code = await self._code_watch.start()
        if self._process_identity is None:
            self._process_identity = await asyncio.to_thread(process_identity.identity) or ""
        await self._take_over_dead_leases()
        sent, sent_at = time.monotonic(), database_clock.elapsed()
        async with self.pool.acquire() as conn, (conn.transaction() if check else contextlib.nullcontext()):
            if check is not None:
                await check(conn, site)
            registered_at = await conn.fetchval(query("register_instance"), self.instance_id, self.kind,
                                                socket.gethostname(), os.getpid(), build_version(), site, *code,
                                                self._process_identity or None)
        self._lease_confirmed_at = sent
        self.registered = True
        self.clock.observe(sent_at, database_clock.elapsed(), registered_at)
        self.health.heartbeat_ok()  # metrics hook (issue 13): registered is a fresh lease

    async def _take_over_dead_leases(self) -> None:
        """End at once the fresh leases of the instances of this kind on this host whose process is proven
        dead (hrwsi.process_identity: its pid not alive, a zombie, or another process), as their expiry
        would: what they held (a launcher's jobs) is then adopted as after a lapsed lease. A launcher killed
        with kill -9 and restarted at once waited the dead one's lease, 30 s, while its jobs held their
        workers' capacity (found by exploratory testing). Anything short of proof keeps the lease: a wrong
        verdict would run an attempt twice."""
        if not self._process_identity:
            return  # (this platform cannot tell: every lease lapses by the timeout)
        async with self.pool.acquire() as conn:
            others = await conn.fetch(query("leases_of_this_host"), self.kind, socket.gethostname(), self.instance_id,
                                      self.settings.lease_timeout_s)
            if not others:
                return
            verdicts = await asyncio.to_thread(
                lambda: [(row, process_identity.verdict(row["pid"], row["process_identity"])) for row in others])
            for row, verdict in verdicts:
                if verdict.dead and await conn.fetchval(query("take_over_dead_lease"), row["id"], row["pid"],
                                                        row["process_identity"], self.settings.lease_timeout_s,
                                                        self.instance_id, verdict.why):
                    logger.warning("%s %s took over the lease of %s (last heartbeat %.1f s ago) without waiting for "
                                   "it to lapse: %s; what it held is taken over as after a lapsed lease",
                                   self.kind, self.instance_id, row["id"], row["heartbeat_age_s"], verdict.why)

    async def _register(self) -> None:
        """The first lease; a database away at start-up is waited for, not fatal; so is one that refuses writes (a
        standby during a failover, default_transaction_read_only on): it registers once writes go through.

        Why: `hrwsi up` and each service started alone exited with code 2 on a standby, so a restart during a
        failover (systemd, Nomad's restart) failed and the services stayed down after the new primary was up;
        the dashboard restarted then showed nothing, exactly when ops need it (found by review). A role set
        read-only on a primary waits alike: it is healed by ops' ALTER ROLE ... SET default_transaction_read_only
        = off, which the pool's sessions read when they open, so they are opened anew before each try."""
        backoff = Backoff(first_s=0.1, cap_s=START_UP_CAP_S)
        while True:
            try:
                # (a launcher whose preflight met the refusal registers with its check here, as at preflight)
                await self._register_once(check=None if self.registered else self.registration_check())
                if self._read_only is not None:
                    self.waiting_for_writes(False)
                self._writes_again()  # (said once it waited for the database to take writes)
                return
            except TRANSIENT_DATABASE_ERRORS as error:
                delay = backoff.next()
                logger.warning("%s: cannot register with the database (%s); it waits %.1f s and tries again",
                               self.kind, describe(error), delay)
                await backoff.sleep(delay)
            except asyncpg.ReadOnlySQLTransactionError as refused:
                await self._await_writes(refused)
                if self.stopping.is_set():
                    return

    async def _await_writes(self, refused: asyncpg.ReadOnlySQLTransactionError) -> None:
        """One refused registration: said for the process (once, then every WRITES_AWAITED_SAID_EVERY_S), then a
        pause of WRITES_AWAITED_EVERY_S, cut short by a stop."""
        first = self._read_only is None
        self._read_only = self._read_only or _Streak(time.monotonic())
        self._read_only.attempts += 1
        self._writes_awaited.tell(refused)
        if first:
            self.waiting_for_writes(True)
        if await self._sleep(WRITES_AWAITED_EVERY_S):
            # (a session keeps the default_transaction_read_only it opened with: a fixed role would never be read)
            await self.pool.expire_connections()

    async def unregister(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(query("unregister_instance"), [*self.earlier_ids, self.instance_id])
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.ReadOnlySQLTransactionError) as error:  # (a standby: the stop goes on)
            if self.pool_cut_by_the_stop():  # (the stop's bound said so: "... service rows expire with their leases")
                return
            logger.warning("%s: could not unregister (%s); its lease expires on its own", self.kind, describe(error))

    def request_stop(self) -> None:
        self.stopping.set()
        self._wake.set()  # the loop waits on this one event
