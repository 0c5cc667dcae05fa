"""hrwsi.database_clock: a service tells the database's time from its own clock, and says when its
host's clock is off."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from hrwsi import database_clock
from hrwsi.database_clock import DatabaseClock

T = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)


class HostClocks:
    """The host's wall clock and its monotonic one, moved by the test."""

    def __init__(self) -> None:
        self.wall_time, self.elapsed_s = T, 1000.0

    def tick(self, seconds: float) -> None:  # time passes: both clocks move
        self.wall_time += timedelta(seconds=seconds)
        self.elapsed_s += seconds

    def set_wall(self, moved_by: timedelta) -> None:  # an admin's `date -s`, NTP stepping it: only the wall clock
        self.wall_time += moved_by


@pytest.fixture
def host(monkeypatch) -> HostClocks:
    clocks = HostClocks()
    monkeypatch.setattr(database_clock, "wall", lambda: clocks.wall_time)
    monkeypatch.setattr(database_clock, "elapsed", lambda: clocks.elapsed_s)
    return clocks


def read(clock: DatabaseClock, host: HostClocks, database_now: datetime, round_trip_s: float = 0.0) -> None:
    """One reading as a heartbeat takes it: sent, answered round_trip_s later."""
    sent = host.elapsed_s
    host.tick(round_trip_s)
    clock.observe(sent, host.elapsed_s, database_now)


def test_the_offset_is_the_databases_time_against_the_middle_of_the_round_trip(host):
    clock = DatabaseClock("orchestrator")
    read(clock, host, T + timedelta(minutes=10, milliseconds=10), round_trip_s=0.02)
    assert clock.offset_s == pytest.approx(600.0) and clock.round_trip_s == pytest.approx(0.02)
    assert clock.now() == T + timedelta(minutes=10, milliseconds=20)


def test_a_slow_reading_is_not_used(host):
    clock = DatabaseClock("orchestrator")
    read(clock, host, T + timedelta(minutes=10), round_trip_s=3)
    assert clock.offset_s == 0.0 and clock.problem() is None and clock.now() == host.wall_time


def test_a_jump_of_the_host_clock_after_a_reading_moves_neither_the_databases_time_nor_waits_for_the_next_reading(host):
    # Found by exploratory testing: the database's time was the host's wall clock plus the offset last
    # measured, so for up to a heartbeat (5 s) after the host's clock was set back or forward every time a
    # service sent was off by the jump.
    clock = DatabaseClock("launcher")
    read(clock, host, T + timedelta(seconds=30))
    host.tick(2)
    host.set_wall(-timedelta(hours=1))  # the host's clock set an hour back
    assert clock.now() == T + timedelta(seconds=32)
    assert clock.offset_s == pytest.approx(3600 + 30)
    host.tick(1)
    host.set_wall(timedelta(hours=2))  # and forward
    assert clock.now() == T + timedelta(seconds=33)
    assert clock.offset_s == pytest.approx(-3600 + 30)


def test_a_host_clock_off_by_seconds_is_said_once_and_in_status_until_it_is_back_in_step(caplog, host):
    caplog.set_level(logging.INFO, logger="hrwsi.database_clock")
    clock = DatabaseClock("harvester")
    read(clock, host, host.wall_time + timedelta(seconds=1))  # within what is said
    assert clock.problem() is None
    for _ in range(3):
        read(clock, host, host.wall_time - timedelta(minutes=2))  # the host two minutes fast
    problem, since = clock.problem()
    assert problem.startswith("this host's clock is 120.0 s ahead of the database's") and "(NTP)" in problem
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"harvester: {problem}"], "said once, not at every heartbeat"
    read(clock, host, host.wall_time + timedelta(minutes=5))  # moved again by more than it is said for: said again
    assert "300.0 s behind the database's" in clock.problem()[0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    read(clock, host, host.wall_time)
    assert clock.problem() is None and "back in step" in caplog.records[-1].getMessage()


def test_the_real_clocks_tell_the_databases_time():
    clock = DatabaseClock("orchestrator")
    sent = database_clock.elapsed()
    clock.observe(sent, database_clock.elapsed(), datetime.now(UTC) + timedelta(minutes=10))
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - 600) < 1
