"""Live updates: the database's notifications, coalesced, pushed to every open page as
server-sent events.

The web service LISTENs like the other services (`hrwsi.listener.Listener`, through
`service.Service`). What arrives is merged and sent at most every `MIN_INTERVAL_S` as one `change`
event naming the channels (and state counts) that moved; a page then fetches the sections that
depend on them. A listener reconnect sends a change on every channel (notifications sent while it
was away are gone: pages catch up, as services do). Heartbeats and schedules change without a
notification, so every `TICK_S` the change carries `tick`, on which the pages that show them
(the overview, the plan's "now" line) refresh; nothing else is polled.

While the listener has no connection (the database is away), no notification can arrive, so a page
would show what it last read as live: the stream says `database` {"up": false} at once, and again
{"up": true} when the listener is back (the `hello` and every `alive` event carry it too), and the
page says that what it shows may be out of date. `alive` comes every `ALIVE_S`: a page that hears
nothing for a few of them opens its stream again (a stream stuck half-open, behind a proxy say).

While the database can be read but no notification can come (the dashboard waits at start for the database to take
writes, its listener not running yet; or a hot standby refuses LISTEN, "cannot execute LISTEN during recovery"), the
stream says `database` {"up": true, "live": false}: the pages say they are not live and refresh themselves every
`POLL_S` until {"up": true, "live": true}. (Their indicator read "live" while nothing could reach them: found by
review.)
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

from hrwsi.listener import Notification

# A channel per table the schema's triggers notify on (sql/schema.sql, "notification triggers"): what a
# page names in its data-channels and a change event in its `channels`.
TABLE_CHANNELS = ("hrwsi_input", "hrwsi_task", "hrwsi_job", "hrwsi_product")
# Work under way (hrwsi.state_is_under_way: a task dispatched, queued or running, a job submitted, queued
# or running) is told on a channel of its own that no service listens to (migration 0043); to a page it
# is a change of its table.
PROGRESS_CHANNELS = {"hrwsi_task_progress": "hrwsi_task", "hrwsi_job_progress": "hrwsi_job"}
CHANNELS = TABLE_CHANNELS + tuple(PROGRESS_CHANNELS)  # every channel the dashboard listens to
MIN_INTERVAL_S = 0.5
TICK_S = 5.0
ALIVE_S = 5.0  # an `alive` event this often (it also keeps proxies from closing a silent stream)
RETRY_MS = 2000  # how soon a browser opens a lost stream again (the SSE `retry` field)
POLL_S = 5  # how often a page refreshes itself while no notification can reach it (as often as the tick)
# A page whose stream takes nothing for this long (a client that never reads: its socket's buffers
# full) is closed; and at most MAX_STREAMS pages are open at once (beyond, a 503 says so). A client
# that never read held its socket and its task for good, and nothing bounded how many did (found by
# exploratory testing).
WRITE_TIMEOUT_S = 30.0
MAX_STREAMS = 200


@dataclass
class Change:
    channels: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    tick: bool = False
    database: bool | None = None  # the listener lost (False) or regained (True) the database; None: no news
    live: bool = True  # with database True: whether notifications reach the pages (False: they poll)

    def merge(self, other: Change) -> None:
        self.channels |= other.channels
        for state, n in other.counts.items():
            self.counts[state] = self.counts.get(state, 0) + n
        self.tick = self.tick or other.tick
        if other.database is not None:
            self.database, self.live = other.database, other.live

    def event(self) -> bytes:
        text = ""
        if self.database is not None:
            text += f"event: database\ndata: {json.dumps({'up': self.database, 'live': self.live})}\n\n"
        if self.channels or self.tick:
            data = json.dumps({"channels": sorted(self.channels), "counts": self.counts, "tick": self.tick})
            text += f"event: change\ndata: {data}\n\n"
        return text.encode()


class Subscriber:
    """One open page: what changed since it was last told, and a flag to wake its stream."""

    def __init__(self) -> None:
        self.pending: Change | None = None
        self.ready = asyncio.Event()

    def offer(self, change: Change) -> None:
        if self.pending is None:
            self.pending = Change()
        self.pending.merge(change)
        self.ready.set()

    def take(self) -> Change | None:
        change, self.pending = self.pending, None
        self.ready.clear()
        return change


class LiveHub:
    """Collects notifications; `flush()` hands the merged change to every subscriber."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self._collected = Change()
        self._last_sent = float("-inf")
        self._last_tick = float("-inf")
        self.closing = asyncio.Event()
        self.sent = 0
        self.database: bool | None = None  # whether the listener has the database; None: not known yet
        self.live = True  # while the database can be read: whether notifications reach the pages (False: they poll)

    def set_database(self, up: bool, live: bool = True) -> None:
        """The listener has (up) or lost the database, or the database can be read but nothing listens (up, not
        live: the pages poll): every open page is told at once, on a change."""
        live = live and up
        if (up, live) == (self.database, self.live):
            return
        self.database, self.live = up, live
        for subscriber in list(self.subscribers):
            subscriber.offer(Change(database=up, live=live))

    def collect(self, notification: Notification) -> None:
        self._collected.channels.add(PROGRESS_CHANNELS.get(notification.channel, notification.channel))
        for state, n in notification.counts.items():
            self._collected.counts[state] = self._collected.counts.get(state, 0) + n

    def collect_everything(self) -> None:
        """After a (re)connect: everything may have changed."""
        self._collected.channels.update(TABLE_CHANNELS)

    def due_in(self, now: float | None = None) -> float:
        """Seconds before the next flush may send (0: now)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self._last_sent + MIN_INTERVAL_S - now)

    def flush(self, now: float | None = None) -> Change | None:
        """Send what was collected, with the tick when one is due; the change sent, or None."""
        now = time.monotonic() if now is None else now
        change = self._collected
        if now - self._last_tick >= TICK_S:
            change.tick, self._last_tick = True, now
        if not change.channels and not change.tick:
            return None
        self._collected = Change()
        self._last_sent = now
        for subscriber in list(self.subscribers):
            subscriber.offer(change)
        self.sent += 1
        return change

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET /events: a text/event-stream until the page goes away or the dashboard stops."""
        if len(self.subscribers) >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text=f"{MAX_STREAMS} live pages are open on this dashboard already: "
                                                  "close some, or reload later", headers={"Retry-After": "30"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        try:
            await response.prepare(request)  # (a page closed as it opened: the client is gone, not the database)
            await _send(response, f"retry: {RETRY_MS}\nevent: hello\ndata: {self._status()}\n\n".encode())
            while not self.closing.is_set():
                try:
                    async with asyncio.timeout(ALIVE_S):  # (not wait_for: see the launcher's outcome writer)
                        await self._wait(subscriber)
                except TimeoutError:
                    await _send(response, f"event: alive\ndata: {self._status()}\n\n".encode())
                    continue
                change = subscriber.take()
                if change is not None:
                    await _send(response, change.event())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except _Stuck:
            if request.transport is not None:  # (a clean end would wait for the same full buffers)
                request.transport.abort()
        finally:
            self.subscribers.discard(subscriber)
        return response

    def _status(self) -> str:
        return json.dumps({"database": self.database, "live": self.live, "poll_s": POLL_S})

    async def _wait(self, subscriber: Subscriber) -> None:
        closing = asyncio.ensure_future(self.closing.wait())
        ready = asyncio.ensure_future(subscriber.ready.wait())
        try:
            await asyncio.wait([closing, ready], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            ready.cancel()

    def close(self) -> None:
        self.closing.set()


class _Stuck(Exception):
    """A page's stream took nothing for WRITE_TIMEOUT_S."""


async def _send(response: web.StreamResponse, data: bytes) -> None:
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await response.write(data)
    except TimeoutError:
        raise _Stuck from None
