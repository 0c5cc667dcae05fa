"""The database's clock, as a service tells it from its own.

The database's clock rules hrwsi: heartbeats and leases, task and job history, deadlines and
retention ages are all `now()` of the server. A service also sends times it read from its host's
clock: the orchestrator plans "from now", a harvester claims sources due "now" and records when a
landing file was first seen, the launcher records when it saw a job progress. On a host whose clock
was minutes off the database's (no NTP, a VM resumed from a snapshot), an orchestrator ten minutes
fast planned every task ten minutes ahead and raised false deadline alerts ("00:08:41 late"), one
five minutes slow left new tasks unplanned for five minutes, and a harvester two hours slow took
claims that had already lapsed while another harvester ran the same source (found by exploratory
testing, 2026-12-05).

So each service measures its clock against the database's at every heartbeat, the way NTP does:
the server's `now()` against the midpoint of the round trip that read it, and tells time as the
database would (`DatabaseClock.now`). An offset beyond `SKEW_SAID_S` is the service's problem, in its
log once and in `hrwsi status` (service_instance.problem) while it lasts: the times it sends are
corrected, but the host's clock should be fixed (its logs, its routines' files, Nomad's clients).

Between readings the database's time is the last reading's carried forward by the host's monotonic
clock (`elapsed`), never by its wall clock: a host clock set back or forward (an admin's `date -s`, a
VM resumed from a snapshot, NTP stepping it) is in `offset_s` at once. Carried by the wall clock plus
the offset last measured, the services' times were off by the jump until the next heartbeat (up to
5 s; found by exploratory testing).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

logger = logging.getLogger(__name__)

# An offset beyond this is said: what NTP keeps a host within is milliseconds; seconds mean no NTP.
SKEW_SAID_S = 2.0
# A reading whose round trip took longer than this says little about the offset: it is not used.
ROUND_TRIP_TRUSTED_S = 1.0
# The host's clock that a jump of its wall clock does not move, and that counts a suspended host's sleep
# (CLOCK_BOOTTIME, Linux), else the monotonic one: what a duration and a time carried forward are read from.
_ELAPSED_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def elapsed() -> float:
    """Seconds on the host's clock that only goes forward (not a time of day: differences only)."""
    return time.clock_gettime(_ELAPSED_CLOCK)


def wall() -> datetime:
    """The host's wall clock, in UTC (a function of its own: tests move it)."""
    return datetime.now(UTC)


class DatabaseClock:
    """The database's time as this host reckons it: the last reading carried forward by `elapsed`
    (the host's wall clock until a first reading)."""

    def __init__(self, service: str = "service") -> None:
        self.service = service
        self._anchor: tuple[float, datetime] | None = None  # (elapsed(), the database's time) at the last reading
        self.round_trip_s: float | None = None
        self.skewed_since: datetime | None = None
        self._said: float | None = None  # the offset last said in the log (rounded), None: in step

    def now(self) -> datetime:
        if self._anchor is None:
            return wall()
        at, database_time = self._anchor
        return database_time + timedelta(seconds=elapsed() - at)

    @property
    def offset_s(self) -> float:
        """The database's time less this host's wall clock, now (a jump of the host's clock since the last
        reading is in it already)."""
        return 0.0 if self._anchor is None else (self.now() - wall()).total_seconds()

    @offset_s.setter
    def offset_s(self, value: float) -> None:  # (tests: a host clock `value` s behind the database's)
        self._anchor = (elapsed(), wall() + timedelta(seconds=value))

    def observe(self, sent: float, received: float, database_now: datetime) -> None:
        """One reading: the server's now() read by a statement sent when `elapsed()` read `sent`, whose
        answer came when it read `received`."""
        round_trip = received - sent
        if round_trip < 0 or round_trip > ROUND_TRIP_TRUSTED_S:
            return  # the call was too slow to tell
        self._anchor = (sent + round_trip / 2, database_now)
        self.round_trip_s = round_trip
        self._say()

    def _say(self) -> None:
        skewed = abs(self.offset_s) > SKEW_SAID_S
        if skewed and self.skewed_since is None:
            self.skewed_since = self.now()
        elif not skewed and self.skewed_since is not None:
            self.skewed_since = None
            logger.info("%s: this host's clock is back in step with the database's (%+.1f s)", self.service,
                        self.offset_s)
        if skewed and (self._said is None or abs(self._said - self.offset_s) > SKEW_SAID_S):
            self._said = self.offset_s
            logger.warning("%s: %s", self.service, self.describe())
        elif not skewed:
            self._said = None

    def describe(self) -> str:
        direction = "behind" if self.offset_s > 0 else "ahead of"
        return (f"this host's clock is {abs(self.offset_s):.1f} s {direction} the database's: the times this service "
                "sends are corrected by the database's clock, but its logs and its routines' files carry the "
                "host's; fix the host's clock (NTP)")

    def problem(self) -> tuple[str, datetime] | None:
        """What `hrwsi status` says while the offset is beyond SKEW_SAID_S, and since when."""
        if self.skewed_since is None:
            return None
        return self.describe(), self.skewed_since
