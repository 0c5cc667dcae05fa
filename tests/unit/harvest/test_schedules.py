"""Schedules: frequency + interval (IAGOS style) and cron; near-real-time windows; backfill days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrwsi.harvest.schedules import (
    InvalidSchedule,
    Schedule,
    backfill_days,
    day_window,
    near_real_time_window,
    next_run,
)

UTC = UTC


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("schedule, after, expected", [
    (Schedule("hourly"), "2024-01-05T10:34:21", "2024-01-05T11:00:00"),
    (Schedule("hourly"), "2024-01-05T11:00:00", "2024-01-05T12:00:00"),          # strictly after
    (Schedule("hourly", 2), "2024-01-05T10:34:21", "2024-01-05T12:00:00"),       # every 2nd hour
    (Schedule("hourly", 2), "2024-01-05T11:59:59", "2024-01-05T12:00:00"),
    (Schedule("hourly", 6), "2024-01-05T13:00:00", "2024-01-05T18:00:00"),
    (Schedule("daily"), "2024-01-05T10:34:21", "2024-01-06T00:00:00"),
    (Schedule("weekly"), "2024-01-05T10:34:21", "2024-01-08T00:00:00"),          # a Monday
    (Schedule("weekly"), "2024-01-08T00:00:00", "2024-01-15T00:00:00"),
    (Schedule(cron="30 2 * * *"), "2024-01-05T10:34:21", "2024-01-06T02:30:00"),
    (Schedule(cron="*/15 * * * *"), "2024-01-05T10:34:21", "2024-01-05T10:45:00"),
])
def test_next_run(schedule, after, expected):
    assert next_run(schedule, at(after)) == at(expected)


def test_next_run_reads_any_time_zone_and_answers_in_utc():
    paris = timezone(timedelta(hours=1))
    assert next_run(Schedule("daily"), datetime(2024, 1, 5, 0, 30, tzinfo=paris)) == at("2024-01-05T00:00:00")
    with pytest.raises(ValueError, match="no time zone"):
        next_run(Schedule("daily"), datetime(2024, 1, 5))


@given(st.sampled_from(["hourly", "daily", "weekly"]), st.integers(1, 30),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_frequency_runs_are_aligned_after_and_at_most_one_period_away(frequency, interval, after):
    schedule = Schedule(frequency, interval)
    period = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}[frequency]
    run = next_run(schedule, after)
    assert after < run <= after + period * interval
    assert next_run(schedule, run) == run + period * interval  # regular: no drift
    assert run.minute == 0 and run.second == 0 and run.microsecond == 0


@pytest.mark.parametrize("kwargs, message", [
    ({}, "either a frequency"), ({"frequency": "hourly", "cron": "* * * * *"}, "either a frequency"),
    ({"frequency": "monthly"}, "not one of hourly, daily, weekly"), ({"frequency": "daily", "interval": 0},
                                                                     "at least 1"),
    ({"cron": "every day"}, "not a valid cron"),
    # (February 31 is valid to croniter, which then finds no next time: the run's failure was recorded nowhere)
    ({"cron": "0 0 31 2 *"}, "'0 0 31 2 \\*' never comes"), ({"cron": "0 0 30 2 *"}, "never comes"),
])
def test_invalid_schedules_say_what_is_wrong(kwargs, message):
    with pytest.raises(InvalidSchedule, match=message):
        Schedule(**kwargs)


def test_schedules_in_words():
    assert Schedule("hourly", 2).describe() == "every 2nd hour"
    assert Schedule("daily").describe() == "every day (at 00:00 UTC)"  # (01:00 or 02:00 in Paris)
    assert Schedule("weekly", 4).describe() == "every 4th week (Mondays at 00:00 UTC)"
    assert Schedule(cron="0 6 * * 1").describe() == "cron 0 6 * * 1 (UTC)"


def test_near_real_time_window_overlaps_the_last_successful_harvest():
    now = at("2024-01-05T12:00:00")
    assert near_real_time_window(now, at("2024-01-05T10:00:00"), timedelta(hours=1), timedelta(days=1)) == \
        (at("2024-01-05T09:00:00"), now)
    assert near_real_time_window(now, None, timedelta(hours=1), timedelta(days=2)) == (at("2024-01-03T12:00:00"), now)


def test_backfill_goes_day_by_day_resumes_from_its_cursor_and_ends():
    start, end = date(2024, 1, 1), date(2024, 1, 3)
    assert backfill_days(None, start, end) == [date(2024, 1, 1)]
    assert backfill_days(date(2024, 1, 2), start, end, limit=5) == [date(2024, 1, 2), date(2024, 1, 3)]
    assert backfill_days(date(2024, 1, 4), start, end) == []            # covered: done
    assert backfill_days(date(2023, 12, 1), start, end) == [start]      # a cursor before the start
    assert day_window(date(2024, 1, 2)) == (at("2024-01-02T00:00:00"), at("2024-01-03T00:00:00"))
