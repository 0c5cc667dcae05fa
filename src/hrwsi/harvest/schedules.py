"""When a harvest source runs next, and which time window or days a run covers. Pure: no I/O.

Schedules, IAGOS style: a frequency (hourly, daily, weekly) and an interval (hourly + 2 = every
second hour), or a cron expression (croniter). Frequency runs fall on aligned UTC boundaries
(hours, midnights, Monday midnights, counted from 1970-01-05, a Monday), so they do not drift
with the time a run took and two harvesters agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from croniter import CroniterError, croniter

from hrwsi.terminal import shown

# The longest window a condition or a harvest run covers, and a back-fill run's days: 100 years (archives go back to
# 1972). Here, not in hrwsi.configuration which re-exports it, so that the services, which import the harvest
# sources and never the configuration file's models, do not load pydantic for one number: the catalogue's import
# of it from there cost each service process 9 MB of RSS and 0.15 s at start (a bisection, 2026-12-07).
MAX_WINDOW_DAYS = 36_525

FREQUENCIES = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday midnight: weekly runs fall on Mondays


class InvalidSchedule(ValueError):
    """A schedule that cannot say when to run; the message says what is wrong."""


@dataclass(frozen=True)
class Schedule:
    frequency: str | None = None   # hourly | daily | weekly
    interval: int = 1              # every `interval` frequencies
    cron: str | None = None        # or a five-field cron expression, in UTC

    def __post_init__(self) -> None:
        if (self.frequency is None) == (self.cron is None):
            raise InvalidSchedule("a schedule is either a frequency (with an interval) or a cron expression")
        if self.frequency is not None and self.frequency not in FREQUENCIES:
            raise InvalidSchedule(f"frequency {shown(self.frequency)} is not one of {', '.join(FREQUENCIES)}")
        if self.interval < 1:
            raise InvalidSchedule(f"interval {self.interval} must be at least 1")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise InvalidSchedule(f"{shown(self.cron)} is not a valid cron expression")
        if self.cron is not None:
            # (one that never comes, "0 0 31 2 *" (February 31), is valid to croniter, whose search for its next time
            # then fails: the run's end raised it, so that the run's failure was recorded nowhere and the source stayed
            # claimed, `hrwsi sources` saying no error; found by exploratory testing)
            try:
                croniter(self.cron, _EPOCH).get_next(datetime)
            except CroniterError:
                raise InvalidSchedule(f"{shown(self.cron)} never comes (no day or time matches all its fields)") from None

    def describe(self) -> str:
        """The schedule in words, for `hrwsi sources`."""
        if self.cron is not None:
            return f"cron {self.cron} (UTC)"
        unit = {"hourly": "hour", "daily": "day", "weekly": "week"}[self.frequency]
        # (days and weeks begin at 00:00 UTC, 01:00 or 02:00 in Paris: said, as for cron)
        zone = {"hourly": "", "daily": " (at 00:00 UTC)", "weekly": " (Mondays at 00:00 UTC)"}[self.frequency]
        if self.interval == 1:
            return f"every {unit}{zone}"
        ordinal = {2: "2nd", 3: "3rd"}.get(self.interval, f"{self.interval}th")
        return f"every {ordinal} {unit}{zone}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: schedules work in UTC, give an aware datetime")
    return moment.astimezone(UTC)


def next_run(schedule: Schedule, after: datetime) -> datetime:
    """The first run time strictly after `after` (UTC)."""
    after = _utc(after)
    if schedule.cron is not None:
        return croniter(schedule.cron, after).get_next(datetime).astimezone(UTC)
    step = FREQUENCIES[schedule.frequency] * schedule.interval
    elapsed = after - _EPOCH
    periods = elapsed // step + 1  # floor division of timedeltas: the next boundary, never `after` itself
    return _EPOCH + periods * step


def near_real_time_window(now: datetime, last_success_at: datetime | None, overlap: timedelta,
                          first_lookback: timedelta) -> tuple[datetime, datetime]:
    """(start, end] of a near-real-time harvest: from the last successful harvest minus an overlap
    (late publications are caught; duplicates are refused by the database), or first_lookback back."""
    now = _utc(now)
    if last_success_at is None:
        return now - first_lookback, now
    return min(_utc(last_success_at) - overlap, now), now


def backfill_days(cursor: date | None, backfill_from: date, backfill_to: date, limit: int = 1) -> list[date]:
    """The next days a backfill harvests, oldest first: from the cursor (the next day not yet done;
    None: not started) to backfill_to, at most `limit`. Empty when the backfill is complete."""
    if limit < 1:
        raise ValueError("a backfill run harvests at least one day")
    start = max(cursor or backfill_from, backfill_from)
    days = []
    day = start
    while day <= backfill_to and len(days) < limit:
        days.append(day)
        day += timedelta(days=1)
    return days


def day_window(day: date) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of a UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)
