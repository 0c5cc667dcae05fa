"""hrwsi.metrics: step figures, the liveness of an instance, the exposition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from hrwsi import metrics
from hrwsi.metrics import DatabaseSnapshot, InstanceHealth, exposition
from hrwsi.migrations import build_version


def sample(name: str, labels: dict) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_step_is_timed_and_its_failures_are_counted_by_kind():
    health = InstanceHealth("unit")
    runs = sample("hrwsi_step_seconds_count", {"service": "unit", "step": "work"})
    database = sample("hrwsi_step_errors_total", {"service": "unit", "step": "work", "kind": "database"})
    unexpected = sample("hrwsi_step_errors_total", {"service": "unit", "step": "work", "kind": "unexpected"})

    async def ok():
        return True

    async def refused():
        raise asyncpg.CheckViolationError("no")

    async def bug():
        raise KeyError("surprise")

    assert await health.timed_step("work", ok) is True
    with pytest.raises(asyncpg.CheckViolationError):
        await health.timed_step("work", refused)
    with pytest.raises(KeyError):
        await health.timed_step("work", bug)
    assert sample("hrwsi_step_seconds_count", {"service": "unit", "step": "work"}) == runs + 3
    assert sample("hrwsi_step_errors_total", {"service": "unit", "step": "work", "kind": "database"}) == database + 1
    assert sample("hrwsi_step_errors_total", {"service": "unit", "step": "work", "kind": "unexpected"}) == unexpected + 1


async def test_a_cancelled_step_is_not_an_error():
    health = InstanceHealth("unit")
    before = sum(sample("hrwsi_step_errors_total", {"service": "unit", "step": "slow", "kind": k})
                 for k in ("database_unavailable", "database", "unexpected"))
    task = asyncio.create_task(health.timed_step("slow", lambda: asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sum(sample("hrwsi_step_errors_total", {"service": "unit", "step": "slow", "kind": k})
               for k in ("database_unavailable", "database", "unexpected")) == before


def test_an_instance_is_alive_while_its_loop_and_heartbeat_run_even_without_the_database():
    health = InstanceHealth("launcher")
    assert health.liveness_problems(30, now=100) == [], "starting is not hung"
    assert health.readiness_problems(30, now=100) == ["it is starting: its loop has not run yet"]
    health.loop_at, health.heartbeat_tried_at, health.heartbeat_ok_at = 90.0, 95.0, 95.0
    assert health.liveness_problems(30, now=100) == [] and health.readiness_problems(30, now=100) == []
    # The database is away: heartbeats are tried but fail. Alive, not ready.
    health.loop_at, health.heartbeat_tried_at = 190.0, 195.0
    assert health.liveness_problems(30, now=200) == []
    assert "heartbeat has not reached the database" in health.readiness_problems(30, now=200)[0]


def test_a_hung_loop_or_heartbeat_is_named():
    health = InstanceHealth("launcher")
    health.loop_at, health.heartbeat_tried_at, health.heartbeat_ok_at = 10.0, 95.0, 95.0
    assert health.liveness_problems(30, now=100) == ["its loop has not turned for 90 s (limit 30 s)"]
    health.loop_at, health.heartbeat_tried_at = 99.0, 10.0
    assert health.liveness_problems(30, now=100) == ["its heartbeat has not run for 90 s (limit 30 s)"]


class FakeService:
    """Just what the exposition reads of a live service object."""

    def __init__(self, kind, reconnects, dispatched=None, problem=None):
        self.kind = kind
        self.instance_id = f"{kind}-x"
        self.health = InstanceHealth(kind)
        self.health.loop_turned()
        self.listener = type("L", (), {"reconnects": reconnects})()
        if dispatched is not None:
            self.dispatched = dispatched
        self._problem = problem

    def problem(self):
        return self._problem


def test_the_exposition_has_the_process_the_instances_and_the_database():
    snapshot = DatabaseSnapshot(taken_at=1.0, up=True,
                                tasks=[{"routine": "maja", "lane": "all", "state": "running", "n": 3}],
                                active_jobs=[{"routine": "maja", "lane": "all", "state": "running", "n": 3}],
                                finished_jobs=[{"routine": "maja", "lane": "all", "state": "processed", "n": 7}],
                                backlog=[{"routine": "maja", "lane": "all", "waiting": 2, "oldest_s": 12.5}],
                                alert_queue=(1, 60.0),
                                routines=[{"name": "maja", "on_hold": True, "consecutive_failures": 5}])
    nomad_away = ("cannot reach Nomad at http://nomad:4646: Connection refused", datetime.now(UTC))
    text = exposition([FakeService("launcher", 3, dispatched=9, problem=nomad_away), FakeService("orchestrator", 1)],
                      snapshot).decode()
    for line in ('hrwsi_tasks{lane="all",routine="maja",state="running"} 3.0',
                 'hrwsi_jobs_active{lane="all",routine="maja",state="running"} 3.0',
                 'hrwsi_jobs_finished_last_hour{lane="all",routine="maja",state="processed"} 7.0',
                 'hrwsi_backlog_age_seconds{lane="all",routine="maja"} 12.5',
                 "hrwsi_alerts_unsent 1.0", 'hrwsi_routine_on_hold{routine="maja"} 1.0',
                 'hrwsi_listener_reconnects_total{service="launcher"} 2.0',
                 'hrwsi_listener_reconnects_total{service="orchestrator"} 0.0',
                 'hrwsi_dispatched_tasks_total{service="launcher"} 9.0', "hrwsi_database_up 1.0",
                 'hrwsi_service_problem{service="launcher"} 1.0', 'hrwsi_service_problem{service="orchestrator"} 0.0',
                 'hrwsi_instance{instance="launcher-x",service="launcher"} 1.0',
                 f'hrwsi_build_info{{version="{build_version()}"}} 1.0'):
        assert line in text, line
    assert "# TYPE hrwsi_step_seconds histogram" in text
    assert "# TYPE hrwsi_dispatch_latency_seconds histogram" in text


def test_without_the_database_only_its_absence_is_reported():
    text = exposition([FakeService("web", 1)], DatabaseSnapshot(taken_at=1.0, up=False)).decode()
    assert "hrwsi_database_up 0.0" in text and "hrwsi_tasks{" not in text
    assert 'hrwsi_instance{instance="web-x",service="web"} 1.0' in text


def test_an_instance_whose_last_heartbeat_failed_is_not_ready_though_its_lease_still_runs():
    """Ready was said from a heartbeat up to the whole lease old (30 s) while the database was down."""
    health = InstanceHealth("launcher")
    health.loop_at, health.heartbeat_tried_at, health.heartbeat_ok_at = 99.0, 90.0, 90.0
    assert health.readiness_problems(30, now=100) == []
    health.heartbeat_failed_at = 95.0
    assert health.readiness_problems(30, now=100) == [
        "its last heartbeat could not reach the database (5 s ago; the last that did was 10 s ago)"]
    health.heartbeat_ok_at = 98.0  # one reached it again
    assert health.readiness_problems(30, now=100) == []


async def test_a_database_too_slow_to_answer_the_read_is_said_so_and_reads_as_down(database_url, monkeypatch, caplog):
    # Found by exploratory testing: a read past SNAPSHOT_TIMEOUT_S was logged "cannot read the
    # database's figures ()", the TimeoutError's empty text. A read that slow is a failed read (up 0,
    # what README says to alert on), and the log says how slow, not that the database is down.
    from hrwsi.database import create_pool

    pool = await create_pool(database_url, max_size=1)
    try:
        figures = metrics.DatabaseFigures(pool)
        monkeypatch.setattr(metrics, "SNAPSHOT_TIMEOUT_S", 0.000_001)  # (a real read cannot be that quick)
        with caplog.at_level("WARNING", logger="hrwsi.metrics"):
            assert (await figures.refresh()).up is False
        assert "cannot read the database's figures (it did not answer within 1e-06 s)" in caplog.text
        monkeypatch.setattr(metrics, "SNAPSHOT_TIMEOUT_S", 5.0)
        figures.snapshot = DatabaseSnapshot()
        assert (await figures.refresh()).up is True
    finally:
        await pool.close()
