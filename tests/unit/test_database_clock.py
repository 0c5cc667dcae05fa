"""hrwsi.database_clock: a service tells the database's time from its own clock, and says when its
host's clock is off."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from hrwsi.database_clock import DatabaseClock

T = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)


def test_the_offset_is_the_databases_time_against_the_middle_of_the_round_trip():
    clock = DatabaseClock("orchestrator")
    clock.observe(T, T + timedelta(milliseconds=20), T + timedelta(minutes=10, milliseconds=10))
    assert clock.offset_s == 600.0 and clock.round_trip_s == 0.02
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - 600) < 1


def test_a_slow_reading_or_one_across_a_jump_of_the_host_clock_is_not_used():
    clock = DatabaseClock("orchestrator")
    clock.observe(T, T + timedelta(seconds=3), T + timedelta(minutes=10))
    clock.observe(T, T - timedelta(seconds=1), T + timedelta(minutes=10))
    assert clock.offset_s == 0.0 and clock.problem() is None


def test_a_host_clock_off_by_seconds_is_said_once_and_in_status_until_it_is_back_in_step(caplog):
    caplog.set_level(logging.INFO, logger="hrwsi.database_clock")
    clock = DatabaseClock("harvester")
    clock.observe(T, T, T + timedelta(seconds=1))  # within what is said
    assert clock.problem() is None
    for _ in range(3):
        clock.observe(T, T, T - timedelta(minutes=2))  # the host two minutes fast
    problem, since = clock.problem()
    assert problem.startswith("this host's clock is 120.0 s ahead of the database's") and "(NTP)" in problem
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"harvester: {problem}"], "said once, not at every heartbeat"
    clock.observe(T, T, T + timedelta(minutes=5))  # moved again by more than it is said for: said again
    assert "300.0 s behind the database's" in clock.problem()[0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    clock.observe(T, T, T)
    assert clock.problem() is None and "back in step" in caplog.records[-1].getMessage()
