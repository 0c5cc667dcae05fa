"""The orchestrator's planning without a database: what it says of the plan it made."""

from __future__ import annotations

import logging

from hrwsi import planner
from hrwsi.orchestrator import Orchestrator
from hrwsi.planning_input import screen


def task(task_id: int, deadline_s: float) -> planner.TaskDemand:
    return planner.TaskDemand(id=task_id, routine="r", cpu=1, ram_mb=1, storage_mb=1, duration_s=60,
                              depends_on=(), earliest_start_s=0, flavour=None, priority=0, deadline_s=deadline_s)


def test_tasks_planned_past_their_deadline_are_said_to_get_deadline_missed_and_not_an_at_risk_alert(caplog):
    """They were said to be "alerted as at risk", which the deadline check never does once a deadline has
    passed (found by exploratory testing)."""
    workers = [planner.Worker("w1", planner.Flavour("f", 1, 10, 10))]
    problem = screen([task(1, -120), task(2, 30), task(3, -5)], workers, planner.Budgets(None, None, None, None), [])
    with caplog.at_level(logging.WARNING, logger="hrwsi.orchestrator"):
        plan = Orchestrator._plan_and_check(problem)
    assert len(plan.late) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert not any("alerted as at risk" in m for m in messages), messages
    ahead = next(m for m in messages if "still ahead" in m)
    assert ahead.startswith("the plan ends 1 task(s) after their deadline") and "task 2" in ahead \
        and "deadline_at_risk" in ahead
    past = next(m for m in messages if "already past" in m)
    assert past.startswith("2 task(s) planned are already past their deadline") and "deadline_missed" in past
